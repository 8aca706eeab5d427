"""The cache's hierarchy and its mechanics (schema `pointad-pipe/1`, docs/STORE.md).

It owns: the dataset hierarchy `<cache_root>/<dataset>.zarr`, stage groups `<stage>/<fingerprint>`,
the fingerprint hash, per-row `done`/`error`, and generic row reads and writes. Which arrays a stage
group holds is `schema`'s; what goes into a fingerprint is `jobs.identity`'s.

Crash safety:
- A stage group counts as created only once its attr `initialized` is true, which is written last.
  A group left half-made by a kill is deleted and made again on the next run.
- Row r's `done` flips to true only after every array of row r is written, so a killed run leaves
  rows false, never half-true, and a rerun redoes exactly those rows.
"""

from __future__ import annotations

import hashlib
import json
import platform
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
import zarr

SCHEMA = "pointad-pipe/1"
STAGES = ("clean", "render", "encode")


@dataclass(frozen=True)
class Meta:
    """The clean group's `meta/*` columns, one entry per row."""

    ids: list[str]
    classes: list[str]
    splits: list[str]
    defects: list[str]
    labels: list[int]  # 1 anomalous, 0 good, -1 unknown
    sources: list[str]

    def columns(self) -> dict[str, list[Any]]:
        """The columns by their array names under `meta/`."""
        return {"id": self.ids, "class": self.classes, "split": self.splits, "defect": self.defects,
                "label": self.labels, "source": self.sources}


