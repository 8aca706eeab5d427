"""Schema-1 hierarchies, read for `convert` only: their groups, rows and data, copied into schema 2.

A schema-1 group has N rows shared by every stage (row r is one sample everywhere), `meta/id` in
the clean group, and `done`/`error` columns; its data arrays and `points/<r>/*` are laid out as in
schema 2, so a row's data copies over array by array.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import zarr

from . import store

V1_COLUMNS = ("done", "error")
RESERVED_ATTRS = ("schema", "stage", "fingerprint", "upstream", "config", "created_utc", "versions", "n_samples",
                  "initialized", "n_rows")


def schema_of(url: str) -> str | None:
    """The `schema` root attr of a hierarchy (None when there is none)."""
    if "://" not in url and not Path(url).exists():
        return None
    return zarr.open_group(url, mode="r").attrs.get("schema")


def move_aside(url: str, to: str) -> None:
    """Rename a local hierarchy (the schema-1 store is kept, not overwritten)."""
    if "://" in url:
        raise ValueError(f"{url}: convert works on local caches only; copy the cache to a local disk first")
    if Path(to).exists():
        raise FileExistsError(f"{to} already exists: move it away first")
    shutil.move(url, to)


def v1_rows(grp: zarr.Group) -> tuple[np.ndarray, list[str]]:
    """A schema-1 group's `done` and `error` columns."""
    return np.asarray(grp["done"][:], dtype=bool), store.read_strings(grp["error"])


def v1_meta(clean: zarr.Group) -> store.Meta:
    """A schema-1 clean group's `meta/*` columns (`source` as it was written: an absolute path)."""
    cols = [store.read_strings(clean[f"meta/{k}"]) for k in ("id", "class", "split", "defect")]
    return store.Meta(*cols, [int(x) for x in np.asarray(clean["meta/label"][:])],
                      store.read_strings(clean["meta/source"]))


def _data_arrays(grp: zarr.Group) -> list[tuple[str, zarr.Array]]:
    return [(name, a) for name, a in grp.arrays() if name not in V1_COLUMNS]


def start_group(dst_root: zarr.Group, src: zarr.Group, stage: str, fp: str, upstream: str | None) -> zarr.Group:
    """An empty schema-2 group `<stage>/<fp>` with `src`'s config, attrs and data arrays (0 rows); initialised."""
    attrs = {k: v for k, v in src.attrs.items() if k not in RESERVED_ATTRS}
    attrs["converted_from"] = src.attrs["fingerprint"]
    grp = store.create_group(dst_root, stage, fp, upstream=upstream, config=dict(src.attrs["config"]), attrs=attrs)
    grp.attrs["versions"] = src.attrs.get("versions", {})
    for name, arr in _data_arrays(src):
        store.create_rows_array(grp, name, (0, *arr.shape[1:]), arr.dtype, chunks=(1, *arr.chunks[1:]),
                                fill_value=arr.fill_value, compressors=arr.compressors)
    store.mark_initialized(grp)
    return grp


def copy_rows(src: zarr.Group, dst: zarr.Group, pairs: Sequence[tuple[int, int]]) -> None:
    """Copy each pair's (source row -> target row) data: row-axis arrays, `points/<r>/*` and `rgb_grid/<r>`.

    Through `store.write_row`, so the copied rows get their checksums.
    """
    arrays = _data_arrays(src)
    for s, d in pairs:
        points = dict(src[f"points/{s}"].arrays()) if f"points/{s}" in src else {}
        others = {"rgb_grid/*": np.asarray(src[f"rgb_grid/{s}"][:])} if f"rgb_grid/{s}" in src else None
        store.write_row(dst, d, {name: arr[s] for name, arr in arrays},
                        {name: np.asarray(arr[:]) for name, arr in points.items()}, others)
        for name, arr in points.items():
            dst[f"points/{d}/{name}"].attrs.update(dict(arr.attrs))
