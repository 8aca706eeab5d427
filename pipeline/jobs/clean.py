"""The clean stage's job: catalog entry -> samples and versions -> `clean/<fp>` -> rows to do -> runner -> report.

`clean_task` runs in a worker: it loads its sample, cleans it and writes the row's data, or
returns a one-line reason; the driving process marks the row done or failed.
"""

from __future__ import annotations

import dataclasses
import json
from functools import lru_cache
from typing import Any

from ..cache import locks, rows, schema, store
from ..cache.runner import RunOptions, RunReport, disk_guard, dry_report, run_stage
from ..cache.versions import FileMemo, sample_versions
from ..catalog import Catalog, DatasetEntry
from ..config import as_json_dict
from ..environment import require_open3d
from ..errors import one_line
from ..loaders import Loader, SampleRef, get_loader
from ..stages.clean import CleanConfig, clean_sample
from .identity import clean_config, clean_identity, dataset_meta, index_rows
from .stagerows import sub_plan


@lru_cache(maxsize=4)
def _loader(fmt: str, options_json: str) -> Loader:
    return get_loader(fmt, json.loads(options_json))


def failure(source: str, exc: BaseException) -> str:
    """A row's one-line error, naming its source file once."""
    msg = one_line(exc)
    return msg if source in msg else f"{source}: {msg}"


def clean_task(job: dict[str, Any]) -> list[tuple[int, str]]:
    """Worker: load one sample, clean it, write `clean/<fp>` row r's data."""
    (row,), ref = job["rows"], SampleRef(**job["ref"])
    try:
        sample = _loader(job["format"], job["loader"]).load(ref)
        out = clean_sample(sample, CleanConfig(**job["config"]))
        schema.write_clean_row(store.open_stage(job["url"], "clean", job["fp"]), row, out)
        return [(row, "")]
    except Exception as exc:  # any failure is this row's, never the run's
        return [(row, failure(ref.source, exc))]


def _clean_group(root: Any, entry: DatasetEntry, fp: str, config: dict[str, Any], cfg: CleanConfig) -> Any:
    loader = get_loader(entry.format, entry.loader)
    organized = bool(loader.organized)
    grid_shape = [cfg.grid_size, cfg.grid_size] if organized and cfg.grid_size else None
    return schema.create_clean_group(root, fp, config, {
        "grid_shape": grid_shape, "organized": organized, "has_rgb": bool(loader.has_rgb), "format": entry.format})


def run_clean(catalog: Catalog, entry: DatasetEntry, opts: RunOptions) -> tuple[RunReport, Any]:
    """Clean every sample without a current or remembered-failed row; return the report and the clean group.

    Each sample's version (its files' digest) decides: a new or edited file gets a row, a touched,
    moved or copied one does not. With `opts.dry_run` nothing is written and the group may be None.
    """
    cfg = clean_config(entry)  # a bad `clean:` value stops the run before any data is generated or read
    if not opts.dry_run:
        require_open3d()  # a missing system library is one line now, not one per row
    refs = index_rows(entry, opts.log)
    fp, config = clean_identity(entry)
    url = store.dataset_url(catalog.cache, entry.name)
    with disk_guard("clean", store.dataset_url(catalog.cache, entry.name)), \
            locks.writing(catalog.cache, entry.name, enabled=not opts.dry_run):
        exists = store.dataset_exists(catalog.cache, entry.name)
        root = store.open_dataset(catalog.cache, entry.name, mode="r" if opts.dry_run else "a") \
            if exists or not opts.dry_run else None
        memo = FileMemo.load(root)
        keys = list(zip([r.id for r in refs], sample_versions(refs, entry.root, memo), strict=True))
        grp = store.find_group(root, "clean", fp) if root is not None else None
        if opts.dry_run:
            report = dry_report("clean", fp, url, keys, sub_plan(grp, keys, opts.retry_failed))
        else:
            memo.save(root)
            grp = grp or _clean_group(root, entry, fp, config, cfg)
            p = sub_plan(grp, keys, opts.retry_failed)
            targets = rows.reserve(grp, p, keys, dataset_meta(entry, refs).columns() if p.todo else None)
            jobs = [{"rows": [r], "url": url, "fp": fp, "format": entry.format, "ref": dataclasses.asdict(refs[k]),
                     "loader": json.dumps(entry.loader, sort_keys=True), "config": as_json_dict(cfg)}
                    for k, r in sorted(targets.items(), key=lambda kr: kr[1])]
            report = run_stage("clean", grp, fp, url, keys, p, targets, jobs, clean_task, opts)
    report.refs, report.versions, report.hashed = refs, [v for _, v in keys], memo.hashed
    return report, grp
