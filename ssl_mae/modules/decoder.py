"""The MAE decoder: embeds visible tokens, fills in mask tokens, decodes and predicts pixels.

:class:`MaskedDecoderBase` holds what every decoder of the package shares (the projection to the
decoder width, the mask token, the fixed sin-cos position table and the per-patch prediction
head); :class:`MAEDecoder` adds self-attention blocks over the full sequence, and
:class:`~ssl_mae.modules.CrossMAEDecoder` cross-attention blocks.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, cast

import torch
from torch import Tensor, nn

from ssl_mae import masking
from ssl_mae._validation import (
    check_bool,
    check_float,
    check_index,
    check_nonnegative_int,
    check_permutation,
    check_positive_float,
    check_positive_int,
    check_tensor,
    patch_grid,
    to_2tuple,
)
from ssl_mae.modules.init import init_mae_weights, init_tokens
from ssl_mae.pos_embed import get_2d_sincos_pos_embed, interpolate_pos_embed

__all__ = ["MAEDecoder", "MaskedDecoderBase"]

_LAYER_NORM_EPS6 = partial(nn.LayerNorm, eps=1e-6)


def _timm_block_classes() -> tuple[type[nn.Module], type[nn.Module]]:
    """timm's ``Block`` and ``Attention``, imported when a decoder is built: ``import timm``
    takes longer than ``import torch``, and importing ``ssl_mae`` should not pay it."""
    from timm.models.vision_transformer import Block

    try:
        from timm.layers.attention import Attention
    except ImportError:  # timm < 1.0.10 keeps Attention in the ViT module
        from timm.models.vision_transformer import Attention  # type: ignore[attr-defined]
    return Block, Attention


_POS_EMBED_RESIZES = ("grid", "sequence")


def rows_at(table: Tensor, index: Tensor, dtype: torch.dtype) -> Tensor:
    """The rows (B, K, D) of a (1, N, D) position table at ``index`` (B, K), in ``dtype``."""
    positions = table.to(dtype).expand(index.shape[0], -1, -1)
    return torch.gather(positions, 1, index.unsqueeze(-1).expand(-1, -1, table.shape[-1]))


class MaskedDecoderBase(nn.Module):
    """What every MAE decoder shares: the projection of encoder tokens to the decoder width
    (``decoder_embed``), the mask token, the fixed 2-D sin-cos position table
    (``decoder_pos_embed``, resized for other patch grids), the final norm (``decoder_norm``)
    and the per-patch prediction head (``decoder_pred``).

    Subclasses build their blocks between ``super().__init__(...)`` and :meth:`_build_head`,
    which keeps the parameter order (and so the state dict) of the official MAE decoder.

    Args:
        num_patches: Number of patch tokens L of the full image.
        patch_size: Patch side length p in pixels.
        in_chans: Number of image channels C.
        embed_dim: Token dimension of the encoder.
        decoder_embed_dim: Token dimension of the decoder.
        num_prefix_tokens: Prefix tokens (class/register) in the encoder output.
        mask_token: Optional (1, 1, decoder_embed_dim) mask token to share.
        grid_size: Patch grid ``(h, w)``; square ``sqrt(num_patches)`` when None.
        pos_embed_resize: ``"grid"`` or ``"sequence"`` (see :class:`MAEDecoder`).
    """

    def __init__(
        self,
        num_patches: int,
        patch_size: int,
        in_chans: int,
        embed_dim: int,
        decoder_embed_dim: int,
        num_prefix_tokens: int,
        mask_token: nn.Parameter | None,
        grid_size: int | tuple[int, int] | None,
        pos_embed_resize: str = "grid",
    ) -> None:
        super().__init__()
        if pos_embed_resize not in _POS_EMBED_RESIZES:
            raise ValueError(
                f"pos_embed_resize must be one of {list(_POS_EMBED_RESIZES)}, "
                f"got {pos_embed_resize!r}"
            )
        self.pos_embed_resize = pos_embed_resize
        self.num_patches = check_positive_int(num_patches, "num_patches")
        self.patch_size = check_positive_int(patch_size, "patch_size")
        self.in_chans = check_positive_int(in_chans, "in_chans")
        check_positive_int(embed_dim, "embed_dim")
        check_positive_int(decoder_embed_dim, "decoder_embed_dim")
        self.num_prefix_tokens = check_nonnegative_int(num_prefix_tokens, "num_prefix_tokens")
        if mask_token is not None:
            check_tensor(mask_token, "mask_token", ndim=3, shape_doc="(1, 1, decoder_embed_dim)")
            if tuple(mask_token.shape) != (1, 1, decoder_embed_dim):
                raise ValueError(
                    f"mask_token must have shape (1, 1, decoder_embed_dim) = "
                    f"(1, 1, {decoder_embed_dim}), got {tuple(mask_token.shape)}"
                )
        self.grid_size = patch_grid(num_patches, grid_size, "grid_size", "num_patches")
        self.decoder_embed = nn.Linear(embed_dim, decoder_embed_dim, bias=True)
        self.mask_token = (
            mask_token
            if mask_token is not None
            else nn.Parameter(torch.zeros(1, 1, decoder_embed_dim))
        )
        self.decoder_pos_embed = nn.Parameter(
            torch.zeros(1, num_patches + num_prefix_tokens, decoder_embed_dim),
            requires_grad=False,
        )

    def _build_head(self, norm_layer: Callable[..., nn.Module], target_dim: int | None) -> None:
        """Adds the final norm and the prediction head (after the subclass's blocks).

        Args:
            norm_layer: Normalisation layer factory.
            target_dim: Prediction width T per patch; ``p * p * C`` (pixels) when None.
        """
        dim = self.decoder_pos_embed.shape[-1]
        pixels = self.patch_size * self.patch_size * self.in_chans
        self.target_dim = (
            pixels if target_dim is None else check_positive_int(target_dim, "target_dim")
        )
        self.decoder_norm = norm_layer(dim)
        self.decoder_pred = nn.Linear(dim, self.target_dim, bias=True)

    def init_weights(self) -> None:
        """(Re-)applies the MAE initialisation: the fixed 2-D sin-cos position table,
        N(0, 0.02) mask token, xavier-uniform linear layers and unit LayerNorms."""
        with torch.no_grad():
            table = get_2d_sincos_pos_embed(
                self.decoder_pos_embed.shape[-1], self.grid_size, self.num_prefix_tokens
            )
            self.decoder_pos_embed.copy_(table.unsqueeze(0))
        init_tokens(self.mask_token)
        self.apply(init_mae_weights)

    @property
    def sequence_length(self) -> int:
        """Length of the decoder's token sequence: prefix tokens plus all patches."""
        return self.num_patches + self.num_prefix_tokens

    def _check_width(self, tokens: Tensor, name: str, width: int, what: str) -> None:
        """Names the argument whose last dimension is not ``width``."""
        if tokens.shape[-1] != width:
            raise ValueError(
                f"{name} must have width {width} ({what}) in its last dimension, got shape "
                f"{tuple(tokens.shape)}"
            )

    def _check_encoded(self, tokens: object, name: str, shape_doc: str) -> Tensor:
        """Checks encoder tokens (B, K, D_enc) handed to the decoder."""
        checked = check_tensor(tokens, name, ndim=3, shape_doc=shape_doc, floating=True)
        self._check_width(checked, name, self.decoder_embed.in_features, "the encoder's embed_dim")
        return checked

    def _check_kept(
        self, x_encoded: Tensor, idx_keep: Tensor, idx_other: Tensor, other_name: str, length: int
    ) -> None:
        """Checks ``idx_keep`` and another index over a sequence of ``length`` tokens;
        ``idx_keep`` must index the tokens of ``x_encoded``."""
        batch_size = x_encoded.shape[0]
        check_index(idx_keep, "idx_keep", length, batch_size)
        check_index(idx_other, other_name, length, batch_size)
        if idx_keep.shape[1] != x_encoded.shape[1]:
            raise ValueError(
                f"idx_keep must index the {x_encoded.shape[1]} tokens of x_encoded, "
                f"got {idx_keep.shape[1]} indices"
            )

    def _table_at(
        self,
        x_encoded: Tensor,
        idx_keep: Tensor,
        idx_decode: Tensor,
        grid_size: tuple[int, int] | None,
    ) -> Tensor:
        """Checks the arguments of ``predict_at``; returns the position table of the grid
        (1, P + L, D_dec)."""
        self._check_encoded(x_encoded, "x_encoded", "(B, P + K_keep, D_enc)")
        table = self.pos_embed_for_grid(grid_size)
        self._check_kept(x_encoded, idx_keep, idx_decode, "idx_decode", table.shape[1])
        return table

    def embed(self, input: Tensor) -> Tensor:
        """Projects encoder tokens (B, K, D_enc) to the decoder width (B, K, D_dec)."""
        self._check_encoded(input, "input", "(B, K, D_enc)")
        return cast(Tensor, self.decoder_embed(input))

    def predict(self, input: Tensor) -> Tensor:
        """Predicts targets (B, K, T) (pixels: T = p * p * C) from decoded tokens (B, K, D_dec)."""
        return cast(Tensor, self.decoder_pred(input))

    def pos_embed_for_grid(self, grid_size: tuple[int, int] | None = None) -> Tensor:
        """The (1, P + h * w, D_dec) position table for a patch grid (the native one when None),
        resized as ``pos_embed_resize`` says when the grid differs from the native one."""
        if grid_size is None or tuple(grid_size) == self.grid_size:
            return self.decoder_pos_embed
        grid_h, grid_w = grid_size
        old_grid = self.grid_size
        if self.pos_embed_resize == "sequence":
            old_grid, grid_size = (1, self.num_patches), (1, grid_h * grid_w)
        return interpolate_pos_embed(
            self.decoder_pos_embed,
            new_grid=grid_size,
            num_prefix_tokens=self.num_prefix_tokens,
            old_grid=old_grid,
            antialias=False,
        )


class MAEDecoder(MaskedDecoderBase):
    """Lightweight transformer decoder of MAE (drop-in for Lightly's ``MAEDecoderTIMM``).

    Parameter names match Lightly's ``MAEDecoderTIMM`` (``decoder_embed``, ``mask_token``,
    ``decoder_pos_embed``, ``decoder_blocks``, ``decoder_norm``, ``decoder_pred``) and, for the
    blocks, the official MAE checkpoints. Unlike Lightly, the mask token is used by the decoder
    itself (:meth:`predict_masked`, :meth:`predict_all`), so it receives a gradient every step.

    Args:
        num_patches: Number of patch tokens L of the full image.
        patch_size: Patch side length p in pixels.
        in_chans: Number of image channels C; predictions have p * p * C values per patch.
        embed_dim: Token dimension of the encoder.
        decoder_embed_dim: Token dimension of the decoder.
        decoder_depth: Number of decoder blocks.
        decoder_num_heads: Attention heads per decoder block.
        num_prefix_tokens: Number of prefix tokens (class/register) in the encoder output; 0 for
            encoders without class token (e.g. HiViT).
        mlp_ratio: MLP hidden size ratio of the decoder blocks.
        proj_drop_rate: Dropout after the attention/MLP projections.
        attn_drop_rate: Attention dropout.
        norm_layer: Normalisation layer factory.
        initialize_weights: Apply the MAE initialisation (:meth:`init_weights`, which also fills
            the sin-cos position table); False leaves every weight to the caller, as Lightly.
        mask_token: Optional (1, 1, decoder_embed_dim) mask token to share.
        grid_size: Patch grid ``(h, w)`` for non-square images; square ``sqrt(num_patches)``
            when None.
        qkv_bias: Bias in the attention projections.
        act_layer: Activation of the decoder MLPs (GELU, as in MAE and Hugging Face's "gelu").
        decoder_head_dim: Width of one attention head when it should differ from
            ``decoder_embed_dim // decoder_num_heads`` (as in vit-pytorch's ``dim_head``).
        pos_embed_resize: How the position table follows other image sizes: ``"grid"`` resizes
            it bicubically as a 2-D grid, ``"sequence"`` as a 1 x L sequence in patch order
            (what Hugging Face's ViTMAE decoder does).
        target_dim: Prediction width T per patch when the target is not pixels (e.g.
            ``HOGTarget(...).dim``); ``p * p * C`` when None.
    """

    def __init__(
        self,
        num_patches: int,
        patch_size: int,
        in_chans: int = 3,
        embed_dim: int = 1024,
        decoder_embed_dim: int = 512,
        decoder_depth: int = 8,
        decoder_num_heads: int = 16,
        num_prefix_tokens: int = 1,
        mlp_ratio: float = 4.0,
        proj_drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        norm_layer: Callable[..., nn.Module] = _LAYER_NORM_EPS6,
        initialize_weights: bool = True,
        mask_token: nn.Parameter | None = None,
        grid_size: int | tuple[int, int] | None = None,
        qkv_bias: bool = True,
        decoder_head_dim: int | None = None,
        act_layer: Callable[..., nn.Module] = nn.GELU,
        pos_embed_resize: str = "grid",
        target_dim: int | None = None,
    ) -> None:
        super().__init__(
            num_patches,
            patch_size,
            in_chans,
            embed_dim,
            decoder_embed_dim,
            num_prefix_tokens,
            mask_token,
            grid_size,
            pos_embed_resize,
        )
        check_positive_int(decoder_depth, "decoder_depth")
        check_positive_int(decoder_num_heads, "decoder_num_heads")
        check_positive_float(mlp_ratio, "mlp_ratio")
        for rate, rate_name in (
            (proj_drop_rate, "proj_drop_rate"),
            (attn_drop_rate, "attn_drop_rate"),
        ):
            check_float(rate, rate_name, 0.0, 1.0, high_open=True)
        check_bool(qkv_bias, "qkv_bias")
        check_bool(initialize_weights, "initialize_weights")
        for factory, factory_name in ((norm_layer, "norm_layer"), (act_layer, "act_layer")):
            if not callable(factory):
                raise TypeError(
                    f"{factory_name} must be a callable returning a module, got {factory!r}"
                )
        custom_head_dim = (
            decoder_head_dim is not None
            and check_positive_int(decoder_head_dim, "decoder_head_dim") * decoder_num_heads
            != decoder_embed_dim
        )
        if not custom_head_dim and decoder_embed_dim % decoder_num_heads:
            raise ValueError(
                f"decoder_embed_dim ({decoder_embed_dim}) must be divisible by "
                f"decoder_num_heads ({decoder_num_heads})"
            )
        if initialize_weights and decoder_embed_dim % 4:
            raise ValueError(
                f"decoder_embed_dim must be a multiple of 4 for the 2-D sin-cos position table "
                f"(initialize_weights=True), got {decoder_embed_dim}"
            )
        Block, Attention = _timm_block_classes()
        self.decoder_blocks = nn.Sequential(
            *[
                Block(
                    decoder_embed_dim,
                    decoder_num_heads,
                    mlp_ratio,
                    qkv_bias=qkv_bias,
                    proj_drop=proj_drop_rate,
                    attn_drop=attn_drop_rate,
                    norm_layer=cast(Any, norm_layer),
                    act_layer=cast(Any, act_layer),
                )
                for _ in range(decoder_depth)
            ]
        )
        if custom_head_dim:
            for block in self.decoder_blocks:
                block.attn = Attention(
                    decoder_embed_dim,
                    num_heads=decoder_num_heads,
                    attn_head_dim=decoder_head_dim,
                    qkv_bias=qkv_bias,
                    attn_drop=attn_drop_rate,
                    proj_drop=proj_drop_rate,
                )
        self._build_head(norm_layer, target_dim)
        if initialize_weights:
            self.init_weights()

    def decode(self, input: Tensor, pos_embed: Tensor | None = None) -> Tensor:
        """Adds position embeddings, runs the decoder blocks and the final norm.

        Args:
            input: (B, P + L, D_dec) full token sequence (prefix tokens first).
            pos_embed: Optional (1, P + L', D_dec) table to use instead of ``decoder_pos_embed``,
                e.g. one resized for another image size; ``input`` must then hold P + L' tokens.

        Returns:
            (B, P + L, D_dec) decoded tokens.
        """
        check_tensor(input, "input", ndim=3, shape_doc="(B, P + L, D_dec)", floating=True)
        self._check_width(input, "input", self.decoder_pos_embed.shape[-1], "decoder_embed_dim")
        table = self.decoder_pos_embed if pos_embed is None else pos_embed
        if input.shape[1] != table.shape[1]:
            raise ValueError(
                f"input must hold the full sequence of {table.shape[1]} tokens "
                f"({self.num_prefix_tokens} prefix + {table.shape[1] - self.num_prefix_tokens} "
                f"patches), got {input.shape[1]}"
            )
        x = input + table.to(input.dtype)
        x = self.decoder_blocks(x)
        return cast(Tensor, self.decoder_norm(x))

    def forward(self, input: Tensor) -> Tensor:
        """Embeds, decodes and predicts a full token sequence.

        Args:
            input: (B, P + L, D_enc) encoder tokens of the full sequence (e.g. with mask tokens
                already in place).

        Returns:
            (B, P + L, p * p * C) predictions.
        """
        return self.predict(self.decode(self.embed(input)))

    def insert_mask_tokens(self, visible: Tensor, ids_restore: Tensor) -> Tensor:
        """Appends mask tokens to visible tokens and puts every token at its original position.

        Args:
            visible: (B, K, D_dec) embedded visible tokens, in the order the permutation
                ``ids_restore`` expects them (first K entries of the shuffled sequence).
            ids_restore: (B, N) permutation restoring the original order of the N tokens.

        Returns:
            (B, N, D_dec) tokens with the mask token at the N - K missing positions.
        """
        batch_size, num_visible, dim = visible.shape
        num_missing = ids_restore.shape[1] - num_visible
        mask_tokens = self.mask_token.to(visible.dtype).expand(batch_size, num_missing, dim)
        shuffled = torch.cat([visible, mask_tokens], dim=1)
        return torch.gather(shuffled, 1, ids_restore.unsqueeze(-1).expand(-1, -1, dim))

    def predict_masked(self, x_encoded: Tensor, idx_keep: Tensor, idx_mask: Tensor) -> Tensor:
        """Predicts the pixels of the masked patches from the encoded visible tokens.

        This is the whole MAE decoder step for the ``idx_keep``/``idx_mask`` convention; callers
        never re-implement the scatter of visible tokens.

        Args:
            x_encoded: (B, K_keep, D_enc) encoder output for the tokens at ``idx_keep``.
            idx_keep: (B, K_keep) kept positions over the full sequence (prefix included).
            idx_mask: (B, K_mask) masked positions over the full sequence. Together with
                ``idx_keep`` a permutation of the sequence (as from ``random_token_mask``).

        Returns:
            (B, K_mask, p * p * C) predicted pixels of the masked patches, in ``idx_mask`` order;
            compare with ``get_at_index(patchify(images), idx_mask - num_prefix_tokens)``.
        """
        self._check_encoded(x_encoded, "x_encoded", "(B, K_keep, D_enc)")
        length = self.sequence_length
        self._check_kept(x_encoded, idx_keep, idx_mask, "idx_mask", length)
        if idx_keep.shape[1] + idx_mask.shape[1] != length:
            raise ValueError(
                f"idx_keep and idx_mask must together cover the {length} tokens of the sequence, "
                f"got {idx_keep.shape[1]} + {idx_mask.shape[1]}"
            )
        ids_restore = masking.restore_index(idx_keep, idx_mask)
        decoded = self.decode(self.insert_mask_tokens(self.embed(x_encoded), ids_restore))
        dim = decoded.shape[-1]
        at_mask = torch.gather(decoded, 1, idx_mask.unsqueeze(-1).expand(-1, -1, dim))
        return self.predict(at_mask)

    def predict_all(
        self,
        x_visible: Tensor,
        ids_restore: Tensor,
        grid_size: tuple[int, int] | None = None,
    ) -> Tensor:
        """Predicts the pixels of every patch (official MAE ``forward_decoder``).

        Args:
            x_visible: (B, P + L_keep, D_enc) encoder output: prefix tokens first, then the kept
                patches in shuffled (ascending-noise) order, as from ``random_masking``.
            ids_restore: (B, L) permutation that restores the original patch order.
            grid_size: Patch grid ``(h, w)`` of the images when it is not the native one
                (``h * w = L``); the position table is resized (see ``pos_embed_resize``).

        Returns:
            (B, L, p * p * C) predictions for all patches (prefix tokens removed).
        """
        self._check_encoded(x_visible, "x_visible", "(B, P + L_keep, D_enc)")
        batch_size = x_visible.shape[0]
        num_patches = self.num_patches
        if grid_size is not None:
            grid_h, grid_w = to_2tuple(grid_size, "grid_size")
            num_patches = grid_h * grid_w
        check_index(ids_restore, "ids_restore", num_patches, batch_size)
        if ids_restore.shape[1] != num_patches:
            raise ValueError(
                f"ids_restore must have shape (B, {num_patches}), got {tuple(ids_restore.shape)}"
            )
        check_permutation(ids_restore, "ids_restore")
        num_prefix = self.num_prefix_tokens
        if not num_prefix <= x_visible.shape[1] <= num_prefix + num_patches:
            raise ValueError(
                f"x_visible must hold the {num_prefix} prefix tokens and at most {num_patches} "
                f"visible patches, got {x_visible.shape[1]} tokens"
            )
        x = self.embed(x_visible)
        restored = self.insert_mask_tokens(x[:, num_prefix:], ids_restore)
        tokens = torch.cat([x[:, :num_prefix], restored], dim=1)
        decoded = self.decode(tokens, pos_embed=self.pos_embed_for_grid(grid_size))
        return self.predict(decoded[:, num_prefix:])

    def predict_at(
        self,
        x_encoded: Tensor,
        idx_keep: Tensor,
        idx_decode: Tensor,
        grid_size: tuple[int, int] | None = None,
    ) -> Tensor:
        """Predicts the pixels of chosen masked patches only, decoding nothing else.

        The decoder sees the visible tokens and one mask token per position in ``idx_decode``,
        each with its own position embedding; attention does not depend on the order of the
        tokens, so no full sequence is assembled. With ``idx_decode`` a fraction of the masked
        positions, the decoder's cost shrinks with it (partial reconstruction, as in CrossMAE).

        Args:
            x_encoded: (B, P + K_keep, D_enc) encoder output for the tokens at ``idx_keep``.
            idx_keep: (B, P + K_keep) kept positions over the full sequence.
            idx_decode: (B, K_dec) masked positions over the full sequence to predict.
            grid_size: Patch grid when it is not the native one.

        Returns:
            (B, K_dec, p * p * C) predictions in ``idx_decode`` order.
        """
        table = self._table_at(x_encoded, idx_keep, idx_decode, grid_size)
        x = self.embed(x_encoded)
        visible = x + rows_at(table, idx_keep, x.dtype)
        queries = self.mask_token.to(x.dtype) + rows_at(table, idx_decode, x.dtype)
        tokens = self.decoder_norm(self.decoder_blocks(torch.cat([visible, queries], dim=1)))
        return self.predict(tokens[:, visible.shape[1] :])
