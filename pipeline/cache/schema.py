"""The arrays of each stage group (docs/STORE.md) and typed readers and writers of their rows.

This is the one module that spells the contract's array names, shapes, chunks and codecs. Stage
cores hand it their dataclasses (`Cleaned`, `Rendered`, encoder outputs) and get typed rows back
(`CleanRow`, `EncodedRow`, `ScoringRow`); nobody else indexes a group by an array name. Renaming
or re-chunking an array is an edit here and in STORE.md (and the outside checker), nowhere else.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import zarr

from . import checksums, store
from .view import View

# ---------------------------------------------------------------- clean


class CleanedLike(Protocol):
    """What the clean stage produces for one sample (`stages.clean.Cleaned` is one)."""

    xyz: np.ndarray
    label: np.ndarray
    rgb: np.ndarray | None
    grid: np.ndarray | None
    grid_shape: tuple[int, int] | None
    rgb_grid: np.ndarray | None


@dataclass(frozen=True)
class CleanRow:
    """One cleaned cloud as the cache holds it (the input of render and scoring)."""

    xyz: np.ndarray  # (n, 3) float32
    label: np.ndarray  # (n,) uint8
    rgb: np.ndarray | None  # (n, 3) uint8
    grid: np.ndarray | None  # (n,) int32 flat index into the organized grid
    rgb_grid: np.ndarray | None  # (H, W, 3) the registered RGB image on that grid


def create_clean_group(root: zarr.Group, fp: str, config: dict[str, Any], attrs: dict[str, Any]) -> zarr.Group:
    """An empty `clean/<fp>` (row columns and `meta/*`; rows are appended); marked initialised."""
    grp = store.create_group(root, "clean", fp, upstream=None, config=config, attrs=attrs)
    store.mark_initialized(grp)
    return grp


def write_clean_row(grp: zarr.Group, r: int, out: CleanedLike) -> None:
    """Row r's `points/<r>/{xyz,label,rgb,grid}` (and `rgb_grid/<r>`); the driver marks it done."""
    points = {"xyz": out.xyz, "label": out.label}
    if out.rgb is not None:
        points["rgb"] = out.rgb
    if out.grid is not None:
        points["grid"] = out.grid
    # beyond STORE.md's list: `rgb_grid/<r>`, the registered RGB image for `render`
    store.write_row(grp, r, {}, points, {"rgb_grid/*": out.rgb_grid} if out.rgb_grid is not None else None)
    if out.grid_shape is not None:
        grp[f"points/{r}/grid"].attrs["grid_shape"] = list(out.grid_shape)


def read_clean_row(grp: zarr.Group, r: int, with_rgb_grid: bool = False) -> CleanRow:
    """Row r of a clean group."""
    rows = checksums.CheckedRows(grp)
    arrays = rows.per_row(r, "points")
    rgb_grid = None
    if with_rgb_grid and rows.has(r, "rgb_grid/*"):
        rgb_grid = rows.read(r, "rgb_grid/*")
    return CleanRow(arrays["xyz"], arrays["label"], arrays.get("rgb"), arrays.get("grid"), rgb_grid)


# ---------------------------------------------------------------- render


class RenderedLike(Protocol):
    """What the render stage produces for one sample (`stages.render.Rendered` is one)."""

    image: np.ndarray
    mask2d: np.ndarray
    pix2pt: np.ndarray
    camera: np.ndarray
    eps: Any
    pt2pix: np.ndarray
    rgb_image: np.ndarray | None
    rgb_pix: np.ndarray | None


def create_render_group(root: zarr.Group, fp: str, clean_grp: zarr.Group, config: dict[str, Any],
                        views: int, size: int, backend: str, attrs: dict[str, Any]) -> zarr.Group:
    """An empty `render/<fp>` with its row-axis arrays made up front (workers never race to create them)."""
    n = 0
    rgb = bool(clean_grp.attrs.get("organized") and clean_grp.attrs.get("has_rgb"))
    grp = store.create_group(root, "render", fp, upstream=clean_grp.attrs["fingerprint"], config=config,
                             backend=backend, attrs={**attrs, "image_size": [size, size], "has_rgb": rgb})
    view_chunk = (1, 1, size, size)
    store.create_rows_array(grp, "image", (n, views, size, size, 3), np.uint8, chunks=(*view_chunk, 3),
                            fill_value=255)
    store.create_rows_array(grp, "mask2d", (n, views, size, size), np.uint8, chunks=view_chunk)
    store.create_rows_array(grp, "pix2pt", (n, views, size, size), np.int32, chunks=view_chunk, fill_value=-1)
    store.create_rows_array(grp, "camera", (n, views, 3, 4), np.float32)
    store.create_rows_array(grp, "eps", (n,), np.float32)
    if rgb:
        store.create_rows_array(grp, "rgb_image", (n, size, size, 3), np.uint8)
    store.mark_initialized(grp)
    return grp


