"""The harvest's database: one SQLite file in WAL mode, written by one thread of one process.

A store remembers, across crashes and days, which users were fetched, how far each user's cursor
walk got, every video fetched (the bytes of its JSON object exactly as the API sent them), where and
when each page was fetched (its provenance: the UTC time, the request's cursor, the answer's
``log_id`` and the run), every run (start, end, package version, fields, max_count, requests) and
how many research requests were spent per UTC day. A page's videos and the user's next cursor
commit in one transaction, so a process killed at any instant leaves either the whole page or
none of it, and a page fetched again after a restart is never stored twice.

The store is synchronous. The harvest calls it from one dedicated writer thread so that the event
loop never waits on the disk; the connection is therefore opened with ``check_same_thread=False``,
and a `Store` must be used from one thread at a time (it has no lock of its own).

Two harvests on one store would walk the same users twice and double the ledger, so a harvest
takes `Store.run_lock` first: an OS lock (``flock``) on the sidecar file ``<db>.lock``, which the
kernel drops when its process dies, even by SIGKILL, so that no stale lock survives a crash.

Schema version 1 (stores made before page provenance) is migrated to version 2 in place, once,
in one transaction, the first time a newer version opens it: its videos keep their bytes and get
no provenance (their pages were not recorded). A store of a newer schema is refused.

Bad input lines (`Store.add_skipped`) accumulate across runs; a run that re-reads the same input
calls `Store.clear_skipped` first so that its lines are not counted twice.

The store has no column, table or meta key for credentials: client keys, secrets and tokens are
never written to it, so a store file can be shared with collaborators as it is.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import os
import sqlite3
import sys
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self

import msgspec

from .errors import StoreError

if sys.platform != "win32":
    import fcntl

__all__ = [
    "FINAL_STATES",
    "SCHEMA_VERSION",
    "SKIPPED_ROWS_KEPT",
    "PageCommit",
    "RoundRecord",
    "RunRecord",
    "Store",
    "StoreError",
    "StoreLockedError",
    "StoreMismatchError",
    "UserRecord",
    "UserState",
]

SCHEMA_VERSION: Final = 2

# Bad input lines are counted exactly per reason, but only the first ones are kept verbatim: a
# garbage input of ten million lines must not grow the store by ten million rows.
SKIPPED_ROWS_KEPT: Final = 10_000
# A kept bad line is cut to this many characters; one megabyte of garbage on one line is not
# worth keeping whole to tell the user what was wrong with it.
_SKIPPED_RAW_CHARS: Final = 1_000
# Flush buffered skipped lines on their own once this many wait, so a long run of bad lines
# with no user committed in between still reaches the disk.
_SKIPPED_FLUSH_AT: Final = 500
# SQLite's bound on host parameters is 32,766 today but was 999 before 3.32: stay below both.
_IN_CHUNK: Final = 500
# A reader (status, export) may hold the database for a moment: wait for it instead of failing.
_BUSY_TIMEOUT_S: Final = 30.0


class UserState(enum.StrEnum):
    """Name where a user's harvest stands."""

    PENDING = "pending"
    DONE = "done"
    NOT_FOUND = "not_found"
    UNAVAILABLE = "unavailable"
    FAILED = "failed"
    #: A guard (a cursor the API sent back again, a run of empty pages with ``has_more`` true)
    #: cut the walk short; ``error`` says which. Final: a later run walks it again only when
    #: asked to (``retry_incomplete``), from its saved cursor.
    INCOMPLETE = "incomplete"


# FAILED is final for one run only: the next run retries it unless told not to (`reset_failed`).
FINAL_STATES: Final[frozenset[UserState]] = frozenset(
    {UserState.DONE, UserState.NOT_FOUND, UserState.UNAVAILABLE, UserState.INCOMPLETE}
)


class StoreMismatchError(StoreError, ValueError):
    """Refuse a store created with other settings or by another schema version."""


class StoreLockedError(StoreError):
    """Refuse a store that another harvest is running on."""


@dataclasses.dataclass(frozen=True, slots=True)
class UserRecord:
    """Hold one user's row: state, next cursor and what the walk has cost and brought so far."""

    username: str
    state: UserState
    cursor: int
    pages: int
    videos: int
    requests: int
    error: str | None


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

