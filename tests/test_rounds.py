"""Rounds of a panel in the store, export by round, and the diff between rounds."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tiktok_repost_async.diff import DIFF_COLUMNS, DiffError, diff_rounds, pick_rounds, write_diff
from tiktok_repost_async.export import export_jsonl
from tiktok_repost_async.store import PageCommit, Store, UserState

FIELDS = ("id", "like_count", "view_count")
BIG = 73207681965695992750  # above uint64


def video(video_id: int, likes: Any = 1, views: Any = 10, **extra: Any) -> bytes:
    """Return a video's JSON as the API would send it."""
    return json.dumps({"id": video_id, "like_count": likes, "view_count": views, **extra}).encode()


def walk(store: Store, username: str, *pages: list[bytes], partial: bool = False) -> None:
    """Store a user's walk of the current round, page by page, as a harvest does."""
    store.add_users([username])
    cursor = 0
    for number, page in enumerate(pages, 1):
        rows = [(json.loads(data)["id"], data) for data in page]
        last = number == len(pages)
        store.commit_pages(
            [PageCommit(username, rows, cursor + 100, not last or partial, 1, cursor=cursor)]
        )
        cursor += 100
    if partial:
        store.finish_user(username, UserState.DONE, partial=True)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "panel.db", fields=FIELDS, max_count=100) as made:
        yield made


def test_a_new_store_is_round_one_and_a_new_round_needs_a_walked_one(store: Store) -> None:
    assert store.current_round == 1
    # Nothing walked yet: --new-round on a fresh store is its first round.
    assert store.start_round() == (1, False)
    walk(store, "a", [video(1)])
    assert store.start_round() == (2, True)
    assert store.current_round == 2
    (first, second) = store.rounds()
    assert (first.number, first.complete, first.users[UserState.DONE]) == (1, True, 1)
    assert (second.number, second.in_progress, second.complete) == (2, True, False)


def test_a_round_with_pending_users_is_resumed_not_started_again(store: Store) -> None:
    walk(store, "a", [video(1)])
    store.start_round()
    store.add_users(["a"])  # joins round 2, pending
    # Running the same --new-round command again after a kill resumes round 2.
    assert store.start_round() == (2, False)
    assert store.current_round == 2


def test_a_user_joins_the_new_round_from_cursor_zero_and_keeps_its_old_state(
    store: Store,
) -> None:
    walk(store, "a", [video(1), video(2)], [video(3)])
    store.add_users(["gone"])
    store.finish_user("gone", UserState.NOT_FOUND, requests=1)
    store.start_round()
    assert store.add_users(["a", "new"]) == [
        ("a", UserState.PENDING, 0),
        ("new", UserState.PENDING, 0),
    ]
    record = store.user("a")
    assert record is not None
    assert (record.cursor, record.pages, record.videos) == (0, 0, 0)
    # Round 1 is kept as it ended; "gone" is not in round 2 and stays where it was.
    assert list(store.iter_round_users(1)) == [
        ("a", UserState.DONE, False),
        ("gone", UserState.NOT_FOUND, False),
    ]
    assert list(store.iter_round_users(2)) == [
        ("a", UserState.PENDING, False),
        ("new", UserState.PENDING, False),
    ]
    # The same video in two rounds is two observations.
    store.commit_pages([PageCommit("a", [(1, video(1, likes=5))], 100, False, 1)])
    assert store.round_videos("a", 1)[0] == ("1", video(1))
    assert store.round_videos("a", 2) == [("1", video(1, likes=5))]
    assert store.known_video_ids("a") == {"1", "2", "3"}
    assert store.known_video_ids("new") == set()


