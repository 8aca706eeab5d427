"""A stage group's row axis (STORE.md "Rows", "Growth"): keys, states, plans, appends and marks.

A row is one (sample id, version) pair. A stage run asks `plan` which of the dataset's samples are
current, remembered as failed, or to do; `reserve` appends the rows to do (or reuses the pending
ones a killed run left); workers write the data; the driving process `mark`s each row done or
failed. Only the first `n_rows` (a group attr, written last by an append) entries of a column mean
anything, so a kill during an append leaves nothing half-visible.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import zarr

from . import store
from .store import Meta

Key = tuple[str, str]  # (sample id, version)


@dataclass(frozen=True)
class RowTable:
    """The committed row columns of one group, read once (a few chunks, even at 10,000 rows)."""

    ids: list[str]
    versions: list[str]
    done: np.ndarray  # (n,) bool
    errors: list[str]
    upstream: np.ndarray | None  # (n,) int64, render and encode only

    @property
    def n(self) -> int:
        """Committed rows."""
        return len(self.ids)

    def index(self) -> dict[Key, int]:
        """Key -> its row: the lowest done row, else the lowest failed or pending one."""
        found: dict[Key, int] = {}
        for r in range(self.n - 1, -1, -1):  # backwards, so that the lowest row is kept
            key = (self.ids[r], self.versions[r])
            if not key[0]:
                continue  # a gc tombstone
            if self.done[r] or key not in found or not self.done[found[key]]:
                found[key] = r
        return found

    def current(self, keys: Sequence[Key]) -> np.ndarray:
        """For each key, its done row, or -1."""
        index = self.index()
        return np.array([index.get(k, -1) if index.get(k, -1) >= 0 and self.done[index[k]] else -1 for k in keys],
                        dtype=np.int64)


def n_rows(grp: zarr.Group) -> int:
    """The committed row count."""
    return int(grp.attrs.get("n_rows", 0))


def read_table(grp: zarr.Group) -> RowTable:
    """The first `n_rows` entries of the row columns."""
    n = n_rows(grp)
    up = np.asarray(grp["rows/upstream"][:n], dtype=np.int64) if "rows/upstream" in grp else None
    return RowTable(store.read_strings(grp["rows/id"], n), store.read_strings(grp["rows/version"], n),
                    np.asarray(grp["done"][:n], dtype=bool), store.read_strings(grp["error"], n), up)


def read_meta(grp: zarr.Group, rows: Sequence[int] | None = None) -> Meta:
    """A clean group's `rows/id` and `meta/*` columns, at `rows` (default: every committed row)."""
    n = n_rows(grp)
    pick = np.arange(n) if rows is None else np.asarray(rows, dtype=np.int64)

    def col(name: str) -> list[Any]:
        values = np.asarray(grp[name][:n])[pick] if n else np.asarray([])
        return [int(x) for x in values] if name == "meta/label" else [str(x) for x in values.tolist()]

    return Meta(col("rows/id"), col("meta/class"), col("meta/split"), col("meta/defect"), col("meta/label"),
                col("meta/source"))


@dataclass
class Plan:
    """What a stage run has to do for the dataset's samples (`keys`), by key position."""

    current: dict[int, int] = field(default_factory=dict)  # key -> done row
    failed: dict[int, tuple[int, str]] = field(default_factory=dict)  # key -> (row, error): remembered
    todo: list[int] = field(default_factory=list)  # keys to compute
    reuse: dict[int, int] = field(default_factory=dict)  # key to do -> its pending (or retried) row
    new: int = 0  # todo keys whose id has no row at all
    stale: int = 0  # todo keys whose id has rows of another version only
    retried: set[int] = field(default_factory=set)  # todo keys whose row had failed (`--retry-failed`)

    def counts(self) -> dict[str, int]:
        """`new`, `stale`, `pending` (left by a killed run), `retried`, `current`, `failed` (remembered)."""
        return {"new": self.new, "stale": self.stale, "pending": len(self.reuse) - len(self.retried),
                "retried": len(self.retried), "current": len(self.current), "failed": len(self.failed)}


