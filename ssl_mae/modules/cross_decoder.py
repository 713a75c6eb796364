"""The CrossMAE decoder: mask-token queries that only cross-attend to the visible tokens.

CrossMAE (Fu et al., "Rethinking Patch Dependence for Masked Autoencoders", 2024,
arXiv 2401.14391) removes the self-attention of the MAE decoder: each masked position is
predicted by a query (the mask token plus that position's embedding) that attends to the visible
encoder tokens only, never to the other queries. Every query is therefore decoded on its own, so
the decoder may predict any share of the masked patches (``MaskedAutoencoder(...,
decode_ratio=0.25)``) at a cost proportional to that share. Optionally each decoder block reads
another encoder layer (``encoder_layers``), CrossMAE's feature maps for the decoder.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ssl_mae._validation import check_index, check_positive_int, to_2tuple
from ssl_mae.modules.decoder import _LAYER_NORM_EPS6, MaskedDecoderBase, rows_at

__all__ = ["CrossAttention", "CrossAttentionBlock", "CrossMAEDecoder"]


class CrossAttention(nn.Module):
    """Multi-head attention from queries (B, N, D) to a memory (B, M, D).

    Args:
        dim: Token width D of queries and memory.
        num_heads: Attention heads; must divide ``dim``.
        qkv_bias: Bias in the query and key/value projections.
        attn_drop: Dropout on the attention probabilities (training only).
        proj_drop: Dropout after the output projection.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int = 8,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
    ) -> None:
        super().__init__()
        check_positive_int(dim, "dim")
        check_positive_int(num_heads, "num_heads")
        if dim % num_heads:
            raise ValueError(f"dim ({dim}) must be divisible by num_heads ({num_heads})")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(dim, 2 * dim, bias=qkv_bias)
        self.attn_drop = float(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: Tensor, memory: Tensor) -> Tensor:
        """Attends from ``x`` (B, N, D) to ``memory`` (B, M, D); returns (B, N, D)."""
        batch_size, num_queries, dim = x.shape
        heads, head_dim = self.num_heads, self.head_dim
        query = self.q(x).view(batch_size, num_queries, heads, head_dim).transpose(1, 2)
        key_value = self.kv(memory).view(batch_size, memory.shape[1], 2, heads, head_dim)
        key, value = key_value.permute(2, 0, 3, 1, 4).unbind(0)
        out = F.scaled_dot_product_attention(
            query, key, value, dropout_p=self.attn_drop if self.training else 0.0
        )
        out = out.transpose(1, 2).reshape(batch_size, num_queries, dim)
        return cast(Tensor, self.proj_drop(self.proj(out)))


