"""Our client beside TikTok's own wrapper (PyPI TikTokResearchApi), on the same workload.

The wrapper is what researchers use today: synchronous ``requests``, a new connection for every
call, one user after the other. It runs here unmodified except for its base URL, which a subclass
points at the simulator; the simulator runs in its own process
(``python -m tiktok_repost_async.simulator --latency 0.1``), so that neither side pays for it.

Workload: 150 users of 250 reposts each (``w{i}_n250``: three pages of max_count 100), every
video field, 100 ms per answer, as a remote API takes. Measured: the wall time of the wrapper
walking the users one by one with ``fetch_all_pages=True`` (its default qps=10 limiter never
waits at this latency: a call takes longer than 100 ms), and the wall time of our ``harvest``
into a fresh SQLite store and of ``RepostClient.walk_many()`` (the engine alone, no store), both
with concurrency 32 and a limiter too fast to matter. Ours run before and after each of the
wrapper's ``--rounds`` runs, and each way's best time counts. Goal: ours >= 25x faster than the
wrapper. Every run must fetch the same videos (the same ids for every user), or the benchmark
fails.

The ideal ratio is set by the workload: 150 users over 32 workers is five rounds of three pages,
against 450 pages one after the other, so at most 30x.

A second workload is mixed, as real users are: 150 users of 1 to 4 pages (``mx{i}_n{1..400}``),
100 ms, concurrency 32, on a warmed simulator. Each way's wall time is set beside the ideal
makespan: workers taking the users in input order, one latency per page, plus one latency for the
token. Goal: ``walk_many`` reaches >= 0.85 of the ideal (ideal / wall). Beside it: a hand-written
pool of 32 workers over ``reposted_videos`` (what a programmer would write without the engine)
and the harvest into SQLite.

``--versus REV`` (repeatable) times only the hand-written pool of the mixed workload, beside the
same pool of each git revision REV (``854dade`` is the last commit of version 0.1), on one
simulator. Every way runs in a child process of its own (``_hand_pool.py``, with ``PYTHONPATH``
at this tree or at the revision's package unpacked by ``git archive``), the ways take turns in
each round, and each child times two runs after an untimed one. A ratio to this tree's runs of
the same round holds where absolute times wander with the machine's load.

    pip install TikTokResearchApi
    python benchmarks/bench_wrapper.py [--users 150] [--rounds 2] [--json [FILE]]
    python benchmarks/bench_wrapper.py --versus 854dade [--rounds 6]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import logging
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import aclosing
from pathlib import Path
from typing import Any

from _common import add_json_option, simulator, write_json
from _hand_pool import hand_pool, mixed_names

from tiktok_repost_async import PageEvent, RepostClient
from tiktok_repost_async.harvester import harvest
from tiktok_repost_async.simulator import (
    TEST_CLIENT_KEY,
    TEST_CLIENT_SECRET,
    VIDEO_FIELDS,
    Simulator,
)
from tiktok_repost_async.store import Store

GOAL = 25.0
MIXED_GOAL = 0.85
LATENCY = 0.1
CONCURRENCY = 32
MAX_COUNT = 100
FIELDS = ",".join(VIDEO_FIELDS)

Ids = dict[str, list[int]]


class _Waits(logging.Handler):
    """Count the wrapper's own rate-limit waits, which it logs at INFO."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        """Count one record if it is a wait."""
        if "Rate limit reached" in record.getMessage():
            self.count += 1


def via_wrapper(base_url: str, users: list[str], waits: _Waits) -> Ids:
    """Walk every user one after the other with TikTok's wrapper, as its README shows."""
    import tiktok_research_api as ttr  # type: ignore[import-untyped]

    class SimulatedAPI(ttr.TikTokResearchAPI):  # type: ignore[misc]
        """TikTok's wrapper, its base URL set just before its constructor fetches a token."""

        def get_client_token(self) -> Any:
            """Fetch a token from the simulator instead of open.tiktokapis.com."""
            self.url = base_url
            return super().get_client_token()

    api = SimulatedAPI(TEST_CLIENT_KEY, TEST_CLIENT_SECRET)
    logging.getLogger().addHandler(waits)  # after the constructor's logging.basicConfig()
    try:
        found: Ids = {}
        for user in users:
            request = ttr.QueryUserRepostedVideosRequest(
                username=user, fields=FIELDS, max_count=MAX_COUNT
            )
            videos, _cursor, _more = api.query_user_reposted_videos(request, fetch_all_pages=True)
            found[user] = [int(video["id"]) for video in videos]
        return found
    finally:
        logging.getLogger().removeHandler(waits)


