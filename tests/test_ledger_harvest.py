"""Harvests on several stores share one organisation's quota through a shared ledger."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from pathlib import Path

import msgspec
import pytest
from support import FakeTime, make_client

from tiktok_repost_async import (
    Harvester,
    HarvestStopped,
    SQLiteLedger,
    Store,
    StoreLedger,
    UserState,
    harvest,
    open_ledger,
    refresh,
)
from tiktok_repost_async.cli.status import needs_a_person, status_report
from tiktok_repost_async.ledger import Ledger, ledger_source
from tiktok_repost_async.simulator import Simulator

QUOTA = 60


def stored(db: Path) -> dict[str, list[int]]:
    with Store(db, create=False) as store:
        out: dict[str, list[int]] = {}
        for user, _, data in store.iter_videos():
            out.setdefault(user, []).append(msgspec.json.decode(data)["id"])
        return out


async def harvest_into(
    sim: Simulator, db: Path, names: list[str], ledger: Ledger, **options: object
) -> tuple[Harvester, BaseException | None]:
    async with make_client(sim) as client:
        store = Store(db, fields=client.fields, max_count=client.max_count)
        harvester = Harvester(client, store, ledger=ledger, **options)  # type: ignore[arg-type]
        try:
            async for _ in harvester.run(names):
                pass
        except HarvestStopped as stop:
            return harvester, stop
        finally:
            store.close()
    return harvester, None


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_spec(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Give a test a new shared ledger of each kind."""
    if request.param == "sqlite":
        return str(tmp_path / "ledger.db")
    url: str = request.getfixturevalue("postgres_url")
    return url


async def test_two_stores_on_one_ledger_send_at_most_the_quota_together(
    sim: Simulator, tmp_path: Path, ledger_spec: str
) -> None:
    # Two harvests at once, each into its own store, each believing the day is 60 requests
    # (and each needing 66):
    # with one ledger they are 60 together, and each stops on the organisation's quota.
    a, b = tmp_path / "a.db", tmp_path / "b.db"
    with (
        open_ledger(ledger_spec, source=ledger_source(a)) as for_a,
        open_ledger(ledger_spec, source=ledger_source(b)) as for_b,
    ):
        (_, stop_a), (_, stop_b) = await asyncio.gather(
            harvest_into(sim, a, [f"a{i}_n1100" for i in range(6)], for_a, daily_quota=QUOTA),
            harvest_into(sim, b, [f"b{i}_n1100" for i in range(6)], for_b, daily_quota=QUOTA),
        )
        day = dt.datetime.now(dt.UTC).date().isoformat()
        spent = for_a.spent(day)
        by_source = for_a.breakdown(day)
    assert sim.stats.requests <= QUOTA
    for stop in (stop_a, stop_b):
        assert isinstance(stop, HarvestStopped)
        assert stop.reason == "quota"
        assert "the organisation's shared daily quota is spent" in str(stop.detail)
    # Every request sent was booked first, in the shared ledger and in its own store's.
    with Store(a, create=False) as store_a, Store(b, create=False) as store_b:
        own = {
            ledger_source(a): store_a.requests_on(day),
            ledger_source(b): store_b.requests_on(day),
        }
    assert spent == sum(own.values()) == sim.stats.requests == QUOTA
    assert by_source == {source: n for source, n in own.items() if n}
    # What was stored is what the API sent: each store's pages are whole and exact.
    for db in (a, b):
        for user, ids in stored(db).items():
            assert ids == [v["id"] for v in sim.ground_truth(user)][: len(ids)]


