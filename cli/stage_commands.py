"""Commands that build and look after the cache: make-synthetic, clean, render, encode, gc, status."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .options import (
    DEFAULT_CATALOG,
    CacheOpt,
    CatalogOpt,
    DatasetOpt,
    DeviceOpt,
    DryRunOpt,
    OnlyDatasetOpt,
    RetryOpt,
    SchedulerOpt,
    StrictOpt,
    WorkersOpt,
    console_log,
    guarded,
    int_list,
    load,
    print_reports,
    run_options,
)


def make_synthetic_cmd(
    out: Annotated[Path, typer.Argument(help="Folder to write the trees into (mvtec3d/ and real3d/).")],
    seed: Annotated[int, typer.Option(help="Random seed; the same seed writes the same bytes.")] = 0,
    n_train: Annotated[int, typer.Option(help="Good training samples per class.")] = 2,
    n_test_good: Annotated[int, typer.Option(help="Good test samples per class.")] = 2,
    n_test_per_defect: Annotated[int, typer.Option(help="Test samples per class and defect kind.")] = 1,
) -> None:
    """Write a small synthetic dataset in the MVTec 3D-AD and Real3D-AD layouts, with exact ground truth."""
    from pointad_pipe.pipeline.synthetic.generator import make_synthetic

    roots = make_synthetic(out, seed=seed, n_train=n_train, n_test_good=n_test_good,
                           n_test_per_defect=n_test_per_defect)
    for layout, root in roots.items():
        typer.echo(f"{layout}: {root}")


def clean(
    dataset: DatasetOpt,
    catalog: CatalogOpt = DEFAULT_CATALOG,
    cache: CacheOpt = None,
    workers: WorkersOpt = None,
    scheduler: SchedulerOpt = None,
    strict: StrictOpt = False,
    retry_failed: RetryOpt = False,
    dry_run: DryRunOpt = False,
) -> None:
    """Clean every sample: drop invalid points, remove the table plane, keep the object, resample."""

    def body() -> int:
        from pointad_pipe.pipeline.jobs.clean import run_clean

        cat = load(catalog, cache)
        report, _ = run_clean(cat, cat.dataset(dataset), run_options(workers, scheduler, retry_failed, dry_run))
        return print_reports([report], strict)

    guarded(body)


def render(
    dataset: DatasetOpt,
    catalog: CatalogOpt = DEFAULT_CATALOG,
    cache: CacheOpt = None,
    backend: Annotated[str | None, typer.Option(
        help="splat (default: compiled z-buffer, no GL), open3d (legacy Visualizer via EGL) or pyrender.")] = None,
    visibility: Annotated[str | None, typer.Option(
        help="surface (default: points on the seen surface) or paper (one point per pixel, as the code).")] = None,
    image_size: Annotated[int | None, typer.Option(help="Rendered image side in pixels (default 336).")] = None,
    workers: WorkersOpt = None,
    scheduler: SchedulerOpt = None,
    strict: StrictOpt = False,
    retry_failed: RetryOpt = False,
    dry_run: DryRunOpt = False,
) -> None:
    """Render K views of every cleaned cloud with pixel<->point maps (runs `clean` first where needed)."""

    def body() -> int:
        from pointad_pipe.pipeline.jobs.render import run_render

        cat = load(catalog, cache)
        reports = run_render(cat, cat.dataset(dataset), run_options(workers, scheduler, retry_failed, dry_run),
                             {"backend": backend, "visibility": visibility, "image_size": image_size})
        return print_reports(reports, strict)

    guarded(body)


def encode(
    dataset: DatasetOpt,
    catalog: CatalogOpt = DEFAULT_CATALOG,
    cache: CacheOpt = None,
    model: Annotated[str | None, typer.Option(
        help="ViT-L-14-336 (the paper's, default), ViT-B-16 (cheaper) or tiny (random init, for tests).")] = None,
    weights: Annotated[str | None, typer.Option(
        help="An OpenAI TorchScript .pt, an open_clip state dict or .safetensors file; 'random' for random "
        "init (benchmarks only). Default: ./weights/<OpenAI file name>, then open_clip's pretrained tag.")] = None,
    layers: Annotated[str | None, typer.Option(
        help="Comma-separated 1-based blocks whose patch tokens are cached (default 6,12,18,24 for ViT-L).")] = None,
    dpam: Annotated[bool | None, typer.Option(
        "--dpam/--no-dpam", help="AnomalyCLIP's attention change on the patch tokens (default on).")] = None,
    device: DeviceOpt = "auto",
    dtype: Annotated[str | None, typer.Option(
        help="Compute dtype: fp32 (default, as the paper), bf16 (CPU, ~3x faster) or fp16 (GPU). "
        "Features are stored as float16.")] = None,
    batch_size: Annotated[int, typer.Option(help="Samples per forward pass (all their views at once).")] = 1,
    threads: Annotated[int | None, typer.Option(
        help="torch threads per worker (default: cores / workers). Pin it when two caches must be bit-identical: "
        "another count can change the last float16 bit of a few values.")] = None,
    workers: Annotated[int, typer.Option(
        "--workers", "-j", help="Worker processes, each loading the model once; 0 runs in this process.")] = 0,
    scheduler: SchedulerOpt = None,
    strict: StrictOpt = False,
    retry_failed: RetryOpt = False,
    dry_run: DryRunOpt = False,
) -> None:
    """Encode every rendering (and RGB image) with the frozen CLIP into cached features (runs `render` first)."""

    def body() -> int:
        from pointad_pipe.pipeline.jobs.encode import EncodeOptions, run_encode

        cat = load(catalog, cache)
        overrides = {"model": model, "layers": int_list(layers, "--layers"), "dpam": dpam, "dtype": dtype}
        reports = run_encode(cat, cat.dataset(dataset), run_options(workers, scheduler, retry_failed, dry_run),
                             EncodeOptions(device=device, batch_size=batch_size, weights=weights, threads=threads),
                             overrides)
        return print_reports(reports, strict)

    guarded(body)


def gc(
    catalog: CatalogOpt = DEFAULT_CATALOG,
    cache: CacheOpt = None,
    dataset: OnlyDatasetOpt = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List what would be removed; remove nothing.")] = False,
    strict: Annotated[bool, typer.Option(
        "--strict", help="Also remove render variants (e.g. made with --visibility) that are not the catalog's.")]
    = False,
) -> None:
    """Compact the cache: drop rows and groups that nothing leads to any more.

    Rows of removed files and old versions of edited ones go, and groups of configs the catalog no
    longer names. It stops at once if another command is using the dataset's cache.
    """

    def body() -> int:
        from pointad_pipe.pipeline.cache.status import human_size
        from pointad_pipe.pipeline.cache.store import READS
        from pointad_pipe.pipeline.jobs.gc import collect

        found = collect(load(catalog, cache), dataset, strict, dry_run)
        verb = "would remove" if dry_run else "removed"
        for item in found:
            if item.note and item.schema is not None and item.schema not in READS:
                typer.echo(f"{item.dataset}: {item.note}")
                continue
            for s in item.stale:
                typer.echo(f"{item.dataset}: {verb} {s.stage}/{s.fingerprint}  {human_size(s.size)}  ({s.reason})")
            for g in item.groups:
                if g.dead_rows and not item.removes(g):
                    typer.echo(f"{item.dataset}: {verb} {len(g.dead_rows)} row(s) of {g.stage}/{g.fingerprint}  "
                               f"{human_size(g.freeable)}  (no file leads to them any more)")
        total = sum(item.freeable() for item in found)
        typer.echo(f"{verb} {sum(len(i.stale) for i in found)} group(s) and "
                   f"{sum(len(g.dead_rows) for i in found for g in i.groups if not i.removes(g))} row(s), "
                   f"{human_size(total)}" + (" (dry run)" if dry_run else ""))
        return 0

    guarded(body)


def status(
    catalog: CatalogOpt = DEFAULT_CATALOG,
    cache: CacheOpt = None,
    dataset: OnlyDatasetOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document on stdout, for scripts.")] = False,
) -> None:
    """Show each stage group's current, stale, missing and failed samples, and what `gc` could free.

    Stale: the sample's files changed since its row was made. Failed rows are listed with their errors.
    """

    def body() -> int:
        import json

        from pointad_pipe.pipeline.jobs.gc import survey

        from .status_lines import survey_lines

        cat = load(catalog, cache)
        found = [survey(cat, cat.dataset(name)) for name in ([dataset] if dataset else list(cat.datasets))]
        if as_json:
            typer.echo(json.dumps([s.as_json() for s in found], indent=2))
            return 0
        for item in found:
            for line in survey_lines(item):
                typer.echo(line)
        return 0

    guarded(body)


def verify(
    catalog: CatalogOpt = DEFAULT_CATALOG,
    cache: CacheOpt = None,
    dataset: OnlyDatasetOpt = None,
    repair: Annotated[bool, typer.Option(
        "--repair", help="Mark the damaged rows not done, so that the next stage run recomputes exactly them.")]
    = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document on stdout, for scripts.")] = False,
) -> None:
    """Read back every done row of the cache and check it against its checksums.

    A deleted, truncated or changed chunk is found and named (group, row, sample, array). Exit code 1
    when damage is found and not repaired. Caches written before checksums (pointad-pipe 0.5) cannot
    be checked; they are listed as such.
    """

    def body() -> int:
        import json

        from pointad_pipe.pipeline.jobs.verify import verify as run_verify

        from .status_lines import verify_lines

        cat = load(catalog, cache)
        found = [run_verify(cat, cat.dataset(name), repair, show_progress=not as_json)
                 for name in ([dataset] if dataset else list(cat.datasets))]
        if as_json:
            typer.echo(json.dumps([v.as_json() for v in found], indent=2))
        else:
            for item in found:
                for line in verify_lines(item):
                    typer.echo(line)
        return 1 if any(v.bad_rows and not v.repaired for v in found) else 0

    guarded(body)


def convert(
    dataset: DatasetOpt,
    catalog: CatalogOpt = DEFAULT_CATALOG,
    cache: CacheOpt = None,
    rebuild: Annotated[bool, typer.Option(
        "--rebuild", help="Only set the schema-1 store aside: the next stage run rebuilds the cache from the files.")]
    = False,
) -> None:
    """Turn a schema-1 cache (pointad-pipe 0.4 and older) into a schema-2 one; the old store is kept beside it.

    Converting keeps every finished row. It labels each row with the version of its files now, so it
    assumes they did not change since that cache was built; if they may have, use --rebuild.
    """

    def body() -> int:
        from pointad_pipe.pipeline.jobs.convert import convert as run

        cat = load(catalog, cache)
        out = run(cat, cat.dataset(dataset), rebuild, console_log)
        typer.echo(f"schema-1 store kept at {out.kept_at} (delete it once the new cache serves you)")
        if rebuild:
            typer.echo(f"the next `pointad-pipe encode --dataset {dataset}` rebuilds the cache")
        else:
            for stage, n in out.rows.items():
                typer.echo(f"{stage}: {n} rows in {out.groups[stage]} group(s)")
            if out.left_behind:
                typer.echo(f"{out.left_behind} rows left behind: their samples are no longer under the root")
        return 0

    guarded(body)


def doctor(
    catalog: CatalogOpt = DEFAULT_CATALOG,
    cache: CacheOpt = None,
) -> None:
    """Check this machine for the pipeline: packages, CUDA, renderers, CLIP weights, the cache root; with fixes."""

    def body() -> int:
        from pointad_pipe.pipeline.jobs.doctor import examine

        cat = load(catalog, cache) if Path(catalog).expanduser().is_file() else None
        checks = examine(cat)
        for c in checks:
            mark = "ok  " if c.ok else ("FAIL" if c.required else "--  ")
            typer.echo(f"{mark} {c.name:<24} {c.detail}" + (f"  -> {c.fix}" if not c.ok and c.fix else ""))
        bad = [c.name for c in checks if c.required and not c.ok]
        typer.echo(f"{len(bad)} problem(s): {', '.join(bad)}" if bad else "everything needed is usable")
        return 1 if bad else 0

    guarded(body)
