"""Scoring and metrics against the authors' own outputs (tests/goldens/official/c4, c5; see its README).

c4: one organized cloud with background and holes, 3 views and an RGB image, small random features.
Rebuilt in our conventions (points = valid cells in flat order, pt2pix from the seen (x, y) pixels),
scored by `model.inference.score_cloud_maps` for the three modalities of METHOD §8, and compared to
their raw point map, smoothed map, RGB map, fused map and the three global scores.
c5: six maps with GT: I-AUROC, AP, the whole-grid P-AUROC and the code's 200-threshold AUPRO.
All fp32 (theirs) against our float64 from fp32 features: 1e-5 relative, or 1e-6 absolute where
values are near 0.
"""

from __future__ import annotations

import numpy as np
import torch

from pointad_pipe.model import metrics
from pointad_pipe.model.inference import lay_on_grid, raw_point_map, score_cloud_maps

from ..helpers import ROOT

GOLDENS = ROOT / "tests" / "goldens" / "official"
SIZE, GRID = 336, (24, 24)


def _load(name: str) -> dict[str, np.ndarray]:
    path = GOLDENS / name
    assert path.is_file(), f"{path} is missing"
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def _c4_inputs() -> dict:
    z = _load("c4_scoring_object.npz")
    valid = z["valid"].ravel()
    cells = np.flatnonzero(valid)
    cor = z["d2_3d_cor_xy"].astype(np.int64)  # (K, 336*336, 2) as (x, y)
    pix = cor[..., 1] * SIZE + cor[..., 0]
    pt2pix = np.where(z["seen"], pix, -1)[:, cells].T  # (n, K)
    feats = z["image_features_views_then_rgb"]
    patch = z["patch_features_with_cls"][:, 1:]  # CLS dropped
    xyz = np.stack([cells % SIZE, cells // SIZE, np.zeros_like(cells)], 1).astype(np.float32)
    return {"z": z, "cells": cells, "pt2pix": pt2pix, "text": torch.from_numpy(z["text_features"]),
            "glob": feats[:3], "patch": patch[:3], "rgb": (patch[3], feats[3]),
            "xyz": xyz}


def _score(inp: dict, modality: str):  # noqa: ANN202
    return score_cloud_maps(inp["patch"], inp["glob"], inp["pt2pix"], inp["text"], GRID, SIZE, inp["xyz"],
                            inp["cells"], (SIZE, SIZE), rgb=inp["rgb"], modality=modality)


def _close(ours: np.ndarray, theirs: np.ndarray) -> None:
    np.testing.assert_allclose(np.asarray(ours, np.float64), np.asarray(theirs, np.float64), rtol=1e-5, atol=1e-6)


def test_c4_raw_point_map_and_smoothed_map() -> None:
    inp = _c4_inputs()
    z = inp["z"]
    assert (inp["pt2pix"] >= 0).any(1).all(), "every valid cell is seen: no fill-in is involved"
    raw = raw_point_map(inp["patch"], inp["pt2pix"], inp["text"], GRID, SIZE, inp["xyz"])
    _close(lay_on_grid(raw, inp["cells"], (SIZE, SIZE)), z["official_raw_point_map"])
    point = _score(inp, "point")
    _close(point.grid, z["official_anomaly_map"])
    _close(point.points, z["official_anomaly_map"].ravel()[inp["cells"]])
    _close(point.global_score, z["official_pr_sp"])
    # the global max runs over the whole smoothed grid, which here is not the max over the points
    assert point.grid.max() >= point.points.max()


def test_c4_rgb_fusion_and_rgb_alone_on_the_whole_grid() -> None:
    inp = _c4_inputs()
    z = inp["z"]
    rgb = _score(inp, "rgb")
    _close(rgb.grid, z["official_color_anomaly_map"])
    _close(rgb.global_score, z["official_color_pr_sp"])
    fused = _score(inp, "fused")
    _close(fused.grid, z["official_integrate_anomaly_map"])
    _close(fused.global_score, z["official_integrate_pr_sp"])
    # background and holes hold the blur: the fused map is far from 0 off the object
    off = ~z["valid"]
    assert float(np.abs(fused.grid[off]).max()) > 0.1


def test_c4_view_probabilities() -> None:
    inp = _c4_inputs()
    point = _score(inp, "point")
    mean_prob = 2 * point.global_score - point.grid.max()  # global = 0.5 max + 0.5 mean P_v
    _close(mean_prob, inp["z"]["official_view_probs_mean"][0])


def test_c5_metrics() -> None:
    z = _load("c5_metrics_seed31.npz")
    image = metrics.image_metrics(z["scores"], z["labels"])
    _close(image["i_auroc"], z["official_i_auroc"])
    _close(image["ap"], z["official_ap"])
    _close(metrics.pixel_auroc_grid(z["maps"], z["gts"]), z["official_p_auroc"])
    _close(metrics.aupro_pointad(z["maps"], z["gts"]), z["official_aupro"])
    # the thresholds matter: `linspace` (what we used before) gives their other number
    _close(metrics.aupro_pointad(z["maps"], z["gts"], thresholds="linspace"),
           z["official_aupro_with_linspace_thresholds"])
    assert abs(float(z["official_aupro"]) - float(z["official_aupro_with_linspace_thresholds"])) > 1e-3
