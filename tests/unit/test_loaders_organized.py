"""Organized loaders (MVTec 3D-AD, Eyecandies raw and converted) on tiny synthetic trees."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import tifffile
import yaml
from PIL import Image

from pointad_pipe.pipeline.errors import CatalogError, SampleError
from pointad_pipe.pipeline.loaders import get_loader
from pointad_pipe.pipeline.loaders.eyecandies import FOCAL_PX, EyecandiesLoader
from pointad_pipe.pipeline.loaders.mvtec3d import MVTec3DLoader

H, W = 12, 16  # bagel grid
TH, TW = 12, 8  # tire: taller than wide, like the real 800 × 600


# ---------------------------------------------------------------------------------------------
# writers
# ---------------------------------------------------------------------------------------------


def write_xyz(path: Path, xyz: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, xyz, photometric="rgb")
    return path


def write_png(path: Path, arr: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path


def grid_xyz(h: int, w: int, offset: float = 0.0) -> np.ndarray:
    """xyz[r, c] = (c, r, offset + r*w + c): every cell's value is known from its position."""
    r, c = np.indices((h, w), dtype=np.float32)
    return np.stack([c, r, offset + r * w + c], axis=-1).astype(np.float32)


def rgb_image(h: int, w: int, value: int = 0) -> np.ndarray:
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 0] = np.arange(w, dtype=np.uint8)[None, :]
    img[..., 1] = np.arange(h, dtype=np.uint8)[:, None]
    img[..., 2] = value
    return img


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
# Eyecandies, raw layout
# ---------------------------------------------------------------------------------------------

EH, EW = 6, 8
DEPTH_MIN, DEPTH_MAX = 0.0, 65.535  # depth in metres = png / 1000
POSE = np.array(  # 90° about z, then a shift
    [[0.0, -1.0, 0.0, 1.0], [1.0, 0.0, 0.0, 2.0], [0.0, 0.0, 1.0, 3.0], [0.0, 0.0, 0.0, 1.0]]
)


def depth_png() -> np.ndarray:
    depth = np.full((EH, EW), 1000, np.uint16)
    depth[0, 0] = 2000
    depth[1, 2] = 1500
    depth[5, 7] = 40000  # needs the 16th bit
    depth[4, 4] = 12345
    return depth


def raw_sample(
    data: Path, idx: str, mask: np.ndarray | None = None, types: dict[str, np.ndarray] | None = None
) -> None:
    data.mkdir(parents=True, exist_ok=True)
    write_png(data / f"{idx}_depth.png", depth_png())
    (data / f"{idx}_info_depth.yaml").write_text(
        yaml.safe_dump({"normalization": {"min": DEPTH_MIN, "max": DEPTH_MAX}})
    )
    np.savetxt(data / f"{idx}_pose.txt", POSE)
    for k in range(6):
        write_png(data / f"{idx}_image_{k}.png", rgb_image(EH, EW, value=10 * k))
    write_png(data / f"{idx}_normals.png", np.full((EH, EW, 3), 128, np.uint8))
    (data / f"{idx}_metadata.yaml").write_text("anomalous: 0\n")
    (data / f"{idx}_object_params.yaml").write_text("seed: 1\n")
    if mask is not None:
        write_png(data / f"{idx}_mask.png", mask)
    for name, m in (types or {}).items():
        write_png(data / f"{idx}_{name}_mask.png", m)


@pytest.fixture(scope="module")
def eye_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("eyecandies")
    zero = np.zeros((EH, EW), np.uint8)
    spot = zero.copy()
    spot[2, 3] = 255
    other = zero.copy()
    other[3, 3] = 255
    cane = root / "CandyCane"
    types_07 = {"bumps": spot, "dents": other, "colors": zero, "normals": zero}
    raw_sample(cane / "test_public" / "data", "07", mask=np.maximum(spot, other), types=types_07)
    raw_sample(cane / "test_public" / "data", "08", mask=zero, types=dict.fromkeys(types_07, zero))
    raw_sample(cane / "test_public" / "data", "09", mask=spot)  # no per-type masks
    raw_sample(cane / "train" / "data", "000", mask=zero)
    raw_sample(cane / "train" / "data", "001", mask=zero)
    raw_sample(cane / "test_private" / "data", "123")
    (cane / "test_public" / "data" / "README.md").write_text("not a sample")
    (cane / "test_public" / "data" / "._07_depth.png").write_bytes(b"junk")

    bear = root / "GummyBear"  # the converted MVTec-style tree, in the same root
    bg = np.array([0.25, -0.5, 2.0], np.float32)
    xyz = np.broadcast_to(bg, (EH, EW, 3)).copy()
    xyz[1:4, 2:6] = grid_xyz(EH, EW, offset=100.0)[1:4, 2:6]
    gt = np.zeros((EH, EW), np.uint8)
    gt[2, 2] = 255
    for split, defect in (("train", "good"), ("test", "good"), ("test", "bad")):
        d = bear / split / defect
        write_xyz(d / "xyz" / "000.tiff", xyz)
        write_png(d / "rgb" / "000.png", rgb_image(EH, EW))
        if split == "test":
            write_png(d / "gt" / "000.png", gt if defect == "bad" else np.zeros_like(gt))
    return root


