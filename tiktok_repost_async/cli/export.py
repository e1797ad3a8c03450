"""``tiktok-reposts export``: write a store's videos as JSONL, CSV or Parquet."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import TypeVar

from ..export import (
    ALL_ROUNDS,
    FORMATS,
    ID_TYPES,
    BinaryOutput,
    ExportError,
    MissingExtraError,
    check_options,
    export,
    format_for_path,
    write_atomically,
)
from ._common import DEFAULT_DB, EXIT_FAILED, EXIT_OK, CommandError, UsageError
from ._parser import int_in
from ._stores import open_existing

__all__ = ["DESCRIPTION", "add_arguments", "run", "write_output"]

DESCRIPTION = (
    "Write every video of the store with a reposted_by column, streamed. JSONL writes each"
    " video's JSON exactly as the API sent it; CSV and Parquet have a column per field"
    " and an 'extra' JSON column for what no column holds. Ids stay exact: CSV writes"
    " them as sent, Parquet as decimal128(38, 0), or both as text with --id-type string."
    " --ids-only writes who reposted which video in which round, and nothing else: a"
    " dataset to share under TikTok's terms."
)

_T = TypeVar("_T")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the export command's arguments to ``parser``."""
    parser.add_argument("--db", default=DEFAULT_DB, help="the store (%(default)s)")
    parser.add_argument(
        "--format",
        choices=FORMATS,
        help="output format (from the output's suffix, else jsonl)",
    )
    parser.add_argument(
        "-o", "--output", default="-", metavar="FILE", help="file to write, or - for stdout (-)"
    )
    parser.add_argument(
        "--provenance",
        action="store_true",
        help="add the round, and fetched_at (UTC) and log_id of the page each video came on",
    )
    parser.add_argument(
        "--round",
        type=_round_choice,
        metavar="N",
        help="each user's videos as observed in round N (default: its latest complete round);"
        " with --ids-only, 'all': every complete round, a row per user, video and round",
    )
    parser.add_argument(
        "--id-type",
        choices=ID_TYPES,
        default="number",
        help="number: Parquet ids as decimal128(38, 0), CSV and JSONL as sent; string: every id"
        " as the text of its digits, for R, Excel and readers without 20-digit integers"
        " (csv, parquet, and jsonl with --ids-only) (%(default)s)",
    )
    parser.add_argument(
        "--ids-only",
        action="store_true",
        help="write only reposted_by, id and round (a dehydrated dataset, for sharing)",
    )


def _round_choice(text: str) -> int | str:
    """Parse ``--round``: a round's number, or ``all``."""
    if text == ALL_ROUNDS:
        return text
    try:
        return int_in(1)(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a round: give an integer >= 1, or {ALL_ROUNDS!r}"
        ) from None


def run(args: argparse.Namespace) -> int:
    """Run ``export``; return the exit status."""
    output: str = args.output
    fmt = args.format or (None if output == "-" else format_for_path(output)) or "jsonl"
    try:
        check_options(fmt, id_type=args.id_type, ids_only=args.ids_only, round=args.round)
    except (MissingExtraError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    if fmt == "parquet" and output == "-" and sys.stdout.isatty():
        # Binary in a terminal garbles it and is lost: ask for a file before anything is read.
        raise UsageError(
            "--format parquet writes binary: give a file with -o FILE.parquet (or pipe it)"
        )
    with open_existing(args.db) as store:
        if isinstance(args.round, int) and args.round > store.current_round:
            raise UsageError(
                f"--round {args.round}: {args.db!r} has no round {args.round}; "
                f"its rounds are 1 to {store.current_round}"
            )

        def write(out: BinaryOutput) -> int:
            return export(
                store,
                out,
                fmt,
                provenance=args.provenance,
                round=args.round,
                id_type=args.id_type,
                ids_only=args.ids_only,
            )

        try:
            count = write_output(output, write)
        except ExportError as exc:
            raise CommandError(str(exc)) from None
    if count is None:
        return EXIT_FAILED
    where = "standard output" if output == "-" else output
    # Rows, not distinct videos: a video reposted by two users, or in two rounds, is a row each.
    what = (
        "video ids (--ids-only: one row per user and round, a shared video counts in each)"
        if args.ids_only
        else "videos"
    )
    print(f"exported {count:,} {what} to {where} ({fmt})", file=sys.stderr)
    return EXIT_OK


def write_output(output: str, write: Callable[[BinaryOutput], _T]) -> _T | None:
    """Write to standard output (``-``) or atomically to a file; None if the reader left.

    :param output: the ``--output`` given: a path, or ``-``.
    :param write: writes the content to the binary file it is given.
    """
    if output != "-":
        try:
            return write_atomically(output, write)
        except OSError as exc:  # no such directory, no permission, a full disk
            raise UsageError(f"cannot write {output!r}: {exc.strerror or exc}") from None
    out = sys.stdout.buffer
    try:
        result = write(out)
        out.flush()
    except BrokenPipeError:
        # The reader (head, less) has gone: stop quietly, and keep Python's exit-time flush
        # of stdout from raising the same error again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return None
    return result
