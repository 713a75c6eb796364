"""Stopping a run on SIGINT/SIGTERM without losing work: stop at the next step boundary.

A signal that arrives while training runs must not tear the process down in the middle of an
optimiser step (the weights would be half updated) nor be swallowed (Lightning turns SIGTERM into
a clean exit with status 0 and Ctrl-C into status 1). :class:`StopRequest` installs handlers that

* while a training loop has declared itself *graceful* (:meth:`StopRequest.graceful`), only
  record the signal: the loop's callback (:class:`~ssl_mae.training.callbacks.StopAtStepBoundary`)
  saves a checkpoint after the current step and raises :class:`StopRequested`;
* otherwise (imports, data loading, evaluation), or on a second signal, raise
  :class:`StopRequested` at once.

Only the standard library is imported, so the handlers can be installed before torch and
Lightning load (a Ctrl-C during those imports then ends with one line instead of a traceback).
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from types import FrameType

__all__ = ["STOP_SIGNALS", "StopRequest", "StopRequested"]

#: The signals that ask a run to stop: Ctrl-C and the default of ``kill``/schedulers.
STOP_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGTERM)


class StopRequested(BaseException):
    """A stop signal ended the run (a ``BaseException``, like ``KeyboardInterrupt``, so that
    ``except Exception`` blocks do not swallow it).

    Attributes:
        signum: The signal number.
        checkpoint: The checkpoint written at the step boundary, when there was one.
    """

    def __init__(self, signum: int, checkpoint: str | None = None) -> None:
        super().__init__(signum, checkpoint)
        self.signum = signum
        self.checkpoint = checkpoint

    @property
    def signal_name(self) -> str:
        """``"SIGINT"``, ``"SIGTERM"``, ... ."""
        try:
            return signal.Signals(self.signum).name
        except ValueError:
            return f"signal {self.signum}"

    @property
    def exit_status(self) -> int:
        """The shell convention ``128 + signum``: 130 for SIGINT, 143 for SIGTERM."""
        return 128 + self.signum


class StopRequest:
    """Signal handlers that turn SIGINT/SIGTERM into a stop at a safe point.

    Use :meth:`install` once at program start and :meth:`graceful` around the training loop.
    """

    def __init__(self) -> None:
        self.pending: int | None = None
        self._graceful = False
        self._previous: dict[int, object] = {}

    def install(self) -> None:
        """Installs the handlers for :data:`STOP_SIGNALS` (main thread only)."""
        for signum in STOP_SIGNALS:
            self._previous[signum] = signal.signal(signum, self._handle)

    def uninstall(self) -> None:
        """Restores the handlers found by :meth:`install`."""
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]
        self._previous.clear()

    @contextlib.contextmanager
    def graceful(self) -> Iterator[StopRequest]:
        """While active, a first signal is recorded in :attr:`pending` instead of raising."""
        self._graceful = True
        try:
            yield self
        finally:
            self._graceful = False

    def take(self) -> int | None:
        """The pending signal number (None when there is none)."""
        return self.pending

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self._graceful and self.pending is None:
            self.pending = signum
            return
        raise StopRequested(signum)
