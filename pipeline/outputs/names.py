"""File names for people's outputs."""

from __future__ import annotations


def safe_name(sample_id: str) -> str:
    """A sample id as one file name: path separators and odd characters become `_`."""
    return "".join(ch if ch.isalnum() or ch in "-." else "_" for ch in sample_id).strip("._") or "sample"
