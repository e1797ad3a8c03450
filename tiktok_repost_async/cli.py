"""The ``tiktok-reposts`` command: harvest, status, export, serve and demo.

Exit statuses: 0 when every user of the run reached a final state; 1 when the run finished but
some users failed (the next run retries them) or the API could not be reached; 2 for usage and
configuration errors (one line, no traceback); 75 when the run stopped early, resumable, on the
daily quota or on Ctrl-C / SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import io
import json
import logging
import math
import os
import signal
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Final, NoReturn, TextIO

from . import __version__
from .errors import TikTokError
from .export import (
    FORMATS,
    BinaryOutput,
    ExportError,
    MissingExtraError,
    export,
    format_for_path,
    require_format,
)
from .models import VIDEO_FIELDS
from .protocol import normalize_fields
from .quota import DEFAULT_DAILY_LIMIT, utc_day
from .store import Store, StoreError, StoreLockedError, UserState

if TYPE_CHECKING:
    from .client import RepostClient
    from .harvest import Harvester, HarvestProgress
    from .simulator import SimulatorConfig

__all__ = [
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_RESUMABLE",
    "EXIT_USAGE",
    "CommandError",
    "Console",
    "UsageError",
    "build_parser",
    "main",
    "render_progress",
    "status_report",
]

PROG: Final = "tiktok-reposts"
EXIT_OK: Final = 0
#: The run finished, but some users failed; or the API could not be reached.
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
#: sysexits' EX_TEMPFAIL: stopped early (quota, Ctrl-C); the same command resumes.
EXIT_RESUMABLE: Final = 75

ENV_CLIENT_KEY: Final = "TIKTOK_CLIENT_KEY"
ENV_CLIENT_SECRET: Final = "TIKTOK_CLIENT_SECRET"
RESUME_HINT: Final = "run the same command again to resume"

# Four redraws a second look live without costing the harvest anything measurable.
_REDRAW_SECONDS: Final = 0.25
# The request rate shown is measured over this many recent seconds.
_RATE_WINDOW: Final = 10.0
# Without a terminal, a progress line is logged at most this often, and, while nothing changes
# (a wait for the quota), only once every _QUIET_LOG_SECONDS.
_LOG_INTERVAL: Final = 10.0
_QUIET_LOG_SECONDS: Final = 600.0
# An input line is read at most this many characters at a time: a username has at most 64, and
# a file with no line breaks must not be pulled into memory whole.
_LINE_LIMIT: Final = 1024
_ERASE_LINE: Final = "\r\x1b[K"


class CommandError(TikTokError):
    """Report why a command could not do its work: one line, no traceback, exit status 1."""

    exit_status = EXIT_FAILED


class UsageError(CommandError):
    """Report a usage or configuration error: one line, exit status 2."""

    exit_status = EXIT_USAGE


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line that names the culprit."""

    def error(self, message: str) -> NoReturn:
        """Print the error on one line and exit with status 2."""
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# -- argument types ----------------------------------------------------------------------------


