"""Run a harvest for ``harvest`` and ``demo``: credentials, client, signals, progress, summary."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..protocol import DEFAULT_BASE_URL
from ..store import RoundRecord, RoundSchedule, StoreLike, StoreLockedError, UserState
from ._common import (
    ENV_CLIENT_KEY,
    ENV_CLIENT_SECRET,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_RESUMABLE,
    PROG,
    RESUME_HINT,
    CommandError,
    ResumableError,
    UsageError,
)
from ._console import Console, logger
from ._input import UserLines
from ._parser import age_text
from ._progress import Display, duration
from ._signals import StopSignals

if TYPE_CHECKING:
    from ..client import RepostClient
    from ..errors import AuthError, HarvestStopped
    from ..harvester import Harvester
    from ..ledger import Ledger

__all__ = [
    "HarvestSettings",
    "authenticate",
    "check_base_url",
    "credentials",
    "make_client",
    "rest_line",
    "run_harvest",
]


@dataclass(frozen=True, slots=True)
class HarvestSettings:
    """Hold how a harvest runs: the Harvester's options and the display's."""

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
    #: Take repeat-round users who come back empty at the API's word (no silent-empty alarm).
    accept_empty: bool = False
    #: ``--new-round-every``, in seconds: a run on a schedule.
    new_round_every: float | None = None


def credentials() -> tuple[str, str]:
    """Return the client key and secret from the environment, or raise UsageError."""
    values = {
        name: os.environ.get(name, "").strip() for name in (ENV_CLIENT_KEY, ENV_CLIENT_SECRET)
    }
    missing = [name for name, value in values.items() if not value]
    if missing:
        raise UsageError(
            f"missing credentials: {' and '.join(missing)} not set (set {ENV_CLIENT_KEY} and"
            f" {ENV_CLIENT_SECRET} to your research client's key and secret)"
        )
    for name, value in values.items():
        # A pasted line break or a stray NUL; the message names where, never what.
        bad = next((i for i, char in enumerate(value) if not char.isprintable()), None)
        if bad is not None:
            raise UsageError(
                f"{name} holds a control or invisible character (character {bad + 1} of"
                f" {len(value)}): set it again to exactly the value the developer portal shows"
            )
    return values[ENV_CLIENT_KEY], values[ENV_CLIENT_SECRET]


def check_base_url(url: str | None) -> None:
    """Refuse a base URL with a query or fragment: the API's paths go after it, not inside."""
    if url is None:
        return
    parts = urllib.parse.urlsplit(url.strip())
    if parts.query or parts.fragment or url.strip().endswith(("?", "#")):
        raise UsageError(
            f"--base-url {url!r} holds a query or fragment (?... or #...): give the API's root"
            f" only, e.g. {DEFAULT_BASE_URL}"
        )


