"""Our rate limiter against the simulator's enforcing limit, beside a plain aiolimiter bucket.

The simulator runs in its own process with ``--rate-limit R`` (``python -m
tiktok_repost_async.simulator --rate-limit R --latency 0.05``): it answers 429 to any research
request beyond R in a sliding second, the refused ones counted too. A client
with ``requests_per_second=R`` and concurrency 16 walks 10-page users for a fixed time; every
research request's send time and status are taken client-side, by wrapping
``RepostClient._send``. Reported per row: the configured rate, the requests sent per second,
the achieved rate (pages answered 200 per second), the most requests sent in any one-second
window, and the 429s drawn. Goal for our limiter (``make_limiter``, the default): achieved >= 0.95
of R, no 429, never more than R in a second. One request warms the simulator before the rows
(its first answer waits ~100 ms while it sets up, which would bunch the requests behind it).

The baseline row passes a plain ``aiolimiter.AsyncLimiter(R, 1)`` as ``limiter=``: the leaky
bucket most code uses, which lets a full bucket through at once and R more within the same second,
and so draws 429s (each retried after a backoff, which also costs quota on the live API).

    python benchmarks/bench_limiter.py [--rates 20 50] [--seconds 8] [--json [FILE]]
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import itertools
import logging
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from _common import add_json_option, simulator, write_json
from aiolimiter import AsyncLimiter

from tiktok_repost_async import RepostClient
from tiktok_repost_async.protocol import Request
from tiktok_repost_async.simulator import RESEARCH_PATH, TEST_CLIENT_KEY, TEST_CLIENT_SECRET

GOAL = 0.95
CONCURRENCY = 16
LATENCY = 0.05


@dataclass
class Row:
    """One limiter at one configured rate."""

    limiter: str
    rate: int
    seconds: float
    sent: int
    answered: Counter[int]
    peak: int

    @property
    def achieved(self) -> float:
        """Return the pages answered 200 per second."""
        return self.answered[200] / self.seconds

    @property
    def met(self) -> bool:
        """Tell whether the row meets the goal set for our limiter."""
        return (
            self.achieved >= GOAL * self.rate and not self.answered[429] and self.peak <= self.rate
        )

    def cells(self) -> list[str]:
        """Return the table cells of this row."""
        return [
            self.limiter,
            f"{self.rate}",
            f"{self.sent / self.seconds:.2f}",
            f"{self.achieved:.2f}",
            f"{self.achieved / self.rate:.3f}",
            f"{self.peak}",
            f"{self.answered[429]}",
        ]


def peak_per_second(times: list[float]) -> int:
    """Return the most timestamps in any one-second window (half-open, sliding)."""
    times = sorted(times)
    return max((bisect.bisect_left(times, t + 1.0) - i for i, t in enumerate(times)), default=0)


async def drive(base_url: str, rate: int, naive: bool, seconds: float) -> Row:
    """Walk users at ``rate`` from 16 workers for ``seconds`` after the first research request."""
    sends: list[float] = []
    statuses: Counter[int] = Counter()
    first = asyncio.Event()
    limiter = AsyncLimiter(rate, 1) if naive else None
    c = RepostClient(
        TEST_CLIENT_KEY,
        TEST_CLIENT_SECRET,
        base_url=base_url,
        requests_per_second=rate,
        concurrency=CONCURRENCY,
        limiter=limiter,
    )
    original = c._send
    end = float("inf")

    async def send(request: Request) -> tuple[int, Mapping[str, str], bytes]:
        """Send as the client does; note a research request's send time and status."""
        if RESEARCH_PATH not in request.url:
            return await original(request)
        sent = time.perf_counter()
        sends.append(sent)
        first.set()
        answer = await original(request)
        if sent < end:
            statuses[answer[0]] += 1
        return answer

    c._send = send  # type: ignore[method-assign]
    names = (f"lim{rate}_{'naive' if naive else 'ours'}_{i}_n1000" for i in itertools.count())

    async def worker() -> None:
        """Walk one user after the other until cancelled."""
        while True:
            async for _ in c.pages(next(names)):
                pass

    async with c:
        workers = [asyncio.create_task(worker()) for _ in range(CONCURRENCY)]
        await first.wait()
        end = sends[0] + seconds
        await asyncio.sleep(max(0.0, end - time.perf_counter()))
        # Answers to requests sent before the end still count; give them a moment to arrive.
        await asyncio.sleep(LATENCY * 4)
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
    window = [t for t in sends if t < end]
    label = f"aiolimiter.AsyncLimiter({rate}, 1)" if naive else "make_limiter (ours)"
    return Row(label, rate, seconds, len(window), statuses, peak_per_second(window))


