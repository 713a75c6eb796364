"""Tests for ssl_mae.evaluation: kNN, linear probe, fine-tuning helpers, feature extraction."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from timm.layers.drop import DropPath
from timm.models.vision_transformer import VisionTransformer
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from ssl_mae.evaluation import (
    LARS,
    FineTuneClassifier,
    LinearProbe,
    encode_pooled,
    evaluate_classifier,
    extract_features,
    finetune,
    knn_accuracy,
    knn_predict,
    layer_id_for_parameter,
    linear_probe_encoder,
    param_groups_layer_decay,
    pool_tokens,
    set_drop_path,
    set_learning_rate,
    topk_accuracy,
    train_linear_probe,
    warmup_cosine_lr,
)
from ssl_mae.modules import MaskedVisionTransformer


def tiny_vit(depth: int = 2, **kwargs: object) -> VisionTransformer:
    options: dict[str, object] = {
        "img_size": 16,
        "patch_size": 4,
        "embed_dim": 32,
        "depth": depth,
        "num_heads": 2,
        "mlp_ratio": 2.0,
        "num_classes": 0,
    }
    options.update(kwargs)
    return VisionTransformer(**options)  # type: ignore[arg-type]


def gaussian_clusters(
    num_classes: int, dim: int, per_class: int, seed: int, spread: float = 1.0
) -> tuple[Tensor, Tensor]:
    """Samples around fixed, well separated class centres (same centres for every seed)."""
    centres = torch.randn(num_classes, dim, generator=torch.Generator().manual_seed(1234)) * 4
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(num_classes).repeat_interleave(per_class)
    features = centres[labels] + spread * torch.randn(len(labels), dim, generator=generator)
    return features, labels


# --------------------------------------------------------------------------------------- kNN
def brute_force_knn_scores(
    train: Tensor, train_labels: Tensor, test: Tensor, num_classes: int, k: int, t: float
) -> Tensor:
    """InstDisc weighted kNN written out one query at a time; each vote is taken relative to the
    nearest neighbour's, exp((sim - sim_max) / t), the overflow-free form of exp(sim / t)."""
    train_unit = [row / row.norm() for row in train.double()]
    scores = torch.zeros(len(test), num_classes, dtype=torch.float64)
    for q, query in enumerate(test.double()):
        query_unit = query / query.norm()
        similarities = [
            (float(query_unit @ row), int(label))
            for row, label in zip(train_unit, train_labels, strict=True)
        ]
        similarities.sort(key=lambda pair: pair[0], reverse=True)
        nearest = similarities[0][0]
        for similarity, label in similarities[:k]:
            scores[q, label] += math.exp((similarity - nearest) / t)
    return scores


@pytest.mark.parametrize(("k", "temperature"), [(1, 0.07), (7, 0.07), (50, 0.5), (200, 1.0)])
def test_knn_predict_matches_brute_force(k: int, temperature: float) -> None:
    generator = torch.Generator().manual_seed(k)
    train = torch.randn(240, 12, generator=generator)
    labels = torch.randint(0, 6, (240,), generator=generator)
    test = torch.randn(37, 12, generator=generator)
    scores = knn_predict(train, labels, test, 6, k=k, temperature=temperature, chunk_size=10)
    expected = brute_force_knn_scores(train, labels, test, 6, k, temperature)
    assert scores.shape == (37, 6)
    torch.testing.assert_close(scores, expected, rtol=1e-4, atol=0.0)


def test_knn_predict_chunking_and_normalization_do_not_change_scores() -> None:
    generator = torch.Generator().manual_seed(0)
    train = torch.randn(100, 8, generator=generator)
    labels = torch.randint(0, 4, (100,), generator=generator)
    test = torch.randn(23, 8, generator=generator)
    whole = knn_predict(train, labels, test, 4, k=10, chunk_size=1000)
    # Similarities are float32 matrix products, and BLAS may block a 3-row product differently
    # from a 23-row one (it did from torch 2.14 on), so chunking moves each similarity by an ulp
    # of float32; the votes divide that by t, hence a float32-level tolerance, not float64's.
    torch.testing.assert_close(
        knn_predict(train, labels, test, 4, k=10, chunk_size=3), whole, rtol=1e-5, atol=1e-6
    )
    # Scaling features must not matter: they are L2-normalised first.
    torch.testing.assert_close(
        knn_predict(train * 7, labels, test * 0.1, 4, k=10), whole, rtol=1e-5, atol=0.0
    )
    # With normalize=False the caller's (already unit) features are used as they are.
    unit = knn_predict(
        F.normalize(train, dim=1), labels, F.normalize(test, dim=1), 4, k=10, normalize=False
    )
    torch.testing.assert_close(unit, whole, rtol=1e-5, atol=0.0)


