"""Loader for "bring your own cloud": loose `.ply`, `.pcd`, `.npy` clouds and `.stl`/`.obj`/`.off` meshes.

Why a loader of its own: `predict` must take whatever a user has on disk, with no layout and no
labels. Every file under the root is one test sample; its class is the first folder below the root
(`default` for files directly in it). Samples are unlabelled (label -1, defect `unknown`) unless the
root holds a `labels.csv` (columns `id,label` and optionally `defect`; `id` is the file's path
below the root without its extension), which makes a folder of clouds a dataset that `train` and
`evaluate` can use. Per-point labels come from a 4-column `.npy` (x, y, z, label).

Meshes (and `.ply` files that have faces) are sampled on their surface, area-weighted, with a fixed
seed so that the same file and seed always give the same points (the cache relies on it).

The `.pcd` reader here (`read_pcd`) is shared with the Real3D-AD loader.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ..errors import CatalogError, SampleError
from ._common import has_hidden_part
from .base import LABEL_UNKNOWN, Sample, SampleRef

CLOUD_SUFFIXES = (".ply", ".pcd", ".npy")
MESH_SUFFIXES = (".stl", ".obj", ".off")
SUFFIXES = CLOUD_SUFFIXES + MESH_SUFFIXES
DEFAULT_CLASS = "default"
SPLIT = "test"

_PCD_KEYS = {"VERSION", "FIELDS", "SIZE", "TYPE", "COUNT", "WIDTH", "HEIGHT", "VIEWPOINT", "POINTS", "DATA"}
_HEADER_BYTES = 1 << 16  # a PCD or PLY header is a few hundred bytes; never read a whole cloud for it


# --------------------------------------------------------------------------------------------- readers
def check_points(path: Path, points: np.ndarray) -> np.ndarray:
    """Return `points` as float32 (n, 3) after checking it is usable.

    Non-finite points are passed through on purpose: the clean stage drops them, and for organized
    data it needs every row. Only a cloud with no finite point at all is refused here.

    Raises:
        SampleError: empty cloud, or no finite point.
    """
    with np.errstate(over="ignore"):  # beyond float32 range becomes inf, refused below if all are
        points = np.asarray(points, dtype=np.float32).reshape(-1, 3)
    if len(points) == 0:
        raise SampleError(path, "empty point cloud")
    if not np.isfinite(points).all(axis=1).any():
        raise SampleError(path, f"all {len(points)} points are non-finite (NaN or inf)")
    return points


def _colors_to_uint8(colors: np.ndarray) -> np.ndarray:
    """Open3D keeps colours as floats in 0..1; the pipeline wants uint8."""
    return np.clip(np.rint(np.asarray(colors) * 255.0), 0, 255).astype(np.uint8)


def _read_header_lines(path: Path) -> list[str]:
    """The first lines of a file, decoded leniently (binary bodies come after the header)."""
    try:
        with path.open("rb") as fh:
            head = fh.read(_HEADER_BYTES)
    except OSError as exc:
        raise SampleError(path, f"cannot read file ({exc.strerror or exc})") from exc
    return head.decode("ascii", errors="replace").splitlines()


def _pcd_header(path: Path) -> dict[str, list[str]]:
    """Parse a PCD header, so that a non-PCD file or an empty cloud gets a clear message.

    Open3D answers both with an empty cloud and a printed warning, which says nothing useful.
    """
    lines = _read_header_lines(path)
    if not lines:
        raise SampleError(path, "empty point cloud (the file is 0 bytes)")
    header: dict[str, list[str]] = {}
    for number, line in enumerate(lines, start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, *values = line.split()
        if key.upper() not in _PCD_KEYS:
            problem = f"line {number} starts with {key[:20]!r}, expected a PCD header"
            raise SampleError(path, f"not a PCD file ({problem})")
        header[key.upper()] = values
        if key.upper() == "DATA":
            break
    else:
        raise SampleError(path, "not a PCD file (no `DATA` line in its header)")
    fields = [f.lower() for f in header.get("FIELDS", [])]
    if not {"x", "y", "z"} <= set(fields):
        raise SampleError(path, f"PCD header: expected fields x y z, got {' '.join(fields) or 'none'}")
    return header


def _pcd_count(header: dict[str, list[str]]) -> int | None:
    """Number of points the header announces (`POINTS`, else WIDTH x HEIGHT), None if unparsable."""
    try:
        if "POINTS" in header:
            return int(header["POINTS"][0])
        return int(header["WIDTH"][0]) * int(header["HEIGHT"][0])
    except (KeyError, IndexError, ValueError):
        return None


def _o3d_cloud(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """Read a point cloud with Open3D, keeping NaN/inf rows (the clean stage decides about them)."""
    import open3d as o3d

    with o3d.utility.VerbosityContextManager(o3d.utility.VerbosityLevel.Error):
        cloud = o3d.io.read_point_cloud(str(path), remove_nan_points=False, remove_infinite_points=False)
    points = np.asarray(cloud.points)
    if len(points) == 0:
        raise SampleError(path, "empty point cloud (Open3D read no points: empty, corrupt or unsupported)")
    rgb = _colors_to_uint8(cloud.colors) if cloud.has_colors() else None
    return check_points(path, points), rgb


def read_pcd(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """Read an ASCII or binary `.pcd`: points float32 (n, 3) and rgb uint8 (n, 3) or None.

    Raises:
        SampleError: missing file, not a PCD, empty cloud, or no finite point.
    """
    path = Path(path)
    if not path.is_file():
        raise SampleError(path, "file not found")
    if _pcd_count(_pcd_header(path)) == 0:
        raise SampleError(path, "empty point cloud")
    return _o3d_cloud(path)


def _ply_has_faces(path: Path) -> bool:
    """True when a PLY header declares a non-empty `face` element (then it is a mesh, not a cloud)."""
    lines = _read_header_lines(path)
    if not lines or lines[0].strip() != "ply":
        raise SampleError(path, "not a PLY file (it does not start with `ply`)")
    for line in lines[1:]:
        words = line.split()
        if words[:1] == ["end_header"]:
            return False
        if words[:2] == ["element", "face"] and len(words) >= 3:
            return words[2].isdigit() and int(words[2]) > 0
    raise SampleError(path, "not a PLY file (no `end_header` line)")


_PLY_SIZES = {"char": 1, "uchar": 1, "int8": 1, "uint8": 1, "short": 2, "ushort": 2, "int16": 2, "uint16": 2,
              "int": 4, "uint": 4, "float": 4, "int32": 4, "uint32": 4, "float32": 4, "double": 8, "float64": 8}


def check_ply_complete(path: Path) -> None:
    """Refuse a PLY whose body is shorter than its header announces.

    Why our own check: Open3D reads a truncated PLY as a cloud padded with zeros and only prints a
    warning, so the pipeline would score a cloud that is not the file's.
    """
    with path.open("rb") as fh:
        head = fh.read(_HEADER_BYTES)
        end = head.find(b"end_header")
        if end < 0:
            raise SampleError(path, "not a PLY file (no `end_header` line)")
        body_start = head.index(b"\n", end) + 1 if b"\n" in head[end:] else len(head)
        lines = head[:end].decode("ascii", errors="replace").splitlines()
        fmt = next((ln.split()[1] for ln in lines if ln.startswith("format ") and len(ln.split()) > 1), "")
        elements: list[list[int | None]] = []  # per element: [count, bytes per row or None for lists]
        for ln in lines:
            words = ln.split()
            if words[:1] == ["element"] and len(words) >= 3 and words[2].isdigit():
                elements.append([int(words[2]), 0])
            elif words[:1] == ["property"] and elements and elements[-1][1] is not None:
                size = _PLY_SIZES.get(words[1]) if len(words) >= 3 and words[1] != "list" else None
                elements[-1][1] = None if size is None else elements[-1][1] + size
        size_on_disk = path.stat().st_size - body_start
        if fmt.startswith("binary") and all(e[1] is not None for e in elements):
            expected = sum(int(c) * int(b) for c, b in elements)
            if size_on_disk < expected:
                raise SampleError(path, f"truncated PLY: its header announces {expected} bytes of data, the file "
                                        f"holds {size_on_disk}")
        elif fmt == "ascii":
            fh.seek(body_start)
            rows = sum(1 for line in fh if line.strip())
            expected = sum(int(e[0]) for e in elements)
            if rows < expected:
                raise SampleError(path, f"truncated PLY: its header announces {expected} rows, the file holds {rows}")


def sample_mesh(path: Path, count: int, seed: int) -> np.ndarray:
    """Sample `count` points on a mesh surface, area-weighted; the same seed gives the same points.

    Raises:
        SampleError: unreadable file, or a mesh with no faces or zero area.
    """
    import trimesh

    try:
        mesh = trimesh.load(str(path), force="mesh")
    except Exception as exc:  # trimesh raises many unrelated types for a bad file
        raise SampleError(path, f"cannot read mesh ({type(exc).__name__}: {exc})") from exc
    if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0:
        raise SampleError(path, "expected a mesh with faces, got no faces (empty or unreadable mesh)")
    if not np.isfinite(mesh.area) or mesh.area <= 0:
        raise SampleError(path, f"mesh has zero or invalid surface area ({mesh.area})")
    points, _ = trimesh.sample.sample_surface(mesh, count, seed=seed)
    return check_points(path, points)


def read_npy(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Read an `.npy` cloud: (n, 3) xyz, (n, 4) xyz + label, or (n, 6) xyz + rgb.

    Labels are binarised with `> 0`. Colours in 0..1 (max <= 1) are scaled to 0..255.

    Returns:
        points float32 (n, 3), labels uint8 (n,), rgb uint8 (n, 3) or None.

    Raises:
        SampleError: unreadable file, a shape or dtype other than those, or bad values.
    """
    with Path(path).open("rb") as fh:
        if fh.read(6) != b"\x93NUMPY":  # else np.load guesses "pickle" and says so, misleadingly
            raise SampleError(path, "not a .npy file (no NumPy magic bytes)")
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise SampleError(path, f"cannot read .npy ({exc})") from exc
    if array.ndim != 2 or array.shape[1] not in (3, 4, 6) or array.dtype.kind not in "biuf":
        raise SampleError(
            path, f"expected a numeric array (n, 3), (n, 4) or (n, 6), got {array.shape} {array.dtype}"
        )
    points = check_points(path, array[:, :3])
    labels = np.zeros(len(points), dtype=np.uint8)
    rgb = None
    if array.shape[1] == 4:
        column = array[:, 3].astype(np.float64)
        if not np.isfinite(column).all():
            raise SampleError(path, "label column (4th) has non-finite values")
        labels = (column > 0).astype(np.uint8)
    elif array.shape[1] == 6:
        colors = array[:, 3:].astype(np.float64)
        if not np.isfinite(colors).all() or colors.min() < 0 or colors.max() > 255:
            raise SampleError(path, "rgb columns (4-6): expected finite values in 0..1 or 0..255")
        if colors.max() <= 1.0:
            colors = colors * 255.0
        rgb = np.rint(colors).astype(np.uint8)
    return points, labels, rgb


