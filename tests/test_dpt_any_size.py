"""DPT-Large and DPT-Hybrid at any input size: identical to transformers' class at the native size,
and at other (non-square) sizes equal to a forward written here from the original DPT's
description (isl-org/DPT ``forward_flex``: position embeddings resized bilinearly from their square
grid to (H // 16, W // 16), tokens reassembled on that grid), with the interpolation in float64
numpy rather than ``F.interpolate``."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from tiny_models import tiny_dpt_config, tiny_dpt_hybrid_config
from transformers import DPTConfig, DPTForSemanticSegmentation

from harness.errors import ConfigError
from harness.models.dpt import DPTAnySizeForSemanticSegmentation


def tiny_vit_config() -> DPTConfig:
    return tiny_dpt_config(num_labels=7)


def tiny_hybrid_config() -> DPTConfig:
    return tiny_dpt_hybrid_config(num_labels=7)


@functools.cache
def pair(make):
    cfg = make()
    torch.manual_seed(0)
    stock = DPTForSemanticSegmentation(cfg).eval()
    ours = DPTAnySizeForSemanticSegmentation(cfg).eval()
    ours.load_state_dict(stock.state_dict())
    return stock, ours


def bilinear_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) float64 weights of a 1-D bilinear resize with half-pixel centres, edges clamped."""
    m = np.zeros((n_out, n_in))
    for i in range(n_out):
        src = max((i + 0.5) * n_in / n_out - 0.5, 0.0)
        i0 = min(int(np.floor(src)), n_in - 1)
        i1 = min(i0 + 1, n_in - 1)
        lam = src - i0
        m[i, i0] += 1 - lam
        m[i, i1] += lam
    return m


def resized_position_embeddings(pos: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """(1, 1 + rows * cols, D): the class token's embedding kept, the square grid resized to rows x cols."""
    grid = pos[0, 1:]
    g = int(round(np.sqrt(len(grid))))
    grid = grid.reshape(g, g, -1)
    out = np.einsum("ri,ijd,cj->rcd", bilinear_matrix(g, rows), grid, bilinear_matrix(g, cols), optimize=True)
    return np.concatenate([pos[:, :1], out.reshape(1, rows * cols, -1)], axis=1)


@torch.no_grad()
def reference_logits(model, x: torch.Tensor) -> torch.Tensor:
    """The original algorithm, step by step, on the model's layers (the grid handling is what is under test)."""
    cfg = model.config
    b, _, h, w = x.shape
    rows, cols = h // cfg.patch_size, w // cfg.patch_size
    emb = model.dpt.embeddings
    if cfg.is_hybrid:
        maps = emb.backbone(x).feature_maps
        tokens, residuals = emb.projection(maps[-1]).flatten(2).transpose(1, 2), list(maps[:2])
    else:
        tokens, residuals = emb.patch_embeddings.projection(x).flatten(2).transpose(1, 2), []
    pos = torch.from_numpy(resized_position_embeddings(emb.position_embeddings.double().numpy(), rows, cols))
    hidden = torch.cat([emb.cls_token.expand(b, -1, -1), tokens], 1) + pos.float()
    taken = []
    for i, layer in enumerate(model.dpt.encoder.layer):
        hidden = layer(hidden)
        if i in cfg.backbone_out_indices[len(residuals):]:
            taken.append(hidden)
    stage = model.neck.reassemble_stage
    features = list(residuals)
    for i, t in enumerate(taken, start=len(residuals)):
        grid = t[:, 1:].reshape(b, rows, cols, -1)  # row-major tokens onto the rows x cols grid
        readout = t[:, :1].expand(b, rows * cols, -1)
        projected = stage.readout_projects[i](torch.cat([grid.reshape(b, rows * cols, -1), readout], -1))
        features.append(stage.layers[i](projected.reshape(b, rows, cols, -1).permute(0, 3, 1, 2)))
    fused = model.neck.fusion_stage([conv(f) for conv, f in zip(model.neck.convs, features, strict=True)])
    return model.head(fused)


@pytest.mark.parametrize("make", [tiny_vit_config, tiny_hybrid_config], ids=["vit", "hybrid"])
def test_native_size_is_bit_identical_to_transformers(make):
    stock, ours = pair(make)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(stock(pixel_values=x).logits, ours(pixel_values=x).logits)


@pytest.mark.parametrize("make", [tiny_vit_config, tiny_hybrid_config], ids=["vit", "hybrid"])
@pytest.mark.parametrize("size", [(64, 96), (96, 64), (32, 160)])
def test_other_sizes_equal_the_original_algorithm(make, size):
    _, ours = pair(make)
    x = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        got = ours(pixel_values=x).logits
    want = reference_logits(ours, x)
    assert got.shape == (1, 7, *size)
    assert torch.allclose(got, want, rtol=1e-5, atol=1e-5), (got - want).abs().max()


def test_the_square_reshape_of_transformers_is_what_fails_on_non_square_inputs():
    stock, _ = pair(tiny_vit_config)
    with pytest.raises(RuntimeError), torch.no_grad():
        stock(pixel_values=torch.randn(1, 3, 64, 96))


def test_hybrid_sides_must_be_multiples_of_16():
    _, ours = pair(tiny_hybrid_config)
    with pytest.raises(ConfigError, match="multiples of 16.*72x64"), torch.no_grad():
        ours(pixel_values=torch.randn(1, 3, 72, 64))


@pytest.mark.parametrize("name", ["dpt-large", "dpt-hybrid"])
def test_registry_dpt_configs_build_the_any_size_class(name):
    from harness.models import MODELS
    from harness.models.hf import config_from_dict, module_class

    cfg = config_from_dict(MODELS[name].config_dict())
    cls = module_class(cfg)
    with torch.device("meta"):
        module = cls(cfg)
    assert cls is DPTAnySizeForSemanticSegmentation
    assert type(module.neck.reassemble_stage).__name__ == "GridReassembleStage"
    assert (type(module.dpt.embeddings).__name__ == "AnySizeHybridEmbeddings") == (name == "dpt-hybrid")
