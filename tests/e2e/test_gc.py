"""`pointad-pipe gc`: a changed clean config makes the old clean group and everything below it stale."""

from __future__ import annotations

from pathlib import Path

import yaml

from ..helpers import SYNTH, check_cache, groups, run_cli, write_catalog


def test_gc_removes_what_the_catalog_no_longer_leads_to(mvtec_ball: Path, tmp_path: Path) -> None:
    cat = write_catalog(tmp_path, {"m": {"format": "mvtec3d", "root": str(mvtec_ball), **SYNTH}})
    assert run_cli("render", "--catalog", str(cat), "-d", "m", "-j", "0")[0] == 0
    old_clean = groups(tmp_path / "cache", "m", "clean")[0].attrs["fingerprint"]
    old_render = groups(tmp_path / "cache", "m", "render")[0].attrs["fingerprint"]
    assert run_cli("render", "--catalog", str(cat), "-d", "m", "-j", "0", "--visibility", "paper")[0] == 0
    code, out = run_cli("gc", "--catalog", str(cat), "--dry-run")
    assert code == 0 and "would remove 0 group(s)" in out, out  # a render variant is not stale
    code, out = run_cli("gc", "--catalog", str(cat), "--dry-run", "--strict")
    assert code == 0 and "would remove 1 group(s)" in out and "not the catalog's" in out, out

    spec = yaml.safe_load(cat.read_text())
    spec["datasets"]["m"]["clean"] = {**SYNTH["clean"], "border_px": 12}  # a new clean config
    cat.write_text(yaml.safe_dump(spec))
    assert run_cli("render", "--catalog", str(cat), "-d", "m", "-j", "0")[0] == 0
    code, out = run_cli("gc", "--catalog", str(cat), "--dry-run")
    assert code == 0 and "would remove 3 group(s)" in out and f"clean/{old_clean}" in out, out
    assert f"render/{old_render}" in out and "is removed" in out
    assert len(groups(tmp_path / "cache", "m", "clean")) == 2  # dry run: nothing removed

    code, out = run_cli("gc", "--catalog", str(cat))
    assert code == 0 and "removed 3 group(s)" in out, out
    (clean,) = groups(tmp_path / "cache", "m", "clean")
    (render,) = groups(tmp_path / "cache", "m", "render")
    assert clean.attrs["fingerprint"] != old_clean and render.attrs["upstream"] == clean.attrs["fingerprint"]
    check_cache(tmp_path / "cache", "m")
    assert "removed 0 group(s)" in run_cli("gc", "--catalog", str(cat))[1]
