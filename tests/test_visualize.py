"""Reconstruction views and the PNG grid."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image
from torch import Tensor

from ssl_mae import MAEDecoder, MaskedVisionTransformer
from ssl_mae.core import MAEOutput, MaskedAutoencoder
from ssl_mae.loss import MAELoss, normalize_patches
from ssl_mae.masking import unpatchify
from ssl_mae.models import build_mae
from ssl_mae.visualize import (
    Reconstruction,
    denormalize,
    reconstruct,
    save_reconstruction_grid,
)


class _PerfectCore(MaskedAutoencoder):
    """A real MAE step whose predictions are replaced by the true (norm-pix normalised when
    the loss says so) patches."""

    def __init__(self, height: int, width: int, channels: int, norm_pix: bool) -> None:
        encoder = MaskedVisionTransformer.from_timm(
            {"img_size": (height, width), "patch_size": 4, "in_chans": channels,
             "embed_dim": 16, "depth": 1, "num_heads": 2},
            use_mask_token=False,
        )  # fmt: skip
        decoder = MAEDecoder(
            num_patches=encoder.num_patches, patch_size=4, in_chans=channels, embed_dim=16,
            decoder_embed_dim=8, decoder_depth=1, decoder_num_heads=2,
            grid_size=encoder.grid_size,
        )  # fmt: skip
        super().__init__(encoder, decoder, MAELoss(norm_pix=norm_pix))

    def forward(self, images: Tensor, *args: Any, **kwargs: Any) -> MAEOutput:
        out = super().forward(images, *args, **kwargs)
        out.pred = normalize_patches(out.target) if self.loss.norm_pix else out.target
        return out


@pytest.mark.parametrize("norm_pix", [False, True])
def test_perfect_predictions_reconstruct_the_input(norm_pix: bool) -> None:
    # Norm-pix predictions must be mapped back with each target patch's own mean and variance.
    images = torch.rand(2, 3, 8, 12) * 4 - 1
    result = reconstruct(_PerfectCore(8, 12, 3, norm_pix), images, mask_ratio=0.5)
    assert torch.allclose(result.reconstruction, images, atol=1e-4)
    assert torch.allclose(result.pasted, images, atol=1e-4)


def test_views_are_consistent_with_the_mask() -> None:
    torch.manual_seed(0)
    model = build_mae("mae_vit_micro_patch4", norm_pix_loss=True)
    images = torch.randn(3, 1, 28, 28)
    generator = torch.Generator().manual_seed(1)
    result = reconstruct(model, images, mask_ratio=0.75, generator=generator)
    assert isinstance(result, Reconstruction)
    for view in result[:4]:
        assert view.shape == images.shape
    # 49 patches keep int(49 * 0.25) = 12 visible (official rounding), so 37 are removed.
    assert result.mask.shape == (3, 49) and int(result.mask.sum()) == 3 * 37
    mask_image = unpatchify(result.mask[..., None].expand(-1, -1, 16), 4, 1, (28, 28))
    removed, visible = mask_image.bool(), ~mask_image.bool()
    assert torch.equal(result.original, images)
    assert torch.all(result.masked[removed] == 0)
    assert torch.equal(result.masked[visible], images[visible])
    assert torch.equal(result.pasted[visible], images[visible])
    assert torch.equal(result.pasted[removed], result.reconstruction[removed])
    # The prediction for a visible patch is not the input (the model is untrained).
    assert not torch.allclose(result.reconstruction[visible], images[visible])
    assert model.training  # mode restored

    again = reconstruct(model, images, 0.75, generator=torch.Generator().manual_seed(1))
    assert torch.equal(again.reconstruction, result.reconstruction)
    assert torch.equal(again.mask, result.mask)


def test_reconstruct_rejects_bad_input() -> None:
    model = build_mae("mae_vit_micro_patch4")
    with pytest.raises(ValueError, match="mask_ratio"):
        reconstruct(model, torch.zeros(1, 1, 28, 28), mask_ratio=1.0)
    with pytest.raises(ValueError, match="images"):
        reconstruct(model, torch.zeros(1, 28, 28))
    with pytest.raises(TypeError, match="model"):
        reconstruct("mae", torch.zeros(1, 1, 28, 28))  # type: ignore[arg-type]


def test_denormalize_inverts_normalisation() -> None:
    pixels = torch.rand(2, 3, 4, 4)
    mean, std = [0.4, 0.5, 0.6], [0.2, 0.25, 0.3]
    normalised = (pixels - torch.tensor(mean).view(-1, 1, 1)) / torch.tensor(std).view(-1, 1, 1)
    assert torch.allclose(denormalize(normalised, {"mean": mean, "std": std}), pixels, atol=1e-6)
    assert torch.equal(denormalize(torch.full((1, 1, 2, 2), 3.0), None), torch.ones(1, 1, 2, 2))
    with pytest.raises(ValueError, match="channels"):
        denormalize(normalised, {"mean": [0.1, 0.2], "std": [1.0, 1.0]})


def test_grid_png_has_one_row_per_image(tmp_path: Path) -> None:
    images = torch.rand(5, 1, 8, 8)
    result = reconstruct(_PerfectCore(8, 8, 1, False), images, mask_ratio=0.5)
    path = save_reconstruction_grid(result, tmp_path / "out" / "grid.png", dpi=50)
    with Image.open(path) as png:
        assert png.format == "PNG"
        width, height = png.size
    # 4 columns of 1.6 inches and 5 rows of 1.6 inches at 50 dpi.
    assert (width, height) == (320, 400)
    with pytest.raises(ValueError, match=r"\.png"):
        save_reconstruction_grid(result, tmp_path / "grid.jpg")
