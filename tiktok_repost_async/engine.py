"""Walk many users at once through one client: bounded workers, per-user events, one stop gate.

`RepostClient.walk_many` and the harvest both run on this engine. Names are read as they come
(from a list, a file, a pipe or an async iterable) and handed to at most ``concurrency``
workers; each worker walks one user's cursor chain through the client's one session, limiter
and token, and reports every page and the user's end as events. A user's failure ends that
user, never the run; a failure that hits every user alike (a spent daily quota, refused
credentials, a store that cannot write) ends the run.

The `Gate` stands in front of every research request (see `RepostClient._fetch_page`):
``admit`` (budget and stop) -> limiter -> ``take`` (stop again, spend, book) -> token -> send.
A stop wakes idle workers and cuts backoff and ``Retry-After`` sleeps short, so nothing that
waits anywhere goes out after it.

A `Sink` receives what the walk produces: the in-memory walk keeps only the names it has seen
(to walk each once); the harvest's sink claims users in its store, commits pages and books
every request before it is sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import logging
import random
import threading
import time
from collections import deque
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
)
from dataclasses import dataclass
from typing import Final

from .client import RepostClient, Sleep, WalkTally
from .errors import (
    APIError,
    AuthError,
    InvalidFieldsError,
    QuotaExhaustedError,
    RateLimitError,
    StopReason,
    TikTokError,
    TokenExpiredError,
    TransportError,
    UserNotFoundError,
    UserUnavailableError,
    WalkStopped,
)
from .models import RepostedVideosPage
from .protocol import normalize_username, validate_positive_int
from .quota import (
    DAY_SECONDS,
    DEFAULT_RESET_MARGIN,
    DailyQuota,
    QuotaPolicy,
    next_utc_midnight,
    quota_stop_message,
    reset_lag_wait,
    utc_day,
)

__all__ = [
    "Engine",
    "Gate",
    "NameSkipped",
    "PageEvent",
    "Sink",
    "UserDone",
    "WalkEvent",
    "WalkGuard",
    "WalkJob",
    "WalkState",
    "walk_many",
]

logger = logging.getLogger("tiktok_repost_async.engine")

# Names are taken from the input this many at a time at most, and only while they come faster
# than the workers take them: large enough that a store's round trip per batch does not show,
# small enough that memory does not grow with the input.
CHUNK: Final = 500

# How a walk tells the daily-quota 429 from the short-term one. Both carry the code
# rate_limit_exceeded and an undocumented text, so the text is not read at all; the gate goes by
# behaviour (`Gate.rate_limited`). A 429 means the daily quota when:
# - the ledger is within QUOTA_NEAR_FRACTION of its budget (10 requests of 1,000; at least the
#   last one), whatever the 429 says; or
# - it carries no Retry-After and is the QUOTA_STREAK-th such 429 in a row across the run, with
#   no other answer in between and at least two users among them (the quota refuses everyone,
#   a short-term limit lets the next request through after a backoff); or the
#   QUOTA_STREAK_ONE_USER-th, when one user alone keeps getting them (a run of one user).
# Anything else, a 429 with Retry-After above all, is a pause: the request is retried.
# A daily-quota verdict in a UTC day before any request of that day was served is a lagging
# reset, not a spent day (see `Gate.quota_exhausted`): one probe at a time goes out after each of
# the growing waits of `quota.RESET_LAG_WAITS`, and while it lags any 429 without Retry-After is
# the quota still.
QUOTA_STREAK: Final = 3
QUOTA_STREAK_ONE_USER: Final = 5
QUOTA_NEAR_FRACTION: Final = 0.01

# The run-wide circuit breaker. BREAKER_THRESHOLD outage failures in a row across the run (a 5xx
# or an HTML gateway page, a timeout, a dropped or refused connection, see `client.is_outage`;
# also a 401 on a token fetched for that very request, and a failure of the token endpoint),
# with no other answer in between, trip it: every worker pauses in `Gate.admit`, and one probe
# at a time goes out after a wait that doubles from BREAKER_FIRST_WAIT up to BREAKER_MAX_WAIT,
# each drawn between BREAKER_JITTER and 1 times that (so that two runs on one project do not
# probe in step). Any answer that is not an outage failure closes it and wakes every worker.
# Failures while it is open are held, not charged to any user. A probe that would go out more
# than BREAKER_GIVE_UP after the pause began is not sent: the run stops, resumable
# (`StopReason.UNHEALTHY`).
BREAKER_THRESHOLD: Final = 5
BREAKER_FIRST_WAIT: Final = 5.0
BREAKER_MAX_WAIT: Final = 300.0
BREAKER_JITTER: Final = 0.5
BREAKER_GIVE_UP: Final = 3600.0


class WalkState(enum.StrEnum):
    """Name how one user's walk ended."""

    DONE = "done"
    NOT_FOUND = "not_found"
    UNAVAILABLE = "unavailable"
    FAILED = "failed"
    #: A guard (`WalkGuard`) cut the walk short while the API still said ``has_more``.
    INCOMPLETE = "incomplete"


