"""Bad days: what each of the API's bad days costs a harvest, and whether it still ends exact.

One harvest per bad day, each against a fresh simulator in this process, its clock patched so
that hours of waiting (a quota reset, a circuit breaker's probes) pass in an instant; the wall
time is real. The users are 40 normal ones of 1 to 600 reposts; each row reports the research
requests the simulator received beside the fewest that could do (``Simulator.pages_needed``),
the users that failed and those left pending, whether the store ended with exactly the ground
truth's videos once the API recovered, the simulated time the harvest took, the wall time, and
how the run ended.

(a) An endless user among them: ``has_more`` never turns false (five ``endless`` users). Goal:
    no user failed, the real videos exact, at most 3 extra requests per endless user (the guard's
    empty pages).
(b) A 3-minute outage (500s with no message) starting mid-run. Goal: no user failed, exact, a
    few dozen extra requests at most (the breaker's threshold and probes).
(c) A field the API stopped accepting (400 "Invalid fields: video_tag"): the run ends at the
    first request; a new store without the field then harvests exact. Goal: 1 extra request.
(d) The daily quota runs out mid-run, its 429 with a neutral text (no word "quota"); the run
    waits for the reset (``on_quota=wait``). Goal: exact, extra requests within the streak that
    tells the quota (a dozen).
(e) The same, and the reset lags 40 minutes. Goal: exact, the lag costs minutes (the run ends
    before 01:00 UTC) and a few probes, not a day.

Whose fault is it (issue 20). The minimum of (f) to (h) leaves the broken user out: the API
never serves it, so each of its requests is an extra.

(f) One user answers 500 to every request while the API serves everyone else: the 21st of the
    40, at concurrency 1 (the only user in flight when it fails). Goal: that user alone
    failed, none pending, the others exact, at most 6 extra requests (the breaker's threshold of
    5 and one more chance), a probe's wait of simulated time (under 5 min), not the breaker's hour.
(g) The same user last of the 40 (the tail of the run). Goal: as (f), and 7 extra at most (with
    no name left, the probe asks again for a user already done).
(h) As (f), the user's answer "Invalid count or cursor" (400) instead of a 500. Goal: as (f).
(i) "Invalid count or cursor" for every request of every user (40 users, concurrency 8): an
    outage, not 40 failed users. Goal: the run stops resumable with no user failed, at most 46
    requests refused (the threshold, the 8 on their way, an hour of probes); then the same
    command, the API well again, harvests exact with no extra beyond those refused.
(j) A short-term limit of 5 requests in any second, its 429s without ``Retry-After``, against
    the client's default rate of 10 a second and concurrency 8: 20 users of 250 reposts, on the
    real clock (the limiter and the simulator's sliding window both need it; the simulator
    serves from a thread of this process). Goal: the run finishes exact, at most a fifth of its
    requests refused; it never takes the limit for the daily quota.
(k) The daily quota runs out mid-run, its 429 with a neutral text, ``on_quota=stop``, at
    concurrency 8; the same command after the UTC reset. Goal: the first run stops for the
    quota with no user failed and at most 12 requests from the first 429 on (all of them
    refused); the second finishes exact, 12 extra requests at most in all.

    python benchmarks/bench_bad_days.py [--only LETTERS] [--json [FILE]]

Before/after: the same file runs on an older package with ``PYTHONPATH`` at its tree (``git
archive REV tiktok_repost_async | tar -x -C DIR``); the table's first line names the package
imported. A simulator without ``user_faults`` gets the broken user's faults as a script.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import logging
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from _common import add_json_option, write_json

import tiktok_repost_async
from tiktok_repost_async import InvalidFieldsError, RepostClient, RetryPolicy, WalkStopped
from tiktok_repost_async.harvester import Harvester
from tiktok_repost_async.models import DEFAULT_FIELDS
from tiktok_repost_async.simulator import (
    TEST_CLIENT_KEY,
    TEST_CLIENT_SECRET,
    Fault,
    Simulator,
)
from tiktok_repost_async.store import Store, UserState

CONCURRENCY = 8
NOON = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC).timestamp()
MIDNIGHT = dt.datetime(2026, 3, 2, 0, 0, tzinfo=dt.UTC).timestamp()
NAMES = [f"bad{i}_n{(i * 97) % 600 + 1}" for i in range(40)]
ENDLESS = [f"endless_bad{i}_n{150 + 40 * i}" for i in range(5)]
#: The user the API never serves in (f) to (h): the 21st of the 40.
BROKEN = NAMES[20]
#: The users of (j): 3 pages each, 60 requests, 12 s at 5 a second.
FIVE = [f"five{i}_n250" for i in range(20)]
#: How long (j) may run on the real clock before it is cut.
REAL_CAP = 90.0
#: What the simulator holds of a scripted fault when it has no ``user_faults`` (older trees).
SCRIPTED = 10_000


class FakeTime:
    """A wall clock that moves when the harvest waits, and ``tick`` seconds at every read."""

    def __init__(self, start: float, tick: float = 0.0) -> None:
        self.now = start
        self.tick = tick

    def __call__(self) -> float:
        self.now += self.tick
        return self.now

    async def sleep(self, seconds: float) -> None:
        """Move the clock by ``seconds``, yielding to the loop once."""
        self.now += seconds
        await asyncio.sleep(0)


Notes = dict[str, Any]


def make_client(
    sim: Simulator, clock: FakeTime, fields: tuple[str, ...], concurrency: int
) -> RepostClient:
    """Return a client of ``sim`` that the limiter does not slow, its backoffs in milliseconds."""
    client = RepostClient(
        TEST_CLIENT_KEY,
        TEST_CLIENT_SECRET,
        base_url=sim.base_url,
        fields=fields,
        requests_per_second=1_000_000,
        concurrency=concurrency,
        retry=RetryPolicy(base_delay=0.001, max_delay=0.01),
    )
    # The token's clock is monotonic; here it moves with the fake wall clock.
    client._auth._clock = clock
    return client


async def harvest(
    sim: Simulator,
    clock: FakeTime,
    db: Path,
    names: list[str],
    *,
    fields: tuple[str, ...] = DEFAULT_FIELDS,
    on_quota: str = "stop",
    concurrency: int = CONCURRENCY,
) -> str:
    """Harvest ``names`` into ``db``; return how the run ended."""
    client = make_client(sim, clock, fields, concurrency)

    async def wait(seconds: float) -> None:
        # The hours pass once the requests already on their way have arrived, as they would.
        for _ in range(1000):
            if sim.stats.in_flight == 0 and sim.stats.requests >= client.stats.requests:
                break
            await asyncio.sleep(0.001)
        await clock.sleep(seconds)

    async with client:
        store = Store(db, fields=client.fields, max_count=client.max_count, clock=clock)
        harvester = Harvester(
            client, store, daily_quota=10**6, on_quota=on_quota, clock=clock, sleep=wait
        )
        try:
            async for _ in harvester.run(names):
                pass
        except WalkStopped as stopped:
            return _stopped(stopped)
        except InvalidFieldsError as error:
            return f"ended: {error.message}"
        finally:
            store.close()
    return "finished"


def _stopped(stopped: WalkStopped) -> str:
    return f"stopped ({stopped.reason.value})"


def check(db: Path, sim: Simulator, names: list[str], exact_names: list[str]) -> dict[str, Any]:
    """Return the users failed and pending, and whether ``exact_names`` hold the ground truth."""
    with Store(db, create=False) as store:
        counts = store.state_counts()
        stored: dict[str, list[int]] = {name: [] for name in exact_names}
        for name, video_id, _data in store.iter_videos():
            if name in stored:
                stored[name].append(int(video_id))
    truth = {name: [int(v["id"]) for v in sim.ground_truth(name)] for name in exact_names}
    final = sum(n for state, n in counts.items() if state is not UserState.PENDING)
    return {
        "failed": counts.get(UserState.FAILED, 0),
        # Users the run never claimed are not in the store at all: pending too.
        "pending": len(names) - final,
        "exact": stored == truth,
    }


def break_user(sim: Simulator, name: str, fault: Fault) -> None:
    """Make the API refuse every request of ``name`` with ``fault``, and serve everyone else."""
    if hasattr(sim.config, "user_faults"):
        sim.config.user_faults = {name: fault}
    else:
        # An older simulator: the same faults as a script longer than any run here.
        sim.script(name, [fault] * SCRIPTED)


async def scenario(
    label: str,
    names: list[str],
    folder: Path,
    setup: Callable[[Simulator, FakeTime], None],
    body: Callable[[Simulator, FakeTime, Path, Notes], Awaitable[str]] | None = None,
    *,
    tick: float = 0.0,
    concurrency: int = CONCURRENCY,
    served: list[str] | None = None,
) -> dict[str, Any]:
    """Run one bad day and return its row; ``served``: the users the API can serve at all."""
    clock = FakeTime(NOON, tick)
    db = folder / f"{label}.db"
    served = names if served is None else served
    notes: Notes = {}
    async with Simulator(clock=clock) as sim:
        setup(sim, clock)
        started = time.perf_counter()
        if body is None:
            ended = await harvest(sim, clock, db, names, concurrency=concurrency)
        else:
            ended = await body(sim, clock, db, notes)
            db = Path(notes.get("db", db))
        wall = time.perf_counter() - started
        minimum = sum(sim.pages_needed(name) for name in served)
        return {
            "label": label,
            "requests": sim.stats.requests,
            "minimum": minimum,
            "extra": sim.stats.requests - minimum,
            **check(db, sim, names, served),
            "ended": ended,
            "simulated_s": clock.now - NOON,
            "ended_at": clock.now,
            "wall_s": wall,
            "lag_refusals": sim.stats.quota_lag_refusals,
            "refused_429": sim.stats.by_status[429],
            **notes,
        }


async def real_time_limit(folder: Path) -> dict[str, Any]:
    """(j): a 5-a-second limit without Retry-After, the client's defaults, the real clock."""
    db = folder / "limit5.db"
    sim = Simulator(rate_limit=5)
    ended = "finished"
    with sim.run_in_thread() as base_url:
        # The client's defaults: 10 requests a second, concurrency 8, its own retry policy.
        client = RepostClient(TEST_CLIENT_KEY, TEST_CLIENT_SECRET, base_url=base_url)
        started = time.perf_counter()
        async with client:
            store = Store(db, fields=client.fields, max_count=client.max_count)
            harvester = Harvester(client, store)

            async def walk() -> None:
                async for _ in harvester.run(FIVE):
                    pass

            try:
                await asyncio.wait_for(walk(), REAL_CAP)
            except WalkStopped as stopped:
                ended = _stopped(stopped)
            except TimeoutError:
                ended = f"cut after {REAL_CAP:.0f} s (still running)"
            finally:
                store.close()
        wall = time.perf_counter() - started
        requests, refused = sim.stats.requests, sim.stats.by_status[429]
    minimum = sum(sim.pages_needed(name) for name in FIVE)
    return {
        "label": "limit5",
        "requests": requests,
        "minimum": minimum,
        "extra": requests - minimum,
        **check(db, sim, FIVE, FIVE),
        "ended": ended,
        "simulated_s": wall,
        "ended_at": None,
        "wall_s": wall,
        "lag_refusals": 0,
        "refused_429": refused,
    }


