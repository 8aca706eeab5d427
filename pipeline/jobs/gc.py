"""Survey a dataset's cache against its files (`status`), and compact it (`gc`).

Whole groups `gc` removes, per dataset:
- clean: groups other than the catalog's clean config;
- render: groups whose upstream clean group is removed; with `strict`, also render configs other
  than the catalog's own (`visibility` variants are kept by default);
- encode: groups whose upstream render group is removed (every model and layer choice is kept);
- any group whose creation never finished (`initialized` unset).
Rows `gc` drops in the groups it keeps: rows no file under the dataset root leads to any more
(removed files, and old versions of edited ones), whatever the catalog's class/split selection.
Checkpoints outside the cache that name a removed encode group stop being usable by `evaluate`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ..cache import locks, rows, store
from ..cache.status import GroupStatus, disk_bytes, group_status
from ..catalog import Catalog, DatasetEntry
from ..errors import CatalogError
from .identity import clean_identity, current_samples, index_rows, render_config, render_identity


@dataclass(frozen=True)
class Stale:
    """One stage group that `gc` would remove, and why."""

    stage: str
    fingerprint: str
    reason: str
    size: int | None


@dataclass
class Survey:
    """A dataset's cache against its files now: every group's counts, and what `gc` would drop."""

    dataset: str
    url: str
    schema: str | None = None
    samples: int | None = None  # samples the catalog points at now (None: the root is not there)
    groups: list[GroupStatus] = field(default_factory=list)
    stale: list[Stale] = field(default_factory=list)
    note: str = ""

    def freeable(self) -> int:
        """Bytes `gc` would free (whole groups and dead rows; 0 where sizes are unknown)."""
        return sum(s.size or 0 for s in self.stale) + sum(g.freeable or 0 for g in self.groups
                                                           if not self.removes(g))

    def removes(self, g: GroupStatus) -> bool:
        """Whether `gc` removes the whole group."""
        return any(s.stage == g.stage and s.fingerprint == g.fingerprint for s in self.stale)

    def as_json(self) -> dict[str, Any]:
        """For `status --json`: dead rows as a count, sizes in bytes."""
        out = dataclasses.asdict(self)
        for g in out["groups"]:
            g["dead_rows"] = len(g["dead_rows"])
        out["freeable"] = self.freeable()
        return out


def _whole_groups(root: Any, entry: DatasetEntry, strict: bool) -> list[Stale]:
    """The groups the catalog no longer leads to."""
    clean_fp, _ = clean_identity(entry)
    render_fp = render_identity(render_config(entry), clean_fp)
    kept: dict[str, set[str]] = {"clean": set(), "render": set()}
    out: list[Stale] = []
    for stage in store.STAGES:
        for grp in store.stage_groups(root, stage, finished_only=False):
            fp, up = grp.attrs.get("fingerprint", grp.name.rsplit("/", 1)[-1]), grp.attrs.get("upstream")
            if not grp.attrs.get("initialized"):
                reason = "its creation never finished"
            elif stage == "clean":
                reason = "" if fp == clean_fp else "the clean config changed"
            elif up not in kept["clean" if stage == "render" else "render"]:
                reason = f"its upstream {'clean' if stage == 'render' else 'render'}/{up} is removed"
            elif stage == "render" and strict and fp != render_fp:
                reason = "its render config is not the catalog's (strict)"
            else:
                reason = ""
            if reason:
                sizes = disk_bytes(grp)
                out.append(Stale(stage, fp, reason, sizes[0] if sizes else None))
            elif stage in kept:
                kept[stage].add(fp)
    return out


def survey(catalog: Catalog, entry: DatasetEntry, strict: bool = False) -> Survey:
    """Every initialised group of the dataset counted against its files now, and what `gc` would drop."""
    out = Survey(entry.name, store.dataset_url(catalog.cache, entry.name))
    if not store.dataset_exists(catalog.cache, entry.name):
        out.note = "nothing cached yet"
        return out
    try:
        root = store.open_dataset(catalog.cache, entry.name, mode="r")
    except store.SchemaMismatch as exc:
        out.schema, out.note = exc.found, str(exc)
        return out
    out.schema = str(root.attrs.get("schema", store.SCHEMA))
    try:
        entry.require_root()
        every = dataclasses.replace(entry, classes=None, splits=None)  # gc keeps rows of unselected classes
        meta, versions = current_samples(catalog.cache, every)
        live = set(zip(meta.ids, versions, strict=True))
        selected = {r.id for r in index_rows(entry)}
        view = {i: v for i, v in live if i in selected}
        out.samples = len(view)
    except CatalogError as exc:  # the root is not there: counts without a view, and gc drops no row
        view, live, out.note = {}, None, f"{exc}: rows cannot be told current or stale"
    out.stale = _whole_groups(root, entry, strict)
    for stage in store.STAGES:
        out.groups += [group_status(g, view, live) for g in store.stage_groups(root, stage)]
    return out


def compact(catalog: Catalog, entry: DatasetEntry, found: Survey) -> None:
    """Remove the stale groups (encode first) and drop the dead rows of the kept ones."""
    root = store.open_dataset(catalog.cache, entry.name)
    for item in sorted(found.stale, key=lambda s: -store.STAGES.index(s.stage)):
        store.delete_group(root, f"{item.stage}/{item.fingerprint}")
    for g in sorted(found.groups, key=lambda g: -store.STAGES.index(g.stage)):
        if g.dead_rows and not found.removes(g):
            rows.tombstone(root[f"{g.stage}/{g.fingerprint}"], g.dead_rows)


def collect(catalog: Catalog, dataset: str | None = None, strict: bool = False,
            dry_run: bool = False) -> list[Survey]:
    """The gc command: survey one dataset (or all of the catalog's) and, unless `dry_run`, compact it.

    Holds both of the dataset's locks (no writer, no reader) while it deletes.
    """
    found = []
    for name in [dataset] if dataset else list(catalog.datasets):
        entry = catalog.dataset(name)
        if not store.dataset_exists(catalog.cache, name):
            continue
        entry.require_root()  # without the files every row would look dead
        if dry_run:
            found.append(survey(catalog, entry, strict))
            continue
        with locks.exclusive(catalog.cache, name):
            item = survey(catalog, entry, strict)
            if item.schema in store.READS:
                compact(catalog, entry, item)
            found.append(item)
    return found
