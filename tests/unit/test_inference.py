"""Smoothing, global score and RGB fusion of METHOD.md §8 (whole-grid, as the authors' code), against direct
computations; tests/unit/test_goldens_scoring.py compares the same functions with the authors' outputs."""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter

from pointad_pipe.model.inference import fuse_maps, fused_global, global_score, lay_on_grid, smooth_knn, smooth_whole


def test_grid_smoothing_treats_empty_cells_as_zero() -> None:
    shape = (12, 12)
    grid = np.array([5 * 12 + 5, 5 * 12 + 6, 6 * 12 + 5])
    values = np.array([1.0, 0.0, 0.5])
    full = np.zeros(shape)
    full.flat[grid] = values
    expect = gaussian_filter(full, 4.0)
    smoothed = smooth_whole(lay_on_grid(values, grid, shape))
    np.testing.assert_allclose(smoothed, expect)
    assert smoothed.flat[grid[0]] < 1.0  # mass leaks into the empty (zero) cells
    assert smoothed.flat[0] > 0  # and the blur reaches cells no point holds


def test_knn_smoothing_is_a_normalised_gaussian_average() -> None:
    rng = np.random.default_rng(0)
    xyz = rng.random((60, 3))
    values = rng.random(60)
    sigma = 0.1
    d = np.linalg.norm(xyz[:, None] - xyz[None], axis=-1)
    w = np.exp(-0.5 * (d / sigma) ** 2) * (d <= 3 * sigma)
    np.testing.assert_allclose(smooth_knn(values, xyz, sigma), w @ values / w.sum(1), rtol=1e-10)
    np.testing.assert_allclose(smooth_knn(np.full(60, 0.3), xyz, sigma), 0.3)  # a constant stays constant


def test_global_score_and_fusion() -> None:
    views = np.array([0.2, 0.4, 0.6])
    assert global_score(np.array([0.1, 0.9, 0.3]), views) == 0.5 * 0.9 + 0.5 * 0.4
    shape = (16, 16)
    rng = np.random.default_rng(1)
    a, c = rng.random(shape), rng.random(shape)
    fused = fuse_maps(gaussian_filter(a, 4.0), gaussian_filter(c, 4.0))
    np.testing.assert_allclose(fused, gaussian_filter((gaussian_filter(a, 4.0) + gaussian_filter(c, 4.0)) / 2, 4.0))
    # fusing a map with itself is smoothing it twice: the RGB side changes nothing else
    np.testing.assert_allclose(fuse_maps(gaussian_filter(a, 4.0), gaussian_filter(a, 4.0)),
                               gaussian_filter(gaussian_filter(a, 4.0), 4.0))
    assert fused_global(fused, 0.8, views) == fused.max() + (0.8 + 0.4) / 2


def test_score_cloud_composes_backprojection_smoothing_and_global() -> None:
    import torch

    from pointad_pipe.model.backproject import backproject
    from pointad_pipe.model.inference import score_cloud
    from pointad_pipe.model.similarity import patch_maps, similarity_logits

    rng = np.random.default_rng(2)
    k, grid, size, n, d = 3, (4, 4), 16, 50, 8
    patch = rng.standard_normal((k, 16, d)).astype(np.float32)
    glob = rng.standard_normal((k, d)).astype(np.float32)
    pt2pix = rng.integers(0, size * size, (n, k)).astype(np.int32)  # every point seen in every view
    text = torch.nn.functional.normalize(torch.randn(2, d), dim=-1)
    cells = rng.choice(size * size, n, replace=False)
    amap, g = score_cloud(patch, glob, pt2pix, text, grid, size, rng.random((n, 3)), cells, (size, size))
    maps = patch_maps(torch.from_numpy(patch)[None], text, grid)[0]
    raw = backproject(maps, torch.from_numpy(pt2pix.astype(np.int64)), size)[0][:, 1].numpy()
    whole = gaussian_filter(lay_on_grid(raw, cells, (size, size)), 4.0)
    np.testing.assert_allclose(amap, whole.reshape(-1)[cells], rtol=1e-6)
    views = similarity_logits(torch.from_numpy(glob), text).softmax(-1)[:, 1].numpy()
    # the max runs over the whole smoothed grid (the code's), which can lie off the points
    assert abs(g - (0.5 * whole.max() + 0.5 * views.mean())) < 1e-6
    assert whole.max() >= amap.max()


