"""The vendored contract checker must be the team's current one whenever that one is reachable."""

from __future__ import annotations

import pytest

from .conftest import ROOT, SHARED_CHECKER


def test_snapshot_matches_shared_checker() -> None:
    if not SHARED_CHECKER.is_file():
        pytest.skip(f"no shared checker at {SHARED_CHECKER} (a lone clone): the snapshot is used")
    snapshot = ROOT / "tests" / "contract" / "check_cache.py"
    assert snapshot.read_bytes() == SHARED_CHECKER.read_bytes(), "refresh tests/contract/check_cache.py"
