"""Many users at once into the store: states, bad input, quota stop and wait, resume, faults."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest
from support import FakeTime, make_client

from tiktok_repost_async import RepostClient, RetryPolicy, Store, UserState
from tiktok_repost_async.engine import QUOTA_STREAK, RATE_PROBE_WAITS
from tiktok_repost_async.gate import WAIT_SLICE
from tiktok_repost_async.harvester import Harvester, HarvestStopped, UserOutcome, harvest
from tiktok_repost_async.simulator import Fault, Simulator

MIXED = [
    "alice_n250",
    "bob_n99",
    "empty_one",
    "missing_person",
    "private_person",
    "stall_n500",
    "short_n400",
    "hugeid_n150",
    "carol",
    "dave",
]
STATES = {
    "stall_n500": UserState.INCOMPLETE,
    "missing_person": UserState.NOT_FOUND,
    "private_person": UserState.UNAVAILABLE,
}


def stored_ids(db: Path) -> dict[str, list[int]]:
    with Store(db, create=False) as store:
        out: dict[str, list[int]] = {}
        for user, video_id, data in store.iter_videos():
            assert msgspec.json.decode(data)["id"] == int(video_id)
            out.setdefault(user, []).append(int(video_id))
        return out


def truth(sim: Simulator, names: list[str]) -> dict[str, list[int]]:
    out = {name: [v["id"] for v in sim.ground_truth(name)] for name in names}
    return {name: ids for name, ids in out.items() if ids}


async def run(
    client: RepostClient, names: object, db: Path, **options: object
) -> list[UserOutcome]:
    return [o async for o in harvest(client, names, store=db, **options)]  # type: ignore[arg-type]


async def test_every_user_ends_in_one_state_with_exactly_its_videos(
    sim: Simulator, tmp_path: Path
) -> None:
    db = tmp_path / "h.db"
    async with make_client(sim) as client:
        outcomes = await run(client, MIXED, db)
    assert sorted(o.username for o in outcomes) == sorted(MIXED)
    for outcome in outcomes:
        assert outcome.state == STATES.get(outcome.username, UserState.DONE), outcome
    assert stored_ids(db) == truth(sim, MIXED)
    # Not one request beyond the minimum a perfect client needs.
    assert sim.stats.requests == sum(sim.pages_needed(n, 100) for n in MIXED)
    assert sum(o.requests for o in outcomes) == sim.stats.requests
    with Store(db, create=False) as store:
        assert store.requests_on() == sim.stats.requests
        assert store.user("missing_person").error  # type: ignore[union-attr]


async def test_bad_lines_are_skipped_and_counted_and_duplicates_fetched_once(
    sim: Simulator, tmp_path: Path
) -> None:
    db = tmp_path / "h.db"
    lines = ["alice_n5", "", "   ", " @alice_n5 ", "bo b", "nul\x00name", "alice_n5", "@bob_n3"]
    async with make_client(sim) as client:
        harvester = Harvester(client, Store(db, fields=client.fields, max_count=100))
        outcomes = [o async for o in harvester.run(lines)]
        harvester.store.close()
    assert sorted(o.username for o in outcomes) == ["alice_n5", "bob_n3"]
    assert harvester.progress.invalid == 4
    assert harvester.progress.duplicates == 2
    assert sim.stats.by_user["alice_n5"] == 1
    with Store(db, create=False) as store:
        counts = store.skipped_counts()
    assert sum(counts.values()) == 4
    assert counts["blank line"] == 2


async def test_async_iterable_input(sim: Simulator, tmp_path: Path) -> None:
    async def names() -> AsyncIterator[str]:
        for i in range(30):
            yield f"user{i}_n{i}"
            await asyncio.sleep(0)

    async with make_client(sim) as client:
        outcomes = await run(client, names(), tmp_path / "h.db")
    assert len(outcomes) == 30
    assert sum(o.videos for o in outcomes) == sum(range(30))


async def test_quota_stop_then_resume_next_day_loses_and_repeats_nothing(
    sim: Simulator, tmp_path: Path
) -> None:
    db = tmp_path / "h.db"
    names = [f"q{i}_n250" for i in range(10)]  # 3 pages each: 30 requests in all
    clock = FakeTime(dt.datetime(2026, 3, 1, 15, tzinfo=dt.UTC).timestamp())
    async with make_client(sim) as client:
        with pytest.raises(HarvestStopped, match="quota"):
            await run(client, names, db, daily_quota=13, clock=clock)
        assert sim.stats.requests == 13
        with Store(db, create=False) as store:
            assert store.requests_on("2026-03-01") == 13
        # The same day again: the ledger remembers, so not one request goes out.
        with pytest.raises(HarvestStopped):
            await run(client, names, db, daily_quota=13, clock=clock)
        assert sim.stats.requests == 13
        clock.now += 86_400
        with pytest.raises(HarvestStopped):
            await run(client, names, db, daily_quota=13, clock=clock)
        clock.now += 86_400
        outcomes = await run(client, names, db, daily_quota=13, clock=clock)
        assert {o.state for o in outcomes} == {UserState.DONE}
    assert stored_ids(db) == truth(sim, names)
    # Every page fetched once: a stop never wastes a request, a resume never repeats one.
    assert sim.stats.requests == 30
    assert max(sim.stats.by_cursor.values()) == 1


async def test_quota_wait_sleeps_until_after_utc_midnight_and_carries_on(
    sim: Simulator, tmp_path: Path
) -> None:
    clock = FakeTime(dt.datetime(2026, 3, 1, 23, 0, tzinfo=dt.UTC).timestamp())
    names = [f"w{i}_n100" for i in range(8)]
    async with make_client(sim) as client:
        outcomes = await run(
            client,
            names,
            tmp_path / "h.db",
            daily_quota=5,
            on_quota="wait",
            clock=clock,
            sleep=clock.sleep,
        )
    assert len(outcomes) == 8
    midnight = dt.datetime(2026, 3, 2, tzinfo=dt.UTC).timestamp()
    # It waited past midnight plus the margin: an hour in slices of a minute, no request between.
    assert midnight + 60 <= clock.now < midnight + 120
    assert sim.stats.requests == 8


async def test_a_quota_wait_goes_on_within_a_slice_after_a_suspend(
    sim: Simulator, tmp_path: Path
) -> None:
    # A laptop suspended at 23:10 for three hours: a sleep's own clock stands still meanwhile,
    # so a sleep to 00:01 would wake at about 03:01 wall time plus what was left of it. The
    # wait sleeps in slices and reads the wall clock after each: it goes on at once.
    clock = FakeTime(dt.datetime(2026, 3, 1, 23, 0, tzinfo=dt.UTC).timestamp())
    midnight = dt.datetime(2026, 3, 2, tzinfo=dt.UTC).timestamp()
    slept: list[tuple[float, float]] = []

    async def sleep(seconds: float) -> None:
        slept.append((clock.now, seconds))
        await clock.sleep(seconds)
        if not any(at >= midnight for at, _ in slept) and clock.now > midnight - 50 * 60:
            clock.now += 3 * 3600  # the lid closes during this slice

    names = [f"sus{i}_n100" for i in range(8)]
    async with make_client(sim) as client:
        outcomes = await run(
            client, names, tmp_path / "h.db", daily_quota=5, on_quota="wait", clock=clock,
            sleep=sleep,
        )  # fmt: skip
    assert len(outcomes) == 8
    assert sim.stats.requests == 8
    # Every sleep of the wait was a slice of a minute at most, none after the wake-up.
    assert max(seconds for _, seconds in slept) <= WAIT_SLICE
    assert all(at < midnight for at, _ in slept)


async def test_api_daily_quota_answer_stops_cleanly(sim: Simulator, tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    names = [f"api{i}_n150" for i in range(6)]
    sim.config.daily_quota = 4  # the collaborators already spent the rest of the shared quota
    retry = RetryPolicy(base_delay=0)
    async with make_client(sim, concurrency=1, retry=retry, clock=FakeTime()) as client:
        with pytest.raises(HarvestStopped):
            await run(client, names, db)
        sent = sim.stats.requests
        # Once the API's quota is back, the same command carries on where it stopped.
        sim.reset_quota()
        sim.config.daily_quota = None
        await run(client, names, db)
    assert stored_ids(db) == truth(sim, names)
    # Four pages, then a streak of 429s without Retry-After that persists through every probe
    # of the rate-limit hold: the daily quota.
    assert sent == 4 + QUOTA_STREAK + len(RATE_PROBE_WAITS)


async def test_one_users_faults_never_stop_the_others(sim: Simulator, tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    names = ["fine1_n120", "broken_n120", "fine2_n120"]
    sim.script("broken_n120", [Fault.SERVER_ERROR] * 3)
    policy = RetryPolicy(max_attempts=3, base_delay=0)
    async with make_client(sim, retry=policy) as client:
        outcomes = {o.username: o for o in await run(client, names, db)}
        assert outcomes["broken_n120"].state is UserState.FAILED
        assert "ServerError" in (outcomes["broken_n120"].error or "")
        assert outcomes["fine1_n120"].state is UserState.DONE
        # Without retrying failed users, a rerun leaves them alone.
        again = await run(client, names, db, retry_failed=False)
        assert again == []
        again = await run(client, names, db)
    assert [o.username for o in again] == ["broken_n120"]
    assert again[0].state is UserState.DONE
    assert stored_ids(db) == truth(sim, names)


async def test_store_made_for_other_fields_is_refused(sim: Simulator, tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    async with make_client(sim) as client:
        await run(client, ["a_n1"], db)
    async with make_client(sim, fields="id,like_count") as client:
        with pytest.raises(ValueError, match="fields"):
            await run(client, ["a_n1"], db)


async def test_max_pages_caps_each_user(sim: Simulator, tmp_path: Path) -> None:
    async with make_client(sim, max_count=50) as client:
        outcomes = await run(client, ["cap_n500"], tmp_path / "h.db", max_pages=2)
    assert outcomes[0].pages == 2
    assert outcomes[0].videos == 100
    assert sim.stats.requests == 2


async def test_two_harvests_on_one_store_are_refused(sim: Simulator, tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    sim.config.latency = 0.05
    async with make_client(sim) as client:
        first = asyncio.create_task(run(client, [f"slow{i}_n300" for i in range(4)], db))
        await asyncio.sleep(0.02)
        with pytest.raises(Exception, match="another"):
            await run(client, ["x_n1"], db)
        await first
