"""The refresh on a PostgreSQL store: its audit, batches and tasks; deletion that leaves nothing.

`_PgRefreshes` gives `PostgresStore` what `refresher.Refresher` asks of a store, with the meaning
of the SQLite store's refresh (`_refreshes`): the audit tables ``tiktok_refreshes``,
``tiktok_refresh_tasks`` and ``tiktok_refresh_ids`` mirror ``refreshes``, ``refresh_tasks`` and
``refresh_ids`` column for column; the batches of ids are fixed when a refresh begins and each
batch's task id is stored before it is polled, so a kill at any instant, then the same command,
polls the same tasks and deletes only what a task reported gone.

Harvests may run on the store meanwhile (they hold claims, not a lock of the whole store):

- One refresh at a time: a refresh holds a session-level advisory lock on the database while it
  runs (`acquire_refresh_lock`); the server drops it with the connection, even after SIGKILL.
- The batches are taken under ``LOCK TABLE tiktok_pages, tiktok_videos IN SHARE MODE``: page
  commits in flight finish first and new ones wait the moment it takes, so every page up to the
  refresh's ``max_page_id`` is committed and every video id stored then is in a batch. Only
  observations of those pages are deleted; a video that a harvest stores again after the refresh
  began (a later page, a higher id) was not checked and is kept for the next refresh.
- A deletion locks the rows of the users it touches (by name, as a page commit does), so a count
  of videos never misses a page committed beside it; a deadlock rolls the whole transaction
  back and it runs again.
- A user found gone (``--users``) whose walk a live harvest holds right now is not deleted under
  its feet: `refresh_user_checked` raises `StoreLockedError`, and the refresh checks that user
  again in its next run.

PostgreSQL has no ``secure_delete``: a deleted row stays in its table's file (and a large value
in the TOAST table) until the table is rewritten. After its deletions a refresh rewrites the
tables that held what it removed (`VACUUM (FULL)` of the videos, with their TOAST table and
indexes, the pages and the batches' ids), then asks for a ``CHECKPOINT`` when the role may
(superuser or ``pg_checkpoint``), so that the old files are unlinked. Statistics are never
gathered on the videos' bytes and ids (``SET STATISTICS 0``), so ``pg_statistic`` holds none of
them. Until a rewrite succeeds a meta key says it is owed, and the next refresh pays it first.
What the store cannot reach: the server's WAL (until its segments are recycled and overwritten),
archives, replicas, backups and the file system's free blocks are the administrator's.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Final, TypeVar

from ..errors import StoreError
from ._records import StoreLockedError, _check_count, _utc_stamp
from ._refreshes import (
    _REFRESH_COLUMNS,
    RefreshBatch,
    RefreshRecord,
    _parse_stamp,
    refresh_record,
)

__all__ = ["REFRESH_TABLES"]

T = TypeVar("T")

logger = logging.getLogger("tiktok_repost_async.store")

# The key of the advisory lock one refresh at a time holds ("tiktrf"); the schema's is "tiktol".
_REFRESH_LOCK: Final = 0x7469_6B74_7266
# How long a rewrite waits for a reader of the table (an export's long read) before it is left
# for later: it blocks every harvest commit while it waits.
_REWRITE_LOCK_TIMEOUT: Final = "30s"
# The meta key that says deleted content still lies in the tables' files (a rewrite is owed).
_ERASE_KEY: Final = "erase_pending"

#: The refresh's tables (schema version 2), mirroring SQLite's ``refreshes``, ``refresh_tasks``
#: and ``refresh_ids``, and the statistics the server must never keep of a video's bytes or id.
REFRESH_TABLES: Final = (
    """CREATE TABLE IF NOT EXISTS tiktok_refreshes (
        id bigserial PRIMARY KEY, started_at text NOT NULL, ended_at text, outcome text,
        version text NOT NULL, check_users integer NOT NULL DEFAULT 0,
        max_page_id bigint NOT NULL DEFAULT 0, users_until bigint NOT NULL DEFAULT 0,
        users_done bigint NOT NULL DEFAULT 0, checked bigint NOT NULL DEFAULT 0,
        removed bigint NOT NULL DEFAULT 0, observations_removed bigint NOT NULL DEFAULT 0,
        users_checked bigint NOT NULL DEFAULT 0, users_removed bigint NOT NULL DEFAULT 0,
        requests bigint NOT NULL DEFAULT 0)""",
    """CREATE TABLE IF NOT EXISTS tiktok_refresh_tasks (
        refresh_id bigint NOT NULL REFERENCES tiktok_refreshes (id), batch integer NOT NULL,
        size integer NOT NULL, task_id text, task_ids text NOT NULL DEFAULT '',
        state text NOT NULL DEFAULT 'new'
              CHECK (state IN ('new', 'created', 'failed', 'applied')),
        removed integer NOT NULL DEFAULT 0, PRIMARY KEY (refresh_id, batch))""",
    """CREATE TABLE IF NOT EXISTS tiktok_refresh_ids (
        refresh_id bigint NOT NULL, batch integer NOT NULL, video_id text NOT NULL,
        PRIMARY KEY (refresh_id, batch, video_id))""",
    # ANALYZE keeps sample values of each column in pg_statistic, a catalogue the store cannot
    # rewrite: none of a video's bytes or ids (idempotent, also on an upgraded store).
    "ALTER TABLE tiktok_videos ALTER COLUMN data SET STATISTICS 0,"
    " ALTER COLUMN video_id SET STATISTICS 0",
    "ALTER TABLE tiktok_refresh_ids ALTER COLUMN video_id SET STATISTICS 0",
)


class _PgRefreshes:
    """Record refreshes, their batches and tasks in PostgreSQL; delete what they find gone."""

    if TYPE_CHECKING:
        # PostgresStore's, which this part is a base of.
        _clock: Callable[[], float]
        _label: str
        _holder: str
        _psycopg: Any

        @property
        def _db(self) -> Any: ...

        def _tx(self, work: Callable[[Any], T]) -> T: ...

        def _read(self, sql: str, params: Sequence[object] = ()) -> list[Any]: ...

        def _error(self, what: str, exc: BaseException) -> StoreError: ...

    _refreshing: bool = False

    # -- one refresh at a time -------------------------------------------------------------

    def acquire_refresh_lock(self) -> None:
        """Take the store for a refresh, or raise StoreLockedError if another refresh runs.

        Harvests go on beside it (see the module's notes); the lock lives as long as this
        store's connection, so a killed refresh leaves none behind.
        """
        if self._refreshing:
            raise StoreError(f"this store already runs a refresh on {self._label}")
        conn = self._db
        try:
            if not conn.execute("SELECT pg_try_advisory_lock(%s)", (_REFRESH_LOCK,)).fetchone()[0]:
                holder = self._refresh_holder()
                raise StoreLockedError(
                    f"{self._label} is being refreshed by another process ({holder}); wait for"
                    " it to finish, or stop it"
                )
            # Named in the server's view, so that a second refresh can say who holds the lock.
            conn.execute(
                "SELECT set_config('application_name', %s, false)",
                (f"tiktok-reposts refresh {self._holder}"[:63],),
            )
        except self._psycopg.Error as exc:
            raise self._error("cannot lock", exc) from None
        self._refreshing = True

    def _refresh_holder(self) -> str:
        rows = self._read(
            "SELECT a.application_name FROM pg_locks AS l JOIN pg_stat_activity AS a USING (pid)"
            " WHERE l.locktype = 'advisory' AND l.granted AND l.database = (SELECT oid FROM"
            " pg_database WHERE datname = current_database()) AND ((l.classid::bigint << 32)"
            " | l.objid::bigint) = %s",
            (_REFRESH_LOCK,),
        )
        name = str(rows[0][0] or "") if rows else ""
        return name.removeprefix("tiktok-reposts refresh ") or "another process"

    def release_refresh_lock(self) -> None:
        """Let go of what `acquire_refresh_lock` took."""
        if not self._refreshing:
            return
        self._refreshing = False
        conn = self._db
        try:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_REFRESH_LOCK,))
            conn.execute("SELECT set_config('application_name', 'tiktok-reposts store', false)")
        except self._psycopg.Error as exc:
            # The lock goes with the connection anyway.
            logger.warning("%s", self._error("cannot unlock", exc))

    # -- the refresh's life --------------------------------------------------------------------

    def start_refresh(
        self, version: str, *, check_users: bool = False, batch_size: int = 10_000
    ) -> tuple[RefreshRecord, bool]:
        """Resume the unfinished refresh, or begin one; return it and whether it is new.

        A new refresh takes every distinct stored video id now, in batches of ``batch_size``,
        with no page commit in flight: the same batches are sent and read until it finishes,
        and a video stored later is not in them. ``check_users`` asks it to re-check each user
        with stored videos too.

        :param version: the package version that runs, recorded with a new refresh.
        :param check_users: re-check each user with stored videos too (deleting the data of one the
            API now refuses).
        :param batch_size: video ids per batch, one compliance task each (at most 10,000).
        """
        if not isinstance(version, str) or not version:
            raise ValueError(f"version must be a non-empty str, not {version!r}")
        _check_count("batch_size", batch_size)
        if batch_size == 0:
            raise ValueError("batch_size must be a positive int, not 0")
        # What a killed run deleted may still lie in the files: rewritten before anything else.
        self.erase_deleted()
        stamp = _utc_stamp(self._clock())

        def work(conn: Any) -> tuple[int, bool]:
            row = conn.execute(
                "SELECT id, check_users FROM tiktok_refreshes WHERE outcome IS NULL"
                " OR outcome <> 'finished' ORDER BY id DESC LIMIT 1 FOR UPDATE"
            ).fetchone()
            max_seq = conn.execute("SELECT coalesce(max(seq), 0) FROM tiktok_users").fetchone()[0]
            if row is not None:
                refresh_id = int(row[0])
                conn.execute(
                    "UPDATE tiktok_refreshes SET ended_at = NULL, outcome = NULL WHERE id = %s",
                    (refresh_id,),
                )
                if check_users and not row[1]:
                    conn.execute(
                        "UPDATE tiktok_refreshes SET check_users = 1, users_until = %s"
                        " WHERE id = %s",
                        (max_seq, refresh_id),
                    )
                return refresh_id, False
            # Page commits in flight end first, new ones wait until this commits: every page
            # up to max_page_id is in, and a later one gets a higher id from the sequence.
            conn.execute("LOCK TABLE tiktok_pages, tiktok_videos IN SHARE MODE")
            max_page = conn.execute("SELECT coalesce(max(id), 0) FROM tiktok_pages").fetchone()[0]
            refresh_id = int(
                conn.execute(
                    "INSERT INTO tiktok_refreshes (started_at, version, check_users, max_page_id,"
                    " users_until) VALUES (%s, %s, %s, %s, %s) RETURNING id",
                    (stamp, version, int(check_users), max_page, max_seq if check_users else 0),
                ).fetchone()[0]
            )
            # Byte order ("C"), as SQLite sorts text; any fixed order serves, once it is stored.
            conn.execute(
                "INSERT INTO tiktok_refresh_ids (refresh_id, batch, video_id) SELECT %s,"
                ' (row_number() OVER (ORDER BY video_id COLLATE "C") - 1) / %s, video_id'
                " FROM (SELECT DISTINCT video_id FROM tiktok_videos) AS d",
                (refresh_id, batch_size),
            )
            conn.execute(
                "INSERT INTO tiktok_refresh_tasks (refresh_id, batch, size) SELECT refresh_id,"
                " batch, count(*) FROM tiktok_refresh_ids WHERE refresh_id = %s GROUP BY"
                " refresh_id, batch",
                (refresh_id,),
            )
            conn.execute(
                "UPDATE tiktok_refreshes SET checked = (SELECT coalesce(sum(size), 0) FROM"
                " tiktok_refresh_tasks WHERE refresh_id = %s) WHERE id = %s",
                (refresh_id, refresh_id),
            )
            return refresh_id, True

        refresh_id, started = self._tx(work)
        record = self.refresh_record(refresh_id)
        assert record is not None
        return record, started

    def end_refresh(self, refresh_id: int, outcome: str) -> None:
        """Record how a refresh ended; a finished one keeps no id of what it checked.

        Then the tables that held what it deleted are rewritten (see the module's notes).

        :param refresh_id: the refresh's id (its record's ``id``).
        :param outcome: how it ended: ``finished``, ``interrupted``, ``stopped: <reason>``, ``error:
            <type>``.
        """
        if not isinstance(outcome, str) or not outcome:
            raise ValueError(f"outcome must be a non-empty str, not {outcome!r}")
        stamp = _utc_stamp(self._clock())

        def work(conn: Any) -> None:
            conn.execute(
                "UPDATE tiktok_refreshes SET ended_at = %s, outcome = %s WHERE id = %s",
                (stamp, outcome, refresh_id),
            )
            # A finished refresh keeps no id it checked (all its batches were applied).
            if (
                outcome == "finished"
                and conn.execute(
                    "DELETE FROM tiktok_refresh_ids WHERE refresh_id = %s", (refresh_id,)
                ).rowcount
            ):
                self._owe_erase(conn)

        self._tx(work)
        self.erase_deleted()

    def refresh_record(self, refresh_id: int) -> RefreshRecord | None:
        """Return one refresh's audit, or None if there is no such refresh.

        :param refresh_id: the refresh's id (its record's ``id``).
        """
        rows = self._read(
            f"SELECT {_REFRESH_COLUMNS} FROM tiktok_refreshes WHERE id = %s", (refresh_id,)
        )
        return self._refresh_record(rows[0]) if rows else None

    def refreshes(self, limit: int | None = None) -> list[RefreshRecord]:
        """Return the refreshes, newest first, at most ``limit`` of them.

        :param limit: the most refreshes to return (None: all).
        """
        if limit is not None:
            _check_count("limit", limit)
        rows = self._read(
            f"SELECT {_REFRESH_COLUMNS} FROM tiktok_refreshes ORDER BY id DESC LIMIT %s",
            (limit,),
        )
        return [self._refresh_record(row) for row in rows]

    def _refresh_record(self, row: Sequence[Any]) -> RefreshRecord:
        batches = self._read(
            "SELECT task_ids, size, state FROM tiktok_refresh_tasks WHERE refresh_id = %s"
            " ORDER BY batch",
            (row[0],),
        )
        return refresh_record(
            row,
            (str(joined) for joined, _, _ in batches),
            sum(int(size) for _, size, state in batches if state == "applied"),
        )

    def count_refresh_requests(self, refresh_id: int, count: int = 1) -> None:
        """Add requests (already booked in the ledger) to a refresh's audit.

        :param refresh_id: the refresh's id (its record's ``id``).
        :param count: the requests to add.
        """
        _check_count("count", count)
        self._add_requests(refresh_id, count)

    def uncount_refresh_requests(self, refresh_id: int, count: int = 1) -> None:
        """Take requests that never reached the API off a refresh's audit.

        :param refresh_id: the refresh's id (its record's ``id``).
        :param count: the requests to take off.
        """
        _check_count("count", count)
        self._add_requests(refresh_id, -count)

    def _add_requests(self, refresh_id: int, count: int) -> None:
        self._tx(
            lambda conn: conn.execute(
                "UPDATE tiktok_refreshes SET requests = greatest(requests + %s, 0) WHERE id = %s",
                (count, refresh_id),
            )
        )

    # -- batches and tasks ---------------------------------------------------------------------

    def refresh_batches(self, refresh_id: int) -> list[RefreshBatch]:
        """Return a refresh's batches in order.

        :param refresh_id: the refresh's id (its record's ``id``).
        """
        rows = self._read(
            "SELECT batch, size, task_id, state, removed FROM tiktok_refresh_tasks"
            " WHERE refresh_id = %s ORDER BY batch",
            (refresh_id,),
        )
        return [
            RefreshBatch(int(b), int(size), None if task is None else int(task), str(state), int(r))
            for b, size, task, state, r in rows
        ]

    def refresh_batch_ids(self, refresh_id: int, batch: int) -> tuple[int, ...]:
        """Return the video ids of one batch of an unfinished refresh, in the order it keeps.

        :param refresh_id: the refresh's id (its record's ``id``).
        :param batch: the batch's number.
        """
        rows = self._read(
            "SELECT video_id FROM tiktok_refresh_ids WHERE refresh_id = %s AND batch = %s"
            ' ORDER BY video_id COLLATE "C"',
            (refresh_id, batch),
        )
        return tuple(int(video_id) for (video_id,) in rows)

    def set_refresh_task(self, refresh_id: int, batch: int, task_id: int) -> None:
        """Record the task just made for a batch: it is polled from now on, also after a kill.

        :param refresh_id: the refresh's id (its record's ``id``).
        :param batch: the batch's number.
        :param task_id: the id the compliance task was created with.
        """
        if isinstance(task_id, bool) or not isinstance(task_id, int) or task_id < 1:
            raise ValueError(f"task_id must be a positive int, not {task_id!r}")
        changed = self._tx(
            lambda conn: (
                conn.execute(
                    "UPDATE tiktok_refresh_tasks SET task_id = %s, state = 'created', task_ids ="
                    " task_ids || CASE WHEN task_ids = '' THEN '' ELSE ',' END || %s"
                    " WHERE refresh_id = %s AND batch = %s",
                    (str(task_id), str(task_id), refresh_id, batch),
                ).rowcount
            )
        )
        if changed != 1:
            raise StoreError(f"refresh {refresh_id} has no batch {batch}")

    def fail_refresh_task(self, refresh_id: int, batch: int) -> None:
        """Record that a batch's task Failed (or was lost): the batch needs a task again.

        :param refresh_id: the refresh's id (its record's ``id``).
        :param batch: the batch's number.
        """
        self._tx(
            lambda conn: conn.execute(
                "UPDATE tiktok_refresh_tasks SET state = 'failed', task_id = NULL"
                " WHERE refresh_id = %s AND batch = %s",
                (refresh_id, batch),
            )
        )

    def apply_refresh_batch(
        self, refresh_id: int, batch: int, valid: Collection[int]
    ) -> tuple[int, int]:
        """Delete every video of a batch that ``valid`` does not name; return (ids, rows) deleted.

        Only the batch's ids are read, and only observations of pages stored before the refresh
        began are deleted: a video harvested later was not checked. Applying a batch twice
        deletes nothing the second time. The refresh's end rewrites the files (`end_refresh`).

        :param refresh_id: the refresh's id (its record's ``id``).
        :param batch: the batch's number.
        :param valid: the ids the batch's task found still available (its downloaded file).
        """
        wanted = {str(video_id) for video_id in valid}

        def work(conn: Any) -> tuple[int, int]:
            row = conn.execute(
                "SELECT r.max_page_id, t.state FROM tiktok_refreshes AS r JOIN"
                " tiktok_refresh_tasks AS t ON t.refresh_id = r.id WHERE r.id = %s"
                " AND t.batch = %s FOR UPDATE OF t",
                (refresh_id, batch),
            ).fetchone()
            if row is None:
                raise StoreError(f"refresh {refresh_id} has no batch {batch}")
            max_page, state = int(row[0]), str(row[1])
            if state == "applied":
                return 0, 0
            ids = [
                str(video_id)
                for (video_id,) in conn.execute(
                    "SELECT video_id FROM tiktok_refresh_ids WHERE refresh_id = %s AND batch = %s",
                    (refresh_id, batch),
                )
            ]
            gone = [video_id for video_id in ids if video_id not in wanted]
            rows = self._delete_videos(conn, gone, max_page) if gone else 0
            conn.execute(
                "DELETE FROM tiktok_refresh_ids WHERE refresh_id = %s AND batch = %s",
                (refresh_id, batch),
            )
            conn.execute(
                "UPDATE tiktok_refresh_tasks SET state = 'applied', removed = %s"
                " WHERE refresh_id = %s AND batch = %s",
                (len(gone), refresh_id, batch),
            )
            conn.execute(
                "UPDATE tiktok_refreshes SET removed = removed + %s, observations_removed ="
                " observations_removed + %s WHERE id = %s",
                (len(gone), rows, refresh_id),
            )
            if gone:
                # The ids of what is gone, and any row deleted, lie in dead tuples now.
                self._owe_erase(conn)
            return len(gone), rows

        return self._tx(work)

    def _delete_videos(self, conn: Any, gone: list[str], max_page: int) -> int:
        # Observations of pages stored after the refresh began were not checked: kept. A video
        # without a page (copied from an old SQLite store) was stored before: checked.
        where = "video_id = ANY(%s) AND (page_id IS NULL OR page_id <= %s)"
        users = [
            str(name)
            for (name,) in conn.execute(
                f"SELECT DISTINCT username FROM tiktok_videos WHERE {where}", (gone, max_page)
            )
        ]
        # The users' rows first, in the order a page's commit takes them: a commit beside this
        # one then either ends before (its videos counted below) or after (it adds its own).
        self._lock_users(conn, users)
        deleted = int(
            conn.execute(f"DELETE FROM tiktok_videos WHERE {where}", (gone, max_page)).rowcount
        )
        self._recount(conn, users)
        return deleted

    @staticmethod
    def _lock_users(conn: Any, users: Sequence[str]) -> None:
        conn.execute(
            "SELECT 1 FROM tiktok_users WHERE username = ANY(%s) ORDER BY username FOR UPDATE",
            (list(users),),
        )

    @staticmethod
    def _recount(conn: Any, users: Sequence[str]) -> None:
        # What each user's rows say they hold follows what is left.
        names = list(users)
        conn.execute(
            "UPDATE tiktok_users AS u SET videos = (SELECT count(*) FROM tiktok_videos AS v"
            " WHERE v.username = u.username AND v.round = u.round) WHERE username = ANY(%s)",
            (names,),
        )
        # And in the earlier rounds of a panel (tiktok_user_rounds mirrors user_rounds).
        conn.execute(
            "UPDATE tiktok_user_rounds AS r SET videos = (SELECT count(*) FROM tiktok_videos"
            " AS v WHERE v.username = r.username AND v.round = r.round)"
            " WHERE username = ANY(%s)",
            (names,),
        )

    # -- users -----------------------------------------------------------------------------------

    def refresh_users_left(self, refresh_id: int) -> Iterator[tuple[int, str]]:
        """Stream (seq, username) of the users a refresh still has to re-check, in input order.

        Those with videos stored, up to the last user stored when the check was asked for.

        :param refresh_id: the refresh's id (its record's ``id``).
        """
        found = self._read(
            "SELECT users_done, users_until FROM tiktok_refreshes WHERE id = %s"
            " AND check_users <> 0",
            (refresh_id,),
        )
        if not found:
            return
        done, until = int(found[0][0]), int(found[0][1])
        # Read whole: the refresh deletes rows of these tables between two users.
        rows = self._read(
            "SELECT seq, username FROM tiktok_users AS u WHERE seq > %s AND seq <= %s AND EXISTS"
            " (SELECT 1 FROM tiktok_videos AS v WHERE v.username = u.username) ORDER BY seq",
            (done, until),
        )
        for seq, name in rows:
            yield int(seq), str(name)

    def refresh_user_checked(
        self, refresh_id: int, seq: int, *, gone: str | None = None, error: str | None = None
    ) -> int:
        """Record that a refresh re-checked the user of ``seq``; return the video rows deleted.

        When the API now refuses the user (``gone``), every video and page of that user is
        deleted, and the user keeps that state, so that no harvest walks it again unasked. A user
        whose walk another live process holds right now is left as it is: StoreLockedError
        (check it next time).

        :param refresh_id: the refresh's id (its record's ``id``).
        :param seq: the user's input position, as `refresh_users_left` gives it.
        :param gone: ``not_found`` or ``unavailable`` when the API now refuses the user (None: still
            there).
        :param error: the API's words when it refused the user.
        """
        if gone not in (None, "not_found", "unavailable"):
            raise ValueError(f"gone must be None, 'not_found' or 'unavailable', not {gone!r}")
        stamp = _utc_stamp(self._clock())

        def work(conn: Any) -> int:
            rows = 0
            if gone is not None:
                found = conn.execute(
                    "SELECT username FROM tiktok_users WHERE seq = %s", (seq,)
                ).fetchone()
                if found is None:
                    raise StoreError(f"no user of seq {seq}")
                name = str(found[0])
                # The claim before the user's row, as a page's commit locks them; an expired
                # claim too, so that a harvest taking it over waits and then reads the new state.
                held = conn.execute(
                    "SELECT holder, expires > now() AND holder <> %s FROM tiktok_claims"
                    " WHERE username = %s FOR UPDATE",
                    (self._holder, name),
                ).fetchone()
                if held is not None and held[1]:
                    raise StoreLockedError(
                        f"user {name!r} is being harvested by {held[0]} right now: its data is"
                        " left as it is"
                    )
                self._lock_users(conn, [name])
                rows = int(
                    conn.execute("DELETE FROM tiktok_videos WHERE username = %s", (name,)).rowcount
                )
                conn.execute("DELETE FROM tiktok_pages WHERE username = %s", (name,))
                conn.execute(
                    "UPDATE tiktok_users SET state = %s, error = %s, videos = 0, pages = 0,"
                    " cursor = 0, partial = 0, updated_at = %s WHERE seq = %s",
                    (gone, error, stamp, seq),
                )
                self._recount(conn, [name])
                if rows:
                    self._owe_erase(conn)
            conn.execute(
                "UPDATE tiktok_refreshes SET users_done = greatest(users_done, %s),"
                " users_checked = users_checked + 1, users_removed = users_removed + %s,"
                " observations_removed = observations_removed + %s WHERE id = %s",
                (seq, int(gone is not None), rows, refresh_id),
            )
            return rows

        return self._tx(work)

    # -- the clock -------------------------------------------------------------------------------

    def refresh_due(self, days: float) -> float | None:
        """Return when the next refresh is due (epoch seconds), or None when nothing is stored.

        It is ``days`` after the last finished refresh began, or, before any, after the oldest
        stored page was fetched (the store's creation for videos without provenance).

        :param days: the refresh interval in days.
        """
        if not days > 0:
            raise ValueError(f"days must be a positive number, not {days!r}")
        if not self._read("SELECT EXISTS (SELECT 1 FROM tiktok_videos)")[0][0]:
            return None
        last = self._read(
            "SELECT max(started_at) FROM tiktok_refreshes WHERE outcome = 'finished'"
        )[0][0]
        if last is None:
            last = self._read(
                "SELECT min(p.fetched_at) FROM tiktok_pages AS p WHERE EXISTS (SELECT 1 FROM"
                " tiktok_videos AS v WHERE v.page_id = p.id)"
            )[0][0]
            if self._read("SELECT EXISTS (SELECT 1 FROM tiktok_videos WHERE page_id IS NULL)")[0][
                0
            ]:
                created = self._read("SELECT value FROM tiktok_meta WHERE key = 'created_at'")
                if created:
                    last = min(filter(None, (last, str(created[0][0]))))
        if last is None:
            return None
        return _parse_stamp(str(last)) + days * 86400.0

    # -- deletion that leaves nothing behind -----------------------------------------------------

    @staticmethod
    def _owe_erase(conn: Any) -> None:
        # In the deletion's own transaction: a kill after it commits still leaves the debt said.
        conn.execute(
            "INSERT INTO tiktok_meta (key, value) VALUES (%s, '1') ON CONFLICT (key)"
            " DO UPDATE SET value = '1'",
            (_ERASE_KEY,),
        )

    def erase_owed(self) -> bool:
        """Tell whether rows a refresh deleted may still lie in the tables' files.

        True from a deletion until a rewrite of the tables went through (`erase_deleted`): a
        refresh pays it first; `status` says it is owed.
        """
        return bool(
            self._read("SELECT 1 FROM tiktok_meta WHERE key = %s AND value = '1'", (_ERASE_KEY,))
        )

    def erase_deleted(self) -> bool:
        """Rewrite the tables a refresh deleted from, so that nothing deleted stays in their files.

        ``VACUUM (FULL)`` copies the live rows of the videos (their TOAST table and indexes
        too), the pages and the batches' ids into new files and drops the old ones; then a
        ``CHECKPOINT`` if the role may. Return whether nothing deleted is left in them: False
        when a long reader of a table (an export) held the rewrite off, or when this role does
        not own the tables (only their owner may rewrite them); the debt is kept and the next
        refresh pays it first.
        """
        if not self.erase_owed():
            return True
        tables = ("tiktok_videos", "tiktok_pages", "tiktok_refresh_ids")
        # VACUUM of a table one does not own only warns on the server and does nothing.
        owners = self._read(
            "SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = ANY(%s::regclass[])"
            " AND NOT pg_has_role(relowner, 'USAGE')",
            (list(tables),),
        )
        if owners:
            logger.warning(
                "the deleted videos' bytes are still in the files of %s: only the owner of its"
                " tables (role %s) may rewrite them; the next refresh by that role does, or"
                " run VACUUM (FULL) %s as it",
                self._label,
                owners[0][0],
                ", ".join(tables),
            )
            return False
        conn = self._db
        try:
            # Not in a transaction block (VACUUM refuses one): this connection autocommits.
            conn.execute(f"SET lock_timeout = '{_REWRITE_LOCK_TIMEOUT}'")
            try:
                for table in tables:
                    conn.execute(f"VACUUM (FULL) {table}")
            finally:
                conn.execute("RESET lock_timeout")
        except self._psycopg.errors.LockNotAvailable:
            logger.warning(
                "the deleted videos' bytes are still in the files of %s: a long read of its"
                " videos (an export?) held their rewrite off; the next refresh rewrites them",
                self._label,
            )
            return False
        except self._psycopg.Error as exc:
            raise self._error("cannot rewrite the videos of", exc) from None
        self._tx(
            lambda conn: conn.execute(
                "UPDATE tiktok_meta SET value = '0' WHERE key = %s", (_ERASE_KEY,)
            )
        )
        try:
            # The old files are truncated at once and unlinked at the next checkpoint; it also
            # lets the WAL segments that still hold the rows be recycled sooner.
            conn.execute("CHECKPOINT")
        except self._psycopg.errors.InsufficientPrivilege:
            logger.debug("no CHECKPOINT: the role of %s may not ask for one", self._label)
        except self._psycopg.Error as exc:
            logger.warning("%s", self._error("cannot checkpoint", exc))
        return True
