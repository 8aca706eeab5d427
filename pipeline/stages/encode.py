"""The `encode` stage: rendered views (and the RGB image) -> frozen CLIP features (METHOD.md §3).

The pure core is `Encoder.encode(images)`: uint8 images in, fp16 global embeddings and per-layer
patch tokens out. `encode_blocks` runs it over rows as a three-step pipeline (a reader thread, the
forward passes, a writer thread) so that the CPU or GPU never waits on I/O. Where rows come from and
go to is the caller's `RowIO` (the cache's `FeatureRows`), which marks a row done once it is written.

Batches are aligned blocks of `batch_size` rows (rows r // batch_size), always encoded together,
also when a rerun has only some of them left to write: batch composition changes the last bits
of a matmul, and a resumed cache must equal an uninterrupted one.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol

import numpy as np

from ..errors import OptionError, one_line

VERSION = 1
DTYPES = ("fp32", "bf16", "fp16")


@dataclass(frozen=True)
class EncodeConfig:
    """Everything that changes the encode stage's output (fingerprinted with the weights' hash)."""

    model: str = "ViT-L-14-336"
    layers: tuple[int, ...] = ()  # empty: the model's default (6, 12, 18, 24 for 24 blocks)
    dpam: bool = True
    dpam_blocks: int = 0  # 0: 19 of 24, scaled to the model's depth
    dtype: str = "fp32"  # compute dtype; features are stored as float16
    version: int = VERSION

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", tuple(int(x) for x in self.layers))
        if self.dtype not in DTYPES:
            raise OptionError("dtype", self.dtype, f"expected one of {DTYPES}")


@dataclass(frozen=True)
class EncoderKey:
    """What identifies a loaded encoder in a worker process (hashable, picklable)."""

    model: str
    weights_kind: str
    weights_path: str | None
    layers: tuple[int, ...]
    dpam: bool
    dpam_blocks: int
    dtype: str
    device: str


class Encoder:
    """A loaded `PatchEncoder` on a device and dtype, with CLIP's preprocessing.

    `model`: the key's CLIP already loaded (fp32, on the key's device), used instead of loading it
    again; it is cast to the key's dtype in place and hooked, so any text features must come first.
    """

    def __init__(self, key: EncoderKey, model: Any = None) -> None:
        import torch

        from ...model.encoder import PatchEncoder
        from ...model.registry import get_spec
        from .weights import Weights, load_model

        if model is None:
            weights = Weights(key.weights_kind, key.weights_path, "", "")
            model = load_model(get_spec(key.model), weights, device=key.device)
        self.dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[key.dtype]
        model = model.to(self.dtype)
        self.net = PatchEncoder(model, key.layers, key.dpam, key.dpam_blocks)
        self.device = key.device

    def encode(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(B, H, W, 3) uint8 -> global (B, D) and patches (B, L, P, D), float16 numpy."""
        import torch

        from ...model.encoder import preprocess

        # a copy: images read from a PNG are read-only, and torch warns about every one of them
        x = preprocess(torch.from_numpy(np.array(images, order="C")).to(self.device), self.net.image_size)
        glob, patch = self.net(x.to(self.dtype))
        return glob.to(torch.float16).cpu().numpy(), patch.to(torch.float16).cpu().numpy()


def resolve_device(device: str) -> str:
    """`auto` -> `cuda` when a GPU is there, else `cpu`; an explicit `cuda` without one is an error.

    Every command that loads a model resolves its device first: the torch stack is checked here, once.
    """
    from ..environment import require_torch_stack

    require_torch_stack()
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise OptionError("device", device, "no CUDA device is available here (use cpu)")
    if device not in ("cpu",) and not device.startswith("cuda"):
        raise OptionError("device", device, "expected auto, cpu or cuda")
    return device


@lru_cache(maxsize=1)
def get_encoder(key: EncoderKey) -> Encoder:
    """The process's encoder: loaded once per worker, reused by every task."""
    return Encoder(key)


class RowIO(Protocol):
    """Where `encode_blocks` reads rendered rows and writes their features."""

    def read(self, r: int) -> tuple[np.ndarray, np.ndarray | None]:
        """(V, H, W, 3) views of row r and its (H, W, 3) RGB image or None."""

    def write(self, r: int, glob: np.ndarray, patch: np.ndarray, rgb_glob: np.ndarray | None,
              rgb_patch: np.ndarray | None) -> None:
        """Store row r's features and mark it done."""


@dataclass
class Block:
    """Rows encoded in one forward pass, and which of them still need writing."""

    rows: list[int]
    write: list[int]
    images: dict[int, np.ndarray]  # row -> (V, H, W, 3)
    rgb: dict[int, np.ndarray]  # row -> (H, W, 3)


def encode_blocks(blocks: Sequence[tuple[list[int], list[int]]], encoder: Encoder, io: RowIO,
                  on_row: Callable[[int, str], None]) -> None:
    """Encode `blocks` [(rows, rows_to_write)], reading and writing rows through `io`.

    Three stages overlap: the reader thread fetches block k+1 while block k is encoded, and the
    writer thread stores block k-1. `on_row(row, error)` is called once per row to write.
    """
    loaded: queue.Queue = queue.Queue(maxsize=2)
    encoded: queue.Queue = queue.Queue(maxsize=2)

    def read() -> None:
        try:
            for rows, write in blocks:
                block = Block(rows, write, {}, {})
                for r in rows:
                    try:
                        images, rgb = io.read(r)
                        block.images[r] = images
                        if rgb is not None:
                            block.rgb[r] = rgb
                    except Exception as exc:  # a broken chunk fails its row only
                        block.images.pop(r, None)
                        if r in write:
                            on_row(r, one_line(exc))  # names the render row and array (CorruptRow)
                loaded.put(block)
        finally:
            loaded.put(None)  # always: the forward loop must never wait forever

    def store() -> None:
        while (item := encoded.get()) is not None:
            block, glob, patch = item
            for r in block.write:
                if r not in glob:
                    continue
                try:
                    io.write(r, glob[r][0], patch[r][0], glob[r][1], patch[r][1])
                    on_row(r, "")
                except Exception as exc:
                    on_row(r, f"writing encode row {r}: {type(exc).__name__}: {exc}")

    reader = threading.Thread(target=read, daemon=True)
    writer = threading.Thread(target=store, daemon=True)
    reader.start()
    writer.start()
    try:
        while (block := loaded.get()) is not None:
            encoded.put(_forward(block, encoder, on_row))
    finally:
        encoded.put(None)
        writer.join()
        reader.join()


def _forward(block: Block, encoder: Encoder, on_row: Callable[[int, str], None]) -> tuple:
    """One forward pass over every image of a block; results split back per row."""
    rows = [r for r in block.rows if r in block.images]
    stack = [block.images[r] for r in rows] + [block.rgb[r][None] for r in rows if r in block.rgb]
    glob: dict[int, tuple] = {}
    patch: dict[int, tuple] = {}
    if not rows:
        return block, glob, patch
    try:
        g, p = encoder.encode(np.concatenate(stack))
    except Exception as exc:  # the whole block fails, the run goes on
        for r in block.write:
            if r in block.images:
                on_row(r, f"encoding: {type(exc).__name__}: {exc}")
        return block, glob, patch
    at = 0
    for r in rows:
        v = len(block.images[r])
        glob[r], patch[r] = [g[at:at + v], None], [p[at:at + v], None]
        at += v
    for r in rows:
        if r in block.rgb:
            glob[r][1], patch[r][1] = g[at], p[at]
            at += 1
    return block, glob, patch
