"""Helpers shared by the test modules: a client of the simulator, a clock that moves on sleep."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import io
import logging
import os
import sys
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from tiktok_repost_async import HarvestStopped, RepostClient, Store
from tiktok_repost_async.harvester import Harvester, UserOutcome
from tiktok_repost_async.simulator import TEST_CLIENT_KEY, TEST_CLIENT_SECRET, Simulator


def make_client(
    sim: Simulator | str, *, clock: FakeTime | None = None, **kwargs: Any
) -> RepostClient:
    """Return a client of ``sim`` that the limiter does not slow; keyword arguments override.

    :param sim: the simulator, or a base URL (one where nothing listens, say).
    :param clock: a `FakeTime` that the client sleeps on and its token ages by.
    """
    options: dict[str, Any] = {
        "base_url": sim if isinstance(sim, str) else sim.base_url,
        "requests_per_second": 10_000.0,
        "concurrency": 4,
    }
    if clock is not None:
        options["sleep"] = clock.sleep
    options.update(kwargs)
    client = RepostClient(TEST_CLIENT_KEY, TEST_CLIENT_SECRET, **options)
    if clock is not None:
        # The token's clock is monotonic; here it moves with the fake wall clock.
        client._auth._clock = clock
    return client


#: A UTC midnight (2023-11-15 00:00:00): tests about the quota day start from it.
MIDNIGHT = 1_700_006_400
#: A UTC noon (2026-03-01 12:00:00), far from any quota reset.
NOON = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC).timestamp()


class FakeClock:
    """A clock that moves only when a test says so."""

    def __init__(self, now: float = MIDNIGHT + 12 * 3600) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class FakeTime:
    """A wall clock that moves when the code under test sleeps (and by ``tick`` at each read)."""

    def __init__(self, start: float = NOON, tick: float = 0.0) -> None:
        self.now = start
        self.tick = tick
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        self.now += self.tick
        return self.now

    async def sleep(self, seconds: float) -> None:
        """Record the wait and move the clock by it, yielding to the loop once."""
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


@pytest.fixture(name="clock")
async def fake_time_clock() -> FakeTime:
    """Give a test a `FakeTime` as its ``clock``: import this fixture into a module to use it."""
    return FakeTime()


@pytest.fixture(name="sim")
async def sim_on_fake_time(clock: FakeTime) -> AsyncIterator[Simulator]:
    """Serve a simulator whose clock is the test's `FakeTime` (import beside `fake_time_clock`)."""
    async with Simulator(clock=clock) as simulator:
        yield simulator


async def harvest_on_fake_time(
    client: RepostClient,
    clock: FakeTime,
    db: Path,
    names: list[str],
    *,
    built: list[Harvester] | None = None,
    **options: Any,
) -> tuple[list[UserOutcome], HarvestStopped | None]:
    """Harvest ``names`` into a new store at ``db`` on the fake clock; return outcomes and stop.

    :param client: the client, entered and closed here.
    :param clock: the store's and the harvester's clock; it sleeps on it unless ``sleep`` is given.
    :param db: where the store is created.
    :param names: the users, in order.
    :param built: a list that gets the harvester once it is built (for a ``sleep`` that reads it).
    :param options: the Harvester's own keyword arguments.
    """
    options.setdefault("sleep", clock.sleep)
    outcomes: list[UserOutcome] = []
    async with client:
        store = Store(db, fields=client.fields, max_count=100, clock=clock)
        harvester = Harvester(client, store, clock=clock, **options)
        if built is not None:
            built.append(harvester)
        try:
            async for outcome in harvester.run(names):
                outcomes.append(outcome)
        except HarvestStopped as stopped:
            return outcomes, stopped
        finally:
            store.close()
    return outcomes, None


def stored_ids(db: Path, names: list[str], round_no: int = 1) -> dict[str, list[int]]:
    """Return each user's video ids as a round of the store at ``db`` holds them, in order."""
    with Store(db, create=False) as store:
        return {name: [int(v) for v, _ in store.round_videos(name, round_no)] for name in names}


