"""Tests for ssl_mae.hivit: HiViT, MAEHiViT and the HiViT MAE pretrainer."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from ssl_mae.hivit import (
    HIVIT_ARCHS,
    HIVIT_MAE_PRESETS,
    HiViT,
    HiViTAttention,
    HiViTBlock,
    HiViTMAEForPreTraining,
    HiViTPatchEmbed,
    MAEHiViT,
    PatchMerge,
)
from ssl_mae.masking import patchify
from ssl_mae.pos_embed import get_2d_sincos_pos_embed

# A small architecture that still has every stage: 16/32/64 wide, 2 + 2 MLP blocks, 2 main blocks.
TINY: dict[str, Any] = {"embed_dims": 64, "depths": (1, 1, 2), "num_heads": 2}


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _main_block_params(dim: int) -> int:
    """Parameters of one main-stage block: qkv, proj, fc1, fc2 (ratio 4) and two LayerNorms."""
    return (
        (3 * dim * dim + 3 * dim)
        + (dim * dim + dim)
        + (4 * dim * dim + 4 * dim)
        + (4 * dim * dim + dim)
        + 4 * dim
    )


# --------------------------------------------------------------------------- architecture


@pytest.mark.parametrize(
    ("arch", "expected"),
    [("t", 18_752_160), ("s", 37_053_216), ("b", 78_397_824), ("l", 289_591_872)],
)
def test_mae_hivit_parameter_counts_match_published(arch: str, expected: int) -> None:
    with torch.device("meta"):  # counting only: no memory, no init cost
        model = MAEHiViT(arch=arch, img_size=224)
    assert _count(model) == expected


def test_b20_is_base_with_four_fewer_main_blocks() -> None:
    with torch.device("meta"):
        base, paper_base = MAEHiViT(arch="b"), MAEHiViT(arch="b20")
    assert _count(base) - _count(paper_base) == 4 * _main_block_params(512)
    assert 65_000_000 < _count(paper_base) < 67_000_000  # the paper's "66M"


def test_arch_table_and_long_names() -> None:
    assert HIVIT_ARCHS["t"] == HIVIT_ARCHS["tiny"]
    assert HIVIT_ARCHS["b"]["depths"] == (2, 2, 24)
    with torch.device("meta"):
        model = HiViT(arch="Base")
    assert (model.embed_dims, model.depths, model.num_heads) == (512, (2, 2, 24), 8)
    # stem: 2 * 2 MLP blocks + merge, twice; then 24 transformer blocks
    assert len(model.blocks) == 4 + 1 + 4 + 1 + 24
    assert [type(b).__name__ for b in model.blocks[:10]].count("PatchMerge") == 2
    assert model.blocks[0].mlp.fc1.out_features == 3 * 128  # stem MLP ratio 3
    assert model.blocks[-1].mlp.fc1.out_features == 4 * 512  # main MLP ratio 4
    assert all(b.attn is None for b in model.stem_blocks if isinstance(b, HiViTBlock))
    assert all(b.attn is not None for b in model.main_blocks)


@pytest.mark.parametrize("arch", ["t", "s", "b", "b20", "l"])
def test_output_shapes_at_224_for_every_arch(arch: str) -> None:
    # Shape propagation on the meta device: the real graph runs, without the arithmetic.
    with torch.device("meta"):
        model = MAEHiViT(arch=arch)
        images = torch.empty(2, 3, 224, 224)
        hidden, mask, ids_restore = model(images)
        full, _, _ = model(images, mask=False)
    dim = HIVIT_ARCHS[arch]["embed_dims"]
    assert hidden.shape == (2, 49, dim)  # 196 units, 75 % masked
    assert mask.shape == ids_restore.shape == (2, 196)
    assert full.shape == (2, 196, dim)


def test_small_config_shapes_at_64() -> None:
    model = MAEHiViT(arch=TINY, img_size=64, out_indices=[0, 1]).eval()
    images = torch.randn(3, 3, 64, 64)
    hidden, mask, ids_restore = model(images)
    assert hidden.shape == (3, 4, 64)  # 16 units, int(16 * 0.25) = 4 kept
    assert mask.shape == ids_restore.shape == (3, 16)
    assert mask.sum(dim=1).tolist() == [12.0, 12.0, 12.0]
    maps = HiViT.forward(model, images)
    assert [tuple(m.shape) for m in maps] == [(3, 64, 4, 4), (3, 64, 4, 4)]


def test_non_square_images() -> None:
    model = MAEHiViT(arch=TINY, img_size=(32, 64), rpe=True)
    hidden, mask, _ = model(torch.randn(2, 3, 32, 64))
    assert hidden.shape == (2, 2, 64) and mask.shape == (2, 8)


# --------------------------------------------------------------------------- checkpoint layout

# Key names and shapes of mmpretrain's MAEHiViT for arch TINY-like {64, (1, 1, 1), 2} at 32 px
# with rpe=True and layer scale, written out from mmpretrain's module layout: blocks 0-1 and 3-4
# are MLP-only stem blocks, 2 and 5 are PatchMerge, 6 is the transformer block.
_MMPRETRAIN_KEYS = {
    "pos_embed": (1, 4, 64),
    "relative_position_index": (4, 4),
    "patch_embed.proj.weight": (16, 3, 4, 4),
    "patch_embed.proj.bias": (16,),
    "patch_embed.norm.weight": (16,),
    "patch_embed.norm.bias": (16,),
    **{
        f"blocks.{i}.{name}": shape
        for i, dim in ((0, 16), (1, 16), (3, 32), (4, 32))
        for name, shape in (
            ("gamma_2", (dim,)),
            ("norm2.weight", (dim,)),
            ("norm2.bias", (dim,)),
            ("mlp.fc1.weight", (3 * dim, dim)),
            ("mlp.fc1.bias", (3 * dim,)),
            ("mlp.fc2.weight", (dim, 3 * dim)),
            ("mlp.fc2.bias", (dim,)),
        )
    },
    "blocks.2.norm.weight": (64,),
    "blocks.2.norm.bias": (64,),
    "blocks.2.reduction.weight": (32, 64),
    "blocks.5.norm.weight": (128,),
    "blocks.5.norm.bias": (128,),
    "blocks.5.reduction.weight": (64, 128),
    "blocks.6.gamma_1": (64,),
    "blocks.6.gamma_2": (64,),
    "blocks.6.norm1.weight": (64,),
    "blocks.6.norm1.bias": (64,),
    "blocks.6.attn.relative_position_bias_table": (9, 2),
    "blocks.6.attn.relative_position_index": (4, 4),
    "blocks.6.attn.qkv.weight": (192, 64),
    "blocks.6.attn.qkv.bias": (192,),
    "blocks.6.attn.proj.weight": (64, 64),
    "blocks.6.attn.proj.bias": (64,),
    "blocks.6.norm2.weight": (64,),
    "blocks.6.norm2.bias": (64,),
    "blocks.6.mlp.fc1.weight": (256, 64),
    "blocks.6.mlp.fc1.bias": (256,),
    "blocks.6.mlp.fc2.weight": (64, 256),
    "blocks.6.mlp.fc2.bias": (64,),
}


def test_state_dict_keys_match_mmpretrain() -> None:
    model = MAEHiViT(
        arch={"embed_dims": 64, "depths": [1, 1, 1], "num_heads": 2},
        img_size=32,
        rpe=True,
        layer_scale_init_value=0.1,
    )
    state = model.state_dict()
    assert {k: tuple(v.shape) for k, v in state.items()} == _MMPRETRAIN_KEYS
    # A round trip through a plain dict loads strictly.
    MAEHiViT(
        arch={"embed_dims": 64, "depths": [1, 1, 1], "num_heads": 2},
        img_size=32,
        rpe=True,
        layer_scale_init_value=0.1,
    ).load_state_dict(state)


def test_default_keys_have_no_rpe_or_layer_scale() -> None:
    keys = set(MAEHiViT(arch=TINY, img_size=32).state_dict())
    assert not any("relative_position" in k or "gamma" in k for k in keys)
    assert "pos_embed" in keys


def test_init_cfg_pretrained_loads_mmengine_checkpoint(tmp_path: Any) -> None:
    source = MAEHiViT(arch=TINY, img_size=32)
    wrapped = {"state_dict": {f"backbone.{k}": v for k, v in source.state_dict().items()}}
    wrapped["state_dict"]["neck.mask_token"] = torch.zeros(1, 1, 8)  # other modules are skipped
    path = tmp_path / "ckpt.pth"
    torch.save(wrapped, path)
    cfg = {"type": "Pretrained", "checkpoint": str(path), "prefix": "backbone."}
    loaded = MAEHiViT(arch=TINY, img_size=32, init_cfg=cfg)
    for key, value in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    with pytest.raises(ValueError, match="init_cfg"):
        MAEHiViT(arch=TINY, img_size=32, init_cfg={"type": "Kaiming"})


def test_relative_position_index_follows_mmpretrain_formula() -> None:
    attn = HiViTAttention(dim=8, num_heads=2, rpe_grid=(2, 2))
    # (dh + 1) * 3 + (dw + 1) for query/key units at (0,0), (0,1), (1,0), (1,1)
    expected = [[4, 3, 1, 0], [5, 4, 2, 1], [7, 6, 4, 3], [8, 7, 5, 4]]
    assert attn.relative_position_index.tolist() == expected
    bias = attn.relative_position_bias()
    assert bias is not None and bias.shape == (1, 2, 4, 4)
    # A token attends to itself through the table's centre entry (dh = dw = 0).
    assert torch.equal(bias[0, :, 0, 0], attn.relative_position_bias_table[4])  # type: ignore[index]


# --------------------------------------------------------------------------- building blocks


def test_patch_embed_groups_patches_by_unit() -> None:
    embed = HiViTPatchEmbed(img_size=32, patch_size=16, inner_patches=4, embed_dim=8)
    images = torch.randn(1, 3, 32, 32)
    out = embed(images)
    assert out.shape == (1, 4, 4, 4, 8)
    changed = images.clone()
    changed[:, :, 16:, :16] += 1.0  # bottom-left unit (row-major index 2), its top-left patch
    diff = (embed(changed) - out).abs().sum(dim=-1)
    assert diff[0, 2].gt(0).all()  # every patch of unit 2 changed
    assert diff[0, [0, 1, 3]].eq(0).all()  # no other unit changed
    changed = images.clone()
    changed[:, :, 16:20, 4:8] += 1.0  # only inner patch (0, 1) of unit 2
    diff = (embed(changed) - out).abs().sum(dim=-1)
    assert diff[0, 2, 0, 1] > 0 and diff.gt(0).sum() == 1


def test_patch_merge_concatenation_order() -> None:
    merge = PatchMerge(dim=1, norm_layer=nn.Identity())
    seen: list[Tensor] = []
    merge.norm.register_forward_hook(lambda _m, inp, _out: seen.append(inp[0]))
    grid = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).view(1, 1, 2, 2, 1)  # rows (1, 2), (3, 4)
    out = merge(grid)
    assert out.shape == (1, 1, 1, 1, 2)
    # mmpretrain's order: top-left, bottom-left, top-right, bottom-right
    assert seen[0].flatten().tolist() == [1.0, 3.0, 2.0, 4.0]


def test_block_layer_scale_and_mlp_only_variant() -> None:
    stem = HiViTBlock(dim=8, num_heads=0, mlp_ratio=3.0, layer_scale_init_value=0.5)
    assert stem.attn is None and stem.gamma_1 is None
    assert stem.gamma_2 is not None and torch.equal(stem.gamma_2, torch.full((8,), 0.5))
    x = torch.randn(2, 3, 4, 4, 8)
    assert stem(x).shape == x.shape
    main = HiViTBlock(dim=8, num_heads=2, layer_scale_init_value=0.0)
    assert main.gamma_1 is None and main.gamma_2 is None
    tokens = torch.randn(2, 5, 8)
    assert main(tokens).shape == tokens.shape


def test_drop_path_increases_linearly_over_all_blocks() -> None:
    model = HiViT(arch=TINY, img_size=32, drop_path_rate=0.3)
    rates = [
        b.drop_path.drop_prob if hasattr(b.drop_path, "drop_prob") else 0.0
        for b in model.blocks
        if isinstance(b, HiViTBlock)
    ]
    assert len(rates) == 2 + 2 + 2
    assert rates[0] == 0.0 and rates[-1] == pytest.approx(0.3)
    assert all(b > a for a, b in itertools.pairwise(rates))


# --------------------------------------------------------------------------- MAE encoder


def test_sincos_position_embedding_is_fixed() -> None:
    model = MAEHiViT(arch=TINY, img_size=64)
    expected = get_2d_sincos_pos_embed(64, 4, num_prefix_tokens=0)
    assert torch.allclose(model.pos_embed[0], expected)
    assert not model.pos_embed.requires_grad
    plain = HiViT(arch=TINY, img_size=64)  # the supervised backbone learns its embedding
    assert plain.pos_embed.requires_grad
    assert not torch.allclose(plain.pos_embed[0], expected)


def test_masked_forward_ignores_pixels_of_masked_units() -> None:
    model = MAEHiViT(arch=TINY, img_size=64, rpe=True).eval()
    images = torch.randn(2, 3, 64, 64)
    noise = torch.rand(2, 16)
    hidden, mask, _ = model(images, noise=noise)
    masked_unit = int(mask[0].nonzero()[0])
    kept_unit = int((1 - mask[0]).nonzero()[0])

    def perturb(unit: int) -> Tensor:
        row, col = divmod(unit, 4)
        changed = images.clone()
        changed[0, :, 16 * row : 16 * (row + 1), 16 * col : 16 * (col + 1)] += 5.0
        return changed

    same, _, _ = model(perturb(masked_unit), noise=noise)
    assert torch.equal(same, hidden)
    different, _, _ = model(perturb(kept_unit), noise=noise)
    assert not torch.allclose(different[0], hidden[0])
    assert torch.equal(different[1], hidden[1])  # the other image is untouched


def test_stem_only_sees_visible_units() -> None:
    model = MAEHiViT(arch=TINY, img_size=64)
    seen: list[tuple[int, ...]] = []
    model.blocks[0].register_forward_hook(lambda _m, inp, _o: seen.append(tuple(inp[0].shape)))
    model(torch.randn(2, 3, 64, 64))
    assert seen == [(2, 4, 4, 4, 16)]  # 4 visible units of 16, at 4×4 stem resolution


def test_masked_rpe_uses_the_kept_units_positions() -> None:
    # With mask ratio 0 every unit is kept, only shuffled: the masked path must then agree with
    # the unmasked one, which checks that positions (ape and rpe) follow the tokens.
    model = MAEHiViT(arch=TINY, img_size=64, rpe=True, mask_ratio=0.0).eval()
    images = torch.randn(2, 3, 64, 64)
    hidden, mask, ids_restore = model(images, noise=torch.rand(2, 16))
    full, _, _ = model(images, mask=False)
    assert mask.sum() == 0
    restored = hidden.gather(1, ids_restore[:, :, None].expand(-1, -1, hidden.shape[-1]))
    assert not torch.allclose(hidden, full)  # the order really was shuffled
    assert torch.allclose(restored, full, atol=1e-5)


@pytest.mark.parametrize("flag", [None, False])
def test_mask_none_and_false_encode_the_full_sequence(flag: bool | None) -> None:
    model = MAEHiViT(arch=TINY, img_size=32).eval()
    images = torch.randn(2, 3, 32, 32)
    hidden, mask, ids_restore = model(images, mask=flag)
    assert hidden.shape == (2, 4, 64)
    assert mask.eq(0).all() and mask.shape == (2, 4)
    assert ids_restore.tolist() == [[0, 1, 2, 3]] * 2
    reference, _, _ = model(images, mask=None)
    assert torch.equal(hidden, reference)
    with pytest.raises(TypeError, match="mask must be True, False or None"):
        model(images, mask="yes")  # type: ignore[arg-type]


def test_masking_id_is_reproducible_and_consistent() -> None:
    model = MAEHiViT(arch=TINY, img_size=64)
    first = model.masking_id(3, 0.75, generator=torch.Generator().manual_seed(7))
    second = model.masking_id(3, 0.75, generator=torch.Generator().manual_seed(7))
    other = model.masking_id(3, 0.75, generator=torch.Generator().manual_seed(8))
    for a, b in zip(first, second, strict=True):
        assert torch.equal(a, b)
    assert not torch.equal(first[0], other[0])
    ids_keep, ids_restore, mask = first
    assert ids_keep.shape == (3, 4) and mask.shape == ids_restore.shape == (3, 16)
    assert mask.gather(1, ids_keep).eq(0).all() and mask.sum(1).tolist() == [12.0] * 3
    # ids_restore undoes the shuffle whose first entries are ids_keep
    shuffle = torch.argsort(ids_restore, dim=1)
    assert torch.equal(shuffle[:, :4], ids_keep)
    # explicit noise: the smallest values are kept
    noise = torch.arange(16, dtype=torch.float32).flip(0).expand(1, 16)
    keep, _, _ = model.masking_id(1, 0.75, noise=noise)
    assert sorted(keep[0].tolist()) == [12, 13, 14, 15]


def test_forward_with_same_generator_seed_is_deterministic() -> None:
    model = MAEHiViT(arch=TINY, img_size=32).eval()
    images = torch.randn(2, 3, 32, 32)
    a = model(images, generator=torch.Generator().manual_seed(0))
    b = model(images, generator=torch.Generator().manual_seed(0))
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x, y)


def test_out_indices_no_shared_mutable_default_and_never_a_stem_block() -> None:
    requested = [0, 23]
    model = HiViT(arch=TINY, img_size=32, out_indices=requested)
    assert requested == [0, 23]  # the caller's list is not mutated
    assert model.out_indices == (0, 1)  # as in mmpretrain, the last entry is the final block
    second = MAEHiViT(arch=TINY, img_size=32)
    with torch.device("meta"):
        tiny_arch = MAEHiViT(arch="t", img_size=32)
    assert second.out_indices == (1,) and tiny_arch.out_indices == (9,)
    assert HiViT(arch=TINY, img_size=32, out_indices=-1).out_indices == (1,)
    outputs: list[Tensor] = []
    for block in model.main_blocks:
        block.register_forward_hook(lambda _m, _i, out: outputs.append(out))
    maps = model(torch.randn(1, 3, 32, 32))
    # Index 0 is the first *main-stage* block (64 channels), not a stem block (16 channels).
    assert len(maps) == 2 and maps[0].shape == (1, 64, 2, 2)
    assert torch.equal(maps[0].flatten(2).transpose(1, 2), outputs[0])
    with pytest.raises(ValueError, match="out_indices"):
        HiViT(arch=TINY, img_size=32, out_indices=[5, 1])


def test_other_image_sizes_interpolate_ape() -> None:
    model = HiViT(arch=TINY, img_size=32)
    (features,) = model(torch.randn(1, 3, 64, 64))
    assert features.shape == (1, 64, 4, 4)
    with_rpe = MAEHiViT(arch=TINY, img_size=32, rpe=True)
    with pytest.raises(ValueError, match="rpe=True"):
        with_rpe(torch.randn(1, 3, 64, 64), mask=False)
    with pytest.raises(ValueError, match="img_size"):
        MAEHiViT(arch=TINY, img_size=32)(torch.randn(1, 3, 64, 64))  # masked needs img_size


def test_ape_false_has_no_pos_embed() -> None:
    model = MAEHiViT(arch=TINY, img_size=32, ape=False)
    assert model.pos_embed is None and "pos_embed" not in model.state_dict()
    hidden, _, _ = model(torch.randn(1, 3, 32, 32))
    assert hidden.shape == (1, 1, 64)


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"img_size": 200}, ValueError, "img_size must be a multiple of patch_size"),
        ({"img_size": (32, 40)}, ValueError, "img_size must be a multiple"),
        ({"arch": "huge"}, ValueError, "arch must be one of"),
        ({"arch": {"embed_dims": 64}}, ValueError, "custom arch dict"),
        ({"arch": 3}, TypeError, "arch must be a str or a dict"),
        (
            {"arch": {"embed_dims": 64, "depths": (1, 1, 1), "num_heads": 3}},
            ValueError,
            "num_heads",
        ),
        ({"inner_patches": 2}, ValueError, "inner_patches must be"),
        ({"mask_ratio": 1.0}, ValueError, "mask_ratio"),
        ({"norm_cfg": {"type": "BN"}}, ValueError, "norm_cfg"),
        ({"drop_path_rate": 1.5}, ValueError, "drop_path_rate"),
    ],
)
def test_constructor_errors(kwargs: dict[str, Any], error: type[Exception], match: str) -> None:
    arguments: dict[str, Any] = {"arch": TINY, "img_size": 32, **kwargs}
    with pytest.raises(error, match=match):
        MAEHiViT(**arguments)


def test_forward_input_errors() -> None:
    model = MAEHiViT(arch=TINY, img_size=32)
    with pytest.raises(ValueError, match="multiples of patch_size"):
        model(torch.randn(1, 3, 40, 40), mask=False)
    with pytest.raises(ValueError, match="3 channels"):
        model(torch.randn(1, 1, 32, 32))
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        model(torch.randn(3, 32, 32))
    with pytest.raises(ValueError, match="noise"):
        model(torch.randn(2, 3, 32, 32), noise=torch.rand(2, 5))


# --------------------------------------------------------------------------- pretraining


def test_pretrainer_outputs_and_decoder_wiring() -> None:
    model = HiViTMAEForPreTraining(
        arch=TINY, img_size=64, decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=2
    )
    assert model.decoder.num_prefix_tokens == 0
    assert len(HiViTMAEForPreTraining(arch=TINY, img_size=32).decoder.decoder_blocks) == 6
    decoder_inputs: list[Tensor] = []
    model.decoder.decoder_blocks.register_forward_pre_hook(
        lambda _m, inp: decoder_inputs.append(inp[0])
    )
    images = torch.randn(2, 3, 64, 64)
    noise = torch.rand(2, 16)
    loss, pred, mask = model.forward_with_predictions(images, noise=noise)
    assert loss.ndim == 0 and pred.shape == (2, 16, 16 * 16 * 3) and mask.shape == (2, 16)
    # Visible tokens sit at their own unit (no class-token shift): the decoder input at a kept
    # unit is the embedded encoder token of that unit plus the decoder position embedding.
    hidden, _, _ = model.backbone(images, noise=noise)
    ids_keep, _, _ = model.backbone.masking_id(2, 0.75, noise=noise)
    expected = model.decoder.embed(hidden) + model.decoder.decoder_pos_embed[0][ids_keep]
    got = decoder_inputs[0].gather(1, ids_keep[:, :, None].expand(-1, -1, 32))
    assert torch.allclose(got, expected, atol=1e-6)
    # The loss only scores masked units, with norm-pix targets by default.
    target = patchify(images, 16)
    target = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + 1e-6) ** 0.5
    per_unit = (pred - target).pow(2).mean(-1)
    assert torch.allclose(loss, (per_unit * mask).sum() / mask.sum(), atol=1e-5)
    assert torch.equal(model(images, noise=noise), loss)


def test_training_steps_decrease_loss_on_fixed_batch() -> None:
    torch.manual_seed(0)
    model = HiViTMAEForPreTraining.from_preset("mae_hivit_nano", in_chans=1)
    images = torch.randn(4, 1, 32, 32)
    noise = torch.rand(4, 4)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(8):
        loss = model(images, noise=noise)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]
    assert model.backbone.pos_embed is not None and model.backbone.pos_embed.grad is None


def test_presets() -> None:
    assert {"mae_hivit_t", "mae_hivit_b", "mae_hivit_b20", "mae_hivit_l"} <= set(HIVIT_MAE_PRESETS)
    with torch.device("meta"):
        base = HiViTMAEForPreTraining.from_preset("mae_hivit_b")
    assert _count(base.backbone) == 78_397_824
    assert len(base.decoder.decoder_blocks) == 6 and base.decoder.decoder_embed.out_features == 512
    with pytest.raises(ValueError, match="mae_hivit_b"):
        HiViTMAEForPreTraining.from_preset("hivit_huge")
