"""``tiktok-reposts copy``: copy a store between SQLite and PostgreSQL (or to a new file)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Final

from .._dburl import is_postgres_url, mask_url
from ..errors import StoreError
from ._common import EXIT_INTERRUPTED, EXIT_OK, PROG, CommandError, UsageError, stdout

__all__ = ["DESCRIPTION", "add_arguments", "run"]

DESCRIPTION = (
    "Copy everything a store holds (settings, users and their cursors, rounds, runs, pages"
    " with their provenance, the videos' raw bytes in the API's order, the request ledger,"
    " skipped lines, the refresh audit) into a new store, table by table: a SQLite file into"
    " a PostgreSQL database, or back. SOURCE is read from one snapshot, safe while a harvest"
    " runs on it; TARGET must be new or an empty store, and is written whole or not at all."
    " A copy killed half-way is finished by the same command."
)

# Without a terminal, a progress line this often (seconds) while a big table is copied.
_LOG_EVERY: Final = 10.0
# Without a terminal, tables of at least this many rows say when they start and end.
_LOG_ROWS: Final = 10_000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the copy command's arguments to ``parser``."""
    parser.add_argument("source", metavar="SOURCE", help="the store to copy: a file or a URL")
    parser.add_argument(
        "target",
        metavar="TARGET",
        help="the new store: a file that does not exist yet, or a postgresql:// URL of a"
        " database without a store (or with an empty one)",
    )
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="also list the rows copied per table"
    )
    parser.add_argument(
        "-q", "--quiet", action="count", default=0, help="no progress, only the result"
    )


def run(args: argparse.Namespace) -> int:
    """Run ``copy``; return the exit status."""
    from ..store import CopyProgress, CopyRefusedError, copy_store
    from ._console import make_console

    source: str = args.source
    target: str = args.target
    if not source.strip() or not target.strip():
        raise UsageError("SOURCE and TARGET must name a store: a file or a postgresql:// URL")
    if not is_postgres_url(source) and not Path(source).is_file():
        raise UsageError(f"no store at {source!r}: the file does not exist; check SOURCE")
    console = make_console(args.verbose - args.quiet)
    quiet = args.quiet > 0
    last = [time.monotonic()]

    def progress(step: CopyProgress) -> None:
        if quiet or not step.total:
            return
        text = f"copying {step.table}: {step.done:,} of {step.total:,} rows"
        if console.tty:
            console.status(text)
            return
        # In a log: a big table's end, and a line every _LOG_EVERY seconds while it lasts.
        edge = step.done in (0, step.total) and step.total >= _LOG_ROWS
        if edge or (step.done and time.monotonic() - last[0] >= _LOG_EVERY):
            last[0] = time.monotonic()
            console.line(text)

    try:
        report = copy_store(source, target, progress=progress)
    except CopyRefusedError as exc:
        raise UsageError(str(exc)) from None
    except StoreError as exc:
        raise CommandError(str(exc)) from None
    except KeyboardInterrupt:
        console.clear()
        # A PostgreSQL target's transaction is rolled back, a SQLite one's file removed.
        print(
            f"{PROG} copy: interrupted: nothing was copied into {mask_url(target)}; run the same"
            " command again",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    finally:
        console.clear()
    out = stdout()
    print(
        f"copied {mask_url(source)} to {report.target} in {report.seconds:.1f}s:"
        f" {_count(report.users, 'user')}, {_count(report.rounds, 'round')},"
        f" {_count(report.pages, 'page')}, {_count(report.videos, 'video')},"
        f" {_count(report.requests, 'request')}",
        file=out,
    )
    if args.verbose:
        for name, rows in report.rows.items():
            print(f"  {name:<14} {rows:>12,} rows", file=out)
    sys.stdout.flush()
    return EXIT_OK


def _count(number: int, noun: str) -> str:
    return f"{number:,} {noun}{'' if number == 1 else 's'}"