def write_render_row(grp: zarr.Group, r: int, out: RenderedLike) -> None:
    """Row r of every render array and `points/<r>/{pt2pix,rgb_pix}`; the driver marks it done."""
    rows = {"image": out.image, "mask2d": out.mask2d, "pix2pt": out.pix2pt, "camera": out.camera, "eps": out.eps}
    per_point = {"pt2pix": out.pt2pix}
    if grp.attrs.get("has_rgb") and out.rgb_image is not None:
        rows["rgb_image"], per_point["rgb_pix"] = out.rgb_image, out.rgb_pix
    store.write_row(grp, r, rows, per_point)


def render_has_rgb(grp: zarr.Group) -> bool:
    """Whether a render group holds the registered RGB image."""
    return bool(grp.attrs.get("has_rgb"))


def views_per_row(render_grp: zarr.Group) -> int:
    """Images encoded per row: the K views, plus the RGB image where there is one."""
    return int(render_grp["image"].shape[1]) + (1 if "rgb_image" in render_grp else 0)


# ---------------------------------------------------------------- encode


def create_encode_group(root: zarr.Group, fp: str, render_grp: zarr.Group, config: dict[str, Any],
                        info: dict[str, Any]) -> zarr.Group:
    """An empty `encode/<fp>`: float16 `global`/`patch` (and `rgb_*`) arrays, Blosc zstd, one row a chunk."""
    n = 0
    views = render_grp["image"].shape[1]
    d, p, layers = info["embed_dim"], info["patch_grid"][0] * info["patch_grid"][1], len(info["layers"])
    grp = store.create_group(root, "encode", fp, upstream=render_grp.attrs["fingerprint"], config=config,
                             attrs=info)
    codec = store.feature_codec()
    store.create_rows_array(grp, "global", (n, views, d), np.float16, compressors=codec)
    store.create_rows_array(grp, "patch", (n, views, layers, p, d), np.float16, compressors=codec)
    if "rgb_image" in render_grp:
        store.create_rows_array(grp, "rgb_global", (n, d), np.float16, compressors=codec)
        store.create_rows_array(grp, "rgb_patch", (n, layers, p, d), np.float16, compressors=codec)
    store.mark_initialized(grp)
    return grp


class FeatureRows:
    """Row I/O of the encode stage: rendered images in, features out (what `stages.encode` is given).

    Rows are the encode group's; `sources[r]` is the render row encode row r is made from.
    """

    def __init__(self, render: zarr.Group, out: zarr.Group, sources: dict[int, int]) -> None:
        self.render, self.out, self.sources = render, out, sources
        self.has_rgb = "rgb_image" in render
        self.checked = checksums.CheckedRows(render)

    def read(self, r: int) -> tuple[np.ndarray, np.ndarray | None]:
        """(V, H, W, 3) views and the (H, W, 3) RGB image (or None) of encode row r's render row, checked."""
        src = self.sources[r]
        images = self.checked.read(src, "image")
        return images, self.checked.read(src, "rgb_image") if self.has_rgb else None

    def write(self, r: int, glob: np.ndarray, patch: np.ndarray, rgb_glob: np.ndarray | None,
              rgb_patch: np.ndarray | None) -> None:
        """Row r's features and checksum (the driver marks it done once this returns)."""
        rows = {"global": glob, "patch": patch}
        if rgb_glob is not None:
            rows |= {"rgb_global": rgb_glob, "rgb_patch": rgb_patch}
        store.write_row(self.out, r, rows, {})


# ---------------------------------------------------------------- readers for training and scoring


