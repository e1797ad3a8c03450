"""A panel's rounds, diffs and data frames on the PostgreSQL store, with SQLite's meaning.

Every test runs against the session's real PostgreSQL server (`postgres_url`: a fresh database
each) and, where a harvest runs, the simulator over loopback; the world moves between rounds with
the simulator's ``epoch`` knob, and expectations come from its ground truth (`Simulator.changes`,
`Simulator.ground_truth`) and from the same panel harvested into a SQLite store.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import FakeClock, make_client, run_main, sim_env
from test_frames import read_rows, wire_rows
from test_round_completion import by_user
from test_rounds import FIELDS, video

from tiktok_repost_async import PostgresStore, Store, StoreLike, UserState, harvest
from tiktok_repost_async.diff import diff_rounds
from tiktok_repost_async.export import export_jsonl
from tiktok_repost_async.simulator import Simulator
from tiktok_repost_async.store import PageCommit, StoreMismatchError

WEEK = 7 * 86400.0


@pytest.fixture(params=["sqlite", "postgres"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Give a test a new store's place on each engine: a SQLite file, or a PostgreSQL URL."""
    if request.param == "sqlite":
        yield str(tmp_path / "panel.db")
    else:
        yield request.getfixturevalue("postgres_url")


def open_any(spec: str, clock: FakeClock | None = None) -> StoreLike:
    options: dict[str, Any] = {} if clock is None else {"clock": clock}
    if spec.startswith("postgresql://"):
        return PostgresStore(spec, fields=FIELDS, max_count=100, **options)
    return Store(spec, fields=FIELDS, max_count=100, **options)


def walk(store: StoreLike, username: str, *pages: list[bytes], partial: bool = False) -> None:
    """Walk a user in the current round as one harvest run does: claim it, commit its pages."""
    store.acquire_run_lock()
    try:
        assert store.claim_users([username])[0] is not None
        cursor = 0
        for number, page in enumerate(pages, 1):
            rows = [(json.loads(data)["id"], data) for data in page]
            last = number == len(pages)
            store.commit_pages(
                [PageCommit(username, rows, cursor + 100, not last or partial, 1, cursor=cursor)]
            )
            cursor += 100
        if partial:
            store.finish_user(username, UserState.DONE, partial=True)
    finally:
        store.release_run_lock()


def ids(rows: list[tuple[str, bytes, int]]) -> list[tuple[int, int]]:
    return [(int(video_id), observed) for video_id, _, observed in rows]


# -- the store's rounds, alike on both engines -----------------------------------------------


def test_a_user_joins_the_next_round_from_cursor_zero_on_either_engine(engine: str) -> None:
    with open_any(engine) as store:
        assert store.start_round() == (1, False)  # nothing walked yet: round 1 it is
        walk(store, "a", [video(1), video(2)], [video(3)])
        walk(store, "gone", [])
        assert store.start_round() == (2, True)
        assert store.current_round == 2
        store.acquire_run_lock()
        assert store.claim_users(["a", "new"]) == [
            ("a", UserState.PENDING, 0),
            ("new", UserState.PENDING, 0),
        ]
        store.release_run_lock()
        # Pending members: the same --new-round again resumes round 2.
        assert store.start_round() == (2, False)
        assert list(store.iter_round_users(1)) == [
            ("a", UserState.DONE, False),
            ("gone", UserState.DONE, False),
        ]
        assert list(store.iter_round_users(2)) == [
            ("a", UserState.PENDING, False),
            ("new", UserState.PENDING, False),
        ]
        assert store.known_video_ids("a") == {"1", "2", "3"}
        assert store.had_videos_before("a")
        assert not store.had_videos_before("new")
        walk(store, "a", [video(1, likes=5)])
        walk(store, "new", [video(9)])
        # The same video in two rounds is two observations, each in its round.
        assert store.round_videos("a", 1)[0] == ("1", video(1))
        assert store.round_videos("a", 2) == [("1", video(1, likes=5))]
        first, second = store.rounds()
        assert (first.users[UserState.DONE], first.videos, first.complete) == (2, 3, True)
        assert (second.users[UserState.DONE], second.videos, second.complete) == (2, 2, True)
        assert store.latest_video_count() == 2  # a's round 2 list and new's; gone had none
        assert [(c.video_id, c.change) for c in diff_rounds(store)] == [
            (1, "changed"),
            (2, "removed"),
            (3, "removed"),
        ]


