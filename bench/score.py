"""Milliseconds per sample to score from the cache: patch maps, back-projection, smoothing, global score.

The acceptance case of issue 6: 9 views, 336^2 renders, 100k points, ViT-L-14-336 shapes (576 patch
tokens of 768 dims, one scored layer), organized smoothing on a 336^2 grid. Features are random:
scoring costs the same whatever they hold.

    python bench/score.py [--points 100000] [--repeats 10] [--smoke]

`--smoke`: 2,000 points, 1 repeat (same shapes otherwise): a check that the bench runs, not a figure.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from pointad_pipe.model.inference import score_cloud

SMOKE = {"points": 2_000, "repeats": 1}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--smoke", action="store_true", help=f"tiny sizes {SMOKE} (explicit flags still win)")
    if ap.parse_known_args()[0].smoke:
        ap.set_defaults(**SMOKE)
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    k, p, d, size, n = 9, 576, 768, 336, a.points
    patch = rng.standard_normal((k, p, d)).astype(np.float16)
    glob = rng.standard_normal((k, d)).astype(np.float16)
    pt2pix = np.where(rng.random((n, k)) < 0.6, rng.integers(0, size * size, (n, k)), -1).astype(np.int32)
    xyz = rng.random((n, 3)).astype(np.float32)
    grid_index = rng.choice(size * size, n, replace=False)
    text = torch.nn.functional.normalize(torch.randn(2, d), dim=-1)
    times = []
    for _ in range(a.repeats + 1):
        t = time.perf_counter()
        score_cloud(patch, glob, pt2pix, text, (24, 24), size, xyz, grid_index, (size, size))
        times.append(time.perf_counter() - t)
    med = statistics.median(times[1:])
    print(f"score: {k} views, {size}^2, {n} points, D={d}: {1000 * med:.1f} ms/sample "
          f"[min {1000 * min(times[1:]):.1f}, max {1000 * max(times[1:]):.1f}] (target <= 50 ms)")


if __name__ == "__main__":
    main()
