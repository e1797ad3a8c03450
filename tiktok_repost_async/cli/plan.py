"""Estimate how many requests a harvest still needs and on which UTC day it can finish.

One estimator serves ``status`` (from what the store has seen of finished users) and the
harvest's progress line (from what this run has seen so far): the rest of the work costs what
the finished users cost on average, and the daily quota decides the days.

The estimate: a user costs the requests of its walk, one per page, and at least one (a missing
or private user is one refused request). ``per_user`` is the mean over the finished users.
``requests_left`` is ``users_left * per_user`` minus the pages already fetched for users that
were walked part of the way (a stopped or failed walk resumes from its cursor), but never less
than one request per user left. Retries and quota-free refusals are not counted, so the
estimate is a little low for a flaky API. The days: what is left of today's quota goes first,
then a full ``daily_quota`` per UTC day.
"""

from __future__ import annotations

import datetime
import math

import msgspec

from ..quota import utc_day

__all__ = ["QuotaPlan", "estimate_plan", "pages_seen"]


class QuotaPlan(msgspec.Struct, frozen=True, kw_only=True):
    """Hold what is left to harvest and when the daily quota lets it be done.

    :param users_left: users not yet in a final state (pending, or failed and retried).
    :param finished_users: the finished users the mean cost rests on.
    :param pages_per_user: the mean requests a finished user took (one per page, at least
        one); None while no user has finished.
    :param requests_left: the estimated research requests the users left still need; None
        while the mean is unknown.
    :param daily_quota: the research requests allowed per UTC day.
    :param left_today: what today's ledger leaves of the daily quota.
    :param days_left: full UTC days after today that the rest needs (0: it fits in today's
        quota); None while unknown.
    :param finish_day: the UTC date (YYYY-MM-DD) the harvest is expected to finish on; None
        while unknown.
    :param fetched_left: pages already fetched for the users left, which the estimate takes off.
    :param basis_round: the earlier round whose finished users the mean rests on, when none of
        this round's has finished yet; None: this round's own.
    """

    users_left: int
    finished_users: int
    pages_per_user: float | None
    requests_left: int | None
    daily_quota: int
    left_today: int
    days_left: int | None
    finish_day: str | None
    fetched_left: int = 0
    basis_round: int | None = None


def estimate_plan(
    *,
    users_left: int,
    finished_users: int,
    finished_requests: float,
    fetched_left: int,
    daily_quota: int,
    spent_today: int,
    now: float,
    basis_round: int | None = None,
) -> QuotaPlan:
    """Return the plan for ``users_left`` users at the cost the finished ones had.

    :param users_left: users still to walk.
    :param finished_users: users whose walks are over, the sample of the mean.
    :param finished_requests: what those users cost together, in requests (pages, each user
        counted as one at least).
    :param fetched_left: pages already fetched for the users left (walked part of the way).
    :param daily_quota: research requests per UTC day (> 0).
    :param spent_today: research requests today's ledger holds.
    :param now: the current time, epoch seconds; its UTC date is "today".
    :param basis_round: the earlier round the finished users are of (None: the current one).
    """
    left_today = max(daily_quota - spent_today, 0)
    per_user = finished_requests / finished_users if finished_users else None
    requests_left: int | None
    if not users_left:
        requests_left = 0
    elif per_user is None:
        requests_left = None
    else:
        # The users left need the mean each, less what their own walks already fetched.
        requests_left = max(math.ceil(users_left * per_user - fetched_left), users_left)
    if requests_left is None:
        return QuotaPlan(
            users_left=users_left,
            finished_users=finished_users,
            pages_per_user=None,
            requests_left=None,
            daily_quota=daily_quota,
            left_today=left_today,
            days_left=None,
            finish_day=None,
            fetched_left=fetched_left,
            basis_round=basis_round,
        )
    days = 0 if requests_left <= left_today else -(-(requests_left - left_today) // daily_quota)
    today = datetime.date.fromisoformat(utc_day(now))
    return QuotaPlan(
        users_left=users_left,
        finished_users=finished_users,
        pages_per_user=None if per_user is None else round(per_user, 2),
        requests_left=requests_left,
        daily_quota=daily_quota,
        left_today=left_today,
        days_left=days,
        finish_day=(today + datetime.timedelta(days=days)).isoformat(),
        fetched_left=fetched_left,
        basis_round=basis_round,
    )


def pages_seen(pages: int) -> int:
    """Return the requests a finished walk of ``pages`` pages cost: one per page, one at least."""
    # A missing or private user has no page, but its refusal was a request all the same.
    return max(pages, 1)
