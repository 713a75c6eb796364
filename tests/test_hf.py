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
from ssl_mae.pos_embed import get_2d_sincos_pos_embed

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
    print("PARITY transformers: " + ", ".join(f"{k} {v:.3e}" for k, v in diffs.items()))
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
    # save_pretrained records the weights' dtype, as transformers does.
    assert loaded.config.to_dict() == {**config.to_dict(), "dtype": "float32"}
    assert loaded.config.id2label == {"0": "a"}
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
    assert list(out.keys()) == ["loss", "logits", "mask", "ids_restore"]
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


# --- transformers' conventions: config keywords, output flags, output objects, model API -------
GENERIC = dict(
    is_decoder=False,
    attn_implementation="eager",
    return_dict=True,
    output_hidden_states=True,
    output_attentions=False,
    torch_dtype="float32",
    id2label={0: "cat", 1: "dog"},
    my_extra_setting=[1, 2],
)


def test_config_accepts_and_keeps_generic_pretrained_config_keywords(tmp_path: Path) -> None:
    ours = ViTMAEConfig(**SMALL, **GENERIC)  # type: ignore[arg-type]
    theirs = transformers.ViTMAEConfig(**SMALL, **GENERIC)
    for name in ("is_decoder", "return_dict", "output_hidden_states", "output_attentions"):
        assert getattr(ours, name) == getattr(theirs, name), name
    assert ours.dtype == theirs.dtype == torch.float32 and ours.torch_dtype == torch.float32
    assert ours.my_extra_setting == theirs.my_extra_setting == [1, 2]
    assert ours.use_return_dict is True and ours.attn_implementation == "eager"
    assert ours.id2label == {0: "cat", 1: "dog"}
    ours.later_setting = "kept"  # attributes set later are saved too, as in transformers
    # Our config.json reads in transformers with the same values, and theirs in ours.
    ours.save_pretrained(tmp_path / "ours")
    read_by_them = transformers.ViTMAEConfig.from_pretrained(tmp_path / "ours")
    assert read_by_them.my_extra_setting == [1, 2] and read_by_them.later_setting == "kept"
    assert read_by_them.output_hidden_states and read_by_them.dtype == torch.float32
    theirs.save_pretrained(tmp_path / "theirs")
    read_by_us = ViTMAEConfig.from_pretrained(tmp_path / "theirs")
    assert read_by_us.my_extra_setting == [1, 2] and read_by_us.is_decoder is False
    assert read_by_us.output_hidden_states and read_by_us.dtype == torch.float32
    assert read_by_us == ViTMAEConfig.from_dict(json.loads(read_by_us.to_json_string()))
    # A legacy "torch_dtype" key, and dtype winning over it.
    assert ViTMAEConfig.from_dict({"torch_dtype": "bfloat16"}).dtype == torch.bfloat16
    assert ViTMAEConfig(dtype=torch.float16, torch_dtype="bfloat16").dtype == torch.float16


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"attn_implementation": "flash_attention_2"}, ValueError, "attn_implementation"),
        ({"torch_dtype": "int8"}, ValueError, "dtype"),
        ({"return_dict": "yes"}, TypeError, "return_dict"),
        ({"initializer_range": 0.0}, ValueError, "initializer_range"),
        ({"extra": {"to_dict": 1}}, ValueError, "to_dict"),
    ],
)
def test_config_rejects_bad_generic_values(
    kwargs: dict[str, Any], error: type[Exception], words: str
) -> None:
    with pytest.raises(error, match=words):
        ViTMAEConfig(**kwargs)


