"""`scores.zarr` of an evaluate run folder: per-row point scores, global scores and the grid maps.

Layout (README "evaluate"): `points/<r>/score` and `points/<r>/label`, `global_score` (N,), `meta/{id,
class,label}`; organized sources also `grid_score` and `grid_gt` (N, H, W), the exact maps the
AUPROs used (the whole smoothed grid, background included), and `grid_valid` (the object's cells, the
`object` metrics' mask). Kept in the cache package because it is the other Zarr hierarchy the project writes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import zarr

from . import store


class ScoresStore:
    """A fresh `scores.zarr` (an existing one is replaced), written one row at a time."""

    def __init__(self, path: Path, meta: store.Meta, grid_shape: tuple[int, int] | None,
                 attrs: dict[str, Any]) -> None:
        self.z = zarr.open_group(str(path), mode="w")
        n = len(meta.ids)
        self.z.attrs.update(attrs)
        self.glob = self.z.create_array("global_score", shape=(n,), chunks=(1,), dtype=np.float32,
                                        fill_value=np.nan)
        self.z.create_array("meta/label", data=np.asarray(meta.labels, np.int8), chunks=(max(n, 1),))
        for key, values in (("id", meta.ids), ("class", meta.classes)):
            self.z.create_array(f"meta/{key}", data=np.asarray(values, dtype=np.dtypes.StringDType()),
                                chunks=(max(n, 1),))
        self.grid_score = self.grid_gt = self.grid_valid = None
        if grid_shape is not None:
            self.grid_score = store.create_rows_array(self.z, "grid_score", (n, *grid_shape), np.float32)
            self.grid_gt = store.create_rows_array(self.z, "grid_gt", (n, *grid_shape), np.uint8)
            self.grid_valid = store.create_rows_array(self.z, "grid_valid", (n, *grid_shape), bool, fill_value=False)

    def write(self, r: int, score: np.ndarray, label: np.ndarray, global_score: float,
              grid: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> None:
        """Row r's point scores and labels, its global score, and (organized) its score, GT and valid maps."""
        self.z.create_array(f"points/{r}/score", data=np.asarray(score, np.float32), overwrite=True)
        self.z.create_array(f"points/{r}/label", data=label, overwrite=True)
        self.glob[r] = global_score
        if grid is not None and self.grid_score is not None:
            self.grid_score[r], self.grid_gt[r], self.grid_valid[r] = grid

    def global_score(self, r: int) -> float:
        """Row r's stored global score."""
        return float(self.glob[r])
