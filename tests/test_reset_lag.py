"""A lagging daily-quota reset costs minutes, not a day: growing waits, one probe at a time."""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from support import FakeTime, harvest_on_fake_time, stored_ids, truth_ids
from support import make_client as support_client

from tiktok_repost_async import (
    HarvestStopped,
    RepostClient,
    RetryPolicy,
    StopReason,
    Store,
    UserState,
    WalkStopped,
)
from tiktok_repost_async.engine import QUOTA_STREAK, RATE_PROBE_WAITS
from tiktok_repost_async.harvester import UserOutcome
from tiktok_repost_async.quota import RESET_LAG_WAITS, reset_lag_wait
from tiktok_repost_async.simulator import Simulator

EVENING = dt.datetime(2026, 3, 1, 23, 0, tzinfo=dt.UTC).timestamp()
MIDNIGHT = dt.datetime(2026, 3, 2, 0, 0, tzinfo=dt.UTC).timestamp()
# Six users of three pages: 18 requests, against a project quota of 15 a day.
NAMES = [f"lag{i}_n250" for i in range(6)]
CONCURRENCY = 4
#: The rate-limit hold's probes before a streak of 429s is the daily quota.
HOLD = len(RATE_PROBE_WAITS)


@pytest.fixture
async def clock() -> FakeTime:
    return FakeTime(EVENING)


@pytest.fixture
async def sim(clock: FakeTime) -> AsyncIterator[Simulator]:
    # The neutral text: the 429 is told by behaviour, never by the word "quota".
    async with Simulator(
        clock=clock, daily_quota=15, quota_message="Rate limit exceeded"
    ) as simulator:
        yield simulator


def make_client(sim: Simulator, clock: FakeTime) -> RepostClient:
    return support_client(
        sim, clock=clock, concurrency=CONCURRENCY, retry=RetryPolicy(base_delay=0)
    )


async def harvest(
    sim: Simulator, clock: FakeTime, db: Path, on_quota: str
) -> tuple[list[UserOutcome], HarvestStopped | None, list[float]]:
    """Harvest NAMES; return the outcomes, the stop if any, and the quota waits taken."""
    waits: list[float] = []
    seen: list[int] = []
    client = make_client(sim, clock)

    async def sleep(seconds: float) -> None:
        # Time jumps once the requests already on their way have arrived, as they would: they
        # take milliseconds, the wait minutes or hours.
        for _ in range(1000):
            if sim.stats.in_flight == 0 and sim.stats.requests >= client.stats.requests:
                break
            await asyncio.sleep(0.002)
        if seconds >= 1.0:
            # Not the spacing of the rate learned from 429s: a wait of the quota or its hold.
            # A long wait sleeps in slices (WAIT_SLICE): those with no request in between are
            # one wait.
            if waits and seen[-1] == sim.stats.requests:
                waits[-1] += seconds
            else:
                waits.append(seconds)
                seen.append(sim.stats.requests)
        await clock.sleep(seconds)

    outcomes, stopped = await harvest_on_fake_time(
        client, clock, db, NAMES, on_quota=on_quota, sleep=sleep, concurrency=CONCURRENCY
    )
    return outcomes, stopped, waits


def test_the_lag_waits_grow_from_five_minutes_to_hourly() -> None:
    assert RESET_LAG_WAITS == (300.0, 900.0, 1800.0, 3600.0)
    minutes = [reset_lag_wait(MIDNIGHT + m * 60) / 60 for m in (0, 1, 6, 21, 51, 111, 600)]
    assert minutes == [5, 5, 15, 30, 60, 60, 60]


async def test_a_lagging_reset_is_probed_after_growing_waits_not_slept_to_the_next_midnight(
    sim: Simulator, clock: FakeTime, tmp_path: Path
) -> None:
    sim.config.quota_reset_lag = 40 * 60.0
    outcomes, stopped, waits = await harvest(sim, clock, tmp_path / "h.db", "wait")
    assert stopped is None
    assert {o.state for o in outcomes} == {UserState.DONE}
    assert stored_ids(tmp_path / "h.db", NAMES) == truth_ids(sim, NAMES)
    # Day one ends on the project's quota, and the wait ends a minute past midnight; then the
    # reset lags 40 minutes: probes at 00:06, 00:21 and 00:51, the last one served.
    # First the rate-limit hold's probes (minutes) tell the 429s for the daily quota.
    assert all(0.8 * w <= got <= w for got, w in zip(waits, RATE_PROBE_WAITS, strict=False))
    assert waits[HOLD + 1 :] == [300.0, 900.0, 1800.0]
    assert MIDNIGHT + 51 * 60 <= clock.now < MIDNIGHT + 52 * 60
    # After a wait for the reset, one probe goes first: the lag costs one refused request at
    # 00:01, 00:06 and 00:21 each (and one that a worker had under way), not one per worker.
    assert 3 <= sim.stats.quota_lag_refusals <= 4
    assert sim.stats.by_status[200] == 18


