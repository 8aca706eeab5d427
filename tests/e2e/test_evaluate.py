"""`evaluate` protocols and modalities: cross-dataset onto unorganized data, RGB fusion, clear refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
import zarr
from sklearn.metrics import average_precision_score, roc_auc_score

from ..helpers import run_cli

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def two_datasets(learn_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`learn_cache`'s catalog plus `u`, a Real3D-layout (unorganized, no RGB) dataset in the same cache."""
    from pointad_pipe.pipeline.synthetic.generator import make_synthetic

    base = tmp_path_factory.mktemp("cross")
    make_synthetic(base / "syn", seed=5, classes=["cone", "box"], n_train=1, n_test_good=2, n_test_per_defect=2,
                   layouts=("real3d",))
    spec = yaml.safe_load(learn_cache.read_text())
    spec["datasets"]["u"] = {"format": "real3d", "root": str(base / "syn" / "real3d"), "splits": ["test"]}
    cat = base / "catalog.yaml"
    cat.write_text(yaml.safe_dump(spec))
    code, out = run_cli("encode", "--catalog", str(cat), "-d", "u", "--model", "tiny", "-j", "0")
    assert code == 0, out
    return cat


def test_cross_dataset_scores_every_class_with_the_real3d_protocol(two_datasets: Path, ball_checkpoint: Path,
                                                                    tmp_path: Path) -> None:
    code, out = run_cli("evaluate", "--catalog", str(two_datasets), "-d", "u", "--checkpoint", str(ball_checkpoint),
                        "--out", str(tmp_path / "ev"))
    # one-vs-rest is for the training dataset: the flag and its value named, the way out (cross-dataset) given
    assert code == 2 and "--protocol one-vs-rest" in out and "not 'u'" in out and "with cross-dataset" in out, out
    code, out = run_cli("evaluate", "--catalog", str(two_datasets), "-d", "u", "--checkpoint", str(ball_checkpoint),
                        "--protocol", "cross-dataset", "--out", str(tmp_path / "ev"), "--montage", "1")
    assert code == 0, out
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert set(metrics["per_class"]) == {"box", "cone"}  # box too: the other dataset's box was never trained on
    assert metrics["protocol"] == "cross-dataset" and metrics["train_dataset"] == "s"
    z = zarr.open_group(str(tmp_path / "ev" / "scores.zarr"), mode="r")
    assert "grid_score" not in z  # unorganized: no grid, no AUPRO
    classes = [str(c) for c in z["meta/class"][:].tolist()]
    for cls in ("box", "cone"):
        got = metrics["per_class"][cls]
        assert set(got) == {"i_auroc", "ap", "p_auroc", "p_ap"}
        rows = [r for r, c in enumerate(classes) if c == cls]
        pooled = np.concatenate([z[f"points/{r}/score"][:] for r in rows]).astype(np.float64)
        labels = np.concatenate([z[f"points/{r}/label"][:] for r in rows])
        normed = (pooled - pooled.min()) / (pooled.max() - pooled.min())
        assert got["p_auroc"] == pytest.approx(roc_auc_score(labels, normed), abs=1e-9)
        assert got["p_ap"] == pytest.approx(average_precision_score(labels, normed), abs=1e-9)
        img = np.asarray(z["meta/label"][:])[rows]
        assert got["i_auroc"] == pytest.approx(roc_auc_score(img, np.asarray(z["global_score"][:])[rows]), abs=1e-9)
    report = (tmp_path / "ev" / "report.md").read_text()
    assert "| P-AP |" in report and "AUPRO (" not in report  # no AUPRO column for unorganized data
    code, out = run_cli("evaluate", "--catalog", str(two_datasets), "-d", "u", "--checkpoint", str(ball_checkpoint),
                        "--protocol", "cross-dataset", "--rgb", "--out", str(tmp_path / "ev2"))
    assert code == 2 and "--rgb needs RGB features" in out, out


def _text_from_files(checkpoint: Path) -> tuple[dict, object]:
    """The sidecar and the text features of a checkpoint, read as files (the prompt tensors and the JSON)."""
    import torch

    from pointad_pipe.model.registry import get_spec
    from pointad_pipe.pipeline.stages.train import TrainConfig, prompt_learner
    from pointad_pipe.pipeline.stages.weights import resolve_weights

    side = json.loads(checkpoint.with_suffix(".json").read_text())
    config = TrainConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in side["train"].items()})
    spec = get_spec(side["model"])
    learner = prompt_learner(None, config, spec, resolve_weights(spec, None), "cpu")
    learner.load_state_dict(torch.load(checkpoint, weights_only=True))
    with torch.no_grad():
        return side, learner()


