"""The convert job: a schema-1 cache becomes a schema-2 one (or is set aside to be rebuilt).

The schema-1 store is renamed `<dataset>.v1.zarr` and kept. Converting copies every finished or
failed row into groups named as schema 2 names them, keyed by the sample's id and the version of
its files *now*: it assumes the files did not change since the schema-1 cache was built (if they
may have, rebuild instead). Rows whose sample is no longer under the root are left behind.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..cache import locks, migrate, rows, store
from ..cache.versions import FileMemo, relative, sample_versions
from ..catalog import Catalog, DatasetEntry
from ..errors import PointadError
from .identity import clean_from_v1, encode_from_attrs, index_rows, render_identity


@dataclass
class Converted:
    """What `convert` did: groups and rows per stage, the rows left behind, where the old store went."""

    kept_at: str
    groups: dict[str, int] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)
    left_behind: int = 0


def _copy_stage(src: Any, dst: Any, keys: dict[int, tuple[str, str]], upstream: dict[int, int] | None,
                columns: dict[str, list[Any]] | None = None) -> dict[int, int]:
    """Copy src's done and failed rows among `keys` (v1 row -> key) into dst; return v1 row -> v2 row."""
    done, errors = migrate.v1_rows(src)
    picked = [r for r in sorted(keys) if (done[r] or errors[r]) and (upstream is None or r in upstream)]
    key_list = [keys[r] for r in picked]
    p = rows.plan(rows.read_table(dst), key_list)
    cols = {name: [values[r] for r in picked] for name, values in (columns or {}).items()}
    if upstream is not None:
        cols["rows/upstream"] = [upstream[r] for r in picked]
    targets = rows.reserve(dst, p, key_list, cols)
    mapping = {picked[k]: r2 for k, r2 in targets.items()}
    migrate.copy_rows(src, dst, [(r1, r2) for r1, r2 in mapping.items() if done[r1]])
    rows.mark(dst, [(r2, "" if done[r1] else errors[r1]) for r1, r2 in mapping.items()])
    mapping.update({picked[k]: r2 for k, r2 in p.current.items()})
    return mapping


def _convert(entry: DatasetEntry, old: Any, new: Any, out: Converted, log: Callable[[str], None]) -> None:
    every = dataclasses.replace(entry, classes=None, splits=None)
    refs = index_rows(every)
    memo = FileMemo.load(new)
    found = dict(zip([r.id for r in refs], sample_versions(refs, entry.root, memo), strict=True))
    memo.save(new)
    for clean in store.stage_groups(old, "clean"):
        meta = migrate.v1_meta(clean)
        keys = {r: (i, found[i]) for r, i in enumerate(meta.ids) if i in found}
        out.left_behind += len(meta.ids) - len(keys)
        fp, _ = clean_from_v1(dict(clean.attrs["config"]))
        dst = store.find_group(new, "clean", fp) or migrate.start_group(new, clean, "clean", fp, None)
        meta = dataclasses.replace(meta, sources=[relative(s, entry.root) for s in meta.sources])
        c_map = _copy_stage(clean, dst, keys, None, meta.columns())
        _count(out, "clean", c_map)
        for render in _children(old, "render", clean):
            r_fp = render_identity(dict(render.attrs["config"]), fp)
            r_dst = store.find_group(new, "render", r_fp) or migrate.start_group(new, render, "render", r_fp, fp)
            r_map = _copy_stage(render, r_dst, keys, c_map)
            _count(out, "render", r_map)
            for enc in _children(old, "encode", render):
                e_fp = encode_from_attrs(dict(enc.attrs["config"]), enc.attrs["weights_sha256"], r_fp)
                e_dst = store.find_group(new, "encode", e_fp) or migrate.start_group(new, enc, "encode", e_fp, r_fp)
                _count(out, "encode", _copy_stage(enc, e_dst, keys, r_map))
                log(f"encode/{enc.attrs['fingerprint']} -> encode/{e_fp}")


def _children(old: Any, stage: str, parent: Any) -> list[Any]:
    """The schema-1 groups of `stage` made from `parent`."""
    return [g for g in store.stage_groups(old, stage) if g.attrs["upstream"] == parent.attrs["fingerprint"]]


def _count(out: Converted, stage: str, mapping: dict[int, int]) -> None:
    out.groups[stage] = out.groups.get(stage, 0) + 1
    out.rows[stage] = out.rows.get(stage, 0) + len(mapping)


def convert(catalog: Catalog, entry: DatasetEntry, rebuild: bool = False,
            log: Callable[[str], None] | None = None) -> Converted:
    """Move a schema-1 store aside to `<dataset>.v1.zarr` and, unless `rebuild`, convert it into schema 2."""
    log = log or (lambda message: None)
    url = store.dataset_url(catalog.cache, entry.name)
    found = migrate.schema_of(url)
    if found != store.SCHEMA_V1:
        raise PointadError(f"{url} is not a schema-1 cache (its schema is {found!r}): nothing to convert")
    kept = url[: -len(".zarr")] + ".v1.zarr"
    with locks.writing(catalog.cache, entry.name):
        if not rebuild:
            entry.require_root()  # the rows' versions come from the files
        migrate.move_aside(url, kept)
        out = Converted(kept)
        if not rebuild:
            _convert(entry, store.open_url(kept, "r"), store.open_dataset(catalog.cache, entry.name), out, log)
    return out
