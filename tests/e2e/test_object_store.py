"""The cache on a real S3 API: a local moto server on 127.0.0.1, the whole chain, the same arrays as a local cache.

render, encode (2 dask workers), status, train, evaluate, verify and gc run against `s3://bucket/cache`,
and their arrays, checkpoints and metrics equal a local cache's. The credentials come from the
environment only, and neither they nor the endpoint's secret appear in any output, attr or object.
"""

from __future__ import annotations

import json
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
import zarr

from ..helpers import CHECKER, SYNTH, run_cli

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::UserWarning")]

BUCKET = "bucket"
KEEP = ("good", "bump")  # kinds kept per class: 4 samples in all, a good and a defect of each class


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A moto S3 server in its own process, a bucket, and credentials that exist nowhere else."""
    port = _free_port()
    log = tmp_path_factory.mktemp("moto") / "server.log"
    with log.open("w") as out:
        server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                  stdout=out, stderr=subprocess.STDOUT)
    creds = {"AWS_ACCESS_KEY_ID": f"AKIA{secrets.token_hex(8).upper()}",
             "AWS_SECRET_ACCESS_KEY": secrets.token_urlsafe(30),
             "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_DEFAULT_REGION": "us-east-1"}
    with pytest.MonkeyPatch.context() as mp:
        for k, v in creds.items():
            mp.setenv(k, v)
        for k in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
            mp.delenv(k, raising=False)
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    assert server.poll() is None and time.monotonic() < deadline, log.read_text()
                    time.sleep(0.2)
            import boto3

            boto3.client("s3").create_bucket(Bucket=BUCKET)
            yield creds
        finally:
            server.terminate()
            server.wait(timeout=10)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pointad_pipe.pipeline.synthetic.generator import make_synthetic

    out = tmp_path_factory.mktemp("s3data")
    make_synthetic(out, seed=5, classes=["ball", "box"], n_train=1, n_test_good=1, n_test_per_defect=1,
                   layouts=("mvtec3d",))
    for folder in (out / "mvtec3d").glob("*/test/*"):
        if folder.name not in KEEP:
            shutil.rmtree(folder)
    return out / "mvtec3d"


def catalog(folder: Path, cache: str, root: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "catalog.yaml"
    path.write_text(yaml.safe_dump({"cache": cache, "datasets": {
        "m": {"format": "mvtec3d", "root": str(root), "splits": ["test"], **SYNTH}}}))
    return path


def chain(cat: Path, out: Path, workers: str) -> list[str]:
    """render, encode, status, train, evaluate, verify: each must exit 0; their outputs, in order."""
    steps = [("render", "-d", "m", "-j", "0"),
             ("encode", "-d", "m", "--model", "tiny", "-j", workers, "--threads", "1"),
             ("status",),
             ("train", "-d", "m", "--train-class", "ball", "--epochs", "1", "--out", str(out / "train")),
             ("evaluate", "-d", "m", "--checkpoint", str(out / "train" / "prompts.pt"), "--out", str(out / "eval"),
              "--montage", "1"),
             ("verify", "-d", "m")]
    texts = []
    for command, *args in steps:
        code, text = run_cli(command, "--catalog", str(cat), *args)
        assert code == 0, f"{command}: {text}"
        texts.append(text)
    return texts


def arrays(url: str) -> dict[str, np.ndarray]:
    """Every array of a dataset hierarchy by its path, read through zarr alone."""
    root = zarr.open_group(url, mode="r")
    return {path: np.asarray(node[:]) for path, node in root.members(max_depth=None) if isinstance(node, zarr.Array)}


def bucket_bytes() -> bytes:
    """Every object in the bucket, keys and contents."""
    import boto3

    client, blob = boto3.client("s3"), b""
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
        for obj in page.get("Contents", []):
            blob += obj["Key"].encode() + client.get_object(Bucket=BUCKET, Key=obj["Key"])["Body"].read()
    return blob


def assert_same_arrays(ours: dict[str, np.ndarray], theirs: dict[str, np.ndarray]) -> None:
    assert ours.keys() == theirs.keys() and len(ours) > 30
    for key in ours:
        np.testing.assert_array_equal(ours[key], theirs[key], err_msg=key)


def test_the_whole_chain_on_s3_equals_a_local_cache(s3: dict[str, str], data: Path, tmp_path: Path) -> None:
    remote = "s3://bucket/cache"
    s3_out = chain(catalog(tmp_path / "s3", remote, data), tmp_path / "s3", "2")
    local_out = chain(catalog(tmp_path / "local", str(tmp_path / "local" / "cache"), data), tmp_path / "local", "0")

    assert "cache: s3://bucket/cache/m.zarr" in s3_out[1] and "0 failed" in s3_out[1], s3_out[1]
    assert s3_out[2].count("current 4 ") == 3 and " ? " not in s3_out[2], s3_out[2]  # sizes listed on S3 too
    assert "no damage found" in s3_out[5], s3_out[5]
    checked = [[line for line in out[5].splitlines() if "rows checked" in line] for out in (s3_out, local_out)]
    assert len(checked[0]) == 3 and checked[0] == checked[1], (s3_out[5], local_out[5])
    assert_same_arrays(arrays(f"{remote}/m.zarr"), arrays(str(tmp_path / "local" / "cache" / "m.zarr")))
    ours, theirs = (torch.load(tmp_path / w / "train" / "prompts.pt", map_location="cpu", weights_only=True)
                    for w in ("s3", "local"))
    assert ours.keys() == theirs.keys()
    for key in ours:
        assert torch.equal(ours[key], theirs[key]), key
    metrics = [json.loads((tmp_path / w / "eval" / "metrics.json").read_text()) for w in ("s3", "local")]
    assert "box" in metrics[0]["per_class"], metrics[0]
    assert (metrics[0]["per_class"], metrics[0]["mean"]) == (metrics[1]["per_class"], metrics[1]["mean"])

    checker = subprocess.run([sys.executable, str(CHECKER), remote, "m"], capture_output=True, text=True)
    assert checker.returncode == 0 and "encode: 4 rows" in checker.stdout, checker.stdout + checker.stderr

    # a sample removed from the root: gc drops its row from every stage, on S3 as locally
    gone = data / "box" / "test" / "bump"
    moved = tmp_path / "bump"
    shutil.move(gone, moved)
    try:
        gc_out = [run_cli("gc", "--catalog", str(tmp_path / w / "catalog.yaml")) for w in ("s3", "local")]
    finally:
        shutil.move(moved, gone)
    for code, text in gc_out:
        assert code == 0 and "removed 0 group(s) and 3 row(s)" in text, text
    assert gc_out[0][1] == gc_out[1][1].replace(str(tmp_path / "local" / "cache"), remote), gc_out
    assert_same_arrays(arrays(f"{remote}/m.zarr"), arrays(str(tmp_path / "local" / "cache" / "m.zarr")))

    # the credentials are nowhere: not printed, not in any object of the bucket, not in the run folders
    printed = "\n".join(s3_out + [t for _, t in gc_out])
    stored = bucket_bytes() + b"".join(p.read_bytes() for p in (tmp_path / "s3").rglob("*") if p.is_file())
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert s3[name] not in printed and s3[name].encode() not in stored, name


def test_doctor_probes_the_bucket_and_names_a_wrong_one(s3: dict[str, str], tmp_path: Path) -> None:
    cat = catalog(tmp_path, "s3://bucket/cache", tmp_path)
    code, out = run_cli("doctor", "--catalog", str(cat))
    assert "s3://bucket/cache (writable)" in out, out
    code, out = run_cli("doctor", "--catalog", str(cat), "--cache", "s3://no-such-bucket/cache")
    assert code != 0 and "s3://no-such-bucket/cache: " in out and "credentials fsspec sees" in out, out
    assert s3["AWS_SECRET_ACCESS_KEY"] not in out
