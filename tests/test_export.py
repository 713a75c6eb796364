"""Exports that never guess: every preset family's checkpoint into the real peers.

Each export is loaded by the peer itself (``transformers.ViTMAEModel`` /
``ViTMAEForPreTraining``, ``timm.create_model("local-dir:...")``, the official MAE forward written
out in ``tests/test_mae_model.py``) and must give our features (and losses) within 1e-5; head
counts come from the checkpoint, never from the width. HiViT has no HF/timm equivalent and says
so in one line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor

from ssl_mae.export import (
    ExportError,
    export_hf,
    export_official,
    export_safetensors,
    export_timm,
    load_trained_model,
)
from ssl_mae.models.presets import build_pretrain_module
from ssl_mae.training.checkpoints import save_atomic

NORMALIZE = {"mean": [0.3], "std": [0.4]}
# Tiny versions of every family; non-default head counts (2 encoder, 4 decoder heads for width 32
# and 64) catch any guess from the width.
FAMILIES: dict[str, tuple[str, dict[str, Any]]] = {
    "mae": ("mae_vit_micro_patch4", {"embed_dim": 32, "num_heads": 2, "decoder_embed_dim": 64}),
    "simple_mae_timm": ("simple_mae_vit_micro", {"embed_dim": 32, "num_heads": 2}),
    "simple_mae_torchvision": (
        "simple_mae_torchvision_vit_tiny",
        {"embed_dim": 32, "depth": 2, "num_heads": 2, "decoder_embed_dim": 32,
         "decoder_depth": 1, "decoder_num_heads": 2, "decoder_head_dim": 16},
    ),
}  # fmt: skip


def _checkpoint(tmp_path: Path, preset: str, norm_pix: bool = True, **overrides: Any) -> Path:
    """A checkpoint as ``ssl-mae pretrain`` writes it (weights perturbed away from the init)."""
    torch.manual_seed(0)
    module = build_pretrain_module(preset, in_chans=1, norm_pix_loss=norm_pix, **overrides)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.add_(0.02 * torch.randn_like(parameter))
    path = tmp_path / f"{preset}.ckpt"
    run_config = {"normalize": NORMALIZE, "dataset": "fashion_mnist", "preset": preset}
    save_atomic(
        {
            "hyper_parameters": dict(module.hparams),
            "state_dict": module.state_dict(),
            "datamodule_hyper_parameters": {"run_config": run_config},
        },
        path,
    )
    return path


def _images(trained: Any, batch: int = 2) -> tuple[Tensor, Tensor]:
    generator = torch.Generator().manual_seed(1)
    height, width = trained.preprocessing.image_size
    images = torch.randn(batch, trained.preprocessing.in_chans, height, width, generator=generator)
    grid = trained.core.encoder.grid_size
    return images, torch.rand(batch, grid[0] * grid[1], generator=generator)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_hf_export_loads_in_transformers_with_our_features_and_loss(
    family: str, tmp_path: Path
) -> None:
    transformers = pytest.importorskip("transformers")
    preset, overrides = FAMILIES[family]
    trained = load_trained_model(_checkpoint(tmp_path, preset, **overrides))
    folder = export_hf(trained, tmp_path / "hf")
    config = json.loads((folder / "config.json").read_text())
    assert config["num_attention_heads"] == 2  # from the checkpoint, not width // 64
    processor = json.loads((folder / "preprocessor_config.json").read_text())
    assert processor["image_mean"] == [0.3] and processor["size"] == {"height": 28, "width": 28}
    images, noise = _images(trained)
    with torch.no_grad():
        ours = trained.core.encoder.encode(images)
        encoder = transformers.ViTMAEModel.from_pretrained(folder, mask_ratio=0.0).eval()
        order = torch.arange(noise.shape[1]).expand(images.shape[0], -1)
        theirs = encoder(pixel_values=images, noise=order).last_hidden_state
        torch.testing.assert_close(theirs, ours, atol=1e-5, rtol=0)
        full = transformers.ViTMAEForPreTraining.from_pretrained(folder).eval()
        their_loss = full(pixel_values=images, noise=noise).loss
        our_loss = trained.core(images, noise=noise).loss
    torch.testing.assert_close(their_loss, our_loss, atol=1e-5, rtol=0)


@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("pool", ["mean", "cls"])
def test_timm_export_loads_with_create_model_and_pretrained_cfg(
    family: str, pool: str, tmp_path: Path
) -> None:
    import timm

    from ssl_mae.evaluation import encode_pooled

    preset, overrides = FAMILIES[family]
    trained = load_trained_model(_checkpoint(tmp_path, preset, **overrides))
    folder = export_timm(trained, tmp_path / "timm", pool=pool)
    model = timm.create_model(f"local-dir:{folder}", pretrained=True).eval()
    cfg = model.pretrained_cfg
    assert tuple(cfg["input_size"]) == (1, 28, 28)
    assert list(cfg["mean"]) == [0.3] and list(cfg["std"]) == [0.4]
    assert cfg["interpolation"] == "bicubic"
    images, _ = _images(trained)
    with torch.no_grad():
        torch.testing.assert_close(
            model.forward_features(images), trained.core.encoder.encode(images), atol=1e-5, rtol=0
        )
        torch.testing.assert_close(
            model(images), encode_pooled(trained.encoder, images, pool), atol=1e-5, rtol=0
        )


@pytest.mark.parametrize("family", ["mae", "simple_mae_timm"])
def test_official_export_computes_the_official_formula(family: str, tmp_path: Path) -> None:
    from test_mae_model import OfficialLayoutMAE  # the official forward, written out

    preset, overrides = FAMILIES[family]
    trained = load_trained_model(_checkpoint(tmp_path, preset, **overrides))
    path = export_official(trained, tmp_path / "mae.pth")
    checkpoint = torch.load(path, weights_only=True)
    args = checkpoint["args"]
    vit = trained.core.encoder.vit
    decoder = trained.core.decoder
    cfg = {
        "img_size": args["input_size"][0],
        "patch_size": 4,
        "in_chans": 1,
        "embed_dim": vit.embed_dim,
        "depth": len(vit.blocks),
        "num_heads": args["num_heads"],
        "decoder_embed_dim": decoder.decoder_embed.out_features,
        "decoder_depth": len(decoder.decoder_blocks),
        "decoder_num_heads": args["decoder_num_heads"],
        "mlp_ratio": 4.0,
    }
    reference = OfficialLayoutMAE(cfg, norm_pix=args["norm_pix_loss"]).eval()
    reference.load_state_dict(checkpoint["model"], strict=True)
    images, noise = _images(trained)
    with torch.no_grad():
        loss, *_ = reference(images, 0.75, noise)
        ours = trained.core(images, noise=noise)
    torch.testing.assert_close(loss, ours.loss, atol=1e-5, rtol=0)
    assert args["preprocessing"]["mean"] == [0.3] and args["num_heads"] == 2


def test_safetensors_export_holds_the_weights_and_what_rebuilds_them(tmp_path: Path) -> None:
    from safetensors import safe_open
    from safetensors.torch import load_file

    trained = load_trained_model(_checkpoint(tmp_path, "mae_hivit_nano"))
    path = export_safetensors(trained, tmp_path / "model.safetensors")
    tensors = load_file(str(path))
    expected = trained.module.state_dict()
    assert tensors.keys() == expected.keys()
    assert all(torch.equal(tensors[k], expected[k]) for k in expected)
    with safe_open(str(path), "pt") as file:
        metadata = file.metadata()
    assert json.loads(metadata["ssl_mae.preset"]) == "mae_hivit_nano"
    assert json.loads(metadata["ssl_mae.preprocessing"])["mean"] == [0.3]
    rebuilt = load_trained_model(
        {
            "hyper_parameters": json.loads(metadata["ssl_mae.hyper_parameters"]),
            "state_dict": tensors,
        },
        normalize=NORMALIZE,
    )
    images, noise = _images(trained)
    with torch.no_grad():
        torch.testing.assert_close(
            rebuilt.core(images, noise=noise).loss, trained.core(images, noise=noise).loss
        )


def test_hivit_has_no_hf_or_timm_equivalent_but_exports_its_backbone(tmp_path: Path) -> None:
    trained = load_trained_model(_checkpoint(tmp_path, "mae_hivit_nano"))
    for export in (export_hf, export_timm):
        with pytest.raises(ExportError, match="has no Hugging Face ViTMAE or timm"):
            export(trained, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    checkpoint = torch.load(export_official(trained, tmp_path / "hivit.pth"), weights_only=True)
    backbone = trained.module.model.backbone.state_dict()
    assert set(checkpoint["state_dict"]) == {f"backbone.{k}" for k in backbone}


def test_a_decoder_hf_cannot_express_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    path = _checkpoint(
        tmp_path, "simple_mae_vit_micro", decoder_embed_dim=32, decoder_head_dim=32
    )  # 4 heads of 32 in a 32-wide decoder
    trained = load_trained_model(path)
    with pytest.raises(ExportError, match="4 heads of width 32, not 32 / 4"):
        export_hf(trained, tmp_path / "hf")
    assert not (tmp_path / "hf").exists()
    export_timm(trained, tmp_path / "timm")  # the encoder alone is fine


def test_example_checkpoints_load_with_their_key_layout(tmp_path: Path) -> None:
    """The examples keep ``encoder`` (a MaskedVisionTransformer) and ``decoder`` attributes and
    tag their checkpoints with ``preset`` + ``model_overrides`` next to their own arguments."""
    torch.manual_seed(0)
    source = build_pretrain_module("mae_vit_micro_patch4", embed_dim=32, num_heads=2)
    official = source.to_official_state_dict()
    state = {
        (f"decoder.{k}" if k.startswith("decoder_") or k == "mask_token" else f"encoder.vit.{k}"): v
        for k, v in official.items()
    }
    hparams = {
        "preset": "mae_vit_micro_patch4",
        "model_overrides": {"embed_dim": 32, "num_heads": 2},
        "accelerator": "auto",
        "data_path": None,
        "batch_size": 256,
        "base_lr": 1.5e-4,
    }
    checkpoint = {"hyper_parameters": hparams, "state_dict": state}
    with pytest.raises(ValueError, match="does not record the input normalisation"):
        load_trained_model(checkpoint)
    trained = load_trained_model(checkpoint, normalize=NORMALIZE)
    images, noise = _images(trained)
    with torch.no_grad():
        torch.testing.assert_close(
            trained.core(images, noise=noise).loss,
            source.masked_autoencoder(images, noise=noise).loss,
        )


def test_a_damaged_checkpoint_is_named_and_not_loaded(tmp_path: Path) -> None:
    from ssl_mae.training.checkpoints import DamagedCheckpointError

    path = _checkpoint(tmp_path, "mae_vit_micro_patch4")
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10  # one bit in the tensor data
    path.write_bytes(bytes(data))
    with pytest.raises(DamagedCheckpointError, match=f"checkpoint {str(path)!r} is damaged"):
        load_trained_model(path)
