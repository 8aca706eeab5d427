"""The vendored contract checker must be the team's current one whenever that one is reachable."""

from __future__ import annotations

import pytest

from ..helpers import ROOT, SHARED_CHECKER


def test_snapshot_matches_shared_checker() -> None:
    if not SHARED_CHECKER.is_file():
        pytest.skip(f"no shared checker at {SHARED_CHECKER} (a lone clone): the snapshot is used")
    snapshot = ROOT / "tests" / "contract" / "check_cache.py"
    assert snapshot.read_bytes() == SHARED_CHECKER.read_bytes(), "refresh tests/contract/check_cache.py"


def test_store_md_copy_matches_shared_contract() -> None:
    """docs/STORE.md is the repo's copy of the cache contract; it must be the team's current text."""
    shared = ROOT.parent / "shared" / "docs" / "STORE.md"
    if not shared.is_file():
        pytest.skip(f"no shared contract at {shared} (a lone clone): docs/STORE.md is the reference")
    assert (ROOT / "docs" / "STORE.md").read_bytes() == shared.read_bytes(), "refresh docs/STORE.md"
