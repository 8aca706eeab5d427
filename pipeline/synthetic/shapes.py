"""Analytic shapes and defect profiles behind the synthetic datasets (`generator.py`).

Why analytic: every quantity the tests compare (range images, ground truth, full clouds) then
comes from one exact definition, so a mask can be checked against the geometry that made it.

Each shape lives in a local frame in metres: z up, resting on the table plane z = 0, centred on
the z axis. It is defined three times, consistently:
- `height(x, y)`: the top surface as seen from straight above (0 off the object), used for the
  organized MVTec-style range images. Overhangs hide the table beneath them, as in a real scan;
- `implicit(p)`: negative inside, positive outside (a sign, not a distance), used to orient normals;
- `patches`: parametric maps (u, v) in [0, 1]^2 -> surface points that together cover the whole
  closed surface, used to sample complete 360° clouds (Real3D-AD-style).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import numpy as np

Patch = Callable[[np.ndarray, np.ndarray], np.ndarray]
TAU = 0.05  # a Gaussian profile is cut where it falls below this fraction of its peak
_GRID = 48  # parameter cells per patch side for area-weighted sampling
_FD = 1e-5  # parameter step of the finite-difference normals


@dataclass(frozen=True)
class Shape:
    """One synthetic object class.

    Attributes:
        name: class name.
        radius: largest horizontal distance of the surface from the z axis (m), for framing.
        colour: base RGB of the object.
        height: top-surface height field, (x, y) -> h (m), 0 off the object.
        implicit: p (n, 3) -> value, < 0 inside.
        patches: parametric pieces covering the closed surface.
    """

    name: str
    radius: float
    colour: tuple[int, int, int]
    height: Callable[[np.ndarray, np.ndarray], np.ndarray]
    implicit: Callable[[np.ndarray], np.ndarray]
    patches: tuple[Patch, ...]


def _xyz(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
    return np.stack(np.broadcast_arrays(x, y, z), axis=-1).astype(np.float64)


def _disk(radius: float, z: float) -> Patch:
    def patch(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        t = 2 * np.pi * v
        return _xyz(radius * u * np.cos(t), radius * u * np.sin(t), np.full_like(u, z))

    return patch


def _sqrt0(x: np.ndarray) -> np.ndarray:
    return np.sqrt(np.maximum(x, 0.0))


def _bagel() -> Shape:
    """A flattened torus: the ring is 17.6 mm high and 66 mm across."""
    big, r, sz = 0.022, 0.011, 0.8

    def height(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        d = np.hypot(x, y) - big
        return np.where(np.abs(d) < r, sz * (r + _sqrt0(r * r - d * d)), 0.0)

    def implicit(p: np.ndarray) -> np.ndarray:
        rho = np.hypot(p[:, 0], p[:, 1])
        return (rho - big) ** 2 + ((p[:, 2] - sz * r) / sz) ** 2 - r * r

    def tube(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        t, f = 2 * np.pi * u, 2 * np.pi * v
        rho = big + r * np.cos(f)
        return _xyz(rho * np.cos(t), rho * np.sin(t), sz * r * (1 + np.sin(f)))

    return Shape("bagel", big + r, (170, 118, 66), height, implicit, (tube,))


def _ball() -> Shape:
    """A sphere (radius 30 mm) whose centre is 9 mm above the table, cut flat where it meets it."""
    rs, c = 0.030, 0.009
    foot = float(np.sqrt(rs * rs - c * c))

    def height(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        q = rs * rs - x * x - y * y
        return np.where(q > 0, c + _sqrt0(q), 0.0)

    def implicit(p: np.ndarray) -> np.ndarray:
        d = np.linalg.norm(p - np.array([0.0, 0.0, c]), axis=1) - rs
        return np.maximum(d, -p[:, 2])

    def zone(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        t, zz = 2 * np.pi * u, -c + (rs + c) * v
        rho = _sqrt0(rs * rs - zz * zz)
        return _xyz(rho * np.cos(t), rho * np.sin(t), zz + c)

    return Shape("ball", rs, (205, 92, 58), height, implicit, (zone, _disk(foot, 0.0)))


def _box() -> Shape:
    """A rounded box: a superellipsoid 64 x 44 x 26 mm with exponent 0.3 (nearly square edges)."""
    half = np.array([0.032, 0.022, 0.013])
    k = 2 / 0.3

    def height(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        q = np.abs(x / half[0]) ** k + np.abs(y / half[1]) ** k
        return np.where(q < 1, half[2] * (1 + _sqrt0(1 - q) ** (2 / k)), 0.0)

    def implicit(p: np.ndarray) -> np.ndarray:
        q = np.abs((p - np.array([0.0, 0.0, half[2]])) / half) ** k
        return q.sum(axis=1) - 1

    def face(axis: int, sign: float) -> Patch:
        def patch(u: np.ndarray, v: np.ndarray) -> np.ndarray:
            d = np.insert(np.stack([2 * u - 1, 2 * v - 1], axis=-1), axis, sign, axis=-1)
            p = d / ((np.abs(d) ** k).sum(axis=-1, keepdims=True) ** (1 / k)) * half
            return p + np.array([0.0, 0.0, half[2]])

        return patch

    patches = tuple(face(a, s) for a in range(3) for s in (-1.0, 1.0))
    t = np.linspace(0.0, np.pi / 2, 4097)
    radius = float(np.hypot(half[0] * np.cos(t) ** (2 / k), half[1] * np.sin(t) ** (2 / k)).max()) + 1e-6
    return Shape("box", radius, (68, 112, 172), height, implicit, patches)


def _cone() -> Shape:
    """A cone 35 mm high on a 7 mm plinth, 56 mm across."""
    rb, hp, hc = 0.028, 0.007, 0.035

    def height(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        rho = np.hypot(x, y)
        return np.where(rho < rb, hp + hc * (1 - rho / rb), 0.0)

    def implicit(p: np.ndarray) -> np.ndarray:
        rho = np.hypot(p[:, 0], p[:, 1])
        top = (p[:, 2] - hp - hc * (1 - rho / rb)) * rb / hc
        return np.maximum.reduce([rho - rb, -p[:, 2], top])

    def side(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        t = 2 * np.pi * u
        return _xyz(rb * np.cos(t), rb * np.sin(t), hp * v)

    def mantle(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        t, rho = 2 * np.pi * u, rb * (1 - v)
        return _xyz(rho * np.cos(t), rho * np.sin(t), hp + hc * v)

    return Shape("cone", rb, (196, 172, 82), height, implicit, (_disk(rb, 0.0), side, mantle))


def _can() -> Shape:
    """A cylinder (radius 16 mm, 68 mm long) lying on its side along x."""
    rc, half_len = 0.016, 0.034

    def height(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        inside = (np.abs(x) < half_len) & (np.abs(y) < rc)
        return np.where(inside, rc + _sqrt0(rc * rc - y * y), 0.0)

    def implicit(p: np.ndarray) -> np.ndarray:
        return np.maximum(np.hypot(p[:, 1], p[:, 2] - rc) - rc, np.abs(p[:, 0]) - half_len)

    def side(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        t = 2 * np.pi * v
        return _xyz(2 * half_len * (u - 0.5), rc * np.cos(t), rc * (1 + np.sin(t)))

    def cap(sign: float) -> Patch:
        def patch(u: np.ndarray, v: np.ndarray) -> np.ndarray:
            t = 2 * np.pi * v
            return _xyz(np.full_like(u, sign * half_len), rc * u * np.cos(t), rc * (1 + u * np.sin(t)))

        return patch

    radius = float(np.hypot(half_len, rc))
    return Shape("can", radius, (150, 152, 164), height, implicit, (side, cap(-1.0), cap(1.0)))


SHAPES: dict[str, Shape] = {s.name: s for s in (_bagel(), _ball(), _box(), _cone(), _can())}


@cache
def _cell_areas(name: str) -> np.ndarray:
    """Areas of every patch's _GRID x _GRID parameter cells, shape (patches, _GRID, _GRID)."""
    g = np.linspace(0.0, 1.0, _GRID + 1)
    u, v = np.meshgrid(g, g, indexing="ij")
    out = []
    for patch in SHAPES[name].patches:
        p = patch(u.ravel(), v.ravel()).reshape(_GRID + 1, _GRID + 1, 3)
        a, b, c, d = p[:-1, :-1], p[1:, :-1], p[:-1, 1:], p[1:, 1:]
        tri = np.cross(b - a, c - a), np.cross(b - d, c - d)
        out.append(0.5 * (np.linalg.norm(tri[0], axis=-1) + np.linalg.norm(tri[1], axis=-1)))
    return np.stack(out)


