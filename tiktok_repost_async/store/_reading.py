"""The store's reading part: users, videos with or without provenance, pages, skipped lines."""

from __future__ import annotations

from collections.abc import Collection, Iterator
from typing import Any

from ._core import _StoreCore
from ._lists import completed, completing, user_rounds
from ._records import UserRecord, UserState, _check_count, _check_day, _row_to_record, _utc_day

_USER_COLUMNS = "username, state, cursor, pages, videos, requests, error"

# CROSS JOIN pins users as the outer loop: SQLite then walks users by seq and sorts only each
# user's own videos by rowid, instead of sorting the whole table before the first row comes out.
# {columns} and {join} add provenance; {where} picks the round(s).
_VIDEOS_IN_ORDER = (
    "SELECT v.username, v.video_id, v.data{columns} FROM users AS u "
    "CROSS JOIN videos AS v ON v.username = u.username{join}{where} ORDER BY u.seq, v.rowid"
)
# An empty log_id is how the pages table (NOT NULL since schema 2) records "none sent".
_PROVENANCE_COLUMNS = ", v.round, p.fetched_at, nullif(p.log_id, '')"
_PROVENANCE_JOIN = " LEFT JOIN pages AS p ON p.id = v.page_id"
# Each user's latest round in which its walk reached a final state and saw the whole list (not
# partial: a stop-at-known walk saw only the head; not incomplete: a guard cut it short), else its
# latest round: what an export of a panel shows by default.
_LATEST_OBSERVATION = (
    " WHERE v.round = (SELECT coalesce(max(CASE WHEN o.state IN ('done', 'not_found',"
    " 'unavailable') AND NOT o.partial THEN o.round END), max(o.round)) FROM (SELECT round,"
    " state, partial FROM user_rounds WHERE username = u.username"
    " UNION ALL SELECT u.round, u.state, u.partial) AS o)"
)


