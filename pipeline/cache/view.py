"""The dataset's current view (STORE.md "Reading only current rows"): what train, evaluate and benchmark read.

A sample is in the view when its files' version has a done encode row; that row's `rows/upstream`
leads to its render row, whose own leads to its clean row. Removed files drop out at once (no
work), and a changed file's old rows are not current, so nothing stale is ever read.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import zarr

from . import rows as rowsmod
from .store import Meta


@dataclass(frozen=True)
class View:
    """The current rows of one encode group and its upstream render and clean groups.

    `meta` describes view position i; `rows[i]` is its (clean, render, encode) row numbers.
    """

    encode: zarr.Group
    render: zarr.Group
    clean: zarr.Group
    meta: Meta
    versions: list[str]
    rows: np.ndarray  # (n, 3) int64
    missing: list[str]  # ids of the catalog's samples without a current encode row
    missing_classes: list[str]  # their classes

    def __len__(self) -> int:
        return len(self.meta.ids)

    def digest(self, positions: Sequence[int] | None = None) -> str:
        """16 hex characters over the (id, version) pairs at `positions` (default: all): which data a run saw."""
        pick = range(len(self)) if positions is None else positions
        text = "\n".join(sorted(f"{self.meta.ids[i]}\t{self.versions[i]}" for i in pick))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def upstream_groups(root: zarr.Group, encode: zarr.Group) -> tuple[zarr.Group, zarr.Group]:
    """The render group an encode group was made from, and that render's clean group."""
    render = root[f"render/{encode.attrs['upstream']}"]
    return render, root[f"clean/{render.attrs['upstream']}"]


def current_view(root: zarr.Group, encode: zarr.Group, meta: Meta, versions: Sequence[str]) -> View:
    """The view of `encode` for the samples `meta` (the catalog's files now) at `versions`."""
    render, clean = upstream_groups(root, encode)
    keys = list(zip(meta.ids, versions, strict=True))
    table = rowsmod.read_table(encode)
    enc_rows, enc_up = table.current(keys), table.upstream
    keep = [i for i in range(len(keys)) if enc_rows[i] >= 0]
    render_up = rowsmod.read_table(render).upstream
    triples = np.zeros((len(keep), 3), np.int64)
    for j, i in enumerate(keep):
        e = int(enc_rows[i])
        rr = int(enc_up[e])
        triples[j] = (int(render_up[rr]), rr, e)
    lost = [i for i in range(len(keys)) if enc_rows[i] < 0]
    return View(encode, render, clean, meta.take(keep), [versions[i] for i in keep], triples,
                [meta.ids[i] for i in lost], [meta.classes[i] for i in lost])
