"""Every bench script still runs on the current code: `python bench/<script>.py --smoke` from the repo root.

A smoke run is tiny (a few samples, small clouds, one repeat) and its figures mean nothing; what is
checked is that it exits 0 and prints the lines of figures the full run prints, with numbers in them.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NUM = r"[-+]?\d+(?:\.\d+)?"

#: each script's printed figures at its --smoke sizes (regular expressions, each must match a line)
EXPECTED: dict[str, list[str]] = {
    "checksums": [
        r"^checksums: encode rows of patch \(9, 1, 16, 32\) float16 \(0\.0 MB\), 2 rows, median of 1$",
        rf"^  read: plain {NUM} ms/row, checked {NUM} ms/row -> checked/plain x{NUM} \({NUM} %\)$",
        rf"^  write: CRC-32 of one patch row {NUM} ms \({NUM} GB/s\)$",
    ],
    "dbscan": [
        r"^dbscan: grid 128x160, \d+ points after the plane, eps 0.006 m, min 30 points, \d+ clusters, median of 1",
        rf"^  open3d cluster_dbscan {NUM} s, dbscan_labels {NUM} s -> {NUM}x; labels identical: True$",
    ],
    "encode": [
        r"^encode: 9 views per sample, 1 samples, median of 1, fp32 on CPU",
        rf"^ +tiny: bare encode_image {NUM} ms/view, encoder \(patch tokens \+ change\) {NUM} ms/view, "
        rf"stage {NUM} ms/view -> stage adds {NUM} % over the bare forward \({NUM} % over the encoder forward\)$",
        rf"^peak RSS \(tiny\): 1 samples {NUM} MB, 2 samples {NUM} MB \({NUM} %\)$",
        rf'^\{{"rss_mb": \[{NUM}, {NUM}\]\}}$',
    ],
    "evaluate_memory": [
        rf"^ +1 class x N: +6 samples, peak RSS +{NUM} MB$",
        rf"^ +2 classes x N: +12 samples, peak RSS +{NUM} MB$",
        rf"^ +1 class x 2N: +12 samples, peak RSS +{NUM} MB$",
        rf"^2x samples as 2x classes: +peak RSS x{NUM} \({NUM} %\)$",
        rf"^2x samples in one class: +peak RSS x{NUM} \({NUM} %\)$",
    ],
    "incremental": [
        r"^incremental: N = 4, k = 1, tiny model, full chain in one process, cold encoder each run$",
        rf"^  from scratch \(5 samples\): {NUM} s; after adding 1: {NUM} s -> incremental x{NUM} faster",
        r"^no-change rerun: 120 rows \(3 stages, 1 view, 1 layer\), nothing to do$",
        rf"^  in process: {NUM} s \(median of 1; target < 3\); whole command {NUM} s, of which python start-up "
        rf"{NUM} s$",
    ],
    "predict_memory": [
        r"^predict memory: one file \(3000 points\), a fresh process per case, CPU fp32",
        rf"^ +tiny: model loaded twice {NUM} MB, once {NUM} MB -> once/twice x{NUM} \({NUM} %\)$",
    ],
    "pipeline": [
        r"^pipeline: 4 samples \(2 classes, grid 128x160, small scenes\), tiny model, CPU, \d+ cores; seconds per",
        r"^ +stage +1 worker +2 workers +scaling efficiency$",
        *(rf"^ +{stage} +{NUM} +{NUM} +{NUM}$" for stage in ("clean", "render", "encode", "chain")),
        *(rf"^ +{stage} +{NUM} +{NUM}  \(one process, run once\)$" for stage in ("train", "evaluate")),
    ],
    "render": [
        r"^render: 9 views, 5000 points, 336\^2, median of 1, \d+ cores$",
        r"^whole sample = shared work",
        r"^  1 thread per sample$",
        r"^  2 threads per sample \(neighbour queries; views in parallel",
        rf"^ +splat: {NUM} s/sample \[min {NUM}, max {NUM}\], ownership pass {NUM} s$",
        rf"^ +split of the splat sample \(seconds\): spacing {NUM} ms, projection {NUM} ms, ownership {NUM} ms, "
        rf"visibility {NUM} ms, shading {NUM} ms$",
        # the optional backends: measured against splat where installed, reported as skipped where not
        rf"^ +open3d: ({NUM} s/sample .* -> {NUM}x the splat sample, {NUM}x its ownership pass|skipped \(.*\))$",
        rf"^ +pyrender: ({NUM} s/sample .* -> {NUM}x the splat sample, {NUM}x its ownership pass|skipped \(.*\))$",
    ],
    "score": [
        rf"^score: 9 views, 336\^2, 2000 points, D=768: {NUM} ms/sample \[min {NUM}, max {NUM}\] \(target <= 50 ms\)$",
    ],
    "train": [
        r"^train: one epoch over 2 samples x 9 views, batch 4, CPU",
        rf"^ +tiny: from the cache {NUM} s/epoch, re-encoding every step {NUM} s/epoch -> {NUM}x$",
    ],
}


def test_every_bench_script_is_smoked() -> None:
    scripts = {p.stem for p in (ROOT / "bench").glob("*.py") if not p.name.startswith("_")}
    assert scripts == set(EXPECTED)


@pytest.mark.slow
@pytest.mark.parametrize("script", sorted(EXPECTED))
def test_bench_smoke(script: str) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
           "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS", "1")}
    proc = subprocess.run([sys.executable, f"bench/{script}.py", "--smoke"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    lines = proc.stdout.splitlines()
    for pattern in EXPECTED[script]:
        assert any(re.search(pattern, line) for line in lines), f"no line matches {pattern!r} in:\n{proc.stdout}"
