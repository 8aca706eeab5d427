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
    OnlyDatasetOpt,
    SchedulerOpt,
    StrictOpt,
    WorkersOpt,
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
) -> None:
    """Clean every sample: drop invalid points, remove the table plane, keep the object, resample."""

    def body() -> int:
        from pointad_pipe.pipeline.jobs.clean import run_clean

        cat = load(catalog, cache)
        report, _ = run_clean(cat, cat.dataset(dataset), run_options(workers, scheduler))
        return print_reports([report], strict)

    guarded(body)


def render(
    dataset: DatasetOpt,
    catalog: CatalogOpt = DEFAULT_CATALOG,
    cache: CacheOpt = None,
    backend: Annotated[str | None, typer.Option(
        help="splat (default: numpy z-buffer, no GL needed), open3d (legacy Visualizer via EGL) or pyrender.")] = None,
    visibility: Annotated[str | None, typer.Option(
        help="surface (default: points on the seen surface) or paper (one point per pixel, as the code).")] = None,
    image_size: Annotated[int | None, typer.Option(help="Rendered image side in pixels (default 336).")] = None,
    workers: WorkersOpt = None,
    scheduler: SchedulerOpt = None,
    strict: StrictOpt = False,
) -> None:
    """Render K views of every cleaned cloud with pixel<->point maps (runs `clean` first where needed)."""

    def body() -> int:
        from pointad_pipe.pipeline.jobs.render import run_render

        cat = load(catalog, cache)
        reports = run_render(cat, cat.dataset(dataset), run_options(workers, scheduler),
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
) -> None:
    """Encode every rendering (and RGB image) with the frozen CLIP into cached features (runs `render` first)."""

    def body() -> int:
        from pointad_pipe.pipeline.jobs.encode import EncodeOptions, run_encode

        cat = load(catalog, cache)
        overrides = {"model": model, "layers": int_list(layers, "--layers"), "dpam": dpam, "dtype": dtype}
        reports = run_encode(cat, cat.dataset(dataset), run_options(workers, scheduler),
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
    """Remove cache groups the current catalog no longer leads to (an old clean config, their renders, encodes)."""

    def body() -> int:
        from pointad_pipe.pipeline.cache.status import human_size
        from pointad_pipe.pipeline.jobs.gc import collect

        found = collect(load(catalog, cache), dataset, strict, dry_run)
        for name, item in found:
            typer.echo(f"{name}: {item.stage}/{item.fingerprint}  {human_size(item.size)}  ({item.reason})")
        total, count = sum(item.size or 0 for _, item in found), len(found)
        verb = "would remove" if dry_run else "removed"
        typer.echo(f"{verb} {count} group(s), {human_size(total)}" + (" (dry run)" if dry_run else ""))
        return 0

    guarded(body)


def status(
    catalog: CatalogOpt = DEFAULT_CATALOG,
    cache: CacheOpt = None,
    dataset: OnlyDatasetOpt = None,
) -> None:
    """List each dataset's stage groups: fingerprint, done and failed rows, disk size."""

    def body() -> int:
        from pointad_pipe.pipeline.cache.status import dataset_status

        cat = load(catalog, cache)
        for name in [dataset] if dataset else list(cat.datasets):
            cat.dataset(name)
            for line in dataset_status(cat.cache, name):
                typer.echo(line)
        return 0

    guarded(body)
