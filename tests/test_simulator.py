"""The simulator over real loopback sockets: token, validation, data, pages, knobs, counters."""

from __future__ import annotations

import asyncio
import io
import json
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any, NamedTuple

import aiohttp
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from support import MIDNIGHT, FakeClock, make_client

from tiktok_repost_async.errors import UserNotFoundError, UserUnavailableError
from tiktok_repost_async.simulator import (
    RESEARCH_PATH,
    TEST_CLIENT_KEY,
    TEST_CLIENT_SECRET,
    TOKEN_PATH,
    VIDEO_FIELDS,
    Fault,
    Simulator,
    SimulatorConfig,
)
from tiktok_repost_async.simulator._data import ALL_FIELDS as ALL_FIELDS_MASK
from tiktok_repost_async.simulator._data import repost_count
from tiktok_repost_async.simulator._wire import EncodedUser

ALL_FIELDS = ",".join(VIDEO_FIELDS)
INT64_MAX = 2**63 - 1
UINT64_MAX = 2**64 - 1


class Answer(NamedTuple):
    status: int
    body: dict[str, Any]
    headers: dict[str, str]

    @property
    def error(self) -> dict[str, Any]:
        error: dict[str, Any] = self.body["error"]
        return error

    @property
    def data(self) -> dict[str, Any]:
        data: dict[str, Any] = self.body["data"]
        return data


class Api:
    """A bare client of the simulator, written from the API's documentation."""

    def __init__(self, session: aiohttp.ClientSession, sim: Simulator) -> None:
        self.session = session
        self.sim = sim
        self.access_token: str | None = None

    async def token(self, form: dict[str, str] | None = None, **post: Any) -> Answer:
        if form is None:
            form = {
                "client_key": self.sim.client_key,
                "client_secret": self.sim.client_secret,
                "grant_type": "client_credentials",
            }
        post.setdefault("data", form)
        async with self.session.post(self.sim.base_url + TOKEN_PATH, **post) as response:
            return Answer(response.status, json.loads(await response.read()), {})

    async def bearer(self) -> str:
        if self.access_token is None:
            self.access_token = (await self.token()).body["access_token"]
        return self.access_token

    async def call(
        self,
        body: Any = None,
        *,
        fields: str | None = ALL_FIELDS,
        data: bytes | io.BytesIO | None = None,
        headers: dict[str, str] | None = None,
    ) -> Answer:
        if headers is None:
            headers = {"Authorization": f"Bearer {await self.bearer()}"}
        headers.setdefault("Content-Type", "application/json")
        if data is None:
            data = json.dumps(body).encode()
        params = {} if fields is None else {"fields": fields}
        url = self.sim.base_url + RESEARCH_PATH
        async with self.session.post(url, params=params, data=data, headers=headers) as response:
            raw = await response.read()
            json_body = response.content_type == "application/json"
            # json, not msgspec: Python's json keeps every integer exact, whatever its size.
            body = json.loads(raw) if json_body else {"text": raw.decode()}
            return Answer(response.status, body, dict(response.headers))

    async def page(self, username: str, cursor: int = 0, max_count: int = 100) -> Answer:
        return await self.call({"username": username, "cursor": cursor, "max_count": max_count})

    async def walk(self, username: str, max_count: int = 100) -> tuple[list[Any], list[Answer]]:
        """Collect a user's videos the way a perfect client does; return them and the pages."""
        videos: list[Any] = []
        pages: list[Answer] = []
        cursor = 0
        while True:
            answer = await self.page(username, cursor, max_count)
            assert answer.status == 200, answer
            pages.append(answer)
            videos += answer.data.get(self.sim.config.list_key, [])
            if not answer.data["has_more"] or answer.data["cursor"] == cursor:
                return videos, pages
            cursor = answer.data["cursor"]


@pytest.fixture
async def sim(clock: FakeClock) -> AsyncIterator[Simulator]:
    async with Simulator(clock=clock) as simulator:
        yield simulator


@pytest.fixture
async def api(sim: Simulator) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as session:
        yield Api(session, sim)


def assert_error(answer: Answer, status: int, code: str, *words: str) -> None:
    assert answer.status == status, answer
    assert answer.data == {}
    assert answer.error["code"] == code
    assert re.fullmatch(r"[0-9A-F]{34}", answer.error["log_id"])
    for word in words:
        assert word in answer.error["message"]


