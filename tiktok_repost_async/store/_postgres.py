"""The store on PostgreSQL: a lab's server, several harvest processes sharing one users list.

`PostgresStore` keeps what a `Store` keeps, with the same meaning (raw video bytes as ``bytea``,
each page's provenance, runs, the users' states and cursors, the write-ahead request ledger), in
tables named ``tiktok_*`` of one database. It implements the part of the store interface
(`StoreLike`) that ``harvest``, ``status``, ``export``, ``diff`` and ``refresh`` use, a panel's
rounds included (`_pg_rounds`), and the refresh's part with its deletion that leaves nothing
behind (`_pg_refreshes`).

Several processes, on one machine or several, may harvest into one PostgreSQL store at once. Each
user is walked by one process at a time through a claim: a row of ``tiktok_claims`` (user,
holder, expiry) taken with one ``INSERT ... ON CONFLICT DO UPDATE ... WHERE expires < now()``,
so only a free or expired claim changes hands. A heartbeat thread on a connection of its own
renews the holder's leases; a process that dies (SIGKILL, a lost machine) stops renewing them,
and once they expire another process takes its users over, from their saved cursors. A page and
its cursor commit in one transaction, as in SQLite, and only while the claim is still the
committer's: a holder that lost its lease (stalled past it) is refused instead of walking a user
twice. The day's request count (``tiktok_requests``) is one row per UTC day shared by every
process: `book_requests` with a ``limit`` raises it only while it stays within the limit, in one
conditional upsert, so processes sharing a store share its daily quota too.

The URL's password is never shown: every message and `label` go through `mask_url`, and no
table holds the URL. psycopg 3 comes with the ``postgres`` extra.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, Final, Self, TypeVar

from .._dburl import driver_detail, import_psycopg, mask_url, pg_connect, url_password
from ..errors import StoreError
from ._frames import _StoreFrames
from ._pg_refreshes import REFRESH_TABLES, _PgRefreshes
from ._pg_rounds import _ROUND_TABLES, _PgRounds
from ._records import (
    FINAL_STATES,
    PageCommit,
    RunRecord,
    StoreMismatchError,
    UserRecord,
    UserState,
    _check_count,
    _check_day,
    _run_record,
    _utc_day,
    _utc_stamp,
    _utc_stamp_ms,
)
from ._schema import _check_fields

__all__ = ["CLAIM_LEASE_S", "PostgresStore"]

T = TypeVar("T")

logger = logging.getLogger("tiktok_repost_async.store")

#: How long a claim on a user lasts without its holder's heartbeat (seconds): how long the users
#: of a dead process wait before another takes them over. The heartbeat renews it every third.
CLAIM_LEASE_S: Final = 60.0
# One lock key for making the tables, so that processes starting at once on a new database do
# not race in PostgreSQL's catalogue (CREATE TABLE IF NOT EXISTS is not safe against that).
_SCHEMA_LOCK: Final = 0x7469_6B74_6F6C  # "tiktol"
# 2: round 1's tables plus those of the rounds and the refresh; a version-1 store gains them.
_SCHEMA_VERSION: Final = 2
_KIND: Final = "tiktok-repost-async store"
_SKIPPED_RAW_CHARS: Final = 1_000
_DEADLOCK_TRIES: Final = 5
_FINAL_VALUES: Final = tuple(sorted(state.value for state in FINAL_STATES))
_STATE_CHECK: Final = ", ".join(f"'{s.value}'" for s in UserState)
_USER_COLUMNS: Final = "username, state, cursor, pages, videos, requests, error"

_TABLES: Final = (
    "CREATE TABLE IF NOT EXISTS tiktok_meta (key text PRIMARY KEY, value text NOT NULL)",
    f"""CREATE TABLE IF NOT EXISTS tiktok_users (
        username   text PRIMARY KEY,
        seq        bigserial UNIQUE,  -- input order (gaps where two processes raced)
        state      text NOT NULL DEFAULT 'pending' CHECK (state IN ({_STATE_CHECK})),
        cursor     bigint NOT NULL DEFAULT 0,
        pages      bigint NOT NULL DEFAULT 0,
        videos     bigint NOT NULL DEFAULT 0,
        requests   bigint NOT NULL DEFAULT 0,
        error      text,
        updated_at text NOT NULL,
        round      integer NOT NULL DEFAULT 1,
        partial    integer NOT NULL DEFAULT 0)""",
    """CREATE TABLE IF NOT EXISTS tiktok_rounds (
        number integer PRIMARY KEY, started_at text NOT NULL,
        stop_at_known integer NOT NULL DEFAULT 0, input_open integer NOT NULL DEFAULT 0)""",
    """CREATE TABLE IF NOT EXISTS tiktok_runs (
        id bigserial PRIMARY KEY, started_at text NOT NULL, ended_at text,
        version text NOT NULL, fields text NOT NULL, max_count integer NOT NULL,
        requests bigint NOT NULL DEFAULT 0, pages bigint NOT NULL DEFAULT 0,
        videos bigint NOT NULL DEFAULT 0, outcome text, round integer NOT NULL DEFAULT 1,
        holder text)""",
    """CREATE TABLE IF NOT EXISTS tiktok_pages (
        id bigserial PRIMARY KEY, run_id bigint REFERENCES tiktok_runs (id),
        username text NOT NULL, cursor bigint NOT NULL, next_cursor bigint NOT NULL,
        has_more integer NOT NULL, videos integer NOT NULL, log_id text NOT NULL,
        fetched_at text NOT NULL, round integer NOT NULL DEFAULT 1)""",
    # id: the API's order within a user is the insertion order, as SQLite's rowid.
    """CREATE TABLE IF NOT EXISTS tiktok_videos (
        id bigserial PRIMARY KEY,
        username text NOT NULL REFERENCES tiktok_users (username),
        round integer NOT NULL DEFAULT 1, video_id text NOT NULL, data bytea NOT NULL,
        page_id bigint REFERENCES tiktok_pages (id), UNIQUE (username, round, video_id))""",
    "CREATE TABLE IF NOT EXISTS tiktok_requests (day text PRIMARY KEY,"
    " count bigint NOT NULL CHECK (count >= 0))",
    # Every process reads the same input: a line is kept once, whoever read it first.
    "CREATE TABLE IF NOT EXISTS tiktok_skipped (line_no bigint PRIMARY KEY, raw text NOT NULL,"
    " reason text NOT NULL)",
    # Who is harvesting now (renewed by the heartbeat), and which user each one walks.
    "CREATE TABLE IF NOT EXISTS tiktok_holders (holder text PRIMARY KEY,"
    " expires timestamptz NOT NULL)",
    "CREATE TABLE IF NOT EXISTS tiktok_claims (username text PRIMARY KEY, holder text NOT NULL,"
    " expires timestamptz NOT NULL)",
    *_ROUND_TABLES,
    *REFRESH_TABLES,
)

# A free claim, an expired one, or our own: taken (or renewed); another live holder's: not.
_CLAIM: Final = (
    "INSERT INTO tiktok_claims AS c (username, holder, expires)"
    " SELECT n, %(holder)s, now() + %(lease)s * interval '1 second'"
    " FROM unnest(%(names)s::text[]) AS n"
    " ON CONFLICT (username) DO UPDATE SET holder = excluded.holder, expires = excluded.expires"
    " WHERE c.expires < now() OR c.holder = excluded.holder RETURNING c.username"
)
# The day's row raised only while it stays within the limit: the row lock of the upsert orders
# concurrent bookings, and no two can both take the last request. No row back: refused.
_BOOK_WITHIN: Final = (
    "INSERT INTO tiktok_requests AS d (day, count) VALUES (%s, %s)"
    " ON CONFLICT (day) DO UPDATE SET count = d.count + excluded.count"
    " WHERE d.count + excluded.count <= %s RETURNING d.count"
)
_BOOK: Final = (
    "INSERT INTO tiktok_requests AS d (day, count) VALUES (%s, %s)"
    " ON CONFLICT (day) DO UPDATE SET count = d.count + excluded.count"
)


def pg_text(text: str) -> str:
    """Return ``text`` as PostgreSQL's ``text`` can hold it: a NUL character written ``\\x00``.

    SQLite keeps a NUL inside text; PostgreSQL refuses the whole value. Only free text can hold
    one (an input line that was skipped, an error's words): a username or an id never does.

    :param text: the text to store.
    """
    return text.replace("\x00", "\\x00") if "\x00" in text else text


class PostgresStore(_PgRounds, _PgRefreshes, _StoreFrames):
    """Open (or create) a harvest store in a PostgreSQL database that several processes share."""

    #: Several processes may harvest into it at once (claims, a shared day's count).
    shared: Final = True

    def __init__(
        self,
        url: str,
        *,
        fields: Sequence[str] | None = None,
        max_count: int | None = None,
        create: bool = True,
        clock: Callable[[], float] = time.time,
        lease: float = CLAIM_LEASE_S,
    ) -> None:
        """Connect to the database at ``url``; make the store's tables there if allowed.

        :param url: ``postgresql://user[:password]@host[:port]/database``; without a password
            libpq reads ``PGPASSWORD`` or ``~/.pgpass``. The password never appears in a
            message, a repr or the store.
        :param fields: the video fields a new store is made for; an existing store must match
            (None: take the store's own).
        :param max_count: the page size a new store is made for; an existing store must match
            (None: take the store's own).
        :param create: make the tables when the database has none (False: that is an error).
        :param clock: the wall clock whose UTC day the request ledger counts.
        :param lease: seconds a claim on a user lasts without the heartbeat (`CLAIM_LEASE_S`).
        """
        self._psycopg = import_psycopg(StoreError, "a postgresql:// store")
        self._url = url.strip()
        self._password = url_password(self._url)
        self._label = mask_url(self._url)
        self._clock = clock
        if not lease > 0:
            raise ValueError(f"lease must be a positive number of seconds, not {lease!r}")
        self._lease = float(lease)
        self._host = socket.gethostname() or "localhost"
        # Readable in status and the runs table, unique even for two stores in one process.
        self._holder = f"{self._host}:pid {os.getpid()}:{uuid.uuid4().hex[:8]}"
        # Whether a holder of this machine whose process is gone is known dead at once, rather
        # than after its lease (a killed run cured by the same command without a wait).
        self._reap_local = True
        self._run_id: int | None = None
        self._running = False
        self._beat: threading.Thread | None = None
        self._beat_stop = threading.Event()
        self._conn: Any = None
        wanted = _check_fields(fields)
        if max_count is not None:
            _check_count("max_count", max_count)
            if max_count == 0:
                raise ValueError("max_count must be a positive int, not 0")
        self._conn = self._connect()
        try:
            self._fields, self._max_count = self._open(wanted, max_count, create)
            # Names this process claimed in this run: a second mention is a duplicate.
            self._conn.execute(
                "CREATE TEMP TABLE IF NOT EXISTS claimed (username text PRIMARY KEY)"
            )
        except self._psycopg.Error as exc:
            self.close()
            raise self._error("cannot open", exc) from None
        except BaseException:
            self.close()
            raise

    def __repr__(self) -> str:
        return f"<PostgresStore {self._label}>"

    # -- connection -------------------------------------------------------------------------

    def _error(self, what: str, exc: BaseException) -> StoreError:
        detail = driver_detail(exc, self._password)
        return StoreError(f"{what} the store {self._label}: {detail}")

    def _connect(self) -> Any:
        try:
            return pg_connect(self._psycopg, self._url, "tiktok-reposts store")
        except self._psycopg.Error as exc:
            raise self._error("cannot connect to", exc) from None

    @property
    def _db(self) -> Any:
        if self._conn is None:
            raise StoreError(f"the store {self._label} is closed")
        return self._conn

    def _tx(self, work: Callable[[Any], T]) -> T:
        """Run ``work`` in one transaction; try again after a deadlock, which rolled it back."""
        conn = self._db
        for attempt in range(_DEADLOCK_TRIES):
            try:
                with conn.transaction():
                    return work(conn)
            except self._psycopg.errors.DeadlockDetected:
                # Two processes adding overlapping batches of names: one is chosen to roll back.
                if attempt == _DEADLOCK_TRIES - 1:
                    raise
                time.sleep(0.01 * (attempt + 1))
            except StoreError:
                raise
            except self._psycopg.Error as exc:
                raise self._error("cannot write to", exc) from None
        raise AssertionError("unreachable")

    def _read(self, sql: str, params: Sequence[object] = ()) -> list[Any]:
        try:
            rows: list[Any] = self._db.execute(sql, params).fetchall()
        except self._psycopg.Error as exc:
            raise self._error("cannot read", exc) from None
        return rows

    def _open(
        self, fields: tuple[str, ...] | None, max_count: int | None, create: bool
    ) -> tuple[tuple[str, ...], int]:
        conn = self._db
        found = conn.execute("SELECT to_regclass('tiktok_meta')").fetchone()[0]
        if found is None:
            if not create or fields is None or max_count is None:
                raise StoreError(
                    f"the database {self._label} holds no harvest store yet: nothing has been"
                    " harvested into it (a harvest with this --db creates it); check the URL"
                )
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
                for statement in _TABLES:
                    conn.execute(statement)
                stamp = _utc_stamp(self._clock())
                conn.execute(
                    "INSERT INTO tiktok_meta (key, value) VALUES ('kind', %s),"
                    " ('schema_version', %s), ('fields', %s), ('max_count', %s),"
                    " ('created_at', %s) ON CONFLICT DO NOTHING",
                    (_KIND, str(_SCHEMA_VERSION), ",".join(fields), str(max_count), stamp),
                )
                conn.execute(
                    "INSERT INTO tiktok_rounds (number, started_at) VALUES (1, %s)"
                    " ON CONFLICT DO NOTHING",
                    (stamp,),
                )
        meta = dict(conn.execute("SELECT key, value FROM tiktok_meta").fetchall())
        version = meta.get("schema_version")
        if meta.get("kind") != _KIND or version is None or not version.isdigit():
            raise StoreError(f"the database {self._label} has tiktok_meta but no harvest store")
        if int(version) > _SCHEMA_VERSION:
            raise StoreMismatchError(
                f"{self._label} was written by a newer version of tiktok_repost_async (store"
                f" schema {version}): upgrade tiktok-repost-async, or use another --db"
            )
        if int(version) < _SCHEMA_VERSION:
            self._upgrade()
        stored = tuple(f for f in meta.get("fields", "").split(",") if f)
        stored_max = int(meta.get("max_count", "0"))
        if fields is not None and set(fields) != set(stored):
            raise StoreMismatchError(
                f"{self._label} was harvested with fields {','.join(stored)}, not"
                f" {','.join(fields)}; videos of one store must have the same fields: pass the"
                " same --fields, or use another --db"
            )
        if max_count is not None and max_count != stored_max:
            raise StoreMismatchError(
                f"{self._label} was harvested with max_count {stored_max}, not {max_count}; a"
                " resumed harvest keeps its page size: pass the same max_count, or use another"
                " --db"
            )
        return stored, stored_max

    def _upgrade(self) -> None:
        """Bring an older store to this schema: its missing tables made, its version raised."""
        conn = self._db
        with conn.transaction():
            # Under the schema lock, re-read: of processes opening one old store at once, the
            # first upgrades it and the others find it done (every statement is idempotent too).
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            for statement in _TABLES:
                conn.execute(statement)
            conn.execute(
                "UPDATE tiktok_meta SET value = %s WHERE key = 'schema_version'"
                " AND value::integer < %s",
                (str(_SCHEMA_VERSION), _SCHEMA_VERSION),
            )

    # -- life cycle -------------------------------------------------------------------------

    @property
    def path(self) -> str:
        """Return the store's URL with its password masked (what names it to a person)."""
        return self._label

    @property
    def label(self) -> str:
        """Return the store's URL with its password masked."""
        return self._label

    @property
    def holder(self) -> str:
        """Return the name this store's claims are held under (host, pid and a nonce)."""
        return self._holder

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
        """Give up this process's claims and close the connection."""
        if self._conn is None:
            return
        try:
            self.release_run_lock()
        finally:
            conn, self._conn = self._conn, None
            with contextlib.suppress(Exception):
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

    # -- the run: holder, heartbeat, claims ----------------------------------------------------

    def acquire_run_lock(self) -> None:
        """Join the processes harvesting into this store: register, and start the heartbeat.

        Unlike SQLite's run lock nothing is exclusive: each user is claimed as it is read.
        """
        if self._running:
            raise StoreError(f"this store already runs a harvest on {self._label}")

        def work(conn: Any) -> None:
            conn.execute(
                "INSERT INTO tiktok_holders (holder, expires) VALUES"
                " (%s, now() + %s * interval '1 second') ON CONFLICT (holder) DO UPDATE"
                " SET expires = excluded.expires",
                (self._holder, self._lease),
            )
            conn.execute("DELETE FROM tiktok_holders WHERE expires < now() - interval '1 day'")

        self._tx(work)
        self._reap()
        self._db.execute("TRUNCATE claimed")
        self._running = True
        self._beat_stop.clear()
        self._beat = threading.Thread(target=self._heartbeat, name="tiktok-claims", daemon=True)
        self._beat.start()

    def _reap(self) -> None:
        """End the leases of this machine's holders whose processes are gone (killed)."""
        if not self._reap_local:
            return
        prefix = f"{self._host}:pid "
        gone = []
        for (holder,) in self._read(
            "SELECT holder FROM tiktok_holders WHERE expires > now() AND holder <> %s"
            " AND left(holder, %s) = %s",
            (self._holder, len(prefix), prefix),
        ):
            pid = str(holder)[len(prefix) :].partition(":")[0]
            if pid.isdigit() and not _alive(int(pid)):
                gone.append(str(holder))
        if gone:

            def work(conn: Any) -> None:
                for table in ("tiktok_holders", "tiktok_claims"):
                    conn.execute(
                        f"UPDATE {table} SET expires = now() - interval '1 second'"
                        " WHERE holder = ANY(%s)",
                        (gone,),
                    )

            self._tx(work)

    def _heartbeat(self) -> None:
        # A connection of its own: the writer thread's may be inside a long transaction.
        conn = None
        while not self._beat_stop.wait(self._lease / 3):
            try:
                if conn is None or conn.closed:
                    conn = pg_connect(self._psycopg, self._url, "tiktok-reposts heartbeat")
                with conn.transaction():
                    conn.execute(
                        "UPDATE tiktok_holders SET expires = now() + %s * interval '1 second'"
                        " WHERE holder = %s",
                        (self._lease, self._holder),
                    )
                    # Rows locked in the order a page's commit locks them (by name), so that
                    # the two never wait on each other in a circle.
                    conn.execute(
                        "UPDATE tiktok_claims SET expires = now() + %s * interval '1 second'"
                        " WHERE username IN (SELECT username FROM tiktok_claims WHERE holder = %s"
                        " ORDER BY username FOR UPDATE) AND holder = %s",
                        (self._lease, self._holder, self._holder),
                    )
            except Exception as exc:
                # The next beat tries again; a lease that lapses meanwhile makes a commit on its
                # user refuse (see commit_pages), never a user walked twice.
                logger.warning("%s", self._error("cannot renew the claims in", exc))
                if conn is not None:
                    with contextlib.suppress(Exception):
                        conn.close()
                conn = None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def release_run_lock(self) -> None:
        """Leave the harvest: stop the heartbeat; the users still held go free at once."""
        if not self._running:
            return
        self._running = False
        self._beat_stop.set()
        beat, self._beat = self._beat, None
        if beat is not None:
            beat.join()
        if self._conn is None:
            return

        def work(conn: Any) -> None:
            # Walks cut short (a stop, an error) leave their users to whoever runs on: their
            # claims end now, and a harvest still running takes them over from their cursors.
            conn.execute(
                "UPDATE tiktok_claims SET expires = now() - interval '1 second' WHERE holder = %s",
                (self._holder,),
            )
            conn.execute("DELETE FROM tiktok_holders WHERE holder = %s", (self._holder,))

        with contextlib.suppress(StoreError):
            self._tx(work)

    @property
    def holds_run_lock(self) -> bool:
        """Tell whether this store takes part in a harvest now."""
        return self._running

    def claim_users(
        self, usernames: Sequence[str]
    ) -> list[tuple[str, UserState, int] | str | None]:
        """Add names as pending and claim them; give None for a duplicate, and the holder's
        name for a user another live process walks.

        :param usernames: the names, as read from the input (each a non-empty str); a name given
            twice gives None the second time.
        """
        names = list(usernames)
        for name in names:
            if not isinstance(name, str) or not name:
                raise ValueError(f"a username must be a non-empty str, not {name!r}")
        unique = list(dict.fromkeys(names))
        stamp = _utc_stamp(self._clock())

        def work(conn: Any) -> tuple[set[str], set[str], dict[str, tuple[Any, ...]]]:
            conn.execute(
                "INSERT INTO tiktok_users (username, updated_at, round)"
                " SELECT n, %s, (SELECT coalesce(max(number), 1) FROM tiktok_rounds)"
                " FROM unnest(%s::text[]) WITH ORDINALITY AS t(n, o) ORDER BY o"
                " ON CONFLICT DO NOTHING",
                (stamp, unique),
            )
            seen = {
                row[0]
                for row in conn.execute(
                    "SELECT username FROM claimed WHERE username = ANY(%s)", (unique,)
                )
            }
            fresh = [name for name in unique if name not in seen]
            taken = {
                row[0]
                for row in conn.execute(
                    _CLAIM, {"holder": self._holder, "lease": self._lease, "names": fresh}
                )
            }
            conn.execute(
                "INSERT INTO claimed SELECT unnest(%s::text[]) ON CONFLICT DO NOTHING",
                (list(taken),),
            )
            # A user of an earlier round joins this one (see _pg_rounds), before it is read.
            self._join_round(conn, sorted(taken), unique, stamp)
            rows = {
                row[0]: row
                for row in conn.execute(
                    "SELECT u.username, u.state, u.cursor, c.holder FROM tiktok_users AS u"
                    " LEFT JOIN tiktok_claims AS c USING (username)"
                    " WHERE u.username = ANY(%s)",
                    (unique,),
                )
            }
            return seen, taken, rows

        seen, taken, rows = self._tx(work)
        result: list[tuple[str, UserState, int] | str | None] = []
        for name in names:
            if name in seen:
                result.append(None)
                continue
            if name not in taken:
                result.append(str(rows[name][3] or "another process"))
                continue
            seen.add(name)
            _, state, cursor, _ = rows[name]
            result.append((name, UserState(state), int(cursor)))
        return result

    def release_claims(self, usernames: Collection[str]) -> None:
        """Let go of this process's claims on ``usernames`` (their walks ended, or never began).

        :param usernames: the users whose claims to let go of.
        """
        names = list(usernames)
        if names:
            self._tx(
                lambda conn: conn.execute(
                    "DELETE FROM tiktok_claims WHERE holder = %s AND username = ANY(%s)",
                    (self._holder, names),
                )
            )

    def orphaned_users(self) -> tuple[list[str], int]:
        """Return the unfinished users whose holder died (their claims expired), and how many
        users other live processes hold now."""
        self._reap()
        rows = self._read(
            "SELECT c.username, c.expires < now() FROM tiktok_claims AS c"
            " JOIN tiktok_users AS u USING (username)"
            " WHERE c.holder <> %s AND u.state <> ALL(%s) ORDER BY u.seq",
            (self._holder, list(_FINAL_VALUES)),
        )
        expired = [str(name) for name, gone in rows if gone]
        return expired, len(rows) - len(expired)

    # -- runs and the round --------------------------------------------------------------------

    def begin_run(self, version: str) -> int:
        """Record the start of a harvest run; later pages and requests are booked to it.

        :param version: the package version that runs, recorded with the run.
        """
        if not isinstance(version, str) or not version:
            raise ValueError(f"version must be a non-empty str, not {version!r}")
        if self._run_id is not None:
            raise StoreError(f"run {self._run_id} of {self._label} has not ended")

        def work(conn: Any) -> int:
            # Runs of holders whose heartbeat stopped are the runs of dead processes.
            conn.execute(
                "UPDATE tiktok_runs SET outcome = 'killed' WHERE ended_at IS NULL AND outcome IS"
                " NULL AND holder IS DISTINCT FROM %s AND NOT EXISTS (SELECT 1 FROM"
                " tiktok_holders AS h WHERE h.holder = tiktok_runs.holder AND h.expires > now())",
                (self._holder,),
            )
            row = conn.execute(
                "INSERT INTO tiktok_runs (started_at, version, fields, max_count, holder, round)"
                " VALUES (%s, %s, %s, %s, %s, (SELECT coalesce(max(number), 1) FROM"
                " tiktok_rounds)) RETURNING id",
                (
                    _utc_stamp(self._clock()),
                    version,
                    ",".join(self._fields),
                    self._max_count,
                    self._holder,
                ),
            ).fetchone()
            return int(row[0])

        self._run_id = self._tx(work)
        return self._run_id

    def end_run(self, outcome: str) -> None:
        """Record how the current run ended (``finished``, ``stopped: quota`` ...), if one runs.

        :param outcome: how the run ended: ``finished``, ``interrupted``, ``stopped: <reason>`` ...
        """
        run_id, self._run_id = self._run_id, None
        if run_id is not None:
            self._tx(
                lambda conn: conn.execute(
                    "UPDATE tiktok_runs SET ended_at = %s, outcome = %s WHERE id = %s",
                    (_utc_stamp(self._clock()), outcome, run_id),
                )
            )

    @property
    def run_id(self) -> int | None:
        """Return the id of the run in progress through this store, or None."""
        return self._run_id

    def runs(self, limit: int | None = None) -> list[RunRecord]:
        """Return the runs, newest first, at most ``limit`` of them.

        :param limit: the most runs to return (None: all).
        """
        if limit is not None:
            _check_count("limit", limit)
        rows = self._read(
            "SELECT id, started_at, ended_at, version, fields, max_count, requests, pages, videos,"
            " outcome FROM tiktok_runs ORDER BY id DESC LIMIT %s",
            (limit,),
        )
        return [_run_record(tuple(row)) for row in rows]

    def run_count(self) -> int:
        """Return how many runs this store has recorded."""
        return int(self._read("SELECT count(*) FROM tiktok_runs")[0][0])

    # -- the ledger ------------------------------------------------------------------------------

    def requests_on(self, day: str | None = None) -> int:
        """Return the requests recorded for a UTC day 'YYYY-MM-DD' (today by default).

        :param day: the UTC day 'YYYY-MM-DD' (None: today).
        """
        when = _check_day(day) if day is not None else _utc_day(self._clock())
        rows = self._read("SELECT count FROM tiktok_requests WHERE day = %s", (when,))
        return int(rows[0][0]) if rows else 0

    def book_requests(self, counts: Mapping[str, int], *, limit: int | None = None) -> bool:
        """Count requests about to be sent, per user and in today's ledger, in one transaction.

        :param counts: requests per username.
        :param limit: the day's budget: book nothing and return False if the day's count (every
            process's) would pass it. None: book without a check.
        """
        for count in counts.values():
            _check_count("requests", count)
        total = sum(counts.values())
        day = _utc_day(self._clock())

        def work(conn: Any) -> bool:
            if total:
                if limit is not None:
                    if total > limit:
                        return False
                    if conn.execute(_BOOK_WITHIN, (day, total, limit)).fetchone() is None:
                        return False
                else:
                    conn.execute(_BOOK, (day, total))
                self._count_run(conn, total)
            conn.cursor().executemany(
                "UPDATE tiktok_users SET requests = requests + %s WHERE username = %s",
                [(count, name) for name, count in counts.items() if count],
            )
            return True

        return self._tx(work)

    def _count_run(self, conn: Any, total: int) -> None:
        if self._run_id is not None:
            conn.execute(
                "UPDATE tiktok_runs SET requests = greatest(requests + %s, 0) WHERE id = %s",
                (total, self._run_id),
            )

    def refund_requests(self, counts: Mapping[str, int], *, day: str) -> None:
        """Take back booked requests that never reached the API, per user and from a day's ledger.

        :param counts: requests per username.
        :param day: the UTC day 'YYYY-MM-DD' they were booked on.
        """
        when = _check_day(day)
        for count in counts.values():
            _check_count("requests", count)
        total = sum(counts.values())

        def work(conn: Any) -> None:
            conn.cursor().executemany(
                "UPDATE tiktok_users SET requests = greatest(requests - %s, 0) WHERE username = %s",
                [(count, name) for name, count in counts.items() if count],
            )
            if total:
                conn.execute(
                    "UPDATE tiktok_requests SET count = greatest(count - %s, 0) WHERE day = %s",
                    (total, when),
                )
                self._count_run(conn, -total)

        self._tx(work)

    # -- writing ---------------------------------------------------------------------------------

    def commit_pages(self, pages: Sequence[PageCommit]) -> list[int]:
        """Commit several pages in one transaction (all or none); return each one's new videos.

        A page commits only while this process holds its user's claim (or holds none while no
        harvest runs through it, as a Python caller writing by hand).

        :param pages: the pages, each with its user, videos, next cursor and provenance
            (`PageCommit`).
        """
        for page in pages:
            _check_count("requests", page.requests)
            if not isinstance(page.next_cursor, int) or isinstance(page.next_cursor, bool):
                raise TypeError(f"next_cursor must be an int, not {page.next_cursor!r}")
        rows = [_page_rows(page) for page in pages]
        now = self._clock()
        stamp = _utc_stamp(now)

        def work(conn: Any) -> list[int]:
            if self._running:
                names = sorted({page.username for page in pages})
                held = {
                    row[0]
                    for row in conn.execute(
                        "SELECT username FROM tiktok_claims WHERE holder = %s"
                        " AND username = ANY(%s) ORDER BY username FOR UPDATE",
                        (self._holder, names),
                    )
                }
                lost = [name for name in names if name not in held]
                if lost:
                    raise StoreError(
                        f"this harvest lost its claim on {lost[0]!r} in {self._label} (its lease"
                        f" of {self._lease:g} s ran out: was the process stalled?); another"
                        " process walks it on. Run the same command again"
                    )
            added: list[int] = []
            for page, (ids, data) in zip(pages, rows, strict=True):
                # The page and its videos belong to the round its user is walked in.
                found = conn.execute(
                    "INSERT INTO tiktok_pages (run_id, username, cursor, next_cursor, has_more,"
                    " videos, log_id, fetched_at, round) SELECT %s, %s, %s, %s, %s, %s, %s, %s,"
                    " round FROM tiktok_users WHERE username = %s RETURNING id, round",
                    (
                        self._run_id,
                        page.username,
                        page.cursor,
                        page.next_cursor,
                        int(page.has_more),
                        len(page.videos),
                        page.log_id or "",
                        _utc_stamp_ms(page.fetched_at or now),
                        page.username,
                    ),
                ).fetchone()
                if found is None:
                    raise StoreError(f"unknown user {page.username!r}: claim it first")
                page_id, round_ = found
                count = 0
                if ids:
                    # One statement a page; the bytes go in as they came, never re-encoded, and
                    # in binary (%b): text would escape every byte of 100 KB on both sides.
                    count = conn.execute(
                        "INSERT INTO tiktok_videos (username, round, video_id, data, page_id)"
                        " SELECT %s, %s, v, d, %s FROM unnest(%b::text[], %b::bytea[])"
                        " WITH ORDINALITY AS t(v, d, o) ORDER BY o ON CONFLICT DO NOTHING",
                        (page.username, round_, page_id, ids, data),
                    ).rowcount
                state = UserState.PENDING if page.has_more else UserState.DONE
                updated = conn.execute(
                    "UPDATE tiktok_users SET cursor = %s, pages = pages + 1,"
                    " videos = videos + %s, requests = requests + %s, state = %s, error = NULL,"
                    " updated_at = %s WHERE username = %s",
                    (page.next_cursor, count, page.requests, state.value, stamp, page.username),
                ).rowcount
                if updated != 1:
                    raise StoreError(f"unknown user {page.username!r}: claim it first")
                added.append(max(count, 0))
            total = sum(page.requests for page in pages)
            if total:
                conn.execute(_BOOK, (_utc_day(now), total))
                self._count_run(conn, total)
            if self._run_id is not None:
                conn.execute(
                    "UPDATE tiktok_runs SET pages = pages + %s, videos = videos + %s WHERE id = %s",
                    (len(pages), sum(added), self._run_id),
                )
            return added

        return self._tx(work)

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
        return self.commit_pages([PageCommit(username, videos, next_cursor, has_more, requests)])[0]

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
            raise ValueError(f"finish_user needs a final state or FAILED, not {state.value}")
        if partial and state is not UserState.DONE:
            raise ValueError(f"only a done walk can be partial, not a {state.value} one")
        _check_count("requests", requests)
        now = self._clock()

        def work(conn: Any) -> None:
            updated = conn.execute(
                "UPDATE tiktok_users SET state = %s, error = %s, requests = requests + %s,"
                " updated_at = %s, partial = %s WHERE username = %s",
                (state.value, error, requests, _utc_stamp(now), int(partial), username),
            ).rowcount
            if updated != 1:
                raise StoreError(f"unknown user {username!r}: claim it first")
            if requests:
                conn.execute(_BOOK, (_utc_day(now), requests))
                self._count_run(conn, requests)

        self._tx(work)

    def add_skipped(self, line_no: int, raw: str, reason: str) -> None:
        """Record a bad input line (once, whichever process read it first).

        :param line_no: the line's number in the input, from 1.
        :param raw: the line as read (its first 1,000 characters are kept).
        :param reason: why it was skipped, for people (``blank line``, ``duplicate`` ...).
        """
        self._tx(
            lambda conn: conn.execute(
                "INSERT INTO tiktok_skipped (line_no, raw, reason) VALUES (%s, %s, %s)"
                " ON CONFLICT DO NOTHING",
                (line_no, pg_text(raw[:_SKIPPED_RAW_CHARS]), pg_text(reason)),
            )
        )

    def clear_skipped(self) -> None:
        """Forget the bad input lines, unless another harvest is running (it reads them too)."""

        def work(conn: Any) -> None:
            conn.execute(
                "DELETE FROM tiktok_skipped WHERE NOT EXISTS (SELECT 1 FROM tiktok_holders"
                " WHERE holder <> %s AND expires > now())",
                (self._holder,),
            )

        self._tx(work)

    # -- reading ---------------------------------------------------------------------------------

    def skipped_counts(self) -> dict[str, int]:
        """Return how many input lines were skipped, per reason."""
        rows = self._read(
            "SELECT reason, count(*) FROM tiktok_skipped GROUP BY reason ORDER BY reason"
        )
        return {str(reason): int(count) for reason, count in rows}

    def skipped(self, limit: int = 100) -> list[tuple[int, str, str]]:
        """Return up to `limit` kept skipped lines as (line_no, raw, reason), in input order.

        :param limit: the most lines to return.
        """
        _check_count("limit", limit)
        rows = self._read(
            "SELECT line_no, raw, reason FROM tiktok_skipped ORDER BY line_no LIMIT %s", (limit,)
        )
        return [(int(n), str(raw), str(reason)) for n, raw, reason in rows]

    def state_counts(self) -> dict[UserState, int]:
        """Return how many users are in each state (every state present, 0 when none)."""
        counts = dict.fromkeys(UserState, 0)
        for state, count in self._read("SELECT state, count(*) FROM tiktok_users GROUP BY state"):
            counts[UserState(state)] = int(count)
        return counts

    def video_count(self) -> int:
        """Return the observations of videos stored."""
        return int(self._read("SELECT count(*) FROM tiktok_videos")[0][0])

    def user(self, username: str) -> UserRecord | None:
        """Return one user's record, or None if the store does not know the name.

        :param username: the user's name as stored.
        """
        rows = self._read(
            f"SELECT {_USER_COLUMNS} FROM tiktok_users WHERE username = %s", (username,)
        )
        return _record(rows[0]) if rows else None

    def failed_users(self, limit: int | None = None) -> list[UserRecord]:
        """Return failed users in input order, at most `limit` of them.

        :param limit: the most users to return (None: all).
        """
        return self.users_in(UserState.FAILED, limit)

    def users_in(self, state: UserState, limit: int | None = None) -> list[UserRecord]:
        """Return the users in ``state`` in input order, at most ``limit`` of them.

        :param state: the state.
        :param limit: the most users to return (None: all).
        """
        if limit is not None:
            _check_count("limit", limit)
        rows = self._read(
            f"SELECT {_USER_COLUMNS} FROM tiktok_users WHERE state = %s ORDER BY seq LIMIT %s",
            (UserState(state).value, limit),
        )
        return [_record(row) for row in rows]

    def iter_users(self, states: Collection[UserState] | None = None) -> Iterator[UserRecord]:
        """Stream user records in input order, optionally only those in the given states.

        :param states: only users in these states (None: every user).
        """
        wanted = (
            [s.value for s in UserState] if states is None else [UserState(s).value for s in states]
        )
        for row in self._stream(
            f"SELECT {_USER_COLUMNS} FROM tiktok_users WHERE state = ANY(%s) ORDER BY seq",
            (wanted,),
            1000,
        ):
            yield _record(row)

    def _stream(self, sql: str, params: Sequence[object], batch: int) -> Iterator[Any]:
        # A server-side cursor: ten million rows come batch by batch, not all at once.
        conn = self._db
        try:
            with (
                conn.transaction(),
                conn.cursor(name=f"tiktok_{uuid.uuid4().hex[:12]}") as cur,
            ):
                cur.itersize = batch
                cur.execute(sql, params)
                while rows := cur.fetchmany(batch):
                    yield from rows
        except self._psycopg.Error as exc:
            raise self._error("cannot read", exc) from None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # someone else's process: alive
    return True


def _record(row: Sequence[Any]) -> UserRecord:
    username, state, cursor, pages, videos, requests, error = row
    return UserRecord(
        str(username), UserState(state), int(cursor), int(pages), int(videos), int(requests), error
    )


def _page_rows(page: PageCommit) -> tuple[list[str], list[bytes]]:
    ids: list[str] = []
    data: list[bytes] = []
    for video_id, raw in page.videos:
        if not isinstance(video_id, int) or isinstance(video_id, bool):
            raise TypeError(f"a video id must be an int, not {video_id!r}")
        if not isinstance(raw, bytes | bytearray | memoryview):
            raise TypeError(f"video data must be bytes, not {type(raw).__name__}")
        if not len(raw):
            raise ValueError(f"video data of {video_id} is empty")
        ids.append(str(video_id))
        data.append(bytes(raw))
    return ids, data
