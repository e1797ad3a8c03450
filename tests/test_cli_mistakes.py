"""Every mistake a user can make gets one line, exit status 2, no traceback, and costs no quota.

The commands run in this process (`support.run_main`) against a simulator on a thread.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import http.server
import io
import json
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import Ran, run_main
from test_cli import cli_env, stored, truth, write_users

from tiktok_repost_async import Store
from tiktok_repost_async.cli import _stores
from tiktok_repost_async.retry import RetryPolicy
from tiktok_repost_async.simulator import TEST_CLIENT_SECRET, Simulator
from tiktok_repost_async.store import PageCommit


def harvest(sim: Simulator | str, users: Path | str, db: Path, *options: object, **env: str) -> Ran:
    base_url = sim if isinstance(sim, str) else sim.base_url
    return run_main(
        "harvest", users, "--db", db, "--base-url", base_url, "--rate", 500, *options,
        env=cli_env(**env),
    )  # fmt: skip


def one_line_usage_error(result: Ran, *words: str) -> None:
    """Assert exit status 2, one line on stderr holding every one of ``words``, no traceback."""
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in result.stderr, result.stderr


def nothing_sent(sim: Simulator) -> None:
    assert sim.stats.requests == 0
    assert sim.stats.token_requests == 0


# -- credentials ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "secret", ["wrong\nsecret", "tab\tin-it", "bell\x07", "del\x7f", "zw\u200b"]
)
def test_a_secret_with_a_control_character_is_refused_before_anything_is_sent(
    sim_in_thread: Simulator, tmp_path: Path, secret: str
) -> None:
    # (A NUL cannot reach the command: no environment variable can hold one.)
    users = write_users(tmp_path / "users.txt", ["alice_n5"])
    result = harvest(sim_in_thread, users, tmp_path / "h.db", TIKTOK_CLIENT_SECRET=secret)
    one_line_usage_error(result, "TIKTOK_CLIENT_SECRET holds a control or invisible character")
    assert secret.strip() not in result.stderr
    nothing_sent(sim_in_thread)
    assert not (tmp_path / "h.db").exists()


def test_a_key_with_a_line_break_is_named_by_its_variable(
    sim_in_thread: Simulator, tmp_path: Path
) -> None:
    users = write_users(tmp_path / "users.txt", ["alice_n5"])
    result = harvest(sim_in_thread, users, tmp_path / "h.db", TIKTOK_CLIENT_KEY="key\r\nmore")
    one_line_usage_error(result, "TIKTOK_CLIENT_KEY holds a control", "character 4 of 9")
    nothing_sent(sim_in_thread)


# -- the base URL ---------------------------------------------------------------------------------


@pytest.mark.parametrize("tail", ["?x=1", "/?x=1", "#top", "?"])
def test_a_base_url_with_a_query_or_fragment_is_a_usage_error(
    sim_in_thread: Simulator, tmp_path: Path, tail: str
) -> None:
    users = write_users(tmp_path / "users.txt", ["alice_n5"])
    result = harvest(sim_in_thread.base_url + tail, users, tmp_path / "h.db")
    one_line_usage_error(result, "holds a query or fragment", "give the API's root only")
    nothing_sent(sim_in_thread)
    # The environment's base URL is checked the same way.
    env = cli_env(TIKTOK_API_BASE_URL=sim_in_thread.base_url + tail)
    result = run_main("harvest", users, "--db", tmp_path / "h.db", env=env)
    one_line_usage_error(result, "holds a query or fragment")
    nothing_sent(sim_in_thread)


@pytest.mark.parametrize("path", ["/v2", "/v2/oauth/token", "/nothing/here"])
def test_a_base_url_where_no_api_answers_says_so_not_that_the_credentials_are_wrong(
    sim_in_thread: Simulator, tmp_path: Path, path: str
) -> None:
    users = write_users(tmp_path / "users.txt", ["alice_n5"])
    result = harvest(sim_in_thread.base_url + path, users, tmp_path / "h.db")
    one_line_usage_error(
        result,
        f"this does not look like the Research API at {sim_in_thread.base_url}{path}",
        f"without {path!r}",
    )
    assert "refused the credentials" not in result.stderr
    assert sim_in_thread.stats.requests == 0
    assert not (tmp_path / "h.db").exists()


class _WebSite(http.server.BaseHTTPRequestHandler):
    """Answer every POST as an ordinary web site would: an HTML page."""

    status = 200
    posts = 0

    def do_POST(self) -> None:
        type(self).posts += 1
        body = b"<!doctype html><html><body>Welcome to my blog</body></html>"
        self.send_response(self.status)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def website() -> Iterator[tuple[str, type[_WebSite]]]:
    handler = type("Site", (_WebSite,), {"posts": 0})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("status", [200, 404])
def test_a_base_url_that_answers_html_is_not_the_research_api(
    website: tuple[str, type[_WebSite]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    status: int,
) -> None:
    base_url, site = website
    site.status = status
    # The client's own retry policy decides the attempts; its waits are not what is tested.
    monkeypatch.setattr(RetryPolicy, "delay", lambda self, attempt, error=None: 0.0)
    monkeypatch.setattr(RetryPolicy, "ceiling", lambda self, attempt, error=None: 0.0)
    users = write_users(tmp_path / "users.txt", ["alice_n5"])
    result = harvest(base_url, users, tmp_path / "h.db")
    # The retries of a 200 say so as they happen; the answer is still one line, the last.
    retries = result.stderr.splitlines()[:-1]
    assert len(retries) == (RetryPolicy().max_attempts - 1 if status == 200 else 0)
    assert all(" warning: token endpoint: " in line and " retry " in line for line in retries)
    answer = result.stderr.splitlines()[-1:]
    one_line_usage_error(
        Ran(result.returncode, result.stdout, "".join(f"{line}\n" for line in answer), b""),
        f"this does not look like the Research API at {base_url}",
    )
    # A 200 that is not the token endpoint's JSON might be a cut-off answer: retried as the
    # policy says, then given up. A 404 is final at once.
    assert site.posts == (RetryPolicy().max_attempts if status == 200 else 1)
    assert not (tmp_path / "h.db").exists()


# -- the users file -------------------------------------------------------------------------------

NAMES = ["alice_n5", "bob_n120", "carol_n40"]


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16", "utf-16-le", "utf-16-be", "utf-32"])
def test_a_users_file_with_a_byte_order_mark_is_read_in_its_encoding(
    sim_in_thread: Simulator, tmp_path: Path, encoding: str
) -> None:
    users = tmp_path / "users.txt"
    text = "\r\n".join(NAMES) + "\r\n"  # as Windows saves it
    boms = {"utf-16-le": codecs.BOM_UTF16_LE, "utf-16-be": codecs.BOM_UTF16_BE}
    users.write_bytes(boms.get(encoding, b"") + text.encode(encoding))
    db = tmp_path / "h.db"
    result = harvest(sim_in_thread, users, db)
    assert result.returncode == 0, result.stderr
    assert stored(db) == truth(sim_in_thread, NAMES)
    assert "bad input line" not in result.stderr


def test_standard_input_in_utf16_with_a_byte_order_mark_is_read_too(
    sim_in_thread: Simulator, tmp_path: Path
) -> None:
    db = tmp_path / "h.db"
    data = ("\n".join(NAMES) + "\n").encode("utf-16")
    result = run_main(
        "harvest", "-", "--db", db, "--base-url", sim_in_thread.base_url, env=cli_env(), stdin=data
    )
    assert result.returncode == 0, result.stderr
    assert stored(db) == truth(sim_in_thread, NAMES)


@pytest.mark.parametrize(
    ("data", "line", "encoding"),
    [
        (b"alice_n5\nbob\xff_n5\ncarol\n", 2, "UTF-8"),
        (b"\xe9mile\n", 1, "UTF-8"),  # Latin-1, as an old spreadsheet saves it
        (b"a\nb\nc\nd\r\ne\x80\n", 5, "UTF-8"),
        (codecs.BOM_UTF16_LE + "ab\ncd\n".encode("utf-16-le") + b"\x00\xdc\n\x00", 3, "UTF-16-LE"),
    ],
)
def test_a_users_file_that_does_not_decode_names_the_line_before_anything_is_sent(
    sim_in_thread: Simulator, tmp_path: Path, data: bytes, line: int, encoding: str
) -> None:
    users = tmp_path / "users.txt"
    users.write_bytes(data)
    result = harvest(sim_in_thread, users, tmp_path / "h.db")
    one_line_usage_error(result, f"is not {encoding} text: line {line} holds bytes that do not")
    nothing_sent(sim_in_thread)
    assert not (tmp_path / "h.db").exists()


def test_standard_input_that_does_not_decode_names_the_line(
    sim_in_thread: Simulator, tmp_path: Path
) -> None:
    result = run_main(
        "harvest", "-", "--db", tmp_path / "h.db", "--base-url", sim_in_thread.base_url,
        "--no-progress", env=cli_env(), stdin=b"alice_n5\nbob_n5\nca\xc3rol\n",
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "'standard input' is not UTF-8 text: line 3 holds bytes" in result.stderr
    assert "Traceback" not in result.stderr


# -- the store ------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["harvest", "status", "export", "diff"])
def test_a_db_that_is_a_directory_is_named_as_one(
    sim_in_thread: Simulator, tmp_path: Path, command: str
) -> None:
    users = write_users(tmp_path / "users.txt", ["alice_n5"])
    args = {"harvest": [users, "--base-url", sim_in_thread.base_url]}.get(command, [])
    result = run_main(command, *args, "--db", tmp_path, env=cli_env())
    one_line_usage_error(result, f"--db {str(tmp_path)!r} is a directory")
    nothing_sent(sim_in_thread)


@pytest.mark.parametrize("command", ["harvest", "status"])
def test_a_db_without_permission_says_so(
    sim_in_thread: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    db = tmp_path / "h.db"
    with Store(db, fields=("id",), max_count=100):
        pass
    # chmod does not stop root, who runs many CI containers: the check itself is what is tested.
    monkeypatch.setattr(_stores.os, "access", lambda path, mode: False)
    users = write_users(tmp_path / "users.txt", ["alice_n5"])
    args = [users, "--base-url", sim_in_thread.base_url] if command == "harvest" else []
    result = run_main(command, *args, "--db", db, env=cli_env())
    one_line_usage_error(result, f"cannot open --db {str(db)!r}: permission denied")
    nothing_sent(sim_in_thread)


def test_a_db_in_a_directory_that_does_not_exist_is_refused_before_any_request(
    sim_in_thread: Simulator, tmp_path: Path
) -> None:
    users = write_users(tmp_path / "users.txt", ["alice_n5"])
    result = harvest(sim_in_thread, users, tmp_path / "nowhere" / "h.db")
    one_line_usage_error(result, "there is no directory", "nowhere")
    nothing_sent(sim_in_thread)


@pytest.mark.parametrize("made_by", ["mktemp", "sqlite3"])
def test_an_empty_db_file_is_a_new_store_to_a_harvest_and_named_to_status(
    sim_in_thread: Simulator, tmp_path: Path, made_by: str
) -> None:
    db = tmp_path / f"made-by-{made_by}.db"
    if made_by == "mktemp":
        db.touch()
    else:  # an SQLite database with a header and no table, as any opening leaves one
        conn = sqlite3.connect(db)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.close()
    status = run_main("status", "--db", db)
    one_line_usage_error(
        status, "is empty: nothing has been harvested into it yet", f"harvest USERS --db {db}"
    )
    assert "max_count" not in status.stderr  # a library name, not an option
    users = write_users(tmp_path / "users.txt", ["alice_n5"])
    assert harvest(sim_in_thread, users, db).returncode == 0
    assert stored(db) == truth(sim_in_thread, ["alice_n5"])


@pytest.mark.parametrize("command", ["harvest", "status", "export"])
def test_a_store_of_a_newer_version_asks_for_an_upgrade(
    sim_in_thread: Simulator, tmp_path: Path, command: str
) -> None:
    db = tmp_path / "h.db"
    with Store(db, fields=("id",), max_count=100):
        pass
    with contextlib.closing(sqlite3.connect(db)) as conn, conn:
        conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    conn.close()
    users = write_users(tmp_path / "users.txt", ["alice_n5"])
    args = [users, "--base-url", sim_in_thread.base_url] if command == "harvest" else []
    result = run_main(command, *args, "--db", db, env=cli_env())
    one_line_usage_error(result, "written by a newer version", "upgrade tiktok-repost-async")
    assert sim_in_thread.stats.requests == 0


def test_no_mistake_shows_the_secret(sim_in_thread: Simulator, tmp_path: Path) -> None:
    users = write_users(tmp_path / "users.txt", ["alice_n5"])
    for base in (sim_in_thread.base_url + "/v2", sim_in_thread.base_url + "?a=b"):
        result = harvest(base, users, tmp_path / "h.db", "-vv")
        assert TEST_CLIENT_SECRET not in result.stderr + result.stdout


# -- an export round-trips what CSV cannot hold plainly --------------------------------------------


def test_a_csv_export_round_trips_nul_control_characters_and_empty_versus_missing(
    tmp_path: Path,
) -> None:
    videos = [
        {"id": 1, "username": "", "video_description": "plain"},
        {"id": 2, "video_description": None},
        {"id": 3, "username": "nul\x00inside", "video_description": "bell\x07 esc\x1b del\x7f"},
        {"id": 4, "username": '"quoted"', "video_description": "tab\tline\nbreak\r\n"},
    ]
    db = tmp_path / "h.db"
    fields = ("id", "username", "video_description")
    with Store(db, fields=fields, max_count=100) as store:
        store.add_users(["u"])
        raw = [(v["id"], json.dumps(v).encode()) for v in videos]
        store.commit_pages([PageCommit("u", raw, 0, False, 1)])
    out = tmp_path / "v.csv"
    assert run_main("export", "--db", db, "--output", out).returncode == 0
    data = out.read_bytes()
    assert b"\x00" not in data
    assert b"\x07" not in data

    def read(cell: str) -> object:
        # README: an empty cell is a field not returned (or null); a leading " is JSON.
        if not cell:
            return None
        return json.loads(cell) if cell.startswith('"') else cell

    rows = list(csv.DictReader(io.StringIO(data.decode("utf-8"), newline="")))
    for row, video in zip(rows, videos, strict=True):
        assert int(row["id"]) == video["id"]
        for name in ("username", "video_description"):
            assert read(row[name]) == video.get(name), (name, row)


@pytest.mark.parametrize("fault", ["server_error", "drop"])
def test_a_token_endpoint_that_stays_down_exits_75_having_spent_nothing(
    sim_in_thread: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fault: str
) -> None:
    from tiktok_repost_async.simulator import Fault

    sim = sim_in_thread
    sim.config.token_faults = {Fault(fault): 1.0}
    # The client's own retry policy decides the attempts; its waits are not what is tested.
    monkeypatch.setattr(RetryPolicy, "delay", lambda self, attempt, error=None: 0.0)
    monkeypatch.setattr(RetryPolicy, "ceiling", lambda self, attempt, error=None: 0.0)
    users = write_users(tmp_path / "users.txt", ["alice_n5"])
    result = harvest(sim, users, tmp_path / "h.db")
    assert result.returncode == 75, result.stderr
    answer = result.stderr.splitlines()[-1]
    assert f"cannot get an access token from {sim.base_url}" in answer
    assert "run the same command again later" in answer
    assert "Traceback" not in result.stderr
    assert sim.stats.token_requests == RetryPolicy().max_attempts
    assert sim.stats.requests == 0
    assert not (tmp_path / "h.db").exists()
