"""Who decides a stage group's name: every stage's concrete config and fingerprint, in one place.

A fingerprint (`cache.store.fingerprint`) hashes everything that changes a stage's output and
nothing else:
- clean: the format, the loader options and the `CleanConfig`; never the root, the class/split
  selection or the list of samples (rows are keyed by sample id and version, `cache.rows`);
- render: the `RenderConfig` and the clean fingerprint;
- encode: the concrete `EncodeConfig` (layers and blocks filled in), the model name, the weights'
  SHA-256 and the render fingerprint.
Speed knobs (workers, scheduler, batch size, threads, device) are never part of a config, so tuning
never invalidates a cache. `version` fields are the code's, not the catalog's (`config.build_config`
refuses them as overrides). The stage jobs, `gc` and `status` all ask this module.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..cache import store, versions
from ..cache.versions import FileMemo
from ..cache.view import View, current_view
from ..catalog import DatasetEntry
from ..config import as_json_dict, build_config
from ..errors import CacheMissing, OptionError, PointadError
from ..loaders import SampleRef, get_loader
from ..renderers import BACKENDS
from ..stages.clean import FORMAT_DEFAULTS as CLEAN_DEFAULTS
from ..stages.clean import CleanConfig
from ..stages.encode import EncodeConfig
from ..stages.render import RenderConfig, format_defaults
from ..stages.weights import Weights, resolve_weights


def _given(overrides: dict[str, Any] | None) -> dict[str, Any]:
    """Call-site overrides without the unset (None) ones."""
    return {k: v for k, v in (overrides or {}).items() if v is not None}


# ---------------------------------------------------------------- rows


def ensure_root(entry: DatasetEntry, log: Callable[[str], None] | None = None) -> None:
    """Generate a synthetic dataset whose root is missing (entries with `generate:`), else check the root."""
    if not entry.root.exists() and entry.generate is not None:
        from ..synthetic.generator import make_synthetic

        if log is not None:
            log(f"generating synthetic data into {entry.root.parent} ...")
        make_synthetic(entry.root.parent, layouts=(entry.format,), **dict(entry.generate))
    entry.require_root()


def index_rows(entry: DatasetEntry, log: Callable[[str], None] | None = None) -> list[SampleRef]:
    """The dataset's rows, in cache order."""
    ensure_root(entry, log)
    refs = get_loader(entry.format, entry.loader).index(entry.root, entry.classes, entry.splits)
    if not refs:
        raise PointadError(f"datasets.{entry.name}: no samples found under {entry.root}")
    return refs


# ---------------------------------------------------------------- configs


def clean_config(entry: DatasetEntry) -> CleanConfig:
    """The dataset's clean config: format defaults, then the catalog's `clean:` overrides."""
    return build_config(CleanConfig, CLEAN_DEFAULTS[entry.format], entry.overrides.get("clean", {}),
                        f"datasets.{entry.name}.clean")


def render_config(entry: DatasetEntry, overrides: dict[str, Any] | None = None) -> RenderConfig:
    """The dataset's render config: format view lists, the catalog's `render:`, then call-site overrides."""
    merged = {**entry.overrides.get("render", {}), **_given(overrides)}
    cfg = build_config(RenderConfig, format_defaults(entry.format), merged, f"datasets.{entry.name}.render")
    if cfg.backend not in BACKENDS:
        raise OptionError("backend", cfg.backend, f"unknown render backend; expected one of {sorted(BACKENDS)}")
    return cfg


def encode_config(entry: DatasetEntry, overrides: dict[str, Any] | None = None) -> EncodeConfig:
    """The dataset's encode config: defaults, the catalog's `encode:`, then call-site overrides."""
    merged = {**entry.overrides.get("encode", {}), **_given(overrides)}
    return build_config(EncodeConfig, {}, merged, f"datasets.{entry.name}.encode")


@dataclass(frozen=True)
class Prepared:
    """A checked encode plan: the concrete config, the model's weights and the group's model attrs."""

    config: EncodeConfig
    weights: Weights
    model_info: dict[str, Any]


