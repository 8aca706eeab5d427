"""`dbscan_labels` gives Open3D's `cluster_dbscan` labels, to the label, on the clouds clean meets.

Open3D is the reference (clean used it until 0.9): random blobs of every density, a dense scan
with parts, a bridge, border points and noise, pairs within an ulp of eps, and the edge cases.
The border rule is also checked on a case worked by hand.
"""

from __future__ import annotations

import numpy as np
import pytest

from pointad_pipe.pipeline.stages import dbscan
from pointad_pipe.pipeline.stages.dbscan import dbscan_labels, open3d_labels


@pytest.mark.parametrize("seed", range(40))
def test_labels_are_open3d_labels_on_random_blobs(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, blobs = int(rng.integers(1, 2500)), int(rng.integers(1, 6))
    centres = rng.uniform(0, 1, (blobs, 3))
    xyz = (centres[rng.integers(0, blobs, n)] + rng.normal(0, rng.uniform(0.01, 0.2), (n, 3))).astype(np.float32)
    eps, min_points = float(rng.uniform(0.01, 0.2)), int(rng.integers(1, 40))
    np.testing.assert_array_equal(dbscan_labels(xyz, eps, min_points), open3d_labels(xyz, eps, min_points))


def test_labels_are_open3d_labels_on_a_dense_scan_with_parts_border_and_noise() -> None:
    """Scan-like density (hundreds of points within eps): two plates, a thin bridge, a loose part, noise."""
    rng = np.random.default_rng(7)
    eps, min_points, step = 0.006, 30, 0.0004
    g = np.arange(0, 0.03, step)
    plate = np.stack(np.meshgrid(g, g, [0.0]), -1).reshape(-1, 3)
    along = np.arange(0.0302, 0.05, 0.002)
    bridge = np.stack([along, np.full_like(along, 0.015), np.zeros_like(along)], -1)  # sparse: border points
    parts = [plate, plate + [0.05, 0, 0], bridge, plate[::3] + [0, 0.1, 0.02], rng.uniform(-0.05, 0.15, (300, 3))]
    xyz = np.concatenate(parts).astype(np.float32)
    xyz = xyz[rng.permutation(len(xyz))]
    ours = dbscan_labels(xyz, eps, min_points)
    np.testing.assert_array_equal(ours, open3d_labels(xyz, eps, min_points))
    assert ours.max() >= 1 and (ours == -1).any()  # several clusters and some noise: the case means something


def test_a_pair_within_an_ulp_of_eps_counts_as_in_open3d() -> None:
    """Pairs apart by eps times (1 +- 1e-15): neighbours exactly when Open3D's squared distance is < eps^2.

    Half of them lie along an axis, where the two points fall into cells 2 apart.
    """
    rng = np.random.default_rng(1)
    n, eps = 4000, 0.006
    base = np.stack(np.meshgrid(np.arange(80), np.arange(50), [0], indexing="ij"), -1).reshape(-1, 3) * 0.1
    base = base + rng.uniform(0, 0.01, (n, 3))
    towards = rng.normal(size=(n, 3))
    towards[: n // 2] = np.eye(3)[rng.integers(0, 3, n // 2)]  # along an axis: cells 2 apart
    towards /= np.linalg.norm(towards, axis=1, keepdims=True)
    other = base + towards * eps * (1 + rng.uniform(-1e-15, 1e-15, n)[:, None])
    xyz = np.concatenate([base, other])
    ours, theirs = dbscan_labels(xyz, eps, 2), open3d_labels(xyz, eps, 2)
    np.testing.assert_array_equal(ours, theirs)
    assert 0.2 < (theirs[:n] >= 0).mean() < 0.8  # both sides of the boundary are met


def test_a_border_point_joins_the_lowest_numbered_cluster_not_the_nearest() -> None:
    """Worked by hand (eps 0.4, 4 points): two clusters of 4 on a line, and x = 0.66 between them.

    0.66 is within eps of 0.3 (0.36) and of 1.0 (0.34) only: 3 points with itself, so not core.
    Open3D's loop reaches it first from the cluster seeded at index 0 (the left one): label 0.
    """
    x = np.array([0.0, 0.1, 0.2, 0.3, 1.0, 1.1, 1.2, 1.3, 0.66])
    xyz = np.stack([x, np.zeros_like(x), np.zeros_like(x)], -1)
    expected = np.array([0, 0, 0, 0, 1, 1, 1, 1, 0])
    np.testing.assert_array_equal(dbscan_labels(xyz, 0.4, 4), expected)
    np.testing.assert_array_equal(open3d_labels(xyz, 0.4, 4), expected)
    flipped = np.r_[xyz[4:8], xyz[:4], xyz[8:]]  # the right cluster numbered first: it gets the border point
    np.testing.assert_array_equal(dbscan_labels(flipped, 0.4, 4), [0, 0, 0, 0, 1, 1, 1, 1, 0])


@pytest.mark.parametrize(("n", "min_points"), [(0, 5), (3, 5), (1, 1), (5, 5)])
def test_edge_cases_match_open3d(n: int, min_points: int) -> None:
    xyz = np.random.default_rng(n).uniform(0, 0.01, (n, 3))
    ours = dbscan_labels(xyz, 0.05, min_points)
    assert ours.shape == (n,)
    np.testing.assert_array_equal(ours, open3d_labels(xyz, 0.05, min_points))


def test_a_cloud_too_wide_for_cell_keys_goes_to_open3d(monkeypatch: pytest.MonkeyPatch) -> None:
    """eps 3e-7 over a 100 m span: more cells than one int64 numbers, so Open3D's own call answers."""
    rng = np.random.default_rng(3)
    xyz = np.concatenate([rng.uniform(0, 1e-6, (50, 3)), rng.uniform(0, 1e-6, (50, 3)) + 100.0])
    calls = []
    monkeypatch.setattr(dbscan, "open3d_labels", lambda *args: calls.append(args) or open3d_labels(*args))
    labels = dbscan_labels(xyz, 3e-7, 3)
    assert len(calls) == 1 and labels.max() >= 1
    np.testing.assert_array_equal(labels, open3d_labels(xyz, 3e-7, 3))
