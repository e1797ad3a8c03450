"""The token endpoint's faults: retried within the bound, one refresh and its failure shared."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Mapping

import msgspec
import pytest
from support import MIDNIGHT, FakeTime, make_client

from tiktok_repost_async import (
    Credentials,
    RetryPolicy,
    ServerError,
    StopReason,
    TikTokError,
    WalkStopped,
)
from tiktok_repost_async.auth import TokenManager
from tiktok_repost_async.engine import BREAKER_THRESHOLD, Engine, Gate, PageEvent, UserDone
from tiktok_repost_async.protocol import Request
from tiktok_repost_async.simulator import Fault, Simulator

WORKERS = 50
NAMES = [f"tok{i}_n250" for i in range(WORKERS)]
# Short backoffs in real time: the token manager's pauses are these ceilings (50, 100, 200
# ms, then 200 ms again: capped, so that a test waits a second at most), longer than the fifty
# workers take to pass the rate limiter.
RETRY = RetryPolicy(max_attempts=4, base_delay=0.05, max_delay=0.2)


class FlakyTokenServer:
    """Answer token requests after a pause: ``failures`` 500s first, then tokens."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    async def __call__(self, request: Request) -> tuple[int, Mapping[str, str], bytes]:
        self.calls += 1
        await asyncio.sleep(0.001)
        headers = {"Content-Type": "application/json"}
        if self.calls <= self.failures:
            body = {"error": "internal_error", "error_description": "", "log_id": "x"}
            return 500, headers, msgspec.json.encode(body)
        body = {"access_token": f"clt.token{self.calls}", "expires_in": 7200}
        return 200, headers, msgspec.json.encode(body)


async def test_fifty_waiters_share_one_failed_refresh_and_the_next_call_starts_anew() -> None:
    server = FlakyTokenServer(failures=1)
    manager = TokenManager(Credentials("key", "secret"), base_url="http://127.0.0.1:1", retry=RETRY)
    outcomes = await asyncio.gather(
        *(manager.token(server) for _ in range(WORKERS)), return_exceptions=True
    )
    assert server.calls == 1
    assert all(isinstance(o, ServerError) for o in outcomes)
    # Until the pause after it ends, a late caller gets the same failure, without a request.
    assert manager.retry_in() > 0
    with pytest.raises(ServerError):
        await manager.token(server)
    assert server.calls == 1
    await asyncio.sleep(manager.retry_in())
    tokens = await asyncio.gather(*(manager.token(server) for _ in range(WORKERS)))
    assert set(tokens) == {"clt.token2"}
    assert (server.calls, manager.attempts, manager.refreshes) == (2, 2, 1)


async def test_a_waiter_cancelled_leaves_the_refresh_to_the_others() -> None:
    server = FlakyTokenServer(failures=0)
    manager = TokenManager(Credentials("key", "secret"), base_url="http://127.0.0.1:1")
    first = asyncio.ensure_future(manager.token(server))
    second = asyncio.ensure_future(manager.token(server))
    await asyncio.sleep(0)
    first.cancel()
    assert await second == "clt.token1"
    with contextlib.suppress(asyncio.CancelledError):
        await first
    # Nobody waiting: the refresh is cancelled with its last waiter, and leaves no task.
    manager.invalidate("clt.token1")
    alone = asyncio.ensure_future(manager.token(server))
    await asyncio.sleep(0)
    alone.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await alone
    await asyncio.sleep(0.01)
    assert server.calls == 2
    assert await manager.token(server) == "clt.token3"


@pytest.mark.parametrize("failures", [0, 1])
async def test_the_waiters_of_a_refresh_leave_it_one_at_a_time_in_order(failures: int) -> None:
    # Woken in one turn of the loop, the workers of a walk would all send in the same instant
    # and stay bunched for the rest of it (see auth.py): they leave as through a lock instead,
    # each in a later turn than the one before it, in the order they came, sharing the outcome.
    server = FlakyTokenServer(failures=failures)
    manager = TokenManager(Credentials("key", "secret"), base_url="http://127.0.0.1:1", retry=RETRY)
    turns = 0
    left: list[tuple[int, int, str]] = []

    async def count_turns() -> None:
        nonlocal turns
        while True:
            await asyncio.sleep(0)
            turns += 1

    async def waiter(number: int) -> None:
        try:
            outcome = await manager.token(server)
        except ServerError as error:
            outcome = type(error).__name__
        left.append((number, turns, outcome))

    counter = asyncio.ensure_future(count_turns())
    try:
        await asyncio.gather(*(waiter(number) for number in range(WORKERS)))
    finally:
        counter.cancel()
    assert server.calls == 1
    assert [number for number, _, _ in left] == list(range(WORKERS))
    stamps = [turn for _, turn, _ in left]
    assert all(later > earlier for earlier, later in itertools.pairwise(stamps))
    assert {outcome for _, _, outcome in left} == {"ServerError" if failures else "clt.token1"}


