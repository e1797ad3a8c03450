"""The silent empty: a repeat round whose users keep coming back with nothing stops, records
nothing as removed, and the same command finishes it exact once the API is well (issue 21)."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from support import make_client, run_main
from test_cli import cli_env, cli_process, write_users
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
        before = sim.stats.requests
        outcomes, stopped = await run(sim, db, PANEL, new_round=True)
        # Each quiet user's empty answer was asked once more before it was taken as the truth.
        heard = sum(pages_of(sim, name, 1) for name in PANEL if name not in quiet)
        assert sim.stats.requests - before == heard + 2 * len(quiet)
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


# -- the silent empty past the first page, small panels, and the probe after a stop ---------------

#: Users of 300-610 reposts: a walk of 4-7 pages, where an empty page can end it early.
LONG = ["pa_n300", "pb_n400", "pc_n450", "pd_n520", "pe_n610"]


def pages_of(sim: Simulator, name: str, epoch: int) -> int:
    """Return the pages a whole walk of ``name`` takes at ``epoch``: the simulator's truth."""
    return sim.pages_needed(name, epoch=epoch)


def assert_round_exact(sim: Simulator, db: Path, names: list[str], number: int, epoch: int) -> None:
    """Check that round ``number`` holds each list as served and its diff equals the truth."""
    empty: dict[str, object] = {"added": [], "removed": [], "counts": {}}
    with Store(db, create=False) as store:
        assert store.round_record(number).complete
        for name in names:
            got = [int(i) for i, _ in store.round_videos(name, number)]
            assert got == [v["id"] for v in sim.ground_truth(name, epoch=epoch)], name
        found = changes_by_user(store, number - 1, number)
    for name in names:
        assert found.get(name, empty) == sim.changes(name, epoch - 1, epoch), name


async def test_an_empty_page_past_the_first_is_asked_once_more(tmp_path: Path) -> None:
    # A blip: one page past cursor 0 comes back empty with has_more false. The walk asks that
    # page once more and goes on: one request more than the lists' pages, the round exact.
    db = tmp_path / "panel.db"
    async with Simulator() as sim:
        assert (await run(sim, db, LONG))[1] is None
        sim.config.epoch = 1
        for name in LONG[:3]:
            sim.script(name, [None, Fault.SILENT_EMPTY])
        before = sim.stats.requests
        outcomes, stopped = await run(sim, db, LONG, new_round=True)
        assert stopped is None
        pages = sum(pages_of(sim, name, 1) for name in LONG)
        assert sim.stats.requests - before == pages + 3
        for name in LONG[:3]:
            assert sim.stats.by_cursor[name, 100] == 2 + 1  # round 1, the blip, once more
    assert {o.state for o in outcomes} == {UserState.DONE}
    assert_round_exact(sim, db, LONG, 2, 1)


async def test_walks_cut_short_hold_their_users_at_the_empty_page(tmp_path: Path) -> None:
    # In the library, quickly: see the command's test below.
    db = tmp_path / "panel.db"
    async with Simulator() as sim:
        assert (await run(sim, db, LONG))[1] is None
        sim.config.epoch = 1
        for name in LONG[:3]:
            sim.script(name, [None, Fault.SILENT_EMPTY, Fault.SILENT_EMPTY])
        outcomes, stopped = await run(sim, db, LONG[:3], new_round=True)
        assert stopped is not None
        assert stopped.reason is StopReason.EMPTY
        assert outcomes == []
        with Store(db, create=False) as store:
            cursors = {r.username: (r.state, r.cursor) for r in store.iter_users()}
        assert {name: cursors[name] for name in LONG[:3]} == dict.fromkeys(
            LONG[:3], (UserState.PENDING, 100)
        )
        outcomes, stopped = await run(sim, db, LONG[:3], new_round=True)
        assert stopped is None
        assert {o.username: o.resumed_from for o in outcomes} == dict.fromkeys(LONG[:3], 100)
    assert_round_exact(sim, db, LONG[:3], 2, 1)


