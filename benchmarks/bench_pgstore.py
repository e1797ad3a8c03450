"""Harvests into PostgreSQL beside SQLite, and 1, 2 and 4 processes sharing one PostgreSQL store.

The simulator runs in its own process. Two measurements, each beside its baseline in the run:

1. One process, zero latency: pages/s of a harvest into a fresh SQLite store and into a fresh
   PostgreSQL store (a local server, fsync off as a test server runs), the same users
   (best of interleaved rounds). What a page's commit costs on each engine.
2. 1, 2 and 4 ``harvest`` processes at once on one fresh PostgreSQL store and one users list, at
   100 ms per answer and concurrency 4 each: wall time (from start to the last exit), research
   requests (the store's ledger) and pages over the minimum. Goal: every page fetched once
   (requests == minimum), and the wall time shrinking with the processes as the work is shared.

A PostgreSQL server is needed: ``--url postgresql://...`` (an empty database the benchmark may
fill; each measurement makes its own database beside it), or none, and the benchmark starts a
throwaway server from the system's binaries (Debian's ``postgresql`` package; as root it runs as
the ``postgres`` user), as the tests do.

    python benchmarks/bench_pgstore.py [--quick] [--url URL] [--json [FILE]]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import psycopg
from _common import add_json_option, simulator, write_json

from tiktok_repost_async import PostgresStore, RepostClient, harvest, mask_url
from tiktok_repost_async.simulator import TEST_CLIENT_KEY, TEST_CLIENT_SECRET
from tiktok_repost_async.simulator._data import pages_needed

CHILD = """
import asyncio, sys
from tiktok_repost_async import RepostClient, harvest

async def main() -> None:
    async with RepostClient(
        sys.argv[1], sys.argv[2], base_url=sys.argv[3], requests_per_second=1_000_000,
        concurrency=int(sys.argv[5]),
    ) as client:
        names = sys.argv[6].split(",")
        async for _ in harvest(client, names, store=sys.argv[4], daily_quota=10**9):
            pass

asyncio.run(main())
"""


@contextlib.contextmanager
def throwaway_server() -> Iterator[str]:
    """Start a PostgreSQL server on a free loopback port; yield its URL; stop and delete it."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    pg_ctl = shutil.which("pg_ctl") or (found[-1] if found else None)
    if pg_ctl is None:
        raise SystemExit("no PostgreSQL binaries: apt-get install postgresql, or pass --url")
    bindir = Path(pg_ctl).resolve().parent
    as_user: list[str] = []
    home = Path(tempfile.mkdtemp(prefix="bench-pg-", dir="/tmp"))
    password = secrets.token_urlsafe(12)
    (home / "pw").write_text(password + "\n")
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")
        for path in (home, home / "pw"):
            os.chown(path, owner.pw_uid, owner.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    data = home / "data"
    subprocess.run(
        [*as_user, str(bindir / "initdb"), "-D", str(data), "-U", "postgres",
         "--auth-host=scram-sha-256", "--auth-local=trust", f"--pwfile={home / 'pw'}",
         "--no-sync"],
        check=True, capture_output=True,
    )  # fmt: skip
    options = f"-h 127.0.0.1 -p {port} -k {home} -F -c fsync=off"
    subprocess.run(
        [*as_user, str(pg_ctl), "-D", str(data), "-w", "-s", "-l", str(home / "log"), "-o",
         options, "start"],
        check=True, capture_output=True,
    )  # fmt: skip
    try:
        yield f"postgresql://postgres:{urllib.parse.quote(password)}@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*as_user, str(pg_ctl), "-D", str(data), "-m", "immediate", "-w", "-s", "stop"],
            check=False, capture_output=True,
        )  # fmt: skip
        shutil.rmtree(home, ignore_errors=True)


def fresh_database(url: str) -> str:
    """Create an empty database on ``url``'s server and return its URL."""
    name = f"bench_{secrets.token_hex(4)}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(path=f"/{name}"))


async def one_harvest(base_url: str, users: list[str], store: str | Path) -> int:
    """Harvest every user into ``store`` in this process; return the pages stored."""
    async with RepostClient(
        TEST_CLIENT_KEY,
        TEST_CLIENT_SECRET,
        base_url=base_url,
        requests_per_second=1_000_000,
        concurrency=8,
    ) as client:
        outcomes = [o async for o in harvest(client, users, store=store, daily_quota=10**9)]
    return sum(o.pages for o in outcomes)