def test_an_unread_input_keeps_a_round_open_and_unnamed_members_are_dropped(engine: str) -> None:
    with open_any(engine) as store:
        walk(store, "a", [video(1)])
        walk(store, "b", [video(2)])
        assert store.start_round() == (2, True)
        # A --new-round run claims both, walks a, and is killed before its input's end.
        store.acquire_run_lock()
        store.begin_round_input()
        store.claim_users(["a", "b"])
        store.commit_pages([PageCommit("a", [(1, video(1))], 100, False, 1)])
        store.release_run_lock()
        assert store.awaited_users() == 0  # both joined: none of round 1 is still awaited
        assert not store.round_record().input_read
        assert store.start_round() == (2, False)
        # The panel's list no longer names b: the run that reads it whole drops b.
        store.acquire_run_lock()
        store.begin_round_input()
        store.claim_users(["a"])
        assert store.end_round_input(drop_unnamed=True) == 1
        store.release_run_lock()
        record = store.round_record(2)
        assert (record.complete, record.users[UserState.DROPPED]) == (True, 1)
        assert [(c.username, c.change) for c in diff_rounds(store)] == []  # b is no removal
        # Named again, b is back in round 2 at its cursor.
        store.acquire_run_lock()
        assert store.claim_users(["b"]) == [("b", UserState.PENDING, 0)]
        store.release_run_lock()
        assert store.round_record(2).users[UserState.PENDING] == 1


def test_a_stop_at_known_list_is_completed_from_the_rounds_before_on_either_engine(
    engine: str,
) -> None:
    with open_any(engine) as store:
        walk(store, "a", [video(6), video(5), video(4)], [video(3), video(2), video(1)])
        assert store.start_round(stop_at_known=True) == (2, True)
        assert store.round_stops_at_known()
        walk(store, "a", [video(8), video(7)], [video(6), video(4, likes=3)], partial=True)
        store.start_round(stop_at_known=True)
        assert store.known_video_ids("a") == {"8", "7", "6", "4", "3", "2", "1"}
        walk(store, "a", [video(9), video(8)], partial=True)
        assert ids(store.completed_round_videos("a", 3)) == [
            (9, 3), (8, 3), (7, 2), (6, 2), (4, 2), (3, 1), (2, 1), (1, 1),
        ]  # fmt: skip
        assert [(c.video_id, c.change, c.partial) for c in diff_rounds(store, 1, 3)] == [
            (9, "added", True),
            (8, "added", True),
            (7, "added", True),
            (4, "changed", True),
            (5, "removed", True),
        ]
        assert [r.partial for r in store.rounds()] == [0, 1, 1]

        def exported(**kwargs: Any) -> list[tuple[int, int]]:
            out = io.BytesIO()
            export_jsonl(store, out, provenance=True, **kwargs)
            rows = [json.loads(line) for line in out.getvalue().splitlines()]
            return [(row["id"], row["round"]) for row in rows]

        assert exported(round=3) == ids(store.completed_round_videos("a", 3))
        # By default the latest whole list: round 1's (rounds 2 and 3 saw only heads).
        assert exported() == [(6, 1), (5, 1), (4, 1), (3, 1), (2, 1), (1, 1)]
        assert store.latest_video_count() == 6
        with pytest.raises(ValueError, match="no round 4: its rounds are 1 to 3"):
            exported(round=4)


def test_a_scheduled_round_starts_only_when_due_on_either_engine(engine: str) -> None:
    clock = FakeClock()
    start = clock.now
    with open_any(engine, clock) as store:
        walk(store, "a", [video(1)])
        store.set_round_cadence(WEEK)
        assert store.round_cadence == WEEK
        schedule = store.round_schedule()
        assert schedule is not None
        assert (schedule.round, schedule.finished, schedule.due) == (1, True, start + WEEK)
        assert store.start_round(every=WEEK) == (1, False)
        clock.now = start + WEEK - 60  # a timer a minute early still starts it
        assert store.start_round(every=WEEK, stop_at_known=True) == (2, True)
        assert store.start_round(every=WEEK) == (2, False)  # no member yet: resumed
        store.set_round_cadence(None)
        assert store.round_schedule() is None


