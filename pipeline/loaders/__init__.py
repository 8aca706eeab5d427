"""Loaders for the real dataset layouts, found by the catalog's `format:` name."""

from __future__ import annotations

import importlib
from typing import Any

from ..errors import CatalogError
from .base import LABEL_ANOMALOUS, LABEL_GOOD, LABEL_UNKNOWN, Loader, Sample, SampleRef

# format name -> (module, class); modules are imported on demand so that `--help` stays instant.
FORMATS: dict[str, tuple[str, str]] = {
    "mvtec3d": ("mvtec3d", "MVTec3DLoader"),
    "eyecandies": ("eyecandies", "EyecandiesLoader"),
    "real3d": ("real3d", "Real3DLoader"),
    "files": ("files", "FilesLoader"),
}


def get_loader(fmt: str, options: dict[str, Any] | None = None) -> Loader:
    """Build the loader of a catalog `format`, passing its `loader:` options.

    Raises:
        CatalogError: unknown format, or an option the loader does not take.
    """
    if fmt not in FORMATS:
        raise CatalogError(f"unknown format {fmt!r}; expected one of {sorted(FORMATS)}")
    module, cls = FORMATS[fmt]
    loader_cls = getattr(importlib.import_module(f".{module}", __name__), cls)
    try:
        return loader_cls(**(options or {}))
    except TypeError as exc:  # an unexpected keyword: name it
        raise CatalogError(f"format {fmt!r}: bad loader option ({exc})") from exc


__all__ = [
    "FORMATS", "LABEL_ANOMALOUS", "LABEL_GOOD", "LABEL_UNKNOWN", "Loader", "Sample", "SampleRef", "get_loader",
]