def make_client(
    key: str,
    secret: str,
    *,
    base_url: str | None,
    fields: Sequence[str],
    max_count: int | None,
    rate: float,
    concurrency: int,
    **options: Any,
) -> RepostClient:
    """Return the harvest's client; a setting it refuses is a UsageError.

    :param key: the research client's key.
    :param secret: its secret.
    :param base_url: the API's root (None: TIKTOK_API_BASE_URL, else the live API).
    :param fields: the video fields to request.
    :param max_count: videos per request (None: the client's default).
    :param rate: requests per second at most.
    :param concurrency: users walked at once.
    :param options: passed on to `RepostClient`.
    """
    from ..client import ENV_BASE_URL, RepostClient

    check_base_url(base_url if base_url is not None else os.environ.get(ENV_BASE_URL))
    if max_count is not None:
        options["max_count"] = max_count
    try:
        return RepostClient(
            key,
            secret,
            base_url=base_url,
            fields=fields,
            requests_per_second=rate,
            concurrency=concurrency,
            **options,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _not_the_api(client: RepostClient, exc: Exception) -> UsageError:
    hint = ""
    path = urllib.parse.urlsplit(client.base_url).path
    if path.strip("/"):
        # The commonest slip: a root with the API's /v2 (or an endpoint's path) pasted on.
        hint = f"; the base URL is the API's root, without {path!r}"
    return UsageError(
        f"this does not look like the Research API at {client.base_url} (its token endpoint"
        f" answered: {exc}){hint}; check --base-url or TIKTOK_API_BASE_URL"
    )


def _is_not_found(exc: AuthError) -> bool:
    # The token endpoint refuses wrong credentials with an error code (flat or structured);
    # no such endpoint (404, 405), or a 4xx page without the API's JSON, means another server.
    return exc.status in (404, 405) or not exc.code


async def authenticate(client: RepostClient) -> None:
    """Fetch the access token before anything else; the client retries what its policy retries.

    Wrong credentials then end the run before the store is touched or any research request
    (quota) is spent.
    """
    from ..errors import AuthError, ProtocolError, TikTokError

    try:
        # `RepostClient.authenticate` retries the token endpoint's own faults within the
        # client's RetryPolicy; retrying here too would multiply the attempts.
        await client.authenticate()
    except AuthError as exc:
        if _is_not_found(exc):
            raise _not_the_api(client, exc) from None
        raise UsageError(
            f"the API refused the credentials in {ENV_CLIENT_KEY} and {ENV_CLIENT_SECRET}"
            f" ({exc}); check them"
        ) from None
    except ValueError as exc:  # a credential the request cannot carry
        raise UsageError(str(exc)) from None
    except ProtocolError as exc:
        # Every answer was something other than the token endpoint's JSON.
        raise _not_the_api(client, exc) from None
    except TikTokError as exc:
        if client.retry.is_retryable(exc):
            # The API is down or unreachable (a 5xx, a timeout, no connection) after every
            # attempt: nothing was spent and the store is untouched, so it is for later.
            raise ResumableError(
                f"cannot get an access token from {client.base_url} ({exc}); the API seems"
                " down or unreachable: run the same command again later"
            ) from None
        raise CommandError(f"cannot get an access token from {client.base_url}: {exc}") from None


async def run_harvest(
    client: RepostClient,
    store: StoreLike,
    users: UserLines,
    settings: HarvestSettings,
    console: Console,
    *,
    ledger: Ledger | None = None,
) -> int:
    """Harvest with progress, signals and a summary; return the exit status.

    ``ledger``: the organisation's shared ledger (None: the store keeps its own).
    """
    from ..errors import AuthError, HarvestStopped, InvalidFieldsError, UnknownListKeyError
    from ..harvester import Harvester

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
        accept_empty=settings.accept_empty,
        on_round=lambda record, started: _say_round(console, settings, record, started),
        ledger=ledger,
        new_round_every=settings.new_round_every,
    )

    async def consume() -> None:
        async for outcome in harvester.run(users.lines()):
            logger.debug(
                "%s: %s, %d videos stored, %d pages, %d requests%s",
                outcome.username,
                outcome.state,
                outcome.videos,
                outcome.pages,
                outcome.requests,
                f" ({outcome.error})" if outcome.error else "",
            )

    task = asyncio.create_task(consume(), name="tiktok-harvest")
    display = Display(
        harvester.progress,
        console,
        input_lines=lambda: users.total_lines,
        log_interval=settings.log_interval,
    )
    shown = asyncio.create_task(display.run()) if settings.progress else None
    interrupted: list[str] = []

    def interrupt(signum: signal.Signals) -> None:
        interrupted.append(signum.name)
        console.line(
            "stopping: nothing new is sent, the requests in flight are answered and stored"
            " (press Ctrl-C again to quit at once; the store stays consistent either way)"
        )
        # A stop of the gate, not a cancel: a request on the wire is quota spent, and its
        # answer is kept rather than fetched again; a request paid ahead and not yet sent is
        # held back and its booking given back, so the ledger ends equal to what the API got.
        harvester.stop()

    signals = StopSignals(asyncio.get_running_loop(), interrupt)
    signals.install()
    status = EXIT_OK
    stopped: HarvestStopped | None = None
    try:
        await task
    except asyncio.CancelledError:
        if not interrupted:
            raise
        status = EXIT_RESUMABLE
    except HarvestStopped as exc:
        status, stopped = EXIT_RESUMABLE, exc
    except InvalidFieldsError as exc:
        named = ",".join(exc.fields) or "(unnamed)"
        raise UsageError(
            f'the API rejects the field(s) {named} ("{exc.message}"), for every user alike:'
            f" pass --fields without {'them' if len(exc.fields) > 1 else 'it'} (a store keeps its"
            " fields: harvest into a new --db)"
        ) from None
    except UnknownListKeyError as exc:
        # Drift, not a usage error, but like one it needs a person (a newer version) before
        # another request is worth its quota: exit 2, one line naming the key.
        raise UsageError(
            f"{exc.message}; the store is consistent: {RESUME_HINT} with a version that reads"
            f" {exc.key!r}"
        ) from None
    except AuthError as exc:
        raise UsageError(
            f"the API refused the credentials or their authorisation ({exc}); the store is"
            f" consistent: {RESUME_HINT} once this is fixed"
        ) from None
    except StoreLockedError as exc:
        if settings.new_round_every is None:
            raise UsageError(str(exc)) from None
        # On a schedule, the run before this one still going (a round that takes days) is
        # the usual case, not a mistake: the timer's next run will look again.
        busy = str(exc).partition(";")[0]  # without the advice to a person at a terminal
        console.line(f"nothing to do this time: {busy}; the next scheduled run looks again")
        return EXIT_OK
    finally:
        signals.remove()
        if shown is not None:
            shown.cancel()
            await asyncio.gather(shown, return_exceptions=True)
        console.clear()
    db = str(store.path)
    if harvester.rested and harvester.schedule is not None:
        if logger.isEnabledFor(logging.INFO):
            console.line(rest_line(harvester.schedule, time.time()))
        return status
    _summarise(harvester, console, db, settings, stopped)
    if interrupted:
        console.line(f"interrupted: {settings.resume_hint}")
    elif stopped is not None:
        console.line(_stop_line(stopped, settings.resume_hint))
    elif failed := harvester.progress.finished[UserState.FAILED]:
        console.line(
            f"{failed:,} user{'s' if failed > 1 else ''} failed ({PROG} status --db {db}"
            " shows why): run the same command again to retry"
        )
        status = EXIT_FAILED
    return status


