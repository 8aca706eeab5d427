"""The `clean` stage: one loaded sample -> the points that are rendered and scored (METHOD.md §1).

Steps, in order (labels, rgb and grid index follow every step):
1. drop zero, NaN and inf points;
2. organized sources: RANSAC plane on the valid points of a `border_px` border of the full-resolution
   grid (Open3D `segment_plane`), drop points within `plane_drop` of it; unorganized sources
   optionally fit the plane on all points (`plane: all`);
3. keep the largest DBSCAN cluster (Open3D `cluster_dbscan`'s labels, found by `dbscan.py`);
4. resample: organized grids are zero-padded to a square (side rounded up to `pad_multiple`,
   padding at the bottom and right) and resized to `grid_size`^2 (xyz nearest, rgb bicubic, gt
   bilinear then > 0.5); unorganized clouds are capped at `max_points` by farthest-point sampling.

Thresholds are physical distances in metres (METHOD.md §1: plane band 5 mm, DBSCAN radius 6 mm),
whatever the scanner's density: a coarse scan of a thin part keeps its part. `units` says what the
cloud's coordinates are in (`m`, `mm`, or `auto`: millimetres when the valid points span more than
`AUTO_MM_EXTENT`, which no inspected part does in metres). When a step would remove almost every
point, the row fails with the counts and the threshold used, instead of going on with crumbs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..config import check_numbers
from ..errors import SampleError
from ..loaders.base import Sample
from .dbscan import dbscan_labels

VERSION = 2  # 2: physical thresholds with `units` m | mm | auto (1 scaled them with point spacing)
GRID_RESAMPLE_DEFAULT = 336
UNITS = {"m": 1.0, "mm": 1000.0}  # coordinate units per metre
#: `auto`: a cloud whose valid points span more than this (bounding-box diagonal) is in millimetres.
AUTO_MM_EXTENT = 5.0
#: A step that leaves fewer than this share of its input (or fewer than DBSCAN's minimum) fails the row.
MIN_KEPT_SHARE = 0.01
#: Above this many distance updates (points x samples), exact FPS is replaced by voxel thinning:
#: Open3D's FPS is O(n k), ~1 s per 1e9 on this machine.
FPS_BUDGET = 2e9


@dataclass(frozen=True)
class CleanConfig:
    """Everything that changes the clean stage's output (all of it is fingerprinted)."""

    plane: str = "border"  # border | all | none
    border_px: int = 10
    plane_fit_dist: float = 0.004
    plane_drop_dist: float = 0.005
    ransac_n: int = 50
    ransac_iters: int = 1000
    dbscan: bool = True
    dbscan_eps: float = 0.006
    dbscan_min_points: int = 30
    units: str = "auto"  # auto | m | mm: the cloud's coordinate unit (thresholds are in metres)
    grid_size: int | None = GRID_RESAMPLE_DEFAULT
    pad_multiple: int = 100
    max_points: int | None = None
    seed: int = 0
    version: int = VERSION

    def __post_init__(self) -> None:
        check_numbers(self, positive=("border_px", "plane_fit_dist", "plane_drop_dist", "ransac_n", "ransac_iters",
                                      "dbscan_eps", "dbscan_min_points", "grid_size", "pad_multiple", "max_points"))
        if self.plane not in ("border", "all", "none"):
            raise ValueError(f"plane must be border, all or none, got {self.plane!r}")
        if self.units not in ("auto", *UNITS):
            raise ValueError(f"units must be auto, m or mm, got {self.units!r}")


#: Per-format defaults (the catalog's `clean:` overrides them).
FORMAT_DEFAULTS: dict[str, dict[str, object]] = {
    "mvtec3d": {},
    "eyecandies": {},
    "real3d": {"plane": "none", "dbscan": False, "grid_size": None, "max_points": 112_896},
    "files": {"plane": "none", "dbscan": False, "grid_size": None, "max_points": 112_896},
}


