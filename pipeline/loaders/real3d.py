"""Loader for Real3D-AD (and the same layout in Anomaly-ShapeNet copies), as shipped.

Layout (DATASETS.md, "Real3D-AD"):

    <root>/<class>/train/*.pcd            complete 360-degree templates, all good
    <root>/<class>/test/<id>_<type>.pcd   single-sided scans; `good` in the name marks a good one
    <root>/<class>/gt/<id>_<type>.txt     `x y z label` per line (folder `gt` or `GT`)

Why the points of an anomalous sample come from the gt `.txt` and not the `.pcd`: the two need not
match point for point, and only the `.txt` carries labels. Its delimiter is a space in the official
release and a comma in copies other tools wrote, so it is sniffed from the first data line.
Test files whose name contains `temp` are skipped, as the official loader does.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ..errors import CatalogError, SampleError
from ._common import is_hidden, visible_files
from .base import LABEL_ANOMALOUS, LABEL_GOOD, Sample, SampleRef
from .files import check_points, read_pcd

SPLITS = ("train", "test")
GT_DIR = "gt"  # matched case-insensitively: `GT` in some copies
GT_COLUMNS = 4  # x y z label


def _gt_dir(class_dir: Path) -> Path:
    """The class's gt folder, `gt` or `GT` (any case); the canonical path when there is none."""
    matches = sorted(p for p in class_dir.iterdir() if p.is_dir() and p.name.lower() == GT_DIR)
    exact = [p for p in matches if p.name == GT_DIR]
    return (exact or matches or [class_dir / GT_DIR])[0]


def _is_class_dir(path: Path) -> bool:
    return path.is_dir() and not is_hidden(path) and any((path / s).is_dir() for s in SPLITS)


def _as_list(names: Iterable[str]) -> list[str]:
    """Accept a single name where a list was meant (`classes: bagel` in YAML), keep order, drop repeats."""
    return list(dict.fromkeys([names] if isinstance(names, str) else names))


def _first_data_line(path: Path) -> str | None:
    """The first non-empty, non-comment line, to sniff the delimiter from; None for an empty file."""
    with path.open(encoding="utf-8", errors="replace") as fh:
        for line in fh:
            line = line.split("#", 1)[0].strip()
            if line:
                return line
    return None


