"""The harvest against the simulator: CPU cost beside a bare loop, latency hiding, memory.

The simulator runs in its own process (``python -m tiktok_repost_async.simulator``), so that its
work does not count against the code measured here. Three measurements, each beside its baseline
in the same run:

1. CPU cost, zero latency: pages/s of a bare aiohttp + msgspec loop that walks the same users'
   cursor chains, of ``RepostClient.pages()`` (from as many plain workers), of
   ``RepostClient.walk_many()`` (the engine's own pool), and of a harvest into a fresh SQLite
   store; the last column compares with a bare loop that decodes as the client must to keep each
   video's raw bytes. Goals: pages() and walk_many() >= 0.8x bare, harvest >= 0.7x bare.

   With ``--instructions`` this section counts user-space instructions per page under valgrind's
   callgrind instead of pages/s (wall-clock pages/s wander by 15 to 30% on a shared 2-core
   machine; instruction counts repeat within about 0.1%). The simulator (not under valgrind) is
   started once and its cache warmed; then each way runs in a child process under callgrind
   (``--child WAY ROUNDS URL``, the same functions as above): a warm-up (one bare walk, which
   imports everything and opens the sockets) and R rounds of the way, each round 40 users of 5
   pages (200 pages) at concurrency 8. A child with the warm-up alone, shared by every way, is
   the baseline: instructions per page = (way's count - baseline's) / pages of the rounds. R = 2,
   1 with --quick; two children run at a time. Ratios are bare's count over the way's, so higher
   is better as with pages/s. Kernel time (socket system calls, page faults), which every way
   pays alike, is not counted: it would add the same to each way's cost, so the instruction
   ratio is a pessimistic (lower) bound of the wall-clock ratio. Not so for the harvest, whose
   own kernel time and waits (SQLite's file writes, its writer thread) are not shared and not
   counted: its instruction ratio is optimistic.
2. Latency hiding at 100 ms per answer: wall time of a harvest over the ideal
   (pages x latency / concurrency). Goal <= 1.15.
3. Peak RSS of a process harvesting 10,000 and then 100,000 streamed usernames (one request
   each). Goal <= 200 MB and flat.

    python benchmarks/bench_harvest.py [--quick] [--only cpu|latency|memory] [--instructions]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from contextlib import aclosing
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
from _common import simulator, test_token

from tiktok_repost_async import PageEvent, RepostClient
from tiktok_repost_async.harvester import harvest
from tiktok_repost_async.models import (
    RAW_RESPONSE_DECODER,
    REPOSTED_RESPONSE_DECODER,
    VIDEO_DECODER,
)
from tiktok_repost_async.simulator import (
    RESEARCH_PATH,
    TEST_CLIENT_KEY,
    TEST_CLIENT_SECRET,
    VIDEO_FIELDS,
)

FIELDS = ",".join(VIDEO_FIELDS)


# The same typed decoder the client uses, minus every check and error path around it.
_DECODER = REPOSTED_RESPONSE_DECODER


def client(base_url: str, concurrency: int) -> RepostClient:
    """Return a client that the limiter does not slow: this measures our own cost."""
    return RepostClient(
        TEST_CLIENT_KEY,
        TEST_CLIENT_SECRET,
        base_url=base_url,
        requests_per_second=1_000_000,
        concurrency=concurrency,
    )


async def bare(base_url: str, users: list[str], concurrency: int, *, keep_raw: bool = False) -> int:
    """Walk every user's cursor chain with nothing but aiohttp and a typed msgspec decoder.

    With ``keep_raw`` it does the decode the client must do to keep each video's raw bytes, and
    nothing else: the page with its videos as msgspec.Raw, then a list of the page's 100 raw byte
    copies and a list of their 100 typed videos (each decoded on its own), both kept until the
    next page as the client's page keeps them.
    """
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(base_url, connector=connector) as session:
        token = await test_token(session)
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        queue = list(reversed(users))
        pages = 0

        async def worker() -> None:
            nonlocal pages
            while queue:
                user, cursor, more = queue.pop(), 0, True
                while more:
                    body = msgspec.json.encode(
                        {"username": user, "max_count": 100, "cursor": cursor}
                    )
                    async with session.post(
                        f"{RESEARCH_PATH}?fields={FIELDS}", data=body, headers=headers
                    ) as response:
                        raw = await response.read()
                    pages += 1
                    if keep_raw:
                        envelope = RAW_RESPONSE_DECODER.decode(raw)
                        assert envelope.data is not None
                        # The whole page at once, as the client builds it: both lists stay
                        # alive (locals, like `answer` below) until the next page replaces them.
                        copies = [bytes(video) for video in envelope.data.reposted_videos or ()]
                        videos = [VIDEO_DECODER.decode(copy) for copy in copies]
                        assert len(videos) == len(copies)
                        data: Any = envelope.data
                    else:
                        answer = _DECODER.decode(raw)
                        assert answer.data is not None
                        data = answer.data
                    cursor, more = data.cursor or 0, bool(data.has_more)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return pages


async def bare_raw(base_url: str, users: list[str], concurrency: int) -> int:
    """Walk every user as `bare` does, with the decode that keeps raw bytes."""
    return await bare(base_url, users, concurrency, keep_raw=True)


async def via_client(base_url: str, users: list[str], concurrency: int) -> int:
    """Walk every user with RepostClient.pages()."""
    pages = 0
    async with client(base_url, concurrency) as c:
        queue = list(reversed(users))

        async def worker() -> None:
            nonlocal pages
            while queue:
                async for _ in c.pages(queue.pop()):
                    pages += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return pages


async def via_walk_many(base_url: str, users: list[str], concurrency: int) -> int:
    """Walk every user with RepostClient.walk_many(): the engine's pool, events and gate."""
    pages = 0
    async with (
        client(base_url, concurrency) as c,
        aclosing(c.walk_many(users, concurrency=concurrency)) as events,
    ):
        async for event in events:
            if isinstance(event, PageEvent):
                pages += 1
    return pages


