"""The ``ssl-mae`` entry point: the parser, the signal handlers and the one-line errors."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import TextIO

from ssl_mae.cli.options import EXIT_FAILURE, EXIT_USAGE, PROG, Parser, UsageError

__all__ = ["PROG", "build_parser", "main"]


def _version() -> str:
    from ssl_mae import __version__

    return __version__


def build_parser() -> argparse.ArgumentParser:
    """The ``ssl-mae`` argument parser with its subcommands (imports no model code)."""
    from ssl_mae.cli import embed, evaluate, export, presets, pretrain, reconstruct

    parser = Parser(
        prog=PROG,
        description="Masked Autoencoder pre-training, evaluation, export and embeddings: from a "
        "folder of images to an encoder in your framework.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    for command in (pretrain, evaluate, export, embed, reconstruct, presets):
        command.add_parser(sub)
    return parser


def _first_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    lines = text.splitlines()
    if lines[0].startswith("Caught ") and "DataLoader worker process" in lines[0]:
        # torch re-raises a worker's error with the worker's traceback as its message; the
        # error itself is the traceback's last line ("OSError: <message>").
        last = lines[-1]
        prefix = f"{type(error).__name__}: "
        return last[len(prefix) :] if last.startswith(prefix) else last
    return lines[0]


def _user_errors() -> tuple[type[BaseException], ...]:
    # OSError covers unreadable inputs (no readable image in a folder, permission denied):
    # problems with what the user pointed us at, not bugs; --debug still shows the traceback.
    errors: list[type[BaseException]] = [ValueError, TypeError, OSError]
    if "lightning_fabric" in sys.modules:
        from lightning_fabric.utilities.exceptions import MisconfigurationException

        errors.append(MisconfigurationException)
    return tuple(errors)


def _failures() -> tuple[type[BaseException], ...]:
    """Errors of a run that is well specified but fails: exit status 1."""
    failures: list[type[BaseException]] = []
    if "ssl_mae.training.callbacks" in sys.modules:
        from ssl_mae.training.callbacks import NonFiniteLossError

        failures.append(NonFiniteLossError)
    if "ssl_mae.training.checkpoints" in sys.modules:
        from ssl_mae.training.checkpoints import CheckpointWriteError

        failures.append(CheckpointWriteError)
    return tuple(failures)


def _lightning_sigterm(error: BaseException) -> bool:
    """Lightning's own SIGTERM handling ends ``fit`` with ``SIGTERMException`` (exit status 0)."""
    return type(error).__name__ == "SIGTERMException"


def _interrupted(signal_name: str, exit_status: int, checkpoint: str | None) -> int:
    where = f"; resume with: {PROG} pretrain --resume {checkpoint}" if checkpoint else ""
    print(f"{PROG}: interrupted by {signal_name}{where}", file=sys.stderr, flush=True)
    return exit_status


def main(argv: Sequence[str] | None = None) -> int:
    """Runs ``ssl-mae`` with ``argv`` (default: ``sys.argv[1:]``) and returns the exit status.

    Args:
        argv: Command-line arguments without the program name.

    Returns:
        0 on success, 2 for mistakes in the input, 1 when a run fails (a NaN loss, a full disk,
        an unexpected error), 130 after SIGINT and 143 after SIGTERM.
    """
    from ssl_mae.training.signals import StopRequest, StopRequested

    stop = StopRequest()
    stop.install()  # before torch and Lightning load: a Ctrl-C there ends with one line
    args: argparse.Namespace | None = None
    try:
        parser = build_parser()
        try:
            args = parser.parse_args(argv)
        except SystemExit as exit_:
            return int(exit_.code or 0)
        _configure_logging()
        args.stop_request = stop
        func: Callable[[argparse.Namespace], int] = args.func
        return func(args)
    except StopRequested as stopped:
        return _interrupted(stopped.signal_name, stopped.exit_status, stopped.checkpoint)
    except KeyboardInterrupt:  # raised by code that installs its own SIGINT handling
        return _interrupted("SIGINT", 130, None)
    except SystemExit as exit_:
        if _lightning_sigterm(exit_):
            return _interrupted("SIGTERM", 143, None)
        raise
    except Exception as error:
        if args is not None and getattr(args, "debug", False):
            raise
        if isinstance(error, _failures()):
            status = EXIT_FAILURE
        elif isinstance(error, (UsageError, *_user_errors())):
            status = EXIT_USAGE
        else:
            print(
                f"{PROG}: error: unexpected {type(error).__name__}: {_first_line(error)} (run "
                "again with --debug for the traceback)",
                file=sys.stderr,
                flush=True,
            )
            return EXIT_FAILURE
        print(f"{PROG}: error: {_first_line(error)}", file=sys.stderr, flush=True)
        return status
    finally:
        stop.uninstall()


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """Python warnings as one line each: ``ssl-mae: warning: ...``."""
    text = str(message).strip().splitlines()[0] if str(message).strip() else category.__name__
    print(f"{PROG}: warning: {text}", file=file or sys.stderr, flush=True)


def _configure_logging() -> None:
    warnings.showwarning = _show_warning
    logging.basicConfig(level=logging.WARNING, format=f"{PROG}: %(levelname)s: %(message)s")
    # Lightning announces devices and data loading at INFO on stderr; keep stderr for our own
    # warnings and the one-line error.
    for name in ("lightning.pytorch", "pytorch_lightning", "lightning.fabric", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)


if __name__ == "__main__":  # pragma: no cover
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
