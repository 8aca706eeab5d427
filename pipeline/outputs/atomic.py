"""Write a file so that a kill never leaves it half-written: a temporary sibling, then a rename.

Readers of a run folder rely on it (a `metrics.json` or `prompts.pt` that exists is complete).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: Path, keep_suffix: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling of `path` to write; it replaces `path` when the block succeeds.

    The temporary name is `<name>.tmp`, or `<stem>.tmp<suffix>` with `keep_suffix` for writers that
    pick the format from the suffix (Open3D). torch archives name their root folder after the file,
    so a checkpoint's bytes depend on this name: keep it stable.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.tmp{path.suffix}" if keep_suffix else f"{path.name}.tmp")
    try:
        yield tmp
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: Path, text: str) -> Path:
    """`text` (UTF-8) into `path`, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8", newline="")
    return Path(path)
