"""Stage drivers: catalog entry -> fingerprinted group -> pending rows -> runner -> report.

The pure cores live in `clean.py` and `render.py`; this module wires them to the store and the
runner. Each `*_task` runs in a worker: it reads its row, computes, writes, marks the row done and
returns (row, '') - or (row, one-line reason) without writing anything that reads as done.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
import sys
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from . import store
from .catalog import Catalog, DatasetEntry
from .clean import FORMAT_DEFAULTS as CLEAN_DEFAULTS
from .clean import CleanConfig, clean_sample
from .config import as_json_dict, build_config
from .errors import CacheMissing, PointadError
from .loaders import SampleRef, get_loader
from .render import RenderConfig, format_defaults, render_sample
from .renderers import BACKENDS
from .runner import RunReport, one_line, run_tasks


@dataclass(frozen=True)
class RunOptions:
    """Speed and behaviour knobs: never fingerprinted."""

    workers: int = 0
    scheduler: str | None = None
    quiet: bool = False


# ---------------------------------------------------------------- configs and identities


def clean_config(entry: DatasetEntry) -> CleanConfig:
    """The dataset's clean config: format defaults, then the catalog's `clean:` overrides."""
    return build_config(CleanConfig, CLEAN_DEFAULTS[entry.format], entry.overrides.get("clean", {}),
                        f"datasets.{entry.name}.clean")


def render_config(entry: DatasetEntry, cli: dict[str, Any] | None = None) -> RenderConfig:
    """The dataset's render config: format view lists, catalog `render:` overrides, then CLI flags."""
    overrides = {**entry.overrides.get("render", {}), **{k: v for k, v in (cli or {}).items() if v is not None}}
    cfg = build_config(RenderConfig, format_defaults(entry.format), overrides, f"datasets.{entry.name}.render")
    if cfg.backend not in BACKENDS:
        raise PointadError(f"unknown render backend {cfg.backend!r}; expected one of {sorted(BACKENDS)}")
    return cfg


def ensure_root(entry: DatasetEntry) -> None:
    """Generate a synthetic dataset whose root is missing (entries with `generate:`), else check the root."""
    if not entry.root.exists() and entry.generate is not None:
        from .loaders.synthetic import make_synthetic

        opts = {k: v for k, v in entry.generate.items()}
        print(f"generating synthetic data into {entry.root.parent} ...", file=sys.stderr)
        make_synthetic(entry.root.parent, layouts=(entry.format,), **opts)
    entry.require_root()


def index_rows(entry: DatasetEntry) -> list[SampleRef]:
    """The dataset's rows, in cache order."""
    ensure_root(entry)
    refs = get_loader(entry.format, entry.loader).index(entry.root, entry.classes, entry.splits)
    if not refs:
        raise PointadError(f"datasets.{entry.name}: no samples found under {entry.root}")
    return refs


def clean_identity(entry: DatasetEntry, refs: list[SampleRef]) -> tuple[str, dict[str, Any]]:
    """Fingerprint and full config of the clean stage; the row list is part of it."""
    # `files` labels come from labels.csv, not from the paths, so they join the row list's hash
    lines = [f"{r.id}\t{r.source}" + (f"\t{r.label}\t{r.defect}" if entry.format == "files" else "") for r in refs]
    rows = hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16]
    config = {"format": entry.format, "root": str(entry.root), "classes": entry.classes, "splits": entry.splits,
              "loader": entry.loader, "rows_sha256": rows, "clean": as_json_dict(clean_config(entry))}
    config = json.loads(json.dumps(config))
    return store.fingerprint("clean", config, None), config


# ---------------------------------------------------------------- clean


@lru_cache(maxsize=4)
def _loader(fmt: str, options_json: str):  # noqa: ANN202 - a Loader
    return get_loader(fmt, json.loads(options_json))


def _failure(source: str, exc: BaseException) -> str:
    msg = one_line(exc)
    return msg if source in msg else f"{source}: {msg}"


