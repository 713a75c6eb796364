"""Mixed precision and ``torch.compile`` for training, with safe defaults per device.

A helper is a default where it does not change the numbers a run produces and opt-in where it
does (bf16 autocast on CPU, ``torch.compile``'s re-ordered float arithmetic). bf16 autocast is the
default on CUDA because that is what every MAE recipe uses there. The numbers these helpers buy
are in ``docs/performance.md``.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

import torch
from torch import nn

from ssl_mae._validation import as_device

ModuleT = TypeVar("ModuleT", bound=nn.Module)

__all__ = ["autocast_context", "compile_available", "compile_model", "default_autocast_dtype"]


_COMPILE_MODES = (None, "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


# --- precision -----------------------------------------------------------------------------------
def default_autocast_dtype(device: torch.device | str) -> torch.dtype | None:
    """The autocast dtype the fast path uses by default on ``device``.

    bfloat16 on CUDA devices that support it (Ampere and newer): it has float32's exponent range,
    so MAE trains without a gradient scaler and gives the same curves as float32. None (float32)
    everywhere else: on CPUs bf16 changes the numbers without a speed-up on most machines, and
    float16 on older GPUs needs a ``GradScaler``, so both stay opt-in.

    Args:
        device: The training device, e.g. ``"cuda"``, ``"cuda:1"`` or ``"cpu"``.

    Returns:
        ``torch.bfloat16`` or None.
    """
    device = as_device(device)
    if device.type == "cuda" and torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return None


def autocast_context(
    device: torch.device | str, dtype: torch.dtype | None
) -> contextlib.AbstractContextManager[Any]:
    """``torch.autocast`` for ``device`` with ``dtype``, or a no-op context when dtype is None.

    Args:
        device: The device the forward pass runs on.
        dtype: ``torch.bfloat16``, ``torch.float16`` or None for float32.
    """
    device = as_device(device)
    if dtype is None:
        return contextlib.nullcontext()
    if dtype not in (torch.bfloat16, torch.float16):
        raise ValueError(f"dtype must be torch.bfloat16, torch.float16 or None, got {dtype}")
    return torch.autocast(device_type=device.type, dtype=dtype)


# --- torch.compile -------------------------------------------------------------------------------
def compile_available() -> bool:
    """Whether ``torch.compile`` can run in this interpreter (torch >= 2.0 and a Python version its
    dynamo supports). A C++ compiler (CPU) or Triton (GPU) is still needed at compile time;
    :func:`compile_model` handles their absence."""
    if not hasattr(torch, "compile"):
        return False
    try:
        import torch._dynamo as dynamo

        is_supported: Callable[[], bool] | None = getattr(dynamo, "is_dynamo_supported", None)
        return True if is_supported is None else bool(is_supported())
    except Exception:  # a broken or partial torch install: treat as unavailable
        return False


def compile_model(
    module: ModuleT,
    mode: str | None = None,
    *,
    fullgraph: bool = False,
    dynamic: bool | None = None,
    backend: str | Callable[..., Any] = "inductor",
) -> ModuleT:
    """Compiles ``module`` in place with ``torch.compile``, falling back to eager execution.

    The module keeps its class, attributes and state-dict keys (``nn.Module.compile`` is used,
    not the ``_orig_mod`` wrapper), so checkpoints and methods such as ``forward_encoder`` work as
    before; only calls through ``module(...)`` run the compiled code.

    Fallback: when ``torch.compile`` is unavailable the module is returned unchanged with a
    warning. When compiling fails on the first call (no C++ compiler, no Triton, an unsupported
    operator), the call is re-run eagerly; if that succeeds the module stays eager from then on
    and a warning says why. Errors that eager execution raises too (e.g. a wrong input shape)
    propagate unchanged, and the module stays compiled.

    Compilation re-orders floating point arithmetic (e.g. fuses a LayerNorm with the following
    add), so losses agree with eager mode to about 1e-6 relative in float32, not bit for bit.
    Compile time is large (tens of seconds on a GPU, minutes on a small CPU) and happens on the
    first call; exclude it from timings.

    Args:
        module: The module to compile.
        mode: ``torch.compile`` mode: None/``"default"``, ``"reduce-overhead"`` (CUDA graphs),
            ``"max-autotune"`` or ``"max-autotune-no-cudagraphs"``.
        fullgraph: Fail on graph breaks instead of splitting the graph.
        dynamic: Dynamic-shape tracing (None lets torch decide).
        backend: ``torch.compile`` backend; ``"aot_eager"`` traces without generating code
            (useful to check numerics quickly).

    Returns:
        ``module`` itself.
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
    if mode not in _COMPILE_MODES:
        raise ValueError(f"mode must be one of {list(_COMPILE_MODES)}, got {mode!r}")
    if not compile_available():
        warnings.warn(
            f"torch.compile is not available (torch {torch.__version__}); "
            f"{type(module).__name__} runs eagerly",
            RuntimeWarning,
            stacklevel=2,
        )
        return module
    module.compile(mode=mode, fullgraph=fullgraph, dynamic=dynamic, backend=backend)
    compiled = getattr(module, "_compiled_call_impl", None)
    if compiled is None:  # a torch whose nn.Module.compile works differently: no fallback hook
        return module
    name = type(module).__name__
    eager_call: Callable[..., Any] = module._call_impl

    def call_with_fallback(*args: Any, **kwargs: Any) -> Any:
        try:
            return compiled(*args, **kwargs)
        except Exception as compile_error:
            # Tell a compiler failure from a user error: the latter fails eagerly too, and then
            # the eager error (the readable one) is raised.
            try:
                output = eager_call(*args, **kwargs)
            except Exception as eager_error:
                raise eager_error from None
            module._compiled_call_impl = None
            # Kept on the module so a training script can log why it runs eagerly.
            object.__setattr__(
                module,
                "compile_fallback_reason",
                f"{type(compile_error).__name__}: {compile_error}",
            )
            warnings.warn(
                f"torch.compile failed for {name}; running it eagerly from now on "
                f"({type(compile_error).__name__}: {str(compile_error).splitlines()[0][:300]})",
                RuntimeWarning,
                stacklevel=2,
            )
            return output

    module._compiled_call_impl = call_with_fallback
    return module