async def run(folder: Path, only: str) -> list[dict[str, Any]]:
    """Run the bad days named by ``only`` (letters; "-" is the clean day), one after the other."""
    rows = []
    if "-" in only:
        rows.append(await scenario("clean", NAMES, folder, lambda sim, clock: None))
    if "a" in only:
        rows.append(await scenario("endless", NAMES + ENDLESS, folder, lambda sim, clock: None))

    def outage(sim: Simulator, clock: FakeTime) -> None:
        # Each read of the clock moves it a millisecond: the outage begins some way in.
        sim.config.outage_start, sim.config.outage_seconds = clock.now + 0.2, 180.0

    if "b" in only:
        rows.append(await scenario("outage", NAMES, folder, outage, tick=0.001))

    def reject(sim: Simulator, clock: FakeTime) -> None:
        sim.config.rejected_fields = frozenset({"video_tag"})

    async def rejected(sim: Simulator, clock: FakeTime, db: Path, notes: Notes) -> str:
        ended = await harvest(sim, clock, db, NAMES)
        # The researcher harvests into a new store without the field, as the CLI tells them.
        fields = tuple(f for f in DEFAULT_FIELDS if f != "video_tag")
        notes["db"] = str(db.with_name(db.stem + "-again.db"))
        await harvest(sim, clock, Path(notes["db"]), NAMES, fields=fields)
        return ended

    if "c" in only:
        rows.append(await scenario("rejected", NAMES, folder, reject, rejected))

    def quota(lag: float) -> Callable[[Simulator, FakeTime], None]:
        def setup(sim: Simulator, clock: FakeTime) -> None:
            # The project's quota (shared with collaborators) runs out two thirds of the way.
            sim.config.daily_quota = sum(sim.pages_needed(name) for name in NAMES) * 2 // 3
            sim.config.quota_message = "Rate limit exceeded"
            sim.config.quota_reset_lag = lag

        return setup

    async def waits(sim: Simulator, clock: FakeTime, db: Path, notes: Notes) -> str:
        return await harvest(sim, clock, db, NAMES, on_quota="wait")

    if "d" in only:
        rows.append(await scenario("quota", NAMES, folder, quota(0.0), waits))
    if "e" in only:
        rows.append(await scenario("lag", NAMES, folder, quota(40 * 60.0), waits))

    def broken(fault: Fault) -> Callable[[Simulator, FakeTime], None]:
        return lambda sim, clock: break_user(sim, BROKEN, fault)

    others = [name for name in NAMES if name != BROKEN]
    if "f" in only:
        rows.append(
            await scenario(
                "user500",
                NAMES,
                folder,
                broken(Fault.SERVER_ERROR),
                concurrency=1,
                served=others,
            )
        )
    if "g" in only:
        rows.append(
            await scenario(
                "user500_tail",
                [*others, BROKEN],
                folder,
                broken(Fault.SERVER_ERROR),
                concurrency=1,
                served=others,
            )
        )
    if "h" in only:
        rows.append(
            await scenario(
                "user_cursor",
                NAMES,
                folder,
                broken(Fault.INVALID_CURSOR),
                concurrency=1,
                served=others,
            )
        )

    def everyone(sim: Simulator, clock: FakeTime) -> None:
        sim.config.persistent_fault = Fault.INVALID_CURSOR

    async def then_well(sim: Simulator, clock: FakeTime, db: Path, notes: Notes) -> str:
        ended = await harvest(sim, clock, db, NAMES)
        first = check(db, sim, NAMES, [])
        notes.update(
            db=str(db),
            first_requests=sim.stats.requests,
            first_failed=first["failed"],
            first_pending=first["pending"],
            first_simulated_s=clock.now - NOON,
        )
        # The API is well again; the researcher runs the same command.
        sim.config.persistent_fault = None
        again = await harvest(sim, clock, db, NAMES)
        notes["again"] = again
        return ended

    if "i" in only:
        rows.append(await scenario("cursor_all", NAMES, folder, everyone, then_well))
    if "j" in only:
        rows.append(await real_time_limit(folder))

    async def next_day(sim: Simulator, clock: FakeTime, db: Path, notes: Notes) -> str:
        ended = await harvest(sim, clock, db, NAMES)
        first = check(db, sim, NAMES, [])
        notes.update(
            db=str(db),
            first_requests=sim.stats.requests,
            first_429=sim.stats.by_status[429],
            first_failed=first["failed"],
            first_pending=first["pending"],
            first_simulated_s=clock.now - NOON,
        )
        # The same command after the UTC reset finishes the run.
        clock.now = max(clock.now, MIDNIGHT + 60)
        notes["again"] = await harvest(sim, clock, db, NAMES)
        return ended

    if "k" in only:
        rows.append(await scenario("quota_stop", NAMES, folder, quota(0.0), next_day))
    return rows


