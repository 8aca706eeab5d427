"""The clean and render stages end to end: the cache contract, resume, bad input, crash safety."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ..helpers import SYNTH, check_cache, groups, kill_when_done, row_ids, run_cli, write_catalog


@pytest.mark.parametrize("visibility", ["surface", "paper"])
def test_render_meets_the_contract(mvtec_ball: Path, tmp_path: Path, visibility: str) -> None:
    cat = write_catalog(tmp_path, {"m": {"format": "mvtec3d", "root": str(mvtec_ball), **SYNTH}})
    code, out = run_cli("render", "--catalog", str(cat), "-d", "m", "--workers", "0", "--visibility", visibility)
    assert code == 0, out
    summary = check_cache(tmp_path / "cache", "m")
    assert f"render ({visibility}): 8 rows" in summary
    (render,) = groups(tmp_path / "cache", "m", "render")
    assert render.attrs["visibility"] == visibility and render.attrs["backend"] == "splat"
    assert render["image"].shape == (8, 9, 336, 336, 3) and render["image"].chunks == (1, 1, 336, 336, 3)
    assert render["rgb_image"].shape == (8, 336, 336, 3)
    (clean,) = groups(tmp_path / "cache", "m", "clean")
    ids = row_ids(clean)
    assert "ball/test/bump/000" in ids and row_ids(render) == ids  # one run: the same order in both groups
    # an anomalous sample's labels reach the render masks
    r = ids.index("ball/test/bump/000")
    assert clean[f"points/{r}/label"][:].any() and render["mask2d"][r].any()
    # rgb_pix points into rgb_image where the point's colour is
    rgb = clean[f"points/{r}/rgb"][:]
    pix = render[f"points/{r}/rgb_pix"][:]
    img = render["rgb_image"][r].reshape(-1, 3)
    assert np.abs(img[pix].astype(int) - rgb.astype(int)).mean() < 1.0


def test_rerun_skips_done_rows_and_new_config_gets_new_group(mvtec_ball: Path, tmp_path: Path) -> None:
    cat = write_catalog(tmp_path, {"m": {"format": "mvtec3d", "root": str(mvtec_ball), **SYNTH}})
    assert run_cli("render", "--catalog", str(cat), "-d", "m", "-j", "0")[0] == 0
    code, out = run_cli("render", "--catalog", str(cat), "-d", "m", "-j", "0")
    assert code == 0 and "8/8 done (0 now, 8 already)" in out
    first = groups(tmp_path / "cache", "m", "render")[0]
    before = first["image"][0].copy()
    code, out = run_cli("render", "--catalog", str(cat), "-d", "m", "-j", "0", "--image-size", "112")
    assert code == 0, out
    renders = groups(tmp_path / "cache", "m", "render")
    assert len(renders) == 2 and renders[1]["image"].shape[2:4] == (112, 112)
    assert renders[0].attrs["fingerprint"] == first.attrs["fingerprint"]
    np.testing.assert_array_equal(renders[0]["image"][0], before)
    code, out = run_cli("status", "--catalog", str(cat))
    assert code == 0 and out.count("render ") == 2 and out.count("current 8 ") == 3, out


def test_bad_files_fail_their_rows_only(mvtec_ball: Path, synthetic_root: Path, tmp_path: Path) -> None:
    tiff = mvtec_ball / "ball/test/bump/xyz/000.tiff"
    tiff.write_bytes(tiff.read_bytes()[:2000])  # truncated
    from PIL import Image

    Image.fromarray(np.zeros((10, 12), np.uint8)).save(mvtec_ball / "ball/test/dent/gt/000.png")  # wrong size
    real = tmp_path / "real"
    shutil.copytree(synthetic_root / "real3d" / "ball", real / "ball")
    goods = sorted((real / "ball/test").glob("*good*.pcd"))
    empty = real / "ball/test/090_good.pcd"
    empty.write_text("# .PCD v0.7\nVERSION 0.7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\nWIDTH 0\n"
                     "HEIGHT 1\nVIEWPOINT 0 0 0 1 0 0 0\nPOINTS 0\nDATA ascii\n")
    junk = real / "ball/test/091_good.pcd"
    junk.write_text("this is not a point cloud\n")
    nan = goods[0]
    import open3d as o3d

    pts = np.asarray(o3d.io.read_point_cloud(str(nan)).points)
    pts[::5] = np.nan
    pts[1::7] = np.inf
    from pointad_pipe.pipeline.synthetic.generator import write_pcd

    write_pcd(nan, pts)
    cat = write_catalog(tmp_path, {"m": {"format": "mvtec3d", "root": str(mvtec_ball), **SYNTH},
                                   "r": {"format": "real3d", "root": str(real)}})
    code, out = run_cli("render", "--catalog", str(cat), "-d", "m", "-j", "0")
    assert code == 0, out  # some rows succeeded and --strict was not given
    assert str(tiff) in out and "000.png" in out
    code, out = run_cli("render", "--catalog", str(cat), "-d", "r", "-j", "0", "--strict")
    assert code == 1 and str(empty) in out and str(junk) in out
    for name, bad in [("m", {str(tiff), str(mvtec_ball / "ball/test/dent/gt/000.png")}),
                      ("r", {str(empty), str(junk)})]:
        (clean,) = groups(tmp_path / "cache", name, "clean")
        (render,) = groups(tmp_path / "cache", name, "render")
        errors = [str(e) for e in clean["error"][:].tolist()]
        done = clean["done"][:]
        failed = {i for i, e in enumerate(errors) if e}
        assert len(failed) == len(bad) and all(any(b in errors[i] for b in bad) for i in failed)
        assert all(done[i] for i in range(len(done)) if i not in failed)
        assert all("\n" not in e for e in errors)
        # a sample whose clean failed gets no render row: it waits, and nothing is written for it
        assert render["done"][:].sum() == len(done) - len(bad) == render.attrs["n_rows"]
        assert not {row_ids(clean)[i] for i in failed} & set(row_ids(render))
        check_cache(tmp_path / "cache", name)
    assert "2 waiting on a failed upstream row" in out
    # a rerun with nothing changed redoes nothing: the failures are remembered, and listed again
    code, again = run_cli("render", "--catalog", str(cat), "-d", "r", "-j", "0")
    assert code == 0 and "(0 now," in again and again.count("failed earlier") == 2 and str(junk) in again
    # the NaN/inf-riddled cloud is not an error: those points are dropped and the rest renders
    r = row_ids(clean).index(f"ball/test/{nan.stem}")
    assert done[r] and render["done"][row_ids(render).index(f"ball/test/{nan.stem}")]
    assert clean[f"points/{r}/xyz"].shape[0] == int(np.isfinite(pts).all(1).sum())


def test_nothing_succeeded_exits_nonzero(tmp_path: Path) -> None:
    real = tmp_path / "real" / "k" / "test"
    real.mkdir(parents=True)
    (real / "000_good.pcd").write_text("junk\n")
    cat = write_catalog(tmp_path, {"r": {"format": "real3d", "root": str(tmp_path / "real")}})
    code, out = run_cli("render", "--catalog", str(cat), "-d", "r", "-j", "0")
    assert code == 1 and "000_good.pcd" in out


def test_cli_errors_are_one_clear_line(tmp_path: Path) -> None:
    cat = write_catalog(tmp_path, {"m": {"format": "mvtec3d", "root": str(tmp_path / "absent")}})
    code, out = run_cli("render", "--catalog", str(cat), "-d", "m")
    assert code == 2 and "absent does not exist" in out and "Traceback" not in out
    code, out = run_cli("render", "--catalog", str(cat), "-d", "zzz")
    assert code == 2 and "no dataset 'zzz'" in out
    code, out = run_cli("render", "--catalog", str(tmp_path / "none.yaml"), "-d", "m")
    assert code == 2 and "none.yaml" in out


def arrays_of(cache: Path, dataset: str) -> dict[str, np.ndarray]:
    out = {}
    for stage in ("clean", "render"):
        (grp,) = groups(cache, dataset, stage)
        for name, arr in grp.arrays():
            out[f"{stage}/{name}"] = np.asarray(arr[:])
        for r in range(grp.attrs["n_rows"]):
            for name, arr in grp[f"points/{r}"].arrays():
                out[f"{stage}/points/{r}/{name}"] = np.asarray(arr[:])
    return out


@pytest.mark.slow
def test_killed_run_resumes_to_identical_arrays(mvtec_ball: Path, tmp_path: Path) -> None:
    entry = {"m": {"format": "mvtec3d", "root": str(mvtec_ball), **SYNTH}}
    (tmp_path / "fresh").mkdir()
    fresh_cat = write_catalog(tmp_path / "fresh", entry)

    def cmd(catalog: Path) -> list[str]:
        return [sys.executable, "-m", "pointad_pipe.cli.main", "render", "--catalog", str(catalog), "-d", "m",
                "-j", "0"]

    cat = write_catalog(tmp_path, entry)
    kill_when_done(cmd(cat), tmp_path / "cache" / "m.zarr", "render", 2)
    (render,) = groups(tmp_path / "cache", "m", "render")
    assert 0 < render["done"][:].sum() < 8  # it really was interrupted
    assert subprocess.run(cmd(cat), capture_output=True).returncode == 0
    resumed = arrays_of(tmp_path / "cache", "m")
    assert subprocess.run(cmd(fresh_cat), capture_output=True).returncode == 0
    fresh = arrays_of(tmp_path / "fresh" / "cache", "m")
    assert resumed.keys() == fresh.keys()
    for key in fresh:
        np.testing.assert_array_equal(resumed[key], fresh[key], err_msg=key)


@pytest.mark.slow
def test_dask_workers_give_the_same_arrays(mvtec_ball: Path, tmp_path: Path) -> None:
    """Serial, a local cluster (--workers 2) and an existing scheduler (--scheduler) write the same bytes."""
    from dask.distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster:
        runs = [("serial", ["-j", "0"]), ("local", ["-j", "2"]), ("remote", ["--scheduler", cluster.scheduler_address])]
        for name, flags in runs:
            (tmp_path / name).mkdir()
            cat = write_catalog(tmp_path / name, {"m": {"format": "mvtec3d", "root": str(mvtec_ball), **SYNTH}})
            code, out = run_cli("render", "--catalog", str(cat), "-d", "m", *flags)
            assert code == 0 and "8/8 done" in out, out
    serial = arrays_of(tmp_path / "serial" / "cache", "m")
    for name in ("local", "remote"):
        other = arrays_of(tmp_path / name / "cache", "m")
        assert serial.keys() == other.keys()
        for key in serial:
            np.testing.assert_array_equal(serial[key], other[key], err_msg=f"{name}: {key}")