def test_rgb_fusion_changes_only_the_map_and_global_that_method_names() -> None:
    import torch
    import torch.nn.functional as F  # noqa: N812

    from pointad_pipe.model.backproject import backproject
    from pointad_pipe.model.inference import score_cloud
    from pointad_pipe.model.similarity import patch_maps, similarity_logits

    rng = np.random.default_rng(3)
    k, grid, size, n, d = 3, (4, 4), 16, 60, 8
    patch = rng.standard_normal((k, 16, d)).astype(np.float32)
    glob = rng.standard_normal((k, d)).astype(np.float32)
    pt2pix = rng.integers(0, size * size, (n, k)).astype(np.int32)
    text = torch.nn.functional.normalize(torch.randn(2, d), dim=-1)
    cells = rng.choice(size * size, n, replace=False)
    xyz = rng.random((n, 3))
    rgb = (rng.standard_normal((16, d)).astype(np.float32), rng.standard_normal(d).astype(np.float32))
    args = (patch, glob, pt2pix, text, grid, size, xyz, cells, (size, size))

    point_map, point_g = score_cloud(*args)
    same_map, same_g = score_cloud(*args, rgb=rgb, modality="point")  # RGB present but not asked for: no change
    np.testing.assert_array_equal(point_map, same_map)
    assert point_g == same_g

    # independent C: the RGB image's S_a, upsampled to every pixel of the (here equal-sized) grid
    logits = F.normalize(torch.from_numpy(rgb[0]), dim=-1) @ text.T / 0.07
    s_a = logits.softmax(-1)[:, 1].reshape(1, 1, *grid)
    c = F.interpolate(s_a, size=(size, size), mode="bilinear", align_corners=False)[0, 0].numpy().astype(np.float64)
    raw = backproject(patch_maps(torch.from_numpy(patch)[None], text, grid)[0],
                      torch.from_numpy(pt2pix.astype(np.int64)), size)[0][:, 1].numpy()
    g = lambda x: gaussian_filter(x, 4.0)  # noqa: E731 - the whole grid, background included
    a = g(lay_on_grid(raw, cells, (size, size)))
    p_rgb = float((F.normalize(torch.from_numpy(rgb[1]), dim=-1) @ text.T / 0.07).softmax(-1)[1])
    p_views = similarity_logits(torch.from_numpy(glob), text).softmax(-1)[:, 1].numpy().mean()

    fused_map, fused_g = score_cloud(*args, rgb=rgb, modality="fused")
    whole = g((a + g(c)) / 2)
    np.testing.assert_allclose(fused_map, whole.reshape(-1)[cells], rtol=1e-5, atol=1e-7)
    assert abs(fused_g - (whole.max() + (p_rgb + p_views) / 2)) < 1e-6

    rgb_map, rgb_g = score_cloud(*args, rgb=rgb, modality="rgb")
    np.testing.assert_allclose(rgb_map, g(c).reshape(-1)[cells], rtol=1e-5, atol=1e-7)
    assert abs(rgb_g - (g(c).max() + p_rgb)) < 1e-6
    # the RGB-only ablation does not look at the views' patch tokens at all
    np.testing.assert_array_equal(score_cloud(patch * 0 + 1, *args[1:], rgb=rgb, modality="rgb")[0], rgb_map)


def test_rgb_modalities_refuse_unorganized_clouds() -> None:
    import pytest
    import torch

    from pointad_pipe.model.inference import score_cloud

    text = torch.nn.functional.normalize(torch.randn(2, 4), dim=-1)
    with pytest.raises(ValueError, match="organized"):
        score_cloud(np.zeros((1, 4, 4), np.float32), np.zeros((1, 4), np.float32), np.zeros((3, 1), np.int32), text,
                    (2, 2), 4, np.zeros((3, 3)), rgb=(np.zeros((4, 4)), np.zeros(4)), modality="fused")