def _first_bad_line(path: Path, delimiter: str | None) -> str:
    """Find the first malformed line, only to word the error: np.loadtxt's own row count skips blanks."""
    with path.open(encoding="utf-8", errors="replace") as fh:
        for number, raw in enumerate(fh, start=1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            fields = line.split(delimiter)
            if len(fields) != GT_COLUMNS:
                return f"line {number}: expected {GT_COLUMNS} columns (x y z label), got {len(fields)}"
            try:
                [float(f) for f in fields]
            except ValueError:
                return f"line {number}: expected numbers, got {line[:60]!r}"
    return "unparsable content"


def read_gt_txt(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read a Real3D-AD gt `.txt`: points float32 (n, 3) and labels uint8 (n,), binarised `> 0`.

    Raises:
        SampleError: missing file, malformed line (with its number), empty file, bad labels.
    """
    path = Path(path)
    if not path.is_file():
        raise SampleError(path, "ground-truth file not found (an anomalous sample takes its points from it)")
    first = _first_data_line(path)
    if first is None:
        raise SampleError(path, "empty point cloud (no data lines in the gt txt)")
    delimiter = "," if "," in first else None  # comma in copies, whitespace in the official release
    try:
        table = np.loadtxt(path, delimiter=delimiter, ndmin=2, dtype=np.float64, encoding="utf-8")
    except ValueError as exc:
        raise SampleError(path, f"malformed gt txt, {_first_bad_line(path, delimiter)}") from exc
    if table.shape[1] != GT_COLUMNS:
        got = table.shape[1]
        raise SampleError(path, f"malformed gt txt: expected {GT_COLUMNS} columns (x y z label), got {got}")
    labels = table[:, 3]
    if not np.isfinite(labels).all():
        raise SampleError(path, "malformed gt txt: non-finite labels")
    return check_points(path, table[:, :3]), (labels > 0).astype(np.uint8)


class Real3DLoader:
    """Real3D-AD: train templates and test scans as `.pcd`, anomalous points and labels from gt `.txt`.

    Takes no options; the catalog's `loader:` block for it must be empty.
    """

    organized = False
    has_rgb = False

    def index(
        self, root: Path, classes: Iterable[str] | None, splits: Iterable[str] | None
    ) -> list[SampleRef]:
        """List the samples of the requested classes and splits (None = all), sorted by id.

        Raises:
            CatalogError: a missing root, a root with no `<class>/{train,test}` folder, or a
                requested class or split that is not on disk (the message names the path).
        """
        root = Path(root)
        if not root.is_dir():
            raise CatalogError(f"Real3D-AD root {root} does not exist or is not a folder")
        found = {p.name: p for p in sorted(root.iterdir()) if _is_class_dir(p)}
        if not found:
            raise CatalogError(f"{root}: no Real3D-AD class folders (expected <class>/train or <class>/test)")
        names = sorted(found) if classes is None else _as_list(classes)
        wanted = None if splits is None else _as_list(splits)
        refs: list[SampleRef] = []
        for name in names:
            if name not in found:
                raise CatalogError(f"class {name!r} not found at {root / name}; found {sorted(found)}")
            refs += self._index_class(found[name], wanted)
        return sorted(refs, key=lambda ref: ref.id)

    def _index_class(self, class_dir: Path, splits: list[str] | None) -> list[SampleRef]:
        present = [s for s in SPLITS if (class_dir / s).is_dir()]
        for split in splits or []:
            if split not in present:
                raise CatalogError(
                    f"split {split!r} not found at {class_dir / split}; Real3D-AD has {', '.join(SPLITS)}"
                )
        refs = []
        for split in present if splits is None else splits:
            for pcd in visible_files(class_dir / split, (".pcd",)):
                if split == "train":
                    refs.append(self._good(class_dir.name, split, pcd, gt=None))
                elif "temp" not in pcd.name.lower():
                    refs.append(self._test_ref(class_dir, pcd))
        return refs

    @staticmethod
    def _good(cls: str, split: str, pcd: Path, gt: Path | None) -> SampleRef:
        files = {"pcd": str(pcd)} | ({"gt": str(gt)} if gt is not None else {})
        return SampleRef(
            id=f"{cls}/{split}/{pcd.stem}", cls=cls, split=split, defect="good", label=LABEL_GOOD,
            source=str(pcd), files=files,
        )

    def _test_ref(self, class_dir: Path, pcd: Path) -> SampleRef:
        gt = _gt_dir(class_dir) / f"{pcd.stem}.txt"
        if "good" in pcd.stem.lower():
            return self._good(class_dir.name, "test", pcd, gt if gt.is_file() else None)
        _, sep, defect = pcd.stem.partition("_")
        return SampleRef(
            id=f"{class_dir.name}/test/{pcd.stem}", cls=class_dir.name, split="test",
            defect=defect if sep and defect else "unknown", label=LABEL_ANOMALOUS,
            source=str(gt), files={"pcd": str(pcd), "gt": str(gt)},
        )

    def load(self, ref: SampleRef) -> Sample:
        """Read one sample: the gt `.txt` for an anomalous one, the `.pcd` (labels all 0) otherwise.

        Raises:
            SampleError: naming the file, for a missing gt, an empty or non-PCD file, or bad lines.
        """
        if ref.label == LABEL_ANOMALOUS:
            points, labels = read_gt_txt(Path(ref.files["gt"]))
        else:
            points, _ = read_pcd(Path(ref.files["pcd"]))  # Real3D-AD has no colour
            labels = np.zeros(len(points), dtype=np.uint8)
        return Sample(ref=ref, points=points, labels=labels).validate()
