"""Per-row checksums (STORE.md "Checksums"): damaged data fails its row, never reads as zeros.

Zarr reads a chunk that is gone as the fill value, so a deleted chunk of `encode/<fp>/patch`
reads as zeros and looks valid. Every row of a group with the attr `checksums` therefore records,
in its `checksum` entry, the CRC-32 of each of its arrays as written; readers compare before they
use a row. A chunk codec (zarr's crc32c) would catch a truncated chunk but not a missing one, which
is why the sum is per row and kept apart from the data.

An entry is `name:crc` pairs, sorted by name, joined by spaces: `name` is a row-axis array
(`image`, its row r) or a per-row path with `*` for the row (`points/*/xyz` is `points/<r>/xyz`), so
that equal rows have equal entries whatever their row numbers; `crc` is 8 hex digits of zlib's
CRC-32 (fast: ~4 GB/s here) over the C-order, little-endian bytes of the value.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping

import numpy as np
import zarr

from ..errors import CorruptRow, first_line

KIND = "crc32"  # the group attr `checksums`: which sum the `checksum` column holds
COLUMN = "checksum"


def crc(value: np.ndarray) -> str:
    """8 hex digits of CRC-32 over the array's bytes (C order, little-endian)."""
    a = np.ascontiguousarray(value)
    if a.dtype.byteorder == ">":
        a = a.astype(a.dtype.newbyteorder("<"))
    return f"{zlib.crc32(a.reshape(-1).view(np.uint8)) & 0xFFFFFFFF:08x}"


def entry(sums: Mapping[str, str]) -> str:
    """A row's `checksum` entry from {array name: crc}."""
    return " ".join(f"{name}:{sums[name]}" for name in sorted(sums))


def parse(text: str) -> dict[str, str]:
    """{array name: crc} of a `checksum` entry ('' gives {})."""
    return dict(item.rsplit(":", 1) for item in text.split())


def path(name: str, r: int) -> str:
    """Where an entry's `name` lives for row r: `points/*/xyz` -> `points/<r>/xyz`; row-axis names as they are."""
    return name.replace("*", str(r))


def enabled(grp: zarr.Group) -> bool:
    """Whether the group's rows carry checksums (groups written before schema 3 do not)."""
    return grp.attrs.get("checksums") == KIND


def group_name(grp: zarr.Group) -> str:
    """`<stage>/<fp>`: how messages name a group."""
    return str(grp.path).strip("/")


class CheckedRows:
    """Reads rows of one group, each array checked against its row's checksum (when the group has them).

    The parsed entries are kept per row, so reading several arrays of a row reads its entry once.
    """

    def __init__(self, grp: zarr.Group) -> None:
        self.grp = grp
        self.checked = enabled(grp)
        self._sums: dict[int, dict[str, str]] = {}

    def sums(self, r: int) -> dict[str, str]:
        """Row r's recorded {array: crc}; a done row of a checked group with none is damaged."""
        if r not in self._sums:
            try:
                text = str(np.asarray(self.grp[COLUMN][r]).item())
            except Exception as exc:
                raise CorruptRow(group_name(self.grp), r, COLUMN, f"unreadable ({first_line(exc)})") from exc
            if not text:
                raise CorruptRow(group_name(self.grp), r, COLUMN, "no checksum recorded (its chunk is missing)")
            self._sums[r] = parse(text)
        return self._sums[r]

    def read(self, r: int, name: str) -> np.ndarray:
        """Row r of `name`: a row-axis array (`image`) or a per-row one (`points/*/xyz`), checked."""
        where = path(name, r)
        try:
            value = np.asarray(self.grp[where][:] if "*" in name else self.grp[name][r])
        except Exception as exc:  # a truncated chunk, a deleted array
            raise CorruptRow(group_name(self.grp), r, where, f"unreadable ({first_line(exc)})") from exc
        if self.checked:
            want = self.sums(r).get(name)
            if want is None:
                raise CorruptRow(group_name(self.grp), r, where, "no checksum recorded for this array")
            if crc(value) != want:
                raise CorruptRow(group_name(self.grp), r, where,
                                 "checksum mismatch (a chunk is missing or was changed)")
        return value

    def has(self, r: int, name: str) -> bool:
        """Whether row r has the per-row array `name` (`rgb_grid/*`): by its entry where there is one."""
        return name in self.sums(r) if self.checked else path(name, r) in self.grp

    def per_row(self, r: int, folder: str) -> dict[str, np.ndarray]:
        """Every array under `<folder>/<r>/` by its name, checked; a recorded one that is gone is damage."""
        prefix = f"{folder}/*/"
        names = {p[len(prefix):] for p in self.sums(r) if p.startswith(prefix)} if self.checked else set()
        try:
            names |= {name for name, _ in self.grp[f"{folder}/{r}"].arrays()}
        except KeyError as exc:
            if not names:
                raise CorruptRow(group_name(self.grp), r, f"{folder}/{r}", "missing") from exc
        return {name: self.read(r, prefix + name) for name in sorted(names)}

    def verify(self, r: int) -> list[tuple[str, str]]:
        """Every problem of row r as (array, why): each array its entry records is read and checked."""
        try:
            names = sorted(self.sums(r))
        except CorruptRow as exc:
            return [(exc.array, exc.problem)]
        problems: list[tuple[str, str]] = []
        for name in names:
            try:
                self.read(r, name)
            except CorruptRow as exc:
                problems.append((exc.array, exc.problem))
        return problems
