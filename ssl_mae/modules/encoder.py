"""Vision Transformer encoders that encode only the visible tokens — the "encode" step of MAE.

:class:`MaskedVisionTransformer` wraps a timm ``VisionTransformer`` (a drop-in for Lightly's
``MaskedVisionTransformerTIMM``: same arguments, same state-dict keys under ``vit.``), and
:class:`MaskedVisionTransformerTorchvision` gives a torchvision ``VisionTransformer`` the same
interface. Both share one implementation of the token pipeline in :class:`MaskedEncoderBase`:

    images ─ images_to_tokens ─ prepend_prefix_tokens ─ (mask_at_index) ─ add_pos_embed
        ─ get_at_index(idx_keep) ─ norm_pre ─ blocks ─ norm
"""

from __future__ import annotations

import math
from abc import abstractmethod
from typing import Any, NamedTuple, cast

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from ssl_mae import masking
from ssl_mae._validation import check_bool, check_images, check_index, check_tensor
from ssl_mae.modules.init import init_mae_weights, init_patch_projection, init_tokens
from ssl_mae.pos_embed import get_2d_sincos_pos_embed, interpolate_pos_embed

__all__ = [
    "EncoderStates",
    "MaskedEncoderBase",
    "MaskedVisionTransformer",
    "MaskedVisionTransformerTorchvision",
    "block_forward_with_attention",
    "wrap_vit",
]

_WEIGHT_INITIALIZATIONS = ("", "skip")
_POS_EMBED_INITIALIZATIONS = ("sincos", "learn", "skip")


class EncoderStates(NamedTuple):
    """What :meth:`MaskedEncoderBase.encode_with_states` returns.

    Attributes:
        last_hidden_state: (B, K, D) tokens after the final norm.
        hidden_states: The embedding output and every block's output (before the final norm),
            each (B, K, D), or None.
        attentions: Every block's attention probabilities (B, heads, K, K), or None.
    """

    last_hidden_state: Tensor
    hidden_states: tuple[Tensor, ...] | None
    attentions: tuple[Tensor, ...] | None


def block_forward_with_attention(block: nn.Module, x: Tensor) -> tuple[Tensor, Tensor]:
    """Runs a timm ``Block`` with explicit attention, also returning the attention probabilities.

    Computes the same function as ``block(x)`` (which uses fused scaled-dot-product attention),
    through the block's own modules and weights.

    Args:
        block: A timm ``vision_transformer.Block`` (without gated attention).
        x: (B, N, D) tokens.

    Returns:
        ``(out, probs)``: the block output (B, N, D) and the attention probabilities
        (B, heads, N, N) after attention dropout, as Hugging Face returns them.
    """
    blk = cast(Any, block)
    attn = blk.attn
    if getattr(attn, "gate", None) is not None:
        raise ValueError("block_forward_with_attention does not support gated attention blocks")
    y = blk.norm1(x)
    batch_size, length, _ = y.shape
    qkv = attn.qkv(y).reshape(batch_size, length, 3, attn.num_heads, attn.head_dim)
    query, key, value = qkv.permute(2, 0, 3, 1, 4).unbind(0)
    query, key = attn.q_norm(query), attn.k_norm(key)
    scores = (query * attn.scale) @ key.transpose(-2, -1)
    probs = scores.softmax(dim=-1, dtype=torch.float32).to(query.dtype)
    probs = attn.attn_drop(probs)
    out = (probs @ value).transpose(1, 2).reshape(batch_size, length, -1)
    out = attn.proj_drop(attn.proj(attn.norm(out)))
    x = x + blk.drop_path1(blk.ls1(out))
    x = x + blk.drop_path2(blk.ls2(blk.mlp(blk.norm2(x))))
    return x, probs


