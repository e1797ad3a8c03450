"""The command line's parser, its argument types, and ``main``.

Each command lives in a module of its own (``harvest``, ``status``, ...) with ``add_arguments``
and ``run``. A command's module is imported only when its arguments are parsed or its help is
shown, so that ``tiktok-reposts --help`` loads neither aiohttp nor the simulator.
"""

from __future__ import annotations

import argparse
import importlib
import math
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any, Final, NoReturn

from .. import __version__
from ._common import EXIT_INTERRUPTED, EXIT_USAGE, PROG, CommandError

__all__ = [
    "HARVEST_EPILOG",
    "add_ledger",
    "add_progress",
    "add_refresh_days",
    "add_verbosity",
    "age",
    "age_text",
    "build_parser",
    "int_in",
    "main",
    "positive_float",
]

# Each command's one line in the top-level help: what `--help` shows without importing them.
_COMMANDS: Final = {
    "harvest": "fetch the reposts of the users listed in a file (or - for standard input)",
    "status": "show a store's users per state, videos, requests, problems and quota plan",
    "export": "write a store's videos as JSONL, CSV or Parquet",
    "diff": "write what changed in each user's reposts between two rounds of a panel",
    "refresh": "check the stored videos with TikTok and delete those no longer available",
    "copy": "copy a store between SQLite and PostgreSQL, table by table",
    "serve": "run the Research API simulator for your own tests and tools",
    "demo": "harvest a built-in sample from a local simulator, then summarise and export it",
}


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line that names the culprit."""

    def error(self, message: str) -> NoReturn:
        """Print the error on one line and exit with status 2."""
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class _CommandParser(_Parser):
    """A command's parser, whose arguments its module adds when they are first needed."""

    def __init__(self, *args: Any, command: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.command = command
        self._loaded = False

    def load(self) -> None:
        """Import the command's module and add its arguments (once)."""
        if self._loaded:
            return
        self._loaded = True
        module = importlib.import_module(f".{self.command}", __package__)
        self.description = module.DESCRIPTION
        # What its exit statuses mean, where a script or a timer needs to tell them apart.
        self.epilog = getattr(module, "EPILOG", None)
        module.add_arguments(self)
        self.set_defaults(run=module.run)

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        """Load the command's arguments, then parse them."""
        self.load()
        return super().parse_known_args(args, namespace)

    def format_help(self) -> str:
        """Load the command's arguments, then describe them."""
        self.load()
        return super().format_help()

    def format_usage(self) -> str:
        """Load the command's arguments, then show their usage."""
        self.load()
        return super().format_usage()


# -- argument types ----------------------------------------------------------------------------


def int_in(least: int, most: int | None = None) -> Callable[[str], int]:
    """Return an argument type: an integer from ``least`` to ``most`` (no bound if None)."""

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


_AGE_UNITS: Final = {"m": 60, "h": 3600, "d": 86400, "w": 604800}
_AGE: Final = re.compile(r"([1-9][0-9]{0,6})([mhdw])")


def age(text: str) -> float:
    """Return an age such as ``30m``, ``12h``, ``7d`` or ``2w`` in seconds, or raise
    ArgumentTypeError naming the problem."""
    match = _AGE.fullmatch(text)
    if match is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an age: give a whole number from 1 and one unit, m (minutes),"
            " h (hours), d (days) or w (weeks), e.g. 7d or 12h"
        )
    return float(int(match[1]) * _AGE_UNITS[match[2]])


def age_text(seconds: float) -> str:
    """Return seconds as `age` reads them back (``7d``), in the largest unit that fits whole."""
    whole = round(seconds)
    for unit in ("d", "h", "m"):
        if whole >= _AGE_UNITS[unit] and whole % _AGE_UNITS[unit] == 0:
            return f"{whole // _AGE_UNITS[unit]}{unit}"
    return f"{whole}s"


def positive_float(text: str) -> float:
    """Return ``text`` as a finite number above 0, or raise ArgumentTypeError."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number")
    return value


def add_verbosity(parser: argparse.ArgumentParser) -> None:
    """Add ``-v`` and ``-q``."""
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


def add_rate(parser: argparse.ArgumentParser) -> None:
    """Add ``--rate``, the requests per second at most, defaulting to the client's own."""
    # client.py loads aiohttp: only the commands that add --rate (and their --help) pay for it.
    from ..client import DEFAULT_REQUESTS_PER_SECOND

    parser.add_argument(
        "--rate",
        type=positive_float,
        default=DEFAULT_REQUESTS_PER_SECOND,
        metavar="PER_SECOND",
        help="requests per second at most (%(default)g)",
    )


def add_refresh_days(parser: argparse.ArgumentParser) -> None:
    """Add ``--refresh-days``, the days between two refreshes that the store's clock counts."""
    from ..store import REFRESH_DAYS

    parser.add_argument(
        "--refresh-days",
        type=int_in(1),
        default=REFRESH_DAYS,
        metavar="N",
        help="a refresh is due this many days after the last one, or after the oldest stored"
        " page before any (%(default)s, the stricter reading of TikTok's terms; the live terms"
        " decide)",
    )


def add_ledger(parser: argparse.ArgumentParser) -> None:
    """Add ``--ledger``, the organisation's shared request ledger (a file or a PostgreSQL URL)."""
    parser.add_argument(
        "--ledger",
        metavar="PATH|URL",
        help="the request ledger shared by every store of the organisation, so that together"
        " they keep within --daily-quota: a file (one machine) or a postgresql:// URL (many);"
        " TIKTOK_LEDGER if set; without either, the store keeps its own",
    )


def add_progress(parser: argparse.ArgumentParser) -> None:
    """Add ``--no-progress`` and ``--log-interval``."""
    from ._progress import LOG_INTERVAL

    parser.add_argument(
        "--no-progress",
        dest="progress",
        action="store_false",
        help="no live progress line (nor, without a terminal, periodic progress log lines)",
    )
    parser.add_argument(
        "--log-interval",
        type=positive_float,
        default=LOG_INTERVAL,
        metavar="SECONDS",
        help="without a terminal, log progress this often (%(default)g)",
    )


#: The harvest's exit statuses, under ``tiktok-reposts --help`` and ``harvest --help``.
HARVEST_EPILOG: Final = (
    "Exit status: 0 every user reached a final state; 1 some users failed (run again to"
    " retry them); 2 usage or configuration error, or an answer this version cannot"
    " read; 75 stopped early, resumable: on the daily quota, an API that is down or"
    " unreachable, a shared --ledger out of reach, a repeat round's users coming back"
    " empty, or Ctrl-C (run the same command again)."
)


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of the ``tiktok-reposts`` command and its subcommands."""
    parser = _Parser(
        prog=PROG,
        description=(
            "Harvest the reposted videos of many TikTok users through the Research API, "
            "resumably, within the daily quota."
        ),
        epilog=HARVEST_EPILOG,
        allow_abbrev=False,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(
        dest="command", metavar="COMMAND", required=True, parser_class=_CommandParser
    )
    for name, help_line in _COMMANDS.items():
        commands.add_parser(name, help=help_line, command=name, allow_abbrev=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``tiktok-reposts`` command line; return its exit status.

    :param argv: the arguments after the program's name (None: ``sys.argv[1:]``).
    """
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
        return EXIT_INTERRUPTED
