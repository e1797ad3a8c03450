"""The harvest's SQLite store: settings, exactly-once pages, the ledger, the run lock, crashes."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tiktok_repost_async.store._core as store_core
import tiktok_repost_async.store._reading as store_reading
from tiktok_repost_async.store import (
    FINAL_STATES,
    SCHEMA_VERSION,
    Store,
    StoreError,
    StoreLockedError,
    StoreMismatchError,
    UserRecord,
    UserState,
)

ROOT = Path(__file__).resolve().parents[1]
FIELDS = ["id", "create_time", "username"]
DAY1 = 1_711_929_600.0  # 2024-04-01T00:00:00Z
DAY1_TEXT = "2024-04-01"
DAY2_TEXT = "2024-04-02"
# Real and documented ids that no 64-bit integer column could hold.
HUGE_IDS = [73207681965695992750, 9999999999999999999, 2**64, 2**63, 7, 0]


class FakeClock:
    """Stand in for time.time: returns `now`, moved by hand."""

    def __init__(self, now: float = DAY1 + 3600) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def page(*ids: int) -> list[tuple[int, bytes]]:
    """Return a page of (video id, JSON bytes) as the harvest would hand it over."""
    return [(i, b'{"id":%d}' % i) for i in ids]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "harvest.db"


@pytest.fixture
def store(db: Path, clock: FakeClock) -> Iterator[Store]:
    with Store(db, fields=FIELDS, max_count=100, clock=clock) as s:
        yield s


@contextlib.contextmanager
def raw(db: Path) -> Iterator[sqlite3.Connection]:
    """Open the file with plain sqlite3, to see what really reached the disk; close it after."""
    with contextlib.closing(sqlite3.connect(db)) as conn, conn:
        yield conn


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


# -- opening, settings and refusals ------------------------------------------------------------


def test_create_then_reopen_reads_settings_from_the_file(db: Path, clock: FakeClock) -> None:
    with Store(db, fields=FIELDS, max_count=50, clock=clock) as s:
        assert (s.fields, s.max_count, s.path) == (tuple(FIELDS), 50, db)
        s.add_users(["alice"])
        s.commit_page("alice", page(1, 2), next_cursor=2, has_more=False, requests=1)
    assert s.closed
    with Store(db, create=False) as s:
        assert (s.fields, s.max_count) == (tuple(FIELDS), 50)
        assert s.video_count() == 2
        assert s.user("alice") == UserRecord("alice", UserState.DONE, 2, 1, 2, 1, None)
    # The same fields in another order ask the API for the same data: accepted.
    with Store(db, fields=list(reversed(FIELDS)), max_count=50) as s:
        assert s.fields == tuple(FIELDS)
    with raw(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        meta = dict(conn.execute("SELECT key, value FROM meta"))
    # Nothing else lives in meta: there is no place where a credential could end up.
    assert set(meta) == {"schema_version", "fields", "max_count", "created_at"}
    assert meta["schema_version"] == str(SCHEMA_VERSION)
    assert meta["created_at"] == "2024-04-01T01:00:00Z"


def test_other_fields_are_refused_naming_the_difference(db: Path) -> None:
    Store(db, fields=FIELDS, max_count=100).close()
    with pytest.raises(StoreMismatchError) as info:
        Store(db, fields=["id", "like_count"], max_count=100)
    message = str(info.value)
    assert "fields id,create_time,username" in message
    assert "missing: create_time,username" in message
    assert "extra: like_count" in message
    assert "--db" in message
    assert isinstance(info.value, ValueError)


def test_other_max_count_is_refused(db: Path) -> None:
    Store(db, fields=FIELDS, max_count=100).close()
    with pytest.raises(StoreMismatchError, match=r"max_count 100, not 20.*another --db"):
        Store(db, fields=FIELDS, max_count=20)


def test_a_newer_schema_version_is_refused_asking_for_an_upgrade(db: Path) -> None:
    Store(db, fields=FIELDS, max_count=100).close()
    with raw(db) as conn:
        conn.execute(
            "UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),)
        )
    with pytest.raises(
        StoreMismatchError,
        match=rf"newer version.*schema {SCHEMA_VERSION + 1}.*reads schema {SCHEMA_VERSION}"
        r".*upgrade.*another --db",
    ):
        Store(db, create=False)


@pytest.mark.parametrize("version", ["0", "x", ""])
def test_an_unknown_schema_version_is_refused(db: Path, version: str) -> None:
    Store(db, fields=FIELDS, max_count=100).close()
    with raw(db) as conn:
        conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (version,))
    with pytest.raises(
        StoreMismatchError, match=rf"cannot read.*schema 1 to {SCHEMA_VERSION}.*another --db"
    ):
        Store(db, create=False)


def test_a_file_that_is_not_sqlite_gives_a_clear_error(db: Path) -> None:
    garbage = b"this is a CSV file, not a database\n" * 200
    db.write_bytes(garbage)
    with pytest.raises(StoreError, match="not an SQLite database") as info:
        Store(db, fields=FIELDS, max_count=100)
    assert not isinstance(info.value, sqlite3.Error)
    assert str(db) in str(info.value)
    assert db.read_bytes() == garbage, "a refused file must be left as it was"


def test_another_applications_database_is_refused(db: Path) -> None:
    with raw(db) as conn:
        conn.execute("CREATE TABLE notes (body TEXT)")
    with pytest.raises(StoreError, match="not a harvest store"):
        Store(db, fields=FIELDS, max_count=100)


def test_create_false_on_a_missing_file(db: Path) -> None:
    with pytest.raises(StoreError, match="does not exist") as info:
        Store(db, create=False)
    assert str(db) in str(info.value)
    assert not db.exists(), "looking at a store must never create one"


def test_an_unopenable_path_gives_a_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="cannot open the store"):
        Store(tmp_path / "no" / "such" / "dir" / "h.db", fields=FIELDS, max_count=100)


def test_a_new_store_needs_its_settings(db: Path) -> None:
    with pytest.raises(StoreError, match="pass fields and max_count"):
        Store(db)
    assert not db.exists()


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"fields": "id,username", "max_count": 100}, TypeError),
        ({"fields": [], "max_count": 100}, ValueError),
        ({"fields": ["id", "a,b"], "max_count": 100}, ValueError),
        ({"fields": ["id", " "], "max_count": 100}, ValueError),
        ({"fields": FIELDS, "max_count": 0}, ValueError),
        ({"fields": FIELDS, "max_count": -5}, ValueError),
    ],
)
def test_bad_settings_are_rejected(db: Path, kwargs: dict[str, object], error: type) -> None:
    with pytest.raises(error):
        Store(db, **kwargs)  # type: ignore[arg-type]


def test_a_closed_store_refuses_work(store: Store) -> None:
    store.close()
    store.close()  # twice is harmless
    with pytest.raises(StoreError, match="closed"):
        store.add_users(["alice"])
    with pytest.raises(StoreError, match="closed"):
        store.acquire_run_lock()


# -- users -------------------------------------------------------------------------------------


def test_add_users_keeps_input_order_and_is_idempotent(store: Store) -> None:
    assert store.add_users(["carol", "alice", "bob"]) == [
        ("carol", UserState.PENDING, 0),
        ("alice", UserState.PENDING, 0),
        ("bob", UserState.PENDING, 0),
    ]
    store.commit_page("alice", page(1, 2, 3), next_cursor=3, has_more=True, requests=1)
    store.commit_page("bob", page(4), next_cursor=1, has_more=False, requests=1)
    # Again, in another order, with a new name and a repeat inside the chunk.
    assert store.add_users(["bob", "dave", "alice", "dave"]) == [
        ("bob", UserState.DONE, 1),
        ("dave", UserState.PENDING, 0),
        ("alice", UserState.PENDING, 3),
        ("dave", UserState.PENDING, 0),
    ]
    assert [u.username for u in store.iter_users()] == ["carol", "alice", "bob", "dave"]
    assert store.add_users([]) == []


def test_add_users_rejects_a_bad_name_before_writing(store: Store) -> None:
    with pytest.raises(ValueError, match="username"):
        store.add_users(["alice", ""])
    assert store.user("alice") is None


def test_add_users_is_fast_enough_for_a_big_run(store: Store) -> None:
    names = [f"user{i:06d}" for i in range(20_000)]
    # More names in one call than one SQL IN (...) list takes.
    got = store.add_users(names[:1200] + names[:3])
    assert [g[0] for g in got] == names[:1200] + names[:3]
    for start in range(0, len(names), 500):
        got = store.add_users(names[start : start + 500])
        assert [g[0] for g in got] == names[start : start + 500]
    assert store.state_counts()[UserState.PENDING] == 20_000
    first = next(store.iter_users())
    assert first.username == "user000000"


# -- pages: exactly once -----------------------------------------------------------------------


def test_commit_page_advances_the_walk(store: Store) -> None:
    store.add_users(["alice"])
    assert store.commit_page("alice", page(10, 11), next_cursor=2, has_more=True, requests=3) == 2
    assert store.user("alice") == UserRecord("alice", UserState.PENDING, 2, 1, 2, 3, None)
    # An empty page with has_more is not the end.
    assert store.commit_page("alice", [], next_cursor=4, has_more=True, requests=1) == 0
    assert store.commit_page("alice", page(12), next_cursor=5, has_more=False, requests=1) == 1
    assert store.user("alice") == UserRecord("alice", UserState.DONE, 5, 3, 3, 5, None)
    assert store.requests_on(DAY1_TEXT) == 5


def test_repeated_pages_and_videos_are_stored_once(store: Store) -> None:
    store.add_users(["alice", "bob"])
    assert store.commit_page("alice", page(1, 2, 3), next_cursor=3, has_more=True, requests=1) == 3
    # The same page again (fetched again after a crash): nothing new.
    assert store.commit_page("alice", page(1, 2, 3), next_cursor=3, has_more=True, requests=1) == 0
    # A page that repeats a video of the previous one, and one repeated within itself.
    assert store.commit_page("alice", page(3, 4, 4), next_cursor=6, has_more=False, requests=1) == 1
    # Another user reposting the same video is another row.
    assert store.commit_page("bob", page(2), next_cursor=1, has_more=False, requests=1) == 1
    alice = store.user("alice")
    assert alice is not None
    assert (alice.videos, alice.pages, alice.requests) == (4, 3, 3)
    assert store.video_count() == 5
    assert [(u, v) for u, v, _ in store.iter_videos()] == [
        ("alice", "1"),
        ("alice", "2"),
        ("alice", "3"),
        ("alice", "4"),
        ("bob", "2"),
    ]


def test_ids_beyond_uint64_round_trip_exactly_in_api_order(store: Store, db: Path) -> None:
    store.add_users(["alice"])
    store.commit_page("alice", page(*HUGE_IDS), next_cursor=6, has_more=False, requests=1)
    got = list(store.iter_videos())
    assert [v for _, v, _ in got] == [str(i) for i in HUGE_IDS]
    assert got[0] == ("alice", "73207681965695992750", b'{"id":73207681965695992750}')
    assert all(type(v) is str and type(d) is bytes for _, v, d in got)
    with raw(db) as conn:
        kinds = {row[0] for row in conn.execute("SELECT typeof(video_id) FROM videos")}
        assert kinds == {"text"}
        assert {row[0] for row in conn.execute("SELECT typeof(data) FROM videos")} == {"blob"}


def test_a_page_that_fails_midway_leaves_nothing(store: Store, db: Path) -> None:
    store.add_users(["alice"])
    store.commit_page("alice", page(1), next_cursor=1, has_more=True, requests=1)
    before = store.user("alice")
    bad: list[tuple[int, bytes]] = [*page(2, 3), (4, "not bytes")]  # type: ignore[list-item]
    with pytest.raises(TypeError, match="bytes"):
        store.commit_page("alice", bad, next_cursor=4, has_more=False, requests=1)
    with pytest.raises(TypeError, match="int"):
        store.commit_page("alice", [("5", b"{}")], next_cursor=4, has_more=False, requests=1)  # type: ignore[list-item]
    assert store.user("alice") == before
    assert store.video_count() == 1
    assert store.requests_on(DAY1_TEXT) == 1
    # The store is still usable, and the page goes in whole on the next try.
    assert store.commit_page("alice", page(2, 3, 4), next_cursor=4, has_more=False, requests=1) == 3


def test_a_failure_after_the_videos_rolls_back_the_whole_page(
    store: Store, db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.add_users(["alice"])

    def boom(conn: sqlite3.Connection, day: str, count: int) -> None:
        # By now the videos are inserted and the cursor moved, inside the transaction.
        assert conn.execute("SELECT count(*) FROM videos").fetchone()[0] == 3
        raise OSError("disk full")

    monkeypatch.setattr(Store, "_add_to_ledger", staticmethod(boom))
    with pytest.raises(OSError, match="disk full"):
        store.commit_page("alice", page(1, 2, 3), next_cursor=3, has_more=False, requests=2)
    monkeypatch.undo()
    # Seen from another connection: nothing of the page, the cursor where it was.
    with raw(db) as conn:
        assert conn.execute("SELECT count(*) FROM videos").fetchone()[0] == 0
        assert conn.execute("SELECT state, cursor, pages, requests FROM users").fetchall() == [
            ("pending", 0, 0, 0)
        ]
        assert conn.execute("SELECT count(*) FROM requests").fetchone()[0] == 0


def test_unknown_users_are_refused(store: Store) -> None:
    with pytest.raises(StoreError, match="unknown user 'ghost'"):
        store.commit_page("ghost", page(1), next_cursor=1, has_more=False, requests=1)
    with pytest.raises(StoreError, match="unknown user 'ghost'"):
        store.commit_page("ghost", [], next_cursor=1, has_more=False, requests=1)
    with pytest.raises(StoreError, match="unknown user 'ghost'"):
        store.finish_user("ghost", UserState.NOT_FOUND, requests=1)
    assert store.video_count() == 0
    assert store.requests_on(DAY1_TEXT) == 0


@given(st.lists(st.lists(st.integers(0, 12), max_size=6), min_size=1, max_size=8))
@settings(max_examples=40, deadline=None)
def test_stored_videos_are_the_first_sightings_in_order(pages: list[list[int]]) -> None:
    with (
        tempfile.TemporaryDirectory() as tmp,
        Store(Path(tmp) / "h.db", fields=["id"], max_count=100) as s,
    ):
        s.add_users(["u"])
        for n, ids in enumerate(pages, 1):
            s.commit_page("u", page(*ids), next_cursor=n, has_more=n < len(pages), requests=1)
        expected = list(dict.fromkeys(i for ids in pages for i in ids))
        assert [v for _, v, _ in s.iter_videos()] == [str(i) for i in expected]
        assert s.user("u") == UserRecord(
            "u", UserState.DONE, len(pages), len(pages), len(expected), len(pages), None
        )


# -- final states ------------------------------------------------------------------------------


def test_finish_user_and_reset_failed(store: Store) -> None:
    store.add_users(["a", "b", "c", "d", "e"])
    store.commit_page("b", page(1, 2), next_cursor=2, has_more=True, requests=1)
    store.finish_user("a", UserState.NOT_FOUND, error="cannot find the user", requests=1)
    store.finish_user("b", UserState.FAILED, error="HTTP 500 x5", requests=5)
    store.finish_user("c", UserState.UNAVAILABLE, requests=1)
    store.finish_user("d", UserState.FAILED, error="timeout", requests=3)
    assert store.user("a") == UserRecord(
        "a", UserState.NOT_FOUND, 0, 0, 0, 1, "cannot find the user"
    )
    assert store.user("b") == UserRecord("b", UserState.FAILED, 2, 1, 2, 6, "HTTP 500 x5")
    assert store.requests_on(DAY1_TEXT) == 11
    assert store.state_counts() == {
        UserState.PENDING: 1,
        UserState.DONE: 0,
        UserState.NOT_FOUND: 1,
        UserState.UNAVAILABLE: 1,
        UserState.FAILED: 2,
        UserState.INCOMPLETE: 0,
        UserState.DROPPED: 0,
    }
    assert [u.username for u in store.failed_users()] == ["b", "d"]
    assert [u.username for u in store.failed_users(limit=1)] == ["b"]
    assert [u.username for u in store.iter_users(FINAL_STATES)] == ["a", "c"]
    assert [u.username for u in store.iter_users({UserState.PENDING, UserState.FAILED})] == [
        "b",
        "d",
        "e",
    ]
    assert UserState.FAILED not in FINAL_STATES

    assert store.reset_failed() == 2
    assert store.reset_failed() == 0
    b = store.user("b")
    assert b is not None
    assert (b.state, b.cursor, b.videos) == (UserState.PENDING, 2, 2), "resume where it stopped"
    # The retried walk goes on from its cursor; success clears the old error.
    store.commit_page("b", page(3), next_cursor=3, has_more=False, requests=1)
    assert store.user("b") == UserRecord("b", UserState.DONE, 3, 2, 3, 7, None)
    assert store.add_users(["b"]) == [("b", UserState.DONE, 3)]


def test_finish_user_refuses_pending(store: Store) -> None:
    store.add_users(["a"])
    with pytest.raises(ValueError, match="pending"):
        store.finish_user("a", UserState.PENDING)


def test_state_counts_of_an_empty_store(store: Store) -> None:
    assert store.state_counts() == dict.fromkeys(UserState, 0)
    assert store.video_count() == 0
    assert store.user("nobody") is None
    assert store.failed_users() == []


# -- the request ledger ------------------------------------------------------------------------


def test_ledger_counts_per_utc_day(store: Store, clock: FakeClock) -> None:
    store.add_users(["a", "b"])
    clock.now = DAY1 + 86_400 - 1  # 23:59:59 on day 1
    store.commit_page("a", page(1), next_cursor=1, has_more=True, requests=2)
    store.finish_user("b", UserState.NOT_FOUND, requests=1)
    store.record_requests(4)
    assert store.requests_on() == 7
    clock.now = DAY1 + 86_400  # midnight: a new day, a new row
    assert store.requests_on() == 0
    store.commit_page("a", page(2), next_cursor=2, has_more=False, requests=3)
    store.record_requests(1, day="2024-01-15")
    store.record_requests(0)
    assert store.requests_on(DAY1_TEXT) == 7
    assert store.requests_on(DAY2_TEXT) == 3
    assert store.requests_on("2024-01-15") == 1
    assert store.requests_on("2023-12-31") == 0
    a = store.user("a")
    assert a is not None
    assert a.requests == 5


@pytest.mark.parametrize("day", ["2024-4-1", "2024-04-01T00:00", "yesterday", "2024-02-30"])
def test_ledger_days_are_checked(store: Store, day: str) -> None:
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        store.record_requests(1, day=day)
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        store.requests_on(day)


def test_negative_request_counts_are_refused(store: Store) -> None:
    store.add_users(["a"])
    with pytest.raises(ValueError, match="requests"):
        store.commit_page("a", page(1), next_cursor=1, has_more=False, requests=-1)
    with pytest.raises(ValueError, match="count"):
        store.record_requests(-3)
    assert store.video_count() == 0


# -- skipped input lines -----------------------------------------------------------------------


def test_skipped_lines_counted_exactly_and_kept_up_to_a_cap(
    store: Store, db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_core, "SKIPPED_ROWS_KEPT", 3)
    for n in range(1, 6):
        store.add_skipped(n, f"bad name {n}", "invalid characters")
    store.add_skipped(6, "x" * 5000, "too long")
    assert store.skipped_counts() == {"invalid characters": 5, "too long": 1}
    kept = store.skipped(limit=10)
    assert kept == [(n, f"bad name {n}", "invalid characters") for n in (1, 2, 3)]
    assert store.skipped(limit=2) == kept[:2]
    with raw(db) as conn:
        assert conn.execute("SELECT count(*) FROM skipped").fetchone()[0] == 3
    store.clear_skipped()
    assert store.skipped_counts() == {}
    assert store.skipped() == []


def test_skipped_lines_ride_with_the_next_write_and_survive_a_failed_one(
    db: Path, clock: FakeClock
) -> None:
    with Store(db, fields=FIELDS, max_count=100, clock=clock) as s:
        s.add_users(["a"])
        s.add_skipped(7, "@@@", "invalid characters")
        with pytest.raises(TypeError):
            s.commit_page("a", [(1, None)], next_cursor=1, has_more=False, requests=1)  # type: ignore[list-item]
        with raw(db) as conn:
            assert conn.execute("SELECT count(*) FROM skipped").fetchone()[0] == 0
        s.add_users(["b"])  # the next write takes them along
        with raw(db) as conn:
            assert conn.execute("SELECT line_no, raw FROM skipped").fetchall() == [(7, "@@@")]
        s.add_skipped(9, "", "empty")
    # close() flushes what is still buffered.
    with Store(db, create=False) as s:
        assert s.skipped_counts() == {"empty": 1, "invalid characters": 1}
        assert s.skipped() == [(7, "@@@", "invalid characters"), (9, "", "empty")]


def test_a_long_run_of_bad_lines_reaches_the_disk_without_other_writes(
    store: Store, db: Path
) -> None:
    for n in range(1200):
        store.add_skipped(n, "?", "bad")
    with raw(db) as conn:
        stored = conn.execute("SELECT count FROM skipped_counts").fetchone()[0]
    assert stored >= 1000, "the buffer must flush on its own"


# -- reading videos ----------------------------------------------------------------------------


def test_iter_videos_follows_input_order_then_api_order(store: Store) -> None:
    store.add_users(["zed", "amy"])
    # Pages of the two users interleave, as concurrent workers commit them.
    store.commit_page("amy", page(50, 10), next_cursor=2, has_more=True, requests=1)
    store.commit_page("zed", page(9), next_cursor=1, has_more=True, requests=1)
    store.commit_page("amy", page(30), next_cursor=3, has_more=False, requests=1)
    store.commit_page("zed", page(1), next_cursor=2, has_more=False, requests=1)
    assert [(u, v) for u, v, _ in store.iter_videos(batch=1)] == [
        ("zed", "9"),
        ("zed", "1"),
        ("amy", "50"),
        ("amy", "10"),
        ("amy", "30"),
    ]
    with pytest.raises(ValueError, match="batch"):
        next(store.iter_videos(batch=0))


def test_iter_videos_streams_instead_of_loading_everything(store: Store) -> None:
    users = [f"u{i:02d}" for i in range(20)]
    store.add_users(users)
    blob = b"x" * 1000
    # 20 users x 10 pages x 100 videos = 20,000 videos, 20 MB of data, pages interleaved.
    for p in range(10):
        for n, user in enumerate(users):
            vids = [(n * 10_000 + p * 100 + k, blob) for k in range(100)]
            store.commit_page(user, vids, next_cursor=(p + 1) * 100, has_more=p < 9, requests=1)
    assert store.video_count() == 20_000

    tracemalloc.start()
    try:
        count = 0
        last = (-1, -1)
        for username, video_id, data in store.iter_videos(batch=500):
            key = (users.index(username), int(video_id))
            assert key > last, "order broken"
            assert len(data) == 1000
            last = key
            count += 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 20_000
    # All rows at once would be more than 20 MB; a batch of 500 is about half a megabyte.
    assert peak < 5_000_000, f"iter_videos held {peak} bytes at once"


def test_iter_videos_never_sorts_the_whole_table(store: Store, db: Path) -> None:
    # Ten million rows sorted before the first one comes out would stall an export for minutes
    # and fill the temp directory; only one user's videos may be sorted at a time.
    queries = [
        store_reading._VIDEOS_IN_ORDER.format(
            columns=store_reading._PROVENANCE_COLUMNS if provenance else "",
            join=store_reading._PROVENANCE_JOIN if provenance else "",
            where=where,
        )
        for provenance in (False, True)
        for where in ("", " WHERE v.round = 2", store_reading._LATEST_OBSERVATION)
    ]
    with raw(db) as conn:
        conn.execute("ANALYZE")
        for query in queries:
            plan = [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + query)]
            assert plan[0].startswith("SCAN u"), (query, plan)
            assert "USE TEMP B-TREE FOR ORDER BY" not in plan, (query, plan)


def test_an_abandoned_iterator_does_not_block_writes(store: Store) -> None:
    store.add_users(["a"])
    store.commit_page("a", page(1, 2, 3), next_cursor=3, has_more=True, requests=1)
    videos = store.iter_videos(batch=1)
    next(videos)
    users = store.iter_users()
    next(users)
    store.commit_page("a", page(4), next_cursor=4, has_more=False, requests=1)
    assert store.video_count() == 4


async def test_usable_from_one_dedicated_writer_thread(store: Store) -> None:
    loop = asyncio.get_running_loop()
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as writer:
        got = await loop.run_in_executor(writer, store.add_users, ["a"])
        assert got == [("a", UserState.PENDING, 0)]
        added = await loop.run_in_executor(
            writer,
            lambda: store.commit_page("a", page(1), next_cursor=1, has_more=False, requests=1),
        )
    assert added == 1
    assert store.video_count() == 1


# -- the run lock --------------------------------------------------------------------------------


def test_run_lock_within_one_process(db: Path) -> None:
    with Store(db, fields=FIELDS, max_count=100) as first, Store(db, create=False) as second:
        with first.run_lock():
            assert first.holds_run_lock
            with pytest.raises(StoreLockedError, match=f"pid {os.getpid()}"):
                second.acquire_run_lock()
            with pytest.raises(StoreError, match="already holds"):
                first.acquire_run_lock()
        assert not first.holds_run_lock
        second.acquire_run_lock()
        assert first.lock_path.read_text().strip() == f"{os.getpid()} harvest"
    # close() released it.
    with Store(db, create=False) as third:
        third.acquire_run_lock()


def test_run_lock_held_by_another_process_dies_with_it(db: Path) -> None:
    Store(db, fields=FIELDS, max_count=100).close()
    holder = textwrap.dedent(
        """
        import sys, time
        from tiktok_repost_async.store import Store
        store = Store(sys.argv[1], create=False)
        store.acquire_run_lock()
        print("locked", flush=True)
        time.sleep(60)
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", holder, str(db)],
        stdout=subprocess.PIPE,
        text=True,
        env=child_env(),
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "locked"
        with Store(db, create=False) as s:
            with pytest.raises(StoreLockedError) as info:
                s.acquire_run_lock()
            assert f"being harvested by another process (pid {proc.pid})" in str(info.value)
            assert not s.holds_run_lock
            # SIGKILL gives the holder no chance to clean up: the OS drops its lock anyway.
            os.kill(proc.pid, signal.SIGKILL)
            assert proc.wait(timeout=10) == -signal.SIGKILL
            s.acquire_run_lock()
            assert s.holds_run_lock
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


