"""The day's research requests of one organisation, booked before they leave, on a real engine.

TikTok grants the Research API's daily quota to an organisation, not to a store: a principal
researcher and the collaborators share it. A `Ledger` counts the requests of each UTC day and
books new ones only while the day's total stays within the limit, atomically across every
process that shares it:

- `StoreLedger`: the store's own ``requests`` table, as a harvest without ``--ledger`` uses it
  (one store believes it owns the whole day);
- `SQLiteLedger`: a small SQLite file of its own for the stores of one machine, booked in a
  ``BEGIN IMMEDIATE`` transaction (WAL, a short busy timeout, retried);
- `PostgresLedger`: tables in a PostgreSQL database for many machines, booked with one
  ``INSERT ... ON CONFLICT DO UPDATE ... WHERE count + n <= limit RETURNING`` (the row lock of
  the upsert is the only coordinator). psycopg 3 comes with the ``postgres`` extra.

`open_ledger` picks one from a path, a ``postgresql://`` URL, or ``TIKTOK_LEDGER``. A shared
ledger records, per UTC day, the organisation's total and each source's share (a source is a
machine and a store, ``host:/path/to/store.db``): no credentials, no password, no username of
TikTok. Its schema is versioned (`LEDGER_SCHEMA_VERSION`) and apart from any store's.

The calls block (a file, a socket): the harvest makes them from its writer thread. One ledger
object may be shared by threads; each call holds its lock.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol, Self, runtime_checkable

from ._dburl import (
    driver_detail,
    import_psycopg,
    is_postgres_url,
    mask_url,
    pg_connect,
    url_password,
)
from .errors import LedgerError

if TYPE_CHECKING:
    from .store import Store

__all__ = [
    "ENV_LEDGER",
    "LEDGER_SCHEMA_VERSION",
    "Ledger",
    "PostgresLedger",
    "SQLiteLedger",
    "StoreLedger",
    "ledger_source",
    "open_ledger",
]

#: The environment variable that names the shared ledger when ``--ledger`` is not given.
ENV_LEDGER: Final = "TIKTOK_LEDGER"
#: The version of a shared ledger's own schema (its file or its tables).
LEDGER_SCHEMA_VERSION: Final = 1
_KIND: Final = "tiktok-repost-async ledger"

# SQLite: each attempt waits this long for another process's booking (they last milliseconds);
# a busy database is tried again until _SQLITE_GIVE_UP, then the booking fails loudly rather
# than letting a request out unbooked.
_SQLITE_BUSY_S: Final = 2.0
_SQLITE_GIVE_UP_S: Final = 60.0
# PostgreSQL: how long a connection attempt may take before the ledger is called unreachable.
# One lock key for creating the tables, so that two processes starting at once on a new
# database do not both try (CREATE TABLE IF NOT EXISTS races in PostgreSQL's catalogue).
_PG_SCHEMA_LOCK: Final = 0x7469_6B74_6F6B  # "tiktok"


@runtime_checkable
class Ledger(Protocol):
    """Book a UTC day's research requests against a daily limit, atomically across processes."""

    @property
    def label(self) -> str:
        """Return what names this ledger to a person (a path, or a URL without its password)."""
        ...

    @property
    def shared(self) -> bool:
        """Tell whether the ledger is shared by stores (False: a store's own)."""
        ...

    def book(self, n: int, *, day: str, limit: int) -> bool:
        """Count ``n`` requests on ``day`` if the day's total stays within ``limit``; else none.

        :param n: the requests about to be sent.
        :param day: the UTC day 'YYYY-MM-DD' they count on.
        :param limit: the organisation's budget for that day.
        """
        ...

    def refund(self, n: int, *, day: str) -> None:
        """Take back ``n`` requests booked on ``day`` that never reached the API.

        :param n: the requests to take back.
        :param day: the UTC day 'YYYY-MM-DD' they were booked on.
        """
        ...

    def spent(self, day: str) -> int:
        """Return the requests booked on ``day`` by everyone sharing the ledger.

        :param day: the UTC day 'YYYY-MM-DD'.
        """
        ...

    def breakdown(self, day: str) -> dict[str, int]:
        """Return the requests booked on ``day`` per source (machine and store).

        :param day: the UTC day 'YYYY-MM-DD'.
        """
        ...

    def close(self) -> None:
        """Let go of the file or the connection."""
        ...

    def __enter__(self) -> Self: ...

    def __exit__(self, *exc: object) -> None: ...


