"""The synthetic dataset generator: layouts, determinism, geometry, and exact ground truth."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from pointad_pipe.pipeline.synthetic import generator as syn
from pointad_pipe.pipeline.synthetic import shapes

SIZE = (64, 80)
SEED = 3
COUNTS = dict(n_train=2, n_test_good=1, n_test_per_defect=1)


def _build(out: Path, seed: int = SEED) -> dict[str, Path]:
    return syn.make_synthetic(out, seed=seed, size=SIZE, **COUNTS)


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return _build(tmp_path_factory.mktemp("synthetic"))


def _digests(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*")) if p.is_file()
    }


def _border(shape: tuple[int, int], width: int = 10) -> np.ndarray:
    m = np.zeros(shape, bool)
    m[:width], m[-width:], m[:, :width], m[:, -width:] = True, True, True, True
    return m


def _read_pcd(path: Path) -> np.ndarray:
    o3d = pytest.importorskip("open3d")
    pts = np.asarray(o3d.io.read_point_cloud(str(path)).points)
    assert len(pts) and np.isfinite(pts).all(), path
    return pts


# ---------------------------------------------------------------- layout


def test_tree_layout(tree: dict[str, Path]) -> None:
    assert set(tree) == {"mvtec3d", "real3d"}
    assert len(syn.SYNTHETIC_CLASSES) >= 5
    assert {"bump", "dent", "hole", "crack", "colour"} <= set(syn.DEFECTS)
    for cls in syn.SYNTHETIC_CLASSES:
        base = tree["mvtec3d"] / cls
        for name in ("class_ids.json", "readme.txt", "license.txt"):
            assert (base / name).is_file(), name
        assert json.loads((base / "class_ids.json").read_text())["hole"] == syn.GT_VALUES["hole"]
        for split, n in (("train", 2), ("validation", 1)):
            for sub, ext in (("rgb", "png"), ("xyz", "tiff")):
                assert sorted(p.name for p in (base / split / "good" / sub).iterdir()) == [
                    f"{i:03d}.{ext}" for i in range(n)
                ]
            assert not (base / split / "good" / "gt").exists()
        assert sorted(p.name for p in (base / "test").iterdir()) == sorted(["good", *syn.DEFECTS])
        for defect in ("good", *syn.DEFECTS):
            for sub, ext in (("rgb", "png"), ("xyz", "tiff"), ("gt", "png")):
                assert (base / "test" / defect / sub / f"000.{ext}").is_file(), (cls, defect, sub)

        r3 = tree["real3d"] / cls
        assert sorted(p.name for p in (r3 / "train").iterdir()) == ["0_template.pcd", "1_template.pcd"]
        assert sorted(p.name for p in (r3 / "test").iterdir()) == ["0_good.pcd", "1_bulge.pcd", "2_sink.pcd"]
        assert sorted(p.name for p in (r3 / "gt").iterdir()) == ["1_bulge.txt", "2_sink.txt"]


def test_gt_png_values(tree: dict[str, Path]) -> None:
    for cls in syn.SYNTHETIC_CLASSES:
        for defect in ("good", *syn.DEFECTS):
            gt = np.array(Image.open(tree["mvtec3d"] / cls / "test" / defect / "gt" / "000.png"))
            rgb = np.array(Image.open(tree["mvtec3d"] / cls / "test" / defect / "rgb" / "000.png"))
            assert gt.dtype == np.uint8 and gt.shape == SIZE and rgb.shape == (*SIZE, 3)
            expected = {0} if defect == "good" else {0, syn.GT_VALUES[defect]}
            assert set(np.unique(gt).tolist()) == expected, (cls, defect)


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown class"):
        syn.make_synthetic(tmp_path, classes=["nope"])
    with pytest.raises(ValueError, match="layout"):
        syn.make_synthetic(tmp_path, layouts=["eyecandies"])
    with pytest.raises(ValueError, match="size"):
        syn.make_synthetic(tmp_path, size=(20, 20))
    assert not any(tmp_path.iterdir())


# ---------------------------------------------------------------- determinism


def test_same_seed_same_bytes(tree: dict[str, Path], tmp_path: Path) -> None:
    again = _build(tmp_path / "again")
    for layout, root in tree.items():
        first, second = _digests(root), _digests(again[layout])
        assert len(first) > 30 and first == second, layout


def test_other_seed_other_data(tree: dict[str, Path], tmp_path: Path) -> None:
    other = _build(tmp_path / "other", seed=SEED + 1)
    for layout, root in tree.items():
        first, second = _digests(root), _digests(other[layout])
        assert first.keys() == second.keys()
        differ = [k for k in first if first[k] != second[k] and k.endswith((".tiff", ".pcd"))]
        assert len(differ) > 0.9 * sum(k.endswith((".tiff", ".pcd")) for k in first), layout


def test_files_match_the_sample_builders(tree: dict[str, Path]) -> None:
    cls = syn.SYNTHETIC_CLASSES[0]
    s = syn.build_mvtec_sample(cls, "dent", syn.sample_rng(SEED, "mvtec3d", cls, "test", "dent", 0), SIZE)
    folder = tree["mvtec3d"] / cls / "test" / "dent"
    np.testing.assert_array_equal(tifffile.imread(folder / "xyz" / "000.tiff"), s.xyz)
    np.testing.assert_array_equal(np.array(Image.open(folder / "rgb" / "000.png")), s.rgb)
    np.testing.assert_array_equal(np.array(Image.open(folder / "gt" / "000.png")), s.gt)
    r = syn.build_real3d_sample(cls, "sink", syn.sample_rng(SEED, "real3d", cls, "test", "sink", 2))
    np.testing.assert_array_equal(_read_pcd(tree["real3d"] / cls / "test" / "2_sink.pcd"), r.points)


# ---------------------------------------------------------------- MVTec geometry


def test_xyz_is_a_range_image_of_object_on_table(tree: dict[str, Path]) -> None:
    for cls in syn.SYNTHETIC_CLASSES:
        for split, defect in (("train", "good"), ("test", "bump"), ("test", "hole")):
            xyz = tifffile.imread(tree["mvtec3d"] / cls / split / defect / "xyz" / "000.tiff")
            assert xyz.shape == (*SIZE, 3) and xyz.dtype == np.float32
            missing = (xyz == 0).all(axis=-1)
            assert 0.005 < missing.mean() < 0.25, (cls, missing.mean())
            assert np.isfinite(xyz).all() and (xyz[~missing, 2] > 0.3).all()  # metres, camera ~0.45 m away

            pts = xyz[_border(SIZE) & ~missing].astype(np.float64)
            design = np.column_stack([pts[:, 0], pts[:, 1], np.ones(len(pts))])
            coef, *_ = np.linalg.lstsq(design, pts[:, 2], rcond=None)
            normal = np.array([coef[0], coef[1], -1.0])
            assert np.sqrt(np.mean((design @ coef - pts[:, 2]) ** 2)) < 5e-4, cls

            rng = syn.sample_rng(SEED, "mvtec3d", cls, split, defect, 0)
            s = syn.build_mvtec_sample(cls, defect, rng, SIZE)
            np.testing.assert_array_equal(s.xyz, xyz)
            obj = s.object_mask & ~missing
            height = (xyz[obj].astype(np.float64) @ normal + coef[2]) / np.linalg.norm(normal)  # > 0: nearer
            assert np.mean(height > 0.005) > 0.9, (cls, np.mean(height > 0.005))
            assert s.object_mask[_border(SIZE)].mean() < 0.02


def test_gt_is_exactly_where_geometry_changed() -> None:
    for cls in syn.SYNTHETIC_CLASSES:
        for defect in syn.DEFECTS:
            for seed in (0, 1):
                s = syn.build_mvtec_sample(cls, defect, syn.sample_rng(seed, cls, defect), SIZE)
                gt = s.gt > 0
                assert set(np.unique(s.gt).tolist()) == {0, syn.GT_VALUES[defect]}
                assert (gt <= s.object_mask).all(), (cls, defect)
                assert 0.002 < gt.sum() / s.object_mask.sum() < 0.15, (cls, defect, gt.sum())
                changed = (s.xyz != s.clean_xyz).any(axis=-1)
                rgb_changed = (s.rgb != s.clean_rgb).any(axis=-1)
                assert not (changed & ~gt).any() and not (rgb_changed & ~gt).any(), (cls, defect)
                valid = ~(s.clean_xyz == 0).all(axis=-1)
                if defect == "colour":
                    np.testing.assert_array_equal(s.xyz, s.clean_xyz)
                    diff = np.abs(s.rgb.astype(int) - s.clean_rgb.astype(int)).max(axis=-1)
                    assert (diff[gt] > 20).all()
                else:
                    assert changed[gt & valid].mean() > 0.8, (cls, defect)
                    delta = np.linalg.norm(s.xyz - s.clean_xyz, axis=-1)[gt & valid]
                    assert delta.max() > 1e-3  # millimetres, well above the 0.1-0.2 mm noise


def test_bump_and_dent_move_the_surface_the_right_way() -> None:
    for cls in syn.SYNTHETIC_CLASSES:
        for defect, sign in (("bump", 1), ("dent", -1)):
            s = syn.build_mvtec_sample(cls, defect, syn.sample_rng(7, cls, defect), SIZE)
            cells = (s.gt > 0) & ~(s.clean_xyz == 0).all(axis=-1)
            # the camera looks along +z, so an outward bump brings points closer (smaller z)
            dz = (s.xyz[..., 2] - s.clean_xyz[..., 2])[cells]
            assert (sign * dz <= 0).all() and (sign * dz).min() < -1e-3, (cls, defect)


def test_cleaning_from_method_keeps_the_object() -> None:
    """METHOD.md section 1 on full-size synthetic scans: plane on the border, 5 mm cut, DBSCAN."""
    o3d = pytest.importorskip("open3d")
    o3d.utility.random.seed(0)
    for cls in syn.SYNTHETIC_CLASSES:
        s = syn.build_mvtec_sample(cls, "crack", syn.sample_rng(0, cls, "clean"), (128, 160))
        flat, valid = s.xyz.reshape(-1, 3).astype(np.float64), ~(s.xyz == 0).all(axis=-1).ravel()
        cloud = o3d.utility.Vector3dVector(flat[_border((128, 160)).ravel() & valid])
        border = o3d.geometry.PointCloud(cloud)
        plane, _ = border.segment_plane(0.004, 50, 1000)
        dist = np.abs(flat @ np.array(plane[:3]) + plane[3]) / np.linalg.norm(plane[:3])
        above = np.flatnonzero(valid & (dist > 0.005))
        cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(flat[above]))
        labels = np.array(cloud.cluster_dbscan(0.006, 30))
        kept = np.zeros(flat.shape[0], bool)
        kept[above[labels == np.bincount(labels[labels >= 0]).argmax()]] = True
        obj = s.object_mask.ravel() & valid
        assert (kept <= s.object_mask.ravel()).all(), cls
        assert kept[obj].mean() > 0.97 and kept[(s.gt.ravel() > 0) & valid].all(), cls


# ---------------------------------------------------------------- Real3D


def test_real3d_gt_and_units(tree: dict[str, Path]) -> None:
    for cls in syn.SYNTHETIC_CLASSES:
        base = tree["real3d"] / cls
        for pcd in sorted(base.rglob("*.pcd")):
            pts = _read_pcd(pcd)
            assert 2000 <= len(pts) <= 10000, (pcd, len(pts))
            assert 20 < np.ptp(pts, axis=0).max() < 150, pcd  # tens of millimetres
        for name in ("1_bulge", "2_sink"):
            lines = (base / "gt" / f"{name}.txt").read_text().splitlines()
            assert all(len(line.split(" ")) == 4 for line in lines)
            table = np.loadtxt(base / "gt" / f"{name}.txt")
            labels = table[:, 3]
            assert set(np.unique(labels).tolist()) == {0.0, 1.0}
            assert 0.01 <= labels.mean() <= 0.10, (cls, name, labels.mean())
            pts = _read_pcd(base / "test" / f"{name}.pcd")
            np.testing.assert_array_equal(table[:, :3].astype(np.float32), pts.astype(np.float32))


def test_real3d_defects_are_local_and_on_the_scanned_side() -> None:
    for cls in syn.SYNTHETIC_CLASSES:
        for kind, sign in (("bulge", 1.0), ("sink", -1.0)):
            s = syn.build_real3d_sample(cls, kind, syn.sample_rng(5, cls, kind))
            # same generator, so the same draws, without the defect
            clean = syn.build_real3d_sample(cls, "good", syn.sample_rng(5, cls, kind))
            moved = (s.points - clean.points).astype(np.float64)
            changed = np.abs(moved).max(axis=1) > 0
            assert not (changed & (s.labels == 0)).any(), (cls, kind)
            along = np.einsum("ij,ij->i", moved, s.normals.astype(np.float64))[s.labels == 1]
            assert (sign * along > -1e-3).all() and (sign * along).max() > 1.0, (cls, kind)  # mm
            anomalous = s.points[s.labels == 1]
            assert np.ptp(anomalous, axis=0).max() < 0.5 * np.ptp(s.points, axis=0).max(), cls
            assert (s.normals[s.labels == 1] @ s.view > 0).all()


def test_real3d_scans_single_sided_templates_full() -> None:
    grid = [(x, y, z) for x in (-1, 0, 1) for y in (-1, 0, 1) for z in (-1, 0, 1)]
    dirs = np.array([d for d in grid if any(d)], float)
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    for cls in syn.SYNTHETIC_CLASSES:
        template = syn.build_real3d_sample(cls, "template", syn.sample_rng(2, cls, "t"))
        assert template.view is None and template.labels.sum() == 0
        assert ((template.normals @ dirs.T).max(axis=0) > 0.5).all(), cls  # normals face every way
        for kind in ("good", "bulge", "sink"):
            scan = syn.build_real3d_sample(cls, kind, syn.sample_rng(2, cls, kind))
            assert (scan.normals @ scan.view > 0).all(), (cls, kind)
            assert (scan.normals @ -scan.view).max() < 0  # nothing faces away from the scanner
            assert 3000 <= len(scan.points) <= 8000, (cls, kind, len(scan.points))


# ---------------------------------------------------------------- shapes


def test_shape_definitions_agree() -> None:
    rng = np.random.default_rng(0)
    for name, shape in shapes.SHAPES.items():
        pts, nrm = shapes.sample_surface(name, 4000, rng)
        assert np.allclose(np.linalg.norm(nrm, axis=1), 1.0)
        assert (shape.implicit(pts + 2e-4 * nrm) > 0).all() and (shape.implicit(pts - 2e-4 * nrm) < 0).all()
        assert pts[:, 2].min() > -1e-9  # resting on the table
        assert np.hypot(pts[:, 0], pts[:, 1]).max() <= shape.radius + 1e-9
        top = shape.height(pts[:, 0], pts[:, 1])
        inside = (top > 0) & (np.abs(nrm[:, 2]) > 0.1)  # off the walls, where the top is well conditioned
        assert (pts[inside, 2] <= top[inside] + 1e-7).all(), name  # the height field is the top surface
        up = inside & (nrm[:, 2] > 0.3)
        np.testing.assert_allclose(pts[up, 2], top[up], atol=1e-7, err_msg=name)
