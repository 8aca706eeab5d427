"""MVTec 3D-AD: organized xyz tiffs with registered RGB and GT pngs (DATASETS.md).

Layout, per class folder:
    `<class>/{train,validation}/good/{rgb,xyz}/NNN.{png,tiff}`
    `<class>/test/<defect or good>/{rgb,xyz,gt}/NNN.{png,tiff,png}`

The readers here (`read_xyz`, `read_rgb`, `read_mask`) and the MVTec-style tree walk are shared
with the Eyecandies loader, whose common conversion (M3DM's) writes the same tree.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

from ..errors import CatalogError, SampleError, first_line
from ._common import as_names, shape_text, visible_dirs, visible_files
from .base import LABEL_ANOMALOUS, LABEL_GOOD, Sample, SampleRef

SPLITS = ("train", "validation", "test")
GOOD = "good"
XYZ_SUFFIXES = (".tiff", ".tif")
PNG_SUFFIXES = (".png",)
# role (= sub-folder name) -> (accepted suffixes, suffix of the path named when the file is missing)
ROLES: dict[str, tuple[tuple[str, ...], str]] = {
    "xyz": (XYZ_SUFFIXES, ".tiff"),
    "rgb": (PNG_SUFFIXES, ".png"),
    "gt": (PNG_SUFFIXES, ".png"),
}
_NAMES = {"xyz": "xyz tiff", "rgb": "rgb png", "gt": "gt png"}


def select_classes(
    root: Path, classes: Iterable[str] | None, is_class: Callable[[Path], bool], layout: str
) -> list[tuple[str, Path]]:
    """Find the class folders under `root` that `is_class` accepts.

    Raises:
        CatalogError: the root is missing or holds no class folder, or a requested class is absent.
    """
    root = Path(root)
    if not root.is_dir():
        raise CatalogError(f"{layout} root {root} does not exist or is not a folder")
    found = {p.name: p for p in visible_dirs(root) if is_class(p)}
    if not found:
        raise CatalogError(f"{root}: no {layout} class folders found (not a {layout} tree?)")
    wanted = as_names(classes)
    if wanted is None:
        return sorted(found.items())
    for name in wanted:
        if name not in found:
            raise CatalogError(
                f"class {name!r} not found: {root / name} is not a {layout} class folder "
                f"(found: {', '.join(sorted(found))})"
            )
    return [(name, found[name]) for name in sorted(set(wanted))]


def select_splits(class_dir: Path, present: list[str], splits: Iterable[str] | None) -> list[str]:
    """The requested splits of one class, all present ones when `splits` is None.

    Raises:
        CatalogError: a requested split is not in this class folder.
    """
    wanted = as_names(splits)
    if wanted is None:
        return present
    for name in wanted:
        if name not in present:
            raise CatalogError(
                f"split {name!r} not found in {class_dir} (expected {class_dir / name}; "
                f"found: {', '.join(present) or 'none'})"
            )
    return [s for s in present if s in wanted]


# ---------------------------------------------------------------------------------------------
# Readers: every failure becomes a SampleError naming the file
# ---------------------------------------------------------------------------------------------


def read_xyz(path: Path) -> np.ndarray:
    """Read an organized xyz tiff as H×W×3 float32; non-finite values are kept (clean drops them).

    Raises:
        SampleError: unreadable or truncated file, or not H×W×3 floating point.
    """
    try:
        xyz = tifffile.imread(path)
    except Exception as exc:  # tifffile raises many types for corrupt input
        raise SampleError(path, f"cannot read xyz tiff ({first_line(exc)})") from exc
    if xyz.ndim != 3 or xyz.shape[2] != 3 or not np.issubdtype(xyz.dtype, np.floating):
        raise SampleError(path, f"expected H×W×3 float32, got {shape_text(xyz.shape)} {xyz.dtype}")
    return np.ascontiguousarray(xyz, dtype=np.float32)


def open_image(path: Path, what: str) -> Image.Image:
    """Open and fully decode an image, so that a truncated file fails here, not later."""
    try:
        img = Image.open(path)
        img.load()
    except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError, ...
        raise SampleError(path, f"cannot read {what} ({first_line(exc)})") from exc
    return img


def read_rgb(path: Path, shape: tuple[int, int], ref_path: Path) -> np.ndarray:
    """Read a colour png as H×W×3 uint8 that must match the grid `shape` of `ref_path`.

    Raises:
        SampleError: unreadable file or a size other than `shape`.
    """
    img = open_image(path, "rgb png")
    if img.mode != "RGB":
        img = img.convert("RGB")
    rgb = np.asarray(img, dtype=np.uint8)
    if rgb.shape[:2] != tuple(shape):
        raise SampleError(
            path, f"rgb is {shape_text(rgb.shape[:2])}, {ref_path} is {shape_text(tuple(shape))}"
        )
    return rgb


def read_mask(
    path: Path, shape: tuple[int, int] | None = None, ref_path: Path | None = None, what: str = "gt"
) -> np.ndarray:
    """Read a GT png as an H×W bool mask: any non-zero value is a defect (253/254/255 are types).

    Args:
        path: the mask png.
        shape: the grid H×W it must match, or None to skip the check.
        ref_path: the file that gave `shape`, named in the error.
        what: how the error names the mask (`gt`, `mask`).

    Raises:
        SampleError: unreadable file or a size other than `shape`.
    """
    img = open_image(path, f"{what} png")
    if img.mode in ("P", "PA"):  # palette indices are not intensities
        img = img.convert("RGBA" if img.mode == "PA" else "RGB")
    arr = np.asarray(img)
    if arr.ndim == 3:
        if img.mode in ("LA", "RGBA", "La", "RGBa"):
            arr = arr[..., :-1]  # an opaque alpha channel is not a defect
        arr = arr.max(axis=2)
    if shape is not None and arr.shape != tuple(shape):
        raise SampleError(
            path, f"{what} is {shape_text(arr.shape)}, {ref_path} is {shape_text(tuple(shape))}"
        )
    return arr > 0


def organized_sample(
    ref: SampleRef, xyz: np.ndarray, mask: np.ndarray | None, rgb: np.ndarray | None
) -> Sample:
    """Flatten an H×W grid into a validated `Sample` (whole grid, row-major, grid = arange)."""
    h, w = xyz.shape[:2]
    labels = np.zeros(h * w, np.uint8) if mask is None else mask.reshape(-1).astype(np.uint8)
    return Sample(
        ref=ref,
        points=xyz.reshape(h * w, 3),
        labels=labels,
        rgb=None if rgb is None else rgb.reshape(h * w, 3),
        grid=np.arange(h * w, dtype=np.int32),
        grid_shape=(h, w),
    ).validate()


# ---------------------------------------------------------------------------------------------
# The MVTec-style tree: <class>/<split>/<defect>/{xyz,rgb,gt}/<stem>.<ext>
# ---------------------------------------------------------------------------------------------


def _role_files(defect_dir: Path, role: str) -> dict[str, Path]:
    """Stem -> file of one role folder, hidden files and foreign suffixes skipped."""
    suffixes = ROLES[role][0]
    folder = defect_dir / role
    if not folder.is_dir():
        return {}
    files: dict[str, Path] = {}
    for p in visible_files(folder, suffixes):
        files.setdefault(p.stem, p)
    return files


def index_defect_dir(cls: str, split: str, defect_dir: Path) -> list[SampleRef]:
    """One ref per stem seen in any of xyz/rgb/gt, so that an incomplete pair fails visibly on load.

    `files` always holds `xyz` and `rgb` (the expected path when absent); `gt` is there when the
    file exists, or as the expected path for a defect sample, whose mask is required.
    """
    defect = defect_dir.name
    found = {role: _role_files(defect_dir, role) for role in ROLES}
    stems = sorted(set().union(*found.values()))
    refs = []
    for stem in stems:
        files: dict[str, str] = {}
        for role, (_, default_suffix) in ROLES.items():
            path = found[role].get(stem)
            if path is None and (role != "gt" or defect != GOOD):
                path = defect_dir / role / f"{stem}{default_suffix}"
            if path is not None:
                files[role] = str(path)
        refs.append(
            SampleRef(
                id=f"{cls}/{split}/{defect}/{stem}",
                cls=cls,
                split=split,
                defect=defect,
                label=LABEL_GOOD if defect == GOOD else LABEL_ANOMALOUS,
                source=files["xyz"],
                files=files,
            )
        )
    return refs


def index_tree(
    class_dir: Path, cls: str, known_splits: Iterable[str], splits: Iterable[str] | None
) -> list[SampleRef]:
    """Refs of one class folder in the MVTec-style tree (any folder not in `known_splits` skipped)."""
    present = [s for s in known_splits if (class_dir / s).is_dir()]
    refs: list[SampleRef] = []
    for split in select_splits(class_dir, present, splits):
        for defect_dir in visible_dirs(class_dir / split):
            refs.extend(index_defect_dir(cls, split, defect_dir))
    return refs


def require_file(ref: SampleRef, role: str, what: str | None = None) -> Path:
    """The path of one role of `ref`, checked to exist; a missing one names its expected place.

    Raises:
        SampleError: the file is not there (an incomplete pair, or removed since `index`).
    """
    path = Path(ref.files[role])
    if not path.is_file():
        what = what or _NAMES.get(role, role)
        raise SampleError(path, f"{what} missing for {ref.id}, expected at {path}")
    return path


def read_tree_sample(ref: SampleRef) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Read the xyz grid, GT mask (None without gt) and RGB of an MVTec-style ref.

    Raises:
        SampleError: a missing partner file, an unreadable file, or sizes that disagree.
    """
    xyz_path, rgb_path = require_file(ref, "xyz"), require_file(ref, "rgb")
    gt_path = require_file(ref, "gt") if "gt" in ref.files else None
    xyz = read_xyz(xyz_path)
    shape = xyz.shape[:2]
    rgb = read_rgb(rgb_path, shape, xyz_path)
    mask = None if gt_path is None else read_mask(gt_path, shape, xyz_path)
    return xyz, mask, rgb