def ledger_source(store: str | os.PathLike[str] | None = None) -> str:
    """Return the label a shared ledger records a store's bookings under: ``host:/store/path``.

    :param store: the store's path or URL (None: this process, ``host:pid N``).
    """
    host = socket.gethostname() or "localhost"
    if store is None:
        return f"{host}:pid {os.getpid()}"
    text = os.fspath(store)
    if not is_postgres_url(text):
        text = str(Path(text).resolve())
    return f"{host}:{mask_url(text)}"


def open_ledger(
    spec: str | os.PathLike[str] | None = None,
    *,
    store: Store | None = None,
    source: str | None = None,
    create: bool = True,
    environ: Mapping[str, str] | None = None,
) -> Ledger:
    """Open the ledger that ``spec`` names, else ``TIKTOK_LEDGER``'s, else the store's own.

    :param spec: a file path (a `SQLiteLedger`) or a ``postgresql://`` URL (a `PostgresLedger`);
        None or empty: the environment variable `ENV_LEDGER`, and without it ``store``'s own.
    :param store: the store whose requests are booked; its own ledger when no shared one is
        named, and the default ``source``.
    :param source: the label the shared ledger records bookings under (`ledger_source` of the
        store by default).
    :param create: make the ledger if there is none yet (False: a missing one is an error, as
        ``status`` wants).
    :param environ: where to read `ENV_LEDGER` (``os.environ`` by default).
    """
    env = os.environ if environ is None else environ
    text = os.fspath(spec) if spec is not None else env.get(ENV_LEDGER, "")
    text = text.strip()
    if not text:
        if store is None:
            raise ValueError(
                f"no ledger named: give a path or a postgresql:// URL, set {ENV_LEDGER}, or pass"
                " the store whose own ledger to use"
            )
        return StoreLedger(store)
    if source is None:
        source = ledger_source(None if store is None else store.path)
    if is_postgres_url(text):
        return PostgresLedger(text, source=source, create=create)
    if "://" in text:
        raise LedgerError(
            f"the ledger {mask_url(text)!r} is neither a file path nor a postgresql:// URL"
        )
    return SQLiteLedger(text, source=source, create=create)


