"""Harvest many users at once: bounded workers, one quota, a crash-safe store, resumable runs."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import queue
import tempfile
import threading
import time
from collections import Counter
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from .client import RepostClient
from .errors import (
    AuthError,
    HarvestStopped,
    QuotaExhaustedError,
    TikTokError,
    TokenExpiredError,
    UserNotFoundError,
    UserUnavailableError,
)
from .protocol import normalize_username, validate_positive_int
from .quota import DailyQuota, QuotaPolicy, utc_day
from .store import FINAL_STATES, PageCommit, Store, StoreMismatchError, UserState

__all__ = ["HarvestProgress", "HarvestStopped", "Harvester", "UserOutcome", "harvest"]

logger = logging.getLogger("tiktok_repost_async.harvest")

T = TypeVar("T")

# Names are read, checked and claimed in the store this many at a time: large enough that the
# store's round trips do not show, small enough that memory does not grow with the input.
_CHUNK = 500
_STOP_QUOTA = "quota"


@dataclass(frozen=True, slots=True)
class UserOutcome:
    """Tell how one user's walk ended in this run."""

    username: str
    state: UserState
    videos: int
    pages: int
    requests: int
    error: str | None = None
    resumed_from: int = 0


@dataclass(slots=True)
class HarvestProgress:
    """Hold the live counters of a harvest, for progress displays and summaries."""

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
    quota_limit: int = 0
    quota_spent: int = 0
    waiting_until: float | None = None
    stopped: str | None = None

    @property
    def done(self) -> int:
        """Return how many users reached a state in this run."""
        return sum(self.finished.values())

    @property
    def total(self) -> int | None:
        """Return how many users this run has to walk, once the whole input is read."""
        return self.queued if self.input_done else None


_Work = tuple[str, int]


class _Writer:
    """Run every store call on one thread, committing the pages queued meanwhile together."""

    # Why a thread of our own rather than an executor: commits queue up while one is running,
    # and one transaction for all of them costs little more than one for a single page. SQLite
    # also hands the GIL back and forth at every statement, and each hand-over waits for the
    # event loop's thread, so fewer statements per page is what keeps a busy harvest fast.

    def __init__(self, store: Store) -> None:
        self._store = store
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

    async def close(self) -> None:
        """Finish every queued call, then end the thread."""
        self._jobs.put(None)
        await self._loop.run_in_executor(None, self._thread.join)

    def _run(self) -> None:
        while True:
            first = self._jobs.get()
            batch = [first]
            while batch[-1] is not None:
                try:
                    batch.append(self._jobs.get_nowait())
                except queue.Empty:
                    break
            done = batch[-1] is None
            jobs = [job for job in batch if job is not None]
            i = 0
            while i < len(jobs):
                if jobs[i].page is None:
                    self._settle(jobs[i])
                    i += 1
                    continue
                j = i
                while j < len(jobs) and jobs[j].page is not None:
                    j += 1
                self._commit_run(jobs[i:j])
                i = j
            if done:
                return

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


@dataclass(slots=True)
class _Job:
    future: asyncio.Future[Any]
    call: Callable[[], Any] | None
    page: PageCommit | None = None