def rest_line(schedule: RoundSchedule, now: float) -> str:
    """Say in one line that a run on a schedule has nothing to do, and when the next round is."""
    due = schedule.due
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(due))
    return (
        f"nothing to do: round {schedule.round} is complete and the next is due {when}"
        f" (in {duration(due - now)}; --new-round-every {age_text(schedule.every)})"
    )


def _say_round(
    console: Console, settings: HarvestSettings, record: RoundRecord, started: bool
) -> None:
    """Say in one line that a --new-round run resumes an unfinished round, and why."""
    scheduled = settings.new_round or settings.new_round_every is not None
    if started or not scheduled or record.number < 2:
        return
    users = record.users
    failed = users[UserState.FAILED] if settings.retry_failed else 0
    left = users[UserState.PENDING] + failed
    why = []
    if left or record.input_read:
        why.append(f"{left:,} user{'s' if left != 1 else ''} left")
    if failed:
        why.append(f"{failed:,} failed")
    if not record.input_read:
        # Its members not yet read are in the input, not the store: so no "0 users left"
        # (it misled, before a run that walked the rest of the input).
        why.append("its input was not read to the end")
    console.line(
        f"resuming round {record.number}: {', '.join(why)} (a round is finished before the"
        " next one starts)"
    )


def _stop_line(stopped: HarvestStopped, resume_hint: str) -> str:
    from ..engine import BREAKER_GIVE_UP

    if stopped.reason == "quota":
        # The library says why and when: a lagging reset names a time minutes away, a spent
        # day the next midnight.
        why = stopped.detail or "the daily quota is spent"
        when = why.rpartition("; try again after ")
        if when[1]:
            return f"stopped: {when[0]}; {resume_hint} after {when[2]}, or pass --on-quota wait"
        return f"stopped: {why}; {resume_hint} later, or pass --on-quota wait"
    if stopped.reason == "ledger":
        return (
            f"stopped: {stopped.detail or 'the shared ledger cannot be reached'}: {resume_hint}"
            " once the ledger is reachable (the store is consistent)"
        )
    if stopped.reason == "empty":
        return (
            f"stopped: {stopped.detail or 'the API keeps answering empty lists'}:"
            f" {resume_hint} once the API is well, or pass --accept-empty if the emptiness is real"
        )
    if stopped.reason == "unhealthy":
        return (
            f"stopped: the API answered nothing but outage failures (5xx, gateway pages,"
            f" timeouts, no connection, 'Invalid count or cursor') for every user for"
            f" {BREAKER_GIVE_UP / 60:.0f} minutes; the users it held stay resumable:"
            f" {resume_hint} once the API is back"
        )
    return f"stopped ({stopped.reason}): {resume_hint}"


