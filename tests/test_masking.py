"""Unit tests for ssl_mae.masking: index conventions, edge cases, dtypes and errors."""

from __future__ import annotations

import inspect

import pytest
import torch

from ssl_mae import masking


@pytest.mark.parametrize(
    ("num_patches", "ratio", "masked"),
    [(196, 0.75, 147), (196, 0.6, 118), (64, 0.0, 0), (16, 0.9, 15)],
)
def test_random_token_mask_counts_over_patches_only(
    num_patches: int, ratio: float, masked: int
) -> None:
    idx_keep, idx_mask = masking.random_token_mask((3, num_patches + 1), mask_ratio=ratio)
    assert idx_mask.shape == (3, masked)
    assert idx_keep.shape == (3, num_patches + 1 - masked)
    assert (idx_keep[:, 0] == 0).all(), "class token must always be kept first"
    full = torch.sort(torch.cat([idx_keep, idx_mask], dim=1), dim=1).values
    assert torch.equal(full, torch.arange(num_patches + 1).expand(3, -1))


def test_random_token_mask_noise_and_generator_reproducible() -> None:
    noise = torch.rand(2, 16)
    a = masking.random_token_mask((2, 17), 0.5, noise=noise)
    b = masking.random_token_mask((2, 17), 0.5, noise=noise.clone())
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    # Smallest noise values are kept, shifted by the prefix.
    expected_keep = torch.argsort(noise, dim=1)[:, :8] + 1
    assert torch.equal(a[0][:, 1:], expected_keep)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    c = masking.random_token_mask((2, 17), 0.5, generator=g1)
    d = masking.random_token_mask((2, 17), 0.5, generator=g2)
    assert all(torch.equal(x, y) for x, y in zip(c, d, strict=True))


def test_random_token_mask_register_tokens_and_no_class_token() -> None:
    idx_keep, idx_mask = masking.random_token_mask((2, 4 + 16), 0.75, num_prefix_tokens=4)
    assert torch.equal(idx_keep[:, :4], torch.arange(4).expand(2, -1))
    assert idx_mask.min() >= 4 and idx_mask.shape == (2, 12)
    idx_keep, idx_mask = masking.random_token_mask((2, 16), 0.75, num_prefix_tokens=0)
    assert idx_keep.shape == (2, 4) and idx_mask.shape == (2, 12)


def test_random_token_mask_mask_class_token() -> None:
    noise = torch.rand(1, 17)
    noise[0, 0] = 2.0  # largest noise: the class token is masked
    idx_keep, idx_mask = masking.random_token_mask((1, 17), 0.5, mask_class_token=True, noise=noise)
    assert idx_keep.shape == (1, 8) and 0 in idx_mask[0].tolist()


@pytest.mark.parametrize(
    ("kwargs", "exc", "words"),
    [
        ({"mask_ratio": 1.5}, ValueError, "mask_ratio"),
        ({"mask_ratio": -0.1}, ValueError, "mask_ratio"),
        ({"mask_ratio": "0.5"}, TypeError, "mask_ratio"),
        ({"noise": torch.rand(2, 17)}, ValueError, "noise"),
        ({"noise": torch.rand(16)}, ValueError, "noise"),
        ({"num_prefix_tokens": 17}, ValueError, "num_prefix_tokens"),
    ],
)
def test_random_token_mask_bad_input(
    kwargs: dict[str, object], exc: type[Exception], words: str
) -> None:
    with pytest.raises(exc, match=words):
        masking.random_token_mask((2, 17), **kwargs)  # type: ignore[arg-type]


def test_random_token_mask_default_ratio_is_lightlys() -> None:
    # Functions that carry Lightly's names take Lightly's defaults: 0.6, so 16 patches → 9 masked.
    default = inspect.signature(masking.random_token_mask).parameters["mask_ratio"].default
    assert default == 0.6
    idx_keep, idx_mask = masking.random_token_mask((2, 17))
    assert idx_keep.shape == (2, 1 + 6) and idx_mask.shape == (2, 10)


