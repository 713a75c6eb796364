"""ssl_mae.hf against transformers' ViTMAE: same weights + same noise → same outputs (fp32)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file

from ssl_mae.hf import (
    ViTMAEConfig,
    ViTMAEForPreTraining,
    ViTMAEModel,
    activation_layer,
    block_forward_with_attention,
)

transformers = pytest.importorskip("transformers")

ATOL = 1e-5

SMALL: dict[str, Any] = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=64,
    decoder_hidden_size=16,
    decoder_num_hidden_layers=2,
    decoder_num_attention_heads=2,
    decoder_intermediate_size=48,
    image_size=32,
    patch_size=8,
)
# Non-default settings: grayscale, patch 8 on 64 px, norm-pix loss; and a second variant with
# another activation, no qkv bias, another mask ratio and LayerNorm epsilon.
GRAY_NORM_PIX: dict[str, Any] = {
    **SMALL,
    "num_channels": 1,
    "image_size": 64,
    "norm_pix_loss": True,
}
VARIANT: dict[str, Any] = {
    **SMALL,
    "hidden_act": "gelu_new",
    "qkv_bias": False,
    "mask_ratio": 0.6,
    "layer_norm_eps": 1e-6,
    "intermediate_size": 40,
}
CONFIGS: dict[str, Any] = {"small": SMALL, "gray_norm_pix": GRAY_NORM_PIX, "variant": VARIANT}


def _randomize(model: torch.nn.Module, seed: int) -> None:
    """Perturbs every weight, so that zero biases or unit norms cannot hide a mapping error."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))


def _hf_model(kwargs: dict[str, Any], seed: int = 0) -> Any:
    torch.manual_seed(seed)
    config = transformers.ViTMAEConfig(**kwargs, attn_implementation="eager")
    model = transformers.ViTMAEForPreTraining(config).eval()
    _randomize(model, seed)
    return model


