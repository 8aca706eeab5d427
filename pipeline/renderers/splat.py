"""The default backend: a vectorised z-buffer point splatter in numpy.

Why our own: it gives the exact pixel->point map in one pass with no X, GL or apt package, and
ENVIRONMENT.md measured it as the fastest option on CPU.

Tie rule: among the splats covering a pixel the smallest depth wins; equal depths go to the lower
point index (points are ranked by (depth, index) once, and each pixel keeps its minimum rank).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from ..ordering import lex_order
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

    Why it is fast: the z-buffer is padded by twice the largest radius, so no offset needs a bounds check;
    offsets are visited nearest first and points by decreasing radius (a counting sort on the number
    of offset rings a splat reaches), so each offset touches only the points whose splat reaches it.
    """
    rad_all = np.asarray(radius_px, np.float64)
    pad = int(np.ceil(max(0.0, float(rad_all.max(initial=0.0)))))
    # points whose splat can reach the image, and in front of the camera
    live = np.flatnonzero((proj.depth > 0) & (proj.ix >= -pad) & (proj.ix < width + pad)
                          & (proj.iy >= -pad) & (proj.iy < height + pad))
    if len(live) == 0:
        return np.full(height * width, -1, np.int32)
    by_depth = live[lex_order(proj.depth[live])]  # the z-buffer order: depth, then index
    rank = np.empty(len(proj.depth), np.int64)
    rank[by_depth] = np.arange(len(by_depth))
    dx, dy, dist = disk_offsets(pad)
    rings = np.unique(dist)  # distinct offset lengths, ascending
    reach = np.searchsorted(rings, rad_all[live], side="right")  # how many rings each splat covers (>= 1)
    by_radius = live[np.argsort((len(rings) - reach).astype(np.int16), kind="stable")]  # radix sort
    count_reaching = np.cumsum(np.bincount(reach, minlength=len(rings) + 1)[::-1])[::-1]  # points with reach > j
    margin = 2 * pad  # a live centre lies within `pad` of the image, its splat within `pad` of that
    stride = width + 2 * margin
    # int32 throughout the loop (a padded 336^2 buffer and 2^31 points are far off): half the memory traffic
    flat = ((proj.iy[by_radius] + margin) * stride + proj.ix[by_radius] + margin).astype(np.int32)
    rk = rank[by_radius].astype(np.int32)
    best = np.full((height + 2 * margin) * stride, len(by_depth), np.int32)
    ring_of = np.searchsorted(rings, dist)
    shifted = np.empty_like(flat)
    for ox, oy, j in zip(dx, dy, ring_of, strict=True):
        m = int(count_reaching[j + 1])
        np.add(flat[:m], oy * stride + ox, out=shifted[:m])
        np.minimum.at(best, shifted[:m], rk[:m])
    best = best.reshape(height + 2 * margin, stride)[margin:margin + height, margin:margin + width].reshape(-1)
    owners = np.full(height * width, -1, np.int32)
    hit = best < len(by_depth)
    owners[hit] = by_depth[best[hit]]
    return owners


class SplatBackend:
    """numpy z-buffer splatter (the default, `--backend splat`)."""

    name = "splat"
    thread_safe = True  # no state: views may be drawn from several threads at once

    def owners(self, xyz: np.ndarray, camera: Camera, proj: Projection, radius_px: np.ndarray) -> np.ndarray:
        """See `Backend.owners`."""
        return splat_owners(proj, radius_px, camera.height, camera.width)

    def close(self) -> None:
        """Nothing to release."""
