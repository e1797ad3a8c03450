"""Quota of finding what TikTok removed: a refresh (compliance tasks) against a re-walk.

TikTok's terms ask researchers to delete what is no longer available. A store of about 100,000
videos (400 users of 250 reposts) is harvested once; a simulated week later (the simulator's
``epoch`` 1: a few videos removed from every list) the removals are found two ways, on copies of
the store: ``refresh`` (every stored id checked by compliance tasks of 10,000 ids, each task
answering Processing once before it completes) and a re-walk of every user (``--new-round``, a
panel's way: a full second round, then the diff's ``removed``). The figures are requests (every
one costs quota), counted by the simulator, which runs in this process so that its counters are
exact, and wall time.

Checked on the way: both ways find exactly the removals of the simulator's own ground truth, and
the refresh deletes them (every observation) from its copy.

    python benchmarks/bench_refresh.py [--users 400] [--json [FILE]]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import add_json_option, write_json

from tiktok_repost_async import RepostClient, refresh
from tiktok_repost_async.diff import diff_rounds
from tiktok_repost_async.harvester import harvest
from tiktok_repost_async.simulator import TEST_CLIENT_KEY, TEST_CLIENT_SECRET, Simulator
from tiktok_repost_async.store import Store

CONCURRENCY = 16
REPOSTS = 250


def usernames(count: int) -> list[str]:
    """Return ``count`` users of REPOSTS reposts each, the same on every run."""
    return [f"refresh_member_{i}_n{REPOSTS}" for i in range(count)]


def client_of(sim: Simulator) -> RepostClient:
    return RepostClient(
        TEST_CLIENT_KEY,
        TEST_CLIENT_SECRET,
        base_url=sim.base_url,
        requests_per_second=10_000,
        concurrency=CONCURRENCY,
    )


async def walk(sim: Simulator, names: list[str], db: Path, *, new_round: bool) -> int:
    """Harvest a round into ``db``; return the research requests it sent."""
    before = sim.stats.requests
    async with client_of(sim) as client:
        async for _ in harvest(client, names, store=db, daily_quota=10**6, new_round=new_round):
            pass
    return sim.stats.requests - before


async def main_async(users: int) -> dict[str, Any]:
    """Harvest, let a week pass, find the removals both ways; return the figures."""
    names = usernames(users)
    folder = Path(tempfile.mkdtemp(prefix="bench-refresh-"))
    try:
        async with Simulator() as sim:
            first_db = folder / "round1.db"
            harvest_requests = await walk(sim, names, first_db, new_round=False)
            refresh_db, rewalk_db = folder / "refresh.db", folder / "rewalk.db"
            shutil.copy(first_db, refresh_db)
            shutil.copy(first_db, rewalk_db)
            with Store(first_db, create=False) as store:
                stored = store.video_count()
            sim.config.epoch = 1
            sim.config.task_processing_polls = 1
            truth = {vid for name in names for vid in sim.changes(name, 0, 1)["removed"]}

            before = sim.stats.compliance_requests
            started = time.perf_counter()
            async with client_of(sim) as client:
                with Store(refresh_db, create=False) as store:
                    report = await refresh(client, store, daily_quota=10**6, poll_first_wait=0.0)
                    left = {int(v) for _, v, _ in store.iter_videos()}
            refresh_wall = time.perf_counter() - started
            refresh_requests = sim.stats.compliance_requests - before
            assert report.finished, report
            assert report.requests == refresh_requests
            assert report.removed == len(truth), (report.removed, len(truth))
            assert not left & truth
            tasks = len(report.task_ids)

            started = time.perf_counter()
            rewalk_requests = await walk(sim, names, rewalk_db, new_round=True)
            with Store(rewalk_db, create=False) as store:
                found = {c.video_id for c in diff_rounds(store, 1, 2) if c.change == "removed"}
            rewalk_wall = time.perf_counter() - started
            assert found == truth
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return {
        "users": users,
        "stored_videos": stored,
        "harvest_requests": harvest_requests,
        "removed": len(truth),
        "refresh_requests": refresh_requests,
        "refresh_tasks": tasks,
        "refresh_seconds": round(refresh_wall, 2),
        "rewalk_requests": rewalk_requests,
        "rewalk_seconds": round(rewalk_wall, 2),
    }


def results(r: dict[str, Any]) -> list[dict[str, Any]]:
    """Return the rows of run_all's summary table."""
    return [
        {
            "benchmark": f"finding removals in {r['stored_videos']:,} stored videos: refresh vs"
            " a re-walk of every user",
            "goal": "a refresh costs a few requests per 10,000 videos",
            "measured": f"{r['refresh_requests']:,} vs {r['rewalk_requests']:,} requests"
            f" ({r['refresh_tasks']} tasks; both found the {r['removed']:,} removals)",
            "met": r["refresh_requests"] <= 4 * r["refresh_tasks"],
        }
    ]


def main() -> None:
    """Run the benchmark and print its table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=400)
    add_json_option(parser)
    args = parser.parse_args()
    result = asyncio.run(main_async(args.users))
    if write_json({"results": results(result), "raw": result}, args.json):
        return
    print(
        f"{result['stored_videos']:,} stored videos of {result['users']} users (harvest:"
        f" {result['harvest_requests']:,} requests); a week later {result['removed']:,} removed\n"
    )
    print("| way | requests | wall s |")
    print("|---|---:|---:|")
    print(
        f"| refresh ({result['refresh_tasks']} compliance tasks) | {result['refresh_requests']:,}"
        f" | {result['refresh_seconds']:.2f} |"
    )
    print(
        f"| re-walk of every user (--new-round, then the diff) | {result['rewalk_requests']:,}"
        f" | {result['rewalk_seconds']:.2f} |"
    )
    ratio = result["rewalk_requests"] / max(result["refresh_requests"], 1)
    print(f"\nthe refresh spends {ratio:.0f}x fewer requests; both found every removal")


if __name__ == "__main__":
    main()
