"""The `render` stage: a cleaned cloud -> K shaded views and their pixel<->point maps (METHOD.md §2).

For each view v (STORE.md `render/<fp>`):
1. the camera: the cloud is centred on its bounding-box centre, turned by `pre_rotation` then by the
   view's rotation (both in the code's Open3D frame: y up, looking down -z), and seen by a pinhole
   camera `camera_distance` bounding-sphere radii away, so every view has the same scale;
2. ownership (`pix2pt`) from the backend: each point is a splat whose pixel radius is
   focal * `splat_radius` * s_i / depth, clipped to `splat_max_px`, where s_i is the larger of the
   median spacing and the point's distance to its `splat_knn`-th neighbour (so steep, sparsely
   scanned surfaces close too); the nearest covering point owns the pixel;
3. visibility: `surface` (default) - a point is visible when its centre pixel is in the image and
   its depth is within eps (= `eps_factor` * the median splat spacing s_i) of that pixel's owner;
   `paper` - the code's
   rule, points compete for their centre pixel only and the nearest one is visible;
4. `pt2pix` = centre pixel of visible points, -1 otherwise; `mask2d` = label of each pixel's owner;
5. the image: white background, grey points shaded by a headlight, |n . l| (two-sided, because
   estimated normals are unoriented).
Spacing is the median distance between distinct nearest neighbours of the cleaned cloud.

Why eps uses the median s_i and not the median spacing itself (METHOD.md's default): on a regular
grid the two are equal, but on a random sampling s_i is about 1.8x larger, and so are the splats;
a neighbour's splat one splat-radius away on a slope is then nearer by more than 2 spacings and
would hide half of a curved visible surface. Scaling eps with the splats keeps it on the surface.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
from PIL import Image
from pykdtree.kdtree import KDTree
from threadpoolctl import threadpool_limits

from ..config import check_numbers
from ..renderers import get_backend, project
from ..renderers.base import Backend, Camera, homogeneous
from ..renderers.splat import splat_owners
from .geometry import knn, local_spacing, pca_normals, rotation, unique_rows
from .render_kernels import owner_labels, shade_pixels, surface_visible

VERSION = 1
View = tuple[str, float]
#: `map` or a thread pool's `map`, over view indices
ViewMap = Callable[[Callable[[int], None], Iterable[int]], Iterable[None]]

#: The code's flip from the sensor frame into Open3D's camera frame (and back into ours).
FLIP_X: View = ("x", 180.0)
VIEW_PRESETS: dict[str, dict[str, list[View]]] = {
    "mvtec3d": {"pre_rotation": [FLIP_X],
                "views": [("x", -45), ("x", -15), ("x", 0), ("x", 15), ("x", 45),
                          ("y", -30), ("y", -15), ("y", 15), ("y", 30)]},
    "eyecandies": {"pre_rotation": [("x", 45)],
                   "views": [("x", -30), ("x", -15), ("x", 0), ("x", 10), ("x", 20),
                             ("y", -30), ("y", -15), ("y", 15), ("y", 30)]},
    "real3d": {"pre_rotation": [FLIP_X], "views": [("x", float(a)) for a in range(-144, 145, 36)]},
}
VIEW_PRESETS["files"] = VIEW_PRESETS["real3d"]


def _views(value: object) -> tuple[View, ...]:
    """Normalise `[[axis, degrees], ...]` from YAML into a tuple of (axis, float) pairs."""
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"views must be a list of [axis, degrees] pairs, got {value!r}")
    out = []
    for item in value:
        if not (isinstance(item, (list, tuple)) and len(item) == 2 and item[0] in ("x", "y", "z")):
            raise ValueError(f"a view is [axis, degrees] with axis x, y or z; got {item!r}")
        out.append((str(item[0]), float(item[1])))
    return tuple(out)


@dataclass(frozen=True)
class RenderConfig:
    """Everything that changes the render stage's output (all of it is fingerprinted)."""

    views: tuple[View, ...] = field(default_factory=lambda: tuple(VIEW_PRESETS["mvtec3d"]["views"]))
    pre_rotation: tuple[View, ...] = (FLIP_X,)
    image_size: int = 336
    visibility: str = "surface"  # surface | paper
    eps_factor: float = 2.0
    splat_radius: float = 1.5
    splat_knn: int = 4
    splat_max_px: float = 8.0
    camera_distance: float = 3.0
    fill: float = 0.95
    backend: str = "splat"
    grey: float = 0.7
    ambient: float = 0.3
    normals_knn: int = 16
    version: int = VERSION

    def __post_init__(self) -> None:
        check_numbers(self, positive=("image_size", "eps_factor", "splat_radius", "splat_knn", "splat_max_px",
                                      "normals_knn"), unit=("fill", "grey", "ambient"))
        object.__setattr__(self, "views", _views(self.views))
        object.__setattr__(self, "pre_rotation", _views(self.pre_rotation))
        if not self.views:
            raise ValueError("views: at least one view is needed")
        if self.visibility not in ("surface", "paper"):
            raise ValueError(f"visibility must be surface or paper, got {self.visibility!r}")
        if self.camera_distance <= 1:
            raise ValueError("camera_distance must exceed 1 (bounding-sphere radii)")


