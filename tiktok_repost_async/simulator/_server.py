"""The simulator's HTTP side: configuration, counters, faults and the aiohttp.web application."""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import logging
import random
import secrets
import string
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from types import TracebackType
from typing import Any, Final, Literal, NamedTuple, Protocol, get_args

import msgspec
from aiohttp import web

from ._data import (
    DRIFT_KINDS,
    FAVOURITES_ALIAS,
    PLAIN,
    VIDEO_FIELDS,
    EncodingCache,
    EpochChanges,
    Wire,
    changes,
    drift_plan,
    drifted,
    field_mask,
    ground_truth,
    pages_needed,
    repost_count,
    user_kind,
)
from ._thread import SimulatorThread

__all__ = [
    "DRIFT_KINDS",
    "INVALID_CURSOR_MESSAGE",
    "QUOTA_MESSAGE",
    "RATE_LIMIT_MESSAGE",
    "RESEARCH_PATH",
    "TEST_CLIENT_KEY",
    "TEST_CLIENT_SECRET",
    "TOKEN_FAULTS",
    "TOKEN_PATH",
    "Fault",
    "Simulator",
    "SimulatorConfig",
    "SimulatorStats",
]

TEST_CLIENT_KEY: Final = "sim-test-client-key"
TEST_CLIENT_SECRET: Final = "sim-test-client-secret"
TOKEN_PATH: Final = "/v2/oauth/token/"
RESEARCH_PATH: Final = "/v2/research/user/reposted_videos/"

ListKey = Literal["reposted_videos", "user_reposted_videos"]
FavoritesSpelling = Literal["favorites_count", "favourites_count"]
OutageKind = Literal["server_error", "gateway", "drop"]
AuthFailure = Literal["scope_permission_missed", "scope_not_authorized"]

QUOTA_MESSAGE: Final = (
    "Rate limit exceeded: the daily quota of research API requests is used up; "
    "it resets at 00:00 UTC"
)
RATE_LIMIT_MESSAGE: Final = "Too many requests: the short-term rate limit was exceeded, slow down"
INVALID_CURSOR_MESSAGE: Final = "Invalid count or cursor"
SERVER_ERROR_MESSAGE: Final = "Something went wrong. Please try again later."
TOKEN_MISSING_MESSAGE: Final = "The access token is invalid or not found in the request."
TOKEN_EXPIRED_MESSAGE: Final = "The access token has expired; request a new one."
SCOPE_MISSING_MESSAGE: Final = "The client does not have the required scope: research.data.basic"
NOT_APPROVED_MESSAGE: Final = "The research application is not approved"

