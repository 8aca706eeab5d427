"""Issue 14's findings through the command line: each reproduced first, each ending in one clear line."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import zarr

from ..helpers import SYNTH, check_cache, run_cli, write_catalog


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
