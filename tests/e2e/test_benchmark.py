"""`pointad-pipe benchmark`: mean ± std over training classes, from the runs' own metrics; finished runs are reused."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from ..helpers import run_cli, write_official

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def test_benchmark_two_training_classes_then_reuse(learn_cache: Path, tmp_path: Path) -> None:
    args = ["benchmark", "--catalog", str(learn_cache), "-d", "s", "--train-classes", "ball,box", "--epochs", "1",
            "--out", str(tmp_path / "b")]
    code, out = run_cli(*args)
    assert code == 0, out
    result = json.loads((tmp_path / "b" / "benchmark.json").read_text())
    assert result["train_classes"] == ["ball", "box"] and set(result["per_class"]) == {"ball", "box"}
    runs = [json.loads((tmp_path / "b" / f"eval_{c}" / "metrics.json").read_text()) for c in ("ball", "box")]
    assert set(runs[0]["per_class"]) == {"box"} and set(runs[1]["per_class"]) == {"ball"}
    for key, (mean, std, n) in result["mean"].items():
        a, b = runs[0]["mean"][key], runs[1]["mean"][key]
        assert n == 2 and mean == pytest.approx((a + b) / 2) and std == pytest.approx(abs(a - b) / math.sqrt(2))
    assert result["per_class"]["box"]["i_auroc"][:2] == [pytest.approx(runs[0]["per_class"]["box"]["i_auroc"]), 0.0]
    table = (tmp_path / "b" / "benchmark.md").read_text()
    assert "| **mean** |" in table and "±" in table
    code, out = run_cli(*args)
    assert code == 0 and out.count("reusing") == 4, out  # two checkpoints and two evaluations
    assert json.loads((tmp_path / "b" / "benchmark.json").read_text()) == result


def test_benchmark_takes_a_given_checkpoint_in_the_authors_format(ball_checkpoint: Path, learn_cache: Path,
                                                                  tmp_path: Path) -> None:
    """`--checkpoint CLASS=PATH` skips training: a released-style `.pth` is evaluated one-vs-rest, then reused."""
    write_official(ball_checkpoint, tmp_path / "released.pth")
    args = ["benchmark", "--catalog", str(learn_cache), "-d", "s", "--train-classes", "ball", "--checkpoint",
            f"ball={tmp_path / 'released.pth'}", "--out", str(tmp_path / "b")]
    code, out = run_cli(*args)
    assert code == 0 and "training on" not in out and "evaluating the given" in out, out
    run = json.loads((tmp_path / "b" / "eval_ball" / "metrics.json").read_text())
    assert run["train_classes"] == ["ball"] and set(run["per_class"]) == {"box"} and run["model"] == "tiny"
    assert not list((tmp_path / "b").glob("train_*"))
    code, out = run_cli(*args)
    assert code == 0 and "reusing the evaluation" in out, out
    code, out = run_cli(*args[:-2], "--checkpoint", "ball", "--out", str(tmp_path / "c"))
    assert code == 2 and "--checkpoint 'ball': expected CLASS=PATH" in out, out
