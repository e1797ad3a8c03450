"""``tiktok-reposts harvest``: fetch the reposts of the users listed in a file into a store."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import TYPE_CHECKING, Final

from .. import __version__
from ..models import VIDEO_FIELDS
from ..protocol import DEFAULT_BASE_URL, DEFAULT_MAX_COUNT, MAX_COUNT_LIMIT, normalize_fields
from ..quota import DEFAULT_DAILY_LIMIT, QuotaPolicy
from ..store import StoreLike
from ._common import (
    DEFAULT_DB,
    ENV_CLIENT_KEY,
    ENV_CLIENT_SECRET,
    EXIT_OK,
    PROG,
    RESUME_HINT,
    UsageError,
)
from ._console import Console, logger, make_console
from ._input import UserLines
from ._parser import (
    HARVEST_EPILOG,
    add_ledger,
    add_progress,
    add_rate,
    add_refresh_days,
    add_verbosity,
    age,
    int_in,
)
from ._run import (
    HarvestSettings,
    authenticate,
    credentials,
    make_client,
    rest_line,
    run_harvest,
)
from ._stores import create_store, open_for_harvest, open_shared_ledger

if TYPE_CHECKING:
    from ..client import RepostClient
    from ..ledger import Ledger

__all__ = ["DESCRIPTION", "EPILOG", "add_arguments", "run"]

EPILOG = HARVEST_EPILOG

DESCRIPTION = (
    f"Fetch every listed user's reposted videos into the store. Credentials come from"
    f" {ENV_CLIENT_KEY} and {ENV_CLIENT_SECRET}. Running the same command again resumes."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the harvest's arguments to ``parser``."""
    # The client's defaults, read where they are defined; client.py loads aiohttp, which only
    # `harvest` (its --help included) pays for.
    from ..client import DEFAULT_CONCURRENCY, ENV_BASE_URL

    parser.add_argument("users", metavar="USERS", help="file with one username per line, or -")
    parser.add_argument("--db", default=DEFAULT_DB, help="the store (%(default)s)")
    parser.add_argument(
        "--fields",
        help="comma-separated video fields to fetch (all of them; a resumed store keeps its own)",
    )
    parser.add_argument(
        "--max-count",
        type=int_in(1, MAX_COUNT_LIMIT),
        help=f"videos per request, 1 to {MAX_COUNT_LIMIT} ({DEFAULT_MAX_COUNT}: every request"
        " is quota)",
    )
    parser.add_argument(
        "--concurrency",
        type=int_in(1),
        default=DEFAULT_CONCURRENCY,
        help="users walked at once (%(default)s)",
    )
    add_rate(parser)
    parser.add_argument(
        "--daily-quota",
        type=int_in(1),
        default=DEFAULT_DAILY_LIMIT,
        metavar="N",
        help=f"research requests per UTC day ({DEFAULT_DAILY_LIMIT:,})",
    )
    add_ledger(parser)
    parser.add_argument(
        "--on-quota",
        choices=[policy.value for policy in QuotaPolicy],
        default=QuotaPolicy.STOP.value,
        help="when the quota is spent: stop (exit 75) or wait for 00:00 UTC (%(default)s)",
    )
    parser.add_argument(
        "--max-pages", type=int_in(1), metavar="N", help="pages per user at most (no limit)"
    )
    parser.add_argument(
        "--retry-failed",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="walk users that failed in an earlier run again (yes)",
    )
    parser.add_argument(
        "--retry-incomplete",
        action="store_true",
        help="walk users that a guard cut short in an earlier run (status shows them as"
        " incomplete, with the guard) again, from their saved cursor (no)",
    )
    parser.add_argument(
        "--new-round",
        action="store_true",
        help="start the next round of a panel: walk every listed user again from the start"
        " (an unfinished round, with users pending or failed, is resumed instead)",
    )
    parser.add_argument(
        "--new-round-every",
        type=age,
        metavar="AGE",
        help="for a run on a schedule (cron, a systemd timer): start the next round only once the"
        " latest is finished and started AGE ago (30m, 12h, 7d, 2w; a run up to a twentieth of"
        " AGE early, an hour at most, starts it, so that an hourly timer keeps the cadence),"
        " resume an unfinished round, or else do nothing and say so (exit 0);"
        " the cadence is recorded in the store, for status --check",
    )
    parser.add_argument(
        "--stop-at-known",
        action="store_true",
        help="with --new-round or --new-round-every: end each walk at the first page holding a"
        " video of the user's previous round (assumes newest first; such users are marked"
        " partial)",
    )
    parser.add_argument(
        "--accept-empty",
        action="store_true",
        help="in a repeat round, take users who had reposts before and now come back with none,"
        " or with a list ended early by an empty page, at the API's word (by default, when many"
        " do, or a list is cut short, the run stops resumable: the API has been seen answering"
        " empty lists with no error for days)",
    )
    parser.add_argument(
        "--base-url", help=f"API base URL ({ENV_BASE_URL}, else {DEFAULT_BASE_URL})"
    )
    add_refresh_days(parser)
    add_progress(parser)
    add_verbosity(parser)


