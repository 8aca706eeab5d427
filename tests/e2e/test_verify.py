"""Corruption is detected, never read as zeros (issue 14, finding 1): per-row checksums, `verify`, `--repair`.

Each test damages a private copy of a complete cache the way a disk or a careless `rm` would (a
chunk deleted, a chunk truncated, a per-row array removed), then checks that readers fail the row
naming it, that `verify` lists exactly those rows, and that `--repair` plus a rerun restores arrays
identical to the undamaged copy.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
import zarr

from pointad_pipe.pipeline.cache import rows
from pointad_pipe.pipeline.cache.runner import RunOptions
from pointad_pipe.pipeline.cache.schema import CachedSamples
from pointad_pipe.pipeline.catalog import load_catalog
from pointad_pipe.pipeline.errors import CorruptRow
from pointad_pipe.pipeline.jobs.encode import EncodeOptions, run_encode
from pointad_pipe.pipeline.jobs.identity import encode_groups, open_view

from ..helpers import CHECKER, SYNTH, assert_same_current, check_cache, old_release, run_cli, run_old, write_catalog


def _copy(learn_cache: Path, folder: Path) -> Path:
    """A private copy of `learn_cache`'s cache, and a catalog naming it."""
    spec = yaml.safe_load(learn_cache.read_text())
    shutil.copytree(spec["cache"], folder / "cache")
    spec["cache"] = str(folder / "cache")
    cat = folder / "catalog.yaml"
    cat.write_text(yaml.safe_dump(spec))
    return cat


def _chain(cat: Path) -> tuple[dict[str, str], object]:
    """The {stage: fingerprint} of the current encode group and its view."""
    catalog = load_catalog(cat)
    entry = catalog.dataset("s")
    (encode,) = encode_groups(catalog.cache, entry)
    view = open_view(catalog.cache, entry, encode)
    chain = {g.attrs["stage"]: g.attrs["fingerprint"] for g in (view.clean, view.render, view.encode)}
    return chain, view


def _chunk(cache: Path, group: str, array: str) -> Path:
    """The first chunk file of an array (or of a row's slice: `image/c/<r>`)."""
    files = sorted(p for p in (cache / "s.zarr" / group / array).rglob("*") if p.is_file() and p.name != "zarr.json")
    assert files, f"no chunk under {group}/{array}"
    return files[0]


def _encode(cat: Path) -> list:
    catalog = load_catalog(cat)
    return run_encode(catalog, catalog.dataset("s"), RunOptions(workers=0, progress=False), EncodeOptions(),
                      {"model": "tiny"})


def _checker(cat: Path) -> subprocess.CompletedProcess:
    cache = yaml.safe_load(cat.read_text())["cache"]
    return subprocess.run([sys.executable, str(CHECKER), cache, "s"], capture_output=True, text=True)


