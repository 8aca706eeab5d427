"""PointAD's four training losses, each of weight 1 (METHOD.md §7).

Steps:
1. 3D global: cross-entropy of each cloud's mean over its OWN K views of the logits
   (the code averages logits, which we follow; it also mixes clouds when B > 1, which we do not);
2. 2D global: cross-entropy of every view's logits against the view's label, averaged over B·K;
3. 3D local: Dice(s_a, y) + Dice(s_n, 1 - y) on each cloud's seen points, averaged over clouds
   (never-seen points are excluded, unlike the code, which keeps them as normal targets at 0);
4. 2D local: Focal(probabilities, mask2d) + Dice(S_a, mask2d) + Dice(S_n, 1 - mask2d) per view at 336²;
5. hybrid: the sum of the enabled terms.

Class index 0 is normal, 1 is anomalous. The temperature τ = 0.07 is applied by the caller.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor

LOSS_TERMS = ("3dg", "3dl", "2dg", "2dl")


def _dice_rows(p: Tensor, t: Tensor) -> Tensor:
    """Dice loss of each row of (R, M) tensors: one value per item, so callers can average per view or cloud."""
    inter = (p * t).sum(dim=1)
    return 1.0 - (2.0 * inter + 1.0) / (p.sum(dim=1) + t.sum(dim=1) + 1.0)


def _check_same_shape(name: str, a: Tensor, b: Tensor) -> None:
    """Raise a ValueError naming `name` when two tensors that pair up elementwise differ in shape."""
    if a.shape != b.shape:
        raise ValueError(f"{name}: expected prediction and target of the same shape, got {tuple(a.shape)} and "
                         f"{tuple(b.shape)}")


def dice(p: Tensor, t: Tensor) -> Tensor:
    """Soft Dice loss of one item, 1 - (2Σpt + 1)/(Σp + Σt + 1) over all its elements (METHOD.md §7).

    The +1 smoothing keeps an all-normal target (Σt = 0) finite: the loss is then Σp/(Σp + 1),
    which falls to 0 as p does.

    Args:
        p: predicted probabilities, any shape.
        t: target in [0, 1], the same shape as `p`.

    Returns:
        A 0-d tensor.
    """
    _check_same_shape("dice", p, t)
    return _dice_rows(p.reshape(1, -1), t.to(p.dtype).reshape(1, -1))[0]


def global_3d_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Cross-entropy of each cloud's view-averaged logits against the cloud's label (METHOD.md §7, 3D global).

    Each cloud averages only its own K views; the authors' reshape mixes clouds when B > 1.

    Args:
        logits: (B, K, 2) per-view logits [<f, g_n>, <f, g_a>] / τ.
        labels: (B,) long cloud labels (0 normal, 1 anomalous).

    Returns:
        A 0-d tensor, the mean over the B clouds.
    """
    if logits.dim() != 3 or labels.shape != logits.shape[:1]:
        raise ValueError(f"global_3d_loss: expected logits (B, K, C) and labels (B,), got {tuple(logits.shape)} "
                         f"and {tuple(labels.shape)}")
    return F.cross_entropy(logits.mean(dim=1), labels.long())


def global_2d_loss(logits: Tensor, view_labels: Tensor) -> Tensor:
    """Cross-entropy of every view's logits against its own label (METHOD.md §7, 2D global).

    Args:
        logits: (B, K, 2) per-view logits.
        view_labels: (B, K) long; 1 when the view's mask has an anomalous pixel.

    Returns:
        A 0-d tensor, the mean over the B·K views.
    """
    if logits.dim() != 3 or view_labels.shape != logits.shape[:2]:
        raise ValueError(f"global_2d_loss: expected logits (B, K, C) and view_labels (B, K), got "
                         f"{tuple(logits.shape)} and {tuple(view_labels.shape)}")
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), view_labels.reshape(-1).long())


def focal_loss(
    probs: Tensor, target: Tensor, gamma: float = 2.0, smoothing: float = 1e-5, eps: float = 1e-5
) -> Tensor:
    """Focal loss on class probabilities, without α (METHOD.md §7, 2D local; Lin et al. 2017).

    With C classes and the one-hot target o:
    1. smoothed target o' = clamp(o, smoothing / (C - 1), 1 - smoothing), so for C = 2 a pixel of class 1
       has o' = [1e-5, 1 - 1e-5];
    2. p_t = Σ_c o'_c · probs_c (no eps here);
    3. loss = -(1 - p_t)^γ · log(p_t + eps), averaged over all N·H·W pixels.

    Args:
        probs: (N, C, H, W) probabilities (softmax already applied).
        target: (N, H, W) class indices (a {0, 1} mask for C = 2; float masks are rounded).
        gamma: focusing exponent γ; 0 gives a smoothed negative log-likelihood.
        smoothing: label smoothing of the one-hot target.
        eps: added to p_t inside the log only.

    Returns:
        A 0-d tensor.
    """
    if probs.dim() != 4 or target.shape != (probs.shape[0], *probs.shape[2:]):
        raise ValueError(f"focal_loss: expected probs (N, C, H, W) and target (N, H, W), got {tuple(probs.shape)} "
                         f"and {tuple(target.shape)}")
    n_classes = probs.shape[1]
    if n_classes < 2:
        raise ValueError(f"focal_loss: expected at least 2 classes, got {n_classes}")
    one_hot = F.one_hot(target.round().long(), n_classes).permute(0, 3, 1, 2).to(probs.dtype)
    one_hot = one_hot.clamp(smoothing / (n_classes - 1), 1.0 - smoothing)
    p_t = (one_hot * probs).sum(dim=1)
    return (-((1.0 - p_t) ** gamma) * torch.log(p_t + eps)).mean()


