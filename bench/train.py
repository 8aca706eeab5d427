"""Seconds per training epoch from the cache, against re-encoding the views every step (the code's way).

Both loops do the same prompt-learning step on the same samples (9 views each, batch 4); the second
also runs the frozen image encoder on the batch's rendered views each step, as the authors' code
does. Same model size side by side, in one process, for `tiny` and `ViT-B-16` (random init).

    python bench/train.py [--models tiny,ViT-B-16] [--samples 6] [--repeats 3] [--smoke]

The cached figure is the best of `--repeats` epochs after a warm-up one. `--smoke`: `tiny` only,
2 samples, 1 repeat: a check that the bench runs, not a figure.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
SMOKE = {"models": "tiny", "samples": 2, "repeats": 1}


def prepare(folder: Path, model: str, samples: int):  # noqa: ANN201
    """A synthetic class encoded with `model`; returns the training data, spec, weights and render group."""
    import yaml

    from pointad_pipe.pipeline.cache.runner import RunOptions
    from pointad_pipe.pipeline.catalog import load_catalog
    from pointad_pipe.pipeline.jobs.encode import EncodeOptions, run_encode
    from pointad_pipe.pipeline.jobs.train import check_model, select_rows
    from pointad_pipe.pipeline.synthetic.generator import make_synthetic

    make_synthetic(folder / "syn", classes=["ball"], n_train=1, n_test_good=1,
                   n_test_per_defect=max(1, (samples - 1) // 5), layouts=("mvtec3d",))
    (folder / "cat.yaml").write_text(yaml.safe_dump({"cache": str(folder / "cache"), "datasets": {"s": {
        "format": "mvtec3d", "root": str(folder / "syn" / "mvtec3d"), "splits": ["test"],
        "clean": {"units": "m"}}}}))
    cat = load_catalog(folder / "cat.yaml")
    run_encode(cat, cat.dataset("s"), RunOptions(workers=0, progress=False),
               EncodeOptions(device="cpu", weights="random"), {"model": model, "layers": None})
    data = select_rows(cat, cat.dataset("s"), ["ball"], "test")
    data = dataclasses.replace(data, rows=data.rows[:samples])
    spec, weights = check_model(data.encode, None, "random")
    return data, spec, weights


def epoch_seconds(data, spec, weights, reencode: bool) -> float:  # noqa: ANN001
    import torch

    from pointad_pipe.model.losses import hybrid_loss
    from pointad_pipe.pipeline.cache.schema import CachedSamples, FeatureRows
    from pointad_pipe.pipeline.stages.encode import Encoder, EncoderKey
    from pointad_pipe.pipeline.stages.train import TrainConfig, collate, prompt_learner, step_terms

    cfg = TrainConfig(epochs=1)
    layers = (int(data.encode.attrs["layers"][-1]),)
    samples = CachedSamples(data.view, layers)
    learner = prompt_learner(None, cfg, spec, weights, "cpu")  # object-agnostic prompts, as `train` makes them
    opt = torch.optim.Adam(learner.parameters(), lr=cfg.lr, betas=cfg.betas)
    encoder = None
    views = FeatureRows(data.render, data.encode, {i: int(data.view.rows[i, 1]) for i in range(len(data.view))})
    if reencode:
        a = data.encode.attrs
        encoder = Encoder(EncoderKey(spec.name, weights.kind, weights.path, tuple(a["layers"]), True,
                                     a["dpam_blocks"], "fp32", "cpu"))
    t = time.perf_counter()
    for s in range(0, len(data.rows), cfg.batch_size):
        items = [samples.item(r) for r in data.rows[s:s + cfg.batch_size]]
        if encoder is not None:  # what the code does: encode the views again, every step
            for i, it in enumerate(items):
                glob, patch = encoder.encode(views.read(it.row)[0])
                items[i] = dataclasses.replace(it, glob=glob, patch=patch[:, [-1]])
        batch = collate(items, "cpu")
        loss = hybrid_loss(step_terms(learner(), batch, cfg, samples.grid, samples.size), cfg.losses)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="tiny,ViT-B-16")
    ap.add_argument("--samples", type=int, default=6)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--smoke", action="store_true", help=f"tiny sizes {SMOKE} (explicit flags still win)")
    if ap.parse_known_args()[0].smoke:
        ap.set_defaults(**SMOKE)
    a = ap.parse_args()
    print(f"train: one epoch over {a.samples} samples x 9 views, batch 4, CPU, {os.cpu_count()} cores")
    for model in a.models.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            data, spec, weights = prepare(Path(tmp), model, a.samples)
            epoch_seconds(data, spec, weights, False)  # warm-up
            cached = min(epoch_seconds(data, spec, weights, False) for _ in range(a.repeats))
            fresh = epoch_seconds(data, spec, weights, True)
            print(f"{model:>10}: from the cache {cached:.2f} s/epoch, re-encoding every step {fresh:.2f} s/epoch "
                  f"-> {fresh / cached:.1f}x")


if __name__ == "__main__":
    main()
