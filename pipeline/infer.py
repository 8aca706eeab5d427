"""Point scores from cached features and text features (METHOD.md §6, before smoothing).

For one cloud: the views' anomaly maps S_a, sampled at each point's pixel and averaged over the
views that see it; a point no view sees takes its nearest seen neighbour's score.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def raw_point_map(patch: Any, pt2pix: np.ndarray, text: Any, grid: tuple[int, int], size: int,
                  xyz: np.ndarray | None = None, tau: float = 0.07) -> np.ndarray:
    """(n,) anomaly probability s_a of every point before smoothing, from (K, P, D) patch tokens.

    Unseen points take their nearest seen neighbour's score when `xyz` is given (else 0).
    """
    import torch

    from ..model.backproject import backproject, fill_unseen
    from ..model.scoring import patch_maps

    with torch.no_grad():
        maps = patch_maps(torch.as_tensor(np.asarray(patch, np.float32))[None], text.detach().cpu(), grid, tau)[0]
        scores, seen = backproject(maps, torch.from_numpy(np.asarray(pt2pix, np.int64)), size)
        if xyz is not None and bool(seen.any()) and not bool(seen.all()):
            scores = fill_unseen(scores, seen, torch.from_numpy(np.asarray(xyz, np.float32)))
    return scores[:, 1].numpy()


def point_scores(item: dict[str, Any], text: Any, grid: tuple[int, int], size: int, tau: float = 0.07,
                 xyz: np.ndarray | None = None) -> np.ndarray:
    """(n,) anomaly score of every point of a `CachedSamples.item`, from its first scored layer."""
    return raw_point_map(item["patch"][:, 0], item["pt2pix"], text, grid, size, xyz, tau)


RgbInputs = tuple[Any, Any, np.ndarray]  # (P, D) patch tokens, (D,) global embedding, (n,) rgb_pix
MODALITIES = ("point", "fused", "rgb")


def view_maps(patch: Any, text: Any, grid: tuple[int, int], size: int, tau: float = 0.07) -> np.ndarray:
    """(K, size, size) anomaly probability S_a of each view, upsampled as the scores are (for montages)."""
    import torch

    from ..model.backproject import upsample
    from ..model.scoring import patch_maps

    with torch.no_grad():
        maps = patch_maps(torch.as_tensor(np.asarray(patch, np.float32))[None], text.detach().cpu(), grid, tau)[0]
        return upsample(maps, size)[:, 1].numpy()


def score_cloud(patch: Any, glob: Any, pt2pix: np.ndarray, text: Any, grid: tuple[int, int], size: int,
                xyz: np.ndarray, grid_index: np.ndarray | None = None, grid_shape: tuple[int, int] | None = None,
                spacing: float | None = None, tau: float = 0.07, rgb: RgbInputs | None = None,
                modality: str = "point") -> tuple[np.ndarray, float]:
    """A cloud's smoothed point map and global score (METHOD.md §6, §8) from one layer's cached features.

    Args:
        patch: (K, P, D) patch tokens of the scored layer.
        glob: (K, D) global embeddings of the views.
        pt2pix: (n, K) the render's point -> pixel map.
        text: (2, D) normalised text features [g_n, g_a].
        grid: the patch grid (h, w).
        size: the render's image side (also the side `rgb_pix` indexes).
        xyz: (n, 3) the cleaned points.
        grid_index: organized sources: each point's flat cell in `grid_shape` (smoothing sigma 4 cells).
        grid_shape: the organized grid's (H, W).
        spacing: unorganized sources: the median point spacing (smoothing sigma = 4 x spacing).
        tau: the similarity temperature.
        rgb: the registered RGB image's scored-layer patch tokens, global embedding and each point's
            pixel; needed by the `fused` and `rgb` modalities (organized sources only).
        modality: `point` (A and its global score), `fused` (A with the RGB map C, no retraining) or
            `rgb` (C alone, the ablation): the three formulas of METHOD.md §8.
    """
    import torch

    from ..model.backproject import sample_at_pixels
    from ..model.inference import (
        GRID_SIGMA,
        SPACING_SIGMA,
        fuse_grid,
        fused_global,
        global_score,
        smooth_grid,
        smooth_knn,
    )
    from ..model.scoring import patch_maps, similarity_logits

    if modality not in MODALITIES:
        raise ValueError(f"modality must be one of {MODALITIES}, got {modality!r}")
    organized = grid_index is not None and grid_shape is not None
    if modality != "point" and (rgb is None or not organized):
        raise ValueError(f"modality {modality!r} needs the RGB image's features and an organized grid")
    amap = raw_point_map(patch, pt2pix, text, grid, size, xyz, tau).astype(np.float64)
    with torch.no_grad():
        t = text.detach().cpu()
        view_probs = similarity_logits(torch.as_tensor(np.asarray(glob, np.float32)), t, tau).softmax(-1)[:, 1]
        if modality != "point":
            rgb_patch, rgb_glob, rgb_pix = rgb
            rmap = patch_maps(torch.as_tensor(np.asarray(rgb_patch, np.float32))[None, None], t, grid, tau)[0, 0]
            c_map = sample_at_pixels(rmap, torch.from_numpy(np.asarray(rgb_pix, np.int64)), size)[:, 1].numpy()
            rgb_prob = float(similarity_logits(torch.as_tensor(np.asarray(rgb_glob, np.float32))[None], t, tau)
                             .softmax(-1)[0, 1])
    probs = view_probs.numpy()
    if modality == "fused":
        fused = fuse_grid(amap, c_map.astype(np.float64), grid_index, grid_shape, GRID_SIGMA)
        return fused, fused_global(fused, rgb_prob, probs)
    if modality == "rgb":
        c_smooth = smooth_grid(c_map.astype(np.float64), grid_index, grid_shape, GRID_SIGMA)
        return c_smooth, float(np.max(c_smooth) + rgb_prob)
    if organized:
        amap = smooth_grid(amap, grid_index, grid_shape, GRID_SIGMA)
    elif spacing:
        amap = smooth_knn(amap, xyz, SPACING_SIGMA * spacing)
    return amap, global_score(amap, probs)
