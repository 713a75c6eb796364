"""Parity with Lightly (imported from PyPI): same weights + same indices give the same outputs."""

from __future__ import annotations

import inspect
import warnings
from typing import Any

import pytest
import torch
from timm.models.vision_transformer import VisionTransformer

from ssl_mae import masking
from ssl_mae.modules import MAEDecoder, MaskedVisionTransformer, MaskedVisionTransformerTorchvision

lightly_utils = pytest.importorskip("lightly.models.utils")
lightly_modules = pytest.importorskip("lightly.models.modules")

ATOL = 1e-5


def report(name: str, diff: float) -> None:
    print(f"PARITY {name}: max abs diff {diff:.3e}")
    assert diff <= ATOL, f"{name} differs by {diff}"


def _vit(**overrides: object) -> VisionTransformer:
    kwargs: dict[str, object] = dict(
        img_size=32, patch_size=4, in_chans=3, embed_dim=64, depth=2, num_heads=4, num_classes=0
    )
    kwargs.update(overrides)
    return VisionTransformer(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"class_token": False, "global_pool": "avg"},
        {"reg_tokens": 4},
        {"in_chans": 1},
    ],
    ids=["cls", "no-cls", "registers", "1-channel"],
)
def test_encoder_matches_lightly(overrides: dict[str, object]) -> None:
    torch.manual_seed(0)
    theirs = lightly_modules.MaskedVisionTransformerTIMM(vit=_vit(**overrides))
    ours = MaskedVisionTransformer(vit=_vit(**overrides))
    ours.load_state_dict(theirs.state_dict())
    theirs.eval(), ours.eval()
    in_chans = int(overrides.get("in_chans", 3))  # type: ignore[call-overload]
    images = torch.randn(3, in_chans, 32, 32)
    num_prefix = ours.num_prefix_tokens
    idx_keep, idx_mask = masking.random_token_mask(
        (3, ours.sequence_length),
        0.75,
        num_prefix_tokens=num_prefix,
        mask_class_token=num_prefix == 0,
    )
    with torch.no_grad():
        diff = (
            (ours.encode(images, idx_keep=idx_keep) - theirs.encode(images, idx_keep=idx_keep))
            .abs()
            .max()
        )
        report(f"encode[{overrides}]", float(diff))
        diff = (ours(images) - theirs(images)).abs().max()
        report(f"forward[{overrides}]", float(diff))
        diff = (
            (ours.encode(images, idx_mask=idx_mask) - theirs.encode(images, idx_mask=idx_mask))
            .abs()
            .max()
        )
        report(f"encode idx_mask[{overrides}]", float(diff))
        ours_out, ours_mid = ours.forward_intermediates(images, idx_keep=idx_keep, norm=True)
        theirs_out, theirs_mid = theirs.forward_intermediates(images, idx_keep=idx_keep, norm=True)
        diff = max(
            (a - b).abs().max()
            for a, b in zip([ours_out, *ours_mid], [theirs_out, *theirs_mid], strict=True)
        )
        report(f"forward_intermediates[{overrides}]", float(diff))


