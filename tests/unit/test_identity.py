"""The fingerprint rules (jobs/identity.py): what names a stage group, and what never may.

- The synthetic catalog's groups have pinned fingerprints (a change is a decision, made here).
- The clean fingerprint is the format, loader and clean config: never the root, the selection or the rows.
- Every field of a stage config changes its fingerprint; a speed knob never does.
- `version` belongs to the code: a catalog cannot override it.
- `gc` and the stage jobs compute the same fingerprints (gc keeps exactly what the stages made).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pointad_pipe.pipeline.cache import runner, store
from pointad_pipe.pipeline.catalog import DatasetEntry, load_catalog
from pointad_pipe.pipeline.errors import CatalogError
from pointad_pipe.pipeline.jobs import identity
from pointad_pipe.pipeline.jobs.encode import EncodeOptions
from pointad_pipe.pipeline.stages.clean import CleanConfig
from pointad_pipe.pipeline.stages.encode import EncodeConfig
from pointad_pipe.pipeline.stages.render import RenderConfig

from ..helpers import ROOT, SYNTH, write_catalog

#: (clean, render, encode tiny). History: the layout change (issue 11) kept the pre-layout values (46e3f0c:
#: 0f8f1919.../4c106da1.../e41839e6... and f860658e.../c1228e76.../4b797e82...); physical cleaning thresholds
#: (issue 12, clean version 2) made them ffffc27b.../945a6756.../3da3e437... and 5605092f.../babc0598.../895dcc49...;
#: cache schema pointad-pipe/2 (issue 13: the schema string is hashed, the root and row list no longer are) made:
PINNED = {"synthetic": ("248d700f7c8bb805", "32b663975ea46999", "30100e68bded637f"),
          "synthetic_real3d": ("6379fd6941983f09", "4219ea71993d8a74", "91a57851891c10e3")}


@pytest.mark.parametrize("name", sorted(PINNED))
def test_the_synthetic_catalogs_fingerprints_are_pinned(name: str) -> None:
    entry = load_catalog(ROOT / "data_catalog.yaml").dataset(name)
    clean_fp, _ = identity.clean_identity(entry)
    render_fp = identity.render_identity(identity.render_config(entry), clean_fp)
    prep = identity.prepare_encode(identity.encode_config(entry, {"model": "tiny"}), None, "cpu")
    assert (clean_fp, render_fp, identity.encode_identity(prep, render_fp)) == PINNED[name]


# ---------------------------------------------------------------- every output field counts


def _other(cls: type, field: dataclasses.Field, value: Any) -> Any:
    """A different valid value of a config field."""
    choices = {"plane": "none", "units": "mm", "visibility": "paper", "backend": "open3d", "dtype": "bf16",
               "model": "ViT-B-16"}
    if field.name in choices:
        return choices[field.name] if value != choices[field.name] else "border"
    if isinstance(value, bool):
        return not value
    if isinstance(value, int) or (value is None and field.name in ("grid_size", "max_points")):
        return (value or 0) + 7
    if isinstance(value, float):
        return value * 0.5 + 0.001  # stays valid: positive, and within [0, 1] for the fractions
    if isinstance(value, tuple):
        return value[:-1] if len(value) > 1 else (*value, value[0] if value else 1)
    raise AssertionError(f"no alternative for {cls.__name__}.{field.name} = {value!r}")


@pytest.mark.parametrize("cls", [CleanConfig, RenderConfig, EncodeConfig])
def test_every_config_field_changes_the_fingerprint(cls: type) -> None:
    base = cls()
    entry = DatasetEntry(name="x", format="mvtec3d", root=Path("/pin/x"))
    weights = identity.Weights("random", None, "0" * 64, "random")

    def fp(cfg: Any) -> str:
        if cls is CleanConfig:
            return _clean_fp(entry, cfg)
        if cls is RenderConfig:
            return identity.render_identity(cfg, "c" * 16)
        return identity.encode_identity(identity.Prepared(cfg, weights, {}), "r" * 16)

    seen = {fp(base)}
    for field in dataclasses.fields(cls):
        changed = dataclasses.replace(base, **{field.name: _other(cls, field, getattr(base, field.name))})
        key = fp(changed)
        assert key not in seen, f"{cls.__name__}.{field.name} does not change the fingerprint"
        seen.add(key)


def _clean_fp(entry: DatasetEntry, cfg: CleanConfig) -> str:
    """The clean fingerprint of `cfg`, reached the way a catalog reaches it (its `clean:` overrides);
    `version` is not a catalog key, so a changed one goes in as the format's code default."""
    changed = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)
               if getattr(cfg, f.name) != getattr(CleanConfig(), f.name)}
    code = {"version": changed.pop("version")} if "version" in changed else {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(identity.CLEAN_DEFAULTS, "mvtec3d", {**identity.CLEAN_DEFAULTS["mvtec3d"], **code})
        return identity.clean_identity(dataclasses.replace(entry, overrides={"clean": changed}))[0]


def test_the_dataset_side_of_the_clean_fingerprint() -> None:
    """Moving the root or selecting classes/splits keeps the group (rows are keyed by id and version);
    the loader's options and the format change what a row is, so they name another group."""
    entry = load_catalog(ROOT / "data_catalog.yaml").dataset("synthetic")
    base = identity.clean_identity(entry)[0]
    same = [identity.clean_identity(dataclasses.replace(entry, root=Path("/elsewhere")))[0],
            identity.clean_identity(dataclasses.replace(entry, classes=("ball",), splits=("test",)))[0]]
    assert same == [base, base]
    other = [identity.clean_identity(dataclasses.replace(entry, loader={"x": 1}))[0],
             identity.clean_identity(dataclasses.replace(entry, format="real3d"))[0]]
    assert len({base, *other}) == 3


# ---------------------------------------------------------------- speed knobs never count


def test_no_speed_knob_is_a_config_field() -> None:
    knobs = {f.name for cls in (runner.RunOptions, EncodeOptions) for f in dataclasses.fields(cls)}
    assert knobs >= {"workers", "scheduler", "batch_size", "threads", "device", "weights"}
    for cls in (CleanConfig, RenderConfig, EncodeConfig):
        assert not knobs & {f.name for f in dataclasses.fields(cls)}, cls


def _fingerprints_without_work(monkeypatch: pytest.MonkeyPatch, catalog_path: Path, opts: runner.RunOptions,
                               enc: EncodeOptions) -> list[str]:
    """Every stage group's fingerprint as `run_encode` names it, with no row processed (the runner is stubbed)."""
    from pointad_pipe.pipeline.jobs import clean, encode, render

    def no_work(stage: str, grp: Any, fp: str, url: str, keys: list[Any], *args: Any, **kwargs: Any) -> Any:
        return runner.RunReport(stage=stage, fingerprint=fp, url=url, total=len(keys), rows=np.zeros(len(keys), int))

    for module in (clean, render, encode):
        monkeypatch.setattr(module, "run_stage", no_work)
    catalog = load_catalog(catalog_path)
    return [r.fingerprint for r in encode.run_encode(catalog, catalog.dataset("m"), opts, enc, {"model": "tiny"})]


def test_speed_knobs_never_change_a_fingerprint(mvtec_ball: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    cat = write_catalog(tmp_path, {"m": {"format": "mvtec3d", "root": str(mvtec_ball), **SYNTH}})
    plain = _fingerprints_without_work(monkeypatch, cat, runner.RunOptions(), EncodeOptions())
    tuned = _fingerprints_without_work(monkeypatch, cat, runner.RunOptions(workers=5, scheduler="tcp://nowhere:1",
                                                                          progress=False),
                                       EncodeOptions(device="cpu", batch_size=3, threads=1))
    assert len(plain) == 3 and plain == tuned
    other = _fingerprints_without_work(monkeypatch, cat, runner.RunOptions(),
                                       EncodeOptions(weights="random"))  # a real input: the same tiny seed
    assert other == plain
    root = store.open_dataset(str(tmp_path / "cache"), "m", mode="r")
    assert [[g.attrs["fingerprint"] for g in store.stage_groups(root, s)] for s in store.STAGES] == [[f] for f in plain]


# ---------------------------------------------------------------- the code's own fields


@pytest.mark.parametrize("stage", ["clean", "render", "encode"])
def test_version_cannot_be_overridden_from_the_catalog(stage: str, tmp_path: Path) -> None:
    cat = load_catalog(write_catalog(tmp_path, {"m": {"format": "mvtec3d", "root": str(tmp_path),
                                                      stage: {"version": 99}}}))
    build = {"clean": identity.clean_config, "render": identity.render_config, "encode": identity.encode_config}
    with pytest.raises(CatalogError, match=rf"datasets\.m\.{stage}: 'version' is set by the code"):
        build[stage](cat.dataset("m"))


# ---------------------------------------------------------------- gc agrees with the stages


def test_gc_keeps_exactly_what_the_stages_made(mvtec_ball: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from pointad_pipe.pipeline.jobs.gc import survey

    def stale_groups(catalog: Any, entry: Any, strict: bool) -> list[Any]:
        return survey(catalog, entry, strict).stale

    cat = write_catalog(tmp_path, {"m": {"format": "mvtec3d", "root": str(mvtec_ball), **SYNTH}})
    _fingerprints_without_work(monkeypatch, cat, runner.RunOptions(), EncodeOptions())
    catalog = load_catalog(cat)
    assert stale_groups(catalog, catalog.dataset("m"), strict=True) == []
    # a changed render config: strict gc now calls the old render group (and its encode) stale, and nothing else
    moved = write_catalog(tmp_path, {"m": {"format": "mvtec3d", "root": str(mvtec_ball), **SYNTH,
                                           "render": {"visibility": "paper"}}})
    catalog = load_catalog(moved)
    stale = stale_groups(catalog, catalog.dataset("m"), strict=True)
    assert [s.stage for s in stale] == ["render", "encode"]
    assert stale_groups(catalog, catalog.dataset("m"), strict=False) == []
