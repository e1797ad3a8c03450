"""Schema version 3: a store of version 2 opens, is migrated once in place, and keeps working."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import pytest

from tiktok_repost_async.store import SCHEMA_VERSION, PageCommit, Store, UserState

# The tables of schema version 2 exactly as tiktok_repost_async wrote them before rounds recorded
# whether their input was read (taken with sqlite_master from a store it made).
V2_SCHEMA = (
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID",
    """CREATE TABLE users (
    username   TEXT PRIMARY KEY,
    seq        INTEGER NOT NULL UNIQUE,  -- input order
    state      TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'done', 'not_found',
               'unavailable', 'failed', 'incomplete')),
    cursor     INTEGER NOT NULL DEFAULT 0,  -- the next cursor to request
    pages      INTEGER NOT NULL DEFAULT 0,
    videos     INTEGER NOT NULL DEFAULT 0,
    requests   INTEGER NOT NULL DEFAULT 0,
    error      TEXT,
    updated_at TEXT NOT NULL,
    round      INTEGER NOT NULL DEFAULT 1,
    partial    INTEGER NOT NULL DEFAULT 0  -- done, but the walk stopped at a known video
    )""",
    """CREATE TABLE user_rounds (
        username TEXT NOT NULL REFERENCES users (username),
        round    INTEGER NOT NULL,
        state    TEXT NOT NULL CHECK (state IN ('pending', 'done', 'not_found', 'unavailable',
                 'failed', 'incomplete')),
        pages    INTEGER NOT NULL,
        videos   INTEGER NOT NULL,
        requests INTEGER NOT NULL,
        error    TEXT,
        partial  INTEGER NOT NULL,
        PRIMARY KEY (username, round)
    ) WITHOUT ROWID""",
    """CREATE TABLE rounds (
        number        INTEGER PRIMARY KEY,
        started_at    TEXT NOT NULL,
        stop_at_known INTEGER NOT NULL DEFAULT 0
    )""",
    """CREATE TABLE runs (
        id          INTEGER PRIMARY KEY,
        started_at  TEXT NOT NULL,
        ended_at    TEXT,
        version     TEXT NOT NULL,
        fields      TEXT NOT NULL,
        max_count   INTEGER NOT NULL,
        requests    INTEGER NOT NULL DEFAULT 0,
        pages       INTEGER NOT NULL DEFAULT 0,
        videos      INTEGER NOT NULL DEFAULT 0,
        outcome     TEXT,
        round       INTEGER NOT NULL DEFAULT 1
    )""",
    """CREATE TABLE pages (
        id          INTEGER PRIMARY KEY,
        run_id      INTEGER REFERENCES runs (id),
        username    TEXT NOT NULL,
        cursor      INTEGER NOT NULL,
        next_cursor INTEGER NOT NULL,
        has_more    INTEGER NOT NULL,
        videos      INTEGER NOT NULL,
        log_id      TEXT NOT NULL,
        fetched_at  TEXT NOT NULL,
        round       INTEGER NOT NULL DEFAULT 1
    )""",
    """CREATE TABLE videos (
        username TEXT NOT NULL REFERENCES users (username),
        round    INTEGER NOT NULL DEFAULT 1,
        video_id TEXT NOT NULL,
        data     BLOB NOT NULL,
        page_id  INTEGER REFERENCES pages (id),
        UNIQUE (username, round, video_id)
    )""",
    "CREATE TABLE requests (day TEXT PRIMARY KEY, count INTEGER NOT NULL) WITHOUT ROWID",
    "CREATE TABLE skipped (line_no INTEGER NOT NULL, raw TEXT NOT NULL, reason TEXT NOT NULL)",
    "CREATE TABLE skipped_counts (reason TEXT PRIMARY KEY, count INTEGER NOT NULL) WITHOUT ROWID",
)
STAMP = "2026-01-05T10:00:00Z"


def make_v2_store(path: Path) -> None:
    """Write a version 2 store: round 1 complete (a, b), round 2 with a done and b pending."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("BEGIN")
    for statement in V2_SCHEMA:
        conn.execute(statement)
    conn.executemany(
        "INSERT INTO meta VALUES (?, ?)",
        [("schema_version", "2"), ("fields", "id,like_count"), ("max_count", "100"),
         ("created_at", STAMP)],
    )  # fmt: skip
    conn.executemany(
        "INSERT INTO rounds (number, started_at) VALUES (?, ?)", [(1, STAMP), (2, STAMP)]
    )
    conn.executemany(
        "INSERT INTO users (username, seq, state, cursor, pages, videos, requests, updated_at,"
        " round) VALUES (?, ?, ?, ?, 1, 1, 1, ?, 2)",
        [("a", 1, "done", 100, STAMP), ("b", 2, "pending", 0, STAMP)],
    )
    conn.executemany(
        "INSERT INTO user_rounds VALUES (?, 1, 'done', 1, 1, 1, NULL, 0)", [("a",), ("b",)]
    )
    conn.executemany(
        "INSERT INTO videos (username, round, video_id, data) VALUES (?, ?, ?, ?)",
        [("a", 1, "1", b'{"id":1}'), ("b", 1, "2", b'{"id":2}'), ("a", 2, "1", b'{"id":1}')],
    )
    conn.execute("COMMIT")
    conn.close()


