"""A panel's rounds on the PostgreSQL store: rounds, their members, their lists, by round reads.

`_PgRounds` is a part of `PostgresStore` and gives it what `_rounds`, `_lists` and the by-round
reading give the SQLite `Store`, with the same meaning: a round is what its input names and is
complete when that input was read to its end and each of its members has a final state; a member
of an earlier round joins a later one from cursor 0, its earlier state kept in
``tiktok_user_rounds`` (SQLite's ``user_rounds``); a walk that stopped at a known video is
completed from the rounds before it (`_lists.complete_chain`, the one code for both engines).

Several processes may run one round on one store. Starting a round is one transaction under an
advisory lock (`_ROUND_LOCK`): two processes running ``--new-round`` or ``--new-round-every`` at
once start one round, and the second resumes it. A process ending its input drops from the round
only the unfinished members that its input did not name and that no other live process walks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Final, TypeVar

from ._lists import Row, complete_chain, completing, done_before
from ._records import (
    RoundRecord,
    RoundSchedule,
    UserState,
    _parse_utc_stamp,
    _utc_stamp,
    check_cadence,
)

__all__ = ["_ROUND_TABLES", "_PgRounds"]

T = TypeVar("T")

_STATE_CHECK: Final = ", ".join(f"'{s.value}'" for s in UserState)
# One lock key for starting a round: whoever holds it reads the latest round and adds the next.
_ROUND_LOCK: Final = 0x7469_6B72_6F75  # "tikrou"
_CURRENT: Final = "(SELECT coalesce(max(number), 1) FROM tiktok_rounds)"

#: The tables of the rounds (schema version 2): each user's state in the earlier rounds it took
#: part in, as SQLite's ``user_rounds``.
_ROUND_TABLES: Final = (
    f"""CREATE TABLE IF NOT EXISTS tiktok_user_rounds (
        username text NOT NULL REFERENCES tiktok_users (username),
        round    integer NOT NULL,
        state    text NOT NULL CHECK (state IN ({_STATE_CHECK})),
        pages    bigint NOT NULL,
        videos   bigint NOT NULL,
        requests bigint NOT NULL,
        error    text,
        partial  integer NOT NULL,
        PRIMARY KEY (username, round))""",
)

# Each user's latest round in which its walk reached a final state and saw the whole list (not
# partial, not incomplete), else its latest round: what an export of a panel gives by default.
_LATEST: Final = (
    "SELECT u.username, u.seq, (SELECT coalesce(max(CASE WHEN o.state IN ('done', 'not_found',"
    " 'unavailable') AND o.partial = 0 THEN o.round END), max(o.round)) FROM (SELECT round,"
    " state, partial FROM tiktok_user_rounds AS r WHERE r.username = u.username"
    " UNION ALL SELECT u.round, u.state, u.partial) AS o) AS round FROM tiktok_users AS u"
)
_PROVENANCE: Final = ", v.round, p.fetched_at, nullif(p.log_id, '')"
_PROVENANCE_JOIN: Final = " LEFT JOIN tiktok_pages AS p ON p.id = v.page_id"


class _PgRounds:
    """Start, resume and read the rounds of a panel in a PostgreSQL store."""

    # Set by PostgresStore.__init__; declared here so that this part is typed against them.
    _clock: Callable[[], float]
    _label: str
    _holder: str
    # Whether this connection's temporary table of the names read exists yet.
    _named_ready: bool = False

    if TYPE_CHECKING:

        def _tx(self, work: Callable[[Any], T]) -> T: ...

        def _read(self, sql: str, params: Sequence[object] = ()) -> list[Any]: ...

        def _stream(self, sql: str, params: Sequence[object], batch: int) -> Iterator[Any]: ...

    # -- which round -----------------------------------------------------------------------

    @property
    def current_round(self) -> int:
        """Return the number of the latest round: the one a harvest walks."""
        return int(self._read(_CURRENT)[0][0])

    def start_round(
        self, *, stop_at_known: bool = False, retry_failed: bool = True, every: float | None = None
    ) -> tuple[int, bool]:
        """Start the next round of a panel, unless the current one is not finished yet.

        Return ``(round, started)``, as `Store.start_round` does: an unfinished round (its input
        not read to the end, no member yet, members pending, or failed ones when
        ``retry_failed``) is resumed instead. One transaction under a lock: of several processes
        asking at once, one starts the round and the others resume it.

        :param stop_at_known: the new round's walks stop at the first page holding a known video.
        :param retry_failed: failed members keep the current round unfinished.
        :param every: the cadence of a scheduled run (seconds): start only once the next round is
            due (`RoundSchedule.starts_now`), read under the same lock.
        """
        if every is not None:
            every = check_cadence(every)
        now = self._clock()

        def work(conn: Any) -> tuple[int, bool]:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_ROUND_LOCK,))
            current = int(conn.execute(_CURRENT).fetchone()[0])
            if not _finished(conn, current, retry_failed):
                return current, False
            if every is not None:
                schedule = RoundSchedule(every, current, _started(conn, current, now), True)
                if not schedule.starts_now(now):
                    return current, False
            conn.execute(
                "INSERT INTO tiktok_rounds (number, started_at, stop_at_known) VALUES (%s, %s, %s)",
                (current + 1, _utc_stamp(now), int(stop_at_known)),
            )
            return current + 1, True

        return self._tx(work)

    @property
    def round_cadence(self) -> float | None:
        """Return the cadence of the panel's rounds in seconds (`set_round_cadence`), or None."""
        rows = self._read("SELECT value FROM tiktok_meta WHERE key = 'new_round_every'")
        return float(rows[0][0]) if rows else None

    def set_round_cadence(self, every: float | None) -> None:
        """Record the cadence of the panel's rounds (seconds; None forgets it).

        :param every: the cadence in seconds (None forgets it).
        """
        if every is not None:
            every = check_cadence(every)

        def work(conn: Any) -> None:
            if every is None:
                conn.execute("DELETE FROM tiktok_meta WHERE key = 'new_round_every'")
            else:
                conn.execute(
                    "INSERT INTO tiktok_meta (key, value) VALUES ('new_round_every', %s)"
                    " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (repr(float(every)),),
                )

        self._tx(work)

    def round_schedule(
        self, every: float | None = None, *, retry_failed: bool = True
    ) -> RoundSchedule | None:
        """Return when the next round is due under ``every`` (the recorded cadence by default),
        and whether the latest round is finished; None without a cadence.

        :param every: the cadence in seconds (default: `round_cadence`).
        :param retry_failed: whether failed users keep the latest round unfinished.
        """
        every = self.round_cadence if every is None else check_cadence(every)
        if every is None:
            return None
        now = self._clock()

        def work(conn: Any) -> RoundSchedule:
            current = int(conn.execute(_CURRENT).fetchone()[0])
            started = _started(conn, current, now)
            return RoundSchedule(every, current, started, _finished(conn, current, retry_failed))

        return self._tx(work)

    def round_stops_at_known(self, number: int | None = None) -> bool:
        """Tell whether a round (the current one by default) stops walks at known videos.

        :param number: the round (None: the current one).
        """
        rows = self._read(
            "SELECT stop_at_known FROM tiktok_rounds WHERE number = %s",
            (self.current_round if number is None else number,),
        )
        return bool(rows and rows[0][0])

    # -- a round's members -------------------------------------------------------------------

    def _join_round(self, conn: Any, claimed: list[str], named: list[str], stamp: str) -> None:
        """Bring the users this process claimed into the current round; note the names read.

        A user last walked in an earlier round joins this one from cursor 0, its state there
        kept in ``tiktok_user_rounds``; a member dropped from this round is back, pending at its
        cursor. Runs inside `claim_users`' transaction, so that its answer (state, cursor) is
        the joined one.
        """
        if not self._named_ready:
            # Every name this run's input named (claimed here or walked elsewhere): what
            # end_round_input(drop_unnamed=True) keeps in the round.
            conn.execute("CREATE TEMP TABLE IF NOT EXISTS named (username text PRIMARY KEY)")
            self._named_ready = True
        conn.execute("INSERT INTO named SELECT unnest(%s::text[]) ON CONFLICT DO NOTHING", (named,))
        if not claimed:
            return
        current = int(conn.execute(_CURRENT).fetchone()[0])
        if current > 1:
            conn.execute(
                "INSERT INTO tiktok_user_rounds (username, round, state, pages, videos, requests,"
                " error, partial) SELECT username, round, state, pages, videos, requests, error,"
                " partial FROM tiktok_users WHERE round < %s AND username = ANY(%s)"
                " ON CONFLICT (username, round) DO UPDATE SET state = excluded.state,"
                " pages = excluded.pages, videos = excluded.videos, requests = excluded.requests,"
                " error = excluded.error, partial = excluded.partial",
                (current, claimed),
            )
            conn.execute(
                "UPDATE tiktok_users SET round = %s, state = 'pending', cursor = 0, pages = 0,"
                " videos = 0, requests = 0, error = NULL, partial = 0, updated_at = %s"
                " WHERE round < %s AND username = ANY(%s)",
                (current, stamp, current, claimed),
            )
        conn.execute(
            "UPDATE tiktok_users SET state = 'pending', updated_at = %s WHERE round = %s"
            " AND state = 'dropped' AND username = ANY(%s)",
            (stamp, current, claimed),
        )

    def begin_round_input(self) -> None:
        """Note that a run starts reading its input into the current round.

        Until `end_round_input` the round is not finished: a run killed before the end of its
        input has not told which users the round holds.
        """

        def work(conn: Any) -> None:
            conn.execute(f"UPDATE tiktok_rounds SET input_open = 1 WHERE number = {_CURRENT}")
            conn.execute("CREATE TEMP TABLE IF NOT EXISTS named (username text PRIMARY KEY)")
            conn.execute("TRUNCATE named")

        self._tx(work)
        self._named_ready = True

    def end_round_input(self, *, drop_unnamed: bool = False) -> int:
        """Note that the run has read its whole input: the current round's users are all known.

        With ``drop_unnamed`` (a ``--new-round`` run), an unfinished member (pending or failed)
        that this run's input did not name becomes ``dropped``, unless another live process
        walks it now. Return how many were dropped.

        :param drop_unnamed: (a ``--new-round`` run, whose input is the panel's list) make each
            unfinished member of the round that this run did not claim ``dropped``.
        """
        stamp = _utc_stamp(self._clock())

        def work(conn: Any) -> int:
            current = int(conn.execute(_CURRENT).fetchone()[0])
            dropped = 0
            if drop_unnamed:
                conn.execute("CREATE TEMP TABLE IF NOT EXISTS named (username text PRIMARY KEY)")
                dropped = conn.execute(
                    "UPDATE tiktok_users AS u SET state = 'dropped', updated_at = %s"
                    " WHERE round = %s AND state IN ('pending', 'failed')"
                    " AND NOT EXISTS (SELECT 1 FROM named AS n WHERE n.username = u.username)"
                    " AND NOT EXISTS (SELECT 1 FROM tiktok_claims AS c WHERE c.username ="
                    " u.username AND c.holder <> %s AND c.expires > now())",
                    (stamp, current, self._holder),
                ).rowcount
            conn.execute("UPDATE tiktok_rounds SET input_open = 0 WHERE number = %s", (current,))
            return int(dropped)

        return self._tx(work)

    def awaited_users(self) -> int:
        """Return the users the current round's input may still name: none once it was read."""
        current = self.current_round
        rows = self._read("SELECT input_open FROM tiktok_rounds WHERE number = %s", (current,))
        if current < 2 or not rows or not rows[0][0]:
            return 0
        return int(
            self._read(
                "SELECT count(*) FROM tiktok_users WHERE round < %s"
                " AND state NOT IN ('pending', 'failed')",
                (current,),
            )[0][0]
        )

    # -- the rounds' figures -------------------------------------------------------------------

    def rounds(self) -> list[RoundRecord]:
        """Return every round, oldest first, with its users per state, videos and requests."""
        states: dict[int, dict[UserState, int]] = {}
        partial: dict[int, int] = {}
        for number, state, count, parts in self._read(
            "SELECT round, state, count(*), sum(partial) FROM (SELECT round, state, partial FROM"
            " tiktok_user_rounds UNION ALL SELECT round, state, partial FROM tiktok_users) AS o"
            " GROUP BY round, state"
        ):
            states.setdefault(int(number), dict.fromkeys(UserState, 0))[UserState(state)] = int(
                count
            )
            partial[int(number)] = partial.get(int(number), 0) + int(parts or 0)
        videos = {
            int(n): int(c)
            for n, c in self._read("SELECT round, count(*) FROM tiktok_videos GROUP BY round")
        }
        requests = {
            int(n): int(c or 0)
            for n, c in self._read("SELECT round, sum(requests) FROM tiktok_runs GROUP BY round")
        }
        return [
            RoundRecord(
                int(number),
                str(started),
                bool(stop),
                states.get(int(number), dict.fromkeys(UserState, 0)),
                partial.get(int(number), 0),
                videos.get(int(number), 0),
                requests.get(int(number), 0),
                not open_,
            )
            for number, started, stop, open_ in self._read(
                "SELECT number, started_at, stop_at_known, input_open FROM tiktok_rounds"
                " ORDER BY number"
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
        raise ValueError(f"{self._label} has no round {wanted}")

    # -- a user's lists --------------------------------------------------------------------------

    def iter_round_users(self, number: int) -> Iterator[tuple[str, UserState, bool]]:
        """Stream (username, state, partial) of every user of a round, in input order.

        :param number: the round.
        """
        sql = (
            "SELECT o.username, o.state, o.partial FROM tiktok_users AS u JOIN ("
            " SELECT username, state, partial FROM tiktok_user_rounds WHERE round = %s"
            " UNION ALL SELECT username, state, partial FROM tiktok_users WHERE round = %s"
            ") AS o ON o.username = u.username ORDER BY u.seq"
        )
        for username, state, parts in self._stream(sql, (number, number), 1000):
            yield str(username), UserState(state), bool(parts)

    def round_videos(self, username: str, number: int) -> list[tuple[str, bytes]]:
        """Return one user's videos as observed in a round: (video_id, data), in API order.

        :param username: the user.
        :param number: the round.
        """
        return [(row[0], row[1]) for row in self._observed(username, number, provenance=False)]

    def had_videos_before(self, username: str, round: int | None = None) -> bool:
        """Tell whether a user had any video in a round before ``round`` (the current one).

        :param username: the user.
        :param round: the round whose earlier rounds count (None: the current one).
        """
        limit = self.current_round if round is None else round
        rows = self._read(
            "SELECT 1 FROM tiktok_videos WHERE username = %s AND round < %s LIMIT 1",
            (username, limit),
        )
        return bool(rows)

    def known_video_ids(self, username: str, before: int | None = None) -> set[str]:
        """Return the ids of a user's list as last walked whole, in its latest round before
        ``before`` (the current one) in which its walk ended ``done``; none without one.

        :param username: the user.
        :param before: the round whose earlier rounds count (None: the current one).
        """
        limit = self.current_round if before is None else before
        rounds = self._user_rounds(username)
        base = done_before(rounds, limit)
        if base is None:
            return set()
        return {row[0] for row in self._completed(username, base, rounds, provenance=False)}

    def completed_round_videos(self, username: str, number: int) -> list[tuple[str, bytes, int]]:
        """Return one user's list in a round: (video_id, data, round observed in), in API order,
        a walk that stopped at a known video completed from the rounds before it.

        :param username: the user.
        :param number: the round.
        """
        rounds = self._user_rounds(username)
        return [
            (video_id, data, observed)
            for video_id, data, observed, _, _ in self._completed(
                username, number, rounds, provenance=False
            )
        ]

    def _user_rounds(self, username: str) -> dict[int, tuple[str, bool]]:
        rows = self._read(
            "SELECT round, state, partial FROM tiktok_user_rounds WHERE username = %s"
            " UNION ALL SELECT round, state, partial FROM tiktok_users WHERE username = %s",
            (username, username),
        )
        return {int(number): (str(state), bool(parts)) for number, state, parts in rows}

    def _completed(
        self, username: str, number: int, rounds: dict[int, tuple[str, bool]], *, provenance: bool
    ) -> list[Row]:
        return complete_chain(
            number, rounds, lambda n: self._observed(username, n, provenance=provenance)
        )

    def _observed(self, username: str, number: int, *, provenance: bool) -> list[Row]:
        if not provenance:
            rows = self._read(
                "SELECT video_id, data FROM tiktok_videos WHERE username = %s AND round = %s"
                " ORDER BY id",
                (username, number),
            )
            return [(str(video_id), bytes(data), number, None, None) for video_id, data in rows]
        rows = self._read(
            "SELECT v.video_id, v.data, p.fetched_at, nullif(p.log_id, '') FROM tiktok_videos"
            f" AS v{_PROVENANCE_JOIN} WHERE v.username = %s AND v.round = %s ORDER BY v.id",
            (username, number),
        )
        return [
            (str(video_id), bytes(data), number, fetched_at, log_id)
            for video_id, data, fetched_at, log_id in rows
        ]

    # -- videos by round ---------------------------------------------------------------------

    def latest_video_count(self) -> int:
        """Return the videos of each user's latest whole list: what `iter_videos` gives."""
        if self.current_round < 2:
            return int(self._read("SELECT count(*) FROM tiktok_videos")[0][0])
        return int(
            self._read(
                f"WITH l AS ({_LATEST}) SELECT count(*) FROM l JOIN tiktok_videos AS v"
                " ON v.username = l.username AND v.round = l.round"
            )[0][0]
        )

    def iter_videos(
        self, batch: int = 1000, *, round: int | None = None
    ) -> Iterator[tuple[str, str, bytes]]:
        """Stream (reposted_by username, video_id, data) in user input order, then API order.

        :param batch: rows fetched from the server at a time.
        :param round: the round whose list of each user to give, a walk that stopped at a known
            video completed from the rounds before it; by default each user's latest round in
            which its walk reached a final state and saw the whole list (else its latest).
        """
        for row in self._videos(batch, round, provenance=False):
            yield str(row[0]), str(row[1]), bytes(row[2])

    def iter_videos_with_provenance(
        self, batch: int = 1000, *, round: int | None = None
    ) -> Iterator[tuple[str, str, bytes, int, str | None, str | None]]:
        """Stream videos as `iter_videos` does, with their round, and their page's fetched_at
        and log_id added.

        :param batch: rows fetched from the database at a time.
        :param round: the round whose list of each user to give, as for `iter_videos` (None: each
            user's latest whole one).
        """
        for username, video_id, data, observed, fetched_at, log_id in self._videos(
            batch, round, provenance=True
        ):
            yield str(username), str(video_id), bytes(data), int(observed), fetched_at, log_id

    def _videos(self, batch: int, round: int | None, *, provenance: bool) -> Iterator[Any]:
        if not isinstance(batch, int) or isinstance(batch, bool) or batch < 1:
            raise ValueError(f"batch must be a positive int, not {batch!r}")
        columns = _PROVENANCE if provenance else ""
        join = _PROVENANCE_JOIN if provenance else ""
        current = self.current_round
        if round is not None:
            if isinstance(round, bool) or not isinstance(round, int):
                raise TypeError(f"a round is an int, not {round!r}")
            if not 1 <= round <= current:
                raise ValueError(
                    f"{self._label} has no round {round}: its rounds are 1 to {current}"
                )
            sql = (
                f"SELECT v.username, v.video_id, v.data{columns} FROM tiktok_users AS u"
                f" JOIN tiktok_videos AS v ON v.username = u.username{join}"
                " WHERE v.round = %s ORDER BY u.seq, v.id"
            )
            return self._completing(self._stream(sql, (round,), batch), round, provenance)
        if current < 2:
            # One round: every video, without a per-user lookup.
            sql = (
                f"SELECT v.username, v.video_id, v.data{columns} FROM tiktok_users AS u"
                f" JOIN tiktok_videos AS v ON v.username = u.username{join} ORDER BY u.seq, v.id"
            )
        else:
            sql = (
                f"WITH l AS ({_LATEST}) SELECT v.username, v.video_id, v.data{columns} FROM l"
                f" JOIN tiktok_videos AS v ON v.username = l.username AND v.round = l.round"
                f"{join} ORDER BY l.seq, v.id"
            )
        return self._stream(sql, (), batch)

    def _completing(self, rows: Iterator[Any], number: int, provenance: bool) -> Iterator[Any]:
        """Pass a round's rows on, each partial walk's list followed by its completion."""
        return completing(
            rows,
            number,
            provenance=provenance,
            rounds_of=self._user_rounds,
            list_of=lambda username, rounds: self._completed(
                username, number, rounds, provenance=provenance
            ),
        )


def _finished(conn: Any, number: int, retry_failed: bool) -> bool:
    """Tell whether a round is finished enough for the next one to start."""
    row = conn.execute(
        "SELECT input_open FROM tiktok_rounds WHERE number = %s", (number,)
    ).fetchone()
    if row is not None and row[0]:
        return False  # a run has not read its whole input: more users may belong to the round
    waiting = ["pending", "failed"] if retry_failed else ["pending"]
    row = conn.execute(
        "SELECT count(*) FILTER (WHERE state = ANY(%s)), count(*) FROM tiktok_users"
        " WHERE round = %s",
        (waiting, number),
    ).fetchone()
    # A round with no user at all (a run killed before its first name) is walked, not skipped.
    return int(row[0]) == 0 and int(row[1]) > 0


def _started(conn: Any, number: int, now: float) -> float:
    row = conn.execute(
        "SELECT started_at FROM tiktok_rounds WHERE number = %s", (number,)
    ).fetchone()
    return _parse_utc_stamp(str(row[0])) if row else now