# -- the token endpoint --------------------------------------------------------------------------


async def test_token_is_issued_and_costs_no_quota(sim: Simulator, api: Api) -> None:
    answer = await api.token()
    assert answer.status == 200
    assert answer.body["access_token"].startswith("clt.")
    assert answer.body["expires_in"] == 7200
    assert answer.body["token_type"] == "Bearer"
    assert (await api.token()).body["access_token"] != answer.body["access_token"]
    assert sim.stats.tokens_issued == 2
    assert sim.stats.requests == sim.stats.quota_used == 0


async def test_token_lifetime_knob_sets_expires_in(sim: Simulator, api: Api) -> None:
    sim.config.token_lifetime = 60
    assert (await api.token()).body["expires_in"] == 60


async def test_wrong_credentials_answer_http_200_with_a_flat_error(
    sim: Simulator, api: Api
) -> None:
    form = {"client_key": TEST_CLIENT_KEY, "client_secret": "nope"}
    answer = await api.token(form | {"grant_type": "client_credentials"})
    assert answer.status == 200
    assert answer.body["error"] == "invalid_client"
    assert answer.body["error_description"]
    assert answer.body["log_id"]
    assert "access_token" not in answer.body
    assert sim.stats.tokens_issued == 0


@pytest.mark.parametrize(
    "form",
    [
        {"client_secret": TEST_CLIENT_SECRET, "grant_type": "client_credentials"},
        {"client_key": TEST_CLIENT_KEY, "grant_type": "client_credentials"},
        {"client_key": TEST_CLIENT_KEY, "client_secret": TEST_CLIENT_SECRET},
        {"client_key": TEST_CLIENT_KEY, "client_secret": TEST_CLIENT_SECRET, "grant_type": "pw"},
    ],
    ids=["no-key", "no-secret", "no-grant", "wrong-grant"],
)
async def test_token_request_missing_a_parameter_is_400(api: Api, form: dict[str, str]) -> None:
    answer = await api.token(form)
    assert answer.status == 400
    assert answer.body["error"] == "invalid_request"
    assert set(answer.body) == {"error", "error_description", "log_id"}


async def test_token_request_as_json_instead_of_a_form_is_400(api: Api) -> None:
    form = {"client_key": TEST_CLIENT_KEY, "client_secret": TEST_CLIENT_SECRET}
    answer = await api.token(data=None, json=form | {"grant_type": "client_credentials"})
    assert (answer.status, answer.body["error"]) == (400, "invalid_request")


# -- bearer authentication -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer clt.unknown"}, {"Authorization": f"Basic {TEST_CLIENT_KEY}"}],
    ids=["none", "unknown", "basic"],
)
async def test_missing_or_unknown_token_is_401(api: Api, headers: dict[str, str]) -> None:
    answer = await api.call({"username": "alice"}, headers=headers)
    assert_error(answer, 401, "access_token_invalid")


async def test_bearer_scheme_is_case_insensitive(api: Api) -> None:
    answer = await api.call(
        {"username": "alice"}, headers={"Authorization": f"bearer {await api.bearer()}"}
    )
    assert answer.status == 200


async def test_token_expires_on_the_simulator_clock(clock: FakeClock, api: Api) -> None:
    await api.bearer()
    clock.now += 7199
    assert (await api.page("alice")).status == 200
    clock.now += 1
    assert_error(await api.page("alice"), 401, "access_token_invalid")
    api.access_token = None
    assert (await api.page("alice")).status == 200


async def test_expire_tokens_invalidates_every_token_now(sim: Simulator, api: Api) -> None:
    assert (await api.page("alice")).status == 200
    sim.expire_tokens()
    assert_error(await api.page("alice"), 401, "access_token_invalid")


