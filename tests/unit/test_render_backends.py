"""The GL render backends (Open3D legacy, pyrender on OSMesa) against the camera rule and the default splatter.

GL tests skip with the reason when the backend cannot run here (pyrender or OSMesa missing, no
headless Open3D window); the id machinery's pure parts are tested without GL.
"""

from __future__ import annotations

import numpy as np
import pytest

from pointad_pipe.pipeline.renderers import get_backend
from pointad_pipe.pipeline.renderers.base import Camera, Projection, project
from pointad_pipe.pipeline.renderers.idpass import MAX_POINTS, Quads, decode_ids, disk_table, id_colours, occluded
from pointad_pipe.pipeline.renderers.open3d_backend import Open3DBackend
from pointad_pipe.pipeline.renderers.splat import SplatBackend, disk_offsets, splat_owners
from pointad_pipe.pipeline.stages.render import RenderConfig, render_sample

GL_BACKENDS = ["open3d", "pyrender"]
W, H = 40, 30


def make_camera(width: int = W, height: int = H, tilt: float = 0.0) -> Camera:
    """A pinhole camera with unequal focal lengths and an off-centre principal point."""
    c, s = np.cos(tilt), np.sin(tilt)
    K = np.array([[52.0, 0.0, 0.45 * width], [0.0, 47.0, 0.55 * height], [0.0, 0.0, 1.0]])  # noqa: N806
    R = np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])  # noqa: N806
    return Camera(K=K, R=R, t=np.array([0.1, -0.2, 0.5]), width=width, height=height)


