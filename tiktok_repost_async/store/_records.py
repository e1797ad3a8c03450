"""The store's records and states, and the small checks and clocks its modules share."""

from __future__ import annotations

import calendar
import dataclasses
import datetime
import enum
import time
from collections.abc import Sequence
from typing import Any, Final

from ..errors import StoreError

__all__ = [
    "FINAL_STATES",
    "ROUND_EARLY_LIMIT",
    "ROUND_GRACE_LIMIT",
    "PageCommit",
    "RoundRecord",
    "RoundSchedule",
    "RunRecord",
    "StoreLockedError",
    "StoreMismatchError",
    "UserRecord",
    "UserState",
    "check_cadence",
]


class UserState(enum.StrEnum):
    """Name where a user's harvest stands."""

    PENDING = "pending"
    DONE = "done"
    NOT_FOUND = "not_found"
    UNAVAILABLE = "unavailable"
    FAILED = "failed"
    #: A guard (a cursor the API sent back again, ``has_more`` true without a cursor, a run of
    #: empty pages with ``has_more`` true) cut the walk short; ``error`` says which. Final: a
    #: later run walks it again only when asked to (``retry_incomplete``), from its saved cursor.
    INCOMPLETE = "incomplete"
    #: A member of a round that a ``--new-round`` run resumed, whose input (the panel's list as
    #: it then stood) no longer named it, while its walk was unfinished (pending or failed): it
    #: is left out of the round. Not final, not waited for: the round completes without it, and
    #: a diff never calls its videos removed; a later run of the round that names it again
    #: walks it on from its saved cursor.
    DROPPED = "dropped"


# FAILED is final for one run only: the next run retries it unless told not to (`reset_failed`).
# DROPPED is no walk's end: the user is out of its round (see UserState.DROPPED).
FINAL_STATES: Final[frozenset[UserState]] = frozenset(
    {UserState.DONE, UserState.NOT_FOUND, UserState.UNAVAILABLE, UserState.INCOMPLETE}
)


class StoreMismatchError(StoreError, ValueError):
    """Refuse a store created with other settings or by another schema version."""


class StoreLockedError(StoreError):
    """Refuse a store that another harvest is running on."""


@dataclasses.dataclass(frozen=True, slots=True)
class UserRecord:
    """Hold one user's row: state, next cursor and what the walk has cost and brought so far.

    :param username: the user.
    :param state: where the user stands (`UserState`).
    :param cursor: the cursor the next walk continues from.
    :param pages: pages stored, over every run.
    :param videos: videos stored, over every run.
    :param requests: research requests spent on the user, over every run.
    :param error: the last error of a failed (or not found, unavailable) user, else None.
    """

    username: str
    state: UserState
    cursor: int
    pages: int
    videos: int
    requests: int
    error: str | None


