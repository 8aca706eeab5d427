"""The evaluate job: a checkpoint + the cache -> scored points, metrics per class (METHOD.md §8-9).

Protocols: `one-vs-rest` scores every class of the training dataset except the training ones;
`cross-dataset` scores every class of another dataset encoded by the same model and weights.
Each class is scored, written and measured before the next is read, so memory holds one class's
maps at most. Run folder: `scores.zarr` (`cache.scores`), `metrics.json`/`.csv` (`outputs.tables`),
`report.md` and `figures/` (`outputs.report`), `report.html` (`outputs.html_report`, gathered by
`jobs.report_page`), `clouds/<class>/<id>.ply` (`outputs.scored_cloud`).
`metrics.json` is written last: a run folder without it is an interrupted run.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ...model.inference import score_cloud_maps, view_maps
from ..cache import locks, store
from ..cache.runner import progress
from ..cache.schema import CachedSamples
from ..cache.scores import ScoresStore
from ..cache.view import View
from ..catalog import Catalog, DatasetEntry
from ..errors import CacheMissing, OptionError, PointadError
from ..outputs.html_report import ClassPage, evaluation_page, write_page
from ..outputs.names import safe_name
from ..outputs.page_data import ERROR_CASES, PageCloud, page_cloud
from ..outputs.report import MontageSample, class_montage, markdown_report, roc_png
from ..outputs.scored_cloud import write_scored_ply
from ..outputs.tables import write_metrics
from ..stages.geometry import median_spacing
from ..stages.weights import file_sha256
from .checkpoint import Checkpoint, load_checkpoint, text_features
from .identity import encode_groups, open_view
from .report_page import class_page
from .train import check_model

PROTOCOLS = ("one-vs-rest", "cross-dataset")
AUPRO_NOTE = ("official (exact, FPR 0.3) and pointad (200 arange thresholds); p_auroc and both AUPROs on the "
              "whole smoothed grid as the paper's, *_object on the object's cells only")
MODALITIES = ("point", "fused", "rgb")
TINY_NOTE = ("Features come from the randomly initialised `tiny` model: these numbers measure the pipeline, "
             "not CLIP's zero-shot transfer. For the method's numbers, encode with the real ViT-L-14-336 "
             "backbone and its weights (README: Getting CLIP weights).")


@dataclass(frozen=True)
class EvalOptions:
    """What `evaluate` scores and writes."""

    protocol: str = "one-vs-rest"
    classes: list[str] | None = None
    weights: str | None = None
    modality: str = "point"  # point | fused (RGB fusion) | rgb (RGB alone), METHOD.md §8
    write_ply: bool = True
    montage_samples: int = 4
    errors: int = ERROR_CASES  # false positives and missed defects per class in report.html, each
    progress: bool = True
    train_classes: tuple[str, ...] = ()  # an official checkpoint's training classes (its file does not say)


def find_groups(catalog: Catalog, entry: DatasetEntry, side: dict[str, Any], protocol: str) -> View:
    """The current view of the encode group to score for the protocol."""
    if protocol not in PROTOCOLS:
        raise OptionError("protocol", protocol, f"expected one of {', '.join(PROTOCOLS)}")
    groups = encode_groups(catalog.cache, entry)
    trained_on = side.get("dataset")
    if protocol == "one-vs-rest":
        if trained_on and trained_on != entry.name:
            raise OptionError("protocol", protocol, f"the checkpoint was trained on dataset {trained_on!r}, not "
                                                    f"{entry.name!r}: score another dataset with cross-dataset")
        fp = side["encode_fingerprint"]  # a converted schema-1 group answers to its old fingerprint too
        named = [g for g in groups if fp in (g.attrs["fingerprint"], g.attrs.get("converted_from"))]
        enc = named[-1] if named else None
        if enc is None:
            raise PointadError(f"the checkpoint was trained on encode/{side['encode_fingerprint']}, which dataset "
                               f"{entry.name!r} does not hold; encode it with the same model and config first")
    else:
        fits = [g for g in groups
                if g.attrs.get("model") == side["model"] and g.attrs.get("weights_sha256") == side["weights_sha256"]
                and all(x in g.attrs.get("layers", []) for x in side["scored_layers"])]
        if not fits:
            raise CacheMissing("encode", entry.name, catalog.cache,
                               f" by {side['model']} with the checkpoint's weights and layers {side['scored_layers']}")
        enc = fits[-1]
    return open_view(catalog.cache, entry, enc)


def choose_classes(present: list[str], trained: list[str], protocol: str, asked: list[str] | None) -> list[str]:
    """The classes to score: the protocol's pool, or the asked ones after checking them against it."""
    pool = sorted(set(present) - set(trained)) if protocol == "one-vs-rest" else sorted(set(present))
    if not asked:
        if not pool:
            raise PointadError(f"nothing to evaluate: the dataset's classes {sorted(set(present))} are all training "
                               f"classes; score another dataset with the cross-dataset protocol")
        return pool
    unknown = sorted(set(asked) - set(present))
    if unknown:
        raise OptionError("classes", unknown, f"not in the dataset (it has {sorted(set(present))})")
    held = sorted(set(asked) - set(pool))
    if held:
        raise OptionError("classes", held, "the checkpoint was trained on them; one-vs-rest scores other classes")
    return list(asked)