@dataclass
class Cleaned:
    """The clean stage's output for one sample (STORE.md `clean/<fp>/points/<r>/*`)."""

    xyz: np.ndarray  # (n, 3) float32
    label: np.ndarray  # (n,) uint8
    rgb: np.ndarray | None  # (n, 3) uint8
    grid: np.ndarray | None  # (n,) int32
    grid_shape: tuple[int, int] | None
    #: (H, W, 3) registered RGB image on the output grid: black where cleaning removed a point (and in
    #: the padding), original colour elsewhere, sensor holes included, as the code's RGB images are.
    rgb_grid: np.ndarray | None = None


def valid_points(xyz: np.ndarray) -> np.ndarray:
    """Finite points that are not the (0, 0, 0) / z == 0 'missing' marker."""
    return np.isfinite(xyz).all(axis=1) & (xyz[:, 2] != 0)


def _o3d_cloud(xyz: np.ndarray):  # noqa: ANN202 - open3d type, imported lazily
    import open3d as o3d

    return o3d.geometry.PointCloud(o3d.utility.Vector3dVector(np.asarray(xyz, np.float64)))


def remove_plane(xyz: np.ndarray, fit_mask: np.ndarray, cfg: CleanConfig, scale: float) -> np.ndarray:
    """Boolean keep-mask: False for points within `plane_drop_dist` of a RANSAC plane fit on `fit_mask`.

    With too few points to fit (e.g. a tree that the common preprocessing already plane-zeroed),
    nothing is removed.
    """
    import open3d as o3d

    if fit_mask.sum() < max(3, cfg.ransac_n) * 3:
        return np.ones(len(xyz), bool)
    o3d.utility.random.seed(cfg.seed)
    model, _ = _o3d_cloud(xyz[fit_mask]).segment_plane(
        distance_threshold=cfg.plane_fit_dist * scale, ransac_n=cfg.ransac_n, num_iterations=cfg.ransac_iters)
    a, b, c, d = model
    dist = np.abs(xyz.astype(np.float64) @ np.array([a, b, c]) + d) / np.linalg.norm([a, b, c])
    return dist >= cfg.plane_drop_dist * scale


def largest_cluster(xyz: np.ndarray, cfg: CleanConfig, scale: float) -> np.ndarray:
    """Boolean keep-mask of the largest DBSCAN cluster (all False when there is no cluster).

    The labels are Open3D `cluster_dbscan`'s, from `dbscan_labels` (about 150x faster at scan
    resolution); ties between cluster sizes go to the lowest label, as before.
    """
    labels = dbscan_labels(xyz, cfg.dbscan_eps * scale, cfg.dbscan_min_points)
    if len(labels) == 0 or labels.max() < 0:
        return np.zeros(len(xyz), bool)
    return labels == np.bincount(labels[labels >= 0]).argmax()


