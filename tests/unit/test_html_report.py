"""report.html's choices and its page, against independent computations (no browser here: see e2e)."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser

import numpy as np
import pytest

from pointad_pipe.pipeline.outputs.html_report import (
    DATA_ID,
    ClassPage,
    benchmark_page,
    evaluation_page,
    packed,
    prediction_page,
    unpacked,
)
from pointad_pipe.pipeline.outputs.page_data import (
    PageCloud,
    best_f1_threshold,
    error_cases,
    page_cloud,
    page_points,
    pick_clouds,
    roc_points,
)


class Cells(HTMLParser):
    """Every <td data-metric> of the page's metrics table: (row class, metric, data-value, text)."""

    def __init__(self) -> None:
        super().__init__()
        self.row, self.cell, self.cells = "", None, []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = dict(attrs)
        if tag == "tr" and "data-class" in a:
            self.row = a["data-class"]
        if tag == "td" and "data-metric" in a:
            self.cell = [self.row, a["data-metric"], json.loads(a["data-value"]), ""]

    def handle_data(self, data: str) -> None:
        if self.cell is not None:
            self.cell[3] += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self.cell is not None:
            self.cells.append(tuple(self.cell))
            self.cell = None


def clouds_of(page: str) -> dict:
    m = re.search(rf'<script type="application/json" id="{DATA_ID}">(.*?)</script>', page, re.S)
    assert m, "no cloud data in the page"
    return json.loads(m.group(1).replace("<\\/", "</"))


def test_page_points_keep_every_gt_point_and_thin_the_rest_evenly() -> None:
    gt = np.zeros(10_000, np.uint8)
    gt[[5, 17, 9_999]] = 1
    idx = page_points(gt, cap=100)
    assert set(np.flatnonzero(gt)) <= set(idx) and len(idx) == 103 and np.all(np.diff(idx) > 0)
    others = np.setdiff1d(idx, np.flatnonzero(gt))
    assert others[0] == 0 and others[-1] == 9_998 and np.ptp(np.diff(others)) <= 3  # even gaps, ends kept
    np.testing.assert_array_equal(page_points(gt, cap=100), idx)  # the same page every time
    np.testing.assert_array_equal(page_points(np.zeros(50), cap=100), np.arange(50))  # small clouds whole


def test_error_cases_are_the_highest_good_and_lowest_anomalous() -> None:
    ids = [f"s{i}" for i in range(8)]
    labels = np.array([0, 1, 0, 1, 0, 1, 1, 0])
    scores = np.array([0.9, 0.2, 0.1, 0.95, 0.5, 0.05, 0.6, 0.7])
    cases = error_cases(ids, labels, scores, k=2)
    assert [(c.kind, c.sample_id) for c in cases] == [("false positive", "s0"), ("false positive", "s7"),
                                                     ("missed defect", "s5"), ("missed defect", "s1")]
    ranks = {c.sample_id: c.rank for c in cases}  # 1 = the highest global score of the class
    assert ranks == {"s0": 2, "s7": 3, "s5": 8, "s1": 6}
    assert [c.kind for c in error_cases(ids[:3], np.array([1, 1, 1]), scores[:3], k=5)] == ["missed defect"] * 3
    assert error_cases(ids, labels, scores, k=0) == []


def test_best_f1_threshold_equals_a_brute_force_search() -> None:
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 60)
    scores = rng.normal(size=60) + labels
    threshold, f1 = best_f1_threshold(labels, scores)
    best = 0.0
    for t in np.unique(scores):
        pred = scores >= t
        tp, fp, fn = (pred & (labels == 1)).sum(), (pred & (labels == 0)).sum(), (~pred & (labels == 1)).sum()
        best = max(best, 2 * tp / (2 * tp + fp + fn))
    pred = scores >= threshold
    tp, fp, fn = (pred & (labels == 1)).sum(), (pred & (labels == 0)).sum(), (~pred & (labels == 1)).sum()
    assert f1 == pytest.approx(best) and 2 * tp / (2 * tp + fp + fn) == pytest.approx(best)
    assert best_f1_threshold(np.zeros(4), np.arange(4.0)) is None


def test_roc_points_are_the_curve_thinned_with_its_ends() -> None:
    from sklearn.metrics import roc_curve

    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 20_000)
    s = rng.normal(size=20_000) + y
    full = roc_curve(y, s)
    fpr, tpr = roc_points(y, s, most=300)
    assert len(fpr) <= 302 and (fpr[0], tpr[0]) == (0, 0) and (fpr[-1], tpr[-1]) == (1, 1)
    pairs = set(zip(full[0], full[1], strict=True))
    assert all((a, b) in pairs for a, b in zip(fpr, tpr, strict=True))
    assert roc_points(np.ones(5), np.arange(5.0)) is None


