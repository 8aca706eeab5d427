"""Prompt training from the cache (the library): only prompts learn, determinism, resume, the model check.

That training learns is shown on a planted signal in tests/unit/test_learning.py.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from pointad_pipe.pipeline.cache.schema import CachedSamples
from pointad_pipe.pipeline.catalog import load_catalog
from pointad_pipe.pipeline.errors import OptionError, PointadError
from pointad_pipe.pipeline.jobs.train import TrainData, check_model, class_names, select_rows, train
from pointad_pipe.pipeline.stages.train import TrainConfig, collate, prompt_learner, step_terms

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def data_for(cat: Path, cls: str) -> tuple[TrainData, object, object]:
    catalog = load_catalog(cat)
    data = select_rows(catalog, catalog.dataset("s"), [cls], "test")
    spec, weights = check_model(data.encode, None, None)
    return data, spec, weights


def build_learner(data: TrainData, cfg: TrainConfig, spec: object, weights: object, device: str) -> torch.nn.Module:
    """The prompt learner `train` builds: the dataset's sorted class names for `coop` prompts, else none."""
    return prompt_learner(class_names(data.view) if cfg.prompts == "coop" else None, cfg, spec, weights, device)


def test_only_prompts_learn_and_clip_stays_frozen(learn_cache: Path) -> None:
    data, spec, weights = data_for(learn_cache, "ball")
    learner = build_learner(data, TrainConfig(), spec, weights, "cpu")
    samples = CachedSamples(data.view, (4,))
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


def test_refuses_another_model(learn_cache: Path) -> None:
    """The library's refusals; the CLI's (exit 2, worded for the flags) are in tests/e2e/test_train.py."""
    data, _, _ = data_for(learn_cache, "ball")
    with pytest.raises(PointadError, match="holds features of tiny"):
        check_model(data.encode, "ViT-B-16", None)
    catalog = load_catalog(learn_cache)
    with pytest.raises(OptionError, match="teapot") as exc:
        select_rows(catalog, catalog.dataset("s"), ["teapot"], "test")
    assert exc.value.option == "train_classes"


def test_coop_prompts_score_each_cloud_with_its_class(learn_cache: Path) -> None:
    data, spec, weights = data_for(learn_cache, "ball")
    cfg = TrainConfig(prompts="coop")
    learner = build_learner(data, cfg, spec, weights, "cpu")
    text = learner()
    assert learner.classes == ["ball", "box"] and text.shape == (2, 2, 128)
    samples = CachedSamples(data.view, (4,))
    batch = collate([samples.item(r) for r in data.rows[:2]], "cpu")
    index = {c: i for i, c in enumerate(learner.classes)}
    coop = step_terms(text, batch, cfg, samples.grid, samples.size, index)
    # every cloud here is a ball: the same as scoring against the 'ball' prompts alone
    plain = step_terms(text[0], batch, TrainConfig(), samples.grid, samples.size)
    for k in plain:
        torch.testing.assert_close(coop[k], plain[k])
