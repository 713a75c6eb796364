"""The seed MAE model: the official ``models_mae.py`` interface as a Lightning module.

``MAE`` keeps the method names of facebookresearch/mae (``patchify``, ``random_masking``,
``forward_encoder``, ``forward_decoder``, ``forward_loss``) and its attribute and state-dict names
(``patch_embed``, ``cls_token``, ``blocks``, ..., ``decoder_pred``), but owns no algorithm of its
own: its core is a :class:`~ssl_mae.MaskedAutoencoder` over a
:class:`~ssl_mae.modules.MaskedVisionTransformer` and an :class:`~ssl_mae.modules.MAEDecoder`,
and it trains with :class:`~ssl_mae.training.PretrainModule`. Official checkpoints load with
plain ``load_state_dict`` (strict or not), and ``state_dict()`` loads into the official
``MaskedAutoencoderViT`` with ``strict=True``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any, cast

import torch
from torch import Tensor, nn

from ssl_mae import convert, masking
from ssl_mae._validation import (
    check_bool,
    check_mask_ratio,
    check_positive_float,
    check_positive_int,
)
from ssl_mae.core import MaskedAutoencoder, encode_visible
from ssl_mae.loss import MAELoss
from ssl_mae.models.layout import Alias, CoreBlocks, install_layout
from ssl_mae.models.simple_mae import fresh_vit
from ssl_mae.modules import MAEDecoder, MaskedVisionTransformer
from ssl_mae.training.module import TRAINING_OPTIONS, PretrainModule

__all__ = ["MAE", "MAE_OPTIONS"]

#: ``MAE(**kwargs)``: the training options plus the two model-side options.
MAE_OPTIONS: Mapping[str, Any] = {"mask_ratio": 0.75, "layer_norm_eps": None, **TRAINING_OPTIONS}
_ENCODER = "model.encoder.vit."
_DECODER = "model.decoder."


def _layer_norm_eps(norm_layer: Callable[..., nn.Module]) -> float | None:
    """The eps of ``nn.LayerNorm`` or ``partial(nn.LayerNorm, eps=...)``; None for others."""
    if norm_layer is nn.LayerNorm:
        return 1e-5
    if (
        isinstance(norm_layer, partial)
        and norm_layer.func is nn.LayerNorm
        and not norm_layer.args
        and set(norm_layer.keywords) <= {"eps"}
    ):
        return float(norm_layer.keywords.get("eps", 1e-5))
    return None


def _official_key(key: str) -> str:
    """Internal key → official ``models_mae`` key."""
    for internal in (_ENCODER, _DECODER):
        if key.startswith(internal):
            return key[len(internal) :]
    return key


def _internal_key(key: str) -> str:
    """Official (or internal) key → internal key."""
    if key.startswith("model."):
        return key
    is_decoder = key.startswith("decoder_") or key == "mask_token"
    return (_DECODER if is_decoder else _ENCODER) + key


class MAE(CoreBlocks, PretrainModule):
    """Masked Autoencoder with a ViT encoder (He et al. 2021), the seed ``models.mae.model.MAE``.

    The core (``self.model``, a :class:`~ssl_mae.MaskedAutoencoder`) holds the encoder
    (``self.encoder``, a :class:`MaskedVisionTransformer` around a timm ``VisionTransformer``),
    the decoder (``self.decoder``) and the loss (``self.criterion``). The official attribute
    names (``patch_embed``, ``cls_token``, ``pos_embed``, ``blocks``, ``norm``,
    ``decoder_embed``, ``mask_token``, ``decoder_pos_embed``, ``decoder_blocks``,
    ``decoder_norm``, ``decoder_pred``) are the very modules and parameters of those blocks,
    and the state dict uses the official keys. Position embeddings are fixed 2-D sin-cos
    tables; every other parameter receives a gradient at every step (for mask ratios > 0), so
    DDP needs no ``find_unused_parameters=True``.

    Args:
        img_size: Input image size (square).
        patch_size: Patch size p; ``img_size`` must be a multiple of it.
        in_chans: Number of image channels C.
        embed_dim: Encoder width.
        depth: Number of encoder blocks.
        num_heads: Attention heads per encoder block.
        decoder_embed_dim: Decoder width.
        decoder_depth: Number of decoder blocks.
        decoder_num_heads: Attention heads per decoder block.
        mlp_ratio: MLP hidden size ratio of all blocks.
        norm_layer: Normalisation layer factory (the presets use ``LayerNorm(eps=1e-6)`` like the
            official code).
        norm_pix_loss: Predict per-patch normalised pixels (official ``norm_pix_loss``).
        **kwargs: Options stored as hyperparameters: ``mask_ratio`` (0.75) used by
            ``training_step``/``validation_step``; ``layer_norm_eps`` (None) builds
            ``norm_layer`` as ``LayerNorm(eps=...)``, which is how the norm layer is stored in
            checkpoints (custom norm layers must be passed again to ``load_from_checkpoint``);
            and the training options of :class:`~ssl_mae.training.PretrainModule` (``base_lr``,
            ``lr``, ``min_lr``, ``weight_decay``, ``betas``, ``warmup_epochs``,
            ``warmup_steps``, ``batch_size``, ``total_steps``, ``fused_adamw``).

    Raises:
        TypeError: For unknown keyword arguments.
    """

    model: MaskedAutoencoder

    def __init__(
        self,
        img_size: int = 224,
        patch_size: int = 16,
        in_chans: int = 3,
        embed_dim: int = 1024,
        depth: int = 24,
        num_heads: int = 16,
        decoder_embed_dim: int = 512,
        decoder_depth: int = 8,
        decoder_num_heads: int = 16,
        mlp_ratio: float = 4.0,
        norm_layer: Callable[..., nn.Module] = nn.LayerNorm,
        norm_pix_loss: bool = False,
        **kwargs: Any,
    ) -> None:
        unknown = sorted(set(kwargs) - set(MAE_OPTIONS))
        if unknown:
            raise TypeError(
                f"MAE got unknown keyword arguments {unknown}; allowed are {sorted(MAE_OPTIONS)}"
            )
        options = {**MAE_OPTIONS, **kwargs}
        mask_ratio = check_mask_ratio(options.pop("mask_ratio"))
        layer_norm_eps = options.pop("layer_norm_eps")
        for value, name in (
            (img_size, "img_size"),
            (patch_size, "patch_size"),
            (in_chans, "in_chans"),
            (embed_dim, "embed_dim"),
            (depth, "depth"),
            (num_heads, "num_heads"),
            (decoder_embed_dim, "decoder_embed_dim"),
            (decoder_depth, "decoder_depth"),
            (decoder_num_heads, "decoder_num_heads"),
        ):
            check_positive_int(value, name)
        check_positive_float(mlp_ratio, "mlp_ratio")
        check_bool(norm_pix_loss, "norm_pix_loss")
        if img_size % patch_size:
            raise ValueError(
                f"img_size must be a multiple of patch_size={patch_size}, got {img_size}"
            )
        if embed_dim % num_heads:
            raise ValueError(
                f"embed_dim ({embed_dim}) must be divisible by num_heads ({num_heads})"
            )
        if layer_norm_eps is not None:
            norm_layer = partial(
                nn.LayerNorm, eps=check_positive_float(layer_norm_eps, "layer_norm_eps")
            )
        if not callable(norm_layer):
            raise TypeError(f"norm_layer must be a callable returning a module, got {norm_layer!r}")

        encoder = cast(
            MaskedVisionTransformer,
            fresh_vit("timm", img_size, patch_size, in_chans, embed_dim, depth, num_heads,
                      mlp_ratio, norm_layer),
        )  # fmt: skip
        decoder = MAEDecoder(
            num_patches=encoder.num_patches,
            patch_size=patch_size,
            in_chans=in_chans,
            embed_dim=embed_dim,
            decoder_embed_dim=decoder_embed_dim,
            decoder_depth=decoder_depth,
            decoder_num_heads=decoder_num_heads,
            num_prefix_tokens=encoder.num_prefix_tokens,
            mlp_ratio=mlp_ratio,
            norm_layer=norm_layer,
        )
        core = MaskedAutoencoder(encoder, decoder, MAELoss(norm_pix=norm_pix_loss), mask_ratio)
        # Everything load_from_checkpoint needs, in plain types (no callables), so checkpoints
        # load with torch.load(weights_only=True).
        architecture = {
            "img_size": img_size,
            "patch_size": patch_size,
            "in_chans": in_chans,
            "embed_dim": embed_dim,
            "depth": depth,
            "num_heads": num_heads,
            "decoder_embed_dim": decoder_embed_dim,
            "decoder_depth": decoder_depth,
            "decoder_num_heads": decoder_num_heads,
            "mlp_ratio": mlp_ratio,
            "norm_pix_loss": norm_pix_loss,
            "layer_norm_eps": _layer_norm_eps(norm_layer),
        }
        super().__init__(core, hparams=architecture, **options)
        install_layout(self, _official_key, _internal_key)

    # --- the blocks, under their own and the official names ----------------------------------
    @property
    def encoder(self) -> MaskedVisionTransformer:
        """The masked ViT encoder."""
        return cast(MaskedVisionTransformer, self.model.encoder)

    @property
    def norm_pix_loss(self) -> bool:
        """Whether the targets are per-patch normalised pixels."""
        return self.criterion.norm_pix

    @property
    def img_size(self) -> int:
        """Input image size (square)."""
        return int(self.hparams["img_size"])

    @property
    def patch_size(self) -> int:
        """Patch size p."""
        return int(self.hparams["patch_size"])

    @property
    def in_chans(self) -> int:
        """Image channels C."""
        return int(self.hparams["in_chans"])

    # The official names of the blocks (models_mae.py): the very modules and parameters.
    patch_embed = Alias[nn.Module]("encoder.vit.patch_embed")
    cls_token = Alias[nn.Parameter]("encoder.vit.cls_token")
    pos_embed = Alias[nn.Parameter]("encoder.vit.pos_embed")  # fixed sin-cos
    blocks = Alias[nn.Sequential]("encoder.vit.blocks")
    norm = Alias[nn.Module]("encoder.vit.norm")
    decoder_embed = Alias[nn.Linear]("decoder.decoder_embed")
    mask_token = Alias[nn.Parameter]("decoder.mask_token")
    decoder_pos_embed = Alias[nn.Parameter]("decoder.decoder_pos_embed")  # fixed sin-cos
    decoder_blocks = Alias[nn.Sequential]("decoder.decoder_blocks")
    decoder_norm = Alias[nn.Module]("decoder.decoder_norm")
    decoder_pred = Alias[nn.Linear]("decoder.decoder_pred")

    # --- official interface ----------------------------------------------------------------------
    def initialize_weights(self) -> None:
        """Re-applies the MAE initialisation (official recipe): fixed sin-cos position
        embeddings, xavier-uniform patch projection, N(0, 0.02) class and mask tokens,
        xavier-uniform linear layers and unit LayerNorms."""
        self.encoder.init_weights(pos_embed_initialization="sincos")
        self.decoder.init_weights()

    def patchify(self, imgs: Tensor) -> Tensor:
        """Cuts images into patches.

        Args:
            imgs: (B, C, H, W) images.

        Returns:
            (B, L, p * p * C) patches, row-major, pixels in (p, q, c) order.
        """
        self.encoder.check_images(imgs, name="imgs")
        return masking.patchify(imgs, self.patch_size)

    def unpatchify(self, x: Tensor) -> Tensor:
        """Puts patches back together.

        Args:
            x: (B, L, p * p * C) patches of a square patch grid.

        Returns:
            (B, C, H, W) images.
        """
        return masking.unpatchify(x, self.patch_size, channels=self.in_chans)

    #: Per-sample random masking by shuffling (official semantics): the package's function.
    random_masking = staticmethod(masking.random_masking)

    def forward_encoder(
        self,
        x: Tensor,
        mask_ratio: float,
        noise: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Masks patches at random and encodes the visible ones.

        Args:
            x: (B, C, H, W) images.
            mask_ratio: Fraction of patches removed, in [0, 1).
            noise: Optional (B, L) noise; the patches with the smallest noise stay visible.
            generator: Random generator used when ``noise`` is None.

        Returns:
            ``(latent, mask, ids_restore)``: (B, 1 + L_keep, D) encoded class token and visible
            patches (in ascending-noise order), (B, L) float mask with 1 for removed patches,
            (B, L) int64 permutation restoring the patch order.
        """
        visible = encode_visible(
            self.encoder, x, mask_ratio, masking=self.model.masking, noise=noise,
            generator=generator, input_name="x",
        )  # fmt: skip
        return visible.latent, visible.mask, visible.ids_restore

    def forward_decoder(self, x: Tensor, ids_restore: Tensor) -> Tensor:
        """Decodes the latent with mask tokens in the removed places.

        Args:
            x: (B, 1 + L_keep, D) encoder output from :meth:`forward_encoder`.
            ids_restore: (B, L) permutation from :meth:`forward_encoder`.

        Returns:
            (B, L, p * p * C) predicted pixels of every patch.
        """
        return self.decoder.predict_all(x, ids_restore)

    def forward_loss(self, imgs: Tensor, pred: Tensor, mask: Tensor) -> Tensor:
        """Mean squared error on the removed patches.

        Args:
            imgs: (B, C, H, W) images.
            pred: (B, L, p * p * C) predictions.
            mask: (B, L) mask, 1 for removed patches.

        Returns:
            Scalar loss (float32).
        """
        return cast(Tensor, self.criterion(pred, self.patchify(imgs), mask))

    def forward(
        self,
        imgs: Tensor,
        mask_ratio: float = 0.75,
        noise: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Masks, encodes, decodes and scores a batch (one call of the core).

        Args:
            imgs: (B, C, H, W) images of the model's size and channel count.
            mask_ratio: Fraction of patches removed, in [0, 1).
            noise: Optional (B, L) noise making the mask reproducible.
            generator: Random generator used when ``noise`` is None.

        Returns:
            ``(loss, pred, mask)``: scalar loss, (B, L, p * p * C) predictions, (B, L) mask.
        """
        out = self.model(imgs, mask_ratio, noise, generator, input_name="imgs")
        return out.loss, out.pred, out.mask

    # --- official checkpoints --------------------------------------------------------------------
    def to_official_state_dict(self) -> dict[str, Tensor]:
        """The model's weights under the official facebookresearch/mae key names (the same as
        ``state_dict()``), as a plain dict of detached tensors."""
        return convert.official_state_dict(self.encoder, self.decoder)

    def load_official(
        self,
        path_or_state_dict: str | os.PathLike[str] | Mapping[str, Any],
        strict: bool = True,
    ) -> list[str]:
        """Loads weights saved in the official facebookresearch/mae key layout.

        With the same weights and the same ``noise``, :meth:`forward` then returns the official
        model's loss. (``load_state_dict`` takes the same flat dicts; this also reads files and
        ``{"model": ...}`` containers and reports mismatches by name.)

        Args:
            path_or_state_dict: A ``.pth`` path (read with ``weights_only=True``), a checkpoint
                dict with a ``model`` entry (as the official code saves) or the state dict
                itself, with the keys listed in :meth:`to_official_state_dict`.
            strict: Require every weight of the model. With False, missing weights (e.g. the
                decoder of the encoder-only release checkpoints) keep their current values.

        Returns:
            The official-layout names of the weights the checkpoint lacked (empty when strict).

        Raises:
            ValueError: On a shape mismatch, or with ``strict`` on missing/unexpected keys; the
                message lists the keys.
        """
        return convert.load_official(self.encoder, self.decoder, path_or_state_dict, strict)

    @classmethod
    def from_official(
        cls,
        path_or_state_dict: str | os.PathLike[str] | Mapping[str, Any],
        num_heads: int | None = None,
        decoder_num_heads: int | None = None,
        **kwargs: Any,
    ) -> MAE:
        """Builds an MAE whose architecture is read from an official checkpoint and loads it.

        Head counts do not show in the weights, so they are never guessed: they come from the
        arguments, else from the checkpoint's hyper-parameters (``args.model`` of files saved by
        the official ``main_pretrain.py``, ``num_heads``/``decoder_num_heads`` of Lightning
        checkpoints of this class), else a ``ValueError`` asks for them. ``norm_pix_loss`` and
        ``mask_ratio`` are taken from those hyper-parameters too unless given. The norm layer
        is ``LayerNorm(eps=1e-6)`` as in the official models.

        Args:
            path_or_state_dict: As in :meth:`load_official`; it must hold the decoder.
            num_heads: Encoder attention heads.
            decoder_num_heads: Decoder attention heads.
            **kwargs: Further ``MAE`` arguments (``norm_pix_loss``, training options).

        Raises:
            ValueError: For a checkpoint without decoder, or heads that nothing gives.
        """
        checkpoint = convert.read_checkpoint(path_or_state_dict)
        arch = convert.infer_official_architecture(checkpoint.state_dict)
        if "decoder_embed_dim" not in arch:
            raise ValueError(
                "path_or_state_dict holds no decoder (no 'decoder_embed.weight'), so the MAE "
                "architecture cannot be read from it; build the model (e.g. "
                "mae_vit_base_patch16()) and call load_official(..., strict=False)"
            )
        num_heads, decoder_heads = convert.checkpoint_head_counts(
            checkpoint, arch, num_heads, decoder_num_heads
        )
        grid_h = arch["grid_size"][0]  # official models are square
        embed_dim = arch["embed_dim"]
        model = cls(
            img_size=grid_h * arch["patch_size"],
            patch_size=arch["patch_size"],
            in_chans=arch["in_chans"],
            embed_dim=embed_dim,
            depth=arch["depth"],
            num_heads=num_heads,
            decoder_embed_dim=arch["decoder_embed_dim"],
            decoder_depth=arch["decoder_depth"],
            decoder_num_heads=cast(int, decoder_heads),  # required: the decoder is there
            mlp_ratio=arch["mlp_hidden"] / embed_dim,
            **{"layer_norm_eps": 1e-6, **convert.checkpoint_loss_options(checkpoint), **kwargs},
        )
        model.load_official(checkpoint.state_dict)
        return model
