"""The one store interface that harvest, status and export talk to: `StoreLike`.

Two engines implement it: `Store` (SQLite, one harvest process at a time under its run lock) and
`PostgresStore` (several processes sharing users through claims). Nothing of either's SQL leaks
through it. A harvest, a panel's rounds, diffs, data frames and the refresh (`refresher`) take
either.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, Self

from ._records import PageCommit, RoundRecord, RoundSchedule, RunRecord, UserRecord, UserState
from ._refreshes import RefreshBatch, RefreshRecord

if TYPE_CHECKING:
    from ._postgres import PostgresStore
    from ._store import Store

__all__ = ["StoreLike"]


class StoreLike(Protocol):
    """Name what a harvest, ``status``, ``export``, ``diff``, the data frames and the refresh
    need of a store, whatever its engine."""

    @property
    def shared(self) -> bool:
        """Tell whether several processes may harvest into the store at once."""
        ...

    @property
    def path(self) -> Path | str:
        """Return what names the store: its file, or its URL with the password masked."""
        ...

    @property
    def label(self) -> str:
        """Return the store's name for people, with any password masked."""
        ...

    @property
    def fields(self) -> tuple[str, ...]:
        """Return the video fields the store was created for."""
        ...

    @property
    def max_count(self) -> int:
        """Return the page size the store was created for."""
        ...

    @property
    def current_round(self) -> int:
        """Return the number of the latest round."""
        ...

    def close(self) -> None:
        """Let go of the run, the claims and the connection."""
        ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    # -- a harvest run ----------------------------------------------------------------------

    def acquire_run_lock(self) -> None:
        """Take the store for a harvest (SQLite: exclusively; PostgreSQL: join the others)."""
        ...

    def release_run_lock(self) -> None:
        """Let go of what `acquire_run_lock` took."""
        ...

    def claim_users(
        self, usernames: Sequence[str]
    ) -> list[tuple[str, UserState, int] | str | None]:
        """Add and claim names: (username, state, cursor), None for a duplicate, or the name of
        the live process that walks the user.

        :param usernames: the names, as read from the input (each a non-empty str); a name given
            twice gives None the second time.
        """
        ...

    def release_claims(self, usernames: Collection[str]) -> None:
        """Let go of this process's claims on users whose walks ended or never began.

        :param usernames: the users whose claims to let go of.
        """
        ...

    def orphaned_users(self) -> tuple[list[str], int]:
        """Return unfinished users whose holder died, and how many others hold now."""
        ...

    def begin_run(self, version: str) -> int:
        """Record the start of a run.

        :param version: the package version that runs, recorded with the run.
        """
        ...

    def end_run(self, outcome: str) -> None:
        """Record how the run ended.

        :param outcome: how the run ended: ``finished``, ``interrupted``, ``stopped: <reason>`` ...
        """
        ...

    def start_round(
        self, *, stop_at_known: bool = False, retry_failed: bool = True, every: float | None = None
    ) -> tuple[int, bool]:
        """Start the next round unless the current one is unfinished (or, with ``every``, the
        next is not due yet).

        :param stop_at_known: the new round's walks stop at the first page holding a video of the
            user's previous round.
        :param retry_failed: failed members keep the current round unfinished (a run walks them
            again); False leaves them failed and lets the next round start.
        :param every: the cadence of a scheduled run (seconds): start only once the next round is
            due; None: start it now if the current one is finished.
        """
        ...

    def set_round_cadence(self, every: float | None) -> None:
        """Record the cadence of the panel's rounds.

        :param every: the cadence in seconds (None forgets it).
        """
        ...

    def round_schedule(
        self, every: float | None = None, *, retry_failed: bool = True
    ) -> RoundSchedule | None:
        """Return when the next round is due, or None without a cadence.

        :param every: the cadence in seconds (default: the recorded one).
        :param retry_failed: whether failed users keep the latest round unfinished (a run walks them
            again), as `start_round` takes it.
        """
        ...

    def round_stops_at_known(self, number: int | None = None) -> bool:
        """Tell whether a round stops walks at known videos.

        :param number: the round (None: the current one).
        """
        ...

    def round_record(self, number: int | None = None) -> RoundRecord:
        """Return one round's record.

        :param number: the round (None: the current one).
        """
        ...

    def begin_round_input(self) -> None:
        """Note that a run starts reading its input."""
        ...

    def end_round_input(self, *, drop_unnamed: bool = False) -> int:
        """Note that the run read its whole input; return how many were dropped.

        :param drop_unnamed: (a ``--new-round`` run, whose input is the panel's list) make each
            unfinished member of the round that this run did not claim ``dropped``.
        """
        ...

    def had_videos_before(self, username: str, round: int | None = None) -> bool:
        """Tell whether a user had videos in an earlier round.

        :param username: the user.
        :param round: the round whose earlier rounds count (None: the current one).
        """
        ...

    def known_video_ids(self, username: str, before: int | None = None) -> set[str]:
        """Return the ids of the user's list as last walked whole.

        :param username: the user.
        :param before: the round whose earlier rounds count (None: the current one).
        """
        ...

    def clear_skipped(self) -> None:
        """Forget the bad input lines recorded so far."""
        ...

    def add_skipped(self, line_no: int, raw: str, reason: str) -> None:
        """Record a bad input line.

        :param line_no: the line's number in the input, from 1.
        :param raw: the line as read (its first 1,000 characters are kept).
        :param reason: why it was skipped, for people (``blank line``, ``duplicate`` ...).
        """
        ...

    def commit_pages(self, pages: Sequence[PageCommit]) -> list[int]:
        """Commit pages and their users' cursors in one transaction; return new videos each.

        :param pages: the pages, each with its user, videos, next cursor and provenance
            (`PageCommit`).
        """
        ...

    def finish_user(
        self,
        username: str,
        state: UserState,
        *,
        error: str | None = None,
        requests: int = 0,
        partial: bool = False,
    ) -> None:
        """Give a user a final state.

        :param username: the user.
        :param state: a final state (``done``, ``not_found``, ``unavailable``, ``incomplete``) or
            ``failed``.
        :param error: what went wrong, for a failed or incomplete user (None: nothing).
        :param requests: requests not yet counted, added to the user's and the day's count.
        :param partial: a ``done`` walk that stopped early at a video known from the user's previous
            round (a repeat round's ``stop_at_known``).
        """
        ...

    def book_requests(self, counts: Mapping[str, int], *, limit: int | None = None) -> bool:
        """Book requests before they leave, within ``limit`` for the day if given.

        :param counts: requests per username.
        :param limit: the day's budget: book nothing and return False if the day's count would pass
            it (None: book without a check).
        """
        ...

    def refund_requests(self, counts: Mapping[str, int], *, day: str) -> None:
        """Take back booked requests that never reached the API.

        :param counts: requests per username.
        :param day: the UTC day 'YYYY-MM-DD' they were booked on.
        """
        ...

    # -- reading ----------------------------------------------------------------------------

    def requests_on(self, day: str | None = None) -> int:
        """Return the requests of a UTC day.

        :param day: the UTC day 'YYYY-MM-DD' (None: today).
        """
        ...

    def state_counts(self) -> dict[UserState, int]:
        """Return the users per state."""
        ...

    def skipped_counts(self) -> dict[str, int]:
        """Return the skipped lines per reason."""
        ...

    def skipped(self, limit: int = 100) -> list[tuple[int, str, str]]:
        """Return kept skipped lines.

        :param limit: the most lines to return.
        """
        ...

    def runs(self, limit: int | None = None) -> list[RunRecord]:
        """Return the runs, newest first.

        :param limit: the most runs to return (None: all).
        """
        ...

    def run_count(self) -> int:
        """Return how many runs were recorded."""
        ...

    def rounds(self) -> list[RoundRecord]:
        """Return every round."""
        ...

    def awaited_users(self) -> int:
        """Return the users the current round's input may still name."""
        ...

    def video_count(self) -> int:
        """Return the observations of videos stored."""
        ...

    def latest_video_count(self) -> int:
        """Return the videos `iter_videos` gives."""
        ...

    def failed_users(self, limit: int | None = None) -> list[UserRecord]:
        """Return failed users in input order.

        :param limit: the most users to return (None: all).
        """
        ...

    def users_in(self, state: UserState, limit: int | None = None) -> list[UserRecord]:
        """Return the users in a state, in input order.

        :param state: the state.
        :param limit: the most users to return (None: all).
        """
        ...

    def iter_users(self, states: Collection[UserState] | None = None) -> Iterator[UserRecord]:
        """Stream user records in input order.

        :param states: only users in these states (None: every user).
        """
        ...

    def iter_videos(
        self, batch: int = 1000, *, round: int | None = None
    ) -> Iterator[tuple[str, str, bytes]]:
        """Stream (username, video_id, data) in input order, then API order.

        :param batch: rows fetched from the database at a time.
        :param round: the round whose list of each user to give, a walk that stopped at a known
            video completed from the rounds before it; by default each user's latest round in which
            its walk reached a final state and saw the whole list.
        """
        ...

    def iter_videos_with_provenance(
        self, batch: int = 1000, *, round: int | None = None
    ) -> Iterator[tuple[str, str, bytes, int, str | None, str | None]]:
        """Stream videos with their round, fetched_at and log_id.

        :param batch: rows fetched from the database at a time.
        :param round: the round whose list of each user to give, as for `iter_videos` (None: each
            user's latest whole one).
        """
        ...

    def iter_round_users(self, number: int) -> Iterator[tuple[str, UserState, bool]]:
        """Stream (username, state, partial) of every user of a round, in input order.

        :param number: the round.
        """
        ...

    def round_videos(self, username: str, number: int) -> list[tuple[str, bytes]]:
        """Return one user's videos as observed in a round, in API order.

        :param username: the user.
        :param number: the round.
        """
        ...

    def completed_round_videos(self, username: str, number: int) -> list[tuple[str, bytes, int]]:
        """Return one user's list in a round, a stop-at-known walk completed from earlier ones.

        :param username: the user.
        :param number: the round.
        """
        ...

    def to_arrow(
        self, *, round: int | None = None, provenance: bool = False, id_type: str = "number"
    ) -> Any:
        """Return the videos as a ``pyarrow.Table``.

        :param round: the videos as observed in this round (default: each user's latest complete
            list).
        :param provenance: add ``round``, and ``fetched_at`` (UTC) and ``log_id`` of each video's
            page.
        :param id_type: ids as ``number`` (exact decimals) or ``string`` (the text of their digits).
        """
        ...

    def to_pandas(
        self, *, round: int | None = None, provenance: bool = False, id_type: str = "number"
    ) -> Any:
        """Return the videos as a ``pandas.DataFrame``.

        :param round: the videos as observed in this round (default: each user's latest complete
            list).
        :param provenance: add ``round``, and ``fetched_at`` (UTC) and ``log_id`` of each video's
            page.
        :param id_type: ids as ``number`` (exact decimals) or ``string`` (the text of their digits).
        """
        ...

    def to_polars(
        self, *, round: int | None = None, provenance: bool = False, id_type: str = "number"
    ) -> Any:
        """Return the videos as a ``polars.DataFrame``.

        :param round: the videos as observed in this round (default: each user's latest complete
            list).
        :param provenance: add ``round``, and ``fetched_at`` (UTC) and ``log_id`` of each video's
            page.
        :param id_type: ids as ``number`` (exact decimals) or ``string`` (the text of their digits).
        """
        ...

    def refreshes(self, limit: int | None = None) -> list[RefreshRecord]:
        """Return the refreshes, newest first.

        :param limit: the most refreshes to return (None: all).
        """
        ...

    def refresh_due(self, days: float) -> float | None:
        """Return when the next refresh is due.

        :param days: the refresh interval in days.
        """
        ...

    def erase_owed(self) -> bool:
        """Tell whether content a refresh deleted may still lie in the store's files."""
        ...

    # -- a refresh ----------------------------------------------------------------------------

    def acquire_refresh_lock(self) -> None:
        """Take the store for a refresh (SQLite: its run lock; PostgreSQL: one refresh at a
        time, harvests beside it)."""
        ...

    def release_refresh_lock(self) -> None:
        """Let go of what `acquire_refresh_lock` took."""
        ...

    def start_refresh(
        self, version: str, *, check_users: bool = False, batch_size: int = 10_000
    ) -> tuple[RefreshRecord, bool]:
        """Resume the unfinished refresh, or begin one; return it and whether it is new.

        :param version: the package version that runs, recorded with a new refresh.
        :param check_users: re-check each user with stored videos too (deleting the data of one the
            API now refuses).
        :param batch_size: video ids per batch, one compliance task each (at most 10,000).
        """
        ...

    def end_refresh(self, refresh_id: int, outcome: str) -> None:
        """Record how a refresh ended, and leave nothing it deleted in the store's files.

        :param refresh_id: the refresh's id (its record's ``id``).
        :param outcome: how it ended: ``finished``, ``interrupted``, ``stopped: <reason>``, ``error:
            <type>``.
        """
        ...

    def refresh_record(self, refresh_id: int) -> RefreshRecord | None:
        """Return one refresh's audit.

        :param refresh_id: the refresh's id (its record's ``id``).
        """
        ...

    def count_refresh_requests(self, refresh_id: int, count: int = 1) -> None:
        """Add booked requests to a refresh's audit.

        :param refresh_id: the refresh's id (its record's ``id``).
        :param count: the requests to add.
        """
        ...

    def uncount_refresh_requests(self, refresh_id: int, count: int = 1) -> None:
        """Take requests that never reached the API off a refresh's audit.

        :param refresh_id: the refresh's id (its record's ``id``).
        :param count: the requests to take off.
        """
        ...

    def refresh_batches(self, refresh_id: int) -> list[RefreshBatch]:
        """Return a refresh's batches in order.

        :param refresh_id: the refresh's id (its record's ``id``).
        """
        ...

    def refresh_batch_ids(self, refresh_id: int, batch: int) -> tuple[int, ...]:
        """Return the video ids of one batch.

        :param refresh_id: the refresh's id (its record's ``id``).
        :param batch: the batch's number.
        """
        ...

    def set_refresh_task(self, refresh_id: int, batch: int, task_id: int) -> None:
        """Record the task just made for a batch.

        :param refresh_id: the refresh's id (its record's ``id``).
        :param batch: the batch's number.
        :param task_id: the id the compliance task was created with.
        """
        ...

    def fail_refresh_task(self, refresh_id: int, batch: int) -> None:
        """Record that a batch's task Failed: it needs a task again.

        :param refresh_id: the refresh's id (its record's ``id``).
        :param batch: the batch's number.
        """
        ...

    def apply_refresh_batch(
        self, refresh_id: int, batch: int, valid: Collection[int]
    ) -> tuple[int, int]:
        """Delete the batch's videos that ``valid`` does not name; return (ids, rows) deleted.

        :param refresh_id: the refresh's id (its record's ``id``).
        :param batch: the batch's number.
        :param valid: the ids the batch's task found still available (its downloaded file).
        """
        ...

    def refresh_users_left(self, refresh_id: int) -> Iterator[tuple[int, str]]:
        """Stream (seq, username) of the users a refresh still has to re-check.

        :param refresh_id: the refresh's id (its record's ``id``).
        """
        ...

    def refresh_user_checked(
        self, refresh_id: int, seq: int, *, gone: str | None = None, error: str | None = None
    ) -> int:
        """Record a user's re-check; delete all its data if ``gone``; return rows deleted.

        :param refresh_id: the refresh's id (its record's ``id``).
        :param seq: the user's input position, as `refresh_users_left` gives it.
        :param gone: ``not_found`` or ``unavailable`` when the API now refuses the user (None: still
            there).
        :param error: the API's words when it refused the user.
        """
        ...


if TYPE_CHECKING:
    # mypy --strict checks both engines against the interface here.
    def _conforms(sqlite: Store, postgres: PostgresStore) -> tuple[StoreLike, StoreLike]:
        return sqlite, postgres
