"""The console: one redrawn status line on a terminal, with log lines scrolling above it."""

from __future__ import annotations

import io
import logging
import os
import sys
import threading
import time
from typing import Final, TextIO

__all__ = ["Console", "logger", "make_console"]

_ERASE_LINE: Final = "\r\x1b[K"

#: The command line's own lines: progress at INFO, each user's outcome at DEBUG (-v).
logger = logging.getLogger("tiktok_repost_async.cli")


class Console:
    """Write lines to a stream; on a terminal, keep one status line redrawn below them.

    :param stream: where to write (standard error).
    :param tty: whether the stream is a terminal that understands carriage return and
        "erase line"; elsewhere `status` draws nothing.
    """

    def __init__(self, stream: TextIO, *, tty: bool) -> None:
        self.stream = stream
        self.tty = tty
        self._status = ""
        # Log records may come from any thread, not only the event loop's.
        self._lock = threading.Lock()

    def _width(self) -> int:
        try:
            columns = os.get_terminal_size(self.stream.fileno()).columns
        except (OSError, ValueError, io.UnsupportedOperation):
            columns = 0
        # Some terminals (and pseudo-terminals nobody sized) report no width at all.
        return columns or 100

    def status(self, text: str) -> None:
        """Draw ``text`` as the status line (on a terminal only)."""
        if not self.tty:
            return
        with self._lock:
            # A line longer than the terminal wraps, and "\r" then redraws only its last part.
            self._status = text[: max(self._width() - 1, 10)]
            self.stream.write(_ERASE_LINE + self._status)
            self.stream.flush()

    def line(self, text: str) -> None:
        """Write a whole line above the status line."""
        with self._lock:
            if self._status:
                self.stream.write(_ERASE_LINE)
            self.stream.write(text + "\n")
            if self._status:
                self.stream.write(self._status)
            self.stream.flush()

    def clear(self) -> None:
        """Erase the status line for good."""
        with self._lock:
            if self._status:
                self.stream.write(_ERASE_LINE)
                self.stream.flush()
                self._status = ""


class _ConsoleHandler(logging.Handler):
    def __init__(self, console: Console) -> None:
        super().__init__()
        self.console = console

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.console.line(self.format(record))
        except Exception:
            self.handleError(record)


class _Formatter(logging.Formatter):
    """Format records as ``warning: text`` on a terminal, with a UTC time stamp elsewhere."""

    def __init__(self, *, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def format(self, record: logging.LogRecord) -> str:
        """Return the record as one line."""
        text = record.getMessage()
        if record.exc_info and record.levelno >= logging.ERROR:
            text += " (" + repr(record.exc_info[1]) + ")"
        level = record.levelname.lower()
        if self.tty:
            return text if record.levelno == logging.INFO else f"{level}: {text}"
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(record.created))
        return f"{stamp}Z {level}: {text}"


def _setup_logging(console: Console, verbosity: int) -> None:
    handler = _ConsoleHandler(console)
    handler.setFormatter(_Formatter(tty=console.tty))
    package = logging.getLogger("tiktok_repost_async")
    package.handlers[:] = [handler]
    package.propagate = False
    package.setLevel(
        logging.ERROR
        if verbosity < 0
        else {0: logging.WARNING, 1: logging.INFO}.get(verbosity, logging.DEBUG)
    )
    logger.setLevel(
        logging.ERROR if verbosity < 0 else logging.INFO if verbosity == 0 else logging.DEBUG
    )
    # The client warns of plain-http base URLs through the warnings module.
    logging.captureWarnings(True)
    warned = logging.getLogger("py.warnings")
    warned.handlers[:] = [handler]
    warned.propagate = False


def make_console(verbosity: int) -> Console:
    """Return a console on standard error, with the package's logging sent through it.

    :param verbosity: ``-v`` count minus ``-q`` count: below 0 errors only, 0 warnings and
        progress, 1 each user's outcome, 2 and more debug.
    """
    tty = sys.stderr.isatty() and os.environ.get("TERM") != "dumb"
    console = Console(sys.stderr, tty=tty)
    _setup_logging(console, verbosity)
    return console
