"""Metrics (METHOD.md §9) against hand values, sklearn called directly, and brute-force loops written here."""

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

# ---------------------------------------------------------------- independent brute-force references


def _regions_by_loop(gt: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """(image index, boolean region mask) for every 8-connected region of every image."""
    out = []
    for i in range(gt.shape[0]):
        lab, k = ndimage.label(gt[i], structure=np.ones((3, 3), dtype=int))
        for r in range(1, k + 1):
            out.append((i, lab == r))
    return out


def _pro_fpr(pred: np.ndarray, gt: np.ndarray, regions: list[tuple[int, np.ndarray]]) -> tuple[float, float]:
    normal = ~gt
    fpr = float((pred & normal).sum() / normal.sum())
    overlaps = []
    for i, region in regions:
        overlaps.append((pred[i] & region).sum() / region.sum())
    return fpr, float(np.mean(overlaps))


def brute_aupro_official(scores: np.ndarray, gt: np.ndarray, limit: float = 0.3) -> float:
    gt = gt.astype(bool)
    regions = _regions_by_loop(gt)
    points = [(0.0, 0.0)]
    for t in sorted(set(scores.ravel().tolist()), reverse=True):
        points.append(_pro_fpr(scores >= t, gt, regions))
    area = 0.0
    for (x0, y0), (x1, y1) in zip(points[:-1], points[1:], strict=True):
        if x0 >= limit:
            break
        if x1 > limit:  # interpolate linearly at exactly the limit
            y1 = y0 + (y1 - y0) * (limit - x0) / (x1 - x0)
            x1 = limit
        area += (x1 - x0) * (y0 + y1) / 2.0
    return area / limit


def sorted_aupro_official(scores: np.ndarray, gt: np.ndarray, limit: float = 0.3) -> float:
    """The same curve as `brute_aupro_official`, counted with searchsorted per threshold (fast enough for 336² maps)."""
    gt = gt.astype(bool)
    regions = [np.sort(scores[i][region]) for i, region in _regions_by_loop(gt)]
    normal = np.sort(scores[~gt])
    thresholds = np.unique(scores)[::-1]
    fpr = (normal.size - np.searchsorted(normal, thresholds, side="left")) / normal.size
    pro = np.mean([(r.size - np.searchsorted(r, thresholds, side="left")) / r.size for r in regions], axis=0)
    x, y = np.concatenate(([0.0], fpr)), np.concatenate(([0.0], pro))
    past = int(np.argmax(x > limit)) if (x > limit).any() else x.size
    xs, ys = list(x[:past]), list(y[:past])
    if past < x.size:
        xs.append(limit)
        ys.append(y[past - 1] + (y[past] - y[past - 1]) * (limit - x[past - 1]) / (x[past] - x[past - 1]))
    xs_a, ys_a = np.array(xs), np.array(ys)
    return float(np.sum(np.diff(xs_a) * (ys_a[1:] + ys_a[:-1]) / 2.0) / limit)


def brute_aupro_pointad(scores: np.ndarray, gt: np.ndarray, limit: float = 0.3, steps: int = 200) -> float:
    gt = gt.astype(bool)
    regions = _regions_by_loop(gt)
    lo, hi = float(scores.min()), float(scores.max())
    kept = []
    for k in range(steps):
        t = lo + (hi - lo) * k / (steps - 1)
        fpr, pro = _pro_fpr(scores > t, gt, regions)
        if fpr < limit:
            kept.append((fpr, pro))
    kept.sort()
    f_lo, f_hi = kept[0][0], kept[-1][0]
    xs = [(f - f_lo) / (f_hi - f_lo) for f, _ in kept]
    ys = [p for _, p in kept]
    area = 0.0
    for i in range(1, len(xs)):
        area += (xs[i] - xs[i - 1]) * (ys[i] + ys[i - 1]) / 2.0
    return area


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
