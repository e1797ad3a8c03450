"""Fixtures shared by the test modules: a simulator on a loopback port."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tiktok_repost_async.simulator import Simulator


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    """Serve a default simulator on a free loopback port for one test (a module may override)."""
    async with Simulator() as simulator:
        yield simulator
