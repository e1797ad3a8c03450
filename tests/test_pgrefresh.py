"""``refresh`` on a PostgreSQL store: exact deletions, nothing left in the database's files, kills.

Every test runs against the session's real PostgreSQL server (`postgres_url`: a fresh database
each) and the simulator over loopback. Expected values come from the simulator's own wire JSON
(`Simulator.ground_truth` at each epoch) and its record of the tasks it made; the bytes left in
the database are read from the server's own files under its data directory.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
from pg_server import PostgresServer
from support import FakeTime, make_client
from test_cli import cli, cli_env, command, write_users

from tiktok_repost_async import (
    PostgresStore,
    RefreshReport,
    Store,
    StoreLike,
    UserState,
    harvest,
    refresh,
)
from tiktok_repost_async.quota import utc_day
from tiktok_repost_async.simulator import Simulator
from tiktok_repost_async.simulator._compliance import TASK_STATUS_PATH
from tiktok_repost_async.store import PageCommit, StoreLockedError

# Ten users of 300 reposts: 3,000 videos, some of which the simulator deletes by epoch 3.
USERS = [f"keep{i}_n300" for i in range(10)]
EPOCH = 3
CLI_NAMES = ["alice_n250", "bob_n99", "carol_n400", "missing_person", "empty_one"]


def wire_ids(sim: Simulator, names: list[str], epoch: int) -> set[int]:
    """Return the ids of the users' videos at an epoch, from the simulator's own wire JSON."""
    return {int(video["id"]) for name in names for video in sim.ground_truth(name, epoch=epoch)}


def stored(store: StoreLike) -> dict[tuple[str, str], bytes]:
    """Return every observation in the store: (user, video id) -> its bytes."""
    return {(user, video_id): data for user, video_id, data in store.iter_videos()}


def stored_at(url: str) -> dict[tuple[str, str], bytes]:
    with PostgresStore(url, create=False) as store:
        return stored(store)


def database_files(url: str) -> bytes:
    """Return the bytes of every file of the database at ``url`` on the server's disk.

    A CHECKPOINT first writes out whatever the server holds in memory, so that the files show
    everything the database keeps: its tables, TOAST tables and indexes, and the catalogues
    (pg_statistic among them).
    """
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CHECKPOINT")
        data = conn.execute("SHOW data_directory").fetchone()
        oid = conn.execute(
            "SELECT oid FROM pg_database WHERE datname = current_database()"
        ).fetchone()
        videos = conn.execute("SELECT pg_relation_filepath('tiktok_videos')").fetchone()
    assert data is not None
    assert oid is not None
    assert videos is not None
    folder = Path(data[0]) / "base" / str(oid[0])
    # The store's videos are among the files read.
    assert (Path(data[0]) / videos[0]).parent == folder
    return b"".join(p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file())


def no_autovacuum(url: str) -> None:
    """Keep the server's autovacuum off the store's tables: what stays is what the store left."""
    for table in ("tiktok_videos", "tiktok_pages", "tiktok_refresh_ids"):
        sql(url, f"ALTER TABLE {table} SET (autovacuum_enabled = false)")


def chunks(data: bytes) -> list[bytes]:
    """Return the pieces a value is stored in out of line: TOAST chunks of 1,996 bytes (8 kB
    pages), the short last one left out (a pretty-printed tail that many videos share)."""
    size = 1996
    return [data[i : i + size] for i in range(0, len(data), size) if len(data) - i >= 200]


def sql(url: str, statement: str) -> list[Any]:
    with psycopg.connect(url, autocommit=True) as conn:
        cursor = conn.execute(statement)
        return cursor.fetchall() if cursor.description else []


async def harvested(sim: Simulator, url: str, names: list[str]) -> None:
    async with make_client(sim) as client:
        async for outcome in harvest(client, names, store=url, daily_quota=10**6):
            assert outcome.state in (UserState.DONE, UserState.NOT_FOUND, UserState.UNAVAILABLE)


async def run_refresh(sim: Simulator, url: str, **options: Any) -> RefreshReport:
    options.setdefault("daily_quota", 10**6)
    clock = FakeTime()
    async with make_client(sim) as client:
        with PostgresStore(url, create=False) as store:
            return await refresh(client, store, sleep=clock.sleep, clock=clock, **options)


async def test_a_refresh_deletes_exactly_what_is_gone_and_leaves_nothing_in_the_files(
    sim: Simulator, postgres_url: str
) -> None:
    await harvested(sim, postgres_url, USERS)
    before = stored_at(postgres_url)
    sent = wire_ids(sim, USERS, 0)
    gone = sent - wire_ids(sim, USERS, EPOCH)
    assert 50 < len(gone) < 500, "the simulator must delete some videos by this epoch"
    removed = {key: data for key, data in before.items() if int(key[1]) in gone}
    # Statistics gathered, as autovacuum would: they must hold none of the videos' bytes.
    sql(postgres_url, "ANALYZE")
    blob = database_files(postgres_url)
    # The test can fail: before the refresh, the removed videos' bytes are in the files.
    assert all(data in blob for data in removed.values())
    sim.config.epoch = EPOCH
    sim.config.task_processing_polls = 2

    report = await run_refresh(sim, postgres_url)

    assert report.finished
    assert (report.checked, report.removed, report.observations_removed) == (
        len(sent),
        len(gone),
        len(gone),
    )
    [task] = sim.tasks
    assert set(task.ids) == sent
    assert report.task_ids == (task.task_id,)
    # One create, three polls (two Processing), one download.
    assert report.requests == report.requests_total == sim.stats.compliance_requests == 5
    after = stored_at(postgres_url)
    assert {int(key[1]) for key in after} == sent - gone
    # The survivors are byte for byte what was stored, which is the simulator's wire JSON.
    truth = {int(v["id"]): v for name in USERS for v in sim.ground_truth(name, epoch=0)}
    for key, data in after.items():
        assert data == before[key]
        assert json.loads(data) == truth[int(key[1])]
    sql(postgres_url, "ANALYZE")
    blob = database_files(postgres_url)
    survivors = b"\n".join(after.values())
    # The survivors are in the files; no removed video's bytes or id is, nor, for a sample, any
    # run of 40 of its bytes that no survivor shares.
    assert all(data in blob for data in list(after.values())[::25])
    for (_, video_id), data in removed.items():
        assert data not in blob, video_id
        assert video_id.encode() not in blob, video_id
    for data in list(removed.values())[:5]:
        for start in range(0, len(data) - 40, 20):
            window = data[start : start + 40]
            assert window not in blob or window in survivors, window
    with PostgresStore(postgres_url, create=False) as store:
        [audit] = store.refreshes()
        assert audit.finished
        assert (audit.removed, audit.requests) == (len(gone), 5)
        assert audit.task_ids == (str(task.task_id),)
        # Each user's count follows what is left; the ledger counts every call.
        for name in USERS:
            record = store.user(name)
            assert record is not None
            assert record.videos == sum(1 for key in after if key[0] == name)
        assert store.requests_on(utc_day(time.time())) == sim.stats.quota_used
    assert sql(postgres_url, "SELECT count(*) FROM tiktok_refresh_ids") == [(0,)]


async def test_a_video_in_toast_leaves_nothing_there_either(
    sim: Simulator, postgres_url: str
) -> None:
    # Pretty-printed videos with undocumented keys, some past 2 kB, kept out of line and
    # uncompressed, so that their bytes lie whole in the videos' TOAST table.
    sim.config.pretty_videos = True
    sim.config.extra_keys = True
    names = USERS
    async with make_client(sim) as client:
        PostgresStore(postgres_url, fields=client.fields, max_count=client.max_count).close()
    sql(postgres_url, "ALTER TABLE tiktok_videos ALTER COLUMN data SET STORAGE EXTERNAL")
    await harvested(sim, postgres_url, names)
    before = stored_at(postgres_url)
    gone = wire_ids(sim, names, 0) - wire_ids(sim, names, EPOCH)
    removed = [data for key, data in before.items() if int(key[1]) in gone]
    # Those past the TOAST threshold (about 2 kB) lie in the TOAST table's own file.
    toasted = [data for data in removed if len(data) > 2100]
    assert len(toasted) > 10
    [(toast,)] = sql(
        postgres_url,
        "SELECT pg_relation_filepath(reltoastrelid) FROM pg_class WHERE relname = 'tiktok_videos'",
    )
    blob = database_files(postgres_url)
    [(data_directory,)] = sql(postgres_url, "SHOW data_directory")
    in_toast = (Path(data_directory) / toast).read_bytes()
    assert all(piece in in_toast for data in toasted for piece in chunks(data))
    sim.config.epoch = EPOCH
    report = await run_refresh(sim, postgres_url)
    assert report.finished
    assert report.removed == len(gone)
    after = stored_at(postgres_url)
    assert after == {key: data for key, data in before.items() if int(key[1]) not in gone}
    blob = database_files(postgres_url)
    survivors = b"\n".join(after.values())
    for data in toasted:
        for piece in chunks(data):
            assert piece not in blob or piece in survivors, piece
    assert all(piece in blob for data in list(after.values())[::20] for piece in chunks(data))
    # The table was rewritten: its TOAST table lives in a new file now.
    [(now,)] = sql(
        postgres_url,
        "SELECT pg_relation_filepath(reltoastrelid) FROM pg_class WHERE relname = 'tiktok_videos'",
    )
    assert now != toast


async def test_a_refresh_killed_between_its_deletions_and_the_rewrite_is_erased_next_time(
    sim: Simulator, postgres_url: str
) -> None:
    names = USERS[:3]
    await harvested(sim, postgres_url, names)
    no_autovacuum(postgres_url)
    before = stored_at(postgres_url)
    gone = wire_ids(sim, names, 0) - wire_ids(sim, names, EPOCH)
    removed = [data for key, data in before.items() if int(key[1]) in gone]
    # A refresh that applied its batch (the answer the simulator gives at EPOCH) and was killed
    # before its end: the rows are deleted, their bytes still in the files.
    with PostgresStore(postgres_url, create=False) as store:
        record, _ = store.start_refresh("test")
        ids = store.refresh_batch_ids(record.id, 0)
        assert store.apply_refresh_batch(record.id, 0, set(ids) - gone)[0] == len(gone)
    # Their ids are still in the indexes, and bytes in dead rows (those a read has not pruned).
    blob = database_files(postgres_url)
    assert all(str(video_id).encode() in blob for video_id in gone)
    assert any(data in blob for data in removed)
    assert {int(key[1]) for key in stored_at(postgres_url)} == wire_ids(sim, names, 0) - gone
    # The same command again: the rewrite owed is done first; nothing is asked of the API.
    sim.config.epoch = EPOCH
    report = await run_refresh(sim, postgres_url)
    assert report.finished
    assert report.resumed
    assert report.removed == len(gone)
    assert sim.stats.compliance_requests == 0
    blob = database_files(postgres_url)
    assert not any(data in blob for data in removed)
    assert not any(str(video_id).encode() in blob for video_id in gone)


async def test_a_role_that_does_not_own_the_tables_says_what_it_could_not_erase(
    sim: Simulator, postgres_url: str, postgres_server: PostgresServer, caplog: Any
) -> None:
    # A collaborator with a role of their own, granted the tables but not owning them: only
    # the owner may rewrite a table, so the deleted bytes stay until the owner's next refresh.
    await harvested(sim, postgres_url, USERS[:3])
    no_autovacuum(postgres_url)
    before = stored_at(postgres_url)
    database = postgres_url.rsplit("/", 1)[1]
    sql(
        postgres_url,
        f"DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'helper') THEN"
        f" CREATE ROLE helper LOGIN PASSWORD '{postgres_server.password}'; END IF; END $$;"
        " GRANT ALL ON ALL TABLES IN SCHEMA public TO helper;"
        " GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO helper",
    )
    helper = postgres_url.replace("postgres:", "helper:", 1)
    assert helper.rsplit("/", 1)[1] == database
    gone = wire_ids(sim, USERS[:3], 0) - wire_ids(sim, USERS[:3], EPOCH)
    removed = [data for key, data in before.items() if int(key[1]) in gone]
    sim.config.epoch = EPOCH
    with caplog.at_level("WARNING", logger="tiktok_repost_async.store"):
        report = await run_refresh(sim, helper)
    assert report.finished
    assert report.removed == len(gone)
    [warning] = [r.getMessage() for r in caplog.records if "only the owner" in r.getMessage()]
    assert "(role postgres)" in warning
    assert postgres_server.password not in warning
    # Still there: the rows' ids in the indexes, and bytes in the dead rows.
    blob = database_files(postgres_url)
    assert all(str(video_id).encode() in blob for video_id in gone)
    assert any(data in blob for data in removed)
    # The debt is said: in the report, and by status until it is paid.
    assert report.erase_owed
    shown = cli("status", "--db", postgres_url)
    assert "deleted data may still be in the store's files" in shown.stdout
    assert cli("status", "--db", postgres_url, "--check").returncode == 1
    # The owner pays the debt: its next refresh first, or by hand.
    with PostgresStore(postgres_url, create=False) as store:
        assert store.erase_owed()
        assert store.erase_deleted()
        assert not store.erase_owed()
    blob = database_files(postgres_url)
    assert not any(data in blob for data in removed)
    assert "deleted data may still" not in cli("status", "--db", postgres_url).stdout


async def test_a_video_stored_again_while_a_refresh_runs_is_kept_for_the_next(
    sim: Simulator, postgres_url: str
) -> None:
    await harvested(sim, postgres_url, USERS[:2])
    gone = wire_ids(sim, USERS[:2], 0) - wire_ids(sim, USERS[:2], EPOCH)
    assert gone
    sim.config.epoch = EPOCH
    sim.config.task_processing_seconds = 10**6  # stays Processing
    stopped = await run_refresh(sim, postgres_url, poll_timeout=100.0)
    assert stopped.outcome == "stopped: processing"
    [task] = sim.tasks
    # Meanwhile another process harvests one of the videos the task will find gone: that
    # observation was stored after the refresh began, was not checked, and is kept.
    victim = min(gone)
    with PostgresStore(postgres_url, create=False) as other:
        data = next(d for _, v, d in other.iter_videos() if int(v) == victim)
        other.acquire_run_lock()
        assert other.claim_users(["later_n1"]) == [("later_n1", UserState.PENDING, 0)]
        other.commit_pages([PageCommit("later_n1", [(victim, data)], 1, False, 1)])
        other.release_run_lock()
    sim.config.task_processing_seconds = 0.0
    report = await run_refresh(sim, postgres_url)
    assert report.finished
    assert report.resumed
    assert report.task_ids == (task.task_id,)  # the same task, polled again
    after = stored_at(postgres_url)
    assert {int(key[1]) for key in after if key[0] != "later_n1"} == (
        wire_ids(sim, USERS[:2], 0) - gone
    )
    assert after[("later_n1", str(victim))] == data


async def test_a_refresh_and_a_harvest_run_on_one_store_at_once(
    sim: Simulator, postgres_url: str
) -> None:
    await harvested(sim, postgres_url, USERS[:4])
    sent = wire_ids(sim, USERS[:4], 0)
    sim.config.epoch = EPOCH
    sim.config.task_processing_polls = 1
    sim.config.latency = 0.02  # the harvest's 18 pages take a while
    later = [f"late{i}_n250" for i in range(6)]

    async def harvesting() -> None:
        async with make_client(sim, concurrency=2) as client:
            store = PostgresStore(postgres_url, create=False)
            try:
                async for outcome in harvest(client, later, store=store, daily_quota=10**6):
                    assert outcome.state is UserState.DONE
            finally:
                store.close()

    async def refreshing() -> RefreshReport:
        # Once the harvest has stored a few of its pages (the first four users hold 12).
        for _ in range(3000):
            if sql(postgres_url, "SELECT count(*) FROM tiktok_pages")[0][0] >= 15:
                break
            await asyncio.sleep(0.01)
        else:
            pytest.fail("the harvest stored no page in 30 s")
        async with make_client(sim) as client:
            with PostgresStore(postgres_url, create=False) as store:
                # Real sleeps between polls, so that the harvest goes on beside them.
                return await refresh(client, store, daily_quota=10**6, poll_first_wait=0.05)

    _, report = await asyncio.gather(harvesting(), refreshing())
    assert report.finished
    # The refresh began while the harvest was storing the late users' pages.
    [(began,)] = sql(postgres_url, "SELECT max_page_id FROM tiktok_refreshes")
    [(first, last)] = sql(
        postgres_url,
        "SELECT min(id), max(id) FROM tiktok_pages WHERE username LIKE 'late%'",
    )
    assert first <= began < last
    after = stored_at(postgres_url)
    # The refresh removed only what its task found gone of what was stored when it began...
    checked = set(sim.tasks[0].ids)
    assert sent <= checked
    assert report.removed == len(checked - wire_ids(sim, [*USERS[:4], *later], EPOCH))
    assert {int(v) for u, v in after if u in USERS[:4]} == sent & wire_ids(sim, USERS[:4], EPOCH)
    # ...and the harvest beside it stored every page whole: each late user as the API sent it
    # then, less only what the refresh had checked and found gone.
    for name in later:
        mine = [data for (user, _), data in after.items() if user == name]
        assert [json.loads(data) for data in mine] == sim.ground_truth(name, epoch=EPOCH)


async def test_one_refresh_at_a_time_and_a_killed_one_leaves_no_lock(
    sim: Simulator, postgres_url: str
) -> None:
    await harvested(sim, postgres_url, USERS[:1])
    with PostgresStore(postgres_url, create=False) as first:
        first.acquire_refresh_lock()
        with pytest.raises(StoreLockedError, match="being refreshed by another process") as held:
            await run_refresh(sim, postgres_url)
        assert first.holder in str(held.value)
        assert sim.stats.compliance_requests == 0
    # The lock went with the connection: a refresh goes now.
    report = await run_refresh(sim, postgres_url)
    assert report.finished


async def test_a_gone_user_that_a_harvest_walks_now_is_left_for_the_next_run(
    sim: Simulator, postgres_url: str
) -> None:
    names = USERS[:3]
    await harvested(sim, postgres_url, names)
    before = stored_at(postgres_url)
    sim.remove_user(names[1])
    with PostgresStore(postgres_url, create=False) as walker:
        walker.acquire_run_lock()
        walker.claim_users([names[1]])
        report = await run_refresh(sim, postgres_url, check_users=True)
        assert report.outcome == "incomplete"
        assert f"user {names[1]!r} is being harvested by {walker.holder}" in (report.detail or "")
        assert stored_at(postgres_url) == before  # nothing of it deleted under the walk
        walker.release_run_lock()
    again = await run_refresh(sim, postgres_url, check_users=True)
    assert again.finished
    assert again.resumed
    assert (again.users_checked, again.users_removed) == (3, 1)
    assert {key[0] for key in stored_at(postgres_url)} == {names[0], names[2]}
    with PostgresStore(postgres_url, create=False) as store:
        record = store.user(names[1])
        assert record is not None
        assert (record.state, record.videos, record.pages) == (UserState.NOT_FOUND, 0, 0)


async def test_the_refresh_books_within_the_day_that_harvests_share(
    sim: Simulator, postgres_url: str
) -> None:
    await harvested(sim, postgres_url, USERS[:2])
    spent = sim.stats.quota_used
    sim.config.epoch = EPOCH
    # The store's own day is every process's: the refresh may add two requests to it.
    report = await run_refresh(sim, postgres_url, daily_quota=spent + 2)
    assert report.outcome == "stopped: quota"
    assert report.requests == sim.stats.compliance_requests == 2
    # Said as a harvest on the store says it: the day the processes share, password masked.
    password = postgres_url.split(":")[2].split("@")[0]
    assert "shared daily quota is spent" in (report.detail or "")
    assert password not in (report.detail or "")
    assert "***" in (report.detail or "")
    with PostgresStore(postgres_url, create=False) as store:
        assert store.requests_on(utc_day(time.time())) == spent + 2 == sim.stats.quota_used


def test_a_version_1_store_gains_the_refresh_tables_and_a_newer_one_is_refused(
    postgres_url: str,
) -> None:
    with PostgresStore(postgres_url, fields=["id"], max_count=100) as store:
        store.claim_users(["alice"])
        store.commit_page("alice", [(7, b'{"id":7}')], next_cursor=1, has_more=False, requests=1)
    sql(
        postgres_url,
        "DROP TABLE tiktok_refresh_ids, tiktok_refresh_tasks, tiktok_refreshes;"
        " UPDATE tiktok_meta SET value = '1' WHERE key = 'schema_version'",
    )
    with PostgresStore(postgres_url, create=False) as store:
        assert store.refreshes() == []
        record, started = store.start_refresh("test")
        assert (started, record.checked) == (True, 1)
    assert sql(postgres_url, "SELECT value FROM tiktok_meta WHERE key = 'schema_version'") == [
        ("2",)
    ]
    sql(postgres_url, "UPDATE tiktok_meta SET value = '3' WHERE key = 'schema_version'")
    with pytest.raises(Exception, match="newer version of tiktok_repost_async"):
        PostgresStore(postgres_url, create=False)


def test_the_clock_counts_from_the_oldest_page_then_from_the_last_refresh(
    postgres_url: str,
) -> None:
    day = 86_400.0
    now = [1_800_000_000.0]
    with PostgresStore(postgres_url, fields=["id"], max_count=100, clock=lambda: now[0]) as store:
        assert store.refresh_due(15) is None  # nothing stored, nothing due
        store.claim_users(["alice"])
        store.commit_page("alice", [(7, b'{"id":7}')], next_cursor=1, has_more=False, requests=1)
        assert store.refresh_due(15) == now[0] + 15 * day
        now[0] += 20 * day
        store.commit_page("alice", [(8, b'{"id":8}')], next_cursor=2, has_more=False, requests=1)
        assert store.refresh_due(15) == now[0] - 5 * day  # the oldest page decides: overdue
        record, _ = store.start_refresh("test")
        store.end_refresh(record.id, "stopped: quota")
        assert store.refresh_due(30) == now[0] + 10 * day  # an unfinished refresh counts not
        record, _ = store.start_refresh("test")
        store.end_refresh(record.id, "finished")
        assert store.refresh_due(30) == now[0] + 30 * day


# -- the command line ------------------------------------------------------------------------


@pytest.fixture
def thread_sim(sim_in_thread: Simulator) -> Simulator:
    """Serve the simulator on a thread: the command runs an event loop of its own."""
    return sim_in_thread


def cli_harvest(sim: Simulator, tmp_path: Path, db: str) -> None:
    users = write_users(tmp_path / "users.txt", CLI_NAMES)
    done = cli("harvest", users, "--db", db, "--base-url", sim.base_url, "--no-progress")
    assert done.returncode == 0, done.stderr


def cli_refresh(sim: Simulator, db: str, *options: object) -> tuple[int, str]:
    ran = cli("refresh", "--db", db, "--base-url", sim.base_url, "--poll-wait", "0", *options)
    assert "Traceback" not in ran.stderr
    return ran.returncode, ran.stderr


def ids_at(db: str) -> set[int]:
    with (
        PostgresStore(db, create=False) if db.startswith("postgresql") else Store(db, create=False)
    ) as store:
        return {int(video_id) for _, video_id, _ in store.iter_videos()}


@pytest.fixture
def both(tmp_path: Path, postgres_url: str) -> dict[str, str]:
    """Give a test a SQLite path and a PostgreSQL URL, for the same commands on both."""
    return {"sqlite": str(tmp_path / "h.db"), "postgres": postgres_url}


def test_refresh_says_the_same_on_postgres_as_on_sqlite(
    thread_sim: Simulator, tmp_path: Path, both: dict[str, str]
) -> None:
    password = both["postgres"].split(":")[2].split("@")[0]
    said: dict[str, list[str]] = {}
    for engine, db in both.items():
        # The same simulator at epoch 0 for both harvests: the same bytes, the same ids.
        thread_sim.config.epoch = 0
        cli_harvest(thread_sim, tmp_path, db)
        thread_sim.config.epoch = EPOCH
        status, err = cli_refresh(thread_sim, db)
        assert status == 0, err
        said[engine] = err.splitlines()
        assert password not in err
    sent, now = wire_ids(thread_sim, CLI_NAMES, 0), wire_ids(thread_sim, CLI_NAMES, EPOCH)
    gone = sent - now
    assert (
        said["postgres"][0]
        == said["sqlite"][0]
        == (
            f"refresh 1 (begun): {len(sent):,} video ids checked in 1 task: {len(gone):,} no longer"
            f" available, deleted ({len(gone):,} stored copies in all)"
        )
    )
    # Each store's own day: its harvest, then the same three compliance calls.
    assert said["postgres"][1] == said["sqlite"][1]
    assert said["postgres"][1].startswith("3 requests; ")
    assert said["postgres"][2].startswith("next refresh due ")
    assert ids_at(both["postgres"]) == ids_at(both["sqlite"]) == sent & now
    report = json.loads(cli("status", "--db", both["postgres"], "--json").stdout)["refresh"]
    assert report["last"]["outcome"] == "finished"
    assert report["last"]["removed"] == len(gone)
    assert report["last"]["task_ids"] == [str(task.task_id) for task in thread_sim.tasks[1:]]
    assert report["overdue"] is False
    assert cli("status", "--db", both["postgres"], "--check").returncode == 0
    # --if-due: nothing due, the same line and status on both, and no request.
    sent_before = thread_sim.stats.compliance_requests
    lines = {engine: cli_refresh(thread_sim, db, "--if-due") for engine, db in both.items()}
    # The two refreshes may end on either side of a minute's turn: the time of day and the
    # time left (14d23h beside 15d00h) may differ by it, the rest may not.
    assert {status for status, _ in lines.values()} == {0}
    unclocked = {re.sub(r"\d\d:\d\d UTC|\(in [^;]*;", "", line) for _, line in lines.values()}
    assert len(unclocked) == 1
    assert lines["postgres"][1].startswith("nothing to do: the next refresh is due ")
    assert thread_sim.stats.compliance_requests == sent_before


def test_users_gone_are_removed_with_users_on_postgres(
    thread_sim: Simulator, tmp_path: Path, postgres_url: str
) -> None:
    cli_harvest(thread_sim, tmp_path, postgres_url)
    thread_sim.remove_user("bob_n99", how="private")
    status, err = cli_refresh(thread_sim, postgres_url, "--users")
    assert status == 0, err
    assert "users: 3 re-checked, 1 now not found or refusing access: its data deleted" in err
    bob = {int(v["id"]) for v in thread_sim.ground_truth("bob_n99")}
    assert ids_at(postgres_url) == wire_ids(thread_sim, CLI_NAMES, 0) - bob
    assert thread_sim.stats.by_user["bob_n99"] == 2  # its harvest and its check
    with PostgresStore(postgres_url, create=False) as store:
        record = store.user("bob_n99")
        assert record is not None
        assert record.state is UserState.UNAVAILABLE


def test_a_refresh_killed_while_polling_resumes_with_the_same_task(
    thread_sim: Simulator, tmp_path: Path, postgres_url: str
) -> None:
    sim = thread_sim
    cli_harvest(sim, tmp_path, postgres_url)
    sent, now = wire_ids(sim, CLI_NAMES, 0), wire_ids(sim, CLI_NAMES, EPOCH)
    sim.config.epoch = EPOCH
    sim.config.task_processing_seconds = 3600.0
    child = subprocess.Popen(
        command("refresh", "--db", postgres_url, "--base-url", sim.base_url, "--poll-wait", "0.05"),
        env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while sim.stats.compliance_by_path[TASK_STATUS_PATH] < 2:
        assert child.poll() is None, child.communicate()
        assert time.monotonic() < deadline, "the refresh never polled"
        time.sleep(0.02)
    child.send_signal(signal.SIGKILL)
    child.communicate(timeout=30)
    [task] = sim.tasks
    with PostgresStore(postgres_url, create=False) as store:
        [batch] = store.refresh_batches(1)
        assert (batch.task_id, batch.state) == (task.task_id, "created")
        [record] = store.refreshes()
        assert (record.ended_at, record.outcome) == (None, None)
        # Write-ahead: the ledger holds every call the simulator answered (and at most the one
        # on its way at the kill).
        spent = store.requests_on() - sim.stats.requests
        assert sim.stats.compliance_requests <= spent <= sim.stats.compliance_requests + 1
    assert ids_at(postgres_url) == sent  # nothing deleted yet
    sim.config.task_processing_seconds = 0.0
    status, err = cli_refresh(sim, postgres_url)
    assert status == 0, err
    assert err.startswith("refresh 1 (resumed): ")
    assert sim.tasks == [task]  # polled again, never made again
    assert ids_at(postgres_url) == sent & now


def test_ctrl_c_and_a_suspicious_answer_exit_as_on_sqlite(
    tmp_path: Path, postgres_url: str
) -> None:
    # Harvested from one simulator, refreshed against another that never served these users:
    # its task finds every video gone, which is suspicious.
    with Simulator().run_in_thread() as first_url:
        users = write_users(tmp_path / "users.txt", CLI_NAMES)
        harvested_ = cli("harvest", users, "--db", postgres_url, "--base-url", first_url)
        assert harvested_.returncode == 0, harvested_.stderr
    before = ids_at(postgres_url)
    other = Simulator()
    with other.run_in_thread():
        other.config.task_processing_seconds = 3600.0
        child = subprocess.Popen(
            command("refresh", "--db", postgres_url, "--base-url", other.base_url,
                    "--poll-wait", "0.05"),
            env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while other.stats.compliance_by_path[TASK_STATUS_PATH] < 1:
            assert child.poll() is None, child.communicate()
            assert time.monotonic() < deadline, "the refresh never polled"
            time.sleep(0.02)
        child.send_signal(signal.SIGINT)
        _, err = child.communicate(timeout=30)
        assert child.returncode == 75, err
        assert err.rstrip().endswith(
            "interrupted: run the same command again to resume (the same tasks are polled)"
        )
        other.config.task_processing_seconds = 0.0
        status, err = cli_refresh(other, postgres_url)
        assert status == 1, err
        assert "nothing of it was deleted" in err
        assert ids_at(postgres_url) == before
        check = cli("status", "--db", postgres_url, "--check")
        assert check.returncode == 1
        assert "needs a person: refresh 1 ended stopped: suspicious" in check.stderr
        status, err = cli_refresh(other, postgres_url, "--accept-removals")
        assert status == 0, err
        assert ids_at(postgres_url) == set()
        assert len(other.tasks) == 1


def test_a_database_without_a_store_exits_2_before_any_request(
    thread_sim: Simulator, postgres_server: PostgresServer
) -> None:
    empty = postgres_server.url(postgres_server.create_database())
    status, err = cli_refresh(thread_sim, empty)
    assert status == 2
    assert "holds no harvest store yet" in err
    assert postgres_server.password not in err
    assert thread_sim.stats.compliance_requests + thread_sim.stats.token_requests == 0
