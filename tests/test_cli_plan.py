"""The quota plan of ``status`` (and of the harvest's ETA), and Ctrl-C where the loop has no
signal handlers (Windows): the commands run in this process against a simulator on a thread."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from support import MIDNIGHT, run_main
from test_cli import cli_env, stored, truth, write_users

from tiktok_repost_async import RetryPolicy, Store
from tiktok_repost_async.cli import estimate_plan
from tiktok_repost_async.simulator import Simulator

# Pages at max_count 100: ceil(n / 100), one at least.
DONE = {"a_n250": 3, "b_n120": 2, "c_n40": 1, "d_n500": 5, "empty_e": 1}
MISSING = "missing_f"  # one refused request, no page: counted as one
PENDING = ["p1_n300", "p2_n300", "p3_n300"]
CUT = "cut_n700"  # walked two pages of seven, then cut by --max-pages: pending, resumable


def status_json(db: Path, *options: object) -> dict[str, Any]:
    result = run_main("status", "--db", db, "--json", *options)
    assert result.returncode == 0, result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def day_after(day: str, days: int) -> str:
    return (dt.date.fromisoformat(day) + dt.timedelta(days=days)).isoformat()


@pytest.fixture
def store_with_known_pages(sim_in_thread: Simulator, tmp_path: Path) -> Path:
    sim = sim_in_thread
    db = tmp_path / "h.db"
    base = ["--db", db, "--base-url", sim.base_url, "--rate", 500]
    finished = write_users(tmp_path / "done.txt", [*DONE, MISSING])
    assert run_main("harvest", finished, *base, env=cli_env()).returncode == 0
    assert stored(db) == truth(sim, list(DONE))
    cut = write_users(tmp_path / "cut.txt", [CUT])
    assert run_main("harvest", cut, *base, "--max-pages", 2, env=cli_env()).returncode == 0
    with Store(db, create=False) as store:
        store.add_users(PENDING)
    assert sim.stats.requests == sum(DONE.values()) + 1 + 2
    return db


def test_the_plan_rests_on_the_pages_finished_users_took(store_with_known_pages: Path) -> None:
    db = store_with_known_pages
    spent = sum(DONE.values()) + 1 + 2  # 15 requests today
    finished = len(DONE) + 1
    mean = (sum(DONE.values()) + 1) / finished  # 13 / 6
    # Four users left at the mean each, less the two pages the cut user already has.
    left = 7  # ceil(4 * 13 / 6 - 2) = ceil(6.67)
    report = status_json(db, "--daily-quota", 1000)
    today = report["requests"]["day"]
    assert report["plan"] == {
        "users_left": 4,
        "finished_users": finished,
        "pages_per_user": round(mean, 2),
        "requests_left": left,
        "daily_quota": 1000,
        "left_today": 1000 - spent,
        "days_left": 0,
        "finish_day": today,
        "fetched_left": 2,
        "basis_round": None,
    }
    # Today's ledger already holds 15: a quota of 16 leaves 1 today; the other 6 fit tomorrow.
    plan = status_json(db, "--daily-quota", 16)["plan"]
    assert (plan["left_today"], plan["days_left"]) == (1, 1)
    assert plan["finish_day"] == day_after(today, 1)
    plan = status_json(db, "--daily-quota", 2)["plan"]
    assert (plan["left_today"], plan["days_left"]) == (0, 4)  # ceil(7 / 2)
    assert plan["finish_day"] == day_after(today, 4)
    text = run_main("status", "--db", db, "--daily-quota", 2).stdout
    assert (
        f"plan      4 users left, ~7 requests ({round(mean, 2):g} per user, the mean of 6 finished,"
        " less 2 pages fetched already)" in text
    )
    assert (
        f"          0 left today, then 4 more days at 2 a day: done about {plan['finish_day']}"
        in (text)
    )


def test_without_a_finished_user_the_plan_is_unknown(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    with Store(db, fields=("id",), max_count=100) as store:
        store.add_users(PENDING)
    plan = status_json(db)["plan"]
    assert plan["users_left"] == 3
    assert plan["finished_users"] == 0
    for key in ("pages_per_user", "requests_left", "days_left", "finish_day"):
        assert plan[key] is None
    text = run_main("status", "--db", db).stdout
    assert "plan      3 users left; requests left unknown until a user has finished" in text


def test_a_finished_store_has_nothing_left(sim_in_thread: Simulator, tmp_path: Path) -> None:
    users = write_users(tmp_path / "u.txt", ["a_n5"])
    db = tmp_path / "h.db"
    run_main("harvest", users, "--db", db, "--base-url", sim_in_thread.base_url, env=cli_env())
    plan = status_json(db)["plan"]
    assert (plan["users_left"], plan["requests_left"], plan["days_left"]) == (0, 0, 0)
    assert "plan      nothing left to harvest" in run_main("status", "--db", db).stdout


def test_the_estimator_counts_today_first_then_whole_days() -> None:
    noon = MIDNIGHT + 12 * 3600  # 2023-11-15 12:00 UTC
    plan = estimate_plan(
        users_left=1000,
        finished_users=50,
        finished_requests=200,  # 4 per user
        fetched_left=100,
        daily_quota=1000,
        spent_today=700,
        now=noon,
    )
    # 4,000 - 100 = 3,900: 300 today, then 3,600 at 1,000 a day: 4 more days.
    assert (plan.requests_left, plan.left_today, plan.days_left) == (3900, 300, 4)
    assert plan.finish_day == "2023-11-19"
    # Never less than one request per user left, however much was fetched already.
    assert (
        estimate_plan(
            users_left=5,
            finished_users=1,
            finished_requests=1,
            fetched_left=50,
            daily_quota=10,
            spent_today=0,
            now=noon,
        ).requests_left
        == 5
    )


# -- Ctrl-C without loop signal handlers ----------------------------------------------------------


def test_ctrl_c_stops_a_harvest_where_the_loop_cannot_watch_signals(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unsupported(*args: object) -> None:
        raise NotImplementedError  # what Windows' event loops do

    monkeypatch.setattr(asyncio.SelectorEventLoop, "add_signal_handler", unsupported)
    names = [f"win{i}_n400" for i in range(8)]
    users = write_users(tmp_path / "users.txt", names)
    db = tmp_path / "h.db"
    before = signal.getsignal(signal.SIGINT)
    sim = Simulator(latency=0.05)
    with sim.run_in_thread():

        def interrupt_once_started() -> None:
            deadline = time.monotonic() + 30
            while sim.stats.requests < 3 and time.monotonic() < deadline:
                time.sleep(0.01)
            os.kill(os.getpid(), signal.SIGINT)

        sender = threading.Thread(target=interrupt_once_started)
        sender.start()
        result = run_main(
            "harvest", users, "--db", db, "--base-url", sim.base_url, "--rate", 50,
            "--concurrency", 2, env=cli_env(),
        )  # fmt: skip
        sender.join()
        assert result.returncode == 75, result.stderr
        assert "stopping: nothing new is sent" in result.stderr
        assert result.stderr.rstrip().endswith("interrupted: run the same command again to resume")
        # The handler it put in place is gone: Ctrl-C is pytest's again.
        assert signal.getsignal(signal.SIGINT) is before
        sim.config.latency = 0.0
        resumed = run_main("harvest", users, "--db", db, "--base-url", sim.base_url, env=cli_env())
        assert resumed.returncode == 0, resumed.stderr
        assert stored(db) == truth(sim, names)


def test_after_a_stop_ctrl_c_does_again_what_it_did_before_the_run(tmp_path: Path) -> None:
    from tiktok_repost_async.cli._signals import StopSignals

    before = {s: signal.getsignal(s) for s in StopSignals.handled}
    stops: list[signal.Signals] = []

    async def run() -> None:
        signals = StopSignals(asyncio.get_running_loop(), stops.append)
        signals.install()
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(100):
                await asyncio.sleep(0.01)
                if stops:
                    break
            # A second signal now would kill: the stop has begun.
            assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
        finally:
            signals.remove()

    asyncio.run(run())
    assert stops == [signal.SIGTERM]
    assert {s: signal.getsignal(s) for s in StopSignals.handled} == before


@pytest.mark.usefixtures("short_holds")
def test_after_the_api_says_the_quota_is_spent_the_plan_starts_tomorrow(
    sim_in_thread: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim = sim_in_thread
    # The 429s are told apart by behaviour, after backoffs that are not what is tested here.
    monkeypatch.setattr(RetryPolicy, "delay", lambda self, attempt, error=None: 0.0)
    # A collaborator spent most of the project's quota: the API refuses after 6 requests of
    # this store, whose own ledger would leave 994 of 1,000 for today.
    sim.config.daily_quota = 6
    sim.config.quota_message = "Request limit reached"
    db = tmp_path / "h.db"
    users = write_users(tmp_path / "u.txt", [f"q{i}_n250" for i in range(6)])
    # One user at a time: the first two finish (3 pages each) before the API refuses, so the
    # plan has a mean to rest on.
    ran = run_main(
        "harvest", users, "--db", db, "--base-url", sim.base_url, "--rate", 500,
        "--concurrency", 1, env=cli_env(),
    )  # fmt: skip
    assert ran.returncode == 75, ran.stderr
    assert "daily quota is spent" in ran.stderr
    # The run's own summary says what status says: nothing left today (it said 984 left).
    spent = sim.stats.requests
    assert f"({spent:,} today, 0 left of 1,000)" in ran.stderr
    assert status_json(db)["requests"]["left"] == 0
    plan = status_json(db)["plan"]
    assert (plan["finished_users"], plan["users_left"]) == (2, 4)
    assert plan["left_today"] == 0
    assert plan["days_left"] == 1
    today = time.strftime("%Y-%m-%d", time.gmtime())
    assert plan["finish_day"] == day_after(today, 1)


def test_a_new_round_with_nobody_finished_yet_plans_at_the_last_rounds_cost(
    sim_in_thread: Simulator, tmp_path: Path
) -> None:
    sim = sim_in_thread
    db = tmp_path / "h.db"
    names = ["plan0_n250", "plan1_n30", "plan2_n120", "missing_user"]
    users = write_users(tmp_path / "u.txt", names)
    base = ["harvest", users, "--db", db, "--base-url", sim.base_url, "--rate", 500]
    assert run_main(*base, env=cli_env()).returncode == 0
    first = sim.stats.requests
    assert first == sum(sim.pages_needed(name) for name in names)
    # Round 2 starts, and the day's budget (all spent by round 1) stops it before any walk.
    stopped = run_main(*base, "--new-round", "--daily-quota", first, env=cli_env())
    assert stopped.returncode == 75, stopped.stderr
    assert sim.stats.requests == first
    plan = status_json(db, "--daily-quota", 1000)["plan"]
    # Not "unknown until a user has finished": round 1's cost per user, from the simulator.
    assert (plan["users_left"], plan["finished_users"], plan["basis_round"]) == (4, 4, 1)
    assert plan["pages_per_user"] == round(first / 4, 2)
    assert plan["requests_left"] == first
    text = run_main("status", "--db", db, env=cli_env()).stdout
    assert f"{round(first / 4, 2):g} per user, the mean of 4 finished in round 1)" in text
