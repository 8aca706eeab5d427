"""Prompt checkpoints: where they are written, what their sidecar says, and reading them back.

STORE.md "what is not in the cache": `prompts_eNNN.pt` after every epoch and `prompts.pt` at the
end, each a state dict of the prompt tensors only (load with `weights_only=True`), beside a JSON
sidecar naming the encode fingerprint, model, weights hash, config and git commit. `resume.pt` adds
the optimizer state for resuming. Every file is written atomically.

`load_checkpoint` also reads the authors' format (their `train.py` saves `{"prompt_learner":
state_dict}`, as in the released PointAD checkpoints), told apart by content: its tensors are mapped
onto our names and its sidecar synthesised (`format` "official"); the facts no such file holds
(model, weights, scored layers, encode group, training classes) come from the caller.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ...model.registry import MODELS
from ..errors import CheckpointMismatch, OptionError, PointadError, first_line
from ..outputs.atomic import atomic_path, write_text
from ..stages.train import TrainConfig, prompt_learner

FINAL = "prompts.pt"
RESUME = "resume.pt"
OFFICIAL = "official"
#: the model an official checkpoint is taken for when the caller names none (the authors' backbone)
OFFICIAL_MODEL = "ViT-L-14-336"
#: what an official checkpoint's file cannot say; the caller supplies it
CALLER_FACTS = ("model", "weights_sha256", "scored_layers", "encode_fingerprint", "classes", "dataset", "pipeline")
_DEEP = re.compile(r"compound_prompts_text\.(\d+)")


def git_commit() -> str:
    """The project's commit, or `unknown` outside a checkout."""
    try:
        out = subprocess.run(["git", "-C", str(Path(__file__).resolve().parent), "rev-parse", "HEAD"],
                             capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def epoch_path(out: Path, epoch: int) -> Path:
    """The checkpoint written after `epoch` (1-based)."""
    return out / f"prompts_e{epoch:03d}.pt"


def save_torch(obj: Any, path: Path) -> None:
    """`torch.save`, atomically."""
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def save_checkpoint(path: Path, prompts: dict[str, Any], info: dict[str, Any]) -> None:
    """The prompt tensors at `path` and their sidecar beside it (`.json`)."""
    save_torch(prompts, path)
    write_text(path.with_suffix(".json"), json.dumps(info, indent=1, sort_keys=True))


def load_resume(out: Path) -> dict[str, Any] | None:
    """The resume state of a run folder (prompts, optimizer, epoch), or None."""
    import torch

    path = out / RESUME
    return torch.load(path, weights_only=True) if path.is_file() else None


def finish(out: Path, epochs: int) -> Path:
    """Copy the last epoch's checkpoint and sidecar to `prompts.pt`; return its path."""
    import torch

    final, last = out / FINAL, epoch_path(out, epochs)
    if last.is_file():
        save_checkpoint(final, torch.load(last, weights_only=True), json.loads(last.with_suffix(".json").read_text()))
    return final


def train_config(side: dict[str, Any]) -> TrainConfig:
    """A sidecar's train config (JSON lists back to tuples)."""
    return TrainConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in side["train"].items()})


