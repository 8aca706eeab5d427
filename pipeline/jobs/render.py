"""The render stage's job: run clean where needed, then render every row not done yet.

`render_task` runs in a worker: it reads its cleaned cloud, renders the views, writes the row and
marks it done, or returns a one-line reason. A row whose clean failed fails here with that reason.
"""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np

from ..cache import schema, store
from ..cache.runner import RunOptions, RunReport, run_stage
from ..catalog import Catalog, DatasetEntry
from ..config import as_json_dict
from ..renderers import BACKENDS
from ..stages.render import RenderConfig, render_sample
from .clean import failure, run_clean
from .identity import render_config, render_identity


def render_task(job: dict[str, Any]) -> list[tuple[int, str]]:
    """Worker: read one cleaned cloud, render its views, write `render/<fp>` row r, mark it done."""
    (row,) = job["rows"]
    try:
        cloud = schema.read_clean_row(store.open_stage(job["url"], "clean", job["clean_fp"]), row,
                                      with_rgb_grid=job["rgb"])
        out = render_sample(cloud.xyz, cloud.label, RenderConfig(**job["config"]), grid=cloud.grid,
                            rgb_grid=cloud.rgb_grid)
        schema.write_render_row(store.open_stage(job["url"], "render", job["fp"]), row, out)
        return [(row, "")]
    except Exception as exc:
        return [(row, failure(job["source"], exc))]


def _render_group(root: Any, fp: str, clean_grp: Any, cfg: RenderConfig, n: int) -> Any:
    return schema.create_render_group(root, fp, clean_grp, as_json_dict(cfg), n, len(cfg.views), cfg.image_size,
                                      cfg.backend, {
                                          "views": [list(v) for v in cfg.views],
                                          "pre_rotation": [list(v) for v in cfg.pre_rotation],
                                          "backend": cfg.backend,
                                          "point_size": {"splat_radius_spacings": cfg.splat_radius,
                                                         "max_px": cfg.splat_max_px},
                                          "camera_model": "pinhole", "visibility": cfg.visibility})


def run_render(catalog: Catalog, entry: DatasetEntry, opts: RunOptions,
               overrides: dict[str, Any] | None = None) -> list[RunReport]:
    """Run clean where needed, then render every row not done yet; return both stages' reports."""
    cfg = render_config(entry, overrides)
    importlib.import_module(f"..renderers.{BACKENDS[cfg.backend][0]}", __package__)  # fail before any work
    clean_report, clean_grp = run_clean(catalog, entry, opts)
    refs = clean_report.refs
    clean_fp = clean_grp.attrs["fingerprint"]
    fp = render_identity(cfg, clean_fp)
    root = store.open_dataset(catalog.cache, entry.name)
    grp = store.find_group(root, "render", fp) or _render_group(root, fp, clean_grp, cfg, len(refs))
    url = store.dataset_url(catalog.cache, entry.name)
    todo = ~store.done_mask(grp)
    clean_done, clean_errors = store.upstream_failures(grp, clean_grp, "clean", todo)
    jobs = [{"rows": [r], "url": url, "fp": fp, "clean_fp": clean_fp, "config": as_json_dict(cfg),
             "source": refs[r].source, "rgb": schema.render_has_rgb(grp)}
            for r in np.flatnonzero(todo & clean_done).tolist()]
    report = run_stage("render", grp, fp, url, [r.id for r in refs], jobs, render_task, opts)
    report.refs = refs
    report.failures += [(int(r), refs[r].id, f"clean failed: {clean_errors[r]}")
                        for r in np.flatnonzero(todo & ~clean_done)]
    return [clean_report, report]
