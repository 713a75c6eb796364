"""Linear probe on frozen features, as in the MAE paper (He et al. 2021, appendix A.2).

The classifier is ``BatchNorm1d(affine=False)`` followed by a ``Linear`` layer: the parameter-free
batch norm whitens the features per dimension, which MAE features need because their scales
differ widely across dimensions, and it can be folded into the linear layer afterwards, so the
probe is still a linear classifier. Features are computed once (see :func:`extract_features`)
and the probe trains on the feature tensor, which makes a 60k-sample probe a matter of seconds on
a CPU.

Two ways to train it:

* ``"lbfgs"``: the whole training set as one batch (batch norm then standardises with the exact
  statistics of the set) and L-BFGS on the cross-entropy plus an L2 penalty of ``1 / N`` on the
  weights. That is scikit-learn's ``LogisticRegression()`` (C=1) on standardised features, solved
  to convergence: the probe reaches the accuracy of the best linear classifier whatever the size
  of the set. The default (``optimizer="auto"``) when no mini-batch setting is given and the
  features fit (N x D <= :data:`LBFGS_MAX_VALUES`).
* ``"lars"`` (the MAE paper's) or ``"sgd"``: mini-batches with a linear warmup and a cosine decay
  per step; batch size and epochs derived from the set size by :func:`default_probe_schedule`
  unless given.
"""

from __future__ import annotations

from typing import Any, NamedTuple, TypedDict, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from ssl_mae._validation import check_float, check_positive_int
from ssl_mae.evaluation.features import extract_features
from ssl_mae.evaluation.lars import LARS
from ssl_mae.evaluation.metrics import (
    check_features,
    check_labels,
    check_nonnegative_float,
    check_positive_float,
    check_same_dim,
    resolve_device,
    topk_accuracy,
)
from ssl_mae.evaluation.schedule import set_learning_rate, warmup_cosine_lr

OPTIMIZER_CHOICES: tuple[str, ...] = ("auto", "lbfgs", "lars", "sgd")
# Learning rate per 256 samples when none is given; measured on Fashion-MNIST (60k samples):
# both reach their best accuracy within 30 epochs, while 0.1 (the MAE ImageNet value) with LARS
# leaves the probe under-trained (76% instead of 84.6% on raw pixels after 10 epochs).
DEFAULT_BASE_LR: dict[str, float] = {"lars": 1.0, "sgd": 0.05}
#: Largest N x D for which ``optimizer="auto"`` trains full-batch with L-BFGS (256 MB float32,
#: e.g. 60 000 x 1024); larger sets train with LARS on mini-batches.
LBFGS_MAX_VALUES = 1 << 26
#: Iterations L-BFGS may take when ``epochs`` is not given (scikit-learn's default is 100, its
#: solver usually needs a few hundred on frozen features).
LBFGS_MAX_ITERATIONS = 1000
# The size-derived mini-batch schedule of default_probe_schedule.
PROBE_STEPS_PER_EPOCH = 8
PROBE_MIN_BATCH = 16
PROBE_MAX_BATCH = 1024
PROBE_MIN_STEPS = 3000
PROBE_MIN_EPOCHS = 30
DEFAULT_WARMUP_EPOCHS = 3


class LinearProbe(nn.Module):
    """``BatchNorm1d(affine=False)`` + ``Linear``, the MAE linear classification head.

    Args:
        embed_dim: Feature dimension D.
        num_classes: Number of classes C.
        generator: Random generator for the weight initialisation (default: the global one).
    """

    def __init__(
        self, embed_dim: int, num_classes: int, generator: torch.Generator | None = None
    ) -> None:
        super().__init__()
        check_positive_int(embed_dim, "embed_dim")
        check_positive_int(num_classes, "num_classes")
        self.norm = nn.BatchNorm1d(embed_dim, affine=False, eps=1e-6)
        self.linear = nn.Linear(embed_dim, num_classes)
        # MAE initialises the probe with small weights (truncated normal, std 0.01) so that every
        # class starts out equally likely; drawn here so that a generator can seed it.
        with torch.no_grad():
            weight = torch.randn(self.linear.weight.shape, generator=generator)
            self.linear.weight.copy_(weight.clamp_(-2.0, 2.0) * 0.01)
            self.linear.bias.zero_()

    def forward(self, features: Tensor) -> Tensor:
        """Class logits.

        Args:
            features: (B, D) frozen features.

        Returns:
            (B, C) logits.
        """
        logits: Tensor = self.linear(self.norm(features))
        return logits


