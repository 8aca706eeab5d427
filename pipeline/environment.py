"""What the pipeline needs from the machine, checked once before any work (not once per row).

Open3D's wheel links the system's libusb; without it every row used to fail with the same
`ImportError: libusb-1.0.so.0`, 48 lines for 48 rows. Each stage calls `require_open3d` first.
Likewise a torchvision built for another torch breaks open_clip's import in every encode worker:
`require_torch_stack` runs before encode, train, evaluate and predict load a model.
"""

from __future__ import annotations

from functools import lru_cache

from .errors import PointadError, first_line

TORCH_FIX = "pip install torch==2.14.1 torchvision==0.29.1 (a matching pair; see README, Install)"


class EnvironmentProblem(PointadError, ImportError):
    """A library the pipeline needs cannot be loaded; the message names the fix."""


def open3d_problem(exc: BaseException) -> EnvironmentProblem:
    """The one line for an Open3D that does not import, with the fix for the known causes."""
    text = first_line(exc)
    if "libusb" in text:
        fix = "install the system library: apt-get install libusb-1.0-0 (or your system's libusb 1.0 package)"
    elif "libGL" in text or "libEGL" in text:
        fix = "install the system GL libraries: apt-get install libgl1 libegl1"
    else:
        fix = "reinstall it: pip install open3d (see README, Install)"
    return EnvironmentProblem(f"Open3D cannot be loaded ({text}): {fix}")


def require_open3d() -> None:
    """Import Open3D once, up front; raise `EnvironmentProblem` naming the fix if it cannot load."""
    try:
        import open3d  # noqa: F401
    except (ImportError, OSError) as exc:
        raise open3d_problem(exc) from None


def torch_pair_problem(torch_version: str, torchvision_version: str, torchvision_requires: list[str]) -> str:
    """Why this torchvision does not fit this torch, by torchvision's own requirement on torch ('' if it fits)."""
    from packaging.requirements import Requirement
    from packaging.version import Version

    for text in torchvision_requires:
        req = Requirement(text)
        if req.name == "torch" and (req.marker is None or req.marker.evaluate()):
            if not req.specifier.contains(Version(torch_version).base_version, prereleases=True):
                return (f"torchvision {torchvision_version} needs torch{req.specifier}, but torch {torch_version} "
                        f"is installed")
    return ""


def torch_versions() -> dict[str, str]:
    """torch, torchvision and open_clip's versions, checked to fit (package metadata only: no import, ~1 ms).

    Encode calls it before its clean and render stages, so a mismatch stops it before any work.
    """
    from importlib.metadata import PackageNotFoundError, requires, version

    try:
        versions = {name: version(name) for name in ("torch", "torchvision", "open_clip_torch")}
    except PackageNotFoundError as exc:
        extra = " and pip install open_clip_torch" if exc.name == "open_clip_torch" else ""
        raise EnvironmentProblem(f"{exc.name} is not installed: {TORCH_FIX}{extra}") from None
    why = torch_pair_problem(versions["torch"], versions["torchvision"], requires("torchvision") or [])
    if why:
        raise EnvironmentProblem(f"{why}: {TORCH_FIX}")
    return versions


@lru_cache(maxsize=1)
def require_torch_stack() -> None:
    """torch, torchvision and open_clip installed, matching, and importable; else one `EnvironmentProblem`."""
    versions = torch_versions()
    try:
        import open_clip  # noqa: F401  (imports torch and torchvision)
    except Exception as exc:  # noqa: BLE001 - any failure here stops every model load the same way
        raise EnvironmentProblem(f"torch {versions['torch']} with torchvision {versions['torchvision']} cannot be "
                                 f"loaded ({first_line(exc)}): {TORCH_FIX}") from None
