"""The benchmark job: one checkpoint per training class, each evaluated one-vs-rest, one table.

The paper trains on one class and tests on the others; its tables average a few such runs (MVTec
3D-AD: carrot, cookie, dowel). A single run's numbers move by several points with the training
class, so the table reports mean ± standard deviation over the training classes: per test class
(over the runs that scored it) and for the mean row (over each run's class mean).

Folder layout:
- `train_<class>_<key>/`: checkpoints; the key hashes the encode group and the train config, so a
  finished run is reused and one cut short resumes from its `resume.pt`;
- `eval_<class>/`: evaluate's run folder;
- `benchmark.json`, `benchmark.csv`, `benchmark.md` (the JSON written last).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from ..cache import locks
from ..catalog import Catalog, DatasetEntry
from ..errors import OptionError
from ..outputs.html_report import benchmark_page, write_page
from ..outputs.names import safe_name
from ..outputs.tables import write_benchmark
from ..stages.train import TrainConfig
from .checkpoint import reusable
from .evaluate import EvalOptions, evaluate, finished_run
from .train import check_model, select_rows, train


def mean_std(values: list[float]) -> tuple[float, float, int]:
    """Mean and sample standard deviation (ddof 1; 0 for one value) of the finite values, and their count."""
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], np.float64)
    if v.size == 0:
        return float("nan"), float("nan"), 0
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0, int(v.size)


def aggregate(runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Per test class and overall: {metric: [mean, std, n]} over the training runs (evaluate reports)."""
    keys = sorted({k for rep in runs.values() for vals in rep["per_class"].values() for k in vals})
    tested = sorted({c for rep in runs.values() for c in rep["per_class"]})
    per_class = {c: {k: list(mean_std([rep["per_class"][c].get(k, float("nan")) for rep in runs.values()
                                       if c in rep["per_class"]])) for k in keys} for c in tested}
    overall = {k: list(mean_std([rep["mean"].get(k, float("nan")) for rep in runs.values()])) for k in keys}
    return {"per_class": per_class, "mean": overall, "train_classes": list(runs)}


def run_key(encode_fp: str, cfg: TrainConfig) -> str:
    """8 hex digits of the encode group and train config: a changed config trains in a new folder.

    (Changed samples retrain in the same folder: `reusable` compares them.)
    """
    return hashlib.sha256(json.dumps([encode_fp, asdict(cfg)], sort_keys=True).encode()).hexdigest()[:8]


def _resumable(run_dir: Path, samples: str) -> bool:
    """Resume a killed training run only when it was training on these samples (`View.digest`)."""
    sides = sorted(run_dir.glob("prompts_e*.json"))
    return not sides or json.loads(sides[-1].read_text()).get("samples_sha256") == samples


def _given_run(catalog: Catalog, entry: DatasetEntry, cls: str, ckpt: Path, out: Path, opts: EvalOptions,
               log: Callable[[str], None]) -> tuple[dict[str, Any], bool]:
    """Evaluate a given checkpoint one-vs-rest with `cls` as its training class (reused when finished)."""
    eval_dir = out / f"eval_{safe_name(cls)}"
    eval_opts = EvalOptions(**{**asdict(opts), "protocol": "one-vs-rest", "classes": None, "train_classes": (cls,)})
    done = finished_run(eval_dir, ckpt, eval_opts)
    if done is not None:
        log(f"[{cls}] reusing the evaluation of {ckpt} in {eval_dir}")
        return done, True
    log(f"[{cls}] evaluating the given {ckpt} on the other classes -> {eval_dir}")
    return evaluate(catalog, entry, ckpt, eval_dir, eval_opts), False


def benchmark(catalog: Catalog, entry: DatasetEntry, train_classes: list[str], out: Path, cfg: TrainConfig,
              opts: EvalOptions, device: str = "cpu", split: str = "test",
              log: Callable[[str], None] | None = None, given: dict[str, Path] | None = None) -> dict[str, Any]:
    """Train (or reuse) one checkpoint per class, evaluate each one-vs-rest, write the averaged table.

    `given` {class: checkpoint} skips training for those classes: a checkpoint of ours or one in the
    authors' format (e.g. a released PointAD `.pth`), evaluated with that class left out.
    Returns the table, plus `reused` {class: True when both its checkpoint and evaluation were reused}
    (not written to benchmark.json, which stays the same on a rerun).
    """
    with locks.reading(catalog.cache, entry.name):
        return _benchmark(catalog, entry, train_classes, out, cfg, opts, device, split, log, given)


def _benchmark(catalog: Catalog, entry: DatasetEntry, train_classes: list[str], out: Path, cfg: TrainConfig,
               opts: EvalOptions, device: str, split: str, log: Callable[[str], None] | None,
               given: dict[str, Path] | None) -> dict[str, Any]:
    from ..stages.encode import resolve_device

    log = log or (lambda message: None)
    device = resolve_device(device)
    out.mkdir(parents=True, exist_ok=True)
    (out / "benchmark.json").unlink(missing_ok=True)
    runs: dict[str, dict[str, Any]] = {}
    reused: dict[str, bool] = {}
    given = given or {}
    unknown = sorted(set(given) - set(train_classes))
    if unknown:
        raise OptionError("checkpoint", unknown, f"not among the training classes {train_classes}")
    for cls in train_classes:
        if cls in given:
            runs[cls], reused[cls] = _given_run(catalog, entry, cls, Path(given[cls]), out, opts, log)
            continue
        data = select_rows(catalog, entry, [cls], split)
        run_dir = out / f"train_{safe_name(cls)}_{run_key(data.encode.attrs['fingerprint'], cfg)}"
        ckpt = run_dir / "prompts.pt"
        reused[cls] = reusable(ckpt, data.encode.attrs["fingerprint"], cfg, data.view.digest(data.rows))
        if reused[cls]:
            log(f"[{cls}] reusing {ckpt}")
        else:
            spec, resolved = check_model(data.encode, None, opts.weights)
            log(f"[{cls}] training on {len(data.rows)} samples -> {run_dir}")
            resume = _resumable(run_dir, data.view.digest(data.rows))
            train(data, cfg, run_dir, spec, resolved, device=device, resume=resume,
                  extra={"dataset": entry.name, "split": split})
        eval_dir = out / f"eval_{safe_name(cls)}"
        eval_opts = EvalOptions(**{**asdict(opts), "protocol": "one-vs-rest", "classes": None})
        done = finished_run(eval_dir, ckpt, eval_opts)
        if done is not None and done.get("encode_fingerprint") == data.encode.attrs["fingerprint"] \
                and done.get("samples_sha256") == data.view.digest():
            log(f"[{cls}] reusing the evaluation in {eval_dir}")
            runs[cls] = done
        else:
            log(f"[{cls}] evaluating the other classes -> {eval_dir}")
            reused[cls] = False
            runs[cls] = evaluate(catalog, entry, ckpt, eval_dir, eval_opts)
    table = aggregate(runs)
    header = {"dataset": entry.name, "seed": cfg.seed, "epochs": cfg.epochs, "modality": opts.modality, "split": split}
    write_page(out / "benchmark.html", benchmark_page(table, header, {c: f"eval_{safe_name(c)}/report.html"
                                                                     for c in table["train_classes"]}))
    write_benchmark(out, table, header, {c: f"eval_{safe_name(c)}/report.md" for c in table["train_classes"]})
    return {**table, "reused": reused}
