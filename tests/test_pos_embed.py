"""The sin-cos position embedding against the official MAE formula, written out independently."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ssl_mae.pos_embed import get_2d_sincos_pos_embed, interpolate_pos_embed


def official_2d_sincos(embed_dim: int, grid_h: int, grid_w: int, prefix: int) -> np.ndarray:
    """The official facebookresearch/mae util/pos_embed.py recipe, re-derived from its description:
    meshgrid(grid_w, grid_h) so w goes first; half the channels per coordinate; each half is
    [sin(pos * omega), cos(pos * omega)] with omega = 1 / 10000 ** (arange(D/4) / (D/4))."""

    def one_d(dim: int, pos: np.ndarray) -> np.ndarray:
        omega = np.arange(dim // 2, dtype=np.float64) / (dim / 2.0)
        omega = 1.0 / 10000**omega
        out = np.einsum("m,d->md", pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    gh = np.arange(grid_h, dtype=np.float32)
    gw = np.arange(grid_w, dtype=np.float32)
    grid = np.stack(np.meshgrid(gw, gh), axis=0).reshape(2, 1, grid_h, grid_w)
    emb = np.concatenate([one_d(embed_dim // 2, grid[0]), one_d(embed_dim // 2, grid[1])], axis=1)
    return np.concatenate([np.zeros((prefix, embed_dim)), emb], axis=0)


@pytest.mark.parametrize(
    ("dim", "grid", "prefix"), [(768, 14, 1), (64, (3, 5), 1), (32, (4, 2), 0), (16, 4, 5)]
)
def test_equals_official_formula(dim: int, grid: int | tuple[int, int], prefix: int) -> None:
    gh, gw = (grid, grid) if isinstance(grid, int) else grid
    ours = get_2d_sincos_pos_embed(dim, grid, num_prefix_tokens=prefix)
    reference = torch.from_numpy(official_2d_sincos(dim, gh, gw, prefix)).float()
    assert ours.shape == (prefix + gh * gw, dim) and ours.dtype == torch.float32
    assert torch.equal(ours, reference)
    assert (ours[:prefix] == 0).all()


def test_matches_lightly_table() -> None:
    from lightly.models.utils import get_2d_sine_cosine_positional_embedding

    # Lightly computes omega in float32 where the official code uses float64: equal up to 1 ulp.
    theirs = torch.from_numpy(
        get_2d_sine_cosine_positional_embedding(96, 7, cls_token=True)
    ).float()
    assert torch.allclose(get_2d_sincos_pos_embed(96, 7), theirs, atol=1e-6, rtol=0)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="multiple of 4"):
        get_2d_sincos_pos_embed(30, 4)
    with pytest.raises(TypeError, match="grid_size"):
        get_2d_sincos_pos_embed(32, "4")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="num_prefix_tokens"):
        get_2d_sincos_pos_embed(32, 4, num_prefix_tokens=-1)


def test_interpolate_keeps_prefix_and_identity() -> None:
    table = get_2d_sincos_pos_embed(32, 4).unsqueeze(0)
    assert torch.equal(interpolate_pos_embed(table, 4, num_prefix_tokens=1), table)
    bigger = interpolate_pos_embed(table, (6, 8), num_prefix_tokens=1)
    assert bigger.shape == (1, 1 + 48, 32)
    assert torch.equal(bigger[:, :1], table[:, :1])
    expected = torch.nn.functional.interpolate(
        table[:, 1:].reshape(1, 4, 4, 32).permute(0, 3, 1, 2),
        size=(6, 8),
        mode="bicubic",
        align_corners=False,
    )
    assert torch.allclose(bigger[:, 1:], expected.permute(0, 2, 3, 1).reshape(1, 48, 32))
    with pytest.raises(ValueError, match="old_grid"):
        interpolate_pos_embed(table[:, :-1], 5)
