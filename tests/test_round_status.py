"""``status`` of a panel: one truth per figure, named for what it counts (issue 21 item 5)."""

from __future__ import annotations

import json
from pathlib import Path

from tiktok_repost_async.cli.status import status_report, status_text
from tiktok_repost_async.store import PageCommit, Store, UserState

NOW = 1_767_268_800.0  # 2026-01-01T12:00:00Z


def clock() -> float:
    return NOW


def video(video_id: int) -> bytes:
    return json.dumps({"id": video_id}).encode()


def walk(store: Store, name: str, pages: int, first_id: int = 1) -> None:
    """Walk one user of the current round to the end over ``pages`` pages of one video."""
    store.add_users([name])
    for page in range(pages):
        vid = first_id + page
        store.commit_pages(
            [PageCommit(name, [(vid, video(vid))], 100 * (page + 1), page < pages - 1, 0)]
        )


def panel(tmp_path: Path, size: int) -> Store:
    """Return a store whose round 1 walked ``size`` users, two pages each."""
    store = Store(tmp_path / "panel.db", fields=("id",), max_count=100, clock=clock)
    store.begin_round_input()
    for i in range(size):
        walk(store, f"u{i}", 2)
    store.end_round_input()
    return store


def test_the_plan_of_a_round_in_progress_counts_the_users_its_input_has_yet_to_name(
    tmp_path: Path,
) -> None:
    with panel(tmp_path, 15) as store:
        assert store.start_round() == (2, True)
        # Round 2 stopped after reading 5 names of 15: 1 walked, 4 pending, 10 not yet read.
        store.begin_round_input()
        walk(store, "u0", 2)
        store.add_users([f"u{i}" for i in range(1, 5)])
        plan = status_report(store, daily_quota=1000, limit=None, now=NOW).plan
        assert plan.users_left == 14
        assert plan.requests_left == 28  # two pages each, as the finished walks took
        # Once a run has read its whole input, users it did not name are not left.
        store.end_round_input()
        assert status_report(store, daily_quota=1000, limit=None, now=NOW).plan.users_left == 4


def test_after_a_quota_stop_by_the_api_requests_left_and_the_plan_agree(tmp_path: Path) -> None:
    with panel(tmp_path, 3) as store:
        store.add_users(["late"])
        store.record_requests(33)
        store.begin_run("9.9.9")
        store.end_run("stopped: quota")
        report = status_report(store, daily_quota=1000, limit=None, now=NOW)
    data = report.to_json()
    # The ledger's figure is what this store sent; what is left is what the API allows.
    assert data["requests"]["spent"] == 33
    assert data["requests"]["left"] == data["plan"]["left_today"] == 0
    assert data["requests"]["quota_spent_by_api"] is True
    assert "0 left of 1,000" in status_text(report)


def test_videos_counts_each_users_latest_whole_list_and_observations_every_round(
    tmp_path: Path,
) -> None:
    with panel(tmp_path, 2) as store:
        store.start_round()
        store.begin_round_input()
        walk(store, "u0", 3, first_id=1)  # one video more than in round 1
        store.add_users(["u1"])
        store.finish_user("u1", UserState.FAILED, error="boom")
        store.end_round_input()
        report = status_report(store, daily_quota=1000, limit=None, now=NOW)
    # u0's latest whole list (round 2) has 3 videos, u1's (round 1) 2: what `export` writes.
    assert report.videos == 5
    assert report.observations == 4 + 3
    assert [r.videos for r in report.rounds] == [4, 3]
    assert "videos    5 (each user's latest whole list; 7 observations in 2 rounds)" in (
        status_text(report)
    )
