"""Who may use a dataset's cache at the same time (STORE.md "Concurrency").

- Writers (the stages, `convert`) hold `<dataset>.zarr.write.lock` exclusively: a second writer
  stops at once with a message naming the first (its command line, pid, host, start time).
- Readers (`train`, `evaluate`, `benchmark`) share `<dataset>.zarr.read.lock`; writers only append,
  so they run beside a writer. `gc` deletes rows, so it holds both locks exclusively.
`flock` locks die with their process (a kill included), so a crash never leaves a stale lock.
Locks are re-entrant within a process (encode runs render runs clean). Object stores have no
`flock`: there, no lock is taken (documented as a known limit).
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import datetime, timezone
from pathlib import Path

from ..errors import PointadError

_HELD: dict[tuple[str, int], int] = {}  # (lock path, mode) -> depth in this process


class CacheBusy(PointadError, RuntimeError):
    """Another command holds a lock this one needs."""


def lock_path(cache_root: str, dataset: str, kind: str) -> Path | None:
    """`<cache_root>/<dataset>.zarr.<kind>.lock` for a local cache; None for an object store."""
    root = cache_root[len("file://"):] if cache_root.startswith("file://") else cache_root
    if "://" in root:
        return None
    return Path(root) / f"{dataset}.zarr.{kind}.lock"


def _holder(path: Path) -> str:
    """Who holds a lock, as its file says ('another command' while the holder is still writing it)."""
    with suppress(OSError, ValueError):
        info = json.loads(path.read_text() or "{}")
        if info:
            return (f"`{info['command']}` (pid {info['pid']} on {info['host']}, started {info['started']})")
    return "another command"


@contextmanager
def _flock(path: Path | None, mode: int, command: str, busy: str) -> Iterator[None]:
    if path is None:
        yield
        return
    key = (str(path), mode)
    if _HELD.get(key):
        _HELD[key] += 1
        try:
            yield
        finally:
            _HELD[key] -= 1
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CacheBusy(busy.format(holder=_holder(path))) from None
        if mode == fcntl.LOCK_EX:
            os.ftruncate(fd, 0)
            os.write(fd, json.dumps({"command": command, "pid": os.getpid(), "host": socket.gethostname(),
                                     "started": datetime.now(timezone.utc).isoformat(timespec="seconds")}).encode())
        _HELD[key] = 1
        try:
            yield
        finally:
            _HELD.pop(key, None)
            if mode == fcntl.LOCK_EX:
                os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # closing releases the flock


def command_line() -> str:
    """This process's command, as the other side of a lock sees it (`pointad-pipe encode ...`)."""
    if not sys.argv or not sys.argv[0]:
        return "python"
    name = Path(sys.argv[0]).name
    program = "pointad-pipe" if name in ("pointad-pipe", "main.py", "__main__.py") else name
    return " ".join([program, *sys.argv[1:]])


@contextmanager
def writing(cache_root: str, dataset: str, enabled: bool = True) -> Iterator[None]:
    """Hold the dataset's write lock, or stop at once naming the command that holds it (no-op unless `enabled`)."""
    busy = (f"the cache of {dataset!r} is being written by {{holder}}; wait for it to finish "
            f"(two writers would compute the same rows twice)")
    path = lock_path(cache_root, dataset, "write") if enabled else None
    with _flock(path, fcntl.LOCK_EX, command_line(), busy):
        yield


@contextmanager
def reading(cache_root: str, dataset: str) -> Iterator[None]:
    """Share the dataset's read lock (only `gc` excludes readers)."""
    busy = f"`gc` is compacting the cache of {dataset!r} ({{holder}}); run this again when it is done"
    with _flock(lock_path(cache_root, dataset, "read"), fcntl.LOCK_SH, command_line(), busy):
        yield


@contextmanager
def exclusive(cache_root: str, dataset: str) -> Iterator[None]:
    """Both locks exclusively (gc): no writer and no reader may be running."""
    with writing(cache_root, dataset):
        busy = (f"the cache of {dataset!r} is being read by a train, evaluate or benchmark command "
                f"({{holder}}); gc deletes rows, so run it when they are done")
        with _flock(lock_path(cache_root, dataset, "read"), fcntl.LOCK_EX, command_line(), busy):
            yield