def test_export_by_round_and_by_default_the_latest_complete_observation(store: Store) -> None:
    walk(store, "a", [video(1), video(2)])
    walk(store, "b", [video(7)])
    store.start_round()
    walk(store, "a", [video(3), video(1, likes=9)])
    store.add_users(["b"])  # b joined round 2 but its walk is not done: pending
    store.commit_pages([PageCommit("b", [(8, video(8))], 100, True, 1)])

    def exported(**kwargs: Any) -> list[tuple[str, int, int]]:
        out = io.BytesIO()
        export_jsonl(store, out, **kwargs)
        rows = [json.loads(line) for line in out.getvalue().splitlines()]
        return [(row["reposted_by"], row["id"], row["like_count"]) for row in rows]

    assert exported(round=1) == [("a", 1, 1), ("a", 2, 1), ("b", 7, 1)]
    assert exported(round=2) == [("a", 3, 1), ("a", 1, 9), ("b", 8, 1)]
    # Default: a from round 2 (done there), b from round 1 (its round 2 walk is unfinished).
    assert exported() == [("a", 3, 1), ("a", 1, 9), ("b", 7, 1)]
    with pytest.raises(ValueError, match="no round 3: its rounds are 1 to 2"):
        exported(round=3)


def test_diff_reports_added_removed_and_count_changes_with_exact_ids(store: Store) -> None:
    walk(store, "a", [video(1, 5, 100), video(BIG, 1, 10)], [video(3, 0, 0)])
    walk(store, "b", [video(4)])
    store.start_round()
    walk(store, "a", [video(9), video(BIG, 4, 25)], [video(3, 0, 0)])
    walk(store, "b", [video(4)])
    changes = [change.as_row() for change in diff_rounds(store)]
    assert changes == [
        row("a", 9, "added"),
        row("a", BIG, "changed", like_count_delta=3, view_count_delta=15),
        row("a", 1, "removed"),
    ]
    out = io.BytesIO()
    assert write_diff(store, out, "jsonl") == 3
    lines = out.getvalue().decode().splitlines()
    assert f'"video_id":{BIG}' in lines[1]  # the digits, not a float
    assert [json.loads(line) for line in lines] == changes
    text = io.BytesIO()
    write_diff(store, text, "csv")
    records = list(csv.DictReader(io.StringIO(text.getvalue().decode(), newline="")))
    assert list(records[0]) == list(DIFF_COLUMNS)
    assert [(r["video_id"], r["change"], r["like_count_delta"]) for r in records] == [
        ("9", "added", ""),
        (str(BIG), "changed", "3"),
        ("1", "removed", ""),
    ]
    assert records[0]["partial"] == "false"


def row(username: str, video_id: int, change: str, **deltas: int) -> dict[str, Any]:
    base: dict[str, Any] = dict.fromkeys(DIFF_COLUMNS)
    base.update(
        username=username,
        video_id=video_id,
        change=change,
        from_round=1,
        to_round=2,
        partial=False,
    )
    base.update(deltas)
    return base


def test_users_not_walked_in_both_rounds_never_show_as_removals(store: Store) -> None:
    for name in ("ok", "lost", "private", "broken", "newcomer"):
        walk(store, name, [video(hash(name) % 1000 + 1)]) if name != "newcomer" else None
    store.start_round()
    walk(store, "ok", [video(hash("ok") % 1000 + 1)])
    store.add_users(["lost", "private", "broken", "newcomer"])
    store.finish_user("lost", UserState.NOT_FOUND, requests=1)
    store.finish_user("private", UserState.UNAVAILABLE, requests=1)
    store.finish_user("broken", UserState.FAILED, error="ServerError", requests=3)
    walk(store, "newcomer", [video(5)])
    # "broken" failed in round 2, so round 2 is not complete: name it explicitly.
    assert list(diff_rounds(store, 1, 2)) == []


def test_a_partial_walk_reports_additions_only_and_is_flagged(store: Store) -> None:
    walk(store, "a", [video(1), video(2), video(3)])
    store.start_round(stop_at_known=True)
    assert store.round_stops_at_known()
    # Round 2 stopped at the first known video: 2 is new, 1 is known; 3 was not looked at.
    walk(store, "a", [video(10), video(1, likes=4)], partial=True)
    changes = list(diff_rounds(store))
    assert [(c.video_id, c.change, c.partial) for c in changes] == [
        (10, "added", True),
        (1, "changed", True),
    ]
    (round_two,) = [r for r in store.rounds() if r.number == 2]
    assert (round_two.partial, round_two.stop_at_known, round_two.complete) == (1, True, True)