def test_evaluate_rgb_fusion_reads_the_cached_rgb_features(learn_cache: Path, ball_checkpoint: Path,
                                                           tmp_path: Path) -> None:
    """--rgb scores equal METHOD's fusion (on the whole grid) of the cached point map and the RGB image's map."""
    import torch
    import torch.nn.functional as F  # noqa: N812
    from scipy.ndimage import gaussian_filter

    from pointad_pipe.model.backproject import backproject
    from pointad_pipe.model.similarity import patch_maps, similarity_logits
    from pointad_pipe.pipeline.catalog import load_catalog

    for name, flag in (("point", []), ("fused", ["--rgb"])):
        code, out = run_cli("evaluate", "--catalog", str(learn_cache), "-d", "s", "--checkpoint",
                            str(ball_checkpoint), "--out", str(tmp_path / name), "--no-ply", "--montage", "0", *flag)
        assert code == 0, out
    zp = zarr.open_group(str(tmp_path / "point" / "scores.zarr"), mode="r")
    zf = zarr.open_group(str(tmp_path / "fused" / "scores.zarr"), mode="r")
    assert json.loads((tmp_path / "fused" / "metrics.json").read_text())["modality"] == "fused"
    row = int(np.flatnonzero(np.isfinite(np.asarray(zf["global_score"][:])))[0])

    # independent: text features from the checkpoint's files (prompt tensors and JSON sidecar), then the
    # formulas on the raw cached arrays
    side, text = _text_from_files(ball_checkpoint)
    root = zarr.open_group(str(Path(load_catalog(learn_cache).cache) / "s.zarr"), mode="r")
    enc = root[f"encode/{side['encode_fingerprint']}"]
    render = root[f"render/{enc.attrs['upstream']}"]
    clean = root[f"clean/{render.attrs['upstream']}"]
    layer = list(enc.attrs["layers"]).index(side["scored_layers"][0])
    grid, size = tuple(enc.attrs["patch_grid"]), int(render.attrs["image_size"][0])
    shape = tuple(clean.attrs["grid_shape"])
    cells = np.asarray(clean[f"points/{row}/grid"][:])
    with torch.no_grad():
        views = torch.from_numpy(np.asarray(enc["patch"][row])[:, layer].astype(np.float32))
        a = backproject(patch_maps(views[None], text, grid)[0],
                        torch.from_numpy(np.asarray(render[f"points/{row}/pt2pix"][:]).astype(np.int64)), size)[0]
        rgb_map = patch_maps(torch.from_numpy(np.asarray(enc["rgb_patch"][row])[layer].astype(np.float32))[None, None],
                             text, grid)[0, 0]
        # C: the RGB image's S_a at every pixel (the grid and the RGB image are both 336² here)
        c = F.interpolate(rgb_map[None, 1:2], size=(size, size), mode="bilinear", align_corners=False)[0, 0]
        p_rgb = similarity_logits(torch.from_numpy(np.asarray(enc["rgb_global"][row]).astype(np.float32))[None],
                                  text).softmax(-1)[0, 1]
        p_views = similarity_logits(torch.from_numpy(np.asarray(enc["global"][row]).astype(np.float32)),
                                    text).softmax(-1)[:, 1]
    assert bool(np.asarray(render[f"points/{row}/pt2pix"][:]).max(1).min() >= 0)  # every point seen: no fill
    assert shape == (size, size)
    point_grid = np.zeros(shape)
    point_grid.flat[cells] = a[:, 1].numpy()
    fused = gaussian_filter((gaussian_filter(point_grid, 4.0) + gaussian_filter(c.numpy().astype(np.float64), 4.0)) / 2,
                            4.0)
    np.testing.assert_allclose(zf[f"points/{row}/score"][:], fused.flat[cells], atol=1e-5)
    np.testing.assert_allclose(zf["grid_score"][row], fused, atol=1e-5)
    assert float(zf["global_score"][row]) == pytest.approx(fused.max() + (float(p_rgb) + float(p_views.mean())) / 2,
                                                           abs=1e-5)
    assert not np.allclose(zp[f"points/{row}/score"][:], zf[f"points/{row}/score"][:])
    np.testing.assert_array_equal(zp[f"points/{row}/label"][:], zf[f"points/{row}/label"][:])
