"""The `train` stage's core: cached features -> the four-term hybrid loss (METHOD.md §4, §7).

Reads only the cache: `encode` (global and patch features), `render` (`mask2d`, `pt2pix`) and
`clean` (per-point labels). One step, for B clouds x K views:
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
from typing import Any

import numpy as np

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
            raise ValueError(f"--loss takes a comma-separated subset of {','.join(LOSS_TERMS)}, got {bad or 'none'}")
        if self.prompts not in ("agnostic", "coop"):
            raise ValueError(f"--prompts must be agnostic or coop, got {self.prompts!r}")


class CachedSamples:
    """Rows of one encode group with what training needs from their render and clean groups.

    Args:
        encode, render, clean: the zarr groups (render is encode's upstream, clean render's).
        layers: the scored blocks (must be among `encode.attrs["layers"]`).
    """

    def __init__(self, encode: Any, render: Any, clean: Any, layers: Sequence[int]) -> None:
        self.encode, self.render, self.clean = encode, render, clean
        cached = list(encode.attrs["layers"])
        missing = [x for x in layers if x not in cached]
        if missing:
            raise ValueError(f"layers {missing} are not in the cache (it holds {cached})")
        self.layer_index = [cached.index(x) for x in layers]
        self.grid = tuple(encode.attrs["patch_grid"])
        self.size = int(render.attrs["image_size"][0])
        self.classes = [str(x) for x in np.asarray(clean["meta/class"][:]).tolist()]
        self.labels = np.asarray(clean["meta/label"][:]).astype(int)

    def item(self, r: int) -> dict[str, Any]:
        """One row as numpy arrays: patch (K, Ls, P, D), glob (K, D), mask (K, H, W), pt2pix (n, K), y (n,)."""
        patch = np.asarray(self.encode["patch"][r])[:, self.layer_index]
        return {"row": r, "patch": patch, "glob": np.asarray(self.encode["global"][r]),
                "mask": np.asarray(self.render["mask2d"][r]),
                "pt2pix": np.asarray(self.render[f"points/{r}/pt2pix"][:]),
                "y": np.asarray(self.clean[f"points/{r}/label"][:]), "label": int(self.labels[r]),
                "cls": self.classes[r]}


def collate(items: Sequence[dict[str, Any]], device: str) -> dict[str, Any]:
    """Stack fixed-shape arrays; keep per-cloud point arrays as lists."""
    import torch

    def stack(key: str, dtype: Any) -> Any:
        return torch.from_numpy(np.stack([it[key] for it in items])).to(device=device, dtype=dtype)

    return {"patch": stack("patch", torch.float32), "glob": stack("glob", torch.float32),
            "mask": stack("mask", torch.float32),
            "label": torch.tensor([it["label"] for it in items], device=device),
            "pt2pix": [torch.from_numpy(it["pt2pix"].astype(np.int64)).to(device) for it in items],
            "y": [torch.from_numpy(it["y"].astype(np.float32)).to(device) for it in items],
            "cls": [it["cls"] for it in items]}


def step_terms(text: Any, batch: dict[str, Any], cfg: TrainConfig, grid: tuple[int, int], size: int,
               class_index: dict[str, int] | None = None) -> dict[str, Any]:
    """The enabled loss terms of one batch, given text features (2, D) or per-class (C, 2, D)."""
    import torch

    from ..model.backproject import backproject, upsample
    from ..model.losses import global_2d_loss, global_3d_loss, local_2d_loss, local_3d_loss
    from ..model.scoring import patch_maps, similarity_logits

    if class_index is not None:  # coop: each cloud is scored against its own class's prompts
        text = text[torch.tensor([class_index[c] for c in batch["cls"]], device=text.device)]
    terms: dict[str, Any] = {}
    logits = similarity_logits(batch["glob"], text, cfg.tau)  # (B, K, 2)
    if "3dg" in cfg.losses:
        terms["3dg"] = global_3d_loss(logits, batch["label"].long())
    if "2dg" in cfg.losses:
        terms["2dg"] = global_2d_loss(logits, (batch["mask"].flatten(2).amax(-1) > 0).long())
    for li in range(batch["patch"].shape[2]):
        maps = patch_maps(batch["patch"][:, :, li], text, grid, cfg.tau)  # (B, K, 2, h, w)
        if "2dl" in cfg.losses:
            up = upsample(maps.flatten(0, 1), size)
            term = local_2d_loss(up, batch["mask"].flatten(0, 1))
            terms["2dl"] = terms.get("2dl", 0) + term
        if "3dl" in cfg.losses:
            scores, seen = zip(*(backproject(maps[b], batch["pt2pix"][b], size) for b in range(len(maps))),
                               strict=True)
            term = local_3d_loss(list(scores), batch["y"], list(seen))
            terms["3dl"] = terms.get("3dl", 0) + term
    return terms
