"""An unfinished round is resumed by the same ``--new-round`` command, whatever left it so.

Issue 21: a round with failed users (item 1), a round whose input was not read to the end
(item 2), a round whose pending members the panel's list no longer names (item 3). Expected
values come from the simulator's ground truth and `Simulator.changes` at each epoch.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from test_cli import cli, cli_env, command, write_users
from test_input_pipe import within
from test_rounds import changes_by_user

from tiktok_repost_async.simulator import Fault, Simulator
from tiktok_repost_async.store import Store, UserState

PANEL = ["panelist0", "panelist1", "panelist2", "big_panelist"]
EMPTY: dict[str, Any] = {"added": [], "removed": [], "counts": {}}


def harvest(sim: Simulator, users: Path | str, db: Path, *options: object, stdin: str = "") -> Any:
    return cli(
        "harvest", users, "--db", db, "--base-url", sim.base_url, "--rate", 1000, *options,
        env=cli_env(), stdin=stdin,
    )  # fmt: skip


def round_ids(store: Store, name: str, number: int) -> list[int]:
    return [int(video_id) for video_id, _ in store.round_videos(name, number)]


def truth_ids(sim: Simulator, name: str, epoch: int) -> list[int]:
    return [video["id"] for video in sim.ground_truth(name, epoch=epoch)]


def assert_round_two_exact(sim: Simulator, db: Path, names: list[str]) -> None:
    """Round 2 holds each name's list as served at epoch 1, and diffs with round 1 exactly."""
    with Store(db, create=False) as store:
        second = store.round_record(2)
        assert second.complete, second
        for name in names:
            assert round_ids(store, name, 2) == truth_ids(sim, name, 1), name
        found = changes_by_user(store, 1, 2)
    for name in names:
        assert found.get(name, EMPTY) == sim.changes(name, 0, 1), name


def test_a_round_with_a_failed_user_is_resumed_by_the_same_new_round_command(
    tmp_path: Path,
) -> None:
    users = write_users(tmp_path / "panel.txt", PANEL)
    db = tmp_path / "panel.db"
    sim = Simulator()
    with sim.run_in_thread():
        assert harvest(sim, users, db).returncode == 0
        sim.config.epoch = 1
        # A refused token five times in a row: the user fails without a wait.
        sim.script("panelist1", [Fault.TOKEN_INVALID] * 5)
        failed = harvest(sim, users, db, "--new-round")
        assert failed.returncode == 1, failed.stderr
        assert "1 user failed" in failed.stderr
        before = dict(sim.stats.by_user)
        again = harvest(sim, users, db, "--new-round")
        assert again.returncode == 0, again.stderr
        assert "resuming round 2: 1 user left, 1 failed" in again.stderr
        assert "round 2 (resumed)" in again.stderr
        # Only the failed user is walked again, and from where it stood (its first page).
        walked = {n: c - before.get(n, 0) for n, c in sim.stats.by_user.items()}
        assert {n for n, c in walked.items() if c} == {"panelist1"}
        assert walked["panelist1"] == sim.pages_needed("panelist1")
        assert_round_two_exact(sim, db, PANEL)
        # The default diff now compares rounds 1 and 2; a third run starts round 3.
        diff = cli("diff", "--db", db, "--output", "-")
        assert diff.returncode == 0, diff.stderr
        assert "from round 1 to round 2" in diff.stderr
        third = harvest(sim, users, db, "--new-round")
        assert third.returncode == 0, third.stderr
        assert "round 3 (started)" in third.stderr


def test_no_retry_failed_leaves_the_failed_users_and_starts_the_next_round(
    tmp_path: Path,
) -> None:
    users = write_users(tmp_path / "panel.txt", PANEL[:2])
    db = tmp_path / "panel.db"
    sim = Simulator()
    with sim.run_in_thread():
        assert harvest(sim, users, db).returncode == 0
        sim.script("panelist1", [Fault.TOKEN_INVALID] * 5)
        assert harvest(sim, users, db, "--new-round").returncode == 1
        # The researcher gives up on the failed user for this round, knowingly.
        third = harvest(sim, users, db, "--new-round", "--no-retry-failed")
        assert third.returncode == 0, third.stderr
        assert "round 3 (started)" in third.stderr
    with Store(db, create=False) as store:
        rounds = store.rounds()
    assert [r.users[UserState.FAILED] for r in rounds] == [0, 1, 0]
    assert [r.complete for r in rounds] == [True, False, True]


