"""Retry classification and backoff, and the token manager's single flight, without any socket."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Mapping

import msgspec
import pytest

from tiktok_repost_async import (
    APIError,
    AuthError,
    CertificateError,
    Credentials,
    InvalidCursorError,
    ProtocolError,
    QuotaExhaustedError,
    RateLimitError,
    RetryPolicy,
    ServerError,
    TokenExpiredError,
    TransportError,
    UserNotFoundError,
    UserUnavailableError,
)
from tiktok_repost_async.auth import TokenManager
from tiktok_repost_async.protocol import Request


@pytest.mark.parametrize(
    "error",
    [
        RateLimitError("slow down"),
        ServerError("boom", status=500),
        ServerError("<html>", status=504),
        TransportError("reset"),
        ProtocolError("cut short", status=200),
        InvalidCursorError("Invalid count or cursor", status=400),
        TokenExpiredError("expired", status=401),
    ],
)
def test_transient_failures_are_retryable(error: Exception) -> None:
    assert RetryPolicy().is_retryable(error)


@pytest.mark.parametrize(
    "error",
    [
        QuotaExhaustedError("daily quota"),
        CertificateError("self-signed certificate"),
        UserNotFoundError("cannot find the user", status=400),
        UserUnavailableError("private", status=400),
        AuthError("scope_not_authorized", status=401),
        APIError("invalid_params", status=400),
        ValueError("not ours"),
        RuntimeError("bug"),
    ],
)
def test_permanent_failures_are_not_retried(error: Exception) -> None:
    assert not RetryPolicy().is_retryable(error)


def test_full_jitter_stays_under_the_exponential_ceiling() -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=8.0, rng=random.Random(7))
    for attempt in range(1, 12):
        ceiling = min(8.0, 0.5 * 2 ** (attempt - 1))
        waits = [policy.delay(attempt, ServerError("x")) for _ in range(200)]
        assert all(0 <= w <= ceiling for w in waits)
        # Jitter, not a fixed step: the waits spread over the whole range.
        assert max(waits) - min(waits) > ceiling / 2


def test_retry_after_wins_and_is_capped() -> None:
    policy = RetryPolicy(max_retry_after=60)
    assert policy.delay(1, RateLimitError("x", retry_after=12.5)) == 12.5
    assert policy.delay(1, RateLimitError("x", retry_after=10_000)) == 60
    assert policy.delay(1, TokenExpiredError("x")) == 0


@pytest.mark.parametrize("kwargs", [{"max_attempts": 0}, {"base_delay": -1}])
def test_policy_refuses_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must"):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


class FakeTokenServer:
    """Answer token requests after a pause, counting them."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, request: Request) -> tuple[int, Mapping[str, str], bytes]:
        self.calls += 1
        await asyncio.sleep(0)
        body = {
            "access_token": f"clt.token{self.calls}",
            "expires_in": 7200,
            "token_type": "Bearer",
        }
        return 200, {"Content-Type": "application/json"}, msgspec.json.encode(body)


async def test_fifty_waiters_share_one_refresh() -> None:
    server = FakeTokenServer()
    manager = TokenManager(Credentials("key", "secret"), base_url="http://127.0.0.1:1")
    tokens = await asyncio.gather(*(manager.token(server) for _ in range(50)))
    assert set(tokens) == {"clt.token1"}
    assert server.calls == 1
    # Fifty workers reporting the same refused token cause one new fetch, not fifty.
    for token in tokens:
        manager.invalidate(token)
    tokens = await asyncio.gather(*(manager.token(server) for _ in range(50)))
    assert set(tokens) == {"clt.token2"}
    manager.invalidate("clt.token1")  # a late report about the old token changes nothing
    assert await manager.token(server) == "clt.token2"
    assert server.calls == 2


async def test_token_is_refreshed_before_it_expires() -> None:
    now = [1000.0]
    server = FakeTokenServer()
    manager = TokenManager(
        Credentials("key", "secret"),
        base_url="http://127.0.0.1:1",
        refresh_margin=300,
        clock=lambda: now[0],
    )
    assert await manager.token(server) == "clt.token1"
    now[0] += 7200 - 301
    assert await manager.token(server) == "clt.token1"
    now[0] += 2
    assert await manager.token(server) == "clt.token2"


def test_credentials_hide_the_secret() -> None:
    creds = Credentials("key", "s3cr3t-value")
    assert "s3cr3t-value" not in repr(creds)
    assert creds.client_secret == "s3cr3t-value"
    with pytest.raises(ValueError, match="client_secret"):
        Credentials("key", "  ")
