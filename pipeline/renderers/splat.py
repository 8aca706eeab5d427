"""The default backend: a vectorised z-buffer point splatter in numpy.

Why our own: it gives the exact pixel->point map in one pass with no X, GL or apt package, and
ENVIRONMENT.md measured it as the fastest option on CPU.

Tie rule: among the splats covering a pixel the smallest depth wins; equal depths go to the lower
point index (points are ranked by (depth, index) once, and each pixel keeps its minimum rank).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from .base import Camera, Projection


@lru_cache(maxsize=16)
def disk_offsets(max_radius: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Integer offsets (dx, dy) within `max_radius` of the centre and their lengths, nearest first."""
    r = np.arange(-max_radius, max_radius + 1)
    dx, dy = (a.ravel() for a in np.meshgrid(r, r))
    dist = np.hypot(dx, dy)
    keep = dist <= max_radius
    order = np.argsort(dist[keep], kind="stable")
    return dx[keep][order], dy[keep][order], dist[keep][order]


def splat_owners(proj: Projection, radius_px: np.ndarray, height: int, width: int) -> np.ndarray:
    """(H*W,) int32 owner map from projected points and per-point splat radii (see module docstring).

    Offsets are visited nearest first and points by decreasing radius, so each offset touches only
    the points whose splat reaches it: the cost follows the total splat area, not n x the largest.
    """
    front = np.flatnonzero(proj.depth > 0)
    if len(front) == 0:
        return np.full(height * width, -1, np.int32)
    by_depth = front[np.lexsort((front, proj.depth[front]))]  # the z-buffer order: depth, then index
    rank = np.empty(len(proj.depth), np.int64)
    rank[by_depth] = np.arange(len(by_depth))
    rad = np.asarray(radius_px, np.float64)[front]
    by_radius = front[np.argsort(-rad, kind="stable")]
    rad_desc = np.asarray(radius_px, np.float64)[by_radius]
    ix, iy, rk = proj.ix[by_radius], proj.iy[by_radius], rank[by_radius]
    best = np.full(height * width, len(by_depth), np.int64)
    for dx, dy, dist in zip(*disk_offsets(int(np.ceil(max(0.0, rad_desc[0])))), strict=True):
        m = len(rk) if dist == 0 else int(np.searchsorted(-rad_desc, -dist, side="right"))
        x, y = ix[:m] + dx, iy[:m] + dy
        inb = (x >= 0) & (x < width) & (y >= 0) & (y < height)
        np.minimum.at(best, y[inb] * width + x[inb], rk[:m][inb])
    owners = np.full(height * width, -1, np.int32)
    hit = best < len(by_depth)
    owners[hit] = by_depth[best[hit]]
    return owners


class SplatBackend:
    """numpy z-buffer splatter (the default, `--backend splat`)."""

    name = "splat"

    def owners(self, xyz: np.ndarray, camera: Camera, proj: Projection, radius_px: np.ndarray) -> np.ndarray:
        """See `Backend.owners`."""
        return splat_owners(proj, radius_px, camera.height, camera.width)

    def close(self) -> None:
        """Nothing to release."""