class WalkGuard(enum.StrEnum):
    """Name the guard that cut a user's walk short while the API still said ``has_more``."""

    #: The walk reached its ``max_pages``.
    MAX_PAGES = "max_pages"
    #: The API sent back a cursor this walk had already sent: sending it again would loop.
    REPEATED_CURSOR = "repeated_cursor"
    #: Too many empty pages in a row with ``has_more`` true (`client.empty_page_bound`: 3 at
    #: 100 videos a page): a ``has_more`` that never turns false.
    EMPTY_PAGES = "empty_pages"

    def describe(self, cursor: int) -> str:
        """Return one line that says how this guard cut a walk that stopped at ``cursor``."""
        why = {
            WalkGuard.MAX_PAGES: "reached max_pages",
            WalkGuard.REPEATED_CURSOR: "the API sent back a cursor already sent",
            WalkGuard.EMPTY_PAGES: "empty pages in a row while the API said has_more",
        }[self]
        return f"{self.value}: {why}; cut at cursor {cursor}"


@dataclass(frozen=True, slots=True)
class PageEvent:
    """Carry one page of one user's walk, as it arrives."""

    username: str
    #: The cursor this page was asked for.
    cursor: int
    page: RepostedVideosPage


@dataclass(frozen=True, slots=True)
class UserDone:
    """Tell how one user's walk ended, with what it took."""

    username: str
    state: WalkState
    pages: int
    #: Videos on the pages walked (the harvest counts the new ones it stored).
    videos: int
    #: Research requests sent for this user, retries included.
    requests: int
    #: The error that ended the user (a `TikTokError`), for every state but ``done``.
    error: TikTokError | None = None
    #: The guard that cut the walk short, if one did; ``state`` is then ``incomplete``.
    guard: WalkGuard | None = None
    #: The cursor a later walk would continue from.
    cursor: int = 0
    #: The sink ended the walk early by choice (a panel's stop_at_known), not a guard.
    partial: bool = False

    @property
    def incomplete(self) -> bool:
        """Tell whether a guard cut the walk short while the API still had more."""
        return self.guard is not None


@dataclass(frozen=True, slots=True)
class NameSkipped:
    """Report an input name that was not walked: unusable, or seen before."""

    #: The name's position in the input, from 1.
    line: int
    #: The name as given (``repr`` of anything that is not a str).
    name: str
    #: Why: "blank line", "not a TikTok username", "duplicate", ...
    reason: str


WalkEvent = PageEvent | UserDone | NameSkipped


@dataclass(slots=True)
class WalkJob:
    """Hold one user's walk in progress: where it started and where it stands."""

    username: str
    cursor: int = 0
    start: int = 0
    pages: int = 0
    videos: int = 0
    #: Set by a sink to end the walk after the page it is handed (the harvest's stop_at_known):
    #: the user ends ``done`` and ``partial``.
    stop_after: bool = False
    #: Empty pages in a row with ``has_more`` true so far, the page handed to the sink included
    #: (the walk ends at `client.empty_page_bound`).
    empty_pages: int = 0


class Sink:
    """Receive what a walk produces; this base keeps nothing but the names it has seen."""

    def __init__(self) -> None:
        # The one thing that grows with the input: walking each name once means remembering
        # it (about a hundred bytes a name). The harvest remembers them in its store instead.
        self._seen: set[str] = set()

    async def claim(self, names: list[str], lines: list[int]) -> list[WalkJob | NameSkipped]:
        """Turn valid names into jobs, or into skips (a duplicate, a user already done)."""
        out: list[WalkJob | NameSkipped] = []
        for name, line in zip(names, lines, strict=True):
            if name in self._seen:
                out.append(NameSkipped(line, name, "duplicate"))
            else:
                self._seen.add(name)
                out.append(WalkJob(name))
        return out

    async def skipped(self, names: list[NameSkipped]) -> None:
        """Receive the unusable names of one batch of input."""

    async def page(self, job: WalkJob, event: PageEvent) -> int:
        """Receive one page; return the number of videos to count for the user."""
        return len(event.page.videos)

    async def finish(self, job: WalkJob, done: UserDone) -> None:
        """Receive one user's end, before the event is handed on."""

    def input_done(self) -> None:
        """Note that every input name has been read."""


