"""`report.html`: one self-contained page per run, with the metrics, curves, misses and a 3D view to turn.

Plotly draws the curves and the 3D view; its JavaScript is embedded once (about 4.8 MB), so the page
opens from disk with no network and no server. The numbers come from the same report dict that
`metrics.json` holds, and the clouds from the same point scores `scores.zarr` holds (thinned by
`page_data`), so the page and the files cannot disagree. Arrays travel as base64 little-endian
bytes (`{dtype, bdata}`), a quarter the size of JSON numbers.
"""

from __future__ import annotations

import base64
import html
import json
import math
from dataclasses import dataclass, field
from functools import cache, lru_cache
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import write_text
from .page_data import ErrorCase, PageCloud, best_f1_threshold
from .tables import DASH, HEADERS, metric_columns

DATA_ID = "pointad-clouds"  # the <script> holding the clouds (viewer.js reads it; tests read it too)


@dataclass
class ClassPage:
    """What the page shows of one class."""

    name: str
    ids: list[str]
    labels: np.ndarray  # (n,) 1 anomalous, 0 good
    global_scores: np.ndarray  # (n,)
    roc: dict[str, tuple[np.ndarray, np.ndarray] | None] = field(default_factory=dict)  # name -> (fpr, tpr)
    auroc: dict[str, float] = field(default_factory=dict)  # name -> AUROC from the run's metrics
    errors: list[ErrorCase] = field(default_factory=list)
    clouds: list[PageCloud] = field(default_factory=list)


@cache
def _asset(name: str) -> str:
    return files("pointad_pipe.pipeline.outputs").joinpath("assets", name).read_text(encoding="utf-8")


@lru_cache(maxsize=1)
def plotly_js() -> str:
    """plotly.js, minified, as the plotly package ships it (no CDN: the page must open offline)."""
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


def packed(a: np.ndarray, dtype: str) -> dict[str, str]:
    """An array as {dtype, bdata}: base64 of its little-endian bytes (f4, u1 or i4)."""
    np_type = {"f4": "<f4", "u1": "u1", "i4": "<i4"}[dtype]
    return {"dtype": dtype, "bdata": base64.b64encode(np.ascontiguousarray(a, np_type).tobytes()).decode()}


def unpacked(spec: dict[str, str]) -> np.ndarray:
    """`packed`'s inverse (for readers of a page, the tests among them)."""
    np_type = {"f4": "<f4", "u1": "u1", "i4": "<i4"}[spec["dtype"]]
    return np.frombuffer(base64.b64decode(spec["bdata"]), np_type)


def _pct(v: Any) -> str:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return DASH
    return f"{100 * x:.1f}" if math.isfinite(x) else DASH


def metrics_table(report: dict[str, Any]) -> str:
    """The per-class and mean metrics as percentages; each cell's exact value is in its `data-value`."""
    per_class, mean = report.get("per_class", {}), report.get("mean", {})
    cols = metric_columns({k for vals in [*per_class.values(), mean] for k in vals})
    head = "".join(f"<th>{html.escape(HEADERS.get(c, c))}</th>" for c in cols)
    lines = [f'<table class="metrics" id="metrics"><thead><tr><th>class</th>{head}</tr></thead><tbody>']
    for name, vals, css in [*((c, v, "") for c, v in per_class.items()), ("mean", mean, "mean")]:
        cells = "".join(f'<td data-metric="{c}" data-value="{json.dumps(vals.get(c))}">{_pct(vals.get(c))}</td>'
                        for c in cols)
        lines.append(f'<tr class="{css}" data-class="{html.escape(name)}"><td>{html.escape(name)}</td>{cells}</tr>')
    lines.append("</tbody></table>")
    return "\n".join(lines)


def _figure(fig: Any, div_id: str) -> str:
    import plotly.io as pio

    return pio.to_html(fig, full_html=False, include_plotlyjs=False, div_id=div_id,
                       config={"displaylogo": False, "responsive": True})


def roc_figure(page: ClassPage) -> Any:
    """ROC curves (sample-level and point-level) with a chance diagonal."""
    import plotly.graph_objects as go

    fig = go.Figure(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="chance", line={"dash": "dash", "color": "#999"}))
    for name, curve in page.roc.items():
        auc = page.auroc.get(name)
        label = name + (f" (AUROC {auc:.3f})" if auc is not None and math.isfinite(auc) else "")
        if curve is None:
            fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", name=f"{name} (one class only)"))
            continue
        fig.add_trace(go.Scatter(x=curve[0], y=curve[1], mode="lines", name=label, line={"shape": "hv"}))
    fig.update_layout(title=f"{page.name}: ROC", width=440, height=420, margin={"l": 50, "r": 10, "t": 40, "b": 40},
                      xaxis={"title": {"text": "false positive rate"}, "range": [0, 1]},
                      yaxis={"title": {"text": "true positive rate"}, "range": [0, 1.02]},
                      legend={"x": 0.35, "y": 0.05})
    return fig