def test_bad_rounds_get_one_clear_error(store: Store) -> None:
    walk(store, "a", [video(1)])
    with pytest.raises(DiffError, match=r"one round only.*--new-round"):
        pick_rounds(store)
    store.start_round()
    store.add_users(["a"])
    with pytest.raises(DiffError, match="--to 2: round 2 is still in progress: 1 of its users"):
        pick_rounds(store, 1, 2)
    with pytest.raises(DiffError, match="no round 5; its rounds are 1 to 2"):
        pick_rounds(store, 1, 5)
    with pytest.raises(
        DiffError,
        match=r"not two complete rounds to compare \(round 1 complete, round 2 in progress\)",
    ):
        pick_rounds(store)
    with pytest.raises(DiffError, match="there is no complete round after round 1"):
        pick_rounds(store, from_round=1)
    walk(store, "a", [video(1)])
    assert pick_rounds(store) == (1, 2)
    with pytest.raises(DiffError, match="--from 2 must be an earlier round than --to 1"):
        pick_rounds(store, 2, 1)
    with pytest.raises(ValueError, match="jsonl or csv"):
        write_diff(store, io.BytesIO(), "parquet")


def test_a_version_1_store_opens_as_a_one_round_store(tmp_path: Path) -> None:
    from test_store_provenance import make_v1_store

    db = tmp_path / "old.db"
    make_v1_store(db, {"a": ("done", 0, [{"id": 1}])})
    with Store(db, create=False) as old:
        (only,) = old.rounds()
        assert (only.number, only.started_at, only.complete) == (1, "2025-11-30T10:00:00Z", True)
        assert old.round_videos("a", 1) == [("1", b'{"id":1}')]
        assert old.start_round() == (2, True)


# -- the command line, against the simulator ---------------------------------------------------

PANEL = ["alice_n250", "bob_n120", "carol_n30", "missing_panelist"]


def test_a_repeat_round_with_stop_at_known_costs_one_request_per_user(tmp_path: Path) -> None:
    from test_cli import cli, write_users

    from tiktok_repost_async.simulator import Simulator

    users = write_users(tmp_path / "panel.txt", PANEL)
    db = tmp_path / "panel.db"
    with Simulator().run_in_thread() as base_url:
        first = harvest_at(base_url, users, db)
        assert first.returncode == 0, first.stderr
        full = sum(Simulator.pages_needed(name) for name in PANEL)
        # Nothing changed at the simulator between the rounds: a full repeat costs as much.
        second = harvest_at(base_url, users, db, "--new-round")
        assert second.returncode == 0, second.stderr
        assert "round 2 (started)" in second.stderr
        third = harvest_at(base_url, users, db, "--new-round", "--stop-at-known")
        assert third.returncode == 0, third.stderr
        assert "round 3 (started, stopping at known videos)" in third.stderr
    with Store(db, create=False) as store:
        rounds = store.rounds()
    assert [r.number for r in rounds] == [1, 2, 3]
    assert [r.requests for r in rounds] == [full, full, len(PANEL)]
    # alice and bob stopped after their first page; carol's one page was all there was.
    assert rounds[2].partial == 2
    assert all(r.complete for r in rounds)
    report = json.loads(cli("status", "--db", db, "--json").stdout)
    assert [r["round"] for r in report["rounds"]] == [1, 2, 3]
    assert report["rounds"][2]["stop_at_known"] is True
    text = cli("status", "--db", db).stdout
    assert "stop-at-known (2 partial)" in text
    lines = text.splitlines()
    head = lines[lines.index("rounds") + 1]
    for number, row in enumerate(lines[lines.index("rounds") + 2 :][:3], start=1):
        # Each head stands over its column: text from the left, figures from the right.
        assert row.index(report["rounds"][number - 1]["started_at"]) == head.index("started")
        end = head.index("requests") + len("requests")
        assert row[:end].endswith(f" {report['rounds'][number - 1]['requests']:,}"), (head, row)
    # No change between identical rounds; the diff says so, and names its rounds.
    diff = cli("diff", "--db", db, "--output", "-")
    assert diff.returncode == 0, diff.stderr
    assert diff.stdout == ""
    assert "0 changes from round 2 to round 3" in diff.stderr


