"""The progress line's request rate counts requests sent, which the limiter bounds (issue 23)."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import make_client

from tiktok_repost_async import Store
from tiktok_repost_async.cli._console import make_console
from tiktok_repost_async.cli._progress import Display
from tiktok_repost_async.harvester import Harvester, HarvestProgress
from tiktok_repost_async.simulator import Simulator


def test_the_rate_is_of_requests_sent_not_of_bookings(monkeypatch: pytest.MonkeyPatch) -> None:
    # At the start of a run every worker books its next request with its page, ahead of its
    # turn at the limiter: bookings ran ahead of sends, and the line showed 13 req/s under 10.
    now = [100.0]
    monkeypatch.setattr("tiktok_repost_async.cli._progress.time.monotonic", lambda: now[0])
    progress = HarvestProgress(quota_limit=1000)
    display = Display(progress, make_console(0), input_lines=lambda: None, log_interval=10.0)
    assert display.rate() is None
    now[0] += 2.0
    progress.requests, progress.sent = 28, 20
    assert display.rate() == pytest.approx(10.0)


async def test_a_harvest_counts_every_request_sent_once(tmp_path: Path) -> None:
    names = [f"sent{i}_n250" for i in range(12)]
    async with Simulator(latency=0.01) as sim, make_client(sim, concurrency=4) as client:
        with Store(tmp_path / "h.db", fields=client.fields, max_count=100) as store:
            harvester = Harvester(client, store)
            async for _ in harvester.run(names):
                pass
    assert harvester.progress.sent == sim.stats.requests == 36
