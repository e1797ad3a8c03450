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
takes `Store.run_lock` first: an OS lock on the sidecar file ``<db>.lock`` (``flock`` on POSIX,
``msvcrt.locking`` on Windows; see `_lock`), which the OS drops when its process dies, even by
SIGKILL, so that no stale lock survives a crash.

Schema version 1 (stores made before page provenance) is migrated to the current version (4) in
place, once, in one transaction, the first time a newer version opens it: its videos keep their
bytes and get no provenance (their pages were not recorded). Version 2 (stores made before rounds
recorded whether a run read its whole input) is migrated likewise; its rounds count as read.
Version 3 (stores made before the refresh) gains the refresh's tables. A store of a newer schema
is refused.

A refresh (`tiktok_repost_async.refresher`) deletes what TikTok no longer serves without a trace:
with ``secure_delete`` on, then a checkpoint that truncates the WAL, so a removed video's bytes
are in none of the store's files; its audit (`Store.refreshes`) keeps counts and task ids only.

Bad input lines (`Store.add_skipped`) accumulate across runs; a run that re-reads the same input
calls `Store.clear_skipped` first so that its lines are not counted twice.

A lab's store may live in PostgreSQL instead (`PostgresStore`, `_postgres`; its panel rounds in
`_pg_rounds`): several harvest processes share one store and one users list there, each user
claimed by one of them at a time, and processes asking for a new round at once start one. Its
refresh (`_pg_refreshes`) runs beside those harvests and rewrites the tables it deleted from
(``VACUUM (FULL)``), PostgreSQL having no ``secure_delete``. Both engines implement `StoreLike`,
the interface harvest, status, export, diff and refresh use; `open_store` picks one from ``--db``
(a path, or a ``postgresql://`` URL).

The store has no column, table or meta key for credentials: client keys, secrets and tokens are
never written to it, so a store file can be shared with collaborators as it is.

The package's modules: `_records` (states and records), `_schema` (the SQL, the migration, the
meta checks), `_core` (the connection and transactions every part shares), `_reading`, `_rounds`
(runs and rounds; the cadence of a panel's rounds, kept in the meta table), `_lists` (a user's list
in a round, completed where a walk stopped at a known video), `_refreshes` (the refresh audit, its
tasks, deletion without trace), `_lock` (the run lock) and `_store` (`Store`: opening, life cycle,
writing), and `_copy` (`copy_store`: a store copied between engines, table by table).
"""

from __future__ import annotations

from ..errors import StoreError
from ._copy import CopyProgress, CopyRefusedError, CopyReport, copy_store
from ._core import SKIPPED_ROWS_KEPT
from ._open import open_store
from ._postgres import CLAIM_LEASE_S, PostgresStore
from ._protocol import StoreLike
from ._records import (
    FINAL_STATES,
    PageCommit,
    RoundRecord,
    RoundSchedule,
    RunRecord,
    StoreLockedError,
    StoreMismatchError,
    UserRecord,
    UserState,
)
from ._refreshes import REFRESH_DAYS, RefreshBatch, RefreshRecord
from ._schema import SCHEMA_VERSION
from ._store import Store

__all__ = [
    "CLAIM_LEASE_S",
    "FINAL_STATES",
    "REFRESH_DAYS",
    "SCHEMA_VERSION",
    "SKIPPED_ROWS_KEPT",
    "CopyProgress",
    "CopyRefusedError",
    "CopyReport",
    "PageCommit",
    "PostgresStore",
    "RefreshBatch",
    "RefreshRecord",
    "RoundRecord",
    "RoundSchedule",
    "RunRecord",
    "Store",
    "StoreError",
    "StoreLike",
    "StoreLockedError",
    "StoreMismatchError",
    "UserRecord",
    "UserState",
    "copy_store",
    "open_store",
]
