"""The demo job: the whole product on generated data, in one command, on a CPU.

Steps: write a self-contained catalog in the demo folder, generate the synthetic MVTec-layout data,
clean -> render -> encode it (`tiny`, or ViT-L-14-336 when weights are given), train prompts on one
class, evaluate one-vs-rest on the others, and print the table and the reports' paths. Every step
reuses what a previous run finished (the cache skips done rows, `benchmark` reuses a finished
checkpoint and evaluation), so a second run only checks and prints.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

DATASET = "synthetic"


@dataclass(frozen=True)
class DemoOptions:
    """What the demo runs; defaults finish in a few minutes on 2 CPU cores."""

    folder: Path = Path("demo")
    train_class: str = "ball"
    weights: str | None = None  # a CLIP ViT-L-14-336 file: the real backbone instead of `tiny`
    epochs: int = 15
    seed: int = 0
    workers: int = 0
    device: str = "auto"


def demo_catalog(folder: Path, seed: int) -> Path:
    """A catalog whose cache and data live inside the demo folder (nothing outside it is touched)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "catalog.yaml"
    path.write_text(yaml.safe_dump({
        "cache": "./cache",
        "datasets": {DATASET: {"format": "mvtec3d", "root": "./data/mvtec3d", "generate": {"seed": seed},
                               "splits": ["test"], "clean": {"units": "m"}}},
    }, sort_keys=False))
    return path


def run_demo(opts: DemoOptions, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run (or reuse) every step; return {"report", "report_html": paths, "metrics": evaluate's report, "reused"}."""
    from ..cache.runner import RunOptions
    from ..catalog import load_catalog
    from ..outputs.names import safe_name
    from ..stages.encode import resolve_device
    from ..stages.train import TrainConfig
    from .benchmark import benchmark
    from .encode import EncodeOptions, run_encode
    from .evaluate import TINY_NOTE, EvalOptions

    log = log or (lambda message: None)
    model = "ViT-L-14-336" if opts.weights else "tiny"
    if model == "tiny":
        log(f"note: {TINY_NOTE}")
    cat = load_catalog(demo_catalog(opts.folder, opts.seed))
    entry = cat.dataset(DATASET)
    device = resolve_device(opts.device)
    reused = True
    start = time.perf_counter()
    reports = run_encode(cat, entry, RunOptions(workers=opts.workers, log=log),
                         EncodeOptions(device=device, weights=opts.weights), overrides={"model": model})
    for rep in reports:
        ran = rep.succeeded > 0
        reused &= not ran
        log(f"{rep.stage:>8}: {'ran on ' + str(rep.succeeded) + ' rows' if ran else 'reused'} "
            f"({rep.done}/{rep.total} done, {len(rep.failures)} failed)")
    log(f"data and cache ready in {time.perf_counter() - start:.1f} s")
    result = benchmark(cat, entry, [opts.train_class], opts.folder / "runs", TrainConfig(epochs=opts.epochs),
                       EvalOptions(weights=opts.weights, progress=True), device, "test", log)
    reused &= result["reused"][opts.train_class]
    run = opts.folder / "runs" / f"eval_{safe_name(opts.train_class)}"
    return {"report": run / "report.md", "report_html": run / "report.html",
            "metrics": json.loads((run / "metrics.json").read_text()),
            "reused": reused, "model": model}