# -- only on PostgreSQL: processes at once, the schema -----------------------------------------


@pytest.mark.parametrize("every", [None, WEEK])
def test_two_processes_asking_for_a_new_round_at_once_start_one(
    postgres_url: str, every: float | None
) -> None:
    clock = FakeClock()
    with PostgresStore(postgres_url, fields=FIELDS, max_count=100, clock=clock) as first:
        walk(first, "a", [video(1)])
    clock.now += 2 * WEEK
    stores = [PostgresStore(postgres_url, create=False, clock=clock) for _ in range(4)]
    ready = threading.Barrier(len(stores))
    results: list[tuple[int, bool]] = []

    def ask(store: PostgresStore) -> None:
        ready.wait()
        results.append(store.start_round(every=every))

    try:
        threads = [threading.Thread(target=ask, args=(store,)) for store in stores]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    finally:
        for store in stores:
            store.close()
    assert sorted(results) == [(2, False), (2, False), (2, False), (2, True)]
    with PostgresStore(postgres_url, create=False) as store:
        assert [r.number for r in store.rounds()] == [1, 2]


def test_a_version_1_store_gains_the_round_tables_and_a_newer_one_is_refused(
    postgres_url: str,
) -> None:
    import psycopg

    with PostgresStore(postgres_url, fields=FIELDS, max_count=100) as made:
        walk(made, "a", [video(1)])
    # As the previous version left it: no table of the rounds, schema 1.
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("DROP TABLE tiktok_user_rounds")
        conn.execute("UPDATE tiktok_meta SET value = '1' WHERE key = 'schema_version'")
    with PostgresStore(postgres_url, create=False) as old:
        assert old.start_round() == (2, True)
        walk(old, "a", [video(2)])
        assert [int(i) for i, _ in old.round_videos("a", 1)] == [1]
        assert [(c.video_id, c.change) for c in diff_rounds(old)] == [
            (2, "added"),
            (1, "removed"),
        ]
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        version = conn.execute(
            "SELECT value FROM tiktok_meta WHERE key = 'schema_version'"
        ).fetchone()
        assert version == ("2",)
        conn.execute("UPDATE tiktok_meta SET value = '3' WHERE key = 'schema_version'")
    with pytest.raises(StoreMismatchError, match="newer version of tiktok_repost_async"):
        PostgresStore(postgres_url, create=False)


# -- a panel against the simulator ---------------------------------------------------------------

# panelist3, 42 and 71 gain videos past the first page between rounds (see
# test_round_completion); carol_n30 fits one page; missing_panelist is never found.
PANEL = ["panelist3", "panelist42", "panelist71", "panelist2", "carol_n30", "missing_panelist"]


async def three_rounds(sim: Simulator, spec: str) -> list[int]:
    """Harvest PANEL in three rounds into ``spec``, the world a round on each time; return the
    requests each round cost at the simulator."""
    cost = []
    for epoch, options in enumerate(
        ({}, {"new_round": True}, {"new_round": True, "stop_at_known": True})
    ):
        sim.config.epoch = epoch
        before = sim.stats.requests
        async with make_client(sim) as client:
            outcomes = [o async for o in harvest(client, PANEL, store=spec, **options)]
        assert len(outcomes) == len(PANEL)
        cost.append(sim.stats.requests - before)
    return cost


def changes(store: StoreLike, first: int, second: int) -> list[dict[str, Any]]:
    return [change.as_row() for change in diff_rounds(store, first, second)]


