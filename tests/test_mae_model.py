"""Tests for the seed MAE model: official semantics, checkpoints, optimiser and Lightning glue."""

from __future__ import annotations

import re
import warnings
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import pytorch_lightning as pl
import torch
from timm.layers import PatchEmbed
from timm.models.vision_transformer import Block
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from ssl_mae.models import (
    MAE,
    MAE_PRESETS,
    build_mae,
    mae_vit_base_patch16,
    mae_vit_huge_patch14,
    mae_vit_large_patch16,
    mae_vit_micro_patch4,
    mae_vit_tiny_patch4,
)
from ssl_mae.pos_embed import get_2d_sincos_pos_embed


@pytest.fixture(autouse=True)
def _single_thread() -> Any:
    # These models are tiny: on a shared CPU, several intra-op threads cost far more in
    # synchronisation than they win (about 40x slower under load).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


LN6 = partial(nn.LayerNorm, eps=1e-6)
TINY = dict(
    img_size=16, patch_size=4, in_chans=3, embed_dim=32, depth=2, num_heads=2,
    decoder_embed_dim=24, decoder_depth=1, decoder_num_heads=2, mlp_ratio=2.0,
)  # fmt: skip
NUM_PATCHES = (16 // 4) ** 2
PATCH_DIM = 4 * 4 * 3


def tiny_mae(seed: int = 0, **overrides: Any) -> MAE:
    torch.manual_seed(seed)
    return MAE(**{**TINY, "norm_layer": LN6, **overrides})


def images(batch: int = 3, seed: int = 1, size: int = 16, chans: int = 3) -> Tensor:
    return torch.randn(batch, chans, size, size, generator=torch.Generator().manual_seed(seed))


def noise_for(batch: int = 3, seed: int = 2) -> Tensor:
    return torch.rand(batch, NUM_PATCHES, generator=torch.Generator().manual_seed(seed))


# --- independent reference: the official formulas, written out here -----------------------------
def official_patchify(imgs: Tensor, p: int) -> Tensor:
    n, c, h_px, w_px = imgs.shape
    h, w = h_px // p, w_px // p
    x = imgs.reshape(n, c, h, p, w, p)
    x = torch.einsum("nchpwq->nhwpqc", x)
    return x.reshape(n, h * w, p * p * c)


def official_loss(imgs: Tensor, pred: Tensor, mask: Tensor, p: int, norm_pix: bool) -> Tensor:
    target = official_patchify(imgs, p)
    if norm_pix:
        mean = target.mean(dim=-1, keepdim=True)
        var = target.var(dim=-1, keepdim=True)  # unbiased, as in the official code
        target = (target - mean) / (var + 1.0e-6) ** 0.5
    loss = ((pred - target) ** 2).mean(dim=-1)
    return (loss * mask).sum() / mask.sum()


class OfficialLayoutMAE(nn.Module):
    """The official models_mae.MaskedAutoencoderViT forward pass, written independently, with
    the official parameter names. Used to check that our MAE computes the same thing."""

    def __init__(self, cfg: dict[str, Any], norm_pix: bool = False) -> None:
        super().__init__()
        img, p, c, dim = cfg["img_size"], cfg["patch_size"], cfg["in_chans"], cfg["embed_dim"]
        ddim, mlp = cfg["decoder_embed_dim"], cfg["mlp_ratio"]
        self.p, self.norm_pix = p, norm_pix
        self.patch_embed = PatchEmbed(img, p, c, dim)
        num_patches = self.patch_embed.num_patches
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches + 1, dim), requires_grad=False)
        self.blocks = nn.ModuleList(
            Block(dim, cfg["num_heads"], mlp, qkv_bias=True, norm_layer=LN6)
            for _ in range(cfg["depth"])
        )
        self.norm = LN6(dim)
        self.decoder_embed = nn.Linear(dim, ddim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, ddim))
        self.decoder_pos_embed = nn.Parameter(torch.zeros(1, num_patches + 1, ddim))
        self.decoder_blocks = nn.ModuleList(
            Block(ddim, cfg["decoder_num_heads"], mlp, qkv_bias=True, norm_layer=LN6)
            for _ in range(cfg["decoder_depth"])
        )
        self.decoder_norm = LN6(ddim)
        self.decoder_pred = nn.Linear(ddim, p * p * c)

    def forward(self, imgs: Tensor, mask_ratio: float, noise: Tensor) -> tuple[Tensor, ...]:
        x = self.patch_embed(imgs) + self.pos_embed[:, 1:, :]
        n, length, dim = x.shape
        len_keep = int(length * (1 - mask_ratio))
        ids_shuffle = torch.argsort(noise, dim=1)
        ids_restore = torch.argsort(ids_shuffle, dim=1)
        ids_keep = ids_shuffle[:, :len_keep]
        x = torch.gather(x, 1, ids_keep.unsqueeze(-1).repeat(1, 1, dim))
        mask = torch.ones(n, length)
        mask[:, :len_keep] = 0
        mask = torch.gather(mask, 1, ids_restore)
        cls = (self.cls_token + self.pos_embed[:, :1, :]).expand(n, -1, -1)
        x = torch.cat((cls, x), dim=1)
        for block in self.blocks:
            x = block(x)
        latent = self.norm(x)

        x = self.decoder_embed(latent)
        mask_tokens = self.mask_token.repeat(n, ids_restore.shape[1] + 1 - x.shape[1], 1)
        x_ = torch.cat([x[:, 1:, :], mask_tokens], dim=1)
        x_ = torch.gather(x_, 1, ids_restore.unsqueeze(-1).repeat(1, 1, x.shape[2]))
        x = torch.cat([x[:, :1, :], x_], dim=1) + self.decoder_pos_embed
        for block in self.decoder_blocks:
            x = block(x)
        pred = self.decoder_pred(self.decoder_norm(x))[:, 1:, :]
        loss = official_loss(imgs, pred, mask, self.p, self.norm_pix)
        return loss, pred, mask, latent


