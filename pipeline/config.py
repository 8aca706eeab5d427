"""Stage configs: defaults per format, overridden by the catalog, validated by field name."""

from __future__ import annotations

import dataclasses
import json
from typing import Any, TypeVar

from .errors import CatalogError

T = TypeVar("T")
#: Fields that belong to the code, never to a catalog: bumping one is how a code change invalidates caches.
CODE_FIELDS = ("version",)


def build_config(cls: type[T], defaults: dict[str, Any], overrides: dict[str, Any], where: str) -> T:
    """Make a config dataclass from format defaults and catalog overrides.

    `defaults` may set any field (a stored config replayed by `predict`); `overrides` may not set
    the code's own fields (`CODE_FIELDS`).

    Raises:
        CatalogError: an override names a field the stage does not have, or a code field.
    """
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    fixed = sorted(set(overrides) & set(CODE_FIELDS))
    if fixed:
        raise CatalogError(f"{where}: {fixed[0]!r} is set by the code, not by the catalog "
                           f"(it changes when the stage's output changes)")
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise CatalogError(f"{where}: unknown key {unknown[0]!r}; allowed keys are {sorted(names)}")
    try:
        return cls(**{**defaults, **overrides})
    except (TypeError, ValueError) as exc:
        raise CatalogError(f"{where}: {exc}") from exc


def as_json_dict(config: object) -> dict[str, Any]:
    """A config dataclass as plain JSON data (tuples become lists), for attrs and fingerprints."""
    return json.loads(json.dumps(dataclasses.asdict(config)))  # type: ignore[arg-type]


def check_numbers(config: object, positive: tuple[str, ...] = (), unit: tuple[str, ...] = ()) -> None:
    """Every int/float field holds a number of its kind; `positive` ones are > 0, `unit` ones in [0, 1].

    A config dataclass calls it from `__post_init__`, so a bad catalog value (`image_size: -5`,
    `grid_size: 0`, `"big"`) stops the command before any stage runs, naming the field.

    Raises:
        ValueError: naming the field, the value and what was expected.
    """
    for f in dataclasses.fields(config):  # type: ignore[arg-type]
        kind, value = str(f.type).replace(" | None", ""), getattr(config, f.name)
        if kind not in ("int", "float") or value is None:
            continue
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not ok or (kind == "int" and not isinstance(value, int)):
            raise ValueError(f"{f.name} must be {'an integer' if kind == 'int' else 'a number'}, got {value!r}")
        if f.name in positive and value <= 0:
            raise ValueError(f"{f.name} must be above 0, got {value!r}")
        if f.name in unit and not 0 <= value <= 1:
            raise ValueError(f"{f.name} must be between 0 and 1, got {value!r}")
