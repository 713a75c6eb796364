"""The seed MAE model: the official ``models_mae.py`` interface as a Lightning module.

``MAE`` keeps the method names of facebookresearch/mae (``patchify``, ``random_masking``,
``forward_encoder``, ``forward_decoder``, ``forward_loss``) but owns no algorithm of its own: each
method hands over to the shared blocks, so the data path reads

    random_token_mask ─ MaskedVisionTransformer.encode(idx_keep) ─ MAEDecoder.predict_all ─ MAELoss

Checkpoints in the official key layout load with :meth:`MAE.load_official` (or build the model
from one with :meth:`MAE.from_official`) and give the official loss for the same weights and
noise.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any, cast

import torch
from timm.models.vision_transformer import VisionTransformer
from torch import Tensor, nn

from ssl_mae import convert, masking
from ssl_mae._validation import check_positive_int
from ssl_mae.loss import MAELoss
from ssl_mae.models.recipe import (
    TRAINING_DEFAULTS,
    MAEOptimizerRecipe,
    check_training_options,
    images_from_batch,
)
from ssl_mae.modules import MAEDecoder, MaskedVisionTransformer, init_mae_weights
from ssl_mae.pos_embed import get_2d_sincos_pos_embed

__all__ = [
    "MAE",
    "MAE_PRESETS",
    "build_mae",
    "mae_vit_base_patch16",
    "mae_vit_huge_patch14",
    "mae_vit_large_patch16",
    "mae_vit_micro_patch4",
    "mae_vit_micro_patch7",
    "mae_vit_tiny_patch4",
]

# Attention heads of the official encoders by width (heads do not show in the weights).
_OFFICIAL_NUM_HEADS = {768: 12, 1024: 16, 1280: 16}


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


class MAE(MAEOptimizerRecipe):
    """Masked Autoencoder with a ViT encoder (He et al. 2021), the seed ``models.mae.model.MAE``.

    The encoder is a timm ``VisionTransformer`` wrapped in :class:`MaskedVisionTransformer`
    (``self.encoder``), the decoder a :class:`MAEDecoder` (``self.decoder``) and the loss a
    :class:`MAELoss` (``self.criterion``). Position embeddings are fixed 2-D sin-cos tables and
    frozen; every other parameter receives a gradient at every step (for mask ratios > 0), so DDP
    needs no ``find_unused_parameters=True``.

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
        **kwargs: Training options, stored as hyperparameters:
            ``mask_ratio`` (0.75) used by ``training_step``/``validation_step``;
            ``base_lr`` (1.5e-4), scaled by ``effective_batch_size / 256``;
            ``lr`` (None) an absolute peak lr that overrides the scaling;
            ``min_lr`` (0.0) lr at the end of the cosine decay;
            ``weight_decay`` (0.05); ``betas`` ((0.9, 0.95));
            ``warmup_epochs`` or ``warmup_steps`` (None: 10% of the run);
            ``batch_size`` (None) images per device per step, read from the trainer's
            dataloader when None; the effective batch is
            ``batch_size * world_size * accumulate_grad_batches``;
            ``total_steps`` (None) optimiser steps of the run, from
            ``trainer.estimated_stepping_batches`` when None;
            ``fused_adamw`` (None: fused on CUDA);
            ``layer_norm_eps`` (None) builds ``norm_layer`` as ``LayerNorm(eps=...)``, which is
            how the norm layer is stored in checkpoints (custom norm layers must be passed
            again to ``load_from_checkpoint``).

    Raises:
        TypeError: For unknown keyword arguments.
    """

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
        super().__init__()
        unknown = sorted(set(kwargs) - set(TRAINING_DEFAULTS))
        if unknown:
            raise TypeError(
                f"MAE got unknown keyword arguments {unknown}; allowed are "
                f"{sorted(TRAINING_DEFAULTS)}"
            )
        options = {**TRAINING_DEFAULTS, **kwargs}
        check_training_options(options)
        check_positive_int(img_size, "img_size")
        check_positive_int(patch_size, "patch_size")
        for value, name in (
            (in_chans, "in_chans"),
            (embed_dim, "embed_dim"),
            (depth, "depth"),
            (num_heads, "num_heads"),
            (decoder_embed_dim, "decoder_embed_dim"),
            (decoder_depth, "decoder_depth"),
            (decoder_num_heads, "decoder_num_heads"),
        ):
            check_positive_int(value, name)
        if isinstance(mlp_ratio, bool) or not isinstance(mlp_ratio, (int, float)):
            raise TypeError(f"mlp_ratio must be a positive number, got {mlp_ratio!r}")
        if not mlp_ratio > 0:
            raise ValueError(f"mlp_ratio must be > 0, got {mlp_ratio!r}")
        if img_size % patch_size:
            raise ValueError(
                f"img_size must be a multiple of patch_size={patch_size}, got {img_size}"
            )
        if embed_dim % num_heads:
            raise ValueError(
                f"embed_dim ({embed_dim}) must be divisible by num_heads ({num_heads})"
            )
        if options["layer_norm_eps"] is not None:
            norm_layer = partial(nn.LayerNorm, eps=float(options["layer_norm_eps"]))
        if not callable(norm_layer):
            raise TypeError(f"norm_layer must be a callable returning a module, got {norm_layer!r}")
        options["layer_norm_eps"] = _layer_norm_eps(norm_layer)
        options["betas"] = [float(b) for b in options["betas"]]
        # Everything load_from_checkpoint needs, in plain types (no callables), so checkpoints
        # load with torch.load(weights_only=True).
        self.save_hyperparameters(
            {
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
                **options,
            }
        )
        self.img_size = img_size
        self.patch_size = patch_size
        self.in_chans = in_chans
        self.norm_pix_loss = norm_pix_loss

        vit = VisionTransformer(
            img_size=img_size,
            patch_size=patch_size,
            in_chans=in_chans,
            num_classes=0,
            embed_dim=embed_dim,
            depth=depth,
            num_heads=num_heads,
            mlp_ratio=mlp_ratio,
            qkv_bias=True,
            norm_layer=norm_layer,
            weight_init="skip",  # initialize_weights below does the MAE initialisation
        )
        self.encoder = MaskedVisionTransformer(
            vit,
            weight_initialization="skip",
            pos_embed_initialization="sincos",
            use_mask_token=False,  # MAE drops tokens; a mask token here would get no gradient
        )
        self.decoder = MAEDecoder(
            num_patches=self.encoder.num_patches,
            patch_size=patch_size,
            in_chans=in_chans,
            embed_dim=embed_dim,
            decoder_embed_dim=decoder_embed_dim,
            decoder_depth=decoder_depth,
            decoder_num_heads=decoder_num_heads,
            num_prefix_tokens=self.encoder.num_prefix_tokens,
            mlp_ratio=mlp_ratio,
            norm_layer=norm_layer,
            initialize_weights=False,
        )
        self.criterion = MAELoss(norm_pix=norm_pix_loss)
        self.initialize_weights()

    # --- official interface ----------------------------------------------------------------------
    def initialize_weights(self) -> None:
        """MAE initialisation (official order): fixed sin-cos position embeddings, xavier-uniform
        patch projection, N(0, 0.02) class and mask tokens, xavier-uniform linear layers and unit
        LayerNorms."""
        vit = self.encoder.vit
        with torch.no_grad():
            grid = self.encoder.grid_size
            vit.pos_embed.copy_(get_2d_sincos_pos_embed(vit.pos_embed.shape[-1], grid, 1)[None])
            table = get_2d_sincos_pos_embed(self.decoder.decoder_pos_embed.shape[-1], grid, 1)
            self.decoder.decoder_pos_embed.copy_(table[None])
        proj_weight = vit.patch_embed.proj.weight.data
        # As the official code: treat the conv kernel as a linear layer.
        nn.init.xavier_uniform_(proj_weight.view(proj_weight.shape[0], -1))
        nn.init.normal_(vit.cls_token, std=0.02)
        nn.init.normal_(self.decoder.mask_token, std=0.02)
        self.apply(init_mae_weights)

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

    def random_masking(
        self,
        x: Tensor,
        mask_ratio: float,
        noise: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Per-sample random masking by shuffling (official semantics).

        Args:
            x: (B, L, D) patch tokens.
            mask_ratio: Fraction of tokens removed, in [0, 1).
            noise: Optional (B, L) noise; the tokens with the smallest noise are kept.
            generator: Random generator used when ``noise`` is None.

        Returns:
            ``(x_masked, mask, ids_restore)``: (B, L_keep, D) kept tokens, (B, L) mask with 1
            for removed tokens, (B, L) permutation restoring the original order.
        """
        return masking.random_masking(x, mask_ratio, noise=noise, generator=generator)

    def _check_native_size(self, imgs: Tensor) -> None:
        grid = self.encoder.check_images(imgs, name="imgs")
        if grid != self.encoder.grid_size:
            raise ValueError(
                f"imgs must be {self.img_size}x{self.img_size} (the model's img_size) for MAE "
                f"pre-training, got {imgs.shape[2]}x{imgs.shape[3]}"
            )

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
        self._check_native_size(x)
        num_prefix = self.encoder.num_prefix_tokens
        num_patches = self.encoder.num_patches
        if noise is None and generator is not None and generator.device.type != x.device.type:
            # A CPU generator for CUDA images (or the reverse): draw where the generator lives.
            noise = torch.rand(
                x.shape[0], num_patches, generator=generator, device=generator.device
            )
        if isinstance(noise, Tensor):
            noise = noise.to(x.device)
        idx_keep, idx_mask = masking.random_token_mask(
            (x.shape[0], num_prefix + num_patches),
            mask_ratio=mask_ratio,
            num_prefix_tokens=num_prefix,
            device=x.device,
            generator=generator,
            noise=noise,
        )
        latent = self.encoder.encode(x, idx_keep=idx_keep)
        keep_patches, mask_patches = idx_keep[:, num_prefix:] - num_prefix, idx_mask - num_prefix
        ids_restore = masking.restore_index(keep_patches, mask_patches)
        mask = torch.ones(x.shape[0], num_patches, device=x.device)
        mask.scatter_(1, keep_patches, 0.0)
        return latent, mask, ids_restore

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
        """Masks, encodes, decodes and scores a batch.

        Args:
            imgs: (B, C, H, W) images of the model's size and channel count.
            mask_ratio: Fraction of patches removed, in [0, 1).
            noise: Optional (B, L) noise making the mask reproducible.
            generator: Random generator used when ``noise`` is None.

        Returns:
            ``(loss, pred, mask)``: scalar loss, (B, L, p * p * C) predictions, (B, L) mask.
        """
        latent, mask, ids_restore = self.forward_encoder(imgs, mask_ratio, noise, generator)
        pred = self.forward_decoder(latent, ids_restore)
        loss = self.forward_loss(imgs, pred, mask)
        return loss, pred, mask

    # --- Lightning -------------------------------------------------------------------------------
    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        """One pre-training step; logs ``train_loss``.

        Args:
            batch: Images (B, C, H, W), ``(images, labels, ...)`` or ``([images], labels, ...)``.
            batch_idx: Index of the batch.
        """
        images = images_from_batch(batch)
        outputs: tuple[Tensor, Tensor, Tensor] = self(images, mask_ratio=self.hparams["mask_ratio"])
        loss = outputs[0]
        self.log("train_loss", loss, prog_bar=True, batch_size=images.shape[0])
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> Tensor:
        """Reconstruction loss on held-out images; logs ``val_loss`` (epoch mean).

        The masks are drawn from a generator seeded with ``batch_idx``, so the validation loss
        of different epochs is measured on the same masks and only the model changes.

        Args:
            batch: As in :meth:`training_step`.
            batch_idx: Index of the batch.
        """
        images = images_from_batch(batch)
        generator = torch.Generator(device=images.device).manual_seed(batch_idx)
        outputs: tuple[Tensor, Tensor, Tensor] = self(
            images, mask_ratio=self.hparams["mask_ratio"], generator=generator
        )
        loss = outputs[0]
        self.log("val_loss", loss, prog_bar=True, sync_dist=True, batch_size=images.shape[0])
        return loss

    # --- official checkpoints --------------------------------------------------------------------
    def to_official_state_dict(self) -> dict[str, Tensor]:
        """The model's weights under the official facebookresearch/mae key names (``cls_token``,
        ``pos_embed``, ``patch_embed.proj.*``, ``blocks.N.*``, ``norm.*``, ``decoder_embed.*``,
        ``mask_token``, ``decoder_pos_embed``, ``decoder_blocks.N.*``, ``decoder_norm.*``,
        ``decoder_pred.*``)."""
        return convert.official_state_dict(self.encoder, self.decoder)

    def load_official(
        self,
        path_or_state_dict: str | os.PathLike[str] | Mapping[str, Any],
        strict: bool = True,
    ) -> list[str]:
        """Loads weights saved in the official facebookresearch/mae key layout.

        With the same weights and the same ``noise``, :meth:`forward` then returns the official
        model's loss.

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
        decoder_num_heads: int = 16,
        **kwargs: Any,
    ) -> MAE:
        """Builds an MAE whose architecture is read from an official checkpoint and loads it.

        Head counts do not show in the weights: ``num_heads`` defaults to the official value
        for the width (768 → 12, 1024 and 1280 → 16, else width / 64) and ``decoder_num_heads``
        to 16. The norm layer is ``LayerNorm(eps=1e-6)`` as in the official models.

        Args:
            path_or_state_dict: As in :meth:`load_official`; it must hold the decoder.
            num_heads: Encoder attention heads.
            decoder_num_heads: Decoder attention heads.
            **kwargs: Further ``MAE`` arguments (``norm_pix_loss``, training options).
        """
        state = convert.unwrap_checkpoint(path_or_state_dict)
        arch = convert.infer_official_architecture(state)
        if "decoder_embed_dim" not in arch:
            raise ValueError(
                "path_or_state_dict holds no decoder (no 'decoder_embed.weight'), so the MAE "
                "architecture cannot be read from it; build the model (e.g. "
                "mae_vit_base_patch16()) and call load_official(..., strict=False)"
            )
        grid_h = arch["grid_size"][0]  # official models are square
        embed_dim = arch["embed_dim"]
        if num_heads is None:
            num_heads = _OFFICIAL_NUM_HEADS.get(embed_dim, max(embed_dim // 64, 1))
        model = cls(
            img_size=grid_h * arch["patch_size"],
            patch_size=arch["patch_size"],
            in_chans=arch["in_chans"],
            embed_dim=embed_dim,
            depth=arch["depth"],
            num_heads=num_heads,
            decoder_embed_dim=arch["decoder_embed_dim"],
            decoder_depth=arch["decoder_depth"],
            decoder_num_heads=decoder_num_heads,
            mlp_ratio=arch["mlp_hidden"] / embed_dim,
            **{"layer_norm_eps": 1e-6, **kwargs},
        )
        model.load_official(state)
        return model


# --- presets -------------------------------------------------------------------------------------
_OFFICIAL_NORM = {"layer_norm_eps": 1e-6}


def _preset(defaults: dict[str, Any], overrides: dict[str, Any]) -> MAE:
    if "norm_layer" in overrides:
        # An explicit norm layer replaces the preset's LayerNorm(eps=1e-6).
        defaults = {k: v for k, v in defaults.items() if k != "layer_norm_eps"}
    return MAE(**{**defaults, **overrides})


def mae_vit_micro_patch4(**overrides: Any) -> MAE:
    """A very small MAE for tests and smoke runs: 28×28 grayscale, patch 4, width 64, 4 blocks,
    decoder 64 wide and 2 deep (about 0.3 M parameters)."""
    defaults = dict(
        img_size=28, patch_size=4, in_chans=1, embed_dim=64, depth=4, num_heads=4,
        decoder_embed_dim=64, decoder_depth=2, decoder_num_heads=4, mlp_ratio=4.0,
        **_OFFICIAL_NORM,
    )  # fmt: skip
    return _preset(defaults, overrides)


def mae_vit_micro_patch7(**overrides: Any) -> MAE:
    """The CPU default for 28×28 grayscale (Fashion-MNIST): patch 7 (16 tokens), width 128,
    4 blocks, decoder 64 wide and 2 deep (about 0.9 M parameters); the configuration of
    ``benchmarks/fashion_mnist.py``."""
    defaults = dict(
        img_size=28, patch_size=7, in_chans=1, embed_dim=128, depth=4, num_heads=4,
        decoder_embed_dim=64, decoder_depth=2, decoder_num_heads=4, mlp_ratio=4.0,
        **_OFFICIAL_NORM,
    )  # fmt: skip
    return _preset(defaults, overrides)


def mae_vit_tiny_patch4(**overrides: Any) -> MAE:
    """ViT-Tiny MAE for small images (default 28×28 grayscale, e.g. Fashion-MNIST; pass
    ``img_size=32, in_chans=3`` for CIFAR): patch 4, width 192, 12 blocks, 3 heads, decoder
    128 wide and 4 deep (about 6 M parameters)."""
    defaults = dict(
        img_size=28, patch_size=4, in_chans=1, embed_dim=192, depth=12, num_heads=3,
        decoder_embed_dim=128, decoder_depth=4, decoder_num_heads=4, mlp_ratio=4.0,
        **_OFFICIAL_NORM,
    )  # fmt: skip
    return _preset(defaults, overrides)


def mae_vit_base_patch16(**overrides: Any) -> MAE:
    """Official ``mae_vit_base_patch16_dec512d8b``: ViT-B/16 encoder, 512-wide 8-deep decoder."""
    defaults = dict(
        patch_size=16, embed_dim=768, depth=12, num_heads=12,
        decoder_embed_dim=512, decoder_depth=8, decoder_num_heads=16, mlp_ratio=4.0,
        **_OFFICIAL_NORM,
    )  # fmt: skip
    return _preset(defaults, overrides)


def mae_vit_large_patch16(**overrides: Any) -> MAE:
    """Official ``mae_vit_large_patch16_dec512d8b``: ViT-L/16 encoder, 512-wide 8-deep decoder."""
    defaults = dict(
        patch_size=16, embed_dim=1024, depth=24, num_heads=16,
        decoder_embed_dim=512, decoder_depth=8, decoder_num_heads=16, mlp_ratio=4.0,
        **_OFFICIAL_NORM,
    )  # fmt: skip
    return _preset(defaults, overrides)


def mae_vit_huge_patch14(**overrides: Any) -> MAE:
    """Official ``mae_vit_huge_patch14_dec512d8b``: ViT-H/14 encoder, 512-wide 8-deep decoder."""
    defaults = dict(
        patch_size=14, embed_dim=1280, depth=32, num_heads=16,
        decoder_embed_dim=512, decoder_depth=8, decoder_num_heads=16, mlp_ratio=4.0,
        **_OFFICIAL_NORM,
    )  # fmt: skip
    return _preset(defaults, overrides)


MAE_PRESETS: dict[str, Callable[..., MAE]] = {
    "mae_vit_micro_patch4": mae_vit_micro_patch4,
    "mae_vit_micro_patch7": mae_vit_micro_patch7,
    "mae_vit_tiny_patch4": mae_vit_tiny_patch4,
    "mae_vit_base_patch16": mae_vit_base_patch16,
    "mae_vit_large_patch16": mae_vit_large_patch16,
    "mae_vit_huge_patch14": mae_vit_huge_patch14,
    # The official names of the same models.
    "mae_vit_base_patch16_dec512d8b": mae_vit_base_patch16,
    "mae_vit_large_patch16_dec512d8b": mae_vit_large_patch16,
    "mae_vit_huge_patch14_dec512d8b": mae_vit_huge_patch14,
}


def build_mae(preset: str, **overrides: Any) -> MAE:
    """Builds a preset MAE by name.

    Args:
        preset: One of ``MAE_PRESETS`` (e.g. ``"mae_vit_base_patch16"``).
        **overrides: ``MAE`` arguments replacing the preset's (``img_size``, ``in_chans``,
            ``norm_pix_loss``, training options, ...).
    """
    if preset not in MAE_PRESETS:
        raise ValueError(f"preset must be one of {sorted(MAE_PRESETS)}, got {preset!r}")
    return MAE_PRESETS[preset](**overrides)
