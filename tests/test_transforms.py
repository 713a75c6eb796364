"""Tests for ssl_mae.transforms: the per-image MAETransform and the batched on-device augment."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import RandomResizedCrop

from ssl_mae.transforms import (
    FASHION_MNIST_NORMALIZE,
    IMAGENET_NORMALIZE,
    BatchedMAEAugment,
    CropParams,
    MAETransform,
)

FASHION_MNIST_TRAIN = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")


def _rgb_image(height: int = 40, width: int = 52, seed: int = 0) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels, mode="RGB")


# --------------------------------------------------------------------------- constants


def test_imagenet_normalize_matches_lightly() -> None:
    from lightly.transforms.utils import IMAGENET_NORMALIZE as LIGHTLY_IMAGENET_NORMALIZE

    assert IMAGENET_NORMALIZE == LIGHTLY_IMAGENET_NORMALIZE


@pytest.mark.skipif(not FASHION_MNIST_TRAIN.exists(), reason="Fashion-MNIST not available")
def test_fashion_mnist_normalize_matches_data() -> None:
    with gzip.open(FASHION_MNIST_TRAIN) as file:
        raw = file.read()
    pixels = np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(-1, 28 * 28)
    # A fixed subset of 5000 images estimates the statistics to well within 0.005.
    subset = pixels[np.random.default_rng(0).choice(len(pixels), 5000, replace=False)] / 255.0
    assert len(FASHION_MNIST_NORMALIZE["mean"]) == len(FASHION_MNIST_NORMALIZE["std"]) == 1
    assert FASHION_MNIST_NORMALIZE["mean"][0] == pytest.approx(subset.mean(), abs=5e-3)
    assert FASHION_MNIST_NORMALIZE["std"][0] == pytest.approx(subset.std(), abs=5e-3)


# --------------------------------------------------------------------------- MAETransform


@pytest.mark.parametrize("input_size", [32, (24, 36)])
@pytest.mark.parametrize("normalize", [IMAGENET_NORMALIZE, None])
def test_mae_transform_matches_lightly(
    input_size: int | tuple[int, int], normalize: dict[str, list[float]] | None
) -> None:
    from lightly.transforms.mae_transform import MAETransform as LightlyMAETransform

    ours = MAETransform(input_size=input_size, min_scale=0.3, normalize=normalize)
    theirs = LightlyMAETransform(
        input_size=input_size,
        min_scale=0.3,
        normalize=normalize,  # type: ignore[arg-type]  # Lightly accepts None but types it as dict
    )
    image = _rgb_image()
    for seed in range(6):
        torch.manual_seed(seed)
        expected = theirs(image)
        torch.manual_seed(seed)
        got = ours(image)
        assert isinstance(got, list) and len(got) == 1
        assert got[0].dtype == torch.float32
        assert torch.equal(got[0], expected[0].as_subclass(torch.Tensor))


def test_mae_transform_output_shape_and_range() -> None:
    torch.manual_seed(0)
    (view,) = MAETransform(input_size=(16, 20), normalize=None)(_rgb_image())
    assert type(view) is torch.Tensor
    assert view.shape == (3, 16, 20)
    assert view.min() >= 0.0 and view.max() <= 1.0


def test_mae_transform_normalizes_with_given_statistics() -> None:
    normalize = {"mean": [0.2, 0.4, 0.6], "std": [0.5, 0.25, 0.1]}
    image = _rgb_image()
    torch.manual_seed(3)
    (raw,) = MAETransform(input_size=16, normalize=None)(image)
    torch.manual_seed(3)
    (normed,) = MAETransform(input_size=16, normalize=normalize)(image)
    mean = torch.tensor(normalize["mean"]).view(3, 1, 1)
    std = torch.tensor(normalize["std"]).view(3, 1, 1)
    torch.testing.assert_close(normed, (raw - mean) / std)


def test_mae_transform_grayscale() -> None:
    pixels = np.random.default_rng(1).integers(0, 256, (28, 28), dtype=np.uint8)
    image = Image.fromarray(pixels, mode="L")
    torch.manual_seed(0)
    (raw,) = MAETransform(input_size=20, normalize=None)(image)
    torch.manual_seed(0)
    (normed,) = MAETransform(input_size=20, normalize=FASHION_MNIST_NORMALIZE)(image)
    assert raw.shape == normed.shape == (1, 20, 20)
    mean, std = FASHION_MNIST_NORMALIZE["mean"][0], FASHION_MNIST_NORMALIZE["std"][0]
    torch.testing.assert_close(normed, (raw - mean) / std)


def _grey_image(seed: int = 1) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (28, 28), dtype=np.uint8)
    return Image.fromarray(pixels, mode="L")


@pytest.mark.parametrize("as_tensor", [False, True], ids=["pil", "tensor"])
def test_mae_transform_greyscale_with_default_normalize_is_lightlys(as_tensor: bool) -> None:
    from lightly.transforms.mae_transform import MAETransform as LightlyMAETransform

    image: Any = _grey_image()
    if as_tensor:
        image = torch.from_numpy(np.array(image)).unsqueeze(0)  # (1, H, W) uint8
    for seed in range(4):
        torch.manual_seed(seed)
        expected = LightlyMAETransform(input_size=20)(image)[0].as_subclass(torch.Tensor)
        torch.manual_seed(seed)
        (got,) = MAETransform(input_size=20)(image)
        assert got.shape == expected.shape == (3, 20, 20)
        assert torch.equal(got, expected)
    # The same as converting the image to RGB first.
    torch.manual_seed(0)
    (from_rgb,) = MAETransform(input_size=20)(_grey_image().convert("RGB"))
    torch.manual_seed(0)
    assert torch.equal(MAETransform(input_size=20)(_grey_image())[0], from_rgb)


@pytest.mark.parametrize("as_tensor", [False, True], ids=["pil", "tensor"])
def test_mae_transform_empty_normalize_means_none_as_in_lightly(as_tensor: bool) -> None:
    from lightly.transforms.mae_transform import MAETransform as LightlyMAETransform

    image: Any = _rgb_image()
    if as_tensor:
        image = torch.from_numpy(np.array(image)).permute(2, 0, 1)
    torch.manual_seed(0)
    expected = LightlyMAETransform(input_size=16, normalize={})(image)[0]
    torch.manual_seed(0)
    (got,) = MAETransform(input_size=16, normalize={})(image)
    assert torch.equal(got, expected.as_subclass(torch.Tensor))
    assert got.min() >= 0.0 and got.max() <= 1.0
    assert MAETransform(normalize={}).normalize is None


def test_mae_transform_num_channels_option() -> None:
    grey, rgb = _grey_image(), _rgb_image()
    torch.manual_seed(0)
    (one,) = MAETransform(input_size=20, normalize=FASHION_MNIST_NORMALIZE, num_channels=1)(grey)
    assert one.shape == (1, 20, 20)
    # RGB images become greyscale (PIL's "L" luma) for a 1-channel model.
    torch.manual_seed(0)
    (from_rgb,) = MAETransform(input_size=20, normalize=None, num_channels=1)(rgb)
    torch.manual_seed(0)
    (expected,) = MAETransform(input_size=20, normalize=None)(rgb.convert("L"))
    assert from_rgb.shape == (1, 20, 20) and torch.equal(from_rgb, expected)
    # Greyscale images are repeated, even without normalisation.
    torch.manual_seed(0)
    (three,) = MAETransform(input_size=20, normalize=None, num_channels=3)(grey)
    assert three.shape == (3, 20, 20) and torch.equal(three[0], three[2])
    with pytest.raises(ValueError, match=r"normalize has 3 .* num_channels=1"):
        MAETransform(num_channels=1)
    with pytest.raises(ValueError, match=r"num_channels must be a positive int"):
        MAETransform(num_channels=0)
    with pytest.raises(ValueError, match=r"4 channels, which cannot become num_channels=3"):
        MAETransform(input_size=8, num_channels=3)(torch.rand(4, 12, 12))


def test_mae_transform_rejects_channel_mismatch() -> None:
    image = Image.fromarray(np.zeros((28, 28, 2), dtype=np.uint8), mode="LA")
    state = torch.get_rng_state()
    with pytest.raises(ValueError, match=r"normalize has 3 .* 2 channel"):
        MAETransform(input_size=20)(image)
    # The failed call must not have consumed random numbers.
    assert torch.equal(torch.get_rng_state(), state)
    with pytest.raises(ValueError, match=r"normalize has 3 .* 4 channel"):
        MAETransform(input_size=8)(torch.rand(4, 12, 12))


def test_mae_transform_four_channel_tensor() -> None:
    normalize = {"mean": [0.5] * 4, "std": [0.25] * 4}
    uint8_image = torch.randint(0, 256, (4, 30, 26), dtype=torch.uint8)
    float_image = uint8_image.float() / 255.0
    transform = MAETransform(input_size=(12, 14), normalize=normalize)
    torch.manual_seed(5)
    (from_uint8,) = transform(uint8_image)
    torch.manual_seed(5)
    (from_float,) = transform(float_image)
    assert from_uint8.shape == from_float.shape == (4, 12, 14)
    assert from_uint8.dtype == from_float.dtype == torch.float32
    # Same crop and flip for both dtypes. The uint8 bicubic path is separable fixed-point: it
    # rounds and clips to [0, 255] between its horizontal and vertical passes, where the float
    # path keeps the overshoot, so single pixels at sharp edges differ by a few grey levels
    # (3.7 seen with one torch thread); on average they agree to under half a level.
    grey_level = 1.0 / 255.0 / 0.25
    torch.testing.assert_close(from_uint8, from_float, atol=6 * grey_level, rtol=0)
    assert (from_uint8 - from_float).abs().mean() < 0.5 * grey_level


def test_mae_transform_one_entry_normalize_applies_to_every_channel() -> None:
    image = torch.rand(3, 16, 16)
    torch.manual_seed(2)
    (raw,) = MAETransform(input_size=8, normalize=None)(image)
    torch.manual_seed(2)
    (normed,) = MAETransform(input_size=8, normalize={"mean": [0.5], "std": [0.2]})(image)
    torch.testing.assert_close(normed, (raw - 0.5) / 0.2)


def test_mae_transform_float_tensor_stays_in_unit_range() -> None:
    # A checkerboard makes bicubic upsampling overshoot; outputs must still lie in [0, 1].
    board = (torch.arange(8).view(8, 1) + torch.arange(8).view(1, 8)) % 2
    image = board.float().expand(3, 8, 8)
    torch.manual_seed(0)
    (view,) = MAETransform(input_size=32, normalize=None)(image)
    assert view.min() >= 0.0 and view.max() <= 1.0


@pytest.mark.parametrize(
    ("kwargs", "error", "pattern"),
    [
        ({"input_size": 0}, ValueError, "input_size"),
        ({"input_size": (16, -1)}, ValueError, "input_size"),
        ({"input_size": 2.5}, TypeError, "input_size"),
        ({"min_scale": 0.0}, ValueError, r"min_scale .*got 0.0"),
        ({"min_scale": 1.5}, ValueError, r"min_scale .*got 1.5"),
        ({"normalize": {"mean": [0.5]}}, ValueError, r"normalize .*std"),
        ({"normalize": {"mean": [0.5, 0.5], "std": [0.5]}}, ValueError, "same length"),
        ({"normalize": {"mean": [0.5], "std": [0.0]}}, ValueError, r"std.*positive"),
        ({"normalize": [0.5, 0.5]}, TypeError, "normalize"),
    ],
)
def test_mae_transform_rejects_bad_arguments(
    kwargs: dict[str, Any], error: type[Exception], pattern: str
) -> None:
    with pytest.raises(error, match=pattern):
        MAETransform(**kwargs)


def test_mae_transform_rejects_bad_images() -> None:
    transform = MAETransform(input_size=8, normalize=None)
    with pytest.raises(TypeError, match="image"):
        transform(np.zeros((8, 8, 3), dtype=np.uint8))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"image .*\(C, H, W\)"):
        transform(torch.rand(2, 3, 8, 8))
    with pytest.raises(TypeError, match=r"image .*int64"):
        transform(torch.zeros(3, 8, 8, dtype=torch.long))


# --------------------------------------------------------------------------- BatchedMAEAugment


def test_batched_output_shape_and_dtype() -> None:
    augment = BatchedMAEAugment(input_size=(12, 16))
    images = torch.randint(0, 256, (5, 3, 20, 30), dtype=torch.uint8)
    out = augment(images, generator=torch.Generator().manual_seed(0))
    assert out.shape == (5, 3, 12, 16)
    assert out.dtype == torch.float32
    assert augment(images.double() / 255).dtype == torch.float64
    assert augment(images.to(torch.bfloat16) / 255).dtype == torch.bfloat16


def test_batched_low_precision_input_keeps_crop_geometry() -> None:
    # bfloat16 sampling coordinates would land up to a pixel off on a 256-px image; the crop of a
    # bfloat16 batch must match the float32 result up to bfloat16 rounding of the values.
    augment = BatchedMAEAugment(input_size=64, normalize=None)
    images = torch.rand(4, 1, 256, 256).to(torch.bfloat16)
    params = augment.sample_params(4, 256, 256, torch.Generator().manual_seed(0))
    low = augment.apply_params(images, params).float()
    full = augment.apply_params(images.float(), params)
    torch.testing.assert_close(low, full, atol=1e-2, rtol=0)


def test_batched_crop_boxes_follow_scale_and_ratio() -> None:
    min_scale, ratio = 0.2, (3 / 4, 4 / 3)
    height, width = 48, 64
    augment = BatchedMAEAugment(input_size=16, min_scale=min_scale, ratio=ratio)
    params = augment.sample_params(4000, height, width, torch.Generator().manual_seed(0))
    assert isinstance(params, CropParams)
    assert all(p.shape == (4000,) for p in params)
    top, left, crop_h, crop_w = (p.double() for p in params[:4])
    assert (top >= 0).all() and (left >= 0).all()
    assert (top + crop_h <= height).all() and (left + crop_w <= width).all()
    # Sides are rounded to whole pixels, so the unrounded box (whose area fraction lies in
    # [min_scale, 1] and ratio in `ratio`) is within half a pixel of each observed side.
    low_area = (crop_h - 0.5) * (crop_w - 0.5) / (height * width)
    high_area = (crop_h + 0.5) * (crop_w + 0.5) / (height * width)
    assert (high_area >= min_scale).all() and (low_area <= 1.0).all()
    assert ((crop_w + 0.5) / (crop_h - 0.5) >= ratio[0]).all()
    assert ((crop_w - 0.5) / (crop_h + 0.5) <= ratio[1]).all()
    area = crop_h * crop_w / (height * width)
    # The whole allowed range of areas is used, end to end.
    assert area.min() < min_scale + 0.05 and area.max() > 0.95
    # Offsets spread over the whole allowed range, not just the centre.
    assert (top == 0).any() and (top + crop_h == height).any()
    assert (left == 0).any() and (left + crop_w == width).any()
    # Area fractions are uniform in [min_scale, 1] and ratios log-uniform, except where a try
    # does not fit; the mean area and the share of wide boxes match torchvision's sampler.
    torch.manual_seed(0)
    dummy = torch.zeros(1, height, width)
    reference = np.array(
        [RandomResizedCrop.get_params(dummy, [min_scale, 1.0], list(ratio)) for _ in range(4000)]
    )
    ref_area = reference[:, 2] * reference[:, 3] / (height * width)
    ref_wide = (reference[:, 3] > reference[:, 2]).mean()
    assert ((crop_w > crop_h).double().mean().item()) == pytest.approx(ref_wide, abs=0.03)
    assert area.mean().item() == pytest.approx(float(np.mean(ref_area)), abs=0.02)


def test_batched_fallback_matches_torchvision() -> None:
    # No box with ratio 10 fits a square image, so every try fails and the central fallback,
    # cut to the nearest allowed ratio, is used.
    augment = BatchedMAEAugment(input_size=8, min_scale=0.5, ratio=(10.0, 12.0))
    params = augment.sample_params(7, 30, 30, torch.Generator().manual_seed(0))
    expected = RandomResizedCrop.get_params(torch.zeros(1, 30, 30), [0.5, 1.0], [10.0, 12.0])
    for i in range(7):
        got = (params.top[i], params.left[i], params.height[i], params.width[i])
        assert tuple(int(v) for v in got) == expected


def test_batched_flips_about_half() -> None:
    augment = BatchedMAEAugment(input_size=8)
    params = augment.sample_params(4000, 16, 16, torch.Generator().manual_seed(1))
    assert params.flip.dtype == torch.bool
    assert 0.45 <= params.flip.float().mean().item() <= 0.55
    never = BatchedMAEAugment(input_size=8, hflip_prob=0.0).sample_params(100, 16, 16)
    assert not never.flip.any()


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic", "nearest"])
def test_batched_identity_crop_reproduces_input_or_mirror(
    channels: int, interpolation: str
) -> None:
    height, width = 10, 14
    augment = BatchedMAEAugment(
        input_size=(height, width),
        min_scale=1.0,
        ratio=(width / height, width / height),
        normalize=None,
        interpolation=interpolation,  # type: ignore[arg-type]
    )
    images = torch.rand(64, channels, height, width)
    generator = torch.Generator().manual_seed(0)
    params = augment.sample_params(64, height, width, torch.Generator().manual_seed(0))
    out = augment(images, generator=generator)
    assert (params.height == height).all() and (params.width == width).all()
    assert 0 < params.flip.sum() < 64
    expected = torch.where(params.flip.view(-1, 1, 1, 1), images.flip(-1), images)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)


def test_batched_crop_region_is_resampled_correctly() -> None:
    # A crop resized to its own size is an exact copy of that region.
    augment = BatchedMAEAugment(input_size=(4, 6), normalize=None)
    images = torch.rand(2, 3, 12, 15)
    params = CropParams(
        top=torch.tensor([2, 8]),
        left=torch.tensor([5, 0]),
        height=torch.tensor([4, 4]),
        width=torch.tensor([6, 6]),
        flip=torch.tensor([False, True]),
    )
    out = augment.apply_params(images, params)
    torch.testing.assert_close(out[0], images[0, :, 2:6, 5:11], atol=1e-5, rtol=0)
    torch.testing.assert_close(out[1], images[1, :, 8:12, 0:6].flip(-1), atol=1e-5, rtol=0)


def test_batched_normalizes_uint8() -> None:
    normalize = {"mean": [0.1, 0.5, 0.9], "std": [0.2, 0.3, 0.4]}
    images = torch.randint(0, 256, (3, 3, 9, 9), dtype=torch.uint8)
    plain = BatchedMAEAugment(9, min_scale=1.0, ratio=(1.0, 1.0), normalize=None)
    normed = BatchedMAEAugment(9, min_scale=1.0, ratio=(1.0, 1.0), normalize=normalize)
    raw = plain(images, generator=torch.Generator().manual_seed(4))
    out = normed(images, generator=torch.Generator().manual_seed(4))
    mean = torch.tensor(normalize["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(normalize["std"]).view(1, 3, 1, 1)
    assert raw.min() >= 0 and raw.max() <= 1
    torch.testing.assert_close(out, (raw - mean) / std)


def test_batched_same_seed_same_output() -> None:
    augment = BatchedMAEAugment(input_size=(12, 10), normalize=FASHION_MNIST_NORMALIZE)
    images = torch.randint(0, 256, (6, 1, 28, 20), dtype=torch.uint8)
    first = augment(images, generator=torch.Generator().manual_seed(7))
    second = augment(images, generator=torch.Generator().manual_seed(7))
    other = augment(images, generator=torch.Generator().manual_seed(8))
    assert first.shape == (6, 1, 12, 10)
    assert torch.equal(first, second)
    assert not torch.equal(first, other)
    # Samples get different crops, not one crop shared by the whole batch.
    params = augment.sample_params(6, 28, 20, torch.Generator().manual_seed(7))
    assert len({(int(t), int(h)) for t, h in zip(params.top, params.height, strict=True)}) > 1


def test_batched_channel_mismatch_and_bad_inputs() -> None:
    augment = BatchedMAEAugment(input_size=8)
    with pytest.raises(ValueError, match=r"normalize has 3 .* 1 channel"):
        augment(torch.rand(2, 1, 16, 16))
    with pytest.raises(ValueError, match=r"images .*\(B, C, H, W\)"):
        augment(torch.rand(1, 16, 16))
    with pytest.raises(TypeError, match=r"images .*int64"):
        augment(torch.zeros(2, 3, 16, 16, dtype=torch.long))
    with pytest.raises(ValueError, match="params"):
        augment.apply_params(torch.rand(2, 3, 16, 16), augment.sample_params(3, 16, 16))
    with pytest.raises(ValueError, match="batch_size"):
        augment.sample_params(0, 16, 16)


@pytest.mark.parametrize(
    ("kwargs", "error", "pattern"),
    [
        ({"input_size": 0}, ValueError, "input_size"),
        ({"min_scale": 0.0}, ValueError, r"min_scale .*got 0.0"),
        ({"ratio": (2.0, 1.0)}, ValueError, r"ratio .*\(2.0, 1.0\)"),
        ({"ratio": (0.0, 1.0)}, ValueError, "ratio"),
        ({"ratio": 1.0}, TypeError, "ratio"),
        ({"hflip_prob": 1.5}, ValueError, r"hflip_prob .*1.5"),
        ({"interpolation": "area"}, ValueError, r"interpolation .*'area'"),
        ({"normalize": {"mean": [0.5, 0.5], "std": [0.5]}}, ValueError, "same length"),
    ],
)
def test_batched_rejects_bad_arguments(
    kwargs: dict[str, Any], error: type[Exception], pattern: str
) -> None:
    with pytest.raises(error, match=pattern):
        BatchedMAEAugment(**kwargs)
