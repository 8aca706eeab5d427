"""The object-agnostic prompt learner, the only trained part of PointAD (METHOD.md §4).

1. Two templates, "X x12 object." (normal) and "X x12 damaged object." (anomalous); the 12 placeholder
   token embeddings after the start token are replaced by learnable context vectors, one (12, width)
   tensor per state, init N(0, 0.02). `coop` puts the class name in place of "object" (one pair of
   prompts per class, the same context vectors).
2. Deep text prompts: at the input of text blocks 2..9 (1-based; capped at the encoder's depth),
   sequence positions 1..4 are replaced by that block's own learnable (4, width) tensor, shared by
   both prompts.
3. Text features = EOT token -> ln_final -> text projection -> L2 normalisation (open_clip's own
   `encode_text`; the replacements are forward hooks, so the frozen text transformer is open_clip's).
Choices where METHOD is silent: the placeholder word is "X" (one BPE token); the deep prompts are
shared across classes in `coop`, as they are across the two states.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import contextmanager

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

N_CTX, DEEP_DEPTH, DEEP_LEN = 12, 9, 4


def templates(n_ctx: int, objects: Sequence[str]) -> list[str]:
    """[normal, anomalous] for each object word, in that order."""
    ctx = " ".join(["X"] * n_ctx)
    return [t for obj in objects for t in (f"{ctx} {obj}.", f"{ctx} damaged {obj}.")]


class PromptLearner(nn.Module):
    """Learnable context and deep prompts over a frozen open_clip CLIP text tower.

    Args:
        model: an open_clip `CLIP` (frozen here; only this module's parameters train).
        tokenizer: open_clip's tokenizer for the model (text -> (P, 77) token ids).
        classes: class names for `coop`; None for the object-agnostic prompts.
    """

    def __init__(self, model: nn.Module, tokenizer: Callable, classes: Sequence[str] | None = None,
                 n_ctx: int = N_CTX, deep_depth: int = DEEP_DEPTH, deep_len: int = DEEP_LEN) -> None:
        super().__init__()
        self.clip = [model.eval().requires_grad_(False)]  # a list: not a submodule, not in state_dict
        width = model.token_embedding.weight.shape[1]
        self.n_ctx, self.deep_len = n_ctx, deep_len
        self.ctx_normal = nn.Parameter(torch.empty(n_ctx, width).normal_(std=0.02))
        self.ctx_anomalous = nn.Parameter(torch.empty(n_ctx, width).normal_(std=0.02))
        depth = len(model.transformer.resblocks)
        self.deep_blocks = list(range(2, min(deep_depth, depth) + 1))
        self.deep = nn.ParameterList(
            [nn.Parameter(torch.empty(deep_len, width).normal_(std=0.02)) for _ in self.deep_blocks])
        self.classes = list(classes) if classes else None
        self.register_buffer("tokens", tokenizer(templates(n_ctx, self.classes or ["object"])), persistent=False)

    @property
    def model(self) -> nn.Module:
        """The frozen CLIP."""
        return self.clip[0]

    @contextmanager
    def _hooks(self):  # noqa: ANN202 - a context manager
        model = self.model
        ctx = torch.stack([self.ctx_normal, self.ctx_anomalous])  # (2, n_ctx, width)
        pairs = len(self.tokens) // 2

        def embed(module: nn.Module, args: tuple, out: torch.Tensor) -> torch.Tensor:
            ctx_rows = ctx.repeat(pairs, 1, 1).to(out.dtype)
            return torch.cat([out[:, :1], ctx_rows, out[:, 1 + self.n_ctx:]], dim=1)

        handles = [model.token_embedding.register_forward_hook(embed)]
        blocks = model.transformer.resblocks
        batch_first = getattr(model.transformer, "batch_first", True)
        for deep, i in zip(self.deep, self.deep_blocks, strict=True):
            def pre(module: nn.Module, args: tuple, kwargs: dict, deep: torch.Tensor = deep) -> tuple:
                x = args[0] if batch_first else args[0].transpose(0, 1)
                x = torch.cat([x[:, :1], deep.to(x.dtype).expand(x.shape[0], -1, -1), x[:, 1 + self.deep_len:]], 1)
                return (x if batch_first else x.transpose(0, 1), *args[1:]), kwargs

            handles.append(blocks[i - 1].register_forward_pre_hook(pre, with_kwargs=True))
        try:
            yield
        finally:
            for h in handles:
                h.remove()

    def forward(self) -> torch.Tensor:
        """Normalised text features: (2, D) [g_n, g_a], or (C, 2, D) with `coop` classes."""
        with self._hooks():
            feats = F.normalize(self.model.encode_text(self.tokens), dim=-1)
        return feats.view(-1, 2, feats.shape[-1]) if self.classes else feats
