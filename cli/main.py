"""The `pointad-pipe` command line: the app and its commands, in the order `--help` lists them.

Each command (in `stage_commands`, `train_commands`, `score_commands`) parses its flags, calls one
pipeline function and prints; `messages` words the pipeline's typed errors for the flags.
"""

from __future__ import annotations

import sys

import typer

from . import score_commands, stage_commands, train_commands

app = typer.Typer(
    help="Zero-shot 3D anomaly detection (PointAD) as a staged pipeline: clean -> render -> encode -> train "
    "-> evaluate, plus predict on your own files.\n\n"
    "Every stage writes a fingerprinted group to a Zarr cache (docs/STORE.md), skips rows already done, "
    "and can be killed and rerun safely. New here? Run `pointad-pipe demo`.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

app.command("make-synthetic")(stage_commands.make_synthetic_cmd)
app.command()(stage_commands.clean)
app.command()(stage_commands.render)
app.command()(stage_commands.encode)
app.command()(train_commands.train)
app.command()(score_commands.evaluate)
app.command()(train_commands.benchmark)
app.command()(score_commands.predict)
app.command()(score_commands.demo)
app.command()(stage_commands.gc)
app.command()(stage_commands.status)
app.command()(stage_commands.verify)
app.command()(stage_commands.convert)
app.command()(stage_commands.doctor)


def main() -> None:
    """Entry point for `python -m pointad_pipe.cli.main`."""
    app()


if __name__ == "__main__":
    sys.exit(main())