def default_probe_schedule(num_train: int) -> tuple[int, int]:
    """Batch size and epochs of a mini-batch probe on ``num_train`` samples, when not given.

    The batch is ``num_train / PROBE_STEPS_PER_EPOCH`` (8) rounded down to a power of two and kept
    in [``PROBE_MIN_BATCH``, ``PROBE_MAX_BATCH``] = [16, 1024] (and at most the set), so a small
    set still takes several steps per epoch with batch-norm statistics of a usable batch (a batch
    of 1024 on 2 000 samples takes one step per epoch); the epochs are as many as it takes to
    reach ``PROBE_MIN_STEPS`` (3000) optimiser steps, and at least ``PROBE_MIN_EPOCHS`` (30).

    Args:
        num_train: Number of training samples.

    Returns:
        ``(batch_size, epochs)``; e.g. 2 000 samples -> (128, 200), 60 000 -> (1024, 52).
    """
    check_positive_int(num_train, "num_train")
    target = max(num_train // PROBE_STEPS_PER_EPOCH, 1)
    batch_size = 1 << (target.bit_length() - 1)  # the power of two <= target
    batch_size = min(max(PROBE_MIN_BATCH, min(PROBE_MAX_BATCH, batch_size)), num_train)
    steps_per_epoch = max(num_train // batch_size, 1)
    epochs = max(PROBE_MIN_EPOCHS, -(-PROBE_MIN_STEPS // steps_per_epoch))
    return batch_size, epochs


class LinearProbeResult(TypedDict):
    """Final test accuracies in [0, 1], per-epoch history, the trained probe (on the CPU) and
    the settings it was trained with (``optimizer``, ``epochs``, ``batch_size``, ``lr``,
    ``weight_decay``)."""

    top1: float
    top5: float
    history: dict[str, list[float]]
    probe: LinearProbe
    settings: dict[str, Any]


@torch.no_grad()
def _predict(probe: nn.Module, features: Tensor, device: torch.device, batch_size: int) -> Tensor:
    probe.eval()
    logits = [
        probe(features[start : start + batch_size].to(device, torch.float32)).cpu()
        for start in range(0, features.shape[0], batch_size)
    ]
    return torch.cat(logits)


def _check_int_option(value: object, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def choose_optimizer(optimizer: str, num_train: int, dim: int, minibatch_settings: bool) -> str:
    """Resolves ``optimizer="auto"``: full-batch ``"lbfgs"`` unless a mini-batch setting was
    given or the features are larger than :data:`LBFGS_MAX_VALUES`, then ``"lars"``."""
    if optimizer not in OPTIMIZER_CHOICES:
        raise ValueError(f"optimizer must be one of {OPTIMIZER_CHOICES}, got {optimizer!r}")
    if optimizer != "auto":
        return optimizer
    fits = num_train * dim <= LBFGS_MAX_VALUES
    return "lbfgs" if fits and not minibatch_settings else "lars"


def train_linear_probe(
    train_features: Tensor,
    train_labels: Tensor,
    test_features: Tensor,
    test_labels: Tensor,
    num_classes: int,
    epochs: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    base_lr: float | None = None,
    optimizer: str = "auto",
    weight_decay: float | None = None,
    momentum: float = 0.9,
    warmup_epochs: int | None = None,
    min_lr: float = 0.0,
    eval_every: int = 0,
    seed: int = 0,
    device: torch.device | str | None = None,
) -> LinearProbeResult:
    """Trains a :class:`LinearProbe` on precomputed features and reports its test accuracy.

    With nothing but the features given, the probe is fitted to convergence with full-batch
    L-BFGS (see the module docstring), which matches scikit-learn's ``LogisticRegression`` on
    standardised features; any mini-batch setting (``epochs``, ``batch_size``, ``lr``,
    ``base_lr``, ``warmup_epochs``) selects LARS instead, as in the MAE paper.

    Args:
        train_features: (N, D) frozen training features.
        train_labels: (N,) integer labels in [0, num_classes).
        test_features: (M, D) frozen test features.
        test_labels: (M,) integer labels in [0, num_classes).
        num_classes: Number of classes C.
        epochs: Passes over the training features (for ``"lbfgs"``: the most iterations, each
            one pass, default :data:`LBFGS_MAX_ITERATIONS`); None derives them from the set size
            (see :func:`default_probe_schedule`).
        batch_size: Samples per step (the last, smaller batch of an epoch is dropped when the
            data set holds more than one batch, so batch-norm statistics stay reliable); None
            derives it from the set size (see :func:`default_probe_schedule`). ``"lbfgs"``
            always uses the whole set.
        lr: Peak learning rate. When None it is ``base_lr * batch_size / 256`` (the MAE rule).
        base_lr: Learning rate per 256 samples, used when ``lr`` is None. Defaults to
            :data:`DEFAULT_BASE_LR` of the optimiser: 1.0 for LARS, 0.05 for SGD. MAE uses 0.1
            with LARS, but for 90 epochs of ImageNet at batch 16384; with LARS the progress
            per epoch is proportional to ``base_lr * num_samples``, so data sets 20x smaller
            than ImageNet need a ``base_lr`` about 10x larger to converge in 30 epochs.
        optimizer: ``"auto"`` (see above), ``"lbfgs"`` (full batch, line search),
            ``"lars"`` (MAE; insensitive to the feature scale) or ``"sgd"`` (with momentum).
        weight_decay: L2 penalty on the linear weight; None: ``1 / N`` for ``"lbfgs"``
            (scikit-learn's C=1), 0 for LARS and SGD (MAE).
        momentum: Momentum of LARS and SGD.
        warmup_epochs: Epochs of linear warmup before the cosine decay (LARS, SGD); None: 3,
            or ``epochs`` when that is smaller.
        min_lr: Learning rate at the end of the cosine decay (LARS, SGD).
        eval_every: Also measure test top-1 every this many epochs (0: only at the end).
        seed: Seeds the probe initialisation and the shuffling; the global RNG is untouched.
        device: Where to train; defaults to the device of ``train_features``.

    Returns:
        ``top1``/``top5`` test accuracies in [0, 1]; ``history`` with per-epoch ``train_loss``,
        ``lr`` (at the epoch's last step), and ``test_top1`` / ``test_epoch`` when ``eval_every``
        is set; ``probe``, the trained model on the CPU; ``settings``, what it was trained with.
    """
    train_features = check_features(train_features, "train_features")
    test_features = check_features(test_features, "test_features")
    check_same_dim(train_features, "train_features", test_features, "test_features")
    check_positive_int(num_classes, "num_classes")
    train_labels = check_labels(train_labels, "train_labels", num_classes, train_features.shape[0])
    test_labels = check_labels(test_labels, "test_labels", num_classes, test_features.shape[0])
    num_train, dim = train_features.shape
    if num_train < 2:
        raise ValueError(
            f"train_features must hold at least 2 samples for the probe's BatchNorm, got "
            f"{num_train}"
        )
    minibatch = any(v is not None for v in (epochs, batch_size, lr, base_lr, warmup_epochs))
    optimizer = choose_optimizer(optimizer, num_train, dim, minibatch)
    if epochs is not None:
        check_positive_int(epochs, "epochs")
    if weight_decay is None:
        weight_decay = 1.0 / num_train if optimizer == "lbfgs" else 0.0
    weight_decay = check_nonnegative_float(weight_decay, "weight_decay")
    _check_int_option(eval_every, "eval_every", 0)
    momentum = check_float(momentum, "momentum", 0.0, 1.0, high_open=True)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {seed!r}")

    run_device = resolve_device(device, train_features.device)
    generator = torch.Generator().manual_seed(seed)
    probe = LinearProbe(dim, num_classes, generator=generator).to(run_device)
    evaluate = _Evaluation(test_features, test_labels, run_device, eval_every)
    if optimizer == "lbfgs":
        if batch_size is not None and batch_size != num_train:
            raise ValueError(
                f"optimizer='lbfgs' trains on the whole set (batch {num_train}), got "
                f"batch_size={batch_size}; leave batch_size unset or use 'lars'/'sgd'"
            )
        iterations = LBFGS_MAX_ITERATIONS if epochs is None else epochs
        history, used = _fit_lbfgs(
            probe, train_features, train_labels, weight_decay, iterations, evaluate
        )
        settings: dict[str, Any] = {"epochs": used, "batch_size": num_train, "lr": 1.0}
    else:
        default_batch, default_epochs = default_probe_schedule(num_train)
        epochs = default_epochs if epochs is None else epochs
        batch_size = (
            default_batch if batch_size is None else check_positive_int(batch_size, "batch_size")
        )
        # Training batches hold min(batch_size, N) samples, and BatchNorm needs two of them.
        if batch_size < 2:
            raise ValueError(
                f"batch_size must be >= 2: the probe's BatchNorm needs two samples per batch, "
                f"got {batch_size}"
            )
        if lr is not None:
            peak_lr = check_positive_float(lr, "lr")
        else:
            base_lr = DEFAULT_BASE_LR[optimizer] if base_lr is None else base_lr
            peak_lr = check_positive_float(base_lr, "base_lr") * batch_size / 256
        min_lr = check_nonnegative_float(min_lr, "min_lr")
        if warmup_epochs is None:
            warmup_epochs = min(DEFAULT_WARMUP_EPOCHS, epochs)
        if isinstance(warmup_epochs, bool) or not isinstance(warmup_epochs, int):
            raise TypeError(f"warmup_epochs must be an int, got {warmup_epochs!r}")
        if not 0 <= warmup_epochs <= epochs:
            raise ValueError(f"warmup_epochs must be in [0, epochs={epochs}], got {warmup_epochs}")
        optim: torch.optim.Optimizer
        if optimizer == "lars":
            optim = LARS(
                probe.parameters(), lr=peak_lr, weight_decay=weight_decay, momentum=momentum
            )
        else:
            optim = torch.optim.SGD(
                probe.parameters(), lr=peak_lr, weight_decay=weight_decay, momentum=momentum
            )
        schedule = _Schedule(epochs, batch_size, peak_lr, warmup_epochs, min_lr)
        history = _fit_minibatch(
            probe, optim, train_features, train_labels, schedule, generator, evaluate
        )
        settings = {"epochs": epochs, "batch_size": batch_size, "lr": peak_lr}

    logits = _predict(probe, test_features, run_device, 4096)
    top1, top5 = topk_accuracy(logits, test_labels, (1, 5))
    settings.update(optimizer=optimizer, weight_decay=weight_decay)
    return LinearProbeResult(
        top1=top1, top5=top5, history=history, probe=probe.cpu(), settings=settings
    )


class _Evaluation:
    """Test top-1 every ``every`` epochs (and after the last), recorded in the history."""

    def __init__(self, features: Tensor, labels: Tensor, device: torch.device, every: int) -> None:
        self.features, self.labels, self.device, self.every = features, labels, device, every

    def start(self, history: dict[str, list[float]]) -> None:
        if self.every:
            history["test_top1"] = []
            history["test_epoch"] = []

    def after_epoch(
        self, probe: nn.Module, history: dict[str, list[float]], epoch: int, last: bool
    ) -> None:
        if self.every and (epoch % self.every == 0 or last):
            logits = _predict(probe, self.features, self.device, 4096)
            history["test_top1"].append(topk_accuracy(logits, self.labels, (1,))[0])
            history["test_epoch"].append(float(epoch))


class _Schedule(NamedTuple):
    epochs: int
    batch_size: int
    peak_lr: float
    warmup_epochs: int
    min_lr: float


def _fit_minibatch(
    probe: LinearProbe,
    optim: torch.optim.Optimizer,
    features: Tensor,
    labels: Tensor,
    schedule: _Schedule,
    generator: torch.Generator,
    evaluate: _Evaluation,
) -> dict[str, list[float]]:
    """LARS/SGD on shuffled mini-batches with warmup + cosine per step."""
    device = next(probe.parameters()).device
    num_train = features.shape[0]
    batch_size = schedule.batch_size
    # Dropping the ragged last batch keeps batch-norm statistics sane (a batch of one would
    # break BatchNorm1d), unless the whole set is smaller than a batch.
    steps_per_epoch = max(num_train // batch_size, 1)
    total_steps = schedule.epochs * steps_per_epoch
    warmup_steps = schedule.warmup_epochs * steps_per_epoch
    features_on_device = features.to(device, torch.float32)
    labels_on_device = labels.to(device, torch.long)
    history: dict[str, list[float]] = {"train_loss": [], "lr": []}
    evaluate.start(history)
    epoch_losses: list[Tensor] = []
    step = 0
    for epoch in range(schedule.epochs):
        probe.train()
        order = torch.randperm(num_train, generator=generator).to(device)
        epoch_loss = torch.zeros((), device=device)
        current_lr = schedule.peak_lr
        for batch in range(steps_per_epoch):
            current_lr = warmup_cosine_lr(
                step, total_steps, warmup_steps, schedule.peak_lr, schedule.min_lr
            )
            set_learning_rate(optim, current_lr)
            index = order[batch * batch_size : (batch + 1) * batch_size]
            loss = F.cross_entropy(probe(features_on_device[index]), labels_on_device[index])
            optim.zero_grad(set_to_none=True)
            torch.autograd.backward(loss)
            optim.step()
            epoch_loss += loss.detach()
            step += 1
        epoch_losses.append(epoch_loss / steps_per_epoch)  # read back once, after training
        history["lr"].append(current_lr)
        evaluate.after_epoch(probe, history, epoch + 1, epoch + 1 == schedule.epochs)
    history["train_loss"] = torch.stack(epoch_losses).tolist()
    return history


def _fit_lbfgs(
    probe: LinearProbe,
    features: Tensor,
    labels: Tensor,
    weight_decay: float,
    max_iterations: int,
    evaluate: _Evaluation,
) -> tuple[dict[str, list[float]], int]:
    """Full-batch L-BFGS (strong Wolfe line search) to convergence or ``max_iterations``.

    Returns:
        The history (one entry per ``evaluate.every`` iterations, or one at the end) and the
        iterations taken.
    """
    device = next(probe.parameters()).device
    inputs = features.to(device, torch.float32)
    targets = labels.to(device, torch.long)
    chunk = evaluate.every or max_iterations
    optim = torch.optim.LBFGS(
        probe.parameters(),
        lr=1.0,
        max_iter=chunk,
        history_size=20,
        line_search_fn="strong_wolfe",
        tolerance_grad=1e-6,
        tolerance_change=1e-9,
    )

    def objective() -> Tensor:
        optim.zero_grad(set_to_none=True)
        weight = probe.linear.weight
        loss = F.cross_entropy(probe(inputs), targets) + 0.5 * weight_decay * weight.pow(2).sum()
        torch.autograd.backward(loss)
        return loss

    history: dict[str, list[float]] = {"train_loss": [], "lr": []}
    evaluate.start(history)
    probe.train()
    used = 0
    while used < max_iterations:
        group = optim.param_groups[0]
        group["max_iter"] = min(chunk, max_iterations - used)
        # The line search may evaluate several times per iteration; iterations are the budget.
        group["max_eval"] = 25 * group["max_iter"]
        before = used
        loss = optim.step(objective)  # type: ignore[no-untyped-call]
        used = int(optim.state[probe.linear.weight]["n_iter"])
        history["train_loss"].append(float(loss.detach()))
        history["lr"].append(1.0)
        converged = used - before < group["max_iter"]
        _exact_statistics(probe, inputs)
        evaluate.after_epoch(probe, history, used, converged or used >= max_iterations)
        probe.train()
        if converged:
            break
    _exact_statistics(probe, inputs)
    return history, used


@torch.no_grad()
def _exact_statistics(probe: LinearProbe, inputs: Tensor) -> None:
    """Sets the batch norm's running statistics to the ones the full batch was normalised with
    (the exponential average of the line search's many evaluations is only close to them)."""
    # LinearProbe's batch norm tracks running statistics, so both buffers exist.
    cast(Tensor, probe.norm.running_mean).copy_(inputs.mean(dim=0))
    cast(Tensor, probe.norm.running_var).copy_(inputs.var(dim=0, unbiased=False))


def linear_probe_encoder(
    encoder: nn.Module,
    train_data: DataLoader[object] | Dataset[object],
    test_data: DataLoader[object] | Dataset[object],
    num_classes: int,
    pool: str = "cls",
    device: torch.device | str | None = None,
    amp: bool | None = None,
    batch_size: int = 256,
    **probe_kwargs: Any,
) -> LinearProbeResult:
    """Extracts frozen features of ``encoder`` once, then runs :func:`train_linear_probe`.

    Args:
        encoder: Backbone (see :func:`~ssl_mae.evaluation.extract_features`).
        train_data: Training images with labels, a ``DataLoader`` or ``Dataset``.
        test_data: Test images with labels, a ``DataLoader`` or ``Dataset``.
        num_classes: Number of classes C.
        pool: ``"cls"`` or ``"mean"`` feature pooling.
        device: Where to run the encoder and the probe.
        amp: bf16 autocast for the feature extraction (None: on CUDA only).
        batch_size: Batch size of the extraction and, unless overridden in ``probe_kwargs``,
            of the probe.
        **probe_kwargs: Further arguments of :func:`train_linear_probe`.

    Returns:
        The result of :func:`train_linear_probe`.
    """
    train_features, train_labels = extract_features(
        encoder, train_data, pool=pool, device=device, amp=amp, batch_size=batch_size
    )
    test_features, test_labels = extract_features(
        encoder, test_data, pool=pool, device=device, amp=amp, batch_size=batch_size
    )
    probe_kwargs.setdefault("batch_size", batch_size)
    return train_linear_probe(
        train_features.to(device) if device is not None else train_features,
        train_labels,
        test_features,
        test_labels,
        num_classes,
        device=device,
        **probe_kwargs,
    )
