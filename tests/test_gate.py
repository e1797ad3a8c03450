"""The quota and stop gate: nothing waiting goes out after a stop, tokens are taken last."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import support

from tiktok_repost_async import (
    HarvestStopped,
    RepostClient,
    RetryPolicy,
    StopReason,
    Store,
    UserState,
    WalkStopped,
)
from tiktok_repost_async.engine import QUOTA_STREAK, RATE_PROBE_WAITS, Gate
from tiktok_repost_async.harvester import Harvester, UserOutcome, harvest
from tiktok_repost_async.quota import DailyQuota, utc_day
from tiktok_repost_async.simulator import Fault, Simulator


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator() as simulator:
        yield simulator


def make_client(sim: Simulator, **kwargs: Any) -> RepostClient:
    return support.make_client(sim, **{"concurrency": 8, **kwargs})


async def run(client: RepostClient, names: object, db: Path, **options: Any) -> list[UserOutcome]:
    return [o async for o in harvest(client, names, store=db, **options)]  # type: ignore[arg-type]


async def test_once_the_daily_quota_is_told_at_most_one_more_request_arrives(
    sim: Simulator, tmp_path: Path
) -> None:
    # The limiter spaces requests (50/s) further apart than they take, so when the 429 that
    # completes the streak comes back the other workers are all waiting in the limiter: none of
    # them may go out but the probes of the hold. The streak itself costs QUOTA_STREAK 429s,
    # the first one included, and each probe one more.
    sim.config.daily_quota = 10
    names = [f"dq{i}_n400" for i in range(8)]
    retry = RetryPolicy(base_delay=0)
    clock = support.FakeTime()
    async with make_client(sim, requests_per_second=50, retry=retry, clock=clock) as client:
        with pytest.raises(HarvestStopped) as stopped:
            await run(client, names, tmp_path / "h.db")
        assert stopped.value.reason is StopReason.QUOTA
        after_429 = sim.stats.requests - 11
        assert sim.stats.by_status[429] >= 1
        assert after_429 <= QUOTA_STREAK + len(RATE_PROBE_WAITS)
        with Store(tmp_path / "h.db", create=False) as store:
            # Booked before sent: the ledger holds every request the API saw.
            assert sim.stats.requests <= store.requests_on() <= sim.stats.requests + 8
        # The same through walk_many, which has no budget of its own.
        sim.reset_quota()
        sim.reset_stats()
        sim.config.daily_quota = 10
        with pytest.raises(WalkStopped):
            async for _ in client.walk_many([f"dw{i}_n400" for i in range(8)]):
                pass
        assert sim.stats.requests - 11 <= QUOTA_STREAK + len(RATE_PROBE_WAITS)


async def test_after_a_wait_past_midnight_no_request_carries_a_stale_token(
    sim: Simulator, tmp_path: Path
) -> None:
    # Nine hours of waiting: far beyond the token's two-hour life.
    clock = support.FakeTime(dt.datetime(2026, 3, 1, 15, 0, tzinfo=dt.UTC).timestamp())
    sim.config.clock = clock
    names = [f"mw{i}_n150" for i in range(8)]  # two pages each, 16 requests over 4 days
    async with make_client(sim) as client:
        # The token's clock is monotonic; in this test it moves with the fake wall clock.
        client._auth._clock = clock
        store = Store(tmp_path / "h.db", fields=client.fields, max_count=100, clock=clock)

        first_day = int(clock.now // 86_400)

        async def wait(seconds: float) -> None:
            # The hours pass once the requests that got through the gate before the budget ran
            # out have arrived, as they would: those take milliseconds, the wait takes hours.
            # Counted from the budget (five a day), not from the harvester's progress: a request
            # is spent before its booking is written, and counted in progress only after, so a
            # slow writer thread would let the fake hours pass while it is still on its way.
            # A wait runs from its day until a minute past midnight, in one-minute slices: the
            # slice that starts at midnight still belongs to the day before.
            day = int((clock.now - 60) // 86_400) - first_day
            spent_by_now = min(5 * (day + 1), len(names) * 2)
            for _ in range(6000):
                if sim.stats.requests >= spent_by_now:
                    break
                await asyncio.sleep(0.005)
            await clock.sleep(seconds)

        harvester = Harvester(
            client, store, daily_quota=5, on_quota="wait", clock=clock, sleep=wait
        )
        outcomes = [o async for o in harvester.run(names)]
        store.close()
    assert {o.state for o in outcomes} == {UserState.DONE}
    assert clock.now >= dt.datetime(2026, 3, 4, 0, 1, tzinfo=dt.UTC).timestamp()
    assert sim.stats.by_status[401] == 0
    assert sim.stats.requests == 16
    assert sim.stats.tokens_issued == 4  # one per day: each taken after the wait, not before


async def test_a_stop_wakes_idle_workers_and_cuts_retry_after_short(
    sim: Simulator, tmp_path: Path
) -> None:
    sim.config.retry_after = 600  # a server that asks for ten minutes
    sim.script("waiter_n50", [Fault.RATE_LIMIT])

    async def names() -> AsyncIterator[str]:
        yield "waiter_n50"
        yield "quick_n50"
        await asyncio.sleep(3600)  # the input stays open: the other workers sit idle
        yield "never_n50"

    async with make_client(sim, concurrency=4) as client:
        store = Store(tmp_path / "h.db", fields=client.fields, max_count=client.max_count)
        harvester = Harvester(client, store)

        async def consume() -> list[UserOutcome]:
            return [o async for o in harvester.run(names())]

        task = asyncio.create_task(consume())
        for _ in range(200):
            if sim.stats.requests >= 2:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        started = time.monotonic()
        harvester.stop()
        with pytest.raises(HarvestStopped) as stopped:
            await task
        assert time.monotonic() - started < 2
        store.close()
    assert stopped.value.reason is StopReason.REQUESTED
    assert sim.stats.by_user["waiter_n50"] == 1  # the 429, and no retry after the stop
    assert sim.stats.by_user["never_n50"] == 0
    with Store(tmp_path / "h.db", create=False) as store:
        record = store.user("waiter_n50")
        assert record is not None
        assert record.state is UserState.PENDING  # resumable, not failed


async def test_two_harvests_on_one_client_book_exactly_their_own_requests(
    sim: Simulator, tmp_path: Path
) -> None:
    first = [f"one{i}_n250" for i in range(12)]
    second = [f"two{i}_n150" for i in range(12)]
    sim.config.latency = 0.002
    async with make_client(sim) as client:
        await asyncio.gather(
            run(client, first, tmp_path / "a.db", daily_quota=10_000),
            run(client, second, tmp_path / "b.db", daily_quota=10_000),
        )
    for names, db in ((first, "a.db"), (second, "b.db")):
        sent = sum(sim.stats.by_user[n] for n in names)
        assert sent == sum(sim.pages_needed(n) for n in names)
        with Store(tmp_path / db, create=False) as store:
            assert store.requests_on() == sent
            assert sum(store.user(n).requests for n in names) == sent  # type: ignore[union-attr]


async def test_two_harvests_on_one_client_each_keep_their_own_budget(
    sim: Simulator, tmp_path: Path
) -> None:
    async with make_client(sim, concurrency=4) as client:
        results = await asyncio.gather(
            run(client, [f"ba{i}_n250" for i in range(6)], tmp_path / "a.db", daily_quota=7),
            run(client, [f"bb{i}_n250" for i in range(6)], tmp_path / "b.db", daily_quota=11),
            return_exceptions=True,
        )
    assert all(isinstance(r, HarvestStopped) for r in results)
    assert sum(n for u, n in sim.stats.by_user.items() if u.startswith("ba")) == 7
    assert sum(n for u, n in sim.stats.by_user.items() if u.startswith("bb")) == 11
    with Store(tmp_path / "a.db", create=False) as a, Store(tmp_path / "b.db", create=False) as b:
        assert (a.requests_on(), b.requests_on()) == (7, 11)


async def test_a_request_booked_as_the_run_stops_is_held_back_and_given_back() -> None:
    clock = support.FakeClock()
    quota = DailyQuota(100, clock=clock)
    refunds: list[tuple[str, str]] = []

    async def book(username: str) -> None:
        gate.stop()  # the stop lands while the booking commits

    async def refund(username: str, day: str) -> None:
        refunds.append((username, day))

    gate = Gate(quota, clock=clock, book=book, refund=refund)
    await gate.admit("a")
    with pytest.raises(WalkStopped):
        await gate.take("a")
    assert refunds == [("a", utc_day(clock.now))]
    assert (quota.spent, gate.sent) == (0, 0)


def test_a_prepaid_request_never_sent_is_handed_back_once_its_booking_is_known() -> None:
    clock = support.FakeClock()
    quota = DailyQuota(100, clock=clock)
    gate = Gate(quota, clock=clock)
    assert gate.prepay("a")
    assert gate.prepay("b")
    gate.prepaid_booked("a")  # b's commit failed, or was never awaited: it may be booked
    gate.release("a")
    gate.release("b")
    assert gate.unsent_bookings() == {utc_day(clock.now): {"a": 1}}
    assert quota.spent == 1  # a's budget back; b's stays spent, like its booking
    assert gate.unsent_bookings() == {}


async def test_a_request_prepaid_yesterday_is_given_back_to_yesterday_and_booked_today() -> None:
    clock = support.FakeClock(support.MIDNIGHT - 1)
    yesterday = utc_day(clock.now)
    quota = DailyQuota(100, clock=clock)
    booked: list[tuple[str, str]] = []

    async def book(username: str) -> None:
        booked.append((username, utc_day(clock.now)))

    gate = Gate(quota, clock=clock, book=book)
    assert gate.prepay("a")
    gate.prepaid_booked("a")
    clock.now = support.MIDNIGHT + 3600
    await gate.admit("a")
    assert await gate.take("a")
    assert booked == [("a", utc_day(clock.now))]
    assert gate.unsent_bookings() == {yesterday: {"a": 1}}