@pytest.mark.parametrize("model_class", ["ViTMAEModel", "ViTMAEForPreTraining"])
def test_models_follow_the_config_output_flags_like_transformers(model_class: str) -> None:
    flags = dict(output_hidden_states=True, output_attentions=True)
    ours_class = {"ViTMAEModel": ViTMAEModel, "ViTMAEForPreTraining": ViTMAEForPreTraining}
    ours = ours_class[model_class](ViTMAEConfig(**SMALL, **flags)).eval()  # type: ignore[arg-type]
    theirs = getattr(transformers, model_class)(
        transformers.ViTMAEConfig(**SMALL, **flags, attn_implementation="eager")
    ).eval()
    images, noise = _inputs(ours.config)
    with torch.no_grad():
        ours_out, theirs_out = ours(images, noise=noise), theirs(images, noise=noise)
        assert list(ours_out.keys()) == list(theirs_out.keys())
        assert "hidden_states" in ours_out and "attentions" in ours_out
        assert len(ours_out.hidden_states) == len(theirs_out.hidden_states)
        # A keyword still wins over the config.
        ours_out = ours(images, noise=noise, output_hidden_states=False, output_attentions=False)
        theirs_out = theirs(
            images, noise=noise, output_hidden_states=False, output_attentions=False
        )
        assert list(ours_out.keys()) == list(theirs_out.keys())
        # config.return_dict=False gives the tuple of set fields.
        ours.config.return_dict = False
        as_tuple = ours(images, noise=noise)
        assert isinstance(as_tuple, tuple) and len(as_tuple) == len(theirs(images, noise=noise))
        assert isinstance(ours(images, noise=noise, return_dict=True), type(ours_out))
    if model_class == "ViTMAEModel":  # transformers' ViTMAEForPreTraining itself fails here
        theirs.config.return_dict = False
        with torch.no_grad():
            theirs_tuple = theirs(images, noise=noise)
        assert isinstance(theirs_tuple, tuple) and len(theirs_tuple) == len(as_tuple)


def test_outputs_behave_like_transformers_model_output() -> None:
    ours = ViTMAEForPreTraining(ViTMAEConfig(**SMALL, output_hidden_states=True)).eval()
    theirs = transformers.ViTMAEForPreTraining(
        transformers.ViTMAEConfig(**SMALL, output_hidden_states=True)
    ).eval()
    images, noise = _inputs(ours.config)
    with torch.no_grad():
        out, their_out = ours(images, noise=noise), theirs(images, noise=noise)
    assert out.attentions is None  # None fields are skipped everywhere
    assert len(out) == len(their_out) == 5
    assert list(out) == list(out.keys()) == list(their_out.keys())
    assert [k for k, _ in out.items()] == list(their_out.keys())
    assert all(v is getattr(out, k) for k, v in out.items())
    assert [type(v) for v in out.values()] == [type(v) for v in their_out.values()]
    assert out.to_tuple()[1] is out.logits and out[1] is out.logits and out["logits"] is out[1]
    assert [t.shape for t in out[1:3]] == [t.shape for t in their_out[1:3]]
    assert out[-1] is out.hidden_states
    assert "loss" in out and "attentions" not in out and 0 not in out
    assert out.get("attentions") is None and dict(out).keys() == out.keys()
    with pytest.raises(KeyError, match="attentions"):
        out["attentions"]
    out["attentions"] = (torch.zeros(1),)  # setting a field makes it show, as in transformers
    assert len(out) == 6 and out.keys() == {**out}.keys()


@pytest.mark.parametrize("model_class", ["ViTMAEModel", "ViTMAEForPreTraining"])
def test_input_embeddings_and_parameter_counts_like_transformers(model_class: str) -> None:
    ours = getattr(__import__("ssl_mae.hf", fromlist=[model_class]), model_class)(
        ViTMAEConfig(**SMALL)
    )
    theirs = getattr(transformers, model_class)(transformers.ViTMAEConfig(**SMALL))
    for only_trainable in (False, True):
        for exclude_embeddings in (False, True):
            kwargs = dict(only_trainable=only_trainable, exclude_embeddings=exclude_embeddings)
            assert ours.num_parameters(**kwargs) == theirs.num_parameters(**kwargs), kwargs
    embeddings = ours.get_input_embeddings()
    assert embeddings.proj.weight.shape == theirs.get_input_embeddings().projection.weight.shape
    encoder = ours.vit.encoder if model_class == "ViTMAEForPreTraining" else ours.encoder
    assert embeddings is encoder.vit.patch_embed


def _pooled_std(tensors: list[torch.Tensor]) -> float:
    return float(torch.cat([t.detach().flatten() for t in tensors]).std())


