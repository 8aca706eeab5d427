"""Prompt checkpoints: where they are written, what their sidecar says, and reading them back.

STORE.md "what is not in the cache": `prompts_eNNN.pt` after every epoch and `prompts.pt` at the
end, each a state dict of the prompt tensors only (load with `weights_only=True`), beside a JSON
sidecar naming the encode fingerprint, model, weights hash, config and git commit. `resume.pt` adds
the optimizer state for resuming. Every file is written atomically.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import PointadError
from ..outputs.atomic import atomic_path, write_text
from ..stages.train import TrainConfig, prompt_learner

FINAL = "prompts.pt"
RESUME = "resume.pt"


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
    """Trained prompt tensors and their JSON sidecar."""

    path: Path
    prompts: dict[str, Any]
    side: dict[str, Any]
    config: TrainConfig = field(init=False)

    def __post_init__(self) -> None:
        self.config = train_config(self.side)


def load_checkpoint(path: Path) -> Checkpoint:
    """The prompt tensors (weights_only) and their JSON sidecar."""
    import torch

    side = path.with_suffix(".json")
    if not path.is_file() or not side.is_file():
        raise PointadError(f"checkpoint {path} or its sidecar {side.name} is missing")
    return Checkpoint(path, torch.load(path, weights_only=True), json.loads(side.read_text()))


def reusable(checkpoint: Path, encode_fp: str, cfg: TrainConfig) -> bool:
    """True when a finished checkpoint was trained on this encode group with this exact config."""
    side = checkpoint.with_suffix(".json")
    if not checkpoint.is_file() or not side.is_file():
        return False
    info = json.loads(side.read_text())
    return info.get("encode_fingerprint") == encode_fp and info.get("train") == json.loads(json.dumps(asdict(cfg)))


def text_features(ckpt: Checkpoint, spec: Any, weights: Any, classes: list[str] | None,
                  device: str = "cpu") -> tuple[Any, list[str] | None]:
    """Normalised text features of the trained prompts, (2, D) or (C, 2, D) for `coop`, and the class names."""
    import torch

    learner = prompt_learner(ckpt.side.get("prompt_classes", classes) if ckpt.config.prompts == "coop" else None,
                             ckpt.config, spec, weights, device)
    learner.load_state_dict(ckpt.prompts)
    with torch.no_grad():
        return learner().detach().cpu(), learner.classes
