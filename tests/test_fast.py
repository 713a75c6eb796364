"""Tests of the fast-path helpers: precision, fused AdamW, compile with fallback, the GPU-resident
loader and the analytic FLOP count."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from ssl_mae.data import GPUResidentLoader, TensorImageDataset
from ssl_mae.flops import device_peak_flops, flops_per_image, mae_flops
from ssl_mae.models import MAE, mae_vit_micro_patch4
from ssl_mae.training.optim import make_adamw
from ssl_mae.training.precision import (
    autocast_context,
    compile_available,
    compile_model,
    default_autocast_dtype,
)
from ssl_mae.transforms import BatchedMAEAugment

# Float32 tolerance for "the same loss": fused/unfused AdamW and compiled/eager graphs reorder
# float operations, which changes results by a few ulps per step, far below 1e-5 relative.
LOSS_RTOL = 1e-5


def _micro(seed: int = 0) -> MAE:
    torch.manual_seed(seed)
    return mae_vit_micro_patch4(
        img_size=16, embed_dim=32, depth=2, num_heads=2,
        decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=2,
    )  # fmt: skip


def _batch(seed: int = 1) -> tuple[Tensor, Tensor]:
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(4, 1, 16, 16, generator=generator)
    noise = torch.rand(4, 16, generator=generator)
    return images, noise


# --- precision -----------------------------------------------------------------------------------
def test_default_autocast_dtype_is_none_on_cpu() -> None:
    assert default_autocast_dtype("cpu") is None
    assert default_autocast_dtype(torch.device("cpu")) is None


@pytest.mark.parametrize(("bf16", "expected"), [(True, torch.bfloat16), (False, None)])
def test_default_autocast_dtype_on_cuda(
    monkeypatch: pytest.MonkeyPatch, bf16: bool, expected: torch.dtype | None
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: bf16)
    assert default_autocast_dtype("cuda:0") is expected


def test_default_autocast_dtype_rejects_bad_device() -> None:
    with pytest.raises(TypeError, match="device"):
        default_autocast_dtype(3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="device"):
        default_autocast_dtype("not-a-device")


def test_autocast_context() -> None:
    a, b = torch.randn(4, 4), torch.randn(4, 4)
    with autocast_context("cpu", None):
        assert (a @ b).dtype == torch.float32
    with autocast_context("cpu", torch.bfloat16):
        assert (a @ b).dtype == torch.bfloat16
    with pytest.raises(ValueError, match="dtype"):
        autocast_context("cpu", torch.float64)


# --- AdamW ---------------------------------------------------------------------------------------
def test_make_adamw_groups_and_cpu_default() -> None:
    model = _micro()
    optimizer = make_adamw(model, lr=1e-3, weight_decay=0.1)
    assert not optimizer.defaults["fused"]  # fused is only the default on CUDA
    decays = sorted(group["weight_decay"] for group in optimizer.param_groups)
    assert decays == [0.0, 0.1]
    grouped = {id(p) for group in optimizer.param_groups for p in group["params"]}
    # Frozen sin-cos position embeddings are left out, every trainable parameter is in.
    assert grouped == {id(p) for p in model.parameters() if p.requires_grad}
    assert id(model.encoder.vit.pos_embed) not in grouped
    assert optimizer.defaults["betas"] == (0.9, 0.95)


def test_make_adamw_accepts_parameters_and_groups() -> None:
    layer = nn.Linear(3, 2)
    optimizer = make_adamw(layer.parameters(), lr=0.1, weight_decay=0.2)
    assert optimizer.param_groups[0]["weight_decay"] == 0.2
    groups = [{"params": [layer.weight]}, {"params": [layer.bias], "weight_decay": 0.0}]
    optimizer = make_adamw(groups, lr=0.1, weight_decay=0.3)
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.3, 0.0]


@pytest.mark.parametrize(
    ("params", "error", "match"),
    [
        ([], ValueError, "empty"),
        (torch.zeros(2, requires_grad=True), TypeError, "one Tensor"),
        ([1, 2], TypeError, "params must be"),
    ],
)
def test_make_adamw_rejects_bad_params(params: object, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        make_adamw(params, lr=0.1)  # type: ignore[arg-type]


def test_make_adamw_rejects_bad_weight_decay() -> None:
    with pytest.raises(ValueError, match="weight_decay"):
        make_adamw(nn.Linear(2, 2), lr=0.1, weight_decay=-1.0)


def _train_losses(fused: bool, steps: int = 4) -> list[float]:
    model = _micro()
    optimizer = make_adamw(model, lr=1e-2, fused=fused)
    losses = []
    for step in range(steps):
        images, noise = _batch(step)
        loss = model(images, noise=noise)[0]
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
    return losses


def test_fused_and_unfused_adamw_give_the_same_losses() -> None:
    fused, unfused = _train_losses(True), _train_losses(False)
    assert fused[0] == unfused[0]  # same model and batch before any update
    assert fused[-1] != fused[0]  # the optimiser did change the model
    torch.testing.assert_close(fused, unfused, rtol=LOSS_RTOL, atol=0.0)


# --- torch.compile -------------------------------------------------------------------------------
def test_compile_available_here() -> None:
    assert compile_available() is True


def _loss_and_grads(model: MAE) -> tuple[Tensor, dict[str, Tensor]]:
    images, noise = _batch()
    loss = model(images, noise=noise)[0]
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return loss.detach(), grads


def test_compiled_model_matches_eager() -> None:
    """Dynamo + AOTAutograd capture (the ``aot_eager`` backend, no C++ code generation, so this
    runs in seconds) gives the eager loss and gradients; the inductor test is marked slow."""
    eager_model = _micro()
    compiled_model = compile_model(_micro(), backend="aot_eager")
    assert type(compiled_model) is MAE  # compiled in place: class and keys unchanged
    assert list(compiled_model.state_dict()) == list(eager_model.state_dict())
    eager_loss, eager_grads = _loss_and_grads(eager_model)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a fallback would warn
        compiled_loss, compiled_grads = _loss_and_grads(compiled_model)
    assert compiled_model._compiled_call_impl is not None  # still compiled: no fallback
    torch.testing.assert_close(compiled_loss, eager_loss, rtol=LOSS_RTOL, atol=0.0)
    assert compiled_grads.keys() == eager_grads.keys()
    for name, grad in eager_grads.items():
        torch.testing.assert_close(compiled_grads[name], grad, rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.slow
def test_inductor_compiled_model_matches_eager() -> None:
    """The real backend (C++ code generation on CPU; takes minutes on a small shared CPU). If
    inductor cannot compile here, the fallback must engage and still give the eager loss."""
    eager_loss, _ = _loss_and_grads(_micro())
    model = compile_model(_micro())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        compiled_loss, _ = _loss_and_grads(model)
    fell_back = any("running it eagerly" in str(w.message) for w in caught)
    assert fell_back == (model._compiled_call_impl is None)
    torch.testing.assert_close(compiled_loss, eager_loss, rtol=LOSS_RTOL, atol=0.0)


def _broken_backend(graph_module: torch.fx.GraphModule, example_inputs: list[Tensor]) -> None:
    raise RuntimeError("no C++ compiler in this environment")


def test_compile_model_falls_back_to_eager_when_compilation_fails() -> None:
    eager_loss, _ = _loss_and_grads(_micro())
    model = compile_model(_micro(), backend=_broken_backend)
    with pytest.warns(RuntimeWarning, match="running it eagerly"):
        loss, grads = _loss_and_grads(model)
    torch.testing.assert_close(loss, eager_loss, rtol=0.0, atol=0.0)
    assert grads  # the backward pass ran eagerly too
    assert model._compiled_call_impl is None
    assert "no C++ compiler" in model.compile_fallback_reason
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # later calls are plain eager calls: no new warning
        _loss_and_grads(model)


class _Checked(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1] != 3:
            raise ValueError(f"x must have 3 features, got {x.shape[-1]}")
        return x * 2


def test_compile_model_passes_user_errors_through_and_stays_compiled() -> None:
    module = compile_model(_Checked(), backend="eager")
    torch.testing.assert_close(module(torch.ones(2, 3)), torch.full((2, 3), 2.0))
    with pytest.raises(ValueError, match="3 features, got 4"):
        module(torch.ones(2, 4))
    assert module._compiled_call_impl is not None


def test_compile_model_without_torch_compile(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(torch, "compile")
    module = nn.Linear(2, 2)
    with pytest.warns(RuntimeWarning, match="not available"):
        assert compile_model(module) is module
    assert module._compiled_call_impl is None


def test_compile_model_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="mode must be one of"):
        compile_model(nn.Linear(2, 2), mode="fastest")
    with pytest.raises(TypeError, match="module must be"):
        compile_model(lambda x: x)  # type: ignore[type-var]


# --- GPU-resident loader -------------------------------------------------------------------------
def _numbered_images(count: int, channels: int = 1, size: int = 4) -> Tensor:
    """Image i is filled with the value i, so batches tell which images they hold."""
    values = torch.arange(count, dtype=torch.uint8).view(count, 1, 1, 1)
    return values.expand(count, channels, size, size).contiguous()


def _ids(batch: Tensor) -> list[int]:
    return [int(v) for v in batch[:, 0, 0, 0]]


def test_loader_yields_every_image_once_per_epoch() -> None:
    loader = GPUResidentLoader(_numbered_images(10), 4, drop_last=False, seed=0)
    assert len(loader) == 3
    batches = list(loader)
    assert [b.shape[0] for b in batches] == [4, 4, 2]
    assert all(b.dtype == torch.uint8 for b in batches)
    ids = [i for batch in batches for i in _ids(batch)]
    assert sorted(ids) == list(range(10))
    assert ids != list(range(10))  # shuffled


def test_loader_drop_last_and_order() -> None:
    loader = GPUResidentLoader(_numbered_images(10), 4, shuffle=False)
    assert len(loader) == 2
    assert [_ids(b) for b in loader] == [[0, 1, 2, 3], [4, 5, 6, 7]]


def test_loader_is_reproducible_and_reshuffles_each_epoch() -> None:
    first = GPUResidentLoader(_numbered_images(50), 10, seed=3)
    second = GPUResidentLoader(_numbered_images(50), 10, seed=3)
    epoch_a = [_ids(b) for b in first]
    assert epoch_a == [_ids(b) for b in second]
    assert epoch_a != [_ids(b) for b in first]  # the next epoch draws a new order


def test_loader_augments_batches() -> None:
    images = torch.full((6, 3, 12, 12), 255, dtype=torch.uint8)
    normalize = {"mean": [0.5, 0.25, 0.0], "std": [0.5, 0.25, 2.0]}
    augment = BatchedMAEAugment(input_size=8, normalize=normalize)
    dataset = TensorImageDataset(images)  # a dataset works as well as a tensor
    loader = GPUResidentLoader(dataset, 3, augment=augment, seed=0)
    batches = list(loader)
    assert len(batches) == 2
    for batch in batches:
        assert batch.shape == (3, 3, 8, 8) and batch.dtype == torch.float32
        # A white image stays white under any crop and flip: (1 - mean) / std per channel.
        expected = torch.tensor([1.0, 3.0, 0.5]).view(1, 3, 1, 1).expand_as(batch)
        torch.testing.assert_close(batch, expected)


def test_loader_draws_augmentations_from_its_generator() -> None:
    images = torch.randint(0, 256, (8, 1, 16, 16), dtype=torch.uint8)
    augment = BatchedMAEAugment(input_size=8, normalize=None)
    run_a = list(GPUResidentLoader(images, 4, augment=augment, seed=7))
    torch.manual_seed(123)  # the global generator plays no part
    run_b = list(GPUResidentLoader(images, 4, augment=augment, seed=7))
    for a, b in zip(run_a, run_b, strict=True):
        torch.testing.assert_close(a, b)
    run_c = list(GPUResidentLoader(images, 4, augment=augment, seed=8))
    assert not torch.equal(run_a[0], run_c[0])


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"images": torch.zeros(4, 1, 2, 2)}, ValueError, "uint8"),
        ({"images": torch.zeros(4, 2, 2, dtype=torch.uint8)}, ValueError, r"\(N, C, H, W\)"),
        ({"images": [1, 2]}, TypeError, "images must be"),
        ({"batch_size": 0}, ValueError, "batch_size"),
        ({"batch_size": 5}, ValueError, "larger than the dataset"),
        ({"seed": 1.5}, TypeError, "seed"),
        ({"augment": 3}, TypeError, "augment"),
    ],
)
def test_loader_rejects_bad_arguments(kwargs: dict[str, object], error: type, match: str) -> None:
    arguments: dict[str, object] = {"images": _numbered_images(4), "batch_size": 2, **kwargs}
    with pytest.raises(error, match=match):
        GPUResidentLoader(**arguments)  # type: ignore[arg-type]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_loader_never_syncs_with_the_host_on_cuda() -> None:
    images = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8)
    loader = GPUResidentLoader(images, 16, BatchedMAEAugment(24), device="cuda", seed=0)
    torch.cuda.set_sync_debug_mode("error")
    try:
        batches = list(loader)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert len(batches) == 4 and batches[0].is_cuda


# --- FLOPs ---------------------------------------------------------------------------------------
def test_flops_of_vit_base_match_the_published_figure() -> None:
    # MAE ViT-B/16, 224 px, 8 x 512 decoder, 75 % masking: 58.7 GFLOP per image per training
    # step (the figure quoted in the project's speed issue).
    assert round(flops_per_image() / 1e9, 1) == 58.7
    assert flops_per_image(training=False) == pytest.approx(flops_per_image() / 3)


def test_flop_parts_follow_the_token_counts() -> None:
    flops = mae_flops(img_size=32, patch_size=4, embed_dim=64, depth=1, decoder_embed_dim=32,
                      decoder_depth=1, in_chans=3, mask_ratio=0.75)  # fmt: skip
    # 64 patches, 16 kept; encoder on 17 tokens, decoder on 65 tokens.
    assert flops.patch_embed == 2 * 64 * 48 * 64
    assert flops.encoder == 24 * 17 * 64**2 + 4 * 17**2 * 64
    assert flops.decoder == 24 * 65 * 32**2 + 4 * 65**2 * 32
    assert flops.decoder_embed == 2 * 17 * 64 * 32
    assert flops.prediction == 2 * 64 * 32 * 48
    masked_only = mae_flops(img_size=32, patch_size=4, embed_dim=64, depth=1,
                            decoder_embed_dim=32, decoder_depth=1, predict_all=False)  # fmt: skip
    assert masked_only.prediction == 2 * 48 * 32 * 48
    assert flops.train == 3 * flops.forward


def test_flops_agree_with_torch_flop_counter() -> None:
    model = _micro()
    images, noise = _batch()
    # The math attention backend spells attention out as bmm + softmax, which every torch
    # version's counter sees; the fused CPU kernel is not counted from torch 2.14 on.
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        loss = model(images, noise=noise)[0]
        loss.backward()
    counts = counter.get_flop_counts()["Global"]
    assert counts.get(torch.ops.aten.bmm, 0) > 0, "attention products were not counted"
    measured = counter.get_total_flops() / images.shape[0]
    analytic = flops_per_image(img_size=16, patch_size=4, embed_dim=32, depth=2,
                               decoder_embed_dim=32, decoder_depth=1, in_chans=1)  # fmt: skip
    # The 3x rule charges the patch projection's backward 2x; the images need no gradient, so
    # the counter charges it 1x: the two agree within 1 %.
    assert measured == pytest.approx(analytic, rel=0.01)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"img_size": 225}, ValueError, "multiple of patch_size"),
        ({"mask_ratio": 1.0}, ValueError, "mask_ratio"),
        ({"depth": 0}, ValueError, "depth"),
        ({"num_prefix_tokens": -1}, ValueError, "num_prefix_tokens"),
        ({"mlp_ratio": 0.0}, ValueError, "mlp_ratio"),
    ],
)
def test_mae_flops_rejects_bad_arguments(
    kwargs: dict[str, object], error: type, match: str
) -> None:
    with pytest.raises(error, match=match):
        mae_flops(**kwargs)  # type: ignore[arg-type]


def test_device_peak_flops(monkeypatch: pytest.MonkeyPatch) -> None:
    assert device_peak_flops("cpu") is None
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    names = iter(["NVIDIA H100 80GB HBM3", "NVIDIA H100 80GB HBM3", "NVIDIA H100 PCIe", "Foo"])
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *args: next(names))
    assert device_peak_flops("cuda", torch.bfloat16) == 989e12
    assert device_peak_flops("cuda", None) == 989e12 / 2
    assert device_peak_flops("cuda", torch.bfloat16) == 756e12
    assert device_peak_flops("cuda", torch.bfloat16) is None
