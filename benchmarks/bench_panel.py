"""Quota of a panel's repeat round: a full walk against --stop-at-known, beside the first round;
and a panel's month: four weekly rounds with a kill and a silent-empty day.

A panel is harvested in rounds (``harvest --new-round``). The first round walks every user in
full; a week later (the simulator's ``epoch`` moves each user's list forward: new reposts at the
head, a few removed, counts grown) the second round walks them again. This benchmark harvests the
first round once, copies the store, and runs the second round on each copy: once as a full walk,
once with ``stop_at_known``. The figures are research requests (every one costs quota), counted
by the simulator, which runs in this process so that its counters are exact.

Checked on the way: the full round's diff equals the simulator's own ground truth of changes for
every user, and the cheap round finds every new repost (its ``added`` records equal the truth's).

The month (``--month-users``, 300): the command line as real processes against the simulator
served from a thread of this process (its counters exact), one round a simulated week:

1. a full walk;
2. ``--new-round --stop-at-known``, SIGKILLed (a real ``kill -9`` of the harvest process) once
   part of the round is stored, then the same command again, which resumes the round;
3. ``--new-round --stop-at-known`` on a day the API answers every list empty with no error
   (``Fault.SILENT_EMPTY``): the run stops with exit 75 and records nothing; an hour later (a
   timer's next run, the API still silent) the same command stops again, after its probe; the
   next day the same command finishes the round;
4. ``--new-round``, a full walk (a panel's monthly re-sync).

It reports the research requests of each round (the simulator's count, the kill's and the silent
day's included, beside the store's ledger), and checks each round's diff against the simulator's
truth: every addition exactly (stop-at-known rounds too: a partial walk's list is completed from
the rounds before it); every removal and count change reported is true; where the later round is
a full walk every removal is reported; and the diff from round 1 to round 4 (both full walks)
equals the truth whole, added, removed and counts, across the kill and the silent day.

    python benchmarks/bench_panel.py [--users 100] [--month-users 300] [--json [FILE]]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import add_json_option, write_json

from tiktok_repost_async import RepostClient
from tiktok_repost_async.diff import diff_rounds
from tiktok_repost_async.harvester import harvest
from tiktok_repost_async.simulator import TEST_CLIENT_KEY, TEST_CLIENT_SECRET, Fault, Simulator
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


def month(users: int) -> dict[str, Any]:
    """Harvest four weekly rounds of a panel with a kill and a silent-empty day; check the diffs."""
    names = usernames(users)
    folder = Path(tempfile.mkdtemp(prefix="bench-panel-month-"))
    sim = Simulator()
    try:
        panel = folder / "panel.txt"
        panel.write_text("\n".join(names) + "\n")
        db = folder / "panel.db"
        with sim.run_in_thread() as base_url:
            env = {
                **os.environ,
                "TIKTOK_CLIENT_KEY": TEST_CLIENT_KEY,
                "TIKTOK_CLIENT_SECRET": TEST_CLIENT_SECRET,
                "TIKTOK_API_BASE_URL": base_url,
            }
            base = [
                sys.executable, "-m", "tiktok_repost_async", "harvest", str(panel), "--db",
                str(db), "--rate", "2000", "--concurrency", str(CONCURRENCY), "--no-progress",
                "--daily-quota", "1000000",
            ]  # fmt: skip
            cheap = ["--new-round", "--stop-at-known"]
            runs: list[dict[str, Any]] = []

            def harvest_run(round_: int, note: str, *options: str, want: int = 0) -> None:
                before = sim.stats.requests
                done = subprocess.run(
                    [*base, *options], env=env, capture_output=True, text=True, timeout=600
                )
                if done.returncode != want:
                    raise SystemExit(
                        f"round {round_} ({note}): exit {done.returncode}, not"
                        f" {want}:\n{done.stderr}"
                    )
                runs.append(
                    {
                        "round": round_,
                        "run": note,
                        "exit": done.returncode,
                        "requests": sim.stats.requests - before,
                    }
                )

            harvest_run(1, "full walk")
            # Week 2: the harvest is killed (SIGKILL) once part of the round is stored.
            sim.config.epoch = 1
            sim.config.latency = 0.02
            before = sim.stats.requests
            child = subprocess.Popen(
                [*base, *cheap, "--concurrency", "2"], env=env,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            stored_at_kill = _wait_for_round_videos(db, 2, users // 3)
            os.kill(child.pid, signal.SIGKILL)
            child.wait(timeout=30)
            sim.config.latency = 0.0
            runs.append(
                {
                    "round": 2,
                    "run": "killed (SIGKILL)",
                    "exit": child.returncode,
                    "requests": sim.stats.requests - before,
                }
            )
            harvest_run(2, "same command again: resumed", *cheap)
            # Week 3: a day of silent empties, then the same command the next day.
            sim.config.epoch = 2
            sim.config.persistent_fault = Fault.SILENT_EMPTY
            harvest_run(3, "silent empty: stopped", *cheap, want=75)
            harvest_run(3, "an hour later, still silent: stopped", *cheap, want=75)
            sim.config.persistent_fault = None
            harvest_run(3, "next day: finished", *cheap)
            # Week 4: a full walk, the monthly re-sync.
            sim.config.epoch = 3
            harvest_run(4, "full walk", "--new-round")
            checks = _check_month(sim, db, names)
        with Store(db, create=False) as store:
            ledger = {r.number: r.requests for r in store.rounds()}
            complete = [r.complete for r in store.rounds()]
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    per_round = {n: sum(r["requests"] for r in runs if r["round"] == n) for n in (1, 2, 3, 4)}
    return {
        "users": users,
        "runs": runs,
        "requests_per_round": per_round,
        "ledger_per_round": ledger,
        "rounds_complete": complete,
        "videos_stored_at_kill": stored_at_kill,
        "checks": checks,
    }


def _wait_for_round_videos(db: Path, number: int, users: int) -> int:
    """Wait until ``users`` users of round ``number`` have videos stored; return the videos."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if db.exists():
            with Store(db, create=False) as store:
                if store.current_round == number:
                    seen = store._db.execute(
                        "SELECT count(DISTINCT username), count(*) FROM videos WHERE round = ?",
                        (number,),
                    ).fetchone()
                    if seen[0] >= users:
                        return int(seen[1])
        time.sleep(0.02)
    raise SystemExit(f"round {number} did not get under way within a minute")