@pytest.mark.slow
async def test_a_three_round_panel_on_postgres_diffs_as_the_truth_and_as_sqlite(
    sim: Simulator, postgres_url: str, tmp_path: Path
) -> None:
    db = tmp_path / "panel.db"
    pg_cost = await three_rounds(sim, postgres_url)
    lite_cost = await three_rounds(sim, str(db))
    assert pg_cost == lite_cost
    truth = {
        (first, second): {name: sim.changes(name, first - 1, second - 1) for name in PANEL}
        for first, second in ((1, 2), (2, 3), (1, 3))
    }
    listed = {
        epoch: {name: [v["id"] for v in sim.ground_truth(name, epoch=epoch)] for name in PANEL}
        for epoch in (0, 1, 2)
    }
    empty: dict[str, Any] = {"added": [], "removed": [], "counts": {}}
    with PostgresStore(postgres_url, create=False) as store, Store(db, create=False) as lite:
        rounds = store.rounds()
        assert [(r.number, r.complete, r.stop_at_known) for r in rounds] == [
            (1, True, False),
            (2, True, False),
            (3, True, True),
        ]
        assert [r.requests for r in rounds] == pg_cost
        assert [(r.users, r.partial, r.videos) for r in rounds] == [
            (r.users, r.partial, r.videos) for r in lite.rounds()
        ]
        # Each round's whole list of each user, as the API served it at that round's epoch.
        for number in (1, 2, 3):
            for name in PANEL:
                got = [i for i, _, _ in ids_of(store.completed_round_videos(name, number))]
                if number == 3:  # completed past its head: videos removed unseen stay in it
                    got = [i for i in got if i in listed[2][name]]
                assert got == listed[number - 1][name], (number, name)
        for (first, second), expected in truth.items():
            found = changes(store, first, second)
            # Byte for byte the diff that SQLite makes of the same wire.
            assert found == changes(lite, first, second), (first, second)
            by_name = by_user(found)
            for name in PANEL:
                got, want = by_name.get(name, empty), expected[name]
                assert got["added"] == want["added"], (first, second, name)
                if second < 3:  # two whole walks: exactly the truth
                    assert got == want, (first, second, name)
                else:  # past a stop-at-known head nothing was looked at
                    assert set(got["removed"]) <= set(want["removed"]), (first, second, name)
        assert any(t["removed"] for t in truth[(1, 2)].values())
        # The frames of each round equal the wire of its epoch (and SQLite's frames).
        for number in (None, 2):
            table = store.to_arrow(round=number)
            assert table.equals(lite.to_arrow(round=number))
        epoch_1 = [n for n in PANEL if listed[1][n]]
        assert read_rows(store.to_arrow(round=2).to_pylist()) == wire_rows(sim, epoch_1, epoch=1)
        frame = store.to_pandas(round=2, id_type="string")
        assert frame["id"].tolist() == [row["id"] for row in wire_rows(sim, epoch_1, epoch=1)]
        assert store.to_polars(round=2).height == len(frame)
    # The command line's diff of the PostgreSQL store: the same records.
    ran = await asyncio.to_thread(
        run_main, "diff", "--db", postgres_url, "--from", "1", "--to", "3"
    )
    assert ran.returncode == 0, ran.stderr
    with PostgresStore(postgres_url, create=False) as store:
        assert [json.loads(line) for line in ran.stdout.splitlines()] == changes(store, 1, 3)
    assert "changes from round 1 to round 3" in ran.stderr
    status = await asyncio.to_thread(run_main, "status", "--db", postgres_url, "--json")
    assert status.returncode == 0, status.stderr
    assert [r["round"] for r in json.loads(status.stdout)["rounds"]] == [1, 2, 3]


def ids_of(rows: list[tuple[str, bytes, int]]) -> list[tuple[int, bytes, int]]:
    return [(int(video_id), data, observed) for video_id, data, observed in rows]


# -- real processes: a kill mid-round, two scheduled runs at once --------------------------------

KILL_PANEL = [f"panelist{i}" for i in range(12)] + ["big_panelist"]


def harvest_argv(users: Path, url: str, *options: str) -> list[str]:
    return [
        sys.executable, "-m", "tiktok_repost_async", "harvest", str(users), "--db", url,
        "--rate", "10000", "--no-progress", *options,
    ]  # fmt: skip


def round_videos(url: str, number: int) -> int:
    try:
        with PostgresStore(url, create=False) as store:
            if store.current_round < number:
                return 0
            return store.round_record(number).videos
    except Exception:
        return 0