@pytest.mark.parametrize("temperature", [0.005, 1e-3, 1e-5])
def test_knn_predict_small_temperature_does_not_overflow(temperature: float) -> None:
    train = F.normalize(torch.randn(50, 4, generator=torch.Generator().manual_seed(1)), dim=1)
    labels = torch.arange(50) % 3
    scores = knn_predict(train, labels, train[:5], 3, k=5, temperature=temperature)
    assert torch.isfinite(scores).all()
    assert torch.equal(scores.argmax(dim=1), labels[:5])  # each query finds itself first
    # exp(sim / t) overflows float64 for t=1e-3; every class then tied at inf and class 0 won.
    accuracy = knn_accuracy(train, labels, train, labels, 3, k=5, temperature=temperature)
    assert accuracy["top1"] == 1.0


def test_knn_rejects_non_finite_features() -> None:
    train, labels, test = torch.randn(10, 4), torch.arange(10) % 3, torch.randn(5, 4)
    for name, bad_train, bad_test in (
        ("train_features", train.index_fill(0, torch.tensor([3]), float("nan")), test),
        ("test_features", train, test.index_fill(0, torch.tensor([1]), float("inf"))),
    ):
        with pytest.raises(ValueError, match=f"{name} must be finite.*row"):
            knn_accuracy(bad_train, labels, bad_test, torch.arange(5) % 3, 3, k=3)


def test_knn_clamps_k_to_the_bank_with_a_warning() -> None:
    train, labels, test = torch.randn(10, 4), torch.arange(10) % 3, torch.randn(5, 4)
    with pytest.warns(UserWarning, match="k=11 is larger than the bank of 10"):
        clamped = knn_predict(train, labels, test, 3, k=11)
    torch.testing.assert_close(clamped, knn_predict(train, labels, test, 3, k=10))


def test_knn_accuracy_and_lightly_agree() -> None:
    from lightly.utils.benchmarking import knn_predict as lightly_knn_predict

    train, train_labels = gaussian_clusters(8, 16, 30, seed=0, spread=4.0)
    test, test_labels = gaussian_clusters(8, 16, 10, seed=1, spread=4.0)
    result = knn_accuracy(train, train_labels, test, test_labels, 8, k=20, return_predictions=True)
    assert 0.0 <= result["top1"] <= result["top5"] <= 1.0
    assert result["top1"] > 0.5  # clusters are separable well above chance (1/8)
    scores = brute_force_knn_scores(train, train_labels, test, 8, 20, 0.07)
    expected_top1 = (scores.argmax(dim=1) == test_labels).float().mean().item()
    assert result["top1"] == pytest.approx(expected_top1)
    in_top5 = (scores.topk(5, dim=1).indices == test_labels[:, None]).any(dim=1)
    assert result["top5"] == pytest.approx(in_top5.float().mean().item())
    lightly_ranking = lightly_knn_predict(
        F.normalize(test, dim=1), F.normalize(train, dim=1).T, train_labels, 8, 20, 0.07
    )
    assert torch.equal(result["predictions"], lightly_ranking[:, 0])


def test_topk_accuracy() -> None:
    scores = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.15, 0.05], [0.2, 0.3, 0.5]])
    labels = torch.tensor([1, 1, 0])
    top1, top2, top5 = topk_accuracy(scores, labels, (1, 2, 5))
    assert top1 == pytest.approx(1 / 3)
    assert top2 == pytest.approx(2 / 3)
    assert top5 == pytest.approx(1.0)  # k is capped at the 3 classes


