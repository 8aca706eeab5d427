"""The visual report: montage PNG sizes, ROC legend AUROC against a brute-force count, report.md contents."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pointad_pipe.pipeline.outputs.report import MontageSample, class_montage, markdown_report, roc_label, roc_png

DASH = "\u2013"


def _sample(rng: np.random.Generator, i: int, k: int = 9, hw: int = 336) -> MontageSample:
    """A rendering-like view (gradient + noise), a smooth score blob with noise, and a rectangular defect."""
    yy, xx = np.mgrid[:hw, :hw]
    base = (xx + yy) / (2 * hw) * 200 + 30
    images = np.clip(base[None, ..., None] + rng.normal(0, 20, (k, hw, hw, 3)), 0, 255).astype(np.uint8)
    blob = np.exp(-((xx - hw / 3) ** 2 + (yy - hw / 2) ** 2) / (hw * 6))
    scores = np.clip(blob[None] * 0.8 + rng.random((k, hw, hw)) * 0.2, 0, 1).astype(np.float32)
    gt = np.zeros((k, hw, hw), np.uint8)
    gt[:, hw // 3: hw // 3 + 20, hw // 4: hw // 4 + 30] = i % 2
    return MontageSample(f"sample_{i:03d}", i % 2, float(scores.max()), images, scores, gt)


def _montage_size(tmp_path: Path, n: int, k: int, hw: int = 336) -> tuple[int, int]:
    rng = np.random.default_rng(n * 100 + k)
    path = class_montage(tmp_path / f"m_{n}_{k}_{hw}.png", "box", [_sample(rng, i, k, hw) for i in range(n)])
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        return im.size


# ---------------------------------------------------------------- class_montage


def test_montage_is_small_png_for_four_samples_nine_views(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    path = class_montage(tmp_path / "sub" / "box.png", "box", [_sample(rng, i) for i in range(4)])
    assert path == tmp_path / "sub" / "box.png"
    with Image.open(path) as im:
        assert im.format == "PNG"
        w, h = im.size
    assert path.stat().st_size < 2 * 1024 * 1024
    # 9 views of at most ~112 px side by side, 4 samples x 3 rows of ~112 px stacked
    assert 9 * 100 <= w <= 9 * 112 + 250
    assert 12 * 100 <= h <= 12 * 112 + 4 * 60 + 120


def test_montage_size_follows_rows_and_columns(tmp_path: Path) -> None:
    w1, h1 = _montage_size(tmp_path, n=1, k=3)
    w2, h2 = _montage_size(tmp_path, n=2, k=3)
    w4, h4 = _montage_size(tmp_path, n=4, k=3)
    w9, h9 = _montage_size(tmp_path, n=1, k=9)
    assert w1 == w2 == w4  # samples stack vertically only
    block = h2 - h1  # one sample = a title line + 3 rows of views
    assert 3 * 100 < block <= 3 * 112 + 60
    assert abs((h4 - h1) - 3 * block) <= 2
    assert h9 == h1  # more views widen only
    per_view = (w9 - w1) / 6
    assert 100 <= per_view <= 112  # 336 px views are shrunk to ~112 px


def test_montage_small_views_are_not_enlarged_and_vmax_is_accepted(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    w3, _ = _montage_size(tmp_path, n=1, k=3, hw=48)
    w5, _ = _montage_size(tmp_path, n=1, k=5, hw=48)
    assert (w5 - w3) / 2 == pytest.approx(48, abs=1)
    samples = [_sample(rng, i, k=2, hw=48) for i in range(2)]
    samples[0].scores[0, 0, 0] = np.nan  # a NaN score must neither raise nor break the scale
    path = class_montage(tmp_path / "v.png", "cup", samples, vmax=0.5)
    with Image.open(path) as im:
        assert im.size[0] > 0


def _red_pixels(path: Path) -> int:
    with Image.open(path) as im:
        a = np.asarray(im.convert("RGB")).astype(int)
    return int(((a[..., 0] > 150) & (a[..., 1] < 110) & (a[..., 2] < 110)).sum())


def test_montage_outlines_ground_truth_even_thin_defects(tmp_path: Path) -> None:
    """Zero scores (deep blue under jet) and grey renderings: red appears only where the GT row marks a defect."""
    k, hw = 2, 336
    images = np.full((k, hw, hw, 3), 128, np.uint8)
    scores = np.zeros((k, hw, hw), np.float32)
    square, thin = np.zeros((k, hw, hw), np.uint8), np.zeros((k, hw, hw), np.uint8)
    square[0, 50:110, 50:110] = 1  # 60x60 at 336 px = about 20x20 in the figure
    thin[1, 100:200, 150] = 1  # one pixel wide, off the 3x grid's sample points: must survive the shrink
    red = [_red_pixels(class_montage(tmp_path / f"{i}.png", "box", [MontageSample("s", 1, 1.0, images, scores, g)],
                                     vmax=1.0)) for i, g in enumerate([np.zeros_like(thin), square, thin])]
    assert red[1] - red[0] >= 0.8 * 20 * 20
    assert red[2] - red[0] >= 0.8 * 100 / 3


def test_montage_rejects_empty_class(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no samples"):
        class_montage(tmp_path / "e.png", "box", [])


# ---------------------------------------------------------------- ROC


def _auroc_pairs(y: np.ndarray, s: np.ndarray) -> float:
    """P(score of a positive > score of a negative), ties counting one half: every pair counted."""
    pos, neg = s[y == 1], s[y == 0]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_roc_label_auroc_matches_pairwise_count(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 60)
    y[:2] = [0, 1]
    s = np.round(rng.normal(size=60) + 0.8 * y, 1)  # rounding makes ties, which count one half
    label = roc_label("box", y, s)
    m = re.fullmatch(r"box \(AUROC (\d\.\d{3})\)", label)
    assert m, label
    assert float(m.group(1)) == pytest.approx(_auroc_pairs(y, s), abs=5e-4)


def test_roc_label_known_values() -> None:
    assert roc_label("a", np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.3, 0.4])) == "a (AUROC 1.000)"
    assert roc_label("b", np.array([0, 0, 1, 1]), np.array([0.4, 0.3, 0.2, 0.1])) == "b (AUROC 0.000)"
    assert roc_label("c", np.array([0, 1, 0, 1]), np.array([0.1, 0.2, 0.3, 0.4])) == "c (AUROC 0.750)"
    assert roc_label("d", np.array([1, 1, 1]), np.array([0.1, 0.2, 0.3])) == "d (one class only)"


def test_roc_png_writes_png_and_survives_one_class_curve(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    y = np.array([0] * 20 + [1] * 20)
    curves = {"box": (y, rng.normal(size=40) + y), "cup": (np.zeros(10, int), rng.random(10)),
              "mean": (y, rng.random(40))}
    path = roc_png(tmp_path / "roc" / "roc.png", curves, "ROC: one-vs-rest")
    with Image.open(path) as im:
        assert im.format == "PNG"
        assert min(im.size) >= 200
    empty = roc_png(tmp_path / "roc_empty.png", {}, "nothing")
    assert empty.stat().st_size > 0


# ---------------------------------------------------------------- markdown_report


REPORT = {
    "dataset": "synthetic", "protocol": "one-vs-rest", "train_classes": ["ball", "cone"], "seed": 111,
    "grid": [336, 336], "aupro": "official (exact, FPR 0.3) and pointad (200 thresholds)", "rgb": False,
    "per_class": {
        "box": {"zeta": 0.5, "aupro_pointad": 0.8, "p_auroc": 0.55, "ap": 0.7, "i_auroc": 0.61,
                "aupro_official": 0.9},
        "cup": {"zeta": 0.25, "aupro_pointad": 0.4321, "p_auroc": 0.987, "ap": float("nan"), "i_auroc": 0.5,
                "aupro_official": 0.123},
    },
    "mean": {"zeta": 0.375, "aupro_pointad": 0.61605, "p_auroc": 0.7684, "ap": 0.7, "i_auroc": 0.555,
             "aupro_official": 0.5114},
}


def _table(text: str) -> list[list[str]]:
    rows = [ln for ln in text.splitlines() if ln.startswith("|")]
    return [[c.strip() for c in ln.strip().strip("|").split("|")] for ln in rows]


def test_markdown_table_numbers_order_and_mean(tmp_path: Path) -> None:
    figures = {"box": {"montage": "figures/box_montage.png", "roc": "figures/box_roc.png"},
               "cup": {"montage": "figures/cup_montage.png"}}
    path = markdown_report(tmp_path / "run", REPORT, figures, notes=["first note", "second note"])
    assert path == tmp_path / "run" / "report.md"
    text = path.read_text(encoding="utf-8")
    table = _table(text)
    assert table[0] == ["class", "I-AUROC", "AP", "P-AUROC", "AUPRO (official)", "AUPRO (PointAD-style)", "zeta"]
    assert set(table[1][0]) <= set("-:") and len(table[1]) == len(table[0])
    assert table[2] == ["box", "61.0", "70.0", "55.0", "90.0", "80.0", "50.0"]
    assert table[3] == ["cup", "50.0", DASH, "98.7", "12.3", "43.2", "25.0"]
    assert table[4] == ["**mean**", "**55.5**", "**70.0**", "**76.8**", "**51.1**", "**61.6**", "**37.5**"]
    assert len(table) == 5
    assert "# " in text.splitlines()[0] and "synthetic" in text.splitlines()[0]
    for bit in ["one-vs-rest", "ball, cone", "111", "336 \u00d7 336", "FPR 0.3", "RGB fusion: off"]:
        assert bit in text, bit
    assert re.search(r"PointAD-style.*paper", text) and "MVTec 3D-AD" in text
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert links == ["figures/box_montage.png", "figures/box_roc.png", "figures/cup_montage.png"]
    assert text.index("### box") < text.index("figures/box_roc.png") < text.index("### cup")
    notes = text[text.index("## Notes"):]
    assert "- first note" in notes and "- second note" in notes


def test_markdown_unorganized_keys_and_no_notes(tmp_path: Path) -> None:
    report = {"dataset": "real3d", "train_classes": ["airplane"], "seed": 0, "grid": "full resolution",
              "aupro": "none",
              "per_class": {"car": {"p_ap": 0.031, "p_auroc": 0.7, "ap": 0.66, "i_auroc": float("nan")}},
              "mean": {"p_ap": 0.031, "p_auroc": 0.7, "ap": 0.66, "i_auroc": float("nan")}}
    text = markdown_report(tmp_path, report, {}).read_text(encoding="utf-8")
    table = _table(text)
    assert table[0] == ["class", "I-AUROC", "AP", "P-AUROC", "P-AP"]
    assert table[2] == ["car", DASH, "66.0", "70.0", "3.1"]
    assert table[3][0] == "**mean**" and table[3][1] in {DASH, f"**{DASH}**"}
    assert "## Notes" not in text and "## Figures" not in text
    assert "full resolution" in text and "RGB fusion: n/a" in text
    fused = markdown_report(tmp_path / "f", {**report, "rgb": True, "modality": "fused"}, {}).read_text()
    assert "RGB fusion: on (modality: fused)" in fused


def test_markdown_mean_computed_when_missing(tmp_path: Path) -> None:
    report = {k: v for k, v in REPORT.items() if k != "mean"}
    table = _table(markdown_report(tmp_path, report, {}).read_text(encoding="utf-8"))
    assert table[-1][0] == "**mean**"
    assert table[-1][2] == "**70.0**"  # nanmean skips cup's NaN AP
    assert math.isclose(float(table[-1][1].strip("*")), 55.5)