def clean_task(job: dict[str, Any]) -> list[tuple[int, str]]:
    """Worker: load one sample, clean it, write `clean/<fp>/points/<r>/*`, mark it done."""
    (row,), ref = job["rows"], SampleRef(**job["ref"])
    try:
        sample = _loader(job["format"], job["loader"]).load(ref)
        cfg = CleanConfig(**job["config"])
        out = clean_sample(sample, cfg)
        grp = store.open_stage(job["url"], "clean", job["fp"])
        store.write_row(grp, row, {}, out.arrays())
        if out.grid_shape is not None:
            grp[f"points/{row}/grid"].attrs["grid_shape"] = list(out.grid_shape)
        if out.rgb_grid is not None:  # beyond STORE.md's list: the registered RGB image for `render`
            grp.create_array(f"rgb_grid/{row}", data=out.rgb_grid, overwrite=True)
        store.mark_done(grp, row)
        return [(row, "")]
    except Exception as exc:  # any failure is this row's, never the run's
        return [(row, _failure(ref.source, exc))]


def run_clean(catalog: Catalog, entry: DatasetEntry, opts: RunOptions) -> tuple[RunReport, Any]:
    """Clean every row that is not done yet; return the report and the clean group."""
    refs = index_rows(entry)
    fp, config = clean_identity(entry, refs)
    cfg = clean_config(entry)
    root = store.open_dataset(catalog.cache, entry.name)
    grp = store.find_group(root, "clean", fp)
    if grp is None:
        loader = get_loader(entry.format, entry.loader)
        organized = bool(loader.organized)
        meta = {"id": [r.id for r in refs], "class": [r.cls for r in refs], "split": [r.split for r in refs],
                "defect": [r.defect for r in refs], "label": [r.label for r in refs],
                "source": [r.source for r in refs]}
        grid_shape = [cfg.grid_size, cfg.grid_size] if organized and cfg.grid_size else None
        grp = store.create_group(root, "clean", fp, upstream=None, config=config, n=len(refs), meta=meta,
                                 attrs={"grid_shape": grid_shape, "organized": organized,
                                        "has_rgb": bool(loader.has_rgb), "format": entry.format})
        store.mark_initialized(grp)
    url = store.dataset_url(catalog.cache, entry.name)
    jobs = [{"rows": [r], "url": url, "fp": fp, "format": entry.format, "ref": dataclasses.asdict(refs[r]),
             "loader": json.dumps(entry.loader, sort_keys=True), "config": as_json_dict(cfg)}
            for r in np.flatnonzero(~store.done_mask(grp)).tolist()]
    report = run_stage("clean", grp, fp, url, refs, jobs, clean_task, opts)
    report.refs = refs
    return report, grp


# ---------------------------------------------------------------- render


def render_task(job: dict[str, Any]) -> list[tuple[int, str]]:
    """Worker: read one cleaned cloud, render its views, write `render/<fp>` row r, mark it done."""
    (row,) = job["rows"]
    try:
        clean_grp = store.open_stage(job["url"], "clean", job["clean_fp"])
        points = store.read_points(clean_grp, row)
        rgb_grid = None
        if job["rgb"] and f"rgb_grid/{row}" in clean_grp:
            rgb_grid = np.asarray(clean_grp[f"rgb_grid/{row}"][:])
        out = render_sample(points, RenderConfig(**job["config"]), rgb_grid=rgb_grid)
        rows = {"image": out.image, "mask2d": out.mask2d, "pix2pt": out.pix2pt, "camera": out.camera, "eps": out.eps}
        per_point = {"pt2pix": out.pt2pix}
        if job["rgb"] and out.rgb_image is not None:
            rows["rgb_image"], per_point["rgb_pix"] = out.rgb_image, out.rgb_pix
        grp = store.open_stage(job["url"], "render", job["fp"])
        store.write_row(grp, row, rows, per_point)
        store.mark_done(grp, row)
        return [(row, "")]
    except Exception as exc:
        return [(row, _failure(job["source"], exc))]


