"""Ctrl-C and SIGTERM: the first stops a run cleanly, a second kills it at once.

The loop watches the signals where it can (``loop.add_signal_handler``). Where it cannot
(Windows' event loops raise NotImplementedError), a plain ``signal.signal`` handler hands the
same stop to the loop's thread with ``loop.call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable
from types import FrameType
from typing import Any

__all__ = ["StopSignals"]


class StopSignals:
    """Turn the first SIGINT or SIGTERM into one ``stop`` call on the loop; a second kills.

    Where the loop cannot watch signals itself (Windows' loops raise NotImplementedError), a
    plain handler hands the same stop to the loop's thread.

    :param loop: the running loop that ``stop`` runs on.
    :param stop: called once, with the signal, on the loop's thread.
    """

    handled = (signal.SIGINT, signal.SIGTERM)

    def __init__(
        self, loop: asyncio.AbstractEventLoop, stop: Callable[[signal.Signals], None]
    ) -> None:
        self._loop = loop
        self._stop = stop
        self._on_loop: list[signal.Signals] = []
        self._previous: dict[signal.Signals, Any] = {}

    def install(self) -> None:
        """Start watching the signals."""
        for signum in self.handled:
            # Given back by remove(), in either way of watching: after a stop, a later Ctrl-C
            # must do what it did before the run (asyncio.run's own handler, or the default).
            self._previous[signum] = signal.getsignal(signum)
            try:
                self._loop.add_signal_handler(signum, self._fired, signum)
                self._on_loop.append(signum)
            except NotImplementedError:
                with contextlib.suppress(ValueError, OSError):  # ValueError: not the main thread
                    signal.signal(signum, self._from_thread)
            except RuntimeError:
                pass  # not the main thread: nobody can signal this run

    def _from_thread(self, signum: int, frame: FrameType | None) -> None:
        # A plain handler runs between two bytecodes of the main thread, maybe in the middle
        # of the loop's own work: only a thread-safe hand-over is safe here.
        self._loop.call_soon_threadsafe(self._fired, signal.Signals(signum))

    def _fired(self, signum: signal.Signals) -> None:
        for other in self.handled:
            if other in self._on_loop:
                self._loop.remove_signal_handler(other)
            # A second signal kills at once: every commit is atomic, nothing is lost.
            with contextlib.suppress(ValueError, OSError):
                signal.signal(other, signal.SIG_DFL)
        self._on_loop.clear()
        self._stop(signum)

    def remove(self) -> None:
        """Stop watching, and give the signals their earlier handlers back."""
        for signum in self._on_loop:
            with contextlib.suppress(RuntimeError):
                self._loop.remove_signal_handler(signum)
        self._on_loop.clear()
        for signum, previous in self._previous.items():
            # None: a handler not set from Python, which cannot be put back.
            if previous is not None:
                with contextlib.suppress(ValueError, OSError):
                    signal.signal(signum, previous)
        self._previous.clear()
