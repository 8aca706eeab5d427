"""Open3D legacy `Visualizer` backend (`--backend open3d`): ownership from a GL id pass.

GL does the z-buffer; the splats are drawn so that they cover exactly the pixels `splat` gives them
(METHOD.md §2 "Ownership"; ENVIRONMENT.md "Headless rendering"):
1. each point's splat is its digital disk: the integer offsets (dx, dy) from its centre pixel with
   `hypot(dx, dy) <= radius`, measured as `splat.splat_owners` does (including its cap at the
   floor of the view's largest radius). The disk is drawn as a few screen-aligned rectangles
   whose edges run along pixel borders, at the point's depth, so GL's coverage rule (pixel centre
   inside) cannot round either way. (GL points were tried first: squares of one size per view
   reach 84-97 % agreement with `splat` on the visible points, squares of a per-point size
   87-98 %, since visibility at grazing angles hinges on which neighbour owns a centre pixel.);
2. colour = point index + 1 in 24-bit RGB, unlit, no MSAA, no blending, black background = 0;
   depth test GL_LESS and drawing in index order, so equal depths go to the lower index, as in
   `splat`;
3. the camera: the rectangles are built in pixels from `project`'s centre pixels and depths and
   carried into a canonical pinhole frame K0 (square pixels, principal point at the image centre
   `((W - 1) / 2, (H - 1) / 2)`, 60 degree field of view), handed to Open3D as K0 with an identity
   extrinsic via `convert_from_pinhole_camera_parameters(..., allow_arbitrary=True)`. Open3D 0.20
   keeps only fy of an intrinsic matrix (it ignores fx, cx and cy), so the view's K could not be
   handed over as is; with K0's centre at (W - 1) / 2 no half-pixel shift is needed;
4. near/far planes bracket the depths tightly (1 % margin) for depth precision; one render gives
   the id image and the depth buffer of the same splats; `resolve_owners` decodes the ids, drops
   any whose depth or position disagrees with the pixel (counted; none expected), and hands each
   point's centre pixel to it when the 24-bit depth buffer could not tell two near-equal depths.

One Visualizer (hidden window, EGL without a display) per process, created on first use and
re-created only when the image size changes: each create/destroy leaks about 4.5 MB.
The id machinery here is shared with `pyrender_backend`.
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


class Open3DBackend:
    """Open3D legacy Visualizer, one id-and-depth render per view (`--backend open3d`).

    Attributes:
        last_stats: counts from the last view: `quads` drawn, `dropped` and `claimed` pixels (see
            `resolve_owners`) and `rerendered` (1 when the id image had to be drawn again).
    """

    name = "open3d"

    def __init__(self) -> None:
        import open3d  # noqa: F401 - fail at get_backend when Open3D is missing

        self._vis = None
        self._size: tuple[int, int] | None = None
        self.last_stats: dict[str, int] = {}

    def owners(self, xyz: np.ndarray, camera: Camera, proj: Projection, radius_px: np.ndarray) -> np.ndarray:
        """See `Backend.owners`.

        Raises:
            ValueError: more than 2**24 - 1 points.
            RuntimeError: Open3D could not open a headless window or refused the camera.
        """
        h, w = camera.height, camera.width
        colours = id_colours(len(proj.depth))
        quads = splat_quads(proj, radius_px, h, w)
        if len(quads.point) == 0:
            self.last_stats = {"quads": 0, "dropped": 0, "claimed": 0, "rerendered": 0}
            return np.full(h * w, -1, np.int32)
        rgb, zbuf = self._draw(quads, colours, h, w, reread=False)
        owners, stats = resolve_owners(decode_ids(rgb), zbuf.reshape(-1), proj, quads, w)
        rerendered = 0
        if stats["dropped"]:  # the colour buffer may be stale: draw it again and keep the better map
            rgb, _ = self._draw(quads, colours, h, w, reread=True)
            again, stats2 = resolve_owners(decode_ids(rgb), zbuf.reshape(-1), proj, quads, w)
            rerendered = 1
            if stats2["dropped"] < stats["dropped"]:
                owners, stats = again, stats2
        self.last_stats = {"quads": len(quads.point), **stats, "rerendered": rerendered}
        return owners

    def _draw(self, quads: Quads, colours: np.ndarray, height: int, width: int,
              reread: bool) -> tuple[np.ndarray, np.ndarray]:
        """Id image (H, W, 3) uint8 and linear depth (H, W) float32 (0 = empty) of one render.

        `reread` draws the colour image again into the current scene instead of building it.
        """
        import open3d as o3d

        vis = self._window(width, height)
        if reread:
            rgb = np.asarray(vis.capture_screen_float_buffer(do_render=True))
            return np.rint(rgb * 255).astype(np.uint8), np.zeros((height, width), np.float32)
        q = len(quads.point)
        base = 4 * np.arange(q)
        tris = np.stack([base, base + 1, base + 2, base, base + 2, base + 3], axis=1).reshape(-1, 3)
        mesh = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(to_camera_frame(quads, height, width)),
                                         o3d.utility.Vector3iVector(tris.astype(np.int32)))
        mesh.vertex_colors = o3d.utility.Vector3dVector(np.repeat(colours[quads.point] / 255.0, 4, axis=0))
        vis.clear_geometries()
        vis.add_geometry(mesh, reset_bounding_box=True)
        focal, cx, cy = canonical_camera(height, width)
        params = o3d.camera.PinholeCameraParameters()
        params.intrinsic = o3d.camera.PinholeCameraIntrinsic(width, height, focal, focal, cx, cy)
        params.extrinsic = np.eye(4)
        ctl = vis.get_view_control()
        if not ctl.convert_from_pinhole_camera_parameters(params, allow_arbitrary=True):
            raise RuntimeError("Open3D refused the camera (convert_from_pinhole_camera_parameters)")
        near, far = depth_range(quads.depth)
        ctl.set_constant_z_near(near)
        ctl.set_constant_z_far(far)
        # One render: the depth capture draws, the colour capture reads the same frame.
        zbuf = np.asarray(vis.capture_depth_float_buffer(do_render=True))
        rgb = np.asarray(vis.capture_screen_float_buffer(do_render=False))
        return np.rint(rgb * 255).astype(np.uint8), zbuf

    def _window(self, width: int, height: int):  # noqa: ANN202 - an open3d.visualization.Visualizer
        """The process's Visualizer for this image size (re-created only when the size changes)."""
        import open3d as o3d

        if self._vis is not None and self._size == (width, height):
            return self._vis
        self.close()
        vis = o3d.visualization.Visualizer()
        if not vis.create_window(width=width, height=height, visible=False):
            raise RuntimeError("Open3D could not create a headless window (EGL); "
                               "use --backend splat, or see ENVIRONMENT.md")
        opt = vis.get_render_option()
        opt.background_color = np.zeros(3)
        opt.light_on = False
        opt.mesh_color_option = o3d.visualization.MeshColorOption.Color
        opt.mesh_show_back_face = True
        opt.mesh_show_wireframe = False
        opt.show_coordinate_frame = False
        self._vis, self._size = vis, (width, height)
        return vis

    def close(self) -> None:
        """Destroy the window (the next view creates a new one)."""
        if self._vis is not None:
            self._vis.destroy_window()
        self._vis, self._size = None, None
