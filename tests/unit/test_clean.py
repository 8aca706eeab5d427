"""The clean stage on organized clouds with a known plane, in metres and in millimetres, fine and coarse scans."""

from __future__ import annotations

import numpy as np
import pytest

from pointad_pipe.pipeline.errors import SampleError
from pointad_pipe.pipeline.loaders.base import Sample, SampleRef
from pointad_pipe.pipeline.stages.clean import CleanConfig, clean_sample, farthest_points, voxel_thin

REF = SampleRef(id="t/test/good/000", cls="t", split="test", defect="good", label=0, source="mem://t")


def scene(scale: float, seed: int = 0, h: int = 200, w: int = 240, step: float = 0.0002):
    """An organized grid: a tilted table plane with a dome on it; returns xyz grid and object mask.

    Spacing `step` in metres (0.2 mm, MVTec 3D-AD's); `scale` 1000 turns it into millimetres. Object =
    dome points more than the 5 mm drop distance (plus a margin for the noise) above the table: lower
    ones are removed with the plane by design.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    x = (xx - w / 2) * step
    y = (yy - h / 2) * step
    table = 0.45 + 0.05 * x - 0.03 * y  # tilted plane
    r = np.hypot(x, y)
    dome = np.clip(0.016 ** 2 - r ** 2, 0, None) ** 0.5  # 16 mm radius dome
    obj = dome > 0.0055
    z = table - dome  # the camera looks down +z: the dome is nearer
    xyz = np.stack([x, y, z], -1) + rng.normal(0, 0.00003, (h, w, 3))
    miss = rng.random((h, w)) < 0.02
    xyz[miss] = 0
    return (xyz * scale).astype(np.float32), obj, miss, dome == 0


def organized(xyz: np.ndarray, labels: np.ndarray | None = None) -> Sample:
    h, w, _ = xyz.shape
    n = h * w
    return Sample(ref=REF, points=xyz.reshape(-1, 3), labels=np.zeros(n, np.uint8) if labels is None else labels,
                  rgb=np.full((n, 3), 100, np.uint8), grid=np.arange(n, dtype=np.int32), grid_shape=(h, w))


@pytest.mark.parametrize("scale", [1.0, 1000.0], ids=["metres", "millimetres"])
def test_plane_removed_object_kept(scale: float) -> None:
    xyz, obj, miss, table = scene(scale)
    out = clean_sample(organized(xyz), CleanConfig(grid_size=None))
    kept = np.zeros(obj.size, bool)
    kept[out.grid] = True
    plane = table.reshape(-1) & ~miss.reshape(-1)
    objv = obj.reshape(-1) & ~miss.reshape(-1)
    removed_plane = 1 - kept[plane].mean()
    kept_object = kept[objv].mean()
    print(f"{scale=}: plane removed {removed_plane:.4f}, object kept {kept_object:.4f}")
    assert removed_plane >= 0.99
    assert kept_object >= 0.99
    np.testing.assert_array_equal(out.xyz, xyz.reshape(-1, 3)[out.grid])
    assert out.rgb.shape == (len(out.grid), 3)


def test_wrong_units_fail_the_row_with_the_numbers() -> None:
    """Millimetre data declared as metres: the 6 mm DBSCAN radius becomes 6 µm, no cluster is left, and the row
    says so with the counts and the unit it assumed (instead of going on with crumbs)."""
    xyz, *_ = scene(1000.0)
    with pytest.raises(SampleError, match=r"kept 0 of \d+ points \(coordinates read as m; set clean `units`"):
        clean_sample(organized(xyz), CleanConfig(grid_size=None, units="m"))
    out = clean_sample(organized(xyz), CleanConfig(grid_size=None, units="mm"))
    assert len(out.xyz) > 1000


def thin_part(scale: float, h: int = 180, w: int = 200):
    """A coarse scan (0.6 mm spacing, 3x MVTec's) of a 1 cm tall box, 40 x 50 mm, on a tilted table."""
    step = 0.0006
    yy, xx = np.mgrid[0:h, 0:w]
    x, y = (xx - w / 2) * step, (yy - h / 2) * step
    part = (np.abs(x) < 0.025) & (np.abs(y) < 0.02)
    z = 0.45 + 0.04 * x - 0.02 * y - np.where(part, 0.010, 0.0)
    xyz = np.stack([x, y, z], -1) + np.random.default_rng(5).normal(0, 0.00003, (h, w, 3))
    return (xyz * scale).astype(np.float32), part


@pytest.mark.parametrize("scale", [1.0, 1000.0], ids=["metres", "millimetres"])
def test_a_coarse_scan_of_a_thin_part_keeps_the_part(scale: float) -> None:
    """Physical thresholds: a 5 mm plane band and a 6 mm DBSCAN radius, whatever the spacing (issue 12)."""
    xyz, part = thin_part(scale)
    out = clean_sample(organized(xyz), CleanConfig(grid_size=None))  # units: auto
    kept = np.zeros(part.size, bool)
    kept[out.grid] = True
    assert kept[part.reshape(-1)].mean() >= 0.99
    assert kept[~part.reshape(-1)].mean() <= 0.01


def test_labels_rgb_grid_follow_resample() -> None:
    xyz, *_ = scene(1.0, h=150, w=130)
    labels = np.zeros(xyz.shape[:2], np.uint8)
    labels[70:80, 60:70] = 1  # a patch on the dome
    sample = organized(xyz, labels.reshape(-1))
    sample.rgb[:] = 0
    sample.rgb[labels.reshape(-1) > 0] = 255
    out = clean_sample(sample, CleanConfig(grid_size=84, pad_multiple=100))
    assert out.grid_shape == (84, 84)
    # 150x130 pads to 200x200 and shrinks by 2.381: the patch lands near rows 29-33, cols 25-29
    gy, gx = np.divmod(out.grid, 84)
    lab = out.label > 0
    assert lab.any()
    assert gy[lab].min() >= 28 and gy[lab].max() <= 34 and gx[lab].min() >= 24 and gx[lab].max() <= 30
    # the bright rgb patch follows the labels
    assert out.rgb[lab].mean() > 150 > out.rgb[~lab].mean()
    # nothing lands in the padding (rows >= 150/200*84)
    assert gy.max() < 150 / 200 * 84 + 1


def test_nan_inf_zero_points_dropped() -> None:
    rng = np.random.default_rng(1)
    pts = rng.normal(size=(3000, 3)).astype(np.float32)
    pts[::7] = np.nan
    pts[1::11] = np.inf
    pts[2::13] = 0
    sample = Sample(ref=REF, points=pts, labels=np.zeros(3000, np.uint8))
    out = clean_sample(sample, CleanConfig(plane="none", dbscan=False, grid_size=None))
    assert np.isfinite(out.xyz).all()
    assert not (out.xyz == 0).all(axis=1).any()
    bad = ~np.isfinite(pts).all(1) | (pts[:, 2] == 0)
    assert len(out.xyz) == int((~bad).sum())


def test_all_invalid_is_a_sample_error() -> None:
    sample = Sample(ref=REF, points=np.full((10, 3), np.nan, np.float32), labels=np.zeros(10, np.uint8))
    with pytest.raises(SampleError, match="mem://t"):
        clean_sample(sample, CleanConfig(plane="none", dbscan=False))


def test_farthest_points_and_voxel_cap() -> None:
    rng = np.random.default_rng(2)
    pts = rng.random((2000, 3))
    idx = farthest_points(pts, 100, seed=0)
    assert len(idx) == 100 == len(np.unique(idx))
    # FPS spreads points: its minimum pairwise distance beats a random subset's
    from scipy.spatial.distance import pdist

    rand = rng.choice(2000, 100, replace=False)
    assert pdist(pts[idx]).min() > pdist(pts[rand]).min()
    vox = voxel_thin(pts, 100)
    assert 50 <= len(vox) <= 100 and len(np.unique(vox)) == len(vox)


def test_unorganized_cap_keeps_labels_aligned() -> None:
    rng = np.random.default_rng(3)
    pts = rng.random((5000, 3)).astype(np.float32) + 1
    labels = (pts[:, 0] > 1.8).astype(np.uint8)
    sample = Sample(ref=REF, points=pts, labels=labels)
    out = clean_sample(sample, CleanConfig(plane="none", dbscan=False, grid_size=None, max_points=500))
    assert len(out.xyz) == 500
    np.testing.assert_array_equal(out.label, (out.xyz[:, 0] > 1.8).astype(np.uint8))