def histogram_figure(page: ClassPage, threshold: tuple[float, float] | None) -> Any:
    """Global scores of good and anomalous samples, overlaid, with the best-F1 threshold as a line."""
    import plotly.graph_objects as go

    fig = go.Figure()
    lo, hi = (float(page.global_scores.min()), float(page.global_scores.max())) if page.global_scores.size else (0, 1)
    bins = {"start": lo, "end": hi + 1e-9, "size": max(hi - lo, 1e-9) / 20}  # the same 20 bins for both
    for value, name, colour in ((0, "good", "#2a7ab9"), (1, "anomalous", "#d6402b")):
        picked = page.global_scores[page.labels == value]
        fig.add_trace(go.Histogram(x=picked, name=f"{name} ({picked.size})", opacity=0.6, xbins=bins,
                                   autobinx=False, marker={"color": colour}))
    if threshold is not None:
        fig.add_vline(x=threshold[0], line={"color": "black", "dash": "dot"},
                      annotation_text=f"best F1 {threshold[1]:.3f} at {threshold[0]:.4f}")
    fig.update_layout(title=f"{page.name}: global scores", barmode="overlay", width=520, height=420,
                      margin={"l": 50, "r": 10, "t": 40, "b": 40}, xaxis={"title": {"text": "global score"}},
                      yaxis={"title": {"text": "samples"}})
    return fig


def _png_tag(png: bytes, alt: str) -> str:
    """A PNG inside the page (a data URI), so the page needs no file beside it."""
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def _show_button(page: ClassPage, sample_id: str) -> str:
    """A button that opens the sample in the 3D view, when the page carries its cloud."""
    if not any(c.sample_id == sample_id for c in page.clouds):
        return ""
    return (f'<button class="show3d" data-class="{html.escape(page.name)}" '
            f'data-sample="{html.escape(sample_id)}">view in 3D</button>')


def _errors_html(page: ClassPage, threshold: tuple[float, float] | None) -> str:
    if not page.errors:
        return "<p>No good or anomalous samples to list.</p>"
    parts = []
    for kind in ("false positive", "missed defect"):
        cases = [e for e in page.errors if e.kind == kind]
        title = "Top false positives (good, highest global score)" if kind == "false positive" else \
            "Missed defects (anomalous, lowest global score)"
        parts.append(f"<h4>{title}</h4>" + ("" if cases else "<p>none in this class</p>"))
        for e in cases:
            side = "" if threshold is None else (" (above" if e.global_score >= threshold[0] else " (below") \
                + " the best-F1 threshold)"
            img = "" if e.figure is None else _png_tag(e.figure, e.sample_id)
            parts.append(f'<div class="case" data-kind="{kind}" data-sample="{html.escape(e.sample_id)}">'
                         f'<div class="what">{html.escape(e.sample_id)}: global score '
                         f'<span class="score">{e.global_score:.4f}</span>, rank {e.rank} of {len(page.ids)}{side} '
                         f'{_show_button(page, e.sample_id)}</div>{img}</div>')
    return "\n".join(parts)


def _clouds_json(pages: list[ClassPage]) -> str:
    classes = {}
    for p in pages:
        if not p.clouds:
            continue
        top = max(float(np.max(c.score, initial=0.0)) for c in p.clouds)
        classes[p.name] = {"vmax": top if top > 0 else 1.0, "clouds": [
            {"id": c.sample_id, "label": c.label, "global_score": c.global_score, "n_points": c.n_points,
             "shown": int(c.index.size), "gt_points": int(c.gt.sum()), "index": packed(c.index, "i4"),
             "pos": packed(c.xyz, "f4"), "score": packed(c.score, "f4"), "gt": packed(c.gt, "u1")}
            for c in p.clouds]}
    # `</` would end the <script> early; JSON allows `<\/`
    return json.dumps({"classes": classes}, separators=(",", ":")).replace("</", "<\\/")


def _viewer_html(pages: list[ClassPage]) -> str:
    if not any(p.clouds for p in pages):
        return "<p>No cloud to show.</p>"
    return ('<div class="picker"><label>class <select id="pick-class"></select></label>'
            '<label>sample <select id="pick-sample"></select></label>'
            '<label><input type="checkbox" id="show-gt" checked> show ground truth (white)</label></div>'
            '<div id="cloud3d"></div><p id="cloud-caption"></p>'
            f'<script type="application/json" id="{DATA_ID}">{_clouds_json(pages)}</script>')


def page(title: str, body: str) -> str:
    """The whole document: styles, plotly.js, the body (the 3D viewer's data in it), then the viewer's script."""
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{_asset('page.css')}</style>"
            f"<script>{plotly_js()}</script></head><body>\n{body}\n"
            f"<script>{_asset('viewer.js')}</script></body></html>\n")


def _viewer_section(pages: list[ClassPage]) -> str:
    return f'<h2 id="view3d">3D view</h2>{_viewer_html(pages)}'


