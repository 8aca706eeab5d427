"""Render maps against the geometry: a hand-built 5x5 scene, a naive loop renderer, and the rules of STORE.md."""

from __future__ import annotations

import numpy as np
import pytest

from pointad_pipe.pipeline.renderers.base import Camera, project
from pointad_pipe.pipeline.renderers.splat import splat_owners
from pointad_pipe.pipeline.stages.render import RenderConfig, cameras, paper_visibility, render_sample, visibility

# The 5x5 scene: pixel (x, y), depth, splat radius. P = [I | 0], so a point (x*z, y*z, z) has
# centre pixel (x, y) and depth z.
SCENE = [  # x, y, depth, radius
    (1, 1, 2.0, 1),  # p0: behind p1's splat at its own centre pixel
    (2, 1, 1.0, 1),  # p1: nearest, its splat covers (1,1)
    (3, 3, 3.0, 0),  # p2: centre only
    (3, 3, 3.2, 1),  # p3: same centre as p2, 0.2 behind it (within eps)
    (0, 4, 5.0, 1),  # p4: corner, splat partly off-screen
    (5, 2, 1.0, 1),  # p5: centre off-screen, its splat reaches (4, 2)
]
EXPECTED_PIX2PT = np.array([
    [-1, 0, 1, -1, -1],
    [0, 1, 1, 1, -1],
    [-1, 0, 1, 3, 5],
    [4, -1, 3, 2, 3],
    [4, 4, -1, 3, -1],
])
EXPECTED_SURFACE = [-1, 7, 18, 18, 20, -1]  # eps = 0.5: p0 hidden by p1, p3 within eps of p2
EXPECTED_PAPER = [6, 7, 18, -1, 20, -1]  # centre pixels only: p0 shows through, p3 loses to p2
IDENTITY = Camera(K=np.eye(3), R=np.eye(3), t=np.zeros(3), width=5, height=5)


def scene_points() -> tuple[np.ndarray, np.ndarray]:
    pts = np.array([[x * z, y * z, z] for x, y, z, _ in SCENE], np.float64)
    return pts, np.array([r for *_, r in SCENE], np.float64)


def test_hand_built_scene() -> None:
    pts, radius = scene_points()
    proj = project(pts, IDENTITY.P, 5, 5)
    np.testing.assert_array_equal(proj.centre, [6, 7, 18, 18, 20, -1])
    np.testing.assert_allclose(proj.depth, [z for _, _, z, _ in SCENE])
    owners = splat_owners(proj, radius, 5, 5)
    np.testing.assert_array_equal(owners.reshape(5, 5), EXPECTED_PIX2PT)
    vis = visibility(proj.centre, proj.depth, owners, eps=0.5)
    np.testing.assert_array_equal(np.where(vis, proj.centre, -1), EXPECTED_SURFACE)
    paper = paper_visibility(proj, 5, 5)
    np.testing.assert_array_equal(np.where(paper, proj.centre, -1), EXPECTED_PAPER)


def naive_owners(px: np.ndarray, depth: np.ndarray, radius: np.ndarray, h: int, w: int) -> np.ndarray:
    """The obvious loop: every pixel asks every point whether its disk covers it."""
    out = np.full(h * w, -1)
    for y in range(h):
        for x in range(w):
            best = None
            for i in range(len(depth)):
                dx, dy = x - px[i, 0], y - px[i, 1]
                if depth[i] > 0 and dx * dx + dy * dy <= radius[i] ** 2:
                    if best is None or (depth[i], i) < (depth[best], best):
                        best = i
            out[y * w + x] = -1 if best is None else best
    return out


def test_fast_splatter_matches_naive_loop() -> None:
    rng = np.random.default_rng(0)
    n, h, w = 300, 20, 24
    px = np.c_[rng.integers(-3, w + 3, n), rng.integers(-3, h + 3, n)].astype(np.float64)
    depth = rng.uniform(1, 4, n)
    depth[:20] = depth[20:40]  # exact ties: the lower index must win
    px[:20] = px[20:40]
    radius = rng.uniform(0, 3.2, n)
    pts = np.c_[px * depth[:, None], depth]
    proj = project(pts, Camera(K=np.eye(3), R=np.eye(3), t=np.zeros(3), width=w, height=h).P, h, w)
    fast = splat_owners(proj, radius, h, w)
    np.testing.assert_array_equal(fast, naive_owners(px, depth, radius, h, w))


def dense_plane(n_side: int = 200) -> np.ndarray:
    g = np.linspace(-0.05, 0.05, n_side)
    x, y = np.meshgrid(g, g)
    return np.c_[x.ravel(), y.ravel(), np.full(x.size, 0.4)].astype(np.float32)