LABELS_FILE = "labels.csv"


def read_labels(path: Path) -> dict[str, tuple[int, str]]:
    """`labels.csv` -> {id: (label, defect)}; label 0 good, 1 anomalous.

    Raises:
        CatalogError: naming the file and line, for a missing column, a label other than 0/1, or an id twice.
    """
    import csv

    out: dict[str, tuple[int, str]] = {}
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames or not {"id", "label"} <= {f.strip() for f in reader.fieldnames}:
            raise CatalogError(f"{path}: expected a header with columns id,label (and optionally defect), "
                               f"got {reader.fieldnames}")
        for line, row in enumerate(reader, start=2):
            row = {k.strip(): (v or "").strip() for k, v in row.items() if k}
            sid = Path(row["id"]).with_suffix("").as_posix() if Path(row["id"]).suffix.lower() in SUFFIXES \
                else row["id"]
            if row["label"] not in ("0", "1"):
                raise CatalogError(f"{path}:{line}: label must be 0 (good) or 1 (anomalous), got {row['label']!r}")
            if sid in out:
                raise CatalogError(f"{path}:{line}: id {sid!r} is listed twice")
            label = int(row["label"])
            out[sid] = (label, row.get("defect") or ("good" if label == 0 else "anomalous"))
    return out


def apply_labels(refs: list[SampleRef], labels: dict[str, tuple[int, str]]) -> list[SampleRef]:
    """Set the listed samples' label and defect; an id that names no file is an error."""
    import dataclasses

    known = {ref.id for ref in refs}
    missing = sorted(set(labels) - known)
    if missing:
        raise CatalogError(f"{LABELS_FILE}: ids with no file under the root: {missing[:5]}"
                           f"{' ...' if len(missing) > 5 else ''}")
    return [dataclasses.replace(ref, label=labels[ref.id][0], defect=labels[ref.id][1]) if ref.id in labels else ref
            for ref in refs]


