"""Masking, token indexing and patchify utilities — the first step of the MAE data path.

Two index conventions are supported because the two big MAE code bases use them:

* Lightly style, ``idx_keep`` / ``idx_mask``: integer indices over the **full** token sequence,
  prefix tokens included (index 0 is the class token when there is one). Produced by
  :func:`random_token_mask`.
* Official / Hugging Face style, ``ids_keep`` / ``ids_restore`` / ``mask``: indices over the
  **patch** tokens only; ``ids_restore`` undoes the random shuffle and ``mask`` is 1 for removed
  patches. Produced by :func:`random_masking`.

Both draw the number of kept patches the same way as the official code,
``int(num_patches * (1 - mask_ratio))``, so for 196 patches and ratio 0.75 exactly 147 patches are
masked, and the same ``noise`` gives the same split in both conventions.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor

from ssl_mae._validation import (
    as_device,
    check_finite,
    check_generator,
    check_index,
    check_mask_ratio,
    check_positive_int,
    check_tensor,
    reads_back,
    square_grid,
    to_2tuple,
)

__all__ = [
    "BlockMasking",
    "TokenMasking",
    "get_at_index",
    "mask_at_index",
    "num_patches_to_decode",
    "num_patches_to_keep",
    "official_masks",
    "patchify",
    "prepend_class_token",
    "random_block_grid_mask",
    "random_grid_mask",
    "random_masking",
    "random_token_mask",
    "repeat_token",
    "restore_index",
    "set_at_index",
    "unpatchify",
]


def num_patches_to_keep(num_patches: int, mask_ratio: float) -> int:
    """Number of visible patches, computed as in the official MAE: ``int(L * (1 - ratio))``."""
    return int(num_patches * (1 - mask_ratio))


def _check_noise(noise: Tensor, batch_size: int, length: int, what: str) -> Tensor:
    check_tensor(noise, "noise", ndim=2, shape_doc=f"(B, {what})", floating=True)
    if tuple(noise.shape) != (batch_size, length):
        raise ValueError(
            f"noise must have shape (B, {what}) = ({batch_size}, {length}), "
            f"got {tuple(noise.shape)}"
        )
    # argsort puts NaN last in an arbitrary but fixed order: all-NaN noise would give every
    # sample the same mask. Like the index range checks, this runs for CPU tensors only.
    return check_finite(noise, "noise")


def _noise_or_draw(
    noise: Tensor | None,
    batch_size: int,
    length: int,
    what: str,
    device: torch.device | str | None,
    generator: torch.Generator | None,
) -> Tensor:
    """The (B, length) masking noise: ``noise`` once checked, or uniform noise drawn on the
    generator's device (so a CPU generator seeds CUDA masks) and moved to ``device``."""
    if noise is not None:
        _check_noise(noise, batch_size, length, what)
        return noise
    draw_on = device if generator is None else generator.device
    drawn = torch.rand(batch_size, length, device=draw_on, generator=generator)
    return drawn if device is None else drawn.to(device)


def _check_keeps_a_token(num_kept: int, mask_ratio: float, sequence_length: int) -> None:
    """Both conventions refuse a ratio that leaves nothing to encode."""
    if num_kept == 0:
        raise ValueError(
            f"mask_ratio={mask_ratio} keeps no token at all for sequence length "
            f"{sequence_length}; lower mask_ratio"
        )


def _check_token_mask_ratio(mask_ratio: float) -> float:
    """``random_token_mask`` accepts 1.0 (mask every patch), as Lightly's does."""
    if isinstance(mask_ratio, bool) or not isinstance(mask_ratio, (int, float)):
        raise TypeError(f"mask_ratio must be a float in [0, 1], got {mask_ratio!r}")
    if not 0.0 <= float(mask_ratio) <= 1.0:
        raise ValueError(f"mask_ratio must be in [0, 1], got {mask_ratio!r}")
    return float(mask_ratio)


