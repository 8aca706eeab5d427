"""The camera convention and the small interface every render backend implements.

Camera convention (the one place it is written down; STORE.md `render/camera`):
- pinhole; `P = K [R | t]` is 3x4 and maps a world point (the cleaned cloud's own units) to
  `(a, b, c) = P @ [x, y, z, 1]`;
- the point's *centre pixel* is `(round(a / c), round(b / c))` = (column x, row y), pixel centres at
  integer coordinates, x to the right, y down; its flat index is `y * W + x`;
- its *depth* is `c`, in the cloud's units (P is scaled so that this holds);
- rounding is numpy's `rint` (half to even), as the outside checker does.

A backend answers one question, geometry only: which point owns each pixel (`pix2pt`). Appearance
(the shaded image), visibility, `pt2pix` and `mask2d` are derived from that map by the render stage,
identically for every backend.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class Camera:
    """A pinhole camera: intrinsics K (3x3), world->camera rotation R (3x3) and translation t (3,)."""

    K: np.ndarray
    R: np.ndarray
    t: np.ndarray
    width: int
    height: int

    @property
    def P(self) -> np.ndarray:  # noqa: N802 - the projection matrix's usual name
        """The 3x4 projection matrix, rounded through float32 exactly as it is stored."""
        return (self.K @ np.c_[self.R, self.t]).astype(np.float32).astype(np.float64)


@dataclass(frozen=True)
class Projection:
    """Every point's projection in one view.

    Attributes:
        u, v: sub-pixel image coordinates (float64), column and row.
        depth: c of the camera rule, in the cloud's units.
        centre: flat index of the centre pixel, or -1 when it is off-screen or behind the camera.
        ix, iy: integer centre pixel (may lie outside the image).
    """

    u: np.ndarray
    v: np.ndarray
    depth: np.ndarray
    centre: np.ndarray
    ix: np.ndarray
    iy: np.ndarray


def homogeneous(xyz: np.ndarray) -> np.ndarray:
    """(n, 4) float64 `[x, y, z, 1]` rows, which `project` multiplies by P."""
    return np.c_[np.asarray(xyz, np.float64), np.ones(len(xyz))]


def project(xyz: np.ndarray, P: np.ndarray, height: int, width: int,  # noqa: N803
            hom: np.ndarray | None = None) -> Projection:
    """Project points with the stored (float32) camera, in float64, by the convention above.

    `hom`: `homogeneous(xyz)`, when the caller projects the same points into several views.
    """
    hom = (homogeneous(xyz) if hom is None else hom) @ np.asarray(P, np.float64).T
    depth = hom[:, 2]
    front = depth > 0
    safe = np.where(front, depth, 1.0)
    u, v = hom[:, 0] / safe, hom[:, 1] / safe
    ix = np.where(front, np.rint(u), -1).astype(np.int64)
    iy = np.where(front, np.rint(v), -1).astype(np.int64)
    inside = front & (ix >= 0) & (ix < width) & (iy >= 0) & (iy < height)
    centre = np.where(inside, iy * width + ix, -1)
    return Projection(u=u, v=v, depth=depth, centre=centre, ix=ix, iy=iy)


class Backend(Protocol):
    """A rasteriser of splats. Implementations: `splat` (default), `open3d`, `pyrender`."""

    name: str

    def owners(self, xyz: np.ndarray, camera: Camera, proj: Projection, radius_px: np.ndarray) -> np.ndarray:
        """(H*W,) int32: for each pixel, the index of the nearest point whose splat covers it, or -1.

        Args:
            xyz: (n, 3) world points (rows of the cleaned cloud).
            camera: the view's camera.
            proj: `project(xyz, camera.P, ...)`, already computed by the caller.
            radius_px: (n,) splat radius in pixels; a splat covers the pixels whose integer offset
                (dx, dy) from the point's centre pixel has dx^2 + dy^2 <= radius^2 (the centre always).
        """
        ...

    def close(self) -> None:
        """Release windows or GL contexts (a no-op for CPU backends)."""
        ...
