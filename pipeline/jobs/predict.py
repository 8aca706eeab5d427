"""The predict job: score the user's own files with a trained checkpoint, no catalog, no cache.

Each file goes through the same stages as a dataset sample (clean -> render -> encode -> score), in
memory. The model and the prompts are loaded once (`Predictor`) for all files, the CLIP model a single
time for both the text features and the image encoder. The pipeline settings come from the
checkpoint's sidecar (the render and encode configs of the cache it was trained on), so that a file
is seen as the training samples were; the clean config is the training one for an MVTec-style
`.tiff` when the checkpoint was trained on organized data, and the `files` defaults otherwise. An
official PointAD checkpoint has no sidecar: it is scored with the default settings on the last
block of the model the caller names (`OFFICIAL_MODEL` by default). Outputs per file: `<name>.ply`
(the score as a scalar field), `<name>_views.png` (the views and their score maps), `<name>.html`
(the cloud in 3D, the views; self-contained), `<name>.json` (global score and where it came from).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...model.inference import score_cloud, view_maps
from ..cache.runner import default_workers
from ..config import build_config
from ..errors import ModelMismatch, OptionError, PointadError, SampleError
from ..loaders.base import LABEL_UNKNOWN, Sample, SampleRef
from ..loaders.files import SUFFIXES, FilesLoader
from ..loaders.mvtec3d import organized_sample, read_rgb, read_xyz
from ..outputs.atomic import write_text
from ..outputs.html_report import prediction_page, write_page
from ..outputs.names import safe_name
from ..outputs.page_data import page_cloud
from ..outputs.report import MontageSample, class_montage
from ..outputs.scored_cloud import write_scored_ply
from ..stages.clean import FORMAT_DEFAULTS, CleanConfig, clean_sample
from ..stages.encode import EncodeConfig, Encoder
from ..stages.geometry import median_spacing
from ..stages.render import RenderConfig, render_sample
from .checkpoint import OFFICIAL_MODEL, Checkpoint, load_checkpoint, official_layer, text_features
from .encode import encoder_key
from .identity import prepare_encode

TIFF_SUFFIXES = (".tiff", ".tif")


@dataclass
class Prediction:
    """One scored file."""

    source: Path
    xyz: np.ndarray  # (n, 3) the cleaned points
    score: np.ndarray  # (n,) the smoothed (or fused) point map
    global_score: float
    images: np.ndarray  # (K, H, W, 3) the renderings
    view_maps: np.ndarray  # (K, H, W) S_a of each view
    input_points: int = 0  # points in the file
    sampled: bool = False  # capped at the clean config's `max_points` (an unorganized cloud)


def read_user_file(path: Path, rgb: Path | None = None, mesh_points: int = 100_000) -> Sample:
    """A `Sample` from one file: an MVTec xyz .tiff (organized, optional RGB png), or a cloud/mesh file."""
    path = Path(path)
    if path.is_dir():
        raise SampleError(path, "is a folder: give the point-cloud files in it (e.g. its *.tiff or *.ply)")
    if not path.is_file():
        raise SampleError(path, "file not found")
    suffix = path.suffix.lower()
    ref = SampleRef(id=path.stem, cls="default", split="test", defect="unknown", label=LABEL_UNKNOWN,
                    source=str(path), files={"cloud": str(path)})
    if suffix in TIFF_SUFFIXES:
        xyz = read_xyz(path)
        colour = read_rgb(Path(rgb), xyz.shape[:2], path) if rgb else None
        return organized_sample(ref, xyz, None, colour)
    if rgb:
        raise SampleError(path, "an RGB image needs an organized MVTec xyz .tiff (it is registered to its grid)")
    if suffix not in SUFFIXES:
        raise SampleError(path, f"unsupported extension {path.suffix!r}; expected one of "
                                f"{', '.join((*SUFFIXES, *TIFF_SUFFIXES))}")
    return FilesLoader(mesh_points=mesh_points).load(ref)


def stage_config(cls: type, stored: dict[str, Any] | None) -> dict[str, Any]:
    """A stage config's own fields from a group's stored `config` attr, JSON lists back to tuples.

    The stored attr also holds fingerprinted extras (such as the class list) that are not fields.
    """
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: tuple(v) if isinstance(v, list) else v for k, v in (stored or {}).items() if k in names}


def open_checkpoint(path: Path, model: str | None, weights: str | None, device: str) -> tuple[Checkpoint, Any]:
    """A checkpoint that predict can use, and its model's encode setup, checked before any model loads.

    Ours names its model in the sidecar (`model`, if given, must be that one) and must find the
    weights it was trained with. An official checkpoint is taken for `model` (default
    `OFFICIAL_MODEL`) scored on its last block, with whatever weights are found for it.
    """
    ckpt = load_checkpoint(path)
    if ckpt.official:
        name = model or OFFICIAL_MODEL
        ckpt = ckpt.filled(model=name, scored_layers=[official_layer(name)])
    elif model and model != ckpt.side["model"]:
        raise OptionError("model", model, f"checkpoint {path} was trained on features of {ckpt.side['model']}, "
                                          f"which its sidecar names")
    if ckpt.config.prompts == "coop":
        raise PointadError("predict scores with object-agnostic prompts; this checkpoint learned `coop` "
                           "prompts per class name")
    side = ckpt.side
    enc_cfg = stage_config(EncodeConfig, (side.get("pipeline") or {}).get("encode"))
    enc_cfg = EncodeConfig(**enc_cfg) if enc_cfg else EncodeConfig(model=side["model"],
                                                                   layers=tuple(side["scored_layers"]))
    prep = prepare_encode(enc_cfg, weights, device)
    if ckpt.official:
        return ckpt.filled(weights_sha256=prep.weights.sha256), prep
    if prep.weights.sha256 != side["weights_sha256"]:
        raise ModelMismatch(f"the checkpoint was trained on features of {side['model']} with weights sha256 "
                            f"{side['weights_sha256'][:12]}..., but the weights found ({prep.weights.pretrained}) "
                            f"have {prep.weights.sha256[:12]}...", side["model"], side["weights_sha256"],
                            side["model"], prep.weights.sha256)
    return ckpt, prep


class Predictor:
    """A checkpoint's text features and the matching image encoder, loaded once for many files.

    The CLIP model is loaded once: the text features are computed from it first, in fp32, then the
    same model becomes the image encoder (cast to the encode dtype, its vision tower hooked).
    `model`: for an official checkpoint, the CLIP it was trained on (see `open_checkpoint`).
    """

    def __init__(self, checkpoint: Path, weights: str | None = None, device: str = "cpu",
                 modality: str = "point", model: str | None = None) -> None:
        from ...model.registry import get_spec
        from ..stages.weights import load_model

        self.ckpt, prep = open_checkpoint(Path(checkpoint), model, weights, device)
        side = self.ckpt.side
        self.pipeline = side.get("pipeline") or {}
        spec = get_spec(side["model"])
        clip = load_model(spec, prep.weights, device=device)
        self.text, _ = text_features(self.ckpt, spec, prep.weights, None, device, model=clip)
        self.encoder = Encoder(encoder_key(prep, device), model=clip)
        self.layer = list(prep.config.layers).index(side["scored_layers"][0])
        self.grid = tuple(prep.model_info["patch_grid"])
        self.modality = modality

    def clean_config(self, organized: bool) -> Any:
        """The training clean config for organized input from an organized training set, else `files` defaults."""
        trained = self.pipeline.get("clean")
        if organized and trained and self.pipeline.get("format") in ("mvtec3d", "eyecandies"):
            return build_config(CleanConfig, stage_config(CleanConfig, trained), {}, "checkpoint clean config")
        return build_config(CleanConfig, FORMAT_DEFAULTS["mvtec3d" if organized else "files"], {}, "predict clean")

    def render_config(self) -> Any:
        """The training render config (views, splats, visibility), so a file is rendered as training was."""
        return build_config(RenderConfig, stage_config(RenderConfig, self.pipeline.get("render")), {},
                            "checkpoint render config")

    def predict(self, path: Path, rgb: Path | None = None) -> Prediction:
        """Clean -> render -> encode -> score one file in memory."""
        sample = read_user_file(path, rgb)
        if self.modality != "point" and sample.rgb is None:
            raise SampleError(path, "RGB fusion asked for, but no RGB image was given for this file")
        cfg = self.clean_config(sample.organized)
        cleaned = clean_sample(sample, cfg)
        sampled = bool(not sample.organized and cfg.max_points and len(cleaned.xyz) == cfg.max_points
                       and len(sample.points) > cfg.max_points)
        rendered = render_sample(cleaned.xyz, cleaned.label, self.render_config(), grid=cleaned.grid,
                                 rgb_grid=cleaned.rgb_grid, threads=default_workers())
        glob, patch = self.encoder.encode(rendered.image)
        patch = patch[:, self.layer]
        rgb_in = None
        if self.modality != "point" and rendered.rgb_image is not None:
            rg, rp = self.encoder.encode(rendered.rgb_image[None])
            rgb_in = (rp[0, self.layer], rg[0])
        organized = cleaned.grid is not None and cleaned.grid_shape is not None
        size = rendered.image.shape[1]
        score, g = score_cloud(patch, glob, rendered.pt2pix, self.text, self.grid, size, cleaned.xyz,
                               cleaned.grid if organized else None, cleaned.grid_shape if organized else None,
                               None if organized else median_spacing(cleaned.xyz), self.ckpt.config.tau,
                               rgb=rgb_in, modality=self.modality)
        return Prediction(Path(path), cleaned.xyz, score, g, rendered.image,
                          view_maps(patch, self.text, self.grid, size, self.ckpt.config.tau), len(sample.points),
                          sampled)


def output_names(files: list[Path]) -> list[str]:
    """A distinct output name per input: its stem, or with as many parent folders as tell it apart.

    Every MVTec sample is `000.tiff`: named by stem alone, each would overwrite the last.
    """
    paths = [Path(p).resolve() for p in files]
    names = [safe_name(p.stem) for p in paths]
    depth = max(len(p.parts) for p in paths) if paths else 0
    for d in range(1, depth):
        clash = {n for n in names if len({p for p, m in zip(paths, names, strict=True) if m == n}) > 1}
        if not clash:
            break
        names = [safe_name("_".join([*p.parent.parts[-d:], p.stem])) if names[i] in clash else names[i]
                 for i, p in enumerate(paths)]
    seen: dict[str, int] = {}
    out = []
    for n in names:  # the same file given twice
        seen[n] = seen.get(n, 0) + 1
        out.append(n if seen[n] == 1 else f"{n}_{seen[n]}")
    return out


def write_prediction(pred: Prediction, out: Path, info: dict[str, Any], name: str | None = None,
                     html: bool = True) -> dict[str, Any]:
    """`<name>.ply`, `<name>_views.png`, `<name>.html`, `<name>.json` in `out` (name: the file's stem by default).

    Returns the record (`<name>.json`'s content).
    """
    name = name or safe_name(pred.source.stem)
    write_scored_ply(out / f"{name}.ply", pred.xyz, pred.score, vmax=1.0)
    class_montage(out / f"{name}_views.png", name, [MontageSample(
        pred.source.name, -1, pred.global_score, pred.images, pred.view_maps,
        np.zeros(pred.view_maps.shape, np.uint8))], vmax=1.0)
    record = {"file": str(pred.source), "global_score": pred.global_score, "points": len(pred.xyz),
              "input_points": pred.input_points, "sampled_to": len(pred.xyz) if pred.sampled else None,
              "max_point_score": float(pred.score.max()), "ply": f"{name}.ply", "views": f"{name}_views.png",
              "html": f"{name}.html" if html else None, **info}
    if html:
        cloud = page_cloud(pred.source.name, -1, pred.global_score, pred.xyz, pred.score, np.zeros(len(pred.score)))
        write_page(out / f"{name}.html", prediction_page(name, record, cloud, (out / f"{name}_views.png").read_bytes()))
    write_text(out / f"{name}.json", json.dumps(record, indent=1))
    return record


def predict_files(files: list[Path], checkpoint: Path, out: Path, rgb: list[Path] | None = None,
                  weights: str | None = None, device: str = "auto",
                  on_scored: Callable[[Path, dict[str, Any]], None] | None = None,
                  on_failed: Callable[[Path, Exception], None] | None = None, model: str | None = None,
                  html: bool = True) -> list[Path]:
    """The predict command: load the model once, score and write each file; return the files that failed.

    A file that cannot be read or scored fails alone (`on_failed`); the others are still scored.
    `model`: an official checkpoint's CLIP (`Predictor`); `html`: write each file's page too.
    """
    from ..stages.encode import resolve_device

    predictor = Predictor(checkpoint, weights, resolve_device(device), "fused" if rgb else "point", model)
    out.mkdir(parents=True, exist_ok=True)
    info = {"checkpoint": str(checkpoint), "model": predictor.ckpt.side["model"], "modality": predictor.modality,
            **({"checkpoint_format": "official"} if predictor.ckpt.official else {})}
    failures = []
    names = output_names(files)
    for i, path in enumerate(files):
        try:
            record = write_prediction(predictor.predict(path, rgb[i] if rgb else None), out, info, names[i], html)
        except Exception as exc:  # noqa: BLE001 - one bad file must not stop the others
            failures.append(path)
            if on_failed is not None:
                on_failed(path, exc)
            continue
        if on_scored is not None:
            on_scored(path, record)
    return failures