def test_dense_flat_surface_is_visible_and_points_behind_are_not() -> None:
    front = dense_plane(400)  # ~0.55 px apart: several points share a pixel
    rng = np.random.default_rng(1)
    behind = front[rng.choice(len(front), 500, replace=False)].copy()
    behind[:, 2] += 0.01  # 1 cm behind (the camera of view 0 looks along +z)
    pts = np.r_[front, behind]
    cfg = RenderConfig(views=(("x", 0.0),), pre_rotation=(("x", 180.0),))
    out = render_sample(pts, np.zeros(len(pts), np.uint8), cfg)
    cam = out.camera[0].astype(np.float64)
    centre = project(pts, cam, 336, 336).centre
    in_view = centre[: len(front)] >= 0
    seen = out.pt2pix[: len(front), 0] >= 0
    assert in_view.mean() > 0.99
    assert seen[in_view].mean() >= 0.95
    assert (out.pt2pix[len(front):, 0] == -1).all()
    # the paper's rule hides most of the dense surface: one point per pixel survives
    paper = render_sample(pts, np.zeros(len(pts), np.uint8),
                          RenderConfig(views=cfg.views, pre_rotation=cfg.pre_rotation, visibility="paper"))
    assert (paper.pt2pix[: len(front), 0] >= 0).mean() < 0.5 * seen.mean()


def wavy_cloud(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    g = rng.uniform(-0.03, 0.03, (20000, 2))
    z = 0.45 - 0.006 * np.cos(g[:, 0] * 150) * np.cos(g[:, 1] * 100)
    pts = np.c_[g, z].astype(np.float32)
    labels = (np.hypot(g[:, 0] - 0.01, g[:, 1]) < 0.006).astype(np.uint8)
    return pts, labels


@pytest.mark.parametrize("mode", ["surface", "paper"])
def test_maps_are_consistent(mode: str) -> None:
    pts, labels = wavy_cloud()
    cfg = RenderConfig(visibility=mode)
    out = render_sample(pts, labels, cfg)
    v_count = len(cfg.views)
    assert out.image.shape == (v_count, 336, 336, 3) and out.image.dtype == np.uint8
    assert out.pix2pt.dtype == np.int32 and out.pt2pix.shape == (len(pts), v_count)
    for v in range(v_count):
        cam = out.camera[v].astype(np.float64)
        proj = project(pts, cam, 336, 336)
        own = out.pix2pt[v].reshape(-1)
        # reprojecting xyz through `camera` reproduces pt2pix
        vis = out.pt2pix[:, v] >= 0
        np.testing.assert_array_equal(out.pt2pix[vis, v], proj.centre[vis])
        # mask2d equals the owners' labels; background is white and unlabelled
        fg = own >= 0
        np.testing.assert_array_equal(out.mask2d[v].reshape(-1), np.where(fg, labels[np.maximum(own, 0)], 0))
        assert (out.image[v].reshape(-1, 3)[~fg] == 255).all()
        # every centre pixel is owned by a point no farther than the point itself
        inside = np.flatnonzero(proj.centre >= 0)
        o = own[proj.centre[inside]]
        assert (o >= 0).all() and (proj.depth[o] <= proj.depth[inside] + 1e-9).all()
        if mode == "surface":
            np.testing.assert_array_equal(vis[inside], proj.depth[inside] <= proj.depth[o] + out.eps)
        else:
            assert vis[inside].sum() == len(np.unique(proj.centre[inside[vis[inside]]]))
    assert out.mask2d.any()


def test_cameras_follow_the_view_list() -> None:
    pts, _ = wavy_cloud()
    cfg = RenderConfig()
    cams = cameras(pts, cfg)
    assert len(cams) == 9
    # the centre of the cloud projects to the image centre in every view, at the same depth
    centre = (pts.min(0) + pts.max(0)) / 2
    depths = []
    for cam in cams:
        a, b, c = cam.P @ np.r_[centre, 1.0]
        assert abs(a / c - 167.5) < 1e-3 and abs(b / c - 167.5) < 1e-3
        depths.append(c)
    np.testing.assert_allclose(depths, depths[0], rtol=1e-6)
    # view 3 of MVTec's list is the unrotated one: after the flip into Open3D's frame and back, R = I
    np.testing.assert_allclose(cams[2].R, np.eye(3), atol=1e-12)


def test_image_is_the_headlight_rule_on_a_plane() -> None:
    """Each owned pixel's grey = grey * (ambient + (1 - ambient) |n . l|), from the stored camera alone."""
    pts = dense_plane(150)
    cfg = RenderConfig(views=(("x", 0.0), ("x", 40.0), ("y", -25.0)), pre_rotation=(("x", 180.0),))
    out = render_sample(pts, np.zeros(len(pts), np.uint8), cfg)
    normal = np.array([0.0, 0.0, 1.0])  # the plane z = 0.4
    for v in range(len(cfg.views)):
        P = out.camera[v].astype(np.float64)  # noqa: N806
        eye = -np.linalg.solve(P[:, :3], P[:, 3])  # the camera centre: P [eye, 1] = 0
        own = out.pix2pt[v].reshape(-1)
        fg = own >= 0
        to_eye = eye - pts[own[fg]].astype(np.float64)
        cos = np.abs(to_eye @ normal) / np.linalg.norm(to_eye, axis=1)
        want = np.rint(255 * cfg.grey * (cfg.ambient + (1 - cfg.ambient) * cos))
        got = out.image[v].reshape(-1, 3)
        assert (got[:, 0] == got[:, 1]).all() and (got[:, 0] == got[:, 2]).all()
        assert fg.mean() > 0.05 and np.ptp(cos) > 0.01  # a real spread of angles across the plane
        assert np.abs(got[fg, 0] - want).max() <= 1  # a level's rounding may flip at .5
        assert (got[fg, 0] == want).mean() > 0.99
