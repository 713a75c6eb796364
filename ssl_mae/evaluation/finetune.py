"""End-to-end fine-tuning with the MAE/BEiT recipe.

The recipe (He et al. 2021, appendix A.3): AdamW, linear warmup then cosine decay per step,
layer-wise learning-rate decay (deep blocks learn faster than the patch embedding, which keeps the
pre-trained low-level features mostly intact), stochastic depth (drop path) and label smoothing.
Augmentations (RandAugment, mixup, cutmix) belong to the data set and are not applied here.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable, Sequence
from typing import Any, TypedDict

import torch
import torch.nn.functional as F
from timm.layers.drop import DropPath
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from ssl_mae._validation import check_float, check_positive_int
from ssl_mae.evaluation.features import (
    autocast_context,
    check_pool,
    encode_pooled,
    iterate_batches,
    module_device,
)
from ssl_mae.evaluation.metrics import (
    check_labels,
    check_nonnegative_float,
    check_positive_float,
    resolve_device,
)
from ssl_mae.evaluation.schedule import set_learning_rate, warmup_cosine_lr

# Parameters that belong to the input stem (layer 0), wherever they sit in the module tree:
# timm names first, then torchvision's (conv_proj, class_token, encoder.pos_embedding).
EMBEDDING_PARAMETER_NAMES = frozenset(
    {
        "patch_embed",
        "cls_token",
        "pos_embed",
        "reg_token",
        "dist_token",
        "mask_token",
        "norm_pre",
        "conv_proj",
        "class_token",
        "pos_embedding",
    }
)
# Token-like parameters that never get weight decay (on top of all 1-D parameters).
DEFAULT_NO_WEIGHT_DECAY_NAMES = (
    "cls_token",
    "pos_embed",
    "reg_token",
    "dist_token",
    "mask_token",
    "class_token",
    "pos_embedding",
)

# timm: "blocks.3.attn.qkv.weight"; torchvision: "encoder.layers.encoder_layer_3.mlp.0.weight".
_BLOCK_INDEX = re.compile(r"(?:^|\.)(?:blocks\.|layers\.encoder_layer_)(\d+)\.")


def block_index(name: str) -> int | None:
    """Index ``i`` of the transformer block a parameter belongs to (``...blocks.<i>....``, or
    torchvision's ``...layers.encoder_layer_<i>....``)."""
    match = _BLOCK_INDEX.search(name)
    return None if match is None else int(match.group(1))


def count_blocks(model: nn.Module) -> int:
    """Number of transformer blocks, found as the largest ``blocks.<i>.`` index plus one."""
    indices = [block_index(name) for name, _ in model.named_parameters()]
    found = [index for index in indices if index is not None]
    return max(found) + 1 if found else 0


def layer_id_for_parameter(name: str, num_blocks: int) -> int:
    """Layer of a parameter for layer-wise lr decay.

    The stem (patch embedding, class/register/mask tokens, position embedding) is layer 0,
    block ``i`` is layer ``i + 1``, everything else (final norm, head) is layer
    ``num_blocks + 1``. Name prefixes such as ``vit.`` or ``encoder.`` are ignored.

    Args:
        name: Parameter name as given by ``named_parameters()``.
        num_blocks: Number of transformer blocks.
    """
    index = block_index(name)
    if index is not None:
        return index + 1
    if EMBEDDING_PARAMETER_NAMES.intersection(name.split(".")):
        return 0
    return num_blocks + 1


def _matches_any(name: str, candidates: Iterable[str]) -> bool:
    return any(name == candidate or name.endswith("." + candidate) for candidate in candidates)


def param_groups_layer_decay(
    model: nn.Module,
    weight_decay: float = 0.05,
    layer_decay: float = 0.75,
    no_weight_decay_names: Sequence[str] | None = None,
    num_blocks: int | None = None,
) -> list[dict[str, Any]]:
    """Optimizer parameter groups with layer-wise learning-rate decay (MAE/BEiT recipe).

    A parameter in layer ``l`` (see :func:`layer_id_for_parameter`) gets
    ``lr_scale = layer_decay ** (num_blocks + 1 - l)``: 1 for the head, ``layer_decay`` for the
    last block and ``layer_decay ** (num_blocks + 1)`` for the patch embedding. Biases, norm
    weights (every 1-D parameter) and the names in ``no_weight_decay_names`` get no weight decay.
    Works for a timm ``VisionTransformer`` and for any module that holds one under a prefix
    (``vit.blocks.3.attn.qkv.weight``). Frozen parameters are left out.

    Apply the scales with :func:`~ssl_mae.evaluation.schedule.set_learning_rate`, or set
    ``group["lr"] = lr * group["lr_scale"]`` yourself.

    Args:
        model: The network to fine-tune.
        weight_decay: Weight decay of the decayed groups.
        layer_decay: Decay per layer, in (0, 1]; 1 disables layer decay.
        no_weight_decay_names: Parameter names (or name suffixes after a dot) without weight
            decay. Default: the class/register/distillation/mask tokens and the position
            embedding, plus whatever ``model.no_weight_decay()`` returns.
        num_blocks: Number of transformer blocks; counted from the parameter names by default.

    Returns:
        A list of groups with keys ``params``, ``weight_decay``, ``lr_scale`` and ``layer_id``,
        sorted by layer.
    """
    weight_decay = check_nonnegative_float(weight_decay, "weight_decay")
    check_positive_float(layer_decay, "layer_decay")
    if layer_decay > 1:
        raise ValueError(f"layer_decay must be in (0, 1], got {layer_decay!r}")
    if no_weight_decay_names is None:
        names = set(DEFAULT_NO_WEIGHT_DECAY_NAMES)
        model_no_decay = getattr(model, "no_weight_decay", None)
        if callable(model_no_decay):
            names.update(model_no_decay())
        no_weight_decay_names = sorted(names)
    elif isinstance(no_weight_decay_names, str):
        raise TypeError(
            f"no_weight_decay_names must be a sequence of names, got the string "
            f"{no_weight_decay_names!r}"
        )
    if num_blocks is None:
        num_blocks = count_blocks(model)
    elif isinstance(num_blocks, bool) or not isinstance(num_blocks, int) or num_blocks < 0:
        raise ValueError(f"num_blocks must be a non-negative int, got {num_blocks!r}")

    groups: dict[tuple[int, bool], dict[str, Any]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        layer_id = layer_id_for_parameter(name, num_blocks)
        decay = param.ndim > 1 and not _matches_any(name, no_weight_decay_names)
        group = groups.setdefault(
            (layer_id, decay),
            {
                "params": [],
                "weight_decay": weight_decay if decay else 0.0,
                "lr_scale": layer_decay ** (num_blocks + 1 - layer_id),
                "layer_id": layer_id,
            },
        )
        group["params"].append(param)
    return [groups[key] for key in sorted(groups)]


def _drop_path_blocks(model: nn.Module) -> list[tuple[nn.Module, tuple[str, ...]]]:
    """Modules with timm-style drop-path slots, in definition order, with the slot names."""
    blocks: list[tuple[nn.Module, tuple[str, ...]]] = []
    for module in model.modules():
        attributes = tuple(
            attribute
            for attribute in ("drop_path1", "drop_path2", "drop_path")
            if isinstance(getattr(module, attribute, None), nn.Module)
        )
        if attributes:
            blocks.append((module, attributes))
    return blocks


def _has_drop_path_slots(model: nn.Module) -> bool:
    return bool(_drop_path_blocks(model))


def set_drop_path(model: nn.Module, drop_path_rate: float) -> list[float]:
    """Sets stochastic depth on every transformer block, increasing linearly with depth.

    Block ``i`` of ``n`` drops its residual branches with probability
    ``drop_path_rate * i / (n - 1)`` (the first block never drops, the last uses the full rate),
    as in timm and the MAE fine-tuning recipe. Blocks are the modules with ``drop_path1`` and
    ``drop_path2`` (timm) or ``drop_path`` attributes; ``nn.Identity`` placeholders are replaced
    by timm's ``DropPath``, and a rate of 0 turns the branch back into ``nn.Identity``.

    Args:
        model: Network holding the blocks (a timm ViT or a module wrapping one).
        drop_path_rate: Rate of the last block, in [0, 1).

    Returns:
        The rate given to each block, in order.
    """
    drop_path_rate = check_nonnegative_float(drop_path_rate, "drop_path_rate")
    if drop_path_rate >= 1:
        raise ValueError(f"drop_path_rate must be in [0, 1), got {drop_path_rate!r}")
    blocks = _drop_path_blocks(model)
    if not blocks:
        raise ValueError(
            f"model of type {type(model).__name__} has no blocks with drop_path1/drop_path2 or "
            "drop_path attributes, so drop_path_rate cannot be applied"
        )
    rates = torch.linspace(0.0, drop_path_rate, len(blocks)).tolist()
    for (block, attributes), rate in zip(blocks, rates, strict=True):
        for attribute in attributes:
            current = getattr(block, attribute)
            if rate == 0.0:
                setattr(block, attribute, nn.Identity())
            elif isinstance(current, DropPath):
                current.drop_prob = rate
            else:
                setattr(block, attribute, DropPath(rate))
    return [float(rate) for rate in rates]


def _infer_embed_dim(encoder: nn.Module) -> int:
    for owner in (encoder, getattr(encoder, "vit", None)):
        for attribute in ("embed_dim", "num_features"):
            value = getattr(owner, attribute, None)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return value
    raise ValueError(
        f"cannot infer the feature dimension of {type(encoder).__name__}; pass embed_dim"
    )


class FineTuneClassifier(nn.Module):
    """An encoder followed by a linear head on its pooled features.

    Args:
        encoder: Backbone (see :func:`~ssl_mae.evaluation.features.encode_pooled`), e.g. a
            :class:`~ssl_mae.modules.MaskedVisionTransformer` or a timm ViT.
        num_classes: Number of classes C.
        pool: ``"cls"`` (class token) or ``"mean"`` (mean of the patch tokens).
        embed_dim: Feature dimension D; read from ``embed_dim``/``num_features`` of the encoder
            (or of ``encoder.vit``) when None.
        head_init_std: Standard deviation of the head weights; MAE uses a tiny 2e-5 so that the
            untrained head does not send large random gradients into the pre-trained encoder.
        generator: Random generator for the head initialisation (default: the global one).
    """

    def __init__(
        self,
        encoder: nn.Module,
        num_classes: int,
        pool: str = "cls",
        embed_dim: int | None = None,
        head_init_std: float = 2e-5,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        check_positive_int(num_classes, "num_classes")
        self.pool = check_pool(pool)
        embed_dim = _infer_embed_dim(encoder) if embed_dim is None else embed_dim
        check_positive_int(embed_dim, "embed_dim")
        check_nonnegative_float(head_init_std, "head_init_std")
        self.encoder = encoder
        self.head = nn.Linear(embed_dim, num_classes)
        with torch.no_grad():  # truncated normal at 2 std, drawn here so a generator can seed it
            weight = torch.randn(self.head.weight.shape, generator=generator).clamp_(-2.0, 2.0)
            self.head.weight.copy_(weight * head_init_std)
            self.head.bias.zero_()

    def forward(self, images: Tensor) -> Tensor:
        """Class logits.

        Args:
            images: (B, C, H, W) images.

        Returns:
            (B, num_classes) logits.
        """
        logits: Tensor = self.head(encode_pooled(self.encoder, images, self.pool))
        return logits


class FineTuneResult(TypedDict):
    """Final test metrics (accuracies in [0, 1]), per-epoch history and the trained model."""

    top1: float
    top5: float
    loss: float
    history: dict[str, list[float]]
    model: nn.Module


def _check_data(data: object, name: str) -> None:
    if not isinstance(data, (DataLoader, Dataset)):
        raise TypeError(f"{name} must be a torch DataLoader or Dataset, got {type(data)}")


@torch.no_grad()
def evaluate_classifier(
    model: nn.Module,
    data: DataLoader[object] | Dataset[object],
    device: torch.device | str | None = None,
    amp: bool | None = None,
    batch_size: int = 256,
) -> dict[str, float]:
    """Top-1/top-5 accuracy (in [0, 1]) and mean cross-entropy of a classifier.

    The model runs in eval mode; its previous mode is restored afterwards.

    Args:
        model: Maps (B, C, H, W) images to (B, num_classes) logits.
        data: ``DataLoader`` or ``Dataset`` of ``(image, label, ...)``.
        device: Where to run; defaults to the device of the model's parameters.
        amp: bf16 autocast (None: on CUDA only).
        batch_size: Batch size used when a ``Dataset`` is given.
    """
    _check_data(data, "data")
    check_positive_int(batch_size, "batch_size")
    run_device = resolve_device(device, module_device(model))
    loader = data if isinstance(data, DataLoader) else DataLoader(data, batch_size=batch_size)
    was_training = model.training
    model.eval()
    total, hits1, hits5, loss_sum = 0, 0, 0, 0.0
    try:
        for images, labels in iterate_batches(loader):
            images, labels = images.to(run_device), labels.to(run_device, torch.long)
            with autocast_context(run_device, amp):
                logits = model(images)
            logits = logits.float()
            if logits.ndim != 2:
                raise ValueError(
                    f"model must return (B, num_classes) logits, got shape {tuple(logits.shape)}"
                )
            check_labels(labels, "data labels", logits.shape[1], logits.shape[0])
            ranked = logits.topk(min(5, logits.shape[1]), dim=1).indices
            hits = ranked == labels.unsqueeze(1)
            hits1 += int(hits[:, 0].sum())
            hits5 += int(hits.any(dim=1).sum())
            loss_sum += float(F.cross_entropy(logits, labels, reduction="sum"))
            total += labels.shape[0]
    finally:
        model.train(was_training)
    if total == 0:
        raise ValueError("data yielded no samples")
    return {"top1": hits1 / total, "top5": hits5 / total, "loss": loss_sum / total}


def finetune(
    model: nn.Module,
    train_data: DataLoader[object] | Dataset[object],
    test_data: DataLoader[object] | Dataset[object],
    num_classes: int,
    pool: str = "cls",
    epochs: int = 10,
    batch_size: int = 64,
    lr: float | None = None,
    base_lr: float = 1e-3,
    weight_decay: float = 0.05,
    layer_decay: float = 0.75,
    drop_path_rate: float = 0.1,
    label_smoothing: float = 0.1,
    warmup_epochs: int = 1,
    min_lr: float = 1e-6,
    betas: tuple[float, float] = (0.9, 0.999),
    clip_grad_norm: float | None = None,
    max_steps: int | None = None,
    eval_every: int = 0,
    seed: int = 0,
    device: torch.device | str | None = None,
    amp: bool | None = None,
    num_workers: int = 0,
) -> FineTuneResult:
    """Fine-tunes an encoder (or a ready classifier) end to end and reports test accuracy.

    Args:
        model: An encoder, which is wrapped in a :class:`FineTuneClassifier` with ``pool``, or a
            :class:`FineTuneClassifier` used as is. It is trained in place and moved to
            ``device``.
        train_data: ``DataLoader`` or ``Dataset`` of ``(image, label, ...)`` with images
            (C, H, W); a ``Dataset`` is shuffled (seeded by ``seed``) into batches of
            ``batch_size``. Augmentation is the data set's job.
        test_data: ``DataLoader`` or ``Dataset`` for the final evaluation.
        num_classes: Number of classes C.
        pool: Feature pooling when ``model`` is an encoder, ``"cls"`` or ``"mean"``.
        epochs: Passes over ``train_data``.
        batch_size: Batch size for ``Dataset`` inputs.
        lr: Peak learning rate; when None, ``base_lr * batch_size / 256`` (MAE rule).
        base_lr: Learning rate per 256 samples.
        weight_decay: AdamW weight decay (not applied to biases, norms and tokens).
        layer_decay: Layer-wise lr decay, see :func:`param_groups_layer_decay`.
        drop_path_rate: Stochastic depth of the last block, see :func:`set_drop_path`; 0 turns
            it off. Encoders without timm-style blocks (e.g. torchvision ViTs) are left as
            they are, with a warning when the rate is not 0.
        label_smoothing: Label smoothing of the cross-entropy, in [0, 1).
        warmup_epochs: Epochs of linear warmup (may be 0).
        min_lr: Learning rate at the end of the cosine decay.
        betas: AdamW betas.
        clip_grad_norm: Clip the gradient norm to this value when given.
        max_steps: Stop after this many optimiser steps (the schedule is shortened to match).
        eval_every: Also evaluate on ``test_data`` every this many epochs (0: only at the end).
        seed: Seeds the head initialisation and the shuffling of a ``Dataset``.
        device: Where to train; defaults to the device of the model's parameters.
        amp: bf16 autocast (None: on CUDA only).
        num_workers: Loader workers for ``Dataset`` inputs.

    Returns:
        ``top1``, ``top5`` and ``loss`` on ``test_data``; ``history`` with per-epoch
        ``train_loss`` and ``lr`` (plus ``test_top1``/``test_epoch`` with ``eval_every``); and
        ``model``, the trained classifier.
    """
    _check_data(train_data, "train_data")
    _check_data(test_data, "test_data")
    check_positive_int(num_classes, "num_classes")
    check_positive_int(epochs, "epochs")
    check_positive_int(batch_size, "batch_size")
    peak_lr = (
        check_positive_float(base_lr, "base_lr") * batch_size / 256
        if lr is None
        else check_positive_float(lr, "lr")
    )
    min_lr = check_nonnegative_float(min_lr, "min_lr")
    label_smoothing = check_nonnegative_float(label_smoothing, "label_smoothing")
    if label_smoothing >= 1:
        raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing!r}")
    if isinstance(warmup_epochs, bool) or not isinstance(warmup_epochs, int):
        raise TypeError(f"warmup_epochs must be an int, got {warmup_epochs!r}")
    if not 0 <= warmup_epochs <= epochs:
        raise ValueError(f"warmup_epochs must be in [0, epochs={epochs}], got {warmup_epochs}")
    if max_steps is not None:
        check_positive_int(max_steps, "max_steps")
    if clip_grad_norm is not None:
        check_positive_float(clip_grad_norm, "clip_grad_norm")
    if isinstance(eval_every, bool) or not isinstance(eval_every, int) or eval_every < 0:
        raise ValueError(f"eval_every must be a non-negative int, got {eval_every!r}")
    if isinstance(betas, str) or not isinstance(betas, Sequence) or len(betas) != 2:
        raise TypeError(f"betas must be two numbers in [0, 1), got {betas!r}")
    beta1, beta2 = (check_float(b, "betas", 0.0, 1.0, high_open=True) for b in betas)

    generator = torch.Generator().manual_seed(seed)
    if isinstance(model, FineTuneClassifier):
        classifier = model
    else:
        classifier = FineTuneClassifier(model, num_classes, pool=pool, generator=generator)
    if classifier.head.out_features != num_classes:
        raise ValueError(
            f"num_classes={num_classes} does not match the classifier head with "
            f"{classifier.head.out_features} outputs"
        )
    if _has_drop_path_slots(classifier):
        set_drop_path(classifier, drop_path_rate)
    elif drop_path_rate > 0:
        warnings.warn(
            f"drop_path_rate={drop_path_rate} is ignored: {type(model).__name__} has no blocks "
            "with drop_path1/drop_path2 or drop_path attributes",
            stacklevel=2,
        )
    run_device = resolve_device(device, module_device(classifier))
    classifier.to(run_device)

    train_loader = (
        train_data
        if isinstance(train_data, DataLoader)
        else DataLoader(
            train_data,
            batch_size=batch_size,
            shuffle=True,
            drop_last=len(train_data) > batch_size,  # type: ignore[arg-type]
            generator=generator,
            num_workers=num_workers,
        )
    )
    test_loader = (
        test_data
        if isinstance(test_data, DataLoader)
        else DataLoader(test_data, batch_size=batch_size, num_workers=num_workers)
    )
    steps_per_epoch = len(train_loader)
    if steps_per_epoch == 0:
        raise ValueError("train_data yields no batches")
    total_steps = epochs * steps_per_epoch
    warmup_steps = warmup_epochs * steps_per_epoch
    if max_steps is not None and max_steps < total_steps:
        warmup_steps = round(warmup_steps * max_steps / total_steps)
        total_steps = max_steps

    groups = param_groups_layer_decay(classifier, weight_decay, layer_decay)
    optimizer = torch.optim.AdamW(groups, lr=peak_lr, betas=(beta1, beta2))

    history: dict[str, list[float]] = {"train_loss": [], "lr": []}
    if eval_every:
        history["test_top1"] = []
        history["test_epoch"] = []
    step = 0
    for epoch in range(epochs):
        classifier.train()
        loss_sum, batches, current_lr = 0.0, 0, peak_lr
        for images, labels in iterate_batches(train_loader):
            if step >= total_steps:
                break
            # The loop reads the loss back every step anyway, so checking the labels on the
            # host costs no extra sync; out-of-range labels would fail deep in cross_entropy.
            check_labels(labels, "train_data labels", num_classes, images.shape[0])
            current_lr = warmup_cosine_lr(step, total_steps, warmup_steps, peak_lr, min_lr)
            set_learning_rate(optimizer, current_lr)
            images, labels = images.to(run_device), labels.to(run_device, torch.long)
            with autocast_context(run_device, amp):
                logits = classifier(images)
            loss = F.cross_entropy(logits.float(), labels, label_smoothing=label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            torch.autograd.backward(loss)
            if clip_grad_norm is not None:
                nn.utils.clip_grad_norm_(classifier.parameters(), clip_grad_norm)
            optimizer.step()
            loss_sum += loss.item()
            batches += 1
            step += 1
        if batches:
            history["train_loss"].append(loss_sum / batches)
            history["lr"].append(current_lr)
        if eval_every and ((epoch + 1) % eval_every == 0 or epoch + 1 == epochs):
            metrics = evaluate_classifier(classifier, test_loader, run_device, amp)
            history["test_top1"].append(metrics["top1"])
            history["test_epoch"].append(float(epoch + 1))
        if step >= total_steps:
            break

    metrics = evaluate_classifier(classifier, test_loader, run_device, amp)
    return FineTuneResult(
        top1=metrics["top1"],
        top5=metrics["top5"],
        loss=metrics["loss"],
        history=history,
        model=classifier,
    )
