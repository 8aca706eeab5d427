"""Helpers shared by the tests (fixtures live in conftest.py): paths, catalogs, the CLI, the contract checker,
reading cache groups, killing a run mid-stage, and independent metric references.

Heavy or product-facing modules (the CLI app, zarr) are imported inside the functions that need them, so a
unit test importing a path or a reference from here never loads the command line.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml
from scipy import ndimage

if TYPE_CHECKING:
    import torch

ROOT = Path(__file__).resolve().parents[1]
# The outside contract checker: the team's shared copy when the checkout sits beside it, otherwise
# the snapshot in tests/contract/ (a verbatim copy, so that a lone clone, as in CI, still checks).
#: the project's own contract checker (docs/STORE.md is the source of truth since schema 2)
CHECKER = ROOT / "tests" / "contract" / "check_cache.py"

SYNTH = {"clean": {"units": "m"}}  # the synthetic scanner works in metres (see data_catalog.yaml)


def write_catalog(folder: Path, datasets: dict, cache: str = "cache") -> Path:
    """Write a catalog file into `folder` and return its path."""
    path = folder / "catalog.yaml"
    path.write_text(yaml.safe_dump({"cache": str(folder / cache), "datasets": datasets}))
    return path


OLD_RUN = "import sys; from pointad_pipe.cli.main import app; sys.argv = ['pointad-pipe', *sys.argv[1:]]; app()"


def old_release(commit: str, out: Path) -> Path | None:
    """An earlier commit's code as an importable `pointad_pipe` package under `out`; None without the git history."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit, "pipeline", "model", "cli"],
                             capture_output=True)
    if archive.returncode != 0:
        return None
    pkg = out / "pointad_pipe"
    pkg.mkdir(parents=True)
    subprocess.run(["tar", "-x", "-C", str(pkg)], input=archive.stdout, check=True)
    (pkg / "__init__.py").touch()
    return out


def run_old(code: Path, *args: str) -> subprocess.CompletedProcess:
    """`pointad-pipe ARGS` with the code of `old_release`, in a subprocess."""
    import os

    env = {**os.environ, "PYTHONPATH": str(code)}
    return subprocess.run([sys.executable, "-c", OLD_RUN, *args], capture_output=True, text=True, env=env)