class Harvester:
    """Walk many users through one client into one store, within the daily quota."""

    def __init__(
        self,
        client: RepostClient,
        store: Store,
        *,
        concurrency: int | None = None,
        daily_quota: int = 1000,
        on_quota: QuotaPolicy | str = QuotaPolicy.STOP,
        retry_failed: bool = True,
        max_pages: int | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Any] | None = None,
    ) -> None:
        concurrency = client.concurrency if concurrency is None else concurrency
        validate_positive_int("concurrency", concurrency)
        validate_positive_int("max_pages", max_pages, optional=True)
        try:
            self.on_quota = QuotaPolicy(on_quota)
        except ValueError:
            raise ValueError(f"on_quota must be 'stop' or 'wait', got {on_quota!r}") from None
        if set(store.fields) != set(client.fields) or store.max_count != client.max_count:
            raise StoreMismatchError(
                f"the store {str(store.path)!r} was made for fields {','.join(store.fields)} and "
                f"max_count {store.max_count}, but the client asks for "
                f"{','.join(client.fields)} and max_count {client.max_count}: use another store"
            )
        self.client = client
        self.store = store
        self.concurrency = concurrency
        self.retry_failed = retry_failed
        self.max_pages = max_pages
        self._clock = clock
        self._sleep = sleep if sleep is not None else asyncio.sleep
        self.quota = DailyQuota(daily_quota, clock=clock)
        self.progress = HarvestProgress(quota_limit=daily_quota)
        self._requests: Counter[str] = Counter()
        self._writer: _Writer | None = None
        self._stop: str | None = None
        self._encode = msgspec.json.Encoder().encode

    async def _write(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        # One thread owns the SQLite connection, so commits never stall the event loop and
        # never interleave with each other.
        assert self._writer is not None
        return await self._writer.call(fn, *args, **kwargs)

    async def run(
        self, usernames: Iterable[str] | AsyncIterable[str]
    ) -> AsyncIterator[UserOutcome]:
        """Harvest every name and yield each user's outcome as its walk ends."""
        self._writer = _Writer(self.store)
        previous_hook = self.client.before_request
        tasks: list[asyncio.Task[None]] = []
        try:
            await self._write(self.store.acquire_run_lock)
            await self._write(self.store.clear_skipped)
            spent = await self._write(self.store.requests_on, utc_day(self._clock()))
            self.quota = DailyQuota(
                self.quota.limit, spent_today=spent, clock=self._clock, margin=self.quota.margin
            )
            self.progress.started_at = self._clock()
            self.progress.quota_spent = self.quota.spent
            self.client.before_request = self._before_request
            await self.client.open()
            work: asyncio.Queue[_Work | None] = asyncio.Queue(maxsize=2 * self.concurrency)
            outcomes: asyncio.Queue[UserOutcome | BaseException | None] = asyncio.Queue(
                maxsize=4 * self.concurrency
            )
            producer = asyncio.create_task(self._produce(usernames, work), name="harvest-input")
            workers = [
                asyncio.create_task(self._work(work, outcomes), name=f"harvest-worker-{i}")
                for i in range(self.concurrency)
            ]
            tasks = [producer, *workers]
            tasks.append(asyncio.create_task(self._supervise(producer, workers, outcomes)))
            while True:
                item = await outcomes.get()
                if item is None:
                    break
                if isinstance(item, BaseException):
                    raise item
                yield item
            if self._stop is not None:
                self.progress.stopped = self._stop
                raise HarvestStopped(self._stop)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.client.before_request = previous_hook
            writer = self._writer
            # Requests of walks cancelled mid-page (Ctrl-C) reached no commit: put them in the
            # ledger, so that a run resumed the same day knows what today already spent.
            unrecorded = sum(self._requests.values())
            self._requests.clear()
            last = [writer.call(self.store.record_requests, unrecorded)] if unrecorded else []
            # Whatever was handed to the writer finishes before the lock is let go.
            last.append(writer.call(self.store.release_run_lock))
            await writer.close()
            await asyncio.gather(*last)
            self._writer = None

    async def _supervise(
        self,
        producer: asyncio.Task[None],
        workers: list[asyncio.Task[None]],
        outcomes: asyncio.Queue[Any],
    ) -> None:
        pending: set[asyncio.Task[None]] = {producer, *workers}
        while pending - {producer}:
            finished, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in finished:
                error = task.exception()
                if error is not None:
                    await outcomes.put(error)
                    return
        # Workers end early only on a stop; the reader may then wait on a queue nobody drains.
        producer.cancel()
        await asyncio.gather(producer, return_exceptions=True)
        await outcomes.put(None)

    async def _produce(
        self, usernames: Iterable[str] | AsyncIterable[str], work: asyncio.Queue[_Work | None]
    ) -> None:
        line_no = 0
        async for chunk in _chunks(usernames, _CHUNK):
            if self._stop is not None:
                break
            names: list[str] = []
            bad: list[tuple[int, str, str]] = []
            for raw in chunk:
                line_no += 1
                self.progress.read += 1
                try:
                    names.append(normalize_username(raw))
                except (ValueError, TypeError) as error:
                    # A bad line is reported, never fatal: one typo must not sink 50,000 names.
                    self.progress.invalid += 1
                    bad.append((line_no, str(raw), _reason(error, raw)))
            if bad:
                # Through the writer like every store call: the connection has one owner thread.
                await self._write(_add_skipped, self.store, bad)
            if not names:
                continue
            claimed = await self._write(self.store.claim_users, names)
            for row in claimed:
                if row is None:
                    self.progress.duplicates += 1
                    continue
                username, state, cursor = row
                if state in FINAL_STATES or (state is UserState.FAILED and not self.retry_failed):
                    self.progress.already_final += 1
                    continue
                self.progress.queued += 1
                await work.put((username, cursor))
        self.progress.input_done = True
        for _ in range(self.concurrency):
            await work.put(None)

    async def _work(self, work: asyncio.Queue[_Work | None], outcomes: asyncio.Queue[Any]) -> None:
        while self._stop is None:
            item = await work.get()
            if item is None:
                return
            outcome = await self._walk(*item)
            if outcome is None:
                return
            self.progress.finished[outcome.state] += 1
            await outcomes.put(outcome)

    async def _walk(self, username: str, cursor: int) -> UserOutcome | None:
        start = cursor
        pages = videos = requests = 0
        while True:
            try:
                remaining = None if self.max_pages is None else self.max_pages - pages
                async for page in self.client.pages(username, cursor=cursor, max_pages=remaining):
                    taken = self._requests.pop(username, 0)
                    requests += taken
                    rows = [(video.id, self._encode(video)) for video in page.videos]
                    assert self._writer is not None
                    added = await self._writer.commit(
                        PageCommit(username, rows, page.cursor, page.has_more, taken)
                    )
                    pages += 1
                    videos += added
                    cursor = page.cursor
                    self.progress.pages += 1
                    self.progress.videos += added
                    if not page.has_more:
                        return UserOutcome(
                            username, UserState.DONE, videos, pages, requests, resumed_from=start
                        )
                # The walk ended with has_more still true: a stalled cursor or max_pages.
                return await self._finish(username, UserState.DONE, videos, pages, requests, start)
            except HarvestStopped:
                # The page in flight was not stored; the user resumes from its saved cursor.
                await self._flush_requests(username)
                return None
            except QuotaExhaustedError:
                self.quota.exhaust()
                try:
                    await self._quota_spent()
                except HarvestStopped:
                    await self._flush_requests(username)
                    return None
                continue
            except UserNotFoundError as error:
                return await self._finish(
                    username, UserState.NOT_FOUND, videos, pages, requests, start, error
                )
            except UserUnavailableError as error:
                return await self._finish(
                    username, UserState.UNAVAILABLE, videos, pages, requests, start, error
                )
            except AuthError as error:
                if isinstance(error, TokenExpiredError):
                    return await self._finish(
                        username, UserState.FAILED, videos, pages, requests, start, error
                    )
                # Revoked scope or refused credentials fail every user alike: stop the run.
                await self._flush_requests(username)
                raise
            except TikTokError as error:
                return await self._finish(
                    username, UserState.FAILED, videos, pages, requests, start, error
                )

    async def _finish(
        self,
        username: str,
        state: UserState,
        videos: int,
        pages: int,
        requests: int,
        start: int,
        error: BaseException | None = None,
    ) -> UserOutcome:
        taken = self._requests.pop(username, 0)
        text = None if error is None else f"{type(error).__name__}: {error}"
        await self._write(self.store.finish_user, username, state, error=text, requests=taken)
        if error is not None and state is UserState.FAILED:
            logger.warning("user %r failed: %s", username, text)
        return UserOutcome(username, state, videos, pages, requests + taken, text, start)

    async def _flush_requests(self, username: str) -> None:
        taken = self._requests.pop(username, 0)
        if taken:
            await self._write(self.store.record_requests, taken)

    async def _before_request(self, username: str, cursor: int) -> None:
        while not self.quota.try_spend():
            await self._quota_spent()
        self._requests[username] += 1
        self.progress.requests += 1
        self.progress.quota_spent = self.quota.spent

    async def _quota_spent(self) -> None:
        if self.on_quota is QuotaPolicy.STOP:
            self._stop = _STOP_QUOTA
            raise HarvestStopped(_STOP_QUOTA)
        until = self.quota.reset_at()
        self.progress.waiting_until = until
        logger.warning(
            "daily quota spent: waiting until %s UTC",
            time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(until)),
        )
        while (wait := until - self._clock()) > 0:
            await self._sleep(wait)
        self.progress.waiting_until = None


