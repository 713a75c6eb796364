"""The policy of ``docs/errors.md`` that no single bad input shows: forward passes never read a
value back to the host.

Value checks (index ranges, permutations, NaN in masking noise, the [0, 1] range of float
images) run for CPU tensors only. The checks here run every forward pass on the ``meta`` device,
whose tensors have shapes and dtypes but no data: any ``.item()``, ``bool(tensor)``,
``.tolist()`` or copy to the host raises there, just as it would stall a GPU step. So a value
check that forgot the CPU-only rule, or an ``.item()`` slipped into a forward pass, fails here on
any machine, with or without a GPU.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from timm.models.vision_transformer import VisionTransformer

import ssl_mae
from ssl_mae import masking
from ssl_mae.hf import ViTMAEConfig, ViTMAEForPreTraining
from ssl_mae.loss import MAELoss
from ssl_mae.models import SimpleMAE, build_model, mae_vit_micro_patch4
from ssl_mae.transforms import BatchedMAEAugment

from .test_bad_input import _HF_SMALL

META = torch.device("meta")


def _empty(*shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.empty(shape, device=META, dtype=dtype)


def _split() -> tuple[torch.Tensor, torch.Tensor]:
    keep, mask = ssl_mae.random_token_mask((2, 50), 0.75, generator=torch.Generator())
    return keep.to(META), mask.to(META)


def _mae_step() -> Any:
    model = mae_vit_micro_patch4().to(META)
    loss, _, _ = model(_empty(2, 1, 28, 28), noise=_empty(2, 49))
    loss.backward()  # the backward pass reads nothing back either
    return loss


def _simple_mae_partial_decoding() -> Any:
    vit = VisionTransformer(
        img_size=16, patch_size=4, in_chans=3, embed_dim=32, depth=1, num_heads=2, num_classes=0
    )
    model = SimpleMAE(vit, decoder_dim=32).to(META)
    return model.core(_empty(2, 3, 16, 16), decode_ratio=0.5)


STEPS: dict[str, Callable[[], Any]] = {
    "mae-forward-and-backward": _mae_step,
    "hf-forward": lambda: ViTMAEForPreTraining(ViTMAEConfig(**_HF_SMALL)).to(META)(  # type: ignore[arg-type]
        _empty(2, 3, 16, 16), noise=_empty(2, 16)
    ),
    "hivit-forward": lambda: build_model("mae_hivit_nano", in_chans=1).to(META)(
        _empty(2, 1, 32, 32)
    ),
    "simple-mae-partial-decoding": _simple_mae_partial_decoding,
    "decoder-predict-masked": lambda: (
        mae_vit_micro_patch4().decoder.to(META).predict_masked(_empty(2, 13, 64), *_split())
    ),
    "decoder-predict-all": lambda: (
        mae_vit_micro_patch4()
        .decoder.to(META)
        .predict_all(_empty(2, 13, 64), _empty(2, 49, dtype=torch.long))
    ),
    "token-mask-with-noise": lambda: ssl_mae.random_token_mask((2, 50), noise=_empty(2, 49)),
    "random-masking-with-noise": lambda: ssl_mae.random_masking(
        _empty(2, 49, 8), 0.75, noise=_empty(2, 49)
    ),
    "restore-index": lambda: masking.restore_index(*_split()),
    "get-and-mask-at-index": lambda: ssl_mae.mask_at_index(
        ssl_mae.get_at_index(_empty(2, 50, 8), _split()[0]),
        _empty(2, 3, dtype=torch.long),
        _empty(1, 1, 8),
    ),
    "masked-loss": lambda: MAELoss(norm_pix=True)(
        _empty(2, 49, 16), _empty(2, 49, 16), _empty(2, 49)
    ),
    "batched-augment-float": lambda: BatchedMAEAugment(8).to(META)(_empty(2, 3, 16, 16)),
    "batched-augment-uint8": lambda: BatchedMAEAugment(8, normalize=None).to(META)(
        _empty(2, 3, 16, 16, dtype=torch.uint8)
    ),
}


def test_the_meta_device_catches_a_read_back() -> None:
    """The premise of this module: reading a meta tensor on the host raises."""
    flags = _empty(3)
    for read in (lambda: bool(flags.any()), lambda: int(flags.max()), flags.tolist):
        with pytest.raises((RuntimeError, NotImplementedError)):
            read()


@pytest.mark.parametrize("step", list(STEPS.values()), ids=list(STEPS))
def test_forward_passes_never_read_values_back(step: Callable[[], Any]) -> None:
    step()
