"""FLOP accounting of the MAE step and the peak throughput of known GPUs, for MFU.

Used by the benchmarks and the trainer alike: :func:`mae_flops` counts the matrix products of one
image analytically, :func:`device_peak_flops` looks up the dense 16-bit peak of the GPU.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ssl_mae._validation import (
    as_device,
    check_bool,
    check_float,
    check_mask_ratio,
    check_nonnegative_int,
    check_positive_float,
    check_positive_int,
    to_2tuple,
)
from ssl_mae.masking import num_patches_to_decode, num_patches_to_keep

__all__ = ["MAEFlops", "device_peak_flops", "flops_per_image", "mae_flops"]


# --- FLOPs and MFU -------------------------------------------------------------------------------
@dataclass(frozen=True)
class MAEFlops:
    """Forward matmul FLOPs of one MAE image, by part (2·m·n·k per matrix product).

    Attributes:
        patch_embed: Patch projection of all L patches.
        encoder: Encoder blocks on the P + K visible tokens (prefix + kept patches).
        decoder_embed: Projection of the encoder output (of each encoder layer a CrossMAE
            decoder reads) to the decoder width.
        decoder: Decoder blocks: MAE's on all P + L tokens (P + K + K_dec with partial
            decoding), CrossMAE's K_dec (or L) queries attending to the P + K visible tokens.
        prediction: Prediction head on the decoded patches.
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


def _cross_block_flops(queries: int, memory: int, dim: int, mlp_ratio: float) -> float:
    """Forward FLOPs of one CrossMAE block: ``queries`` tokens attend to ``memory`` tokens."""
    hidden = int(dim * mlp_ratio)
    q_and_proj = 2 * 2 * queries * dim * dim
    key_value = 2 * memory * dim * 2 * dim
    scores_and_mix = 2 * 2 * queries * memory * dim
    mlp = 2 * 2 * queries * dim * hidden
    return float(q_and_proj + key_value + scores_and_mix + mlp)


_DECODERS = ("mae", "cross")


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
    *,
    decode_ratio: float = 1.0,
    decoder: str = "mae",
    encoder_layers: Sequence[int] | None = None,
    target_dim: int | None = None,
) -> MAEFlops:
    """Analytic matmul FLOPs of one MAE image, split by part.

    Counts the matrix products only (linear layers, attention scores and mixing, patch
    projection); norms, activations and softmax add well under 1 %. The encoder runs on the
    prefix tokens plus the ``int(L * (1 - mask_ratio))`` kept patches, the MAE decoder on all
    ``P + L`` tokens. For ViT-B/16 at 224 px with an 8 x 512 decoder the training step costs
    58.7 GFLOP per image (``mae_flops().train``).

    The decoder is counted as :class:`~ssl_mae.MaskedAutoencoder` runs it: with
    ``decode_ratio < 1`` only ``K_dec`` masked patches are decoded
    (:func:`~ssl_mae.masking.num_patches_to_decode`), by ``predict_at``: the MAE decoder on the
    ``P + K + K_dec`` tokens, the CrossMAE decoder (``decoder="cross"``) with ``K_dec`` queries
    attending to the ``P + K`` visible tokens; with ``decode_ratio=1`` ``predict_all`` runs
    (CrossMAE: one query per patch).

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
            False: only on the masked ones (``MAEDecoder.predict_masked``, Lightly). Only for
            the MAE decoder with ``decode_ratio=1``.
        decode_ratio: Share of the masked patches decoded, in (0, 1].
        decoder: ``"mae"`` (:class:`~ssl_mae.modules.MAEDecoder`) or ``"cross"``
            (:class:`~ssl_mae.modules.CrossMAEDecoder`).
        encoder_layers: The CrossMAE decoder's ``encoder_layers``: each distinct layer is
            projected to the decoder width once.
        target_dim: Prediction width per patch; ``patch_size**2 * in_chans`` when None.

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
    check_nonnegative_int(num_prefix_tokens, "num_prefix_tokens")
    check_positive_float(mlp_ratio, "mlp_ratio")
    check_bool(predict_all, "predict_all")
    decode_ratio = check_float(decode_ratio, "decode_ratio", 0.0, 1.0, low_open=True)
    if decoder not in _DECODERS:
        raise ValueError(f"decoder must be one of {list(_DECODERS)}, got {decoder!r}")

    num_patches = (height // patch_size) * (width // patch_size)
    num_keep = num_patches_to_keep(num_patches, mask_ratio)
    pixels = patch_size * patch_size * in_chans
    out_dim = pixels if target_dim is None else check_positive_int(target_dim, "target_dim")
    encoder_tokens = num_prefix_tokens + num_keep
    if decode_ratio < 1.0:  # predict_at on a share of the masked patches
        predicted = num_patches_to_decode(num_patches - num_keep, decode_ratio)
        decoder_tokens = encoder_tokens + predicted
    else:  # predict_all
        predicted = num_patches if predict_all or decoder == "cross" else num_patches - num_keep
        decoder_tokens = num_prefix_tokens + num_patches
    if decoder == "cross":
        memories = len(set(encoder_layers)) if encoder_layers else 1
        decoder_embed = memories * 2 * encoder_tokens * embed_dim * decoder_embed_dim
        blocks = _cross_block_flops(predicted, encoder_tokens, decoder_embed_dim, mlp_ratio)
    else:
        decoder_embed = 2 * encoder_tokens * embed_dim * decoder_embed_dim
        blocks = _block_flops(decoder_tokens, decoder_embed_dim, mlp_ratio)
    return MAEFlops(
        patch_embed=float(2 * num_patches * pixels * embed_dim),
        encoder=depth * _block_flops(encoder_tokens, embed_dim, mlp_ratio),
        decoder_embed=float(decoder_embed),
        decoder=decoder_depth * blocks,
        prediction=float(2 * predicted * decoder_embed_dim * out_dim),
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
    return flops.train if check_bool(training, "training") else flops.forward


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
    device = as_device(device)
    if device.type != "cuda" or not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name(device)
    for pattern, peak in _PEAK_FLOPS_16BIT:
        if pattern in name:
            return peak if dtype in (torch.bfloat16, torch.float16) else peak / 2
    return None
