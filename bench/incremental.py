"""The incremental store: a rerun after adding k samples against a from-scratch build; a no-change rerun at scale.

1. N + k samples (MVTec layout, the `tiny` model's full chain clean -> render -> encode, in this
   process, no workers): a build of N samples, then k more added and the chain rerun (timed), and a
   from-scratch build of all N + k in a fresh cache (timed). The encoder is reloaded for each timed
   run, so neither gets a warm model. Target: incremental at least 20x faster.
2. A no-change rerun over `--rows` samples (target under 3 s): a few real rows are built, their
   files copied under new ids (the same bytes, so the same versions) and their cached rows copied
   to match, which is exactly what building them would write. The first rerun hashes the copies
   once; the figure is the median of the reruns after it, in this process; the whole command
   (python start-up and imports included) is timed once as well.

    python bench/incremental.py [--n 200] [--k 5] [--rows 10000] [--repeats 3] [--part 1|2|both] [--smoke]

`--smoke`: N = 4, k = 1, 120 rows, 1 repeat: a check that the bench runs, not a figure.
Samples are copies of one scan under new names: every row costs the same to compute.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

SMOKE = {"n": 4, "k": 1, "rows": 120, "repeats": 1}
ROLES = (("xyz", "tiff"), ("rgb", "png"), ("gt", "png"))


def dataset(out: Path, count: int) -> Path:
    """`count` samples in ball/test/good: one synthetic scan copied under stems 00000.. (returns the root)."""
    from pointad_pipe.pipeline.synthetic.generator import make_synthetic

    src = make_synthetic(out / "gen", seed=0, classes=["ball"], n_train=1, n_test_good=1, n_test_per_defect=0,
                         layouts=("mvtec3d",))["mvtec3d"]
    root = out / "data"
    good = root / "ball" / "test" / "good"
    for role, _ in ROLES:
        (good / role).mkdir(parents=True)
    add(root, 0, count, src / "ball" / "test" / "good")
    return root


def add(root: Path, start: int, count: int, src: Path | None = None) -> None:
    """Copy the first sample's files to stems `start`..`start + count - 1`."""
    good = root / "ball" / "test" / "good"
    src = src or good
    first = "000" if src != good else "00000"
    for i in range(start, start + count):
        for role, ext in ROLES:
            shutil.copy(src / role / f"{first}.{ext}", good / role / f"{i:05d}.{ext}")


def catalog(folder: Path, root: Path, cache: Path, tiny_rows: bool = False) -> Path:
    """A one-dataset catalog; `tiny_rows`: one 112 px view and one cached layer (10,000 rows fit on a disk)."""
    path = folder / f"catalog_{cache.name}.yaml"
    entry = {"format": "mvtec3d", "root": str(root), "clean": {"units": "m"}}
    if tiny_rows:
        entry |= {"render": {"views": [["x", 0]], "image_size": 112}, "encode": {"layers": [4]}}
    path.write_text(yaml.safe_dump({"cache": str(cache), "datasets": {"m": entry}}))
    return path


def chain(catalog_path: Path) -> tuple[float, list]:
    """Seconds of the whole chain in this process, with a cold encoder, and its reports."""
    from pointad_pipe.pipeline.cache.runner import RunOptions
    from pointad_pipe.pipeline.catalog import load_catalog
    from pointad_pipe.pipeline.jobs.encode import EncodeOptions, run_encode
    from pointad_pipe.pipeline.stages.encode import get_encoder

    get_encoder.cache_clear()
    cat = load_catalog(catalog_path)
    start = time.perf_counter()
    reports = run_encode(cat, cat.dataset("m"), RunOptions(workers=0, progress=False), EncodeOptions(),
                         {"model": "tiny"})
    return time.perf_counter() - start, reports


def part_one(tmp: Path, n: int, k: int) -> None:
    root = dataset(tmp / "p1", n)
    _, reports = chain(catalog(tmp, root, tmp / "cache_a"))
    assert all(r.done == n for r in reports), [(r.stage, r.done) for r in reports]
    add(root, n, k)
    t_inc, inc = chain(catalog(tmp, root, tmp / "cache_a"))
    assert [r.attempted for r in inc] == [k, k, k], [r.attempted for r in inc]
    t_full, full = chain(catalog(tmp, root, tmp / "cache_b"))
    assert [r.attempted for r in full] == [n + k] * 3
    print(f"incremental: N = {n}, k = {k}, tiny model, full chain in one process, cold encoder each run")
    print(f"  from scratch ({n + k} samples): {t_full:.2f} s; after adding {k}: {t_inc:.2f} s "
          f"-> incremental x{t_full / t_inc:.1f} faster (target >= 20)")