async def test_the_run_after_a_silent_stop_probes_one_user(tmp_path: Path) -> None:
    # In the library, quickly: see the command's test below.
    db = tmp_path / "panel.db"
    async with Simulator() as sim:
        assert (await run(sim, db, PANEL))[1] is None
        sim.config.epoch = 1
        sim.config.persistent_fault = Fault.SILENT_EMPTY
        assert (await run(sim, db, PANEL, new_round=True))[1] is not None
        before = sim.stats.requests
        outcomes, stopped = await run(sim, db, PANEL, new_round=True)
        assert stopped is not None
        assert stopped.reason is StopReason.EMPTY
        assert "the API still answers empty lists" in str(stopped)
        assert outcomes == []
        assert sim.stats.requests - before == 1
        sim.config.persistent_fault = None
        before = sim.stats.requests
        assert (await run(sim, db, PANEL, new_round=True))[1] is None
        assert sim.stats.requests - before == sum(pages_of(sim, name, 1) for name in PANEL)
    assert_round_exact(sim, db, PANEL, 2, 1)


async def test_an_empty_page_past_a_list_that_grew_is_asked_once_more(tmp_path: Path) -> None:
    # fl1_n210 had 210 reposts and has 417 a week later: an empty last page at cursor 300 lies
    # past its last list's length, yet the walk has not reached that list's oldest videos.
    name = "fl1_n210"
    db = tmp_path / "panel.db"
    async with Simulator() as sim:
        assert len(sim.ground_truth(name, epoch=0)) <= 300 < len(sim.ground_truth(name, epoch=1))
        assert (await run(sim, db, [name]))[1] is None
        sim.config.epoch = 1
        sim.script(name, [None, None, None, Fault.SILENT_EMPTY])
        before = sim.stats.requests
        assert (await run(sim, db, [name], new_round=True))[1] is None
        assert sim.stats.requests - before == pages_of(sim, name, 1) + 1
    assert_round_exact(sim, db, [name], 2, 1)


async def test_one_list_cut_short_twice_among_many_stops_the_round_unfinished(
    tmp_path: Path,
) -> None:
    # One walk among 32 meets an empty last page at cursor 100, twice, where its last list
    # had 400: never taken as the truth unasked. A moderated tail (short_n180's last page is
    # empty, past the 70 videos it ever sent) ends its list as it should, asked once more.
    db = tmp_path / "panel.db"
    names = [*PANEL, "pb_n400", "short_n180"]
    async with Simulator() as sim:
        assert (await run(sim, db, names))[1] is None
        sim.config.epoch = 1
        sim.script("pb_n400", [None, Fault.SILENT_EMPTY, Fault.SILENT_EMPTY])
        before = sim.stats.requests
        outcomes, stopped = await run(sim, db, names, new_round=True)
        assert stopped is not None
        assert stopped.reason is StopReason.EMPTY
        assert "twice answered an empty last page" in str(stopped)
        assert "pb_n400 at 100" in str(stopped)
        heard = sum(pages_of(sim, name, 1) for name in [*PANEL, "short_n180"])
        assert sim.stats.requests - before == heard + 1 + 3  # short's tail, pb's three
        assert sorted(o.username for o in outcomes) == sorted([*PANEL, "short_n180"])
        with Store(db, create=False) as store:
            record = {r.username: (r.state, r.cursor) for r in store.iter_users()}
        assert record["pb_n400"] == (UserState.PENDING, 100)
        assert record["short_n180"][0] is UserState.DONE
        outcomes, stopped = await run(sim, db, names, new_round=True)
        assert stopped is None
        assert [o.username for o in outcomes] == ["pb_n400"]
    assert_round_exact(sim, db, names, 2, 1)


