"""Small synthetic datasets in the real MVTec 3D-AD and Real3D-AD layouts (DATASETS.md).

Why: no real dataset is on our machines, so tests and smoke runs need trees that the real loaders
read unchanged, with ground truth that is exact by construction. Shapes are analytic
(`shapes.py`); every random draw comes from a generator seeded by (seed, layout, class,
split, defect, index), so the same seed gives byte-identical files and one sample can be rebuilt
alone with `build_mvtec_sample(cls, defect, sample_rng(...))`.

MVTec-style scenes (metres): an orthographic structured-light scan along the table normal, so the
range image is an exact height field over the table plane. The table is tilted 1-4° in the camera
frame, 0.42-0.48 m away, and fills the image border; the object (53-79 mm across) is centred with
random yaw, scale and offset. Noise is Gaussian (0.1-0.2 mm) along the viewing ray. Missing cells,
(0, 0, 0), are random dropouts (1-3 %), depth edges and projector shadows, all computed from the
defect-free scene, so a defect changes nothing outside its own footprint.

Ground-truth rule (MVTec gt png, Real3D gt txt): a cell or point is anomalous exactly when the
defect changed its surface, i.e. where its displacement is non-zero. Bump/dent/bulge/sink use a
Gaussian cut at 5 % of its peak (`gaussian_bump`), so the footprint is the disk where the Gaussian
exceeds 5 % of its peak; a hole is a disk whose floor drops 4-7 mm (at most to 30 % of the local
height), showing its inner surface; a crack is a groove > 0 within width/2 of a bent line; "colour"
recolours a disk and leaves xyz untouched. Sizes are 4-20 % of the object (at least ~1 pixel on
coarse grids), and footprints lie entirely on visible object cells with slope < 1.5 that stand
>= 6 mm (plus the dent depth) above the table, so they survive the plane cut of METHOD.md.
The gt value encodes the kind (`GT_VALUES`); loaders binarise with > 0.

Real3D-style clouds (millimetres): templates are 6000 points over the whole closed surface; test
scans keep the points a scanner on +z sees (facing it, on top in a z-buffer), about 4500; bulge and
sink move 2-6 % of them by 1.5-3 mm along the normal. Noise is 0.01 mm (templates), 0.03 mm (scans).
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image
from scipy.ndimage import distance_transform_edt

from . import shapes as shp
from .shapes import SHAPES

SYNTHETIC_CLASSES: tuple[str, ...] = tuple(SHAPES)
DEFECTS: tuple[str, ...] = ("bump", "dent", "hole", "crack", "colour")
GT_VALUES: dict[str, int] = {"bump": 255, "dent": 254, "hole": 253, "crack": 252, "colour": 251}
REAL3D_DEFECTS: dict[str, str] = {"bulge": "bump", "sink": "dent"}
LAYOUTS: tuple[str, ...] = ("mvtec3d", "real3d")
DEFAULT_SIZE: tuple[int, int] = (256, 320)
_MARGIN_PX, _MAX_DIAMETER = 12, 0.085  # the object stays this many pixels off the image edge
_LIGHT = np.array([-0.35, -0.45, 1.0]) / np.linalg.norm([-0.35, -0.45, 1.0])


def sample_rng(seed: int, *keys: str | int) -> np.random.Generator:
    """Generator for one sample, independent of which other classes or samples are built."""
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    return np.random.default_rng([seed, *(zlib.crc32(str(k).encode()) for k in keys)])


def scene_pitch(size: tuple[int, int]) -> float:
    """Grid spacing (m) so that the largest object fits inside a 12-pixel margin."""
    m = min(size)
    if m < 48:
        raise ValueError(f"size {size}: need at least 48 pixels on the short side")
    return max(0.13 / m, _MAX_DIAMETER / (m - 2 * _MARGIN_PX))


@dataclass
class MvtecSample:
    """One organized sample and its defect-free twin (same pose, noise and missing cells).

    Attributes:
        xyz: (H, W, 3) float32 metres, camera frame; (0, 0, 0) where missing.
        rgb: (H, W, 3) uint8.
        gt: (H, W) uint8, GT_VALUES[defect] on the defect's cells, else 0.
        clean_xyz: xyz of the same scene without the defect.
        clean_rgb: rgb of the same scene without the defect.
        object_mask: (H, W) bool, cells whose (defect-free) surface is the object, not the table.
        pitch: grid spacing on the table (m).
    """

    xyz: np.ndarray
    rgb: np.ndarray
    gt: np.ndarray
    clean_xyz: np.ndarray
    clean_rgb: np.ndarray
    object_mask: np.ndarray
    pitch: float


@dataclass
class _Scene:
    a: np.ndarray  # (H, W) table coordinates (m) of each cell
    b: np.ndarray
    h: np.ndarray  # (H, W) defect-free height above the table (m)
    pitch: float
    size: float  # object diameter (m)
    rot: np.ndarray  # table -> camera rotation
    offset: np.ndarray  # table origin in the camera frame
    noise: np.ndarray  # (H, W) range noise (m)
    missing: np.ndarray  # (H, W) bool
    occluded: np.ndarray  # (H, W) bool, edges and shadows (no dropouts)
    colours: np.ndarray  # (H, W, 3) float base colour
    rgb_noise: np.ndarray  # (H, W, 3)


def _scene(cls: str, size: tuple[int, int], rng: np.random.Generator) -> _Scene:
    shape, p = SHAPES[cls], scene_pitch(size)
    (hh, ww), scale, yaw = size, rng.uniform(0.95, 1.05), rng.uniform(0, 2 * np.pi)
    a, b = np.meshgrid((np.arange(ww) - (ww - 1) / 2) * p, (np.arange(hh) - (hh - 1) / 2) * p)
    t = rng.uniform(-0.003, 0.003, 2)
    c, s = np.cos(yaw), np.sin(yaw)
    xl, yl = (c * (a - t[0]) + s * (b - t[1])) / scale, (-s * (a - t[0]) + c * (b - t[1])) / scale
    h = scale * shape.height(xl, yl)
    tilt = rng.uniform(0, 2 * np.pi)
    rot = shp.axis_rotation(np.array([np.cos(tilt), np.sin(tilt), 0.0]), np.deg2rad(rng.uniform(1, 4)))
    offset = np.array([*rng.uniform(-0.01, 0.01, 2), rng.uniform(0.42, 0.48)])
    noise = rng.normal(0.0, rng.uniform(1e-4, 2e-4), h.shape)
    occluded = _edges(h, p) | _shadows(h, p)
    missing = occluded | (rng.random(h.shape) < rng.uniform(0.01, 0.03))
    obj = np.array(shape.colour) + rng.integers(-8, 9, 3)
    table = np.array([92, 96, 102]) + rng.integers(-10, 11, 3)
    colours = np.where((h > 0)[..., None], obj, table).astype(np.float64)
    return _Scene(a, b, h, p, 2 * shape.radius * scale, rot, offset, noise, missing, occluded, colours,
                  rng.normal(0.0, 2.0, (*h.shape, 3)))


def _edges(h: np.ndarray, pitch: float) -> np.ndarray:
    """Cells beside a depth jump, where a structured-light sensor returns nothing."""
    jump, limit = np.zeros(h.shape), max(2.5 * pitch, 0.003)
    dy, dx = np.abs(np.diff(h, axis=0)), np.abs(np.diff(h, axis=1))
    for d, lo, hi in ((dy, np.s_[:-1, :], np.s_[1:, :]), (dx, np.s_[:, :-1], np.s_[:, 1:])):
        jump[lo] = np.maximum(jump[lo], d)
        jump[hi] = np.maximum(jump[hi], d)
    return jump > limit


def _shadows(h: np.ndarray, pitch: float, tan_projector: float = 0.25) -> np.ndarray:
    """Cells the projector (14° off the normal, towards -x) cannot light: the object is in the way."""
    out = np.zeros(h.shape, bool)
    for k in range(1, int(np.ceil(h.max() * tan_projector / pitch)) + 1):
        out[:, k:] |= h[:, :-k] > h[:, k:] + k * pitch / tan_projector + 1e-4
    return out


def _xyz(sc: _Scene, h: np.ndarray) -> np.ndarray:
    local = np.stack([sc.a, sc.b, -(h + sc.noise)], axis=-1)  # height points at the camera (-z)
    xyz = (local @ sc.rot.T + sc.offset).astype(np.float32)
    xyz[sc.missing] = 0.0
    return xyz


def _shade(h: np.ndarray, pitch: float) -> np.ndarray:
    hb, ha = np.gradient(h, pitch)
    n = np.stack([-ha, -hb, np.ones_like(h)], axis=-1)
    n /= np.linalg.norm(n, axis=-1, keepdims=True)
    return 0.4 + 0.6 * np.clip(n @ _LIGHT, 0.0, None)


def _rgb(sc: _Scene, colours: np.ndarray, shade: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(colours * shade[..., None] + sc.rgb_noise), 0, 255).astype(np.uint8)


def _footprint(
    sc: _Scene, defect: str, rng: np.random.Generator, shrink: float
) -> tuple[Callable[[np.ndarray], np.ndarray], float]:
    """A random defect as (centre -> profile (H, W) in [0, 1], > 0 exactly on its cells), depth (m)."""
    size = sc.size * shrink
    if defect == "crack":
        length, width = rng.uniform(0.15, 0.2) * size, max(rng.uniform(0.03, 0.045) * size, 1.5 * sc.pitch)
        ang = rng.uniform(0, np.pi)
        d, n = np.array([np.cos(ang), np.sin(ang)]), np.array([-np.sin(ang), np.cos(ang)])
        nodes = np.stack([-length / 2 * d, rng.uniform(-0.1, 0.1) * length * n, length / 2 * d])
        depth = rng.uniform(0.002, 0.004)
        return (lambda c: shp.groove(shp.polyline_distance(sc.a, sc.b, nodes + c), width)), depth
    radius = rng.uniform(0.04, 0.07) * size if defect == "hole" else rng.uniform(0.05, 0.09) * size
    radius = max(radius, 1.3 * sc.pitch)  # at least the 5 cells of a plus sign on coarse grids
    depth = rng.uniform(0.004, 0.007) if defect == "hole" else rng.uniform(0.0015, 0.003)
    if defect in ("bump", "dent"):
        return (lambda c: shp.gaussian_bump(np.hypot(sc.a - c[0], sc.b - c[1]), radius)), depth
    return (lambda c: (np.hypot(sc.a - c[0], sc.b - c[1]) < radius).astype(np.float64)), depth


def _place(sc: _Scene, defect: str, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """Draw a defect whose whole footprint lies on flat-enough, visible, tall-enough object cells."""
    hb, ha = np.gradient(sc.h, sc.pitch)
    flat = (sc.h > 0) & ~sc.occluded & (np.hypot(ha, hb) < 1.5)
    for attempt in range(8):
        profile_at, depth = _footprint(sc, defect, rng, 0.85**attempt)
        ok = flat & (sc.h >= 0.006 + (depth if defect in ("dent", "crack") else 0.0))
        centres = np.flatnonzero(distance_transform_edt(ok) > 1.5)
        for _ in range(24 if len(centres) else 0):
            k = centres[rng.integers(len(centres))]
            prof = profile_at(np.array([sc.a.flat[k], sc.b.flat[k]]))
            cells = prof > 0
            if cells.sum() >= 3 and not (cells & ~ok).any():
                return prof, depth
    raise RuntimeError(f"could not place a {defect!r} defect on this scene")


def build_mvtec_sample(
    cls: str, defect: str, rng: np.random.Generator, size: tuple[int, int] = (128, 160)
) -> MvtecSample:
    """Build one MVTec-style sample ("good" or one of DEFECTS) from its own generator.

    The scene (pose, noise, missing cells, colours) is drawn first and shared with the
    defect-free twin, so `xyz` and `clean_xyz` differ only on the gt cells.
    """
    if cls not in SHAPES or defect not in ("good", *DEFECTS):
        raise ValueError(f"unknown class/defect {cls!r}/{defect!r}: classes {SYNTHETIC_CLASSES}, "
                         f"defects {('good', *DEFECTS)}")
    scene_rng, defect_rng = rng.spawn(2)
    sc = _scene(cls, size, scene_rng)
    shade = _shade(sc.h, sc.pitch)
    clean_xyz, clean_rgb = _xyz(sc, sc.h), _rgb(sc, sc.colours, shade)
    gt = np.zeros(sc.h.shape, np.uint8)
    if defect == "good":
        return MvtecSample(clean_xyz, clean_rgb, gt, clean_xyz, clean_rgb, sc.h > 0, sc.pitch)
    prof, depth = _place(sc, defect, defect_rng)
    cells = prof > 0
    gt[cells] = GT_VALUES[defect]
    h, colours, dark = sc.h, sc.colours, 1.0
    if defect == "bump":
        h = sc.h + depth * prof
    elif defect in ("dent", "crack"):
        h, dark = sc.h - depth * prof, (0.6 if defect == "crack" else 1.0)
    elif defect == "hole":
        h, dark = np.where(cells, np.maximum(sc.h - depth, 0.3 * sc.h), sc.h), 0.3
    else:  # colour: a stain far from the object colour, geometry untouched
        stain = np.where(colours > 128, colours - 90, colours + 90)
        colours = np.where(cells[..., None], stain, colours)
    shade = np.where(cells, _shade(h, sc.pitch) * dark, shade)
    return MvtecSample(_xyz(sc, h), _rgb(sc, colours, shade), gt, clean_xyz, clean_rgb, sc.h > 0, sc.pitch)


@dataclass
class Real3DSample:
    """One unorganized Real3D-style cloud.

    Attributes:
        points: (n, 3) float32 millimetres, rounded to 0.1 µm so the gt txt round-trips exactly.
        labels: (n,) uint8, 1 where a bulge/sink moved the surface.
        normals: (n, 3) float32 outward unit normals (before noise).
        view: unit direction towards the scanner for single-sided scans, None for templates.
    """

    points: np.ndarray
    labels: np.ndarray
    normals: np.ndarray
    view: np.ndarray | None


def _visible(pts: np.ndarray, nrm: np.ndarray, spacing: float) -> np.ndarray:
    """Points a scanner looking down -z sees: facing it and on top in a coarse z-buffer."""
    facing = nrm[:, 2] > 0.05
    cell = 2 * spacing
    _, inv = np.unique(np.floor(pts[:, :2] / cell).astype(np.int64), axis=0, return_inverse=True)
    inv = inv.ravel()  # numpy 2.0.0 returned it 2-D
    top = np.full(inv.max() + 1, -np.inf)
    np.maximum.at(top, inv[facing], pts[facing, 2])
    return facing & (pts[:, 2] >= top[inv] - 1.5 * cell)


def _real3d_defect(pts: np.ndarray, nrm: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Profile in [0, 1] of a bulge/sink covering 2-6 % of the points, on the side facing the scanner."""
    centre = rng.choice(np.flatnonzero(nrm[:, 2] > 0.5))
    same_side = nrm @ nrm[centre] > 0.3
    dist = np.linalg.norm(pts - pts[centre], axis=1)
    k = max(8, round(rng.uniform(0.02, 0.06) * len(pts)))
    radius = np.sort(dist[same_side])[min(k, same_side.sum() - 1)]
    return shp.gaussian_bump(dist, radius) * same_side


