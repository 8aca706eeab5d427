"""Scoring one cloud (METHOD.md §6, §8): features -> point map -> smoothing -> global score, RGB fusion.

0. Raw point map: the views' anomaly maps S_a sampled at each point's pixel and averaged over the
   views that see it; a point no view sees takes its nearest seen neighbour's score.

1. Point map A_i = s_a,i (the back-projected anomaly probability, `backproject`), then Gaussian
   smoothing: on the organized grid with sigma = 4 cells and empty cells at 0 (organized data), or
   over 3D neighbours with sigma = 4 x the median point spacing (unorganized data; ours - the code
   filters its arbitrary 336^2 ordering, a quirk we do not copy).
2. Global score = 0.5 * max_i A_i + 0.5 * mean over views of P_a(view) (probabilities, as the code
   does at inference).
3. RGB fusion, no retraining (organized data, on the whole grid as the code does): C = Up(S_a) of the
   RGB image at every pixel, smoothed; fused map = smooth((smooth(A) + smooth(C)) / 2); fused global =
   max over the grid of the fused map + (P_a(rgb) + mean_v P_a(v)) / 2. Organized maxima run over the
   whole smoothed grid (background and holes hold the blur), as the code's do.
One cloud at a time; `score_cloud` chains the steps from one layer's cached features.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.ndimage import gaussian_filter
from scipy.spatial import cKDTree

GRID_SIGMA = 4.0
SPACING_SIGMA = 4.0


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


def lay_on_grid(values: np.ndarray, grid: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Per-point values on their organized grid, (H, W) float64, every other cell 0."""
    canvas = np.zeros(shape[0] * shape[1], np.float64)
    canvas[grid] = values
    return canvas.reshape(shape)


def smooth_whole(grid_map: np.ndarray, sigma: float = GRID_SIGMA) -> np.ndarray:
    """Gaussian filter over the whole grid: the blur leaks into background and holes, as the code's does."""
    return gaussian_filter(np.asarray(grid_map, np.float64), sigma=sigma)


def fuse_maps(point_grid: np.ndarray, rgb_grid: np.ndarray, sigma: float = GRID_SIGMA) -> np.ndarray:
    """gauss((A + C) / 2) over the whole grid, A and C each already smoothed over the whole grid (METHOD §8)."""
    return smooth_whole((point_grid + rgb_grid) / 2, sigma)


def fused_global(fused_map: np.ndarray, rgb_prob: float, view_probs: np.ndarray) -> float:
    """max(fused map) + (P_a(rgb) + mean_v P_a(v)) / 2, as the code combines them."""
    return float(np.max(fused_map) + (rgb_prob + np.mean(view_probs)) / 2)


# ---------------------------------------------------------------- one cloud from cached features


def raw_point_map(patch: Any, pt2pix: np.ndarray, text: Any, grid: tuple[int, int], size: int,
                  xyz: np.ndarray | None = None, tau: float = 0.07) -> np.ndarray:
    """(n,) anomaly probability s_a of every point before smoothing, from (K, P, D) patch tokens.

    Unseen points take their nearest seen neighbour's score when `xyz` is given (else 0).
    """
    import torch

    from .backproject import backproject, fill_unseen
    from .similarity import patch_maps

    with torch.no_grad():
        maps = patch_maps(torch.as_tensor(np.asarray(patch, np.float32))[None], text.detach().cpu(), grid, tau)[0]
        scores, seen = backproject(maps, torch.from_numpy(np.asarray(pt2pix, np.int64)), size)
        if xyz is not None and bool(seen.any()) and not bool(seen.all()):
            scores = fill_unseen(scores, seen, torch.from_numpy(np.asarray(xyz, np.float32)))
    return scores[:, 1].numpy()


RgbInputs = tuple[Any, Any]  # the RGB image's (P, D) patch tokens and (D,) global embedding
MODALITIES = ("point", "fused", "rgb")


def view_maps(patch: Any, text: Any, grid: tuple[int, int], size: int, tau: float = 0.07) -> np.ndarray:
    """(K, size, size) anomaly probability S_a of each view, upsampled as the scores are (for montages)."""
    import torch

    from .backproject import upsample
    from .similarity import patch_maps

    with torch.no_grad():
        maps = patch_maps(torch.as_tensor(np.asarray(patch, np.float32))[None], text.detach().cpu(), grid, tau)[0]
        return upsample(maps, size)[:, 1].numpy()


@dataclass(frozen=True)
class CloudScore:
    """One cloud's final map at its points and, for organized sources, on the whole grid."""

    points: np.ndarray  # (n,) float64
    global_score: float
    grid: np.ndarray | None = None  # (H, W) float64: what the grid metrics and the global max use