async def test_a_refusal_mid_run_waits_for_midnight_with_on_quota_wait(
    sim: Simulator, tmp_path: Path
) -> None:
    # A collaborator spends the rest of the day while this harvest runs: the ledger refuses
    # its next booking, and with --on-quota wait it sleeps to the reset and finishes.
    clock = FakeTime(dt.datetime(2026, 3, 1, 22, 0, tzinfo=dt.UTC).timestamp())
    path = tmp_path / "ledger.db"
    names = ["w1_n2000"]  # 20 pages
    with SQLiteLedger(path, source="host:/mine.db") as mine:
        async with make_client(sim, concurrency=1) as client:
            store = Store(tmp_path / "mine.db", fields=client.fields, max_count=100, clock=clock)
            harvester = Harvester(
                client,
                store,
                ledger=mine,
                daily_quota=QUOTA,
                on_quota="wait",
                clock=clock,
                sleep=clock.sleep,
            )

            async def collaborator() -> None:
                # The harvest has no event for "booked"; its counter is polled.
                while harvester.progress.requests < 3:  # noqa: ASYNC110
                    await asyncio.sleep(0.001)
                with SQLiteLedger(path, source="host:/theirs.db") as theirs:
                    left = QUOTA - theirs.spent("2026-03-01")
                    assert theirs.book(left, day="2026-03-01", limit=QUOTA)

            other = asyncio.create_task(collaborator())
            outcomes = [o async for o in harvester.run(names)]
            await other
            store.close()
        first, second = mine.spent("2026-03-01"), mine.spent("2026-03-02")
        by_source = mine.breakdown("2026-03-01")
    assert [o.state for o in outcomes] == [UserState.DONE]
    assert first == QUOTA
    mine_first = by_source["host:/mine.db"]
    # It stopped sending at the refusal, waited past midnight, and sent the rest on the 2nd.
    assert mine_first + second == sim.stats.requests == 20
    assert second > 0
    assert clock.now >= dt.datetime(2026, 3, 2, 0, 1, tzinfo=dt.UTC).timestamp()
    assert stored(tmp_path / "mine.db")["w1_n2000"] == [
        v["id"] for v in sim.ground_truth("w1_n2000")
    ]


