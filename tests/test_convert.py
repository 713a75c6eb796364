"""Checkpoint converters: official MAE, Hugging Face, timm and Lightly layouts into ours."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any, cast

import pytest
import torch
from safetensors.torch import save_file
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from ssl_mae import convert, masking
from ssl_mae.hf import ViTMAEConfig, ViTMAEForPreTraining, config_from_official_state_dict
from ssl_mae.hf import keys as hf_keys
from ssl_mae.modules import MAEDecoder, MaskedVisionTransformer

ATOL = 1e-5
TINY: dict[str, Any] = dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2)
TINY_HF: dict[str, Any] = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=128,
    decoder_hidden_size=16,
    decoder_num_hidden_layers=2,
    decoder_num_attention_heads=2,
    decoder_intermediate_size=64,
    image_size=32,
    patch_size=8,
    layer_norm_eps=1e-6,
)


def _randomize(module: nn.Module, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))


def _timm_vit(**overrides: Any) -> VisionTransformer:
    kwargs: dict[str, Any] = {
        **TINY,
        "num_classes": 0,
        "qkv_bias": True,
        "norm_layer": partial(nn.LayerNorm, eps=1e-6),
        **overrides,
    }
    vit = VisionTransformer(**kwargs)
    _randomize(vit, 11)
    return vit.eval()


def _images(batch: int = 2, channels: int = 3, size: int = 32) -> torch.Tensor:
    return torch.randn(batch, channels, size, size, generator=torch.Generator().manual_seed(4))


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return float((a.detach().double() - b.detach().double()).abs().max())


# --- official layout -------------------------------------------------------------------------
def test_official_checkpoint_gives_same_loss_as_seed_mae(tmp_path: Path) -> None:
    from ssl_mae.models.mae import MAE

    seed_kwargs: dict[str, Any] = dict(
        img_size=32,
        patch_size=8,
        embed_dim=32,
        depth=2,
        num_heads=2,
        decoder_embed_dim=16,
        decoder_depth=2,
        decoder_num_heads=2,
        layer_norm_eps=1e-6,
        norm_pix_loss=True,
    )
    seed_mae = MAE(**seed_kwargs).eval()
    _randomize(seed_mae, 5)
    # The official training script saves {"model": state_dict, ...}; from a DDP model too.
    official = {"module." + k: v for k, v in seed_mae.to_official_state_dict().items()}
    path = tmp_path / "checkpoint-399.pth"
    torch.save({"model": official, "epoch": 399}, path)

    ours = ViTMAEForPreTraining.from_official(
        path, num_attention_heads=2, decoder_num_attention_heads=2, norm_pix_loss=True
    ).eval()
    assert ours.config.layer_norm_eps == 1e-6
    images = _images()
    noise = torch.rand(2, 16, generator=torch.Generator().manual_seed(8))
    with torch.no_grad():
        seed_loss, seed_pred, seed_mask = seed_mae(images, mask_ratio=0.75, noise=noise)
        out = ours(images, noise=noise)
    assert _max_diff(out.loss, seed_loss) < ATOL
    assert _max_diff(out.logits, seed_pred) < ATOL
    assert torch.equal(out.mask, seed_mask)

    # And back: our weights in the official layout load into the seed MAE unchanged.
    fresh = MAE(**seed_kwargs).eval()
    fresh.load_official(ours.official_state_dict())
    with torch.no_grad():
        assert _max_diff(fresh(images, noise=noise)[0], seed_loss) < ATOL


def test_load_official_into_blocks_and_errors() -> None:
    encoder = MaskedVisionTransformer(_timm_vit(), use_mask_token=False)
    decoder = MAEDecoder(
        num_patches=16,
        patch_size=8,
        embed_dim=32,
        decoder_embed_dim=16,
        decoder_depth=1,
        decoder_num_heads=2,
    )
    _randomize(decoder, 3)
    state = convert.official_state_dict(encoder, decoder)
    assert "blocks.1.attn.qkv.weight" in state and "decoder_blocks.0.mlp.fc2.bias" in state
    assert "mask_token" in state and not any(k.startswith("vit.") for k in state)

    target_encoder = MaskedVisionTransformer(_timm_vit(), use_mask_token=False)
    _randomize(target_encoder, 99)
    target_decoder = MAEDecoder(
        num_patches=16,
        patch_size=8,
        embed_dim=32,
        decoder_embed_dim=16,
        decoder_depth=1,
        decoder_num_heads=2,
    )
    assert convert.load_official(target_encoder, target_decoder, {"model": state}) == []
    for key, value in convert.official_state_dict(target_encoder, target_decoder).items():
        assert torch.equal(value, state[key]), key

    broken = dict(state)
    del broken["blocks.0.norm1.weight"]
    with pytest.raises(ValueError, match=r"missing.*'blocks\.0\.norm1\.weight'"):
        convert.load_official(target_encoder, target_decoder, broken)
    assert convert.load_official(target_encoder, target_decoder, broken, strict=False) == [
        "blocks.0.norm1.weight"
    ]
    broken = {**state, "decoder_pred.weight": torch.zeros(3, 16)}
    with pytest.raises(
        ValueError, match=r"'decoder_pred\.weight': checkpoint \(3, 16\), model \(192, 16\)"
    ):
        convert.load_official(target_encoder, target_decoder, broken, strict=False)
    with pytest.raises(ValueError, match=r"not used by the model.*'extra'"):
        convert.load_official(target_encoder, target_decoder, {**state, "extra": torch.zeros(1)})
    # Encoder-only loading ignores the decoder part and a fine-tuned classifier head.
    encoder_only = {k: v for k, v in state.items() if not convert._is_official_decoder_key(k)}
    with pytest.raises(ValueError, match=r"missing.*'decoder_blocks\.0\.attn\.proj\.bias'"):
        convert.load_official(target_encoder, target_decoder, encoder_only)
    convert.load_official(target_encoder, None, {**state, "head.weight": torch.zeros(10, 32)})


def test_hf_and_official_layouts_convert_both_ways() -> None:
    model = ViTMAEForPreTraining(ViTMAEConfig(**TINY_HF))
    _randomize(model, 1)
    official = model.official_state_dict()
    hf = hf_keys.official_to_hf_state_dict(official)
    prefix = "vit.encoder.layer.1.attention.attention."
    qkv = official["blocks.1.attn.qkv.weight"]
    # Rows of the fused qkv projection are [query; key; value].
    assert torch.equal(hf[prefix + "query.weight"], qkv[:32])
    assert torch.equal(hf[prefix + "key.weight"], qkv[32:64])
    assert torch.equal(hf[prefix + "value.weight"], qkv[64:])
    assert torch.equal(
        hf["decoder.decoder_layers.0.intermediate.dense.weight"],
        official["decoder_blocks.0.mlp.fc1.weight"],
    )
    assert hf[prefix + "query.weight"].data_ptr() != qkv.data_ptr()  # independent for safetensors
    back = hf_keys.hf_to_official_state_dict(hf)
    assert back.keys() == official.keys()
    assert all(torch.equal(back[k], official[k]) for k in official)
    base = hf_keys.official_to_hf_state_dict(
        {k: v for k, v in official.items() if not convert._is_official_decoder_key(k)},
        base_model_prefix="",
    )
    assert "embeddings.cls_token" in base and "layernorm.weight" in base

    with pytest.raises(ValueError, match=r"not ViTMAE weights.*'vit.pooler.dense.weight'"):
        hf_keys.hf_to_official_state_dict({**hf, "vit.pooler.dense.weight": torch.zeros(1)})
    incomplete = {k: v for k, v in hf.items() if k != prefix + "key.bias"}
    with pytest.raises(ValueError, match=r"incomplete query/key/value.*\['key'\]"):
        hf_keys.hf_to_official_state_dict(incomplete)
    with pytest.raises(ValueError, match="not an official MAE weight"):
        hf_keys.official_to_hf_state_dict({"blocks.0.attn.rope.weight": torch.zeros(1)})


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        (
            "vit.layers.3.attention.q_proj.weight",
            "vit.encoder.layer.3.attention.attention.query.weight",
        ),
        ("layers.0.attention.o_proj.bias", "encoder.layer.0.attention.output.dense.bias"),
        (
            "decoder.decoder_layers.1.mlp.fc1.weight",
            "decoder.decoder_layers.1.intermediate.dense.weight",
        ),
        ("decoder.decoder_layers.1.mlp.fc2.bias", "decoder.decoder_layers.1.output.dense.bias"),
        (
            "decoder.decoder_encoder.layer.2.attention.attention.value.bias",
            "decoder.decoder_layers.2.attention.attention.value.bias",
        ),
        (
            "vit.encoder.layer.0.layernorm_before.weight",
            "vit.encoder.layer.0.layernorm_before.weight",
        ),
        ("vit.embeddings.position_embeddings", "vit.embeddings.position_embeddings"),
    ],
)
def test_normalize_hf_key(key: str, expected: str) -> None:
    assert hf_keys.normalize_hf_key(key) == expected


def test_unwrap_checkpoint_reads_files_and_containers(tmp_path: Path) -> None:
    state = {"cls_token": torch.randn(1, 1, 4), "blocks.0.norm1.weight": torch.randn(4)}
    torch.save(
        {"state_dict": {"module." + k: v for k, v in state.items()}, "epoch": 1},
        tmp_path / "a.ckpt",
    )
    save_file(state, str(tmp_path / "b.safetensors"))
    for source in (tmp_path / "a.ckpt", str(tmp_path / "b.safetensors"), {"model": state}):
        loaded = convert.unwrap_checkpoint(source)
        assert loaded.keys() == state.keys()
        assert all(torch.equal(loaded[k], state[k]) for k in state)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        convert.unwrap_checkpoint(tmp_path / "missing.pth")
    with pytest.raises(ValueError, match="holds no tensors"):
        convert.unwrap_checkpoint({"epoch": 3})


def test_infer_official_architecture_and_config() -> None:
    vit = _timm_vit(embed_dim=64, mlp_ratio=2.0, qkv_bias=False, in_chans=1)
    info = convert.infer_official_architecture(vit.state_dict())
    assert info == {
        "embed_dim": 64,
        "depth": 2,
        "mlp_hidden": 128,
        "patch_size": 8,
        "in_chans": 1,
        "grid_size": (4, 4),
        "qkv_bias": False,
    }
    with pytest.raises(ValueError, match="num_attention_heads cannot be read from the weights"):
        config_from_official_state_dict(vit.state_dict())
    config = config_from_official_state_dict(vit.state_dict(), num_attention_heads=4)
    assert (config.num_attention_heads, config.num_channels, config.image_size) == (4, 1, 32)
    with pytest.raises(ValueError, match="missing"):
        convert.infer_official_architecture({"cls_token": torch.zeros(1)})


# --- timm and Lightly --------------------------------------------------------------------------
def test_timm_mae_encoder_into_ours_with_fresh_decoder() -> None:
    vit = _timm_vit()
    # A timm checkpoint of a fine-tuned model has a head; the encoder converter drops it.
    state = {**vit.state_dict(), "head.weight": torch.zeros(10, 32), "head.bias": torch.zeros(10)}
    assert "vit.blocks.0.attn.qkv.weight" in convert.encoder_state_dict_from_timm(state)
    model = ViTMAEForPreTraining.from_timm_encoder(
        state, num_attention_heads=2, decoder_num_attention_heads=2
    ).eval()
    images = _images()
    with torch.no_grad():
        assert _max_diff(model.vit.encoder.encode(images), vit.forward_features(images)) < ATOL
        # The decoder is freshly initialised (MAE init) and the model trains as it is.
        assert float(model.decoder.decoder_embed.weight.abs().sum()) > 0
        out = model(images)
    assert torch.isfinite(out.loss)
    encoder = MaskedVisionTransformer(_timm_vit(depth=1), use_mask_token=False)
    with pytest.raises(ValueError, match=r"not used by the model.*'blocks\.1\."):
        convert.load_timm_encoder(encoder, vit.state_dict())


# MAEDecoderTIMM is deprecated in Lightly but is what its MAE checkpoints hold.
@pytest.mark.filterwarnings("ignore:MAEDecoderTIMM is deprecated:FutureWarning")
def test_lightly_encoder_and_decoder_into_ours() -> None:
    lightly_modules = pytest.importorskip("lightly.models.modules")
    torch.manual_seed(0)
    backbone = lightly_modules.MaskedVisionTransformerTIMM(vit=_timm_vit())
    lightly_decoder = lightly_modules.MAEDecoderTIMM(
        num_patches=16,
        patch_size=8,
        embed_dim=32,
        decoder_embed_dim=16,
        decoder_depth=1,
        decoder_num_heads=2,
    )
    _randomize(backbone, 21)
    _randomize(lightly_decoder, 22)
    lightly_model = nn.ModuleDict({"backbone": backbone, "decoder": lightly_decoder}).eval()
    state = lightly_model.state_dict()

    # Encoder: our MaskedVisionTransformer takes Lightly's keys as they are (mask token included).
    encoder = MaskedVisionTransformer(_timm_vit(), use_mask_token=True).eval()
    encoder.load_state_dict(convert.encoder_state_dict_from_lightly(state, prefix="backbone."))
    images = _images()
    idx_keep, idx_mask = masking.random_token_mask(
        (2, 17), generator=torch.Generator().manual_seed(2)
    )
    with torch.no_grad():
        for kwargs in ({"idx_keep": idx_keep}, {"idx_mask": idx_mask}, {}):
            assert (
                _max_diff(encoder.encode(images, **kwargs), backbone.encode(images, **kwargs))
                < ATOL
            )

    # Whole model: encoder + decoder into ViTMAEForPreTraining.
    model = ViTMAEForPreTraining.from_lightly(
        state,
        prefix="backbone.",
        decoder_prefix="decoder.",
        num_attention_heads=2,
        decoder_num_attention_heads=2,
    ).eval()
    with torch.no_grad():
        latent = backbone.encode(images, idx_keep=idx_keep)
        ours_latent = model.vit.encoder.encode(images, idx_keep=idx_keep)
        assert _max_diff(ours_latent, latent) < ATOL
        # Lightly's decoder on a full sequence with mask tokens vs ours.
        full = masking.set_at_index(
            masking.repeat_token(lightly_decoder.mask_token, (2, 17)),
            idx_keep,
            lightly_decoder.embed(latent),
        )
        expected = lightly_decoder.predict(lightly_decoder.decode(full))
        expected = masking.get_at_index(expected, idx_mask)
        ours_pred = model.decoder.predict_masked(ours_latent, idx_keep, idx_mask)
        assert _max_diff(ours_pred, expected) < ATOL
    with pytest.raises(ValueError, match=r"no Lightly encoder weights under prefix 'encoder.'"):
        convert.encoder_state_dict_from_lightly(state, prefix="encoder.")


def test_export_timm_vit_is_plain_and_independent() -> None:
    model = ViTMAEForPreTraining(ViTMAEConfig(**TINY_HF)).eval()
    _randomize(model, 6)
    vit = convert.export_timm_vit(model, num_classes=5).eval()
    assert isinstance(vit, VisionTransformer)
    images = _images()
    with torch.no_grad():
        assert _max_diff(vit.forward_features(images), model.vit.encoder.encode(images)) < ATOL
        assert vit(images).shape == (2, 5)
    assert all(p.requires_grad for p in vit.parameters())
    with torch.no_grad():
        cast(Any, vit).blocks[0].attn.qkv.weight.zero_()
    assert float(model.vit.encoder.vit.blocks[0].attn.qkv.weight.detach().abs().sum()) > 0
    # A plain timm model loads the exported weights with timm's own names.
    fresh = VisionTransformer(
        **TINY, num_classes=5, mlp_ratio=4.0, norm_layer=partial(nn.LayerNorm, eps=1e-6)
    )
    fresh.load_state_dict(vit.state_dict())
    with pytest.raises(TypeError, match="contains no MaskedVisionTransformer"):
        convert.export_timm_vit(nn.Linear(2, 2))
    with pytest.raises(ValueError, match="num_classes"):
        convert.export_timm_vit(model, num_classes=-1)


# --- head counts are never guessed -------------------------------------------------------------
def _official_with_heads(heads: int, decoder_heads: int) -> tuple[Any, dict[str, torch.Tensor]]:
    """A transformers ViTMAE with the given heads and its weights in the official layout."""
    transformers = pytest.importorskip("transformers")
    # hidden 128 // 64 = 2 and the decoder default 16 are what used to be guessed.
    sizes = {
        **TINY_HF,
        "hidden_size": 128,
        "decoder_hidden_size": 64,
        "num_attention_heads": heads,
        "decoder_num_attention_heads": decoder_heads,
    }
    config = transformers.ViTMAEConfig(**sizes, attn_implementation="eager")
    torch.manual_seed(0)
    theirs = transformers.ViTMAEForPreTraining(config).eval()
    _randomize(theirs, 3)
    official = hf_keys.hf_to_official_state_dict(theirs.state_dict())
    return theirs, official


def test_official_weights_without_head_counts_raise_instead_of_guessing() -> None:
    from ssl_mae.models import MAE

    theirs, official = _official_with_heads(4, 4)
    both = "num_attention_heads and decoder_num_attention_heads cannot be read from the weights"
    with pytest.raises(ValueError, match=both):
        ViTMAEForPreTraining.from_official(official)
    with pytest.raises(ValueError, match=both):
        config_from_official_state_dict({"model": official})
    with pytest.raises(ValueError, match=r"^decoder_num_attention_heads cannot"):
        ViTMAEForPreTraining.from_official(official, num_attention_heads=4)
    with pytest.raises(ValueError, match="num_heads and decoder_num_heads cannot be read"):
        MAE.from_official(official)
    encoder = {k: v for k, v in official.items() if not k.startswith(("decoder", "mask_token"))}
    with pytest.raises(ValueError, match=r"^num_attention_heads cannot be read"):
        ViTMAEForPreTraining.from_timm_encoder(encoder)
    lightly_state = {"backbone.vit." + k: v for k, v in encoder.items()}
    with pytest.raises(ValueError, match=r"^num_attention_heads cannot be read"):
        ViTMAEForPreTraining.from_lightly(lightly_state, prefix="backbone.")

    # With the true counts the loss is transformers' own (the guess 2/16 gave another one).
    images = _images(channels=3)
    noise = torch.rand(2, 16, generator=torch.Generator().manual_seed(8))
    ours = ViTMAEForPreTraining.from_official(
        official, num_attention_heads=4, decoder_num_attention_heads=4
    ).eval()
    seed = MAE.from_official(official, num_heads=4, decoder_num_heads=4)
    with torch.no_grad():
        expected = theirs(images, noise=noise).loss
        diff = _max_diff(ours(images, noise=noise).loss, expected)
        print(f"PARITY from_official(4/4 heads) vs transformers loss: max abs diff {diff:.3e}")
        assert diff < ATOL
        assert _max_diff(seed.eval()(images, noise=noise)[0], expected) < ATOL
        guessed = ViTMAEForPreTraining.from_official(
            official, num_attention_heads=2, decoder_num_attention_heads=16
        ).eval()
        assert _max_diff(guessed(images, noise=noise).loss, expected) > 1e-3


def test_head_counts_come_from_the_checkpoints_hyperparameters(tmp_path: Path) -> None:
    from argparse import Namespace

    from ssl_mae.models import MAE

    base = {"embed_dim": 768, "depth": 12, "patch_size": 16, "decoder_embed_dim": 512,
            "decoder_depth": 8}  # fmt: skip
    for name in ("mae_vit_base_patch16", "mae_vit_base_patch16_dec512d8b"):
        checkpoint = convert.Checkpoint({}, {"model": name})
        assert convert.checkpoint_head_counts(checkpoint, base, None, None) == (12, 16)
        assert convert.checkpoint_head_counts(checkpoint, base, 6, None) == (6, 16)
    large = {**base, "embed_dim": 1024, "depth": 24}
    large_args = convert.Checkpoint({}, {"model": "mae_vit_large_patch16"})
    assert convert.checkpoint_head_counts(large_args, large, None, None) == (16, 16)
    # An encoder-only checkpoint does not need the decoder count.
    encoder_only = {k: v for k, v in large.items() if not k.startswith("decoder")}
    assert convert.checkpoint_head_counts(convert.Checkpoint({}), encoder_only, 8, None) == (
        8,
        None,
    )
    with pytest.raises(ValueError, match=r"differ from that model in \['depth', 'embed_dim'\]"):
        convert.checkpoint_head_counts(large_args, base, None, None)
    with pytest.raises(ValueError, match="'my_vit' is no official MAE model; pass num_heads"):
        convert.checkpoint_head_counts(convert.Checkpoint({}, {"model": "my_vit"}), base, None, 2)

    # A file saved as the official main_pretrain.py does: {"model", "optimizer", "epoch", "args"},
    # with args an argparse.Namespace, read without unpickling arbitrary code.
    _, official = _official_with_heads(4, 4)
    path = tmp_path / "checkpoint-799.pth"
    args = Namespace(model="mae_vit_base_patch16", norm_pix_loss=True, mask_ratio=0.6, lr=None)
    torch.save({"model": official, "epoch": 799, "args": args}, path)
    read = convert.read_checkpoint(path)
    assert read.hyperparameters["model"] == "mae_vit_base_patch16" and read.state_dict.keys() == (
        official.keys()
    )
    with pytest.raises(ValueError, match=r"args\.model is 'mae_vit_base_patch16', but its weights"):
        MAE.from_official(path)  # the weights are not ViT-B: its heads would be a guess
    model = MAE.from_official(path, num_heads=4, decoder_num_heads=4)
    assert model.norm_pix_loss and model.hparams["mask_ratio"] == 0.6  # from args
    assert model.load_official(path) == []  # such files did not load at all before
    config = config_from_official_state_dict(
        path, num_attention_heads=4, decoder_num_attention_heads=4
    )
    assert config.norm_pix_loss and config.mask_ratio == 0.6
    # Lightning-style hyper-parameters hold the counts themselves.
    lightning = {
        "state_dict": official,
        "hyper_parameters": {"num_heads": 4, "decoder_num_heads": 4},
    }
    config = config_from_official_state_dict(lightning)
    assert (config.num_attention_heads, config.decoder_num_attention_heads) == (4, 4)
