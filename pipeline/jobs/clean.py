"""The clean stage's job: catalog entry -> rows -> `clean/<fp>` group -> pending rows -> runner -> report.

`clean_task` runs in a worker: it loads its sample, cleans it, writes the row and marks it done,
or returns a one-line reason without writing anything that reads as done.
"""

from __future__ import annotations

import dataclasses
import json
from functools import lru_cache
from typing import Any

import numpy as np

from ..cache import schema, store
from ..cache.runner import RunOptions, RunReport, run_stage
from ..catalog import Catalog, DatasetEntry
from ..config import as_json_dict
from ..errors import one_line
from ..loaders import Loader, SampleRef, get_loader
from ..stages.clean import CleanConfig, clean_sample
from .identity import clean_config, clean_identity, index_rows


@lru_cache(maxsize=4)
def _loader(fmt: str, options_json: str) -> Loader:
    return get_loader(fmt, json.loads(options_json))


def failure(source: str, exc: BaseException) -> str:
    """A row's one-line error, naming its source file once."""
    msg = one_line(exc)
    return msg if source in msg else f"{source}: {msg}"


def clean_task(job: dict[str, Any]) -> list[tuple[int, str]]:
    """Worker: load one sample, clean it, write `clean/<fp>` row r, mark it done."""
    (row,), ref = job["rows"], SampleRef(**job["ref"])
    try:
        sample = _loader(job["format"], job["loader"]).load(ref)
        out = clean_sample(sample, CleanConfig(**job["config"]))
        schema.write_clean_row(store.open_stage(job["url"], "clean", job["fp"]), row, out)
        return [(row, "")]
    except Exception as exc:  # any failure is this row's, never the run's
        return [(row, failure(ref.source, exc))]


def _clean_group(root: Any, entry: DatasetEntry, fp: str, config: dict[str, Any], cfg: CleanConfig,
                 refs: list[SampleRef]) -> Any:
    loader = get_loader(entry.format, entry.loader)
    organized = bool(loader.organized)
    meta = store.Meta([r.id for r in refs], [r.cls for r in refs], [r.split for r in refs],
                      [r.defect for r in refs], [r.label for r in refs], [r.source for r in refs])
    grid_shape = [cfg.grid_size, cfg.grid_size] if organized and cfg.grid_size else None
    return schema.create_clean_group(root, fp, config, meta, {
        "grid_shape": grid_shape, "organized": organized, "has_rgb": bool(loader.has_rgb), "format": entry.format})


def run_clean(catalog: Catalog, entry: DatasetEntry, opts: RunOptions) -> tuple[RunReport, Any]:
    """Clean every row that is not done yet; return the report and the clean group."""
    cfg = clean_config(entry)  # a bad `clean:` value stops the run before any data is generated or read
    refs = index_rows(entry, opts.log)
    fp, config = clean_identity(entry, refs)
    root = store.open_dataset(catalog.cache, entry.name)
    grp = store.find_group(root, "clean", fp) or _clean_group(root, entry, fp, config, cfg, refs)
    url = store.dataset_url(catalog.cache, entry.name)
    jobs = [{"rows": [r], "url": url, "fp": fp, "format": entry.format, "ref": dataclasses.asdict(refs[r]),
             "loader": json.dumps(entry.loader, sort_keys=True), "config": as_json_dict(cfg)}
            for r in np.flatnonzero(~store.done_mask(grp)).tolist()]
    report = run_stage("clean", grp, fp, url, [r.id for r in refs], jobs, clean_task, opts)
    report.refs = refs
    return report, grp
