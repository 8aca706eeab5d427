"""The demo's report.html in a real browser: it opens from disk with the network cut, logs no JavaScript
error, draws a 3D view that is not blank, and answers the reader's moves (a miss opened in 3D, its GT
hidden, another sample picked). Skips, saying why, where Debian's Chromium or playwright is absent."""

from __future__ import annotations

from pathlib import Path

import pytest

from ..browser import chromium, colourful, visit
from ..walk_through import WalkThrough

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(chromium() is None, reason="headless Chromium is not installed (apt-get install "
                                 "chromium, and the test extra's playwright; `make browser` and CI install it)")]


@pytest.fixture(scope="module")
def demo_page(readme_walk_through: WalkThrough) -> Path:
    """The report.html of `pointad-pipe demo` run in a fresh folder, as a user runs it (the README's walk-through)."""
    run = readme_walk_through
    page = run.folder / "demo" / "runs" / "eval_ball" / "report.html"
    assert run.returncode == 0 and f"report.html: {page.relative_to(run.folder)}" in run.stdout, run.stderr[-3000:]
    return page


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


def test_a_predicted_file_page_opens_offline_with_its_cloud(demo_page: Path, tmp_path: Path) -> None:
    """The page `predict` wrote for the walk-through's file (`demo/predict/000.html`)."""
    page = demo_page.parents[2] / "predict" / "000.html"
    seen = visit(page, tmp_path / "shots", interact=False)
    assert seen.errors == [] and seen.requests == [], (seen.errors, seen.requests)
    assert colourful(seen.shots["cloud"]) > 0.02
