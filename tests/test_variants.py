"""The MAE variants on the one core: block masking, HOG targets, the CrossMAE decoder, their FLOP
count and presets. Each block is checked for its defining property against an independent small
computation."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from ssl_mae import MAEDecoder, MaskedAutoencoder, MaskedVisionTransformer
from ssl_mae.core import as_masked_autoencoder
from ssl_mae.evaluation import pool_tokens
from ssl_mae.flops import mae_flops
from ssl_mae.masking import (
    BlockMasking,
    num_patches_to_decode,
    random_block_grid_mask,
    random_grid_mask,
)
from ssl_mae.models.presets import (
    PRETRAIN_PRESETS,
    build_model,
    build_pretrain_module,
    pretrain_module_from_checkpoint,
)
from ssl_mae.modules import CrossAttention, CrossMAEDecoder
from ssl_mae.targets import HOGTarget
from ssl_mae.visualize import reconstruct

VARIANTS = sorted(
    name for name, p in PRETRAIN_PRESETS.items() if p.family == "mae_variant" and "micro" in name
)


def _encoder(depth: int = 2, reg_tokens: int = 0, in_chans: int = 1) -> MaskedVisionTransformer:
    return MaskedVisionTransformer.from_timm(
        {"img_size": 16, "patch_size": 4, "embed_dim": 32, "depth": depth, "num_heads": 2,
         "in_chans": in_chans, "reg_tokens": reg_tokens},
        use_mask_token=False,
    )  # fmt: skip


def _cross(encoder: MaskedVisionTransformer, **kwargs: Any) -> CrossMAEDecoder:
    return CrossMAEDecoder(
        16, 4, in_chans=encoder.in_chans, embed_dim=32, decoder_embed_dim=16,
        num_prefix_tokens=encoder.num_prefix_tokens, decoder_num_heads=2,
        **{"decoder_depth": 2, **kwargs},
    )  # fmt: skip


# --- block masking --------------------------------------------------------------------------------
def _mask_grid(idx_mask: Tensor, num_prefix: int, grid: tuple[int, int]) -> Tensor:
    """(B, h, w) bool, True where a patch is masked."""
    flat = torch.zeros(idx_mask.shape[0], grid[0] * grid[1], dtype=torch.bool)
    flat.scatter_(1, idx_mask - num_prefix, True)
    return flat.view(-1, *grid)


def _blocks(grid: tuple[int, int], k: int) -> list[list[tuple[int, int]]]:
    """The patch coordinates of every k x k block (clipped at the edges), by plain loops."""
    return [
        [
            (r, c)
            for r in range(top, min(top + k, grid[0]))
            for c in range(left, min(left + k, grid[1]))
        ]
        for top in range(0, grid[0], k)
        for left in range(0, grid[1], k)
    ]


@pytest.mark.parametrize(
    ("grid", "block_size", "ratio"),
    [((4, 4), 2, 0.75), ((7, 7), 2, 0.75), ((7, 7), 3, 0.6), ((5, 3), 2, 0.5), ((6, 6), 4, 0.9)],
)
def test_block_mask_keeps_exact_counts_and_masks_whole_blocks(
    grid: tuple[int, int], block_size: int, ratio: float
) -> None:
    num_prefix = 2
    idx_keep, idx_mask = random_block_grid_mask(8, grid, num_prefix, ratio, block_size=block_size)
    reference_keep, reference_mask = random_grid_mask(8, grid, num_prefix, ratio)
    assert idx_keep.shape == reference_keep.shape and idx_mask.shape == reference_mask.shape
    assert torch.equal(idx_keep[:, :num_prefix], torch.arange(num_prefix).expand(8, -1))
    every = torch.sort(torch.cat([idx_keep, idx_mask], dim=1), dim=1).values
    assert torch.equal(every, torch.arange(num_prefix + grid[0] * grid[1]).expand(8, -1))
    masked = _mask_grid(idx_mask, num_prefix, grid)
    for image in masked:
        counts = [sum(bool(image[r, c]) for r, c in block) for block in _blocks(grid, block_size)]
        sizes = [len(block) for block in _blocks(grid, block_size)]
        split = [n for n, size in zip(counts, sizes, strict=True) if 0 < n < size]
        assert len(split) <= 1, "at most one block may be split to meet the count"


def test_block_mask_of_a_divisible_count_keeps_one_aligned_square() -> None:
    # 4 x 4 patches, 2 x 2 blocks, ratio 0.75: 12 masked = 3 whole blocks; 1 block visible.
    _, idx_mask = random_block_grid_mask(16, (4, 4), 1, 0.75, block_size=2)
    for image in _mask_grid(idx_mask, 1, (4, 4)):
        rows, cols = torch.nonzero(~image, as_tuple=True)
        assert rows.numel() == 4
        assert rows.min() % 2 == 0 and cols.min() % 2 == 0
        assert rows.max() - rows.min() == 1 and cols.max() - cols.min() == 1


def test_block_mask_follows_noise_and_generator() -> None:
    noise = torch.rand(3, 16)
    noise[:, 2] = -1.0  # the anchor (top-left patch) of block (row 0, column 1)
    idx_keep, _ = random_block_grid_mask(3, (4, 4), 0, 0.75, block_size=2, noise=noise)
    assert sorted(idx_keep[0].tolist()) == [2, 3, 6, 7]  # that block is the one kept
    again = random_block_grid_mask(3, (4, 4), 0, 0.75, block_size=2, noise=noise.clone())
    assert torch.equal(again[0], idx_keep)
    one = random_block_grid_mask(4, (7, 7), 1, 0.6, generator=torch.Generator().manual_seed(5))
    two = random_block_grid_mask(4, (7, 7), 1, 0.6, generator=torch.Generator().manual_seed(5))
    other = random_block_grid_mask(4, (7, 7), 1, 0.6, generator=torch.Generator().manual_seed(6))
    assert torch.equal(one[1], two[1]) and not torch.equal(one[1], other[1])


def test_block_size_one_is_random_grid_mask() -> None:
    noise = torch.rand(5, 49)
    blocks = random_block_grid_mask(5, (7, 7), 1, 0.75, block_size=1, noise=noise)
    patches = random_grid_mask(5, (7, 7), 1, 0.75, noise=noise)
    assert all(torch.equal(a, b) for a, b in zip(blocks, patches, strict=True))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"block_size": 0}, ValueError, "block_size"),
        ({"noise": torch.rand(2, 15)}, ValueError, "noise"),
        ({"mask_ratio": 1.0}, ValueError, "mask_ratio"),
        ({"grid_size": (4, 0)}, ValueError, "grid_size"),
        ({"batch_size": 2.0}, TypeError, "batch_size"),
    ],
)
def test_block_mask_rejects_bad_arguments(kwargs: dict[str, Any], error: type, match: str) -> None:
    arguments: dict[str, Any] = {"batch_size": 2, "grid_size": (4, 4), "num_prefix_tokens": 1,
                                 "mask_ratio": 0.75, **kwargs}  # fmt: skip
    with pytest.raises(error, match=match):
        random_block_grid_mask(**arguments)


def test_block_masking_in_the_core() -> None:
    encoder = _encoder()
    decoder = MAEDecoder(16, 4, in_chans=1, embed_dim=32, decoder_embed_dim=16, decoder_depth=1,
                         decoder_num_heads=2)  # fmt: skip
    core = MaskedAutoencoder(encoder, decoder, mask_ratio=0.75, masking=BlockMasking(2))
    out = core(torch.randn(6, 1, 16, 16))
    assert repr(core.masking) == "BlockMasking(block_size=2)"
    for image in out.mask.view(6, 4, 4).bool():
        assert (~image).sum() == 4 and (~image).view(2, 2, 2, 2).all(dim=(1, 3)).sum() == 1


# --- HOG targets ------------------------------------------------------------------------------
def _hog_by_loops(
    image: Tensor, num_bins: int, cell: int
) -> dict[tuple[int, int, int], list[float]]:
    """Histograms {(channel, cell row, cell col): bins} of one (C, H, W) image, pixel by pixel."""
    channels, height, width = image.shape

    def pixel(c: int, r: int, q: int) -> float:  # reflected borders
        r = 1 if r < 0 else height - 2 if r >= height else r
        q = 1 if q < 0 else width - 2 if q >= width else q
        return float(image[c, r, q])

    hist: dict[tuple[int, int, int], list[float]] = {}
    for c in range(channels):
        for r in range(height):
            for q in range(width):
                gx = pixel(c, r, q + 1) - pixel(c, r, q - 1)
                gy = pixel(c, r + 1, q) - pixel(c, r - 1, q)
                angle = math.atan2(gy, gx) % math.pi
                bin_ = int(angle / math.pi * num_bins) % num_bins
                votes = hist.setdefault((c, r // cell, q // cell), [0.0] * num_bins)
                votes[bin_] += math.hypot(gx, gy)
    for votes in hist.values():
        norm = math.sqrt(sum(v * v for v in votes))
        votes[:] = [v / max(norm, 1e-6) for v in votes]
    return hist


def test_hog_matches_a_pixel_by_pixel_computation() -> None:
    images = torch.rand(2, 2, 8, 8)
    hog = HOGTarget(patch_size=4, in_chans=2, num_bins=6, cell_size=2)
    out = hog(images)
    assert out.shape == (2, 4, hog.dim) and hog.dim == 2 * 2 * 2 * 6
    for b in range(2):
        expected = _hog_by_loops(images[b], 6, 2)
        # Layout per patch: (cell row, cell column, channel, bin).
        for patch in range(4):
            for cell_row in range(2):
                for cell_col in range(2):
                    for c in range(2):
                        key = (c, patch // 2 * 2 + cell_row, patch % 2 * 2 + cell_col)
                        start = ((cell_row * 2 + cell_col) * 2 + c) * 6
                        got = out[b, patch, start : start + 6].tolist()
                        assert got == pytest.approx(expected[key], abs=1e-5)


@pytest.mark.parametrize(
    ("ramp", "degrees"),
    [("x", 0), ("y", 90), ("x+y", 45), ("x-y", 135)],
)
def test_hog_of_an_edge_points_the_right_way(ramp: str, degrees: int) -> None:
    # Rows (y) grow downwards, as in images; orientation is unsigned, in [0, 180).
    y, x = torch.meshgrid(torch.arange(8.0), torch.arange(8.0), indexing="ij")
    image = {"x": x, "y": y, "x+y": x + y, "x-y": x - y}[ramp]
    hist = HOGTarget(patch_size=8, num_bins=9).cell_histograms(image.view(1, 1, 8, 8))[0, 0, 0, 0]
    assert int(hist.argmax()) == degrees // 20  # 9 bins of 20 degrees
    # Every pixel off the reflected border votes for that bin alone.
    assert float(hist.max()) > 0.9


def test_hog_is_computed_per_image_for_the_whole_batch() -> None:
    images = torch.rand(5, 1, 14, 14)
    hog = HOGTarget(patch_size=7)
    batch = hog(images)
    alone = torch.cat([hog(images[i : i + 1]) for i in range(5)])
    torch.testing.assert_close(batch, alone)
    assert torch.equal(hog(torch.ones(1, 1, 14, 14)), torch.zeros(1, 4, 9))  # flat: no gradient
    with pytest.raises(ValueError, match="channels"):
        hog(torch.rand(1, 3, 14, 14))
    with pytest.raises(ValueError, match="cell_size must divide"):
        HOGTarget(patch_size=7, cell_size=2)


def test_hog_target_trains_through_the_core() -> None:
    hog = HOGTarget(patch_size=4, cell_size=2)
    decoder = MAEDecoder(16, 4, in_chans=1, embed_dim=32, decoder_embed_dim=16, decoder_depth=1,
                         decoder_num_heads=2, target_dim=hog.dim)  # fmt: skip
    core = MaskedAutoencoder(_encoder(), decoder, target=hog)
    images = torch.randn(3, 1, 16, 16)
    out = core(images)
    assert out.pred.shape == out.target.shape == (3, 16, 36)
    torch.testing.assert_close(out.target, hog(images))
    out.loss.backward()
    assert decoder.decoder_pred.weight.grad is not None
    with pytest.raises(ValueError, match="reconstruct shows predicted pixels"):
        reconstruct(core, images)


# --- the CrossMAE decoder -----------------------------------------------------------------------
def test_cross_attention_is_softmax_of_queries_against_memory() -> None:
    attention = CrossAttention(8, num_heads=2)
    x, memory = torch.randn(2, 3, 8), torch.randn(2, 5, 8)
    q = attention.q(x).view(2, 3, 2, 4).transpose(1, 2)
    k, v = attention.kv(memory).view(2, 5, 2, 2, 4).permute(2, 0, 3, 1, 4)
    weights = torch.softmax(q @ k.transpose(-1, -2) / 2.0, dim=-1)  # sqrt(head_dim) = 2
    expected = attention.proj((weights @ v).transpose(1, 2).reshape(2, 3, 8))
    torch.testing.assert_close(attention(x, memory), expected)


def test_cross_decoder_queries_never_attend_to_each_other() -> None:
    encoder = _encoder()
    images = torch.randn(2, 1, 16, 16)
    idx_keep, idx_mask = random_grid_mask(
        2, (4, 4), 1, 0.75, generator=torch.Generator().manual_seed(0)
    )
    latent = encoder.encode(images, idx_keep=idx_keep)
    cross = _cross(encoder).eval()
    together = cross.predict_at(latent, idx_keep, idx_mask)
    alone = torch.cat(
        [cross.predict_at(latent, idx_keep, idx_mask[:, i : i + 1]) for i in range(12)], 1
    )
    torch.testing.assert_close(together, alone)
    # The MAE decoder's queries do attend to each other: the same comparison fails for it.
    mae = MAEDecoder(16, 4, in_chans=1, embed_dim=32, decoder_embed_dim=16, decoder_depth=2,
                     decoder_num_heads=2).eval()  # fmt: skip
    joint = mae.predict_at(latent, idx_keep, idx_mask)
    single = torch.cat(
        [mae.predict_at(latent, idx_keep, idx_mask[:, i : i + 1]) for i in range(12)], 1
    )
    assert not torch.allclose(joint, single, atol=1e-4)


def test_cross_decoder_predict_all_queries_every_patch() -> None:
    encoder = _encoder(reg_tokens=1)
    cross = _cross(encoder)
    core = MaskedAutoencoder(encoder, cross, mask_ratio=0.5)
    images, noise = torch.randn(2, 1, 16, 16), torch.rand(2, 16)
    out = core(images, noise=noise)
    every = torch.arange(2, 18).expand(2, -1)
    torch.testing.assert_close(out.pred, cross.predict_at(out.latent, out.idx_keep, every))
    assert (
        reconstruct(core, images, mask_ratio=0.5, noise=noise).reconstruction.shape == images.shape
    )


def test_partial_decoding_scores_only_the_decoded_share() -> None:
    encoder = _encoder()
    core = MaskedAutoencoder(encoder, _cross(encoder), mask_ratio=0.75, decode_ratio=0.25)
    out = core(torch.randn(3, 1, 16, 16))
    assert out.idx_decode.shape == (3, num_patches_to_decode(12, 0.25)) == (3, 3)
    decoded = torch.zeros(3, 16, dtype=torch.bool).scatter_(1, out.idx_decode - 1, True)
    assert bool((out.pred.abs().sum(-1) > 0).eq(decoded).all())


def test_cross_decoder_reads_the_chosen_encoder_layers(monkeypatch: pytest.MonkeyPatch) -> None:
    encoder = _encoder(depth=3)
    cross = _cross(encoder, encoder_layers=(1, 3)).eval()
    core = MaskedAutoencoder(encoder, cross, decode_ratio=0.5).eval()
    images, noise = torch.randn(2, 1, 16, 16), torch.rand(2, 16)
    seen: dict[str, Any] = {}
    predict_at = CrossMAEDecoder.predict_at

    def spy(self: CrossMAEDecoder, *args: Any, **kwargs: Any) -> Tensor:
        seen.update(kwargs)
        return predict_at(self, *args, **kwargs)

    monkeypatch.setattr(CrossMAEDecoder, "predict_at", spy)
    out = core(images, noise=noise)
    states = encoder.encode_with_states(images, idx_keep=out.idx_keep, output_hidden_states=True)
    assert states.hidden_states is not None and len(seen["hidden_states"]) == 4
    for given, expected in zip(seen["hidden_states"], states.hidden_states, strict=True):
        torch.testing.assert_close(given, expected)
    # Only the chosen layers matter: replacing layer 2 (unread) changes nothing, 1 or 3 does.
    hidden, idx_decode = list(states.hidden_states), out.idx_decode
    base = cross.predict_at(out.latent, out.idx_keep, idx_decode, hidden_states=hidden)
    for layer, changes in ((0, False), (1, True), (2, False), (3, True)):
        swapped = [torch.randn_like(h) if i == layer else h for i, h in enumerate(hidden)]
        new = cross.predict_at(out.latent, out.idx_keep, idx_decode, hidden_states=swapped)
        assert torch.allclose(new, base) is not changes, layer
    with pytest.raises(ValueError, match="pass hidden_states"):
        cross.predict_at(out.latent, out.idx_keep, idx_decode)


def test_cross_decoder_argument_errors() -> None:
    encoder = _encoder()
    with pytest.raises(ValueError, match="encoder_layers"):
        _cross(encoder, encoder_layers=(1,))
    deep = _cross(encoder, encoder_layers=(1, 5))
    with pytest.raises(ValueError, match="does not have"):
        MaskedAutoencoder(encoder, deep)(torch.randn(1, 1, 16, 16))

    with pytest.raises(TypeError, match="encode_with_states"):
        MaskedAutoencoder(_NoStatesEncoder(encoder), _cross(encoder, encoder_layers=(1, 2)))


class _NoStatesEncoder(torch.nn.Module):
    """An encoder that meets the protocol but reports no hidden states."""

    def __init__(self, inner: MaskedVisionTransformer) -> None:
        super().__init__()
        self.inner = inner
        self.num_prefix_tokens, self.patch_size = inner.num_prefix_tokens, inner.patch_size
        self.grid_size, self.in_chans = inner.grid_size, inner.in_chans

    def encode(self, images: Tensor, *, idx_keep: Tensor | None = None) -> Tensor:
        return self.inner.encode(images, idx_keep=idx_keep)


# --- FLOPs ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("decoder", "decode_ratio", "encoder_layers", "hog"),
    [("mae", 0.25, None, False), ("mae", 1.0, None, True), ("cross", 0.25, (1, 2), False),
     ("cross", 1.0, (-1, -1), False), ("cross", 0.5, (2, -1), True)],
)  # fmt: skip
def test_flops_of_variants_agree_with_torch_flop_counter(
    decoder: str, decode_ratio: float, encoder_layers: tuple[int, int] | None, hog: bool
) -> None:
    encoder = _encoder(reg_tokens=1)
    target = HOGTarget(4, cell_size=2) if hog else None
    dim = None if target is None else target.dim
    if decoder == "cross":
        module: torch.nn.Module = _cross(encoder, encoder_layers=encoder_layers, target_dim=dim)
    else:
        module = MAEDecoder(16, 4, in_chans=1, embed_dim=32, decoder_embed_dim=16,
                            decoder_depth=2, decoder_num_heads=2, num_prefix_tokens=2,
                            target_dim=dim)  # fmt: skip
    core = MaskedAutoencoder(encoder, module, target=target, decode_ratio=decode_ratio)
    images = torch.randn(4, 1, 16, 16)
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        core(images)
    analytic = mae_flops(
        img_size=16, patch_size=4, embed_dim=32, depth=2, decoder_embed_dim=16, decoder_depth=2,
        in_chans=1, num_prefix_tokens=2, decode_ratio=decode_ratio, decoder=decoder,
        encoder_layers=encoder_layers, target_dim=dim,
    )  # fmt: skip
    assert counter.get_total_flops() / 4 == pytest.approx(analytic.forward, rel=1e-9)


def test_crossmae_at_quarter_decoding_costs_under_0_6_of_mae_for_vit_base() -> None:
    mae = mae_flops()  # ViT-B/16, 224 px, 8 x 512 decoder
    cross = mae_flops(decoder="cross", decode_ratio=0.25)
    assert cross.encoder == mae.encoder
    assert cross.train / mae.train == pytest.approx(0.5565, abs=1e-4)
    assert mae.decoder / cross.decoder > 5  # the paper reports 2.5-3.7x less decoding compute


# --- presets ------------------------------------------------------------------------------------
def test_variant_family_with_every_option_off_is_plain_mae() -> None:
    torch.manual_seed(0)
    mae = as_masked_autoencoder(build_model("mae_vit_micro_patch7"))
    torch.manual_seed(0)
    plain = build_model("mae_hog_micro_patch7", target="pixels")
    assert isinstance(plain, MaskedAutoencoder)
    expected, actual = mae.state_dict(), plain.state_dict()
    assert list(expected) == list(actual)
    assert all(torch.equal(expected[key], actual[key]) for key in expected)
    images, noise = torch.randn(2, 1, 28, 28), torch.rand(2, 16)
    assert torch.equal(mae(images, noise=noise).loss, plain(images, noise=noise).loss)


@pytest.mark.parametrize("name", VARIANTS)
def test_variant_presets_train_and_rebuild_from_checkpoints(name: str) -> None:
    module = build_pretrain_module(name, lr=1e-3)
    core = module.masked_autoencoder
    images, noise = torch.randn(4, 1, 28, 28), torch.rand(4, core.encoder.grid_size[0] ** 2)
    loss = module.training_step((images, torch.zeros(4)), 0)
    loss.backward()
    missing = [n for n, p in module.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"parameters without gradient: {missing}"
    checkpoint = {"hyper_parameters": dict(module.hparams), "state_dict": module.state_dict()}
    rebuilt = pretrain_module_from_checkpoint(checkpoint)
    assert rebuilt.hparams["preset"] == name
    expected = module.mae_step(images, noise=noise)
    torch.testing.assert_close(rebuilt.mae_step(images, noise=noise).loss, expected.loss)


def test_variant_presets_say_what_they_are() -> None:
    cross = build_model("mae_crossmae_micro_patch7")
    pixio = build_model("mae_pixio_micro_patch4")
    hog = build_model("mae_hog_micro_patch7")
    assert isinstance(cross, MaskedAutoencoder) and isinstance(pixio, MaskedAutoencoder)
    assert isinstance(hog, MaskedAutoencoder)
    assert isinstance(cross.decoder, CrossMAEDecoder) and cross.decode_ratio == 0.25
    assert cross.decoder.encoder_layers == (2, -1)
    assert isinstance(pixio.masking, BlockMasking) and pixio.encoder.num_prefix_tokens == 4
    assert isinstance(pixio.decoder, MAEDecoder) and len(pixio.decoder.decoder_blocks) == 4
    assert isinstance(hog.target, HOGTarget) and hog.decoder.target_dim == 9
    with pytest.raises(ValueError, match="decoder must be one of"):
        build_model("mae_hog_micro_patch7", decoder="pixio")
    with pytest.raises(TypeError, match="unknown keys"):
        build_model("mae_hog_micro_patch7", hog_bin=9)
    with pytest.raises(ValueError, match="needs decoder='cross'"):
        build_model("mae_hog_micro_patch7", encoder_layers=[1, 2])


def test_prefix_pool_averages_class_and_register_tokens() -> None:
    tokens = torch.randn(2, 7, 3)
    torch.testing.assert_close(pool_tokens(tokens, "prefix", 4), tokens[:, :4].mean(dim=1))
    with pytest.raises(ValueError, match="class token"):
        pool_tokens(tokens, "prefix", 0)


def test_pretrain_a_variant_from_the_command_line(tmp_path: Path) -> None:
    from ssl_mae.cli import main

    out_dir = tmp_path / "run"
    argv = ["pretrain", "--preset", "mae_crossmae_micro_patch7", "--limit-train-images", "32",
            "--limit-test-images", "16", "--batch-size", "16", "--epochs", "1", "--no-knn",
            "--no-progress", "--logger", "none", "--accelerator", "cpu"]  # fmt: skip
    argv += ["--devices", "1", "--output-dir", str(out_dir)]
    assert main(argv) == 0
    checkpoint = torch.load(out_dir / "last.ckpt", weights_only=True)
    assert checkpoint["hyper_parameters"]["preset"] == "mae_crossmae_micro_patch7"
    assert isinstance(pretrain_module_from_checkpoint(checkpoint).model.decoder, CrossMAEDecoder)


def test_block_mask_lists_masked_patches_in_patch_noise_order() -> None:
    # A partial decoding takes the first masked entries: they must not be whole blocks.
    noise = torch.rand(4, 49)
    _, idx_mask = random_block_grid_mask(4, (7, 7), 1, 0.75, block_size=2, noise=noise)
    mask_noise = torch.gather(noise, 1, idx_mask - 1)
    assert bool((mask_noise[:, 1:] >= mask_noise[:, :-1]).all())
