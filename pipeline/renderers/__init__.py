"""Render backends behind one interface (`base.Backend`), found by name, one instance per process.

One instance per process because Open3D's legacy Visualizer leaks about 4.5 MB per create/destroy
cycle (ENVIRONMENT.md).
"""

from __future__ import annotations

import importlib

from .base import Backend, Camera, Projection, project

BACKENDS: dict[str, tuple[str, str]] = {
    "splat": ("splat", "SplatBackend"),
    "open3d": ("open3d_backend", "Open3DBackend"),
    "pyrender": ("pyrender_backend", "PyrenderBackend"),
}
_INSTANCES: dict[str, Backend] = {}


def get_backend(name: str) -> Backend:
    """The process-wide instance of a backend.

    Raises:
        ValueError: unknown name (lists the known ones).
        ImportError: an optional backend whose package is not installed (says what to install).
    """
    if name not in BACKENDS:
        raise ValueError(f"unknown render backend {name!r}; expected one of {sorted(BACKENDS)}")
    if name not in _INSTANCES:
        module, cls = BACKENDS[name]
        _INSTANCES[name] = getattr(importlib.import_module(f".{module}", __name__), cls)()
    return _INSTANCES[name]


__all__ = ["BACKENDS", "Backend", "Camera", "Projection", "get_backend", "project"]
