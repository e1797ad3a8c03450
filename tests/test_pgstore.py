"""The PostgreSQL store: harvests end exact, processes share one users list, secrets stay out.

Every test runs against the session's real PostgreSQL server (`postgres_url`: a fresh database
each) and the simulator over loopback; expectations come from the simulator's own wire JSON and
request counts.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import pytest
from support import make_client, run_main, sim_env

from tiktok_repost_async import (
    PostgresStore,
    Store,
    StoreError,
    StoreLike,
    UserRecord,
    UserState,
    harvest,
    open_store,
)
from tiktok_repost_async.simulator import TEST_CLIENT_KEY, TEST_CLIENT_SECRET, Simulator
from tiktok_repost_async.store import PageCommit

NAMES = ["pg_a_n250", "pg_b_n1", "pg_c_n0", "missing_pg", "private_pg", "pg_d_n420"]


def stored(store: StoreLike) -> dict[str, list[bytes]]:
    out: dict[str, list[bytes]] = {}
    for user, _, data in store.iter_videos():
        out.setdefault(user, []).append(data)
    return out


def truth(sim: Simulator, names: list[str]) -> dict[str, list[object]]:
    return {name: videos for name in names if (videos := sim.ground_truth(name))}


async def test_a_harvest_into_postgres_keeps_the_wire_bytes_and_provenance(
    sim: Simulator, postgres_url: str, tmp_path: Path
) -> None:
    async with make_client(sim) as client:
        outcomes = {o.username: o.state async for o in harvest(client, NAMES, store=postgres_url)}
    sent = sim.stats.requests
    assert outcomes["pg_a_n250"] is UserState.DONE
    assert outcomes["missing_pg"] is UserState.NOT_FOUND
    assert outcomes["private_pg"] is UserState.UNAVAILABLE
    # The same names into SQLite, from a simulator that sends the same bytes.
    db = tmp_path / "h.db"
    async with make_client(sim) as client:
        async for _ in harvest(client, NAMES, store=db):
            pass
    with open_store(postgres_url, create=False) as store, Store(db, create=False) as lite:
        assert isinstance(store, PostgresStore)
        pg = stored(store)
        # What the simulator sent, in the API's order, decoded only here to compare.
        assert {user: [json.loads(raw) for raw in rows] for user, rows in pg.items()} == truth(
            sim, NAMES
        )
        # Byte for byte what the SQLite store keeps from the same wire.
        assert pg == stored(lite)
        assert store.requests_on() == sent
        assert store.state_counts()[UserState.DONE] == 4
        provenance = list(store.iter_videos_with_provenance())
        assert all(row[3] == 1 and row[4] and row[5] for row in provenance)
        runs = store.runs()
        assert [run.outcome for run in runs] == ["finished"]
        assert runs[0].requests == sent


async def test_status_and_export_read_a_postgres_store_and_never_show_its_password(
    sim: Simulator, postgres_url: str, tmp_path: Path
) -> None:
    password = postgres_url.split(":")[2].split("@")[0]
    async with make_client(sim) as client:
        async for _ in harvest(client, NAMES, store=postgres_url):
            pass
    status = await asyncio.to_thread(run_main, "status", "--db", postgres_url)
    assert status.returncode == 0, status.stderr
    assert "done" in status.stdout
    assert "***" in status.stdout
    out = tmp_path / "out.jsonl"
    export = await asyncio.to_thread(run_main, "export", "--db", postgres_url, "-o", out)
    assert export.returncode == 0, export.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    expected = [{"reposted_by": n, **v} for n, vs in truth(sim, NAMES).items() for v in vs]
    assert lines == expected
    with PostgresStore(postgres_url, create=False) as store:
        shown = [repr(store), store.label, str(store.path)]
    wrong = postgres_url.replace(password, password + "x")
    refused = await asyncio.to_thread(run_main, "status", "--db", wrong)
    assert refused.returncode == 2
    assert "password" in refused.stderr  # libpq says authentication failed
    for text in (*shown, status.stdout, status.stderr, export.stderr, refused.stderr):
        assert password not in text


async def test_two_harvests_on_one_postgres_store_share_its_daily_quota(
    sim: Simulator, postgres_url: str
) -> None:
    # No --ledger: the store's own day is one row every process books against, atomically.
    names = [f"q{i}_n1100" for i in range(8)]

    async def one() -> BaseException | None:
        async with make_client(sim) as client:
            store = PostgresStore(postgres_url, fields=client.fields, max_count=client.max_count)
            try:
                async for _ in harvest(client, names, store=store, daily_quota=60):
                    pass
            except Exception as stop:
                return stop
            finally:
                store.close()
        return None

    stops = await asyncio.gather(one(), one())
    assert all(stop is not None and "quota" in str(stop) for stop in stops)
    with PostgresStore(postgres_url, create=False) as store:
        assert store.requests_on() == sim.stats.requests <= 60
        # Shared, not duplicated: no page was fetched twice.
        assert max(sim.stats.by_cursor.values()) == 1


CHILD = textwrap.dedent(
    f"""
    import asyncio, sys
    from tiktok_repost_async import PostgresStore, RepostClient, harvest

    async def main() -> None:
        names = sys.argv[3].split(",")
        async with RepostClient(
            {TEST_CLIENT_KEY!r}, {TEST_CLIENT_SECRET!r}, base_url=sys.argv[1],
            requests_per_second=10_000, concurrency=int(sys.argv[4]),
        ) as client:
            store = PostgresStore(
                sys.argv[2], fields=client.fields, max_count=client.max_count,
                lease=float(sys.argv[5]),
            )
            # As if on machines of their own: a dead one is known by its lease's end alone.
            store._reap_local = sys.argv[6:] != ["apart"]
            with store:
                async for _ in harvest(client, names, store=store, daily_quota=10**6):
                    pass

    asyncio.run(main())
    """
)


def videos_in(url: str) -> int:
    try:
        with PostgresStore(url, create=False) as store:
            return store.video_count()
    except Exception:
        return 0  # a child is still creating it


def pages_of(url: str, pid: int) -> int:
    """Return the pages stored by the run of process ``pid`` (its holder names the pid)."""
    import psycopg

    try:
        with psycopg.connect(url) as conn:
            row = conn.execute(
                "SELECT coalesce(sum(pages), 0) FROM tiktok_runs WHERE holder LIKE %s",
                (f"%:pid {pid}:%",),
            ).fetchone()
    except psycopg.Error:
        return 0  # the tables are not there yet
    return int(row[0]) if row else 0


def check_exact(sim: Simulator, url: str, names: list[str]) -> None:
    with PostgresStore(url, create=False) as store:
        got = {user: [json.loads(raw) for raw in rows] for user, rows in stored(store).items()}
        assert got == truth(sim, names)
        assert store.state_counts()[UserState.DONE] == len(names)
        # Write-ahead: never less than the API counted.
        assert store.requests_on() >= sim.stats.requests


@pytest.mark.slow
def test_a_killed_harvest_into_postgres_is_cured_by_the_same_command(
    tmp_path: Path, postgres_url: str
) -> None:
    names = [f"k{i}_n600" for i in range(12)]
    users = tmp_path / "users.txt"
    users.write_text("\n".join(names) + "\n")
    sim = Simulator(latency=0.01)
    with sim.run_in_thread():
        argv = [
            sys.executable, "-m", "tiktok_repost_async", "harvest", str(users), "--db",
            postgres_url, "--concurrency", "3", "--rate", "10000", "--no-progress",
        ]  # fmt: skip
        child = subprocess.Popen(argv, env=sim_env(sim), cwd=tmp_path)
        deadline = time.monotonic() + 60
        while videos_in(postgres_url) < 1500 and child.poll() is None:
            assert time.monotonic() < deadline, "the harvest made no progress"
            time.sleep(0.02)
        assert child.poll() is None, "the harvest ended before it could be killed"
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
        with PostgresStore(postgres_url, create=False) as store:
            finished = store.state_counts()[UserState.DONE]
        again = subprocess.run(
            argv, env=sim_env(sim), cwd=tmp_path, capture_output=True, text=True, timeout=120
        )
        assert again.returncode == 0, again.stderr
        # On a shared store "already finished": another process may have finished them meanwhile.
        if finished:
            assert f"input: {finished:,} already finished" in again.stderr
        assert "finished in earlier runs" not in again.stderr
        refetched = sum(count - 1 for count in sim.stats.by_cursor.values())
        assert refetched <= 3  # the pages in flight at the kill
        assert sim.stats.requests == sum(sim.pages_needed(n) for n in names) + refetched
        check_exact(sim, postgres_url, names)
    # The same machine knows the killed run's process is gone: no wait for its leases.
    assert "walked by other processes" not in again.stderr
    with PostgresStore(postgres_url, create=False) as store:
        assert [run.outcome for run in store.runs()] == ["finished", "killed"]


@pytest.mark.slow
def test_three_processes_share_one_users_list_and_survive_a_sigkill(
    tmp_path: Path, postgres_url: str
) -> None:
    names = [f"s{i}_n700" for i in range(24)]
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    concurrency, lease = 2, 2.0
    sim = Simulator(latency=0.02)
    with sim.run_in_thread() as base_url:
        argv = [sys.executable, str(script), base_url, postgres_url, ",".join(names)]
        children = [
            subprocess.Popen([*argv, str(concurrency), str(lease), "apart"]) for _ in range(3)
        ]
        victim = children[0]
        deadline = time.monotonic() + 60
        # Mid-run: the victim has stored pages of its own, and much is left.
        while videos_in(postgres_url) < 4000 or pages_of(postgres_url, victim.pid) < 3:
            assert time.monotonic() < deadline, "the harvests made no progress"
            time.sleep(0.02)
        assert victim.poll() is None, "the victim ended before it could be killed"
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait(timeout=30)
        for child in children[1:]:
            assert child.wait(timeout=120) == 0
        pages = Counter(user for user, _ in sim.stats.by_cursor.elements())
        refetched = sum(count - 1 for count in sim.stats.by_cursor.values())
        needed = {name: sim.pages_needed(name) for name in names}
        total = sim.stats.requests
        check_exact(sim, postgres_url, names)
    # Each user walked once: every page fetched once, but those in flight at the kill.
    assert refetched <= concurrency
    assert total == sum(needed.values()) + refetched
    assert sum(max(pages[name] - needed[name], 0) for name in names) == refetched
    with PostgresStore(postgres_url, create=False) as store:
        runs = store.runs()
    print({run.id: (run.outcome, run.pages, run.requests) for run in runs})
    # The victim's run never ended (a later run, once its lease is over, calls it killed).
    assert sorted(run.outcome or "-" for run in runs) == ["-", "finished", "finished"]
    # Three processes did the work, none of them all of it, and the ledger holds every request.
    assert all(0 < run.pages < sum(needed.values()) for run in runs)
    assert sum(run.requests for run in runs) >= total


@pytest.mark.slow
def test_a_claim_lives_while_its_heartbeat_beats_and_passes_on_when_it_stops(
    postgres_url: str,
) -> None:
    lease = 0.6
    fields = ("id",)
    with (
        PostgresStore(postgres_url, fields=fields, max_count=100, lease=lease) as first,
        PostgresStore(postgres_url, create=False, lease=lease) as second,
    ):
        first._reap_local = second._reap_local = False  # as if on two machines
        first.acquire_run_lock()
        second.acquire_run_lock()
        assert first.claim_users(["walked"]) == [("walked", UserState.PENDING, 0)]
        # Renewed every lease / 3: three leases later it is still the first one's.
        time.sleep(3 * lease)
        assert second.claim_users(["walked"]) == [first.holder]
        assert second.orphaned_users() == ([], 1)
        # The first one's process "dies": its heartbeat stops, nothing is released.
        first._beat_stop.set()
        assert first._beat is not None
        first._beat.join()
        time.sleep(1.5 * lease)
        assert second.orphaned_users() == (["walked"], 0)
        assert second.claim_users(["walked"]) == [("walked", UserState.PENDING, 0)]
        # A holder that lost its lease cannot commit: the user is never walked twice.
        page = PageCommit("walked", [(1, b'{"id":1}')], 5, True, 0)
        with pytest.raises(StoreError, match="lost its claim on 'walked'"):
            first.commit_pages([page])
        assert second.commit_pages([page]) == [1]
        assert second.user("walked") == UserRecord("walked", UserState.PENDING, 5, 1, 1, 0, None)


def test_a_sqlite_store_refuses_a_postgres_url_without_showing_its_password() -> None:
    # refresh(), diff_rounds() and data frames take a SQLite Store: a URL given there is named
    # for what it is, never folded into a file name.
    with pytest.raises(StoreError, match="is a PostgreSQL URL") as caught:
        Store("postgresql://ben:hunter2@db.lab.example/tiktok", create=False)
    assert "hunter2" not in str(caught.value)
