"""The harvest on the engine: leaving early never loses the ledger, the lock or an error."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tiktok_repost_async import RepostClient, Store, UserState
from tiktok_repost_async.harvester import harvest
from tiktok_repost_async.simulator import TEST_CLIENT_KEY, TEST_CLIENT_SECRET, Simulator

NAMES = [f"early{i}_n450" for i in range(16)]


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator(latency=0.003, jitter=0.003) as simulator:
        yield simulator


def make_client(sim: Simulator) -> RepostClient:
    return RepostClient(
        TEST_CLIENT_KEY,
        TEST_CLIENT_SECRET,
        base_url=sim.base_url,
        requests_per_second=10_000,
        concurrency=6,
    )


class LoopErrors:
    """Record what the event loop would log: 'Task exception was never retrieved' and kin."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []

    def __enter__(self) -> LoopErrors:
        self.loop = asyncio.get_running_loop()
        self.previous = self.loop.get_exception_handler()
        self.loop.set_exception_handler(lambda _loop, context: self.seen.append(context))
        return self

    def __exit__(self, *exc: object) -> None:
        gc.collect()
        self.loop.set_exception_handler(self.previous)


def lock_is_free(db: Path) -> bool:
    with Store(db, create=False) as store:
        try:
            store.acquire_run_lock()
        except Exception:
            return False
        store.release_run_lock()
        return True


async def test_breaking_out_of_a_harvest_loses_nothing_and_logs_nothing(
    sim: Simulator, tmp_path: Path
) -> None:
    db = tmp_path / "h.db"
    with LoopErrors() as errors:
        async with make_client(sim) as client:
            for _ in range(3):
                # No aclosing: the generator is closed when it is dropped, store and all.
                async for _outcome in harvest(client, NAMES, store=db):
                    break
                gc.collect()
                for _ in range(50):
                    await asyncio.sleep(0.002)
                assert lock_is_free(db)
                with Store(db, create=False) as store:
                    # Every request that reached the API is in the ledger.
                    assert store.requests_on() >= sim.stats.requests
            outcomes = [o async for o in harvest(client, NAMES, store=db)]
    assert errors.seen == []
    assert {o.state for o in outcomes} <= {UserState.DONE}
    with Store(db, create=False) as store:
        assert store.requests_on() >= sim.stats.requests
        assert store.state_counts()[UserState.DONE] == len(NAMES)


async def test_a_harvest_kept_alive_after_aclose_fetches_nothing_and_holds_no_lock(
    sim: Simulator, tmp_path: Path
) -> None:
    db = tmp_path / "h.db"
    async with make_client(sim) as client:
        run = harvest(client, NAMES, store=db)
        await anext(run)
        await run.aclose()
        sent = sim.stats.requests
        await asyncio.sleep(0.1)
        assert sim.stats.requests == sent
        assert lock_is_free(db)
        with Store(db, create=False) as store:
            assert store.requests_on() >= sent
        del run
