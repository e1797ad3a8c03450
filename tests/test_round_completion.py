"""A round walked with --stop-at-known is completed from the rounds before it (issue 21, item 4).

A stop-at-known walk fetches the head of a user's list, up to the first page holding a video of its
previous whole list, and means "these, then the list as walked before". A diff from round 1 to
round 3, where round 3 stopped at known videos, must then count the videos that round 2 added
however deep round 3's list holds them, and an export of round 3 must give each user's whole list.
Expected values come from the simulator's ground truth at each epoch (round N is epoch N - 1).
"""

from __future__ import annotations

import csv
import functools
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_rounds import FIELDS, video, walk

from tiktok_repost_async.diff import diff_rounds
from tiktok_repost_async.export import export_jsonl
from tiktok_repost_async.store import Store

# Users whose round-2 additions (epoch 1) lie past the first page of their epoch-2 list, so that a
# round 3 stopping at known videos may not fetch them: panelist3 gains 138 at epoch 1, then 15;
# panelist42 30, then 155; panelist71 15, then 202; panelist2 122, then none. carol_n30 fits one
# page, and missing_panelist is never found.
PANEL = ["panelist3", "panelist42", "panelist71", "panelist2", "carol_n30", "missing_panelist"]


def test_diff_and_export_of_a_stop_at_known_round_count_what_the_rounds_between_added(
    tmp_path: Path,
) -> None:
    from test_cli import cli, write_users
    from test_rounds import harvest_at

    from tiktok_repost_async.simulator import Simulator

    users = write_users(tmp_path / "panel.txt", PANEL)
    db = tmp_path / "panel.db"
    sim = Simulator()
    with sim.run_in_thread() as base_url:
        assert harvest_at(base_url, users, db).returncode == 0
        # Round 2 stops at known videos on round 1, round 3 on round 2 (itself partial).
        for epoch in (1, 2):
            sim.config.epoch = epoch
            ran = harvest_at(base_url, users, db, "--new-round", "--stop-at-known")
            assert ran.returncode == 0, ran.stderr
        truth = {
            (first, second): {name: sim.changes(name, first - 1, second - 1) for name in PANEL}
            for first, second in ((1, 2), (2, 3), (1, 3))
        }

        def truth_between(first: int, second: int) -> dict[str, Any]:
            return {name: sim.changes(name, first - 1, second - 1) for name in PANEL}

        truth_between = functools.cache(truth_between)
        listed = {
            epoch: {name: [v["id"] for v in sim.ground_truth(name, epoch=epoch)] for name in PANEL}
            for epoch in (0, 1, 2)
        }
    with Store(db, create=False) as opened:
        rounds = opened.rounds()
        # One request per user in rounds 2 and 3, but for those who gained a page or more.
        assert [r.partial for r in rounds] == [0, 4, 4]
        assert rounds[2].requests < sum(Simulator.pages_needed(n, epoch=2) for n in PANEL)
    # The bug: round 3 walks up to the page holding its first known video (newest first, that
    # is the one after the epoch's additions), so 1 -> 3 missed what round 2 had added past it.
    deep = [
        video_id
        for name in PANEL
        for video_id in truth[(1, 2)][name]["added"]
        if video_id in listed[2][name]
        and listed[2][name].index(video_id) >= 100 * (len(truth[(2, 3)][name]["added"]) // 100 + 1)
    ]
    assert len(deep) > 50
    for (first, second), expected in truth.items():
        result = cli("diff", "--db", db, "--from", first, "--to", second)
        assert result.returncode == 0, result.stderr
        found = by_user([json.loads(line) for line in result.stdout.splitlines()])
        later = listed[second - 1]
        seen_in = range(first + 1, second + 1)
        for name in PANEL:
            want, got = expected[name], found.get(name, {"added": [], "removed": [], "counts": {}})
            assert got["added"] == want["added"], (first, second, name)
            # Past a partial head nothing was looked at: removals there go unseen, and a video
            # keeps the counts of the round that last saw it; what is reported is true.
            assert set(got["removed"]) <= set(want["removed"]), (first, second, name)
            for video_id, deltas in got["counts"].items():
                seen = [truth_between(first, k)[name]["counts"].get(video_id) for k in seen_in]
                assert deltas in seen or video_id not in later[name], (first, second, name)
    assert sum(len(t["added"]) for t in truth[(1, 3)].values()) == sum(
        1 for change in diffs(db, 1, 3) if change["change"] == "added"
    )
    # Round 3's export is each user's whole list at epoch 2, in the API's order; the only
    # videos it holds beyond it are ones removed unseen past the head, and it lacks none.
    result = cli("export", "--db", db, "--round", 3, "--provenance", "--output", "-")
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    for name in PANEL:
        exported = [(row["id"], row["round"]) for row in rows if row["reposted_by"] == name]
        ids = [video_id for video_id, _ in exported]
        assert len(set(ids)) == len(ids)
        assert [i for i in ids if i in listed[2][name]] == listed[2][name], name
        unseen = [i for i in ids if i not in listed[2][name]]
        assert all(i in listed[0][name] or i in listed[1][name] for i in unseen)
    # What round 2 added past round 3's head was observed in round 2, and says so.
    assert {row["round"] for row in rows if row["id"] in deep} == {2}
    # The panel's whole dehydrated dataset in one file: each round's list whole, each row's
    # round the round whose list holds it (round 3's completion from round 2 included).
    shared = cli("export", "--db", db, "--ids-only", "--round", "all", "--format", "csv")
    assert shared.returncode == 0, shared.stderr
    table = list(csv.reader(io.StringIO(shared.stdout, newline="")))
    assert table[0] == ["reposted_by", "id", "round"]
    assert len(set(map(tuple, table[1:]))) == len(table) - 1  # no row twice
    for number in (1, 2, 3):
        for name in PANEL:
            ids = [int(i) for u, i, r in table[1:] if u == name and r == str(number)]
            in_truth = [i for i in ids if i in listed[number - 1][name]]
            assert in_truth == listed[number - 1][name], (number, name)
            if number == 1:
                assert ids == listed[0][name]
    refused = cli("export", "--db", db, "--round", "all")
    assert refused.returncode == 2
    assert "--round all goes with --ids-only" in refused.stderr


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "panel.db", fields=FIELDS, max_count=100) as made:
        yield made


