"""The doctor job: what this machine has for the pipeline, each with what to do when it is missing.

Nothing is downloaded and no model is loaded: versions from package metadata, imports tried once,
weights looked for where `encode` looks (the weights folder, open_clip's cache), and the cache
root written to and removed.
"""

from __future__ import annotations

import importlib
import uuid
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, requires, version
from pathlib import Path

from ..catalog import Catalog
from ..environment import torch_pair_problem
from ..errors import first_line


@dataclass(frozen=True)
class Check:
    """One line of the doctor's report: what, whether usable, the detail, and the fix when not."""

    name: str
    ok: bool
    detail: str
    fix: str = ""
    required: bool = True


def _version(name: str) -> str | None:
    for dist in (name, f"{name}-cpu"):  # open3d ships as `open3d-cpu` too
        try:
            return version(dist)
        except PackageNotFoundError:
            continue
    return None


def _importable(module: str) -> str:
    """'' when `module` imports, else why not (one line)."""
    try:
        importlib.import_module(module)
    except Exception as exc:  # noqa: BLE001 - any failure to import is the answer
        return first_line(exc)
    return ""


def packages() -> list[Check]:
    """The Python packages and whether they import."""
    out = []
    for dist, module, fix in (("torch", "torch", "pip install torch==2.14.1 torchvision==0.29.1 (together)"),
                              ("torchvision", "torchvision", "pip install torchvision matching torch"),
                              ("open_clip_torch", "open_clip", "pip install open_clip_torch"),
                              ("open3d", "open3d", "apt-get install libusb-1.0-0, then pip install open3d"),
                              ("zarr", "zarr", "pip install 'zarr>=3'"),
                              ("dask", "dask.distributed", "pip install 'dask[distributed]'")):
        why = _importable(module)
        if dist == "torchvision" and not why and _version("torch"):  # imports, yet built for another torch
            why = torch_pair_problem(_version("torch") or "", _version(dist) or "", requires(dist) or [])
        out.append(Check(dist, not why, f"{_version(dist) or 'not installed'}" + (f": {why}" if why else ""), fix))
    return out


def devices() -> list[Check]:
    """CUDA devices (none is fine: everything runs on CPU)."""
    import torch

    if not torch.cuda.is_available():
        return [Check("cuda", False, "no CUDA device: every stage runs on CPU", required=False)]
    names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return [Check("cuda", True, ", ".join(names))]


def renderers() -> list[Check]:
    """The render backends that can be used here."""
    from ..renderers import BACKENDS, get_backend

    out = []
    for name in sorted(BACKENDS):
        try:
            get_backend(name)  # what `render --backend NAME` does first
            why = ""
        except Exception as exc:  # noqa: BLE001 - any failure to start the backend is the answer
            why = first_line(exc)
        out.append(Check(f"renderer {name}", not why, why or "usable", required=name == "splat"))
    return out


def weights() -> list[Check]:
    """Real CLIP weights found locally (the `tiny` model needs none)."""
    from ...model.registry import MODELS
    from ..stages.weights import _open_clip_file, weights_dir

    out = []
    for spec in MODELS.values():
        if spec.random_init:
            continue
        local = weights_dir() / (spec.weights_file or "")
        found = str(local) if local.is_file() else _open_clip_file(spec, download=False)
        out.append(Check(f"weights {spec.name}", bool(found), found or "not found",
                         f"put {spec.weights_file} in {weights_dir().resolve()} (README: Getting CLIP weights)",
                         required=False))
    return out


def _url_root(url: str) -> Check:
    """An fsspec cache root: its filesystem package is there and a probe object can be written and removed."""
    import fsspec

    probe = f"{url.rstrip('/')}/.doctor-{uuid.uuid4().hex}"
    try:
        fs, path = fsspec.core.url_to_fs(probe)
        fs.pipe_file(path, b"ok")
        fs.rm_file(path)
    except ImportError as exc:  # fsspec names the package: "Install s3fs to access S3"
        return Check("cache", False, f"{url}: {first_line(exc)}", "pip install the filesystem's package "
                     "(s3fs for s3://, gcsfs for gs://) here and on every worker")
    except Exception as exc:  # noqa: BLE001 - any store error: credentials, endpoint, bucket, permissions
        return Check("cache", False, f"{url}: {first_line(exc)}",
                     "check the bucket and the credentials fsspec sees (for s3://: AWS_* variables, a profile, "
                     "AWS_ENDPOINT_URL for a local server)")
    return Check("cache", True, f"{url} (writable)")


def cache_root(catalog: Catalog) -> list[Check]:
    """The catalog's cache root can be written: a local folder, or an fsspec URL probed with one object."""
    if "://" in catalog.cache:
        return [_url_root(catalog.cache)]
    root = Path(catalog.cache)
    probe = root / f".doctor-{uuid.uuid4().hex}"
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        return [Check("cache", False, f"{root}: {first_line(exc)}", "point `cache:` at a writable folder")]
    return [Check("cache", True, f"{root} (writable)")]


def examine(catalog: Catalog | None) -> list[Check]:
    """Every check, in the order they are printed."""
    checks = packages()
    if all(c.ok for c in checks if c.name == "torch"):
        checks += devices()
    checks += renderers() + weights()
    return checks + (cache_root(catalog) if catalog is not None else [])
