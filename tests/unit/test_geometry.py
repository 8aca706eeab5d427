"""The render stage's geometric helpers against independent computations (numpy, scipy, Open3D)."""

from __future__ import annotations

import numpy as np
import pytest
from pykdtree.kdtree import KDTree
from scipy.spatial import cKDTree

from pointad_pipe.pipeline.ordering import lex_order
from pointad_pipe.pipeline.stages.geometry import knn, local_spacing, pca_normals, unique_rows


def clouds() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    scattered = rng.normal(size=(2000, 3))
    grid = np.stack(np.meshgrid(np.arange(30.0), np.arange(20.0), [0.0, 1.5]), -1).reshape(-1, 3)
    repeated = np.concatenate([scattered[:500], scattered[100:300], scattered[:50]])  # duplicates
    signed_zero = np.array([[0.0, 1, 2], [-0.0, 1, 2], [0.0, -0.0, 1], [1, 2, 3]])
    return {"scattered": scattered, "grid": grid, "repeated": repeated, "signed zero": signed_zero,
            "same x": np.c_[np.zeros(300), rng.normal(size=(300, 2))], "one": scattered[:1]}


@pytest.mark.parametrize("name", list(clouds()))
def test_unique_rows_is_numpys_unique(name: str) -> None:
    xyz = clouds()[name]
    uniq, inverse = unique_rows(xyz)
    ref, ref_inverse = np.unique(xyz, axis=0, return_inverse=True)
    np.testing.assert_array_equal(uniq, ref)
    np.testing.assert_array_equal(inverse, ref_inverse.reshape(-1))
    np.testing.assert_array_equal(uniq[inverse], xyz)


@pytest.mark.parametrize("depth", [
    np.random.default_rng(1).random(5000),
    np.repeat(np.random.default_rng(2).random(700), 3),  # every depth three times
    np.r_[np.ones(10), np.arange(10.0)],
])
def test_lex_order_of_one_key_is_the_stable_sort(depth: np.ndarray) -> None:
    np.testing.assert_array_equal(lex_order(depth), np.argsort(depth, kind="stable"))


@pytest.mark.parametrize("name", list(clouds()))
def test_lex_order_of_three_keys_is_lexsort(name: str) -> None:
    xyz = clouds()[name]
    np.testing.assert_array_equal(lex_order(xyz[:, 0], xyz[:, 1], xyz[:, 2]), np.lexsort(xyz.T[::-1]))


@pytest.mark.parametrize("name", ["scattered", "grid"])
def test_neighbour_distances_are_scipys_to_the_bit(name: str) -> None:
    """The splat sizes, and so every map, hang on these distances: they must be cKDTree's exactly."""
    uniq = unique_rows(clouds()[name])[0]
    dist, idx = knn(KDTree(uniq), uniq, 6)
    ref_dist, _ = cKDTree(uniq).query(uniq, k=6)
    np.testing.assert_array_equal(dist, ref_dist)
    np.testing.assert_array_equal(np.linalg.norm(uniq[idx] - uniq[:, None], axis=2), dist)
    spacing, kth = local_spacing(uniq, 4)
    assert spacing == np.median(ref_dist[:, 1]) and np.array_equal(kth, ref_dist[:, 4])


def test_pca_normals_are_the_least_variance_eigenvectors() -> None:
    rng = np.random.default_rng(3)
    pts = rng.normal(size=(4000, 3)) * rng.uniform(0.01, 3, size=(1, 3))
    neighbours = rng.integers(0, len(pts), size=(600, 12))
    got = pca_normals(pts, neighbours)
    for row, n in zip(neighbours, got, strict=True):
        w, v = np.linalg.eigh(np.cov(pts[row].T))
        assert abs(abs(n @ v[:, 0]) - 1) < 1e-9
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1, atol=1e-12)


def test_pca_normals_of_a_tilted_plane_and_of_degenerate_neighbourhoods() -> None:
    rng = np.random.default_rng(4)
    uv = rng.normal(size=(200, 2))
    tilt = np.array([0.3, -0.5, 1.0]) / np.linalg.norm([0.3, -0.5, 1.0])
    a = np.cross(tilt, [1, 0, 0])
    a /= np.linalg.norm(a)
    b = np.cross(tilt, a)
    plane = uv[:, :1] * a + uv[:, 1:] * b + 5.0  # exactly planar, off the origin
    n = pca_normals(plane, np.arange(200).reshape(10, 20))
    np.testing.assert_allclose(np.abs(n @ tilt), 1, atol=1e-9)
    same = np.tile([[1.0, 2.0, 3.0]], (16, 1))
    np.testing.assert_array_equal(pca_normals(same, np.arange(16)[None]), [[0, 0, 1]])
    line = np.c_[np.arange(16.0), 2 * np.arange(16.0), np.zeros(16)]  # any normal of the line will do
    n = pca_normals(line, np.arange(16)[None])
    assert abs(n[0] @ [1, 2, 0]) < 1e-9 and abs(np.linalg.norm(n[0]) - 1) < 1e-12


def test_pca_normals_agree_with_open3d() -> None:
    o3d = pytest.importorskip("open3d")
    rng = np.random.default_rng(5)
    t = rng.uniform(0, 2 * np.pi, size=(3000, 2))
    torus = np.c_[(1 + 0.3 * np.cos(t[:, 1])) * np.cos(t[:, 0]), (1 + 0.3 * np.cos(t[:, 1])) * np.sin(t[:, 0]),
                  0.3 * np.sin(t[:, 1])]
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(torus))
    cloud.estimate_normals(o3d.geometry.KDTreeSearchParamKNN(knn=16))
    _, idx = knn(KDTree(torus), torus, 16)
    dots = np.abs(np.sum(pca_normals(torus, idx) * np.asarray(cloud.normals), axis=1))
    assert np.all(dots > 1 - 1e-6), np.sort(dots)[:5]