def _create_render_group(root: Any, fp: str, clean_grp: Any, cfg: RenderConfig, n: int) -> Any:
    size, views = cfg.image_size, len(cfg.views)
    rgb = bool(clean_grp.attrs.get("organized") and clean_grp.attrs.get("has_rgb"))
    grp = store.create_group(root, "render", fp, upstream=clean_grp.attrs["fingerprint"],
                             config=as_json_dict(cfg), n=n, backend=cfg.backend, attrs={
                                 "views": [list(v) for v in cfg.views],
                                 "pre_rotation": [list(v) for v in cfg.pre_rotation],
                                 "image_size": [size, size], "backend": cfg.backend,
                                 "point_size": {"splat_radius_spacings": cfg.splat_radius,
                                                "max_px": cfg.splat_max_px},
                                 "camera_model": "pinhole", "visibility": cfg.visibility, "has_rgb": rgb})
    store.create_rows_array(grp, "image", (n, views, size, size, 3), np.uint8, chunks=(1, 1, size, size, 3),
                            fill_value=255)
    store.create_rows_array(grp, "mask2d", (n, views, size, size), np.uint8, chunks=(1, 1, size, size))
    store.create_rows_array(grp, "pix2pt", (n, views, size, size), np.int32, chunks=(1, 1, size, size),
                            fill_value=-1)
    store.create_rows_array(grp, "camera", (n, views, 3, 4), np.float32)
    store.create_rows_array(grp, "eps", (n,), np.float32)
    if rgb:
        store.create_rows_array(grp, "rgb_image", (n, size, size, 3), np.uint8)
    store.mark_initialized(grp)
    return grp


def run_render(catalog: Catalog, entry: DatasetEntry, opts: RunOptions,
               cli: dict[str, Any] | None = None) -> list[RunReport]:
    """Run clean where needed, then render every row not done yet; return both stages' reports."""
    cfg = render_config(entry, cli)
    importlib.import_module(f".renderers.{BACKENDS[cfg.backend][0]}", __package__)  # fail before any work
    clean_report, clean_grp = run_clean(catalog, entry, opts)
    refs = clean_report.refs
    clean_fp = clean_grp.attrs["fingerprint"]
    fp = store.fingerprint("render", as_json_dict(cfg), clean_fp)
    root = store.open_dataset(catalog.cache, entry.name)
    grp = store.find_group(root, "render", fp) or _create_render_group(root, fp, clean_grp, cfg, len(refs))
    url = store.dataset_url(catalog.cache, entry.name)
    todo = ~store.done_mask(grp)
    clean_done = store.done_mask(clean_grp)
    clean_errors = store.read_strings(clean_grp["error"])
    for r in np.flatnonzero(todo & ~clean_done):
        store.mark_error(grp, int(r), f"clean failed: {clean_errors[r] or 'not done'}")
    jobs = [{"rows": [r], "url": url, "fp": fp, "clean_fp": clean_fp, "config": as_json_dict(cfg),
             "source": refs[r].source, "rgb": bool(grp.attrs.get("has_rgb"))}
            for r in np.flatnonzero(todo & clean_done).tolist()]
    report = run_stage("render", grp, fp, url, refs, jobs, render_task, opts)
    report.refs = refs
    report.failures += [(int(r), refs[r].id, f"clean failed: {clean_errors[r]}")
                        for r in np.flatnonzero(todo & ~clean_done)]
    return [clean_report, report]


# ---------------------------------------------------------------- shared


def run_stage(stage: str, grp: Any, fp: str, url: str, refs: list[SampleRef], jobs: list[dict[str, Any]],
         task: Any, opts: RunOptions, unit: str = "sample", per_row: int = 1) -> RunReport:
    """Run a stage's jobs, record failures in the group and on the console, and count the outcome."""
    report = RunReport(stage=stage, fingerprint=fp, url=url, total=len(refs), skipped=int(store.done_mask(grp).sum()))

    def failed(row: int, error: str) -> None:
        store.mark_error(grp, row, error)
        report.failures.append((row, refs[row].id, error))
        if not opts.quiet:
            from tqdm import tqdm

            tqdm.write(f"{stage} failed: {refs[row].id}: {error}", file=sys.stderr)

    outcomes = run_tasks(task, jobs, workers=opts.workers, scheduler=opts.scheduler, desc=stage, on_failure=failed,
                         unit=unit, per_row=per_row)
    report.succeeded = sum(1 for e in outcomes.values() if not e)
    return report


def require_group(catalog: Catalog, entry: DatasetEntry, stage: str) -> Any:
    """The newest group of a stage, or `CacheMissing` saying which command makes it."""
    root = store.open_dataset(catalog.cache, entry.name)
    groups = store.stage_groups(root, stage)
    if not groups:
        raise CacheMissing(f"no {stage} output for dataset {entry.name!r} in {catalog.cache}; "
                           f"run `pointad-pipe {stage} --dataset {entry.name}` first")
    return groups[-1]