def prepare_encode(cfg: EncodeConfig, weights_arg: str | None, device: str) -> Prepared:
    """Check the model, weights, layers and dtype before any work; make the config concrete."""
    from ...model.registry import architecture, default_dpam_blocks, default_layers, get_spec

    try:
        spec = get_spec(cfg.model)
    except ValueError as exc:
        raise PointadError(str(exc)) from exc
    if cfg.dtype == "fp16" and device == "cpu":
        raise OptionError("dtype", cfg.dtype, "needs a GPU; on CPU use bf16 (about 3x faster than fp32) or fp32")
    weights = resolve_weights(spec, weights_arg)
    arch = architecture(spec)
    vision = arch["vision_cfg"]
    depth = vision["layers"]
    layers = cfg.layers or tuple(default_layers(depth))
    bad = [x for x in layers if not 1 <= x <= depth]
    if bad:
        raise OptionError("layers", list(bad), f"{spec.name} has blocks 1..{depth}")
    blocks = cfg.dpam_blocks or default_dpam_blocks(depth)
    config = dataclasses.replace(cfg, layers=tuple(layers), dpam_blocks=blocks)
    size = vision["image_size"]
    grid = size // vision["patch_size"]
    info = {"model": spec.name, "pretrained": weights.pretrained, "weights_sha256": weights.sha256,
            "layers": list(layers), "image_size": [size, size], "patch_grid": [grid, grid], "dpam": config.dpam,
            "dpam_blocks": blocks, "dtype": config.dtype, "stored_dtype": "float16", "embed_dim": arch["embed_dim"]}
    if spec.random_init:
        info["random_init"] = {"seed": spec.seed, "config": arch}
    return Prepared(config, weights, info)


# ---------------------------------------------------------------- fingerprints


def clean_identity(entry: DatasetEntry) -> tuple[str, dict[str, Any]]:
    """Fingerprint and full config of the clean stage: what changes a cleaned row, nothing about which rows."""
    config = {"format": entry.format, "loader": entry.loader, "clean": as_json_dict(clean_config(entry))}
    config = json.loads(json.dumps(config))
    return store.fingerprint("clean", config, None), config


def clean_from_v1(v1_config: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The fingerprint and config a schema-1 clean group's rows have under schema 2 (`convert`)."""
    config = {"format": v1_config["format"], "loader": v1_config["loader"], "clean": v1_config["clean"]}
    return store.fingerprint("clean", config, None), config


def dataset_meta(entry: DatasetEntry, refs: list[SampleRef]) -> store.Meta:
    """The samples' `meta/*` columns; `source` relative to the dataset root (moving the root changes nothing)."""
    return store.Meta([r.id for r in refs], [r.cls for r in refs], [r.split for r in refs], [r.defect for r in refs],
                      [r.label for r in refs], [versions.relative(r.source, entry.root) for r in refs])


def current_samples(cache_root: str, entry: DatasetEntry) -> tuple[store.Meta, list[str]]:
    """The samples the catalog points at now and their versions (train, evaluate, status read this view).

    Reads the cache's memo but never writes it (readers hold no write lock).
    """
    refs = index_rows(entry)
    root = store.open_dataset(cache_root, entry.name, mode="r") if store.dataset_exists(cache_root, entry.name) \
        else None
    return dataset_meta(entry, refs), versions.sample_versions(refs, entry.root, FileMemo.load(root))


def render_identity(cfg: RenderConfig | dict[str, Any], clean_fp: str) -> str:
    """The render group's fingerprint: its config (or a stored group's config attr) below a clean group."""
    return store.fingerprint("render", cfg if isinstance(cfg, dict) else as_json_dict(cfg), clean_fp)


def encode_identity(prep: Prepared, render_fp: str) -> str:
    """The encode group's fingerprint: the concrete config, model and weights below a render group."""
    return encode_from_attrs(as_json_dict(prep.config), prep.weights.sha256, render_fp)


def encode_from_attrs(config: dict[str, Any], weights_sha256: str, render_fp: str) -> str:
    """An encode fingerprint from a group's stored config and weights hash (also how `convert` renames one)."""
    return store.fingerprint("encode", config, render_fp, model=config["model"], weights_sha256=weights_sha256)


# ---------------------------------------------------------------- the current view (readers)


def encode_groups(cache_root: str, entry: DatasetEntry) -> list[Any]:
    """The dataset's initialised encode groups, oldest first; those below the catalog's clean config last.

    Raises:
        CacheMissing: nothing is cached for the dataset yet.
    """
    if not store.dataset_exists(cache_root, entry.name):
        raise CacheMissing("encode", entry.name, cache_root)
    root = store.open_dataset(cache_root, entry.name, mode="r")
    clean_fp, _ = clean_identity(entry)
    groups = store.stage_groups(root, "encode")
    below = {g.attrs["fingerprint"] for g in store.stage_groups(root, "render") if g.attrs["upstream"] == clean_fp}
    return sorted(groups, key=lambda g: g.attrs["upstream"] in below)  # stable: keeps age order within each


def open_view(cache_root: str, entry: DatasetEntry, encode: Any) -> View:
    """The current view of `encode`: the samples the catalog points at now whose files' version is encoded."""
    meta, versions = current_samples(cache_root, entry)
    return current_view(store.open_dataset(cache_root, entry.name, mode="r"), encode, meta, versions)