def test_knn_rejects_bad_input() -> None:
    train, labels, test = torch.randn(10, 4), torch.arange(10) % 3, torch.randn(5, 4)
    with pytest.raises(ValueError, match="k must be a positive int"):
        knn_predict(train, labels, test, 3, k=0)
    with pytest.raises(ValueError, match="temperature"):
        knn_predict(train, labels, test, 3, k=3, temperature=0.0)
    with pytest.raises(ValueError, match="train_features"):
        knn_predict(train[0], labels, test, 3, k=3)
    with pytest.raises(ValueError, match="test_features"):
        knn_predict(train, labels, test[None], 3, k=3)
    with pytest.raises(ValueError, match="train_labels must have one label per sample"):
        knn_predict(train, labels[:9], test, 3, k=3)
    with pytest.raises(ValueError, match=r"train_labels must lie in \[0, 2\]"):
        knn_predict(train, labels + 1, test, 3, k=3)
    with pytest.raises(ValueError, match="same feature dimension"):
        knn_predict(train, labels, test[:, :3], 3, k=3)
    with pytest.raises(ValueError, match="chunk_size"):
        knn_predict(train, labels, test, 3, k=3, chunk_size=0)
    with pytest.raises(ValueError, match="test_labels"):
        knn_accuracy(train, labels, test, torch.arange(4), 3, k=3)
    with pytest.raises(TypeError, match="train_labels must have an integer dtype"):
        knn_predict(train, labels.float(), test, 3, k=3)


# ------------------------------------------------------------------------- schedule and LARS
def test_warmup_cosine_lr() -> None:
    assert warmup_cosine_lr(0, 100, 10, 1.0) == 0.0
    assert warmup_cosine_lr(5, 100, 10, 1.0) == pytest.approx(0.5)
    assert warmup_cosine_lr(10, 100, 10, 1.0, min_lr=0.1) == pytest.approx(1.0)
    assert warmup_cosine_lr(55, 100, 10, 1.0, min_lr=0.1) == pytest.approx(0.55)
    assert warmup_cosine_lr(100, 100, 10, 1.0, min_lr=0.1) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="warmup_steps"):
        warmup_cosine_lr(0, 10, 11, 1.0)


def test_set_learning_rate_applies_lr_scale() -> None:
    a, b = nn.Parameter(torch.zeros(2)), nn.Parameter(torch.zeros(2))
    optimizer = torch.optim.SGD([{"params": [a], "lr_scale": 0.25}, {"params": [b]}], lr=1.0)
    set_learning_rate(optimizer, 0.4)
    assert [group["lr"] for group in optimizer.param_groups] == pytest.approx([0.1, 0.4])


def test_lars_step_uses_trust_ratio_on_matrices_only() -> None:
    weight = nn.Parameter(torch.tensor([[3.0, 4.0]]))  # norm 5
    bias = nn.Parameter(torch.tensor([1.0]))
    optimizer = LARS([weight, bias], lr=0.5, weight_decay=0.1, momentum=0.9, trust_coefficient=0.01)
    weight.grad = torch.tensor([[1.0, 0.0]])
    bias.grad = torch.tensor([2.0])
    optimizer.step()
    update = torch.tensor([[1.0, 0.0]]) + 0.1 * torch.tensor([[3.0, 4.0]])
    ratio = 0.01 * 5.0 / update.norm()
    torch.testing.assert_close(weight.data, torch.tensor([[3.0, 4.0]]) - 0.5 * ratio * update)
    torch.testing.assert_close(bias.data, torch.tensor([1.0 - 0.5 * 2.0]))  # plain SGD step
    # Second step: momentum accumulates the previous (scaled) update.
    first_bias_update = torch.tensor([2.0])
    bias.grad = torch.tensor([2.0])
    weight.grad = None
    optimizer.step()
    torch.testing.assert_close(
        bias.data, torch.tensor([0.0]) - 0.5 * (0.9 * first_bias_update + 2.0)
    )


# ------------------------------------------------------------------------------ linear probe
# LARS moves each weight matrix by a fixed fraction of its norm per step, so the few steps a tiny
# data set offers need a larger learning rate than the 60k-sample defaults.
@pytest.mark.parametrize(("optimizer", "lr"), [("lars", 5.0), ("sgd", 0.05)])
def test_linear_probe_separates_gaussian_clusters(optimizer: str, lr: float) -> None:
    train, train_labels = gaussian_clusters(10, 32, 150, seed=0, spread=3.0)
    test, test_labels = gaussian_clusters(10, 32, 50, seed=1, spread=3.0)
    result = train_linear_probe(
        train,
        train_labels,
        test,
        test_labels,
        10,
        epochs=10,
        batch_size=128,
        lr=lr,
        optimizer=optimizer,
        eval_every=5,
    )
    assert result["top1"] > 0.95
    assert result["top5"] >= result["top1"]
    assert len(result["history"]["train_loss"]) == 10
    assert result["history"]["train_loss"][-1] < result["history"]["train_loss"][0]
    assert result["history"]["test_epoch"] == [5.0, 10.0]
    assert isinstance(result["probe"], LinearProbe)
    # Same seed, same result.
    again = train_linear_probe(
        train,
        train_labels,
        test,
        test_labels,
        10,
        epochs=10,
        batch_size=128,
        lr=lr,
        optimizer=optimizer,
    )
    assert again["history"]["train_loss"] == pytest.approx(result["history"]["train_loss"])


