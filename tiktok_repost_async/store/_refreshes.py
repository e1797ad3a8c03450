"""The store's refresh part: the refresh audit, its batches and tasks, and deletion without trace.

A refresh checks every distinct stored video id with TikTok's Batch Compliance API and deletes
what is no longer served. The store keeps, per refresh, the batches of ids it began with (so that
a killed refresh sends and reads the same batches again), each batch's task id (persisted before
it is polled), and the audit: when, how many ids checked and removed, requests spent, task ids.
Deletions run with ``secure_delete`` on, and a checkpoint that truncates the WAL follows them. That
is not enough on its own: ``secure_delete`` zeroes what a deletion frees, but the b-tree's page
splits and moves during the harvest leave stale copies of cells in the free space of pages (with
``secure_delete`` on or off, as the build defaults), an id or a whole video among them. So a
refresh that deleted anything ends by rebuilding the database from its live rows (``VACUUM``, whose
temporary copy holds only what is kept), then truncating the WAL: a removed video's bytes are found
in none of the store's files. The debt is recorded (meta ``erase_pending``) in each deletion's own
transaction, so a refresh killed before its rebuild leaves it said, and the next refresh pays it
first; it is cleared only once the WAL after the rebuild was truncated (a reader holding an older
snapshot keeps the old pages in the files until then), and `erase_owed` says it to `status`.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import sqlite3
from collections.abc import Collection, Iterable, Iterator, Sequence
from typing import Any, Final

from ..errors import StoreError
from ._core import _StoreCore
from ._records import _check_count, _utc_stamp

__all__ = ["REFRESH_DAYS", "RefreshBatch", "RefreshRecord"]

logger = logging.getLogger("tiktok_repost_async.store")

#: The days between two refreshes by default: the stricter reading of TikTok's terms (reported
#: as 15 days in 2023; the 2026 terms are quoted as 30). The live terms decide.
REFRESH_DAYS: Final = 15
# Rows of one statement's IN list at most (SQLite's bound on host parameters was 999 before 3.32).
_IN_CHUNK: Final = 500
# The states of a batch: no task yet, a task made and not yet answered, its tasks Failed, done.
_BATCH_STATES: Final = ("new", "created", "failed", "applied")
# The meta key that says deleted content may still lie in the file (a rebuild is owed).
_ERASE_KEY: Final = "erase_pending"
_REFRESH_COLUMNS: Final = (
    "id, started_at, ended_at, outcome, version, check_users, checked, removed,"
    " observations_removed, users_checked, users_removed, requests"
)


@dataclasses.dataclass(frozen=True, slots=True)
class RefreshRecord:
    """Hold one refresh's audit: when, what it checked and removed, what it cost, its tasks.

    :param id: the refresh's number in the store's audit.
    :param started_at: when it began (UTC, ISO 8601).
    :param ended_at: none while it runs, and for ever if its process was killed (the next refresh
        resumes it).
    :param outcome: ``finished``, ``incomplete`` (a batch's tasks Failed), ``stopped: <reason>``,
        ``error: <type>``; None while running or killed.
    :param version: the version of tiktok_repost_async that ran it.
    :param check_users: whether it also re-checked each harvested user (``--users``).
    :param checked: distinct video ids it sent to be checked.
    :param removed: distinct video ids found no longer available, and deleted.
    :param observations_removed: stored observations of videos (one per user and round) it deleted,
        users' included.
    :param users_checked: users it re-checked with one request each (``--users``).
    :param users_removed: users found gone (not found, private, opted out) whose data it deleted.
    :param requests: requests it spent (compliance calls and user checks), each booked in the
        ledger too.
    :param task_ids: every compliance task it made, in batch order (as the digits the API sent).
    :param answered: of the ``checked`` ids, those whose task's answer it applied (all of them
        once finished).
    """

    id: int
    started_at: str
    ended_at: str | None
    outcome: str | None
    version: str
    check_users: bool
    checked: int
    removed: int
    observations_removed: int
    users_checked: int
    users_removed: int
    requests: int
    task_ids: tuple[str, ...] = ()
    answered: int = 0

    @property
    def finished(self) -> bool:
        """Tell whether the refresh checked every batch and applied every answer."""
        return self.outcome == "finished"


@dataclasses.dataclass(frozen=True, slots=True)
class RefreshBatch:
    """Hold one batch of a refresh: its size, its current task and where it stands."""

    batch: int
    size: int
    #: The batch's current task, None before one is made (or after its task Failed).
    task_id: int | None
    #: ``new``, ``created``, ``failed`` or ``applied``.
    state: str
    #: Video ids of the batch found gone and deleted (once applied).
    removed: int


def _parse_stamp(stamp: str) -> float:
    return (
        datetime.datetime.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S")
        .replace(tzinfo=datetime.UTC)
        .timestamp()
    )


def refresh_record(row: Sequence[Any], task_ids: Iterable[str], answered: int = 0) -> RefreshRecord:
    """Return a refresh's audit from its row (the columns ``_REFRESH_COLUMNS`` names, in order)
    and the comma-joined task ids of its batches, in batch order: one reading for both engines.

    :param row: the refresh's row.
    :param task_ids: each batch's ``task_ids``.
    :param answered: the ids of its batches whose answer was applied.
    """
    refresh_id, started, ended, outcome, version, users = row[:6]
    checked, removed, observations, users_checked, users_removed, requests = row[6:12]
    return RefreshRecord(
        int(refresh_id),
        str(started),
        ended,
        outcome,
        str(version),
        bool(users),
        int(checked),
        int(removed),
        int(observations),
        int(users_checked),
        int(users_removed),
        int(requests),
        tuple(task for joined in task_ids for task in joined.split(",") if task),
        int(answered),
    )


class _StoreRefreshes(_StoreCore):
    """Record refreshes, their batches and tasks; delete what they find gone, without trace."""

    # -- the refresh's life --------------------------------------------------------------------

    def start_refresh(
        self, version: str, *, check_users: bool = False, batch_size: int = 10_000
    ) -> tuple[RefreshRecord, bool]:
        """Resume the unfinished refresh, or begin one; return it and whether it is new.

        A new refresh takes every distinct stored video id now, in batches of ``batch_size``:
        the same batches are sent and read until it finishes, and a video stored later is not
        in them. ``check_users`` asks it to re-check each user with stored videos too (a resumed
        refresh asked for it checks the users stored when it is asked).

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
        # What a killed run deleted may still lie in the file: rebuilt before anything else.
        self.erase_deleted()
        stamp = _utc_stamp(self._clock())
        with self._transaction() as conn:
            row = conn.execute(
                "SELECT id, check_users FROM refreshes WHERE outcome IS NULL"
                " OR outcome != 'finished' ORDER BY id DESC LIMIT 1"
            ).fetchone()
            max_seq = conn.execute("SELECT coalesce(max(seq), 0) FROM users").fetchone()[0]
            if row is not None:
                refresh_id = int(row[0])
                conn.execute(
                    "UPDATE refreshes SET ended_at = NULL, outcome = NULL WHERE id = ?",
                    (refresh_id,),
                )
                if check_users and not row[1]:
                    conn.execute(
                        "UPDATE refreshes SET check_users = 1, users_until = ? WHERE id = ?",
                        (max_seq, refresh_id),
                    )
                started = False
            else:
                max_page = conn.execute("SELECT coalesce(max(id), 0) FROM pages").fetchone()[0]
                refresh_id = int(
                    conn.execute(
                        "INSERT INTO refreshes (started_at, version, check_users, max_page_id,"
                        " users_until) VALUES (?, ?, ?, ?, ?)",
                        (stamp, version, int(check_users), max_page, max_seq if check_users else 0),
                    ).lastrowid
                    or 0
                )
                # Ids sort as text here; any fixed order serves, as long as it is stored.
                conn.execute(
                    "INSERT INTO refresh_ids (refresh_id, batch, video_id) SELECT ?,"
                    " (row_number() OVER (ORDER BY video_id) - 1) / ?, video_id FROM"
                    " (SELECT DISTINCT video_id FROM videos)",
                    (refresh_id, batch_size),
                )
                conn.execute(
                    "INSERT INTO refresh_tasks (refresh_id, batch, size) SELECT refresh_id,"
                    " batch, count(*) FROM refresh_ids WHERE refresh_id = ? GROUP BY batch",
                    (refresh_id,),
                )
                conn.execute(
                    "UPDATE refreshes SET checked = (SELECT coalesce(sum(size), 0) FROM"
                    " refresh_tasks WHERE refresh_id = ?) WHERE id = ?",
                    (refresh_id, refresh_id),
                )
                started = True
        record = self.refresh_record(refresh_id)
        assert record is not None
        return record, started

    def end_refresh(self, refresh_id: int, outcome: str) -> None:
        """Record how a refresh ended; a finished one keeps no id of what it checked.

        :param refresh_id: the refresh's id (its record's ``id``).
        :param outcome: how it ended: ``finished``, ``interrupted``, ``stopped: <reason>``, ``error:
            <type>``.
        """
        if not isinstance(outcome, str) or not outcome:
            raise ValueError(f"outcome must be a non-empty str, not {outcome!r}")
        with self._transaction() as conn:
            conn.execute(
                "UPDATE refreshes SET ended_at = ?, outcome = ? WHERE id = ?",
                (_utc_stamp(self._clock()), outcome, refresh_id),
            )
            if outcome == "finished":
                self._secure(conn)
                if conn.execute(
                    "DELETE FROM refresh_ids WHERE refresh_id = ?", (refresh_id,)
                ).rowcount:
                    self._owe_erase(conn)
        if self.erase_owed():
            self.erase_deleted()  # it ends with the checkpoint
        else:
            self.checkpoint()

    def refresh_record(self, refresh_id: int) -> RefreshRecord | None:
        """Return one refresh's audit, or None if there is no such refresh.

        :param refresh_id: the refresh's id (its record's ``id``).
        """
        row = self._db.execute(
            f"SELECT {_REFRESH_COLUMNS} FROM refreshes WHERE id = ?", (refresh_id,)
        ).fetchone()
        return None if row is None else self._refresh_record(row)

    def refreshes(self, limit: int | None = None) -> list[RefreshRecord]:
        """Return the refreshes, newest first, at most ``limit`` of them.

        :param limit: the most refreshes to return (None: all).
        """
        if limit is not None:
            _check_count("limit", limit)
        rows = self._db.execute(
            f"SELECT {_REFRESH_COLUMNS} FROM refreshes ORDER BY id DESC LIMIT ?",
            (-1 if limit is None else limit,),
        ).fetchall()
        return [self._refresh_record(row) for row in rows]

    def _refresh_record(self, row: tuple[Any, ...]) -> RefreshRecord:
        batches = self._db.execute(
            "SELECT task_ids, size, state FROM refresh_tasks WHERE refresh_id = ? ORDER BY batch",
            (row[0],),
        ).fetchall()
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
        with self._transaction() as conn:
            conn.execute(
                "UPDATE refreshes SET requests = max(requests + ?, 0) WHERE id = ?",
                (count, refresh_id),
            )

    def uncount_refresh_requests(self, refresh_id: int, count: int = 1) -> None:
        """Take requests that never reached the API off a refresh's audit.

        :param refresh_id: the refresh's id (its record's ``id``).
        :param count: the requests to take off.
        """
        _check_count("count", count)
        with self._transaction() as conn:
            conn.execute(
                "UPDATE refreshes SET requests = max(requests - ?, 0) WHERE id = ?",
                (count, refresh_id),
            )

    # -- batches and tasks ---------------------------------------------------------------------

    def refresh_batches(self, refresh_id: int) -> list[RefreshBatch]:
        """Return a refresh's batches in order.

        :param refresh_id: the refresh's id (its record's ``id``).
        """
        rows = self._db.execute(
            "SELECT batch, size, task_id, state, removed FROM refresh_tasks WHERE refresh_id = ?"
            " ORDER BY batch",
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
        return tuple(
            int(video_id)
            for (video_id,) in self._db.execute(
                "SELECT video_id FROM refresh_ids WHERE refresh_id = ? AND batch = ?"
                " ORDER BY video_id",
                (refresh_id, batch),
            )
        )

    def set_refresh_task(self, refresh_id: int, batch: int, task_id: int) -> None:
        """Record the task just made for a batch: it is polled from now on, also after a kill.

        :param refresh_id: the refresh's id (its record's ``id``).
        :param batch: the batch's number.
        :param task_id: the id the compliance task was created with.
        """
        if isinstance(task_id, bool) or not isinstance(task_id, int) or task_id < 1:
            raise ValueError(f"task_id must be a positive int, not {task_id!r}")
        with self._transaction() as conn:
            changed = conn.execute(
                "UPDATE refresh_tasks SET task_id = ?, state = 'created', task_ids = task_ids ||"
                " CASE task_ids WHEN '' THEN '' ELSE ',' END || ? WHERE refresh_id = ? AND"
                " batch = ?",
                (str(task_id), str(task_id), refresh_id, batch),
            ).rowcount
        if changed != 1:
            raise StoreError(f"refresh {refresh_id} has no batch {batch}")

    def fail_refresh_task(self, refresh_id: int, batch: int) -> None:
        """Record that a batch's task Failed (or was lost): the batch needs a task again.

        :param refresh_id: the refresh's id (its record's ``id``).
        :param batch: the batch's number.
        """
        self._set_batch_state(refresh_id, batch, "failed")

    def _set_batch_state(self, refresh_id: int, batch: int, state: str) -> None:
        assert state in _BATCH_STATES
        with self._transaction() as conn:
            conn.execute(
                "UPDATE refresh_tasks SET state = ?, task_id = NULL WHERE refresh_id = ?"
                " AND batch = ?",
                (state, refresh_id, batch),
            )

    def apply_refresh_batch(
        self, refresh_id: int, batch: int, valid: Collection[int]
    ) -> tuple[int, int]:
        """Delete every video of a batch that ``valid`` does not name; return (ids, rows) deleted.

        Only the batch's ids are read, and only observations stored before the refresh began
        are deleted: a video harvested later was not checked. The deletion leaves no trace (see
        `checkpoint`); the batch's ids are dropped with it.

        :param refresh_id: the refresh's id (its record's ``id``).
        :param batch: the batch's number.
        :param valid: the ids the batch's task found still available (its downloaded file).
        """
        with self._transaction() as conn:
            row = conn.execute(
                "SELECT max_page_id FROM refreshes WHERE id = ?", (refresh_id,)
            ).fetchone()
            state = conn.execute(
                "SELECT state FROM refresh_tasks WHERE refresh_id = ? AND batch = ?",
                (refresh_id, batch),
            ).fetchone()
            if row is None or state is None:
                raise StoreError(f"refresh {refresh_id} has no batch {batch}")
            if state[0] == "applied":
                return 0, 0
            max_page = int(row[0])
            ids = [
                str(video_id)
                for (video_id,) in conn.execute(
                    "SELECT video_id FROM refresh_ids WHERE refresh_id = ? AND batch = ?",
                    (refresh_id, batch),
                )
            ]
            wanted = {str(video_id) for video_id in valid}
            gone = [video_id for video_id in ids if video_id not in wanted]
            self._secure(conn)
            rows = self._delete_videos(conn, gone, max_page)
            conn.execute(
                "DELETE FROM refresh_ids WHERE refresh_id = ? AND batch = ?", (refresh_id, batch)
            )
            if gone:
                # Its ids were in refresh_ids, and its rows, if any, in videos and pages.
                self._owe_erase(conn)
            conn.execute(
                "UPDATE refresh_tasks SET state = 'applied', removed = ? WHERE refresh_id = ?"
                " AND batch = ?",
                (len(gone), refresh_id, batch),
            )
            conn.execute(
                "UPDATE refreshes SET removed = removed + ?, observations_removed ="
                " observations_removed + ? WHERE id = ?",
                (len(gone), rows, refresh_id),
            )
        if rows:
            self.checkpoint()
        return len(gone), rows

    def _delete_videos(self, conn: sqlite3.Connection, gone: list[str], max_page: int) -> int:
        deleted = 0
        users: set[str] = set()
        for start in range(0, len(gone), _IN_CHUNK):
            chunk = gone[start : start + _IN_CHUNK]
            marks = ",".join("?" * len(chunk))
            # Observations of pages stored after the refresh began were not checked: kept. A
            # video stored before pages were recorded (schema 1) has no page: checked.
            where = f"video_id IN ({marks}) AND (page_id IS NULL OR page_id <= ?)"
            users.update(
                name
                for (name,) in conn.execute(
                    f"SELECT DISTINCT username FROM videos WHERE {where}", (*chunk, max_page)
                )
            )
            deleted += conn.execute(
                f"DELETE FROM videos WHERE {where}", (*chunk, max_page)
            ).rowcount
        self._recount(conn, users)
        return deleted

    @staticmethod
    def _recount(conn: sqlite3.Connection, users: Collection[str]) -> None:
        # What each user's rows say they hold follows what is left.
        names = list(users)
        for start in range(0, len(names), _IN_CHUNK):
            chunk = names[start : start + _IN_CHUNK]
            marks = ",".join("?" * len(chunk))
            conn.execute(
                "UPDATE users SET videos = (SELECT count(*) FROM videos AS v WHERE v.username ="
                f" users.username AND v.round = users.round) WHERE username IN ({marks})",
                chunk,
            )
            conn.execute(
                "UPDATE user_rounds SET videos = (SELECT count(*) FROM videos AS v WHERE"
                " v.username = user_rounds.username AND v.round = user_rounds.round)"
                f" WHERE username IN ({marks})",
                chunk,
            )

    # -- users -----------------------------------------------------------------------------------

    def refresh_users_left(self, refresh_id: int) -> Iterator[tuple[int, str]]:
        """Stream (seq, username) of the users a refresh still has to re-check, in input order.

        Those with videos stored, up to the last user stored when the check was asked for.

        :param refresh_id: the refresh's id (its record's ``id``).
        """
        row = self._db.execute(
            "SELECT users_done, users_until FROM refreshes WHERE id = ? AND check_users",
            (refresh_id,),
        ).fetchone()
        if row is None:
            return
        done, until = int(row[0]), int(row[1])
        # Fetched whole: the refresh deletes rows of this table between two users.
        rows = self._db.execute(
            "SELECT seq, username FROM users AS u WHERE seq > ? AND seq <= ? AND EXISTS"
            " (SELECT 1 FROM videos AS v WHERE v.username = u.username) ORDER BY seq",
            (done, until),
        ).fetchall()
        for seq, name in rows:
            yield int(seq), str(name)

    def refresh_user_checked(
        self, refresh_id: int, seq: int, *, gone: str | None = None, error: str | None = None
    ) -> int:
        """Record that a refresh re-checked the user of ``seq``; return the video rows deleted.

        When the API now refuses the user (``gone``), every video and page of that user is
        deleted without trace, and the user keeps that state, so that no harvest walks it again
        unasked.

        :param refresh_id: the refresh's id (its record's ``id``).
        :param seq: the user's input position, as `refresh_users_left` gives it.
        :param gone: ``not_found`` or ``unavailable`` when the API now refuses the user (None: still
            there).
        :param error: the API's words when it refused the user.
        """
        if gone not in (None, "not_found", "unavailable"):
            raise ValueError(f"gone must be None, 'not_found' or 'unavailable', not {gone!r}")
        rows = 0
        with self._transaction() as conn:
            if gone is not None:
                found = conn.execute("SELECT username FROM users WHERE seq = ?", (seq,)).fetchone()
                if found is None:
                    raise StoreError(f"no user of seq {seq}")
                name = str(found[0])
                self._secure(conn)
                rows = conn.execute("DELETE FROM videos WHERE username = ?", (name,)).rowcount
                conn.execute("DELETE FROM pages WHERE username = ?", (name,))
                self._owe_erase(conn)
                conn.execute(
                    "UPDATE users SET state = ?, error = ?, videos = 0, pages = 0, cursor = 0,"
                    " partial = 0, updated_at = ? WHERE seq = ?",
                    (gone, error, _utc_stamp(self._clock()), seq),
                )
                conn.execute("UPDATE user_rounds SET videos = 0 WHERE username = ?", (name,))
            conn.execute(
                "UPDATE refreshes SET users_done = max(users_done, ?), users_checked ="
                " users_checked + 1, users_removed = users_removed + ?, observations_removed ="
                " observations_removed + ? WHERE id = ?",
                (seq, int(gone is not None), rows, refresh_id),
            )
        if rows:
            self.checkpoint()
        return rows

    # -- the clock -------------------------------------------------------------------------------

    def refresh_due(self, days: float) -> float | None:
        """Return when the next refresh is due (epoch seconds), or None when nothing is stored.

        It is ``days`` after the last finished refresh began, or, before any, after the oldest
        stored page was fetched (the store's creation for videos without provenance).

        :param days: the refresh interval in days.
        """
        if not days > 0:
            raise ValueError(f"days must be a positive number, not {days!r}")
        db = self._db
        if db.execute("SELECT NOT EXISTS (SELECT 1 FROM videos)").fetchone()[0]:
            return None
        last = db.execute(
            "SELECT max(started_at) FROM refreshes WHERE outcome = 'finished'"
        ).fetchone()[0]
        if last is None:
            oldest = db.execute(
                "SELECT min(p.fetched_at) FROM pages AS p WHERE EXISTS (SELECT 1 FROM videos AS v"
                " WHERE v.page_id = p.id)"
            ).fetchone()[0]
            if db.execute("SELECT EXISTS (SELECT 1 FROM videos WHERE page_id IS NULL)").fetchone()[
                0
            ]:
                created = db.execute("SELECT value FROM meta WHERE key = 'created_at'").fetchone()
                if created is not None:
                    oldest = min(filter(None, (oldest, str(created[0]))))
            last = oldest
        if last is None:
            return None
        return _parse_stamp(str(last)) + days * 86400.0

    # -- deletion without trace ------------------------------------------------------------------

    @staticmethod
    def _secure(conn: sqlite3.Connection) -> None:
        # Deleted content is overwritten with zeros in the database and the WAL, not left in
        # free space where a file's bytes would still show it.
        conn.execute("PRAGMA secure_delete=ON")

    @staticmethod
    def _owe_erase(conn: sqlite3.Connection) -> None:
        # In the deletion's own transaction: a kill after it commits still leaves the debt said.
        conn.execute(
            "INSERT INTO meta (key, value) VALUES (?, '1') ON CONFLICT (key) DO UPDATE"
            " SET value = '1'",
            (_ERASE_KEY,),
        )

    def erase_owed(self) -> bool:
        """Tell whether content a refresh deleted may still lie in the store's files.

        True from a deletion until the rebuild and a WAL truncation after it both went through
        (`erase_deleted`): a refresh pays it first; `status` says it is owed.
        """
        owed = self._db.execute("SELECT value FROM meta WHERE key = ?", (_ERASE_KEY,)).fetchone()
        return owed is not None and owed[0] == "1"

    def erase_deleted(self) -> bool:
        """Rebuild the database from its live rows, so that nothing deleted stays in its file.

        Only when a deletion owes it (meta ``erase_pending``): ``VACUUM`` copies what is kept
        into a temporary database and writes it back over every page, stale free space
        included, then the WAL is truncated. Return whether nothing deleted is left: False when
        another process's read of the store held the rebuild or the truncation off (said in a
        warning); the debt is kept and the next refresh pays it first.
        """
        db = self._db
        if not self.erase_owed():
            return True
        try:
            db.execute("VACUUM")
        except sqlite3.OperationalError as exc:
            logger.warning(
                "deleted videos may linger in the free space of %s until the next refresh:"
                " it could not be rebuilt (%s)",
                self._path.name,
                exc,
            )
            return False
        # The rebuilt pages sit in the WAL until a checkpoint copies them over the old ones: a
        # reader holding an older snapshot keeps the database file (and the WAL) as they were,
        # deleted rows and all. Paid only once the WAL is truncated; else owed still.
        if not self.checkpoint():
            return False
        with self._transaction() as conn:
            conn.execute("DELETE FROM meta WHERE key = ?", (_ERASE_KEY,))
        # That change holds nothing deleted: a reader that holds this checkpoint off is harmless.
        self.checkpoint()
        return True

    def checkpoint(self) -> bool:
        """Copy the WAL into the database and truncate it; return whether it went through whole.

        After a deletion, the WAL still holds the pages as they were before it: truncated, no
        copy of a deleted video is left there. A reader that holds an old snapshot (a `status`
        at that instant) can keep the checkpoint from finishing; it is then said and retried at
        the next deletion.
        """
        busy, _, _ = self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if busy:
            logger.warning(
                "the store's WAL could not be truncated (another process reads the store):"
                " deleted videos may linger in %s-wal until the next checkpoint",
                self._path.name,
            )
        return not busy
