"""Fetch, cache and refresh the client-credentials access token, one refresh at a time."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping

from .protocol import Request, build_token_request, parse_token_response

__all__ = ["Credentials", "TokenManager"]

logger = logging.getLogger("tiktok_repost_async.auth")

Send = Callable[[Request], Awaitable[tuple[int, Mapping[str, str], bytes]]]

ENV_CLIENT_KEY = "TIKTOK_CLIENT_KEY"
ENV_CLIENT_SECRET = "TIKTOK_CLIENT_SECRET"


class Credentials:
    """Hold a client key and secret; the secret never shows in a repr or a message."""

    __slots__ = ("_secret", "client_key")

    def __init__(self, client_key: str, client_secret: str) -> None:
        for name, value in (("client_key", client_key), ("client_secret", client_secret)):
            if not isinstance(value, str):
                raise TypeError(f"{name} must be a str, not {type(value).__name__}")
            if not value.strip():
                raise ValueError(f"{name} is empty")
        self.client_key = client_key.strip()
        self._secret = client_secret.strip()

    @classmethod
    def resolve(cls, client_key: str | None, client_secret: str | None) -> Credentials:
        """Take credentials from the arguments, else from the environment."""
        key = client_key if client_key is not None else os.environ.get(ENV_CLIENT_KEY)
        secret = client_secret if client_secret is not None else os.environ.get(ENV_CLIENT_SECRET)
        missing = [
            env
            for value, env in ((key, ENV_CLIENT_KEY), (secret, ENV_CLIENT_SECRET))
            if value is None or not value.strip()
        ]
        if missing:
            raise ValueError(
                "missing credentials: pass client_key= and client_secret=, or set "
                + " and ".join(missing)
            )
        return cls(key or "", secret or "")

    @property
    def client_secret(self) -> str:
        """Return the secret, for the token request only."""
        return self._secret

    def __repr__(self) -> str:
        return f"Credentials(client_key={self.client_key!r}, client_secret='***')"


class TokenManager:
    """Keep one access token for a whole pool, refreshed early, on demand, and once at a time."""

    __slots__ = (
        "_clock",
        "_credentials",
        "_expires_at",
        "_lock",
        "_token",
        "base_url",
        "refresh_margin",
        "refreshes",
    )

    def __init__(
        self,
        credentials: Credentials,
        *,
        base_url: str,
        refresh_margin: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._credentials = credentials
        self.base_url = base_url
        # Refresh this long before the server's expiry, so a request in flight never carries a
        # token that dies on the way.
        self.refresh_margin = refresh_margin
        self._clock = clock
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = asyncio.Lock()
        self.refreshes = 0

    def __repr__(self) -> str:
        state = "valid" if self._fresh() else "none"
        return f"TokenManager(client_key={self._credentials.client_key!r}, token={state})"

    def _fresh(self) -> bool:
        return self._token is not None and self._clock() < self._expires_at

    async def token(self, send: Send) -> str:
        """Return a valid access token, fetching a new one when none is fresh."""
        token = self._token
        if token is not None and self._clock() < self._expires_at:
            return token
        async with self._lock:
            # Whoever waited on the lock finds the token that the first waiter fetched.
            token = self._token
            if token is not None and self._clock() < self._expires_at:
                return token
            return await self._refresh(send)

    def invalidate(self, stale: str) -> None:
        """Drop ``stale`` if it is still the current token (the API refused it)."""
        # Comparing with the refused token keeps fifty workers that saw one 401 from throwing
        # away the fresh token that the first of them already fetched.
        if self._token == stale:
            self._token = None
            self._expires_at = 0.0

    async def _refresh(self, send: Send) -> str:
        request = build_token_request(
            self._credentials.client_key, self._credentials.client_secret, self.base_url
        )
        started = self._clock()
        status, headers, body = await send(request)
        answer = parse_token_response(status, headers, body)
        lifetime = float(answer.expires_in)
        margin = min(self.refresh_margin, lifetime / 2)
        self._token = answer.access_token
        self._expires_at = started + lifetime - margin
        self.refreshes += 1
        logger.debug("fetched an access token valid for %.0f s", lifetime)
        return answer.access_token