def test_linear_probe_module_is_batchnorm_without_affine_then_linear() -> None:
    probe = LinearProbe(6, 3)
    assert isinstance(probe.norm, nn.BatchNorm1d) and not probe.norm.affine
    features = torch.randn(20, 6) * 5 + 2
    probe.train()
    normalised = (features - features.mean(0)) / torch.sqrt(features.var(0, unbiased=False) + 1e-6)
    torch.testing.assert_close(probe(features), probe.linear(normalised), rtol=1e-4, atol=1e-5)


def test_linear_probe_rejects_bad_input() -> None:
    features, labels = torch.randn(8, 4), torch.arange(8) % 2
    with pytest.raises(ValueError, match="optimizer must be one of"):
        train_linear_probe(features, labels, features, labels, 2, optimizer="adam")
    with pytest.raises(ValueError, match="warmup_epochs"):
        train_linear_probe(features, labels, features, labels, 2, epochs=2, warmup_epochs=3)
    with pytest.raises(ValueError, match="test_labels must have one label per sample"):
        train_linear_probe(features, labels, features, labels[:3], 2)
    with pytest.raises(ValueError, match="train_features and test_features"):
        train_linear_probe(features, labels, features[:, :2], labels, 2)


class FlattenEncoder(nn.Module):
    """An encoder that already pools: (B, C, H, W) -> (B, C*H*W)."""

    def forward(self, images: Tensor) -> Tensor:
        return images.flatten(1)


def test_linear_probe_encoder_extracts_then_trains() -> None:
    train, train_labels = gaussian_clusters(4, 16, 60, seed=0, spread=2.0)
    test, test_labels = gaussian_clusters(4, 16, 20, seed=1, spread=2.0)
    train_set = TensorDataset(train.view(-1, 1, 4, 4), train_labels)
    test_set = TensorDataset(test.view(-1, 1, 4, 4), test_labels)
    result = linear_probe_encoder(
        FlattenEncoder(), train_set, test_set, 4, batch_size=32, epochs=5, optimizer="sgd"
    )
    assert result["top1"] > 0.95
    assert result["probe"].linear.in_features == 16


# ------------------------------------------------------------------------------ layer decay
class Wrapped(nn.Module):
    """Holds a timm ViT as ``.vit`` plus a mask token, like MaskedVisionTransformer."""

    def __init__(self, vit: VisionTransformer) -> None:
        super().__init__()
        self.vit = vit
        self.mask_token = nn.Parameter(torch.zeros(1, 1, vit.embed_dim))


def lr_scales(groups: list[dict[str, object]]) -> dict[int, tuple[float, float]]:
    """Maps id(param) to (lr_scale, weight_decay)."""
    return {
        id(p): (float(group["lr_scale"]), float(group["weight_decay"]))  # type: ignore[arg-type]
        for group in groups
        for p in group["params"]  # type: ignore[attr-defined]
    }


def check_layer_decay(model: nn.Module, vit: VisionTransformer) -> None:
    groups = param_groups_layer_decay(model, weight_decay=0.05, layer_decay=0.75)
    scales = lr_scales(groups)
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert len(scales) == len(trainable)  # every trainable parameter exactly once
    assert sum(len(g["params"]) for g in groups) == len(scales)
    d = 0.75
    # depth 4: stem = layer 0 -> d**5, block i -> d**(4 - i), head / final norm -> 1.
    assert scales[id(vit.patch_embed.proj.weight)] == (pytest.approx(d**5), 0.05)
    assert scales[id(vit.patch_embed.proj.bias)] == (pytest.approx(d**5), 0.0)
    assert scales[id(vit.cls_token)] == (pytest.approx(d**5), 0.0)
    if vit.pos_embed.requires_grad:  # MaskedVisionTransformer freezes its sin-cos table
        assert scales[id(vit.pos_embed)] == (pytest.approx(d**5), 0.0)
    assert scales[id(vit.blocks[0].attn.qkv.weight)] == (pytest.approx(d**4), 0.05)
    assert scales[id(vit.blocks[0].norm1.weight)] == (pytest.approx(d**4), 0.0)
    assert scales[id(vit.blocks[3].mlp.fc2.weight)] == (pytest.approx(d**1), 0.05)
    assert scales[id(vit.blocks[3].mlp.fc2.bias)] == (pytest.approx(d**1), 0.0)
    assert scales[id(vit.norm.weight)] == (pytest.approx(1.0), 0.0)


