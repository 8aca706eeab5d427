"""The render stage's per-view loops over points and pixels, compiled by numba.

Why compiled: each is one pass of a few operations per element, which numpy spreads over a dozen
temporary arrays; a view's visibility and shading took about 6 ms this way against 2 ms here
(`bench/render.py`). The arithmetic is the numpy version's, operation for operation and in float64
(no fast-math), so the maps and images are the same to the bit (`tests/unit/test_render_unchanged.py`).
All of them release the GIL: views may run in several threads at once.
"""

from __future__ import annotations

import numpy as np

from ..compiled import compiled


@compiled
def surface_visible(centre: np.ndarray, depth: np.ndarray, owners: np.ndarray, eps: float) -> np.ndarray:
    """(n,) bool: centre pixel in the image and depth <= that pixel's owner's depth + eps.

    A centre pixel with no owner can only come from a GL backend's rounding: the point is kept.
    """
    vis = np.zeros(len(depth), np.bool_)
    for i in range(len(depth)):
        c = centre[i]
        if c < 0:
            continue
        own = owners[c]
        vis[i] = own < 0 or depth[i] <= depth[own] + eps
    return vis


@compiled
def owner_labels(owners: np.ndarray, labels: np.ndarray, out: np.ndarray) -> None:
    """Write each owned pixel's owner label (bool, as 0/1) into `out` (H*W uint8): a view's `mask2d`."""
    for f in range(len(owners)):
        if owners[f] >= 0:
            out[f] = labels[owners[f]]


@compiled
def shade_pixels(owners: np.ndarray, row_of: np.ndarray, points: np.ndarray, normals: np.ndarray,
                 eye: np.ndarray, grey: float, ambient: float, out: np.ndarray) -> None:
    """Write the grey level of each owned pixel into `out` (H*W uint8); others are left as they are.

    The pixel's owner is cloud row `owners[f]`, whose point and unoriented normal are row
    `row_of[owners[f]]` of `points` and `normals`. Headlight: the light is at the camera centre
    `eye`, and the level is grey * (ambient + (1 - ambient) * |n . l|), two-sided.
    """
    for f in range(len(owners)):
        own = owners[f]
        if own < 0:
            continue
        k = row_of[own]
        t0, t1, t2 = eye[0] - points[k, 0], eye[1] - points[k, 1], eye[2] - points[k, 2]
        dot = normals[k, 0] * t0 + normals[k, 1] * t1 + normals[k, 2] * t2
        lambert = abs(dot) / max(np.sqrt(t0 * t0 + t1 * t1 + t2 * t2), 1e-12)
        level = np.rint(255 * (grey * (ambient + (1 - ambient) * lambert)))
        out[f] = min(max(level, 0.0), 255.0)
