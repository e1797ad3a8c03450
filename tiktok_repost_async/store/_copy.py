"""Copy a store between engines, table by table: `copy_store` (``tiktok-reposts copy``).

A lab that outgrows one file moves its SQLite store into PostgreSQL; a collaborator takes a
PostgreSQL store home as one SQLite file. Both engines keep the same tables with the same columns
(a SQLite table ``T`` is ``tiktok_T`` in PostgreSQL), so a copy is driven by one declared list of
the logical tables (`TABLES`) and their columns, and keeps every row as it is: the ids that other
rows reference (runs, pages, refreshes), the input order (``seq``), the videos' raw bytes and
their order (SQLite's rowid is PostgreSQL's ``id``). PostgreSQL's sequences are set past the ids
copied, so that a harvest on the copy carries on.

What is not copied is live state of one engine: PostgreSQL's claims and holders (who harvests
now), the run's ``holder``, and each engine's own ``schema_version`` (and ``kind``) in meta. A
SQLite store's ``skipped_counts`` is what a PostgreSQL store derives from its kept skipped lines;
where the two disagree (SQLite keeps only the first `SKIPPED_ROWS_KEPT` lines), or where the
target has no table for rows the source holds (a table this version of the target engine does
not keep yet, or one this version does not know), the copy refuses before writing a row: never
data dropped in silence.

The source is read from one consistent snapshot, safe while a harvest writes to it: SQLite in
one read transaction, PostgreSQL in one REPEATABLE READ transaction. The target must be new or
hold an empty store. Nothing is half-written: a PostgreSQL target is filled in one transaction
(a killed copy is rolled back by the server, leaving the empty store that the same command fills
again); a SQLite target is written as ``<target>.copying`` beside it and renamed into place once
checked (a killed copy leaves that file, which the same command replaces).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Final

from .._dburl import (
    driver_detail,
    import_psycopg,
    is_postgres_url,
    mask_url,
    pg_connect,
    url_password,
)
from ..errors import StoreError
from . import _lock
from ._open import open_store
from ._postgres import pg_text

__all__ = ["CopyProgress", "CopyRefusedError", "CopyReport", "copy_store"]

#: Rows read and written at a time.
_BATCH: Final = 1_000
_PG_PREFIX: Final = "tiktok_"
# Meta keys each engine writes for itself when it makes a store: never copied over. A PostgreSQL
# store's erase_pending says that rows already deleted still sit in its own files until its next
# refresh rewrites them: the copy carries no deleted row, so the target owes nothing.
_ENGINE_META: Final = frozenset({"schema_version", "kind", "erase_pending"})
# Tables of one engine that hold live state, not data: never copied, never a reason to refuse.
_LIVE: Final = {"postgresql": frozenset({"holders", "claims"}), "sqlite": frozenset()}
# A shared ledger's tables may live in a store's database: the organisation's, not the store's.
_NOT_STORE: Final = "ledger_"
# What a SQLite target keeps in a file of its own until the copy is checked.
_PARTIAL_SUFFIX: Final = ".copying"


class CopyRefusedError(StoreError):
    """Report a copy refused before any row was written: the target, or a table, named."""


@dataclasses.dataclass(frozen=True)
class CopyTable:
    """Name one logical table a copy carries, and the columns both engines give it.

    :param name: the SQLite name (``tiktok_<name>`` in PostgreSQL).
    :param columns: the columns copied, in order.
    :param order: the ORDER BY that reads it in a stable order (ids ascending).
    :param what: what it holds, for a refusal.
    :param rowid: its ``id`` column is SQLite's rowid (the API's order of videos).
    """

    name: str
    columns: tuple[str, ...]
    order: str
    what: str
    rowid: bool = False


#: Every table a store holds, in an order where a row comes after the rows it references.
TABLES: Final = (
    CopyTable("meta", ("key", "value"), "key", "the store's settings"),
    CopyTable(
        "users",
        (
            "username",
            "seq",
            "state",
            "cursor",
            "pages",
            "videos",
            "requests",
            "error",
            "updated_at",
            "round",
            "partial",
        ),
        "seq",
        "the users and their cursors",
    ),
    CopyTable(
        "user_rounds",
        ("username", "round", "state", "pages", "videos", "requests", "error", "partial"),
        "username, round",
        "the users' states in a panel's earlier rounds",
    ),
    CopyTable(
        "rounds",
        ("number", "started_at", "stop_at_known", "input_open"),
        "number",
        "the rounds",
    ),
    CopyTable(
        "runs",
        (
            "id",
            "started_at",
            "ended_at",
            "version",
            "fields",
            "max_count",
            "requests",
            "pages",
            "videos",
            "outcome",
            "round",
        ),
        "id",
        "the runs",
    ),
    CopyTable(
        "pages",
        (
            "id",
            "run_id",
            "username",
            "cursor",
            "next_cursor",
            "has_more",
            "videos",
            "log_id",
            "fetched_at",
            "round",
        ),
        "id",
        "the pages' provenance",
    ),
    CopyTable(
        "videos",
        ("id", "username", "round", "video_id", "data", "page_id"),
        "id",
        "the videos",
        rowid=True,
    ),
    CopyTable("requests", ("day", "count"), "day", "the request ledger"),
    CopyTable("skipped", ("line_no", "raw", "reason"), "line_no", "the skipped input lines"),
    CopyTable(
        "refreshes",
        (
            "id",
            "started_at",
            "ended_at",
            "outcome",
            "version",
            "check_users",
            "max_page_id",
            "users_until",
            "users_done",
            "checked",
            "removed",
            "observations_removed",
            "users_checked",
            "users_removed",
            "requests",
        ),
        "id",
        "the refresh audit",
    ),
    CopyTable(
        "refresh_tasks",
        ("refresh_id", "batch", "size", "task_id", "task_ids", "state", "removed"),
        "refresh_id, batch",
        "the refresh audit's tasks",
    ),
    CopyTable(
        "refresh_ids",
        ("refresh_id", "batch", "video_id"),
        "refresh_id, batch, video_id",
        "the ids of a refresh in progress",
    ),
)
_BY_NAME: Final = {table.name: table for table in TABLES}
# SQLite's exact count per reason of skipped lines, which a PostgreSQL store derives from its
# kept lines (it keeps every one).
_SKIPPED_COUNTS: Final = "skipped_counts"


@dataclasses.dataclass(frozen=True)
class CopyProgress:
    """Tell how far a copy got: a table, its rows copied so far and its rows in all.

    :param table: the table being copied (its SQLite name: ``videos``, ``pages`` ...).
    :param done: its rows written so far (0 when it starts).
    :param total: its rows in the source's snapshot.
    """

    table: str
    done: int
    total: int


@dataclasses.dataclass(frozen=True)
class CopyReport:
    """Say what a copy carried: rows per table, and the store's users, rounds and requests.

    :param source: the source, as shown to people (a URL's password masked).
    :param target: the target, likewise.
    :param rows: the rows copied per table (SQLite names), meta's engine keys aside.
    :param users: the users copied.
    :param rounds: the rounds copied.
    :param pages: the pages (with their provenance) copied.
    :param videos: the observations of videos copied.
    :param requests: the requests the copied ledger counts, every day together.
    :param seconds: how long the copy took, checks included.
    """

    source: str
    target: str
    rows: dict[str, int]
    users: int
    rounds: int
    pages: int
    videos: int
    requests: int
    seconds: float


# -- the two engines, as a copy sees them ----------------------------------------------------


class _Side:
    """One end of a copy: a connection, and the tables and columns it has."""

    engine: str
    label: str

    def tables(self) -> dict[str, set[str]]:
        raise NotImplementedError

    def count(self, name: str) -> int:
        raise NotImplementedError

    def read(self, table: CopyTable, columns: Sequence[str]) -> Iterator[list[tuple[Any, ...]]]:
        raise NotImplementedError

    def skipped_counts(self) -> dict[str, int]:
        raise NotImplementedError

    def error(self, what: str, exc: BaseException) -> StoreError:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class _SQLiteSide(_Side):
    engine = "sqlite"

    def __init__(self, path: Path, *, label: str | None = None, write: bool = False) -> None:
        self.label = label or str(path)
        # Read-write even to read: a read-only connection cannot remove the WAL at its close,
        # and would leave -wal and -shm files beside a store that had none.
        uri = path.resolve().as_uri() + "?mode=rw"
        try:
            self.conn = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=30.0)
            # One read transaction from the first SELECT to the end: one snapshot of a store
            # that a harvest may be writing meanwhile (WAL readers never block the writer).
            self.conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        except sqlite3.Error as exc:
            raise self.error("cannot open", exc) from None

    def error(self, what: str, exc: BaseException) -> StoreError:
        return StoreError(f"{what} the store {self.label!r}: {exc}")

    def _q(self, sql: str, params: Sequence[object] = ()) -> list[Any]:
        try:
            return self.conn.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise self.error("cannot read", exc) from None

    def tables(self) -> dict[str, set[str]]:
        names = [
            str(row[0])
            for row in self._q("SELECT name FROM sqlite_master WHERE type = 'table'")
            if not str(row[0]).startswith(("sqlite_", _NOT_STORE))
        ]
        found: dict[str, set[str]] = {}
        for name in names:
            columns = {str(row[1]) for row in self._q(f'PRAGMA table_info("{name}")')}
            table = _BY_NAME.get(name)
            if table is not None and table.rowid:
                columns.add("id")
            found[name] = columns
        return found

    def count(self, name: str) -> int:
        return int(self._q(f'SELECT count(*) FROM "{name}"')[0][0])

    def _column(self, table: CopyTable, column: str) -> str:
        return "rowid" if table.rowid and column == "id" else column

    def read(self, table: CopyTable, columns: Sequence[str]) -> Iterator[list[tuple[Any, ...]]]:
        listed = ", ".join(self._column(table, c) for c in columns)
        order = ", ".join(self._column(table, c.strip()) for c in table.order.split(","))
        try:
            cur = self.conn.execute(f"SELECT {listed} FROM {table.name} ORDER BY {order}")
            while rows := cur.fetchmany(_BATCH):
                yield rows
            cur.close()
        except sqlite3.Error as exc:
            raise self.error("cannot read", exc) from None

    def skipped_counts(self) -> dict[str, int]:
        return {str(r): int(n) for r, n in self._q("SELECT reason, count FROM skipped_counts")}

    def write(self, table: CopyTable, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
        listed = ", ".join(self._column(table, c) for c in columns)
        marks = ", ".join("?" * len(columns))
        try:
            self.conn.executemany(f"INSERT INTO {table.name} ({listed}) VALUES ({marks})", rows)
        except sqlite3.Error as exc:
            raise self.error("cannot write to", exc) from None

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self.conn.close()


class _PostgresSide(_Side):
    engine = "postgresql"

    def __init__(self, url: str, *, write: bool = False) -> None:
        self.psycopg = import_psycopg(StoreError, "a postgresql:// store")
        self.label = mask_url(url)
        self.password = url_password(url)
        try:
            self.conn = pg_connect(self.psycopg, url, "tiktok-reposts copy")
            # A source is one snapshot of every table, whatever harvests commit meanwhile; a
            # target is filled in one transaction, rolled back by the server if the copy dies.
            self.conn.execute(
                "BEGIN" if write else "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"
            )
        except self.psycopg.Error as exc:
            raise self.error("cannot connect to", exc) from None

    def error(self, what: str, exc: BaseException) -> StoreError:
        return StoreError(f"{what} the store {self.label}: {driver_detail(exc, self.password)}")

    def _q(self, sql: str, params: Sequence[object] = ()) -> list[Any]:
        try:
            rows: list[Any] = self.conn.execute(sql, params).fetchall()
        except self.psycopg.Error as exc:
            raise self.error("cannot read", exc) from None
        return rows

    def tables(self) -> dict[str, set[str]]:
        found: dict[str, set[str]] = {}
        for name, column in self._q(
            "SELECT c.table_name, c.column_name FROM information_schema.columns AS c"
            " JOIN information_schema.tables AS t USING (table_schema, table_name)"
            " WHERE t.table_type = 'BASE TABLE' AND c.table_schema = current_schema()"
            " AND left(c.table_name, %s) = %s",
            (len(_PG_PREFIX), _PG_PREFIX),
        ):
            logical = str(name)[len(_PG_PREFIX) :]
            if not logical.startswith(_NOT_STORE):
                found.setdefault(logical, set()).add(str(column))
        return found

    def count(self, name: str) -> int:
        return int(self._q(f"SELECT count(*) FROM {_PG_PREFIX}{name}")[0][0])

    def read(self, table: CopyTable, columns: Sequence[str]) -> Iterator[list[tuple[Any, ...]]]:
        sql = f"SELECT {', '.join(columns)} FROM {_PG_PREFIX}{table.name} ORDER BY {table.order}"
        try:
            # A server-side cursor: ten million videos come batch by batch, not all at once.
            with self.conn.cursor(name=f"tiktok_copy_{table.name}") as cur:
                cur.itersize = _BATCH
                cur.execute(sql)
                while rows := cur.fetchmany(_BATCH):
                    yield [
                        tuple(bytes(v) if isinstance(v, memoryview) else v for v in row)
                        for row in rows
                    ]
        except self.psycopg.Error as exc:
            raise self.error("cannot read", exc) from None

    def skipped_counts(self) -> dict[str, int]:
        rows = self._q(f"SELECT reason, count(*) FROM {_PG_PREFIX}skipped GROUP BY reason")
        return {str(reason): int(count) for reason, count in rows}

    def write(self, table: CopyTable, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
        sql = f"COPY {_PG_PREFIX}{table.name} ({', '.join(columns)}) FROM STDIN"
        try:
            with self.conn.cursor() as cur, cur.copy(sql) as copy:
                for row in rows:
                    # A NUL that SQLite kept in free text (a skipped input line) is refused by
                    # PostgreSQL: written as the harvest into PostgreSQL writes it.
                    copy.write_row(
                        [pg_text(v) if isinstance(v, str) and "\x00" in v else v for v in row]
                    )
        except self.psycopg.Error as exc:
            raise self.error("cannot write to", exc) from None

    def commit(self) -> None:
        try:
            self.conn.execute("COMMIT")
        except self.psycopg.Error as exc:
            raise self.error("cannot write to", exc) from None

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.close()


# -- the copy ----------------------------------------------------------------------------------

# Columns of one engine that hold live state (which process ran a run): not copied, no refusal.
_LIVE_COLUMNS: Final = {("runs", "holder")}
# Tables a new store already fills (its settings, round 1): emptied before the source's rows.
_REPLACED: Final = ("meta", "rounds")


def copy_store(
    source: str | os.PathLike[str],
    target: str | os.PathLike[str],
    *,
    progress: Callable[[CopyProgress], None] | None = None,
) -> CopyReport:
    """Copy everything a store holds into a new or empty store, on either engine.

    The source is read from one snapshot (safe while a harvest writes to it); the target is
    written whole or not at all, then opened and counted against the source.

    :param source: the store to copy: a SQLite file or a ``postgresql://`` URL.
    :param target: where to copy it: a SQLite file that does not exist yet (or is empty), or a
        ``postgresql://`` URL of a database that holds no store yet (or an empty one).
    :param progress: called with each table's rows copied so far (for a progress line).
    :raises CopyRefusedError: the target is not empty, is the source, or lacks a table or a
        column that the source has rows in (nothing was written).
    :raises StoreError: the source is not a store, or a database failed during the copy.
    """
    started = time.monotonic()
    src, dst = os.fspath(source).strip(), os.fspath(target).strip()
    src_label, dst_label = _label(src), _label(dst)
    if _same(src, dst):
        raise CopyRefusedError(f"the source and the target are the same store ({dst_label})")
    # The source passes its own engine's open checks first (and an older SQLite store is
    # brought to the current schema, as any command would).
    try:
        with open_store(src, create=False) as opened:
            fields, max_count = opened.fields, opened.max_count
    except StoreError as exc:
        raise CopyRefusedError(f"cannot copy from {src_label}: {exc}") from None
    lock_fd: int | None = None
    if not is_postgres_url(dst):
        lock_fd = _claim_sqlite_target(Path(dst))
    try:
        reader = _open_side(src, write=False)
        try:
            tables = reader.tables()
            counts = {name: reader.count(name) for name in tables}
            _refuse_unknown(reader, tables, counts)
            if is_postgres_url(dst):
                written = _into_postgres(reader, tables, counts, dst, fields, max_count, progress)
            else:
                written = _into_sqlite(
                    reader, tables, counts, Path(dst), fields, max_count, progress
                )
        finally:
            reader.close()
    except CopyRefusedError:
        raise
    except StoreError as exc:
        # A write the target refused half-way (a lost connection, a value its engine cannot
        # hold): its transaction is rolled back, or its partial file removed.
        raise StoreError(
            f"{exc}; nothing was copied into {dst_label}: run the same command again once this"
            " is fixed"
        ) from None
    finally:
        if lock_fd is not None:
            _lock.release(lock_fd)
    rows, requests = written
    # The copy opens as a store of its own engine, and holds what the snapshot held.
    with open_store(dst, create=False) as copy:
        held = {
            "users": sum(copy.state_counts().values()),
            "videos": copy.video_count(),
            "runs": copy.run_count(),
            "rounds": len(copy.rounds()),
        }
    for name, number in held.items():
        if number != rows.get(name, 0):
            raise StoreError(
                f"the copy {dst_label} holds {number:,} {name}, not the {rows.get(name, 0):,} of"
                f" {src_label}: run the same command again"
            )
    return CopyReport(
        source=src_label,
        target=dst_label,
        rows=rows,
        users=rows.get("users", 0),
        rounds=rows.get("rounds", 0),
        pages=rows.get("pages", 0),
        videos=rows.get("videos", 0),
        requests=requests,
        seconds=time.monotonic() - started,
    )


def _rows(number: int) -> str:
    return f"{number:,} row{'' if number == 1 else 's'}"


def _label(spec: str) -> str:
    return mask_url(spec) if is_postgres_url(spec) else spec


def _same(source: str, target: str) -> bool:
    if is_postgres_url(source) or is_postgres_url(target):
        return source == target
    return Path(source).resolve() == Path(target).resolve()


def _open_side(spec: str, *, write: bool) -> _SQLiteSide | _PostgresSide:
    if is_postgres_url(spec):
        return _PostgresSide(spec, write=write)
    return _SQLiteSide(Path(spec), write=write)


def _refuse_unknown(reader: _Side, tables: dict[str, set[str]], counts: dict[str, int]) -> None:
    """Refuse a source holding rows in a table no copy knows (a newer version's, or foreign)."""
    known = {*_BY_NAME, _SKIPPED_COUNTS, *_LIVE[reader.engine]}
    for name in sorted(tables):
        if name not in known and counts[name]:
            shown = f"{_PG_PREFIX}{name}" if reader.engine == "postgresql" else name
            raise CopyRefusedError(
                f"the source {reader.label} has {_rows(counts[name])} in a table this version"
                f" does not copy ({shown}): upgrade tiktok-repost-async and copy again"
            )


def _plan(
    reader: _Side,
    tables: dict[str, set[str]],
    counts: dict[str, int],
    target: dict[str, set[str]],
    target_label: str,
    engine: str,
) -> list[tuple[CopyTable, list[str]]]:
    """Return each table to copy with its columns; refuse what the target cannot hold."""
    plan: list[tuple[CopyTable, list[str]]] = []
    for table in TABLES:
        if table.name not in tables:
            continue  # an older store of the source's engine: nothing of it to copy
        rows = counts[table.name]
        if table.name not in target:
            if rows:
                raise CopyRefusedError(
                    f"the target {target_label} has no table for {table.what} ({table.name},"
                    f" {_rows(rows)} in the source): this version's {_ENGINE[engine]} store does"
                    " not keep them yet; nothing was copied (keep the store on its engine)"
                )
            continue
        have, there = tables[table.name], target[table.name]
        columns = [c for c in table.columns if c in have and c in there]
        columns += sorted(
            c
            for c in have & there
            if c not in table.columns and (table.name, c) not in _LIVE_COLUMNS
        )
        lost = sorted(
            c for c in have - there - set(columns) if (table.name, c) not in _LIVE_COLUMNS
        )
        if rows and lost:
            raise CopyRefusedError(
                f"the target {target_label} has no column {lost[0]} in {table.name} ({table.what}),"
                f" which the source {reader.label} has: nothing was copied"
            )
        plan.append((table, columns))
    return plan


_ENGINE: Final = {"postgresql": "PostgreSQL", "sqlite": "SQLite"}


def _copy_rows(
    reader: _Side,
    writer: _SQLiteSide | _PostgresSide,
    plan: list[tuple[CopyTable, list[str]]],
    counts: dict[str, int],
    progress: Callable[[CopyProgress], None] | None,
) -> tuple[dict[str, int], int]:
    """Copy every planned table; return the rows copied per table and the requests booked."""
    copied: dict[str, int] = {}
    requests = 0
    for table, columns in plan:
        total = counts[table.name]
        done = 0
        if progress is not None:
            progress(CopyProgress(table.name, 0, total))
        for rows in reader.read(table, columns):
            if table.name == "meta":
                rows = [row for row in rows if row[0] not in _ENGINE_META]
            elif table.name == "requests":
                requests += sum(int(row[columns.index("count")]) for row in rows)
            writer.write(table, columns, rows)
            done += len(rows)
            if progress is not None:
                progress(CopyProgress(table.name, done, total))
        copied[table.name] = done
    return copied, requests


def _check_counts(
    writer: _Side, copied: dict[str, int], counts: dict[str, int], label: str
) -> None:
    for name, rows in copied.items():
        if name == "meta":
            continue  # the engine's own keys stay the target's
        if rows != counts[name] or writer.count(name) != rows:
            raise StoreError(
                f"the copy into {label} read {_rows(rows)} of {name}, not {counts[name]:,}:"
                " nothing was kept; run the same command again"
            )


def _skipped_counts(reader: _Side, tables: dict[str, set[str]], target_has: bool) -> None:
    """Refuse a SQLite source whose skipped lines' counts a store without the table would lose."""
    if _SKIPPED_COUNTS not in tables or target_has:
        return
    counted = reader.skipped_counts()
    kept: dict[str, int] = {}
    for rows in reader.read(_BY_NAME["skipped"], ("reason",)):
        for (reason,) in rows:
            kept[reason] = kept.get(reason, 0) + 1
    if counted != kept:
        raise CopyRefusedError(
            f"the source {reader.label} counts {sum(counted.values()):,} skipped input lines but"
            f" keeps {sum(kept.values()):,} of them (a SQLite store keeps the first"
            " 10,000), and the target keeps counts only of the lines it holds: nothing was"
            " copied"
        )


def _empty_or_refuse(side: _Side, tables: dict[str, set[str]], label: str) -> None:
    """Refuse a target that holds anything but a new store's settings and first round."""
    order = [table.name for table in TABLES if table.name in tables]
    for name in order + sorted(set(tables) - set(order)):
        if name in _LIVE[side.engine] or name == "meta":
            continue
        rows = side.count(name)
        if rows > (1 if name == "rounds" else 0):
            raise CopyRefusedError(
                f"the target {label} is not empty ({_rows(rows)} in {name}): copy into a new"
                " file or an empty database"
            )


def _into_postgres(
    reader: _Side,
    tables: dict[str, set[str]],
    counts: dict[str, int],
    url: str,
    fields: tuple[str, ...],
    max_count: int,
    progress: Callable[[CopyProgress], None] | None,
) -> tuple[dict[str, int], int]:
    from ._postgres import PostgresStore

    label = mask_url(url)
    # The target engine makes its own tables (a database with no store yet); then everything
    # else is one transaction: a copy killed half-way leaves this empty store, nothing more.
    try:
        if _holds_store(url):
            PostgresStore(url, create=False).close()  # its own checks (and upgrade) first
        else:
            PostgresStore(url, fields=fields, max_count=max_count, create=True).close()
    except StoreError as exc:
        raise CopyRefusedError(f"cannot copy into {label}: {exc}") from None
    writer = _PostgresSide(url, write=True)
    try:
        target = writer.tables()
        try:
            writer.conn.execute("SET LOCAL lock_timeout = '30s'")
            # Writers (a harvest started on the empty store) wait; readers do not.
            writer.conn.execute(
                "LOCK TABLE "
                + ", ".join(f"{_PG_PREFIX}{name}" for name in sorted(target))
                + " IN SHARE ROW EXCLUSIVE MODE"
            )
            live = writer.conn.execute(
                f"SELECT count(*) FROM {_PG_PREFIX}holders WHERE expires > now()"
            ).fetchone()[0]
        except writer.psycopg.Error as exc:
            raise writer.error("cannot lock", exc) from None
        if live:
            raise CopyRefusedError(
                f"the target {label} is being harvested into ({live} process(es) now): copy into"
                " a database nobody uses"
            )
        _empty_or_refuse(writer, target, label)
        plan = _plan(reader, tables, counts, target, label, "postgresql")
        _skipped_counts(reader, tables, _SKIPPED_COUNTS in target)
        _clear(writer)
        copied, requests = _copy_rows(reader, writer, plan, counts, progress)
        _check_counts(writer, copied, counts, label)
        try:
            for table, columns in plan:
                name = f"{_PG_PREFIX}{table.name}"
                for column in columns:
                    sequence = writer.conn.execute(
                        "SELECT pg_get_serial_sequence(%s, %s)", (name, column)
                    ).fetchone()[0]
                    if sequence is not None:
                        # Past the ids copied: the next run, page or video gets a new one.
                        writer.conn.execute(
                            f"SELECT setval(%s, coalesce((SELECT max({column}) FROM {name}), 0)"
                            " + 1, false)",
                            (sequence,),
                        )
        except writer.psycopg.Error as exc:
            raise writer.error("cannot write to", exc) from None
        writer.commit()
        return copied, requests
    finally:
        writer.close()


def _holds_store(url: str) -> bool:
    """Tell whether the database at ``url`` holds a store's tables already."""
    side = _PostgresSide(url, write=False)
    try:
        return side._q("SELECT to_regclass(%s)", (f"{_PG_PREFIX}meta",))[0][0] is not None
    finally:
        side.close()


def _clear(writer: _SQLiteSide | _PostgresSide) -> None:
    """Empty what a new store fills for itself (settings, round 1), the engine's own keys kept."""
    keep = sorted(_ENGINE_META)
    try:
        if isinstance(writer, _PostgresSide):
            writer.conn.execute(f"DELETE FROM {_PG_PREFIX}meta WHERE key <> ALL(%s)", (keep,))
            writer.conn.execute(f"DELETE FROM {_PG_PREFIX}rounds")
        else:
            marks = ", ".join("?" * len(keep))
            writer.conn.execute(f"DELETE FROM meta WHERE key NOT IN ({marks})", keep)
            writer.conn.execute("DELETE FROM rounds")
    except Exception as exc:
        raise writer.error("cannot write to", exc) from None


def _claim_sqlite_target(path: Path) -> int:
    """Refuse a SQLite target that is not new or empty; hold its run lock while copying."""
    if path.is_dir():
        raise CopyRefusedError(f"the target {str(path)!r} is a directory: name a file in it")
    if not path.parent.is_dir():
        raise CopyRefusedError(
            f"the target {str(path)!r}: there is no directory {str(path.parent)!r}"
        )
    for suffix in ("-wal", "-journal"):
        if Path(f"{path}{suffix}").exists():
            raise CopyRefusedError(
                f"the target {str(path)!r} is open or was not closed cleanly ({path.name}{suffix}"
                " beside it): copy into a new file"
            )
    try:
        fd = _lock.acquire(path.with_name(path.name + ".lock"))
    except _lock.LockHeldError as held:
        raise CopyRefusedError(
            f"the target {str(path)!r} is being harvested into (pid {held.holder}): copy into a"
            " new file"
        ) from None
    try:
        if path.exists() and path.stat().st_size:
            side = _SQLiteSide(path, write=False)
            try:
                tables = side.tables()
                if tables and "meta" not in tables:
                    raise CopyRefusedError(
                        f"the target {str(path)!r} is an SQLite database but not a store: copy"
                        " into a new file"
                    )
                _empty_or_refuse(side, tables, repr(str(path)))
            finally:
                side.close()
    except BaseException:
        _lock.release(fd)
        raise
    return fd


def _remove_partial(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        with contextlib.suppress(FileNotFoundError):
            Path(f"{path}{suffix}").unlink()


def _into_sqlite(
    reader: _Side,
    tables: dict[str, set[str]],
    counts: dict[str, int],
    path: Path,
    fields: tuple[str, ...],
    max_count: int,
    progress: Callable[[CopyProgress], None] | None,
) -> tuple[dict[str, int], int]:
    from ._store import Store

    # Written beside the target and renamed into place once whole: a copy killed half-way
    # leaves only this file, which the same command removes and writes again.
    partial = path.with_name(path.name + _PARTIAL_SUFFIX)
    _remove_partial(partial)
    try:
        Store(partial, fields=fields, max_count=max_count).close()
        writer = _SQLiteSide(partial, label=str(path), write=True)
        try:
            target = writer.tables()
            plan = _plan(reader, tables, counts, target, repr(str(path)), "sqlite")
            _clear(writer)
            copied, requests = _copy_rows(reader, writer, plan, counts, progress)
            if _SKIPPED_COUNTS in target:
                _fill_skipped_counts(reader, writer, tables)
            _check_counts(writer, copied, counts, repr(str(path)))
            try:
                writer.conn.execute("COMMIT")
            except sqlite3.Error as exc:
                raise writer.error("cannot write to", exc) from None
        finally:
            writer.close()
        # The store's own open checks on the whole file, before it takes the target's name.
        with open_store(partial, create=False):
            pass
        os.replace(partial, path)
    except BaseException:
        _remove_partial(partial)
        raise
    return copied, requests


def _fill_skipped_counts(reader: _Side, writer: _SQLiteSide, tables: dict[str, set[str]]) -> None:
    """Give a SQLite target the source's exact counts, or count the lines a PostgreSQL kept."""
    counted = (
        reader.skipped_counts()
        if _SKIPPED_COUNTS in tables or reader.engine == "postgresql"
        else {}
    )
    try:
        writer.conn.execute(f"DELETE FROM {_SKIPPED_COUNTS}")
        writer.conn.executemany(
            f"INSERT INTO {_SKIPPED_COUNTS} (reason, count) VALUES (?, ?)", sorted(counted.items())
        )
    except sqlite3.Error as exc:
        raise writer.error("cannot write to", exc) from None