class _StoreReading(_StoreCore):
    """Read what a store holds; every method streams or returns plain records."""

    def requests_on(self, day: str | None = None) -> int:
        """Return the requests recorded for a UTC day 'YYYY-MM-DD' (today by default).

        :param day: the UTC day 'YYYY-MM-DD' (None: today).
        """
        when = _check_day(day) if day is not None else _utc_day(self._clock())
        row = self._db.execute("SELECT count FROM requests WHERE day = ?", (when,)).fetchone()
        return int(row[0]) if row else 0

    def skipped_counts(self) -> dict[str, int]:
        """Return how many input lines were skipped, per reason."""
        self._flush_skipped()
        return dict(self._db.execute("SELECT reason, count FROM skipped_counts ORDER BY reason"))

    def skipped(self, limit: int = 100) -> list[tuple[int, str, str]]:
        """Return up to `limit` kept skipped lines as (line_no, raw, reason), oldest first.

        :param limit: the most lines to return.
        """
        _check_count("limit", limit)
        self._flush_skipped()
        rows = self._db.execute(
            "SELECT line_no, raw, reason FROM skipped ORDER BY rowid LIMIT ?", (limit,)
        )
        return [(int(n), str(raw), str(reason)) for n, raw, reason in rows]

    def state_counts(self) -> dict[UserState, int]:
        """Return how many users are in each state (every state present, 0 when none)."""
        counts = dict.fromkeys(UserState, 0)
        for state, count in self._db.execute("SELECT state, count(*) FROM users GROUP BY state"):
            counts[UserState(state)] = count
        return counts

    def video_count(self) -> int:
        """Return the observations of videos stored, every round's (one per video and round)."""
        return int(self._db.execute("SELECT count(*) FROM videos").fetchone()[0])

    def latest_video_count(self) -> int:
        """Return the videos of each user's latest whole list: what `iter_videos` gives."""
        where = _LATEST_OBSERVATION if self.current_round > 1 else ""
        sql = (
            "SELECT count(*) FROM users AS u CROSS JOIN videos AS v ON v.username = u.username"
            + where
        )
        return int(self._db.execute(sql).fetchone()[0])

    def user(self, username: str) -> UserRecord | None:
        """Return one user's record, or None if the store does not know the name.

        :param username: the user's name as stored.
        """
        row = self._db.execute(
            f"SELECT {_USER_COLUMNS} FROM users WHERE username = ?", (username,)
        ).fetchone()
        return _row_to_record(row) if row else None

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
        rows = self._db.execute(
            f"SELECT {_USER_COLUMNS} FROM users WHERE state = ? ORDER BY seq LIMIT ?",
            (UserState(state).value, -1 if limit is None else limit),
        )
        return [_row_to_record(row) for row in rows]

    def iter_users(self, states: Collection[UserState] | None = None) -> Iterator[UserRecord]:
        """Stream user records in input order, optionally only those in the given states.

        :param states: only users in these states (None: every user).
        """
        params: tuple[str, ...] = ()
        if states is None:
            sql = f"SELECT {_USER_COLUMNS} FROM users ORDER BY seq"
        else:
            wanted = tuple(UserState(s).value for s in states)
            marks = ",".join("?" * len(wanted))
            sql = f"SELECT {_USER_COLUMNS} FROM users WHERE state IN ({marks}) ORDER BY seq"
            params = wanted
        for row in self._stream(sql, params, 1000):
            yield _row_to_record(row)

    def iter_videos(
        self, batch: int = 1000, *, round: int | None = None
    ) -> Iterator[tuple[str, str, bytes]]:
        """Stream (reposted_by username, video_id, data) in user input order, then API order.

        :param batch: rows fetched from SQLite at a time.
        :param round: the round whose list of each user to give, a walk that stopped at a known
            video (partial) completed from the rounds before it (see
            `completed_round_videos`); by default each user's latest round in which its walk
            reached a final state and saw the whole list, neither partial nor incomplete (else
            its latest round): in a store of one round, every video.
        """
        sql, params = self._videos_query(batch, round, provenance=False)
        rows = self._stream(sql, params, batch)
        yield from rows if round is None else self._completing(rows, round, provenance=False)

    def iter_videos_with_provenance(
        self, batch: int = 1000, *, round: int | None = None
    ) -> Iterator[tuple[str, str, bytes, int, str | None, str | None]]:
        """Stream videos as `iter_videos` does, with their round, and their page's fetched_at
        and log_id added.

        fetched_at and log_id are None for videos stored before provenance was recorded
        (schema version 1). A partial walk's list completed from earlier rounds gives those
        videos with the round they were observed in.

        :param batch: rows fetched from the database at a time.
        :param round: the round whose list of each user to give, as for `iter_videos` (None: each
            user's latest whole one).
        """
        sql, params = self._videos_query(batch, round, provenance=True)
        rows = self._stream(sql, params, batch)
        yield from rows if round is None else self._completing(rows, round, provenance=True)

    def _completing(self, rows: Iterator[Any], number: int, *, provenance: bool) -> Iterator[Any]:
        """Pass a round's rows on, each partial walk's list followed by its completion."""
        db = self._db
        return completing(
            rows,
            number,
            provenance=provenance,
            rounds_of=lambda username: user_rounds(db, username),
            list_of=lambda username, rounds: completed(
                db, username, number, rounds, provenance=provenance
            ),
        )

    def _videos_query(
        self, batch: int, round: int | None, *, provenance: bool
    ) -> tuple[str, tuple[int, ...]]:
        if not isinstance(batch, int) or batch < 1:
            raise ValueError(f"batch must be a positive int, not {batch!r}")
        params: tuple[int, ...] = ()
        if round is not None:
            self._check_round(round)
            where, params = " WHERE v.round = ?", (round,)
        elif self.current_round > 1:
            where = _LATEST_OBSERVATION
        else:
            where = ""  # one round: every video, without a per-row lookup
        sql = _VIDEOS_IN_ORDER.format(
            columns=_PROVENANCE_COLUMNS if provenance else "",
            join=_PROVENANCE_JOIN if provenance else "",
            where=where,
        )
        return sql, params

    def _check_round(self, number: int) -> int:
        if isinstance(number, bool) or not isinstance(number, int):
            raise TypeError(f"a round is an int, not {number!r}")
        current = self.current_round
        if not 1 <= number <= current:
            raise ValueError(
                f"{str(self._path)!r} has no round {number}: its rounds are 1 to {current}"
            )
        return number

    def iter_pages(
        self, username: str | None = None
    ) -> Iterator[tuple[str, int, int, bool, int, str | None, str, int | None]]:
        """Stream the stored pages' provenance, for one user or all, in the order they were stored.

        Each is (username, cursor sent, next cursor, has_more, videos in the answer, log_id,
        fetched_at, run id); log_id is None when the answer carried none.

        :param username: the user (None: every user).
        """
        sql = (
            "SELECT username, cursor, next_cursor, has_more, videos, nullif(log_id, ''),"
            " fetched_at, run_id FROM pages"
        )
        params: tuple[str, ...] = ()
        if username is not None:
            sql += " WHERE username = ?"
            params = (username,)
        for row in self._stream(sql + " ORDER BY id", params, 1000):
            name, cursor, next_cursor, has_more, videos, log_id, fetched_at, run_id = row
            yield name, cursor, next_cursor, bool(has_more), videos, log_id, fetched_at, run_id
