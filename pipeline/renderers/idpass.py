"""The GL id pass that the `open3d` and `pyrender` backends share.

GL does the z-buffer on splats drawn to cover exactly the pixels `splat` gives them (METHOD.md §2
"Ownership"); see `open3d_backend`'s docstring for why (square GL points agreed on 76-98 % only)
and how the camera is carried into GL. This module holds the GL-free part: id colours, the splat
rectangles, the canonical camera, and turning an id image and a depth buffer into an owner map.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .base import Camera, Projection

#: The largest point count that 24-bit RGB ids (index + 1, 0 = background) can number.
MAX_POINTS = 2**24 - 1
#: A decoded owner is dropped when its depth and the depth buffer differ by more than this (relative).
DEPTH_RTOL = 1e-4
#: Field of view of the canonical camera K0 (any value inside Open3D's 5-90 degrees would do).
CANONICAL_FOV_DEG = 60.0


def id_colours(n: int) -> np.ndarray:
    """(n, 3) uint8: point i's colour encodes i + 1 as 24-bit RGB, R the high byte; 0 is background.

    Raises:
        ValueError: more points than 24 bits can number.
    """
    if n > MAX_POINTS:
        raise ValueError(f"an id pass numbers at most {MAX_POINTS} points (24-bit RGB), got {n}")
    code = np.arange(1, n + 1, dtype=np.uint32)
    return np.stack([code >> 16, (code >> 8) & 255, code & 255], axis=1).astype(np.uint8)


def decode_ids(rgb: np.ndarray) -> np.ndarray:
    """(H*W,) int64 point index of each pixel of an id image (H, W, 3) uint8; -1 for background."""
    rgb = np.asarray(rgb).reshape(-1, 3).astype(np.int64)
    return ((rgb[:, 0] << 16) | (rgb[:, 1] << 8) | rgb[:, 2]) - 1


@lru_cache(maxsize=16)
def disk_table(max_radius: int) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """The digital disks `splat` draws within `max_radius`, one per distinct offset length.

    Returns:
        The distinct positive offset lengths, ascending (level l > 0 covers those <= lengths[l - 1];
        level 0 is the centre pixel alone), and for each level its rectangles as (k, 2) int arrays
        of half-widths (w, h): the disk is the union of the rectangles |dx| <= w, |dy| <= h.
    """
    r = np.arange(-max_radius, max_radius + 1)
    dx, dy = (a.ravel() for a in np.meshgrid(r, r))
    dist = np.hypot(dx, dy)  # as splat.disk_offsets measures it
    keep = dist <= max_radius
    dx, dy, dist = dx[keep], dy[keep], dist[keep]
    lengths = np.unique(dist[dist > 0])
    rects = []
    for limit in np.r_[0.0, lengths]:
        inside = dist <= limit
        rows = np.abs(dy[inside])
        widths = np.array([np.abs(dx[inside][rows == h]).max() for h in range(rows.max() + 1)])
        drop = np.r_[widths[1:] < widths[:-1], True]  # a rectangle at each step of the staircase
        rects.append(np.c_[widths[drop], np.flatnonzero(drop)])
    return lengths, tuple(rects)


@dataclass(frozen=True)
class Quads:
    """Screen-aligned rectangles covering every splat: corners in pixels, depth and owning point."""

    corners: np.ndarray  # (q, 4, 2) float64 (u, v) in pixels, counter-clockwise on screen
    depth: np.ndarray  # (q,) float64
    point: np.ndarray  # (q,) int64, ascending (drawing order = index order)
    level: np.ndarray  # (n,) int64 disk level of every point (-1: not drawn)
    lengths: np.ndarray  # offset length of each level > 0 (see `disk_table`)


def splat_quads(proj: Projection, radius_px: np.ndarray, height: int, width: int) -> Quads:
    """The rectangles that draw every splat exactly as `splat.splat_owners` covers it.

    Points behind the camera, splats wholly off-screen and splats that `occluded` proves hidden
    are left out: they cannot own a pixel.
    """
    n = len(proj.depth)
    rad = np.asarray(radius_px, np.float64)
    front = np.flatnonzero(proj.depth > 0)
    max_r = int(np.ceil(max(0.0, float(rad[front].max())))) if len(front) else 0
    lengths, rects = disk_table(max_r)
    level = np.full(n, -1, np.int64)
    level[front] = np.searchsorted(lengths, rad[front], side="right")
    drawn = front[~occluded(proj, rad, height, width)[front]]
    counts = np.array([len(r) for r in rects])
    starts = np.r_[0, np.cumsum(counts)[:-1]]
    per_point = counts[level[drawn]]
    point = np.repeat(drawn, per_point)
    local = np.arange(len(point)) - np.repeat(np.cumsum(per_point) - per_point, per_point)
    wh = np.concatenate(rects)[starts[level[point]] + local]
    ix, iy = proj.ix[point], proj.iy[point]
    w, h = wh[:, 0], wh[:, 1]
    on = (ix + w >= 0) & (ix - w < width) & (iy + h >= 0) & (iy - h < height)
    point, ix, iy, w, h = point[on], ix[on], iy[on], w[on] + 0.5, h[on] + 0.5
    corners = np.stack([np.c_[ix - w, iy - h], np.c_[ix + w, iy - h],
                        np.c_[ix + w, iy + h], np.c_[ix - w, iy + h]], axis=1)
    return Quads(corners=corners, depth=proj.depth[point], point=point, level=level, lengths=lengths)


def _grow(img: np.ndarray, fn: np.ufunc, fill: float) -> np.ndarray:
    """One 3 x 3 step of a min or max filter (`fn`), `fill` beyond the border."""
    out = np.pad(img, 1, constant_values=fill)
    out = fn(fn(out[:-2], out[1:-1]), out[2:])
    return fn(fn(out[:, :-2], out[:, 1:-1]), out[:, 2:])


def occluded(proj: Projection, radius_px: np.ndarray, height: int, width: int) -> np.ndarray:
    """(n,) bool: on-screen points whose whole splat is provably covered by strictly nearer splats.

    An upper bound of the final depth buffer: every on-screen point drawn as the largest square
    of side 2q + 1 that fits in its disk (a subset of what is drawn, so it can only be farther).
    A point is occluded when that bound is nearer than it over the whole square of half-width
    floor(radius) around its centre, which contains its disk: then it owns no pixel, and leaving
    it out changes no owner.
    """
    n = len(proj.depth)
    out = np.zeros(n, bool)
    on = np.flatnonzero(proj.centre >= 0)
    if len(on) == 0:
        return out
    rad = np.asarray(radius_px, np.float64)[on]
    inner = np.floor(rad / np.sqrt(2)).astype(np.int64)
    inner -= np.hypot(inner, inner) > rad  # the corner (q, q) must be inside the disk itself
    bound = np.full((height, width), np.inf)
    for q in range(int(inner.max()), -1, -1):  # a point joins after the squares larger than its own
        pts = on[inner == q]
        np.minimum.at(bound.reshape(-1), proj.centre[pts], proj.depth[pts])
        if q:
            bound = _grow(bound, np.minimum, np.inf)
    reach = np.floor(rad).astype(np.int64)
    for k in range(int(reach.max()) + 1):
        pts = on[reach == k]
        out[pts] = proj.depth[pts] > bound.reshape(-1)[proj.centre[pts]]
        bound = _grow(bound, np.maximum, -np.inf)
    return out


def canonical_camera(height: int, width: int) -> tuple[float, float, float]:
    """(focal, cx, cy) of K0: square pixels, centred principal point, `CANONICAL_FOV_DEG` vertically."""
    focal = height / (2 * np.tan(np.deg2rad(CANONICAL_FOV_DEG) / 2))
    return float(focal), (width - 1) / 2, (height - 1) / 2


def to_camera_frame(quads: Quads, height: int, width: int) -> np.ndarray:
    """(4q, 3) corner positions in K0's camera frame (x right, y down, z = depth, OpenCV-style)."""
    focal, cx, cy = canonical_camera(height, width)
    z = np.repeat(quads.depth, 4)
    uv = quads.corners.reshape(-1, 2)
    return np.c_[(uv[:, 0] - cx) * z / focal, (uv[:, 1] - cy) * z / focal, z]