def test_eyecandies_index_both_layouts(eye_root: Path) -> None:
    refs = EyecandiesLoader().index(eye_root, None, None)
    by_id = {r.id: r for r in refs}
    assert [r.id for r in refs] == [
        "CandyCane/test_private/123",
        "CandyCane/test_public/07",
        "CandyCane/test_public/08",
        "CandyCane/test_public/09",
        "CandyCane/train/000",
        "CandyCane/train/001",
        "GummyBear/test/bad/000",
        "GummyBear/test/good/000",
        "GummyBear/train/good/000",
    ]
    labels = {i: (r.label, r.defect) for i, r in by_id.items()}
    assert labels["CandyCane/test_public/07"] == (1, "bumps+dents")
    assert labels["CandyCane/test_public/08"] == (0, "good")
    assert labels["CandyCane/test_public/09"] == (1, "anomalous")
    assert labels["CandyCane/train/000"] == (0, "good")
    assert labels["CandyCane/test_private/123"] == (-1, "unknown")
    assert labels["GummyBear/test/bad/000"] == (1, "bad")
    ref = by_id["CandyCane/test_public/07"]
    data = eye_root / "CandyCane" / "test_public" / "data"
    assert ref.source == str(data / "07_depth.png")
    assert ref.files["rgb"] == str(data / "07_image_0.png")
    assert ref.files["mask"] == str(data / "07_mask.png")
    assert "mask" not in by_id["CandyCane/test_private/123"].files


def test_eyecandies_index_selection_and_errors(eye_root: Path) -> None:
    loader = EyecandiesLoader()
    assert [r.id for r in loader.index(eye_root, ["CandyCane"], ["train"])] == [
        "CandyCane/train/000",
        "CandyCane/train/001",
    ]
    with pytest.raises(CatalogError, match="'val'"):
        loader.index(eye_root, ["CandyCane"], ["val"])
    with pytest.raises(CatalogError, match="'Lollipop'"):
        loader.index(eye_root, ["Lollipop"], None)


def expected_world(v: int, u: int, png: int, inverse: bool) -> list[float]:
    """Hand back-projection of one pixel, written out for the 90°-about-z pose."""
    d = png / 1000.0
    x, y, z = d * (u - EW / 2) / FOCAL_PX, d * (v - EH / 2) / FOCAL_PX, d
    if inverse:  # R^T (X - t)
        return [y - 2.0, -(x - 1.0), z - 3.0]
    return [-y + 1.0, x + 2.0, z + 3.0]  # R X + t


@pytest.mark.parametrize("inverse", [False, True])
def test_eyecandies_back_projection(eye_root: Path, inverse: bool) -> None:
    loader = EyecandiesLoader(pose="inverse" if inverse else "toolkit")
    ref = next(r for r in loader.index(eye_root, ["CandyCane"], None) if r.id.endswith("/07"))
    s = loader.load(ref)
    assert s.grid_shape == (EH, EW) and s.points.shape == (EH * EW, 3)
    np.testing.assert_array_equal(s.grid, np.arange(EH * EW, dtype=np.int32))
    for v, u, png in ((0, 0, 2000), (1, 2, 1500), (5, 7, 40000), (4, 4, 12345), (3, 4, 1000)):
        np.testing.assert_allclose(s.points[v * EW + u], expected_world(v, u, png, inverse), atol=1e-5)
    # the principal point (row 3, column 4) sits on the optical axis
    cam_centre = [1.0, 2.0, 4.0] if not inverse else [-2.0, 1.0, -2.0]
    np.testing.assert_allclose(s.points[3 * EW + 4], cam_centre, atol=1e-6)
    assert np.flatnonzero(s.labels).tolist() == [2 * EW + 3, 3 * EW + 3]
    np.testing.assert_array_equal(s.rgb[1 * EW + 2], [2, 1, 0])


