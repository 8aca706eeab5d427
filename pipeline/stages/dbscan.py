"""DBSCAN labels identical to Open3D's `cluster_dbscan`, found through a grid of cells.

Why our own: at scan resolution (MVTec 3D-AD's 800 x 800 grids, about 0.17 mm between points) a
6 mm radius holds about 3,800 points, and Open3D stores every point's whole neighbourhood and walks
them all: 19.5 s and about 3 GB for one scan, nearly all of `clean`. The labels are fixed by three
facts, which need far less work (`bench/dbscan.py`: 0.13 s; `tests/unit/test_dbscan.py` checks them
against Open3D's labels):

- *core* points have at least `min_points` points (themselves included) at squared distance
  < eps^2, the sum (dx^2 + dy^2) + dz^2 in float64, as Open3D's k-d tree computes it;
- clusters are the groups of core points joined by such distances, numbered in the order of their
  lowest point index (Open3D's loop seeds a cluster at the first unlabelled core point);
- a non-core point within eps of core points joins the lowest-numbered of their clusters (the first
  expansion that reaches it), else it is noise (-1).

Cells have side eps / 2 (a hair more), so the points of one cell are all within eps of each
other: a cell with `min_points` points holds only core points, and the core points of a cell are
all in one cluster.
Only the points of sparser cells are asked for their neighbours (pykdtree, k = `min_points`), and
two cells' clusters are joined when some pair of their core points is within eps (a compiled loop
that stops at the first pair); cells 3 or more apart along an axis are too far for any pair.
"""

from __future__ import annotations

import itertools

import numpy as np
from pykdtree.kdtree import KDTree
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from ..compiled import compiled

#: Cells have side eps / 2, widened by this factor so that rounding in the cell number cannot put
#: two points within eps into cells 3 apart (up to 1e9 cells along an axis: then Open3D is called):
#: cells 3 apart along an axis are more than eps apart, and one cell's points are within 0.87 eps.
_SIDE = 0.5 * (1 + 1e-6)
#: Offsets of the cells that may hold a point within eps of a cell's points; one of each +/- pair.
_OFFSETS = np.array([o for o in itertools.product(range(-2, 3), repeat=3) if o > (0, 0, 0)], np.int64)


def dbscan_labels(xyz: np.ndarray, eps: float, min_points: int) -> np.ndarray:
    """(n,) int64: Open3D's `cluster_dbscan(eps, min_points)` labels of `xyz`, -1 for noise."""
    points = np.ascontiguousarray(np.asarray(xyz, np.float64))
    n, eps2 = len(points), float(eps) * float(eps)
    labels = np.full(n, -1, np.int64)
    if n == 0 or min_points > n:  # nobody can have min_points neighbours
        return labels
    span = (points.max(axis=0) - points.min(axis=0)) / (float(eps) * _SIDE) + 5
    # cells beyond one int64 key, or so many along an axis that rounding could blur a cell's edge
    if not np.isfinite(span).all() or float(np.prod(span)) >= 2.0**62 or float(span.max()) >= 1e9:
        return open3d_labels(points, eps, min_points)
    ijk = np.floor((points - points.min(axis=0)) / (float(eps) * _SIDE)).astype(np.int64)
    cell_of, cell_size = np.unique(_cell_keys(ijk, ijk.max(axis=0)), return_inverse=True, return_counts=True)[1:]
    cell_of = cell_of.reshape(-1)
    core = cell_size[cell_of] >= min_points
    sparse = np.flatnonzero(~core)  # points of cells too small to tell: ask for their neighbours
    near_d2, near_idx = np.zeros((0, min_points)), np.zeros((0, min_points), np.int64)
    if len(sparse):
        near_d2, near_idx = KDTree(points).query(points[sparse], k=min_points, sqr_dists=True)
        near_d2 = near_d2.reshape(len(sparse), min_points)
        near_idx = near_idx.reshape(len(sparse), min_points).astype(np.int64)
        core[sparse] = near_d2[:, -1] < eps2
    core_idx = np.flatnonzero(core)
    if len(core_idx) == 0:
        return labels
    group = _core_groups(points[core_idx], ijk[core_idx], cell_of[core_idx], eps2)
    seed = np.full(group.max() + 1, n, np.int64)
    np.minimum.at(seed, group, core_idx)
    rank = np.empty(len(seed), np.int64)
    rank[np.argsort(seed)] = np.arange(len(seed))  # clusters numbered by their lowest core point
    labels[core_idx] = rank[group]
    border = ~core[sparse]
    if border.any():  # fewer than min_points neighbours: its query returned all of them
        idx, d2 = near_idx[border], near_d2[border]
        joins = (d2 < eps2) & core[idx]
        first = np.where(joins, labels[idx], np.iinfo(np.int64).max).min(axis=1)
        labels[sparse[border]] = np.where(joins.any(axis=1), first, -1)
    return labels