def replicate(cat_path: Path, total: int) -> None:
    """Copy the built rows of sample 00000 to the ids of every copy of its files (what a build would write)."""
    from pointad_pipe.pipeline.cache import rows, store
    from pointad_pipe.pipeline.catalog import load_catalog
    from pointad_pipe.pipeline.jobs import identity

    cat = load_catalog(cat_path)
    entry = cat.dataset("m")
    add(entry.root, 1, total - 1)
    root = store.open_dataset(cat.cache, entry.name)
    up: dict[int, int] | None = None
    for stage in store.STAGES:
        (grp,) = store.stage_groups(root, stage)
        table = rows.read_table(grp)
        version = table.versions[0]
        keys = [(f"ball/test/good/{i:05d}", version) for i in range(1, total)]
        p = rows.plan(table, keys)
        meta = rows.read_meta(grp, [0]) if stage == "clean" else None
        cols = {name: vals * len(keys) for name, vals in meta.columns().items()} if meta else {}
        if up is not None:
            cols["rows/upstream"] = [up[k] for k in range(len(keys))]
        got = rows.reserve(grp, p, keys, cols)
        copy_row_zero(grp, sorted(got.values()))
        rows.mark(grp, [(r, "") for r in got.values()])
        up = got
    assert len(identity.index_rows(entry)) == total


def copy_row_zero(grp, targets: list[int], block: int = 1000) -> None:  # noqa: ANN001 - a zarr group
    """Row 0's data into `targets` (consecutive rows): row-axis arrays a block at a time, per-row arrays each."""
    import numpy as np

    from pointad_pipe.pipeline.cache import migrate

    for name, arr in grp.arrays():
        if name in migrate.V1_COLUMNS:
            continue
        row = np.asarray(arr[0])
        for s in range(0, len(targets), block):
            part = targets[s:s + block]
            arr[part[0]:part[-1] + 1] = np.broadcast_to(row, (len(part), *row.shape))
    for sub in ("points", "rgb_grid"):
        if f"{sub}/0" not in grp:
            continue
        node = grp[f"{sub}/0"]
        items = ([(f"/{k}", np.asarray(a[:]), dict(a.attrs)) for k, a in node.arrays()] if sub == "points"
                 else [("", node[:], {})])
        for r in targets:
            for suffix, data, attrs in items:
                grp.create_array(f"{sub}/{r}{suffix}", data=data, overwrite=True).attrs.update(attrs)


def part_two(tmp: Path, total: int, repeats: int) -> None:
    root = dataset(tmp / "p2", 1)
    cat = catalog(tmp, root, tmp / "cache_c", tiny_rows=True)
    chain(cat)
    replicate(cat, total)
    _, first = chain(cat)
    assert [r.attempted for r in first] == [0, 0, 0] and all(r.done == total for r in first)
    checker = Path(__file__).resolve().parents[1] / "tests" / "contract" / "check_cache.py"
    subprocess.run([sys.executable, str(checker), str(tmp / "cache_c"), "m", "--rows", "3"], check=True,
                   capture_output=True)  # the copied rows read as a build's would
    times = []
    for _ in range(repeats):
        t, reports = chain(cat)
        assert [r.attempted for r in reports] == [0, 0, 0] and reports[0].hashed == 0
        times.append(t)
    cmd = [sys.executable, "-m", "pointad_pipe.cli.main"]
    start = time.perf_counter()
    subprocess.run([*cmd, "encode", "--catalog", str(cat), "-d", "m", "--model", "tiny"], check=True,
                   capture_output=True)
    whole = time.perf_counter() - start
    start = time.perf_counter()
    subprocess.run([*cmd, "status", "--help"], check=True, capture_output=True)
    startup = time.perf_counter() - start
    print(f"no-change rerun: {total} rows (3 stages, 1 view, 1 layer), nothing to do")
    print(f"  in process: {statistics.median(times):.2f} s (median of {repeats}; target < 3); whole command "
          f"{whole:.2f} s, of which python start-up {startup:.2f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--rows", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--part", choices=["1", "2", "both"], default="both", help="run one part only")
    ap.add_argument("--smoke", action="store_true", help=f"tiny sizes {SMOKE}")
    a = ap.parse_args()
    if a.smoke:
        a.n, a.k, a.rows, a.repeats = SMOKE["n"], SMOKE["k"], SMOKE["rows"], SMOKE["repeats"]
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        if a.part in ("1", "both"):
            part_one(tmp, a.n, a.k)
        if a.part in ("2", "both"):
            part_two(tmp, a.rows, a.repeats)


if __name__ == "__main__":
    main()
