"""Shared fixtures: no test touches a real cache or dataset; synthetic trees are built once per run.

The session fixtures build their caches and checkpoints with the library (the jobs the CLI calls), never
through the command line, so that unit tests never go through it. Helpers live in tests/helpers.py.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

# before anything loads numpy or torch (tests/helpers.py imports numpy)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from .helpers import SYNTH, write_catalog  # noqa: E402


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run every test in its own folder, so relative cache paths never hit the project's cache."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic dataset in both layouts (shared by the whole run; never modified)."""
    from pointad_pipe.pipeline.synthetic.generator import make_synthetic

    out = tmp_path_factory.mktemp("synthetic")
    make_synthetic(out, seed=0, n_train=1, n_test_good=1, n_test_per_defect=1)
    return out


@pytest.fixture(scope="session")
def learn_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Catalog of two synthetic classes (test split, 4 samples per defect kind, RGB), encoded with `tiny`."""
    from pointad_pipe.pipeline.cache.runner import RunOptions
    from pointad_pipe.pipeline.catalog import load_catalog
    from pointad_pipe.pipeline.jobs.encode import EncodeOptions, run_encode
    from pointad_pipe.pipeline.synthetic.generator import make_synthetic

    base = tmp_path_factory.mktemp("learn")
    make_synthetic(base / "syn", seed=3, classes=["ball", "box"], n_train=1, n_test_good=4, n_test_per_defect=4,
                   layouts=("mvtec3d",))
    cat = write_catalog(base, {"s": {"format": "mvtec3d", "root": str(base / "syn" / "mvtec3d"),
                                     "splits": ["test"], **SYNTH}})
    catalog = load_catalog(cat)
    reports = run_encode(catalog, catalog.dataset("s"), RunOptions(workers=0, progress=False), EncodeOptions(),
                         {"model": "tiny"})
    assert [r.stage for r in reports] == ["clean", "render", "encode"]
    for rep in reports:
        assert rep.total > 0 and rep.done == rep.total and not rep.failures, rep
    return cat


@pytest.fixture(scope="session")
def ball_checkpoint(learn_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Prompts trained for 2 epochs on the `ball` class of `learn_cache`.

    `jobs.train.run_train` is the one function `pointad-pipe train` calls (select_rows, check_model, then
    train with extra={"dataset", "split"}); the defaults here are the command's.
    """
    from pointad_pipe.pipeline.catalog import load_catalog
    from pointad_pipe.pipeline.jobs.train import run_train
    from pointad_pipe.pipeline.stages.train import TrainConfig

    out = tmp_path_factory.mktemp("ball_run")
    catalog = load_catalog(learn_cache)
    path = run_train(catalog, catalog.dataset("s"), ["ball"], "test", TrainConfig(epochs=2), out, device="auto")
    assert path == out / "prompts.pt" and path.is_file()
    assert json.loads(path.with_suffix(".json").read_text())["dataset"] == "s"
    return path


@pytest.fixture
def mvtec_ball(synthetic_root: Path, tmp_path: Path) -> Path:
    """A private copy of one synthetic MVTec class (8 samples), safe to break."""
    import shutil

    dst = tmp_path / "mvtec"
    shutil.copytree(synthetic_root / "mvtec3d" / "ball", dst / "ball")
    return dst