async def test_a_token_failure_mid_walk_costs_one_token_request_not_one_per_worker(
    sim: Simulator,
) -> None:
    done: list[UserDone] = []
    before: int | None = None
    async with make_client(sim, concurrency=WORKERS, retry=RETRY) as client:
        async for event in client.walk_many(NAMES):
            if isinstance(event, PageEvent) and before is None:
                # Every worker's next request finds its token refused, and the one refresh
                # that they all wait for fails once.
                sim.expire_tokens()
                sim.script_token([Fault.SERVER_ERROR])
                before = sim.stats.token_requests
            elif isinstance(event, UserDone):
                done.append(event)
    assert before is not None
    assert sim.stats.token_faults == {Fault.SERVER_ERROR: 1}
    # The failed refresh, then the one that all of them met at after its pause.
    assert sim.stats.token_requests - before == 2
    assert all(d.state == "done" for d in done)
    assert len(done) == WORKERS
    assert {d.username: d.videos for d in done} == {n: len(sim.ground_truth(n)) for n in NAMES}


@pytest.mark.parametrize(
    "fault",
    [Fault.SERVER_ERROR, Fault.BAD_GATEWAY, Fault.RATE_LIMIT_NO_RETRY_AFTER, Fault.DROP],
)
async def test_a_lasting_token_fault_costs_the_retry_attempts_not_attempts_times_workers(
    sim: Simulator, fault: Fault
) -> None:
    sim.config.token_faults = {fault: 1.0}
    async with make_client(sim, concurrency=WORKERS, retry=RETRY) as client:

        async def walk(name: str) -> list[int]:
            return [video.id async for video in client.reposted_videos(name)]

        outcomes = await asyncio.gather(*(walk(n) for n in NAMES), return_exceptions=True)
        assert all(isinstance(o, TikTokError) for o in outcomes), outcomes[:3]
        # One refresh per attempt, each failure shared by the fifty.
        assert sim.stats.token_requests == RETRY.max_attempts
        assert client.token_requests == RETRY.max_attempts
        assert sim.stats.requests == 0
        # The pre-flight check is retried within the same bound, once the last pause is over.
        await asyncio.sleep(client._auth.retry_in())
        sim.reset_stats()
        with pytest.raises(TikTokError):
            await client.authenticate()
        assert sim.stats.token_requests == RETRY.max_attempts


async def test_authenticate_retries_a_token_fault_that_passes(sim: Simulator) -> None:
    sim.script_token([Fault.BAD_GATEWAY, Fault.DROP])
    async with make_client(sim, retry=RETRY) as client:
        await client.authenticate()
    assert (sim.stats.token_requests, sim.stats.tokens_issued) == (3, 1)


async def test_a_token_endpoint_that_stays_down_pauses_the_walk_and_fails_nobody(
    sim: Simulator,
) -> None:
    clock = FakeTime(MIDNIGHT + 12 * 3600)
    gate = Gate(clock=clock, sleep=clock.sleep)
    done: list[UserDone] = []
    before: int | None = None
    async with make_client(sim, concurrency=WORKERS, retry=RETRY) as client:
        engine = Engine(client, concurrency=WORKERS, gate=gate)

        async def walk() -> None:
            nonlocal before
            async for event in engine.run(NAMES):
                if isinstance(event, PageEvent) and before is None:
                    sim.expire_tokens()
                    sim.config.token_faults = {Fault.SERVER_ERROR: 1.0}
                    before = sim.stats.token_requests
                elif isinstance(event, UserDone):
                    done.append(event)

        with pytest.raises(WalkStopped) as stopped:
            await walk()
    assert stopped.value.reason is StopReason.UNHEALTHY
    assert all(d.state == "done" for d in done)  # finished before the fault: nobody failed
    assert before is not None
    # The breaker opens at its threshold of (shared) failures; then one probe at a time, over
    # the hour it waits. Fifty workers each retrying would have sent 200.
    assert sim.stats.token_requests - before <= BREAKER_THRESHOLD + 30