def test_layer_decay_timm_vit() -> None:
    vit = tiny_vit(depth=4, num_classes=5)
    check_layer_decay(vit, vit)
    scales = lr_scales(param_groups_layer_decay(vit, 0.05, 0.75))
    assert scales[id(vit.head.weight)] == (pytest.approx(1.0), 0.05)
    assert scales[id(vit.head.bias)] == (pytest.approx(1.0), 0.0)


def test_layer_decay_handles_prefixed_names() -> None:
    vit = tiny_vit(depth=4)
    wrapped = Wrapped(vit)
    check_layer_decay(wrapped, vit)
    assert lr_scales(param_groups_layer_decay(wrapped))[id(wrapped.mask_token)] == (
        pytest.approx(0.75**5),
        0.0,
    )
    classifier = FineTuneClassifier(wrapped, num_classes=3, embed_dim=32)
    check_layer_decay(classifier, vit)
    scales = lr_scales(param_groups_layer_decay(classifier, 0.05, 0.75))
    assert scales[id(classifier.head.weight)] == (pytest.approx(1.0), 0.05)


def test_layer_decay_masked_vision_transformer() -> None:
    vit = tiny_vit(depth=4)
    encoder = MaskedVisionTransformer(vit)
    check_layer_decay(encoder, vit)
    classifier = FineTuneClassifier(encoder, num_classes=3)
    check_layer_decay(classifier, vit)


def test_layer_id_and_group_options() -> None:
    assert layer_id_for_parameter("encoder.vit.blocks.2.attn.proj.weight", 4) == 3
    assert layer_id_for_parameter("decoder_blocks.2.attn.proj.weight", 4) == 5  # not "blocks."
    assert layer_id_for_parameter("vit.encoder.layers.encoder_layer_1.mlp.0.weight", 4) == 2
    assert layer_id_for_parameter("vit.conv_proj.weight", 4) == 0
    assert layer_id_for_parameter("head.weight", 4) == 5
    vit = tiny_vit(depth=2)
    groups = param_groups_layer_decay(
        vit, 0.1, layer_decay=1.0, no_weight_decay_names=["blocks.0.attn.qkv.weight"]
    )
    scales = lr_scales(groups)
    assert {scale for scale, _ in scales.values()} == {1.0}
    assert scales[id(vit.blocks[0].attn.qkv.weight)] == (1.0, 0.0)
    assert scales[id(vit.blocks[1].attn.qkv.weight)] == (1.0, 0.1)
    vit.patch_embed.proj.weight.requires_grad_(False)
    frozen = lr_scales(param_groups_layer_decay(vit))
    assert id(vit.patch_embed.proj.weight) not in frozen
    with pytest.raises(ValueError, match="layer_decay"):
        param_groups_layer_decay(vit, layer_decay=1.5)
    with pytest.raises(TypeError, match="no_weight_decay_names"):
        param_groups_layer_decay(vit, no_weight_decay_names="pos_embed")


# -------------------------------------------------------------------------------- drop path
def test_set_drop_path_assigns_linear_rates() -> None:
    vit = tiny_vit(depth=4)
    rates = set_drop_path(vit, 0.3)
    assert rates == pytest.approx([0.0, 0.1, 0.2, 0.3])
    assert isinstance(vit.blocks[0].drop_path1, nn.Identity)
    for block, rate in zip(vit.blocks[1:], rates[1:], strict=True):
        for slot in (block.drop_path1, block.drop_path2):
            assert isinstance(slot, DropPath)
            assert slot.drop_prob == pytest.approx(rate)
    set_drop_path(vit, 0.0)
    assert not any(isinstance(m, DropPath) for m in vit.modules())
    with pytest.raises(ValueError, match="drop_path_rate"):
        set_drop_path(vit, 1.0)
    with pytest.raises(ValueError, match="no blocks"):
        set_drop_path(nn.Linear(2, 2), 0.1)


