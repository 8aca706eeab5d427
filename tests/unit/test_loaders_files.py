"""The loose-files (`files` format) loader, on small trees written in its real on-disk layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

o3d = pytest.importorskip("open3d")
trimesh = pytest.importorskip("trimesh")

from pointad_pipe.pipeline.errors import CatalogError, SampleError  # noqa: E402
from pointad_pipe.pipeline.loaders.files import FilesLoader  # noqa: E402

from ..helpers import cloud, write_pcd  # noqa: E402

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
