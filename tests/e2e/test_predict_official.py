"""`pointad-pipe predict` with a checkpoint in the authors' format (`{"prompt_learner": state_dict}`) and `--model`.

The library side (the mapping, the text features against the authors' code, equality with our format)
is in tests/unit/test_checkpoint_official.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trimesh

from ..helpers import run_cli, write_official

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def test_predict_takes_an_official_checkpoint_with_its_model(ball_checkpoint: Path, tmp_path: Path) -> None:
    official = write_official(ball_checkpoint, tmp_path / "pointad_official.pth")
    trimesh.PointCloud(trimesh.creation.box(extents=(0.1, 0.06, 0.04)).sample(6000, seed=0)).export(
        tmp_path / "box.ply")
    # no --model: the authors' ViT-L-14-336, whose text tower (768 wide) does not take these 128-wide prompts
    code, out = run_cli("predict", str(tmp_path / "box.ply"), "--checkpoint", str(official), "--out",
                        str(tmp_path / "p"))
    assert code == 2, out
    assert "pointad_official.pth needs a text tower of width 128" in out and "ViT-L-14-336's has width 768" in out
    assert "models whose text tower fits: tiny" in out and "--model" in out
    code, out = run_cli("predict", str(tmp_path / "box.ply"), "--checkpoint", str(official), "--model", "tiny",
                        "--out", str(tmp_path / "p"))
    assert code == 0, out
    rec = json.loads((tmp_path / "p" / "box.json").read_text())
    assert rec["model"] == "tiny" and rec["checkpoint_format"] == "official" and rec["points"] > 5000
    # ours name their model in the sidecar: another --model is refused, worded for the flag
    code, out = run_cli("predict", str(tmp_path / "box.ply"), "--checkpoint", str(ball_checkpoint), "--model",
                        "ViT-B-16", "--out", str(tmp_path / "q"))
    assert code == 2 and "--model ViT-B-16: checkpoint" in out and "trained on features of tiny" in out, out