def score_cloud(patch: Any, glob: Any, pt2pix: np.ndarray, text: Any, grid: tuple[int, int], size: int,
                xyz: np.ndarray, grid_index: np.ndarray | None = None, grid_shape: tuple[int, int] | None = None,
                spacing: float | None = None, tau: float = 0.07, rgb: RgbInputs | None = None,
                modality: str = "point") -> tuple[np.ndarray, float]:
    """A cloud's final point map and global score; `score_cloud_maps` (same arguments) also gives the grid."""
    scored = score_cloud_maps(patch, glob, pt2pix, text, grid, size, xyz, grid_index, grid_shape, spacing, tau,
                              rgb, modality)
    return scored.points, scored.global_score


def _probabilities(glob: Any, text: Any, tau: float) -> np.ndarray:
    """P_a of each row of `glob` (K, D) against the text features."""
    import torch

    from .similarity import similarity_logits

    with torch.no_grad():
        logits = similarity_logits(torch.as_tensor(np.asarray(glob, np.float32)), text.detach().cpu(), tau)
        return logits.softmax(-1)[..., 1].numpy()


def rgb_grid_map(rgb_patch: Any, text: Any, grid: tuple[int, int], size: int, shape: tuple[int, int],
                 tau: float = 0.07) -> np.ndarray:
    """C: the RGB image's S_a upsampled to every pixel, on the organized grid's shape, before smoothing.

    The render keeps the registered RGB image at `size`² over the same field as the grid, so C is that
    map resized (bilinear) to the grid; at the default 336² grid it is the map itself.
    """
    import torch
    import torch.nn.functional as F  # noqa: N812

    from .backproject import upsample
    from .similarity import patch_maps

    with torch.no_grad():
        maps = patch_maps(torch.as_tensor(np.asarray(rgb_patch, np.float32))[None, None], text.detach().cpu(), grid,
                          tau)[0]
        up = upsample(maps, size)[:, 1:2]  # (1, 1, size, size)
        if tuple(shape) != (size, size):
            up = F.interpolate(up, size=tuple(shape), mode="bilinear", align_corners=False)
        return up[0, 0].numpy().astype(np.float64)


def score_cloud_maps(patch: Any, glob: Any, pt2pix: np.ndarray, text: Any, grid: tuple[int, int], size: int,
                     xyz: np.ndarray, grid_index: np.ndarray | None = None,
                     grid_shape: tuple[int, int] | None = None, spacing: float | None = None, tau: float = 0.07,
                     rgb: RgbInputs | None = None, modality: str = "point") -> CloudScore:
    """A cloud's final map and global score (METHOD.md §6, §8) from one layer's cached features.

    Organized sources follow the authors' code on the whole grid: the point map A (invalid cells 0)
    and the RGB map C are each smoothed over the whole grid, maxima run over the whole grid.

    Args:
        patch: (K, P, D) patch tokens of the scored layer.
        glob: (K, D) global embeddings of the views.
        pt2pix: (n, K) the render's point -> pixel map.
        text: (2, D) normalised text features [g_n, g_a].
        grid: the patch grid (h, w).
        size: the render's image side (also the RGB image's).
        xyz: (n, 3) the cleaned points.
        grid_index: organized sources: each point's flat cell in `grid_shape` (smoothing sigma 4 cells).
        grid_shape: the organized grid's (H, W).
        spacing: unorganized sources: the median point spacing (smoothing sigma = 4 x spacing).
        tau: the similarity temperature.
        rgb: the registered RGB image's scored-layer patch tokens and global embedding; needed by the
            `fused` and `rgb` modalities (organized sources only; C covers the whole grid, not the points).
        modality: `point` (A and its global score), `fused` (A with the RGB map C, no retraining) or
            `rgb` (C alone, the ablation): the three formulas of METHOD.md §8.
    """
    if modality not in MODALITIES:
        raise ValueError(f"modality must be one of {MODALITIES}, got {modality!r}")
    organized = grid_index is not None and grid_shape is not None
    if modality != "point" and (rgb is None or not organized):
        raise ValueError(f"modality {modality!r} needs the RGB image's features and an organized grid")
    amap = raw_point_map(patch, pt2pix, text, grid, size, xyz, tau).astype(np.float64)
    probs = _probabilities(glob, text, tau)
    if not organized:
        if spacing:
            amap = smooth_knn(amap, xyz, SPACING_SIGMA * spacing)
        return CloudScore(amap, global_score(amap, probs))
    a_grid = smooth_whole(lay_on_grid(amap, grid_index, grid_shape))
    if modality == "point":
        final, glob_score = a_grid, global_score(a_grid, probs)
    else:
        c_grid = smooth_whole(rgb_grid_map(rgb[0], text, grid, size, grid_shape, tau))
        rgb_prob = float(_probabilities(np.asarray(rgb[1])[None], text, tau)[0])
        if modality == "fused":
            final = fuse_maps(a_grid, c_grid)
            glob_score = fused_global(final, rgb_prob, probs)
        else:
            final, glob_score = c_grid, float(np.max(c_grid) + rgb_prob)
    return CloudScore(final.reshape(-1)[grid_index], glob_score, final)
