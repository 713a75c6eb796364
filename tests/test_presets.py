"""Every model trains by preset name: the registry, PretrainModule, the uniform model view and
``ssl-mae pretrain/evaluate/reconstruct`` end to end for MAE-HiViT and SimpleMAE."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image
from torch import nn

from ssl_mae.cli import main
from ssl_mae.core import MaskedAutoencoder, as_masked_autoencoder
from ssl_mae.evaluation import extract_features
from ssl_mae.hivit import HIVIT_MAE_PRESETS, HiViTMAEForPreTraining
from ssl_mae.models import MAE, MAE_PRESETS, SimpleMAE, build_mae
from ssl_mae.models.presets import (
    PRESET_FAMILIES,
    PRETRAIN_PRESETS,
    build_model,
    build_pretrain_module,
    describe_presets,
    pretrain_module_from_checkpoint,
)
from ssl_mae.training import TRAINING_OPTIONS, PretrainModule
from ssl_mae.visualize import reconstruct


def _spec(module: PretrainModule) -> tuple[int, int, int]:
    return module.img_size, module.in_chans, module.patch_size


# Small enough for a busy 2-core machine: 64 training images, 4 steps per epoch.
TINY = [
    "--limit-train-images", "64", "--limit-test-images", "32", "--batch-size", "16",
    "--no-progress", "--accelerator", "cpu", "--devices", "1", "--knn-k", "10",
    "--eval-batch-size", "64",
]  # fmt: skip


def _hivit() -> PretrainModule:
    module = build_pretrain_module("mae_hivit_nano", in_chans=1)
    assert isinstance(module, PretrainModule)
    return module


def _simple() -> PretrainModule:
    module = build_pretrain_module("simple_mae_vit_micro", depth=1, norm_pix_loss=True)
    assert isinstance(module, PretrainModule)
    return module


# --- the registry ---------------------------------------------------------------------------------
def test_registry_holds_every_family_and_builds_the_right_types() -> None:
    simple = {name for name, p in PRETRAIN_PRESETS.items() if p.family == "simple_mae"}
    variants = {name for name, p in PRETRAIN_PRESETS.items() if p.family == "mae_variant"}
    assert set(PRETRAIN_PRESETS) == set(MAE_PRESETS) | set(HIVIT_MAE_PRESETS) | simple | variants
    assert {p.family for p in PRETRAIN_PRESETS.values()} == set(PRESET_FAMILIES)
    mae = build_pretrain_module("mae_vit_micro_patch4", base_lr=1e-3)
    assert type(mae) is MAE and mae.hparams["base_lr"] == 1e-3  # seed checkpoints unchanged
    hivit, simple = _hivit(), _simple()
    assert isinstance(hivit.model, HiViTMAEForPreTraining)
    assert isinstance(simple.model, SimpleMAE)
    # Model overrides go to the model and are recorded; training options go to the recipe.
    module = build_pretrain_module("mae_hivit_nano", in_chans=1, mask_ratio=0.5, lr=2e-3)
    assert module.hparams["preset"] == "mae_hivit_nano"
    assert module.hparams["model_overrides"] == {"in_chans": 1, "mask_ratio": 0.5}
    assert module.hparams["lr"] == 2e-3 and module.hparams["mask_ratio"] == 0.5


def test_unknown_preset_lists_every_family() -> None:
    with pytest.raises(ValueError, match="preset must be one of") as error:
        build_pretrain_module("vit_giant")
    message = str(error.value)
    assert "'vit_giant'" in message and "\n" not in message
    for family in PRESET_FAMILIES:
        assert f"{family}: [" in message
    for name in ("mae_vit_micro_patch4", "mae_hivit_nano", "simple_mae_vit_tiny"):
        assert name in message and name in describe_presets()


@pytest.mark.parametrize(
    ("name", "overrides", "expected"),
    [
        ("mae_vit_micro_patch4", {}, (28, 1, 4)),
        ("mae_hivit_nano", {"in_chans": 1}, (32, 1, 16)),
        ("mae_hivit_nano", {"img_size": 48}, (48, 3, 16)),
        ("simple_mae_vit_micro", {"in_chans": 3, "img_size": 16}, (16, 3, 4)),
        ("simple_mae_vit_tiny", {"depth": 1}, (28, 1, 4)),
        ("simple_mae_torchvision_vit_tiny", {"depth": 1}, (28, 1, 4)),
    ],
)
def test_presets_take_the_common_overrides(
    name: str, overrides: dict[str, Any], expected: tuple[int, int, int]
) -> None:
    module = build_pretrain_module(name, mask_ratio=0.5, norm_pix_loss=True, **overrides)
    img_size, in_chans, patch_size = expected
    assert _spec(module) == expected
    assert module.masked_autoencoder.mask_ratio == 0.5
    assert module.norm_pix_loss
    images = torch.randn(2, in_chans, img_size, img_size)
    out = module.mae_step(images)
    num_patches = (img_size // patch_size) ** 2
    assert out.pred.shape == (2, num_patches, patch_size**2 * in_chans)
    assert out.mask.shape == (2, num_patches) and torch.isfinite(out.loss)
    assert torch.equal(out.mask.sum(dim=1), torch.full((2,), num_patches - num_patches // 2.0))


def test_bad_sizes_and_torchvision_channels() -> None:
    with pytest.raises(ValueError, match="img_size must be a multiple of patch_size"):
        build_pretrain_module("simple_mae_vit_micro", img_size=30)
    with pytest.raises(ValueError, match="img_size must be a multiple of patch_size"):
        build_model("simple_mae_torchvision_vit_tiny", img_size=30)
    with pytest.raises(ValueError, match="multiple of patch_size"):
        build_pretrain_module("mae_hivit_nano", img_size=28)
    rgb = build_model("simple_mae_torchvision_vit_tiny", in_chans=3, depth=1)
    assert isinstance(rgb, SimpleMAE) and rgb.encoder.in_chans == 3
    assert rgb(torch.randn(1, 3, 28, 28)).ndim == 0


# --- every model runs through the core -----------------------------------------------------------
def test_simple_mae_outputs_come_from_its_core() -> None:
    model = _simple().model
    assert isinstance(model, SimpleMAE)
    images = torch.randn(3, 1, 28, 28)
    noise = torch.rand(3, 49)
    own = model.forward_with_outputs(images, noise=noise)
    out = as_masked_autoencoder(model)(images, noise=noise)
    assert torch.equal(out.loss, own.loss)
    assert torch.equal(out.mask.nonzero()[:, 1].view(3, -1), (own.idx_mask - 1).sort(dim=1).values)
    at_mask = out.pred.gather(1, (own.idx_mask - 1)[..., None].expand(-1, -1, out.pred.shape[-1]))
    assert torch.equal(at_mask, own.pred)
    with pytest.raises(ValueError, match=r"images must be 28x28"):
        as_masked_autoencoder(model)(torch.randn(1, 1, 32, 32))
    with pytest.raises(ValueError, match=r"img must be 28x28"):
        model(torch.randn(1, 1, 32, 32))


def test_hivit_core_takes_any_mask_ratio_without_touching_the_backbone() -> None:
    model = _hivit().model
    assert isinstance(model, HiViTMAEForPreTraining)
    images = torch.randn(2, 1, 32, 32)
    noise = torch.rand(2, 4)
    expected = model.forward_with_predictions(images, noise=noise)
    out = model.masked_autoencoder(images, noise=noise)
    for actual, wanted in zip((out.loss, out.pred, out.mask), expected, strict=True):
        assert torch.equal(actual, wanted)
    out = model.masked_autoencoder(images, mask_ratio=0.25, noise=noise)
    assert out.mask.sum().item() == 2 * 1 and model.backbone.mask_ratio == 0.75


def test_feature_encoders_encode_without_masking() -> None:
    hivit = _hivit()
    encoder = hivit.feature_encoder()
    model = hivit.model
    assert isinstance(model, HiViTMAEForPreTraining)
    assert encoder is model.backbone and encoder.num_prefix_tokens == 0
    images = torch.randn(4, 1, 32, 32)
    labels = torch.arange(4)
    features, _ = extract_features(encoder, [(images, labels)], pool="mean")
    tokens = model.backbone(images, mask=False)[0]
    assert tokens.shape == (4, 4, 96)
    assert torch.allclose(features, tokens.mean(dim=1), atol=1e-5)
    # Weights are shared: the module's state dict holds each parameter once.
    assert len(hivit.state_dict()) == len({id(t) for t in hivit.state_dict().values()})
    simple = _simple()
    assert isinstance(simple.model, SimpleMAE)
    assert simple.feature_encoder() is simple.model.encoder
    mae = build_mae("mae_vit_micro_patch4")
    assert mae.feature_encoder() is mae.encoder
    with pytest.raises(TypeError, match="model must be a MaskedAutoencoder"):
        PretrainModule(nn.Linear(2, 2))


@pytest.mark.parametrize("make", [_hivit, _simple])
def test_reconstruct_draws_hivit_and_simple_mae(make: Any) -> None:
    module = make()
    images = torch.randn(2, 1, module.img_size, module.img_size)
    result = reconstruct(module, images, mask_ratio=0.5, generator=torch.Generator().manual_seed(0))
    assert result.reconstruction.shape == images.shape
    visible = result.masked != 0
    assert torch.equal(result.pasted[visible], images[visible])
    again = reconstruct(module.model, images, 0.5, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(again.reconstruction, result.reconstruction)


# --- PretrainModule -------------------------------------------------------------------------------
def _lrs(module: Any, steps: int) -> list[float]:
    config = module.configure_optimizers()
    optimizer, scheduler = config["optimizer"], config["lr_scheduler"]["scheduler"]
    lrs = []
    for _ in range(steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


def test_pretrain_module_has_the_optimiser_recipe_of_mae() -> None:
    options = dict(base_lr=1e-3, batch_size=64, total_steps=20, warmup_steps=5, min_lr=1e-5)
    simple = build_pretrain_module("simple_mae_vit_micro", **options)
    mae = build_pretrain_module("mae_vit_micro_patch4", **options)
    assert _lrs(simple, 20) == pytest.approx(_lrs(mae, 20))
    assert max(_lrs(simple, 20)) == pytest.approx(1e-3 * 64 / 256)
    config: Any = simple.configure_optimizers()
    groups = config["optimizer"].param_groups
    no_decay = {id(p) for g in groups if g["weight_decay"] == 0.0 for p in g["params"]}
    for name, param in simple.named_parameters():
        if param.requires_grad:
            expected = param.ndim <= 1 or "token" in name or "pos_embed" in name
            assert (id(param) in no_decay) == expected, name
    assert set(TRAINING_OPTIONS) == {k for k in mae.hparams if k in TRAINING_OPTIONS}


def test_pretrain_module_rejects_bad_arguments() -> None:
    core = _simple().masked_autoencoder
    with pytest.raises(TypeError, match=r"model must be a MaskedAutoencoder"):
        PretrainModule("hivit")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"unknown keyword arguments \['epochs'\]"):
        PretrainModule(core, epochs=3)
    with pytest.raises(ValueError, match="base_lr must be a finite number >= 0"):
        PretrainModule(core, base_lr=-1.0)
    with pytest.raises(TypeError, match="model_overrides must hold plain values"):
        PretrainModule(core, model_overrides={"norm": nn.LayerNorm})


def test_checkpoint_round_trip_rebuilds_the_preset() -> None:
    module = build_pretrain_module("mae_hivit_nano", in_chans=1, mask_ratio=0.5, lr=1e-3)
    checkpoint = {"hyper_parameters": dict(module.hparams), "state_dict": module.state_dict()}
    rebuilt = pretrain_module_from_checkpoint(checkpoint)
    assert isinstance(rebuilt, PretrainModule) and rebuilt.hparams["lr"] == 1e-3
    images = torch.randn(2, 1, 32, 32)
    noise = torch.rand(2, 4)
    expected = module.mae_step(images, noise=noise).pred
    assert torch.equal(rebuilt.mae_step(images, noise=noise).pred, expected)
    custom = PretrainModule(_simple().masked_autoencoder)
    assert isinstance(custom.model, MaskedAutoencoder)
    with pytest.raises(ValueError, match="without a preset"):
        pretrain_module_from_checkpoint(
            {"hyper_parameters": dict(custom.hparams), "state_dict": custom.state_dict()}
        )


# --- the command line -----------------------------------------------------------------------------
def test_help_and_unknown_preset(capsys: Any) -> None:
    assert main(["pretrain", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "mae_hivit_nano" in text and "simple_mae_vit_tiny" in text and "32x32" in text
    assert main(["pretrain", "--preset", "vit_giant"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ssl-mae: error: --preset must be one of") and err.count("\n") == 1
    assert all(f"{family}: [" in err for family in PRESET_FAMILIES)
    assert main(["pretrain", "--preset", "mae_hivit_nano", "--pool", "cls"]) == 2
    assert "--pool cls needs a class token" in capsys.readouterr().err


class _Crash(RuntimeError):
    """Stands in for a crashed training process."""


def _assert_same_weights_as_uninterrupted_run(preset: str, resumed: Path, out_dir: Path) -> None:
    argv = ["pretrain", "--preset", preset, *TINY, "--epochs", "2", "--no-knn", "--logger", "none"]
    assert main([*argv, "--output-dir", str(out_dir)]) == 0
    expected = torch.load(out_dir / "last.ckpt", weights_only=True)["state_dict"]
    actual = torch.load(resumed, weights_only=True)["state_dict"]
    assert expected.keys() == actual.keys()
    assert all(torch.equal(value, actual[key]) for key, value in expected.items())


@pytest.mark.parametrize(
    ("preset", "img_size", "norm_pix", "compare_weights"),
    [("mae_hivit_nano", 32, True, True), ("simple_mae_vit_micro", 28, False, False)],
)
def test_pretrain_resume_evaluate_reconstruct(
    preset: str,
    img_size: int,
    norm_pix: bool,
    compare_weights: bool,
    tmp_path: Path,
    capsys: Any,
    monkeypatch: Any,
) -> None:
    out_dir = tmp_path / "run"
    argv = ["pretrain", "--preset", preset, *TINY, "--epochs", "2", "--output-dir", str(out_dir)]
    argv += ["--checkpoint-every-n-steps", "3"]
    # The run crashes in step 7 of 8 (mid second epoch); last.ckpt then holds step 6.
    step = PretrainModule.training_step

    def crash_at_step_6(self: PretrainModule, batch: Any, batch_idx: int) -> torch.Tensor:
        if self.global_step == 6:
            raise _Crash("simulated crash")
        return step(self, batch, batch_idx)

    with monkeypatch.context() as patch:
        patch.setattr(PretrainModule, "training_step", crash_at_step_6)
        with pytest.raises(_Crash):  # --debug: the crash itself, not its one-line report
            main([*argv, "--debug"])
    last = out_dir / "last.ckpt"
    checkpoint = torch.load(last, weights_only=True)
    assert checkpoint["global_step"] == 6
    assert checkpoint["hyper_parameters"]["preset"] == preset
    assert checkpoint["hyper_parameters"]["model_overrides"]["in_chans"] == 1
    # The preset's resolution: HiViT needs multiples of 16, so Fashion-MNIST is resized to 32.
    config = checkpoint["datamodule_hyper_parameters"]["run_config"]
    assert config["img_size"] == img_size and config["norm_pix"] is norm_pix

    # --resume rebuilds the preset's model and finishes the run, with kNN at the end ...
    assert main([*argv, "--resume", str(last)]) == 0
    out = capsys.readouterr().out
    metrics = json.loads((out_dir / "metrics.json").read_text())
    assert metrics["steps"] == 8 and metrics["resumed_from"] == str(last)
    assert 0 <= metrics["knn_top1"] <= metrics["knn_top5"] <= 100
    assert f"kNN top-1: {metrics['knn_top1']:.2f}%" in out
    if compare_weights:  # ... with the weights of a run that never crashed (one model suffices)
        _assert_same_weights_as_uninterrupted_run(preset, last, tmp_path / "reference")

    code = main(
        ["evaluate", "--checkpoint", str(last), "--limit-train-images", "64",
         "--limit-test-images", "32", "--knn-k", "10", "--eval-batch-size", "64"]
    )  # fmt: skip
    assert code == 0
    assert f"kNN top-1: {metrics['knn_top1']:.2f}%" in capsys.readouterr().out

    png = tmp_path / "grid.png"
    assert main(["reconstruct", "--checkpoint", str(last), "--output", str(png)]) == 0
    assert "mask ratio 0.75" in capsys.readouterr().out
    with Image.open(png) as image:
        assert image.format == "PNG" and image.height > image.width  # 8 rows, 4 columns
