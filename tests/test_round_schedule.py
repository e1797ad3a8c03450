"""A panel on a schedule: ``harvest --new-round-every AGE`` and ``status --check`` (issue 21).

Run from cron every hour, the same command starts a round only when one is due (the latest round
finished and started AGE ago), resumes an unfinished one, and otherwise does nothing, says so in
one line and exits 0, spending nothing. The cadence is recorded in the store, so that ``status``
says when the next round is due and ``status --check`` exits 1 when one is overdue.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import sqlite3
from pathlib import Path

import pytest
from support import FakeClock, make_client, run_main
from test_cli import cli_env, write_users

from tiktok_repost_async import RoundSchedule, Store, UserState
from tiktok_repost_async.cli.status import needs_a_person, status_report, status_text
from tiktok_repost_async.harvester import Harvester
from tiktok_repost_async.simulator import Fault, Simulator

PANEL = ["alice_n250", "bob_n120", "carol_n30"]
DAY = 86400.0
WEEK = 7 * DAY


async def scheduled(
    sim: Simulator, db: Path, clock: FakeClock, names: list[str] = PANEL, **options: object
) -> Harvester:
    """Run one scheduled harvest (a week's cadence) at the clock's time; return its harvester."""
    async with make_client(sim) as client:
        with Store(db, fields=client.fields, max_count=client.max_count, clock=clock) as store:
            harvester = Harvester(
                client,
                store,
                new_round_every=dt.timedelta(days=7),
                clock=clock,
                **options,  # type: ignore[arg-type]
            )
            async for _ in harvester.run(names):
                pass
    return harvester


async def test_a_round_starts_when_due_and_not_before_nor_twice(
    sim: Simulator, tmp_path: Path
) -> None:
    db = tmp_path / "panel.db"
    clock = FakeClock()
    start = clock.now
    first = await scheduled(sim, db, clock)
    assert (first.round, first.rested) == (1, False)
    spent = sim.stats.requests
    # Every hour of the week after: nothing to do, nothing sent, not even a name read.
    for hours in (1, 24, 24 * 6 + 22):
        clock.now = start + hours * 3600
        idle = await scheduled(sim, db, clock)
        assert idle.rested
        assert idle.schedule is not None
        assert idle.schedule.due == start + WEEK
    assert sim.stats.requests == spent
    # A weekly timer fires a few seconds short of the week since round 1's start was recorded.
    clock.now = start + WEEK - 5
    sim.config.epoch = 1
    second = await scheduled(sim, db, clock, stop_at_known=True)
    assert (second.round, second.round_started, second.rested) == (2, True, False)
    clock.now += 3600
    assert (await scheduled(sim, db, clock)).rested
    with Store(db, create=False) as store:
        rounds = store.rounds()
        assert [(r.number, r.complete, r.stop_at_known) for r in rounds] == [
            (1, True, False),
            (2, True, True),
        ]
        # The next is due a week after round 2 started, whenever it finished.
        schedule = store.round_schedule()
        assert schedule is not None
        assert schedule.due == start + 2 * WEEK - 5
        assert store.round_cadence == WEEK


async def test_an_unfinished_round_is_resumed_even_when_the_next_is_due(
    sim: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tiktok_repost_async import RetryPolicy

    monkeypatch.setattr(RetryPolicy, "delay", lambda self, attempt, error=None: 0.0)
    db = tmp_path / "panel.db"
    clock = FakeClock()
    await scheduled(sim, db, clock)
    clock.now += WEEK
    sim.config.epoch = 1
    sim.config.user_faults = {"bob_n120": Fault.SERVER_ERROR}
    second = await scheduled(sim, db, clock)
    assert second.round == 2
    assert second.progress.finished[UserState.FAILED] == 1
    # A week and more later round 2 still waits for bob: the scheduled run resumes it.
    sim.config.user_faults = {}
    clock.now += WEEK + DAY
    again = await scheduled(sim, db, clock)
    assert (again.round, again.round_started, again.rested) == (2, False, False)
    with Store(db, create=False) as store:
        assert [r.complete for r in store.rounds()] == [True, True]


def test_bad_ages_and_option_clashes_are_refused_before_any_request(tmp_path: Path) -> None:
    users = write_users(tmp_path / "panel.txt", PANEL)
    db = tmp_path / "panel.db"
    sim = Simulator()
    with sim.run_in_thread() as base_url:
        base = ["harvest", users, "--db", db, "--base-url", base_url]
        for bad in ("7", "7x", "0d", "-1d", "1.5d", "d", "7 d", "7D"):
            ran = run_main(*base, f"--new-round-every={bad}", env=cli_env())
            assert ran.returncode == 2, bad
            assert f"argument --new-round-every: {bad!r} is not an age" in ran.stderr
            assert "e.g. 7d or 12h" in ran.stderr
        both = run_main(*base, "--new-round", "--new-round-every", "7d", env=cli_env())
        assert both.returncode == 2
        assert "--new-round and --new-round-every exclude each other" in both.stderr
        assert sim.stats.requests == 0
        assert sim.stats.tokens_issued == 0
        assert not db.exists()
    client = make_client("http://127.0.0.1:9")
    with Store(tmp_path / "py.db", fields=client.fields, max_count=client.max_count) as store:
        with pytest.raises(ValueError, match="new_round or new_round_every, not both"):
            Harvester(client, store, new_round=True, new_round_every=60)
        with pytest.raises(ValueError, match="a cadence of rounds is a time above 0"):
            Harvester(client, store, new_round_every=dt.timedelta(0))


def test_on_a_timer_the_command_says_in_one_line_that_nothing_is_due(tmp_path: Path) -> None:
    users = write_users(tmp_path / "panel.txt", PANEL)
    db = tmp_path / "panel.db"
    sim = Simulator()
    with sim.run_in_thread() as base_url:
        base = ["harvest", users, "--db", db, "--base-url", base_url, "--no-progress"]
        every = ["--new-round-every", "7d", "--stop-at-known"]
        # The cadence is recorded by every scheduled run, a run with nothing to do included.
        first = run_main(*base, "--new-round-every", "30m", env=cli_env())
        assert first.returncode == 0, first.stderr
        with Store(db, create=False) as store:
            assert store.round_cadence == 1800
        tokens, requests = sim.stats.tokens_issued, sim.stats.requests
        idle = run_main(*base, *every, env=cli_env())
        assert idle.returncode == 0, idle.stderr
        with Store(db, create=False) as store:
            assert store.round_cadence == WEEK
        assert idle.stderr.count("\n") == 1
        assert idle.stderr.startswith("nothing to do: round 1 is complete and the next is due ")
        assert "(in 6d23h; --new-round-every 7d)" in idle.stderr
        # Nothing was asked of the API, not even a token.
        assert (sim.stats.tokens_issued, sim.stats.requests) == (tokens, requests)
        # Eight days on (the store's round 1 started then), round 2 starts.
        started_days_ago(db, 8)
        sim.config.epoch = 1
        due = run_main(*base, *every, env=cli_env())
        assert due.returncode == 0, due.stderr
        assert "round 2 (started, stopping at known videos)" in due.stderr
        assert sim.stats.requests - requests == len(PANEL)
        # The run before is still going (a round of days): the timer's run is no mistake.
        with Store(db, create=False) as store, store.run_lock():
            started_days_ago(db, 8, number=2)
            busy = run_main(*base, *every, env=cli_env())
        assert busy.returncode == 0, busy.stderr
        assert busy.stderr.startswith("nothing to do this time: ")
        assert "is being harvested by another process (pid " in busy.stderr
        assert busy.stderr.endswith("; the next scheduled run looks again\n")


def started_days_ago(db: Path, days: float, number: int = 1) -> None:
    """Move a round's recorded start back by ``days``: time passing, for a real process."""
    when = dt.datetime.now(dt.UTC) - dt.timedelta(days=days)
    with contextlib.closing(sqlite3.connect(db)) as conn, conn:
        conn.execute(
            "UPDATE rounds SET started_at = ? WHERE number = ?",
            (when.strftime("%Y-%m-%dT%H:%M:%SZ"), number),
        )
    conn.close()


async def test_status_says_when_the_next_round_is_due_and_check_alarms_when_overdue(
    sim: Simulator, tmp_path: Path
) -> None:
    db = tmp_path / "panel.db"
    clock = FakeClock()
    start = clock.now
    await scheduled(sim, db, clock)
    with Store(db, create=False) as store:
        report = status_report(store, daily_quota=1000, limit=None, now=start + DAY)
        assert report.schedule is not None
        assert (report.schedule.every, report.schedule.overdue) == ("7d", False)
        assert report.schedule.next_due == stamp(start + WEEK)
        assert needs_a_person(report) == []
        assert not report.schedule.due_now
        # An hour past its time: due now, and not yet a person's business.
        due = status_report(store, daily_quota=1000, limit=None, now=start + WEEK + 3600)
        assert due.schedule is not None
        assert (due.schedule.due_now, due.schedule.overdue) == (True, False)
        assert needs_a_person(due) == []
        assert ": now (the next scheduled run starts it)" in status_text(due)
        assert ": now (" not in status_text(report)
        # The timer stopped running: a day past due, a person is needed.
        late = status_report(store, daily_quota=1000, limit=None, now=start + WEEK + DAY + 1)
        assert late.schedule is not None
        assert late.schedule.overdue
        assert needs_a_person(late) == [
            f"round 2 is overdue: due {stamp(start + WEEK)} under --new-round-every 7d, and no"
            " harvest has started it (is the timer running?)"
        ]
    # The command, on the real clock: round 1 started nine days ago.
    started_days_ago(db, 9)
    check = run_main("status", "--db", db, "--check", env=cli_env())
    assert check.returncode == 1
    assert "needs a person: round 2 is overdue" in check.stderr
    assert "schedule  a new round every 7d (harvest --new-round-every):" in check.stdout
    assert "OVERDUE (no harvest has started it)" in check.stdout
    # A store never run on a schedule has no schedule, and no alarm for it.
    plain = tmp_path / "plain.db"
    with Store(plain, fields=("id",), max_count=100) as store:
        assert store.round_schedule() is None
        assert status_report(store, daily_quota=1000, limit=None).schedule is None


def test_a_round_unfinished_long_past_due_is_overdue_too() -> None:
    schedule = RoundSchedule(WEEK, 3, 0.0, finished=False)
    assert not schedule.starts_now(WEEK * 3)
    assert not schedule.overdue(WEEK + DAY)
    assert schedule.overdue(WEEK + DAY + 1)
    # A short cadence waits past due as long as the cadence, and starts a twentieth early.
    short = RoundSchedule(1800.0, 1, 0.0, finished=True)
    assert (short.starts_now(1800 - 91), short.starts_now(1800 - 90)) == (False, True)
    assert (short.overdue(3600), short.overdue(3601)) == (False, True)


def stamp(when: float) -> str:
    return dt.datetime.fromtimestamp(when, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.mark.slow
def test_a_scheduled_round_killed_mid_pipe_is_resumed_by_the_next_timer_run(
    tmp_path: Path,
) -> None:
    import os
    import signal
    import subprocess

    from test_cli import command
    from test_input_pipe import within
    from test_rounds import changes_by_user

    panel = [f"panelist{i}" for i in range(8)]
    users = write_users(tmp_path / "panel.txt", panel)
    db = tmp_path / "panel.db"
    sim = Simulator()
    with sim.run_in_thread() as base_url:
        timer = ["--db", db, "--base-url", base_url, "--new-round-every", "7d", "--stop-at-known"]
        assert run_main("harvest", users, *timer, env=cli_env()).returncode == 0
        started_days_ago(db, 7)
        sim.config.epoch = 1
        # This week's run reads its names from a pipe, and is killed (SIGKILL) half-way through.
        child = subprocess.Popen(
            command("harvest", "-", *timer, "--no-progress", "-q"),
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env=cli_env(),
        )  # fmt: skip
        assert child.stdin is not None
        child.stdin.write("".join(f"{name}\n" for name in panel[:4]).encode())
        child.stdin.flush()

        def walked_some() -> bool:
            with Store(db, create=False) as store:
                return store.current_round == 2 and store.round_record(2).users[UserState.DONE] >= 2

        assert within(30, walked_some) is not None
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
        child.stdin.close()
        with Store(db, create=False) as store:
            assert not store.round_record(2).input_read
        # The next hour's run (the file, this time) resumes round 2, and does not start round 3.
        again = run_main("harvest", users, *timer, "--no-progress", env=cli_env())
        assert again.returncode == 0, again.stderr
        assert "resuming round 2:" in again.stderr
        assert "its input was not read to the end" in again.stderr
        rested = run_main("harvest", users, *timer, env=cli_env())
        assert rested.returncode == 0
        assert rested.stderr.startswith("nothing to do: round 2 is complete")
        truth = {name: sim.changes(name, 0, 1) for name in panel}
    with Store(db, create=False) as store:
        assert [r.complete for r in store.rounds()] == [True, True]
        found = changes_by_user(store, 1, 2)
    for name in panel:
        got = found.get(name, {"added": [], "removed": [], "counts": {}})
        assert got["added"] == truth[name]["added"], name
        assert set(got["removed"]) <= set(truth[name]["removed"]), name
