"""Open3D legacy `Visualizer` backend (`--backend open3d`): ownership from a GL id pass.

How a view is drawn (METHOD.md §2, "Ownership"; ENVIRONMENT.md, "Headless rendering"):
1. every point is an unlit, square GL point of side `2k + 1` pixels, k = the rounded median splat
   radius (one size per view: GL has one point size per draw), coloured with its index + 1 in
   24-bit RGB (no lighting, no MSAA, no blending; background black = 0), depth test on;
2. the camera is set exactly from `camera.P`: the points are carried into a canonical pinhole frame,
   `M = K0^-1 P` (K0: square pixels, principal point at the window centre, 60 degree field of
   view), and the view control gets `K0` and an identity extrinsic. Open3D 0.20's view control
   keeps only fy from an intrinsic matrix (it ignores fx, cx and cy), so K cannot be handed over
   as is. With K0's centre at `(W - 1) / 2` a point projecting to integer pixel (x, y) lands in
   pixel (x, y): no half-pixel shift. The window is `MARGIN` pixels larger on every side, so
   that splats whose centre lies just off-screen still reach into the image, as in `splat`;
3. near/far planes bracket the points' depths (tight, for depth precision); the id image and a
   depth pass drawn with the same splats are captured and decoded (`resolve_owners`): ids whose
   projected depth or centre disagrees with the pixel are dropped, and every point's own centre
   pixel goes to the nearest point centred there when GL's rounding left it to a farther one.

Differences from `splat`: square splats of one size per view instead of per-point disks, so the
owner maps differ along silhouettes; the visible point sets agree to about 99.5 %
(`tests/test_render_backends.py`). Tie rule: equal depths go to the lower index (GL_LESS and
drawing in index order).

One Visualizer (hidden window, EGL without a display) per process, created on first use and
re-created only when the image size changes: each create/destroy leaks about 4.5 MB.
"""

from __future__ import annotations

import numpy as np

from .base import Camera, Projection

#: The largest point index + 1 that 24-bit RGB can carry.
MAX_POINTS = 2**24 - 1
#: Extra pixels drawn around the image on each side (splats of half-width up to this reach in).
MARGIN = 8
#: Half-width bounds of the square splat (side 2k + 1): 1 px up to 2 * MARGIN + 1 px.
MAX_HALF_WIDTH = MARGIN
#: A decoded owner is dropped when its depth and the depth buffer differ by more than this (relative).
DEPTH_RTOL = 1e-3


def id_colours(n: int) -> np.ndarray:
    """(n, 3) uint8: point i's colour encodes i + 1 as 24-bit RGB (R the high byte); 0 is background.

    Raises:
        ValueError: more points than 24 bits can number.
    """
    if n > MAX_POINTS:
        raise ValueError(f"an id pass numbers at most {MAX_POINTS} points (24-bit RGB), got {n}")
    code = np.arange(1, n + 1, dtype=np.uint32)
    return np.stack([code >> 16, (code >> 8) & 255, code & 255], axis=1).astype(np.uint8)


def decode_ids(rgb: np.ndarray) -> np.ndarray:
    """(H*W,) int64 point index of each pixel of an id image (H, W, 3) uint8, or -1 for background."""
    rgb = np.asarray(rgb).reshape(-1, 3).astype(np.int64)
    return ((rgb[:, 0] << 16) | (rgb[:, 1] << 8) | rgb[:, 2]) - 1


def half_width(proj: Projection, radius_px: np.ndarray) -> int:
    """k of the square splat (side 2k + 1): the median radius of the on-screen points, rounded."""
    on = proj.centre >= 0
    if not on.any():
        return 0
    med = float(np.median(np.asarray(radius_px, np.float64)[on]))
    return int(np.clip(np.floor(med + 0.5), 0, MAX_HALF_WIDTH))


