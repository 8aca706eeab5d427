"""`data_catalog.yaml` -> a typed, validated `Catalog`.

The catalog is the one config file. Relative paths in it are relative to the file itself, so a
catalog can be moved together with its data. Stage overrides (`clean:`, `render:`) are kept as
plain dicts here and validated by each stage's own config builder, which knows its fields.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import CatalogError

FORMATS = ("mvtec3d", "eyecandies", "real3d", "files")
TOP_KEYS = {"cache", "datasets"}
DATASET_KEYS = {"format", "root", "classes", "splits", "loader", "clean", "render", "encode", "generate"}


@dataclass(frozen=True)
class DatasetEntry:
    """One dataset of the catalog.

    Attributes:
        name: the key under `datasets:`.
        format: one of `FORMATS`.
        root: absolute path of the dataset's root folder (may not exist yet).
        classes: classes to use, or None for all found.
        splits: splits to use, or None for all found.
        loader: keyword options for the format's loader.
        overrides: per-stage config overrides, e.g. {"clean": {...}, "render": {...}}.
        generate: for synthetic entries, `make_synthetic` options used when `root` is missing.
    """

    name: str
    format: str
    root: Path
    classes: tuple[str, ...] | None = None
    splits: tuple[str, ...] | None = None
    loader: dict[str, Any] = field(default_factory=dict)
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    generate: dict[str, Any] | None = None

    def require_root(self) -> Path:
        """Return the root, or raise a `CatalogError` that names the missing path."""
        if not self.root.exists():
            hint = " (a synthetic entry: any stage generates it)" if self.generate else ""
            raise CatalogError(f"datasets.{self.name}.root: {self.root} does not exist{hint}")
        return self.root


@dataclass(frozen=True)
class Catalog:
    """The parsed catalog: a cache root and named datasets."""

    path: Path
    cache: str
    datasets: dict[str, DatasetEntry]

    def dataset(self, name: str) -> DatasetEntry:
        """Look a dataset up by name; an unknown name lists the known ones."""
        if name not in self.datasets:
            raise CatalogError(f"{self.path}: no dataset {name!r}; the catalog has {sorted(self.datasets)}")
        return self.datasets[name]


def _resolve(base: Path, value: str) -> str:
    """Resolve a path relative to the catalog's folder; URLs (`s3://...`) pass through."""
    if "://" in value:
        return value
    p = Path(value).expanduser()
    return str(p if p.is_absolute() else (base / p).resolve())


def _str_list(value: object, where: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise CatalogError(f"{where}: expected a list of names, got {value!r}")
    return tuple(value)


def _mapping(value: object, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise CatalogError(f"{where}: expected a mapping, got {type(value).__name__}")
    return dict(value)


def _entry(name: str, raw: object, base: Path) -> DatasetEntry:
    where = f"datasets.{name}"
    raw = _mapping(raw, where)
    unknown = sorted(set(raw) - DATASET_KEYS)
    if unknown:
        raise CatalogError(f"{where}: unknown key {unknown[0]!r}; allowed keys are {sorted(DATASET_KEYS)}")
    for key in ("format", "root"):
        if not isinstance(raw.get(key), str) or not raw[key]:
            raise CatalogError(f"{where}.{key}: missing (a string is required)")
    if raw["format"] not in FORMATS:
        raise CatalogError(f"{where}.format: {raw['format']!r} is not one of {list(FORMATS)}")
    generate = raw.get("generate")
    return DatasetEntry(
        name=name,
        format=raw["format"],
        root=Path(_resolve(base, raw["root"])),
        classes=_str_list(raw.get("classes"), f"{where}.classes"),
        splits=_str_list(raw.get("splits"), f"{where}.splits"),
        loader=_mapping(raw.get("loader"), f"{where}.loader"),
        overrides={s: _mapping(raw.get(s), f"{where}.{s}") for s in ("clean", "render", "encode")},
        generate=None if generate is None else _mapping(generate, f"{where}.generate"),
    )


def load_catalog(path: str | Path, cache: str | None = None) -> Catalog:
    """Parse and validate a catalog file; `cache` (e.g. from `--cache`) overrides its `cache:`.

    Raises:
        CatalogError: the file is missing or malformed; the message names the key or path.
    """
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise CatalogError(f"catalog {path} not found")
    try:
        raw = yaml.safe_load(path.read_text())
    except UnicodeDecodeError:
        raise CatalogError(f"{path}: not a text file (a catalog is YAML)") from None
    except yaml.YAMLError as exc:
        raise CatalogError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from exc
    raw = _mapping(raw, str(path))
    unknown = sorted(set(raw) - TOP_KEYS)
    if unknown:
        raise CatalogError(f"{path}: unknown key {unknown[0]!r}; allowed keys are {sorted(TOP_KEYS)}")
    base = path.parent
    cache_root = cache if cache is not None else raw.get("cache")
    if cache_root is None or cache_root == "":
        raise CatalogError(f"{path}: `cache:` missing (the cache root folder or URL)")
    if not isinstance(cache_root, str):
        raise CatalogError(f"{path}: `cache:` must be a folder path or URL, got {cache_root!r}")
    datasets = _mapping(raw.get("datasets"), f"{path}: datasets")
    entries = {str(name): _entry(str(name), value, base) for name, value in datasets.items()}
    if re.match(r"^[a-z][a-z0-9+.-]*://[^/]*@", cache_root):
        raise CatalogError(f"{path}: `cache:` carries credentials before '@': the cache URL is printed and logged, "
                           f"so give them to fsspec instead (for s3://, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                           f"in the environment, or a profile)")
    resolved = _resolve(base if cache is None else Path.cwd(), cache_root)
    if "://" not in resolved and Path(resolved).is_file():
        raise CatalogError(f"{path}: `cache:` {resolved} is a file; it must be a folder (or a URL)")
    return Catalog(path=path, cache=resolved, datasets=entries)
