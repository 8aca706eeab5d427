"""The visual report of an evaluate run: per-class montages, ROC curves and a `report.md`.

Figures are drawn with matplotlib's object API (`Figure` + the Agg canvas), never pyplot, so the
report leaves no global state behind and runs headless. Montages are downsampled before drawing
(at most `CELL_PX` pixels a view) so that a class of 4 samples x 9 views stays a small PNG.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .atomic import atomic_path, write_text
from .tables import DASH, HEADERS, metric_columns

CELL_PX = 112  # largest side of one view in a montage, in figure pixels
DPI = 100


@dataclass
class MontageSample:
    """One test sample as the montage shows it: K views, their score maps and ground truth."""

    sample_id: str
    label: int  # 0 good, 1 anomalous, -1 unknown (predict)
    global_score: float
    images: np.ndarray  # (K, H, W, 3) uint8
    scores: np.ndarray  # (K, H, W) float
    gt: np.ndarray  # (K, H, W) uint8 0/1


def _shrink(a: np.ndarray, size: tuple[int, int], mode: str) -> np.ndarray:
    """Box-filter one view to `size` (w, h); a mask keeps every pixel its box touched, so small defects stay visible."""
    if a.shape[1] == size[0] and a.shape[0] == size[1]:
        return a
    if mode == "mask":
        return np.asarray(Image.fromarray((a > 0).astype(np.uint8) * 255).resize(size, Image.Resampling.BOX)) > 0
    if mode == "float":
        return np.asarray(Image.fromarray(a.astype(np.float32)).resize(size, Image.Resampling.BOX))
    return np.asarray(Image.fromarray(a).resize(size, Image.Resampling.BOX))


def _save(fig: Any, path: Path, palette: bool = False) -> Path:
    """Render with Agg and write a PNG; `palette` quantizes to 256 colours, which bounds a montage near 1 byte/pixel."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    img = Image.fromarray(np.asarray(canvas.buffer_rgba())).convert("RGB")
    if palette:
        img = img.quantize(256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE)
    with atomic_path(path, keep_suffix=True) as tmp:
        img.save(tmp, format="PNG", optimize=True)
    return path


def class_montage(path: Path, cls: str, samples: list[MontageSample], vmax: float | None = None) -> Path:
    """Draw one PNG for a class: per sample a rendering row, a heat-map row and a GT row, one column per view.

    The colour scale (0..vmax, vmax defaulting to the largest score in the class) is shared by all samples,
    so heat maps compare across samples, which is what a reader checks when a good sample scores high.
    """
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    if not samples:
        raise ValueError(f"class_montage({cls!r}): no samples")
    if vmax is None:
        top = max((float(s.scores[np.isfinite(s.scores)].max(initial=0.0)) for s in samples), default=0.0)
        vmax = top if top > 0 else 1.0
    norm, cmap = Normalize(0.0, vmax), "jet"
    k = max(s.images.shape[0] for s in samples)
    h, w = samples[0].images.shape[1:3]
    f = max(1.0, max(h, w) / CELL_PX)
    size = (max(1, round(w / f)), max(1, round(h / f)))  # (w, h) of one cell in pixels
    cw, ch = size[0] / DPI, size[1] / DPI
    left, right, top_m, title_h, gap = 0.35, 0.75, 0.35, 0.25, 0.05  # inches
    width = left + k * cw + right
    block = title_h + 3 * ch + 2 * gap
    height = top_m + len(samples) * block + 0.1
    fig = Figure(figsize=(width, height), dpi=DPI)
    fig.text(0.5, 1 - 0.18 / height, f"class {cls}", ha="center", va="center", fontsize=10, weight="bold")
    red = np.array([255, 0, 0], np.float32)
    for i, s in enumerate(samples):
        y0 = height - top_m - i * block  # top of this sample's block, inches from the bottom
        name = {0: "good", 1: "anomalous"}.get(s.label, "unlabelled")
        fig.text(left / width, (y0 - title_h / 2) / height, f"{s.sample_id}  |  label {s.label} ({name})  |  "
                 f"global score {s.global_score:.4f}", va="center", fontsize=8)
        for v in range(s.images.shape[0]):
            img = _shrink(np.ascontiguousarray(s.images[v, ..., :3]).astype(np.uint8), size, "rgb")
            score = _shrink(s.scores[v], size, "float")
            mask = _shrink(s.gt[v], size, "mask")
            tint = img.astype(np.float32)
            tint[mask] = 0.45 * tint[mask] + 0.55 * red
            for r, (label, base) in enumerate([("rendering", img), ("score", img), ("GT", tint.astype(np.uint8))]):
                yb = y0 - title_h - (r + 1) * ch - r * gap
                ax = fig.add_axes(((left + v * cw) / width, yb / height, cw / width, ch / height))
                ax.imshow(base, interpolation="nearest")
                if r == 1:  # the heat map over the rendering, so a hot spot can be placed on the shape
                    ax.imshow(np.nan_to_num(score), cmap=cmap, norm=norm, alpha=0.55, interpolation="nearest")
                ax.set_xticks([])
                ax.set_yticks([])
                if v == 0:
                    ax.set_ylabel(label, fontsize=7)
    bar_h = min(height - top_m - 0.1, 3 * ch)
    cax = fig.add_axes(((width - right + 0.15) / width, (height - top_m - bar_h) / height, 0.15 / width,
                        bar_h / height))
    fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), cax=cax).ax.tick_params(labelsize=7)
    return _save(fig, path, palette=True)