def test_decoder_matches_lightly_mae_decoder() -> None:
    torch.manual_seed(0)
    kwargs = dict(
        num_patches=64,
        patch_size=4,
        in_chans=3,
        embed_dim=64,
        decoder_embed_dim=32,
        decoder_depth=2,
        decoder_num_heads=4,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MAEDecoderTIMM is deprecated in lightly 1.6
        theirs = lightly_modules.MAEDecoderTIMM(**kwargs)
    ours = MAEDecoder(**kwargs)  # type: ignore[arg-type]
    ours.load_state_dict(theirs.state_dict())
    assert set(ours.state_dict()) == set(theirs.state_dict())
    x = torch.randn(2, 65, 64)
    with torch.no_grad():
        report("decoder.forward", float((ours(x) - theirs(x)).abs().max()))
        emb = ours.embed(x)
        report("decoder.embed", float((emb - theirs.embed(x)).abs().max()))
        report("decoder.decode", float((ours.decode(emb) - theirs.decode(emb)).abs().max()))

        # predict_masked equals Lightly's example wiring: embed, scatter visible tokens into a
        # sequence of mask tokens, decode, take the masked positions, predict.
        idx_keep, idx_mask = masking.random_token_mask((2, 65), 0.75)
        x_encoded = torch.randn(2, idx_keep.shape[1], 64)
        seq = lightly_utils.repeat_token(ours.mask_token, (2, 65))
        seq = lightly_utils.set_at_index(seq, idx_keep, theirs.embed(x_encoded))
        expected = theirs.predict(lightly_utils.get_at_index(theirs.decode(seq), idx_mask))
        got = ours.predict_masked(x_encoded, idx_keep, idx_mask)
        report("decoder.predict_masked vs lightly wiring", float((got - expected).abs().max()))


def test_patchify_matches_lightly() -> None:
    images = torch.randn(2, 3, 32, 32)
    ours = masking.patchify(images, 8)
    assert torch.equal(ours, lightly_utils.patchify(images, 8))
    assert torch.equal(
        masking.unpatchify(ours, 8, channels=3), lightly_utils.unpatchify(ours, 8, 3)
    )
    report("patchify/unpatchify", 0.0)


def test_index_helpers_match_lightly() -> None:
    tokens = torch.randn(2, 9, 5)
    index = torch.tensor([[0, 4, 8], [1, 2, 3]])
    value = torch.randn(2, 3, 5)
    token = torch.randn(1, 1, 5)
    assert torch.equal(
        masking.get_at_index(tokens, index), lightly_utils.get_at_index(tokens, index)
    )
    assert torch.equal(
        masking.set_at_index(tokens, index, value), lightly_utils.set_at_index(tokens, index, value)
    )
    assert torch.equal(
        masking.mask_at_index(tokens, index, token),
        lightly_utils.mask_at_index(tokens, index, token),
    )
    assert torch.equal(
        masking.repeat_token(token, (2, 3)), lightly_utils.repeat_token(token, (2, 3))
    )
    assert torch.equal(
        masking.prepend_class_token(tokens, token), lightly_utils.prepend_class_token(tokens, token)
    )


@pytest.mark.parametrize(("length", "ratio"), [(197, 0.75), (65, 0.6), (50, 0.9), (17, 0.5)])
def test_random_token_mask_counts_match_lightly(length: int, ratio: float) -> None:
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    torch.manual_seed(0)
    theirs_keep, theirs_mask = lightly_utils.random_token_mask((4, length), ratio)
    ours_keep, ours_mask = masking.random_token_mask((4, length), ratio, generator=g1)
    assert ours_keep.shape == theirs_keep.shape and ours_mask.shape == theirs_mask.shape
    # Same noise → same split: feed Lightly's noise convention (class token forced first).
    noise = torch.rand(4, length - 1, generator=g2)
    ours_keep, ours_mask = masking.random_token_mask((4, length), ratio, noise=noise)
    full_noise = torch.cat([torch.full((4, 1), -1.0), noise], dim=1)
    order = torch.argsort(full_noise, dim=1)
    assert torch.equal(ours_keep, order[:, : ours_keep.shape[1]])
    assert torch.equal(ours_mask, order[:, ours_keep.shape[1] :])


def test_repeat_token_owns_its_memory_like_lightly() -> None:
    token = torch.randn(1, 1, 5)
    ours, theirs = masking.repeat_token(token, (2, 3)), lightly_utils.repeat_token(token, (2, 3))
    ours[0, 0] = 0.0
    theirs[0, 0] = 0.0
    assert torch.equal(ours, theirs)
    report("repeat_token after an in-place write", float((ours - theirs).abs().max()))


@pytest.mark.parametrize("mask_class_token", [False, True])
@pytest.mark.parametrize("ratio", [None, 1.0], ids=["default-ratio", "ratio-1"])
def test_random_token_mask_defaults_and_ratio_one_like_lightly(
    mask_class_token: bool, ratio: float | None
) -> None:
    ratio_args = () if ratio is None else (ratio,)
    theirs_keep, theirs_mask = lightly_utils.random_token_mask(
        (3, 17), *ratio_args, mask_class_token=mask_class_token
    )
    ours_keep, ours_mask = masking.random_token_mask(
        (3, 17), *ratio_args, mask_class_token=mask_class_token
    )
    assert ours_keep.shape == theirs_keep.shape and ours_mask.shape == theirs_mask.shape
    if ratio == 1.0:  # no randomness left in what is kept
        assert torch.equal(ours_keep, theirs_keep)
        assert torch.equal(ours_mask.sort(dim=1).values, theirs_mask.sort(dim=1).values)
    theirs_default = inspect.signature(lightly_utils.random_token_mask).parameters["mask_ratio"]
    ours_default = inspect.signature(masking.random_token_mask).parameters["mask_ratio"]
    assert ours_default.default == theirs_default.default


def _leading_parameters(function: object, count: int) -> list[str]:
    return list(inspect.signature(function).parameters)[:count]  # type: ignore[arg-type]


@pytest.mark.parametrize("backend", ["timm", "torchvision"])
def test_encoder_positional_arguments_mean_what_they_mean_in_lightly(backend: str) -> None:
    if backend == "timm":
        ours_cls, theirs_cls = MaskedVisionTransformer, lightly_modules.MaskedVisionTransformerTIMM
        vit: torch.nn.Module = _vit()
    else:
        from torchvision.models import VisionTransformer as TorchvisionViT

        ours_cls = MaskedVisionTransformerTorchvision
        theirs_cls = lightly_modules.MaskedVisionTransformerTorchvision
        vit = TorchvisionViT(32, 8, num_layers=1, num_heads=2, hidden_dim=16, mlp_dim=32)
    names = ["vit", "mask_token", "weight_initialization", "antialias", "pos_embed_initialization"]
    assert _leading_parameters(theirs_cls.__init__, 6)[1:] == names
    assert _leading_parameters(ours_cls.__init__, 6)[1:] == names
    encoder = ours_cls(vit, None, "", False, "learn")
    assert encoder.antialias is False
    assert encoder.mask_token is not None and encoder.mask_token.shape[-1] == encoder.embed_dim
    pos_embed, _ = encoder._pos_embed_param()
    assert pos_embed is not None and pos_embed.requires_grad  # "learn", not the frozen sin-cos


@pytest.mark.parametrize("antialias", [True, False])
@pytest.mark.parametrize("size", [48, 24], ids=["larger", "smaller"])
def test_add_pos_embed_infers_the_grid_of_other_sizes_like_lightly(
    antialias: bool, size: int
) -> None:
    torch.manual_seed(0)
    theirs = lightly_modules.MaskedVisionTransformerTIMM(
        vit=_vit(dynamic_img_size=True), antialias=antialias
    )
    ours = MaskedVisionTransformer(_vit(dynamic_img_size=True), antialias=antialias)
    ours.load_state_dict(theirs.state_dict())
    ours.eval(), theirs.eval()
    images = torch.randn(2, 3, size, size)
    with torch.no_grad():
        tokens = theirs.prepend_prefix_tokens(theirs.images_to_tokens(images))
        diff = (ours.add_pos_embed(tokens) - theirs.add_pos_embed(tokens)).abs().max()
        report(f"add_pos_embed {size}px antialias={antialias}", float(diff))
        diff = (ours.encode(images) - theirs.encode(images)).abs().max()
        report(f"encode {size}px antialias={antialias}", float(diff))


def test_idx_mask_and_mask_together_raise_lightlys_error() -> None:
    theirs = lightly_modules.MaskedVisionTransformerTIMM(vit=_vit())
    ours = MaskedVisionTransformer(_vit())
    images = torch.randn(1, 3, 32, 32)
    idx_mask = torch.tensor([[1, 2]])
    mask = torch.zeros(1, ours.sequence_length, dtype=torch.bool)
    with pytest.raises(ValueError) as theirs_error:
        theirs.encode(images, idx_mask=idx_mask, mask=mask)
    for call in (ours.encode, ours.forward, ours.preprocess):
        with pytest.raises(ValueError, match="cannot both be set at the same time") as ours_error:
            call(images, idx_mask=idx_mask, mask=mask)
        assert str(ours_error.value) == str(theirs_error.value)


@pytest.mark.parametrize("initialize_weights", [False, True])
def test_decoder_initialisation_matches_lightly(initialize_weights: bool) -> None:
    kwargs: dict[str, Any] = dict(
        num_patches=64, patch_size=4, embed_dim=64, decoder_embed_dim=32, decoder_depth=2,
        decoder_num_heads=4, initialize_weights=initialize_weights,
    )  # fmt: skip
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MAEDecoderTIMM is deprecated in lightly 1.6
        theirs = lightly_modules.MAEDecoderTIMM(**kwargs).state_dict()
    torch.manual_seed(0)
    ours = MAEDecoder(**kwargs).state_dict()
    assert list(ours) == list(theirs)
    # Same seed → the same weights: the same modules draw the same numbers in the same order.
    for key in theirs:
        if key != "decoder_pos_embed":
            assert torch.equal(ours[key], theirs[key]), key
    diff = float((ours["decoder_pos_embed"] - theirs["decoder_pos_embed"]).abs().max())
    report(f"decoder init (initialize_weights={initialize_weights}) decoder_pos_embed", diff)
    if not initialize_weights:  # the position table and the mask token are left to the caller
        assert not ours["decoder_pos_embed"].any() and not ours["mask_token"].any()
