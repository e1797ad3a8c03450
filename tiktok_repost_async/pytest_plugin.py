"""pytest plugin: the `tiktok_simulator` fixture, a running local Research API per test."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tiktok_repost_async.simulator import Simulator


@pytest.fixture
def tiktok_simulator() -> Iterator[Simulator]:
    """Yield a simulator serving on a free loopback port from a background thread."""
    # Imported here: pytest loads this plugin in every session of anyone who installs the package.
    from tiktok_repost_async.simulator import Simulator

    simulator = Simulator()
    with simulator.run_in_thread():
        yield simulator
