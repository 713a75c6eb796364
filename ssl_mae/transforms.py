"""Image augmentations for MAE pre-training.

Two flavours of the same augmentation (random resized crop + horizontal flip + normalise, the
only augmentations the MAE paper uses for pre-training):

- :class:`MAETransform` works on one image at a time inside a ``Dataset`` and is a drop-in for
  ``lightly.transforms.MAETransform``: with the same torch seed it gives the same tensor.
- :class:`BatchedMAEAugment` works on a whole batch that is already on the accelerator, with a
  different crop and flip per sample but no Python loop over the batch and no host syncs, so the
  data loader only has to decode and collate.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal, NamedTuple

import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn
from torchvision.transforms import v2

from ssl_mae._validation import (
    as_device,
    check_finite,
    check_float,
    check_generator,
    check_normalize,
    check_positive_int,
    check_tensor,
    reads_back,
    to_2tuple,
)

IMAGENET_NORMALIZE: dict[str, list[float]] = {
    "mean": [0.485, 0.456, 0.406],
    "std": [0.229, 0.224, 0.225],
}
"""Per-channel mean and std of ImageNet RGB images scaled to [0, 1] (same as Lightly/timm)."""

# Computed once from all 60,000 training images in
# /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz: pixel values divided by 255, then
# the mean and the population std over every pixel of every image (0.28604..., 0.35302...).
FASHION_MNIST_NORMALIZE: dict[str, list[float]] = {"mean": [0.2860], "std": [0.3530]}
"""Mean and std of Fashion-MNIST training pixels scaled to [0, 1] (one grayscale channel)."""

Interpolation = Literal["bilinear", "bicubic", "nearest"]


def _check_pixel_range(pixels: Tensor, name: str) -> None:
    """Float images must hold finite values in [0, 1]: the transforms clamp their output to that
    range, so a [0, 255] float image would come out white and a normalised one black. Like
    every value check, this reads back CPU tensors only."""
    if not pixels.is_floating_point() or not pixels.numel() or not reads_back(pixels):
        return
    check_finite(pixels, name)
    low, high = float(pixels.min()), float(pixels.max())
    if low < 0.0 or high > 1.0:
        raise ValueError(
            f"{name} with a floating point dtype must hold values in [0, 1], got values in "
            f"[{low:g}, {high:g}]; pass uint8 images or divide by 255"
        )


def _check_image_tensor(image: object, name: str, ndim: int, shape_doc: str) -> Tensor:
    """Checks an image tensor (one image or a batch): uint8 or float in [0, 1], not empty."""
    tensor = check_tensor(image, name, ndim=ndim, shape_doc=shape_doc)
    if not (tensor.is_floating_point() or tensor.dtype == torch.uint8):
        raise TypeError(
            f"{name} must be a uint8 or floating point tensor, got dtype {tensor.dtype}"
        )
    if not all(tensor.shape):
        raise ValueError(f"{name} must not be empty, got shape {tuple(tensor.shape)}")
    _check_pixel_range(tensor, name)
    return tensor


def _to_8_bit(image: Image.Image) -> Image.Image:
    """PIL images with 16/32-bit integer or float pixels (modes ``I;16``, ``I``, ``F``) to 8-bit
    ``L`` with the image-folder rules, so ``ToDtype(scale=True)`` sees 0..255 values (it
    would pass float pixels through unscaled and divide 32-bit integers by 2**31)."""
    if image.mode not in ("I", "F") and not image.mode.startswith("I;16"):
        return image
    from ssl_mae.data.image_modes import convert_image_mode

    return convert_image_mode(image, "L")


def _check_min_scale(min_scale: object) -> float:
    if isinstance(min_scale, bool) or not isinstance(min_scale, (int, float)):
        raise TypeError(f"min_scale must be a float in (0, 1], got {min_scale!r}")
    if not 0.0 < float(min_scale) <= 1.0:
        raise ValueError(f"min_scale must be in (0, 1], got {min_scale!r}")
    return float(min_scale)


def _check_channels(num_channels: int, num_entries: int) -> None:
    """A 1-entry normalisation applies to every channel; otherwise counts must match.

    Without this check a 3-entry mean broadcasts a 1-channel image to 3 channels and the model
    silently trains on garbage.
    """
    if num_entries not in (1, num_channels):
        raise ValueError(
            f"normalize has {num_entries} mean/std entries but the image has {num_channels} "
            f"channel(s); pass a normalize dict with 1 or {num_channels} entries "
            f"(e.g. FASHION_MNIST_NORMALIZE for grayscale), normalize=None, or convert the image"
        )


class MAETransform:
    """Implements the view augmentation of MAE [0], compatible with Lightly's ``MAETransform``.

    Applies ``RandomResizedCrop(input_size, scale=(min_scale, 1), bicubic)``,
    ``RandomHorizontalFlip()``, conversion to a float tensor in [0, 1] and ``Normalize``, with the
    torchvision v2 transforms in the same order as Lightly, so the same torch seed gives the same
    output for the same image.

    As in Lightly, a 1-channel (greyscale) image normalised with C-entry statistics (e.g. the
    default ImageNet ones) comes out with C channels, each normalised with its own mean and std,
    exactly as if it had been converted to RGB first; an empty ``normalize`` dict means no
    normalisation. ``num_channels`` fixes the output channel count instead.

    Input to this transform:
        PIL image (any mode with 8-bit bands, e.g. ``"L"``, ``"RGB"``, ``"RGBA"``) or tensor of
        shape (C, H, W) with any C, either ``uint8`` in [0, 255] or floating point in [0, 1].

    Output of this transform:
        List holding one float tensor of shape (C_out, input_h, input_w).

    - [0]: Masked Autoencoder, 2021, https://arxiv.org/abs/2111.06377

    Args:
        input_size: Output size in pixels, an int for square outputs or (height, width).
        min_scale: Smallest crop area as a fraction of the image area, in (0, 1].
        normalize: Dict with ``"mean"`` and ``"std"`` lists, one entry per channel (or one entry
            applied to every channel); ``None`` or ``{}`` returns values in [0, 1].
        num_channels: Channels of the output. None (Lightly's behaviour): the image's own,
            except that a 1-channel image takes the channel count of ``normalize``. 1 turns RGB
            images into greyscale (ITU-R 601-2 luma, as PIL's ``"L"`` mode) so a 1-channel model
            can use RGB data; 3 (or any C) repeats greyscale images C times. ``normalize`` must
            then have 1 or ``num_channels`` entries.
    """

    def __init__(
        self,
        input_size: int | tuple[int, int] = 224,
        min_scale: float = 0.2,
        normalize: dict[str, list[float]] | None = IMAGENET_NORMALIZE,
        num_channels: int | None = None,
    ) -> None:
        self.input_size = to_2tuple(input_size, "input_size")
        self.min_scale = _check_min_scale(min_scale)
        if isinstance(normalize, dict) and not normalize:
            normalize = None  # Lightly: an empty dict means no normalisation
        self.normalize = normalize
        self._mean_std = None if normalize is None else check_normalize(normalize)
        if num_channels is not None:
            check_positive_int(num_channels, "num_channels")
            if self._mean_std is not None and len(self._mean_std[0]) not in (1, num_channels):
                raise ValueError(
                    f"normalize has {len(self._mean_std[0])} mean/std entries but "
                    f"num_channels={num_channels}; pass a normalize dict with 1 or "
                    f"{num_channels} entries (e.g. FASHION_MNIST_NORMALIZE for 1 channel) or None"
                )
        self.num_channels = num_channels
        self.transform = v2.Compose(
            [
                # Lightly passes an int straight through; a (h, w) pair of equal sides crops
                # identically, so parity holds either way.
                v2.RandomResizedCrop(
                    self.input_size,
                    scale=(self.min_scale, 1.0),
                    interpolation=v2.InterpolationMode.BICUBIC,
                    antialias=True,
                ),
                v2.RandomHorizontalFlip(),
                v2.ToImage(),
                v2.ToDtype(torch.float32, scale=True),
            ]
        )

    def _output_channels(self, num_channels: int) -> int:
        """Channels of the view of an image with ``num_channels``; raises for impossible pairs."""
        if self.num_channels is not None:
            to_grey = num_channels == 3 and self.num_channels == 1
            if num_channels not in (1, self.num_channels) and not to_grey:
                raise ValueError(
                    f"image has {num_channels} channels, which cannot become num_channels="
                    f"{self.num_channels}; only 1-channel images are repeated and 3-channel (RGB) "
                    "images turned into greyscale"
                )
            return self.num_channels
        if self._mean_std is None:
            return num_channels
        num_entries = len(self._mean_std[0])
        if num_channels == 1:
            return num_entries
        _check_channels(num_channels, num_entries)
        return num_channels

    def __call__(self, image: Image.Image | Tensor) -> list[Tensor]:
        """Applies the augmentation to one image.

        Args:
            image: PIL image, or tensor of shape (C, H, W) (``uint8`` or float in [0, 1]).

        Returns:
            List with one float tensor of shape (C_out, input_h, input_w).
        """
        is_tensor = isinstance(image, Tensor)
        if is_tensor:
            tensor = _check_image_tensor(image, "image", 3, "(C, H, W)")
            num_channels = tensor.shape[0]
        elif isinstance(image, Image.Image):
            if not (image.width and image.height):
                raise ValueError(f"image must not be empty, got size {image.size}")
            image = _to_8_bit(image)
            num_channels = len(image.getbands())
        else:
            raise TypeError(
                f"image must be a PIL image or a (C, H, W) torch.Tensor, got {type(image)}"
            )
        # Check before drawing random numbers so a failed call leaves the RNG untouched.
        out_channels = self._output_channels(num_channels)
        if out_channels == 1 and num_channels == 3:
            image = v2.functional.rgb_to_grayscale(image)

        view: Tensor = self.transform(image).as_subclass(Tensor)
        if is_tensor and view.is_floating_point():
            # Bicubic resampling overshoots; PIL saturates uint8 images, do the same for floats.
            view = view.clamp(0.0, 1.0)
        if view.shape[0] != out_channels:  # a greyscale image, repeated
            view = view.repeat(out_channels, 1, 1)
        if self._mean_std is not None:
            mean, std = self._mean_std
            if len(mean) == 1:
                mean, std = mean * out_channels, std * out_channels
            view = v2.functional.normalize(view, mean=mean, std=std)
        return [view]

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(input_size={self.input_size}, min_scale={self.min_scale}, "
            f"normalize={self.normalize}, num_channels={self.num_channels})"
        )


class CropParams(NamedTuple):
    """Per-sample random resized crop and flip parameters, all tensors of shape (B,).

    Attributes:
        top: Row of the crop's top edge in input pixels (long).
        left: Column of the crop's left edge in input pixels (long).
        height: Crop height in input pixels (long), ``1 <= height <= H``.
        width: Crop width in input pixels (long), ``1 <= width <= W``.
        flip: Whether the sample is mirrored left-right (bool).
    """

    top: Tensor
    left: Tensor
    height: Tensor
    width: Tensor
    flip: Tensor


class BatchedMAEAugment(nn.Module):
    """Random resized crop + horizontal flip + normalise for a whole batch on its own device.

    Crop boxes are drawn like torchvision's ``RandomResizedCrop.get_params``: up to 10 tries of
    area fraction ``U(min_scale, 1)`` and log aspect ratio ``U(log ratio)``, the first box that
    fits is used, and a central crop clamped to the ratio range is the fallback. All tries are
    drawn at once for every sample, and the crops are resampled in a single
    ``affine_grid``/``grid_sample`` pass, so there is no loop over the batch and no host sync.

    Output pixel ``x`` samples input column ``left + (x + 0.5) * width / out_w - 0.5``, i.e. pixel
    centres map to pixel centres: an identity crop reproduces the input (up to float rounding).
    Unlike torchvision there is no antialiasing when crops are shrunk by large factors.

    Args:
        input_size: Output size, an int for square outputs or (height, width).
        min_scale: Smallest crop area as a fraction of the image area, in (0, 1].
        ratio: Range (min, max) of crop aspect ratios width / height, with 0 < min <= max.
        hflip_prob: Probability of a horizontal flip, in [0, 1].
        normalize: Dict with ``"mean"`` and ``"std"`` (1 or C entries); ``None`` skips it.
        interpolation: ``"bilinear"``, ``"bicubic"`` or ``"nearest"`` (``grid_sample`` modes).
    """

    mean: Tensor
    std: Tensor

    def __init__(
        self,
        input_size: int | tuple[int, int] = 224,
        min_scale: float = 0.2,
        ratio: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0),
        hflip_prob: float = 0.5,
        normalize: dict[str, list[float]] | None = IMAGENET_NORMALIZE,
        interpolation: Interpolation = "bilinear",
    ) -> None:
        super().__init__()
        self.input_size = to_2tuple(input_size, "input_size")
        self.min_scale = _check_min_scale(min_scale)
        if (
            not isinstance(ratio, Sequence)
            or len(ratio) != 2
            or not all(isinstance(r, (int, float)) and not isinstance(r, bool) for r in ratio)
        ):
            raise TypeError(f"ratio must be a (min, max) pair of floats, got {ratio!r}")
        if not 0.0 < ratio[0] <= ratio[1] or not math.isfinite(ratio[1]):
            raise ValueError(f"ratio must satisfy 0 < min <= max < inf, got {ratio!r}")
        self.ratio = (float(ratio[0]), float(ratio[1]))
        self.hflip_prob = check_float(hflip_prob, "hflip_prob", 0.0, 1.0)
        if interpolation not in ("bilinear", "bicubic", "nearest"):
            raise ValueError(
                "interpolation must be one of 'bilinear', 'bicubic', 'nearest', "
                f"got {interpolation!r}"
            )
        self.interpolation: Interpolation = interpolation
        self.normalize = normalize
        mean, std = ([], []) if normalize is None else check_normalize(normalize)
        # Buffers follow module.to(device); not persistent since they are config, not state.
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32), persistent=False)

    def sample_params(
        self,
        batch_size: int,
        height: int,
        width: int,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> CropParams:
        """Draws a crop box and a flip flag for every sample.

        Args:
            batch_size: Number of samples B.
            height: Input image height H in pixels.
            width: Input image width W in pixels.
            generator: Random generator; numbers are drawn on its device. ``None`` uses the
                default generator of ``device``.
            device: Device of the returned tensors (default: the generator's device, else CPU).

        Returns:
            :class:`CropParams` with tensors of shape (B,) on ``device``.
        """
        for name, value in (("batch_size", batch_size), ("height", height), ("width", width)):
            check_positive_int(value, name)
        check_generator(generator)
        draw_device = generator.device if generator is not None else as_device(device or "cpu")
        out_device = as_device(device) if device is not None else draw_device
        tries = 10
        # float64 keeps rounding of the box sides as close to torchvision's Python floats as
        # possible; MPS has no float64.
        dtype = torch.float32 if draw_device.type == "mps" else torch.float64
        # All tries of all samples in one draw: the stream layout is fixed, hence reproducible.
        uniform = torch.rand(
            (4, batch_size, tries), generator=generator, device=draw_device, dtype=dtype
        )
        u_area, u_ratio, u_top, u_left = uniform
        area = float(height * width)
        log_lo, log_hi = math.log(self.ratio[0]), math.log(self.ratio[1])
        target_area = area * (self.min_scale + (1.0 - self.min_scale) * u_area)
        aspect = torch.exp(log_lo + (log_hi - log_lo) * u_ratio)
        crop_w = torch.round(torch.sqrt(target_area * aspect))
        crop_h = torch.round(torch.sqrt(target_area / aspect))
        fits = (crop_w > 0) & (crop_w <= width) & (crop_h > 0) & (crop_h <= height)
        # argmax returns the first maximum, i.e. the first try that fits (as torchvision's loop).
        first = fits.to(torch.uint8).argmax(dim=1, keepdim=True)
        any_fits = fits.any(dim=1)

        def pick(values: Tensor) -> Tensor:
            return values.gather(1, first).squeeze(1)

        crop_h, crop_w = pick(crop_h), pick(crop_w)
        # Offsets uniform over all positions that keep the box inside the image; the clamp guards
        # against u * n rounding up to n.
        top = torch.minimum(torch.floor(pick(u_top) * (height - crop_h + 1)), height - crop_h)
        left = torch.minimum(torch.floor(pick(u_left) * (width - crop_w + 1)), width - crop_w)

        fallback_h, fallback_w = self._fallback_size(height, width)
        crop_h = torch.where(any_fits, crop_h, float(fallback_h))
        crop_w = torch.where(any_fits, crop_w, float(fallback_w))
        top = torch.where(any_fits, top, float((height - fallback_h) // 2))
        left = torch.where(any_fits, left, float((width - fallback_w) // 2))

        flip = torch.rand(batch_size, generator=generator, device=draw_device) < self.hflip_prob
        return CropParams(
            top=top.long().to(out_device),
            left=left.long().to(out_device),
            height=crop_h.long().to(out_device),
            width=crop_w.long().to(out_device),
            flip=flip.to(out_device),
        )

    def _fallback_size(self, height: int, width: int) -> tuple[int, int]:
        """Central-crop size used when no try fits: the whole image, cut to the ratio range."""
        in_ratio = width / height
        if in_ratio < self.ratio[0]:
            return round(width / self.ratio[0]), width
        if in_ratio > self.ratio[1]:
            return height, round(height * self.ratio[1])
        return height, width

    def apply_params(self, images: Tensor, params: CropParams) -> Tensor:
        """Crops, resizes, flips and normalises ``images`` with given parameters.

        Args:
            images: (B, C, H, W), ``uint8`` in [0, 255] or floating point in [0, 1].
            params: Crop boxes and flips, tensors of shape (B,) (see :meth:`sample_params`).

        Returns:
            (B, C, out_h, out_w) floating point tensor (float32 for ``uint8`` input, else the input
            dtype), normalised if ``normalize`` was given.
        """
        images = self._check_images(images)
        batch, channels, height, width = images.shape
        if not isinstance(params, CropParams):
            raise TypeError(f"params must be a CropParams, got {type(params)}")
        if any(p.shape != (batch,) for p in params):
            raise ValueError(
                f"params must hold tensors of shape (B,) = ({batch},), got shapes "
                f"{[tuple(p.shape) for p in params]}"
            )
        if self.normalize is not None:
            _check_channels(channels, self.mean.numel())

        scale = 1.0 if images.is_floating_point() else 1.0 / 255.0
        out_dtype = images.dtype if images.is_floating_point() else torch.float32
        # Sampling coordinates in half precision would be off by about a pixel at 224 px, so
        # float16/bfloat16 batches are resampled in float32 and cast back at the end.
        dtype = torch.promote_types(out_dtype, torch.float32)
        pixels, device = images.to(dtype), images.device
        top, left, crop_h, crop_w = (p.to(device=device, dtype=dtype) for p in params[:4])
        sign = 1.0 - 2.0 * params.flip.to(device=device, dtype=dtype)
        # affine_grid (align_corners=False) yields output pixel centres in [-1, 1]; mapping them
        # with scale size_crop / size_in and shift (2 * start + size_crop) / size_in - 1 lands them
        # on the crop's pixel centres in grid_sample's normalised input coordinates. A negative x
        # scale mirrors the crop.
        theta = torch.zeros(batch, 2, 3, device=device, dtype=dtype)
        theta[:, 0, 0] = sign * crop_w / width
        theta[:, 0, 2] = (2.0 * left + crop_w) / width - 1.0
        theta[:, 1, 1] = crop_h / height
        theta[:, 1, 2] = (2.0 * top + crop_h) / height - 1.0
        out_h, out_w = self.input_size
        grid = F.affine_grid(theta, [batch, channels, out_h, out_w], align_corners=False)
        out = F.grid_sample(
            pixels, grid, mode=self.interpolation, padding_mode="border", align_corners=False
        )
        if self.interpolation == "bicubic":
            # Bicubic overshoots at edges; keep values inside the valid pixel range.
            out = out.clamp(0.0, 255.0 if scale != 1.0 else 1.0)
        if scale != 1.0:
            out = out * scale
        if self.normalize is not None:
            mean = self.mean.to(device=device, dtype=dtype).view(-1, 1, 1)
            std = self.std.to(device=device, dtype=dtype).view(-1, 1, 1)
            out = (out - mean) / std
        return out.to(out_dtype)

    def forward(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Augments every sample of ``images`` with its own random crop and flip.

        Args:
            images: (B, C, H, W), ``uint8`` in [0, 255] or floating point in [0, 1], any device.
            generator: Random generator for reproducible augmentation. For a fully asynchronous
                pipeline use one on the same device as ``images``.

        Returns:
            (B, C, out_h, out_w) floating point tensor on the device of ``images``.
        """
        images = self._check_images(images)
        batch, _, height, width = images.shape
        params = self.sample_params(batch, height, width, generator, device=images.device)
        return self.apply_params(images, params)

    @staticmethod
    def _check_images(images: Any) -> Tensor:
        return _check_image_tensor(images, "images", 4, "(B, C, H, W)")

    def extra_repr(self) -> str:
        return (
            f"input_size={self.input_size}, min_scale={self.min_scale}, ratio={self.ratio}, "
            f"hflip_prob={self.hflip_prob}, normalize={self.normalize}, "
            f"interpolation={self.interpolation!r}"
        )