def format_defaults(fmt: str) -> dict[str, object]:
    """The per-format view lists of METHOD.md §2."""
    preset = VIEW_PRESETS[fmt]
    return {"views": tuple(preset["views"]), "pre_rotation": tuple(preset["pre_rotation"])}


@dataclass
class Rendered:
    """One sample's render outputs, by their STORE.md names."""

    image: np.ndarray  # (V, H, W, 3) uint8
    mask2d: np.ndarray  # (V, H, W) uint8
    pix2pt: np.ndarray  # (V, H, W) int32
    camera: np.ndarray  # (V, 3, 4) float32
    eps: np.float32
    pt2pix: np.ndarray  # (n, V) int32
    rgb_image: np.ndarray | None = None  # (H, W, 3) uint8
    rgb_pix: np.ndarray | None = None  # (n,) int32


def cameras(xyz: np.ndarray, cfg: RenderConfig) -> list[Camera]:
    """One pinhole camera per view, all at the same distance and focal length."""
    pts = np.asarray(xyz, np.float64)
    centre = (pts.min(0) + pts.max(0)) / 2
    radius = float(np.linalg.norm(pts - centre, axis=1).max()) or 1.0
    size = cfg.image_size
    focal = cfg.fill * (size / 2) * np.sqrt(cfg.camera_distance ** 2 - 1)
    K = np.array([[focal, 0, (size - 1) / 2], [0, focal, (size - 1) / 2], [0, 0, 1]])  # noqa: N806
    pre = np.eye(3)
    for axis, deg in cfg.pre_rotation:
        pre = rotation(axis, deg) @ pre
    to_cv = rotation(*FLIP_X)
    out = []
    for axis, deg in cfg.views:
        R = to_cv @ rotation(axis, deg) @ pre  # noqa: N806
        t = -R @ centre + np.array([0, 0, cfg.camera_distance * radius])
        out.append(Camera(K=K, R=R, t=t, width=size, height=size))
    return out


def surface_normals(uniq: np.ndarray, tree: KDTree, which: np.ndarray, knn_count: int) -> np.ndarray:
    """(len(which), 3) unoriented unit normals of the distinct points `which`, from their k nearest neighbours.

    Only the points that own a pixel in some view are asked for (about half of them on a closed
    shape): no other normal reaches an image.
    """
    if len(uniq) < 3:
        return np.tile([0.0, 0.0, 1.0], (len(which), 1))
    _, neighbours = knn(tree, uniq[which], min(knn_count, len(uniq)))
    return pca_normals(uniq, neighbours)


