"""Losses (METHOD.md §7) and back-projection (§6) against hand values and independent short formulas."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F  # noqa: N812

from pointad_pipe.model.backproject import backproject, fill_unseen, sample_at_pixels, upsample
from pointad_pipe.model.losses import (
    dice,
    focal_loss,
    global_2d_loss,
    global_3d_loss,
    hybrid_loss,
    local_2d_loss,
    local_3d_loss,
)

T = torch.tensor


# ---------------------------------------------------------------- Dice


def test_dice_hand_2x2():
    p = T([[0.9, 0.2], [0.1, 0.8]])
    t = T([[1.0, 0.0], [0.0, 1.0]])
    # Σpt = 0.9 + 0.8 = 1.7, Σp = 2.0, Σt = 2  ->  1 - (2·1.7 + 1)/(2.0 + 2 + 1) = 1 - 4.4/5 = 0.12
    out = dice(p, t)
    assert out.dim() == 0
    assert out.item() == pytest.approx(0.12, abs=1e-6)


def test_dice_all_zero_target_is_finite_and_falls_with_p():
    t = torch.zeros(4, 4)
    values = [dice(torch.full((4, 4), v), t).item() for v in (0.5, 0.1, 0.01, 0.0)]
    assert all(math.isfinite(v) for v in values)
    assert values == sorted(values, reverse=True) and values[0] > values[-1]
    # Σt = 0: 1 - 1/(Σp + 1) = Σp/(Σp + 1); Σp = 16·0.5 = 8 -> 8/9, and exactly 0 at p = 0.
    assert values[0] == pytest.approx(8 / 9, abs=1e-6)
    assert values[-1] == 0.0


# ---------------------------------------------------------------- global losses


def test_global_3d_hand_ce_on_mean_logits():
    logits = T([[[0.0, 2.0], [2.0, 2.0]]])  # one cloud, two views: mean logits [1, 2]
    # CE(label 1) = -log(e^2/(e^1 + e^2)) = log(1 + e^-1)
    assert global_3d_loss(logits, T([1])).item() == pytest.approx(math.log(1 + math.exp(-1)), abs=1e-6)
    # CE(label 0) = -log(e^1/(e^1 + e^2)) = log(1 + e^1)
    assert global_3d_loss(logits, T([0])).item() == pytest.approx(math.log(1 + math.e), abs=1e-6)


def test_global_3d_averages_each_cloud_own_views():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 2, generator=g) * 3
    labels = T([0, 1])
    base = global_3d_loss(logits, labels)
    within = logits[:, [2, 0, 1]]  # permute views inside each cloud
    assert global_3d_loss(within, labels).item() == pytest.approx(base.item(), abs=1e-6)
    across = logits.clone()
    across[0, 0], across[1, 0] = logits[1, 0], logits[0, 0]  # swap one view between the clouds
    assert abs(global_3d_loss(across, labels).item() - base.item()) > 1e-3
    # independent formula: per cloud, -log_softmax(mean of its own views)[label]
    ref = sum(-torch.log_softmax(logits[b].mean(0), dim=0)[labels[b]] for b in range(2)) / 2
    assert base.item() == pytest.approx(ref.item(), abs=1e-6)


def test_global_2d_matches_per_view_cross_entropy():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 3, 2, generator=g)
    labels = T([[0, 1, 1], [0, 0, 1]])
    per_view = [F.cross_entropy(logits[b, k][None], labels[b, k][None]) for b in range(2) for k in range(3)]
    assert global_2d_loss(logits, labels).item() == pytest.approx(torch.stack(per_view).mean().item(), abs=1e-6)


# ---------------------------------------------------------------- focal and 2D local


def _probs_1x1x2x2() -> tuple[torch.Tensor, torch.Tensor]:
    p_a = T([[0.9, 0.2], [0.6, 0.5]])
    probs = torch.stack([1 - p_a, p_a])[None]  # (1, 2, 2, 2): [S_n, S_a]
    target = T([[[1.0, 0.0], [0.0, 1.0]]])
    return probs, target


def test_focal_hand_1x1x2x2():
    probs, target = _probs_1x1x2x2()
    # smoothed one-hot: the true class 1 - 1e-5, the other 1e-5. p_t = (1 - 1e-5)·p_true + 1e-5·p_other:
    #   (0,0) t=1: 0.9·(1 - 1e-5) + 0.1·1e-5 = 0.899992
    #   (0,1) t=0: 0.8·(1 - 1e-5) + 0.2·1e-5 = 0.799994
    #   (1,0) t=0: 0.4·(1 - 1e-5) + 0.6·1e-5 = 0.400002
    #   (1,1) t=1: 0.5·(1 - 1e-5) + 0.5·1e-5 = 0.5
    # loss = mean of -(1 - p_t)^2 · ln(p_t + 1e-5)
    #   -ln(p_t + 1e-5) = -ln(0.900002), -ln(0.800004), -ln(0.400012), -ln(0.50001)
    #                   = 0.105358, 0.223139, 0.916261, 0.693127
    #   (1 - p_t)²      = 0.0100016, 0.0400024, 0.3599976, 0.25
    #   products        = 0.0010538, 0.0089261, 0.3298518, 0.1732817; sum 0.5131134, /4 ≈ 0.128278
    p_t = [0.899992, 0.799994, 0.400002, 0.5]
    expected = sum(-((1 - p) ** 2) * math.log(p + 1e-5) for p in p_t) / 4
    assert expected == pytest.approx(0.128278, abs=1e-6)
    assert focal_loss(probs, target).item() == pytest.approx(expected, abs=1e-6)


def test_focal_gamma_zero_is_smoothed_nll():
    g = torch.Generator().manual_seed(2)
    probs = torch.softmax(torch.randn(3, 2, 5, 4, generator=g), dim=1)
    target = (torch.rand(3, 5, 4, generator=g) > 0.5).float()
    p_true = torch.where(target.bool(), probs[:, 1], probs[:, 0])
    p_t = (1 - 1e-5) * p_true + 1e-5 * (1 - p_true)
    expected = -torch.log(p_t + 1e-5).mean()
    assert focal_loss(probs, target, gamma=0.0).item() == pytest.approx(expected.item(), abs=1e-6)


def test_local_2d_is_sum_of_parts_with_per_view_dice():
    g = torch.Generator().manual_seed(3)
    probs = torch.softmax(torch.randn(3, 2, 6, 6, generator=g), dim=1)
    mask = torch.zeros(3, 6, 6)
    mask[0, 1:4, 2:5] = 1  # view 1 and 2 are all-good, so per-view and pooled Dice differ
    mask[2, 0, 0] = 1
    dice_a = sum(dice(probs[n, 1], mask[n]) for n in range(3)) / 3
    dice_n = sum(dice(probs[n, 0], 1 - mask[n]) for n in range(3)) / 3
    expected = focal_loss(probs, mask) + dice_a + dice_n
    assert local_2d_loss(probs, mask).item() == pytest.approx(expected.item(), abs=1e-6)
    pooled = focal_loss(probs, mask) + dice(probs[:, 1], mask) + dice(probs[:, 0], 1 - mask)
    assert abs(local_2d_loss(probs, mask).item() - pooled.item()) > 1e-4


# ---------------------------------------------------------------- 3D local and hybrid


def test_local_3d_excludes_unseen_points_and_handles_all_good_cloud():
    s1 = T([[0.2, 0.8], [0.7, 0.3], [0.5, 0.5]])
    y1 = T([1, 0, 1])
    m1 = T([True, True, False])
    # seen: s_a = [0.8, 0.3], y = [1, 0]: 1 - (2·0.8 + 1)/(1.1 + 1 + 1) = 1 - 2.6/3.1
    #       s_n = [0.2, 0.7], 1-y = [0, 1]: 1 - (2·0.7 + 1)/(0.9 + 1 + 1) = 1 - 2.4/2.9
    loss1 = (1 - 2.6 / 3.1) + (1 - 2.4 / 2.9)
    s2 = T([[0.9, 0.1], [0.9, 0.1]])
    y2 = T([0, 0])
    m2 = T([True, True])
    # all good: Dice(s_a, 0) = 1 - 1/(0.2 + 1) = 1/6; Dice(s_n, 1) = 1 - (2·1.8 + 1)/(1.8 + 2 + 1) = 1/24
    loss2 = 1 / 6 + 1 / 24
    out = local_3d_loss([s1, s2], [y1, y2], [m1, m2])
    assert out.item() == pytest.approx((loss1 + loss2) / 2, abs=1e-6)
    s1_changed = s1.clone()
    s1_changed[2] = T([0.0, 1.0])  # the unseen point's score must not matter
    assert local_3d_loss([s1_changed, s2], [y1, y2], [m1, m2]).item() == pytest.approx(out.item(), abs=1e-7)


def test_hybrid_sums_enabled_terms():
    terms = {"3dg": T(1.0), "3dl": T(2.0), "2dg": T(4.0), "2dl": T(8.0)}
    assert hybrid_loss(terms, ["3dg", "3dl", "2dg", "2dl"]).item() == 15.0
    assert hybrid_loss(terms, ["3dl", "2dl"]).item() == 10.0
    with pytest.raises(ValueError, match="valid terms"):
        hybrid_loss(terms, ["3dx"])
    with pytest.raises(ValueError):
        hybrid_loss(terms, [])


# ---------------------------------------------------------------- back-projection


@pytest.mark.parametrize(("dtype", "atol"), [(torch.float64, 1e-6), (torch.float32, 1e-5)])
def test_sample_at_pixels_equals_upsample_everywhere(dtype: torch.dtype, atol: float):
    # float64 shows the pixel-centre formula is exact; float32 differs by a few 1e-6 from rounding
    # of the grid coordinates (x + 0.5)/336·2 - 1, which carry ~1e-7 relative error times w/2 = 12.
    g = torch.Generator().manual_seed(4)
    maps = torch.rand(2, 24, 24, generator=g, dtype=dtype)
    full = upsample(maps[None], 336)[0]  # (2, 336, 336)
    assert full.shape == (2, 336, 336)
    pix = torch.arange(336 * 336)
    got = sample_at_pixels(maps, pix, 336)
    assert got.shape == (336 * 336, 2)
    torch.testing.assert_close(got, full.reshape(2, -1).T, atol=atol, rtol=0)
    some = torch.randint(0, 336 * 336, (50,), generator=g)
    y, x = some // 336, some % 336
    torch.testing.assert_close(sample_at_pixels(maps, some, 336), full[:, y, x].T, atol=atol, rtol=0)


def test_backproject_hand_example():
    # size = h = 2: pixel centres fall on map cells exactly, so values can be read off by hand.
    view0 = T([[1.0, 2.0], [3.0, 4.0]])
    view1 = T([[10.0, 20.0], [30.0, 40.0]])
    maps = torch.stack([torch.stack([view0, -view0]), torch.stack([view1, -view1])])  # (K=2, C=2, 2, 2)
    pt2pix = T([[0, 3], [-1, 1], [-1, -1]], dtype=torch.int32)
    scores, seen = backproject(maps, pt2pix, 2)
    # point 0: views 0 (pixel 0 -> 1) and 1 (pixel 3 -> 40): (1 + 40)/2 = 20.5
    # point 1: view 1 only (pixel 1 -> 20): 20/1 = 20
    # point 2: no view: 0, unseen
    torch.testing.assert_close(scores, T([[20.5, -20.5], [20.0, -20.0], [0.0, 0.0]]))
    assert seen.tolist() == [True, True, False]
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        backproject(maps, T([[4, 0]]), 2)  # pixel 4 lies outside a 2x2 image


def test_backproject_matches_gather_from_upsampled_maps():
    g = torch.Generator().manual_seed(5)
    maps = torch.rand(3, 2, 24, 24, generator=g, dtype=torch.float64)
    pt2pix = torch.randint(0, 336 * 336, (40, 3), generator=g)
    pt2pix[torch.rand(40, 3, generator=g) < 0.4] = -1
    full = upsample(maps, 336).reshape(3, 2, -1)  # (K, C, 336²): fine for a test
    ref = torch.zeros(40, 2, dtype=torch.float64)
    for i in range(40):
        vals = [full[v, :, pt2pix[i, v]] for v in range(3) if pt2pix[i, v] >= 0]
        if vals:
            ref[i] = torch.stack(vals).mean(0)
    scores, seen = backproject(maps, pt2pix, 336)
    torch.testing.assert_close(scores, ref, atol=1e-6, rtol=0)
    assert seen.tolist() == (pt2pix >= 0).any(1).tolist()


def test_fill_unseen_copies_nearest_seen_neighbour():
    scores = T([[0.1, 0.9], [0.6, 0.4], [0.0, 0.0], [0.0, 0.0]], dtype=torch.float64)
    seen = T([True, True, False, False])
    xyz = T([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.2, 0.1, 0.0], [0.8, -0.1, 0.0]])
    out = fill_unseen(scores, seen, xyz)
    assert out.dtype == torch.float64 and out.device == scores.device
    torch.testing.assert_close(out, T([[0.1, 0.9], [0.6, 0.4], [0.1, 0.9], [0.6, 0.4]], dtype=torch.float64))
    torch.testing.assert_close(fill_unseen(scores[:2], seen[:2], xyz[:2]), scores[:2])


def test_gradients_flow_from_local_3d_to_maps():
    g = torch.Generator().manual_seed(6)
    logits = torch.randn(3, 2, 4, 4, generator=g, requires_grad=True)
    pt2pix = torch.randint(0, 8 * 8, (10, 3), generator=g)
    pt2pix[0] = -1  # one unseen point
    pt2pix[1, :2] = -1
    scores, seen = backproject(torch.softmax(logits, dim=1), pt2pix, 8)
    labels = (torch.arange(10) % 3 == 0).long()
    loss = local_3d_loss([scores], [labels], [seen])
    loss.backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()
    assert logits.grad.abs().sum() > 0
