"""Rows x stage -> tasks: serial in-process, or parallel with dask.distributed; resume and progress.

A task is a module-level function `task(job) -> [(row, error), ...]` that reads its inputs,
computes and writes its rows' data, returning one-line outcomes ('' for success); the driver marks
each row done or failed as the outcomes arrive (`rows.mark`: the row columns have one writer). A job
lists the rows it covers in `job["rows"]`; which rows run at all is the stage's plan
(`rows.plan`). A worker that dies (segfault, out of memory) fails only its own rows.
"""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tqdm import tqdm

from ..errors import CorruptRow, DiskFull, Interrupted, OptionError, one_line
from . import rows

Task = Callable[[dict[str, Any]], list[tuple[int, str]]]
Log = Callable[[str], None]


@dataclass(frozen=True)
class RunOptions:
    """Speed and behaviour knobs of a stage run: never fingerprinted.

    `log` receives one line per failed row as it happens (the CLI prints them above the progress
    bar); None keeps the library quiet. `progress` shows progress bars on stderr. `retry_failed`
    retries rows whose failure is remembered; `dry_run` plans every stage and does nothing.
    """

    workers: int = 0
    scheduler: str | None = None
    log: Log | None = None
    progress: bool = True
    retry_failed: bool = False
    dry_run: bool = False

    def __post_init__(self) -> None:
        if self.workers < 0:  # a negative count once started no worker and waited forever
            raise OptionError("workers", self.workers, "must be 0 (run in this process) or more")


@dataclass
class RunReport:
    """What a stage run did (or, dry, would do): counts, and every failed row with its reason."""

    stage: str
    fingerprint: str
    url: str
    total: int
    skipped: int = 0  # current before the run
    succeeded: int = 0
    failures: list[tuple[int, str, str]] = field(default_factory=list)  # (row, id, error) of this run
    remembered: list[tuple[int, str, str]] = field(default_factory=list)  # failed earlier, not retried
    blocked: list[tuple[str, str]] = field(default_factory=list)  # (id, why): its upstream row is not current
    planned: dict[str, int] = field(default_factory=dict)  # rows.Plan.counts()
    dry_run: bool = False
    hashed: int = 0  # source files read to find their versions (clean only)
    refs: list[Any] = field(default_factory=list, repr=False)  # the samples (SampleRefs), for later stages
    versions: list[str] = field(default_factory=list, repr=False)  # their versions
    rows: Any = field(default=None, repr=False)  # per sample: its current row in this group after the run, or -1

    @property
    def done(self) -> int:
        """Rows current after this run (skipped ones included)."""
        return self.skipped + self.succeeded

    @property
    def attempted(self) -> int:
        """Rows computed (or tried) by this run."""
        return self.succeeded + len(self.failures)

    def exit_code(self, strict: bool) -> int:
        """Non-zero when `strict` and any row failed, or when nothing at all is current."""
        if self.dry_run:
            return 0
        if self.total and self.done == 0:
            return 1
        return 1 if strict and (self.failures or self.remembered) else 0


@contextmanager
def _client(workers: int, scheduler: str | None):  # noqa: ANN202 - a dask Client
    import logging

    import dask
    from dask.distributed import Client, LocalCluster

    from .quiet_worker import QuietWorker

    if scheduler:
        with Client(scheduler) as client:
            yield client
        return
    # The Nanny's MALLOC_TRIM_THRESHOLD_ doubles numpy-heavy task time (ENVIRONMENT.md): unset it.
    dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None,
                     "distributed.worker.daemon": False})
    nanny = logging.getLogger("distributed.nanny")
    level = nanny.level
    try:
        with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster, \
                Client(cluster) as client:
            client.register_plugin(QuietWorker())
            try:
                yield client
            except KeyboardInterrupt:  # the cluster closes next: its "still alive, killing" warnings say nothing new
                logging.getLogger("distributed").setLevel(logging.CRITICAL)
                raise
            # Every row is marked by now. A worker whose object-store client (s3fs) is slow to exit is killed
            # after 4 s; the nanny's warning about that would read as a problem with the run, which it is not.
            nanny.setLevel(logging.ERROR)
    finally:
        nanny.setLevel(level)


