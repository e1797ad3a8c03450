"""The harvest against the simulator: CPU cost beside a bare loop, latency hiding, memory.

The simulator runs in its own process (``python -m tiktok_repost_async.simulator``), so that its
work does not count against the code measured here. Three measurements, each beside its baseline
in the same run:

1. CPU cost, zero latency: pages/s of a bare aiohttp + msgspec loop that walks the same users'
   cursor chains, of ``RepostClient.pages()`` (from as many plain workers), of
   ``RepostClient.walk_many()`` (the engine's own pool), and of a harvest into a fresh SQLite
   store; the last column compares with a bare loop that decodes as the client must to keep each
   video's raw bytes. Goals: pages() and walk_many() >= 0.8x bare, harvest >= 0.7x bare.
2. Latency hiding at 100 ms per answer: wall time of a harvest over the ideal
   (pages x latency / concurrency). Goal <= 1.15.
3. Peak RSS of a process harvesting 10,000 and then 100,000 streamed usernames (one request
   each). Goal <= 200 MB and flat.

    python benchmarks/bench_harvest.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
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

    With ``keep_raw`` it does the decode the client must do to keep each video's raw bytes (the
    page with its videos as msgspec.Raw, then each video typed on its own), and nothing else.
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
                        for video in envelope.data.reposted_videos or ():
                            VIDEO_DECODER.decode(bytes(video))
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


def cpu_cost(quick: bool) -> list[list[str]]:
    """Compare pages/s of the three ways at zero latency, best of interleaved rounds."""
    users = [f"bench{i}_n500" for i in range(40 if quick else 120)]
    ways = {
        "bare aiohttp + msgspec": bare,
        "bare, keeping raw bytes": bare_raw,
        "RepostClient.pages()": via_client,
        "RepostClient.walk_many()": via_walk_many,
        "harvest into SQLite": via_harvest,
    }
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
    args = parser.parse_args()
    only = set(args.only or ("cpu", "latency", "memory"))
    print(f"python {sys.version.split()[0]}, {time.strftime('%Y-%m-%d')}")
    if "cpu" in only:
        table("CPU cost at zero latency (best of interleaved rounds)", cpu_cost(args.quick))
    if "latency" in only:
        table("Latency hiding at 100 ms per answer", latency_hiding(args.quick))
    if "memory" in only:
        table("Memory, streamed usernames", memory(args.quick))


if __name__ == "__main__":
    main()
