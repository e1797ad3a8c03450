"""Errors no retry can cure end the run at once, naming the cause, after a request or so."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import make_client as _make_client

from tiktok_repost_async import AuthError, InvalidFieldsError, RepostClient, UserDone
from tiktok_repost_async.cli import EXIT_USAGE
from tiktok_repost_async.harvester import harvest
from tiktok_repost_async.protocol import parse_reposted_response
from tiktok_repost_async.retry import RetryPolicy
from tiktok_repost_async.simulator import TEST_CLIENT_KEY, TEST_CLIENT_SECRET, Fault, Simulator


def make_client(sim: Simulator, **kwargs: object) -> RepostClient:
    return _make_client(sim, **{"concurrency": 8, **kwargs})


NAMES = [f"user{i}_n250" for i in range(40)]


def test_an_invalid_fields_answer_is_typed_with_its_names_and_never_retried() -> None:
    body = (
        b'{"data":{},"error":{"code":"invalid_params","message":"Invalid fields: video_tag,'
        b'region_code","log_id":"L1"}}'
    )
    with pytest.raises(InvalidFieldsError) as caught:
        parse_reposted_response(400, {}, body, username="someone")
    error = caught.value
    assert error.fields == ("video_tag", "region_code")
    assert not RetryPolicy().is_retryable(error)
    assert pickle.loads(pickle.dumps(error)).fields == error.fields


async def test_a_rejected_field_ends_a_walk_of_many_after_one_request(sim: Simulator) -> None:
    sim.config.rejected_fields = frozenset({"video_tag"})
    ends: list[UserDone] = []

    async def walk(client: RepostClient) -> None:
        async for event in client.walk_many(NAMES):
            if isinstance(event, UserDone):
                ends.append(event)

    async with make_client(sim) as client:
        with pytest.raises(InvalidFieldsError, match="video_tag"):
            await walk(client)
    assert ends == []
    assert sim.stats.requests == 1


async def test_a_missing_scope_ends_a_harvest_after_one_request(
    sim: Simulator, tmp_path: Path
) -> None:
    sim.config.auth_failure = "scope_permission_missed"
    async with make_client(sim) as client:
        with pytest.raises(AuthError, match="scope"):
            async for _ in harvest(client, NAMES, store=tmp_path / "h.db"):
                pass
    assert sim.stats.requests == 1


async def test_a_dropped_first_request_hands_the_trial_on(sim: Simulator) -> None:
    # The trial request that gets no answer lets another user's go; nobody waits for ever, and
    # a user whose every attempt went unanswered hands it on when it ends.
    sim.script("a_n10", [Fault.DROP, Fault.DROP])
    async with make_client(sim, retry=RetryPolicy(max_attempts=2, base_delay=0)) as client:
        seen = [e async for e in client.walk_many(["a_n10", "b_n10", "c_n10"])]
    states = {e.username: e.state for e in seen if isinstance(e, UserDone)}
    assert states == {"a_n10": "failed", "b_n10": "done", "c_n10": "done"}


@pytest.fixture
def threaded_sim() -> Iterator[Simulator]:
    simulator = Simulator()
    with simulator.run_in_thread():
        yield simulator


def test_the_cli_names_the_rejected_field_and_exits_2(
    threaded_sim: Simulator, tmp_path: Path
) -> None:
    threaded_sim.config.rejected_fields = frozenset({"region_code"})
    users = tmp_path / "users.txt"
    users.write_text("\n".join(NAMES) + "\n")
    env = {**os.environ, "TIKTOK_CLIENT_KEY": TEST_CLIENT_KEY}
    env["TIKTOK_CLIENT_SECRET"] = TEST_CLIENT_SECRET
    result = subprocess.run(
        [sys.executable, "-m", "tiktok_repost_async", "harvest", str(users), "--db",
         str(tmp_path / "h.db"), "--base-url", threaded_sim.base_url, "--no-progress"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == EXIT_USAGE, result.stderr
    message = result.stderr.strip().splitlines()[-1]
    assert "region_code" in message
    assert "--fields" in message
    assert threaded_sim.stats.requests <= 5
