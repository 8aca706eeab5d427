"""Metrics (METHOD.md §9) against hand values, sklearn called directly, and brute-force loops (tests/helpers.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage
from sklearn.metrics import average_precision_score, roc_auc_score

from pointad_pipe.model.metrics import (
    _area_to_limit,
    aupro_official,
    aupro_pointad,
    image_metrics,
    minmax,
    pixel_auroc_grid,
    point_auroc,
    real3d_point_metrics,
)

# the brute-force references live in tests/helpers.py (the e2e train test checks evaluate's AUPRO with them too)
from ..helpers import brute_aupro_official, brute_aupro_pointad, sorted_aupro_official


def _random_case(seed: int, n: int = 2, h: int = 7, w: int = 7, decimals: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Small maps with ties (rounded scores) and blobby GT holding both classes."""
    rng = np.random.default_rng(seed)
    gt = ndimage.binary_dilation(rng.random((n, h, w)) < 0.08, structure=np.ones((1, 2, 2), dtype=bool))
    gt[0, 0, 0], gt[-1, -1, -1] = True, False
    scores = np.round(rng.random((n, h, w)) + 0.5 * gt, decimals)
    return scores, gt


# ---------------------------------------------------------------- AUPRO, official


def _tiny_case() -> tuple[np.ndarray, np.ndarray]:
    # Region A = {(0,0), (0,1)} (2 px), region B = {(3,3)} (1 px), 13 normal pixels.
    gt = np.zeros((1, 4, 4), dtype=bool)
    gt[0, 0, 0] = gt[0, 0, 1] = gt[0, 3, 3] = True
    scores = np.zeros((1, 4, 4))
    scores[0, 0, 0] = 0.9  # A, first pixel
    scores[0, 2, 0] = 0.8  # normal
    scores[0, 3, 3] = 0.7  # B
    scores[0, 1, 3] = 0.6  # normal
    # A's second pixel (0, 1) and the 11 other normal pixels stay at 0.0.
    return scores, gt


def test_aupro_official_tiny_hand_values() -> None:
    scores, gt = _tiny_case()
    # threshold  positives          FPR    PRO = mean(A overlap, B overlap)
    #   (start)  -                  0      0
    #   0.9      A0                 0      (1/2 + 0)/2 = 1/4
    #   0.8      + normal           1/13   1/4
    #   0.7      + B                1/13   (1/2 + 1)/2 = 3/4
    #   0.6      + normal           2/13   3/4
    #   0.0      everything         1      1
    # At FPR 0.3, between (2/13, 3/4) and (1, 1): PRO = 3/4 + 1/4 * (0.3 - 2/13) / (11/13).
    pro_at = 0.75 + 0.25 * (0.3 - 2 / 13) / (11 / 13)
    area = (1 / 13) * 0.25 + (1 / 13) * 0.75 + (0.3 - 2 / 13) * (0.75 + pro_at) / 2
    assert aupro_official(scores, gt) == pytest.approx(area / 0.3, abs=1e-12)
    assert aupro_official(scores, gt) == pytest.approx(21701 / 34320, abs=1e-12)  # exact fraction


def test_aupro_official_regions_are_8_connected_within_each_sample() -> None:
    # (1,1) touches (2,2) only diagonally: with 8-connectivity {(1,1), (2,2), (2,3)} is ONE region of 3 px.
    gt = np.zeros((2, 4, 4), dtype=bool)
    gt[0, 1, 1] = gt[0, 2, 2] = gt[0, 2, 3] = True
    gt[1] = gt[0]  # the same pattern in sample 1 is a separate region (no link across samples)
    scores = np.zeros((2, 4, 4))
    scores[:, 1, 1] = 1.0
    scores[:, 0, 0] = 0.5  # 2 of 26 normal pixels
    # Curve: (0, 0) -> (0, 1/3) -> (2/26, 1/3) -> (1, 1). Four-connected regions would give PRO 1/2, not 1/3.
    x = 2 / 26
    pro_at = 1 / 3 + (2 / 3) * (0.3 - x) / (1 - x)
    expected = (x * (1 / 3) + (0.3 - x) * (1 / 3 + pro_at) / 2) / 0.3
    assert aupro_official(scores, gt) == pytest.approx(expected, abs=1e-12)
    assert aupro_official(scores, gt) == pytest.approx(brute_aupro_official(scores, gt), abs=1e-12)


