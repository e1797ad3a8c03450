"""``copy``: a store moved between SQLite and PostgreSQL keeps every row, and works on.

A store harvested from the simulator (a failed user, users cut short by max_pages, skipped input
lines) is copied into the session's real PostgreSQL server (`postgres_url`: a fresh database each)
and back into a new SQLite file. Every table of the original is compared row for row with the
copies, as read from the files and the database themselves; the videos with the simulator's own
wire JSON; exports byte for byte.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from support import make_client, run_main, sim_env

from tiktok_repost_async import (
    CopyRefusedError,
    Harvester,
    RetryPolicy,
    Store,
    UserState,
    copy_store,
    harvest,
    open_store,
    refresh,
)
from tiktok_repost_async.simulator import Fault, Simulator

# cp_c (420 reposts, 5 pages) and cp_a (3 pages) are cut by max_pages=2; broken fails.
NAMES = ["cp_a_n250", "cp_b_n30", "missing_cp", "broken_n120", "cp_c_n420", "private_cp"]
LINES = ["cp_a_n250", "b a d", "cp_b_n30", "", "missing_cp", "broken_n120", "cp_c_n420"]
LINES += ["@@@", "private_cp"]


async def harvested(sim: Simulator, db: Path, lines: list[str] = LINES) -> None:
    """Harvest ``lines`` into a new SQLite store: two users left pending, one failed."""
    sim.script("broken_n120", [Fault.SERVER_ERROR] * 3)
    policy = RetryPolicy(max_attempts=3, base_delay=0)
    async with make_client(sim, retry=policy) as client:
        store = Store(db, fields=client.fields, max_count=client.max_count)
        try:
            async for _ in Harvester(client, store, max_pages=2).run(lines):
                pass
        finally:
            store.close()


def sqlite_tables(db: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Return every table of a SQLite store, every column, rows in a stable order (the videos
    with their rowid: the API's order)."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    with contextlib.closing(sqlite3.connect(db)) as conn:
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for name in names:
            columns = [r[1] for r in conn.execute(f"PRAGMA table_info({name})")]
            if name == "videos":
                columns.insert(0, "rowid")
            listed = ", ".join(columns)
            rows = conn.execute(f"SELECT {listed} FROM {name} ORDER BY {listed}").fetchall()
            out[name] = [tuple(row) for row in rows]
    return out


def postgres_tables(url: str, like: dict[str, list[str]]) -> dict[str, list[tuple[Any, ...]]]:
    """Return the PostgreSQL twins (``tiktok_<name>``) of the tables in ``like``, with the
    columns given, rows in the same order as `sqlite_tables` reads them."""
    import psycopg

    out: dict[str, list[tuple[Any, ...]]] = {}
    with psycopg.connect(url) as conn:
        have = {
            str(row[0]) for row in conn.execute("SELECT table_name FROM information_schema.tables")
        }
        for name, columns in like.items():
            if f"tiktok_{name}" not in have:
                continue  # an engine's own table: the caller checks the source had no rows
            listed = ", ".join("id" if c == "rowid" else c for c in columns)
            rows = conn.execute(f"SELECT {listed} FROM tiktok_{name} ORDER BY {listed}")
            out[name] = [tuple(row) for row in rows.fetchall()]
    return out


def engine_free(tables: dict[str, list[tuple[Any, ...]]]) -> dict[str, list[tuple[Any, ...]]]:
    """Return the tables without the meta keys each engine writes of itself."""
    own = ("schema_version", "kind")
    return {**tables, "meta": [row for row in tables["meta"] if row[0] not in own]}


def sqlite_columns(db: Path) -> dict[str, list[str]]:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        out = {n: [r[1] for r in conn.execute(f"PRAGMA table_info({n})")] for n in names}
    out["videos"].insert(0, "rowid")
    return out


def wire(sim: Simulator, db: Path) -> None:
    """Check that every stored video is, in order, the simulator's wire JSON of its user."""
    with Store(db, create=False) as store:
        by_user: dict[str, list[object]] = {}
        for user, _, raw in store.iter_videos():
            by_user.setdefault(user, []).append(json.loads(raw))
        for user, videos in by_user.items():
            record = store.user(user)
            assert record is not None
            truth = sim.ground_truth(user)
            assert videos == (truth if record.state is UserState.DONE else truth[: len(videos)])


def export_bytes(tmp_path: Path, db: str | Path, *options: str) -> bytes:
    out = tmp_path / f"export-{abs(hash((str(db), options)))}.jsonl"
    ran = run_main("export", "--db", db, "-o", out, *options)
    assert ran.returncode == 0, ran.stderr
    return out.read_bytes()


