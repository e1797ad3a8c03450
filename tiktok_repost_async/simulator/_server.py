"""The simulator's HTTP side: the aiohttp.web application, its handlers and its test controls.

Its knobs and counters are `_config`'s, its faults and error answers `_faults`'s.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import secrets
import string
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, Final, NamedTuple, Protocol

import msgspec
from aiohttp import web

from ._compliance import (
    CREATE_TASK_PATH,
    DOWNLOAD_TASK_PATH,
    TASK_STATUS_PATH,
    Refusal,
    Task,
    TaskBook,
    check_category,
    ok_answer,
    processing,
    read_ids,
    read_task_id,
)
from ._config import (
    _DAY,
    COMPLIANCE_FAULTS,
    NOT_APPROVED_MESSAGE,
    RESEARCH_PATH,
    SCOPE_MISSING_MESSAGE,
    TOKEN_EXPIRED_MESSAGE,
    TOKEN_FAULTS,
    TOKEN_MISSING_MESSAGE,
    TOKEN_PATH,
    Fault,
    GoneHow,
    SimulatorConfig,
    SimulatorStats,
    _count,
)
from ._data import DRIFT_KINDS, FAVOURITES_ALIAS, field_mask, pages_needed, repost_count, user_kind
from ._faults import (
    _draw,
    _errors,
    _failure,
    _Faults,
    _gateway,
    _json,
    _log_id,
    _token_error,
    _token_seed,
)
from ._thread import SimulatorThread
from ._wire import (
    PLAIN,
    EncodingCache,
    EpochChanges,
    Wire,
    changes,
    drift_plan,
    drifted,
    ground_truth,
    pretty,
)

__all__ = ["Simulator"]

_decode = msgspec.json.decode
_TOKEN_ALPHABET: Final = string.ascii_letters + string.digits
_PAGE: Final = (
    b'{"data":{%s"cursor":%s,"has_more":%s},"error":{"code":"ok","message":"","log_id":"%s"}}'
)
# The answer's unknown keys: one in data, one in error, one at the top level.
_EXTRA_PAGE: Final = (
    b'{"data":{"search_id":"%s",%s"cursor":%s,"has_more":%s},'
    b'"error":{"code":"ok","message":"","log_id":"%s","http_status_code":200},'
    b'"extra":{"now":%d,"fatal_item_ids":[]}}'
)
# The same without an error object (`no_error_object`): nothing in the answer names a log_id.
_BARE_PAGE: Final = b'{"data":{%s"cursor":%s,"has_more":%s}}'
_EXTRA_BARE_PAGE: Final = (
    b'{"data":{"search_id":"%s",%s"cursor":%s,"has_more":%s},'
    b'"extra":{"now":%d,"fatal_item_ids":[]}}'
)


class _Query(NamedTuple):
    username: str | None
    error: str | None
    mask: int = 0
    max_count: int = 0
    cursor: int = 0


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
            if simulator is not None:
                username = simulator.config.same_reposts.get(username, username)
            return pages_needed(username, max_count, epoch)

        return needed


class Simulator(_Faults):
    """A local TikTok Research API serving the reposted-videos endpoint and its token."""

    def __init__(self, config: SimulatorConfig | None = None, **knobs: Any) -> None:
        """Make a simulator; it serves once started (`start`, ``async with``, `run_in_thread`).

        :param config: the knobs to start from (None: `SimulatorConfig`'s defaults).
        :param knobs: fields of `SimulatorConfig` by name, set over ``config``
            (``Simulator(rate_limit=10, latency=0.05)``).
        """
        base = config if config is not None else SimulatorConfig()
        self.config = dataclasses.replace(base, **knobs) if knobs else base
        self.stats = SimulatorStats()
        self._tokens: dict[str, float] = {}
        self._scripts: dict[str, deque[Fault | None]] = {}
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
        self._tasks = TaskBook(self.config.seed)
        self._compliance_script: deque[Fault] = deque()

    # -- running -------------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Start serving on host:port (0 picks a free port); return the base URL.

        :param host: the address to listen on.
        :param port: the port to listen on (0: a free one).
        """
        if self._runner is not None:
            raise RuntimeError("the simulator is already running")
        app = web.Application(middlewares=[_errors])
        app.router.add_post(TOKEN_PATH, self._token)
        app.router.add_post(RESEARCH_PATH, self._research)
        for path in (CREATE_TASK_PATH, TASK_STATUS_PATH, DOWNLOAD_TASK_PATH):
            app.router.add_post(path, self._compliance)
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
        """Return a runner serving this simulator from a background thread: `with ... as url:`.

        :param host: the address to listen on.
        :param port: the port to listen on (0: a free one).
        """
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

    def script(self, username: str, faults: Iterable[Fault | str | None]) -> None:
        """Give the user's next research requests these faults, in order, then normal service.

        A None in ``faults`` is one request served normally: ``[None, "silent_empty"]`` answers
        the first page and then an empty list, as a silent empty that begins mid-walk.

        :param username: the user whose requests fail.
        :param faults: the faults, as `Fault` members or their values (``"server_error"``,
            ``"drop"`` ...), or None for a normal answer, one request each.
        """
        queue = self._scripts.setdefault(username, deque())
        queue.extend(None if fault is None else Fault(fault) for fault in faults)

    def script_token(self, faults: Iterable[Fault | str]) -> None:
        """Give the next token requests these faults, in order, then normal service.

        Each is one of TOKEN_FAULTS; scripted faults come before random `token_faults`.

        :param faults: the faults, as `Fault` members or their values, one token request each.
        """
        added = [Fault(fault) for fault in faults]
        for fault in added:
            if fault not in TOKEN_FAULTS:
                kinds = ", ".join(TOKEN_FAULTS)
                raise ValueError(f"{fault.value!r} is not a token endpoint fault; kinds: {kinds}")
        self._token_script.extend(added)

    def script_compliance(self, faults: Iterable[Fault | str]) -> None:
        """Give the next compliance requests these faults, in order, then normal service.

        Each is one of COMPLIANCE_FAULTS; scripted faults come before random `compliance_faults`.

        :param faults: the faults, as `Fault` members or their values, one compliance request each.
        """
        added = [Fault(fault) for fault in faults]
        for fault in added:
            if fault not in COMPLIANCE_FAULTS:
                kinds = ", ".join(COMPLIANCE_FAULTS)
                raise ValueError(f"{fault.value!r} is not a compliance fault; kinds: {kinds}")
        self._compliance_script.extend(added)

    def remove_user(self, username: str, *, how: str = "missing") -> None:
        """Answer a user's research requests from now on as ``missing`` (deleted) or ``private``.

        What a researcher meets when an account harvested earlier is deleted or made private
        (or its owner opted out): the user's requests are refused as for a ``missing…`` or
        ``private…`` name. Compliance tasks still find its videos as before.

        :param username: the user.
        :param how: ``"missing"`` (the account is gone) or ``"private"`` (it is no longer public).
        """
        if how not in ("missing", "private"):
            raise ValueError(f"how must be 'missing' or 'private', not {how!r}")
        # The knob (`gone_users`, `serve --remove-user`) holds them: a new dict, checked.
        gone: GoneHow = "missing" if how == "missing" else "private"
        self.config.gone_users = {**self.config.gone_users, username: gone}

    def fail_tasks(self, count: int = 1) -> None:
        """Make the next `count` compliance tasks end Failed, whatever `task_failure_rate` says.

        :param count: how many of the next tasks fail.
        """
        checked = _count("count", count, 1, optional=False)
        assert checked is not None
        self._tasks.failures_scripted += checked

    def task(self, task_id: int) -> Task:
        """Return the compliance task of this id (its ids, epoch, and the ids it found valid).

        :param task_id: the id the create task endpoint answered.
        """
        return self._tasks.tasks[task_id]

    @property
    def tasks(self) -> list[Task]:
        """Return every compliance task created so far, oldest first."""
        return list(self._tasks.tasks.values())

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

        :param username: the user.
        :param indices: positions, from 0, in the user's full repost list at epoch 0.
        :param kind: one of DRIFT_KINDS for every position (None: each video picks one).
        """
        if kind is not None and kind not in DRIFT_KINDS:
            raise ValueError(f"unknown drift kind {kind!r}; kinds: {', '.join(DRIFT_KINDS)}")
        # A user who reposted what another did shares its videos, drift and all.
        username = self.config.same_reposts.get(username, username)
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

        :param username: the user.
        :param epoch: the epoch whose list the positions count in (None: the epoch knob's).
        """
        username = self.config.same_reposts.get(username, username)
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

        :param username: the user.
        :param max_count: the page size of the walk (it matters to ``stall…`` users only).
        :param fields: the fields a request asked for (None: every field).
        :param epoch: the epoch whose list to give (None: the epoch knob's).
        """
        config = self.config
        username = config.same_reposts.get(username, username)
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
            odd_values=config.odd_values,
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

        :param username: the user.
        :param from_epoch: the earlier epoch.
        :param to_epoch: the later epoch (at least ``from_epoch``).
        :param max_count: the page size of the walks (it matters to ``stall…`` users only).
        """
        config = self.config
        username = config.same_reposts.get(username, username)
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
            odd_values=config.odd_values,
        )

    @staticmethod
    def user_kind(username: str) -> str:
        """Return the kind of user a name selects: normal, missing, private, empty, big, ...

        :param username: the name.
        """
        return user_kind(username)

    #: ``pages_needed(username, max_count=100, *, epoch=None)``: the fewest research requests a
    #: perfect client needs for the user at `epoch`, by default the simulator's epoch knob, or
    #: 0 when asked of the class. For an ``endless`` user, the pages holding its videos.
    pages_needed = _PagesNeededAt()

    # -- handlers ---------------------------------------------------------------------------------

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
        odd = config.odd_values
        if not (config.extra_keys or config.string_ids or config.type_drift or drifts or odd):
            return PLAIN
        return Wire(
            config.extra_keys, config.string_ids, config.type_drift, drifts, config.odd_values
        )

    async def _delay(self) -> None:
        config = self.config
        if config.latency or config.jitter:
            await asyncio.sleep(config.latency + self._random() * config.jitter)

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

    def _bill(self, now: float) -> bool:
        """Count a request in the quota day and the rate window; True during a lagging reset."""
        config = self.config
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
        return lagging

    async def _serve(self, request: web.Request) -> web.StreamResponse | None:
        config = self.config
        now = config.clock()
        lagging = self._bill(now)
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
        if fault is Fault.SILENT_EMPTY:
            return self._answer(query, empty=True)
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

    def _answer(self, query: _Query, *, empty: bool = False) -> web.Response:
        username, max_count, cursor = query.username, query.max_count, query.cursor
        assert username is not None
        config = self.config
        # A user who reposted what another did is served the other's list, under its own name.
        source = config.same_reposts.get(username, username)
        kind = config.gone_users.get(username) or user_kind(source)
        if kind == "missing":
            message = f"The username {username} is invalid: cannot find the user"
            return self._error(400, "invalid_params", message)
        if kind == "private":
            message = f"API cannot return this user's information: {username} is not public"
            return self._error(400, "invalid_params", message)
        # Its videos now exist for compliance tasks (see `_compliance`).
        self._tasks.serve(source, config.huge_ids)
        user = self._cache.get(
            source,
            config.huge_ids,
            query.mask,
            config.favorites_spelling == FAVOURITES_ALIAS,
            self._wire(source),
            config.epoch,
        )
        videos, count = user.page(cursor, cursor + max_count)
        if empty:
            # The API's silent empty: an answer like any other, that holds nothing at all.
            videos, count, next_cursor, has_more = b"", 0, cursor, False
        elif kind == "stall":
            next_cursor, has_more = cursor or max_count, True
        elif kind == "endless":
            # Past its real videos the walk goes on: empty pages, the cursor still advancing.
            next_cursor, has_more = cursor + max_count, True
        else:
            next_cursor = cursor + max_count
            has_more = next_cursor < user.total
        if count == 0 and config.omit_empty_list:
            listed = b""
        elif config.pretty_videos or config.both_list_keys or config.unknown_list_key:
            listed = self._lists([] if empty else user.objects(cursor, cursor + max_count))
        else:
            listed = b'"%s":[%s],' % (config.list_key.encode(), videos)
        more = b"true" if has_more else b"false"
        log_id = _log_id().encode()
        sent_cursor = b"null" if has_more and config.null_cursor else b"%d" % next_cursor
        if config.no_error_object:
            if config.extra_keys:
                now = int(config.clock() * 1000)
                body = _EXTRA_BARE_PAGE % (log_id, listed, sent_cursor, more, now)
            else:
                body = _BARE_PAGE % (listed, sent_cursor, more)
        elif config.extra_keys:
            body = _EXTRA_PAGE % (
                log_id,
                listed,
                sent_cursor,
                more,
                log_id,
                int(config.clock() * 1000),
            )
        else:
            body = _PAGE % (listed, sent_cursor, more, log_id)
        return web.Response(body=body, content_type="application/json")

    def _lists(self, objects: list[bytes]) -> bytes:
        """Return the data object's list member(s), as the list knobs lay them out."""
        config = self.config
        if config.pretty_videos:
            objects = [pretty(video, level=2) for video in objects]
        key = config.unknown_list_key or config.list_key
        if not config.both_list_keys or not objects or config.unknown_list_key:
            lists = [(key, objects)]
        else:
            other = "user_reposted_videos" if key == "reposted_videos" else "reposted_videos"
            if config.both_list_keys == "duplicated":
                lists = [(key, objects), (other, objects)]
            else:
                half = (len(objects) + 1) // 2
                lists = [(key, objects[:half]), (other, objects[half:])]
        glue = b",\n    " if config.pretty_videos else b","
        return b"".join(
            b'"%s":[%s],' % (name.encode(), glue.join(videos)) for name, videos in lists
        )

    # -- the Batch Compliance endpoints -----------------------------------------------------------

    async def _compliance(self, request: web.Request) -> web.StreamResponse:
        stats = self.stats
        stats.compliance_requests += 1
        stats.compliance_by_path[request.path] += 1
        try:
            response = await self._serve_compliance(request)
        except Exception as exc:
            response = _failure(request, exc)
        if response is None:
            return web.Response()
        stats.compliance_by_status[response.status] += 1
        return response

    async def _serve_compliance(self, request: web.Request) -> web.StreamResponse | None:
        """Serve a compliance request: billed, limited and refused like a research request."""
        config = self.config
        now = config.clock()
        # Whether TikTok counts these calls is undocumented: the simulator assumes it does.
        lagging = self._bill(now)
        await self._delay()
        if self._in_outage(now):
            kind = config.outage_kind
            if kind == "drop":
                self._drop(request, research=False)
                return None
            return _gateway(504) if kind == "gateway" else self._error(500, "internal_error", "")
        if (refusal := self._refusal(request, now, lagging)) is not None:
            return refusal
        fault = self._next_compliance_fault()
        if fault is not None:
            self.stats.compliance_faults[fault] += 1
            if fault is Fault.DROP:
                # Before the request is read: a created task never comes of it.
                self._drop(request, research=False)
                return None
            if fault is Fault.HANG and not await self._hang():
                self._drop(request, research=False)
                return None
            if fault not in (Fault.HANG, Fault.TRUNCATED):
                return self._fault_response(fault)
        try:
            answer = await self._compliance_answer(request, now)
        except Refusal as refused:
            return self._error(400, refused.code, refused.message)
        if fault is Fault.TRUNCATED:
            # Served (a task may have been created), and the answer cut short.
            return await self._truncate(request, answer)
        return answer

    def _next_compliance_fault(self) -> Fault | None:
        if self._compliance_script:
            return self._compliance_script.popleft()
        faults = self.config.compliance_faults
        return _draw(faults, self._tasks.random()) if faults else None

    async def _compliance_answer(self, request: web.Request, now: float) -> web.Response:
        config = self.config
        if request.path == CREATE_TASK_PATH:
            if request.content_type != "multipart/form-data":
                # The documentation's curl says application/json while it sends a form.
                raise Refusal(
                    "invalid_file_upload",
                    f"The request holds no file: a multipart/form-data body is expected, not"
                    f" {request.content_type}",
                )
            try:
                form = await request.post()
            except Exception as exc:
                # Whatever aiohttp's reader stumbles on (a bad part header, a cut body) is a
                # malformed upload, not the server's fault.
                shown = " ".join(str(exc).split())[:200]
                raise Refusal("invalid_file_upload", f"Malformed multipart body: {shown}") from None
            upload = form.get("file_data")
            if not isinstance(upload, web.FileField):
                raise Refusal("invalid_file_upload", "The form field file_data must be a file")
            category = check_category(form.get("category"))
            ids = read_ids(upload.file.read())
            task = self._tasks.create(ids, category, config.epoch, now, config.task_failure_rate)
            self.stats.tasks_created += 1
            task_id: int | str = str(task.task_id) if config.string_ids else task.task_id
            return self._ok({"task_id": task_id})
        task = self._tasks.find(read_task_id(await request.read(), request.content_type))
        busy = processing(task, now, config.task_processing_seconds, config.task_processing_polls)
        if request.path == TASK_STATUS_PATH:
            if busy:
                task.processing_answers += 1
                return self._ok({"task_status": "Processing"})
            return self._ok({"task_status": "Failed" if task.fails else "Completed"})
        if busy:
            raise Refusal(
                "invalid_params",
                f"Task {task.task_id} is still processing: download it once it is Completed",
            )
        if task.fails:
            raise Refusal("invalid_params", f"Task {task.task_id} failed: it has no result")
        if config.download_format == "html":
            page = "<!DOCTYPE html><html><head><title>TikTok for Developers</title></head>"
            return web.Response(text=page + "<body>Log in</body></html>", content_type="text/html")
        if config.download_format == "json":
            return self._ok({})
        return web.Response(
            body=b"".join(b"%d\n" % video_id for video_id in task.valid),
            content_type="text/plain",
            headers={"Content-Disposition": f'attachment; filename="{task.task_id}.txt"'},
        )

    def _ok(self, data: dict[str, Any]) -> web.Response:
        return web.Response(body=ok_answer(data, _log_id()), content_type="application/json")
