"""The authors' checkpoint format (`{"prompt_learner": state_dict}`) through `jobs.checkpoint` and `jobs.predict`.

Goldens: `tests/goldens/official/` (c7: a checkpoint in their format holding c2's prompts; c2: the
small text model's weights and the text features the authors' code computed from those prompts).
Library only; the command (`predict --model`) is in tests/e2e/test_predict_official.py.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import trimesh

from pointad_pipe.pipeline.errors import CheckpointMismatch, OptionError, PointadError
from pointad_pipe.pipeline.jobs.checkpoint import OFFICIAL, load_checkpoint, text_features

from ..helpers import ROOT, assert_near_official, official, official_small_model

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

GOLDENS = ROOT / "tests" / "goldens" / "official"
C7 = GOLDENS / "c7_official_checkpoint_small.pth"


def to_official(prompts: dict[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    """Our prompt tensors under the authors' key names, with template buffers and projections as theirs has."""
    width = prompts["ctx_normal"].shape[1]
    deep = sorted((k for k in prompts if k.startswith("deep.")), key=lambda k: int(k.split(".")[1]))
    state = {"ctx_pos": prompts["ctx_normal"][None, None].clone(),
             "ctx_neg": prompts["ctx_anomalous"][None, None].clone(),
             "token_prefix_pos": torch.zeros(1, 1, 1, width), "token_suffix_pos": torch.zeros(1, 1, 64, width),
             "tokenized_prompts_pos": torch.zeros(1, 1, 77, dtype=torch.int32)}
    for i, k in enumerate(deep):
        state[f"compound_prompts_text.{i}"] = prompts[k].clone()
        state[f"compound_prompt_projections.{i}.weight"] = torch.zeros(8, width)
    return {"prompt_learner": state}


def test_official_checkpoint_gives_the_authors_text_features() -> None:
    """c7 + the goldens' small model (c2's text weights, built by open_clip's OpenAI builder): the authors' text
    features. Measured: 6.4e-7 of max |official| (1.8e-7 absolute); deep prompts left fp32 would give 1.3e-4."""
    from pointad_pipe.model.registry import get_spec

    z = official("c2_text_small")
    ckpt = load_checkpoint(C7)
    assert ckpt.official and ckpt.side["format"] == OFFICIAL and ckpt.side["model"] is None
    assert (ckpt.width, ckpt.text_depth) == (64, 9)
    cfg = ckpt.config
    assert (cfg.prompts, cfg.n_ctx, cfg.deep_depth, cfg.deep_len, cfg.tau) == ("agnostic", 12, 9, 4, 0.07)
    assert set(ckpt.prompts) == {"ctx_normal", "ctx_anomalous", *(f"deep.{i}" for i in range(8))}
    np.testing.assert_array_equal(ckpt.prompts["ctx_normal"].numpy(), z["ctx_normal"])
    np.testing.assert_array_equal(ckpt.prompts["ctx_anomalous"].numpy(), z["ctx_anomalous"])
    # the deep prompts as the authors' text encoder uses them: cast to fp16 (c7's are not fp16 values)
    deep = np.stack([ckpt.prompts[f"deep.{i}"].numpy() for i in range(8)])
    np.testing.assert_array_equal(deep, z["deep"].astype(np.float16).astype(np.float32))
    assert not np.array_equal(deep, z["deep"])

    # the spec only lends its tokenizer (every registered model has CLIP's); the text tower is c2's
    text, classes = text_features(ckpt, get_spec("ViT-L-14-336"), None, None, "cpu", model=official_small_model())
    assert classes is None
    assert_near_official(text, z["official_text_features"], 1e-5, "text features")


