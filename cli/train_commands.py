"""Commands that learn prompts from the cache: train, benchmark."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from .options import (
    ALL_LOSSES,
    DEFAULT_CATALOG,
    CacheOpt,
    CacheWeightsOpt,
    CatalogOpt,
    DatasetOpt,
    DeviceOpt,
    LossOpt,
    fail,
    guarded,
    int_list,
    load,
    name_list,
)


def train_config(epochs: int, batch_size: int, lr: float, seed: int, prompts: str, loss: str,
                 layers: tuple[int, ...]) -> Any:
    """A TrainConfig from the flags (a bad `--loss` or `--prompts` is reported by `guarded`)."""
    from pointad_pipe.pipeline.stages.train import TrainConfig

    return TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, prompts=prompts,
                       losses=tuple(name_list(loss)), layers=layers)


def train(
    dataset: DatasetOpt,
    train_class: Annotated[list[str], typer.Option(
        "--train-class", help="Class(es) whose samples train the prompts (repeat the flag for several).")],
    out: Annotated[Path, typer.Option(help="Run folder for checkpoints and their JSON sidecars.")],
    catalog: CatalogOpt = DEFAULT_CATALOG,
    cache: CacheOpt = None,
    split: Annotated[str, typer.Option(
        help="Split to train on; the paper uses the class's test split, the only one with anomalies.")] = "test",
    epochs: Annotated[int, typer.Option(help="Epochs.")] = 15,
    batch_size: Annotated[int, typer.Option(help="Clouds per step (all their views).")] = 4,
    lr: Annotated[float, typer.Option(help="Adam learning rate (betas 0.5, 0.999).")] = 1e-3,
    seed: Annotated[int, typer.Option(help="Seed of the prompt init and the data order.")] = 111,
    prompts: Annotated[str, typer.Option(help="agnostic (the paper's PointAD) or coop (class names).")] = "agnostic",
    loss: Annotated[str, typer.Option(help="Loss terms to use, a subset of 3dg,3dl,2dg,2dl.")] = ALL_LOSSES,
    layers: Annotated[str | None, typer.Option(
        help="Cached blocks to score, comma-separated (default: the last cached, 24 for ViT-L).")] = None,
    model: Annotated[str | None, typer.Option(help="Must match the cache's model (default: the cache's).")] = None,
    weights: CacheWeightsOpt = None,
    encode_fp: Annotated[str | None, typer.Option(
        "--encode-fingerprint", help="Which encode group to read (default: the newest).")] = None,
    device: DeviceOpt = "auto",
    resume: Annotated[bool, typer.Option(help="Continue from the run folder's last epoch.")] = False,
) -> None:
    """Learn the text prompts from cached features only (no image is encoded again)."""

    def body() -> int:
        from pointad_pipe.pipeline.jobs.train import run_train

        cat = load(catalog, cache)
        cfg = train_config(epochs, batch_size, lr, seed, prompts, loss, int_list(layers, "--layers") or ())
        path = run_train(cat, cat.dataset(dataset), list(train_class), split, cfg, out, model=model, weights=weights,
                         encode_fp=encode_fp, device=device, resume=resume, log=lambda m: typer.echo(m, err=True))
        typer.echo(f"prompts: {path}")
        return 0

    guarded(body)


def benchmark(
    dataset: DatasetOpt,
    train_classes: Annotated[str, typer.Option(
        "--train-classes", help="Comma-separated training classes, one checkpoint each (paper: carrot,cookie,dowel).")],
    out: Annotated[Path, typer.Option(
        help="Folder: train_<class>_<key>/, eval_<class>/, benchmark.md/.csv/.json.")],
    catalog: CatalogOpt = DEFAULT_CATALOG,
    cache: CacheOpt = None,
    split: Annotated[str, typer.Option(help="Split to train on (the paper: the class's test split).")] = "test",
    epochs: Annotated[int, typer.Option(help="Epochs per checkpoint.")] = 15,
    batch_size: Annotated[int, typer.Option(help="Clouds per step.")] = 4,
    lr: Annotated[float, typer.Option(help="Adam learning rate.")] = 1e-3,
    seed: Annotated[int, typer.Option(help="Seed of every run.")] = 111,
    loss: LossOpt = ALL_LOSSES,
    rgb: Annotated[bool, typer.Option("--rgb", help="Evaluate with RGB fusion (organized sources with colour).")]
    = False,
    ply: Annotated[bool, typer.Option(help="Write the scored clouds of every run.")] = False,
    weights: CacheWeightsOpt = None,
    device: DeviceOpt = "auto",
    checkpoint: Annotated[list[str] | None, typer.Option(
        "--checkpoint", help="CLASS=PATH: use this checkpoint for CLASS instead of training one (ours, or the "
        "PointAD authors' .pth); repeat for several.")] = None,
) -> None:
    """Train (or reuse) one checkpoint per training class, evaluate each one-vs-rest, and tabulate mean ± std.

    A finished checkpoint with the same cache and config is reused; a run cut short resumes.
    """

    def body() -> int:
        from pointad_pipe.pipeline.jobs.benchmark import benchmark as run_benchmark
        from pointad_pipe.pipeline.jobs.evaluate import EvalOptions

        cat = load(catalog, cache)
        cfg = train_config(epochs, batch_size, lr, seed, "agnostic", loss, ())
        opts = EvalOptions(weights=weights, modality="fused" if rgb else "point", write_ply=ply)
        given = {}
        for item in checkpoint or []:
            cls, sep, path = item.partition("=")
            if not sep or not cls or not path:
                raise fail(f"--checkpoint {item!r}: expected CLASS=PATH")
            given[cls] = Path(path)
        run_benchmark(cat, cat.dataset(dataset), name_list(train_classes), out, cfg, opts, device, split,
                      log=lambda m: typer.echo(m, err=True), given=given)
        typer.echo((out / "benchmark.md").read_text())
        return 0

    guarded(body)
