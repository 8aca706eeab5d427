"""The row axis (cache/rows.py) and sample versions (cache/versions.py), on tiny groups and files."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import zarr

from pointad_pipe.pipeline.cache import rows, store
from pointad_pipe.pipeline.cache.versions import FileMemo, sample_version


def _group(tmp_path: Path) -> zarr.Group:
    root = store.open_dataset(str(tmp_path), "d")
    grp = store.create_group(root, "render", "f" * 16, upstream="c" * 16, config={})
    store.create_rows_array(grp, "eps", (0,), np.float32)
    store.mark_initialized(grp)
    return grp


def test_plan_sorts_keys_into_current_failed_and_to_do(tmp_path: Path) -> None:
    grp = _group(tmp_path)
    keys = [("a", "1"), ("b", "1"), ("c", "1"), ("d", "1")]
    p = rows.plan(rows.read_table(grp), keys)
    assert p.todo == [0, 1, 2, 3] and p.new == 4
    got = rows.reserve(grp, p, keys, {"rows/upstream": [10, 11, 12, 13]})
    assert got == {0: 0, 1: 1, 2: 2, 3: 3} and grp.attrs["n_rows"] == 4
    rows.mark(grp, [(0, ""), (1, "broken:\n  twice")])  # c and d stay pending (a kill)
    later = [("a", "1"), ("b", "1"), ("c", "1"), ("d", "2"), ("e", "1")]
    p = rows.plan(rows.read_table(grp), later)
    assert p.current == {0: 0} and p.failed == {1: (1, "broken: twice")}
    assert p.todo == [2, 3, 4] and p.reuse == {2: 2} and (p.new, p.stale) == (1, 1)
    assert p.counts() == {"new": 1, "stale": 1, "pending": 1, "retried": 0, "current": 1, "failed": 1}
    got = rows.reserve(grp, p, later, {"rows/upstream": [0, 0, 0, 0, 0]})
    assert got == {2: 2, 3: 4, 4: 5} and grp.attrs["n_rows"] == 6  # c reuses its row; d's new version appends
    retry = rows.plan(rows.read_table(grp), later, retry_failed=True)
    assert retry.reuse[1] == 1 and retry.retried == {1}


def test_the_lowest_done_row_of_a_key_wins_and_tombstones_hide(tmp_path: Path) -> None:
    grp = _group(tmp_path)
    keys = [("a", "1"), ("a", "1"), ("b", "1")]
    p = rows.Plan(todo=[0, 1, 2])
    rows.reserve(grp, p, keys, {"rows/upstream": [0, 1, 2]})
    rows.mark(grp, [(0, ""), (1, ""), (2, "")])
    grp["eps"][2] = 5.0
    table = rows.read_table(grp)
    assert table.current([("a", "1"), ("b", "1"), ("c", "1")]).tolist() == [0, 2, -1]
    rows.tombstone(grp, [2])
    assert rows.read_table(grp).current([("b", "1")]).tolist() == [-1]
    assert float(grp["eps"][2]) == 0.0  # its chunk is gone: the fill value reads back


def test_an_uncommitted_append_is_invisible(tmp_path: Path) -> None:
    grp = _group(tmp_path)
    for arr in (grp["rows/id"], grp["rows/version"], grp["done"], grp["eps"]):
        arr.resize((3, *arr.shape[1:]))
    grp["rows/id"][:] = store.string_array(["x", "y", "z"])
    grp["done"][:] = True
    assert rows.read_table(grp).n == 0  # n_rows says 0: nothing was committed


def test_versions_read_a_file_once_and_follow_its_bytes(tmp_path: Path) -> None:
    f = tmp_path / "a" / "x.bin"
    f.parent.mkdir()
    f.write_bytes(b"one")

    class Ref:
        label, defect, files = 0, "good", {"xyz": str(f), "gt": str(tmp_path / "absent.png")}

    memo = FileMemo()
    v1 = sample_version(Ref, tmp_path, memo)
    assert memo.hashed == 1 and set(memo.entries) == {"a/x.bin"}  # relative keys; an absent file is not read
    assert sample_version(Ref, tmp_path, memo) == v1 and memo.hashed == 1
    st = f.stat()
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 5 * 10**9))  # touched: read again, same version
    assert sample_version(Ref, tmp_path, memo) == v1 and memo.hashed == 2
    f.write_bytes(b"two")
    assert sample_version(Ref, tmp_path, memo) != v1 and memo.hashed == 3
    Ref.label = 1
    assert sample_version(Ref, tmp_path, memo) != sample_version(type("R", (), {"label": 0, "defect": "good",
                                                                                "files": Ref.files}), tmp_path, memo)


def test_the_memo_survives_in_the_cache(tmp_path: Path) -> None:
    root = store.open_dataset(str(tmp_path / "cache"), "d")
    memo = FileMemo({"x": [1, 2, "h"]}, changed=True)
    memo.save(root)
    assert FileMemo.load(root).entries == {"x": [1, 2, "h"]} and FileMemo.load(None).entries == {}