async def test_once_a_request_of_the_new_day_is_served_a_429_is_the_daily_quota_again(
    sim: Simulator, clock: FakeTime, tmp_path: Path
) -> None:
    sim.config.quota_reset_lag = 10 * 60.0
    sim.config.daily_quota = 7  # 18 requests: three days, the second spent after its lag
    outcomes, stopped, waits = await harvest(sim, clock, tmp_path / "h.db", "wait")
    assert stopped is None
    assert {o.state for o in outcomes} == {UserState.DONE}
    assert stored_ids(tmp_path / "h.db", NAMES) == truth_ids(sim, NAMES)
    # Each new day lags ten minutes: probes at 00:06 and 00:21. The second day's spent quota
    # is a real one: after its hold's probes, its wait runs to 00:01 of the third day, never in
    # lag steps. Each day's end is told by the rate-limit hold's probes first.
    day = 86_400.0
    assert len(waits) == 2 * (HOLD + 3)
    assert waits[HOLD + 1 : HOLD + 3] == [300.0, 900.0]
    second_day_end = waits[HOLD + 3 : 2 * HOLD + 4]
    assert MIDNIGHT + 21 * 60 + sum(second_day_end) == pytest.approx(MIDNIGHT + day + 60, abs=5)
    assert waits[2 * HOLD + 4 :] == [300.0, 900.0]


async def test_a_lag_that_lasts_the_day_ends_at_the_next_reset(
    sim: Simulator, clock: FakeTime, tmp_path: Path
) -> None:
    sim.config.quota_reset_lag = 86_399.0
    _, stopped, waits = await harvest(sim, clock, tmp_path / "h.db", "wait")
    assert stopped is None
    assert stored_ids(tmp_path / "h.db", NAMES) == truth_ids(sim, NAMES)
    # 5, 15, 30 minutes, then hourly from 00:51 to 23:51, then the ten minutes to 00:01.
    expected = [300.0, 900.0, 1800.0] + [3600.0] * 23 + [600.0]
    assert waits[HOLD + 1 :] == pytest.approx(expected, abs=1)
    assert clock.now < MIDNIGHT + 86_400 + 120
    assert sim.stats.quota_lag_refusals <= 4 + 24


async def test_a_stopped_run_says_when_to_try_again_on_a_spent_day_and_on_a_lagging_reset(
    sim: Simulator, clock: FakeTime, tmp_path: Path
) -> None:
    sim.config.quota_reset_lag = 40 * 60.0
    db = tmp_path / "h.db"
    _, stopped, _ = await harvest(sim, clock, db, "stop")
    assert stopped is not None
    assert stopped.reason is StopReason.QUOTA
    assert str(stopped) == (
        "the API says the project's daily quota is spent (collaborators share it);"
        " try again after 00:01 UTC"
    )
    assert stopped.retry_at == MIDNIGHT + 60
    # Run again at 00:02: the reset lags, and the run says so.
    clock.now = MIDNIGHT + 120
    before = sim.stats.requests
    _, stopped, _ = await harvest(sim, clock, db, "stop")
    assert stopped is not None
    assert stopped.reason is StopReason.QUOTA
    assert "the reset at 00:00 UTC seems to lag" in str(stopped)
    # The rate-limit hold's probes took minutes first; the next try is a lag wait from then.
    assert stopped.retry_at is not None
    assert MIDNIGHT + 7 * 60 <= stopped.retry_at <= MIDNIGHT + 22 * 60
    at = time.strftime("%H:%M", time.gmtime(math.ceil(stopped.retry_at / 60) * 60))
    assert str(stopped).endswith(f"try again after {at} UTC")
    assert sim.stats.requests - before <= CONCURRENCY + QUOTA_STREAK + HOLD
    # After the lag, the same command finishes exact.
    clock.now = MIDNIGHT + 41 * 60
    _, stopped, _ = await harvest(sim, clock, db, "stop")
    assert stopped is None
    assert stored_ids(db, NAMES) == truth_ids(sim, NAMES)
    with Store(db, create=False) as store:
        assert store.state_counts().get(UserState.FAILED, 0) == 0


async def test_walk_many_without_a_budget_stops_with_the_lag_message_too(
    sim: Simulator, clock: FakeTime
) -> None:
    sim.config.quota_reset_lag = 40 * 60.0
    sim.config.daily_quota = 3
    async with make_client(sim, clock) as client:
        with pytest.raises(WalkStopped) as first:
            async for _ in client.walk_many(NAMES):
                pass
        assert "daily quota is spent" in str(first.value)
        clock.now = MIDNIGHT + 60
        with pytest.raises(WalkStopped) as second:
            async for _ in client.walk_many(NAMES):
                pass
    assert second.value.reason is StopReason.QUOTA
    assert "seems to lag" in str(second.value)
    # walk_many's gate reads the real clock: the next probe is minutes to an hour away.
    assert second.value.retry_at is not None
    assert 5 * 60 - 1 <= second.value.retry_at - time.time() <= 3600