@pytest.mark.parametrize("seed", range(12))
def test_aupro_official_matches_brute_force(seed: int) -> None:
    scores, gt = _random_case(seed, decimals=1 if seed % 2 else 3)
    for limit in (0.3, 0.05, 1.0):
        assert aupro_official(scores, gt, limit) == pytest.approx(brute_aupro_official(scores, gt, limit), abs=1e-6)


def test_aupro_official_perfect_detector_is_one() -> None:
    rng = np.random.default_rng(0)
    _, gt = _random_case(3)
    scores = np.where(gt, 0.6 + 0.4 * rng.random(gt.shape), 0.5 * rng.random(gt.shape))
    assert aupro_official(scores, gt) == pytest.approx(1.0, abs=1e-12)


def test_aupro_official_constant_scores_jump_past_the_limit() -> None:
    # One threshold only: the curve is (0, 0) -> (1, 1), never landing inside [0, 0.3].
    _, gt = _tiny_case()
    value = aupro_official(np.full(gt.shape, 0.25), gt)
    assert 0.0 <= value <= 1.0
    assert value == pytest.approx(0.15, abs=1e-12)  # (0.3 * 0.3 / 2) / 0.3


def test_area_when_curve_ends_before_the_limit() -> None:
    # The case that broke anomalib: a curve that stops at FPR 0.2 < 0.3. No extrapolation, divide by 0.3.
    fpr, pro = np.array([0.0, 0.1, 0.2]), np.array([0.5, 1.0, 1.0])
    assert _area_to_limit(fpr, pro, 0.3) == pytest.approx((0.1 * 0.75 + 0.1 * 1.0) / 0.3, abs=1e-12)
    assert _area_to_limit(np.array([0.0, 0.1]), np.array([1.0, 1.0]), 0.3) == pytest.approx(1 / 3, abs=1e-12)
    assert _area_to_limit(np.array([0.0]), np.array([1.0]), 0.3) == 0.0


def test_aupro_never_above_one_on_random_inputs() -> None:
    rng = np.random.default_rng(42)
    for seed in range(40):
        scores, gt = _random_case(seed, n=int(rng.integers(1, 4)), h=9, w=9, decimals=int(rng.integers(0, 4)))
        scores = scores + 5.0 * gt * rng.random()  # from random to nearly perfect
        limit = float(rng.choice([0.01, 0.3, 0.7, 1.0]))
        for value in (aupro_official(scores, gt, limit), aupro_pointad(scores, gt, limit)):
            assert math.isnan(value) or 0.0 <= value <= 1.0


def test_aupro_undefined_cases_are_nan_and_bad_input_raises() -> None:
    scores = np.random.default_rng(0).random((1, 4, 4))
    assert math.isnan(aupro_official(scores, np.zeros((1, 4, 4))))
    assert math.isnan(aupro_official(scores, np.ones((1, 4, 4))))
    assert math.isnan(aupro_pointad(scores, np.zeros((1, 4, 4))))
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        aupro_official(scores, np.zeros((1, 4, 5)))
    with pytest.raises(ValueError, match="fpr_limit"):
        aupro_official(scores, np.ones((1, 4, 4)), fpr_limit=0.0)


# ---------------------------------------------------------------- AUPRO, pointad (cflow-style)


def test_aupro_pointad_perfect_detector_is_one() -> None:
    rng = np.random.default_rng(1)
    _, gt = _random_case(5, h=12, w=12)
    scores = np.where(gt, 0.6 + 0.4 * rng.random(gt.shape), 0.4 * rng.random(gt.shape))
    assert aupro_pointad(scores, gt) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("seed", range(4))
def test_aupro_pointad_matches_brute_force(seed: int) -> None:
    scores, gt = _random_case(seed, h=8, w=8, decimals=3)
    value = aupro_pointad(scores, gt)
    assert 0.0 <= value <= 1.0
    assert value == pytest.approx(brute_aupro_pointad(scores, gt), abs=1e-9)