@dataclass
class ClassMaps:
    """One class's scored rows, held until its metrics are computed."""

    rows: list[int] = field(default_factory=list)
    globals_: list[float] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    scores: list[np.ndarray] = field(default_factory=list)
    point_labels: list[np.ndarray] = field(default_factory=list)
    grids: np.ndarray | None = None  # (n, H, W) float32 whole smoothed grids, filled in place
    gts: np.ndarray | None = None  # (n, H, W) uint8
    valids: np.ndarray | None = None  # (n, H, W) bool: the object's cells
    clouds: list[PageCloud] = field(default_factory=list)  # thinned for report.html's 3D view

    def metrics(self, organized: bool) -> dict[str, float]:
        """METHOD.md §9 on this class: whole-grid metrics and their `object` companions, or the Real3D protocol."""
        from ...model.metrics import (
            aupro_official,
            aupro_pointad,
            image_metrics,
            pixel_auroc_grid,
            real3d_point_metrics,
        )

        res = image_metrics(np.array(self.globals_), np.array(self.labels))
        if organized:
            for suffix, valid in (("", None), ("_object", self.valids)):
                res[f"p_auroc{suffix}"] = pixel_auroc_grid(self.grids, self.gts, valid)
                res[f"aupro_official{suffix}"] = aupro_official(self.grids, self.gts, valid=valid)
                res[f"aupro_pointad{suffix}"] = aupro_pointad(self.grids, self.gts, valid=valid)
        else:
            res.update(real3d_point_metrics(self.scores, self.point_labels))
        return {k: float(v) for k, v in res.items()}