async def test_sqlite_to_postgres_and_back_keeps_every_row_and_the_harvest_goes_on(
    sim: Simulator, postgres_url: str, tmp_path: Path
) -> None:
    source, back = tmp_path / "h.db", tmp_path / "back.db"
    await harvested(sim, source)
    password = postgres_url.split(":")[2].split("@")[0]
    original = sqlite_tables(source)
    assert len(original["skipped"]) == 3
    assert original["skipped_counts"]
    states = {row[0]: row[2] for row in original["users"]}
    assert states["broken_n120"] == "failed"
    assert states["cp_c_n420"] == "pending"

    there = await asyncio.to_thread(run_main, "copy", source, postgres_url)
    assert there.returncode == 0, there.stderr
    # The count the command prints is the simulator's: its users and the videos it sent.
    assert f"{len(NAMES)} users, 1 round, " in there.stdout
    assert f"{len(original['videos']):,} videos" in there.stdout
    assert f"{sim.stats.requests} requests" in there.stdout
    home = await asyncio.to_thread(run_main, "copy", postgres_url, back)
    assert home.returncode == 0, home.stderr
    for ran in (there, home):
        assert password not in ran.stdout + ran.stderr
        assert "***" in ran.stdout

    # Row for row: the PostgreSQL tables, and every table of the SQLite file brought back.
    columns = sqlite_columns(source)
    twins = {n: c for n, c in columns.items() if n != "skipped_counts"}
    in_postgres = await asyncio.to_thread(postgres_tables, postgres_url, twins)
    assert engine_free(in_postgres) == engine_free({n: original[n] for n in in_postgres})
    assert not any(original[n] for n in twins if n not in in_postgres)
    assert {"users", "runs", "pages", "videos", "requests", "skipped"} <= set(in_postgres)
    assert sqlite_tables(back) == original
    wire(sim, back)
    # An export of either copy is the original's, byte for byte (provenance included).
    for options in ((), ("--provenance",), ("--format", "csv")):
        first = export_bytes(tmp_path, source, *options)
        assert first
        assert export_bytes(tmp_path, postgres_url, *options) == first
        assert export_bytes(tmp_path, back, *options) == first

    # The harvest carries on in PostgreSQL: the cut users from their cursors, the failed one
    # again; every new page and run gets an id past the copied ones.
    with open_store(postgres_url, create=False) as store:
        left = {
            u.username: sim.pages_needed(u.username, 100) - u.pages
            for u in store.iter_users({UserState.PENDING, UserState.FAILED})
        }
    assert set(left) == {"cp_a_n250", "cp_c_n420", "broken_n120"}
    before = sim.stats.requests
    async with make_client(sim) as client:
        outcomes = {o.username: o.state async for o in harvest(client, NAMES, store=postgres_url)}
    assert set(outcomes) == set(left)
    assert sim.stats.requests - before == sum(left.values())
    with open_store(postgres_url, create=False) as store:
        got: dict[str, list[object]] = {}
        for user, _, raw in store.iter_videos():
            got.setdefault(user, []).append(json.loads(raw))
        runs = store.runs()
        assert store.requests_on() == sim.stats.requests
    assert got == {n: v for n in NAMES if (v := sim.ground_truth(n))}
    assert [run.id for run in runs][:2] == [2, 1]
    # Home again, the finished harvest: the same export (its runs' holders stay behind).
    final = tmp_path / "final.db"
    assert (await asyncio.to_thread(run_main, "copy", postgres_url, final)).returncode == 0
    for options in ((), ("--provenance",)):
        assert export_bytes(tmp_path, final, *options) == export_bytes(
            tmp_path, postgres_url, *options
        )
    wire(sim, final)
    with Store(final, create=False) as store:
        assert store.state_counts()[UserState.DONE] == 4
        assert [run.outcome for run in store.runs()] == ["finished", "finished"]


async def test_a_panel_s_rounds_and_a_refresh_audit_travel_both_ways(
    sim: Simulator, postgres_url: str, tmp_path: Path
) -> None:
    source = tmp_path / "panel.db"
    names = ["pa_n150", "pb_n40"]
    async with make_client(sim) as client:
        for new_round in (False, True):
            async for _ in harvest(client, names, store=source, new_round=new_round):
                pass
        with Store(source, create=False) as store:
            await refresh(client, store, poll_first_wait=0.0)
    original = sqlite_tables(source)
    assert original["user_rounds"]
    assert original["refreshes"]
    assert len(original["rounds"]) == 2

    copied = await asyncio.to_thread(run_main, "copy", source, postgres_url)
    assert copied.returncode == 0, copied.stderr
    back = tmp_path / "back.db"
    assert (await asyncio.to_thread(run_main, "copy", postgres_url, back)).returncode == 0
    assert sqlite_tables(back) == original
    # In PostgreSQL too, row for row (each engine's own meta keys aside).
    twins = {n: c for n, c in sqlite_columns(source).items() if n != "skipped_counts"}
    in_postgres = postgres_tables(postgres_url, twins)
    assert {"user_rounds", "rounds", "refreshes", "refresh_tasks", "refresh_ids"} <= set(
        in_postgres
    )
    assert engine_free(in_postgres) == engine_free({n: original[n] for n in in_postgres})


