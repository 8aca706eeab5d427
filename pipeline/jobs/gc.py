"""The gc job: find and remove stage groups that the current catalog no longer leads to.

What is kept, per dataset:
- clean: the group the catalog's current clean config and row list fingerprint to;
- render: groups whose upstream clean group is kept (render options such as `visibility` make
  legitimate variants); with `strict`, only the catalog's own render config;
- encode: groups whose upstream render group is kept (every model and layer choice).
Everything else is stale, as is a group whose creation never finished (`initialized` unset).
Checkpoints outside the cache that name a removed encode group stop being usable by `evaluate`.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..cache import store
from ..catalog import Catalog, DatasetEntry
from .identity import clean_identity, index_rows, render_config, render_identity


@dataclass(frozen=True)
class Stale:
    """One stage group that `gc` would remove, and why."""

    stage: str
    fingerprint: str
    reason: str
    size: int | None


def stale_groups(catalog: Catalog, entry: DatasetEntry, strict: bool = False) -> list[Stale]:
    """The stage groups of `entry`'s cache that the current catalog does not lead to."""
    entry.require_root()
    clean_fp, _ = clean_identity(entry, index_rows(entry))
    render_fp = render_identity(render_config(entry), clean_fp)
    root = store.open_dataset(catalog.cache, entry.name)
    kept: dict[str, set[str]] = {"clean": set(), "render": set()}
    out: list[Stale] = []
    for stage in store.STAGES:
        for grp in store.stage_groups(root, stage, finished_only=False):
            fp, up = grp.attrs.get("fingerprint", grp.name.rsplit("/", 1)[-1]), grp.attrs.get("upstream")
            if not grp.attrs.get("initialized"):
                reason = "its creation never finished"
            elif stage == "clean":
                reason = "" if fp == clean_fp else "the clean config or the dataset's rows changed"
            elif up not in kept["clean" if stage == "render" else "render"]:
                reason = f"its upstream {'clean' if stage == 'render' else 'render'}/{up} is stale"
            elif stage == "render" and strict and fp != render_fp:
                reason = "its render config is not the catalog's (strict)"
            else:
                reason = ""
            if reason:
                out.append(Stale(stage, fp, reason, store.disk_size(grp)))
            elif stage in kept:
                kept[stage].add(fp)
    return out


def remove(catalog: Catalog, entry: DatasetEntry, stale: list[Stale]) -> None:
    """Delete the stale groups (encode first, so a crash never leaves an encode without its render)."""
    root = store.open_dataset(catalog.cache, entry.name)
    for item in sorted(stale, key=lambda s: -store.STAGES.index(s.stage)):
        store.delete_group(root, f"{item.stage}/{item.fingerprint}")


def collect(catalog: Catalog, dataset: str | None = None, strict: bool = False,
            dry_run: bool = False) -> list[tuple[str, Stale]]:
    """The gc command: every stale group of one dataset (or all of the catalog's), removed unless `dry_run`."""
    found = []
    for name in [dataset] if dataset else list(catalog.datasets):
        entry = catalog.dataset(name)
        if not store.dataset_exists(catalog.cache, name):
            continue
        stale = stale_groups(catalog, entry, strict)
        found += [(name, item) for item in stale]
        if stale and not dry_run:
            remove(catalog, entry, stale)
    return found
