"""Project exceptions, and how an exception becomes one line.

Each exception also subclasses a builtin, so callers can catch either. They carry the facts (which
value, what was expected) in attributes as well as in their message; the command line (`cli/`)
words them for its flags and commands, the library never names a flag.
"""

from __future__ import annotations


class PointadError(Exception):
    """Base class of every error the pipeline raises on purpose."""


class CatalogError(PointadError, ValueError):
    """`data_catalog.yaml` is malformed: names the key or path at fault."""


class OptionError(PointadError, ValueError):
    """An option of a library call has a value it cannot take.

    Attributes:
        option: the library's name of the option (a config field or an argument, e.g. `losses`).
        value: the value given.
        problem: what is wrong or expected, as a phrase.
    """

    def __init__(self, option: str, value: object, problem: str) -> None:
        self.option, self.value, self.problem = option, value, problem
        super().__init__(f"{option} {value!r}: {problem}")


class SampleError(PointadError, ValueError):
    """One input sample cannot be used; the message names the file and the problem.

    The runner turns it into that row's `error` and goes on with the other rows.
    """

    def __init__(self, path: object, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class CacheMissing(PointadError, FileNotFoundError):
    """A stage's output is absent from the cache.

    Attributes:
        stage: the stage whose output is missing (`clean`, `render`, `encode`).
        dataset: the catalog's dataset name.
        detail: what was looked for beyond "any group of the stage", or "".
    """

    def __init__(self, stage: str, dataset: str, cache: str, detail: str = "") -> None:
        self.stage, self.dataset, self.cache, self.detail = stage, dataset, cache, detail
        super().__init__(f"no {stage} output for dataset {dataset!r} in {cache}{detail}")


class ModelMismatch(PointadError, ValueError):
    """Features in the cache (or a checkpoint) come from another model or other weights than asked.

    Attributes:
        held_model, held_sha256: what the cache or checkpoint was made with.
        model, sha256: what was asked for or found (sha256 "" when only the model differs).
    """

    def __init__(self, message: str, held_model: str, held_sha256: str, model: str, sha256: str = "") -> None:
        self.held_model, self.held_sha256, self.model, self.sha256 = held_model, held_sha256, model, sha256
        super().__init__(message)


class WeightsMissing(PointadError, FileNotFoundError):
    """Model weights are needed but cannot be had (no file, no network)."""


def one_line(exc: BaseException) -> str:
    """An exception as one line (a row's `error`): the project's own as they are, others with their type."""
    text = str(exc) if isinstance(exc, PointadError) else f"{type(exc).__name__}: {exc}"
    return " ".join(text.split())


def first_line(exc: BaseException) -> str:
    """A third-party exception as its type and first line (a library's multi-line dump cut short)."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


class CheckpointMismatch(PointadError, ValueError):
    """A checkpoint's prompts do not fit a model's text tower (or no cached model's).

    Attributes:
        path: the checkpoint.
        width, depth: the prompts' width, and the text blocks their deep prompts need (blocks 2..depth).
        model: the model checked against, or None when none was (`context` says what was looked at).
        model_width, model_depth: that model's text width and blocks, or None.
        fits: the registered models whose text tower does take the prompts.
    """

    def __init__(self, path: object, width: int, depth: int, model: str | None, model_width: int | None,
                 model_depth: int | None, fits: list[str], context: str = "") -> None:
        self.path, self.width, self.depth, self.fits = str(path), width, depth, list(fits)
        self.model, self.model_width, self.model_depth = model, model_width, model_depth
        need = f"checkpoint {self.path} needs a text tower of width {width} with at least {depth} blocks"
        what = f", but {model}'s has width {model_width} and {model_depth} blocks" if model else f": {context}"
        fitting = (f"models whose text tower fits: {', '.join(self.fits)}" if self.fits
                   else "no registered model's text tower fits")
        super().__init__(f"{need}{what}; {fitting}")


class Interrupted(PointadError, KeyboardInterrupt):
    """Ctrl-C during a stage run: what is done is kept (each finished row is marked), the rest waits for a rerun.

    Attributes:
        stage: the stage that was running.
        done, total: rows current at the interruption, and rows of the dataset.
    """

    def __init__(self, stage: str, done: int, total: int) -> None:
        self.stage, self.done, self.total = stage, done, total
        super().__init__(f"interrupted during {stage}: {done} of {total} rows are done and kept")


class DiskFull(PointadError, OSError):
    """The cache's disk is full: the run stops at the first row that could not be written.

    Attributes:
        stage: the stage that was writing.
        url: the dataset's cache.
        done, total: rows current when it stopped, and rows of the dataset (None: before any row,
            opening the cache or making the stage's group).
    """

    def __init__(self, stage: str, url: str, done: int | None = None, total: int | None = None) -> None:
        self.stage, self.url, self.done, self.total = stage, url, done, total
        where = (f"{stage} stopped with {done} of {total} rows done (finished rows are kept)" if done is not None
                 else f"{stage} could not start (nothing was half-written)")
        super().__init__(f"no space left on the device holding {url}: {where}; free space, then rerun")


class CorruptRow(PointadError, ValueError):
    """A done row whose data does not read back as written: a chunk deleted, truncated or changed.

    Attributes:
        group: `<stage>/<fp>`.
        row: the group's row.
        array: the array at fault (`patch`, `points/3/xyz`, or `checksum` when the row's entry is lost).
        problem: what is wrong, as a phrase.
    """

    PREFIX = "damaged cache data"  # rows failing with it stay pending (runner.keep_pending)

    def __init__(self, group: str, row: int, array: str, problem: str) -> None:
        self.group, self.row, self.array, self.problem = group, row, array, problem
        super().__init__(f"{self.PREFIX}: {group} row {row}, array {array}: {problem}")
