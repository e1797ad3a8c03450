"""``tiktok-reposts refresh``: check a store's videos with TikTok, delete what is gone."""

from __future__ import annotations

import argparse
import asyncio
import math
import signal
import sys
import time
from typing import TYPE_CHECKING

from ..protocol import DEFAULT_BASE_URL
from ..quota import DEFAULT_DAILY_LIMIT, QuotaPolicy, utc_day
from ._common import (
    DEFAULT_DB,
    ENV_CLIENT_KEY,
    ENV_CLIENT_SECRET,
    ERASE_OWED,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_RESUMABLE,
    PROG,
    RESUME_HINT,
    UsageError,
)
from ._console import Console, logger, make_console
from ._parser import add_ledger, add_rate, add_refresh_days, add_verbosity, int_in
from ._progress import duration
from ._run import authenticate, credentials, make_client
from ._signals import StopSignals
from ._stores import open_existing, open_shared_ledger

if TYPE_CHECKING:
    from ..client import RepostClient
    from ..ledger import Ledger
    from ..refresher import RefreshReport
    from ..store import StoreLike

__all__ = ["DESCRIPTION", "EPILOG", "add_arguments", "due_line", "run"]

DESCRIPTION = (
    "Check every video in the store with TikTok's Batch Compliance API (10,000 ids a task) and"
    " delete, without trace, every one no longer available; with --users, also re-check each"
    " user and delete all data of those now not found, private or opted out. TikTok's terms ask"
    f" for this regularly. Credentials come from {ENV_CLIENT_KEY} and {ENV_CLIENT_SECRET}."
    " Running the same command again resumes with the same tasks."
)

