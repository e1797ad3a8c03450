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
