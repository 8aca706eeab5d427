"""The Eyecandies loader, raw layout and the MVTec-style conversion, on tiny synthetic trees."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from pointad_pipe.pipeline.errors import CatalogError, SampleError
from pointad_pipe.pipeline.loaders.eyecandies import FOCAL_PX, EyecandiesLoader

from ..helpers import grid_xyz, rgb_image, write_png, write_xyz

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
