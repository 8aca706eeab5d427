"""Similarities of image features to the two text features (METHOD.md §5).

f = L2-normalised features, tau = 0.07: logits = [<f, g_n>, <f, g_a>] / tau; probabilities by
softmax. The same rule scores a view's global embedding and each of its patch tokens.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812

TAU = 0.07


def similarity_logits(features: torch.Tensor, text: torch.Tensor, tau: float = TAU) -> torch.Tensor:
    """(..., D) features against text (2, D), or per-sample text (B, 2, D) with features (B, ..., D) -> (..., 2)."""
    f = F.normalize(features.float(), dim=-1)
    if text.dim() == 2:
        return f @ text.T / tau
    b = text.shape[0]
    flat = f.reshape(b, -1, f.shape[-1])
    return torch.einsum("bnd,bcd->bnc", flat, text).reshape(*f.shape[:-1], 2) / tau


def patch_maps(patch: torch.Tensor, text: torch.Tensor, grid: tuple[int, int], tau: float = TAU) -> torch.Tensor:
    """Patch tokens (B, K, P, D) -> two-class probability maps (B, K, 2, h, w) [S_n, S_a]."""
    probs = similarity_logits(patch, text, tau).softmax(dim=-1)  # (B, K, P, 2)
    b, k = probs.shape[:2]
    return probs.permute(0, 1, 3, 2).reshape(b, k, 2, *grid)