def _add_skipped(store: Store, lines: list[tuple[int, str, str]]) -> None:
    for line_no, raw, reason in lines:
        store.add_skipped(line_no, raw, reason)


def _reason(error: BaseException, raw: object) -> str:
    if isinstance(raw, str) and not raw.strip():
        return "blank line"
    text = str(error)
    if "U+0000" in text:
        return "NUL byte"
    if "control" in text or "invisible" in text:
        return "control character"
    if "at most" in text:
        return "too long"
    return "not a TikTok username"


async def _chunks(
    source: Iterable[str] | AsyncIterable[str], size: int
) -> AsyncIterator[list[str]]:
    if isinstance(source, AsyncIterable):
        chunk: list[str] = []
        async for name in source:
            chunk.append(name)
            if len(chunk) >= size:
                yield chunk
                chunk = []
        if chunk:
            yield chunk
        return
    iterator = iter(source)
    loop = asyncio.get_running_loop()
    while True:
        # A file or a pipe may block on read: take it off the event loop.
        chunk = await loop.run_in_executor(None, _take, iterator, size)
        if not chunk:
            return
        yield chunk


def _take(iterator: Iterator[str], size: int) -> list[str]:
    chunk: list[str] = []
    for name in iterator:
        chunk.append(name)
        if len(chunk) >= size:
            break
    return chunk


async def harvest(
    client: RepostClient,
    usernames: Iterable[str] | AsyncIterable[str],
    *,
    store: Store | str | Path | None = None,
    **options: Any,
) -> AsyncIterator[UserOutcome]:
    """Harvest every name into ``store`` (a path, a Store or, if None, a temporary one)."""
    with contextlib.ExitStack() as stack:
        if store is None:
            folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="tiktok-harvest-"))
            store = Path(folder) / "harvest.db"
        if not isinstance(store, Store):
            # The ledger's days follow the same clock as the quota.
            clock = options.get("clock", time.time)
            store = stack.enter_context(
                Store(store, fields=client.fields, max_count=client.max_count, clock=clock)
            )
        async for outcome in Harvester(client, store, **options).run(usernames):
            yield outcome
