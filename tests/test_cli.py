"""The ``tiktok-reposts`` command against the simulator: every command, every exit status, resume
after a stop, and every export format read back with exact ids.

Most tests call ``main(argv)`` in this process (`support.run_main`); those about signals, a
terminal and the installed script run a real process."""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import json
import os
import pty
import select
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from support import Ran, run_main

from tiktok_repost_async import VIDEO_FIELDS, Store, __version__
from tiktok_repost_async.cli import render_progress
from tiktok_repost_async.harvester import HarvestProgress
from tiktok_repost_async.simulator import TEST_CLIENT_KEY, TEST_CLIENT_SECRET, Fault, Simulator
from tiktok_repost_async.store import UserState

NAMES = [
    "alice_n250",
    "bob_n99",
    "empty_one",
    "missing_person",
    "private_person",
    "stall_n500",
    "short_n400",
    "hugeid_n150",
    "carol",
]
# The names above as a researcher's file has them, with lines a harvest must skip and count.
LINES = [
    "alice_n250",
    "",
    "bob_n99",
    "   ",
    " @alice_n250 ",  # a duplicate once trimmed
    "empty_one",
    "bo b",
    "missing_person",
    "nul\x00name",
    "private_person",
    "@bob_n99",  # a duplicate
    "stall_n500",
    "x" * 100,
    "short_n400",
    "hugeid_n150",
    "carol",
]


def cli_env(**changes: str | None) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("TIKTOK_CLIENT_KEY", "TIKTOK_CLIENT_SECRET", "TIKTOK_API_BASE_URL")
    }
    env["TIKTOK_CLIENT_KEY"] = TEST_CLIENT_KEY
    env["TIKTOK_CLIENT_SECRET"] = TEST_CLIENT_SECRET
    for name, value in changes.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def command(*args: object) -> list[str]:
    return [sys.executable, "-m", "tiktok_repost_async", *map(str, args)]


def cli(*args: object, env: dict[str, str] | None = None, stdin: str | None = None) -> Ran:
    """Run the command in this process (main(argv)), with the test credentials by default."""
    return run_main(*args, env=env if env is not None else cli_env(), stdin=stdin)


def cli_process(
    *args: object, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the command as a real process, for what only a process shows (its exit, its script)."""
    return subprocess.run(
        command(*args),
        env=env if env is not None else cli_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )


def harvest(
    sim: Simulator,
    users: Path | str,
    db: Path,
    *options: object,
    stdin: str | None = None,
    **env: str | None,
) -> Ran:
    return cli(
        "harvest", users, "--db", db, "--base-url", sim.base_url, "--rate", 500, *options,
        env=cli_env(**env), stdin=stdin,
    )  # fmt: skip


def write_users(path: Path, lines: list[str]) -> Path:
    path.write_bytes(("\n".join(lines) + "\n").encode())
    return path


def stored(db: Path) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    with Store(db, create=False) as store:
        for user, video_id, _ in store.iter_videos():
            out.setdefault(user, []).append(int(video_id))
    return out


def truth(sim: Simulator, names: list[str]) -> dict[str, list[int]]:
    ids = {name: [v["id"] for v in sim.ground_truth(name)] for name in names}
    return {name: got for name, got in ids.items() if got}


def expected_records(sim: Simulator, names: list[str]) -> list[dict[str, Any]]:
    """Return the simulator's own wire JSON of every video, one row per video."""
    # Never through our model: a re-encoding would hide exactly what an export may lose.
    return [{"reposted_by": name, **video} for name in names for video in sim.ground_truth(name)]


@pytest.fixture
def sim(sim_in_thread: Simulator) -> Simulator:
    """Serve the simulator on a thread: the command runs an event loop of its own."""
    return sim_in_thread


@pytest.fixture(scope="module")
def harvested(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Simulator, Path, Ran]]:
    folder = tmp_path_factory.mktemp("harvested")
    simulator = Simulator(latency=0.01)
    with simulator.run_in_thread():
        users = write_users(folder / "users.txt", LINES)
        db = folder / "harvest.db"
        result = harvest(simulator, users, db, "--log-interval", "0.05")
        yield simulator, db, result


# -- harvest -------------------------------------------------------------------------------------


