"""A 401 right after a fresh token is TikTok's auth flapping: an outage, never a user's failure."""

from __future__ import annotations

from pathlib import Path

from support import (  # noqa: F401 (fixtures: the clock and simulator on fake time)
    NOON,
    FakeTime,
    fake_time_clock,
    harvest_on_fake_time,
    sim_on_fake_time,
    stored_ids,
    truth_ids,
)
from support import make_client as support_client

from tiktok_repost_async import (
    HarvestStopped,
    RepostClient,
    StopReason,
    Store,
    UserState,
)
from tiktok_repost_async.engine import BREAKER_GIVE_UP, BREAKER_MAX_WAIT, BREAKER_THRESHOLD
from tiktok_repost_async.harvester import Harvester, UserOutcome
from tiktok_repost_async.quota import utc_day
from tiktok_repost_async.simulator import Fault, Simulator

NAMES = [f"flap{i}_n250" for i in range(10)]


def make_client(sim: Simulator, clock: FakeTime) -> RepostClient:
    return support_client(sim, clock=clock)


async def harvest(
    sim: Simulator, clock: FakeTime, db: Path
) -> tuple[list[UserOutcome], HarvestStopped | None]:
    return await harvest_on_fake_time(make_client(sim, clock), clock, db, NAMES)


async def test_persistent_401s_after_fresh_tokens_stop_the_run_unhealthy_and_fail_nobody(
    sim: Simulator, clock: FakeTime, tmp_path: Path
) -> None:
    sim.config.persistent_fault = Fault.TOKEN_INVALID
    started = clock.now
    outcomes, stopped = await harvest(sim, clock, tmp_path / "h.db")
    assert stopped is not None
    assert stopped.reason is StopReason.UNHEALTHY
    assert outcomes == []
    # Bounded: the breaker's threshold and the requests on their way (4 workers), then one
    # probe (and one token) per jittered wait, for an hour: 29 probes at most.
    assert clock.now - started <= BREAKER_GIVE_UP + BREAKER_MAX_WAIT
    assert sim.stats.by_status[401] <= BREAKER_THRESHOLD + 4 + 29
    assert sim.stats.token_requests <= sim.stats.by_status[401] + 1
    with Store(tmp_path / "h.db", create=False) as store:
        assert store.state_counts().get(UserState.FAILED, 0) == 0
        # Every request the API saw is in the ledger (401s cost quota too).
        assert store.requests_on(utc_day(NOON)) == sim.stats.requests
    # Once TikTok's auth is back, the same command finishes exact.
    sim.config.persistent_fault = None
    outcomes, stopped = await harvest(sim, clock, tmp_path / "h.db")
    assert stopped is None
    assert {o.state for o in outcomes} == {UserState.DONE}
    assert stored_ids(tmp_path / "h.db", NAMES) == truth_ids(sim, NAMES)


async def test_a_401_on_an_older_token_is_refreshed_and_resent_without_a_pause(
    sim: Simulator, clock: FakeTime, tmp_path: Path
) -> None:
    # A 401 on a cached token is staleness: one refresh for everyone, no breaker, no wait.
    outcomes, stopped = await harvest(sim, clock, tmp_path / "h.db")
    assert stopped is None
    sim.expire_tokens()
    sim.reset_stats()
    db = tmp_path / "again.db"
    async with make_client(sim, clock) as client:
        await client.authenticate()
        sim.expire_tokens()  # the token in hand goes stale before its first use
        store = Store(db, fields=client.fields, max_count=100, clock=clock)
        harvester = Harvester(client, store, clock=clock, sleep=clock.sleep)
        clock.sleeps.clear()
        outcomes = [o async for o in harvester.run(NAMES)]
        store.close()
    assert {o.state for o in outcomes} == {UserState.DONE}
    assert sim.stats.by_status[401] == 1  # the trial's, then the fresh token serves all
    assert sim.stats.token_requests == 2
    assert clock.sleeps == []  # no breaker wait
    assert stored_ids(db, NAMES) == truth_ids(sim, NAMES)


async def test_a_lone_401_after_a_fresh_token_is_retried_and_costs_the_user_nothing(
    sim: Simulator, clock: FakeTime, tmp_path: Path
) -> None:
    sim.script(NAMES[0], [Fault.TOKEN_INVALID, Fault.TOKEN_INVALID])
    outcomes, stopped = await harvest(sim, clock, tmp_path / "h.db")
    assert stopped is None
    assert {o.state for o in outcomes} == {UserState.DONE}
    assert stored_ids(tmp_path / "h.db", NAMES) == truth_ids(sim, NAMES)
    assert sim.stats.by_status[401] == 2
