"""Training-step speed of the same MAE in ssl_mae, Lightly, Hugging Face and vit-pytorch.

Every implementation gets the same encoder, decoder, mask ratio, batch and precision, and is
timed on full training steps (masking, encoder, decoder, loss, backward, AdamW step). The
implementations are interleaved in one process: every repeat runs each of them in turn (the
order rotates between repeats), so a noisy or shared machine slows them alike; the report gives
the median and the spread over repeats and, per repeat, the throughput ratio to Lightly.

Rows:
    ssl_mae           ``ssl_mae.MAE`` with the default fast path (``make_adamw``: fused on CUDA;
                      bf16 autocast on CUDA like every row; no host syncs in the step)
    ssl_mae+compile   the same plus ``compile_model`` (default on CUDA, ``--compile on`` on CPU)
    ssl_mae+fast      (``--impls`` only) what ``ssl-mae pretrain`` runs on CUDA by default: bf16
                      autocast, fused AdamW and ``torch.compile`` (compiled unless --compile off),
                      whatever the run's --precision
    ssl_mae-fp32      (``--impls`` only) eager float32 with for-each AdamW: the CPU defaults
    ssl_mae+partial   ``ssl_mae`` decoding a quarter of the masked tokens (``decode_ratio=0.25``
                      of the core: the decoder sees the visible tokens and those queries only)
    lightly           Lightly's own MAE wiring (MaskedVisionTransformerTIMM,
                      MaskedVisionTransformerDecoderTIMM, set_at_index, MSELoss) as in its examples
    hf                transformers ``ViTMAEForPreTraining`` (SDPA attention)
    vit-pytorch       ``vit_pytorch.mae.MAE`` over ``vit_pytorch.ViT`` (pool="mean": its MAE
                      rejects the class-token ViT in this version); learned decoder positions,
                      no qkv bias, manual (non-SDPA) attention

Usage:
    python benchmarks/speed.py                                  # CPU: ViT-Ti/4 32px, ViT-B/16
    python benchmarks/speed.py --device cuda                    # + ViT-L/16, bf16, compile
    python benchmarks/speed.py --configs tiny --repeats 2 --json out.json

Memory: on CUDA the peak of ``torch.cuda.max_memory_allocated`` during the implementation's
steps, counted from before them, plus its own parameters and optimiser state (so the models that
share the process do not count against each other). On CPU the same with the resident-set peak
(``VmHWM`` after resetting it through ``/proc/self/clear_refs``, after ``malloc_trim``) in place
of the allocator peak: coarser, but comparable between rows.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim import AdamW, Optimizer

from ssl_mae.flops import device_peak_flops, flops_per_image
from ssl_mae.models.mae import MAE
from ssl_mae.training.optim import make_adamw
from ssl_mae.training.precision import autocast_context, compile_model, default_autocast_dtype

LR, BETAS, WEIGHT_DECAY, MASK_RATIO = 1.5e-4, (0.9, 0.95), 0.05, 0.75

# Architectures: encoder width/depth/heads, decoder width/depth/heads (MAE recipe, MLP ratio 4).
CONFIGS: dict[str, dict[str, Any]] = {
    "tiny": dict(
        img_size=16, patch_size=4, in_chans=3, embed_dim=32, depth=2, num_heads=2,
        decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=2,
    ),
    "vit-ti4-32": dict(
        img_size=32, patch_size=4, in_chans=3, embed_dim=192, depth=12, num_heads=3,
        decoder_embed_dim=128, decoder_depth=4, decoder_num_heads=4,
    ),
    "vit-b16-224": dict(
        img_size=224, patch_size=16, in_chans=3, embed_dim=768, depth=12, num_heads=12,
        decoder_embed_dim=512, decoder_depth=8, decoder_num_heads=16,
    ),
    "vit-l16-224": dict(
        img_size=224, patch_size=16, in_chans=3, embed_dim=1024, depth=24, num_heads=16,
        decoder_embed_dim=512, decoder_depth=8, decoder_num_heads=16,
    ),
}  # fmt: skip
BATCH_SIZES = {
    "cpu": {"tiny": 4, "vit-ti4-32": 64, "vit-b16-224": 8, "vit-l16-224": 2},
    "cuda": {"tiny": 64, "vit-ti4-32": 256, "vit-b16-224": 256, "vit-l16-224": 128},
}
STEPS_PER_REPEAT = {
    "cpu": {"tiny": 2, "vit-ti4-32": 3, "vit-b16-224": 1, "vit-l16-224": 1},
    "cuda": {"tiny": 10, "vit-ti4-32": 20, "vit-b16-224": 10, "vit-l16-224": 5},
}
IMPLEMENTATIONS = (
    "ssl_mae",
    "ssl_mae+compile",
    "ssl_mae+partial",
    "lightly",
    "hf",
    "vit-pytorch",
)
#: Share of the masked tokens the decoder predicts in the ``ssl_mae+partial`` row (CrossMAE's
#: partial reconstruction, through ``MaskedAutoencoder(decode_ratio=...)``).
PARTIAL_DECODE_RATIO = 0.25
#: Rows with their own precision and optimiser, timed only when named in ``--impls``.
EXTRA_ROWS = ("ssl_mae+fast", "ssl_mae-fp32")
REFERENCE = "lightly"
# --ablation: ssl_mae alone, one optimisation added per row (ratios to the first row).
ABLATION = ("eager-fp32", "+bf16", "+bf16+fused", "+bf16+fused+compile")


# --- the implementations -------------------------------------------------------------------------
@dataclass
class Implementation:
    """One MAE with its optimiser; ``step`` runs one training step without host syncs."""

    name: str
    model: nn.Module
    loss_fn: Callable[[Tensor], Tensor]
    optimizer: Optimizer
    device: torch.device
    autocast_dtype: torch.dtype | None
    note: str = ""
    params_total: int = 0
    params_trained: int = 0
    samples: list[float] = field(default_factory=list)  # img/s per repeat
    memory: list[float] = field(default_factory=list)  # bytes per repeat

    def step(self, images: Tensor, count_parameters: bool = False) -> Tensor:
        """One training step; optionally counts the parameters that received a gradient."""
        with autocast_context(self.device, self.autocast_dtype):
            loss = self.loss_fn(images)
        loss.backward()
        if count_parameters:
            self.params_total = sum(p.numel() for p in self.model.parameters())
            self.params_trained = sum(
                p.numel() for p in self.model.parameters() if p.grad is not None
            )
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    def static_bytes(self) -> int:
        """Bytes of parameters and optimiser state (gradients are freed every step)."""
        total = sum(p.numel() * p.element_size() for p in self.model.parameters())
        for state in self.optimizer.state.values():
            for value in state.values():
                if isinstance(value, Tensor):
                    total += value.numel() * value.element_size()
        return total


def _peer_adamw(model: nn.Module) -> Optimizer:
    # What the peers' examples do: AdamW over all parameters, torch's default implementation.
    return AdamW(model.parameters(), lr=LR, betas=BETAS, weight_decay=WEIGHT_DECAY)


def build_ssl_mae(
    config: dict[str, Any],
    device: torch.device,
    compiled: bool,
    fused: bool | None = None,
    decode_ratio: float = 1.0,
) -> tuple[Any, ...]:
    model = MAE(**config, mask_ratio=MASK_RATIO, layer_norm_eps=1e-6).to(device)
    model.masked_autoencoder.decode_ratio = decode_ratio
    optimizer = make_adamw(model, lr=LR, betas=BETAS, weight_decay=WEIGHT_DECAY, fused=fused)
    if compiled:
        compile_model(model)

    def loss_fn(images: Tensor) -> Tensor:
        loss: Tensor = model(images, mask_ratio=MASK_RATIO)[0]
        return loss

    note = f"decodes {decode_ratio:.0%} of the masked tokens" if decode_ratio < 1 else ""
    return model, loss_fn, optimizer, note


class LightlyMAE(nn.Module):
    """Lightly's MAE wiring as in its examples (lightly>=1.6, ``examples/pytorch/mae.py``)."""

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        from lightly.models import utils
        from lightly.models.modules import (
            MaskedVisionTransformerDecoderTIMM,
            MaskedVisionTransformerTIMM,
        )
        from timm.models.vision_transformer import VisionTransformer

        self.utils = utils
        vit = VisionTransformer(
            img_size=config["img_size"], patch_size=config["patch_size"],
            in_chans=config["in_chans"], num_classes=0, embed_dim=config["embed_dim"],
            depth=config["depth"], num_heads=config["num_heads"], mlp_ratio=4.0,
        )  # fmt: skip
        self.patch_size = config["patch_size"]
        self.sequence_length = vit.patch_embed.num_patches + vit.num_prefix_tokens
        self.backbone = MaskedVisionTransformerTIMM(vit=vit)
        decoder_dim = config["decoder_embed_dim"]
        self.decoder_embed = nn.Linear(config["embed_dim"], decoder_dim)
        self.decoder = MaskedVisionTransformerDecoderTIMM(
            num_patches=vit.patch_embed.num_patches,
            embed_dim=decoder_dim,
            depth=config["decoder_depth"],
            num_heads=config["decoder_num_heads"],
            num_prefix_tokens=vit.num_prefix_tokens,
            mlp_ratio=4.0,
        )
        self.prediction_head = nn.Linear(decoder_dim, self.patch_size**2 * config["in_chans"])
        self.criterion = nn.MSELoss()

    def forward(self, images: Tensor) -> Tensor:
        utils = self.utils
        batch_size = images.shape[0]
        idx_keep, idx_mask = utils.random_token_mask(
            size=(batch_size, self.sequence_length), mask_ratio=MASK_RATIO, device=images.device
        )
        x_encoded = self.backbone.encode(images=images, idx_keep=idx_keep)
        x_decode = self.decoder_embed(x_encoded)
        x_masked = x_decode.new_zeros(batch_size, self.sequence_length, x_decode.shape[-1])
        x_masked = utils.set_at_index(x_masked, idx_keep, x_decode.type_as(x_masked))
        x_decoded = self.decoder(x_masked, idx_mask=idx_mask)
        x_pred = self.prediction_head(utils.get_at_index(x_decoded, idx_mask))
        target = utils.get_at_index(utils.patchify(images, self.patch_size), idx_mask - 1)
        loss: Tensor = self.criterion(x_pred, target)
        return loss


