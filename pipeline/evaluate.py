"""`pointad-pipe evaluate`: a checkpoint + the cache -> scored points, metrics per class (METHOD.md §8-9).

Protocols: `one-vs-rest` scores every class of the training dataset except the training ones;
`cross-dataset` scores every class of another dataset encoded by the same model and weights.
Each class is scored, written and measured before the next is read, so memory holds one class's
maps at most. Run directory:
- `scores.zarr`: per row `points/<r>/score` and `points/<r>/label`, `global_score`, `meta/*`; for
  organized sources `grid_score` and `grid_gt`, the exact maps the AUPRO used;
- `metrics.json`, `metrics.csv`, `report.md` (tables, montages, ROC curves under `figures/`);
- `clouds/<class>/<id>.ply`: each scored cloud (see `scored_cloud`).
`metrics.json` is written last, under a temporary name then renamed: a run folder without it is
an interrupted run.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from . import store
from .catalog import Catalog, DatasetEntry
from .errors import PointadError
from .train import CachedSamples, TrainConfig

PROTOCOLS = ("one-vs-rest", "cross-dataset")
TINY_NOTE = ("Features come from the randomly initialised `tiny` model: these numbers measure the pipeline, "
             "not CLIP's zero-shot transfer. For the method's numbers use the real backbone: "
             "`pointad-pipe demo --weights ViT-L-14-336.pt`, or `pointad-pipe encode --model ViT-L-14-336 "
             "--weights FILE` on a dataset (README: Getting CLIP weights).")


@dataclass(frozen=True)
class EvalOptions:
    """What `evaluate` scores and writes."""

    protocol: str = "one-vs-rest"
    classes: list[str] | None = None
    weights: str | None = None
    modality: str = "point"  # point | fused (--rgb) | rgb (--rgb-only), METHOD.md §8
    write_ply: bool = True
    montage_samples: int = 4
    progress: bool = True


@dataclass
class Checkpoint:
    """Trained prompt tensors and their JSON sidecar."""

    path: Path
    prompts: dict[str, Any]
    side: dict[str, Any]
    config: TrainConfig = field(init=False)

    def __post_init__(self) -> None:
        self.config = TrainConfig(**{k: tuple(v) if isinstance(v, list) else v
                                     for k, v in self.side["train"].items()})


def load_checkpoint(path: Path) -> Checkpoint:
    """The prompt tensors (weights_only) and their JSON sidecar."""
    import torch

    side = path.with_suffix(".json")
    if not path.is_file() or not side.is_file():
        raise PointadError(f"checkpoint {path} or its sidecar {side.name} is missing")
    return Checkpoint(path, torch.load(path, weights_only=True), json.loads(side.read_text()))


def text_features(ckpt: Checkpoint, spec: Any, weights: Any, classes: list[str] | None,
                  device: str = "cpu") -> tuple[Any, list[str] | None]:
    """Normalised text features of the trained prompts, (2, D) or (C, 2, D) for `coop`, and the class names."""
    import torch

    from .train_run import prompt_learner

    learner = prompt_learner(ckpt.side.get("prompt_classes", classes) if ckpt.config.prompts == "coop" else None,
                             ckpt.config, spec, weights, device)
    learner.load_state_dict(ckpt.prompts)
    with torch.no_grad():
        return learner().detach().cpu(), learner.classes


def find_groups(catalog: Catalog, entry: DatasetEntry, side: dict[str, Any], protocol: str) -> tuple[Any, Any, Any]:
    """The encode group to score (and its render and clean groups) for the protocol."""
    if protocol not in PROTOCOLS:
        raise PointadError(f"--protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    root = store.open_dataset(catalog.cache, entry.name)
    trained_on = side.get("dataset")
    if protocol == "one-vs-rest":
        if trained_on and trained_on != entry.name:
            raise PointadError(f"the checkpoint was trained on dataset {trained_on!r}, not {entry.name!r}: "
                               f"use --protocol cross-dataset to score another dataset")
        enc = store.find_group(root, "encode", side["encode_fingerprint"])
        if enc is None:
            raise PointadError(f"the checkpoint was trained on encode/{side['encode_fingerprint']}, which dataset "
                               f"{entry.name!r} does not hold; encode it with the same model and config first")
    else:
        fits = [g for g in store.stage_groups(root, "encode")
                if g.attrs.get("model") == side["model"] and g.attrs.get("weights_sha256") == side["weights_sha256"]
                and all(x in g.attrs.get("layers", []) for x in side["scored_layers"])]
        if not fits:
            raise PointadError(f"dataset {entry.name!r} has no encode output by {side['model']} with the "
                               f"checkpoint's weights and layers {side['scored_layers']}; run `pointad-pipe encode "
                               f"--dataset {entry.name} --model {side['model']}` (same --weights, --layers) first")
        enc = fits[-1]
    return (enc, *store.upstream_of(root, enc))


def choose_classes(present: list[str], trained: list[str], protocol: str, asked: list[str] | None) -> list[str]:
    """The classes to score: the protocol's pool, or the asked ones after checking them against it."""
    pool = sorted(set(present) - set(trained)) if protocol == "one-vs-rest" else sorted(set(present))
    if not asked:
        if not pool:
            raise PointadError(f"nothing to evaluate: the dataset's classes {sorted(set(present))} are all training "
                               f"classes; use --protocol cross-dataset on another dataset")
        return pool
    unknown = sorted(set(asked) - set(present))
    if unknown:
        raise PointadError(f"--classes {unknown}: not in the dataset (it has {sorted(set(present))})")
    held = sorted(set(asked) - set(pool))
    if held:
        raise PointadError(f"--classes {held}: the checkpoint was trained on them; one-vs-rest scores other classes")
    return list(asked)


