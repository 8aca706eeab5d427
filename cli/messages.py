"""The pipeline's typed errors worded for the command line: its flags and its commands.

The library says which option had which value and what was wrong (`OptionError.option` is the
library's name, e.g. `losses`); here that becomes the flag a user typed (`--loss`), with a hint
naming the command that fixes it where there is one.
"""

from __future__ import annotations

from pointad_pipe.pipeline.cache.store import SCHEMA_V1, SchemaMismatch
from pointad_pipe.pipeline.errors import (
    CacheMissing,
    CheckpointMismatch,
    CorruptRow,
    ModelMismatch,
    OptionError,
    PointadError,
    WeightsMissing,
)

#: library option name -> the flag that sets it
FLAGS = {"device": "--device", "dtype": "--dtype", "layers": "--layers", "batch_size": "--batch-size",
         "weights": "--weights", "losses": "--loss", "prompts": "--prompts", "train_classes": "--train-class",
         "classes": "--classes", "protocol": "--protocol", "backend": "--backend", "model": "--model",
         "checkpoint": "--checkpoint", "workers": "--workers", "errors": "--errors", "montage_samples": "--montage"}
#: evaluate's modality is set by a flag without a value
MODALITY_FLAGS = {"fused": "--rgb", "rgb": "--rgb-only"}


def _value(value: object) -> str:
    return value if isinstance(value, str) else str(value)


def option_message(exc: OptionError) -> str:
    """`--flag value: problem` for an option the command line sets, else the library's own words."""
    if exc.option == "modality" and exc.value in MODALITY_FLAGS:
        return f"{MODALITY_FLAGS[str(exc.value)]} {exc.problem}"
    if exc.option in FLAGS:
        return f"{FLAGS[exc.option]} {_value(exc.value)}: {exc.problem}"
    return str(exc)


def schema_1_hint(dataset: str) -> str:
    """How to move a schema-1 cache on."""
    return (f"convert it with `pointad-pipe convert --dataset {dataset}` (keeps every row; the schema-1 store is "
            f"kept beside it), or start over with `pointad-pipe convert --dataset {dataset} --rebuild`")


def describe(exc: PointadError) -> str:
    """One line for the console."""
    if isinstance(exc, OptionError):
        return option_message(exc)
    if isinstance(exc, CacheMissing):
        return f"{exc}; run `pointad-pipe {exc.stage} --dataset {exc.dataset}` first"
    if isinstance(exc, ModelMismatch):
        if not exc.sha256:
            return f"{exc}: use --model {exc.held_model}, or encode with {exc.model} first"
        return f"{exc}; pass --weights to the file the features were encoded with"
    if isinstance(exc, CheckpointMismatch) and exc.model is not None and exc.fits:
        return f"{exc} (predict: --model {exc.fits[0]})"
    if isinstance(exc, SchemaMismatch):
        if exc.found != SCHEMA_V1:
            return f"{exc}: it was written by another version of pointad-pipe"
        return f"{exc}: {schema_1_hint(exc.dataset)}"
    if isinstance(exc, CorruptRow):
        return (f"{exc}; `pointad-pipe verify --repair` lists every damaged row and marks them for recompute, "
                f"then rerun the {exc.group.split('/')[0]} stage")
    if isinstance(exc, WeightsMissing):
        return f"{exc} (--weights PATH)"
    return str(exc)
