"""The thin CLI: every command explains itself, stays light, and the synthetic path works."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pointad_pipe.cli.main import app

COMMANDS = ["make-synthetic", "clean", "render", "encode", "train", "evaluate", "status"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command: str) -> None:
    result = CliRunner().invoke(app, [command, "--help"])
    assert result.exit_code == 0 and "Usage" in result.output
    assert len(result.output.split("Options")[0].strip().splitlines()) >= 2  # a sentence of what it does


def test_help_imports_nothing_heavy() -> None:
    code = ("import sys; import pointad_pipe.cli.main; "
            "print(','.join(m for m in ('torch', 'open_clip', 'open3d', 'zarr', 'dask', 'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""


def test_make_synthetic_then_status(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["make-synthetic", str(tmp_path / "syn"), "--n-train", "1", "--n-test-good", "1",
                                 "--n-test-per-defect", "1"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "syn/mvtec3d/ball/test/dent/xyz/000.tiff").is_file()
    assert (tmp_path / "syn/real3d/ball/gt").is_dir()
    cat = tmp_path / "c.yaml"
    root = tmp_path / "syn/mvtec3d"
    cat.write_text(f"cache: {tmp_path / 'cache'}\ndatasets:\n  s: {{format: mvtec3d, root: {root}}}\n")
    result = runner.invoke(app, ["status", "--catalog", str(cat)])
    assert result.exit_code == 0 and "nothing cached yet" in result.output
