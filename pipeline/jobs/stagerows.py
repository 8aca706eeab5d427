"""What the three stage jobs share about rows: which samples a stage can work on, and its group's plan.

A stage works on the samples whose upstream row is current (or, in a dry run, would be computed);
the others are `blocked`, with their upstream's reason, and nothing is written for them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..cache import rows
from ..cache.runner import RunReport


def upstream_errors(report: RunReport) -> dict[str, str]:
    """Why each sample (by id) has no current row in `report`'s stage (failed now, earlier, or blocked)."""
    out = {i: f"{report.stage} failed: {e}" for _, i, e in [*report.remembered, *report.failures]}
    out.update(dict(report.blocked))
    return out


def ready(upstream: RunReport) -> list[int]:
    """Sample positions whose upstream row is current (or would be computed, in a dry run)."""
    return [k for k, r in enumerate(np.asarray(upstream.rows)) if r != -1]


def sub_plan(grp: Any, keys: Sequence[tuple[str, str]], retry_failed: bool) -> rows.Plan:
    """The plan of `grp` (None: a group not made yet, where every key is new)."""
    table = rows.read_table(grp) if grp is not None else rows.RowTable([], [], np.zeros(0, bool), [], None)
    return rows.plan(table, keys, retry_failed)


def widen(report: RunReport, positions: list[int], upstream: RunReport) -> RunReport:
    """A report over `positions` (the ready samples) made one over all of them: rows, totals, blocked."""
    n = len(upstream.refs)
    full = np.full(n, -1, np.int64)
    full[positions] = report.rows
    why = upstream_errors(upstream)
    report.blocked = [(upstream.refs[k].id, why.get(upstream.refs[k].id, f"{upstream.stage} not done"))
                      for k in range(n) if upstream.rows[k] == -1]
    report.rows, report.total, report.refs, report.versions = full, n, upstream.refs, upstream.versions
    return report