def _settings(report: dict[str, Any]) -> str:
    grid = report.get("grid", "n/a")
    grid = " \u00d7 ".join(map(str, grid)) if isinstance(grid, list) else str(grid)
    items = [("protocol", report.get("protocol")), ("training classes", ", ".join(report.get("train_classes", []))),
             ("model", report.get("model")), ("modality", report.get("modality")), ("grid", grid),
             ("seed", report.get("seed"))]
    return "<ul class=\"settings\">" + "".join(f"<li>{k}: {html.escape(str(v))}</li>" for k, v in items) + "</ul>"


def evaluation_page(report: dict[str, Any], pages: list[ClassPage], notes: list[str]) -> str:
    """The evaluate run's page: settings, metrics, per class the curves and error cases, then the 3D view."""
    body = [f"<h1>PointAD evaluation: {html.escape(str(report.get('dataset', '')))}</h1>", _settings(report),
            "<h2>Metrics</h2><p>Values are percentages (metric \u00d7 100); " + DASH + " marks an undefined one.</p>",
            metrics_table(report)]
    body += [f'<p class="note">{html.escape(n)}</p>' for n in notes]
    body.append(_viewer_section(pages))
    for p in pages:
        threshold = best_f1_threshold(p.labels, p.global_scores)
        body += [f'<h2 id="class-{html.escape(p.name)}">{html.escape(p.name)}</h2>',
                 f'<div class="row">{_figure(roc_figure(p), f"roc-{p.name}")}'
                 f'{_figure(histogram_figure(p, threshold), f"hist-{p.name}")}</div>',
                 "<h3>Error analysis</h3><p>Each: its views (top), score maps over them (middle, jet, 0 to the "
                 "sample's highest score), GT in red (bottom).</p>",
                 _errors_html(p, threshold)]
    return page(f"PointAD evaluation: {report.get('dataset', '')}", "\n".join(body))


def prediction_page(name: str, record: dict[str, Any], cloud: PageCloud, views_png: bytes | None) -> str:
    """One predicted file's page: its global score, its views and score maps, and its cloud in 3D."""
    facts = "".join(f"<li>{html.escape(k)}: {html.escape(str(v))}</li>" for k, v in record.items()
                    if k in ("file", "global_score", "max_point_score", "points", "input_points", "sampled_to"))
    img = "" if views_png is None else _png_tag(views_png, "views")
    only = ClassPage(name, [cloud.sample_id], np.array([cloud.label]), np.array([cloud.global_score]), clouds=[cloud])
    body = f"<h1>PointAD prediction: {html.escape(name)}</h1><ul class=\"settings\">{facts}</ul>" \
           f"{_viewer_section([only])}<h2>Views</h2><p>Its renderings (top) and score maps (middle).</p>{img}"
    return page(f"PointAD prediction: {name}", body)


def benchmark_page(table: dict[str, Any], header: dict[str, Any], run_links: dict[str, str]) -> str:
    """The benchmark's page: mean ± std per class over the training runs, and links to each run's report.html.

    No plot, so no plotly.js: a few kilobytes.
    """
    keys = metric_columns(table["mean"])
    head = "".join(f"<th>{html.escape(HEADERS.get(k, k))}</th>" for k in keys)
    rows = []
    for name, vals, css in [*((c, v, "") for c, v in table["per_class"].items()), ("mean", table["mean"], "mean")]:
        cells = "".join(f'<td data-metric="{k}" data-value="{json.dumps(vals[k][0])}">'
                        f"{_pct(vals[k][0])}{'' if vals[k][2] < 2 else ' ± ' + _pct(vals[k][1])}</td>" for k in keys)
        rows.append(f'<tr class="{css}" data-class="{html.escape(name)}"><td>{html.escape(name)}</td>{cells}</tr>')
    links = ", ".join(f'<a href="{html.escape(run_links[c])}">{html.escape(c)}</a>' for c in table["train_classes"])
    body = (f"<h1>PointAD benchmark: {html.escape(str(header['dataset']))}</h1><ul class=\"settings\">"
            f"<li>training classes: {html.escape(', '.join(table['train_classes']))} (one checkpoint each, seed "
            f"{header['seed']}, {header['epochs']} epochs)</li><li>protocol: one-vs-rest; modality: "
            f"{html.escape(str(header['modality']))}</li></ul><p>Cells: mean ± sample standard deviation over the "
            "training runs that scored the class, ×100.</p>"
            f'<table class="metrics" id="metrics"><thead><tr><th>class</th>{head}</tr></thead><tbody>'
            + "".join(rows) + f"</tbody></table><p>Per-run reports (curves, misses, 3D): {links}</p>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>PointAD benchmark</title><style>{_asset('page.css')}</style></head><body>{body}</body></html>\n")


def write_page(path: Path, text: str) -> Path:
    """Write a page atomically (a reader never opens half of one)."""
    return write_text(path, text)
