"""Fixtures shared by end-to-end modules."""

from __future__ import annotations

import pytest

from ..walk_through import WalkThrough, run_walk_through


@pytest.fixture(scope="session")
def readme_walk_through(tmp_path_factory: pytest.TempPathFactory) -> WalkThrough:
    """The README's CI-marked block, run once per session in a fresh folder (`run_walk_through`)."""
    return run_walk_through(tmp_path_factory.mktemp("walk_through"))
