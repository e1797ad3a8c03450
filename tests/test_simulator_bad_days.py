"""The simulator's bad days over real loopback sockets: endless users, outages, refusals, lag."""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Awaitable
from typing import Any, NamedTuple

import aiohttp
import pytest
from support import MIDNIGHT, FakeClock

from tiktok_repost_async.cli import build_parser
from tiktok_repost_async.simulator import (
    QUOTA_MESSAGE,
    RATE_LIMIT_MESSAGE,
    RESEARCH_PATH,
    TEST_CLIENT_KEY,
    TEST_CLIENT_SECRET,
    TOKEN_FAULTS,
    TOKEN_PATH,
    VIDEO_FIELDS,
    Fault,
    Simulator,
    SimulatorConfig,
    add_simulator_arguments,
    config_from_args,
    main,
)

ALL = ",".join(VIDEO_FIELDS)
LOG_ID = re.compile(rb'"log_id":"[0-9A-F]{34}"')
ACCESS_TOKEN = re.compile(rb'"access_token":"clt\.[A-Za-z0-9]{40}"')


class Raw(NamedTuple):
    status: int
    content_type: str
    retry_after: str | None
    raw: bytes

    @property
    def body(self) -> dict[str, Any]:
        # json, not msgspec: Python's json keeps every integer exact, whatever its size.
        body: dict[str, Any] = json.loads(self.raw)
        return body

    @property
    def data(self) -> dict[str, Any]:
        data: dict[str, Any] = self.body["data"]
        return data

    @property
    def error(self) -> dict[str, Any]:
        error: dict[str, Any] = self.body["error"]
        return error

    @property
    def fingerprint(self) -> str:
        """Return the sha256 of what the answer shows, its random log_id and token emptied."""
        raw = ACCESS_TOKEN.sub(b'"access_token":""', LOG_ID.sub(b'"log_id":""', self.raw))
        head = f"{self.status} {self.content_type} {self.retry_after}\n".encode()
        return hashlib.sha256(head + raw).hexdigest()


class Dropped(NamedTuple):
    """The connection closed without an answer."""

    error: str


class Api:
    """A bare client of the simulator that keeps every answer's bytes and headers."""

    def __init__(self, session: aiohttp.ClientSession, sim: Simulator) -> None:
        self.session = session
        self.sim = sim
        self.access_token: str | None = None

    async def token(self, secret: str | None = None) -> Raw | Dropped:
        form = {
            "client_key": self.sim.client_key,
            "client_secret": self.sim.client_secret if secret is None else secret,
            "grant_type": "client_credentials",
        }
        return await self._post(self.sim.base_url + TOKEN_PATH, data=form)

    async def bearer(self) -> str:
        if self.access_token is None:
            answer = await self.token()
            assert isinstance(answer, Raw), answer
            self.access_token = answer.body["access_token"]
        assert self.access_token is not None
        return self.access_token

    async def page(
        self,
        username: str,
        cursor: int = 0,
        max_count: int = 100,
        fields: str = ALL,
        token: str | None = None,
    ) -> Raw | Dropped:
        bearer = await self.bearer() if token is None else token
        return await self._post(
            self.sim.base_url + RESEARCH_PATH,
            params={"fields": fields},
            json={"username": username, "cursor": cursor, "max_count": max_count},
            headers={"Authorization": f"Bearer {bearer}"},
        )

    async def ok(self, username: str, cursor: int = 0, max_count: int = 100) -> Raw:
        answer = await self.page(username, cursor, max_count)
        assert isinstance(answer, Raw), answer
        assert answer.status == 200, answer
        return answer

    async def _post(self, url: str, **post: Any) -> Raw | Dropped:
        try:
            async with self.session.post(url, **post) as response:
                raw = await response.read()
                return Raw(
                    response.status,
                    response.content_type,
                    response.headers.get("Retry-After"),
                    raw,
                )
        except aiohttp.ClientError as exc:
            return Dropped(type(exc).__name__)


async def status_of(answer: Awaitable[Raw | Dropped]) -> int | None:
    """Return an answer's HTTP status; None if the connection closed without one."""
    done = await answer
    return done.status if isinstance(done, Raw) else None


@pytest.fixture
async def sim(clock: FakeClock) -> AsyncIterator[Simulator]:
    async with Simulator(clock=clock) as simulator:
        yield simulator


@pytest.fixture
async def api(sim: Simulator) -> AsyncIterator[Api]:
    # A fresh connection per request: a dropped one must not poison the next request.
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:
        yield Api(session, sim)


# -- knobs off: nothing changes ------------------------------------------------------------------