def run_cli(*args: str) -> tuple[int, str]:
    """`pointad-pipe ARGS` in this process (typer's CliRunner): exit code and output."""
    from typer.testing import CliRunner

    from pointad_pipe.cli.main import app

    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def check_cache(cache: Path, dataset: str) -> str:
    """Run the outside contract checker on one dataset of a cache; it must pass. Returns its summary."""
    proc = subprocess.run([sys.executable, str(CHECKER), str(cache), dataset], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def groups(cache: Path, dataset: str, stage: str) -> list[Any]:
    """A stage's zarr groups of one dataset, oldest first."""
    import zarr

    root = zarr.open_group(str(cache / f"{dataset}.zarr"), mode="r")
    return sorted((g for _, g in root[stage].groups()), key=lambda g: g.attrs["created_utc"])


def row_ids(grp: Any) -> list[str]:
    """A stage group's `rows/id` (its committed rows), as an outside reader sees them."""
    return [str(x) for x in grp["rows/id"][: grp.attrs["n_rows"]].tolist()]


def current_arrays(cache: Path, entry: Any, chain: dict[str, str]) -> dict[str, np.ndarray]:
    """Every array of the current rows of the groups `chain` ({stage: fingerprint}), keyed by sample id.

    Read as an outside reader would (STORE.md "Reading only current rows"), with the versions of the
    files now; row numbers (`rows/upstream`) are left out: they may differ between two equal caches.
    """
    import zarr

    from pointad_pipe.pipeline.jobs.identity import current_samples

    meta, versions = current_samples(str(cache), entry)
    now = dict(zip(meta.ids, versions, strict=True))
    root = zarr.open_group(str(cache / f"{entry.name}.zarr"), mode="r")
    out: dict[str, np.ndarray] = {}
    for stage, fp in chain.items():
        grp = root[f"{stage}/{fp}"]
        n = grp.attrs["n_rows"]
        ids, vers, done = row_ids(grp), [str(v) for v in grp["rows/version"][:n].tolist()], grp["done"][:n]
        for r in range(n):
            if not done[r] or now.get(ids[r]) != vers[r]:
                continue
            key = f"{stage}/{ids[r]}"
            assert key + "/version" not in out, f"two current rows for {key}"
            out[key + "/version"] = np.asarray(vers[r])
            for name, arr in grp.arrays():
                if name not in ("done", "error"):
                    out[f"{key}/{name}"] = np.asarray(arr[r])
            for sub in ("points", "meta"):
                if sub == "points" and f"points/{r}" in grp:
                    out |= {f"{key}/points/{k}": np.asarray(a[:]) for k, a in grp[f"points/{r}"].arrays()}
                elif sub == "meta" and "meta" in grp:
                    out |= {f"{key}/meta/{k}": np.asarray(a[r]) for k, a in grp["meta"].arrays()}
    return out


def assert_same_current(ours: Path, theirs: Path, entry: Any, chain: dict[str, str]) -> int:
    """The current rows of two caches are equal, array by array and bit for bit; returns how many samples."""
    a, b = current_arrays(ours, entry, chain), current_arrays(theirs, entry, chain)
    assert a.keys() == b.keys() and len(a) > 0
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    return sum(1 for k in a if k.endswith("/version"))


def kill_when_done(cmd: list[str], url: Path, stage: str, rows: int, timeout: float = 120) -> None:
    """Start `cmd`, SIGKILL it as soon as `rows` rows of `stage` are done in the cache at `url`."""
    import signal
    import time

    import zarr

    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline, killed = time.time() + timeout, False
    while time.time() < deadline and proc.poll() is None:
        try:
            done = sum(int(g["done"][:].sum()) for _, g in zarr.open_group(str(url), mode="r")[stage].groups())
        except Exception:  # the group is not there yet
            done = 0
        if done >= rows:
            proc.send_signal(signal.SIGKILL)
            killed = True
            break
        time.sleep(0.02)
    proc.wait()
    assert killed, "the run ended before it could be killed"


# ---------------------------------------------------------------- independent brute-force AUPRO references


def regions_by_loop(gt: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """(image index, boolean region mask) for every 8-connected region of every image."""
    out = []
    for i in range(gt.shape[0]):
        lab, k = ndimage.label(gt[i], structure=np.ones((3, 3), dtype=int))
        for r in range(1, k + 1):
            out.append((i, lab == r))
    return out


def pro_fpr(pred: np.ndarray, gt: np.ndarray, regions: list[tuple[int, np.ndarray]],
            valid: np.ndarray | None = None) -> tuple[float, float]:
    """(FPR, mean per-region overlap) of one binary prediction; FPR over the `valid` normal cells when given."""
    normal = ~gt if valid is None else ~gt & valid
    fpr = float((pred & normal).sum() / normal.sum())
    overlaps = []
    for i, region in regions:
        overlaps.append((pred[i] & region).sum() / region.sum())
    return fpr, float(np.mean(overlaps))


def brute_aupro_official(scores: np.ndarray, gt: np.ndarray, limit: float = 0.3) -> float:
    """The official AUPRO, one threshold per distinct score, counted pixel by pixel."""
    gt = gt.astype(bool)
    regions = regions_by_loop(gt)
    points = [(0.0, 0.0)]
    for t in sorted(set(scores.ravel().tolist()), reverse=True):
        points.append(pro_fpr(scores >= t, gt, regions))
    area = 0.0
    for (x0, y0), (x1, y1) in zip(points[:-1], points[1:], strict=True):
        if x0 >= limit:
            break
        if x1 > limit:  # interpolate linearly at exactly the limit
            y1 = y0 + (y1 - y0) * (limit - x0) / (x1 - x0)
            x1 = limit
        area += (x1 - x0) * (y0 + y1) / 2.0
    return area / limit


def sorted_aupro_official(scores: np.ndarray, gt: np.ndarray, limit: float = 0.3,
                          valid: np.ndarray | None = None) -> float:
    """The same curve as `brute_aupro_official`, counted with searchsorted per threshold (fast enough for 336² maps).

    With `valid`, only those cells count (GT regions must lie inside them): the `object` variant.
    """
    gt = gt.astype(bool)
    keep = np.ones(gt.shape, bool) if valid is None else valid.astype(bool)
    assert not (gt & ~keep).any(), "GT outside the valid cells"
    regions = [np.sort(scores[i][region]) for i, region in regions_by_loop(gt)]
    normal = np.sort(scores[~gt & keep])
    thresholds = np.unique(scores[keep])[::-1]
    fpr = (normal.size - np.searchsorted(normal, thresholds, side="left")) / normal.size
    pro = np.mean([(r.size - np.searchsorted(r, thresholds, side="left")) / r.size for r in regions], axis=0)
    x, y = np.concatenate(([0.0], fpr)), np.concatenate(([0.0], pro))
    past = int(np.argmax(x > limit)) if (x > limit).any() else x.size
    xs, ys = list(x[:past]), list(y[:past])
    if past < x.size:
        xs.append(limit)
        ys.append(y[past - 1] + (y[past] - y[past - 1]) * (limit - x[past - 1]) / (x[past] - x[past - 1]))
    xs_a, ys_a = np.array(xs), np.array(ys)
    return float(np.sum(np.diff(xs_a) * (ys_a[1:] + ys_a[:-1]) / 2.0) / limit)


def brute_aupro_pointad(scores: np.ndarray, gt: np.ndarray, limit: float = 0.3, steps: int = 200,
                        valid: np.ndarray | None = None) -> float:
    """PointAD's (cflow-style) AUPRO: thresholds `arange(min, max, (max - min) / steps)` in the maps' dtype, as
    the code has them; FPRs below the limit rescaled to [0, 1]."""
    gt = gt.astype(bool)
    regions = regions_by_loop(gt)
    counted = scores if valid is None else scores[valid.astype(bool)]
    lo, hi = counted.min(), counted.max()
    kept = []
    for t in np.arange(lo, hi, (hi - lo) / steps):
        fpr, pro = pro_fpr(scores > t, gt, regions, None if valid is None else valid.astype(bool))
        if fpr < limit:
            kept.append((fpr, pro))
    kept.sort()
    f_lo, f_hi = kept[0][0], kept[-1][0]
    xs = [(f - f_lo) / (f_hi - f_lo) for f, _ in kept]
    ys = [p for _, p in kept]
    area = 0.0
    for i in range(1, len(xs)):
        area += (xs[i] - xs[i - 1]) * (ys[i] + ys[i - 1]) / 2.0
    return area


# ---------------------------------------------------------------- small organized-scan files for the loader tests


def write_xyz(path: Path, xyz: np.ndarray) -> Path:
    """An MVTec-style xyz tiff."""
    import tifffile

    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, xyz, photometric="rgb")
    return path


def write_png(path: Path, arr: np.ndarray) -> Path:
    """A png of `arr` (grey, RGB or 16-bit)."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path


def grid_xyz(h: int, w: int, offset: float = 0.0) -> np.ndarray:
    """xyz[r, c] = (c, r, offset + r*w + c): every cell's value is known from its position."""
    r, c = np.indices((h, w), dtype=np.float32)
    return np.stack([c, r, offset + r * w + c], axis=-1).astype(np.float32)


def rgb_image(h: int, w: int, value: int = 0) -> np.ndarray:
    """An RGB image whose red is the column, green the row, blue `value`."""
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 0] = np.arange(w, dtype=np.uint8)[None, :]
    img[..., 1] = np.arange(h, dtype=np.uint8)[:, None]
    img[..., 2] = value
    return img