@pytest.mark.parametrize("num_prefix_tokens", [0, 1, 4])
def test_random_token_mask_ratio_one_keeps_only_the_prefix(num_prefix_tokens: int) -> None:
    length = num_prefix_tokens + 16
    idx_keep, idx_mask = masking.random_token_mask(
        (3, length), mask_ratio=1.0, num_prefix_tokens=num_prefix_tokens
    )
    assert torch.equal(idx_keep, torch.arange(num_prefix_tokens).expand(3, -1))
    patches = torch.arange(num_prefix_tokens, length).expand(3, -1)
    assert torch.equal(idx_mask.sort(dim=1).values, patches)
    # With mask_class_token=True nothing is kept at all.
    idx_keep, idx_mask = masking.random_token_mask((3, length), 1.0, mask_class_token=True)
    assert idx_keep.shape == (3, 0) and idx_keep.dtype == torch.long
    assert torch.equal(idx_mask.sort(dim=1).values, torch.arange(length).expand(3, -1))


def test_repeat_token_returns_independent_storage() -> None:
    token = torch.randn(1, 1, 4)
    repeated = masking.repeat_token(token, (2, 3))
    assert repeated.shape == (2, 3, 4) and torch.equal(repeated, token.expand(2, 3, 4))
    repeated[0, 0] += 1.0  # writing into one position must not change the others (or the token)
    assert torch.equal(repeated[1, 2], token[0, 0]) and torch.equal(repeated[0, 1], token[0, 0])
    assert not torch.equal(repeated[0, 0], token[0, 0])
    # Gradients still flow back to the token, summed over every copy.
    learnable = torch.zeros(1, 1, 4, requires_grad=True)
    masking.repeat_token(learnable, (2, 3)).sum().backward()
    assert learnable.grad is not None and torch.equal(learnable.grad, torch.full((1, 1, 4), 6.0))


def test_random_masking_official_semantics() -> None:
    x = torch.randn(2, 16, 8)
    noise = torch.rand(2, 16)
    x_kept, mask, ids_restore = masking.random_masking(x, 0.75, noise=noise)
    ids_shuffle = torch.argsort(noise, dim=1)
    assert x_kept.shape == (2, 4, 8)
    assert torch.equal(ids_restore, torch.argsort(ids_shuffle, dim=1))
    assert torch.equal(x_kept, torch.stack([x[b, ids_shuffle[b, :4]] for b in range(2)]))
    # mask is 0 exactly at the kept positions, in the original order.
    for b in range(2):
        kept = set(ids_shuffle[b, :4].tolist())
        assert mask[b].tolist() == [0.0 if i in kept else 1.0 for i in range(16)]
    # ids_restore undoes the shuffle.
    shuffled = torch.stack([x[b, ids_shuffle[b]] for b in range(2)])
    restored = torch.gather(shuffled, 1, ids_restore.unsqueeze(-1).expand(-1, -1, 8))
    assert torch.equal(restored, x)


def test_random_masking_ratio_zero_keeps_everything() -> None:
    x = torch.randn(1, 9, 4)
    x_kept, mask, _ = masking.random_masking(x, 0.0)
    assert x_kept.shape == x.shape and mask.sum() == 0


def test_same_noise_same_split_in_both_conventions() -> None:
    noise = torch.rand(3, 49)
    _idx_keep, idx_mask = masking.random_token_mask((3, 50), 0.75, noise=noise)
    _, mask, _ = masking.random_masking(torch.zeros(3, 49, 2), 0.75, noise=noise)
    for b in range(3):
        assert sorted((idx_mask[b] - 1).tolist()) == torch.nonzero(mask[b]).flatten().tolist()


def test_restore_index_is_inverse_permutation() -> None:
    idx_keep, idx_mask = masking.random_token_mask((4, 10), 0.5)
    order = torch.cat([idx_keep, idx_mask], dim=1)
    restore = masking.restore_index(idx_keep, idx_mask)
    assert torch.equal(torch.gather(order, 1, restore), torch.arange(10).expand(4, -1))


