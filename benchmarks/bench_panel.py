"""Quota of a panel's repeat round: a full walk against --stop-at-known, beside the first round.

A panel is harvested in rounds (``harvest --new-round``). The first round walks every user in
full; a week later (the simulator's ``epoch`` moves each user's list forward: new reposts at the
head, a few removed, counts grown) the second round walks them again. This benchmark harvests the
first round once, copies the store, and runs the second round on each copy: once as a full walk,
once with ``stop_at_known``. The figures are research requests (every one costs quota), counted
by the simulator, which runs in this process so that its counters are exact.

Checked on the way: the full round's diff equals the simulator's own ground truth of changes for
every user, and the cheap round finds every new repost (its ``added`` records equal the truth's).

    python benchmarks/bench_panel.py [--users 100] [--json [FILE]]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
from pathlib import Path
from typing import Any

from _common import add_json_option, write_json

from tiktok_repost_async import RepostClient
from tiktok_repost_async.diff import diff_rounds
from tiktok_repost_async.harvester import harvest
from tiktok_repost_async.simulator import TEST_CLIENT_KEY, TEST_CLIENT_SECRET, Simulator
from tiktok_repost_async.store import Store

CONCURRENCY = 16


def usernames(count: int) -> list[str]:
    """Return a panel of ``count`` ordinary users, the same on every run."""
    return [f"panel_member_{i}" for i in range(count)]


async def run_round(
    sim: Simulator, names: list[str], db: Path, *, new_round: bool, stop_at_known: bool
) -> int:
    """Harvest one round into ``db``; return the research requests it sent."""
    before = sim.stats.requests
    async with RepostClient(
        TEST_CLIENT_KEY,
        TEST_CLIENT_SECRET,
        base_url=sim.base_url,
        requests_per_second=10_000,
        concurrency=CONCURRENCY,
    ) as client:
        async for _ in harvest(
            client,
            names,
            store=db,
            daily_quota=10**6,
            new_round=new_round,
            stop_at_known=stop_at_known,
        ):
            pass
    return sim.stats.requests - before


def added_by_user(db: Path) -> dict[str, list[int]]:
    """Return each user's ``added`` video ids between rounds 1 and 2, as the client's diff says."""
    with Store(db, create=False) as store:
        added: dict[str, list[int]] = {}
        for change in diff_rounds(store, 1, 2):
            if change.change == "added":
                added.setdefault(change.username, []).append(change.video_id)
        return added


async def main_async(users: int) -> dict[str, Any]:
    """Harvest the panel's rounds and return the figures."""
    names = usernames(users)
    folder = Path(tempfile.mkdtemp(prefix="bench-panel-"))
    try:
        async with Simulator() as sim:
            first_db = folder / "round1.db"
            first = await run_round(sim, names, first_db, new_round=False, stop_at_known=False)
            full_db, cheap_db = folder / "full.db", folder / "cheap.db"
            shutil.copy(first_db, full_db)
            shutil.copy(first_db, cheap_db)
            sim.config.epoch = 1
            full = await run_round(sim, names, full_db, new_round=True, stop_at_known=False)
            cheap = await run_round(sim, names, cheap_db, new_round=True, stop_at_known=True)
            truth = {name: sim.changes(name, 0, 1) for name in names}
            minimum = sum(sim.pages_needed(name) for name in names)
        full_added = added_by_user(full_db)
        cheap_added = added_by_user(cheap_db)
        for name in names:
            want = truth[name]["added"]
            assert full_added.get(name, []) == want, name
            assert cheap_added.get(name, []) == want, name
        gained = [len(truth[name]["added"]) for name in names]
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return {
        "users": users,
        "first_round_requests": first,
        "repeat_full_requests": full,
        "repeat_full_minimum": minimum,
        "repeat_stop_at_known_requests": cheap,
        "users_gaining_under_100": sum(count < 100 for count in gained),
        "new_reposts": sum(gained),
    }


def results(r: dict[str, Any]) -> list[dict[str, Any]]:
    """Return the rows of run_all's summary table."""
    users = r["users"]
    full, cheap = r["repeat_full_requests"], r["repeat_stop_at_known_requests"]
    return [
        {
            "benchmark": f"panel repeat round, {users} users: full walk vs --stop-at-known",
            "goal": "about 1 request per user gaining < 100",
            "measured": f"{full:,} vs {cheap:,} requests ({cheap / users:.2f} per user; "
            f"first round {r['first_round_requests']:,})",
            "met": cheap <= users + (users - r["users_gaining_under_100"]) * 3,
        }
    ]


def main() -> None:
    """Run the benchmark and print its table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100)
    add_json_option(parser)
    args = parser.parse_args()
    result = asyncio.run(main_async(args.users))
    if write_json({"results": results(result), "raw": result}, args.json):
        return
    users = result["users"]
    print(f"panel of {users} users; between rounds {result['new_reposts']:,} new reposts,")
    print(f"{result['users_gaining_under_100']} users gained fewer than 100\n")
    print("| round | research requests | per user |")
    print("|---|---|---|")
    for label, key in (
        ("1: first, full walk", "first_round_requests"),
        ("2: full repeat walk", "repeat_full_requests"),
        ("2: with --stop-at-known", "repeat_stop_at_known_requests"),
    ):
        print(f"| {label} | {result[key]:,} | {result[key] / users:.2f} |")
    saving = 1 - result["repeat_stop_at_known_requests"] / result["repeat_full_requests"]
    print(f"\n--stop-at-known saves {saving:.0%} of a repeat round's requests;")
    print("both repeat rounds found every new repost (checked against the simulator's truth)")


if __name__ == "__main__":
    main()
