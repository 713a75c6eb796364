"""Argument types, the exit statuses and the options several subcommands share.

Only the standard library is imported here: the parser must build without torch models,
Lightning, timm or torchvision.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import Any, NoReturn

PROG = "ssl-mae"
EXIT_FAILURE = 1
EXIT_USAGE = 2

#: Pooling of the encoder tokens into one feature per image (CLI default: ``mean``).
POOL_CHOICES: tuple[str, ...] = ("mean", "cls")
POOL_HELP = (
    "feature of an image: 'mean' of the patch tokens or the 'cls' token (default: mean, which "
    "gives MAE encoders better frozen features; note that encoder(x) and "
    "ssl_mae.evaluation.extract_features default to the class token)"
)


class UsageError(ValueError):
    """A mistake in the command line (reported without a traceback, exit status 2)."""


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``ssl-mae: error: ...`` and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{PROG}: error: {message} (see {self.prog} --help)\n")


# --- argument types ----------------------------------------------------------------------------
def _number(text: str, kind: Callable[[str], Any], what: str) -> Any:
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None


def positive_int(text: str) -> int:
    """An int >= 1."""
    value = int(_number(text, int, "a positive integer"))
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def nonnegative_int(text: str) -> int:
    """An int >= 0."""
    value = int(_number(text, int, "an integer >= 0"))
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """A finite float > 0."""
    value = float(_number(text, float, "a positive number"))
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return value


def nonnegative_float(text: str) -> float:
    """A finite float >= 0."""
    value = float(_number(text, float, "a number >= 0"))
    if not (value >= 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text!r}")
    return value


def mask_ratio(text: str) -> float:
    """A fraction in (0, 1): a pre-training run with nothing masked has nothing to learn."""
    value = float(_number(text, float, "a number in (0, 1)"))
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(
            f"must be in (0, 1), got {text!r} (with 0 nothing is masked and the loss is 0)"
        )
    return value


def ratio(text: str) -> float:
    """A fraction in [0, 1)."""
    value = float(_number(text, float, "a number in [0, 1)"))
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text!r}")
    return value


def scale(text: str) -> float:
    """A fraction in (0, 1]."""
    value = float(_number(text, float, "a number in (0, 1]"))
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text!r}")
    return value


def devices(text: str) -> int | str:
    """``auto`` or a positive number of devices."""
    if text == "auto":
        return text
    try:
        return positive_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"must be 'auto' or a positive number of devices, got {text!r}"
        ) from None


def normalization(text: str) -> str:
    """``imagenet``, ``fashion_mnist``, ``none`` or ``MEAN[,MEAN,...]/STD[,STD,...]``."""
    if text in ("imagenet", "fashion_mnist", "none"):
        return text
    parts = text.split("/")
    try:
        if len(parts) != 2:
            raise ValueError
        means = [float(v) for v in parts[0].split(",")]
        stds = [float(v) for v in parts[1].split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be imagenet, fashion_mnist, none or MEAN[,..]/STD[,..] (e.g. "
            f"0.5,0.5,0.5/0.25,0.25,0.25), got {text!r}"
        ) from None
    if len(means) != len(stds) or not all(s > 0 and math.isfinite(s) for s in stds):
        raise argparse.ArgumentTypeError(f"needs as many means as positive stds, got {text!r}")
    return text


def parse_normalization(text: str | None) -> dict[str, list[float]] | str | None:
    """The value of ``--normalize``: a mapping, None for ``none``, or the text ``"auto"`` when the
    option was not given (use the checkpoint's)."""
    if text is None:
        return "auto"
    if text == "none":
        return None
    if text in ("imagenet", "fashion_mnist"):
        from ssl_mae.transforms import FASHION_MNIST_NORMALIZE, IMAGENET_NORMALIZE

        chosen = IMAGENET_NORMALIZE if text == "imagenet" else FASHION_MNIST_NORMALIZE
        return {k: [float(x) for x in v] for k, v in chosen.items()}
    means, stds = text.split("/")
    return {
        "mean": [float(v) for v in means.split(",")],
        "std": [float(v) for v in stds.split(",")],
    }


# --- options shared by several subcommands -----------------------------------------------------
def add_unset(group: Any, flag: str, help: str, **settings: Any) -> None:
    """Adds ``flag`` to a parser or argument group with the value None unless it is given: the
    command resolves the default later (from the preset, the data, the checkpoint or its run).

    Args:
        group: An ``argparse.ArgumentParser`` or an argument group of one.
        flag: The option, e.g. ``"--epochs"``.
        help: Its help text.
        **settings: Further ``add_argument`` settings (``type``, ``choices``, ``action``, ...).
    """
    group.add_argument(flag, default=None, help=help, **settings)


def add_debug(parser: argparse.ArgumentParser) -> None:
    """``--debug``: tracebacks instead of one-line errors."""
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")


def add_device(parser: argparse.ArgumentParser) -> None:
    """``--device`` of the one-device commands (``pretrain`` uses Lightning's options)."""
    parser.add_argument(
        "--device",
        default="auto",
        help="where to run: auto, cpu, cuda, cuda:N, gpu (= cuda) or mps (default: auto = cuda "
        "when a GPU is available, else cpu; pretrain takes Lightning's --accelerator/--devices)",
    )


def add_checkpoint(parser: argparse.ArgumentParser) -> None:
    """``--checkpoint`` and ``--normalize``."""
    parser.add_argument(
        "--checkpoint",
        required=True,
        help="checkpoint of ssl-mae pretrain, of the examples or of MAE (verified against "
        "CHECKPOINT.sha256 when present)",
    )
    parser.add_argument(
        "--normalize",
        type=normalization,
        default=None,
        help="input normalisation: imagenet, fashion_mnist, none or MEAN,../STD,.. (default: "
        "the one the checkpoint's run recorded; required for checkpoints that record none)",
    )


def add_pool(parser: Any, default: str | None = "mean") -> None:
    """``--pool`` (``pretrain`` leaves it None: its run records the resolved value)."""
    parser.add_argument("--pool", choices=POOL_CHOICES, default=default, help=POOL_HELP)


def add_eval_batch_size(parser: Any, default: int | None = 256) -> None:
    """``--eval-batch-size`` (256 images unless ``default`` says otherwise)."""
    parser.add_argument(
        "--eval-batch-size",
        type=positive_int,
        default=default,
        help="images per forward pass when extracting features (default: 256)",
    )
