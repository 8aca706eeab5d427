"""Real3D-AD and loose-files loaders, on small trees written in their real on-disk layouts."""

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

EMPTY_PCD = (
    "# .PCD v0.7 - Point Cloud Data file format\nVERSION 0.7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\n"
    "COUNT 1 1 1\nWIDTH 0\nHEIGHT 1\nVIEWPOINT 0 0 0 1 0 0 0\nPOINTS 0\nDATA ascii\n"
)


def cloud(n: int, seed: int) -> np.ndarray:
    return np.round(np.random.default_rng(seed).normal(size=(n, 3)) * 10, 6)


def write_pcd(path: Path, points: np.ndarray, ascii: bool = True, colors: np.ndarray | None = None) -> Path:
    pcd = o3d.geometry.PointCloud()
    pcd.points = o3d.utility.Vector3dVector(points.astype(np.float64))
    if colors is not None:
        pcd.colors = o3d.utility.Vector3dVector(colors / 255.0)
    path.parent.mkdir(parents=True, exist_ok=True)
    assert o3d.io.write_point_cloud(str(path), pcd, write_ascii=ascii)
    return path


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


# ---------------------------------------------------------------------------------------- loose files
BOX_EXTENTS = np.array([2.0, 4.0, 6.0])
RGB = np.random.default_rng(7).integers(0, 256, size=(120, 3))


@pytest.fixture(scope="module")
def files_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("files")
    write_pcd(root / "cloud.ply", cloud(120, 30), colors=RGB)
    write_pcd(root / "scans" / "scan.PCD", cloud(150, 31), ascii=False)
    parts = root / "parts"
    parts.mkdir()
    np.save(parts / "xyz.npy", cloud(100, 32))
    np.save(parts / "xyzl.npy", np.column_stack([cloud(100, 33), np.arange(100) % 2]))
    np.save(parts / "xyzrgb01.npy", np.column_stack([cloud(100, 34), RGB[:100] / 255.0]))
    np.save(parts / "xyzrgb255.npy", np.column_stack([cloud(100, 35), RGB[:100]]))
    (root / "meshes").mkdir()
    trimesh.creation.box(extents=BOX_EXTENTS).export(root / "meshes" / "box.stl")
    trimesh.creation.box(extents=BOX_EXTENTS).export(root / "meshes" / "box_faces.ply")
    (root / ".cache").mkdir()
    np.save(root / ".cache" / "hidden.npy", cloud(5, 0))
    np.save(root / ".hidden.npy", cloud(5, 0))
    (root / "notes.txt").write_text("ignored\n")
    return root


def test_files_index(files_root: Path) -> None:
    refs = FilesLoader().index(files_root, None, None)
    assert [(r.id, r.cls) for r in refs] == [
        ("cloud", "default"),
        ("meshes/box", "meshes"),
        ("meshes/box_faces", "meshes"),
        ("parts/xyz", "parts"),
        ("parts/xyzl", "parts"),
        ("parts/xyzrgb01", "parts"),
        ("parts/xyzrgb255", "parts"),
        ("scans/scan", "scans"),
    ]
    assert {(r.split, r.defect, r.label) for r in refs} == {("test", "unknown", -1)}
    assert [r.id for r in FilesLoader().index(files_root, ["scans"], ["test"])] == ["scans/scan"]
    with pytest.raises(CatalogError, match="'nope'"):
        FilesLoader().index(files_root, ["nope"], None)
    with pytest.raises(CatalogError, match="'train'"):
        FilesLoader().index(files_root, None, ["train"])


def load_id(loader: FilesLoader, root: Path, sample_id: str):
    return loader.load(next(r for r in loader.index(root, None, None) if r.id == sample_id))


def test_files_clouds(files_root: Path) -> None:
    loader = FilesLoader()
    ply = load_id(loader, files_root, "cloud")
    np.testing.assert_allclose(ply.points, cloud(120, 30), atol=1e-3)  # Open3D's ASCII PLY keeps 6 digits
    np.testing.assert_array_equal(ply.rgb, RGB)
    assert ply.rgb.dtype == np.uint8 and not ply.labels.any()
    pcd = load_id(loader, files_root, "scans/scan")
    np.testing.assert_array_equal(pcd.points, cloud(150, 31).astype(np.float32))
    assert pcd.rgb is None and pcd.labels.shape == (150,)


def test_files_npy_variants(files_root: Path) -> None:
    loader = FilesLoader()
    xyz = load_id(loader, files_root, "parts/xyz")
    np.testing.assert_array_equal(xyz.points, cloud(100, 32).astype(np.float32))
    assert xyz.rgb is None and not xyz.labels.any()
    xyzl = load_id(loader, files_root, "parts/xyzl")
    assert xyzl.labels.tolist() == (np.arange(100) % 2).tolist()
    for name in ("parts/xyzrgb01", "parts/xyzrgb255"):
        sample = load_id(loader, files_root, name)
        assert sample.rgb.dtype == np.uint8
        np.testing.assert_array_equal(sample.rgb, RGB[:100])


@pytest.mark.parametrize("sample_id", ["meshes/box", "meshes/box_faces"])
def test_files_mesh_sampled_on_the_surface(files_root: Path, sample_id: str) -> None:
    loader = FilesLoader(mesh_points=600, seed=1)
    sample = load_id(loader, files_root, sample_id)
    assert sample.points.shape == (600, 3) and sample.points.dtype == np.float32
    ratio = np.abs(sample.points) / (BOX_EXTENTS / 2)
    assert np.all(ratio <= 1 + 1e-6)
    assert np.all(np.isclose(ratio.max(axis=1), 1.0, atol=1e-6))  # each point on a face
    again = load_id(FilesLoader(mesh_points=600, seed=1), files_root, sample_id)
    np.testing.assert_array_equal(sample.points, again.points)
    other = load_id(FilesLoader(mesh_points=600, seed=2), files_root, sample_id)
    assert not np.array_equal(sample.points, other.points)


