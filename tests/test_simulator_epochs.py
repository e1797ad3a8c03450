"""The simulator's epochs: repost lists moved forward between the rounds of a panel study.

Served pages are walked over real loopback sockets by a bare client written from the API's
documentation; the dataset's functions are checked directly where no socket is involved.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import signal
import subprocess
import sys
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tiktok_repost_async import RepostClient, Store
from tiktok_repost_async.cli import build_parser
from tiktok_repost_async.diff import diff_rounds
from tiktok_repost_async.harvester import harvest
from tiktok_repost_async.simulator import (
    COUNT_FIELDS,
    RESEARCH_PATH,
    TOKEN_PATH,
    VIDEO_FIELDS,
    Simulator,
    SimulatorConfig,
    _data,
    _wire,
    add_simulator_arguments,
    config_from_args,
)
from tiktok_repost_async.simulator._data import repost_count
from tiktok_repost_async.simulator._wire import changes, ground_truth

ALL = ",".join(VIDEO_FIELDS)
CLOCK = 1_700_000_000.0
MASKED = re.compile(rb'"(log_id|search_id)":"[0-9A-F]{34}"')
# No epoch-0 video was created at or after this second (2019-01-01 plus six years' span).
LATEST = 1_546_300_800 + 189_000_000
NORMAL = [f"panel{i}" for i in range(150)]


class Api:
    """A bare client of the simulator: a token, then pages posted as the documentation says."""

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
                self.access_token = (await response.json())["access_token"]
        assert self.access_token is not None
        return self.access_token

    async def raw(
        self, username: str, cursor: int = 0, max_count: int = 100, fields: str = ALL
    ) -> tuple[int, bytes]:
        headers = {"Authorization": f"Bearer {await self.bearer()}"}
        body = {"username": username, "cursor": cursor, "max_count": max_count}
        url = self.sim.base_url + RESEARCH_PATH
        async with self.session.post(
            url, params={"fields": fields}, json=body, headers=headers
        ) as response:
            return response.status, await response.read()

    async def page(self, username: str, cursor: int = 0, max_count: int = 100) -> dict[str, Any]:
        status, raw = await self.raw(username, cursor, max_count)
        # json, not msgspec: Python's json keeps every integer exact, whatever its size.
        body: dict[str, Any] = json.loads(raw)
        assert status == 200, body
        data: dict[str, Any] = body["data"]
        return data

    async def walk(self, username: str, max_count: int = 100) -> tuple[list[Any], int]:
        """Collect a user's videos as a perfect client does; return them and the pages asked."""
        videos: list[Any] = []
        cursor, pages = 0, 0
        while True:
            data = await self.page(username, cursor, max_count)
            pages += 1
            videos += data.get("reposted_videos", [])
            if not data["has_more"] or data["cursor"] == cursor:
                return videos, pages
            cursor = data["cursor"]


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator(clock=lambda: CLOCK) as simulator:
        yield simulator


@pytest.fixture
async def api(sim: Simulator) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as session:
        yield Api(session, sim)


@pytest.fixture
def fresh_timelines(monkeypatch: pytest.MonkeyPatch) -> None:
    """Start without any list held, so that an epoch is computed from epoch 0."""
    monkeypatch.setattr(_data, "_TIMELINES", _data._Timelines())


def ids(videos: list[dict[str, Any]]) -> list[int]:
    return [int(video["id"]) for video in videos]


def others(video: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in video.items() if key not in COUNT_FIELDS}


# -- epoch 0 is today's simulator, byte for byte ---------------------------------------------------

