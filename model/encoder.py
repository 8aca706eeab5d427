"""The frozen CLIP image side with AnomalyCLIP's parameter-free attention change (METHOD.md §3).

Steps, per batch of images:
1. open_clip's own `encode_image` runs unchanged: it gives the global embedding
   (`ln_post(class token) @ proj`), so with the change off or on the global equals `encode_image`;
2. forward pre-hooks on the transformer blocks see each block's input x_i (the original path);
3. the surgery path starts as the input of the first dual block s; at every dual block i it adds
   `out_proj(softmax(v v^T / sqrt(d_head)) v)` with v = the block's value projection of
   `ln_1(x_i)` (value-value attention, per head) and skips the MLP;
4. patch tokens of layer L = `ln_post(tokens after block L) @ proj`, class token dropped, taken
   from the surgery path at dual blocks and from the original path before them (and everywhere
   when the change is off). Blocks are 1-based, as in the paper.

Only hooks are added: the transformer itself is open_clip's, so a refactor upstream cannot make
the global path drift from `encode_image`.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import contextmanager

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


def value_attention(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The block's value-value self-attention of `ln_1(x)`, through its out-projection. x is (B, L, D)."""
    attn: nn.MultiheadAttention = block.attn
    d = x.shape[-1]
    heads = attn.num_heads
    v = F.linear(block.ln_1(x), attn.in_proj_weight[2 * d:], attn.in_proj_bias[2 * d:])
    b, n, _ = v.shape
    v = v.view(b, n, heads, d // heads).transpose(1, 2)  # (B, h, L, d_head)
    out = F.scaled_dot_product_attention(v, v, v)  # softmax(v v^T / sqrt(d_head)) v
    return attn.out_proj(out.transpose(1, 2).reshape(b, n, d))


class PatchEncoder(nn.Module):
    """Global embeddings and per-layer patch tokens of a frozen open_clip CLIP image tower.

    Args:
        model: an open_clip `CLIP` (its `visual` must be a `VisionTransformer`).
        layers: 1-based blocks whose patch tokens are returned, in order.
        dpam: run the attention change (else patch tokens come from the original path).
        dpam_blocks: how many final blocks are dual (METHOD.md: 19 of 24).
    """

    def __init__(self, model: nn.Module, layers: Sequence[int], dpam: bool, dpam_blocks: int) -> None:
        super().__init__()
        self.model = model.eval().requires_grad_(False)
        visual = model.visual
        self.blocks = list(visual.transformer.resblocks)
        depth = len(self.blocks)
        bad = [x for x in layers if not 1 <= x <= depth]
        if bad:
            raise ValueError(f"layers {bad} are outside 1..{depth} for this model")
        self.layers = list(layers)
        self.dpam = dpam
        self.first_dual = depth - dpam_blocks + 1  # 1-based
        self.batch_first = getattr(visual.transformer, "batch_first", True)
        self.image_size = tuple(visual.image_size) if isinstance(visual.image_size, (tuple, list)) \
            else (visual.image_size, visual.image_size)
        patch = visual.patch_size if isinstance(visual.patch_size, (tuple, list)) else (visual.patch_size,) * 2
        self.patch_grid = (self.image_size[0] // patch[0], self.image_size[1] // patch[1])

    def _project(self, tokens: torch.Tensor) -> torch.Tensor:
        visual = self.model.visual
        return visual.ln_post(tokens[:, 1:]) @ visual.proj

    @contextmanager
    def _hooks(self, taken: dict[int, torch.Tensor]):  # noqa: ANN202 - a context manager
        """Collect the projected patch tokens of `self.layers` into `taken` during one forward."""
        state: dict[str, torch.Tensor] = {}
        handles = []
        last = max(self.layers)

        def nld(x: torch.Tensor) -> torch.Tensor:
            return x if self.batch_first else x.transpose(0, 1)

        for i, block in enumerate(self.blocks[:last], start=1):
            dual = self.dpam and i >= self.first_dual

            def pre(module: nn.Module, args: tuple, i: int = i, dual: bool = dual) -> None:
                if not dual:
                    return
                x = nld(args[0])
                surgery = state.get("s", x) + value_attention(module, x)
                state["s"] = surgery
                if i in self.layers:
                    taken[i] = self._project(surgery)

            def post(module: nn.Module, args: tuple, out: torch.Tensor, i: int = i, dual: bool = dual) -> None:
                if not dual and i in self.layers:
                    taken[i] = self._project(nld(out))

            handles.append(block.register_forward_pre_hook(pre))
            handles.append(block.register_forward_hook(post))
        try:
            yield
        finally:
            for h in handles:
                h.remove()

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode normalised images (B, 3, H, W).

        Returns:
            global (B, D) and patch tokens (B, len(layers), h*w, D), both after the final projection.
        """
        taken: dict[int, torch.Tensor] = {}
        with self._hooks(taken):
            glob = self.model.encode_image(images)
        return glob, torch.stack([taken[i] for i in self.layers], dim=1)


def preprocess(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """uint8 (B, H, W, 3) -> CLIP-normalised float (B, 3, *size), bicubic-resized when the size differs."""
    x = images.permute(0, 3, 1, 2).float().div_(255)
    if tuple(x.shape[-2:]) != tuple(size):
        x = F.interpolate(x, size=size, mode="bicubic", align_corners=False, antialias=True).clamp_(0, 1)
    mean = torch.tensor(OPENAI_MEAN, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(OPENAI_STD, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std