def _check_n(name: str, value: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{name} must be a non-negative int, not {value!r}")
    return value


def _check_day(day: str) -> str:
    try:
        parsed = datetime.date.fromisoformat(day)
    except (TypeError, ValueError):
        parsed = None
    if parsed is None or parsed.isoformat() != day:
        raise ValueError(f"day must be a UTC date written 'YYYY-MM-DD', not {day!r}")
    return day


def _stamp() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class StoreLedger:
    """Use a store's own ``requests`` table as the ledger: the default without a shared one."""

    __slots__ = ("_store",)

    def __init__(self, store: Store) -> None:
        """Wrap ``store``'s own ledger.

        :param store: the open store (it stays the caller's to close).
        """
        self._store = store

    def __repr__(self) -> str:
        return f"<StoreLedger {self.label}>"

    @property
    def label(self) -> str:
        """Return the store's path, with any password masked."""
        return mask_url(str(self._store.path))

    @property
    def shared(self) -> bool:
        """Return False: only this store books here."""
        return False

    def book(self, n: int, *, day: str, limit: int) -> bool:
        """Count ``n`` requests on ``day`` in the store if they fit ``limit``.

        :param n: the requests about to be sent.
        :param day: the UTC day 'YYYY-MM-DD' they count on.
        :param limit: the budget for that day.
        """
        return self._store.book_within(_check_n("n", n), limit=_check_n("limit", limit), day=day)

    def refund(self, n: int, *, day: str) -> None:
        """Take back ``n`` requests of ``day`` from the store's ledger.

        :param n: the requests to take back.
        :param day: the UTC day 'YYYY-MM-DD' they were booked on.
        """
        self._store.unbook(_check_n("n", n), day=day)

    def spent(self, day: str) -> int:
        """Return the store's requests on ``day``.

        :param day: the UTC day 'YYYY-MM-DD'.
        """
        return self._store.requests_on(_check_day(day))

    def breakdown(self, day: str) -> dict[str, int]:
        """Return the store's requests on ``day`` under its path.

        :param day: the UTC day 'YYYY-MM-DD'.
        """
        spent = self.spent(day)
        return {self.label: spent} if spent else {}

    def close(self) -> None:
        """Do nothing: the store is its owner's to close."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- SQLite --------------------------------------------------------------------------------------

_SQLITE_TABLES: Final = (
    "CREATE TABLE ledger_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    # The organisation's total per UTC day: the one row every booking of the day checks.
    "CREATE TABLE ledger_days (day TEXT PRIMARY KEY, count INTEGER NOT NULL CHECK (count >= 0))",
    # Each source's share of the day, for `status`: a machine and a store, never a secret.
    "CREATE TABLE ledger_sources (day TEXT NOT NULL, source TEXT NOT NULL,"
    " count INTEGER NOT NULL CHECK (count >= 0), updated_at TEXT NOT NULL,"
    " PRIMARY KEY (day, source))",
)


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


class SQLiteLedger:
    """Share a ledger between the processes of one machine through a small SQLite file."""

    __slots__ = ("_conn", "_lock", "_path", "_sleep", "_source")

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        source: str | None = None,
        create: bool = True,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """Open (or create) the ledger file at ``path``.

        :param path: the ledger file (its own file: not a store).
        :param source: the label this process's bookings are recorded under (`ledger_source`).
        :param create: make the file if it does not exist (False: that is an error).
        :param sleep: waits between attempts on a busy file (tests replace it).
        """
        self._path = Path(path)
        self._source = source if source is not None else ledger_source()
        self._sleep = sleep
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        if self._path.is_dir():
            raise LedgerError(f"the ledger {str(self._path)!r} is a directory: name a file in it")
        if not self._path.exists():
            if not create:
                raise LedgerError(
                    f"no ledger at {str(self._path)!r}: the file does not exist (a harvest with"
                    " this ledger creates it); check the path"
                )
            if not self._path.parent.is_dir():
                raise LedgerError(
                    f"the ledger {str(self._path)!r}: there is no directory"
                    f" {str(self._path.parent)!r}"
                )
        uri = self._path.resolve().as_uri() + ("?mode=rwc" if create else "?mode=rw")
        try:
            self._conn = sqlite3.connect(
                uri,
                uri=True,
                timeout=_SQLITE_BUSY_S,
                isolation_level=None,
                check_same_thread=False,
            )
            self._retrying(self._open)
        except sqlite3.DatabaseError as exc:
            self.close()
            if "not a database" in str(exc):
                raise LedgerError(
                    f"{str(self._path)!r} is not a ledger: it is not an SQLite database"
                ) from None
            raise LedgerError(f"cannot open the ledger {str(self._path)!r}: {exc}") from None
        except BaseException:
            self.close()
            raise

    def __repr__(self) -> str:
        return f"<SQLiteLedger {self.label} source={self._source!r}>"

    @property
    def label(self) -> str:
        """Return the ledger file's path."""
        return str(self._path)

    @property
    def shared(self) -> bool:
        """Return True: every store that names this file books here."""
        return True

    @property
    def source(self) -> str:
        """Return the label this object's bookings are recorded under."""
        return self._source

    def _open(self, conn: sqlite3.Connection) -> None:
        # WAL lets status read while a harvest books; FULL makes each booking durable before
        # its request leaves (a power cut must not leave the ledger short).
        if conn.execute("PRAGMA journal_mode=WAL").fetchone()[0].lower() != "wal":
            raise LedgerError(
                f"the ledger {str(self._path)!r} cannot use SQLite's WAL mode (a network file"
                " system?): keep it on a local disk, or use a postgresql:// ledger"
            )
        conn.execute("PRAGMA synchronous=FULL")
        with self._transaction(conn):
            tables = {
                row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
            }
            if not tables:
                for statement in _SQLITE_TABLES:
                    conn.execute(statement)
                conn.executemany(
                    "INSERT INTO ledger_meta (key, value) VALUES (?, ?)",
                    [
                        ("kind", _KIND),
                        ("schema_version", str(LEDGER_SCHEMA_VERSION)),
                        ("created_at", _stamp()),
                    ],
                )
                return
            if "ledger_meta" not in tables:
                what = "a harvest store" if "meta" in tables else "an SQLite database"
                raise LedgerError(
                    f"{str(self._path)!r} is {what}, not a ledger: give the ledger a file of its"
                    " own (e.g. ledger.db beside the stores)"
                )
            meta = dict(conn.execute("SELECT key, value FROM ledger_meta").fetchall())
        _check_version(str(self._path), meta.get("schema_version"))

    @contextlib.contextmanager
    def _transaction(self, conn: sqlite3.Connection) -> Iterator[None]:
        # IMMEDIATE takes the write lock before the read: the check and the count are one
        # step for every process on this file.
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _retrying(self, work: Callable[[sqlite3.Connection], Any]) -> Any:
        with self._lock:
            conn = self._conn
            if conn is None:
                raise LedgerError(f"the ledger {str(self._path)!r} is closed")
            deadline = time.monotonic() + _SQLITE_GIVE_UP_S
            pause = 0.01
            while True:
                try:
                    return work(conn)
                except sqlite3.OperationalError as exc:
                    if not _is_busy(exc) or time.monotonic() >= deadline:
                        if _is_busy(exc):
                            raise LedgerError(
                                f"the ledger {str(self._path)!r} stayed busy for"
                                f" {_SQLITE_GIVE_UP_S:.0f} s (another process holds it)"
                            ) from None
                        raise LedgerError(f"the ledger {str(self._path)!r}: {exc}") from None
                self._sleep(pause)
                pause = min(pause * 2, 0.5)

    def book(self, n: int, *, day: str, limit: int) -> bool:
        """Count ``n`` requests on ``day`` if the day's total stays within ``limit``.

        :param n: the requests about to be sent.
        :param day: the UTC day 'YYYY-MM-DD' they count on.
        :param limit: the organisation's budget for that day.
        """
        _check_n("n", n)
        _check_n("limit", limit)
        _check_day(day)

        def work(conn: sqlite3.Connection) -> bool:
            with self._transaction(conn):
                row = conn.execute("SELECT count FROM ledger_days WHERE day = ?", (day,)).fetchone()
                if (int(row[0]) if row else 0) + n > limit:
                    return False
                if n:
                    conn.execute(
                        "INSERT INTO ledger_days (day, count) VALUES (?, ?) ON CONFLICT (day)"
                        " DO UPDATE SET count = count + excluded.count",
                        (day, n),
                    )
                    conn.execute(
                        "INSERT INTO ledger_sources (day, source, count, updated_at)"
                        " VALUES (?, ?, ?, ?) ON CONFLICT (day, source) DO UPDATE SET"
                        " count = count + excluded.count, updated_at = excluded.updated_at",
                        (day, self._source, n, _stamp()),
                    )
                return True

        return bool(self._retrying(work))

    def refund(self, n: int, *, day: str) -> None:
        """Take back ``n`` requests of ``day`` (never below zero).

        :param n: the requests to take back.
        :param day: the UTC day 'YYYY-MM-DD' they were booked on.
        """
        _check_n("n", n)
        _check_day(day)
        if not n:
            return

        def work(conn: sqlite3.Connection) -> None:
            with self._transaction(conn):
                conn.execute(
                    "UPDATE ledger_days SET count = max(count - ?, 0) WHERE day = ?", (n, day)
                )
                conn.execute(
                    "UPDATE ledger_sources SET count = max(count - ?, 0), updated_at = ?"
                    " WHERE day = ? AND source = ?",
                    (n, _stamp(), day, self._source),
                )

        self._retrying(work)

    def spent(self, day: str) -> int:
        """Return the organisation's requests on ``day``.

        :param day: the UTC day 'YYYY-MM-DD'.
        """
        _check_day(day)

        def work(conn: sqlite3.Connection) -> int:
            row = conn.execute("SELECT count FROM ledger_days WHERE day = ?", (day,)).fetchone()
            return int(row[0]) if row else 0

        return int(self._retrying(work))

    def breakdown(self, day: str) -> dict[str, int]:
        """Return the requests on ``day`` per source, largest first.

        :param day: the UTC day 'YYYY-MM-DD'.
        """
        _check_day(day)

        def work(conn: sqlite3.Connection) -> dict[str, int]:
            return {
                source: int(count)
                for source, count in conn.execute(
                    "SELECT source, count FROM ledger_sources WHERE day = ? AND count > 0"
                    " ORDER BY count DESC, source",
                    (day,),
                )
            }

        result: dict[str, int] = self._retrying(work)
        return result

    def close(self) -> None:
        """Close the file."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _check_version(label: str, version: str | None) -> None:
    if version is None or not version.isdigit():
        raise LedgerError(f"the ledger {label} has no schema version: it is damaged or not one")
    if int(version) > LEDGER_SCHEMA_VERSION:
        raise LedgerError(
            f"the ledger {label} has schema version {version}, newer than this version reads"
            f" ({LEDGER_SCHEMA_VERSION}): upgrade tiktok-repost-async"
        )


# -- PostgreSQL ----------------------------------------------------------------------------------

_PG_TABLES: Final = (
    "CREATE TABLE IF NOT EXISTS tiktok_ledger_meta (key text PRIMARY KEY, value text NOT NULL)",
    "CREATE TABLE IF NOT EXISTS tiktok_ledger_days (day text PRIMARY KEY,"
    " count bigint NOT NULL CHECK (count >= 0))",
    "CREATE TABLE IF NOT EXISTS tiktok_ledger_sources (day text NOT NULL, source text NOT NULL,"
    " count bigint NOT NULL CHECK (count >= 0), updated_at timestamptz NOT NULL DEFAULT now(),"
    " PRIMARY KEY (day, source))",
)

# The booking: the day's row is inserted, or its count raised only while it stays within the
# limit. The upsert locks the row, and PostgreSQL re-checks the WHERE against the row as the
# last committed booking left it, so concurrent bookings are serialised by the row lock and no
# two can both take the last request. No row back means refused.
_PG_BOOK: Final = (
    "INSERT INTO tiktok_ledger_days AS d (day, count) VALUES (%s, %s)"
    " ON CONFLICT (day) DO UPDATE SET count = d.count + excluded.count"
    " WHERE d.count + excluded.count <= %s RETURNING d.count"
)
_PG_BOOK_SOURCE: Final = (
    "INSERT INTO tiktok_ledger_sources AS s (day, source, count) VALUES (%s, %s, %s)"
    " ON CONFLICT (day, source) DO UPDATE SET count = s.count + excluded.count,"
    " updated_at = now()"
)


class PostgresLedger:
    """Share a ledger between processes and machines through tables in a PostgreSQL database."""

    __slots__ = ("_conn", "_label", "_lock", "_password", "_psycopg", "_source", "_url")

    def __init__(self, url: str, *, source: str | None = None, create: bool = True) -> None:
        """Connect to the database at ``url`` and make the ledger's tables if needed.

        :param url: ``postgresql://user[:password]@host[:port]/database[?...]``; without a
            password libpq reads ``PGPASSWORD`` or ``~/.pgpass`` (and ``PGHOST`` and the rest
            of its environment). The password never appears in a message or a repr.
        :param source: the label this process's bookings are recorded under (`ledger_source`).
        :param create: make the tables if the database has none (False: that is an error).
        """
        self._psycopg = import_psycopg(LedgerError, "a postgresql:// ledger")
        self._url = url.strip()
        self._password = url_password(self._url)
        self._label = mask_url(self._url)
        self._source = source if source is not None else ledger_source()
        self._lock = threading.Lock()
        self._conn: Any = None
        self._conn = self._connect()
        try:
            self._open(create)
        except BaseException:
            self.close()
            raise

    def __repr__(self) -> str:
        return f"<PostgresLedger {self._label} source={self._source!r}>"

    @property
    def label(self) -> str:
        """Return the database URL with its password masked."""
        return self._label

    @property
    def shared(self) -> bool:
        """Return True: every store that names this database books here."""
        return True

    @property
    def source(self) -> str:
        """Return the label this object's bookings are recorded under."""
        return self._source

    def _error(self, what: str, exc: BaseException) -> LedgerError:
        detail = driver_detail(exc, self._password)
        return LedgerError(f"{what} the ledger {self._label}: {detail}")

    def _connect(self) -> Any:
        try:
            return pg_connect(self._psycopg, self._url, "tiktok-reposts ledger")
        except self._psycopg.Error as exc:
            raise self._error("cannot connect to", exc) from None

    def _open(self, create: bool) -> None:
        conn = self._conn
        try:
            found = conn.execute("SELECT to_regclass('tiktok_ledger_meta')").fetchone()[0]
            if found is None:
                if not create:
                    raise LedgerError(
                        f"the database {self._label} holds no ledger yet (a harvest with this"
                        " ledger creates it); check the URL"
                    )
                with conn.transaction():
                    conn.execute("SELECT pg_advisory_xact_lock(%s)", (_PG_SCHEMA_LOCK,))
                    for statement in _PG_TABLES:
                        conn.execute(statement)
                    conn.execute(
                        "INSERT INTO tiktok_ledger_meta (key, value) VALUES ('kind', %s),"
                        " ('schema_version', %s), ('created_at', %s) ON CONFLICT DO NOTHING",
                        (_KIND, str(LEDGER_SCHEMA_VERSION), _stamp()),
                    )
            row = conn.execute(
                "SELECT value FROM tiktok_ledger_meta WHERE key = 'schema_version'"
            ).fetchone()
        except self._psycopg.Error as exc:
            raise self._error("cannot open", exc) from None
        _check_version(self._label, None if row is None else str(row[0]))

    def _run(self, work: Callable[[Any], Any]) -> Any:
        with self._lock:
            if self._conn is None:
                raise LedgerError(f"the ledger {self._label} is closed")
            try:
                return work(self._conn)
            except self._psycopg.OperationalError as exc:
                if not self._conn.closed and not self._conn.broken:
                    raise self._error("cannot use", exc) from None
            except self._psycopg.Error as exc:
                raise self._error("cannot use", exc) from None
            # The connection dropped (a server restart, a network blip): one new one, one
            # more try. A booking whose commit was lost in the drop may count twice: the
            # ledger then over-counts, which is safe; it never under-counts.
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = self._connect()
            try:
                return work(self._conn)
            except self._psycopg.Error as exc:
                raise self._error("cannot use", exc) from None

    def book(self, n: int, *, day: str, limit: int) -> bool:
        """Count ``n`` requests on ``day`` if the day's total stays within ``limit``.

        :param n: the requests about to be sent.
        :param day: the UTC day 'YYYY-MM-DD' they count on.
        :param limit: the organisation's budget for that day.
        """
        _check_n("n", n)
        _check_n("limit", limit)
        _check_day(day)
        if n > limit:
            return False  # an insert of a new day's row is not checked by the upsert's WHERE

        def work(conn: Any) -> bool:
            if not n:
                row = conn.execute(
                    "SELECT count FROM tiktok_ledger_days WHERE day = %s", (day,)
                ).fetchone()
                return (int(row[0]) if row else 0) <= limit
            with conn.transaction():
                if conn.execute(_PG_BOOK, (day, n, limit)).fetchone() is None:
                    return False
                conn.execute(_PG_BOOK_SOURCE, (day, self._source, n))
            return True

        return bool(self._run(work))

    def refund(self, n: int, *, day: str) -> None:
        """Take back ``n`` requests of ``day`` (never below zero).

        :param n: the requests to take back.
        :param day: the UTC day 'YYYY-MM-DD' they were booked on.
        """
        _check_n("n", n)
        _check_day(day)
        if not n:
            return

        def work(conn: Any) -> None:
            with conn.transaction():
                conn.execute(
                    "UPDATE tiktok_ledger_days SET count = greatest(count - %s, 0) WHERE day = %s",
                    (n, day),
                )
                conn.execute(
                    "UPDATE tiktok_ledger_sources SET count = greatest(count - %s, 0),"
                    " updated_at = now() WHERE day = %s AND source = %s",
                    (n, day, self._source),
                )

        self._run(work)

    def spent(self, day: str) -> int:
        """Return the organisation's requests on ``day``.

        :param day: the UTC day 'YYYY-MM-DD'.
        """
        _check_day(day)

        def work(conn: Any) -> int:
            row = conn.execute(
                "SELECT count FROM tiktok_ledger_days WHERE day = %s", (day,)
            ).fetchone()
            return int(row[0]) if row else 0

        return int(self._run(work))

    def breakdown(self, day: str) -> dict[str, int]:
        """Return the requests on ``day`` per source, largest first.

        :param day: the UTC day 'YYYY-MM-DD'.
        """
        _check_day(day)

        def work(conn: Any) -> dict[str, int]:
            rows = conn.execute(
                "SELECT source, count FROM tiktok_ledger_sources WHERE day = %s AND count > 0"
                " ORDER BY count DESC, source",
                (day,),
            ).fetchall()
            return {str(source): int(count) for source, count in rows}

        result: dict[str, int] = self._run(work)
        return result

    def close(self) -> None:
        """Close the connection."""
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