# -- request validation --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "data", "word"),
    [
        (None, b'{"username": "alice"}', "fields"),
        ("", b'{"username": "alice"}', "fields"),
        ("id,nope", b'{"username": "alice"}', "'nope'"),
        ("id,,like_count", b'{"username": "alice"}', "''"),
        ("id", b'{"username": "alice",}', "JSON"),
        ("id", b"\xff\xfe", "JSON"),
        ("id", b'["alice"]', "object"),
        ("id", b"{}", "username"),
        ("id", b'{"username": ""}', "username"),
        ("id", b'{"username": 7}', "username"),
        ("id", b'{"username": "alice", "max_count": 0}', "max_count"),
        ("id", b'{"username": "alice", "max_count": 101}', "max_count"),
        ("id", b'{"username": "alice", "max_count": "20"}', "max_count"),
        ("id", b'{"username": "alice", "max_count": 20.0}', "max_count"),
        ("id", b'{"username": "alice", "max_count": true}', "max_count"),
        ("id", b'{"username": "alice", "max_count": null}', "max_count"),
        ("id", b'{"username": "alice", "cursor": -1}', "cursor"),
        ("id", b'{"username": "alice", "cursor": "0"}', "cursor"),
        ("id", b'{"username": "alice", "cursor": 1.5}', "cursor"),
    ],
)
async def test_invalid_requests_are_400_invalid_params(
    sim: Simulator, api: Api, fields: str | None, data: bytes, word: str
) -> None:
    assert_error(await api.call(fields=fields, data=data), 400, "invalid_params", word)
    assert sim.stats.by_cursor == {}


async def test_content_type_must_be_json(api: Api) -> None:
    headers = {"Authorization": f"Bearer {await api.bearer()}", "Content-Type": "text/plain"}
    answer = await api.call({"username": "alice"}, headers=headers)
    assert_error(answer, 400, "invalid_params", "Content-Type")


async def test_spaces_around_commas_are_tolerated(api: Api) -> None:
    answer = await api.call({"username": "bench_n5"}, fields=" id , like_count,create_time ")
    assert answer.status == 200
    videos = answer.data["reposted_videos"]
    assert videos
    assert all(set(video) <= {"id", "like_count", "create_time"} for video in videos)
    assert all("id" in video for video in videos)


async def test_max_count_defaults_to_20(api: Api) -> None:
    answer = await api.call({"username": "bench_n50"})
    assert len(answer.data["reposted_videos"]) == 20
    assert (answer.data["cursor"], answer.data["has_more"]) == (20, True)


async def test_unknown_paths_and_methods_answer_in_the_api_shape(sim: Simulator, api: Api) -> None:
    async with api.session.post(sim.base_url + "/v2/research/user/reposted_videos") as response:
        assert_error(Answer(response.status, await response.json(), {}), 404, "not_found")
    async with api.session.get(sim.base_url + RESEARCH_PATH) as response:
        assert_error(Answer(response.status, await response.json(), {}), 405, "method_not_allowed")
        assert response.headers["Allow"] == "POST"


async def test_a_failing_handler_answers_500_internal_error_in_json(
    sim: Simulator, api: Api, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*args: Any) -> None:
        raise ZeroDivisionError("simulated bug")

    monkeypatch.setattr(sim, "_answer", broken)
    assert_error(await api.page("alice"), 500, "internal_error")
    assert "simulated bug" in caplog.text
    assert sim.stats.by_status == {500: 1}
    monkeypatch.undo()
    assert (await api.page("alice")).status == 200


async def test_an_oversized_body_is_413_in_json(api: Api) -> None:
    # A stream, as aiohttp warns about large bytes bodies.
    answer = await api.call(data=io.BytesIO(b'{"username": "' + b"x" * (2 << 20) + b'"}'))
    assert_error(answer, 413, "invalid_params")


async def test_unicode_usernames_work(sim: Simulator, api: Api) -> None:
    name = "حمودي\u0000\u0000_n7_🐱"
    videos, _ = await api.walk(name)
    assert len(videos) == 7
    assert videos == sim.ground_truth(name)
    assert sim.stats.by_user == {name: 1}


async def test_log_ids_are_fresh_for_every_answer(api: Api) -> None:
    ids = {(await api.page("alice")).error["log_id"] for _ in range(5)}
    assert len(ids) == 5
    assert all(re.fullmatch(r"\d{14}[0-9A-F]{20}", log_id) for log_id in ids)