def local_2d_loss(probs: Tensor, mask: Tensor) -> Tensor:
    """Focal + Dice(S_a, mask) + Dice(S_n, 1 - mask) on upsampled view maps (METHOD.md §7, 2D local).

    Dice is taken per view and averaged over views, as METHOD says "per view"; the focal term is a
    mean over all pixels of all views.

    Args:
        probs: (N, 2, H, W) two-class probabilities [S_n, S_a], already upsampled to 336² by the caller.
        mask: (N, H, W) 2D ground truth in {0, 1}.

    Returns:
        A 0-d tensor.
    """
    if probs.dim() != 4 or probs.shape[1] != 2 or mask.shape != (probs.shape[0], *probs.shape[2:]):
        raise ValueError(f"local_2d_loss: expected probs (N, 2, H, W) and mask (N, H, W), got "
                         f"{tuple(probs.shape)} and {tuple(mask.shape)}")
    mask = mask.to(probs.dtype)
    n = probs.shape[0]
    s_n, s_a = probs[:, 0].reshape(n, -1), probs[:, 1].reshape(n, -1)
    flat = mask.reshape(n, -1)
    return focal_loss(probs, mask) + _dice_rows(s_a, flat).mean() + _dice_rows(s_n, 1.0 - flat).mean()


def local_3d_loss(scores: Sequence[Tensor], labels: Sequence[Tensor], seen: Sequence[Tensor]) -> Tensor:
    """Dice(s_a, y) + Dice(s_n, 1 - y) on each cloud's seen points, averaged over clouds (METHOD.md §7, 3D local).

    Points that no view sees carry no score of their own, so they are excluded (the code keeps them
    at 0, as normal targets). A cloud with no seen point contributes 0.

    Args:
        scores: per cloud, (n_b, 2) back-projected point probabilities [s_n, s_a].
        labels: per cloud, (n_b,) point labels in {0, 1}.
        seen: per cloud, (n_b,) bool, True when at least one view sees the point.

    Returns:
        A 0-d tensor.
    """
    if not len(scores) == len(labels) == len(seen) or len(scores) == 0:
        raise ValueError(f"local_3d_loss: expected as many (>= 1) scores, labels and seen, got {len(scores)}, "
                         f"{len(labels)} and {len(seen)}")
    per_cloud = []
    for b, (s, y, m) in enumerate(zip(scores, labels, seen, strict=True)):
        if s.dim() != 2 or s.shape[1] != 2 or y.shape != s.shape[:1] or m.shape != s.shape[:1]:
            raise ValueError(f"local_3d_loss: cloud {b}: expected scores (n, 2), labels (n,) and seen (n,), got "
                             f"{tuple(s.shape)}, {tuple(y.shape)} and {tuple(m.shape)}")
        m = m.bool()
        y_seen = y[m].to(s.dtype)
        per_cloud.append(dice(s[m, 1], y_seen) + dice(s[m, 0], 1.0 - y_seen))
    return torch.stack(per_cloud).mean()


def hybrid_loss(terms: dict[str, Tensor], enabled: Iterable[str]) -> Tensor:
    """Sum of the enabled loss terms, each of weight 1 (METHOD.md §7).

    Args:
        terms: loss values by key, from "3dg", "3dl", "2dg", "2dl".
        enabled: the keys to sum (ablations drop some).

    Returns:
        A 0-d tensor.

    Raises:
        ValueError: when nothing is enabled, or a key is unknown.
        KeyError: when an enabled term was not computed.
    """
    keys = list(dict.fromkeys(enabled))
    if not keys:
        raise ValueError(f"hybrid_loss: no term enabled; choose from {list(LOSS_TERMS)}")
    unknown = [k for k in keys if k not in LOSS_TERMS]
    if unknown:
        raise ValueError(f"hybrid_loss: unknown terms {unknown}; valid terms are {list(LOSS_TERMS)}")
    missing = [k for k in keys if k not in terms]
    if missing:
        raise KeyError(f"hybrid_loss: enabled terms {missing} were not computed (got {sorted(terms)})")
    return torch.stack([terms[k] for k in keys]).sum()
