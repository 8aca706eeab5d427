"""Scored clouds as binary PLY: positions, a colour ramp of the score, and the score itself.

The score is written twice, as `score` (CloudCompare loads every extra vertex property as a scalar
field; Open3D's tensor reader returns it as `point.score`) and as `quality` (the name MeshLab reads as
per-vertex quality). The colours (uint8, a perceptual ramp over [0, vmax]) are for viewers that show
neither.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .atomic import atomic_path


def score_colours(score: np.ndarray, vmax: float | None = None) -> np.ndarray:
    """(n, 3) uint8 colours of `score` on matplotlib's viridis over [0, vmax] (default: the maximum)."""
    from matplotlib import colormaps

    s = np.asarray(score, np.float64)
    top = float(vmax if vmax is not None else (s.max() if s.size else 1.0)) or 1.0
    rgba = colormaps["viridis"](np.clip(s / top, 0.0, 1.0))
    return (rgba[:, :3] * 255).round().astype(np.uint8)


def write_scored_ply(path: Path, xyz: np.ndarray, score: np.ndarray, vmax: float | None = None) -> Path:
    """Write the cloud with its score; atomic (a temporary name, then renamed)."""
    import open3d as o3d

    xyz = np.asarray(xyz, np.float32)
    score = np.asarray(score, np.float32).reshape(-1, 1)
    if xyz.ndim != 2 or xyz.shape[1] != 3 or len(score) != len(xyz):
        raise ValueError(f"write_scored_ply: expected xyz (n, 3) and score (n,), got {xyz.shape} and {score.shape}")
    pc = o3d.t.geometry.PointCloud()
    pc.point.positions = o3d.core.Tensor(xyz)
    pc.point.colors = o3d.core.Tensor(score_colours(score[:, 0], vmax))
    pc.point.score = o3d.core.Tensor(score)
    pc.point.quality = o3d.core.Tensor(score.copy())
    with atomic_path(path, keep_suffix=True) as tmp:
        if not o3d.t.io.write_point_cloud(str(tmp), pc):
            raise OSError(f"Open3D could not write {tmp}")
    return path