def depth_range(depth: np.ndarray) -> tuple[float, float]:
    """Near and far planes that bracket the given (positive) depths with a 1 % margin."""
    return 0.99 * float(depth.min()), 1.01 * float(depth.max())


def resolve_owners(ids: np.ndarray, zbuf: np.ndarray, proj: Projection, quads: Quads,
                   width: int) -> tuple[np.ndarray, dict[str, int]]:
    """The (H*W,) int32 owner map from a decoded id image and the depth buffer of the same render.

    A decoded owner o of pixel p is kept when o is a point index, the depth buffer at p matches
    o's depth (within `DEPTH_RTOL`) and p lies in o's disk; otherwise p becomes background.
    Then `claim_centres` restores "a point's own splat covers its centre pixel" where the depth
    buffer's 24 bits could not separate two near-equal depths.

    Returns:
        The owner map and counts: `dropped` pixels and `claimed` centre pixels.
    """
    n = len(proj.depth)
    owners = np.where((ids >= 0) & (ids < n), ids, -1)
    dropped = int(np.count_nonzero(ids >= n))
    fg = np.flatnonzero(owners >= 0)
    own = owners[fg]
    d_own = proj.depth[own]
    py, px = np.divmod(fg, width)
    level = quads.level[own]
    reach = np.r_[0.0, quads.lengths][np.maximum(level, 0)]
    wrong = ((level < 0) | (np.abs(zbuf[fg] - d_own) > DEPTH_RTOL * np.abs(d_own))
             | (np.hypot(px - proj.ix[own], py - proj.iy[own]) > reach))
    owners[fg[wrong]] = -1
    dropped += int(np.count_nonzero(wrong))
    claimed = claim_centres(owners, proj)
    return owners.astype(np.int32), {"dropped": dropped, "claimed": claimed}


