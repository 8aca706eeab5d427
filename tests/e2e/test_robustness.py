"""Issue 14's findings through the command line: each reproduced first, each ending in one clear line."""

from __future__ import annotations

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


def test_ctrl_c_keeps_what_is_done_and_says_so(mvtec_ball: Path, tmp_path: Path) -> None:
    cat = write_catalog(tmp_path, {"m": {"format": "mvtec3d", "root": str(mvtec_ball), **SYNTH}})
    cmd = [sys.executable, "-m", "pointad_pipe.cli.main", "clean", "--catalog", str(cat), "-d", "m", "-j", "0"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url, deadline = tmp_path / "cache" / "m.zarr", time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        try:
            grp = next(g for _, g in zarr.open_group(str(url), mode="r")["clean"].groups())
            if grp["done"][: grp.attrs["n_rows"]].sum() >= 2:
                break
        except Exception:  # not there yet
            pass
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted during clean:" in err and "rows are done and kept; rerun the same command" in err, err
    assert "Traceback" not in err
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
