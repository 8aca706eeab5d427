"""Prompt training from the cache: only prompts learn, determinism, resume, the model check, learning."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from pointad_pipe.pipeline.catalog import load_catalog
from pointad_pipe.pipeline.errors import PointadError
from pointad_pipe.pipeline.evaluate import safe_name
from pointad_pipe.pipeline.infer import point_scores
from pointad_pipe.pipeline.train import CachedSamples, TrainConfig, collate, step_terms
from pointad_pipe.pipeline.train_run import TrainData, build_learner, check_model, select_rows, train

from .test_pipeline import run_cli

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def data_for(cat: Path, cls: str) -> tuple[TrainData, object, object]:
    catalog = load_catalog(cat)
    data = select_rows(catalog, catalog.dataset("s"), [cls], "test")
    spec, weights = check_model(data.encode, None, None)
    return data, spec, weights


def test_only_prompts_learn_and_clip_stays_frozen(learn_cache: Path) -> None:
    data, spec, weights = data_for(learn_cache, "ball")
    learner = build_learner(data, TrainConfig(), spec, weights, "cpu")
    samples = CachedSamples(data.encode, data.render, data.clean, (4,))
    frozen = {k: v.clone() for k, v in learner.model.state_dict().items()}
    opt = torch.optim.Adam(learner.parameters(), lr=1e-3, betas=(0.5, 0.999))
    batch = collate([samples.item(r) for r in data.rows[:4]], "cpu")
    terms = step_terms(learner(), batch, TrainConfig(), samples.grid, samples.size)
    assert set(terms) == {"3dg", "3dl", "2dg", "2dl"}
    sum(terms.values()).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in learner.parameters())
    assert all(p.grad is None for p in learner.model.parameters())
    assert {k for k, _ in learner.named_parameters()} == {"ctx_normal", "ctx_anomalous", "deep.0", "deep.1",
                                                           "deep.2"}
    before = [p.clone() for p in learner.parameters()]
    opt.step()
    assert any(not torch.equal(a, b) for a, b in zip(before, learner.parameters(), strict=True))
    for k, v in learner.model.state_dict().items():
        assert torch.equal(v, frozen[k]), k


def test_same_seed_same_bytes_and_resume(learn_cache: Path, tmp_path: Path) -> None:
    data, spec, weights = data_for(learn_cache, "box")
    data = dataclasses.replace(data, rows=data.rows[:8])
    cfg = TrainConfig(epochs=3, seed=5)
    a = train(data, cfg, tmp_path / "a", spec, weights, progress_bar=False)
    b = train(data, cfg, tmp_path / "b", spec, weights, progress_bar=False)
    assert a.read_bytes() == b.read_bytes()
    assert (tmp_path / "a/prompts_e002.pt").read_bytes() == (tmp_path / "b/prompts_e002.pt").read_bytes()
    # stop after 2 epochs, then resume to 3: the same prompts as the straight run
    train(data, dataclasses.replace(cfg, epochs=2), tmp_path / "c", spec, weights, progress_bar=False)
    c = train(data, cfg, tmp_path / "c", spec, weights, resume=True, progress_bar=False)
    assert c.read_bytes() == a.read_bytes()
    state = torch.load(a, weights_only=True)
    assert set(state) == {"ctx_normal", "ctx_anomalous", "deep.0", "deep.1", "deep.2"}
    import json

    side = json.loads(a.with_suffix(".json").read_text())
    assert side["encode_fingerprint"] == data.encode.attrs["fingerprint"] and side["model"] == "tiny"
    assert side["weights_sha256"] == data.encode.attrs["weights_sha256"] and side["epoch"] == 3
    assert side["train"]["seed"] == 5 and len(side["git_commit"]) >= 7


def test_refuses_another_model(learn_cache: Path, tmp_path: Path) -> None:
    data, _, _ = data_for(learn_cache, "ball")
    with pytest.raises(PointadError, match="holds features of tiny"):
        check_model(data.encode, "ViT-B-16", None)
    code, out = run_cli("train", "--catalog", str(learn_cache), "-d", "s", "--train-class", "ball",
                        "--out", str(tmp_path / "r"), "--model", "ViT-L-14-336")
    assert code == 2 and "holds features of tiny" in out
    code, out = run_cli("train", "--catalog", str(learn_cache), "-d", "s", "--train-class", "teapot",
                        "--out", str(tmp_path / "r"))
    assert code == 2 and "teapot" in out


def auroc(learner: torch.nn.Module, data: TrainData, rows: list[int]) -> float:
    samples = CachedSamples(data.encode, data.render, data.clean, (4,))
    text = learner()
    ys, scores = [], []
    for r in rows:
        item = samples.item(r)
        scores.append(point_scores(item, text, samples.grid, samples.size,
                                   xyz=np.asarray(data.clean[f"points/{r}/xyz"][:])))
        ys.append(item["y"])
    return float(roc_auc_score(np.concatenate(ys), np.concatenate(scores)))


@pytest.mark.slow
def test_training_learns(learn_cache: Path, tmp_path: Path) -> None:
    """Trained prompts beat untrained ones on held-out samples of the training class by >= 0.10 point AUROC.

    Samples with the colour-only defect are left out: a point-only model cannot see them. The local
    terms are trained (`--loss 3dl,2dl`): with a random-init CLIP the global terms pull the text
    features towards whatever separates the random global embeddings, and the run with all four
    terms is printed, not asserted (see the issue's note).
    """
    data, spec, weights = data_for(learn_cache, "ball")
    defects = [str(x) for x in data.clean["meta/defect"][:].tolist()]
    rows = [r for r in data.rows if defects[r] != "colour"]
    train_rows, held_out = rows[0::2], rows[1::2]
    untrained = [auroc(build_learner(data, TrainConfig(seed=s), spec, weights, "cpu"), data, held_out)
                 for s in range(5)]
    results = {}
    for name, losses in [("local", ("3dl", "2dl")), ("all four", ("3dg", "3dl", "2dg", "2dl"))]:
        cfg = TrainConfig(losses=losses)
        path = train(dataclasses.replace(data, rows=train_rows), cfg, tmp_path / name, spec, weights,
                     progress_bar=False)
        learner = build_learner(data, cfg, spec, weights, "cpu")
        learner.load_state_dict(torch.load(path, weights_only=True))
        other, _, _ = data_for(learn_cache, "box")
        results[name] = (auroc(learner, data, held_out), auroc(learner, other, other.rows))
    print(f"\npoint AUROC on held-out 'ball' samples: untrained seeds 0-4 {np.round(untrained, 3).tolist()} "
          f"(mean {np.mean(untrained):.3f})")
    for name, (same, ovr) in results.items():
        print(f"trained ({name} terms): {same:.3f} in class; one-vs-rest on 'box': {ovr:.3f}")
    assert results["local"][0] >= np.mean(untrained) + 0.10


def test_coop_prompts_score_each_cloud_with_its_class(learn_cache: Path) -> None:
    data, spec, weights = data_for(learn_cache, "ball")
    cfg = TrainConfig(prompts="coop")
    learner = build_learner(data, cfg, spec, weights, "cpu")
    text = learner()
    assert learner.classes == ["ball", "box"] and text.shape == (2, 2, 128)
    samples = CachedSamples(data.encode, data.render, data.clean, (4,))
    batch = collate([samples.item(r) for r in data.rows[:2]], "cpu")
    index = {c: i for i, c in enumerate(learner.classes)}
    coop = step_terms(text, batch, cfg, samples.grid, samples.size, index)
    # every cloud here is a ball: the same as scoring against the 'ball' prompts alone
    plain = step_terms(text[0], batch, TrainConfig(), samples.grid, samples.size)
    for k in plain:
        torch.testing.assert_close(coop[k], plain[k])


def test_train_then_evaluate_end_to_end(learn_cache: Path, tmp_path: Path) -> None:
    """train on one class, evaluate the other; recompute the metrics from scores.zarr with sklearn."""
    import json

    import zarr
    from sklearn.metrics import average_precision_score

    from .test_metrics import brute_aupro_pointad, sorted_aupro_official

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
    assert abs(box["p_auroc"] - roc_auc_score(lab, pts)) < 1e-6
    maps, gts = np.asarray(z["grid_score"][:])[rows], np.asarray(z["grid_gt"][:])[rows]
    assert int(gts.sum()) == int(lab.sum())  # the grid holds exactly the points' labels
    assert abs(box["aupro_official"] - sorted_aupro_official(maps, gts)) < 1e-9
    assert abs(box["aupro_pointad"] - brute_aupro_pointad(maps, gts)) < 1e-9
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
