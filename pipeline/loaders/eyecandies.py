"""Eyecandies, in either of its two layouts, auto-detected per class folder (DATASETS.md).

- raw (as released): `<Class>/{train,val,test_public,test_private}/data/<idx>_<item>.<ext>`. The
  cloud is back-projected from the 16-bit depth png with the toolkit's pinhole camera:
    1. depth = png / 65535 · (max − min) + min, with min/max from `info_depth.yaml`;
    2. X_cam = [d(u − W/2)/f, d(v − H/2)/f, d], u the column, v the row, f = 711.11 px;
    3. X_world = pose · X_cam (the toolkit's camera → world), or inv(pose) with `pose="inverse"`.
  Every pixel is a point (the table is a plane the clean stage removes).
- converted (M3DM's MVTec-style tree): `<Class>/{train/good,test/good,test/bad}/{rgb,xyz,gt}/`.
  Read exactly as MVTec 3D-AD, except that its background is one constant non-zero point, which
  becomes (0, 0, 0) (missing) here.

A ref from the raw layout carries a `depth` file, one from the converted tree an `xyz` file; that
is how `load` tells them apart, with no state kept between `index` and `load`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import yaml

from ..errors import CatalogError, SampleError
from ._common import is_hidden, shape_text, visible_dirs
from .base import LABEL_ANOMALOUS, LABEL_GOOD, LABEL_UNKNOWN, Sample, SampleRef
from .mvtec3d import (
    index_tree,
    is_tree_class,
    open_image,
    organized_sample,
    read_mask,
    read_rgb,
    read_tree_sample,
    require_file,
    select_classes,
    select_splits,
)

RAW_SPLITS = ("train", "val", "test_public", "test_private")
CONVERTED_SPLITS = ("train", "test")  # M3DM's conversion leaves `val` out
UNLABELLED_SPLITS = frozenset({"test_private"})  # ships without any mask
FOCAL_PX = 711.11  # the one camera of the whole dataset
POSES = ("toolkit", "inverse")
IMAGES = tuple(f"image_{k}" for k in range(6))
BACKGROUND_MIN_SHARE = 0.05  # a single exact xyz value on more cells than this is background
UNKNOWN = "unknown"
_ITEM = re.compile(r"^(\d+)_(.+)$")
_MASK_SUFFIX = "_mask"
_DEPTH_MODES = ("I;16", "I;16L", "I;16B", "I;16N")


# ---------------------------------------------------------------------------------------------
# Layout detection
# ---------------------------------------------------------------------------------------------


def is_raw_class(class_dir: Path) -> bool:
    """True when some split of the folder has the raw `data/` sub-folder."""
    return any((class_dir / s / "data").is_dir() for s in RAW_SPLITS)


def is_converted_class(class_dir: Path) -> bool:
    """True when some split holds MVTec-style `<defect>/xyz` folders."""
    return is_tree_class(class_dir, CONVERTED_SPLITS) and any(
        (d / "xyz").is_dir() for s in CONVERTED_SPLITS for d in visible_dirs(class_dir / s)
    )


def class_layout(class_dir: Path) -> str:
    """`raw` or `converted`.

    Raises:
        CatalogError: the folder holds both, which would mix two coordinate frames in one cache.
    """
    raw, converted = is_raw_class(class_dir), is_converted_class(class_dir)
    if raw and converted:
        raise CatalogError(
            f"{class_dir} holds both the raw Eyecandies layout (<split>/data/) and an MVTec-style "
            "converted tree (<split>/<defect>/xyz/); point the catalog at one of them"
        )
    return "raw" if raw else "converted"


# ---------------------------------------------------------------------------------------------
# Raw layout: index
# ---------------------------------------------------------------------------------------------


def group_items(data_dir: Path) -> dict[str, dict[str, Path]]:
    """Group `<idx>_<item>.<ext>` files as idx -> item -> path; idx keeps its on-disk zero padding."""
    samples: dict[str, dict[str, Path]] = {}
    for p in sorted(data_dir.iterdir()):
        match = _ITEM.match(p.stem)
        if match and p.is_file() and not is_hidden(p):
            samples.setdefault(match.group(1), {}).setdefault(match.group(2), p)
    return samples


def _nonzero(path: Path) -> bool | None:
    """Whether a mask has any defect pixel; None when it cannot be read."""
    try:
        return bool(read_mask(path, what="mask").any())
    except SampleError:
        return None


def _label_from_masks(items: dict[str, Path]) -> tuple[int, str]:
    """(label, defect) from `mask.png` and the per-type `<type>_mask.png` files beside it."""
    has_defect = _nonzero(items["mask"]) if "mask" in items else None
    if has_defect is None:
        return LABEL_UNKNOWN, UNKNOWN  # load will fail on the missing or broken mask
    if not has_defect:
        return LABEL_GOOD, "good"
    kinds = sorted(i[: -len(_MASK_SUFFIX)] for i in items if i.endswith(_MASK_SUFFIX))
    present = [k for k in kinds if _nonzero(items[k + _MASK_SUFFIX])]
    return LABEL_ANOMALOUS, "+".join(present) or "anomalous"


def _raw_ref(cls: str, split: str, data_dir: Path, idx: str, items: dict[str, Path], rgb: str) -> SampleRef:
    """One raw sample: required items get their expected path when absent, so load can name it."""

    def path(item: str, ext: str) -> str:
        return str(items.get(item, data_dir / f"{idx}_{item}.{ext}"))

    files = {
        "depth": path("depth", "png"),
        "info_depth": path("info_depth", "yaml"),
        "pose": path("pose", "txt"),
        "rgb": path(rgb, "png"),
    }
    if split in UNLABELLED_SPLITS and "mask" not in items:
        label, defect = LABEL_UNKNOWN, UNKNOWN
    else:
        files["mask"] = path("mask", "png")
        files.update({i: str(p) for i, p in items.items() if i.endswith(_MASK_SUFFIX)})
        label, defect = _label_from_masks(items)
    return SampleRef(
        id=f"{cls}/{split}/{idx}",
        cls=cls,
        split=split,
        defect=defect,
        label=label,
        source=files["depth"],
        files=files,
    )


# ---------------------------------------------------------------------------------------------
# Raw layout: readers and back-projection
# ---------------------------------------------------------------------------------------------


def read_depth(path: Path) -> np.ndarray:
    """Read the 16-bit depth png as H×W uint16, every bit kept.

    Raises:
        SampleError: unreadable, or not a single-channel 16-bit image.
    """
    img = open_image(path, "depth png")
    if img.mode in _DEPTH_MODES:
        return np.array(img, dtype=np.uint16)
    if img.mode == "I":  # 32-bit container: accept only if the values fit 16 bits
        arr = np.asarray(img)
        if arr.size and (arr.min() < 0 or arr.max() > 65535):
            raise SampleError(path, f"depth values {arr.min()}..{arr.max()} do not fit 16 bits")
        return arr.astype(np.uint16)
    raise SampleError(path, f"expected a 16-bit single-channel depth png, got mode {img.mode}")


def read_normalization(path: Path) -> tuple[float, float]:
    """(min, max) of `info_depth.yaml`'s `normalization`.

    Raises:
        SampleError: unreadable yaml or no finite `normalization: {min, max}`.
    """
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        lo, hi = float(data["normalization"]["min"]), float(data["normalization"]["max"])
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise SampleError(path, f"cannot read depth info yaml ({type(exc).__name__})") from exc
    except (TypeError, KeyError, ValueError) as exc:
        raise SampleError(path, "expected `normalization: {min: float, max: float}`") from exc
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise SampleError(path, f"normalization min/max must be finite, got {lo}, {hi}")
    return lo, hi


def read_pose(path: Path, inverse: bool) -> np.ndarray:
    """The 4×4 camera → world pose (or its inverse), float64.

    Raises:
        SampleError: unreadable, not 4×4 finite with last row 0 0 0 1, or singular for `inverse`.
    """
    try:
        pose = np.loadtxt(path, dtype=np.float64, ndmin=2)
    except (OSError, ValueError) as exc:
        raise SampleError(path, f"cannot read pose ({type(exc).__name__})") from exc
    if pose.shape != (4, 4) or not np.isfinite(pose).all():
        raise SampleError(path, f"expected a finite 4×4 pose, got {shape_text(pose.shape)}")
    if not np.allclose(pose[3], [0, 0, 0, 1]):
        raise SampleError(path, f"expected last pose row 0 0 0 1, got {pose[3].tolist()}")
    if not inverse:
        return pose
    try:
        return np.linalg.inv(pose)
    except np.linalg.LinAlgError as exc:
        raise SampleError(path, "pose is singular, cannot invert it") from exc


def back_project(depth: np.ndarray, transform: np.ndarray, focal: float = FOCAL_PX) -> np.ndarray:
    """Metric depth H×W → (H*W, 3) float32 world points, row-major (see the module docstring)."""
    h, w = depth.shape
    v, u = np.indices((h, w), dtype=np.float64)
    cam = np.stack([depth * (u - w / 2) / focal, depth * (v - h / 2) / focal, depth], axis=-1)
    world = cam.reshape(-1, 3) @ transform[:3, :3].T + transform[:3, 3]
    return world.astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Converted tree: the constant background point
# ---------------------------------------------------------------------------------------------


def drop_constant_background(xyz: np.ndarray, min_share: float = BACKGROUND_MIN_SHARE) -> np.ndarray:
    """Set the most frequent exact xyz triple to (0, 0, 0) when it covers more than `min_share`."""
    flat = np.ascontiguousarray(xyz.reshape(-1, 3))
    keys = flat.view(np.dtype((np.void, flat.dtype.itemsize * 3))).ravel()
    _, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    top = int(counts.argmax())
    if counts[top] <= min_share * len(flat):
        return xyz
    out = flat.copy()
    out[inverse.ravel() == top] = 0
    return out.reshape(xyz.shape)


class EyecandiesLoader:
    """Loader for Eyecandies, raw or converted to the MVTec-style tree.

    Args:
        pose: `toolkit` (X_world = pose · X_cam, the default) or `inverse` (inv(pose), as M3DM's
            converter does). Raw layout only; never mix the two in one cache.
        rgb: which lighting image (`image_0` … `image_5`) colours the raw points; the converted
            tree brings its own `rgb/` pngs.

    Raises:
        CatalogError: an option value out of range.
    """

    organized = True
    has_rgb = True

    def __init__(self, pose: str = "toolkit", rgb: str = "image_0") -> None:
        if pose not in POSES:
            raise CatalogError(f"eyecandies loader option pose={pose!r}: expected one of {list(POSES)}")
        if rgb not in IMAGES:
            raise CatalogError(f"eyecandies loader option rgb={rgb!r}: expected one of {list(IMAGES)}")
        self.pose = pose
        self.rgb = rgb

    def index(
        self, root: Path, classes: Iterable[str] | None, splits: Iterable[str] | None
    ) -> list[SampleRef]:
        """List the samples of the selected classes and splits, sorted by id.

        Labelled raw splits read each (small) `mask.png` here, to set `label` and `defect`.

        Raises:
            CatalogError: the root holds no Eyecandies class, a requested class/split is absent, or
                a class folder mixes both layouts.
        """
        refs: list[SampleRef] = []
        selected = select_classes(
            Path(root), classes, lambda p: is_raw_class(p) or is_converted_class(p), "Eyecandies"
        )
        for cls, class_dir in selected:
            if class_layout(class_dir) == "converted":
                refs.extend(index_tree(class_dir, cls, CONVERTED_SPLITS, splits))
                continue
            present = [s for s in RAW_SPLITS if (class_dir / s / "data").is_dir()]
            for split in select_splits(class_dir, present, splits):
                data_dir = class_dir / split / "data"
                for idx, items in group_items(data_dir).items():
                    refs.append(_raw_ref(cls, split, data_dir, idx, items, self.rgb))
        return sorted(refs, key=lambda r: r.id)

    def load(self, ref: SampleRef) -> Sample:
        """Read one sample as the whole organized grid.

        Raises:
            SampleError: naming the file for any missing, unreadable or mis-sized input.
        """
        if "xyz" in ref.files:
            xyz, mask, rgb = read_tree_sample(ref)
            return organized_sample(ref, drop_constant_background(xyz), mask, rgb)
        depth_path = require_file(ref, "depth", "depth png")
        depth_png = read_depth(depth_path)
        lo, hi = read_normalization(require_file(ref, "info_depth", "depth info yaml"))
        transform = read_pose(require_file(ref, "pose", "pose txt"), self.pose == "inverse")
        shape = depth_png.shape
        depth = depth_png.astype(np.float64) / 65535.0 * (hi - lo) + lo
        points = back_project(depth, transform)
        rgb = read_rgb(require_file(ref, "rgb", "rgb png"), shape, depth_path)
        mask = None
        if "mask" in ref.files:
            mask = read_mask(require_file(ref, "mask", "mask png"), shape, depth_path, what="mask")
        return organized_sample(ref, points.reshape(*shape, 3), mask, rgb)
