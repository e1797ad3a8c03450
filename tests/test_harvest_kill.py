"""A harvest killed with SIGKILL at random instants and run again loses and repeats nothing."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tiktok_repost_async import Store
from tiktok_repost_async.simulator import TEST_CLIENT_KEY, TEST_CLIENT_SECRET, Simulator

NAMES = [f"kill{i}_n400" for i in range(40)] + ["missing_x", "private_y", "empty_z"]
CONCURRENCY = 4

CHILD = textwrap.dedent(
    f"""
    import asyncio, sys
    from tiktok_repost_async import RepostClient
    from tiktok_repost_async.harvester import harvest

    async def main() -> None:
        async with RepostClient(
            {TEST_CLIENT_KEY!r}, {TEST_CLIENT_SECRET!r}, base_url=sys.argv[1],
            requests_per_second=10_000, concurrency={CONCURRENCY},
        ) as client:
            async for _ in harvest(client, {NAMES!r}, store=sys.argv[2], daily_quota=10**6):
                pass

    asyncio.run(main())
    """
)


def videos_stored(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with Store(db, create=False) as store:
            return store.video_count()
    except Exception:
        return 0  # the child is still creating it


def requests_booked(db: Path) -> int:
    with Store(db, create=False) as store:
        return store.requests_on()


@pytest.mark.slow
def test_sigkill_at_random_points_then_rerun(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    rng = random.Random(20261125)
    sim = Simulator(latency=0.01)
    kills = 0
    with sim.run_in_thread() as base_url:
        for _ in range(4):
            child = subprocess.Popen([sys.executable, str(script), base_url, str(db)])
            before = videos_stored(db)
            # Kill only once this run has stored something, at a random instant after that.
            deadline = time.monotonic() + 30
            while videos_stored(db) <= before and child.poll() is None:
                assert time.monotonic() < deadline, "the harvest made no progress"
                time.sleep(0.02)
            time.sleep(rng.uniform(0.0, 0.3))
            if child.poll() is None:
                os.kill(child.pid, signal.SIGKILL)
                kills += 1
            child.wait(timeout=30)
            time.sleep(0.05)  # requests still on the wire reach the simulator's count
            # Write-ahead: each request was booked before it left, so the ledger never reads
            # less than the API counted; it reads more by at most the requests in flight.
            ledger = requests_booked(db)
            assert sim.stats.requests <= ledger <= sim.stats.requests + kills * CONCURRENCY
        final = subprocess.run([sys.executable, str(script), base_url, str(db)], timeout=120)
        assert final.returncode == 0
        truth = {name: [v["id"] for v in sim.ground_truth(name)] for name in NAMES}
        refetched = sum(count - 1 for count in sim.stats.by_cursor.values())
        minimum = sum(sim.pages_needed(name, 100) for name in NAMES)
        total = sim.stats.requests
    assert kills >= 2
    with Store(db, create=False) as store:
        stored: dict[str, list[int]] = {}
        for user, video_id, _data in store.iter_videos():
            stored.setdefault(user, []).append(int(video_id))
        states = store.state_counts()
        integrity = store._db.execute("PRAGMA integrity_check").fetchone()[0]
    assert integrity == "ok"
    # Zero lost, zero duplicated, in the API's order.
    assert stored == {name: ids for name, ids in truth.items() if ids}
    assert states["done"] == 41
    assert states["not_found"] == 1
    assert states["unavailable"] == 1
    # A kill re-fetches at most the pages that were in flight: one per worker.
    assert refetched <= kills * CONCURRENCY
    assert total == minimum + refetched
    assert total <= requests_booked(db) <= total + kills * CONCURRENCY
