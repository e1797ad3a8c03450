"""How many 100-video pages a second the simulator serves, beside a trivial aiohttp server.

Each server runs in its own process (`python -m tiktok_repost_async.simulator` for the simulator),
so that the load generator here does not share its interpreter. Keep-alive aiohttp clients walk
users' cursor chains asking for every field; the baseline answers the same requests with a fixed
body of the same size, so the ratio between the rows says what the simulator's own work costs on
this machine. The server's CPU seconds per request (from psutil) tell its capacity on one core even
when the load generator, not the server, is what saturates:

    python benchmarks/bench_simulator.py [--seconds 5] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import aiohttp
import psutil
from _common import test_token
from aiohttp import web

from tiktok_repost_async.simulator import (
    RESEARCH_PATH,
    TOKEN_PATH,
    VIDEO_FIELDS,
)

FIELDS = ",".join(VIDEO_FIELDS)
PAGE = 100


@dataclass
class Row:
    """One measured run."""

    name: str
    requests: int
    megabytes: float
    seconds: float
    latencies: list[float]
    server_cpu: float

    def cells(self) -> list[str]:
        """Return the table cells of this row."""
        lat = sorted(self.latencies)
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
        cpu_us = self.server_cpu / self.requests * 1e6
        return [
            self.name,
            f"{self.requests / self.seconds:,.0f}",
            f"{self.megabytes / self.seconds:,.1f}",
            f"{statistics.median(lat) * 1e3:.1f}",
            f"{p99 * 1e3:.1f}",
            f"{cpu_us:,.0f}",
            f"{1e6 / cpu_us:,.0f}",
        ]


def serve_baseline(size: int) -> None:
    """Serve a fixed JSON body of `size` bytes at both API paths; print the base URL."""
    body = b'{"data":{"reposted_videos":[' + b" " * max(0, size - 90) + b'],"cursor":100}}'
    token = b'{"access_token":"clt.baseline","expires_in":7200,"token_type":"Bearer"}'

    async def page(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=body, content_type="application/json")

    async def issue(request: web.Request) -> web.Response:
        await request.post()
        return web.Response(body=token, content_type="application/json")

    async def main() -> None:
        app = web.Application()
        app.router.add_post(RESEARCH_PATH, page)
        app.router.add_post(TOKEN_PATH, issue)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        print(f"http://127.0.0.1:{runner.addresses[0][1]}", flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()

    asyncio.run(main())


def start_server(command: list[str]) -> tuple[subprocess.Popen[str], str]:
    """Start a server process and return it with the base URL it prints first."""
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    assert process.stdout is not None
    return process, process.stdout.readline().strip()


def users(fresh: bool) -> Iterator[tuple[str, int]]:
    """Yield (username, cursor) pairs: cursor walks over a pool of users, or every user new."""
    if fresh:
        yield from ((f"fresh_n{PAGE}_{i}", 0) for i in itertools.count())
    pool = [f"bench_n1000_{i}" for i in range(64)]
    for cursor in itertools.cycle(range(0, 1000, PAGE)):
        for user in pool:
            yield user, cursor


def cpu_seconds(process: psutil.Process) -> float:
    """Return the CPU time a process has used so far."""
    times = process.cpu_times()
    return float(times.user + times.system)


async def drive(
    base_url: str, server: psutil.Process, seconds: float, concurrency: int, fresh: bool
) -> Row:
    """Send page requests from `concurrency` keep-alive workers for `seconds`; measure them."""
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(base_url, connector=connector) as session:
        token = await test_token(session)
        headers = {"Authorization": f"Bearer {token}"}
        work = users(fresh)
        latencies: list[float] = []
        received = 0
        deadline = 0.0

        async def worker() -> None:
            nonlocal received
            while (start := time.perf_counter()) < deadline:
                username, cursor = next(work)
                payload = {"username": username, "max_count": PAGE, "cursor": cursor}
                async with session.post(
                    RESEARCH_PATH, params={"fields": FIELDS}, json=payload, headers=headers
                ) as response:
                    body = await response.read()
                    assert response.status == 200, body[:200]
                latencies.append(time.perf_counter() - start)
                received += len(body)

        # A warm-up pass fills the simulator's encoding cache, as a long harvest would.
        deadline = time.perf_counter() + (0.2 if fresh else 1.5)
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        latencies.clear()
        received = 0
        cpu = cpu_seconds(server)
        began = time.perf_counter()
        deadline = began + seconds
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
        cpu = cpu_seconds(server) - cpu
    return Row("", len(latencies), received / 1e6, elapsed, latencies, cpu)


def measure(name: str, command: list[str], args: argparse.Namespace, fresh: bool) -> Row:
    """Run one server process under load and return its row."""
    process, base_url = start_server(command)
    try:
        server = psutil.Process(process.pid)
        row = asyncio.run(drive(base_url, server, args.seconds, args.concurrency, fresh))
        row.name = name
        return row
    finally:
        process.terminate()
        process.wait()


def main() -> None:
    """Measure the baseline and the simulator, then print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--serve-baseline", type=int, metavar="BYTES", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_baseline is not None:
        serve_baseline(args.serve_baseline)
        return
    simulator = [sys.executable, "-m", "tiktok_repost_async.simulator", "--port", "0"]
    sample = asyncio.run(page_size(simulator))
    baseline = [sys.executable, __file__, "--serve-baseline", str(sample)]
    rows = [
        measure("baseline: fixed body", baseline, args, fresh=False),
        measure("simulator: cached users", simulator, args, fresh=False),
        measure("simulator: every user new", simulator, args, fresh=True),
    ]
    header = ["server", "req/s", "MB/s", "p50 ms", "p99 ms", "CPU us/req", "req/s/core"]
    table = [header] + [row.cells() for row in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    print(
        f"{PAGE}-video pages, all fields, {args.concurrency} keep-alive connections, "
        f"{args.seconds:g} s per row, {psutil.cpu_count()} CPUs"
    )
    for line in table:
        print("  ".join(cell.rjust(width) for cell, width in zip(line, widths, strict=True)))
    print(f"simulator / baseline: {rows[1].requests / rows[0].requests:.2f} of the requests/s")


async def page_size(command: list[str]) -> int:
    """Return the mean size of the simulator's 100-video pages, to size the baseline's body."""
    process, base_url = start_server(command)
    try:
        row = await drive(base_url, psutil.Process(process.pid), 0.5, 4, fresh=False)
        return int(row.megabytes * 1e6 / row.requests)
    finally:
        process.terminate()
        process.wait()


if __name__ == "__main__":
    main()