def build_lightly(config: dict[str, Any], device: torch.device) -> tuple[Any, ...]:
    model = LightlyMAE(config).to(device)
    return model, model, _peer_adamw(model), "encoder mask_token unused (no gradient)"


def build_hf(config: dict[str, Any], device: torch.device) -> tuple[Any, ...]:
    from transformers import ViTMAEConfig, ViTMAEForPreTraining

    hf_config = ViTMAEConfig(
        image_size=config["img_size"], patch_size=config["patch_size"],
        num_channels=config["in_chans"], hidden_size=config["embed_dim"],
        num_hidden_layers=config["depth"], num_attention_heads=config["num_heads"],
        intermediate_size=4 * config["embed_dim"],
        decoder_hidden_size=config["decoder_embed_dim"],
        decoder_num_hidden_layers=config["decoder_depth"],
        decoder_num_attention_heads=config["decoder_num_heads"],
        decoder_intermediate_size=4 * config["decoder_embed_dim"],
        mask_ratio=MASK_RATIO, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )  # fmt: skip
    # transformers' _from_config carries no annotations.
    model = ViTMAEForPreTraining._from_config(  # type: ignore[no-untyped-call]
        hf_config, attn_implementation="sdpa"
    ).to(device)

    def loss_fn(images: Tensor) -> Tensor:
        loss: Tensor = model(pixel_values=images).loss
        return loss

    return model, loss_fn, _peer_adamw(model), "LayerNorm eps 1e-12, separate q/k/v"


