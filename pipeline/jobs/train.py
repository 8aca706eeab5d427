"""The train job: pick the rows, check the model against the cache, run epochs, checkpoint.

The same seed on CPU gives the same bytes: the data order of epoch e is a permutation drawn from
(seed, e), and resuming from `resume.pt` continues to the same result as an uninterrupted run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..cache import locks
from ..cache.runner import progress
from ..cache.schema import CachedSamples
from ..cache.view import View
from ..catalog import Catalog, DatasetEntry
from ..errors import CacheMissing, ModelMismatch, OptionError, PointadError
from ..stages.train import TrainConfig, collate, prompt_learner, step_terms
from .checkpoint import RESUME, epoch_path, finish, git_commit, load_resume, save_checkpoint, save_torch
from .identity import encode_groups, open_view


@dataclass(frozen=True)
class TrainData:
    """The current view one training run reads, and the positions in it it trains on."""

    view: View
    rows: list[int]

    @property
    def encode(self) -> Any:
        """The encode group."""
        return self.view.encode

    @property
    def render(self) -> Any:
        """The encode group's render group."""
        return self.view.render

    @property
    def clean(self) -> Any:
        """The render group's clean group."""
        return self.view.clean


def select_rows(catalog: Catalog, entry: DatasetEntry, classes: list[str], split: str | None,
                encode_fp: str | None = None) -> TrainData:
    """Current samples of the training class(es) and split with a known label (the newest encode group's view)."""
    groups = encode_groups(catalog.cache, entry)
    if encode_fp:
        groups = [g for g in groups if g.attrs["fingerprint"] == encode_fp]
    if not groups:
        raise CacheMissing("encode", entry.name, catalog.cache, f" with fingerprint {encode_fp}" if encode_fp else "")
    view = open_view(catalog.cache, entry, groups[-1])
    meta = view.meta
    unknown = sorted(set(classes) - set(meta.classes))
    if unknown:
        raise OptionError("train_classes", unknown, f"not in dataset {entry.name!r} "
                                                    f"(it has {sorted(set(meta.classes))})")
    rows = [i for i in range(len(view)) if meta.classes[i] in classes
            and (split is None or meta.splits[i] == split) and meta.labels[i] >= 0]
    if not rows:
        raise PointadError(f"no encoded rows with a known label for classes {classes}, split {split!r}"
                           + (f" ({len(view.missing)} of the catalog's samples are not encoded: run encode)"
                              if view.missing else ""))
    return TrainData(view, rows)


def check_model(enc: Any, model: str | None, weights: str | None) -> tuple[Any, Any]:
    """The spec and weights of the cache's model; refuse another model or other weights."""
    from ...model.registry import get_spec
    from ..stages.weights import resolve_weights

    held, held_sha = enc.attrs["model"], enc.attrs["weights_sha256"]
    if model and model != held:
        raise ModelMismatch(f"the cache holds features of {held} (weights sha256 {held_sha[:12]}...), not {model}",
                            held, held_sha, model)
    spec = get_spec(held)
    resolved = resolve_weights(spec, weights)
    if resolved.sha256 != held_sha:
        raise ModelMismatch(f"the cache was encoded by {held} with weights sha256 {held_sha}, but the weights "
                            f"found ({resolved.pretrained}) have sha256 {resolved.sha256}", held, held_sha, held,
                            resolved.sha256)
    return spec, resolved


def run_train(catalog: Catalog, entry: DatasetEntry, classes: list[str], split: str | None, cfg: TrainConfig,
              out: Path, *, model: str | None = None, weights: str | None = None, encode_fp: str | None = None,
              device: str = "auto", resume: bool = False, log: Callable[[str], None] | None = None) -> Path:
    """The train command: pick the rows, check the cache's model, train; return the final checkpoint."""
    from ..stages.encode import resolve_device

    with locks.reading(catalog.cache, entry.name):
        data = select_rows(catalog, entry, classes, split, encode_fp)
        spec, resolved = check_model(data.encode, model, weights)
        if log is not None:
            missing = f"; {len(data.view.missing)} samples not encoded yet" if data.view.missing else ""
            log(f"training on {len(data.rows)} samples of {classes} ({split}), "
                f"encode/{data.encode.attrs['fingerprint']}, model {spec.name}{missing}")
        return train(data, cfg, out, spec, resolved, device=resolve_device(device), resume=resume,
                     extra={"dataset": entry.name, "split": split})