# -- users, data and pagination ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("username", "kind"),
    [
        ("alice", "normal"),
        ("missing_bob", "missing"),
        ("NotFound.carol", "missing"),
        ("private_dan", "private"),
        ("empty_n40", "empty"),
        ("big_eve", "big"),
        ("stall_fay", "stall"),
        ("short_gus", "short"),
        ("hugeid_hal", "hugeid"),
        ("bench_n250_7", "normal"),
    ],
)
def test_the_name_selects_the_kind_of_user(username: str, kind: str) -> None:
    assert Simulator.user_kind(username) == kind


def test_repost_counts_follow_the_name_conventions() -> None:
    assert repost_count("bench_n250_7") == 250
    assert repost_count("n3.x") == repost_count("x.n3") == 3
    assert repost_count("stall_n7") == 7
    assert repost_count("empty_n40") == repost_count("missing_n5") == repost_count("private") == 0
    assert all(950 <= repost_count(f"big{i}") <= 1050 for i in range(50))
    counts = [repost_count(f"user{i}") for i in range(1000)]
    assert 100 <= counts.count(0) <= 200
    assert max(counts) <= 600
    assert sum(count > 300 for count in counts) > 200


@pytest.mark.parametrize(
    "username", ["alice", "bench_n250_7", "big_eve", "hugeid_hal", "empty", "bench_n100", "x_n1"]
)
async def test_ground_truth_is_what_a_walk_collects(
    sim: Simulator, api: Api, username: str
) -> None:
    videos, pages = await api.walk(username)
    assert videos == sim.ground_truth(username)
    assert len(pages) == sim.pages_needed(username)
    assert not pages[-1].data["has_more"]
    assert all(
        page.error == {"code": "ok", "message": "", "log_id": page.error["log_id"]}
        for page in pages
    )


async def test_ground_truth_matches_a_walk_with_small_pages(sim: Simulator, api: Api) -> None:
    videos, pages = await api.walk("bench_n95", max_count=10)
    assert videos == sim.ground_truth("bench_n95")
    assert [page.data["cursor"] for page in pages] == list(range(10, 101, 10))
    assert len(pages) == sim.pages_needed("bench_n95", 10) == 10