EPILOG = (
    "Exit status: 0 every batch checked and every answer applied (with --if-due, also nothing"
    " due); 1 incomplete (a batch's tasks failed twice, or a user could not be checked: run it"
    " again), or stopped on a suspicious answer (nothing of it deleted: look, then"
    " --accept-removals); 2 usage or configuration error; 75 stopped early, resumable: the"
    " daily quota, tasks still processing after --poll-timeout, an API that is down, or Ctrl-C"
    " (run the same command again)."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the refresh's arguments to ``parser``."""
    from ..client import ENV_BASE_URL
    from ..refresher import POLL_FIRST_WAIT, POLL_TIMEOUT

    parser.add_argument("--db", default=DEFAULT_DB, help="the store (%(default)s)")
    parser.add_argument(
        "--users",
        action="store_true",
        help="also re-check each user with stored videos (one request each) and delete all data"
        " of those the API now says are not found or refuses (deleted, private, opted out)",
    )
    add_refresh_days(parser)
    parser.add_argument(
        "--if-due",
        action="store_true",
        help="for a timer: refresh only when one is due (--refresh-days) or an earlier one is"
        " unfinished; otherwise say so in one line and exit 0, without a request (a refresh"
        " stopped on a suspicious answer is left to a person: exit 1)",
    )
    add_ledger(parser)
    parser.add_argument(
        "--daily-quota",
        type=int_in(1),
        default=DEFAULT_DAILY_LIMIT,
        metavar="N",
        help=f"requests per UTC day, shared with the harvest's ledger ({DEFAULT_DAILY_LIMIT:,})",
    )
    parser.add_argument(
        "--on-quota",
        choices=[policy.value for policy in QuotaPolicy],
        default=QuotaPolicy.STOP.value,
        help="when the quota is spent: stop (exit 75) or wait for 00:00 UTC (%(default)s)",
    )
    parser.add_argument(
        "--accept-removals",
        action="store_true",
        help="act on a suspicious answer: a task that finds more than half of a batch gone (10"
        " ids or more) or all of a batch of two or more, or as many of 100 users re-checked now"
        " gone (by default the refresh stops before deleting any of it, exit 1)",
    )
    parser.add_argument(
        "--poll-wait",
        type=_seconds,
        default=POLL_FIRST_WAIT,
        metavar="SECONDS",
        help="wait before a task's first status poll; each later wait doubles the one before, at"
        " least 1 second and at most 5 minutes; each poll is a request (%(default)g)",
    )
    parser.add_argument(
        "--poll-timeout",
        type=_seconds,
        default=POLL_TIMEOUT,
        metavar="SECONDS",
        help="stop (exit 75, the tasks kept) after polling this long (%(default)g)",
    )
    add_rate(parser)
    parser.add_argument(
        "--base-url", help=f"API base URL ({ENV_BASE_URL}, else {DEFAULT_BASE_URL})"
    )
    add_verbosity(parser)


def _seconds(text: str) -> float:
    """Return ``text`` as a finite number of seconds >= 0, or raise ArgumentTypeError."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds >= 0")
    return value


def run(args: argparse.Namespace) -> int:
    """Run ``refresh``; return the exit status."""
    key, secret = credentials()
    store = open_existing(args.db)
    ledger: Ledger | None = None
    try:
        if args.if_due:
            # Before the ledger and the token: a timer's usual run has nothing to do.
            rest = _rest(store, args.refresh_days, time.time())
            if rest is not None:
                line, status = rest
                if args.quiet == 0 or status != EXIT_OK:
                    print(line, file=sys.stderr)
                return status
        # Before the token: a wrong ledger path or URL costs nothing.
        ledger = open_shared_ledger(args.ledger, args.db)
        # A user check asks for one video's id only: the answer's size, not its content, is what
        # it needs (the quota is the same).
        client = make_client(
            key,
            secret,
            base_url=args.base_url,
            fields=("id",),
            max_count=1,
            rate=args.rate,
            concurrency=1,
        )
        console = make_console(args.verbose - args.quiet)
        return asyncio.run(_refresh(client, store, args, console, ledger))
    finally:
        store.close()
        if ledger is not None:
            ledger.close()


async def _refresh(
    client: RepostClient,
    store: StoreLike,
    args: argparse.Namespace,
    console: Console,
    ledger: Ledger | None,
) -> int:
    from ..errors import AuthError
    from ..refresher import Refresher
    from ..store import StoreLockedError

    async with client:
        await authenticate(client)
        refresher = Refresher(
            client,
            store,
            check_users=args.users,
            daily_quota=args.daily_quota,
            on_quota=args.on_quota,
            accept_removals=args.accept_removals,
            poll_first_wait=args.poll_wait,
            poll_timeout=args.poll_timeout,
            ledger=ledger,
        )
        interrupted: list[str] = []

        def interrupt(signum: signal.Signals) -> None:
            interrupted.append(signum.name)
            console.line(
                "stopping: nothing new is sent; the tasks made so far are kept for the next run"
                " (press Ctrl-C again to quit at once; the store stays consistent either way)"
            )
            refresher.stop()

        signals = StopSignals(asyncio.get_running_loop(), interrupt)
        signals.install()
        try:
            report = await refresher.run()
        except StoreLockedError as exc:
            if args.if_due:
                # On a timer, a harvest holding the store is no fault: the next run looks again.
                busy = str(exc).partition(";")[0]
                console.line(f"nothing to do this time: {busy}; the next scheduled run looks again")
                return EXIT_OK
            raise UsageError(str(exc)) from None
        except AuthError as exc:
            raise UsageError(
                f"the API refused the credentials or their authorisation ({exc}); the store is"
                f" consistent: {RESUME_HINT} once this is fixed"
            ) from None
        finally:
            signals.remove()
    _summarise(report, store, args, console, ledger)
    return _status(report, args, console)


def _summarise(
    report: RefreshReport,
    store: StoreLike,
    args: argparse.Namespace,
    console: Console,
    ledger: Ledger | None,
) -> None:
    if not logger.isEnabledFor(20):
        return
    tasks = len(report.task_ids)
    begun = "resumed" if report.resumed else "begun"
    found = (
        f"{report.removed:,} no longer available, deleted ({report.observations_removed:,}"
        " stored copies in all)"
        if report.removed
        else "none gone"
        if report.answered == report.checked
        else "none found gone yet"
    )
    checked = (
        f"{report.checked:,} video ids checked"
        if report.answered == report.checked
        else f"{report.answered:,} of {report.checked:,} video ids answered so far"
    )
    console.line(
        f"refresh {report.refresh_id} ({begun}): {checked} in {tasks:,}"
        f" task{'s' if tasks != 1 else ''}: {found}"
    )
    if report.users_checked or args.users:
        their = "its" if report.users_removed == 1 else "their"
        console.line(
            f"users: {report.users_checked:,} re-checked, "
            + (
                f"{report.users_removed:,} now not found or refusing access: {their} data deleted"
                if report.users_removed
                else "all still available"
                if report.finished
                else "none found gone so far"
            )
        )
    day = utc_day(time.time())
    # With a shared ledger the day's count is the organisation's, not this store's.
    spent = store.requests_on(day) if ledger is None else ledger.spent(day)
    whose = "" if ledger is None else "the organisation's "
    left = max(args.daily_quota - spent, 0)
    extra = (
        f" ({report.requests_total:,} for this refresh in all)"
        if report.requests_total != report.requests
        else ""
    )
    console.line(
        f"{report.requests:,} request{'' if report.requests == 1 else 's'}{extra};"
        f" {whose}{spent:,} today, {left:,} left of {args.daily_quota:,}"
    )
    if report.erase_owed:
        console.line(ERASE_OWED)
    if report.finished:
        line = due_line(store, args.refresh_days, time.time())
        if line:
            console.line(line)


def _rest(store: StoreLike, days: int, now: float) -> tuple[str, int] | None:
    """Return why a refresh ``--if-due`` does nothing now, and its exit status; None: go on."""
    if store.erase_owed():
        return None  # deleted data still in the files: the refresh erases it first
    latest = store.refreshes(limit=1)
    if latest and not latest[0].finished:
        if latest[0].outcome == "stopped: suspicious":
            return (
                f"refresh {latest[0].id} stopped on a suspicious answer: a person decides (look,"
                f" then {PROG} refresh --db {store.path} --accept-removals); not resumed on a"
                " schedule",
                EXIT_FAILED,
            )
        return None  # an unfinished refresh (a kill, a quota stop, Failed tasks) goes on
    due = store.refresh_due(days)
    if due is None:
        return "nothing to do: the store holds no video to refresh", EXIT_OK
    if due <= now:
        return None
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(due))
    return (
        f"nothing to do: the next refresh is due {when} (in {duration(due - now)}; every"
        f" {days} days)",
        EXIT_OK,
    )


def due_line(store: StoreLike, days: int, now: float) -> str | None:
    """Return one line saying when the store's next refresh is due, or None if nothing is stored.

    :param store: the store.
    :param days: the days between two refreshes.
    :param now: the current time, epoch seconds.
    """
    due = store.refresh_due(days)
    if due is None:
        return None
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(due))
    if due <= now:
        return (
            f"a refresh is overdue since {when} (every {days} days): {PROG} refresh"
            f" --db {store.path}"
        )
    return f"next refresh due {when} (every {days} days)"


def _status(report: RefreshReport, args: argparse.Namespace, console: Console) -> int:
    if report.finished:
        return EXIT_OK
    outcome = report.outcome
    why = report.detail or outcome
    if outcome == "stopped: suspicious":
        console.line(f"stopped: {why}")
        return EXIT_FAILED
    if outcome == "incomplete":
        # The detail ends with what to do (run again), said once.
        console.line(f"incomplete: {why}")
        return EXIT_FAILED
    if outcome == "stopped: requested":
        console.line(f"interrupted: {RESUME_HINT} (the same tasks are polled)")
        return EXIT_RESUMABLE
    if outcome == "stopped: quota":
        when = why.rpartition("; try again after ")
        if when[1]:
            console.line(
                f"stopped: {when[0]}; {RESUME_HINT} after {when[2]}, or pass --on-quota wait"
            )
        else:
            console.line(f"stopped: {why}; {RESUME_HINT} later, or pass --on-quota wait")
        return EXIT_RESUMABLE
    console.line(f"stopped: {why}")
    return EXIT_RESUMABLE