class Gate:
    """Stand in front of every research request of a walk: the stop and the daily quota."""

    def __init__(
        self,
        quota: DailyQuota | None = None,
        *,
        on_quota: QuotaPolicy = QuotaPolicy.STOP,
        clock: Callable[[], float] = time.time,
        sleep: Sleep | None = None,
        book: Callable[[str], Awaitable[None]] | None = None,
        refund: Callable[[str, str], Awaitable[None]] | None = None,
        on_wait: Callable[[float | None], None] | None = None,
        on_probe: Callable[[float | None], None] | None = None,
    ) -> None:
        """Make a gate.

        ``quota``: the day's budget (None: no budget of our own; the API's daily 429 still
        stops). ``on_quota``: stop, or wait for the reset, when it is spent. ``clock`` and
        ``sleep``: the wall clock and the sleep of quota waits (tests move time with them).
        ``book``: awaited with the username right before each request is sent (the harvest's
        write-ahead ledger). ``refund``: awaited with the username and the UTC day it was booked
        on when a booked request never reached the API (a refused connection, a failed token
        fetch). ``on_wait``: told when a quota wait starts (its end) and ends.
        ``on_probe``: told when the circuit breaker's next probe is due, and None when it closes.
        """
        self.quota = quota
        self.on_quota = QuotaPolicy(on_quota)
        self._clock = clock
        self._sleep: Sleep = sleep if sleep is not None else asyncio.sleep
        self._book = book
        self._refund = refund
        # The UTC day on which each user's request in hand was spent and booked, for `refund`.
        self._taken: dict[str, str] = {}
        self._on_wait = on_wait
        self._on_probe = on_probe
        self._stopped: StopReason | None = None
        # What a stop tells the researcher (a quota stop: why, and when to try again).
        self._detail: str | None = None
        self._retry_at: float | None = None
        self._event = asyncio.Event()
        self._reset_lock = asyncio.Lock()
        self._listeners: list[Callable[[], None]] = []
        self._api_spent = False
        self._prepaid: dict[str, str] = {}
        self.sent = 0
        # Until the API has answered one request of this walk, one request at a time goes out
        # (the trial, held by one user): a field it rejects, a missing scope or refused
        # credentials then cost one request, not one per worker.
        self._answered = False
        self._trial: str | None = None
        self._answer = asyncio.Event()
        # The run of 429s without Retry-After since the last other answer, and whose they were.
        self._limited = 0
        self._limited_users: set[str] = set()
        # The circuit breaker: outage failures in a row, whether it is open (and since when),
        # the probes sent while open, who holds the probe, and the event that tells waiting
        # workers that it closed or that the probe is free.
        self._outages = 0
        self._last_outage: TikTokError | None = None
        self._paused_at: float | None = None
        self._probes = 0
        self._probe: str | None = None
        self._breaker = asyncio.Event()
        self._rng = random.Random()
        # The lagging reset: the UTC day (its index) in which a request was last served, whether
        # the daily-quota 429 of a day not yet served holds the run, who holds its one probe,
        # and the event that tells the others that the probe is free.
        self._served_day: int | None = None
        self._lagging = False
        self._lag_probe: str | None = None
        self._lag_event = asyncio.Event()

    @property
    def stopped(self) -> StopReason | None:
        """Return why the walk stopped, or None while it runs."""
        return self._stopped

    @property
    def lagging(self) -> bool:
        """Tell whether the run waits for a daily-quota reset that seems to lag."""
        return self._lagging

    def stop(
        self,
        reason: StopReason = StopReason.REQUESTED,
        detail: str | None = None,
        retry_at: float | None = None,
    ) -> None:
        """Stop the walk: nothing waiting goes out, idle workers end, sleepers wake.

        ``detail`` and ``retry_at`` go to the `WalkStopped` raised (see there).
        """
        if self._stopped is not None:
            return
        self._stopped = StopReason(reason)
        self._detail = detail
        self._retry_at = retry_at
        self._event.set()
        for listener in list(self._listeners):
            listener()

    def add_listener(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` once when the gate stops."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Callable[[], None]) -> None:
        """Forget a listener added with `add_listener`."""
        with contextlib.suppress(ValueError):
            self._listeners.remove(listener)

    def check(self) -> None:
        """Raise `WalkStopped` if the walk was stopped."""
        if self._stopped is not None:
            raise WalkStopped(self._stopped, self._detail, self._retry_at)

    def prepay(self, username: str) -> bool:
        """Spend the budget of ``username``'s next request now; False if none is left.

        The harvest books a prepaid request with the user's previous page, in the same
        transaction, so that it goes out without waiting for a booking of its own.
        """
        if self._stopped is not None or username in self._prepaid:
            return False
        if self.quota is not None:
            if not self.quota.try_spend():
                return False
            self._prepaid[username] = self.quota.day
        else:
            self._prepaid[username] = ""
        return True

    def _paid(self, username: str) -> bool:
        day = self._prepaid.get(username)
        if day is None:
            return False
        if self.quota is not None and day != self.quota.day:
            # Paid and booked yesterday: today's budget and ledger must count it again.
            del self._prepaid[username]
            return False
        return True

    def _check_paid(self) -> None:
        # A prepaid request is within the budget and in the ledger already: a stop because
        # the budget ran out lets it go (holding it back would leave the ledger one over).
        # Any other stop holds it back.
        if self._stopped is not None and (self._stopped is not StopReason.QUOTA or self._api_spent):
            raise WalkStopped(self._stopped, self._detail, self._retry_at)

    def answered(self, reached: bool) -> None:
        """Note that a request got an answer (``reached``) or none (a transport failure)."""
        if self._answered:
            return
        if reached:
            self._answered = True
        else:
            # No answer says nothing about the request: let another user try.
            self._trial = None
        self._answer.set()
        self._answer = asyncio.Event()

    def rate_limited(self, username: str, error: RateLimitError) -> bool:
        """Note a 429 for ``username``; tell whether it means the daily quota is spent.

        The rules are those above `QUOTA_STREAK`; the 429's text plays no part.
        """
        quota = self.quota
        if self._lagging and error.retry_after is None:
            # The day's first 429s proved the quota already; this is the probe's answer.
            self._reset_streak()
            return True
        if quota is not None:
            near = max(1, int(quota.limit * QUOTA_NEAR_FRACTION))
            if quota.limit - quota.spent <= near:
                self._reset_streak()
                return True
        if error.retry_after is not None:
            # The server says when to come back: the daily quota never does.
            return False
        self._limited += 1
        self._limited_users.add(username)
        daily = self._limited >= QUOTA_STREAK_ONE_USER or (
            self._limited >= QUOTA_STREAK and len(self._limited_users) >= 2
        )
        if daily:
            logger.warning(
                "%d requests of %d users in a row got a 429 without Retry-After:"
                " taking it for the daily quota",
                self._limited,
                len(self._limited_users),
            )
            # A new streak after the reset (or the wait) must prove itself again.
            self._reset_streak()
        return daily

    def not_rate_limited(self) -> None:
        """Note an answer that was not a 429: the API still serves this project today."""
        self._reset_streak()

    def _reset_streak(self) -> None:
        self._limited = 0
        self._limited_users.clear()

    def served(self) -> None:
        """Note a page served: the quota of this UTC day is fresh, a lagging reset is over."""
        self._served_day = int(self._clock() // DAY_SECONDS)
        if self._lagging:
            logger.info("the daily quota's reset came: resuming")
            self._lagging = False
            self._free_lag_probe()

    def _free_lag_probe(self) -> None:
        self._lag_probe = None
        self._lag_event.set()
        self._lag_event = asyncio.Event()

    @property
    def paused(self) -> bool:
        """Tell whether the circuit breaker holds every worker (the API seems down)."""
        return self._paused_at is not None

    def unhealthy(self, username: str, error: TikTokError) -> bool:
        """Note an outage failure; True: the breaker is open and holds the request, not the user.

        The same error reported again (one token refresh that failed for all its waiters) is
        one failure, not one per worker.
        """
        if error is not self._last_outage:
            self._outages += 1
            self._last_outage = error
        if self._paused_at is not None:
            # A failed probe, or a request that was on its way when the breaker opened.
            if self._probe == username:
                self._free_probe()
            return True
        if self._outages < BREAKER_THRESHOLD:
            return False
        self._paused_at = self._clock()
        self._probes = 0
        logger.warning(
            "API unhealthy: %d requests in a row failed (last: %s); pausing every worker",
            self._outages,
            error,
        )
        return True

    def healthy(self) -> None:
        """Note that the API answered: close the breaker and wake every worker."""
        self._outages = 0
        self._last_outage = None
        if self._paused_at is None:
            return
        logger.warning("API answers again after %.0f s: resuming", self._clock() - self._paused_at)
        self._paused_at = None
        self._free_probe()
        if self._on_probe is not None:
            self._on_probe(None)

    def _free_probe(self) -> None:
        self._probe = None
        self._breaker.set()
        self._breaker = asyncio.Event()

    async def _await_health(self, username: str) -> None:
        # While the breaker is open, one worker at a time waits out the next probe wait and
        # sends its request as the probe; the others wait until it closes or the probe is free.
        while self._paused_at is not None:
            if self._probe == username:
                # The probe back from `take` (a budget taken meanwhile): it has waited already.
                return
            if self._probe is not None:
                if not self._answered and self._trial == username:
                    # The trial goes with the probe: holding it here while the probe waits
                    # for it would leave both waiting for ever (no answer came yet: every
                    # connection was refused).
                    self.answered(False)
                await self._wait_for(self._breaker)
                continue
            self._probe = username
            ceiling = min(BREAKER_MAX_WAIT, BREAKER_FIRST_WAIT * 2.0**self._probes)
            wait = self._rng.uniform(BREAKER_JITTER * ceiling, ceiling)
            self._probes += 1
            if self._clock() + wait - self._paused_at > BREAKER_GIVE_UP:
                logger.warning(
                    "API unhealthy for %.0f s: stopping (resumable)",
                    self._clock() - self._paused_at,
                )
                self.stop(StopReason.UNHEALTHY)
                self.check()
            logger.warning("API unhealthy: pausing, next probe in %.0f s", wait)
            if self._on_probe is not None:
                self._on_probe(self._clock() + wait)
            try:
                await self._sleep_unless_stopped(wait, self._sleep)
            except BaseException:
                self._free_probe()
                raise
            return

    def release(self, username: str) -> None:
        """Hand the trial on if ``username``'s walk ended without an answer (see `answered`)."""
        if self._probe == username:
            self._free_probe()
        if self._lag_probe == username:
            self._free_lag_probe()
        self._taken.pop(username, None)
        if not self._answered and self._trial == username:
            self.answered(False)

    async def admit(self, username: str) -> None:
        """Wait until a request may queue for the limiter; raise `WalkStopped` after a stop."""
        if self._stopped is None:
            # Before the prepaid ones too: the breaker holds every request, paid or not.
            await self._await_health(username)
        if self._paid(username):
            self._check_paid()
            return
        self.check()
        while not self._answered and self._trial not in (None, username):
            await self._wait_for(self._answer)
        if not self._answered:
            self._trial = username
        quota = self.quota
        while True:
            while quota is not None and quota.remaining <= 0:
                await self._spent()
            if not self._lagging or self._lag_probe in (None, username):
                break
            # One probe at a time tells whether a lagging reset came: the others wait for it.
            await self._wait_for(self._lag_event)
        if self._lagging:
            self._lag_probe = username

    async def take(self, username: str) -> bool:
        """Spend and book one request that is about to be sent; False: back to `admit`."""
        if self._paused_at is not None and self._probe != username and self._stopped is None:
            # The breaker opened while this one waited in the limiter: only the probe goes.
            return False
        if self._lagging and self._stopped is None:
            # A lagging reset began while this one waited in the limiter: only its probe goes.
            if self._lag_probe is None:
                self._lag_probe = username
            elif self._lag_probe != username:
                return False
        if self._paid(username):
            self._check_paid()
            self._taken[username] = self._prepaid.pop(username) or self._today()
            self.sent += 1
            return True
        self.check()
        if self.quota is not None and not self.quota.try_spend():
            # Others took the last of the budget while this one waited in the limiter.
            return False
        if self._book is not None:
            await self._book(username)
            if self._api_spent and self._stopped is not None:
                # The API said the quota is spent while this one was booked: sending it would
                # only fetch another 429. It stays booked, unsent: an over-count of one.
                self.check()
        self._taken[username] = self._today()
        self.sent += 1
        return True

    def _today(self) -> str:
        return self.quota.day if self.quota is not None else utc_day(self._clock())

    async def refund(self, username: str) -> None:
        """Give back the request of ``username`` that `take` spent and booked but never sent.

        A refused connection or a failed token fetch: the API never saw it, so neither the
        budget nor the ledger counts it (booked yesterday, it is taken off yesterday's ledger).
        """
        day = self._taken.pop(username, None)
        if day is None:
            return
        self.sent -= 1
        if self.quota is not None and day == self.quota.day:
            self.quota.refund()
        if self._refund is not None:
            await self._refund(username, day)

    async def pause(self, seconds: float, sleep: Sleep) -> None:
        """Sleep before a retry, cut short (with `WalkStopped`) by a stop."""
        await self._sleep_unless_stopped(seconds, sleep)

    async def quota_exhausted(self) -> None:
        """Handle the API's daily-quota answer: stop, or wait for the reset (or a lagging one).

        A verdict in a UTC day before any request of that day was served is the reset lagging:
        the quota is tried again after `quota.reset_lag_wait`, never later than the next reset.
        """
        now = self._clock()
        lagging = self._served_day != int(now // DAY_SECONDS)
        if self.quota is not None:
            if lagging:
                until = min(now + reset_lag_wait(now), next_utc_midnight(now) + self.quota.margin)
                self.quota.exhaust(until)
            else:
                self.quota.exhaust()
        if lagging and not self._lagging:
            logger.warning(
                "the API refused this UTC day's first requests as over quota: the reset seems"
                " to lag"
            )
        self._lagging = lagging
        if lagging:
            # The probe's answer came: whoever comes next probes after the wait.
            self._free_lag_probe()
        self._api_spent = True
        await self._spent()

    async def _spent(self) -> None:
        quota = self.quota
        if quota is None or self.on_quota is QuotaPolicy.STOP:
            now = self._clock()
            if quota is not None:
                retry_at = quota.resumes_at()
            elif self._lagging:
                retry_at = now + reset_lag_wait(now)
            else:
                retry_at = next_utc_midnight(now) + DEFAULT_RESET_MARGIN
            detail = quota_stop_message(quota, retry_at, lagging=self._lagging)
            self.stop(StopReason.QUOTA, detail, retry_at)
            self.check()
            return
        # One worker sleeps until the reset; the others find the day fresh when they get the lock.
        async with self._reset_lock:
            self.check()
            if quota.remaining > 0:
                return
            until = quota.resumes_at()
            logger.warning(
                "daily quota %s: waiting until %s UTC",
                "reset lags" if self._lagging else "spent",
                time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(until)),
            )
            if self._on_wait is not None:
                self._on_wait(until)
            try:
                while (wait := until - self._clock()) > 0:
                    await self._sleep_unless_stopped(wait, self._sleep)
                self._api_spent = False
                if self._served_day != int(self._clock() // DAY_SECONDS):
                    # A new day that has served nothing yet: its reset may lag, so one probe
                    # goes first, and a 429 without Retry-After on it means "not yet" (a whole
                    # pool of workers would each fetch one).
                    self._lagging = True
            finally:
                if self._on_wait is not None:
                    self._on_wait(None)

    async def _wait_for(self, event: asyncio.Event) -> None:
        waiter = asyncio.ensure_future(event.wait())
        waker = asyncio.ensure_future(self._event.wait())
        try:
            await asyncio.wait((waiter, waker), return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            waker.cancel()
        self.check()

    async def _sleep_unless_stopped(self, seconds: float, sleep: Sleep) -> None:
        self.check()
        if seconds <= 0:
            return
        sleeper = asyncio.ensure_future(sleep(seconds))
        waker = asyncio.ensure_future(self._event.wait())
        try:
            await asyncio.wait((sleeper, waker), return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            waker.cancel()
        if sleeper.done() and not sleeper.cancelled():
            sleeper.result()  # a sleep that failed says so, rather than being lost
        self.check()


class _End:
    """Mark the end of the event stream."""


@dataclass(frozen=True, slots=True)
class _Failure:
    error: BaseException


_END: Final = _End()


@dataclass(slots=True)
class _Slot:
    idle: bool = False
    task: asyncio.Task[None] | None = None


class Engine:
    """Run one walk of many users: a reader of names, bounded workers, and their events."""

    def __init__(
        self,
        client: RepostClient,
        *,
        concurrency: int,
        max_pages: int | None = None,
        gate: Gate | None = None,
        sink: Sink | None = None,
        page_events: bool = True,
        skip_events: bool = True,
    ) -> None:
        """Make an engine.

        ``client``: the client whose session, limiter and token every worker shares.
        ``concurrency``: users walked at once. ``max_pages``: pages per user at most.
        ``gate``: the stop and quota gate (a fresh one without a budget by default).
        ``sink``: what receives claims, pages and ends (the in-memory `Sink` by default).
        ``page_events``/``skip_events``: whether `run` yields `PageEvent`/`NameSkipped` too.
        """
        validate_positive_int("concurrency", concurrency)
        validate_positive_int("max_pages", max_pages, optional=True)
        self.client = client
        self.concurrency = concurrency
        self.max_pages = max_pages
        self.gate = gate if gate is not None else Gate()
        self.sink = sink if sink is not None else Sink()
        self._page_events = page_events
        self._skip_events = skip_events
        self._dispatcher: asyncio.Task[None] | None = None
        self._slots: list[_Slot] = []

    async def run(
        self, usernames: Iterable[str] | AsyncIterable[str]
    ) -> AsyncGenerator[WalkEvent, None]:
        """Walk every name and yield the events as they happen; raise `WalkStopped` on a stop."""
        _check_source(usernames)
        events: asyncio.Queue[WalkEvent | _End | _Failure] = asyncio.Queue(
            maxsize=2 * self.concurrency
        )
        work: asyncio.Queue[WalkJob | None] = asyncio.Queue(maxsize=self.concurrency)
        feed = _NameFeed(usernames)
        tasks: list[asyncio.Task[None]] = []
        self.gate.add_listener(self._on_stop)
        try:
            await self.client.open()
            feed.start()
            self._dispatcher = asyncio.create_task(
                self._dispatch(feed, work, events), name="walk-names"
            )
            self._slots = [_Slot() for _ in range(self.concurrency)]
            for i, slot in enumerate(self._slots):
                slot.task = asyncio.create_task(
                    self._work(slot, work, events), name=f"walk-worker-{i}"
                )
            workers = [slot.task for slot in self._slots if slot.task is not None]
            tasks = [self._dispatcher, *workers]
            tasks.append(
                asyncio.create_task(
                    self._supervise(self._dispatcher, workers, events), name="walk-supervisor"
                )
            )
            if self.gate.stopped is not None:
                self._on_stop()
            while True:
                item = await events.get()
                if isinstance(item, _End):
                    break
                if isinstance(item, _Failure):
                    raise item.error
                yield item
            self.gate.check()
        finally:
            self.gate.remove_listener(self._on_stop)
            for task in tasks:
                task.cancel()
            await feed.close()
            # Awaited, so that no worker outlives the walk and no exception goes unretrieved.
            await asyncio.gather(*tasks, return_exceptions=True)
            self._dispatcher = None
            self._slots = []

    def _on_stop(self) -> None:
        # Busy workers stop at their next gate; idle ones would wait for names for ever, and
        # the reader may wait on a pipe that stays open.
        if self._dispatcher is not None:
            self._dispatcher.cancel()
        for slot in self._slots:
            if slot.idle and slot.task is not None:
                slot.task.cancel()

    async def _supervise(
        self,
        dispatcher: asyncio.Task[None],
        workers: list[asyncio.Task[None]],
        events: asyncio.Queue[WalkEvent | _End | _Failure],
    ) -> None:
        running = set(workers)
        pending: set[asyncio.Task[None]] = {dispatcher, *workers}
        while running:
            finished, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            running -= finished
            for task in finished:
                if task.cancelled():
                    continue
                error = task.exception()
                if error is not None:
                    # A failure that is not one user's (a store that cannot write, refused
                    # credentials, a broken input) ends the run.
                    for other in pending:
                        other.cancel()
                    await asyncio.gather(*pending, return_exceptions=True)
                    await events.put(_Failure(error))
                    return
        dispatcher.cancel()
        await asyncio.gather(dispatcher, return_exceptions=True)
        if not dispatcher.cancelled() and (error := dispatcher.exception()) is not None:
            await events.put(_Failure(error))
            return
        await events.put(_END)

    async def _dispatch(
        self,
        feed: _NameFeed,
        work: asyncio.Queue[WalkJob | None],
        events: asyncio.Queue[WalkEvent | _End | _Failure],
    ) -> None:
        line = 0
        while (batch := await feed.take()) is not None:
            names: list[str] = []
            lines: list[int] = []
            bad: list[NameSkipped] = []
            for raw in batch:
                line += 1
                try:
                    names.append(normalize_username(raw))  # type: ignore[arg-type]
                    lines.append(line)
                except (ValueError, TypeError) as error:
                    # A bad name is reported, never fatal: one typo must not sink 50,000 names.
                    text = raw if isinstance(raw, str) else repr(raw)
                    bad.append(NameSkipped(line, text, _reason(error, raw)))
            if bad:
                await self.sink.skipped(bad)
                if self._skip_events:
                    for skip in bad:
                        await events.put(skip)
            if not names:
                continue
            for item in await self.sink.claim(names, lines):
                if isinstance(item, NameSkipped):
                    if self._skip_events:
                        await events.put(item)
                else:
                    await work.put(item)
        self.sink.input_done()
        for _ in range(self.concurrency):
            await work.put(None)

    async def _work(
        self,
        slot: _Slot,
        work: asyncio.Queue[WalkJob | None],
        events: asyncio.Queue[WalkEvent | _End | _Failure],
    ) -> None:
        while self.gate.stopped is None:
            slot.idle = True
            try:
                job = await work.get()
            finally:
                slot.idle = False
            if job is None:
                return
            try:
                done = await self._walk(job, events)
            finally:
                self.gate.release(job.username)
            if done is None:
                return
            await self.sink.finish(job, done)
            await events.put(done)

    async def _walk(
        self, job: WalkJob, events: asyncio.Queue[WalkEvent | _End | _Failure]
    ) -> UserDone | None:
        tally = WalkTally()
        while True:
            try:
                remaining = None if self.max_pages is None else self.max_pages - job.pages
                cursor = job.cursor
                walk = self.client._walk(job.username, cursor, remaining, self.gate, tally)
                job.empty_pages = 0  # as the client's walk counts them
                async with contextlib.aclosing(walk) as pages:
                    async for page in pages:
                        event = PageEvent(job.username, cursor, page)
                        empty = not (page.videos or page.raw_videos)
                        job.empty_pages = job.empty_pages + 1 if empty else 0
                        job.videos += await self.sink.page(job, event)
                        job.pages += 1
                        job.cursor = cursor = page.cursor
                        if self._page_events:
                            await events.put(event)
                        if job.stop_after:
                            break
                if job.stop_after:
                    return dataclasses.replace(
                        self._done(job, tally, WalkState.DONE, None), partial=True
                    )
                if tally.cut is not None:
                    guard = WalkGuard(tally.cut)
                    return self._done(job, tally, WalkState.INCOMPLETE, None, guard)
                return self._done(job, tally, WalkState.DONE, None)
            except WalkStopped:
                # The user stays where its last page left it; a later walk continues there.
                return None
            except QuotaExhaustedError:
                try:
                    await self.gate.quota_exhausted()
                except WalkStopped:
                    return None
                continue  # after the reset: the same user, from the same cursor
            except InvalidFieldsError:
                # Every user would be refused alike: the run ends, at the cost of this request.
                raise
            except UserNotFoundError as error:
                return self._done(job, tally, WalkState.NOT_FOUND, error)
            except UserUnavailableError as error:
                return self._done(job, tally, WalkState.UNAVAILABLE, error)
            except AuthError as error:
                if not isinstance(error, TokenExpiredError):
                    # Revoked scope or refused credentials fail every user alike.
                    raise
                return self._done(job, tally, WalkState.FAILED, error)
            except (APIError, TransportError) as error:
                return self._done(job, tally, WalkState.FAILED, error)

    @staticmethod
    def _done(
        job: WalkJob,
        tally: WalkTally,
        state: WalkState,
        error: TikTokError | None,
        guard: WalkGuard | None = None,
    ) -> UserDone:
        return UserDone(
            job.username, state, job.pages, job.videos, tally.requests, error, guard, job.cursor
        )


def walk_many(
    client: RepostClient,
    usernames: Iterable[str] | AsyncIterable[str],
    *,
    concurrency: int | None = None,
    max_pages: int | None = None,
) -> AsyncGenerator[WalkEvent, None]:
    """Walk many users at once through ``client``; see `RepostClient.walk_many`."""
    concurrency = client.concurrency if concurrency is None else concurrency
    engine = Engine(client, concurrency=concurrency, max_pages=max_pages)
    _check_source(usernames)
    return engine.run(usernames)


def _check_source(usernames: object) -> None:
    if isinstance(usernames, str | bytes):
        raise TypeError("usernames must be an iterable of names, not one string")
    if not isinstance(usernames, Iterable | AsyncIterable):
        raise TypeError(
            f"usernames must be an iterable or async iterable of str, not"
            f" {type(usernames).__name__}"
        )


def _reason(error: BaseException, raw: object) -> str:
    if isinstance(raw, str) and not raw.strip():
        return "blank line"
    text = str(error)
    if "U+0000" in text:
        return "NUL byte"
    if "control" in text or "invisible" in text:
        return "control character"
    if "at most" in text:
        return "too long"
    return "not a TikTok username"


class _NameFeed:
    """Hand names over as they come: in batches only while they come faster than taken."""

    # A plain iterable (a file, a pipe, sys.stdin) may block on every read, so it is read on a
    # thread of its own; a daemon one, because a pipe left open must not hold the process at
    # exit. An async iterable is read by a task. Either way at most CHUNK names wait here.

    def __init__(self, source: Iterable[object] | AsyncIterable[object]) -> None:
        self._source = source
        self._buffer: deque[object] = deque()
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)
        self._ready = asyncio.Event()
        self._room_async = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._done = False
        self._closed = False
        self._error: BaseException | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start reading the source."""
        source = self._source
        if isinstance(source, AsyncIterable):
            self._task = asyncio.create_task(self._pump_async(source), name="walk-input")
        else:
            thread = threading.Thread(
                target=self._pump_sync, args=(iter(source),), name="tiktok-names", daemon=True
            )
            thread.start()

    async def take(self) -> list[object] | None:
        """Return the names waiting (at least one, at most CHUNK), or None at the end."""
        while True:
            with self._lock:
                if self._buffer:
                    count = min(CHUNK, len(self._buffer))
                    batch = [self._buffer.popleft() for _ in range(count)]
                    self._room.notify()
                    self._room_async.set()
                    return batch
                if self._done:
                    error, self._error = self._error, None
                    if error is not None:
                        raise error
                    return None
                self._ready.clear()
            await self._ready.wait()

    async def close(self) -> None:
        """Stop reading: the reader ends at its next name (a blocked read is left behind)."""
        with self._lock:
            self._closed = True
            self._room.notify_all()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def _wake(self) -> None:
        # A closed loop means nobody reads these names any more.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._ready.set)

    def _pump_sync(self, iterator: Iterator[object]) -> None:
        try:
            for name in iterator:
                with self._lock:
                    while len(self._buffer) >= CHUNK and not self._closed:
                        self._room.wait()
                    if self._closed:
                        break
                    wake = not self._buffer
                    self._buffer.append(name)
                if wake:
                    self._wake()
            if self._closed:
                close = getattr(iterator, "close", None)
                if close is not None:
                    close()
        except BaseException as error:
            self._error = error
        finally:
            with self._lock:
                self._done = True
            self._wake()

    async def _pump_async(self, source: AsyncIterable[object]) -> None:
        iterator = aiter(source)
        try:
            async for name in iterator:
                with self._lock:
                    self._buffer.append(name)
                self._ready.set()
                while len(self._buffer) >= CHUNK:
                    self._room_async.clear()
                    await self._room_async.wait()
        except Exception as error:
            self._error = error
        finally:
            with self._lock:
                self._done = True
            self._ready.set()
            aclose = getattr(iterator, "aclose", None)
            if aclose is not None:
                await aclose()