def test_pick_clouds_puts_error_cases_first_then_by_score() -> None:
    clouds = [page_cloud(f"s{i}", 0, g, np.zeros((3, 3)), np.zeros(3), np.zeros(3)) for i, g in
              enumerate([0.1, 0.9, 0.5, 0.7])]
    cases = error_cases(["s0", "s1", "s2", "s3"], np.array([1, 0, 0, 0]), np.array([0.1, 0.9, 0.5, 0.7]), k=1)
    assert [c.sample_id for c in pick_clouds(clouds, cases, cap=3)] == ["s1", "s0", "s3"]


def _page(report: dict) -> tuple[str, PageCloud]:
    rng = np.random.default_rng(0)
    xyz, score = rng.normal(size=(500, 3)), rng.random(500).astype(np.float32)
    gt = (np.arange(500) % 50 == 0).astype(np.uint8)
    cloud = page_cloud("box/test/dent/000", 1, 0.42, xyz, score, gt, cap=100)
    cls = ClassPage("box", ["box/test/dent/000", "box/test/good/000"], np.array([1, 0]), np.array([0.42, 0.3]),
                    roc={"sample": roc_points(np.array([1, 0]), np.array([0.42, 0.3]))}, auroc={"sample": 1.0},
                    errors=error_cases(["box/test/dent/000", "box/test/good/000"], np.array([1, 0]),
                                       np.array([0.42, 0.3])), clouds=[cloud])
    return evaluation_page(report, [cls], ["a note </script> with a tag"]), cloud


def test_the_page_table_is_the_report_and_its_clouds_decode_to_the_scores() -> None:
    report = {"dataset": "d", "per_class": {"box": {"i_auroc": 1.0, "ap": 0.8766, "p_auroc": float("nan")}},
              "mean": {"i_auroc": 1.0, "ap": 0.8766, "p_auroc": float("nan")}, "train_classes": ["ball"]}
    page, cloud = _page(json.loads(json.dumps(report)))
    cells = Cells()
    cells.feed(page)
    got = {(r, m): (v, t) for r, m, v, t in cells.cells}
    assert got[("box", "ap")] == (0.8766, "87.7") and got[("mean", "i_auroc")] == (1.0, "100.0")
    assert np.isnan(got[("box", "p_auroc")][0]) and got[("box", "p_auroc")][1] == "\u2013"
    assert len(got) == 6
    (item,) = clouds_of(page)["classes"]["box"]["clouds"]
    np.testing.assert_array_equal(unpacked(item["score"]), cloud.score)
    np.testing.assert_array_equal(unpacked(item["index"]), cloud.index)
    np.testing.assert_array_equal(unpacked(item["pos"]).reshape(-1, 3), cloud.xyz)
    assert item["gt_points"] == 10 and item["shown"] == 110 and item["n_points"] == 500
    assert "https://" not in page.split("<script>")[0] and '<script src=' not in page  # nothing fetched
    assert "a note &lt;/script&gt; with a tag" in page  # escaped: it cannot end a script or add one


def test_packed_arrays_round_trip_little_endian() -> None:
    a = np.array([1.5, -2.25, 3e-8], np.float32)
    spec = packed(a.astype(">f4"), "f4")
    np.testing.assert_array_equal(unpacked(spec), a)
    assert spec["dtype"] == "f4" and unpacked(packed(np.array([7, 300]), "i4")).tolist() == [7, 300]


def test_prediction_and_benchmark_pages() -> None:
    cloud = page_cloud("x.ply", -1, 0.5, np.zeros((4, 3)), np.full(4, 0.25), np.zeros(4))
    page = prediction_page("x", {"file": "/d/x.ply", "global_score": 0.5, "secret": "no"}, cloud, b"\x89PNG")
    assert "global_score: 0.5" in page and "secret" not in page and "data:image/png;base64," in page
    assert clouds_of(page)["classes"]["x"]["clouds"][0]["gt_points"] == 0
    table = {"per_class": {"box": {"i_auroc": [0.5, 0.1, 2]}}, "mean": {"i_auroc": [0.5, 0.1, 2]},
             "train_classes": ["ball", "can"]}
    bench = benchmark_page(table, {"dataset": "d", "seed": 1, "epochs": 2, "modality": "point"},
                           {"ball": "eval_ball/report.html", "can": "eval_can/report.html"})
    assert '<a href="eval_can/report.html">can</a>' in bench and "50.0 ± 10.0" in bench and "plotly" not in bench
