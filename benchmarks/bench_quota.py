"""Quota efficiency of the harvest: research requests sent over the fewest that could do.

Every request costs quota (1,000 a day on the live API), failures included, so the figure is the
requests the simulator received divided by the sum of ``Simulator.pages_needed()`` over the users:
what a perfect client sends. The simulator runs in this process (``Simulator.run_in_thread()``),
so that its own counters give the requests; the store's ledger (``Store.requests_on()``, which the
daily quota is kept by) is shown beside them. The users mix the simulator's kinds: normal users of
1 to 600 reposts, empty, missing and private users, users whose pages come back short or empty
while ``has_more`` stays true, users whose cursor stalls, and big users of about 1,000 reposts.

(a) A clean harvest. Goal: exactly 1.00.
(b) The same with 3% of requests answered 500 (``--fault server_error=0.03``), retried after a
    backoff shortened to milliseconds. About 1 / (1 - 0.03) = 1.03 is expected: each failure is
    one more request.
(c) A harvest in a child process, SIGKILLed half-way, then resumed in a fresh one. Goal: no video
    lost or stored twice, and no more extra requests than pages in flight at the kill (at most
    the concurrency, 16).

Each run checks that the store ends with every user final and exactly the ground truth's videos.

    python benchmarks/bench_quota.py [--users 300] [--json [FILE]]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import add_json_option, write_json

from tiktok_repost_async import RepostClient
from tiktok_repost_async.harvester import harvest
from tiktok_repost_async.retry import RetryPolicy
from tiktok_repost_async.simulator import TEST_CLIENT_KEY, TEST_CLIENT_SECRET, Fault, Simulator
from tiktok_repost_async.store import Store, UserState

CONCURRENCY = 16
FAULT_RATE = 0.03
KILL_LATENCY = 0.02


def usernames(count: int) -> list[str]:
    """Return ``count`` names mixing the simulator's kinds of users, the same on every run."""
    names = []
    for i in range(count):
        kind = i % 20
        if kind == 0:
            names.append(f"empty_q{i}")
        elif kind == 1:
            names.append(f"missing_q{i}")
        elif kind == 2:
            names.append(f"private_q{i}")
        elif kind in (3, 4):
            names.append(f"short_q{i}")
        elif kind == 5:
            names.append(f"stall_q{i}")
        elif kind == 6:
            names.append(f"big_q{i}")
        else:
            names.append(f"q{i}_n{(i * 97) % 600 + 1}")
    return names


def client(base_url: str, retry: RetryPolicy | None = None) -> RepostClient:
    """Return a client that the limiter does not slow."""
    return RepostClient(
        TEST_CLIENT_KEY,
        TEST_CLIENT_SECRET,
        base_url=base_url,
        requests_per_second=1_000_000,
        concurrency=CONCURRENCY,
        retry=retry,
    )


async def run_harvest(base_url: str, names: list[str], store: Path, fast_retry: bool) -> None:
    """Harvest every name into ``store`` until done."""
    # Full jitter still, but in milliseconds, so that a 3% fault rate does not take minutes.
    retry = RetryPolicy(base_delay=0.001, max_delay=0.01) if fast_retry else None
    async with client(base_url, retry) as c:
        async for _ in harvest(c, names, store=store, daily_quota=10**9):
            pass


def check_store(path: Path, sim: Simulator, names: list[str]) -> tuple[int, int]:
    """Return the store's ledger and its videos; fail unless it holds exactly the ground truth."""
    with Store(path) as store:
        states = store.state_counts()
        open_users = states.get(UserState.PENDING, 0) + states.get(UserState.FAILED, 0)
        if open_users:
            raise SystemExit(f"{open_users} users of {path.name} are not final")
        stored: dict[str, list[int]] = {name: [] for name in names}
        for name, video_id, _data in store.iter_videos():
            stored[name].append(int(video_id))
        for name in names:
            if stored[name] != [int(video["id"]) for video in sim.ground_truth(name)]:
                raise SystemExit(f"{path.name}: the videos of {name} are not the ground truth")
        return store.requests_on(), store.video_count()


def twice(sim: Simulator) -> int:
    """Return how many (user, cursor) pages the simulator was asked for more than once."""
    return sum(count - 1 for count in sim.stats.by_cursor.values() if count > 1)


def in_process(names: list[str], folder: Path, faults: bool) -> dict[str, Any]:
    """Harvest in this process against a simulator in a thread; return the counts."""
    knobs: dict[str, Any] = (
        {"faults": {Fault.SERVER_ERROR: FAULT_RATE}, "seed": 7} if faults else {}
    )
    sim = Simulator(**knobs)
    store = folder / ("faults.db" if faults else "clean.db")
    started = time.perf_counter()
    with sim.run_in_thread() as base_url:
        asyncio.run(run_harvest(base_url, names, store, fast_retry=faults))
    seconds = time.perf_counter() - started
    ledger, videos = check_store(store, sim, names)
    return {
        "requests": sim.stats.requests,
        "ledger": ledger,
        "videos": videos,
        "faults": sum(sim.stats.faults.values()),
        "asked_twice": twice(sim),
        "seconds": seconds,
    }


