"""Option types shared by the commands (declared once), and the small helpers every command uses.

Heavy packages are imported inside functions, so that `--help` is instant.
"""

from __future__ import annotations

import errno
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

CatalogOpt = Annotated[Path, typer.Option("--catalog", help="The data catalog (YAML).")]
DatasetOpt = Annotated[str, typer.Option("--dataset", "-d", help="A dataset name from the catalog.")]
OnlyDatasetOpt = Annotated[str | None, typer.Option("--dataset", "-d", help="Only this dataset.")]
CacheOpt = Annotated[str | None, typer.Option("--cache", help="Cache root (path or fsspec URL); overrides `cache:`.")]
WorkersOpt = Annotated[int | None, typer.Option(
    "--workers", "-j", help="Parallel worker processes (a local dask cluster). 0 runs in this process. "
    "Default: one per core.")]
SchedulerOpt = Annotated[str | None, typer.Option(
    "--scheduler", help="Address of an existing dask.distributed scheduler (tcp://host:8786) to run on.")]
StrictOpt = Annotated[bool, typer.Option(
    "--strict", help="Exit non-zero when any sample failed (by default only when nothing succeeded).")]
RetryOpt = Annotated[bool, typer.Option(
    "--retry-failed", help="Retry rows whose failure is remembered (by default a failed row is retried only when "
    "its files or the stage's config change).")]
DryRunOpt = Annotated[bool, typer.Option(
    "--dry-run", help="Print what each stage would do (new, stale, unfinished, current, failed rows); do nothing.")]
DeviceOpt = Annotated[str, typer.Option(help="auto (CUDA when present), cpu or cuda.")]
CheckpointOpt = Annotated[Path, typer.Option(
    help="A prompts .pt written by `train` (its .json sidecar beside it), or a checkpoint in the PointAD "
    "authors' format (.pth).")]
CacheWeightsOpt = Annotated[str | None, typer.Option(help="The weights file the cache was encoded with.")]
LossOpt = Annotated[str, typer.Option(help="Loss terms, a subset of 3dg,3dl,2dg,2dl.")]
DEFAULT_CATALOG = Path("data_catalog.yaml")
ALL_LOSSES = "3dg,3dl,2dg,2dl"


def fail(message: str) -> typer.Exit:
    """Print `error: message` in red on stderr; return the exit (code 2) to raise."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(2)


def guarded(body: Callable[[], int]) -> None:
    """Run a command body: the project's errors become one red line worded for the flags, exit 2."""
    from pointad_pipe.pipeline.errors import PointadError

    from .messages import describe

    try:
        code = body()
    except KeyboardInterrupt as exc:  # Ctrl-C: one line, no traceback, the shell's code for SIGINT
        what = str(exc) if isinstance(exc, PointadError) else "interrupted"
        typer.secho(f"{what}; rerun the same command to continue", fg=typer.colors.YELLOW, err=True)
        raise typer.Exit(130) from None
    except PointadError as exc:
        raise fail(describe(exc)) from None
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
        raise fail(f"no space left on the device holding {exc.filename or 'the output'}: free space, then rerun "
                   f"(finished rows are kept)") from None
    raise typer.Exit(code)


def load(catalog: Path, cache: str | None) -> Any:
    """The parsed catalog (a missing file names the flag that points at another)."""
    from pointad_pipe.pipeline.catalog import load_catalog
    from pointad_pipe.pipeline.errors import CatalogError

    if not Path(catalog).expanduser().is_file():
        raise CatalogError(f"catalog {Path(catalog).expanduser().resolve()} not found (pass --catalog FILE)")
    return load_catalog(catalog, cache)


def console_log(message: str) -> None:
    """A message on stderr above any progress bar (tqdm.write keeps it off the bar's line)."""
    from tqdm import tqdm

    tqdm.write(message, file=sys.stderr)


def run_options(workers: int | None, scheduler: str | None, retry_failed: bool = False,
                dry_run: bool = False) -> Any:
    """RunOptions from the flags: one worker per core by default; failures printed as they happen."""
    from pointad_pipe.pipeline.cache.runner import RunOptions, default_workers

    return RunOptions(workers=default_workers() if workers is None else workers, scheduler=scheduler,
                      log=console_log, retry_failed=retry_failed, dry_run=dry_run)


def int_list(value: str | None, flag: str) -> tuple[int, ...] | None:
    """Parse a comma-separated list of integers such as `6,12,18,24`; None stays None."""
    if value is None:
        return None
    try:
        return tuple(int(x) for x in value.split(",") if x.strip())
    except ValueError:
        raise fail(f"{flag} {value!r}: expected comma-separated integers such as 6,12,18,24") from None


def name_list(value: str) -> list[str]:
    """A comma-separated list of names, blanks dropped."""
    return [x.strip() for x in value.split(",") if x.strip()]


def _report_line(rep) -> str:  # noqa: ANN001 - a RunReport
    """One stage run (or plan) on one line."""
    plan = rep.planned
    if rep.dry_run:
        todo = plan.get("new", 0) + plan.get("stale", 0) + plan.get("pending", 0) + plan.get("retried", 0)
        return (f"{rep.stage} {rep.fingerprint}: would do {todo} ({plan.get('new', 0)} new, {plan.get('stale', 0)} "
                f"stale, {plan.get('pending', 0)} unfinished, {plan.get('retried', 0)} retried), "
                f"{rep.skipped} current, {len(rep.remembered)} failed, {len(rep.blocked)} waiting on upstream")
    line = (f"{rep.stage} {rep.fingerprint}: {rep.done}/{rep.total} done "
            f"({rep.succeeded} now, {rep.skipped} already), {len(rep.failures) + len(rep.remembered)} failed")
    extras = [f"{len(rep.remembered)} of them earlier (not retried; --retry-failed)" if rep.remembered else "",
              f"{len(rep.blocked)} waiting on a failed upstream row" if rep.blocked else "",
              f"{rep.hashed} files hashed" if rep.hashed else ""]
    return line + "".join(f"; {x}" for x in extras if x)


def print_reports(reports: list, strict: bool) -> int:  # noqa: ANN001 - RunReports
    """One line per stage run and each failed row (this run's and remembered ones); the cache line; the exit code."""
    code = 0
    for rep in reports:
        typer.echo(_report_line(rep), err=True)
        for row, sid, err in rep.failures:
            typer.echo(f"  failed row {row} {sid}: {err}", err=True)
        for row, sid, err in rep.remembered:
            typer.echo(f"  failed earlier, row {row} {sid}: {err}", err=True)
        code = max(code, rep.exit_code(strict))
    if reports and not reports[-1].dry_run:
        typer.echo(f"cache: {reports[-1].url} ({reports[-1].stage}/{reports[-1].fingerprint})")
    return code


def print_table(report: dict) -> None:
    """The metrics per class and their mean, x100 as the paper prints them."""
    from pointad_pipe.pipeline.outputs.tables import metric_columns

    keys = metric_columns(report["mean"])
    widths = [max(len(k), 8) for k in keys]
    typer.echo(f"{'class':>16}  " + "  ".join(f"{k:>{w}}" for k, w in zip(keys, widths, strict=True)))
    for cls, vals in [*report["per_class"].items(), ("mean", report["mean"])]:
        typer.echo(f"{cls:>16}  " + "  ".join(f"{100 * vals.get(k, float('nan')):>{w}.1f}"
                                              for k, w in zip(keys, widths, strict=True)))
