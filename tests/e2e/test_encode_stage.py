"""`pointad-pipe encode` with the tiny model: the contract, weights files, failing fast, crash safety."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from pointad_pipe.model.registry import get_spec
from pointad_pipe.pipeline.stages.encode import Encoder, EncoderKey
from pointad_pipe.pipeline.stages.weights import load_model, random_init_sha256, resolve_weights

from ..helpers import SYNTH, check_cache, groups, kill_when_done, run_cli, write_catalog


@pytest.fixture(scope="module")
def rendered(synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """One synthetic class (8 samples) cleaned and rendered once; tests copy the cache."""
    base = tmp_path_factory.mktemp("rendered")
    shutil.copytree(synthetic_root / "mvtec3d" / "ball", base / "mvtec" / "ball")
    cat = write_catalog(base, {"m": {"format": "mvtec3d", "root": str(base / "mvtec"), **SYNTH}})
    code, out = run_cli("render", "--catalog", str(cat), "-d", "m", "-j", "0")
    assert code == 0, out
    return base / "mvtec", base / "cache"


@pytest.fixture
def ball(rendered: tuple[Path, Path]) -> Path:
    return rendered[0]


def catalog(tmp_path: Path, root: Path, name: str = "cat", rendered: Path | None = None) -> Path:
    """A catalog in tmp_path/name; with `rendered`, its cache starts as a copy of that one."""
    (tmp_path / name).mkdir(exist_ok=True)
    if rendered is not None:
        shutil.copytree(rendered, tmp_path / name / "cache")
    return write_catalog(tmp_path / name, {"m": {"format": "mvtec3d", "root": str(root), **SYNTH}})


def encode_arrays(cache: Path) -> dict[str, np.ndarray]:
    (grp,) = groups(cache, "m", "encode")
    return {name: np.asarray(arr[:]) for name, arr in grp.arrays()}


def test_encode_meets_the_contract(rendered: tuple[Path, Path], tmp_path: Path) -> None:
    cat = catalog(tmp_path, *rendered[:1], rendered=rendered[1])
    code, out = run_cli("encode", "--catalog", str(cat), "-d", "m", "--model", "tiny")
    assert code == 0, out
    cache = tmp_path / "cat" / "cache"
    assert "encode: 8 rows, patch (8, 9, 4, 576, 128)" in check_cache(cache, "m")
    (enc,) = groups(cache, "m", "encode")
    (render,) = groups(cache, "m", "render")
    attrs = enc.attrs
    assert attrs["model"] == "tiny" and attrs["layers"] == [1, 2, 3, 4] and attrs["dpam"] is True
    assert attrs["image_size"] == [336, 336] and attrs["patch_grid"] == [24, 24] and attrs["dtype"] == "fp32"
    assert attrs["weights_sha256"] == random_init_sha256(get_spec("tiny")) and attrs["random_init"]["seed"] == 0
    assert attrs["upstream"] == render.attrs["fingerprint"]
    assert enc["global"].dtype == np.float16 and enc["global"].shape == (8, 9, 128)
    assert enc["patch"].chunks == (1, 9, 4, 576, 128)
    assert enc["rgb_global"].shape == (8, 128) and enc["rgb_patch"].shape == (8, 4, 576, 128)
    # the cache holds what the encoder computes on the cached images, views and RGB alike
    spec = get_spec("tiny")
    weights = resolve_weights(spec, None)
    key = EncoderKey("tiny", weights.kind, weights.path, (1, 2, 3, 4), True, 3, "fp32", "cpu")
    glob, patch = Encoder(key).encode(np.concatenate([render["image"][3], render["rgb_image"][3][None]]))
    np.testing.assert_array_equal(enc["global"][3], glob[:9])
    np.testing.assert_array_equal(enc["rgb_patch"][3], patch[9])
    # a rerun does nothing; a new dtype is a new group
    code, out = run_cli("encode", "--catalog", str(cat), "-d", "m", "--model", "tiny")
    assert code == 0 and "encode" in out and "8/8 done (0 now, 8 already)" in out
    code, out = run_cli("encode", "--catalog", str(cat), "-d", "m", "--model", "tiny", "--dtype", "bf16",
                        "--layers", "4", "--no-dpam")
    assert code == 0, out
    encs = groups(cache, "m", "encode")
    assert len(encs) == 2 and encs[1]["patch"].shape == (8, 9, 1, 576, 128) and encs[1].attrs["dpam"] is False


def test_real_model_without_weights_fails_fast_and_writes_nothing(ball: Path, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POINTAD_WEIGHTS_DIR", str(tmp_path / "no-weights"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cat = catalog(tmp_path, ball)
    t = time.time()
    code, out = run_cli("encode", "--catalog", str(cat), "-d", "m", "--model", "ViT-L-14-336")
    assert code == 2
    assert "ViT-L-14-336px.pt" in out and str(tmp_path / "no-weights") in out and "--weights" in out
    assert time.time() - t < 30
    assert not (tmp_path / "cat" / "cache").exists()


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_weights_files_load_through_the_same_flag(rendered: tuple[Path, Path], tmp_path: Path) -> None:
    spec = get_spec("tiny")
    model = load_model(spec, resolve_weights(spec, None))
    sd_path = tmp_path / "tiny_state_dict.pt"
    torch.save(model.state_dict(), sd_path)
    from safetensors.torch import save_file

    st_path = tmp_path / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(st_path))
    del model._buffers["attn_mask"]  # the OpenAI TorchScript layout has no attention-mask buffer
    model.attn_mask = None
    with torch.no_grad():
        traced = torch.jit.trace_module(model, {"encode_image": torch.zeros(1, 3, 336, 336)}, check_trace=False)
    jit_path = tmp_path / "tiny_openai.pt"
    traced.save(str(jit_path))
    results = {}
    runs = [("random", []), ("sd", ["--weights", str(sd_path)]), ("st", ["--weights", str(st_path)]),
            ("jit", ["--weights", str(jit_path)])]
    for name, flag in runs:
        cat = catalog(tmp_path, rendered[0], name, rendered=rendered[1])
        code, out = run_cli("encode", "--catalog", str(cat), "-d", "m", "--model", "tiny", *flag)
        assert code == 0, out
        (grp,) = groups(tmp_path / name / "cache", "m", "encode")
        results[name] = (grp.attrs["weights_sha256"], np.asarray(grp["global"][:], np.float32))
    assert results["sd"][0] == hashlib.sha256(sd_path.read_bytes()).hexdigest()
    assert results["jit"][0] == hashlib.sha256(jit_path.read_bytes()).hexdigest()
    np.testing.assert_array_equal(results["sd"][1], results["random"][1])  # the same weights
    np.testing.assert_array_equal(results["st"][1], results["random"][1])
    assert results["st"][0] == hashlib.sha256(st_path.read_bytes()).hexdigest()
    # the OpenAI loader keeps weights in fp16 as OpenAI ships them: close, not equal
    np.testing.assert_allclose(results["jit"][1], results["random"][1], rtol=0.05, atol=0.05)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_killed_encode_resumes_to_identical_arrays(rendered: tuple[Path, Path], tmp_path: Path) -> None:
    root, cache = rendered
    cat, fresh = catalog(tmp_path, root, rendered=cache), catalog(tmp_path, root, "fresh", rendered=cache)

    def cmd(c: Path) -> list[str]:
        return [sys.executable, "-m", "pointad_pipe.cli.main", "encode", "--catalog", str(c), "-d", "m",
                "--model", "tiny", "--batch-size", "2"]

    kill_when_done(cmd(cat), tmp_path / "cat" / "cache" / "m.zarr", "encode", 1)
    (enc,) = groups(tmp_path / "cat" / "cache", "m", "encode")
    assert 0 < enc["done"][:].sum() < 8
    assert subprocess.run(cmd(cat), capture_output=True).returncode == 0
    assert subprocess.run(cmd(fresh), capture_output=True).returncode == 0
    resumed, clean_run = encode_arrays(tmp_path / "cat" / "cache"), encode_arrays(tmp_path / "fresh" / "cache")
    assert resumed.keys() == clean_run.keys()
    for key in resumed:
        np.testing.assert_array_equal(resumed[key], clean_run[key], err_msg=key)


def test_a_corrupt_render_chunk_fails_its_row_only(rendered: tuple[Path, Path], tmp_path: Path) -> None:
    """The row names the damaged upstream row and array, and stays pending (schema 3: not the sample's fault)."""
    cat = catalog(tmp_path, rendered[0], rendered=rendered[1])
    (render,) = groups(tmp_path / "cat" / "cache", "m", "render")
    chunk = tmp_path / "cat" / "cache" / "m.zarr" / render.path / "image" / "c" / "2" / "4" / "0" / "0" / "0"
    assert chunk.is_file()
    chunk.write_bytes(b"not a chunk")
    code, out = run_cli("encode", "--catalog", str(cat), "-d", "m", "--model", "tiny")
    damaged = f"damaged cache data: {render.path} row 2, array image: unreadable"
    assert code == 0 and "failed row 2 ball/test/crack/000" in out and damaged in out, out
    (enc,) = groups(tmp_path / "cat" / "cache", "m", "encode")
    done = enc["done"][:]
    assert not done[2] and done.sum() == 7 and str(enc["error"][2]) == ""