def view_strip(path: Path, sample: MontageSample, vmax: float | None = None, gap: int = 2) -> Path:
    """One sample's views as a PNG: renderings, score heat maps over them, GT tinted red; one column per view.

    Composed with numpy and PIL, not a matplotlib figure: about 20x quicker than `class_montage`,
    which matters because report.html draws one per error case of every class. The heat maps share
    one scale, 0..vmax (default: the sample's highest score).
    """
    from matplotlib import colormaps

    scores = np.nan_to_num(np.asarray(sample.scores, np.float32))
    top = float(scores.max(initial=0.0)) if vmax is None else vmax
    h, w = sample.images.shape[1:3]
    f = max(1.0, max(h, w) / CELL_PX)
    size = (max(1, round(w / f)), max(1, round(h / f)))
    jet = colormaps["jet"]
    red = np.array([255, 0, 0], np.float32)
    columns = []
    for v in range(sample.images.shape[0]):
        img = _shrink(np.ascontiguousarray(sample.images[v, ..., :3]).astype(np.uint8), size, "rgb").astype(np.float32)
        heat = jet(np.clip(_shrink(scores[v], size, "float") / (top or 1.0), 0, 1))[..., :3] * 255
        mask = _shrink(sample.gt[v], size, "mask")
        tint = img.copy()
        tint[mask] = 0.45 * tint[mask] + 0.55 * red
        white = np.full((gap, size[0], 3), 255, np.float32)
        columns.append(np.concatenate([img, white, 0.45 * img + 0.55 * heat, white, tint]))
    sep = np.full((columns[0].shape[0], gap, 3), 255, np.float32)
    strip = np.concatenate([c for col in columns for c in (col, sep)][:-1], axis=1)
    with atomic_path(path, keep_suffix=True) as tmp:
        img = Image.fromarray(np.clip(np.rint(strip), 0, 255).astype(np.uint8))  # 256 colours: about 1 byte/pixel
        img.quantize(256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE).save(tmp, format="PNG")
    return path


def roc_label(name: str, y_true: np.ndarray, y_score: np.ndarray) -> str:
    """The legend text of one curve; separate from the plot so the AUROC it prints can be tested."""
    from sklearn.metrics import roc_auc_score

    y_true = np.asarray(y_true).astype(int).ravel()
    if np.unique(y_true).size < 2:
        return f"{name} (one class only)"
    return f"{name} (AUROC {roc_auc_score(y_true, np.asarray(y_score, dtype=float).ravel()):.3f})"