@dataclass
class ClassMaps:
    """One class's scored rows, held until its metrics are computed."""

    rows: list[int] = field(default_factory=list)
    globals_: list[float] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    scores: list[np.ndarray] = field(default_factory=list)
    point_labels: list[np.ndarray] = field(default_factory=list)
    grids: np.ndarray | None = None  # (n, H, W) float32, filled in place: no stacked copy later
    gts: np.ndarray | None = None  # (n, H, W) uint8

    def metrics(self, organized: bool) -> dict[str, float]:
        """METHOD.md §9 on this class: grid AUPROs for organized data, the Real3D protocol otherwise."""
        from ..model.metrics import aupro_official, aupro_pointad, image_metrics, point_auroc, real3d_point_metrics

        res = image_metrics(np.array(self.globals_), np.array(self.labels))
        if organized:
            res["p_auroc"] = point_auroc(np.concatenate(self.scores), np.concatenate(self.point_labels))
            res["aupro_official"] = aupro_official(self.grids, self.gts)
            res["aupro_pointad"] = aupro_pointad(self.grids, self.gts)
        else:
            res.update(real3d_point_metrics(self.scores, self.point_labels))
        return {k: float(v) for k, v in res.items()}


def _create_scores(out: Path, meta: dict[str, list[Any]], shape: tuple[int, int] | None,
                   attrs: dict[str, Any]) -> tuple[Any, Any, Any, Any]:
    z = zarr.open_group(str(out / "scores.zarr"), mode="w")
    n = len(meta["id"])
    z.attrs.update(attrs)
    glob = z.create_array("global_score", shape=(n,), chunks=(1,), dtype=np.float32, fill_value=np.nan)
    z.create_array("meta/label", data=np.asarray(meta["label"], np.int8), chunks=(max(n, 1),))
    for key in ("id", "class"):
        z.create_array(f"meta/{key}", data=np.asarray(meta[key], dtype=np.dtypes.StringDType()), chunks=(max(n, 1),))
    if shape is None:
        return z, glob, None, None
    return (z, glob, store.create_rows_array(z, "grid_score", (n, *shape), np.float32),
            store.create_rows_array(z, "grid_gt", (n, *shape), np.uint8))


