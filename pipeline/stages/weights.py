"""Where a model's weights come from, their SHA-256, and loading them through open_clip.

Order for a real model (`ViT-L-14-336`, `ViT-B-16`):
1. an explicit file: an OpenAI TorchScript `.pt` (loaded by open_clip's OpenAI loader), or an
   open_clip state dict / `.safetensors` (loaded by `create_model(pretrained=PATH)`);
2. the OpenAI file in the weights folder (`$POINTAD_WEIGHTS_DIR`, default `./weights`);
3. open_clip's pretrained tag (`openai`): its cache, then a download when there is a network.
Nothing found: `WeightsMissing`, raised before any work, saying which file to put where.
A real model never falls back to random weights; the value `random` asks for them explicitly
(for benchmarks), and the cache records it. `tiny` is random-init by design, from its seed.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...model.registry import ModelSpec, architecture, register_project_configs
from ..errors import OptionError, WeightsMissing

RANDOM = "random"


@dataclass(frozen=True)
class Weights:
    """Resolved weights of a model.

    Attributes:
        kind: `openai-jit`, `state-dict`, `open_clip-tag` or `random`.
        path: the file, when there is one.
        sha256: of the file, or of the random-init seed and config.
        pretrained: what the cache's `pretrained` attr says (a path, a tag or `random:seed=N`).
    """

    kind: str
    path: str | None
    sha256: str
    pretrained: str


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file, read in 8 MB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(8 << 20), b""):
            h.update(block)
    return h.hexdigest()


def weights_sha256(path: str | Path) -> str:
    """`file_sha256` of a weights file, remembered by (path, size, mtime) in the user's cache folder.

    ViT-L's 900 MB take about 2 s to hash; every stage run needs the hash (it names the encode
    group), so a rerun with nothing to do would spend most of its time here. An unwritable
    cache folder only costs the re-hash.
    """
    p = Path(path).resolve()
    memo_path = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "pointad-pipe" / "weights-sha256.json"
    st = p.stat()
    try:
        memo = json.loads(memo_path.read_text())
    except (OSError, ValueError):
        memo = {}
    known = memo.get(str(p))
    if known and known[:2] == [st.st_size, st.st_mtime_ns]:
        return str(known[2])
    digest = file_sha256(p)
    memo[str(p)] = [st.st_size, st.st_mtime_ns, digest]
    try:
        memo_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = memo_path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(memo))
        tmp.replace(memo_path)
    except OSError:
        pass
    return digest


def random_init_sha256(spec: ModelSpec) -> str:
    """Identity of a random-init model: the seed and the full architecture."""
    payload = json.dumps({"seed": spec.seed, "config": architecture(spec)}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def is_torchscript(path: Path) -> bool:
    """A TorchScript archive is a zip with a `code/` folder; a `torch.save` state dict has none."""
    try:
        with zipfile.ZipFile(path) as z:
            return any("/code/" in name for name in z.namelist())
    except zipfile.BadZipFile:
        return False


def weights_dir() -> Path:
    """Where OpenAI weight files are looked for by name."""
    return Path(os.environ.get("POINTAD_WEIGHTS_DIR", "weights")).expanduser()


def _online(host: str = "huggingface.co", timeout: float = 3.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return False
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def missing_message(spec: ModelSpec) -> str:
    """The actionable error for a real model whose weights cannot be had."""
    target = weights_dir() / (spec.weights_file or f"{spec.name}.pt")
    return (f"{spec.name} needs its pretrained weights and none were found or downloadable. Put the OpenAI "
            f"file {spec.weights_file} (sha256 {spec.weights_sha256}) at {target.resolve()} "
            f"(download: {spec.weights_url}), or give the path of an OpenAI .pt, an open_clip state "
            f"dict or a .safetensors file as the weights. With a network, open_clip downloads it by itself "
            f"(pretrained tag '{spec.pretrained}').")


def resolve_weights(spec: ModelSpec, weights: str | None) -> Weights:
    """Find a model's weights without loading them (cheap, before any work).

    Raises:
        WeightsMissing: a real model with no weights to be had (the message says what to do).
        OptionError: `weights` names a file that does not exist.
    """
    if weights == RANDOM or (spec.random_init and not weights):
        return Weights("random", None, random_init_sha256(spec), f"{RANDOM}:seed={spec.seed}")
    if weights:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise OptionError("weights", str(path), "no such file")
        kind = "openai-jit" if is_torchscript(path) else "state-dict"
        return Weights(kind, str(path.resolve()), weights_sha256(path), str(path.resolve()))
    local = weights_dir() / (spec.weights_file or "")
    if spec.weights_file and local.is_file():
        return resolve_weights(spec, str(local))
    cached = _open_clip_file(spec, download=_online())
    if cached is None:
        raise WeightsMissing(missing_message(spec))
    return Weights("openai-jit" if is_torchscript(Path(cached)) else "state-dict", cached, weights_sha256(cached),
                   f"{spec.pretrained} ({cached})")


def _open_clip_file(spec: ModelSpec, download: bool) -> str | None:
    """open_clip's file for the spec's tag: downloaded when `download`, else from the Hugging Face cache."""
    from open_clip.pretrained import download_pretrained, get_pretrained_cfg

    cfg = get_pretrained_cfg(spec.open_clip_name, spec.pretrained or "")
    if not cfg:
        return None
    if download:
        try:
            return download_pretrained(cfg) or None
        except Exception:  # the network failed after all: look in the cache
            pass
    hub = cfg.get("hf_hub", "")
    if not hub:
        return None
    from huggingface_hub import try_to_load_from_cache

    # open_clip's hf_hub entries are 'org/model/' (its default file names) or 'org/model/file'
    repo_id, filename = os.path.split(hub)
    names = [filename] if filename else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
    for name in names:
        found = try_to_load_from_cache(repo_id.rstrip("/"), name)
        if isinstance(found, str):
            return found
    return None


def load_model(spec: ModelSpec, weights: Weights, device: str = "cpu") -> Any:
    """The open_clip CLIP model of a spec with its weights, in eval mode, fp32, on `device`.

    Raises:
        PointadError: the weights' architecture is not the spec's (e.g. a ViT-B file for ViT-L).
        EnvironmentProblem: torch, torchvision and open_clip do not load together (the fix named).
    """
    from ..environment import require_torch_stack

    require_torch_stack()
    import open_clip
    import torch

    register_project_configs()
    if weights.kind == "random":
        import logging

        torch.manual_seed(spec.seed)
        # random init is asked for here (recorded in the cache attrs); open_clip's "no pretrained
        # weights loaded" warning would only alarm the reader of a demo or test log
        root_log = logging.getLogger()
        level = root_log.level
        root_log.setLevel(max(level, logging.ERROR))
        try:
            model = open_clip.create_model(spec.open_clip_name, pretrained=None, device=device)
        finally:
            root_log.setLevel(level)
    elif weights.kind == "openai-jit":
        model = open_clip.load_openai_model(weights.path, device=device, precision="fp32")
        _check_architecture(spec, model, weights.path)
    else:
        try:
            model = open_clip.create_model(spec.open_clip_name, pretrained=weights.path, device=device)
        except RuntimeError as exc:  # state dict keys or shapes do not fit the architecture
            raise OptionError("weights", weights.path, f"does not fit {spec.name}: "
                              f"{str(exc).splitlines()[0]}") from exc
    return model.eval().requires_grad_(False)


def _check_architecture(spec: ModelSpec, model: Any, path: str | None) -> None:
    """An OpenAI file carries its own architecture; refuse one that is not the requested model's."""
    want = architecture(spec)["vision_cfg"]
    visual = model.visual
    size = visual.image_size[0] if isinstance(visual.image_size, (tuple, list)) else visual.image_size
    patch = visual.patch_size[0] if isinstance(visual.patch_size, (tuple, list)) else visual.patch_size
    got = {"layers": len(visual.transformer.resblocks), "width": visual.conv1.out_channels,
           "patch_size": patch, "image_size": size}
    diff = {k: (want[k], v) for k, v in got.items() if k in want and want[k] != v}
    if diff:
        raise OptionError("weights", path, f"is not a {spec.name}: (expected, found) {diff}")