def official_keys(depth: int, decoder_depth: int) -> set[str]:
    block = [
        "norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.qkv.bias", "attn.proj.weight",
        "attn.proj.bias", "norm2.weight", "norm2.bias", "mlp.fc1.weight", "mlp.fc1.bias",
        "mlp.fc2.weight", "mlp.fc2.bias",
    ]  # fmt: skip
    keys = {
        "cls_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias",
        "norm.weight", "norm.bias", "decoder_embed.weight", "decoder_embed.bias", "mask_token",
        "decoder_pos_embed", "decoder_norm.weight", "decoder_norm.bias", "decoder_pred.weight",
        "decoder_pred.bias",
    }  # fmt: skip
    keys |= {f"blocks.{i}.{name}" for i in range(depth) for name in block}
    keys |= {f"decoder_blocks.{i}.{name}" for i in range(decoder_depth) for name in block}
    return keys


# --- shapes and official semantics ---------------------------------------------------------------
def test_forward_shapes_and_mask_count() -> None:
    model = tiny_mae()
    loss, pred, mask = model(images(), mask_ratio=0.75)
    assert loss.shape == () and loss.dtype == torch.float32
    assert pred.shape == (3, NUM_PATCHES, PATCH_DIM)
    assert mask.shape == (3, NUM_PATCHES)
    assert torch.equal(mask.sum(dim=1), torch.full((3,), 12.0))  # int(16 * 0.25) = 4 kept
    latent, mask2, ids_restore = model.forward_encoder(images(), 0.5, noise=noise_for())
    assert latent.shape == (3, 1 + 8, 32)
    assert ids_restore.shape == (3, NUM_PATCHES) and ids_restore.dtype == torch.int64
    assert model.forward_decoder(latent, ids_restore).shape == (3, NUM_PATCHES, PATCH_DIM)
    assert mask2.sum().item() == 3 * 8


def test_noise_fixes_the_mask_and_keeps_the_smallest_noise() -> None:
    model = tiny_mae()
    noise = noise_for()
    loss_a, pred_a, mask_a = model(images(), noise=noise)
    loss_b, pred_b, mask_b = model(images(), noise=noise)
    assert torch.equal(mask_a, mask_b) and torch.equal(loss_a, loss_b)
    torch.testing.assert_close(pred_a, pred_b)
    kept = noise.argsort(dim=1)[:, :4]
    expected = torch.ones(3, NUM_PATCHES).scatter_(1, kept, 0.0)
    assert torch.equal(mask_a, expected)
    # A generator with the same seed also reproduces the mask; another seed changes it.
    _, _, mask_c = model(images(), generator=torch.Generator().manual_seed(5))
    _, _, mask_d = model(images(), generator=torch.Generator().manual_seed(5))
    _, _, mask_e = model(images(), generator=torch.Generator().manual_seed(6))
    assert torch.equal(mask_c, mask_d) and not torch.equal(mask_c, mask_e)