class MaskedEncoderBase(nn.Module):
    """The masked token pipeline shared by every ViT backend.

    Subclasses say how images become patch tokens and where the prefix tokens, the position
    embedding, the blocks and the norms live; this class does the masking, the gathering of
    visible tokens, the position-embedding resizing and the pooling once for all of them.

    Attributes:
        mask_token: (1, 1, D) learnable token used with ``idx_mask``/``mask``, or None.
        antialias: Antialias when resizing the position embedding for other image sizes.
    """

    mask_token: nn.Parameter | None
    antialias: bool
    grad_checkpointing: bool

    # --- backend interface -------------------------------------------------------------------
    @staticmethod
    @abstractmethod
    def _check_vit(vit: nn.Module) -> None:
        """Raises TypeError when ``vit`` is not a model of this backend."""

    @property
    @abstractmethod
    def embed_dim(self) -> int:
        """Token dimension D."""

    @property
    @abstractmethod
    def patch_size(self) -> int:
        """Side length p of a (square) patch in pixels."""

    @property
    @abstractmethod
    def in_chans(self) -> int:
        """Number of image channels the patch embedding expects."""

    @property
    @abstractmethod
    def grid_size(self) -> tuple[int, int]:
        """Patch grid ``(h, w)`` at the native image size."""

    @property
    @abstractmethod
    def num_prefix_tokens(self) -> int:
        """Number of class + register tokens in front of the patch tokens."""

    @abstractmethod
    def prefix_tokens(self) -> Tensor | None:
        """(1, num_prefix_tokens, D) prefix tokens, or None."""

    @abstractmethod
    def _patch_tokens(self, images: Tensor) -> Tensor:
        """(B, C, H, W) images → (B, H/p * W/p, D) patch tokens."""

    @abstractmethod
    def _pos_embed_param(self) -> tuple[Tensor | None, bool]:
        """The position embedding and whether it covers the prefix tokens too."""

    @abstractmethod
    def _blocks(self) -> nn.Sequential | nn.ModuleList:
        """The transformer blocks."""

    def _norm_pre(self, tokens: Tensor) -> Tensor:
        return tokens

    def _pos_drop(self, tokens: Tensor) -> Tensor:
        return tokens

    @abstractmethod
    def _norm(self, tokens: Tensor) -> Tensor:
        """Final norm of the encoder."""

    def _global_pool(self) -> str:
        return "token" if self.num_prefix_tokens else "avg"

    # --- shared implementation ---------------------------------------------------------------
    @property
    def num_patches(self) -> int:
        """Number of patch tokens at the native image size."""
        grid_h, grid_w = self.grid_size
        return grid_h * grid_w

    @property
    def sequence_length(self) -> int:
        """Length of the full token sequence (prefix + patches) at the native image size."""
        return self.num_patches + self.num_prefix_tokens

    def __init__(
        self,
        vit: nn.Module,
        mask_token: nn.Parameter | None = None,
        weight_initialization: str = "",
        antialias: bool = True,
        pos_embed_initialization: str = "sincos",
        use_mask_token: bool = True,
    ) -> None:
        """The constructor of every backend (arguments documented on each): checks ``vit``
        (:meth:`_check_vit`) and the options, creates the mask token, initialises."""
        super().__init__()
        self._check_vit(vit)
        _check_choice(weight_initialization, "weight_initialization", _WEIGHT_INITIALIZATIONS)
        _check_choice(
            pos_embed_initialization, "pos_embed_initialization", _POS_EMBED_INITIALIZATIONS
        )
        check_bool(antialias, "antialias")
        check_bool(use_mask_token, "use_mask_token")
        self.vit = vit
        has_pos_embed = self._pos_embed_param()[0] is not None
        if pos_embed_initialization == "sincos" and has_pos_embed and self.embed_dim % 4:
            raise ValueError(
                f"pos_embed_initialization='sincos' needs an embed_dim that is a multiple of 4 "
                f"(2-D sin-cos table), but vit has embed_dim={self.embed_dim}; use 'learn' or "
                "'skip', or another width"
            )
        if mask_token is not None:
            check_tensor(mask_token, "mask_token", ndim=3, shape_doc="(1, 1, embed_dim)")
            if tuple(mask_token.shape) != (1, 1, self.embed_dim):
                raise ValueError(
                    f"mask_token must have shape (1, 1, embed_dim) = (1, 1, {self.embed_dim}), "
                    f"got {tuple(mask_token.shape)}"
                )
            self.mask_token = mask_token
        elif use_mask_token:
            self.mask_token = nn.Parameter(torch.zeros(1, 1, self.embed_dim))
        else:
            self.mask_token = None
        self.antialias = antialias
        self.grad_checkpointing = False
        if weight_initialization != "skip":
            self._initialize_weights()
        self._initialize_pos_embed(pos_embed_initialization)

    def init_weights(self, pos_embed_initialization: str = "sincos") -> None:
        """(Re-)applies the MAE initialisation and fills the position embedding.

        Args:
            pos_embed_initialization: ``"sincos"``, ``"learn"`` or ``"skip"`` (see the class).
        """
        _check_choice(
            pos_embed_initialization, "pos_embed_initialization", _POS_EMBED_INITIALIZATIONS
        )
        self._initialize_weights()
        self._initialize_pos_embed(pos_embed_initialization)

    def _initialize_weights(self) -> None:
        """MAE initialisation of the wrapped ViT (backend specific)."""
        raise NotImplementedError

    def _initialize_pos_embed(self, strategy: str) -> None:
        """Fills the position embedding: fixed sin-cos (frozen), learnable N(0, 0.02), or skip."""
        pos_embed, covers_prefix = self._pos_embed_param()
        if pos_embed is None or strategy == "skip":
            return
        if strategy == "learn":
            nn.init.normal_(pos_embed, std=0.02)
            pos_embed.requires_grad_(True)
            return
        num_prefix = self.num_prefix_tokens if covers_prefix else 0
        table = get_2d_sincos_pos_embed(self.embed_dim, self.grid_size, num_prefix)
        with torch.no_grad():
            pos_embed.copy_(table.unsqueeze(0))
        pos_embed.requires_grad_(False)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute block activations in the backward pass to save memory."""
        self.grad_checkpointing = enable

    def check_images(
        self, images: Tensor, name: str = "images", native_size: bool = False
    ) -> tuple[int, int]:
        """Validates an image batch and returns its patch grid ``(h, w)``.

        Args:
            images: (B, C, H, W) float images, B >= 1, in the model's dtype (any float dtype
                under autocast).
            name: The caller's name for the argument, used in error messages.
            native_size: Accept only the native image size.
        """
        return check_images(
            images,
            name,
            in_chans=self.in_chans,
            patch_size=self.patch_size,
            native_grid=self.grid_size if native_size else None,
            dtype=self._patch_weight_dtype(),
        )

    def _patch_weight_dtype(self) -> torch.dtype | None:
        """Dtype of the model's weights (None for a model without parameters)."""
        parameter = next(self.parameters(), None)
        return None if parameter is None else parameter.dtype

    def images_to_tokens(self, images: Tensor) -> Tensor:
        """Embeds images into patch tokens (no prefix tokens).

        Args:
            images: (B, C, H, W) images.

        Returns:
            (B, H/p * W/p, D) patch tokens.
        """
        self.check_images(images)
        return self._patch_tokens(images)

    def prepend_prefix_tokens(self, x: Tensor) -> Tensor:
        """Prepends the class and register tokens.

        Args:
            x: (B, L, D) patch tokens.

        Returns:
            (B, num_prefix_tokens + L, D) tokens.
        """
        prefix = self.prefix_tokens()
        if prefix is None:
            return x
        return masking.prepend_class_token(x, prefix)

    def pos_embed_for_grid(self, grid_size: tuple[int, int]) -> Tensor | None:
        """The position embedding for a patch grid, resized bicubically when it differs from
        the native grid. Returns (1, [P +] h * w, D) or None when the model has none."""
        pos_embed, covers_prefix = self._pos_embed_param()
        if pos_embed is None or tuple(grid_size) == self.grid_size:
            return pos_embed
        return interpolate_pos_embed(
            pos_embed,
            new_grid=grid_size,
            num_prefix_tokens=self.num_prefix_tokens if covers_prefix else 0,
            old_grid=self.grid_size,
            antialias=self.antialias,
        )

    def add_pos_embed(self, x: Tensor, grid_size: tuple[int, int] | None = None) -> Tensor:
        """Adds the position embedding to a full token sequence.

        Args:
            x: (B, P + h * w, D) tokens, prefix tokens first.
            grid_size: Patch grid ``(h, w)``. When None it is read off ``x``: the native grid
                when ``x`` holds as many patches, else the square grid of its patch count (as
                Lightly does for ``dynamic_img_size`` ViTs); the table is resized to it.

        Returns:
            (B, P + h * w, D) tokens.
        """
        grid = self._grid_of_tokens(x) if grid_size is None else grid_size
        pos_embed = self.pos_embed_for_grid(grid)
        if pos_embed is not None:
            _, covers_prefix = self._pos_embed_param()
            if covers_prefix:
                x = x + pos_embed
            else:
                num_prefix = self.num_prefix_tokens
                x = torch.cat([x[:, :num_prefix], x[:, num_prefix:] + pos_embed], dim=1)
        return self._pos_drop(x)

    def _grid_of_tokens(self, x: Tensor) -> tuple[int, int]:
        """The patch grid of a full token sequence (B, P + L, D), for ``add_pos_embed``."""
        check_tensor(x, "x", ndim=3, shape_doc="(B, P + L, D)")
        num_patches = x.shape[1] - self.num_prefix_tokens
        if num_patches == self.num_patches:
            return self.grid_size
        side = math.isqrt(max(num_patches, 0))
        if num_patches < 1 or side * side != num_patches:
            raise ValueError(
                f"x holds {num_patches} patch tokens after the {self.num_prefix_tokens} prefix "
                f"token(s): neither the native {self.grid_size[0]}x{self.grid_size[1]} grid nor a "
                "square one; pass grid_size=(h, w)"
            )
        return side, side

    def preprocess(
        self,
        images: Tensor,
        idx_mask: Tensor | None = None,
        idx_keep: Tensor | None = None,
        mask: Tensor | None = None,
    ) -> Tensor:
        """Turns images into the (optionally masked) token sequence fed to the blocks.

        Args:
            images: (B, C, H, W) images.
            idx_mask: (B, K_mask) positions (over the full sequence) replaced by the mask token.
            idx_keep: (B, K_keep) positions (over the full sequence) to keep; only those are
                returned, after masking and position embedding.
            mask: (B, L) boolean mask over the full sequence, True = replace by the mask token.

        Returns:
            (B, K_keep or P + L, D) tokens.
        """
        if idx_mask is not None and mask is not None:
            # Lightly's exact text: callers match on it.
            raise ValueError("idx_mask and mask cannot both be set at the same time.")
        grid = self.check_images(images)
        tokens = self._patch_tokens(images)
        tokens = self.prepend_prefix_tokens(tokens)
        batch_size, length = tokens.shape[:2]
        if idx_mask is not None or mask is not None:
            if self.mask_token is None:
                raise ValueError(
                    "idx_mask/mask need a mask token, but this encoder was built with "
                    "use_mask_token=False"
                )
            if idx_mask is not None:
                check_index(idx_mask, "idx_mask", length, batch_size)
                tokens = masking.mask_at_index(tokens, idx_mask, self.mask_token)
            elif mask is not None:
                check_tensor(mask, "mask", ndim=2, shape_doc="(B, L)")
                if tuple(mask.shape) != (batch_size, length):
                    raise ValueError(
                        f"mask must have shape (B, L) = ({batch_size}, {length}), "
                        f"got {tuple(mask.shape)}"
                    )
                token = self.mask_token.to(tokens.dtype)
                tokens = torch.where(mask.bool().unsqueeze(-1), token, tokens)
        tokens = self.add_pos_embed(tokens, grid)
        if idx_keep is not None:
            check_index(idx_keep, "idx_keep", length, batch_size)
            tokens = torch.gather(tokens, 1, idx_keep.unsqueeze(-1).expand(-1, -1, tokens.shape[2]))
        return tokens

    def _block_with_attention(self, block: nn.Module, tokens: Tensor) -> tuple[Tensor, Tensor]:
        """Runs one block and also returns its attention probabilities (B, heads, N, N)."""
        return block_forward_with_attention(block, tokens)

    def _run_blocks(
        self, tokens: Tensor, keep_intermediates: bool, keep_attentions: bool = False
    ) -> tuple[Tensor, list[Tensor], list[Tensor]]:
        intermediates: list[Tensor] = []
        attentions: list[Tensor] = []
        for block in self._blocks():
            if keep_attentions:
                tokens, probs = self._block_with_attention(block, tokens)
                attentions.append(probs)
            elif self.grad_checkpointing and torch.is_grad_enabled():
                tokens = cast(Tensor, checkpoint(block, tokens, use_reentrant=False))
            else:
                tokens = block(tokens)
            if keep_intermediates:
                intermediates.append(tokens)
        return tokens, intermediates, attentions

    def encode_with_states(
        self,
        images: Tensor,
        idx_keep: Tensor | None = None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
    ) -> EncoderStates:
        """Encodes like :meth:`encode` and also keeps what Hugging Face models report.

        Args:
            images: (B, C, H, W) images.
            idx_keep: (B, K_keep) positions to keep, see :meth:`encode`.
            output_hidden_states: Keep the embedding output and every block's output.
            output_attentions: Keep every block's attention probabilities (computed explicitly,
                not through the fused kernel).

        Returns:
            :class:`EncoderStates`.
        """
        tokens = self._norm_pre(self.preprocess(images, idx_keep=idx_keep))
        final, intermediates, attentions = self._run_blocks(
            tokens, keep_intermediates=output_hidden_states, keep_attentions=output_attentions
        )
        return EncoderStates(
            last_hidden_state=self._norm(final),
            hidden_states=(tokens, *intermediates) if output_hidden_states else None,
            attentions=tuple(attentions) if output_attentions else None,
        )

    def encode(
        self,
        images: Tensor,
        idx_mask: Tensor | None = None,
        idx_keep: Tensor | None = None,
        mask: Tensor | None = None,
    ) -> Tensor:
        """Encodes images, optionally only the visible tokens.

        Args:
            images: (B, C, H, W) images.
            idx_mask: (B, K_mask) positions replaced by the mask token (see :meth:`preprocess`).
            idx_keep: (B, K_keep) positions to keep; the blocks only see those tokens.
            mask: (B, L) boolean mask, alternative to ``idx_mask``.

        Returns:
            (B, K_keep or P + L, D) encoded tokens after the final norm.
        """
        tokens = self.preprocess(images, idx_mask=idx_mask, idx_keep=idx_keep, mask=mask)
        tokens = self._norm_pre(tokens)
        tokens, _, _ = self._run_blocks(tokens, keep_intermediates=False)
        return self._norm(tokens)

    def forward_intermediates(
        self,
        images: Tensor,
        idx_mask: Tensor | None = None,
        idx_keep: Tensor | None = None,
        norm: bool = False,
        mask: Tensor | None = None,
    ) -> tuple[Tensor, list[Tensor]]:
        """Encodes images and also returns the output of every block.

        Args:
            images: (B, C, H, W) images.
            idx_mask: See :meth:`encode`.
            idx_keep: See :meth:`encode`.
            norm: Apply the final norm to each intermediate output.
            mask: See :meth:`encode`.

        Returns:
            ``(tokens, intermediates)``: the normed final tokens (B, K, D) and a list with one
            (B, K, D) tensor per block.
        """
        tokens = self.preprocess(images, idx_mask=idx_mask, idx_keep=idx_keep, mask=mask)
        tokens = self._norm_pre(tokens)
        tokens, intermediates, _ = self._run_blocks(tokens, keep_intermediates=True)
        if norm:
            intermediates = [self._norm(t) for t in intermediates]
        return self._norm(tokens), intermediates

    def pool(self, tokens: Tensor) -> Tensor:
        """Pools encoded tokens (B, K, D) into one (B, D) feature per image: the class token
        for token pooling, the mean of the patch tokens for average pooling."""
        global_pool = self._global_pool()
        if global_pool == "avg":
            return tokens[:, self.num_prefix_tokens :].mean(dim=1)
        if global_pool:
            return tokens[:, 0]
        return tokens

    def forward(
        self,
        images: Tensor,
        idx_mask: Tensor | None = None,
        idx_keep: Tensor | None = None,
        mask: Tensor | None = None,
    ) -> Tensor:
        """Encodes and pools images into one feature vector each.

        Args:
            images: (B, C, H, W) images.
            idx_mask: See :meth:`encode`.
            idx_keep: See :meth:`encode`.
            mask: See :meth:`encode`.

        Returns:
            (B, D) pooled features (class token, or mean of patch tokens, as the ViT's
            ``global_pool`` says; the unpooled tokens when it is empty).
        """
        return self.pool(self.encode(images, idx_mask=idx_mask, idx_keep=idx_keep, mask=mask))