def test_aupro_pointad_tiny_hand_value_differs_from_official() -> None:
    scores, gt = _tiny_case()
    # 200 thresholds from 0.0 to 0.9, positive when score > t, so pixels at the minimum 0.0 (A's second pixel,
    # 11 normals) are never positive: every FPR stays <= 2/13 < 0.3 and all points are kept.
    #   t in [0.8, 0.9]: FPR 0,    PRO 0 (t = 0.9) or 1/4
    #   t in [0.7, 0.8): FPR 1/13, PRO 1/4
    #   t in [0.6, 0.7): FPR 1/13, PRO 3/4
    #   t in [0.0, 0.6): FPR 2/13, PRO 3/4
    # FPRs rescaled to {0, 1/2, 1}; area = 1/2 * 1/4 + 1/2 * 3/4 = 1/2, against 0.632 officially.
    assert aupro_pointad(scores, gt) == pytest.approx(0.5, abs=1e-12)
    assert aupro_official(scores, gt) - aupro_pointad(scores, gt) > 0.1


# ---------------------------------------------------------------- image and point metrics


def test_image_metrics_match_sklearn_and_nan_for_one_class() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 30)
    scores = rng.random(30) + 0.3 * labels
    out = image_metrics(scores, labels)
    assert out["i_auroc"] == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert out["ap"] == pytest.approx(average_precision_score(labels, scores), abs=1e-12)
    one_class = image_metrics(scores, np.zeros(30, dtype=int))
    assert math.isnan(one_class["i_auroc"]) and math.isnan(one_class["ap"])
    with pytest.raises(ValueError, match="same number"):
        image_metrics(scores, labels[:-1])


def test_point_auroc_and_minmax() -> None:
    assert point_auroc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])) == pytest.approx(0.75)
    assert math.isnan(point_auroc(np.array([0.1, 0.2]), np.array([1, 1])))
    np.testing.assert_allclose(minmax(np.array([2.0, 4.0, 3.0])), [0.0, 1.0, 0.5])
    np.testing.assert_array_equal(minmax(np.full(5, 7.0)), np.zeros(5))


def test_real3d_point_metrics_pool_then_normalise() -> None:
    rng = np.random.default_rng(3)
    sizes = (50, 80, 30)
    labels = [rng.random(k) < 0.2 for k in sizes]
    scores = [rng.random(k) * (i + 1) + y for i, (k, y) in enumerate(zip(sizes, labels, strict=True))]
    pooled_s, pooled_y = np.concatenate(scores), np.concatenate(labels)
    normalised = (pooled_s - pooled_s.min()) / (pooled_s.max() - pooled_s.min())
    out = real3d_point_metrics(scores, labels)
    assert out["p_auroc"] == pytest.approx(roc_auc_score(pooled_y, normalised), abs=1e-12)
    assert out["p_ap"] == pytest.approx(average_precision_score(pooled_y, normalised), abs=1e-12)


def test_pixel_auroc_grid_counts_every_cell() -> None:
    scores, gt = _random_case(2)
    scores[:, :2, :] = 0.0  # background cells scored 0 stay in
    assert pixel_auroc_grid(scores, gt) == pytest.approx(roc_auc_score(gt.ravel(), scores.ravel()), abs=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sorted_reference_equals_brute_reference(seed: int) -> None:
    """The e2e test's fast reference AUPRO agrees with the per-threshold loop it stands in for."""
    scores, gt = _random_case(seed)
    assert sorted_aupro_official(scores, gt) == pytest.approx(brute_aupro_official(scores, gt), abs=1e-12)


@pytest.mark.parametrize("seed", [0, 3, 7])
def test_aupros_walk_in_chunks_with_ties_across_chunk_edges(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tiny chunks (ties of one-decimal scores straddle their edges) give the brute-force values."""
    from pointad_pipe.model import metrics

    scores, gt = _random_case(seed, n=3, h=9, w=9)
    monkeypatch.setattr(metrics, "_CHUNK", 7)
    for limit in (0.05, 0.3, 1.0):
        assert aupro_official(scores, gt, limit) == pytest.approx(brute_aupro_official(scores, gt, limit), abs=1e-9)
    assert aupro_pointad(scores, gt) == pytest.approx(brute_aupro_pointad(scores, gt), abs=1e-9)
    assert aupro_official(scores.astype(np.float32), gt) == pytest.approx(brute_aupro_official(scores, gt), abs=1e-6)
