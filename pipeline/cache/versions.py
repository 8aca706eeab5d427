"""Sample versions (STORE.md "Samples and their versions"): a digest of the files a sample is made of.

Each file is hashed once and its SHA-256 remembered by (path below the dataset root, size,
mtime_ns) in the cache's `files/` memo, so a rerun over an unchanged tree only `stat`s (the DVC
idea). The root itself is in no key: a moved or copied dataset has new mtimes, is hashed once
more, and keeps every version.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import zarr

MEMO_GROUP = "files"


class Sourced(Protocol):
    """What a sample's version is made of (a loader's `SampleRef` is one)."""

    label: int
    defect: str
    files: dict[str, str]


@dataclass
class FileMemo:
    """{relative path: [size, mtime_ns, sha256]}; `hashed` counts the files actually read this run."""

    entries: dict[str, list] = field(default_factory=dict)
    hashed: int = 0
    changed: bool = False

    @classmethod
    def load(cls, root: zarr.Group | None) -> FileMemo:
        """The dataset's memo (empty when the cache has none yet, or for no cache)."""
        if root is None or MEMO_GROUP not in root:
            return cls()
        return cls(dict(root[MEMO_GROUP].attrs.get("memo", {})))

    def save(self, root: zarr.Group) -> None:
        """Store the memo if this run learnt anything (callers hold the dataset's write lock)."""
        if self.changed:
            root.require_group(MEMO_GROUP).attrs["memo"] = self.entries
            self.changed = False

    def sha256(self, path: str, key: str) -> str:
        """The file's SHA-256: the memo's when size and mtime match, else read and remembered; `absent` if missing."""
        try:
            st = os.stat(path)  # noqa: PTH116 - 30,000 files per rerun at 10k samples: no Path objects
        except OSError:
            return "absent"
        known = self.entries.get(key)
        if known is not None and known[0] == st.st_size and known[1] == st.st_mtime_ns:
            return str(known[2])
        with open(path, "rb") as fh:
            digest = hashlib.file_digest(fh, "sha256").hexdigest()
        self.hashed += 1
        self.entries[key] = [st.st_size, st.st_mtime_ns, digest]
        self.changed = True
        return digest


def relative(path: str, base: Path) -> str:
    """A file's memo key: its path below the dataset root (as given, for a file outside it)."""
    prefix = f"{base}{os.sep}"
    if path.startswith(prefix):  # the common case, by string: a rerun asks this 30,000 times at 10k samples
        return path[len(prefix):].replace(os.sep, "/")
    rel = os.path.relpath(path, base)
    return path if rel.startswith("..") else Path(rel).as_posix()


def sample_version(ref: Sourced, base: Path, memo: FileMemo) -> str:
    """32 hex characters over the sample's label, defect and each role's file hash (STORE.md's recipe)."""
    lines = [f"label\t{ref.label}", f"defect\t{ref.defect}"]
    lines += [f"file\t{role}\t{memo.sha256(path, relative(path, base))}" for role, path in sorted(ref.files.items())]
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:32]


def sample_versions(refs: Sequence[Sourced], base: Path, memo: FileMemo) -> list[str]:
    """Every sample's version, in order."""
    return [sample_version(ref, base, memo) for ref in refs]