def cloud(n: int, seed: int) -> np.ndarray:
    """n random points (6 decimals, so that ASCII files round-trip)."""
    return np.round(np.random.default_rng(seed).normal(size=(n, 3)) * 10, 6)


def write_pcd(path: Path, points: np.ndarray, ascii: bool = True, colors: np.ndarray | None = None) -> Path:
    """A PCD file through Open3D (ASCII or binary), with optional uint8 colours."""
    import open3d as o3d

    pcd = o3d.geometry.PointCloud()
    pcd.points = o3d.utility.Vector3dVector(points.astype(np.float64))
    if colors is not None:
        pcd.colors = o3d.utility.Vector3dVector(colors / 255.0)
    path.parent.mkdir(parents=True, exist_ok=True)
    assert o3d.io.write_point_cloud(str(path), pcd, write_ascii=ascii)
    return path



# ---------------------------------------------------------------- the authors' goldens (tests/goldens/official)

OFFICIAL = ROOT / "tests" / "goldens" / "official"
SHARED_OFFICIAL = ROOT.parent / "shared" / "goldens" / "official"


def official(name: str) -> dict[str, np.ndarray]:
    """The arrays of one golden file computed by the authors' code (its README says what each holds)."""
    with np.load(OFFICIAL / f"{name}.npz") as z:
        return {k: z[k] for k in z.files}


def official_pt2pix(xy: np.ndarray, seen: np.ndarray, size: int = 336) -> np.ndarray:
    """README's rule: d2_3d_cor_xy (K, N, 2) (x, y) and seen (K, N) -> (N, K) pixel y*size + x, -1 unseen."""
    flat = xy[..., 1].astype(np.int64) * size + xy[..., 0].astype(np.int64)
    return np.where(seen, flat, -1).T.copy()