_log = logging.getLogger(__name__)
_encode = msgspec.json.encode
_decode = msgspec.json.decode
_TOKEN_ALPHABET: Final = string.ascii_letters + string.digits
_GATEWAY_PAGE: Final = (
    "<html>\r\n<head><title>{0}</title></head>\r\n<body>\r\n<center><h1>{0}</h1></center>\r\n"
    "<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)
_DAY: Final = 86_400
_PAGE: Final = (
    b'{"data":{%s"cursor":%d,"has_more":%s},"error":{"code":"ok","message":"","log_id":"%s"}}'
)
# The answer's unknown keys: one in data, one in error, one at the top level.
_EXTRA_PAGE: Final = (
    b'{"data":{"search_id":"%s",%s"cursor":%d,"has_more":%s},'
    b'"error":{"code":"ok","message":"","log_id":"%s","http_status_code":200},'
    b'"extra":{"now":%d,"fatal_item_ids":[]}}'
)


class Fault(enum.StrEnum):
    """A failure the simulator can inject into a research request."""

    #: 500 internal_error; every second one has an empty message.
    SERVER_ERROR = "server_error"
    #: 502 with a text/html body.
    BAD_GATEWAY = "bad_gateway"
    #: 504 with a text/html body.
    GATEWAY_TIMEOUT = "gateway_timeout"
    #: The connection closes without any answer.
    DROP = "drop"
    #: No answer for `hang_seconds`, then the normal one; dropped when the simulator closes.
    HANG = "hang"
    #: 429 rate_limit_exceeded, short-term (`rate_limit_message`), with
    #: `Retry-After: <retry_after or 1>`.
    RATE_LIMIT = "rate_limit"
    #: 429 rate_limit_exceeded, short-term, without Retry-After.
    RATE_LIMIT_NO_RETRY_AFTER = "rate_limit_no_retry_after"
    #: 429 rate_limit_exceeded with the daily-quota message (`quota_message`), without
    #: Retry-After, as the daily-quota refusal sends it.
    QUOTA = "quota"
    #: 400 invalid_params "Invalid count or cursor", the live API's transient bug.
    INVALID_CURSOR = "invalid_cursor"
    #: 401 access_token_invalid, whatever the token.
    TOKEN_INVALID = "token_invalid"
    #: The normal answer's status and headers, then half its body, then the connection closes.
    TRUNCATED = "truncated"


#: The faults the token endpoint can be given, by `token_faults` or `Simulator.script_token`.
TOKEN_FAULTS: Final = (
    Fault.SERVER_ERROR,
    Fault.BAD_GATEWAY,
    Fault.GATEWAY_TIMEOUT,
    Fault.DROP,
    Fault.HANG,
    Fault.RATE_LIMIT,
    Fault.RATE_LIMIT_NO_RETRY_AFTER,
    Fault.TRUNCATED,
)


def _number(name: str, value: Any, most: float = float("inf")) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= most:
        bounds = ">= 0" if most == float("inf") else f"from 0 to {most:g}"
        raise ValueError(f"{name} must be a number {bounds}, not {value!r}")
    return float(value)


def _count(name: str, value: Any, least: int, optional: bool) -> int | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ValueError(f"{name} must be an integer >= {least}, not {value!r}")
    return value


def _fault_rates(
    value: Any, name: str = "faults", kinds: Iterable[Fault] = Fault
) -> dict[Fault, float]:
    allowed = tuple(kinds)
    if not isinstance(value, Mapping):
        raise ValueError(f"{name} must map a Fault to a probability, not {value!r}")
    try:
        rates = {
            _kind(kind, allowed): _number("a fault rate", rate, 1) for kind, rate in value.items()
        }
    except ValueError as exc:
        listed = ", ".join(fault.value for fault in allowed)
        raise ValueError(f"{name}: {exc} (fault kinds: {listed}; rates between 0 and 1)") from None
    if sum(rates.values()) > 1:
        raise ValueError(f"{name}: fault rates add up to more than 1: {sum(rates.values())}")
    return rates


def _kind(value: Any, allowed: tuple[Fault, ...]) -> Fault:
    fault = Fault(value)
    if fault not in allowed:
        raise ValueError(f"{fault.value!r} is not a fault of this endpoint")
    return fault


def _choice(name: str, value: Any, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}, not {value!r}")
    return str(value)


def _fault(name: str, value: Any) -> Fault | None:
    if value is None:
        return None
    try:
        return Fault(value)
    except ValueError:
        kinds = ", ".join(fault.value for fault in Fault)
        message = f"{name} must be a Fault or None, not {value!r} (kinds: {kinds})"
        raise ValueError(message) from None


def _field_names(name: str, value: Any) -> frozenset[str]:
    known = (*VIDEO_FIELDS, FAVOURITES_ALIAS)
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise ValueError(f"{name} must be a set of video field names, not {value!r}")
    names = frozenset(value)
    unknown = sorted(map(repr, names.difference(known)))
    if unknown:
        fields = ", ".join(known)
        raise ValueError(f"{name} names no video field: {', '.join(unknown)} (fields: {fields})")
    return names


def _checked(name: str, value: Any) -> Any:
    """Validate one knob's new value; return it normalised."""
    if name in ("latency", "jitter", "hang_seconds", "outage_seconds"):
        return _number(name, value)
    if name == "outage_start":
        return None if value is None else _number(name, value)
    if name == "outage_kind":
        return _choice(name, value, get_args(OutageKind))
    if name == "persistent_fault":
        return _fault(name, value)
    if name == "rejected_fields":
        return _field_names(name, value)
    if name == "auth_failure":
        return None if value is None else _choice(name, value, get_args(AuthFailure))
    if name == "type_drift":
        return _number(name, value, 1)
    if name == "quota_reset_lag":
        return _number(name, value, _DAY)
    if name in ("quota_message", "rate_limit_message") and not isinstance(value, str):
        raise ValueError(f"{name} must be a string, not {value!r}")
    if name == "epoch":
        return _count(name, value, 0, optional=False)
    if name in ("rate_limit", "token_lifetime"):
        return _count(name, value, 1, optional=name == "rate_limit")
    if name in ("retry_after", "daily_quota"):
        return _count(name, value, 0, optional=True)
    if name in ("client_key", "client_secret"):
        if not isinstance(value, str) or not value:
            raise ValueError(f"{name} must be a non-empty string")
    elif name in ("huge_ids", "omit_empty_list", "extra_keys", "string_ids"):
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be True or False, not {value!r}")
    elif name == "faults":
        return _fault_rates(value)
    elif name == "token_faults":
        return _fault_rates(value, name, TOKEN_FAULTS)
    elif name == "seed":
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise ValueError(f"seed must be an integer or None, not {value!r}")
    elif name == "list_key":
        return _choice(name, value, get_args(ListKey))
    elif name == "favorites_spelling":
        return _choice(name, value, get_args(FavoritesSpelling))
    elif name == "clock" and not callable(value):
        raise ValueError("clock must be a callable returning epoch seconds")
    return value


@dataclass(eq=False)
class SimulatorConfig:
    """The simulator's knobs; each change applies from the next request on."""

    #: The credentials the token endpoint accepts.
    client_key: str = TEST_CLIENT_KEY
    client_secret: str = TEST_CLIENT_SECRET
    #: Seconds every answer waits, plus up to `jitter` more at random.
    latency: float = 0.0
    jitter: float = 0.0
    #: Research requests allowed in any sliding second, refused ones included; None: no limit.
    rate_limit: int | None = None
    #: The Retry-After seconds of the short-term 429; None sends no header.
    retry_after: int | None = None
    #: Research requests allowed per UTC day of `clock`, every one counted; None: no quota.
    daily_quota: int | None = None
    #: Seconds an access token stays valid.
    token_lifetime: int = 7200
    #: Ids above int64 (some above uint64) for every user, not only `hugeid…` ones.
    huge_ids: bool = False
    #: Probability of each fault per research request; assign a new dict to change them.
    faults: dict[Fault, float] = field(default_factory=dict)
    #: Seed of the random faults and jitter; None seeds from the system.
    seed: int | None = None
    #: How long a HANG fault keeps its request waiting.
    hang_seconds: float = 3600.0
    #: The key of the video list in answers.
    list_key: ListKey = "reposted_videos"
    #: The key of the favourites count in videos, whichever spelling the request used.
    favorites_spelling: FavoritesSpelling = "favorites_count"
    #: Leave the list key out of successful answers without videos.
    omit_empty_list: bool = False
    #: Keys no documentation names, at every level of videos and answers, whatever was asked.
    extra_keys: bool = False
    #: Every id (video, music, hashtag, sticker, effect) as a JSON string of its digits.
    string_ids: bool = False
    #: Probability that a video has one requested field of another JSON type than documented;
    #: drawn from the username and the video's position, so the same videos drift every time.
    type_drift: float = 0.0
    #: Epoch seconds of `clock` at which an outage begins; None: no outage.
    outage_start: float | None = None
    #: How long the outage lasts: requests while outage_start <= clock() < outage_start +
    #: outage_seconds fail, on both endpoints, whatever their token, body or the quota left.
    outage_seconds: float = 0.0
    #: How they fail: 500 internal_error with an empty message, 504 with a text/html page, or a
    #: connection closed without an answer.
    outage_kind: OutageKind = "server_error"
    #: A fault every research request that would otherwise be served gets while it is set;
    #: scripted faults wait, and no random one is drawn.
    persistent_fault: Fault | None = None
    #: Video fields the API no longer accepts: a request naming any of them, spelled as here,
    #: gets 400 invalid_params "Invalid fields: <names>", comma-joined in the request's order.
    rejected_fields: frozenset[str] = frozenset()
    #: Refuse every research request with a valid token: 400 scope_permission_missed (the client
    #: lacks a scope) or 401 scope_not_authorized (the application is not approved).
    auth_failure: AuthFailure | None = None
    #: The message of the daily-quota 429 (refusal and QUOTA fault); the live API's text is not
    #: documented, and both 429s share the code rate_limit_exceeded.
    quota_message: str = QUOTA_MESSAGE
    #: The message of the short-term 429 (refusal and RATE_LIMIT faults).
    rate_limit_message: str = RATE_LIMIT_MESSAGE
    #: Seconds after 00:00 UTC of `clock` during which a project that used up the day before's
    #: quota still gets the daily-quota 429, its new quota untouched: those requests count
    #: against nothing.
    quota_reset_lag: float = 0.0
    #: Probability of each fault (one of TOKEN_FAULTS) per token request, drawn from its own
    #: stream of `seed`, so that research faults come as without it; assign a new dict.
    token_faults: dict[Fault, float] = field(default_factory=dict)
    #: Epoch seconds, for token expiry, the quota day and the rate window; tests pass a fake.
    clock: Callable[[], float] = time.time
    #: How many rounds of time have passed (not epoch seconds): at 0 every list is as its name
    #: makes it; each step on adds new reposts at the head, removes a few for good and grows
    #: counts, the same way in every run. A panel's round N is harvested at epoch N - 1.
    epoch: int = 0

    def __setattr__(self, name: str, value: Any) -> None:
        # Checked on every assignment, so that a bad value set at run time fails where it is set,
        # not inside a request handler.
        super().__setattr__(name, _checked(name, value))


@dataclass(eq=False)
class SimulatorStats:
    """Counters of the requests served; `Simulator.reset_stats` starts them afresh.

    They count research requests unless their name says ``token``.
    """

    #: Research requests received, whatever became of them.
    requests: int = 0
    #: Statuses answered; dropped requests have none.
    by_status: Counter[int] = field(default_factory=Counter)
    #: Requests per username, when the body named one.
    by_user: Counter[str] = field(default_factory=Counter)
    #: Valid requests per (username, cursor): a page asked twice shows here.
    by_cursor: Counter[tuple[str, int]] = field(default_factory=Counter)
    #: Faults injected, scripted or random.
    faults: Counter[Fault] = field(default_factory=Counter)
    #: Connections closed without an answer (DROP, and HANG at close).
    dropped: int = 0
    #: Token requests received, whatever became of them, and access tokens issued.
    token_requests: int = 0
    tokens_issued: int = 0
    #: Token requests failed by the outage window (in `token_requests` too).
    token_outage_failures: int = 0
    #: Faults injected into token requests, scripted or random.
    token_faults: Counter[Fault] = field(default_factory=Counter)
    #: Research requests being served now, and the most at any one time.
    in_flight: int = 0
    peak_in_flight: int = 0
    #: Research requests counted against the current UTC day's quota (as of the latest one).
    quota_used: int = 0
    #: Research requests failed by the outage window (in `requests` too, and in the quota).
    outage_failures: int = 0
    #: Daily-quota 429s sent during a lagging reset (in `requests`, not in the quota).
    quota_lag_refusals: int = 0


class _Query(NamedTuple):
    username: str | None
    error: str | None
    mask: int = 0
    max_count: int = 0
    cursor: int = 0


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


class _PagesNeeded(Protocol):
    def __call__(self, username: str, max_count: int = 100, *, epoch: int | None = None) -> int:
        """Return the fewest research requests a perfect client needs for the user."""
        ...


class _PagesNeededAt:
    """`Simulator.pages_needed`: at the simulator's epoch on one, at epoch 0 on the class."""

    # A descriptor, not a staticmethod: callers ask the class (no simulator at hand) as well as a
    # simulator, whose answer must follow its epoch knob like its pages do.
    def __get__(self, simulator: Simulator | None, owner: type | None = None) -> _PagesNeeded:
        def needed(username: str, max_count: int = 100, *, epoch: int | None = None) -> int:
            """Return the fewest research requests a perfect client needs for the user.

            At `epoch`, by default the simulator's (0 when asked of the class). For an
            ``endless`` user, the pages holding its videos: a client's guard against a has_more
            that never ends costs its own requests on top.
            """
            if epoch is None:
                epoch = 0 if simulator is None else simulator.config.epoch
            return pages_needed(username, max_count, epoch)

        return needed


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


class Simulator:
    """A local TikTok Research API serving the reposted-videos endpoint and its token."""

    def __init__(self, config: SimulatorConfig | None = None, **knobs: Any) -> None:
        base = config if config is not None else SimulatorConfig()
        self.config = dataclasses.replace(base, **knobs) if knobs else base
        self.stats = SimulatorStats()
        self._tokens: dict[str, float] = {}
        self._scripts: dict[str, deque[Fault]] = {}
        self._drifts: dict[str, tuple[tuple[int, str | None], ...]] = {}
        self._window: deque[float] = deque()
        self._quota_day: int | None = None
        # The UTC day whose first `quota_reset_lag` seconds still refuse for the day before.
        self._lag_day: int | None = None
        self._cache = EncodingCache()
        self._fields: dict[str, int | str] = {}
        self._token_script: deque[Fault] = deque()
        self._rng = random.Random(self.config.seed)
        self._token_rng = random.Random(_token_seed(self.config.seed))
        self._rng_seed = self.config.seed
        self._token_server_errors = 0
        self._server_errors = 0
        self._runner: web.AppRunner | None = None
        self._closing: asyncio.Event | None = None
        self._base_url: str | None = None

    # -- running -------------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Start serving on host:port (0 picks a free port); return the base URL."""
        if self._runner is not None:
            raise RuntimeError("the simulator is already running")
        app = web.Application(middlewares=[_errors])
        app.router.add_post(TOKEN_PATH, self._token)
        app.router.add_post(RESEARCH_PATH, self._research)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner, self._closing = runner, asyncio.Event()
        bound_host, bound_port = runner.addresses[0][:2]
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        self._base_url = f"http://{shown}:{bound_port}"
        return self._base_url

    async def close(self) -> None:
        """Stop serving; hanging requests are dropped."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        assert self._closing is not None
        self._closing.set()
        await runner.cleanup()
        self._base_url = None

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def run_in_thread(self, host: str = "127.0.0.1", port: int = 0) -> SimulatorThread:
        """Return a runner serving this simulator from a background thread: `with ... as url:`."""
        return SimulatorThread(self, host, port)

    @property
    def base_url(self) -> str:
        """Return the URL the running simulator answers at, such as http://127.0.0.1:54321."""
        if self._base_url is None:
            raise RuntimeError("the simulator is not running")
        return self._base_url

    @property
    def client_key(self) -> str:
        """Return the client key the token endpoint accepts."""
        return self.config.client_key

    @property
    def client_secret(self) -> str:
        """Return the client secret the token endpoint accepts."""
        return self.config.client_secret

    # -- controls for tests ----------------------------------------------------------------------

    def script(self, username: str, faults: Iterable[Fault | str]) -> None:
        """Give the user's next research requests these faults, in order, then normal service."""
        queue = self._scripts.setdefault(username, deque())
        queue.extend(Fault(fault) for fault in faults)

    def script_token(self, faults: Iterable[Fault | str]) -> None:
        """Give the next token requests these faults, in order, then normal service.

        Each is one of TOKEN_FAULTS; scripted faults come before random `token_faults`.
        """
        added = [Fault(fault) for fault in faults]
        for fault in added:
            if fault not in TOKEN_FAULTS:
                kinds = ", ".join(TOKEN_FAULTS)
                raise ValueError(f"{fault.value!r} is not a token endpoint fault; kinds: {kinds}")
        self._token_script.extend(added)

    def expire_tokens(self) -> None:
        """Invalidate every access token issued so far."""
        self._tokens = {}

    def reset_quota(self) -> None:
        """Give back today's daily quota, ending a lagging reset too."""
        self.stats.quota_used = 0
        self._lag_day = None

    def reset_stats(self) -> None:
        """Zero the counters; the requests in flight and the quota used stay as they are."""
        old = self.stats
        self.stats = SimulatorStats(in_flight=old.in_flight, quota_used=old.quota_used)

    def drift(self, username: str, indices: Iterable[int], kind: str | None = None) -> None:
        """Make the user's videos at these positions of the full repost list drift from now on.

        `kind` is one of DRIFT_KINDS; None lets each video pick one deterministically, as
        `type_drift` does. A kind whose field a request did not ask for gives way to the next
        kind that it did; `no_id` and `bad_id` act only when the id was asked for. Scripted
        positions add to earlier ones and to `type_drift`, and override both. Positions are those
        of the list at epoch 0, whatever the epoch knob: the drift follows the video as later
        epochs move it (and ends with it if it is removed).
        """
        if kind is not None and kind not in DRIFT_KINDS:
            raise ValueError(f"unknown drift kind {kind!r}; kinds: {', '.join(DRIFT_KINDS)}")
        added = [(index, kind) for index in indices]
        # A kind, not None, so that checking the positions draws nothing.
        drift_plan(username, repost_count(username), 0.0, [(index, "no_id") for index, _ in added])
        positions = dict(self._drifts.get(username, ()))
        positions.update(added)
        self._drifts[username] = tuple(sorted(positions.items()))

    def drifted(self, username: str, *, epoch: int | None = None) -> dict[int, str]:
        """Return the positions and kinds of the user's drifted videos, when every field is asked.

        Positions count in the full repost list at `epoch` (by default the epoch knob's), which
        at epoch 0 is how `drift` takes them; moderated videos, never sent, are left out.
        """
        return drifted(
            username,
            type_drift=self.config.type_drift,
            drifts=dict(self._drifts.get(username, ())),
            epoch=self._epoch(epoch),
        )

    def ground_truth(
        self,
        username: str,
        max_count: int = 100,
        *,
        fields: Sequence[str] | None = None,
        epoch: int | None = None,
    ) -> list[dict[str, Any]]:
        """Return the videos a perfect client collects for the user, in API order, as sent.

        Each video is the JSON this simulator sends with its current knobs at `epoch` (by
        default the epoch knob's), decoded: unknown keys, string ids and drifted values as on
        the wire. Videos drifted to `no_id` (no id) or `bad_id` (id ``"n/a"``) are included as
        sent; a client is expected to skip them. Every field comes back unless `fields` names a
        request's, and favorites_count is spelled so; max_count matters to `stall` users only,
        whose walk stops after their second page.
        """
        config = self.config
        return ground_truth(
            username,
            huge_ids=config.huge_ids,
            max_count=max_count,
            extra_keys=config.extra_keys,
            string_ids=config.string_ids,
            type_drift=config.type_drift,
            drifts=dict(self._drifts.get(username, ())),
            fields=fields,
            epoch=self._epoch(epoch),
        )

    def changes(
        self, username: str, from_epoch: int, to_epoch: int, *, max_count: int = 100
    ) -> EpochChanges:
        """Return what changed in the user's reposts between two epochs, as a client's diff sees it.

        ``{"added": [ids in the later list's order], "removed": [ids in the earlier list's
        order], "counts": {id: {"like_count": delta, ...}}}``: the set differences of
        `ground_truth` at the two epochs with the current knobs, and for videos in both the
        deltas of the count fields (COUNT_FIELDS, favorites_count so spelled) that changed and
        are integers on both sides. Ids are ints, whatever `string_ids` says; videos drifted to
        `no_id` or `bad_id` are left out. max_count matters to `stall` users only. Raise
        ValueError unless 0 <= from_epoch <= to_epoch.
        """
        config = self.config
        return changes(
            username,
            from_epoch,
            to_epoch,
            huge_ids=config.huge_ids,
            max_count=max_count,
            extra_keys=config.extra_keys,
            string_ids=config.string_ids,
            type_drift=config.type_drift,
            drifts=dict(self._drifts.get(username, ())),
        )

    @staticmethod
    def user_kind(username: str) -> str:
        """Return the kind of user a name selects: normal, missing, private, empty, big, ..."""
        return user_kind(username)

    #: ``pages_needed(username, max_count=100, *, epoch=None)``: the fewest research requests a
    #: perfect client needs for the user at `epoch`, by default the simulator's epoch knob, or
    #: 0 when asked of the class. For an ``endless`` user, the pages holding its videos.
    pages_needed = _PagesNeededAt()

    # -- handlers ---------------------------------------------------------------------------------

    def _error(
        self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None
    ) -> web.Response:
        config = self.config
        now = config.clock() if config.extra_keys else None
        return _api_error(status, code, message, headers, now)

    def _epoch(self, epoch: int | None) -> int:
        """Return `epoch`, checked, or the epoch knob's when it is None."""
        if epoch is None:
            return self.config.epoch
        checked = _count("epoch", epoch, 0, optional=False)
        assert checked is not None
        return checked

    def _wire(self, username: str) -> Wire:
        config = self.config
        drifts = self._drifts.get(username, ())
        if not (config.extra_keys or config.string_ids or config.type_drift or drifts):
            return PLAIN
        return Wire(config.extra_keys, config.string_ids, config.type_drift, drifts)

    async def _delay(self) -> None:
        config = self.config
        if config.latency or config.jitter:
            await asyncio.sleep(config.latency + self._random() * config.jitter)

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

    async def _token(self, request: web.Request) -> web.StreamResponse:
        self.stats.token_requests += 1
        arrived = self.config.clock()
        await self._delay()
        form = await request.post()
        if self._in_outage(arrived):
            self.stats.token_outage_failures += 1
            # A dropped connection gets no answer; what aiohttp writes after goes nowhere.
            return self._outage(request, research=False) or web.Response()
        fault = self._next_token_fault()
        if fault is None:
            return self._grant(form)
        self.stats.token_faults[fault] += 1
        if fault is Fault.DROP or (fault is Fault.HANG and not await self._hang()):
            self._drop(request, research=False)
            return web.Response()
        if fault is Fault.HANG:
            return self._grant(form)
        if fault is Fault.TRUNCATED:
            return await self._truncate(request, self._grant(form))
        return self._token_fault_response(fault)

    def _grant(self, form: Mapping[str, Any]) -> web.Response:
        """Answer a token request as the OAuth endpoint does: a token, or a flat error."""
        config = self.config
        for name, missing in (
            ("client_key", "Client key is missed in request."),
            ("client_secret", "Client secret is missed in request."),
            ("grant_type", "Grant type is missed in request."),
        ):
            if not form.get(name):
                return _token_error(400, "invalid_request", missing)
        if form["grant_type"] != "client_credentials":
            return _token_error(400, "invalid_request", "Only client_credentials is supported.")
        if form["client_key"] != config.client_key or form["client_secret"] != config.client_secret:
            # The live API answers wrong credentials with HTTP 200; only the body tells.
            return _token_error(200, "invalid_client", "Client key or secret is incorrect.")
        now = config.clock()
        lifetime = config.token_lifetime
        self._tokens = {t: at for t, at in self._tokens.items() if now - at < lifetime}
        token = "clt." + "".join(secrets.choice(_TOKEN_ALPHABET) for _ in range(40))
        self._tokens[token] = now
        self.stats.tokens_issued += 1
        return _json(200, {"access_token": token, "expires_in": lifetime, "token_type": "Bearer"})

    async def _research(self, request: web.Request) -> web.StreamResponse:
        self.stats.requests += 1
        self.stats.in_flight += 1
        self.stats.peak_in_flight = max(self.stats.peak_in_flight, self.stats.in_flight)
        try:
            response = await self._serve(request)
        except Exception as exc:
            response = _failure(request, exc)
        finally:
            self.stats.in_flight -= 1
        if response is None:
            # The connection is closed already; aiohttp's write of this goes nowhere.
            return web.Response()
        self.stats.by_status[response.status] += 1
        return response

    async def _serve(self, request: web.Request) -> web.StreamResponse | None:
        config = self.config
        now = config.clock()
        day = int(now // _DAY)
        if day != self._quota_day:
            # A quota used up on the day just ended may keep refusing past midnight.
            spent = (
                config.daily_quota is not None
                and self._quota_day == day - 1
                and self.stats.quota_used >= config.daily_quota
            )
            self._lag_day = day if spent else None
            self._quota_day, self.stats.quota_used = day, 0
        lagging = self._lag_day == day and now - day * _DAY < config.quota_reset_lag
        if not lagging:
            # Every research request counts, whatever its fate: the live API bills failures too.
            self.stats.quota_used += 1
        if config.rate_limit is not None:
            window = self._window
            window.append(now)
            while window[0] <= now - 1.0:
                window.popleft()
        query = await self._parse(request)
        if query.username is not None:
            self.stats.by_user[query.username] += 1
            if query.error is None:
                self.stats.by_cursor[query.username, query.cursor] += 1
        await self._delay()
        if self._in_outage(now):
            self.stats.outage_failures += 1
            return self._outage(request, research=True)
        if (refusal := self._refusal(request, now, lagging)) is not None:
            return refusal
        if query.error is not None:
            return self._error(400, "invalid_params", query.error)
        assert query.username is not None
        fault = self._next_fault(query.username)
        if fault is None:
            return self._answer(query)
        self.stats.faults[fault] += 1
        if fault is Fault.DROP:
            self._drop(request)
            return None
        if fault is Fault.HANG:
            if await self._hang():
                return self._answer(query)
            self._drop(request)
            return None
        if fault is Fault.TRUNCATED:
            return await self._truncate(request, self._answer(query))
        return self._fault_response(fault)

    def _refusal(self, request: web.Request, now: float, lagging: bool) -> web.Response | None:
        config = self.config
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        issued = self._tokens.get(token.strip()) if scheme.lower() == "bearer" else None
        if issued is None:
            return self._error(401, "access_token_invalid", TOKEN_MISSING_MESSAGE)
        if now - issued >= config.token_lifetime:
            return self._error(401, "access_token_invalid", TOKEN_EXPIRED_MESSAGE)
        if config.auth_failure == "scope_permission_missed":
            return self._error(400, "scope_permission_missed", SCOPE_MISSING_MESSAGE)
        if config.auth_failure == "scope_not_authorized":
            return self._error(401, "scope_not_authorized", NOT_APPROVED_MESSAGE)
        if lagging:
            self.stats.quota_lag_refusals += 1
            return self._error(429, "rate_limit_exceeded", config.quota_message)
        if config.daily_quota is not None and self.stats.quota_used > config.daily_quota:
            return self._error(429, "rate_limit_exceeded", config.quota_message)
        if config.rate_limit is not None and len(self._window) > config.rate_limit:
            retry = config.retry_after
            headers = None if retry is None else {"Retry-After": str(retry)}
            return self._error(429, "rate_limit_exceeded", config.rate_limit_message, headers)
        return None

    async def _parse(self, request: web.Request) -> _Query:
        raw_fields = request.query.get("fields")
        mask = self._field_mask(raw_fields)
        body = await request.read()
        try:
            payload = _decode(body)
        except msgspec.DecodeError:
            return _Query(None, "Invalid request body: it is not valid JSON")
        if not isinstance(payload, dict):
            return _Query(None, "Invalid request body: a JSON object is expected")
        username = payload.get("username")
        if not isinstance(username, str) or not username:
            problem = (
                "is missing" if username is None else f"must be a non-empty string: {username!r}"
            )
            return _Query(None, f"Invalid username: the username {problem}")
        if isinstance(mask, str):
            return _Query(username, mask)
        if (rejected := self._rejected(raw_fields)) is not None:
            return _Query(username, rejected)
        if request.content_type != "application/json":
            return _Query(username, "Invalid Content-Type: application/json is expected")
        max_count = payload.get("max_count", 20)
        if type(max_count) is not int or not 1 <= max_count <= 100:
            return _Query(username, f"Invalid max_count {max_count!r}: an integer from 1 to 100")
        cursor = payload.get("cursor", 0)
        if type(cursor) is not int or cursor < 0:
            return _Query(username, f"Invalid cursor {cursor!r}: an integer >= 0")
        return _Query(username, None, mask, max_count, cursor)

    def _rejected(self, raw: str | None) -> str | None:
        """Return the 400 message for the fields named that the API no longer accepts, if any."""
        rejected = self.config.rejected_fields
        if not rejected or raw is None:
            return None
        asked = dict.fromkeys(name.strip() for name in raw.split(","))
        refused = [name for name in asked if name in rejected]
        return f"Invalid fields: {','.join(refused)}" if refused else None

    def _field_mask(self, raw: str | None) -> int | str:
        if raw is None or not raw.strip():
            return "Invalid fields: the query parameter fields is required"
        known = self._fields.get(raw)
        if known is not None:
            return known
        try:
            result: int | str = field_mask([name.strip() for name in raw.split(",")])
        except KeyError as exc:
            result = f"Invalid fields: {exc.args[0]!r} is not a video field"
        if len(self._fields) >= 1024:
            self._fields.clear()
        self._fields[raw] = result
        return result

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

    def _answer(self, query: _Query) -> web.Response:
        username, max_count, cursor = query.username, query.max_count, query.cursor
        assert username is not None
        kind = user_kind(username)
        if kind == "missing":
            message = f"The username {username} is invalid: cannot find the user"
            return self._error(400, "invalid_params", message)
        if kind == "private":
            message = f"API cannot return this user's information: {username} is not public"
            return self._error(400, "invalid_params", message)
        config = self.config
        user = self._cache.get(
            username,
            config.huge_ids,
            query.mask,
            config.favorites_spelling == FAVOURITES_ALIAS,
            self._wire(username),
            config.epoch,
        )
        videos, count = user.page(cursor, cursor + max_count)
        if kind == "stall":
            next_cursor, has_more = cursor or max_count, True
        elif kind == "endless":
            # Past its real videos the walk goes on: empty pages, the cursor still advancing.
            next_cursor, has_more = cursor + max_count, True
        else:
            next_cursor = cursor + max_count
            has_more = next_cursor < user.total
        listed = (
            b""
            if count == 0 and config.omit_empty_list
            else b'"%s":[%s],' % (config.list_key.encode(), videos)
        )
        more = b"true" if has_more else b"false"
        log_id = _log_id().encode()
        if config.extra_keys:
            body = _EXTRA_PAGE % (
                log_id,
                listed,
                next_cursor,
                more,
                log_id,
                int(config.clock() * 1000),
            )
        else:
            body = _PAGE % (listed, next_cursor, more, log_id)
        return web.Response(body=body, content_type="application/json")
