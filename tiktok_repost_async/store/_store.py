"""The `Store` itself: opening and migrating a store, its life cycle, the run lock and writing.

Reading, runs and rounds, and refreshes come from the parts it inherits (`_reading`, `_rounds`,
`_refreshes`), which share its connection and transactions through `_core`.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Final, Self

import msgspec

from .._dburl import is_postgres_url, mask_url
from ..errors import StoreError
from . import _lock
from ._frames import _StoreFrames
from ._reading import _StoreReading
from ._records import (
    PageCommit,
    StoreLockedError,
    UserState,
    _check_count,
    _check_day,
    _utc_day,
    _utc_stamp,
    _utc_stamp_ms,
)
from ._refreshes import _StoreRefreshes
from ._rounds import _StoreRounds
from ._schema import (
    SCHEMA_VERSION,
    _check_fields,
    _check_meta,
    _configure,
    _create_schema,
    _current_round,
    _migrate,
)

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


_ROWS_ENCODER = msgspec.json.Encoder()


class Store(_StoreReading, _StoreRounds, _StoreRefreshes, _StoreFrames):
    """Open (or create) a harvest store: users, their cursors, videos and the request ledger."""

    #: One harvest process at a time (the run lock); `PostgresStore` is the shared one.
    shared: Final = False

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        fields: Sequence[str] | None = None,
        max_count: int | None = None,
        create: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Open the store at ``path``, creating it (with ``fields`` and ``max_count``) if allowed.

        :param path: the SQLite file (and its ``-wal``, ``-shm`` and ``.lock`` sidecars beside it).
        :param fields: the video fields a new store is made for; an existing store must match
            (None: take the store's own).
        :param max_count: the page size a new store is made for; an existing store must match
            (None: take the store's own).
        :param create: make the file when it does not exist (False: a missing file is a
            `StoreError`, never an empty new store).
        :param clock: the wall clock whose UTC day the request ledger counts.
        :raises StoreError: no store there (and not allowed to create one), or the file is not
            a harvest store.
        :raises StoreMismatchError: the store was made for other fields or max_count.
        """
        if is_postgres_url(os.fspath(path)):
            # Path() would fold the URL into a file name (and keep its password in it).
            raise StoreError(
                f"{mask_url(os.fspath(path))!r} is a PostgreSQL URL, not a SQLite file: open it"
                " with open_store or PostgresStore (the refresh is not yet on a PostgreSQL store)"
            )
        self._path = Path(path)
        self._clock = clock
        self._skipped_buffer: list[tuple[int, str, str]] = []
        self._lock_fd: int | None = None
        self._run_id: int | None = None
        self._conn: sqlite3.Connection | None = None
        wanted_fields = _check_fields(fields)
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
            _configure(self._conn)
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
                _create_schema(conn, fields, max_count, self._clock)
                return fields, max_count
            if "meta" not in tables:
                raise StoreError(
                    f"{str(self._path)!r} is an SQLite database but not a harvest store; "
                    "use another --db"
                )
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
            if meta.get("schema_version") in ("1", "2", "3"):
                # Inside the transaction that read the version: two processes opening the same
                # old store at once migrate it once, and a crash mid-way leaves the old version
                # whole.
                _migrate(conn, meta["schema_version"], self._clock)
                meta["schema_version"] = str(SCHEMA_VERSION)
        return _check_meta(self._path, meta, fields, max_count)

    # -- life cycle --------------------------------------------------------------------------

    @property
    def path(self) -> Path:
        """Return the database file's path."""
        return self._path

    @property
    def label(self) -> str:
        """Return the database file's path, as text."""
        return str(self._path)

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

    # -- run lock ----------------------------------------------------------------------------

    @property
    def lock_path(self) -> Path:
        """Return the sidecar file whose OS lock marks a running harvest."""
        return self._path.with_name(self._path.name + ".lock")

    def acquire_run_lock(self) -> None:
        """Take the exclusive harvest lock of this store, or raise StoreLockedError."""
        self._take_lock("harvest")

    def _take_lock(self, purpose: str) -> None:
        self._require_open()
        if self._lock_fd is not None:
            raise StoreError(f"this Store already holds the run lock of {str(self._path)!r}")
        try:
            fd = _lock.acquire(self.lock_path, purpose)
        except _lock.LockHeldError as held:
            # A lock file of an older version holds the pid alone: a harvest's.
            pid, _, doing = held.holder.partition(" ")
            raise StoreLockedError(
                f"{str(self._path)!r} is being {'refreshed' if doing == 'refresh' else 'harvested'}"
                f" by another process (pid {pid}); wait for it to finish, stop it, or use"
                " another --db"
            ) from None
        self._lock_fd = fd
        # Each run claims its names afresh: the names a previous run on this Store claimed are
        # not duplicates of this one's (a second round, a run after a stop).
        self._db.execute("DROP TABLE IF EXISTS temp.claimed")

    def release_run_lock(self) -> None:
        """Give up the harvest lock if this Store holds it."""
        fd, self._lock_fd = self._lock_fd, None
        if fd is not None:
            _lock.release(fd)

    @property
    def holds_run_lock(self) -> bool:
        """Tell whether this Store holds the harvest lock."""
        return self._lock_fd is not None

    def acquire_refresh_lock(self) -> None:
        """Take the store for a refresh: its run lock, so no harvest writes meanwhile."""
        self._take_lock("refresh")

    def release_refresh_lock(self) -> None:
        """Let go of what `acquire_refresh_lock` took."""
        self.release_run_lock()

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
        """Add new usernames as pending and return each given name's (username, state, cursor).

        A name of an earlier round joins the current one from cursor 0; a name dropped from the
        current round (`end_round_input`) is back in it, pending at its cursor.

        :param usernames: the names to add (each a non-empty str); a name already stored keeps its
            state.
        """
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
                # A member dropped from this round (an earlier run's input left it out) that an
                # input names again is back in it, walked on from its cursor.
                conn.execute(
                    "UPDATE users SET state = 'pending', updated_at = ? WHERE round = ?"
                    f" AND state = 'dropped' AND username IN ({marks})",
                    (stamp, current, *chunk),
                )
                for username, state, cursor in conn.execute(
                    f"SELECT username, state, cursor FROM users WHERE username IN ({marks})",
                    chunk,
                ):
                    found[username] = (username, UserState(state), cursor)
        return [found[name] for name in names]

    def claim_users(
        self, usernames: Sequence[str]
    ) -> list[tuple[str, UserState, int] | str | None]:
        """Add names as ``add_users`` does; give None for a name this Store already claimed.

        (Never the name of another holder, as a `PostgresStore` may: the run lock keeps every
        other harvest out.)

        :param usernames: the names, as read from the input (each a non-empty str); a name given
            twice gives None the second time.
        """
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
        result: list[tuple[str, UserState, int] | str | None] = []
        for name, row in zip(names, rows, strict=True):
            result.append(None if name in claimed else row)
            claimed.add(name)
        return result

    def release_claims(self, usernames: Collection[str]) -> None:
        """Do nothing: under the run lock every user is this process's (see `PostgresStore`).

        :param usernames: the users whose claims to let go of.
        """
        self._require_open()

    def orphaned_users(self) -> tuple[list[str], int]:
        """Return no user and no other holder: the run lock keeps other harvests out."""
        self._require_open()
        return [], 0

    def commit_page(
        self,
        username: str,
        videos: Sequence[tuple[int, bytes]],
        *,
        next_cursor: int,
        has_more: bool,
        requests: int,
    ) -> int:
        """Store one page's videos and advance the user's cursor atomically; return new videos.

        :param username: the user whose page it is.
        :param videos: the page's videos as (id, the bytes of its JSON object as sent), in API
            order.
        :param next_cursor: the cursor the answer gave, where the user's walk goes on.
        :param has_more: whether the answer said more pages follow.
        :param requests: requests the page cost, added to the user's and the day's count (0 when
            they were booked before they left).
        """
        page = PageCommit(username, videos, next_cursor, has_more, requests)
        return self.commit_pages([page])[0]

    def commit_pages(self, pages: Sequence[PageCommit]) -> list[int]:
        """Commit several pages in one transaction (all or none); return each one's new videos.

        :param pages: the pages, each with its user, videos, next cursor and provenance
            (`PageCommit`).
        """
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
                        # The column is NOT NULL in existing stores (schema 2), and SQLite cannot
                        # relax that in place: "" stands for none, read back as None.
                        page.log_id or "",
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

        :param username: the user.
        :param state: a final state (``done``, ``not_found``, ``unavailable``, ``incomplete``) or
            ``failed``.
        :param error: what went wrong, for a failed or incomplete user (None: nothing).
        :param requests: requests not yet counted, added to the user's and the day's count.
        :param partial: a ``done`` walk that stopped early at a video known from the user's previous
            round (a repeat round's ``stop_at_known``).
        """
        state = UserState(state)
        if state in (UserState.PENDING, UserState.DROPPED):
            # Dropping is the round's to decide, once a run has read its input (end_round_input).
            raise ValueError(f"finish_user needs a final state or FAILED, not {state.value}")
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
        """Add sent requests to the ledger of a UTC day (today by default).

        :param count: the requests sent.
        :param day: the UTC day 'YYYY-MM-DD' (None: today).
        """
        _check_count("count", count)
        when = _check_day(day) if day is not None else _utc_day(self._clock())
        with self._transaction() as conn:
            self._add_to_ledger(conn, when, count)

    def book_within(self, count: int, *, limit: int, day: str | None = None) -> bool:
        """Add requests to a day's ledger only if it stays within ``limit``; tell whether it did.

        The check and the count are one transaction, so that two processes booking at once
        cannot both take the last request.

        :param count: the requests about to be sent.
        :param limit: the day's budget.
        :param day: the UTC day 'YYYY-MM-DD' (None: today).
        """
        _check_count("count", count)
        _check_count("limit", limit)
        when = _check_day(day) if day is not None else _utc_day(self._clock())
        with self._transaction() as conn:
            row = conn.execute("SELECT count FROM requests WHERE day = ?", (when,)).fetchone()
            if (int(row[0]) if row else 0) + count > limit:
                return False
            self._add_to_ledger(conn, when, count)
        return True

    def unbook(self, count: int, *, day: str) -> None:
        """Take requests that never reached the API off a day's ledger (never below zero).

        :param count: the requests to take off.
        :param day: the UTC day 'YYYY-MM-DD' they were booked on.
        """
        _check_count("count", count)
        when = _check_day(day)
        if count:
            with self._transaction() as conn:
                conn.execute(
                    "UPDATE requests SET count = max(count - ?, 0) WHERE day = ?", (count, when)
                )

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
        """Record a bad input line; it is written with the next transaction.

        :param line_no: the line's number in the input, from 1.
        :param raw: the line as read (its first 1,000 characters are kept).
        :param reason: why it was skipped, for people (``blank line``, ``duplicate`` ...).
        """
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

    def book_requests(self, counts: Mapping[str, int], *, limit: int | None = None) -> bool:
        """Count requests about to be sent, per user and in today's ledger, in one transaction.

        :param counts: requests per username.
        :param limit: the day's budget: book nothing and return False if the day's count would
            pass it (None: book without a check; True is returned).
        """
        # The harvest's write-ahead ledger: booked before the requests leave, so that a kill at
        # any instant never leaves the ledger short of what the API counted. Page commits and
        # finish_user then pass requests=0. A name the store does not know still counts in the
        # ledger: quota is quota.
        for count in counts.values():
            _check_count("requests", count)
        now = self._clock()
        day = _utc_day(now)
        total = sum(counts.values())
        with self._transaction() as conn:
            if limit is not None:
                row = conn.execute("SELECT count FROM requests WHERE day = ?", (day,)).fetchone()
                if (int(row[0]) if row else 0) + total > limit:
                    return False
            conn.executemany(
                "UPDATE users SET requests = requests + ? WHERE username = ?",
                [(count, name) for name, count in counts.items() if count],
            )
            self._add_to_ledger(conn, day, total)
        return True

    def refund_requests(self, counts: Mapping[str, int], *, day: str) -> None:
        """Take back booked requests that never reached the API, per user and from a day's ledger.

        :param counts: requests per username.
        :param day: the UTC day 'YYYY-MM-DD' they were booked on.
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
