"""`compiled` keeps the import working where numba has nowhere to write its cache."""

from __future__ import annotations

import numba
import numpy as np
import pytest
from numba.core.dispatcher import Dispatcher

from pointad_pipe.pipeline.compiled import compiled


def double_all(x: np.ndarray) -> np.ndarray:
    out = np.empty_like(x)
    for i in range(len(x)):
        out[i] = 2 * x[i]
    return out


def test_cached_where_numba_can_write() -> None:
    fn = compiled(double_all)
    assert isinstance(fn, Dispatcher) and fn._cache.__class__.__name__ != "NullCache"
    np.testing.assert_array_equal(fn(np.arange(4.0)), [0.0, 2.0, 4.0, 6.0])


def test_compiled_per_process_when_no_cache_location(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self: Dispatcher) -> None:
        raise RuntimeError(f"cannot cache function {self.py_func.__name__!r}: no locator available for file 'x.py'")

    monkeypatch.setattr(Dispatcher, "enable_caching", refuse)
    with pytest.raises(RuntimeError, match="no locator"):
        numba.njit(cache=True)(double_all)  # what a plain njit would do at import
    fn = compiled(double_all)
    assert fn._cache.__class__.__name__ == "NullCache"
    np.testing.assert_array_equal(fn(np.arange(3, dtype=np.int64)), [0, 2, 4])