async def default_answers(sim: Simulator, api: Api) -> dict[str, str]:
    """Return the fingerprint of each of a fixed set of answers of a simulator with knobs off."""
    prints: dict[str, str] = {}

    async def keep(name: str, answer: Raw | Dropped) -> None:
        assert isinstance(answer, Raw), (name, answer)
        prints[name] = answer.fingerprint

    await keep("token", await api.token())
    await keep("token-wrong-secret", await api.token(secret="nope"))
    for username, cursor in [
        ("bench_n250_7", 0),
        ("bench_n250_7", 200),
        ("endless_n250", 100),
        ("short_gus", 100),
        ("stall_fay", 100),
        ("hugeid_hal", 0),
        ("empty_x", 0),
        ("missing_x", 0),
        ("private_x", 0),
    ]:
        await keep(f"{username}@{cursor}", await api.page(username, cursor))
    await keep("unknown-field", await api.page("alice", fields="id,nope"))
    await keep("bad-token", await api.page("alice", token="clt.nope"))
    faults = [
        Fault.SERVER_ERROR,
        Fault.SERVER_ERROR,
        Fault.BAD_GATEWAY,
        Fault.GATEWAY_TIMEOUT,
        Fault.RATE_LIMIT,
        Fault.RATE_LIMIT_NO_RETRY_AFTER,
        Fault.QUOTA,
        Fault.INVALID_CURSOR,
        Fault.TOKEN_INVALID,
    ]
    sim.script("carol", faults)
    for number in range(len(faults)):
        await keep(f"fault-{number}", await api.page("carol"))
    sim.config.daily_quota = sim.stats.quota_used
    await keep("daily-quota", await api.page("alice"))
    sim.config.daily_quota = None
    sim.config.rate_limit, sim.config.retry_after = 1, 3
    await api.page("alice")
    await keep("rate-limit", await api.page("alice"))
    return prints


# sha256 of each answer's status, Content-Type, Retry-After and body (log_id and token emptied),
# taken before any bad-day knob existed.
GOLDEN = {
    "token": "93bed692bea29d07e3193b489ed97da3f35c992719895bf6d0d97a3aee098041",
    "token-wrong-secret": "0465cebd719f05b423ee842b4b62d0b78679e4aab05f65b3b65069488f885736",
    "bench_n250_7@0": "4b9078c49fed1fe206517963294b032a1f50dc2b78734ec299e549c8ee62f623",
    "bench_n250_7@200": "4f1f839095f441efdd47ebe3373031b0ca06bbcfc0aeb4bbec98c669d602a04d",
    "endless_n250@100": "693948efab2b43ed44fea348715415e1c3876fb42b6a24670c2a7492afd322b3",
    "short_gus@100": "b000dfa08c6fac33d784a98d9c5f118ce8be80b2a59ccc9f81a9ca59402775ea",
    "stall_fay@100": "c27967bfa884e37d5a81de0ee40ebfbda47cbb24a9313cac01ad3501062e0ba9",
    "hugeid_hal@0": "84112a596b0936911993ef6976ab58297f318c60836577be29ff804f76957372",
    "empty_x@0": "b5d48c1fbe635c155ca17905f77b638770aa5e65c4816e2810eece6b57bb4023",
    "missing_x@0": "0194836887009d56cd81922e3ae3e2c9b6aa246807a7270ed230076751eb544d",
    "private_x@0": "77418def4a7249a7bf23eceeb704a7b3d5d56c1b0fa7f8dcba22c989286c0518",
    "unknown-field": "a15700b6167a81a8c9e0af6365455d5c0c9f119c715f4a6c567159fd79a1428e",
    "bad-token": "b307a5e7f55f0e99d168663dd76862402717bed779f9bdfb1cdad2c18bdc1b41",
    "fault-0": "6a368c946578a38927b32586fc3b2aaae24f72c81fdfc51395a7a77c017f3194",
    "fault-1": "ea67f5171442f8e6931ee9ae3352ba991599d40806463d603962a48dfc73f415",
    "fault-2": "a2299edde3d91e77084546d65f1b4869f0c88d3f3a0c77e0b51d779a439c2176",
    "fault-3": "291f71609ac9b2075e48940da8a0c7133dc1584abbaff3737969e5b39e1a521e",
    "fault-4": "ad537ae491b752db9ac1cdd05944548ef0676910e67bd2b4cda5afc5885d73c6",
    "fault-5": "7f05dbf86efd98134791d95ffd9299d13f4909323c09e1c0f3c71be5f05dc72c",
    "fault-6": "e4c28bd800b4142f880fb8bb61b27fd88f98a840312a00130ee593b3b3494258",
    "fault-7": "e84ca1a8a598a75a47b7f64f1a3c6591dcc397636af2049ba8a29a92fe664ec2",
    "fault-8": "b307a5e7f55f0e99d168663dd76862402717bed779f9bdfb1cdad2c18bdc1b41",
    "daily-quota": "e4c28bd800b4142f880fb8bb61b27fd88f98a840312a00130ee593b3b3494258",
    "rate-limit": "b6bb130745ea45512227b51f4ccdd3c4b10b9674ea82d604f3999520340bbd2d",
}