LABELS = {
    "clean": "(-) clean day, for comparison",
    "endless": "(a) endless users (has_more never ends)",
    "outage": "(b) 3-minute outage (500s) mid-run",
    "rejected": "(c) rejected field, then a new store",
    "quota": "(d) quota 429 with a neutral text, wait",
    "lag": "(e) (d) and the reset lags 40 min",
    "user500": "(f) one user always 500, mid-run, concurrency 1",
    "user500_tail": "(g) (f) at the tail of the run",
    "user_cursor": "(h) (f) with Invalid count or cursor",
    "cursor_all": "(i) Invalid count or cursor for all; again when well",
    "limit5": "(j) limit 5/s without Retry-After, rate 10/s (real clock)",
    "quota_stop": "(k) quota 429 with a neutral text, stop",
}


def _met(row: dict[str, Any], most: int) -> bool:
    """Say whether a row ended exact with no user failed and at most ``most`` extra requests."""
    return row["failed"] == 0 and row["exact"] and 0 <= row["extra"] <= most


def _one_failed(row: dict[str, Any], most: int) -> bool:
    """Say whether the broken user alone failed, the run went on, and cost what (f) allows."""
    return (
        row["failed"] == 1
        and row["pending"] == 0
        and row["exact"]
        and row["ended"] == "finished"
        and 0 <= row["extra"] <= most
        and row["simulated_s"] < 300
    )


