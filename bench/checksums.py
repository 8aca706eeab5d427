"""What the per-row checksums cost a reader: encode rows read checked vs. unchecked, side by side in one process.

A ViT-L/14@336-sized encode group (9 views, 4 layers, 576 patches, D 768, float16, Blosc zstd as the
encode stage writes it) is written once with `store.write_row`; then its rows are read back
interleaved, (a) as plain zarr reads and (b) through `checksums.CheckedRows` (the read plus a
CRC-32 over the bytes), and the medians compared. A second figure is the write side: summing a row.

    python bench/checksums.py [--rows 8] [--repeats 5] [--smoke]

`--smoke`: 2 rows of a tiny shape, 1 repeat: a check that the bench runs, not a figure.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import numpy as np

VIT_L = (9, 4, 576, 768)  # views, layers, patches, width of one encode row's `patch`
SMOKE_SHAPE = (9, 1, 16, 32)


def make_group(folder: str, rows: int, shape: tuple[int, ...]):
    """An encode-like group with `rows` written rows of `patch` and `global`, checksums on."""
    from pointad_pipe.pipeline.cache import store

    root = store.open_dataset(folder, "bench")
    grp = store.create_group(root, "encode", "b" * 16, upstream=None, config={})
    codec = store.feature_codec()
    store.create_rows_array(grp, "patch", (rows, *shape), np.float16, compressors=codec)
    store.create_rows_array(grp, "global", (rows, shape[0], shape[-1]), np.float16, compressors=codec)
    grp[store.checksums.COLUMN].resize((rows,))
    rng = np.random.default_rng(0)
    for r in range(rows):
        store.write_row(grp, r, {"patch": rng.standard_normal(shape).astype(np.float16),
                                 "global": rng.standard_normal((shape[0], shape[-1])).astype(np.float16)}, {})
    return grp


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--smoke", action="store_true")
    a = ap.parse_args()
    rows, repeats, shape = (2, 1, SMOKE_SHAPE) if a.smoke else (a.rows, a.repeats, VIT_L)
    from pointad_pipe.pipeline.cache import checksums

    with tempfile.TemporaryDirectory() as tmp:
        grp = make_group(tmp, rows, shape)
        plain, checked, summed = [], [], []
        for _ in range(repeats):  # interleaved, so both see the same page cache and machine load
            t = time.perf_counter()
            for r in range(rows):
                np.asarray(grp["patch"][r])
                np.asarray(grp["global"][r])
            plain.append((time.perf_counter() - t) / rows)
            reader = checksums.CheckedRows(grp)  # fresh: its entries are read as a cold reader would
            t = time.perf_counter()
            for r in range(rows):
                reader.read(r, "patch")
                reader.read(r, "global")
            checked.append((time.perf_counter() - t) / rows)
            value = np.asarray(grp["patch"][0])
            t = time.perf_counter()
            checksums.crc(value)
            summed.append(time.perf_counter() - t)
    p, c, s = (statistics.median(x) * 1000 for x in (plain, checked, summed))
    mb = np.prod(shape) * 2 / 1e6
    print(f"checksums: encode rows of patch {shape} float16 ({mb:.1f} MB), {rows} rows, median of {repeats}")
    ratio = c / p
    print(f"  read: plain {p:.1f} ms/row, checked {c:.1f} ms/row -> checked/plain x{ratio:.2f} "
          f"({(ratio - 1) * 100:.1f} %)")
    print(f"  write: CRC-32 of one patch row {s:.2f} ms ({mb / max(s / 1000, 1e-9) / 1000:.1f} GB/s)")


if __name__ == "__main__":
    main()