def client(base_url: str) -> RepostClient:
    """Return our client with a limiter too fast to slow it."""
    return RepostClient(
        TEST_CLIENT_KEY,
        TEST_CLIENT_SECRET,
        base_url=base_url,
        max_count=MAX_COUNT,
        requests_per_second=1_000_000,
        concurrency=CONCURRENCY,
    )


async def via_harvest(base_url: str, users: list[str]) -> Ids:
    """Harvest every user into a fresh SQLite store with concurrency 32; read the ids back."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "wrapper.db"
        async with client(base_url) as c:
            async for _ in harvest(c, users, store=path, daily_quota=10**9):
                pass
            with Store(path, fields=c.fields, max_count=c.max_count) as store:
                found: Ids = {user: [] for user in users}
                for user, video_id, _data in store.iter_videos():
                    found[user].append(int(video_id))
    return found


async def via_walk_many(base_url: str, users: list[str]) -> Ids:
    """Walk every user with RepostClient.walk_many() at concurrency 32."""
    found: Ids = {user: [] for user in users}
    async with (
        client(base_url) as c,
        aclosing(c.walk_many(users, concurrency=CONCURRENCY)) as events,
    ):
        async for event in events:
            if isinstance(event, PageEvent):
                found[event.username].extend(video.id for video in event.page.videos)
    return found


async def via_hand_pool(base_url: str, users: list[str]) -> Ids:
    """Walk every user from 32 hand-written workers over reposted_videos (the reference)."""
    async with client(base_url) as c:
        return await hand_pool(c, users, CONCURRENCY)


def ideal_makespan(users: list[str]) -> float:
    """Return the wall time of perfect workers taking the users in order, plus the token."""
    free = [0.0] * CONCURRENCY
    for user in users:
        # The worker that is free first takes the next user and keeps it for all its pages.
        soonest = free.index(min(free))
        free[soonest] += Simulator.pages_needed(user, MAX_COUNT) * LATENCY
    return LATENCY + max(free)


def mixed(users: int, rounds: int) -> dict[str, Any]:
    """Time the mixed workload: walk_many, the hand-written pool and the harvest vs ideal."""
    names = mixed_names(users)
    ways = {"walk_many": via_walk_many, "hand_pool": via_hand_pool, "harvest": via_harvest}
    best = dict.fromkeys(ways, math.inf)
    with simulator("--latency", str(LATENCY)) as base_url:
        reference = asyncio.run(via_hand_pool(base_url, names))  # and warm the simulator
        for _ in range(rounds):
            for name, way in ways.items():
                started = time.perf_counter()
                found = asyncio.run(way(base_url, names))
                best[name] = min(best[name], time.perf_counter() - started)
                if not same_videos(reference, found):
                    raise SystemExit(f"mixed workload: {name} fetched other videos")
    ideal = ideal_makespan(names)
    return {
        "users": users,
        "pages": sum(Simulator.pages_needed(name, MAX_COUNT) for name in names),
        "ideal_s": ideal,
        "seconds": best,
        "efficiency": {name: ideal / seconds for name, seconds in best.items()},
        "goal": MIXED_GOAL,
    }


def versus(revisions: list[str], users: int, rounds: int) -> dict[str, Any]:
    """Time the hand-written pool of this tree and of each revision side by side, in children."""
    root = Path(__file__).resolve().parent.parent
    names = mixed_names(users)
    with tempfile.TemporaryDirectory() as folder:
        trees = {"this tree": root}
        for revision in revisions:
            short = _git(root, "rev-parse", "--short", revision)
            version = _git(root, "show", f"{revision}:pyproject.toml").split('version = "')[1]
            target = Path(folder) / short
            target.mkdir()
            archive = subprocess.run(
                ["git", "-C", str(root), "archive", revision, "tiktok_repost_async"],
                capture_output=True,
                check=True,
            ).stdout
            subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
            trees[f"{short} ({version.split(chr(34))[0]})"] = target
        seconds: dict[str, list[float]] = {label: [] for label in trees}
        videos: set[int] = set()
        with simulator("--latency", str(LATENCY)) as base_url:
            for round_ in range(rounds):
                # Each way goes first in turn, so that neither always meets a simulator that the
                # other has just left busy.
                order = list(trees) if round_ % 2 == 0 else list(reversed(trees))
                for label in order:
                    child = subprocess.run(
                        [
                            sys.executable,
                            str(Path(__file__).with_name("_hand_pool.py")),
                            base_url,
                            *("--users", str(users), "--runs", "2"),
                            *("--concurrency", str(CONCURRENCY), "--max-count", str(MAX_COUNT)),
                        ],
                        env={**os.environ, "PYTHONPATH": str(trees[label])},
                        capture_output=True,
                        text=True,
                        check=True,
                    )
                    answer = json.loads(child.stdout)
                    if not Path(answer["package"]).is_relative_to(trees[label]):
                        raise SystemExit(f"versus: {label} imported {answer['package']}")
                    videos.update(answer["videos"])
                    if len(videos) != 1:
                        raise SystemExit(f"versus: {label} fetched another number of videos")
                    seconds[label].extend(answer["seconds"])
    base = seconds["this tree"]
    return {
        "users": users,
        "pages": sum(Simulator.pages_needed(name, MAX_COUNT) for name in names),
        "ideal_s": ideal_makespan(names),
        "seconds": seconds,
        # Each run beside this tree's run of the same round and place.
        "vs_this_tree": {
            label: statistics.median(t / b for t, b in zip(times, base, strict=True))
            for label, times in seconds.items()
        },
    }


def _git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(root), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


def print_versus(v: dict[str, Any]) -> None:
    """Print the side-by-side table of ``versus``."""
    runs = len(v["seconds"]["this tree"])
    print(
        f"hand-written pool over reposted_videos(): {v['users']} users of 1 to 4 pages ="
        f" {v['pages']} pages, {LATENCY * 1e3:.0f} ms, concurrency {CONCURRENCY};"
        f" ideal {v['ideal_s']:.2f} s; {runs} runs each, interleaved"
    )
    rows = [["way", "min s", "median s", "max s", "ideal / median", "vs this tree"]]
    for label, times in v["seconds"].items():
        median = statistics.median(times)
        rows.append(
            [
                label,
                f"{min(times):.2f}",
                f"{median:.2f}",
                f"{max(times):.2f}",
                f"{v['ideal_s'] / median:.2f}",
                f"{v['vs_this_tree'][label]:.3f}x",
            ]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)))


def same_videos(expected: Ids, got: Ids) -> bool:
    """Tell whether two runs fetched the same ids for every user."""
    return expected.keys() == got.keys() and all(
        sorted(expected[user]) == sorted(got[user]) for user in expected
    )


def run(users: int, rounds: int) -> dict[str, Any]:
    """Time the wrapper and both of our ways in interleaved rounds; return the best of each."""
    names = [f"w{i}_n250" for i in range(users)]
    best = {"wrapper": math.inf, "harvest": math.inf, "walk_many": math.inf}
    videos: dict[str, int] = {}
    waits = _Waits()
    with simulator("--latency", str(LATENCY)) as base_url:
        asyncio.run(via_walk_many(base_url, names))  # warm the simulator's cache for everyone
        reference: Ids | None = None
        # Ours runs before and after every run of the wrapper, so that a burst of load elsewhere
        # meets both sides alike.
        for name in [*(["harvest", "walk_many", "wrapper"] * rounds), "harvest", "walk_many"]:
            started = time.perf_counter()
            if name == "wrapper":
                found = via_wrapper(base_url, names, waits)
            elif name == "harvest":
                found = asyncio.run(via_harvest(base_url, names))
            else:
                found = asyncio.run(via_walk_many(base_url, names))
            best[name] = min(best[name], time.perf_counter() - started)
            videos[name] = sum(map(len, found.values()))
            if reference is None:
                reference, first = found, name
            elif not same_videos(reference, found):
                raise SystemExit(f"{name} fetched other videos than {first}")
    pages = sum(Simulator.pages_needed(name, MAX_COUNT) for name in names)
    return {
        "users": users,
        "pages": pages,
        "latency_s": LATENCY,
        "concurrency": CONCURRENCY,
        "seconds": best,
        "videos": videos,
        "wrapper_limiter_waits": waits.count,
        "ratio_harvest": best["wrapper"] / best["harvest"],
        "ratio_walk_many": best["wrapper"] / best["walk_many"],
        "ideal_ratio": users / math.ceil(users / CONCURRENCY),
        "goal": GOAL,
    }


def results(r: dict[str, Any]) -> list[dict[str, Any]]:
    """Return the goal rows of a run, for run_all.py."""
    same = len(set(r["videos"].values())) == 1
    return [
        {
            "benchmark": f"wrapper: harvest vs TikTokResearchApi, {r['users']} users, 100 ms",
            "goal": f">= {GOAL:g}x faster, same videos",
            "measured": f"{r['ratio_harvest']:.1f}x, videos {'same' if same else 'DIFFER'}",
            "met": r["ratio_harvest"] >= GOAL and same,
        },
        {
            "benchmark": f"wrapper: walk_many() vs TikTokResearchApi, {r['users']} users, 100 ms",
            "goal": f">= {GOAL:g}x faster, same videos",
            "measured": f"{r['ratio_walk_many']:.1f}x, videos {'same' if same else 'DIFFER'}",
            "met": r["ratio_walk_many"] >= GOAL and same,
        },
        *(
            {
                "benchmark": f"mixed 1-4 pages, {m['users']} users, 100 ms, concurrency"
                f" {CONCURRENCY}: {name}",
                "goal": f">= {MIXED_GOAL} of ideal" if name == "walk_many" else "(info)",
                "measured": f"{m['seconds'][name]:.2f} s vs ideal {m['ideal_s']:.2f} s ="
                f" {m['efficiency'][name]:.2f}",
                "met": m["efficiency"][name] >= MIXED_GOAL if name == "walk_many" else None,
            }
            for m in [r["mixed"]]
            for name in ("walk_many", "hand_pool", "harvest")
        ),
    ]


def main() -> None:
    """Run the comparison and print its table, or its results as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=150, help="users of 3 pages each (150)")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds (2)")
    parser.add_argument(
        "--versus",
        action="append",
        metavar="REV",
        help="time only the mixed workload's hand-written pool, beside that of git revision REV"
        " (repeatable; 854dade is version 0.1); --rounds + 1 rounds",
    )
    add_json_option(parser)
    args = parser.parse_args()
    if args.versus:
        v = versus(args.versus, args.users, args.rounds + 1)
        if not write_json({"raw": v}, args.json):
            print_versus(v)
        return
    if importlib.util.find_spec("tiktok_research_api") is None:
        raise SystemExit("needs TikTok's wrapper: pip install TikTokResearchApi")
    r = run(args.users, args.rounds)
    r["mixed"] = mixed(args.users, args.rounds + 1)
    payload = {"results": results(r), "raw": r}
    if write_json(payload, args.json):
        return
    wrapper = r["seconds"]["wrapper"]
    print(
        f"{r['users']} users x 3 pages = {r['pages']} pages, {LATENCY * 1e3:.0f} ms per answer,"
        f" every field; best of {args.rounds} wrapper runs and of {args.rounds + 1} of ours,"
        " interleaved"
    )
    rows = [
        ["way", "wall s", "pages/s", "videos", "vs wrapper"],
        *(
            [
                label,
                f"{r['seconds'][key]:.2f}",
                f"{r['pages'] / r['seconds'][key]:.1f}",
                f"{r['videos'][key]:,}",
                f"{wrapper / r['seconds'][key]:.1f}x",
            ]
            for key, label in (
                ("wrapper", "TikTokResearchApi, sequential"),
                ("harvest", f"harvest(), concurrency {CONCURRENCY}"),
                ("walk_many", f"RepostClient.walk_many(), concurrency {CONCURRENCY}"),
            )
        ),
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)))
    print(
        f"ideal ratio for this workload: {r['ideal_ratio']:.1f}x;"
        f" the wrapper's own limiter waited {r['wrapper_limiter_waits']} times"
    )
    m = r["mixed"]
    print(
        f"\nmixed: {m['users']} users of 1 to 4 pages = {m['pages']} pages, concurrency"
        f" {CONCURRENCY}; ideal makespan {m['ideal_s']:.2f} s (in input order, plus the token)"
    )
    for key, label in (
        ("walk_many", "RepostClient.walk_many()"),
        ("hand_pool", "hand-written pool over reposted_videos()"),
        ("harvest", "harvest() into SQLite"),
    ):
        print(f"  {label:42} {m['seconds'][key]:.2f} s   ideal / wall = {m['efficiency'][key]:.2f}")
    for result in results(r):
        verdict = {True: "met", False: "NOT met", None: "for comparison"}[result["met"]]
        print(f"goal {result['goal']} ({result['benchmark']}): {verdict} ({result['measured']})")


if __name__ == "__main__":
    main()