@dataclass(frozen=True)
class EncodedRow:
    """One row as training reads it (the fields `stages.train.collate` expects)."""

    row: int
    patch: np.ndarray  # (K, Ls, P, D) the scored layers
    glob: np.ndarray  # (K, D)
    mask: np.ndarray  # (K, H, W) the rendered 2D masks
    pt2pix: np.ndarray  # (n, K)
    y: np.ndarray  # (n,) point labels
    label: int
    cls: str


@dataclass(frozen=True)
class ScoringRow:
    """What scoring one row needs (no 2D masks, which are only for training and montages)."""

    xyz: np.ndarray  # (n, 3)
    y: np.ndarray  # (n,) uint8 point labels
    grid: np.ndarray | None  # (n,) flat cell index, organized sources
    patch: np.ndarray  # (K, P, D) the first scored layer
    glob: np.ndarray  # (K, D)
    pt2pix: np.ndarray  # (n, K)
    rgb: tuple[np.ndarray, np.ndarray] | None  # the RGB image's (P, D) patch tokens and (D,) global


@dataclass(frozen=True)
class MontageRow:
    """What a report montage shows of one row."""

    images: np.ndarray  # (K, H, W, 3)
    patch: np.ndarray  # (K, P, D) the first scored layer
    mask: np.ndarray  # (K, H, W)


class CachedSamples:
    """The rows of a current view (`view.View`) with what training and scoring need from its three groups.

    Samples are view positions i: encode row `view.rows[i, 2]`, render row `[i, 1]`, clean row `[i, 0]`.

    Args:
        view: the dataset's current view of one encode group.
        layers: the scored blocks (must be among the encode group's `layers`).
    """

    def __init__(self, view: View, layers: Sequence[int]) -> None:
        self.encode, self.render, self.clean = view.encode, view.render, view.clean
        self.rows = view.rows
        cached = list(self.encode.attrs["layers"])
        missing = [x for x in layers if x not in cached]
        if missing:
            raise ValueError(f"layers {missing} are not in the cache (it holds {cached})")
        self.layer_index = [cached.index(x) for x in layers]
        self.grid = tuple(self.encode.attrs["patch_grid"])
        self.size = int(self.render.attrs["image_size"][0])
        self.classes: list[str] = view.meta.classes
        self.labels = np.asarray(view.meta.labels, int)
        self.has_rgb = "rgb_patch" in self.encode and "rgb_image" in self.render
        self.digest = view.digest()  # which samples at which versions: recorded in run reports
        # every read is checked against its row's checksums: damage fails loudly, never reads as zeros
        self.checked = (checksums.CheckedRows(self.encode), checksums.CheckedRows(self.render),
                        checksums.CheckedRows(self.clean))

    def item(self, i: int) -> EncodedRow:
        """One sample for training."""
        c, r, e = (int(x) for x in self.rows[i])
        enc, ren, cln = self.checked
        return EncodedRow(i, enc.read(e, "patch")[:, self.layer_index], enc.read(e, "global"),
                          ren.read(r, "mask2d"), ren.read(r, "points/*/pt2pix"), cln.read(c, "points/*/label"),
                          int(self.labels[i]), self.classes[i])

    def scoring(self, i: int, organized: bool, with_rgb: bool) -> ScoringRow:
        """One sample for scoring, from the first scored layer."""
        c, r, e = (int(x) for x in self.rows[i])
        enc, ren, cln = self.checked
        li = self.layer_index[0]
        rgb = None
        if with_rgb:
            rgb = (enc.read(e, "rgb_patch")[li], enc.read(e, "rgb_global"))
        return ScoringRow(cln.read(c, "points/*/xyz"), cln.read(c, "points/*/label").astype(np.uint8),
                          cln.read(c, "points/*/grid") if organized else None,
                          enc.read(e, "patch")[:, li], enc.read(e, "global"), ren.read(r, "points/*/pt2pix"), rgb)

    def montage(self, i: int) -> MontageRow:
        """Sample i's views, first scored layer's patch tokens and 2D masks."""
        _, r, e = (int(x) for x in self.rows[i])
        enc, ren, _ = self.checked
        return MontageRow(ren.read(r, "image"), enc.read(e, "patch")[:, self.layer_index[0]], ren.read(r, "mask2d"))