@settings(max_examples=60, deadline=None)
@given(username=st.text(max_size=12), max_count=st.integers(1, 100), huge=st.booleans())
def test_pages_always_add_up_to_the_ground_truth(username: str, max_count: int, huge: bool) -> None:
    kind = Simulator.user_kind(username)
    assume(kind not in ("missing", "private", "stall"))
    user = EncodedUser(username, huge, ALL_FIELDS_MASK, False)
    videos = []
    for cursor in range(0, max(1, user.total), max_count):
        blob, count = user.page(cursor, cursor + max_count)
        page = json.loads(b"[" + blob + b"]")
        assert len(page) == count <= max_count
        videos += page
    assert videos == Simulator(huge_ids=huge).ground_truth(username)
    pages_needed = Simulator.pages_needed(username, max_count)
    assert pages_needed == max(1, -(-user.total // max_count))


async def test_short_user_gets_short_and_empty_pages_with_has_more(
    sim: Simulator, api: Api
) -> None:
    videos, pages = await api.walk("short_gus")
    assert videos == sim.ground_truth("short_gus")
    assert len(pages) == sim.pages_needed("short_gus")
    sizes = [len(page.data["reposted_videos"]) for page in pages]
    assert 0 in sizes[:-1]
    assert any(0 < size < 100 for size in sizes)
    assert all(page.data["has_more"] for page in pages[:-1])
    assert [page.data["cursor"] for page in pages] == [100 * (i + 1) for i in range(len(pages))]


async def test_stall_user_repeats_its_cursor_forever(sim: Simulator, api: Api) -> None:
    first = await api.page("stall_fay", 0, 50)
    second = await api.page("stall_fay", 50, 50)
    third = await api.page("stall_fay", 50, 50)
    assert (first.data["cursor"], second.data["cursor"], third.data["cursor"]) == (50, 50, 50)
    assert all(page.data["has_more"] for page in (first, second, third))
    assert second.data["reposted_videos"] == third.data["reposted_videos"]
    videos, pages = await api.walk("stall_fay", 50)
    assert videos == sim.ground_truth("stall_fay", 50)
    assert len(videos) == 100
    assert len(pages) == sim.pages_needed("stall_fay", 50) == 2


@pytest.mark.parametrize(
    ("username", "word"),
    [("missing_bob", "cannot find the user"), ("private_dan", "API cannot return this user's")],
)
async def test_missing_and_private_users_are_400(
    sim: Simulator, api: Api, username: str, word: str
) -> None:
    assert_error(await api.page(username), 400, "invalid_params", word, username)
    assert sim.ground_truth(username) == []
    assert sim.pages_needed(username) == 1


async def test_empty_user_answers_an_empty_list(api: Api) -> None:
    answer = await api.page("empty_one")
    assert answer.data == {"reposted_videos": [], "cursor": 100, "has_more": False}


def test_the_dataset_is_the_same_in_another_process() -> None:
    names = ["alice", "big_eve", "short_gus", "hugeid_hal"]
    script = (
        "import json, sys\n"
        "from tiktok_repost_async.simulator import Simulator\n"
        "sim = Simulator()\n"
        f"json.dump([sim.ground_truth(name) for name in {names!r}], sys.stdout)\n"
    )
    env = {"PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, check=True, env=env, timeout=60
    ).stdout
    sim = Simulator()
    assert json.loads(out) == [sim.ground_truth(name) for name in names]
    assert sim.ground_truth("alice") != sim.ground_truth("alicf")


def test_videos_look_like_the_live_api() -> None:
    videos = [video for i in range(8) for video in Simulator().ground_truth(f"big{i}")]
    assert all(10**18 <= video["id"] <= INT64_MAX for video in videos)
    assert len({video["id"] for video in videos}) == len(videos)
    assert all(1_546_300_800 <= video["create_time"] < 1_740_000_000 for video in videos)
    assert set().union(*videos) == set(VIDEO_FIELDS)
    strings = [json.dumps(video, ensure_ascii=False) for video in videos]
    assert any("\\u0000" in text for text in strings)
    assert any(re.search("[\U0001f300-\U0001faff]", text) for text in strings)
    assert any(re.search("[\u0600-\u06ff]", text) for text in strings)
    assert any(video.get("hashtag_names") == [] for video in videos)
    assert any("like_count" not in video for video in videos)
    assert len({tuple(video) for video in videos[:50]}) > 40
    for video in videos:
        for info in video.get("hashtag_info_list", []):
            assert set(info) == {"hashtag_id", "hashtag_name", "hashtag_description"}
        for effect in video.get("effect_info_list", []):
            assert set(effect) == {"effect_id", "effect_name", "effect_photo_URI"}
        for sticker in video.get("sticker_info_list", []):
            assert set(sticker) == {"sticker_id", "sticker_name"}
        assert set(video.get("video_label", {"content": ""})) == {"content"}
        assert set(video.get("video_tag", {"video_tag_type": 0, "video_tag_number": 0})) == {
            "video_tag_type",
            "video_tag_number",
        }


async def test_only_requested_fields_come_back(api: Api) -> None:
    answer = await api.call({"username": "bench_n100", "max_count": 100}, fields="id,hashtag_names")
    videos = answer.data["reposted_videos"]
    assert all(set(video) <= {"id", "hashtag_names"} and "id" in video for video in videos)
    assert any("hashtag_names" in video for video in videos)


@pytest.mark.parametrize("requested", ["favorites_count", "favourites_count"])
@pytest.mark.parametrize("spelling", ["favorites_count", "favourites_count"])
async def test_favorites_key_is_spelled_per_knob(
    sim: Simulator, api: Api, requested: str, spelling: str
) -> None:
    sim.config.favorites_spelling = spelling  # type: ignore[assignment]
    answer = await api.call({"username": "bench_n30", "max_count": 30}, fields=f"id,{requested}")
    keys = set().union(*answer.data["reposted_videos"])
    assert keys == {"id", spelling}


async def test_list_key_knob(sim: Simulator, api: Api) -> None:
    sim.config.list_key = "user_reposted_videos"
    answer = await api.page("bench_n3")
    assert len(answer.data["user_reposted_videos"]) == 3
    assert "reposted_videos" not in answer.data


async def test_omit_empty_list_knob(sim: Simulator, api: Api) -> None:
    sim.config.omit_empty_list = True
    assert (await api.page("empty_one")).data == {"cursor": 100, "has_more": False}
    assert len((await api.page("bench_n3")).data["reposted_videos"]) == 3


async def test_huge_ids_knob_gives_every_user_ids_beyond_int64(sim: Simulator, api: Api) -> None:
    plain = sim.ground_truth("bench_n40")
    sim.config.huge_ids = True
    videos, _ = await api.walk("bench_n40")
    assert videos == sim.ground_truth("bench_n40")
    ids = [video["id"] for video in videos]
    assert any(i > UINT64_MAX and len(str(i)) == 20 for i in ids)
    assert any(INT64_MAX < i <= UINT64_MAX for i in ids)
    # Only the ids (and some music ids) change: the rest of the data stays the same.
    assert [dict(video, id=0, music_id=0) for video in plain] == [
        dict(video, id=0, music_id=0) for video in videos
    ]


async def test_hugeid_users_have_ids_beyond_int64_without_the_knob(api: Api) -> None:
    videos, _ = await api.walk("hugeid_hal")
    assert any(video["id"] > UINT64_MAX for video in videos)
    assert any(INT64_MAX < video["id"] <= UINT64_MAX for video in videos)


async def test_cursor_past_the_end_gives_an_empty_last_page(api: Api) -> None:
    answer = await api.page("bench_n10", cursor=500)
    assert answer.data == {"reposted_videos": [], "cursor": 600, "has_more": False}


# -- knobs: latency, limits, quota ---------------------------------------------------------------


async def test_latency_and_jitter_delay_answers_and_show_in_flight(
    sim: Simulator, api: Api
) -> None:
    await api.bearer()
    sim.config.latency, sim.config.jitter, sim.config.seed = 0.05, 0.05, 7
    loop = asyncio.get_running_loop()
    began = loop.time()
    answers = await asyncio.gather(*(api.page(f"bench_n5_{i}") for i in range(5)))
    assert 0.05 <= loop.time() - began < 1.0
    assert all(answer.status == 200 for answer in answers)
    assert sim.stats.peak_in_flight == 5
    assert sim.stats.in_flight == 0


async def test_rate_limit_counts_a_sliding_second(
    sim: Simulator, api: Api, clock: FakeClock
) -> None:
    sim.config.rate_limit = 3
    assert [(await api.page("alice")).status for _ in range(3)] == [200, 200, 200]
    limited = await api.page("alice")
    assert_error(limited, 429, "rate_limit_exceeded", "Too many requests")
    assert "Retry-After" not in limited.headers
    clock.now += 0.5
    sim.config.retry_after = 2
    limited = await api.page("alice")
    assert_error(limited, 429, "rate_limit_exceeded", "Too many requests")
    assert limited.headers["Retry-After"] == "2"
    clock.now += 0.5  # the four sent first left the window; the one refused at 0.5 s is still in
    assert [(await api.page("alice")).status for _ in range(3)] == [200, 200, 429]
    clock.now += 1.0
    assert (await api.page("alice")).status == 200


async def test_daily_quota_counts_every_request_and_resets_at_utc_midnight(
    sim: Simulator, api: Api, clock: FakeClock
) -> None:
    clock.now = MIDNIGHT - 10
    sim.config.daily_quota = 3
    assert (await api.page("alice")).status == 200
    assert (await api.call({"username": "alice", "cursor": -1})).status == 400
    assert (await api.call({"username": "alice"}, headers={})).status == 401
    assert_error(await api.page("alice"), 429, "rate_limit_exceeded", "daily quota")
    assert sim.stats.quota_used == 4
    clock.now = MIDNIGHT
    assert (await api.page("alice")).status == 200
    assert sim.stats.quota_used == 1
    await api.page("alice")
    await api.page("alice")
    assert (await api.page("alice")).status == 429
    sim.reset_quota()
    assert (await api.page("alice")).status == 200


async def test_counters(sim: Simulator, api: Api) -> None:
    await api.page("bench_n150")
    await api.page("bench_n150", 100)
    await api.page("bench_n150", 100)
    await api.page("missing_x")
    await api.call({"username": "alice", "cursor": "x"})
    await api.call({"cursor": 0})
    stats = sim.stats
    assert stats.requests == 6
    assert stats.by_status == {200: 3, 400: 3}
    assert stats.by_user == {"bench_n150": 3, "missing_x": 1, "alice": 1}
    assert stats.by_cursor == {("bench_n150", 0): 1, ("bench_n150", 100): 2, ("missing_x", 0): 1}
    assert (stats.tokens_issued, stats.quota_used, stats.dropped) == (1, 6, 0)
    sim.reset_stats()
    assert sim.stats.requests == 0
    assert not sim.stats.by_status
    assert sim.stats.quota_used == 6


async def test_knobs_are_validated_when_set(sim: Simulator) -> None:
    with pytest.raises(ValueError, match="latency"):
        sim.config.latency = -1
    with pytest.raises(ValueError, match="rate_limit"):
        sim.config.rate_limit = 0
    with pytest.raises(ValueError, match="list_key"):
        sim.config.list_key = "videos"  # type: ignore[assignment]
    with pytest.raises(ValueError, match="more than 1"):
        sim.config.faults = {Fault.DROP: 0.6, Fault.HANG: 0.6}
    with pytest.raises(ValueError, match="fault kinds"):
        sim.config.faults = {"explode": 0.1}  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="token_lifetime"):
        Simulator(token_lifetime=0)
    with pytest.raises(TypeError):
        Simulator(no_such_knob=1)
    sim.config.faults = {"drop": 0.5}  # type: ignore[dict-item]
    assert sim.config.faults == {Fault.DROP: 0.5}
    assert Simulator(SimulatorConfig(latency=2), jitter=1).config.latency == 2


async def test_base_url_needs_a_running_simulator() -> None:
    sim = Simulator()
    with pytest.raises(RuntimeError):
        sim.base_url  # noqa: B018
    url = await sim.start()
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", url)
    assert sim.base_url == url
    with pytest.raises(RuntimeError):
        await sim.start()
    await sim.close()
    await sim.close()
    with pytest.raises(RuntimeError):
        sim.base_url  # noqa: B018


# -- faults --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "status", "code", "word"),
    [
        (Fault.SERVER_ERROR, 500, "internal_error", ""),
        (Fault.RATE_LIMIT, 429, "rate_limit_exceeded", "Too many requests"),
        (Fault.RATE_LIMIT_NO_RETRY_AFTER, 429, "rate_limit_exceeded", "Too many requests"),
        (Fault.QUOTA, 429, "rate_limit_exceeded", "daily quota"),
        (Fault.INVALID_CURSOR, 400, "invalid_params", "Invalid count or cursor"),
        (Fault.TOKEN_INVALID, 401, "access_token_invalid", ""),
    ],
)
async def test_scripted_api_faults(
    sim: Simulator, api: Api, fault: Fault, status: int, code: str, word: str
) -> None:
    sim.script("alice", [fault])
    answer = await api.page("alice")
    assert_error(answer, status, code, word)
    assert ("Retry-After" in answer.headers) == (fault is Fault.RATE_LIMIT)
    assert (await api.page("alice")).status == 200
    assert sim.stats.faults == {fault: 1}