def claim_centres(owners: np.ndarray, proj: Projection) -> int:
    """Give each on-screen point its centre pixel where the owner there ranks behind it (in place).

    A point's splat always covers its centre pixel, so that pixel's owner must come first by
    (depth, index). Returns how many pixels changed hands.
    """
    inside = np.flatnonzero(proj.centre >= 0)
    if len(inside) == 0:
        return 0
    own = owners[proj.centre[inside]]
    d_own = proj.depth[np.maximum(own, 0)]
    d_pt = proj.depth[inside]
    behind = (own < 0) | (d_own > d_pt) | ((d_own == d_pt) & (own > inside))
    cand = inside[behind]
    if len(cand) == 0:
        return 0
    order = cand[np.lexsort((cand, proj.depth[cand]))]  # by depth, then index
    pix, first = np.unique(proj.centre[order], return_index=True)
    owners[pix] = order[first]
    return len(pix)


class IdPassBackend:
    """What the GL backends share: `owners` from `draw` (one id-and-depth render) and the checks.

    Attributes:
        last_stats: counts from the last view: `quads` drawn, `dropped` and `claimed` pixels (see
            `resolve_owners`) and `redrawn` (1 when the id image was drawn a second time).
    """

    name = "id-pass"

    def __init__(self) -> None:
        self.last_stats: dict[str, int] = {}

    def owners(self, xyz: np.ndarray, camera: Camera, proj: Projection, radius_px: np.ndarray) -> np.ndarray:
        """See `Backend.owners`.

        Raises:
            ValueError: more than 2**24 - 1 points.
            RuntimeError: no GL context could be created.
        """
        h, w = camera.height, camera.width
        colours = id_colours(len(proj.depth))
        quads = splat_quads(proj, radius_px, h, w)
        self.last_stats = {"quads": len(quads.point), "dropped": 0, "claimed": 0, "redrawn": 0}
        if len(quads.point) == 0:
            return np.full(h * w, -1, np.int32)
        rgb, zbuf = self.draw(quads, colours, h, w)
        owners, found = resolve_owners(decode_ids(rgb), zbuf.reshape(-1), proj, quads, w)
        if found["dropped"]:  # the id image may not be the frame the depth came from: draw it again
            again, found_again = resolve_owners(decode_ids(self.redraw_ids()), zbuf.reshape(-1), proj, quads, w)
            self.last_stats["redrawn"] = 1
            if found_again["dropped"] < found["dropped"]:
                owners, found = again, found_again
        self.last_stats.update(found)
        return owners

    def draw(self, quads: Quads, colours: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        """Id image (H, W, 3) uint8 and linear depth (H, W) float32 (0 = empty) of one render.

        Args:
            quads: the rectangles (`splat_quads`).
            colours: (n, 3) uint8 colour of each point (`id_colours`), indexed by `quads.point`.
            height: image height.
            width: image width.
        """
        raise NotImplementedError

    def redraw_ids(self) -> np.ndarray:
        """The id image of the last `draw`, rendered again."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the GL context."""


