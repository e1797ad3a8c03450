"""A harvest keeps what the simulator sent: unknown keys, string ids and drifted types, end to end.

Every expectation here is the simulator's own wire JSON (`Simulator.ground_truth` with its knobs),
never a re-encoding through our model, which would hide exactly the losses these tests look for.
"""

from __future__ import annotations

import csv
import decimal
import io
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from tiktok_repost_async import RepostClient, Store, UserState
from tiktok_repost_async.export import export_csv, export_jsonl, export_parquet
from tiktok_repost_async.harvester import harvest
from tiktok_repost_async.simulator import TEST_CLIENT_KEY, TEST_CLIENT_SECRET, Simulator

USERS = ["alice_n250", "hugeid_n120", "short_n300", "carol_n7", "empty_one", "bob_n99"]


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator(extra_keys=True, string_ids=True, type_drift=0.2) as simulator:
        yield simulator


def client_for(sim: Simulator, **options: Any) -> RepostClient:
    return RepostClient(
        TEST_CLIENT_KEY,
        TEST_CLIENT_SECRET,
        base_url=sim.base_url,
        requests_per_second=10_000.0,
        **options,
    )


def wire(sim: Simulator, names: list[str]) -> list[dict[str, Any]]:
    """Return every video as the simulator sent it, with the user whose list held it first."""
    return [{"reposted_by": name, **video} for name in names for video in sim.ground_truth(name)]


async def harvested(sim: Simulator, db: Path, names: list[str]) -> None:
    async with client_for(sim) as client:
        outcomes = [outcome async for outcome in harvest(client, names, store=db)]
    assert {o.username: o.state for o in outcomes} == dict.fromkeys(names, UserState.DONE)
    # Odd values are never retried: exactly the minimal requests.
    assert sim.stats.requests == sum(sim.pages_needed(name) for name in names)


