"""What TikTok sent is what is kept: odd but valid JSON, odd layouts and odd answers (issue 20).

Each test harvests from the simulator over a loopback socket with one of its wire knobs on and
compares with the simulator's own ground truth or wire bytes, never with our model's re-encoding.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import math
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pyarrow.parquet as pq
import pytest
from support import run_main

from tiktok_repost_async import RepostClient, Store, UnknownListKeyError, UserState, diff_rounds
from tiktok_repost_async._jsontext import compact
from tiktok_repost_async.export import export_csv, export_jsonl, export_parquet
from tiktok_repost_async.harvester import Harvester, harvest
from tiktok_repost_async.protocol import parse_reposted_response
from tiktok_repost_async.simulator import (
    RESEARCH_PATH,
    TEST_CLIENT_KEY,
    TEST_CLIENT_SECRET,
    TOKEN_PATH,
    Simulator,
    SimulatorConfig,
    add_simulator_arguments,
    config_from_args,
)

USERS = ["alice_n250", "hugeid_n120", "carol_n7", "empty_one", "bob_n99"]


def client_for(sim: Simulator, **options: Any) -> RepostClient:
    return RepostClient(
        TEST_CLIENT_KEY,
        TEST_CLIENT_SECRET,
        base_url=sim.base_url,
        requests_per_second=10_000.0,
        **options,
    )


async def harvested(sim: Simulator, db: Path, names: list[str]) -> dict[str, UserState]:
    async with client_for(sim) as client:
        return {o.username: o.state async for o in harvest(client, names, store=db)}


def wire(sim: Simulator, names: list[str]) -> list[dict[str, Any]]:
    """Return every video as the simulator sent it, with the user whose list held it first."""
    return [{"reposted_by": name, **video} for name in names for video in sim.ground_truth(name)]


async def wire_body(sim: Simulator, username: str, cursor: int = 0) -> bytes:
    """Return the simulator's answer to one page request, byte for byte, fetched by hand."""
    async with aiohttp.ClientSession() as session:
        form = {
            "client_key": sim.client_key,
            "client_secret": sim.client_secret,
            "grant_type": "client_credentials",
        }
        async with session.post(sim.base_url + TOKEN_PATH, data=form) as answer:
            token = (await answer.json())["access_token"]
        fields = "id,video_description,like_count,video_tag"
        async with session.post(
            f"{sim.base_url}{RESEARCH_PATH}?fields={fields}",
            json={"username": username, "max_count": 100, "cursor": cursor},
            headers={"Authorization": f"Bearer {token}"},
        ) as answer:
            return await answer.read()