def _check_choice(value: str, name: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {list(allowed)}, got {value!r}")


def _is_torchvision_vit(model: nn.Module) -> bool:
    return (
        hasattr(model, "conv_proj") and hasattr(model, "encoder") and hasattr(model, "class_token")
    )


class MaskedVisionTransformer(MaskedEncoderBase):
    """Masked encoder over a timm ``VisionTransformer``.

    A drop-in for Lightly's ``MaskedVisionTransformerTIMM``: same arguments in the same positional
    order, same state-dict keys (``vit.*`` and ``mask_token``). Supports class token on/off,
    register tokens, ``in_chans`` other than 3, non-square images and other image sizes (the
    position embedding is resized bicubically).

    Args:
        vit: The timm ``VisionTransformer`` to wrap; its parameters are used as they are.
        mask_token: (1, 1, D) mask token to use; a zero-initialised one is created when None.
        weight_initialization: ``""`` applies the MAE initialisation (xavier-uniform linear and
            patch projection, N(0, 0.02) class/register tokens), ``"skip"`` keeps the weights.
        antialias: Antialias when resizing the position embedding.
        pos_embed_initialization: ``"sincos"`` fills the position embedding with the fixed 2-D
            sin-cos embedding and freezes it, ``"learn"`` re-initialises it as a learnable
            N(0, 0.02) parameter, ``"skip"`` leaves it unchanged (e.g. for pretrained weights).
        use_mask_token: Create a mask token. MAE only drops tokens (``idx_keep``), so models set
            this to False to avoid a parameter that never receives a gradient (which would force
            DDP's ``find_unused_parameters=True``).
    """

    vit: Any  # timm VisionTransformer; typed loosely because its attributes vary by version

    @staticmethod
    def _check_vit(vit: nn.Module) -> None:
        if _is_torchvision_vit(vit):
            raise TypeError(
                "vit is a torchvision VisionTransformer; wrap it with "
                "MaskedVisionTransformerTorchvision (or ssl_mae.modules.wrap_vit)"
            )
        for attribute in ("patch_embed", "blocks", "norm", "embed_dim", "num_prefix_tokens"):
            if not hasattr(vit, attribute):
                raise TypeError(
                    f"vit must be a timm VisionTransformer (missing attribute {attribute!r}), "
                    f"got {type(vit).__name__}"
                )
        patch = cast(Any, vit).patch_embed.patch_size
        patch_pair = (patch, patch) if isinstance(patch, int) else tuple(patch)
        if patch_pair[0] != patch_pair[1]:
            raise ValueError(f"vit patch_size must be square, got {patch_pair}")

    @classmethod
    def from_timm(
        cls, name_or_kwargs: str | dict[str, Any] = "vit_tiny_patch16_224", **kwargs: Any
    ) -> MaskedVisionTransformer:
        """Builds the wrapped timm ViT from a model name or ``VisionTransformer`` kwargs.

        Args:
            name_or_kwargs: A timm model name (created with ``pretrained=False`` and no
                classifier head) or a dict of ``timm.models.VisionTransformer`` arguments.
            **kwargs: Passed to this class (e.g. ``pos_embed_initialization``).
        """
        from timm.models.vision_transformer import VisionTransformer

        if isinstance(name_or_kwargs, str):
            import timm

            try:
                vit = timm.create_model(name_or_kwargs, pretrained=False, num_classes=0)
            except RuntimeError as error:
                raise ValueError(
                    f"name_or_kwargs {name_or_kwargs!r} is not a timm model name ({error})"
                ) from None
            if not isinstance(vit, VisionTransformer):
                raise TypeError(
                    f"name_or_kwargs {name_or_kwargs!r} builds a {type(vit).__name__}, "
                    "not a timm VisionTransformer"
                )
        elif isinstance(name_or_kwargs, dict):
            try:
                vit = VisionTransformer(**{"num_classes": 0, **name_or_kwargs})
            except (AssertionError, TypeError, ValueError, RuntimeError) as error:
                # timm asserts (embed_dim % num_heads) or fails deep in torch; name the input.
                kind = TypeError if isinstance(error, TypeError) else ValueError
                raise kind(
                    f"name_or_kwargs {name_or_kwargs!r} are not valid timm VisionTransformer "
                    f"arguments: {error or type(error).__name__}"
                ) from None
        else:
            raise TypeError(
                f"name_or_kwargs must be a timm model name or a dict of VisionTransformer "
                f"arguments, got {type(name_or_kwargs).__name__}"
            )
        return cls(vit, **kwargs)

    @property
    def embed_dim(self) -> int:
        return int(self.vit.embed_dim)

    @property
    def patch_size(self) -> int:
        patch = self.vit.patch_embed.patch_size
        return int(patch if isinstance(patch, int) else patch[0])

    @property
    def in_chans(self) -> int:
        return int(self.vit.patch_embed.proj.in_channels)

    @property
    def grid_size(self) -> tuple[int, int]:
        grid = self.vit.patch_embed.grid_size
        return int(grid[0]), int(grid[1])

    @property
    def num_prefix_tokens(self) -> int:
        return int(self.vit.num_prefix_tokens)

    def prefix_tokens(self) -> Tensor | None:
        tokens = [t for t in (self.vit.cls_token, self.vit.reg_token) if t is not None]
        return torch.cat(tokens, dim=1) if tokens else None

    def _patch_tokens(self, images: Tensor) -> Tensor:
        patch_embed = self.vit.patch_embed
        proj = getattr(patch_embed, "proj", None)
        if not isinstance(proj, nn.Conv2d):
            return cast(Tensor, patch_embed(images))
        # Same computation as timm's PatchEmbed, without its fixed-image-size assertion, so
        # other image sizes work through position-embedding interpolation.
        tokens = proj(images).flatten(2).transpose(1, 2)
        return cast(Tensor, patch_embed.norm(tokens))

    def _pos_embed_param(self) -> tuple[Tensor | None, bool]:
        return self.vit.pos_embed, not self.vit.no_embed_class

    def _blocks(self) -> nn.Sequential | nn.ModuleList:
        return cast(nn.Sequential, self.vit.blocks)

    def _norm_pre(self, tokens: Tensor) -> Tensor:
        return cast(Tensor, self.vit.norm_pre(tokens))

    def _pos_drop(self, tokens: Tensor) -> Tensor:
        return cast(Tensor, self.vit.pos_drop(tokens))

    def _norm(self, tokens: Tensor) -> Tensor:
        return cast(Tensor, self.vit.norm(tokens))

    def _global_pool(self) -> str:
        return str(getattr(self.vit, "global_pool", "token"))

    def pool(self, tokens: Tensor) -> Tensor:
        attn_pool = getattr(self.vit, "attn_pool", None)
        if attn_pool is not None:
            return cast(Tensor, attn_pool(tokens))
        return super().pool(tokens)

    def _initialize_weights(self) -> None:
        init_patch_projection(self.vit.patch_embed.proj.weight)
        init_tokens(self.vit.cls_token, self.vit.reg_token)
        self.apply(init_mae_weights)


class MaskedVisionTransformerTorchvision(MaskedEncoderBase):
    """Masked encoder over a torchvision ``VisionTransformer`` (``vit_b_16`` and friends).

    Same interface as :class:`MaskedVisionTransformer`; the torchvision model keeps its own
    parameter names under ``vit.`` (``vit.conv_proj``, ``vit.class_token``,
    ``vit.encoder.pos_embedding``, ``vit.encoder.layers``, ``vit.encoder.ln``).

    Args:
        vit: The torchvision ``VisionTransformer``.
        mask_token: Optional (1, 1, D) mask token.
        weight_initialization: ``""`` (MAE initialisation) or ``"skip"``.
        antialias: Antialias when resizing the position embedding.
        pos_embed_initialization: ``"sincos"``, ``"learn"`` or ``"skip"``.
        use_mask_token: Create a mask token (see :class:`MaskedVisionTransformer`).
    """

    vit: Any  # torchvision VisionTransformer

    @staticmethod
    def _check_vit(vit: nn.Module) -> None:
        if not _is_torchvision_vit(vit):
            raise TypeError(
                f"vit must be a torchvision VisionTransformer, got {type(vit).__name__}"
            )

    def _initialize_weights(self) -> None:
        init_patch_projection(self.vit.conv_proj.weight)
        init_tokens(self.vit.class_token)
        self.vit.encoder.layers.apply(init_mae_weights)
        self.vit.encoder.ln.apply(init_mae_weights)

    @property
    def embed_dim(self) -> int:
        return int(self.vit.hidden_dim)

    @property
    def patch_size(self) -> int:
        return int(self.vit.patch_size)

    @property
    def in_chans(self) -> int:
        return int(self.vit.conv_proj.in_channels)

    @property
    def grid_size(self) -> tuple[int, int]:
        side = int(self.vit.image_size) // self.patch_size
        return side, side

    @property
    def num_prefix_tokens(self) -> int:
        return 1

    def prefix_tokens(self) -> Tensor | None:
        return cast(Tensor, self.vit.class_token)

    def _patch_tokens(self, images: Tensor) -> Tensor:
        return cast(Tensor, self.vit.conv_proj(images).flatten(2).transpose(1, 2))

    def _pos_embed_param(self) -> tuple[Tensor | None, bool]:
        return cast(Tensor, self.vit.encoder.pos_embedding), True

    def _pos_drop(self, tokens: Tensor) -> Tensor:
        return cast(Tensor, self.vit.encoder.dropout(tokens))

    def _blocks(self) -> nn.Sequential | nn.ModuleList:
        return cast(nn.Sequential, self.vit.encoder.layers)

    def _norm(self, tokens: Tensor) -> Tensor:
        return cast(Tensor, self.vit.encoder.ln(tokens))

    def _global_pool(self) -> str:
        return "token"

    def _block_with_attention(self, block: nn.Module, tokens: Tensor) -> tuple[Tensor, Tensor]:
        raise ValueError(
            "output_attentions needs a timm VisionTransformer encoder; torchvision's encoder "
            "blocks do not expose their attention probabilities"
        )


def wrap_vit(vit: nn.Module, **kwargs: Any) -> MaskedEncoderBase:
    """Wraps a timm or torchvision ViT into the matching masked encoder.

    An already wrapped encoder is returned as it is.

    Args:
        vit: timm ``VisionTransformer``, torchvision ``VisionTransformer`` or a
            :class:`MaskedEncoderBase`.
        **kwargs: Passed to the wrapper (e.g. ``weight_initialization="skip"``).
    """
    if isinstance(vit, MaskedEncoderBase):
        return vit
    if _is_torchvision_vit(vit):
        return MaskedVisionTransformerTorchvision(vit, **kwargs)
    return MaskedVisionTransformer(vit, **kwargs)