def test_harvest_reaches_every_final_state_with_exactly_the_ground_truth(
    harvested: tuple[Simulator, Path, Ran],
) -> None:
    sim, db, result = harvested
    assert result.returncode == 0, result.stderr
    assert stored(db) == truth(sim, NAMES)
    assert sim.stats.requests == sum(sim.pages_needed(name) for name in NAMES)
    # Without a terminal: plain, time-stamped log lines, never a redrawn line.
    assert "\r" not in result.stderr
    assert "progress: users " in result.stderr
    assert "9 users in " in result.stderr
    assert "5 bad input lines skipped; 2 duplicates" in result.stderr
    assert "Traceback" not in result.stderr


def test_status_json_counts_states_requests_and_skipped_lines(
    harvested: tuple[Simulator, Path, Ran],
) -> None:
    sim, db, _ = harvested
    result = cli("status", "--db", db, "--json", "--daily-quota", 500)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["users"] == {
        "pending": 0,
        "done": 6,
        "not_found": 1,
        "unavailable": 1,
        "failed": 0,
        "incomplete": 1,  # the stall user: the API sent its cursor back
        "dropped": 0,
        "total": 9,
    }
    assert report["videos"] == sum(len(ids) for ids in truth(sim, NAMES).values())
    spent = sim.stats.requests
    assert report["requests"]["spent"] == spent
    assert report["requests"]["left"] == 500 - spent
    assert report["failed"] == []
    assert [u["username"] for u in report["incomplete"]] == ["stall_n500"]
    assert report["incomplete"][0]["reason"].startswith("repeated_cursor: ")
    assert report["skipped"]["by_reason"] == {
        "NUL byte": 1,
        "blank line": 2,
        "not a TikTok username": 1,  # "bo b"
        "too long": 1,  # the 100-character line
    }
    assert {"line": 9, "text": "nul\x00name", "reason": "NUL byte"} in report["skipped"]["lines"]


def test_status_shows_each_run_with_its_version_settings_and_requests(
    harvested: tuple[Simulator, Path, Ran],
) -> None:
    sim, db, _ = harvested
    report = json.loads(cli("status", "--db", db, "--json").stdout)
    (run,) = report["runs"]
    assert report["runs_total"] == 1
    assert run["run"] == 1
    assert run["version"] == __version__
    assert run["outcome"] == "finished"
    assert run["fields"] == list(VIDEO_FIELDS)
    assert run["max_count"] == 100
    assert run["requests"] == sim.stats.requests
    answered = [name for name in NAMES if sim.user_kind(name) not in ("missing", "private")]
    assert run["pages"] == sum(sim.pages_needed(name) for name in answered)
    assert run["videos"] == report["videos"]
    assert run["started_at"] <= run["ended_at"]
    text = cli("status", "--db", db).stdout
    lines = text.splitlines()
    at = lines.index("runs (newest first)")
    head, row = lines[at + 1], lines[at + 2]
    # Each head stands over its column: text from the left, figures from the right.
    assert row.index(run["started_at"]) == head.index("started")
    assert row.rindex(run["ended_at"]) == head.index("ended")  # rindex: it may equal the start
    for name, value in (("requests", run["requests"]), ("pages", run["pages"])):
        end = head.index(name) + len(name)
        assert row[:end].endswith(f" {value:,}"), (head, row)
    assert f"finished (v{__version__})" in text


def test_export_with_provenance_stamps_every_video_with_its_page(
    harvested: tuple[Simulator, Path, Ran], tmp_path: Path
) -> None:
    sim, db, _ = harvested
    out = tmp_path / "p.jsonl"
    assert cli("export", "--db", db, "--provenance", "--output", out).returncode == 0
    rows = [json.loads(line) for line in out.read_text("utf-8").splitlines()]
    expected = expected_records(sim, NAMES)
    stamps = ["round", "fetched_at", "log_id"]
    assert [list(row)[:4] for row in rows] == [["reposted_by", *stamps]] * len(rows)
    assert {row["round"] for row in rows} == {1}
    # Apart from the stamps, the line is the plain export's.
    assert [{k: v for k, v in row.items() if k not in stamps} for row in rows] == expected
    for row in rows:
        stamp = dt.datetime.fromisoformat(row["fetched_at"])
        assert stamp.tzinfo is not None
        assert abs((dt.datetime.now(dt.UTC) - stamp).total_seconds()) < 3600
        assert row["log_id"]
    # One log_id per page: videos of one page share it, pages do not.
    pages = {(row["reposted_by"], row["log_id"]) for row in rows}
    assert len({log_id for _, log_id in pages}) == len(pages)
    csv_out = tmp_path / "p.csv"
    assert cli("export", "--db", db, "--provenance", "--output", csv_out).returncode == 0
    with csv_out.open(encoding="utf-8", newline="") as text:
        records = list(csv.DictReader(text))
    assert [(r["fetched_at"], r["log_id"]) for r in records] == [
        (row["fetched_at"], row["log_id"]) for row in rows
    ]