def build_vit_pytorch(config: dict[str, Any], device: torch.device) -> tuple[Any, ...]:
    from vit_pytorch import ViT
    from vit_pytorch.mae import MAE as VitPytorchMAE

    dim, decoder_dim = config["embed_dim"], config["decoder_embed_dim"]
    encoder = ViT(
        image_size=config["img_size"], patch_size=config["patch_size"], num_classes=1,
        dim=dim, depth=config["depth"], heads=config["num_heads"], mlp_dim=4 * dim,
        channels=config["in_chans"], dim_head=dim // config["num_heads"], pool="mean",
    )  # fmt: skip
    model = VitPytorchMAE(
        encoder=encoder,
        decoder_dim=decoder_dim,
        masking_ratio=MASK_RATIO,
        decoder_depth=config["decoder_depth"],
        decoder_heads=config["decoder_num_heads"],
        decoder_dim_head=decoder_dim // config["decoder_num_heads"],
    ).to(device)
    note = "no class token, learned positions, no qkv bias, extra patch LayerNorms"
    return model, model, _peer_adamw(model), note


def build(
    name: str,
    config: dict[str, Any],
    device: torch.device,
    dtype: torch.dtype | None,
    compiled: bool = True,
) -> Implementation:
    """One implementation; ``compiled`` allows compilation in the rows that name it."""
    torch.manual_seed(0)
    if name == "ssl_mae+fast":
        dtype = torch.bfloat16
        parts = build_ssl_mae(config, device, compiled=compiled, fused=True)
    elif name == "ssl_mae-fp32":
        dtype = None
        parts = build_ssl_mae(config, device, compiled=False, fused=False)
    elif name == "ssl_mae":
        parts = build_ssl_mae(config, device, compiled=False)
    elif name == "ssl_mae+compile":
        parts = build_ssl_mae(config, device, compiled=True)
    elif name == "ssl_mae+partial":
        parts = build_ssl_mae(config, device, compiled=False, decode_ratio=PARTIAL_DECODE_RATIO)
    elif name == "lightly":
        parts = build_lightly(config, device)
    elif name == "hf":
        parts = build_hf(config, device)
    elif name == "vit-pytorch":
        parts = build_vit_pytorch(config, device)
    elif name in ABLATION:
        # Each row adds one optimisation to the previous; precision is part of the row here.
        dtype = torch.bfloat16 if "bf16" in name else None
        parts = build_ssl_mae(config, device, compiled="compile" in name, fused="fused" in name)
    else:
        known = [*IMPLEMENTATIONS, *EXTRA_ROWS, *ABLATION]
        raise ValueError(f"implementation must be one of {known}, got {name!r}")
    model, loss_fn, optimizer, note = parts
    model.train()
    return Implementation(name, model, loss_fn, optimizer, device, dtype, note)