# Digests taken from the simulator before epochs existed: (knobs, username, cursor, max_count,
# fields, scripted drifts) -> sha256 of the page (log_id and search_id masked) and of the
# ground truth as sorted JSON.
PINNED = [
    (
        {},
        "alice_n250",
        0,
        100,
        ALL,
        (),
        "a666019b89e79ab046af61384e0d2119dd582a89a75a917e80c3a3f700b336aa",
        "d23ec46e2edbb7339e2a1ccfe4f3510b532d39bd754cbad9b2f7204d305099ac",
    ),
    (
        {},
        "big0",
        900,
        100,
        ALL,
        (),
        "52735e6044843967c2150992ae964dd8a8ea2d41775ad7e0d681b2ea5f3a2bd1",
        "9f5d69abde4f550831705dae9f775277e80787b7d70ea06e3656bc6e6959dd15",
    ),
    (
        {},
        "short_gus",
        100,
        100,
        ALL,
        (),
        "3ed2fc69066474d1d22ddd5658091023454a9ca2d730ac734985c0bf6911e164",
        "a541d7b27b7e6282ec7e76ab06d4f5e0c2856d4a25b72dfd6c4dee065ac65422",
    ),
    (
        {},
        "short_gus",
        200,
        100,
        ALL,
        (),
        "3862a3aeb93bc1fc90793d16839ffaab6e75e87bd4be8874887bd1d2a0413aa8",
        "a541d7b27b7e6282ec7e76ab06d4f5e0c2856d4a25b72dfd6c4dee065ac65422",
    ),
    (
        {},
        "hugeid_x",
        0,
        100,
        ALL,
        (),
        "9782c41c7859d8801eedebbb8738a6b67e5bf174a9571734d26724393739e697",
        "cf69c394e8df16b7b418f53918915a85f712fd1679c83d5335b8631910b7cfec",
    ),
    (
        {},
        "stall_fay",
        50,
        50,
        ALL,
        (),
        "190071067ea3a156c6c87b29abdd60405f9fd6baa5fd6f5b0dc0bc68b4d228e3",
        "c8e0f0cb6aa891c15626ebb08be0a15960175201e9ee326768edf9900f86f5a8",
    ),
    (
        {"favorites_spelling": "favourites_count"},
        "user7",
        0,
        30,
        "id,like_count,favourites_count,create_time",
        (),
        "6162452e69f651ee06a7c46a1316640ff4f29d09b64e1e03dd792b0301adcb3b",
        "9ad6be9690daf7557b4aa39cdbdbdbb9c2a9ec7d864fa3da1b6a14b11ddfe30c",
    ),
    (
        {"extra_keys": True, "string_ids": True, "type_drift": 0.3, "huge_ids": True},
        "wire_n120",
        100,
        100,
        ALL,
        ((3, "bad_id"), (110, None)),
        "b47ed6cc4e4c57b25541459d5abafa09b95241414abc51b170800c0fe6a0d958",
        "856c7879d9a13af25a32fbd7f6c31cb28f23a5262b8aebbb4f44185eea2829f4",
    ),
]


@pytest.mark.parametrize(
    ("knobs", "username", "cursor", "max_count", "fields", "drifts", "page_sha", "truth_sha"),
    PINNED,
    ids=[f"{case[1]}@{case[2]}" for case in PINNED],
)
async def test_epoch_0_is_byte_identical_to_the_simulator_before_epochs(
    knobs: dict[str, Any],
    username: str,
    cursor: int,
    max_count: int,
    fields: str,
    drifts: tuple[tuple[int, str | None], ...],
    page_sha: str,
    truth_sha: str,
) -> None:
    async with (
        Simulator(clock=lambda: CLOCK, **knobs) as sim,
        aiohttp.ClientSession() as session,
    ):
        for position, kind in drifts:
            sim.drift(username, [position], kind)
        api = Api(session, sim)
        assert sim.config.epoch == 0
        # Once at the default, once after a visit to another epoch: the cache keeps them apart.
        for epoch in (0, 3, 0):
            sim.config.epoch = epoch
            status, raw = await api.raw(username, cursor, max_count, fields)
            assert status == 200
            digest = hashlib.sha256(MASKED.sub(b"", raw)).hexdigest()
            assert (digest == page_sha) is (epoch == 0), epoch
        truth = json.dumps(sim.ground_truth(username), sort_keys=True).encode()
        assert hashlib.sha256(truth).hexdigest() == truth_sha
        assert sim.ground_truth(username, epoch=0) == sim.ground_truth(username)


