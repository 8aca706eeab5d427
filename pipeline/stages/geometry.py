"""Small geometric helpers shared by the clean and render stages."""

from __future__ import annotations

import numpy as np
from pykdtree.kdtree import KDTree
from scipy.spatial import cKDTree

from ..ordering import lex_order

SPACING_SAMPLE = 20_000


def unique_rows(xyz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct points and, for every input point, the index of its distinct copy.

    Same result as `np.unique(axis=0, return_inverse=True)`, about 15x faster (`lex_order`),
    which matters because every render calls it.
    """
    x = xyz[:, 0]
    order = lex_order(x, xyz[:, 1], xyz[:, 2])
    if len(x) < 2 or (x[order][1:] != x[order][:-1]).all():  # no two x alike: no two rows alike either
        inverse = np.empty(len(xyz), np.int64)
        inverse[order] = np.arange(len(xyz))
        return xyz[order], inverse
    ordered = xyz[order]
    new = np.r_[True, (ordered[1:] != ordered[:-1]).any(axis=1)]
    inverse = np.empty(len(xyz), np.int64)
    inverse[order] = np.cumsum(new) - 1
    return ordered[new], inverse


def median_spacing(xyz: np.ndarray, seed: int = 0) -> float:
    """Median distance from a point to its nearest *distinct* neighbour.

    Duplicates are removed first: a nearest-neighbour upsampled grid repeats points, and a spacing
    of 0 would make every scale-relative threshold 0. At most `SPACING_SAMPLE` query points are
    used (seeded), which keeps this cheap on 1M-point clouds and deterministic.
    """
    pts = unique_rows(np.asarray(xyz, np.float64))[0]
    if len(pts) < 2:
        return 0.0
    tree = cKDTree(pts)
    query = pts
    if len(pts) > SPACING_SAMPLE:
        query = pts[np.random.default_rng(seed).choice(len(pts), SPACING_SAMPLE, replace=False)]
    dist, _ = tree.query(query, k=2)
    return float(np.median(dist[:, 1]))


def rotation(axis: str, degrees: float) -> np.ndarray:
    """3x3 right-handed rotation about a coordinate axis."""
    t = np.deg2rad(degrees)
    c, s = np.cos(t), np.sin(t)
    if axis == "x":
        return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
    if axis == "y":
        return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    if axis == "z":
        return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    raise ValueError(f"rotation axis must be x, y or z, got {axis!r}")


def knn(tree: KDTree, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(m, k) distances and indices of the k nearest tree points of each query point, nearest first.

    pykdtree, not scipy's cKDTree: the same distances to the bit (a test pins the render maps that
    depend on them) in about half the time, which is most of what a render spends outside its views.
    """
    dist, idx = tree.query(np.ascontiguousarray(query, np.float64), k=k)
    return dist.reshape(len(query), k), idx.reshape(len(query), k).astype(np.int64)


def local_spacing(unique_xyz: np.ndarray, k: int, tree: KDTree | None = None) -> tuple[float, np.ndarray]:
    """Median nearest-neighbour spacing and, per distinct point, the distance to its k-th neighbour.

    The k-th neighbour distance grows where a scan samples a steep surface sparsely, which is where
    a splat sized by the median spacing would leave holes. `tree`: a `KDTree` of `unique_xyz`,
    when the caller queries it again.
    """
    if len(unique_xyz) < 2:
        return 0.0, np.zeros(len(unique_xyz))
    k = min(k, len(unique_xyz) - 1)
    dist, _ = knn(tree or KDTree(unique_xyz), unique_xyz, k + 1)
    return float(np.median(dist[:, 1])), dist[:, k]


def pca_normals(unique_xyz: np.ndarray, neighbours: np.ndarray) -> np.ndarray:
    """(m, 3) unit normals: the least-variance direction of each row of neighbours (indices, (m, k)).

    Our own closed form (the trigonometric eigenvalue of a symmetric 3x3 matrix, then the cross
    product of two rows of C - lambda I): numpy's batched `eigh` takes about 8x as long on 100k
    matrices, and Open3D's `estimate_normals` cannot reuse a neighbour query. Unoriented, like
    Open3D's; (0, 0, 1) where the neighbours span no plane's worth of directions (all equal).
    """
    m = len(neighbours)
    coords = [np.ascontiguousarray(unique_xyz[:, a])[neighbours] for a in range(3)]  # (m, k) each
    coords = [c - c.mean(axis=1, keepdims=True) for c in coords]

    def moment(a: int, b: int) -> np.ndarray:
        return np.einsum("ij,ij->i", coords[a], coords[b])

    c00, c01, c02, c11, c12, c22 = moment(0, 0), moment(0, 1), moment(0, 2), moment(1, 1), moment(1, 2), moment(2, 2)
    q = (c00 + c11 + c22) / 3
    a0, a1, a2 = c00 - q, c11 - q, c22 - q
    p = np.sqrt((a0 * a0 + a1 * a1 + a2 * a2 + 2 * (c01 * c01 + c02 * c02 + c12 * c12)) / 6)
    det = a0 * (a1 * a2 - c12 * c12) - c01 * (c01 * a2 - c12 * c02) + c02 * (c01 * c12 - a1 * c02)
    half_det = np.clip(det / (2 * np.where(p > 0, p, 1.0) ** 3), -1.0, 1.0)
    smallest = q + 2 * p * np.cos(np.arccos(half_det) / 3 + 2 * np.pi / 3)
    m0, m1, m2 = c00 - smallest, c11 - smallest, c22 - smallest
    crosses = np.stack([  # (3 candidates, 3, m): r0 x r1, r0 x r2, r1 x r2 of the rows of C - lambda I
        [c01 * c12 - c02 * m1, c02 * c01 - m0 * c12, m0 * m1 - c01 * c01],
        [c01 * m2 - c02 * c12, c02 * c02 - m0 * m2, m0 * c12 - c01 * c02],
        [m1 * m2 - c12 * c12, c12 * c02 - c01 * m2, c01 * c12 - m1 * c02]])
    sq = np.einsum("cim,cim->cm", crosses, crosses)
    best = sq.argmax(axis=0)  # the best-conditioned pair of rows
    vec, norm = crosses[best, :, np.arange(m)], np.sqrt(sq[best, np.arange(m)])
    out = np.tile([0.0, 0.0, 1.0], (m, 1))
    ok = norm > 0
    out[ok] = vec[ok] / norm[ok, None]
    return out
