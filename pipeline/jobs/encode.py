"""The encode stage's job: resolve the model (fail fast), run render where needed, encode rows.

Order matters for "fails fast and writes nothing": the model name, the weights and the config are
checked (`identity.prepare_encode`) before `render` runs or any group is created.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any

from ..cache import locks, rows, schema, store
from ..cache.runner import RunOptions, RunReport, disk_guard, dry_report, keep_pending, run_stage
from ..catalog import Catalog, DatasetEntry
from ..config import as_json_dict
from ..environment import torch_versions
from ..errors import CatalogError, OptionError
from ..stages.encode import EncoderKey, encode_blocks, get_encoder, resolve_device
from .identity import Prepared, encode_config, encode_identity, prepare_encode
from .render import run_render
from .stagerows import ready, sub_plan, widen

JOB_BLOCKS = 4  # blocks per task: progress granularity vs. pipeline refills


@dataclass(frozen=True)
class EncodeOptions:
    """Speed knobs of encode (never fingerprinted)."""

    device: str = "auto"
    batch_size: int = 1  # samples per forward pass
    weights: str | None = None
    #: torch intra-op threads per worker (default: cores / workers; in-process: torch's own). A
    #: different count may change the last float16 bit of a few values (MKL reductions), so pin it
    #: when two caches must be bit-identical.
    threads: int | None = None


def encode_task(job: dict[str, Any]) -> list[tuple[int, str]]:
    """Worker: encode a few aligned blocks of rows; returns every written row's outcome."""
    outcomes: list[tuple[int, str]] = []
    try:
        if job.get("threads"):
            import torch

            torch.set_num_threads(job["threads"])
        encoder = get_encoder(EncoderKey(**job["key"]))
        io = schema.FeatureRows(store.open_stage(job["url"], "render", job["render_fp"]),
                                store.open_stage(job["url"], "encode", job["fp"]), job["sources"])
        def on_row(r: int, error: str) -> None:
            outcomes.append((r, error))
            # in the driving process (no workers) a finished row is marked at once, not when the task
            # returns: a kill then loses at most the rows in flight (a full disk's rows stay pending)
            if job.get("mark_here") and not keep_pending(error):
                rows.mark(io.out, [(r, error)])

        encode_blocks([(b["rows"], b["write"]) for b in job["blocks"]], encoder, io, on_row=on_row)
    except Exception as exc:  # the model failed to load, or the store to open: fail these rows
        seen = {r for r, _ in outcomes}
        outcomes += [(r, f"{type(exc).__name__}: {exc}") for r in job["rows"] if r not in seen]
    return outcomes


def aligned_blocks(targets: list[int], size: int) -> list[dict[str, list[int]]]:
    """The rows to write in blocks of `size` aligned rows (r // size): one forward pass each.

    Aligned blocks keep batch composition fixed, so a resumed run equals an uninterrupted one.
    """
    by_block: dict[int, list[int]] = {}
    for r in sorted(targets):
        by_block.setdefault(r // size, []).append(r)
    return [{"rows": rows, "write": rows} for _, rows in sorted(by_block.items())]


def encoder_key(prep: Prepared, device: str) -> EncoderKey:
    """What a worker needs to load the encoder once."""
    cfg = prep.config
    return EncoderKey(model=cfg.model, weights_kind=prep.weights.kind, weights_path=prep.weights.path,
                      layers=cfg.layers, dpam=cfg.dpam, dpam_blocks=cfg.dpam_blocks, dtype=cfg.dtype, device=device)


def run_encode(catalog: Catalog, entry: DatasetEntry, opts: RunOptions, enc: EncodeOptions,
               overrides: dict[str, Any] | None = None,
               render_overrides: dict[str, Any] | None = None) -> list[RunReport]:
    """Encode every sample whose render row is current and whose encode row is not; return all stages' reports."""
    torch_versions()  # a torchvision built for another torch stops here, before clean and render run
    cfg = encode_config(entry, overrides)
    # `auto` is resolved only when there is work: importing torch to find no GPU costs a no-change rerun 3 s
    device = resolve_device(enc.device) if enc.device != "auto" or cfg.dtype == "fp16" else "auto"
    try:
        prep = prepare_encode(cfg, enc.weights, device)  # fails before any work
    except OptionError as exc:  # a value from the catalog is the catalog's mistake, not a flag's
        from_catalog = exc.option in entry.overrides.get("encode", {}) and (overrides or {}).get(exc.option) is None
        if not from_catalog:
            raise
        raise CatalogError(f"datasets.{entry.name}.encode.{exc.option}: {exc.value!r}: {exc.problem}") from None
    if enc.batch_size < 1:
        raise OptionError("batch_size", enc.batch_size, "must be at least 1")
    with disk_guard("encode", store.dataset_url(catalog.cache, entry.name)), \
            locks.writing(catalog.cache, entry.name, enabled=not opts.dry_run):
        reports = run_render(catalog, entry, opts, render_overrides)
        up = reports[-1]
        fp = encode_identity(prep, up.fingerprint)
        url = store.dataset_url(catalog.cache, entry.name)
        pos = ready(up)
        keys = [(up.refs[k].id, up.versions[k]) for k in pos]
        exists = store.dataset_exists(catalog.cache, entry.name)
        root = store.open_dataset(catalog.cache, entry.name, mode="r" if opts.dry_run else "a") if exists else None
        render_grp = store.find_group(root, "render", up.fingerprint) if root is not None else None
        grp = store.find_group(root, "encode", fp) if render_grp is not None else None
        if opts.dry_run:
            return [*reports, widen(dry_report("encode", fp, url, keys, sub_plan(grp, keys, opts.retry_failed)),
                                    pos, up)]
        grp = grp or schema.create_encode_group(root, fp, render_grp, as_json_dict(prep.config), prep.model_info)
        p = sub_plan(grp, keys, opts.retry_failed)
        src = [int(up.rows[k]) for k in pos]
        targets = rows.reserve(grp, p, keys, {"rows/upstream": src})
        key = encoder_key(prep, resolve_device(device)) if targets else None
        jobs = _jobs(targets, src, enc, opts, {"url": url, "fp": fp, "render_fp": up.fingerprint,
                                               "key": dataclasses.asdict(key) if key else None})
        report = run_stage("encode", grp, fp, url, keys, p, targets, jobs, encode_task, opts, unit="view",
                           per_row=schema.views_per_row(render_grp))
    return [*reports, widen(report, pos, up)]


def _jobs(targets: dict[int, int], src: list[int], enc: EncodeOptions, opts: RunOptions,
          common: dict[str, Any]) -> list[dict[str, Any]]:
    """Encode tasks of `JOB_BLOCKS` aligned blocks each, with the render row each encode row reads."""
    blocks = aligned_blocks(list(targets.values()), enc.batch_size)
    sources = {r: src[k] for k, r in targets.items()}
    threads = enc.threads or (max(1, (os.cpu_count() or 1) // max(1, opts.workers))
                              if opts.workers or opts.scheduler else 0)
    jobs = []
    for i in range(0, len(blocks), JOB_BLOCKS):
        chunk = blocks[i:i + JOB_BLOCKS]
        written = [r for b in chunk for r in b["write"]]
        jobs.append({"rows": written, "blocks": chunk, "sources": {r: sources[r] for r in written},
                     "threads": threads, "mark_here": not (opts.workers or opts.scheduler), **common})
    return jobs