def killed_and_resumed(names: list[str], folder: Path, users: int) -> dict[str, Any]:
    """Harvest in a child, SIGKILL it half-way, resume in another child; return the counts."""
    sim = Simulator(latency=KILL_LATENCY)
    store = folder / "killed.db"
    minimum = sum(Simulator.pages_needed(name) for name in names)
    started = time.perf_counter()
    with sim.run_in_thread() as base_url:
        child = [sys.executable, __file__, "--users", str(users), "--child", base_url, str(store)]
        first = subprocess.Popen(child)
        try:
            while sim.stats.requests < minimum // 2:
                if first.poll() is not None:
                    raise SystemExit("the harvest ended before it could be killed")
                time.sleep(0.005)
            first.send_signal(signal.SIGKILL)
        finally:
            first.kill()
            first.wait()
        at_kill = sim.stats.requests
        subprocess.run(child, check=True)
    seconds = time.perf_counter() - started
    ledger, videos = check_store(store, sim, names)
    return {
        "requests": sim.stats.requests,
        "at_kill": at_kill,
        "ledger": ledger,
        "videos": videos,
        "faults": 0,
        "asked_twice": twice(sim),
        "seconds": seconds,
    }


def run(users: int) -> dict[str, Any]:
    """Run the three harvests and return their counts beside the minimum."""
    names = usernames(users)
    minimum = sum(Simulator.pages_needed(name) for name in names)
    with tempfile.TemporaryDirectory() as folder:
        runs = {
            "clean": in_process(names, Path(folder), faults=False),
            "faults": in_process(names, Path(folder), faults=True),
            "killed": killed_and_resumed(names, Path(folder), users),
        }
    for r in runs.values():
        r["ratio"] = r["requests"] / minimum
    return {"users": users, "minimum": minimum, "concurrency": CONCURRENCY, "runs": runs}


def results(r: dict[str, Any]) -> list[dict[str, Any]]:
    """Return the goal rows, for run_all.py."""
    runs, minimum = r["runs"], r["minimum"]
    clean, faults, killed = runs["clean"], runs["faults"], runs["killed"]
    extra = killed["requests"] - minimum
    return [
        {
            "benchmark": f"quota: clean harvest, {r['users']} users",
            "goal": "requests / minimum = 1.00",
            "measured": f"{clean['ratio']:.3f} ({clean['requests']} / {minimum})",
            "met": clean["requests"] == minimum,
        },
        {
            "benchmark": f"quota: {FAULT_RATE:.0%} server errors, {r['users']} users",
            "goal": f"(info) ~{1 / (1 - FAULT_RATE):.2f} expected",
            "measured": f"{faults['ratio']:.3f} ({faults['requests']} / {minimum})",
            "met": None,
        },
        {
            "benchmark": f"quota: SIGKILL half-way and resume, {r['users']} users",
            "goal": f"no loss, extra requests <= {CONCURRENCY}",
            "measured": f"{killed['ratio']:.3f} ({killed['requests']} / {minimum}), +{extra}",
            "met": 0 <= extra <= CONCURRENCY,
        },
    ]


def main() -> None:
    """Run the three harvests and print the table, or the results as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=300, help="users to harvest (300)")
    add_json_option(parser)
    parser.add_argument("--child", nargs=2, metavar=("URL", "STORE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    # The injected faults are counted in the table; a warning for each retry is noise.
    logging.getLogger("tiktok_repost_async").setLevel(logging.ERROR)
    if args.child is not None:
        url, store = args.child
        asyncio.run(run_harvest(url, usernames(args.users), Path(store), fast_retry=False))
        return
    r = run(args.users)
    payload = {"results": results(r), "raw": r}
    if write_json(payload, args.json):
        return
    minimum = r["minimum"]
    print(
        f"{r['users']} users of every kind, max_count 100, concurrency {CONCURRENCY};"
        f" the fewest requests that could do: {minimum}"
    )
    header = ["run", "requests", "/ minimum", "ledger", "faults", "pages asked twice", "videos"]
    labels = {
        "clean": "(a) clean",
        "faults": f"(b) {FAULT_RATE:.0%} server errors",
        "killed": "(c) SIGKILL half-way, resumed",
    }
    table = [header]
    for key, label in labels.items():
        run_ = r["runs"][key]
        table.append(
            [
                label,
                f"{run_['requests']}",
                f"{run_['ratio']:.3f}",
                f"{run_['ledger']}",
                f"{run_['faults']}",
                f"{run_['asked_twice']}",
                f"{run_['videos']:,}",
            ]
        )
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    for line in table:
        print("  ".join(c.rjust(w) for c, w in zip(line, widths, strict=True)))
    killed = r["runs"]["killed"]
    print(
        f"(c) was killed after {killed['at_kill']} requests; its store's ledger is"
        f" {killed['requests'] - killed['ledger']} short of what was sent: the requests in"
        " flight at the kill"
    )
    for row in results(r):
        verdict = "info" if row["met"] is None else "met" if row["met"] else "NOT met"
        print(f"goal {row['goal']} ({row['benchmark']}): {verdict} ({row['measured']})")


if __name__ == "__main__":
    main()