async def via_harvest(base_url: str, users: list[str], concurrency: int) -> int:
    """Harvest every user into a fresh SQLite store."""
    with tempfile.TemporaryDirectory() as folder:
        async with client(base_url, concurrency) as c:
            outcomes = [
                o async for o in harvest(c, users, store=Path(folder) / "b.db", daily_quota=10**9)
            ]
    return sum(o.pages for o in outcomes)


Way = Callable[[str, list[str], int], Coroutine[Any, Any, int]]

# The ways the CPU section compares: the name --child takes, the label in the tables, the walk.
WAYS: dict[str, tuple[str, Way]] = {
    "bare": ("bare aiohttp + msgspec", bare),
    "bare_raw": ("bare, keeping raw bytes", bare_raw),
    "via_client": ("RepostClient.pages()", via_client),
    "via_walk_many": ("RepostClient.walk_many()", via_walk_many),
    "via_harvest": ("harvest into SQLite", via_harvest),
}


def cpu_cost(quick: bool) -> list[list[str]]:
    """Compare pages/s of the ways at zero latency, best of interleaved rounds."""
    users = [f"bench{i}_n500" for i in range(40 if quick else 120)]
    ways = dict(WAYS.values())
    best = dict.fromkeys(ways, 0.0)
    with simulator() as base_url:
        asyncio.run(bare(base_url, users, 8))  # warm the simulator's page cache for everyone
        for _ in range(2 if quick else 4):
            for name, way in ways.items():
                started = time.perf_counter()
                pages = asyncio.run(way(base_url, users, 8))
                best[name] = max(best[name], pages / (time.perf_counter() - started))
    base, raw = best["bare aiohttp + msgspec"], best["bare, keeping raw bytes"]
    # Two ratios: to the leanest loop, and to one that does the same decode as the client (the
    # raw bytes of every video kept beside its typed view), which isolates the client's own cost.
    return [
        [name, f"{rate:,.0f} pages/s", f"{rate / base:.2f}x", f"{rate / raw:.2f}x"]
        for name, rate in best.items()
    ]


