"""Point scores from cached features and text features (METHOD.md §6, before smoothing).

For one cloud: the views' anomaly maps S_a, sampled at each point's pixel and averaged over the
views that see it; a point no view sees takes its nearest seen neighbour's score.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def point_scores(item: dict[str, Any], text: Any, grid: tuple[int, int], size: int, tau: float = 0.07,
                 xyz: np.ndarray | None = None) -> np.ndarray:
    """(n,) anomaly score of every point of a `CachedSamples.item`, from its first scored layer."""
    import torch

    from ..model.backproject import backproject, fill_unseen
    from ..model.scoring import patch_maps

    with torch.no_grad():
        patch = torch.from_numpy(item["patch"][:, 0].astype(np.float32))[None]  # (1, K, P, D)
        maps = patch_maps(patch, text.detach().cpu(), grid, tau)[0]  # (K, 2, h, w)
        scores, seen = backproject(maps, torch.from_numpy(item["pt2pix"].astype(np.int64)), size)
        if xyz is not None and not bool(seen.all()) and bool(seen.any()):
            scores = fill_unseen(scores, seen, torch.from_numpy(xyz))
    return scores[:, 1].numpy()
