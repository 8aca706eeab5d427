"""The encode stage's driver: resolve the model (fail fast), run render where needed, encode rows.

Order matters for "fails fast and writes nothing": the model name, the weights and the config are
checked before `render` runs or any group is created.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import store
from .catalog import Catalog, DatasetEntry
from .config import as_json_dict, build_config
from .encode import EncodeConfig, EncoderKey, encode_blocks, get_encoder
from .errors import PointadError
from .runner import RunReport
from .stages import RunOptions, run_render, run_stage
from .weights import Weights, resolve_weights

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


@dataclass(frozen=True)
class Prepared:
    """A checked encode plan: the concrete config, the model's spec and its weights."""

    config: EncodeConfig
    weights: Weights
    model_info: dict[str, Any]


def encode_config(entry: DatasetEntry, cli: dict[str, Any] | None = None) -> EncodeConfig:
    """The dataset's encode config: defaults, the catalog's `encode:` overrides, then CLI flags."""
    overrides = {**entry.overrides.get("encode", {}), **{k: v for k, v in (cli or {}).items() if v is not None}}
    return build_config(EncodeConfig, {}, overrides, f"datasets.{entry.name}.encode")


def resolve_device(device: str) -> str:
    """`auto` -> `cuda` when a GPU is there, else `cpu`; an explicit `cuda` without one is an error."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise PointadError("--device cuda: no CUDA device is available here (use --device cpu)")
    if device not in ("cpu",) and not device.startswith("cuda"):
        raise PointadError(f"--device must be auto, cpu or cuda, got {device!r}")
    return device


def prepare(cfg: EncodeConfig, weights_arg: str | None, device: str) -> Prepared:
    """Check the model, weights, layers and dtype before any work; make the config concrete."""
    from ..model.registry import architecture, default_dpam_blocks, default_layers, get_spec

    try:
        spec = get_spec(cfg.model)
    except ValueError as exc:
        raise PointadError(str(exc)) from exc
    if cfg.dtype == "fp16" and device == "cpu":
        raise PointadError("--dtype fp16 needs a GPU; on CPU use bf16 (about 3x faster than fp32) or fp32")
    weights = resolve_weights(spec, weights_arg)
    vision = architecture(spec)["vision_cfg"]
    depth = vision["layers"]
    layers = cfg.layers or tuple(default_layers(depth))
    bad = [x for x in layers if not 1 <= x <= depth]
    if bad:
        raise PointadError(f"--layers {list(bad)}: {spec.name} has blocks 1..{depth}")
    blocks = cfg.dpam_blocks or default_dpam_blocks(depth)
    config = dataclasses.replace(cfg, layers=tuple(layers), dpam_blocks=blocks)
    size = vision["image_size"]
    grid = size // vision["patch_size"]
    info = {"model": spec.name, "pretrained": weights.pretrained, "weights_sha256": weights.sha256,
            "layers": list(layers), "image_size": [size, size], "patch_grid": [grid, grid], "dpam": config.dpam,
            "dpam_blocks": blocks, "dtype": config.dtype, "stored_dtype": "float16",
            "embed_dim": architecture(spec)["embed_dim"]}
    if spec.random_init:
        info["random_init"] = {"seed": spec.seed, "config": architecture(spec)}
    return Prepared(config, weights, info)


def encode_task(job: dict[str, Any]) -> list[tuple[int, str]]:
    """Worker: encode a few aligned blocks of rows; returns every written row's outcome."""
    outcomes: list[tuple[int, str]] = []
    try:
        if job.get("threads"):
            import torch

            torch.set_num_threads(job["threads"])
        encoder = get_encoder(EncoderKey(**job["key"]))
        render = store.open_stage(job["url"], "render", job["render_fp"])
        out = store.open_stage(job["url"], "encode", job["fp"])
        encode_blocks([(b["rows"], b["write"]) for b in job["blocks"]], encoder, render, out,
                      on_row=lambda r, e: outcomes.append((r, e)), mark_done=store.mark_done)
    except Exception as exc:  # the model failed to load, or the store to open: fail these rows
        seen = {r for r, _ in outcomes}
        outcomes += [(r, f"{type(exc).__name__}: {exc}") for r in job["rows"] if r not in seen]
    return outcomes


