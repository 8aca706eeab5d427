"""The catalog: parsing, defaults, and errors that name the key or path at fault."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pointad_pipe.pipeline.catalog import load_catalog
from pointad_pipe.pipeline.errors import CatalogError
from pointad_pipe.pipeline.jobs.identity import clean_config, render_config

from ..helpers import ROOT


def write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "cat.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_shipped_catalog_parses_with_all_entries() -> None:
    cat = load_catalog(ROOT / "data_catalog.yaml")
    assert {"synthetic", "mvtec3d", "eyecandies", "real3d"} <= set(cat.datasets)
    assert cat.datasets["mvtec3d"].format == "mvtec3d"
    assert cat.datasets["synthetic"].generate is not None
    assert cat.cache == str((ROOT / "cache").resolve())
    for entry in cat.datasets.values():  # every shipped override is valid
        clean_config(entry)
        render_config(entry)


def test_relative_paths_resolve_against_the_catalog(tmp_path: Path) -> None:
    path = write(tmp_path, {"cache": "c", "datasets": {"a": {"format": "real3d", "root": "data/r"}}})
    cat = load_catalog(path)
    assert cat.cache == str(tmp_path / "c")
    assert cat.dataset("a").root == tmp_path / "data/r"
    assert load_catalog(path, cache="s3://bucket/x").cache == "s3://bucket/x"


@pytest.mark.parametrize("url", ["s3://AKIAXYZ:hunter2secret@bucket/c", "https://user:hunter2secret@host/c"])
def test_a_cache_url_with_credentials_is_refused_without_echoing_them(tmp_path: Path, url: str) -> None:
    """The cache URL is printed after every stage, so credentials in it would land in every log."""
    path = write(tmp_path, {"cache": url, "datasets": {}})
    for how in ({}, {"cache": url}):
        with pytest.raises(CatalogError, match="carries credentials") as exc:
            load_catalog(path, **how)
        assert "hunter2secret" not in str(exc.value) and "AWS_ACCESS_KEY_ID" in str(exc.value)


@pytest.mark.parametrize(("data", "needle"), [
    ({"cache": "c", "datasets": {}, "extra": 1}, "'extra'"),
    ({"cache": "c", "datasets": {"a": {"format": "mvtec3d", "root": "r", "colour": 1}}},
     "datasets.a: unknown key 'colour'"),
    ({"cache": "c", "datasets": {"a": {"format": "obj", "root": "r"}}}, "datasets.a.format"),
    ({"cache": "c", "datasets": {"a": {"format": "mvtec3d"}}}, "datasets.a.root"),
    ({"datasets": {}}, "cache"),
    ({"cache": "c", "datasets": {"a": {"format": "mvtec3d", "root": "r", "classes": "bagel"}}}, "datasets.a.classes"),
])
def test_bad_catalogs_name_the_key(tmp_path: Path, data: dict, needle: str) -> None:
    with pytest.raises(CatalogError, match=needle.replace(".", r"\.").replace("'", "'")):
        load_catalog(write(tmp_path, data))


def test_stage_override_with_unknown_key_is_named(tmp_path: Path) -> None:
    cat = load_catalog(write(tmp_path, {"cache": "c", "datasets": {
        "a": {"format": "mvtec3d", "root": "r", "clean": {"plane_dist": 1}, "render": {"vews": []}}}}))
    with pytest.raises(CatalogError, match=r"datasets\.a\.clean: unknown key 'plane_dist'"):
        clean_config(cat.dataset("a"))
    with pytest.raises(CatalogError, match=r"datasets\.a\.render: unknown key 'vews'"):
        render_config(cat.dataset("a"))


def test_bad_paths_are_named(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="nope.yaml"):
        load_catalog(tmp_path / "nope.yaml")
    cat = load_catalog(write(tmp_path, {"cache": "c", "datasets": {"a": {"format": "real3d", "root": "missing"}}}))
    with pytest.raises(CatalogError, match=str(tmp_path / "missing")):
        cat.dataset("a").require_root()
    with pytest.raises(CatalogError, match="no dataset 'b'"):
        cat.dataset("b")


def test_format_defaults_and_overrides(tmp_path: Path) -> None:
    cat = load_catalog(write(tmp_path, {"cache": "c", "datasets": {
        "m": {"format": "mvtec3d", "root": "r"},
        "r": {"format": "real3d", "root": "r", "render": {"views": [["x", 0], ["y", 90]], "visibility": "paper"}},
        "e": {"format": "eyecandies", "root": "r"}}}))
    m, r, e = (render_config(cat.dataset(k)) for k in "mre")
    assert [a for a, _ in m.views] == ["x"] * 5 + ["y"] * 4 and m.pre_rotation == (("x", 180.0),)
    assert [d for _, d in m.views] == [-45, -15, 0, 15, 45, -30, -15, 15, 30]
    assert r.views == (("x", 0.0), ("y", 90.0)) and r.visibility == "paper"
    assert e.pre_rotation == (("x", 45.0),) and [d for _, d in e.views][:5] == [-30, -15, 0, 10, 20]
    assert clean_config(cat.dataset("m")).plane == "border"
    assert clean_config(cat.dataset("r")).plane == "none" and clean_config(cat.dataset("r")).max_points == 112_896
    # the CLI overrides the catalog
    assert render_config(cat.dataset("r"), {"visibility": "surface", "backend": None}).visibility == "surface"


def test_a_bad_clean_value_stops_before_any_data_is_generated(tmp_path: Path) -> None:
    from pointad_pipe.pipeline.cache.runner import RunOptions
    from pointad_pipe.pipeline.jobs.clean import run_clean

    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump({"cache": "cache", "datasets": {"s": {
        "format": "mvtec3d", "root": "data/mvtec3d", "generate": {"seed": 0}, "clean": {"units": "relative"}}}}))
    cat = load_catalog(path)
    with pytest.raises(CatalogError, match=r"datasets\.s\.clean: units must be auto, m or mm, got 'relative'"):
        run_clean(cat, cat.dataset("s"), RunOptions(progress=False))
    assert not (tmp_path / "data").exists()
