"""The one masked-autoencoder step: mask, encode the visible tokens, decode, score.

Every model of the package (the seed ``MAE``, the Hugging Face ``ViTMAEForPreTraining``, the
HiViT pretrainer, ``SimpleMAE`` and the variants) runs its forward pass through
:class:`MaskedAutoencoder`; none keeps a copy of this code::

    images (B, C, H, W)
      ├─ masking(B, grid, P, ratio)            → idx_keep (B, P + K_keep), idx_mask (B, K_mask)
      ├─ encoder.encode(images, idx_keep=...)  → latent (B, P + K_keep, D): visible tokens only
      ├─ decoder.predict_all(latent, ids_restore)           → pred (B, L, T) for every patch
      │    or decoder.predict_at(latent, idx_keep, idx_decode) for a share of the masked ones
      └─ loss(pred, target(images), mask)      → scalar, on the masked (decoded) patches only

Indices follow Lightly's convention (positions over the full token sequence, P prefix tokens
first); :func:`~ssl_mae.masking.official_masks` turns them once into the official ``mask``
(1 = removed) and ``ids_restore``. Masking, target and the share of decoded tokens are
arguments, so variants (block masking, HOG targets, partial decoding) are additions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from ssl_mae._validation import (
    check_bool,
    check_generator,
    check_images,
    check_mask_ratio,
    check_tensor,
)
from ssl_mae.loss import MAELoss, PixelTarget
from ssl_mae.masking import (
    TokenMasking,
    num_patches_to_decode,
    official_masks,
    random_grid_mask,
)

__all__ = [
    "MAEOutput",
    "MaskedAutoencoder",
    "MaskedDecoder",
    "MaskedEncoder",
    "VisibleEncoding",
    "as_masked_autoencoder",
    "encode_visible",
]


@runtime_checkable
class MaskedEncoder(Protocol):
    """What the core needs of an encoder.

    Met by :class:`~ssl_mae.modules.MaskedVisionTransformer` (timm),
    :class:`~ssl_mae.modules.MaskedVisionTransformerTorchvision`, :class:`~ssl_mae.hivit.MAEHiViT`
    and every ViT wrapped by :func:`~ssl_mae.modules.wrap_vit`. ``encode`` takes the images and
    the (B, P + K) positions to keep over the full sequence, and returns their encoded tokens
    (B, P + K, D) in ``idx_keep`` order; with ``idx_keep=None`` it encodes every token.
    Encoders that also offer ``encode_with_states`` (the ViT wrappers) can report hidden states
    and attention probabilities.
    """

    @property
    def num_prefix_tokens(self) -> int: ...

    @property
    def patch_size(self) -> int: ...

    @property
    def grid_size(self) -> tuple[int, int]: ...

    @property
    def in_chans(self) -> int: ...

    def encode(self, images: Tensor, *, idx_keep: Tensor | None = None) -> Tensor: ...


@runtime_checkable
class MaskedDecoder(Protocol):
    """What the core needs of a decoder (met by :class:`~ssl_mae.modules.MAEDecoder`).

    ``predict_all`` returns predictions (B, L, T) for every patch from the encoder output and
    the official ``ids_restore``; ``predict_at`` returns (B, K, T) predictions for the masked
    positions ``idx_decode`` only. ``grid_size`` is passed when the images are not of the
    native size.

    A decoder that reads intermediate encoder layers (CrossMAE's
    :class:`~ssl_mae.modules.CrossMAEDecoder`) says so with a non-empty ``encoder_layers``
    attribute; the core then asks the encoder for its hidden states and passes them to both
    methods as ``hidden_states=`` (the embedding output and every block's output).
    """

    def predict_all(
        self, x_visible: Tensor, ids_restore: Tensor, grid_size: tuple[int, int] | None = None
    ) -> Tensor: ...

    def predict_at(
        self,
        x_encoded: Tensor,
        idx_keep: Tensor,
        idx_decode: Tensor,
        grid_size: tuple[int, int] | None = None,
    ) -> Tensor: ...


@dataclass
class VisibleEncoding:
    """The first half of the step: which tokens were kept, and what the encoder made of them.

    Attributes:
        latent: (B, P + K_keep, D) encoded prefix and visible tokens, in ``idx_keep`` order.
        idx_keep: (B, P + K_keep) kept positions over the full sequence (prefix first).
        idx_mask: (B, K_mask) masked positions over the full sequence, in random order.
        mask: (B, L) float, 1 for removed patches (official semantics).
        ids_restore: (B, L) permutation that puts ``cat(kept, removed)`` back in patch order.
        grid_size: Patch grid ``(h, w)`` of the images.
        hidden_states: Encoder hidden states when asked for (see ``encode_with_states``).
        attentions: Encoder attention probabilities when asked for.
    """

    latent: Tensor
    idx_keep: Tensor
    idx_mask: Tensor
    mask: Tensor
    ids_restore: Tensor
    grid_size: tuple[int, int]
    hidden_states: tuple[Tensor, ...] | None = None
    attentions: tuple[Tensor, ...] | None = None


@dataclass(kw_only=True)
class MAEOutput(VisibleEncoding):
    """Everything one MAE step computed.

    Attributes (besides those of :class:`VisibleEncoding`):
        loss: Scalar reconstruction loss (float32) over the decoded masked patches.
        pred: (B, L, T) predictions; with partial decoding, rows of patches that were not
            decoded are zero.
        target: (B, L, T) targets of every patch (before ``norm_pix`` normalisation).
        idx_decode: (B, K_dec) positions whose predictions count in the loss (``idx_mask``
            itself unless only a share of the masked tokens was decoded).
    """

    loss: Tensor
    pred: Tensor
    target: Tensor
    idx_decode: Tensor


def _check_decode_ratio(value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"decode_ratio must be a float in (0, 1], got {value!r}")
    if not 0.0 < value <= 1.0:
        raise ValueError(f"decode_ratio must be in (0, 1], got {value!r}")
    return float(value)


def _weight_dtype(module: nn.Module) -> torch.dtype | None:
    parameter = next(module.parameters(), None)
    return None if parameter is None else parameter.dtype


def _reads_encoder_layers(decoder: nn.Module) -> bool:
    """Whether a decoder wants the encoder's hidden states (a non-empty ``encoder_layers``)."""
    return bool(getattr(decoder, "encoder_layers", None))


def encode_visible(
    encoder: MaskedEncoder,
    images: Tensor,
    mask_ratio: float,
    *,
    masking: TokenMasking = random_grid_mask,
    noise: Tensor | None = None,
    generator: torch.Generator | None = None,
    interpolate_pos_encoding: bool = False,
    output_hidden_states: bool = False,
    output_attentions: bool = False,
    input_name: str = "images",
) -> VisibleEncoding:
    """Masks a batch and encodes its visible tokens: the first half of the MAE step.

    :class:`MaskedAutoencoder` calls it, and so does the encoder-only Hugging Face
    ``ViTMAEModel``. The arguments are validated here, once.

    Args:
        encoder: A :class:`MaskedEncoder`.
        images: (B, C, H, W) images of the encoder's native size (any multiple of the patch
            size with ``interpolate_pos_encoding``).
        mask_ratio: Fraction of patches removed, in [0, 1).
        masking: How the visible tokens are drawn (a :class:`~ssl_mae.masking.TokenMasking`).
        noise: Optional (B, L) noise; the patches with the smallest noise stay visible.
        generator: Random generator used when ``noise`` is None.
        interpolate_pos_encoding: Accept other image sizes (position tables are resized).
        output_hidden_states: Also return the encoder hidden states.
        output_attentions: Also return the encoder attention probabilities.
        input_name: The caller's name for ``images`` in error messages (façades have their own:
            ``imgs``, ``img``, ``pixel_values``).
    """
    native_grid = None if interpolate_pos_encoding else tuple(encoder.grid_size)
    grid = check_images(
        images,
        input_name,
        in_chans=encoder.in_chans,
        patch_size=encoder.patch_size,
        native_grid=native_grid,  # type: ignore[arg-type]
        dtype=_weight_dtype(encoder) if isinstance(encoder, nn.Module) else None,
        size_hint="; pass interpolate_pos_encoding=True for other sizes",
    )
    mask_ratio = check_mask_ratio(mask_ratio)
    check_generator(generator)
    for flag, flag_name in (
        (interpolate_pos_encoding, "interpolate_pos_encoding"),
        (output_hidden_states, "output_hidden_states"),
        (output_attentions, "output_attentions"),
    ):
        if flag is not None:  # None means False, as in Hugging Face
            check_bool(flag, flag_name)
    if noise is not None:
        noise = check_tensor(noise, "noise", ndim=2, shape_doc="(B, L)", floating=True)
        noise = noise.to(images.device)
    num_prefix = encoder.num_prefix_tokens
    idx_keep, idx_mask = masking(
        images.shape[0],
        grid,
        num_prefix,
        mask_ratio,
        device=images.device,
        generator=generator,
        noise=noise,
    )
    mask, ids_restore = official_masks(idx_keep, idx_mask, num_prefix)
    hidden_states = attentions = None
    if output_hidden_states or output_attentions:
        encode_with_states = getattr(encoder, "encode_with_states", None)
        if encode_with_states is None:
            raise ValueError(
                f"output_hidden_states/output_attentions need an encoder with "
                f"encode_with_states (a ViT wrapper); {type(encoder).__name__} has none"
            )
        states = encode_with_states(
            images,
            idx_keep=idx_keep,
            output_hidden_states=output_hidden_states,
            output_attentions=output_attentions,
        )
        latent, hidden_states, attentions = states
    else:
        latent = encoder.encode(images, idx_keep=idx_keep)
    return VisibleEncoding(
        latent, idx_keep, idx_mask, mask, ids_restore, grid, hidden_states, attentions
    )


class MaskedAutoencoder(nn.Module):
    """The MAE step (He et al. 2021) over any masked encoder and decoder.

    Args:
        encoder: A :class:`MaskedEncoder`, e.g. ``MaskedVisionTransformer.from_timm(...)``.
        decoder: A :class:`MaskedDecoder`, e.g. :class:`~ssl_mae.modules.MAEDecoder`.
        loss: Scores predictions against targets on the masked patches; default
            ``MAELoss()`` (pixel MSE; ``MAELoss(norm_pix=True)`` for normalised targets).
        mask_ratio: Fraction of patches removed per image, in [0, 1).
        target: Maps images (B, C, H, W) to per-patch targets (B, L, T); default
            :class:`~ssl_mae.loss.PixelTarget` of the encoder's patch size.
        masking: Draws the visible tokens; default :func:`~ssl_mae.masking.random_grid_mask`.
        decode_ratio: Share of the masked tokens the decoder predicts, in (0, 1]. Below 1 the
            decoder runs on the visible tokens plus that share only (partial reconstruction,
            as in CrossMAE), which cuts its cost; 1 decodes every patch (official MAE).

    Example::

        mae = MaskedAutoencoder(encoder, decoder, MAELoss(norm_pix=True))
        out = mae(images)            # MAEOutput
        out.loss.backward()
    """

    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module,
        loss: nn.Module | None = None,
        mask_ratio: float = 0.75,
        *,
        target: nn.Module | None = None,
        masking: TokenMasking | None = None,
        decode_ratio: float = 1.0,
    ) -> None:
        super().__init__()
        if not isinstance(encoder, nn.Module) or not isinstance(encoder, MaskedEncoder):
            raise TypeError(
                "encoder must be an nn.Module with encode(images, idx_keep=...), "
                "num_prefix_tokens, patch_size, grid_size and in_chans (e.g. "
                f"MaskedVisionTransformer), got {type(encoder).__name__}"
            )
        if not isinstance(decoder, nn.Module) or not isinstance(decoder, MaskedDecoder):
            raise TypeError(
                "decoder must be an nn.Module with predict_all and predict_at (e.g. MAEDecoder), "
                f"got {type(decoder).__name__}"
            )
        for name, module in (("loss", loss), ("target", target)):
            if module is not None and not isinstance(module, nn.Module):
                raise TypeError(f"{name} must be an nn.Module or None, got {type(module).__name__}")
        if masking is not None and not callable(masking):
            raise TypeError(f"masking must be callable or None, got {masking!r}")
        if _reads_encoder_layers(decoder) and not hasattr(encoder, "encode_with_states"):
            raise TypeError(
                f"decoder reads encoder layers (encoder_layers="
                f"{getattr(decoder, 'encoder_layers', None)!r}) but {type(encoder).__name__} "
                "has no encode_with_states; use a ViT wrapper or encoder_layers=None"
            )
        self.encoder = encoder
        self.decoder = decoder
        self.loss = loss if loss is not None else MAELoss()
        self.target = target if target is not None else PixelTarget(encoder.patch_size)
        self.masking: TokenMasking = masking if masking is not None else random_grid_mask
        self.mask_ratio = check_mask_ratio(mask_ratio)
        self.decode_ratio = _check_decode_ratio(decode_ratio)

    @property
    def masked_autoencoder(self) -> MaskedAutoencoder:
        """This core itself (models that hold a core return theirs)."""
        return self

    @property
    def image_size(self) -> tuple[int, int]:
        """Native input size ``(H, W)``."""
        grid_h, grid_w = self.encoder.grid_size
        return grid_h * self.encoder.patch_size, grid_w * self.encoder.patch_size

    def forward(
        self,
        images: Tensor,
        mask_ratio: float | None = None,
        noise: Tensor | None = None,
        generator: torch.Generator | None = None,
        *,
        decode_ratio: float | None = None,
        interpolate_pos_encoding: bool = False,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
        input_name: str = "images",
    ) -> MAEOutput:
        """Masks, encodes the visible tokens, decodes and scores a batch.

        Args:
            images: (B, C, H, W) images of the encoder's native size.
            mask_ratio: Fraction of patches removed, in [0, 1); ``self.mask_ratio`` when None.
            noise: Optional (B, L) noise fixing the mask (lowest noise stays visible).
            generator: Random generator used when ``noise`` is None.
            decode_ratio: Share of masked tokens to decode; ``self.decode_ratio`` when None.
            interpolate_pos_encoding: Accept other image sizes (position tables resized).
            output_hidden_states: Also return the encoder hidden states.
            output_attentions: Also return the encoder attention probabilities.
            input_name: Name of ``images`` in error messages (for façades).

        Returns:
            :class:`MAEOutput`.
        """
        reads_layers = _reads_encoder_layers(self.decoder)
        visible = encode_visible(
            self.encoder,
            images,
            self.mask_ratio if mask_ratio is None else mask_ratio,
            masking=self.masking,
            noise=noise,
            generator=generator,
            interpolate_pos_encoding=interpolate_pos_encoding,
            output_hidden_states=output_hidden_states or reads_layers,
            output_attentions=output_attentions,
            input_name=input_name,
        )
        share = self.decode_ratio if decode_ratio is None else decode_ratio
        share = _check_decode_ratio(share)
        grid = None if visible.grid_size == tuple(self.encoder.grid_size) else visible.grid_size
        target = self.target(images)
        # Decoders that read encoder layers also get the hidden states (CrossMAE).
        states: dict[str, Any] = {"hidden_states": visible.hidden_states} if reads_layers else {}
        if share == 1.0:
            idx_decode = visible.idx_mask
            pred = self.decoder.predict_all(
                visible.latent, visible.ids_restore, grid_size=grid, **states
            )
            loss_mask = visible.mask
        else:
            idx_decode, pred, loss_mask = self._predict_share(visible, share, grid, states)
        loss = self.loss(pred, target, loss_mask)
        return MAEOutput(
            **vars(visible), loss=loss, pred=pred, target=target, idx_decode=idx_decode
        )

    def _predict_share(
        self,
        visible: VisibleEncoding,
        share: float,
        grid: tuple[int, int] | None,
        states: dict[str, Any],
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Decodes the first ``share`` of the (randomly ordered) masked tokens; returns their
        positions, predictions scattered into a (B, L, T) zero tensor, and the loss mask."""
        num_decode = num_patches_to_decode(visible.idx_mask.shape[1], share)
        idx_decode = visible.idx_mask[:, :num_decode]
        subset = self.decoder.predict_at(
            visible.latent, visible.idx_keep, idx_decode, grid, **states
        )
        patches = idx_decode - self.encoder.num_prefix_tokens
        pred = subset.new_zeros(*visible.mask.shape, subset.shape[-1])
        pred = pred.scatter(1, patches.unsqueeze(-1).expand(-1, -1, subset.shape[-1]), subset)
        loss_mask = torch.zeros_like(visible.mask).scatter_(1, patches, 1.0)
        return idx_decode, pred, loss_mask


def as_masked_autoencoder(model: object) -> MaskedAutoencoder:
    """The :class:`MaskedAutoencoder` behind a model: the model itself, or the core every
    façade (``MAE``, ``ViTMAEForPreTraining``, ``HiViTMAEForPreTraining``, ``SimpleMAE``,
    ``PretrainModule``) exposes as ``masked_autoencoder``.

    Raises:
        TypeError: For objects without a core.
    """
    core = getattr(model, "masked_autoencoder", None)
    if not isinstance(core, MaskedAutoencoder):
        raise TypeError(
            "model must be a MaskedAutoencoder or a model built on one (MAE, "
            "ViTMAEForPreTraining, HiViTMAEForPreTraining, SimpleMAE, PretrainModule), "
            f"got {type(model).__name__}"
        )
    return core