def _montage_rows(rows: list[int], labels: list[int], count: int) -> list[int]:
    """Up to `count` rows for the montage: anomalous ones first (half, rounded up), then good ones."""
    bad = [r for r, y in zip(rows, labels, strict=True) if y == 1]
    good = [r for r, y in zip(rows, labels, strict=True) if y != 1]
    take_bad = min(len(bad), max(count - len(good), (count + 1) // 2))
    return bad[:take_bad] + good[:count - take_bad]


def file_sha256(path: Path) -> str:
    """The file's sha256 (a checkpoint is a few hundred kB)."""
    import hashlib

    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def options_record(opts: EvalOptions) -> dict[str, Any]:
    """The options that change a run folder's content (not the progress bar)."""
    from dataclasses import asdict

    return {k: v for k, v in asdict(opts).items() if k not in ("progress", "weights")}


def finished_run(out: Path, checkpoint: Path, opts: EvalOptions) -> dict[str, Any] | None:
    """The metrics of a finished run folder made from this checkpoint with these options, else None."""
    path = out / "metrics.json"
    if not path.is_file():
        return None
    report = json.loads(path.read_text())
    same = (report.get("checkpoint_sha256") == file_sha256(checkpoint)
            and report.get("options") == json.loads(json.dumps(options_record(opts))))
    return report if same else None


def safe_name(sample_id: str) -> str:
    """A sample id as one file name: path separators and odd characters become `_`."""
    return "".join(ch if ch.isalnum() or ch in "-." else "_" for ch in sample_id).strip("._") or "sample"


def _atomic_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def write_tables(out: Path, report: dict[str, Any]) -> None:
    """metrics.csv, then metrics.json last (its presence marks a finished run)."""
    keys = sorted(report["mean"])
    with (out / "metrics.csv.tmp").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["class", *keys, "train_classes", "seed", "protocol", "modality", "grid", "aupro"])
        for name, vals in [*report["per_class"].items(), ("mean", report["mean"])]:
            grid = "x".join(map(str, report["grid"])) if isinstance(report["grid"], list) else report["grid"]
            w.writerow([name, *[f"{vals[k]:.4f}" for k in keys], "+".join(report["train_classes"]),
                        report["seed"], report["protocol"], report["modality"], grid, report["aupro"]])
    (out / "metrics.csv.tmp").replace(out / "metrics.csv")
    _atomic_text(out / "metrics.json", json.dumps(report, indent=1))


def evaluate(catalog: Catalog, entry: DatasetEntry, checkpoint: Path, out: Path,
             opts: EvalOptions | None = None) -> dict[str, Any]:
    """Score every done row of the chosen classes; write the run directory; return the metrics."""
    from .geometry import median_spacing
    from .infer import score_cloud, view_maps
    from .report import MontageSample, class_montage, markdown_report, roc_png
    from .runner import progress
    from .scored_cloud import write_scored_ply
    from .train_run import check_model

    opts = opts or EvalOptions()
    ckpt = load_checkpoint(checkpoint)
    side = ckpt.side
    enc, render, clean = find_groups(catalog, entry, side, opts.protocol)
    spec, resolved = check_model(enc, side["model"], opts.weights)
    meta = store.read_meta(clean)
    done = store.done_mask(enc)
    trained = side["classes"] if opts.protocol == "one-vs-rest" else []
    chosen = choose_classes(meta["class"], trained, opts.protocol, opts.classes)
    rows = [r for r in range(len(done)) if done[r] and meta["class"][r] in chosen and meta["label"][r] >= 0]
    if not rows:
        raise PointadError(f"no encoded rows with a known label to evaluate for classes {chosen}")
    samples = CachedSamples(enc, render, clean, side["scored_layers"])
    if opts.modality != "point" and not ("rgb_patch" in enc and "rgb_image" in render):
        raise PointadError(f"--rgb needs RGB features: dataset {entry.name!r} has no registered RGB image in its "
                           f"cache (render `rgb_image`, encode `rgb_patch`)")
    if ckpt.config.prompts == "coop" and opts.protocol == "cross-dataset":
        raise PointadError("`coop` prompts are learned per class name; cross-dataset needs object-agnostic prompts")
    text, prompt_classes = text_features(ckpt, spec, resolved, sorted(set(meta["class"])))
    organized = bool(clean.attrs.get("organized")) and clean.attrs.get("grid_shape") is not None
    shape = tuple(clean.attrs["grid_shape"]) if organized else None
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("metrics.json", "report.md"):
        (out / stale).unlink(missing_ok=True)
    z, glob, grid_score, grid_gt = _create_scores(out, meta, shape, {
        "checkpoint": str(checkpoint), "encode_fingerprint": enc.attrs["fingerprint"], "protocol": opts.protocol,
        "train_classes": side["classes"], "organized": organized, "modality": opts.modality})
    li = samples.layer_index[0]
    results: dict[str, Any] = {}
    figures: dict[str, dict[str, str]] = {}
    bar = progress(len(rows), "evaluate", "sample", enabled=opts.progress)
    for cls in chosen:
        cls_rows = [r for r in rows if meta["class"][r] == cls]
        acc = ClassMaps()
        if organized:
            acc.grids = np.zeros((len(cls_rows), *shape), np.float32)
            acc.gts = np.zeros((len(cls_rows), *shape), np.uint8)
        cls_text = text[prompt_classes.index(cls)] if prompt_classes else text
        for i, r in enumerate(cls_rows):
            # only what scoring needs (CachedSamples.item would also decode the 2D masks)
            y = np.asarray(clean[f"points/{r}/label"][:]).astype(np.uint8)
            xyz = np.asarray(clean[f"points/{r}/xyz"][:])
            grid_index = np.asarray(clean[f"points/{r}/grid"][:]) if organized else None
            rgb = None
            if opts.modality != "point":
                rgb = (np.asarray(enc["rgb_patch"][r])[li], np.asarray(enc["rgb_global"][r]),
                       np.asarray(render[f"points/{r}/rgb_pix"][:]))
            amap, g = score_cloud(np.asarray(enc["patch"][r])[:, li], np.asarray(enc["global"][r]),
                                  np.asarray(render[f"points/{r}/pt2pix"][:]), cls_text, samples.grid,
                                  samples.size, xyz, grid_index, shape, None if organized else median_spacing(xyz),
                                  ckpt.config.tau, rgb=rgb, modality=opts.modality)
            z.create_array(f"points/{r}/score", data=amap.astype(np.float32), overwrite=True)
            z.create_array(f"points/{r}/label", data=y, overwrite=True)
            glob[r] = g
            acc.rows.append(r)
            acc.globals_.append(g)
            acc.labels.append(int(meta["label"][r]))
            acc.scores.append(amap.astype(np.float32))
            acc.point_labels.append(y)
            if organized:
                acc.grids[i].flat[grid_index], acc.gts[i].flat[grid_index] = amap, y
                grid_score[r], grid_gt[r] = acc.grids[i], acc.gts[i]
            if opts.write_ply:
                write_scored_ply(out / "clouds" / cls / f"{safe_name(meta['id'][r])}.ply", xyz, amap, vmax=1.0)
            bar.update(1)
        results[cls] = acc.metrics(organized)
        montage = [MontageSample(meta["id"][r], int(meta["label"][r]), float(glob[r]),
                                 np.asarray(render["image"][r]),
                                 view_maps(np.asarray(enc["patch"][r])[:, li], cls_text, samples.grid, samples.size),
                                 np.asarray(render["mask2d"][r]))
                   for r in _montage_rows(acc.rows, acc.labels, opts.montage_samples)]
        figs = out / "figures"
        figures[cls] = {}
        if montage:
            path = class_montage(figs / f"{cls}_montage.png", cls, montage)
            figures[cls]["montage"] = path.relative_to(out).as_posix()
        figures[cls]["roc"] = roc_png(figs / f"{cls}_roc.png", {
            "image": (np.array(acc.labels), np.array(acc.globals_)),
            "point": (np.concatenate(acc.point_labels), np.concatenate(acc.scores))}, f"{cls}: ROC").relative_to(
            out).as_posix()
        del acc
    bar.close()
    keys = sorted({k for v in results.values() for k in v})
    mean = {k: float(np.nanmean([results[c].get(k, np.nan) for c in results])) for k in keys}
    report = {"dataset": entry.name, "protocol": opts.protocol, "train_dataset": side.get("dataset"),
              "train_classes": side["classes"], "seed": side["train"]["seed"], "checkpoint": str(checkpoint),
              "checkpoint_sha256": file_sha256(checkpoint), "encode_fingerprint": enc.attrs["fingerprint"],
              "options": options_record(opts),
              "model": side["model"], "modality": opts.modality, "rgb": opts.modality != "point",
              "grid": list(shape) if organized else "full resolution",
              "aupro": "official (exact, FPR 0.3) and pointad (200 thresholds)" if organized else "none",
              "per_class": results, "mean": mean}
    notes = [TINY_NOTE] if side["model"] == "tiny" else []
    markdown_report(out, report, figures, notes)
    write_tables(out, report)
    return report