def test_ids_restore_undoes_the_shuffle_of_random_masking() -> None:
    model = tiny_mae()
    tokens = torch.arange(NUM_PATCHES, dtype=torch.float32).repeat(3, 1).unsqueeze(-1)
    kept, mask, ids_restore = model.random_masking(tokens, 0.75, noise=noise_for())
    assert kept.shape == (3, 4, 1)
    assert torch.equal(kept[..., 0], noise_for().argsort(dim=1)[:, :4].float())
    assert torch.equal(mask.gather(1, kept[..., 0].long()), torch.zeros(3, 4))
    # forward_encoder and random_masking agree on the split for the same noise.
    _, encoder_mask, encoder_restore = model.forward_encoder(images(), 0.75, noise=noise_for())
    assert torch.equal(encoder_mask, mask) and torch.equal(encoder_restore, ids_restore)


@pytest.mark.parametrize("norm_pix", [False, True])
def test_loss_equals_the_official_formula(norm_pix: bool) -> None:
    model = tiny_mae(norm_pix_loss=norm_pix)
    imgs = images()
    loss, pred, mask = model(imgs, noise=noise_for())
    expected = official_loss(imgs, pred, mask, 4, norm_pix)
    torch.testing.assert_close(loss, expected, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(model.forward_loss(imgs, pred, mask), expected)


def test_patchify_matches_official_layout_and_unpatchify_inverts_it() -> None:
    model = tiny_mae()
    imgs = images()
    patches = model.patchify(imgs)
    assert torch.equal(patches, official_patchify(imgs, 4))
    assert torch.equal(model.unpatchify(patches), imgs)


@pytest.mark.parametrize("norm_pix", [False, True])
def test_same_loss_as_independent_official_forward(norm_pix: bool) -> None:
    model = tiny_mae(norm_pix_loss=norm_pix).eval()
    reference = OfficialLayoutMAE(TINY, norm_pix=norm_pix).eval()
    reference.load_state_dict(model.to_official_state_dict(), strict=True)
    imgs, noise = images(), noise_for()
    with torch.no_grad():
        loss, pred, mask = model(imgs, mask_ratio=0.75, noise=noise)
        ref_loss, ref_pred, ref_mask, ref_latent = reference(imgs, 0.75, noise)
        latent, _, _ = model.forward_encoder(imgs, 0.75, noise=noise)
    assert torch.equal(mask, ref_mask)
    pairs = {"latent": (latent, ref_latent), "pred": (pred, ref_pred), "loss": (loss, ref_loss)}
    diffs = {name: f"{float((a - b).abs().max()):.3e}" for name, (a, b) in pairs.items()}
    print(f"PARITY official forward (norm_pix={norm_pix}): {diffs}")
    torch.testing.assert_close(latent, ref_latent, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(pred, ref_pred, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(loss, ref_loss, rtol=1e-5, atol=1e-7)


def test_initialisation_follows_the_official_recipe() -> None:
    model = tiny_mae()
    vit = model.encoder.vit
    assert torch.equal(vit.pos_embed[0], get_2d_sincos_pos_embed(32, 4, 1))
    assert torch.equal(model.decoder.decoder_pos_embed[0], get_2d_sincos_pos_embed(24, 4, 1))
    assert not vit.pos_embed.requires_grad and not model.decoder.decoder_pos_embed.requires_grad
    assert vit.cls_token.std().item() == pytest.approx(0.02, rel=0.5)
    assert model.decoder.mask_token.std().item() == pytest.approx(0.02, rel=0.5)
    for module in model.modules():
        if isinstance(module, nn.Linear):
            assert torch.count_nonzero(module.bias) == 0
            bound = (6 / (module.in_features + module.out_features)) ** 0.5
            assert module.weight.abs().max() <= bound
        if isinstance(module, nn.LayerNorm):
            assert torch.all(module.weight == 1) and module.eps == 1e-6
    # Re-initialising with the same seed is deterministic.
    torch.manual_seed(3)
    model.initialize_weights()
    first = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(3)
    model.initialize_weights()
    for key, value in model.state_dict().items():
        assert torch.equal(value, first[key]), key


def test_every_trainable_parameter_gets_a_gradient() -> None:
    model = tiny_mae()
    loss, _, _ = model(images())
    loss.backward()
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert trainable
    assert [n for n, p in trainable if p.grad is None] == []
    frozen = sorted(n for n, p in model.named_parameters() if not p.requires_grad)
    assert frozen == ["model.decoder.decoder_pos_embed", "model.encoder.vit.pos_embed"]


def test_a_few_steps_on_a_fixed_batch_lower_the_loss() -> None:
    model = tiny_mae()
    imgs, noise = images(8), torch.rand(8, NUM_PATCHES, generator=torch.Generator().manual_seed(0))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    with torch.no_grad():
        start = model(imgs, noise=noise)[0].item()
    for _ in range(15):
        optimizer.zero_grad()
        model(imgs, noise=noise)[0].backward()
        optimizer.step()
    with torch.no_grad():
        end = model(imgs, noise=noise)[0].item()
    assert end < 0.8 * start, (start, end)


# --- official checkpoints ------------------------------------------------------------------------
def test_official_layout_has_exactly_the_official_key_names() -> None:
    model = tiny_mae()
    state = model.to_official_state_dict()
    assert set(state) == official_keys(depth=2, decoder_depth=1)
    assert state["patch_embed.proj.weight"].shape == (32, 3, 4, 4)
    assert state["pos_embed"].shape == (1, 1 + NUM_PATCHES, 32)
    assert state["mask_token"].shape == (1, 1, 24)
    assert state["decoder_pred.weight"].shape == (PATCH_DIM, 24)
    assert state["blocks.1.attn.qkv.weight"].shape == (96, 32)
    assert state["decoder_blocks.0.mlp.fc1.weight"].shape == (48, 24)


def _assert_same_weights(a: MAE, b: MAE) -> None:
    state_b = b.state_dict()
    for key, value in a.state_dict().items():
        assert torch.equal(value, state_b[key]), key


def test_load_official_round_trip_gives_the_same_loss(tmp_path: Path) -> None:
    source, target = tiny_mae(seed=0), tiny_mae(seed=1)
    imgs, noise = images(), noise_for()
    official = {k: v.clone() for k, v in source.to_official_state_dict().items()}
    assert not torch.equal(source(imgs, noise=noise)[0], target(imgs, noise=noise)[0])
    assert target.load_official(official) == []
    _assert_same_weights(source, target)
    torch.testing.assert_close(target(imgs, noise=noise)[0], source(imgs, noise=noise)[0])

    # From a file saved as the official code does ({"model": state_dict}).
    path = tmp_path / "checkpoint-799.pth"
    torch.save({"model": official, "epoch": 799}, path)
    from_file = tiny_mae(seed=2)
    from_file.load_official(path)
    _assert_same_weights(source, from_file)

    # And with the architecture read from the checkpoint.
    rebuilt = MAE.from_official(path, num_heads=2, decoder_num_heads=2)
    assert rebuilt.hparams["embed_dim"] == 32 and rebuilt.hparams["depth"] == 2
    assert rebuilt.hparams["decoder_embed_dim"] == 24 and rebuilt.hparams["mlp_ratio"] == 2.0
    _assert_same_weights(source, rebuilt)
    torch.testing.assert_close(rebuilt(imgs, noise=noise)[0], source(imgs, noise=noise)[0])


def test_load_official_reports_bad_checkpoints() -> None:
    model = tiny_mae()
    official = model.to_official_state_dict()
    missing = {k: v for k, v in official.items() if k != "decoder_pred.bias"}
    with pytest.raises(ValueError, match=re.escape("decoder_pred.bias")):
        model.load_official(missing)
    assert model.load_official(missing, strict=False) == ["decoder_pred.bias"]
    with pytest.raises(ValueError, match=re.escape("blocks.7.extra")):
        model.load_official({**official, "blocks.7.extra": torch.zeros(1)})
    wrong_shape = {**official, "decoder_embed.weight": torch.zeros(24, 31)}
    with pytest.raises(ValueError, match=re.escape("decoder_embed.weight")):
        model.load_official(wrong_shape)
    encoder_only = {k: v for k, v in official.items() if not k.startswith("decoder")}
    with pytest.raises(ValueError, match="decoder"):
        MAE.from_official(encoder_only)


# --- a drop-in for the official MaskedAutoencoderViT --------------------------------------------
OFFICIAL_ATTRIBUTES = (
    "patch_embed", "cls_token", "pos_embed", "blocks", "norm", "decoder_embed", "mask_token",
    "decoder_pos_embed", "decoder_blocks", "decoder_norm", "decoder_pred",
)  # fmt: skip


def random_official(seed: int = 7, norm_pix: bool = False) -> OfficialLayoutMAE:
    """The independent official-layout model with random weights (tables included)."""
    torch.manual_seed(seed)
    reference = OfficialLayoutMAE(TINY, norm_pix=norm_pix).eval()
    with torch.no_grad():
        for tensor in reference.state_dict().values():
            tensor.normal_(std=0.2)
    return reference


def _decoder_key(key: str) -> bool:
    return key.startswith("decoder_") or key == "mask_token"


def test_state_dict_loads_into_the_official_model_strictly_and_back() -> None:
    model = tiny_mae(seed=0, norm_pix_loss=True).eval()
    assert set(model.state_dict()) == official_keys(depth=2, decoder_depth=1)
    reference = OfficialLayoutMAE(TINY, norm_pix=True).eval()
    reference.load_state_dict(model.state_dict(), strict=True)
    imgs, noise = images(), noise_for()
    with torch.no_grad():
        ours, theirs = model(imgs, noise=noise)[0], reference(imgs, 0.75, noise)[0]
    print(
        f"PARITY MAE.state_dict() in official model, loss: max abs diff {(ours - theirs).abs():.3e}"
    )
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-7)

    # And back: the official model's weights load into MAE with strict=True, every one of them.
    source = random_official(norm_pix=True)
    target = tiny_mae(seed=1, norm_pix_loss=True).eval()
    result = target.load_state_dict(source.state_dict(), strict=True)
    assert result.missing_keys == [] and result.unexpected_keys == []
    loaded = target.state_dict()
    for key, value in source.state_dict().items():
        assert torch.equal(loaded[key], value), key
    with torch.no_grad():
        ours, theirs = target(imgs, noise=noise)[0], source(imgs, 0.75, noise)[0]
    print(f"PARITY official state dict in MAE, loss: max abs diff {(ours - theirs).abs():.3e}")
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-7)


def test_official_checkpoints_load_with_plain_non_strict_load_state_dict(tmp_path: Path) -> None:
    source = random_official()
    path = tmp_path / "mae_visualize_tiny.pth"
    torch.save({"model": source.state_dict()}, path)
    # What the official demo and fine-tuning code do.
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    model = tiny_mae(seed=3).eval()
    message = model.load_state_dict(checkpoint["model"], strict=False)
    assert message.missing_keys == [] and message.unexpected_keys == []
    loaded = model.state_dict()
    for key, value in source.state_dict().items():
        assert torch.equal(loaded[key], value), key  # really loaded, not just "no error"
    imgs, noise = images(), noise_for()
    with torch.no_grad():
        torch.testing.assert_close(model(imgs, noise=noise)[0], source(imgs, 0.75, noise)[0])

    # An encoder-only release checkpoint with a classifier head: the encoder loads, the decoder
    # keeps its values, and what did not match is reported under the official names.
    encoder_only = {k: v for k, v in source.state_dict().items() if not _decoder_key(k)}
    encoder_only |= {"head.weight": torch.zeros(10, 32), "head.bias": torch.zeros(10)}
    fresh = tiny_mae(seed=4)
    decoder_before = {k: v.clone() for k, v in fresh.state_dict().items() if _decoder_key(k)}
    message = fresh.load_state_dict(encoder_only, strict=False)
    assert set(message.missing_keys) == set(decoder_before)
    assert sorted(message.unexpected_keys) == ["head.bias", "head.weight"]
    after = fresh.state_dict()
    for key, value in encoder_only.items():
        if not key.startswith("head."):
            assert torch.equal(after[key], value), key
    for key, value in decoder_before.items():
        assert torch.equal(after[key], value), key
    with pytest.raises(RuntimeError, match=r'Missing key\(s\) in state_dict: "mask_token"'):
        fresh.load_state_dict(encoder_only)


def test_official_attribute_names_are_the_blocks_own_objects() -> None:
    model = tiny_mae()
    encoder, decoder = model.encoder.vit, model.decoder
    assert model.blocks is encoder.blocks and model.patch_embed is encoder.patch_embed
    assert model.norm is encoder.norm and model.cls_token is encoder.cls_token
    assert model.pos_embed is encoder.pos_embed
    for name in OFFICIAL_ATTRIBUTES[5:]:
        assert getattr(model, name) is getattr(decoder, name), name
    # Every official state-dict entry is the very parameter the blocks compute with, once.
    tensors = model.state_dict(keep_vars=True)
    for key, tensor in tensors.items():
        head, *path = key.split(".")
        owner: Any = getattr(model, head)
        for part in path:
            owner = owner[int(part)] if part.isdigit() else getattr(owner, part)
        assert owner is tensor, key
    parameters = list(model.parameters())
    assert len({id(p) for p in parameters}) == len(parameters) == len(tensors)


def test_assign_load_keeps_the_official_names_tied() -> None:
    source = random_official()
    model = tiny_mae(seed=5)
    weights = {k: v.clone() for k, v in source.state_dict().items()}
    model.load_state_dict(weights, strict=True, assign=True)
    # assign=True makes the given tensors the parameters (same memory, no copy) ...
    for key, tensor in model.state_dict(keep_vars=True).items():
        assert tensor.data_ptr() == weights[key].data_ptr(), key
    # ... and the official names still are the blocks' own parameters.
    assert model.cls_token is model.encoder.vit.cls_token
    assert model.mask_token is model.decoder.mask_token
    assert model.blocks[0].attn.qkv.weight is model.encoder.vit.blocks[0].attn.qkv.weight
    assert model.state_dict(keep_vars=True)["decoder_pred.weight"] is model.decoder_pred.weight
    # The fixed tables stay frozen; everything else trains through the official names.
    assert not model.pos_embed.requires_grad and not model.decoder_pos_embed.requires_grad
    model(images(), noise=noise_for())[0].backward()
    for name in ("cls_token", "mask_token"):
        grad = getattr(model, name).grad
        assert grad is not None and grad.abs().sum() > 0, name
    imgs, noise = images(), noise_for()
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(imgs, noise=noise)[0], source(imgs, 0.75, noise)[0])


