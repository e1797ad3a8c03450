"""The hand-written pool over ``reposted_videos()``, timed in a process of its own.

Run as a script, it times whichever ``tiktok_repost_async`` its ``PYTHONPATH`` holds: this
tree, or an older revision unpacked by ``bench_wrapper.py --versus``. It imports nothing of the
package but ``RepostClient`` and the simulator's test credentials, which every version has.

    python benchmarks/_hand_pool.py BASE_URL --users 150 --runs 3 --concurrency 32
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

import tiktok_repost_async
from tiktok_repost_async import RepostClient
from tiktok_repost_async.simulator import TEST_CLIENT_KEY, TEST_CLIENT_SECRET


def mixed_names(users: int) -> list[str]:
    """Return the mixed workload's users: 1 to 4 pages of 100 videos each, in a fixed order."""
    return [f"mx{i}_n{(i * 7919) % 400 + 1}" for i in range(users)]


async def hand_pool(client: Any, users: list[str], concurrency: int) -> dict[str, list[int]]:
    """Walk every user from ``concurrency`` hand-written workers over ``reposted_videos()``."""
    found: dict[str, list[int]] = {}
    queue = list(reversed(users))

    async def worker() -> None:
        while queue:
            user = queue.pop()
            found[user] = [video.id async for video in client.reposted_videos(user)]

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return found


async def _timed_run(base_url: str, users: list[str], concurrency: int, max_count: int) -> int:
    # The same client as bench_wrapper.client(): a limiter too fast to slow it.
    async with RepostClient(
        TEST_CLIENT_KEY,
        TEST_CLIENT_SECRET,
        base_url=base_url,
        max_count=max_count,
        requests_per_second=1_000_000,
        concurrency=concurrency,
    ) as client:
        found = await hand_pool(client, users, concurrency)
    return sum(map(len, found.values()))


def main() -> None:
    """Time the pool ``--runs`` times after one untimed run; print the seconds as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base_url")
    parser.add_argument("--users", type=int, default=150)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--max-count", type=int, default=100)
    args = parser.parse_args()
    users = mixed_names(args.users)
    # Untimed: the interpreter's first pass over the code (imports, caches) is start-up.
    asyncio.run(_timed_run(args.base_url, users, args.concurrency, args.max_count))
    seconds: list[float] = []
    videos: list[int] = []
    for _ in range(args.runs):
        started = time.perf_counter()
        videos.append(
            asyncio.run(_timed_run(args.base_url, users, args.concurrency, args.max_count))
        )
        seconds.append(time.perf_counter() - started)
    package = tiktok_repost_async.__file__
    print(json.dumps({"seconds": seconds, "videos": videos, "package": package}))


if __name__ == "__main__":
    main()
