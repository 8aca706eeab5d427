"""What every loader yields: a cheap `SampleRef` per sample, then a `Sample` loaded on demand.

Why two steps: the row order of the cache (STORE.md) is fixed from the refs alone, before any
heavy file is opened, and a broken file only fails its own row when a worker loads it.

Conventions shared by all loaders:
- Organized sources (MVTec 3D-AD, Eyecandies) return the *whole* grid: `points` has exactly H*W
  rows in row-major order, `grid == arange(H*W)`, and missing cells are (0, 0, 0) or non-finite.
  The clean stage drops them; it needs the full grid for the border plane fit and the resize.
- Unorganized sources return only their points; `grid` and `grid_shape` are None.
- `labels` is per point, uint8 0/1 (all zeros for good or unlabelled samples).
- `rgb` is per point, uint8 (n, 3), or None when the source has no colour.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

LABEL_GOOD, LABEL_ANOMALOUS, LABEL_UNKNOWN = 0, 1, -1


@dataclass(frozen=True)
class SampleRef:
    """Identity of one sample, known from the file listing alone (no heavy reads).

    Attributes:
        id: unique within the dataset, e.g. `bagel/test/crack/003`.
        cls: object class.
        split: split name as on disk (`train`, `test`, `test_public`, ...).
        defect: defect type, `good` for normal samples.
        label: 1 anomalous, 0 good, -1 unknown.
        source: the main input path (the file the points come from).
        files: every path the loader needs for this sample, by role (e.g. `xyz`, `rgb`, `gt`).
    """

    id: str
    cls: str
    split: str
    defect: str
    label: int
    source: str
    files: dict[str, str] = field(default_factory=dict)


@dataclass
class Sample:
    """A loaded sample. See the module docstring for the organized-grid convention."""

    ref: SampleRef
    points: np.ndarray  # (n, 3) float32
    labels: np.ndarray  # (n,) uint8, 0/1
    rgb: np.ndarray | None = None  # (n, 3) uint8
    grid: np.ndarray | None = None  # (n,) int32 flat index into grid_shape
    grid_shape: tuple[int, int] | None = None  # (H, W) of the organized grid

    @property
    def organized(self) -> bool:
        """True when the points come from an H x W grid."""
        return self.grid_shape is not None

    def validate(self) -> Sample:
        """Check shapes and dtypes; raise `SampleError` naming the source on a mismatch."""
        from ..errors import SampleError

        n = len(self.points)
        if self.points.ndim != 2 or self.points.shape[1] != 3:
            raise SampleError(self.ref.source, f"expected points (n, 3), got {self.points.shape}")
        if self.labels.shape != (n,):
            raise SampleError(self.ref.source, f"expected labels ({n},), got {self.labels.shape}")
        if self.rgb is not None and self.rgb.shape != (n, 3):
            raise SampleError(self.ref.source, f"expected rgb ({n}, 3), got {self.rgb.shape}")
        if self.grid_shape is not None:
            h, w = self.grid_shape
            if n != h * w:
                raise SampleError(self.ref.source, f"organized grid {h}x{w} but {n} points")
        if n == 0:
            raise SampleError(self.ref.source, "no points")
        return self


class Loader(Protocol):
    """One real layout. Implementations live in `pipeline/loaders/<format>.py`."""

    #: True when samples come with an H x W grid (and so a registered RGB image, if any).
    organized: bool
    #: True when the layout carries colour.
    has_rgb: bool

    def index(
        self, root: Path, classes: Iterable[str] | None, splits: Iterable[str] | None
    ) -> list[SampleRef]:
        """List the samples, sorted by id. Raises `CatalogError` for a root that is not this layout."""
        ...

    def load(self, ref: SampleRef) -> Sample:
        """Read one sample. Raises `SampleError` naming the file for any broken input."""
        ...
