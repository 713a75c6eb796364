"""Parity with Lightly (imported from PyPI): same weights + same indices give the same outputs."""

from __future__ import annotations

import inspect
import warnings

import pytest
import torch
from timm.models.vision_transformer import VisionTransformer

from ssl_mae import masking
from ssl_mae.modules import MAEDecoder, MaskedVisionTransformer

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
