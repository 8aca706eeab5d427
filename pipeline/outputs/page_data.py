"""What `report.html` shows, chosen from a run's numbers: kept apart from the page so each choice is testable.

- `page_points`: which points of a cloud the 3D view draws (every GT point, the rest evenly thinned);
- `error_cases`: the false positives (good samples scored highest) and missed defects (anomalous
  samples scored lowest) of a class;
- `best_f1_threshold`: the global score that separates a class's samples best (for the histogram);
- `roc_points`: a ROC curve thinned for drawing, its end points kept.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

POINTS_PER_CLOUD = 3000  # non-GT points a cloud keeps on the page (every GT point is kept too)
CLOUDS_PER_CLASS = 24  # samples of a class the 3D picker offers (error cases first)
ERROR_CASES = 3  # false positives and missed defects listed per class, each


@dataclass(frozen=True)
class PageCloud:
    """One sample's cloud as the page draws it: a subset of its points, their scores and GT.

    `index` holds the subset's positions in the sample's full point list (`scores.zarr`'s
    `points/<r>/score`), so the page's numbers can be checked against the run's files.
    """

    sample_id: str
    label: int  # 1 anomalous, 0 good, -1 unknown (predict)
    global_score: float
    n_points: int  # points of the full cloud
    index: np.ndarray  # (m,) int64
    xyz: np.ndarray  # (m, 3) float32
    score: np.ndarray  # (m,) float32
    gt: np.ndarray  # (m,) uint8


@dataclass(frozen=True)
class ErrorCase:
    """A good sample scored high or an anomalous one scored low, with its views figure (a PNG, or None)."""

    kind: str  # "false positive" | "missed defect"
    sample_id: str
    global_score: float
    rank: int  # its place among the class's samples by global score, 1 = highest
    figure: bytes | None = None


def page_points(gt: np.ndarray, cap: int = POINTS_PER_CLOUD) -> np.ndarray:
    """Positions of the points to draw: every GT point, and at most `cap` others, evenly spaced in the list.

    Even spacing (not a random draw) keeps the page the same from run to run, and on organized scans
    (row-major grids) it spreads the kept points over the whole surface.
    """
    gt = np.asarray(gt).ravel() > 0
    others = np.flatnonzero(~gt)
    if others.size > cap:
        others = others[np.linspace(0, others.size - 1, cap).round().astype(np.int64)]
    return np.union1d(np.flatnonzero(gt), others).astype(np.int64)


def page_cloud(sample_id: str, label: int, global_score: float, xyz: np.ndarray, score: np.ndarray,
               gt: np.ndarray, cap: int = POINTS_PER_CLOUD) -> PageCloud:
    """A scored cloud thinned for the page (`page_points`)."""
    idx = page_points(gt, cap)
    # float32, as scores.zarr stores it: the page shows the file's number, not a closer one
    return PageCloud(sample_id, int(label), float(np.float32(global_score)), int(len(score)), idx,
                     np.asarray(xyz, np.float32)[idx], np.asarray(score, np.float32)[idx],
                     (np.asarray(gt).ravel()[idx] > 0).astype(np.uint8))


def error_cases(ids: list[str], labels: np.ndarray, scores: np.ndarray, k: int = ERROR_CASES) -> list[ErrorCase]:
    """The `k` good samples with the highest global scores, then the `k` anomalous ones with the lowest.

    Ties keep the samples' order; a class without good (or anomalous) samples has no false
    positives (or misses).
    """
    labels, scores = np.asarray(labels), np.asarray(scores, np.float64)
    order = np.argsort(-scores, kind="stable")
    rank = np.empty(len(scores), np.int64)
    rank[order] = np.arange(1, len(scores) + 1)
    good = [i for i in order if labels[i] == 0][:k]
    bad = [i for i in np.argsort(scores, kind="stable") if labels[i] == 1][:k]
    return ([ErrorCase("false positive", ids[i], float(scores[i]), int(rank[i])) for i in good]
            + [ErrorCase("missed defect", ids[i], float(scores[i]), int(rank[i])) for i in bad])


def best_f1_threshold(labels: np.ndarray, scores: np.ndarray) -> tuple[float, float] | None:
    """(threshold, F1) where calling `score >= threshold` anomalous gives the best F1; None without both labels."""
    from sklearn.metrics import precision_recall_curve

    labels = np.asarray(labels).astype(int)
    if np.unique(labels).size < 2:
        return None
    precision, recall, thresholds = precision_recall_curve(labels, np.asarray(scores, np.float64))
    p, r = precision[:-1], recall[:-1]  # the last pair has no threshold
    f1 = np.divide(2 * p * r, p + r, out=np.zeros_like(p), where=(p + r) > 0)
    best = int(np.argmax(f1))
    return float(thresholds[best]), float(f1[best])


def roc_points(labels: np.ndarray, scores: np.ndarray, most: int = 400) -> tuple[np.ndarray, np.ndarray] | None:
    """(fpr, tpr) of a ROC curve with at most `most` points for drawing; None without both labels."""
    from sklearn.metrics import roc_curve

    labels = np.asarray(labels).astype(int).ravel()
    if np.unique(labels).size < 2:
        return None
    fpr, tpr, _ = roc_curve(labels, np.asarray(scores, np.float64).ravel())
    if fpr.size > most:  # the curve is a step function: keep its corners at evenly spaced positions, and the ends
        keep = np.unique(np.r_[0, np.linspace(0, fpr.size - 1, most).round().astype(np.int64), fpr.size - 1])
        fpr, tpr = fpr[keep], tpr[keep]
    return fpr, tpr


def pick_clouds(clouds: list[PageCloud], errors: list[ErrorCase], cap: int = CLOUDS_PER_CLASS) -> list[PageCloud]:
    """At most `cap` clouds for the picker: the error cases first, then the others from the highest global score."""
    wanted = [e.sample_id for e in errors]
    first = [c for i in wanted for c in clouds if c.sample_id == i]
    rest = sorted((c for c in clouds if c.sample_id not in wanted), key=lambda c: -c.global_score)
    return (first + rest)[:cap]
