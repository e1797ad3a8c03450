"""Fetch, cache and refresh the client-credentials access token, one refresh at a time.

One refresh is in flight at most, and every request that needs a token meanwhile waits for that
one: its token, or its failure, which all of them share (fifty workers do not try the token
endpoint in turn). A failure stays shared for a growing pause after it (the retry policy's
exponential ceiling, or the endpoint's Retry-After): a worker that comes back from its backoff,
or through the rate limiter, a little later than the others gets the same failure instead of a
refresh of its own. The first call after the pause starts a new refresh. So while the token
endpoint fails it sees one request per pause, however many workers wait, and each worker's
retries stay within its own bounded attempts.

The waiters of a refresh leave it one at a time, in the order they came, as through a lock: each
resumes only after the one before it has gone on to start its request. Woken all at once, every
worker that waited (all of them, at the start of a walk) would send in the same instant; their
answers would then arrive together, each waiting for the decoding of those ahead of it, and the
workers stay bunched like that for the rest of the walk (about 5% of a walk's wall time at
100 ms latency and concurrency 32: `benchmarks/README.md`, 2026-12-07).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping

from .protocol import Request, build_token_request, parse_token_response
from .retry import RetryPolicy

__all__ = ["Credentials", "TokenManager"]

logger = logging.getLogger("tiktok_repost_async.auth")

Send = Callable[[Request], Awaitable[tuple[int, Mapping[str, str], bytes]]]

ENV_CLIENT_KEY = "TIKTOK_CLIENT_KEY"
ENV_CLIENT_SECRET = "TIKTOK_CLIENT_SECRET"


class Credentials:
    """Hold a client key and secret; the secret never shows in a repr or a message."""

    __slots__ = ("_secret", "client_key")

    def __init__(self, client_key: str, client_secret: str) -> None:
        """Hold the credentials, stripped of surrounding whitespace.

        :param client_key: the research client's key.
        :param client_secret: its secret; kept out of every repr and message.
        :raises ValueError: either is empty.
        """
        for name, value in (("client_key", client_key), ("client_secret", client_secret)):
            if not isinstance(value, str):
                raise TypeError(f"{name} must be a str, not {type(value).__name__}")
            if not value.strip():
                raise ValueError(f"{name} is empty")
        self.client_key = client_key.strip()
        self._secret = client_secret.strip()

    @classmethod
    def resolve(cls, client_key: str | None, client_secret: str | None) -> Credentials:
        """Take credentials from the arguments, else from the environment.

        :param client_key: the key, or None for ``TIKTOK_CLIENT_KEY``.
        :param client_secret: the secret, or None for ``TIKTOK_CLIENT_SECRET``.
        """
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
        "_failure",
        "_failures",
        "_not_before",
        "_refresh_task",
        "_retry",
        "_span",
        "_token",
        "_turn",
        "_waiters",
        "attempts",
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
        retry: RetryPolicy | None = None,
    ) -> None:
        """Make a token manager.

        :param credentials: the client key and secret.
        :param base_url: the API's root URL.
        :param refresh_margin: seconds before the token's expiry at which it is refreshed.
        :param clock: a monotonic clock.
        :param retry: spaces the refreshes after failures (its ``base_delay``, ``max_delay`` and
            ``max_retry_after``); None: `RetryPolicy`'s defaults.
        """
        self._credentials = credentials
        self.base_url = base_url
        # Refresh this long before the server's expiry, so a request in flight never carries a
        # token that dies on the way.
        self.refresh_margin = refresh_margin
        self._clock = clock
        self._retry = retry if retry is not None else RetryPolicy()
        self._token: str | None = None
        self._expires_at = 0.0
        # How long the current token is used for, from its fetch to its refresh.
        self._span = 0.0
        # The refresh in flight, shared by every caller until it ends, how many wait on it, and
        # the lock that lets them leave it one at a time (made with the refresh, in its loop).
        self._refresh_task: asyncio.Future[str] | None = None
        self._turn: asyncio.Lock | None = None
        self._waiters = 0
        # Failed refreshes in a row, the last one's error, and until when it is shared.
        self._failures = 0
        self._failure: Exception | None = None
        self._not_before = 0.0
        #: Tokens fetched.
        self.refreshes = 0
        #: Token requests sent, failed ones included.
        self.attempts = 0

    def __repr__(self) -> str:
        state = "valid" if self._fresh() else "none"
        return f"TokenManager(client_key={self._credentials.client_key!r}, token={state})"

    def _fresh(self, ahead: float = 0.0) -> bool:
        # Looking ahead at most half the token's span, so that a long look never refreshes
        # every time.
        ahead = min(ahead, self._span / 2)
        return self._token is not None and self._clock() + ahead < self._expires_at

    def fresh_for(self, seconds: float) -> bool:
        """Tell whether `token` will return the token at hand, without a request, for ``seconds``.

        :param seconds: how long from now; it counts for at most half the time a token is used
            for.
        """
        return self._fresh(seconds)

    async def token(self, send: Send, *, ahead: float = 0.0) -> str:
        """Return a valid access token, fetching a new one when none is fresh.

        Callers that arrive while a refresh is in flight wait for it and share its outcome, a
        failure included, as do calls during the pause after a failure (`retry_in`); the first
        call after it starts a new refresh.

        :param send: sends the token request.
        :param ahead: refresh a token that goes stale within this many seconds (at most half its
            span) too.
        """
        token = self._token
        if token is not None and self._fresh(ahead):
            return token
        now = self._clock()
        failure = self._failure
        if failure is not None and now < self._not_before:
            # A fresh traceback each time: the one error object is raised in many tasks.
            raise failure.with_traceback(None)
        refresh, turn = self._refresh_task, self._turn
        if refresh is None or turn is None or refresh.done():
            refresh = asyncio.ensure_future(self._refresh(send))
            refresh.add_done_callback(self._refreshed)
            turn = asyncio.Lock()
            self._refresh_task, self._turn = refresh, turn
        self._waiters += 1
        try:
            # One waiter at a time (see the module's docstring): the lock wakes the next waiter
            # in a later turn of the loop, after this one has gone on to start its request. A
            # shared failure leaves the same way, each waiter raising it in its turn.
            async with turn:
                # Shielded: one waiter cancelled (its walk stopped) must not fail the others.
                return await asyncio.shield(refresh)
        finally:
            self._waiters -= 1
            if self._waiters == 0 and not refresh.done():
                # Nobody waits for it any more: a closed walk leaves no task behind.
                refresh.cancel()

    def _refreshed(self, refresh: asyncio.Future[str]) -> None:
        if self._refresh_task is refresh:
            self._refresh_task = self._turn = None
        if not refresh.cancelled():
            # Retrieved here, so that a failure nobody awaited any more is not reported as lost.
            refresh.exception()

    def retry_in(self) -> float:
        """Return the seconds until the next refresh may go out (0 unless the last one failed)."""
        return max(self._not_before - self._clock(), 0.0)

    def invalidate(self, stale: str) -> None:
        """Drop ``stale`` if it is still the current token (the API refused it).

        :param stale: the token the API refused.
        """
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
        self.attempts += 1
        try:
            status, headers, body = await send(request)
            answer = parse_token_response(status, headers, body)
        except Exception as error:
            self._failures += 1
            self._failure = error
            self._not_before = self._clock() + self._pause(error)
            raise
        self._failures = 0
        self._failure = None
        self._not_before = 0.0
        lifetime = float(answer.expires_in)
        margin = min(self.refresh_margin, lifetime / 2)
        self._token = answer.access_token
        self._expires_at = started + lifetime - margin
        self._span = lifetime - margin
        self.refreshes += 1
        logger.debug("fetched an access token valid for %.0f s", lifetime)
        return answer.access_token

    def _pause(self, error: BaseException) -> float:
        # The ceiling of the retry policy's backoff, without its jitter: every worker that shared
        # the failure waits exactly this long (see `RepostClient._fetch_page`).
        return self._retry.ceiling(self._failures, error)
