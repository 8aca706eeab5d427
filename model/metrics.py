"""Evaluation metrics (METHOD.md §9), small pure numpy functions.

1. Image level: I-AUROC and AP over samples, from the global score.
2. Point level: P-AUROC over pooled valid points; Real3D-AD P-AUROC / P-AP over min-max normalised
   scores pooled per class; the code's `grid` P-AUROC over every cell of the 336² grid.
3. AUPRO, two labelled versions:
   - *official* (MVTec 3D-AD): exact thresholds, 8-connected GT regions, PRO integrated over FPR in
     [0, fpr_limit] with the trapezoid rule, interpolated at fpr_limit, divided by fpr_limit.
   - *pointad*: the code's cflow-style approximation (evenly spaced thresholds, FPR rescaled).

A metric that is undefined on its input (one class only, no GT region, no normal pixel) is NaN, not
an exception, so that a table can still be built.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage
from sklearn.metrics import average_precision_score, roc_auc_score

# 8-connectivity inside each (H, W) slice, no connection across the sample axis.
_EIGHT_CONNECTED_2D = np.zeros((3, 3, 3), dtype=bool)
_EIGHT_CONNECTED_2D[1] = True
_CHUNK = 1 << 20  # pixels per step of the AUPRO walks: bounds their float64 temporaries


def _two_classes(labels: np.ndarray) -> bool:
    return bool(labels.any() and not labels.all())


def _binary_metric(metric: object, scores: np.ndarray, labels: np.ndarray) -> float:
    """`metric(labels, scores)` on flattened inputs, NaN when only one class is present."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels).ravel() != 0
    if s.shape != y.shape:
        raise ValueError(f"scores and labels: expected the same number of values, got {s.size} and {y.size}")
    if not _two_classes(y):
        return float("nan")
    return float(metric(y, s))  # type: ignore[operator]


