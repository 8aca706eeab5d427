"""The whole chain, stage by stage, in seconds per sample, with 1 and 2 dask workers, and how it scales.

A generated MVTec-layout dataset (`make_synthetic`, its test split: per class `--good` good samples
and `--per-defect` of each of the 5 defects; 5 classes x (5 + 5 x 3) = 100 samples by default) is
run through what a user types, each command a fresh process, in a fresh cache per worker count:

    pointad-pipe clean | render | encode --model tiny  -j W      (the cached stages, W dask workers)
    pointad-pipe train --train-class ball --epochs 1             (one process; the cache only)
    pointad-pipe evaluate --protocol one-vs-rest                 (one process; the other classes)

Each figure is the command's wall time (python start-up, imports and the dask cluster included)
over the samples it worked on. Scaling efficiency = time with 1 worker / (2 x time with 2 workers):
1.0 is perfect, 0.5 is no gain. train and evaluate take no workers: they run once, on the first
worker count's cache, and count the same in every column of the chain. The stage split of render
comes from `bench/render.py`; that of clean is printed here with `--clean-split` (in this process).

    python bench/pipeline.py [--good 5] [--per-defect 3] [--workers 1,2] [--clean-split] [--smoke]

`--smoke`: 2 classes of 2 good samples each (4 samples; the commands' start-up is most of it),
small scenes (a 112^2 grid, 2 views of 112^2): a check that the bench runs, not a figure.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

SMOKE = {"good": 2, "per_defect": 0, "classes": "ball,bagel", "size": "128,160", "small": True}
#: Catalog overrides of `--small` scenes: the scans resampled to a 112^2 grid, 2 views of 112^2.
SMALL = {"clean": {"grid_size": 112}, "render": {"views": [["x", 0], ["y", 15]], "image_size": 112}}
CACHED = ("clean", "render", "encode")
STAGES = (*CACHED, "train", "evaluate")
TRAIN_CLASS = "ball"


def command(folder: Path, stage: str, workers: int) -> list[str]:
    """The CLI call of one stage for the catalog in `folder`."""
    base = [sys.executable, "-m", "pointad_pipe.cli.main", stage, "--catalog", str(folder / "catalog.yaml"),
            "-d", "bench"]
    if stage in CACHED:
        return base + ["-j", str(workers)] + (["--model", "tiny"] if stage == "encode" else [])
    if stage == "train":
        return base + ["--train-class", TRAIN_CLASS, "--epochs", "1", "--out", str(folder / "run")]
    return base + ["--checkpoint", str(folder / "run" / "prompts.pt"), "--out", str(folder / "eval"),
                   "--no-ply", "--montage", "0", "--errors", "0"]


def write_catalog(root: Path, folder: Path, small: bool) -> None:
    """A one-dataset catalog in `folder`, its cache beside it."""
    folder.mkdir(parents=True)
    entry = {"format": "mvtec3d", "root": str(root), "splits": ["test"], "clean": {"units": "m"}}
    if small:
        entry = {**entry, "clean": {**entry["clean"], **SMALL["clean"]}, "render": SMALL["render"]}
    (folder / "catalog.yaml").write_text(yaml.safe_dump({"cache": str(folder / "cache"), "datasets": {"bench": entry}}))


def run_stages(folder: Path, stages: tuple[str, ...], workers: int, counts: dict[str, int]) -> dict[str, float]:
    """Seconds per sample of each of `stages`, run in order on the catalog in `folder`."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    out = {}
    for stage in stages:
        start = time.perf_counter()
        proc = subprocess.run(command(folder, stage, workers), capture_output=True, text=True, env=env)
        out[stage] = (time.perf_counter() - start) / counts[stage]
        if proc.returncode != 0:
            sys.exit(f"{stage} -j {workers} failed ({proc.returncode}):\n{proc.stdout[-2000:]}{proc.stderr[-3000:]}")
    return out


def sample_counts(root: Path, classes: list[str]) -> dict[str, int]:
    """How many samples each stage works on: all of them, the training class's, the others'."""
    from pointad_pipe.pipeline.loaders import get_loader

    refs = get_loader("mvtec3d").index(root, classes, ["test"])
    train = sum(r.cls == TRAIN_CLASS for r in refs)
    return {"clean": len(refs), "render": len(refs), "encode": len(refs), "train": train,
            "evaluate": len(refs) - train}


