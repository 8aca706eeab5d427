"""Digests of the render stage's outputs on the project's synthetic set, to pin them across speed-ups.

`tests/goldens/render_maps.json` holds them as the render code of version 1 wrote them (commit
391bc9b, before issue 16's speed-ups). Regenerate only when the maps are meant to change, and then
bump `render.VERSION`:

    python -m tests.render_digests > tests/goldens/render_maps.json
"""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from pointad_pipe.pipeline.catalog import DatasetEntry
from pointad_pipe.pipeline.jobs.identity import clean_config, render_config
from pointad_pipe.pipeline.loaders import get_loader
from pointad_pipe.pipeline.stages.clean import clean_sample
from pointad_pipe.pipeline.stages.render import Rendered, render_sample
from pointad_pipe.pipeline.synthetic.generator import make_synthetic

#: What must not move while the render version stays: the cleaned points, every map and the image.
MAPS = ("xyz", "pix2pt", "pt2pix", "mask2d", "camera", "eps", "image")
#: A small slice of the synthetic set: both layouts, every shape, a good and a defective test sample each.
SET = {"seed": 3, "n_train": 1, "n_test_good": 1, "n_test_per_defect": 1}
SPLIT = "test"


def digest(array: np.ndarray) -> str:
    """sha256 of an array's dtype, shape and bytes."""
    a = np.ascontiguousarray(array)
    return hashlib.sha256(f"{a.dtype.str}{a.shape}".encode() + a.tobytes()).hexdigest()[:24]


def rendered_set(folder: Path, threads: int = 1, classes: list[str] | None = None,
                 ) -> Iterator[tuple[str, np.ndarray, Rendered]]:
    """(sample id, cleaned xyz, rendered) for the first good and first defective test sample of every class."""
    roots = make_synthetic(folder, **SET) if not (folder / "mvtec3d").is_dir() else {
        fmt: folder / fmt for fmt in ("mvtec3d", "real3d")}
    for fmt, root in sorted(roots.items()):
        entry = DatasetEntry(name=fmt, format=fmt, root=root)
        loader = get_loader(fmt)
        refs = loader.index(root, classes, (SPLIT,))
        seen: set[tuple[str, int]] = set()
        for ref in refs:
            if (ref.cls, ref.label) in seen:
                continue
            seen.add((ref.cls, ref.label))
            cleaned = clean_sample(loader.load(ref), clean_config(entry))
            out = render_sample(cleaned.xyz, cleaned.label, render_config(entry), grid=cleaned.grid,
                                rgb_grid=cleaned.rgb_grid, threads=threads)
            yield f"{fmt}/{ref.id}", cleaned.xyz, out


def digests(folder: Path) -> dict[str, dict[str, str]]:
    """{sample id: {array name: digest}} over `rendered_set`."""
    out = {}
    for sid, xyz, r in rendered_set(folder):
        arrays = {"xyz": xyz, "pix2pt": r.pix2pt, "pt2pix": r.pt2pix, "mask2d": r.mask2d, "camera": r.camera,
                  "eps": np.asarray(r.eps), "image": r.image}
        out[sid] = {k: digest(v) for k, v in arrays.items()}
    return out


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        json.dump(digests(Path(tmp)), sys.stdout, indent=1, sort_keys=True)
        print()
