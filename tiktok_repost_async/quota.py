"""The daily request budget of the Research API, counted on an injectable clock.

The rules this module encodes (see ``../shared/api/NOTES.md``):

- Every research request counts against the quota, failures included: a 500 or a 429 costs as
  much as a page of videos, so a retry is never free and a request is never refunded.
- The quota resets at 00:00 UTC (POSIX time has no leap seconds and UTC no daylight saving, so a
  day is always 86,400 seconds and a plain floor division finds its start).
- The quota is shared with every collaborator of the research project, so the API may declare it
  spent before our own count does; `DailyQuota.exhaust` records that.
- Polling right at midnight has been seen to still get 429, so a wait for the reset ends
  ``margin`` seconds (60 by default) after midnight, and a quota the API declared spent stays
  spent until then.
- The reset itself has been seen to lag for longer: a daily-quota 429 in a UTC day before any
  request of that day was served means "not yet", not "spent again". It is retried after the
  growing waits of `RESET_LAG_WAITS` (`reset_lag_wait`), never past the next reset.

Nothing here sleeps or does I/O: the caller reads the clock through the object, decides to wait
(`QuotaPolicy.WAIT`) or to stop (`QuotaPolicy.STOP`), and persists the count (the store's
ledger) so that a restart the same day starts from ``spent_today``. A `DailyQuota` has no lock:
share one within one event loop, where no two calls can interleave.
"""

from __future__ import annotations

import datetime
import enum
import functools
import math
import time
from collections.abc import Callable
from typing import Final

__all__ = [
    "DAY_SECONDS",
    "DEFAULT_DAILY_LIMIT",
    "DEFAULT_RESET_MARGIN",
    "RESET_LAG_WAITS",
    "DailyQuota",
    "QuotaPolicy",
    "next_utc_midnight",
    "quota_stop_message",
    "reset_lag_wait",
    "utc_day",
]

DAY_SECONDS: Final = 86_400.0
DEFAULT_DAILY_LIMIT: Final = 1_000
DEFAULT_RESET_MARGIN: Final = 60.0

#: The waits between probes of a lagging reset (seconds): 5, 15, 30 and 60 minutes, then an
#: hour each (the last repeats). Reported lags last from minutes to hours (a library that polled
#: hourly kept getting 429s, see NOTES.md): short waits first cost a few refused requests and
#: save most of a day; hourly ones bound the cost of a lag that lasts, at most a couple of
#: dozen probes before the next reset ends the wait anyway.
RESET_LAG_WAITS: Final = (300.0, 900.0, 1800.0, 3600.0)

_EPOCH_DAY: Final = datetime.date(1970, 1, 1)


class QuotaPolicy(enum.StrEnum):
    """Say what a harvest does when the day's budget is spent."""

    STOP = "stop"
    WAIT = "wait"


