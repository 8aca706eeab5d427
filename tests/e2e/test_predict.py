"""`pointad-pipe predict` on user files, and the same sample scored by `predict` and by `evaluate`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import trimesh
import zarr

from pointad_pipe.pipeline.catalog import load_catalog
from pointad_pipe.pipeline.outputs.names import safe_name

from ..helpers import run_cli

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def test_predict_scores_ply_and_stl_and_reports_a_broken_file(ball_checkpoint: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import open3d as o3d

    from pointad_pipe.pipeline.stages import weights as weights_mod

    sphere = trimesh.creation.icosphere(subdivisions=3, radius=0.05)
    sphere.export(tmp_path / "sphere.stl")
    trimesh.PointCloud(trimesh.creation.box(extents=(0.1, 0.06, 0.04)).sample(8000, seed=0)).export(
        tmp_path / "box.ply")
    header = b"ply\nformat binary_little_endian 1.0\nelement vertex 500\n" + b"".join(
        b"property float %s\n" % c for c in (b"x", b"y", b"z")) + b"end_header\n"
    (tmp_path / "broken.ply").write_bytes(header + b"\0" * 60)
    loads = []
    real = weights_mod.load_model
    monkeypatch.setattr(weights_mod, "load_model", lambda *a, **k: loads.append(1) or real(*a, **k))
    code, out = run_cli("predict", str(tmp_path / "sphere.stl"), str(tmp_path / "broken.ply"),
                        str(tmp_path / "box.ply"), "--checkpoint", str(ball_checkpoint), "--out", str(tmp_path / "p"))
    assert code == 1, out
    assert "broken.ply: truncated PLY" in out and "1 of 3 files failed" in out
    assert len(loads) <= 2  # the text tower and the image encoder, once each, for all three files
    for name, min_points in (("sphere", 50_000), ("box", 7_000)):
        rec = json.loads((tmp_path / "p" / f"{name}.json").read_text())
        pc = o3d.t.io.read_point_cloud(str(tmp_path / "p" / rec["ply"]))
        score = pc.point.score.numpy()[:, 0]
        assert len(score) == rec["points"] >= min_points
        assert 0.0 <= score.min() and score.max() <= 1.0 and abs(score.max() - rec["max_point_score"]) < 1e-6
        # global = 0.5 max(point map) + 0.5 mean of the views' probabilities, so it lies in this band
        assert 0.5 * rec["max_point_score"] <= rec["global_score"] <= 0.5 * rec["max_point_score"] + 0.5
        assert (tmp_path / "p" / rec["views"]).stat().st_size > 1000
    assert not (tmp_path / "p" / "broken.json").exists()


def test_predict_on_a_dataset_tiff_equals_evaluate(learn_cache: Path, ball_checkpoint: Path, tmp_path: Path) -> None:
    """In-memory clean -> render -> encode -> score gives the numbers the cached path gives."""
    code, out = run_cli("evaluate", "--catalog", str(learn_cache), "-d", "s", "--checkpoint", str(ball_checkpoint),
                        "--out", str(tmp_path / "ev"), "--no-ply", "--montage", "0")
    assert code == 0, out
    z = zarr.open_group(str(tmp_path / "ev" / "scores.zarr"), mode="r")
    ids = [str(x) for x in z["meta/id"][:].tolist()]
    row = next(r for r, i in enumerate(ids) if i.startswith("box/test/") and "good" not in i)
    root = Path(load_catalog(learn_cache).dataset("s").root)
    cls, split, defect, stem = ids[row].split("/")
    tiff = root / cls / split / defect / "xyz" / f"{stem}.tiff"
    png = root / cls / split / defect / "rgb" / f"{stem}.png"
    code, out = run_cli("predict", str(tiff), "--checkpoint", str(ball_checkpoint), "--out", str(tmp_path / "p"))
    assert code == 0, out
    rec = json.loads((tmp_path / "p" / f"{safe_name(stem)}.json").read_text())
    assert rec["points"] == z[f"points/{row}/score"].shape[0]
    import open3d as o3d

    pred = o3d.t.io.read_point_cloud(str(tmp_path / "p" / rec["ply"])).point.score.numpy()[:, 0]
    np.testing.assert_allclose(pred, z[f"points/{row}/score"][:], atol=1e-5)
    assert abs(rec["global_score"] - float(z["global_score"][row])) < 1e-5

    code, out = run_cli("predict", str(tiff), "--rgb", str(png), "--checkpoint", str(ball_checkpoint),
                        "--out", str(tmp_path / "prgb"))
    assert code == 0, out
    fused = json.loads((tmp_path / "prgb" / f"{safe_name(stem)}.json").read_text())
    assert fused["modality"] == "fused" and fused["global_score"] != rec["global_score"]
