"""Keep a store within TikTok's terms: check every stored video id, delete what is gone.

`refresh` (and `Refresher` behind it) lives here, beside `harvester` and its `harvest`: a module
named `refresh` would hide the function of the same name in the package.

TikTok's Research Tools terms ask researchers to refresh their stored data regularly (every 15
days by the stricter reading) and to delete what is no longer available. `refresh` does that for
a store: it takes every distinct stored video id, 10,000 a task (`MAX_TASK_IDS`), asks the Batch
Compliance API which are still served, and deletes every observation (every round's) of the
others, without trace (SQLite: ``secure_delete``, then a checkpoint that truncates the WAL;
PostgreSQL: the tables rewritten, see `store._pg_refreshes`). With
``check_users`` it first re-checks each user with stored videos with one request (the first page)
and deletes all data of a user the API now says is not found or refuses (deleted, private, opted
out).

Resumable like a harvest: the batches of ids are fixed in the store when a refresh begins, and
each batch's task id is stored as soon as the task is made, before it is polled. A refresh
killed at any instant and run again polls the same tasks; a video stored after it began is not
in its batches and is never deleted by it. A task made but killed before its id was stored is
left behind (one request); its batch gets a new one.

Every compliance call and user check is booked in the store's request ledger before it is sent,
against the same daily quota as a harvest, and counted in the refresh's audit
(`Store.refreshes`): when, ids checked, removed, requests, task ids; never what was removed.

A `Failed` task is made again once (`MAX_TASK_ATTEMPTS` tasks per batch and run); a batch whose
tasks all fail is left as it is (nothing of it deleted) and the refresh ends ``incomplete``: the
next run makes it a new task. A task the API no longer knows is made again likewise.

A suspicious answer is not acted on: a batch whose task finds more than
``max_removed_share`` (half) of its ids gone, at least `SUSPICIOUS_MIN` (10) of them, or every id
of a batch of two or more, stops the refresh (``stopped: suspicious``) before anything of it is
deleted; ``accept_removals=True`` takes such an answer at its word. The users of ``check_users``
are judged alike, `USER_CHUNK` at a time: a chunk in which a suspicious share of users is now not
found or refused stops the refresh before any of their data is deleted.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Final

from . import __version__
from ._walking import StepAside
from .client import RepostClient
from .compliance import MAX_TASK_IDS, TaskStatus
from .errors import (
    APIError,
    AuthError,
    ProtocolError,
    QuotaExhaustedError,
    RateLimitError,
    StopReason,
    TikTokError,
    UserNotFoundError,
    UserUnavailableError,
    WalkStopped,
)
from .gate import Gate
from .ledger import Ledger
from .quota import DailyQuota, QuotaPolicy, utc_day
from .store import REFRESH_DAYS, RefreshBatch, StoreLike, StoreLockedError

__all__ = [
    "MAX_TASK_ATTEMPTS",
    "POLL_FIRST_WAIT",
    "POLL_LEAST_WAIT",
    "POLL_MAX_WAIT",
    "POLL_TIMEOUT",
    "REFRESH_DAYS",
    "SUSPICIOUS_MIN",
    "SUSPICIOUS_SHARE",
    "USER_CHUNK",
    "RefreshReport",
    "Refresher",
    "refresh",
]

logger = logging.getLogger("tiktok_repost_async.refresher")

#: Tasks made per batch and run at most: a Failed one is made again once.
MAX_TASK_ATTEMPTS: Final = 2
#: Seconds before a new task's first status poll; each later wait is twice the one before, at
#: least POLL_LEAST_WAIT and at most POLL_MAX_WAIT. Every poll is a request of the day's quota,
#: so they are spaced out: a first wait of 0 (tests, the simulator) must not make the next polls
#: as fast as the API answers.
POLL_FIRST_WAIT: Final = 10.0
POLL_LEAST_WAIT: Final = 1.0
POLL_MAX_WAIT: Final = 300.0
#: Seconds of polling a run spends at most before it stops, resumable (the tasks are kept).
POLL_TIMEOUT: Final = 3600.0
#: A batch whose task finds more than this share of its ids gone (and at least SUSPICIOUS_MIN
#: of them), or every id of a batch of two or more, is suspicious (see `_suspicious`): the
#: refresh stops before deleting any of it.
SUSPICIOUS_SHARE: Final = 0.5
SUSPICIOUS_MIN: Final = 10
#: Users re-checked (``check_users``) before their answers are applied: a chunk with a
#: suspicious share of users gone stops the refresh before any of it is deleted.
USER_CHUNK: Final = 100


def _suspicious(gone: int, size: int, share: float = SUSPICIOUS_SHARE) -> bool:
    """Tell whether a task that finds ``gone`` of a batch's ``size`` ids gone is not to be trusted.

    TikTok removes a few videos a week; an answer that empties a store is far likelier an API
    fault (an answer for another project, an empty file, a server restarted without its
    videos) than a real mass removal, and a deletion cannot be undone. So more than ``share``
    of a batch gone is suspicious once at least `SUSPICIOUS_MIN` ids are gone: below that a
    small store's ordinary losses (3 of 5) would stop every refresh, yet ten is few enough that
    a store of a few dozen videos is guarded too (a minimum of 100 let a store of 59 be wiped).
    Every id of a batch gone is suspicious whatever the count, from two ids on: a single id
    gone alone is an ordinary removal.

    :param gone: ids of the batch the task found gone.
    :param size: ids in the batch.
    :param share: the share of the batch above which a loss is suspicious.
    """
    if gone >= 2 and gone == size:
        return True
    return gone >= SUSPICIOUS_MIN and gone > share * size


@dataclasses.dataclass(frozen=True, slots=True)
class RefreshReport:
    """Tell what a refresh run did: what it checked and removed, what it spent, how it ended.

    :param refresh_id: the refresh's number in the store's audit.
    :param resumed: whether this run resumed a refresh an earlier run began (killed, stopped,
        incomplete).
    :param outcome: ``finished``; ``incomplete`` (a batch's tasks Failed, or a user could not be
        checked: the next run tries them again); ``stopped: quota``, ``stopped: requested``,
        ``stopped: unhealthy``, ``stopped: processing`` (tasks still processing after
        ``poll_timeout``), all resumable; ``stopped: suspicious`` (see `SUSPICIOUS_SHARE`).
    :param detail: one line for the researcher on why it stopped or is incomplete, and what to do.
    :param checked: distinct video ids the refresh checks (all of its batches).
    :param answered: of those, the ids whose task's answer was applied so far (all of them once
        finished).
    :param removed: distinct video ids found gone and deleted, by the whole refresh so far.
    :param observations_removed: observations (rows: one per user and round) deleted, users'
        included.
    :param users_checked: users re-checked with one request each (``check_users``).
    :param users_removed: users found gone (not found, private, opted out) whose data was deleted.
    :param requests: requests this run sent (compliance calls and user checks), each booked in the
        ledger.
    :param requests_total: requests of the whole refresh, earlier runs' included.
    :param task_ids: every compliance task the refresh made, in batch order.
    :param failed_batches: batches of ids whose tasks all Failed in this run: nothing of them was
        deleted.
    :param retry_at: epoch seconds after which running again may succeed (a quota stop), when
        known.
    :param erase_owed: content it (or an earlier refresh) deleted may still lie in the store's
        files: another process's read held off the rebuild that erases it (SQLite), or the
        tables' rewrite (PostgreSQL). The next refresh pays it first: run it again.
    """

    refresh_id: int
    resumed: bool
    outcome: str
    detail: str | None
    checked: int
    answered: int
    removed: int
    observations_removed: int
    users_checked: int
    users_removed: int
    requests: int
    requests_total: int
    task_ids: tuple[int, ...]
    failed_batches: int = 0
    retry_at: float | None = None
    erase_owed: bool = False

    @property
    def finished(self) -> bool:
        """Tell whether every batch was checked and every answer applied."""
        return self.outcome == "finished"


class _Stop(TikTokError):
    """End the run with an outcome of the refresh's own (suspicious, processing, unhealthy)."""

    def __init__(self, outcome: str, detail: str) -> None:
        super().__init__(detail)
        self.outcome = outcome
        self.detail = detail


