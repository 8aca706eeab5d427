"""How `status` words a survey of the cache for people (`--json` gives the same for scripts)."""

from __future__ import annotations

from typing import Any

MAX_ERRORS = 10  # failed samples listed per group; the count says how many more


def _group_line(g: Any, removed: bool) -> str:
    extra = {"render": f"backend={g.detail.get('backend')}",
             "encode": f"model={g.detail.get('model')} layers={g.detail.get('layers')}"}.get(g.stage, "")
    from pointad_pipe.pipeline.cache.status import human_size

    gc = "  gc removes it" if removed else (f"  gc frees {human_size(g.freeable)} ({len(g.dead_rows)} rows)"
                                            if g.dead_rows else "")
    return (f"  {g.stage:<7}{g.fingerprint}  current {g.current}  stale {g.stale}  missing {g.missing}  "
            f"failed {g.failed}  rows {g.rows}  {human_size(g.size)}  {g.created}  {extra}{gc}").rstrip()


def survey_lines(item: Any) -> list[str]:
    """A dataset's header, one line per group, its failures, and what gc would free."""
    from pointad_pipe.pipeline.cache.status import human_size
    from pointad_pipe.pipeline.cache.store import READS

    head = f"{item.dataset}: {item.url}"
    if item.schema == "pointad-pipe/1":
        from .messages import schema_1_hint

        return [f"{head}: a cache of schema 'pointad-pipe/1': {schema_1_hint(item.dataset)}"]
    if item.schema is None or item.schema not in READS:
        return [f"{head}: {item.note}"]
    lines = [f"{head} (schema {item.schema}), {item.samples if item.samples is not None else '?'} samples in the "
             f"catalog's view" + (f"; {item.note}" if item.note else "")]
    if not item.groups:
        lines.append("  (no stage groups)")
    for g in item.groups:
        lines.append(_group_line(g, item.removes(g)))
        for sid, err in g.errors[:MAX_ERRORS]:
            lines.append(f"      failed {sid}: {err}")
        if len(g.errors) > MAX_ERRORS:
            lines.append(f"      ... and {len(g.errors) - MAX_ERRORS} more (status --json lists all)")
    lines.append(f"  gc could free {human_size(item.freeable())}")
    return lines


def verify_lines(item: Any) -> list[str]:
    """A dataset's verify verdict: one line per group, each damaged row with its arrays, and what to do."""
    lines = [f"{item.dataset}: {item.url}" + (f": {item.note}" if item.note else "")]
    for g in item.groups:
        if not g.checked:
            lines.append(f"  {g.stage:<7}{g.fingerprint}  {g.rows} rows: cannot check: {g.note}")
            continue
        lines.append(f"  {g.stage:<7}{g.fingerprint}  {g.rows} rows checked, {len(g.bad)} damaged")
        for d in g.bad[:MAX_ERRORS]:
            what = "; ".join(f"{array}: {why}" for array, why in d.problems)
            lines.append(f"      row {d.row} ({d.id}): {what}")
        if len(g.bad) > MAX_ERRORS:
            lines.append(f"      ... and {len(g.bad) - MAX_ERRORS} more (--json lists them all)")
    stage = item.rerun()
    if stage is None:
        if item.groups:
            lines.append("  no damage found")
    elif item.repaired:
        lines.append(f"  marked {item.repaired} damaged row(s) for recompute: run `pointad-pipe {stage} --dataset "
                     f"{item.dataset}` to recompute exactly them")
    else:
        lines.append(f"  {item.bad_rows} damaged row(s): `pointad-pipe verify --dataset {item.dataset} --repair`, "
                     f"then `pointad-pipe {stage} --dataset {item.dataset}`, recomputes them")
    return lines
