"""Whose fault is it: one user's failures are its own, every user's are the run's, and a 429
is a short-term limit until it persists for minutes (issue 20)."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import (  # noqa: F401 (fixtures: the clock and simulator on fake time)
    FakeTime,
    fake_time_clock,
    harvest_on_fake_time,
    run_main,
    sim_on_fake_time,
    stored_ids,
    truth_ids,
)
from support import make_client as support_client

from tiktok_repost_async import StopReason, Store, UserState
from tiktok_repost_async.engine import BREAKER_MAX_WAIT, BREAKER_THRESHOLD
from tiktok_repost_async.quota import utc_day
from tiktok_repost_async.simulator import Fault, Simulator

BROKEN = "broken7_n250"
OTHERS = [f"fine{i}_n250" for i in range(4)]
PLACES = {
    "head": [BROKEN, *OTHERS],
    "middle": [*OTHERS[:2], BROKEN, *OTHERS[2:]],
    "tail": [*OTHERS, BROKEN],
}


class ClockLimiter:
    """Start at most ``rate`` requests a second on the fake clock (the client's limiter)."""

    def __init__(self, clock: FakeTime, rate: float) -> None:
        self.clock = clock
        self.rate = rate
        self.next = 0.0

    async def acquire(self) -> None:
        now = self.clock.now
        slot = max(now, self.next)
        self.next = slot + 1.0 / self.rate
        await self.clock.sleep(slot - now)


def states_of(store: Store) -> dict[UserState, int]:
    return {state: count for state, count in store.state_counts().items() if count}


@pytest.mark.parametrize("fault", [Fault.SERVER_ERROR, Fault.INVALID_CURSOR])
@pytest.mark.parametrize("where", list(PLACES))
async def test_a_user_the_api_never_serves_ends_failed_and_the_run_goes_on(
    sim: Simulator, clock: FakeTime, tmp_path: Path, where: str, fault: Fault
) -> None:
    # Concurrency 1: the failing user is the only one in flight, so its failures alone open
    # the breaker; another user's request must tell whose fault they are.
    sim.config.user_faults = {BROKEN: fault}
    names = PLACES[where]
    started = clock.now
    client = support_client(sim, clock=clock, concurrency=1)
    outcomes, stopped = await harvest_on_fake_time(client, clock, tmp_path / "h.db", names)
    assert stopped is None
    states = {o.username: o.state for o in outcomes}
    assert states == {**dict.fromkeys(OTHERS, UserState.DONE), BROKEN: UserState.FAILED}
    (failed,) = (o for o in outcomes if o.username == BROKEN)
    kind = "ServerError" if fault is Fault.SERVER_ERROR else "InvalidCursorError"
    assert failed.error is not None
    assert failed.error.startswith(f"{kind}: ")
    # Its failures were its attempts: the breaker's threshold of them, and one more chance once
    # another user was served (the outage might have ended just then).
    assert sim.stats.by_user[BROKEN] == BREAKER_THRESHOLD + 1
    # Every other page was asked once; at the tail, with no name left, one probe asks for the
    # first page of a user already done.
    for name in OTHERS:
        assert sim.stats.by_user[name] == sim.pages_needed(name) + (
            where == "tail" and name == OTHERS[-1]
        )
    # A probe's wait, not the breaker's hour.
    assert clock.now - started < BREAKER_MAX_WAIT
    assert stored_ids(tmp_path / "h.db", OTHERS) == truth_ids(sim, OTHERS)
    with Store(tmp_path / "h.db", create=False) as store:
        assert states_of(store) == {UserState.DONE: 4, UserState.FAILED: 1}


async def test_a_failing_user_among_many_workers_is_failed_alone(
    sim: Simulator, clock: FakeTime, tmp_path: Path
) -> None:
    sim.config.user_faults = {BROKEN: Fault.SERVER_ERROR}
    names = [*OTHERS, BROKEN, *(f"more{i}_n150" for i in range(6))]
    client = support_client(sim, clock=clock, concurrency=4)
    outcomes, stopped = await harvest_on_fake_time(client, clock, tmp_path / "h.db", names)
    assert stopped is None
    states = {o.username: o.state for o in outcomes}
    assert states.pop(BROKEN) is UserState.FAILED
    assert set(states.values()) == {UserState.DONE}
    assert sim.stats.by_user[BROKEN] <= BREAKER_THRESHOLD + 1
    fine = [n for n in names if n != BROKEN]
    assert stored_ids(tmp_path / "h.db", fine) == truth_ids(sim, fine)


async def test_a_run_of_one_failing_user_cannot_tell_and_stops_resumable(
    sim: Simulator, clock: FakeTime, tmp_path: Path
) -> None:
    # Nobody else to ask: the failures may be an outage, so the user is held, never failed.
    sim.config.user_faults = {BROKEN: Fault.SERVER_ERROR}
    client = support_client(sim, clock=clock, concurrency=1)
    outcomes, stopped = await harvest_on_fake_time(client, clock, tmp_path / "h.db", [BROKEN])
    assert outcomes == []
    assert stopped is not None
    assert stopped.reason is StopReason.UNHEALTHY
    with Store(tmp_path / "h.db", create=False) as store:
        assert states_of(store) == {UserState.PENDING: 1}


async def test_invalid_count_or_cursor_for_every_user_is_the_runs_outage(
    sim: Simulator, clock: FakeTime, tmp_path: Path
) -> None:
    # The API's bug, for everyone at once: not 40 failed users, but a pause, probes, and a stop
    # that the same command resumes once the API is well.
    sim.config.persistent_fault = Fault.INVALID_CURSOR
    names = [f"ic{i}_n150" for i in range(40)]
    db = tmp_path / "h.db"
    outcomes, stopped = await harvest_on_fake_time(
        support_client(sim, clock=clock, concurrency=8), clock, db, names
    )
    assert outcomes == []
    assert stopped is not None
    assert stopped.reason is StopReason.UNHEALTHY
    refused = sim.stats.requests
    # The threshold, the requests on their way, and an hour of probes (200 before: 5 per user).
    assert refused <= BREAKER_THRESHOLD + 8 + 30
    with Store(db, create=False) as store:
        assert states_of(store) == {UserState.PENDING: 40}
    sim.config.persistent_fault = None
    outcomes, stopped = await harvest_on_fake_time(
        support_client(sim, clock=clock, concurrency=8), clock, db, names
    )
    assert stopped is None
    assert {o.state for o in outcomes} == {UserState.DONE}
    assert stored_ids(db, names) == truth_ids(sim, names)
    assert sim.stats.requests - refused == sum(sim.pages_needed(n) for n in names)


async def test_a_short_term_limit_lowers_the_rate_and_never_costs_the_day(
    clock: FakeTime, tmp_path: Path
) -> None:
    # An API that allows 5 requests in any second and answers 429 without Retry-After, against
    # the default rate of 10 a second: the run slows down and finishes; it never takes the
    # limit for the daily quota.
    names = [f"rl{i}_n250" for i in range(30)]
    async with Simulator(clock=clock, rate_limit=5) as sim:
        client = support_client(
            sim,
            clock=clock,
            concurrency=1,
            requests_per_second=10.0,
            limiter=ClockLimiter(clock, 9.9),
        )
        outcomes, stopped = await harvest_on_fake_time(client, clock, tmp_path / "h.db", names)
        assert stopped is None
        assert {o.state for o in outcomes} == {UserState.DONE}
        assert stored_ids(tmp_path / "h.db", names) == truth_ids(sim, names)
        refused = sim.stats.by_status[429]
        assert refused >= 1
        # Every 429 costs quota: at most a fifth of the requests.
        assert refused <= sim.stats.requests / 5
        with Store(tmp_path / "h.db", create=False) as store:
            assert store.requests_on(utc_day(clock.now)) == sim.stats.requests


@pytest.mark.slow
def test_a_harvest_at_the_default_rate_against_5_a_second_finishes(tmp_path: Path) -> None:
    # The reported case, on the real clock: an API that allows 5 requests a second and answers
    # 429 without Retry-After; `harvest` at its default --rate 10 and --concurrency 8 stopped
    # after 2 s as if the day's quota were spent. It must finish, most of its requests served.
    from test_cli import cli_env, write_users

    names = [f"five{i}_n250" for i in range(20)]
    db = tmp_path / "h.db"
    simulator = Simulator(rate_limit=5)
    with simulator.run_in_thread() as base_url:
        users = write_users(tmp_path / "users.txt", names)
        ran = run_main("harvest", users, "--db", db, "--base-url", base_url, env=cli_env())
        assert ran.returncode == 0, ran.stderr
        assert "quota is spent" not in ran.stderr
        assert stored_ids(db, names) == truth_ids(simulator, names)
        refused = simulator.stats.by_status[429]
        assert refused <= simulator.stats.requests / 5
        with Store(db, create=False) as store:
            assert store.requests_on() == simulator.stats.requests