def typed_text(value: Any) -> str:
    """Return a canonical JSON text of ``value`` in which an int and a float never look alike."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def without_nulls(value: Any) -> Any:
    """Drop keys whose value is null, at any depth (a typed column cannot tell null from absent)."""
    if isinstance(value, dict):
        return {k: without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_nulls(v) for v in value]
    return value


async def test_jsonl_holds_every_video_exactly_as_the_simulator_sent_it(
    sim: Simulator, tmp_path: Path
) -> None:
    db = tmp_path / "h.db"
    await harvested(sim, db, USERS)
    expected = wire(sim, USERS)
    # The knobs are on: the data does carry what a model would lose.
    assert sum(bool(sim.drifted(name)) for name in USERS) >= 3
    assert any(isinstance(v.get("music_id"), str) for v in expected)
    assert any("x_playlist_info" in v for v in expected)
    out = io.BytesIO()
    with Store(db, create=False) as store:
        assert export_jsonl(store, out) == len(expected)
        stored = {vid: data for _, vid, data in store.iter_videos()}
    lines = out.getvalue().decode("utf-8").splitlines()
    assert [json.loads(line) for line in lines] == expected
    # Types too (1.5e18 == 1500000000000000000 in Python, but not on the wire): compare texts.
    for line, video in zip(lines, expected, strict=True):
        assert typed_text(json.loads(line)) == typed_text(video)
    assert all(b'"id":"' in data for data in stored.values())  # string_ids: the id as sent


async def test_csv_and_parquet_hold_every_video_with_typed_columns_and_lose_nothing(
    sim: Simulator, tmp_path: Path
) -> None:
    db = tmp_path / "h.db"
    await harvested(sim, db, USERS)
    expected = wire(sim, USERS)
    parquet, text = io.BytesIO(), io.BytesIO()
    with Store(db, create=False) as store:
        fields = store.fields
        export_parquet(store, parquet)
        export_csv(store, text)
    table = pq.read_table(io.BytesIO(parquet.getvalue()))
    rows = table.to_pylist()
    assert len(rows) == len(expected)
    # Typed columns for the documented fields, whatever the wire sent.
    types = {field.name: str(field.type) for field in table.schema}
    assert types["id"] == types["music_id"] == "decimal128(38, 0)"
    assert types["like_count"] == types["video_duration"] == "int64"
    assert types["is_stem_verified"] == "bool"
    for row, video in zip(rows, expected, strict=True):
        # Columns plus extra give back the video as sent (nulls aside).
        extra = json.loads(row["extra"]) if row["extra"] else {}
        rebuilt: dict[str, Any] = {"reposted_by": row["reposted_by"]}
        for name in fields:
            if name in extra:
                rebuilt[name] = extra.pop(name)
            elif row[name] is not None:
                rebuilt[name] = plain(row[name])
        rebuilt.update(extra)
        assert without_nulls(rebuilt) == without_nulls(video)
        # An id sent as a string sits in its typed column as the number, exactly.
        assert row["id"] == decimal.Decimal(int(video["id"]))
    records = list(csv.DictReader(io.StringIO(text.getvalue().decode("utf-8"), newline="")))
    assert len(records) == len(expected)
    for record, video in zip(records, expected, strict=True):
        for name in fields:
            value = video.get(name)
            cell = record[name]
            if value is None:
                assert cell == ""
            elif isinstance(value, str):
                # Ambiguous strings (empty, with a control character) go as JSON literals.
                assert (json.loads(cell) if cell.startswith('"') else cell) == value
            else:
                assert json.loads(cell) == value  # numbers, lists, objects: their JSON as sent
        unknown = {k: v for k, v in video.items() if k not in fields and k != "reposted_by"}
        assert (json.loads(record["extra"]) if record["extra"] else {}) == unknown


def plain(value: Any) -> Any:
    """Return a Parquet value as JSON would hold it: Decimals as ints, null struct keys dropped."""
    if isinstance(value, decimal.Decimal):
        return int(value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


async def test_three_drifted_videos_on_page_two_cost_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with Simulator() as sim:
        # Page 2 of 3 holds videos 100 to 199.
        sim.drift("dora_n250", [120], "video_duration")
        sim.drift("dora_n250", [150], "hashtag_names")
        sim.drift("dora_n250", [199], "create_time")
        db = tmp_path / "d.db"
        with caplog.at_level(logging.WARNING, logger="tiktok_repost_async"):
            async with client_for(sim) as client:
                (outcome,) = [o async for o in harvest(client, ["dora_n250"], store=db)]
        truth = sim.ground_truth("dora_n250")
        assert (outcome.state, outcome.videos, outcome.pages) == (UserState.DONE, 250, 3)
        assert sim.stats.requests == outcome.requests == 3
        assert set(sim.stats.by_cursor) == {
            ("dora_n250", 0),
            ("dora_n250", 100),
            ("dora_n250", 200),
        }
    with Store(db, create=False) as store:
        stored = [json.loads(data) for _, _, data in store.iter_videos()]
    assert stored == truth
    assert isinstance(truth[120]["video_duration"], float)
    assert None in truth[150]["hashtag_names"]
    assert isinstance(truth[199]["create_time"], str)
    # One warning per odd video, naming the user, the video id and the field.
    warnings = [r.getMessage() for r in caplog.records if "another JSON type" in r.getMessage()]
    assert len(warnings) == 3
    for index, field in ((120, "video_duration"), (150, "hashtag_names"), (199, "create_time")):
        (message,) = [m for m in warnings if str(truth[index]["id"]) in m]
        assert "'dora_n250'" in message
        assert field in message
    assert not [r for r in caplog.records if "retry" in r.getMessage()]


async def test_the_typed_view_of_a_drifted_video_keeps_every_other_field(
    tmp_path: Path,
) -> None:
    async with Simulator() as sim:
        sim.drift("erin_n30", [4], "video_label")
        sim.drift("erin_n30", [5], "no_id")
        sim.drift("erin_n30", [6], "bad_id")
        truth = sim.ground_truth("erin_n30")
        async with client_for(sim) as client:
            (page,) = [page async for page in client.pages("erin_n30")]
    # The videos without a usable id are reported and left out; all others are there, in order.
    kept = [video for i, video in enumerate(truth) if i not in (5, 6)]
    assert [video.id for video in page.videos] == [video["id"] for video in kept]
    assert [json.loads(raw) for raw in page.raw_videos] == kept
    skipped = [p for p in page.problems if p.skipped]
    assert [(p.position, p.reason) for p in skipped] == [
        (5, "no id"),
        (6, "unusable id b'\"n/a\"'"),
    ]
    (odd,) = [p for p in page.problems if not p.skipped]
    assert (odd.position, odd.field, odd.video_id) == (4, "video_label", truth[4]["id"])
    typed = page.videos[4]
    assert typed.video_label is None
    assert typed.username == truth[4].get("username")
    assert typed.like_count == truth[4].get("like_count")
