"""Fixtures shared by the test modules: a simulator on a loopback port."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from support import FakeClock

from tiktok_repost_async.simulator import Simulator

# A throwaway PostgreSQL server for the tests that need one (`postgres_server`, `postgres_url`).
pytest_plugins = ["pg_server"]


@pytest.fixture
def clock() -> FakeClock:
    """Give a test a clock that moves only when it says so (a module may override)."""
    return FakeClock()


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    """Serve a default simulator on a free loopback port for one test (a module may override)."""
    async with Simulator() as simulator:
        yield simulator


@pytest.fixture
def sim_in_thread() -> Iterator[Simulator]:
    """Serve a default simulator on a thread of its own, for code that runs its own event loop
    (the command line's ``main``, or a real process)."""
    simulator = Simulator()
    with simulator.run_in_thread():
        yield simulator


@pytest.fixture
def short_holds(monkeypatch: pytest.MonkeyPatch) -> None:
    """Shrink the rate-limit hold's probe waits (minutes) to milliseconds, for tests on the real
    clock that meet the API's daily-quota 429 and are not about how long it is probed."""
    import tiktok_repost_async.gate

    monkeypatch.setattr(tiktok_repost_async.gate, "RATE_PROBE_WAITS", (0.01, 0.01, 0.01))