def _utc_day(now: float) -> str:
    # Same floor arithmetic as quota.utc_day, kept here so the store imports nothing of ours.
    return (datetime.date(1970, 1, 1) + datetime.timedelta(days=int(now // 86400.0))).isoformat()


def _utc_stamp(now: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))


def _parse_utc_stamp(stamp: str) -> float:
    """Return the epoch seconds of a stamp `_utc_stamp` wrote."""
    return float(calendar.timegm(time.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ")))


def check_cadence(every: object) -> float:
    """Return a panel's cadence of rounds as seconds: a number above 0, or a timedelta."""
    if isinstance(every, datetime.timedelta):
        every = every.total_seconds()
    if isinstance(every, bool) or not isinstance(every, (int, float)) or not 0 < every < 1e12:
        raise ValueError(
            f"a cadence of rounds is a time above 0 (seconds or a timedelta), not {every!r}"
        )
    return float(every)


def _utc_stamp_ms(now: float) -> str:
    # Milliseconds: pages of one user are fetched well within a second of each other.
    millis = int(now * 1000) % 1000
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{millis:03d}Z"


def _check_day(day: str) -> str:
    try:
        parsed = datetime.date.fromisoformat(day)
    except (TypeError, ValueError):
        parsed = None
    if parsed is None or parsed.isoformat() != day:
        raise ValueError(f"day must be a UTC date written 'YYYY-MM-DD', not {day!r}")
    return day


def _check_count(name: str, value: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{name} must be a non-negative int, not {value!r}")
    return value


def _run_record(row: tuple[Any, ...]) -> RunRecord:
    run_id, started, ended, version, fields, max_count, requests, pages, videos, outcome = row
    return RunRecord(
        int(run_id),
        str(started),
        ended,
        str(version),
        tuple(name for name in str(fields).split(",") if name),
        int(max_count),
        int(requests),
        int(pages),
        int(videos),
        outcome,
    )


def _row_to_record(row: tuple[str, str, int, int, int, int, str | None]) -> UserRecord:
    username, state, cursor, pages, videos, requests, error = row
    return UserRecord(username, UserState(state), cursor, pages, videos, requests, error)


@dataclasses.dataclass(frozen=True, slots=True)
class PageCommit:
    """Describe one fetched page to store: its videos as (id, JSON bytes), and where to go next.

    ``cursor`` (the cursor the request sent), ``log_id`` (the answer's; None when it carried
    none) and ``fetched_at`` (epoch seconds; the store's clock when 0) are the page's provenance,
    stored with it.
    """

    username: str
    videos: Sequence[tuple[int, bytes]]
    next_cursor: int
    has_more: bool
    requests: int
    cursor: int = 0
    log_id: str | None = None
    fetched_at: float = 0.0


@dataclasses.dataclass(frozen=True, slots=True)
class RoundRecord:
    """Hold one round of a panel: when it started, how, and where its users stand.

    :param number: the round's number, from 1.
    :param started_at: when it started (UTC, ISO 8601).
    :param stop_at_known: the round's walks stop at the first page holding a video of the user's
        previous round (their ``partial`` users saw only the new head of their list).
    :param users: users per state in this round (every state present, 0 when none).
    :param partial: users whose ``done`` walk stopped at a known video.
    :param videos: observations of videos stored in this round.
    :param requests: research requests of the runs of this round.
    :param input_read: False while a run on the round has not read its input to the end (killed,
        or stopped, before the last name arrived): the round may hold more users than it shows.
    """

    number: int
    started_at: str
    stop_at_known: bool
    users: dict[UserState, int]
    partial: int
    videos: int
    requests: int
    input_read: bool = True

    @property
    def complete(self) -> bool:
        """Tell whether the round's whole input was read and each of its users has a final state.

        None is pending or failed, and the round has at least one user.
        """
        waiting = self.users[UserState.PENDING] + self.users[UserState.FAILED]
        return self.input_read and sum(self.users.values()) > 0 and waiting == 0

    @property
    def in_progress(self) -> bool:
        """Tell whether the round has more to walk: users pending, its input not read, or none."""
        return (
            self.users[UserState.PENDING] > 0
            or sum(self.users.values()) == 0
            or not self.input_read
        )


#: The longest a scheduled run may come before a round is due and still start it: a timer that
#: fires at the same minute each week runs a few seconds short of the week since the last round
#: started (its start was recorded a few seconds after the timer fired).
ROUND_EARLY_LIMIT: Final = 3600.0
#: How long past due a round may wait before `RoundSchedule.overdue` says so, at most.
ROUND_GRACE_LIMIT: Final = 86400.0


@dataclasses.dataclass(frozen=True, slots=True)
class RoundSchedule:
    """Say when a panel's next round is due, under the cadence ``harvest --new-round-every`` set.

    A new round is due a cadence after the latest round **started**, not after it finished: a
    panel wants its snapshots a cadence apart (every Monday), and a round that took two days of
    quota must not push every later one two days back. A round that takes longer than the cadence
    is followed by the next as soon as it is finished.

    :param every: the cadence, in seconds.
    :param round: the latest round.
    :param started: when the latest round started (epoch seconds).
    :param finished: True when no run would resume the latest round: its input was read and
        each of its users has a final state (failed users count as unfinished: a run walks them
        again).
    """

    every: float
    round: int
    started: float
    finished: bool

    @property
    def due(self) -> float:
        """Return when the next round is due (epoch seconds): the latest start plus the cadence."""
        return self.started + self.every

    @property
    def early(self) -> float:
        """Return how long before `due` a scheduled run starts the round: a twentieth of the
        cadence, at most an hour."""
        return min(self.every / 20, ROUND_EARLY_LIMIT)

    def starts_now(self, now: float) -> bool:
        """Tell whether a scheduled run at ``now`` starts a new round (else it resumes or rests).

        :param now: the time of the run (epoch seconds).
        """
        return self.finished and now >= self.due - self.early

    def overdue(self, now: float) -> bool:
        """Tell whether the next round is late enough for a person to look: no run started it
        within the cadence (at most a day) after it was due, or the latest round is unfinished
        that long after the next was due.

        :param now: the time to judge at (epoch seconds).
        """
        return now > self.due + min(self.every, ROUND_GRACE_LIMIT)


@dataclasses.dataclass(frozen=True, slots=True)
class RunRecord:
    """Hold one harvest run: when, by which version, how the data was asked for, what it cost.

    :param id: the run's number in the store, from 1.
    :param started_at: when it started (UTC, ISO 8601).
    :param ended_at: when it ended (UTC, ISO 8601); None while running or if it was killed.
    :param version: the package version that ran it.
    :param fields: the video fields it asked for.
    :param max_count: the videos per request it asked for.
    :param requests: research requests it spent.
    :param pages: pages it stored.
    :param videos: new videos it stored.
    :param outcome: how the run ended: ``finished``, ``stopped: <reason>``, ``interrupted`` (the
        caller stopped early, Ctrl-C), ``error: <type>``, or ``killed`` (found unended by a later
        run); None while running, or until a later run finds that its process died.
    """

    id: int
    started_at: str
    ended_at: str | None
    version: str
    fields: tuple[str, ...]
    max_count: int
    requests: int
    pages: int
    videos: int
    outcome: str | None
