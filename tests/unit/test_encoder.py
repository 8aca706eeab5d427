"""The frozen encoder: global = encode_image, the attention change against an independent loop, goldens."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest
import torch

from pointad_pipe.model.encoder import PatchEncoder, preprocess
from pointad_pipe.model.registry import default_dpam_blocks, default_layers, get_spec, register_project_configs
from pointad_pipe.pipeline.stages.weights import load_model, resolve_weights

from ..helpers import ROOT

GOLDEN = ROOT / "tests" / "goldens" / "tiny_features.json"


@pytest.fixture(scope="module")
def tiny() -> torch.nn.Module:
    spec = get_spec("tiny")
    return load_model(spec, resolve_weights(spec, None))


def images(n: int = 3, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 336, 336, generator=g)


def reference_surgery(model: torch.nn.Module, x: torch.Tensor, layers: list[int], first_dual: int) -> torch.Tensor:
    """METHOD.md §3 written out by hand: explicit blocks, explicit per-head value-value attention."""
    visual = model.visual
    tokens = visual._embeds(x)
    blocks = list(visual.transformer.resblocks)
    surgery, out = None, {}
    for i, block in enumerate(blocks, start=1):
        if i >= first_dual:
            y = block.ln_1(tokens)
            d = y.shape[-1]
            heads = block.attn.num_heads
            wv, bv = block.attn.in_proj_weight[2 * d:], block.attn.in_proj_bias[2 * d:]
            v = y @ wv.T + bv
            parts = []
            for h in range(heads):
                vh = v[..., h * d // heads:(h + 1) * d // heads]
                att = torch.softmax(vh @ vh.transpose(-1, -2) / math.sqrt(d // heads), dim=-1)
                parts.append(att @ vh)
            vv = block.attn.out_proj(torch.cat(parts, dim=-1))
            surgery = (tokens if surgery is None else surgery) + vv
        tokens = block(tokens)
        if i in layers:
            src = surgery if i >= first_dual else tokens
            out[i] = visual.ln_post(src[:, 1:]) @ visual.proj
    return torch.stack([out[i] for i in layers], dim=1)


def test_defaults_follow_method() -> None:
    assert default_layers(24) == [6, 12, 18, 24]
    assert default_dpam_blocks(24) == 19  # blocks 6..24
    assert default_layers(4) == [1, 2, 3, 4] and default_dpam_blocks(4) == 3


@pytest.mark.parametrize("dpam", [False, True])
def test_global_equals_encode_image(tiny: torch.nn.Module, dpam: bool) -> None:
    x = images()
    enc = PatchEncoder(tiny, [1, 2, 3, 4], dpam, 3)
    glob, patch = enc(x)
    with torch.no_grad():
        ref = tiny.encode_image(x)
    assert (glob - ref).abs().max().item() <= 1e-5
    assert patch.shape == (3, 4, 576, 128)


def test_attention_change_matches_hand_written_loop_and_only_dual_layers(tiny: torch.nn.Module) -> None:
    x = images(2, seed=1)
    layers = [1, 2, 3, 4]
    on = PatchEncoder(tiny, layers, True, 3)
    off = PatchEncoder(tiny, layers, False, 3)
    _, p_on = on(x)
    _, p_off = off(x)
    with torch.no_grad():
        ref = reference_surgery(tiny, x, layers, first_dual=2)
        plain = reference_surgery(tiny, x, layers, first_dual=99)
    torch.testing.assert_close(p_on, ref, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(p_off, plain, atol=1e-4, rtol=1e-4)
    # block 1 is before the dual blocks: identical; blocks 2..4 run the change: different
    assert torch.equal(p_on[:, 0], p_off[:, 0])
    for k in (1, 2, 3):
        assert (p_on[:, k] - p_off[:, k]).abs().max() > 1e-2


def test_preprocess_normalises_and_resizes() -> None:
    img = torch.full((1, 10, 12, 3), 255, dtype=torch.uint8)
    out = preprocess(img, (8, 8))
    assert out.shape == (1, 3, 8, 8)
    np.testing.assert_allclose(out[0, :, 0, 0].numpy(), (1 - np.array([0.48145466, 0.4578275, 0.40821073]))
                               / np.array([0.26862954, 0.26130258, 0.27577711]), rtol=1e-5)


def golden_input() -> torch.Tensor:
    """A fixed image: a grey disk on white, like a rendering; no RNG involved."""
    yy, xx = np.mgrid[0:336, 0:336]
    disk = (yy - 150) ** 2 + (xx - 180) ** 2 < 90 ** 2
    img = np.where(disk[..., None], 140 + (xx[..., None] % 7), 255).astype(np.uint8).repeat(3, axis=-1)
    return preprocess(torch.from_numpy(img[None]), (336, 336))


def test_tiny_goldens(tiny: torch.nn.Module) -> None:
    """Numbers of the tiny model on a fixed image: a refactor that changes them fails loudly."""
    glob, patch = PatchEncoder(tiny, [1, 2, 3, 4], True, 3)(golden_input())
    got = {"global": glob[0, :8].tolist(), "patch_l4_t0": patch[0, 3, 0, :8].tolist(),
           "patch_mean_abs": patch.abs().mean(dim=(0, 2, 3)).tolist()}
    if os.environ.get("POINTAD_WRITE_GOLDENS"):  # regenerate on purpose only, then review and commit
        GOLDEN.write_text(json.dumps(got, indent=1))
    assert GOLDEN.is_file(), "golden missing: run with POINTAD_WRITE_GOLDENS=1 once, review, commit"
    want = json.loads(GOLDEN.read_text())
    for key in want:
        np.testing.assert_allclose(got[key], want[key], rtol=1e-4, atol=1e-5, err_msg=key)


def test_registry_rejects_unknown_names() -> None:
    with pytest.raises(ValueError, match="ViT-L-14-336"):
        get_spec("ViT-H-14")
    register_project_configs()
    register_project_configs()  # idempotent
