"""Targets other than pixels: what a masked-autoencoder variant reconstructs per patch.

A target maps images (B, C, H, W) to one vector per patch (B, L, T) and is passed to the core as
``MaskedAutoencoder(..., target=...)``; the decoder must predict T values per patch (the
``target_dim`` of :class:`~ssl_mae.modules.MAEDecoder` and
:class:`~ssl_mae.modules.CrossMAEDecoder`). The pixel target of MAE,
:class:`~ssl_mae.loss.PixelTarget`, lives beside the loss.

* :class:`HOGTarget` — histograms of oriented gradients per patch (MaskFeat, Wei et al. 2022,
  arXiv 2112.09133), computed on the images' device for the whole batch at once.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ssl_mae._validation import check_positive_int, check_tensor

__all__ = ["HOGTarget"]


class HOGTarget(nn.Module):
    """Per-patch histograms of oriented gradients, the MaskFeat target.

    For every channel: central-difference gradients ``[-1, 0, 1]`` along x (columns) and y
    (rows, growing downwards) with reflected borders; the unsigned orientation
    ``atan2(gy, gx) mod pi`` is assigned to one of ``num_bins`` equal bins over [0, pi) (hard
    assignment, as MaskFeat), each pixel voting with its gradient magnitude; votes are summed
    over ``cell_size x cell_size`` cells and every cell's histogram is L2-normalised (flat cells
    give zeros). The whole batch is binned by one ``scatter_add`` on the images' device.

    A vertical edge (intensity changing along x) lands in bin 0, a horizontal edge in the bin
    holding pi/2, an edge whose intensity grows towards the bottom-right in the bin holding pi/4.

    Args:
        patch_size: Patch side p in pixels.
        in_chans: Image channels C; each channel gets its own histograms.
        num_bins: Orientation bins over [0, pi) (MaskFeat: 9).
        cell_size: Cell side in pixels, a divisor of ``patch_size``; one cell per patch when
            None (MaskFeat uses 8-pixel cells in 16-pixel patches).
        eps: Added to the norm of a cell's histogram.

    Attributes:
        dim: Target width T per patch, ``(p / cell_size)**2 * C * num_bins``, laid out as
            (cell row, cell column, channel, bin).
    """

    def __init__(
        self,
        patch_size: int,
        in_chans: int = 1,
        num_bins: int = 9,
        cell_size: int | None = None,
        eps: float = 1e-6,
    ) -> None:
        super().__init__()
        self.patch_size = check_positive_int(patch_size, "patch_size")
        self.in_chans = check_positive_int(in_chans, "in_chans")
        self.num_bins = check_positive_int(num_bins, "num_bins")
        self.cell_size = (
            patch_size if cell_size is None else check_positive_int(cell_size, "cell_size")
        )
        if patch_size % self.cell_size:
            raise ValueError(f"cell_size must divide patch_size={patch_size}, got {self.cell_size}")
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps > 0:
            raise ValueError(f"eps must be a float > 0, got {eps!r}")
        self.eps = float(eps)
        cells_per_side = patch_size // self.cell_size
        self.dim = cells_per_side * cells_per_side * self.in_chans * self.num_bins

    def extra_repr(self) -> str:
        return (
            f"patch_size={self.patch_size}, in_chans={self.in_chans}, num_bins={self.num_bins}, "
            f"cell_size={self.cell_size}"
        )

    def cell_histograms(self, images: Tensor) -> Tensor:
        """L2-normalised histograms of every cell.

        Args:
            images: (B, C, H, W) images; H and W multiples of ``patch_size``, at least 2.

        Returns:
            (B, C, H / cell_size, W / cell_size, num_bins) float32 histograms.
        """
        check_tensor(images, "images", ndim=4, shape_doc="(B, C, H, W)", floating=True)
        batch_size, channels, height, width = images.shape
        if channels != self.in_chans:
            raise ValueError(f"images must have {self.in_chans} channels, got {channels}")
        if height % self.patch_size or width % self.patch_size or min(height, width) < 2:
            raise ValueError(
                f"images height and width must be multiples of patch_size={self.patch_size} "
                f"(and at least 2), got {height}x{width}"
            )
        padded = F.pad(images.float(), (1, 1, 1, 1), mode="reflect")
        grad_x = padded[:, :, 1:-1, 2:] - padded[:, :, 1:-1, :-2]
        grad_y = padded[:, :, 2:, 1:-1] - padded[:, :, :-2, 1:-1]
        magnitude = torch.hypot(grad_x, grad_y)
        angle = torch.remainder(torch.atan2(grad_y, grad_x), math.pi)
        # remainder can round up to exactly pi, which is orientation 0 again: wrap the bin.
        bins = torch.floor(angle * (self.num_bins / math.pi)).long() % self.num_bins

        cell = self.cell_size
        cells_h, cells_w = height // cell, width // cell
        rows = torch.arange(height, device=images.device) // cell
        cols = torch.arange(width, device=images.device) // cell
        cell_of_pixel = rows[:, None] * cells_w + cols[None, :]  # (H, W)
        slot = (cell_of_pixel * self.num_bins + bins).flatten(2)  # (B, C, H * W)
        hist = magnitude.new_zeros(batch_size, channels, cells_h * cells_w * self.num_bins)
        hist.scatter_add_(2, slot, magnitude.flatten(2))
        hist = hist.view(batch_size, channels, cells_h, cells_w, self.num_bins)
        return F.normalize(hist, dim=-1, eps=self.eps)

    def forward(self, images: Tensor) -> Tensor:
        """(B, C, H, W) images → (B, H/p * W/p, T) targets, patches in row-major order."""
        hist = self.cell_histograms(images)
        batch_size, channels, cells_h, cells_w, num_bins = hist.shape
        per_side = self.patch_size // self.cell_size
        grid_h, grid_w = cells_h // per_side, cells_w // per_side
        hist = hist.view(batch_size, channels, grid_h, per_side, grid_w, per_side, num_bins)
        hist = hist.permute(0, 2, 4, 3, 5, 1, 6)  # (B, h, w, cell row, cell col, C, bins)
        return hist.reshape(batch_size, grid_h * grid_w, self.dim)
