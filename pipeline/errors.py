"""Project exceptions. Each also subclasses a builtin, so callers can catch either."""

from __future__ import annotations


class PointadError(Exception):
    """Base class of every error the pipeline raises on purpose."""


class CatalogError(PointadError, ValueError):
    """`data_catalog.yaml` is malformed: names the key or path at fault."""


class SampleError(PointadError, ValueError):
    """One input sample cannot be used; the message names the file and the problem.

    The runner turns it into that row's `error` and goes on with the other rows.
    """

    def __init__(self, path: object, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class CacheMissing(PointadError, FileNotFoundError):
    """A stage's upstream group is absent from the cache."""


class WeightsMissing(PointadError, FileNotFoundError):
    """Model weights are needed but cannot be had (no file, no network)."""
