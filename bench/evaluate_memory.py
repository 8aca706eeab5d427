"""Peak RSS of `evaluate` for N and 4N samples: the issue-6 check that memory does not grow with the data.

Builds synthetic MVTec-layout datasets with `tiny` features and trains one checkpoint on `ball` (the
encode and train jobs, in one child process), then runs `pointad-pipe evaluate --protocol
cross-dataset` in a fresh process per dataset and reads its peak RSS (ru_maxrss of the child). Two
ways to have 4x the samples:
- `classes`: 4x the classes, N samples each (the maps of one class are held at a time);
- `per-class`: one class with 4x the samples (the class's maps are what grows).

    python bench/evaluate_memory.py [--per-defect 2] [--workdir /tmp/pointad-evalmem] [--smoke]

`--factor` (default 4) is how many times the samples grow. `--smoke`: N = 1, 2x instead of 4x, one
training sample per defect kind, small scenes (a 112^2 grid, 2 views of 112^2), datasets encoded
without worker processes, in a throw-away work folder (unless `--workdir` is given): a check that the
bench runs, not a figure.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

EVAL_CLASSES = ["box", "cone", "can", "bagel"]
WORKDIR = Path("/tmp/pointad-evalmem")
#: Catalog overrides of each dataset entry: `full` keeps the format's defaults; `small` (for --smoke)
#: resamples the scans to a 112^2 grid and renders 2 views of 112^2, a fraction of every stage's work.
SCENES = {"full": {"scan": {}, "clean": {}, "rest": {}},
          "small": {"scan": {"size": (128, 160)}, "clean": {"grid_size": 112},
                    "rest": {"render": {"views": [["x", 0], ["y", 15]], "image_size": 112}}}}
SMOKE = {"per_defect": 1, "factor": 2, "train_per_defect": 1, "encode_workers": 0, "scene": "small"}


def dataset(work: Path, name: str, classes: list[str], per_defect: int, good: int, scene: str = "full") -> Path:
    """A synthetic tree and its catalog entry; returns the catalog."""
    from pointad_pipe.pipeline.synthetic.generator import make_synthetic

    extra = SCENES[scene]
    make_synthetic(work / name, seed=1, classes=classes, n_train=1, n_test_good=good,
                   n_test_per_defect=per_defect, layouts=("mvtec3d",), **extra["scan"])
    cat = work / "catalog.yaml"
    spec = yaml.safe_load(cat.read_text()) if cat.is_file() else {"cache": str(work / "cache"), "datasets": {}}
    spec["datasets"][name] = {"format": "mvtec3d", "root": str(work / name / "mvtec3d"), "splits": ["test"],
                              "clean": {"units": "m", **extra["clean"]}, **extra["rest"]}
    cat.write_text(yaml.safe_dump(spec))
    return cat


def prepare(cat: Path, names: list[str], workers: int, ckpt: Path) -> None:
    """Encode the datasets `names` with `tiny` and train one epoch on `ball` of the first, in one fresh process.

    Not in this process: ru_maxrss survives exec, so an evaluate child of a process that had loaded the
    model would report that peak, not its own. One child pays the imports once for every dataset.
    """
    args = json.dumps([str(cat), names, workers, str(ckpt)])
    code = (f"import json, sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import evaluate_memory as b; "
            f"b.encode_and_train(*json.loads({args!r}))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if proc.returncode:
        raise SystemExit(f"preparing {names} failed:\n{proc.stderr[-2000:]}")


def encode_and_train(cat: str, names: list[str], workers: int, ckpt: str) -> None:
    """What `encode --model tiny -j <workers>` does for each dataset, then `train --train-class ball --epochs 1`."""
    from pointad_pipe.pipeline.cache.runner import RunOptions
    from pointad_pipe.pipeline.catalog import load_catalog
    from pointad_pipe.pipeline.jobs.encode import EncodeOptions, run_encode
    from pointad_pipe.pipeline.jobs.train import run_train
    from pointad_pipe.pipeline.stages.train import TrainConfig

    catalog = load_catalog(Path(cat))
    for name in names:  # as the command: a failed row is reported, a stage that did nothing fails
        reports = run_encode(catalog, catalog.dataset(name), RunOptions(workers=workers), EncodeOptions(),
                             {"model": "tiny"})
        if any(r.exit_code(strict=False) for r in reports):
            raise SystemExit(f"encode {name}: {[f for r in reports for f in r.failures][:3]}")
    run_train(catalog, catalog.dataset(names[0]), ["ball"], "test", TrainConfig(epochs=1), Path(ckpt))


def peak_rss_mb(cat: Path, name: str, ckpt: Path, out: Path) -> float:
    """Run evaluate in a child process; its peak resident set in MB."""
    code = ("import resource, sys; from pointad_pipe.cli.main import app\n"
            "try:\n    app(sys.argv[1:])\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
            "print('RSS', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
    proc = subprocess.run([sys.executable, "-c", code, "evaluate", "--catalog", str(cat), "-d", name,
                           "--checkpoint", str(ckpt), "--protocol", "cross-dataset", "--out", str(out)],
                          capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    line = [x for x in proc.stdout.splitlines() if x.startswith("RSS")]
    if proc.returncode or not line:
        raise SystemExit(f"evaluate {name} failed:\n{proc.stderr[-2000:]}")
    return int(line[0].split()[1]) / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-defect", type=int, default=2, help="N: test samples per defect kind and class")
    ap.add_argument("--factor", type=int, default=4, choices=range(2, len(EVAL_CLASSES) + 1),
                    help="how many times the samples grow (classes, or samples per class)")
    ap.add_argument("--train-per-defect", type=int, default=2, help="training samples per defect kind")
    ap.add_argument("--encode-workers", type=int, default=1, help="encode workers when building the datasets")
    ap.add_argument("--scene", choices=sorted(SCENES), default="full", help="full scans, or small ones (smoke)")
    ap.add_argument("--workdir", type=Path, default=None, help=f"default {WORKDIR} (--smoke: a temporary folder)")
    ap.add_argument("--smoke", action="store_true", help=f"tiny sizes {SMOKE} (explicit flags still win)")
    if ap.parse_known_args()[0].smoke:
        ap.set_defaults(**SMOKE)
    a = ap.parse_args()
    if a.workdir is None and a.smoke:
        with tempfile.TemporaryDirectory(prefix="pointad-evalmem-") as tmp:
            run(a, Path(tmp))
    else:
        run(a, a.workdir or WORKDIR)


def run(a: argparse.Namespace, work: Path) -> None:
    work.mkdir(parents=True, exist_ok=True)
    n, good, k, t = a.per_defect, a.per_defect, a.factor, a.train_per_defect
    scene = a.scene
    dataset(work, "train", ["ball"], t, t, scene)
    many = {2: "two", 3: "three", 4: "four"}[k]
    one, classes, big = "1 class x N", f"{k} classes x N", f"1 class x {k}N"
    cases = {one: dataset(work, "one", EVAL_CLASSES[:1], n, good, scene),
             classes: dataset(work, many, EVAL_CLASSES[:k], n, good, scene),
             big: dataset(work, "onebig", EVAL_CLASSES[:1], k * n, k * good, scene)}
    names = {one: "one", classes: many, big: "onebig"}
    prepare(work / "catalog.yaml", ["train", *names.values()], a.encode_workers, work / "ckpt")
    ckpt = work / "ckpt" / "prompts.pt"
    rss = {case: peak_rss_mb(c, names[case], ckpt, work / f"ev_{names[case]}") for case, c in cases.items()}
    from pointad_pipe.pipeline.synthetic.generator import DEFECTS

    samples = {case: (n * len(DEFECTS) + good) * (1 if case == one else k) for case in cases}
    for case, mb in rss.items():
        print(f"{case:>14}: {samples[case]:4d} samples, peak RSS {mb:7.1f} MB")
    base = rss[one]
    print(f"{k}x samples as {k}x classes:   peak RSS x{rss[classes] / base:.3f} "
          f"({100 * (rss[classes] / base - 1):+.1f} %)")
    print(f"{k}x samples in one class:    peak RSS x{rss[big] / base:.3f} "
          f"({100 * (rss[big] / base - 1):+.1f} %)")
    (work / "result.json").write_text(json.dumps({"rss_mb": rss, "samples": samples}, indent=1))


if __name__ == "__main__":
    main()
