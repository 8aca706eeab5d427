"""The `pointad-pipe` command line: each command parses flags, calls one pipeline function, prints.

Heavy packages (torch, open_clip, open3d, zarr, dask) are imported inside the commands, so that
`--help` is instant.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    help="Zero-shot 3D anomaly detection (PointAD) as a staged pipeline: clean -> render -> encode -> train "
    "-> evaluate, plus predict on your own files.\n\n"
    "Every stage writes a fingerprinted group to a Zarr cache (docs/STORE.md), skips rows already done, "
    "and can be killed and rerun safely. New here? Run `pointad-pipe demo`.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

CatalogOpt = Annotated[Path, typer.Option("--catalog", help="The data catalog (YAML).")]
DatasetOpt = Annotated[str, typer.Option("--dataset", "-d", help="A dataset name from the catalog.")]
CacheOpt = Annotated[str | None, typer.Option("--cache", help="Cache root (path or fsspec URL); overrides `cache:`.")]
WorkersOpt = Annotated[int | None, typer.Option(
    "--workers", "-j", help="Parallel worker processes (a local dask cluster). 0 runs in this process. "
    "Default: one per core.")]
SchedulerOpt = Annotated[str | None, typer.Option(
    "--scheduler", help="Address of an existing dask.distributed scheduler (tcp://host:8786) to run on.")]
StrictOpt = Annotated[bool, typer.Option(
    "--strict", help="Exit non-zero when any sample failed (by default only when nothing succeeded).")]


def _fail(message: str) -> typer.Exit:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(2)


def _catalog(catalog: Path, cache: str | None):  # noqa: ANN202 - a Catalog
    from pointad_pipe.pipeline.catalog import load_catalog

    return load_catalog(catalog, cache)


def _options(workers: int | None, scheduler: str | None):  # noqa: ANN202 - RunOptions
    from pointad_pipe.pipeline.runner import default_workers
    from pointad_pipe.pipeline.stages import RunOptions

    return RunOptions(workers=default_workers() if workers is None else workers, scheduler=scheduler)


def _report(reports: list, strict: bool) -> int:  # noqa: ANN001
    code = 0
    for rep in reports:
        line = (f"{rep.stage} {rep.fingerprint}: {rep.done}/{rep.total} done "
                f"({rep.succeeded} now, {rep.skipped} already), {len(rep.failures)} failed")
        typer.echo(line, err=True)
        for row, sid, err in rep.failures:
            typer.echo(f"  failed row {row} {sid}: {err}", err=True)
        code = max(code, rep.exit_code(strict))
    if reports:
        typer.echo(f"cache: {reports[-1].url} ({reports[-1].stage}/{reports[-1].fingerprint})")
    return code


def _int_list(value: str | None, flag: str) -> tuple[int, ...] | None:
    """Parse a comma-separated list of integers such as `6,12,18,24`; None stays None."""
    if value is None:
        return None
    try:
        return tuple(int(x) for x in value.split(",") if x.strip())
    except ValueError:
        raise _fail(f"{flag} {value!r}: expected comma-separated integers such as 6,12,18,24") from None


def _guard(fn):  # noqa: ANN001, ANN202 - wraps a command body: project errors become one red line
    from pointad_pipe.pipeline.errors import PointadError

    try:
        return fn()
    except PointadError as exc:
        raise _fail(str(exc)) from None


@app.command("make-synthetic")
def make_synthetic_cmd(
    out: Annotated[Path, typer.Argument(help="Folder to write the trees into (mvtec3d/ and real3d/).")],
    seed: Annotated[int, typer.Option(help="Random seed; the same seed writes the same bytes.")] = 0,
    n_train: Annotated[int, typer.Option(help="Good training samples per class.")] = 2,
    n_test_good: Annotated[int, typer.Option(help="Good test samples per class.")] = 2,
    n_test_per_defect: Annotated[int, typer.Option(help="Test samples per class and defect kind.")] = 1,
) -> None:
    """Write a small synthetic dataset in the MVTec 3D-AD and Real3D-AD layouts, with exact ground truth."""
    from pointad_pipe.pipeline.loaders.synthetic import make_synthetic

    roots = make_synthetic(out, seed=seed, n_train=n_train, n_test_good=n_test_good,
                           n_test_per_defect=n_test_per_defect)
    for layout, root in roots.items():
        typer.echo(f"{layout}: {root}")


@app.command()
def clean(
    dataset: DatasetOpt,
    catalog: CatalogOpt = Path("data_catalog.yaml"),
    cache: CacheOpt = None,
    workers: WorkersOpt = None,
    scheduler: SchedulerOpt = None,
    strict: StrictOpt = False,
) -> None:
    """Clean every sample: drop invalid points, remove the table plane, keep the object, resample."""

    def body() -> int:
        from pointad_pipe.pipeline.stages import run_clean

        cat = _catalog(catalog, cache)
        report, _ = run_clean(cat, cat.dataset(dataset), _options(workers, scheduler))
        return _report([report], strict)

    raise typer.Exit(_guard(body))


@app.command()
def render(
    dataset: DatasetOpt,
    catalog: CatalogOpt = Path("data_catalog.yaml"),
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
        from pointad_pipe.pipeline.stages import run_render

        cat = _catalog(catalog, cache)
        reports = run_render(cat, cat.dataset(dataset), _options(workers, scheduler),
                             {"backend": backend, "visibility": visibility, "image_size": image_size})
        return _report(reports, strict)

    raise typer.Exit(_guard(body))


@app.command()
def encode(
    dataset: DatasetOpt,
    catalog: CatalogOpt = Path("data_catalog.yaml"),
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
    device: Annotated[str, typer.Option(help="auto (CUDA when present), cpu or cuda.")] = "auto",
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
        from pointad_pipe.pipeline.encode_stage import EncodeOptions, run_encode
        from pointad_pipe.pipeline.stages import RunOptions

        cat = _catalog(catalog, cache)
        cli = {"model": model, "layers": _int_list(layers, "--layers"), "dpam": dpam, "dtype": dtype}
        reports = run_encode(cat, cat.dataset(dataset), RunOptions(workers=workers, scheduler=scheduler),
                             EncodeOptions(device=device, batch_size=batch_size, weights=weights,
                                           threads=threads), cli)
        return _report(reports, strict)

    raise typer.Exit(_guard(body))


@app.command()
def train(
    dataset: DatasetOpt,
    train_class: Annotated[list[str], typer.Option(
        "--train-class", help="Class(es) whose samples train the prompts (repeat the flag for several).")],
    out: Annotated[Path, typer.Option(help="Run folder for checkpoints and their JSON sidecars.")],
    catalog: CatalogOpt = Path("data_catalog.yaml"),
    cache: CacheOpt = None,
    split: Annotated[str, typer.Option(
        help="Split to train on; the paper uses the class's test split, the only one with anomalies.")] = "test",
    epochs: Annotated[int, typer.Option(help="Epochs.")] = 15,
    batch_size: Annotated[int, typer.Option(help="Clouds per step (all their views).")] = 4,
    lr: Annotated[float, typer.Option(help="Adam learning rate (betas 0.5, 0.999).")] = 1e-3,
    seed: Annotated[int, typer.Option(help="Seed of the prompt init and the data order.")] = 111,
    prompts: Annotated[str, typer.Option(help="agnostic (the paper's PointAD) or coop (class names).")] = "agnostic",
    loss: Annotated[str, typer.Option(help="Loss terms to use, a subset of 3dg,3dl,2dg,2dl.")] = "3dg,3dl,2dg,2dl",
    layers: Annotated[str | None, typer.Option(
        help="Cached blocks to score, comma-separated (default: the last cached, 24 for ViT-L).")] = None,
    model: Annotated[str | None, typer.Option(help="Must match the cache's model (default: the cache's).")] = None,
    weights: Annotated[str | None, typer.Option(help="The weights file the cache was encoded with.")] = None,
    encode_fp: Annotated[str | None, typer.Option(
        "--encode-fingerprint", help="Which encode group to read (default: the newest).")] = None,
    device: Annotated[str, typer.Option(help="auto (CUDA when present), cpu or cuda.")] = "auto",
    resume: Annotated[bool, typer.Option(help="Continue from the run folder's last epoch.")] = False,
) -> None:
    """Learn the text prompts from cached features only (no image is encoded again)."""

    def body() -> int:
        from pointad_pipe.pipeline.encode_stage import resolve_device
        from pointad_pipe.pipeline.train_run import check_model, select_rows
        from pointad_pipe.pipeline.train_run import train as run_train

        cat = _catalog(catalog, cache)
        entry = cat.dataset(dataset)
        layer_list = _int_list(layers, "--layers") or ()
        cfg = _train_config(epochs, batch_size, lr, seed, prompts, loss, layer_list)
        data = select_rows(cat, entry, list(train_class), split, encode_fp)
        spec, resolved = check_model(data.encode, model, weights)
        typer.echo(f"training on {len(data.rows)} samples of {list(train_class)} ({split}), "
                   f"encode/{data.encode.attrs['fingerprint']}, model {spec.name}", err=True)
        path = run_train(data, cfg, out, spec, resolved, device=resolve_device(device), resume=resume,
                         extra={"dataset": dataset, "split": split})
        typer.echo(f"prompts: {path}")
        return 0

    raise typer.Exit(_guard(body))


def _train_config(  # noqa: ANN202 - a TrainConfig, imported lazily
    epochs: int, batch_size: int, lr: float, seed: int, prompts: str, loss: str, layers: list[int] | tuple[int, ...],
):
    from pointad_pipe.pipeline.config import build_config
    from pointad_pipe.pipeline.train import TrainConfig

    return build_config(TrainConfig, {}, {
        "epochs": epochs, "batch_size": batch_size, "lr": lr, "seed": seed, "prompts": prompts,
        "losses": tuple(t.strip() for t in loss.split(",") if t.strip()), "layers": tuple(layers)}, "train")


@app.command()
def evaluate(
    dataset: DatasetOpt,
    checkpoint: Annotated[Path, typer.Option(help="A prompts .pt written by `train` (its .json sidecar beside it).")],
    out: Annotated[Path, typer.Option(
        help="Run folder: scores.zarr, metrics.json/.csv, report.md, figures/, clouds/<class>/<id>.ply.")],
    catalog: CatalogOpt = Path("data_catalog.yaml"),
    cache: CacheOpt = None,
    protocol: Annotated[str, typer.Option(
        help="one-vs-rest: the training dataset's other classes; cross-dataset: every class of --dataset, "
        "which must be encoded by the checkpoint's model and weights.")] = "one-vs-rest",
    classes: Annotated[list[str] | None, typer.Option(
        "--classes", help="Only these classes (repeat the flag). Default: every class the protocol scores.")] = None,
    rgb: Annotated[bool, typer.Option(
        "--rgb", help="Fuse the registered RGB image's scores into the point map and global score "
        "(organized sources with colour; no retraining).")] = False,
    rgb_only: Annotated[bool, typer.Option("--rgb-only", help="Score from the RGB image alone (an ablation).")] = False,
    ply: Annotated[bool, typer.Option(help="Write every scored cloud as .ply under clouds/.")] = True,
    montage: Annotated[int, typer.Option(help="Samples per class in the report's montage.")] = 4,
    weights: Annotated[str | None, typer.Option(help="The weights file the cache was encoded with.")] = None,
) -> None:
    """Score cached samples with trained prompts: I-AUROC, AP, P-AUROC and both AUPROs per class, and a report."""

    def body() -> int:
        from pointad_pipe.pipeline.errors import PointadError
        from pointad_pipe.pipeline.evaluate import EvalOptions
        from pointad_pipe.pipeline.evaluate import evaluate as run_eval

        if rgb and rgb_only:
            raise PointadError("--rgb and --rgb-only exclude each other")
        cat = _catalog(catalog, cache)
        opts = EvalOptions(protocol=protocol, classes=classes, weights=weights,
                           modality="rgb" if rgb_only else "fused" if rgb else "point", write_ply=ply,
                           montage_samples=montage)
        report = run_eval(cat, cat.dataset(dataset), checkpoint, out, opts)
        print_table(report)
        typer.echo(f"report: {out / 'report.md'}")
        return 0

    raise typer.Exit(_guard(body))


@app.command()
def benchmark(
    dataset: DatasetOpt,
    train_classes: Annotated[str, typer.Option(
        "--train-classes", help="Comma-separated training classes, one checkpoint each (paper: carrot,cookie,dowel).")],
    out: Annotated[Path, typer.Option(
        help="Folder: train_<class>_<key>/, eval_<class>/, benchmark.md/.csv/.json.")],
    catalog: CatalogOpt = Path("data_catalog.yaml"),
    cache: CacheOpt = None,
    split: Annotated[str, typer.Option(help="Split to train on (the paper: the class's test split).")] = "test",
    epochs: Annotated[int, typer.Option(help="Epochs per checkpoint.")] = 15,
    batch_size: Annotated[int, typer.Option(help="Clouds per step.")] = 4,
    lr: Annotated[float, typer.Option(help="Adam learning rate.")] = 1e-3,
    seed: Annotated[int, typer.Option(help="Seed of every run.")] = 111,
    loss: Annotated[str, typer.Option(help="Loss terms, a subset of 3dg,3dl,2dg,2dl.")] = "3dg,3dl,2dg,2dl",
    rgb: Annotated[bool, typer.Option("--rgb", help="Evaluate with RGB fusion (organized sources with colour).")]
    = False,
    ply: Annotated[bool, typer.Option(help="Write the scored clouds of every run.")] = False,
    weights: Annotated[str | None, typer.Option(help="The weights file the cache was encoded with.")] = None,
    device: Annotated[str, typer.Option(help="auto (CUDA when present), cpu or cuda.")] = "auto",
) -> None:
    """Train (or reuse) one checkpoint per training class, evaluate each one-vs-rest, and tabulate mean ± std.

    A finished checkpoint with the same cache and config is reused; a run cut short resumes.
    """

    def body() -> int:
        from pointad_pipe.pipeline.benchmark import benchmark as run_benchmark
        from pointad_pipe.pipeline.encode_stage import resolve_device
        from pointad_pipe.pipeline.evaluate import EvalOptions

        cat = _catalog(catalog, cache)
        classes = [c.strip() for c in train_classes.split(",") if c.strip()]
        cfg = _train_config(epochs, batch_size, lr, seed, "agnostic", loss, ())
        opts = EvalOptions(weights=weights, modality="fused" if rgb else "point", write_ply=ply)
        run_benchmark(cat, cat.dataset(dataset), classes, out, cfg, opts, resolve_device(device), split,
                      log=lambda m: typer.echo(m, err=True))
        typer.echo((out / "benchmark.md").read_text())
        return 0

    raise typer.Exit(_guard(body))


@app.command()
def predict(
    files: Annotated[list[Path], typer.Argument(
        help="Clouds or meshes to score: .ply .pcd .npy .stl .obj .off, or an MVTec-style xyz .tiff.")],
    checkpoint: Annotated[Path, typer.Option(help="A prompts .pt written by `train` (its .json sidecar beside it).")],
    out: Annotated[Path, typer.Option(help="Folder for <name>.ply, <name>_views.png and <name>.json per file.")],
    rgb: Annotated[list[Path] | None, typer.Option(
        "--rgb", help="The registered RGB image of a .tiff, fused into its scores; repeat once per FILE, in order.")]
    = None,
    weights: Annotated[str | None, typer.Option(help="The weights file the checkpoint's cache was encoded with.")]
    = None,
    device: Annotated[str, typer.Option(help="auto (CUDA when present), cpu or cuda.")] = "auto",
) -> None:
    """Score your own files with a trained checkpoint: clean, render, encode and score in memory (no catalog).

    The model is loaded once for all FILES. A file that cannot be read or scored is reported and
    skipped; the others are still scored, and the exit code is 1 when any file failed.
    """

    def body() -> int:
        from tqdm import tqdm

        from pointad_pipe.pipeline.encode_stage import resolve_device
        from pointad_pipe.pipeline.errors import PointadError, SampleError
        from pointad_pipe.pipeline.predict import Predictor, write_prediction
        from pointad_pipe.pipeline.runner import progress

        if rgb and len(rgb) != len(files):
            raise PointadError(f"--rgb was given {len(rgb)} times for {len(files)} files; give one per file, in order")
        predictor = Predictor(checkpoint, weights, resolve_device(device), "fused" if rgb else "point")
        out.mkdir(parents=True, exist_ok=True)
        failures = []
        bar = progress(len(files), "predict", "file", enabled=len(files) > 1)
        for i, path in enumerate(files):
            try:
                pred = predictor.predict(path, rgb[i] if rgb else None)
                rec = write_prediction(pred, out, {"checkpoint": str(checkpoint), "model": predictor.ckpt.side["model"],
                                                   "modality": predictor.modality})
                # tqdm.write keeps messages off the progress bar's line
                tqdm.write(f"{path}: global score {rec['global_score']:.4f} -> {out / rec['ply']}", file=sys.stdout)
            except Exception as exc:  # noqa: BLE001 - one bad file must not stop the others
                failures.append((path, exc))
                text = str(exc) if isinstance(exc, SampleError) else f"{path}: {type(exc).__name__}: {exc}"
                msg = f"error: {text}"
                tqdm.write(typer.style(msg, fg=typer.colors.RED) if sys.stderr.isatty() else msg, file=sys.stderr)
            bar.update(1)
        bar.close()
        if failures:
            typer.echo(f"{len(failures)} of {len(files)} files failed: " + ", ".join(str(p) for p, _ in failures),
                       err=True)
        return 1 if failures else 0

    raise typer.Exit(_guard(body))


@app.command()
def demo(
    folder: Annotated[Path, typer.Option(help="Demo folder: catalog.yaml, data/, cache/, runs/.")] = Path("demo"),
    weights: Annotated[str | None, typer.Option(
        help="A CLIP ViT-L-14-336 weights file: run the real backbone instead of the random-init `tiny`.")] = None,
    train_class: Annotated[str, typer.Option(help="The class to train on; the others are evaluated.")] = "ball",
    epochs: Annotated[int, typer.Option(help="Training epochs.")] = 15,
    workers: Annotated[int, typer.Option(
        "--workers", "-j", help="Worker processes for clean/render/encode; 0 (default) runs them in this "
        "process, the quickest for the demo's 35 samples.")] = 0,
    device: Annotated[str, typer.Option(help="auto (CUDA when present), cpu or cuda.")] = "auto",
) -> None:
    """Run everything on generated data: make data, clean, render, encode, train on one class, evaluate the rest.

    Nothing is downloaded. A second run reuses every cache and checkpoint and only prints.
    """

    def body() -> int:
        import time

        from pointad_pipe.pipeline.demo import DemoOptions, run_demo

        start = time.perf_counter()
        res = run_demo(DemoOptions(folder=folder, train_class=train_class, weights=weights, epochs=epochs,
                                   workers=workers, device=device),
                       log=lambda m: typer.echo(m, err=True))
        print_table(res["metrics"])
        typer.echo(f"report: {res['report']}")
        typer.echo(f"catalog: {folder / 'catalog.yaml'}  (use --catalog with the other commands)")
        if res["model"] == "tiny":
            typer.echo("note: random-init `tiny` features measure the pipeline, not CLIP's zero-shot transfer; "
                       "`pointad-pipe demo --weights ViT-L-14-336.pt` runs the real backbone.")
        typer.echo(f"{'all stages reused' if res['reused'] else 'done'} in {time.perf_counter() - start:.1f} s")
        return 0

    raise typer.Exit(_guard(body))


def print_table(report: dict) -> None:
    """The metrics per class and their mean, x100 as the paper prints them."""
    from pointad_pipe.pipeline.report import METRIC_ORDER

    keys = [k for k in METRIC_ORDER if k in report["mean"]] + sorted(set(report["mean"]) - set(METRIC_ORDER))
    typer.echo(f"{'class':>16}  " + "  ".join(f"{k:>14}" for k in keys))
    for cls, vals in [*report["per_class"].items(), ("mean", report["mean"])]:
        typer.echo(f"{cls:>16}  " + "  ".join(f"{100 * vals.get(k, float('nan')):>14.1f}" for k in keys))


@app.command()
def gc(
    catalog: CatalogOpt = Path("data_catalog.yaml"),
    cache: CacheOpt = None,
    dataset: Annotated[str | None, typer.Option("--dataset", "-d", help="Only this dataset.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List what would be removed; remove nothing.")] = False,
    strict: Annotated[bool, typer.Option(
        "--strict", help="Also remove render variants (e.g. made with --visibility) that are not the catalog's.")]
    = False,
) -> None:
    """Remove cache groups the current catalog no longer leads to (an old clean config, their renders, encodes)."""

    def body() -> int:
        from pointad_pipe.pipeline.gc import remove, stale_groups
        from pointad_pipe.pipeline.status import human_size

        cat = _catalog(catalog, cache)
        total, count = 0, 0
        for name in [dataset] if dataset else list(cat.datasets):
            entry = cat.dataset(name)
            if not store_exists(cat.cache, name):
                continue
            stale = stale_groups(cat, entry, strict)
            for item in stale:
                typer.echo(f"{name}: {item.stage}/{item.fingerprint}  {human_size(item.size)}  ({item.reason})")
                total += item.size or 0
                count += 1
            if stale and not dry_run:
                remove(cat, entry, stale)
        verb = "would remove" if dry_run else "removed"
        typer.echo(f"{verb} {count} group(s), {human_size(total)}" + (" (dry run)" if dry_run else ""))
        return 0

    raise typer.Exit(_guard(body))


def store_exists(cache_root: str, dataset: str) -> bool:
    """False for a local dataset store that was never written (nothing to collect)."""
    from pointad_pipe.pipeline.store import dataset_url

    url = dataset_url(cache_root, dataset)
    return "://" in url or Path(url).exists()


@app.command()
def status(
    catalog: CatalogOpt = Path("data_catalog.yaml"),
    cache: CacheOpt = None,
    dataset: Annotated[str | None, typer.Option("--dataset", "-d", help="Only this dataset.")] = None,
) -> None:
    """List each dataset's stage groups: fingerprint, done and failed rows, disk size."""

    def body() -> int:
        from pointad_pipe.pipeline.status import dataset_status

        cat = _catalog(catalog, cache)
        names = [dataset] if dataset else list(cat.datasets)
        for name in names:
            cat.dataset(name)
            for line in dataset_status(cat.cache, name):
                typer.echo(line)
        return 0

    raise typer.Exit(_guard(body))


def main() -> None:
    """Entry point for `python -m pointad_pipe.cli.main`."""
    app()


if __name__ == "__main__":
    sys.exit(main())
