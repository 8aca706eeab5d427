"""View maps to point scores through `pt2pix` (METHOD.md §6).

Steps, for one cloud of K views:
1. Up(·) is a bilinear upsample of the h×w patch maps to size² with align_corners=False (§5);
2. instead of building Up(S) we sample S bilinearly at each visible point's pixel centre,
   ((x + 0.5)/size·2 − 1, (y + 0.5)/size·2 − 1), with align_corners=False and border padding:
   only at pixel centres does this equal Up(S)[y, x] exactly;
3. s_i = Σ_v S^(v)[pt2pix[i, v]] · vis[i, v] / max(1, Σ_v vis[i, v]), with vis = pt2pix ≥ 0;
4. a point that no view sees takes the score of its nearest seen point in 3D (our choice; the
   code copies visibility flags from the nearest seen point in grid order).

`pt2pix` (n, K) int: row i is a point of the cleaned cloud, column v a view; the value is the
flat index y·size + x of the point's centre pixel (x right, y down) when visible, −1 otherwise.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from scipy.spatial import cKDTree
from torch import Tensor


def upsample(maps: Tensor, size: int) -> Tensor:
    """Bilinear Up(·) of (N, C, h, w) maps to (N, C, size, size), align_corners=False (METHOD.md §5)."""
    return F.interpolate(maps, size=(size, size), mode="bilinear", align_corners=False)


def _pixel_grid(pix: Tensor, size: int, dtype: torch.dtype) -> Tensor:
    """(..., 2) grid_sample coordinates (x, y) of the centres of flat pixels y·size + x, so sampling equals Up(·)."""
    pix = pix.long()
    if pix.numel() and (int(pix.min()) < 0 or int(pix.max()) >= size * size):
        raise ValueError(f"pixel indices must lie in [0, {size * size}) for a {size}x{size} image, got "
                         f"[{int(pix.min())}, {int(pix.max())}]")
    x, y = pix % size, torch.div(pix, size, rounding_mode="floor")
    return (torch.stack([x, y], dim=-1).to(dtype) + 0.5) / size * 2.0 - 1.0


def sample_at_pixels(maps: Tensor, pix: Tensor, size: int) -> Tensor:
    """Values of Up(maps) at flat pixels, without building the size² map (METHOD.md §6).

    Args:
        maps: (C, h, w) maps of one view.
        pix: (m,) flat indices y·size + x into the size×size image.
        size: side of the upsampled image (336).

    Returns:
        (m, C) sampled values, equal to `upsample(maps[None], size)[0, :, y, x]`.
    """
    if maps.dim() != 3 or pix.dim() != 1:
        raise ValueError(f"sample_at_pixels: expected maps (C, h, w) and pix (m,), got {tuple(maps.shape)} and "
                         f"{tuple(pix.shape)}")
    grid = _pixel_grid(pix.to(maps.device), size, maps.dtype).view(1, -1, 1, 2)
    out = F.grid_sample(maps[None], grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out[0, :, :, 0].T


def backproject(maps: Tensor, pt2pix: Tensor, size: int) -> tuple[Tensor, Tensor]:
    """Visibility-weighted mean of each point's view values (METHOD.md §6).

    All (point, view) pairs are sampled in one batched `grid_sample` (one grid row per view), so no
    (n, size²) tensor or size² map is ever built; hidden pairs are sampled at pixel 0 and weighted 0.

    Args:
        maps: (K, C, h, w) maps of one cloud's K views, e.g. C = 2 probability maps [S_n, S_a].
        pt2pix: (n, K) int, the flat centre pixel of point i in view v, −1 when not visible.
        size: side of the image that `pt2pix` indexes (336).

    Returns:
        scores: (n, C), the mean over visible views; 0 for points that no view sees.
        seen: (n,) bool, True when at least one view sees the point.
    """
    if maps.dim() != 4 or pt2pix.dim() != 2 or pt2pix.shape[1] != maps.shape[0]:
        raise ValueError(f"backproject: expected maps (K, C, h, w) and pt2pix (n, K), got {tuple(maps.shape)} and "
                         f"{tuple(pt2pix.shape)}")
    pt2pix = pt2pix.to(maps.device).long()
    vis = pt2pix >= 0  # (n, K)
    grid = _pixel_grid(pt2pix.clamp(min=0).T, size, maps.dtype)  # (K, n, 2)
    sampled = F.grid_sample(maps, grid[:, :, None], mode="bilinear", padding_mode="border", align_corners=False)
    sampled = sampled[..., 0].permute(2, 0, 1)  # (K, C, n, 1) -> (n, K, C)
    weights = vis.to(maps.dtype)
    count = weights.sum(dim=1, keepdim=True).clamp(min=1.0)
    scores = (sampled * weights[..., None]).sum(dim=1) / count
    return scores, vis.any(dim=1)


def fill_unseen(scores: Tensor, seen: Tensor, xyz: Tensor) -> Tensor:
    """Give each unseen point the score of its nearest seen point in 3D (METHOD.md §6, our choice).

    The result gathers rows of `scores`, so gradients reach the seen points it copies from.
    Ties between equally near seen points go to whichever scipy's cKDTree returns.

    Args:
        scores: (n, C) point scores from `backproject`.
        seen: (n,) bool.
        xyz: (n, 3) point coordinates.

    Returns:
        (n, C) scores on the device and dtype of `scores`.

    Raises:
        ValueError: when shapes disagree, or points are unseen but no point is seen.
    """
    n = scores.shape[0]
    if seen.shape != (n,) or xyz.dim() != 2 or xyz.shape[0] != n:
        raise ValueError(f"fill_unseen: expected scores (n, C), seen (n,) and xyz (n, 3), got {tuple(scores.shape)}, "
                         f"{tuple(seen.shape)} and {tuple(xyz.shape)}")
    seen_np = seen.detach().cpu().numpy().astype(bool)
    if seen_np.all():
        return scores
    if not seen_np.any():
        raise ValueError(f"fill_unseen: none of the {n} points is seen by any view, so none can lend its score")
    pts = xyz.detach().cpu().numpy().astype(np.float64)
    seen_idx = np.flatnonzero(seen_np)
    unseen_idx = np.flatnonzero(~seen_np)
    # an unbalanced, non-compact tree builds ~3x faster; one query per unseen point does not repay a better tree
    tree = cKDTree(pts[seen_idx], balanced_tree=False, compact_nodes=False)
    _, nearest = tree.query(pts[unseen_idx], k=1)
    source = np.arange(n)
    source[unseen_idx] = seen_idx[nearest]
    return scores[torch.from_numpy(source).to(scores.device)]