def test_status_text_is_a_table(
    harvested: tuple[Simulator, Path, Ran],
) -> None:
    _, db, _ = harvested
    result = cli("status", "--db", db)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "state          users" in lines
    assert "done               6" in lines
    assert "incomplete         1" in lines
    assert "not_found          1" in lines
    assert any(line.startswith("  stall_n500  repeated_cursor: ") for line in lines)
    assert "total              9" in lines
    assert any(line.startswith("requests  ") and "left of 1,000" in line for line in lines)
    assert "skipped input lines (last run): 5" in lines
    assert "  line 7: 'bo b'  (not a TikTok username)" in lines


def test_export_jsonl_has_every_field_and_exact_ids(
    harvested: tuple[Simulator, Path, Ran], tmp_path: Path
) -> None:
    sim, db, _ = harvested
    out = tmp_path / "videos.jsonl"
    result = cli("export", "--db", db, "--output", out)  # the format follows the suffix
    assert result.returncode == 0, result.stderr
    with out.open(encoding="utf-8") as lines:
        rows = [json.loads(line) for line in lines]
    assert rows == expected_records(sim, NAMES)
    # The hugeid user's first id is above uint64 and came back as the very same integer.
    assert max(row["id"] for row in rows) > 2**64


def test_export_csv_is_flat_with_exact_ids(
    harvested: tuple[Simulator, Path, Ran], tmp_path: Path
) -> None:
    sim, db, _ = harvested
    out = tmp_path / "videos.txt"
    result = cli("export", "--db", db, "--format", "csv", "--output", out)
    assert result.returncode == 0, result.stderr
    with out.open(encoding="utf-8", newline="") as text:
        rows = list(csv.DictReader(text))
    expected = expected_records(sim, NAMES)
    assert [int(row["id"]) for row in rows] == [row["id"] for row in expected]
    assert [row["reposted_by"] for row in rows] == [row["reposted_by"] for row in expected]
    for row, want in zip(rows, expected, strict=True):
        assert json.loads(row["hashtag_names"] or "null") == want.get("hashtag_names")
        # Empty strings and strings with a NUL go as their JSON literal; a missing field is "".
        description = row["video_description"]
        if description.startswith('"'):
            description = json.loads(description)
        assert description == want.get("video_description", "")
        assert row["music_id"] == str(want.get("music_id", ""))
        # Nested objects are their JSON as sent: unknown keys and string ids included.
        assert json.loads(row["sticker_info_list"] or "null") == want.get("sticker_info_list")
        assert json.loads(row["hashtag_info_list"] or "null") == want.get("hashtag_info_list")


def test_export_parquet_keeps_types_and_exact_ids(
    harvested: tuple[Simulator, Path, Ran], tmp_path: Path
) -> None:
    sim, db, _ = harvested
    out = tmp_path / "videos.parquet"
    result = cli("export", "--db", db, "--output", out)
    assert result.returncode == 0, result.stderr
    table = pq.read_table(out)
    assert table.schema.field("id").type == pa.decimal128(38, 0)
    expected = expected_records(sim, NAMES)
    rows = table.to_pylist()
    assert [int(row["id"]) for row in rows] == [row["id"] for row in expected]
    for row, want in zip(rows, expected, strict=True):
        assert row["like_count"] == want.get("like_count")
        assert row["hashtag_names"] == want.get("hashtag_names")
        tags = want.get("hashtag_info_list")
        got = row["hashtag_info_list"]
        assert (got is None) == (tags is None)
        if tags is not None:
            assert [int(t["hashtag_id"]) for t in got] == [t["hashtag_id"] for t in tags]
        if tags:
            # The struct has no hashtag_name: the field goes whole, as sent, into extra.
            assert json.loads(row["extra"])["hashtag_info_list"] == tags