async def test_rate_limit_fault_sends_the_configured_retry_after(sim: Simulator, api: Api) -> None:
    sim.script("alice", [Fault.RATE_LIMIT])
    assert (await api.page("alice")).headers["Retry-After"] == "1"
    sim.config.retry_after = 30
    sim.script("alice", ["rate_limit"])
    assert (await api.page("alice")).headers["Retry-After"] == "30"


async def test_half_the_server_errors_have_no_message(sim: Simulator, api: Api) -> None:
    sim.script("alice", [Fault.SERVER_ERROR] * 4)
    messages = [(await api.page("alice")).error["message"] for _ in range(4)]
    assert messages.count("") == 2
    assert all(messages[i] for i in (0, 2))


@pytest.mark.parametrize(
    ("fault", "status"), [(Fault.BAD_GATEWAY, 502), (Fault.GATEWAY_TIMEOUT, 504)]
)
async def test_gateway_faults_answer_html(
    sim: Simulator, api: Api, fault: Fault, status: int
) -> None:
    sim.script("alice", [fault])
    async with api.session.post(
        sim.base_url + RESEARCH_PATH,
        params={"fields": "id"},
        json={"username": "alice"},
        headers={"Authorization": f"Bearer {await api.bearer()}"},
    ) as response:
        assert response.status == status
        assert response.content_type == "text/html"
        assert str(status) in await response.text()