def test_eyecandies_toolkit_and_inverse_differ(eye_root: Path) -> None:
    refs = EyecandiesLoader().index(eye_root, ["CandyCane"], ["train"])
    a = EyecandiesLoader().load(refs[0]).points
    b = EyecandiesLoader(pose="inverse").load(refs[0]).points
    assert not np.allclose(a, b)
    # inverse(pose) applied to the toolkit's world points gives back the camera points
    homog = np.c_[a.astype(np.float64), np.ones(len(a))] @ np.linalg.inv(POSE).T
    assert math.isclose(float(homog[0, 2]), 2.0, abs_tol=1e-5)  # depth of pixel (0, 0)


def test_eyecandies_three_digit_split_and_rgb_option(eye_root: Path) -> None:
    loader = EyecandiesLoader(rgb="image_3")
    ref = loader.index(eye_root, ["CandyCane"], ["train"])[1]
    assert ref.id == "CandyCane/train/001"
    assert ref.files["rgb"].endswith("001_image_3.png")
    s = loader.load(ref)
    assert s.rgb[EW + 2].tolist() == [2, 1, 30]
    assert not s.labels.any()


def test_eyecandies_test_private_is_unknown(eye_root: Path) -> None:
    loader = EyecandiesLoader()
    (ref,) = loader.index(eye_root, ["CandyCane"], ["test_private"])
    assert (ref.label, ref.defect) == (-1, "unknown")
    s = loader.load(ref)
    assert s.labels.shape == (EH * EW,) and not s.labels.any()


def test_eyecandies_converted_background_becomes_missing(eye_root: Path) -> None:
    loader = EyecandiesLoader()
    (ref,) = loader.index(eye_root, ["GummyBear"], ["test"])[:1]
    assert ref.id == "GummyBear/test/bad/000"
    s = loader.load(ref)
    pts = s.points.reshape(EH, EW, 3)
    assert (pts[0] == 0).all() and (pts[:, 0] == 0).all() and (pts[4:] == 0).all()
    np.testing.assert_array_equal(pts[2, 3], [3, 2, 100 + 2 * EW + 3])
    assert np.flatnonzero(s.labels).tolist() == [2 * EW + 2]


def test_eyecandies_converted_without_dominant_value_is_untouched(tmp_path: Path) -> None:
    d = tmp_path / "Confetto" / "test" / "good"
    write_xyz(d / "xyz" / "000.tiff", grid_xyz(EH, EW, offset=5.0))
    write_png(d / "rgb" / "000.png", rgb_image(EH, EW))
    loader = EyecandiesLoader()
    (ref,) = loader.index(tmp_path, None, None)
    np.testing.assert_array_equal(loader.load(ref).points, grid_xyz(EH, EW, offset=5.0).reshape(-1, 3))


def test_eyecandies_broken_raw_inputs(tmp_path: Path) -> None:
    data = tmp_path / "Lollipop" / "val" / "data"
    zero = np.zeros((EH, EW), np.uint8)
    for idx in ("00", "01", "02", "03", "04"):
        raw_sample(data, idx, mask=zero)
    write_png(data / "00_image_0.png", rgb_image(EH + 1, EW))
    write_png(data / "01_depth.png", np.full((EH, EW), 7, np.uint8))  # 8-bit depth
    (data / "02_pose.txt").unlink()
    (data / "03_mask.png").write_bytes(b"not a png")
    (data / "04_info_depth.yaml").write_text("normalization: {min: 0}\n")
    loader = EyecandiesLoader()
    refs = {r.id[-2:]: r for r in loader.index(tmp_path, None, None)}
    with pytest.raises(SampleError, match=f"rgb is {EH + 1}×{EW}") as exc:
        loader.load(refs["00"])
    assert exc.value.path == str(data / "00_image_0.png")
    with pytest.raises(SampleError, match="16-bit") as exc:
        loader.load(refs["01"])
    assert exc.value.path == str(data / "01_depth.png")
    with pytest.raises(SampleError, match="pose txt missing") as exc:
        loader.load(refs["02"])
    assert exc.value.path == str(data / "02_pose.txt")
    assert (refs["03"].label, refs["03"].defect) == (-1, "unknown")
    with pytest.raises(SampleError, match="cannot read mask png") as exc:
        loader.load(refs["03"])
    assert exc.value.path == str(data / "03_mask.png")
    with pytest.raises(SampleError, match="normalization") as exc:
        loader.load(refs["04"])
    assert exc.value.path == str(data / "04_info_depth.yaml")


def test_eyecandies_bad_options() -> None:
    with pytest.raises(CatalogError, match="pose"):
        EyecandiesLoader(pose="camera")
    with pytest.raises(CatalogError, match="rgb"):
        EyecandiesLoader(rgb="image_9")


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
