"""MaskedVisionTransformer (timm and torchvision) and MAEDecoder behaviour and errors."""

from __future__ import annotations

import pytest
import torch
from timm.models.vision_transformer import VisionTransformer

from ssl_mae import masking
from ssl_mae.modules import (
    MAEDecoder,
    MaskedVisionTransformer,
    MaskedVisionTransformerTorchvision,
    wrap_vit,
)
from ssl_mae.pos_embed import get_2d_sincos_pos_embed


def tiny_encoder(**overrides: object) -> MaskedVisionTransformer:
    kwargs: dict[str, object] = dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2)
    kwargs.update(overrides)
    return MaskedVisionTransformer.from_timm(kwargs)


def test_encode_only_visible_tokens_and_sincos_frozen() -> None:
    enc = tiny_encoder()
    assert not enc.vit.pos_embed.requires_grad
    assert torch.equal(enc.vit.pos_embed[0], get_2d_sincos_pos_embed(32, 4))
    images = torch.randn(2, 3, 32, 32)
    idx_keep, _ = masking.random_token_mask((2, enc.sequence_length), 0.75)
    out = enc.encode(images, idx_keep=idx_keep)
    assert out.shape == (2, 1 + 4, 32)
    # Changing a masked patch's pixels does not change the encoding of the visible tokens.
    masked_patch = int(sorted(set(range(1, 17)) - set(idx_keep[0].tolist()))[0]) - 1
    row, col = divmod(masked_patch, 4)
    changed = images.clone()
    changed[0, :, row * 8 : row * 8 + 8, col * 8 : col * 8 + 8] += 5
    assert torch.allclose(enc.encode(changed, idx_keep=idx_keep), out)


def test_non_square_images_and_other_sizes() -> None:
    enc = tiny_encoder(img_size=(16, 40))
    assert enc.grid_size == (2, 5)
    assert enc.encode(torch.randn(1, 3, 16, 40)).shape == (1, 11, 32)
    # Other sizes interpolate the position embedding.
    assert enc.encode(torch.randn(1, 3, 24, 48)).shape == (1, 1 + 18, 32)
    assert enc(torch.randn(2, 3, 32, 32)).shape == (2, 32)


@pytest.mark.parametrize("in_chans", [1, 4])
def test_channels(in_chans: int) -> None:
    enc = tiny_encoder(in_chans=in_chans)
    assert enc.encode(torch.randn(1, in_chans, 32, 32)).shape == (1, 17, 32)
    with pytest.raises(ValueError, match=f"images must have {in_chans} channels"):
        enc.encode(torch.randn(1, 3 if in_chans != 3 else 1, 32, 32))


def test_register_tokens_no_class_token_pooling() -> None:
    enc = tiny_encoder(reg_tokens=2, class_token=False, global_pool="avg")
    assert enc.num_prefix_tokens == 2 and enc.sequence_length == 18
    tokens = enc.encode(torch.randn(2, 3, 32, 32))
    assert torch.allclose(enc.pool(tokens), tokens[:, 2:].mean(1))


def test_learned_pos_embed_and_mask_token_options() -> None:
    enc = tiny_encoder()
    enc2 = MaskedVisionTransformer(enc.vit, pos_embed_initialization="learn", use_mask_token=False)
    assert enc2.vit.pos_embed.requires_grad and enc2.mask_token is None
    with pytest.raises(ValueError, match="use_mask_token=False"):
        enc2.encode(torch.randn(1, 3, 32, 32), idx_mask=torch.tensor([[1]]))
    with pytest.raises(ValueError, match="pos_embed_initialization must be one of"):
        MaskedVisionTransformer(enc.vit, pos_embed_initialization="random")
    with pytest.raises(ValueError, match="idx_mask and mask cannot both be set"):
        enc.encode(torch.randn(1, 3, 32, 32), idx_mask=torch.tensor([[1]]), mask=torch.zeros(1, 17))


def test_bool_mask_equals_idx_mask() -> None:
    enc = tiny_encoder().eval()
    images = torch.randn(2, 3, 32, 32)
    _, idx_mask = masking.random_token_mask((2, 17), 0.5)
    mask = torch.zeros(2, 17, dtype=torch.bool).scatter_(1, idx_mask, True)
    assert torch.allclose(enc.encode(images, idx_mask=idx_mask), enc.encode(images, mask=mask))