@dataclass
class Checkpoint:
    """Trained prompt tensors (our PromptLearner's names) and their sidecar.

    An official checkpoint's sidecar is synthesised (`format` "official"): what the file cannot say
    (model, weights_sha256, scored_layers, encode_fingerprint, classes, dataset, pipeline) is None or
    empty until the caller supplies it (`filled`, `for_encode`).
    """

    path: Path
    prompts: dict[str, Any]
    side: dict[str, Any]
    config: TrainConfig = field(init=False)

    def __post_init__(self) -> None:
        self.config = train_config(self.side)

    @property
    def official(self) -> bool:
        """True for the authors' format (`{"prompt_learner": state_dict}`)."""
        return self.side.get("format") == OFFICIAL

    @property
    def width(self) -> int:
        """The prompts' width: the text tower's width they were trained on."""
        return int(self.prompts["ctx_normal"].shape[-1])

    @property
    def text_depth(self) -> int:
        """The text blocks the deep prompts need (blocks 2..n+1 for n deep prompts)."""
        return 1 + sum(1 for k in self.prompts if k.startswith("deep."))

    def fits(self, model: str) -> bool:
        """Whether a registered model's text tower takes these prompts (width, and blocks for the deep ones)."""
        width, depth = text_tower(model)
        return width == self.width and depth >= self.text_depth

    def fitting_models(self) -> list[str]:
        """The registered models whose text tower takes these prompts."""
        return [name for name in MODELS if self.fits(name)]

    def filled(self, **known: Any) -> Checkpoint:
        """An official checkpoint with what its file cannot say; ours as it is (its sidecar knows).

        `known`: any of `model`, `weights_sha256`, `scored_layers`, `encode_fingerprint`, `classes`,
        `dataset`, `pipeline` (None leaves a fact as it was).

        Raises:
            CheckpointMismatch: the model's text tower does not take these prompts.
        """
        if not self.official:
            return self
        bad = sorted(set(known) - set(CALLER_FACTS))
        if bad:
            raise TypeError(f"unknown checkpoint facts {bad}; expected some of {CALLER_FACTS}")
        side = {**self.side, **{k: _json_value(v) for k, v in known.items() if v is not None}}
        if side.get("model"):
            check_fits(self, side["model"], *text_tower(side["model"]))
        return Checkpoint(self.path, self.prompts, side)

    def for_encode(self, groups: Sequence[Mapping[str, Any]], classes: Sequence[str] = (),
                   dataset: str | None = None) -> Checkpoint:
        """An official checkpoint completed from the newest encode group (its attrs) that can score it.

        A group can when its model's text tower takes the prompts and it holds that model's last block
        (the layer the authors' checkpoints were trained and scored on, METHOD.md §3). `classes`: the
        checkpoint's training classes where the caller knows them. Ours: unchanged.

        Raises:
            CheckpointMismatch: no group can (names the checkpoint, its width and the groups' models).
        """
        if not self.official:
            return self
        groups = [dict(a) for a in groups]  # zarr attrs or dicts
        usable = [a for a in groups if a.get("model") in MODELS and self.fits(a["model"])
                  and official_layer(a["model"]) in list(a.get("layers", []))]
        if not usable:
            held = sorted({str(a.get("model")) for a in groups}) or ["none"]
            raise CheckpointMismatch(self.path, self.width, self.text_depth, None, None, None, self.fitting_models(),
                                     f"no encode group of the dataset is by such a model with its last block "
                                     f"cached (models encoded: {', '.join(held)})")
        attrs = usable[-1]
        return self.filled(model=attrs["model"], weights_sha256=attrs["weights_sha256"],
                           scored_layers=[official_layer(attrs["model"])], encode_fingerprint=attrs["fingerprint"],
                           classes=sorted(classes), dataset=dataset)


def _json_value(value: Any) -> Any:
    """Tuples and sets as JSON would hold them (lists), so a filled sidecar reads like a saved one."""
    return sorted(value) if isinstance(value, set) else list(value) if isinstance(value, tuple) else value


def _architecture(model: str) -> dict[str, Any]:
    """A registered model's open_clip config (nothing is loaded); an unknown name is an `OptionError`."""
    from ...model.registry import architecture

    if model not in MODELS:
        raise OptionError("model", model, f"expected one of {sorted(MODELS)}")
    return architecture(MODELS[model])


def text_tower(model: str) -> tuple[int, int]:
    """(width, blocks) of a registered model's text tower."""
    text = _architecture(model)["text_cfg"]
    return int(text["width"]), int(text["layers"])


def official_layer(model: str) -> int:
    """The scored block of an official checkpoint on `model`: its vision tower's last (24 for ViT-L)."""
    return int(_architecture(model)["vision_cfg"]["layers"])


def check_fits(ckpt: Checkpoint, model: str, width: int, depth: int) -> None:
    """Refuse a text tower (`width`, `depth` blocks) that does not take the checkpoint's prompts."""
    if width != ckpt.width or depth < ckpt.text_depth:
        raise CheckpointMismatch(ckpt.path, ckpt.width, ckpt.text_depth, model, width, depth, ckpt.fitting_models())