def test_drop_path_acts_in_train_mode_only() -> None:
    torch.manual_seed(0)
    vit = tiny_vit(depth=2)
    set_drop_path(vit, 0.9)  # the last block drops each branch with probability 0.9
    block = vit.blocks[1]
    tokens = torch.randn(64, 5, 32)
    block.train()
    out_a, out_b = block(tokens), block(tokens)
    untouched = (out_a == tokens).flatten(1).all(dim=1)
    # Both residual branches dropped for a sample -> the block is the identity for it.
    assert 20 < int(untouched.sum()) < 64
    assert not torch.equal(out_a, out_b)
    block.eval()
    eval_a, eval_b = block(tokens), block(tokens)
    assert torch.equal(eval_a, eval_b)
    assert not (eval_a == tokens).flatten(1).all(dim=1).any()


# ------------------------------------------------------------------------ feature extraction
def image_data(n: int = 12, seed: int = 0) -> TensorDataset:
    generator = torch.Generator().manual_seed(seed)
    return TensorDataset(torch.randn(n, 3, 16, 16, generator=generator), torch.arange(n) % 3)


def test_extract_features_cls_and_mean_match_manual_pooling() -> None:
    vit = tiny_vit(depth=2, proj_drop_rate=0.5)  # dropout: train-mode outputs would differ
    data = image_data()
    images, labels = data.tensors
    vit.eval()
    with torch.no_grad():
        tokens = vit.forward_features(images)
    vit.train()
    cls_features, cls_labels = extract_features(vit, data, pool="cls", batch_size=5)
    assert vit.training  # mode restored
    mean_features, _ = extract_features(vit, DataLoader(data, batch_size=4), pool="mean")
    torch.testing.assert_close(cls_features, tokens[:, 0])
    torch.testing.assert_close(mean_features, tokens[:, 1:].mean(dim=1))
    assert torch.equal(cls_labels, labels)
    assert cls_features.dtype == torch.float32 and cls_labels.dtype == torch.int64


def test_extract_features_uses_encode_of_masked_vision_transformer() -> None:
    encoder = MaskedVisionTransformer(tiny_vit(depth=2, reg_tokens=2))
    encoder.eval()
    data = image_data()
    images = data.tensors[0]
    with torch.no_grad():
        tokens = encoder.encode(images)
    assert encoder.num_prefix_tokens == 3
    features, _ = extract_features(encoder, data, pool="mean")
    torch.testing.assert_close(features, tokens[:, 3:].mean(dim=1))
    features, _ = extract_features(encoder, data, pool="cls")
    torch.testing.assert_close(features, tokens[:, 0])
    assert not encoder.training  # eval mode kept


def test_extract_features_plain_encoder_and_lightly_style_batches() -> None:
    images = torch.randn(6, 1, 4, 4)
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    batches = [([images[:4]], labels[:4], ["a"] * 4), ([images[4:]], labels[4:], ["b"] * 2)]
    features, got_labels = extract_features(FlattenEncoder(), batches)
    torch.testing.assert_close(features, images.flatten(1))
    assert torch.equal(got_labels, labels)


def test_pool_tokens_and_encode_pooled_validate() -> None:
    tokens = torch.randn(2, 5, 3)
    torch.testing.assert_close(pool_tokens(tokens, "mean", 2), tokens[:, 2:].mean(1))
    with pytest.raises(ValueError, match="pool must be one of"):
        extract_features(FlattenEncoder(), image_data(), pool="max")
    with pytest.raises(ValueError, match="num_prefix_tokens=0"):
        pool_tokens(tokens, "cls", 0)
    vit = tiny_vit(class_token=False, global_pool="avg")
    with pytest.raises(ValueError, match="pool='cls'"):
        encode_pooled(vit, torch.randn(1, 3, 16, 16), "cls")
    with pytest.raises(ValueError, match=r"\(B, D\)"):
        encode_pooled(nn.Identity(), torch.randn(1, 3, 16, 16))
    with pytest.raises(TypeError, match="tuple"):
        extract_features(FlattenEncoder(), [torch.randn(2, 1, 2, 2)])
    with pytest.raises(ValueError, match="batch_size"):
        extract_features(FlattenEncoder(), image_data(), batch_size=0)