def test_grad_checkpointing_same_gradients() -> None:
    torch.manual_seed(0)
    enc = tiny_encoder()
    images = torch.randn(2, 3, 32, 32)
    enc.encode(images).sum().backward()
    grads = {n: p.grad.clone() for n, p in enc.named_parameters() if p.grad is not None}
    enc.zero_grad()
    enc.set_grad_checkpointing(True)
    enc.encode(images).sum().backward()
    for name, param in enc.named_parameters():
        if name in grads:
            assert torch.allclose(param.grad, grads[name], atol=1e-6), name


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast_dtypes(dtype: torch.dtype) -> None:
    enc = tiny_encoder()
    dec = MAEDecoder(
        16, 8, embed_dim=32, decoder_embed_dim=16, decoder_depth=1, decoder_num_heads=2
    )
    images = torch.randn(2, 3, 32, 32)
    idx_keep, idx_mask = masking.random_token_mask((2, 17), 0.75)
    with torch.autocast("cpu", dtype=dtype):
        pred = dec.predict_masked(enc.encode(images, idx_keep=idx_keep), idx_keep, idx_mask)
        masked = enc.encode(images, idx_mask=idx_mask)
    assert pred.shape == (2, 12, 192) and torch.isfinite(pred.float()).all()
    assert torch.isfinite(masked.float()).all()


def test_torchvision_adapter() -> None:
    from torchvision.models import VisionTransformer as TorchvisionViT

    tv = TorchvisionViT(
        image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64
    )
    enc = wrap_vit(tv)
    assert isinstance(enc, MaskedVisionTransformerTorchvision)
    images = torch.randn(2, 3, 32, 32)
    idx_keep, _ = masking.random_token_mask((2, enc.sequence_length), 0.75)
    assert enc.encode(images, idx_keep=idx_keep).shape == (2, 5, 32)
    # Without masking the adapter reproduces torchvision's own encoder on the class token.
    enc.eval(), tv.eval()
    with torch.no_grad():
        x = tv._process_input(images)
        x = torch.cat([tv.class_token.expand(2, -1, -1), x], dim=1)
        reference = tv.encoder(x)[:, 0]
        assert torch.allclose(enc(images), reference, atol=1e-5)
    with pytest.raises(TypeError, match="MaskedVisionTransformerTorchvision"):
        MaskedVisionTransformer(tv)


def test_wrap_vit_rejects_non_vit() -> None:
    with pytest.raises(TypeError, match="timm VisionTransformer"):
        wrap_vit(torch.nn.Linear(2, 2))
    assert isinstance(
        wrap_vit(VisionTransformer(img_size=16, patch_size=8, embed_dim=16, depth=1, num_heads=2)),
        MaskedVisionTransformer,
    )


def test_decoder_predict_all_official_semantics() -> None:
    torch.manual_seed(0)
    dec = MAEDecoder(
        16, 4, in_chans=1, embed_dim=32, decoder_embed_dim=16, decoder_depth=1, decoder_num_heads=2
    )
    x = torch.randn(2, 1 + 16, 32)  # full sequence, prefix first
    noise = torch.rand(2, 16)
    kept, _, ids_restore = masking.random_masking(x[:, 1:], 0.75, noise=noise)
    visible = torch.cat([x[:, :1], kept], dim=1)
    pred = dec.predict_all(visible, ids_restore)
    assert pred.shape == (2, 16, 16)
    # Reference: the official forward_decoder steps written out.
    emb = dec.decoder_embed(visible)
    mask_tokens = dec.mask_token.repeat(2, 16 + 1 - emb.shape[1], 1)
    seq = torch.cat([emb[:, 1:], mask_tokens], dim=1)
    seq = torch.gather(seq, 1, ids_restore.unsqueeze(-1).repeat(1, 1, 16))
    seq = torch.cat([emb[:, :1], seq], dim=1) + dec.decoder_pos_embed
    seq = dec.decoder_norm(dec.decoder_blocks(seq))
    assert torch.allclose(pred, dec.decoder_pred(seq)[:, 1:], atol=1e-6)
    # The same masks in the idx convention give the same predictions for masked patches.
    idx_keep, idx_mask = masking.random_token_mask((2, 17), 0.75, noise=noise)
    by_index = dec.predict_masked(visible, idx_keep, idx_mask)
    assert torch.allclose(by_index, masking.get_at_index(pred, idx_mask - 1), atol=1e-5)