# Under callgrind: 40 users of 500 reposts, 5 pages each, 200 pages a round, at concurrency 8.
INSTRUCTION_USERS = [f"bench{i}_n500" for i in range(40)]
INSTRUCTION_CONCURRENCY = 8
_COLLECTED = re.compile(r"^==\d+== Collected : (\d+)$", re.M)


def instructions_child(way: str, rounds: int, base_url: str) -> None:
    """Run in the child under callgrind: the warm-up, then ``rounds`` rounds of one way.

    Prints the pages the rounds walked (not the warm-up's).
    """
    users, concurrency = INSTRUCTION_USERS, INSTRUCTION_CONCURRENCY
    asyncio.run(bare(base_url, users, concurrency))  # imports, first connections, first token
    walk = WAYS[way][1]
    print(sum(asyncio.run(walk(base_url, users, concurrency)) for _ in range(rounds)))


def callgrind(valgrind: str, way: str, rounds: int, base_url: str) -> tuple[int, int]:
    """Run one child under callgrind; return the instructions it executed and its pages."""
    command = [
        valgrind,
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        way,
        str(rounds),
        base_url,
    ]
    # A fixed hash seed, so that no dict or set differs from one child to the next.
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    found = _COLLECTED.search(done.stderr)
    if done.returncode or found is None:
        tail = "\n".join(done.stderr.splitlines()[-20:])
        raise RuntimeError(f"callgrind child {way} x{rounds} exited {done.returncode}:\n{tail}")
    return int(found.group(1)), int(done.stdout.split()[-1])


def cpu_instructions(rounds: int, valgrind: str) -> tuple[list[list[str]], str]:
    """Count the instructions per page of each way under callgrind; return the rows and a note."""
    with simulator() as base_url:
        asyncio.run(bare(base_url, INSTRUCTION_USERS, INSTRUCTION_CONCURRENCY))  # warm its cache
        # Instruction counts do not depend on the load: two children at a time, one per core.
        # The baseline (warm-up alone) runs twice, which shows how far the counts repeat.
        jobs = [("bare", 0), ("bare", 0)] + [(way, rounds) for way in WAYS]
        with ThreadPoolExecutor(max_workers=2) as pool:
            counts = list(pool.map(lambda job: callgrind(valgrind, job[0], job[1], base_url), jobs))
    (first, _), (second, _) = counts[:2]
    baseline = (first + second) / 2
    per_page: dict[str, float] = {}
    for (way, _), (count, pages) in zip(jobs[2:], counts[2:], strict=True):
        if pages <= 0:
            raise RuntimeError(f"callgrind child {way} walked no pages")
        per_page[WAYS[way][0]] = (count - baseline) / pages
    base, raw = per_page["bare aiohttp + msgspec"], per_page["bare, keeping raw bytes"]
    rows = [
        [name, f"{ipp / 1e6:.2f} M instructions/page", f"{base / ipp:.2f}x", f"{raw / ipp:.2f}x"]
        for name, ipp in per_page.items()
    ]
    pages = counts[2][1]
    note = (
        f"baseline (warm-up alone): {first:,} and {second:,} instructions; the difference is"
        f" {abs(first - second) / pages:,.0f} instructions per page over the {pages} pages"
        f" of a way's {rounds} round(s)"
    )
    return rows, note


def latency_hiding(quick: bool) -> list[list[str]]:
    """Harvest at 100 ms per answer; compare the wall time with the ideal and the bare loop."""
    rows = []
    latency = 0.1
    with simulator("--latency", str(latency)) as base_url:
        for concurrency in (8, 32) if quick else (8, 32, 128):
            # Eight rounds per worker, so that start-up (a token, a store) is a small share.
            users = [f"lat{concurrency}_{i}_n300" for i in range(concurrency * 8)]
            # Warm the simulator's cache: a user it has never seen costs it a few milliseconds
            # of CPU to generate, which queues the other answers behind it on two cores.
            asyncio.run(bare(base_url, users, concurrency))
            for name, way in (("bare loop", bare), ("harvest", via_harvest)):
                started = time.perf_counter()
                pages = asyncio.run(way(base_url, users, concurrency))
                wall = time.perf_counter() - started
                ideal = pages * latency / concurrency
                rows.append(
                    [
                        f"{name}, concurrency {concurrency}",
                        f"{pages} pages",
                        f"{wall:.2f} s / ideal {ideal:.2f} s = {wall / ideal:.2f}x",
                    ]
                )
    return rows


