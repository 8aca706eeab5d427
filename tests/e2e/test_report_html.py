"""report.html shows exactly the run's files: the table is metrics.json, the clouds are scores.zarr's
point scores, and the error cases are the right samples by scores.zarr's global scores."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import zarr

from pointad_pipe.pipeline.outputs.html_report import unpacked

from ..helpers import run_cli
from ..unit.test_html_report import Cells, clouds_of

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::UserWarning")]


@pytest.fixture(scope="module")
def run(learn_cache: Path, ball_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("html") / "ev"
    code, text = run_cli("evaluate", "--catalog", str(learn_cache), "-d", "s", "--checkpoint", str(ball_checkpoint),
                         "--out", str(out), "--no-ply", "--montage", "0", "--errors", "2")
    assert code == 0 and f"report.html: {out / 'report.html'}" in text, text
    return out


def test_the_table_is_metrics_json(run: Path) -> None:
    metrics = json.loads((run / "metrics.json").read_text())
    cells = Cells()
    cells.feed((run / "report.html").read_text())
    shown = {(row, metric): value for row, metric, value, _ in cells.cells}
    wanted = {(cls, k): v for cls, vals in [*metrics["per_class"].items(), ("mean", metrics["mean"])]
              for k, v in vals.items()}
    assert shown.keys() == wanted.keys() and len(wanted) >= 9
    for key, value in wanted.items():
        assert shown[key] == value or (np.isnan(value) and np.isnan(shown[key])), key
    for row, metric, value, text in cells.cells:  # and the text is that value as a percentage
        assert text == ("\u2013" if np.isnan(value) else f"{100 * value:.1f}"), (row, metric)


def test_the_clouds_are_scores_zarr(run: Path) -> None:
    scores = zarr.open_group(str(run / "scores.zarr"), mode="r")
    ids = list(scores["meta/id"][:])
    clouds = clouds_of((run / "report.html").read_text())["classes"]
    assert list(clouds) == ["box"]
    n_box = sum(1 for c in scores["meta/class"][:] if c == "box")
    assert len(clouds["box"]["clouds"]) == n_box  # every sample of the class is offered (fewer than the cap)
    for item in clouds["box"]["clouds"]:
        r = ids.index(item["id"])
        full = np.asarray(scores[f"points/{r}/score"][:])
        labels = np.asarray(scores[f"points/{r}/label"][:])
        index = unpacked(item["index"])
        assert item["n_points"] == full.size and item["global_score"] == float(scores["global_score"][r])
        np.testing.assert_array_equal(unpacked(item["score"]), full[index])
        np.testing.assert_array_equal(unpacked(item["gt"]), (labels[index] > 0).astype(np.uint8))
        assert set(np.flatnonzero(labels)) <= set(index.tolist())  # every GT point is on the page
        assert index.size <= 3000 + int(labels.sum())


def test_the_error_cases_are_the_right_samples(run: Path) -> None:
    scores = zarr.open_group(str(run / "scores.zarr"), mode="r")
    ids, labels = list(scores["meta/id"][:]), np.asarray(scores["meta/label"][:])
    glob = np.asarray(scores["global_score"][:])
    box = [i for i, c in enumerate(scores["meta/class"][:]) if c == "box"]
    good = sorted((i for i in box if labels[i] == 0), key=lambda i: -glob[i])[:2]
    bad = sorted((i for i in box if labels[i] == 1), key=lambda i: glob[i])[:2]
    page = (run / "report.html").read_text()
    listed = re.findall(r'<div class="case" data-kind="([a-z ]+)" data-sample="([^"]+)">', page)
    assert listed == [("false positive", ids[i]) for i in good] + [("missed defect", ids[i]) for i in bad]
    for i in good + bad:  # each with its views figure, written beside the page too
        assert re.search(rf'data-sample="{re.escape(ids[i])}">.*?global score <span class="score">'
                         rf'{glob[i]:.4f}</span>.*?<img alt=', page, re.S), ids[i]
    assert len(list((run / "figures").glob("box_error_*.png"))) == 4
