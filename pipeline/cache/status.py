"""What the cache holds, per dataset and stage group (the `status` command's lines)."""

from __future__ import annotations

import numpy as np

from . import store


def human_size(n: int | None) -> str:
    """Bytes as B/KB/MB/GB/TB, `?` when unknown."""
    if n is None:
        return "?"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def dataset_status(cache_root: str, dataset: str) -> list[str]:
    """One line per stage group: stage, fingerprint, done/failed/total, size, created."""
    url = store.dataset_url(cache_root, dataset)
    if not store.dataset_exists(cache_root, dataset):
        return [f"{dataset}: nothing cached yet ({url})"]
    root = store.open_dataset(cache_root, dataset, mode="r")
    lines = [f"{dataset}: {url}"]
    for stage in store.STAGES:
        for grp in store.stage_groups(root, stage):
            done = store.done_mask(grp)
            failed = int(np.count_nonzero([bool(e) for e in store.read_strings(grp["error"])]))
            extra = {"render": f" backend={grp.attrs.get('backend')}",
                     "encode": f" model={grp.attrs.get('model')} layers={grp.attrs.get('layers')}"}.get(stage, "")
            size = human_size(store.disk_size(grp))
            lines.append(f"  {stage:<7}{grp.attrs['fingerprint']}  done {int(done.sum())}/{len(done)}  "
                         f"failed {failed}  {size}  {grp.attrs.get('created_utc', '')}{extra}")
    if len(lines) == 1:
        lines.append("  (no stage groups)")
    return lines