def test_a_version_2_store_is_migrated_in_place_and_its_rounds_keep_their_standing(
    tmp_path: Path,
) -> None:
    db = tmp_path / "v2.db"
    make_v2_store(db)
    with Store(db, create=False) as store:
        first, second = store.rounds()
        # A version 2 round counts as read to the end, as version 2 assumed.
        assert (first.complete, first.input_read) == (True, True)
        assert (second.complete, second.in_progress, second.input_read) == (False, True, True)
        assert store.round_videos("a", 1) == [("1", b'{"id":1}')]
        assert list(store.iter_round_users(1)) == [
            ("a", UserState.DONE, False),
            ("b", UserState.DONE, False),
        ]
        # It keeps working: round 2 is resumed, and a --new-round run whose list no longer
        # names b drops b (a state the rebuilt tables accept); the next round starts.
        assert store.start_round() == (2, False)
        store.acquire_run_lock()
        store.begin_round_input()
        assert not store.round_record(2).input_read
        store.claim_users(["a"])
        assert store.end_round_input(drop_unnamed=True) == 1
        store.release_run_lock()
        second = store.round_record(2)
        assert (second.complete, second.users[UserState.DROPPED]) == (True, 1)
        assert store.start_round() == (3, True)
    with contextlib.closing(sqlite3.connect(db)) as conn, conn:
        meta = dict(conn.execute("SELECT key, value FROM meta"))
        assert meta["schema_version"] == str(SCHEMA_VERSION) == "4"  # through 3 to 4
        assert "migrated_at" in meta
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_a_failed_migration_leaves_version_2_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tiktok_repost_async.store._schema as store_schema

    db = tmp_path / "v2.db"
    make_v2_store(db)
    broken = (*store_schema._MIGRATE_V2, "ALTER TABLE nowhere ADD COLUMN x")
    monkeypatch.setattr(store_schema, "_MIGRATE_V2", broken)
    with pytest.raises(Exception, match="nowhere"):
        Store(db, create=False)
    with contextlib.closing(sqlite3.connect(db)) as conn, conn:
        assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (
            "2",
        )
        columns = [row[1] for row in conn.execute("PRAGMA table_info(rounds)")]
        assert columns == ["number", "started_at", "stop_at_known"]


def test_a_round_with_its_input_unread_is_resumed_and_not_complete(tmp_path: Path) -> None:
    with Store(tmp_path / "s.db", fields=("id",), max_count=100) as store:
        store.begin_round_input()
        store.add_users(["a"])
        store.commit_pages([PageCommit("a", [(1, b'{"id":1}')], 100, False, 1)])
        # Killed before the end of its input: round 1 is not complete, and is resumed.
        assert not store.round_record().complete
        assert store.start_round() == (1, False)
        store.end_round_input()
        assert store.round_record().complete
        assert store.start_round() == (2, True)
        # Killed before its first name: round 2 has nobody, and is resumed, not skipped.
        store.begin_round_input()
        assert store.start_round() == (2, False)
        store.end_round_input()
        assert store.start_round() == (2, False)


def test_a_dropped_member_named_again_is_walked_on_from_its_cursor(tmp_path: Path) -> None:
    with Store(tmp_path / "s.db", fields=("id",), max_count=100) as store:
        store.add_users(["a", "b"])
        store.commit_pages([PageCommit("a", [(1, b'{"id":1}')], 100, False, 1)])
        store.commit_pages([PageCommit("b", [(1, b'{"id":1}')], 100, False, 1)])
        assert store.start_round() == (2, True)
        store.begin_round_input()
        store.claim_users(["a", "b"])
        store.commit_pages([PageCommit("b", [(2, b'{"id":2}')], 100, True, 1)])
        store.finish_user("a", UserState.NOT_FOUND)
        # Killed; the list then omits both: a keeps its final state, b (unfinished) is dropped.
        store.acquire_run_lock()  # a new run claims afresh
        store.begin_round_input()
        assert store.end_round_input(drop_unnamed=True) == 1
        store.release_run_lock()
        assert list(store.iter_round_users(2)) == [
            ("a", UserState.NOT_FOUND, False),
            ("b", UserState.DROPPED, False),
        ]
        # A run without --new-round drops nobody.
        assert store.end_round_input() == 0
        # Named again: back in the round, pending at its cursor, its page of round 2 kept.
        assert store.add_users(["b"]) == [("b", UserState.PENDING, 100)]
        assert store.round_videos("b", 2) == [("2", b'{"id":2}')]
        assert not store.round_record(2).complete
