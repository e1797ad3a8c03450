"""Walk many users at once through one client: bounded workers, per-user events, one stop gate.

`RepostClient.walk_many` and the harvest both run on this engine. Names are read as they come
(from a list, a file, a pipe or an async iterable) and handed to at most ``concurrency``
workers; each worker walks one user's cursor chain through the client's one session, limiter
and token, and reports every page and the user's end as events. A user's failure ends that
user, never the run; a failure that hits every user alike (a spent daily quota, refused
credentials, a store that cannot write) ends the run.

The `Gate` stands in front of every research request (see `RepostClient._fetch_page`):
``admit`` (budget and stop) -> limiter -> ``take`` (stop again, spend, book) -> token -> send.
A stop wakes idle workers and cuts backoff and ``Retry-After`` sleeps short, so nothing that
waits anywhere goes out after it.

A `Sink` receives what the walk produces: the in-memory walk keeps only the names it has seen
(to walk each once); the harvest's sink claims users in its store, commits pages and books
every request before it is sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
import threading
from collections import deque
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    Iterable,
    Iterator,
    KeysView,
    ValuesView,
)
from dataclasses import dataclass
from typing import Final

from .client import RepostClient, WalkTally
from .errors import (
    APIError,
    AuthError,
    InvalidFieldsError,
    QuotaExhaustedError,
    TikTokError,
    TokenExpiredError,
    TransportError,
    UnknownListKeyError,
    UserNotFoundError,
    UserUnavailableError,
    WalkStopped,
)
from .events import (
    NameSkipped,
    PageEvent,
    Sink,
    UserDone,
    WalkEvent,
    WalkGuard,
    WalkJob,
    WalkState,
)
from .gate import (
    BREAKER_FIRST_WAIT,
    BREAKER_GIVE_UP,
    BREAKER_JITTER,
    BREAKER_MAX_WAIT,
    BREAKER_THRESHOLD,
    QUOTA_NEAR_FRACTION,
    QUOTA_STREAK,
    RATE_DECREASE,
    RATE_FLOOR,
    RATE_PROBE_WAITS,
    RATE_RECOVERY,
    Gate,
    StepAside,
)
from .protocol import normalize_username, validate_positive_int

__all__ = [
    "BREAKER_FIRST_WAIT",
    "BREAKER_GIVE_UP",
    "BREAKER_JITTER",
    "BREAKER_MAX_WAIT",
    "BREAKER_THRESHOLD",
    "CHUNK",
    "QUOTA_NEAR_FRACTION",
    "QUOTA_STREAK",
    "RATE_DECREASE",
    "RATE_FLOOR",
    "RATE_PROBE_WAITS",
    "RATE_RECOVERY",
    "Engine",
    "Gate",
    "NameSkipped",
    "PageEvent",
    "Sink",
    "UserDone",
    "WalkEvent",
    "WalkGuard",
    "WalkJob",
    "WalkState",
    "walk_many",
]

logger = logging.getLogger("tiktok_repost_async.engine")

# Names are taken from the input this many at a time at most, and only while they come faster
# than the workers take them: large enough that a store's round trip per batch does not show,
# small enough that memory does not grow with the input.
CHUNK: Final = 500


class _End:
    """Mark the end of the event stream."""


class _Parked:
    """Mark a walk set aside while another user probes the API (see `gate.StepAside`)."""


_PARKED: Final = _Parked()


@dataclass(frozen=True, slots=True)
class _Failure:
    error: BaseException


_END: Final = _End()


@dataclass(slots=True)
class _Slot:
    idle: bool = False
    task: asyncio.Task[None] | None = None


class Engine:
    """Run one walk of many users: a reader of names, bounded workers, and their events."""

    def __init__(
        self,
        client: RepostClient,
        *,
        concurrency: int,
        max_pages: int | None = None,
        gate: Gate | None = None,
        sink: Sink | None = None,
        page_events: bool = True,
        skip_events: bool = True,
    ) -> None:
        """Make an engine.

        :param client: the client whose session, limiter and token every worker shares.
        :param concurrency: users walked at once.
        :param max_pages: pages per user at most (None: no cap).
        :param gate: the stop and quota gate (None: a fresh one without a budget).
        :param sink: what receives claims, pages and ends (None: the in-memory `Sink`).
        :param page_events: whether `run` yields a `PageEvent` for each page too.
        :param skip_events: whether `run` yields a `NameSkipped` for each unusable name too.
        """
        validate_positive_int("concurrency", concurrency)
        validate_positive_int("max_pages", max_pages, optional=True)
        self.client = client
        self.concurrency = concurrency
        self.max_pages = max_pages
        # A gate of its own sleeps the client's sleep: one switch stops every wait in tests.
        self.gate = gate if gate is not None else Gate(sleep=client._sleep)
        self.sink = sink if sink is not None else Sink()
        self._page_events = page_events
        self._skip_events = skip_events
        self._dispatcher: asyncio.Task[None] | None = None
        self._slots: list[_Slot] = []
        # Walks set aside by the breaker's suspect rule, with their tallies so far; the last
        # user that ended done (its first page is the probe when nobody else is left); whether
        # a worker sends that probe now.
        self._parked: deque[tuple[WalkJob, WalkTally]] = deque()
        self._last_done: str | None = None
        self._probing = False

    async def run(
        self, usernames: Iterable[str] | AsyncIterable[str]
    ) -> AsyncGenerator[WalkEvent, None]:
        """Walk every name and yield the events as they happen; raise `WalkStopped` on a stop.

        :param usernames: the names, from any iterable or async iterable (read as the walk goes).
        """
        _check_source(usernames)
        events: asyncio.Queue[WalkEvent | _End | _Failure] = asyncio.Queue(
            maxsize=2 * self.concurrency
        )
        work: asyncio.Queue[WalkJob | None] = asyncio.Queue(maxsize=self.concurrency)
        feed = _NameFeed(usernames)
        tasks: list[asyncio.Task[None]] = []
        if self.gate.ceiling is None:
            # What the rate learned from 429s may grow back to.
            self.gate.ceiling = self.client.requests_per_second
        self.gate.add_listener(self._on_stop)
        try:
            await self.client.open()
            feed.start()
            self._dispatcher = asyncio.create_task(
                self._dispatch(feed, work, events), name="walk-names"
            )
            self._slots = [_Slot() for _ in range(self.concurrency)]
            for i, slot in enumerate(self._slots):
                slot.task = asyncio.create_task(
                    self._work(slot, work, events), name=f"walk-worker-{i}"
                )
            workers = [slot.task for slot in self._slots if slot.task is not None]
            tasks = [self._dispatcher, *workers]
            tasks.append(
                asyncio.create_task(
                    self._supervise(self._dispatcher, workers, events), name="walk-supervisor"
                )
            )
            if self.gate.stopped is not None:
                self._on_stop()
            while True:
                item = await events.get()
                if isinstance(item, _End):
                    break
                if isinstance(item, _Failure):
                    raise item.error
                yield item
            self.gate.check()
        finally:
            self.gate.remove_listener(self._on_stop)
            for task in tasks:
                task.cancel()
            await feed.close()
            # Awaited, so that no worker outlives the walk and no exception goes unretrieved.
            await asyncio.gather(*tasks, return_exceptions=True)
            self._dispatcher = None
            self._slots = []

    def _on_stop(self) -> None:
        # Busy workers stop at their next gate; idle ones would wait for names for ever, and
        # the reader may wait on a pipe that stays open.
        if self._dispatcher is not None:
            self._dispatcher.cancel()
        for slot in self._slots:
            if slot.idle and slot.task is not None:
                slot.task.cancel()

    async def _supervise(
        self,
        dispatcher: asyncio.Task[None],
        workers: list[asyncio.Task[None]],
        events: asyncio.Queue[WalkEvent | _End | _Failure],
    ) -> None:
        running = set(workers)
        pending: set[asyncio.Task[None]] = {dispatcher, *workers}
        while running:
            finished, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            running -= finished
            for task in finished:
                if task.cancelled():
                    continue
                error = task.exception()
                if error is not None:
                    # A failure that is not one user's (a store that cannot write, refused
                    # credentials, a broken input) ends the run.
                    for other in pending:
                        other.cancel()
                    await asyncio.gather(*pending, return_exceptions=True)
                    await events.put(_Failure(error))
                    return
        dispatcher.cancel()
        await asyncio.gather(dispatcher, return_exceptions=True)
        if not dispatcher.cancelled() and (error := dispatcher.exception()) is not None:
            await events.put(_Failure(error))
            return
        await events.put(_END)

    async def _dispatch(
        self,
        feed: _NameFeed,
        work: asyncio.Queue[WalkJob | None],
        events: asyncio.Queue[WalkEvent | _End | _Failure],
    ) -> None:
        line = 0
        while (batch := await feed.take()) is not None:
            names: list[str] = []
            lines: list[int] = []
            bad: list[NameSkipped] = []
            for raw in batch:
                line += 1
                try:
                    names.append(normalize_username(raw))  # type: ignore[arg-type]
                    lines.append(line)
                except (ValueError, TypeError) as error:
                    # A bad name is reported, never fatal: one typo must not sink 50,000 names.
                    # A line read from a file keeps its line ending: the name is what is on it.
                    text = raw.rstrip("\r\n") if isinstance(raw, str) else repr(raw)
                    bad.append(NameSkipped(line, text, _reason(error, raw)))
            if bad:
                await self.sink.skipped(bad)
                if self._skip_events:
                    for skip in bad:
                        await events.put(skip)
            if not names:
                continue
            for item in await self.sink.claim(names, lines):
                if isinstance(item, NameSkipped):
                    if self._skip_events:
                        await events.put(item)
                else:
                    await work.put(item)
        self.sink.input_done()
        for _ in range(self.concurrency):
            await work.put(None)

    async def _work(
        self,
        slot: _Slot,
        work: asyncio.Queue[WalkJob | None],
        events: asyncio.Queue[WalkEvent | _End | _Failure],
    ) -> None:
        # Whether this worker has taken its end of input: then only walks set aside remain.
        over = False
        while self.gate.stopped is None:
            parked = self._unpark()
            if parked is not None:
                job, tally = parked
            elif over:
                if not self._parked or self._probing:
                    return
                await self._probe_for_suspect()
                continue
            else:
                slot.idle = True
                try:
                    taken = await work.get()
                finally:
                    slot.idle = False
                if taken is None:
                    over = True
                    continue
                job, tally = taken, WalkTally()
            try:
                done = await self._walk(job, events, tally)
            finally:
                self.gate.release(job.username)
            if done is _PARKED:
                # Another user's request (the next name's) must tell whose fault it was.
                self._parked.append((job, tally))
                continue
            if done is None:
                return
            assert isinstance(done, UserDone)
            if done.state is WalkState.DONE and done.pages:
                self._last_done = done.username
            await self.sink.finish(job, done)
            await events.put(done)

    def _unpark(self) -> tuple[WalkJob, WalkTally] | None:
        # A walk set aside goes on once it is no longer the suspect: shown at fault (it gets one
        # more request, then ends failed) or cleared (the API is down for everyone, or back).
        suspect = self.gate.suspect
        for _ in range(len(self._parked)):
            job, tally = self._parked.popleft()
            if job.username != suspect:
                return job, tally
            self._parked.append((job, tally))
        return None

    async def _probe_for_suspect(self) -> None:
        # No name is left to probe with: the first page of a user already done in this run is
        # the probe (one request, its answer dropped). With no such user (a run of one user)
        # the suspect probes itself: nobody can tell then whose fault it is.
        suspect = self.gate.suspect
        name = self._last_done
        if suspect is None:
            return
        if name is None or name == suspect:
            self.gate.clear_suspect()
            return
        self._probing = True
        self.gate.canary = name
        try:
            await self.client._fetch_page(name, 0, self.gate, WalkTally())
        except (StepAside, WalkStopped):
            pass  # not sent: another answer came first, or the run stopped
        except TikTokError:
            pass  # any answer, or its failure, has told the gate what it had to
        finally:
            self.gate.canary = None
            self.gate.release(name)
            self._probing = False
        if self.gate.stopped is None:
            self.gate.clear_suspect()

    async def _walk(
        self,
        job: WalkJob,
        events: asyncio.Queue[WalkEvent | _End | _Failure],
        tally: WalkTally,
    ) -> UserDone | _Parked | None:
        while True:
            try:
                remaining = None if self.max_pages is None else self.max_pages - job.pages
                cursor = job.cursor
                walk = self.client._walk(job.username, cursor, remaining, self.gate, tally)
                job.empty_pages = 0  # as the client's walk counts them
                async with contextlib.aclosing(walk) as pages:
                    async for page in pages:
                        event = PageEvent(job.username, cursor, page)
                        empty = not (page.videos or page.raw_videos)
                        job.empty_pages = job.empty_pages + 1 if empty else 0
                        job.videos += await self.sink.page(job, event)
                        job.pages += 1
                        job.cursor = cursor = page.cursor
                        if self._page_events:
                            await events.put(event)
                        if job.stop_after:
                            break
                if job.stop_after:
                    return dataclasses.replace(
                        self._done(job, tally, WalkState.DONE, None), partial=True
                    )
                if job.again is not None:
                    # The sink doubts the page that ended the walk: ask it once more.
                    job.cursor, job.again = job.again, None
                    continue
                if tally.cut is not None:
                    guard = WalkGuard(tally.cut)
                    return self._done(job, tally, WalkState.INCOMPLETE, None, guard)
                return self._done(job, tally, WalkState.DONE, None)
            except WalkStopped:
                # The user stays where its last page left it; a later walk continues there.
                return None
            except StepAside:
                return _PARKED
            except QuotaExhaustedError:
                try:
                    await self.gate.quota_exhausted()
                except WalkStopped:
                    return None
                continue  # after the reset: the same user, from the same cursor
            except (InvalidFieldsError, UnknownListKeyError):
                # Every user would be refused (or misread) alike: the run ends, at the cost of
                # this request.
                raise
            except UserNotFoundError as error:
                return self._done(job, tally, WalkState.NOT_FOUND, error)
            except UserUnavailableError as error:
                return self._done(job, tally, WalkState.UNAVAILABLE, error)
            except AuthError as error:
                if not isinstance(error, TokenExpiredError):
                    # Revoked scope or refused credentials fail every user alike.
                    raise
                return self._done(job, tally, WalkState.FAILED, error)
            except (APIError, TransportError) as error:
                return self._done(job, tally, WalkState.FAILED, error)

    @staticmethod
    def _done(
        job: WalkJob,
        tally: WalkTally,
        state: WalkState,
        error: TikTokError | None,
        guard: WalkGuard | None = None,
    ) -> UserDone:
        return UserDone(
            job.username, state, job.pages, job.videos, tally.requests, error, guard, job.cursor
        )


def walk_many(
    client: RepostClient,
    usernames: Iterable[str] | AsyncIterable[str],
    *,
    concurrency: int | None = None,
    max_pages: int | None = None,
) -> AsyncGenerator[WalkEvent, None]:
    """Walk many users at once through ``client``; see `RepostClient.walk_many`.

    :param client: the client whose session, limiter and token every worker shares.
    :param usernames: the names, from any iterable or async iterable (read as the walk goes).
    :param concurrency: users walked at once (None: the client's ``concurrency``).
    :param max_pages: pages per user at most; a user cut short ends ``incomplete`` (None: no cap).
    """
    concurrency = client.concurrency if concurrency is None else concurrency
    engine = Engine(client, concurrency=concurrency, max_pages=max_pages)
    _check_source(usernames)
    return engine.run(usernames)


def _check_source(usernames: object) -> None:
    if isinstance(usernames, str | bytes):
        raise TypeError("usernames must be an iterable of names, not one string")
    if not isinstance(usernames, Iterable | AsyncIterable):
        raise TypeError(
            f"usernames must be an iterable or async iterable of str, not"
            f" {type(usernames).__name__}"
        )


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


# Collections whose iteration reads memory only: nothing in them can block the event loop.
_IN_MEMORY: Final = (list, tuple, range, set, frozenset, dict, deque, KeysView, ValuesView)


class _NameFeed:
    """Hand names over as they come: in batches only while they come faster than taken."""

    # A plain iterable (a file, a pipe, sys.stdin) may block on every read, so it is read on a
    # thread of its own; a daemon one, because a pipe left open must not hold the process at
    # exit. An async iterable is read by a task. Either way at most CHUNK names wait here.
    # A collection already in memory cannot block: it is read in place, CHUNK names a take,
    # with no thread to start and no lock handed back and forth for each name.

    def __init__(self, source: Iterable[object] | AsyncIterable[object]) -> None:
        self._source = source
        self._buffer: deque[object] = deque()
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)
        self._ready = asyncio.Event()
        self._room_async = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._done = False
        self._closed = False
        self._error: BaseException | None = None
        self._task: asyncio.Task[None] | None = None
        self._inline: Iterator[object] | None = None

    def start(self) -> None:
        """Start reading the source."""
        source = self._source
        if isinstance(source, _IN_MEMORY):
            self._inline = iter(source)
        elif isinstance(source, AsyncIterable):
            self._task = asyncio.create_task(self._pump_async(source), name="walk-input")
        else:
            thread = threading.Thread(
                target=self._pump_sync, args=(iter(source),), name="tiktok-names", daemon=True
            )
            thread.start()

    async def take(self) -> list[object] | None:
        """Return the names waiting (at least one, at most CHUNK), or None at the end."""
        if self._inline is not None:
            batch = [] if self._closed else list(itertools.islice(self._inline, CHUNK))
            return batch or None
        while True:
            with self._lock:
                if self._buffer:
                    count = min(CHUNK, len(self._buffer))
                    batch = [self._buffer.popleft() for _ in range(count)]
                    self._room.notify()
                    self._room_async.set()
                    return batch
                if self._done:
                    error, self._error = self._error, None
                    if error is not None:
                        raise error
                    return None
                self._ready.clear()
            await self._ready.wait()

    async def close(self) -> None:
        """Stop reading: the reader ends at its next name (a blocked read is left behind)."""
        with self._lock:
            self._closed = True
            self._room.notify_all()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def _wake(self) -> None:
        # A closed loop means nobody reads these names any more.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._ready.set)

    def _pump_sync(self, iterator: Iterator[object]) -> None:
        try:
            for name in iterator:
                with self._lock:
                    while len(self._buffer) >= CHUNK and not self._closed:
                        self._room.wait()
                    if self._closed:
                        break
                    wake = not self._buffer
                    self._buffer.append(name)
                if wake:
                    self._wake()
            if self._closed:
                close = getattr(iterator, "close", None)
                if close is not None:
                    close()
        except BaseException as error:
            self._error = error
        finally:
            with self._lock:
                self._done = True
            self._wake()

    async def _pump_async(self, source: AsyncIterable[object]) -> None:
        iterator = aiter(source)
        try:
            async for name in iterator:
                with self._lock:
                    self._buffer.append(name)
                self._ready.set()
                while len(self._buffer) >= CHUNK:
                    self._room_async.clear()
                    await self._room_async.wait()
        except Exception as error:
            self._error = error
        finally:
            with self._lock:
                self._done = True
            self._ready.set()
            aclose = getattr(iterator, "aclose", None)
            if aclose is not None:
                await aclose()