def _inputs(
    config: ViTMAEConfig, batch: int = 2, seed: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    height, width = config.image_hw
    images = torch.randn(batch, config.num_channels, height, width, generator=generator)
    noise = torch.rand(batch, config.num_patches, generator=generator)
    return images, noise


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return float((a.detach().double() - b.detach().double()).abs().max())


def compare_outputs(ours: Any, theirs: Any) -> dict[str, float]:
    """Largest absolute difference per output field (hidden_states/attentions: over entries)."""
    diffs = {}
    for name in ("loss", "logits", "mask", "ids_restore"):
        diffs[name] = _max_diff(getattr(ours, name), getattr(theirs, name))
    for name in ("hidden_states", "attentions"):
        ours_seq, theirs_seq = getattr(ours, name), getattr(theirs, name)
        assert ours_seq is not None and theirs_seq is not None
        assert len(ours_seq) == len(theirs_seq), name
        diffs[name] = max(_max_diff(a, b) for a, b in zip(ours_seq, theirs_seq, strict=True))
    return diffs


@pytest.fixture(params=sorted(CONFIGS))
def pair(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[Any, ViTMAEForPreTraining]]:
    """A random transformers model and ours loaded from its save_pretrained directory."""
    hf_model = _hf_model(CONFIGS[request.param])
    hf_model.save_pretrained(tmp_path)
    yield hf_model, ViTMAEForPreTraining.from_pretrained(tmp_path)


def test_forward_matches_transformers(pair: tuple[Any, ViTMAEForPreTraining]) -> None:
    hf_model, ours = pair
    images, noise = _inputs(ours.config)
    kwargs = dict(noise=noise, output_hidden_states=True, output_attentions=True)
    with torch.no_grad():
        theirs_out = hf_model(images, **kwargs)
        ours_out = ours(images, **kwargs)
    diffs = compare_outputs(ours_out, theirs_out)
    assert max(diffs.values()) < ATOL, diffs
    assert torch.equal(ours_out.mask, theirs_out.mask)
    assert torch.equal(ours_out.ids_restore, theirs_out.ids_restore)
    assert len(ours_out.hidden_states) == ours.config.num_hidden_layers + 1
    assert ours_out.logits.shape[-1] == ours.config.patch_size**2 * ours.config.num_channels

    # The encoder alone, through the fused (SDPA) path.
    with torch.no_grad():
        ours_base = ours.vit(images, noise=noise)
        theirs_base = hf_model.vit(images, noise=noise)
        fused_logits = ours(images, noise=noise).logits
    assert _max_diff(ours_base.last_hidden_state, theirs_base.last_hidden_state) < ATOL
    assert _max_diff(fused_logits, theirs_out.logits) < ATOL
    assert ours_base.hidden_states is None and ours_base.attentions is None


def test_interpolate_pos_encoding_matches_transformers(tmp_path: Path) -> None:
    hf_model = _hf_model(SMALL)
    hf_model.save_pretrained(tmp_path)
    ours = ViTMAEForPreTraining.from_pretrained(tmp_path)
    generator = torch.Generator().manual_seed(3)
    for height, width in ((48, 48), (48, 64)):
        images = torch.randn(2, 3, height, width, generator=generator)
        noise = torch.rand(2, (height // 8) * (width // 8), generator=generator)
        kwargs = dict(
            noise=noise,
            interpolate_pos_encoding=True,
            output_hidden_states=True,
            output_attentions=True,
        )
        with torch.no_grad():
            diffs = compare_outputs(ours(images, **kwargs), hf_model(images, **kwargs))
        assert max(diffs.values()) < ATOL, (height, width, diffs)
    with pytest.raises(ValueError, match="interpolate_pos_encoding"):
        ours(torch.randn(1, 3, 48, 48))


def test_without_noise_same_seed_gives_same_mask_as_transformers(tmp_path: Path) -> None:
    hf_model = _hf_model(SMALL)
    hf_model.save_pretrained(tmp_path)
    ours = ViTMAEForPreTraining.from_pretrained(tmp_path)
    images, _ = _inputs(ours.config)
    torch.manual_seed(5)
    theirs_out = hf_model(images)
    torch.manual_seed(5)
    ours_out = ours(images)
    assert torch.equal(ours_out.ids_restore, theirs_out.ids_restore)
    assert _max_diff(ours_out.loss, theirs_out.loss) < ATOL


def test_ours_save_pretrained_loads_in_transformers(tmp_path: Path) -> None:
    torch.manual_seed(0)
    ours = ViTMAEForPreTraining(ViTMAEConfig(**GRAY_NORM_PIX)).eval()
    _randomize(ours, 7)
    ours.save_pretrained(tmp_path)

    saved_config = json.loads((tmp_path / "config.json").read_text())
    assert saved_config["model_type"] == "vit_mae"
    assert saved_config["architectures"] == ["ViTMAEForPreTraining"]
    keys = set(load_file(str(tmp_path / "model.safetensors")))
    assert "vit.encoder.layer.0.attention.attention.query.weight" in keys
    assert "decoder.decoder_layers.1.attention.output.dense.bias" in keys

    theirs, info = transformers.ViTMAEForPreTraining.from_pretrained(
        tmp_path, attn_implementation="eager", output_loading_info=True
    )
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), info
    theirs.eval()
    images, noise = _inputs(ours.config)
    kwargs = dict(noise=noise, output_hidden_states=True, output_attentions=True)
    with torch.no_grad():
        diffs = compare_outputs(ours(images, **kwargs), theirs(images, **kwargs))
    assert max(diffs.values()) < ATOL, diffs

    # And back: transformers' own save (its 5.x key spelling) loads into ours unchanged.
    back_dir = tmp_path / "back"
    theirs.save_pretrained(back_dir)
    back = ViTMAEForPreTraining.from_pretrained(back_dir)
    for name, tensor in ours.state_dict().items():
        assert torch.equal(tensor, back.state_dict()[name]), name


def test_base_model_checkpoints_both_ways(tmp_path: Path) -> None:
    hf_pre = _hf_model(SMALL)
    hf_pre.save_pretrained(tmp_path / "pre")
    hf_base = hf_pre.vit
    hf_base.save_pretrained(tmp_path / "base")
    images, noise = _inputs(ViTMAEConfig(**SMALL))
    with torch.no_grad():
        expected = hf_base(images, noise=noise).last_hidden_state
        # ViTMAEModel from a base checkpoint and from the encoder of a pretraining checkpoint.
        for source in ("base", "pre"):
            ours = ViTMAEModel.from_pretrained(tmp_path / source)
            assert _max_diff(ours(images, noise=noise).last_hidden_state, expected) < ATOL
        # Ours saved as a base model loads in transformers' ViTMAEModel.
        ours.save_pretrained(tmp_path / "ours_base")
        theirs = transformers.ViTMAEModel.from_pretrained(tmp_path / "ours_base").eval()
        assert _max_diff(theirs(images, noise=noise).last_hidden_state, expected) < ATOL

    # A pretraining model from an encoder-only checkpoint: only with strict=False.
    with pytest.raises(ValueError, match=r"decoder.decoder_embed.weight"):
        ViTMAEForPreTraining.from_pretrained(tmp_path / "base")
    with pytest.warns(UserWarning, match="keep their initial values"):
        model = ViTMAEForPreTraining.from_pretrained(tmp_path / "base", strict=False)
    assert _max_diff(model.vit(images, noise=noise).last_hidden_state, expected) < ATOL


def test_transformers5_module_names_load() -> None:
    hf_model = _hf_model(SMALL)
    ours = ViTMAEForPreTraining(ViTMAEConfig(**SMALL))
    # transformers 5 module names: vit.layers.N.attention.q_proj, decoder.decoder_layers.N.mlp.fc1
    ours.load_hf_state_dict(hf_model.state_dict())
    images, noise = _inputs(ours.config)
    with torch.no_grad():
        assert (
            _max_diff(ours.eval()(images, noise=noise).logits, hf_model(images, noise=noise).logits)
            < ATOL
        )


def test_save_and_load_round_trip_without_transformers(tmp_path: Path) -> None:
    config = ViTMAEConfig(**VARIANT, extra={"id2label": {"0": "a"}})
    model = ViTMAEForPreTraining(config).eval()
    _randomize(model, 2)
    model.save_pretrained(tmp_path)
    loaded = ViTMAEForPreTraining.from_pretrained(tmp_path)
    assert loaded.config == config
    assert not loaded.training
    images, noise = _inputs(config)
    with torch.no_grad():
        assert torch.equal(model(images, noise=noise).logits, loaded(images, noise=noise).logits)


def test_hub_id_goes_through_huggingface_hub(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    huggingface_hub = pytest.importorskip("huggingface_hub")
    ViTMAEForPreTraining(ViTMAEConfig(**SMALL)).save_pretrained(tmp_path)
    calls: list[dict[str, Any]] = []

    def fake_snapshot_download(**kwargs: Any) -> str:
        calls.append(kwargs)
        return str(tmp_path)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    model = ViTMAEForPreTraining.from_pretrained("someone/vit-mae-tiny", revision="v1")
    assert calls and calls[0]["repo_id"] == "someone/vit-mae-tiny"
    assert calls[0]["revision"] == "v1"
    assert model.config.hidden_size == SMALL["hidden_size"]


def test_config_defaults_and_json_match_transformers(tmp_path: Path) -> None:
    theirs = transformers.ViTMAEConfig()
    ours = ViTMAEConfig()
    for name, value in ours.to_dict().items():
        assert getattr(theirs, name) == value, name
    # A config.json written by transformers reads back into the same fields.
    theirs = transformers.ViTMAEConfig(**GRAY_NORM_PIX, hidden_act="relu")
    theirs.save_pretrained(tmp_path)
    read = ViTMAEConfig.from_pretrained(tmp_path)
    assert read == ViTMAEConfig(**GRAY_NORM_PIX, hidden_act="relu", extra=read.extra)
    assert read.num_patches == 64 and read.grid_size == (8, 8)


def test_patchify_unpatchify_match_transformers() -> None:
    hf_model = _hf_model(GRAY_NORM_PIX)
    ours = ViTMAEForPreTraining(ViTMAEConfig(**GRAY_NORM_PIX))
    images = torch.randn(2, 1, 64, 64)
    patches = ours.patchify(images)
    assert torch.equal(patches, hf_model.patchify(images))
    assert torch.equal(ours.unpatchify(patches), images)
    wide = torch.randn(2, 1, 32, 48)
    wide_patches = ours.patchify(wide, interpolate_pos_encoding=True)
    assert torch.equal(wide_patches, hf_model.patchify(wide, interpolate_pos_encoding=True))
    assert torch.equal(
        ours.unpatchify(wide_patches, original_image_size=(32, 48)),
        hf_model.unpatchify(wide_patches, original_image_size=(32, 48)),
    )
    with pytest.raises(ValueError, match="square"):
        ours.patchify(wide)
    with pytest.raises(ValueError, match="channels"):
        ours.patchify(torch.randn(1, 3, 64, 64))


def test_block_forward_with_attention_equals_fused_block() -> None:
    model = ViTMAEForPreTraining(ViTMAEConfig(**SMALL)).eval()
    block = model.vit.encoder.vit.blocks[0]
    assert block.attn.fused_attn  # the default path is scaled_dot_product_attention
    x = torch.randn(2, 5, SMALL["hidden_size"])
    out, probs = block_forward_with_attention(block, x)
    assert _max_diff(out, block(x)) < ATOL
    assert probs.shape == (2, SMALL["num_attention_heads"], 5, 5)
    assert torch.allclose(probs.sum(-1), torch.ones(2, 2, 5))


def test_outputs_tuple_access_and_training_gradients() -> None:
    model = ViTMAEForPreTraining(ViTMAEConfig(**SMALL))
    images, noise = _inputs(model.config)
    out = model(images, noise=noise)
    assert out.keys() == ["loss", "logits", "mask", "ids_restore"]
    assert out["loss"] is out.loss and out[1] is out.logits
    as_tuple = model(images, noise=noise, return_dict=False)
    assert isinstance(as_tuple, tuple) and torch.equal(as_tuple[1], out.logits)
    out.loss.backward()
    no_grad = [
        name
        for name, p in model.named_parameters()
        if p.requires_grad and (p.grad is None or not p.grad.abs().sum() > 0)
    ]
    assert no_grad == []


def test_activation_mapping() -> None:
    x = torch.linspace(-4, 4, 101)
    hf_act = transformers.activations.ACT2FN
    for name in ("gelu", "gelu_new", "gelu_pytorch_tanh", "quick_gelu", "relu", "silu", "swish"):
        assert _max_diff(activation_layer(name)()(x), hf_act[name](x)) < 1e-6, name
    with pytest.raises(ValueError, match="hidden_act"):
        activation_layer("gelu_10")
    with pytest.raises(ValueError, match="hidden_act"):
        ViTMAEForPreTraining(ViTMAEConfig(**SMALL, hidden_act="gelu_10"))


# --- bad input -------------------------------------------------------------------------------
def test_other_model_type_is_rejected(tmp_path: Path) -> None:
    ViTMAEForPreTraining(ViTMAEConfig(**SMALL)).save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["model_type"] = "vit"
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"model_type must be 'vit_mae'.*got 'vit'"):
        ViTMAEForPreTraining.from_pretrained(tmp_path)


def test_missing_and_unexpected_weights_are_named(tmp_path: Path) -> None:
    ViTMAEForPreTraining(ViTMAEConfig(**SMALL)).save_pretrained(tmp_path)
    weights_path = tmp_path / "model.safetensors"
    weights = load_file(str(weights_path))
    del weights["vit.encoder.layer.1.attention.attention.key.weight"]
    weights["vit.encoder.layer.9.extra.weight"] = torch.zeros(1)
    save_file(weights, str(weights_path))
    with pytest.raises(ValueError) as error:
        ViTMAEForPreTraining.from_pretrained(tmp_path)
    message = str(error.value)
    assert "missing" in message and "vit.encoder.layer.1.attention.attention.key.weight" in message
    assert "not used" in message and "vit.encoder.layer.9.extra.weight" in message


def test_shape_mismatch_is_named(tmp_path: Path) -> None:
    ViTMAEForPreTraining(ViTMAEConfig(**SMALL)).save_pretrained(tmp_path)
    wider = ViTMAEConfig(**{**SMALL, "decoder_hidden_size": 32})
    with pytest.raises(ValueError, match=r"decoder\.decoder_embed\.weight.*\(16, 32\).*\(32, 32\)"):
        ViTMAEForPreTraining.from_pretrained(tmp_path, config=wider)
    # strict=False never hides a shape mismatch.
    with pytest.raises(ValueError, match="wrong shape"):
        ViTMAEForPreTraining.from_pretrained(tmp_path, config=wider, strict=False)


def test_bad_paths_and_inputs(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"config.json"):
        ViTMAEForPreTraining.from_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match="neither a directory"):
        ViTMAEForPreTraining.from_pretrained(str(tmp_path / "does" / "not" / "exist"))
    (tmp_path / "config.json").write_text(json.dumps(SMALL))
    with pytest.raises(FileNotFoundError, match=r"model.safetensors"):
        ViTMAEForPreTraining.from_pretrained(tmp_path)
    model = ViTMAEForPreTraining(ViTMAEConfig(**SMALL))
    with pytest.raises(ValueError, match="noise must have shape"):
        model(torch.randn(2, 3, 32, 32), noise=torch.rand(2, 15))
    with pytest.raises(ValueError, match="3 channels"):
        model(torch.randn(2, 1, 32, 32))
    with pytest.raises(ValueError, match="image_size must be a multiple of patch_size"):
        ViTMAEConfig(image_size=30, patch_size=8)
    with pytest.raises(ValueError, match="mask_ratio"):
        ViTMAEConfig(mask_ratio=1.0)
    with pytest.raises(ValueError, match="divisible by num_attention_heads"):
        ViTMAEConfig(hidden_size=30, num_attention_heads=4)


def test_patchify_accepts_the_configured_non_square_size() -> None:
    from ssl_mae.hf import ViTMAEConfig, ViTMAEForPreTraining

    config = ViTMAEConfig(
        image_size=(16, 32),
        patch_size=8,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        decoder_hidden_size=32,
        decoder_num_hidden_layers=1,
        decoder_num_attention_heads=2,
        decoder_intermediate_size=64,
    )
    model = ViTMAEForPreTraining(config)
    images = torch.rand(2, 3, 16, 32)
    assert model.patchify(images).shape == (2, 8, 192)
    assert torch.isfinite(model(pixel_values=images).loss)
    with pytest.raises(ValueError, match=r"must be square or config\.image_size"):
        model.patchify(torch.rand(2, 3, 32, 16))