def engines(server: str, quick: bool) -> list[list[str]]:
    """Compare pages/s into SQLite and into PostgreSQL at zero latency."""
    users = [f"pgb{i}_n1000" for i in range(24 if quick else 60)]
    best = {"SQLite": 0.0, "PostgreSQL": 0.0}
    pages = 0
    with simulator() as base_url, tempfile.TemporaryDirectory() as folder:
        asyncio.run(one_harvest(base_url, users, Path(folder) / "warm.db"))  # the sim's cache
        for round_ in range(2 if quick else 3):
            for engine in best:
                store: str | Path = (
                    Path(folder) / f"r{round_}.db" if engine == "SQLite" else fresh_database(server)
                )
                started = time.perf_counter()
                pages = asyncio.run(one_harvest(base_url, users, store))
                best[engine] = max(best[engine], pages / (time.perf_counter() - started))
    base = best["SQLite"]
    return [
        [engine, f"{pages:,}", f"{rate:,.0f}", f"{rate / base:.2f}x"]
        for engine, rate in best.items()
    ]


def processes(server: str, quick: bool) -> list[list[str]]:
    """Run 1, 2 and 4 harvest processes on one PostgreSQL store and one users list."""
    users = [f"pgp{i}_n800" for i in range(24 if quick else 48)]
    minimum = sum(pages_needed(name, 100) for name in users)
    concurrency = 4
    rows = []
    with simulator("--latency", "0.1") as base_url, tempfile.TemporaryDirectory() as folder:
        script = Path(folder) / "child.py"
        script.write_text(CHILD)
        one = 0.0
        for count in (1, 2, 4):
            url = fresh_database(server)
            argv = [
                sys.executable, str(script), TEST_CLIENT_KEY, TEST_CLIENT_SECRET, base_url, url,
                str(concurrency), ",".join(users),
            ]  # fmt: skip
            started = time.perf_counter()
            children = [subprocess.Popen(argv) for _ in range(count)]
            codes = [child.wait(timeout=600) for child in children]
            wall = time.perf_counter() - started
            with PostgresStore(url, create=False) as store:
                requests = store.requests_on()
                runs = store.runs()
                done = store.state_counts()["done"]
            one = one or wall
            ideal = minimum * 0.1 / (concurrency * count)
            shares = "/".join(str(run.pages) for run in sorted(runs, key=lambda run: run.id))
            rows.append(
                [
                    str(count),
                    f"{wall:.1f}",
                    f"{one / wall:.2f}x",
                    f"{ideal:.1f}",
                    f"{requests:,} / {minimum:,}",
                    shares,
                    "ok" if set(codes) == {0} and done == len(users) else f"exit {codes}",
                ]
            )
    return rows


def table(header: list[str], rows: list[list[str]]) -> None:
    """Print a Markdown table."""
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")


def results(engine_rows: list[list[str]], process_rows: list[list[str]]) -> list[dict[str, object]]:
    """Return run_all.py's summary rows: the engines' rates, and the processes' shared work."""
    rates = {row[0]: row[2] for row in engine_rows}
    ratio = engine_rows[-1][3]
    exact = all(row[4].split(" / ")[0] == row[4].split(" / ")[1] for row in process_rows)
    done = all(row[6] == "ok" for row in process_rows)
    walls = [float(row[1]) for row in process_rows]
    return [
        {
            "benchmark": "pgstore: harvest into PostgreSQL beside SQLite, zero latency",
            "goal": "(info)",
            "measured": f"{rates['PostgreSQL']} vs {rates['SQLite']} pages/s ({ratio})",
            "met": None,
        },
        {
            "benchmark": "pgstore: 1, 2 and 4 processes on one PostgreSQL store",
            "goal": "each page fetched once, all done, wall time shrinking",
            "measured": " / ".join(f"{wall:.1f} s" for wall in walls)
            + ("" if exact else "; pages fetched twice"),
            "met": exact and done and walls == sorted(walls, reverse=True),
        },
    ]


def main() -> None:
    """Run the measurements and print their tables (or hand them to run_all.py as JSON)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer users and rounds")
    parser.add_argument("--url", help="a PostgreSQL server's URL (default: start a throwaway one)")
    add_json_option(parser)
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        server = args.url or stack.enter_context(throwaway_server())
        engine_rows = engines(server, args.quick)
        process_rows = processes(server, args.quick)
    if write_json({"results": results(engine_rows, process_rows)}, args.json):
        return
    print(f"PostgreSQL: {mask_url(server)}\n")
    print("1. one process, zero latency, concurrency 8: pages/s into each engine (best of rounds)")
    table(["store", "pages", "pages/s", "vs SQLite"], engine_rows)
    print("\n2. N processes on one PostgreSQL store, one users list, 100 ms, concurrency 4 each")
    table(
        ["processes", "wall s", "speed-up", "ideal s", "requests / minimum", "pages per run",
         "all done"],
        process_rows,
    )  # fmt: skip


if __name__ == "__main__":
    main()
