"""`pointad-pipe train`: pick the rows, check the model against the cache, run epochs, checkpoint.

Checkpoints (STORE.md "what is not in the cache"): `prompts_eNNN.pt` after every epoch and
`prompts.pt` at the end, each a state dict of the prompt tensors only (load with
`weights_only=True`), with a JSON sidecar naming the encode fingerprint, model, weights hash, config
and git commit. `resume.pt` adds the optimizer state for `--resume`. Files are written to a
temporary name and renamed, so a kill never leaves a half-written checkpoint. The same seed on CPU
gives the same bytes: the data order of epoch e is a permutation drawn from (seed, e).
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import store
from .catalog import Catalog, DatasetEntry
from .errors import PointadError
from .train import CachedSamples, TrainConfig, collate, step_terms


@dataclass(frozen=True)
class TrainData:
    """The groups and rows one training run reads."""

    encode: Any
    render: Any
    clean: Any
    rows: list[int]


def git_commit() -> str:
    """The project's commit, or `unknown` outside a checkout."""
    try:
        out = subprocess.run(["git", "-C", str(Path(__file__).resolve().parent), "rev-parse", "HEAD"],
                             capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def select_rows(catalog: Catalog, entry: DatasetEntry, classes: list[str], split: str | None,
                encode_fp: str | None = None) -> TrainData:
    """Rows of the training class(es) and split whose encode is done and whose label is known."""
    root = store.open_dataset(catalog.cache, entry.name)
    groups = store.stage_groups(root, "encode")
    if encode_fp:
        groups = [g for g in groups if g.attrs["fingerprint"] == encode_fp]
    if not groups:
        raise PointadError(f"no encode output for dataset {entry.name!r} in {catalog.cache}"
                           f"{' with fingerprint ' + encode_fp if encode_fp else ''}; "
                           f"run `pointad-pipe encode --dataset {entry.name}` first")
    enc = groups[-1]
    render, clean = store.upstream_of(root, enc)
    meta = store.read_meta(clean)
    done = store.done_mask(enc)
    unknown = sorted(set(classes) - set(meta["class"]))
    if unknown:
        raise PointadError(f"--train-class {unknown}: not in dataset {entry.name!r} "
                           f"(it has {sorted(set(meta['class']))})")
    rows = [r for r in range(len(done)) if done[r] and meta["class"][r] in classes
            and (split is None or meta["split"][r] == split) and meta["label"][r] >= 0]
    if not rows:
        raise PointadError(f"no encoded rows with a known label for classes {classes}, split {split!r}")
    return TrainData(enc, render, clean, rows)


def check_model(enc: Any, model: str | None, weights: str | None) -> tuple[Any, Any]:
    """The spec and weights of the cache's model; refuse another model or other weights."""
    from ..model.registry import get_spec
    from .weights import resolve_weights

    held, held_sha = enc.attrs["model"], enc.attrs["weights_sha256"]
    if model and model != held:
        raise PointadError(f"the cache holds features of {held} (weights sha256 {held_sha[:12]}...), "
                           f"not {model}: train with --model {held}, or encode with {model} first")
    spec = get_spec(held)
    resolved = resolve_weights(spec, weights)
    if resolved.sha256 != held_sha:
        raise PointadError(f"the cache was encoded by {held} with weights sha256 {held_sha}, but the weights "
                           f"found ({resolved.pretrained}) have sha256 {resolved.sha256}; pass --weights to the "
                           f"file the cache was encoded with")
    return spec, resolved


def _save(obj: Any, path: Path) -> None:
    import torch

    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    tmp.replace(path)


def _sidecar(path: Path, info: dict[str, Any]) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(info, indent=1, sort_keys=True))
    tmp.replace(path.with_suffix(".json"))


def build_learner(data: TrainData, cfg: TrainConfig, spec: Any, weights: Any, device: str) -> Any:
    """The prompt learner over the cache's model, its parameters drawn from `cfg.seed`."""
    classes = sorted({str(c) for c in np.asarray(data.clean["meta/class"][:]).tolist()}) \
        if cfg.prompts == "coop" else None
    return prompt_learner(classes, cfg, spec, weights, device)


