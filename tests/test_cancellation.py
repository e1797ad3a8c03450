"""Cancelling a walk or a harvest at any await point leaves no task, no connection, no damage."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from contextlib import aclosing
from pathlib import Path

import pytest
from support import other_tasks, settle

from tiktok_repost_async import RepostClient, Store
from tiktok_repost_async.harvester import harvest
from tiktok_repost_async.simulator import TEST_CLIENT_KEY, TEST_CLIENT_SECRET, Simulator

NAMES = [f"cancel{i}_n350" for i in range(12)] + ["missing_c", "empty_c"]


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator(latency=0.005, jitter=0.005) as simulator:
        yield simulator


def make_client(sim: Simulator) -> RepostClient:
    return RepostClient(
        TEST_CLIENT_KEY,
        TEST_CLIENT_SECRET,
        base_url=sim.base_url,
        requests_per_second=10_000,
        concurrency=4,
    )


async def test_cancelling_a_walk_leaves_nothing_running(sim: Simulator) -> None:
    before = other_tasks()
    async with make_client(sim) as client:

        async def walk() -> None:
            async with aclosing(client.reposted_videos("walker_n900")) as videos:
                async for _ in videos:
                    await asyncio.sleep(0)

        for delay in (0.0, 0.002, 0.01, 0.03):
            task = asyncio.create_task(walk())
            await asyncio.sleep(delay)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        connector = client._session.connector  # type: ignore[union-attr]
    assert connector is not None
    assert connector.closed
    assert not await settle(before)


async def test_cancelled_harvests_keep_the_store_consistent_and_resume_exactly(
    sim: Simulator, tmp_path: Path
) -> None:
    db = tmp_path / "h.db"
    rng = random.Random(7)
    before = other_tasks()
    async with make_client(sim) as client:

        async def run() -> None:
            async with aclosing(harvest(client, NAMES, store=db)) as outcomes:
                async for _ in outcomes:
                    pass

        for _ in range(5):
            task = asyncio.create_task(run())
            await asyncio.sleep(rng.uniform(0.0, 0.08))
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert not await settle(before)
            # After each cancel: every user's stored videos are exactly the pages before its
            # saved cursor, and the store's lock is free for the next run.
            with Store(db, create=False) as store:
                for name in NAMES[:12]:
                    record = store.user(name)
                    if record is None:
                        continue
                    assert record.videos == min(record.cursor, 350)
        await run()
    assert not await settle(before)
    with Store(db, create=False) as store:
        stored: dict[str, list[int]] = {}
        for user, video_id, _ in store.iter_videos():
            stored.setdefault(user, []).append(int(video_id))
    truth = {n: [v["id"] for v in sim.ground_truth(n)] for n in NAMES}
    assert stored == {n: ids for n, ids in truth.items() if ids}