def test_our_checkpoint_loads_as_before(ball_checkpoint: Path, tmp_path: Path) -> None:
    ckpt = load_checkpoint(ball_checkpoint, model="ViT-B-16")  # the caller's facts are not read for ours
    assert not ckpt.official and ckpt.side == json.loads(ball_checkpoint.with_suffix(".json").read_text())
    saved = torch.load(ball_checkpoint, weights_only=True)
    assert set(ckpt.prompts) == set(saved) and all(torch.equal(ckpt.prompts[k], saved[k]) for k in saved)
    assert ckpt.filled(model="ViT-B-16") is ckpt and ckpt.fits("tiny") and not ckpt.fits("ViT-B-16")
    lone = tmp_path / "lone.pt"
    shutil.copy(ball_checkpoint, lone)
    with pytest.raises(PointadError, match="sidecar lone.json is missing"):
        load_checkpoint(lone)
    torch.save({"weight": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(PointadError, match="neither our prompt tensors nor the authors'"):
        load_checkpoint(tmp_path / "other.pt")
    with pytest.raises(PointadError, match="not found"):
        load_checkpoint(tmp_path / "absent.pth")


def test_a_model_whose_text_tower_does_not_fit_is_refused(ball_checkpoint: Path, tmp_path: Path) -> None:
    from pointad_pipe.pipeline.jobs.predict import Predictor

    for model, width, depth in (("tiny", 128, 4), ("ViT-L-14-336", 768, 12)):
        with pytest.raises(CheckpointMismatch) as exc:
            load_checkpoint(C7, model=model)
        e = exc.value
        assert (e.width, e.depth, e.model, e.model_width, e.model_depth) == (64, 9, model, width, depth)
        assert C7.name in str(e) and "width 64" in str(e) and f"width {width}" in str(e)
        assert "no registered model's text tower fits" in str(e)
    with pytest.raises(CheckpointMismatch, match="width 64"):
        Predictor(C7, model="tiny")  # before any weights are looked for
    for call in (lambda: load_checkpoint(C7, model="ViT-H-14"), lambda: Predictor(C7, model="ViT-H-14")):
        with pytest.raises(OptionError) as unknown:
            call()
        assert unknown.value.option == "model" and unknown.value.value == "ViT-H-14"
    # a tiny-width official checkpoint with deep prompts for 8 blocks: tiny has 4
    prompts = torch.load(ball_checkpoint, weights_only=True)
    prompts.update({f"deep.{i}": torch.zeros(4, 128) for i in range(8)})
    torch.save(to_official(prompts), tmp_path / "deep.pth")
    with pytest.raises(CheckpointMismatch, match="at least 9 blocks, but tiny's has width 128 and 4 blocks"):
        load_checkpoint(tmp_path / "deep.pth", model="tiny")


def official_and_ours(ball_checkpoint: Path, tmp_path: Path) -> tuple[Path, Path, dict]:
    """The ball prompts (deep ones rounded to fp16) in the authors' format and in ours without `pipeline`.

    Our sidecar's `pipeline` (the training cache's render and encode configs) is dropped, so that
    both are scored with predict's default settings on the last block: the prompts alone differ in
    how they are read.
    """
    prompts = torch.load(ball_checkpoint, weights_only=True)
    prompts = {k: v.half().float() if k.startswith("deep.") else v for k, v in prompts.items()}
    official = tmp_path / "official.pth"
    torch.save(to_official(prompts), official)
    ours = tmp_path / "ours.pt"
    torch.save(prompts, ours)
    side = json.loads(ball_checkpoint.with_suffix(".json").read_text())
    del side["pipeline"]
    ours.with_suffix(".json").write_text(json.dumps(side))
    return official, ours, prompts


def test_predict_with_an_official_checkpoint_equals_our_format(ball_checkpoint: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from pointad_pipe.pipeline.jobs.predict import Predictor
    from pointad_pipe.pipeline.stages import weights as weights_mod

    official, ours, prompts = official_and_ours(ball_checkpoint, tmp_path)
    trimesh.PointCloud(trimesh.creation.box(extents=(0.1, 0.06, 0.04)).sample(6000, seed=0)).export(
        tmp_path / "box.ply")
    loads = []
    real = weights_mod.load_model
    monkeypatch.setattr(weights_mod, "load_model", lambda *a, **k: loads.append(1) or real(*a, **k))
    theirs = Predictor(official, model="tiny")
    assert len(loads) == 1  # one CLIP for the text features and the image encoder
    side = theirs.ckpt.side
    assert side["model"] == "tiny" and side["scored_layers"] == [4] and side["weights_sha256"]
    assert all(torch.equal(theirs.ckpt.prompts[k], v) for k, v in prompts.items())
    mine = Predictor(ours)
    torch.testing.assert_close(theirs.text, mine.text, rtol=0, atol=0)
    a, b = theirs.predict(tmp_path / "box.ply"), mine.predict(tmp_path / "box.ply")
    np.testing.assert_array_equal(a.score, b.score)
    assert a.global_score == b.global_score and len(a.score) > 5000
    with pytest.raises(OptionError, match="trained on features of tiny") as exc:
        Predictor(ours, model="ViT-B-16")
    assert exc.value.option == "model"


def test_predict_text_features_are_those_of_a_separately_loaded_model(ball_checkpoint: Path) -> None:
    """Sharing the CLIP between the text features and the encoder changes no bit (fp32)."""
    from pointad_pipe.model.registry import get_spec
    from pointad_pipe.pipeline.jobs.predict import Predictor
    from pointad_pipe.pipeline.stages.weights import resolve_weights

    pred = Predictor(ball_checkpoint)
    spec = get_spec("tiny")
    alone, _ = text_features(load_checkpoint(ball_checkpoint), spec, resolve_weights(spec, None), None)
    assert torch.equal(pred.text, alone)


def test_for_encode_completes_an_official_checkpoint_from_the_cache(learn_cache: Path, ball_checkpoint: Path,
                                                                    tmp_path: Path) -> None:
    """What evaluate needs: the fitting encode group's facts; the training classes from the caller."""
    from pointad_pipe.pipeline.catalog import load_catalog
    from pointad_pipe.pipeline.jobs.train import select_rows

    catalog = load_catalog(learn_cache)
    attrs = dict(select_rows(catalog, catalog.dataset("s"), ["ball"], "test").encode.attrs)
    official, _, _ = official_and_ours(ball_checkpoint, tmp_path)
    ckpt = load_checkpoint(official).for_encode([attrs], classes={"ball"})
    side = ckpt.side
    assert (side["model"], side["weights_sha256"], side["encode_fingerprint"]) == (
        "tiny", attrs["weights_sha256"], attrs["fingerprint"])
    assert side["scored_layers"] == [4] and side["classes"] == ["ball"] and side["dataset"] is None
    with pytest.raises(CheckpointMismatch, match=r"no encode group of the dataset .*\(models encoded: tiny\)"):
        load_checkpoint(C7).for_encode([attrs])


def test_evaluate_an_official_checkpoint_equals_our_format(learn_cache: Path, ball_checkpoint: Path,
                                                           tmp_path: Path) -> None:
    """evaluate takes the model, weights, scored block and encode group of an authors'-format file from the
    cache, and the training classes from the caller: the same prompts score the same, in both protocols."""
    from pointad_pipe.pipeline.catalog import load_catalog
    from pointad_pipe.pipeline.jobs.evaluate import EvalOptions, evaluate

    official, ours, _ = official_and_ours(ball_checkpoint, tmp_path)
    cat = load_catalog(learn_cache)
    for protocol in ("one-vs-rest", "cross-dataset"):
        kw = {"protocol": protocol, "write_ply": False, "montage_samples": 0, "progress": False}
        theirs = evaluate(cat, cat.dataset("s"), official, tmp_path / f"a_{protocol}",
                          EvalOptions(train_classes=("ball",), **kw))
        mine = evaluate(cat, cat.dataset("s"), ours, tmp_path / f"b_{protocol}", EvalOptions(**kw))
        assert theirs["per_class"] == mine["per_class"] and theirs["train_classes"] == ["ball"]
        assert set(mine["per_class"]) == ({"box"} if protocol == "one-vs-rest" else {"ball", "box"})


def test_a_file_that_is_no_checkpoint_is_named_in_one_line(tmp_path: Path) -> None:
    from pointad_pipe.pipeline.errors import PointadError
    from pointad_pipe.pipeline.jobs.checkpoint import load_checkpoint

    bad = tmp_path / "garbage.pth"
    bad.write_bytes(bytes(range(256)) * 3)
    with pytest.raises(PointadError, match=r"garbage\.pth cannot be read as a torch file of prompt tensors "
                                           r"\(\w+\); is it a `train` checkpoint or a PointAD \.pth\?"):
        load_checkpoint(bad)