def truth_ids(sim: Simulator, names: list[str]) -> dict[str, list[int]]:
    """Return each user's video ids as the simulator's ground truth holds them, in order."""
    return {name: [v["id"] for v in sim.ground_truth(name)] for name in names}


def other_tasks() -> set[asyncio.Task[object]]:
    """Return the tasks running beside the current one, the simulator's own handlers aside."""
    # The simulator's handlers of kept-alive connections are the server's, not the client's.
    return {
        t
        for t in asyncio.all_tasks()
        if t is not asyncio.current_task()
        and not t.get_coro().__qualname__.startswith("RequestHandler")  # type: ignore[union-attr]
    }


async def settle(before: set[asyncio.Task[object]]) -> set[asyncio.Task[object]]:
    """Let the loop run a few rounds; return the tasks still alive that were not there before."""
    for _ in range(20):
        await asyncio.sleep(0)
    return {t for t in other_tasks() - before if not t.done()}


@dataclasses.dataclass(frozen=True)
class Ran:
    """What a command run in-process did: like subprocess.CompletedProcess, text decoded."""

    returncode: int
    stdout: str
    stderr: str
    stdout_bytes: bytes


def _text_stream(data: bytes = b"") -> io.TextIOWrapper:
    # A real TextIOWrapper over bytes: `.buffer` for binary exports, isatty() False.
    return io.TextIOWrapper(io.BytesIO(data), encoding="utf-8", newline="", write_through=True)


def sim_env(sim: Simulator, **extra: str) -> dict[str, str]:
    """Return an environment for a CLI process on ``sim``: its URL and test credentials, and
    none of the caller's ``TIKTOK_*`` or libpq ``PG*`` variables (plus ``extra``)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("TIKTOK_", "PG"))}
    env.update(
        TIKTOK_API_BASE_URL=sim.base_url,
        TIKTOK_CLIENT_KEY=TEST_CLIENT_KEY,
        TIKTOK_CLIENT_SECRET=TEST_CLIENT_SECRET,
        **extra,
    )
    return env


def run_main(
    *args: object, env: Mapping[str, str] | None = None, stdin: str | bytes | None = None
) -> Ran:
    """Run ``tiktok-reposts ARGS`` in this process: its exit status, stdout and stderr.

    :param args: the command line after the program's name (paths are turned into text).
    :param env: the whole environment during the run (None: this process's own).
    :param stdin: what standard input holds (None: nothing).
    """
    from tiktok_repost_async.cli import main

    data = stdin.encode() if isinstance(stdin, str) else stdin or b""
    streams = (sys.stdin, sys.stdout, sys.stderr)
    out, err = _text_stream(), _text_stream()
    saved_env = dict(os.environ)
    loggers = {
        name: (logger.handlers[:], logger.propagate, logger.level)
        for name in ("tiktok_repost_async", "tiktok_repost_async.cli", "py.warnings")
        for logger in [logging.getLogger(name)]
    }
    if env is not None:
        os.environ.clear()
        os.environ.update(env)
    sys.stdin, sys.stdout, sys.stderr = _text_stream(data), out, err
    try:
        status = main([str(arg) for arg in args])
    finally:
        sys.stdin, sys.stdout, sys.stderr = streams
        os.environ.clear()
        os.environ.update(saved_env)
        # The command sends the package's logging to its console: give it back to pytest.
        for name, (handlers, propagate, level) in loggers.items():
            logger = logging.getLogger(name)
            logger.handlers[:], logger.propagate = handlers, propagate
            logger.setLevel(level)
        logging.captureWarnings(False)
    raw = out.buffer.getvalue()  # type: ignore[attr-defined]
    return Ran(
        status,
        raw.decode("utf-8", "replace").replace("\r\n", "\n"),
        err.buffer.getvalue().decode("utf-8", "replace"),  # type: ignore[attr-defined]
        raw,
    )
