"""The run-wide circuit breaker: an outage pauses the run, fails no user, costs a few requests."""

from __future__ import annotations

import itertools
import logging
from pathlib import Path

import pytest
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
from tiktok_repost_async.client import is_outage
from tiktok_repost_async.engine import BREAKER_GIVE_UP, BREAKER_MAX_WAIT, BREAKER_THRESHOLD, Gate
from tiktok_repost_async.errors import (
    CertificateError,
    ProtocolError,
    RequestTimeoutError,
    ServerError,
    TransportError,
    UserNotFoundError,
)
from tiktok_repost_async.gate import WAIT_SLICE
from tiktok_repost_async.harvester import Harvester, UserOutcome
from tiktok_repost_async.simulator import Simulator

NAMES = [f"out{i}_n250" for i in range(20)]


def make_client(sim: Simulator, clock: FakeTime) -> RepostClient:
    return support_client(sim, clock=clock, concurrency=8)


async def harvest(
    sim: Simulator, clock: FakeTime, db: Path, probes: list[float | None] | None = None
) -> tuple[list[UserOutcome], HarvestStopped | None]:
    """Harvest NAMES; ``probes`` gets the progress's next probe time at each of its sleeps."""
    built: list[Harvester] = []

    async def sleep(seconds: float) -> None:
        if probes is not None:
            probes.append(built[0].progress.probe_at)
        await clock.sleep(seconds)

    result = await harvest_on_fake_time(
        make_client(sim, clock), clock, db, NAMES, built=built, sleep=sleep
    )
    if probes is not None and result[1] is None:
        probes.append(built[0].progress.probe_at)
    return result


def test_outage_failures_are_5xx_timeouts_and_lost_connections_only() -> None:
    assert is_outage(ServerError("down", status=500))
    assert is_outage(RequestTimeoutError("no answer"))
    assert is_outage(TransportError("refused"))
    assert not is_outage(CertificateError("bad certificate"))
    assert not is_outage(ProtocolError("garbled"))
    assert not is_outage(UserNotFoundError("gone", status=404))


async def test_the_breaker_opens_at_its_threshold_and_any_answer_closes_it() -> None:
    gate = Gate()

    def error() -> ServerError:
        return ServerError("down", status=500)

    for i in range(BREAKER_THRESHOLD - 1):
        assert not gate.unhealthy(f"u{i}", error())
    gate.healthy()
    assert not any(gate.unhealthy(f"u{i}", error()) for i in range(BREAKER_THRESHOLD - 1))
    assert gate.unhealthy("last", error())
    assert gate.paused
    assert gate.unhealthy("late", error())  # on its way when the breaker opened: held too
    gate.healthy()
    assert not gate.paused


async def test_one_failure_shared_by_many_requests_counts_once() -> None:
    # One token refresh that failed for every worker waiting on it: one failure, not fifty.
    gate = Gate()
    shared = ServerError("down", status=500)
    assert not any(gate.unhealthy(f"u{i}", shared) for i in range(50))
    assert not gate.paused


async def test_one_probe_at_a_time_after_growing_waits(clock: FakeTime) -> None:
    gate = Gate(clock=clock, sleep=clock.sleep)
    for i in range(BREAKER_THRESHOLD):
        gate.unhealthy(f"u{i}", ServerError("down", status=500))
    await gate.admit("a")  # the probe, after the first wait
    assert len(clock.sleeps) == 1
    assert not await gate.take("b")  # another worker that left the limiter: back to admit
    await gate.admit("a")  # the probe sent back by take keeps its place, with no new wait
    assert len(clock.sleeps) == 1
    waits = [clock.sleeps[0]]
    for _ in range(4):
        # The probe failed: the next one waits longer.
        assert gate.unhealthy("a", ServerError("down", status=500))
        before = clock.now
        await gate.admit("a")
        waits.append(clock.now - before)
    assert all(a < b for a, b in itertools.pairwise(waits))
    assert waits[0] <= 5.0
    gate.healthy()
    assert await gate.take("b")


