"""The Real3D-AD loader, on small trees written in its real on-disk layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

o3d = pytest.importorskip("open3d")
trimesh = pytest.importorskip("trimesh")

from pointad_pipe.pipeline.errors import CatalogError, SampleError  # noqa: E402
from pointad_pipe.pipeline.loaders import get_loader  # noqa: E402
from pointad_pipe.pipeline.loaders.files import FilesLoader  # noqa: E402
from pointad_pipe.pipeline.loaders.real3d import Real3DLoader  # noqa: E402

from ..helpers import cloud, write_pcd  # noqa: E402

EMPTY_PCD = (
    "# .PCD v0.7 - Point Cloud Data file format\nVERSION 0.7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\n"
    "COUNT 1 1 1\nWIDTH 0\nHEIGHT 1\nVIEWPOINT 0 0 0 1 0 0 0\nPOINTS 0\nDATA ascii\n"
)


def write_gt(path: Path, points: np.ndarray, labels: np.ndarray, delimiter: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    table = np.column_stack([points, labels])
    np.savetxt(path, table, fmt=["%.6f", "%.6f", "%.6f", "%d"], delimiter=delimiter)
    return path


# ------------------------------------------------------------------------------------------- Real3D-AD
GT_SPACE = (cloud(300, 1), (np.arange(300) % 37 == 0).astype(int))
GT_COMMA = (cloud(250, 2), (np.arange(250) % 11 == 0).astype(int))
GT_CAPS = (cloud(200, 3), (np.arange(200) < 5).astype(int))


@pytest.fixture(scope="module")
def real3d_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("real3d")
    sea = root / "seahorse"
    write_pcd(sea / "train" / "100_template.pcd", cloud(400, 10), ascii=True)
    write_pcd(sea / "train" / "101_template.pcd", cloud(400, 10), ascii=False)  # same points, binary
    write_pcd(sea / "train" / "._100_template.pcd", cloud(10, 0))  # macOS resource fork: hidden
    write_pcd(sea / "test" / "1_good.pcd", cloud(300, 11))
    write_pcd(sea / "test" / "2_bulge.pcd", cloud(300, 12))
    write_pcd(sea / "test" / "3_sink.pcd", cloud(300, 13))
    write_pcd(sea / "test" / "4_copy.pcd", cloud(300, 14))  # no gt txt
    write_pcd(sea / "test" / "5_bulge_temp.pcd", cloud(300, 15))  # skipped: `temp`
    write_pcd(sea / "test" / "temp.pcd", cloud(300, 16))  # skipped: `temp`
    write_pcd(sea / "test" / ".6_sink.pcd", cloud(300, 17))  # hidden
    (sea / "test" / "notes.txt").write_text("not a cloud\n")
    write_gt(sea / "gt" / "2_bulge.txt", *GT_SPACE, delimiter=" ")
    write_gt(sea / "gt" / "3_sink.txt", *GT_COMMA, delimiter=",")
    shell = root / "shell"
    write_pcd(shell / "train" / "a_template.pcd", cloud(100, 20))
    write_pcd(shell / "test" / "7_cut.pcd", cloud(100, 21))
    write_gt(shell / "GT" / "7_cut.txt", *GT_CAPS, delimiter=" ")
    (root / "readme.txt").write_text("not a class\n")
    (root / "extra").mkdir()  # no train/test: not a class folder
    return root


def test_real3d_index_lists_the_layout(real3d_root: Path) -> None:
    refs = Real3DLoader().index(real3d_root, None, None)
    got = [(r.id, r.cls, r.split, r.defect, r.label) for r in refs]
    assert got == [
        ("seahorse/test/1_good", "seahorse", "test", "good", 0),
        ("seahorse/test/2_bulge", "seahorse", "test", "bulge", 1),
        ("seahorse/test/3_sink", "seahorse", "test", "sink", 1),
        ("seahorse/test/4_copy", "seahorse", "test", "copy", 1),
        ("seahorse/train/100_template", "seahorse", "train", "good", 0),
        ("seahorse/train/101_template", "seahorse", "train", "good", 0),
        ("shell/test/7_cut", "shell", "test", "cut", 1),
        ("shell/train/a_template", "shell", "train", "good", 0),
    ]
    by_id = {r.id: r for r in refs}
    bulge = by_id["seahorse/test/2_bulge"]
    assert bulge.source == str(real3d_root / "seahorse" / "gt" / "2_bulge.txt")
    assert bulge.files == {"pcd": str(real3d_root / "seahorse/test/2_bulge.pcd"), "gt": bulge.source}
    template = by_id["seahorse/train/100_template"]
    assert template.source == template.files["pcd"] == str(real3d_root / "seahorse/train/100_template.pcd")


def test_real3d_filters_classes_and_splits(real3d_root: Path) -> None:
    loader = Real3DLoader()
    refs = loader.index(real3d_root, ["shell"], ["test"])
    assert [r.id for r in refs] == ["shell/test/7_cut"]
    assert [r.id for r in loader.index(real3d_root, "shell", "train")] == ["shell/train/a_template"]


def test_real3d_gt_space_and_comma_delimiters(real3d_root: Path) -> None:
    loader = Real3DLoader()
    refs = {r.id: r for r in loader.index(real3d_root, ["seahorse"], ["test"])}
    for name, (points, labels) in [("2_bulge", GT_SPACE), ("3_sink", GT_COMMA)]:
        sample = loader.load(refs[f"seahorse/test/{name}"])
        assert sample.points.dtype == np.float32 and sample.labels.dtype == np.uint8
        np.testing.assert_array_equal(sample.points, points.astype(np.float32))
        np.testing.assert_array_equal(sample.labels, labels)
        assert sample.rgb is None and sample.grid is None and sample.grid_shape is None
    assert "," in Path(refs["seahorse/test/3_sink"].source).read_text().splitlines()[0]


def test_real3d_gt_folder_in_capitals(real3d_root: Path) -> None:
    loader = Real3DLoader()
    (ref,) = loader.index(real3d_root, ["shell"], ["test"])
    assert ref.source == str(real3d_root / "shell" / "GT" / "7_cut.txt")
    sample = loader.load(ref)
    np.testing.assert_array_equal(sample.points, GT_CAPS[0].astype(np.float32))
    assert sample.labels.sum() == 5


def test_real3d_good_samples_ascii_and_binary_pcd_agree(real3d_root: Path) -> None:
    loader = Real3DLoader()
    refs = {r.id: r for r in loader.index(real3d_root, ["seahorse"], None)}
    ascii_ = loader.load(refs["seahorse/train/100_template"])
    binary = loader.load(refs["seahorse/train/101_template"])
    np.testing.assert_array_equal(ascii_.points, binary.points)
    np.testing.assert_array_equal(binary.points, cloud(400, 10).astype(np.float32))
    assert binary.labels.shape == (400,) and not binary.labels.any()
    good = loader.load(refs["seahorse/test/1_good"])
    np.testing.assert_array_equal(good.points, cloud(300, 11).astype(np.float32))
    assert not good.labels.any()


def test_real3d_missing_gt_names_the_expected_path(real3d_root: Path) -> None:
    loader = Real3DLoader()
    ref = next(r for r in loader.index(real3d_root, ["seahorse"], ["test"]) if r.defect == "copy")
    expected = str(real3d_root / "seahorse" / "gt" / "4_copy.txt")
    with pytest.raises(SampleError, match="not found") as info:
        loader.load(ref)
    assert info.value.path == expected and expected in str(info.value)


def make_ref(source: Path, label: int = 0) -> object:
    from pointad_pipe.pipeline.loaders.base import SampleRef

    role = "gt" if label else "pcd"
    return SampleRef(id="x", cls="c", split="test", defect="good", label=label, source=str(source),
                     files={role: str(source)})


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (EMPTY_PCD.encode(), "empty point cloud"),
        (b"", "empty point cloud"),
        (b"hello world\nthis is not a cloud\n", "not a PCD file"),
        (b"\x89PNG\r\n\x1a\n" + bytes(64), "not a PCD file"),
    ],
    ids=["zero-points", "zero-bytes", "text", "png"],
)
def test_real3d_broken_pcd_names_the_file(tmp_path: Path, content: bytes, problem: str) -> None:
    path = tmp_path / "1_good.pcd"
    path.write_bytes(content)
    with pytest.raises(SampleError, match=problem) as info:
        Real3DLoader().load(make_ref(path))
    assert str(path) in str(info.value)


def test_real3d_non_finite_points_pass_through_unless_all(tmp_path: Path) -> None:
    points = cloud(20, 5)
    points[3] = np.nan
    sample = Real3DLoader().load(make_ref(write_pcd(tmp_path / "some.pcd", points)))
    assert len(sample.points) == 20 and np.isnan(sample.points[3]).all()
    path = write_pcd(tmp_path / "all.pcd", np.full((4, 3), np.nan))
    with pytest.raises(SampleError, match="non-finite") as info:
        Real3DLoader().load(make_ref(path))
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("1 2 3 0\n\n4 5 6 1\n7 8 x 0\n", "line 4: expected numbers"),
        ("1,2,3,0\n4,5,6\n", "line 2: expected 4 columns"),
        ("1 2 3\n4 5 6\n", "expected 4 columns"),
        ("\n\n", "empty point cloud"),
    ],
)
def test_real3d_malformed_gt_txt(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "1_bulge.txt"
    path.write_text(text)
    with pytest.raises(SampleError, match=problem) as info:
        Real3DLoader().load(make_ref(path, label=1))
    assert str(path) in str(info.value)


def test_real3d_gt_labels_are_binarised(tmp_path: Path) -> None:
    path = tmp_path / "1_bulge.txt"
    path.write_text("1 2 3 0\n4 5 6 255\n7 8 9 2\n")
    sample = Real3DLoader().load(make_ref(path, label=1))
    assert sample.labels.tolist() == [0, 1, 1]


def test_real3d_catalog_errors(real3d_root: Path, tmp_path: Path) -> None:
    loader = Real3DLoader()
    with pytest.raises(CatalogError, match="'airplane'") as info:
        loader.index(real3d_root, ["seahorse", "airplane"], None)
    assert str(real3d_root / "airplane") in str(info.value)
    with pytest.raises(CatalogError, match="'validation'") as info:
        loader.index(real3d_root, ["shell"], ["validation"])
    assert str(real3d_root / "shell" / "validation") in str(info.value)
    with pytest.raises(CatalogError) as info:
        loader.index(tmp_path / "nowhere", None, None)
    assert str(tmp_path / "nowhere") in str(info.value)
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "a.pcd").write_text(EMPTY_PCD)
    with pytest.raises(CatalogError, match="no Real3D-AD class folders") as info:
        loader.index(tmp_path / "flat", None, None)
    assert str(tmp_path / "flat") in str(info.value)


def test_registry_builds_both_loaders() -> None:
    assert isinstance(get_loader("real3d"), Real3DLoader)
    files = get_loader("files", {"mesh_points": 500, "seed": 3})
    assert isinstance(files, FilesLoader) and (files.mesh_points, files.seed) == (500, 3)
    assert not files.organized and not files.has_rgb
    with pytest.raises(CatalogError, match="bad loader option"):
        get_loader("real3d", {"mesh_points": 5})
    with pytest.raises(CatalogError, match="mesh_points"):
        get_loader("files", {"mesh_points": 0})