def official_small_model() -> Any:
    """The goldens' small CLIP (c1's vision + c2's text weights) in fp32, frozen, through open_clip's OpenAI builder.

    Their replaced attention modules store `attn.qkv` / `attn.proj` (copies of CLIP's `in_proj_*` /
    `out_proj`); `visual.attn` is an extra module of theirs, not CLIP's. c2's token-embedding rows not
    listed are 0. `build_model_from_openai_state_dict` rounds the weights to fp16, as OpenAI files are
    stored, so the fp32 state dict is loaded a second time after `.float()`.
    """
    import json

    import torch
    from open_clip.model import build_model_from_openai_state_dict

    vision, text = official("c1_vision_small"), official("c2_text_small")
    state = {}
    for k, v in [*vision.items(), *text.items()]:
        if k.startswith("w/") and not k.startswith("w/visual.attn."):
            key = k[2:].replace(".attn.qkv.", ".attn.in_proj_").replace(".attn.proj.", ".attn.out_proj.")
            state[key] = torch.from_numpy(v)
    vocab = json.loads(str(text["config"]))["text_cfg"]["vocab_size"]
    emb = torch.zeros(vocab, text["token_embedding_rows"].shape[1])
    emb[torch.from_numpy(text["token_ids_used"])] = torch.from_numpy(text["token_embedding_rows"])
    state["token_embedding.weight"] = emb
    model = build_model_from_openai_state_dict(dict(state), quick_gelu=True, cast_dtype=None).float()
    model.load_state_dict(state)
    return model.eval().requires_grad_(False)


def assert_near_official(ours: Any, theirs: np.ndarray, rtol: float = 1e-5, what: str = "") -> float:
    """max|ours - theirs| <= rtol * max|theirs| (relative to the array's scale: per-element relative error is
    meaningless at entries near 0). Returns the measured relative error."""
    ours = np.asarray(ours.detach().cpu() if hasattr(ours, "detach") else ours, dtype=np.float64)
    theirs = np.asarray(theirs, dtype=np.float64)
    assert ours.shape == theirs.shape, (what, ours.shape, theirs.shape)
    err = float(np.abs(ours - theirs).max() / np.abs(theirs).max())
    assert err <= rtol, f"{what}: max abs error {np.abs(ours - theirs).max():.3g} is {err:.3g} of max |official|"
    return err


def fp16_deep_grads(features: torch.Tensor, grad_features: torch.Tensor, deep: list) -> tuple[torch.Tensor, ...]:
    """The authors' deep-prompt gradient: each prompt's part rounded to fp16 (their `.half()` after the expand
    over the two prompts), the two parts summed in fp32. Returns (emulated sum, normal part, anomalous part)."""
    import torch

    parts = [torch.stack(torch.autograd.grad(features[c], deep, grad_features[c], retain_graph=True))
             for c in range(features.shape[0])]
    return sum(p.half().float() for p in parts), *parts


def assert_within_fp16_rounding(ours: torch.Tensor, parts: tuple[torch.Tensor, ...], theirs: np.ndarray) -> int:
    """|ours - theirs| <= the sum of one fp16 spacing of each part, per element; returns how many differ at all.

    Our fp32 gradients differ from theirs by ~1e-6 relative, which moves a few values across an fp16 rounding
    boundary: those differ by exactly one fp16 spacing of a part, all others are equal.
    """
    diff = np.abs(ours.numpy() - theirs)
    spacing = sum(np.spacing(np.abs(p.numpy()).astype(np.float16)).astype(np.float32) for p in parts)
    assert (diff <= spacing).all(), f"max |diff| / fp16 spacing = {(diff / spacing).max():.3g}"
    return int((diff > 1e-6 * np.abs(theirs).max()).sum())


def write_official(ours: Path, path: Path) -> Path:
    """Our prompt tensors saved under the authors' key names (as their train.py saves them)."""
    import torch

    prompts = torch.load(ours, weights_only=True)
    deep = sorted((k for k in prompts if k.startswith("deep.")), key=lambda k: int(k.split(".")[1]))
    state = {"ctx_pos": prompts["ctx_normal"][None, None], "ctx_neg": prompts["ctx_anomalous"][None, None],
             **{f"compound_prompts_text.{i}": prompts[k] for i, k in enumerate(deep)}}
    torch.save({"prompt_learner": state}, path)
    return path