async def test_default_answers_are_byte_identical_to_before_the_bad_day_knobs(
    sim: Simulator, api: Api
) -> None:
    assert await default_answers(sim, api) == GOLDEN


# -- endless users -------------------------------------------------------------------------------


@pytest.mark.parametrize("max_count", [100, 30])
async def test_endless_user_serves_its_reposts_then_empty_pages_forever(
    sim: Simulator, api: Api, max_count: int
) -> None:
    username = "endless_n250"
    truth = sim.ground_truth(username)
    assert len(truth) == 250
    assert sim.user_kind(username) == "endless"
    real_pages = -(-250 // max_count)
    assert sim.pages_needed(username, max_count) == real_pages
    videos: list[Any] = []
    cursor = 0
    for _ in range(real_pages):
        page = await api.ok(username, cursor, max_count)
        assert page.data["has_more"] is True
        assert page.data["cursor"] == cursor + max_count
        videos += page.data["reposted_videos"]
        cursor = page.data["cursor"]
    assert videos == truth
    # Past the end: nothing, has_more true, the cursor moving on by max_count, as far as asked.
    for _ in range(5):
        page = await api.ok(username, cursor, max_count)
        assert page.data == {"reposted_videos": [], "cursor": cursor + max_count, "has_more": True}
        cursor = page.data["cursor"]
    far = await api.ok(username, 10**9, max_count)
    assert far.data == {"reposted_videos": [], "cursor": 10**9 + max_count, "has_more": True}
    assert sim.stats.requests == real_pages + 6


async def test_endless_user_without_reposts_needs_one_page_and_never_ends(
    sim: Simulator, api: Api
) -> None:
    assert sim.ground_truth("endless_n0") == []
    assert sim.pages_needed("endless_n0") == 1
    first = await api.ok("endless_n0")
    assert first.data == {"reposted_videos": [], "cursor": 100, "has_more": True}
    sim.config.omit_empty_list = True
    second = await api.ok("endless_n0", 100)
    assert second.data == {"cursor": 200, "has_more": True}


def test_endless_users_without_a_count_have_as_many_reposts_as_a_normal_name() -> None:
    counts = {len(Simulator().ground_truth(f"endless_{i}")) for i in range(40)}
    assert 0 in counts
    assert max(counts) <= 600
    assert len(counts) > 20


# -- an outage window ----------------------------------------------------------------------------


def assert_outage_answer(answer: Raw | Dropped, kind: str, *, token: bool) -> None:
    """Check that an answer is the outage of this kind, in the research or the token shape."""
    if kind == "drop":
        assert isinstance(answer, Dropped), answer
        return
    assert isinstance(answer, Raw), answer
    if kind == "gateway":
        assert (answer.status, answer.content_type) == (504, "text/html")
        assert "504 Gateway Time-out" in answer.raw.decode()
        return
    assert (answer.status, answer.content_type) == (500, "application/json")
    if token:
        assert answer.body["error"] == "internal_error"
        assert answer.body["error_description"] == ""
        assert "access_token" not in answer.body
    else:
        assert answer.data == {}
        assert answer.error["code"] == "internal_error"
        assert answer.error["message"] == ""


@pytest.mark.parametrize("kind", ["server_error", "gateway", "drop"])
async def test_outage_fails_every_request_from_its_start_to_its_end_on_the_clock(
    sim: Simulator, api: Api, clock: FakeClock, kind: str
) -> None:
    start = clock.now + 10
    sim.config.outage_start, sim.config.outage_seconds = start, 180.0
    sim.config.outage_kind = kind  # type: ignore[assignment]
    before = await api.ok("alice")
    for now in (start, start + 90, start + 179.999):
        clock.now = now
        assert_outage_answer(await api.page("alice"), kind, token=False)
        assert_outage_answer(await api.page("big_eve", 100), kind, token=False)
        # Not even the token is looked at: the API is not there to look.
        assert_outage_answer(await api.page("alice", token="clt.nope"), kind, token=False)
        assert_outage_answer(await api.token(), kind, token=True)
    clock.now = start + 180
    after = await api.ok("alice")
    assert after.data == before.data
    assert isinstance(await api.token(), Raw)
    stats = sim.stats
    assert stats.outage_failures == 9
    assert stats.token_outage_failures == 3
    # Failures are billed like any request: the live API counts them against the quota.
    assert stats.requests == stats.quota_used == 1 + 9 + 1
    assert stats.token_requests == 1 + 3 + 1
    assert stats.tokens_issued == 2
    assert stats.by_user["alice"] == 1 + 6 + 1
    assert stats.dropped == (9 if kind == "drop" else 0)
    assert sum(stats.by_status.values()) == stats.requests - stats.dropped
    assert not stats.faults


async def test_outage_answers_are_the_documented_shapes_with_the_knobs_off_again(
    sim: Simulator, api: Api, clock: FakeClock
) -> None:
    await api.bearer()
    sim.config.outage_start, sim.config.outage_seconds = clock.now, 60.0
    assert_outage_answer(await api.page("alice"), "server_error", token=False)
    sim.config.outage_start = None
    await api.ok("alice")
    sim.config.outage_start, sim.config.outage_seconds = clock.now, 0.0
    await api.ok("alice")
    sim.config.outage_start, sim.config.outage_seconds = clock.now + 1, 60.0
    await api.ok("alice")
    assert sim.stats.outage_failures == 1


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("outage_start", -1),
        ("outage_start", "soon"),
        ("outage_seconds", -5),
        ("outage_seconds", None),
        ("outage_kind", "timeout"),
        ("persistent_fault", "nope"),
    ],
)
def test_bad_outage_and_persistent_fault_values_are_refused(name: str, value: Any) -> None:
    sim = Simulator()
    with pytest.raises(ValueError, match=name):
        setattr(sim.config, name, value)
    with pytest.raises(ValueError, match=name):
        Simulator(**{name: value})