async def test_a_few_empty_first_pages_are_asked_once_more_at_the_end(tmp_path: Path) -> None:
    # A flickering silence: two users' first pages come back empty among many full ones. The
    # alarm stays quiet, so before they are taken as the truth each is asked once more, and
    # answers: the round is exact at one request more for each.
    db = tmp_path / "panel.db"
    flickered = [LONG[0], PANEL[5]]
    async with Simulator() as sim:
        assert (await run(sim, db, [*PANEL, *LONG]))[1] is None
        sim.config.epoch = 1
        for name in flickered:
            sim.script(name, [Fault.SILENT_EMPTY])
        before = sim.stats.requests
        outcomes, stopped = await run(sim, db, [*PANEL, *LONG], new_round=True)
        assert stopped is None
        pages = sum(pages_of(sim, name, 1) for name in [*PANEL, *LONG])
        assert sim.stats.requests - before == pages + len(flickered)
    assert sorted(o.username for o in outcomes) == sorted([*PANEL, *LONG])
    assert {o.state for o in outcomes} == {UserState.DONE}
    assert_round_exact(sim, db, [*PANEL, *LONG], 2, 1)


@pytest.mark.slow
def test_a_walk_cut_short_by_empty_pages_stops_the_run_and_resumes_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The auditor's case: the silence begins past the first page, so each walk ends early
    # ("has_more": false on an empty page) with a list shorter than the last one. Before, the
    # round ended complete with lists cut at 100 and the diff "removed" the rest.
    monkeypatch.setattr(RetryPolicy, "delay", lambda self, attempt, error=None: 0.0)
    db = tmp_path / "panel.db"
    users = write_users(tmp_path / "p7.txt", LONG)
    sim = Simulator()
    with sim.run_in_thread() as base_url:
        base = ["harvest", users, "--db", db, "--base-url", base_url, "--no-progress"]
        assert run_main(*base, env=cli_env()).returncode == 0
        sim.config.epoch = 1
        for name in LONG:
            # The first page, then empty answers: the page past it and its second asking.
            sim.script(name, [None, Fault.SILENT_EMPTY, Fault.SILENT_EMPTY])
        ran = cli_process(*base, "--new-round")
        assert ran.returncode == 75, ran.stderr
        lines = [line for line in ran.stderr.splitlines() if line.startswith("stopped:")]
        assert len(lines) == 1
        assert "5 of 5 users" in lines[0]
        assert "fewer than before" in lines[0]
        with Store(db, create=False) as store:
            # Each user waits at the cursor of the page that came back empty, nothing final.
            assert {r.username: (r.state, r.cursor) for r in store.iter_users()} == dict.fromkeys(
                LONG, (UserState.PENDING, 100)
            )
            with pytest.raises(DiffError, match="in progress"):
                list(diff_rounds(store, 1, 2))
        # The API is well: the same command goes on from cursor 100, the round exact.
        before = sim.stats.requests
        again = run_main(*base, "--new-round", env=cli_env())
        assert again.returncode == 0, again.stderr
        assert sim.stats.requests - before == sum(pages_of(sim, name, 1) - 1 for name in LONG)
    assert_round_exact(sim, db, LONG, 2, 1)


def test_a_panel_of_two_that_comes_back_empty_stops_too(tmp_path: Path) -> None:
    db = tmp_path / "panel.db"
    names = LONG[:2]
    users = write_users(tmp_path / "two.txt", names)
    sim = Simulator()
    with sim.run_in_thread() as base_url:
        base = ["harvest", users, "--db", db, "--base-url", base_url, "--no-progress"]
        assert run_main(*base, env=cli_env()).returncode == 0
        sim.config.epoch = 1
        sim.config.persistent_fault = Fault.SILENT_EMPTY
        ran = cli_process(*base, "--new-round")
        assert ran.returncode == 75, ran.stderr
        lines = [line for line in ran.stderr.splitlines() if line.startswith("stopped:")]
        assert len(lines) == 1, ran.stderr
        assert "2 of 2 users" in lines[0]
        assert set(round_states(db, 2).values()) == {UserState.PENDING}
        sim.config.persistent_fault = None
        assert run_main(*base, "--new-round", env=cli_env()).returncode == 0
    assert_round_exact(sim, db, names, 2, 1)