def prompt_learner(classes: list[str] | None, cfg: TrainConfig, spec: Any, weights: Any, device: str) -> Any:
    """A prompt learner on `spec`'s frozen text tower; `classes` only for `coop` prompts."""
    import open_clip
    import torch

    from ..model.prompts import PromptLearner
    from ..model.registry import register_project_configs
    from .weights import load_model

    register_project_configs()
    model = load_model(spec, weights, device=device)
    torch.manual_seed(cfg.seed)
    learner = PromptLearner(model, open_clip.get_tokenizer(spec.open_clip_name), classes,
                            cfg.n_ctx, cfg.deep_depth, cfg.deep_len)
    return learner.to(device)


def train(data: TrainData, cfg: TrainConfig, out: Path, spec: Any, weights: Any, device: str = "cpu",
          resume: bool = False, progress_bar: bool = True, extra: dict[str, Any] | None = None) -> Path:
    """Train prompts on `data.rows`; return the final checkpoint's path."""
    import torch

    from ..model.losses import hybrid_loss
    from .runner import progress

    torch.use_deterministic_algorithms(True, warn_only=True)
    out.mkdir(parents=True, exist_ok=True)
    layers = cfg.layers or (int(data.encode.attrs["layers"][-1]),)
    samples = CachedSamples(data.encode, data.render, data.clean, layers)
    learner = build_learner(data, cfg, spec, weights, device)
    class_index = {c: i for i, c in enumerate(learner.classes)} if learner.classes else None
    opt = torch.optim.Adam(learner.parameters(), lr=cfg.lr, betas=cfg.betas)
    start = 0
    if resume and (out / "resume.pt").is_file():
        state = torch.load(out / "resume.pt", weights_only=True)
        learner.load_state_dict(state["prompts"])
        opt.load_state_dict(state["optimizer"])
        start = int(state["epoch"])
    info = {"encode_fingerprint": data.encode.attrs["fingerprint"], "model": spec.name,
            "weights_sha256": data.encode.attrs["weights_sha256"], "train": asdict(cfg), "scored_layers": list(layers),
            "rows": len(data.rows), "classes": sorted({samples.classes[r] for r in data.rows}),
            "prompt_classes": learner.classes,
            "pipeline": {"format": data.clean.attrs.get("format"), "clean": dict(data.clean.attrs["config"]),
                         "render": dict(data.render.attrs["config"]), "encode": dict(data.encode.attrs["config"])},
            "git_commit": git_commit(), "method": {"tau": cfg.tau, "loss_weights": 1.0,
                                                   "visibility": data.render.attrs.get("visibility")},
            **(extra or {})}
    steps = (len(data.rows) + cfg.batch_size - 1) // cfg.batch_size
    for epoch in range(start, cfg.epochs):
        order = np.random.default_rng([cfg.seed, epoch]).permutation(data.rows).tolist()
        bar = progress(steps, f"epoch {epoch + 1}/{cfg.epochs}", "step", enabled=progress_bar)
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
        bar.close()
        prompts = {k: v.detach().cpu() for k, v in learner.state_dict().items()}
        epoch_info = {**info, "epoch": epoch + 1, "mean_losses": {k: v / steps for k, v in sums.items()}}
        path = out / f"prompts_e{epoch + 1:03d}.pt"
        _save(prompts, path)
        _sidecar(path, epoch_info)
        _save({"prompts": prompts, "optimizer": opt.state_dict(), "epoch": epoch + 1}, out / "resume.pt")
    final = out / "prompts.pt"
    last = out / f"prompts_e{cfg.epochs:03d}.pt"
    if last.is_file():
        _save(torch.load(last, weights_only=True), final)
        _sidecar(final, json.loads(last.with_suffix(".json").read_text()))
    return final
