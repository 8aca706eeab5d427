"""The render group's geometry against STORE.md (pix2pt, mask2d, pt2pix, camera, visibility), numpy only.

Part of the outside contract checker (check_cache.py imports it from this folder).
"""
from __future__ import annotations

import numpy as np


def check_render_arrays(render, n: int, problems: list[str]) -> bool:
    """The render arrays exist with the row axis first, at least n_rows long, and agree on V, H, W."""
    missing = [k for k in ["image", "mask2d", "pix2pt", "camera", "eps"] if k not in render]
    if missing:
        problems.append(f"render: arrays missing {missing}")
        return False
    _, v_count, h, w = render["pix2pt"].shape
    want = {"image": (v_count, h, w, 3), "mask2d": (v_count, h, w), "pix2pt": (v_count, h, w),
            "camera": (v_count, 3, 4), "eps": ()}
    bad = [f"{k} {render[k].shape}" for k, tail in want.items()
           if render[k].shape[0] < n or tuple(render[k].shape[1:]) != tail]
    if bad:
        problems.append(f"render: shapes {bad}; want (N,V,H,W,3), (N,V,H,W), (N,V,H,W), (N,V,3,4), (N,) "
                        f"with N>={n} V={v_count} H={h} W={w}")
        return False
    if list(render.attrs.get("image_size", [h, w])) != [h, w]:
        problems.append(f"render: attr image_size {render.attrs['image_size']} is not the arrays' {[h, w]}")
    return True


def centre_and_depth(xyz: np.ndarray, cam: np.ndarray, h: int, w: int):
    """Centre pixel (flat index, -1 off-screen) and depth of every point, per STORE.md's camera rule."""
    hom = np.c_[xyz, np.ones(len(xyz))] @ cam.T
    d = hom[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        uv = hom[:, :2] / d[:, None]
    inside = np.isfinite(uv).all(1) & (d > 0)
    px = np.full((len(xyz), 2), -1, np.int64)
    px[inside] = np.rint(uv[inside]).astype(np.int64)
    inside &= (px[:, 0] >= 0) & (px[:, 0] < w) & (px[:, 1] >= 0) & (px[:, 1] < h)
    return np.where(inside, px[:, 1] * w + px[:, 0], -1), d


def check_view(own, mask2d, xyz, lab, pt2pix, cam, eps: float, mode: str, tally: dict) -> None:
    """One view of one render row: pix2pt, mask2d and pt2pix against the camera and the visibility rule."""
    h, w = own.shape
    own, n = own.reshape(-1), len(xyz)
    fg = np.where(own >= 0)[0]
    bad = own[fg] >= n
    tally["owner"] += int(bad.sum())
    fg = fg[~bad]
    mask = np.zeros(h * w, bool)
    mask[fg] = lab[own[fg]]
    tally["mask"] += int((mask != (mask2d.reshape(-1) > 0)).sum())
    centre, d = centre_and_depth(xyz, cam, h, w)
    vis = pt2pix >= 0
    tally["visible"] += int(vis.sum())
    tally["reproj"] += int((centre[vis] != pt2pix[vis]).sum())
    idx = np.where(centre >= 0)[0]
    tally["points"] += len(idx)
    o = own[centre[idx]]
    tally["zbuf"] += int((o < 0).sum())
    idx, o = idx[o >= 0], np.minimum(o[o >= 0], n - 1)
    tol = 1e-6 * max(1.0, float(np.abs(d[idx]).max(initial=1.0)))
    tally["zbuf"] += int((d[o] > d[idx] + tol).sum())
    if mode == "paper":
        best = np.full(h * w, np.inf)
        np.minimum.at(best, centre[idx], d[idx])
        nearest = d[idx] <= best[centre[idx]] + tol
        tally["vis"] += int((nearest & ~vis[idx]).sum())
        tally["vis"] += max(0, int(vis[idx].sum()) - len(np.unique(centre[idx])))
    else:
        expect = d[idx] <= d[o] + eps
        clear = np.abs(d[idx] - d[o] - eps) > tol
        tally["vis"] += int(((expect != vis[idx]) & clear).sum())
    tally["vis"] += int((vis & (centre < 0)).sum())


def check_render(clean, render, rows: np.ndarray, upstream: np.ndarray, problems: list[str]) -> str:
    """Render rows r against their clean rows u = rows/upstream[r]: the geometry STORE.md promises."""
    mode = render.attrs.get("visibility", "surface")
    v_count = render["pix2pt"].shape[1]
    eps = np.asarray(render["eps"][:], np.float64)
    tally = dict(points=0, visible=0, reproj=0, zbuf=0, vis=0, mask=0, owner=0)
    for r in rows:
        u = int(upstream[r])
        paths = [(clean, f"points/{u}/xyz"), (clean, f"points/{u}/label"), (render, f"points/{r}/pt2pix")]
        missing = [p for g, p in paths if p not in g]
        if missing:
            problems.append(f"render row {r} (clean row {u}): arrays missing {missing}")
            continue
        xyz = np.asarray(clean[f"points/{u}/xyz"][:], np.float64)
        lab = np.asarray(clean[f"points/{u}/label"][:]) > 0
        pt2pix = np.asarray(render[f"points/{r}/pt2pix"][:])
        if pt2pix.shape != (len(xyz), v_count) or lab.shape != (len(xyz),):
            problems.append(f"render row {r}: pt2pix {pt2pix.shape}, label {lab.shape} for the "
                            f"{len(xyz)} points of clean row {u}, want {(len(xyz), v_count)}, {(len(xyz),)}")
            continue
        cams = np.asarray(render["camera"][r], np.float64)
        own, mask2d = np.asarray(render["pix2pt"][r]), np.asarray(render["mask2d"][r])
        for v in range(v_count):
            check_view(own[v], mask2d[v], xyz, lab, pt2pix[:, v], cams[v], float(eps[r]), mode, tally)
    n = max(1, tally["points"])
    if tally["owner"]:
        problems.append(f"render: pix2pt names {tally['owner']} points that do not exist")
    if tally["mask"]:
        problems.append(f"render: mask2d differs from the owners' labels on {tally['mask']} pixels")
    for key, what in [("reproj", "pt2pix differs from the camera's centre pixel"),
                      ("zbuf", "a centre pixel is unowned or owned by a farther point"),
                      ("vis", f"the `{mode}` visibility rule is broken")]:
        if tally[key] / n > 0.001:
            problems.append(f"render: {what} for {tally[key]} of {tally['points']} point-views")
    return f"render ({mode}): {len(rows)} rows, {tally['visible']} of {tally['points']} point-views visible"
