"""The simulator's failures: canned error answers, drawn and scripted faults, outages, drops."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from functools import lru_cache
from typing import Any, Final

import msgspec
from aiohttp import web

from ._config import (
    INVALID_CURSOR_MESSAGE,
    SERVER_ERROR_MESSAGE,
    TOKEN_MISSING_MESSAGE,
    Fault,
    SimulatorConfig,
    SimulatorStats,
)

_log = logging.getLogger(__name__)
_encode = msgspec.json.encode
_GATEWAY_PAGE: Final = (
    "<html>\r\n<head><title>{0}</title></head>\r\n<body>\r\n<center><h1>{0}</h1></center>\r\n"
    "<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)


def _token_seed(seed: int | None) -> str | None:
    # Its own stream, so that token faults never shift the research faults a seed gives.
    return None if seed is None else f"token:{seed}"


@lru_cache(maxsize=1)
def _utc_stamp(second: int) -> str:
    return time.strftime("%Y%m%d%H%M%S", time.gmtime(second))


def _log_id() -> str:
    # Like the live API's: 14 digits of UTC time, then 20 upper-case hex digits.
    return f"{_utc_stamp(int(time.time()))}{random.getrandbits(80):020X}"


def _json(status: int, payload: Any, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status, body=_encode(payload), content_type="application/json", headers=headers
    )


def _api_error(
    status: int,
    code: str,
    message: str,
    headers: Mapping[str, str] | None = None,
    now: float | None = None,
) -> web.Response:
    """Answer in the research error shape; with `now`, the extra_keys knob's unknown keys too."""
    error: dict[str, Any] = {"code": code, "message": message, "log_id": _log_id()}
    if now is None:
        return _json(status, {"data": {}, "error": error}, headers)
    error["http_status_code"] = status
    extra = {"now": int(now * 1000), "fatal_item_ids": []}
    return _json(status, {"data": {}, "error": error, "extra": extra}, headers)


def _token_error(
    status: int, code: str, description: str, headers: Mapping[str, str] | None = None
) -> web.Response:
    body = {"error": code, "error_description": description, "log_id": _log_id()}
    return _json(status, body, headers)


def _gateway(status: int) -> web.Response:
    """Answer as a gateway in front of the API does: an nginx text/html page."""
    reason = "Bad Gateway" if status == 502 else "Gateway Time-out"
    page = _GATEWAY_PAGE.format(f"{status} {reason}")
    return web.Response(status=status, text=page, content_type="text/html")


def _failure(request: web.Request, exc: Exception) -> web.Response:
    """Turn an exception escaping a handler into an answer in the API's JSON shape."""
    if isinstance(exc, web.HTTPException):
        codes = {404: "not_found", 405: "method_not_allowed", 413: "invalid_params"}
        code = codes.get(exc.status, "invalid_params" if exc.status < 500 else "internal_error")
        allow = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return _api_error(exc.status, code, f"{exc.reason}: {request.method} {request.path}", allow)
    _log.error("simulator handler failed on %s", request.path, exc_info=exc)
    return _api_error(500, "internal_error", SERVER_ERROR_MESSAGE)


@web.middleware
async def _errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except Exception as exc:
        return _failure(request, exc)


def _draw(faults: Mapping[Fault, float], roll: float) -> Fault | None:
    """Return the fault a uniform roll in [0, 1) lands on, each taking its rate's share."""
    for fault, rate in faults.items():
        if roll < rate:
            return fault
        roll -= rate
    return None