async def test_a_probe_wait_goes_on_within_a_slice_after_a_suspend(clock: FakeTime) -> None:
    # A laptop suspended during the breaker's longest wait: a sleep's own clock stands still
    # meanwhile, so one sleep of five minutes would wake five minutes after the lid opens. The
    # wait sleeps in slices and reads the wall clock after each: the probe goes within a slice.
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        await clock.sleep(seconds)
        if len(slept) == 1:
            clock.now += 20 * 60  # the lid closes during the first slice

    gate = Gate(clock=clock, sleep=sleep)
    for i in range(BREAKER_THRESHOLD):
        gate.unhealthy(f"u{i}", ServerError("down", status=500))
    gate._probes = 10  # the waits have grown to their most (BREAKER_MAX_WAIT)
    began = clock.now
    await gate.admit("a")
    assert slept == [WAIT_SLICE]
    assert clock.now - began == WAIT_SLICE + 20 * 60  # not + BREAKER_MAX_WAIT's rest as well
    # A retry's wait (a Retry-After of 15 minutes) likewise.
    slept.clear()
    began = clock.now
    await gate.pause(900.0, sleep)
    assert slept == [WAIT_SLICE]
    assert clock.now - began == WAIT_SLICE + 20 * 60
    # Without a suspend the wait is whole: slices that add up to it.
    slept.clear()
    clock_before = clock.now
    slept.append(0.0)  # no more lid
    await gate.pause(150.0, sleep)
    assert slept[1:] == [WAIT_SLICE, WAIT_SLICE, 30.0]
    assert clock.now - clock_before == 150.0


@pytest.mark.parametrize("kind", ["server_error", "gateway", "drop"])
async def test_an_outage_fails_no_user_and_the_run_ends_exact(
    sim: Simulator, clock: FakeTime, tmp_path: Path, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    # The outage begins mid-run: each read of the clock moves it a millisecond, so the first
    # pages (a few dozen requests) go out before it.
    clock.tick = 0.001
    sim.config.outage_start, sim.config.outage_seconds = clock.now + 0.2, 180.0
    sim.config.outage_kind = kind  # type: ignore[assignment]
    probes: list[float | None] = []
    with caplog.at_level(logging.WARNING, logger="tiktok_repost_async.engine"):
        outcomes, stopped = await harvest(sim, clock, tmp_path / "h.db", probes)
    assert stopped is None
    assert {o.state for o in outcomes} == {UserState.DONE}
    assert len(outcomes) == len(NAMES)
    assert stored_ids(tmp_path / "h.db", NAMES) == truth_ids(sim, NAMES)
    assert 0 < sim.stats.outage_failures <= 30
    assert "API unhealthy: pausing, next probe in" in caplog.text
    assert "API answers again" in caplog.text
    # The progress line shows each probe's time while paused, and nothing once it closed.
    assert any(at is not None and at > NOON for at in probes)
    assert probes[-1] is None


async def test_an_outage_that_never_ends_stops_the_run_resumable(
    sim: Simulator, clock: FakeTime, tmp_path: Path
) -> None:
    sim.config.outage_start, sim.config.outage_seconds = clock.now, 10 * 86_400.0
    started = clock.now
    outcomes, stopped = await harvest(sim, clock, tmp_path / "h.db")
    assert stopped is not None
    assert stopped.reason is StopReason.UNHEALTHY
    assert outcomes == []
    # No probe goes out after the limit, and none waits much past it.
    assert clock.now - started <= BREAKER_GIVE_UP + BREAKER_MAX_WAIT
    assert sim.stats.outage_failures <= 40
    with Store(tmp_path / "h.db", create=False) as store:
        assert store.state_counts().get(UserState.FAILED, 0) == 0
    # Once the API is back, the same command finishes exact.
    sim.config.outage_start = None
    outcomes, stopped = await harvest(sim, clock, tmp_path / "h.db")
    assert stopped is None
    assert stored_ids(tmp_path / "h.db", NAMES) == truth_ids(sim, NAMES)
