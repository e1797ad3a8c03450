"""The asyncio client: one shared session, limiter and token for every request."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import math
import os
import urllib.request
import warnings
from collections.abc import AsyncGenerator, AsyncIterable, Callable, Iterable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Self, TypeVar

import aiohttp
import msgspec
from aiolimiter import AsyncLimiter

from ._walking import (
    EMPTY_RUN_POSITIONS,
    MIN_EMPTY_PAGES,
    RequestGate,
    Sleep,
    StepAside,
    WalkTally,
    _report_problems,
    _retyped,
    _token_failure,
    empty_page_bound,
    is_outage,
)
from .auth import Credentials, TokenManager
from .compliance import (
    TaskStatus,
    build_create_task_request,
    build_download_task_request,
    build_task_status_request,
    parse_create_task_response,
    parse_download_task_response,
    parse_task_status_response,
    validate_category,
    validate_task_id,
    validate_video_ids,
)
from .errors import (
    APIError,
    CertificateError,
    ClientClosedError,
    ConnectError,
    QuotaExhaustedError,
    RateLimitError,
    RequestTimeoutError,
    TikTokError,
    TokenExpiredError,
    TransportError,
    WalkStopped,
)
from .models import RepostedVideosPage, Video
from .protocol import (
    DEFAULT_BASE_URL,
    Request,
    build_reposted_request,
    normalize_fields,
    normalize_username,
    parse_reposted_response,
    validate_cursor,
    validate_max_count,
    validate_positive_int,
)
from .retry import RetryPolicy

if TYPE_CHECKING:
    from .engine import WalkEvent

__all__ = [
    "COMPLIANCE_REQUEST",
    "EMPTY_RUN_POSITIONS",
    "ENV_BASE_URL",
    "MIN_EMPTY_PAGES",
    "ClientStats",
    "RepostClient",
    "RequestGate",
    "WalkTally",
    "empty_page_bound",
    "is_outage",
    "make_limiter",
]

logger = logging.getLogger("tiktok_repost_async.client")

_T = TypeVar("_T")


class _Turn:
    """How far one attempt at a request got, for its error handling (see `_take_turn`)."""

    __slots__ = ("booked", "fetching_token", "fresh", "token")

    def __init__(self) -> None:
        # Whether the attempt holds a request booked by the gate and not (yet) sent.
        self.booked = False
        # Whether the failure, if one comes, is the token endpoint's.
        self.fetching_token = False
        # Whether the token was fetched while this request waited for it.
        self.fresh = False
        self.token: str | None = None


#: The name compliance requests go by before a gate (`RequestGate` methods take a username).
COMPLIANCE_REQUEST = "<compliance task>"

ENV_BASE_URL = "TIKTOK_API_BASE_URL"

# TikTok's own wrapper holds itself to 10 requests per second; no faster limit is documented.
DEFAULT_REQUESTS_PER_SECOND = 10.0
DEFAULT_CONCURRENCY = 8
DEFAULT_TIMEOUT = 30.0
#: In a walk, a request's 429s without Retry-After are not charged to its attempts while they
#: number at most this many times ``max_attempts``: the walk's rate is at fault, and adapts.
RATE_LIMITED_FREE = 4


def make_limiter(requests_per_second: float) -> AsyncLimiter:
    """Return a limiter that starts at most ``requests_per_second`` requests in any second.

    :param requests_per_second: the rate, a positive number (a fraction is allowed).
    """
    if isinstance(requests_per_second, bool) or not isinstance(requests_per_second, int | float):
        raise TypeError("requests_per_second must be a number")
    if not math.isfinite(requests_per_second) or requests_per_second <= 0:
        raise ValueError(
            f"requests_per_second must be a positive number, got {requests_per_second}"
        )
    # A leaky bucket of capacity R admits a full bucket at once and then R more within the same
    # second: nearly 2R in one window. A bucket of one spaces requests evenly instead, and a rate
    # kept a hair under R leaves slack for the timing jitter between here and the server, so that
    # even a closed one-second window never holds more than floor(R) requests.
    rate = requests_per_second
    if rate >= 1:
        rate = min(rate * 0.99, math.floor(rate) * 0.995)
    return AsyncLimiter(1, 1.0 / rate)


class ClientStats:
    """Count what a client has sent, so callers can account quota and progress."""

    __slots__ = ("requests", "retries", "statuses")

    def __init__(self) -> None:
        """Start every count at zero."""
        self.requests = 0
        self.retries = 0
        self.statuses: dict[int, int] = {}

    def __repr__(self) -> str:
        return f"ClientStats(requests={self.requests}, retries={self.retries})"


class RepostClient:
    """Fetch reposted videos from the TikTok Research API over one pooled aiohttp session."""

    def __init__(
        self,
        client_key: str | None = None,
        client_secret: str | None = None,
        *,
        base_url: str | None = None,
        fields: Iterable[str] | str | None = None,
        max_count: int = 100,
        requests_per_second: float = DEFAULT_REQUESTS_PER_SECOND,
        concurrency: int = DEFAULT_CONCURRENCY,
        timeout: float = DEFAULT_TIMEOUT,
        session: aiohttp.ClientSession | None = None,
        limiter: AsyncLimiter | None = None,
        retry: RetryPolicy | None = None,
        sleep: Sleep | None = None,
    ) -> None:
        """Make a client; it opens its session on first use or in ``async with``.

        :param client_key: the research client's key (None: ``TIKTOK_CLIENT_KEY``).
        :param client_secret: its secret (None: ``TIKTOK_CLIENT_SECRET``); it never appears in
            a repr, a log line or an error.
        :param base_url: the API's base URL (None: ``TIKTOK_API_BASE_URL``, else TikTok's own);
            a simulator's ``base_url`` in tests.
        :param fields: the video fields to ask for, as names or one comma-separated string
            (None: every documented field).
        :param max_count: videos per request, 1 to 100 (each request costs one of the day's
            quota, whatever its size).
        :param requests_per_second: the most requests started in any one-second window.
        :param concurrency: users walked at once by `walk_many` and a harvest.
        :param timeout: seconds a request may take in all before it fails (and is retried).
        :param session: an aiohttp session of the caller's to use (and leave open); None: the
            client makes and closes its own.
        :param limiter: an ``aiolimiter.AsyncLimiter`` to share with other clients (one shared
            rate); None: one of its own, from ``requests_per_second``.
        :param retry: the retry policy of each request (None: `RetryPolicy`'s defaults).
        :param sleep: the coroutine every wait sleeps on (backoff, quota); tests pass a fake.
        :raises ValueError: an argument is out of range, or credentials are missing.
        """
        # Every argument is checked here, before anything is sent: a typo must not cost quota.
        self._credentials = Credentials.resolve(client_key, client_secret)
        self.base_url = _resolve_base_url(base_url)
        self.fields = normalize_fields(fields)
        self.max_count = validate_max_count(max_count)
        validate_positive_int("concurrency", concurrency)
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0:
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        self.concurrency = concurrency
        self.timeout = float(timeout)
        self.requests_per_second = float(requests_per_second)
        if limiter is None:
            make_limiter(requests_per_second)  # validate now; the real one is made in the loop
        self.retry = retry if retry is not None else RetryPolicy()
        self.stats = ClientStats()
        self._closed = False
        self._sleep: Sleep = sleep if sleep is not None else asyncio.sleep
        self._given_session = session
        self._session: aiohttp.ClientSession | None = session
        self._limiter = limiter
        self._auth = TokenManager(self._credentials, base_url=self.base_url, retry=self.retry)
        self._timeout = aiohttp.ClientTimeout(total=self.timeout)
        # The longest a request waits in the limiter (every worker ahead of it), and a second
        # more: a token must stay fresh that long past the check before it.
        self._queue_time = concurrency / self.requests_per_second + 1.0
        self._proxy: str | None = None

    def __repr__(self) -> str:
        return (
            f"RepostClient(base_url={self.base_url!r}, client_key={self._credentials.client_key!r},"
            f" max_count={self.max_count}, requests_per_second={self.requests_per_second},"
            f" concurrency={self.concurrency})"
        )

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise ClientClosedError(
                "this RepostClient is closed: make a new one (a closed client opens no session)"
            )

    async def open(self) -> None:
        """Create the session and the limiter inside the running event loop."""
        self._check_open()
        if self._limiter is None:
            # A limiter belongs to the loop it first runs in: make it here, not in __init__.
            self._limiter = make_limiter(self.requests_per_second)
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=self.concurrency, limit_per_host=self.concurrency, ttl_dns_cache=300
            )
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=self._timeout, raise_for_status=False
            )
        # Environment proxies (HTTPS_PROXY, NO_PROXY and friends) are how institutions reach
        # out. Looked up once here: aiohttp's trust_env looks them (and ~/.netrc) up again on
        # every request, which cost more than half of the client's CPU time per page.
        self._proxy = _env_proxy(self.base_url)

    async def close(self) -> None:
        """Close the session this client created; a caller's own session stays open.

        A closed client refuses every further request with `ClientClosedError`.
        """
        self._closed = True
        session, self._session = self._session, None
        if session is not None and session is not self._given_session:
            await session.close()

    async def authenticate(self) -> None:
        """Fetch an access token now, so that wrong credentials fail before any research request.

        The token endpoint's own faults (5xx, 429, gateway pages, a dropped connection) are
        retried within the retry policy's ``max_attempts``; refused credentials are not.
        """
        await self.open()
        attempt = 0
        while True:
            attempt += 1
            try:
                await self._auth.token(self._send)
                return
            except TikTokError as caught:
                error = _token_failure(caught)
                if not self.retry.is_retryable(error) or attempt >= self.retry.max_attempts:
                    if error is caught:
                        raise
                    raise error from caught
                # The token manager shares a failure until its pause ends: wait that out.
                wait = self._auth.retry_in()
                logger.warning(
                    "token endpoint: %s; retry %d of %d in %.1f s",
                    error,
                    attempt,
                    self.retry.max_attempts - 1,
                    wait,
                )
                await self._sleep(wait)

    @property
    def token_requests(self) -> int:
        """Return how many token requests this client has sent, failed ones included."""
        return self._auth.attempts

    @property
    def token_refreshes(self) -> int:
        """Return how many access tokens this client has fetched."""
        return self._auth.refreshes

    async def _send(self, request: Request) -> tuple[int, Mapping[str, str], bytes]:
        session = self._session
        if session is None:
            await self.open()
            session = self._session
            assert session is not None
        try:
            async with session.request(
                request.method,
                request.url,
                data=request.body,
                headers=request.headers,
                proxy=self._proxy,
            ) as response:
                body = await response.read()
                return response.status, response.headers, body
        except TimeoutError:
            raise RequestTimeoutError(
                f"no answer within {self.timeout:g} s from {_host(request.url)}"
            ) from None
        except (aiohttp.ClientConnectorCertificateError, aiohttp.ClientSSLError) as exc:
            # A certificate that does not verify will not verify on the next attempt either.
            raise CertificateError(f"{type(exc).__name__}: {exc}") from None
        except aiohttp.ClientConnectorError as exc:
            # Raised while the connection is being made (refused, unreachable, no DNS): the
            # request was never written, so the API never counted it.
            raise ConnectError(f"{type(exc).__name__}: {exc}") from None
        except aiohttp.ClientError as exc:
            # The aiohttp message names the host and the failure, never our headers.
            raise TransportError(f"{type(exc).__name__}: {exc}") from None

    async def _take_turn(
        self, name: str, gate: RequestGate | None, limiter: AsyncLimiter, turn: _Turn
    ) -> str:
        """Pass the gate and the limiter, book the request, and return the token to send it with.

        One order for every request, a page or a compliance call: a request that may not go out
        (a stop, a spent budget) never queues in the limiter, one that waited there is checked
        again before it leaves, and the token is taken last, so that a long wait never sends a
        token that went stale meanwhile. ``turn`` tells the caller's error handling how far it
        got: whether a request is booked and not (yet) sent, and whether a failure is the token
        endpoint's (then the request never left).
        """
        refreshes = self._auth.refreshes
        if gate is not None:
            await gate.admit(name)
        if not self._auth.fresh_for(self._queue_time):
            # A refresh awaited after the limiter would hold every request that passes it
            # meanwhile, and let them all go at once when the token comes: faster than the
            # rate. So a token that would go stale while this request waits in the limiter is
            # refreshed before it (one request for every waiter), and taken again, from the
            # cache, below.
            turn.fetching_token = True
            await self._auth.token(self._send, ahead=self._queue_time)
            turn.fetching_token = False
        await limiter.acquire()
        if gate is not None:
            while not await gate.take(name):
                await gate.admit(name)
                await limiter.acquire()
        # Inside the caller's retry: a token endpoint that fails for a moment (a 5xx, a dropped
        # connection) is retried like the request, within the same bounded attempts.
        turn.booked = gate is not None
        turn.fetching_token = True
        turn.token = token = await self._auth.token(self._send)
        # Fetched while this request waited for it: a 401 on it is not staleness.
        turn.fresh = self._auth.refreshes != refreshes
        turn.fetching_token = False
        return token

    async def fetch_page(self, username: str, cursor: int = 0) -> RepostedVideosPage:
        """Fetch one page of a user's reposted videos, retrying what may succeed on a second try.

        :param username: the user's TikTok name (a leading ``@`` and surrounding spaces are
            dropped; a bad name raises before any request).
        :param cursor: where the page starts: 0 for the first, else the ``cursor`` of the page
            before.
        """
        username = normalize_username(username)
        validate_cursor(cursor)
        return await self._fetch_page(username, cursor)

    async def _fetch_page(
        self,
        username: str,
        cursor: int,
        gate: RequestGate | None = None,
        tally: WalkTally | None = None,
    ) -> RepostedVideosPage:
        if self._limiter is None or self._session is None:
            await self.open()
        limiter = self._limiter
        assert limiter is not None
        attempt = 0
        # 429s without Retry-After on this request that were not charged to its attempts.
        limited = 0
        while True:
            attempt += 1
            turn = _Turn()
            try:
                token = await self._take_turn(username, gate, limiter, turn)
                request = build_reposted_request(
                    username,
                    fields=self.fields,
                    max_count=self.max_count,
                    cursor=cursor,
                    access_token=token,
                    base_url=self.base_url,
                )
                self.stats.requests += 1
                if tally is not None:
                    tally.requests += 1
                try:
                    status, headers, body = await self._send(request)
                except TransportError as failure:
                    if gate is not None:
                        gate.answered(False, username)
                    if not failure.sent:
                        # Never reached the API: it costs no quota, so it is not counted.
                        self.stats.requests -= 1
                        if tally is not None:
                            tally.requests -= 1
                    else:
                        turn.booked = False
                    raise
                turn.booked = False
                if gate is not None:
                    gate.answered(True, username)
                self.stats.statuses[status] = self.stats.statuses.get(status, 0) + 1
                page = parse_reposted_response(status, headers, body, username=username)
                if gate is not None:
                    gate.not_rate_limited()
                    gate.served()
                    gate.healthy(username)
                if page.problems:
                    # Deterministic: the same answer would come back odd again, so it is reported
                    # and kept, never retried.
                    _report_problems(username, cursor, page.problems)
                return page
            except (WalkStopped, StepAside):
                raise
            except TikTokError as caught:
                error = caught
                fetching_token = turn.fetching_token
                if turn.booked and gate is not None:
                    # Booked by `take`, then never sent (the token endpoint failed, or the
                    # connection was refused): the quota and the ledger get it back.
                    turn.booked = False
                    await gate.refund(username)
                if fetching_token:
                    error = _token_failure(caught)
                if isinstance(error, TokenExpiredError) and turn.token is not None:
                    self._auth.invalidate(turn.token)
                if fetching_token:
                    # The token endpoint's failure says nothing of the research API's quota or
                    # of this user: only an outage of it counts, for the breaker. A refresh that
                    # failed for many waiters is one failure (`Gate.unhealthy`), so it takes
                    # the breaker's threshold of them in a row to open it; in a walk they are
                    # not charged to the user meanwhile (the breaker bounds them).
                    if gate is not None and is_outage(error):
                        if gate.unhealthy(username, error):
                            attempt = 0
                            continue
                        attempt -= 1
                elif gate is not None and (
                    is_outage(error) or (turn.fresh and isinstance(error, TokenExpiredError))
                ):
                    # A 401 on a token fetched for this very request is TikTok's auth flapping,
                    # not a stale token: it hits every user alike, so it counts as an outage
                    # (persistent, it opens the breaker and ends the run resumable).
                    if gate.unhealthy(username, error):
                        # The circuit breaker holds it: the outage is nobody's fault, so the
                        # user's attempts start afresh once a probe gets through.
                        attempt = 0
                        continue
                    if gate.guilty(username) is not None:
                        # Its failures held the run while others were served: its attempts
                        # were spent then, and this was the one more chance it was given.
                        attempt = self.retry.max_attempts
                elif gate is not None and isinstance(error, TokenExpiredError):
                    # A 401 on a token that was cached before this request: perhaps stale,
                    # perhaps the same flapping that another worker's fresh token shows. It
                    # says nothing of the API's health either way, so it must not reset the
                    # breaker's count; it is retried at once, within the attempts, as ever.
                    pass
                elif gate is not None:
                    gate.healthy(username)
                if fetching_token or gate is None:
                    pass
                elif isinstance(error, RateLimitError):
                    # In a walk the gate tells the daily quota by behaviour, not by the 429's
                    # words (see `Gate.rate_limited`): its verdict retypes the error.
                    daily = gate.rate_limited(username, error)
                    if daily != isinstance(error, QuotaExhaustedError):
                        error = _retyped(error, QuotaExhaustedError if daily else RateLimitError)
                        if daily:
                            raise error from caught
                    if not daily and gate.limit_held():
                        # A streak of 429s holds the run until a probe tells a short-term
                        # limit from the daily quota: the run's wait, not this user's attempt.
                        attempt = 0
                        continue
                    if not daily and error.retry_after is None:
                        # Too fast for a short-term limit is the run's rate, not this user:
                        # the gate has lowered the rate, and the attempt is not charged, up
                        # to a bound of its own (the daily budget bounds them all besides).
                        limited += 1
                        if limited <= RATE_LIMITED_FREE * self.retry.max_attempts:
                            attempt -= 1
                elif isinstance(error, APIError):
                    gate.not_rate_limited()
                if not self.retry.is_retryable(error) or attempt >= self.retry.max_attempts:
                    if error is caught:
                        raise
                    raise error from caught
                # Every worker whose token failed waits out the token manager's one pause
                # (during which it shares the failure): one token request for all of them.
                wait = self._auth.retry_in() if fetching_token else self.retry.delay(attempt, error)
                self.stats.retries += 1
                logger.warning(
                    "user %r cursor %d: %s; retry %d of %d in %.1f s",
                    username,
                    cursor,
                    error,
                    attempt,
                    self.retry.max_attempts - 1,
                    wait,
                )
                if gate is not None:
                    # A stop cuts the backoff (and a server's Retry-After) short.
                    await gate.pause(wait, self._sleep)
                elif wait > 0:
                    await self._sleep(wait)

    # --- Batch Compliance API ------------------------------------------------------------

    async def create_compliance_task(
        self, ids: Iterable[int | str], *, category: str = "video"
    ) -> int:
        """Create a compliance task that checks up to 10,000 video ids; return its task id.

        The task id is an int above int64, as the API sends it.

        :param ids: the video ids, 1 to 10,000 positive ints or strs of digits, none repeated
            (checked here, before any request).
        :param category: what the ids are: ``"video"`` or ``"comment"``.
        """
        checked = validate_video_ids(ids)
        return await self._create_compliance_task(checked, validate_category(category))

    async def compliance_task_status(self, task_id: int | str) -> TaskStatus:
        """Return a compliance task's status: Processing, Completed or Failed.

        :param task_id: the id `create_compliance_task` returned (an int, or a str of digits).
        """
        return await self._compliance_task_status(validate_task_id(task_id))

    async def download_compliance_task(self, task_id: int | str) -> frozenset[int]:
        """Return the ids a completed compliance task found still valid.

        An id sent and missing here is no longer available from TikTok. An answer that is not
        a text file of ids raises (`ProtocolError`): it is never read as "no id is valid".

        :param task_id: the id of a task whose status is Completed (an int, or a str of digits).
        """
        return await self._download_compliance_task(validate_task_id(task_id))

    async def _create_compliance_task(
        self, ids: tuple[int, ...], category: str = "video", gate: RequestGate | None = None
    ) -> int:
        # Not idempotent: an answer lost after the task was made (a dropped connection, a cut
        # answer) makes the retry create a second task. It costs one request and leaves a task
        # nobody downloads; each task's answer is as good as the other's.
        def build(token: str) -> Request:
            return build_create_task_request(
                ids, access_token=token, category=category, base_url=self.base_url
            )

        return await self._compliance_call(
            f"create a compliance task of {len(ids)} ids", build, parse_create_task_response, gate
        )

    async def _compliance_task_status(
        self, task_id: int, gate: RequestGate | None = None
    ) -> TaskStatus:
        def build(token: str) -> Request:
            return build_task_status_request(task_id, access_token=token, base_url=self.base_url)

        return await self._compliance_call(
            f"status of compliance task {task_id}", build, parse_task_status_response, gate
        )

    async def _download_compliance_task(
        self, task_id: int, gate: RequestGate | None = None
    ) -> frozenset[int]:
        def build(token: str) -> Request:
            return build_download_task_request(task_id, access_token=token, base_url=self.base_url)

        return await self._compliance_call(
            f"download of compliance task {task_id}", build, parse_download_task_response, gate
        )

    async def _compliance_call(
        self,
        what: str,
        build: Callable[[str], Request],
        parse: Callable[[int, Mapping[str, str], bytes], _T],
        gate: RequestGate | None,
    ) -> _T:
        """Send one compliance request through the gate, the limiter and the token; retry it.

        The same order (`_take_turn`) and the same bounded retry as a page fetch (`_fetch_page`), in
        a loop of its own: the page fetch's loop also tells a user's fault from the run's (the
        circuit breaker, the rate-limit hold, a 429's verdict), which means nothing for a compliance
        call, and sharing it would change the page fetch. So a gate is asked to admit, take (book)
        and refund, and cuts waits short; its health and 429 bookkeeping are left out, and a 429 is
        the daily quota when its words say so (`QuotaExhaustedError`, not retried). A gate sees the
        name `COMPLIANCE_REQUEST`.
        """
        if self._limiter is None or self._session is None:
            await self.open()
        limiter = self._limiter
        assert limiter is not None
        name = COMPLIANCE_REQUEST
        attempt = 0
        while True:
            attempt += 1
            turn = _Turn()
            try:
                request = build(await self._take_turn(name, gate, limiter, turn))
                self.stats.requests += 1
                try:
                    status, headers, body = await self._send(request)
                except TransportError as failure:
                    if gate is not None:
                        gate.answered(False, name)
                    if not failure.sent:
                        # Never reached the API: no quota spent; the refund below books it back.
                        self.stats.requests -= 1
                    else:
                        turn.booked = False
                    raise
                turn.booked = False
                if gate is not None:
                    gate.answered(True, name)
                self.stats.statuses[status] = self.stats.statuses.get(status, 0) + 1
                return parse(status, headers, body)
            except (WalkStopped, StepAside):
                raise
            except TikTokError as caught:
                error = caught
                if turn.booked and gate is not None:
                    turn.booked = False
                    await gate.refund(name)
                if turn.fetching_token:
                    error = _token_failure(caught)
                if isinstance(error, TokenExpiredError) and turn.token is not None:
                    self._auth.invalidate(turn.token)
                if not self.retry.is_retryable(error) or attempt >= self.retry.max_attempts:
                    if error is caught:
                        raise
                    raise error from caught
                wait = (
                    self._auth.retry_in()
                    if turn.fetching_token
                    else self.retry.delay(attempt, error)
                )
                self.stats.retries += 1
                logger.warning(
                    "%s: %s; retry %d of %d in %.1f s",
                    what,
                    error,
                    attempt,
                    self.retry.max_attempts - 1,
                    wait,
                )
                if gate is not None:
                    await gate.pause(wait, self._sleep)
                elif wait > 0:
                    await self._sleep(wait)

    def pages(
        self, username: str, *, cursor: int = 0, max_pages: int | None = None
    ) -> AsyncGenerator[RepostedVideosPage, None]:
        """Walk a user's cursor chain page by page until the API says there is no more.

        Arguments are checked here, before any request.

        :param username: the user's TikTok name (a leading ``@`` and surrounding spaces are
            dropped).
        :param cursor: where the walk starts: 0, or a page's ``cursor`` from an earlier walk.
        :param max_pages: pages fetched at most (None: until the API says there is no more).
        """
        username = normalize_username(username)
        validate_cursor(cursor)
        validate_positive_int("max_pages", max_pages, optional=True)
        self._check_open()
        return self._walk(username, cursor, max_pages)

    async def _walk(
        self,
        username: str,
        cursor: int,
        max_pages: int | None,
        gate: RequestGate | None = None,
        tally: WalkTally | None = None,
    ) -> AsyncGenerator[RepostedVideosPage, None]:
        sent: set[int] = set()
        fetched = 0
        empty = 0
        empty_bound = empty_page_bound(self.max_count)
        while True:
            sent.add(cursor)
            page = await self._fetch_page(username, cursor, gate, tally)
            if page.cursor_missing:
                # Its stand-in 0 is no place to resume from; asking this page again is.
                page = msgspec.structs.replace(page, cursor=cursor)
            fetched += 1
            empty = 0 if page.videos or page.raw_videos else empty + 1
            yield page
            if not page.has_more:
                return
            # The guards that say the API misbehaves come before max_pages: a walk cut by
            # max_pages stays pending for the next run to continue from its cursor, which
            # would re-fetch a repeated cursor's page, or cross the empty pages again.
            if empty >= empty_bound:
                # Seen on sibling endpoints: has_more never turns false, and every later page
                # is empty while the cursor advances. Following it would spend the day's quota.
                logger.warning(
                    "user %r: %d empty pages in a row with has_more true (up to cursor %d);"
                    " stopping this user's walk after %d pages",
                    username,
                    empty,
                    page.cursor,
                    fetched,
                )
                if tally is not None:
                    tally.cut = "empty_pages"
                return
            if page.cursor_missing:
                # Seen on the video query endpoint: has_more true, cursor null. Guessing one
                # (0, say) would walk the list again, or for ever.
                logger.warning(
                    "user %r: the API said has_more true but no cursor (null) after cursor %d;"
                    " stopping this user's walk after %d pages",
                    username,
                    cursor,
                    fetched,
                )
                if tally is not None:
                    tally.cut = "no_cursor"
                return
            if page.cursor in sent:
                # Seen on sibling endpoints: has_more stays true while the cursor stops moving.
                # Sending it again would return the same page for ever and burn the quota.
                logger.warning(
                    "user %r: the API returned cursor %d again with has_more true;"
                    " stopping this user's walk after %d pages",
                    username,
                    page.cursor,
                    fetched,
                )
                if tally is not None:
                    tally.cut = "repeated_cursor"
                return
            if max_pages is not None and fetched >= max_pages:
                if tally is not None:
                    tally.cut = "max_pages"
                return
            cursor = page.cursor

    async def reposted_videos(
        self, username: str, *, cursor: int = 0, max_pages: int | None = None
    ) -> AsyncGenerator[Video, None]:
        """Yield every video a user reposted, each id once.

        :param username: the user's TikTok name (a leading ``@`` and surrounding spaces are
            dropped).
        :param cursor: where the walk starts: 0, or a page's ``cursor`` from an earlier walk.
        :param max_pages: pages fetched at most (None: until the API says there is no more).
        """
        seen: set[int] = set()
        async with contextlib.aclosing(
            self.pages(username, cursor=cursor, max_pages=max_pages)
        ) as pages:
            async for page in pages:
                for video in page.videos:
                    if video.id not in seen:
                        seen.add(video.id)
                        yield video

    def walk_many(
        self,
        usernames: Iterable[str] | AsyncIterable[str],
        *,
        concurrency: int | None = None,
        max_pages: int | None = None,
    ) -> AsyncGenerator[WalkEvent, None]:
        """Walk many users at once through this client, yielding each page and each user's end.

        Every argument is checked here, before any request. Close the generator (or use
        ``contextlib.aclosing``) to stop early: every worker stops with it.

        :param usernames: any iterable or async iterable of names, read as the walk goes (a
            generator, a file, a pipe); bad and repeated names become `NameSkipped` events.
        :param concurrency: users walked at once (the client's ``concurrency`` by default).
        :param max_pages: pages per user at most; a user cut short ends ``incomplete``.
        """
        from .engine import walk_many

        self._check_open()
        return walk_many(self, usernames, concurrency=concurrency, max_pages=max_pages)


def _resolve_base_url(base_url: str | None) -> str:
    url = base_url if base_url is not None else os.environ.get(ENV_BASE_URL) or DEFAULT_BASE_URL
    url = url.strip().rstrip("/")
    if not url.startswith(("http://", "https://")) or not _host(url):
        raise ValueError(f"base_url must be an http:// or https:// URL, got {url!r}")
    if url.startswith("http://") and not _is_loopback(_host(url)):
        # The access token travels in a header: in clear text anyone on the path can read it.
        warnings.warn(
            f"base_url {url!r} is plain http to a non-loopback host: the access token"
            " would travel unencrypted",
            UserWarning,
            stacklevel=3,
        )
    return url


def _env_proxy(url: str) -> str | None:
    proxy = urllib.request.getproxies().get(url.split("://", 1)[0])
    if not proxy:
        return None
    host = _host(url)
    name = host.strip("[]") if host.endswith("]") else host.rsplit(":", 1)[0]
    return None if urllib.request.proxy_bypass(name) else proxy


def _is_loopback(host: str) -> bool:
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    name = name.strip("[]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _host(url: str) -> str:
    return url.split("://", 1)[-1].split("/", 1)[0]
