"""``tiktok-reposts demo``: harvest the simulator's demo users, then summarise and export them."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ..quota import DEFAULT_DAILY_LIMIT, QuotaPolicy
from ..store import Store
from ._common import (
    DEFAULT_DB,
    ENV_CLIENT_KEY,
    ENV_CLIENT_SECRET,
    EXIT_RESUMABLE,
    PROG,
    UsageError,
    stdout,
)
from ._console import Console, logger, make_console
from ._input import UserLines
from ._parser import add_progress, add_rate, add_verbosity
from ._run import HarvestSettings, authenticate, make_client, run_harvest

if TYPE_CHECKING:
    from ..client import RepostClient

__all__ = ["DESCRIPTION", "add_arguments", "run"]

DESCRIPTION = (
    "Start the simulator on a free loopback port, harvest a sample of users that shows"
    " the interesting cases, then print a summary and export the videos as JSONL."
)
# The demo starts afresh each time; it replaces only the files it made itself.
_MADE = ("demo.db", "demo.db-wal", "demo.db-shm", "demo.db.lock", "reposts.jsonl", "changes.jsonl")


def default_directory() -> Path:
    """Return where the demo writes without ``--dir``: never the working directory.

    Run in a checkout (as the quick start says), a ``./tiktok-demo`` would sit in the source tree
    and ship in the next sdist; the temporary directory keeps one stable place that each run
    replaces, and the demo prints it.
    """
    return Path(tempfile.gettempdir()) / "tiktok-demo"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the demo's arguments to ``parser``."""
    parser.add_argument(
        "--dir",
        help="directory for the demo's store, input and export (default: tiktok-demo in the"
        f" system's temporary directory, {default_directory()})",
    )
    add_rate(parser)
    parser.add_argument(
        "--panel",
        action="store_true",
        help="then a week passes at the simulator: harvest a second round with --new-round"
        " --stop-at-known, write what changed (changes.jsonl), and refresh the store (delete"
        " what TikTok no longer serves)",
    )
    add_progress(parser)
    add_verbosity(parser)
    # Logged more often than a harvest's progress: the demo takes seconds, not days.
    parser.set_defaults(log_interval=2.0)


