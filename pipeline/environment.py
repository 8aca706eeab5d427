"""What the pipeline needs from the machine, checked once before any work (not once per row).

Open3D's wheel links the system's libusb; without it every row used to fail with the same
`ImportError: libusb-1.0.so.0`, 48 lines for 48 rows. Each stage calls `require_open3d` first.
"""

from __future__ import annotations

from .errors import PointadError, first_line


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
