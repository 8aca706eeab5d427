"""Check a cache's data against its rows' checksums (`pointad-pipe verify`), and mark damaged rows for recompute.

Every done row of every group with checksums is read back in full and compared (STORE.md
"Checksums"). `--repair` marks the damaged rows pending (not done, no error), so the next stage
run recomputes exactly them, in place. Groups written before checksums (schema 2) cannot be
checked: they are listed as such and read as before.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..cache import checksums, locks, rows, store
from ..cache.runner import progress
from ..catalog import Catalog, DatasetEntry


@dataclass
class Damage:
    """One damaged row: which, and its first few problems as (array, why)."""

    row: int
    id: str
    problems: list[tuple[str, str]]


@dataclass
class GroupCheck:
    """One stage group's verdict."""

    stage: str
    fingerprint: str
    checked: bool  # false: written before checksums, or its row columns are unreadable (see `note`)
    rows: int = 0  # done rows looked at
    bad: list[Damage] = field(default_factory=list)
    note: str = ""


@dataclass
class Verified:
    """What `verify` found in one dataset's cache, and what `--repair` did."""

    dataset: str
    url: str
    groups: list[GroupCheck] = field(default_factory=list)
    repaired: int = 0
    note: str = ""

    @property
    def bad_rows(self) -> int:
        """Damaged rows in all groups."""
        return sum(len(g.bad) for g in self.groups)

    def rerun(self) -> str | None:
        """The stage command that recomputes the damaged rows (the deepest stage with any), or None."""
        stages = [g.stage for g in self.groups if g.bad]
        return max(stages, key=store.STAGES.index) if stages else None

    def as_json(self) -> dict[str, Any]:
        """For `verify --json`."""
        return asdict(self) | {"bad_rows": self.bad_rows}


def check_group(grp: Any, tick: Callable[[int], None] = lambda n: None) -> GroupCheck:
    """Read back every done row of a group and compare it with its checksums."""
    out = GroupCheck(str(grp.attrs["stage"]), str(grp.attrs["fingerprint"]), checked=checksums.enabled(grp))
    try:
        table = rows.read_table(grp)
    except Exception as exc:  # the row columns themselves: nothing can be said about any row
        out.checked, out.note = False, f"its row columns cannot be read ({type(exc).__name__}: {exc})"
        return out
    done = np.flatnonzero(table.done)
    out.rows = len(done)
    if not out.checked:
        out.note = "written before checksums (schema 2): its rows cannot be checked and are read as before"
        tick(len(done))
        return out
    reader = checksums.CheckedRows(grp)
    for r in done:
        problems = reader.verify(int(r))
        if problems:
            out.bad.append(Damage(int(r), table.ids[r], problems))
        tick(1)
    return out


def verify(catalog: Catalog, entry: DatasetEntry, repair: bool = False, show_progress: bool = True) -> Verified:
    """Check every group of a dataset's cache; with `repair`, mark the damaged rows pending.

    Holds the read lock (a writer may run beside it: only done rows are read), or the write lock
    when it repairs.
    """
    out = Verified(entry.name, store.dataset_url(catalog.cache, entry.name))
    if not store.dataset_exists(catalog.cache, entry.name):
        out.note = "nothing cached yet"
        return out
    hold = locks.writing(catalog.cache, entry.name) if repair else locks.reading(catalog.cache, entry.name)
    with hold:
        root = store.open_dataset(catalog.cache, entry.name, mode="r+" if repair else "r")
        groups = [g for stage in store.STAGES for g in store.stage_groups(root, stage)]
        total = sum(rows.n_rows(g) for g in groups)
        bar = progress(total, f"verify {entry.name}", "row", enabled=show_progress)
        try:
            for grp in groups:
                found = check_group(grp, bar.update)
                bar.update(rows.n_rows(grp) - found.rows)  # rows not done are not read
                out.groups.append(found)
                if repair and found.bad:
                    rows.mark_pending(grp, [d.row for d in found.bad])
                    out.repaired += len(found.bad)
        finally:
            bar.close()
    return out
