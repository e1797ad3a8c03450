"""``tiktok-reposts diff``: what changed in each user's reposts between two rounds of a panel."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..export import BinaryOutput
from ._common import DEFAULT_DB, EXIT_FAILED, EXIT_OK, UsageError
from ._parser import int_in
from ._stores import open_existing
from .export import write_output

__all__ = ["DESCRIPTION", "add_arguments", "run"]

DESCRIPTION = (
    "Compare two rounds of a panel (harvest --new-round) user by user and write one"
    " record per change: added, removed, or changed counts (like_count_delta ...). Only"
    " users walked 'done' in both rounds take part. Default: the last two complete"
    " rounds."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the diff command's arguments to ``parser``."""
    parser.add_argument("--db", default=DEFAULT_DB, help="the store (%(default)s)")
    parser.add_argument(
        "--from", dest="from_round", type=int_in(1), metavar="N", help="the earlier round"
    )
    parser.add_argument(
        "--to", dest="to_round", type=int_in(1), metavar="M", help="the later round"
    )
    parser.add_argument(
        "--format", choices=("jsonl", "csv"), help="output format (from the suffix, else jsonl)"
    )
    parser.add_argument(
        "-o", "--output", default="-", metavar="FILE", help="file to write, or - for stdout (-)"
    )


def run(args: argparse.Namespace) -> int:
    """Run ``diff``; return the exit status."""
    from ..diff import DiffError, pick_rounds, write_diff

    output: str = args.output
    suffix = Path(output).suffix.lower()
    fmt = args.format or ("csv" if output != "-" and suffix == ".csv" else "jsonl")
    with open_existing(args.db) as store:
        try:
            first, second = pick_rounds(store, args.from_round, args.to_round)
        except DiffError as exc:
            raise UsageError(str(exc)) from None

        def write(out: BinaryOutput) -> int:
            return write_diff(store, out, fmt, from_round=first, to_round=second)

        count = write_output(output, write)
    if count is None:
        return EXIT_FAILED
    where = "standard output" if output == "-" else output
    print(
        f"{count:,} changes from round {first} to round {second} written to {where} ({fmt})",
        file=sys.stderr,
    )
    return EXIT_OK
