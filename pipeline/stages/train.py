"""The `train` stage's core: cached features -> the four-term hybrid loss (METHOD.md §4, §7).

Its inputs are cached rows (`TrainRow`: a cloud's global and patch features, its rendered masks, its
point->pixel map and point labels), never images. One step, for B clouds x K views:
1. text features g_n, g_a from the prompt learner (per class with `coop`);
2. 3D global: cross-entropy of each cloud's mean view logits; 2D global: per view, the view's label
   being "its mask has an anomalous pixel";
3. per scored layer: patch probability maps (K, 2, 24, 24); 2D local on the maps upsampled to the
   render size against `mask2d`; 3D local on the maps sampled at each point's pixel (never a full
   per-point x per-pixel tensor) and averaged over the views that see it.
Choices where METHOD is silent: local terms are summed over scored layers (one by default); samples
of unknown label (-1) are left out; the view order inside a batch is the cache's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from ..errors import OptionError

VERSION = 1
LOSS_TERMS = ("3dg", "3dl", "2dg", "2dl")


@dataclass(frozen=True)
class TrainConfig:
    """What changes the trained prompts (recorded in every checkpoint's sidecar)."""

    prompts: str = "agnostic"  # agnostic | coop
    n_ctx: int = 12
    deep_depth: int = 9
    deep_len: int = 4
    epochs: int = 15
    batch_size: int = 4
    lr: float = 1e-3
    betas: tuple[float, float] = (0.5, 0.999)
    seed: int = 111
    losses: tuple[str, ...] = LOSS_TERMS
    layers: tuple[int, ...] = ()  # scored blocks among the cached ones; () = the last cached (24)
    tau: float = 0.07
    version: int = VERSION

    def __post_init__(self) -> None:
        object.__setattr__(self, "losses", tuple(self.losses))
        object.__setattr__(self, "layers", tuple(int(x) for x in self.layers))
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))
        bad = [t for t in self.losses if t not in LOSS_TERMS]
        if bad or not self.losses:
            raise OptionError("losses", list(bad or self.losses), f"expected a non-empty subset of {LOSS_TERMS}")
        if self.prompts not in ("agnostic", "coop"):
            raise OptionError("prompts", self.prompts, "expected agnostic or coop")


class TrainRow(Protocol):
    """One cached cloud as training reads it (the cache's `EncodedRow` is one)."""

    patch: np.ndarray  # (K, Ls, P, D) the scored layers
    glob: np.ndarray  # (K, D)
    mask: np.ndarray  # (K, H, W)
    pt2pix: np.ndarray  # (n, K)
    y: np.ndarray  # (n,) point labels
    label: int
    cls: str


@dataclass
class Batch:
    """B clouds on a device: fixed-shape arrays stacked, per-cloud point arrays as lists."""

    patch: Any  # (B, K, Ls, P, D) float32
    glob: Any  # (B, K, D) float32
    mask: Any  # (B, K, H, W) float32
    label: Any  # (B,)
    pt2pix: list[Any]  # B x (n_b, K) int64
    y: list[Any]  # B x (n_b,) float32
    cls: list[str]


def collate(items: Sequence[TrainRow], device: str) -> Batch:
    """Stack fixed-shape arrays; keep per-cloud point arrays as lists."""
    import torch

    def stack(arrays: list[np.ndarray]) -> Any:
        return torch.from_numpy(np.stack(arrays)).to(device=device, dtype=torch.float32)

    return Batch(patch=stack([it.patch for it in items]), glob=stack([it.glob for it in items]),
                 mask=stack([it.mask for it in items]),
                 label=torch.tensor([it.label for it in items], device=device),
                 pt2pix=[torch.from_numpy(it.pt2pix.astype(np.int64)).to(device) for it in items],
                 y=[torch.from_numpy(it.y.astype(np.float32)).to(device) for it in items],
                 cls=[it.cls for it in items])


def step_terms(text: Any, batch: Batch, cfg: TrainConfig, grid: tuple[int, int], size: int,
               class_index: dict[str, int] | None = None) -> dict[str, Any]:
    """The enabled loss terms of one batch, given text features (2, D) or per-class (C, 2, D)."""
    import torch

    from ...model.backproject import backproject, upsample
    from ...model.losses import global_2d_loss, global_3d_loss, local_2d_loss, local_3d_loss
    from ...model.similarity import patch_maps, similarity_logits

    if class_index is not None:  # coop: each cloud is scored against its own class's prompts
        text = text[torch.tensor([class_index[c] for c in batch.cls], device=text.device)]
    terms: dict[str, Any] = {}
    logits = similarity_logits(batch.glob, text, cfg.tau)  # (B, K, 2)
    if "3dg" in cfg.losses:
        terms["3dg"] = global_3d_loss(logits, batch.label.long())
    if "2dg" in cfg.losses:
        terms["2dg"] = global_2d_loss(logits, (batch.mask.flatten(2).amax(-1) > 0).long())
    for li in range(batch.patch.shape[2]):
        maps = patch_maps(batch.patch[:, :, li], text, grid, cfg.tau)  # (B, K, 2, h, w)
        if "2dl" in cfg.losses:
            up = upsample(maps.flatten(0, 1), size)
            term = local_2d_loss(up, batch.mask.flatten(0, 1))
            terms["2dl"] = terms.get("2dl", 0) + term
        if "3dl" in cfg.losses:
            scores, seen = zip(*(backproject(maps[b], batch.pt2pix[b], size) for b in range(len(maps))),
                               strict=True)
            term = local_3d_loss(list(scores), batch.y, list(seen))
            terms["3dl"] = terms.get("3dl", 0) + term
    return terms


def prompt_learner(classes: list[str] | None, cfg: TrainConfig, spec: Any, weights: Any, device: str,
                   model: Any = None) -> Any:
    """A prompt learner on `spec`'s frozen text tower, its parameters drawn from `cfg.seed`.

    `classes` only for `coop` prompts (one set per class name). `model`: the spec's CLIP already
    loaded with `weights` (fp32, on `device`), shared instead of loading another copy; the learner
    hooks its text tower only while computing text features.
    """
    import open_clip
    import torch

    from ...model.prompts import PromptLearner
    from ...model.registry import register_project_configs
    from .weights import load_model

    register_project_configs()
    if model is None:
        model = load_model(spec, weights, device=device)
    torch.manual_seed(cfg.seed)
    learner = PromptLearner(model, open_clip.get_tokenizer(spec.open_clip_name), classes,
                            cfg.n_ctx, cfg.deep_depth, cfg.deep_len)
    return learner.to(device)
