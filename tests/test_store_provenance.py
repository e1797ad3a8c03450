"""Page provenance, runs, and the migration of stores made before them (schema version 1)."""

from __future__ import annotations

import contextlib
import io
import json
import sqlite3
from pathlib import Path

import msgspec
import pytest

from tiktok_repost_async import RepostClient, Store, StoreError, UserState
from tiktok_repost_async.export import export_jsonl
from tiktok_repost_async.harvester import harvest
from tiktok_repost_async.simulator import TEST_CLIENT_KEY, TEST_CLIENT_SECRET, Simulator
from tiktok_repost_async.store import SCHEMA_VERSION, PageCommit, StoreMismatchError

FIELDS = ("id", "create_time", "username", "like_count")
T0 = 1_764_633_600.0  # 2025-12-02T00:00:00Z


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# The schema of version 1 exactly as tiktok_repost_async 0.1.0 (main before provenance) wrote it.
V1_SCHEMA = (
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID",
    """CREATE TABLE users (
        username   TEXT PRIMARY KEY,
        seq        INTEGER NOT NULL UNIQUE,
        state      TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'done',
                   'not_found', 'unavailable', 'failed')),
        cursor     INTEGER NOT NULL DEFAULT 0,
        pages      INTEGER NOT NULL DEFAULT 0,
        videos     INTEGER NOT NULL DEFAULT 0,
        requests   INTEGER NOT NULL DEFAULT 0,
        error      TEXT,
        updated_at TEXT NOT NULL
    )""",
    """CREATE TABLE videos (
        username TEXT NOT NULL REFERENCES users (username),
        video_id TEXT NOT NULL,
        data     BLOB NOT NULL,
        UNIQUE (username, video_id)
    )""",
    "CREATE TABLE requests (day TEXT PRIMARY KEY, count INTEGER NOT NULL) WITHOUT ROWID",
    "CREATE TABLE skipped (line_no INTEGER NOT NULL, raw TEXT NOT NULL, reason TEXT NOT NULL)",
    "CREATE TABLE skipped_counts (reason TEXT PRIMARY KEY, count INTEGER NOT NULL) WITHOUT ROWID",
)
ALL_FIELDS = (
    "id,create_time,username,region_code,video_description,music_id,like_count,comment_count,"
    "share_count,view_count,hashtag_names,hashtag_info_list,sticker_info_list,effect_info_list,"
    "video_mention_list,video_label,video_duration,is_stem_verified,favorites_count,video_tag"
)