# -- a persistent error mode ---------------------------------------------------------------------


async def test_persistent_fault_hits_every_request_until_it_is_cleared(
    sim: Simulator, api: Api
) -> None:
    sim.script("bob", [Fault.INVALID_CURSOR])
    sim.config.faults = {Fault.RATE_LIMIT: 1.0}
    sim.config.persistent_fault = "server_error"  # type: ignore[assignment]
    assert sim.config.persistent_fault is Fault.SERVER_ERROR
    answers = [await api.page(name) for name in ("bob", "alice", "carol", "bob")]
    assert all(isinstance(a, Raw) and a.status == 500 for a in answers)
    assert sim.stats.faults == {Fault.SERVER_ERROR: 4}
    sim.config.persistent_fault = None
    # The scripted fault waited; the random one comes back with the persistent one gone.
    bob = await api.page("bob")
    assert isinstance(bob, Raw)
    assert (bob.status, bob.error["message"]) == (400, "Invalid count or cursor")
    sim.config.faults = {}
    await api.ok("bob")


async def test_persistent_token_invalid_outlives_a_fresh_token(sim: Simulator, api: Api) -> None:
    sim.config.persistent_fault = Fault.TOKEN_INVALID
    for _ in range(3):
        api.access_token = None
        answer = await api.page("alice")
        assert isinstance(answer, Raw)
        assert (answer.status, answer.error["code"]) == (401, "access_token_invalid")
    assert sim.stats.tokens_issued == 3
    sim.config.persistent_fault = Fault.DROP
    assert isinstance(await api.page("alice"), Dropped)
    assert sim.stats.dropped == 1
    sim.config.persistent_fault = None
    await api.ok("alice")


# -- a rejected field ----------------------------------------------------------------------------


async def test_rejected_field_gets_400_invalid_fields_naming_it(sim: Simulator, api: Api) -> None:
    sim.config.rejected_fields = frozenset({"video_tag"})
    answer = await api.page("alice")
    assert isinstance(answer, Raw)
    assert (answer.status, answer.content_type) == (400, "application/json")
    assert answer.body == {
        "data": {},
        "error": {
            "code": "invalid_params",
            "message": "Invalid fields: video_tag",
            "log_id": answer.error["log_id"],
        },
    }
    assert re.fullmatch(r"\d{14}[0-9A-F]{20}", answer.error["log_id"])
    assert await status_of(api.page("alice", fields="id,create_time")) == 200
    sim.config.rejected_fields = frozenset()
    await api.ok("alice")
    assert sim.stats.requests == sim.stats.quota_used == 3
    assert sim.stats.by_cursor["alice", 0] == 2


