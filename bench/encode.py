"""The encode stage against the bare model, per view, side by side in one process; and its memory.

1. Time per view of (a) open_clip's bare `encode_image`, (b) our encoder forward (patch tokens of
   4 layers with the attention change), (c) the whole stage: read the rendered views from Zarr,
   preprocess, encode, write fp16 features, mark rows done. Interleaved repeats, medians.
2. Peak RSS of the stage in fresh processes for 8 and for 32 samples: streaming means equal.

    python bench/encode.py [--models tiny,ViT-B-16] [--samples 8] [--repeats 3]
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


def render_images(n_shapes: int = 2) -> np.ndarray:
    """(n_shapes, 9, 336, 336, 3) real renderings of synthetic shapes."""
    from pointad_pipe.pipeline.loaders.synthetic_shapes import sample_surface
    from pointad_pipe.pipeline.render import RenderConfig, render_sample

    out = []
    for name in ("bagel", "ball", "box", "cone")[:n_shapes]:
        pts, _ = sample_surface(name, 30_000, np.random.default_rng(0))
        out.append(render_sample({"xyz": pts.astype(np.float32), "label": np.zeros(len(pts), np.uint8)},
                                 RenderConfig()).image)
    return np.stack(out)


def make_groups(folder: Path, n: int, model: str):  # noqa: ANN201
    """A render-like group with n samples of real renderings, and an empty encode group for them."""
    import zarr

    from pointad_pipe.model.registry import architecture, default_layers, get_spec
    from pointad_pipe.pipeline import store

    images = render_images()
    root = zarr.open_group(str(folder / "bench.zarr"), mode="w")
    render = root.require_group("render").require_group("r")
    arr = store.create_rows_array(render, "image", (n, VIEWS, 336, 336, 3), np.uint8, chunks=(1, 1, 336, 336, 3))
    for r in range(n):
        arr[r] = images[r % len(images)]
    arch = architecture(get_spec(model))
    d, grid = arch["embed_dim"], arch["vision_cfg"]["image_size"] // arch["vision_cfg"]["patch_size"]
    layers = default_layers(arch["vision_cfg"]["layers"])
    out = store.create_group(root, "encode", "e", upstream="r", config={}, n=n)
    store.create_rows_array(out, "global", (n, VIEWS, d), np.float16, compressors=store.feature_codec())
    store.create_rows_array(out, "patch", (n, VIEWS, len(layers), grid * grid, d), np.float16,
                            compressors=store.feature_codec())
    return render, out, layers


def encoder_for(model: str, layers: list[int]):  # noqa: ANN201
    from pointad_pipe.model.registry import default_dpam_blocks, get_spec
    from pointad_pipe.pipeline.encode import Encoder, EncoderKey
    from pointad_pipe.pipeline.weights import resolve_weights

    spec = get_spec(model)
    w = resolve_weights(spec, "random")
    depth = max(layers)
    return Encoder(EncoderKey(model, w.kind, w.path, tuple(layers), True, default_dpam_blocks(depth), "fp32", "cpu"))


def stage_seconds(model: str, n: int, folder: Path) -> float:
    """Wall time of the encode pipeline over n samples (one sample per forward, as the CLI default)."""
    from pointad_pipe.pipeline import store
    from pointad_pipe.pipeline.encode import encode_blocks

    render, out, layers = make_groups(folder, n, model)
    enc = encoder_for(model, layers)
    enc.encode(np.asarray(render["image"][0]))  # warm-up
    t = time.perf_counter()
    encode_blocks([([r], [r]) for r in range(n)], enc, render, out, on_row=lambda r, e: None,
                  mark_done=store.mark_done)
    return time.perf_counter() - t


def timings(model: str, samples: int, repeats: int) -> dict[str, float]:
    import torch

    from pointad_pipe.model.encoder import preprocess

    with tempfile.TemporaryDirectory() as tmp:
        render, _, layers = make_groups(Path(tmp) / "probe", 1, model)
        enc = encoder_for(model, layers)
        batch = preprocess(torch.from_numpy(np.asarray(render["image"][0])), enc.net.image_size)
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
    a = ap.parse_args()
    print(f"encode: {VIEWS} views per sample, {a.samples} samples, median of {a.repeats}, "
          f"fp32 on CPU, {os.cpu_count()} cores; 4 layers, attention change on")
    for model in a.models.split(","):
        t = timings(model, a.samples, a.repeats)
        print(f"{model:>12}: bare encode_image {1000 * t['bare']:.1f} ms/view, encoder (patch tokens + change) "
              f"{1000 * t['encoder']:.1f} ms/view, stage {1000 * t['stage']:.1f} ms/view -> stage adds "
              f"{100 * (t['stage'] / t['bare'] - 1):+.1f} % over the bare forward "
              f"({100 * (t['stage'] / t['encoder'] - 1):+.1f} % over the encoder forward)")
    small, large = peak_rss_mb(a.rss_model, 8), peak_rss_mb(a.rss_model, 32)
    print(f"peak RSS ({a.rss_model}): 8 samples {small:.0f} MB, 32 samples {large:.0f} MB "
          f"({100 * (large / small - 1):+.1f} %)")
    print(json.dumps({"rss_mb": [small, large]}))


if __name__ == "__main__":
    main()
