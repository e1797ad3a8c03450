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


def test_the_first_line_shows_the_runs_rate_once_requests_were_sent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Without a terminal the first progress line is logged at the display's first sample, when
    # the run may have sent for seconds: it said "-- req/s" although requests had gone out.
    wall = [1_000.0]
    monkeypatch.setattr("tiktok_repost_async.cli._progress.time.time", lambda: wall[0])
    progress = HarvestProgress(quota_limit=1000, started_at=1_000.0)
    display = Display(progress, make_console(0), input_lines=lambda: None, log_interval=10.0)
    assert display.rate() is None  # nothing sent yet
    assert "-- req/s" in display.text()
    wall[0] += 4.0
    progress.requests = progress.sent = 38
    assert display.rate() == pytest.approx(9.5)
    assert "9.5 req/s" in display.text()
    # The limiter's first burst, a fraction of a second in, is counted over a whole second.
    early = HarvestProgress(quota_limit=1000, started_at=wall[0] - 0.2, sent=10)
    fresh = Display(early, make_console(0), input_lines=lambda: None, log_interval=10.0)
    assert fresh.rate() == pytest.approx(10.0)


async def test_a_harvest_counts_every_request_sent_once(tmp_path: Path) -> None:
    names = [f"sent{i}_n250" for i in range(12)]
    async with Simulator(latency=0.01) as sim, make_client(sim, concurrency=4) as client:
        with Store(tmp_path / "h.db", fields=client.fields, max_count=100) as store:
            harvester = Harvester(client, store)
            async for _ in harvester.run(names):
                pass
    assert harvester.progress.sent == sim.stats.requests == 36
