"""Peak RSS of `evaluate` for N and 4N samples: the issue-6 check that memory does not grow with the data.

Builds synthetic MVTec-layout datasets with `tiny` features, trains one checkpoint on `ball`, then
runs `pointad-pipe evaluate --protocol cross-dataset` in a fresh process per dataset and reads its
peak RSS (ru_maxrss of the child). Two ways to have 4x the samples:
- `classes`: 4x the classes, N samples each (the maps of one class are held at a time);
- `per-class`: one class with 4x the samples (the class's maps are what grows).

    python bench/evaluate_memory.py [--per-defect 2] [--workdir /tmp/pointad-evalmem]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

EVAL_CLASSES = ["box", "cone", "can", "bagel"]


def cli(*args: str) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "pointad_pipe.cli.main", *args], capture_output=True, text=True,
                          env=env)
    if proc.returncode:
        raise SystemExit(f"{' '.join(args[:3])} failed:\n{proc.stderr[-2000:]}")


def dataset(work: Path, name: str, classes: list[str], per_defect: int, good: int) -> Path:
    """A synthetic tree, its catalog entry, encoded with `tiny`; returns the catalog."""
    from pointad_pipe.pipeline.loaders.synthetic import make_synthetic

    make_synthetic(work / name, seed=1, classes=classes, n_train=1, n_test_good=good,
                   n_test_per_defect=per_defect, layouts=("mvtec3d",))
    cat = work / "catalog.yaml"
    spec = yaml.safe_load(cat.read_text()) if cat.is_file() else {"cache": str(work / "cache"), "datasets": {}}
    spec["datasets"][name] = {"format": "mvtec3d", "root": str(work / name / "mvtec3d"), "splits": ["test"],
                              "clean": {"units": "absolute"}}
    cat.write_text(yaml.safe_dump(spec))
    cli("encode", "--catalog", str(cat), "-d", name, "--model", "tiny", "-j", "1")
    return cat


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
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/pointad-evalmem"))
    a = ap.parse_args()
    work = a.workdir
    work.mkdir(parents=True, exist_ok=True)
    n, good = a.per_defect, a.per_defect
    cat = dataset(work, "train", ["ball"], 2, 2)
    cli("train", "--catalog", str(cat), "-d", "train", "--train-class", "ball", "--epochs", "1",
        "--out", str(work / "ckpt"))
    ckpt = work / "ckpt" / "prompts.pt"
    cases = {"1 class x N": dataset(work, "one", EVAL_CLASSES[:1], n, good),
             "4 classes x N": dataset(work, "four", EVAL_CLASSES, n, good),
             "1 class x 4N": dataset(work, "onebig", EVAL_CLASSES[:1], 4 * n, 4 * good)}
    names = {"1 class x N": "one", "4 classes x N": "four", "1 class x 4N": "onebig"}
    rss = {case: peak_rss_mb(c, names[case], ckpt, work / f"ev_{names[case]}") for case, c in cases.items()}
    from pointad_pipe.pipeline.loaders.synthetic import DEFECTS

    samples = {case: (n * len(DEFECTS) + good) * (4 if "4" in case else 1) for case in cases}
    for case, mb in rss.items():
        print(f"{case:>14}: {samples[case]:4d} samples, peak RSS {mb:7.1f} MB")
    base = rss["1 class x N"]
    print(f"4x samples as 4x classes:   peak RSS x{rss['4 classes x N'] / base:.3f} "
          f"({100 * (rss['4 classes x N'] / base - 1):+.1f} %)")
    print(f"4x samples in one class:    peak RSS x{rss['1 class x 4N'] / base:.3f} "
          f"({100 * (rss['1 class x 4N'] / base - 1):+.1f} %)")
    (work / "result.json").write_text(json.dumps({"rss_mb": rss, "samples": samples}, indent=1))


if __name__ == "__main__":
    main()
