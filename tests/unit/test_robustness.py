"""Issue 14's findings, each reproduced first (library side): worker counts, empty classes, clashing names."""

from __future__ import annotations

import json
import re
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from pointad_pipe.pipeline.cache import runner
from pointad_pipe.pipeline.errors import OptionError


def _echo(job: dict[str, Any]) -> list[tuple[int, str]]:
    return [(r, "") for r in job["rows"]]


def test_a_negative_worker_count_is_refused_before_any_work() -> None:
    with pytest.raises(OptionError, match="must be 0"):
        runner.RunOptions(workers=-1)


def test_never_more_worker_processes_than_jobs(monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[int] = []

    class Client:
        def submit(self, fn: Any, job: dict[str, Any], **_: Any) -> Any:
            class Done:
                def result(self) -> Any:
                    return fn(job)
            return Done()

    @contextmanager
    def fake_client(workers: int, scheduler: str | None):  # noqa: ANN202
        started.append(workers)
        yield Client()

    monkeypatch.setattr(runner, "_client", fake_client)
    monkeypatch.setattr("dask.distributed.as_completed", lambda futures: list(futures))
    jobs = [{"rows": [0]}, {"rows": [1]}]
    out = runner.run_tasks(_echo, jobs, workers=64, scheduler=None, desc="t", on_results=lambda r: None,
                           show_progress=False)
    assert out == {0: "", 1: ""} and started == [2]


@pytest.mark.slow
def test_a_class_with_nothing_encoded_is_reported_and_the_others_scored(learn_cache: Path, ball_checkpoint: Path,
                                                                        tmp_path: Path) -> None:
    """A class whose samples have no encoded row (here: files added after the encode) used to sink evaluate."""
    from pointad_pipe.pipeline.catalog import load_catalog
    from pointad_pipe.pipeline.jobs.evaluate import EvalOptions, evaluate

    spec = yaml.safe_load(learn_cache.read_text())
    data = Path(spec["datasets"]["s"]["root"])
    copy = tmp_path / "data"
    shutil.copytree(data, copy)
    shutil.copytree(copy / "ball", copy / "cone")  # a whole class the cache has never seen
    spec["datasets"]["s"]["root"] = str(copy)
    cat = tmp_path / "catalog.yaml"
    cat.write_text(yaml.safe_dump(spec))
    catalog = load_catalog(cat)
    report = evaluate(catalog, catalog.dataset("s"), ball_checkpoint, tmp_path / "run",
                      EvalOptions(write_ply=False, montage_samples=0, progress=False))
    n_cone = len(list((copy / "cone" / "test").glob("*/xyz/*.tiff")))
    assert set(report["per_class"]) == {"box"} and report["skipped"]["cone"]["scored"] == 0
    assert report["skipped"]["cone"]["why"].startswith(f"{n_cone} samples have no encoded row")
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["per_class"].keys() == {"box"}
    assert "Class cone was not scored" in (tmp_path / "run" / "report.md").read_text()


def test_inputs_with_one_file_name_get_distinct_outputs(tmp_path: Path) -> None:
    """Every MVTec sample is `000.tiff`: predict used to write them all to `000.*`, the last one winning."""
    from pointad_pipe.pipeline.jobs.predict import output_names

    a = tmp_path / "bagel/test/crack/xyz/000.tiff"
    b = tmp_path / "bagel/test/good/xyz/000.tiff"
    c = tmp_path / "carrot/test/good/xyz/001.tiff"
    assert output_names([a, b, c]) == ["crack_xyz_000", "good_xyz_000", "001"]
    assert output_names([c, c]) == ["001", "001_2"]
    assert output_names([a]) == ["000"]


def test_a_full_disk_stops_the_run_at_its_first_row_and_fails_none(tmp_path: Path) -> None:
    """`encode` used to compute all 34 remaining rows after the first "No space left" and exit 0."""
    from pointad_pipe.pipeline.cache import rows, store
    from pointad_pipe.pipeline.errors import DiskFull

    root = store.open_dataset(str(tmp_path), "d")
    grp = store.create_group(root, "clean", "f" * 16, upstream=None, config={})
    store.mark_initialized(grp)
    keys = [(f"s{i}", "v") for i in range(6)]
    p = rows.plan(rows.read_table(grp), keys)
    targets = rows.reserve(grp, p, keys)
    tried: list[int] = []

    def task(job: dict[str, Any]) -> list[tuple[int, str]]:
        (r,) = job["rows"]
        tried.append(r)
        return [(r, "" if r < 2 else "OSError: [Errno 28] No space left on device: 'x'")]

    jobs = [{"rows": [r]} for r in sorted(targets.values())]
    with pytest.raises(DiskFull, match="2 of 6 rows done"):
        runner.run_stage("clean", grp, "f" * 16, "cache/d.zarr", keys, p, targets, jobs, task,
                         runner.RunOptions(progress=False))
    assert tried == [0, 1, 2]  # it stopped at the first full-disk row
    table = rows.read_table(grp)
    assert table.done.tolist() == [True, True, False, False, False, False] and not any(table.errors)


@pytest.mark.parametrize(("stage", "value", "words"), [
    ("render", {"image_size": -5}, "image_size must be above 0, got -5"),
    ("render", {"image_size": "big"}, "image_size must be an integer, got 'big'"),
    ("render", {"views": -3}, "views must be a list of [axis, degrees] pairs, got -3"),
    ("clean", {"dbscan_eps": -1}, "dbscan_eps must be above 0, got -1"),
    ("clean", {"grid_size": 0}, "grid_size must be above 0, got 0"),
])
def test_bad_stage_values_stop_before_any_work(stage: str, value: dict[str, Any], words: str,
                                               tmp_path: Path) -> None:
    """They used to run (and exit 0 with an inconsistent group) or crash only after clean had run."""
    from pointad_pipe.pipeline.catalog import load_catalog
    from pointad_pipe.pipeline.errors import CatalogError
    from pointad_pipe.pipeline.jobs import identity

    from ..helpers import write_catalog

    cat = load_catalog(write_catalog(tmp_path, {"m": {"format": "mvtec3d", "root": str(tmp_path), stage: value}}))
    build = identity.render_config if stage == "render" else identity.clean_config
    with pytest.raises(CatalogError, match=rf"datasets\.m\.{stage}: ") as info:
        build(cat.dataset("m"))
    assert words in str(info.value)


def test_catalog_mistakes_are_named(tmp_path: Path) -> None:
    """A binary catalog, `cache: 5` and a cache that is a file were tracebacks or misreported."""
    from pointad_pipe.pipeline.catalog import load_catalog
    from pointad_pipe.pipeline.errors import CatalogError

    binary = tmp_path / "bin.yaml"
    binary.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(CatalogError, match="not a text file"):
        load_catalog(binary)
    cat = tmp_path / "c.yaml"
    cat.write_text("cache: 5\ndatasets: {}\n")
    with pytest.raises(CatalogError, match=r"`cache:` must be a folder path or URL, got 5"):
        load_catalog(cat)
    (tmp_path / "afile").write_text("x")
    cat.write_text("cache: afile\ndatasets: {}\n")
    with pytest.raises(CatalogError, match="is a file; it must be a folder"):
        load_catalog(cat)


def test_read_only_images_encode_without_a_warning() -> None:
    """`predict --rgb` printed torch's non-writable-array UserWarning on every run."""
    import warnings

    import numpy as np

    from pointad_pipe.pipeline.stages.encode import EncoderKey, get_encoder

    encoder = get_encoder(EncoderKey("tiny", "random", None, (4,), True, 3, "fp32", "cpu"))
    images = np.zeros((1, 32, 32, 3), np.uint8)
    images.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        glob, patch = encoder.encode(images)
    assert glob.shape[0] == 1 and patch.shape[:2] == (1, 1)


def test_a_missing_system_library_is_one_line_before_any_row(mvtec_ball: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Without libusb every row failed with the same ImportError (48 lines for 48 rows)."""
    import sys

    from pointad_pipe.pipeline.catalog import load_catalog
    from pointad_pipe.pipeline.environment import EnvironmentProblem, open3d_problem
    from pointad_pipe.pipeline.jobs.clean import run_clean

    from ..helpers import SYNTH, write_catalog

    cat = load_catalog(write_catalog(tmp_path, {"m": {"format": "mvtec3d", "root": str(mvtec_ball), **SYNTH}}))
    monkeypatch.setitem(sys.modules, "open3d", None)  # as an import that cannot load
    with pytest.raises(EnvironmentProblem, match="Open3D cannot be loaded"):
        run_clean(cat, cat.dataset("m"), runner.RunOptions(progress=False))
    assert not (tmp_path / "cache").exists()  # nothing was started
    err = open3d_problem(OSError("libusb-1.0.so.0: cannot open shared object file: No such file or directory"))
    assert "apt-get install libusb-1.0-0" in str(err) and "\n" not in str(err)


def test_a_checkpoint_beside_another_runs_sidecar_is_one_line(ball_checkpoint: Path, tmp_path: Path) -> None:
    """Its prompts have other shapes than the sidecar says: torch's `size mismatch` dump, before."""
    from pointad_pipe.model.registry import get_spec
    from pointad_pipe.pipeline.errors import PointadError
    from pointad_pipe.pipeline.jobs.checkpoint import load_checkpoint, text_features
    from pointad_pipe.pipeline.stages.weights import resolve_weights

    pt = tmp_path / "prompts.pt"
    shutil.copy(ball_checkpoint, pt)
    side = json.loads(ball_checkpoint.with_suffix(".json").read_text())
    side["train"]["n_ctx"] = side["train"]["n_ctx"] + 3  # another run's prompt length
    pt.with_suffix(".json").write_text(json.dumps(side))
    spec = get_spec("tiny")
    with pytest.raises(PointadError, match=r"do not have the shapes its sidecar prompts\.json describes") as info:
        text_features(load_checkpoint(pt), spec, resolve_weights(spec, None), None)
    assert "\n" not in str(info.value)


def test_a_bad_encode_value_in_the_catalog_names_the_catalog_key(tmp_path: Path) -> None:
    """`encode: {layers: [99]}` in the catalog was reported as the `--layers` flag."""
    from pointad_pipe.pipeline.catalog import load_catalog
    from pointad_pipe.pipeline.errors import CatalogError
    from pointad_pipe.pipeline.jobs.encode import EncodeOptions, run_encode

    from ..helpers import write_catalog

    cat = load_catalog(write_catalog(tmp_path, {"m": {"format": "mvtec3d", "root": str(tmp_path),
                                                      "encode": {"layers": [99]}}}))
    with pytest.raises(CatalogError, match=r"datasets\.m\.encode\.layers: \[99\]: tiny has blocks 1\.\.4"):
        run_encode(cat, cat.dataset("m"), runner.RunOptions(progress=False), EncodeOptions(), {"model": "tiny"})
    with pytest.raises(OptionError, match="layers"):  # the same value from the call site stays an option
        run_encode(cat, cat.dataset("m"), runner.RunOptions(progress=False), EncodeOptions(),
                   {"model": "tiny", "layers": (99,)})


def test_a_folder_given_to_predict_is_called_a_folder(tmp_path: Path) -> None:
    """`predict DIR` said "file not found" of a folder that is there."""
    from pointad_pipe.pipeline.errors import SampleError
    from pointad_pipe.pipeline.jobs.predict import read_user_file

    with pytest.raises(SampleError, match="is a folder: give the point-cloud files in it"):
        read_user_file(tmp_path)
    with pytest.raises(SampleError, match="file not found"):
        read_user_file(tmp_path / "absent.ply")


@pytest.mark.parametrize(("valid", "words"), [(0, "no valid points (all zero, NaN or inf)"),
                                              (2, "only 2 valid points; at least 16 are needed"),
                                              (3, "only 3 valid points; at least 16 are needed")])
def test_a_nearly_empty_cloud_is_called_what_it_is(valid: int, words: str) -> None:
    """2 valid points were called "all zero, NaN or inf", while 3 were scored without a word."""
    import numpy as np

    from pointad_pipe.pipeline.errors import SampleError
    from pointad_pipe.pipeline.loaders.base import Sample, SampleRef
    from pointad_pipe.pipeline.stages.clean import CleanConfig, clean_sample

    pts = np.zeros((50, 3), np.float32)
    pts[:valid] = np.random.default_rng(0).normal(size=(valid, 3)) + 5
    ref = SampleRef("a/b", "a", "test", "good", 0, "cloud.ply")
    sample = Sample(ref, pts, np.zeros(50, np.uint8))
    with pytest.raises(SampleError, match=re.escape(words)):
        clean_sample(sample, CleanConfig(plane="none", dbscan=False, grid_size=None))


def test_doctor_names_what_is_missing_and_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from pointad_pipe.pipeline.catalog import load_catalog
    from pointad_pipe.pipeline.jobs.doctor import examine

    from ..helpers import write_catalog

    cat = load_catalog(write_catalog(tmp_path, {}))
    checks = {c.name: c for c in examine(cat)}
    assert checks["torch"].ok and checks["renderer splat"].ok and checks["cache"].ok
    assert {"open3d", "open_clip_torch", "weights ViT-L-14-336", "cuda"} <= set(checks)
    monkeypatch.setitem(sys.modules, "open3d", None)
    broken = {c.name: c for c in examine(cat)}["open3d"]
    assert not broken.ok and broken.required and "libusb" in broken.fix


def test_voxel_thinning_keeps_its_picks_and_loses_its_slowness() -> None:
    """2 million points took 140 s in voxel_thin (np.unique over rows, 30 times): the picks must not change."""
    import numpy as np

    from pointad_pipe.pipeline.stages.clean import voxel_thin

    xyz = np.random.default_rng(1).normal(size=(30_000, 3)).astype(np.float32)

    def by_rows(k: int) -> np.ndarray:  # the previous code, as the reference
        origin = xyz.min(axis=0)

        def firsts(size: float) -> np.ndarray:
            return np.unique(np.floor((xyz - origin) / size).astype(np.int64), axis=0, return_index=True)[1]

        lo, hi = 0.0, float(np.ptp(xyz, axis=0).max())
        best = firsts(hi)
        for _ in range(30):
            mid = (lo + hi) / 2
            picked = firsts(mid)
            lo, hi, best = (mid, hi, best) if len(picked) > k else (lo, mid, picked)
        return np.sort(best)

    for k in (500, 8000):
        np.testing.assert_array_equal(voxel_thin(xyz, k), by_rows(k))


def test_a_torchvision_for_another_torch_stops_encode_before_any_work(mvtec_ball: Path, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Item 6: torch 2.13.0 beside torchvision 0.29.1 used to fail open_clip's import in every encode worker."""
    import importlib.metadata

    from pointad_pipe.pipeline import environment
    from pointad_pipe.pipeline.catalog import load_catalog
    from pointad_pipe.pipeline.jobs.encode import EncodeOptions, run_encode

    from ..helpers import SYNTH, write_catalog

    assert environment.torch_pair_problem("2.14.1+cu130", "0.29.1", ["torch (>=2.14.0)"]) == ""
    assert environment.torch_pair_problem("2.13.0", "0.28.0", ["torch ==2.13.0", "numpy"]) == ""
    real = importlib.metadata.version
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "2.13.0" if name == "torch" else real(name))
    environment.require_torch_stack.cache_clear()
    cat = load_catalog(write_catalog(tmp_path, {"m": {"format": "mvtec3d", "root": str(mvtec_ball), **SYNTH}}))
    try:
        with pytest.raises(environment.EnvironmentProblem) as exc:
            run_encode(cat, cat.dataset("m"), runner.RunOptions(progress=False), EncodeOptions(), {"model": "tiny"})
        with pytest.raises(environment.EnvironmentProblem):
            environment.require_torch_stack()
    finally:
        environment.require_torch_stack.cache_clear()
    want = f"torchvision {real('torchvision')} needs torch>="
    assert str(exc.value).startswith(want) and "but torch 2.13.0 is installed: pip install torch==" in str(exc.value)
    assert not (tmp_path / "cache").exists()  # not even clean ran