def _int_in(least: int, most: int | None = None) -> Callable[[str], int]:
    def convert(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = least - 1
        if value < least or (most is not None and value > most):
            bounds = f"from {least} to {most}" if most is not None else f">= {least}"
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer {bounds}")
        return value

    return convert


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number")
    return value


def _add_verbosity(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="say more: -v each user's outcome, -vv debug",
    )
    parser.add_argument(
        "-q",
        "--quiet",
        action="count",
        default=0,
        help="say less: no progress and no warnings, only the result",
    )


def _add_progress(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--no-progress",
        dest="progress",
        action="store_false",
        help="no live progress line (nor, without a terminal, periodic progress log lines)",
    )
    parser.add_argument(
        "--log-interval",
        type=_positive_float,
        default=_LOG_INTERVAL,
        metavar="SECONDS",
        help=f"without a terminal, log progress this often ({_LOG_INTERVAL:g})",
    )


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of the ``tiktok-reposts`` command and its subcommands."""
    parser = _Parser(
        prog=PROG,
        description=(
            "Harvest the reposted videos of many TikTok users through the Research API, "
            "resumably, within the daily quota."
        ),
        epilog=(
            "Exit status: 0 every user reached a final state; 1 some users failed (run again to"
            " retry them) or the API was unreachable; 2 usage or configuration error; 75 stopped"
            " early on the quota or Ctrl-C (run the same command again to resume)."
        ),
        allow_abbrev=False,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    harvest = commands.add_parser(
        "harvest",
        help="fetch the reposts of the users listed in a file (or - for standard input)",
        description=(
            f"Fetch every listed user's reposted videos into the store. Credentials come from "
            f"{ENV_CLIENT_KEY} and {ENV_CLIENT_SECRET}. Running the same command again resumes."
        ),
        allow_abbrev=False,
    )
    harvest.add_argument("users", metavar="USERS", help="file with one username per line, or -")
    harvest.add_argument("--db", default="harvest.db", help="the store (harvest.db)")
    harvest.add_argument(
        "--fields",
        help="comma-separated video fields to fetch (all of them; a resumed store keeps its own)",
    )
    harvest.add_argument(
        "--max-count",
        type=_int_in(1, 100),
        help="videos per request, 1 to 100 (100: every request is quota)",
    )
    harvest.add_argument(
        "--concurrency", type=_int_in(1), default=8, help="users walked at once (8)"
    )
    harvest.add_argument(
        "--rate",
        type=_positive_float,
        default=10.0,
        metavar="PER_SECOND",
        help="requests per second at most (10)",
    )
    harvest.add_argument(
        "--daily-quota",
        type=_int_in(1),
        default=DEFAULT_DAILY_LIMIT,
        metavar="N",
        help=f"research requests per UTC day ({DEFAULT_DAILY_LIMIT:,})",
    )
    harvest.add_argument(
        "--on-quota",
        choices=("stop", "wait"),
        default="stop",
        help="when the quota is spent: stop (exit 75) or wait for 00:00 UTC (stop)",
    )
    harvest.add_argument(
        "--max-pages", type=_int_in(1), metavar="N", help="pages per user at most (no limit)"
    )
    harvest.add_argument(
        "--retry-failed",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="walk users that failed in an earlier run again (yes)",
    )
    harvest.add_argument(
        "--retry-incomplete",
        action="store_true",
        help="walk users that a guard cut short in an earlier run (status shows them as"
        " incomplete, with the guard) again, from their saved cursor (no)",
    )
    harvest.add_argument(
        "--new-round",
        action="store_true",
        help="start the next round of a panel: walk every listed user again from the start"
        " (a round still in progress is resumed instead)",
    )
    harvest.add_argument(
        "--stop-at-known",
        action="store_true",
        help="with --new-round: end each walk at the first page holding a video of the user's"
        " previous round (assumes newest first; such users are marked partial)",
    )
    harvest.add_argument(
        "--base-url", help="API base URL (TIKTOK_API_BASE_URL, else https://open.tiktokapis.com)"
    )
    _add_progress(harvest)
    _add_verbosity(harvest)
    harvest.set_defaults(run=_cmd_harvest)

    status = commands.add_parser(
        "status",
        help="show a store's users per state, videos, requests and problems",
        description="Show what a store holds and what is left to do.",
        allow_abbrev=False,
    )
    status.add_argument("--db", default="harvest.db", help="the store (harvest.db)")
    status.add_argument("--json", action="store_true", help="print one JSON object")
    status.add_argument(
        "--daily-quota",
        type=_int_in(1),
        default=DEFAULT_DAILY_LIMIT,
        metavar="N",
        help=f"the daily quota that 'left today' is counted from ({DEFAULT_DAILY_LIMIT:,})",
    )
    status.add_argument(
        "--limit",
        type=_int_in(0),
        default=20,
        metavar="N",
        help="failed users and skipped lines listed at most; 0 lists all (20)",
    )
    status.set_defaults(run=_cmd_status)

    export_ = commands.add_parser(
        "export",
        help="write a store's videos as JSONL, CSV or Parquet",
        description=(
            "Write every video of the store with a reposted_by column, streamed. JSONL writes each"
            " video's JSON exactly as the API sent it; CSV and Parquet have a column per field"
            " and an 'extra' JSON column for what no column holds. Ids stay exact: CSV writes"
            " them as sent, Parquet as decimal128(38, 0)."
        ),
        allow_abbrev=False,
    )
    export_.add_argument("--db", default="harvest.db", help="the store (harvest.db)")
    export_.add_argument(
        "--format",
        choices=FORMATS,
        help="output format (from the output's suffix, else jsonl)",
    )
    export_.add_argument(
        "-o", "--output", default="-", metavar="FILE", help="file to write, or - for stdout (-)"
    )
    export_.add_argument(
        "--provenance",
        action="store_true",
        help="add the round, and fetched_at (UTC) and log_id of the page each video came on",
    )
    export_.add_argument(
        "--round",
        type=_int_in(1),
        metavar="N",
        help="each user's videos as observed in round N (default: its latest complete round)",
    )
    export_.set_defaults(run=_cmd_export)

    diff = commands.add_parser(
        "diff",
        help="write what changed in each user's reposts between two rounds of a panel",
        description=(
            "Compare two rounds of a panel (harvest --new-round) user by user and write one"
            " record per change: added, removed, or changed counts (like_count_delta ...). Only"
            " users walked 'done' in both rounds take part. Default: the last two complete"
            " rounds."
        ),
        allow_abbrev=False,
    )
    diff.add_argument("--db", default="harvest.db", help="the store (harvest.db)")
    diff.add_argument(
        "--from", dest="from_round", type=_int_in(1), metavar="N", help="the earlier round"
    )
    diff.add_argument("--to", dest="to_round", type=_int_in(1), metavar="M", help="the later round")
    diff.add_argument(
        "--format", choices=("jsonl", "csv"), help="output format (from the suffix, else jsonl)"
    )
    diff.add_argument(
        "-o", "--output", default="-", metavar="FILE", help="file to write, or - for stdout (-)"
    )
    diff.set_defaults(run=_cmd_diff)

    serve = commands.add_parser(
        "serve",
        help="run the Research API simulator for your own tests and tools",
        description=(
            "Serve a local simulator of the TikTok Research API's reposted-videos endpoint until"
            " Ctrl-C. The first line printed is its base URL."
        ),
        allow_abbrev=False,
    )
    from .simulator._cli import add_simulator_arguments

    add_simulator_arguments(serve)
    serve.set_defaults(run=_cmd_serve)

    demo = commands.add_parser(
        "demo",
        help="harvest a built-in sample from a local simulator, then summarise and export it",
        description=(
            "Start the simulator on a free loopback port, harvest a sample of users that shows"
            " the interesting cases, then print a summary and export the videos as JSONL."
        ),
        allow_abbrev=False,
    )
    demo.add_argument(
        "--dir",
        default="tiktok-demo",
        help="directory for the demo's store, input and export (./tiktok-demo)",
    )
    demo.add_argument(
        "--rate",
        type=_positive_float,
        default=10.0,
        metavar="PER_SECOND",
        help="requests per second at most (10)",
    )
    demo.add_argument(
        "--panel",
        action="store_true",
        help="then a week passes at the simulator: harvest a second round with --new-round"
        " --stop-at-known and write what changed (changes.jsonl)",
    )
    _add_progress(demo)
    _add_verbosity(demo)
    demo.set_defaults(run=_cmd_demo, log_interval=2.0)
    return parser


# -- console: one redrawn status line, with log lines scrolling above it ------------------------


class Console:
    """Write lines to stderr; on a terminal, keep one status line redrawn below them."""

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


logger = logging.getLogger("tiktok_repost_async.cli")


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
    # The CLI's own lines: progress at INFO, each user's outcome at DEBUG (-v).
    logger.setLevel(
        logging.ERROR if verbosity < 0 else logging.INFO if verbosity == 0 else logging.DEBUG
    )
    # The client warns of plain-http base URLs through the warnings module.
    logging.captureWarnings(True)
    warned = logging.getLogger("py.warnings")
    warned.handlers[:] = [handler]
    warned.propagate = False


# -- progress ----------------------------------------------------------------------------------


def _duration(seconds: float) -> str:
    total = max(round(seconds), 0)
    if total < 60:
        return f"{total}s"
    minutes, secs = divmod(total, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


def _total(progress: HarvestProgress, input_lines: int | None) -> tuple[int | None, bool]:
    """Return the users this run walks and whether that is an estimate."""
    if progress.total is not None:
        return progress.total, False
    if input_lines is None:
        return None, False
    # Every line counts as a user to walk until the harvest has found it to be a bad line, a
    # duplicate or a user finished in an earlier run.
    skipped = progress.invalid + progress.duplicates + progress.already_final
    return max(input_lines - skipped, progress.queued), True


def _eta(progress: HarvestProgress, total: int | None, rate: float | None) -> str:
    done = progress.done
    if total is None or not done or not rate:
        return "--"
    left = max(total - done, 0)
    if not left:
        return "0s"
    # Requests per user so far, in-flight ones included: a slight overestimate early on.
    needed = left * progress.requests / done
    today = max(progress.quota_limit - progress.quota_spent, 0)
    if needed > today and progress.quota_limit:
        days = math.ceil((needed - today) / progress.quota_limit)
        return f"~{days} more day{'s' if days > 1 else ''} (quota)"
    return _duration(needed / rate)


def render_progress(
    progress: HarvestProgress,
    *,
    now: float,
    rate: float | None,
    input_lines: int | None = None,
) -> str:
    """Return one line: users done of total, videos, today's quota, request rate, ETA or wait."""
    total, estimated = _total(progress, input_lines)
    users = f"users {progress.done:,}"
    if total is not None:
        users += f"/{'~' if estimated else ''}{total:,}"
    failed = progress.finished[UserState.FAILED]
    incomplete = progress.finished[UserState.INCOMPLETE]
    if failed or incomplete:
        notes = [f"{failed:,} failed"] if failed else []
        notes += [f"{incomplete:,} incomplete"] if incomplete else []
        users += f" ({', '.join(notes)})"
    parts = [
        users,
        f"{progress.videos:,} videos",
        f"requests today {progress.quota_spent:,}/{progress.quota_limit:,}",
    ]
    if progress.waiting_until is not None:
        until = time.strftime("%H:%M", time.gmtime(progress.waiting_until))
        wait = _duration(progress.waiting_until - now)
        parts.append(f"quota spent: waiting until {until} UTC ({wait})")
    elif progress.probe_at is not None:
        parts.append(f"API unhealthy: pausing, next probe in {_duration(progress.probe_at - now)}")
    else:
        parts.append("-- req/s" if rate is None else f"{rate:.1f} req/s")
        parts.append(f"ETA {_eta(progress, total, rate)}")
    return " | ".join(parts)


class _Display:
    """Refresh the progress of a harvest: redrawn on a terminal, logged now and then elsewhere."""

    def __init__(
        self,
        progress: HarvestProgress,
        console: Console,
        *,
        input_lines: Callable[[], int | None],
        log_interval: float,
    ) -> None:
        self.progress = progress
        self.console = console
        self.input_lines = input_lines
        self.log_interval = log_interval
        self._samples: deque[tuple[float, int]] = deque()
        self._logged_at = -math.inf
        self._logged: tuple[int, int, int, float | None, float | None] | None = None

    def rate(self) -> float | None:
        """Return the requests per second of the last few seconds, once measurable."""
        now = time.monotonic()
        samples = self._samples
        samples.append((now, self.progress.requests))
        while len(samples) > 2 and samples[1][0] <= now - _RATE_WINDOW:
            samples.popleft()
        elapsed = now - samples[0][0]
        if elapsed < 1.0:
            return None
        return (samples[-1][1] - samples[0][1]) / elapsed

    def text(self) -> str:
        """Return the current progress line."""
        return render_progress(
            self.progress, now=time.time(), rate=self.rate(), input_lines=self.input_lines()
        )

    async def run(self) -> None:
        """Refresh until cancelled."""
        interval = _REDRAW_SECONDS if self.console.tty else min(self.log_interval, 1.0)
        while True:
            self.refresh()
            await asyncio.sleep(interval)

    def refresh(self) -> None:
        """Redraw the line, or log it if it is time to."""
        if self.progress.started_at == 0.0:
            return
        text = self.text()
        if self.console.tty:
            self.console.status(text)
            return
        now = time.monotonic()
        p = self.progress
        state = (p.done, p.requests, p.videos, p.waiting_until, p.probe_at)
        quiet = state == self._logged
        if now - self._logged_at >= (_QUIET_LOG_SECONDS if quiet else self.log_interval):
            self._logged_at, self._logged = now, state
            logger.info("progress: %s", text)


# -- reading usernames --------------------------------------------------------------------------


class _UserLines:
    """Read a file's lines on a daemon thread, so a blocked pipe never holds the process."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.total_lines: int | None = None
        # UTF-8 with an optional BOM (files saved on Windows start with one); undecodable
        # bytes become U+FFFD, which no username holds, so the line is skipped and reported.
        try:
            if path == "-":
                if sys.stdin is None:
                    raise UsageError("USERS is -, but there is no standard input")
                self._stream: TextIO = io.TextIOWrapper(
                    _unbuffered_stdin(), encoding="utf-8-sig", errors="replace"
                )
            else:
                self._stream = open(path, encoding="utf-8-sig", errors="replace")  # noqa: SIM115
        except OSError as exc:
            raise UsageError(
                f"cannot read the users file {path!r}: {exc.strerror or exc}"
            ) from None
        if path != "-" and os.path.isfile(path):
            # Counted beside the harvest, so that the progress shows a total from the start.
            threading.Thread(target=self._count, name="tiktok-count", daemon=True).start()

    def close(self) -> None:
        """Close the input file (standard input itself stays open)."""
        if self.path != "-" or isinstance(self._stream.buffer, io.FileIO):
            self._stream.close()

    def label(self) -> str:
        """Return the input's name for messages."""
        return "standard input" if self.path == "-" else self.path

    def _count(self) -> None:
        lines = 0
        last = b"\n"
        try:
            with open(self.path, "rb") as raw:
                while chunk := raw.read(1 << 20):
                    lines += chunk.count(b"\n")
                    last = chunk[-1:]
        except OSError:
            return
        self.total_lines = lines + (last != b"\n")

    def lines(self) -> Iterator[str]:
        """Yield each line of the input, even blank and overlong ones (the harvest skips them).

        A plain iterator: the harvest reads it on a thread of its own and hands each name to a
        worker as soon as it arrives, so a slow pipe's first name is fetched at once.
        """
        stream = self._stream
        try:
            while line := stream.readline(_LINE_LIMIT):
                if len(line) == _LINE_LIMIT and not line.endswith("\n"):
                    # Keep the line's head (the harvest reports it as too long), skip the rest.
                    while (rest := stream.readline(_LINE_LIMIT)) and not rest.endswith("\n"):
                        pass
                yield line.rstrip("\n")
        except (OSError, ValueError) as exc:
            raise UsageError(f"cannot read the users file {self.label()!r}: {exc}") from None
        finally:
            self.close()


def _unbuffered_stdin() -> BinaryIO:
    # The names are read on a daemon thread that may sit in a read of an open pipe when a stop
    # ends the run. A buffered reader holds its lock during that read, and Python aborts at exit
    # when it finds sys.stdin's lock held. A raw reader of a copy of the descriptor has no lock,
    # and a raw read returns whatever the pipe holds, so a name is not kept waiting for more.
    try:
        fd = os.dup(sys.stdin.fileno())
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is both of the last
        return sys.stdin.buffer
    return io.FileIO(fd, "rb", closefd=True)


# -- harvest -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _HarvestSettings:
    new_round: bool
    stop_at_known: bool
    concurrency: int
    daily_quota: int
    on_quota: str
    retry_failed: bool
    retry_incomplete: bool
    max_pages: int | None
    progress: bool
    log_interval: float
    resume_hint: str


def _credentials() -> tuple[str, str]:
    key = os.environ.get(ENV_CLIENT_KEY, "").strip()
    secret = os.environ.get(ENV_CLIENT_SECRET, "").strip()
    missing = [
        name for name, value in ((ENV_CLIENT_KEY, key), (ENV_CLIENT_SECRET, secret)) if not value
    ]
    if missing:
        raise UsageError(
            f"missing credentials: {' and '.join(missing)} not set (set {ENV_CLIENT_KEY} and"
            f" {ENV_CLIENT_SECRET} to your research client's key and secret)"
        )
    return key, secret


def _open_store(
    db: str, fields: tuple[str, ...] | None, max_count: int | None
) -> tuple[Store | None, tuple[str, ...], int]:
    """Open an existing store (checking its settings) or say what a new one will hold."""
    path = Path(db)
    if not path.exists():
        return None, fields or VIDEO_FIELDS, max_count or 100
    try:
        store = Store(path, fields=fields, max_count=max_count, create=False)
    except (StoreError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    return store, store.fields, store.max_count


def _cmd_harvest(args: argparse.Namespace) -> int:
    fields = None
    if args.stop_at_known and not args.new_round:
        raise UsageError(
            "--stop-at-known applies to a new round: pass --new-round too (a resumed round keeps"
            " the choice it was started with)"
        )
    if args.fields is not None:
        try:
            fields = normalize_fields(args.fields)
        except ValueError as exc:
            raise UsageError(f"--fields: {exc}") from None
    key, secret = _credentials()
    users = _UserLines(args.users)
    store, fields, max_count = _open_store(args.db, fields, args.max_count)
    try:
        client = _make_client(
            key,
            secret,
            base_url=args.base_url,
            fields=fields,
            max_count=max_count,
            rate=args.rate,
            concurrency=args.concurrency,
        )
        settings = _HarvestSettings(
            new_round=args.new_round,
            stop_at_known=args.stop_at_known,
            concurrency=args.concurrency,
            daily_quota=args.daily_quota,
            on_quota=args.on_quota,
            retry_failed=args.retry_failed,
            retry_incomplete=args.retry_incomplete,
            max_pages=args.max_pages,
            progress=args.progress and args.quiet == 0,
            log_interval=args.log_interval,
            resume_hint=RESUME_HINT,
        )
        console = _console(args.verbose - args.quiet)
        return asyncio.run(_harvest_command(client, store, args.db, users, settings, console))
    finally:
        users.close()
        if store is not None:
            store.close()


def _console(verbosity: int) -> Console:
    tty = sys.stderr.isatty() and os.environ.get("TERM") != "dumb"
    console = Console(sys.stderr, tty=tty)
    _setup_logging(console, verbosity)
    return console


def _make_client(
    key: str,
    secret: str,
    *,
    base_url: str | None,
    fields: Sequence[str],
    max_count: int,
    rate: float,
    concurrency: int,
    **options: Any,
) -> RepostClient:
    from .client import RepostClient

    try:
        return RepostClient(
            key,
            secret,
            base_url=base_url,
            fields=fields,
            max_count=max_count,
            requests_per_second=rate,
            concurrency=concurrency,
            **options,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None


async def _authenticate(client: RepostClient) -> None:
    """Fetch the access token before anything else, retrying only what a retry can cure."""
    from .errors import AuthError, TikTokError

    attempt = 0
    while True:
        attempt += 1
        try:
            # The token the harvest will use, fetched up front: wrong credentials then end the
            # run before the store is touched or any research request (quota) is spent.
            await client.authenticate()
            return
        except AuthError as exc:
            raise UsageError(
                f"the API refused the credentials in {ENV_CLIENT_KEY} and {ENV_CLIENT_SECRET}"
                f" ({exc}); check them"
            ) from None
        except TikTokError as exc:
            if not client.retry.is_retryable(exc) or attempt >= 3:
                raise CommandError(
                    f"cannot get an access token from {client.base_url}: {exc}"
                ) from None
            await asyncio.sleep(client.retry.delay(attempt, exc))


async def _harvest_command(
    client: RepostClient,
    store: Store | None,
    db: str,
    users: _UserLines,
    settings: _HarvestSettings,
    console: Console,
) -> int:
    async with client:
        await _authenticate(client)
        if store is None:
            try:
                store = Store(db, fields=client.fields, max_count=client.max_count)
            except (StoreError, ValueError) as exc:
                raise UsageError(str(exc)) from None
            try:
                return await _harvest(client, store, users, settings, console, db)
            finally:
                store.close()
        return await _harvest(client, store, users, settings, console, db)


async def _harvest(
    client: RepostClient,
    store: Store,
    users: _UserLines,
    settings: _HarvestSettings,
    console: Console,
    db: str,
) -> int:
    """Harvest with progress, signals and a summary; return the exit status."""
    from .engine import BREAKER_GIVE_UP
    from .errors import AuthError, InvalidFieldsError
    from .harvest import Harvester, HarvestStopped

    harvester = Harvester(
        client,
        store,
        concurrency=settings.concurrency,
        daily_quota=settings.daily_quota,
        on_quota=settings.on_quota,
        retry_failed=settings.retry_failed,
        retry_incomplete=settings.retry_incomplete,
        max_pages=settings.max_pages,
        new_round=settings.new_round,
        stop_at_known=settings.stop_at_known,
    )

    async def consume() -> None:
        async for outcome in harvester.run(users.lines()):
            logger.debug(
                "%s: %s, %d new videos, %d pages, %d requests%s",
                outcome.username,
                outcome.state,
                outcome.videos,
                outcome.pages,
                outcome.requests,
                f" ({outcome.error})" if outcome.error else "",
            )

    loop = asyncio.get_running_loop()
    task = asyncio.create_task(consume(), name="tiktok-harvest")
    display = _Display(
        harvester.progress,
        console,
        input_lines=lambda: users.total_lines,
        log_interval=settings.log_interval,
    )
    shown = asyncio.create_task(display.run()) if settings.progress else None
    interrupted: list[str] = []
    handled = (signal.SIGINT, signal.SIGTERM)

    def interrupt(signum: signal.Signals) -> None:
        interrupted.append(signum.name)
        console.line(
            "stopping: finishing the writes in progress (press Ctrl-C again to quit at once;"
            " the store stays consistent either way)"
        )
        for other in handled:
            loop.remove_signal_handler(other)
            # A second signal kills at once: every commit is atomic, nothing is lost.
            signal.signal(other, signal.SIG_DFL)
        task.cancel()

    for signum in handled:
        # Not on Windows; there Ctrl-C raises KeyboardInterrupt, which main() reports.
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, interrupt, signum)
    status = EXIT_OK
    stopped: str | None = None
    try:
        await task
    except asyncio.CancelledError:
        if not interrupted:
            raise
        status = EXIT_RESUMABLE
    except HarvestStopped as exc:
        status, stopped = EXIT_RESUMABLE, exc.reason
    except InvalidFieldsError as exc:
        named = ",".join(exc.fields) or "(unnamed)"
        raise UsageError(
            f'the API rejects the field(s) {named} ("{exc.message}"), for every user alike:'
            f" pass --fields without {'them' if len(exc.fields) > 1 else 'it'} (a store keeps its"
            " fields: harvest into a new --db)"
        ) from None
    except AuthError as exc:
        raise UsageError(
            f"the API refused the credentials or their authorisation ({exc}); the store is"
            f" consistent: {RESUME_HINT} once this is fixed"
        ) from None
    except StoreLockedError as exc:
        raise UsageError(str(exc)) from None
    finally:
        for signum in handled:
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(signum)
        if shown is not None:
            shown.cancel()
            await asyncio.gather(shown, return_exceptions=True)
        console.clear()
    _summarise(harvester, console, db, settings)
    progress = harvester.progress
    if interrupted:
        console.line(f"interrupted: {settings.resume_hint}")
    elif stopped == "quota":
        quota = harvester.quota
        reset = time.strftime("%H:%M", time.gmtime(quota.reset_at()))
        why = (
            "the API says the project's daily quota is spent (collaborators share it)"
            if quota.exhausted
            else f"the daily quota is spent ({quota.spent:,} of {quota.limit:,} requests today)"
        )
        console.line(
            f"stopped: {why}; {settings.resume_hint} after {reset} UTC, or pass --on-quota wait"
        )
    elif stopped == "unhealthy":
        console.line(
            f"stopped: the API answered nothing but outage failures (5xx, gateway pages,"
            f" timeouts, no connection) for {BREAKER_GIVE_UP / 60:.0f} minutes; the users it held"
            f" stay resumable: {settings.resume_hint} once the API is back"
        )
    elif stopped is not None:
        console.line(f"stopped ({stopped}): {settings.resume_hint}")
    elif progress.finished[UserState.FAILED]:
        failed = progress.finished[UserState.FAILED]
        console.line(
            f"{failed:,} user{'s' if failed > 1 else ''} failed (tiktok-reposts status --db {db}"
            " shows why): run the same command again to retry"
        )
        status = EXIT_FAILED
    return status


def _summarise(harvester: Harvester, console: Console, db: str, settings: _HarvestSettings) -> None:
    if not logger.isEnabledFor(logging.INFO):
        return
    p = harvester.progress
    elapsed = time.time() - p.started_at if p.started_at else 0.0
    states = ", ".join(f"{p.finished[s]:,} {s}" for s in UserState if p.finished[s])
    left = max(settings.daily_quota - p.quota_spent, 0)
    if harvester.round > 1 or harvester.new_round:
        started = "started" if harvester.round_started else "resumed"
        known = ", stopping at known videos" if harvester.stop_at_known else ""
        console.line(f"round {harvester.round} ({started}{known})")
    console.line(
        f"{p.done:,} users in {_duration(elapsed)}{': ' + states if states else ''};"
        f" {p.videos:,} new videos; {p.requests:,} requests"
        f" ({p.quota_spent:,} today, {left:,} left of {settings.daily_quota:,})"
    )
    notes = []
    if p.invalid:
        notes.append(f"{p.invalid:,} bad input line{'s' if p.invalid > 1 else ''} skipped")
    if p.duplicates:
        notes.append(f"{p.duplicates:,} duplicate{'s' if p.duplicates > 1 else ''}")
    if p.already_final:
        notes.append(f"{p.already_final:,} finished in earlier runs")
    if notes:
        console.line(f"input: {'; '.join(notes)} (tiktok-reposts status --db {db})")


# -- status ------------------------------------------------------------------------------------


def _open_existing(db: str) -> Store:
    try:
        return Store(db, create=False)
    except (StoreError, ValueError) as exc:
        raise UsageError(str(exc)) from None


def status_report(store: Store, *, daily_quota: int, limit: int | None) -> dict[str, Any]:
    """Return what ``status --json`` prints: users per state, videos, requests, problems."""
    counts = store.state_counts()
    spent = store.requests_on()
    skipped = store.skipped_counts()
    return {
        "store": str(store.path),
        "fields": list(store.fields),
        "max_count": store.max_count,
        "users": {
            **{state.value: counts[state] for state in UserState},
            "total": sum(counts.values()),
        },
        "videos": store.video_count(),
        "requests": {
            "day": utc_day(time.time()),
            "spent": spent,
            "left": max(daily_quota - spent, 0),
            "daily_quota": daily_quota,
        },
        "failed": [
            {
                "username": record.username,
                "error": record.error,
                "cursor": record.cursor,
                "videos": record.videos,
                "requests": record.requests,
            }
            for record in store.failed_users(limit)
        ],
        "incomplete": [
            {
                "username": record.username,
                "reason": record.error,
                "cursor": record.cursor,
                "videos": record.videos,
                "requests": record.requests,
            }
            for record in store.users_in(UserState.INCOMPLETE, limit)
        ],
        "rounds": [
            {
                "round": record.number,
                "started_at": record.started_at,
                "stop_at_known": record.stop_at_known,
                "complete": record.complete,
                "users": {state.value: record.users[state] for state in UserState},
                "partial": record.partial,
                "videos": record.videos,
                "requests": record.requests,
            }
            for record in store.rounds()
        ],
        "runs": [
            {
                "run": run.id,
                "started_at": run.started_at,
                "ended_at": run.ended_at,
                "outcome": run.outcome,
                "version": run.version,
                "fields": list(run.fields),
                "max_count": run.max_count,
                "requests": run.requests,
                "pages": run.pages,
                "videos": run.videos,
            }
            for run in store.runs(_RUNS_SHOWN if limit is None else max(limit, _RUNS_SHOWN))
        ],
        "runs_total": store.run_count(),
        "skipped": {
            "total": sum(skipped.values()),
            "by_reason": skipped,
            "lines": [
                {"line": line, "text": raw, "reason": reason}
                for line, raw, reason in store.skipped(10_000 if limit is None else limit)
            ],
        },
    }


# The runs status shows: the latest ones say how the store is going; all are in the store.
_RUNS_SHOWN = 10


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _status_text(report: dict[str, Any]) -> str:
    users: dict[str, int] = report["users"]
    requests = report["requests"]
    fields = report["fields"]
    fields_text = f"all {len(fields)}" if set(fields) == set(VIDEO_FIELDS) else ", ".join(fields)
    lines = [
        f"store     {report['store']}",
        f"fields    {fields_text}; max_count {report['max_count']}",
        "",
        "state          users",
    ]
    lines += [f"{state:<12} {users[state]:>7,}" for state in (s.value for s in UserState)]
    lines += [
        f"{'total':<12} {users['total']:>7,}",
        "",
        f"videos    {report['videos']:,}",
        f"requests  {requests['spent']:,} spent today ({requests['day']} UTC),"
        f" {requests['left']:,} left of {requests['daily_quota']:,}",
    ]
    rounds = report["rounds"]
    if len(rounds) > 1:
        lines += [
            "",
            "rounds    started               done  not_found  unavailable  failed"
            "  incomplete  pending   videos  requests",
        ]
        for panel in rounds:
            users = panel["users"]
            how = "complete" if panel["complete"] else "in progress"
            if panel["stop_at_known"]:
                how += f", stop-at-known ({panel['partial']:,} partial)"
            lines.append(
                f"  {panel['round']:>3}   {panel['started_at']}  {users['done']:>5,}"
                f" {users['not_found']:>10,} {users['unavailable']:>12,} {users['failed']:>7,}"
                f" {users['incomplete']:>11,} {users['pending']:>8,} {panel['videos']:>8,}"
                f" {panel['requests']:>9,}  {how}"
            )
    runs = report["runs"]
    if runs:
        lines += ["", "runs (newest first)   ended                 requests  pages  videos  how"]
        for run in runs:
            ended = run["ended_at"] or "-"
            how = run["outcome"] or "running, or killed"
            lines.append(
                f"  {run['run']:>3} {run['started_at']}  {ended:<20} {run['requests']:>9,}"
                f" {run['pages']:>6,} {run['videos']:>7,}  {how} (v{run['version']})"
            )
        more = report["runs_total"] - len(runs)
        if more > 0:
            lines.append(f"  … and {more:,} older runs (status --json --limit N shows more)")
    failed = report["failed"]
    if failed:
        lines += ["", "failed users and their last error:"]
        width = max(len(f["username"]) for f in failed)
        lines += [f"  {f['username']:<{width}}  {_clip(f['error'] or '', 300)}" for f in failed]
        more = report["users"]["failed"] - len(failed)
        if more > 0:
            lines.append(f"  … and {more:,} more (--limit 0 lists all)")
    incomplete = report["incomplete"]
    if incomplete:
        lines += [
            "",
            "incomplete users (--retry-incomplete walks them on) and the guard that cut them:",
        ]
        width = max(len(f["username"]) for f in incomplete)
        lines += [
            f"  {f['username']:<{width}}  {_clip(f['reason'] or '', 300)}" for f in incomplete
        ]
        more = report["users"]["incomplete"] - len(incomplete)
        if more > 0:
            lines.append(f"  … and {more:,} more (--limit 0 lists all)")
    skipped = report["skipped"]
    if skipped["total"]:
        lines += ["", f"skipped input lines (last run): {skipped['total']:,}"]
        lines += [f"  {reason:<24} {n:>7,}" for reason, n in skipped["by_reason"].items()]
        lines += [
            f"  line {s['line']}: {_clip(repr(s['text']), 60)}  ({s['reason']})"
            for s in skipped["lines"]
        ]
        more = skipped["total"] - len(skipped["lines"])
        if more > 0:
            lines.append(f"  … and {more:,} more lines")
    return "\n".join(lines)


def _cmd_status(args: argparse.Namespace) -> int:
    with _open_existing(args.db) as store:
        report = status_report(
            store, daily_quota=args.daily_quota, limit=args.limit if args.limit else None
        )
    out = _stdout()
    if args.json:
        out.write(json.dumps(report, ensure_ascii=False, indent=2) + "\n")
    else:
        out.write(_status_text(report) + "\n")
    out.flush()
    return EXIT_OK


def _stdout() -> TextIO:
    # Usernames and errors can hold any character; an ASCII locale must not crash the output.
    stream = sys.stdout
    if isinstance(stream, io.TextIOWrapper):
        stream.reconfigure(errors="backslashreplace")
    return stream


# -- export ------------------------------------------------------------------------------------


def _cmd_export(args: argparse.Namespace) -> int:
    output: str = args.output
    fmt = args.format or (None if output == "-" else format_for_path(output)) or "jsonl"
    try:
        require_format(fmt)
    except MissingExtraError as exc:
        raise UsageError(str(exc)) from None
    with _open_existing(args.db) as store:
        if args.round is not None and args.round > store.current_round:
            raise UsageError(
                f"--round {args.round}: {args.db!r} has no round {args.round}; "
                f"its rounds are 1 to {store.current_round}"
            )

        def write(out: BinaryOutput) -> int:
            return export(store, out, fmt, provenance=args.provenance, round=args.round)

        try:
            count = _write_output(output, write)
        except ExportError as exc:
            raise CommandError(str(exc)) from None
    if count is None:
        return EXIT_FAILED
    where = "standard output" if output == "-" else output
    print(f"exported {count:,} videos to {where} ({fmt})", file=sys.stderr)
    return EXIT_OK


def _write_output(output: str, write: Callable[[BinaryOutput], int]) -> int | None:
    """Write to standard output (``-``) or atomically to a file; None if the reader left."""
    return _export_to_stdout(write) if output == "-" else _export_to_file(Path(output), write)


def _export_to_stdout(write: Callable[[BinaryOutput], int]) -> int | None:
    out = sys.stdout.buffer
    try:
        count = write(out)
        out.flush()
    except BrokenPipeError:
        # The reader (head, less) has gone: stop quietly, and keep Python's exit-time flush
        # of stdout from raising the same error again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return None
    return count


def _export_to_file(path: Path, write: Callable[[BinaryOutput], int]) -> int:
    directory = path.parent
    try:
        fd, partial = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=directory)
    except OSError as exc:
        raise UsageError(f"cannot write {str(path)!r}: {exc.strerror or exc}") from None
    try:
        # Written beside the target and renamed at the end: an interrupted export never leaves
        # a truncated file under the name the reader expects.
        with os.fdopen(fd, "wb") as out:
            count = write(out)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(partial, 0o666 & ~umask)
        os.replace(partial, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(partial)
        raise
    return count


# -- diff --------------------------------------------------------------------------------------


def _cmd_diff(args: argparse.Namespace) -> int:
    from .diff import DiffError, pick_rounds, write_diff

    output: str = args.output
    suffix = Path(output).suffix.lower()
    fmt = args.format or ("csv" if output != "-" and suffix == ".csv" else "jsonl")
    with _open_existing(args.db) as store:
        try:
            first, second = pick_rounds(store, args.from_round, args.to_round)
        except DiffError as exc:
            raise UsageError(str(exc)) from None

        def write(out: BinaryOutput) -> int:
            return write_diff(store, out, fmt, from_round=first, to_round=second)

        count = _write_output(output, write)
    if count is None:
        return EXIT_FAILED
    where = "standard output" if output == "-" else output
    print(
        f"{count:,} changes from round {first} to round {second} written to {where} ({fmt})",
        file=sys.stderr,
    )
    return EXIT_OK


# -- serve -------------------------------------------------------------------------------------


def _cmd_serve(args: argparse.Namespace) -> int:
    from .simulator import TEST_CLIENT_KEY, TEST_CLIENT_SECRET
    from .simulator._cli import config_from_args

    try:
        config = config_from_args(args)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    hints = []
    # Only the public test credentials are echoed; a secret given on the command line is not.
    if args.client_key is None:
        hints.append(f"{ENV_CLIENT_KEY}={TEST_CLIENT_KEY}")
    if args.client_secret is None:
        hints.append(f"{ENV_CLIENT_SECRET}={TEST_CLIENT_SECRET}")
    return asyncio.run(_serve(config, args.host, args.port, hints))


async def _serve(config: SimulatorConfig, host: str, port: int, hints: list[str]) -> int:
    from .simulator import Simulator

    simulator = Simulator(config)
    try:
        base_url = await simulator.start(host, port)
    except OSError as exc:
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    try:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        # Before the URL is printed: whoever reads it may signal at once.
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(signum, stop.set)
        print(base_url, flush=True)
        print(
            f"serving the TikTok Research API simulator at {base_url}; Ctrl-C stops it\n"
            f"harvest from it with: {' '.join(hints)} {PROG} harvest USERS --base-url {base_url}",
            file=sys.stderr,
            flush=True,
        )
        await stop.wait()
    finally:
        await simulator.close()
    return EXIT_OK


# -- demo --------------------------------------------------------------------------------------

#: The demo's input, as a researcher's file might be: names with the cases worth seeing, and a
#: few lines a harvest must skip (a blank one, an impossible name, a duplicate with @ and spaces).
DEMO_INPUT: Final = (
    "big_creator",
    "big_newsroom",
    "alice_n250",
    "bob_n120",
    "carol",
    "dave_n40",
    "",
    "empty_lurker",
    "empty_newcomer",
    "missing_user",
    "private_account",
    "not a username!",
    "stall_loop",
    "short_moderated",
    "hugeid_collector",
    "flaky_n300",
    "erin_n180",
    "  @alice_n250  ",
    "frank_n60",
)

# Why each demo user is there, for the summary table.
_DEMO_NOTES: Final = {
    "big_creator": "a big user: about ten pages",
    "big_newsroom": "another big one, walked at the same time",
    "alice_n250": "a short-term 429 with Retry-After, waited out",
    "bob_n120": "a 500 then a 502 HTML page, both retried",
    "carol": "an ordinary user",
    "dave_n40": "one page",
    "empty_lurker": "exists, reposted nothing",
    "empty_newcomer": "exists, reposted nothing",
    "missing_user": "no such user: one request, no retry",
    "private_account": "private: one request, no retry",
    "stall_loop": "the cursor stops moving: the walk ends itself",
    "short_moderated": "pages with fewer videos, some empty, has_more true",
    "hugeid_collector": "ids above uint64, kept exact",
    "flaky_n300": "a dropped connection and a cut-off answer, retried",
    "erin_n180": "the API's transient 'Invalid count or cursor', retried",
    "frank_n60": "an expired token, refreshed once",
}


def _demo_faults() -> dict[str, list[str]]:
    return {
        "alice_n250": ["rate_limit"],
        "bob_n120": ["server_error", "bad_gateway"],
        "flaky_n300": ["drop", "truncated"],
        "erin_n180": ["invalid_cursor"],
        "frank_n60": ["token_invalid"],
    }


def _cmd_demo(args: argparse.Namespace) -> int:
    from .export import export_jsonl

    directory = Path(args.dir)
    db = directory / "demo.db"
    users_file = directory / "users.txt"
    export_path = directory / "reposts.jsonl"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        # The demo starts afresh each time; it replaces only the files it made itself.
        made = ("demo.db", "demo.db-wal", "demo.db-shm", "demo.db.lock", export_path.name)
        for name in (*made, "changes.jsonl"):
            with contextlib.suppress(FileNotFoundError):
                (directory / name).unlink()
        users_file.write_text("\n".join(DEMO_INPUT) + "\n", encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot use the demo directory {str(directory)!r}: {exc}") from None
    settings = _HarvestSettings(
        new_round=False,
        stop_at_known=False,
        concurrency=8,
        daily_quota=DEFAULT_DAILY_LIMIT,
        on_quota="stop",
        retry_failed=True,
        retry_incomplete=False,
        max_pages=None,
        progress=args.progress and args.quiet == 0,
        log_interval=args.log_interval,
        resume_hint="run the demo again to start it afresh",
    )
    console = _console(args.verbose - args.quiet)
    panel = ""
    with Store(db, fields=VIDEO_FIELDS, max_count=100) as store:
        status = asyncio.run(_demo(store, users_file, args.rate, settings, console))
        if status == EXIT_RESUMABLE:
            return status
        table = _demo_table(store)
        if args.panel:
            later = dataclasses.replace(settings, new_round=True, stop_at_known=True)
            status = asyncio.run(_demo(store, users_file, args.rate, later, console, epoch=1))
            if status == EXIT_RESUMABLE:
                return status
            panel = _demo_panel(store, directory / "changes.jsonl")
        with open(export_path, "wb") as sink:
            exported = export_jsonl(store, sink)
        skipped = sum(store.skipped_counts().values())
    out = _stdout()
    out.write(
        f"\n{table}\n\n{panel}"
        f"store:  {db}   ({PROG} status --db {db})\n"
        f"export: {export_path}   ({exported:,} videos, one JSON object per line)\n"
        f"input:  {users_file}   ({skipped} bad lines skipped, duplicates walked once)\n"
        f"\nNext, with your own credentials:\n"
        f"  export {ENV_CLIENT_KEY}=... {ENV_CLIENT_SECRET}=...\n"
        f"  {PROG} harvest users.txt --db harvest.db\n"
    )
    out.flush()
    return status


async def _demo(
    store: Store,
    users_file: Path,
    rate: float,
    settings: _HarvestSettings,
    console: Console,
    *,
    epoch: int = 0,
) -> int:
    from .simulator import TEST_CLIENT_KEY, TEST_CLIENT_SECRET, Simulator

    # Latency like a distant API's, small enough that the demo takes seconds. At a later epoch
    # every user's list has moved on (new reposts at the head, some removed, counts grown).
    simulator = Simulator(latency=0.02, jitter=0.03, seed=1, retry_after=1, epoch=epoch)
    if not epoch:
        for username, faults in _demo_faults().items():
            simulator.script(username, faults)
    base_url = await simulator.start("127.0.0.1", 0)
    try:
        logger.info(
            "demo: a local Research API simulator at %s; harvesting the %d lines of %s into %s",
            base_url,
            len(DEMO_INPUT),
            users_file,
            store.path,
        )
        client = _make_client(
            TEST_CLIENT_KEY,
            TEST_CLIENT_SECRET,
            base_url=base_url,
            fields=store.fields,
            max_count=store.max_count,
            rate=rate,
            concurrency=settings.concurrency,
        )
        async with client:
            await _authenticate(client)
            users = _UserLines(str(users_file))
            return await _harvest(client, store, users, settings, console, str(store.path))
    finally:
        await simulator.close()


def _demo_panel(store: Store, path: Path) -> str:
    """Write the demo's diff of its two rounds to ``path``; return a few lines about them."""
    from collections import Counter

    from .diff import diff_rounds, write_diff

    with open(path, "wb") as sink:
        write_diff(store, sink, "jsonl")
    kinds = Counter(change.change for change in diff_rounds(store))
    first, second = store.rounds()[:2]
    partial = second.partial
    return (
        f"round 2, a week later at the simulator, with --new-round --stop-at-known:\n"
        f"  {second.requests:,} requests (round 1: {first.requests:,});"
        f" {partial:,} users stopped at a video known from round 1 (partial)\n"
        f"  {kinds['added']:,} reposts added, {kinds['removed']:,} removed,"
        f" {kinds['changed']:,} with new counts: {path}\n"
        f"  ({PROG} diff --db {store.path} --format csv --output changes.csv)\n\n"
    )


def _demo_table(store: Store) -> str:
    rows = [("user", "state", "videos", "requests", "what it shows")]
    users = videos = requests = 0
    for record in store.iter_users():
        users, videos, requests = users + 1, videos + record.videos, requests + record.requests
        note = _DEMO_NOTES.get(record.username, "")
        rows.append(
            (record.username, record.state, f"{record.videos:,}", f"{record.requests:,}", note)
        )
    rows.append((f"{users} users", "", f"{videos:,}", f"{requests:,}", ""))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    rule = "-" * (sum(widths) + 2 * (len(widths) - 1))
    lines = []
    for row in rows:
        if row is rows[-1]:
            lines.append(rule)
        name, state, count, spent, note = row
        lines.append(
            f"{name:<{widths[0]}}  {state:<{widths[1]}}  {count:>{widths[2]}}"
            f"  {spent:>{widths[3]}}  {note}".rstrip()
        )
        if row is rows[0]:
            lines.append(rule)
    return "\n".join(lines)


# -- entry point -------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Run the ``tiktok-reposts`` command line; return its exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        return int(args.run(args))
    except CommandError as exc:
        print(f"{PROG} {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_status
    except KeyboardInterrupt:
        print(f"{PROG} {args.command}: interrupted", file=sys.stderr)
        return 130