@pytest.mark.parametrize(
    ("array", "problem"),
    [
        (np.zeros((10, 5)), r"expected a numeric array \(n, 3\), \(n, 4\) or \(n, 6\), got \(10, 5\)"),
        (np.zeros(30), r"got \(30,\)"),
        (np.zeros((0, 3)), "empty point cloud"),
    ],
)
def test_files_bad_npy(tmp_path: Path, array: np.ndarray, problem: str) -> None:
    np.save(tmp_path / "bad.npy", array)
    loader = FilesLoader()
    (ref,) = loader.index(tmp_path, None, None)
    with pytest.raises(SampleError, match=problem) as info:
        loader.load(ref)
    assert str(tmp_path / "bad.npy") in str(info.value)


@pytest.mark.parametrize("name", ["broken.stl", "broken.npy", "broken.ply", "broken.pcd", "broken.off"])
def test_files_unreadable_file_names_it(tmp_path: Path, name: str) -> None:
    (tmp_path / name).write_bytes(b"\x00\x01garbage" * 3)
    loader = FilesLoader()
    (ref,) = loader.index(tmp_path, None, None)
    with pytest.raises(SampleError) as info:
        loader.load(ref)
    assert str(tmp_path / name) in str(info.value)


def test_files_root_errors(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="no point-cloud or mesh files"):
        FilesLoader().index(tmp_path, None, None)
    with pytest.raises(CatalogError, match="no such file"):
        FilesLoader().index(tmp_path / "nowhere", None, None)
    np.save(tmp_path / "a.npy", cloud(5, 0))
    write_pcd(tmp_path / "a.pcd", cloud(5, 0))
    with pytest.raises(CatalogError, match="share the id 'a'"):
        FilesLoader().index(tmp_path, None, None)
    (ref,) = FilesLoader().index(tmp_path / "a.npy", None, None)  # a single file as the root
    assert (ref.id, ref.cls) == ("a", "default")


def _ply(fmt: str, n: int, body: bytes) -> bytes:
    props = "".join(f"property float {c}\n" for c in "xyz")
    return f"ply\nformat {fmt} 1.0\nelement vertex {n}\n{props}end_header\n".encode() + body


@pytest.mark.parametrize(("content", "problem"), [
    (_ply("binary_little_endian", 100, np.zeros((40, 3), "<f4").tobytes()),
     "announces 1200 bytes of data, the file holds 480"),
    (_ply("ascii", 5, b"1 2 3\n4 5 6\n"), "announces 5 rows, the file holds 2"),
])
def test_files_truncated_ply_is_refused_not_zero_padded(tmp_path: Path, content: bytes, problem: str) -> None:
    """Open3D pads a truncated PLY with zeros; the loader must refuse it, naming the file."""
    path = tmp_path / "cut.ply"
    path.write_bytes(content)
    loader = FilesLoader()
    with pytest.raises(SampleError, match=problem) as info:
        loader.load(loader.index(path, None, None)[0])
    assert info.value.path == str(path)
    whole = tmp_path / "whole.ply"
    whole.write_bytes(_ply("binary_little_endian", 40, np.ones((40, 3), "<f4").tobytes()))
    assert loader.load(loader.index(whole, None, None)[0]).points.shape == (40, 3)


def test_files_labels_csv_makes_a_labelled_dataset(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    (tmp_path / "bolt").mkdir()
    cloud = np.concatenate([rng.random((50, 3)), (rng.random((50, 1)) < 0.1)], axis=1).astype(np.float32)
    np.save(tmp_path / "bolt" / "a.npy", cloud)
    np.save(tmp_path / "bolt" / "b.npy", cloud[:, :3])
    np.save(tmp_path / "c.npy", cloud[:, :3])
    (tmp_path / "labels.csv").write_text("id,label,defect\nbolt/a.npy,1,scratch\nbolt/b,0,\n")
    loader = FilesLoader()
    refs = {r.id: r for r in loader.index(tmp_path, None, None)}
    assert (refs["bolt/a"].label, refs["bolt/a"].defect) == (1, "scratch")
    assert (refs["bolt/b"].label, refs["bolt/b"].defect) == (0, "good")
    assert refs["c"].label == -1  # not listed: unlabelled
    sample = loader.load(refs["bolt/a"])
    np.testing.assert_array_equal(sample.labels, (cloud[:, 3] > 0).astype(np.uint8))


@pytest.mark.parametrize(("text", "problem"), [
    ("name,label\nbolt/a,1\n", "columns id,label"),
    ("id,label\nbolt/a,2\n", r"labels.csv:2: label must be 0 \(good\) or 1"),
    ("id,label\nbolt/a,1\nbolt/a.npy,0\n", "labels.csv:3: id 'bolt/a' is listed twice"),
    ("id,label\nbolt/zz,1\n", r"ids with no file under the root: \['bolt/zz'\]"),
])
def test_files_labels_csv_errors_name_the_line(tmp_path: Path, text: str, problem: str) -> None:
    (tmp_path / "bolt").mkdir()
    np.save(tmp_path / "bolt" / "a.npy", np.random.default_rng(1).random((20, 3)).astype(np.float32))
    (tmp_path / "labels.csv").write_text(text)
    with pytest.raises(CatalogError, match=problem):
        FilesLoader().index(tmp_path, None, None)
