"""What an MAE sees and predicts: original | masked | reconstruction | reconstruction + visible.

:func:`reconstruct` runs a model on a batch and returns the four images per sample as tensors;
:func:`save_reconstruction_grid` writes them as a PNG with one row per sample.

For a model trained with the norm-pix loss the predictions are per-patch normalised pixels. By
default they are mapped back to pixels with the mean and variance of *each target patch* (the
official visualisation does the same), otherwise the reconstruction would show only local
contrast. That borrows the brightness of the masked patches from the answer; ``norm_pix_stats=
"visible"`` uses the statistics of the image's visible patches instead (what a model could know),
and ``"none"`` shows the raw prediction.

:func:`save_training_curves` draws the loss and learning-rate curves of a run as a PNG.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from ssl_mae._validation import (
    check_mask_ratio,
    check_normalize,
    check_positive_float,
    check_positive_int,
    check_tensor,
)
from ssl_mae.core import as_masked_autoencoder
from ssl_mae.loss import MAELoss, PixelTarget
from ssl_mae.masking import patchify, unpatchify

__all__ = [
    "NORM_PIX_STATS",
    "Reconstruction",
    "denormalize",
    "reconstruct",
    "save_reconstruction_grid",
    "save_training_curves",
]

#: How :func:`reconstruct` maps norm-pix predictions back to pixels.
NORM_PIX_STATS: tuple[str, ...] = ("target", "visible", "none")

COLUMN_TITLES: tuple[str, str, str, str] = (
    "original",
    "masked",
    "reconstruction",
    "reconstruction + visible",
)


class Reconstruction(NamedTuple):
    """The four views of a batch, all (B, C, H, W) in the model's input space (normalised).

    Attributes:
        original: The input images.
        masked: The input with removed patches set to 0 (the dataset mean after normalisation).
        reconstruction: The model's prediction for every patch.
        pasted: The prediction for removed patches, the input for visible ones.
        mask: (B, L) 1 for removed patches, 0 for visible ones.
    """

    original: Tensor
    masked: Tensor
    reconstruction: Tensor
    pasted: Tensor
    mask: Tensor


@torch.no_grad()
def reconstruct(
    model: nn.Module,
    images: Tensor,
    mask_ratio: float = 0.75,
    noise: Tensor | None = None,
    generator: torch.Generator | None = None,
    norm_pix_stats: str = "target",
) -> Reconstruction:
    """Masks, encodes and decodes ``images`` and returns the four views of each.

    Works for every model built on :class:`~ssl_mae.MaskedAutoencoder` (the core itself,
    ``MAE``, ``ViTMAEForPreTraining``, ``HiViTMAEForPreTraining``, ``SimpleMAE`` and a
    ``PretrainModule`` around one): one call of its core, decoding every patch. Norm-pix models
    (``MAELoss(norm_pix=True)``) are mapped back to pixels. The model runs in eval mode; its mode
    is restored afterwards. Models that predict something other than pixels (e.g. a
    :class:`~ssl_mae.targets.HOGTarget`) have no reconstruction to show and are refused.

    Args:
        images: (B, C, H, W) model inputs (normalised as in training).
        model: The MAE.
        mask_ratio: Fraction of patches removed, in [0, 1).
        noise: Optional (B, L) noise fixing the masks (lowest noise stays visible).
        generator: Random generator used when ``noise`` is None.
        norm_pix_stats: For norm-pix models, the patch statistics that map predictions back to
            pixels: ``"target"`` (each masked patch's own mean and variance, as the official
            demo), ``"visible"`` (the mean and variance averaged over the image's visible
            patches) or ``"none"`` (the raw, per-patch normalised prediction).

    Returns:
        :class:`Reconstruction` with tensors on the images' device.
    """
    core = as_masked_autoencoder(model)
    if not isinstance(core.target, PixelTarget):
        raise ValueError(
            f"reconstruct shows predicted pixels, but this model predicts "
            f"{type(core.target).__name__} targets, which are not an image; reconstructions "
            "exist only for pixel-target models"
        )
    images = check_tensor(images, "images", ndim=4, shape_doc="(B, C, H, W)", floating=True)
    mask_ratio = check_mask_ratio(mask_ratio)
    if norm_pix_stats not in NORM_PIX_STATS:
        raise ValueError(f"norm_pix_stats must be one of {NORM_PIX_STATS}, got {norm_pix_stats!r}")
    was_training = model.training
    model.eval()
    try:
        out = core(images, mask_ratio, noise, generator, decode_ratio=1.0)
    finally:
        model.train(was_training)
    pred = out.pred.float()
    original = images.float()
    patch_size = int(core.encoder.patch_size)
    criterion = core.loss
    if isinstance(criterion, MAELoss) and criterion.norm_pix and norm_pix_stats != "none":
        target = patchify(original, patch_size)
        # The loss normalised each target patch with its own mean and unbiased variance.
        mean = target.mean(dim=-1, keepdim=True)
        var = target.var(dim=-1, keepdim=True)
        if norm_pix_stats == "visible":
            visible = (1.0 - out.mask.float()).unsqueeze(-1)  # (B, L, 1)
            count = visible.sum(dim=1, keepdim=True).clamp_min(1.0)
            mean = ((mean * visible).sum(dim=1, keepdim=True) / count).expand_as(mean)
            var = ((var * visible).sum(dim=1, keepdim=True) / count).expand_as(var)
        pred = pred * (var + criterion.eps) ** 0.5 + mean
    height, width = original.shape[-2:]
    channels = original.shape[1]
    reconstruction = unpatchify(pred, patch_size, channels=channels, image_size=(height, width))
    patch_mask = out.mask.float().unsqueeze(-1).expand(-1, -1, patch_size * patch_size * channels)
    mask_image = unpatchify(patch_mask, patch_size, channels=channels, image_size=(height, width))
    masked = original * (1.0 - mask_image)
    pasted = original * (1.0 - mask_image) + reconstruction * mask_image
    return Reconstruction(original, masked, reconstruction, pasted, out.mask)


def denormalize(images: Tensor, normalize: Mapping[str, Sequence[float]] | None) -> Tensor:
    """Undoes ``Normalize`` and clamps to [0, 1] for display.

    Args:
        images: (B, C, H, W) normalised images.
        normalize: The ``{"mean": [...], "std": [...]}`` used for the inputs (1 or C entries),
            or None when the inputs were in [0, 1] already.

    Returns:
        (B, C, H, W) float images in [0, 1].
    """
    images = check_tensor(images, "images", ndim=4, shape_doc="(B, C, H, W)", floating=True)
    if normalize is not None:
        mean_values, std_values = check_normalize(normalize)
        mean = torch.tensor(mean_values, dtype=images.dtype, device=images.device)
        std = torch.tensor(std_values, dtype=images.dtype, device=images.device)
        if mean.numel() not in (1, images.shape[1]):
            raise ValueError(
                f"normalize has {mean.numel()} entries but images have {images.shape[1]} "
                "channels; give 1 or C entries"
            )
        images = images * std.view(-1, 1, 1) + mean.view(-1, 1, 1)
    return images.clamp(0.0, 1.0)


def save_reconstruction_grid(
    result: Reconstruction,
    path: str | os.PathLike[str],
    normalize: Mapping[str, Sequence[float]] | None = None,
    dpi: int = 100,
    cell_inches: float = 1.6,
) -> Path:
    """Writes a PNG with one row per sample and the columns of :data:`COLUMN_TITLES`.

    Args:
        result: Output of :func:`reconstruct`.
        path: Destination ``.png``; the folder is created if needed.
        normalize: Normalisation of the model inputs, undone for display.
        dpi: Resolution of the figure.
        cell_inches: Size of one image cell in inches.

    Returns:
        The path written.
    """
    if not isinstance(result, Reconstruction):
        raise TypeError(f"result must be a Reconstruction, got {type(result).__name__}")
    target = Path(path)
    if target.suffix.lower() != ".png":
        raise ValueError(f"path must end in .png, got {str(path)!r}")
    check_positive_int(dpi, "dpi")
    check_positive_float(cell_inches, "cell_inches")
    # The object-oriented Agg API: no pyplot state, no global backend switch.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    columns = [denormalize(view.detach().cpu(), normalize) for view in result[:4]]
    rows = columns[0].shape[0]
    figure = Figure(figsize=(4 * cell_inches, rows * cell_inches), dpi=dpi)
    FigureCanvasAgg(figure)
    axes: Any = figure.subplots(rows, 4, squeeze=False)
    for row in range(rows):
        for col, view in enumerate(columns):
            image = view[row].permute(1, 2, 0).numpy()
            axis = axes[row][col]
            if image.shape[2] == 1:
                axis.imshow(image[:, :, 0], cmap="gray", vmin=0.0, vmax=1.0)
            else:
                axis.imshow(image)
            axis.set_xticks([])
            axis.set_yticks([])
            if row == 0:
                axis.set_title(COLUMN_TITLES[col], fontsize=9)
    figure.tight_layout()
    target.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(target, format="png")
    return target


def save_training_curves(
    curves: Mapping[str, Sequence[tuple[float, float]]],
    path: str | os.PathLike[str],
    xlabel: str = "step",
    dpi: int = 100,
) -> Path:
    """Draws one panel per curve (e.g. ``train_loss``, ``val_loss``, ``lr``) and writes a PNG.

    Curves whose names end in ``loss`` share the first panel; every other curve gets its own.

    Args:
        curves: Name -> ``[(x, y), ...]`` points; empty curves are left out.
        path: Destination ``.png``; the folder is created if needed.
        xlabel: Label of the x axis.
        dpi: Resolution of the figure.

    Returns:
        The path written.

    Raises:
        ValueError: If ``path`` does not end in ``.png`` or no curve has a point.
    """
    target = Path(path)
    if target.suffix.lower() != ".png":
        raise ValueError(f"path must end in .png, got {str(path)!r}")
    losses = {k: v for k, v in curves.items() if k.endswith("loss") and v}
    others = {k: v for k, v in curves.items() if not k.endswith("loss") and v}
    panels: list[dict[str, Sequence[tuple[float, float]]]] = [losses] if losses else []
    panels += [{name: points} for name, points in others.items()]
    if not panels:
        raise ValueError("curves must hold at least one point")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(5.0 * len(panels), 3.2), dpi=dpi)
    FigureCanvasAgg(figure)
    axes: Any = figure.subplots(1, len(panels), squeeze=False)
    for axis, panel in zip(axes[0], panels, strict=True):
        for name, points in panel.items():
            xs, ys = zip(*points, strict=True)
            axis.plot(xs, ys, label=name, marker="o" if len(points) < 20 else None, markersize=3)
        axis.set_xlabel(xlabel)
        axis.legend(fontsize=8)
        axis.grid(alpha=0.3)
    figure.tight_layout()
    target.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(target, format="png")
    return target