def random_token_mask(
    size: tuple[int, int],
    mask_ratio: float = 0.6,
    mask_class_token: bool = False,
    num_prefix_tokens: int = 1,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
    noise: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Draws random keep/mask indices over a token sequence (Lightly convention).

    Prefix tokens (class and register tokens, the first ``num_prefix_tokens`` positions) are
    always kept and come first in ``idx_keep``, unless ``mask_class_token=True``, in which case
    every position takes part in the draw. Patches are ordered by ascending noise, so the kept
    patches are the ``num_keep`` smallest noise values.

    Defaults and accepted ratios are those of Lightly's function of the same name: ``mask_ratio``
    defaults to 0.6, and 1.0 keeps only the prefix tokens (nothing with ``mask_class_token=True``).
    The MAE models pass their own ratio (0.75).

    Args:
        size: ``(batch_size, sequence_length)``, the sequence length including prefix tokens.
        mask_ratio: Fraction of patch tokens to mask, in [0, 1].
        mask_class_token: If True, prefix tokens may be masked too.
        num_prefix_tokens: Number of prefix tokens at the start of the sequence.
        device: Device of the returned indices (ignored when ``noise`` is given).
        generator: Random generator for reproducible masks; the noise is drawn on the
            generator's device and moved to ``device``, so a CPU generator seeds CUDA masks.
        noise: Optional noise of shape (B, L_patches), or (B, L) with ``mask_class_token=True``.
            The same noise always gives the same masks.

    Returns:
        ``(idx_keep, idx_mask)`` of shapes (B, num_prefix_tokens + num_keep) and
        (B, L_patches - num_keep), both int64 indices into the full sequence.
    """
    if (
        not isinstance(size, (tuple, list))
        or len(size) != 2
        or not all(isinstance(s, int) and not isinstance(s, bool) for s in size)
    ):
        raise TypeError(f"size must be a (batch_size, sequence_length) pair of ints, got {size!r}")
    batch_size, sequence_length = size
    if batch_size < 0 or sequence_length < 1:
        raise ValueError(
            f"size must be (batch_size >= 0, sequence_length >= 1), got {tuple(size)!r}"
        )
    mask_ratio = _check_token_mask_ratio(mask_ratio)
    if isinstance(num_prefix_tokens, bool) or not isinstance(num_prefix_tokens, int):
        raise TypeError(f"num_prefix_tokens must be an int, got {num_prefix_tokens!r}")
    if not 0 <= num_prefix_tokens < sequence_length:
        raise ValueError(
            f"num_prefix_tokens must be in [0, {sequence_length - 1}] for sequence length "
            f"{sequence_length}, got {num_prefix_tokens}"
        )

    check_generator(generator)
    if device is not None:
        device = as_device(device)

    num_fixed = 0 if mask_class_token else num_prefix_tokens
    num_maskable = sequence_length - num_fixed
    num_keep = num_patches_to_keep(num_maskable, mask_ratio)
    what = "L" if mask_class_token else "L_patches"
    noise = _noise_or_draw(noise, batch_size, num_maskable, what, device, generator)

    order = torch.argsort(noise, dim=1) + num_fixed
    idx_mask = order[:, num_keep:]
    idx_keep = order[:, :num_keep]
    if num_fixed:
        prefix = torch.arange(num_fixed, device=order.device).expand(batch_size, num_fixed)
        idx_keep = torch.cat([prefix, idx_keep], dim=1)
    return idx_keep, idx_mask


def random_masking(
    x: Tensor,
    mask_ratio: float,
    noise: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Per-sample random masking by shuffling patch tokens (official MAE / Hugging Face).

    Args:
        x: Patch tokens (B, L, D), without prefix tokens.
        mask_ratio: Fraction of tokens to remove, in [0, 1).
        noise: Optional (B, L) noise; tokens with the smallest noise are kept.
        generator: Random generator used when ``noise`` is None.

    Returns:
        ``(x_kept, mask, ids_restore)``: kept tokens (B, L_keep, D) in ascending-noise order,
        the binary mask (B, L) with 0 for kept and 1 for removed tokens (in the original order,
        float32), and ``ids_restore`` (B, L) such that
        ``gather(cat(x_kept, removed), ids_restore)`` is the original order.
    """
    check_tensor(x, "x", ndim=3, shape_doc="(B, L, D)")
    mask_ratio = check_mask_ratio(mask_ratio)
    check_generator(generator)
    batch_size, length, dim = x.shape
    len_keep = num_patches_to_keep(length, mask_ratio)
    _check_keeps_a_token(len_keep, mask_ratio, length)
    if noise is None:
        noise = torch.rand(batch_size, length, device=x.device, generator=generator)
    else:
        _check_noise(noise, batch_size, length, "L")
        noise = noise.to(x.device)

    ids_shuffle = torch.argsort(noise, dim=1)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    ids_keep = ids_shuffle[:, :len_keep]
    x_kept = torch.gather(x, 1, ids_keep.unsqueeze(-1).expand(-1, -1, dim))

    mask = torch.ones(batch_size, length, device=x.device)
    mask[:, :len_keep] = 0
    mask = torch.gather(mask, 1, ids_restore)
    return x_kept, mask, ids_restore


class TokenMasking(Protocol):
    """How :class:`~ssl_mae.MaskedAutoencoder` draws the visible tokens of a batch.

    Any callable with this signature can replace the default :func:`random_grid_mask` (e.g. a
    block masking that needs the patch grid). It returns Lightly-style indices over the full
    token sequence: ``idx_keep`` (B, P + K_keep) with the ``num_prefix_tokens`` prefix tokens
    first, and ``idx_mask`` (B, K_mask) in a random order (the core may decode only its first
    entries).
    """

    def __call__(
        self,
        batch_size: int,
        grid_size: tuple[int, int],
        num_prefix_tokens: int,
        mask_ratio: float,
        *,
        device: torch.device | str | None = None,
        generator: torch.Generator | None = None,
        noise: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]: ...


def random_grid_mask(
    batch_size: int,
    grid_size: tuple[int, int],
    num_prefix_tokens: int,
    mask_ratio: float,
    *,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
    noise: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """The default :class:`TokenMasking`: :func:`random_token_mask` over an ``h x w`` patch grid.

    Args:
        batch_size: Number of images B.
        grid_size: Patch grid ``(h, w)``.
        num_prefix_tokens: Prefix tokens P, always kept.
        mask_ratio: Fraction of the ``h * w`` patches to mask.
        device: Device of the indices.
        generator: Random generator for reproducible masks.
        noise: Optional (B, h * w) noise; the patches with the smallest noise stay visible.

    Returns:
        ``(idx_keep, idx_mask)`` as from :func:`random_token_mask`.
    """
    grid_h, grid_w = grid_size
    return random_token_mask(
        (batch_size, num_prefix_tokens + grid_h * grid_w),
        mask_ratio=mask_ratio,
        num_prefix_tokens=num_prefix_tokens,
        device=device,
        generator=generator,
        noise=noise,
    )


def official_masks(
    idx_keep: Tensor, idx_mask: Tensor, num_prefix_tokens: int
) -> tuple[Tensor, Tensor]:
    """The official / Hugging Face bookkeeping of a Lightly-style split.

    This is the one conversion between the two index conventions of this module.

    Args:
        idx_keep: (B, P + K_keep) kept positions over the full sequence, prefix tokens first.
        idx_mask: (B, K_mask) masked positions over the full sequence.
        num_prefix_tokens: Prefix tokens P in front of the L = K_keep + K_mask patches.

    Returns:
        ``(mask, ids_restore)``: the (B, L) float mask with 1 for removed patches, and the (B, L)
        permutation that puts ``cat(kept patches, removed patches)`` back in patch order, as
        :func:`random_masking` returns them for the same noise.
    """
    keep_patches = idx_keep[:, num_prefix_tokens:] - num_prefix_tokens
    mask_patches = idx_mask - num_prefix_tokens
    ids_restore = _inverse_permutation(torch.cat([keep_patches, mask_patches], dim=1))
    mask = torch.zeros(ids_restore.shape, device=idx_mask.device)
    mask.scatter_(1, mask_patches, 1.0)
    return mask, ids_restore


def _inverse_permutation(order: Tensor) -> Tensor:
    """(B, L) inverse of a batch of permutations of ``range(L)``; -1 where a value is missing."""
    positions = torch.arange(order.shape[1], device=order.device).expand_as(order)
    return torch.full_like(order, -1).scatter_(1, order, positions)


def restore_index(idx_keep: Tensor, idx_mask: Tensor) -> Tensor:
    """Inverse permutation of ``cat(idx_keep, idx_mask)``.

    ``gather(cat(tokens_at_keep, tokens_at_mask), restore_index(...))`` puts every token back at
    its original position. This replaces a scatter of (B, L, D) values by a scatter of (B, L)
    integers plus a gather, which is cheaper and deterministic on GPUs.

    Args:
        idx_keep: (B, K) indices, ``idx_mask``: (B, L - K) indices; together a permutation of
            ``range(L)`` for every sample.

    Returns:
        (B, L) int64 tensor.

    Raises:
        ValueError: When the indices are not a permutation (out of range, duplicated or
            overlapping). The duplicate check reads the result back, so like every index range
            check it runs for CPU tensors only.
    """
    check_tensor(idx_keep, "idx_keep", ndim=2, shape_doc="(B, K)", integer=True)
    check_tensor(idx_mask, "idx_mask", ndim=2, shape_doc="(B, L - K)", integer=True)
    if idx_keep.shape[0] != idx_mask.shape[0]:
        raise ValueError(
            f"idx_keep and idx_mask must have the same batch size, got {tuple(idx_keep.shape)} "
            f"and {tuple(idx_mask.shape)}"
        )
    order = torch.cat([idx_keep.long(), idx_mask.long()], dim=1)
    length = order.shape[1]
    check_index(order, "idx_keep and idx_mask", length, order.shape[0])
    restored = _inverse_permutation(order)
    if restored.numel() and reads_back(restored) and bool((restored < 0).any()):
        raise ValueError(
            f"idx_keep and idx_mask must together hold every position of range({length}) "
            "exactly once per sample; some are duplicated or overlap"
        )
    return restored


def _expand_index(index: Tensor, tokens: Tensor) -> Tensor:
    return index.unsqueeze(-1).expand(-1, -1, tokens.shape[-1])


def _check_tokens_and_index(tokens: Tensor, index: Tensor) -> None:
    check_tensor(tokens, "tokens", ndim=3, shape_doc="(B, L, D)")
    check_index(index, "index", sequence_length=tokens.shape[1], batch_size=tokens.shape[0])


def _check_token(token: Tensor, name: str, dim: int) -> None:
    check_tensor(token, name, ndim=3, shape_doc=f"(1, 1, {dim})")
    if tuple(token.shape) != (1, 1, dim):
        raise ValueError(
            f"{name} must have shape (1, 1, D) with D = {dim} (the width of tokens), "
            f"got {tuple(token.shape)}"
        )


def get_at_index(tokens: Tensor, index: Tensor) -> Tensor:
    """Selects tokens at the given positions.

    Args:
        tokens: (B, L, D) tokens.
        index: (B, K) int64 positions in [0, L).

    Returns:
        (B, K, D) selected tokens.
    """
    _check_tokens_and_index(tokens, index)
    return torch.gather(tokens, 1, _expand_index(index, tokens))


def set_at_index(tokens: Tensor, index: Tensor, value: Tensor) -> Tensor:
    """Returns a copy of ``tokens`` with ``value`` written at the given positions.

    ``value`` is cast to the dtype of ``tokens``, so mixing fp32 buffers with fp16/bf16
    activations under autocast works.

    Args:
        tokens: (B, L, D) tokens.
        index: (B, K) int64 positions in [0, L).
        value: (B, K, D) values.

    Returns:
        (B, L, D) tokens.
    """
    _check_tokens_and_index(tokens, index)
    check_tensor(value, "value", ndim=3, shape_doc="(B, K, D)")
    expected = (*index.shape, tokens.shape[-1])
    if tuple(value.shape) != expected:
        raise ValueError(f"value must have shape (B, K, D) = {expected}, got {tuple(value.shape)}")
    return torch.scatter(tokens, 1, _expand_index(index, tokens), value.to(tokens.dtype))


def mask_at_index(tokens: Tensor, index: Tensor, mask_token: Tensor) -> Tensor:
    """Replaces the tokens at the given positions with the mask token.

    Args:
        tokens: (B, L, D) tokens.
        index: (B, K) int64 positions in [0, L).
        mask_token: (1, 1, D) mask token.

    Returns:
        (B, L, D) tokens in the dtype of ``tokens``.
    """
    _check_tokens_and_index(tokens, index)
    _check_token(mask_token, "mask_token", tokens.shape[-1])
    is_masked = torch.zeros(tokens.shape[:2], dtype=torch.bool, device=tokens.device)
    is_masked.scatter_(1, index, True)
    return torch.where(is_masked.unsqueeze(-1), mask_token.to(tokens.dtype), tokens)


def repeat_token(token: Tensor, size: tuple[int, int]) -> Tensor:
    """Repeats a (1, 1, D) token into a (B, L, D) tensor.

    As in Lightly, the result owns its memory (``Tensor.repeat``, not an ``expand`` view), so
    writing into one position leaves the others and the token untouched.

    Args:
        token: (1, 1, D) token.
        size: ``(batch_size, sequence_length)``.

    Returns:
        (B, L, D) tensor holding B * L copies of the token.
    """
    check_tensor(token, "token", ndim=3, shape_doc="(1, 1, D)")
    if (
        not isinstance(size, (tuple, list))
        or len(size) != 2
        or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in size)
    ):
        raise TypeError(
            f"size must be a (batch_size, sequence_length) pair of ints >= 0, got {size!r}"
        )
    batch_size, sequence_length = size
    return token.repeat(batch_size, sequence_length, 1)


def prepend_class_token(tokens: Tensor, class_token: Tensor) -> Tensor:
    """Prepends a class token to every sequence.

    Args:
        tokens: (B, L, D) tokens.
        class_token: (1, 1, D) class token (or (1, K, D) for several prefix tokens).

    Returns:
        (B, K + L, D) tokens.
    """
    check_tensor(tokens, "tokens", ndim=3, shape_doc="(B, L, D)")
    check_tensor(class_token, "class_token", ndim=3, shape_doc="(1, K, D)")
    if class_token.shape[0] != 1 or class_token.shape[2] != tokens.shape[2]:
        raise ValueError(
            f"class_token must have shape (1, K, D) with D = {tokens.shape[2]} (the width of "
            f"tokens), got {tuple(class_token.shape)}"
        )
    prefix = class_token.to(tokens.dtype).expand(tokens.shape[0], -1, -1)
    return torch.cat([prefix, tokens], dim=1)


def patchify(images: Tensor, patch_size: int) -> Tensor:
    """Cuts images into flattened patches (official MAE / Lightly layout).

    Patches are ordered row-major over the patch grid; inside a patch, pixels are ordered
    (row p, column q, channel c).

    Args:
        images: (B, C, H, W) images; H and W must be multiples of ``patch_size``.
        patch_size: Patch side length in pixels.

    Returns:
        (B, H/p * W/p, p * p * C) patches.
    """
    check_tensor(images, "images", ndim=4, shape_doc="(B, C, H, W)")
    patch_size = check_positive_int(patch_size, "patch_size")
    batch_size, channels, height, width = images.shape
    if not (channels and height and width):
        raise ValueError(
            f"images must have at least one channel and one pixel (C, H, W >= 1), "
            f"got shape {tuple(images.shape)}"
        )
    if height % patch_size or width % patch_size:
        raise ValueError(
            f"images height and width must be multiples of patch_size={patch_size}, "
            f"got {height}x{width}"
        )
    grid_h, grid_w = height // patch_size, width // patch_size
    x = images.reshape(batch_size, channels, grid_h, patch_size, grid_w, patch_size)
    x = x.permute(0, 2, 4, 3, 5, 1)  # (B, h, w, p, q, C)
    return x.reshape(batch_size, grid_h * grid_w, patch_size * patch_size * channels)


def unpatchify(
    patches: Tensor,
    patch_size: int,
    channels: int | None = None,
    image_size: int | tuple[int, int] | None = None,
) -> Tensor:
    """Inverse of :func:`patchify`.

    Args:
        patches: (B, L, p * p * C) patches.
        patch_size: Patch side length in pixels.
        channels: Number of image channels; inferred from the patch length when None.
        image_size: ``(H, W)`` of the image (or an int for square images); when None the patch
            grid is assumed square.

    Returns:
        (B, C, H, W) images.
    """
    check_tensor(patches, "patches", ndim=3, shape_doc="(B, L, p*p*C)")
    patch_size = check_positive_int(patch_size, "patch_size")
    batch_size, length, patch_dim = patches.shape
    if length == 0:
        raise ValueError(
            f"patches must hold at least one patch (L >= 1), got shape {tuple(patches.shape)}"
        )
    pixels = patch_size * patch_size
    if channels is None:
        if patch_dim % pixels:
            raise ValueError(
                f"patches last dim ({patch_dim}) must be a multiple of patch_size**2 ({pixels})"
            )
        channels = patch_dim // pixels
    channels = check_positive_int(channels, "channels")
    if patch_dim != pixels * channels:
        raise ValueError(
            f"patches last dim must be patch_size**2 * channels = {pixels * channels}, "
            f"got {patch_dim}"
        )
    if image_size is None:
        grid_h, grid_w = square_grid(length, "patches", "image_size=(H, W)")
    else:
        height, width = to_2tuple(image_size, "image_size")
        if height % patch_size or width % patch_size:
            raise ValueError(
                f"image_size must be a multiple of patch_size={patch_size}, got {height}x{width}"
            )
        grid_h, grid_w = height // patch_size, width // patch_size
        if grid_h * grid_w != length:
            raise ValueError(
                f"image_size {height}x{width} with patch_size={patch_size} gives "
                f"{grid_h * grid_w} patches, but patches has {length}"
            )
    x = patches.reshape(batch_size, grid_h, grid_w, patch_size, patch_size, channels)
    x = x.permute(0, 5, 1, 3, 2, 4)  # (B, C, h, p, w, q)
    return x.reshape(batch_size, channels, grid_h * patch_size, grid_w * patch_size)


def num_patches_to_decode(num_masked: int, decode_ratio: float) -> int:
    """Number of masked patches decoded for a share ``decode_ratio`` of ``num_masked``.

    ``round(decode_ratio * num_masked)``, at least one (when anything is masked) and at most
    ``num_masked``; :class:`~ssl_mae.MaskedAutoencoder` and :mod:`ssl_mae.flops` both use it.
    """
    return min(num_masked, max(1, round(decode_ratio * num_masked)))


def random_block_grid_mask(
    batch_size: int,
    grid_size: tuple[int, int],
    num_prefix_tokens: int,
    mask_ratio: float,
    *,
    block_size: int = 2,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
    noise: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Masks whole ``block_size x block_size`` groups of patches (Pixio-style block masking).

    The patch grid is cut into blocks aligned at the top-left corner (blocks on the bottom and
    right edges are smaller when ``block_size`` does not divide the grid). Each block takes the
    noise of its top-left patch, so the block order is uniformly random; patches are sorted by
    their block's noise, then by their own noise, and the first ``int(L * (1 - mask_ratio))``
    stay visible. The masked count is therefore exactly that of :func:`random_grid_mask` for
    the same ratio: every block is masked or kept as a whole, except at most one block that is
    split to meet the count (its patches with the larger noise are masked). With
    ``block_size=1`` this is :func:`random_grid_mask` for the same noise.

    ``idx_mask`` is ordered by ascending patch noise (not block by block), so that a core that
    decodes only its first entries (``decode_ratio < 1``) picks masked patches across the
    image. The top-left patch of a masked block, whose noise also ranks the block, comes
    somewhat later in that order on average.

    Args:
        batch_size: Number of images B.
        grid_size: Patch grid ``(h, w)``.
        num_prefix_tokens: Prefix tokens P, always kept and first in ``idx_keep``.
        mask_ratio: Fraction of the ``h * w`` patches to mask, in [0, 1).
        block_size: Side k of the square blocks, in patches.
        device: Device of the indices (ignored when ``noise`` is given).
        generator: Random generator for reproducible masks (noise is drawn on its device).
        noise: Optional (B, h * w) patch noise; the same noise always gives the same masks.

    Returns:
        ``(idx_keep, idx_mask)`` of shapes (B, P + K_keep) and (B, h * w - K_keep), int64
        positions over the full sequence, as from :func:`random_token_mask`.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int):
        raise TypeError(f"batch_size must be an int >= 0, got {batch_size!r}")
    if batch_size < 0:
        raise ValueError(f"batch_size must be an int >= 0, got {batch_size!r}")
    grid_h, grid_w = to_2tuple(grid_size, "grid_size")
    block_size = check_positive_int(block_size, "block_size")
    if isinstance(num_prefix_tokens, bool) or not isinstance(num_prefix_tokens, int):
        raise TypeError(f"num_prefix_tokens must be an int >= 0, got {num_prefix_tokens!r}")
    if num_prefix_tokens < 0:
        raise ValueError(f"num_prefix_tokens must be >= 0, got {num_prefix_tokens}")
    mask_ratio = check_mask_ratio(mask_ratio)
    num_patches = grid_h * grid_w
    num_keep = num_patches_to_keep(num_patches, mask_ratio)
    if num_prefix_tokens + num_keep == 0:
        raise ValueError(
            f"mask_ratio={mask_ratio} keeps no token at all for {num_patches} patches and no "
            "prefix token; lower mask_ratio"
        )
    noise = _noise_or_draw(noise, batch_size, num_patches, "h * w", device, generator)

    # Patch index of the top-left patch of every patch's block, in row-major patch order.
    rows = torch.arange(grid_h, device=noise.device) // block_size * block_size
    cols = torch.arange(grid_w, device=noise.device) // block_size * block_size
    anchor = (rows[:, None] * grid_w + cols[None, :]).flatten()
    block_noise = noise[:, anchor]
    # Lexicographic sort by (block noise, patch noise): two stable sorts, the minor key first.
    order = torch.argsort(noise, dim=1, stable=True)
    by_block = torch.argsort(torch.gather(block_noise, 1, order), dim=1, stable=True)
    order = torch.gather(order, 1, by_block)
    idx_keep = order[:, :num_keep] + num_prefix_tokens
    # The core may decode only the first masked entries: order them by patch noise, not by
    # block, so that a partial decoding picks masked patches all over the image.
    masked = order[:, num_keep:]
    masked = torch.gather(masked, 1, torch.argsort(torch.gather(noise, 1, masked), dim=1))
    idx_mask = masked + num_prefix_tokens
    if num_prefix_tokens:
        prefix = torch.arange(num_prefix_tokens, device=order.device)
        idx_keep = torch.cat([prefix.expand(batch_size, -1), idx_keep], dim=1)
    return idx_keep, idx_mask


class BlockMasking:
    """A :class:`TokenMasking` that masks whole ``block_size x block_size`` groups of patches.

    Pass it to the core, ``MaskedAutoencoder(..., masking=BlockMasking(2))``; every call is
    :func:`random_block_grid_mask` with this block size.

    Args:
        block_size: Side k of the square blocks, in patches.
    """

    def __init__(self, block_size: int = 2) -> None:
        self.block_size = check_positive_int(block_size, "block_size")

    def __repr__(self) -> str:
        return f"BlockMasking(block_size={self.block_size})"

    def __call__(
        self,
        batch_size: int,
        grid_size: tuple[int, int],
        num_prefix_tokens: int,
        mask_ratio: float,
        *,
        device: torch.device | str | None = None,
        generator: torch.Generator | None = None,
        noise: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Draws the masks; see :func:`random_block_grid_mask`."""
        return random_block_grid_mask(
            batch_size,
            grid_size,
            num_prefix_tokens,
            mask_ratio,
            block_size=self.block_size,
            device=device,
            generator=generator,
            noise=noise,
        )