def class_names(view: View) -> list[str]:
    """The sorted class names of the dataset's current view (the `coop` prompt classes)."""
    return sorted(set(view.meta.classes))


def sidecar_info(data: TrainData, cfg: TrainConfig, samples: CachedSamples, layers: Iterable[int], spec: Any,
                 prompt_classes: list[str] | None, extra: dict[str, Any] | None) -> dict[str, Any]:
    """What every checkpoint's sidecar records besides its epoch and losses."""
    return {"encode_fingerprint": data.encode.attrs["fingerprint"], "model": spec.name,
            "weights_sha256": data.encode.attrs["weights_sha256"], "train": asdict(cfg), "scored_layers": list(layers),
            "rows": len(data.rows), "samples_sha256": data.view.digest(data.rows),
            "classes": sorted({samples.classes[r] for r in data.rows}),
            "prompt_classes": prompt_classes,
            "pipeline": {"format": data.clean.attrs.get("format"), "clean": dict(data.clean.attrs["config"]),
                         "render": dict(data.render.attrs["config"]), "encode": dict(data.encode.attrs["config"])},
            "git_commit": git_commit(), "method": {"tau": cfg.tau, "loss_weights": 1.0,
                                                   "visibility": data.render.attrs.get("visibility")},
            **(extra or {})}


def _epoch(learner: Any, opt: Any, samples: CachedSamples, order: list[int], cfg: TrainConfig, device: str,
           class_index: dict[str, int] | None, bar: Any) -> dict[str, float]:
    """One pass over `order`; returns the mean of each loss term."""
    from ...model.losses import hybrid_loss

    steps = (len(order) + cfg.batch_size - 1) // cfg.batch_size
    sums: dict[str, float] = {}
    for s in range(steps):
        batch = collate([samples.item(r) for r in order[s * cfg.batch_size:(s + 1) * cfg.batch_size]], device)
        terms = step_terms(learner(), batch, cfg, samples.grid, samples.size, class_index)
        loss = hybrid_loss(terms, cfg.losses)
        opt.zero_grad()
        loss.backward()
        opt.step()
        for k, v in terms.items():
            sums[k] = sums.get(k, 0.0) + float(v.detach())
        bar.set_postfix({k: f"{v / (s + 1):.3f}" for k, v in sums.items()})
        bar.update(1)
    return {k: v / steps for k, v in sums.items()}


def train(data: TrainData, cfg: TrainConfig, out: Path, spec: Any, weights: Any, device: str = "cpu",
          resume: bool = False, progress_bar: bool = True, extra: dict[str, Any] | None = None) -> Path:
    """Train prompts on `data.rows`; return the final checkpoint's path."""
    import torch

    torch.use_deterministic_algorithms(True, warn_only=True)
    out.mkdir(parents=True, exist_ok=True)
    layers = cfg.layers or (int(data.encode.attrs["layers"][-1]),)
    samples = CachedSamples(data.view, layers)
    learner = prompt_learner(class_names(data.view) if cfg.prompts == "coop" else None, cfg, spec, weights, device)
    class_index = {c: i for i, c in enumerate(learner.classes)} if learner.classes else None
    opt = torch.optim.Adam(learner.parameters(), lr=cfg.lr, betas=cfg.betas)
    start = 0
    state = load_resume(out) if resume else None
    if state is not None:
        learner.load_state_dict(state["prompts"])
        opt.load_state_dict(state["optimizer"])
        start = int(state["epoch"])
    info = sidecar_info(data, cfg, samples, layers, spec, learner.classes, extra)
    steps = (len(data.rows) + cfg.batch_size - 1) // cfg.batch_size
    for epoch in range(start, cfg.epochs):
        order = np.random.default_rng([cfg.seed, epoch]).permutation(data.rows).tolist()
        bar = progress(steps, f"epoch {epoch + 1}/{cfg.epochs}", "step", enabled=progress_bar)
        losses = _epoch(learner, opt, samples, order, cfg, device, class_index, bar)
        bar.close()
        prompts = {k: v.detach().cpu() for k, v in learner.state_dict().items()}
        save_checkpoint(epoch_path(out, epoch + 1), prompts, {**info, "epoch": epoch + 1, "mean_losses": losses})
        save_torch({"prompts": prompts, "optimizer": opt.state_dict(), "epoch": epoch + 1}, out / RESUME)
    return finish(out, cfg.epochs)