class _Faults:
    """Answer with the faults, outages and errors that the knobs and scripts ask for."""

    # Set by Simulator.__init__; declared here so that these methods are typed against them.
    config: SimulatorConfig
    stats: SimulatorStats
    _scripts: dict[str, deque[Fault | None]]
    _token_script: deque[Fault]
    _rng: random.Random
    _token_rng: random.Random
    _rng_seed: int | None
    _token_server_errors: int
    _server_errors: int
    _closing: asyncio.Event | None

    def _error(
        self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None
    ) -> web.Response:
        config = self.config
        now = config.clock() if config.extra_keys else None
        return _api_error(status, code, message, headers, now)

    def _random(self) -> float:
        # Reseeded when the seed knob changes, so that a run-time seed acts as one given at start.
        self._reseed()
        return self._rng.random()

    def _token_random(self) -> float:
        self._reseed()
        return self._token_rng.random()

    def _reseed(self) -> None:
        # Both streams at once, so that a run-time seed acts as one given at start for both.
        if self._rng_seed != self.config.seed:
            self._rng_seed = self.config.seed
            self._rng.seed(self._rng_seed)
            self._token_rng.seed(_token_seed(self._rng_seed))

    async def _hang(self) -> bool:
        """Keep a request waiting `hang_seconds`; return False if the simulator closes first."""
        assert self._closing is not None
        try:
            await asyncio.wait_for(self._closing.wait(), self.config.hang_seconds)
        except TimeoutError:
            return True
        return False

    def _next_token_fault(self) -> Fault | None:
        if self._token_script:
            return self._token_script.popleft()
        faults = self.config.token_faults
        return _draw(faults, self._token_random()) if faults else None

    def _token_fault_response(self, fault: Fault) -> web.Response:
        config = self.config
        if fault is Fault.SERVER_ERROR:
            # As on the research endpoint, every second 500 has no message.
            self._token_server_errors += 1
            message = SERVER_ERROR_MESSAGE if self._token_server_errors % 2 else ""
            return _token_error(500, "internal_error", message)
        if fault in (Fault.BAD_GATEWAY, Fault.GATEWAY_TIMEOUT):
            return _gateway(502 if fault is Fault.BAD_GATEWAY else 504)
        if fault is Fault.RATE_LIMIT:
            headers = {"Retry-After": str(config.retry_after or 1)}
            return _token_error(429, "rate_limit_exceeded", config.rate_limit_message, headers)
        if fault is Fault.RATE_LIMIT_NO_RETRY_AFTER:
            return _token_error(429, "rate_limit_exceeded", config.rate_limit_message)
        raise AssertionError(f"{fault} has no canned token answer")

    def _in_outage(self, now: float) -> bool:
        config = self.config
        start = config.outage_start
        return start is not None and start <= now < start + config.outage_seconds

    def _outage(self, request: web.Request, *, research: bool) -> web.Response | None:
        """Fail a request as the outage knobs say; None once its connection is closed."""
        kind = self.config.outage_kind
        if kind == "drop":
            self._drop(request, research=research)
            return None
        if kind == "gateway":
            return _gateway(504)
        # Long runs of 500s with no message at all, as reported from the live API; the token
        # endpoint keeps its own flat error shape.
        if research:
            return self._error(500, "internal_error", "")
        return _token_error(500, "internal_error", "")

    def _next_fault(self, username: str) -> Fault | None:
        own = self.config.user_faults.get(username)
        if own is not None:
            return own
        persistent = self.config.persistent_fault
        if persistent is not None:
            return persistent
        queue = self._scripts.get(username)
        if queue:
            return queue.popleft()
        faults = self.config.faults
        return _draw(faults, self._random()) if faults else None

    def _fault_response(self, fault: Fault) -> web.Response:
        config = self.config
        if fault is Fault.SERVER_ERROR:
            # Half the live API's 500s carry no message at all.
            self._server_errors += 1
            message = SERVER_ERROR_MESSAGE if self._server_errors % 2 else ""
            return self._error(500, "internal_error", message)
        if fault in (Fault.BAD_GATEWAY, Fault.GATEWAY_TIMEOUT):
            return _gateway(502 if fault is Fault.BAD_GATEWAY else 504)
        if fault is Fault.RATE_LIMIT:
            headers = {"Retry-After": str(config.retry_after or 1)}
            return self._error(429, "rate_limit_exceeded", config.rate_limit_message, headers)
        if fault is Fault.RATE_LIMIT_NO_RETRY_AFTER:
            return self._error(429, "rate_limit_exceeded", config.rate_limit_message)
        if fault is Fault.QUOTA:
            return self._error(429, "rate_limit_exceeded", config.quota_message)
        if fault is Fault.INVALID_CURSOR:
            return self._error(400, "invalid_params", INVALID_CURSOR_MESSAGE)
        if fault is Fault.TOKEN_INVALID:
            return self._error(401, "access_token_invalid", TOKEN_MISSING_MESSAGE)
        raise AssertionError(f"{fault} has no canned answer")

    def _drop(self, request: web.Request, *, research: bool = True) -> None:
        if request.transport is not None:
            request.transport.close()
        # `dropped` counts research requests; the token endpoint's show in its own counters.
        if research:
            self.stats.dropped += 1

    async def _truncate(self, request: web.Request, answer: web.Response) -> web.StreamResponse:
        body = answer.body
        assert isinstance(body, bytes)
        response = web.StreamResponse(status=answer.status)
        response.content_type = "application/json"
        response.content_length = len(body)
        await response.prepare(request)
        await response.write(body[: len(body) // 2])
        if request.transport is not None:
            request.transport.close()
        return response
