"""The harvest's database: one SQLite file in WAL mode, written by one thread of one process.

A store remembers, across crashes and days, which users were fetched, how far each user's cursor
walk got, every video fetched (its JSON bytes, exactly as the caller encoded them) and how many
research requests were spent per UTC day. A page's videos and the user's next cursor commit in one
transaction, so a process killed at any instant leaves either the whole page or none of it, and a
page fetched again after a restart is never stored twice.

The store is synchronous. The harvest calls it from one dedicated writer thread so that the event
loop never waits on the disk; the connection is therefore opened with ``check_same_thread=False``,
and a `Store` must be used from one thread at a time (it has no lock of its own).

Two harvests on one store would walk the same users twice and double the ledger, so a harvest
takes `Store.run_lock` first: an OS lock (``flock``) on the sidecar file ``<db>.lock``, which the
kernel drops when its process dies, even by SIGKILL, so that no stale lock survives a crash.

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
    "Store",
    "StoreError",
    "StoreLockedError",
    "StoreMismatchError",
    "UserRecord",
    "UserState",
]

SCHEMA_VERSION: Final = 1

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


# FAILED is final for one run only: the next run retries it unless told not to (`reset_failed`).
FINAL_STATES: Final[frozenset[UserState]] = frozenset(
    {UserState.DONE, UserState.NOT_FOUND, UserState.UNAVAILABLE}
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

# One statement each: executescript() would COMMIT the surrounding transaction first.
_SCHEMA: Final = (
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID",
    f"""CREATE TABLE users (
        username   TEXT PRIMARY KEY,
        seq        INTEGER NOT NULL UNIQUE,  -- input order
        state      TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ({_STATE_CHECK})),
        cursor     INTEGER NOT NULL DEFAULT 0,  -- the next cursor to request
        pages      INTEGER NOT NULL DEFAULT 0,
        videos     INTEGER NOT NULL DEFAULT 0,
        requests   INTEGER NOT NULL DEFAULT 0,
        error      TEXT,
        updated_at TEXT NOT NULL
    )""",
    # video_id is TEXT: real ids exceed SQLite's signed 64-bit INTEGER (some even uint64). The
    # API's order within a user is the insertion order, i.e. the rowid.
    """CREATE TABLE videos (
        username TEXT NOT NULL REFERENCES users (username),
        video_id TEXT NOT NULL,
        data     BLOB NOT NULL,
        UNIQUE (username, video_id)
    )""",
    # The per-UTC-day request ledger: every request sent, failures included.
    "CREATE TABLE requests (day TEXT PRIMARY KEY, count INTEGER NOT NULL) WITHOUT ROWID",
    "CREATE TABLE skipped (line_no INTEGER NOT NULL, raw TEXT NOT NULL, reason TEXT NOT NULL)",
    "CREATE TABLE skipped_counts (reason TEXT PRIMARY KEY, count INTEGER NOT NULL) WITHOUT ROWID",
)

_ROWS_ENCODER = msgspec.json.Encoder()

_USER_COLUMNS = "username, state, cursor, pages, videos, requests, error"

# CROSS JOIN pins users as the outer loop: SQLite then walks users by seq and sorts only each
# user's own videos by rowid, instead of sorting the whole table before the first row comes out.
_VIDEOS_IN_ORDER = (
    "SELECT v.username, v.video_id, v.data FROM users AS u "
    "CROSS JOIN videos AS v ON v.username = u.username ORDER BY u.seq, v.rowid"
)


def _utc_day(now: float) -> str:
    # Same floor arithmetic as quota.utc_day, kept here so the store imports nothing of ours.
    return (datetime.date(1970, 1, 1) + datetime.timedelta(days=int(now // 86400.0))).isoformat()


def _utc_stamp(now: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))


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


def _row_to_record(row: tuple[str, str, int, int, int, int, str | None]) -> UserRecord:
    username, state, cursor, pages, videos, requests, error = row
    return UserRecord(username, UserState(state), cursor, pages, videos, requests, error)


@dataclasses.dataclass(frozen=True, slots=True)
class PageCommit:
    """Describe one fetched page to store: its videos as (id, JSON bytes), and where to go next."""

    username: str
    videos: Sequence[tuple[int, bytes]]
    next_cursor: int
    has_more: bool
    requests: int


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
        conn.execute("PRAGMA foreign_keys=ON")

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
                    raise StoreError(
                        f"{str(self._path)!r} is an empty database: "
                        "pass fields and max_count to create a store in it"
                    )
                for statement in _SCHEMA:
                    conn.execute(statement)
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
        return self._check_meta(meta, fields, max_count)

    def _check_meta(
        self, meta: dict[str, str], fields: tuple[str, ...] | None, max_count: int | None
    ) -> tuple[tuple[str, ...], int]:
        where = repr(str(self._path))
        version = meta.get("schema_version")
        if version != str(SCHEMA_VERSION):
            raise StoreMismatchError(
                f"{where} has store schema version {version}, but this version of "
                f"tiktok_repost_async reads schema version {SCHEMA_VERSION}; open it with the "
                "version that wrote it, or use another --db"
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
            # seq is taken inside the statement so that names already present leave no gaps.
            conn.executemany(
                "INSERT OR IGNORE INTO users (username, seq, updated_at) "
                "VALUES (?, (SELECT coalesce(max(seq), 0) + 1 FROM users), ?)",
                [(name, stamp) for name in names],
            )
            unique = list(dict.fromkeys(names))
            for start in range(0, len(unique), _IN_CHUNK):
                chunk = unique[start : start + _IN_CHUNK]
                marks = ",".join("?" * len(chunk))
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
            for page in pages:
                count = self._insert_videos(conn, page.username, page.videos)
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
        return added

    def _insert_videos(
        self, conn: sqlite3.Connection, username: str, videos: Sequence[tuple[int, bytes]]
    ) -> int:
        rows: list[tuple[str, str]] = []
        for video_id, data in videos:
            if not isinstance(video_id, int) or isinstance(video_id, bool):
                raise TypeError(f"a video id must be an int, not {video_id!r}")
            if not isinstance(data, bytes | bytearray | memoryview):
                raise TypeError(f"video data must be bytes, not {type(data).__name__}")
            try:
                rows.append((str(video_id), bytes(data).decode("utf-8")))
            except UnicodeDecodeError:
                raise ValueError(f"video data of {video_id} is not UTF-8 JSON") from None
        try:
            # One statement for the whole page, unpacked by SQLite's json_each: the sqlite3
            # module lets go of the GIL around every step, and executemany's step per row meant
            # a hundred hand-overs per page. Each one waits for the event loop's thread to yield
            # the GIL, which made a page's commit ten times slower while the loop was busy.
            cur = conn.execute(
                "INSERT OR IGNORE INTO videos (username, video_id, data) "
                "SELECT ?, json_extract(value, '$[0]'), CAST(json_extract(value, '$[1]') AS BLOB) "
                "FROM json_each(?) ORDER BY key",
                (username, _ROWS_ENCODER.encode(rows)),
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

    @staticmethod
    def _add_to_ledger(conn: sqlite3.Connection, day: str, count: int) -> None:
        if count:
            conn.execute(
                "INSERT INTO requests (day, count) VALUES (?, ?) "
                "ON CONFLICT (day) DO UPDATE SET count = count + excluded.count",
                (day, count),
            )

    def finish_user(
        self,
        username: str,
        state: UserState,
        *,
        error: str | None = None,
        requests: int = 0,
    ) -> None:
        """Give a user a final state (or FAILED with its error) and count its last requests."""
        state = UserState(state)
        if state is UserState.PENDING:
            raise ValueError("finish_user needs a final state or FAILED, not pending")
        _check_count("requests", requests)
        now = self._clock()
        with self._transaction() as conn:
            self._update_user(
                conn,
                username,
                "state = ?, error = ?, requests = requests + ?, updated_at = ?",
                (state.value, error, requests, _utc_stamp(now)),
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
        if limit is not None:
            _check_count("limit", limit)
        rows = self._db.execute(
            f"SELECT {_USER_COLUMNS} FROM users WHERE state = ? ORDER BY seq LIMIT ?",
            (UserState.FAILED.value, -1 if limit is None else limit),
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

    def iter_videos(self, batch: int = 1000) -> Iterator[tuple[str, str, bytes]]:
        """Stream (reposted_by username, video_id, data) in user input order, then API order."""
        if not isinstance(batch, int) or batch < 1:
            raise ValueError(f"batch must be a positive int, not {batch!r}")
        yield from self._stream(_VIDEOS_IN_ORDER, (), batch)

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