def harvest_at(base_url: str, users: Path, db: Path, *options: str) -> Any:
    from test_cli import cli, cli_env

    return cli(
        "harvest", users, "--db", db, "--base-url", base_url, "--rate", 500, *options,
        env=cli_env(),
    )  # fmt: skip


def test_command_line_mistakes_about_rounds_get_one_line_each(tmp_path: Path) -> None:
    from test_cli import cli

    db = tmp_path / "one.db"
    with Store(db, fields=FIELDS, max_count=100) as store:
        walk(store, "a", [video(1)])
    result = cli("diff", "--db", db)
    assert result.returncode == 2
    assert "one round only" in result.stderr
    assert "Traceback" not in result.stderr
    result = cli("export", "--db", db, "--round", "4")
    assert result.returncode == 2
    assert "--round 4" in result.stderr
    assert "rounds are 1 to 1" in result.stderr
    result = cli("harvest", "users.txt", "--db", db, "--stop-at-known")
    assert result.returncode == 2
    assert "--stop-at-known applies to a new round" in result.stderr
    with Store(db, create=False) as store:
        store.start_round()
        store.add_users(["a"])
    result = cli("diff", "--db", db, "--from", "1", "--to", "2")
    assert result.returncode == 2
    assert "round 2 is still in progress" in result.stderr


async def test_two_runs_on_one_store_object_each_walk_their_names(tmp_path: Path) -> None:
    from tiktok_repost_async import RepostClient
    from tiktok_repost_async.harvester import Harvester
    from tiktok_repost_async.simulator import TEST_CLIENT_KEY, TEST_CLIENT_SECRET, Simulator

    async with Simulator() as sim:
        client = RepostClient(
            TEST_CLIENT_KEY, TEST_CLIENT_SECRET, base_url=sim.base_url,
            requests_per_second=10_000.0,
        )  # fmt: skip
        async with client:
            with Store(tmp_path / "one.db", fields=client.fields, max_count=100) as store:
                first = [o async for o in Harvester(client, store).run(["ann_n150"])]
                again = Harvester(client, store, new_round=True)
                second = [o async for o in again.run(["ann_n150"])]
                assert again.round == 2
                assert [(o.username, o.state, o.pages) for o in first + second] == [
                    ("ann_n150", UserState.DONE, 2),
                    ("ann_n150", UserState.DONE, 2),
                ]
                assert [r.complete for r in store.rounds()] == [True, True]


def changes_by_user(store: Store, first: int, second: int) -> dict[str, dict[str, Any]]:
    """Return the client's diff in the shape of Simulator.changes, per user."""
    found: dict[str, dict[str, Any]] = {}
    for change in diff_rounds(store, first, second):
        record = found.setdefault(change.username, {"added": [], "removed": [], "counts": {}})
        if change.change == "changed":
            # Simulator.changes lists the counts that moved; the diff gives 0 for the others.
            moved = {name: delta for name, delta in change.deltas.items() if delta}
            record["counts"][change.video_id] = moved
        else:
            record[change.change].append(change.video_id)
    return found


EPOCH_PANEL = [f"panelist{i}" for i in range(12)] + ["big_panelist", "short_panelist"]