def surface_area(name: str) -> float:
    """Total surface area (m^2) of a class's unscaled shape, from the sampling grid."""
    return float(_cell_areas(name).sum())


def sample_surface(name: str, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Sample `n` points uniformly (up to the parameter grid) over a shape's closed surface.

    Why area-weighted cells: parametric maps stretch unevenly (a torus's outer side, a disk's
    rim), so cells are drawn by their area and points jittered inside them.

    Returns:
        points (n, 3) float64 in metres, and unit outward normals (n, 3).
    """
    shape, areas = SHAPES[name], _cell_areas(name)
    cells = rng.choice(areas.size, size=n, p=(areas / areas.sum()).ravel())
    which, iu, iv = np.unravel_index(cells, areas.shape)
    u = (iu + rng.random(n)) / _GRID
    v = (iv + rng.random(n)) / _GRID
    points, normals = np.empty((n, 3)), np.empty((n, 3))
    for k, patch in enumerate(shape.patches):
        sel = which == k
        pu, pv = u[sel], v[sel]
        points[sel] = patch(pu, pv)
        tu = patch(pu + _FD, pv) - patch(pu - _FD, pv)
        tv = patch(pu, pv + _FD) - patch(pu, pv - _FD)
        normals[sel] = np.cross(tu, tv)
    normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-30)
    step = 1e-4 * normals
    flip = shape.implicit(points + step) < shape.implicit(points - step)
    normals[flip] *= -1
    return points, normals


def gaussian_bump(dist: np.ndarray, radius: float) -> np.ndarray:
    """Truncated Gaussian profile in [0, 1]: 1 at the centre, exactly 0 from `radius` on.

    Why truncated: the Gaussian exp(-d^2 / 2s^2) is scaled so that it falls to TAU (5 %) of its
    peak at `radius`, then shifted down by TAU and renormalised. The profile is therefore > 0
    exactly where the plain Gaussian exceeds 5 % of its peak (d < radius) and 0 elsewhere, so
    the ground truth "surface changed" is an exact, closed disk.
    """
    s2 = radius**2 / (2 * np.log(1 / TAU))
    g = np.exp(-(dist**2) / (2 * s2))
    return np.clip((g - TAU) / (1 - TAU), 0.0, None) * (dist < radius)


def groove(dist: np.ndarray, width: float) -> np.ndarray:
    """Parabolic groove cross-section in [0, 1]: > 0 exactly within width/2 of the crack line."""
    return np.clip(1 - (2 * dist / width) ** 2, 0.0, None)


def polyline_distance(x: np.ndarray, y: np.ndarray, nodes: np.ndarray) -> np.ndarray:
    """Distance of points (x, y) to a 2D polyline through `nodes` (k, 2)."""
    out = np.full(np.shape(x), np.inf)
    for p, q in zip(nodes[:-1], nodes[1:], strict=True):
        seg = q - p
        t = np.clip(((x - p[0]) * seg[0] + (y - p[1]) * seg[1]) / (seg @ seg), 0.0, 1.0)
        out = np.minimum(out, np.hypot(x - p[0] - t * seg[0], y - p[1] - t * seg[1]))
    return out


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random 3x3 rotation (from a normalised Gaussian quaternion)."""
    q = rng.normal(size=4)
    w, x, y, z = q / np.linalg.norm(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def axis_rotation(axis: np.ndarray, angle: float) -> np.ndarray:
    """Rotation by `angle` (rad) about a unit `axis` (Rodrigues)."""
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * (k @ k)
