"""The daily-quota 429 is told by behaviour in a walk, never by its text."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import (  # noqa: F401 (fixtures: the clock and simulator on fake time)
    FakeTime,
    fake_time_clock,
    sim_on_fake_time,
)
from support import make_client as support_client

from tiktok_repost_async import (
    HarvestStopped,
    RepostClient,
    RetryPolicy,
    StopReason,
    Store,
    UserState,
)
from tiktok_repost_async.engine import QUOTA_STREAK, RATE_PROBE_WAITS, Gate
from tiktok_repost_async.errors import QuotaExhaustedError, RateLimitError
from tiktok_repost_async.harvester import Harvester, UserOutcome
from tiktok_repost_async.quota import DailyQuota
from tiktok_repost_async.simulator import Fault, Simulator


def make_client(sim: Simulator, clock: FakeTime, **kwargs: object) -> RepostClient:
    # The token keeps its own monotonic clock here, as before this file shared support's.
    return support_client(sim, **{"concurrency": 8, "sleep": clock.sleep, **kwargs})


def limited(retry_after: float | None = None, *, says_quota: bool = False) -> RateLimitError:
    kind = QuotaExhaustedError if says_quota else RateLimitError
    return kind("Rate limit exceeded", code="rate_limit_exceeded", retry_after=retry_after)


async def test_a_streak_pauses_and_only_429s_through_every_probe_are_the_quota() -> None:
    clock = FakeTime()
    gate = Gate(clock=clock, sleep=clock.sleep)
    assert not gate.rate_limited("a", limited())
    assert not gate.rate_limited("b", limited())
    assert not gate.limit_held()
    assert QUOTA_STREAK == 3
    # The third in a row pauses the run: no verdict yet, the request is held, not charged.
    assert not gate.rate_limited("a", limited())
    assert gate.limit_held()
    # A 429 that was on its way when the hold began is held like the rest.
    assert not gate.rate_limited("b", limited())
    started = clock.now
    for probe in range(len(RATE_PROBE_WAITS)):
        await gate.admit("c")  # the probe: it waits out the hold's next wait first
        verdict = gate.rate_limited("c", limited())
        assert verdict == (probe == len(RATE_PROBE_WAITS) - 1)
    # Minutes of 429s, not seconds: a blip never costs the day.
    assert clock.now - started >= 0.8 * sum(RATE_PROBE_WAITS)


async def test_a_served_probe_means_a_short_term_limit_and_resumes_slower() -> None:
    clock = FakeTime()
    gate = Gate(clock=clock, sleep=clock.sleep)
    gate.ceiling = 10.0
    for name in "abc":
        assert not gate.rate_limited(name, limited())
    assert gate.limit_held()
    await gate.admit("d")
    gate.not_rate_limited()
    gate.served()
    gate.healthy("d")
    assert not gate.limit_held()
    # Lowered once for the burst (at most one step down a second); the hold's wait earns at
    # most a second's growth.
    assert gate.rate == pytest.approx(7.0, abs=0.05)
    # It creeps back up while answers are served, to the client's own rate and no further.
    for _ in range(150):
        clock.now += 0.2
        gate.served()
    assert gate.rate == pytest.approx(8.55, abs=0.01)
    for _ in range(300):
        clock.now += 0.2
        gate.served()
    assert gate.rate is None


async def test_an_answer_in_between_or_a_retry_after_breaks_no_rule_but_the_streak() -> None:
    gate = Gate()
    for _ in range(10):
        assert not gate.rate_limited("a", limited())
        assert not gate.rate_limited("b", limited(says_quota=True))
        gate.not_rate_limited()
    # A 429 with Retry-After is a pause whatever it says, and never joins a streak.
    assert not any(gate.rate_limited("c", limited(1.0, says_quota=True)) for _ in range(10))
    assert not gate.rate_limited("a", limited())


async def test_near_the_ledgers_budget_any_429_is_the_quota(clock: FakeTime) -> None:
    # 1% of the budget: at 990 of 1,000 spent, even a 429 with Retry-After is the quota.
    gate = Gate(DailyQuota(1000, spent_today=989, clock=clock))
    assert not gate.rate_limited("a", limited(2.0))
    gate = Gate(DailyQuota(1000, spent_today=990, clock=clock))
    assert gate.rate_limited("a", limited(2.0))
    # A small budget still has a margin of its last request.
    gate = Gate(DailyQuota(13, spent_today=12, clock=clock))
    assert gate.rate_limited("a", limited(2.0))


async def test_a_quota_429_with_a_neutral_text_stops_a_harvest_within_a_dozen_requests(
    sim: Simulator, clock: FakeTime, tmp_path: Path
) -> None:
    sim.config.quota_message = "Rate limit exceeded"
    sim.config.daily_quota = 20
    names = [f"nq{i}_n250" for i in range(30)]
    async with make_client(sim, clock) as client:
        store = Store(tmp_path / "h.db", fields=client.fields, max_count=100, clock=clock)
        harvester = Harvester(client, store, clock=clock, sleep=clock.sleep)
        with pytest.raises(HarvestStopped) as stopped:
            async for _ in harvester.run(names):
                pass
        store.close()
    assert stopped.value.reason is StopReason.QUOTA
    assert sim.stats.by_status[200] == 20
    assert sim.stats.requests - 20 <= 12
    with Store(tmp_path / "h.db", create=False) as store:
        # The quota is nobody's fault: the users it stopped are resumable, not failed.
        assert store.state_counts().get(UserState.FAILED, 0) == 0


async def test_a_lone_short_term_429_that_says_quota_is_waited_out(
    sim: Simulator, clock: FakeTime, tmp_path: Path
) -> None:
    sim.config.rate_limit_message = "Quota exceeded for this second"
    sim.script("said_n250", [Fault.RATE_LIMIT])  # with Retry-After: 1
    sim.script("bare_n250", [Fault.RATE_LIMIT_NO_RETRY_AFTER, Fault.RATE_LIMIT_NO_RETRY_AFTER])
    names = ["said_n250", "bare_n250", *(f"ok{i}_n250" for i in range(6))]
    async with make_client(sim, clock, retry=RetryPolicy(base_delay=0.5)) as client:
        store = Store(tmp_path / "h.db", fields=client.fields, max_count=100, clock=clock)
        harvester = Harvester(client, store, clock=clock, sleep=clock.sleep)
        outcomes: list[UserOutcome] = [o async for o in harvester.run(names)]
        store.close()
    assert sim.stats.by_status[429] == 3
    assert {o.username: o.state for o in outcomes} == dict.fromkeys(names, UserState.DONE)
    assert 1.0 in clock.sleeps  # the Retry-After was honoured
    with Store(tmp_path / "h.db", create=False) as store:
        stored = {name: [int(v) for v, _ in store.round_videos(name, 1)] for name in names}
    truth = {name: [v["id"] for v in sim.ground_truth(name)] for name in names}
    assert {n: sorted(ids) for n, ids in stored.items()} == {
        n: sorted(ids) for n, ids in truth.items()
    }
