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

    head = f"{item.dataset}: {item.url}"
    if item.schema == "pointad-pipe/1":
        from .messages import schema_1_hint

        return [f"{head}: a cache of schema 'pointad-pipe/1': {schema_1_hint(item.dataset)}"]
    if item.schema is None or item.schema != "pointad-pipe/2":
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
