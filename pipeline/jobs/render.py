"""The render stage's job: run clean where needed, then render every sample whose clean row is current.

`render_task` runs in a worker: it reads its cleaned cloud (clean row `src`), renders the views and
writes render row r's data, or returns a one-line reason; the driving process marks the row.
"""

from __future__ import annotations

import importlib
from typing import Any

from ..cache import locks, rows, schema, store
from ..cache.runner import RunOptions, RunReport, disk_guard, dry_report, run_stage, threads_per_task
from ..catalog import Catalog, DatasetEntry
from ..config import as_json_dict
from ..renderers import BACKENDS
from ..stages.render import RenderConfig, render_sample
from .clean import failure, run_clean
from .identity import render_config, render_identity
from .stagerows import ready, sub_plan, widen


def render_task(job: dict[str, Any]) -> list[tuple[int, str]]:
    """Worker: read one cleaned cloud, render its views, write `render/<fp>` row r's data."""
    (row,) = job["rows"]
    try:
        cloud = schema.read_clean_row(store.open_stage(job["url"], "clean", job["clean_fp"]), job["src"],
                                      with_rgb_grid=job["rgb"])
        out = render_sample(cloud.xyz, cloud.label, RenderConfig(**job["config"]), grid=cloud.grid,
                            rgb_grid=cloud.rgb_grid, threads=job.get("threads", 1))
        schema.write_render_row(store.open_stage(job["url"], "render", job["fp"]), row, out)
        return [(row, "")]
    except Exception as exc:
        return [(row, failure(job["source"], exc))]


def _render_group(root: Any, fp: str, clean_grp: Any, cfg: RenderConfig) -> Any:
    return schema.create_render_group(root, fp, clean_grp, as_json_dict(cfg), len(cfg.views), cfg.image_size,
                                      cfg.backend, {
                                          "views": [list(v) for v in cfg.views],
                                          "pre_rotation": [list(v) for v in cfg.pre_rotation],
                                          "backend": cfg.backend,
                                          "point_size": {"splat_radius_spacings": cfg.splat_radius,
                                                         "max_px": cfg.splat_max_px},
                                          "camera_model": "pinhole", "visibility": cfg.visibility})


def run_render(catalog: Catalog, entry: DatasetEntry, opts: RunOptions,
               overrides: dict[str, Any] | None = None) -> list[RunReport]:
    """Run clean where needed, then render every sample without a current render row; return both reports."""
    cfg = render_config(entry, overrides)
    importlib.import_module(f"..renderers.{BACKENDS[cfg.backend][0]}", __package__)  # fail before any work
    with disk_guard("render", store.dataset_url(catalog.cache, entry.name)), \
            locks.writing(catalog.cache, entry.name, enabled=not opts.dry_run):
        clean_report, clean_grp = run_clean(catalog, entry, opts)
        fp = render_identity(cfg, clean_report.fingerprint)
        url = store.dataset_url(catalog.cache, entry.name)
        pos = ready(clean_report)
        keys = [(clean_report.refs[k].id, clean_report.versions[k]) for k in pos]
        root = store.open_dataset(catalog.cache, entry.name, mode="r" if opts.dry_run else "a") \
            if clean_grp is not None else None
        grp = store.find_group(root, "render", fp) if root is not None else None
        if opts.dry_run:
            return [clean_report, widen(dry_report("render", fp, url, keys, sub_plan(grp, keys, opts.retry_failed)),
                                        pos, clean_report)]
        grp = grp or _render_group(root, fp, clean_grp, cfg)
        p = sub_plan(grp, keys, opts.retry_failed)
        src = [int(clean_report.rows[k]) for k in pos]
        targets = rows.reserve(grp, p, keys, {"rows/upstream": src})
        threads = threads_per_task(opts.workers, opts.scheduler, len(targets))
        jobs = [{"rows": [r], "src": src[k], "url": url, "fp": fp, "clean_fp": clean_report.fingerprint,
                 "config": as_json_dict(cfg), "source": clean_report.refs[pos[k]].source,
                 "rgb": schema.render_has_rgb(grp), "threads": threads}
                for k, r in sorted(targets.items(), key=lambda kr: kr[1])]
        report = run_stage("render", grp, fp, url, keys, p, targets, jobs, render_task, opts)
    return [clean_report, widen(report, pos, clean_report)]
