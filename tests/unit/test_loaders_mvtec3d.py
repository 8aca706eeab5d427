"""The MVTec 3D-AD loader on tiny synthetic trees: indexing, values, broken inputs; the loader registry."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile

from pointad_pipe.pipeline.errors import CatalogError, SampleError
from pointad_pipe.pipeline.loaders import get_loader
from pointad_pipe.pipeline.loaders.eyecandies import EyecandiesLoader
from pointad_pipe.pipeline.loaders.mvtec3d import MVTec3DLoader

from ..helpers import grid_xyz, rgb_image, write_png, write_xyz

H, W = 12, 16  # bagel grid
TH, TW = 12, 8  # tire: taller than wide, like the real 800 × 600


def mvtec_sample(defect_dir: Path, stem: str, h: int, w: int, gt: np.ndarray | None = None) -> None:
    write_xyz(defect_dir / "xyz" / f"{stem}.tiff", grid_xyz(h, w))
    write_png(defect_dir / "rgb" / f"{stem}.png", rgb_image(h, w))
    if gt is not None:
        write_png(defect_dir / "gt" / f"{stem}.png", gt)


# ---------------------------------------------------------------------------------------------
# MVTec 3D-AD tree (built once per module)
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mvtec_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("mvtec")
    bagel = root / "bagel"
    mvtec_sample(bagel / "train" / "good", "000", H, W)
    mvtec_sample(bagel / "train" / "good", "001", H, W)
    mvtec_sample(bagel / "validation" / "good", "000", H, W)
    crack = np.zeros((H, W), np.uint8)
    crack[2, 3], crack[4, 5], crack[6, 7] = 253, 254, 255
    mvtec_sample(bagel / "test" / "crack", "000", H, W, gt=crack)
    combined = np.zeros((H, W), np.uint8)
    combined[0, :4] = 1
    mvtec_sample(bagel / "test" / "combined", "003", H, W, gt=combined)
    mvtec_sample(bagel / "test" / "good", "000", H, W)  # no gt file at all
    mvtec_sample(bagel / "test" / "good", "001", H, W, gt=np.zeros((H, W), np.uint8))
    # beside the splits and inside them: all of it must be ignored
    (bagel / "class_ids.json").write_text(json.dumps({"crack": 253}))
    (bagel / "readme.txt").write_text("readme")
    (bagel / "license.txt").write_text("license")
    (bagel / "calibration").mkdir()
    (bagel / "calibration" / "camera_parameters.json").write_text("{}")
    (bagel / "test" / "crack" / "rgb" / "._000.png").write_bytes(b"\x00\x05\x16\x07 resource fork")
    (bagel / "test" / "crack" / "xyz" / "._000.tiff").write_bytes(b"\x00\x05\x16\x07")
    (bagel / "test" / ".DS_Store").write_bytes(b"junk")
    (root / "._bagel").write_bytes(b"junk")
    (root / "readme.txt").write_text("dataset readme")

    tire = root / "tire"
    xyz = grid_xyz(TH, TW)
    xyz[0, 0] = 0.0  # a missing point
    xyz[3, 2] = 0.0
    xyz[5, 1] = np.nan  # non-finite passes through
    write_xyz(tire / "test" / "good" / "xyz" / "000.tiff", xyz)
    write_png(tire / "test" / "good" / "rgb" / "000.png", rgb_image(TH, TW, value=7))
    return root


def test_mvtec_index_lists_classes_splits_defects(mvtec_root: Path) -> None:
    refs = MVTec3DLoader().index(mvtec_root, None, None)
    ids = [r.id for r in refs]
    assert ids == [
        "bagel/test/combined/003",
        "bagel/test/crack/000",
        "bagel/test/good/000",
        "bagel/test/good/001",
        "bagel/train/good/000",
        "bagel/train/good/001",
        "bagel/validation/good/000",
        "tire/test/good/000",
    ]
    by_id = {r.id: r for r in refs}
    crack = by_id["bagel/test/crack/000"]
    assert (crack.cls, crack.split, crack.defect, crack.label) == ("bagel", "test", "crack", 1)
    assert crack.source == str(mvtec_root / "bagel/test/crack/xyz/000.tiff")
    assert crack.files == {
        "xyz": str(mvtec_root / "bagel/test/crack/xyz/000.tiff"),
        "rgb": str(mvtec_root / "bagel/test/crack/rgb/000.png"),
        "gt": str(mvtec_root / "bagel/test/crack/gt/000.png"),
    }
    assert by_id["bagel/test/combined/003"].defect == "combined"
    assert by_id["bagel/test/combined/003"].label == 1
    assert by_id["bagel/train/good/000"].label == 0
    assert "gt" not in by_id["bagel/train/good/000"].files
    assert "gt" not in by_id["bagel/test/good/000"].files
    assert by_id["bagel/test/good/001"].files["gt"].endswith("gt/001.png")


def test_mvtec_index_selects_classes_and_splits(mvtec_root: Path) -> None:
    loader = MVTec3DLoader()
    refs = loader.index(mvtec_root, ["bagel"], ["validation"])
    assert [r.id for r in refs] == ["bagel/validation/good/000"]
    assert [r.id for r in loader.index(mvtec_root, "tire", None)] == ["tire/test/good/000"]


def test_mvtec_index_catalog_errors(mvtec_root: Path, tmp_path: Path) -> None:
    loader = MVTec3DLoader()
    with pytest.raises(CatalogError, match="'carrot'") as exc:
        loader.index(mvtec_root, ["carrot"], None)
    assert str(mvtec_root / "carrot") in str(exc.value)
    with pytest.raises(CatalogError, match="'validation'") as exc:
        loader.index(mvtec_root, ["tire"], ["validation"])
    assert str(mvtec_root / "tire") in str(exc.value)
    with pytest.raises(CatalogError, match="does not exist"):
        loader.index(tmp_path / "nowhere", None, None)
    (tmp_path / "empty" / "stuff").mkdir(parents=True)
    with pytest.raises(CatalogError, match="no MVTec 3D-AD class folders") as exc:
        loader.index(tmp_path / "empty", None, None)
    assert str(tmp_path / "empty") in str(exc.value)


def test_mvtec_load_values_rgb_and_gt_values_253_254(mvtec_root: Path) -> None:
    loader = MVTec3DLoader()
    ref = next(r for r in loader.index(mvtec_root, ["bagel"], ["test"]) if r.defect == "crack")
    s = loader.load(ref)
    assert s.points.shape == (H * W, 3) and s.points.dtype == np.float32
    assert s.grid_shape == (H, W)
    np.testing.assert_array_equal(s.grid, np.arange(H * W, dtype=np.int32))
    assert s.grid.dtype == np.int32
    np.testing.assert_array_equal(s.points[4 * W + 5], [5, 4, 4 * W + 5])
    assert s.labels.dtype == np.uint8
    assert sorted(np.flatnonzero(s.labels).tolist()) == [2 * W + 3, 4 * W + 5, 6 * W + 7]
    assert set(np.unique(s.labels).tolist()) == {0, 1}
    assert s.rgb.dtype == np.uint8
    np.testing.assert_array_equal(s.rgb[4 * W + 5], [5, 4, 0])


def test_mvtec_good_test_without_gt_and_with_zero_gt(mvtec_root: Path) -> None:
    loader = MVTec3DLoader()
    goods = [r for r in loader.index(mvtec_root, ["bagel"], ["test"]) if r.defect == "good"]
    assert len(goods) == 2
    for ref in goods:
        s = loader.load(ref)
        assert ref.label == 0
        assert s.labels.shape == (H * W,) and not s.labels.any()


def test_mvtec_non_square_with_missing_points(mvtec_root: Path) -> None:
    loader = MVTec3DLoader()
    (ref,) = loader.index(mvtec_root, ["tire"], None)
    s = loader.load(ref)
    assert s.grid_shape == (TH, TW)  # (rows, cols), not transposed
    assert s.points.shape == (TH * TW, 3)
    np.testing.assert_array_equal(s.points[0], [0, 0, 0])
    np.testing.assert_array_equal(s.points[3 * TW + 2], [0, 0, 0])
    assert np.isnan(s.points[5 * TW + 1]).all()
    np.testing.assert_array_equal(s.points[10 * TW + 7], [7, 10, 10 * TW + 7])
    np.testing.assert_array_equal(s.rgb[10 * TW + 7], [7, 10, 7])


def test_mvtec_preprocessed_padded_tree(tmp_path: Path) -> None:
    """Padded to 200×200 with zeros, plane zeroed: just another H×W."""
    xyz = np.zeros((200, 200, 3), np.float32)
    xyz[:150, :130] = grid_xyz(150, 130, offset=1.0)
    xyz[:150, :130][40:60, 40:60] = 0.0  # the zeroed plane
    rgb = np.zeros((200, 200, 3), np.uint8)
    rgb[:150, :130] = 99
    gt = np.zeros((200, 200), np.uint8)
    gt[10, 20] = 255
    d = tmp_path / "foam" / "test" / "cut"
    write_xyz(d / "xyz" / "005.tiff", xyz)
    write_png(d / "rgb" / "005.png", rgb)
    write_png(d / "gt" / "005.png", gt)
    loader = MVTec3DLoader()
    (ref,) = loader.index(tmp_path, None, None)
    s = loader.load(ref)
    assert s.grid_shape == (200, 200) and s.points.shape == (40000, 3)
    assert (s.points[199 * 200 :] == 0).all()
    np.testing.assert_array_equal(s.points[10 * 200 + 20], [20, 10, 1 + 10 * 130 + 20])
    assert np.flatnonzero(s.labels).tolist() == [10 * 200 + 20]
    assert s.rgb[0].tolist() == [99, 99, 99] and s.rgb[-1].tolist() == [0, 0, 0]


# ---------------------------------------------------------------------------------------------
# MVTec 3D-AD broken inputs
# ---------------------------------------------------------------------------------------------


def _only(root: Path, stem: str) -> object:
    return next(r for r in MVTec3DLoader().index(root, None, None) if r.id.endswith(stem))


def test_mvtec_incomplete_pairs_are_listed_and_named(tmp_path: Path) -> None:
    d = tmp_path / "cookie" / "test" / "hole"
    write_xyz(d / "xyz" / "000.tiff", grid_xyz(H, W))  # rgb and gt missing
    write_png(d / "rgb" / "001.png", rgb_image(H, W))  # xyz missing
    write_png(d / "gt" / "002.png", np.zeros((H, W), np.uint8))  # only a gt
    mvtec_sample(d, "003", H, W)  # defect without its gt
    loader = MVTec3DLoader()
    refs = loader.index(tmp_path, None, None)
    assert [r.id for r in refs] == [f"cookie/test/hole/00{i}" for i in range(4)]
    with pytest.raises(SampleError, match="rgb png missing for cookie/test/hole/000") as exc:
        loader.load(refs[0])
    assert exc.value.path == str(d / "rgb" / "000.png")
    for ref in refs[1:3]:
        with pytest.raises(SampleError, match="xyz tiff missing") as exc:
            loader.load(ref)
        assert exc.value.path == str(d / "xyz" / f"{ref.id[-3:]}.tiff")
        assert ref.source == exc.value.path
    with pytest.raises(SampleError, match="gt png missing") as exc:
        loader.load(refs[3])
    assert exc.value.path == str(d / "gt" / "003.png")


def test_mvtec_truncated_tiff(tmp_path: Path) -> None:
    d = tmp_path / "dowel" / "test" / "good"
    mvtec_sample(d, "000", H, W)
    tiff = d / "xyz" / "000.tiff"
    data = tiff.read_bytes()
    tiff.write_bytes(data[: len(data) // 2])
    with pytest.raises(SampleError, match="cannot read xyz tiff") as exc:
        MVTec3DLoader().load(_only(tmp_path, "000"))
    assert exc.value.path == str(tiff)
    assert "\n" not in str(exc.value)


def test_mvtec_wrong_dtype_tiff(tmp_path: Path) -> None:
    d = tmp_path / "dowel" / "test" / "good"
    mvtec_sample(d, "000", H, W)
    tifffile.imwrite(d / "xyz" / "000.tiff", np.zeros((H, W, 1), np.uint16))
    with pytest.raises(SampleError, match=f"expected H×W×3 float32, got {H}×{W}×1 uint16") as exc:
        MVTec3DLoader().load(_only(tmp_path, "000"))
    assert exc.value.path == str(d / "xyz" / "000.tiff")


def test_mvtec_gt_and_rgb_of_wrong_size(tmp_path: Path) -> None:
    d = tmp_path / "peach" / "test" / "cut"
    mvtec_sample(d, "000", H, W, gt=np.full((H + 1, W), 255, np.uint8))
    mvtec_sample(d, "001", H, W, gt=np.zeros((H, W), np.uint8))
    write_png(d / "rgb" / "001.png", rgb_image(H, W + 2))
    loader = MVTec3DLoader()
    with pytest.raises(SampleError, match=f"gt is {H + 1}×{W}, .* is {H}×{W}") as exc:
        loader.load(_only(tmp_path, "000"))
    assert exc.value.path == str(d / "gt" / "000.png")
    with pytest.raises(SampleError, match=f"rgb is {H}×{W + 2}, .* is {H}×{W}") as exc:
        loader.load(_only(tmp_path, "001"))
    assert exc.value.path == str(d / "rgb" / "001.png")


def test_mvtec_rgba_and_grey_rgb_are_converted(tmp_path: Path) -> None:
    d = tmp_path / "rope" / "train" / "good"
    mvtec_sample(d, "000", H, W)
    mvtec_sample(d, "001", H, W)
    write_png(d / "rgb" / "000.png", np.full((H, W, 4), 40, np.uint8))
    write_png(d / "rgb" / "001.png", np.full((H, W), 9, np.uint8))
    loader = MVTec3DLoader()
    assert loader.load(_only(tmp_path, "000")).rgb[0].tolist() == [40, 40, 40]
    assert loader.load(_only(tmp_path, "001")).rgb[5].tolist() == [9, 9, 9]


# ---------------------------------------------------------------------------------------------
# registry
# ---------------------------------------------------------------------------------------------


def test_registry_builds_both_loaders() -> None:
    mvtec = get_loader("mvtec3d")
    assert isinstance(mvtec, MVTec3DLoader) and mvtec.organized and mvtec.has_rgb
    eye = get_loader("eyecandies", {"pose": "inverse"})
    assert isinstance(eye, EyecandiesLoader) and eye.pose == "inverse" and eye.rgb == "image_0"
    assert eye.organized and eye.has_rgb
    with pytest.raises(CatalogError, match="bad loader option"):
        get_loader("eyecandies", {"focal": 700})
    with pytest.raises(CatalogError, match="pose"):
        get_loader("eyecandies", {"pose": "camera"})
    with pytest.raises(CatalogError, match="bad loader option"):
        get_loader("mvtec3d", {"pose": "toolkit"})