# --- measuring -----------------------------------------------------------------------------------
def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class CPUPeakMemory:
    """Peak resident-set growth of this process over a code region (Linux)."""

    def __init__(self) -> None:
        self.available = Path("/proc/self/clear_refs").exists()
        try:
            self._trim: Callable[[int], int] | None = ctypes.CDLL("libc.so.6").malloc_trim
        except OSError:
            self._trim = None

    @staticmethod
    def _status_kib(key: str) -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
        raise KeyError(key)

    def start(self) -> int | None:
        if not self.available:
            return None
        if self._trim is not None:
            self._trim(0)  # hand freed heap pages back, so they do not hide the next peak
        try:
            Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
        except OSError:
            self.available = False
            return None
        return self._status_kib("VmRSS") * 1024

    def stop(self, baseline: int | None) -> int | None:
        if baseline is None:
            return None
        return max(self._status_kib("VmHWM") * 1024 - baseline, 0)


def time_repeat(
    impl: Implementation, images: Tensor, steps: int, cpu_memory: CPUPeakMemory
) -> None:
    """Times ``steps`` training steps and records img/s and peak memory of this repeat."""
    device = images.device
    _synchronize(device)
    if device.type == "cuda":
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        baseline = None
    else:
        baseline = cpu_memory.start()
    start = time.perf_counter()
    for _ in range(steps):
        impl.step(images)
    _synchronize(device)
    elapsed = time.perf_counter() - start
    impl.samples.append(steps * images.shape[0] / elapsed)
    if device.type == "cuda":
        step_peak: int | None = torch.cuda.max_memory_allocated(device) - before
    else:
        step_peak = cpu_memory.stop(baseline)
    if step_peak is not None:
        impl.memory.append(float(impl.static_bytes() + step_peak))


