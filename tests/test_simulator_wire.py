"""The simulator's wire knobs over real loopback sockets: unknown keys, string ids, type drift."""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import subprocess
import sys
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any, NamedTuple

import aiohttp
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from support import FakeClock

from tiktok_repost_async.cli import build_parser
from tiktok_repost_async.simulator import (
    DRIFT_KINDS,
    RESEARCH_PATH,
    TEST_CLIENT_KEY,
    TEST_CLIENT_SECRET,
    TOKEN_PATH,
    VIDEO_FIELDS,
    Fault,
    Simulator,
    add_simulator_arguments,
    config_from_args,
    main,
)
from tiktok_repost_async.simulator._data import ALL_FIELDS, field_mask, repost_count
from tiktok_repost_async.simulator._wire import EncodedUser, Wire, ground_truth

ALL = ",".join(VIDEO_FIELDS)
LOG_ID = re.compile(rb'"log_id":"[0-9A-F]{34}"')
DATA_KEYS = {"reposted_videos", "cursor", "has_more"}
ERROR_KEYS = {"code", "message", "log_id"}
# Documented keys of the nested objects; what else they carry is unknown to a client.
NESTED_KEYS = {
    "hashtag_info_list": {"hashtag_id", "hashtag_name", "hashtag_description"},
    "sticker_info_list": {"sticker_id", "sticker_name"},
    "effect_info_list": {"effect_id", "effect_name", "effect_photo_URI"},
}
OBJECT_KEYS = {"video_label": {"content"}, "video_tag": {"video_tag_type", "video_tag_number"}}


class Raw(NamedTuple):
    status: int
    raw: bytes

    @property
    def body(self) -> dict[str, Any]:
        # json, not msgspec: Python's json keeps every integer exact, whatever its size.
        body: dict[str, Any] = json.loads(self.raw)
        return body

    @property
    def videos(self) -> list[dict[str, Any]]:
        videos: list[dict[str, Any]] = self.body["data"].get("reposted_videos", [])
        return videos


class Api:
    """A bare client of the simulator that keeps every answer's bytes."""

    def __init__(self, session: aiohttp.ClientSession, sim: Simulator) -> None:
        self.session = session
        self.sim = sim
        self.access_token: str | None = None

    async def bearer(self) -> str:
        if self.access_token is None:
            form = {
                "client_key": self.sim.client_key,
                "client_secret": self.sim.client_secret,
                "grant_type": "client_credentials",
            }
            async with self.session.post(self.sim.base_url + TOKEN_PATH, data=form) as response:
                self.access_token = json.loads(await response.read())["access_token"]
        assert self.access_token is not None
        return self.access_token

    async def page(
        self, username: str, cursor: int = 0, max_count: int = 100, fields: str = ALL
    ) -> Raw:
        headers = {"Authorization": f"Bearer {await self.bearer()}"}
        payload = {"username": username, "cursor": cursor, "max_count": max_count}
        url = self.sim.base_url + RESEARCH_PATH
        async with self.session.post(
            url, params={"fields": fields}, json=payload, headers=headers
        ) as response:
            return Raw(response.status, await response.read())

    async def walk(self, username: str, max_count: int = 100, fields: str = ALL) -> list[Raw]:
        """Return every page a perfect client asks for, in order."""
        pages = []
        cursor = 0
        while True:
            answer = await self.page(username, cursor, max_count, fields)
            assert answer.status == 200, answer
            pages.append(answer)
            data = answer.body["data"]
            if not data["has_more"] or data["cursor"] == cursor:
                return pages
            cursor = data["cursor"]


@pytest.fixture
async def sim(clock: FakeClock) -> AsyncIterator[Simulator]:
    async with Simulator(clock=clock) as simulator:
        yield simulator


@pytest.fixture
async def api(sim: Simulator) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as session:
        yield Api(session, sim)