@pytest.mark.parametrize("initializer_range", [0.02, 0.3])
def test_initializer_range_is_honoured_as_in_transformers(initializer_range: float) -> None:
    sizes = {**SMALL, "hidden_size": 64, "decoder_hidden_size": 64}
    torch.manual_seed(0)
    ours = ViTMAEForPreTraining(ViTMAEConfig(**sizes, initializer_range=initializer_range))
    theirs = transformers.ViTMAEForPreTraining(
        transformers.ViTMAEConfig(**sizes, initializer_range=initializer_range)
    )
    patch_proj = ours.get_input_embeddings().proj
    linears = [m for m in ours.modules() if isinstance(m, torch.nn.Linear)]
    their_linears = [m for m in theirs.modules() if isinstance(m, torch.nn.Linear)]
    ours_std = _pooled_std([m.weight for m in linears])
    theirs_std = _pooled_std([m.weight for m in their_linears])
    assert abs(ours_std / initializer_range - 1) < 0.05 and abs(ours_std / theirs_std - 1) < 0.05
    assert all(not m.bias.any() for m in linears)
    norms = [m for m in ours.modules() if isinstance(m, torch.nn.LayerNorm)]
    assert all(bool((m.weight == 1).all()) and not m.bias.any() for m in norms)
    # Patch projection: xavier-uniform over the flattened patch (transformers' ViTMAEEmbeddings).
    fan_out, fan_in = patch_proj.weight.shape[0], patch_proj.weight[0].numel()
    bound = (6.0 / (fan_in + fan_out)) ** 0.5
    assert float(patch_proj.weight.detach().abs().max()) <= bound
    assert abs(float(patch_proj.weight.detach().std()) / (bound / 3**0.5) - 1) < 0.05
    assert not patch_proj.bias.any()
    tokens = [ours.vit.encoder.vit.cls_token, ours.decoder.mask_token]
    assert abs(_pooled_std(tokens) / initializer_range - 1) < 0.3
    # The position tables stay the fixed sin-cos ones.
    grid = ours.config.grid_size
    assert torch.equal(ours.vit.encoder.vit.pos_embed[0], get_2d_sincos_pos_embed(64, grid))
    assert torch.equal(ours.decoder.decoder_pos_embed[0], get_2d_sincos_pos_embed(64, grid))


def test_the_seed_mae_keeps_the_official_initialisation() -> None:
    from ssl_mae.models import MAE

    torch.manual_seed(0)
    model = MAE(img_size=32, patch_size=8, embed_dim=64, depth=1, num_heads=2,
                decoder_embed_dim=64, decoder_depth=1, decoder_num_heads=2)  # fmt: skip
    qkv = model.blocks[0].attn.qkv.weight  # xavier-uniform, not N(0, 0.02)
    assert abs(float(qkv.std()) / (6.0 / (64 + 192)) ** 0.5 * 3**0.5 - 1) < 0.05


def test_attn_implementation_is_honoured() -> None:
    images, noise = _inputs(ViTMAEConfig(**SMALL))
    outputs = {}
    for implementation in ("eager", "sdpa"):
        torch.manual_seed(0)
        model = ViTMAEForPreTraining(
            ViTMAEConfig(**SMALL, attn_implementation=implementation)
        ).eval()
        fused = {m.fused_attn for m in model.modules() if hasattr(m, "fused_attn")}
        assert fused == {implementation == "sdpa"}
        with torch.no_grad():
            outputs[implementation] = model(images, noise=noise).logits
    assert _max_diff(outputs["eager"], outputs["sdpa"]) < ATOL


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_from_pretrained_loads_in_the_saved_dtype_like_transformers(
    dtype: torch.dtype, tmp_path: Path
) -> None:
    ViTMAEForPreTraining(ViTMAEConfig(**SMALL)).to(dtype).save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["dtype"] == str(dtype)[6:]
    theirs = transformers.ViTMAEForPreTraining.from_pretrained(tmp_path)
    ours = ViTMAEForPreTraining.from_pretrained(tmp_path)
    assert next(theirs.parameters()).dtype == next(ours.parameters()).dtype == dtype
    assert ours.config.dtype == dtype
    as_float = ViTMAEForPreTraining.from_pretrained(tmp_path, dtype=torch.float32)
    assert next(as_float.parameters()).dtype == torch.float32