def _check_month(sim: Simulator, db: Path, names: list[str]) -> list[dict[str, Any]]:
    """Check each round's diff, and round 1 to 4's, against the simulator's truth."""
    listed = {
        epoch: {name: {v["id"] for v in sim.ground_truth(name, epoch=epoch)} for name in names}
        for epoch in range(4)
    }
    rows = []
    with Store(db, create=False) as store:
        for first, second in ((1, 2), (2, 3), (3, 4), (1, 4)):
            truth = {name: sim.changes(name, first - 1, second - 1) for name in names}
            found: dict[str, dict[str, Any]] = {}
            for change in diff_rounds(store, first, second):
                record = found.setdefault(
                    change.username, {"added": [], "removed": [], "counts": {}}
                )
                if change.change == "changed":
                    moved = {n: d for n, d in change.deltas.items() if d}
                    record["counts"][change.video_id] = moved
                else:
                    record[change.change].append(change.video_id)
            empty: dict[str, Any] = {"added": [], "removed": [], "counts": {}}
            full_later = not store.round_stops_at_known(second)
            whole = first == 1 and second == 4
            for name in names:
                got, want = found.get(name, empty), truth[name]
                assert got["added"] == want["added"], (first, second, name, "added")
                # A removal reported is true: the video is gone from the later list.
                assert not set(got["removed"]) & listed[second - 1][name], (first, second, name)
                if full_later:
                    assert set(want["removed"]) <= set(got["removed"]), (first, second, name)
                if whole:
                    assert got == want, (first, second, name)
            rows.append(
                {
                    "from": first,
                    "to": second,
                    "added": sum(len(t["added"]) for t in truth.values()),
                    "added_reported": sum(len(f["added"]) for f in found.values()),
                    "removed": sum(len(t["removed"]) for t in truth.values()),
                    "removed_reported": sum(len(f["removed"]) for f in found.values()),
                    "counts": sum(len(t["counts"]) for t in truth.values()),
                    "counts_reported": sum(len(f["counts"]) for f in found.values()),
                    "equal_to_truth": whole,
                }
            )
    return rows


def results(r: dict[str, Any]) -> list[dict[str, Any]]:
    """Return the rows of run_all's summary table."""
    users = r["users"]
    full, cheap = r["repeat_full_requests"], r["repeat_stop_at_known_requests"]
    rows = [
        {
            "benchmark": f"panel repeat round, {users} users: full walk vs --stop-at-known",
            "goal": "about 1 request per user gaining < 100",
            "measured": f"{full:,} vs {cheap:,} requests ({cheap / users:.2f} per user; "
            f"first round {r['first_round_requests']:,})",
            "met": cheap <= users + (users - r["users_gaining_under_100"]) * 3,
        }
    ]
    m = r.get("month")
    if m:
        per = m["requests_per_round"]
        rows.append(
            {
                "benchmark": f"panel month, {m['users']} users, 4 weekly rounds (2 and 3"
                " --stop-at-known) with a SIGKILL and a silent-empty day",
                "goal": "every diff true, additions exact; rounds 1 -> 4 equal to the truth",
                "measured": "requests per round "
                + " / ".join(f"{per[n]:,}" for n in sorted(per))
                + "; every check held",
                "met": all(m["rounds_complete"]),
            }
        )
    return rows


def main() -> None:
    """Run the benchmark and print its table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument(
        "--month-users", type=int, default=300, help="the month's panel (0 skips it)"
    )
    add_json_option(parser)
    args = parser.parse_args()
    result = asyncio.run(main_async(args.users))
    if args.month_users:
        result["month"] = month(args.month_users)
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
    if "month" in result:
        print_month(result["month"])


def print_month(m: dict[str, Any]) -> None:
    """Print the month's runs, requests per round and diff checks."""
    users = m["users"]
    print(f"\na month of a {users}-user panel, one round a simulated week\n")
    print("| round | run | exit | research requests |")
    print("|---|---|---|---|")
    for run in m["runs"]:
        print(f"| {run['round']} | {run['run']} | {run['exit']} | {run['requests']:,} |")
    print("\n| round | research requests (simulator) | per user | the store's ledger |")
    print("|---|---|---|---|")
    for number, requests in sorted(m["requests_per_round"].items()):
        ledger = m["ledger_per_round"].get(number, 0)
        print(f"| {number} | {requests:,} | {requests / users:.2f} | {ledger:,} |")
    print(f"\n({m['videos_stored_at_kill']:,} videos of round 2 were stored when it was killed)\n")
    print(
        "| diff | added: truth / reported | removed: truth / reported |"
        " count changes: truth / reported | equal to the truth |"
    )
    print("|---|---|---|---|---|")
    for c in m["checks"]:
        print(
            f"| {c['from']} -> {c['to']} | {c['added']:,} / {c['added_reported']:,} |"
            f" {c['removed']:,} / {c['removed_reported']:,} |"
            f" {c['counts']:,} / {c['counts_reported']:,} |"
            f" {'yes, whole' if c['equal_to_truth'] else 'additions exact; the rest true'} |"
        )


if __name__ == "__main__":
    main()