async def test_the_day_s_count_follows_what_collaborators_spend_meanwhile(
    sim: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A collaborator books 200 requests while this harvest runs: its budget and progress line
    # count them (read from the ledger as it books), not only the day as it was at the start.
    import tiktok_repost_async.harvester

    monkeypatch.setattr(tiktok_repost_async.harvester, "ORGANISATION_READ_S", 0.0)
    path = tmp_path / "ledger.db"
    day = dt.datetime.now(dt.UTC).date().isoformat()
    with SQLiteLedger(path, source="host:/mine.db") as mine:
        async with make_client(sim, concurrency=1) as client:
            store = Store(tmp_path / "mine.db", fields=client.fields, max_count=100)
            harvester = Harvester(client, store, ledger=mine, daily_quota=1000)

            async def collaborator() -> None:
                while harvester.progress.requests < 3:  # noqa: ASYNC110
                    await asyncio.sleep(0.001)
                with SQLiteLedger(path, source="host:/theirs.db") as theirs:
                    assert theirs.book(200, day=day, limit=1000)

            other = asyncio.create_task(collaborator())
            outcomes = [o async for o in harvester.run(["f1_n2000"])]
            await other
            store.close()
        spent = mine.spent(day)
    assert [o.state for o in outcomes] == [UserState.DONE]
    assert sim.stats.requests == 20
    assert spent == 220
    assert harvester.progress.quota_spent == harvester.quota.spent == spent
    assert harvester.quota.remaining == 1000 - 220


async def test_a_full_shared_day_stops_before_any_request(sim: Simulator, tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    with SQLiteLedger(path, source="host:/theirs.db") as theirs:
        day = dt.datetime.now(dt.UTC).date().isoformat()
        assert theirs.book(QUOTA, day=day, limit=QUOTA)
    with SQLiteLedger(path, source="host:/mine.db") as mine:
        _, stop = await harvest_into(sim, tmp_path / "mine.db", ["x_n300"], mine, daily_quota=QUOTA)
    assert isinstance(stop, HarvestStopped)
    assert "shared ledger" in str(stop.detail)
    assert sim.stats.requests == 0


async def test_the_store_s_own_ledger_changes_nothing(sim: Simulator, tmp_path: Path) -> None:
    # Passing the store's own ledger is the same as passing none: the store keeps the count.
    async with make_client(sim) as client:
        with Store(tmp_path / "s.db", fields=client.fields, max_count=100) as store:
            harvester = Harvester(client, store, ledger=StoreLedger(store), daily_quota=5)
            assert harvester.ledger is None
            with pytest.raises(HarvestStopped, match="quota"):
                async for _ in harvester.run(["y_n1000"]):
                    pass
            assert store.requests_on() == sim.stats.requests == 5


async def test_a_ledger_out_of_reach_stops_the_run_with_nothing_sent_unbooked(
    sim: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another process holds the ledger file's write lock for longer than a booking waits: the
    # booking fails, no request goes out without one, and the run stops resumable saying why.
    import sqlite3

    import tiktok_repost_async.ledger

    monkeypatch.setattr(tiktok_repost_async.ledger, "_SQLITE_BUSY_S", 0.05)
    monkeypatch.setattr(tiktok_repost_async.ledger, "_SQLITE_GIVE_UP_S", 0.2)
    path = tmp_path / "ledger.db"
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    with SQLiteLedger(path, source="host:/mine.db") as mine:
        async with make_client(sim, concurrency=2) as client:
            store = Store(tmp_path / "mine.db", fields=client.fields, max_count=100)
            harvester = Harvester(client, store, ledger=mine, daily_quota=QUOTA)

            async def lock_the_ledger() -> None:
                while harvester.progress.requests < 3:  # noqa: ASYNC110
                    await asyncio.sleep(0.001)
                holder.execute("BEGIN IMMEDIATE")

            locker = asyncio.create_task(lock_the_ledger())
            with pytest.raises(HarvestStopped) as stopped:
                async for _ in harvester.run(["z1_n5000", "z2_n5000"]):
                    pass
            await locker
            holder.execute("ROLLBACK")
            holder.close()
            spent_by_store = store.requests_on()
            # A monitoring job's `status --check` says so until a run gets through.
            problems = needs_a_person(status_report(store, daily_quota=QUOTA, limit=None))
            store.close()
        spent = mine.spent(dt.datetime.now(dt.UTC).date().isoformat())
    assert stopped.value.reason == "ledger"
    assert "stayed busy" in str(stopped.value)
    assert [p for p in problems if "stopped: ledger" in p] == [
        "run 1 stopped: ledger: the shared ledger could not book a request, so nothing more was"
        " sent"
    ]
    assert sim.stats.requests == spent == spent_by_store
    assert spent >= 3


async def test_a_refresh_books_in_the_shared_ledger_and_stops_on_the_organisation_s_day(
    sim: Simulator, tmp_path: Path, ledger_spec: str
) -> None:
    # A collaborator's store spent all but 2 of the organisation's day; a refresh of this store
    # (one compliance task: create, poll, download) sends 2 calls and stops on the shared quota.
    db = tmp_path / "mine.db"
    names = ["r1_n300", "r2_n300"]
    async with make_client(sim) as client:
        with Store(db, fields=client.fields, max_count=client.max_count) as store:
            async for _ in harvest(client, names, store=store, daily_quota=10**6):
                pass
    own_spent = sim.stats.quota_used
    sim.config.epoch = 1
    day = dt.datetime.now(dt.UTC).date().isoformat()
    with (
        open_ledger(ledger_spec, source=ledger_source(tmp_path / "theirs.db")) as theirs,
        open_ledger(ledger_spec, source=ledger_source(db)) as ours,
    ):
        assert theirs.book(QUOTA - 2, day=day, limit=QUOTA)
        async with make_client(sim) as client:
            with Store(db, create=False) as store:
                # The poll's waits pass on a fake clock that starts from the wall clock's day.
                now = FakeTime(start=time.time())
                report = await refresh(
                    client, store, daily_quota=QUOTA, ledger=ours, clock=now, sleep=now.sleep
                )
                assert store.requests_on(day) == own_spent + 2  # the store's own count too
        assert report.outcome == "stopped: quota"
        assert report.requests == 2 == sim.stats.compliance_requests
        assert ours.spent(day) == QUOTA  # never a call past the organisation's day
        assert ours.breakdown(day)[ledger_source(db)] == 2