def fingerprint(stage: str, config: Mapping[str, Any], upstream: str | None, **extra: Any) -> str:
    """16 hex characters of a SHA-256 over canonical JSON of everything that changes a stage's output.

    Speed knobs (workers, batch size) must not be in `config`, so tuning never invalidates a cache.
    `extra` carries stage-specific inputs (for `encode`: model name and weights hash).
    """
    payload = {"schema": SCHEMA, "stage": stage, "config": config, "upstream": upstream, **extra}
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def package_versions(backend: str | None = None) -> dict[str, str]:
    """Versions for the group attrs, read from package metadata (no heavy imports)."""

    def ver(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "absent"

    out = {"python": platform.python_version(), "numpy": np.__version__, "zarr": zarr.__version__,
           "torch": ver("torch"), "open_clip": ver("open_clip_torch"), "pointad_pipe": ver("pointad-pipe")}
    if backend is not None:
        out["renderer"] = backend
        if backend == "open3d":
            out["open3d"] = ver("open3d-cpu") if ver("open3d-cpu") != "absent" else ver("open3d")
        elif backend == "pyrender":
            out["pyrender"] = ver("pyrender")
    return out


def dataset_url(cache_root: str, dataset: str) -> str:
    """Where a dataset's hierarchy lives: `<cache_root>/<dataset>.zarr` (local path or fsspec URL)."""
    return f"{cache_root.rstrip('/')}/{dataset}.zarr"


def dataset_exists(cache_root: str, dataset: str) -> bool:
    """False for a local dataset store that was never written (remote stores are assumed to exist)."""
    url = dataset_url(cache_root, dataset)
    return "://" in url or Path(url).exists()


def open_url(url: str, mode: str, path: str | None = None) -> zarr.Group:
    """`zarr.open_group` on a local path or an fsspec URL; `file://` URLs create their folders as they go."""
    kwargs: dict[str, Any] = {"storage_options": {"auto_mkdir": True}} if url.startswith("file://") else {}
    return zarr.open_group(url, mode=mode, path=path, **kwargs)


def open_dataset(cache_root: str, dataset: str, mode: str = "a") -> zarr.Group:
    """Open (or create, in mode `a`) a dataset's root group and stamp its root attrs."""
    root = open_url(dataset_url(cache_root, dataset), mode)
    if mode != "r" and root.attrs.get("schema") != SCHEMA:
        if root.attrs.get("schema") not in (None, SCHEMA):
            raise ValueError(f"{dataset_url(cache_root, dataset)} has schema {root.attrs['schema']!r}, "
                             f"this version writes {SCHEMA!r}")
        root.attrs.update({"schema": SCHEMA, "dataset": dataset})
    return root


def find_group(root: zarr.Group, stage: str, fp: str) -> zarr.Group | None:
    """The stage group `<stage>/<fp>` if it exists and was fully initialised, else None."""
    path = f"{stage}/{fp}"
    if path not in root:
        return None
    grp = root[path]
    return grp if grp.attrs.get("initialized") else None


def upstream_of(root: zarr.Group, encode_grp: zarr.Group) -> tuple[zarr.Group, zarr.Group]:
    """The render group an encode group was made from, and that render's clean group."""
    render = root[f"render/{encode_grp.attrs['upstream']}"]
    return render, root[f"clean/{render.attrs['upstream']}"]


def stage_groups(root: zarr.Group, stage: str, finished_only: bool = True) -> list[zarr.Group]:
    """The initialised groups of a stage, oldest first (every group, half-made ones too, unless `finished_only`)."""
    if stage not in root:
        return []
    groups = [g for _, g in root[stage].groups() if g.attrs.get("initialized") or not finished_only]
    if not finished_only:
        return groups
    return sorted(groups, key=lambda g: str(g.attrs.get("created_utc", "")))


def delete_group(root: zarr.Group, path: str) -> None:
    """Remove a group (a half-made one, or one `gc` found stale).

    Local stores go through the filesystem, others through the store API.
    """
    store = root.store
    local = getattr(store, "root", None)
    if isinstance(local, Path):
        shutil.rmtree(local / root.path / path, ignore_errors=True)
    else:
        del root[path]


def create_group(
    root: zarr.Group,
    stage: str,
    fp: str,
    *,
    upstream: str | None,
    config: Mapping[str, Any],
    n: int,
    backend: str | None = None,
    attrs: Mapping[str, Any] | None = None,
    meta: Meta | None = None,
) -> zarr.Group:
    """Create `<stage>/<fp>` with `done`, `error` (and `meta/*` for clean); return it.

    Arrays with N rows that the stage writes itself are made by `create_rows_array` before the
    group is marked initialised, so that workers never race to create them.
    """
    if f"{stage}/{fp}" in root and not root[f"{stage}/{fp}"].attrs.get("initialized"):
        delete_group(root, f"{stage}/{fp}")
    grp = root.require_group(stage).require_group(fp)
    grp.create_array("done", shape=(n,), chunks=(1,), dtype=bool, fill_value=False, overwrite=True)
    grp.create_array("error", shape=(n,), chunks=(1,), dtype=str, fill_value="", overwrite=True)
    for key, values in (meta.columns() if meta else {}).items():
        values = list(values)
        dtype = np.int8 if key == "label" else str
        arr = grp.create_array(f"meta/{key}", shape=(n,), chunks=(1,), dtype=dtype, overwrite=True)
        if n:
            arr[:] = np.asarray(values, dtype=np.int8 if key == "label" else object).astype(
                np.int8 if key == "label" else np.dtypes.StringDType())
    grp.attrs.update({
        "schema": SCHEMA, "stage": stage, "fingerprint": fp, "upstream": upstream,
        "config": dict(config), "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": package_versions(backend), "n_samples": n, **(attrs or {}),
    })
    return grp


def create_rows_array(grp: zarr.Group, name: str, shape: tuple[int, ...], dtype: Any,
                      chunks: tuple[int, ...] | None = None, fill_value: Any = 0,
                      compressors: Any = "auto") -> zarr.Array:
    """An array with N leading rows, chunked one row at a time (STORE.md) unless `chunks` says finer."""
    chunks = chunks or (1, *shape[1:])
    return grp.create_array(name, shape=shape, chunks=chunks, dtype=dtype, fill_value=fill_value, overwrite=True,
                            compressors=compressors)


def feature_codec() -> Any:
    """Blosc zstd-5 with bitshuffle: the best ratio measured on fp16 features (ENVIRONMENT.md, 1.52x)."""
    return zarr.codecs.BloscCodec(cname="zstd", clevel=5, shuffle="bitshuffle")


def mark_initialized(grp: zarr.Group) -> None:
    """Written last by `create_group`'s caller: from now on the group is found and reused."""
    grp.attrs["initialized"] = True


@lru_cache(maxsize=8)
def _open_cached(url: str, path: str) -> zarr.Group:
    return open_url(url, "r+", path)


def open_stage(url: str, stage: str, fp: str) -> zarr.Group:
    """Open a stage group for row writes from a worker (cached per process)."""
    return _open_cached(url, f"{stage}/{fp}")


def write_row(grp: zarr.Group, r: int, rows: Mapping[str, np.ndarray], points: Mapping[str, np.ndarray]) -> None:
    """Write row r: `rows` into the N-row arrays at index r, `points` as `points/<r>/<name>`.

    Clears the row's `error`. Does not mark it done: call `mark_done` after this returns.
    """
    for name, value in points.items():
        grp.create_array(f"points/{r}/{name}", data=np.ascontiguousarray(value), overwrite=True)
    for name, value in rows.items():
        grp[name][r] = value
    grp["error"][r] = ""


def mark_done(grp: zarr.Group, r: int) -> None:
    """Flip row r to done. Only after every array of the row is written."""
    grp["done"][r] = True


def mark_error(grp: zarr.Group, r: int, message: str) -> None:
    """Record a one-line failure for row r and leave it not done."""
    grp["done"][r] = False
    grp["error"][r] = " ".join(str(message).split())[:500]


def upstream_failures(grp: zarr.Group, upstream: zarr.Group, stage: str,
                      todo: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Fail the rows to do whose upstream row is not done ('<stage> failed: <its error>').

    Returns the upstream's done mask (the rows ready to process) and its error column.
    """
    ready = done_mask(upstream)
    errors = read_strings(upstream["error"])
    for r in np.flatnonzero(todo & ~ready):
        mark_error(grp, int(r), f"{stage} failed: {errors[r] or 'not done'}")
    return ready, errors


def read_strings(arr: zarr.Array) -> list[str]:
    """A Zarr string array as Python strings."""
    return [str(x) for x in np.asarray(arr[:]).tolist()]


def read_meta(grp: zarr.Group) -> Meta:
    """The clean group's `meta/*` columns."""
    return Meta(*(read_strings(grp[f"meta/{k}"]) for k in ("id", "class", "split", "defect")),
                [int(x) for x in np.asarray(grp["meta/label"][:])], read_strings(grp["meta/source"]))


def read_points(grp: zarr.Group, r: int) -> dict[str, np.ndarray]:
    """Every `points/<r>/*` array of a row."""
    sub = grp[f"points/{r}"]
    return {name: np.asarray(arr[:]) for name, arr in sub.arrays()}


def done_mask(grp: zarr.Group) -> np.ndarray:
    """The `done` column as a bool array."""
    return np.asarray(grp["done"][:], dtype=bool)


def disk_size(grp: zarr.Group) -> int | None:
    """Bytes on disk of a group (local stores only; None for remote stores)."""
    local = getattr(grp.store, "root", None)
    if not isinstance(local, Path):
        return None
    base = local / grp.path
    return sum(p.stat().st_size for p in base.rglob("*") if p.is_file())
