"""The README's CI-marked walk-through: finding its blocks and running them in a fresh folder."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from .helpers import ROOT

README = ROOT / "README.md"
CI_MARK = "<!-- ci: runs -->"


def bash_blocks(text: str) -> list[tuple[bool, str]]:
    """(marked to run in CI, body) of every ```bash block."""
    return [(m.group(1) is not None, m.group(2))
            for m in re.finditer(r"(<!-- ci: runs -->\n)?```bash\n(.*?)```", text, re.S)]


@dataclass(frozen=True)
class WalkThrough:
    """Where the README's CI-marked block ran, and what it printed."""

    folder: Path
    returncode: int
    stdout: str
    stderr: str


def run_walk_through(folder: Path) -> WalkThrough:
    """The CI-marked block, as written, in a fresh folder (with the repo's tests/ for the contract checker).

    Its first line is `pointad-pipe demo`, so the folder also holds the demo a user gets from `make demo`;
    the browser tests open its pages instead of running a second demo.
    """
    blocks = [body for marked, body in bash_blocks(README.read_text()) if marked]
    assert blocks, f"no block marked {CI_MARK!r}"
    (folder / "tests").symlink_to(ROOT / "tests")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(["bash", "-c", "set -euo pipefail\n" + "\n".join(blocks)], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=1200)
    return WalkThrough(folder, proc.returncode, proc.stdout, proc.stderr)
