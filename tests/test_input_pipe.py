"""Names from a slow pipe: each is fetched as it comes, and a stop ends the run with it open."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tiktok_repost_async.simulator import Simulator


@pytest.fixture
def pipe_sim() -> Iterator[tuple[Simulator, dict[str, str]]]:
    sim = Simulator()
    with sim.run_in_thread() as base_url:
        env = dict(os.environ)
        env.update(
            TIKTOK_CLIENT_KEY=sim.client_key,
            TIKTOK_CLIENT_SECRET=sim.client_secret,
            TIKTOK_API_BASE_URL=str(base_url),
        )
        yield sim, env


def harvest_from_stdin(db: Path, env: dict[str, str], *options: str) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "tiktok_repost_async", "harvest", "-", "--db", str(db)]
    return subprocess.Popen(
        [*command, "--no-progress", "-q", *options],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )


def within(seconds: float, condition: Callable[[], bool]) -> float | None:
    """Return how long ``condition`` took to hold, or None if it did not within ``seconds``."""
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        if condition():
            return time.monotonic() - start
        time.sleep(0.01)
    return None


def test_ten_names_over_five_seconds_each_is_fetched_as_it_comes(
    pipe_sim: tuple[Simulator, dict[str, str]], tmp_path: Path
) -> None:
    sim, env = pipe_sim
    child = harvest_from_stdin(tmp_path / "h.db", env)
    assert child.stdin is not None
    try:
        # The command checks the credentials first; the clock starts once it is ready.
        assert within(30, lambda: sim.stats.tokens_issued >= 1) is not None
        for i in range(10):
            name = f"pipe{i}_n5"
            child.stdin.write(f"{name}\n".encode())
            child.stdin.flush()
            took = within(1.0, lambda name=name: sim.stats.by_user[name] >= 1)  # type: ignore[misc]
            assert took is not None, f"{name} was not requested within a second"
            time.sleep(max(0.5 - took, 0.0))
        child.stdin.close()
        assert child.wait(timeout=30) == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert sum(sim.stats.by_user.values()) == 10


def test_a_quota_stop_ends_the_run_while_standard_input_stays_open(
    pipe_sim: tuple[Simulator, dict[str, str]], tmp_path: Path
) -> None:
    sim, env = pipe_sim
    child = harvest_from_stdin(tmp_path / "h.db", env, "--daily-quota", "2")
    assert child.stdin is not None
    try:
        assert within(30, lambda: sim.stats.tokens_issued >= 1) is not None
        child.stdin.write(b"qa_n5\nqb_n5\nqc_n5\n")
        child.stdin.flush()
        # Standard input stays open: the run ends on the quota, not on end of input.
        assert within(5, lambda: child.poll() is not None) is not None
        assert child.returncode == 75
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        child.stdin.close()
    assert sim.stats.requests == 2