async def test_drop_closes_the_connection_without_an_answer(sim: Simulator, api: Api) -> None:
    sim.script("alice", [Fault.DROP])
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await api.page("alice")
    assert (await api.page("alice")).status == 200
    assert sim.stats.dropped == 1
    assert sim.stats.by_status == {200: 1}


async def test_truncated_body_breaks_off_mid_answer(sim: Simulator, api: Api) -> None:
    sim.script("alice", [Fault.TRUNCATED])
    with pytest.raises(aiohttp.ClientPayloadError):
        await api.page("alice")
    assert (await api.page("alice")).status == 200
    assert sim.stats.by_status == {200: 2}


async def test_hang_answers_after_hang_seconds(sim: Simulator, api: Api) -> None:
    sim.config.hang_seconds = 0.01
    sim.script("bench_n5", [Fault.HANG])
    answer = await api.page("bench_n5")
    assert len(answer.data["reposted_videos"]) == 5


async def test_hang_ends_when_the_simulator_closes(clock: FakeClock) -> None:
    async with Simulator(clock=clock) as sim, aiohttp.ClientSession() as session:
        api = Api(session, sim)
        await api.bearer()
        sim.script("alice", [Fault.HANG])
        hung = asyncio.create_task(api.page("alice"))
        # The request runs in the server's task: its counter is all a test can watch.
        while sim.stats.in_flight == 0:  # noqa: ASYNC110
            await asyncio.sleep(0.001)
        loop = asyncio.get_running_loop()
        began = loop.time()
        await sim.close()
        assert loop.time() - began < 0.9
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await hung
        assert sim.stats.dropped == 1


