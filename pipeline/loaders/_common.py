"""Small helpers every loader shares: hidden-file rules, sorted listings, name lists, shapes in messages."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path


def is_hidden(path: Path) -> bool:
    """True for dotfiles, which covers the macOS `._*` resource forks shipped in some archives."""
    return path.name.startswith(".")


def has_hidden_part(rel: Path) -> bool:
    """True when any part of a relative path is hidden (a file inside `.git/`, `.cache/`, ...)."""
    return any(part.startswith(".") for part in rel.parts)


def visible_dirs(folder: Path) -> list[Path]:
    """Non-hidden sub-folders, sorted by name; empty when `folder` is not a directory."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_dir() and not is_hidden(p))


def visible_files(folder: Path, suffixes: Iterable[str]) -> list[Path]:
    """Non-hidden files of `folder` whose suffix (case-insensitive) is one of `suffixes`, sorted by name.

    `os.scandir` and name strings: a rerun lists every sample's folder, 10,000 files in a blink.
    """
    wanted = {s.lower() for s in suffixes}
    with os.scandir(folder) as entries:
        names = sorted(e.name for e in entries if e.is_file() and not e.name.startswith(".")
                       and os.path.splitext(e.name)[1].lower() in wanted)  # noqa: PTH122 - plain names, no Paths
    return [folder / n for n in names]


def as_names(names: Iterable[str] | None) -> list[str] | None:
    """Normalise a class or split selection; a bare string means one name, not its letters."""
    if names is None:
        return None
    return [names] if isinstance(names, str) else list(names)


def shape_text(shape: tuple[int, ...]) -> str:
    """`(800, 600, 3)` as `800×600×3`, the way the error messages show shapes."""
    return "×".join(str(s) for s in shape)
