"""The README's CI-marked walk-through as a user runs it, and the demo's pages it leaves, in a real browser.

The walk-through runs once, in a fresh folder; its first line is `pointad-pipe demo`, so the folder
holds what `make demo` gives a user. The browser tests open its report.html and the page `predict`
wrote, from disk with the network cut: no JavaScript error, a 3D view that is not blank, and answers
to the reader's moves (a miss opened in 3D, its GT hidden, another sample picked). They skip, saying
why, where Debian's Chromium or playwright is absent.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ..browser import chromium, colourful, visit
from ..walk_through import WalkThrough, run_walk_through

pytestmark = pytest.mark.slow
needs_browser = pytest.mark.skipif(chromium() is None, reason="headless Chromium is not installed (apt-get install "
                                   "chromium, and the test extra's playwright; `make browser` and CI install it)")


@pytest.fixture(scope="module")
def readme_walk_through(tmp_path_factory: pytest.TempPathFactory) -> WalkThrough:
    return run_walk_through(tmp_path_factory.mktemp("walk_through"))


def test_readme_walk_through_runs_as_written(readme_walk_through: WalkThrough) -> None:
    """The CI-marked block, in a fresh folder (the session's `readme_walk_through`)."""
    run, folder = readme_walk_through, readme_walk_through.folder
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "all stages reused" not in run.stdout  # a fresh folder: the first demo runs everything
    assert (folder / "demo" / "runs" / "eval_ball" / "report.md").is_file()
    assert "report.html: demo/runs/eval_ball/report.html" in run.stdout  # the demo says where its page is
    assert (folder / "demo" / "runs" / "benchmark.html").is_file()
    assert list((folder / "demo" / "predict").glob("*.html"))
    assert (folder / "demo" / "runs" / "eval_ball_rgb" / "metrics.json").is_file()
    assert list((folder / "demo" / "predict").glob("*.ply"))
    assert "contract holds" in run.stdout


@pytest.fixture(scope="module")
def demo_page(readme_walk_through: WalkThrough) -> Path:
    """The report.html of `pointad-pipe demo` run in a fresh folder, as a user runs it (the README's walk-through)."""
    run = readme_walk_through
    page = run.folder / "demo" / "runs" / "eval_ball" / "report.html"
    assert run.returncode == 0 and f"report.html: {page.relative_to(run.folder)}" in run.stdout, run.stderr[-3000:]
    return page


@needs_browser
def test_the_demo_report_opens_offline_and_draws_its_3d_view(demo_page: Path, tmp_path: Path) -> None:
    seen = visit(demo_page, tmp_path / "shots")
    print(f"report.html: {demo_page.stat().st_size / 1e6:.1f} MB; 3D view colour share "
          f"{colourful(seen.shots['cloud']):.3f}")
    assert seen.errors == [], seen.errors
    assert seen.requests == [], seen.requests  # nothing asked of the network
    assert colourful(seen.shots["cloud"]) > 0.02, "the 3D view drew nothing"  # the score colours, not a blank plot
    facts = seen.facts
    assert facts["samples"] >= 2 and "points drawn" in facts["first_caption"], facts
    assert facts["button_caption"].startswith(f"{facts['button_sample']}:"), facts  # "view in 3D" opened the miss
    assert facts["gt_with"][0] > 0 and facts["gt_with"][1], facts  # a defect's GT points, shown
    assert facts["gt_without"] == (facts["gt_with"][0], False), facts  # and hidden by the toggle
    assert colourful(seen.shots["defect"]) > 0.02
    assert facts["last_caption"] != facts["button_caption"], facts  # another sample drawn


@needs_browser
def test_a_predicted_file_page_opens_offline_with_its_cloud(demo_page: Path, tmp_path: Path) -> None:
    """The page `predict` wrote for the walk-through's file (`demo/predict/000.html`)."""
    page = demo_page.parents[2] / "predict" / "000.html"
    seen = visit(page, tmp_path / "shots", interact=False)
    assert seen.errors == [] and seen.requests == [], (seen.errors, seen.requests)
    assert colourful(seen.shots["cloud"]) > 0.02
