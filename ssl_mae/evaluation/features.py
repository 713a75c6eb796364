"""Frozen-feature extraction: run an encoder over a data set once and keep one vector per image.

kNN and the linear probe both work on a fixed feature tensor, so the (expensive) encoder runs a
single time per data set instead of once per epoch.

Features come from the last block (``layers=1``, the usual protocol) or from the last ``k``
blocks: each block's tokens go through the encoder's final norm, are pooled (class token or mean
of the patch tokens) and the ``k`` pooled vectors are concatenated (``combine="concat"``,
(B, k * D)) or averaged (``combine="mean"``, (B, D)). MAE encoders spread what they learn over
their blocks (the last ones specialise in pixel reconstruction), so several layers often give
better frozen features than the last one alone.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence
from typing import Literal

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from ssl_mae._validation import as_device, check_bool, check_positive_int

Pool = Literal["cls", "mean", "prefix"]
POOL_CHOICES: tuple[str, ...] = ("cls", "mean", "prefix")
Combine = Literal["concat", "mean"]
COMBINE_CHOICES: tuple[str, ...] = ("concat", "mean")


def check_pool(pool: str) -> Pool:
    """Checks that ``pool`` is one of :data:`POOL_CHOICES` and returns it."""
    if pool not in POOL_CHOICES:
        raise ValueError(f"pool must be one of {POOL_CHOICES}, got {pool!r}")
    return pool  # type: ignore[return-value]


def pool_tokens(tokens: Tensor, pool: str, num_prefix_tokens: int) -> Tensor:
    """Reduces a token sequence to one vector per image.

    Args:
        tokens: (B, L, D) encoder output, prefix tokens (class, registers) first.
        pool: ``"cls"`` takes the class token (index 0); ``"mean"`` averages the patch tokens,
            leaving out the ``num_prefix_tokens`` prefix tokens; ``"prefix"`` averages the
            prefix tokens (class and register tokens, Pixio's image feature).
        num_prefix_tokens: Number of prefix tokens at the start of the sequence.

    Returns:
        (B, D) pooled features.
    """
    pool = check_pool(pool)
    if tokens.ndim != 3:
        raise ValueError(f"tokens must have shape (B, L, D), got shape {tuple(tokens.shape)}")
    if not 0 <= num_prefix_tokens < tokens.shape[1]:
        raise ValueError(
            f"num_prefix_tokens must be in [0, {tokens.shape[1] - 1}] for {tokens.shape[1]} "
            f"tokens, got {num_prefix_tokens}"
        )
    if pool in ("cls", "prefix"):
        if num_prefix_tokens == 0:
            raise ValueError(
                f"pool={pool!r} needs a class token but the encoder has num_prefix_tokens=0; "
                "use pool='mean'"
            )
        return tokens[:, 0] if pool == "cls" else tokens[:, :num_prefix_tokens].mean(dim=1)
    return tokens[:, num_prefix_tokens:].mean(dim=1)


def check_combine(combine: str) -> Combine:
    """Checks that ``combine`` is one of :data:`COMBINE_CHOICES` and returns it."""
    if combine not in COMBINE_CHOICES:
        raise ValueError(f"combine must be one of {COMBINE_CHOICES}, got {combine!r}")
    return combine  # type: ignore[return-value]


def pool_layers(
    layers: Sequence[Tensor], pool: str, num_prefix_tokens: int, combine: str = "concat"
) -> Tensor:
    """Pools several blocks' token sequences and combines them into one vector per image.

    Args:
        layers: ``k`` tensors (B, L, D), e.g. the outputs of the last ``k`` blocks.
        pool: ``"cls"`` or ``"mean"`` (see :func:`pool_tokens`), applied to every layer.
        num_prefix_tokens: Number of prefix tokens at the start of each sequence.
        combine: ``"concat"`` gives (B, k * D), layers in the given order; ``"mean"`` averages
            the pooled vectors to (B, D).

    Returns:
        The combined features.
    """
    combine = check_combine(combine)
    if len(layers) == 0:
        raise ValueError("layers must hold at least one (B, L, D) tensor, got none")
    pooled = [pool_tokens(tokens, pool, num_prefix_tokens) for tokens in layers]
    if combine == "concat":
        return torch.cat(pooled, dim=1)
    return torch.stack(pooled).mean(dim=0)


def _check_layers(layers: int) -> int:
    return check_positive_int(layers, "layers")


def encode_layers(
    encoder: nn.Module, images: Tensor, pool: str = "mean", layers: int = 1, combine: str = "concat"
) -> Tensor:
    """Encodes images without masking and pools the last ``layers`` blocks (see the module doc).

    The encoder must offer ``forward_intermediates(images, norm=True) -> (tokens, per_block)``
    and ``num_prefix_tokens`` (the project's :class:`~ssl_mae.modules.MaskedVisionTransformer`
    and Lightly's ``MaskedVisionTransformerTIMM`` do); the final norm is applied to every block's
    output, so ``layers=1`` gives the same features as :func:`encode_pooled`.

    Args:
        encoder: The backbone.
        images: (B, C, H, W) images.
        pool: ``"cls"`` or ``"mean"``.
        layers: How many of the last blocks to use, between 1 and the encoder's depth.
        combine: ``"concat"`` ((B, layers * D)) or ``"mean"`` ((B, D)).

    Returns:
        The features, in the dtype the encoder produced.
    """
    pool = check_pool(pool)
    layers = _check_layers(layers)
    combine = check_combine(combine)
    forward_intermediates = getattr(encoder, "forward_intermediates", None)
    num_prefix_tokens = getattr(encoder, "num_prefix_tokens", None)
    if not callable(forward_intermediates) or num_prefix_tokens is None:
        raise ValueError(
            f"features of several layers need an encoder with forward_intermediates(images, "
            f"norm=...) and num_prefix_tokens; {type(encoder).__name__} has not both"
        )
    _, blocks = forward_intermediates(images, norm=True)
    if not 1 <= layers <= len(blocks):
        raise ValueError(f"layers must be in [1, {len(blocks)}] for this encoder, got {layers}")
    return pool_layers(blocks[-layers:], pool, int(num_prefix_tokens), combine)


def encode_pooled(
    encoder: nn.Module,
    images: Tensor,
    pool: str = "cls",
    layers: int = 1,
    combine: str = "concat",
) -> Tensor:
    """Encodes images without masking and pools them to (B, D).

    The encoder is used through the first interface it offers:

    1. ``encode(images) -> (B, L, D)`` plus a ``num_prefix_tokens`` attribute (the project's
       :class:`~ssl_mae.modules.MaskedVisionTransformer`, Lightly's masked ViTs);
    2. ``forward_features(images) -> (B, L, D)`` (timm models; ``num_prefix_tokens`` defaults
       to 1 when the model does not define it);
    3. ``encoder(images) -> (B, D)`` (any backbone that already pools; ``pool`` is then unused).

    With ``layers > 1`` the last ``layers`` blocks are pooled and combined instead (see
    :func:`encode_layers`, which needs ``forward_intermediates``).

    Args:
        encoder: The backbone.
        images: (B, C, H, W) images.
        pool: ``"cls"``, ``"mean"`` or ``"prefix"`` (see :func:`pool_tokens`).
        layers: Number of last blocks to pool (1: the encoder's output only).
        combine: How several layers are combined, ``"concat"`` or ``"mean"``.

    Returns:
        (B, D) features ((B, layers * D) for ``layers > 1`` with ``"concat"``), in the dtype
        the encoder produced.
    """
    pool = check_pool(pool)
    if _check_layers(layers) > 1:
        return encode_layers(encoder, images, pool, layers, combine)
    encode = getattr(encoder, "encode", None)
    num_prefix_tokens = getattr(encoder, "num_prefix_tokens", None)
    if callable(encode) and num_prefix_tokens is not None:
        tokens: Tensor = encode(images)
        return pool_tokens(tokens, pool, int(num_prefix_tokens))
    forward_features = getattr(encoder, "forward_features", None)
    if callable(forward_features):
        tokens = forward_features(images)
        if tokens.ndim == 3:
            prefix = 1 if num_prefix_tokens is None else int(num_prefix_tokens)
            return pool_tokens(tokens, pool, prefix)
        if tokens.ndim == 2:
            return tokens
        raise ValueError(
            f"encoder.forward_features must return (B, L, D) tokens or (B, D) features, got "
            f"shape {tuple(tokens.shape)}"
        )
    features: object = encoder(images)
    if not isinstance(features, Tensor) or features.ndim != 2:
        shape = tuple(features.shape) if isinstance(features, Tensor) else type(features)
        raise ValueError(
            f"encoder without encode()/forward_features() must return (B, D) features, got {shape}"
        )
    return features


def autocast_context(
    device: torch.device, amp: bool | None
) -> contextlib.AbstractContextManager[None]:
    """bf16 autocast on CUDA when ``amp`` is None or True, on CPU only when ``amp`` is True.

    bf16 needs no loss scaling, so the same context serves inference and training.
    """
    if amp is False or (amp is None and device.type != "cuda"):
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def module_device(module: nn.Module) -> torch.device:
    """Device of the first parameter (or buffer) of ``module``; CPU for stateless modules."""
    for parameter in module.parameters():
        return parameter.device
    for buffer in module.buffers():
        return buffer.device
    return torch.device("cpu")


def _as_loader(
    data: DataLoader[object] | Dataset[object] | Iterable[object], batch_size: int, num_workers: int
) -> Iterable[object]:
    if isinstance(data, DataLoader):
        return data
    if isinstance(data, Dataset):
        return DataLoader(data, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    if isinstance(data, Iterable):
        return data
    raise TypeError(
        f"loader_or_dataset must be a DataLoader, a Dataset or an iterable of (images, labels) "
        f"batches, got {type(data)}"
    )


def _split_batch(batch: object) -> tuple[Tensor, Tensor]:
    """Takes images and labels from ``(images, labels, ...)``; a list of views uses the first."""
    if not isinstance(batch, (list, tuple)) or len(batch) < 2:
        raise TypeError(
            f"each batch must be a tuple (images, labels, ...), got {type(batch).__name__}"
        )
    images, labels = batch[0], batch[1]
    if isinstance(images, (list, tuple)):  # Lightly-style transforms return a list of views
        images = images[0]
    if not isinstance(images, Tensor) or images.ndim != 4:
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images)
        raise ValueError(f"batch images must be a tensor of shape (B, C, H, W), got {shape}")
    try:
        labels = torch.as_tensor(labels)
    except (TypeError, ValueError, RuntimeError) as error:
        raise TypeError(
            f"batch labels must be integers, got {type(labels).__name__}: {error}"
        ) from None
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        # .long() would truncate 0.7 to class 0 without a word.
        raise TypeError(f"batch labels must have an integer dtype, got {labels.dtype}")
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise ValueError(
            f"batch labels must have shape ({images.shape[0]},) to match the images, got "
            f"shape {tuple(labels.shape)}"
        )
    return images, labels


def iterate_batches(loader: Iterable[object]) -> Iterator[tuple[Tensor, Tensor]]:
    """Yields ``(images, labels)`` from ``(images, labels, ...)`` batches, validating both."""
    for batch in loader:
        yield _split_batch(batch)


@torch.no_grad()
def extract_features(
    encoder: nn.Module,
    loader_or_dataset: DataLoader[object] | Dataset[object] | Iterable[object],
    pool: str = "cls",
    device: torch.device | str | None = None,
    amp: bool | None = None,
    batch_size: int = 256,
    num_workers: int = 0,
    layers: int = 1,
    combine: str = "concat",
) -> tuple[Tensor, Tensor]:
    """Runs a frozen encoder over a data set and collects one feature vector per image.

    The encoder runs without masking, in eval mode and under ``torch.no_grad()``; its previous
    train/eval mode (and device, when ``device`` moves it) is restored afterwards.

    Args:
        encoder: Backbone, see :func:`encode_pooled` for the interfaces it may offer.
        loader_or_dataset: A ``DataLoader`` or an iterable yielding ``(images, labels, ...)``
            batches with images (B, C, H, W) and labels (B,), or a ``Dataset`` of
            ``(image, label, ...)`` samples, which is batched in order with ``batch_size``.
        pool: ``"cls"`` (class token) or ``"mean"`` (mean of the patch tokens).
        device: Where to run; defaults to the device of the encoder's parameters.
        amp: bf16 autocast. ``None`` (default) enables it on CUDA only; ``True`` forces it,
            ``False`` disables it.
        batch_size: Batch size used when a ``Dataset`` is given.
        num_workers: Loader workers used when a ``Dataset`` is given.
        layers: Pool the last ``layers`` blocks instead of the output only (see
            :func:`encode_layers`).
        combine: ``"concat"`` or ``"mean"`` of the layers' pooled vectors.

    Returns:
        ``(features, labels)``: (N, D) float32 features and (N,) int64 labels, both on the CPU
        ((N, layers * D) with several concatenated layers).
    """
    if not isinstance(encoder, nn.Module):
        raise TypeError(f"encoder must be a torch.nn.Module, got {type(encoder).__name__}")
    pool = check_pool(pool)
    _check_layers(layers)
    combine = check_combine(combine)
    check_positive_int(batch_size, "batch_size")
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
        raise ValueError(f"num_workers must be a non-negative int, got {num_workers!r}")
    if amp is not None:
        check_bool(amp, "amp")
    loader = _as_loader(loader_or_dataset, batch_size, num_workers)

    original_device = module_device(encoder)
    run_device = original_device if device is None else as_device(device)
    was_training = encoder.training
    encoder.eval()
    if run_device != original_device:
        encoder.to(run_device)
    features: list[Tensor] = []
    labels: list[Tensor] = []
    try:
        for images, batch_labels in iterate_batches(loader):
            images = images.to(run_device, non_blocking=True)
            with autocast_context(run_device, amp):
                batch_features = encode_pooled(encoder, images, pool, layers, combine)
            features.append(batch_features.float().cpu())
            labels.append(batch_labels.long().cpu())
    finally:
        encoder.train(was_training)
        if run_device != original_device:
            encoder.to(original_device)
    if not features:
        raise ValueError("loader_or_dataset yielded no batches")
    return torch.cat(features), torch.cat(labels)