GOALS: dict[str, tuple[str, Callable[[dict[str, Any]], bool]]] = {
    "endless": (
        f"no user failed, exact, extra <= {3 * len(ENDLESS)} (3 per endless user)",
        lambda row: _met(row, 3 * len(ENDLESS)),
    ),
    "outage": ("no user failed, exact, extra <= 40", lambda row: _met(row, 40)),
    "rejected": ("exact after a new store, extra = 1", lambda row: _met(row, 1)),
    "quota": ("exact after the reset, extra <= 12", lambda row: _met(row, 12)),
    "lag": (
        "exact before 01:00 UTC, extra <= 20",
        lambda row: _met(row, 20) and row["ended_at"] < MIDNIGHT + 3600,
    ),
    "user500": (
        "that user alone failed, none pending, the others exact, extra <= 6, under 5 min",
        lambda row: _one_failed(row, 6),
    ),
    "user500_tail": (
        "that user alone failed, none pending, the others exact, extra <= 7, under 5 min",
        lambda row: _one_failed(row, 7),
    ),
    "user_cursor": (
        "that user alone failed, none pending, the others exact, extra <= 6, under 5 min",
        lambda row: _one_failed(row, 6),
    ),
    "cursor_all": (
        "first run stops unhealthy, none failed, <= 46 refused; then exact, nothing more extra",
        lambda row: (
            row["first_failed"] == 0
            and row["ended"] == "stopped (unhealthy)"
            and row["first_requests"] <= 46
            and row["again"] == "finished"
            and row["extra"] == row["first_requests"]
            and _met(row, 46)
        ),
    ),
    "limit5": (
        "finishes exact, 429s <= 1/5 of the requests",
        lambda row: (
            row["ended"] == "finished"
            and row["failed"] == 0
            and row["exact"]
            and row["refused_429"] <= row["requests"] / 5
        ),
    ),
    "quota_stop": (
        "stops for the quota, none failed, <= 12 requests from the first 429 on",
        lambda row: (
            row["ended"] == "stopped (quota)"
            and row["first_failed"] == 0
            and row["first_429"] <= 12
            and row["again"] == "finished"
            and _met(row, 12)
        ),
    ),
}


