"""The metric tables people read: column order and headers, metrics.csv/.json and benchmark.csv/.md/.json.

`metrics.json` and `benchmark.json` are written last: a run folder without them is an interrupted run.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .atomic import write_text

METRIC_ORDER = ["i_auroc", "ap", "p_auroc", "p_ap", "aupro_official", "aupro_pointad", "p_auroc_object",
                "aupro_official_object", "aupro_pointad_object"]
HEADERS = {"i_auroc": "I-AUROC", "ap": "AP", "p_auroc": "P-AUROC", "p_ap": "P-AP",
           "aupro_official": "AUPRO (official)", "aupro_pointad": "AUPRO (PointAD-style)",
           "p_auroc_object": "P-AUROC (object)", "aupro_official_object": "AUPRO official (object)",
           "aupro_pointad_object": "AUPRO PointAD-style (object)"}
DASH = "\u2013"


def metric_columns(keys: Iterable[str]) -> list[str]:
    """Metric names in the paper's order, then any others alphabetically."""
    keys = set(keys)
    return [k for k in METRIC_ORDER if k in keys] + sorted(keys - set(METRIC_ORDER))


def write_metrics(out: Path, report: dict[str, Any]) -> None:
    """metrics.csv, then metrics.json last (its presence marks a finished run)."""
    keys = sorted(report["mean"])
    buf = io.StringIO(newline="")
    w = csv.writer(buf)
    w.writerow(["class", *keys, "train_classes", "seed", "protocol", "modality", "grid", "aupro"])
    grid = "x".join(map(str, report["grid"])) if isinstance(report["grid"], list) else report["grid"]
    for name, vals in [*report["per_class"].items(), ("mean", report["mean"])]:
        w.writerow([name, *[f"{vals[k]:.4f}" for k in keys], "+".join(report["train_classes"]),
                    report["seed"], report["protocol"], report["modality"], grid, report["aupro"]])
    write_text(out / "metrics.csv", buf.getvalue())
    write_text(out / "metrics.json", json.dumps(report, indent=1))


def _cell(stat: list[float]) -> str:
    mean, std, n = stat
    if not n:
        return DASH
    return f"{100 * mean:.1f} ± {100 * std:.1f}" if n > 1 else f"{100 * mean:.1f}"


def write_benchmark(out: Path, table: dict[str, Any], header: dict[str, Any], run_links: dict[str, str]) -> None:
    """benchmark.csv and benchmark.md, then benchmark.json last (it marks a finished benchmark).

    `table` is {"per_class"|"mean": {metric: [mean, std, n]}, "train_classes": [...]}; `run_links`
    maps a training class to its evaluate report's relative path.
    """
    keys = metric_columns(table["mean"])
    rows = [*table["per_class"].items(), ("mean", table["mean"])]
    buf = io.StringIO(newline="")
    w = csv.writer(buf)
    w.writerow(["class", *[f"{k}_{s}" for k in keys for s in ("mean", "std", "n")]])
    for name, vals in rows:
        w.writerow([name, *[f"{x:.4f}" if isinstance(x, float) else x for k in keys for x in vals[k]]])
    write_text(out / "benchmark.csv", buf.getvalue())
    lines = [f"# PointAD benchmark: {header['dataset']}", "",
             f"- training classes: {', '.join(table['train_classes'])} (one checkpoint each, seed {header['seed']}, "
             f"{header['epochs']} epochs)",
             f"- protocol: one-vs-rest; modality: {header['modality']}",
             "- cells: mean ± sample standard deviation over the training runs that scored the class, ×100; "
             "the mean row is over each run's mean over its classes", "",
             "| class | " + " | ".join(HEADERS.get(k, k) for k in keys) + " |", "|---|" + "---:|" * len(keys)]
    lines += [f"| {name} | " + " | ".join(_cell(vals[k]) for k in keys) + " |" for name, vals in rows[:-1]]
    lines += ["| **mean** | " + " | ".join(f"**{_cell(table['mean'][k])}**" for k in keys) + " |", ""]
    lines += ["Per-run reports: " + ", ".join(f"[{c}]({run_links[c]})" for c in table["train_classes"]), ""]
    write_text(out / "benchmark.md", "\n".join(lines))
    write_text(out / "benchmark.json", json.dumps({**header, **table}, indent=1))