def depth_range(depth: np.ndarray) -> tuple[float, float]:
    """Near and far planes that bracket the positive depths with room to spare (tight, for precision)."""
    front = depth[depth > 0]
    lo, hi = float(front.min()), float(front.max())
    return 0.5 * lo, 2.0 * hi + 1e-9


def resolve_owners(ids: np.ndarray, zbuf: np.ndarray, proj: Projection, half: int,
                   height: int, width: int) -> tuple[np.ndarray, dict[str, int]]:
    """The owner map from a decoded id pass and its depth pass, checked against the geometry.

    Args:
        ids: (H*W,) decoded point index per pixel, -1 for background.
        zbuf: (H*W,) linear depth of the drawn fragment (0 where nothing was drawn).
        proj: the points' projection in this view.
        half: the splat half-width k that was drawn.
        height, width: image size.

    Returns:
        The (H*W,) int32 owner map and counts: `dropped` (ids out of range, or whose depth or centre
        disagree with the pixel; they become background) and `fixed` (centre pixels handed to the
        nearest point centred there, where GL's rounding of a .5 tie left them to a farther point).
    """
    n = len(proj.depth)
    owners = np.where((ids >= 0) & (ids < n), ids, -1)
    bad = int(np.count_nonzero(ids >= n))
    fg = np.flatnonzero(owners >= 0)
    own = owners[fg]
    d_own = proj.depth[own]
    py, px = np.divmod(fg, width)
    wrong = ((np.abs(zbuf[fg] - d_own) > DEPTH_RTOL * np.abs(d_own)) | (d_own <= 0)
             | (np.abs(proj.ix[own] - px) > half + 1) | (np.abs(proj.iy[own] - py) > half + 1))
    owners[fg[wrong]] = -1
    dropped = bad + int(np.count_nonzero(wrong))
    fixed = claim_centres(owners, proj)
    return owners.astype(np.int32), {"dropped": dropped, "fixed": fixed}


