"""What a stage group holds for the dataset as it is now (the `status` command, and `gc`'s row list).

Counts are per sample of the current view: current, stale (its files changed since), missing (no
row at all), failed (remembered). Dead rows are those no file under the dataset root leads to any
more: `gc` drops them, and their bytes are what it could free.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zarr

from . import rows

Key = tuple[str, str]
# a row's own objects; `done` and `error` are row columns (4096 rows a chunk), not row 0's data
_ROW_PATH = re.compile(r"^(?:points|rgb_grid)/(\d+)(?:/|$)|^(?!done/|error/)[^/]+/c/(\d+)(?:/|$)")


def human_size(n: int | None) -> str:
    """Bytes as B/KB/MB/GB/TB, `?` when unknown."""
    if n is None:
        return "?"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def _object_sizes(grp: zarr.Group) -> Iterator[tuple[str, int]] | None:
    """(path below the group, bytes) of every object the group holds; None where the store cannot list.

    Local stores walk the folder; fsspec stores (`s3://`, `gs://`, `file://`) list the prefix once,
    sizes included (one paginated listing, not a request per chunk).
    """
    local = getattr(grp.store, "root", None)
    if isinstance(local, Path):
        base = local / grp.path
        return ((p.relative_to(base).as_posix(), p.stat().st_size) for p in base.rglob("*") if p.is_file())
    fs, prefix = getattr(grp.store, "fs", None), getattr(grp.store, "path", None)
    if fs is None or prefix is None or not hasattr(fs, "_find"):
        return None
    from zarr.core.sync import sync

    base = f"{prefix.rstrip('/')}/{grp.path}" if grp.path else prefix.rstrip("/")
    try:
        found = sync(fs._find(base, detail=True, withdirs=False))
    except (OSError, ValueError):
        return None
    return ((key[len(base):].lstrip("/"), int(info.get("size") or 0)) for key, info in found.items())


def disk_bytes(grp: zarr.Group) -> tuple[int, dict[int, int]] | None:
    """A group's stored bytes, total and per row (None where the store cannot list its objects)."""
    objects = _object_sizes(grp)
    if objects is None:
        return None
    total, per_row = 0, {}
    for rel, size in objects:
        total += size
        m = _ROW_PATH.match(rel)
        if m:
            r = int(m.group(1) or m.group(2))
            per_row[r] = per_row.get(r, 0) + size
    return total, per_row


@dataclass
class GroupStatus:
    """One stage group against the dataset's samples now."""

    stage: str
    fingerprint: str
    upstream: str | None
    created: str
    rows: int  # committed rows
    current: int = 0
    stale: int = 0
    missing: int = 0
    failed: int = 0
    dead_rows: list[int] = field(default_factory=list)  # no file leads to them: gc drops them
    size: int | None = None
    freeable: int | None = None  # bytes of the dead rows
    errors: list[tuple[str, str]] = field(default_factory=list)  # (id, error) of the failed samples
    detail: dict[str, Any] = field(default_factory=dict)


def group_status(grp: zarr.Group, view: Mapping[str, str], live: Collection[Key] | None) -> GroupStatus:
    """Count `grp`'s rows against `view` ({id: version now}); `live` (every file's key) finds dead rows."""
    table = rows.read_table(grp)
    index = table.index()
    with_rows = {i for i in table.ids if i}
    out = GroupStatus(grp.attrs["stage"], grp.attrs["fingerprint"], grp.attrs.get("upstream"),
                      str(grp.attrs.get("created_utc", "")), table.n,
                      detail={k: grp.attrs[k] for k in ("backend", "model", "layers") if k in grp.attrs})
    for sid, version in view.items():
        r = index.get((sid, version))
        if r is not None and table.done[r]:
            out.current += 1
        elif r is not None and table.errors[r]:
            out.failed += 1
            out.errors.append((sid, table.errors[r]))
        elif sid in with_rows and r is None:
            out.stale += 1
        else:
            out.missing += 1
    if live is not None:
        live_set = set(live)
        out.dead_rows = [r for r, key in enumerate(zip(table.ids, table.versions, strict=True))
                         if key[0] and key not in live_set]
    sizes = disk_bytes(grp)
    if sizes is not None:
        out.size = sizes[0]
        if live is not None:  # a gc killed mid-way leaves tombstones with data: finish them
            out.dead_rows += [r for r in range(table.n) if not table.ids[r] and sizes[1].get(r, 0)]
        out.freeable = sum(sizes[1].get(r, 0) for r in out.dead_rows)
    return out
