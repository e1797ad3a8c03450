"""`status --check` after the two last-run endings that no later run cures by itself alone."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import run_main
from test_cli import cli_env, write_users

import tiktok_repost_async.gate
from tiktok_repost_async import RetryPolicy
from tiktok_repost_async.simulator import Fault, Simulator

NAMES = [f"chk{i}_n250" for i in range(6)]


def check(db: Path) -> list[str]:
    ran = run_main("status", "--db", db, "--check", env=cli_env())
    lines = [line for line in ran.stderr.splitlines() if line.startswith("needs a person")]
    assert ran.returncode == (1 if lines else 0), ran.stderr
    return lines


def test_a_run_stopped_by_an_api_that_stayed_down_needs_a_person(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The breaker's hour of probes, shrunk to a blink: the outage outlasts it.
    monkeypatch.setattr(tiktok_repost_async.gate, "BREAKER_FIRST_WAIT", 0.01)
    monkeypatch.setattr(tiktok_repost_async.gate, "BREAKER_MAX_WAIT", 0.02)
    monkeypatch.setattr(tiktok_repost_async.gate, "BREAKER_GIVE_UP", 0.2)
    monkeypatch.setattr(RetryPolicy, "delay", lambda self, attempt, error=None: 0.0)
    db = tmp_path / "h.db"
    users = write_users(tmp_path / "u.txt", NAMES)
    sim = Simulator()
    with sim.run_in_thread() as base_url:
        base = ["harvest", users, "--db", db, "--base-url", base_url, "--rate", 500]
        sim.config.persistent_fault = Fault.SERVER_ERROR
        down = run_main(*base, env=cli_env())
        assert down.returncode == 75, down.stderr
        assert "stopped: the API answered nothing but outage failures" in down.stderr
        assert check(db) == [
            "needs a person: run 1 stopped: unhealthy: the API answered nothing but outage"
            " failures for an hour"
        ]
        # Once the API is back, the same command cures it, and the check falls quiet.
        sim.config.persistent_fault = None
        assert run_main(*base, env=cli_env()).returncode == 0
    assert check(db) == []


def test_a_run_ended_by_an_error_needs_a_person(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    users = write_users(tmp_path / "u.txt", NAMES)
    sim = Simulator()
    with sim.run_in_thread() as base_url:
        base = ["harvest", users, "--db", db, "--base-url", base_url, "--rate", 500]
        # The API renames its list: no version of ours reads it, so a person must look.
        sim.config.unknown_list_key = "videos"
        drift = run_main(*base, env=cli_env())
        assert drift.returncode == 2, drift.stderr
        assert check(db) == ["needs a person: run 1 ended in an error: UnknownListKeyError"]


def test_a_scheduled_run_refused_its_credentials_needs_a_person_once(tmp_path: Path) -> None:
    # Research API access expires: an hourly timer's runs are refused before they begin, and the
    # store must say so to the monitoring job (nothing else in it would, until a round is late).
    db = tmp_path / "h.db"
    users = write_users(tmp_path / "u.txt", NAMES[:2])
    sim = Simulator()
    with sim.run_in_thread() as base_url:
        base = ["harvest", users, "--db", db, "--base-url", base_url, "--rate", 500]
        assert run_main(*base, env=cli_env()).returncode == 0
        requests = sim.stats.requests
        wrong = {**cli_env(), "TIKTOK_CLIENT_SECRET": "revoked-secret"}
        for _ in range(3):
            refused = run_main(*base, "--new-round", env=wrong)
            assert refused.returncode == 2, refused.stderr
            assert "the API refused the credentials" in refused.stderr
        assert sim.stats.requests == requests  # no research request was spent
        assert check(db) == [
            "needs a person: run 2 refused: authentication: the API refused the credentials (or"
            " the base URL is not the API's) before the run began; no later run can succeed"
            " until they are fixed"
        ]
        status = run_main("status", "--db", db, env=cli_env()).stdout
        assert status.count("refused: authentication") == 1  # one row for three refusals
        assert "revoked-secret" not in status
        # Fixed: the next run goes on, and the check falls quiet.
        assert run_main(*base, "--new-round", env=cli_env()).returncode == 0
    assert check(db) == []