def test_decoder_zero_prefix_and_non_square_and_mask_token_gets_grad() -> None:
    dec = MAEDecoder(
        10,
        4,
        embed_dim=8,
        decoder_embed_dim=8,
        decoder_depth=1,
        decoder_num_heads=2,
        num_prefix_tokens=0,
        grid_size=(2, 5),
    )
    idx_keep, idx_mask = masking.random_token_mask((3, 10), 0.6, num_prefix_tokens=0)
    pred = dec.predict_masked(torch.randn(3, idx_keep.shape[1], 8), idx_keep, idx_mask)
    assert pred.shape == (3, 6, 48)
    pred.sum().backward()
    assert dec.mask_token.grad is not None and dec.mask_token.grad.abs().sum() > 0


def test_decoder_bad_input() -> None:
    dec = MAEDecoder(16, 4, embed_dim=8, decoder_embed_dim=8, decoder_depth=1, decoder_num_heads=2)
    idx_keep, idx_mask = masking.random_token_mask((2, 17), 0.75)
    with pytest.raises(ValueError, match="idx_keep must index the"):
        dec.predict_masked(torch.randn(2, 3, 8), idx_keep, idx_mask)
    with pytest.raises(ValueError, match="together cover"):
        dec.predict_masked(torch.randn(2, 5, 8), idx_keep, idx_mask[:, :3])
    with pytest.raises(ValueError, match=r"idx_mask values must lie in \[0, 16\]"):
        dec.predict_masked(torch.randn(2, 5, 8), idx_keep, idx_mask + 5)
    with pytest.raises(ValueError, match="not a square grid"):
        MAEDecoder(10, 4)
    with pytest.raises(ValueError, match="divisible by decoder_num_heads"):
        MAEDecoder(16, 4, decoder_embed_dim=10, decoder_num_heads=4)
    with pytest.raises(ValueError, match="full sequence of 17 tokens"):
        dec.decode(torch.randn(1, 5, 8))


def test_encoder_bad_input() -> None:
    enc = tiny_encoder(img_size=32, patch_size=16)
    with pytest.raises(ValueError, match="multiples of the patch size 16, got 33x32"):
        enc.encode(torch.randn(1, 3, 33, 32))
    with pytest.raises(TypeError, match="floating point"):
        enc.encode(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"images must have shape \(B, C, H, W\)"):
        enc.encode(torch.randn(3, 32, 32))
    with pytest.raises(ValueError, match=r"idx_keep values must lie in \[0, 4\]"):
        enc.encode(torch.randn(1, 3, 32, 32), idx_keep=torch.tensor([[0, 5]]))
    with pytest.raises(ValueError, match="not a timm model name"):
        MaskedVisionTransformer.from_timm("no_such_model")


@pytest.mark.parametrize("overrides", [{}, {"reg_tokens": 2}, {"no_embed_class": True}])
def test_add_pos_embed_reads_the_grid_off_the_tokens(overrides: dict[str, object]) -> None:
    enc = tiny_encoder(**overrides).eval()
    images = torch.randn(2, 3, 48, 48)  # a 6x6 grid, the native one is 4x4
    tokens = enc.prepend_prefix_tokens(enc.images_to_tokens(images))
    inferred = enc.add_pos_embed(tokens)
    assert torch.equal(inferred, enc.add_pos_embed(tokens, grid_size=(6, 6)))
    assert not torch.equal(inferred[:, -1], tokens[:, -1])  # a table was added to the patches
    native = enc.prepend_prefix_tokens(enc.images_to_tokens(torch.randn(2, 3, 32, 32)))
    assert torch.equal(enc.add_pos_embed(native), enc.add_pos_embed(native, grid_size=(4, 4)))
    # A patch count that is neither the native grid nor a square one needs grid_size.
    wide = enc.prepend_prefix_tokens(enc.images_to_tokens(torch.randn(2, 3, 16, 48)))
    with pytest.raises(ValueError, match=r"12 patch tokens.*pass grid_size"):
        enc.add_pos_embed(wide)
    assert enc.add_pos_embed(wide, grid_size=(2, 6)).shape == wide.shape


def test_encoder_keyword_and_positional_options() -> None:
    vit = tiny_encoder().vit
    positional = MaskedVisionTransformer(vit, None, "skip", False, "skip", False)
    assert positional.antialias is False and positional.mask_token is None
    with pytest.raises(ValueError, match="idx_mask and mask cannot both be set at the same time"):
        tiny_encoder().encode(
            torch.randn(1, 3, 32, 32),
            idx_mask=torch.tensor([[1]]),
            mask=torch.zeros(1, 17, dtype=torch.bool),
        )