def claim_centres(owners: np.ndarray, proj: Projection) -> int:
    """Give each on-screen point's centre pixel to it when the pixel's owner ranks behind it (in place).

    A point's own splat always covers its centre pixel, so the owner there must be at least as near
    (by depth, then index). GL decides coverage in float32 and can round a .5 tie the other way,
    or draw a 1-px point one pixel over; this restores the rule. Returns how many pixels changed.
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


def canonical_points(xyz: np.ndarray, P: np.ndarray, focal: float, cx: float, cy: float,  # noqa: N803
                     margin: int) -> np.ndarray:
    """Points carried by `K0^-1 T P` into a pinhole frame with intrinsics K0 = (focal, cx, cy).

    T shifts pixels by `margin` (the window's border), so that under K0 a point lands on pixel
    (u + margin, v + margin) of the window, where (u, v) is its projection by P. Depth is kept.
    """
    hom = np.c_[np.asarray(xyz, np.float64), np.ones(len(xyz))] @ np.asarray(P, np.float64).T
    a, b, c = hom[:, 0] + margin * hom[:, 2], hom[:, 1] + margin * hom[:, 2], hom[:, 2]
    return np.c_[(a - cx * c) / focal, (b - cy * c) / focal, c]


class Open3DBackend:
    """Open3D legacy Visualizer, id pass plus depth pass (`--backend open3d`).

    Attributes:
        last_stats: counts from the last view (`dropped`, `fixed`; see `resolve_owners`) and the
            point side drawn (`point_size`).
    """

    name = "open3d"

    def __init__(self) -> None:
        import open3d  # noqa: F401 - fail here, at get_backend, when Open3D is missing

        self._vis = None
        self._size: tuple[int, int] | None = None
        self.last_stats: dict[str, int] = {}

    def owners(self, xyz: np.ndarray, camera: Camera, proj: Projection, radius_px: np.ndarray) -> np.ndarray:
        """See `Backend.owners`.

        Raises:
            ValueError: more than 2**24 - 1 points.
            RuntimeError: Open3D could not open a headless window.
        """
        h, w = camera.height, camera.width
        colours = id_colours(len(xyz))
        if not np.any(proj.depth > 0):
            self.last_stats = {"dropped": 0, "fixed": 0, "point_size": 0}
            return np.full(h * w, -1, np.int32)
        half = half_width(proj, radius_px)
        near, far = depth_range(proj.depth)
        rgb, zbuf = self._draw(xyz, colours, camera.P, w, h, 2 * half + 1, near, far)
        owners, stats = resolve_owners(decode_ids(rgb), zbuf.reshape(-1), proj, half, h, w)
        self.last_stats = {**stats, "point_size": 2 * half + 1}
        return owners

    def _draw(self, xyz: np.ndarray, colours: np.ndarray, P: np.ndarray, width: int, height: int,  # noqa: N803
              point_size: int, near: float, far: float) -> tuple[np.ndarray, np.ndarray]:
        """Id image (H, W, 3) uint8 and linear depth (H, W) float32 (0 = empty) of one view."""
        import open3d as o3d

        vis = self._window(width, height)
        ww, wh = width + 2 * MARGIN, height + 2 * MARGIN
        focal = wh / (2 * np.tan(np.deg2rad(30.0)))  # a 60 degree field of view, inside Open3D's 5-90
        cx, cy = (ww - 1) / 2, (wh - 1) / 2
        pts = canonical_points(xyz, P, focal, cx, cy, MARGIN)
        # Two never-drawn anchors behind the camera keep the bounding box from being a point, which
        # would leave Open3D's view control without a look-at direction.
        pts = np.r_[pts, [[-far, -far, -far], [far, far, -2 * far]]]
        cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(pts))
        cloud.colors = o3d.utility.Vector3dVector(np.r_[colours, np.zeros((2, 3), np.uint8)] / 255.0)
        vis.clear_geometries()
        vis.add_geometry(cloud, reset_bounding_box=True)
        opt = vis.get_render_option()
        opt.point_size = float(point_size)
        params = o3d.camera.PinholeCameraParameters()
        params.intrinsic = o3d.camera.PinholeCameraIntrinsic(ww, wh, focal, focal, cx, cy)
        params.extrinsic = np.eye(4)
        ctl = vis.get_view_control()
        if not ctl.convert_from_pinhole_camera_parameters(params, allow_arbitrary=True):
            raise RuntimeError("Open3D refused the camera (convert_from_pinhole_camera_parameters)")
        ctl.set_constant_z_near(near)
        ctl.set_constant_z_far(far)
        rgb = np.asarray(vis.capture_screen_float_buffer(do_render=True))
        zbuf = np.asarray(vis.capture_depth_float_buffer(do_render=True))  # False reads a stale buffer
        crop = (slice(MARGIN, MARGIN + height), slice(MARGIN, MARGIN + width))
        return np.rint(rgb[crop] * 255).astype(np.uint8), zbuf[crop]

    def _window(self, width: int, height: int):  # noqa: ANN202 - open3d.visualization.Visualizer
        """The process's Visualizer, sized for the image plus margins (re-created only on a new size)."""
        import open3d as o3d

        if self._vis is not None and self._size == (width, height):
            return self._vis
        self.close()
        vis = o3d.visualization.Visualizer()
        if not vis.create_window(width=width + 2 * MARGIN, height=height + 2 * MARGIN, visible=False):
            raise RuntimeError("Open3D could not create a headless window (EGL); "
                               "use --backend splat, or see ENVIRONMENT.md")
        opt = vis.get_render_option()
        opt.background_color = np.zeros(3)
        opt.light_on = False
        opt.point_color_option = o3d.visualization.PointColorOption.Color
        opt.point_show_normal = False
        opt.show_coordinate_frame = False
        self._vis, self._size = vis, (width, height)
        return vis

    def close(self) -> None:
        """Destroy the window (the next view creates a new one)."""
        if self._vis is not None:
            self._vis.destroy_window()
        self._vis, self._size = None, None