def official_prompts(path: Path, state: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The authors' prompt-learner state dict -> our PromptLearner's tensors and a synthesised sidecar.

    `ctx_pos` (1, 1, n_ctx, W) is the normal context, `ctx_neg` the anomalous one,
    `compound_prompts_text.i` (L, W) the deep prompt of text block i + 2; the template buffers and
    the unused projections are left out. The deep prompts are rounded to fp16, as the authors' text
    encoder casts them before inserting them (METHOD.md §4): these are the values their model used.
    """
    import torch

    pos, neg = state["ctx_pos"], state["ctx_neg"]
    if pos.ndim != 4 or tuple(pos.shape[:2]) != (1, 1) or tuple(neg.shape) != tuple(pos.shape):
        raise PointadError(f"checkpoint {path}: context vectors of shapes {tuple(pos.shape)} and "
                           f"{tuple(neg.shape)}; expected one (1, 1, n_ctx, width) per state")
    width = pos.shape[-1]
    found = sorted(int(m.group(1)) for k in state if (m := _DEEP.fullmatch(k)))
    if found != list(range(len(found))):
        raise PointadError(f"checkpoint {path}: deep prompts {found} are not numbered 0..n-1")
    deep = [state[f"compound_prompts_text.{i}"] for i in found]
    if any(d.ndim != 2 or d.shape != deep[0].shape or d.shape[-1] != width for d in deep):
        raise PointadError(f"checkpoint {path}: deep prompts of shapes {[tuple(d.shape) for d in deep]}; "
                           f"expected (length, {width}) each")
    prompts = {"ctx_normal": pos[0, 0].float().clone(), "ctx_anomalous": neg[0, 0].float().clone(),
               **{f"deep.{i}": d.to(torch.float16).float() for i, d in enumerate(deep)}}
    cfg = TrainConfig(n_ctx=int(pos.shape[2]), deep_depth=len(deep) + 1,
                      deep_len=int(deep[0].shape[0]) if deep else TrainConfig.deep_len)
    side = {"format": OFFICIAL, "train": json.loads(json.dumps(asdict(cfg))), "prompt_classes": None,
            "method": {"tau": cfg.tau}, "deep_prompts": "rounded to fp16 (the authors' cast)",
            **dict.fromkeys(CALLER_FACTS), "classes": [], "pipeline": {}}
    return prompts, side


def official_state(raw: Any) -> Mapping[str, Any] | None:
    """The authors' prompt-learner state dict in a loaded file (under `prompt_learner` or bare), else None."""
    state = raw.get("prompt_learner", raw) if isinstance(raw, Mapping) else None
    return state if isinstance(state, Mapping) and "ctx_pos" in state and "ctx_neg" in state else None


def load_checkpoint(path: Path, **known: Any) -> Checkpoint:
    """A prompt checkpoint, ours or the authors', told apart by content (`torch.load(weights_only=True)`).

    Ours: the tensors and their JSON sidecar. Theirs (`{"prompt_learner": state_dict}`, e.g. a released
    PointAD `.pth`): mapped onto our names, the sidecar synthesised (`official_prompts`), then `filled`
    with `known` (see `Checkpoint.filled`; not read for ours).

    Raises:
        PointadError: no such file, our format without its sidecar, or a file holding neither format.
        CheckpointMismatch: `known` names a model whose text tower does not take the prompts.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise PointadError(f"checkpoint {path} not found")
    try:
        raw = torch.load(path, weights_only=True)
    except Exception as exc:  # torch's message suggests weights_only=False, which a user must not do here
        raise PointadError(f"checkpoint {path} cannot be read as a torch file of prompt tensors "
                           f"({type(exc).__name__}); is it a `train` checkpoint or a PointAD .pth?") from exc
    state = official_state(raw)
    if state is not None:
        prompts, side = official_prompts(path, state)
        return Checkpoint(path, prompts, side).filled(**known)
    if not isinstance(raw, Mapping) or "ctx_normal" not in raw:
        keys = sorted(raw)[:6] if isinstance(raw, Mapping) else type(raw).__name__
        raise PointadError(f"checkpoint {path} holds neither our prompt tensors nor the authors' "
                           f"prompt_learner (found {keys})")
    side = path.with_suffix(".json")
    if not side.is_file():
        raise PointadError(f"checkpoint {path}: its sidecar {side.name} is missing")
    return Checkpoint(path, dict(raw), json.loads(side.read_text()))


def reusable(checkpoint: Path, encode_fp: str, cfg: TrainConfig, samples: str) -> bool:
    """True when a finished checkpoint was trained on these samples (`View.digest`) of this encode group and config."""
    side = checkpoint.with_suffix(".json")
    if not checkpoint.is_file() or not side.is_file():
        return False
    info = json.loads(side.read_text())
    return (info.get("encode_fingerprint") == encode_fp and info.get("samples_sha256") == samples
            and info.get("train") == json.loads(json.dumps(asdict(cfg))))


def text_features(ckpt: Checkpoint, spec: Any, weights: Any, classes: list[str] | None,
                  device: str = "cpu", model: Any = None) -> tuple[Any, list[str] | None]:
    """Normalised text features of the trained prompts, (2, D) or (C, 2, D) for `coop`, and the class names.

    `model`: the spec's CLIP already loaded (fp32, on `device`), to share it; else it is loaded here.

    Raises:
        CheckpointMismatch: the model's text tower does not take the prompts.
    """
    import torch

    learner = prompt_learner(ckpt.side.get("prompt_classes", classes) if ckpt.config.prompts == "coop" else None,
                             ckpt.config, spec, weights, device, model=model)
    clip = learner.model
    check_fits(ckpt, spec.name, clip.token_embedding.weight.shape[1], len(clip.transformer.resblocks))
    try:
        learner.load_state_dict(ckpt.prompts)
    except RuntimeError as exc:  # torch's multi-line "size mismatch for ..." dump
        raise PointadError(f"checkpoint {ckpt.path}: its prompts do not have the shapes its sidecar "
                           f"{ckpt.path.with_suffix('.json').name} describes ({first_line(exc)}); is that sidecar "
                           f"the checkpoint's own?") from None
    with torch.no_grad():
        return learner().detach().cpu(), learner.classes