class CrossAttentionBlock(nn.Module):
    """A CrossMAE decoder block: pre-norm cross-attention to the memory, then an MLP.

    ``x = x + attn(norm1(x), norm_memory(memory)); x = x + mlp(norm2(x))``. There is no
    self-attention, so each query's output depends on that query and the memory only.

    Args:
        dim: Token width.
        num_heads: Attention heads.
        mlp_ratio: MLP hidden size ratio.
        qkv_bias: Bias in the attention projections.
        proj_drop: Dropout after the attention and MLP projections.
        attn_drop: Attention dropout.
        norm_layer: Normalisation layer factory.
        act_layer: Activation of the MLP.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        proj_drop: float = 0.0,
        attn_drop: float = 0.0,
        norm_layer: Callable[..., nn.Module] = _LAYER_NORM_EPS6,
        act_layer: Callable[..., nn.Module] = nn.GELU,
    ) -> None:
        super().__init__()
        from timm.layers.mlp import Mlp  # timm loads when a decoder is built, not on import

        self.norm1 = norm_layer(dim)
        self.norm_memory = norm_layer(dim)
        self.attn = CrossAttention(dim, num_heads, qkv_bias, attn_drop, proj_drop)
        self.norm2 = norm_layer(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=cast(Any, act_layer), drop=proj_drop)

    def forward(self, x: Tensor, memory: Tensor) -> Tensor:
        """Updates the queries ``x`` (B, N, D) from ``memory`` (B, M, D)."""
        x = x + self.attn(self.norm1(x), self.norm_memory(memory))
        return x + cast(Tensor, self.mlp(self.norm2(x)))


_OUTPUT = -1  # encoder_layers entry for the encoder output (after the encoder's final norm)


def _check_encoder_layers(
    encoder_layers: Sequence[int] | None, decoder_depth: int
) -> tuple[int, ...] | None:
    if encoder_layers is None:
        return None
    layers = tuple(encoder_layers)
    if len(layers) != decoder_depth or not all(
        isinstance(i, int) and not isinstance(i, bool) and i >= _OUTPUT for i in layers
    ):
        raise ValueError(
            f"encoder_layers must be None or {decoder_depth} (decoder_depth) ints >= -1, one "
            f"encoder hidden-state index (-1: the encoder output) per decoder block, got "
            f"{encoder_layers!r}"
        )
    # Only the encoder output: no hidden states needed.
    return None if all(layer == _OUTPUT for layer in layers) else layers


class CrossMAEDecoder(MaskedDecoderBase):
    """CrossMAE decoder: queries cross-attend to the visible tokens, never to each other.

    A query is the mask token plus the sin-cos position embedding of the patch it predicts; the
    memory is the embedded encoder output plus the position embeddings of the visible tokens
    (prefix tokens included). Each block is a :class:`CrossAttentionBlock`. Implements the
    :class:`~ssl_mae.core.MaskedDecoder` protocol; with ``MaskedAutoencoder(...,
    decode_ratio=r)`` only a share ``r`` of the masked patches is queried, so the decoder's
    cost shrinks with ``r`` (``decode_ratio=1`` queries every patch through
    :meth:`predict_all`).

    With ``encoder_layers``, decoder block j reads encoder hidden state ``encoder_layers[j]``
    (0 = the embedded tokens before the first encoder block, i = the output of block i,
    normalised by a LayerNorm of the decoder's own; -1 = the encoder output, after the
    encoder's final norm), projected by the shared ``decoder_embed``;
    :class:`~ssl_mae.MaskedAutoencoder` then asks the encoder for its hidden states. Give the
    last layer as -1 rather than its index: then the encoder's final norm stays in use (and
    trained). CrossMAE also learns weighted mixes of encoder layers; choosing one layer per
    block is its simplest form.

    Args:
        num_patches: Number of patch tokens L of the full image.
        patch_size: Patch side length p in pixels.
        in_chans: Image channels C.
        embed_dim: Token width of the encoder.
        decoder_embed_dim: Token width of the decoder.
        decoder_depth: Number of cross-attention blocks.
        decoder_num_heads: Attention heads per block.
        num_prefix_tokens: Prefix tokens (class/register) in the encoder output.
        mlp_ratio: MLP hidden size ratio.
        proj_drop_rate: Dropout after the attention/MLP projections.
        attn_drop_rate: Attention dropout.
        norm_layer: Normalisation layer factory.
        initialize_weights: Apply the MAE initialisation.
        mask_token: Optional (1, 1, decoder_embed_dim) mask token to share.
        grid_size: Patch grid ``(h, w)``; square when None.
        qkv_bias: Bias in the attention projections.
        act_layer: Activation of the MLPs.
        target_dim: Prediction width T per patch; ``p * p * C`` (pixels) when None.
        encoder_layers: None (every block reads the encoder output) or one encoder
            hidden-state index per decoder block (-1 for the encoder output).
    """

    encoder_layers: tuple[int, ...] | None

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
        act_layer: Callable[..., nn.Module] = nn.GELU,
        target_dim: int | None = None,
        encoder_layers: Sequence[int] | None = None,
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
        )
        check_positive_int(decoder_depth, "decoder_depth")
        self.encoder_layers = _check_encoder_layers(encoder_layers, decoder_depth)
        # One norm per encoder layer read (CrossMAE normalises each feature map it uses).
        self.memory_norms = nn.ModuleDict(
            {
                str(layer): norm_layer(embed_dim)
                for layer in sorted(set(self.encoder_layers or ()) - {_OUTPUT})
            }
        )
        self.decoder_blocks = nn.ModuleList(
            CrossAttentionBlock(
                decoder_embed_dim,
                decoder_num_heads,
                mlp_ratio,
                qkv_bias=qkv_bias,
                proj_drop=proj_drop_rate,
                attn_drop=attn_drop_rate,
                norm_layer=norm_layer,
                act_layer=act_layer,
            )
            for _ in range(decoder_depth)
        )
        self._build_head(norm_layer, target_dim)
        if initialize_weights:
            self.init_weights()

    def _memories(
        self, x_encoded: Tensor, hidden_states: Sequence[Tensor] | None, keep_pos: Tensor
    ) -> list[Tensor]:
        """The (B, P + K_keep, D_dec) memory of every block, each encoder layer embedded once."""
        if self.encoder_layers is None:
            memory = self.embed(x_encoded) + keep_pos
            return [memory] * len(self.decoder_blocks)
        if hidden_states is None:
            raise ValueError(
                f"this decoder reads encoder layers {list(self.encoder_layers)}; pass "
                "hidden_states=... (the encoder's encode_with_states; MaskedAutoencoder does)"
            )
        if max(self.encoder_layers) >= len(hidden_states):
            raise ValueError(
                f"encoder_layers {list(self.encoder_layers)} index hidden states the encoder "
                f"does not have: it reports {len(hidden_states)} (embedding + blocks)"
            )
        by_layer: dict[int, Tensor] = {}
        for layer in sorted(set(self.encoder_layers)):
            if layer == _OUTPUT:
                by_layer[layer] = self.embed(x_encoded) + keep_pos
                continue
            state = hidden_states[layer]
            if state.shape != x_encoded.shape:
                raise ValueError(
                    f"hidden_states[{layer}] must have the shape of x_encoded "
                    f"{tuple(x_encoded.shape)}, got {tuple(state.shape)}"
                )
            by_layer[layer] = self.embed(self.memory_norms[str(layer)](state)) + keep_pos
        return [by_layer[layer] for layer in self.encoder_layers]

    def predict_at(
        self,
        x_encoded: Tensor,
        idx_keep: Tensor,
        idx_decode: Tensor,
        grid_size: tuple[int, int] | None = None,
        hidden_states: Sequence[Tensor] | None = None,
    ) -> Tensor:
        """Predicts the targets of the patches at ``idx_decode`` from the visible tokens.

        Args:
            x_encoded: (B, P + K_keep, D_enc) encoder output for the tokens at ``idx_keep``.
            idx_keep: (B, P + K_keep) kept positions over the full sequence.
            idx_decode: (B, K_dec) positions over the full sequence to predict (any subset,
                also visible ones).
            grid_size: Patch grid when it is not the native one (position table resized).
            hidden_states: The encoder hidden states (each (B, P + K_keep, D_enc)) when
                ``encoder_layers`` is set.

        Returns:
            (B, K_dec, T) predictions in ``idx_decode`` order.
        """
        table = self._table_at(x_encoded, idx_keep, idx_decode, grid_size)
        keep_pos = rows_at(table, idx_keep, x_encoded.dtype)
        memories = self._memories(x_encoded, hidden_states, keep_pos)
        decode_pos = rows_at(table, idx_decode, x_encoded.dtype)
        x = self.mask_token.to(decode_pos.dtype) + decode_pos
        for block, memory in zip(self.decoder_blocks, memories, strict=True):
            x = block(x, memory)
        return self.predict(self.decoder_norm(x))

    def predict_all(
        self,
        x_visible: Tensor,
        ids_restore: Tensor,
        grid_size: tuple[int, int] | None = None,
        hidden_states: Sequence[Tensor] | None = None,
    ) -> Tensor:
        """Predicts every patch, visible ones included (one query per patch).

        Args:
            x_visible: (B, P + L_keep, D_enc) encoder output: prefix tokens, then the kept
                patches in the order ``ids_restore`` expects (as from the core).
            ids_restore: (B, L) permutation that puts ``cat(kept, removed)`` in patch order.
            grid_size: Patch grid when it is not the native one.
            hidden_states: See :meth:`predict_at`.

        Returns:
            (B, L, T) predictions for all patches.
        """
        self._check_encoded(x_visible, "x_visible", "(B, P + L_keep, D_enc)")
        batch_size = x_visible.shape[0]
        grid_h, grid_w = self.grid_size if grid_size is None else to_2tuple(grid_size, "grid_size")
        num_patches = grid_h * grid_w
        check_index(ids_restore, "ids_restore", num_patches, batch_size)
        num_prefix = self.num_prefix_tokens
        num_keep = x_visible.shape[1] - num_prefix
        if ids_restore.shape[1] != num_patches or not 0 <= num_keep <= num_patches:
            raise ValueError(
                f"ids_restore must have shape (B, {num_patches}) and x_visible at most "
                f"{num_prefix} + {num_patches} tokens, got {tuple(ids_restore.shape)} and "
                f"{tuple(x_visible.shape)}"
            )
        kept = torch.argsort(ids_restore, dim=1)[:, :num_keep] + num_prefix
        prefix = torch.arange(num_prefix, device=kept.device).expand(batch_size, -1)
        idx_keep = torch.cat([prefix, kept], dim=1)
        every = torch.arange(num_prefix, num_prefix + num_patches, device=kept.device)
        return self.predict_at(
            x_visible, idx_keep, every.expand(batch_size, -1), grid_size, hidden_states
        )

    forward = predict_at  # calling the module is predict_at
