"""Tests for the MAE optimiser recipe: parameter groups, lr scaling, warmup-cosine schedule."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import nn

from ssl_mae.training.optim import (
    build_adamw,
    param_groups_weight_decay,
    scaled_lr,
    warmup_cosine,
    warmup_cosine_scheduler,
)


class _TokenModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, 8))
        self.pos_embed = nn.Parameter(torch.zeros(1, 5, 8))
        self.frozen_pos_embed = nn.Parameter(torch.zeros(1, 5, 8), requires_grad=False)
        self.proj = nn.Linear(8, 8)
        self.norm = nn.LayerNorm(8)
        self.conv = nn.Conv2d(3, 8, 2)
        self.my_special_table = nn.Parameter(torch.zeros(4, 8))


def _ids(params: list[nn.Parameter]) -> set[int]:
    return {id(p) for p in params}


def test_param_groups_weight_decay_splits_matrices_from_vectors_and_tokens() -> None:
    model = _TokenModel()
    groups = param_groups_weight_decay(model, weight_decay=0.05)
    assert [g["weight_decay"] for g in groups] == [0.05, 0.0]
    decayed, not_decayed = _ids(groups[0]["params"]), _ids(groups[1]["params"])
    assert decayed == _ids([model.proj.weight, model.conv.weight, model.my_special_table])
    vectors = [model.proj.bias, model.conv.bias, model.norm.weight, model.norm.bias]
    assert not_decayed == _ids([model.cls_token, model.pos_embed, *vectors])
    # Frozen parameters are in neither group.
    assert id(model.frozen_pos_embed) not in decayed | not_decayed


def test_param_groups_weight_decay_custom_names_and_empty_groups() -> None:
    model = _TokenModel()
    groups = param_groups_weight_decay(model, 0.1, no_weight_decay_names=("special_table",))
    not_decayed = _ids(groups[1]["params"])
    assert id(model.my_special_table) in not_decayed
    # Without the default names, the 3-D tokens are decayed.
    assert id(model.cls_token) in _ids(groups[0]["params"])

    only_vectors = nn.LayerNorm(4)
    groups = param_groups_weight_decay(only_vectors, 0.05)
    assert len(groups) == 1 and groups[0]["weight_decay"] == 0.0


def test_param_groups_weight_decay_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="weight_decay"):
        param_groups_weight_decay(nn.Linear(2, 2), weight_decay=-1.0)
    with pytest.raises(TypeError, match="no_weight_decay_names"):
        param_groups_weight_decay(nn.Linear(2, 2), no_weight_decay_names="pos_embed")
    with pytest.raises(TypeError, match="model"):
        param_groups_weight_decay("not a module", 0.05)  # type: ignore[arg-type]


def test_scaled_lr_is_linear_in_the_batch_size() -> None:
    assert scaled_lr(1.5e-4, 4096) == pytest.approx(1.5e-4 * 16)
    assert scaled_lr(1.5e-4, 256) == pytest.approx(1.5e-4)
    assert scaled_lr(1e-3, 64) == pytest.approx(2.5e-4)
    with pytest.raises(ValueError, match="effective_batch_size"):
        scaled_lr(1.5e-4, 0)


def test_warmup_cosine_at_key_points() -> None:
    base, low = 1e-3, 1e-5
    schedule = [warmup_cosine(s, 110, 10, base, low) for s in range(111)]
    assert schedule[0] == 0.0  # the official schedule starts at zero
    assert schedule[5] == pytest.approx(base / 2)
    assert schedule[10] == pytest.approx(base)  # end of warmup: the peak
    assert schedule[60] == pytest.approx((base + low) / 2)  # halfway through the cosine
    assert schedule[110] == pytest.approx(low)  # end
    assert warmup_cosine(500, 110, 10, base, low) == pytest.approx(low)  # constant after the end
    # Rising during warmup, falling afterwards.
    assert all(a < b for a, b in itertools.pairwise(schedule[:11]))
    assert all(a > b for a, b in itertools.pairwise(schedule[10:]))
    # A quarter into the cosine: base * (1 + cos(pi / 4)) / 2 above the floor.
    expected = low + (base - low) * 0.5 * (1 + math.cos(math.pi / 4))
    assert warmup_cosine(35, 110, 10, base, low) == pytest.approx(expected)


def test_warmup_cosine_edge_cases_and_errors() -> None:
    assert warmup_cosine(0, 10, 0, 1.0) == pytest.approx(1.0)  # no warmup starts at the peak
    assert warmup_cosine(7, 10, 10, 1.0) == pytest.approx(0.7)
    assert warmup_cosine(10, 10, 10, 1.0) == pytest.approx(1.0)  # warmup covers everything
    with pytest.raises(ValueError, match="warmup_steps"):
        warmup_cosine(0, 10, 11, 1.0)
    with pytest.raises(ValueError, match="total_steps"):
        warmup_cosine(0, 0, 0, 1.0)
    with pytest.raises(ValueError, match="step"):
        warmup_cosine(-1, 10, 0, 1.0)


def test_warmup_cosine_scheduler_follows_the_schedule_per_group() -> None:
    first, second = nn.Parameter(torch.zeros(2)), nn.Parameter(torch.zeros(2))
    optimizer = torch.optim.SGD([{"params": [first], "lr": 1.0}, {"params": [second], "lr": 0.1}])
    scheduler = warmup_cosine_scheduler(optimizer, total_steps=20, warmup_steps=4, min_lr=0.01)
    for step in range(25):
        for group, peak in zip(optimizer.param_groups, (1.0, 0.1), strict=True):
            expected = warmup_cosine(step, 20, 4, peak, 0.01)
            assert group["lr"] == pytest.approx(expected), (step, peak)
        optimizer.step()
        scheduler.step()
    with pytest.raises(ValueError, match="warmup_steps"):
        warmup_cosine_scheduler(optimizer, total_steps=5, warmup_steps=6)
    with pytest.raises(ValueError, match="min_lr"):
        warmup_cosine_scheduler(optimizer, total_steps=5, warmup_steps=1, min_lr=-1.0)


def test_build_adamw_settings() -> None:
    model = nn.Linear(4, 4)
    optimizer = build_adamw(param_groups_weight_decay(model, 0.05), lr=2e-3)
    assert optimizer.defaults["betas"] == (0.9, 0.95)
    assert optimizer.defaults["lr"] == pytest.approx(2e-3)
    # CPU parameters: the automatic choice does not ask for the fused kernel.
    assert not optimizer.defaults["fused"]
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.05, 0.0]
    with pytest.raises(ValueError, match="betas"):
        build_adamw(param_groups_weight_decay(model), lr=1e-3, betas=(0.9, 1.5))
    with pytest.raises(TypeError, match="fused"):
        build_adamw(param_groups_weight_decay(model), lr=1e-3, fused="yes")  # type: ignore[arg-type]


def _train_linear(fused: bool) -> torch.Tensor:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.LayerNorm(8), nn.Linear(8, 1))
    inputs, targets = torch.randn(16, 6), torch.randn(16, 1)
    optimizer = build_adamw(param_groups_weight_decay(model, 0.05), lr=1e-2, fused=fused)
    for _ in range(5):
        optimizer.zero_grad()
        loss = (model(inputs) - targets).pow(2).mean()
        loss.backward()
        optimizer.step()
    return (model(inputs) - targets).pow(2).mean().detach()


def test_fused_and_unfused_adamw_agree_on_cpu() -> None:
    try:
        torch.optim.AdamW([nn.Parameter(torch.zeros(1))], fused=True).step()
    except (RuntimeError, ValueError) as error:
        pytest.skip(f"this torch has no fused AdamW on CPU: {error}")
    torch.testing.assert_close(_train_linear(True), _train_linear(False), rtol=1e-5, atol=1e-6)