# -- item 2: a round is complete only once its whole input was read ---------------------------


def new_round_from_pipe(sim: Simulator, db: Path) -> subprocess.Popen[bytes]:
    """Start ``harvest - --new-round`` as a process reading names from a pipe."""
    return subprocess.Popen(
        command(
            "harvest", "-", "--db", db, "--base-url", sim.base_url, "--rate", 1000,
            "--new-round", "--no-progress", "-q",
        ),
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env=cli_env(),
    )  # fmt: skip


def kill(child: subprocess.Popen[bytes]) -> None:
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=30)
    assert child.stdin is not None
    child.stdin.close()


def round_two_users(db: Path) -> dict[str, UserState]:
    with Store(db, create=False) as store:
        if store.current_round < 2:
            return {}
        return {name: state for name, state, _ in store.iter_round_users(2)}


def started_round_two(db: Path) -> bool:
    with Store(db, create=False) as store:
        return store.current_round == 2 and store.run_count() == 2


def test_a_new_round_killed_before_its_first_name_is_resumed_not_left_empty(
    tmp_path: Path,
) -> None:
    users = write_users(tmp_path / "panel.txt", PANEL)
    db = tmp_path / "panel.db"
    sim = Simulator()
    with sim.run_in_thread():
        assert harvest(sim, users, db).returncode == 0
        sim.config.epoch = 1
        child = new_round_from_pipe(sim, db)
        try:
            assert within(30, lambda: started_round_two(db)) is not None
        finally:
            kill(child)
        assert round_two_users(db) == {}
        again = harvest(sim, "-", db, "--new-round", stdin="\n".join(PANEL) + "\n")
        assert again.returncode == 0, again.stderr
        assert "round 2 (resumed)" in again.stderr
        with Store(db, create=False) as store:
            assert [r.number for r in store.rounds()] == [1, 2]
        assert_round_two_exact(sim, db, PANEL)


def test_a_new_round_killed_half_way_through_its_input_is_not_complete_until_resumed(
    tmp_path: Path,
) -> None:
    users = write_users(tmp_path / "panel.txt", PANEL)
    db = tmp_path / "panel.db"
    sim = Simulator()
    with sim.run_in_thread():
        assert harvest(sim, users, db).returncode == 0
        sim.config.epoch = 1
        child = new_round_from_pipe(sim, db)
        assert child.stdin is not None
        try:
            child.stdin.write(("\n".join(PANEL[:2]) + "\n").encode())
            child.stdin.flush()
            # Both names walked to the end; the other two never arrive.
            done = dict.fromkeys(PANEL[:2], UserState.DONE)
            assert within(30, lambda: round_two_users(db) == done) is not None
        finally:
            kill(child)
        with Store(db, create=False) as store:
            second = store.round_record(2)
            assert (second.input_read, second.complete, second.in_progress) == (False, False, True)
        # Round 2 is not one of "the last two complete rounds".
        early = cli("diff", "--db", db, "--output", "-")
        assert early.returncode == 2
        assert "round 2 in progress" in early.stderr
        status = json.loads(cli("status", "--db", db, "--json").stdout)
        assert status["rounds"][1]["complete"] is False
        assert status["rounds"][1]["input_read"] is False
        # Item 5: the plan counts the members not yet read from the input too, not only the
        # users read into the round so far; each needs a request at least.
        assert status["plan"]["users_left"] == len(PANEL) - 2
        assert status["plan"]["requests_left"] >= len(PANEL) - 2
        # The same command, with the whole list this time, finishes round 2.
        again = harvest(sim, "-", db, "--new-round", stdin="\n".join(PANEL) + "\n")
        assert again.returncode == 0, again.stderr
        assert "resuming round 2: its input was not read to the end (a round" in again.stderr
        assert_round_two_exact(sim, db, PANEL)
        sim.config.epoch = 2
        third = harvest(sim, users, db, "--new-round")
        assert third.returncode == 0, third.stderr
        assert "round 3 (started)" in third.stderr
        with Store(db, create=False) as store:
            found = {pair: changes_by_user(store, *pair) for pair in ((2, 3), (1, 3))}
    for (first, second), by_user in found.items():
        for name in PANEL:
            assert by_user.get(name, EMPTY) == sim.changes(name, first - 1, second - 1), name
    assert any(sim.changes(name, 1, 2)["added"] for name in PANEL)


# -- item 3: members the panel's list no longer names ----------------------------------------


