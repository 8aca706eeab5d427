"""The encode stage's job: resolve the model (fail fast), run render where needed, encode rows.

Order matters for "fails fast and writes nothing": the model name, the weights and the config are
checked (`identity.prepare_encode`) before `render` runs or any group is created.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..cache import schema, store
from ..cache.runner import RunOptions, RunReport, run_stage
from ..catalog import Catalog, DatasetEntry
from ..config import as_json_dict
from ..errors import OptionError
from ..stages.encode import EncoderKey, encode_blocks, get_encoder, resolve_device
from .identity import Prepared, encode_config, encode_identity, prepare_encode
from .render import run_render

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
                                store.open_stage(job["url"], "encode", job["fp"]))
        encode_blocks([(b["rows"], b["write"]) for b in job["blocks"]], encoder, io,
                      on_row=lambda r, e: outcomes.append((r, e)))
    except Exception as exc:  # the model failed to load, or the store to open: fail these rows
        seen = {r for r, _ in outcomes}
        outcomes += [(r, f"{type(exc).__name__}: {exc}") for r in job["rows"] if r not in seen]
    return outcomes


def aligned_blocks(todo: np.ndarray, ready: np.ndarray, size: int) -> list[dict[str, list[int]]]:
    """Blocks of `size` aligned rows (r // size) holding a row to write; ready rows encoded, todo ones written.

    Aligned blocks keep batch composition fixed, so a resumed cache equals an uninterrupted one.
    """
    blocks = []
    for b in sorted({int(r) // size for r in np.flatnonzero(todo & ready)}):
        rows = [r for r in range(b * size, min((b + 1) * size, len(ready))) if ready[r]]
        blocks.append({"rows": rows, "write": [r for r in rows if todo[r]]})
    return blocks


def encoder_key(prep: Prepared, device: str) -> EncoderKey:
    """What a worker needs to load the encoder once."""
    cfg = prep.config
    return EncoderKey(model=cfg.model, weights_kind=prep.weights.kind, weights_path=prep.weights.path,
                      layers=cfg.layers, dpam=cfg.dpam, dpam_blocks=cfg.dpam_blocks, dtype=cfg.dtype, device=device)


def run_encode(catalog: Catalog, entry: DatasetEntry, opts: RunOptions, enc: EncodeOptions,
               overrides: dict[str, Any] | None = None,
               render_overrides: dict[str, Any] | None = None) -> list[RunReport]:
    """Encode every row whose render is done and whose encode is not; return all stages' reports."""
    device = resolve_device(enc.device)
    prep = prepare_encode(encode_config(entry, overrides), enc.weights, device)  # fails before any work
    if enc.batch_size < 1:
        raise OptionError("batch_size", enc.batch_size, "must be at least 1")
    reports = run_render(catalog, entry, opts, render_overrides)
    render_fp, refs = reports[-1].fingerprint, reports[-1].refs
    root = store.open_dataset(catalog.cache, entry.name)
    render_grp = store.find_group(root, "render", render_fp)
    fp = encode_identity(prep, render_fp)
    grp = store.find_group(root, "encode", fp) or schema.create_encode_group(
        root, fp, render_grp, as_json_dict(prep.config), prep.model_info, len(refs))
    todo = ~store.done_mask(grp)
    ready, render_errors = store.upstream_failures(grp, render_grp, "render", todo)
    blocks = aligned_blocks(todo, ready, enc.batch_size)
    threads = enc.threads or (max(1, (os.cpu_count() or 1) // max(1, opts.workers))
                              if opts.workers or opts.scheduler else 0)
    url = store.dataset_url(catalog.cache, entry.name)
    key = dataclasses.asdict(encoder_key(prep, device))
    jobs = [{"rows": [r for b in chunk for r in b["write"]], "blocks": chunk, "url": url, "fp": fp,
             "render_fp": render_fp, "key": key, "threads": threads}
            for chunk in (blocks[i:i + JOB_BLOCKS] for i in range(0, len(blocks), JOB_BLOCKS))]
    report = run_stage("encode", grp, fp, url, [r.id for r in refs], jobs, encode_task, opts, unit="view",
                       per_row=schema.views_per_row(render_grp))
    report.failures += [(int(r), refs[r].id, f"render failed: {render_errors[r]}")
                        for r in np.flatnonzero(todo & ~ready)]
    return [*reports, report]