def build_real3d_sample(cls: str, kind: str, rng: np.random.Generator) -> Real3DSample:
    """Build a Real3D-style cloud: a full 360° "template", or a single-sided "good"/"bulge"/"sink" scan."""
    if cls not in SHAPES or kind not in ("template", "good", *REAL3D_DEFECTS):
        raise ValueError(f"unknown class/kind {cls!r}/{kind!r}")
    geo_rng, noise_rng, defect_rng = rng.spawn(3)
    scale, rot = geo_rng.uniform(0.95, 1.05), shp.random_rotation(geo_rng)
    offset, view, sigma = geo_rng.uniform(-0.02, 0.02, 3), None, 1e-5

    def posed(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pts, nrm = shp.sample_surface(cls, n, geo_rng)
        pts, nrm = scale * pts @ rot.T, nrm @ rot.T
        return pts, nrm, _visible(pts, nrm, scale * np.sqrt(shp.surface_area(cls) / n))

    if kind == "template":
        pts, nrm, _ = posed(6000)
    else:  # a probe finds the visible fraction of this pose, so every scan keeps about 4500 points
        n_full = int(np.clip(4500 / max(posed(2000)[2].mean(), 0.05), 6000, 40000))
        pts, nrm, keep = posed(n_full)
        pts, nrm, view, sigma = pts[keep], nrm[keep], np.array([0.0, 0.0, 1.0]), 3e-5
    labels = np.zeros(len(pts), np.uint8)
    if kind in REAL3D_DEFECTS:
        prof = _real3d_defect(pts, nrm, defect_rng)
        sign = 1.0 if kind == "bulge" else -1.0
        pts = pts + (sign * defect_rng.uniform(0.0015, 0.003) * prof)[:, None] * nrm
        labels[prof > 0] = 1
    pts = pts + noise_rng.normal(0.0, sigma, pts.shape)
    points = np.round((pts + offset) * 1000.0, 4).astype(np.float32)
    return Real3DSample(points, labels, nrm.astype(np.float32), view)


def write_pcd(path: Path, points: np.ndarray) -> None:
    """Write a binary PCD v0.7 with float32 x y z (byte-identical for identical points)."""
    pts = np.ascontiguousarray(points, dtype="<f4")
    header = (
        "# .PCD v0.7 - Point Cloud Data file format\nVERSION 0.7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\n"
        f"COUNT 1 1 1\nWIDTH {len(pts)}\nHEIGHT 1\nVIEWPOINT 0 0 0 1 0 0 0\nPOINTS {len(pts)}\nDATA binary\n"
    )
    path.write_bytes(header.encode("ascii") + pts.tobytes())


def _write_mvtec_sample(folder: Path, stem: str, sample: MvtecSample, with_gt: bool) -> None:
    for sub in ("rgb", "xyz", *(("gt",) if with_gt else ())):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    Image.fromarray(sample.rgb).save(folder / "rgb" / f"{stem}.png", format="PNG")
    tifffile.imwrite(folder / "xyz" / f"{stem}.tiff", sample.xyz, photometric="rgb", metadata=None,
                     software=False, datetime=False)
    if with_gt:
        Image.fromarray(sample.gt).save(folder / "gt" / f"{stem}.png", format="PNG")


def _write_mvtec_class(
    root: Path, cls: str, seed: int, counts: dict[str, int], size: tuple[int, int]
) -> None:
    base = root / cls
    base.mkdir(parents=True, exist_ok=True)
    (base / "class_ids.json").write_text(json.dumps({"good": 0, **GT_VALUES}, indent=2) + "\n")
    (base / "readme.txt").write_text(
        f"Synthetic '{cls}' class in the MVTec 3D-AD layout, made by pointad_pipe (seed {seed}).\n"
        "xyz tiffs are organized float32 point clouds in metres, (0, 0, 0) where missing.\n"
        f"gt values by defect type: {GT_VALUES}; any non-zero value is a defect.\n"
    )
    (base / "license.txt").write_text("Synthetic data made by pointad_pipe; no restrictions (CC0-1.0).\n")
    jobs = [("train", "good", counts["train"]), ("validation", "good", counts["validation"]),
            ("test", "good", counts["good"]), *(("test", d, counts["defect"]) for d in DEFECTS)]
    for split, defect, n in jobs:
        for i in range(n):
            sample = build_mvtec_sample(cls, defect, sample_rng(seed, "mvtec3d", cls, split, defect, i), size)
            _write_mvtec_sample(base / split / defect, f"{i:03d}", sample, split == "test")


def _write_real3d_class(root: Path, cls: str, seed: int, counts: dict[str, int]) -> None:
    base = root / cls
    for sub in ("train", "test", "gt"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    for k in range(counts["train"]):
        write_pcd(base / "train" / f"{k}_template.pcd",
                  build_real3d_sample(cls, "template", sample_rng(seed, "real3d", cls, "train", k)).points)
    kinds = ["good"] * counts["good"] + [d for d in REAL3D_DEFECTS for _ in range(counts["defect"])]
    for i, kind in enumerate(kinds):
        sample = build_real3d_sample(cls, kind, sample_rng(seed, "real3d", cls, "test", kind, i))
        write_pcd(base / "test" / f"{i}_{kind}.pcd", sample.points)
        if kind != "good":
            table = np.column_stack([sample.points.astype(np.float64), sample.labels])
            np.savetxt(base / "gt" / f"{i}_{kind}.txt", table, fmt=["%.4f", "%.4f", "%.4f", "%d"])


def make_synthetic(
    out: Path,
    seed: int = 0,
    classes: Sequence[str] | None = None,
    n_train: int = 2,
    n_test_good: int = 2,
    n_test_per_defect: int = 1,
    size: tuple[int, int] = DEFAULT_SIZE,
    layouts: Sequence[str] = LAYOUTS,
) -> dict[str, Path]:
    """Write synthetic trees `out/mvtec3d/<class>/...` and `out/real3d/<class>/...`.

    The default grid, 256 x 320, pads to 400 x 400 and so shrinks to the 336 x 336 of METHOD.md, as
    the real scans (800 x 800) do; a grid smaller than 336 would be upsampled into duplicate points.

    Existing files with the same names are overwritten; nothing else under `out` is touched.
    Validation gets max(1, n_train // 2) samples. Real3D-AD's "bulge"/"sink" are bump/dent.

    Returns:
        {layout: root folder} for each requested layout.
    """
    classes = SYNTHETIC_CLASSES if classes is None else tuple(classes)
    bad = [c for c in classes if c not in SHAPES] + [x for x in layouts if x not in LAYOUTS]
    if bad:
        raise ValueError(f"unknown class or layout {bad}; classes {SYNTHETIC_CLASSES}, layouts {LAYOUTS}")
    if min(n_train, n_test_good, n_test_per_defect) < 0 or n_train < 1:
        raise ValueError("need n_train >= 1 and non-negative test counts")
    scene_pitch(size)  # validates size
    counts = {"train": n_train, "validation": max(1, n_train // 2), "good": n_test_good,
              "defect": n_test_per_defect}
    roots = {layout: Path(out) / layout for layout in layouts}
    for cls in classes:
        if "mvtec3d" in roots:
            _write_mvtec_class(roots["mvtec3d"], cls, seed, counts, size)
        if "real3d" in roots:
            _write_real3d_class(roots["real3d"], cls, seed, counts)
    return roots