@pytest.mark.slow
def test_damage_fails_its_row_verify_names_it_and_repair_restores_it(learn_cache: Path, tmp_path: Path,
                                                                      ball_checkpoint: Path) -> None:
    cat = _copy(learn_cache, tmp_path)
    cache = tmp_path / "cache"
    chain, view = _chain(cat)
    box = [i for i, c in enumerate(view.meta.classes) if c == "box"][:3]  # evaluate scores box (ball trained)
    (c0, _, _), (_, r1, _), (_, _, e2) = (tuple(int(x) for x in view.rows[i]) for i in box)
    ids = [view.meta.ids[i] for i in box]
    _chunk(cache, f"encode/{chain['encode']}", f"patch/c/{e2}").unlink()  # a deleted chunk: used to read as 0
    image = _chunk(cache, f"render/{chain['render']}", f"image/c/{r1}")
    image.write_bytes(image.read_bytes()[: image.stat().st_size // 2])  # a truncated chunk
    _chunk(cache, f"clean/{chain['clean']}", f"points/{c0}/xyz").unlink()

    samples = CachedSamples(view, list(view.encode.attrs["layers"])[-1:])
    with pytest.raises(CorruptRow) as exc:
        samples.item(box[2])
    assert (exc.value.group, exc.value.row, exc.value.array) == (f"encode/{chain['encode']}", e2, "patch")
    assert "checksum mismatch" in exc.value.problem
    with pytest.raises(CorruptRow, match=rf"render/{chain['render']} row {r1}, array image: unreadable"):
        samples.montage(box[1])
    with pytest.raises(CorruptRow, match=rf"clean/{chain['clean']} row {c0}, array points/{c0}/xyz"):
        samples.scoring(box[0], organized=True, with_rgb=False)

    code, out = run_cli("evaluate", "--catalog", str(cat), "-d", "s", "--checkpoint", str(ball_checkpoint),
                        "--out", str(tmp_path / "run"), "--no-ply", "--montage", "0")
    assert code != 0 and "damaged cache data" in out and "pointad-pipe verify --repair" in out, out
    assert "Traceback" not in out and not (tmp_path / "run" / "metrics.json").exists()

    checked = _checker(cat)  # the outside checker names the rows too, and does not crash
    assert checked.returncode == 1 and "Traceback" not in checked.stderr, checked.stdout + checked.stderr
    for stage, r in (("clean", c0), ("render", r1), ("encode", e2)):
        assert f"problem: {stage} row {r}:" in checked.stdout, checked.stdout

    code, out = run_cli("verify", "--catalog", str(cat), "-d", "s")
    assert code == 1, out
    for stage, r, sample, array in (("clean", c0, ids[0], f"points/{c0}/xyz"), ("render", r1, ids[1], "image"),
                                    ("encode", e2, ids[2], "patch")):
        assert f"row {r} ({sample}): {array}:" in out, out
        assert f"{stage:<7}{chain[stage]}  " in out and "1 damaged" in out
    assert out.count("damaged\n") == 3 and "pointad-pipe verify --dataset s --repair" in out, out

    code, out = run_cli("verify", "--catalog", str(cat), "-d", "s", "--repair")
    assert code == 0 and "marked 3 damaged row(s)" in out and "pointad-pipe encode --dataset s" in out, out
    reports = _encode(cat)
    assert [(r.stage, r.attempted, r.succeeded) for r in reports] == [("clean", 1, 1), ("render", 1, 1),
                                                                       ("encode", 1, 1)]
    assert_same_current(cache, Path(yaml.safe_load(learn_cache.read_text())["cache"]), load_catalog(cat).dataset("s"),
                        chain)
    assert run_cli("verify", "--catalog", str(cat), "-d", "s")[0] == 0
    assert _checker(cat).returncode == 0


@pytest.mark.slow
def test_an_encode_row_reading_damaged_render_data_fails_and_stays_pending(learn_cache: Path, tmp_path: Path) -> None:
    cat = _copy(learn_cache, tmp_path)
    chain, view = _chain(cat)
    _, r, e = (int(x) for x in view.rows[3])
    _chunk(tmp_path / "cache", f"render/{chain['render']}", f"image/c/{r}").unlink()
    root = zarr.open_group(str(tmp_path / "cache" / "s.zarr"), mode="r+")
    rows.mark_pending(root[f"encode/{chain['encode']}"], [e])  # as if the features had to be made again

    enc = _encode(cat)[-1]
    assert enc.succeeded == 0 and [(f[0], f[1]) for f in enc.failures] == [(e, view.meta.ids[3])]
    assert f"damaged cache data: render/{chain['render']} row {r}, array image: checksum mismatch" in enc.failures[0][2]
    grp = root[f"encode/{chain['encode']}"]
    assert not grp["done"][e] and grp["error"][e] == ""  # pending: not remembered as the sample's failure

    code, out = run_cli("verify", "--catalog", str(cat), "-d", "s", "--repair")
    assert code == 0 and f"row {r} ({view.meta.ids[3]}): image:" in out, out
    reports = _encode(cat)
    assert [(x.stage, x.attempted) for x in reports] == [("clean", 0), ("render", 1), ("encode", 1)]
    assert not any(x.failures for x in reports)
    assert_same_current(tmp_path / "cache", Path(yaml.safe_load(learn_cache.read_text())["cache"]),
                        load_catalog(cat).dataset("s"), chain)


def test_checksums_are_the_bytes_stored(learn_cache: Path) -> None:
    """An outside recomputation (zlib over each array's bytes) equals every recorded sum of one row per group."""
    import zlib

    chain, view = _chain(learn_cache)
    for grp, r in ((view.clean, int(view.rows[0, 0])), (view.render, int(view.rows[0, 1])),
                   (view.encode, int(view.rows[0, 2]))):
        assert grp.attrs["checksums"] == "crc32"
        entry = dict(item.split(":") for item in str(grp["checksum"][r]).split())
        assert entry, grp.path
        for name, want in entry.items():
            value = np.ascontiguousarray(grp[name.replace("*", str(r))][:] if "*" in name else grp[name][r])
            assert f"{zlib.crc32(value.tobytes()):08x}" == want, (grp.path, name)
        data = {n for n, a in grp.arrays() if a.chunks[0] == 1 and n != "checksum"}
        assert data <= set(entry), (grp.path, data - set(entry))


V2_COMMIT = "f4a8ed4"  # 0.5.0: the last code that writes schema pointad-pipe/2 (no checksums)


@pytest.mark.slow
def test_a_schema_2_cache_is_read_as_before_and_verify_says_it_cannot_check_it(mvtec_ball: Path,
                                                                                 tmp_path: Path) -> None:
    code = old_release(V2_COMMIT, tmp_path / "v2")
    if code is None:
        pytest.skip(f"no git history with {V2_COMMIT} (a shallow clone)")
    cat = write_catalog(tmp_path, {"m": {"format": "mvtec3d", "root": str(mvtec_ball), **SYNTH,
                                         "render": {"image_size": 112}}})
    encode = ["encode", "--catalog", str(cat), "-d", "m", "--model", "tiny", "-j", "0"]
    old = run_old(code, *encode)
    assert old.returncode == 0, old.stdout + old.stderr
    root = zarr.open_group(str(tmp_path / "cache" / "m.zarr"), mode="r")
    (enc,) = (g for _, g in root["encode"].groups())
    assert root.attrs["schema"] == "pointad-pipe/2" and "checksum" not in enc

    out_code, out = run_cli("verify", "--catalog", str(cat), "-d", "m")
    assert out_code == 0 and out.count("8 rows: cannot check: written before checksums") == 3, out
    out_code, out = run_cli(*encode)  # same fingerprints: every row is found, nothing is recomputed
    assert out_code == 0 and out.count("(0 now, 8 already)") == 3, out
    assert zarr.open_group(str(tmp_path / "cache" / "m.zarr"), mode="r").attrs["schema"] == "pointad-pipe/3"
    check_cache(tmp_path / "cache", "m")
    out_code, out = run_cli("train", "--catalog", str(cat), "-d", "m", "--train-class", "ball", "--epochs", "1",
                            "--out", str(tmp_path / "t"))
    assert out_code == 0 and (tmp_path / "t" / "prompts.pt").is_file(), out