def assert_pages_follow_the_ground_truth(pages: list[Raw], truth: list[dict[str, Any]]) -> None:
    """Check that each page holds the next stretch of the ground truth, as sent."""
    taken = 0
    for page in pages:
        videos = page.videos
        assert videos == truth[taken : taken + len(videos)]
        taken += len(videos)
    assert taken == len(truth)


def nested_objects(video: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Return every documented nested object a video carries, with the field holding it."""
    found = []
    for key in NESTED_KEYS:
        found += [(key, item) for item in video.get(key, []) if isinstance(item, dict)]
    for key in OBJECT_KEYS:
        if isinstance(video.get(key), dict):
            found.append((key, video[key]))
    return found


def documented_types(video: dict[str, Any]) -> bool:
    """Tell whether every field a video carries has its documented JSON type (ids as numbers)."""
    whole = ("id", "create_time", "like_count", "comment_count", "share_count", "view_count")
    checks: dict[str, Callable[[Any], bool]] = {
        **{key: lambda v: type(v) is int for key in (*whole, "music_id", "favorites_count")},
        "video_duration": lambda v: type(v) is int,
        "username": lambda v: type(v) is str,
        "region_code": lambda v: type(v) is str,
        "video_description": lambda v: type(v) is str,
        "is_stem_verified": lambda v: type(v) is bool,
        "hashtag_names": lambda v: type(v) is list and all(type(t) is str for t in v),
        "video_mention_list": lambda v: type(v) is list and all(type(t) is str for t in v),
        "hashtag_info_list": lambda v: type(v) is list and all(type(t) is dict for t in v),
        "sticker_info_list": lambda v: type(v) is list and all(type(t) is dict for t in v),
        "effect_info_list": lambda v: type(v) is list and all(type(t) is dict for t in v),
        "video_label": lambda v: type(v) is dict,
        "video_tag": lambda v: type(v) is dict,
    }
    return "id" in video and all(checks[key](value) for key, value in video.items())


def _is_iso_date(value: Any) -> bool:
    return isinstance(value, str) and datetime.fromisoformat(value).year >= 2019


def _is_non_numeric_string(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        float(value)
    except ValueError:
        return True
    return False


# What each drift kind leaves in its video.
DRIFTED: dict[str, Callable[[dict[str, Any]], bool]] = {
    "video_duration": lambda v: (
        type(v["video_duration"]) is float and not v["video_duration"].is_integer()
    ),
    "hashtag_names": lambda v: None in v["hashtag_names"] and len(v["hashtag_names"]) > 1,
    "region_code": lambda v: type(v["region_code"]) is int,
    "is_stem_verified": lambda v: (
        type(v["is_stem_verified"]) is int and v["is_stem_verified"] in (0, 1)
    ),
    "like_count": lambda v: _is_non_numeric_string(v["like_count"]),
    "create_time": lambda v: _is_iso_date(v["create_time"]),
    "video_label": lambda v: type(v["video_label"]) is str and v["video_label"] != "",
    "hashtag_info_list": lambda v: any(type(item) is str for item in v["hashtag_info_list"]),
    "sticker_info_list": lambda v: type(v["sticker_info_list"]) is dict,
    "music_id": lambda v: type(v["music_id"]) is float,
    "no_id": lambda v: "id" not in v,
    "bad_id": lambda v: v["id"] == "n/a",
}


# -- knobs off: nothing changes ------------------------------------------------------------------

# sha256 of raw pages with their log_id emptied, taken before the wire knobs existed.
GOLDEN = [
    (
        "bench_n250_7",
        ALL,
        100,
        100,
        {},
        "9205426a8077b778a887d632431cf444041ae5a2c1fdcd4c51da5b2bbd613bf1",
    ),
    (
        "short_gus",
        "id,create_time,hashtag_info_list,favourites_count",
        0,
        100,
        {},
        "59cc4302146dc96cedf2e7838b18de26cfbb2744be8919bcbf78602b94e4f678",
    ),
    (
        "hugeid_hal",
        ALL,
        50,
        50,
        {"favorites_spelling": "favourites_count"},
        "7b9e0e440985fec0d741b7104853e55c9edbbfd8ba6d5d3e794aabd043f9917b",
    ),
    (
        "bench_n30",
        "video_label,sticker_info_list,effect_info_list,video_tag,music_id",
        0,
        30,
        {"huge_ids": True},
        "819cd62eb6bce52153ecb463cd992afb1ed712c06f4f2e62cf08a33217aae08b",
    ),
]


@pytest.mark.parametrize(("username", "fields", "cursor", "max_count", "knobs", "digest"), GOLDEN)
async def test_pages_are_byte_identical_with_the_knobs_off(
    sim: Simulator,
    api: Api,
    username: str,
    fields: str,
    cursor: int,
    max_count: int,
    knobs: dict[str, Any],
    digest: str,
) -> None:
    for name, value in knobs.items():
        setattr(sim.config, name, value)

    async def fingerprint() -> str:
        answer = await api.page(username, cursor, max_count, fields)
        return hashlib.sha256(LOG_ID.sub(b'"log_id":""', answer.raw)).hexdigest()

    assert await fingerprint() == digest
    # Knobs turned on and off again must not leave their encodings behind.
    sim.config.extra_keys = sim.config.string_ids = True
    sim.config.type_drift = 0.5
    assert await fingerprint() != digest
    sim.config.extra_keys = sim.config.string_ids = False
    sim.config.type_drift = 0.0
    assert await fingerprint() == digest


async def test_knobs_off_keep_the_documented_shapes_and_types(sim: Simulator, api: Api) -> None:
    pages = await api.walk("big_eve")
    videos = [video for page in pages for video in page.videos]
    assert_pages_follow_the_ground_truth(pages, sim.ground_truth("big_eve"))
    assert all(documented_types(video) for video in videos)
    assert all(set(page.body) == {"data", "error"} for page in pages)
    assert all(set(page.body["data"]) == DATA_KEYS for page in pages)
    assert all(set(page.body["error"]) == ERROR_KEYS for page in pages)
    for video in videos:
        assert set(video) <= set(VIDEO_FIELDS)
        for key, item in nested_objects(video):
            known = NESTED_KEYS.get(key) or OBJECT_KEYS[key]
            assert set(item) == known
        # Sticker and effect ids are strings even without string_ids, as the live API sends.
        assert all(type(s["sticker_id"]) is str for s in video.get("sticker_info_list", []))
        assert all(type(e["effect_id"]) is str for e in video.get("effect_info_list", []))
        assert all(type(h["hashtag_id"]) is int for h in video.get("hashtag_info_list", []))
    assert sim.drifted("big_eve") == {}
    missing = await api.page("missing_bob")
    assert set(missing.body) == {"data", "error"}
    assert set(missing.body["error"]) == ERROR_KEYS


def test_ground_truth_of_named_fields_matches_the_plain_one_without_knobs() -> None:
    for username in ("alice", "short_gus", "hugeid_hal", "stall_fay"):
        assert ground_truth(username, fields=VIDEO_FIELDS) == ground_truth(username)
    narrow = ground_truth("bench_n20", fields=["id", "favourites_count"])
    assert narrow == [
        {key: value for key, value in video.items() if key in ("id", "favorites_count")}
        for video in ground_truth("bench_n20")
    ]


# -- every knob: the wire equals the ground truth ------------------------------------------------

KNOB_SETS = [
    {"extra_keys": True},
    {"string_ids": True},
    {"type_drift": 0.3},
    {"extra_keys": True, "string_ids": True, "type_drift": 1.0},
    {"extra_keys": True, "huge_ids": True},
]


@pytest.mark.parametrize("knobs", KNOB_SETS, ids=lambda knobs: "+".join(knobs))
@pytest.mark.parametrize(
    ("username", "max_count"),
    [("bench_n250_7", 100), ("short_gus", 100), ("hugeid_hal", 37), ("stall_fay", 40)],
)
async def test_each_page_is_the_ground_truth_as_sent(
    sim: Simulator, api: Api, knobs: dict[str, Any], username: str, max_count: int
) -> None:
    for name, value in knobs.items():
        setattr(sim.config, name, value)
    sim.drift(username, [3], "no_id")
    sim.drift(username, [4], "bad_id")
    pages = await api.walk(username, max_count)
    truth = sim.ground_truth(username, max_count)
    assert_pages_follow_the_ground_truth(pages, truth)
    assert truth == ground_truth(
        username,
        huge_ids=sim.config.huge_ids,
        max_count=max_count,
        extra_keys=sim.config.extra_keys,
        string_ids=sim.config.string_ids,
        type_drift=sim.config.type_drift,
        drifts={3: "no_id", 4: "bad_id"},
    )


@pytest.mark.parametrize(
    "fields",
    ["id,like_count,hashtag_names", "video_label,music_id", "username,view_count", "id"],
)
async def test_pages_of_some_fields_are_that_ground_truth_as_sent(
    sim: Simulator, api: Api, fields: str
) -> None:
    sim.config.extra_keys = sim.config.string_ids = True
    sim.config.type_drift = 0.5
    sim.drift("bench_n120", [7], "no_id")
    pages = await api.walk("bench_n120", 50, fields)
    truth = sim.ground_truth("bench_n120", fields=fields.split(","))
    assert_pages_follow_the_ground_truth(pages, truth)
    asked = set(fields.split(","))
    for video in truth:
        # Unknown keys come whatever was asked; documented ones only when asked.
        assert set(video) & set(VIDEO_FIELDS) <= asked


async def test_favourites_spelling_is_the_one_knob_ground_truth_does_not_follow(
    sim: Simulator, api: Api
) -> None:
    sim.config.favorites_spelling = "favourites_count"
    sim.config.extra_keys = sim.config.string_ids = True
    sim.config.type_drift = 0.2
    pages = await api.walk("bench_n150")
    videos = [video for page in pages for video in page.videos]
    assert not any("favorites_count" in video for video in videos)
    assert any("favourites_count" in video for video in videos)
    for video in videos:
        if "favourites_count" in video:
            video["favorites_count"] = video.pop("favourites_count")
    # Dicts compare without their key order: only the spelling differs.
    assert videos == sim.ground_truth("bench_n150")


@settings(max_examples=40, deadline=None)
@given(
    username=st.text(max_size=12),
    max_count=st.integers(1, 100),
    extra_keys=st.booleans(),
    string_ids=st.booleans(),
    type_drift=st.sampled_from([0.0, 0.1, 1.0]),
)
def test_encoded_pages_always_add_up_to_the_ground_truth(
    username: str, max_count: int, extra_keys: bool, string_ids: bool, type_drift: float
) -> None:
    assume(Simulator.user_kind(username) not in ("missing", "private", "stall"))
    wire = Wire(extra_keys, string_ids, type_drift, ((0, "bad_id"),) if username else ())
    assume(repost_count(username) > 0 or not wire.drifts)
    user = EncodedUser(username, False, ALL_FIELDS, False, wire)
    videos = []
    for cursor in range(0, max(1, user.total), max_count):
        blob, count = user.page(cursor, cursor + max_count)
        page = json.loads(b"[" + blob + b"]")
        assert len(page) == count <= max_count
        videos += page
    truth = ground_truth(
        username,
        extra_keys=extra_keys,
        string_ids=string_ids,
        type_drift=type_drift,
        drifts=dict(wire.drifts),
    )
    assert videos == truth


# -- extra_keys ----------------------------------------------------------------------------------


async def test_unknown_keys_appear_at_every_level(sim: Simulator, api: Api) -> None:
    sim.config.extra_keys = True
    pages = await api.walk("big_eve")
    videos = [video for page in pages for video in page.videos]
    assert_pages_follow_the_ground_truth(pages, sim.ground_truth("big_eve"))
    for page in pages:
        assert set(page.body) > {"data", "error"}
        assert set(page.body["data"]) > DATA_KEYS
        assert "search_id" in page.body["data"]
        assert set(page.body["error"]) > ERROR_KEYS
        assert page.body["error"]["http_status_code"] == 200
    unknown = [set(video) - set(VIDEO_FIELDS) for video in videos]
    assert sum(not keys for keys in unknown) > len(videos) // 10  # some videos have none
    assert {"effect_ids", "x_playlist_info"} <= set().union(*unknown)
    for video in videos:
        if "effect_ids" in video:
            assert video["effect_ids"]
            assert all(type(i) is str and i.isdigit() for i in video["effect_ids"])
        if "x_playlist_info" in video:
            playlist = video["x_playlist_info"]
            assert type(playlist["playlist_id"]) is int
            assert playlist["playlist_id"] > 2**63
            assert playlist["meta"] == {"depth": [1, {"k": None, "f": 1500.0}]}
    holders = set()
    for video in videos:
        for key, item in nested_objects(video):
            known = NESTED_KEYS.get(key) or OBJECT_KEYS[key]
            assert set(item) > known, (key, item)
            holders.add(key)
    assert holders == set(NESTED_KEYS) | set(OBJECT_KEYS)


async def test_unknown_keys_come_whatever_fields_asked_for(sim: Simulator, api: Api) -> None:
    sim.config.extra_keys = True
    answer = await api.page("bench_n100", fields="id")
    keys = set().union(*answer.videos)
    assert "id" in keys
    assert keys & set(VIDEO_FIELDS) == {"id"}
    assert {"effect_ids", "x_playlist_info"} <= keys


async def test_error_answers_carry_unknown_keys_too(
    sim: Simulator, api: Api, clock: FakeClock
) -> None:
    sim.config.extra_keys = True
    missing = await api.page("missing_bob")
    assert missing.status == 400
    assert missing.body["error"]["http_status_code"] == 400
    assert missing.body["extra"]["now"] == int(clock.now * 1000)
    assert missing.body["data"] == {}
    sim.script("alice", [Fault.QUOTA])
    quota = await api.page("alice")
    assert (quota.status, quota.body["error"]["http_status_code"]) == (429, 429)
    assert quota.body["error"]["code"] == "rate_limit_exceeded"


# -- string_ids ----------------------------------------------------------------------------------


def _ids(video: dict[str, Any]) -> list[Any]:
    found = [video[key] for key in ("id", "music_id") if key in video]
    found += [tag["hashtag_id"] for tag in video.get("hashtag_info_list", [])]
    found += [sticker["sticker_id"] for sticker in video.get("sticker_info_list", [])]
    found += [effect["effect_id"] for effect in video.get("effect_info_list", [])]
    return found


@pytest.mark.parametrize("extra_keys", [False, True])
async def test_string_ids_are_strings_at_every_level(
    sim: Simulator, api: Api, extra_keys: bool
) -> None:
    plain = sim.ground_truth("hugeid_hal")
    sim.config.string_ids = True
    sim.config.extra_keys = extra_keys
    pages = await api.walk("hugeid_hal")
    videos = [video for page in pages for video in page.videos]
    assert_pages_follow_the_ground_truth(pages, sim.ground_truth("hugeid_hal"))
    assert len(videos) == len(plain)
    for video, before in zip(videos, plain, strict=True):
        ids = _ids(video)
        assert ids
        assert all(type(i) is str and i.isdigit() for i in ids)
        # The same digits as the numbers they stand for, beyond uint64 included.
        assert [str(i) for i in _ids(before)] == ids
        assert {key for key in video if key in VIDEO_FIELDS} == set(before)
    assert {"sticker_info_list", "effect_info_list", "hashtag_info_list"} <= set().union(*videos)


# -- type drift ----------------------------------------------------------------------------------


async def test_drift_puts_each_kind_at_its_position(sim: Simulator, api: Api) -> None:
    plain = sim.ground_truth("bench_n40")
    for index, kind in enumerate(DRIFT_KINDS):
        sim.drift("bench_n40", [2 * index], kind)
    expected = {2 * index: kind for index, kind in enumerate(DRIFT_KINDS)}
    assert sim.drifted("bench_n40") == expected
    videos = (await api.page("bench_n40")).videos
    assert videos == sim.ground_truth("bench_n40")
    for index, video in enumerate(videos):
        if index in expected:
            assert DRIFTED[expected[index]](video), (expected[index], video)
            # Only the drifted field differs from the plain video.
            field = {"no_id": "id", "bad_id": "id"}.get(expected[index], expected[index])
            others = {key: value for key, value in video.items() if key != field}
            assert others == {key: value for key, value in plain[index].items() if key != field}
        else:
            assert video == plain[index]
            assert documented_types(video)


def test_drift_kinds_are_named_after_their_fields() -> None:
    assert len(set(DRIFT_KINDS)) == len(DRIFT_KINDS) == 12
    assert set(DRIFT_KINDS) - {"no_id", "bad_id"} <= set(VIDEO_FIELDS)
    assert DRIFT_KINDS[-2:] == ("no_id", "bad_id")


async def test_scripted_kinds_none_pick_deterministically(sim: Simulator, api: Api) -> None:
    sim.drift("bench_n60", range(0, 60, 3))
    first = sim.drifted("bench_n60")
    assert set(first) == set(range(0, 60, 3))
    assert set(first.values()) <= set(DRIFT_KINDS[:-2])
    assert len(set(first.values())) > 3
    other = Simulator()
    other.drift("bench_n60", range(0, 60, 3))
    assert other.drifted("bench_n60") == first
    videos = (await api.page("bench_n60")).videos
    assert all(DRIFTED[kind](videos[index]) for index, kind in first.items())
    # A later script adds to the earlier one and overrides it where they meet.
    sim.drift("bench_n60", [0, 1], "bad_id")
    assert sim.drifted("bench_n60") == first | {0: "bad_id", 1: "bad_id"}


async def test_a_drifted_field_is_always_one_that_was_asked_for(sim: Simulator, api: Api) -> None:
    sim.drift("bench_n10", [0], "video_label")
    sim.drift("bench_n10", [1], "no_id")
    sim.drift("bench_n10", [2], "bad_id")
    sim.drift("bench_n10", [3], "music_id")
    # video_label is not asked for: the next kind in DRIFT_KINDS that is (like_count) drifts.
    videos = (await api.page("bench_n10", fields="id,like_count")).videos
    assert DRIFTED["like_count"](videos[0])
    assert type(videos[0]["id"]) is int
    assert DRIFTED["no_id"](videos[1])
    assert DRIFTED["bad_id"](videos[2])
    assert DRIFTED["like_count"](videos[3])  # music_id wraps round to video_duration, ...
    assert all(documented_types(video) for video in videos[4:])
    assert videos == sim.ground_truth("bench_n10", fields=["id", "like_count"])
    # Without the id asked for, no_id and bad_id leave their videos as they are.
    videos = (await api.page("bench_n10", fields="username,hashtag_names")).videos
    assert all("id" not in video for video in videos)
    assert DRIFTED["hashtag_names"](videos[0])
    assert type(videos[1]["hashtag_names"]) is list
    assert None not in videos[1]["hashtag_names"]
    assert None not in videos[2]["hashtag_names"]
    # Nothing asked for can drift: the videos stay as documented.
    videos = (await api.page("bench_n10", fields="username,view_count")).videos
    assert videos == ground_truth("bench_n10", fields=["username", "view_count"])


async def test_type_drift_is_the_same_in_every_simulator(clock: FakeClock) -> None:
    runs = []
    for seed, faults in ((1, {}), (2, {Fault.SERVER_ERROR: 0.3})):
        async with (
            Simulator(clock=clock, type_drift=0.15, seed=seed, faults=faults) as sim,
            aiohttp.ClientSession() as session,
        ):
            api = Api(session, sim)
            statuses = [(await api.page("bench_n20")).status for _ in range(8)]
            sim.config.faults = {}
            pages = await api.walk("big_eve")
            truth = sim.ground_truth("big_eve")
            assert_pages_follow_the_ground_truth(pages, truth)
            runs.append((sim.drifted("big_eve"), truth, [p.videos for p in pages]))
            if faults:
                assert 500 in statuses
    assert runs[0] == runs[1]
    drifted = runs[0][0]
    assert 0.1 < len(drifted) / len(runs[0][1]) < 0.2
    assert set(drifted.values()) == set(DRIFT_KINDS[:-2])
    videos = runs[0][1]
    assert all(documented_types(video) for i, video in enumerate(videos) if i not in drifted)
    assert all(DRIFTED[kind](videos[index]) for index, kind in drifted.items())
    # The stream does not depend on the rate: a higher rate keeps the drifted videos and adds.
    more = Simulator(type_drift=0.3).drifted("big_eve")
    assert drifted.items() <= more.items()
    assert len(more) > len(drifted)


async def test_drifted_leaves_out_moderated_videos(sim: Simulator, api: Api) -> None:
    sim.config.type_drift = 0.5
    sim.drift("short_gus", [100, 101], "no_id")  # both in the moderated run
    drifted = sim.drifted("short_gus")
    assert 100 not in drifted
    assert 101 not in drifted
    pages = await api.walk("short_gus")
    truth = sim.ground_truth("short_gus")
    assert_pages_follow_the_ground_truth(pages, truth)
    assert sum(not documented_types(video) for video in truth) == len(drifted)


async def test_ground_truth_keeps_videos_without_a_usable_id(sim: Simulator) -> None:
    sim.drift("bench_n5", [1], "no_id")
    sim.drift("bench_n5", [3], "bad_id")
    truth = sim.ground_truth("bench_n5")
    assert len(truth) == 5
    assert "id" not in truth[1]
    assert truth[3]["id"] == "n/a"
    assert all(type(truth[i]["id"]) is int for i in (0, 2, 4))


async def test_knob_changes_at_run_time_are_never_served_stale(sim: Simulator, api: Api) -> None:
    before = (await api.page("bench_n30")).videos
    sim.config.string_ids = True
    assert all(type(video["id"]) is str for video in (await api.page("bench_n30")).videos)
    sim.config.string_ids = False
    sim.drift("bench_n30", [5], "bad_id")
    after = (await api.page("bench_n30")).videos
    assert after[5]["id"] == "n/a"
    assert after[:5] + after[6:] == before[:5] + before[6:]
    sim.config.type_drift = 1.0
    assert all(not documented_types(v) for v in (await api.page("bench_n30")).videos)
    assert sim.ground_truth("bench_n30") == (await api.page("bench_n30")).videos


# -- validation and the command line -------------------------------------------------------------


async def test_wire_knobs_are_validated(sim: Simulator) -> None:
    for name in ("extra_keys", "string_ids"):
        for bad in (1, "yes", None):
            with pytest.raises(ValueError, match=name):
                setattr(sim.config, name, bad)
    for bad_rate in (-0.1, 1.5, True, "0.5", None, float("nan")):
        with pytest.raises(ValueError, match="type_drift"):
            sim.config.type_drift = bad_rate  # type: ignore[assignment]
    with pytest.raises(ValueError, match="type_drift"):
        Simulator(type_drift=2)
    sim.config.type_drift = 1
    assert sim.config.type_drift == 1.0
    assert type(sim.config.type_drift) is float


@pytest.mark.parametrize(
    ("username", "indices", "kind", "word"),
    [
        ("bench_n10", [0], "video_length", "unknown drift kind"),
        ("bench_n10", [], "nope", "unknown drift kind"),
        ("bench_n10", [10], None, "position"),
        ("bench_n10", [-1], "bad_id", "position"),
        ("bench_n10", [True], "bad_id", "position"),
        ("bench_n10", ["3"], "bad_id", "position"),
        ("missing_bob", [0], None, "position"),
    ],
)
def test_bad_drift_scripts_raise_and_change_nothing(
    username: str, indices: list[Any], kind: str | None, word: str
) -> None:
    sim = Simulator()
    sim.drift(username, [], None)
    if repost_count(username):
        sim.drift(username, [2], "music_id")
    before = sim.drifted(username)
    with pytest.raises(ValueError, match=word):
        sim.drift(username, indices, kind)
    assert sim.drifted(username) == before


def test_wire_options_map_onto_the_configuration() -> None:
    parser = argparse.ArgumentParser()
    add_simulator_arguments(parser)
    config = config_from_args(
        parser.parse_args(["--extra-keys", "--string-ids", "--type-drift", "0.25"])
    )
    assert (config.extra_keys, config.string_ids, config.type_drift) == (True, True, 0.25)
    defaults = config_from_args(parser.parse_args([]))
    assert (defaults.extra_keys, defaults.string_ids, defaults.type_drift) == (False, False, 0.0)


def test_the_serve_command_takes_the_wire_options() -> None:
    args = build_parser().parse_args(
        ["serve", "--port", "0", "--extra-keys", "--string-ids", "--type-drift", "1"]
    )
    config = config_from_args(args)
    assert (config.extra_keys, config.string_ids, config.type_drift) == (True, True, 1.0)


def test_the_simulator_process_serves_with_the_wire_options() -> None:
    command = [sys.executable, "-m", "tiktok_repost_async.simulator", "--port", "0"]
    command += ["--extra-keys", "--string-ids", "--type-drift", "1"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as process:
        try:
            assert process.stdout is not None
            base_url = process.stdout.readline().strip()
            form = {
                "client_key": TEST_CLIENT_KEY,
                "client_secret": TEST_CLIENT_SECRET,
                "grant_type": "client_credentials",
            }
            token = json.loads(post(base_url + TOKEN_PATH, urllib.parse.urlencode(form).encode()))
            headers = {
                "Authorization": f"Bearer {token['access_token']}",
                "Content-Type": "application/json",
            }
            payload = json.dumps({"username": "bench_n20", "max_count": 20}).encode()
            body = json.loads(post(f"{base_url}{RESEARCH_PATH}?fields={ALL}", payload, headers))
            assert body["error"]["http_status_code"] == 200
            assert body["data"]["reposted_videos"] == Simulator(
                extra_keys=True, string_ids=True, type_drift=1
            ).ground_truth("bench_n20")
            process.terminate()
            assert process.wait(timeout=10) == 0
        finally:
            process.kill()


def post(url: str, data: bytes, headers: dict[str, str] | None = None) -> bytes:
    """POST with the standard library only; return the body of a 200 answer."""
    request = urllib.request.Request(url, data=data, headers=headers or {}, method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
        body: bytes = response.read()
        return body


@pytest.mark.parametrize("rate", ["1.5", "-0.1", "often", "nan"])
def test_bad_type_drift_option_exits_2(capsys: pytest.CaptureFixture[str], rate: str) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--type-drift", rate])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert "--type-drift" in error
    assert "a rate from 0 to 1" in error


def test_field_masks_of_both_spellings_agree() -> None:
    assert field_mask(["favourites_count"]) == field_mask(["favorites_count"])
