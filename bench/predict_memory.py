"""Peak RSS of `predict` on one file with the CLIP model loaded twice (the old way) and once (now).

Until issue 12, `jobs.predict.Predictor` loaded the model for the image encoder and again, inside the
prompt learner, for the text tower. `twice` reproduces that (the old `Predictor.__init__`, line for
line); `once` is today's `Predictor`. Each case runs in a fresh process that scores one synthetic
cloud (a box sampled at `--points`, cleaned, rendered, encoded, scored in memory) and reports its own
peak RSS (VmHWM: ru_maxrss survives exec, so a child of a large process would report the parent's).
The checkpoint is a prompt learner's seeded init with a sidecar naming the model and its random-init
weights (nothing is trained; the prompts' values do not change the memory).

    python bench/predict_memory.py [--models tiny,ViT-B-16] [--points 20000] [--smoke]

Real models use random-init weights (`--weights random`), which take the memory real ones take.
`--smoke`: `tiny` only, 3000 points: a check that the bench runs, not a figure.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

SMOKE = {"models": "tiny", "points": 3000}
WAYS = ("twice", "once")


def write_checkpoint(model: str, folder: Path) -> Path:
    """Our checkpoint format for `model` without training: seeded N(0, 0.02) prompts and a minimal sidecar."""
    import torch

    from pointad_pipe.model.registry import architecture, get_spec
    from pointad_pipe.pipeline.jobs.checkpoint import save_checkpoint
    from pointad_pipe.pipeline.stages.train import TrainConfig
    from pointad_pipe.pipeline.stages.weights import resolve_weights

    spec, cfg = get_spec(model), TrainConfig()
    arch = architecture(spec)
    width, depth = arch["text_cfg"]["width"], arch["text_cfg"]["layers"]
    gen = torch.Generator().manual_seed(cfg.seed)
    prompts = {"ctx_normal": torch.randn(cfg.n_ctx, width, generator=gen) * 0.02,
               "ctx_anomalous": torch.randn(cfg.n_ctx, width, generator=gen) * 0.02,
               **{f"deep.{i}": torch.randn(cfg.deep_len, width, generator=gen) * 0.02
                  for i in range(min(cfg.deep_depth, depth) - 1)}}
    side = {"model": model, "weights_sha256": resolve_weights(spec, "random").sha256, "train": asdict(cfg),
            "scored_layers": [arch["vision_cfg"]["layers"]], "prompt_classes": None, "classes": []}
    path = folder / f"prompts_{model}.pt"
    save_checkpoint(path, prompts, side)
    return path


def write_cloud(points: int, folder: Path) -> Path:
    """A box surface sampled at `points` points, as a .ply."""
    import trimesh

    path = folder / "box.ply"
    trimesh.PointCloud(trimesh.creation.box(extents=(0.1, 0.06, 0.04)).sample(points, seed=0)).export(path)
    return path


def twice_loaded(checkpoint: Path, weights: str, device: str):  # noqa: ANN201
    """The old `Predictor`: the image encoder loads the model, then the prompt learner loads it again."""
    from pointad_pipe.model.registry import get_spec
    from pointad_pipe.pipeline.jobs.checkpoint import text_features
    from pointad_pipe.pipeline.jobs.encode import encoder_key
    from pointad_pipe.pipeline.jobs.predict import Predictor, open_checkpoint
    from pointad_pipe.pipeline.stages.encode import Encoder

    pred = Predictor.__new__(Predictor)
    pred.ckpt, prep = open_checkpoint(checkpoint, None, weights, device)
    side = pred.ckpt.side
    pred.pipeline = side.get("pipeline") or {}
    spec = get_spec(side["model"])
    pred.encoder = Encoder(encoder_key(prep, device))  # the first copy
    pred.text, _ = text_features(pred.ckpt, spec, prep.weights, None, device)  # the second, for the text tower
    pred.layer = list(prep.config.layers).index(side["scored_layers"][0])
    pred.grid = tuple(prep.model_info["patch_grid"])
    pred.modality = "point"
    return pred


def child(way: str, checkpoint: str, cloud: str) -> None:
    """Predict one file the `way` given, then print this process's peak RSS in kB."""
    from pointad_pipe.pipeline.jobs.predict import Predictor

    if way == "twice":
        pred = twice_loaded(Path(checkpoint), "random", "cpu")
    else:
        pred = Predictor(Path(checkpoint), "random", "cpu")
    res = pred.predict(Path(cloud))
    assert len(res.score) > 0
    print([line for line in open("/proc/self/status") if line.startswith("VmHWM")][0].split()[1])


def peak_rss_mb(way: str, checkpoint: Path, cloud: Path) -> float:
    """Peak RSS of a fresh process predicting `cloud` the `way` given."""
    proc = subprocess.run([sys.executable, __file__, "--child", way, str(checkpoint), str(cloud)],
                          capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"the {way} case failed:\n{proc.stderr[-3000:]}")
    return int(proc.stdout.strip().splitlines()[-1]) / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="tiny,ViT-B-16")
    ap.add_argument("--points", type=int, default=20_000)
    ap.add_argument("--child", nargs=3, metavar=("WAY", "CHECKPOINT", "CLOUD"), help=argparse.SUPPRESS)
    ap.add_argument("--smoke", action="store_true", help=f"tiny sizes {SMOKE} (explicit flags still win)")
    if ap.parse_known_args()[0].smoke:
        ap.set_defaults(**SMOKE)
    a = ap.parse_args()
    if a.child:
        child(*a.child)
        return
    print(f"predict memory: one file ({a.points} points), a fresh process per case, CPU fp32, random-init weights")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        cloud = write_cloud(a.points, Path(tmp))
        for model in a.models.split(","):
            ckpt = write_checkpoint(model, Path(tmp))
            twice, once = (peak_rss_mb(way, ckpt, cloud) for way in WAYS)
            results[model] = {"twice": twice, "once": once}
            print(f"{model:>12}: model loaded twice {twice:.0f} MB, once {once:.0f} MB -> "
                  f"once/twice x{once / twice:.3f} ({100 * (once / twice - 1):+.1f} %)")
    print(json.dumps({"rss_mb": results}))


if __name__ == "__main__":
    main()