async def test_several_rejected_fields_are_comma_joined_in_the_request_order(
    sim: Simulator, api: Api
) -> None:
    names: Any = ["region_code", "video_tag", "favorites_count"]
    sim.config.rejected_fields = names
    assert sim.config.rejected_fields == {"region_code", "video_tag", "favorites_count"}
    answer = await api.page("alice", fields="id,video_tag,like_count,region_code,video_tag")
    assert isinstance(answer, Raw)
    assert answer.error["message"] == "Invalid fields: video_tag,region_code"
    # Names are matched as spelled: the other spelling of the favourites count still passes.
    assert await status_of(api.page("alice", fields="id,favourites_count")) == 200
    refused = await api.page("alice", fields="favorites_count")
    assert isinstance(refused, Raw)
    assert refused.error["message"] == "Invalid fields: favorites_count"


@pytest.mark.parametrize("value", ["video_tag", {"nope"}, 3, ["id", None]])
def test_rejected_fields_must_be_video_field_names(value: Any) -> None:
    with pytest.raises(ValueError, match="rejected_fields"):
        Simulator().config.rejected_fields = value


# -- scope and approval failures -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("failure", "status", "words"),
    [
        ("scope_permission_missed", 400, ("scope", "research.data.basic")),
        ("scope_not_authorized", 401, ("not approved",)),
    ],
)
async def test_auth_failure_refuses_every_research_request(
    sim: Simulator, api: Api, failure: str, status: int, words: tuple[str, ...]
) -> None:
    sim.config.auth_failure = failure  # type: ignore[assignment]
    for username in ("alice", "big_eve", "missing_x"):
        answer = await api.page(username)
        assert isinstance(answer, Raw)
        assert answer.status == status
        assert answer.data == {}
        assert answer.error["code"] == failure
        assert all(word in answer.error["message"] for word in words)
    assert sim.stats.by_status == {status: 3}
    # The token endpoint still issues tokens; a bad token is still told apart.
    api.access_token = None
    bad = await api.page("alice", token="clt.nope")
    assert isinstance(bad, Raw)
    assert (bad.status, bad.error["code"]) == (401, "access_token_invalid")
    sim.config.auth_failure = None
    await api.ok("alice")
    assert sim.stats.tokens_issued == 2


def test_auth_failure_knob_takes_the_two_codes_only() -> None:
    with pytest.raises(ValueError, match="auth_failure"):
        Simulator(auth_failure="access_denied")


# -- the quota 429's text ------------------------------------------------------------------------


async def test_quota_429_can_carry_a_neutral_text_and_never_a_retry_after(
    sim: Simulator, api: Api
) -> None:
    sim.config.retry_after = 5
    sim.config.quota_message = "Rate limit exceeded"
    sim.config.daily_quota = 1
    await api.ok("alice")
    refused = await api.page("alice")
    sim.config.daily_quota = None
    sim.script("bob", [Fault.QUOTA, Fault.RATE_LIMIT, Fault.RATE_LIMIT_NO_RETRY_AFTER])
    fault, short, short_bare = [await api.page("bob") for _ in range(3)]
    for answer in (refused, fault):
        assert isinstance(answer, Raw)
        assert answer.status == 429
        assert answer.error["code"] == "rate_limit_exceeded"
        assert answer.error["message"] == "Rate limit exceeded"
        # Neither quota 429 says when to come back, with the knob or without it.
        assert answer.retry_after is None
    assert isinstance(short, Raw)
    assert isinstance(short_bare, Raw)
    assert (short.error["code"], short.retry_after) == ("rate_limit_exceeded", "5")
    assert (short_bare.error["code"], short_bare.retry_after) == ("rate_limit_exceeded", None)
    assert short.error["message"] == short_bare.error["message"] != "Rate limit exceeded"


async def test_short_term_429_can_mention_a_quota(
    sim: Simulator, api: Api, clock: FakeClock
) -> None:
    sim.config.rate_limit_message = "Quota exceeded for this second"
    sim.config.rate_limit = 1
    await api.ok("alice")
    limited = await api.page("alice")
    assert isinstance(limited, Raw)
    assert (limited.status, limited.error["message"]) == (429, "Quota exceeded for this second")
    assert limited.retry_after is None
    clock.now += 1
    sim.script("alice", [Fault.RATE_LIMIT])
    scripted = await api.page("alice")
    assert isinstance(scripted, Raw)
    assert (scripted.error["message"], scripted.retry_after) == (
        "Quota exceeded for this second",
        "1",
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [("quota_message", None), ("rate_limit_message", 429), ("quota_reset_lag", -1)],
)
def test_bad_quota_text_and_lag_values_are_refused(name: str, value: Any) -> None:
    with pytest.raises(ValueError, match=name):
        Simulator(**{name: value})


