"""``tiktok-reposts refresh`` as a researcher runs it: output, exit statuses, signals, kills.

Signals and SIGKILL need a real process; the rest calls ``main`` in this process. Expected
figures come from the simulator's own ground truth and its record of the tasks it made.
"""

from __future__ import annotations

import contextlib
import json
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
from test_cli import cli, cli_env, command, write_users

from tiktok_repost_async import Store
from tiktok_repost_async.simulator import Simulator
from tiktok_repost_async.simulator._compliance import TASK_STATUS_PATH

NAMES = ["alice_n250", "bob_n99", "carol_n400", "missing_person", "empty_one"]
EPOCH = 3


@pytest.fixture
def sim(sim_in_thread: Simulator) -> Simulator:
    """Serve the simulator on a thread: the command runs an event loop of its own."""
    return sim_in_thread


def wire_ids(sim: Simulator, epoch: int) -> set[int]:
    """Return the ids of every user's videos at an epoch, from the simulator's own wire JSON."""
    return {int(video["id"]) for name in NAMES for video in sim.ground_truth(name, epoch=epoch)}


def stored_ids(db: Path) -> set[int]:
    with Store(db, create=False) as store:
        return {int(video_id) for _, video_id, _ in store.iter_videos()}


def harvested(sim: Simulator, tmp_path: Path) -> Path:
    db = tmp_path / "h.db"
    users = write_users(tmp_path / "users.txt", NAMES)
    done = cli("harvest", users, "--db", db, "--base-url", sim.base_url, "--no-progress")
    assert done.returncode == 0, done.stderr
    return db


def refresh(sim: Simulator, db: Path, *options: object) -> tuple[int, str]:
    ran = cli("refresh", "--db", db, "--base-url", sim.base_url, "--poll-wait", "0", *options)
    assert "Traceback" not in ran.stderr
    return ran.returncode, ran.stderr


def test_refresh_deletes_what_is_gone_and_says_what_it_checked_removed_and_spent(
    sim: Simulator, tmp_path: Path
) -> None:
    db = harvested(sim, tmp_path)
    sent, now = wire_ids(sim, 0), wire_ids(sim, EPOCH)
    sim.config.epoch = EPOCH
    status, err = refresh(sim, db)
    assert status == 0, err
    gone = sent - now
    assert gone
    lines = err.splitlines()
    assert lines[0] == (
        f"refresh 1 (begun): {len(sent):,} video ids checked in 1 task: {len(gone):,} no longer"
        f" available, deleted ({len(gone):,} stored copies in all)"
    )
    assert lines[1].startswith("3 requests; ")
    assert lines[2].startswith("next refresh due ")
    assert stored_ids(db) == sent & now
    report = json.loads(cli("status", "--db", db, "--json").stdout)["refresh"]
    assert report["last"]["outcome"] == "finished"
    assert report["last"]["removed"] == len(gone)
    assert report["last"]["task_ids"] == [str(task.task_id) for task in sim.tasks]
    assert report["overdue"] is False
    assert cli("status", "--db", db, "--check").returncode == 0