def test_export_to_stdout_matches_the_file(
    harvested: tuple[Simulator, Path, Ran], tmp_path: Path
) -> None:
    _, db, _ = harvested
    out = tmp_path / "v.csv"
    assert cli("export", "--db", db, "--output", out).returncode == 0
    piped = cli("export", "--db", db, "--format", "csv", "--output", "-")
    assert piped.returncode == 0, piped.stderr
    assert piped.stdout.encode() == out.read_bytes().replace(b"\r\n", b"\n")
    assert "exported" in piped.stderr


def test_harvest_reads_standard_input(sim: Simulator, tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    result = harvest(sim, "-", db, stdin="a_n5\n@b_n130\n\nb_n130\n")
    assert result.returncode == 0, result.stderr
    assert stored(db) == truth(sim, ["a_n5", "b_n130"])
    assert "1 bad input line skipped; 1 duplicate" in result.stderr


def test_quota_stop_exits_75_and_the_same_command_resumes_exactly(
    sim: Simulator, tmp_path: Path
) -> None:
    names = [f"q{i}_n250" for i in range(6)]  # three pages each: 18 requests
    users = write_users(tmp_path / "users.txt", names)
    db = tmp_path / "h.db"
    stopped = harvest(sim, users, db, "--daily-quota", 7, "--concurrency", 2)
    assert stopped.returncode == 75, stopped.stderr
    assert "the daily quota is spent (7 of 7 requests today)" in stopped.stderr
    assert "run the same command again to resume after 00:01 UTC" in stopped.stderr
    assert sim.stats.requests == 7
    # The same day, the same command: the store remembers today's spending, nothing is sent.
    again = harvest(sim, users, db, "--daily-quota", 7, "--concurrency", 2)
    assert again.returncode == 75
    assert sim.stats.requests == 7
    finished = harvest(sim, users, db, "--daily-quota", 100)
    assert finished.returncode == 0, finished.stderr
    assert stored(db) == truth(sim, names)
    assert sim.stats.requests == 18
    assert max(sim.stats.by_cursor.values()) == 1


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupted_harvest_exits_75_consistent_and_resumes_exactly(
    sim: Simulator, tmp_path: Path, signum: signal.Signals
) -> None:
    names = [f"int{i}_n400" for i in range(40)]  # four pages each: 160 requests
    users = write_users(tmp_path / "users.txt", names)
    db = tmp_path / "h.db"
    sim.config.latency = 0.08  # four at a time: the whole walk would take four seconds
    child = subprocess.Popen(
        command("harvest", users, "--db", db, "--base-url", sim.base_url, "--rate", 200,
                "--concurrency", 4),
        env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while videos_in(db) < 300:
        assert child.poll() is None, child.communicate()
        assert time.monotonic() < deadline, "the harvest made no progress"
        time.sleep(0.02)
    if signum == signal.SIGINT:
        # A second harvest of the same store meanwhile is refused.
        second = harvest(sim, users, db)
        assert second.returncode == 2, second.stderr
        assert f"{str(db)!r} is being harvested by another process (pid {child.pid})" in (
            second.stderr
        )
    child.send_signal(signum)
    _, stderr = child.communicate(timeout=30)
    assert child.returncode == 75, stderr
    assert stderr.rstrip().endswith("interrupted: run the same command again to resume")
    assert "Traceback" not in stderr
    sent = sim.stats.requests
    with Store(db, create=False) as store:
        assert store._db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        # Every request sent is in the ledger, the pages in flight at the signal included.
        assert sent <= store.requests_on() <= sent + 4
        walked = 0
        for record in store.iter_users():
            assert record.videos == min(record.cursor, 400)
            walked += record.state is UserState.DONE
        assert walked < len(names)
    # Each user's stored videos are a prefix of its truth: nothing lost, duplicated or reordered.
    expected = truth(sim, names)
    for name, ids in stored(db).items():
        assert ids == expected[name][: len(ids)]
    sim.config.latency = 0.0
    resumed = harvest(sim, users, db)
    assert resumed.returncode == 0, resumed.stderr
    assert stored(db) == expected
    # A resume re-fetches at most the pages that were in flight, one per worker.
    assert sum(count - 1 for count in sim.stats.by_cursor.values()) <= 4


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_clean_stop_leaves_the_ledger_equal_to_what_the_api_received(
    sim: Simulator, tmp_path: Path, signum: signal.Signals
) -> None:
    # Eight workers, each with its next request paid and booked ahead while a page is on the
    # wire: the signal holds back what is not sent yet and gives its booking back, and lets the
    # requests in flight be answered and stored. The simulator's count is the truth.
    names = [f"led{i}_n1000" for i in range(40)]  # ten pages each
    users = write_users(tmp_path / "users.txt", names)
    db = tmp_path / "h.db"
    sim.config.latency = 0.1
    child = subprocess.Popen(
        command("harvest", users, "--db", db, "--base-url", sim.base_url, "--rate", 200,
                "--concurrency", 8),
        env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while videos_in(db) < 1500:
        assert child.poll() is None, child.communicate()
        assert time.monotonic() < deadline, "the harvest made no progress"
        time.sleep(0.01)
    child.send_signal(signum)
    _, stderr = child.communicate(timeout=30)
    assert child.returncode == 75, stderr
    received = sim.stats.requests
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        ledger = conn.execute("SELECT sum(count) FROM requests").fetchone()[0]
        pages = conn.execute("SELECT count(*) FROM pages").fetchone()[0]
    finally:
        conn.close()
    assert 0 < received < sum(sim.pages_needed(name) for name in names)
    assert ledger == received
    assert pages == received  # every answer in flight at the signal was stored
    # So the same command again sends each (user, cursor) once, in all.
    sim.config.latency = 0.0
    resumed = harvest(sim, users, db)
    assert resumed.returncode == 0, resumed.stderr
    assert sim.stats.requests == sum(sim.pages_needed(name) for name in names)
    assert max(sim.stats.by_cursor.values()) == 1


def videos_in(db: Path) -> int:
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn, conn:
            return int(conn.execute("SELECT count(*) FROM videos").fetchone()[0])
    except sqlite3.Error:
        return 0  # not created yet


def test_failed_users_exit_1_and_the_next_run_retries_them(sim: Simulator, tmp_path: Path) -> None:
    users = write_users(tmp_path / "users.txt", ["fine_n120", "broken_n120"])
    db = tmp_path / "h.db"
    # A refused token is retried at once; five in a row exhaust the attempts without waiting.
    sim.script("broken_n120", [Fault.TOKEN_INVALID] * 5)
    first = harvest(sim, users, db)
    assert first.returncode == 1, first.stderr
    assert "1 user failed" in first.stderr
    report = json.loads(cli("status", "--db", db, "--json").stdout)
    assert report["users"]["failed"] == 1
    assert report["failed"][0]["username"] == "broken_n120"
    assert report["failed"][0]["error"].startswith("TokenExpiredError: ")
    text = cli("status", "--db", db).stdout
    assert "failed users and their last error:" in text
    assert "  broken_n120  TokenExpiredError: " in text
    skipped = harvest(sim, users, db, "--no-retry-failed")
    assert skipped.returncode == 0, skipped.stderr
    assert sim.stats.by_user["broken_n120"] == 5
    retried = harvest(sim, users, db, "--retry-failed")
    assert retried.returncode == 0, retried.stderr
    assert stored(db) == truth(sim, ["fine_n120", "broken_n120"])


# -- usage and configuration errors: status 2, one line, nothing sent ----------------------------


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--fields", "id,bogus_field"], {}, "unknown field 'bogus_field'"),
        (["--bogus-option"], {}, "unrecognized arguments: --bogus-option"),
        (["--max-count", "101"], {}, "argument --max-count: '101' is not an integer from 1 to"),
        ([], {"TIKTOK_CLIENT_SECRET": None}, "missing credentials: TIKTOK_CLIENT_SECRET not set"),
        ([], {"TIKTOK_CLIENT_KEY": " "}, "missing credentials: TIKTOK_CLIENT_KEY not set"),
        (
            [],
            {"TIKTOK_CLIENT_SECRET": "wrong-secret-4711"},
            "the API refused the credentials in TIKTOK_CLIENT_KEY and TIKTOK_CLIENT_SECRET",
        ),
    ],
)
def test_usage_and_configuration_errors_exit_2_on_one_line(
    sim: Simulator, tmp_path: Path, args: list[str], env: dict[str, str | None], message: str
) -> None:
    users = write_users(tmp_path / "users.txt", ["alice_n5"])
    db = tmp_path / "h.db"
    result = harvest(sim, users, db, *args, **env)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert message in result.stderr
    assert "wrong-secret-4711" not in result.stderr + result.stdout
    assert sim.stats.requests == 0
    assert not db.exists()


def test_an_unreadable_users_file_exits_2(sim: Simulator, tmp_path: Path) -> None:
    for users, reason in [(tmp_path / "absent.txt", "No such file"), (tmp_path, "Is a directory")]:
        result = harvest(sim, users, tmp_path / "h.db")
        assert result.returncode == 2
        assert result.stderr.count("\n") == 1
        assert f"cannot read the users file {str(users)!r}: {reason}" in result.stderr
    assert sim.stats.requests == 0


def test_a_store_made_with_other_fields_is_refused(sim: Simulator, tmp_path: Path) -> None:
    users = write_users(tmp_path / "users.txt", ["alice_n5"])
    db = tmp_path / "h.db"
    assert harvest(sim, users, db, "--fields", "id,like_count").returncode == 0
    sent = sim.stats.requests
    # Without --fields the store's own are used; other ones are refused by name.
    assert harvest(sim, users, db).returncode == 0
    refused = harvest(sim, users, db, "--fields", "id,view_count")
    assert refused.returncode == 2
    assert "was harvested with fields id,like_count, not id,view_count" in refused.stderr
    assert sim.stats.requests == sent


def test_status_and_export_refuse_a_missing_store(tmp_path: Path) -> None:
    for args in (["status"], ["export", "--format", "csv"]):
        result = cli(*args, "--db", tmp_path / "nothing.db")
        assert result.returncode == 2
        assert "no store at" in result.stderr
    assert not (tmp_path / "nothing.db").exists()


def test_parquet_export_without_pyarrow_names_the_extra(
    harvested: tuple[Simulator, Path, Ran], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, db, _ = harvested
    out = tmp_path / "v.parquet"
    out.write_bytes(b"keep me")
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow now fails
    result = cli("export", "--db", db, "--output", out)
    assert result.returncode == 2
    # A command that works wherever pip does, a checkout included (no index serves the name).
    assert "pip install 'pyarrow>=14'" in result.stderr
    assert out.read_bytes() == b"keep me"


def test_parquet_into_a_terminal_is_refused_before_anything_is_read(
    harvested: tuple[Simulator, Path, Ran],
) -> None:
    _, db, _ = harvested
    leader, follower = pty.openpty()
    try:
        child = subprocess.run(
            command("export", "--db", db, "--format", "parquet"),
            env=cli_env(), stdout=follower, stderr=subprocess.PIPE, text=True, timeout=60,
        )  # fmt: skip
    finally:
        os.close(follower)
    written = b""
    ready, _, _ = select.select([leader], [], [], 0.1)
    if ready:
        with contextlib.suppress(OSError):  # EIO: the terminal's other side closed, unwritten
            written = os.read(leader, 65536)
    os.close(leader)
    assert child.returncode == 2, child.stderr
    assert "-o FILE.parquet" in child.stderr
    assert written == b""


# -- the display -----------------------------------------------------------------------------------


def test_on_a_terminal_the_progress_is_one_redrawn_line(sim: Simulator, tmp_path: Path) -> None:
    users = write_users(tmp_path / "users.txt", [f"tty{i}_n300" for i in range(6)])
    sim.config.latency = 0.05
    leader, follower = pty.openpty()
    child = subprocess.Popen(
        command("harvest", users, "--db", tmp_path / "h.db", "--base-url", sim.base_url,
                "--rate", 20),
        env=cli_env(), stdout=subprocess.DEVNULL, stderr=follower,
    )  # fmt: skip
    os.close(follower)
    output = b""
    while True:
        ready, _, _ = select.select([leader], [], [], 0.1)
        if ready:
            try:
                output += os.read(leader, 65536)
            except OSError:  # the child closed the terminal
                break
        elif child.poll() is not None:
            break
    os.close(leader)
    assert child.wait(timeout=30) == 0
    text = output.decode()
    redraws = [part for part in text.split("\r\x1b[K") if part.startswith("users ")]
    assert len(redraws) >= 3
    assert any(" req/s | ETA " in part for part in redraws)
    assert "| requests today " in redraws[-1]
    # The line is erased for good at the end, and the summary takes its place.
    summary = text.split("\r\x1b[K")[-1]
    assert summary.startswith("6 users in ")
    assert ": 6 done; 1,800 videos stored; 18 requests" in summary


def test_the_progress_line_shows_a_pause_of_the_circuit_breaker() -> None:
    progress = HarvestProgress(quota_limit=1000, quota_spent=120, started_at=1.0)
    progress.queued, progress.input_done = 100, True
    progress.probe_at = 1_000.0
    line = render_progress(progress, now=960.0, rate=3.0)
    assert line.endswith(" | API unhealthy: pausing, next probe in 40s")
    progress.probe_at = None
    assert "unhealthy" not in render_progress(progress, now=960.0, rate=3.0)


def test_the_progress_line_shows_a_quota_wait_and_a_quota_bound_eta() -> None:
    progress = HarvestProgress(quota_limit=1000, quota_spent=1000, started_at=1.0)
    progress.finished[UserState.DONE] = 40
    progress.queued, progress.input_done, progress.videos = 100, True, 12_345
    progress.requests = 400
    midnight = 1_764_115_200.0  # 2025-11-26 00:00 UTC
    progress.waiting_until = midnight + 60
    line = render_progress(progress, now=midnight - 3600, rate=None)
    assert line == (
        "users 40/100 | 12,345 videos | requests today 1,000/1,000"
        " | quota spent: waiting until 00:01 UTC (1h01m)"
    )
    progress.waiting_until = None
    progress.quota_spent = 600
    # 60 users left at 10 requests each: 600 requests, 400 of them left today, 200 tomorrow.
    assert render_progress(progress, now=midnight + 3600, rate=9.5).endswith(
        "9.5 req/s | ETA ~1 day, done about 2025-11-27"
    )
    progress.quota_spent, progress.quota_limit = 900, 100
    # 600 requests: 100 a day after today's last one is spent.
    assert render_progress(progress, now=midnight + 3600, rate=9.5).endswith(
        "ETA ~6 days, done about 2025-12-02"
    )
    progress.quota_limit = 1000
    progress.quota_spent = 0
    assert render_progress(progress, now=0, rate=10.0).endswith("10.0 req/s | ETA 1m00s")
    progress.input_done = False
    assert render_progress(progress, now=0, rate=None, input_lines=150).startswith("users 40/~150 ")


# -- serve, demo, the console script --------------------------------------------------------------


@pytest.mark.usefixtures("short_holds")
def test_serve_runs_the_simulator_with_its_knobs_until_interrupted(tmp_path: Path) -> None:
    server = subprocess.Popen(
        command("serve", "--port", 0, "--daily-quota", 2, "--latency", 0.01),
        env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert server.stdout is not None
        base_url = server.stdout.readline().strip()
        assert base_url.startswith("http://127.0.0.1:")
        users = write_users(tmp_path / "users.txt", ["s_n250"])
        result = cli("harvest", users, "--db", tmp_path / "h.db", "--base-url", base_url)
        # The served API's own daily quota of 2 answers the third request with its 429.
        assert result.returncode == 75, result.stderr
        assert "the API says the project's daily quota is spent" in result.stderr
        assert (
            json.loads(cli("status", "--db", tmp_path / "h.db", "--json").stdout)["videos"] == 200
        )
    finally:
        server.send_signal(signal.SIGINT)
        _, stderr = server.communicate(timeout=30)
    assert server.returncode == 0, stderr
    assert "TIKTOK_CLIENT_KEY=sim-test-client-key" in stderr
    bad = cli("serve", "--fault", "bogus=0.1")
    assert bad.returncode == 2
    assert "unknown fault 'bogus'" in bad.stderr


def test_demo_harvests_the_sample_and_says_where_everything_went(tmp_path: Path) -> None:
    folder = tmp_path / "demo"
    result = cli("demo", "--dir", folder, "--rate", 200)
    assert result.returncode == 0, result.stderr
    table = result.stdout
    for row in (
        "missing_user      not_found",
        "private_account   unavailable",
        "empty_lurker      done",
        "hugeid_collector  done",
    ):
        assert row in table
    assert "\n16 users  " in table
    assert f"store:  {folder / 'demo.db'}" in table
    assert f"export: {folder / 'reposts.jsonl'}" in table
    # The scripted faults were retried, and the harvest still got every video.
    assert "retry 1 of 4" in result.stderr
    with (folder / "reposts.jsonl").open(encoding="utf-8") as lines:
        rows = [json.loads(line) for line in lines]
    demo_truth = [v["id"] for v in Simulator().ground_truth("hugeid_collector")]
    assert [r["id"] for r in rows if r["reposted_by"] == "hugeid_collector"] == demo_truth
    with Store(folder / "demo.db", create=False) as store:
        assert store.video_count() == len(rows)
        assert store.state_counts()[UserState.FAILED] == 0


def test_the_console_script_is_installed_and_agrees_with_python_m() -> None:
    script = Path(sys.executable).with_name("tiktok-reposts")
    installed = subprocess.run([script, "--version"], capture_output=True, text=True, check=True)
    module = cli_process("--version")
    assert installed.stdout == module.stdout
    assert module.stdout.startswith("tiktok-reposts ")


def test_debug_logs_and_the_store_hold_no_secret(sim: Simulator, tmp_path: Path) -> None:
    users = write_users(tmp_path / "users.txt", ["secretive_n150"])
    db = tmp_path / "h.db"
    sim.script("secretive_n150", [Fault.TOKEN_INVALID])
    result = harvest(sim, users, db, "-vv")
    assert result.returncode == 0, result.stderr
    assert "fetched an access token" in result.stderr  # the debug log is really on
    everything = (result.stdout + result.stderr).encode() + b"".join(
        path.read_bytes() for path in tmp_path.iterdir() if path.name.startswith("h.db")
    )
    assert TEST_CLIENT_SECRET.encode() not in everything
    assert b"clt." not in everything  # the simulator's access tokens all start so


def test_demo_panel_harvests_a_second_round_and_writes_what_changed(tmp_path: Path) -> None:
    folder = tmp_path / "demo"
    result = cli("demo", "--dir", folder, "--rate", 200, "--panel", "--no-progress")
    assert result.returncode == 0, result.stderr
    assert "round 2, a week later at the simulator" in result.stdout
    with (folder / "changes.jsonl").open(encoding="utf-8") as lines:
        changes = [json.loads(line) for line in lines]
    sim = Simulator()
    # Every added repost is the simulator's own truth of what a week added.
    for name in ("carol", "dave_n40", "alice_n250"):
        added = [c["video_id"] for c in changes if c["username"] == name and c["change"] == "added"]
        assert added == sim.changes(name, 0, 1)["added"], name
    assert f"{sum(c['change'] == 'added' for c in changes):,} reposts added" in result.stdout
    with Store(folder / "demo.db", create=False) as store:
        first, second = store.rounds()
        # Then a refresh deleted, from every round, what the week removed: the simulator's truth.
        names = [record.username for record in store.iter_users()]
        [audit] = store.refreshes()
    # What a week removed from the lists, but for a stalled cursor's: its walk sees two pages,
    # and a video that the week's new reposts pushed past them is out of sight, not deleted.
    gone = {
        video_id
        for name in names
        if sim.user_kind(name) != "stall"
        for video_id in sim.changes(name, 0, 1)["removed"]
    }
    assert gone
    assert audit.removed == len(gone)
    assert f"{len(gone):,} no longer available" in result.stdout
    assert second.stop_at_known
    # A repeat round with --stop-at-known costs about one request per user.
    assert second.requests < first.requests / 2


def test_a_quota_stop_during_a_lagging_reset_says_when_the_library_says() -> None:
    from tiktok_repost_async.cli._run import _stop_line
    from tiktok_repost_async.errors import HarvestStopped, StopReason
    from tiktok_repost_async.quota import quota_stop_message

    at = dt.datetime(2026, 12, 3, 0, 6, 30, tzinfo=dt.UTC).timestamp()
    detail = quota_stop_message(None, at, lagging=True)
    line = _stop_line(HarvestStopped(StopReason.QUOTA, detail, at), "run it again")
    assert line.startswith("stopped: the API refused this UTC day's first requests as over quota")
    assert "seems to lag" in line
    # The time to come back is the lag's next step, minutes away, not the next midnight.
    assert line.endswith("run it again after 00:07 UTC, or pass --on-quota wait")
    assert "try again" not in line