def test_quota_reset_lag_stays_under_a_day() -> None:
    with pytest.raises(ValueError, match="quota_reset_lag"):
        Simulator().config.quota_reset_lag = 86_401


# -- a lagging reset -----------------------------------------------------------------------------


async def spend_the_quota(
    sim: Simulator, api: Api, clock: FakeClock, midnight: float = MIDNIGHT + 86_400
) -> None:
    """Use up what is left of a quota of 3 a few minutes before midnight, until it refuses."""
    # Tokens outlive the days these tests cross: only the quota may refuse.
    sim.config.token_lifetime = 7 * 86_400
    sim.config.daily_quota = 3
    clock.now = midnight - 300
    for _ in range(3):
        if (status := await status_of(api.page("alice"))) != 200:
            break
    else:
        status = await status_of(api.page("alice"))
    assert status == 429


async def test_lagging_reset_keeps_the_quota_429_past_midnight_for_its_seconds(
    sim: Simulator, api: Api, clock: FakeClock
) -> None:
    sim.config.quota_reset_lag = 600.0
    sim.config.quota_message = "Rate limit exceeded"
    await spend_the_quota(sim, api, clock)
    midnight = MIDNIGHT + 86_400
    for now in (midnight, midnight + 1, midnight + 599.5):
        clock.now = now
        answer = await api.page("alice")
        assert isinstance(answer, Raw)
        assert (answer.status, answer.error["code"]) == (429, "rate_limit_exceeded")
        assert answer.error["message"] == "Rate limit exceeded"
        assert answer.retry_after is None
    # A bad token is still told apart, and costs nothing either.
    assert await status_of(api.page("alice", token="clt.nope")) == 401
    # The lag counted against nothing: the new day's quota is whole.
    assert sim.stats.quota_used == 0
    assert sim.stats.quota_lag_refusals == 3
    assert sim.stats.requests == 4 + 3 + 1
    clock.now = midnight + 600
    for _ in range(3):
        await api.ok("alice")
    assert sim.stats.quota_used == 3
    assert await status_of(api.page("alice")) == 429
    assert sim.stats.quota_lag_refusals == 3


async def test_lagging_reset_needs_the_day_before_spent(
    sim: Simulator, api: Api, clock: FakeClock
) -> None:
    sim.config.quota_reset_lag = 600.0
    sim.config.daily_quota = 3
    sim.config.token_lifetime = 7 * 86_400
    clock.now = MIDNIGHT + 86_400 - 300
    await api.ok("alice")
    clock.now = MIDNIGHT + 86_400 + 1
    await api.ok("alice")
    # A day with no request in between: the spent quota is two days old.
    await spend_the_quota(sim, api, clock, MIDNIGHT + 2 * 86_400)
    clock.now = MIDNIGHT + 3 * 86_400 + 1
    await api.ok("alice")
    assert sim.stats.quota_lag_refusals == 0


async def test_lagging_reset_ends_with_reset_quota_and_is_off_by_default(
    sim: Simulator, api: Api, clock: FakeClock
) -> None:
    await spend_the_quota(sim, api, clock)
    clock.now = MIDNIGHT + 86_400
    await api.ok("alice")
    await spend_the_quota(sim, api, clock, MIDNIGHT + 2 * 86_400)
    assert sim.stats.quota_lag_refusals == 0
    sim.config.quota_reset_lag = 3600.0
    clock.now = MIDNIGHT + 2 * 86_400 + 5
    assert await status_of(api.page("alice")) == 429
    sim.reset_quota()
    await api.ok("alice")
    assert sim.stats.quota_lag_refusals == 1


# -- token endpoint faults -----------------------------------------------------------------------