def test_the_epoch_knob_is_validated_and_settable_at_run_time() -> None:
    assert SimulatorConfig().epoch == 0
    for bad in (-1, True, 1.5, "2", None):
        with pytest.raises(ValueError, match="epoch must be an integer >= 0"):
            SimulatorConfig(epoch=bad)
    config = SimulatorConfig(epoch=2)
    config.epoch = 5
    assert config.epoch == 5
    with pytest.raises(ValueError, match="epoch"):
        config.epoch = -3
    assert config.epoch == 5
    sim = Simulator(epoch=1)
    with pytest.raises(ValueError, match="epoch"):
        sim.ground_truth("alice", epoch=-1)


# -- determinism -----------------------------------------------------------------------------------


def test_two_simulators_give_the_same_lists_and_changes_at_every_epoch() -> None:
    first, second = Simulator(epoch=2), Simulator(epoch=2, seed=99, faults={})
    for name in ("alice", "big7", "short_bo", "hugeid_q", "panel3"):
        for epoch in (1, 2, 4):
            assert first.ground_truth(name, epoch=epoch) == second.ground_truth(name, epoch=epoch)
        assert first.ground_truth(name) == second.ground_truth(name, epoch=2)
        assert first.changes(name, 0, 3) == second.changes(name, 0, 3)


def test_an_epoch_is_the_same_in_another_process_however_it_was_reached(
    fresh_timelines: None,
) -> None:
    # Epoch 3 straight away here; epochs 1, 2 and 3 in turn in the other process.
    here = hashlib.sha256(json.dumps(ground_truth("alice_n300", epoch=3)).encode()).hexdigest()
    script = (
        "import hashlib, json\n"
        "from tiktok_repost_async.simulator._wire import ground_truth\n"
        "for epoch in (1, 2, 3):\n"
        "    videos = ground_truth('alice_n300', epoch=epoch)\n"
        "print(hashlib.sha256(json.dumps(videos).encode()).hexdigest())\n"
    )
    there = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    ).stdout.strip()
    assert here == there


