"""Seconds per training epoch from the cache, against re-encoding the views every step (the code's way).

Both loops do the same prompt-learning step on the same samples (9 views each, batch 4); the second
also runs the frozen image encoder on the batch's rendered views each step, as the authors' code
does. Same model size side by side, in one process, for `tiny` and `ViT-B-16` (random init).

    python bench/train.py [--models tiny,ViT-B-16] [--samples 6]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def prepare(folder: Path, model: str, samples: int):  # noqa: ANN201
    """A synthetic class encoded with `model`; returns the training data, spec, weights and render group."""
    import yaml

    from pointad_pipe.pipeline.catalog import load_catalog
    from pointad_pipe.pipeline.encode_stage import EncodeOptions, run_encode
    from pointad_pipe.pipeline.loaders.synthetic import make_synthetic
    from pointad_pipe.pipeline.stages import RunOptions
    from pointad_pipe.pipeline.train_run import check_model, select_rows

    make_synthetic(folder / "syn", classes=["ball"], n_train=1, n_test_good=1,
                   n_test_per_defect=max(1, (samples - 1) // 5), layouts=("mvtec3d",))
    (folder / "cat.yaml").write_text(yaml.safe_dump({"cache": str(folder / "cache"), "datasets": {"s": {
        "format": "mvtec3d", "root": str(folder / "syn" / "mvtec3d"), "splits": ["test"],
        "clean": {"units": "absolute"}}}}))
    cat = load_catalog(folder / "cat.yaml")
    run_encode(cat, cat.dataset("s"), RunOptions(workers=0, quiet=True),
               EncodeOptions(device="cpu", weights="random"), {"model": model, "layers": None})
    data = select_rows(cat, cat.dataset("s"), ["ball"], "test")
    data = dataclasses.replace(data, rows=data.rows[:samples])
    spec, weights = check_model(data.encode, None, "random")
    return data, spec, weights


def epoch_seconds(data, spec, weights, reencode: bool) -> float:  # noqa: ANN001
    import numpy as np
    import torch

    from pointad_pipe.model.losses import hybrid_loss
    from pointad_pipe.pipeline.encode import Encoder, EncoderKey
    from pointad_pipe.pipeline.train import CachedSamples, TrainConfig, collate, step_terms
    from pointad_pipe.pipeline.train_run import build_learner

    cfg = TrainConfig(epochs=1)
    layers = (int(data.encode.attrs["layers"][-1]),)
    samples = CachedSamples(data.encode, data.render, data.clean, layers)
    learner = build_learner(data, cfg, spec, weights, "cpu")
    opt = torch.optim.Adam(learner.parameters(), lr=cfg.lr, betas=cfg.betas)
    encoder = None
    if reencode:
        a = data.encode.attrs
        encoder = Encoder(EncoderKey(spec.name, weights.kind, weights.path, tuple(a["layers"]), True,
                                     a["dpam_blocks"], "fp32", "cpu"))
    t = time.perf_counter()
    for s in range(0, len(data.rows), cfg.batch_size):
        items = [samples.item(r) for r in data.rows[s:s + cfg.batch_size]]
        if encoder is not None:  # what the code does: encode the views again, every step
            for it in items:
                glob, patch = encoder.encode(np.asarray(data.render["image"][it["row"]]))
                it["glob"], it["patch"] = glob, patch[:, [-1]]
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
    a = ap.parse_args()
    print(f"train: one epoch over {a.samples} samples x 9 views, batch 4, CPU, {os.cpu_count()} cores")
    for model in a.models.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            data, spec, weights = prepare(Path(tmp), model, a.samples)
            epoch_seconds(data, spec, weights, False)  # warm-up
            cached = min(epoch_seconds(data, spec, weights, False) for _ in range(3))
            fresh = epoch_seconds(data, spec, weights, True)
            print(f"{model:>10}: from the cache {cached:.2f} s/epoch, re-encoding every step {fresh:.2f} s/epoch "
                  f"-> {fresh / cached:.1f}x")


if __name__ == "__main__":
    main()