def test_get_set_mask_at_index() -> None:
    tokens = torch.arange(2 * 5 * 3, dtype=torch.float32).reshape(2, 5, 3)
    index = torch.tensor([[0, 3], [4, 1]])
    got = masking.get_at_index(tokens, index)
    assert torch.equal(got[1, 0], tokens[1, 4]) and torch.equal(got[0, 1], tokens[0, 3])
    value = torch.full((2, 2, 3), -1.0)
    out = masking.set_at_index(tokens, index, value)
    assert (
        (out[0, 0] == -1).all() and (out[1, 1] == -1).all() and torch.equal(out[0, 1], tokens[0, 1])
    )
    assert torch.equal(tokens[0, 0], torch.tensor([0.0, 1.0, 2.0])), "input must not be modified"
    mask_token = torch.full((1, 1, 3), 7.0)
    masked = masking.mask_at_index(tokens, index, mask_token)
    assert (masked[0, 3] == 7).all() and torch.equal(masked[0, 2], tokens[0, 2])
    assert torch.equal(masking.repeat_token(mask_token, (2, 4)), mask_token.expand(2, 4, 3))
    assert masking.repeat_token(mask_token, (2, 4)).is_contiguous()
    cls = torch.zeros(1, 1, 3)
    assert torch.equal(masking.prepend_class_token(tokens, cls)[:, 0], torch.zeros(2, 3))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_index_helpers_keep_low_precision_dtype(dtype: torch.dtype) -> None:
    tokens = torch.randn(2, 5, 4, dtype=dtype)
    index = torch.tensor([[1], [2]])
    fp32_value = torch.randn(2, 1, 4)
    assert masking.set_at_index(tokens, index, fp32_value).dtype == dtype
    assert masking.mask_at_index(tokens, index, torch.randn(1, 1, 4)).dtype == dtype
    assert masking.prepend_class_token(tokens, torch.randn(1, 1, 4)).dtype == dtype


def test_index_out_of_range_and_wrong_dtype() -> None:
    tokens = torch.randn(2, 5, 4)
    with pytest.raises(ValueError, match=r"index values must lie in \[0, 4\]"):
        masking.get_at_index(tokens, torch.tensor([[5], [0]]))
    with pytest.raises(TypeError, match="index must have an integer dtype"):
        masking.get_at_index(tokens, torch.tensor([[0.0], [1.0]]))
    with pytest.raises(ValueError, match="index must have batch size 2"):
        masking.get_at_index(tokens, torch.tensor([[0]]))


@pytest.mark.parametrize(
    ("channels", "height", "width", "patch"), [(3, 32, 32, 8), (1, 12, 20, 4), (4, 8, 16, 8)]
)
def test_patchify_layout_and_roundtrip(channels: int, height: int, width: int, patch: int) -> None:
    images = torch.randn(2, channels, height, width)
    patches = masking.patchify(images, patch)
    grid_h, grid_w = height // patch, width // patch
    assert patches.shape == (2, grid_h * grid_w, patch * patch * channels)
    # Row-major patches; (p, q, c) pixel order inside a patch.
    i, j, p, q, c = grid_h - 1, 1, patch - 1, 2, channels - 1
    value = patches[1, i * grid_w + j, (p * patch + q) * channels + c]
    assert value == images[1, c, i * patch + p, j * patch + q]
    back = masking.unpatchify(patches, patch, channels=channels, image_size=(height, width))
    assert torch.equal(back, images)
    if grid_h == grid_w:
        assert torch.equal(masking.unpatchify(patches, patch), images)


def test_patchify_errors() -> None:
    with pytest.raises(ValueError, match="multiples of patch_size=16, got 225x225"):
        masking.patchify(torch.zeros(1, 3, 225, 225), 16)
    with pytest.raises(ValueError, match=r"images must have shape \(B, C, H, W\)"):
        masking.patchify(torch.zeros(3, 32, 32), 16)
    with pytest.raises(ValueError, match="image_size"):
        masking.unpatchify(torch.zeros(1, 15, 48), 4, image_size=(16, 16))
    with pytest.raises(ValueError, match="square patch grid"):
        masking.unpatchify(torch.zeros(1, 15, 48), 4)