# -- crashes -------------------------------------------------------------------------------------

CRASHER = textwrap.dedent(
    """
    import sys
    from tiktok_repost_async.store import Store
    users = [f"user{i}" for i in range(6)]
    with Store(sys.argv[1], fields=["id"], max_count=7) as store, store.run_lock():
        cursors = {name: cursor for name, _, cursor in store.add_users(users)}
        rounds = 0
        while True:
            for n, name in enumerate(users):
                # Page sizes differ per user, so a half-written page cannot look whole.
                size = 3 + n
                start = cursors[name]
                videos = [(start + k, b'{"id":%d}' % (start + k)) for k in range(size)]
                store.commit_page(
                    name, videos, next_cursor=start + size, has_more=True, requests=1
                )
                cursors[name] = start + size
            rounds += 1
            if rounds == 1:
                # Only now: every run is then sure to have committed something.
                print("ready", flush=True)
    """
)


def check_consistent(db: Path) -> int:
    """Assert every cursor matches exactly the videos stored; return the pages committed."""
    with raw(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    pages = 0
    with Store(db, create=False) as s:
        by_user: dict[str, list[str]] = {}
        for username, video_id, _ in s.iter_videos():
            by_user.setdefault(username, []).append(video_id)
        total_requests = 0
        for user in s.iter_users():
            size = 3 + int(user.username.removeprefix("user"))
            stored = by_user.get(user.username, [])
            assert stored == [str(i) for i in range(user.cursor)], user
            assert user.videos == user.cursor == user.pages * size, user
            assert user.requests == user.pages
            pages += user.pages
            total_requests += user.requests
    with raw(db) as conn:
        days = [row[0] for row in conn.execute("SELECT day FROM requests")]
    with Store(db, create=False) as s:
        assert sum(s.requests_on(day) for day in days) == total_requests
    return pages


def test_sigkill_at_a_random_instant_never_leaves_half_a_page(db: Path) -> None:
    rng = random.Random()
    seen = 0
    for _ in range(8):
        proc = subprocess.Popen(
            [sys.executable, "-c", CRASHER, str(db)],
            stdout=subprocess.PIPE,
            text=True,
            env=child_env(),
        )
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "ready"
            delay = rng.uniform(0.02, 0.25)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=delay)
            assert proc.poll() is None, "the writer died on its own"
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
        pages = check_consistent(db)
        assert pages > seen, f"no progress after a {delay:.2f} s run"
        seen = pages
    print(f"{seen} pages committed over eight killed runs")


def test_an_empty_file_is_named_as_empty_not_as_missing_settings(tmp_path: Path) -> None:
    empty = tmp_path / "empty.db"
    empty.write_bytes(b"")
    with pytest.raises(StoreError, match=r"'.*empty\.db' is empty: nothing has been harvested"):
        Store(empty, create=False)
