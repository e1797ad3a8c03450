"""What every part of a `Store` shares: its connection, clock, transactions and cursors."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

from ..errors import StoreError
from ._schema import _current_round

# Bad input lines are counted exactly per reason, but only the first ones are kept verbatim: a
# garbage input of ten million lines must not grow the store by ten million rows.
SKIPPED_ROWS_KEPT: Final = 10_000


class _StoreCore:
    """Hold the state and plumbing that the store's reading, rounds and writing parts share."""

    # Set by Store.__init__; declared here so that every part is typed against them.
    _path: Path
    _clock: Callable[[], float]
    _conn: sqlite3.Connection | None
    _skipped_buffer: list[tuple[int, str, str]]
    _run_id: int | None
    _fields: tuple[str, ...]
    _max_count: int

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

    def _stream(self, sql: str, params: Sequence[object], batch: int) -> Iterator[Any]:
        cur = self._db.execute(sql, params)
        try:
            while rows := cur.fetchmany(batch):
                yield from rows
        finally:
            # Closing the cursor ends its read snapshot, so an abandoned iterator does not pin
            # the WAL (which would stop checkpoints and let the -wal file grow).
            cur.close()

    @property
    def current_round(self) -> int:
        """Return the number of the latest round: the one a harvest walks."""
        return _current_round(self._db)