async def test_a_target_that_is_not_empty_is_refused_and_left_as_it_was(
    sim: Simulator, postgres_url: str, tmp_path: Path
) -> None:
    source, other = tmp_path / "h.db", tmp_path / "other.db"
    await harvested(sim, source, ["cp_b_n30"])
    async with make_client(sim) as client:
        async for _ in harvest(client, ["pz_n12"], store=other):
            pass
    before = sqlite_tables(other)
    refused = run_main("copy", source, other)
    assert refused.returncode == 2
    assert refused.stderr.strip() == (
        f"tiktok-reposts copy: error: the target {str(other)!r} is not empty (1 row in users):"
        " copy into a new file or an empty database"
    )
    assert sqlite_tables(other) == before
    assert not await asyncio.to_thread(Path(f"{other}.copying").exists)
    # The same into PostgreSQL, the second time: the first copy filled it.
    assert (await asyncio.to_thread(run_main, "copy", source, postgres_url)).returncode == 0
    again = await asyncio.to_thread(run_main, "copy", other, postgres_url)
    assert again.returncode == 2
    password = postgres_url.split(":")[2].split("@")[0]
    assert password not in again.stderr
    assert "is not empty (1 row in users)" in again.stderr
    with open_store(postgres_url, create=False) as store:
        assert store.user("pz_n12") is None
        assert store.user("cp_b_n30") is not None
    with pytest.raises(CopyRefusedError, match="the same store"):
        copy_store(source, source)


async def test_an_input_line_with_a_nul_is_kept_on_both_engines_and_copied_across(
    sim: Simulator, postgres_url: str, tmp_path: Path
) -> None:
    # SQLite keeps a NUL inside text, PostgreSQL refuses it: a skipped line holding one is
    # written as "\\x00" there, by a harvest into PostgreSQL and by a copy into it alike.
    lines = ["cp_b_n30", "bad\x00name", "pz_n12"]
    source = tmp_path / "h.db"
    await harvested(sim, source, lines)
    with Store(source, create=False) as store:
        assert store.skipped() == [(2, "bad\x00name", "NUL byte")]
    assert copy_store(source, postgres_url).videos == 42
    with open_store(postgres_url, create=False) as copied:
        assert copied.skipped() == [(2, "bad\\x00name", "NUL byte")]
    # A harvest straight into PostgreSQL reads the same line the same way, and goes on.
    direct = postgres_url.rsplit("/", 1)[0] + "/" + "nul_direct"
    import psycopg

    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("CREATE DATABASE nul_direct")
    async with make_client(sim) as client:
        outcomes = [o async for o in harvest(client, lines, store=direct)]
    assert sorted(o.username for o in outcomes) == ["cp_b_n30", "pz_n12"]
    with open_store(direct, create=False) as store:
        assert store.skipped() == [(2, "bad\\x00name", "NUL byte")]
        assert store.video_count() == 42


async def test_rows_the_target_cannot_hold_are_refused_before_any_is_written(
    sim: Simulator, postgres_url: str, tmp_path: Path
) -> None:
    source = tmp_path / "h.db"
    await harvested(sim, source, ["cp_b_n30", "b a d"])
    with contextlib.closing(sqlite3.connect(source)) as conn, conn:
        # Counts beyond the kept lines (SQLite keeps only the first 10,000 of a long input).
        conn.execute("UPDATE skipped_counts SET count = count + 5")
    with pytest.raises(CopyRefusedError, match="counts 6 skipped input lines but keeps 1"):
        copy_store(source, postgres_url)
    with contextlib.closing(sqlite3.connect(source)) as conn, conn:
        conn.execute("UPDATE skipped_counts SET count = count - 5")
        conn.execute("CREATE TABLE notes (text TEXT)")
        conn.execute("INSERT INTO notes VALUES ('mine')")
    with pytest.raises(CopyRefusedError, match=r"1 row in a table this version does not copy"):
        copy_store(source, tmp_path / "c.db")
    assert not (tmp_path / "c.db").exists()
    with open_store(postgres_url, create=False) as store:
        assert store.video_count() == 0


