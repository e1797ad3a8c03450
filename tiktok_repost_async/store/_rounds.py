"""The store's runs and rounds: each harvest run's record, and the rounds of a panel study."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

from ..errors import StoreError
from ._core import _StoreCore
from ._lists import completed, done_before, user_rounds
from ._records import (
    RoundRecord,
    RoundSchedule,
    RunRecord,
    UserState,
    _check_count,
    _parse_utc_stamp,
    _run_record,
    _utc_stamp,
    check_cadence,
)
from ._schema import _current_round


class _StoreRounds(_StoreCore):
    """Record harvest runs and the rounds of a panel, and read them back."""

    # -- runs --------------------------------------------------------------------------------

    def begin_run(self, version: str) -> int:
        """Record the start of a harvest run; later pages and requests are booked to it.

        :param version: the package version that runs, recorded with the run.
        """
        if not isinstance(version, str) or not version:
            raise ValueError(f"version must be a non-empty str, not {version!r}")
        if self._run_id is not None:
            raise StoreError(f"run {self._run_id} of {str(self._path)!r} has not ended")
        with self._transaction() as conn:
            # A run starts under the run lock, so an earlier run that never ended cannot be
            # running: its process died (SIGKILL, power loss) before it could say how it ended.
            conn.execute(
                "UPDATE runs SET outcome = 'killed' WHERE ended_at IS NULL AND outcome IS NULL"
            )
            run_id = conn.execute(
                "INSERT INTO runs (started_at, version, fields, max_count, round)"
                " VALUES (?, ?, ?, ?, ?)",
                (
                    _utc_stamp(self._clock()),
                    version,
                    ",".join(self._fields),
                    self._max_count,
                    _current_round(conn),
                ),
            ).lastrowid
        assert run_id is not None
        self._run_id = run_id
        return run_id

    def end_run(self, outcome: str) -> None:
        """Record how the current run ended (``finished``, ``stopped: quota`` ...), if one runs.

        :param outcome: how the run ended: ``finished``, ``interrupted``, ``stopped: <reason>`` ...
        """
        run_id, self._run_id = self._run_id, None
        if run_id is None:
            return
        with self._transaction() as conn:
            conn.execute(
                "UPDATE runs SET ended_at = ?, outcome = ? WHERE id = ?",
                (_utc_stamp(self._clock()), outcome, run_id),
            )

    @property
    def run_id(self) -> int | None:
        """Return the id of the run in progress through this Store, or None."""
        return self._run_id

    def runs(self, limit: int | None = None) -> list[RunRecord]:
        """Return the runs, newest first, at most ``limit`` of them.

        :param limit: the most runs to return (None: all).
        """
        if limit is not None:
            _check_count("limit", limit)
        rows = self._db.execute(
            "SELECT id, started_at, ended_at, version, fields, max_count, requests, pages, videos,"
            " outcome FROM runs ORDER BY id DESC LIMIT ?",
            (-1 if limit is None else limit,),
        )
        return [_run_record(row) for row in rows]

    def run_count(self) -> int:
        """Return how many runs this store has recorded."""
        return int(self._db.execute("SELECT count(*) FROM runs").fetchone()[0])

    # -- rounds ------------------------------------------------------------------------------

    def start_round(
        self, *, stop_at_known: bool = False, retry_failed: bool = True, every: float | None = None
    ) -> tuple[int, bool]:
        """Start the next round of a panel, unless the current one is not finished yet.

        Return ``(round, started)``. A round that is not finished is resumed instead: one whose
        input a run has not read to the end (`begin_round_input`), one with no user yet, or one
        that some of its users still wait in (pending: a harvest was interrupted; failed, when
        ``retry_failed``: the run walks them again), so that running the same command again
        after a kill or a failure never starts a round twice. With ``retry_failed`` false the
        failed users of the current round are left as they are (the round stays incomplete)
        and the next round starts. The names of a round join it as a harvest claims them
        (`add_users`). With ``every`` (a scheduled run's cadence, seconds) the next round starts
        only once it is due (`RoundSchedule.starts_now`), read in the same transaction.

        :param stop_at_known: the new round's walks stop at the first page holding a video of the
            user's previous round.
        :param retry_failed: failed members keep the current round unfinished (a run walks them
            again); False leaves them failed and lets the next round start.
        :param every: the cadence of a scheduled run (seconds): start only once the next round is
            due; None: start it now if the current one is finished.
        """
        if every is not None:
            every = check_cadence(every)
        now = self._clock()
        with self._transaction() as conn:
            current = _current_round(conn)
            if not _finished(conn, current, retry_failed):
                return current, False
            if every is not None:
                row = conn.execute(
                    "SELECT started_at FROM rounds WHERE number = ?", (current,)
                ).fetchone()
                started = _parse_utc_stamp(row[0]) if row else now
                if not RoundSchedule(every, current, started, True).starts_now(now):
                    return current, False
            conn.execute(
                "INSERT INTO rounds (number, started_at, stop_at_known) VALUES (?, ?, ?)",
                (current + 1, _utc_stamp(now), int(stop_at_known)),
            )
        return current + 1, True

    @property
    def round_cadence(self) -> float | None:
        """Return the cadence of the panel's rounds in seconds, as ``--new-round-every`` set it
        (`set_round_cadence`), or None."""
        row = self._db.execute("SELECT value FROM meta WHERE key = 'new_round_every'").fetchone()
        return float(row[0]) if row else None

    def set_round_cadence(self, every: float | None) -> None:
        """Record the cadence of the panel's rounds (seconds; None forgets it).

        A harvest with ``new_round_every`` records it, so that `round_schedule` and ``status
        --check`` know when a round is due without being told again. It lives in the store's
        meta table: no schema change.

        :param every: the cadence in seconds (None forgets it).
        """
        if every is not None:
            every = check_cadence(every)
        with self._transaction() as conn:
            if every is None:
                conn.execute("DELETE FROM meta WHERE key = 'new_round_every'")
            else:
                conn.execute(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES ('new_round_every', ?)",
                    (repr(float(every)),),
                )

    def round_schedule(
        self, every: float | None = None, *, retry_failed: bool = True
    ) -> RoundSchedule | None:
        """Return when the next round is due: ``every`` seconds (the recorded cadence by default)
        after the latest round started, and whether that round is finished; None without a
        cadence.

        :param every: the cadence in seconds (default: `round_cadence`).
        :param retry_failed: whether failed users keep the latest round unfinished (a run walks
            them again), as `start_round` takes it.
        """
        every = self.round_cadence if every is None else check_cadence(every)
        if every is None:
            return None
        conn = self._db
        current = _current_round(conn)
        row = conn.execute("SELECT started_at FROM rounds WHERE number = ?", (current,)).fetchone()
        started = _parse_utc_stamp(row[0]) if row else self._clock()
        return RoundSchedule(every, current, started, _finished(conn, current, retry_failed))

    def begin_round_input(self) -> None:
        """Note that a run starts reading its input into the current round.

        Until `end_round_input`, the round is not finished: a run killed or stopped before the
        end of its input (a slow pipe, say) has not told which users the round holds.
        """
        with self._transaction() as conn:
            conn.execute(
                "UPDATE rounds SET input_open = 1 WHERE number = ?", (_current_round(conn),)
            )

    def end_round_input(self, *, drop_unnamed: bool = False) -> int:
        """Note that the run has read its whole input: the current round's users are all known.

        With ``drop_unnamed`` (a ``--new-round`` run: its input is the panel's list), a member of
        the round that this run did not claim (`claim_users`) and whose walk is unfinished
        (pending or failed) becomes ``dropped``: out of the round, which then completes without
        it. A member already walked to a final state keeps it: that observation is whole and
        true. Return how many were dropped.

        :param drop_unnamed: (a ``--new-round`` run, whose input is the panel's list) make each
            unfinished member of the round that this run did not claim ``dropped``.
        """
        with self._transaction() as conn:
            current = _current_round(conn)
            dropped = 0
            if drop_unnamed:
                conn.execute("CREATE TEMP TABLE IF NOT EXISTS claimed (username TEXT PRIMARY KEY)")
                dropped = conn.execute(
                    "UPDATE users SET state = 'dropped', updated_at = ? WHERE round = ?"
                    " AND state IN ('pending', 'failed')"
                    " AND username NOT IN (SELECT username FROM temp.claimed)",
                    (_utc_stamp(self._clock()), current),
                ).rowcount
            conn.execute("UPDATE rounds SET input_open = 0 WHERE number = ?", (current,))
        return dropped

    def awaited_users(self) -> int:
        """Return the users the current round's input may still name: none once it was read.

        While a run on a round after the first has not read its input to the end, the users of
        earlier rounds that have not joined it yet (and are not left to walk there) are
        expected to: a panel's list mostly names the same users round after round.
        """
        conn = self._db
        current = _current_round(conn)
        row = conn.execute("SELECT input_open FROM rounds WHERE number = ?", (current,)).fetchone()
        if current < 2 or row is None or not row[0]:
            return 0
        return int(
            conn.execute(
                "SELECT count(*) FROM users WHERE round < ? AND state NOT IN ('pending', 'failed')",
                (current,),
            ).fetchone()[0]
        )

    def round_stops_at_known(self, number: int | None = None) -> bool:
        """Tell whether a round (the current one by default) stops walks at known videos.

        :param number: the round (None: the current one).
        """
        row = self._db.execute(
            "SELECT stop_at_known FROM rounds WHERE number = ?",
            (self.current_round if number is None else number,),
        ).fetchone()
        return bool(row and row[0])

    def rounds(self) -> list[RoundRecord]:
        """Return every round, oldest first, with its users per state, videos and requests."""
        conn = self._db
        states: dict[int, dict[UserState, int]] = {}
        partial: dict[int, int] = {}
        for number, state, count, parts in conn.execute(
            "SELECT round, state, count(*), sum(partial) FROM ("
            " SELECT round, state, partial FROM user_rounds"
            " UNION ALL SELECT round, state, partial FROM users) GROUP BY round, state"
        ):
            states.setdefault(number, dict.fromkeys(UserState, 0))[UserState(state)] = count
            partial[number] = partial.get(number, 0) + int(parts or 0)
        videos = dict(conn.execute("SELECT round, count(*) FROM videos GROUP BY round"))
        requests = dict(conn.execute("SELECT round, sum(requests) FROM runs GROUP BY round"))
        return [
            RoundRecord(
                int(number),
                str(started),
                bool(stop),
                states.get(number, dict.fromkeys(UserState, 0)),
                partial.get(number, 0),
                int(videos.get(number, 0)),
                int(requests.get(number) or 0),
                not open_,
            )
            for number, started, stop, open_ in conn.execute(
                "SELECT number, started_at, stop_at_known, input_open FROM rounds ORDER BY number"
            )
        ]

    def round_record(self, number: int | None = None) -> RoundRecord:
        """Return one round's record (the current round by default), as `rounds` gives it.

        :param number: the round (None: the current one).
        """
        wanted = self.current_round if number is None else number
        for record in self.rounds():
            if record.number == wanted:
                return record
        raise ValueError(f"{str(self._path)!r} has no round {wanted}")

    def iter_round_users(self, number: int) -> Iterator[tuple[str, UserState, bool]]:
        """Stream (username, state, partial) of every user of a round, in input order.

        :param number: the round.
        """
        sql = (
            "SELECT o.username, o.state, o.partial FROM users AS u CROSS JOIN ("
            " SELECT username, state, partial FROM user_rounds WHERE round = ?"
            " UNION ALL SELECT username, state, partial FROM users WHERE round = ?"
            ") AS o ON o.username = u.username ORDER BY u.seq"
        )
        # Plain placeholders, the number twice: Python 3.12 deprecates numbered ones bound to a
        # sequence (an error from 3.14).
        for username, state, parts in self._stream(sql, (number, number), 1000):
            yield username, UserState(state), bool(parts)

    def round_videos(self, username: str, number: int) -> list[tuple[str, bytes]]:
        """Return one user's videos as observed in a round: (video_id, data), in API order.

        :param username: the user.
        :param number: the round.
        """
        rows = self._db.execute(
            "SELECT video_id, data FROM videos WHERE username = ? AND round = ? ORDER BY rowid",
            (username, number),
        )
        return [(str(video_id), bytes(data)) for video_id, data in rows]

    def had_videos_before(self, username: str, round: int | None = None) -> bool:
        """Tell whether a user had any video in a round before ``round`` (the current one).

        :param username: the user.
        :param round: the round whose earlier rounds count (None: the current one).
        """
        limit = self.current_round if round is None else round
        row = self._db.execute(
            "SELECT 1 FROM videos WHERE username = ? AND round < ? LIMIT 1", (username, limit)
        ).fetchone()
        return row is not None

    def known_video_ids(self, username: str, before: int | None = None) -> set[str]:
        """Return the ids of a user's list as last walked whole, in its latest round before
        ``before`` in which its walk ended ``done`` (completed as `completed_round_videos` does).

        ``before`` defaults to the current round; an empty set when there is no such round. A
        walk that failed, was cut short or is unfinished saw only part of the list: it is
        passed over, so that a later walk stopping at a known video stops on whole ground.

        :param username: the user.
        :param before: the round whose earlier rounds count (None: the current one).
        """
        limit = self.current_round if before is None else before
        rounds = user_rounds(self._db, username)
        base = done_before(rounds, limit)
        if base is None:
            return set()
        return {row[0] for row in completed(self._db, username, base, rounds, provenance=False)}

    def completed_round_videos(self, username: str, number: int) -> list[tuple[str, bytes, int]]:
        """Return one user's list in a round: (video_id, data, round observed in), in API order.

        A walk that stopped at a known video (``partial``) saw the head of the list only; it
        means "these, then the list as last walked before", so its list is completed from the
        user's latest earlier round in which its walk ended ``done`` (itself completed the same
        way, round after round): that list's videos past the last one this walk saw again,
        with the round they were observed in. Videos of that list that lay within what this
        walk saw and are not in it are left out: they were gone. Any other walk is given as
        observed (`round_videos`).

        :param username: the user.
        :param number: the round.
        """
        return [
            (video_id, data, observed)
            for video_id, data, observed, _, _ in completed(
                self._db, username, number, user_rounds(self._db, username), provenance=False
            )
        ]


def _finished(conn: sqlite3.Connection, number: int, retry_failed: bool) -> bool:
    """Tell whether a round is finished enough for the next one to start."""
    row = conn.execute("SELECT input_open FROM rounds WHERE number = ?", (number,)).fetchone()
    if row is not None and row[0]:
        return False  # a run has not read its whole input: more users may belong to the round
    waiting_states = ("pending", "failed") if retry_failed else ("pending",)
    marks = ",".join("?" * len(waiting_states))
    waiting = conn.execute(
        f"SELECT 1 FROM users WHERE round = ? AND state IN ({marks}) LIMIT 1",
        (number, *waiting_states),
    ).fetchone()
    # A round with no user at all (a run killed before its first name) is walked, not skipped.
    members = conn.execute("SELECT 1 FROM users WHERE round = ? LIMIT 1", (number,)).fetchone()
    return waiting is None and members is not None
