"""Write docs/CLI.md from the commands' own `--help` (plain text, 100 columns), or check it is current.

    python tools/cli_reference.py          # rewrite docs/CLI.md
    python tools/cli_reference.py --check  # exit 1 when docs/CLI.md differs from `--help`

`tests/e2e/test_readme.py` runs the check, so the reference cannot drift from the code.
"""

from __future__ import annotations

import sys
from pathlib import Path

TARGET = Path(__file__).resolve().parents[1] / "docs" / "CLI.md"
WIDTH = 100


def render() -> str:
    """The reference: the top-level help, then each command's, as click formats them without rich."""
    import typer.core

    typer.core.HAS_RICH = False  # rich's boxes depend on the terminal; plain click text does not
    from typer.main import get_command

    from pointad_pipe.cli.main import app

    group = get_command(app)
    ctx_cls = group.context_class  # typer ships its own click; use its Context
    root = ctx_cls(group, info_name="pointad-pipe", terminal_width=WIDTH, max_content_width=WIDTH)
    parts = ["# `pointad-pipe` command reference", "",
             "Generated from `--help` by `tools/cli_reference.py`; a test fails when it is out of date.", "",
             "```text", group.get_help(root), "```", ""]
    for name in group.list_commands(root):
        cmd = group.get_command(root, name)
        ctx = ctx_cls(cmd, info_name=name, parent=root, terminal_width=WIDTH, max_content_width=WIDTH)
        parts += [f"## `pointad-pipe {name}`", "", "```text", cmd.get_help(ctx), "```", ""]
    return "\n".join(parts)


def main() -> int:
    """Write docs/CLI.md, or with --check say whether it is current."""
    text = render()
    if "--check" in sys.argv[1:]:
        if not TARGET.is_file() or TARGET.read_text() != text:
            print(f"{TARGET} is out of date: run `python tools/cli_reference.py`", file=sys.stderr)
            return 1
        return 0
    TARGET.parent.mkdir(parents=True, exist_ok=True)
    TARGET.write_text(text)
    print(f"wrote {TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