def test_a_refresh_killed_while_polling_resumes_with_the_same_task(
    sim: Simulator, tmp_path: Path
) -> None:
    db = harvested(sim, tmp_path)
    sent, now = wire_ids(sim, 0), wire_ids(sim, EPOCH)
    sim.config.epoch = EPOCH
    sim.config.task_processing_seconds = 3600.0
    child = subprocess.Popen(
        command("refresh", "--db", db, "--base-url", sim.base_url, "--poll-wait", "0.05"),
        env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while sim.stats.compliance_by_path[TASK_STATUS_PATH] < 2:
        assert child.poll() is None, child.communicate()
        assert time.monotonic() < deadline, "the refresh never polled"
        time.sleep(0.02)
    child.send_signal(signal.SIGKILL)
    child.communicate(timeout=30)
    [task] = sim.tasks
    with Store(db, create=False) as store:
        [batch] = store.refresh_batches(1)
        assert (batch.task_id, batch.state) == (task.task_id, "created")
        assert stored_ids(db) == sent  # nothing deleted yet
        # Write-ahead: the ledger holds every call the simulator answered (and at most the
        # one on its way at the kill).
        spent = store.requests_on() - sim.stats.requests
        assert sim.stats.compliance_requests <= spent <= sim.stats.compliance_requests + 1
    sim.config.task_processing_seconds = 0.0
    status, err = refresh(sim, db)
    assert status == 0, err
    assert err.startswith("refresh 1 (resumed): ")
    assert sim.tasks == [task]  # polled again, never made again
    assert stored_ids(db) == sent & now


def test_ctrl_c_stops_cleanly_exit_75_and_the_same_command_goes_on(
    sim: Simulator, tmp_path: Path
) -> None:
    db = harvested(sim, tmp_path)
    sim.config.epoch = EPOCH
    sim.config.task_processing_seconds = 3600.0
    child = subprocess.Popen(
        command("refresh", "--db", db, "--base-url", sim.base_url, "--poll-wait", "0.05"),
        env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while sim.stats.compliance_by_path[TASK_STATUS_PATH] < 1:
        assert child.poll() is None, child.communicate()
        assert time.monotonic() < deadline, "the refresh never polled"
        time.sleep(0.02)
    child.send_signal(signal.SIGINT)
    _, err = child.communicate(timeout=30)
    assert child.returncode == 75, err
    assert err.rstrip().endswith(
        "interrupted: run the same command again to resume (the same tasks are polled)"
    )
    assert "Traceback" not in err
    with Store(db, create=False) as store:
        [record] = store.refreshes()
        assert record.outcome == "stopped: requested"
        assert not store.lock_path.exists() or not store.holds_run_lock
    sim.config.task_processing_seconds = 0.0
    status, err = refresh(sim, db)
    assert status == 0, err
    assert len(sim.tasks) == 1


def test_a_suspicious_answer_exits_1_and_needs_a_person(tmp_path: Path) -> None:
    # Harvested from one simulator, refreshed against another that never served these users:
    # its task finds every video gone.
    with Simulator().run_in_thread() as first_url:
        users = write_users(tmp_path / "users.txt", NAMES)
        db = tmp_path / "h.db"
        assert cli("harvest", users, "--db", db, "--base-url", first_url).returncode == 0
    before = stored_ids(db)
    other = Simulator()
    with other.run_in_thread():
        status, err = refresh(other, db)
        assert status == 1, err
        assert "nothing of it was deleted" in err
        assert "--accept-removals" in err
        assert stored_ids(db) == before
        check = cli("status", "--db", db, "--check")
        assert check.returncode == 1
        assert "needs a person: refresh 1 ended stopped: suspicious" in check.stderr
        # None of the ids was answered (applied): status does not call them checked.
        assert (
            f"stopped: suspicious: 0 of {len(before):,} ids answered so far, 0 removed; 3 requests,"
            " 1 task"
        ) in check.stdout
        status, err = refresh(other, db, "--accept-removals")
        assert status == 0, err
        assert stored_ids(db) == set()


def test_an_overdue_refresh_is_said_by_harvest_and_status_check(
    sim: Simulator, tmp_path: Path
) -> None:
    db = harvested(sim, tmp_path)
    assert cli("status", "--db", db, "--check").returncode == 0
    with contextlib.closing(sqlite3.connect(db)) as conn, conn:
        conn.execute("UPDATE pages SET fetched_at = '2020-01-01T00:00:00.000Z'")
    check = cli("status", "--db", db, "--check", "--refresh-days", "30")
    assert check.returncode == 1
    assert check.stderr == (
        "needs a person: a refresh is overdue since 2020-01-31T00:00:00Z (every 30 days,"
        f" TikTok's terms): tiktok-reposts refresh --db {db}\n"
    )
    assert "OVERDUE since 2020-01-31T00:00:00Z" in check.stdout
    users = write_users(tmp_path / "more.txt", ["dave_n5"])
    ran = cli("harvest", users, "--db", db, "--base-url", sim.base_url, "--no-progress")
    assert ran.returncode == 0
    [warning] = [line for line in ran.stderr.splitlines() if "is overdue" in line]
    assert warning.endswith(
        f"a refresh of {db} is overdue since 2020-01-16 00:00 UTC (every 15 days, TikTok's"
        f" terms): run tiktok-reposts refresh --db {db}"
    )
    status, err = refresh(sim, db)
    assert status == 0, err
    assert cli("status", "--db", db, "--check").returncode == 0
    again = cli("harvest", users, "--db", db, "--base-url", sim.base_url, "--no-progress")
    assert "is overdue since" not in again.stderr


def test_users_gone_are_removed_with_users(sim: Simulator, tmp_path: Path) -> None:
    db = harvested(sim, tmp_path)
    sim.remove_user("bob_n99", how="private")
    status, err = refresh(sim, db, "--users")
    assert status == 0, err
    assert "users: 3 re-checked, 1 now not found or refusing access: its data deleted" in err
    assert stored_ids(db) == wire_ids(sim, 0) - {int(v["id"]) for v in sim.ground_truth("bob_n99")}
    # One request per user with videos, and the task's create, poll and download.
    assert sim.stats.by_user["bob_n99"] == 2  # its harvest and its check


def test_bad_input_exits_2_before_any_request(sim: Simulator, tmp_path: Path) -> None:
    missing = cli("refresh", "--db", tmp_path / "nope.db", "--base-url", sim.base_url)
    assert missing.returncode == 2
    assert "no store at" in missing.stderr
    db = harvested(sim, tmp_path)
    no_key = cli(
        "refresh", "--db", db, "--base-url", sim.base_url, env=cli_env(TIKTOK_CLIENT_KEY=None)
    )
    assert no_key.returncode == 2
    assert "TIKTOK_CLIENT_KEY" in no_key.stderr
    assert sim.stats.compliance_requests == 0


def test_if_due_refreshes_only_when_due_or_unfinished_and_never_asks_for_a_token_else(
    sim: Simulator, tmp_path: Path
) -> None:
    db = harvested(sim, tmp_path)
    before = sim.stats.requests + sim.stats.token_requests + sim.stats.compliance_requests
    # Just harvested: due in 15 days, so a timer's run says so and sends nothing, no token.
    status, err = refresh(sim, db, "--if-due")
    assert status == 0, err
    assert err.startswith("nothing to do: the next refresh is due ")
    assert "every 15 days" in err
    assert sim.stats.requests + sim.stats.token_requests + sim.stats.compliance_requests == before
    assert not sim.tasks
    # Overdue: the same command refreshes, exact against the simulator's wire.
    with contextlib.closing(sqlite3.connect(db)) as conn, conn:
        conn.execute("UPDATE pages SET fetched_at = '2020-01-01T00:00:00.000Z'")
    sim.config.epoch = EPOCH
    status, err = refresh(sim, db, "--if-due")
    assert status == 0, err
    assert stored_ids(db) == wire_ids(sim, 0) & wire_ids(sim, EPOCH)
    assert len(sim.tasks) == 1
    # Just refreshed: nothing to do again.
    status, err = refresh(sim, db, "--if-due", "-q")
    assert (status, err) == (0, "")
    assert len(sim.tasks) == 1


def test_if_due_leaves_a_suspicious_stop_to_a_person(tmp_path: Path) -> None:
    # Harvested from one simulator, refreshed against another that never served these users:
    # its task finds every video gone, which is suspicious; a timer must not keep asking.
    with Simulator().run_in_thread() as first_url:
        users = write_users(tmp_path / "users.txt", NAMES)
        db = tmp_path / "h.db"
        assert cli("harvest", users, "--db", db, "--base-url", first_url).returncode == 0
    other = Simulator()
    with other.run_in_thread():
        status, err = refresh(other, db)
        assert status == 1, err
        tasks, sent = len(other.tasks), other.stats.compliance_requests
        status, err = refresh(other, db, "--if-due", "-q")
        assert status == 1
        assert "stopped on a suspicious answer: a person decides" in err
        assert (len(other.tasks), other.stats.compliance_requests) == (tasks, sent)


def test_an_erase_held_off_by_a_reader_stays_owed_and_said_until_a_refresh_pays_it(
    sim: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another process holds a read transaction open during the refresh: the WAL cannot be
    # truncated, so the rebuild that erases the removed videos is not done, and must stay owed.
    import tiktok_repost_async.store._store as store_module

    monkeypatch.setattr(store_module, "_BUSY_TIMEOUT_S", 0.2)  # each wait for the reader
    db = harvested(sim, tmp_path)
    gone = wire_ids(sim, 0) - wire_ids(sim, EPOCH)
    assert gone
    sim.config.epoch = EPOCH
    owed = "deleted data may still be in the store's files"
    with contextlib.closing(sqlite3.connect(db)) as reader:
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM videos").fetchone()
        status, err = refresh(sim, db)
        assert status == 0, err
        assert f"{len(gone):,} no longer available, deleted" in err
        assert owed in err
        assert "run refresh again" in err
        blob = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("h.db"))
        assert any(str(video_id).encode() in blob for video_id in gone)
    # The reader is gone; the debt is not forgotten.
    shown = cli("status", "--db", db)
    assert f"{owed}" in shown.stdout
    checked = cli("status", "--db", db, "--check")
    assert checked.returncode == 1
    assert f"needs a person: {owed}" in checked.stderr
    assert json.loads(cli("status", "--db", db, "--json").stdout)["refresh"]["erase_owed"]
    # A timer's --if-due run pays it too, though no refresh is due.
    status, err = refresh(sim, db, "--if-due")
    assert status == 0, err
    assert owed not in err
    assert stored_ids(db) == wire_ids(sim, 0) - gone
    blob = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("h.db"))
    assert [video_id for video_id in gone if str(video_id).encode() in blob] == []
    assert owed not in cli("status", "--db", db).stdout
    assert cli("status", "--db", db, "--check").returncode == 0


def test_refresh_help_ends_with_its_exit_statuses() -> None:
    shown = cli("refresh", "--help")
    assert shown.returncode == 0
    epilog = " ".join(shown.stdout.split("Exit status:", 1)[1].split())
    for said in ("0 every batch checked", "1 incomplete", "suspicious answer", "2 usage", "75"):
        assert said in epilog


def test_an_incomplete_refresh_says_once_what_to_do(sim: Simulator, tmp_path: Path) -> None:
    db = harvested(sim, tmp_path)
    before = stored_ids(db)
    sim.fail_tasks(2)
    status, err = refresh(sim, db)
    assert status == 1, err
    [line] = [line for line in err.splitlines() if line.startswith("incomplete:")]
    assert line == (
        f"incomplete: batch 0's tasks failed 2 times (nothing of its {len(before):,} ids was"
        " deleted); run the refresh again to check them"
    )
    assert stored_ids(db) == before
    status, err = refresh(sim, db)
    assert status == 0, err


def _serve(*options: object) -> tuple[subprocess.Popen[str], str]:
    server = subprocess.Popen(
        command("serve", "--port", 0, *options),
        env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert server.stdout is not None
    return server, server.stdout.readline().strip()


def _stop(server: subprocess.Popen[str]) -> None:
    server.send_signal(signal.SIGINT)
    _, stderr = server.communicate(timeout=30)
    assert server.returncode == 0, stderr


def test_serve_remove_user_makes_refresh_users_delete_that_users_data(tmp_path: Path) -> None:
    # What a researcher does to see refresh --users at work: harvest from serve, then serve
    # again with --remove-user, as if those accounts were deleted or made private meanwhile.
    names = ["alice_n40", "bob_n30", "carol_n20", "dave_n10"]
    users = write_users(tmp_path / "users.txt", names)
    db = tmp_path / "h.db"
    server, base_url = _serve()
    try:
        done = cli("harvest", users, "--db", db, "--base-url", base_url, "--no-progress")
        assert done.returncode == 0, done.stderr
    finally:
        _stop(server)
    before = stored_ids(db)
    truth = Simulator()
    kept = {int(v["id"]) for name in ("alice_n40", "dave_n10") for v in truth.ground_truth(name)}
    assert kept < before
    server, base_url = _serve(
        "--remove-user", "bob_n30=missing", "--remove-user", "carol_n20=private"
    )
    try:
        status, err = refresh_at(base_url, db, "--users")
    finally:
        _stop(server)
    assert status == 0, err
    assert "users: 4 re-checked, 2 now not found or refusing access: their data deleted" in err
    assert stored_ids(db) == kept
    with Store(db, create=False) as store:
        assert store.user("bob_n30").state.value == "not_found"  # type: ignore[union-attr]
        assert store.user("carol_n20").state.value == "unavailable"  # type: ignore[union-attr]
    bad = cli("serve", "--remove-user", "bob_n30=banned")
    assert bad.returncode == 2
    assert "expected NAME=missing or NAME=private" in bad.stderr


def refresh_at(base_url: str, db: Path, *options: object) -> tuple[int, str]:
    ran = cli("refresh", "--db", db, "--base-url", base_url, "--poll-wait", "0", *options)
    assert "Traceback" not in ran.stderr
    return ran.returncode, ran.stderr