def check_round(sim: Simulator, url: str, number: int, names: list[str]) -> None:
    """Check that a round holds each user's list exactly as served at its epoch."""
    with PostgresStore(url, create=False) as store:
        record = store.round_record(number)
        assert record.complete
        for name in names:
            got = [int(i) for i, _ in store.round_videos(name, number)]
            assert got == [v["id"] for v in sim.ground_truth(name, epoch=number - 1)], name
        found = by_user(changes(store, number - 1, number))
    empty: dict[str, Any] = {"added": [], "removed": [], "counts": {}}
    for name in names:
        assert found.get(name, empty) == sim.changes(name, number - 2, number - 1), name


@pytest.mark.slow
def test_a_new_round_killed_mid_round_is_finished_by_the_same_command(
    tmp_path: Path, postgres_url: str
) -> None:
    users = tmp_path / "panel.txt"
    users.write_text("\n".join(KILL_PANEL) + "\n")
    sim = Simulator()
    with sim.run_in_thread():
        env = sim_env(sim)
        first = subprocess.run(
            harvest_argv(users, postgres_url), env=env, capture_output=True, text=True, timeout=120
        )
        assert first.returncode == 0, first.stderr
        # A week passes; round 2 is killed half-way (SIGKILL), then the same command runs again.
        sim.config.epoch = 1
        sim.config.latency = 0.03
        argv = harvest_argv(users, postgres_url, "--new-round", "--concurrency", "2")
        child = subprocess.Popen(argv, env=env, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while round_videos(postgres_url, 2) < 300 and child.poll() is None:
            assert time.monotonic() < deadline, "round 2 made no progress"
            time.sleep(0.02)
        assert child.poll() is None, "round 2 ended before it could be killed"
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
        with PostgresStore(postgres_url, create=False) as store:
            assert not store.round_record(2).complete
        sim.config.latency = 0.0
        sent = sim.stats.requests
        again = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
        assert again.returncode == 0, again.stderr
        assert "round 2 (resumed)" in again.stderr
        # The resumed run walks on from the saved cursors: no more than round 2's pages.
        assert sim.stats.requests - sent < sum(sim.pages_needed(n) for n in KILL_PANEL)
        check_round(sim, postgres_url, 2, KILL_PANEL)
    with PostgresStore(postgres_url, create=False) as store:
        assert [r.number for r in store.rounds()] == [1, 2]
        assert [run.outcome for run in store.runs()] == ["finished", "killed", "finished"]


@pytest.mark.slow
def test_two_scheduled_runs_at_once_start_one_round_and_share_it(
    tmp_path: Path, postgres_url: str
) -> None:
    import psycopg

    users = tmp_path / "panel.txt"
    users.write_text("\n".join(KILL_PANEL) + "\n")
    sim = Simulator()
    with sim.run_in_thread():
        env = sim_env(sim)
        argv = harvest_argv(users, postgres_url, "--new-round-every", "7d", "--concurrency", "2")
        first = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
        assert first.returncode == 0, first.stderr
        # Round 1 started eight days ago: the next is due, and both runs see it due.
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute("UPDATE tiktok_rounds SET started_at = '2020-01-01T00:00:00Z'")
        sim.config.epoch = 1
        sim.config.latency = 0.01
        sent = sim.stats.requests
        both = [
            subprocess.Popen(argv, env=env, stderr=subprocess.PIPE, text=True) for _ in range(2)
        ]
        said = [child.communicate(timeout=120)[1] for child in both]
        assert [child.returncode for child in both] == [0, 0], said
        assert sum("round 2 (started)" in text for text in said) == 1, said
        # Each page of round 2 fetched once: the two runs shared its users.
        assert sim.stats.requests - sent == sum(sim.pages_needed(n) for n in KILL_PANEL)
        check_round(sim, postgres_url, 2, KILL_PANEL)
    with PostgresStore(postgres_url, create=False) as store:
        assert [r.number for r in store.rounds()] == [1, 2]
        schedule = store.round_schedule()
        assert schedule is not None
        assert schedule.every == WEEK


# -- the silent empty on a shared store -----------------------------------------------------------


async def test_a_silent_round_on_postgres_stops_records_nothing_and_resumes_exact(
    sim: Simulator, postgres_url: str
) -> None:
    from test_silent_empty import CONCURRENCY, PANEL, run

    from tiktok_repost_async import StopReason
    from tiktok_repost_async.diff import DiffError
    from tiktok_repost_async.harvester import EMPTY_ALARM_SEEN
    from tiktok_repost_async.simulator import Fault

    _, stopped = await asyncio.wait_for(run(sim, postgres_url, PANEL), 60)
    assert stopped is None
    # A week later the API answers every user with an empty list and no error.
    sim.config.epoch = 1
    sim.config.persistent_fault = Fault.SILENT_EMPTY
    before = sim.stats.requests
    outcomes, stopped = await asyncio.wait_for(
        run(sim, postgres_url, PANEL, new_round=True),
        60,
    )
    assert stopped is not None
    assert stopped.reason is StopReason.EMPTY
    assert sim.stats.requests - before <= EMPTY_ALARM_SEEN + CONCURRENCY
    assert outcomes == []
    with PostgresStore(postgres_url, create=False) as store:
        states = {state for _, state, _ in store.iter_round_users(2)}
        assert UserState.DONE not in states
        with pytest.raises(DiffError, match="in progress"):
            list(diff_rounds(store, 1, 2))
    # The API is well again: the same command finishes round 2, exactly as served.
    sim.config.persistent_fault = None
    outcomes, stopped = await asyncio.wait_for(
        run(sim, postgres_url, PANEL, new_round=True),
        60,
    )
    assert stopped is None
    assert {o.state for o in outcomes} == {UserState.DONE}
    empty: dict[str, Any] = {"added": [], "removed": [], "counts": {}}
    with PostgresStore(postgres_url, create=False) as store:
        found = by_user(changes(store, 1, 2))
        for name in PANEL:
            got = [int(i) for i, _ in store.round_videos(name, 2)]
            assert got == [v["id"] for v in sim.ground_truth(name, epoch=1)], name
            assert found.get(name, empty) == sim.changes(name, 0, 1), name


async def test_a_walk_cut_short_and_the_probe_after_it_on_postgres(
    sim: Simulator, postgres_url: str
) -> None:
    # The shared store reads the last whole list and the runs as SQLite does: a walk cut short
    # past its first page is held at its cursor, the run after the stop probes with one
    # request, and the round ends exact once the API is well.
    from test_silent_empty import LONG, pages_of, run

    from tiktok_repost_async import StopReason
    from tiktok_repost_async.simulator import Fault

    assert (await asyncio.wait_for(run(sim, postgres_url, LONG), 60))[1] is None
    sim.config.epoch = 1
    for name in LONG:
        sim.script(name, [None, Fault.SILENT_EMPTY, Fault.SILENT_EMPTY])
    _, stopped = await asyncio.wait_for(run(sim, postgres_url, LONG, new_round=True), 60)
    assert stopped is not None
    assert stopped.reason is StopReason.EMPTY
    with PostgresStore(postgres_url, create=False) as store:
        cursors = {r.username: (r.state, r.cursor) for r in store.iter_users()}
    assert cursors == dict.fromkeys(LONG, (UserState.PENDING, 100))
    sim.config.persistent_fault = Fault.SILENT_EMPTY
    before = sim.stats.requests
    _, stopped = await asyncio.wait_for(run(sim, postgres_url, LONG, new_round=True), 60)
    assert stopped is not None
    assert "the API still answers empty lists" in str(stopped)
    assert sim.stats.requests - before == 1
    sim.config.persistent_fault = None
    before = sim.stats.requests
    _, stopped = await asyncio.wait_for(run(sim, postgres_url, LONG, new_round=True), 60)
    assert stopped is None
    assert sim.stats.requests - before == sum(pages_of(sim, name, 1) - 1 for name in LONG)
    with PostgresStore(postgres_url, create=False) as store:
        for name in LONG:
            got = [int(i) for i, _ in store.round_videos(name, 2)]
            assert got == [v["id"] for v in sim.ground_truth(name, epoch=1)], name
