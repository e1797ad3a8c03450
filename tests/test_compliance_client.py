"""Compliance tasks against the simulator over loopback: create, poll, download, their faults."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from support import FakeTime, make_client

import tiktok_repost_async.compliance
from tiktok_repost_async import (
    MAX_TASK_IDS,
    APIError,
    InvalidFileUploadError,
    ProtocolError,
    QuotaExhaustedError,
    RepostClient,
    ServerError,
    TaskStatus,
)
from tiktok_repost_async._walking import Sleep
from tiktok_repost_async.client import COMPLIANCE_REQUEST
from tiktok_repost_async.retry import RetryPolicy
from tiktok_repost_async.simulator import Simulator
from tiktok_repost_async.simulator._compliance import CREATE_TASK_PATH

# A user whose list loses videos between epoch 0 and 4 (checked in the test that needs it).
USER = "alice_n250"
OTHER = "bob_n120"
NEVER_SERVED = 1_000_000_000_000_000_007


class NoSleep:
    """Record the waits a client asks for, without waiting."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        await asyncio.sleep(0)


def client_of(sim: Simulator, **kwargs: Any) -> RepostClient:
    kwargs.setdefault("retry", RetryPolicy(max_attempts=4))
    kwargs.setdefault("sleep", NoSleep())
    return make_client(sim, **kwargs)


def truth(sim: Simulator, username: str, epoch: int) -> set[int]:
    """Return the ids of a user's videos at an epoch, from the simulator's own ground truth."""
    return {int(video["id"]) for video in sim.ground_truth(username, epoch=epoch)}


async def harvested(client: RepostClient, *usernames: str) -> list[int]:
    return [video.id for name in usernames async for video in client.reposted_videos(name)]


async def test_create_poll_download_finds_what_still_exists(sim: Simulator) -> None:
    sim.config.task_processing_polls = 2
    async with client_of(sim) as client:
        stored = await harvested(client, USER, OTHER)
        removed = set(sim.changes(USER, 0, 4)["removed"]) | set(sim.changes(OTHER, 0, 4)["removed"])
        assert removed, "the users must lose videos by epoch 4 for this test to mean anything"
        sim.config.epoch = 4
        sent = [*stored, NEVER_SERVED]
        task_id = await client.create_compliance_task(sent)
        statuses = [await client.compliance_task_status(task_id) for _ in range(3)]
        valid = await client.download_compliance_task(task_id)
    assert statuses == [TaskStatus.PROCESSING, TaskStatus.PROCESSING, TaskStatus.COMPLETED]
    expected = (truth(sim, USER, 4) | truth(sim, OTHER, 4)) & set(sent)
    assert valid == expected
    assert removed <= set(stored) - valid
    assert NEVER_SERVED not in valid
    # Each call is one request, billed like a research request (3 + 3 pages, 5 compliance).
    assert sim.stats.compliance_requests == 5
    assert sim.stats.quota_used == sim.stats.requests + 5
    assert client.stats.requests == sim.stats.requests + 5


async def test_a_task_checks_the_epoch_it_was_created_in(sim: Simulator) -> None:
    async with client_of(sim) as client:
        stored = await harvested(client, USER)
        before = await client.create_compliance_task(stored)
        sim.config.epoch = 4
        after = await client.create_compliance_task(stored)
        assert await client.download_compliance_task(before) == set(stored)
        assert await client.download_compliance_task(after) == truth(sim, USER, 4) & set(stored)
    assert sim.task(before).epoch == 0
    assert sim.task(after).epoch == 4


async def test_task_ids_above_int64_round_trip_exactly(sim: Simulator) -> None:
    async with client_of(sim) as client:
        ids = await harvested(client, "hugeid_n30")
        task_ids = [await client.create_compliance_task(ids) for _ in range(5)]
        for task_id in task_ids:
            assert task_id > 2**63 - 1
            assert float(task_id) != task_id  # a double would lose it
            assert await client.compliance_task_status(task_id) is TaskStatus.COMPLETED
            assert await client.download_compliance_task(str(task_id)) == set(ids)
    assert [task.task_id for task in sim.tasks] == task_ids
    assert sim.stats.compliance_by_status == {200: 15}


