"""The fast path, proven on the CPU: compiled training steps of every preset family have no
graph breaks and compute the eager numbers, and a training step never synchronises the host."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch._dynamo as dynamo
from host_sync import HOST_READS
from torch import Tensor
from torch.overrides import TorchFunctionMode

from ssl_mae.core import MaskedAutoencoder
from ssl_mae.models.presets import build_model

# One preset per family (and per decoder/masking/target variant) at its smallest size.
FAMILIES = {
    "mae_vit": ("mae_vit_micro_patch4", {"depth": 2}),
    "mae_hivit": ("mae_hivit_nano", {"in_chans": 1}),
    "simple_mae_timm": ("simple_mae_vit_micro", {"depth": 2}),
    "simple_mae_torchvision": ("simple_mae_torchvision_vit_tiny", {"depth": 1}),
    "crossmae": ("mae_crossmae_micro_patch7", {}),
    "pixio": ("mae_pixio_micro_patch4", {}),
    "hog": ("mae_hog_micro_patch7", {}),
}


def _core(family: str) -> MaskedAutoencoder:
    torch.manual_seed(0)
    name, overrides = FAMILIES[family]
    core = build_model(name, **overrides).masked_autoencoder
    assert isinstance(core, MaskedAutoencoder)
    return core


def _images(core: MaskedAutoencoder, batch: int = 4, device: str = "cpu") -> Tensor:
    generator = torch.Generator().manual_seed(1)
    images = torch.randn(batch, core.encoder.in_chans, *core.image_size, generator=generator)
    return images.to(device)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_compiled_step_has_no_graph_breaks_and_matches_eager(family: str) -> None:
    core = _core(family)
    images = _images(core)
    noise = torch.rand(images.shape[0], core.encoder.grid_size[0] * core.encoder.grid_size[1])

    def step(x: Tensor, n: Tensor) -> Tensor:
        return core(x, noise=n).loss

    dynamo.reset()
    explanation = dynamo.explain(step)(images, noise)
    assert explanation.graph_break_count == 0, [str(r.reason) for r in explanation.break_reasons]
    assert explanation.graph_count == 1

    eager_loss = step(images, noise)
    eager_loss.backward()
    eager_grads = [p.grad.clone() for p in core.parameters() if p.grad is not None]
    core.zero_grad(set_to_none=True)
    dynamo.reset()
    # aot_eager traces forward and backward like inductor but runs them eagerly: the graphs are
    # the compiled ones, without minutes of C++ code generation on this CPU.
    compiled = torch.compile(step, backend="aot_eager", fullgraph=True)
    compiled_loss = compiled(images, noise)
    compiled_loss.backward()
    compiled_grads = [p.grad for p in core.parameters() if p.grad is not None]
    torch.testing.assert_close(compiled_loss, eager_loss, rtol=1e-5, atol=1e-6)
    assert len(compiled_grads) == len(eager_grads)
    for compiled_grad, eager_grad in zip(compiled_grads, eager_grads, strict=True):
        torch.testing.assert_close(compiled_grad, eager_grad, rtol=1e-4, atol=1e-6)


# Tensor operations that copy a value to the host: on a GPU each waits for the queue to drain.
_SYNCING: dict[Callable[..., Any], str] = {
    **HOST_READS,
    Tensor.any: "any",  # only a sync when followed by bool(); recorded to keep the loop honest
}


class _SyncRecorder(TorchFunctionMode):
    """Records every host-syncing operation on a tensor that is not on the CPU (reading a
    device tensor's value, or copying it to the CPU). CPU-side bookkeeping, such as the step
    counters AdamW keeps on the CPU, does not wait for the device and is not recorded."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        on_device = bool(args) and isinstance(args[0], Tensor) and args[0].device.type != "cpu"
        name = _SYNCING.get(func)
        if on_device and name is not None:
            self.calls.append(name)
        elif on_device and func is Tensor.to and "cpu" in repr((args[1:], kwargs)):
            self.calls.append("to(cpu)")
        return func(*args, **kwargs)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_training_steps_never_synchronise_the_host(family: str) -> None:
    """Three full steps (masking, forward, loss, backward, AdamW) run on the ``meta`` device,
    where any value read by the host raises, with every syncing operation recorded."""
    core = _core(family).to("meta")
    optimizer = torch.optim.AdamW(core.parameters(), lr=1e-3, foreach=True)
    recorder = _SyncRecorder()
    with recorder:
        for _ in range(3):
            out = core(_images(core, device="meta"))  # masks drawn on the device
            out.loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
    assert out.loss.device.type == "meta"
    assert recorder.calls == []


def test_the_sync_recorder_sees_a_sync() -> None:
    # The check above must be able to fail: reads of a device tensor are recorded (on meta they
    # also raise), CPU bookkeeping is not.
    recorder = _SyncRecorder()
    with recorder:
        torch.ones(2).sum().item()
        value = torch.ones(2, device="meta").sum()
        with pytest.raises((RuntimeError, NotImplementedError)):
            value.item()
        with pytest.raises((RuntimeError, NotImplementedError)):
            bool(value > 1)
    assert recorder.calls == ["item", "__bool__"]
