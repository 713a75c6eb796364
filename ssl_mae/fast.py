"""Fast-path helpers for MAE pre-training: mixed precision, fused AdamW, ``torch.compile`` with a
fallback, a GPU-resident data path and the analytic FLOP count used for MFU.

What is on by default and what is opt-in follows one rule: a helper is a default where it does not
change the numbers a run produces (fused AdamW, SDPA attention, gathers instead of scatters, a data
path without host syncs) and opt-in where it does (bf16 autocast on CPU, ``torch.compile``'s
re-ordered float arithmetic). bf16 autocast is the default on CUDA because that is what every MAE
recipe uses there.

A training step on the fast path::

    model = compile_model(mae_vit_base_patch16().to("cuda"))       # falls back to eager
    optimizer = make_adamw(model, lr=1.5e-4 * batch_size / 256)     # fused on CUDA
    loader = GPUResidentLoader(images_uint8, batch_size, BatchedMAEAugment(224), device="cuda")
    dtype = default_autocast_dtype("cuda")                          # bfloat16
    for images in loader:
        with autocast_context("cuda", dtype):
            loss = model(images)[0]
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        # no loss.item() here: reading the loss every step stalls the GPU queue

The numbers these helpers buy are in ``docs/performance.md``.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import torch
from torch import Tensor, nn
from torch.optim import AdamW

from ssl_mae._validation import check_mask_ratio, check_positive_int, to_2tuple
from ssl_mae.data.tensor_dataset import TensorImageDataset
from ssl_mae.masking import num_patches_to_keep
from ssl_mae.optim import build_adamw, param_groups_weight_decay

__all__ = [
    "GPUResidentLoader",
    "MAEFlops",
    "autocast_context",
    "compile_available",
    "compile_model",
    "default_autocast_dtype",
    "device_peak_flops",
    "flops_per_image",
    "mae_flops",
    "make_adamw",
]

ModuleT = TypeVar("ModuleT", bound=nn.Module)

_COMPILE_MODES = (None, "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


# --- precision -----------------------------------------------------------------------------------
def _as_device(device: torch.device | str, name: str = "device") -> torch.device:
    if isinstance(device, torch.device):
        return device
    if isinstance(device, str):
        try:
            return torch.device(device)
        except RuntimeError as error:
            raise ValueError(f"{name} must be a torch device such as 'cuda', got {device!r}") from (
                error
            )
    raise TypeError(f"{name} must be a torch.device or a string, got {type(device).__name__}")


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
    device = _as_device(device)
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
    device = _as_device(device)
    if dtype is None:
        return contextlib.nullcontext()
    if dtype not in (torch.bfloat16, torch.float16):
        raise ValueError(f"dtype must be torch.bfloat16, torch.float16 or None, got {dtype}")
    return torch.autocast(device_type=device.type, dtype=dtype)


# --- optimiser -----------------------------------------------------------------------------------
def make_adamw(
    params: nn.Module | Iterable[Tensor] | Iterable[dict[str, Any]],
    lr: float,
    betas: tuple[float, float] = (0.9, 0.95),
    weight_decay: float = 0.05,
    fused: bool | None = None,
) -> AdamW:
    """AdamW with the MAE recipe, using the fused kernel on CUDA.

    The fused kernel updates every parameter in one launch instead of one (or a few, ``foreach``)
    per tensor; it computes the same update up to float rounding, so it is the default wherever
    it exists (CUDA). On CPU it is opt-in (``fused=True``).

    Args:
        params: A module (split into decayed weight matrices and non-decayed norms, biases, tokens
            and position embeddings, as in MAE), an iterable of parameters (all decayed) or of
            parameter-group dicts (used as they are; groups without ``weight_decay`` get
            ``weight_decay``).
        lr: Peak learning rate.
        betas: Adam coefficients.
        weight_decay: Weight decay of weight matrices, >= 0.
        fused: Fused implementation; None picks it when every parameter is on a CUDA device.

    Returns:
        The optimiser.
    """
    if isinstance(weight_decay, bool) or not isinstance(weight_decay, (int, float)):
        raise TypeError(f"weight_decay must be a number >= 0, got {weight_decay!r}")
    if not weight_decay >= 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay!r}")
    if isinstance(params, nn.Module):
        groups = param_groups_weight_decay(params, float(weight_decay))
    elif isinstance(params, Tensor):
        raise TypeError("params must be a module or an iterable of parameters, got one Tensor")
    else:
        items = list(params)
        if not items:
            raise ValueError("params is empty; pass a module or a non-empty list of parameters")
        if all(isinstance(item, dict) for item in items):
            groups = [
                {"weight_decay": float(weight_decay), **cast(dict[str, Any], item)}
                for item in items
            ]
        elif all(isinstance(item, Tensor) for item in items):
            groups = [{"params": items, "weight_decay": float(weight_decay)}]
        else:
            kinds = sorted({type(item).__name__ for item in items})
            raise TypeError(
                "params must be a module, an iterable of tensors or an iterable of "
                f"parameter-group dicts, got elements of types {kinds}"
            )
    return build_adamw(groups, lr=lr, betas=betas, fused=fused)


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


# --- GPU-resident data path ----------------------------------------------------------------------
class GPUResidentLoader:
    """Keeps a small uint8 image dataset on the device and yields augmented batches.

    For datasets that fit in device memory (Fashion-MNIST: 47 MB, CIFAR-10: 150 MB) the whole
    input pipeline becomes a few kernels per step: a random permutation per epoch, an
    ``index_select`` per batch and the batched crop/flip/normalise of
    :class:`~ssl_mae.transforms.BatchedMAEAugment`. Random numbers come from a generator on the
    device, so nothing waits for the host: no worker processes, no pinned-memory copies, no
    ``.item()``.

    Iterating gives one epoch of ``len(loader)`` batches; every epoch draws a new permutation
    and new augmentations from the loader's generator, so a seeded loader repeats its whole
    sequence of epochs.

    Args:
        images: uint8 tensor (N, C, H, W), or a :class:`~ssl_mae.data.TensorImageDataset`
            (its images are used; labels and transform are ignored).
        batch_size: Images per batch.
        augment: Module mapping a uint8 batch (B, C, H, W) and a ``generator`` keyword to the
            model input, e.g. ``BatchedMAEAugment(input_size=28, normalize=...)``. None yields
            the raw uint8 batches.
        device: Where the images live and batches are produced; default: the images' device.
        shuffle: Draw a new random order every epoch (else the stored order).
        drop_last: Drop the last, smaller batch (keeps shapes static, which ``torch.compile``
            and CUDA graphs like).
        seed: Seed of the loader's generator; None draws one from torch's default generator.
    """

    def __init__(
        self,
        images: Tensor | TensorImageDataset,
        batch_size: int,
        augment: nn.Module | None = None,
        device: torch.device | str | None = None,
        shuffle: bool = True,
        drop_last: bool = True,
        seed: int | None = None,
    ) -> None:
        if isinstance(images, TensorImageDataset):
            images = images.images
        if not isinstance(images, Tensor):
            raise TypeError(
                "images must be a uint8 tensor (N, C, H, W) or a TensorImageDataset, "
                f"got {type(images).__name__}"
            )
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[0] == 0:
            raise ValueError(
                "images must be a non-empty uint8 tensor (N, C, H, W), got dtype "
                f"{images.dtype} and shape {tuple(images.shape)}"
            )
        self.batch_size = check_positive_int(batch_size, "batch_size")
        if drop_last and self.batch_size > images.shape[0]:
            raise ValueError(
                f"batch_size ({batch_size}) is larger than the dataset ({images.shape[0]} images) "
                "and drop_last=True would yield no batch; lower batch_size or set drop_last=False"
            )
        if augment is not None and not callable(augment):
            raise TypeError(f"augment must be a callable module or None, got {augment!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise TypeError(f"seed must be an int or None, got {seed!r}")
        self.device = _as_device(device) if device is not None else images.device
        # One copy at construction; afterwards every batch is produced on the device.
        self.images = images.to(self.device).contiguous()
        self.augment = augment.to(self.device) if isinstance(augment, nn.Module) else augment
        self.shuffle = shuffle
        self.drop_last = drop_last
        if seed is None:
            seed = int(torch.randint(0, 2**62, (1,)).item())
        self.generator = torch.Generator(device=self.device).manual_seed(seed)

    @property
    def num_images(self) -> int:
        """Number of images N in the dataset."""
        return int(self.images.shape[0])

    def __len__(self) -> int:
        if self.drop_last:
            return self.num_images // self.batch_size
        return math.ceil(self.num_images / self.batch_size)

    def __iter__(self) -> Iterator[Tensor]:
        if self.shuffle:
            order = torch.randperm(self.num_images, device=self.device, generator=self.generator)
        else:
            order = torch.arange(self.num_images, device=self.device)
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            batch = self.images.index_select(0, order[start : start + self.batch_size])
            if self.augment is None:
                yield batch
            else:
                yield self.augment(batch, generator=self.generator)


# --- FLOPs and MFU -------------------------------------------------------------------------------
@dataclass(frozen=True)
class MAEFlops:
    """Forward matmul FLOPs of one MAE image, by part (2·m·n·k per matrix product).

    Attributes:
        patch_embed: Patch projection of all L patches.
        encoder: Encoder blocks on the P + K visible tokens (prefix + kept patches).
        decoder_embed: Projection of the encoder output to the decoder width.
        decoder: Decoder blocks on all P + L tokens.
        prediction: Pixel prediction head.
    """

    patch_embed: float
    encoder: float
    decoder_embed: float
    decoder: float
    prediction: float

    @property
    def forward(self) -> float:
        """FLOPs of the forward pass."""
        return self.patch_embed + self.encoder + self.decoder_embed + self.decoder + self.prediction

    @property
    def train(self) -> float:
        """FLOPs of a training step: forward plus a backward of twice the forward (the usual
        3x rule; it slightly over-counts the patch embedding, whose input needs no gradient)."""
        return 3.0 * self.forward


def _block_flops(tokens: int, dim: int, mlp_ratio: float) -> float:
    """Forward FLOPs of one pre-norm transformer block on ``tokens`` tokens of width ``dim``."""
    hidden = int(dim * mlp_ratio)
    qkv = 2 * tokens * dim * 3 * dim
    scores_and_mix = 2 * 2 * tokens * tokens * dim  # Q·K^T and attention·V over all heads
    proj = 2 * tokens * dim * dim
    mlp = 2 * 2 * tokens * dim * hidden
    return float(qkv + scores_and_mix + proj + mlp)


def mae_flops(
    img_size: int | tuple[int, int] = 224,
    patch_size: int = 16,
    embed_dim: int = 768,
    depth: int = 12,
    decoder_embed_dim: int = 512,
    decoder_depth: int = 8,
    mask_ratio: float = 0.75,
    in_chans: int = 3,
    mlp_ratio: float = 4.0,
    num_prefix_tokens: int = 1,
    predict_all: bool = True,
) -> MAEFlops:
    """Analytic matmul FLOPs of one MAE image, split by part.

    Counts the matrix products only (linear layers, attention scores and mixing, patch
    projection); norms, activations and softmax add well under 1 %. The encoder runs on the
    prefix tokens plus the ``int(L * (1 - mask_ratio))`` kept patches, the decoder on all
    ``P + L`` tokens. For ViT-B/16 at 224 px with an 8 x 512 decoder the training step costs
    58.7 GFLOP per image (``mae_flops().train``).

    Args:
        img_size: Image size, int or (height, width).
        patch_size: Patch size p.
        embed_dim: Encoder width.
        depth: Encoder blocks.
        decoder_embed_dim: Decoder width.
        decoder_depth: Decoder blocks.
        mask_ratio: Fraction of masked patches, in [0, 1).
        in_chans: Image channels C.
        mlp_ratio: MLP hidden size ratio of all blocks.
        num_prefix_tokens: Class/register tokens in front of the patches.
        predict_all: The prediction head runs on all L patches (official MAE, ``ssl_mae.MAE``);
            False: only on the masked ones (``MAEDecoder.predict_masked``, Lightly).

    Returns:
        :class:`MAEFlops`; ``.train`` is the training-step count used for MFU.
    """
    height, width = to_2tuple(img_size, "img_size")
    patch_size = check_positive_int(patch_size, "patch_size")
    if height % patch_size or width % patch_size:
        raise ValueError(
            f"img_size must be a multiple of patch_size={patch_size}, got {height}x{width}"
        )
    for name, value in (
        ("embed_dim", embed_dim),
        ("depth", depth),
        ("decoder_embed_dim", decoder_embed_dim),
        ("decoder_depth", decoder_depth),
        ("in_chans", in_chans),
    ):
        check_positive_int(value, name)
    mask_ratio = check_mask_ratio(mask_ratio)
    if isinstance(num_prefix_tokens, bool) or not isinstance(num_prefix_tokens, int):
        raise TypeError(f"num_prefix_tokens must be an int >= 0, got {num_prefix_tokens!r}")
    if num_prefix_tokens < 0:
        raise ValueError(f"num_prefix_tokens must be >= 0, got {num_prefix_tokens}")
    if not mlp_ratio > 0:
        raise ValueError(f"mlp_ratio must be > 0, got {mlp_ratio!r}")

    num_patches = (height // patch_size) * (width // patch_size)
    num_keep = num_patches_to_keep(num_patches, mask_ratio)
    pixels = patch_size * patch_size * in_chans
    encoder_tokens = num_prefix_tokens + num_keep
    decoder_tokens = num_prefix_tokens + num_patches
    predicted = num_patches if predict_all else num_patches - num_keep
    return MAEFlops(
        patch_embed=float(2 * num_patches * pixels * embed_dim),
        encoder=depth * _block_flops(encoder_tokens, embed_dim, mlp_ratio),
        decoder_embed=float(2 * encoder_tokens * embed_dim * decoder_embed_dim),
        decoder=decoder_depth * _block_flops(decoder_tokens, decoder_embed_dim, mlp_ratio),
        prediction=float(2 * predicted * decoder_embed_dim * pixels),
    )


def flops_per_image(training: bool = True, **config: Any) -> float:
    """Analytic FLOPs per image of an MAE step: :func:`mae_flops` summed.

    Args:
        training: Training step (forward + backward, 3x the forward) or forward only.
        **config: Arguments of :func:`mae_flops` (``img_size``, ``patch_size``, ``embed_dim``,
            ``depth``, ``decoder_embed_dim``, ``decoder_depth``, ``mask_ratio``, ...).

    Returns:
        FLOPs per image, e.g. 58.7e9 for ViT-B/16 at 224 px with an 8 x 512 decoder.
    """
    flops = mae_flops(**config)
    return flops.train if training else flops.forward


# Dense (no sparsity) peak tensor-core throughput in FLOP/s, from the vendors' data sheets,
# matched against torch.cuda.get_device_name(); first match wins.
_PEAK_FLOPS_16BIT: tuple[tuple[str, float], ...] = (
    ("H100 PCIe", 756e12),
    ("H100", 989e12),
    ("H200", 989e12),
    ("GH200", 989e12),
    ("B200", 2250e12),
    ("A100", 312e12),
    ("A800", 312e12),
    ("L40S", 362e12),
    ("L40", 181e12),
    ("L4", 121e12),
    ("A10G", 70e12),
    ("A10", 125e12),
    ("RTX 4090", 165e12),
    ("RTX 3090", 71e12),
    ("V100", 125e12),
    ("T4", 65e12),
)


def device_peak_flops(device: torch.device | str, dtype: torch.dtype | None = None) -> float | None:
    """Peak dense FLOP/s of a known CUDA GPU for 16-bit (bf16/fp16) matmuls, for MFU.

    MFU = achieved FLOP/s / this peak; by convention the 16-bit peak is used for mixed-precision
    training. For float32 (``dtype`` None or float32) the TF32 peak is taken as half of it.

    Args:
        device: A CUDA device; other devices give None.
        dtype: The autocast dtype of the run (None for float32).

    Returns:
        FLOP/s, or None for CPUs and GPUs not in the table.
    """
    device = _as_device(device)
    if device.type != "cuda" or not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name(device)
    for pattern, peak in _PEAK_FLOPS_16BIT:
        if pattern in name:
            return peak if dtype in (torch.bfloat16, torch.float16) else peak / 2
    return None