def roc_png(path: Path, curves: dict[str, tuple[np.ndarray, np.ndarray]], title: str) -> Path:
    """Draw ROC curves, one line per name, with a chance diagonal; a one-class curve is only noted in the legend."""
    from matplotlib.figure import Figure
    from sklearn.metrics import roc_curve

    fig = Figure(figsize=(4.5, 4.5), dpi=DPI)
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], ls="--", color="0.6", lw=1, label="chance")
    for name, (y_true, y_score) in curves.items():
        label = roc_label(name, y_true, y_score)
        if label.endswith("(one class only)"):
            ax.plot([], [], ls="none", label=label)
            continue
        fpr, tpr, _ = roc_curve(np.asarray(y_true).astype(int).ravel(), np.asarray(y_score, dtype=float).ravel())
        ax.plot(fpr, tpr, lw=1.5, label=label)
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="false positive rate", ylabel="true positive rate", title=title)
    ax.legend(loc="lower right", fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def _columns(rows: dict[str, dict[str, float]]) -> list[str]:
    return metric_columns({k for vals in rows.values() for k in vals})


def _pct(v: Any, bold: bool = False) -> str:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return DASH
    if not math.isfinite(x):
        return DASH
    return f"**{100 * x:.1f}**" if bold else f"{100 * x:.1f}"


def _link(path: str) -> str:
    path = str(path).replace("\\", "/")
    return f"<{path}>" if " " in path else path


def markdown_report(out: Path, report: dict, figures: dict[str, dict[str, str]],
                    notes: list[str] | None = None) -> Path:
    """Write `out/report.md`: the run's settings, the metrics table as the paper prints it, figures and notes."""
    per_class: dict[str, dict[str, float]] = report.get("per_class", {})
    mean = report.get("mean") or {k: float(np.nanmean([per_class[c].get(k, np.nan) for c in per_class]))
                                  for k in _columns(per_class)}
    cols = _columns({**per_class, "mean": mean})
    grid = report.get("grid", "n/a")
    grid = " \u00d7 ".join(str(g) for g in grid) if isinstance(grid, (list, tuple)) else str(grid)
    rgb = report.get("rgb")
    lines = [f"# PointAD evaluation: {report.get('dataset', 'n/a')}", "",
             f"- protocol: {report.get('protocol', 'n/a')}",
             f"- training classes: {', '.join(report.get('train_classes', [])) or 'n/a'}",
             f"- seed: {report.get('seed', 'n/a')}",
             f"- grid resolution: {grid}",
             f"- AUPRO variant: {report.get('aupro', 'n/a')}",
             f"- RGB fusion: {'n/a' if rgb is None else ('on' if rgb else 'off')}"
             + (f" (modality: {report['modality']})" if "modality" in report else ""), "",
             "Values are percentages (metric \u00d7 100); " + DASH + " marks a metric that is undefined.", "",
             "| class | " + " | ".join(HEADERS.get(c, c) for c in cols) + " |",
             "|---|" + "---:|" * len(cols)]
    lines += [f"| {c} | " + " | ".join(_pct(per_class[c].get(k)) for k in cols) + " |" for c in per_class]
    lines += ["| **mean** | " + " | ".join(_pct(mean.get(k), bold=True) for k in cols) + " |", ""]
    if any(c.startswith("aupro") for c in cols):
        lines += ["AUPRO (PointAD-style) is the variant the PointAD paper's numbers use; AUPRO (official) is "
                  "MVTec 3D-AD's exact integration up to FPR 0.3.", ""]
    if any(c.endswith("_object") for c in cols):
        lines += ["P-AUROC and the AUPROs are computed as the paper's code does, on the whole smoothed 336² grid, "
                  "where background cells far from the object are easy normals. The *(object)* columns count "
                  "the object's cells only: the gap between the two shows how much of a number is background.", ""]
    if figures:
        lines += ["## Figures", ""]
        for cls in [*[c for c in per_class if c in figures], *[c for c in figures if c not in per_class]]:
            lines += [f"### {cls}", ""]
            lines += [ln for kind, rel in figures[cls].items() for ln in (f"![{cls} {kind}]({_link(rel)})", "")]
    if notes:
        lines += ["## Notes", "", *[f"- {n}" for n in notes], ""]
    return write_text(out / "report.md", "\n".join(lines))
