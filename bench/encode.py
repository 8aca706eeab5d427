"""The encode stage against the bare model, per view, side by side in one process; and its memory.

1. Time per view of (a) open_clip's bare `encode_image`, (b) our encoder forward (patch tokens of
   4 layers with the attention change), (c) the whole stage: read the rendered views from Zarr,
   preprocess, encode, write fp16 features, mark rows done. Interleaved repeats, medians.
2. Peak RSS of the stage in fresh processes for 8 and for 32 samples (`--rss-samples`): streaming means equal.

    python bench/encode.py [--models tiny,ViT-B-16] [--samples 8] [--repeats 3] [--rss-samples 8,32] [--smoke]

`--smoke`: `tiny` only, 1 sample, 1 repeat, peak RSS for 1 and 2 samples: a check that the bench
runs, not a figure.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")

VIEWS = 9
SMOKE = {"models": "tiny", "samples": 1, "repeats": 1, "rss_samples": "1,2"}


def render_images(n_shapes: int = 2) -> list:
    """`n_shapes` real renderings (9 views, 336 x 336) of synthetic shapes, as the render stage makes them."""
    from pointad_pipe.pipeline.stages.render import RenderConfig, render_sample
    from pointad_pipe.pipeline.synthetic.shapes import sample_surface

    out = []
    for name in ("bagel", "ball", "box", "cone")[:n_shapes]:
        pts, _ = sample_surface(name, 30_000, np.random.default_rng(0))
        out.append(render_sample(pts.astype(np.float32), np.zeros(len(pts), np.uint8), RenderConfig()))
    return out


def prepared(model: str):  # noqa: ANN201
    """The encode job's checked plan for `model` (random weights, default layers and attention change)."""
    from pointad_pipe.pipeline.jobs.identity import prepare_encode
    from pointad_pipe.pipeline.stages.encode import EncodeConfig

    return prepare_encode(EncodeConfig(model=model), "random", "cpu")


def make_groups(folder: Path, n: int, prep):  # noqa: ANN001, ANN201
    """A render group with n samples of real renderings, an empty encode group for them; their row I/O."""
    from pointad_pipe.pipeline.cache import rows, schema, store

    shots = render_images()
    root = store.open_url(str(folder / "bench.zarr"), "w")
    clean = store.create_group(root, "clean", "c", upstream=None, config={})  # only the render's upstream
    render = schema.create_render_group(root, "r", clean, {}, VIEWS, 336, "splat", {})
    out = schema.create_encode_group(root, "e", render, {}, prep.model_info)
    keys = [(f"s{r}", "v") for r in range(n)]
    for grp in (render, out):
        rows.reserve(grp, rows.Plan(todo=list(range(n))), keys, {"rows/upstream": list(range(n))})
    for r in range(n):
        schema.write_render_row(render, r, shots[r % len(shots)])
    rows.mark(render, [(r, "") for r in range(n)])
    return schema.FeatureRows(render, out, {r: r for r in range(n)})


def encoder_for(prep):  # noqa: ANN001, ANN201
    from pointad_pipe.pipeline.jobs.encode import encoder_key
    from pointad_pipe.pipeline.stages.encode import Encoder

    return Encoder(encoder_key(prep, "cpu"))


def stage_seconds(model: str, n: int, folder: Path) -> float:
    """Wall time of the encode pipeline over n samples (one sample per forward, as the CLI default)."""
    from pointad_pipe.pipeline.cache import rows
    from pointad_pipe.pipeline.stages.encode import encode_blocks

    prep = prepared(model)
    io = make_groups(folder, n, prep)
    enc = encoder_for(prep)
    enc.encode(io.read(0)[0])  # warm-up
    t = time.perf_counter()
    encode_blocks([([r], [r]) for r in range(n)], enc, io, on_row=lambda r, e: rows.mark(io.out, [(r, e)]))
    return time.perf_counter() - t


def timings(model: str, samples: int, repeats: int) -> dict[str, float]:
    import torch

    from pointad_pipe.model.encoder import preprocess

    with tempfile.TemporaryDirectory() as tmp:
        prep = prepared(model)
        enc = encoder_for(prep)
        views = make_groups(Path(tmp) / "probe", 1, prep).read(0)[0]
        batch = preprocess(torch.from_numpy(views), enc.net.image_size)
        bare, ours, stage = [], [], []
        with torch.no_grad():
            enc.net.model.encode_image(batch)
            for k in range(repeats):
                t = time.perf_counter()
                for _ in range(samples):
                    enc.net.model.encode_image(batch)
                bare.append((time.perf_counter() - t) / (samples * VIEWS))
                t = time.perf_counter()
                for _ in range(samples):
                    enc.net(batch)
                ours.append((time.perf_counter() - t) / (samples * VIEWS))
                stage.append(stage_seconds(model, samples, Path(tmp) / f"s{k}") / (samples * VIEWS))
    return {"bare": statistics.median(bare), "encoder": statistics.median(ours), "stage": statistics.median(stage)}


def peak_rss_mb(model: str, n: int) -> float:
    """Peak RSS of a fresh process that runs the stage over n samples.

    Read from VmHWM, not getrusage: ru_maxrss survives exec, so a child forked from this (large)
    process would report our peak instead of its own.
    """
    code = (f"import sys, tempfile, pathlib; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
            f"import encode as b; d = tempfile.mkdtemp(); b.stage_seconds({model!r}, {n}, pathlib.Path(d)); "
            "print([l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return int(out.strip().splitlines()[-1]) / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="tiny,ViT-B-16")
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--rss-model", default="tiny")
    ap.add_argument("--rss-samples", default="8,32", help="the two sample counts of the peak RSS check")
    ap.add_argument("--smoke", action="store_true", help=f"tiny sizes {SMOKE} (explicit flags still win)")
    if ap.parse_known_args()[0].smoke:
        ap.set_defaults(**SMOKE)
    a = ap.parse_args()
    print(f"encode: {VIEWS} views per sample, {a.samples} samples, median of {a.repeats}, "
          f"fp32 on CPU, {os.cpu_count()} cores; 4 layers, attention change on")
    for model in a.models.split(","):
        t = timings(model, a.samples, a.repeats)
        print(f"{model:>12}: bare encode_image {1000 * t['bare']:.1f} ms/view, encoder (patch tokens + change) "
              f"{1000 * t['encoder']:.1f} ms/view, stage {1000 * t['stage']:.1f} ms/view -> stage adds "
              f"{100 * (t['stage'] / t['bare'] - 1):+.1f} % over the bare forward "
              f"({100 * (t['stage'] / t['encoder'] - 1):+.1f} % over the encoder forward)")
    n_small, n_large = (int(x) for x in a.rss_samples.split(","))
    small, large = peak_rss_mb(a.rss_model, n_small), peak_rss_mb(a.rss_model, n_large)
    print(f"peak RSS ({a.rss_model}): {n_small} samples {small:.0f} MB, {n_large} samples {large:.0f} MB "
          f"({100 * (large / small - 1):+.1f} %)")
    print(json.dumps({"rss_mb": [small, large]}))


if __name__ == "__main__":
    main()
