"""The store's SQL schema, its migrations from versions 1, 2 and 3, and the checks of its meta."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final

from ._records import StoreMismatchError, UserState, _utc_stamp

__all__ = ["SCHEMA_VERSION"]

SCHEMA_VERSION: Final = 4

_STATE_CHECK = ", ".join(f"'{s.value}'" for s in UserState)

# Every observation of a video: its JSON object's bytes exactly as the API sent them, once per
# user and round. video_id is TEXT: real ids exceed SQLite's signed 64-bit INTEGER (some even
# uint64). The API's order within a user is the insertion order, i.e. the rowid.
_VIDEOS_TABLE: Final = """CREATE TABLE {name} (
        username TEXT NOT NULL REFERENCES users (username),
        round    INTEGER NOT NULL DEFAULT 1,
        video_id TEXT NOT NULL,
        data     BLOB NOT NULL,
        page_id  INTEGER REFERENCES pages (id),
        UNIQUE (username, round, video_id)
    )"""

# Each user's state in the round it last joined (`round`); earlier rounds' states are kept in
# user_rounds when it joins a later one.
_USERS_TABLE: Final = f"""CREATE TABLE {{name}} (
    username   TEXT PRIMARY KEY,
    seq        INTEGER NOT NULL UNIQUE,  -- input order
    state      TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ({_STATE_CHECK})),
    cursor     INTEGER NOT NULL DEFAULT 0,  -- the next cursor to request
    pages      INTEGER NOT NULL DEFAULT 0,
    videos     INTEGER NOT NULL DEFAULT 0,
    requests   INTEGER NOT NULL DEFAULT 0,
    error      TEXT,
    updated_at TEXT NOT NULL,
    round      INTEGER NOT NULL DEFAULT 1,
    partial    INTEGER NOT NULL DEFAULT 0  -- done, but the walk stopped at a known video
    )"""

# Each user's state in the earlier rounds it took part in.
_USER_ROUNDS_TABLE: Final = f"""CREATE TABLE {{name}} (
        username TEXT NOT NULL REFERENCES users (username),
        round    INTEGER NOT NULL,
        state    TEXT NOT NULL CHECK (state IN ({_STATE_CHECK})),
        pages    INTEGER NOT NULL,
        videos   INTEGER NOT NULL,
        requests INTEGER NOT NULL,
        error    TEXT,
        partial  INTEGER NOT NULL,
        PRIMARY KEY (username, round)
    ) WITHOUT ROWID"""

# The refresh's tables (schema version 4). One row per refresh: the audit of what it checked,
# removed and spent, never what it removed. A refresh whose outcome is not 'finished' is resumed
# by the next one. max_page_id: the observations it checks are those of pages up to it (stored
# before it began; a video harvested later was not checked and is never deleted by it).
# users_until / users_done: with check_users, the users (by seq) it re-checks, and how far it got.
_REFRESH_TABLES: Final = (
    """CREATE TABLE refreshes (
        id            INTEGER PRIMARY KEY,
        started_at    TEXT NOT NULL,
        ended_at      TEXT,  -- NULL while running, and for ever if the process was killed
        outcome       TEXT,  -- finished, incomplete, stopped: <reason>, error: <type>
        version       TEXT NOT NULL,
        check_users   INTEGER NOT NULL DEFAULT 0,
        max_page_id   INTEGER NOT NULL DEFAULT 0,
        users_until   INTEGER NOT NULL DEFAULT 0,
        users_done    INTEGER NOT NULL DEFAULT 0,
        checked       INTEGER NOT NULL DEFAULT 0,  -- distinct video ids sent to be checked
        removed       INTEGER NOT NULL DEFAULT 0,  -- distinct video ids found gone and deleted
        observations_removed INTEGER NOT NULL DEFAULT 0,  -- rows of videos deleted
        users_checked INTEGER NOT NULL DEFAULT 0,
        users_removed INTEGER NOT NULL DEFAULT 0,
        requests      INTEGER NOT NULL DEFAULT 0
    )""",
    # One row per batch of at most 10,000 ids of a refresh: the task that checks it (persisted
    # before it is polled, so a killed refresh polls the same task again), and every task made
    # for it (a Failed one is made again), kept as the audit.
    """CREATE TABLE refresh_tasks (
        refresh_id INTEGER NOT NULL REFERENCES refreshes (id),
        batch      INTEGER NOT NULL,
        size       INTEGER NOT NULL,
        task_id    TEXT,  -- the batch's current task (digits: above int64); NULL: none yet
        task_ids   TEXT NOT NULL DEFAULT '',  -- every task made for the batch, comma-joined
        state      TEXT NOT NULL DEFAULT 'new'
                   CHECK (state IN ('new', 'created', 'failed', 'applied')),
        removed    INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (refresh_id, batch)
    ) WITHOUT ROWID""",
    # The ids of each batch of the refresh in progress, taken when it began: a resumed refresh
    # sends and reads the same batches. Deleted as each batch is applied: ids of removed videos
    # are not kept.
    """CREATE TABLE refresh_ids (
        refresh_id INTEGER NOT NULL,
        batch      INTEGER NOT NULL,
        video_id   TEXT NOT NULL,
        PRIMARY KEY (refresh_id, batch, video_id)
    ) WITHOUT ROWID""",
)

# The tables of schema version 4, one statement each: executescript() would COMMIT the
# surrounding transaction first.
_SCHEMA: Final = (
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID",
    _USERS_TABLE.format(name="users"),
    _USER_ROUNDS_TABLE.format(name="user_rounds"),
    # One row per round of a panel: round 1 is the first harvest of the store. input_open is 1
    # from the start of a run on the round until that run has read its whole input (a list, a
    # file, a pipe): a run killed or stopped before then leaves the round's membership unknown,
    # and the round unfinished, until a run reads its input to the end.
    """CREATE TABLE rounds (
        number        INTEGER PRIMARY KEY,
        started_at    TEXT NOT NULL,
        stop_at_known INTEGER NOT NULL DEFAULT 0,
        input_open    INTEGER NOT NULL DEFAULT 0
    )""",
    # One row per harvest run: how the data was asked for, by which version, and what it cost.
    """CREATE TABLE runs (
        id          INTEGER PRIMARY KEY,
        started_at  TEXT NOT NULL,
        ended_at    TEXT,  -- NULL while running, and for ever if the process was killed
        version     TEXT NOT NULL,  -- of tiktok_repost_async
        fields      TEXT NOT NULL,
        max_count   INTEGER NOT NULL,
        requests    INTEGER NOT NULL DEFAULT 0,
        pages       INTEGER NOT NULL DEFAULT 0,
        videos      INTEGER NOT NULL DEFAULT 0,
        outcome     TEXT,  -- finished, stopped: <reason>, interrupted, error: <type>, killed
        round       INTEGER NOT NULL DEFAULT 1
    )""",
    # One row per stored page: the provenance a citation needs. log_id is '' when the answer
    # carried none; the store reads it back as NULL (None).
    """CREATE TABLE pages (
        id          INTEGER PRIMARY KEY,
        run_id      INTEGER REFERENCES runs (id),
        username    TEXT NOT NULL,
        cursor      INTEGER NOT NULL,  -- the cursor the request sent
        next_cursor INTEGER NOT NULL,
        has_more    INTEGER NOT NULL,
        videos      INTEGER NOT NULL,  -- videos in the answer, stored before or not
        log_id      TEXT NOT NULL,
        fetched_at  TEXT NOT NULL,  -- UTC, ISO 8601 with milliseconds
        round       INTEGER NOT NULL DEFAULT 1
    )""",
    _VIDEOS_TABLE.format(name="videos"),
    # The per-UTC-day request ledger: every request sent, failures included.
    "CREATE TABLE requests (day TEXT PRIMARY KEY, count INTEGER NOT NULL) WITHOUT ROWID",
    "CREATE TABLE skipped (line_no INTEGER NOT NULL, raw TEXT NOT NULL, reason TEXT NOT NULL)",
    "CREATE TABLE skipped_counts (reason TEXT PRIMARY KEY, count INTEGER NOT NULL) WITHOUT ROWID",
    *_REFRESH_TABLES,
)

# Schema version 1 to the current one, in one transaction. The videos table is rebuilt (its
# unique key gains the round), keeping each row's rowid and so the API's order.
# The users table is rebuilt too: its CHECK of the states (v1 knew no 'incomplete') cannot be
# altered in place. It runs with foreign keys off (see Store._configure), so that dropping the
# old users table does not trip the videos that reference it by name.
_MIGRATE_V1: Final = (
    _USERS_TABLE.format(name="users_v2"),
    "INSERT INTO users_v2 (username, seq, state, cursor, pages, videos, requests, error,"
    " updated_at) SELECT username, seq, state, cursor, pages, videos, requests, error,"
    " updated_at FROM users",
    "DROP TABLE users",
    "ALTER TABLE users_v2 RENAME TO users",
    *(
        statement
        for statement in _SCHEMA
        if statement.startswith(
            (
                "CREATE TABLE user_rounds",
                "CREATE TABLE rounds",
                "CREATE TABLE runs",
                "CREATE TABLE pages",
            )
        )
    ),
    _VIDEOS_TABLE.format(name="videos_v2"),
    "INSERT INTO videos_v2 (rowid, username, round, video_id, data) "
    "SELECT rowid, username, 1, video_id, data FROM videos",
    "DROP TABLE videos",
    "ALTER TABLE videos_v2 RENAME TO videos",
    "INSERT INTO rounds (number, started_at) SELECT 1, value FROM meta WHERE key = 'created_at'",
)

# Schema version 2 to 3, in one transaction: rounds record whether a run's input was read to its
# end (a round of an older store counts as read, as version 2 assumed), and a user may be
# 'dropped' from a round. The CHECK of the states cannot be altered in place: users and
# user_rounds are rebuilt, with foreign keys off as for version 1.
_MIGRATE_V2: Final = (
    _USERS_TABLE.format(name="users_v3"),
    "INSERT INTO users_v3 (username, seq, state, cursor, pages, videos, requests, error,"
    " updated_at, round, partial) SELECT username, seq, state, cursor, pages, videos, requests,"
    " error, updated_at, round, partial FROM users",
    "DROP TABLE users",
    "ALTER TABLE users_v3 RENAME TO users",
    _USER_ROUNDS_TABLE.format(name="user_rounds_v3"),
    "INSERT INTO user_rounds_v3 (username, round, state, pages, videos, requests, error,"
    " partial) SELECT username, round, state, pages, videos, requests, error, partial"
    " FROM user_rounds",
    "DROP TABLE user_rounds",
    "ALTER TABLE user_rounds_v3 RENAME TO user_rounds",
    "ALTER TABLE rounds ADD COLUMN input_open INTEGER NOT NULL DEFAULT 0",
)


# Schema version 3 to 4: the refresh's tables, nothing else changes.
_MIGRATE_V3: Final = _REFRESH_TABLES


def _current_round(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT max(number) FROM rounds").fetchone()[0] or 1)


def _check_fields(fields: Sequence[str] | None) -> tuple[str, ...] | None:
    if fields is None:
        return None
    if isinstance(fields, str):
        raise TypeError("fields must be a sequence of field names, not one string")
    names = tuple(fields)
    if not names:
        raise ValueError("fields must name at least one field")
    for name in names:
        # The meta table keeps them comma-joined, so a comma would split one name in two.
        if not isinstance(name, str) or not name.strip() or "," in name:
            raise ValueError(f"invalid field name {name!r}")
    return names


def _configure(conn: sqlite3.Connection) -> None:
    # Videos are about a kilobyte each: 16 KiB pages hold a dozen, where 4 KiB pages split
    # and spill more often. It takes effect only on a new file (before WAL is switched on),
    # and measured about a third off each page's commit.
    conn.execute("PRAGMA page_size=16384")
    mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    if str(mode).lower() == "wal":
        # NORMAL in WAL mode syncs at checkpoints, not at each commit: a power loss may lose
        # the last few commits, but the database is never corrupted, and a killed process
        # loses nothing it committed (the WAL is in the OS's page cache). A lost commit
        # costs one page fetched again, never a duplicate (INSERT OR IGNORE).
        conn.execute("PRAGMA synchronous=NORMAL")
    else:
        # Some file systems (network mounts) cannot do WAL; in rollback-journal mode only
        # FULL is safe against power loss.
        conn.execute("PRAGMA synchronous=FULL")
    # Foreign keys are switched on once the schema is known to be current (in Store.__init__):
    # the migration from schema 1 rebuilds the users table that others reference, and the
    # pragma is a no-op inside a transaction.


def _create_schema(
    conn: sqlite3.Connection, fields: tuple[str, ...], max_count: int, clock: Callable[[], float]
) -> None:
    for statement in _SCHEMA:
        conn.execute(statement)
    conn.execute(
        "INSERT INTO rounds (number, started_at) VALUES (1, ?)",
        (_utc_stamp(clock()),),
    )
    conn.executemany(
        "INSERT INTO meta (key, value) VALUES (?, ?)",
        [
            ("schema_version", str(SCHEMA_VERSION)),
            ("fields", ",".join(fields)),
            ("max_count", str(max_count)),
            ("created_at", _utc_stamp(clock())),
        ],
    )


def _migrate(conn: sqlite3.Connection, version: str, clock: Callable[[], float]) -> None:
    """Bring a store of schema ``version`` (1, 2 or 3) to the current one, in the open
    transaction."""
    # Version 1's steps make the tables of version 3 (taken from _SCHEMA), as version 2's do.
    steps = {"1": _MIGRATE_V1, "2": _MIGRATE_V2, "3": ()}[version]
    for statement in (*steps, *_MIGRATE_V3):
        conn.execute(statement)
    conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))
    conn.execute(
        "INSERT OR REPLACE INTO meta (key, value) VALUES ('migrated_at', ?)",
        (_utc_stamp(clock()),),
    )


def _check_meta(
    path: Path, meta: dict[str, str], fields: tuple[str, ...] | None, max_count: int | None
) -> tuple[tuple[str, ...], int]:
    where = repr(str(path))
    version = meta.get("schema_version")
    if version != str(SCHEMA_VERSION):
        if version is not None and version.isdigit() and int(version) > SCHEMA_VERSION:
            raise StoreMismatchError(
                f"{where} was written by a newer version of tiktok_repost_async (store "
                f"schema {version}; this version reads schema {SCHEMA_VERSION} and older): "
                "upgrade tiktok-repost-async, or use another --db"
            )
        raise StoreMismatchError(
            f"{where} has store schema version {version}, which this version of "
            f"tiktok_repost_async cannot read (it reads schema 1 to {SCHEMA_VERSION}); "
            "use another --db"
        )
    stored_fields = tuple(f for f in meta.get("fields", "").split(",") if f)
    stored_max = int(meta.get("max_count", "0"))
    if fields is not None and set(fields) != set(stored_fields):
        # Order is irrelevant to what the API returns, so only the set must match.
        missing = sorted(set(stored_fields) - set(fields))
        extra = sorted(set(fields) - set(stored_fields))
        raise StoreMismatchError(
            f"{where} was harvested with fields {','.join(stored_fields)}, not "
            f"{','.join(fields)} (missing: {','.join(missing) or '-'}; "
            f"extra: {','.join(extra) or '-'}); videos of one store must have the same "
            "fields: pass the same --fields, or use another --db"
        )
    if max_count is not None and max_count != stored_max:
        raise StoreMismatchError(
            f"{where} was harvested with max_count {stored_max}, not {max_count}; a resumed "
            "harvest keeps its page size: pass the same max_count, or use another --db"
        )
    return stored_fields, stored_max