def results(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return the goal rows, for run_all.py."""
    out = []
    for row in rows:
        if row["label"] not in GOALS:
            continue
        goal, met = GOALS[row["label"]]
        measured = (
            f"{row['requests']} / {row['minimum']} requests, {row['failed']} failed,"
            f" {row['pending']} pending, {'exact' if row['exact'] else 'NOT exact'}"
        )
        if row["label"] == "limit5":
            measured += f", {row['refused_429']} 429s, {row['ended']}"
        if row["label"] in ("cursor_all", "quota_stop"):
            measured += (
                f"; first run {row['first_requests']} requests, {row['first_failed']} failed,"
                f" {row['ended']}"
            )
        if row["label"] == "quota_stop":
            measured += f", {row['first_429']} from the first 429 on"
        out.append(
            {
                "benchmark": f"bad days: {LABELS[row['label']][4:]}",
                "goal": goal,
                "measured": measured,
                "met": met(row),
            }
        )
    return out


def main() -> None:
    """Run the bad days and print the table, or the results as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only",
        default="-abcdefghijk",
        metavar="LETTERS",
        help="the bad days to run, by letter; '-' is the clean day (all of them)",
    )
    add_json_option(parser)
    args = parser.parse_args()
    # Every bad day logs a warning per retry, pause and probe: noise beside the table.
    logging.getLogger("tiktok_repost_async").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory() as folder:
        rows = asyncio.run(run(Path(folder), args.only))
    if write_json({"results": results(rows), "raw": rows}, args.json):
        return
    print(f"package: {Path(tiktok_repost_async.__file__).parent}")
    print(
        f"{len(NAMES)} users, concurrency {CONCURRENCY} ((f) to (h): 1), the clock patched"
        " (waits pass at once) but for (j)"
    )
    header = [
        "bad day",
        "requests",
        "minimum",
        "extra",
        "429s",
        "failed",
        "pending",
        "exact",
        "simulated",
        "wall",
        "ended",
    ]
    table = [header]
    for row in rows:
        table.append(
            [
                LABELS[row["label"]],
                f"{row['requests']}",
                f"{row['minimum']}",
                f"{row['extra']:+d}",
                f"{row['refused_429']}",
                f"{row['failed']}",
                f"{row['pending']}",
                "yes" if row["exact"] else "NO",
                _duration(row["simulated_s"]),
                f"{row['wall_s']:.1f} s",
                row["ended"],
            ]
        )
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    for line in table:
        print(
            "  ".join(
                c.ljust(w) if i in (0, len(header) - 1) else c.rjust(w)
                for i, (c, w) in enumerate(zip(line, widths, strict=True))
            ).rstrip()
        )
    by = {row["label"]: row for row in rows}
    if "lag" in by:
        lag = by["lag"]
        print(
            f"(e) ended at {time.strftime('%H:%M', time.gmtime(lag['ended_at']))} UTC the next"
            f" day; {lag['lag_refusals']} requests were refused during the lag"
        )
    if "cursor_all" in by:
        row = by["cursor_all"]
        print(
            f"(i) first run: {row['first_requests']} requests, {row['first_failed']} failed,"
            f" {row['first_pending']} pending, {_duration(row['first_simulated_s'])},"
            f" {row['ended']};"
            f" the same command once the API is well: {row['again']},"
            f" {row['requests'] - row['first_requests']} requests more"
        )
    if "limit5" in by:
        row = by["limit5"]
        share = row["refused_429"] / row["requests"] if row["requests"] else 0.0
        print(
            f"(j) {row['requests']} requests, {row['refused_429']} of them 429 ({share:.0%}),"
            f" {row['wall_s']:.1f} s, {row['ended']}"
        )
    if "quota_stop" in by:
        row = by["quota_stop"]
        print(
            f"(k) first run: {row['first_requests']} requests, {row['first_429']} of them from the"
            f" first 429 on, {row['first_failed']} failed, {row['first_pending']} pending,"
            f" {_duration(row['first_simulated_s'])}, {row['ended']};"
            f" the same command after the reset: {row['again']},"
            f" {row['requests'] - row['first_requests']} requests more"
        )
    for row in results(rows):
        verdict = "met" if row["met"] else "NOT met"
        print(f"goal {row['goal']} ({row['benchmark']}): {verdict} ({row['measured']})")


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


if __name__ == "__main__":
    main()
