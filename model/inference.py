"""From point maps to the final scores (METHOD.md §8): smoothing, the global score, RGB fusion.

1. Point map A_i = s_a,i (the back-projected anomaly probability, `backproject`), then Gaussian
   smoothing: on the organized grid with sigma = 4 cells and empty cells at 0 (organized data), or
   over 3D neighbours with sigma = 4 x the median point spacing (unorganized data; ours - the code
   filters its arbitrary 336^2 ordering, a quirk we do not copy).
2. Global score = 0.5 * max_i A_i + 0.5 * mean over views of P_a(view) (probabilities, as the code
   does at inference).
3. RGB fusion, no retraining: C = smoothed S_a of the RGB image at each point's pixel; fused map
   = smooth((smooth(A) + smooth(C)) / 2); fused global = max(fused map) + (P_a(rgb) + mean_v P_a(v)) / 2.
Pure numpy/scipy, one cloud at a time.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter
from scipy.spatial import cKDTree

GRID_SIGMA = 4.0
SPACING_SIGMA = 4.0


def smooth_grid(values: np.ndarray, grid: np.ndarray, shape: tuple[int, int], sigma: float = GRID_SIGMA) -> np.ndarray:
    """Gaussian-filter per-point values laid on their organized grid (empty cells 0); read them back."""
    canvas = np.zeros(shape[0] * shape[1], np.float64)
    canvas[grid] = values
    return gaussian_filter(canvas.reshape(shape), sigma=sigma).reshape(-1)[grid]


def smooth_knn(values: np.ndarray, xyz: np.ndarray, sigma: float) -> np.ndarray:
    """Normalised Gaussian average over 3D neighbours within 3 sigma (SciPy KD-tree pairs)."""
    if sigma <= 0 or len(values) < 2:
        return np.asarray(values, np.float64).copy()
    tree = cKDTree(np.asarray(xyz, np.float64))
    pairs = tree.sparse_distance_matrix(tree, 3 * sigma, output_type="ndarray")  # self pairs included
    weights = np.exp(-0.5 * (pairs["v"] / sigma) ** 2)
    n = len(values)
    num = np.bincount(pairs["i"], weights * np.asarray(values, np.float64)[pairs["j"]], minlength=n)
    den = np.bincount(pairs["i"], weights, minlength=n)
    return num / den


def global_score(point_map: np.ndarray, view_probs: np.ndarray) -> float:
    """0.5 * max of the (smoothed) point map + 0.5 * mean of the views' anomaly probabilities."""
    return float(0.5 * np.max(point_map) + 0.5 * np.mean(view_probs))


def fuse_grid(point_map: np.ndarray, rgb_map: np.ndarray, grid: np.ndarray, shape: tuple[int, int],
              sigma: float = GRID_SIGMA) -> np.ndarray:
    """smooth((smooth(A) + smooth(C)) / 2) on the organized grid, A and C per point."""
    a = smooth_grid(point_map, grid, shape, sigma)
    c = smooth_grid(rgb_map, grid, shape, sigma)
    return smooth_grid((a + c) / 2, grid, shape, sigma)


def fused_global(fused_map: np.ndarray, rgb_prob: float, view_probs: np.ndarray) -> float:
    """max(fused map) + (P_a(rgb) + mean_v P_a(v)) / 2, as the code combines them."""
    return float(np.max(fused_map) + (rgb_prob + np.mean(view_probs)) / 2)