def clean_split(root: Path, classes: list[str], repeats: int = 1) -> dict[str, float]:
    """Seconds per sample of clean's steps, in this process: read, RANSAC, DBSCAN, resample (the rest)."""
    import numpy as np

    from pointad_pipe.pipeline.catalog import DatasetEntry
    from pointad_pipe.pipeline.jobs.identity import clean_config
    from pointad_pipe.pipeline.loaders import get_loader
    from pointad_pipe.pipeline.stages import clean as clean_stage

    entry = DatasetEntry(name="bench", format="mvtec3d", root=root, overrides={"clean": {"units": "m"}})
    cfg, loader = clean_config(entry), get_loader("mvtec3d")
    refs = loader.index(root, classes, ["test"])
    spent = {"read": 0.0, "ransac": 0.0, "dbscan": 0.0, "whole clean": 0.0}
    originals = {"ransac": clean_stage.remove_plane, "dbscan": clean_stage.largest_cluster}

    def timed(name: str):  # noqa: ANN202 - wraps a step to add up its seconds
        def call(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            start = time.perf_counter()
            try:
                return originals[name](*args, **kwargs)
            finally:
                spent[name] += time.perf_counter() - start
        return call

    clean_stage.remove_plane, clean_stage.largest_cluster = timed("ransac"), timed("dbscan")
    try:
        for _ in range(repeats):
            for ref in refs:
                start = time.perf_counter()
                sample = loader.load(ref)
                spent["read"] += time.perf_counter() - start
                start = time.perf_counter()
                clean_stage.clean_sample(sample, cfg)
                spent["whole clean"] += time.perf_counter() - start
    finally:
        clean_stage.remove_plane, clean_stage.largest_cluster = originals["ransac"], originals["dbscan"]
    per = {k: v / (len(refs) * repeats) for k, v in spent.items()}
    per["resample and the rest"] = per["whole clean"] - per["ransac"] - per["dbscan"]
    return {k: float(np.round(v, 6)) for k, v in per.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--good", type=int, default=5, help="good test samples per class")
    ap.add_argument("--per-defect", type=int, default=3, help="test samples per defect kind and class")
    ap.add_argument("--classes", default="bagel,ball,box,can,cone")
    ap.add_argument("--size", default="256,320", help="grid height,width of the generated scans")
    ap.add_argument("--workers", default="1,2", help="dask worker counts to compare")
    ap.add_argument("--clean-split", action="store_true", help="also time clean's steps in this process")
    ap.add_argument("--small", action="store_true", help="small scenes: a 112^2 grid, 2 views of 112^2")
    ap.add_argument("--smoke", action="store_true", help=f"tiny sizes {SMOKE} (explicit flags still win)")
    if ap.parse_known_args()[0].smoke:
        ap.set_defaults(**SMOKE)
    a = ap.parse_args()
    from pointad_pipe.pipeline.synthetic.generator import make_synthetic

    classes = a.classes.split(",")
    size = tuple(int(v) for v in a.size.split(","))
    counts_of = [int(w) for w in a.workers.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        root = make_synthetic(Path(tmp) / "data", seed=0, classes=classes, n_train=1, n_test_good=a.good,
                              n_test_per_defect=a.per_defect, size=size, layouts=("mvtec3d",))["mvtec3d"]
        counts = sample_counts(root, classes)
        per = {}
        for w in counts_of:
            write_catalog(root, Path(tmp) / f"j{w}", a.small)
            per[w] = run_stages(Path(tmp) / f"j{w}", CACHED, w, counts)
        once = run_stages(Path(tmp) / f"j{counts_of[0]}", ("train", "evaluate"), 0, counts)
        per = {w: {**per[w], **once} for w in counts_of}
        split = clean_split(root, classes) if a.clean_split else None
    print(f"pipeline: {counts['clean']} samples ({len(classes)} classes, grid {size[0]}x{size[1]}"
          f"{', small scenes' if a.small else ''}), tiny model, CPU, {os.cpu_count()} cores; seconds per sample, "
          f"each command a fresh process")
    print(f"{'stage':>9} " + " ".join(f"{f'{w} worker' + ('s' if w > 1 else ''):>10}" for w in counts_of)
          + ("  scaling efficiency" if {1, 2} <= set(counts_of) else ""))
    for stage in STAGES:
        row = " ".join(f"{per[w][stage]:>10.3f}" for w in counts_of)
        eff = f"  {per[1][stage] / (2 * per[2][stage]):.2f}" if {1, 2} <= set(counts_of) and stage in CACHED else ""
        print(f"{stage:>9} {row}{eff}" + ("  (one process, run once)" if stage not in CACHED else ""))
    totals = {w: sum(per[w][s] * counts[s] for s in STAGES) / counts["clean"] for w in counts_of}
    eff = (f"  {totals[1] / (2 * totals[2]):.2f}" if {1, 2} <= set(counts_of) else "")
    print(f"{'chain':>9} " + " ".join(f"{totals[w]:>10.3f}" for w in counts_of) + eff)
    if split:
        print("clean split (s/sample, this process): " + ", ".join(f"{k} {v:.3f}" for k, v in split.items()))
    print(json.dumps({"samples": counts["clean"], "seconds_per_sample": {str(w): per[w] for w in counts_of}}))


if __name__ == "__main__":
    main()