async def test_scripted_token_faults_come_in_order_in_the_token_shapes(
    sim: Simulator, api: Api
) -> None:
    sim.script_token(
        [
            Fault.SERVER_ERROR,
            "server_error",
            Fault.RATE_LIMIT,
            Fault.RATE_LIMIT_NO_RETRY_AFTER,
            Fault.BAD_GATEWAY,
            Fault.GATEWAY_TIMEOUT,
            Fault.DROP,
            Fault.TRUNCATED,
        ]
    )
    answers = [await api.token() for _ in range(8)]
    first, second, limited, bare, bad_gateway, timeout, dropped, truncated = answers
    for answer, message in ((first, "Something went wrong. Please try again later."), (second, "")):
        assert isinstance(answer, Raw)
        assert answer.status == 500
        assert answer.body == {
            "error": "internal_error",
            "error_description": message,
            "log_id": answer.body["log_id"],
        }
    for answer, retry_after in ((limited, "1"), (bare, None)):
        assert isinstance(answer, Raw)
        assert (answer.status, answer.body["error"]) == (429, "rate_limit_exceeded")
        assert answer.retry_after == retry_after
        assert "access_token" not in answer.body
    for answer, status in ((bad_gateway, 502), (timeout, 504)):
        assert isinstance(answer, Raw)
        assert (answer.status, answer.content_type) == (status, "text/html")
    assert isinstance(dropped, Dropped)
    assert isinstance(truncated, Dropped)
    # Normal service afterwards, on both endpoints.
    await api.ok("alice")
    stats = sim.stats
    assert stats.token_requests == 9
    # The truncated answer carried a token too, which the client never read.
    assert stats.tokens_issued == 2
    assert stats.token_faults == {
        Fault.SERVER_ERROR: 2,
        Fault.RATE_LIMIT: 1,
        Fault.RATE_LIMIT_NO_RETRY_AFTER: 1,
        Fault.BAD_GATEWAY: 1,
        Fault.GATEWAY_TIMEOUT: 1,
        Fault.DROP: 1,
        Fault.TRUNCATED: 1,
    }
    assert stats.requests == 1
    assert not stats.faults
    assert stats.dropped == 0


async def test_a_token_hang_ends_in_a_token_after_hang_seconds(sim: Simulator, api: Api) -> None:
    sim.config.hang_seconds = 0.0
    sim.script_token([Fault.HANG])
    answer = await api.token()
    assert isinstance(answer, Raw)
    assert answer.body["access_token"].startswith("clt.")
    assert sim.stats.token_faults == {Fault.HANG: 1}


@pytest.mark.parametrize("fault", [Fault.QUOTA, Fault.INVALID_CURSOR, Fault.TOKEN_INVALID, "nope"])
def test_research_only_faults_cannot_be_given_to_the_token_endpoint(fault: Any) -> None:
    sim = Simulator()
    with pytest.raises(ValueError, match="not"):
        sim.script_token([Fault.DROP, fault])
    with pytest.raises(ValueError, match="token_faults"):
        sim.config.token_faults = {fault: 0.1}
    assert set(TOKEN_FAULTS) == set(Fault) - {
        Fault.QUOTA,
        Fault.INVALID_CURSOR,
        Fault.TOKEN_INVALID,
        Fault.SILENT_EMPTY,
    }


async def test_random_token_faults_follow_their_rate_and_their_seed(
    sim: Simulator, api: Api
) -> None:
    sim.config.seed = 7
    sim.config.token_faults = {Fault.SERVER_ERROR: 0.5}

    async def statuses() -> list[int | None]:
        return [await status_of(api.token()) for _ in range(60)]

    first = await statuses()
    assert 15 <= first.count(500) <= 45
    assert first.count(500) + first.count(200) == 60
    assert sim.stats.token_faults == {Fault.SERVER_ERROR: first.count(500)}
    # A seed set at run time restarts the stream, as one given at start does.
    sim.config.seed = 8
    assert await statuses() != first
    sim.config.seed = 7
    assert await statuses() == first
    sim.config.token_faults = {Fault.DROP: 1.0}
    assert await statuses() == [None] * 60
    sim.config.token_faults = {}
    assert set(await statuses()) == {200}


async def test_token_faults_leave_the_research_faults_of_a_seed_alone(
    clock: FakeClock,
) -> None:
    async def research_statuses(token_faults: dict[Fault, float]) -> list[int | None]:
        async with (
            Simulator(clock=clock, seed=11, faults={Fault.SERVER_ERROR: 0.5}) as sim,
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session,
        ):
            api = Api(session, sim)
            await api.bearer()
            sim.config.token_faults = token_faults
            seen = []
            for _ in range(30):
                # A token request between research requests: its fault draws must not count.
                await api.token()
                seen.append(await status_of(api.page("alice")))
            return seen

    plain = await research_statuses({})
    assert 5 <= plain.count(500) <= 25
    assert await research_statuses({Fault.SERVER_ERROR: 0.9}) == plain


# -- the command line ----------------------------------------------------------------------------