def open3d_labels(xyz: np.ndarray, eps: float, min_points: int) -> np.ndarray:
    """Open3D's own `cluster_dbscan` labels, int64.

    The reference for the tests and `bench/dbscan.py`, and the way out for a cloud spanning more
    cells than one int64 can number.
    """
    import open3d as o3d

    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(np.asarray(xyz, np.float64)))
    return np.asarray(cloud.cluster_dbscan(eps=float(eps), min_points=int(min_points)), np.int64)


def _cell_keys(ijk: np.ndarray, top: np.ndarray) -> np.ndarray:
    """One int64 per cell of integer coordinates `ijk` in [-2, top + 2] (offsets stay in range)."""
    dims = top + 5
    shifted = ijk + 2
    return (shifted[:, 0] * dims[1] + shifted[:, 1]) * dims[2] + shifted[:, 2]


def _core_groups(points: np.ndarray, ijk: np.ndarray, cell_of: np.ndarray, eps2: float) -> np.ndarray:
    """Group number of each core point: core points within eps of each other, joined transitively.

    The core points of a cell are one group already; two cells join when `_pairs_touch` finds a
    pair within eps, and `connected_components` joins the chains.
    """
    order = np.argsort(cell_of, kind="stable")
    cells, start, count = np.unique(cell_of[order], return_index=True, return_counts=True)
    corner, top = ijk[order[start]], ijk.max(axis=0)
    key = _cell_keys(corner, top)  # ascending: cell numbers come from sorted keys
    pair_a, pair_b = [], []
    for off in _OFFSETS:
        other = _cell_keys(corner + off, top)
        at = np.minimum(np.searchsorted(key, other), len(key) - 1)
        hit = np.flatnonzero(key[at] == other)
        pair_a.append(hit)
        pair_b.append(at[hit])
    a, b = np.concatenate(pair_a), np.concatenate(pair_b)
    touch = _pairs_touch(np.ascontiguousarray(points[order]), start, count, a, b, eps2)
    graph = coo_matrix((np.ones(int(touch.sum()), np.int8), (a[touch], b[touch])), shape=(len(cells),) * 2)
    component = connected_components(graph, directed=False)[1]
    cell_group = np.empty(int(cell_of.max()) + 1, np.int64)
    cell_group[cells] = component
    return cell_group[cell_of]


@compiled
def _pairs_touch(points: np.ndarray, start: np.ndarray, count: np.ndarray, pair_a: np.ndarray,
                 pair_b: np.ndarray, eps2: float) -> np.ndarray:
    """(pairs,) bool: some point of cell pair_a[p] is within eps of some point of cell pair_b[p].

    Cells are runs `start[c] : start[c] + count[c]` of `points`; the squared distance is summed in
    Open3D's order, so a pair exactly at eps counts as it does there.
    """
    out = np.zeros(len(pair_a), np.bool_)
    for p in range(len(pair_a)):
        a0, a1 = start[pair_a[p]], start[pair_a[p]] + count[pair_a[p]]
        b0, b1 = start[pair_b[p]], start[pair_b[p]] + count[pair_b[p]]
        for i in range(a0, a1):
            x, y, z = points[i, 0], points[i, 1], points[i, 2]
            for j in range(b0, b1):
                dx, dy, dz = x - points[j, 0], y - points[j, 1], z - points[j, 2]
                if dx * dx + dy * dy + dz * dz < eps2:
                    out[p] = True
                    break
            if out[p]:
                break
    return out
