"""Open3D legacy `Visualizer` backend (backend `open3d`); the GL id pass it shares is `idpass.py`.

GL does the z-buffer on splats drawn to cover exactly the pixels `splat` gives them (METHOD.md §2
"Ownership"; ENVIRONMENT.md "Headless rendering"):
1. a point's splat is its digital disk, the offsets (dx, dy) from its centre pixel with
   `hypot(dx, dy) <= radius` as `splat.disk_offsets` measures them, drawn as a few screen-aligned
   rectangles at the point's depth whose edges run along pixel borders, so GL's rule (pixel
   centre inside) cannot round either way. Square GL points (one size per view) were tried first
   and agreed with `splat` on only 76-98 % of the visible points of test clouds (per-point square
   sizes did no better): at grazing angles visibility hinges on which neighbour owns a centre pixel;
2. colour = index + 1 in 24-bit RGB, unlit, no MSAA, no blending, black background; GL_LESS and
   drawing in index order give equal depths to the lower index, as in `splat`;
3. the camera: the rectangles are built in pixels from `project`'s centre pixels and depths, then
   carried into a canonical pinhole frame K0 (square pixels, principal point ((W-1)/2, (H-1)/2),
   60 degree field of view) that Open3D gets with an identity extrinsic through
   `convert_from_pinhole_camera_parameters(..., allow_arbitrary=True)`. Open3D 0.20 keeps only fy of
   an intrinsic matrix (fx, cx and cy are ignored), so the view's own K cannot be handed over; with
   K0 centred at (W-1)/2 a point at integer pixel (x, y) lands in pixel (x, y), no half-pixel shift;
4. near/far bracket the depths with a 1 % margin; one render gives the id image and the depth
   buffer; `resolve_owners` drops any id whose depth or position disagrees with its pixel (counted,
   none expected) and gives each point its centre pixel where 24 depth bits could not separate two
   near-equal depths. Points that provably own no pixel are not drawn (`occluded`).

One Visualizer (hidden window; EGL without a display) per process, created on first use, re-created
only when the image size changes: each create/destroy leaks about 4.5 MB.
"""

from __future__ import annotations

import ctypes

import numpy as np

from .idpass import IdPassBackend, Quads, canonical_camera, depth_range, to_camera_frame


class EglContext:
    """The EGL context current right now (Open3D's headless window), to make current again later.

    Headless, Open3D does not make its context current before drawing, so another GL user in the
    process (the pyrender backend's OSMesa context) would receive Open3D's calls. Nothing is saved,
    and `make_current` does nothing, where no EGL context is current (Open3D on a real display).
    """

    def __init__(self) -> None:
        self._egl = self._handle = None
        try:
            egl = ctypes.CDLL("libEGL.so.1")
        except OSError:
            return
        for fn in ("eglGetCurrentDisplay", "eglGetCurrentSurface", "eglGetCurrentContext"):
            getattr(egl, fn).restype = ctypes.c_void_p
        egl.eglGetCurrentSurface.argtypes = [ctypes.c_int]
        egl.eglMakeCurrent.argtypes = [ctypes.c_void_p] * 4
        egl.eglMakeCurrent.restype = ctypes.c_uint
        handle = (egl.eglGetCurrentDisplay(), egl.eglGetCurrentSurface(0x3059),  # EGL_DRAW
                  egl.eglGetCurrentSurface(0x305A), egl.eglGetCurrentContext())  # EGL_READ
        if handle[3]:
            self._egl, self._handle = egl, handle

    def make_current(self) -> None:
        """Make the saved context current on this thread again.

        Raises:
            RuntimeError: EGL refused.
        """
        if self._egl is None:
            return
        # Release first: EGL skips re-binding a context it believes current, though OSMesa has
        # since taken the thread's GL dispatch.
        self._egl.eglMakeCurrent(self._handle[0], None, None, None)
        if not self._egl.eglMakeCurrent(*self._handle):
            raise RuntimeError("could not make Open3D's EGL context current again")


class Open3DBackend(IdPassBackend):
    """Open3D legacy Visualizer on a hidden window (`--backend open3d`)."""

    name = "open3d"

    def __init__(self) -> None:
        import open3d  # noqa: F401 - fail at get_backend when Open3D is missing

        super().__init__()
        self._vis = None
        self._egl: EglContext | None = None
        self._size: tuple[int, int] | None = None

    def draw(self, quads: Quads, colours: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        """See `IdPassBackend.draw`.

        Raises:
            RuntimeError: Open3D could not open a headless window or refused the camera.
        """
        import open3d as o3d

        vis = self._window(width, height)
        base = 4 * np.arange(len(quads.point))
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
        # One render: the depth capture draws the frame, the colour capture reads the same frame.
        zbuf = np.asarray(vis.capture_depth_float_buffer(do_render=True))
        rgb = np.asarray(vis.capture_screen_float_buffer(do_render=False))
        return np.rint(rgb * 255).astype(np.uint8), zbuf

    def redraw_ids(self) -> np.ndarray:
        """See `IdPassBackend.redraw_ids`."""
        self._egl.make_current()
        rgb = np.asarray(self._vis.capture_screen_float_buffer(do_render=True))
        return np.rint(rgb * 255).astype(np.uint8)

    def _window(self, width: int, height: int):  # noqa: ANN202 - an open3d.visualization.Visualizer
        """The process's Visualizer for this image size (re-created only when the size changes)."""
        import open3d as o3d

        if self._vis is not None and self._size == (width, height):
            self._egl.make_current()
            return self._vis
        self.close()
        vis = o3d.visualization.Visualizer()
        if not vis.create_window(width=width, height=height, visible=False):
            raise RuntimeError("Open3D could not create a headless window (EGL); "
                               "use the splat backend, or see ENVIRONMENT.md")
        opt = vis.get_render_option()
        opt.background_color = np.zeros(3)
        opt.light_on = False
        opt.mesh_color_option = o3d.visualization.MeshColorOption.Color
        opt.mesh_show_back_face = True
        opt.mesh_show_wireframe = False
        opt.show_coordinate_frame = False
        self._vis, self._egl, self._size = vis, EglContext(), (width, height)
        return vis

    def close(self) -> None:
        """Destroy the window (the next view creates a new one)."""
        if self._vis is not None:
            self._egl.make_current()
            self._vis.destroy_window()
        self._vis, self._egl, self._size = None, None, None
