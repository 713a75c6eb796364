"""Training-step throughput of MAE-HiViT-B against MAE ViT-B/16 on the same batch.

The HiViT paper claims its MAE pre-training is faster than a plain ViT's at similar size,
because the masked units are dropped before the hierarchical stem. This script times full
training steps (masking, encoder, decoder, loss, backward, AdamW step) on one random batch,
interleaving the models step by step, and counts each step's FLOPs (forward + backward), which
unlike wall time does not depend on how busy a shared machine is.

Usage:
    python benchmarks/hivit_vs_vit.py --batch-size 8 --steps 5 --warmup 1
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from ssl_mae.core import MaskedAutoencoder, as_masked_autoencoder
from ssl_mae.hivit import HiViTMAEForPreTraining
from ssl_mae.loss import MAELoss
from ssl_mae.modules import MAEDecoder, MaskedVisionTransformer


def vit_mae(mask_ratio: float = 0.75, norm_pix_loss: bool = True) -> MaskedAutoencoder:
    """MAE with a timm ViT-B/16 encoder and the standard 8 × 512 decoder (official recipe)."""
    encoder = MaskedVisionTransformer.from_timm("vit_base_patch16_224")
    decoder = MAEDecoder(
        num_patches=encoder.num_patches,
        patch_size=encoder.patch_size,
        embed_dim=encoder.embed_dim,
        decoder_depth=8,
        decoder_num_heads=16,
        num_prefix_tokens=encoder.num_prefix_tokens,
    )
    return MaskedAutoencoder(encoder, decoder, MAELoss(norm_pix=norm_pix_loss), mask_ratio)


class Runner:
    """One model with its optimizer, able to time a single training step.

    Every model runs through its :class:`~ssl_mae.MaskedAutoencoder` core (masking, encoder,
    decoder and the loss on the masked patches), so the timings compare the same step.
    """

    def __init__(self, name: str, build: Callable[[], nn.Module], device: str) -> None:
        torch.manual_seed(0)
        self.name = name
        self.model = build().to(device).train()
        self.core = as_masked_autoencoder(self.model)
        self.params_total = sum(p.numel() for p in self.model.parameters())
        self.params_encoder = sum(p.numel() for p in self.core.encoder.parameters())
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(trainable, lr=1e-4)
        self.seconds: list[float] = []
        self.flops = 0

    def count_flops(self, images: Tensor) -> None:
        """Counts the FLOPs of one training step (forward + backward); also warms up."""
        with FlopCounterMode(display=False) as counter:
            self.step(images, record=False)
        self.flops = counter.get_total_flops()

    def step(self, images: Tensor, record: bool = True) -> None:
        """Runs and (optionally) times one training step."""
        if images.device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        loss = self.core(images).loss
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        if images.device.type == "cuda":
            torch.cuda.synchronize()
        if record:
            self.seconds.append(time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=8, help="images per step")
    parser.add_argument("--steps", type=int, default=5, help="timed training steps")
    parser.add_argument(
        "--warmup",
        type=int,
        default=1,
        help="untimed steps before timing (after the FLOP-counting step)",
    )
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    images = torch.randn(args.batch_size, 3, 224, 224, device=args.device)
    candidates: list[tuple[str, Callable[[], nn.Module]]] = [
        ("MAE ViT-B/16 (dec 8x512)", vit_mae),
        ("MAE HiViT-B (dec 6x512)", lambda: HiViTMAEForPreTraining.from_preset("mae_hivit_b")),
        (
            "MAE HiViT-B (dec 8x512)",
            lambda: HiViTMAEForPreTraining.from_preset("mae_hivit_b", decoder_depth=8),
        ),
    ]
    runners = [Runner(name, build, args.device) for name, build in candidates]
    for runner in runners:
        runner.count_flops(images)
        for _ in range(args.warmup):
            runner.step(images, record=False)
    # Interleave the models step by step so that a shared, noisy CPU slows them alike.
    for _ in range(args.steps):
        for runner in runners:
            runner.step(images)
    print(f"device={args.device} batch={args.batch_size} threads={torch.get_num_threads()}")
    header = f"{'model':28s} {'enc params':>12s} {'all params':>12s}"
    print(
        f"{header} {'GFLOP/step':>11s} {'median s/step':>14s} {'min s/step':>11s} "
        f"{'img/s (median)':>15s}"
    )
    for runner in runners:
        median = statistics.median(runner.seconds)
        print(
            f"{runner.name:28s} {runner.params_encoder:12,d} {runner.params_total:12,d} "
            f"{runner.flops / 1e9:11.1f} {median:14.3f} {min(runner.seconds):11.3f} "
            f"{images.shape[0] / median:15.2f}"
        )


if __name__ == "__main__":
    main()