def run(args: argparse.Namespace) -> int:
    """Run ``demo``; return the exit status."""
    from ..client import DEFAULT_CONCURRENCY
    from ..export import export_to_path
    from ..models import VIDEO_FIELDS
    from ..protocol import DEFAULT_MAX_COUNT
    from ..simulator import DEMO_INPUT

    directory = Path(args.dir) if args.dir is not None else default_directory()
    db = directory / "demo.db"
    users_file = directory / "users.txt"
    export_path = directory / "reposts.jsonl"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for name in _MADE:
            with contextlib.suppress(FileNotFoundError):
                (directory / name).unlink()
        users_file.write_text("\n".join(DEMO_INPUT) + "\n", encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot use the demo directory {str(directory)!r}: {exc}") from None
    settings = HarvestSettings(
        new_round=False,
        stop_at_known=False,
        concurrency=DEFAULT_CONCURRENCY,
        daily_quota=DEFAULT_DAILY_LIMIT,
        on_quota=QuotaPolicy.STOP.value,
        retry_failed=True,
        retry_incomplete=False,
        max_pages=None,
        progress=args.progress and args.quiet == 0,
        log_interval=args.log_interval,
        resume_hint="run the demo again to start it afresh",
    )
    console = make_console(args.verbose - args.quiet)
    panel = ""
    with Store(db, fields=VIDEO_FIELDS, max_count=DEFAULT_MAX_COUNT) as store:
        status, _ = asyncio.run(_demo(store, users_file, args.rate, settings, console))
        if status == EXIT_RESUMABLE:
            return status
        table = _table(store)
        if args.panel:
            later = dataclasses.replace(settings, new_round=True, stop_at_known=True)

            async def then(client: RepostClient) -> str:
                # The diff first (what the week changed), then the refresh that TikTok's terms
                # ask for, against the same simulator: what the week removed goes from round 1.
                return _panel(store, directory / "changes.jsonl") + await _refresh(client, store)

            status, panel = asyncio.run(
                _demo(store, users_file, args.rate, later, console, epoch=1, then=then)
            )
            if status == EXIT_RESUMABLE:
                return status
        exported = export_to_path(store, export_path, "jsonl")
        skipped = sum(store.skipped_counts().values())
    out = stdout()
    out.write(
        f"\n{table}\n\n{panel}"
        f"store:  {db}   ({PROG} status --db {db})\n"
        f"export: {export_path}   ({exported:,} videos, one JSON object per line)\n"
        f"input:  {users_file}   ({skipped} bad lines skipped, duplicates walked once)\n"
        f"\nNext, with your own credentials:\n"
        f"  export {ENV_CLIENT_KEY}=... {ENV_CLIENT_SECRET}=...\n"
        f"  {PROG} harvest users.txt --db {DEFAULT_DB}\n"
    )
    out.flush()
    return status


async def _demo(
    store: Store,
    users_file: Path,
    rate: float,
    settings: HarvestSettings,
    console: Console,
    *,
    epoch: int = 0,
    then: Callable[[RepostClient], Awaitable[str]] | None = None,
) -> tuple[int, str]:
    from ..simulator import (
        DEMO_INPUT,
        TEST_CLIENT_KEY,
        TEST_CLIENT_SECRET,
        Simulator,
        script_demo_faults,
    )

    # Latency like a distant API's, small enough that the demo takes seconds. At a later epoch
    # every user's list has moved on (new reposts at the head, some removed, counts grown).
    simulator = Simulator(latency=0.02, jitter=0.03, seed=1, retry_after=1, epoch=epoch)
    if not epoch:
        script_demo_faults(simulator)
    base_url = await simulator.start("127.0.0.1", 0)
    try:
        logger.info(
            "demo: a local Research API simulator at %s; harvesting the %d lines of %s into %s",
            base_url,
            len(DEMO_INPUT),
            users_file,
            store.path,
        )
        client = make_client(
            TEST_CLIENT_KEY,
            TEST_CLIENT_SECRET,
            base_url=base_url,
            fields=store.fields,
            max_count=store.max_count,
            rate=rate,
            concurrency=settings.concurrency,
        )
        async with client:
            await authenticate(client)
            users = UserLines(str(users_file))
            status = await run_harvest(client, store, users, settings, console)
            if then is None or status == EXIT_RESUMABLE:
                return status, ""
            return status, await then(client)
    finally:
        await simulator.close()


async def _refresh(client: RepostClient, store: Store) -> str:
    """Refresh the demo's store against its simulator; return a few lines about it."""
    from ..refresher import Refresher

    # The simulator's tasks complete at once: a short first wait keeps the demo quick.
    report = await Refresher(client, store, poll_first_wait=0.2).run()
    if not report.finished:
        return f"refresh: {report.outcome} ({report.detail})\n\n"
    return (
        f"refresh, as TikTok's terms ask ({PROG} refresh --db {store.path}):\n"
        f"  {report.checked:,} stored video ids checked in {len(report.task_ids):,} compliance"
        f" task{'s' if len(report.task_ids) != 1 else ''}, {report.requests:,} requests;"
        f" {report.removed:,} no longer available,\n"
        f"  deleted from every round ({report.observations_removed:,} stored copies), without"
        " trace in the store's files\n\n"
    )


def _panel(store: Store, path: Path) -> str:
    """Write the demo's diff of its two rounds to ``path``; return a few lines about them."""
    from collections import Counter

    from ..diff import diff_rounds, write_diff
    from ..export import write_atomically

    write_atomically(path, lambda sink: write_diff(store, sink, "jsonl"))
    kinds = Counter(change.change for change in diff_rounds(store))
    first, second = store.rounds()[:2]
    return (
        f"round 2, a week later at the simulator, with --new-round --stop-at-known:\n"
        f"  {second.requests:,} requests (round 1: {first.requests:,});"
        f" {second.partial:,} users stopped at a video known from round 1 (partial)\n"
        f"  {kinds['added']:,} reposts added, {kinds['removed']:,} removed,"
        f" {kinds['changed']:,} with new counts: {path}\n"
        f"  ({PROG} diff --db {store.path} --format csv --output changes.csv)\n\n"
    )


def _table(store: Store) -> str:
    from ..simulator import DEMO_NOTES

    rows = [("user", "state", "videos", "requests", "what it shows")]
    users = videos = requests = 0
    for record in store.iter_users():
        users, videos, requests = users + 1, videos + record.videos, requests + record.requests
        note = DEMO_NOTES.get(record.username, "")
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
