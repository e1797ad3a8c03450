"""Requests that never reached the API are not charged: the ledger and the budget give them back."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from support import NOON, FakeTime
from support import make_client as support_client

from tiktok_repost_async import (
    ConnectError,
    HarvestStopped,
    RepostClient,
    RetryPolicy,
    StopReason,
    Store,
    TransportError,
    UserState,
)
from tiktok_repost_async.harvester import Harvester, UserOutcome
from tiktok_repost_async.protocol import build_token_request
from tiktok_repost_async.quota import utc_day
from tiktok_repost_async.simulator import Simulator

NAMES = [f"ref{i}_n250" for i in range(8)]


def free_port() -> int:
    """Return a loopback port that nothing listens on (bound, then let go)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def make_client(port: int, clock: FakeTime) -> RepostClient:
    return support_client(f"http://127.0.0.1:{port}", clock=clock, retry=RetryPolicy(base_delay=0))


async def harvest(
    client: RepostClient, clock: FakeTime, db: Path, on_pause: object = None
) -> tuple[list[UserOutcome], HarvestStopped | None, Harvester]:
    async def sleep(seconds: float) -> None:
        if callable(on_pause):
            await on_pause()
        await clock.sleep(seconds)

    store = Store(db, fields=client.fields, max_count=100, clock=clock)
    harvester = Harvester(client, store, clock=clock, sleep=sleep, concurrency=4)
    outcomes: list[UserOutcome] = []
    try:
        async for outcome in harvester.run(NAMES):
            outcomes.append(outcome)
    except HarvestStopped as stopped:
        return outcomes, stopped, harvester
    finally:
        store.close()
    return outcomes, None, harvester


def ledger(db: Path) -> int:
    with Store(db, create=False) as store:
        return store.requests_on(utc_day(NOON))


async def test_a_refused_connection_is_a_connect_error_that_was_not_sent() -> None:
    clock = FakeTime()
    async with make_client(free_port(), clock) as client:
        request = build_token_request("key", "secret", client.base_url)
        with pytest.raises(ConnectError) as refused:
            await client._send(request)
    assert isinstance(refused.value, TransportError)
    assert refused.value.sent is False
    assert TransportError("dropped").sent is True


async def test_a_harvest_against_a_closed_port_charges_nothing(tmp_path: Path) -> None:
    clock = FakeTime()
    db = tmp_path / "h.db"
    async with make_client(free_port(), clock) as client:
        outcomes, stopped, harvester = await harvest(client, clock, db)
        assert client.stats.requests == 0
    assert stopped is not None
    assert stopped.reason is StopReason.UNHEALTHY
    assert outcomes == []
    assert harvester.quota.spent == 0
    assert harvester.progress.requests == 0
    assert ledger(db) == 0
    with Store(db, create=False) as store:
        assert store.state_counts().get(UserState.FAILED, 0) == 0


@pytest.mark.parametrize("token_first", [False, True])
async def test_refused_requests_are_given_back_and_the_ledger_matches_the_api(
    tmp_path: Path, token_first: bool
) -> None:
    # The API goes away (its port refuses connections) and comes back at the breaker's first
    # probe. With a token in hand the research requests are refused; without one, the token
    # requests are, and the research requests booked behind them never leave.
    clock = FakeTime()
    db = tmp_path / "h.db"
    sim = Simulator(clock=clock)
    port = free_port()
    await sim.start(port=port)
    try:
        async with make_client(port, clock) as client:
            if token_first:
                await client.authenticate()
            await sim.close()

            async def come_back() -> None:
                if sim._base_url is None:
                    await sim.start(port=port)

            outcomes, stopped, harvester = await harvest(client, clock, db, come_back)
            sent = client.stats.requests
    finally:
        await sim.close()
    assert stopped is None
    assert {o.state for o in outcomes} == {UserState.DONE}
    assert {o.username: o.videos for o in outcomes} == {n: len(sim.ground_truth(n)) for n in NAMES}
    # Only what reached the simulator is charged: the ledger, the budget and the client agree.
    assert ledger(db) == sim.stats.requests == harvester.quota.spent == sent
    assert harvester.progress.requests == sim.stats.requests
    with Store(db, create=False) as store:
        per_user = {row.username: row.requests for row in store.iter_users()}
    assert sum(per_user.values()) == sim.stats.requests
    assert per_user == {n: sim.stats.by_user[n] for n in NAMES}


class Turnstile:
    """Stand in for the client's limiter: let ``free`` requests through, then hold the rest.

    Once ``crowd`` requests wait, ``on_crowd`` is called and they all go on.
    """

    def __init__(self, free: int, crowd: int, on_crowd: Callable[[], None]) -> None:
        self.free = free
        self.crowd = crowd
        self.on_crowd = on_crowd
        self.waiting = 0
        self.opened = asyncio.Event()

    async def acquire(self) -> None:
        if self.free > 0:
            self.free -= 1
            return
        self.waiting += 1
        if self.waiting == self.crowd:
            self.on_crowd()
            self.opened.set()
        await self.opened.wait()


async def test_a_stopped_harvest_gives_back_what_it_paid_ahead_and_never_sent(
    sim: Simulator, tmp_path: Path
) -> None:
    # Each user's next request is booked with its previous page. Four workers walk; the first
    # page of each goes out, then the harvest stops while all four wait at the limiter: the
    # three walking on hold a request paid and booked ahead, the one that moved to the next
    # user a fresh one. None may go out, and the ledger ends equal to what the API received.
    clock = FakeTime()
    names = ["tiny_n50", *(f"stop{i}_n1000" for i in range(7))]
    db = tmp_path / "h.db"
    harvester: Harvester | None = None

    def stop() -> None:
        assert harvester is not None
        harvester.stop()

    turnstile = Turnstile(free=4, crowd=4, on_crowd=stop)
    client = support_client(sim, clock=clock, retry=RetryPolicy(base_delay=0), limiter=turnstile)
    async with client:
        store = Store(db, fields=client.fields, max_count=100, clock=clock)
        harvester = Harvester(client, store, clock=clock, sleep=clock.sleep, concurrency=4)
        try:
            with pytest.raises(HarvestStopped) as stopped:
                await consume(harvester.run(names))
        finally:
            store.close()
    assert stopped.value.reason is StopReason.REQUESTED
    received = sim.stats.requests
    assert received == 4  # the first page of each of the first four users
    assert ledger(db) == received
    assert harvester.quota.spent == harvester.progress.requests == received
    with Store(db, create=False) as reader:
        per_user = {row.username: row.requests for row in reader.iter_users()}
        pages = reader._db.execute("SELECT count(*) FROM pages").fetchone()[0]
    assert per_user == {name: sim.stats.by_user[name] for name in per_user}
    assert pages == received


async def consume(outcomes: AsyncIterator[UserOutcome]) -> None:
    async for _ in outcomes:
        pass