@pytest.mark.slow
def test_a_kill_in_round_two_resumes_round_two_and_three_rounds_diff_exactly(
    tmp_path: Path,
) -> None:
    import os
    import signal
    import subprocess
    import time

    from test_cli import cli_env, command, write_users

    from tiktok_repost_async.simulator import Simulator

    users = write_users(tmp_path / "panel.txt", EPOCH_PANEL)
    db = tmp_path / "panel.db"
    sim = Simulator()
    with sim.run_in_thread() as base_url:
        base = ["harvest", users, "--db", db, "--base-url", base_url, "--rate", 500]
        assert harvest_at(base_url, users, db).returncode == 0
        # A week passes; round 2 is killed half-way, then the same command is run again.
        sim.config.epoch = 1
        sim.config.latency = 0.05
        child = subprocess.Popen(
            command(*base, "--new-round", "--concurrency", 2),
            env=cli_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with Store(db, create=False) as store:
                if store.current_round == 2 and store.rounds()[1].videos > 0:
                    break
            time.sleep(0.05)
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
        sim.config.latency = 0.0
        again = harvest_at(base_url, users, db, "--new-round")
        assert again.returncode == 0, again.stderr
        assert "round 2 (resumed)" in again.stderr
        # Round 3, a full walk a week later.
        sim.config.epoch = 2
        third = harvest_at(base_url, users, db, "--new-round")
        assert third.returncode == 0, third.stderr
        assert "round 3 (started)" in third.stderr
        want = {
            (first, second): {
                name: sim.changes(name, first - 1, second - 1) for name in EPOCH_PANEL
            }
            for first, second in ((1, 2), (2, 3), (1, 3))
        }
        truth = {name: [v["id"] for v in sim.ground_truth(name, epoch=1)] for name in EPOCH_PANEL}
    empty: dict[str, Any] = {"added": [], "removed": [], "counts": {}}
    with Store(db, create=False) as store:
        assert [r.number for r in store.rounds()] == [1, 2, 3]
        # Round 2 holds every user's list once, exactly as served at that epoch.
        for name in EPOCH_PANEL:
            assert [int(i) for i, _ in store.round_videos(name, 2)] == truth[name], name
        for (first, second), expected in want.items():
            found = changes_by_user(store, first, second)
            for name in EPOCH_PANEL:
                assert found.get(name, empty) == expected[name], (first, second, name)
    assert any(expected["removed"] for expected in want[(1, 2)].values())


async def test_a_user_failed_in_the_later_round_shows_no_removals(tmp_path: Path) -> None:
    from tiktok_repost_async import RepostClient, RetryPolicy
    from tiktok_repost_async.harvester import harvest
    from tiktok_repost_async.simulator import Fault, Simulator

    db = tmp_path / "panel.db"
    names = ["stable_n150", "flaky_n150"]
    async with Simulator() as sim:
        for epoch in (0, 1):
            sim.config.epoch = epoch
            if epoch:
                sim.script("flaky_n150", [Fault.SERVER_ERROR] * 2)
            client = RepostClient(
                sim.client_key, sim.client_secret, base_url=sim.base_url,
                requests_per_second=10_000.0, retry=RetryPolicy(max_attempts=2, base_delay=0),
            )  # fmt: skip
            async with client:
                [_ async for _ in harvest(client, names, store=db, new_round=epoch > 0)]
        expected = sim.changes("stable_n150", 0, 1)
    with Store(db, create=False) as store:
        (_, round_two) = store.rounds()
        assert round_two.users[UserState.FAILED] == 1
        found = changes_by_user(store, 1, 2)
    # The failed user takes no part: none of its 150 videos shows as removed.
    assert set(found) <= {"stable_n150"}
    assert found.get("stable_n150", {"added": [], "removed": [], "counts": {}}) == expected


def test_the_default_export_prefers_a_full_walk_to_a_partial_one(store: Store) -> None:
    walk(store, "a", [video(1), video(2)])
    store.start_round(stop_at_known=True)
    walk(store, "a", [video(9), video(1)], partial=True)
    out = io.BytesIO()
    export_jsonl(store, out)
    # Round 2 saw only the head of a's list: the default is round 1's whole list.
    assert [json.loads(line)["id"] for line in out.getvalue().splitlines()] == [1, 2]
    out = io.BytesIO()
    export_jsonl(store, out, round=2)
    # Round 2's own list: its head, then round 1's list past the known video it stopped at.
    assert [json.loads(line)["id"] for line in out.getvalue().splitlines()] == [9, 1, 2]


def test_the_default_export_prefers_a_full_walk_to_an_incomplete_one(store: Store) -> None:
    walk(store, "a", [video(1), video(2)])
    store.start_round()
    store.add_users(["a"])
    store.commit_pages([PageCommit("a", [(9, video(9))], 100, True, 1)])
    store.finish_user("a", UserState.INCOMPLETE, error="empty_pages: cut at cursor 100")
    out = io.BytesIO()
    export_jsonl(store, out)
    # Round 2's walk was cut short by a guard: the default is round 1's whole list.
    assert [json.loads(line)["id"] for line in out.getvalue().splitlines()] == [1, 2]
