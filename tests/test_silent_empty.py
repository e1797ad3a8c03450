"""The silent empty: a repeat round whose users keep coming back with nothing stops, records
nothing as removed, and the same command finishes it exact once the API is well (issue 21)."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import make_client, run_main
from test_cli import cli_env, write_users
from test_rounds import changes_by_user

from tiktok_repost_async import HarvestStopped, RetryPolicy, StopReason, Store, UserState
from tiktok_repost_async.diff import DiffError, diff_rounds
from tiktok_repost_async.harvester import EMPTY_ALARM_SEEN, UserOutcome, harvest
from tiktok_repost_async.simulator import Fault, Simulator

PANEL = [f"se{i}_n150" for i in range(30)]
CONCURRENCY = 4


async def run(
    sim: Simulator, db: Path, names: list[str], **options: object
) -> tuple[list[UserOutcome], HarvestStopped | None]:
    outcomes: list[UserOutcome] = []
    async with make_client(sim, concurrency=CONCURRENCY) as client:
        try:
            async for outcome in harvest(client, names, store=db, **options):  # type: ignore[arg-type]
                outcomes.append(outcome)
        except HarvestStopped as stopped:
            return outcomes, stopped
    return outcomes, None


def round_states(db: Path, number: int) -> dict[str, UserState]:
    with Store(db, create=False) as store:
        return {name: state for name, state, _ in store.iter_round_users(number)}


async def test_a_silent_round_stops_records_nothing_and_resumes_exact(tmp_path: Path) -> None:
    db = tmp_path / "panel.db"
    async with Simulator() as sim:
        _, stopped = await run(sim, db, PANEL)
        assert stopped is None
        # A week later the API answers every user with an empty list and no error.
        sim.config.epoch = 1
        sim.config.persistent_fault = Fault.SILENT_EMPTY
        before = sim.stats.requests
        outcomes, stopped = await run(sim, db, PANEL, new_round=True)
        assert stopped is not None
        assert stopped.reason is StopReason.EMPTY
        assert "the API keeps answering empty lists" in str(stopped)
        # It stopped as soon as the rule could tell: the users it had heard, and the ones
        # already on their way.
        assert sim.stats.requests - before <= EMPTY_ALARM_SEEN + CONCURRENCY
        # Nobody was recorded as having reposted nothing: no outcome, no done user, no diff.
        assert outcomes == []
        states = round_states(db, 2)
        assert UserState.DONE not in states.values()
        with Store(db, create=False) as store, pytest.raises(DiffError, match="in progress"):
            # An unfinished round is never compared: nothing shows as removed.
            list(diff_rounds(store, 1, 2))
        # The API is well again: the same command finishes round 2, exactly as served.
        sim.config.persistent_fault = None
        outcomes, stopped = await run(sim, db, PANEL, new_round=True)
        assert stopped is None
        assert {o.state for o in outcomes} == {UserState.DONE}
        with Store(db, create=False) as store:
            assert store.current_round == 2
            for name in PANEL:
                got = [int(i) for i, _ in store.round_videos(name, 2)]
                assert got == [v["id"] for v in sim.ground_truth(name, epoch=1)], name
            found = changes_by_user(store, 1, 2)
        empty: dict[str, object] = {"added": [], "removed": [], "counts": {}}
        for name in PANEL:
            assert found.get(name, empty) == sim.changes(name, 0, 1), name


async def test_a_small_panel_is_judged_at_the_end_of_its_input(tmp_path: Path) -> None:
    # Four users never reach the alarm's count while the input lasts; at its end, all four
    # empty is still the API's silence, not four users who stopped reposting.
    db = tmp_path / "panel.db"
    names = PANEL[:4]
    async with Simulator() as sim:
        assert (await run(sim, db, names))[1] is None
        sim.config.epoch = 1
        sim.config.persistent_fault = Fault.SILENT_EMPTY
        outcomes, stopped = await run(sim, db, names, new_round=True)
    assert stopped is not None
    assert stopped.reason is StopReason.EMPTY
    assert outcomes == []
    assert set(round_states(db, 2).values()) == {UserState.PENDING}


async def test_a_researcher_who_knows_the_emptiness_is_real_says_so(tmp_path: Path) -> None:
    db = tmp_path / "panel.db"
    async with Simulator() as sim:
        assert (await run(sim, db, PANEL))[1] is None
        sim.config.epoch = 1
        sim.config.persistent_fault = Fault.SILENT_EMPTY
        outcomes, stopped = await run(sim, db, PANEL, new_round=True, accept_empty=True)
    assert stopped is None
    assert [o.videos for o in outcomes] == [0] * len(PANEL)
    assert set(round_states(db, 2).values()) == {UserState.DONE}


async def test_a_few_users_who_stopped_reposting_are_no_alarm(tmp_path: Path) -> None:
    # Users with no reposts any more among many who still have theirs: the truth, held back
    # only until the run could tell, then recorded as done and empty.
    db = tmp_path / "panel.db"
    quiet = PANEL[:3]
    async with Simulator() as sim:
        assert (await run(sim, db, PANEL))[1] is None
        sim.config.epoch = 1
        sim.config.user_faults = dict.fromkeys(quiet, Fault.SILENT_EMPTY)
        outcomes, stopped = await run(sim, db, PANEL, new_round=True)
    assert stopped is None
    by_name = {o.username: o for o in outcomes}
    assert set(by_name) == set(PANEL)
    assert {by_name[name].videos for name in quiet} == {0}
    assert set(round_states(db, 2).values()) == {UserState.DONE}


@pytest.mark.usefixtures("short_holds")
def test_the_command_exits_75_with_one_line_saying_why(tmp_path: Path) -> None:
    db = tmp_path / "panel.db"
    users = write_users(tmp_path / "panel.txt", PANEL[:12])
    sim = Simulator()
    with sim.run_in_thread() as base_url:
        base = ["harvest", users, "--db", db, "--base-url", base_url, "--rate", 500]
        assert run_main(*base, env=cli_env()).returncode == 0
        sim.config.epoch = 1
        sim.config.persistent_fault = Fault.SILENT_EMPTY
        ran = run_main(*base, "--new-round", env=cli_env())
        assert ran.returncode == 75, ran.stderr
        lines = [line for line in ran.stderr.splitlines() if line.startswith("stopped:")]
        assert len(lines) == 1
        assert "the API keeps answering empty lists" in lines[0]
        assert "--accept-empty" in lines[0]
        sim.config.persistent_fault = None
        again = run_main(*base, "--new-round", env=cli_env())
        assert again.returncode == 0, again.stderr
        assert "round 2 (resumed)" in again.stderr


@pytest.mark.usefixtures("short_holds")
def test_status_check_tells_a_monitoring_job_when_a_person_is_needed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A panel run from a timer: the check is quiet while all is well, and exits 1 with a line
    # after a silent-empty stop and while a user stays failed (its retries' backoff aside).
    monkeypatch.setattr(RetryPolicy, "delay", lambda self, attempt, error=None: 0.0)
    db = tmp_path / "panel.db"
    users = write_users(tmp_path / "panel.txt", PANEL[:12])
    sim = Simulator()
    with sim.run_in_thread() as base_url:
        base = ["harvest", users, "--db", db, "--base-url", base_url, "--rate", 500]
        assert run_main(*base, env=cli_env()).returncode == 0
        well = run_main("status", "--db", db, "--check", env=cli_env())
        assert well.returncode == 0, well.stderr
        assert "needs a person" not in well.stderr
        sim.config.epoch = 1
        sim.config.persistent_fault = Fault.SILENT_EMPTY
        assert run_main(*base, "--new-round", env=cli_env()).returncode == 75
        silent = run_main("status", "--db", db, "--check", "--json", env=cli_env())
        assert silent.returncode == 1
        assert "needs a person: run 2 stopped: empty" in silent.stderr
        sim.config.persistent_fault = None
        sim.config.user_faults = {PANEL[0]: Fault.SERVER_ERROR}
        assert run_main(*base, "--new-round", "--concurrency", 2, env=cli_env()).returncode == 1
        failed = run_main("status", "--db", db, "--check", env=cli_env())
        assert failed.returncode == 1
        lines = [line for line in failed.stderr.splitlines() if "needs a person" in line]
        assert lines == ["needs a person: 1 failed user (status lists them with the error)"]