_KILLER = textwrap.dedent(
    """
    import os, signal, sys
    from tiktok_repost_async import copy_store

    def progress(step):
        # Half-way through the videos, after some were written: killed as by the OOM killer.
        if step.table == "videos" and step.done >= step.total // 2 and step.done:
            os.kill(os.getpid(), signal.SIGKILL)

    copy_store(sys.argv[1], sys.argv[2], progress=progress)
    """
)


@pytest.mark.parametrize("engine", ["postgresql", "sqlite"])
async def test_a_copy_killed_half_way_is_finished_by_the_same_command(
    sim: Simulator, postgres_url: str, tmp_path: Path, engine: str
) -> None:
    source = tmp_path / "h.db"
    await harvested(sim, source, ["cp_d_n1500", "cp_e_n900", "b a d", "cp_b_n30"])
    target = postgres_url if engine == "postgresql" else str(tmp_path / "copy.db")
    env = sim_env(sim)
    killed = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-c", _KILLER, str(source), target], env=env
    )
    assert killed.returncode == -signal.SIGKILL
    if engine == "sqlite":
        assert not await asyncio.to_thread(Path(target).exists)
        assert await asyncio.to_thread(Path(f"{target}.copying").exists)
    else:
        with open_store(target, create=False) as store:
            assert store.video_count() == 0
    argv = [sys.executable, "-m", "tiktok_repost_async", "copy", str(source), target]
    again = await asyncio.to_thread(
        subprocess.run, argv, env=env, capture_output=True, text=True, check=False
    )
    assert again.returncode == 0, again.stderr
    original = sqlite_tables(source)
    if engine == "sqlite":
        assert sqlite_tables(Path(target)) == original
        assert not await asyncio.to_thread(Path(f"{target}.copying").exists)
    else:
        twins = {n: c for n, c in sqlite_columns(source).items() if n != "skipped_counts"}
        in_postgres = await asyncio.to_thread(postgres_tables, target, twins)
        assert engine_free(in_postgres) == engine_free({n: original[n] for n in in_postgres})
        assert "videos" in in_postgres


def consistent(tables: dict[str, list[tuple[Any, ...]]]) -> int:
    """Check that a copy is one moment of its store: each user's pages and videos, and each
    run's, are those its rows count (they commit together); return the videos."""
    users = {row[0]: row for row in tables["users"]}  # username, seq, state, cursor, pages, videos
    pages: dict[str, int] = {}
    for row in tables["pages"]:
        pages[row[2]] = pages.get(row[2], 0) + 1
    videos: dict[str, int] = {}
    for row in tables["videos"]:
        videos[row[1]] = videos.get(row[1], 0) + 1
    for name, row in users.items():
        assert (pages.get(name, 0), videos.get(name, 0)) == (row[4], row[5]), name
    assert sum(run[7] for run in tables["runs"]) == len(tables["pages"])
    assert sum(run[8] for run in tables["runs"]) == len(tables["videos"])
    return len(tables["videos"])


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_a_copy_taken_while_a_harvest_runs_is_one_moment_of_the_store(
    postgres_url: str, tmp_path: Path, engine: str
) -> None:
    names = [f"run{i}_n600" for i in range(10)]
    users = tmp_path / "users.txt"
    users.write_text("\n".join(names) + "\n")
    db = str(tmp_path / "live.db") if engine == "sqlite" else postgres_url
    copy = str(tmp_path / "copy.db") if engine == "postgresql" else postgres_url
    sim = Simulator(latency=0.01)
    with sim.run_in_thread():
        argv = [
            sys.executable, "-m", "tiktok_repost_async", "harvest", str(users), "--db", db,
            "--concurrency", "2", "--rate", "10000", "--no-progress",
        ]  # fmt: skip
        child = subprocess.Popen(argv, env=sim_env(sim), stderr=subprocess.DEVNULL)
        try:
            while sim.stats.requests < 10 and child.poll() is None:
                time.sleep(0.01)
            report = copy_store(db, copy)
            assert child.poll() is None, "the harvest ended before the copy did"
        finally:
            assert child.wait(timeout=60) == 0
    total = sum(len(sim.ground_truth(name)) for name in names)
    if engine == "sqlite":
        columns = sqlite_columns(Path(db))
        tables = postgres_tables(copy, {n: c for n, c in columns.items() if n != "skipped_counts"})
    else:
        tables = sqlite_tables(Path(copy))
    assert 0 < consistent(tables) == report.videos < total
