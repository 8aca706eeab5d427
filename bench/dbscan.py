"""Clean's DBSCAN at scan resolution: Open3D's `cluster_dbscan` against `dbscan_labels`, side by side.

The input is what clean hands DBSCAN for a generated MVTec-layout scan (`make_synthetic`, one
good `bagel` of the test split at `--size`, 800 x 800 by default as MVTec 3D-AD's grids are): its
valid points after the plane removal, in metres. Both run on it in turn, A B A B ..., and the
labels are compared (they must be equal); figures are medians.

    python bench/dbscan.py [--size 800,800] [--repeats 3] [--smoke]

`--smoke`: a 128 x 160 grid, 1 repeat: a check that the bench runs, not a figure.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from pointad_pipe.pipeline.catalog import DatasetEntry  # noqa: E402
from pointad_pipe.pipeline.jobs.identity import clean_config  # noqa: E402
from pointad_pipe.pipeline.loaders import get_loader  # noqa: E402
from pointad_pipe.pipeline.stages import clean as clean_stage  # noqa: E402
from pointad_pipe.pipeline.stages.dbscan import dbscan_labels, open3d_labels  # noqa: E402
from pointad_pipe.pipeline.synthetic.generator import make_synthetic  # noqa: E402

SMOKE = {"size": "128,160", "repeats": 1}


def dbscan_input(size: tuple[int, int]) -> tuple[np.ndarray, float, int]:
    """The points clean gives DBSCAN for one generated scan, and its eps (in the cloud's units) and minimum."""
    with tempfile.TemporaryDirectory() as tmp:
        root = make_synthetic(Path(tmp), seed=0, classes=["bagel"], n_train=1, n_test_good=1, n_test_per_defect=0,
                              size=size, layouts=("mvtec3d",))["mvtec3d"]
        loader = get_loader("mvtec3d")
        sample = loader.load(loader.index(root, ["bagel"], ["test"])[0])
    cfg = clean_config(DatasetEntry(name="bench", format="mvtec3d", root=root, overrides={"clean": {"units": "m"}}))
    seen: list[np.ndarray] = []
    original = clean_stage.largest_cluster

    def capture(xyz: np.ndarray, *args, **kwargs) -> np.ndarray:  # noqa: ANN002, ANN003 - keeps clean's call
        seen.append(xyz.copy())
        return original(xyz, *args, **kwargs)

    clean_stage.largest_cluster = capture  # clean's own steps give the input: nothing is redone here
    try:
        clean_stage.clean_sample(sample, cfg)
    finally:
        clean_stage.largest_cluster = original
    return seen[0], cfg.dbscan_eps, cfg.dbscan_min_points


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="800,800", help="grid height,width of the generated scan")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--smoke", action="store_true", help=f"tiny sizes {SMOKE} (explicit flags still win)")
    if ap.parse_known_args()[0].smoke:
        ap.set_defaults(**SMOKE)
    a = ap.parse_args()
    size = tuple(int(v) for v in a.size.split(","))
    xyz, eps, min_points = dbscan_input(size)
    dbscan_labels(xyz[:1000], eps, min_points)  # compile (or load) the loop outside the timings
    seconds: dict[str, list[float]] = {"open3d": [], "ours": []}
    labels = {}
    for _ in range(a.repeats):
        for name, fn in (("open3d", open3d_labels), ("ours", dbscan_labels)):
            start = time.perf_counter()
            labels[name] = fn(xyz, eps, min_points)
            seconds[name].append(time.perf_counter() - start)
    same = np.array_equal(labels["open3d"], labels["ours"])
    med = {k: statistics.median(v) for k, v in seconds.items()}
    clusters = int(labels["ours"].max()) + 1
    print(f"dbscan: grid {size[0]}x{size[1]}, {len(xyz)} points after the plane, eps {eps:g} m, "
          f"min {min_points} points, {clusters} clusters, median of {a.repeats}, {os.cpu_count()} cores")
    print(f"  open3d cluster_dbscan {med['open3d']:.3f} s, dbscan_labels {med['ours']:.3f} s "
          f"-> {med['open3d'] / med['ours']:.1f}x; labels identical: {same}")
    if not same:
        raise SystemExit(f"labels differ on {int((labels['open3d'] != labels['ours']).sum())} points")


if __name__ == "__main__":
    main()
