"""The cache's hierarchy and its mechanics (schema `pointad-pipe/2`, docs/STORE.md).

It owns: the dataset hierarchy `<cache_root>/<dataset>.zarr`, stage groups `<stage>/<fingerprint>`,
the fingerprint hash, and generic row reads and writes. Which arrays a stage group holds is
`schema`'s; the row columns, growth and staleness are `rows`'; what goes into a fingerprint is
`jobs.identity`'s.

Crash safety:
- A stage group counts as created only once its attr `initialized` is true, which is written last.
  A group left half-made by a kill is deleted and made again on the next run.
- Row r's `done` flips to true (`rows.mark`, by the driving process) only after every array of row
  r is written, so a killed run leaves rows pending, never half-true, and a rerun fills them.
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

from ..errors import PointadError
from . import checksums

SCHEMA = "pointad-pipe/3"
SCHEMA_V2 = "pointad-pipe/2"  # read as is: schema 3 only adds per-row checksums, which its groups lack
SCHEMA_V1 = "pointad-pipe/1"
READS = (SCHEMA, SCHEMA_V2)
# Fingerprints hash this, not SCHEMA: checksums change no data, so schema-2 groups keep being found.
FINGERPRINT_SCHEMA = SCHEMA_V2
STAGES = ("clean", "render", "encode")


@dataclass(frozen=True)
class Meta:
    """The clean group's `meta/*` columns, one entry per row."""

    ids: list[str]
    classes: list[str]
    splits: list[str]
    defects: list[str]
    labels: list[int]  # 1 anomalous, 0 good, -1 unknown
    sources: list[str]  # the main input file, relative to the dataset root

    def columns(self) -> dict[str, list[Any]]:
        """The row columns `meta/*` by their array paths (the id is `rows/id`)."""
        return {"meta/class": self.classes, "meta/split": self.splits, "meta/defect": self.defects,
                "meta/label": self.labels, "meta/source": self.sources}

    def take(self, index: list[int]) -> Meta:
        """The entries at `index`, in that order."""
        return Meta(*([col[i] for i in index] for col in (self.ids, self.classes, self.splits, self.defects,
                                                          self.labels, self.sources)))


def fingerprint(stage: str, config: Mapping[str, Any], upstream: str | None, **extra: Any) -> str:
    """16 hex characters of a SHA-256 over canonical JSON of everything that changes a stage's output.

    Speed knobs (workers, batch size) must not be in `config`, so tuning never invalidates a cache.
    `extra` carries stage-specific inputs (for `encode`: model name and weights hash).
    """
    payload = {"schema": FINGERPRINT_SCHEMA, "stage": stage, "config": config, "upstream": upstream, **extra}
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


class SchemaMismatch(PointadError, ValueError):
    """A hierarchy written under another schema (a schema-1 cache): never read as this one."""

    def __init__(self, url: str, dataset: str, found: str) -> None:
        self.url, self.dataset, self.found = url, dataset, found
        super().__init__(f"{url} holds a cache of schema {found!r}; this version reads {' and '.join(READS)} and "
                         f"never reads another as one of them")


def open_dataset(cache_root: str, dataset: str, mode: str = "a") -> zarr.Group:
    """Open (or create, in mode `a`) a dataset's root group and stamp its root attrs.

    A schema-2 hierarchy opened for writing is stamped schema 3: the groups it gains carry checksums.

    Raises:
        SchemaMismatch: the hierarchy holds a schema this version does not read (e.g. `pointad-pipe/1`).
    """
    url = dataset_url(cache_root, dataset)
    root = open_url(url, mode)
    found = root.attrs.get("schema")
    if found is not None and found not in READS:
        raise SchemaMismatch(url, dataset, str(found))
    if mode != "r" and found != SCHEMA:
        root.attrs.update({"schema": SCHEMA, "dataset": dataset})
    return root


def find_group(root: zarr.Group, stage: str, fp: str) -> zarr.Group | None:
    """The stage group `<stage>/<fp>` if it exists and was fully initialised, else None."""
    path = f"{stage}/{fp}"
    if path not in root:
        return None
    grp = root[path]
    return grp if grp.attrs.get("initialized") else None


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


