"""The daily request budget, driven by a fake clock: nothing here sleeps."""

from __future__ import annotations

import calendar
import datetime
import math
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tiktok_repost_async.quota import (
    DailyQuota,
    QuotaPolicy,
    next_utc_midnight,
    utc_day,
)
from tiktok_repost_async.store import Store

# 2024-03-31 is a daylight-saving switch in Europe; UTC arithmetic must not notice. The constant is
# written out (not only computed) so that the test cannot share a mistake with the code.
APRIL_1_2024 = 1_711_929_600
assert calendar.timegm((2024, 4, 1, 0, 0, 0)) == APRIL_1_2024
MARCH_31_LAST_SECOND = APRIL_1_2024 - 1


class FakeClock:
    """Stand in for time.time: returns `now`, moved by hand."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def at(text: str) -> float:
    """Return the epoch seconds of an ISO UTC timestamp."""
    parsed = datetime.datetime.fromisoformat(text).replace(tzinfo=datetime.UTC)
    return parsed.timestamp()


# -- pure helpers -------------------------------------------------------------------------------


def test_known_date_across_a_dst_weekend() -> None:
    assert utc_day(MARCH_31_LAST_SECOND) == "2024-03-31"
    assert utc_day(APRIL_1_2024) == "2024-04-01"
    assert next_utc_midnight(MARCH_31_LAST_SECOND) == APRIL_1_2024
    # Exactly at midnight, the *next* midnight is a full day away.
    assert next_utc_midnight(APRIL_1_2024) == APRIL_1_2024 + 86_400
    # 2024-03-31 lasted 86,400 s in UTC, although it lasted 23 h in Paris.
    assert next_utc_midnight(APRIL_1_2024 - 86_400) == APRIL_1_2024


def test_a_hair_before_midnight_is_still_the_old_day() -> None:
    just_before = math.nextafter(float(APRIL_1_2024), 0.0)
    assert just_before < APRIL_1_2024
    assert utc_day(just_before) == "2024-03-31"
    assert next_utc_midnight(just_before) == APRIL_1_2024
    assert utc_day(APRIL_1_2024 + 0.5) == "2024-04-01"


def test_epoch_and_leap_day() -> None:
    assert utc_day(0) == "1970-01-01"
    assert next_utc_midnight(0) == 86_400
    assert utc_day(at("2024-02-29T12:00:00")) == "2024-02-29"
    assert next_utc_midnight(at("2024-02-29T12:00:00")) == at("2024-03-01T00:00:00")


@given(st.integers(min_value=0, max_value=4_102_444_800))  # up to 2100-01-01
def test_helpers_agree_with_datetime(now: int) -> None:
    expected = datetime.datetime.fromtimestamp(now, datetime.UTC)
    assert utc_day(now) == expected.date().isoformat()
    midnight = next_utc_midnight(now)
    assert now < midnight <= now + 86_400
    assert datetime.datetime.fromtimestamp(midnight, datetime.UTC).time() == datetime.time(0)


def test_policy_values() -> None:
    assert QuotaPolicy("stop") is QuotaPolicy.STOP
    assert QuotaPolicy("wait") is QuotaPolicy.WAIT
    assert str(QuotaPolicy.WAIT) == "wait"


# -- spending ------------------------------------------------------------------------------------


def test_spend_up_to_the_limit_then_refuse() -> None:
    quota = DailyQuota(5, clock=FakeClock(at("2024-05-01T10:00:00")))
    assert (quota.limit, quota.spent, quota.remaining) == (5, 0, 5)
    assert [quota.try_spend() for _ in range(5)] == [True] * 5
    assert (quota.spent, quota.remaining) == (5, 0)
    assert quota.try_spend() is False
    assert quota.spent == 5, "a refused request must not be counted"
    assert quota.try_spend(0) is True


def test_a_batch_that_does_not_fit_counts_nothing() -> None:
    quota = DailyQuota(10, spent_today=7, clock=FakeClock(at("2024-05-01T10:00:00")))
    assert quota.try_spend(4) is False
    assert quota.spent == 7
    assert quota.try_spend(3) is True
    assert quota.remaining == 0


def test_spent_today_from_the_ledger() -> None:
    quota = DailyQuota(1000, spent_today=990, clock=FakeClock(at("2024-05-01T10:00:00")))
    assert quota.remaining == 10
    # Collaborators share the quota: a ledger above the limit is possible and leaves nothing.
    over = DailyQuota(1000, spent_today=1200, clock=FakeClock(at("2024-05-01T10:00:00")))
    assert (over.spent, over.remaining) == (1200, 0)
    assert over.try_spend() is False


def test_quota_built_from_a_store_ledger(tmp_path: Path) -> None:
    clock = FakeClock(MARCH_31_LAST_SECOND - 10)
    with Store(tmp_path / "h.db", fields=["id"], max_count=100, clock=clock) as store:
        store.record_requests(998)
        quota = DailyQuota(1000, spent_today=store.requests_on(utc_day(clock())), clock=clock)
        assert quota.day == "2024-03-31"
        assert quota.remaining == 2
        clock.now = APRIL_1_2024
        # Both modules agree on which day it is now: the new day's ledger is empty.
        assert store.requests_on() == 0
        assert quota.remaining == 1000


# -- the day boundary ----------------------------------------------------------------------------


def test_rollover_exactly_at_midnight_utc() -> None:
    clock = FakeClock(MARCH_31_LAST_SECOND)
    quota = DailyQuota(3, clock=clock)
    assert quota.try_spend(3)
    assert quota.day == "2024-03-31"
    assert quota.try_spend() is False
    clock.now = APRIL_1_2024 - 0.001
    assert quota.try_spend() is False, "one millisecond early is still the old day"
    clock.now = APRIL_1_2024
    assert quota.day == "2024-04-01"
    assert (quota.spent, quota.remaining) == (0, 3)
    assert quota.try_spend() is True
    assert quota.spent == 1


def test_rollover_over_several_idle_days() -> None:
    clock = FakeClock(at("2024-05-01T10:00:00"))
    quota = DailyQuota(3, spent_today=3, clock=clock)
    clock.now = at("2024-05-04T09:00:00")
    assert quota.day == "2024-05-04"
    assert quota.remaining == 3


def test_a_clock_stepped_back_does_not_refund_yesterday() -> None:
    clock = FakeClock(APRIL_1_2024 + 5)
    quota = DailyQuota(3, spent_today=3, clock=clock)
    clock.now = MARCH_31_LAST_SECOND
    assert quota.day == "2024-04-01"
    assert quota.remaining == 0


# -- the API's own verdict and the reset -----------------------------------------------------------


def test_exhaust_overrides_our_count_until_past_midnight_plus_margin() -> None:
    clock = FakeClock(at("2024-03-31T15:00:00"))
    quota = DailyQuota(1000, spent_today=10, clock=clock, margin=60)
    quota.exhaust()
    assert quota.exhausted is True
    assert quota.remaining == 0
    assert quota.spent == 10, "exhaust() does not invent requests we did not send"
    assert quota.try_spend() is False
    assert quota.reset_at() == APRIL_1_2024 + 60
    clock.now = APRIL_1_2024
    # The day has turned and our own count with it, but the API has been seen to answer 429
    # right at midnight: the budget stays shut until the margin has passed.
    assert quota.spent == 0
    assert quota.try_spend() is False
    clock.now = APRIL_1_2024 + 59.999
    assert quota.remaining == 0
    clock.now = APRIL_1_2024 + 60
    assert quota.exhausted is False
    assert quota.remaining == 1000
    assert quota.try_spend() is True


def test_exhausted_just_after_midnight_waits_for_todays_margin_not_tomorrows() -> None:
    clock = FakeClock(APRIL_1_2024 + 30)
    quota = DailyQuota(1000, clock=clock, margin=60)
    quota.exhaust()
    assert quota.reset_at() == APRIL_1_2024 + 60
    assert quota.seconds_until_reset() == 30
    clock.now = APRIL_1_2024 + 60
    assert quota.try_spend() is True


def test_reset_at_is_next_midnight_plus_margin() -> None:
    clock = FakeClock(MARCH_31_LAST_SECOND)
    quota = DailyQuota(clock=clock)
    assert quota.margin == 60.0
    assert quota.reset_at() == APRIL_1_2024 + 60
    assert quota.seconds_until_reset() == 61
    clock.now = at("2024-03-31T12:00:00")
    assert quota.seconds_until_reset() == 12 * 3600 + 60
    clock.now = APRIL_1_2024 + 60
    assert quota.reset_at() == APRIL_1_2024 + 86_400 + 60
    no_margin = DailyQuota(clock=FakeClock(MARCH_31_LAST_SECOND), margin=0)
    assert no_margin.reset_at() == APRIL_1_2024
    assert no_margin.seconds_until_reset() == 1


def test_repr_names_the_day_and_counts() -> None:
    quota = DailyQuota(7, spent_today=2, clock=FakeClock(MARCH_31_LAST_SECOND))
    assert repr(quota) == "<DailyQuota day=2024-03-31 spent=2/7 remaining=5>"


# -- validation ----------------------------------------------------------------------------------


@pytest.mark.parametrize("limit", [0, -1])
def test_limit_must_be_positive(limit: int) -> None:
    with pytest.raises(ValueError, match="limit must be positive"):
        DailyQuota(limit)


@pytest.mark.parametrize("limit", [1.5, "1000", True, None])
def test_limit_must_be_an_int(limit: object) -> None:
    with pytest.raises(TypeError, match="limit must be an int"):
        DailyQuota(limit)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"spent_today": -1}, "spent_today"),
        ({"spent_today": 2.0}, "spent_today"),
        ({"margin": -1.0}, "margin"),
        ({"margin": math.nan}, "margin"),
        ({"margin": math.inf}, "margin"),
    ],
)
def test_other_arguments_are_checked(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DailyQuota(1000, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("n", [-1, 1.0, True])
def test_try_spend_rejects_nonsense(n: object) -> None:
    quota = DailyQuota(5, clock=FakeClock(0))
    with pytest.raises(ValueError, match="n must be"):
        quota.try_spend(n)  # type: ignore[arg-type]
    assert quota.spent == 0