def _create_group(root: Any, fp: str, render_grp: Any, prep: Prepared, n: int) -> Any:
    info = prep.model_info
    views = render_grp["image"].shape[1]
    d, p, layers = info["embed_dim"], info["patch_grid"][0] * info["patch_grid"][1], len(info["layers"])
    grp = store.create_group(root, "encode", fp, upstream=render_grp.attrs["fingerprint"],
                             config=as_json_dict(prep.config), n=n, attrs=info)
    codec = store.feature_codec()
    store.create_rows_array(grp, "global", (n, views, d), np.float16, compressors=codec)
    store.create_rows_array(grp, "patch", (n, views, layers, p, d), np.float16, compressors=codec)
    if "rgb_image" in render_grp:
        store.create_rows_array(grp, "rgb_global", (n, d), np.float16, compressors=codec)
        store.create_rows_array(grp, "rgb_patch", (n, layers, p, d), np.float16, compressors=codec)
    store.mark_initialized(grp)
    return grp


def run_encode(catalog: Catalog, entry: DatasetEntry, opts: RunOptions, enc: EncodeOptions,
               cli: dict[str, Any] | None = None, render_cli: dict[str, Any] | None = None) -> list[RunReport]:
    """Encode every row whose render is done and whose encode is not; return all stages' reports."""
    device = resolve_device(enc.device)
    prep = prepare(encode_config(entry, cli), enc.weights, device)  # fails before any work
    if enc.batch_size < 1:
        raise PointadError("--batch-size must be at least 1")
    reports = run_render(catalog, entry, opts, render_cli)
    render_fp = reports[-1].fingerprint
    root = store.open_dataset(catalog.cache, entry.name)
    render_grp = store.find_group(root, "render", render_fp)
    fp = store.fingerprint("encode", as_json_dict(prep.config), render_fp, model=prep.config.model,
                           weights_sha256=prep.weights.sha256)
    refs = reports[-1].refs
    grp = store.find_group(root, "encode", fp) or _create_group(root, fp, render_grp, prep, len(refs))
    todo, ready = ~store.done_mask(grp), store.done_mask(render_grp)
    render_errors = store.read_strings(render_grp["error"])
    for r in np.flatnonzero(todo & ~ready):
        store.mark_error(grp, int(r), f"render failed: {render_errors[r] or 'not done'}")
    pending = np.flatnonzero(todo & ready)
    size = enc.batch_size
    blocks = []
    for b in sorted({int(r) // size for r in pending}):
        rows = [r for r in range(b * size, min((b + 1) * size, len(refs))) if ready[r]]
        blocks.append({"rows": rows, "write": [r for r in rows if todo[r]]})
    key = EncoderKey(model=prep.config.model, weights_kind=prep.weights.kind, weights_path=prep.weights.path,
                     layers=prep.config.layers, dpam=prep.config.dpam, dpam_blocks=prep.config.dpam_blocks,
                     dtype=prep.config.dtype, device=device)
    threads = enc.threads or (max(1, (os.cpu_count() or 1) // max(1, opts.workers))
                              if opts.workers or opts.scheduler else 0)
    url = store.dataset_url(catalog.cache, entry.name)
    jobs = [{"rows": [r for b in chunk for r in b["write"]], "blocks": chunk, "url": url, "fp": fp,
             "render_fp": render_fp, "key": dataclasses.asdict(key), "threads": threads}
            for chunk in (blocks[i:i + JOB_BLOCKS] for i in range(0, len(blocks), JOB_BLOCKS))]
    views = render_grp["image"].shape[1] + (1 if "rgb_image" in render_grp else 0)
    report = run_stage("encode", grp, fp, url, refs, jobs, encode_task, opts, unit="view", per_row=views)
    report.failures += [(int(r), refs[r].id, f"render failed: {render_errors[r]}")
                        for r in np.flatnonzero(todo & ~ready)]
    return [*reports, report]