def world_points(cam: Camera, uv: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """Points that project to sub-pixel positions `uv` at `depth` (inverse of the camera rule)."""
    rays = np.c_[uv, np.ones(len(uv))] @ np.linalg.inv(cam.K).T * np.asarray(depth, float)[:, None]
    return (rays - cam.t) @ cam.R


def owners_of(backend, xyz: np.ndarray, cam: Camera, radius: np.ndarray) -> tuple[np.ndarray, Projection]:  # noqa: ANN001
    proj = project(xyz, cam.P, cam.height, cam.width)
    return backend.owners(xyz, cam, proj, np.asarray(radius, float)), proj


def probe(name: str):  # noqa: ANN201
    """The process-wide backend, or a skip that says why it cannot render here."""
    try:
        backend = get_backend(name)
    except ImportError as err:
        pytest.skip(f"{name} backend unavailable: {err}")
    cam = make_camera()
    try:
        owners_of(backend, world_points(cam, np.array([[5.0, 5.0]]), np.array([2.0])), cam, [0.0])
    except RuntimeError as err:
        pytest.skip(f"{name} backend cannot render headless here: {err}")
    return backend


@pytest.fixture(scope="module", params=GL_BACKENDS)
def gl(request: pytest.FixtureRequest):  # noqa: ANN201
    return probe(request.param)


# ---------------------------------------------------------------------------------------------
# the id machinery, without GL
# ---------------------------------------------------------------------------------------------


def test_id_colours_encode_index_plus_one() -> None:
    n = 70_000  # crosses the 16-bit boundary
    np.testing.assert_array_equal(decode_ids(id_colours(n)), np.arange(n))
    np.testing.assert_array_equal(id_colours(3), [[0, 0, 1], [0, 0, 2], [0, 0, 3]])
    np.testing.assert_array_equal(decode_ids(np.array([[0, 0, 0], [255, 255, 255], [1, 0, 0]], np.uint8)),
                                  [-1, MAX_POINTS - 1, 65535])
    with pytest.raises(ValueError, match="24-bit"):
        id_colours(MAX_POINTS + 1)


@pytest.mark.parametrize("max_radius", [0, 1, 2, 3, 5, 8])
def test_disk_rectangles_cover_exactly_the_splat_offsets(max_radius: int) -> None:
    lengths, rects = disk_table(max_radius)
    dx, dy, dist = disk_offsets(max_radius)
    for level, limit in enumerate(np.r_[0.0, lengths]):
        want = {(int(a), int(b)) for a, b, d in zip(dx, dy, dist, strict=True) if d <= limit}
        got = {(x, y) for w, h in rects[level] for x in range(-w, w + 1) for y in range(-h, h + 1)}
        assert got == want, f"level {level} (offsets up to {limit:.3f})"


def test_occluded_points_own_no_pixel() -> None:
    rng = np.random.default_rng(1)
    pts = rng.normal(size=(6000, 3))
    pts /= np.linalg.norm(pts, axis=1, keepdims=True)
    cam = Camera(K=np.array([[120.0, 0, 39.5], [0, 120.0, 29.5], [0, 0, 1]]), R=np.eye(3),
                 t=np.array([0.0, 0.0, 3.0]), width=80, height=60)
    proj = project(pts, cam.P, 60, 80)
    radius = rng.uniform(0.5, 3.5, len(pts))
    owners = splat_owners(proj, radius, 60, 80)
    hidden = occluded(proj, radius, 60, 80)
    assert not np.isin(np.flatnonzero(hidden), owners).any()
    assert hidden.mean() > 0.3  # the far hemisphere at least


# ---------------------------------------------------------------------------------------------
# GL backends: camera rule, occlusion, ids
# ---------------------------------------------------------------------------------------------


def test_single_points_land_in_their_centre_pixel(gl) -> None:  # noqa: ANN001
    cam = make_camera(tilt=0.2)
    uv = np.array([[0.0, 0.0], [W - 1, 0.0], [0.0, H - 1], [W - 1, H - 1], [0.3, H - 2.4],
                   [W - 2.45, 0.45], [10.3, 7.3], [20.7, 7.7], [30.45, 20.45], [5.55, 20.55], [17.0, 12.0]])
    depth = np.linspace(1.5, 4.0, len(uv))
    xyz = world_points(cam, uv, depth)
    owners, proj = owners_of(gl, xyz, cam, np.zeros(len(xyz)))
    expected = np.full(W * H, -1)
    expected[np.rint(uv[:, 1]).astype(int) * W + np.rint(uv[:, 0]).astype(int)] = np.arange(len(uv))
    np.testing.assert_array_equal(proj.centre, np.flatnonzero(expected >= 0)[np.argsort(expected[expected >= 0])])
    np.testing.assert_array_equal(owners, expected)
    assert owners.dtype == np.int32 and owners.shape == (W * H,)


def test_nearer_point_on_a_ray_owns_the_pixel(gl) -> None:  # noqa: ANN001
    cam = make_camera()
    uv = np.array([[12.2, 9.8]] * 2 + [[25.0, 15.0]] * 2 + [[6.0, 22.0]] * 2)
    depth = np.array([3.0, 2.0, 1.5, 2.5, 2.0, 2.0])  # far first, near first, exact tie
    xyz = world_points(cam, uv, depth)
    xyz[5] = xyz[4]
    owners, proj = owners_of(gl, xyz, cam, np.full(len(xyz), 2.0))
    assert owners[proj.centre[0]] == 1
    assert owners[proj.centre[2]] == 2
    assert owners[proj.centre[4]] == 4  # equal depths: the lower index
    np.testing.assert_array_equal(owners, splat_owners(proj, np.full(len(xyz), 2.0), H, W))


def test_owner_map_equals_the_splatter_on_a_random_scene(gl) -> None:  # noqa: ANN001
    rng = np.random.default_rng(0)
    cam = make_camera(tilt=-0.3)
    n = 400
    uv = np.c_[rng.uniform(-4, W + 4, n), rng.uniform(-4, H + 4, n)]
    depth = rng.uniform(1, 4, n)
    uv[:30], depth[:30] = uv[30:60], depth[30:60]  # exact duplicates: the lower index must win
    radius = rng.uniform(0, 3.6, n)
    xyz = world_points(cam, uv, depth)
    xyz[:30] = xyz[30:60]
    owners, proj = owners_of(gl, xyz, cam, radius)
    np.testing.assert_array_equal(owners, splat_owners(proj, radius, H, W))
    assert gl.last_stats["dropped"] == 0


def test_id_colours_survive_the_gl_round_trip(gl) -> None:  # noqa: ANN001
    h, w = 48, 64
    rng = np.random.default_rng(2)
    codes = rng.integers(1, 2**24, h * w)
    codes[:8] = [1, 255, 256, 65535, 65536, 0x7F7F7F, 0x800000, 0xFFFFFF]
    ys, xs = np.divmod(np.arange(h * w), w)
    corners = np.stack([np.c_[xs - 0.5, ys - 0.5], np.c_[xs + 0.5, ys - 0.5],
                        np.c_[xs + 0.5, ys + 0.5], np.c_[xs - 0.5, ys + 0.5]], axis=1).astype(float)
    depth = rng.uniform(1, 2, h * w)
    quads = Quads(corners=corners, depth=depth, point=np.arange(h * w), level=np.zeros(h * w, np.int64),
                  lengths=np.zeros(0))
    colours = np.stack([codes >> 16, (codes >> 8) & 255, codes & 255], axis=1).astype(np.uint8)
    rgb, zbuf = gl.draw(quads, colours, h, w)
    np.testing.assert_array_equal(decode_ids(rgb) + 1, codes)
    np.testing.assert_allclose(zbuf.reshape(-1), depth, rtol=1e-5)


def test_more_points_than_24_bits_raise(gl) -> None:  # noqa: ANN001
    n = MAX_POINTS + 1
    zeros, ints = np.broadcast_to(0.0, (n,)), np.broadcast_to(np.int64(0), (n,))
    proj = Projection(u=zeros, v=zeros, depth=np.broadcast_to(1.0, (n,)), centre=ints, ix=ints, iy=ints)
    with pytest.raises(ValueError, match="24-bit"):
        gl.owners(np.broadcast_to(0.0, (n, 3)), make_camera(), proj, zeros)


def test_window_is_reused_resized_and_closed() -> None:
    try:
        backend = Open3DBackend()
        cam = make_camera()
        owners_of(backend, world_points(cam, np.array([[5.0, 5.0]]), np.array([2.0])), cam, [0.0])
    except RuntimeError as err:
        pytest.skip(f"open3d backend cannot render headless here: {err}")
    rng = np.random.default_rng(3)
    try:
        for width, height in [(W, H), (W, H), (24, 18), (W, H)]:
            cam = make_camera(width, height)
            uv = np.c_[rng.uniform(0, width, 80), rng.uniform(0, height, 80)]
            radius = rng.uniform(0, 2.5, 80)
            owners, proj = owners_of(backend, world_points(cam, uv, rng.uniform(1, 3, 80)), cam, radius)
            np.testing.assert_array_equal(owners, splat_owners(proj, radius, height, width))
        backend.close()
        owners, proj = owners_of(backend, world_points(cam, uv, np.full(80, 2.0)), cam, radius)
        np.testing.assert_array_equal(owners, splat_owners(proj, radius, H, W))
    finally:
        backend.close()
        backend.close()


# ---------------------------------------------------------------------------------------------
# GL backends inside the render stage: agreement with the splatter, STORE.md rules
# ---------------------------------------------------------------------------------------------


def sphere(n: int = 20_000) -> np.ndarray:
    pts = np.random.default_rng(0).normal(size=(n, 3))
    return pts / np.linalg.norm(pts, axis=1, keepdims=True)


def wavy(side: int = 141) -> np.ndarray:
    g = np.linspace(-1, 1, side)
    x, y = np.meshgrid(g, g)
    return np.c_[x.ravel(), y.ravel(), (0.15 * np.sin(3 * x) * np.cos(2 * y)).ravel()]


CLOUDS = {"sphere": sphere, "wavy": wavy}
_RENDERS: dict[tuple[str, str], tuple] = {}


def rendered(backend, cloud: str) -> tuple:  # noqa: ANN001
    """(points, splat render, GL render, GL stats of the last view), cached per backend and cloud."""
    key = (backend.name, cloud)
    if key not in _RENDERS:
        xyz = CLOUDS[cloud]().astype(np.float32)
        points = {"xyz": xyz, "label": ((xyz[:, 0] > 0.4) & (xyz[:, 1] > 0.1)).astype(np.uint8)}
        ref = render_sample(points["xyz"], points["label"], RenderConfig(), backend=SplatBackend())
        out = render_sample(points["xyz"], points["label"], RenderConfig(), backend=backend)
        _RENDERS[key] = (points, ref, out, dict(backend.last_stats))
    return _RENDERS[key]


@pytest.mark.parametrize("cloud", sorted(CLOUDS))
def test_visible_points_agree_with_the_splatter(gl, cloud: str) -> None:  # noqa: ANN001
    _, ref, out, stats = rendered(gl, cloud)
    a, b = ref.pt2pix >= 0, out.pt2pix >= 0
    agreement = (a & b).sum() / (a | b).sum()
    same_pixels = (ref.pix2pt == out.pix2pt).mean()
    print(f"{gl.name} vs splat on {cloud}: visible point-views agree {agreement:.5f} "
          f"({(a | b).sum()} in the union), owner maps agree on {same_pixels:.5f} of pixels")
    assert agreement >= 0.99
    assert same_pixels >= 0.999
    assert stats["dropped"] == 0


@pytest.mark.parametrize("cloud", sorted(CLOUDS))
def test_gl_render_keeps_the_store_rules(gl, cloud: str) -> None:  # noqa: ANN001
    points, _, out, _ = rendered(gl, cloud)
    xyz = np.asarray(points["xyz"], np.float64)
    v_count, h, w = out.pix2pt.shape
    for v in range(v_count):
        proj = project(xyz, out.camera[v], h, w)
        pix2pt, pt2pix = out.pix2pt[v].reshape(-1), out.pt2pix[:, v]
        inside = np.flatnonzero(proj.centre >= 0)
        own = pix2pt[proj.centre[inside]]
        assert (own >= 0).all() and (proj.depth[own] <= proj.depth[inside]).all()
        visible = proj.depth[inside] <= proj.depth[own] + float(out.eps)
        np.testing.assert_array_equal(pt2pix[inside] >= 0, visible)
        np.testing.assert_array_equal(pt2pix[inside][visible], proj.centre[inside][visible])
        assert (pt2pix[proj.centre < 0] == -1).all()
        fg = pix2pt >= 0
        np.testing.assert_array_equal(out.mask2d[v].reshape(-1)[fg], points["label"][pix2pt[fg]])
        assert (out.mask2d[v].reshape(-1)[~fg] == 0).all()