async def warm_up(base_url: str) -> None:
    """Send one research request, so that the simulator's set-up is done before a row starts."""
    async with RepostClient(TEST_CLIENT_KEY, TEST_CLIENT_SECRET, base_url=base_url) as c:
        await c.fetch_page("warmup_n100")


def run(rates: list[int], seconds: float) -> list[Row]:
    """Measure both limiters at each rate against a simulator enforcing that rate."""
    rows = []
    for rate in rates:
        with simulator("--rate-limit", str(rate), "--latency", str(LATENCY)) as base_url:
            # A cold simulator holds its first research answer ~100 ms while it sets up; the
            # requests queued behind it then arrive together and overflow its sliding second,
            # which is the simulator's start-up and not the limiter's doing.
            asyncio.run(warm_up(base_url))
            time.sleep(1.1)
            for naive in (False, True):
                rows.append(asyncio.run(drive(base_url, rate, naive, seconds)))
                time.sleep(1.1)  # let the simulator's sliding second empty between rows
    return rows


def results(rows: list[Row]) -> list[dict[str, Any]]:
    """Return the goal rows, for run_all.py: our limiter meets it, the baseline is shown."""
    out = []
    for row in rows:
        ours = row.limiter.startswith("make_limiter")
        out.append(
            {
                "benchmark": f"limiter: {row.limiter} at R={row.rate}"
                + ("" if ours else " (baseline)"),
                "goal": f">= {GOAL:g} R, 0 x 429, peak <= R" if ours else "(baseline)",
                "measured": f"{row.achieved / row.rate:.3f} R, {row.answered[429]} x 429,"
                f" peak {row.peak}",
                "met": row.met if ours else None,
            }
        )
    return out


def main() -> None:
    """Run every rate and print the table, or the results as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", type=int, nargs="+", default=[20, 50], metavar="R")
    parser.add_argument("--seconds", type=float, default=8.0, help="length of each row (8)")
    add_json_option(parser)
    args = parser.parse_args()
    # The baseline's 429s are counted in the table; a warning for each of its retries is noise.
    logging.getLogger("tiktok_repost_async.client").setLevel(logging.ERROR)
    rows = run(args.rates, args.seconds)
    payload = {"results": results(rows), "raw": [row.cells() for row in rows]}
    if write_json(payload, args.json):
        return
    print(
        f"concurrency {CONCURRENCY}, {LATENCY * 1e3:.0f} ms per answer, {args.seconds:g} s"
        " per row; the simulator refuses beyond R requests in a sliding second"
    )
    header = ["limiter", "R/s", "sent/s", "achieved/s", "achieved/R", "max in 1 s", "429s"]
    table = [header, *(row.cells() for row in rows)]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    for line in table:
        print("  ".join(c.rjust(w) for c, w in zip(line, widths, strict=True)))
    for row in rows:
        if row.limiter.startswith("make_limiter"):
            verdict = "met" if row.met else "NOT met"
            print(
                f"goal achieved >= {GOAL:g} R, no 429, max <= R, at R={row.rate}: {verdict}"
                f" ({row.achieved / row.rate:.3f} R, {row.answered[429]} x 429, max {row.peak})"
            )


if __name__ == "__main__":
    main()