async def test_one_quiet_user_left_in_a_round_that_had_videos_is_no_alarm(
    tmp_path: Path,
) -> None:
    # A round interrupted once its first users were stored: the run that finishes it walks
    # only the last user, who truly has no reposts any more. The round's earlier users came
    # back with theirs, so that one empty user is the truth, not the API's silence.
    db = tmp_path / "panel.db"
    names = [*LONG[:2], "quiet_n120"]
    async with Simulator() as sim:
        assert (await run(sim, db, names))[1] is None
        sim.config.epoch = 1
        sim.config.user_faults = {"quiet_n120": Fault.SILENT_EMPTY}
        async with (
            make_client(sim, concurrency=1) as client,
            contextlib.aclosing(harvest(client, names, store=db, new_round=True)) as walk,
        ):
            got = []
            async for outcome in walk:
                got.append(outcome.username)
                if len(got) == 2:
                    break  # the caller stops early: the round is left unfinished
        assert got == LONG[:2]
        outcomes, stopped = await run(sim, db, names, new_round=True)
    assert stopped is None
    assert [(o.username, o.state, o.videos) for o in outcomes] == [
        ("quiet_n120", UserState.DONE, 0)
    ]


@pytest.mark.slow
def test_after_a_silent_stop_the_next_run_probes_with_one_request(tmp_path: Path) -> None:
    # An hourly timer during a silent spell: the run after a stop asks one user first; empty
    # again, it stops at once, the ledger one request the richer. Once the API answers, the
    # same command goes on (the probe's page is kept) and finishes the round exact.
    db = tmp_path / "panel.db"
    names = PANEL[:12]
    users = write_users(tmp_path / "panel.txt", names)
    sim = Simulator()
    with sim.run_in_thread() as base_url:
        base = ["harvest", users, "--db", db, "--base-url", base_url, "--no-progress"]
        assert run_main(*base, env=cli_env()).returncode == 0
        sim.config.epoch = 1
        sim.config.persistent_fault = Fault.SILENT_EMPTY
        assert run_main(*base, "--new-round", env=cli_env()).returncode == 75
        for _ in range(2):
            before = sim.stats.requests
            ran = cli_process(*base, "--new-round")
            assert ran.returncode == 75, ran.stderr
            assert sim.stats.requests - before == 1
            lines = [line for line in ran.stderr.splitlines() if line.startswith("stopped:")]
            assert len(lines) == 1
            assert "the API still answers empty lists" in lines[0]
            with Store(db, create=False) as store:
                assert store.runs(limit=1)[0].requests == 1
                assert store.runs(limit=1)[0].outcome == "stopped: empty"
        sim.config.persistent_fault = None
        before = sim.stats.requests
        assert run_main(*base, "--new-round", env=cli_env()).returncode == 0
        # Every page once: the probe's answer was the walk's first page, not a request thrown away.
        assert sim.stats.requests - before == sum(pages_of(sim, name, 1) for name in names)
    assert_round_exact(sim, db, names, 2, 1)


def test_accept_empty_after_a_silent_stop_takes_the_emptiness_at_its_word(
    tmp_path: Path,
) -> None:
    db = tmp_path / "panel.db"
    names = LONG[:3]
    users = write_users(tmp_path / "three.txt", names)
    sim = Simulator()
    with sim.run_in_thread() as base_url:
        base = ["harvest", users, "--db", db, "--base-url", base_url, "--no-progress"]
        assert run_main(*base, env=cli_env()).returncode == 0
        sim.config.epoch = 1
        sim.config.persistent_fault = Fault.SILENT_EMPTY
        assert run_main(*base, "--new-round", env=cli_env()).returncode == 75
        before = sim.stats.requests
        ran = run_main(*base, "--new-round", "--accept-empty", env=cli_env())
        assert ran.returncode == 0, ran.stderr
        assert sim.stats.requests - before == len(names)
    assert set(round_states(db, 2).values()) == {UserState.DONE}