# --- optimiser and Lightning ---------------------------------------------------------------------
def test_configure_optimizers_groups_and_lr_scaling() -> None:
    model = tiny_mae(batch_size=64, total_steps=100, warmup_steps=10, min_lr=1e-6)
    config = model.configure_optimizers()
    optimizer, scheduler = config["optimizer"], config["lr_scheduler"]["scheduler"]
    assert config["lr_scheduler"]["interval"] == "step"
    assert isinstance(optimizer, torch.optim.AdamW)
    assert optimizer.defaults["betas"] == (0.9, 0.95)
    peak = 1.5e-4 * 64 / 256
    assert [g["initial_lr"] for g in optimizer.param_groups] == pytest.approx([peak, peak])
    assert optimizer.param_groups[0]["lr"] == 0.0  # warmup starts at zero
    names = {id(p): n for n, p in model.named_parameters()}
    decay, no_decay = optimizer.param_groups
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    no_decay_names = {names[id(p)] for p in no_decay["params"]}
    tokens = {"model.encoder.vit.cls_token", "model.decoder.mask_token"}
    assert tokens <= no_decay_names
    assert all(
        p.ndim == 1 or n in tokens for n, p in model.named_parameters() if n in no_decay_names
    )
    assert all(p.ndim >= 2 and "token" not in names[id(p)] for p in decay["params"])
    decayed = {names[id(p)] for p in decay["params"]}
    assert "model.encoder.vit.pos_embed" not in no_decay_names | decayed
    for _ in range(10):
        optimizer.step()
        scheduler.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(peak)  # end of warmup

    assert tiny_mae(batch_size=512).peak_lr() == pytest.approx(1.5e-4 * 2)
    assert tiny_mae(batch_size=512, lr=1e-3).peak_lr() == pytest.approx(1e-3)
    with pytest.raises(ValueError, match="batch_size"):
        tiny_mae(total_steps=10).configure_optimizers()
    with pytest.raises(ValueError, match="total_steps"):
        tiny_mae(batch_size=8).configure_optimizers()
    with pytest.raises(ValueError, match="warmup_steps"):
        tiny_mae(warmup_epochs=1, warmup_steps=3)