BAD_DAY_OPTIONS = [
    "--outage-start",
    "30",
    "--outage-seconds",
    "180",
    "--outage-kind",
    "gateway",
    "--persistent-fault",
    "SERVER_ERROR",
    "--reject-field",
    "video_tag",
    "--reject-field",
    "favourites_count",
    "--auth-failure",
    "scope_not_authorized",
    "--quota-message",
    "Rate limit exceeded",
    "--rate-limit-message",
    "Quota exceeded",
    "--quota-reset-lag",
    "600",
    "--token-fault",
    "drop=0.1",
    "--token-fault",
    "RATE_LIMIT=0.2",
]


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_simulator_arguments(parser)
    return parser.parse_args(argv)


def test_bad_day_options_map_onto_the_configuration() -> None:
    before = time.time()
    config = config_from_args(parse(BAD_DAY_OPTIONS))
    after = time.time()
    # A bare number counts from start-up.
    assert config.outage_start is not None
    assert before + 30 <= config.outage_start <= after + 30
    assert (config.outage_seconds, config.outage_kind) == (180.0, "gateway")
    assert config.persistent_fault is Fault.SERVER_ERROR
    assert config.rejected_fields == {"video_tag", "favourites_count"}
    assert config.auth_failure == "scope_not_authorized"
    assert config.quota_message == "Rate limit exceeded"
    assert config.rate_limit_message == "Quota exceeded"
    assert config.quota_reset_lag == 600.0
    assert config.token_faults == {Fault.DROP: 0.1, Fault.RATE_LIMIT: 0.2}


def test_outage_start_takes_an_absolute_epoch_after_an_at_sign() -> None:
    args = parse(["--outage-start", "@1700006400.5", "--outage-seconds", "60"])
    assert config_from_args(args).outage_start == 1_700_006_400.5


def test_bad_day_options_are_off_by_default() -> None:
    config = config_from_args(parse([]))
    plain = SimulatorConfig()
    for name in (
        "outage_start",
        "outage_seconds",
        "outage_kind",
        "persistent_fault",
        "rejected_fields",
        "auth_failure",
        "quota_message",
        "rate_limit_message",
        "quota_reset_lag",
        "token_faults",
    ):
        assert getattr(config, name) == getattr(plain, name), name
    assert (config.quota_message, config.rate_limit_message) == (QUOTA_MESSAGE, RATE_LIMIT_MESSAGE)
    assert config.outage_start is None
    assert config.token_faults == {}


def test_the_serve_command_takes_the_bad_day_options() -> None:
    config = config_from_args(build_parser().parse_args(["serve", *BAD_DAY_OPTIONS]))
    assert config.persistent_fault is Fault.SERVER_ERROR
    assert config.rejected_fields == {"video_tag", "favourites_count"}
    assert config.token_faults == {Fault.DROP: 0.1, Fault.RATE_LIMIT: 0.2}
    assert config.outage_kind == "gateway"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--outage-start", "30"], "--outage-start needs --outage-seconds"),
        (["--outage-seconds", "30"], "--outage-seconds needs --outage-start"),
        (["--outage-start", "@soon", "--outage-seconds", "1"], "an epoch in seconds"),
        (["--outage-start", "-5", "--outage-seconds", "1"], "a number of seconds >= 0"),
        (["--outage-kind", "flood"], "--outage-kind"),
        (["--persistent-fault", "explode"], "unknown fault 'explode'"),
        (["--reject-field", "views"], "'views' is not a video field"),
        (["--auth-failure", "access_denied"], "--auth-failure"),
        (["--quota-reset-lag", "90000"], "quota_reset_lag"),
        (["--token-fault", "quota=0.1"], "unknown fault 'quota'"),
        (["--token-fault", "drop=0.7", "--token-fault", "hang=0.7"], "more than 1"),
    ],
)
def test_bad_bad_day_options_exit_2_with_a_message(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_the_simulator_process_serves_an_outage_from_its_options() -> None:
    command = [sys.executable, "-m", "tiktok_repost_async.simulator", "--port", "0"]
    command += ["--outage-start", "0", "--outage-seconds", "3600", "--outage-kind", "gateway"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as process:
        try:
            assert process.stdout is not None
            base_url = process.stdout.readline().strip()
            form = {
                "client_key": TEST_CLIENT_KEY,
                "client_secret": TEST_CLIENT_SECRET,
                "grant_type": "client_credentials",
            }
            request = urllib.request.Request(
                base_url + TOKEN_PATH, data=urllib.parse.urlencode(form).encode(), method="POST"
            )
            with pytest.raises(urllib.error.HTTPError) as failure:
                urllib.request.urlopen(request, timeout=10)
            assert failure.value.code == 504
            assert failure.value.headers.get_content_type() == "text/html"
            failure.value.close()
            process.terminate()
            assert process.wait(timeout=10) == 0
        finally:
            process.kill()
