"""Every fault at once, a daily quota that runs out, and SIGKILLs: the result is still exact."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import pytest

from tiktok_repost_async import Store
from tiktok_repost_async.simulator import TEST_CLIENT_KEY, TEST_CLIENT_SECRET, Fault, Simulator

USERS = 2000
CONCURRENCY = 16
FAULTS = {
    Fault.SERVER_ERROR: 0.05,
    Fault.GATEWAY_TIMEOUT: 0.02,
    Fault.BAD_GATEWAY: 0.01,
    Fault.DROP: 0.02,
    Fault.HANG: 0.005,
    Fault.RATE_LIMIT: 0.005,
    Fault.RATE_LIMIT_NO_RETRY_AFTER: 0.01,
    Fault.TRUNCATED: 0.01,
    Fault.INVALID_CURSOR: 0.01,
    Fault.TOKEN_INVALID: 0.005,
}
EXIT_STOPPED = 75

CHILD = textwrap.dedent(
    f"""
    import asyncio, logging, sys
    import tiktok_repost_async.gate
    from tiktok_repost_async import RepostClient, RetryPolicy
    from tiktok_repost_async.harvester import HarvestStopped, harvest

    # The API's quota 429s are probed for minutes before they are the day's: milliseconds here.
    tiktok_repost_async.gate.RATE_PROBE_WAITS = (0.01, 0.01, 0.01)

    async def main() -> int:
        names = [line.strip() for line in open(sys.argv[3])]
        policy = RetryPolicy(max_attempts=8, base_delay=0.01, max_delay=0.1)
        async with RepostClient(
            {TEST_CLIENT_KEY!r}, {TEST_CLIENT_SECRET!r}, base_url=sys.argv[1],
            requests_per_second=5_000, concurrency={CONCURRENCY}, timeout=0.5, retry=policy,
        ) as client:
            try:
                async for _ in harvest(client, names, store=sys.argv[2], daily_quota=10**6):
                    pass
            except HarvestStopped:
                return {EXIT_STOPPED}
        return 0

    logging.basicConfig(level=logging.ERROR)
    sys.exit(asyncio.run(main()))
    """
)


def usernames(rng: random.Random) -> list[str]:
    names = []
    for i in range(USERS):
        roll = rng.random()
        if roll < 0.02:
            names.append(f"missing_chaos{i}")
        elif roll < 0.04:
            names.append(f"private_chaos{i}")
        elif roll < 0.06:
            names.append(f"short_chaos{i}_n{rng.randint(1, 300)}")
        else:
            names.append(f"chaos{i}_n{rng.choice((0, 5, 40, 100, 101, 180, 260))}")
    return names


@pytest.mark.slow
def test_chaos_harvest_ends_exact(tmp_path: Path) -> None:
    rng = random.Random(1125)
    names = usernames(rng)
    listing = tmp_path / "users.txt"
    listing.write_text("\n".join(names) + "\n")
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    db = tmp_path / "chaos.db"
    minimum = sum(Simulator.pages_needed(n, 100) for n in names)
    # The API's own daily quota runs out part-way: the run stops and resumes after the reset.
    sim = Simulator(faults=FAULTS, seed=7, token_lifetime=3, daily_quota=int(minimum * 0.6))
    kills = stops = runs = 0
    with sim.run_in_thread() as base_url:
        command = [sys.executable, str(script), base_url, str(db), str(listing)]
        for _ in range(3):
            child = subprocess.Popen(command)
            time.sleep(rng.uniform(1.0, 3.0))
            runs += 1
            if child.poll() is None:
                os.kill(child.pid, signal.SIGKILL)
                kills += 1
            if child.wait(timeout=60) == EXIT_STOPPED:
                stops += 1
                sim.reset_quota()
        for _ in range(12):
            runs += 1
            code = subprocess.run(command, timeout=300).returncode
            if code == EXIT_STOPPED:
                stops += 1
                sim.reset_quota()
                continue
            assert code == 0
            with Store(db, create=False) as store:
                if not store.state_counts()["failed"] and not store.state_counts()["pending"]:
                    break
        faults = Counter(sim.stats.faults)
        requests = sim.stats.requests
        truth = {n: [v["id"] for v in sim.ground_truth(n)] for n in names}
    with Store(db, create=False) as store:
        stored: dict[str, list[int]] = {}
        rows = 0
        for user, video_id, _ in store.iter_videos():
            stored.setdefault(user, []).append(int(video_id))
            rows += 1
        states = {record.username: record.state for record in store.iter_users()}
    expected = {n: ids for n, ids in truth.items() if ids}
    lost = sum(len(set(ids) - set(stored.get(n, []))) for n, ids in expected.items())
    duplicated = rows - len({(u, i) for u, ids in stored.items() for i in ids})
    print(
        f"\nchaos: {USERS} users, {runs} runs, {kills} kills, {stops} quota stops, "
        f"faults {dict(faults)}, requests {requests} vs minimum {minimum} "
        f"({requests / minimum:.2f}x), lost {lost}, duplicated {duplicated}"
    )
    assert kills >= 2
    assert stops >= 1
    assert sum(faults.values()) > 100
    assert lost == 0
    assert duplicated == 0
    assert stored == expected
    for name in names:
        kind = Simulator.user_kind(name)
        wanted = {"missing": "not_found", "private": "unavailable"}.get(kind, "done")
        assert states[name] == wanted, name
    # Faults cost retries and kills cost the pages in flight, within a stated bound.
    assert requests <= minimum * 1.5