def is_tree_class(class_dir: Path, known_splits: Iterable[str]) -> bool:
    """True when the folder holds at least one split folder of the MVTec-style tree."""
    return any((class_dir / s).is_dir() for s in known_splits)


class MVTec3DLoader:
    """Loader for MVTec 3D-AD as shipped (or already preprocessed in place: just another H×W).

    Every sample is the whole organized grid; missing points stay (0, 0, 0) for the clean stage.
    """

    organized = True
    has_rgb = True

    def index(
        self, root: Path, classes: Iterable[str] | None, splits: Iterable[str] | None
    ) -> list[SampleRef]:
        """List the samples of the selected classes and splits, sorted by id.

        Raises:
            CatalogError: the root is not an MVTec 3D-AD tree, or a requested class/split is absent.
        """
        refs: list[SampleRef] = []
        for cls, class_dir in select_classes(
            Path(root), classes, lambda p: is_tree_class(p, SPLITS), "MVTec 3D-AD"
        ):
            refs.extend(index_tree(class_dir, cls, SPLITS, splits))
        return sorted(refs, key=lambda r: r.id)

    def load(self, ref: SampleRef) -> Sample:
        """Read one sample's grid, colour and mask.

        Raises:
            SampleError: naming the file for any missing, unreadable or mis-sized input.
        """
        xyz, mask, rgb = read_tree_sample(ref)
        return organized_sample(ref, xyz, mask, rgb)