def make_v1_store(path: Path, users: dict[str, tuple[str, int, list[dict[str, object]]]]) -> None:
    """Write a version 1 store with the old SQL: users in a state, at a cursor, with videos."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("BEGIN")
    for statement in V1_SCHEMA:
        conn.execute(statement)
    conn.executemany(
        "INSERT INTO meta VALUES (?, ?)",
        [
            ("schema_version", "1"),
            ("fields", ALL_FIELDS),
            ("max_count", "100"),
            ("created_at", "2025-11-30T10:00:00Z"),
        ],
    )
    for seq, (name, (state, cursor, videos)) in enumerate(users.items(), 1):
        conn.execute(
            "INSERT INTO users (username, seq, state, cursor, pages, videos, requests, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, '2025-11-30T10:00:00Z')",
            (name, seq, state, cursor, cursor // 100, len(videos), cursor // 100),
        )
        # Version 1 stored the model's re-encoding of each video.
        conn.executemany(
            "INSERT INTO videos (username, video_id, data) VALUES (?, ?, ?)",
            [(name, str(video["id"]), msgspec.json.encode(video)) for video in videos],
        )
    conn.execute("INSERT INTO requests VALUES ('2025-11-30', 3)")
    conn.execute("COMMIT")
    conn.close()


def test_a_version_1_store_is_migrated_once_in_place(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    make_v1_store(db, {"a": ("done", 0, [{"id": 1}, {"id": 2}]), "b": ("pending", 0, [])})
    with Store(db, create=False) as store:
        assert store.video_count() == 2
        assert store.user("a") is not None
        assert store.runs() == []
        assert store.requests_on("2025-11-30") == 3
        # Old videos have no page: their provenance is unknown, and says so.
        rows = list(store.iter_videos_with_provenance())
        assert [(user, vid, n, fetched, log) for user, vid, _, n, fetched, log in rows] == [
            ("a", "1", 1, None, None),
            ("a", "2", 1, None, None),
        ]
    with contextlib.closing(sqlite3.connect(db)) as conn, conn:
        meta = dict(conn.execute("SELECT key, value FROM meta"))
        assert meta["schema_version"] == str(SCHEMA_VERSION)
        assert "migrated_at" in meta
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        assert {"runs", "pages"} <= tables
    # A second open finds version 2 and changes nothing.
    with Store(db, create=False) as store:
        assert store.video_count() == 2
        # The rebuilt users table knows the state version 1 did not, and its keys still hold.
        store.finish_user("b", UserState.INCOMPLETE, error="empty_pages: cut at cursor 300")
        assert store.users_in(UserState.INCOMPLETE)[0].error == "empty_pages: cut at cursor 300"
        with pytest.raises(StoreError):
            store.commit_page("nobody", [(1, b"{}")], next_cursor=0, has_more=False, requests=1)
    with contextlib.closing(sqlite3.connect(db)) as conn, conn:
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []


def test_a_failed_migration_leaves_version_1_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tiktok_repost_async.store._schema as store_schema

    db = tmp_path / "old.db"
    make_v1_store(db, {"a": ("done", 0, [{"id": 1}])})
    broken = (*store_schema._MIGRATE_V1[:-1], "ALTER TABLE nowhere ADD COLUMN x")
    monkeypatch.setattr(store_schema, "_MIGRATE_V1", broken)
    with pytest.raises(Exception, match="nowhere"):
        Store(db, create=False)
    with contextlib.closing(sqlite3.connect(db)) as conn, conn:
        assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (
            "1",
        )
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        assert "runs" not in tables


def test_pages_keep_their_provenance_and_runs_their_counts(tmp_path: Path) -> None:
    clock = Clock()
    with Store(tmp_path / "s.db", fields=FIELDS, max_count=100, clock=clock) as store:
        store.add_users(["u", "v"])
        run = store.begin_run("9.9.9")
        assert store.run_id == run
        store.commit_pages(
            [
                PageCommit(
                    "u",
                    [(1, b'{"id":1}')],
                    100,
                    True,
                    2,
                    cursor=0,
                    log_id="L0",
                    fetched_at=T0 + 1.25,
                ),
                PageCommit("u", [(2, b'{"id":2}')], 200, False, 1, cursor=100, log_id="L1"),
            ]
        )
        store.finish_user("v", UserState.NOT_FOUND, requests=1)
        clock.now += 60
        store.end_run("finished")
        assert store.run_id is None
        (record,) = store.runs()
        assert (record.id, record.version, record.fields, record.max_count) == (
            run,
            "9.9.9",
            FIELDS,
            100,
        )
        assert (record.requests, record.pages, record.videos, record.outcome) == (
            4,
            2,
            2,
            "finished",
        )
        assert (record.started_at, record.ended_at) == (
            "2025-12-02T00:00:00Z",
            "2025-12-02T00:01:00Z",
        )
        assert list(store.iter_pages("u")) == [
            ("u", 0, 100, True, 1, "L0", "2025-12-02T00:00:01.250Z", run),
            ("u", 100, 200, False, 1, "L1", "2025-12-02T00:00:00.000Z", run),
        ]
        out = io.BytesIO()
        export_jsonl(store, out, provenance=True)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    stamp = {"reposted_by": "u", "round": 1}
    assert lines == [
        {**stamp, "fetched_at": "2025-12-02T00:00:01.250Z", "log_id": "L0", "id": 1},
        {**stamp, "fetched_at": "2025-12-02T00:00:00.000Z", "log_id": "L1", "id": 2},
    ]


def test_a_run_cannot_begin_twice_and_ending_none_is_harmless(tmp_path: Path) -> None:
    with Store(tmp_path / "s.db", fields=FIELDS, max_count=100) as store:
        store.end_run("finished")  # nothing runs: nothing to end
        store.begin_run("1")
        with pytest.raises(Exception, match="has not ended"):
            store.begin_run("1")
        with (
            Store(tmp_path / "t.db", fields=FIELDS, max_count=100) as other,
            pytest.raises(ValueError, match="version"),
        ):
            other.begin_run("")


def client_for(sim: Simulator) -> RepostClient:
    return RepostClient(
        TEST_CLIENT_KEY, TEST_CLIENT_SECRET, base_url=sim.base_url, requests_per_second=10_000.0
    )


async def test_a_version_1_store_resumes_after_the_upgrade(sim: Simulator, tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    done = sim.ground_truth("alice_n150")
    half = sim.ground_truth("bob_n250")
    # alice finished and bob got one page under version 1; carol was never started.
    make_v1_store(
        db,
        {
            "alice_n150": ("done", 200, done),
            "bob_n250": ("pending", 100, half[:100]),
            "carol_n30": ("pending", 0, []),
        },
    )
    async with client_for(sim) as client:
        outcomes = [
            o async for o in harvest(client, ["alice_n150", "bob_n250", "carol_n30"], store=db)
        ]
    assert {o.username: (o.state, o.pages) for o in outcomes} == {
        "bob_n250": (UserState.DONE, 2),
        "carol_n30": (UserState.DONE, 1),
    }
    # Exactly the pages not yet fetched: bob's cursors 100 and 200, carol's 0.
    assert sim.stats.requests == 3
    assert set(sim.stats.by_cursor) == {("bob_n250", 100), ("bob_n250", 200), ("carol_n30", 0)}
    with Store(db, create=False) as store:
        rows = list(store.iter_videos_with_provenance())
        (run,) = store.runs()
        assert (run.requests, run.pages, run.outcome) == (3, 3, "finished")
    by_user: dict[str, list[int]] = {}
    for user, video_id, data, _, fetched_at, log_id in rows:
        assert json.loads(data)["id"] == int(video_id)
        by_user.setdefault(user, []).append(int(video_id))
        # Videos of version 1 have no provenance; every new one has.
        old = user == "alice_n150" or (user == "bob_n250" and len(by_user[user]) <= 100)
        assert (fetched_at is None) == old
        assert (log_id is None) == old
    assert by_user == {
        "alice_n150": [v["id"] for v in done],
        "bob_n250": [v["id"] for v in half],
        "carol_n30": [v["id"] for v in sim.ground_truth("carol_n30")],
    }


def test_a_store_from_a_newer_version_is_refused_with_the_way_out(tmp_path: Path) -> None:
    db = tmp_path / "new.db"
    Store(db, fields=FIELDS, max_count=100).close()
    with contextlib.closing(sqlite3.connect(db)) as conn, conn:
        conn.execute("UPDATE meta SET value = '9' WHERE key = 'schema_version'")
    with pytest.raises(StoreMismatchError, match="newer version of tiktok_repost_async"):
        Store(db, create=False)


def test_a_run_that_never_ended_is_called_killed_by_the_next_one(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    store = Store(db, fields=FIELDS, max_count=100)
    store.add_users(["u"])
    store.begin_run("1")
    store.record_requests(2)
    # The process dies here: no end_run. The connection is simply dropped.
    store._close_connection()
    with Store(db, create=False) as again:
        (died,) = again.runs()
        assert (died.ended_at, died.outcome, died.requests) == (None, None, 2)
        again.begin_run("1")
        current, died = again.runs()
        assert (died.outcome, current.outcome) == ("killed", None)
        again.end_run("finished")
        assert [run.outcome for run in again.runs()] == ["finished", "killed"]


def test_parquet_provenance_columns_are_typed(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from tiktok_repost_async.export import export_parquet

    with Store(tmp_path / "s.db", fields=FIELDS, max_count=100) as store:
        store.add_users(["u"])
        store.commit_pages(
            [PageCommit("u", [(1, b'{"id":1}')], 0, False, 1, log_id="L9", fetched_at=T0 + 0.5)]
        )
        out = io.BytesIO()
        export_parquet(store, out, provenance=True)
    table = pq.read_table(io.BytesIO(out.getvalue()))
    assert table.schema.names[:4] == ["reposted_by", "round", "fetched_at", "log_id"]
    assert table.schema.field("fetched_at").type == pa.timestamp("ms", tz="UTC")
    (row,) = table.to_pylist()
    assert row["log_id"] == "L9"
    assert row["fetched_at"].isoformat() == "2025-12-02T00:00:00.500000+00:00"
