"""Commands that score with a trained checkpoint: evaluate, predict, and the demo that runs it all."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from .options import (
    DEFAULT_CATALOG,
    CacheOpt,
    CacheWeightsOpt,
    CatalogOpt,
    CheckpointOpt,
    DatasetOpt,
    DeviceOpt,
    StrictOpt,
    fail,
    guarded,
    load,
    print_table,
)


def evaluate(
    dataset: DatasetOpt,
    checkpoint: CheckpointOpt,
    out: Annotated[Path, typer.Option(
        help="Run folder: scores.zarr, metrics.json/.csv, report.md, report.html (open it in a browser), figures/, "
        "clouds/<class>/<id>.ply.")],
    catalog: CatalogOpt = DEFAULT_CATALOG,
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
    errors: Annotated[int, typer.Option(
        help="report.html's error analysis: this many top false positives and missed defects per class, "
        "each with its views (0: none).")] = 3,
    weights: CacheWeightsOpt = None,
    train_class: Annotated[list[str] | None, typer.Option(
        "--train-class", help="For an authors'-format checkpoint (.pth, no sidecar): the class(es) it was trained "
        "on, left out of one-vs-rest (repeat the flag). Ours record them.")] = None,
    strict: StrictOpt = False,
) -> None:
    """Score cached samples with trained prompts: I-AUROC, AP, P-AUROC and both AUPROs per class, and a report."""

    def body() -> int:
        from pointad_pipe.pipeline.jobs.evaluate import EvalOptions
        from pointad_pipe.pipeline.jobs.evaluate import evaluate as run_eval

        if rgb and rgb_only:
            raise fail("--rgb and --rgb-only exclude each other")
        cat = load(catalog, cache)
        opts = EvalOptions(protocol=protocol, classes=classes, weights=weights,
                           modality="rgb" if rgb_only else "fused" if rgb else "point", write_ply=ply,
                           montage_samples=montage, errors=errors, train_classes=tuple(train_class or ()))
        report = run_eval(cat, cat.dataset(dataset), checkpoint, out, opts)
        print_table(report)
        for cls, info in report["skipped"].items():
            typer.echo(f"not scored: {cls}: {info['why']}", err=True)
        typer.echo(f"report: {out / 'report.md'}")
        typer.echo(f"report.html: {out / 'report.html'} (opens from disk in a browser)")
        return 1 if strict and report["skipped"] else 0

    guarded(body)


def _file_error(path: Path, exc: Exception) -> str:
    from pointad_pipe.pipeline.errors import PointadError, SampleError

    from .messages import describe

    if isinstance(exc, SampleError):
        return str(exc)
    return f"{path}: {describe(exc) if isinstance(exc, PointadError) else f'{type(exc).__name__}: {exc}'}"


def predict(
    files: Annotated[list[Path], typer.Argument(
        help="Clouds or meshes to score: .ply .pcd .npy .stl .obj .off, or an MVTec-style xyz .tiff.")],
    checkpoint: Annotated[Path, typer.Option(
        help="A prompts .pt written by `train` (its .json sidecar beside it), or an official PointAD checkpoint "
        "(the authors' {\"prompt_learner\": ...} .pth, no sidecar); the format is read from the file.")],
    out: Annotated[Path, typer.Option(
        help="Folder for <name>.ply, <name>_views.png, <name>.html (the cloud in 3D) and <name>.json per file.")],
    rgb: Annotated[list[Path] | None, typer.Option(
        "--rgb", help="The registered RGB image of a .tiff, fused into its scores; repeat once per FILE, in order.")]
    = None,
    weights: Annotated[str | None, typer.Option(
        help="The weights file the checkpoint's cache was encoded with; for an official checkpoint, the "
        "--model's weights (default: found as for encode).")] = None,
    model: Annotated[str | None, typer.Option(
        help="Only for an official checkpoint: the CLIP it was trained on, ViT-L-14-336 (default), ViT-B-16 or "
        "tiny; its text width must be the checkpoint's. Ours name their model in the sidecar (another is refused).")]
    = None,
    device: DeviceOpt = "auto",
    page: Annotated[bool, typer.Option(
        "--html/--no-html", help="Write <name>.html, the cloud in 3D with its views (about 5 MB each: it carries "
        "its own plotly.js).")] = True,
) -> None:
    """Score your own files with a trained checkpoint: clean, render, encode and score in memory (no catalog).

    The model is loaded once for all FILES. A file that cannot be read or scored is reported and
    skipped; the others are still scored, and the exit code is 1 when any file failed.

    An official PointAD checkpoint carries no sidecar: FILES are cleaned, rendered and encoded with
    the default settings and scored on the last block of --model, the layer the authors trained on.
    """

    def body() -> int:
        from tqdm import tqdm

        from pointad_pipe.pipeline.cache.runner import progress
        from pointad_pipe.pipeline.jobs.predict import predict_files

        if rgb and len(rgb) != len(files):
            raise fail(f"--rgb was given {len(rgb)} times for {len(files)} files; give one per file, in order")
        bars: list = []  # started by the first file's outcome: the model loads (or fails) before any bar

        def tick() -> None:
            if not bars:
                bars.append(progress(len(files), "predict", "file", enabled=len(files) > 1))
            bars[0].update(1)

        def scored(path: Path, rec: dict) -> None:
            # tqdm.write keeps messages off the progress bar's line
            note = (f" (sampled from {rec['input_points']:,} to {rec['sampled_to']:,}, the clean step's cap)"
                    if rec["sampled_to"] else "")
            tqdm.write(f"{path}: global score {rec['global_score']:.4f} -> {out / rec['ply']}{note}", file=sys.stdout)
            tick()

        def failed(path: Path, exc: Exception) -> None:
            msg = f"error: {_file_error(path, exc)}"
            tqdm.write(typer.style(msg, fg=typer.colors.RED) if sys.stderr.isatty() else msg, file=sys.stderr)
            tick()

        failures = predict_files(files, checkpoint, out, rgb, weights, device, scored, failed, model, html=page)
        for bar in bars:
            bar.close()
        if failures:
            typer.echo(f"{len(failures)} of {len(files)} files failed: " + ", ".join(str(p) for p in failures),
                       err=True)
        return 1 if failures else 0

    guarded(body)


def demo(
    folder: Annotated[Path, typer.Option(help="Demo folder: catalog.yaml, data/, cache/, runs/.")] = Path("demo"),
    weights: Annotated[str | None, typer.Option(
        help="A CLIP ViT-L-14-336 weights file: run the real backbone instead of the random-init `tiny`.")] = None,
    train_class: Annotated[str, typer.Option(help="The class to train on; the others are evaluated.")] = "ball",
    epochs: Annotated[int, typer.Option(help="Training epochs.")] = 15,
    workers: Annotated[int, typer.Option(
        "--workers", "-j", help="Worker processes for clean/render/encode; 0 (default) runs them in this "
        "process, the quickest for the demo's 35 samples.")] = 0,
    device: DeviceOpt = "auto",
) -> None:
    """Run everything on generated data: make data, clean, render, encode, train on one class, evaluate the rest.

    Nothing is downloaded. A second run reuses every cache and checkpoint and only prints.
    """

    def body() -> int:
        import time

        from pointad_pipe.pipeline.jobs.demo import DemoOptions, run_demo

        from .options import console_log

        start = time.perf_counter()
        res = run_demo(DemoOptions(folder=folder, train_class=train_class, weights=weights, epochs=epochs,
                                   workers=workers, device=device), log=console_log)
        print_table(res["metrics"])
        typer.echo(f"report: {res['report']}")
        typer.echo(f"report.html: {res['report_html']} (open it in a browser; it needs no network)")
        typer.echo(f"catalog: {folder / 'catalog.yaml'}  (use --catalog with the other commands)")
        if res["model"] == "tiny":
            typer.echo("note: random-init `tiny` features measure the pipeline, not CLIP's zero-shot transfer; "
                       "`pointad-pipe demo --weights ViT-L-14-336.pt` runs the real backbone.")
        typer.echo(f"{'all stages reused' if res['reused'] else 'done'} in {time.perf_counter() - start:.1f} s")
        return 0

    guarded(body)