async def test_scripts_run_in_order_per_user(sim: Simulator, api: Api) -> None:
    sim.script("alice", [Fault.SERVER_ERROR, Fault.QUOTA])
    sim.script("alice", [Fault.INVALID_CURSOR])
    assert (await api.page("bob")).status == 200
    assert [(await api.page("alice")).status for _ in range(4)] == [500, 429, 400, 200]


async def test_random_faults_follow_their_rates_and_seed(clock: FakeClock) -> None:
    faults = {Fault.SERVER_ERROR: 0.3, Fault.BAD_GATEWAY: 0.2}
    runs = []
    for _ in range(2):
        async with (
            Simulator(clock=clock, faults=faults, seed=3) as sim,
            aiohttp.ClientSession() as s,
        ):
            api = Api(s, sim)
            runs.append([(await api.page("alice")).status for _ in range(200)])
            assert sim.stats.faults[Fault.SERVER_ERROR] == runs[-1].count(500)
    assert runs[0] == runs[1]
    assert 35 <= runs[0].count(500) <= 85
    assert 20 <= runs[0].count(502) <= 65
    assert 70 <= runs[0].count(200) <= 130


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("gone_users", {"bob": "banned"}),
        ("gone_users", {"": "missing"}),
        ("gone_users", ["bob"]),
        ("same_reposts", {"ann": "ann"}),
        ("same_reposts", {"ann": "bob", "bob": "cat"}),
        ("same_reposts", {"ann": ""}),
    ],
)
def test_bad_gone_users_and_same_reposts_are_refused(name: str, value: object) -> None:
    sim = Simulator()
    with pytest.raises(ValueError, match=name):
        setattr(sim.config, name, value)
    with pytest.raises(ValueError, match=name):
        Simulator(**{name: value})


async def test_a_removed_user_is_refused_and_a_user_with_the_same_reposts_is_served_them() -> None:
    async with Simulator(gone_users={"bob_n30": "private"}, same_reposts={"ann": "bob_n30"}) as sim:
        sim.remove_user("cat_n20")
        assert sim.config.gone_users == {"bob_n30": "private", "cat_n20": "missing"}
        async with make_client(sim) as client:
            with pytest.raises(UserUnavailableError):
                await client.fetch_page("bob_n30")
            with pytest.raises(UserNotFoundError):
                await client.fetch_page("cat_n20")
            page = await client.fetch_page("ann")
        truth = Simulator().ground_truth("bob_n30")
        assert [json.loads(raw) for raw in page.raw_videos] == truth[:30]
        assert sim.ground_truth("ann") == truth
        assert sim.pages_needed("ann", 10) == 3