def test_members_left_pending_and_then_dropped_from_the_list_never_block_the_next_round(
    tmp_path: Path,
) -> None:
    users = write_users(tmp_path / "panel.txt", PANEL)
    db = tmp_path / "panel.db"
    sim = Simulator()
    with sim.run_in_thread():
        assert harvest(sim, users, db).returncode == 0
        first_round = sum(sim.pages_needed(name, epoch=0) for name in PANEL)
        sim.config.epoch = 1
        # Round 2 stops on the quota once the first two users are walked, one at a time.
        quota = first_round + sum(sim.pages_needed(name) for name in PANEL[:2]) + 2
        stopped = harvest(sim, users, db, "--new-round", "--concurrency", 1, "--daily-quota", quota)
        assert stopped.returncode == 75, stopped.stderr
        assert round_two_users(db) == {
            "panelist0": UserState.DONE,
            "panelist1": UserState.DONE,
            "panelist2": UserState.PENDING,
            "big_panelist": UserState.PENDING,
        }
        # The panel shrinks: the two unfinished members leave it.
        kept = write_users(tmp_path / "kept.txt", PANEL[:2])
        before = sim.stats.requests
        week = harvest(sim, kept, db, "--new-round")
        assert week.returncode == 0, week.stderr
        assert "resuming round 2: 2 users left" in week.stderr
        assert "2 members of round 2 not in this input are dropped from it" in week.stderr
        assert sim.stats.requests == before  # nobody was left to walk
        with Store(db, create=False) as store:
            second = store.round_record(2)
            assert second.complete
            assert second.users[UserState.DROPPED] == 2
        # The next week's run starts round 3, with the panel's list as it stands.
        sim.config.epoch = 2
        next_week = harvest(sim, kept, db, "--new-round")
        assert next_week.returncode == 0, next_week.stderr
        assert "round 3 (started)" in next_week.stderr
        diff = cli("diff", "--db", db, "--from", 1, "--to", 2, "--output", "-")
        assert diff.returncode == 0, diff.stderr
        records = [json.loads(line) for line in diff.stdout.splitlines()]
        with Store(db, create=False) as store:
            assert round_two_users(db)["panelist2"] is UserState.DROPPED
            assert [r.number for r in store.rounds()] == [1, 2, 3]
            found = {pair: changes_by_user(store, *pair) for pair in ((1, 2), (2, 3))}
    # A dropped member is in no change: its stored videos are never called removed.
    assert {record["username"] for record in records} <= set(PANEL[:2])
    for (first, second), by_user in found.items():
        assert set(by_user) <= set(PANEL[:2])
        for name in PANEL[:2]:
            assert by_user.get(name, EMPTY) == sim.changes(name, first - 1, second - 1), name


# -- a kill at any instant -------------------------------------------------------------------

SLOW_PANEL = [f"panelist{i}" for i in range(6)] + ["big_panelist", "short_panelist"]


@pytest.mark.slow
@pytest.mark.parametrize("kill_after", [0.0, 0.15, 0.4, 0.8, 1.2, 2.0])
def test_a_new_round_over_a_slow_pipe_killed_at_any_instant_ends_complete_and_exact(
    tmp_path: Path, kill_after: float
) -> None:
    users = write_users(tmp_path / "panel.txt", SLOW_PANEL)
    db = tmp_path / "panel.db"
    sim = Simulator()
    with sim.run_in_thread():
        assert harvest(sim, users, db).returncode == 0
        sim.config.epoch = 1
        sim.config.latency = 0.02
        tokens = sim.stats.tokens_issued
        child = new_round_from_pipe(sim, db)
        assert child.stdin is not None
        try:
            assert within(30, lambda: sim.stats.tokens_issued > tokens) is not None
            start = time.monotonic()
            for name in SLOW_PANEL:
                if time.monotonic() - start >= kill_after:
                    break
                child.stdin.write(f"{name}\n".encode())
                child.stdin.flush()
                time.sleep(0.2)
            time.sleep(max(kill_after - (time.monotonic() - start), 0.0))
        finally:
            kill(child)
        sim.config.latency = 0.0
        again = harvest(sim, "-", db, "--new-round", stdin="\n".join(SLOW_PANEL) + "\n")
        assert again.returncode == 0, again.stderr
        assert "round 2 (" in again.stderr
        with Store(db, create=False) as store:
            assert [r.number for r in store.rounds()] == [1, 2]
        assert_round_two_exact(sim, db, SLOW_PANEL)
