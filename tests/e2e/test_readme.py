"""The README's commands: every `pointad-pipe` line parses against the real CLI, and docs/CLI.md is what
`--help` prints (the CI-marked walk-through runs in test_walk_through.py)."""

from __future__ import annotations

import shlex
import subprocess
import sys

import pytest

from ..helpers import ROOT
from ..walk_through import README, bash_blocks


def command_lines(block: str) -> list[str]:
    """The block's lines with backslash continuations joined."""
    return [line.strip() for line in block.replace("\\\n", " ").splitlines() if line.strip()]


def test_cli_reference_is_current() -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "cli_reference.py"), "--check"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_every_readme_command_parses() -> None:
    """Each `pointad-pipe ...` line names a real command with real flags and all required ones."""
    from typer.main import get_command

    from pointad_pipe.cli.main import app

    group = get_command(app)
    lines = [ln for _, block in bash_blocks(README.read_text()) for ln in command_lines(block)
             if ln.startswith("pointad-pipe ")]
    assert len(lines) >= 15, lines
    for line in lines:
        name, *args = shlex.split(line, comments=True)[1:]
        root = group.context_class(group, info_name="pointad-pipe")  # typer's own (vendored) click
        cmd = group.get_command(root, name)
        assert cmd is not None, f"README: unknown command in {line!r}"
        try:
            cmd.make_context(name, list(args), parent=root)
        except Exception as exc:  # click's UsageError / BadParameter, from typer's vendored click
            pytest.fail(f"README: {line!r} does not parse: {exc}")