# ---------------------------------------------------------------------------------------------- loader
class FilesLoader:
    """Every point-cloud or mesh file under a folder (or one file), as unlabelled test samples.

    Args:
        mesh_points: points sampled on the surface of each mesh.
        seed: seed of that sampling; the same seed gives the same points.
    """

    organized = False
    has_rgb = False  # the layout promises none; a sample may still carry colour

    def __init__(self, mesh_points: int = 100_000, seed: int = 0) -> None:
        if isinstance(mesh_points, bool) or not isinstance(mesh_points, int) or mesh_points <= 0:
            raise CatalogError(f"files loader: mesh_points must be a positive integer, got {mesh_points!r}")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise CatalogError(f"files loader: seed must be a non-negative integer, got {seed!r}")
        self.mesh_points = mesh_points
        self.seed = seed

    def index(
        self, root: Path, classes: Iterable[str] | None, splits: Iterable[str] | None
    ) -> list[SampleRef]:
        """List the files, sorted by id (the relative path without its extension).

        Raises:
            CatalogError: missing root, no usable file, a requested class or split that is not
                there, or two files that would share an id (`a.ply` beside `a.npy`).
        """
        root = Path(root)
        refs = self._collect(root)
        if splits is not None:
            for split in [splits] if isinstance(splits, str) else splits:
                if split != SPLIT:
                    raise CatalogError(f"{root}: split {split!r} not found; loose files are split {SPLIT!r}")
        if classes is not None:
            wanted = [classes] if isinstance(classes, str) else list(classes)
            present = {ref.cls for ref in refs}
            for cls in wanted:
                if cls not in present:
                    raise CatalogError(f"class {cls!r} not found at {root / cls}; found {sorted(present)}")
            refs = [ref for ref in refs if ref.cls in wanted]
        if root.is_dir() and (root / LABELS_FILE).is_file():
            refs = apply_labels(refs, read_labels(root / LABELS_FILE))
        return sorted(refs, key=lambda ref: ref.id)

    def _collect(self, root: Path) -> list[SampleRef]:
        if root.is_file():  # a single file: predict on one cloud
            paths = {Path(root.stem): root} if root.suffix.lower() in SUFFIXES else {}
            if not paths:
                raise CatalogError(f"{root}: expected one of {', '.join(SUFFIXES)}")
        elif root.is_dir():
            paths = {}
            for path in sorted(root.rglob("*")):
                rel = path.relative_to(root)
                if path.suffix.lower() not in SUFFIXES or has_hidden_part(rel) or not path.is_file():
                    continue
                key = rel.with_suffix("")
                if key in paths:
                    raise CatalogError(f"{paths[key]} and {path} would share the id {key.as_posix()!r}")
                paths[key] = path
            if not paths:
                raise CatalogError(f"{root}: no point-cloud or mesh files ({', '.join(SUFFIXES)})")
        else:
            raise CatalogError(f"{root}: no such file or folder")
        return [self._ref(key, path) for key, path in paths.items()]

    @staticmethod
    def _ref(key: Path, path: Path) -> SampleRef:
        cls = key.parts[0] if len(key.parts) > 1 else DEFAULT_CLASS
        role = "mesh" if path.suffix.lower() in MESH_SUFFIXES else "cloud"
        return SampleRef(
            id=key.as_posix(), cls=cls, split=SPLIT, defect="unknown", label=LABEL_UNKNOWN,
            source=str(path), files={role: str(path)},
        )

    def load(self, ref: SampleRef) -> Sample:
        """Read one file as a cloud, or sample it when it is a mesh.

        Raises:
            SampleError: naming the file, for anything unreadable or malformed.
        """
        path = Path(ref.source)
        if not path.is_file():
            raise SampleError(path, "file not found")
        suffix = path.suffix.lower()
        labels, rgb = None, None
        if suffix == ".pcd":
            points, rgb = read_pcd(path)
        elif suffix == ".npy":
            points, labels, rgb = read_npy(path)
        elif suffix in MESH_SUFFIXES or (suffix == ".ply" and _ply_has_faces(path)):
            points = sample_mesh(path, self.mesh_points, self.seed)
        elif suffix == ".ply":
            check_ply_complete(path)
            points, rgb = _o3d_cloud(path)
        else:
            raise SampleError(path, f"unsupported extension {path.suffix!r}; expected one of {SUFFIXES}")
        if labels is None:
            labels = np.zeros(len(points), dtype=np.uint8)
        return Sample(ref=ref, points=points, labels=labels, rgb=rgb).validate()
