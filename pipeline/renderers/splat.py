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
    """(H*W,) int32 owner map from projected points and per-point splat radii (see module docstring)."""
    n = len(proj.depth)
    front = np.flatnonzero(proj.depth > 0)
    if len(front) == 0:
        return np.full(height * width, -1, np.int32)
    order = front[np.lexsort((front, proj.depth[front]))]  # by depth, then index
    rank = np.empty(n, np.int64)
    rank[order] = np.arange(len(order))
    best = np.full(height * width, len(order), np.int64)
    ix, iy, rad = proj.ix[order], proj.iy[order], np.asarray(radius_px, np.float64)[order]
    ranks = rank[order]
    max_r = int(np.ceil(max(0.0, float(rad.max()))))
    for dx, dy, dist in zip(*disk_offsets(max_r)):
        sel = rad >= dist if dist > 0 else slice(None)
        x, y, rk = ix[sel] + dx, iy[sel] + dy, ranks[sel]
        inb = (x >= 0) & (x < width) & (y >= 0) & (y < height)
        np.minimum.at(best, y[inb] * width + x[inb], rk[inb])
    owners = np.full(height * width, -1, np.int32)
    hit = best < len(order)
    owners[hit] = order[best[hit]]
    return owners


class SplatBackend:
    """numpy z-buffer splatter (the default, `--backend splat`)."""

    name = "splat"

    def owners(self, xyz: np.ndarray, camera: Camera, proj: Projection, radius_px: np.ndarray) -> np.ndarray:
        """See `Backend.owners`."""
        return splat_owners(proj, radius_px, camera.height, camera.width)

    def close(self) -> None:
        """Nothing to release."""