def _montage_rows(rows: list[int], labels: list[int], count: int) -> list[int]:
    """Up to `count` rows for the montage: anomalous ones first (half, rounded up), then good ones."""
    bad = [r for r, y in zip(rows, labels, strict=True) if y == 1]
    good = [r for r, y in zip(rows, labels, strict=True) if y != 1]
    take_bad = min(len(bad), max(count - len(good), (count + 1) // 2))
    return bad[:take_bad] + good[:count - take_bad]


def options_record(opts: EvalOptions) -> dict[str, Any]:
    """The options that change a run folder's content (not the progress bar)."""
    record = {k: v for k, v in asdict(opts).items() if k not in ("progress", "weights")}
    if not record["train_classes"]:
        del record["train_classes"]  # our checkpoints name their classes; records stay as before
    return record


def finished_run(out: Path, checkpoint: Path, opts: EvalOptions) -> dict[str, Any] | None:
    """The metrics of a finished run folder made from this checkpoint with these options, else None."""
    path = out / "metrics.json"
    if not path.is_file():
        return None
    report = json.loads(path.read_text())
    same = (report.get("checkpoint_sha256") == file_sha256(checkpoint)
            and report.get("options") == json.loads(json.dumps(options_record(opts))))
    return report if same else None


@dataclass
class Run:
    """Everything scoring a class needs, gathered once."""

    ckpt: Checkpoint
    samples: CachedSamples
    meta: store.Meta
    text: Any
    prompt_classes: list[str] | None
    grid_shape: tuple[int, int] | None
    scores: ScoresStore
    opts: EvalOptions
    out: Path
    view: View | None = None

    @property
    def organized(self) -> bool:
        """Organized sources are scored and measured on their grid."""
        return self.grid_shape is not None


def _score_row(run: Run, r: int, cls_text: Any) -> tuple[np.ndarray, float, Any, PageCloud]:
    """One row's final point map and global score (and, organized, its whole-grid maps), stored in scores.zarr."""
    row = run.samples.scoring(r, run.organized, with_rgb=run.opts.modality != "point")
    scored = score_cloud_maps(row.patch, row.glob, row.pt2pix, cls_text, run.samples.grid, run.samples.size,
                              row.xyz, row.grid, run.grid_shape, None if run.organized else median_spacing(row.xyz),
                              run.ckpt.config.tau, rgb=row.rgb, modality=run.opts.modality)
    amap, g = scored.points, scored.global_score
    grids = None
    if run.organized:
        grids = (scored.grid.astype(np.float32), np.zeros(run.grid_shape, np.uint8), np.zeros(run.grid_shape, bool))
        grids[1].flat[row.grid], grids[2].flat[row.grid] = row.y, True
    run.scores.write(r, amap, row.y, g, grids)
    if run.opts.write_ply:
        cls = run.meta.classes[r]
        write_scored_ply(run.out / "clouds" / cls / f"{safe_name(run.meta.ids[r])}.ply", row.xyz, amap, vmax=1.0)
    cloud = page_cloud(run.meta.ids[r], int(run.meta.labels[r]), g, row.xyz, amap, row.y)
    return amap.astype(np.float32), g, (row.y, grids), cloud


def score_class(run: Run, cls: str, rows: list[int],
                tick: Callable[[], None]) -> tuple[dict[str, float], dict, ClassPage]:
    """Score one class's rows; return its metrics, its figures' relative paths and its part of report.html."""
    acc = ClassMaps()
    if run.organized:
        acc.grids = np.zeros((len(rows), *run.grid_shape), np.float32)
        acc.gts = np.zeros((len(rows), *run.grid_shape), np.uint8)
        acc.valids = np.zeros((len(rows), *run.grid_shape), bool)
    cls_text = run.text[run.prompt_classes.index(cls)] if run.prompt_classes else run.text
    for i, r in enumerate(rows):
        amap, g, (y, grids), cloud = _score_row(run, r, cls_text)
        acc.clouds.append(cloud)
        acc.rows.append(r)
        acc.globals_.append(g)
        acc.labels.append(int(run.meta.labels[r]))
        acc.scores.append(amap)
        acc.point_labels.append(y)
        if grids is not None:
            acc.grids[i], acc.gts[i], acc.valids[i] = grids
        tick()
    return acc.metrics(run.organized), _class_figures(run, cls, acc, cls_text), class_page(run, cls, acc, cls_text)


def _class_figures(run: Run, cls: str, acc: ClassMaps, cls_text: Any) -> dict[str, str]:
    """A class's montage and ROC curves under figures/; their paths relative to the run folder."""
    montage = []
    for r in _montage_rows(acc.rows, acc.labels, run.opts.montage_samples):
        m = run.samples.montage(r)
        montage.append(MontageSample(run.meta.ids[r], int(run.meta.labels[r]), run.scores.global_score(r),
                                     m.images, view_maps(m.patch, cls_text, run.samples.grid, run.samples.size),
                                     m.mask))
    figs, figures = run.out / "figures", {}
    if montage:
        figures["montage"] = class_montage(figs / f"{cls}_montage.png", cls, montage).relative_to(run.out).as_posix()
    figures["roc"] = roc_png(figs / f"{cls}_roc.png", {
        "image": (np.array(acc.labels), np.array(acc.globals_)),
        "point": (np.concatenate(acc.point_labels), np.concatenate(acc.scores))}, f"{cls}: ROC").relative_to(
        run.out).as_posix()
    return figures


def unscored_reason(view: View, cls: str) -> str:
    """Why a class has nothing to score: its samples without an encoded row, or without a known label."""
    lost = view.missing_classes.count(cls)
    if lost:
        return f"{lost} samples have no encoded row (they failed in an earlier stage, or are not encoded yet)"
    return "its samples have no known label (-1), so they cannot be measured"


def _open_run(catalog: Catalog, entry: DatasetEntry, checkpoint: Path, out: Path,
              opts: EvalOptions) -> tuple[Run, list[str], list[int], Any]:
    """Check the checkpoint against the cache, pick the classes and rows, start scores.zarr."""
    if opts.modality not in MODALITIES:
        raise OptionError("modality", opts.modality, f"expected one of {MODALITIES}")
    if opts.errors < 0 or opts.montage_samples < 0:
        bad = ("errors", opts.errors) if opts.errors < 0 else ("montage_samples", opts.montage_samples)
        raise OptionError(*bad, "must be 0 or more")
    ckpt = load_checkpoint(checkpoint)
    if ckpt.official:  # the authors' .pth: model, weights, scored layer and encode group come from the cache
        ckpt = ckpt.for_encode([g.attrs for g in encode_groups(catalog.cache, entry)], opts.train_classes)
    side = ckpt.side
    view = find_groups(catalog, entry, side, opts.protocol)
    enc, clean, meta = view.encode, view.clean, view.meta
    spec, resolved = check_model(enc, side["model"], opts.weights)
    # classes come from the files, not the view: a class none of whose samples is encoded is reported, not lost
    chosen = choose_classes(meta.classes + view.missing_classes, side["classes"] if opts.protocol == "one-vs-rest"
                            else [], opts.protocol, opts.classes)
    rows = [i for i in range(len(view)) if meta.classes[i] in chosen and meta.labels[i] >= 0]
    if not rows:
        raise PointadError(f"no encoded rows with a known label to evaluate for classes {chosen}"
                           + (f" ({len(view.missing)} samples have no encoded row)" if view.missing else ""))
    samples = CachedSamples(view, side["scored_layers"])
    if opts.modality != "point" and not samples.has_rgb:
        raise OptionError("modality", opts.modality, f"needs RGB features: dataset {entry.name!r} has no registered "
                                                     f"RGB image in its cache")
    if ckpt.config.prompts == "coop" and opts.protocol == "cross-dataset":
        raise PointadError("`coop` prompts are learned per class name; cross-dataset needs object-agnostic prompts")
    text, prompt_classes = text_features(ckpt, spec, resolved, sorted(set(meta.classes)))
    organized = bool(clean.attrs.get("organized")) and clean.attrs.get("grid_shape") is not None
    shape = tuple(clean.attrs["grid_shape"]) if organized else None
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("metrics.json", "report.md", "report.html"):
        (out / stale).unlink(missing_ok=True)
    scores = ScoresStore(out / "scores.zarr", meta, shape, {
        "checkpoint": str(checkpoint), "encode_fingerprint": enc.attrs["fingerprint"], "protocol": opts.protocol,
        "train_classes": side["classes"], "organized": organized, "modality": opts.modality})
    return Run(ckpt, samples, meta, text, prompt_classes, shape, scores, opts, out, view), chosen, rows, enc


def evaluate(catalog: Catalog, entry: DatasetEntry, checkpoint: Path, out: Path,
             opts: EvalOptions | None = None) -> dict[str, Any]:
    """Score every done row of the chosen classes; write the run folder; return the metrics."""
    opts = opts or EvalOptions()
    with locks.reading(catalog.cache, entry.name):
        return _evaluate(catalog, entry, checkpoint, out, opts)


def _evaluate(catalog: Catalog, entry: DatasetEntry, checkpoint: Path, out: Path, opts: EvalOptions) -> dict[str, Any]:
    run, chosen, rows, enc = _open_run(catalog, entry, checkpoint, out, opts)
    side = run.ckpt.side
    results: dict[str, Any] = {}
    figures: dict[str, dict[str, str]] = {}
    bar = progress(len(rows), "evaluate", "sample", enabled=opts.progress)
    skipped: dict[str, dict[str, Any]] = {}
    pages: list[ClassPage] = []
    for cls in chosen:
        mine = [r for r in rows if run.meta.classes[r] == cls]
        if not mine:  # nothing to score never sinks the other classes
            skipped[cls] = {"scored": 0, "why": unscored_reason(run.view, cls)}
            continue
        results[cls], figures[cls], class_view = score_class(run, cls, mine, lambda: bar.update(1))
        pages.append(class_view)
    bar.close()
    keys = sorted({k for v in results.values() for k in v})
    mean = {k: float(np.nanmean([results[c].get(k, np.nan) for c in results])) for k in keys}
    report = {"dataset": entry.name, "protocol": opts.protocol, "train_dataset": side.get("dataset"),
              "train_classes": side["classes"], "seed": side["train"]["seed"], "checkpoint": str(checkpoint),
              "checkpoint_sha256": file_sha256(checkpoint), "encode_fingerprint": enc.attrs["fingerprint"],
              "samples_sha256": run.samples.digest,
              "options": options_record(opts),
              "model": side["model"], "modality": opts.modality, "rgb": opts.modality != "point",
              "grid": list(run.grid_shape) if run.organized else "full resolution",
              "aupro": AUPRO_NOTE if run.organized else "none",
              "per_class": results, "mean": mean, "skipped": skipped}
    notes = [TINY_NOTE] if side["model"] == "tiny" else []
    notes += [f"Class {cls} was not scored: {info['why']}." for cls, info in skipped.items()]
    markdown_report(out, report, figures, notes)
    write_page(out / "report.html", evaluation_page(report, pages, notes))
    write_metrics(out, report)
    return report
