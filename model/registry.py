"""Model variants as data: our name -> open_clip config name, weights source, defaults.

open_clip finds the architecture by name (`model_configs/*.json`); the project's own `tiny` config
ships in `model/configs/` and is registered with open_clip on first use. An unknown name is an
error that lists the valid ones.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

CONFIG_DIR = Path(__file__).resolve().parent / "configs"


@dataclass(frozen=True)
class ModelSpec:
    """One registered model.

    Attributes:
        name: our name (`--model`).
        open_clip_name: the architecture's open_clip config name (QuickGELU variants for OpenAI weights).
        pretrained: open_clip's pretrained tag, used when no `--weights` file is given.
        weights_file: the OpenAI TorchScript file name, looked for in the weights folder.
        weights_url: where that file is published.
        weights_sha256: that file's published SHA-256 (OpenAI puts it in the URL).
        random_init: True for test models built from a seed instead of weights.
        seed: the seed of a random-init model.
    """

    name: str
    open_clip_name: str
    pretrained: str | None = None
    weights_file: str | None = None
    weights_url: str | None = None
    weights_sha256: str | None = None
    random_init: bool = False
    seed: int = 0


_OPENAI = "https://openaipublic.azureedge.net/clip/models"
_L14_SHA = "3035c92b350959924f9f00213499208652fc7ea050643e8b385c2dac08641f02"
_B16_SHA = "5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f"

MODELS: dict[str, ModelSpec] = {
    # The paper's backbone: OpenAI weights, QuickGELU (a GELU config with these weights is wrong).
    "ViT-L-14-336": ModelSpec("ViT-L-14-336", "ViT-L-14-336-quickgelu", "openai", "ViT-L-14-336px.pt",
                              f"{_OPENAI}/{_L14_SHA}/ViT-L-14-336px.pt", _L14_SHA),
    # A cheaper real option (224 px input, 14 x 14 patches of 16 px).
    "ViT-B-16": ModelSpec("ViT-B-16", "ViT-B-16-quickgelu", "openai", "ViT-B-16.pt",
                          f"{_OPENAI}/{_B16_SHA}/ViT-B-16.pt", _B16_SHA),
    # Tests and the demo: patch 14, 336 px, 4 layers of width 128, random init from a seed.
    "tiny": ModelSpec("tiny", "pointad-tiny", random_init=True, seed=0),
}


def get_spec(name: str) -> ModelSpec:
    """The spec of a model name.

    Raises:
        ValueError: an unknown name (the message lists the valid ones).
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; expected one of {sorted(MODELS)}")
    return MODELS[name]


@lru_cache(maxsize=1)
def register_project_configs() -> None:
    """Make open_clip find the project's configs (`pointad-tiny`) by name. Idempotent."""
    import open_clip

    for path in sorted(CONFIG_DIR.glob("*.json")):
        open_clip.add_model_config(path)


def architecture(spec: ModelSpec) -> dict[str, Any]:
    """The open_clip config dict of a spec (embed_dim, vision_cfg, text_cfg, quick_gelu)."""
    own = CONFIG_DIR / f"{spec.open_clip_name}.json"
    if own.is_file():
        return json.loads(own.read_text())
    import open_clip

    cfg = open_clip.get_model_config(spec.open_clip_name)
    if cfg is None:
        raise ValueError(f"open_clip has no config {spec.open_clip_name!r}")
    return cfg


def default_layers(depth: int) -> list[int]:
    """The paper's {6, 12, 18, 24} for 24 blocks; quarters of the depth otherwise (1-based)."""
    return sorted({max(1, round(depth * q / 4)) for q in (1, 2, 3, 4)})


def default_dpam_blocks(depth: int) -> int:
    """How many final blocks run the attention change: 19 of 24 (METHOD.md §3), scaled for other depths."""
    return max(1, min(depth, round(19 / 24 * depth)))
