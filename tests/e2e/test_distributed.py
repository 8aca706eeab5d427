"""Encode on a real dask.distributed cluster: the same arrays as one process, workers load the model
once each, and a worker killed mid-encode loses nothing."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import zarr

from ..helpers import SYNTH, groups, run_cli, write_catalog

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::UserWarning")]


def stage_arrays(cache: Path, dataset: str, stage: str) -> dict[str, np.ndarray]:
    (grp,) = groups(cache, dataset, stage)
    return {name: np.asarray(arr[:]) for name, arr in grp.arrays()}


def encode(tmp: Path, name: str, data: Path, *flags: str) -> tuple[Path, str]:
    (tmp / name).mkdir()
    cat = write_catalog(tmp / name, {"m": {"format": "mvtec3d", "root": str(data), **SYNTH}})
    code, out = run_cli("encode", "--catalog", str(cat), "-d", "m", "--model", "tiny", *flags)
    assert code == 0, out
    return tmp / name / "cache", out


def assert_same(a: dict[str, np.ndarray], b: dict[str, np.ndarray], what: str) -> None:
    assert a.keys() == b.keys(), what
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=f"{what}: {key}")


@pytest.fixture(scope="module")
def nine_samples(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pointad_pipe.pipeline.synthetic.generator import make_synthetic

    out = tmp_path_factory.mktemp("dist")
    make_synthetic(out, seed=4, classes=["box"], n_train=1, n_test_good=2, n_test_per_defect=1,
                   layouts=("mvtec3d",))
    return out / "mvtec3d"


@pytest.fixture(scope="module")
def serial_encode(nine_samples: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, np.ndarray]:
    cache, _ = encode(tmp_path_factory.mktemp("serial"), "s", nine_samples, "-j", "0", "--threads", "1")
    return stage_arrays(cache, "m", "encode")


def test_two_worker_cluster_equals_one_process_and_loads_the_model_once_per_worker(
        nine_samples: Path, serial_encode: dict[str, np.ndarray], tmp_path: Path) -> None:
    from dask.distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        cache, out = encode(tmp_path, "c", nine_samples, "--scheduler", cluster.scheduler_address, "--threads", "1")
        assert "encode" in out and "0 failed" in out, out

        def loads() -> int:
            from pointad_pipe.pipeline.stages.encode import get_encoder

            return get_encoder.cache_info().misses

        per_worker = client.run(loads)
    assert_same(serial_encode, stage_arrays(cache, "m", "encode"), "2-worker cluster")
    assert len(per_worker) == 2 and all(n <= 1 for n in per_worker.values()), per_worker
    assert sum(per_worker.values()) >= 1  # the work ran on the cluster, not in the client


def test_a_worker_killed_mid_encode_loses_nothing(nine_samples: Path, serial_encode: dict[str, np.ndarray],
                                                  tmp_path: Path) -> None:
    """SIGKILL one worker once the first row is encoded; dask reruns its task, the arrays are identical."""
    from dask.distributed import Client, LocalCluster

    killed: list[int] = []
    (tmp_path / "k").mkdir()
    url = tmp_path / "k" / "cache" / "m.zarr"

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster, \
            Client(cluster) as client:

        def killer() -> None:
            deadline, done = time.time() + 300, 0
            while time.time() < deadline:
                try:
                    enc = zarr.open_group(str(url), mode="r")["encode"]
                    done = max(int(g["done"][:].sum()) for _, g in enc.groups())
                    if done >= 1:
                        break
                except Exception:  # not created yet
                    pass
                time.sleep(0.05)
            pids = client.run(os.getpid)
            victim = sorted(pids.values())[0]
            os.kill(victim, signal.SIGKILL)
            killed.append(done)

        thread = threading.Thread(target=killer)
        thread.start()
        cat = write_catalog(tmp_path / "k", {"m": {"format": "mvtec3d", "root": str(nine_samples), **SYNTH}})
        code, out = run_cli("encode", "--catalog", str(cat), "-d", "m", "--model", "tiny", "--batch-size", "1",
                            "--scheduler", cluster.scheduler_address, "--threads", "1")
        thread.join()
    n = len(serial_encode["done"])
    assert killed and 1 <= killed[0] < n, f"the kill came after {killed} of {n} rows: not mid-encode"
    (grp,) = groups(tmp_path / "k" / "cache", "m", "encode")
    if not np.asarray(grp["done"][:]).all():  # dask gave up on the task: a rerun finishes the rows
        code, out = run_cli("encode", "--catalog", str(cat), "-d", "m", "--model", "tiny", "-j", "0", "--threads", "1")
    assert code == 0, out
    assert_same(serial_encode, stage_arrays(tmp_path / "k" / "cache", "m", "encode"), "after a killed worker")


def test_an_fsspec_url_cache_with_two_workers_equals_a_local_path(nine_samples: Path,
                                                                 serial_encode: dict[str, np.ndarray],
                                                                 tmp_path: Path) -> None:
    """`cache:` as a URL every worker opens through fsspec (file:// here; s3:// or gs:// on a cluster)."""
    (tmp_path / "u").mkdir()
    cat = write_catalog(tmp_path / "u", {"m": {"format": "mvtec3d", "root": str(nine_samples), **SYNTH}})
    url = f"file://{tmp_path / 'u' / 'urlcache'}"
    code, out = run_cli("encode", "--catalog", str(cat), "-d", "m", "--model", "tiny", "--cache", url, "-j", "2",
                        "--threads", "1")
    assert code == 0 and "0 failed" in out, out
    assert_same(serial_encode, stage_arrays(tmp_path / "u" / "urlcache", "m", "encode"), "file:// URL cache")
    code, out = run_cli("status", "--catalog", str(cat), "--cache", url)
    n = len(serial_encode["done"])
    assert code == 0 and out.count(f"current {n} ") == 3, out
