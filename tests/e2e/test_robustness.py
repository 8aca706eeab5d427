"""Issue 14's findings through the command line: each reproduced first, each ending in one clear line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import zarr

from ..helpers import SYNTH, assert_same_current, check_cache, groups, run_cli, write_catalog


def test_a_negative_worker_count_is_one_line(mvtec_ball: Path, tmp_path: Path) -> None:
    cat = write_catalog(tmp_path, {"m": {"format": "mvtec3d", "root": str(mvtec_ball), **SYNTH}})
    code, out = run_cli("clean", "--catalog", str(cat), "-d", "m", "--workers", "-1")
    assert code == 2 and "--workers -1: must be 0" in out and "Traceback" not in out, out


@pytest.mark.parametrize("workers", ["0", "2"])
def test_ctrl_c_keeps_what_is_done_and_says_so(workers: str, mvtec_ball: Path, tmp_path: Path) -> None:
    """Finding 6: with dask workers, each printed its own KeyboardInterrupt traceback (80 lines for 2)."""
    cat = write_catalog(tmp_path, {"m": {"format": "mvtec3d", "root": str(mvtec_ball), **SYNTH}})
    cmd = [sys.executable, "-m", "pointad_pipe.cli.main", "clean", "--catalog", str(cat), "-d", "m", "-j", workers]
    # its own process group, signalled as a whole: what a terminal's Ctrl-C does
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    url, deadline, seen, why = tmp_path / "cache" / "m.zarr", time.time() + 120, 0, ""
    while time.time() < deadline and proc.poll() is None:
        try:
            grp = next(g for _, g in zarr.open_group(str(url), mode="r")["clean"].groups())
            seen = int(grp["done"][: grp.attrs["n_rows"]].sum())
            if seen >= 1:
                break
        except Exception as exc:  # not there yet  # noqa: BLE001
            why = f"{type(exc).__name__}: {exc}"
        time.sleep(0.02)
    assert proc.poll() is None, f"clean ended before the interrupt (watcher saw {seen} rows done; last: {why})"
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted during clean:" in err and "rows are done and kept; rerun the same command" in err, err
    assert "Traceback" not in err and "WARNING" not in err, err
    code, out = run_cli("clean", "--catalog", str(cat), "-d", "m", "-j", "0")
    assert code == 0 and "8/8 done" in out and "already)" in out and "(0 now" not in out, out
    check_cache(tmp_path / "cache", "m")


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 3 MB tmpfs (grown later with `remount`); skipped where mounting is not allowed."""
    where = tmp_path / "small"
    where.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(where)], capture_output=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({made.stderr.decode().strip() or 'not permitted'})")
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], capture_output=True)


def test_a_full_disk_is_one_line_and_a_rerun_completes(small_disk: Path, mvtec_ball: Path, tmp_path: Path) -> None:
    from pointad_pipe.pipeline.catalog import load_catalog

    entry = {"m": {"format": "mvtec3d", "root": str(mvtec_ball), **SYNTH}}
    cat = write_catalog(tmp_path, entry, cache=str(small_disk / "cache"))
    render = ["render", "--catalog", str(cat), "-d", "m", "-j", "0"]
    code, out = run_cli(*render)
    assert code == 2 and "no space left on the device holding" in out and "Traceback" not in out, out
    assert out.count("No space left") <= 1  # it stopped at the first row that could not be written
    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
    code, out = run_cli(*render)
    assert code == 0 and "8/8 done" in out and ", 0 failed" in out, out
    check_cache(small_disk / "cache", "m")
    (tmp_path / "fresh").mkdir()
    fresh = write_catalog(tmp_path / "fresh", entry)
    assert run_cli("render", "--catalog", str(fresh), "-d", "m", "-j", "0")[0] == 0
    ds = load_catalog(cat).dataset("m")
    chain = {s: g.attrs["fingerprint"] for s in ("clean", "render") for g in groups(small_disk / "cache", "m", s)}
    assert_same_current(small_disk / "cache", tmp_path / "fresh" / "cache", ds, chain)


def test_a_disk_full_before_any_group_is_one_line_and_leaves_nothing_to_warn_about(
        small_disk: Path, mvtec_ball: Path, tmp_path: Path) -> None:
    """Finding 5: a disk already full when the group was made gave a traceback and a half-made group folder."""
    cat = write_catalog(tmp_path, {"m": {"format": "mvtec3d", "root": str(mvtec_ball), **SYNTH}},
                        cache=str(small_disk / "cache"))
    filler = small_disk / "filler"
    with filler.open("wb") as f:  # fill the disk to the last block
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    code, out = run_cli("clean", "--catalog", str(cat), "-d", "m", "-j", "0")
    assert code == 2 and "Traceback" not in out and out.count("\n") <= 3, out
    assert "no space left on the device holding" in out and str(small_disk / "cache") in out and "clean" in out, out
    filler.unlink()
    code, out = run_cli("status", "--catalog", str(cat))
    assert code == 0 and "half" not in out.lower() and "warning" not in out.lower(), out
    code, out = run_cli("clean", "--catalog", str(cat), "-d", "m", "-j", "0")
    assert code == 0 and "8/8 done" in out, out
    check_cache(small_disk / "cache", "m")


def test_predict_says_when_it_sampled_a_big_cloud(ball_checkpoint: Path, tmp_path: Path) -> None:
    """Finding 9: a cloud above the clean cap is sampled down to it (bounded time and memory), and predict says so."""
    import json

    import numpy as np
    import trimesh

    rng = np.random.default_rng(0)
    box = trimesh.creation.box(extents=(0.1, 0.06, 0.04))
    trimesh.PointCloud(box.sample(150_000, seed=0) + rng.normal(0, 1e-4, (150_000, 3))).export(tmp_path / "big.ply")
    trimesh.PointCloud(box.sample(5_000, seed=1)).export(tmp_path / "small.ply")
    code, out = run_cli("predict", str(tmp_path / "big.ply"), str(tmp_path / "small.ply"), "--checkpoint",
                        str(ball_checkpoint), "--out", str(tmp_path / "p"))
    assert code == 0, out
    big, small = (json.loads((tmp_path / "p" / f"{n}.json").read_text()) for n in ("big", "small"))
    assert big["sampled_to"] == big["points"] == 112_896 and big["input_points"] == 150_000, big
    assert "(sampled from 150,000 to 112,896, the clean step's cap)" in out, out
    assert small["sampled_to"] is None and small["points"] == small["input_points"] == 5_000
    assert out.count("sampled from") == 1
