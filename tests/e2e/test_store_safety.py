"""The incremental store under stress: kills mid-append, two writers at once, gc beside readers, and
the data engineer's tools (dry run, remembered failures, `status --json`)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pointad_pipe.pipeline.cache import locks
from pointad_pipe.pipeline.catalog import load_catalog

from ..helpers import SYNTH, assert_same_current, check_cache, groups, run_cli, write_catalog

CLI = [sys.executable, "-m", "pointad_pipe.cli.main"]

#: a render run that SIGKILLs itself inside the first append: after the arrays grew and the new rows'
#: ids and versions were written, before `n_rows` committed them
KILL_IN_APPEND = """
import os, signal, sys
from pointad_pipe.pipeline.cache import store
original, calls = store.string_array, []
def string_array(values):
    calls.append(1)
    if len(calls) == 3:
        os.kill(os.getpid(), signal.SIGKILL)
    return original(values)
store.string_array = string_array
from pointad_pipe.cli.main import app
sys.argv = ["pointad-pipe", *sys.argv[1:]]
app()
"""

#: holds the dataset's write lock until killed
HOLD_WRITE = """
import sys, time
from pointad_pipe.pipeline.cache import locks
with locks.writing(sys.argv[1], "m"):
    print("held", flush=True)
    time.sleep(600)
"""


def _catalog(tmp_path: Path, root: Path, name: str = "cache") -> Path:
    (tmp_path / name).mkdir(exist_ok=True)
    return write_catalog(tmp_path / name, {"m": {"format": "mvtec3d", "root": str(root), **SYNTH,
                                                "render": {"image_size": 112}}})


@pytest.mark.slow
def test_a_kill_inside_an_append_leaves_no_half_row(mvtec_ball: Path, tmp_path: Path) -> None:
    cat = _catalog(tmp_path, mvtec_ball)
    args = ["render", "--catalog", str(cat), "-d", "m", "-j", "0"]
    proc = subprocess.run([sys.executable, "-c", KILL_IN_APPEND, *args], capture_output=True, text=True)
    assert proc.returncode == -9, proc.stderr  # it really died in the append
    (clean,) = groups(tmp_path / "cache" / "cache", "m", "clean")
    assert clean["rows/id"].shape[0] == 8 and clean.attrs["n_rows"] == 0  # grown, written, not committed
    assert "clean: 0/0 rows done" in check_cache(tmp_path / "cache" / "cache", "m")
    assert subprocess.run([*CLI, *args], capture_output=True).returncode == 0
    fresh = _catalog(tmp_path, mvtec_ball, "fresh")
    assert subprocess.run([*CLI, "render", "--catalog", str(fresh), "-d", "m", "-j", "0"],
                          capture_output=True).returncode == 0
    entry = load_catalog(cat).dataset("m")
    chain = {g.attrs["stage"]: g.attrs["fingerprint"] for s in ("clean", "render")
             for g in groups(tmp_path / "cache" / "cache", "m", s)}
    assert assert_same_current(tmp_path / "cache" / "cache", tmp_path / "fresh" / "cache", entry, chain) == 16
    check_cache(tmp_path / "cache" / "cache", "m")


def _wait_for_lock(path: Path, proc: subprocess.Popen, timeout: float = 120) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if path.is_file() and path.read_text():
            return json.loads(path.read_text())
        time.sleep(0.05)
    raise AssertionError("the first encode never took the lock")


@pytest.mark.slow
def test_two_encodes_at_once_never_compute_a_row_twice(mvtec_ball: Path, tmp_path: Path) -> None:
    cat = _catalog(tmp_path, mvtec_ball)
    args = [*CLI, "encode", "--catalog", str(cat), "-d", "m", "--model", "tiny", "-j", "0"]
    first = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    holder = _wait_for_lock(tmp_path / "cache" / "cache" / "m.zarr.write.lock", first)
    second = subprocess.run(args, capture_output=True, text=True)
    out, err = first.communicate(timeout=600)
    assert first.returncode == 0, err
    assert second.returncode == 2 and "is being written by `pointad-pipe encode" in second.stderr, second.stderr
    assert f"pid {holder['pid']}" in second.stderr and holder["pid"] == first.pid
    check_cache(tmp_path / "cache" / "cache", "m")
    code, again = run_cli("encode", "--catalog", str(cat), "-d", "m", "--model", "tiny", "-j", "0")
    assert code == 0 and again.count("(0 now, 8 already)") == 3, again


def test_gc_never_deletes_under_a_running_command(mvtec_ball: Path, tmp_path: Path) -> None:
    cat = _catalog(tmp_path, mvtec_ball)
    assert run_cli("render", "--catalog", str(cat), "-d", "m", "-j", "0")[0] == 0
    cache = str(tmp_path / "cache" / "cache")
    with locks.reading(cache, "m"):
        code, out = run_cli("gc", "--catalog", str(cat))
    assert code == 2 and "being read by" in out and "gc deletes rows" in out, out
    holder = subprocess.Popen([sys.executable, "-c", HOLD_WRITE, cache], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"  # another process: locks are re-entrant in one
        code, out = run_cli("gc", "--catalog", str(cat))
    finally:
        holder.kill()
        holder.wait()
    assert code == 2 and "is being written by" in out and f"pid {holder.pid}" in out, out
    code, out = run_cli("gc", "--catalog", str(cat))
    assert code == 0 and "removed 0 group(s) and 0 row(s)" in out


def test_dry_run_retry_and_status_json(mvtec_ball: Path, tmp_path: Path) -> None:
    tiff = mvtec_ball / "ball/test/bump/xyz/000.tiff"
    intact = tiff.read_bytes()
    tiff.write_bytes(intact[:2000])
    cat = _catalog(tmp_path, mvtec_ball)
    render = ["render", "--catalog", str(cat), "-d", "m", "-j", "0"]
    code, out = run_cli(*render, "--dry-run")
    assert code == 0 and "would do 8 (8 new, 0 stale" in out and not (tmp_path / "cache" / "cache").exists()
    assert run_cli(*render)[0] == 0
    code, out = run_cli(*render, "--dry-run")
    assert code == 0 and "clean 248d700f7c8bb805: would do 0 (0 new" in out and "7 current, 1 failed" in out, out
    code, out = run_cli(*render, "--retry-failed")  # the same broken bytes: tried again, failed again
    assert code == 0 and "failed row" in out and "failed earlier" not in out and str(tiff) in out, out
    assert "clean 248d700f7c8bb805: 7/8 done (0 now, 7 already), 1 failed" in out
    code, out = run_cli("status", "--catalog", str(cat), "--json")
    (survey,) = json.loads(out)
    by_stage = {g["stage"]: g for g in survey["groups"]}
    assert survey["samples"] == 8 and by_stage["clean"]["failed"] == 1 and by_stage["clean"]["current"] == 7
    assert by_stage["render"]["missing"] == 1 and str(tiff) in by_stage["clean"]["errors"][0][1]
    tiff.write_bytes(intact)  # mended: a new version, retried without being asked
    code, out = run_cli(*render, "--dry-run")
    assert "would do 1 (0 new, 1 stale" in out, out
    code, out = run_cli(*render)
    assert code == 0 and out.count("(1 now, 7 already), 0 failed") == 2, out
    code, out = run_cli("status", "--catalog", str(cat))
    assert code == 0 and out.count("current 8  stale 0  missing 0  failed 0") == 2 and "gc frees" in out, out