# The tables of schema version 2, one statement each: executescript() would COMMIT the
# surrounding transaction first.
_SCHEMA: Final = (
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID",
    _USERS_TABLE.format(name="users"),
    f"""CREATE TABLE user_rounds (
        username TEXT NOT NULL REFERENCES users (username),
        round    INTEGER NOT NULL,
        state    TEXT NOT NULL CHECK (state IN ({_STATE_CHECK})),
        pages    INTEGER NOT NULL,
        videos   INTEGER NOT NULL,
        requests INTEGER NOT NULL,
        error    TEXT,
        partial  INTEGER NOT NULL,
        PRIMARY KEY (username, round)
    ) WITHOUT ROWID""",
    # One row per round of a panel: round 1 is the first harvest of the store.
    """CREATE TABLE rounds (
        number        INTEGER PRIMARY KEY,
        started_at    TEXT NOT NULL,
        stop_at_known INTEGER NOT NULL DEFAULT 0
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
    # One row per stored page: the provenance a citation needs.
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
)

# Schema version 1 to 2, in one transaction. The videos table is rebuilt (its unique key gains
# the round), keeping each row's rowid and so the API's order.
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

_ROWS_ENCODER = msgspec.json.Encoder()

_USER_COLUMNS = "username, state, cursor, pages, videos, requests, error"

# CROSS JOIN pins users as the outer loop: SQLite then walks users by seq and sorts only each
# user's own videos by rowid, instead of sorting the whole table before the first row comes out.
# {columns} and {join} add provenance; {where} picks the round(s).
_VIDEOS_IN_ORDER = (
    "SELECT v.username, v.video_id, v.data{columns} FROM users AS u "
    "CROSS JOIN videos AS v ON v.username = u.username{join}{where} ORDER BY u.seq, v.rowid"
)
_PROVENANCE_COLUMNS = ", v.round, p.fetched_at, p.log_id"
_PROVENANCE_JOIN = " LEFT JOIN pages AS p ON p.id = v.page_id"
# Each user's latest round in which its walk reached a final state and saw the whole list (not
# partial: a stop-at-known walk saw only the head; not incomplete: a guard cut it short), else its
# latest round: what an export of a panel shows by default.
_LATEST_OBSERVATION = (
    " WHERE v.round = (SELECT coalesce(max(CASE WHEN o.state IN ('done', 'not_found',"
    " 'unavailable') AND NOT o.partial THEN o.round END), max(o.round)) FROM (SELECT round,"
    " state, partial FROM user_rounds WHERE username = u.username"
    " UNION ALL SELECT u.round, u.state, u.partial) AS o)"
)


def _utc_day(now: float) -> str:
    # Same floor arithmetic as quota.utc_day, kept here so the store imports nothing of ours.
    return (datetime.date(1970, 1, 1) + datetime.timedelta(days=int(now // 86400.0))).isoformat()


def _utc_stamp(now: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))


def _utc_stamp_ms(now: float) -> str:
    # Milliseconds: pages of one user are fetched well within a second of each other.
    millis = int(now * 1000) % 1000
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{millis:03d}Z"


def _check_day(day: str) -> str:
    try:
        parsed = datetime.date.fromisoformat(day)
    except (TypeError, ValueError):
        parsed = None
    if parsed is None or parsed.isoformat() != day:
        raise ValueError(f"day must be a UTC date written 'YYYY-MM-DD', not {day!r}")
    return day


def _check_count(name: str, value: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{name} must be a non-negative int, not {value!r}")
    return value


def _current_round(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT max(number) FROM rounds").fetchone()[0] or 1)


def _run_record(row: tuple[Any, ...]) -> RunRecord:
    run_id, started, ended, version, fields, max_count, requests, pages, videos, outcome = row
    return RunRecord(
        int(run_id),
        str(started),
        ended,
        str(version),
        tuple(name for name in str(fields).split(",") if name),
        int(max_count),
        int(requests),
        int(pages),
        int(videos),
        outcome,
    )


def _row_to_record(row: tuple[str, str, int, int, int, int, str | None]) -> UserRecord:
    username, state, cursor, pages, videos, requests, error = row
    return UserRecord(username, UserState(state), cursor, pages, videos, requests, error)


@dataclasses.dataclass(frozen=True, slots=True)
class PageCommit:
    """Describe one fetched page to store: its videos as (id, JSON bytes), and where to go next.

    ``cursor`` (the cursor the request sent), ``log_id`` (the answer's) and ``fetched_at`` (epoch
    seconds; the store's clock when 0) are the page's provenance, stored with it.
    """

    username: str
    videos: Sequence[tuple[int, bytes]]
    next_cursor: int
    has_more: bool
    requests: int
    cursor: int = 0
    log_id: str = ""
    fetched_at: float = 0.0


@dataclasses.dataclass(frozen=True, slots=True)
class RoundRecord:
    """Hold one round of a panel: when it started, how, and where its users stand."""

    number: int
    started_at: str
    #: True when the round's walks stop at the first page holding a video of the user's
    #: previous round (their ``partial`` users saw only the new head of their list).
    stop_at_known: bool
    #: Users per state in this round (every state present, 0 when none).
    users: dict[UserState, int]
    #: Users whose ``done`` walk stopped at a known video.
    partial: int
    #: Observations of videos stored in this round.
    videos: int
    #: Research requests of the runs of this round.
    requests: int

    @property
    def complete(self) -> bool:
        """Tell whether every user of the round has a final state (none pending or failed)."""
        waiting = self.users[UserState.PENDING] + self.users[UserState.FAILED]
        return sum(self.users.values()) > 0 and waiting == 0

    @property
    def in_progress(self) -> bool:
        """Tell whether some user of the round is still to be walked (pending)."""
        return self.users[UserState.PENDING] > 0 or sum(self.users.values()) == 0


@dataclasses.dataclass(frozen=True, slots=True)
class RunRecord:
    """Hold one harvest run: when, by which version, how the data was asked for, what it cost."""

    id: int
    started_at: str
    ended_at: str | None
    version: str
    fields: tuple[str, ...]
    max_count: int
    requests: int
    pages: int
    videos: int
    #: How the run ended: ``finished``, ``stopped: <reason>``, ``interrupted`` (the caller stopped
    #: early, Ctrl-C), ``error: <type>``, or ``killed`` (found unended by a later run); None while
    #: running, or until a later run finds that its process died.
    outcome: str | None


class Store:
    """Open (or create) a harvest store: users, their cursors, videos and the request ledger."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        fields: Sequence[str] | None = None,
        max_count: int | None = None,
        create: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._path = Path(path)
        self._clock = clock
        self._skipped_buffer: list[tuple[int, str, str]] = []
        self._lock_fd: int | None = None
        self._run_id: int | None = None
        self._conn: sqlite3.Connection | None = None
        wanted_fields = self._check_fields(fields)
        if max_count is not None:
            _check_count("max_count", max_count)
            if max_count == 0:
                raise ValueError("max_count must be a positive int, not 0")

        exists = self._path.exists()
        if not exists and not create:
            raise StoreError(f"no store at {str(self._path)!r}: the file does not exist")
        if not exists and (wanted_fields is None or max_count is None):
            raise StoreError(
                f"no store at {str(self._path)!r}: pass fields and max_count to create one"
            )
        # A URI with mode=rw can never create the file behind our back (a typo'd path given to
        # `status` must fail, not leave an empty database there).
        uri = self._path.resolve().as_uri() + ("?mode=rwc" if create else "?mode=rw")
        try:
            self._conn = sqlite3.connect(
                uri,
                uri=True,
                timeout=_BUSY_TIMEOUT_S,
                # Transactions are explicit (BEGIN IMMEDIATE ... COMMIT), never implicit.
                isolation_level=None,
                check_same_thread=False,
            )
            self._configure()
            self._fields, self._max_count = self._load_or_init_meta(wanted_fields, max_count)
            self._conn.execute("PRAGMA foreign_keys=ON")
        except sqlite3.DatabaseError as exc:
            self._close_connection()
            if "not a database" in str(exc):
                raise StoreError(
                    f"{str(self._path)!r} is not a harvest store: it is not an SQLite database "
                    "(another kind of file?); use another --db"
                ) from exc
            raise StoreError(f"cannot open the store {str(self._path)!r}: {exc}") from exc
        except BaseException:
            self._close_connection()
            raise

    # -- opening -----------------------------------------------------------------------------

    @staticmethod
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

    def _configure(self) -> None:
        conn = self._db
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
        # Foreign keys are switched on once the schema is known to be current (in __init__):
        # the migration from schema 1 rebuilds the users table that others reference, and the
        # pragma is a no-op inside a transaction.

    def _load_or_init_meta(
        self, fields: tuple[str, ...] | None, max_count: int | None
    ) -> tuple[tuple[str, ...], int]:
        conn = self._db
        with self._transaction():
            tables = {
                row[0]
                for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            }
            if not tables:
                if fields is None or max_count is None:
                    # Said for people: `status` or `export` pointed at a file nothing was
                    # harvested into (a Python caller creating one passes fields and max_count).
                    raise StoreError(
                        f"{str(self._path)!r} is empty: nothing has been harvested into it yet"
                        " (a harvest creates the store there; from Python, pass fields and"
                        " max_count); check the --db path"
                    )
                for statement in _SCHEMA:
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO rounds (number, started_at) VALUES (1, ?)",
                    (_utc_stamp(self._clock()),),
                )
                conn.executemany(
                    "INSERT INTO meta (key, value) VALUES (?, ?)",
                    [
                        ("schema_version", str(SCHEMA_VERSION)),
                        ("fields", ",".join(fields)),
                        ("max_count", str(max_count)),
                        ("created_at", _utc_stamp(self._clock())),
                    ],
                )
                return fields, max_count
            if "meta" not in tables:
                raise StoreError(
                    f"{str(self._path)!r} is an SQLite database but not a harvest store; "
                    "use another --db"
                )
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
            if meta.get("schema_version") == "1":
                # Inside the transaction that read the version: two processes opening the same
                # old store at once migrate it once, and a crash mid-way leaves version 1 whole.
                for statement in _MIGRATE_V1:
                    conn.execute(statement)
                conn.execute(
                    "UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),)
                )
                conn.execute(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES ('migrated_at', ?)",
                    (_utc_stamp(self._clock()),),
                )
                meta["schema_version"] = str(SCHEMA_VERSION)
        return self._check_meta(meta, fields, max_count)

    def _check_meta(
        self, meta: dict[str, str], fields: tuple[str, ...] | None, max_count: int | None
    ) -> tuple[tuple[str, ...], int]:
        where = repr(str(self._path))
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

    # -- life cycle --------------------------------------------------------------------------

    @property
    def path(self) -> Path:
        """Return the database file's path."""
        return self._path

    @property
    def fields(self) -> tuple[str, ...]:
        """Return the video fields this store was created for, in their original order."""
        return self._fields

    @property
    def max_count(self) -> int:
        """Return the page size this store was created for."""
        return self._max_count

    @property
    def closed(self) -> bool:
        """Tell whether `close` was called."""
        return self._conn is None

    def close(self) -> None:
        """Flush pending skipped lines, release the run lock and close the database."""
        if self._conn is None:
            return
        try:
            self._flush_skipped()
        finally:
            self.release_run_lock()
            self._close_connection()

    def _close_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise self._closed_error()
        return self._conn

    def _require_open(self) -> None:
        if self._conn is None:
            raise self._closed_error()

    def _closed_error(self) -> StoreError:
        return StoreError(f"the store {str(self._path)!r} is closed")

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        conn = self._db
        # IMMEDIATE takes the write lock at once: a deferred transaction that reads first and
        # writes later can fail with SQLITE_BUSY half-way instead of waiting for the lock.
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Bad input lines ride along with whatever is written next: no transaction of
            # their own, and they leave the buffer only once committed.
            written = self._write_skipped(conn)
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            # SQLite rolls back by itself after some errors (disk full, I/O error); a second
            # ROLLBACK would then fail and hide the error that matters.
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        del self._skipped_buffer[:written]

    # -- run lock ----------------------------------------------------------------------------

    @property
    def lock_path(self) -> Path:
        """Return the sidecar file whose OS lock marks a running harvest."""
        return self._path.with_name(self._path.name + ".lock")

    def acquire_run_lock(self) -> None:
        """Take the exclusive harvest lock of this store, or raise StoreLockedError."""
        self._require_open()
        if self._lock_fd is not None:
            raise StoreError(f"this Store already holds the run lock of {str(self._path)!r}")
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if sys.platform != "win32":
                # flock belongs to the open file and dies with the process, so a SIGKILLed
                # harvest can never leave a stale lock behind (unlike a pid file alone).
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
                    raise StoreLockedError(
                        f"{str(self._path)!r} is being harvested by another process "
                        f"(pid {holder}); wait for it to finish, stop it, or use another --db"
                    ) from None
            # On Windows the lock is advisory only: the pid is written, exclusivity is not
            # enforced.
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        except BaseException:
            os.close(fd)
            raise
        self._lock_fd = fd
        # Each run claims its names afresh: the names a previous run on this Store claimed are
        # not duplicates of this one's (a second round, a run after a stop).
        self._db.execute("DROP TABLE IF EXISTS temp.claimed")

    def release_run_lock(self) -> None:
        """Give up the harvest lock if this Store holds it."""
        fd, self._lock_fd = self._lock_fd, None
        if fd is None:
            return
        # The file stays: unlinking a flock'ed file lets a third process lock a new inode while
        # a second still waits on the old one.
        try:
            os.ftruncate(fd, 0)
        finally:
            os.close(fd)  # closing the descriptor drops the flock

    @property
    def holds_run_lock(self) -> bool:
        """Tell whether this Store holds the harvest lock."""
        return self._lock_fd is not None

    @contextmanager
    def run_lock(self) -> Iterator[Self]:
        """Hold the exclusive harvest lock for the duration of a with-block."""
        self.acquire_run_lock()
        try:
            yield self
        finally:
            self.release_run_lock()

    # -- runs --------------------------------------------------------------------------------

    def begin_run(self, version: str) -> int:
        """Record the start of a harvest run; later pages and requests are booked to it."""
        if not isinstance(version, str) or not version:
            raise ValueError(f"version must be a non-empty str, not {version!r}")
        if self._run_id is not None:
            raise StoreError(f"run {self._run_id} of {str(self._path)!r} has not ended")
        with self._transaction() as conn:
            # A run starts under the run lock, so an earlier run that never ended cannot be
            # running: its process died (SIGKILL, power loss) before it could say how it ended.
            conn.execute(
                "UPDATE runs SET outcome = 'killed' WHERE ended_at IS NULL AND outcome IS NULL"
            )
            run_id = conn.execute(
                "INSERT INTO runs (started_at, version, fields, max_count, round)"
                " VALUES (?, ?, ?, ?, ?)",
                (
                    _utc_stamp(self._clock()),
                    version,
                    ",".join(self._fields),
                    self._max_count,
                    _current_round(conn),
                ),
            ).lastrowid
        assert run_id is not None
        self._run_id = run_id
        return run_id

    def end_run(self, outcome: str) -> None:
        """Record how the current run ended (``finished``, ``stopped: quota`` ...), if one runs."""
        run_id, self._run_id = self._run_id, None
        if run_id is None:
            return
        with self._transaction() as conn:
            conn.execute(
                "UPDATE runs SET ended_at = ?, outcome = ? WHERE id = ?",
                (_utc_stamp(self._clock()), outcome, run_id),
            )

    @property
    def run_id(self) -> int | None:
        """Return the id of the run in progress through this Store, or None."""
        return self._run_id

    def runs(self, limit: int | None = None) -> list[RunRecord]:
        """Return the runs, newest first, at most ``limit`` of them."""
        if limit is not None:
            _check_count("limit", limit)
        rows = self._db.execute(
            "SELECT id, started_at, ended_at, version, fields, max_count, requests, pages, videos,"
            " outcome FROM runs ORDER BY id DESC LIMIT ?",
            (-1 if limit is None else limit,),
        )
        return [_run_record(row) for row in rows]

    def run_count(self) -> int:
        """Return how many runs this store has recorded."""
        return int(self._db.execute("SELECT count(*) FROM runs").fetchone()[0])

    # -- rounds ------------------------------------------------------------------------------

    @property
    def current_round(self) -> int:
        """Return the number of the latest round: the one a harvest walks."""
        return _current_round(self._db)

    def start_round(self, *, stop_at_known: bool = False) -> tuple[int, bool]:
        """Start the next round of a panel, unless the current one is still being walked.

        Return ``(round, started)``. A round whose users are not all walked yet (some pending:
        a harvest was interrupted) is resumed instead, so that running the same command again
        after a kill never starts a round twice; so is a store that has no user yet. The names
        of a round join it as a harvest claims them (`add_users`).
        """
        with self._transaction() as conn:
            current = _current_round(conn)
            waiting = conn.execute(
                "SELECT 1 FROM users WHERE round = ? AND state = 'pending' LIMIT 1", (current,)
            ).fetchone()
            walked = conn.execute("SELECT 1 FROM users LIMIT 1").fetchone()
            if waiting is not None or walked is None:
                return current, False
            conn.execute(
                "INSERT INTO rounds (number, started_at, stop_at_known) VALUES (?, ?, ?)",
                (current + 1, _utc_stamp(self._clock()), int(stop_at_known)),
            )
        return current + 1, True

    def round_stops_at_known(self, number: int | None = None) -> bool:
        """Tell whether a round (the current one by default) stops walks at known videos."""
        row = self._db.execute(
            "SELECT stop_at_known FROM rounds WHERE number = ?",
            (self.current_round if number is None else number,),
        ).fetchone()
        return bool(row and row[0])

    def rounds(self) -> list[RoundRecord]:
        """Return every round, oldest first, with its users per state, videos and requests."""
        conn = self._db
        states: dict[int, dict[UserState, int]] = {}
        partial: dict[int, int] = {}
        for number, state, count, parts in conn.execute(
            "SELECT round, state, count(*), sum(partial) FROM ("
            " SELECT round, state, partial FROM user_rounds"
            " UNION ALL SELECT round, state, partial FROM users) GROUP BY round, state"
        ):
            states.setdefault(number, dict.fromkeys(UserState, 0))[UserState(state)] = count
            partial[number] = partial.get(number, 0) + int(parts or 0)
        videos = dict(conn.execute("SELECT round, count(*) FROM videos GROUP BY round"))
        requests = dict(conn.execute("SELECT round, sum(requests) FROM runs GROUP BY round"))
        return [
            RoundRecord(
                int(number),
                str(started),
                bool(stop),
                states.get(number, dict.fromkeys(UserState, 0)),
                partial.get(number, 0),
                int(videos.get(number, 0)),
                int(requests.get(number) or 0),
            )
            for number, started, stop in conn.execute(
                "SELECT number, started_at, stop_at_known FROM rounds ORDER BY number"
            )
        ]

    def iter_round_users(self, number: int) -> Iterator[tuple[str, UserState, bool]]:
        """Stream (username, state, partial) of every user of a round, in input order."""
        sql = (
            "SELECT o.username, o.state, o.partial FROM users AS u CROSS JOIN ("
            " SELECT username, state, partial FROM user_rounds WHERE round = ?1"
            " UNION ALL SELECT username, state, partial FROM users WHERE round = ?1"
            ") AS o ON o.username = u.username ORDER BY u.seq"
        )
        for username, state, parts in self._stream(sql, (number,), 1000):
            yield username, UserState(state), bool(parts)

    def round_videos(self, username: str, number: int) -> list[tuple[str, bytes]]:
        """Return one user's videos as observed in a round: (video_id, data), in API order."""
        rows = self._db.execute(
            "SELECT video_id, data FROM videos WHERE username = ? AND round = ? ORDER BY rowid",
            (username, number),
        )
        return [(str(video_id), bytes(data)) for video_id, data in rows]

    def known_video_ids(self, username: str, before: int | None = None) -> set[str]:
        """Return the ids of the videos seen of a user in its latest round before ``before``.

        ``before`` defaults to the current round; an empty set when there is no earlier round.
        """
        limit = self.current_round if before is None else before
        row = self._db.execute(
            "SELECT max(round) FROM videos WHERE username = ? AND round < ?", (username, limit)
        ).fetchone()
        if row is None or row[0] is None:
            return set()
        return {
            str(video_id)
            for (video_id,) in self._db.execute(
                "SELECT video_id FROM videos WHERE username = ? AND round = ?", (username, row[0])
            )
        }

    # -- writing -----------------------------------------------------------------------------

    def add_users(self, usernames: Iterable[str]) -> list[tuple[str, UserState, int]]:
        """Add new usernames as pending and return each given name's (username, state, cursor)."""
        names = list(usernames)
        for name in names:
            if not isinstance(name, str) or not name:
                raise ValueError(f"a username must be a non-empty str, not {name!r}")
        stamp = _utc_stamp(self._clock())
        found: dict[str, tuple[str, UserState, int]] = {}
        with self._transaction() as conn:
            current = _current_round(conn)
            # seq is taken inside the statement so that names already present leave no gaps.
            conn.executemany(
                "INSERT OR IGNORE INTO users (username, seq, updated_at, round) "
                "VALUES (?, (SELECT coalesce(max(seq), 0) + 1 FROM users), ?, ?)",
                [(name, stamp, current) for name in names],
            )
            unique = list(dict.fromkeys(names))
            for start in range(0, len(unique), _IN_CHUNK):
                chunk = unique[start : start + _IN_CHUNK]
                marks = ",".join("?" * len(chunk))
                if current > 1:
                    # A name last walked in an earlier round joins this one: its state there is
                    # kept in user_rounds, and its walk starts again from cursor 0.
                    conn.execute(
                        "INSERT OR REPLACE INTO user_rounds (username, round, state, pages, videos,"
                        " requests, error, partial) SELECT username, round, state, pages, videos,"
                        f" requests, error, partial FROM users WHERE round < ? AND username IN"
                        f" ({marks})",
                        (current, *chunk),
                    )
                    conn.execute(
                        "UPDATE users SET round = ?, state = 'pending', cursor = 0, pages = 0,"
                        " videos = 0, requests = 0, error = NULL, partial = 0, updated_at = ?"
                        f" WHERE round < ? AND username IN ({marks})",
                        (current, stamp, current, *chunk),
                    )
                for username, state, cursor in conn.execute(
                    f"SELECT username, state, cursor FROM users WHERE username IN ({marks})",
                    chunk,
                ):
                    found[username] = (username, UserState(state), cursor)
        return [found[name] for name in names]

    def claim_users(self, usernames: Sequence[str]) -> list[tuple[str, UserState, int] | None]:
        """Add names as ``add_users`` does; give None for a name this Store already claimed."""
        names = list(usernames)
        rows = self.add_users(names)
        conn = self._db
        # A temporary table lives in SQLite's temp file, not in Python's heap: a run over a
        # million names from a pipe remembers which it has seen without growing in memory.
        conn.execute("CREATE TEMP TABLE IF NOT EXISTS claimed (username TEXT PRIMARY KEY)")
        claimed: set[str] = set()
        unique = list(dict.fromkeys(names))
        for start in range(0, len(unique), _IN_CHUNK):
            chunk = unique[start : start + _IN_CHUNK]
            marks = ",".join("?" * len(chunk))
            claimed.update(
                row[0]
                for row in conn.execute(
                    f"SELECT username FROM temp.claimed WHERE username IN ({marks})", chunk
                )
            )
        conn.executemany(
            "INSERT OR IGNORE INTO temp.claimed (username) VALUES (?)", [(n,) for n in unique]
        )
        result: list[tuple[str, UserState, int] | None] = []
        for name, row in zip(names, rows, strict=True):
            result.append(None if name in claimed else row)
            claimed.add(name)
        return result

    def commit_page(
        self,
        username: str,
        videos: Sequence[tuple[int, bytes]],
        *,
        next_cursor: int,
        has_more: bool,
        requests: int,
    ) -> int:
        """Store one page's videos and advance the user's cursor atomically; return new videos."""
        page = PageCommit(username, videos, next_cursor, has_more, requests)
        return self.commit_pages([page])[0]

    def commit_pages(self, pages: Sequence[PageCommit]) -> list[int]:
        """Commit several pages in one transaction (all or none); return each one's new videos."""
        for page in pages:
            _check_count("requests", page.requests)
            if not isinstance(page.next_cursor, int) or isinstance(page.next_cursor, bool):
                raise TypeError(f"next_cursor must be an int, not {page.next_cursor!r}")
        now = self._clock()
        stamp = _utc_stamp(now)
        added: list[int] = []
        with self._transaction() as conn:
            # A user being walked is always in the current round (add_users moved it there).
            current = _current_round(conn)
            for page in pages:
                page_id = conn.execute(
                    "INSERT INTO pages (run_id, username, cursor, next_cursor, has_more, videos,"
                    " log_id, fetched_at, round) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        self._run_id,
                        page.username,
                        page.cursor,
                        page.next_cursor,
                        int(page.has_more),
                        len(page.videos),
                        page.log_id,
                        _utc_stamp_ms(page.fetched_at or now),
                        current,
                    ),
                ).lastrowid
                count = self._insert_videos(conn, page.username, page.videos, page_id, current)
                state = UserState.PENDING if page.has_more else UserState.DONE
                self._update_user(
                    conn,
                    page.username,
                    "cursor = ?, pages = pages + 1, videos = videos + ?, requests = requests + ?, "
                    "state = ?, error = NULL, updated_at = ?",
                    (page.next_cursor, count, page.requests, state.value, stamp),
                )
                added.append(count)
            self._add_to_ledger(conn, _utc_day(now), sum(page.requests for page in pages))
            if self._run_id is not None:
                conn.execute(
                    "UPDATE runs SET pages = pages + ?, videos = videos + ? WHERE id = ?",
                    (len(pages), sum(added), self._run_id),
                )
        return added

    def _insert_videos(
        self,
        conn: sqlite3.Connection,
        username: str,
        videos: Sequence[tuple[int, bytes]],
        page_id: int | None,
        round_: int,
    ) -> int:
        # The page's videos go in as one blob and a small JSON array of (id, start, length):
        # one statement for the whole page, unpacked by SQLite's json_each and substr. The sqlite3
        # module lets go of the GIL around every step, and executemany's step per row meant a
        # hundred hand-overs per page, each waiting for the event loop's thread. The bytes are
        # never decoded or re-encoded here: what the API sent is what is stored.
        spans: list[tuple[str, int, int]] = []
        chunks: list[bytes] = []
        start = 1  # substr counts from 1
        for video_id, data in videos:
            if not isinstance(video_id, int) or isinstance(video_id, bool):
                raise TypeError(f"a video id must be an int, not {video_id!r}")
            if not isinstance(data, bytes | bytearray | memoryview):
                raise TypeError(f"video data must be bytes, not {type(data).__name__}")
            size = len(data)
            if not size:
                raise ValueError(f"video data of {video_id} is empty")
            spans.append((str(video_id), start, size))
            chunks.append(data if isinstance(data, bytes) else bytes(data))
            start += size
        if not spans:
            return 0
        try:
            cur = conn.execute(
                "INSERT OR IGNORE INTO videos (username, round, video_id, data, page_id) "
                "SELECT ?, ?, json_extract(value, '$[0]'), "
                "substr(?, json_extract(value, '$[1]'), json_extract(value, '$[2]')), ? "
                "FROM json_each(?) ORDER BY key",
                (username, round_, b"".join(chunks), page_id, _ROWS_ENCODER.encode(spans)),
            )
        except sqlite3.IntegrityError as exc:
            # OR IGNORE covers the UNIQUE key only; a foreign-key failure means no such user.
            raise StoreError(f"cannot store videos of unknown user {username!r}") from exc
        return max(cur.rowcount, 0)

    @staticmethod
    def _update_user(
        conn: sqlite3.Connection, username: str, assignments: str, params: tuple[object, ...]
    ) -> None:
        sql = f"UPDATE users SET {assignments} WHERE username = ?"
        if conn.execute(sql, (*params, username)).rowcount != 1:
            raise StoreError(f"unknown user {username!r}: add it with add_users first")

    def _add_to_ledger(self, conn: sqlite3.Connection, day: str, count: int) -> None:
        if count:
            conn.execute(
                "INSERT INTO requests (day, count) VALUES (?, ?) "
                "ON CONFLICT (day) DO UPDATE SET count = count + excluded.count",
                (day, count),
            )
            if self._run_id is not None:
                # In the same transaction as the ledger, so that a run's count never disagrees
                # with the days' counts, even after a crash.
                conn.execute(
                    "UPDATE runs SET requests = requests + ? WHERE id = ?", (count, self._run_id)
                )

    def finish_user(
        self,
        username: str,
        state: UserState,
        *,
        error: str | None = None,
        requests: int = 0,
        partial: bool = False,
    ) -> None:
        """Give a user a final state (or FAILED with its error) and count its last requests.

        ``partial`` marks a ``done`` walk that stopped early at a video known from the user's
        previous round (a repeat round's ``stop_at_known``).
        """
        state = UserState(state)
        if state is UserState.PENDING:
            raise ValueError("finish_user needs a final state or FAILED, not pending")
        if partial and state is not UserState.DONE:
            raise ValueError(f"only a done walk can be partial, not a {state.value} one")
        _check_count("requests", requests)
        now = self._clock()
        with self._transaction() as conn:
            self._update_user(
                conn,
                username,
                "state = ?, error = ?, requests = requests + ?, updated_at = ?, partial = ?",
                (state.value, error, requests, _utc_stamp(now), int(partial)),
            )
            self._add_to_ledger(conn, _utc_day(now), requests)

    def record_requests(self, count: int, *, day: str | None = None) -> None:
        """Add sent requests to the ledger of a UTC day (today by default)."""
        _check_count("count", count)
        when = _check_day(day) if day is not None else _utc_day(self._clock())
        with self._transaction() as conn:
            self._add_to_ledger(conn, when, count)

    def reset_failed(self) -> int:
        """Turn failed users back to pending (keeping their cursor); return how many."""
        stamp = _utc_stamp(self._clock())
        with self._transaction() as conn:
            cur = conn.execute(
                "UPDATE users SET state = ?, updated_at = ? WHERE state = ?",
                (UserState.PENDING.value, stamp, UserState.FAILED.value),
            )
        return cur.rowcount

    def add_skipped(self, line_no: int, raw: str, reason: str) -> None:
        """Record a bad input line; it is written with the next transaction."""
        self._require_open()
        self._skipped_buffer.append((line_no, raw[:_SKIPPED_RAW_CHARS], reason))
        if len(self._skipped_buffer) >= _SKIPPED_FLUSH_AT:
            self._flush_skipped()

    def clear_skipped(self) -> None:
        """Forget the bad input lines recorded so far (e.g. when a new run re-reads its input)."""
        self._skipped_buffer.clear()
        with self._transaction() as conn:
            conn.execute("DELETE FROM skipped")
            conn.execute("DELETE FROM skipped_counts")

    def _flush_skipped(self) -> None:
        if self._skipped_buffer:
            with self._transaction():
                pass

    def _write_skipped(self, conn: sqlite3.Connection) -> int:
        pending = list(self._skipped_buffer)
        if not pending:
            return 0
        kept = conn.execute("SELECT count(*) FROM skipped").fetchone()[0]
        room = max(SKIPPED_ROWS_KEPT - kept, 0)
        conn.executemany(
            "INSERT INTO skipped (line_no, raw, reason) VALUES (?, ?, ?)", pending[:room]
        )
        counts: dict[str, int] = {}
        for _, _, reason in pending:
            counts[reason] = counts.get(reason, 0) + 1
        conn.executemany(
            "INSERT INTO skipped_counts (reason, count) VALUES (?, ?) "
            "ON CONFLICT (reason) DO UPDATE SET count = count + excluded.count",
            counts.items(),
        )
        return len(pending)

    # -- reading -----------------------------------------------------------------------------

    def requests_on(self, day: str | None = None) -> int:
        """Return the requests recorded for a UTC day 'YYYY-MM-DD' (today by default)."""
        when = _check_day(day) if day is not None else _utc_day(self._clock())
        row = self._db.execute("SELECT count FROM requests WHERE day = ?", (when,)).fetchone()
        return int(row[0]) if row else 0

    def skipped_counts(self) -> dict[str, int]:
        """Return how many input lines were skipped, per reason."""
        self._flush_skipped()
        return dict(self._db.execute("SELECT reason, count FROM skipped_counts ORDER BY reason"))

    def skipped(self, limit: int = 100) -> list[tuple[int, str, str]]:
        """Return up to `limit` kept skipped lines as (line_no, raw, reason), oldest first."""
        _check_count("limit", limit)
        self._flush_skipped()
        rows = self._db.execute(
            "SELECT line_no, raw, reason FROM skipped ORDER BY rowid LIMIT ?", (limit,)
        )
        return [(int(n), str(raw), str(reason)) for n, raw, reason in rows]

    def state_counts(self) -> dict[UserState, int]:
        """Return how many users are in each state (every state present, 0 when none)."""
        counts = dict.fromkeys(UserState, 0)
        for state, count in self._db.execute("SELECT state, count(*) FROM users GROUP BY state"):
            counts[UserState(state)] = count
        return counts

    def video_count(self) -> int:
        """Return the number of videos stored."""
        return int(self._db.execute("SELECT count(*) FROM videos").fetchone()[0])

    def user(self, username: str) -> UserRecord | None:
        """Return one user's record, or None if the store does not know the name."""
        row = self._db.execute(
            f"SELECT {_USER_COLUMNS} FROM users WHERE username = ?", (username,)
        ).fetchone()
        return _row_to_record(row) if row else None

    def failed_users(self, limit: int | None = None) -> list[UserRecord]:
        """Return failed users in input order, at most `limit` of them."""
        return self.users_in(UserState.FAILED, limit)

    def users_in(self, state: UserState, limit: int | None = None) -> list[UserRecord]:
        """Return the users in ``state`` in input order, at most ``limit`` of them."""
        if limit is not None:
            _check_count("limit", limit)
        rows = self._db.execute(
            f"SELECT {_USER_COLUMNS} FROM users WHERE state = ? ORDER BY seq LIMIT ?",
            (UserState(state).value, -1 if limit is None else limit),
        )
        return [_row_to_record(row) for row in rows]

    def iter_users(self, states: Collection[UserState] | None = None) -> Iterator[UserRecord]:
        """Stream user records in input order, optionally only those in the given states."""
        params: tuple[str, ...] = ()
        if states is None:
            sql = f"SELECT {_USER_COLUMNS} FROM users ORDER BY seq"
        else:
            wanted = tuple(UserState(s).value for s in states)
            marks = ",".join("?" * len(wanted))
            sql = f"SELECT {_USER_COLUMNS} FROM users WHERE state IN ({marks}) ORDER BY seq"
            params = wanted
        for row in self._stream(sql, params, 1000):
            yield _row_to_record(row)

    def iter_videos(
        self, batch: int = 1000, *, round: int | None = None
    ) -> Iterator[tuple[str, str, bytes]]:
        """Stream (reposted_by username, video_id, data) in user input order, then API order.

        :param batch: rows fetched from SQLite at a time.
        :param round: the round whose observations to give; by default each user's latest round
            in which its walk reached a final state and saw the whole list, neither partial nor
            incomplete (else its latest round): in a store of one round, every video.
        """
        sql, params = self._videos_query(batch, round, provenance=False)
        yield from self._stream(sql, params, batch)

    def iter_videos_with_provenance(
        self, batch: int = 1000, *, round: int | None = None
    ) -> Iterator[tuple[str, str, bytes, int, str | None, str | None]]:
        """Stream videos as `iter_videos` does, with their round, and their page's fetched_at
        and log_id added.

        fetched_at and log_id are None for videos stored before provenance was recorded
        (schema version 1).
        """
        sql, params = self._videos_query(batch, round, provenance=True)
        yield from self._stream(sql, params, batch)

    def _videos_query(
        self, batch: int, round: int | None, *, provenance: bool
    ) -> tuple[str, tuple[int, ...]]:
        if not isinstance(batch, int) or batch < 1:
            raise ValueError(f"batch must be a positive int, not {batch!r}")
        params: tuple[int, ...] = ()
        if round is not None:
            self._check_round(round)
            where, params = " WHERE v.round = ?", (round,)
        elif self.current_round > 1:
            where = _LATEST_OBSERVATION
        else:
            where = ""  # one round: every video, without a per-row lookup
        sql = _VIDEOS_IN_ORDER.format(
            columns=_PROVENANCE_COLUMNS if provenance else "",
            join=_PROVENANCE_JOIN if provenance else "",
            where=where,
        )
        return sql, params

    def _check_round(self, number: int) -> int:
        if isinstance(number, bool) or not isinstance(number, int):
            raise TypeError(f"a round is an int, not {number!r}")
        current = self.current_round
        if not 1 <= number <= current:
            raise ValueError(
                f"{str(self._path)!r} has no round {number}: its rounds are 1 to {current}"
            )
        return number

    def iter_pages(
        self, username: str | None = None
    ) -> Iterator[tuple[str, int, int, bool, int, str, str, int | None]]:
        """Stream the stored pages' provenance, for one user or all, in the order they were stored.

        Each is (username, cursor sent, next cursor, has_more, videos in the answer, log_id,
        fetched_at, run id).
        """
        sql = (
            "SELECT username, cursor, next_cursor, has_more, videos, log_id, fetched_at, run_id"
            " FROM pages"
        )
        params: tuple[str, ...] = ()
        if username is not None:
            sql += " WHERE username = ?"
            params = (username,)
        for row in self._stream(sql + " ORDER BY id", params, 1000):
            name, cursor, next_cursor, has_more, videos, log_id, fetched_at, run_id = row
            yield name, cursor, next_cursor, bool(has_more), videos, log_id, fetched_at, run_id

    def _stream(self, sql: str, params: Sequence[object], batch: int) -> Iterator[Any]:
        cur = self._db.execute(sql, params)
        try:
            while rows := cur.fetchmany(batch):
                yield from rows
        finally:
            # Closing the cursor ends its read snapshot, so an abandoned iterator does not pin
            # the WAL (which would stop checkpoints and let the -wal file grow).
            cur.close()

    def book_requests(self, counts: Mapping[str, int]) -> None:
        """Count requests about to be sent, per user and in today's ledger, in one transaction."""
        # The harvest's write-ahead ledger: booked before the requests leave, so that a kill at
        # any instant never leaves the ledger short of what the API counted. Page commits and
        # finish_user then pass requests=0. A name the store does not know still counts in the
        # ledger: quota is quota.
        for count in counts.values():
            _check_count("requests", count)
        now = self._clock()
        with self._transaction() as conn:
            conn.executemany(
                "UPDATE users SET requests = requests + ? WHERE username = ?",
                [(count, name) for name, count in counts.items() if count],
            )
            self._add_to_ledger(conn, _utc_day(now), sum(counts.values()))

    def refund_requests(self, counts: Mapping[str, int], *, day: str) -> None:
        """Take back booked requests that never reached the API, per user and from a day's ledger.

        ``counts``: requests per username. ``day``: the UTC day 'YYYY-MM-DD' they were booked on.
        """
        # The write-ahead ledger books a request before it leaves; one whose connection was
        # refused never left, and the API did not count it. No count goes below zero.
        when = _check_day(day)
        for count in counts.values():
            _check_count("requests", count)
        total = sum(counts.values())
        with self._transaction() as conn:
            conn.executemany(
                "UPDATE users SET requests = max(requests - ?, 0) WHERE username = ?",
                [(count, name) for name, count in counts.items() if count],
            )
            if total:
                conn.execute(
                    "UPDATE requests SET count = max(count - ?, 0) WHERE day = ?", (total, when)
                )
                if self._run_id is not None:
                    conn.execute(
                        "UPDATE runs SET requests = max(requests - ?, 0) WHERE id = ?",
                        (total, self._run_id),
                    )
