"""Writes tests/data/core_regression.pt: fixed weights, images, masking noise and the loss and
predictions each model family computed *before* the one-core redesign (run at commit b724cef,
with torch 2.14.1 on CPU).

tests/test_core.py loads the weights into today's models and checks that they still compute the
same loss and predictions: the redesign moved code, it must not change numbers. The weights are
stored in layouts that outlive the redesign (official MAE keys, Hugging Face keys, mmpretrain's
``backbone.*`` names, Lightly-style ``encoder.vit.*`` keys).

Run from the repository root: ``.venv/bin/python tests/data/make_core_regression.py``.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ssl_mae.hf import ViTMAEConfig, ViTMAEForPreTraining
from ssl_mae.hivit import HiViTMAEForPreTraining
from ssl_mae.models import SimpleMAE, mae_vit_micro_patch4
from ssl_mae.modules import MaskedVisionTransformer

OUT = Path(__file__).with_name("core_regression.pt")


def main() -> None:
    torch.manual_seed(0)
    cases: dict[str, dict[str, object]] = {}

    mae = mae_vit_micro_patch4(img_size=16, embed_dim=32, depth=2, num_heads=2,
                               decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=2,
                               norm_pix_loss=True)  # fmt: skip
    images = torch.randn(3, 1, 16, 16)
    noise = torch.rand(3, 16)
    loss, pred, mask = mae(images, mask_ratio=0.75, noise=noise)
    cases["mae"] = {"weights": mae.to_official_state_dict(), "images": images, "noise": noise,
                    "loss": loss.detach(), "pred": pred.detach(), "mask": mask}  # fmt: skip

    config = ViTMAEConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                          intermediate_size=64, image_size=16, patch_size=4, num_channels=3,
                          decoder_hidden_size=16, decoder_num_hidden_layers=1,
                          decoder_num_attention_heads=2, decoder_intermediate_size=32,
                          mask_ratio=0.5)  # fmt: skip
    hf = ViTMAEForPreTraining(config)
    images = torch.randn(2, 3, 16, 16)
    noise = torch.rand(2, 16)
    out = hf(images, noise=noise)
    cases["hf"] = {"weights": hf.hf_state_dict(), "config": config.to_dict(), "images": images,
                   "noise": noise, "loss": out.loss.detach(), "pred": out.logits.detach(),
                   "mask": out.mask}  # fmt: skip

    hivit = HiViTMAEForPreTraining(
        arch={"embed_dims": 32, "depths": (1, 1, 2), "num_heads": 2}, img_size=32, in_chans=1,
        decoder_embed_dim=16, decoder_depth=1, decoder_num_heads=2)  # fmt: skip
    images = torch.randn(2, 1, 32, 32)
    noise = torch.rand(2, 4)
    loss, pred, mask = hivit.forward_with_predictions(images, noise=noise)
    cases["hivit"] = {"weights": hivit.state_dict(), "images": images, "noise": noise,
                      "loss": loss.detach(), "pred": pred.detach(), "mask": mask}  # fmt: skip

    encoder = MaskedVisionTransformer.from_timm(
        {"img_size": 16, "patch_size": 4, "embed_dim": 32, "depth": 2, "num_heads": 2,
         "in_chans": 3, "reg_tokens": 2}, use_mask_token=False)  # fmt: skip
    simple = SimpleMAE(encoder, decoder_dim=16, masking_ratio=0.6, decoder_depth=1,
                       decoder_heads=2, decoder_dim_head=8)  # fmt: skip
    images = torch.randn(2, 3, 16, 16)
    noise = torch.rand(2, 16)
    result = simple.forward_with_outputs(images, noise=noise)
    cases["simple_mae"] = {"weights": simple.state_dict(), "images": images, "noise": noise,
                           "loss": result.loss.detach(), "pred": result.pred.detach()}  # fmt: skip
    torch.save(cases, OUT)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
