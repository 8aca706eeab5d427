"""The README's commands run as written: every `pointad-pipe` line parses against the real CLI, the
CI-marked walk-through runs end to end, and docs/CLI.md is what `--help` prints."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from ..helpers import ROOT

README = ROOT / "README.md"
CI_MARK = "<!-- ci: runs -->"


def bash_blocks(text: str) -> list[tuple[bool, str]]:
    """(marked to run in CI, body) of every ```bash block."""
    out = []
    for m in re.finditer(r"(<!-- ci: runs -->\n)?```bash\n(.*?)```", text, re.S):
        out.append((m.group(1) is not None, m.group(2)))
    return out


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


@pytest.mark.slow
def test_readme_walk_through_runs_as_written(tmp_path: Path) -> None:
    """The CI-marked block, in a fresh folder (with the repo's tests/ for the contract checker)."""
    blocks = [body for marked, body in bash_blocks(README.read_text()) if marked]
    assert blocks, f"no block marked {CI_MARK!r}"
    (tmp_path / "tests").symlink_to(ROOT / "tests")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "HF_HUB_OFFLINE": "1"}
    script = "set -euo pipefail\n" + "\n".join(blocks)
    proc = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "all stages reused" not in proc.stdout  # a fresh folder: the first demo runs everything
    assert (tmp_path / "demo" / "runs" / "eval_ball" / "report.md").is_file()
    assert "report.html: demo/runs/eval_ball/report.html" in proc.stdout  # the demo says where its page is
    assert (tmp_path / "demo" / "runs" / "benchmark.html").is_file()
    assert list((tmp_path / "demo" / "predict").glob("*.html"))
    assert (tmp_path / "demo" / "runs" / "eval_ball_rgb" / "metrics.json").is_file()
    assert list((tmp_path / "demo" / "predict").glob("*.ply"))
    assert "contract holds" in proc.stdout
    again = subprocess.run(["pointad-pipe", "demo"], cwd=tmp_path, env=env, capture_output=True, text=True,
                           timeout=600)
    assert again.returncode == 0 and "all stages reused" in again.stdout, again.stdout + again.stderr[-2000:]
    print(again.stdout.splitlines()[-1])  # "all stages reused in N s"