async def test_a_task_id_sent_as_a_string_is_read_exactly(sim: Simulator) -> None:
    sim.config.string_ids = True
    async with client_of(sim) as client:
        ids = await harvested(client, USER)
        task_id = await client.create_compliance_task(map(str, ids))
        assert isinstance(task_id, int)
        assert task_id == sim.tasks[0].task_id
        assert await client.download_compliance_task(task_id) == set(ids)


async def test_a_failed_task_says_so_and_has_nothing_to_download(sim: Simulator) -> None:
    sim.fail_tasks()
    async with client_of(sim) as client:
        task_id = await client.create_compliance_task([1, 2, 3])
        assert await client.compliance_task_status(task_id) is TaskStatus.FAILED
        with pytest.raises(APIError, match="failed") as caught:
            await client.download_compliance_task(task_id)
        assert caught.value.status == 400
        # The next task is served as ever.
        again = await client.create_compliance_task([1, 2, 3])
        assert await client.compliance_task_status(again) is TaskStatus.COMPLETED
    # Refused once, not retried.
    assert sim.stats.compliance_by_status == {200: 4, 400: 1}


async def test_a_download_before_completion_is_refused_once(sim: Simulator) -> None:
    sim.config.task_processing_seconds = 3600.0
    async with client_of(sim) as client:
        task_id = await client.create_compliance_task([1])
        assert await client.compliance_task_status(task_id) is TaskStatus.PROCESSING
        with pytest.raises(APIError, match="still processing"):
            await client.download_compliance_task(task_id)
    assert sim.stats.compliance_requests == 3


async def test_more_than_ten_thousand_ids_are_refused_before_any_request(sim: Simulator) -> None:
    async with client_of(sim) as client:
        with pytest.raises(ValueError, match="at most 10000"):
            await client.create_compliance_task(range(1, MAX_TASK_IDS + 2))
        with pytest.raises(ValueError, match="repeated"):
            await client.create_compliance_task([5, 5])
        with pytest.raises(ValueError, match="digits"):
            await client.compliance_task_status("12x")
    assert sim.stats.compliance_requests == 0
    assert sim.stats.token_requests == 0