def diffs(db: Path, first: int, second: int) -> list[dict[str, Any]]:
    with Store(db, create=False) as opened:
        return [change.as_row() for change in diff_rounds(opened, first, second)]


def by_user(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Return diff records in the shape of Simulator.changes, per user."""
    found: dict[str, dict[str, Any]] = {}
    for record in records:
        user = found.setdefault(record["username"], {"added": [], "removed": [], "counts": {}})
        if record["change"] == "changed":
            user["counts"][record["video_id"]] = {
                name[: -len("_delta")]: value
                for name, value in record.items()
                if name.endswith("_delta") and value
            }
        else:
            user[record["change"]].append(record["video_id"])
    return found


def test_a_partial_list_is_joined_past_the_last_video_it_saw_again(store: Store) -> None:
    walk(store, "a", [video(6), video(5), video(4)], [video(3), video(2), video(1)])
    store.start_round(stop_at_known=True)
    # 5 is gone; 4 is known: the walk stopped on that page. Past 4, round 1's list goes on.
    walk(store, "a", [video(8), video(7)], [video(6), video(4, likes=3)], partial=True)
    store.start_round(stop_at_known=True)
    assert store.known_video_ids("a") == {"8", "7", "6", "4", "3", "2", "1"}
    walk(store, "a", [video(9), video(8)], partial=True)
    listing = [(int(i), observed) for i, _, observed in store.completed_round_videos("a", 3)]
    assert listing == [(9, 3), (8, 3), (7, 2), (6, 2), (4, 2), (3, 1), (2, 1), (1, 1)]
    changes = [(c.video_id, c.change, c.partial) for c in diff_rounds(store, 1, 3)]
    # 5 was seen gone by round 2; 4's likes moved by round 2, as last seen.
    assert changes == [
        (9, "added", True),
        (8, "added", True),
        (7, "added", True),
        (4, "changed", True),
        (5, "removed", True),
    ]
    out = io.BytesIO()
    export_jsonl(store, out, round=3)
    assert [json.loads(line)["id"] for line in out.getvalue().splitlines()] == [
        9, 8, 7, 6, 4, 3, 2, 1,
    ]  # fmt: skip
    # A whole walk is given as walked.
    assert [int(i) for i, _, _ in store.completed_round_videos("a", 1)] == [6, 5, 4, 3, 2, 1]


def test_known_videos_come_from_the_last_done_walk_not_a_failed_one(store: Store) -> None:
    from tiktok_repost_async.store import PageCommit, UserState

    walk(store, "a", [video(3), video(2), video(1)])
    store.start_round()
    store.add_users(["a"])
    store.commit_pages([PageCommit("a", [(9, video(9))], 100, True, 1)])
    store.finish_user("a", UserState.FAILED, error="ServerError")
    # Round 2's walk failed after one page: it is not the list a stop-at-known walk rests on.
    assert store.known_video_ids("a", before=3) == {"3", "2", "1"}
