"""Helpers shared by the test modules: a client of the simulator, a clock that moves on sleep."""

from __future__ import annotations

import asyncio
from typing import Any

from tiktok_repost_async import RepostClient
from tiktok_repost_async.simulator import TEST_CLIENT_KEY, TEST_CLIENT_SECRET, Simulator


def make_client(sim: Simulator, **kwargs: Any) -> RepostClient:
    """Return a client of ``sim`` that the limiter does not slow; keyword arguments override."""
    options: dict[str, Any] = {
        "base_url": sim.base_url,
        "requests_per_second": 10_000.0,
        "concurrency": 4,
    }
    options.update(kwargs)
    return RepostClient(TEST_CLIENT_KEY, TEST_CLIENT_SECRET, **options)


#: A UTC midnight (2023-11-15 00:00:00): tests about the quota day start from it.
MIDNIGHT = 1_700_006_400


class FakeClock:
    """A clock that moves only when a test says so."""

    def __init__(self, now: float = MIDNIGHT + 12 * 3600) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class FakeTime:
    """A wall clock that moves only when the code under test sleeps."""

    def __init__(self, start: float) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        """Record the wait and move the clock by it, yielding to the loop once."""
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


def other_tasks() -> set[asyncio.Task[object]]:
    """Return the tasks running beside the current one, the simulator's own handlers aside."""
    # The simulator's handlers of kept-alive connections are the server's, not the client's.
    return {
        t
        for t in asyncio.all_tasks()
        if t is not asyncio.current_task()
        and not t.get_coro().__qualname__.startswith("RequestHandler")  # type: ignore[union-attr]
    }


async def settle(before: set[asyncio.Task[object]]) -> set[asyncio.Task[object]]:
    """Let the loop run a few rounds; return the tasks still alive that were not there before."""
    for _ in range(20):
        await asyncio.sleep(0)
    return {t for t in other_tasks() - before if not t.done()}