def visibility(proj_centre: np.ndarray, depth: np.ndarray, owners: np.ndarray, eps: float) -> np.ndarray:
    """`surface` rule: centre pixel in the image and depth <= owner's depth + eps (`surface_visible`)."""
    return surface_visible(np.asarray(proj_centre, np.int64), np.asarray(depth, np.float64),
                           np.asarray(owners, np.int32), float(eps))


def paper_visibility(proj, height: int, width: int) -> np.ndarray:  # noqa: ANN001
    """`paper` rule: the nearest point of each centre pixel is visible, no splats."""
    own0 = splat_owners(proj, np.zeros(len(proj.depth)), height, width)
    vis = np.zeros(len(proj.depth), bool)
    inside = np.flatnonzero(proj.centre >= 0)
    vis[inside] = own0[proj.centre[inside]] == inside
    return vis


def shaded_views(uniq: np.ndarray, inverse: np.ndarray, tree: KDTree | None, pix2pt: np.ndarray,
                 cams: list[Camera], cfg: RenderConfig, each: ViewMap = map) -> np.ndarray:
    """(V, H*W, 3) uint8 images: white background, each owned pixel its owner's grey level in that view.

    Normals are estimated once, for the distinct points that own a pixel in any view; the grey
    level is `shade_pixels`' headlight. `each` maps a function over the views (a thread pool's
    `map` shades them in parallel).
    """
    owned = inverse[pix2pt[pix2pt >= 0]]
    lit = np.zeros(len(uniq), bool)
    lit[owned] = True
    which = np.flatnonzero(lit)
    slot = np.zeros(len(uniq), np.int64)
    slot[which] = np.arange(len(which))
    normals = surface_normals(uniq, tree, which, cfg.normals_knn) if len(which) else np.zeros((0, 3))
    points, row_of = np.ascontiguousarray(uniq[which]), slot[inverse]
    grey = np.full(pix2pt.shape, 255, np.uint8)

    def one(v: int) -> None:
        eye = -cams[v].R.T @ cams[v].t  # the camera centre, where the light is
        shade_pixels(pix2pt[v], row_of, points, normals, eye, float(cfg.grey), float(cfg.ambient), grey[v])

    list(each(one, range(len(cams))))
    return np.repeat(grey[..., None], 3, axis=-1)


