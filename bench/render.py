"""Seconds per sample of the render stage's core, per backend and thread count, side by side in one process.

A sample is the acceptance case of issue 3: 9 views (MVTec 3D-AD's list), 100k points, 336 x 336,
every pass included (spacing, projection, ownership, visibility, shading: `PhaseClock`). Backends
and thread counts are run in turn, A B A B ..., so that drift of this shared machine hits them
alike; the figure is the median. At 2 threads `splat` draws its views in parallel while the GL
backends keep one context and draw them in turn (only their neighbour queries thread), so the
1-thread rows are the like-for-like comparison.

    python bench/render.py [--points 100000] [--repeats 5] [--backends splat,open3d,pyrender]
                           [--threads 1,2] [--smoke]

`--smoke`: 5,000 points, 1 repeat, every backend (a missing one is still reported as skipped): a
check that the bench runs, not a figure.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from pointad_pipe.pipeline.renderers import get_backend  # noqa: E402
from pointad_pipe.pipeline.stages.render import PhaseClock, RenderConfig, render_sample  # noqa: E402
from pointad_pipe.pipeline.synthetic.shapes import sample_surface  # noqa: E402

SMOKE = {"points": 5_000, "repeats": 1}


def cloud(n: int) -> tuple[np.ndarray, np.ndarray]:
    """A closed bagel surface of n points, in metres, and its labels (a patch)."""
    pts, _ = sample_surface("bagel", n, np.random.default_rng(0))
    labels = (np.linalg.norm(pts - pts[0], axis=1) < 0.01).astype(np.uint8)
    return pts.astype(np.float32), labels


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--backends", default="splat,open3d,pyrender")
    ap.add_argument("--threads", default="1,2", help="render_sample's threads, each measured")
    ap.add_argument("--smoke", action="store_true", help=f"tiny sizes {SMOKE} (explicit flags still win)")
    if ap.parse_known_args()[0].smoke:
        ap.set_defaults(**SMOKE)
    a = ap.parse_args()
    xyz, label = cloud(a.points)
    cfg = RenderConfig()
    thread_counts = [int(t) for t in a.threads.split(",")]
    backends = {}
    for name in a.backends.split(","):
        try:
            backends[name] = get_backend(name)
            render_sample(xyz, label, cfg, backend=backends[name])  # warm-up: imports, GL context
        except Exception as exc:  # an optional backend that is not installed here
            print(f"{name:>9}: skipped ({type(exc).__name__}: {str(exc).splitlines()[0][:100]})")
            backends.pop(name, None)
    cases = [(name, t) for t in thread_counts for name in backends]
    times: dict[tuple[str, int], list[float]] = {c: [] for c in cases}
    phases: dict[tuple[str, int], list[dict[str, float]]] = {c: [] for c in cases}
    for _ in range(a.repeats):
        for name, threads in cases:
            clock = PhaseClock()
            t = time.perf_counter()
            render_sample(xyz, label, cfg, backend=backends[name], clock=clock, threads=threads)
            times[name, threads].append(time.perf_counter() - t)
            phases[name, threads].append(clock.seconds)
    print(f"render: {len(cfg.views)} views, {a.points} points, {cfg.image_size}^2, median of {a.repeats}, "
          f"{os.cpu_count()} cores")
    print("whole sample = shared work (spacing, projection, visibility, shading) + the backend's ownership pass")
    median = {c: {p: statistics.median(run[p] for run in runs) for p in PhaseClock.PHASES}
              for c, runs in phases.items()}
    for threads in thread_counts:
        print(f"  {threads} thread{'s' if threads > 1 else ''} per sample"
              + (" (neighbour queries; views in parallel where the backend allows: splat)" if threads > 1 else ""))
        base = statistics.median(times["splat", threads]) if "splat" in backends else None
        for name in backends:
            ts, own = times[name, threads], median[name, threads]["ownership"]
            ratio = (f"  -> {statistics.median(ts) / base:.2f}x the splat sample, "
                     f"{own / median['splat', threads]['ownership']:.2f}x its ownership pass"
                     if base and name != "splat" else "")
            print(f"{name:>11}: {statistics.median(ts):.3f} s/sample [min {min(ts):.3f}, max {max(ts):.3f}], "
                  f"ownership pass {own:.3f} s{ratio}")
        if "splat" in backends:
            split = ", ".join(f"{p} {median['splat', threads][p] * 1000:.0f} ms" for p in PhaseClock.PHASES)
            print(f"      split of the splat sample ({'thread-seconds' if threads > 1 else 'seconds'}): {split}")


if __name__ == "__main__":
    main()