def run(args: argparse.Namespace) -> int:
    """Run ``harvest``; return the exit status."""
    fields = None
    every: float | None = args.new_round_every
    if every is not None and args.new_round:
        raise UsageError(
            "--new-round and --new-round-every exclude each other: --new-round starts a round"
            " now, --new-round-every only when one is due (use it alone on a schedule)"
        )
    if args.stop_at_known and not (args.new_round or every is not None):
        raise UsageError(
            "--stop-at-known applies to a new round: pass --new-round (or --new-round-every) too"
            " (a resumed round keeps the choice it was started with)"
        )
    if args.fields is not None:
        try:
            fields = normalize_fields(args.fields)
        except ValueError as exc:
            raise UsageError(f"--fields: {exc}") from None
    key, secret = credentials()
    users = UserLines(args.users)
    store: StoreLike | None = None
    ledger: Ledger | None = None
    try:
        store, fields, max_count = open_for_harvest(
            args.db, fields, args.max_count, default_fields=VIDEO_FIELDS
        )
        if every is not None and store is not None:
            # Nothing due: say so before a token is fetched or a name read (an hourly timer's
            # usual case). The harvest checks again under the run lock.
            schedule = store.round_schedule(every, retry_failed=args.retry_failed)
            if schedule is not None and schedule.finished and not schedule.starts_now(time.time()):
                # Recorded here too: status --check must know the cadence from the first run.
                store.set_round_cadence(every)
                if args.quiet == 0:
                    print(rest_line(schedule, time.time()), file=sys.stderr)
                return EXIT_OK
        # Before the token: a wrong ledger path or URL costs nothing.
        ledger = open_shared_ledger(args.ledger, args.db)
        client = make_client(
            key,
            secret,
            base_url=args.base_url,
            fields=fields,
            max_count=max_count,
            rate=args.rate,
            concurrency=args.concurrency,
        )
        settings = HarvestSettings(
            new_round=args.new_round,
            new_round_every=every,
            stop_at_known=args.stop_at_known,
            accept_empty=args.accept_empty,
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
        console = make_console(args.verbose - args.quiet)
        if store is not None:
            _warn_if_refresh_overdue(store, args.refresh_days)
        return asyncio.run(_harvest(client, store, args.db, users, settings, console, ledger))
    finally:
        users.close()
        if store is not None:
            store.close()
        if ledger is not None:
            ledger.close()


def _warn_if_refresh_overdue(store: StoreLike, days: int) -> None:
    """Say in one warning line that the store is due for a refresh (TikTok's terms), if it is."""
    due = store.refresh_due(days)
    if due is not None and due <= time.time():
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(due))
        logger.warning(
            "a refresh of %s is overdue since %s (every %d days, TikTok's terms): run %s refresh"
            " --db %s",
            store.path,
            when,
            days,
            PROG,
            store.path,
        )


#: How a run ends that the API refused before it began (credentials, or not the API at all).
REFUSED: Final = "refused: authentication"


def _record_refusal(store: StoreLike) -> None:
    """Record a run refused before it began, once, so that ``status --check`` sees it.

    A scheduled run with expired or revoked credentials otherwise leaves no trace in the store:
    the alarm would wait until a round or refresh is overdue.
    """
    last = store.runs(1)
    if last and last[0].outcome == REFUSED:
        return  # the same refusal every hour is one alarm, not a row an hour
    store.begin_run(__version__)
    store.end_run(REFUSED)


async def _harvest(
    client: RepostClient,
    store: StoreLike | None,
    db: str,
    users: UserLines,
    settings: HarvestSettings,
    console: Console,
    ledger: Ledger | None,
) -> int:
    async with client:
        try:
            await authenticate(client)
        except UsageError:
            if store is not None:
                _record_refusal(store)
            raise
        if store is not None:
            return await run_harvest(client, store, users, settings, console, ledger=ledger)
        # Created only now: wrong credentials must not leave an empty store behind.
        with create_store(db, client.fields, client.max_count) as created:
            return await run_harvest(client, created, users, settings, console, ledger=ledger)
