"""Harvest many users at once: bounded workers, one quota, a crash-safe store, resumable runs."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime
import functools
import logging
import math
import queue
import tempfile
import threading
import time
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterable, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TypeVar

import msgspec

from . import __version__
from .client import RepostClient, empty_page_bound
from .engine import (
    Engine,
    Gate,
    NameSkipped,
    PageEvent,
    Sink,
    UserDone,
    WalkGuard,
    WalkJob,
    WalkState,
)
from .errors import (
    HarvestStopped,
    LedgerError,
    RateLimitError,
    StopReason,
    TikTokError,
    WalkStopped,
)
from .ledger import Ledger
from .models import RepostedVideosPage
from .protocol import validate_positive_int
from .quota import DailyQuota, QuotaPolicy, utc_day
from .store import (
    FINAL_STATES,
    PageCommit,
    RoundRecord,
    RoundSchedule,
    StoreLike,
    StoreMismatchError,
    UserState,
    open_store,
)
from .store._records import check_cadence

__all__ = [
    "EMPTY_ALARM_COUNT",
    "EMPTY_ALARM_END",
    "EMPTY_ALARM_SEEN",
    "HarvestProgress",
    "HarvestStopped",
    "Harvester",
    "UserOutcome",
    "harvest",
]

logger = logging.getLogger("tiktok_repost_async.harvester")

T = TypeVar("T")

# Pages committed in one transaction at most (see _Writer._run).
_PAGES_PER_COMMIT = 4
# How often a harvest on a shared store that has read its input looks for users to take over.
_TAKEOVER_POLL_S: Final = 0.5
#: How often (seconds, at most) a harvest on a shared ledger reads the organisation's count of
#: the day, so that its budget and progress line follow what collaborators spend meanwhile.
ORGANISATION_READ_S: Final = 1.0

# The silent empty: the Research API has answered empty lists with no error for days (a sibling
# endpoint, 2026-03). In a repeat round of a panel that would record every repost as removed.
# So, for a user who had videos in an earlier round, an empty page with ``has_more`` false is
# suspect. At cursor 0 it is held back, the user left pending. Past cursor 0 it is asked once
# more first (`WalkJob.again`, each cursor once): a list ends on a page holding its last videos
# or on a moderated tail, the walk had answers a moment ago, and if the emptiness was a blip that
# request is one the walk needs anyway; still empty and short of the user's last whole list, it is
# held at that cursor (a list cut short); past that length it is the list's end. An empty first
# page is not asked again at once: in a silent spell that would double the cost of every user
# heard before the alarm. The run stops (`StopReason.EMPTY`, resumable) once the held users are at
# least half of the EMPTY_ALARM_SEEN or more such users heard in this run, or EMPTY_ALARM_COUNT in
# all; at the end of the input, once they are at least half and EMPTY_ALARM_END or more, or every
# one heard (even one) while no user of the round has come back with a video yet, or any list
# was cut short (a cut walk is never called done unasked). Otherwise each user held at cursor 0
# is asked once more (`second_opinions`: a flickering silence answers then) and those still
# empty are committed at the end of the run: done, their lists as the API said.
# A run that follows a silent-empty stop probes first (see `_StoreSink.probe_turn`): one such
# user is asked alone, and its empty answer stops the run again at the cost of that request.
# ``accept_empty`` turns the alarm off, for a researcher who knows the emptiness is real.
EMPTY_ALARM_SEEN: Final = 10
EMPTY_ALARM_COUNT: Final = 20
EMPTY_ALARM_END: Final = 3
_ENCODE = msgspec.json.Encoder().encode


@dataclass(frozen=True, slots=True)
class UserOutcome:
    """Tell how one user's walk ended in this run.

    :param username: the user.
    :param state: the user's state in the store now.
    :param videos: new videos stored in this run.
    :param pages: pages fetched in this run.
    :param requests: research requests sent for the user in this run, retries included.
    :param error: the last error, for a failed (or not found, unavailable) user.
    :param resumed_from: the cursor the walk started from (0: from the start).
    :param incomplete: a guard (max_pages, a repeated cursor, a run of empty pages) cut the walk
        short while the API had more: ``state`` is ``incomplete``, or ``pending`` after
        ``max_pages`` (the next run continues from the saved cursor).
    :param partial: the walk stopped at a video known from the user's previous round (a repeat
        round with ``stop_at_known``): only the new head of its list was fetched.
    """

    username: str
    state: UserState
    videos: int
    pages: int
    requests: int
    error: str | None = None
    resumed_from: int = 0
    incomplete: bool = False
    partial: bool = False


@dataclass(slots=True)
class HarvestProgress:
    """Hold the live counters of a harvest, for progress displays and summaries.

    :param started_at: when the run started (epoch seconds).
    :param input_done: whether the whole input has been read.
    :param read: input lines read so far.
    :param invalid: lines skipped as unusable (blank, not a TikTok username...).
    :param duplicates: names seen earlier in the input.
    :param already_final: names whose users an earlier run finished (not walked again).
    :param queued: users handed to the walk.
    :param finished: users ended in this run, per state.
    :param videos: new videos stored.
    :param pages: pages stored.
    :param requests: research requests booked in the ledger (some ahead of their turn, with the
        page before).
    :param sent: requests let out to be sent (what the rate limiter bounds).
    :param quota_limit: requests allowed per UTC day.
    :param quota_spent: requests spent today, this store's ledger's count.
    :param waiting_until: while the run waits for the daily quota's reset: until when (epoch
        seconds); else None.
    :param elsewhere: names skipped because another harvest on the same (PostgreSQL) store was
        walking them.
    :param dropped: unfinished members of the round that a ``new_round`` run's whole input did not
        name: dropped from the round (`UserState.DROPPED`), known once the run has ended.
    :param probe_at: while the circuit breaker pauses the run (the API seems down), or a streak of
        429s does (a short-term limit or the daily quota?): when its next probe goes.
    :param probe_for: which of those pauses it is.
    :param stopped: the `StopReason` the run stopped for, if it stopped early.
    """

    started_at: float = 0.0
    input_done: bool = False
    read: int = 0
    invalid: int = 0
    duplicates: int = 0
    already_final: int = 0
    queued: int = 0
    finished: Counter[UserState] = field(default_factory=Counter)
    videos: int = 0
    pages: int = 0
    requests: int = 0
    sent: int = 0
    quota_limit: int = 0
    quota_spent: int = 0
    waiting_until: float | None = None
    dropped: int = 0
    elsewhere: int = 0
    probe_at: float | None = None
    probe_for: str | None = None
    stopped: str | None = None

    @property
    def done(self) -> int:
        """Return how many users reached a state in this run."""
        return sum(self.finished.values())

    @property
    def total(self) -> int | None:
        """Return how many users this run has to walk, once the whole input is read."""
        return self.queued if self.input_done else None


class _Writer:
    """Run every store call on one thread, committing the pages queued meanwhile together."""

    # Why a thread of our own rather than an executor: commits queue up while one is running,
    # and one transaction for all of them costs little more than one for a single page. SQLite
    # also hands the GIL back and forth at every statement, and each hand-over waits for the
    # event loop's thread, so fewer statements per page is what keeps a busy harvest fast.

    def __init__(
        self,
        store: StoreLike,
        ledger: Ledger | None = None,
        limit: int = 0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        # A shared ledger, booked first and against the day's limit (see _book_run).
        self._ledger = ledger
        self._limit = limit
        self._clock = clock
        #: The organisation's count of a day, as the shared ledger last said: (day, count).
        self.organisation: tuple[str, int] | None = None
        self._organisation_read = -math.inf
        self._loop = asyncio.get_running_loop()
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="tiktok-store", daemon=True)
        self._thread.start()

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> asyncio.Future[T]:
        """Queue a store call and return a future of its result."""
        future: asyncio.Future[T] = self._loop.create_future()
        self._jobs.put(_Job(future, functools.partial(fn, *args, **kwargs)))
        return future

    def commit(self, page: PageCommit) -> asyncio.Future[int]:
        """Queue a page for the next transaction and return a future of its new videos."""
        future: asyncio.Future[int] = self._loop.create_future()
        self._jobs.put(_Job(future, None, page))
        return future

    def book(self, username: str) -> asyncio.Future[bool]:
        """Queue one request of ``username`` for the ledger; the future tells if it was booked.

        False: the shared ledger refused it (the organisation's day is spent).
        """
        future: asyncio.Future[bool] = self._loop.create_future()
        self._jobs.put(_Job(future, None, None, username))
        return future

    async def close(self) -> None:
        """Finish every queued call, then end the thread."""
        self._jobs.put(None)
        await self._loop.run_in_executor(None, self._thread.join)

    def _run(self) -> None:
        pending: collections.deque[_Job] = collections.deque()
        done = False
        while True:
            if not pending and not done:
                job = self._jobs.get()
                if job is None:
                    done = True
                else:
                    pending.append(job)
            # Take in whatever else waits, without blocking.
            while not done:
                try:
                    job = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    done = True
                else:
                    pending.append(job)
            if not pending:
                if done:
                    return
                continue
            books = [job for job in pending if job.book is not None]
            if books:
                # First, and all in one transaction: each of them holds a request back from
                # the network until it is booked. Counting commutes with the rest.
                self._book_run(books)
                pending = collections.deque(job for job in pending if job.book is None)
                continue
            if pending[0].page is None:
                self._settle(pending.popleft())
                continue
            # Pages queued meanwhile commit together, but a few at a time: a booking that
            # arrives during a long transaction would hold its request back until the end.
            run: list[_Job] = []
            while pending and pending[0].page is not None and len(run) < _PAGES_PER_COMMIT:
                run.append(pending.popleft())
            self._commit_run(run)

    def _commit_run(self, jobs: list[_Job]) -> None:
        pages = [job.page for job in jobs if job.page is not None]
        try:
            added = self._store.commit_pages(pages)
        except BaseException as error:
            for job in jobs:
                self._resolve(job.future, None, error)
            return
        for job, count in zip(jobs, added, strict=True):
            self._resolve(job.future, count, None)

    def _book_run(self, jobs: list[_Job]) -> None:
        granted = jobs
        try:
            ledger = self._ledger
            if ledger is not None:
                # The organisation's ledger first, then the store's own: a crash between the
                # two leaves the shared one over-counting, which is safe.
                day = utc_day(self._clock())
                if not ledger.book(len(jobs), day=day, limit=self._limit):
                    # All or none was refused: the day's last requests still go, one by one.
                    granted = []
                    for job in jobs:
                        if not ledger.book(1, day=day, limit=self._limit):
                            break
                        granted.append(job)
                self._store.book_requests(_counts(granted))
                now = time.monotonic()
                if now - self._organisation_read >= ORGANISATION_READ_S:
                    # What collaborators spent meanwhile, for the plan and the progress line:
                    # one read a second at most, the booking itself stays one statement.
                    self._organisation_read = now
                    try:
                        self.organisation = (day, ledger.spent(day))
                    except LedgerError as error:
                        # The requests are booked: a count that could not be read is no
                        # reason to hold them back. The next booking reads it again.
                        logger.debug("could not read the organisation's day: %s", error)
            elif self._store.shared:
                # The store's own day, shared by every process harvesting into it: booked
                # against the limit there, atomically, all or none, then the last ones one by one.
                if not self._store.book_requests(_counts(jobs), limit=self._limit):
                    granted = []
                    for job in jobs:
                        if not self._store.book_requests(_counts([job]), limit=self._limit):
                            break
                        granted.append(job)
            else:
                self._store.book_requests(_counts(granted))
        except BaseException as error:
            for job in jobs:
                self._resolve(job.future, None, error)
            return
        for index, job in enumerate(jobs):
            self._resolve(job.future, index < len(granted), None)

    def _settle(self, job: _Job) -> None:
        assert job.call is not None
        try:
            result = job.call()
        except BaseException as error:
            self._resolve(job.future, None, error)
        else:
            self._resolve(job.future, result, None)

    def _resolve(
        self, future: asyncio.Future[Any], result: Any, error: BaseException | None
    ) -> None:
        def settle() -> None:
            if future.cancelled():
                return
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)

        # A closed loop means nobody waits for this answer any more.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(settle)


def _counts(jobs: list[_Job]) -> Counter[str]:
    return Counter(job.book for job in jobs if job.book is not None)


@dataclass(slots=True)
class _Job:
    future: asyncio.Future[Any]
    call: Callable[[], Any] | None
    page: PageCommit | None = None
    book: str | None = None


class Harvester:
    """Walk many users through one client into one store, within the daily quota."""

    def __init__(
        self,
        client: RepostClient,
        store: StoreLike,
        *,
        concurrency: int | None = None,
        daily_quota: int = 1000,
        on_quota: QuotaPolicy | str = QuotaPolicy.STOP,
        retry_failed: bool = True,
        retry_incomplete: bool = False,
        max_pages: int | None = None,
        new_round: bool = False,
        stop_at_known: bool = False,
        accept_empty: bool = False,
        on_round: Callable[[RoundRecord, bool], None] | None = None,
        ledger: Ledger | None = None,
        new_round_every: float | datetime.timedelta | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] | None = None,
    ) -> None:
        """Make a harvester; `run` does the work.

        :param client: the client whose session, limiter and token the walk shares.
        :param store: where users, pages and the ledger go (made with the client's fields and
            max_count).
        :param concurrency: users walked at once (the client's by default).
        :param daily_quota: research requests allowed per UTC day, shared with the store's ledger.
        :param on_quota: ``"stop"`` (a resumable `HarvestStopped`) or ``"wait"`` for the UTC reset.
        :param retry_failed: walk users that failed in an earlier run again.
        :param retry_incomplete: walk users that a guard cut short in an earlier run again, from
            their saved cursor (by default they are final).
        :param max_pages: pages per user and run at most; a user cut by it stays ``pending`` with
            its cursor, for the next run to continue.
        :param new_round: start the next round of a panel, every name walked again from cursor 0;
            a round that is not finished (users pending, or failed ones that ``retry_failed``
            walks again) is resumed instead.
        :param stop_at_known: (with ``new_round``) end each walk of that round at the first page
            holding a video seen in the user's previous round; a resumed round keeps the choice
            it was started with.
        :param accept_empty: in a repeat round, take users who had videos before and now come
            back empty at their word, without the silent-empty alarm (see `EMPTY_ALARM_SEEN`).
        :param on_round: called once the run has taken its round, with the round's record as it
            stood then and whether this run started it.
        :param new_round_every: for a run on a schedule (seconds, or a timedelta), instead of
            ``new_round``: start the next round only once the latest one is finished and started
            this long ago (a twentieth of it earlier at most, an hour at most: see
            `RoundSchedule`); resume an unfinished round; otherwise do nothing (`rested` is then
            True and `run` yields nothing, reads no name and sends nothing). The cadence is
            recorded in the store, for ``status``.
        :param ledger: the organisation's shared ledger (`open_ledger`): every request is booked
            there too, before it leaves, and ``daily_quota`` bounds the organisation's day, not
            only this store's; a refusal stops the run (or waits, with ``on_quota="wait"``) as
            the store's own spent day does. None, or the store's own: the store alone keeps the
            count.
        :param clock: the wall clock (epoch seconds) of the quota's UTC day and the ledger.
        :param sleep: the quota wait's sleep (the client's by default: one switch removes every
            wait, in tests or a caller's own scheduler).
        """
        if new_round_every is not None:
            if new_round:
                raise ValueError("pass new_round or new_round_every, not both")
            new_round_every = check_cadence(new_round_every)
        if stop_at_known and not (new_round or new_round_every is not None):
            raise ValueError("stop_at_known applies to a new round: pass new_round=True too")
        concurrency = client.concurrency if concurrency is None else concurrency
        validate_positive_int("concurrency", concurrency)
        validate_positive_int("max_pages", max_pages, optional=True)
        try:
            self.on_quota = QuotaPolicy(on_quota)
        except ValueError:
            raise ValueError(f"on_quota must be 'stop' or 'wait', got {on_quota!r}") from None
        if set(store.fields) != set(client.fields) or store.max_count != client.max_count:
            raise StoreMismatchError(
                f"the store {store.label!r} was made for fields {','.join(store.fields)} and "
                f"max_count {store.max_count}, but the client asks for "
                f"{','.join(client.fields)} and max_count {client.max_count}: use another store"
            )
        self.client = client
        self.store = store
        self.concurrency = concurrency
        self.retry_failed = retry_failed
        self.retry_incomplete = retry_incomplete
        self.max_pages = max_pages
        self.new_round = new_round
        self.stop_at_known = stop_at_known
        self.accept_empty = accept_empty
        self.on_round = on_round
        self.new_round_every: float | None = new_round_every
        #: The round this run walks, and whether this run started it (set by `run`).
        self.round = 0
        self.round_started = False
        #: With ``new_round_every``: True when the run found nothing to do (the latest round
        #: finished, the next not due yet), and when the next round is due (set by `run`).
        self.rested = False
        self.schedule: RoundSchedule | None = None
        self._clock = clock
        # The client's sleep by default: one switch removes every wait (tests, a caller's own).
        self._sleep: Callable[[float], Awaitable[None]] = (
            sleep if sleep is not None else client._sleep
        )
        #: The shared ledger this harvest books in too (None: the store's own alone).
        self.ledger = ledger if ledger is not None and ledger.shared else None
        self.quota = DailyQuota(daily_quota, clock=clock, shared=self._shared_label)
        self.progress = HarvestProgress(quota_limit=daily_quota)
        self._writer: _Writer | None = None
        self._gate: Gate | None = None
        self._sink: _StoreSink | None = None
        self._sharing: _Sharing | None = None
        self._stop_asked = False

    @property
    def _shared_label(self) -> str | None:
        if self.ledger is not None:
            return self.ledger.label
        # Processes harvesting into one PostgreSQL store share its day.
        return self.store.label if self.store.shared else None

    @property
    def _books_each(self) -> bool:
        # Each request booked on its own against a day others spend too: none paid ahead.
        return self.ledger is not None or self.store.shared

    def stop(self) -> None:
        """Stop the running harvest: nothing new goes out, the pages in flight are stored."""
        self._stop_asked = True
        if self._gate is not None:
            self._gate.stop(StopReason.REQUESTED)

    async def _write(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        # One thread owns the SQLite connection, so commits never stall the event loop and
        # never interleave with each other.
        assert self._writer is not None
        return await self._writer.call(fn, *args, **kwargs)

    async def run(
        self, usernames: Iterable[str] | AsyncIterable[str]
    ) -> AsyncGenerator[UserOutcome, None]:
        """Harvest every name and yield each user's outcome as its walk ends.

        :param usernames: the names, from any iterable or async iterable (read as the walk goes).
        """
        self._writer = _Writer(self.store, self.ledger, self.quota.limit, self._clock)
        self._sink = None
        # How the run ends, for its record in the store: anything that leaves before the end
        # (a consumer that stops iterating, a cancel, an exception) is said below.
        outcome = "interrupted"
        try:
            await self._write(self.store.acquire_run_lock)
            every = self.new_round_every
            if every is not None:
                # Under the run lock, like start_round: the latest round cannot move meanwhile.
                await self._write(self.store.set_round_cadence, every)
                schedule = await self._write(
                    self.store.round_schedule, every, retry_failed=self.retry_failed
                )
                assert schedule is not None  # a cadence was given
                self.schedule = schedule
                if schedule.finished and not schedule.starts_now(self._clock()):
                    self.rested = True
                    self.round = schedule.round
                    outcome = "rested"
                    return
                self.new_round = True
            if self.new_round:
                # Under the run lock: a harvest running on the store meanwhile is refused above.
                # On a shared store other processes may start a round at once: the store starts
                # one (due, with a cadence: checked again there) and the others resume it.
                self.round, self.round_started = await self._write(
                    self.store.start_round,
                    stop_at_known=self.stop_at_known,
                    retry_failed=self.retry_failed,
                    every=every,
                )
                if every is not None and not self.round_started:
                    schedule = await self._write(
                        self.store.round_schedule, every, retry_failed=self.retry_failed
                    )
                    assert schedule is not None
                    self.schedule = schedule
                    if schedule.finished:
                        # Another process started the round and finished it meanwhile.
                        self.rested = True
                        outcome = "rested"
                        return
            else:
                self.round = await self._write(lambda: self.store.current_round)
            # A resumed round keeps the choice it was started with.
            self.stop_at_known = await self._write(self.store.round_stops_at_known, self.round)
            if self.on_round is not None:
                self.on_round(
                    await self._write(self.store.round_record, self.round), self.round_started
                )
            # After a silent-empty stop the run probes the API first (see EMPTY_ALARM_SEEN):
            # read before this run's own record joins the runs.
            probe = (
                self.round > 1
                and not self.accept_empty
                and await self._write(_stopped_empty, self.store)
            )
            had_videos = (await self._write(self.store.round_record, self.round)).videos > 0
            await self._write(self.store.begin_run, __version__)
            # The round is unfinished until this run has read its whole input (`input_done`).
            await self._write(self.store.begin_round_input)
            await self._write(self.store.clear_skipped)
            # The day so far: the organisation's, with a shared ledger; else this store's.
            spent = await self._write(
                self.store.requests_on if self.ledger is None else self.ledger.spent,
                utc_day(self._clock()),
            )
            self.quota = DailyQuota(
                self.quota.limit,
                spent_today=spent,
                clock=self._clock,
                margin=self.quota.margin,
                shared=self._shared_label,
            )
            self.progress.started_at = self._clock()
            self.progress.quota_spent = self.quota.spent
            # The gate is this run's own: two harvests on one client keep separate ledgers.
            gate = _HarvestGate(
                self.quota,
                on_quota=self.on_quota,
                clock=self._clock,
                sleep=self._sleep,
                book=self._book,
                refund=self._refund,
                on_wait=self._on_wait,
                on_probe=self._on_probe,
                on_send=self._on_send,
            )
            self._gate = gate
            if self._stop_asked:
                gate.stop(StopReason.REQUESTED)
            self._sink = _StoreSink(self)
            gate.sink = self._sink
            self._sink.round_had_videos = had_videos
            if probe:
                self._sink.start_probe(gate)
            source: Iterable[str] | AsyncIterable[str] = usernames
            if self.store.shared:
                self._sharing = _Sharing(self)
                source = self._sharing.names(usernames)
            engine = Engine(
                self.client,
                concurrency=self.concurrency,
                max_pages=self.max_pages,
                gate=gate,
                sink=self._sink,
                page_events=False,
                skip_events=False,
            )
            try:
                sink = self._sink
                async with contextlib.aclosing(engine.run(source)) as events:
                    async for event in events:
                        if isinstance(event, UserDone) and not sink.holds(event.username):
                            yield self._outcome(event)
                doubted = sink.second_opinions()
                if doubted:
                    # A few empty answers among many full ones: each is asked once more before
                    # it is taken as the truth (a flickering silence answers the second time).
                    again = Engine(
                        self.client,
                        concurrency=self.concurrency,
                        max_pages=self.max_pages,
                        gate=gate,
                        sink=sink,
                        page_events=False,
                        skip_events=False,
                    )
                    async with contextlib.aclosing(again.run(doubted)) as events:
                        async for event in events:
                            if isinstance(event, UserDone) and not sink.holds(event.username):
                                yield self._outcome(event)
                # The input is done: the held empty pages are the truth, or the API's silence.
                for done in await sink.settle_empties(gate):
                    yield self._outcome(done)
            except WalkStopped as stop:
                self.progress.stopped = stop.reason
                outcome = f"stopped: {stop.reason}"
                raise HarvestStopped(stop.reason, stop.detail, stop.retry_at) from None
            outcome = "finished"
        except Exception as error:
            if outcome == "interrupted":
                outcome = f"error: {type(error).__name__}"
            raise
        finally:
            run_gate, self._gate = self._gate, None
            writer = self._writer
            # Every walk has ended (the engine awaits its workers). Requests paid ahead and
            # booked with a page that never went out (a stop, a walk that ended unforeseen)
            # are taken off the ledger: queued, not awaited, so that a cancel cannot skip them.
            refunds = [] if run_gate is None else self._give_back(run_gate)
            # Whatever was handed to the writer finishes before the lock is let go; every
            # request sent is in the ledger already, booked before it left.
            ended = writer.call(self.store.end_run, outcome)
            last = writer.call(self.store.release_run_lock)
            await writer.close()
            for failed in await asyncio.gather(*refunds, return_exceptions=True):
                if isinstance(failed, BaseException):
                    # Left booked: the ledger over-counts, which is safe.
                    logger.warning("could not give back unsent requests: %s", failed)
            input_end = None if self._sink is None else self._sink.input_end
            if input_end is not None:
                try:
                    self.progress.dropped = await input_end
                except Exception as error:
                    # The round stays unfinished (its input unread): safe, and said.
                    logger.warning("could not record the end of the input: %s", error)
            await asyncio.gather(ended, last)
            self._writer = None

    def _give_back(self, gate: Gate) -> list[asyncio.Future[None]]:
        # One writer call per UTC day that holds such bookings (one, but for a midnight).
        assert self._writer is not None
        refunds = []
        for day, counts in gate.unsent_bookings().items():
            self.progress.requests -= sum(counts.values())
            refunds.append(self._writer.call(self._unbook, counts, day))
        self.progress.quota_spent = self.quota.spent
        return refunds

    def _outcome(self, done: UserDone) -> UserOutcome:
        error = None if done.error is None else f"{type(done.error).__name__}: {done.error}"
        assert self._sink is not None
        start = self._sink.starts.pop(done.username, 0)
        return UserOutcome(
            done.username,
            _user_state(done),
            done.videos,
            done.pages,
            done.requests,
            error,
            start,
            done.incomplete,
            done.partial,
        )

    async def _book(self, username: str) -> bool:
        # Write-ahead: the request is in the store's ledger (and the shared one) before it is
        # sent, so that a kill at any instant never leaves a ledger short of what the API
        # counted.
        assert self._writer is not None
        if self._sink is not None:
            # After a silent-empty stop, one user asks the API before the others may.
            await self._sink.probe_turn(username)
        try:
            booked = await self._writer.book(username)
        except LedgerError as error:
            # No booking, no request: the run stops, resumable, with the ledger's own words
            # (a server down, a full disk). Whatever was sent is booked already.
            gate = self._gate
            if gate is not None:
                gate.stop(StopReason.LEDGER, f"{error}; nothing is sent unbooked")
                self.quota.refund()
                gate.check()
            raise
        if booked:
            self.progress.requests += 1
        organisation = self._writer.organisation
        if organisation is not None:
            self.quota.observe(organisation[1], day=organisation[0])
        self.progress.quota_spent = self.quota.spent
        return booked

    async def _refund(self, username: str, day: str) -> None:
        # A booked request that never reached the API (a refused connection): the API did not
        # count it, so neither does the ledger.
        self.progress.requests -= 1
        self.progress.quota_spent = self.quota.spent
        await self._write(self._unbook, {username: 1}, day)

    def _unbook(self, counts: dict[str, int], day: str) -> None:
        # On the writer's thread: the store's own ledger, then the shared one.
        self.store.refund_requests(counts, day=day)
        if self.ledger is not None:
            try:
                self.ledger.refund(sum(counts.values()), day=day)
            except LedgerError as error:
                # Left booked: the shared ledger over-counts, which is safe.
                logger.warning("could not give back unsent requests: %s", error)

    def _on_wait(self, until: float | None) -> None:
        self.progress.waiting_until = until

    def _on_send(self, delta: int) -> None:
        self.progress.sent += delta

    def _on_probe(self, at: float | None) -> None:
        self.progress.probe_at = at
        self.progress.probe_for = None if at is None or self._gate is None else self._gate.holding


class _StoreSink(Sink):
    """Claim users in the store, commit their pages and record their ends and bad lines."""

    def __init__(self, harvester: Harvester) -> None:
        super().__init__()
        self._harvester = harvester
        self._store = harvester.store
        self._progress = harvester.progress
        # Where each queued user's walk started, until its outcome is handed on.
        self.starts: dict[str, int] = {}
        # The video ids of each queued user's previous round, for stop_at_known: as many as
        # users are queued (bounded by the engine), each until its walk ends.
        self._known: dict[str, set[str]] = {}
        # The silent-empty alarm (see EMPTY_ALARM_SEEN): the queued users who had videos in an
        # earlier round; of those ended in this run, how many, and how many came back empty;
        # and the empty pages held back with their users' ends, until the run decides.
        self._expect: set[str] = set()
        self._heard = 0
        self._silent = 0
        self._held: dict[str, tuple[PageCommit, UserDone | None]] = {}
        self._alarmed = False
        # Users whose suspect empty end was asked once more in this run (see WalkJob.again),
        # and the held users asked once more at the end of the input (see second_opinions).
        self._asked_again: set[tuple[str, int]] = set()
        self._doubted: set[str] = set()
        # Whether a user of this round came back with a video before this run: then one or two
        # empty users at the end of the input are users who stopped reposting, not the API.
        self.round_had_videos = False
        # After a silent-empty stop: the probe's verdict, which the other users who had
        # videos wait for before their first request, and the user that probes.
        self._verdict: asyncio.Future[None] | None = None
        self._probe: str | None = None
        #: The writer's record that the whole input was read, once it was: the number of
        #: unfinished members the input no longer names, dropped from the round.
        self.input_end: asyncio.Future[int] | None = None

    async def claim(self, names: list[str], lines: list[int]) -> list[WalkJob | NameSkipped]:
        """Claim the names in the store; skip duplicates and users already final."""
        if self._doubted:
            # The second opinions (see second_opinions): users this run claimed and holds, each
            # walked again from the cursor of its held page.
            return [
                WalkJob(name, self._held[name][0].cursor, start=self.starts.get(name, 0))
                for name in names
            ]
        progress = self._progress
        progress.read += len(names)
        claimed = await self._harvester._write(self._store.claim_users, names)
        out: list[WalkJob | NameSkipped] = []
        # Claimed but not to be walked: given back at once, for no other process to wait on.
        unwalked: list[str] = []
        for name, line, row in zip(names, lines, claimed, strict=True):
            if row is None:
                progress.duplicates += 1
                out.append(NameSkipped(line, name, "duplicate"))
                continue
            if isinstance(row, str):
                # Another harvest on this (shared) store walks the user now.
                progress.elsewhere += 1
                out.append(NameSkipped(line, name, f"walked by {row}"))
                continue
            username, state, cursor = row
            retry = (state is UserState.FAILED and self._harvester.retry_failed) or (
                state is UserState.INCOMPLETE and self._harvester.retry_incomplete
            )
            if (state in FINAL_STATES or state is UserState.FAILED) and not retry:
                progress.already_final += 1
                out.append(NameSkipped(line, name, f"already {state}"))
                unwalked.append(username)
                continue
            progress.queued += 1
            self.starts[username] = cursor
            harvester = self._harvester
            if (
                harvester.round > 1
                and not harvester.accept_empty
                and await harvester._write(self._store.had_videos_before, username)
            ):
                # A resumed walk too (cursor > 0): its end is judged against the last list.
                self._expect.add(username)
            if self._harvester.stop_at_known:
                self._known[username] = await self._harvester._write(
                    self._store.known_video_ids, username
                )
            out.append(WalkJob(username, cursor, start=cursor))
        if self._store.shared:
            if unwalked:
                await self._harvester._write(self._store.release_claims, unwalked)
            sharing = self._harvester._sharing
            if sharing is not None:
                sharing.settled(sum(isinstance(item, NameSkipped) for item in out))
        return out

    async def skipped(self, names: list[NameSkipped]) -> None:
        """Record bad input lines through the writer, like every store call."""
        self._progress.read += len(names)
        self._progress.invalid += len(names)
        lines = [(skip.line, skip.name, skip.reason) for skip in names]
        await self._harvester._write(_add_skipped, self._store, lines)
        if self._harvester._sharing is not None:
            self._harvester._sharing.settled(len(names))

    async def page(self, job: WalkJob, event: PageEvent) -> int:
        """Commit a page's videos with the user's next cursor; return the new videos."""
        page = event.page
        rows = _rows(page)
        harvester = self._harvester
        known = self._known.get(job.username)
        if known and page.has_more and any(str(video.id) in known for video in page.videos):
            # Newest first (an assumption: see the README), everything past a known video was
            # seen in the previous round, or has since gone: the walk ends with this page.
            job.stop_after = True
        writer = harvester._writer
        assert writer is not None
        # This page's request was booked before it was sent. The user's next one, if the walk
        # goes on, is paid for and booked with this page: the same transaction, so it leaves
        # without waiting for one of its own. A walk that ends unforeseen (a stop other than
        # the budget's, a cursor seen long before) never sends it: the run gives its booking
        # back at the end (see `run`), once the commit is known to have booked it.
        gate = harvester._gate
        more = (
            gate is not None
            # A shared ledger books each request on its own, against the organisation's day.
            and not harvester._books_each
            and not job.stop_after
            and page.has_more
            and page.cursor != event.cursor
            and (harvester.max_pages is None or job.pages + 1 < harvester.max_pages)
            and job.empty_pages < empty_page_bound(harvester.client.max_count)
            and gate.prepay(job.username)
        )
        if more:
            harvester.progress.requests += 1
            harvester.progress.quota_spent = harvester.quota.spent
        commit = PageCommit(
            job.username,
            rows,
            page.cursor,
            page.has_more,
            1 if more else 0,
            cursor=event.cursor,
            log_id=page.log_id,
            fetched_at=harvester._clock(),
        )
        if (
            (job.username in self._expect or job.username in self._doubted)
            and not rows
            and not page.has_more
        ):
            # Nothing (more) from a user who had videos: the truth, or the API's silence. An
            # empty last page past cursor 0 is asked once more, wherever it falls: a list that
            # ends normally ends on a page holding its last videos (or a moderated tail).
            if (
                event.cursor > 0
                and not self._probing(job.username)
                and (job.username, event.cursor) not in self._asked_again
                and (harvester.max_pages is None or job.pages + 1 < harvester.max_pages)
            ):
                self._asked_again.add((job.username, event.cursor))
                job.again = event.cursor
                return 0
            if await self._ends_early(job.username, event.cursor):
                # Held back, the user stays pending at this cursor until the run can tell
                # (see settle_empties); a probe's verdict waits for the alarm (see finish).
                if job.username not in self._held:
                    self._progress.pages += 1
                self._held[job.username] = (commit, None)
                return 0
        if job.username == self._probe:
            self._end_probe()
        if self._held.pop(job.username, None) is not None:
            # A second opinion answered: that user's emptiness was the API's, not the truth.
            self._silent -= 1
            self._progress.pages -= 1
        added = await writer.commit(commit)
        if more:
            assert gate is not None
            gate.prepaid_booked(job.username)
        self._progress.pages += 1
        self._progress.videos += added
        return added

    async def _ends_early(self, username: str, cursor: int) -> bool:
        # At cursor 0 the user is expected (it had videos in an earlier round). Past it, the
        # list must have ended early: the user's last whole list was longer than the cursor.
        if cursor == 0:
            return True
        known = self._known.get(username)
        if known is None:
            known = await self._harvester._write(self._store.known_video_ids, username)
        return len(known) > cursor

    async def probe_turn(self, username: str) -> None:
        """Hold a request of ``username`` back while a probe after a silent-empty stop runs."""
        verdict = self._verdict
        if verdict is None or verdict.done() or username not in self._expect:
            # Users who had no videos before tell nothing and wait for nothing: were they
            # held, every worker could wait on them while the probe's user waits for a worker.
            return
        if self._probe is None:
            self._probe = username
            logger.info("the last run stopped on silent empties: %r probes the API first", username)
        if username != self._probe:
            await asyncio.shield(verdict)

    def probe_failed(self, username: str) -> None:
        """End the probe when its request meets an outage or a 429: the gate's rules take over."""
        if username == self._probe:
            self._end_probe()

    def start_probe(self, gate: Gate) -> None:
        """Make this run probe the API first: the last run stopped on silent empties."""
        self._verdict = asyncio.get_running_loop().create_future()
        # A stop (the probe's alarm among them) lets the waiting requests go to the gate, which
        # holds them back and gives their bookings back.
        gate.add_listener(self._end_probe)

    def _probing(self, username: str) -> bool:
        # Whether ``username`` is the probe and no answer of it has ended the probe yet.
        verdict = self._verdict
        return username == self._probe and verdict is not None and not verdict.done()

    def _end_probe(self) -> None:
        if self._verdict is not None and not self._verdict.done():
            self._verdict.set_result(None)

    def holds(self, username: str) -> bool:
        """Tell whether ``username``'s empty answer is held back by the silent-empty alarm."""
        return username in self._held

    async def finish(self, job: WalkJob, done: UserDone) -> None:
        """Give the user its final state in the store (a finished walk's last page did)."""
        if job.username in self._expect:
            self._expect.discard(job.username)
            held = self._held.get(job.username)
            if held is not None or done.state is WalkState.DONE:
                self._heard += 1
            if held is not None:
                self._held[job.username] = (held[0], done)
                self._silent += 1
                self._sound_alarm(
                    (self._heard >= EMPTY_ALARM_SEEN and 2 * self._silent >= self._heard)
                    or self._silent >= EMPTY_ALARM_COUNT
                    # The probe after a silent-empty stop: empty again, the silence goes on.
                    or self._probing(job.username)
                )
            if job.username == self._probe:
                self._end_probe()
            if held is not None:
                if self._harvester._sharing is not None:
                    # Its walk is over for now: room for the next name, or a shared store's
                    # feed would wait for ever on users held here. Its claim stays this run's
                    # until the run decides (settle_empties), and ends with the run.
                    self._harvester._sharing.settled(1)
                return
        held = self._held.get(job.username)
        if held is not None:
            # A second opinion, empty again: held as before, until settle_empties.
            self._held[job.username] = (held[0], done)
            return
        state = _user_state(done)
        self._progress.finished[state] += 1
        self._known.pop(job.username, None)
        try:
            await self._record_end(job, done, state)
        finally:
            if self._store.shared:
                # The user's walk in this run is over: its claim goes, for none to wait on.
                await self._harvester._write(self._store.release_claims, [job.username])
                if self._harvester._sharing is not None:
                    self._harvester._sharing.settled(1)

    async def _record_end(self, job: WalkJob, done: UserDone, state: UserState) -> None:
        if state is UserState.PENDING or (state is UserState.DONE and not done.partial):
            # The last page committed it: done, or (after max_pages) pending with its cursor.
            return
        text = None if done.error is None else f"{type(done.error).__name__}: {done.error}"
        if done.guard is not None:
            # The reason goes where a failed user's error goes: status shows it.
            text = done.guard.describe(done.cursor)
        await self._harvester._write(
            self._store.finish_user, job.username, state, error=text, partial=done.partial
        )
        if text is not None and state is UserState.FAILED:
            logger.warning("user %r failed: %s", job.username, text)

    def input_done(self) -> None:
        """Let the progress show a total, and the store know the round's users are all named."""
        if self._doubted:
            return  # the second opinions' end: the input's was recorded already
        self._progress.input_done = True
        writer = self._harvester._writer
        if writer is not None:
            # After every claim (each was awaited before the input went on): the round holds
            # every name of the input once this commits.
            self.input_end = writer.call(
                self._store.end_round_input, drop_unnamed=self._harvester.new_round
            )

    def _sound_alarm(self, now: bool) -> None:
        gate = self._harvester._gate
        if not now or gate is None or self._alarmed:
            return
        # Once: the users already on their way when it sounded come back empty too.
        self._alarmed = True
        probing = self._probe is not None and self._probing(self._probe)
        cut = self._cut_short()
        only_cut = (
            not probing
            and bool(cut)
            and not (self._silent >= EMPTY_ALARM_END and 2 * self._silent >= self._heard)
        )
        if probing:
            logger.warning(
                "%s came back with no reposts again: the silent empty goes on", self._probe
            )
        elif only_cut:
            logger.warning("%d users' lists ended early on an empty page, asked twice", len(cut))
        else:
            logger.warning(
                "%d of %d users who had reposts in an earlier round came back with none",
                self._silent,
                self._heard,
            )
        if only_cut:
            shown = ", ".join(f"{name} at {cursor}" for name, cursor in cut[:3])
            more = f" and {len(cut) - 3} more" if len(cut) > 3 else ""
            detail = (
                f"the API twice answered an empty last page, short of the list it gave in an"
                f" earlier round, for {len(cut)} of {self._heard} users ({shown}{more}); they"
                " stay pending at that page and nothing was recorded as removed"
            )
        elif probing:
            detail = (
                f"the API still answers empty lists: {self._probe}, the first user asked since"
                " the last run stopped on them, came back with none again and no error; it"
                " stays pending with the rest and nothing was recorded as removed"
            )
        else:
            detail = (
                f"the API keeps answering empty lists: {self._silent} of {self._heard} users"
                " who had reposts in an earlier round came back with none (or fewer than"
                " before) and no error; they stay pending and nothing was recorded as removed"
            )
        gate.stop(StopReason.EMPTY, detail)

    def _end_rule(self) -> bool:
        # Whether the held users, at the end of the input, are the API's silence.
        return (
            (self._silent >= EMPTY_ALARM_END and 2 * self._silent >= self._heard)
            # A small panel: every user heard came back empty, and none of the round had a
            # video before this run either (else it is a user who stopped reposting).
            or (self._silent == self._heard and not self.round_had_videos)
            # A list cut short, its empty page asked twice: never taken as the truth unasked
            # (``accept_empty``), as a cut walk is never called done.
            or bool(self._cut_short())
        )

    def _cut_short(self) -> list[tuple[str, int]]:
        # The held users whose walk an empty page ended past cursor 0: (name, cursor).
        return [(name, c.cursor) for name, (c, _) in self._held.items() if c.cursor > 0]

    def second_opinions(self) -> list[str]:
        """Return the held users to ask once more at the end of the input, if the alarm is quiet.

        Those whose empty page was asked once already are not asked again; none is asked when
        the alarm sounds (then each request would only hear the silence again).
        """
        if self._alarmed or self._end_rule():
            return []
        names = [name for name, (commit, _) in self._held.items() if commit.cursor == 0]
        self._doubted.update(names)
        self._asked_again.update((name, 0) for name in names)
        return names

    async def settle_empties(self, gate: Gate) -> list[UserDone]:
        """Decide the held empty answers once the input is done: stop, or commit them as done."""
        if not self._held:
            return []
        self._sound_alarm(self._end_rule())
        gate.check()
        writer = self._harvester._writer
        assert writer is not None
        ends: list[UserDone] = []
        for username, (commit, done) in list(self._held.items()):
            del self._held[username]
            await writer.commit(commit)
            if done is not None:
                self._progress.finished[UserState.DONE] += 1
                ends.append(done)
        return ends


class _HarvestGate(Gate):
    """Gate a harvest's requests; tell its sink when a probe's request fails as the API's."""

    sink: _StoreSink | None = None

    def unhealthy(self, username: str, error: TikTokError) -> bool:
        """Note an outage failure; a probe after a silent-empty stop ends with it."""
        held = super().unhealthy(username, error)
        if self.sink is not None:
            # The breaker needs other users' requests to tell whose fault it is.
            self.sink.probe_failed(username)
        return held

    def rate_limited(self, username: str, error: RateLimitError) -> bool:
        """Note a 429; a probe after a silent-empty stop ends with it."""
        spent = super().rate_limited(username, error)
        if self.sink is not None:
            self.sink.probe_failed(username)
        return spent


def _stopped_empty(store: StoreLike) -> bool:
    """Tell whether the store's last run that ended on its own stopped on silent empties."""
    for record in store.runs(limit=50):
        # Runs killed, interrupted or with nothing to do say nothing about the API: a probe
        # run killed before its answer leaves the next run to probe again.
        if record.outcome in (None, "killed", "interrupted", "rested"):
            continue
        return record.outcome == f"stopped: {StopReason.EMPTY}"
    return False


class _Sharing:
    """Feed a shared store's walk only as fast as it walks, then take over dead holders' users."""

    # The engine reads its input in batches of hundreds and claims each batch at once: on a
    # store that several processes share, the first to start would claim every name and the
    # others would find nothing to do. So names go on only while this process has a worker
    # free for them (claimed names are as many as workers, plus the few on their way).
    # Once the input is read, users that a dead process held (its claims expired, never
    # renewed) are taken over from their saved cursors, and the run ends only when no other
    # live process holds an unfinished user: if one dies, someone is still there to finish.

    def __init__(self, harvester: Harvester) -> None:
        self._harvester = harvester
        self._slots = harvester.concurrency
        self._out = 0
        self._free = asyncio.Event()

    def settled(self, count: int) -> None:
        """Note that ``count`` names fed earlier were skipped or walked to their end."""
        self._out -= count
        self._free.set()

    async def _room(self) -> None:
        while self._out >= self._slots:
            self._free.clear()
            await self._free.wait()
        self._out += 1

    async def names(
        self, usernames: Iterable[str] | AsyncIterable[str]
    ) -> AsyncGenerator[str, None]:
        """Yield the input's names as workers free up, then the users left by dead holders."""
        if isinstance(usernames, AsyncIterable):
            async for name in usernames:
                await self._room()
                yield name
        elif isinstance(usernames, list | tuple):
            for name in usernames:
                await self._room()
                yield name
        else:
            async for line in _read_on_thread(usernames):
                await self._room()
                yield line
        store = self._harvester.store
        offered: set[str] = set()
        while True:
            orphans, others = await self._harvester._write(store.orphaned_users)
            fresh = [name for name in orphans if name not in offered]
            for name in fresh:
                logger.info("taking over %r: the process that walked it stopped", name)
                offered.add(name)
                await self._room()
                yield name
            if not orphans and not others:
                return
            if not fresh:
                # Real time, not the run's clock: other processes' leases run on it.
                await asyncio.sleep(_TAKEOVER_POLL_S)


async def _read_on_thread(lines: Iterable[str]) -> AsyncGenerator[str, None]:
    """Yield the lines of a file or a pipe, read on a daemon thread of their own."""
    # A pipe may block for ever: a daemon thread, as the engine's own reader, so that a pipe
    # left open never holds the process at exit; a few hundred lines wait at most.
    loop = asyncio.get_running_loop()
    ready: asyncio.Queue[tuple[str | None, BaseException | None]] = asyncio.Queue()
    room = threading.Semaphore(500)
    closed = threading.Event()

    def hand(item: tuple[str | None, BaseException | None]) -> None:
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody reads on
            loop.call_soon_threadsafe(ready.put_nowait, item)

    def pump() -> None:
        try:
            for line in lines:
                room.acquire()
                if closed.is_set():
                    return
                hand((line, None))
        except BaseException as error:
            hand((None, error))
        else:
            hand((None, None))

    threading.Thread(target=pump, name="tiktok-shared-names", daemon=True).start()
    try:
        while True:
            line, error = await ready.get()
            if error is not None:
                raise error
            if line is None:
                return
            room.release()
            yield line
    finally:
        closed.set()
        room.release()


def _user_state(done: UserDone) -> UserState:
    """Return the store's state for a walk's end: max_pages leaves the user to continue."""
    if done.guard is WalkGuard.MAX_PAGES:
        return UserState.PENDING
    return UserState(done.state.value)


def _rows(page: RepostedVideosPage) -> list[tuple[int, bytes]]:
    """Return a page's videos as the store keeps them: (id, the raw JSON bytes as sent)."""
    if len(page.raw_videos) == len(page.videos):
        return [(video.id, raw) for video, raw in zip(page.videos, page.raw_videos, strict=True)]
    # A page built by hand (a test double, a caller's own client) carries no raw bytes.
    return [(video.id, _ENCODE(video)) for video in page.videos]


def _add_skipped(store: StoreLike, lines: list[tuple[int, str, str]]) -> None:
    for line_no, raw, reason in lines:
        store.add_skipped(line_no, raw, reason)


async def harvest(
    client: RepostClient,
    usernames: Iterable[str] | AsyncIterable[str],
    *,
    store: StoreLike | str | Path | None = None,
    concurrency: int | None = None,
    daily_quota: int = 1000,
    on_quota: QuotaPolicy | str = QuotaPolicy.STOP,
    retry_failed: bool = True,
    retry_incomplete: bool = False,
    max_pages: int | None = None,
    new_round: bool = False,
    new_round_every: float | datetime.timedelta | None = None,
    stop_at_known: bool = False,
    accept_empty: bool = False,
    on_round: Callable[[RoundRecord, bool], None] | None = None,
    ledger: Ledger | None = None,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], Awaitable[None]] | None = None,
) -> AsyncGenerator[UserOutcome, None]:
    """Harvest every name into a store, yielding each user's outcome as it ends.

    A `Harvester` run over a store that this function opens (and closes) when given a path; the
    same command again resumes where a killed or stopped run left off.

    :param client: the client whose session, limiter and token the walk shares.
    :param usernames: the names, from any iterable or async iterable (read as the walk goes).
    :param store: a store (`Store`, `PostgresStore`), the path or ``postgresql://`` URL of one
        (made with the client's fields and max_count if it does not exist), or None for a
        temporary one that is deleted at the end.
    :param concurrency: users walked at once (the client's by default).
    :param daily_quota: research requests allowed per UTC day, shared with the store's ledger.
    :param on_quota: ``"stop"`` (a resumable `HarvestStopped`) or ``"wait"`` for the UTC reset.
    :param retry_failed: walk users that failed in an earlier run again.
    :param retry_incomplete: walk users that a guard cut short in an earlier run again, from
        their saved cursor (by default they are final).
    :param max_pages: pages per user and run at most; a user cut by it stays ``pending`` with
        its cursor, for the next run to continue.
    :param new_round: start the next round of a panel, every name walked again from cursor 0;
        a round that is not finished (users pending, or failed ones that ``retry_failed``
        walks again) is resumed instead.
    :param new_round_every: for a run on a schedule (seconds, or a timedelta), instead of
        ``new_round``: start the next round only once the latest one is finished and started
        this long ago; resume an unfinished round; otherwise yield nothing and send nothing.
    :param stop_at_known: (with ``new_round``) end each walk of that round at the first page
        holding a video seen in the user's previous round; a resumed round keeps the choice
        it was started with.
    :param accept_empty: in a repeat round, take users who had videos before and now come
        back empty at their word, without the silent-empty alarm (see `EMPTY_ALARM_SEEN`).
    :param on_round: called once the run has taken its round, with the round's record as it
        stood then and whether this run started it.
    :param ledger: the organisation's shared ledger (`open_ledger`), booked before each request
        besides the store's own (None: the store alone keeps the count).
    :param clock: the wall clock (epoch seconds) of the quota's UTC day and the ledger.
    :param sleep: the quota wait's sleep (the client's by default: one switch removes every
        wait, in tests or a caller's own scheduler).
    """
    with contextlib.ExitStack() as stack:
        if store is None:
            folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="tiktok-harvest-"))
            store = Path(folder) / "harvest.db"
        if isinstance(store, str | Path):
            # The ledger's days follow the same clock as the quota.
            store = stack.enter_context(
                open_store(store, fields=client.fields, max_count=client.max_count, clock=clock)
            )
        harvester = Harvester(
            client,
            store,
            concurrency=concurrency,
            daily_quota=daily_quota,
            on_quota=on_quota,
            retry_failed=retry_failed,
            retry_incomplete=retry_incomplete,
            max_pages=max_pages,
            new_round=new_round,
            new_round_every=new_round_every,
            stop_at_known=stop_at_known,
            accept_empty=accept_empty,
            on_round=on_round,
            ledger=ledger,
            clock=clock,
            sleep=sleep,
        )
        # Closed here, before the store: its cleanup still writes to the store.
        async with contextlib.aclosing(harvester.run(usernames)) as run:
            async for outcome in run:
                yield outcome
