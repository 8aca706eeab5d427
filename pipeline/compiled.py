"""`compiled`: numba's `njit` as the render's loops use it, cached on disk where that is possible."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import numba

F = TypeVar("F", bound=Callable)


def compiled(fn: F) -> F:
    """`numba.njit(nogil=True)`, with the machine code cached beside the module (or in numba's user cache).

    Without the cache every process compiles its loops again (about a second); with it the first
    render of an install pays that once. numba refuses `cache=True` at import when it has nowhere
    to write (a read-only install and no writable home): then the loops are compiled per process
    rather than the import failing. nogil: views may run in several threads at once.
    """
    try:
        return numba.njit(cache=True, nogil=True)(fn)
    except RuntimeError:  # "cannot cache function ...: no locator available"
        return numba.njit(nogil=True)(fn)
