"""Open the store that ``--db`` names, with every way that can go wrong said in CLI terms."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .._dburl import is_postgres_url, mask_url
from ..errors import LedgerError, StoreError
from ..store import PostgresStore, Store, StoreLike, StoreMismatchError

if TYPE_CHECKING:
    from ..ledger import Ledger
from ._common import DEFAULT_DB, PROG, UsageError

__all__ = [
    "check_db",
    "create_store",
    "open_existing",
    "open_for_harvest",
    "open_shared_ledger",
]


def check_db(db: str, *, creating: bool = False) -> bool:
    """Return whether ``db`` holds something to open; raise UsageError for what cannot be one.

    :param db: the ``--db`` path.
    :param creating: a harvest may create the store: a missing file is fine if its directory
        exists; status, export and diff need one.
    """
    path = Path(db)
    if path.is_dir():
        raise UsageError(
            f"--db {db!r} is a directory: name the store file (e.g. --db {path / DEFAULT_DB})"
        )
    if not path.exists():
        if not creating:
            raise UsageError(f"no store at {db!r}: the file does not exist; check --db")
        if not path.parent.is_dir():
            raise UsageError(f"--db {db!r}: there is no directory {str(path.parent)!r}")
        return False
    # SQLite opens even a read-only store for writing (its WAL and the run lock need it), and
    # says only "unable to open database file" when it cannot.
    if not os.access(path, os.R_OK | os.W_OK):
        raise UsageError(
            f"cannot open --db {db!r}: permission denied (the store must be readable and"
            " writable by you)"
        )
    return path.stat().st_size > 0


def _refused(db: str, exc: Exception) -> UsageError:
    return UsageError(str(exc) if isinstance(exc, StoreError) else f"--db {mask_url(db)!r}: {exc}")


def _open_postgres(
    db: str, fields: Sequence[str] | None = None, max_count: int | None = None, *, create: bool
) -> PostgresStore:
    """Open a PostgreSQL store; every failure is one line, the password masked."""
    try:
        return PostgresStore(db, fields=fields, max_count=max_count, create=create)
    except (StoreError, ValueError) as exc:
        raise _refused(db, exc) from None


def _empty(db: str) -> UsageError:
    return UsageError(
        f"{db!r} is empty: nothing has been harvested into it yet ({PROG} harvest USERS"
        f" --db {db} creates the store there); check --db"
    )


def _no_tables(db: str) -> bool:
    """Tell whether ``db`` is an SQLite database without a table (opened once, never filled)."""
    try:
        uri = Path(db).resolve().as_uri() + "?mode=ro"
        with contextlib.closing(sqlite3.connect(uri, uri=True)) as conn:
            return not conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
    except sqlite3.Error:
        return False


def open_existing(db: str) -> StoreLike:
    """Open the store that status, export, diff or refresh reads; raise UsageError if none.

    :param db: the ``--db`` given: a path, or a ``postgresql://`` URL.
    """
    if is_postgres_url(db):
        return _open_postgres(db, create=False)
    return _open_sqlite_existing(db)


def _open_sqlite_existing(db: str) -> Store:
    if not check_db(db):
        raise _empty(db)
    try:
        return Store(db, create=False)
    except StoreMismatchError as exc:
        raise _refused(db, exc) from None
    except (StoreError, ValueError) as exc:
        # The store's own words for an empty database name library arguments, not options.
        raise (_empty(db) if _no_tables(db) else _refused(db, exc)) from None


def open_for_harvest(
    db: str, fields: tuple[str, ...] | None, max_count: int | None, *, default_fields: Sequence[str]
) -> tuple[StoreLike | None, tuple[str, ...], int | None]:
    """Open an existing store (checking its settings), or say what a new one will hold.

    An empty file (``touch``, ``mktemp``), or an SQLite database without a table, counts as no
    store: the harvest creates one in it.

    :param db: the ``--db`` path.
    :param fields: the ``--fields`` given, if any.
    :param max_count: the ``--max-count`` given, if any.
    :param default_fields: the fields of a new store without ``--fields``.
    :returns: the store (None: none yet), and the fields and page size the harvest uses
        (None: the client's default).
    """
    if is_postgres_url(db):
        try:
            store: StoreLike = PostgresStore(db, fields=fields, max_count=max_count, create=False)
        except StoreMismatchError as exc:
            raise _refused(db, exc) from None
        except StoreError as exc:
            if "holds no harvest store yet" not in str(exc):
                raise _refused(db, exc) from None
            return None, fields or tuple(default_fields), max_count
        return store, store.fields, store.max_count
    if not check_db(db, creating=True):
        return None, fields or tuple(default_fields), max_count
    try:
        store = Store(db, fields=fields, max_count=max_count, create=False)
    except StoreMismatchError as exc:
        raise _refused(db, exc) from None
    except (StoreError, ValueError) as exc:
        if _no_tables(db):  # an SQLite file nothing was harvested into: a new store
            return None, fields or tuple(default_fields), max_count
        raise _refused(db, exc) from None
    return store, store.fields, store.max_count


def create_store(db: str, fields: Sequence[str], max_count: int) -> StoreLike:
    """Create the store a harvest writes to (once the credentials proved good)."""
    if is_postgres_url(db):
        return _open_postgres(db, fields, max_count, create=True)
    try:
        return Store(db, fields=fields, max_count=max_count)
    except (StoreError, ValueError) as exc:
        raise _refused(db, exc) from None


def open_shared_ledger(spec: str | None, db: str, *, create: bool = True) -> Ledger | None:
    """Open the shared ledger ``--ledger`` (else TIKTOK_LEDGER) names; None if neither does.

    One line for every command that spends or plans: ``ledger = open_shared_ledger(args.ledger,
    args.db)``; the caller closes it. Its bookings are recorded under this machine and ``db``.

    :param spec: the ``--ledger`` given (None: the environment's, if any).
    :param db: the ``--db`` the command works on (the label of its bookings).
    :param create: make the ledger if there is none yet (status passes False).
    """
    from ..ledger import ENV_LEDGER, ledger_source, open_ledger

    text = (spec if spec is not None else os.environ.get(ENV_LEDGER, "")).strip()
    if not text:
        return None
    where = "--ledger" if spec is not None else ENV_LEDGER
    try:
        return open_ledger(text, source=ledger_source(db), create=create)
    except LedgerError as exc:
        raise UsageError(f"{where}: {exc}") from None
    except OSError as exc:
        raise UsageError(f"{where} {mask_url(text)!r}: {exc}") from None