RSS_CHILD = """
import asyncio, resource, sys, tempfile
from pathlib import Path
from tiktok_repost_async import RepostClient
from tiktok_repost_async.harvester import harvest
from tiktok_repost_async.models import REPOSTED_RESPONSE_DECODER

async def main(base_url, total):
    names = (f"empty_rss{i}" for i in range(total))
    with tempfile.TemporaryDirectory() as folder:
        async with RepostClient("{key}", "{secret}", base_url=base_url,
                                requests_per_second=1_000_000, concurrency=16) as client:
            async for _ in harvest(client, names, store=Path(folder) / "r.db",
                                   daily_quota=10**9):
                pass

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def memory(quick: bool) -> list[list[str]]:
    """Measure the peak RSS of harvest processes over growing streams of names."""
    script = RSS_CHILD.replace("{key}", TEST_CLIENT_KEY).replace("{secret}", TEST_CLIENT_SECRET)
    rows = []
    with simulator() as base_url:
        for total in (1_000, 10_000) if quick else (1_000, 10_000, 100_000):
            started = time.perf_counter()
            out = subprocess.run(
                [sys.executable, "-c", script, base_url, str(total)],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            seconds = time.perf_counter() - started
            rows.append(
                [
                    f"harvest of {total:,} names",
                    f"peak RSS {int(out) / 1024:.0f} MB",
                    f"{total / seconds:,.0f} users/s",
                ]
            )
    return rows


def table(title: str, rows: list[list[str]]) -> None:
    """Print one section as a Markdown table."""
    print(f"\n{title}\n")
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")


def main() -> None:
    """Run every measurement and print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller runs, for a smoke test")
    parser.add_argument(
        "--only",
        choices=("cpu", "latency", "memory"),
        action="append",
        help="run only this section (repeatable); all three by default",
    )
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="in the cpu section, count instructions per page under valgrind's callgrind"
        " instead of pages/s (deterministic; needs valgrind)",
    )
    # Internal: the child process that --instructions runs under callgrind.
    parser.add_argument(
        "--child", nargs=3, metavar=("WAY", "ROUNDS", "URL"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.child:
        way, rounds, base_url = args.child
        instructions_child(way, int(rounds), base_url)
        return
    only = set(args.only or ("cpu", "latency", "memory"))
    valgrind = ""
    if args.instructions:
        if "cpu" not in only:
            parser.error("--instructions applies to the cpu section: add --only cpu")
        valgrind = shutil.which("valgrind") or ""
        if not valgrind:
            parser.error("--instructions needs valgrind (its callgrind tool) on PATH")
    print(f"python {sys.version.split()[0]}, {time.strftime('%Y-%m-%d')}")
    if "cpu" in only and valgrind:
        rounds = 1 if args.quick else 2
        rows, note = cpu_instructions(rounds, valgrind)
        table(
            f"CPU cost at zero latency, user-space instructions per page (callgrind, {rounds}"
            f" round(s) of {len(INSTRUCTION_USERS)} users; ratio = bare's count / the way's)",
            rows,
        )
        print(f"\n{note}")
    elif "cpu" in only:
        table("CPU cost at zero latency (best of interleaved rounds)", cpu_cost(args.quick))
    if "latency" in only:
        table("Latency hiding at 100 ms per answer", latency_hiding(args.quick))
    if "memory" in only:
        table("Memory, streamed usernames", memory(args.quick))


if __name__ == "__main__":
    main()
