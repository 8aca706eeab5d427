"""`pointad-pipe train` and `evaluate` via the CLI: refusals worded for the flags, a run recomputed from its files."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from pointad_pipe.pipeline.outputs.names import safe_name

from ..helpers import brute_aupro_pointad, run_cli, sorted_aupro_official

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def test_refuses_another_model(learn_cache: Path, tmp_path: Path) -> None:
    """The CLI's refusals, exit 2 (the library's own are in tests/unit/test_train.py)."""
    code, out = run_cli("train", "--catalog", str(learn_cache), "-d", "s", "--train-class", "ball",
                        "--out", str(tmp_path / "r"), "--model", "ViT-L-14-336")
    assert code == 2 and "holds features of tiny" in out
    code, out = run_cli("train", "--catalog", str(learn_cache), "-d", "s", "--train-class", "teapot",
                        "--out", str(tmp_path / "r"))
    assert code == 2 and "teapot" in out


def test_train_then_evaluate_end_to_end(learn_cache: Path, tmp_path: Path) -> None:
    """train on one class, evaluate the other; recompute the metrics from scores.zarr with sklearn."""
    import json

    import zarr
    from sklearn.metrics import average_precision_score

    code, out = run_cli("train", "--catalog", str(learn_cache), "-d", "s", "--train-class", "ball",
                        "--out", str(tmp_path / "run"), "--epochs", "2")
    assert code == 0, out
    code, out = run_cli("evaluate", "--catalog", str(learn_cache), "-d", "s", "--checkpoint",
                        str(tmp_path / "run" / "prompts.pt"), "--out", str(tmp_path / "ev"))
    assert code == 0 and "box" in out and "ball:" not in out, out
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert set(metrics["per_class"]) == {"box"} and metrics["train_classes"] == ["ball"]
    z = zarr.open_group(str(tmp_path / "ev" / "scores.zarr"), mode="r")
    classes = [str(c) for c in z["meta/class"][:].tolist()]
    rows = [r for r, c in enumerate(classes) if c == "box"]
    labels = np.asarray(z["meta/label"][:])[rows]
    glob = np.asarray(z["global_score"][:])[rows]
    box = metrics["per_class"]["box"]
    assert abs(box["i_auroc"] - roc_auc_score(labels, glob)) < 1e-9
    assert abs(box["ap"] - average_precision_score(labels, glob)) < 1e-9
    pts = np.concatenate([z[f"points/{r}/score"][:] for r in rows])
    lab = np.concatenate([z[f"points/{r}/label"][:] for r in rows])
    maps, gts = np.asarray(z["grid_score"][:])[rows], np.asarray(z["grid_gt"][:])[rows]
    valid = np.asarray(z["grid_valid"][:])[rows]
    assert int(gts.sum()) == int(lab.sum()) and int(valid.sum()) == len(pts)  # the grid holds exactly the points
    np.testing.assert_allclose(maps[valid], pts, rtol=1e-6)  # the points' scores are the grid's at their cells
    assert (maps[~valid] != 0).any()  # the paper's grid: the blur leaks into background and holes
    # the paper's whole-grid metrics, and the object-only companions
    assert abs(box["p_auroc"] - roc_auc_score(gts.ravel(), maps.ravel())) < 1e-6
    assert abs(box["p_auroc_object"] - roc_auc_score(lab, pts)) < 1e-6
    assert abs(box["aupro_official"] - sorted_aupro_official(maps, gts)) < 1e-9
    assert abs(box["aupro_official_object"] - sorted_aupro_official(maps, gts, valid=valid)) < 1e-9
    assert abs(box["aupro_pointad"] - brute_aupro_pointad(maps, gts)) < 1e-9
    assert abs(box["aupro_pointad_object"] - brute_aupro_pointad(maps, gts, valid=valid)) < 1e-9
    assert 0 <= box["aupro_official"] <= 1 and (tmp_path / "ev" / "metrics.csv").read_text().startswith("class,")
    # the run folder: report with figures that exist, and scored clouds readable by Open3D
    report = (tmp_path / "ev" / "report.md").read_text()
    assert "box" in report and "tiny" in report
    for link in re.findall(r"\]\(([^)]+\.png)\)", report):
        assert (tmp_path / "ev" / link).is_file(), link
    assert re.search(r"box_montage\.png", report) and re.search(r"box_roc\.png", report)
    import open3d as o3d

    plys = sorted((tmp_path / "ev" / "clouds" / "box").glob("*.ply"))
    assert len(plys) == len(rows)
    first = min(rows)
    name = safe_name(str(z["meta/id"][first]))
    pc = o3d.t.io.read_point_cloud(str(tmp_path / "ev" / "clouds" / "box" / f"{name}.ply"))
    np.testing.assert_allclose(pc.point.score.numpy()[:, 0], z[f"points/{first}/score"][:])
