"""walk_many: many users at once through one client, as an async application uses it."""

from __future__ import annotations

import asyncio
import gc
import random
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing
from pathlib import Path
from typing import Any

import pytest
import support
from support import other_tasks, settle

from tiktok_repost_async import (
    ClientClosedError,
    NameSkipped,
    PageEvent,
    RepostClient,
    RetryPolicy,
    ServerError,
    StopReason,
    UserDone,
    WalkGuard,
    WalkState,
    WalkStopped,
)
from tiktok_repost_async.engine import CHUNK, QUOTA_STREAK, RATE_PROBE_WAITS
from tiktok_repost_async.simulator import Fault, Simulator

KINDS = ["missing_w", "private_w", "empty_w", "stall_n500", "short_n300", "hugeid_n150"]
MIXED = KINDS + [f"mix{i}_n{(i * 37) % 420}" for i in range(60 - len(KINDS))]


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator(latency=0.002, jitter=0.004) as simulator:
        yield simulator


def make_client(sim: Simulator, **kwargs: Any) -> RepostClient:
    return support.make_client(sim, **{"concurrency": 8, **kwargs})


class LoopErrors:
    """Record what the event loop would log: 'Task exception was never retrieved' and kin."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []

    def __enter__(self) -> LoopErrors:
        self.loop = asyncio.get_running_loop()
        self.previous = self.loop.get_exception_handler()
        self.loop.set_exception_handler(lambda _loop, context: self.seen.append(context))
        return self

    def __exit__(self, *exc: object) -> None:
        gc.collect()  # unretrieved exceptions are reported when their future is collected
        self.loop.set_exception_handler(self.previous)


async def collect(
    client: RepostClient, names: object, **kwargs: Any
) -> tuple[dict[str, list[int]], dict[str, UserDone], list[NameSkipped]]:
    pages: dict[str, list[int]] = {}
    ends: dict[str, UserDone] = {}
    skipped: list[NameSkipped] = []
    async with aclosing(client.walk_many(names, **kwargs)) as events:  # type: ignore[arg-type]
        async for event in events:
            if isinstance(event, PageEvent):
                assert event.username not in ends  # a user's pages come before its end
                pages.setdefault(event.username, []).extend(v.id for v in event.page.videos)
            elif isinstance(event, UserDone):
                assert event.username not in ends
                ends[event.username] = event
            else:
                skipped.append(event)
    return pages, ends, skipped


def truth(sim: Simulator, name: str) -> list[int]:
    return [v["id"] for v in sim.ground_truth(name)]


async def test_sixty_mixed_users_exact_per_user_within_concurrency(sim: Simulator) -> None:
    async with make_client(sim, concurrency=16) as client:
        pages, ends, skipped = await collect(client, MIXED, concurrency=6)
    assert skipped == []
    assert set(ends) == set(MIXED)
    for name in MIXED:
        assert pages.get(name, []) == truth(sim, name), name
    assert ends["missing_w"].state is WalkState.NOT_FOUND
    assert ends["missing_w"].error is not None
    assert ends["private_w"].state is WalkState.UNAVAILABLE
    assert ends["stall_n500"].state is WalkState.INCOMPLETE
    assert ends["stall_n500"].incomplete
    assert ends["stall_n500"].guard is WalkGuard.REPEATED_CURSOR
    done = [e for e in ends.values() if e.state is WalkState.DONE]
    assert len(done) == 57
    assert not any(e.incomplete for e in done)
    assert sum(e.requests for e in ends.values()) == sim.stats.requests
    assert sim.stats.requests == sum(sim.pages_needed(n) for n in MIXED)
    assert 1 < sim.stats.peak_in_flight <= 6


async def test_names_stream_from_an_async_iterable_and_bad_ones_are_events(
    sim: Simulator,
) -> None:
    async def names() -> AsyncIterator[str]:
        for name in ["a_n5", "", "@b_n3", "bo b", "a_n5", "nul\x00x", " a_n5 ", "c_n0"]:
            yield name
            await asyncio.sleep(0)

    async with make_client(sim) as client:
        pages, ends, skipped = await collect(client, names())
    assert sorted(ends) == ["a_n5", "b_n3", "c_n0"]
    assert [(s.line, s.reason) for s in skipped] == [
        (2, "blank line"),
        (4, "not a TikTok username"),
        (5, "duplicate"),
        (6, "NUL byte"),
        (7, "duplicate"),
    ]
    assert sim.stats.by_user["a_n5"] == 1
    assert pages["a_n5"] == truth(sim, "a_n5")


async def test_every_argument_is_checked_before_any_request(sim: Simulator) -> None:
    async with make_client(sim) as client:
        with pytest.raises(TypeError, match="not one string"):
            client.walk_many("alice")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="iterable"):
            client.walk_many(42)  # type: ignore[arg-type]
        for bad in (0, -1, 1.5, True):
            with pytest.raises(ValueError, match="concurrency"):
                client.walk_many(["a"], concurrency=bad)  # type: ignore[arg-type]
            with pytest.raises(ValueError, match="max_pages"):
                client.walk_many(["a"], max_pages=bad)  # type: ignore[arg-type]
    assert sim.stats.requests == 0
    assert sim.stats.tokens_issued == 0


async def test_one_users_failure_never_ends_the_others(sim: Simulator) -> None:
    sim.script("broken_n250", [Fault.SERVER_ERROR] * 2)
    names = ["fine1_n250", "broken_n250", "fine2_n250"]
    policy = RetryPolicy(max_attempts=2, base_delay=0)
    async with make_client(sim, retry=policy) as client:
        pages, ends, _ = await collect(client, names, concurrency=3)
    assert ends["broken_n250"].state is WalkState.FAILED
    assert isinstance(ends["broken_n250"].error, ServerError)
    assert ends["broken_n250"].requests == 2
    for name in ("fine1_n250", "fine2_n250"):
        assert ends[name].state is WalkState.DONE
        assert pages[name] == truth(sim, name)


async def test_max_pages_ends_a_user_incomplete(sim: Simulator) -> None:
    async with make_client(sim, max_count=50) as client:
        pages, ends, _ = await collect(client, ["cap_n500", "small_n30"], max_pages=2)
    assert ends["cap_n500"].pages == 2
    assert ends["cap_n500"].guard is WalkGuard.MAX_PAGES
    assert ends["cap_n500"].cursor == 100  # where a later walk continues
    assert len(pages["cap_n500"]) == 100
    assert not ends["small_n30"].incomplete


async def test_breaking_out_after_ten_events_leaves_nothing_and_the_client_walks_again(
    sim: Simulator,
) -> None:
    names = [f"brk{i}_n350" for i in range(30)]
    before = other_tasks()
    with LoopErrors() as errors:
        async with make_client(sim) as client:
            seen = 0
            async with aclosing(client.walk_many(names, concurrency=6)) as events:
                async for _ in events:
                    seen += 1
                    if seen == 10:
                        break
            assert not await settle(before)
            sent = sim.stats.requests
            await asyncio.sleep(0.05)
            assert sim.stats.requests == sent  # nothing is fetched after the walk was closed
            # A consumer that breaks without aclosing: the generator is closed when dropped.
            async for _ in client.walk_many(names, concurrency=6):
                break
            gc.collect()
            assert not await settle(before)
            pages, ends, _ = await collect(client, names[:5])
            connector = client._session.connector  # type: ignore[union-attr]
        assert connector is not None
        assert connector.closed
        assert not await settle(before)
    assert errors.seen == []
    assert all(pages[n] == truth(sim, n) for n in names[:5])
    assert {e.state for e in ends.values()} == {WalkState.DONE}


async def test_cancelling_the_consumer_at_any_point_stops_every_worker(sim: Simulator) -> None:
    names = [f"cx{i}_n350" for i in range(20)] + ["missing_cx"]
    rng = random.Random(11)
    before = other_tasks()
    with LoopErrors() as errors:
        async with make_client(sim) as client:

            async def consume() -> None:
                async with aclosing(client.walk_many(names, concurrency=5)) as events:
                    async for _ in events:
                        await asyncio.sleep(0)

            for _ in range(6):
                task = asyncio.create_task(consume())
                await asyncio.sleep(rng.uniform(0.0, 0.05))
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
                assert not await settle(before)
            pages, _, _ = await collect(client, names)
        assert not await settle(before)
    assert errors.seen == []
    assert all(pages.get(n, []) == truth(sim, n) for n in names)


async def test_the_apis_daily_quota_answer_stops_the_walk(sim: Simulator) -> None:
    sim.config.daily_quota = 3
    retry = RetryPolicy(base_delay=0)
    clock = support.FakeTime()
    async with make_client(sim, concurrency=1, retry=retry, clock=clock) as client:
        with pytest.raises(WalkStopped) as stopped:
            await collect(client, [f"qq{i}_n250" for i in range(5)])
    assert stopped.value.reason is StopReason.QUOTA
    # Three pages, then a streak of 429s without Retry-After pauses the walk, and they persist
    # through every probe of the hold (minutes, on the fake clock): the daily quota.
    assert sim.stats.requests == 3 + QUOTA_STREAK + len(RATE_PROBE_WAITS)
    assert sum(RATE_PROBE_WAITS) * 0.8 <= sum(clock.sleeps)
    assert sim.stats.by_user["qq2_n250"] == 0


async def test_a_closed_client_refuses_instead_of_opening_a_session(sim: Simulator) -> None:
    client = make_client(sim)
    async with client:
        await client.fetch_page("a_n5")
    for use in (
        lambda: client.walk_many(["a_n5"]),
        lambda: client.pages("a_n5"),
    ):
        with pytest.raises(ClientClosedError, match="closed"):
            use()
    with pytest.raises(ClientClosedError):
        await client.fetch_page("a_n5")
    with pytest.raises(ClientClosedError):
        await client.authenticate()
    with pytest.raises(ClientClosedError):
        async with client:
            pass
    assert client._session is None
    assert sim.stats.requests == 1


def _lines() -> Iterator[str]:
    yield from ("g1_n5", "g2_n5")


async def test_a_plain_iterator_is_read_off_the_event_loop(sim: Simulator) -> None:
    async with make_client(sim) as client:
        pages, ends, _ = await collect(client, _lines())
    assert sorted(ends) == ["g1_n5", "g2_n5"]
    assert pages["g1_n5"] == truth(sim, "g1_n5")


@pytest.mark.parametrize(
    "names",
    [
        ["g1_n5", "g2_n5", "g1_n5", "bad name!"],
        ("g1_n5", "g2_n5", "g1_n5", "bad name!"),
        dict.fromkeys(["g1_n5", "g2_n5", "bad name!"]),
        {"g1_n5": 1, "g2_n5": 2, "bad name!": 3}.keys(),
    ],
    ids=["list", "tuple", "dict", "keys"],
)
async def test_a_collection_in_memory_is_read_in_place_without_a_thread(
    sim: Simulator, names: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Iterating a list cannot block the loop: no reader thread is started for it.
    started: list[str] = []
    real_start = threading.Thread.start

    def spy(thread: threading.Thread) -> None:
        started.append(thread.name)
        real_start(thread)

    monkeypatch.setattr(threading.Thread, "start", spy)
    async with make_client(sim) as client:
        pages, ends, skipped = await collect(client, names)
    assert "tiktok-names" not in started
    assert sorted(ends) == ["g1_n5", "g2_n5"]
    assert pages == {name: truth(sim, name) for name in ("g1_n5", "g2_n5")}
    reasons = {(s.name, s.reason) for s in skipped}
    assert ("bad name!", "not a TikTok username") in reasons
    # The repeated name in the list and tuple is walked once and reported as such.
    assert len(skipped) == (2 if isinstance(names, list | tuple) else 1)


async def test_more_names_in_a_list_than_a_chunk_are_each_walked_once(sim: Simulator) -> None:
    names = [f"empty{i}_w" for i in range(CHUNK + 7)]
    async with make_client(sim, concurrency=16) as client:
        _, ends, skipped = await collect(client, names + names[:3])
    assert sorted(ends) == sorted(names)
    assert len(skipped) == 3
    assert sim.stats.requests == len(names)


async def test_a_bad_line_of_a_file_is_named_without_its_line_ending(
    sim: Simulator, tmp_path: Path
) -> None:
    listing = tmp_path / "users.csv"
    listing.write_bytes(b"fine_n10\r\nbad,line\nalso bad\r\n")
    async with make_client(sim) as client:
        with listing.open(newline="") as lines:
            _, ends, skipped = await collect(client, lines)
    assert set(ends) == {"fine_n10"}
    assert [(s.line, s.name) for s in skipped] == [(2, "bad,line"), (3, "also bad")]