def image_metrics(scores: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """I-AUROC and AP over samples (METHOD §9); NaN for both when only one class is present."""
    return {
        "i_auroc": _binary_metric(roc_auc_score, scores, labels),
        "ap": _binary_metric(average_precision_score, scores, labels),
    }


def point_auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """P-AUROC over pooled valid points (METHOD §9, ours); NaN when only one class is present."""
    return _binary_metric(roc_auc_score, scores, labels)


def minmax(scores: np.ndarray) -> np.ndarray:
    """Min-max normalise to [0, 1] as float64; a constant input gives zeros."""
    s = np.asarray(scores, dtype=np.float64)
    if s.size == 0:
        return s.copy()
    lo, hi = s.min(), s.max()
    if hi == lo:
        return np.zeros_like(s)
    return (s - lo) / (hi - lo)


def real3d_point_metrics(
    scores_per_sample: Sequence[np.ndarray], labels_per_sample: Sequence[np.ndarray]
) -> dict[str, float]:
    """Real3D-AD point metrics (METHOD §9): pool every point of the class, min-max normalise, then P-AUROC, P-AP."""
    if len(scores_per_sample) != len(labels_per_sample):
        raise ValueError(
            f"expected one label array per score array, got {len(scores_per_sample)} and {len(labels_per_sample)}"
        )
    scores = minmax(np.concatenate([np.asarray(s, dtype=np.float64).ravel() for s in scores_per_sample]))
    labels = np.concatenate([np.asarray(y).ravel() for y in labels_per_sample])
    return {
        "p_auroc": _binary_metric(roc_auc_score, scores, labels),
        "p_ap": _binary_metric(average_precision_score, scores, labels),
    }


def pixel_auroc_grid(score_maps: np.ndarray, gt_masks: np.ndarray, valid: np.ndarray | None = None) -> float:
    """The code's `grid` P-AUROC (METHOD §9): every grid cell, background cells included as they are.

    With `valid` (N, H, W), only those cells count: the `object` variant.
    """
    scores, gt = _check_maps(score_maps, gt_masks)
    if valid is not None:
        keep = _check_valid(valid, gt)
        scores, gt = scores[keep], gt[keep]
    return _binary_metric(roc_auc_score, scores, gt)


def _check_valid(valid: np.ndarray, gt: np.ndarray) -> np.ndarray:
    keep = np.asarray(valid) != 0
    if keep.shape != gt.shape:
        raise ValueError(f"valid mask: expected the maps' shape {gt.shape}, got {keep.shape}")
    return keep


def _check_maps(score_maps: np.ndarray, gt_masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(score_maps)
    if scores.dtype not in (np.float32, np.float64):  # float32 maps stay float32: half the memory
        scores = scores.astype(np.float64)
    gt = np.asarray(gt_masks) != 0
    if scores.ndim != 3 or scores.shape != gt.shape:
        raise ValueError(
            f"score maps and GT masks: expected the same (N, H, W) shape, got {scores.shape} and {gt.shape}"
        )
    return scores, gt


def _regions(gt: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """8-connected GT regions of each mask: (N, H, W) ids (0 = normal), pixel count per id, region count."""
    ids, n_regions = ndimage.label(gt, structure=_EIGHT_CONNECTED_2D)
    sizes = np.bincount(ids.ravel(), minlength=n_regions + 1)
    return ids, sizes, n_regions


def _area_to_limit(fpr: np.ndarray, pro: np.ndarray, fpr_limit: float) -> float:
    """Trapezoid area under PRO(FPR) on [0, fpr_limit], divided by fpr_limit.

    `fpr` is non-decreasing and starts at 0. Where the curve passes fpr_limit it is interpolated
    linearly at exactly fpr_limit; where it ends before, the area stops there (no extrapolation), so
    the result stays in [0, 1] whenever PRO does.
    """
    area, _ = _area_part(fpr, pro, fpr_limit)
    return min(max(area / fpr_limit, 0.0), 1.0)


def _area_part(x: np.ndarray, y: np.ndarray, fpr_limit: float) -> tuple[float, bool]:
    """Trapezoid area of one stretch of the PRO(FPR) curve, cut at fpr_limit; True once it is reached."""
    n_in = int(np.searchsorted(x, fpr_limit, side="right"))
    reached = n_in < x.size
    xs, ys = x[:n_in], y[:n_in]
    if reached:
        x0, x1, y0, y1 = x[n_in - 1], x[n_in], y[n_in - 1], y[n_in]
        xs, ys = np.append(xs, fpr_limit), np.append(ys, y0 + (y1 - y0) * (fpr_limit - x0) / (x1 - x0))
    return float(np.sum(np.diff(xs) * (ys[1:] + ys[:-1]) / 2.0)), reached


def _check_limit(fpr_limit: float) -> None:
    if not 0.0 < fpr_limit <= 1.0:
        raise ValueError(f"fpr_limit: expected a value in (0, 1], got {fpr_limit}")


def _prepare(score_maps: np.ndarray, gt_masks: np.ndarray, fpr_limit: float,
             valid: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int] | None:
    """Flat scores and region ids of the counted cells, region sizes, region and normal counts; None: NaN.

    Regions are found on the whole grid; with `valid`, only valid cells count (their overlap with
    a region, and the normal cells of the FPR): the `object` variant.
    """
    _check_limit(fpr_limit)
    scores, gt = _check_maps(score_maps, gt_masks)
    ids, _, n_regions = _regions(gt)
    if valid is not None:
        keep = _check_valid(valid, gt)
        scores, ids = scores[keep], ids[keep]
    flat_s, flat_id = scores.ravel(), ids.ravel()
    sizes = np.bincount(flat_id, minlength=n_regions + 1)
    n_normal = int((flat_id == 0).sum())
    if n_regions == 0 or n_normal == 0 or (sizes[1:] == 0).any():
        return None
    return flat_s, flat_id, sizes, n_regions, n_normal


def aupro_official(score_maps: np.ndarray, gt_masks: np.ndarray, fpr_limit: float = 0.3,
                   valid: np.ndarray | None = None) -> float:
    """AUPRO, *official* MVTec 3D-AD definition (METHOD §9).

    1. Regions are the 8-connected components of each (H, W) GT mask.
    2. At every distinct score t (exact, highest first; a pixel is positive when score >= t) compute
       FPR over all normal pixels and PRO = mean over regions of |positive ∩ region| / |region|.
       The curve starts at (0, 0); sorting all pixels once and taking cumulative sums gives every
       threshold at once.
    3. Integrate PRO over FPR in [0, fpr_limit] (see `_area_to_limit`) and divide by fpr_limit.

    Args:
        score_maps: (N, H, W) anomaly scores.
        gt_masks: (N, H, W) ground truth, nonzero = anomalous.
        fpr_limit: upper FPR limit of the integration, in (0, 1].
        valid: (N, H, W) cells that count (the `object` variant), or None for every cell.

    Returns:
        AUPRO in [0, 1]; NaN without any GT region or without any normal pixel.
    """
    prepared = _prepare(score_maps, gt_masks, fpr_limit, valid)
    if prepared is None:
        return float("nan")
    flat_s, flat_id, sizes, n_regions, n_normal = prepared
    order = np.argsort(flat_s)[::-1]  # highest first; the order inside a tie does not matter
    # Each region pixel adds 1 / (|region| * n_regions) to PRO; each normal pixel 1 / n_normal to FPR.
    weight = 1.0 / (sizes.astype(np.float64) * n_regions)
    weight[0] = 0.0
    # Walk the sorted pixels in chunks, so no per-pixel float64 array is ever built, and stop once
    # the curve passes fpr_limit.
    fp, pro_sum, area = 0, 0.0, 0.0
    last_x, last_y = 0.0, 0.0
    for start in range(0, flat_s.size, _CHUNK):
        idx = order[start:start + _CHUNK]
        s_c, id_c = flat_s[idx], flat_id[idx]
        fp_c = fp + np.cumsum(id_c == 0)
        pro_c = pro_sum + np.cumsum(weight[id_c])
        nxt = flat_s[order[start + _CHUNK]] if start + _CHUNK < flat_s.size else None
        last_of_tie = np.append(s_c[1:] != s_c[:-1], True if nxt is None else bool(s_c[-1] != nxt))
        x = np.concatenate(([last_x], fp_c[last_of_tie] / n_normal))
        y = np.concatenate(([last_y], np.clip(pro_c[last_of_tie], 0.0, 1.0)))
        part, reached = _area_part(x, y, fpr_limit)
        area += part
        if reached:
            break
        fp, pro_sum, last_x, last_y = int(fp_c[-1]), float(pro_c[-1]), float(x[-1]), float(y[-1])
    return min(max(area / fpr_limit, 0.0), 1.0)


def aupro_pointad(score_maps: np.ndarray, gt_masks: np.ndarray, fpr_limit: float = 0.3, steps: int = 200,
                  valid: np.ndarray | None = None, thresholds: str = "arange") -> float:
    """AUPRO, *pointad* version: the code's cflow-style approximation (METHOD §9).

    1. `steps` thresholds from the minimum score up, `arange(min, max, (max - min) / steps)` as the
       code has them (so max itself is not one; `thresholds="linspace"` gives `linspace(min, max,
       steps)` instead, for comparison); a pixel is positive when score > t.
    2. For each: PRO = mean over 8-connected GT regions of the overlap; FPR over normal pixels.
    3. Keep the points with FPR < fpr_limit, min-max rescale their FPRs to [0, 1], and take the
       trapezoid area of PRO over the rescaled FPR (points ordered by FPR, then PRO).

    The rescaling stretches whatever FPR range the kept thresholds happen to cover onto [0, 1], so
    this can differ noticeably from `aupro_official`. When the kept FPRs are all equal (e.g. normal
    pixels all share the minimum score) the rescaling is undefined and the result is NaN.

    Returns:
        A value in [0, 1]; NaN without any GT region, normal pixel, or a spread of kept FPRs.
    """
    prepared = _prepare(score_maps, gt_masks, fpr_limit, valid)
    if prepared is None:
        return float("nan")
    flat_s, flat_ids, sizes, n_regions, n_normal = prepared
    lo, hi = flat_s.min(), flat_s.max()  # in the maps' dtype, as the code computes its step
    if hi == lo:
        return float("nan")
    if thresholds == "arange":
        cuts = np.arange(lo, hi, (hi - lo) / steps)
    elif thresholds == "linspace":
        cuts = np.linspace(float(lo), float(hi), steps)
    else:
        raise ValueError(f"thresholds: expected arange or linspace, got {thresholds!r}")
    steps = len(cuts)
    weight = 1.0 / (sizes.astype(np.float64) * n_regions)
    weight[0] = 0.0
    # A pixel is positive at thresholds[k] exactly when k < rank, rank = #(thresholds < score);
    # per-rank sums are gathered chunk by chunk, so memory does not grow with the pixel count.
    region_w, normal_n = np.zeros(steps + 1), np.zeros(steps + 1)
    for start in range(0, flat_s.size, _CHUNK):
        rank = np.searchsorted(cuts, flat_s[start:start + _CHUNK], side="left")
        id_c = flat_ids[start:start + _CHUNK]
        region_w += np.bincount(rank, weights=weight[id_c], minlength=steps + 1)
        normal_n += np.bincount(rank, weights=(id_c == 0).astype(np.float64), minlength=steps + 1)

    def positives_above(per_rank: np.ndarray) -> np.ndarray:
        return np.cumsum(per_rank[::-1])[::-1][1:]  # entry k: sum over pixels with rank > k

    pro = np.clip(positives_above(region_w), 0.0, 1.0)
    fpr = positives_above(normal_n) / n_normal
    keep = fpr < fpr_limit
    if not keep.any() or np.ptp(fpr[keep]) == 0:
        return float("nan")
    x, y = minmax(fpr[keep]), pro[keep]
    order = np.lexsort((y, x))
    x, y = x[order], y[order]
    area = float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2.0))
    return min(max(area, 0.0), 1.0)