def test_epochs_compose(fresh_timelines: None, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("panel1", "panel5", "big2", "short_ann"):
        # Asked first, epoch 2 is computed from epoch 0; asked again after epoch 1, from it.
        direct = ground_truth(name, epoch=2)
        monkeypatch.setattr(_data, "_TIMELINES", _data._Timelines())
        ground_truth(name, epoch=1)
        assert ground_truth(name, epoch=2) == direct
        one, two, both = changes(name, 0, 1), changes(name, 1, 2), changes(name, 0, 2)
        # Added by epoch 1 and still there at 2 unless removed at 2.
        at_two = set(ids(direct))
        assert {i for i in one["added"] if i not in two["removed"]} <= at_two
        assert both["added"] == [i for i in ids(direct) if i in set(one["added"] + two["added"])]
        assert set(both["removed"]) == set(one["removed"]) | (
            set(two["removed"]) - set(one["added"])
        )
        # Counts keep growing: the two steps' deltas add up.
        for video_id, deltas in both["counts"].items():
            for field, delta in deltas.items():
                step = one["counts"].get(video_id, {}).get(field, 0)
                assert delta == step + two["counts"].get(video_id, {}).get(field, 0)


# -- what a step does ------------------------------------------------------------------------------


@pytest.mark.slow
def test_new_reposts_come_at_the_head_newest_first_with_larger_ids() -> None:
    gained = 0
    descriptions: set[Any] = set()
    for name in NORMAL[:60]:
        before = ground_truth(name)
        highest = max(ids(before), default=0)
        for epoch in (1, 2, 3):
            after = ground_truth(name, epoch=epoch)
            added = changes(name, epoch - 1, epoch)["added"]
            gained += len(added)
            # The head, in list order, and nothing new below it.
            assert ids(after)[: len(added)] == added
            head = after[: len(added)]
            assert all(video["id"] > highest for video in head)
            assert all(video["create_time"] >= LATEST for video in head)
            times = [video["create_time"] for video in head]
            assert times == sorted(times, reverse=True)
            highest = max([highest, *added])
            descriptions |= {video.get("video_description") for video in head}
            for video in head:
                assert {"id", "create_time", "username"} <= set(video) <= set(VIDEO_FIELDS)
    assert gained > 500
    # Content drawn from the templates, not one video repeated.
    assert len(descriptions) > 300


def test_huge_ids_stay_unique_as_videos_are_added() -> None:
    added: list[int] = []
    for name in ("hugeid_a", "hugeid_b", "panel9", "panel10"):
        for epoch in (0, 1, 2):
            listed = ids(ground_truth(name, huge_ids=True, epoch=epoch))
            assert len(listed) == len(set(listed))
        added += changes(name, 0, 2, huge_ids=True)["added"]
    # Both shapes of huge id among the new videos: above int64, and 20 digits above uint64.
    assert any(2**63 <= video_id < 2**64 for video_id in added)
    assert any(video_id >= 2**64 for video_id in added)


@pytest.mark.slow
def test_removals_come_from_anywhere_in_the_list_and_never_come_back() -> None:
    deep = 0
    removed_total = 0
    for name in [*(f"big{i}" for i in range(5)), *NORMAL[:30]]:
        lists = [ids(ground_truth(name, epoch=epoch)) for epoch in range(4)]
        gone: set[int] = set()
        for epoch in range(1, 4):
            removed = changes(name, epoch - 1, epoch)["removed"]
            assert set(removed) == set(lists[epoch - 1]) - set(lists[epoch])
            earlier = lists[epoch - 1]
            deep += sum(earlier.index(video_id) >= 100 for video_id in removed)
            removed_total += len(removed)
            gone |= set(removed)
            assert not gone & set(lists[epoch]), (name, epoch)
    assert deep > 20
    assert removed_total > deep


def test_counts_only_grow_and_nothing_else_changes() -> None:
    grown = 0
    for name in NORMAL[:40]:
        for epoch in (1, 2, 3):
            before = {video["id"]: video for video in ground_truth(name, epoch=epoch - 1)}
            for video in ground_truth(name, epoch=epoch):
                old = before.get(video["id"])
                if old is None:
                    continue
                assert others(video) == others(old)
                assert set(video) == set(old)
                for field in COUNT_FIELDS:
                    if field in video:
                        assert video[field] >= old[field]
                grown += any(video.get(field) != old.get(field) for field in COUNT_FIELDS)
    assert grown > 1000


@pytest.mark.slow
def test_a_sizeable_share_gains_under_a_page_and_some_gain_more_each_step() -> None:
    for epoch in (1, 2, 3):
        gains = [len(changes(name, epoch - 1, epoch)["added"]) for name in NORMAL]
        few = sum(0 < gain < 100 for gain in gains)
        assert few >= 0.6 * len(gains), (epoch, few)
        assert sum(gain <= 30 for gain in gains) >= 0.85 * len(gains)
        assert sum(gain > 100 for gain in gains) >= 3, epoch
        assert gains.count(0) >= 10, epoch


def test_users_without_reposts_stay_so_and_the_count_segment_holds_at_epoch_0_only() -> None:
    for name in ("empty_x", "empty_n40", "missing_y", "private_z"):
        assert [repost_count(name, epoch) for epoch in range(4)] == [0, 0, 0, 0]
        assert changes(name, 0, 3) == {"added": [], "removed": [], "counts": {}}
    assert repost_count("bench_n250") == 250
    moved = [repost_count(f"bench_n250_{i}", 1) for i in range(20)]
    assert any(count != 250 for count in moved)
    for i, count in enumerate(moved):
        step = changes(f"bench_n250_{i}", 0, 1)
        assert count == 250 + len(step["added"]) - len(step["removed"])


def test_short_users_keep_their_moderated_videos_out_at_every_epoch() -> None:
    for name in ("short_gus", "short_n600", "short_x"):
        first = set(ids(ground_truth(name)))
        for epoch in (1, 2, 3):
            listed = ground_truth(name, epoch=epoch)
            # Every video sent is one sent at epoch 0 or a new one: no moderated video surfaces.
            assert all(video["id"] in first or video["create_time"] >= LATEST for video in listed)
            assert len(listed) < repost_count(name, epoch)


# -- changes() is the ground truth of a diff -------------------------------------------------------


def expected_changes(before: list[dict[str, Any]], after: list[dict[str, Any]]) -> dict[str, Any]:
    """Compute what a client's diff of two full walks finds, from the walks alone."""

    def exact(video: dict[str, Any]) -> int | None:
        value = video.get("id")
        if isinstance(value, int) or (isinstance(value, str) and value.isdigit()):
            return int(value)
        return None

    old = {exact(video): video for video in before if exact(video) is not None}
    new = {exact(video): video for video in after if exact(video) is not None}
    counts: dict[int, dict[str, int]] = {}
    for video_id, video in new.items():
        if video_id is None or video_id not in old:
            continue
        deltas = {
            field: video[field] - old[video_id][field]
            for field in COUNT_FIELDS
            if type(video.get(field)) is int
            and type(old[video_id].get(field)) is int
            and video[field] != old[video_id][field]
        }
        if deltas:
            counts[video_id] = deltas
    return {
        "added": [video_id for video_id in new if video_id not in old],
        "removed": [video_id for video_id in old if video_id not in new],
        "counts": counts,
    }


@pytest.mark.parametrize(
    "knobs",
    [
        {},
        {"huge_ids": True},
        {"extra_keys": True, "string_ids": True},
        {"type_drift": 0.2},
    ],
    ids=["plain", "huge", "extra+strings", "drift"],
)
def test_changes_equal_the_difference_of_the_ground_truths(knobs: dict[str, Any]) -> None:
    sim = Simulator(**knobs)
    sim.drift("panel2", [0, 5], "bad_id")
    sim.drift("panel2", [1], "like_count")
    seen_counts = 0
    for name in ("panel2", "panel4", "big3", "short_n400", "stall_q", "hugeid_w", "empty_u"):
        for first, last in ((0, 1), (1, 3), (0, 3), (2, 2)):
            got = sim.changes(name, first, last)
            want = expected_changes(
                sim.ground_truth(name, epoch=first), sim.ground_truth(name, epoch=last)
            )
            assert got == want, (name, first, last)
            assert all(type(video_id) is int for video_id in [*got["added"], *got["removed"]])
            assert all(set(deltas) <= set(COUNT_FIELDS) for deltas in got["counts"].values())
            assert all(all(deltas.values()) for deltas in got["counts"].values())
            seen_counts += len(got["counts"])
        assert sim.changes(name, 1, 1) == {"added": [], "removed": [], "counts": {}}
    assert seen_counts > 100


def test_changes_name_favorites_count_so_and_refuse_backwards_epochs() -> None:
    sim = Simulator(favorites_spelling="favourites_count")
    deltas = [d for d in sim.changes("big4", 0, 2)["counts"].values() if "favorites_count" in d]
    assert deltas
    for first, last in ((2, 1), (-1, 2), (0, -1)):
        with pytest.raises(ValueError, match="epoch"):
            sim.changes("big4", first, last)


def test_stall_users_change_within_the_pages_a_client_sees() -> None:
    sim = Simulator()
    for max_count in (50, 100):
        for epoch in (1, 2):
            listed = sim.ground_truth("stall_fay", max_count, epoch=epoch)
            assert len(listed) == min(2 * max_count, repost_count("stall_fay", epoch))
            got = sim.changes("stall_fay", 0, epoch, max_count=max_count)
            assert got == expected_changes(sim.ground_truth("stall_fay", max_count), listed)


# -- served pages at every epoch -------------------------------------------------------------------

SERVED = ["alice", "panel7", "big1", "short_gus", "stall_fay", "hugeid_p", "empty_e", "bench_n0"]


async def test_pages_walked_by_a_bare_client_equal_the_ground_truth_at_each_epoch(
    sim: Simulator, api: Api
) -> None:
    for epoch in (0, 1, 2, 3):
        sim.config.epoch = epoch
        for name in SERVED:
            for max_count in (100, 37):
                videos, pages = await api.walk(name, max_count)
                assert videos == sim.ground_truth(name, max_count), (name, epoch)
                assert pages == sim.pages_needed(name, max_count), (name, epoch)
                assert sim.pages_needed(name, max_count) == Simulator.pages_needed(
                    name, max_count, epoch=epoch
                )
            if sim.user_kind(name) not in ("stall", "short"):
                assert len(videos) == repost_count(name, epoch)
    assert Simulator.pages_needed("alice") == sim.pages_needed("alice", epoch=0)


async def test_endless_users_serve_the_moved_list_then_empty_pages(
    sim: Simulator, api: Api
) -> None:
    sim.config.epoch = 2
    name = "endless_n150"
    videos: list[Any] = []
    cursor = 0
    for _ in range(sim.pages_needed(name)):
        data = await api.page(name, cursor)
        videos += data["reposted_videos"]
        assert data["has_more"] is True
        cursor = data["cursor"]
    assert videos == sim.ground_truth(name)
    assert (await api.page(name, cursor))["reposted_videos"] == []


async def test_missing_and_private_users_stay_refused(sim: Simulator, api: Api) -> None:
    sim.config.epoch = 3
    for name in ("missing_m", "private_p"):
        status, raw = await api.raw(name)
        assert status == 400
        assert json.loads(raw)["error"]["code"] == "invalid_params"


def by_id(videos: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Key videos sent with string ids by id, leaving out those drifted to no_id or bad_id."""
    return {video["id"]: video for video in videos if str(video.get("id", "")).isdigit()}


async def test_wire_knobs_hold_at_every_epoch_and_follow_the_video(
    sim: Simulator, api: Api
) -> None:
    sim.config.extra_keys = True
    sim.config.string_ids = True
    sim.config.type_drift = 0.1
    sim.config.huge_ids = True
    name = "wire_n300"
    # Positions of the list at epoch 0, whatever the epoch knob says when they are scripted.
    sim.config.epoch = 2
    sim.drift(name, [0, 150], "music_id")
    sim.drift(name, [299], "bad_id")

    def drifted_ids(epoch: int) -> dict[int, str]:
        # The ids at the drifted positions, read from the same list without any wire knob.
        plain = ids(ground_truth(name, huge_ids=True, epoch=epoch))
        return {plain[position]: kind for position, kind in sim.drifted(name, epoch=epoch).items()}

    at_zero = by_id(sim.ground_truth(name, epoch=0))
    drifted_zero = drifted_ids(0)
    assert drifted_zero[ids(ground_truth(name, huge_ids=True))[150]] == "music_id"
    for epoch in (1, 2):
        sim.config.epoch = epoch
        videos, _ = await api.walk(name)
        assert videos == sim.ground_truth(name)
        now = by_id(videos)
        for video_id, video in now.items():
            old = at_zero.get(video_id)
            if old is not None:
                # Unknown keys, string ids, drift: all as at epoch 0 but for grown counts.
                assert list(video) == list(old)
                assert others(video) == others(old)
        drifted_now = drifted_ids(epoch)
        listed = set(ids(ground_truth(name, huge_ids=True, epoch=epoch)))
        # A drifted video drifts alike wherever the list moved it, until it is removed.
        assert {i: kind for i, kind in drifted_zero.items() if i in listed} == {
            i: kind for i, kind in drifted_now.items() if i in drifted_zero
        }
        # Videos added later roll their own drift.
        assert any(video_id not in drifted_zero for video_id in drifted_now)


async def test_a_new_epoch_encodes_each_user_once(
    sim: Simulator, api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    encoded: list[tuple[str, int]] = []

    class Counting(_wire.EncodedUser):
        def __init__(self, username: str, *args: Any) -> None:
            super().__init__(username, *args)
            encoded.append((username, args[-1]))

    monkeypatch.setattr(_wire, "EncodedUser", Counting)
    for epoch in (1, 1, 2, 1, 0):
        sim.config.epoch = epoch
        await api.walk("big5")
    assert encoded == [("big5", 1), ("big5", 2), ("big5", 0)]


# -- a panel harvested by the real client ----------------------------------------------------------

PANEL = [*NORMAL[:24], "big1", "short_gus", "alice_n250", "missing_gone"]


async def test_the_clients_diff_of_two_rounds_equals_changes(
    sim: Simulator, tmp_path: Path
) -> None:
    db = tmp_path / "panel.db"
    options: dict[str, Any] = {"base_url": sim.base_url, "requests_per_second": 10_000.0}
    rounds: list[list[Any]] = []
    # One harvest per round, each on its own Store, as the command line runs them.
    for epoch, more in ((0, {}), (1, {"new_round": True}), (2, {"stop_at_known": True})):
        sim.config.epoch = epoch
        if more.get("stop_at_known"):
            more["new_round"] = True
        async with RepostClient(sim.client_key, sim.client_secret, **options) as client:
            rounds.append([outcome async for outcome in harvest(client, PANEL, store=db, **more)])
    repeat = rounds[2]
    found: dict[str, dict[str, Any]] = {}
    with Store(db, create=False) as store:
        assert [record.number for record in store.rounds()] == [1, 2, 3]
        for change in diff_rounds(store, 1, 2):
            record = found.setdefault(change.username, {"added": [], "removed": [], "counts": {}})
            if change.change == "changed":
                moved = {field: delta for field, delta in change.deltas.items() if delta}
                record["counts"][change.video_id] = moved
            else:
                record[change.change].append(change.video_id)
        partial = list(diff_rounds(store, 2, 3))
    for name in PANEL:
        want = sim.changes(name, 0, 1)
        assert found.get(name, {"added": [], "removed": [], "counts": {}}) == want, name
    assert sum(len(record["added"]) for record in found.values()) > 100
    assert sum(len(record["removed"]) for record in found.values()) > 5
    # Round 3 stopped at known videos: the new head is all there; a removal shows only where
    # the walk looked (within its head), and each one shown is true.
    later = {name: sim.changes(name, 1, 2) for name in PANEL}
    for name in PANEL:
        added = [c.video_id for c in partial if c.username == name and c.change == "added"]
        assert added == later[name]["added"], name
        removed = {c.video_id for c in partial if c.username == name and c.change == "removed"}
        assert removed <= set(later[name]["removed"]), name
    # A user who gained under a page, with a video known from round 2, cost one request.
    cheap = [
        outcome.requests
        for outcome in repeat
        if outcome.username != "missing_gone"
        and len(later[outcome.username]["added"]) < 100
        and sim.ground_truth(outcome.username, epoch=1)
    ]
    assert len(cheap) > 15
    assert set(cheap) == {1}


# -- the command line ------------------------------------------------------------------------------


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_simulator_arguments(parser)
    return parser.parse_args(argv)


def test_the_epoch_option_reaches_the_configuration(capsys: pytest.CaptureFixture[str]) -> None:
    assert config_from_args(parse([])).epoch == 0
    assert config_from_args(parse(["--epoch", "3"])).epoch == 3
    assert config_from_args(build_parser().parse_args(["serve", "--epoch", "2"])).epoch == 2
    for bad in ("-1", "1.5", "soon"):
        with pytest.raises(SystemExit):
            parse(["--epoch", bad])
        assert "is not an integer >= 0" in capsys.readouterr().err


def test_the_command_line_serves_the_epoch_asked_for() -> None:
    command = [sys.executable, "-m", "tiktok_repost_async.simulator", "--port", "0"]
    with subprocess.Popen([*command, "--epoch", "2"], stdout=subprocess.PIPE, text=True) as process:
        try:
            assert process.stdout is not None
            base_url = process.stdout.readline().strip()
            form = urllib.parse.urlencode(
                {
                    "client_key": SimulatorConfig().client_key,
                    "client_secret": SimulatorConfig().client_secret,
                    "grant_type": "client_credentials",
                }
            ).encode()
            with urllib.request.urlopen(base_url + TOKEN_PATH, form, timeout=10) as response:
                access_token = json.loads(response.read())["access_token"]
            request = urllib.request.Request(
                f"{base_url}{RESEARCH_PATH}?fields={ALL}",
                json.dumps({"username": "alice_n40", "max_count": 100}).encode(),
                {"Authorization": f"Bearer {access_token}", "Content-Type": "application/json"},
            )
            with urllib.request.urlopen(request, timeout=10) as response:
                videos = json.loads(response.read())["data"]["reposted_videos"]
            assert videos == ground_truth("alice_n40", epoch=2)
            assert videos != ground_truth("alice_n40")
            process.send_signal(signal.SIGINT)
            assert process.wait(timeout=10) == 0
        finally:
            process.kill()