def _loss_after_steps(fused: bool) -> Tensor:
    model = tiny_mae(fused_adamw=fused, batch_size=256, total_steps=10, warmup_steps=0)
    optimizer = model.configure_optimizers()["optimizer"]
    assert bool(optimizer.defaults["fused"]) is fused
    imgs, noise = images(4), torch.rand(4, NUM_PATCHES, generator=torch.Generator().manual_seed(0))
    for _ in range(3):
        optimizer.zero_grad()
        model(imgs, noise=noise)[0].backward()
        optimizer.step()
    with torch.no_grad():
        return model(imgs, noise=noise)[0]


def test_fused_and_unfused_adamw_give_the_same_loss() -> None:
    try:
        torch.optim.AdamW([nn.Parameter(torch.zeros(1))], fused=True)
    except (RuntimeError, ValueError) as error:
        pytest.skip(f"this torch has no fused AdamW on CPU: {error}")
    torch.testing.assert_close(_loss_after_steps(True), _loss_after_steps(False))


def _trainer(**kwargs: Any) -> pl.Trainer:
    options: dict[str, Any] = dict(
        accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    return pl.Trainer(**{**options, **kwargs})


def _loader(batch_size: int, with_labels: bool = True) -> DataLoader[Any]:
    data = images(16, seed=4)
    dataset = TensorDataset(data, torch.zeros(16)) if with_labels else TensorDataset(data)
    return DataLoader(dataset, batch_size=batch_size)


def test_trainer_sets_effective_batch_total_steps_and_warmup_epochs() -> None:
    model = tiny_mae(warmup_epochs=1)
    trainer = _trainer(max_epochs=2, accumulate_grad_batches=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(model, _loader(batch_size=4))
    # 4 batches of 4 images, 2 accumulated per step: effective batch 8, 2 steps per epoch.
    optimizer = trainer.optimizers[0]
    assert optimizer.param_groups[0]["initial_lr"] == pytest.approx(1.5e-4 * 8 / 256)
    scheduler = trainer.lr_scheduler_configs[0].scheduler
    factors = [scheduler.lr_lambdas[0](step) for step in range(5)]
    assert factors == pytest.approx([0.0, 0.5, 1.0, 0.5, 0.0])  # warmup 2, total 4
    assert trainer.global_step == 4
    assert torch.isfinite(trainer.callback_metrics["train_loss"])


def test_lightning_checkpoint_round_trip_and_val_loss(tmp_path: Path) -> None:
    model = tiny_mae(norm_pix_loss=True, mask_ratio=0.5, total_steps=2, warmup_steps=0)
    trainer = _trainer(
        max_epochs=1, limit_train_batches=2, limit_val_batches=2, default_root_dir=tmp_path
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(model, _loader(4), _loader(8, with_labels=False))
    assert torch.isfinite(trainer.callback_metrics["val_loss"])
    path = tmp_path / "mae.ckpt"
    trainer.save_checkpoint(path)
    loaded = MAE.load_from_checkpoint(path)  # torch.load(weights_only=True) by default
    assert loaded.hparams["mask_ratio"] == 0.5 and loaded.norm_pix_loss
    assert loaded.encoder.vit.norm.eps == 1e-6
    _assert_same_weights(model, loaded)
    # The checkpoint's weights are in the official layout: they load into the official model.
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    assert set(checkpoint["state_dict"]) == official_keys(depth=2, decoder_depth=1)
    OfficialLayoutMAE(TINY).load_state_dict(checkpoint["state_dict"], strict=True)
    # And from_official reads the head counts from its hyper-parameters (nothing guessed).
    rebuilt = MAE.from_official(path)
    assert rebuilt.hparams["num_heads"] == 2 and rebuilt.hparams["decoder_num_heads"] == 2
    assert rebuilt.norm_pix_loss and rebuilt.hparams["mask_ratio"] == 0.5
    _assert_same_weights(model, rebuilt)


def test_batches_in_every_supported_format_give_the_same_loss() -> None:
    model = tiny_mae()
    imgs, labels = images(), torch.zeros(3)
    losses = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # self.log without a trainer warns
        for batch in (imgs, (imgs, labels), [[imgs], labels, ["a", "b", "c"]], {"images": imgs}):
            torch.manual_seed(0)
            losses.append(model.training_step(batch, 0))
        val_first, val_second = model.validation_step(imgs, 3), model.validation_step(imgs, 3)
    assert all(torch.equal(loss, losses[0]) for loss in losses)
    assert torch.equal(val_first, val_second)  # validation masks are seeded by batch_idx
    with pytest.raises(TypeError, match="batch"):
        model.training_step("images", 0)


# --- presets and errors --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("factory", "embed_dim", "depth", "num_heads", "patch_size"),
    [
        (mae_vit_base_patch16, 768, 12, 12, 16),
        (mae_vit_large_patch16, 1024, 24, 16, 16),
        (mae_vit_huge_patch14, 1280, 32, 16, 14),
    ],
)
def test_official_presets(
    factory: Any, embed_dim: int, depth: int, num_heads: int, patch_size: int
) -> None:
    with torch.device("meta"):  # the architecture only; no memory for the weights
        model = factory()
    vit = model.encoder.vit
    assert (vit.embed_dim, len(vit.blocks), vit.blocks[0].attn.num_heads) == (
        embed_dim,
        depth,
        num_heads,
    )
    assert model.patch_size == patch_size and model.img_size == 224
    assert (
        model.decoder.decoder_embed.out_features == 512 and len(model.decoder.decoder_blocks) == 8
    )
    assert model.decoder.decoder_blocks[0].attn.num_heads == 16
    assert vit.norm.eps == 1e-6 and model.decoder.decoder_norm.eps == 1e-6
    assert MAE_PRESETS[factory.__name__] is factory
    assert MAE_PRESETS[factory.__name__ + "_dec512d8b"] is factory


def test_small_presets_train_shapes_and_accept_overrides() -> None:
    torch.manual_seed(0)
    micro = mae_vit_micro_patch4()
    loss, pred, _ = micro(torch.randn(2, 1, 28, 28))
    assert pred.shape == (2, 49, 16) and torch.isfinite(loss)
    cifar = build_mae("mae_vit_tiny_patch4", img_size=32, in_chans=3, norm_pix_loss=True)
    assert cifar.hparams["embed_dim"] == 192 and cifar.norm_pix_loss
    assert cifar(torch.randn(1, 3, 32, 32))[1].shape == (1, 64, 48)
    assert mae_vit_tiny_patch4().hparams["in_chans"] == 1
    custom_norm = mae_vit_micro_patch4(norm_layer=partial(nn.LayerNorm, eps=1e-3))
    assert custom_norm.encoder.vit.norm.eps == 1e-3
    with pytest.raises(ValueError, match="mae_vit_base_patch16"):
        build_mae("mae_vit_gigantic")


def test_bad_inputs_raise_clear_errors() -> None:
    model = tiny_mae()
    with pytest.raises(ValueError, match=r"mask_ratio must be in \[0, 1\), got 1.0"):
        model(images(), mask_ratio=1.0)
    with pytest.raises(ValueError, match="3 channels"):
        model(images(chans=1))
    with pytest.raises(ValueError, match="multiples of the patch size 4"):
        model(images(size=18))
    with pytest.raises(ValueError, match="img_size"):
        model(images(size=20))  # divisible but not the model's size
    with pytest.raises(ValueError, match="noise"):
        model(images(), noise=torch.rand(3, 5))
    with pytest.raises(TypeError, match="mask_ration"):
        tiny_mae(mask_ration=0.5)
    with pytest.raises(ValueError, match="mask_ratio"):
        tiny_mae(mask_ratio=1.5)
    with pytest.raises(ValueError, match="img_size"):
        MAE(**{**TINY, "img_size": 18})
