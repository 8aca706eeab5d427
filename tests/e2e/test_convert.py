"""A schema-1 cache, written by the real schema-1 code (from git), is refused, then converted or rebuilt."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from pointad_pipe.pipeline.catalog import load_catalog

from ..helpers import SYNTH, assert_same_current, check_cache, old_release, run_cli, run_old, write_catalog

V1_COMMIT = "f0f5c8e"  # the last commit whose code writes schema pointad-pipe/1 (0.4.0)


@pytest.fixture(scope="module")
def v1_code(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The schema-1 code as an importable `pointad_pipe` package (skipped without the git history)."""
    code = old_release(V1_COMMIT, tmp_path_factory.mktemp("v1"))
    if code is None:
        pytest.skip(f"no git history with {V1_COMMIT} (a shallow clone)")
    return code


def _v1(code: Path, *args: str) -> subprocess.CompletedProcess:
    return run_old(code, *args)


@pytest.mark.slow
def test_a_schema_1_cache_is_refused_then_converted(v1_code: Path, mvtec_ball: Path, tmp_path: Path) -> None:
    entry = {"m": {"format": "mvtec3d", "root": str(mvtec_ball), **SYNTH, "render": {"image_size": 112}}}
    (tmp_path / "old").mkdir()
    cat = write_catalog(tmp_path / "old", entry)
    encode = ["encode", "--catalog", str(cat), "-d", "m", "--model", "tiny", "-j", "0"]
    done = _v1(v1_code, *encode)
    assert done.returncode == 0 and "encode" in done.stdout, done.stderr
    cache = tmp_path / "old" / "cache"
    code, out = run_cli(*encode)
    assert code == 2 and "schema 'pointad-pipe/1'" in out and "pointad-pipe convert --dataset m" in out, out
    code, out = run_cli("status", "--catalog", str(cat))
    assert code == 0 and "pointad-pipe convert --dataset m" in out, out
    code, out = run_cli("convert", "--catalog", str(cat), "-d", "m")
    assert code == 0 and "clean: 8 rows" in out and "encode: 8 rows" in out, out
    assert (cache / "m.v1.zarr").is_dir()
    check_cache(cache, "m")
    code, out = run_cli(*encode)
    assert code == 0 and out.count("(0 now, 8 already)") == 3, out  # the same groups a fresh build names
    (tmp_path / "fresh").mkdir()
    fresh = write_catalog(tmp_path / "fresh", entry)
    assert run_cli("encode", "--catalog", str(fresh), "-d", "m", "--model", "tiny", "-j", "0")[0] == 0
    reports_chain = {}
    for line in out.splitlines():
        stage, _, rest = line.partition(" ")
        if stage in ("clean", "render", "encode"):
            reports_chain[stage] = rest.split(":")[0]
    ds = load_catalog(cat).dataset("m")
    assert_same_current(cache, tmp_path / "fresh" / "cache", ds, reports_chain)


@pytest.mark.slow
def test_rebuild_sets_a_schema_1_cache_aside(v1_code: Path, mvtec_ball: Path, tmp_path: Path) -> None:
    cat = write_catalog(tmp_path, {"m": {"format": "mvtec3d", "root": str(mvtec_ball), **SYNTH}})
    assert _v1(v1_code, "clean", "--catalog", str(cat), "-d", "m", "-j", "0").returncode == 0
    code, out = run_cli("convert", "--catalog", str(cat), "-d", "m", "--rebuild")
    assert code == 0 and "rebuilds the cache" in out and (tmp_path / "cache" / "m.v1.zarr").is_dir(), out
    code, out = run_cli("clean", "--catalog", str(cat), "-d", "m", "-j", "0")
    assert code == 0 and "(8 now, 0 already)" in out
    code, out = run_cli("convert", "--catalog", str(cat), "-d", "m")
    assert code == 2 and "not a schema-1 cache" in out
