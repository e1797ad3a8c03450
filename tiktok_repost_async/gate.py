"""Stand in front of every research request of a walk: the stop, the daily quota, the breaker.

The `Gate` is the engine's half of `RepostClient._fetch_page`'s order: ``admit`` (budget and
stop) -> limiter -> ``take`` (stop again, spend, book) -> token -> send. It tells the daily
quota's 429 by behaviour, waits out a lagging reset, and runs the run-wide circuit breaker.
A stop wakes idle workers and cuts backoff and ``Retry-After`` sleeps short.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import (
    Awaitable,
    Callable,
)
from typing import Final

from ._walking import Sleep, StepAside
from .errors import (
    RateLimitError,
    StopReason,
    TikTokError,
    WalkStopped,
)
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
    "BREAKER_FIRST_WAIT",
    "BREAKER_GIVE_UP",
    "BREAKER_JITTER",
    "BREAKER_MAX_WAIT",
    "BREAKER_THRESHOLD",
    "QUOTA_NEAR_FRACTION",
    "QUOTA_STREAK",
    "RATE_DECREASE",
    "RATE_FLOOR",
    "RATE_PROBE_WAITS",
    "RATE_RECOVERY",
    "WAIT_SLICE",
    "Gate",
    "StepAside",
]

# The gate is the engine's: its warnings keep the engine's logger, which users configure.
logger = logging.getLogger("tiktok_repost_async.engine")

# How a walk tells the daily-quota 429 from the short-term one. Both carry the code
# rate_limit_exceeded and an undocumented text, so the text is not read at all; the gate goes by
# behaviour over time (`Gate.rate_limited`):
# - every 429 lowers the send rate: the rate is multiplied by RATE_DECREASE (at most once a
#   second, so that one burst is one step), never below RATE_FLOOR, and it creeps back up by
#   RATE_RECOVERY requests a second for every second of answers served, to the client's own rate;
# - QUOTA_STREAK 429s without Retry-After in a row across the run, with no other answer in
#   between, pause the run (the rate-limit hold): every worker waits, and one probe goes out after
#   each of the waits of RATE_PROBE_WAITS. An answer to a probe that is not a 429 means a
#   short-term limit: the run resumes at the lowered rate. A 429 on the last probe, minutes after
#   the streak began, is the daily quota;
# - a 429 when the ledger is within QUOTA_NEAR_FRACTION of its budget (10 requests of 1,000; at
#   least the last one) is the daily quota at once, whatever it says.
# A 429 with Retry-After is a short-term limit: the server says when to come back, the daily
# quota never does. A 429 without Retry-After is the run's rate at fault, not its user's: it is
# not charged to the user's attempts (up to `client.RATE_LIMITED_FREE` times them; the hold's
# never), while one with Retry-After is.
# A daily-quota verdict in a UTC day before any request of that day was served is a lagging
# reset, not a spent day (see `Gate.quota_exhausted`): one probe at a time goes out after each of
# the growing waits of `quota.RESET_LAG_WAITS`, and while it lags any 429 without Retry-After is
# the quota still.
QUOTA_STREAK: Final = 3
RATE_PROBE_WAITS: Final = (2.0, 60.0, 180.0)
RATE_DECREASE: Final = 0.7
RATE_RECOVERY: Final = 0.05
RATE_FLOOR: Final = 0.1
RATE_JITTER: Final = 0.8
# The rate the learned one falls from when the engine did not say the client's (a gate alone).
DEFAULT_CEILING: Final = 10.0
# The longest one sleep of a long wait (the quota's reset, a breaker's probe, a Retry-After) lasts
# before the wall clock is read again: a run that waits through a laptop's suspend or a clock jump
# goes on within this long.
WAIT_SLICE: Final = 60.0
QUOTA_NEAR_FRACTION: Final = 0.01

# The run-wide circuit breaker. BREAKER_THRESHOLD outage failures in a row across the run (a 5xx
# or an HTML gateway page, a timeout, a dropped or refused connection, the API's "Invalid count
# or cursor", see `client.is_outage`; also a 401 on a token fetched for that very request, and a
# failure of the token endpoint), with no other answer in between, trip it: every worker pauses
# in `Gate.admit`, and one probe at a time goes out after a wait that doubles from
# BREAKER_FIRST_WAIT up to BREAKER_MAX_WAIT, each drawn between BREAKER_JITTER and 1 times that
# (so that two runs on one project do not probe in step). Any answer that is not an outage
# failure closes it and wakes every worker. Failures while it is open are held, not charged to
# any user. A probe that would go out more than BREAKER_GIVE_UP after the pause began is not
# sent: the run stops, resumable (`StopReason.UNHEALTHY`).
# When every failure of the streak was one user's (one user in flight: concurrency 1, or the
# tail of a run), they cannot tell an outage from that user's own fault. That user is then the
# suspect: it never probes. It steps aside (`StepAside`) and another user's request probes; if
# that one is answered, the failures were probably the suspect's own (`Gate.guilty`): it gets
# one more request, not held by the breaker, and ends failed if that fails too (the outage may
# have ended just before the probe), while the run goes on. If another user fails too, it is an
# outage.
BREAKER_THRESHOLD: Final = 5
BREAKER_FIRST_WAIT: Final = 5.0
BREAKER_MAX_WAIT: Final = 300.0
BREAKER_JITTER: Final = 0.5
BREAKER_GIVE_UP: Final = 3600.0

# What holds every worker: the circuit breaker (an outage) or the rate-limit hold (429s).
_OUTAGE: Final = "outage"
_LIMIT: Final = "limit"


class Gate:
    """Stand in front of every research request of a walk: the stop and the daily quota."""

    def __init__(
        self,
        quota: DailyQuota | None = None,
        *,
        on_quota: QuotaPolicy = QuotaPolicy.STOP,
        clock: Callable[[], float] = time.time,
        sleep: Sleep | None = None,
        book: Callable[[str], Awaitable[bool | None]] | None = None,
        refund: Callable[[str, str], Awaitable[None]] | None = None,
        on_wait: Callable[[float | None], None] | None = None,
        on_probe: Callable[[float | None], None] | None = None,
        on_send: Callable[[int], None] | None = None,
    ) -> None:
        """Make a gate.

        :param quota: the day's budget (None: no budget of our own; the API's daily 429 still
            stops).
        :param on_quota: stop, or wait for the reset, when it is spent.
        :param clock: the wall clock of quota waits (tests move time with it).
        :param sleep: the sleep of quota waits (tests move time with it).
        :param book: awaited with the username right before each request is sent (the harvest's
            write-ahead ledger); False means a shared ledger refused it: the organisation's day
            is spent.
        :param refund: awaited with the username and the UTC day it was booked on when a booked
            request never reached the API (a refused connection, a failed token fetch, a stop
            while it was being booked).
        :param on_wait: told when a quota wait starts (its end) and ends (None).
        :param on_probe: told when the next probe of a hold (the circuit breaker, or a streak of
            429s: see `holding`) is due, and None when it closes.
        :param on_send: told +1 for each request let out to be sent, and -1 for one given back
            as never sent (`refund`).
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
        self._on_send = on_send
        self._stopped: StopReason | None = None
        # What a stop tells the researcher (a quota stop: why, and when to try again).
        self._detail: str | None = None
        self._retry_at: float | None = None
        self._event = asyncio.Event()
        self._reset_lock = asyncio.Lock()
        self._listeners: list[Callable[[], None]] = []
        self._api_spent = False
        # Each user's next request, paid ahead by `prepay` (and the UTC day); those whose
        # booking is known to be in the ledger (`prepaid_booked`); and the booked ones that
        # will never be sent, for `unsent_bookings` to give back.
        self._prepaid: dict[str, str] = {}
        self._booked_ahead: set[str] = set()
        self._unsent: list[tuple[str, str]] = []
        self.sent = 0
        # Until the API has answered one request of this walk, one request at a time goes out
        # (the trial, held by one user): a field it rejects, a missing scope or refused
        # credentials then cost one request, not one per worker.
        self._answered = False
        self._trial: str | None = None
        self._answer = asyncio.Event()
        self._release = asyncio.Lock()
        # The run of 429s without Retry-After since the last other answer; the users whose
        # request is out (sent and not answered), and the event that tells one landed: while a
        # streak runs, a request goes out only when no other is out, so that the streak and the
        # hold's probes, not a pool of requests in flight, tell a short-term limit from the
        # daily quota (a dozen requests at most after the first 429).
        self._limited = 0
        self._flying: set[str] = set()
        self._landed = asyncio.Event()
        #: The client's own rate (requests per second), the most the adaptive rate goes back up
        #: to; the engine sets it from its client.
        self.ceiling: float | None = None
        # The send rate learned from 429s (None: the client's limiter alone paces), when it was
        # last lowered and raised, and when the next request may go out at that rate.
        self._rate: float | None = None
        self._slowed_at: float | None = None
        self._grown_at = 0.0
        self._next_slot = 0.0
        # The hold of every worker: the circuit breaker (an outage) or the rate-limit hold (a
        # streak of 429s); whether one is open (its kind, since when), the probes sent while it
        # is, who holds the probe, and the event that tells waiting workers that it closed or
        # that the probe is free.
        self._outages = 0
        self._last_outage: TikTokError | None = None
        self._hold: str | None = None
        self._paused_at: float | None = None
        self._probes = 0
        self._probe: str | None = None
        self._breaker = asyncio.Event()
        self._rng = random.Random()
        # Whose outage failures make the streak; the suspect (every one of them was its own),
        # its last error, and the users whose failures another user's answer proved their own.
        self._outage_users: set[str] = set()
        self._suspect: str | None = None
        self._suspect_error: TikTokError | None = None
        self._guilty: dict[str, TikTokError] = {}
        #: The user (already done) whose first page the engine sends as the suspect's probe;
        #: that request is dropped unsent once no suspect is left (another answer came first).
        self.canary: str | None = None
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

        :param reason: why, for the `WalkStopped` raised.
        :param detail: one line more for it (None: none).
        :param retry_at: epoch seconds after which a new run may succeed, for it (None: unknown).
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
        """Call ``listener`` once when the gate stops.

        :param listener: called with no argument.
        """
        self._listeners.append(listener)

    def remove_listener(self, listener: Callable[[], None]) -> None:
        """Forget a listener added with `add_listener`.

        :param listener: the listener as it was added.
        """
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

        :param username: the user whose request it is.
        """
        if self._stopped is not None or username in self._prepaid:
            return False
        if self.quota is not None and not self.quota.try_spend():
            return False
        self._prepaid[username] = self._today()
        return True

    def prepaid_booked(self, username: str) -> None:
        """Note that the booking of ``username``'s prepaid request is committed to the ledger.

        Only such a booking is given back if the request is never sent (`unsent_bookings`): one
        whose commit failed, or was left unawaited, may or may not be in the ledger.

        :param username: the user whose request it is.
        """
        # A booking committed across midnight may sit on either day: it is not given back.
        if self._prepaid.get(username) == self._today():
            self._booked_ahead.add(username)

    def _forfeit(self, username: str) -> None:
        # The prepaid request of ``username`` will never be sent: today's budget gets it back
        # at once, the ledger with `unsent_bookings`.
        day = self._prepaid.pop(username, None)
        if day is None or username not in self._booked_ahead:
            return
        self._booked_ahead.discard(username)
        if self.quota is not None and day == self.quota.day:
            self.quota.refund()
        self._unsent.append((username, day))

    def unsent_bookings(self) -> dict[str, dict[str, int]]:
        """Hand over the booked requests that were paid ahead and never sent, once all walks end.

        Return ``{UTC day: {username: requests}}`` for the caller to take off the ledger: each
        was booked with its user's previous page, and the walk ended (a stop, an unforeseen
        guard) or the day turned before it went out. The gate forgets them.
        """
        for username in list(self._prepaid):
            self._forfeit(username)
        days: dict[str, dict[str, int]] = {}
        for username, day in self._unsent:
            counts = days.setdefault(day, {})
            counts[username] = counts.get(username, 0) + 1
        self._unsent.clear()
        return days

    def _paid(self, username: str) -> bool:
        day = self._prepaid.get(username)
        if day is None:
            return False
        if self.quota is not None and day != self.quota.day:
            # Paid and booked yesterday: today's budget and ledger must count it again, and
            # yesterday's ledger gives its booking back.
            self._forfeit(username)
            return False
        return True

    def _check_paid(self) -> None:
        # A prepaid request is within the budget and in the ledger already: a stop because
        # the budget ran out lets it go (holding it back would leave the ledger one over).
        # Any other stop holds it back.
        if self._stopped is not None and (self._stopped is not StopReason.QUOTA or self._api_spent):
            raise WalkStopped(self._stopped, self._detail, self._retry_at)

    def answered(self, reached: bool, username: str | None = None) -> None:
        """Note that ``username``'s request got an answer (``reached``) or none (no answer).

        :param reached: whether an answer came (any status); False: none came (a refused connection,
            a timeout).
        :param username: the user whose request it was (None: none named).
        """
        if username is not None:
            self._land(username)
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

        The rules are those above `QUOTA_STREAK`; the 429's text plays no part. A 429 that is
        not the daily quota lowers the send rate; when it is held (`limit_held`), the request
        waits for the hold's probe instead of counting against its user's attempts.

        :param username: the user whose request got the 429.
        :param error: the 429, with its Retry-After.
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
        self._slow_down()
        if error.retry_after is not None:
            # The server says when to come back: the daily quota never does.
            return False
        self._limited += 1
        if self._hold == _LIMIT:
            if self._probe != username:
                return False  # on its way before the hold began: held like the rest
            self._free_probe()
            if self._probes < len(RATE_PROBE_WAITS):
                return False
            logger.warning(
                "429s without Retry-After for %.0f s, through %d probes: taking it for the"
                " daily quota",
                self._clock() - (self._paused_at or 0.0),
                self._probes,
            )
            self._reset_streak()
            return True
        if self._limited >= QUOTA_STREAK and self._hold is None:
            self._open(_LIMIT)
            logger.warning(
                "%d requests in a row got a 429 without Retry-After: pausing every worker to"
                " tell a short-term limit from the daily quota",
                self._limited,
            )
        return False

    def limit_held(self) -> bool:
        """Tell whether the rate-limit hold holds every request (a streak of 429s)."""
        return self._hold == _LIMIT

    def not_rate_limited(self) -> None:
        """Note an answer that was not a 429: the API still serves this project today.

        It closes the rate-limit hold: the limit was a short-term one.
        """
        self._reset_streak()
        if self._hold == _LIMIT and self._paused_at is not None:
            logger.warning(
                "the API answers again after %.0f s: a short-term limit; resuming at %.2f"
                " requests a second",
                self._clock() - self._paused_at,
                self._rate or self._top,
            )
            self._close_hold()

    @property
    def rate(self) -> float | None:
        """Return the send rate learned from 429s, or None while the client's own rate holds."""
        return self._rate

    @property
    def _top(self) -> float:
        # The client's own rate: what the learned rate falls from and grows back to.
        return self.ceiling if self.ceiling is not None else DEFAULT_CEILING

    def _slow_down(self) -> None:
        now = self._clock()
        if self._slowed_at is not None and 0 <= now - self._slowed_at < 1.0:
            return  # one burst of 429s is one step down
        current = self._rate if self._rate is not None else self._top
        self._rate = max(RATE_FLOOR, current * RATE_DECREASE)
        self._slowed_at = self._grown_at = now
        logger.warning(
            "the API answered 429 (too many requests): sending at most %.2f requests a second",
            self._rate,
        )

    def _speed_up(self) -> None:
        rate = self._rate
        if rate is None:
            return
        now = self._clock()
        ceiling = self._top
        # Only time in which answers come counts: a pause (a hold, a quota wait, a quiet
        # caller) earns at most a second's growth, so the rate never jumps back after one.
        rate += RATE_RECOVERY * min(1.0, max(0.0, now - self._grown_at))
        self._grown_at = now
        if rate >= ceiling:
            logger.info("no 429 for a while: back at %.2f requests a second", ceiling)
            self._rate = None
        else:
            self._rate = rate

    async def _pace(self) -> None:
        # The learned rate spaces requests on top of the client's limiter: each takes the next
        # free slot, so that concurrent workers together keep to it. Awaited only while a rate
        # is learned: the common request pays no coroutine for it.
        rate = self._rate
        assert rate is not None
        now = self._clock()
        slot = max(now, self._next_slot)
        self._next_slot = slot + 1.0 / rate
        await self._sleep_unless_stopped(slot - now, self._sleep)

    def _reset_streak(self) -> None:
        self._limited = 0

    def served(self) -> None:
        """Note a page served: the quota of this UTC day is fresh, a lagging reset is over."""
        self._served_day = int(self._clock() // DAY_SECONDS)
        self._speed_up()
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
        """Tell whether every worker is held: the API seems down, or 429s came in a streak."""
        return self._paused_at is not None

    @property
    def holding(self) -> str | None:
        """Return what holds every worker: ``"outage"``, ``"limit"`` (429s) or None."""
        return self._hold

    def guilty(self, username: str) -> TikTokError | None:
        """Return the failure that another user's answer showed ``username``'s own, if any.

        Such a user's failures are not held by the breaker, and its next one ends its walk.

        :param username: the user.
        """
        return self._guilty.get(username)

    @property
    def suspect(self) -> str | None:
        """Return the user whose own failures alone opened the breaker, while that is unproven."""
        return self._suspect

    def clear_suspect(self) -> None:
        """Let the suspect probe itself: nobody else is left to (a run of one user)."""
        self._suspect = None

    def _open(self, kind: str) -> None:
        self._hold = kind
        self._paused_at = self._clock()
        self._probes = 0

    def unhealthy(self, username: str, error: TikTokError) -> bool:
        """Note an outage failure; True: the breaker is open and holds the request, not the user.

        The same error reported again (one token refresh that failed for all its waiters) is
        one failure, not one per worker. A user whose failures were proven its own (`guilty`)
        is not held: its attempts count.

        :param username: the user whose request failed.
        :param error: the failure.
        """
        if username in self._guilty:
            return False  # its own: charged to its attempts (see `guilty`)
        if self._hold == _LIMIT:
            # Not a 429: whatever held the run for the rate limit, it is an outage now.
            self._hold = _OUTAGE
            self._probes = 0
        if error is not self._last_outage:
            self._outages += 1
            self._last_outage = error
        self._outage_users.add(username)
        if username == self._suspect:
            self._suspect_error = error
        elif self._suspect is not None:
            # Another user fails too: an outage after all, nobody's own fault.
            logger.info("a second user fails too: the API is down, not user %r", self._suspect)
            self._suspect = None
        if self._paused_at is not None:
            # A failed probe, or a request that was on its way when the breaker opened.
            if self._probe == username:
                self._free_probe()
            return True
        if self._outages < BREAKER_THRESHOLD:
            return False
        self._open(_OUTAGE)
        if len(self._outage_users) == 1:
            # Every failure was this user's: only another user's request can tell whose fault.
            self._suspect, self._suspect_error = username, error
            logger.warning(
                "%d requests in a row failed, all for user %r (last: %s): pausing every worker;"
                " another user's request tells whether the API is down",
                self._outages,
                username,
                error,
            )
        else:
            logger.warning(
                "API unhealthy: %d requests in a row failed (last: %s); pausing every worker",
                self._outages,
                error,
            )
        return True

    def healthy(self, username: str | None = None) -> None:
        """Note that the API answered ``username``'s request: close the breaker, wake every worker.

        An answer to another user than the breaker's suspect proves the suspect's failures its
        own (`guilty`).

        :param username: the user whose request was answered (None: none named).
        """
        self._outages = 0
        self._last_outage = None
        self._outage_users.clear()
        if username is not None:
            self._guilty.pop(username, None)  # served after all: it was the outage's
        suspect, self._suspect = self._suspect, None
        if suspect is not None and username != suspect and self._suspect_error is not None:
            logger.warning(
                "the API answers other users: the failures of user %r are its own (%s)",
                suspect,
                self._suspect_error,
            )
            self._guilty[suspect] = self._suspect_error
        self._suspect_error = None
        if self._hold != _OUTAGE or self._paused_at is None:
            return  # a 429 answers too, but only a non-429 answer ends the rate-limit hold
        logger.warning("API answers again after %.0f s: resuming", self._clock() - self._paused_at)
        self._close_hold()

    def _close_hold(self) -> None:
        if self._paused_at is None:
            return
        self._hold = None
        self._paused_at = None
        self._free_probe()
        if self._on_probe is not None:
            self._on_probe(None)

    def _free_probe(self) -> None:
        self._probe = None
        self._breaker.set()
        self._breaker = asyncio.Event()

    async def _await_health(self, username: str) -> None:
        # While a hold is open, one worker at a time waits out the next probe wait and sends
        # its request as the probe; the others wait until it closes or the probe is free.
        while self._paused_at is not None:
            if self._probe == username:
                # The probe back from `take` (a budget taken meanwhile): it has waited already.
                return
            if username == self._suspect:
                # Its own failures opened the breaker: another user must probe (see above).
                raise StepAside(username)
            if self._probe is not None:
                if not self._answered and self._trial == username:
                    # The trial goes with the probe: holding it here while the probe waits
                    # for it would leave both waiting for ever (no answer came yet: every
                    # connection was refused).
                    self.answered(False)
                await self._wait_for(self._breaker)
                continue
            self._probe = username
            if self._hold == _LIMIT:
                ceiling = RATE_PROBE_WAITS[min(self._probes, len(RATE_PROBE_WAITS) - 1)]
                wait = self._rng.uniform(RATE_JITTER * ceiling, ceiling)
                why = "429s in a streak"
            else:
                why = "API unhealthy"
                ceiling = min(BREAKER_MAX_WAIT, BREAKER_FIRST_WAIT * 2.0**self._probes)
                wait = self._rng.uniform(BREAKER_JITTER * ceiling, ceiling)
                if self._clock() + wait - self._paused_at > BREAKER_GIVE_UP:
                    logger.warning(
                        "API unhealthy for %.0f s: stopping (resumable)",
                        self._clock() - self._paused_at,
                    )
                    self.stop(StopReason.UNHEALTHY)
                    self.check()
            self._probes += 1
            logger.warning("%s: pausing, next probe in %.0f s", why, wait)
            if self._on_probe is not None:
                self._on_probe(self._clock() + wait)
            try:
                await self._sleep_sliced(wait, self._sleep)
            except BaseException:
                self._free_probe()
                raise
            return

    def release(self, username: str) -> None:
        """Hand the trial on if ``username``'s walk ended without an answer (see `answered`).

        :param username: the user whose walk ended.
        """
        if self._probe == username:
            self._free_probe()
        if self._lag_probe == username:
            self._free_lag_probe()
        self._taken.pop(username, None)
        self._land(username)
        # The walk is over: a request paid ahead for it is never sent.
        self._forfeit(username)
        if not self._answered and self._trial == username:
            self.answered(False)

    async def admit(self, username: str) -> None:
        """Wait until a request may queue for the limiter; raise `WalkStopped` after a stop.

        :param username: the user whose request it is.
        """
        if self._stopped is None:
            # Before the prepaid ones too: the breaker holds every request, paid or not.
            await self._await_health(username)
        self._land(username)  # its previous request, if any, is over
        while self._single_file(username):
            await self._wait_for(self._landed)
        if self._paid(username) and not self._api_spent:
            self._check_paid()
            # The rate learned from 429s spaces every request, paid ahead or not.
            if self._rate is not None:
                await self._pace()
            return
        # After the API said the day is spent, a request paid ahead waits for the reset like
        # the rest (it would only fetch another 429); a new day's pays it again.
        self.check()
        waited = False
        while not self._answered and self._trial not in (None, username):
            await self._wait_for(self._answer)
            waited = True
        if not self._answered:
            self._trial = username
        elif waited:
            # The trial's answer frees every worker at once: they leave one a turn of the loop,
            # in the order they came (as a token refresh's waiters do), so that their first
            # requests, and then their answers, do not all come in one burst.
            async with self._release:
                await asyncio.sleep(0)
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
        if self._rate is not None:
            await self._pace()

    async def take(self, username: str) -> bool:
        """Spend and book one request that is about to be sent; False: back to `admit`.

        :param username: the user whose request it is.
        """
        if username == self.canary and self._suspect is None:
            raise StepAside(username)  # the probe it was meant to be is no longer needed
        if self._single_file(username) and self._stopped is None:
            return False  # a 429 came while this one waited in the limiter: one at a time
        if self._paused_at is not None and self._probe != username and self._stopped is None:
            # The breaker opened while this one waited in the limiter: only the probe goes.
            return False
        if self._lagging and self._stopped is None:
            # A lagging reset began while this one waited in the limiter: only its probe goes.
            if self._lag_probe is None:
                self._lag_probe = username
            elif self._lag_probe != username:
                return False
        if self._paid(username) and not self._api_spent:
            self._check_paid()
            self._taken[username] = self._prepaid.pop(username)
            self._booked_ahead.discard(username)
            self._count_sent(1, username)
            return True
        self.check()
        if self.quota is not None and not self.quota.try_spend():
            # Others took the last of the budget while this one waited in the limiter.
            return False
        day = self._today()
        if self._book is not None:
            if await self._book(username) is False:
                # A shared ledger refused: the organisation's collaborators spent the rest of
                # today's budget. The day is spent here too, as if by our own count.
                if self.quota is None:
                    await self._spent()
                else:
                    self.quota.refund()
                    self.quota.fill()
                return False
            try:
                # A stop came while this one was booked: it is held back like a prepaid one
                # (a spent API quota would only answer another 429), and given back.
                self._check_paid()
            except WalkStopped:
                # Booked across midnight, it may sit on either day: it stays booked.
                if self._today() == day:
                    if self.quota is not None:
                        self.quota.refund()
                    if self._refund is not None:
                        await self._refund(username, day)
                raise
        self._taken[username] = day
        self._count_sent(1, username)
        return True

    def _single_file(self, username: str) -> bool:
        # A streak of 429s runs and another request is out: this one waits for it to land.
        return bool(self._limited and self._hold is None and self._flying - {username})

    def _land(self, username: str) -> None:
        if username in self._flying:
            self._flying.discard(username)
            self._landed.set()
            self._landed = asyncio.Event()

    def _count_sent(self, delta: int, username: str) -> None:
        if delta > 0:
            self._flying.add(username)
        else:
            self._land(username)
        self.sent += delta
        if self._on_send is not None:
            self._on_send(delta)

    def _today(self) -> str:
        return self.quota.day if self.quota is not None else utc_day(self._clock())

    async def refund(self, username: str) -> None:
        """Give back the request of ``username`` that `take` spent and booked but never sent.

        A refused connection or a failed token fetch: the API never saw it, so neither the
        budget nor the ledger counts it (booked yesterday, it is taken off yesterday's ledger).

        :param username: the user whose request it was.
        """
        day = self._taken.pop(username, None)
        if day is None:
            return
        self._count_sent(-1, username)
        if self.quota is not None and day == self.quota.day:
            self.quota.refund()
        if self._refund is not None:
            await self._refund(username, day)

    async def pause(self, seconds: float, sleep: Sleep) -> None:
        """Sleep before a retry, cut short (with `WalkStopped`) by a stop.

        :param seconds: how long (a backoff, or a ``Retry-After`` of up to 15 minutes).
        :param sleep: the sleep to wait with (the retry policy's).
        """
        await self._sleep_sliced(seconds, sleep)

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
        # The workers that the rate-limit hold kept go on to find the budget spent.
        self._close_hold()
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
                    # In slices, each followed by a look at the wall clock: a sleep's clock
                    # stands still while a laptop is suspended, and the wall clock may jump.
                    await self._sleep_unless_stopped(min(wait, WAIT_SLICE), self._sleep)
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

    async def _sleep_sliced(self, seconds: float, sleep: Sleep) -> None:
        # A sleep's clock stands still while a laptop is suspended, and the wall clock may jump:
        # a long wait (a breaker's probe, a Retry-After) sleeps in slices of WAIT_SLICE and ends
        # when either the wall clock or the time slept says it is over. So a suspend costs one
        # slice at most, and a clock that stands or goes back never stretches the wait.
        until = self._clock() + seconds
        slept = 0.0
        while (wait := min(until - self._clock(), seconds - slept)) > 0:
            step = min(wait, WAIT_SLICE)
            await self._sleep_unless_stopped(step, sleep)
            slept += step

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