def plan(table: RowTable, keys: Sequence[Key], retry_failed: bool = False) -> Plan:
    """Sort each key into current / failed (remembered unless `retry_failed`) / to do (new, stale, pending)."""
    index = table.index()
    ids_with_rows = {i for i in table.ids if i}
    out = Plan()
    for k, key in enumerate(keys):
        r = index.get(key)
        if r is not None and table.done[r]:
            out.current[k] = r
        elif r is not None and table.errors[r] and not retry_failed:
            out.failed[k] = (r, table.errors[r])
        else:
            out.todo.append(k)
            if r is not None:  # pending, or failed and retried: fill the same row
                out.reuse[k] = r
                if table.errors[r]:
                    out.retried.add(k)
            elif key[0] in ids_with_rows:
                out.stale += 1
            else:
                out.new += 1
    return out


def _row_arrays(grp: zarr.Group) -> list[zarr.Array]:
    """Every array of the group with a row axis: row columns and data arrays (not `points/<r>/*`)."""
    arrays = [a for _, a in grp.arrays()]
    for sub in ("rows", "meta"):
        if sub in grp:
            arrays += [a for _, a in grp[sub].arrays()]
    return arrays


def reserve(grp: zarr.Group, p: Plan, keys: Sequence[Key], columns: dict[str, Sequence[Any]] | None = None
            ) -> dict[int, int]:
    """Rows for `p.todo`: the reused ones reset, new ones appended and committed; key position -> row.

    `columns` gives, per key position, the other row columns to write (`rows/upstream`, `meta/*`).
    """
    columns = columns or {}
    out = dict(p.reuse)
    for k, r in p.reuse.items():
        grp["error"][r] = ""
        for name, values in columns.items():
            grp[name][r] = values[k]
    fresh = [k for k in p.todo if k not in p.reuse]
    if not fresh:
        return out
    n0, need = n_rows(grp), n_rows(grp) + len(fresh)
    for arr in _row_arrays(grp):
        if arr.shape[0] < need:
            arr.resize((need, *arr.shape[1:]))
    span = slice(n0, need)
    grp["rows/id"][span] = store.string_array(keys[k][0] for k in fresh)
    grp["rows/version"][span] = store.string_array(keys[k][1] for k in fresh)
    grp["done"][span] = False
    grp["error"][span] = store.string_array("" for _ in fresh)
    for name, values in columns.items():
        picked = [values[k] for k in fresh]
        grp[name][span] = store.string_array(picked) if grp[name].dtype.kind in "OTU" else np.asarray(picked)
    grp.attrs["n_rows"] = need  # the commit: the appended rows exist from here on
    out.update({k: n0 + i for i, k in enumerate(fresh)})
    return out


def mark(grp: zarr.Group, outcomes: Sequence[tuple[int, str]]) -> None:
    """Record finished rows: '' -> done; a message -> failed (one line, kept for status and reruns)."""
    for r, error in outcomes:
        if error:
            grp["done"][r] = False
            grp["error"][r] = " ".join(str(error).split())[:500]
        else:
            grp["error"][r] = ""
            grp["done"][r] = True


def mark_pending(grp: zarr.Group, rows: Sequence[int]) -> None:
    """Make done rows pending (`verify --repair`): the next run recomputes them in place, same row numbers."""
    for r in rows:
        grp["done"][r] = False
        grp["error"][r] = ""


def tombstone(grp: zarr.Group, rows: Sequence[int]) -> None:
    """Drop rows (gc): not done and id emptied first, so no reader takes them, then their data deleted."""
    if not len(rows):
        return
    from zarr.core.sync import sync

    for r in rows:
        grp["done"][r] = False
    for r in rows:
        grp["rows/id"][r] = ""
    base = f"{grp.path}/" if grp.path else ""
    data = [(name, a.ndim) for name, a in grp.arrays() if a.chunks[0] == 1]
    for r in rows:
        for name, ndim in data:  # row r's chunk is the file `c/<r>` (1-D) or the folder `c/<r>/...`
            key = f"{base}{name}/c/{r}"
            sync(grp.store.delete(key) if ndim == 1 else grp.store.delete_dir(key))
        for sub in ("points", "rgb_grid"):
            sync(grp.store.delete_dir(f"{base}{sub}/{r}"))
