"""Gather what `report.html` shows of an evaluate run: per class its curves, error cases and clouds.

The numbers are the ones the run already holds (the class's global scores, point scores and labels,
as written to `scores.zarr`); only the error cases' views are read again from the cache, to draw them.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import numpy as np

from ...model.inference import view_maps
from ...model.metrics import point_auroc  # roc_auc_score, NaN with one class only
from ..outputs.html_report import ClassPage
from ..outputs.names import safe_name
from ..outputs.page_data import error_cases, pick_clouds, roc_points
from ..outputs.report import MontageSample, view_strip

if TYPE_CHECKING:
    from .evaluate import ClassMaps, Run


def class_page(run: Run, cls: str, acc: ClassMaps, cls_text: Any) -> ClassPage:
    """One class's section: ROC (image and point level), histogram data, error cases with their views, clouds."""
    # global scores as scores.zarr holds them (float32), so that the page and the file agree to the last digit
    labels, scores = np.array(acc.labels), np.array(acc.globals_, np.float32).astype(np.float64)
    points_y, points_s = np.concatenate(acc.point_labels), np.concatenate(acc.scores)
    ids = [run.meta.ids[r] for r in acc.rows]
    errors = error_cases(ids, labels, scores, run.opts.errors)
    for i, case in enumerate(errors):
        r = acc.rows[ids.index(case.sample_id)]
        m = run.samples.montage(r)
        path = run.out / "figures" / f"{safe_name(cls)}_error_{i + 1}.png"
        view_strip(path, MontageSample(case.sample_id, int(run.meta.labels[r]), case.global_score, m.images,
                                       view_maps(m.patch, cls_text, run.samples.grid, run.samples.size), m.mask))
        errors[i] = dataclasses.replace(case, figure=path.read_bytes())
    return ClassPage(cls, ids, labels, scores,
                     roc={"sample": roc_points(labels, scores), "point": roc_points(points_y, points_s)},
                     auroc={"sample": point_auroc(scores, labels), "point": point_auroc(points_s, points_y)},
                     errors=errors, clouds=pick_clouds(acc.clouds, errors))
