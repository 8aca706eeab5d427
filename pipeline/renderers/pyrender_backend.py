"""pyrender backend (`--backend pyrender`): the Open3D backend's id pass, drawn by pyrender on OSMesa.

The splats, the id colours and the checks are `open3d_backend`'s (read its docstring): every
splat is its exact digital disk drawn as screen-aligned rectangles at the point's depth, coloured
with index + 1, and one render gives both the id image and the depth buffer. Here:
- the platform must be OSMesa (`PYOPENGL_PLATFORM=osmesa`, set when unset; needs `libosmesa6` and
  PyOpenGL >= 3.1.4, which pip reports as a conflict with pyrender's pin but works). OSMesa draws
  into a plain single-sample buffer; pyrender's EGL path renders through a 4x multisampled
  framebuffer whose resolve blends id colours (ENVIRONMENT.md), so it is refused;
- the rectangles are given in the canonical camera frame K0 of `open3d_backend.canonical_camera`
  (turned into OpenGL's axes: y up, looking down -z) and pyrender's `IntrinsicsCamera` gets K0 with
  the principal point moved by +0.5 px: pyrender puts pixel centres at half-integers, so without
  the shift every point would land half a pixel up and left, rounding the wrong way at .5;
- shading is `RenderFlags.FLAT` (vertex colour only), culling is off, depth test GL_LESS.

One OSMesa context per process, created on first use and re-created only when the image size
changes.
"""

from __future__ import annotations

import os

import numpy as np

from .idpass import IdPassBackend, Quads, canonical_camera, depth_range, to_camera_frame

INSTALL_HINT = ("the pyrender backend needs pyrender and PyOpenGL >= 3.1.4, installed in two steps because "
                "pyrender pins PyOpenGL 3.1.0 (pip install pyrender==0.1.45; pip install PyOpenGL==3.1.10), "
                "and OSMesa (apt-get install libosmesa6)")
#: From OpenCV camera axes (x right, y down, z forward) to OpenGL's (x right, y up, z backward).
CV_TO_GL = np.array([1.0, -1.0, -1.0])


def import_pyrender():  # noqa: ANN201 - the pyrender module
    """pyrender, imported on the OSMesa platform.

    Raises:
        ImportError: pyrender, PyOpenGL >= 3.1.4 or OSMesa is missing, or PyOpenGL was set up for
            another platform (EGL's multisampling would blend the id colours).
    """
    platform = os.environ.setdefault("PYOPENGL_PLATFORM", "osmesa")
    if platform != "osmesa":
        raise ImportError(f"the pyrender backend needs PYOPENGL_PLATFORM=osmesa, got {platform!r}: "
                          "pyrender's EGL path multisamples and blends id colours")
    try:
        import OpenGL
        import pyrender
        from OpenGL import platform as gl_platform
    except Exception as err:  # noqa: BLE001 - a missing libOSMesa surfaces as OSError, AttributeError...
        raise ImportError(f"{INSTALL_HINT} ({type(err).__name__}: {err})") from err
    version = tuple(int(p) for p in OpenGL.__version__.split(".")[:3] if p.isdigit())
    if version < (3, 1, 4):
        raise ImportError(f"{INSTALL_HINT}; found PyOpenGL {OpenGL.__version__}")
    kind = type(gl_platform.PLATFORM).__name__
    if "OSMesa" not in kind:
        raise ImportError(f"PyOpenGL was already set up for {kind} in this process; the pyrender "
                          "backend needs OSMesa (set PYOPENGL_PLATFORM=osmesa before anything imports OpenGL)")
    return pyrender


class PyrenderBackend(IdPassBackend):
    """pyrender on OSMesa (`--backend pyrender`)."""

    name = "pyrender"

    def __init__(self) -> None:
        super().__init__()
        self._pyrender = import_pyrender()
        self._renderer = None
        self._size: tuple[int, int] | None = None
        self._scene = None

    def draw(self, quads: Quads, colours: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        """See `IdPassBackend.draw`.

        Raises:
            RuntimeError: OSMesa could not create a context.
        """
        pyrender = self._pyrender
        base = 4 * np.arange(len(quads.point), dtype=np.uint32)
        tris = np.stack([base, base + 1, base + 2, base, base + 2, base + 3], axis=1).reshape(-1, 3)
        prim = pyrender.Primitive(
            positions=(to_camera_frame(quads, height, width) * CV_TO_GL).astype(np.float32),
            color_0=np.repeat(colours[quads.point], 4, axis=0), indices=tris,
            mode=pyrender.constants.GLTF.TRIANGLES,
            material=pyrender.MetallicRoughnessMaterial(baseColorFactor=[1.0, 1.0, 1.0, 1.0],
                                                        alphaMode="OPAQUE", doubleSided=True))
        focal, cx, cy = canonical_camera(height, width)
        near, far = depth_range(quads.depth)
        scene = pyrender.Scene(bg_color=[0.0, 0.0, 0.0, 1.0], ambient_light=[0.0, 0.0, 0.0])
        scene.add(pyrender.Mesh([prim]))
        scene.add(pyrender.IntrinsicsCamera(focal, focal, cx + 0.5, cy + 0.5, znear=near, zfar=far),
                  pose=np.eye(4))
        self._scene = scene
        rgb, zbuf = self._context(width, height).render(scene, flags=self._flags())
        return np.asarray(rgb)[..., :3], np.asarray(zbuf)

    def redraw_ids(self) -> np.ndarray:
        """See `IdPassBackend.redraw_ids`."""
        rgb, _ = self._renderer.render(self._scene, flags=self._flags())
        return np.asarray(rgb)[..., :3]

    def _flags(self) -> int:
        """Vertex colour only (no lighting), no face culling."""
        return self._pyrender.RenderFlags.FLAT | self._pyrender.RenderFlags.SKIP_CULL_FACES

    def _context(self, width: int, height: int):  # noqa: ANN202 - a pyrender.OffscreenRenderer
        """The process's OSMesa renderer for this image size (re-created only when the size changes)."""
        if self._renderer is not None and self._size == (width, height):
            return self._renderer
        self.close()
        try:
            self._renderer = self._pyrender.OffscreenRenderer(width, height)
        except Exception as err:  # noqa: BLE001 - OSMesa reports failures in several ways
            raise RuntimeError(f"pyrender could not create an OSMesa context: {err}; {INSTALL_HINT}") from err
        self._size = (width, height)
        return self._renderer

    def close(self) -> None:
        """Free the OSMesa context (the next view creates a new one)."""
        if self._renderer is not None:
            self._renderer.delete()
        self._renderer, self._size, self._scene = None, None, None