def typed_text(value: Any) -> str:
    """Return a canonical JSON text of ``value`` in which an int and a float never look alike."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


# -- 3: a lone surrogate escape ----------------------------------------------------------------


async def test_a_lone_surrogate_escape_is_stored_and_exported_as_sent(tmp_path: Path) -> None:
    async with Simulator(odd_values=0.3) as sim:
        db = tmp_path / "h.db"
        names = ["alice_n250", "carol_n40"]
        assert set((await harvested(sim, db, names)).values()) == {UserState.DONE}
        expected = wire(sim, names)
        odd = [v for v in expected if "\ud83d" in v.get("video_description", "")]
        assert odd  # the knob is on: the data does carry lone surrogates
        body = await wire_body(sim, "carol_n40")
        assert b"\\ud83d" in body  # an escape on the wire, ASCII bytes, valid JSON
        # The typed view is mended, and only the typed view.
        async with client_for(sim) as client:
            typed = [video async for video in client.reposted_videos("carol_n40")]
    truth = {v["id"]: v for v in sim.ground_truth("carol_n40")}
    for video in typed:
        sent = truth[video.id].get("video_description")
        assert video.video_description == sent.replace("\ud83d", "\ufffd")
    out = io.BytesIO()
    with Store(db, create=False) as store:
        export_jsonl(store, out)
        stored = [data for _, _, data in store.iter_videos()]
    assert sum(b"\\ud83d" in data for data in stored) == len(odd)
    lines = out.getvalue().split(b"\n")[:-1]
    assert [json.loads(line) for line in lines] == expected
    # The export splices the stored bytes in: the escape round-trips byte for byte.
    for line, data in zip(lines, stored, strict=True):
        assert line.endswith(data[1:])
        assert line.count(b"\\ud83d") == data.count(b"\\ud83d")


async def test_csv_writes_a_lone_surrogate_as_its_json_literal(tmp_path: Path) -> None:
    async with Simulator(odd_values=0.3) as sim:
        db = tmp_path / "h.db"
        await harvested(sim, db, ["carol_n40"])
        expected = sim.ground_truth("carol_n40")
    out = io.BytesIO()
    with Store(db, create=False) as store:
        export_csv(store, out)
    rows = list(csv.DictReader(io.StringIO(out.getvalue().decode("utf-8"), newline="")))
    assert len(rows) == len(expected)
    for row, video in zip(rows, expected, strict=True):
        cell, sent = row["video_description"], video.get("video_description")
        if sent is not None and "\ud83d" in sent:
            # A cell starting with a double quote is a JSON literal: here the wire's own.
            assert cell.startswith('"')
            assert json.loads(cell) == sent


# -- 4: pretty-printed videos ------------------------------------------------------------------


async def test_pretty_printed_videos_are_one_line_each_in_jsonl(tmp_path: Path) -> None:
    async with Simulator(pretty_videos=True, extra_keys=True, string_ids=True) as sim:
        db = tmp_path / "h.db"
        assert set((await harvested(sim, db, USERS)).values()) == {UserState.DONE}
        expected = wire(sim, USERS)
        body = await wire_body(sim, "carol_n7")
    assert b'{\n      "' in body  # the knob is on: newlines and indents between tokens
    out = io.BytesIO()
    with Store(db, create=False) as store:
        assert export_jsonl(store, out) == len(expected)
        stored = [data for _, _, data in store.iter_videos()]
    # The store keeps what was sent, newlines and all.
    assert all(b"\n" in data for data in stored)
    lines = out.getvalue().decode("utf-8").split("\n")
    assert lines.pop() == ""
    assert len(lines) == len(expected)
    for line, video in zip(lines, expected, strict=True):
        got = json.loads(line)
        assert typed_text(got) == typed_text(video)
        assert list(got) == list(video)  # key order as sent, nested keys too
        assert typed_text(got).count(" ") == typed_text(video).count(" ")


# -- 5: both list keys -------------------------------------------------------------------------


@pytest.mark.parametrize("both", ["split", "duplicated"])
async def test_an_answer_with_both_list_keys_keeps_every_video_of_both(
    tmp_path: Path, both: str, caplog: pytest.LogCaptureFixture
) -> None:
    names = ["alice_n250", "carol_n7"]
    async with Simulator(both_list_keys=both) as sim:
        db = tmp_path / "h.db"
        with caplog.at_level(logging.WARNING, logger="tiktok_repost_async"):
            assert set((await harvested(sim, db, names)).values()) == {UserState.DONE}
        body = await wire_body(sim, "carol_n7")
        expected = wire(sim, names)
        pages = sum(sim.pages_needed(name) for name in names)
    assert b'"reposted_videos":[{' in body
    assert b'"user_reposted_videos":[{' in body
    with Store(db, create=False) as store:
        stored = [(user, json.loads(data)) for user, _, data in store.iter_videos()]
    assert [{"reposted_by": user, **video} for user, video in stored] == expected
    warned = [r for r in caplog.records if "user_reposted_videos" in r.getMessage()]
    assert len(warned) == pages  # once per page
    assert all("reposted_videos and user_reposted_videos" in r.getMessage() for r in warned)


# -- 6: an unknown list key --------------------------------------------------------------------


def test_a_list_under_an_unknown_key_stops_the_run_with_exit_2(
    sim_in_thread: Simulator, tmp_path: Path
) -> None:
    sim = sim_in_thread
    sim.config.unknown_list_key = "videos"
    users = tmp_path / "users.txt"
    users.write_text("alice_n250\nbob_n99\ncarol_n7\nempty_one\n")
    db = tmp_path / "h.db"
    env = {"TIKTOK_CLIENT_KEY": TEST_CLIENT_KEY, "TIKTOK_CLIENT_SECRET": TEST_CLIENT_SECRET}
    result = run_main(
        "harvest", users, "--db", db, "--base-url", sim.base_url, "--concurrency", 4,
        env=env,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert "'videos'" in result.stderr
    # The run stops at its first such answer: the gate's one trial request.
    assert sim.stats.requests == 1
    with Store(db, create=False) as store:
        assert store.users_in(UserState.DONE) == []
        assert list(store.iter_videos()) == []


async def test_a_list_under_an_unknown_key_raises_in_the_library(tmp_path: Path) -> None:
    async with Simulator(unknown_list_key="videos") as sim:
        async with client_for(sim) as client:
            with pytest.raises(UnknownListKeyError) as caught:
                await client.fetch_page("carol_n7")
        # Not retried: the same answer would come back.
        assert sim.stats.requests == 1
    assert caught.value.key == "videos"
    # An empty user's answer under the unknown key cannot be told from an unknown empty list.
    async with Simulator(unknown_list_key="videos") as sim, client_for(sim) as client:
        page = await client.fetch_page("empty_one")
    assert page.videos == []


# -- 7: Parquet of values a typed column cannot hold -------------------------------------------


async def test_parquet_keeps_a_number_beyond_any_float_and_tells_null_from_missing(
    tmp_path: Path,
) -> None:
    async with Simulator(odd_values=0.3) as sim:
        db = tmp_path / "h.db"
        names = ["alice_n250", "carol_n40"]
        await harvested(sim, db, names)
        expected = wire(sim, names)
        body = await wire_body(sim, "carol_n40")
    assert b'"like_count":1e400' in body
    assert any(v.get("like_count") == math.inf for v in expected)
    tags = [v["video_tag"] for v in expected if "video_tag" in v]
    assert any("video_tag_number" not in tag for tag in tags)
    assert any(tag.get("video_tag_number", 0) is None for tag in tags)
    path = tmp_path / "out.parquet"
    with Store(db, create=False) as store:
        fields = store.fields
        with path.open("wb") as out:
            assert export_parquet(store, out) == len(expected)
    rows = pq.read_table(path).to_pylist()
    for row, video in zip(rows, expected, strict=True):
        extra_text = row["extra"] or "{}"
        extra = json.loads(extra_text)
        if video.get("like_count") == math.inf:
            assert row["like_count"] is None
            assert '"like_count":1e400' in extra_text  # spelled as sent
        rebuilt: dict[str, Any] = {"reposted_by": row["reposted_by"]}
        for name in fields:
            if name in extra:
                rebuilt[name] = extra.pop(name)
            elif row[name] is not None:
                rebuilt[name] = row[name]
        rebuilt.update(extra)
        for name in ("like_count", "video_tag", "video_description", "view_count"):
            assert rebuilt.get(name, "absent") == video.get(name, "absent"), name


# -- 8: no log_id, no cursor -------------------------------------------------------------------


async def test_a_page_without_an_error_object_has_no_log_id(tmp_path: Path) -> None:
    async with Simulator(no_error_object=True) as sim:
        body = await wire_body(sim, "carol_n7")
        assert b"log_id" not in body
        assert b'"error"' not in body
        async with client_for(sim) as client:
            page = await client.fetch_page("carol_n7")
        assert page.log_id is None
        db = tmp_path / "h.db"
        await harvested(sim, db, ["carol_n7"])
    out = io.BytesIO()
    with Store(db, create=False) as store:
        export_jsonl(store, out, provenance=True)
        assert {log_id for *_, log_id, _, _ in store.iter_pages()} == {None}
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert lines
    assert all(line["log_id"] is None for line in lines)


async def test_has_more_with_a_null_cursor_is_said_as_it_is(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with Simulator(null_cursor=True) as sim:
        db = tmp_path / "h.db"
        with caplog.at_level(logging.WARNING, logger="tiktok_repost_async"):
            states = await harvested(sim, db, ["alice_n250"])
        requests = sim.stats.requests
    assert states == {"alice_n250": UserState.INCOMPLETE}
    assert requests == 1  # the walk does not loop
    said = " ".join(record.getMessage() for record in caplog.records)
    assert "cursor 0 again" not in said
    assert re.search(r"has_more true but no cursor", said), said
    with Store(db, create=False) as store:
        user = store.user("alice_n250")
        assert user is not None
        assert (user.error or "").startswith("no_cursor: the API said has_more but sent no cursor")
        # The page it came with is kept; a later --retry-incomplete asks that page again.
        assert (user.videos, user.cursor) == (100, 0)


# -- the pieces, on the simulator's own bytes -----------------------------------------------------


async def test_the_raw_video_is_the_wire_object_and_only_the_view_is_mended() -> None:
    async with Simulator(odd_values=0.3) as sim:
        body = await wire_body(sim, "carol_n40")
    page = parse_reposted_response(200, {}, body, username="carol_n40")
    odd = [raw for raw in page.raw_videos if b"\\ud83d" in raw]
    assert odd
    for raw in page.raw_videos:
        assert raw in body  # each video's bytes, exactly as they stand in the answer
    for video, raw in zip(page.videos, page.raw_videos, strict=True):
        sent = json.loads(raw).get("video_description")
        assert video.video_description == sent.replace("\ud83d", "\ufffd")


def test_invalid_utf8_is_mended_in_what_is_kept_a_surrogate_escape_is_not() -> None:
    # Invalid UTF-8 is not JSON text: no JSONL line or JSON reader could take it as kept.
    cut = b'{"id": 1, "username": "ab\xffc", "video_description": "x\\ud83dy"}'
    body = b'{"data": {"reposted_videos": [' + cut + b"]}}"
    (raw,) = parse_reposted_response(200, {}, body).raw_videos
    assert raw == cut.replace(b"\xff", "\ufffd".encode())
    (video,) = parse_reposted_response(200, {}, body).videos
    assert video.video_description == "x\ufffdy"


def test_a_stand_in_never_meets_a_private_escape_the_answer_holds() -> None:
    sent = b'{"id": 2, "video_description": "\\ue000 \\uE001 \\\\ud83d \\ud83d\\ude02 \\udc00"}'
    body = b'{"data": {"reposted_videos": [' + sent + b"]}}"
    page = parse_reposted_response(200, {}, body)
    assert page.raw_videos == [sent]
    assert page.videos[0].video_description == "\ue000 \ue001 \\ud83d 😂 \ufffd"


def test_compact_drops_whitespace_between_tokens_only() -> None:
    sent = b'{\n  "a" : [ 1 ,\t2e3 ],\r\n  "b\\" c": " x \\\\ y ",\n  "d": {}\n}'
    assert compact(sent) == b'{"a":[1,2e3],"b\\" c":" x \\\\ y ","d":{}}'
    assert json.loads(compact(sent)) == json.loads(sent)


@pytest.mark.parametrize("first", ["reposted_videos", "user_reposted_videos"])
def test_both_lists_keep_the_answers_order_and_each_id_once(first: str) -> None:
    second = "user_reposted_videos" if first == "reposted_videos" else "reposted_videos"
    body = (
        b'{"data": {"%s": [{"id": 1}, {"id": 2, "like_count": "x"}], "%s": [{"id": 2},'
        b' {"id": 3, "like_count": "y"}, {"id": 1}], "cursor": 5, "has_more": true}}'
        % (first.encode(), second.encode())
    )
    page = parse_reposted_response(200, {}, body)
    assert [video.id for video in page.videos] == [1, 2, 3]
    assert page.raw_videos == [
        b'{"id": 1}',
        b'{"id": 2, "like_count": "x"}',
        b'{"id": 3, "like_count": "y"}',
    ]
    # Positions count through both lists; the duplicate's problem is not told twice.
    assert [(p.position, p.video_id) for p in page.problems] == [(1, 2), (3, 3)]


def test_a_list_of_non_objects_or_a_known_empty_list_is_no_drift() -> None:
    for data in (b'"videos": [1, 2]', b'"videos": []', b'"reposted_videos": [], "videos": [{}]'):
        page = parse_reposted_response(200, {}, b'{"data": {%s, "has_more": false}}' % data)
        assert page.videos == []


def test_serve_flags_set_the_new_knobs() -> None:
    parser = argparse.ArgumentParser()
    add_simulator_arguments(parser)
    args = parser.parse_args(
        [
            *("--odd-values", "0.2", "--pretty-videos", "--both-list-keys", "duplicated"),
            *("--unknown-list-key", "videos", "--no-error-object", "--null-cursor"),
        ]
    )
    config = config_from_args(args)
    assert (config.odd_values, config.pretty_videos, config.both_list_keys) == (
        0.2,
        True,
        "duplicated",
    )
    assert (config.unknown_list_key, config.no_error_object, config.null_cursor) == (
        "videos",
        True,
        True,
    )
    with pytest.raises(ValueError, match="unknown_list_key"):
        config_from_args(parser.parse_args(["--unknown-list-key", "cursor"]))
    with pytest.raises(ValueError, match="both_list_keys"):
        SimulatorConfig(both_list_keys="both")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="odd_values"):
        SimulatorConfig(odd_values=2)


def test_a_served_renamed_list_stops_a_harvest_process_with_exit_2(tmp_path: Path) -> None:
    env = {**os.environ, "TIKTOK_CLIENT_KEY": TEST_CLIENT_KEY}
    env["TIKTOK_CLIENT_SECRET"] = TEST_CLIENT_SECRET
    server = subprocess.Popen(
        [sys.executable, "-m", "tiktok_repost_async", "serve", "--port", "0",
         "--unknown-list-key", "videos"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert server.stdout is not None
        base_url = server.stdout.readline().strip()
        users = tmp_path / "users.txt"
        users.write_text("alice_n250\nbob_n99\n")
        result = subprocess.run(
            [sys.executable, "-m", "tiktok_repost_async", "harvest", str(users), "--db",
             str(tmp_path / "h.db"), "--base-url", base_url],
            env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    finally:
        server.send_signal(signal.SIGINT)
        server.communicate(timeout=30)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert "under the key 'videos'" in result.stderr


async def test_a_diff_reads_the_counts_of_a_video_kept_with_a_lone_surrogate(
    tmp_path: Path,
) -> None:
    db = tmp_path / "panel.db"
    async with Simulator(odd_values=0.3) as sim, client_for(sim) as client:
        with Store(db, fields=client.fields, max_count=100) as store:
            [o async for o in Harvester(client, store).run(["carol_n40"])]
            sim.config.epoch = 1
            [o async for o in Harvester(client, store, new_round=True).run(["carol_n40"])]
            found = list(diff_rounds(store, 1, 2))
        expected = sim.changes("carol_n40", 0, 1)
    odd = {v["id"] for v in sim.ground_truth("carol_n40") if "\ud83d" in v["video_description"]}
    changed = {c.video_id: {k: v for k, v in c.deltas.items() if v} for c in found}
    assert odd & set(expected["counts"])
    for video_id in odd & set(expected["counts"]):
        assert changed[video_id] == expected["counts"][video_id]
