"""Fixed 2-D sine-cosine position embeddings and their resizing.

The layout is the official MAE one (``util/pos_embed.py`` in facebookresearch/mae), value for
value, so official and Hugging Face checkpoints line up without retraining: the first half of the
channels encodes the *column* (w) coordinate and the second half the *row* (h) coordinate — the
official code builds its grid with ``meshgrid(grid_w, grid_h)`` ("w goes first") and then calls
the first grid "h". Prefix-token rows (class, register tokens) are zeros.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ssl_mae._validation import (
    check_bool,
    check_nonnegative_int,
    check_positive_int,
    check_tensor,
    patch_grid,
    to_2tuple,
)

__all__ = ["get_1d_sincos_pos_embed", "get_2d_sincos_pos_embed", "interpolate_pos_embed"]


def get_1d_sincos_pos_embed(embed_dim: int, positions: Tensor) -> Tensor:
    """Sine-cosine embedding of 1-D positions.

    Args:
        embed_dim: Output dimension D (even).
        positions: (M,) positions.

    Returns:
        (M, D) float64 tensor: ``[sin(pos * omega), cos(pos * omega)]`` with
        ``omega_i = 1 / 10000 ** (i / (D / 2))``.
    """
    if embed_dim % 2:
        raise ValueError(f"embed_dim must be even for a sin-cos embedding, got {embed_dim}")
    omega = torch.arange(embed_dim // 2, dtype=torch.float64) / (embed_dim / 2.0)
    omega = 1.0 / 10000**omega
    angles = positions.reshape(-1).to(torch.float64)[:, None] * omega[None, :]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


def get_2d_sincos_pos_embed(
    embed_dim: int,
    grid_size: int | Sequence[int],
    num_prefix_tokens: int = 1,
) -> Tensor:
    """Fixed 2-D sine-cosine position embedding in the official MAE layout.

    Args:
        embed_dim: Embedding dimension D; must be a multiple of 4.
        grid_size: Patch grid size, an int for square grids or ``(grid_h, grid_w)``.
        num_prefix_tokens: Number of zero rows prepended for class/register tokens.

    Returns:
        (num_prefix_tokens + grid_h * grid_w, D) float32 tensor; patch rows are in row-major
        order, matching :func:`ssl_mae.masking.patchify`.
    """
    embed_dim = check_positive_int(embed_dim, "embed_dim")
    if embed_dim % 4:
        raise ValueError(
            f"embed_dim must be a multiple of 4 for a 2-D sin-cos embedding, got {embed_dim}"
        )
    grid_h, grid_w = to_2tuple(grid_size, "grid_size")
    check_nonnegative_int(num_prefix_tokens, "num_prefix_tokens")

    # Coordinates as in the official code: float32 grid, row-major over (h, w).
    rows = torch.arange(grid_h, dtype=torch.float32)
    cols = torch.arange(grid_w, dtype=torch.float32)
    row_coord, col_coord = torch.meshgrid(rows, cols, indexing="ij")
    # Official naming: its "emb_h" is computed from the w (column) coordinate.
    emb_first = get_1d_sincos_pos_embed(embed_dim // 2, col_coord)
    emb_second = get_1d_sincos_pos_embed(embed_dim // 2, row_coord)
    patch_rows = torch.cat([emb_first, emb_second], dim=1).to(torch.float32)
    prefix_rows = torch.zeros(num_prefix_tokens, embed_dim, dtype=torch.float32)
    return torch.cat([prefix_rows, patch_rows], dim=0)


def interpolate_pos_embed(
    pos_embed: Tensor,
    new_grid: int | Sequence[int],
    num_prefix_tokens: int = 1,
    old_grid: int | Sequence[int] | None = None,
    antialias: bool = False,
) -> Tensor:
    """Resizes a position embedding to another patch grid with bicubic interpolation.

    Use it to fine-tune or evaluate at another image size than the one pretrained on; prefix
    rows are kept unchanged.

    Args:
        pos_embed: (1, num_prefix_tokens + h * w, D) or (num_prefix_tokens + h * w, D).
        new_grid: Target grid, int or ``(h, w)``.
        num_prefix_tokens: Number of prefix rows at the start of ``pos_embed``.
        old_grid: Source grid when it is not square; inferred as square when None.
        antialias: Use antialiasing when downsampling (timm's default is True, the official
            MAE code uses False).

    Returns:
        Tensor of the same rank as ``pos_embed`` with ``new_h * new_w`` patch rows.
    """
    if not isinstance(pos_embed, Tensor):
        raise TypeError(
            f"pos_embed must be a torch.Tensor of shape (1, N, D) or (N, D), got "
            f"{type(pos_embed).__name__}"
        )
    if pos_embed.ndim not in (2, 3):
        raise ValueError(
            f"pos_embed must have shape (1, N, D) or (N, D), got {tuple(pos_embed.shape)}"
        )
    squeeze = pos_embed.ndim == 2
    pe = pos_embed.unsqueeze(0) if squeeze else pos_embed
    check_tensor(pe, "pos_embed", ndim=3, shape_doc="(1, N, D)", floating=True)
    if pe.shape[0] != 1:
        raise ValueError(
            f"pos_embed must hold one table, shape (1, N, D) or (N, D), got shape "
            f"{tuple(pos_embed.shape)}"
        )
    new_h, new_w = to_2tuple(new_grid, "new_grid")
    check_nonnegative_int(num_prefix_tokens, "num_prefix_tokens")
    check_bool(antialias, "antialias")
    num_patches = pe.shape[1] - num_prefix_tokens
    if num_patches < 1:
        raise ValueError(
            f"num_prefix_tokens must leave at least one patch row of the {pe.shape[1]} rows of "
            f"pos_embed, got num_prefix_tokens={num_prefix_tokens}"
        )
    old_h, old_w = patch_grid(num_patches, old_grid, "old_grid", "the patch rows of pos_embed")
    prefix, patches = pe[:, :num_prefix_tokens], pe[:, num_prefix_tokens:]
    if (old_h, old_w) != (new_h, new_w):
        dim = patches.shape[-1]
        grid = patches.reshape(1, old_h, old_w, dim).permute(0, 3, 1, 2)
        grid = F.interpolate(
            grid.float(),
            size=(new_h, new_w),
            mode="bicubic",
            align_corners=False,
            antialias=antialias,
        ).to(pe.dtype)
        patches = grid.permute(0, 2, 3, 1).reshape(1, new_h * new_w, dim)
    out = torch.cat([prefix, patches], dim=1)
    return out.squeeze(0) if squeeze else out
