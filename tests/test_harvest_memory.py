"""Streaming usernames: the harvest's memory does not grow with the number of names."""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from tiktok_repost_async import RepostClient, Store
from tiktok_repost_async.harvester import Harvester
from tiktok_repost_async.simulator import TEST_CLIENT_KEY, TEST_CLIENT_SECRET, Simulator


def names(total: int) -> Iterator[str]:
    # Mostly users that an earlier run finished, with a fresh one every hundred names, plus
    # repeats and bad lines: each path of the reader runs at scale.
    for i in range(total):
        if i % 100 == 0:
            yield f"empty_fresh{i}"
        elif i % 250 == 0:
            yield "  "
        elif i % 333 == 0:
            yield f"old{i - 1}"
        else:
            yield f"old{i}"


def finished_store(db: Path, total: int, fields: tuple[str, ...]) -> None:
    with Store(db, fields=fields, max_count=100) as store:
        for start in range(0, total, 5000):
            store.add_users(f"old{i}" for i in range(start, min(total, start + 5000)))
        # Marking them done through finish_user would take a transaction each; this is setup.
        with store._transaction() as conn:
            conn.execute("UPDATE users SET state = 'done'")


async def peak_during_harvest(sim: Simulator, db: Path, total: int) -> tuple[int, int]:
    async with RepostClient(
        TEST_CLIENT_KEY,
        TEST_CLIENT_SECRET,
        base_url=sim.base_url,
        requests_per_second=100_000,
        concurrency=8,
    ) as client:
        finished_store(db, total, client.fields)
        with Store(db, fields=client.fields, max_count=100) as store:
            harvester = Harvester(client, store, daily_quota=10**6)
            tracemalloc.start()
            try:
                done = 0
                async for _ in harvester.run(names(total)):
                    done += 1
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
    assert done == total // 100
    assert harvester.progress.read == total
    return peak, done


@pytest.mark.slow
async def test_a_hundred_thousand_names_take_no_more_memory_than_ten_thousand(
    tmp_path: Path,
) -> None:
    async with Simulator() as sim:
        small, _ = await peak_during_harvest(sim, tmp_path / "small.db", 10_000)
        large, _ = await peak_during_harvest(sim, tmp_path / "large.db", 100_000)
    # Ten times the names: were anything kept per name, 90,000 more would show as megabytes.
    assert large - small < 1_000_000, (small, large)