async def test_the_simulator_refuses_more_than_ten_thousand_ids(
    sim: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Past the client's own check, as a client without it would send them: refused, not retried.
    monkeypatch.setattr(tiktok_repost_async.compliance, "MAX_TASK_IDS", 20_000)
    async with client_of(sim) as client:
        with pytest.raises(InvalidFileUploadError, match="at most 10000"):
            await client._create_compliance_task(tuple(range(1, MAX_TASK_IDS + 2)))
        assert await client._create_compliance_task(tuple(range(1, MAX_TASK_IDS + 1))) > 0
    assert sim.stats.compliance_by_status == {400: 1, 200: 1}
    assert sim.stats.tasks_created == 1


@pytest.mark.parametrize(
    ("content_type", "body", "words"),
    [
        # The documentation's curl: a JSON content type.
        ("application/json", b'{"file_data": "1\\n2\\n", "category": "video"}', "multipart"),
        ("multipart/form-data; boundary=x", b"--x\r\nnot a form", "Malformed"),
    ],
)
async def test_a_malformed_upload_is_invalid_file_upload(
    sim: Simulator, content_type: str, body: bytes, words: str
) -> None:
    status, answer = await _raw_create(sim, body, content_type)
    assert status == 400
    assert answer["error"]["code"] == "invalid_file_upload"
    assert words in answer["error"]["message"]


@pytest.mark.parametrize(
    ("content", "category", "code"),
    [
        (b"123\nabc\n", "video", "invalid_file_upload"),
        (b"\n\n", "video", "invalid_file_upload"),
        (b"\xff\xfe1\n", "video", "invalid_file_upload"),
        (b"123\n", "videos", "invalid_params"),
        (b"123\n", None, "invalid_params"),
    ],
)
async def test_a_bad_file_or_category_is_refused(
    sim: Simulator, content: bytes, category: str | None, code: str
) -> None:
    form = aiohttp.FormData()
    form.add_field("file_data", content, filename="ids.txt", content_type="text/plain")
    if category is not None:
        form.add_field("category", category)
    async with aiohttp.ClientSession() as session:
        token = await _token(session, sim)
        async with session.post(
            sim.base_url + CREATE_TASK_PATH, data=form, headers={"Authorization": token}
        ) as response:
            answer = await response.json()
    assert response.status == 400
    assert answer["error"]["code"] == code
    assert sim.stats.tasks_created == 0


async def test_server_errors_and_429s_are_retried_within_bounds(sim: Simulator) -> None:
    sleep = NoSleep()
    sim.script_compliance(["server_error", "bad_gateway", "rate_limit"])
    async with client_of(sim, sleep=sleep) as client:
        task_id = await client.create_compliance_task([1, 2])
        assert client.stats.retries == 3
        sim.script_compliance(["gateway_timeout"] * 4)
        with pytest.raises(ServerError):
            await client.compliance_task_status(task_id)
        assert client.stats.retries == 6
    assert sim.stats.compliance_requests == 4 + 4
    assert sim.stats.tasks_created == 1
    # Retry-After (1 s) honoured for the 429; backoff for the rest.
    assert sleep.waits[2] == 1.0


async def test_the_daily_quota_429_is_not_retried(sim: Simulator) -> None:
    sim.script_compliance(["quota"])
    async with client_of(sim) as client:
        with pytest.raises(QuotaExhaustedError):
            await client.create_compliance_task([1])
    assert sim.stats.compliance_requests == 1


async def test_a_stale_token_is_refreshed_and_the_call_resent(sim: Simulator) -> None:
    async with client_of(sim) as client:
        task_id = await client.create_compliance_task([1])
        sim.expire_tokens()
        assert await client.compliance_task_status(task_id) is TaskStatus.COMPLETED
        sim.script_compliance(["token_invalid"])
        assert await client.download_compliance_task(task_id) == frozenset()
    assert sim.stats.tokens_issued == 3
    assert sim.stats.compliance_by_status == {200: 3, 401: 2}


async def test_a_cut_answer_to_create_is_retried_and_makes_a_second_task(sim: Simulator) -> None:
    sim.script_compliance(["truncated"])
    async with client_of(sim) as client:
        task_id = await client.create_compliance_task([1])
    # Create is not idempotent: the first task was made, its answer lost.
    assert [task.task_id for task in sim.tasks][1] == task_id
    assert len(sim.tasks) == 2


@pytest.mark.parametrize("form", ["html", "json"])
async def test_a_download_that_is_not_a_file_is_an_error_never_an_empty_set(
    sim: Simulator, form: str
) -> None:
    async with client_of(sim) as client:
        ids = await harvested(client, USER)
        task_id = await client.create_compliance_task(ids)
        sim.config.download_format = form  # type: ignore[assignment]
        with pytest.raises(ProtocolError):
            await client.download_compliance_task(task_id)
        # Retried (a garbled answer may pass), within the attempts, then raised.
        assert sim.stats.compliance_by_path["/v2/research/validation_task/download/"] == 4


class RecordingGate:
    """A gate that admits everything and records what it is asked."""

    def __init__(self, refuse_first_take: bool = False) -> None:
        self.calls: list[tuple[str, str]] = []
        self.refuse = refuse_first_take

    async def admit(self, username: str) -> None:
        self.calls.append(("admit", username))

    async def take(self, username: str) -> bool:
        self.calls.append(("take", username))
        if self.refuse:
            self.refuse = False
            return False
        return True

    async def refund(self, username: str) -> None:
        self.calls.append(("refund", username))

    async def pause(self, seconds: float, sleep: Sleep) -> None:
        self.calls.append(("pause", f"{seconds:g}"))
        await sleep(seconds)

    def answered(self, reached: bool, username: str | None = None) -> None:
        self.calls.append(("answered", str(reached)))

    def rate_limited(self, username: str, error: Any) -> bool:  # pragma: no cover
        raise AssertionError("a compliance call leaves the 429 verdict out")

    def not_rate_limited(self) -> None:  # pragma: no cover
        raise AssertionError("not used by compliance calls")

    def served(self) -> None:  # pragma: no cover
        raise AssertionError("not used by compliance calls")

    def unhealthy(self, username: str, error: Any) -> bool:  # pragma: no cover
        raise AssertionError("not used by compliance calls")

    def healthy(self, username: str | None = None) -> None:  # pragma: no cover
        raise AssertionError("not used by compliance calls")

    def limit_held(self) -> bool:  # pragma: no cover
        raise AssertionError("not used by compliance calls")

    def guilty(self, username: str) -> None:  # pragma: no cover
        raise AssertionError("not used by compliance calls")


async def test_a_gate_books_every_compliance_request(sim: Simulator) -> None:
    gate = RecordingGate(refuse_first_take=True)
    sim.script_compliance(["server_error"])
    async with client_of(sim) as client:
        task_id = await client._create_compliance_task((1, 2), "video", gate)
        assert await client._compliance_task_status(task_id, gate) is TaskStatus.COMPLETED
    name = COMPLIANCE_REQUEST
    assert gate.calls[:5] == [
        ("admit", name),
        ("take", name),  # refused: back to admit
        ("admit", name),
        ("take", name),
        ("answered", "True"),  # the 500
    ]
    assert [call for call, _ in gate.calls[5:]] == [
        "pause",
        "admit",
        "take",
        "answered",
        "admit",
        "take",
        "answered",
    ]
    assert ("refund", name) not in gate.calls


async def test_a_failed_token_fetch_books_nothing(sim: Simulator) -> None:
    gate = RecordingGate()
    sim.script_token(["server_error"])
    # The token manager shares a failure for a pause on its clock: this one moves with sleeps.
    async with make_client(sim, clock=FakeTime()) as client:
        await client._create_compliance_task((1,), "video", gate)
    # The token is fetched before the limiter and before `take`: its failure books no request.
    name = COMPLIANCE_REQUEST
    assert gate.calls == [
        ("admit", name),
        ("pause", "1"),
        ("admit", name),
        ("take", name),
        ("answered", "True"),
    ]
    assert sim.stats.compliance_requests == 1


async def _token(session: aiohttp.ClientSession, sim: Simulator) -> str:
    form = {
        "client_key": sim.client_key,
        "client_secret": sim.client_secret,
        "grant_type": "client_credentials",
    }
    async with session.post(sim.base_url + "/v2/oauth/token/", data=form) as response:
        answer = await response.json()
    return "Bearer " + answer["access_token"]


async def _raw_create(sim: Simulator, body: bytes, content_type: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session:
        headers = {"Authorization": await _token(session, sim), "Content-Type": content_type}
        async with session.post(
            sim.base_url + CREATE_TASK_PATH, data=body, headers=headers
        ) as response:
            return response.status, await response.json()


def test_the_command_line_sets_the_compliance_knobs() -> None:
    import argparse

    from tiktok_repost_async.simulator import Fault, add_simulator_arguments, config_from_args

    parser = argparse.ArgumentParser()
    add_simulator_arguments(parser)
    args = parser.parse_args(
        [
            "--task-processing-seconds=30",
            "--task-processing-polls=2",
            "--task-failure-rate=0.1",
            "--compliance-fault=server_error=0.2",
            "--download-format=html",
        ]
    )
    config = config_from_args(args)
    assert config.task_processing_seconds == 30.0
    assert config.task_processing_polls == 2
    assert config.task_failure_rate == 0.1
    assert config.compliance_faults == {Fault.SERVER_ERROR: 0.2}
    assert config.download_format == "html"
    with pytest.raises(ValueError, match="not a fault of this endpoint"):
        Simulator(compliance_faults={Fault.SILENT_EMPTY: 0.1})
