"""Shared fixtures: no test touches a real cache or dataset; synthetic trees are built once per run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

ROOT = Path(__file__).resolve().parents[1]
# The outside contract checker: the team's shared copy when the checkout sits beside it, otherwise
# the snapshot in tests/contract/ (a verbatim copy, so that a lone clone, as in CI, still checks).
SHARED_CHECKER = ROOT.parent / "shared" / "tools" / "check_cache.py"
CHECKER = SHARED_CHECKER if SHARED_CHECKER.is_file() else ROOT / "tests" / "contract" / "check_cache.py"


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run every test in its own folder, so relative cache paths never hit the project's cache."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic dataset in both layouts (shared by the whole run; never modified)."""
    from pointad_pipe.pipeline.loaders.synthetic import make_synthetic

    out = tmp_path_factory.mktemp("synthetic")
    make_synthetic(out, seed=0, n_train=1, n_test_good=1, n_test_per_defect=1)
    return out


@pytest.fixture(scope="session")
def learn_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Catalog of two synthetic classes (test split, 4 samples per defect kind, RGB), encoded with `tiny`."""
    from pointad_pipe.pipeline.loaders.synthetic import make_synthetic

    from .test_pipeline import SYNTH, run_cli

    base = tmp_path_factory.mktemp("learn")
    make_synthetic(base / "syn", seed=3, classes=["ball", "box"], n_train=1, n_test_good=4, n_test_per_defect=4,
                   layouts=("mvtec3d",))
    cat = write_catalog(base, {"s": {"format": "mvtec3d", "root": str(base / "syn" / "mvtec3d"),
                                     "splits": ["test"], **SYNTH}})
    code, out = run_cli("encode", "--catalog", str(cat), "-d", "s", "--model", "tiny", "-j", "0")
    assert code == 0, out
    return cat


@pytest.fixture(scope="session")
def ball_checkpoint(learn_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Prompts trained for 2 epochs on the `ball` class of `learn_cache`."""
    from .test_pipeline import run_cli

    out = tmp_path_factory.mktemp("ball_run")
    code, text = run_cli("train", "--catalog", str(learn_cache), "-d", "s", "--train-class", "ball", "--out",
                         str(out), "--epochs", "2")
    assert code == 0, text
    return out / "prompts.pt"


@pytest.fixture
def mvtec_ball(synthetic_root: Path, tmp_path: Path) -> Path:
    """A private copy of one synthetic MVTec class (8 samples), safe to break."""
    import shutil

    dst = tmp_path / "mvtec"
    shutil.copytree(synthetic_root / "mvtec3d" / "ball", dst / "ball")
    return dst


def write_catalog(folder: Path, datasets: dict, cache: str = "cache") -> Path:
    """Write a catalog file into `folder` and return its path."""
    path = folder / "catalog.yaml"
    path.write_text(yaml.safe_dump({"cache": str(folder / cache), "datasets": datasets}))
    return path


def kill_when_done(cmd: list[str], url: Path, stage: str, rows: int, timeout: float = 120) -> None:
    """Start `cmd`, SIGKILL it as soon as `rows` rows of `stage` are done in the cache at `url`."""
    import signal
    import subprocess
    import time

    import zarr

    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline, killed = time.time() + timeout, False
    while time.time() < deadline and proc.poll() is None:
        try:
            done = sum(int(g["done"][:].sum()) for _, g in zarr.open_group(str(url), mode="r")[stage].groups())
        except Exception:  # the group is not there yet
            done = 0
        if done >= rows:
            proc.send_signal(signal.SIGKILL)
            killed = True
            break
        time.sleep(0.02)
    proc.wait()
    assert killed, "the run ended before it could be killed"