def _summary(values: Sequence[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def run_config(
    config_name: str,
    implementations: Sequence[str],
    device: torch.device,
    dtype: torch.dtype | None,
    batch_size: int,
    repeats: int,
    steps: int,
    warmup: int,
    log: Callable[[str], None],
    compiled: bool = True,
) -> list[dict[str, Any]]:
    """Builds every implementation for one configuration and times them interleaved."""
    config = CONFIGS[config_name]
    torch.manual_seed(1)
    images = torch.randn(
        batch_size, config["in_chans"], config["img_size"], config["img_size"], device=device
    )
    impls = [build(name, config, device, dtype, compiled) for name in implementations]
    for impl in impls:
        start = time.perf_counter()
        # First calls: allocator growth, kernel selection, compilation. The full batch is used
        # even for counting, so a compiled model sees a single shape.
        for index in range(warmup):
            impl.step(images, count_parameters=index == 0)
        _synchronize(device)
        log(f"  warm-up {impl.name}: {time.perf_counter() - start:.1f} s")
    cpu_memory = CPUPeakMemory()
    for repeat in range(repeats):
        shift = repeat % len(impls)
        for impl in impls[shift:] + impls[:shift]:  # rotate so no row always runs first
            time_repeat(impl, images, steps, cpu_memory)
        log(
            f"  repeat {repeat + 1}/{repeats}: "
            + ", ".join(f"{i.name} {i.samples[-1]:.3g} img/s" for i in impls)
        )

    def flops_of(impl: Implementation) -> float:
        # The partial-decoding row does less work: count its own FLOPs, not the full MAE's.
        decode_ratio = PARTIAL_DECODE_RATIO if impl.name == "ssl_mae+partial" else 1.0
        return flops_per_image(
            img_size=config["img_size"], patch_size=config["patch_size"],
            embed_dim=config["embed_dim"], depth=config["depth"],
            decoder_embed_dim=config["decoder_embed_dim"], decoder_depth=config["decoder_depth"],
            mask_ratio=MASK_RATIO, in_chans=config["in_chans"], decode_ratio=decode_ratio,
        )  # fmt: skip

    reference_name = ABLATION[0] if implementations[0] in ABLATION else REFERENCE
    reference = next((i for i in impls if i.name == reference_name), None)
    rows = []
    for impl in impls:
        throughput = _summary(impl.samples)
        peak = device_peak_flops(device, impl.autocast_dtype)
        flops = flops_of(impl)
        row: dict[str, Any] = {
            "config": config_name,
            "implementation": impl.name,
            "note": impl.note,
            "batch_size": batch_size,
            "precision": str(impl.autocast_dtype) if impl.autocast_dtype else "float32",
            "params_total": impl.params_total,
            "params_trained": impl.params_trained,
            "img_per_s": throughput,
            "img_per_s_samples": impl.samples,
            "peak_memory_mb": (_summary([m / 2**20 for m in impl.memory]) if impl.memory else None),
            "memory_kind": "cuda_max_allocated" if device.type == "cuda" else "rss_peak",
            "flops_per_image": flops,
            "achieved_flops": throughput["median"] * flops,
            "mfu": throughput["median"] * flops / peak if peak else None,
            "reference": reference_name if reference is not None else None,
            "ratio_to_reference": None,
        }
        if reference is not None:
            ratios = [s / r for s, r in zip(impl.samples, reference.samples, strict=True)]
            row["ratio_to_reference"] = _summary(ratios)
        rows.append(row)
    return rows


# --- reporting -----------------------------------------------------------------------------------
def machine_info(device: torch.device) -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    info: dict[str, Any] = {
        "device": str(device),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "load_average_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
    return info


def markdown_table(rows: Sequence[dict[str, Any]], device: torch.device) -> str:
    gpu = device.type == "cuda"
    reference = rows[0].get("reference") if rows else None
    header = [
        "config", "implementation", "params (M, trained)", "batch", "img/s median",
        "img/s min–max", f"× {reference or 'reference'} median (min–max)", "peak MB", "GFLOP/img",
        "TFLOP/s" if gpu else "GFLOP/s",
    ] + (["MFU"] if gpu else [])  # fmt: skip
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        thr, ratio, memory = row["img_per_s"], row["ratio_to_reference"], row["peak_memory_mb"]
        achieved = row["achieved_flops"] / (1e12 if gpu else 1e9)
        cells = [
            row["config"],
            row["implementation"],
            f"{row['params_trained'] / 1e6:.2f}",
            str(row["batch_size"]),
            f"{thr['median']:.3g}",
            f"{thr['min']:.3g}–{thr['max']:.3g}",
            (f"{ratio['median']:.2f} ({ratio['min']:.2f}–{ratio['max']:.2f})" if ratio else "n/a"),
            f"{memory['median']:.0f}" if memory else "n/a",
            f"{row['flops_per_image'] / 1e9:.3g}",
            f"{achieved:.3g}",
        ]
        if gpu:
            cells.append(f"{row['mfu'] * 100:.1f} %" if row["mfu"] is not None else "n/a")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _available(name: str) -> bool:
    module = {"lightly": "lightly", "hf": "transformers", "vit-pytorch": "vit_pytorch"}.get(name)
    if module is None:
        return True
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--configs",
        default=None,
        help=f"comma-separated subset of {list(CONFIGS)} (default: vit-ti4-32,vit-b16-224; "
        "on CUDA also vit-l16-224)",
    )
    parser.add_argument(
        "--impls",
        default=None,
        help=f"comma-separated subset of {list(IMPLEMENTATIONS + EXTRA_ROWS)} (default: all "
        f"installed but {list(EXTRA_ROWS)}; ssl_mae+compile only when compiling)",
    )
    parser.add_argument("--batch-size", type=int, default=None, help="override per config")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved repeats")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per repeat")
    parser.add_argument(
        "--warmup",
        type=int,
        default=2,
        help="untimed steps per implementation, >= 1 (the first also counts parameters)",
    )
    parser.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16"),
        default="auto",
        help="autocast for every row; auto = bf16 on CUDA, fp32 on CPU",
    )
    parser.add_argument(
        "--compile",
        choices=("auto", "on", "off"),
        default="auto",
        help="add the ssl_mae+compile row; auto = on for CUDA only (CPU compile takes minutes)",
    )
    parser.add_argument(
        "--ablation",
        action="store_true",
        help=f"time ssl_mae alone with one optimisation added per row: {list(ABLATION)} "
        "(the compile row only with compilation on)",
    )
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--markdown", type=Path, default=None, help="write the table here")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    args = parser.parse_args(argv)
    for name in ("repeats", "warmup"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    kind = "cuda" if device.type == "cuda" else "cpu"
    dtype = {"auto": default_autocast_dtype(device), "fp32": None, "bf16": torch.bfloat16}[
        args.precision
    ]
    compiled = args.compile == "on" or (args.compile == "auto" and device.type == "cuda")
    default_configs = ["vit-ti4-32", "vit-b16-224"] + (["vit-l16-224"] if kind == "cuda" else [])
    configs = args.configs.split(",") if args.configs else default_configs
    unknown = [c for c in configs if c not in CONFIGS]
    if unknown:
        raise SystemExit(f"--configs: unknown {unknown}; choose from {list(CONFIGS)}")
    if args.ablation:
        impls = [i for i in ABLATION if compiled or "compile" not in i]
    elif args.impls:
        impls = args.impls.split(",")
        bad = [i for i in impls if i not in IMPLEMENTATIONS + EXTRA_ROWS]
        if bad:
            known = list(IMPLEMENTATIONS + EXTRA_ROWS)
            raise SystemExit(f"--impls: unknown {bad}; choose from {known}")
    else:
        impls = [i for i in IMPLEMENTATIONS if compiled or i != "ssl_mae+compile"]
    missing = [i for i in impls if not _available(i)]
    impls = [i for i in impls if i not in missing]

    def log(message: str) -> None:
        if not args.quiet:
            print(message, file=sys.stderr, flush=True)

    if missing:
        log(f"skipping {missing}: package not installed")
    info = machine_info(device)
    log(f"machine: {info}")
    rows: list[dict[str, Any]] = []
    for config_name in configs:
        batch = args.batch_size or BATCH_SIZES[kind][config_name]
        steps = args.steps or STEPS_PER_REPEAT[kind][config_name]
        log(f"{config_name}: batch {batch}, {args.repeats} repeats x {steps} steps, {impls}")
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*deprecated.*")
            rows += run_config(
                config_name, impls, device, dtype, batch, args.repeats, steps, args.warmup, log,
                compiled,
            )  # fmt: skip
    info["load_average_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    result = {
        "machine": info,
        "settings": {
            "precision": str(dtype) if dtype else "float32",
            "compile": compiled,
            "repeats": args.repeats,
            "warmup": args.warmup,
            "mask_ratio": MASK_RATIO,
            "implementations": impls,
            "ablation": args.ablation,
        },
        "results": rows,
    }
    table = markdown_table(rows, device)
    for config_name in configs:
        flops = next(r["flops_per_image"] for r in rows if r["config"] == config_name)
        log(f"{config_name}: analytic {flops / 1e9:.4g} GFLOP per image per training step")
    print(table)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str))
    if args.markdown:
        args.markdown.write_text(table + "\n")
    return result


if __name__ == "__main__":
    main()