def _summarise(
    harvester: Harvester,
    console: Console,
    db: str,
    settings: HarvestSettings,
    stopped: HarvestStopped | None,
) -> None:
    if not logger.isEnabledFor(logging.INFO):
        return
    p = harvester.progress
    elapsed = time.time() - p.started_at if p.started_at else 0.0
    states = ", ".join(f"{p.finished[s]:,} {s}" for s in UserState if p.finished[s])
    spent = p.quota_spent
    # With a shared ledger the day's count is the organisation's, not this store's.
    whose = "the organisation's " if harvester.ledger is not None else ""
    if harvester.ledger is None and harvester.store.shared:
        # Other processes on the same store spent from the same day meanwhile: its count now.
        whose = "the store's "
        with contextlib.suppress(Exception):
            spent = max(spent, harvester.store.requests_on())
    left = max(settings.daily_quota - spent, 0)
    if stopped is not None and stopped.reason == "quota":
        # The API may say the day is spent before our count does (collaborators, a lagging
        # count): then nothing is left today, whatever the count says (as status says too).
        left = 0
    if harvester.round > 1:  # a first harvest is round 1 without saying so
        started = "started" if harvester.round_started else "resumed"
        known = ", stopping at known videos" if harvester.stop_at_known else ""
        console.line(f"round {harvester.round} ({started}{known})")
    if p.dropped:
        many = p.dropped > 1
        console.line(
            f"{p.dropped:,} member{'s' if many else ''} of round {harvester.round} not in this"
            f" input {'are' if many else 'is'} dropped from it (unfinished walks; the round"
            " completes without them, and a run of the round that names them walks them on)"
        )
    console.line(
        f"{p.done:,} user{'' if p.done == 1 else 's'} in {duration(elapsed)}"
        f"{': ' + states if states else ''}; {p.videos:,} videos stored; {p.requests:,}"
        f" request{'' if p.requests == 1 else 's'}"
        f" ({whose}{spent:,} today, {left:,} left of {settings.daily_quota:,})"
    )
    notes = []
    if p.invalid:
        notes.append(f"{p.invalid:,} bad input line{'s' if p.invalid > 1 else ''} skipped")
    if p.duplicates:
        notes.append(f"{p.duplicates:,} duplicate{'s' if p.duplicates > 1 else ''}")
    if p.already_final:
        # On a shared store another process may have finished a user during this very run.
        earlier = "already finished" if harvester.store.shared else "finished in earlier runs"
        notes.append(f"{p.already_final:,} {earlier}")
    if p.elsewhere:
        notes.append(f"{p.elsewhere:,} walked by other processes on the store")
    if notes:
        console.line(f"input: {'; '.join(notes)} ({PROG} status --db {db})")