def rgb_registration(rgb_grid: np.ndarray, grid: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The registered RGB image resized to `size` (bicubic), and the pixel each point falls on."""
    gh, gw = rgb_grid.shape[:2]
    if (gh, gw) == (size, size):
        return np.ascontiguousarray(rgb_grid, np.uint8), grid.astype(np.int32)
    img = np.asarray(Image.fromarray(np.ascontiguousarray(rgb_grid, np.uint8), mode="RGB").resize(
        (size, size), Image.BICUBIC))
    gy, gx = np.divmod(grid.astype(np.int64), gw)
    y = np.minimum(((gy + 0.5) * size / gh).astype(np.int64), size - 1)
    x = np.minimum(((gx + 0.5) * size / gw).astype(np.int64), size - 1)
    return img, (y * size + x).astype(np.int32)


class PhaseClock:
    """Seconds per phase of `render_sample`, added up over calls and threads (what `bench/render.py` prints)."""

    PHASES = ("spacing", "projection", "ownership", "visibility", "shading")

    def __init__(self) -> None:
        self.seconds = dict.fromkeys(self.PHASES, 0.0)
        self._lock = threading.Lock()

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Add the time of the `with` block to `name`."""
        start = time.perf_counter()
        try:
            yield
        finally:
            with self._lock:
                self.seconds[name] += time.perf_counter() - start


@contextmanager
def view_pool(threads: int, backend: Backend) -> Iterator[ViewMap]:
    """A `map` over views: a pool of `threads` threads where the backend allows it, else the plain one.

    The compiled loops (`render_kernels`, the splat z-buffer) and numpy's array work release the
    GIL, so views run in parallel; with the neighbour queries' OpenMP threads, two threads render a
    sample about 1.4x as fast on 2 cores. GL backends draw in one context and keep their views in order.
    """
    if threads <= 1 or not getattr(backend, "thread_safe", False):
        yield map
        return
    with ThreadPoolExecutor(threads, thread_name_prefix="render-view") as pool:
        yield pool.map


def render_sample(xyz: np.ndarray, label: np.ndarray, cfg: RenderConfig, grid: np.ndarray | None = None,
                  rgb_grid: np.ndarray | None = None, backend: Backend | None = None,
                  clock: PhaseClock | None = None, threads: int = 1) -> Rendered:
    """Render one cleaned cloud (pure apart from the backend's GL context).

    The output does not depend on `threads`: each view writes its own slices, and pykdtree's
    OpenMP threads split the queries, not a query.

    Args:
        xyz: (n, 3) the cleaned points.
        label: (n,) their labels (non-zero: anomalous), drawn into `mask2d`.
        cfg: the render config.
        grid: (n,) each point's flat cell in the organized grid (organized sources only).
        rgb_grid: the registered RGB image on the grid that `grid` indexes (organized sources with
            colour), resized into `rgb_image`.
        backend: defaults to the process-wide instance of `cfg.backend`.
        clock: adds the seconds of each phase to it (`PhaseClock.PHASES`).
        threads: CPU threads for this sample (neighbour queries, and views where the backend allows).
    """
    backend = backend or get_backend(cfg.backend)
    clock = clock or PhaseClock()
    xyz = np.asarray(xyz, np.float32).astype(np.float64)
    labels = np.asarray(label) > 0
    size = cfg.image_size
    with threadpool_limits(limits=max(1, threads), user_api="openmp"), view_pool(threads, backend) as each:
        with clock.phase("spacing"):
            uniq, inverse = unique_rows(xyz)
            tree = KDTree(uniq) if len(uniq) else None
            spacing, kth = local_spacing(uniq, cfg.splat_knn, tree)
            spacing = spacing or 1e-6
            splat_spacing = np.maximum(kth, spacing)
            eps = np.float32(cfg.eps_factor * np.median(splat_spacing))
            splat_world = cfg.splat_radius * splat_spacing[inverse]
        cams = cameras(xyz, cfg)
        v_count = len(cams)
        mask2d = np.zeros((v_count, size * size), np.uint8)
        pix2pt = np.empty((v_count, size * size), np.int32)
        pt2pix = np.full((v_count, len(xyz)), -1, np.int32)  # a row per view while views write it
        hom = homogeneous(xyz)

        def one(v: int) -> None:
            cam = cams[v]
            with clock.phase("projection"):
                proj = project(xyz, cam.P, size, size, hom)
                radius = np.clip(cam.K[0, 0] * splat_world / np.maximum(proj.depth, 1e-12),
                                 0.0, cfg.splat_max_px)
            with clock.phase("ownership"):
                owners = backend.owners(xyz, cam, proj, radius)
            with clock.phase("visibility"):
                pix2pt[v] = owners
                owner_labels(owners, labels, mask2d[v])
                if cfg.visibility == "surface":
                    vis = visibility(proj.centre, proj.depth, owners, float(eps))
                else:
                    vis = paper_visibility(proj, size, size)
                np.copyto(pt2pix[v], proj.centre, where=vis, casting="unsafe")

        list(each(one, range(v_count)))
        with clock.phase("shading"):
            image = shaded_views(uniq, inverse, tree, pix2pt, cams, cfg, each)
    out = Rendered(
        image=image.reshape(v_count, size, size, 3), mask2d=mask2d.reshape(v_count, size, size),
        pix2pt=pix2pt.reshape(v_count, size, size), camera=np.stack([c.P for c in cams]).astype(np.float32),
        eps=eps, pt2pix=np.ascontiguousarray(pt2pix.T))
    if rgb_grid is not None and grid is not None:
        out.rgb_image, out.rgb_pix = rgb_registration(rgb_grid, grid, size)
    return out