def default_workers() -> int:
    """One worker per core."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def threads_per_task(workers: int, scheduler: str | None, tasks: int) -> int:
    """CPU threads a task may use: all cores in this process, a share of them per local worker.

    An outside scheduler's machines are unknown, so its tasks take one.
    """
    if scheduler:
        return 1
    if workers == 0:
        return default_workers()
    return max(1, default_workers() // max(1, min(workers, tasks)))


def progress(total: int, desc: str, unit: str, enabled: bool = True) -> tqdm:
    """A progress bar on stderr: live in a terminal, one line every 15 s in logs (CI, nohup)."""
    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True, disable=not enabled,
                mininterval=0.2 if sys.stderr.isatty() else 15)


def run_tasks(task: Task, jobs: Sequence[dict[str, Any]], *, workers: int, scheduler: str | None,
              desc: str, on_results: Callable[[list[tuple[int, str]]], None], unit: str = "sample",
              per_row: int = 1, show_progress: bool = True) -> dict[int, str]:
    """Run `task` over `jobs`; return {row: error} ('' on success), handing results over as they come.

    `workers == 0` runs in this process, one job after another (debugging, tiny runs, tests).
    The progress bar counts `per_row` units (e.g. views) for every row finished.
    """
    outcomes: dict[int, str] = {}
    total = sum(len(job["rows"]) for job in jobs)
    bar = progress(total * per_row, desc, unit, enabled=bool(jobs) and show_progress)

    def record(results: list[tuple[int, str]]) -> None:
        outcomes.update(results)
        on_results(results)
        bar.update(len(results) * per_row)

    if not jobs:  # everything is done: no cluster to start
        bar.close()
        return outcomes
    try:
        if workers == 0 and not scheduler:
            for job in jobs:
                record(task(job))
            return outcomes
        from dask.distributed import as_completed

        # never more processes than jobs: 64 workers for 7 samples only add start-up time
        with _client(min(workers, len(jobs)), scheduler) as client:
            futures = {client.submit(task, job, pure=False, key=f"{desc}-{job['rows'][0]}"): job for job in jobs}
            for future in as_completed(futures):
                try:
                    record(future.result())
                except Exception as exc:  # the worker itself died: fail its rows only
                    record([(row, f"worker failed: {one_line(exc)}") for row in futures[future]["rows"]])
        return outcomes
    finally:
        bar.close()


def run_stage(stage: str, grp: Any, fp: str, url: str, keys: Sequence[tuple[str, str]], p: rows.Plan,
              targets: dict[int, int], jobs: list[dict[str, Any]], task: Task, opts: RunOptions,
              unit: str = "sample", per_row: int = 1) -> RunReport:
    """Run a stage's jobs, marking each row done or failed as it finishes, and count.

    `targets` maps sample position -> its row; `report.rows` is each sample's current row afterwards (-1: none).
    """
    names = {row: keys[k][0] for k, row in targets.items()}
    report = RunReport(stage=stage, fingerprint=fp, url=url, total=len(keys), skipped=len(p.current),
                       planned=p.counts(), remembered=[(r, keys[k][0], e) for k, (r, e) in sorted(p.failed.items())])

    def finished(results: list[tuple[int, str]]) -> None:
        full = [r for r, e in results if e and disk_full(e)]
        results = [(r, e) for r, e in results if r not in full]  # a full disk's rows stay pending, not failed
        try:
            rows.mark(grp, [(r, e) for r, e in results if not keep_pending(e)])
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
            full.append(-1)  # the marks themselves could not be written
        report.succeeded += sum(1 for _, e in results if not e)
        if full:  # every later row would fail the same way: stop now
            raise DiskFull(stage, url, report.skipped + report.succeeded, len(keys))
        for row, error in results:
            if error:
                report.failures.append((row, names[row], error))
                if opts.log is not None:
                    opts.log(f"{stage} failed: {names[row]}: {error}")

    try:
        outcomes = run_tasks(task, jobs, workers=opts.workers, scheduler=opts.scheduler, desc=stage,
                             on_results=finished, unit=unit, per_row=per_row, show_progress=opts.progress)
    except KeyboardInterrupt:  # every finished row is already marked: say how far it got, once
        raise Interrupted(stage, report.skipped + report.succeeded, len(keys)) from None
    current = np.full(len(keys), -1, np.int64)
    for k, r in p.current.items():
        current[k] = r
    for k, r in targets.items():
        if outcomes.get(r) == "":
            current[k] = r
    report.rows = current
    return report


@contextmanager
def disk_guard(stage: str, url: str) -> Iterator[None]:
    """A full disk outside the rows (the lock file, the cache's root, a new group) as `DiskFull` naming both."""
    try:
        yield
    except DiskFull:
        raise
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
        raise DiskFull(stage, url) from None


def disk_full(error: str) -> bool:
    """Whether a row's error is the disk being full (errno 28, as one line)."""
    return "No space left on device" in error or "[Errno 28]" in error


def keep_pending(error: str) -> bool:
    """Whether a failed row stays pending rather than remembered as failed.

    A full disk, or damaged upstream data (`verify --repair`, then the rerun recomputes the upstream
    row): neither is the sample's fault, so the next run must try the row again.
    """
    return bool(error) and (disk_full(error) or CorruptRow.PREFIX in error)


def dry_report(stage: str, fp: str, url: str, keys: Sequence[tuple[str, str]], p: rows.Plan) -> RunReport:
    """What a run would do, for `--dry-run`: the plan's counts, nothing written.

    `rows` holds each sample's current row, -2 for one the run would compute, -1 otherwise.
    """
    current = np.full(len(keys), -1, np.int64)
    current[p.todo] = -2
    for k, r in p.current.items():
        current[k] = r
    return RunReport(stage=stage, fingerprint=fp, url=url, total=len(keys), skipped=len(p.current),
                     planned=p.counts(), dry_run=True, rows=current,
                     remembered=[(r, keys[k][0], e) for k, (r, e) in sorted(p.failed.items())])