def _day_index(now: float) -> int:
    # Python's float floor division is exact (it is computed from fmod), so an instant a hair
    # before midnight never rounds into the next day.
    return int(now // DAY_SECONDS)


def utc_day(now: float) -> str:
    """Return the UTC date of an epoch instant as 'YYYY-MM-DD'.

    :param now: the instant, in epoch seconds.
    """
    return _day_text(_day_index(now))


# Every request is booked under its day: the date is formatted once a day, not once a request.
@functools.lru_cache(maxsize=8)
def _day_text(index: int) -> str:
    return (_EPOCH_DAY + datetime.timedelta(days=index)).isoformat()


def next_utc_midnight(now: float) -> float:
    """Return the epoch seconds of the first UTC midnight strictly after `now`.

    :param now: the time, in epoch seconds.
    """
    return (_day_index(now) + 1) * DAY_SECONDS


def reset_lag_wait(now: float) -> float:
    """Return how long to wait before probing again a reset that still lags at ``now``.

    The wait is the `RESET_LAG_WAITS` step that the time since the last midnight has reached (a
    lag that lasted two hours waits an hour, one that lasted a minute five minutes), so that a
    run that starts in the middle of a lag, or a stopped run told when to try again, falls in
    step with one that waited through it.

    :param now: the time, in epoch seconds.
    """
    elapsed = now - _day_index(now) * DAY_SECONDS
    passed = 0.0
    for wait in RESET_LAG_WAITS:
        passed += wait
        if elapsed < passed:
            return wait
    return RESET_LAG_WAITS[-1]


def quota_stop_message(quota: DailyQuota | None, retry_at: float, *, lagging: bool) -> str:
    """Return the one line that tells a researcher why a run stopped on quota and when to retry.

    :param quota: the run's budget (None: it had none, the API's 429 stopped it).
    :param retry_at: epoch seconds after which a new run may succeed.
    :param lagging: the API refused the UTC day's first requests as over quota, so the reset
        seems to lag.
    """
    at = time.strftime("%H:%M", time.gmtime(math.ceil(retry_at / 60) * 60))
    if lagging:
        why = (
            "the API refused this UTC day's first requests as over quota: the reset at"
            " 00:00 UTC seems to lag (or collaborators spent today's quota already)"
        )
    elif quota is None or quota.exhausted:
        why = "the API says the project's daily quota is spent (collaborators share it)"
    elif quota.shared is not None:
        why = (
            f"the organisation's shared daily quota is spent ({quota.limit:,} requests today"
            f" in the shared ledger {quota.shared})"
        )
    else:
        why = f"the daily quota is spent ({quota.spent:,} of {quota.limit:,} requests today)"
    return f"{why}; try again after {at} UTC"


class DailyQuota:
    """Count the research requests sent this UTC day against a daily limit."""

    __slots__ = ("_clock", "_day", "_exhausted_until", "_limit", "_margin", "_shared", "_spent")

    def __init__(
        self,
        limit: int = DEFAULT_DAILY_LIMIT,
        *,
        spent_today: int = 0,
        clock: Callable[[], float] = time.time,
        margin: float = DEFAULT_RESET_MARGIN,
        shared: str | None = None,
    ) -> None:
        """Make a budget of ``limit`` requests a UTC day.

        :param limit: research requests allowed per UTC day (1,000 by TikTok's terms).
        :param spent_today: requests already spent today (the store's ledger, say); may exceed
            the limit, since collaborators share the quota.
        :param clock: the wall clock, in epoch seconds, whose UTC day is counted.
        :param margin: seconds past UTC midnight to wait before counting on the reset, since
            the API's own reset lags a little.
        :param shared: the name of the organisation's shared ledger that this budget draws on
            (None: the store's own); a stop on it says so.
        """
        if not isinstance(limit, int) or isinstance(limit, bool):
            raise TypeError(f"limit must be an int, not {type(limit).__name__}")
        if limit < 1:
            raise ValueError(f"limit must be positive, not {limit}")
        if not isinstance(spent_today, int) or isinstance(spent_today, bool) or spent_today < 0:
            raise ValueError(f"spent_today must be a non-negative int, not {spent_today!r}")
        if not isinstance(margin, int | float) or not math.isfinite(margin) or margin < 0:
            raise ValueError(f"margin must be a finite number of seconds >= 0, not {margin!r}")
        self._limit = limit
        self._clock = clock
        self._margin = float(margin)
        # spent_today may exceed the limit: collaborators share the quota and the ledger may
        # hold a count from a run that ended on a 429.
        self._spent = spent_today
        self._day = _day_index(clock())
        self._exhausted_until: float | None = None
        self._shared = shared

    def __repr__(self) -> str:
        return (
            f"<DailyQuota day={self.day} spent={self.spent}/{self._limit} "
            f"remaining={self.remaining}>"
        )

    def _now(self) -> float:
        now = self._clock()
        day = _day_index(now)
        # Only forward: a clock stepped back (NTP) must not hand out yesterday's budget again.
        if day > self._day:
            self._day = day
            self._spent = 0
        if self._exhausted_until is not None and now >= self._exhausted_until:
            self._exhausted_until = None
        return now

    @property
    def limit(self) -> int:
        """Return the number of requests allowed per UTC day."""
        return self._limit

    @property
    def shared(self) -> str | None:
        """Return the shared ledger this budget draws on, or None for a store's own."""
        return self._shared

    @property
    def margin(self) -> float:
        """Return the seconds waited past midnight before the budget is trusted to be fresh."""
        return self._margin

    @property
    def day(self) -> str:
        """Return the current UTC day as 'YYYY-MM-DD'."""
        self._now()
        return _day_text(self._day)

    @property
    def spent(self) -> int:
        """Return the requests counted today (UTC), failures included."""
        self._now()
        return self._spent

    @property
    def exhausted(self) -> bool:
        """Tell whether the API declared today's quota spent (and the reset has not come)."""
        self._now()
        return self._exhausted_until is not None

    @property
    def remaining(self) -> int:
        """Return how many requests may still be sent today."""
        self._now()
        if self._exhausted_until is not None:
            return 0
        return max(self._limit - self._spent, 0)

    def try_spend(self, n: int = 1) -> bool:
        """Count `n` requests and return True if they fit today's budget, else count nothing.

        :param n: the requests about to be sent.
        """
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise ValueError(f"n must be a non-negative int, not {n!r}")
        if n > self.remaining:
            return False
        self._spent += n
        return True

    def fill(self) -> None:
        """Count the rest of today's budget as spent: the shared ledger refused a booking.

        Others drew on the organisation's budget meanwhile, so the day is spent before this
        process's own count says so; it is fresh again at the reset, as an own spent day is.
        """
        self._now()
        self._spent = max(self._spent, self._limit)

    def observe(self, spent: int, *, day: str) -> None:
        """Count at least ``spent`` requests on ``day``: what the shared ledger says of it.

        Collaborators draw on the organisation's budget meanwhile: the day's count, read from
        the ledger now and then, raises this process's own (never lowers it: requests counted
        here and not yet booked there are not in the ledger's figure). A day other than today
        is ignored.

        :param spent: the organisation's requests on ``day``, as the ledger counts them.
        :param day: the UTC day (``YYYY-MM-DD``) the count is of.
        """
        if not isinstance(spent, int) or isinstance(spent, bool) or spent < 0:
            raise ValueError(f"spent must be a non-negative int, not {spent!r}")
        self._now()
        if day == _day_text(self._day):
            self._spent = max(self._spent, spent)

    def exhaust(self, until: float | None = None) -> None:
        """Mark today's quota as spent because the API said so, whatever our own count.

        :param until: epoch seconds when to try again (a lagging reset's next probe); None: the
            margin past the next reset.
        """
        now = self._now()
        # Until the margin past the next reset, not merely until midnight: this also covers a
        # 429 seen just after midnight, when the API has not rolled over yet.
        reset = self._reset_after(now)
        self._exhausted_until = reset if until is None else min(max(until, now), reset)

    def refund(self, n: int = 1) -> None:
        """Give back ``n`` requests counted today that never reached the API.

        :param n: the requests to give back.
        """
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise ValueError(f"n must be a non-negative int, not {n!r}")
        self._now()
        self._spent = max(self._spent - n, 0)

    def resumes_at(self) -> float:
        """Return when requests may go out again: now, the end of an `exhaust`, or the reset."""
        now = self._now()
        if self._exhausted_until is not None:
            return self._exhausted_until
        if self._spent < self._limit:
            return now
        return self._reset_after(now)

    def reset_at(self) -> float:
        """Return when a spent budget is fresh again: the next UTC midnight plus the margin."""
        return self._reset_after(self._now())

    def seconds_until_reset(self) -> float:
        """Return the seconds from now until `reset_at`."""
        now = self._now()
        return self._reset_after(now) - now

    def _reset_after(self, now: float) -> float:
        # The first "midnight + margin" strictly after now. Within the margin after a midnight
        # that is today's, not tomorrow's: waiting a whole extra day for a 60 s margin would be
        # absurd.
        return next_utc_midnight(now - self._margin) + self._margin