class Refresher:
    """Check a store's videos (and users) against what TikTok still serves; delete the rest."""

    def __init__(
        self,
        client: RepostClient,
        store: StoreLike,
        *,
        check_users: bool = False,
        daily_quota: int = 1000,
        on_quota: QuotaPolicy | str = QuotaPolicy.STOP,
        accept_removals: bool = False,
        max_removed_share: float = SUSPICIOUS_SHARE,
        poll_first_wait: float = POLL_FIRST_WAIT,
        poll_max_wait: float = POLL_MAX_WAIT,
        poll_timeout: float = POLL_TIMEOUT,
        batch_size: int = MAX_TASK_IDS,
        ledger: Ledger | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] | None = None,
    ) -> None:
        """Make a refresher; `run` does the work.

        :param client: the client whose session, limiter, token and retry policy the calls use.
        :param store: the store to refresh, SQLite or PostgreSQL (`StoreLike`): on SQLite its run
            lock is held while it runs; on PostgreSQL one refresh at a time, harvests beside it.
        :param check_users: also re-check each user with stored videos with one request (the
            first page) and delete all data of those the API now says are not found or refuses.
        :param daily_quota: requests allowed per UTC day, shared with the store's ledger.
        :param on_quota: ``stop`` (the report says ``stopped: quota``) or ``wait`` for the reset.
        :param accept_removals: act on an answer that removes a suspicious share of a batch of
            videos, or of a chunk of users (`USER_CHUNK`).
        :param max_removed_share: the share of a batch (or chunk of users) found gone above which
            it is suspicious.
        :param poll_first_wait: seconds before a new task's first status poll; each later wait
            doubles the one before, from `POLL_LEAST_WAIT` (1 s) at least.
        :param poll_max_wait: the longest wait between two polls.
        :param poll_timeout: seconds of polling before the run stops, resumable.
        :param batch_size: ids per task (10,000 at most).
        :param ledger: the organisation's shared ledger (`open_ledger`): each call is booked there
            first, and ``daily_quota`` bounds the organisation's day (None, or a store's own: the
            store alone keeps the count).
        :param clock: the wall clock (the quota's day, the poll timeout).
        :param sleep: the sleep between polls (the client's by default; tests move time).
        """
        if not 1 <= batch_size <= MAX_TASK_IDS or isinstance(batch_size, bool):
            raise ValueError(
                f"batch_size must be an int from 1 to {MAX_TASK_IDS}, not {batch_size!r}"
            )
        if not 0 < max_removed_share <= 1:
            raise ValueError(
                f"max_removed_share must be above 0 and at most 1, not {max_removed_share!r}"
            )
        for name, value in (
            ("poll_first_wait", poll_first_wait),
            ("poll_max_wait", poll_max_wait),
            ("poll_timeout", poll_timeout),
        ):
            if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number of seconds >= 0, not {value!r}")
        try:
            self.on_quota = QuotaPolicy(on_quota)
        except ValueError:
            raise ValueError(f"on_quota must be 'stop' or 'wait', got {on_quota!r}") from None
        self.client = client
        self.store = store
        self.check_users = check_users
        self.daily_quota = daily_quota
        self.accept_removals = accept_removals
        self.max_removed_share = max_removed_share
        self.poll_first_wait = float(poll_first_wait)
        self.poll_max_wait = float(poll_max_wait)
        self.poll_timeout = float(poll_timeout)
        self.batch_size = batch_size
        self.ledger = ledger if ledger is not None and ledger.shared else None
        self._clock = clock
        self._sleep: Callable[[float], Awaitable[None]] = (
            sleep if sleep is not None else client._sleep
        )
        self.quota = DailyQuota(daily_quota, clock=clock)
        #: Requests this run sent so far (booked before each left).
        self.requests = 0
        self._gate: Gate | None = None
        self._refresh_id = 0
        self._stop_asked = False
        self._failed_batches = 0
        self._incomplete: list[str] = []

    def stop(self) -> None:
        """Stop the running refresh: nothing new is sent; what was found so far is kept."""
        self._stop_asked = True
        if self._gate is not None:
            self._gate.stop(StopReason.REQUESTED)

    async def run(self) -> RefreshReport:
        """Refresh the store; return what was checked, removed and spent, and how it ended."""
        store = self.store
        store.acquire_refresh_lock()
        outcome = "interrupted"
        detail: str | None = None
        retry_at: float | None = None
        try:
            record, started = store.start_refresh(
                __version__, check_users=self.check_users, batch_size=self.batch_size
            )
            self._refresh_id = record.id
            if not started:
                logger.info("resuming refresh %d, begun %s", record.id, record.started_at)
            # The day so far: the organisation's, with a shared ledger; else this store's.
            day = utc_day(self._clock())
            spent = store.requests_on(day) if self.ledger is None else self.ledger.spent(day)
            self.quota = DailyQuota(
                self.daily_quota,
                spent_today=spent,
                clock=self._clock,
                margin=self.quota.margin,
                # The day others spend too: the organisation's, or a shared store's own.
                shared=(
                    self.ledger.label
                    if self.ledger is not None
                    else store.label
                    if store.shared
                    else None
                ),
            )
            gate = Gate(
                self.quota,
                on_quota=self.on_quota,
                clock=self._clock,
                sleep=self._sleep,
                book=self._book,
                refund=self._refund,
            )
            gate.ceiling = self.client.requests_per_second
            self._gate = gate
            if self._stop_asked:
                gate.stop(StopReason.REQUESTED)
            try:
                if record.check_users or self.check_users:
                    await self._check_users()
                await self._sweep()
            except WalkStopped as stop:
                outcome, detail, retry_at = f"stopped: {stop.reason}", stop.detail, stop.retry_at
            except _Stop as stop:
                outcome, detail = stop.outcome, stop.detail
            else:
                if self._incomplete:
                    # Said once, after all of them: what to do is the same for each.
                    outcome = "incomplete"
                    detail = "; ".join(self._incomplete) + "; run the refresh again to check them"
                else:
                    outcome = "finished"
        except Exception as error:
            if outcome == "interrupted":
                outcome = f"error: {type(error).__name__}"
            raise
        finally:
            self._gate = None
            try:
                if self._refresh_id:
                    store.end_refresh(self._refresh_id, outcome)
            finally:
                store.release_refresh_lock()
        final = store.refresh_record(self._refresh_id)
        assert final is not None
        return RefreshReport(
            refresh_id=final.id,
            resumed=not started,
            outcome=outcome,
            detail=detail,
            checked=final.checked,
            answered=final.answered,
            removed=final.removed,
            observations_removed=final.observations_removed,
            users_checked=final.users_checked,
            users_removed=final.users_removed,
            requests=self.requests,
            requests_total=final.requests,
            task_ids=tuple(int(task) for task in final.task_ids),
            failed_batches=self._failed_batches,
            retry_at=retry_at,
            erase_owed=store.erase_owed(),
        )

    # -- the ledger ------------------------------------------------------------------------------

    async def _book(self, username: str) -> bool:
        # Write-ahead, as a harvest books: in the ledger before it leaves, so that a kill at any
        # instant never leaves the ledger short of what the API counted. The organisation's
        # ledger first (a crash between the two over-counts there, which is safe); its refusal
        # is the organisation's spent day, which the gate treats as the quota's.
        if self.ledger is not None and not self.ledger.book(
            1, day=utc_day(self._clock()), limit=self.daily_quota
        ):
            return False
        if self.ledger is None and self.store.shared:
            # The store's own day, which harvests beside the refresh book against too: booked
            # within the limit, atomically, as theirs are.
            if not self.store.book_requests({username: 1}, limit=self.daily_quota):
                return False
        else:
            self.store.book_requests({username: 1})
        self.store.count_refresh_requests(self._refresh_id, 1)
        self.requests += 1
        return True

    async def _refund(self, username: str, day: str) -> None:
        # A booked request that never reached the API (a refused connection).
        if self.ledger is not None:
            self.ledger.refund(1, day=day)
        self.store.refund_requests({username: 1}, day=day)
        self.store.uncount_refresh_requests(self._refresh_id, 1)
        self.requests -= 1

    # -- users -----------------------------------------------------------------------------------

    async def _check_users(self) -> None:
        # The users are asked in chunks of USER_CHUNK, and a chunk's verdicts are applied only
        # once all of it is answered: an API that answers "not found" for everyone (a bug, an
        # outage's odd answer) must not delete every user's data one by one before the pattern
        # shows. A kill loses at most one chunk's requests; the next run asks them again.
        chunk: list[tuple[int, str, str | None, APIError | None]] = []
        try:
            for seq, username in self.store.refresh_users_left(self._refresh_id):
                verdict = await self._check_user(username)
                if verdict is None:
                    break
                chunk.append((seq, username, *verdict))
                if len(chunk) == USER_CHUNK:
                    if not self._apply_users(chunk):
                        return
                    chunk = []
        except WalkStopped:
            # What was answered before the stop is kept, unless it is suspicious on its own
            # (then the next run asks those users again and judges their whole chunk).
            if chunk:
                self._apply_users(chunk, stopping=True)
            raise
        if chunk:
            self._apply_users(chunk)

    async def _check_user(self, username: str) -> tuple[str | None, APIError | None] | None:
        """Ask for a user's first page: (None, None) if served, (state, error) if gone.

        None when it could not be checked (said in the report: the run ends incomplete).
        """
        gate = self._gate
        assert gate is not None
        while True:
            try:
                await self.client._fetch_page(username, 0, gate)
            except StepAside:
                # Five failures in a row, all this user's: with one user at a time there
                # is nobody else to ask, so it is held like an outage (as a run of one).
                gate.clear_suspect()
                continue
            except UserNotFoundError as gone:
                return "not_found", gone
            except UserUnavailableError as refused:
                return "unavailable", refused
            except (WalkStopped, AuthError):
                raise
            except TikTokError as error:
                # Not an answer about the user: it keeps its data, and the next run checks
                # it (and those after it) again.
                logger.warning("user %r could not be checked: %s", username, error)
                self._incomplete.append(
                    f"user {username!r} could not be checked ({error}): it and the users after"
                    " it keep their data"
                )
                return None
            return None, None

    def _apply_users(
        self,
        chunk: list[tuple[int, str, str | None, APIError | None]],
        *,
        stopping: bool = False,
    ) -> bool:
        """Record a chunk of user checks in order, deleting gone users' data; False: stop here.

        A suspicious chunk (as a batch of videos is, `_suspicious`) stops the refresh before
        any of it is recorded, unless ``accept_removals``; while ``stopping`` it is only left.
        """
        gone = sum(state is not None for _, _, state, _ in chunk)
        if not self.accept_removals and _suspicious(gone, len(chunk), self.max_removed_share):
            if stopping:
                return False
            share = (
                "all of them" if gone == len(chunk) else f"more than {self.max_removed_share:.0%}"
            )
            raise _Stop(
                "stopped: suspicious",
                f"{gone:,} of the {len(chunk):,} users checked from {chunk[0][1]!r} on are now"
                f" not found or refuse access ({share}): nothing of theirs was deleted; if"
                " TikTok really removed them, run again accepting it (accept_removals,"
                " --accept-removals)",
            )
        for seq, username, state, error in chunk:
            if state is None:
                self.store.refresh_user_checked(self._refresh_id, seq)
                continue
            assert error is not None
            if not self._remove_user(seq, username, state, error):
                return False
        return True

    def _remove_user(self, seq: int, username: str, state: str, error: APIError) -> bool:
        """Delete a gone user's data; False if a harvest walks it now (checked next run)."""
        try:
            rows = self.store.refresh_user_checked(
                self._refresh_id, seq, gone=state, error=f"{type(error).__name__}: {error}"
            )
        except StoreLockedError as busy:
            # A harvest beside the refresh (a shared store) holds the user's walk: its pages
            # are not deleted under its feet. Not checked, so the users from it on wait too.
            logger.warning("%s", busy)
            self._incomplete.append(f"{busy}; the users after it keep theirs too")
            return False
        logger.info(
            "user %r is %s now: its %d stored video observations are deleted",
            username,
            state.replace("_", " "),
            rows,
        )
        return True

    # -- compliance tasks ----------------------------------------------------------------------

    async def _call(self, what: Callable[[Gate], Awaitable[object]]) -> object:
        """Make one compliance call; a daily-quota 429 stops (or waits, then it goes again)."""
        gate = self._gate
        assert gate is not None
        while True:
            try:
                return await what(gate)
            except QuotaExhaustedError:
                await gate.quota_exhausted()  # raises WalkStopped, or returns after the wait
            except (WalkStopped, AuthError, ProtocolError):
                raise
            except (RateLimitError, TikTokError) as error:
                if self.client.retry.is_retryable(error):
                    # The retry policy's attempts are spent on an outage (5xx, timeouts, no
                    # connection, short-term 429s): for later, like a harvest's breaker stop.
                    raise _Stop(
                        f"stopped: {StopReason.UNHEALTHY}",
                        f"the compliance API did not answer ({error}); the tasks made so far"
                        " are kept: run the same command again later",
                    ) from None
                raise

    async def _create(self, batch: RefreshBatch) -> int:
        ids = self.store.refresh_batch_ids(self._refresh_id, batch.batch)
        client = self.client

        async def create(gate: Gate) -> int:
            return await client._create_compliance_task(ids, "video", gate)

        task_id = await self._call(create)
        assert isinstance(task_id, int)
        # Stored before it is polled: a kill from here on polls this same task next time.
        self.store.set_refresh_task(self._refresh_id, batch.batch, task_id)
        logger.info("batch %d (%d ids): task %d", batch.batch, batch.size, task_id)
        return task_id

    async def _status(self, task_id: int) -> TaskStatus | None:
        client = self.client

        async def status(gate: Gate) -> TaskStatus:
            return await client._compliance_task_status(task_id, gate)

        try:
            found = await self._call(status)
        except APIError as error:
            if isinstance(error, AuthError | RateLimitError | ProtocolError):
                raise
            # A task the API refuses to talk about (no such task: expired, or made by another
            # client): its batch is checked by a new one.
            logger.warning("task %d is refused (%s): its batch gets a new task", task_id, error)
            return None
        assert isinstance(found, TaskStatus)
        return found

    async def _download(self, task_id: int) -> frozenset[int] | None:
        client = self.client

        async def download(gate: Gate) -> frozenset[int]:
            return await client._download_compliance_task(task_id, gate)

        try:
            valid = await self._call(download)
        except APIError as error:
            if isinstance(error, AuthError | RateLimitError | ProtocolError):
                raise
            logger.warning(
                "task %d's result is refused (%s): its batch gets a new task", task_id, error
            )
            return None
        assert isinstance(valid, frozenset)
        return valid

    async def _sweep(self) -> None:
        """Give every batch a task, poll them, and apply each answer as it completes."""
        store = self.store
        gate = self._gate
        assert gate is not None
        made: Counter[int] = Counter()
        # batch -> (the batch, its task id, when its next poll is due)
        waiting: dict[int, tuple[RefreshBatch, int]] = {}
        for batch in store.refresh_batches(self._refresh_id):
            if batch.state == "applied":
                continue
            task_id = batch.task_id
            if task_id is None:
                made[batch.batch] += 1
                task_id = await self._create(batch)
            else:
                logger.info("batch %d: polling task %d again", batch.batch, task_id)
            waiting[batch.batch] = (batch, task_id)
        began = self._clock()
        wait = self.poll_first_wait
        while waiting:
            if self._clock() + wait - began > self.poll_timeout:
                raise _Stop(
                    "stopped: processing",
                    f"{len(waiting)} task{'s' if len(waiting) > 1 else ''} still processing after"
                    f" {self.poll_timeout / 60:.0f} minutes of polling; they are kept: run the"
                    " same command again later to poll them",
                )
            await gate.pause(wait, self._sleep)
            wait = min(max(wait * 2, POLL_LEAST_WAIT), self.poll_max_wait)
            for number, (batch, task_id) in list(waiting.items()):
                status = await self._status(task_id)
                if status is TaskStatus.PROCESSING:
                    continue
                valid = await self._download(task_id) if status is TaskStatus.COMPLETED else None
                if valid is not None:
                    self._apply(batch, task_id, valid)
                    del waiting[number]
                    continue
                # Failed, or no longer known: the batch is made a new task, once per run.
                store.fail_refresh_task(self._refresh_id, number)
                if made[number] >= MAX_TASK_ATTEMPTS:
                    self._failed_batches += 1
                    self._incomplete.append(
                        f"batch {number}'s tasks failed {made[number]} times (nothing of its"
                        f" {batch.size:,} ids was deleted)"
                    )
                    del waiting[number]
                    continue
                logger.warning(
                    "task %d of batch %d %s: making a new one",
                    task_id,
                    number,
                    "failed" if status is TaskStatus.FAILED else "is gone",
                )
                made[number] += 1
                waiting[number] = (batch, await self._create(batch))

    def _apply(self, batch: RefreshBatch, task_id: int, valid: frozenset[int]) -> None:
        ids = self.store.refresh_batch_ids(self._refresh_id, batch.batch)
        gone = len(ids) - len(valid.intersection(ids))
        if not self.accept_removals and _suspicious(gone, len(ids), self.max_removed_share):
            share = "all of them" if gone == len(ids) else f"more than {self.max_removed_share:.0%}"
            raise _Stop(
                "stopped: suspicious",
                f"task {task_id} finds {gone:,} of the {len(ids):,} videos of batch"
                f" {batch.batch} gone ({share}): nothing of it"
                " was deleted; if TikTok really removed them, run again accepting it"
                " (accept_removals, --accept-removals)",
            )
        removed, rows = self.store.apply_refresh_batch(self._refresh_id, batch.batch, valid)
        logger.info(
            "batch %d: task %d finds %d of %d videos gone; %d observations deleted",
            batch.batch,
            task_id,
            removed,
            len(ids),
            rows,
        )