# -------------------------------------------------------------------------------- fine-tune
def quadrant_data(n: int, seed: int) -> TensorDataset:
    """4 classes: the bright quadrant of a noisy 16x16 image tells the class."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 4
    images = 0.3 * torch.randn(n, 3, 16, 16, generator=generator)
    for i, label in enumerate(labels.tolist()):
        row, col = divmod(label, 2)
        images[i, :, row * 8 : row * 8 + 8, col * 8 : col * 8 + 8] += 1.0
    return TensorDataset(images, labels)


def test_finetune_learns_a_tiny_problem() -> None:
    torch.manual_seed(0)
    encoder = MaskedVisionTransformer(tiny_vit(depth=2))
    result = finetune(
        encoder,
        quadrant_data(128, seed=0),
        quadrant_data(64, seed=1),
        num_classes=4,
        pool="mean",
        epochs=4,
        batch_size=16,
        lr=3e-3,
        warmup_epochs=1,
        drop_path_rate=0.1,
        eval_every=2,
    )
    assert result["top1"] > 0.6  # chance is 0.25
    assert result["top5"] == 1.0
    assert isinstance(result["model"], FineTuneClassifier)
    assert result["history"]["test_epoch"] == [2.0, 4.0]
    assert len(result["history"]["train_loss"]) == 4
    assert any(isinstance(m, DropPath) for m in result["model"].modules())


def test_finetune_max_steps_and_errors() -> None:
    vit = tiny_vit(depth=1)
    classifier = FineTuneClassifier(vit, num_classes=4)
    before = classifier.head.weight.detach().clone()
    result = finetune(
        classifier,
        quadrant_data(32, 0),
        quadrant_data(8, 1),
        4,
        epochs=5,
        batch_size=8,
        max_steps=3,
        drop_path_rate=0.0,
    )
    assert result["model"] is classifier
    assert len(result["history"]["train_loss"]) == 1  # 3 steps fit in the first epoch
    assert not torch.equal(classifier.head.weight, before)
    with pytest.raises(ValueError, match="num_classes=3 does not match"):
        finetune(classifier, quadrant_data(8, 0), quadrant_data(8, 1), 3)
    with pytest.raises(ValueError, match="label_smoothing"):
        finetune(vit, quadrant_data(8, 0), quadrant_data(8, 1), 4, label_smoothing=1.0)
    with pytest.raises(TypeError, match="train_data"):
        finetune(vit, [1, 2], quadrant_data(8, 1), 4)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="embed_dim"):
        FineTuneClassifier(FlattenEncoder(), 4)


def test_evaluate_classifier_metrics_and_mode() -> None:
    data = quadrant_data(16, 0)

    class Oracle(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.scale = nn.Parameter(torch.ones(()))

        def forward(self, images: Tensor) -> Tensor:
            quadrants = images.mean(1).unfold(1, 8, 8).unfold(2, 8, 8).mean((-1, -2))
            return self.scale * 10 * quadrants.flatten(1)  # (B, 4), row-major like the labels

    model = Oracle()
    model.train()
    metrics = evaluate_classifier(model, data, batch_size=5)
    assert model.training
    assert metrics["top1"] == 1.0 and metrics["top5"] == 1.0
    assert 0.0 < metrics["loss"] < 0.1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_paths_match_cpu() -> None:
    vit = tiny_vit(depth=2)
    data = image_data()
    reference, _ = extract_features(vit, data, amp=False)
    features, _ = extract_features(vit, data, device="cuda")  # bf16 autocast by default
    assert features.device.type == "cpu" and features.dtype == torch.float32
    assert next(vit.parameters()).device.type == "cpu"  # the encoder is moved back
    torch.testing.assert_close(features, reference, atol=0.1, rtol=0.05)
    train, labels = gaussian_clusters(4, 8, 30, seed=0)
    cpu_scores = knn_predict(train, labels, train[:10], 4, k=5)
    cuda_scores = knn_predict(train, labels, train[:10], 4, k=5, device="cuda")
    torch.testing.assert_close(cuda_scores.cpu(), cpu_scores, rtol=1e-4, atol=0.0)
    result = train_linear_probe(train, labels, train, labels, 4, epochs=2, device="cuda")
    assert next(result["probe"].parameters()).device.type == "cpu"
    tuned = finetune(
        tiny_vit(depth=1), quadrant_data(16, 0), quadrant_data(8, 1), 4, epochs=1, device="cuda"
    )
    assert 0.0 <= tuned["top1"] <= 1.0