def farthest_points(xyz: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Indices of k points by farthest-point sampling (Open3D), or voxel thinning past `FPS_BUDGET`.

    Open3D's FPS returns a cloud, not indices; the point index rides along in the colour channel,
    which it copies exactly (float64 holds integers below 2**53).
    """
    n = len(xyz)
    if n <= k:
        return np.arange(n)
    if n * k > FPS_BUDGET:
        return voxel_thin(xyz, k)
    import open3d as o3d

    cloud = _o3d_cloud(xyz)
    cloud.colors = o3d.utility.Vector3dVector(np.repeat(np.arange(n, dtype=np.float64)[:, None], 3, axis=1))
    picked = cloud.farthest_point_down_sample(k)
    return np.sort(np.asarray(picked.colors)[:, 0].astype(np.int64))


def voxel_thin(xyz: np.ndarray, k: int) -> np.ndarray:
    """Indices of at most k points, the first one of each voxel, with the smallest voxel that fits.

    Used only where exact FPS is unaffordable; like FPS it spreads the points evenly.
    """
    origin = xyz.min(axis=0)

    def firsts(size: float) -> np.ndarray:
        keys = np.floor((xyz - origin) / size).astype(np.int64)
        dims = [int(d) + 1 for d in keys.max(axis=0)]
        if dims[0] * dims[1] * dims[2] >= 2**62:  # too fine to number the voxels in one int64
            return np.unique(keys, axis=0, return_index=True)[1]
        # one int64 per voxel: 1-D unique is ~20x faster than rows (2M points: 140 s -> 5 s), same firsts
        flat = (keys[:, 0] * dims[1] + keys[:, 1]) * dims[2] + keys[:, 2]
        return np.unique(flat, return_index=True)[1]

    lo, hi = 0.0, float(np.ptp(xyz, axis=0).max()) or 1.0
    best = firsts(hi)
    for _ in range(30):  # bisection on the voxel size
        mid = (lo + hi) / 2
        picked = firsts(mid)
        if len(picked) > k:
            lo = mid
        else:
            hi, best = mid, picked
    return np.sort(best)


def _resize(channel: np.ndarray, size: int, resample: int) -> np.ndarray:
    """Resize one float32 channel with PIL (nearest / bilinear)."""
    return np.asarray(Image.fromarray(channel.astype(np.float32), mode="F").resize((size, size), resample))


def pad_resize_grid(xyz: np.ndarray, rgb: np.ndarray | None, gt: np.ndarray, keep: np.ndarray,
                    removed: np.ndarray, size: int,
                    multiple: int) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, np.ndarray]:
    """Zero-pad (H, W) grids to a square of side max(ceil(H), ceil(W)) to `multiple`, resize to `size`.

    Returns xyz (size, size, 3), rgb (size, size, 3) or None, gt (size, size) bool and keep (size, size).
    Cells not kept are zero in xyz; cells that cleaning `removed` are black in rgb, as in the code's
    preprocessing (sensor holes keep their colour).
    """
    h, w = keep.shape
    side = int(max(np.ceil(h / multiple), np.ceil(w / multiple)) * multiple)

    def pad(a: np.ndarray) -> np.ndarray:
        out = np.zeros((side, side, *a.shape[2:]), a.dtype)
        out[:h, :w] = a
        return out

    xyz = np.where(keep[..., None], xyz, 0).astype(np.float32)
    xyz_r = np.stack([_resize(pad(xyz[..., c]), size, Image.NEAREST) for c in range(3)], axis=-1)
    keep_r = _resize(pad(keep.astype(np.float32)), size, Image.NEAREST) > 0.5
    gt_r = _resize(pad(gt.astype(np.float32)), size, Image.BILINEAR) > 0.5
    rgb_r = None
    if rgb is not None:
        black = np.where(removed[..., None], 0, rgb).astype(np.uint8)
        rgb_r = np.asarray(Image.fromarray(pad(black), mode="RGB").resize((size, size), Image.BICUBIC))
    return xyz_r, rgb_r, gt_r, keep_r


#: fewer valid points cannot be rendered: the surface normals look at 16 neighbours (render `normals_knn`)
MIN_VALID_POINTS = 16


def clean_sample(sample: Sample, cfg: CleanConfig) -> Cleaned:
    """Run the clean steps on one sample (pure: arrays in, arrays out).

    Raises:
        SampleError: nothing valid is left; the message names the source file.
    """
    xyz = np.asarray(sample.points, np.float32)
    keep = valid_points(xyz)
    if not keep.any():
        raise SampleError(sample.ref.source, "no valid points (all zero, NaN or inf)")
    if keep.sum() < MIN_VALID_POINTS:
        raise SampleError(sample.ref.source, f"only {int(keep.sum())} valid points; at least {MIN_VALID_POINTS} are "
                                             f"needed to render and score a cloud")
    unit = cloud_unit(xyz[keep], cfg.units)
    scale = UNITS[unit]
    if cfg.plane != "none":
        fit = keep.copy()
        if cfg.plane == "border" and sample.organized:
            fit &= border_mask(sample.grid_shape, cfg.border_px).reshape(-1)
        idx = np.flatnonzero(keep)
        keep[idx] = remove_plane(xyz[idx], fit[idx], cfg, scale)
        _check_kept(sample, idx.size, int(keep.sum()), cfg, f"plane removal (band {cfg.plane_drop_dist:g} m)", unit)
    if cfg.dbscan:
        idx = np.flatnonzero(keep)
        keep[idx] = largest_cluster(xyz[idx], cfg, scale)
        _check_kept(sample, idx.size, int(keep.sum()), cfg, f"the largest DBSCAN cluster (radius {cfg.dbscan_eps:g} m, "
                                                            f"{cfg.dbscan_min_points} points)", unit)
    if sample.organized and cfg.grid_size:
        return _resampled_grid(sample, xyz, keep, valid_points(xyz) & ~keep, cfg)
    idx = np.flatnonzero(keep)
    if not sample.organized and cfg.max_points and len(idx) > cfg.max_points:
        idx = idx[farthest_points(xyz[idx], cfg.max_points, cfg.seed)]
    rgb_grid = None
    if sample.organized and sample.rgb is not None:
        removed = valid_points(xyz) & ~keep
        rgb_grid = np.where(removed[:, None], 0, sample.rgb).astype(np.uint8).reshape(*sample.grid_shape, 3)
    return Cleaned(
        xyz=xyz[idx], label=(sample.labels[idx] > 0).astype(np.uint8),
        rgb=None if sample.rgb is None else sample.rgb[idx].astype(np.uint8),
        grid=None if sample.grid is None else sample.grid[idx].astype(np.int32),
        grid_shape=sample.grid_shape, rgb_grid=rgb_grid)


def cloud_unit(xyz: np.ndarray, units: str) -> str:
    """`m` or `mm`: the configured unit, or for `auto` the one the cloud's extent implies."""
    if units != "auto":
        return units
    extent = float(np.linalg.norm(np.ptp(np.asarray(xyz, np.float64), axis=0))) if len(xyz) else 0.0
    return "mm" if extent > AUTO_MM_EXTENT else "m"


def _check_kept(sample: Sample, before: int, after: int, cfg: CleanConfig, step: str, unit: str) -> None:
    """Fail the row, with the numbers, when a step left (almost) nothing."""
    if after >= max(MIN_KEPT_SHARE * before, min(cfg.dbscan_min_points, before), 1):
        return
    raise SampleError(sample.ref.source, f"no valid points after cleaning: {step} kept {after} of {before} points "
                                         f"(coordinates read as {unit}; set clean `units` if that is wrong)")


def border_mask(shape: tuple[int, int], px: int) -> np.ndarray:
    """(H, W) bool: True within `px` cells of the grid's edge."""
    mask = np.ones(shape, bool)
    mask[px:-px or None, px:-px or None] = False
    return mask


def _resampled_grid(sample: Sample, xyz: np.ndarray, keep: np.ndarray, removed: np.ndarray,
                    cfg: CleanConfig) -> Cleaned:
    h, w = sample.grid_shape
    rgb = None if sample.rgb is None else sample.rgb.reshape(h, w, 3)
    xyz_r, rgb_r, gt_r, keep_r = pad_resize_grid(
        xyz.reshape(h, w, 3), rgb, sample.labels.reshape(h, w) > 0, keep.reshape(h, w), removed.reshape(h, w),
        cfg.grid_size, cfg.pad_multiple)
    idx = np.flatnonzero(keep_r.reshape(-1) & valid_points(xyz_r.reshape(-1, 3)))
    if len(idx) == 0:
        raise SampleError(sample.ref.source, "no valid points after resizing the grid")
    return Cleaned(
        xyz=xyz_r.reshape(-1, 3)[idx], label=gt_r.reshape(-1)[idx].astype(np.uint8),
        rgb=None if rgb_r is None else rgb_r.reshape(-1, 3)[idx],
        grid=idx.astype(np.int32), grid_shape=(cfg.grid_size, cfg.grid_size), rgb_grid=rgb_r)