async def refresh(
    client: RepostClient,
    store: StoreLike,
    *,
    check_users: bool = False,
    daily_quota: int = 1000,
    on_quota: QuotaPolicy | str = QuotaPolicy.STOP,
    accept_removals: bool = False,
    poll_first_wait: float = POLL_FIRST_WAIT,
    poll_timeout: float = POLL_TIMEOUT,
    ledger: Ledger | None = None,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], Awaitable[None]] | None = None,
) -> RefreshReport:
    """Check every stored video (and with ``check_users`` every user) and delete what is gone.

    :param client: the client the calls go through (its limiter, token and retry policy).
    :param store: the store to refresh (a `Store` or a `PostgresStore`); a refresh it left
        unfinished is resumed.
    :param check_users: also re-check each user with one request and delete all data of those
        now not found or refusing access.
    :param daily_quota: requests allowed per UTC day, shared with the store's ledger.
    :param on_quota: ``stop`` or ``wait`` for the reset when the quota is spent.
    :param accept_removals: act on a suspicious answer (more than half of a batch of videos, or
        of a chunk of users re-checked, gone, at least 10 of them, or all of two or more): by
        default the refresh stops before deleting any of it.
    :param poll_first_wait: seconds before a new task's first status poll; each later wait
        doubles the one before, at least 1 s and at most 5 minutes.
    :param poll_timeout: seconds of polling before the run stops, resumable.
    :param ledger: the organisation's shared ledger (`open_ledger`), booked before each call
        besides the store's own (None: the store alone keeps the count).
    :param clock: the wall clock.
    :param sleep: the sleep between polls.
    """
    refresher = Refresher(
        client,
        store,
        check_users=check_users,
        daily_quota=daily_quota,
        on_quota=on_quota,
        accept_removals=accept_removals,
        poll_first_wait=poll_first_wait,
        poll_timeout=poll_timeout,
        ledger=ledger,
        clock=clock,
        sleep=sleep,
    )
    return await refresher.run()
