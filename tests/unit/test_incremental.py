"""The incremental store (issue 13), through the library: after a complete encode, each change to the files
redoes exactly its rows.

Each case starts from a copy of one complete build (mtimes kept, so the memo holds), changes the
files, reruns the whole chain in this process, counts the rows each stage computed, and checks
that the current rows equal a from-scratch build of the files as they now are, bit for bit, and
that the outside contract checker passes. One sample is broken from the start: its failure is
remembered through every case.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from pointad_pipe.pipeline.cache.runner import RunOptions, RunReport
from pointad_pipe.pipeline.catalog import load_catalog
from pointad_pipe.pipeline.jobs import identity
from pointad_pipe.pipeline.jobs.encode import EncodeOptions, run_encode

from ..helpers import SYNTH, assert_same_current, check_cache, write_catalog

N_GOOD = 8  # the synthetic ball class; plus one broken sample
RENDER = {"image_size": 112}  # small renderings: the test is about rows, not pixels
BROKEN = "ball/test/good/099"


@dataclass
class Case:
    """A private copy of the complete build."""

    folder: Path

    @property
    def data(self) -> Path:
        return self.folder / "data"

    @property
    def catalog(self) -> Path:
        return self.folder / "catalog.yaml"

    def point_at(self, root: Path) -> None:
        spec = yaml.safe_load(self.catalog.read_text())
        spec["datasets"]["m"]["root"] = str(root)
        self.catalog.write_text(yaml.safe_dump(spec))


def encode(catalog_path: Path, render: dict[str, Any] | None = None) -> list[RunReport]:
    """The whole chain, in this process, on one catalog."""
    catalog = load_catalog(catalog_path)
    return run_encode(catalog, catalog.dataset("m"), RunOptions(workers=0, progress=False), EncodeOptions(),
                      {"model": "tiny"}, render)


def computed(reports: list[RunReport]) -> list[int]:
    """Rows each stage computed (or tried) in a run."""
    return [r.attempted for r in reports]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, synthetic_root: Path) -> Path:
    """A complete build of the ball class plus one truncated file (whose failure is remembered)."""
    base = tmp_path_factory.mktemp("built")
    shutil.copytree(synthetic_root / "mvtec3d" / "ball", base / "data" / "ball")
    good = base / "data" / "ball" / "test" / "good"
    for role, ext in (("xyz", "tiff"), ("rgb", "png"), ("gt", "png")):
        shutil.copy2(good / role / f"000.{ext}", good / role / f"099.{ext}")
    (good / "xyz" / "099.tiff").write_bytes((good / "xyz" / "099.tiff").read_bytes()[:3000])
    write_catalog(base, {"m": {"format": "mvtec3d", "root": str(base / "data"), "render": RENDER, **SYNTH}})
    reports = encode(base / "catalog.yaml")
    assert [r.done for r in reports] == [N_GOOD] * 3 and reports[0].failures[0][1] == BROKEN
    return base


@pytest.fixture
def case(built: Path, tmp_path: Path) -> Case:
    shutil.copytree(built, tmp_path / "case")  # copy2 keeps mtimes: the memo still holds
    c = Case(tmp_path / "case")
    c.point_at(c.data)
    spec = yaml.safe_load(c.catalog.read_text())
    spec["cache"] = str(c.folder / "cache")
    c.catalog.write_text(yaml.safe_dump(spec))
    return c


def assert_like_fresh(c: Case, reports: list[RunReport], tmp_path: Path,
                      render: dict[str, Any] | None = None) -> None:
    """The current rows equal a from-scratch build of the same files, and the checker passes."""
    spec = yaml.safe_load(c.catalog.read_text())
    cache = Path(spec["cache"])
    spec["cache"] = str(tmp_path / "fresh_cache")
    fresh_cat = tmp_path / "fresh.yaml"
    fresh_cat.write_text(yaml.safe_dump(spec))
    fresh = encode(fresh_cat, render)
    assert [r.fingerprint for r in fresh] == [r.fingerprint for r in reports]
    entry = load_catalog(c.catalog).dataset("m")
    chain = {r.stage: r.fingerprint for r in reports}
    assert_same_current(cache, tmp_path / "fresh_cache", entry, chain)
    check_cache(cache, "m")


def test_nothing_changed_redoes_nothing_and_reads_no_file(case: Case, tmp_path: Path) -> None:
    reports = encode(case.catalog)
    assert computed(reports) == [0, 0, 0] and reports[0].hashed == 0
    assert [sid for _, sid, _ in reports[0].remembered] == [BROKEN]  # its failure is remembered, not retried
    assert [len(r.blocked) for r in reports] == [0, 1, 1]
    assert_like_fresh(case, reports, tmp_path)


def test_added_files_are_exactly_their_rows(case: Case, tmp_path: Path) -> None:
    good = case.data / "ball" / "test" / "good"
    bump = case.data / "ball" / "test" / "bump"
    for src, stem in ((good, "050"), (bump, "051")):  # two new samples: copies under new names
        for role, ext in (("xyz", "tiff"), ("rgb", "png"), ("gt", "png")):
            shutil.copy(src / role / f"000.{ext}", src / role / f"{stem}.{ext}")
    reports = encode(case.catalog)
    assert computed(reports) == [2, 2, 2] and reports[0].hashed == 6
    assert_like_fresh(case, reports, tmp_path)


def test_a_file_edited_in_place_is_one_row(case: Case, tmp_path: Path) -> None:
    xyz = case.data / "ball" / "test" / "good" / "xyz" / "000.tiff"
    shutil.copy(case.data / "ball" / "test" / "crack" / "xyz" / "000.tiff", xyz)  # other bytes, same path
    reports = encode(case.catalog)
    assert computed(reports) == [1, 1, 1]
    assert_like_fresh(case, reports, tmp_path)


def test_a_touched_file_is_hashed_once_and_redoes_nothing(case: Case, tmp_path: Path) -> None:
    xyz = case.data / "ball" / "test" / "good" / "xyz" / "000.tiff"
    os.utime(xyz, ns=(xyz.stat().st_atime_ns, xyz.stat().st_mtime_ns + 10**9))
    first = encode(case.catalog)
    assert computed(first) == [0, 0, 0] and first[0].hashed == 1
    again = encode(case.catalog)
    assert computed(again) == [0, 0, 0] and again[0].hashed == 0  # the memo learnt the new mtime
    assert_like_fresh(case, again, tmp_path)


def test_a_moved_or_copied_root_redoes_nothing(case: Case, tmp_path: Path) -> None:
    moved = tmp_path / "elsewhere" / "data"
    shutil.copytree(case.data, moved, copy_function=shutil.copy)  # like `cp -r`: new mtimes
    shutil.rmtree(case.data)
    case.point_at(moved)
    reports = encode(case.catalog)
    assert computed(reports) == [0, 0, 0] and reports[0].hashed > 0  # read once more, same versions
    assert_like_fresh(case, reports, tmp_path)


def test_removed_files_drop_out_of_the_view_with_no_work(case: Case, tmp_path: Path) -> None:
    from pointad_pipe.pipeline.jobs.train import select_rows

    gone = ["ball/test/bump/000", "ball/test/good/000"]
    for sid in gone:
        cls, split, defect, stem = sid.split("/")
        for f in (case.data / cls / split / defect).glob(f"*/{stem}.*"):
            f.unlink()
    reports = encode(case.catalog)
    assert computed(reports) == [0, 0, 0]
    catalog = load_catalog(case.catalog)
    entry = catalog.dataset("m")
    view = select_rows(catalog, entry, ["ball"], None).view
    assert not set(gone) & set(view.meta.ids) and len(view) == N_GOOD - 2
    groups = identity.encode_groups(catalog.cache, entry)
    assert len(identity.open_view(catalog.cache, entry, groups[-1])) == N_GOOD - 2  # what evaluate reads
    assert_like_fresh(case, reports, tmp_path)


def test_a_new_render_option_redoes_render_and_encode_only(case: Case, tmp_path: Path) -> None:
    reports = encode(case.catalog, {"image_size": 96})
    assert computed(reports) == [0, N_GOOD, N_GOOD]
    assert_like_fresh(case, reports, tmp_path, {"image_size": 96})
