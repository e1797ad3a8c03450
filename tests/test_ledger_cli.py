"""Two `tiktok-reposts harvest` processes on two stores and one --ledger keep within one quota."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

import pytest
from pg_server import PostgresServer
from support import sim_env

from tiktok_repost_async.simulator import Simulator

QUOTA = 60
USERS = {"a": [f"a{i}_n5000" for i in range(6)], "b": [f"b{i}_n5000" for i in range(6)]}


def command(*args: object) -> list[str]:
    return [sys.executable, "-m", "tiktok_repost_async", *(str(arg) for arg in args)]


def harvest_both(
    sim: Simulator, tmp_path: Path, ledger: dict[str, list[str]], env: dict[str, dict[str, str]]
) -> dict[str, subprocess.CompletedProcess[str]]:
    """Run the two harvests at once, each with its own --ledger arguments and environment."""
    children = {}
    for name, users in USERS.items():
        (tmp_path / f"{name}.txt").write_text("\n".join(users) + "\n")
        children[name] = subprocess.Popen(
            command(
                "harvest", tmp_path / f"{name}.txt", "--db", tmp_path / f"{name}.db",
                "--daily-quota", QUOTA, "--no-progress", *ledger[name],
            ),
            env=sim_env(sim, **env.get(name, {})),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=tmp_path,
        )  # fmt: skip
    done = {}
    for name, child in children.items():
        out, err = child.communicate(timeout=120)
        done[name] = subprocess.CompletedProcess(child.args, child.returncode, out, err)
    return done


def sent_by(sim: Simulator, name: str) -> int:
    """Return the research requests the simulator received for one store's users."""
    return sum(sim.stats.by_user[user] for user in USERS[name])


def check_both_stopped_on_the_shared_quota(
    sim: Simulator, done: dict[str, subprocess.CompletedProcess[str]]
) -> None:
    assert sim.stats.requests <= QUOTA
    # Nothing was given back (no refused connection): the ledger's whole day went out.
    assert sim.stats.requests == QUOTA
    for result in done.values():
        assert result.returncode == 75, result.stderr
        text = result.stdout + result.stderr
        assert "stopped: the organisation's shared daily quota is spent" in text
        assert f"the organisation's {QUOTA} today, 0 left of {QUOTA}" in text


def status(
    sim: Simulator, tmp_path: Path, name: str, *ledger: str, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command("status", "--db", tmp_path / f"{name}.db", "--daily-quota", QUOTA, *ledger),
        env=sim_env(sim, **env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )


@pytest.mark.slow
def test_two_cli_harvests_on_one_sqlite_ledger_send_the_quota_together(
    sim_in_thread: Simulator, tmp_path: Path
) -> None:
    sim = sim_in_thread
    ledger = tmp_path / "ledger.db"
    # One names the ledger with --ledger, the other through TIKTOK_LEDGER.
    done = harvest_both(
        sim,
        tmp_path,
        {"a": ["--ledger", str(ledger)], "b": []},
        {"b": {"TIKTOK_LEDGER": str(ledger)}},
    )
    check_both_stopped_on_the_shared_quota(sim, done)
    day = dt.datetime.now(dt.UTC).date().isoformat()
    shown = status(sim, tmp_path, "a", "--ledger", str(ledger))
    assert shown.returncode == 0, shown.stderr
    assert (
        f"requests  {sent_by(sim, 'a')} spent today by this store ({day} UTC);"
        f" {QUOTA} by the organisation, 0 left of {QUOTA}"
    ) in shown.stdout
    assert f"ledger    {ledger} (shared)" in shown.stdout
    for name in USERS:
        assert f"{sent_by(sim, name):>11,}  " in shown.stdout
        assert str(tmp_path / f"{name}.db") in shown.stdout
    # Without the ledger, status shows the store's own day, as before.
    alone = status(sim, tmp_path, "b")
    assert f"requests  {sent_by(sim, 'b')} spent today ({day} UTC)" in alone.stdout


@pytest.mark.slow
def test_two_cli_harvests_on_one_postgres_ledger_never_show_its_password(
    sim_in_thread: Simulator, tmp_path: Path, postgres_url: str, postgres_server: PostgresServer
) -> None:
    sim = sim_in_thread
    password = postgres_server.password
    bare = postgres_url.replace(f":{password}@", "@")
    assert bare != postgres_url
    # One carries the password in the URL, the other gets it from PGPASSWORD (libpq).
    done = harvest_both(
        sim,
        tmp_path,
        {"a": ["--ledger", postgres_url], "b": ["--ledger", bare]},
        {"b": {"PGPASSWORD": password}},
    )
    check_both_stopped_on_the_shared_quota(sim, done)
    shown = status(sim, tmp_path, "a", "--ledger", postgres_url)
    assert shown.returncode == 0, shown.stderr
    assert f"{QUOTA} by the organisation, 0 left of {QUOTA}" in shown.stdout
    assert "postgresql://postgres:***@" in shown.stdout
    as_json = status(sim, tmp_path, "a", "--ledger", postgres_url, "--json")
    # A wrong password is refused before any request, in words that do not repeat it.
    before = sim.stats.requests, sim.stats.token_requests
    wrong = postgres_url.replace(password, "Not-The-Passw0rd")
    refused = subprocess.run(
        command("harvest", tmp_path / "a.txt", "--db", tmp_path / "c.db", "--ledger", wrong),
        env=sim_env(sim),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert refused.returncode == 2
    assert "--ledger: cannot connect to the ledger postgresql://postgres:***@" in refused.stderr
    assert "password authentication failed" in refused.stderr
    assert (sim.stats.requests, sim.stats.token_requests) == before
    # Neither password appears in anything a person or a collaborator sees.
    texts = [r.stdout + r.stderr for r in (*done.values(), shown, as_json, refused)]
    files = [path.read_bytes() for path in tmp_path.iterdir() if path.is_file()]
    for secret in (password, "Not-The-Passw0rd"):
        assert all(secret not in text for text in texts)
        assert all(secret.encode() not in data for data in files)