ROW_CHUNK = 4096  # row columns: written by the driving process only, so big chunks need no lock


def string_array(values: Any) -> np.ndarray:
    """Python strings as numpy's StringDType, what a Zarr v3 string array takes."""
    return np.asarray(list(values), dtype=object).astype(np.dtypes.StringDType())


def create_group(root: zarr.Group, stage: str, fp: str, *, upstream: str | None, config: Mapping[str, Any],
                 backend: str | None = None, attrs: Mapping[str, Any] | None = None) -> zarr.Group:
    """Create an empty `<stage>/<fp>`: its row columns (STORE.md "Rows") with 0 committed rows; return it.

    The stage's data arrays are made by `create_rows_array` (0 rows, growing later) before the
    caller marks the group initialised, so that workers never race to create them.
    """
    if f"{stage}/{fp}" in root and not root[f"{stage}/{fp}"].attrs.get("initialized"):
        delete_group(root, f"{stage}/{fp}")
    grp = root.require_group(stage).require_group(fp)
    columns: dict[str, Any] = {"rows/id": str, "rows/version": str, "done": bool, "error": str}
    if upstream is not None:
        columns["rows/upstream"] = np.int64
    if stage == "clean":
        columns |= {f"meta/{k}": np.int8 if k == "label" else str for k in ("class", "split", "defect", "label",
                                                                               "source")}
    for name, dtype in columns.items():
        fill = "" if dtype is str else (-1 if dtype is np.int64 else 0)
        grp.create_array(name, shape=(0,), chunks=(ROW_CHUNK,), dtype=dtype, fill_value=fill, overwrite=True)
    # written by the workers with each row's data, so one row a chunk like the data arrays
    grp.create_array(checksums.COLUMN, shape=(0,), chunks=(1,), dtype=str, fill_value="", overwrite=True)
    grp.attrs.update({
        "schema": SCHEMA, "checksums": checksums.KIND, "stage": stage, "fingerprint": fp, "upstream": upstream,
        "config": dict(config), "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": package_versions(backend), "n_rows": 0, **(attrs or {}),
    })
    return grp


def create_rows_array(grp: zarr.Group, name: str, shape: tuple[int, ...], dtype: Any,
                      chunks: tuple[int, ...] | None = None, fill_value: Any = 0,
                      compressors: Any = "auto") -> zarr.Array:
    """A data array with a growing row axis (shape[0], 0 at creation), one row a chunk unless `chunks` says finer."""
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


def write_row(grp: zarr.Group, r: int, rows: Mapping[str, Any], points: Mapping[str, np.ndarray],
              others: Mapping[str, np.ndarray] | None = None) -> None:
    """Write row r's data, then its checksum entry (where the group keeps them).

    `rows` go into the row-axis arrays at index r, `points` to `points/<r>/<name>`, `others` to their
    paths with `*` for the row (`rgb_grid/*`). Values are cast to the arrays' dtypes here, so the sums
    are over the bytes stored. Does not mark the row done: the driving process does (`rows.mark`).
    """
    sums: dict[str, str] = {}
    for name, value in [*((f"points/*/{n}", v) for n, v in points.items()), *(others or {}).items()]:
        data = np.ascontiguousarray(value)
        grp.create_array(checksums.path(name, r), data=data, overwrite=True)
        sums[name] = checksums.crc(data)
    for name, value in rows.items():
        arr = grp[name]
        data = np.asarray(value, dtype=arr.dtype)
        arr[r] = data
        sums[name] = checksums.crc(data)
    if checksums.enabled(grp):
        grp[checksums.COLUMN][r] = checksums.entry(sums)


def read_strings(arr: zarr.Array, n: int | None = None) -> list[str]:
    """A Zarr string array (its first `n` entries) as Python strings."""
    return [str(x) for x in np.asarray(arr[:n] if n is not None else arr[:]).tolist()]


def read_points(grp: zarr.Group, r: int) -> dict[str, np.ndarray]:
    """Every `points/<r>/*` array of a row, checked against its checksums."""
    return checksums.CheckedRows(grp).per_row(r, "points")
