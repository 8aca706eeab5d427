"""`pointad-pipe evaluate`: a checkpoint + the cache -> scored points, metrics per class (METHOD.md §8-9).

One-vs-rest by default: every class except the ones the checkpoint was trained on. Each class is
scored, written and measured before the next is read, so memory holds one class's maps at most.
Run directory: `scores.zarr` (per row `points/<r>/score` and `points/<r>/label`, `global_score`,
`meta/*`; for organized sources `grid_score` and `grid_gt`, the exact maps the AUPRO used),
`metrics.json` and `metrics.csv`.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from . import store
from .catalog import Catalog, DatasetEntry
from .errors import PointadError
from .train import CachedSamples, TrainConfig


def load_checkpoint(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The prompt tensors (weights_only) and their JSON sidecar."""
    import torch

    side = path.with_suffix(".json")
    if not path.is_file() or not side.is_file():
        raise PointadError(f"checkpoint {path} or its sidecar {side.name} is missing")
    return torch.load(path, weights_only=True), json.loads(side.read_text())


def _groups(catalog: Catalog, entry: DatasetEntry, fingerprint: str) -> tuple[Any, Any, Any]:
    root = store.open_dataset(catalog.cache, entry.name)
    enc = store.find_group(root, "encode", fingerprint)
    if enc is None:
        raise PointadError(f"the checkpoint was trained on encode/{fingerprint}, which dataset {entry.name!r} "
                           f"does not hold; encode it with the same model and config first")
    render = root[f"render/{enc.attrs['upstream']}"]
    return enc, render, root[f"clean/{render.attrs['upstream']}"]


def evaluate(catalog: Catalog, entry: DatasetEntry, checkpoint: Path, out: Path, classes: list[str] | None = None,
             weights: str | None = None) -> dict[str, Any]:
    """Score every done row of the chosen classes; write the run directory; return the metrics."""
    from ..model.metrics import aupro_official, aupro_pointad, image_metrics, point_auroc, real3d_point_metrics
    from .geometry import median_spacing
    from .infer import score_cloud
    from .train_run import TrainData, build_learner, check_model

    prompts, side = load_checkpoint(checkpoint)
    enc, render, clean = _groups(catalog, entry, side["encode_fingerprint"])
    spec, resolved = check_model(enc, side["model"], weights)
    cfg = TrainConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in side["train"].items()})
    meta = store.read_meta(clean)
    done = store.done_mask(enc)
    chosen = classes or sorted(set(meta["class"]) - set(side["classes"]))
    rows = [r for r in range(len(done)) if done[r] and meta["class"][r] in chosen]
    if not rows:
        raise PointadError(f"no encoded rows to evaluate for classes {chosen}")
    learner = build_learner(TrainData(enc, render, clean, rows), cfg, spec, resolved, "cpu")
    learner.load_state_dict(prompts)
    text = learner().detach()
    layers = side["scored_layers"]
    samples = CachedSamples(enc, render, clean, layers)
    organized = bool(clean.attrs.get("organized")) and clean.attrs.get("grid_shape") is not None
    shape = tuple(clean.attrs["grid_shape"]) if organized else None
    out.mkdir(parents=True, exist_ok=True)
    z = zarr.open_group(str(out / "scores.zarr"), mode="w")
    n = len(done)
    z.attrs.update({"checkpoint": str(checkpoint), "encode_fingerprint": side["encode_fingerprint"],
                    "train_classes": side["classes"], "organized": organized})
    glob = z.create_array("global_score", shape=(n,), chunks=(1,), dtype=np.float32, fill_value=np.nan)
    for key in ("id", "class", "label"):
        arr = z.create_array(f"meta/{key}", shape=(n,), chunks=(1,), dtype=np.int8 if key == "label" else str)
        arr[:] = np.asarray(meta[key], np.int8 if key == "label" else object).astype(
            np.int8 if key == "label" else np.dtypes.StringDType())
    if organized:
        grid_score = store.create_rows_array(z, "grid_score", (n, *shape), np.float32)
        grid_gt = store.create_rows_array(z, "grid_gt", (n, *shape), np.uint8)
    results: dict[str, Any] = {}
    for cls in chosen:
        cls_rows = [r for r in rows if meta["class"][r] == cls]
        scores, labels, globals_, maps, gts = [], [], [], [], []
        for r in cls_rows:
            item = samples.item(r)
            xyz = np.asarray(clean[f"points/{r}/xyz"][:])
            grid_index = np.asarray(clean[f"points/{r}/grid"][:]) if organized else None
            spacing = None if organized else median_spacing(xyz)
            amap, g = score_cloud(item["patch"][:, 0], item["glob"], item["pt2pix"], text, samples.grid,
                                  samples.size, xyz, grid_index, shape, spacing, cfg.tau)
            z.create_array(f"points/{r}/score", data=amap.astype(np.float32), overwrite=True)
            z.create_array(f"points/{r}/label", data=item["y"].astype(np.uint8), overwrite=True)
            glob[r] = g
            scores.append(amap)
            labels.append(item["y"])
            globals_.append(g)
            if organized:
                canvas, gt = np.zeros(shape[0] * shape[1], np.float32), np.zeros(shape[0] * shape[1], np.uint8)
                canvas[grid_index], gt[grid_index] = amap, item["y"]
                grid_score[r], grid_gt[r] = canvas.reshape(shape), gt.reshape(shape)
                maps.append(canvas.reshape(shape))
                gts.append(gt.reshape(shape))
        res = image_metrics(np.array(globals_), np.array([meta["label"][r] for r in cls_rows]))
        if organized:
            res["p_auroc"] = point_auroc(np.concatenate(scores), np.concatenate(labels))
            res["aupro_official"] = aupro_official(np.stack(maps), np.stack(gts))
            res["aupro_pointad"] = aupro_pointad(np.stack(maps), np.stack(gts))
        else:
            res.update(real3d_point_metrics(scores, labels))
        results[cls] = {k: float(v) for k, v in res.items()}
    keys = sorted({k for v in results.values() for k in v})
    mean = {k: float(np.nanmean([results[c][k] for c in results])) for k in keys}
    report = {"dataset": entry.name, "train_classes": side["classes"], "seed": side["train"]["seed"],
              "grid": list(shape) if organized else "full resolution",
              "aupro": "official (exact, FPR 0.3) and pointad (200 thresholds)" if organized else "none",
              "per_class": results, "mean": mean}
    (out / "metrics.json").write_text(json.dumps(report, indent=1))
    with (out / "metrics.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["class", *keys, "train_classes", "seed"])
        for name, vals in [*results.items(), ("mean", mean)]:
            w.writerow([name, *[f"{vals[k]:.4f}" for k in keys], "+".join(side["classes"]), side["train"]["seed"]])
    return report
