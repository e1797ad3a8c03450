"""Bounded walks: empty pages with has_more, the incomplete state, max_pages left resumable."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import make_client

from tiktok_repost_async import (
    PageEvent,
    RepostClient,
    Store,
    UserDone,
    UserState,
    WalkGuard,
    WalkState,
    diff_rounds,
)
from tiktok_repost_async.cli import status_report
from tiktok_repost_async.client import empty_page_bound
from tiktok_repost_async.harvester import UserOutcome, harvest
from tiktok_repost_async.simulator import Simulator


async def run(
    client: RepostClient, names: list[str], db: Path, **options: object
) -> list[UserOutcome]:
    return [o async for o in harvest(client, names, store=db, **options)]  # type: ignore[arg-type]


def truth(sim: Simulator, name: str) -> list[int]:
    return [v["id"] for v in sim.ground_truth(name)]


def test_the_bound_crosses_one_empty_page_and_scales_with_small_pages() -> None:
    assert empty_page_bound(100) == 3
    assert empty_page_bound(50) == 6
    assert empty_page_bound(20) == 15
    assert empty_page_bound(1000) == 3


@pytest.mark.parametrize("max_count", [100, 20])
async def test_an_endless_user_costs_its_real_pages_plus_the_guard(
    sim: Simulator, max_count: int
) -> None:
    names = ["endless_n250", "short_n400", "alice_n120"]
    async with make_client(sim, max_count=max_count) as client:
        ends: dict[str, UserDone] = {}
        ids: dict[str, list[int]] = {}
        async for event in client.walk_many(names):
            if isinstance(event, PageEvent):
                ids.setdefault(event.username, []).extend(v.id for v in event.page.videos)
            elif isinstance(event, UserDone):
                ends[event.username] = event
    endless = ends["endless_n250"]
    assert endless.state is WalkState.INCOMPLETE
    assert endless.guard is WalkGuard.EMPTY_PAGES
    assert ids["endless_n250"] == truth(sim, "endless_n250")
    bound = empty_page_bound(max_count)
    real = sim.pages_needed("endless_n250", max_count)
    assert endless.requests == real + bound
    assert sim.stats.by_user["endless_n250"] == real + bound
    # A short user's run of moderated (empty) pages is crossed, at 100 and at 20 a page.
    assert ends["short_n400"].state is WalkState.DONE
    assert ids["short_n400"] == truth(sim, "short_n400")
    assert ends["alice_n120"].state is WalkState.DONE


async def test_a_guarded_user_is_incomplete_in_the_store_and_final_until_asked(
    sim: Simulator, tmp_path: Path
) -> None:
    db = tmp_path / "h.db"
    names = ["endless_n150", "stall_n500", "bob_n90"]
    async with make_client(sim) as client:
        outcomes = {o.username: o for o in await run(client, names, db)}
        assert outcomes["endless_n150"].state is UserState.INCOMPLETE
        assert outcomes["endless_n150"].incomplete
        assert outcomes["stall_n500"].state is UserState.INCOMPLETE
        assert outcomes["bob_n90"].state is UserState.DONE
        with Store(db, create=False) as store:
            record = store.user("endless_n150")
            assert record is not None
            assert record.state is UserState.INCOMPLETE
            assert (record.error or "").startswith("empty_pages:")
            stalled = store.user("stall_n500")
            assert stalled is not None
            assert (stalled.error or "").startswith("repeated_cursor:")
            report = status_report(store, daily_quota=1000, limit=None)
        assert report.users["incomplete"] == 2
        assert {u.username for u in report.incomplete} == {"endless_n150", "stall_n500"}
        assert all(u.reason for u in report.incomplete)
        # Final: a second run walks nobody.
        before = sim.stats.requests
        assert await run(client, names, db) == []
        assert sim.stats.requests == before
        # Asked to, it continues from the saved cursor: the empty pages again, no old page.
        again = {o.username: o for o in await run(client, names, db, retry_incomplete=True)}
    assert set(again) == {"endless_n150", "stall_n500"}
    assert again["endless_n150"].state is UserState.INCOMPLETE
    assert again["endless_n150"].requests == empty_page_bound(100)
    assert again["endless_n150"].resumed_from > 0


async def test_max_pages_leaves_users_pending_and_a_full_run_ends_exact(
    sim: Simulator, tmp_path: Path
) -> None:
    db = tmp_path / "h.db"
    names = ["cap_n500", "small_n30"]
    async with make_client(sim, max_count=50) as client:
        first = {o.username: o for o in await run(client, names, db, max_pages=2)}
        assert first["cap_n500"].state is UserState.PENDING
        assert first["cap_n500"].incomplete
        assert first["small_n30"].state is UserState.DONE
        with Store(db, create=False) as store:
            record = store.user("cap_n500")
            assert record is not None
            assert (record.state, record.cursor) == (UserState.PENDING, 100)
        second = await run(client, names, db)
    assert [(o.username, o.state) for o in second] == [("cap_n500", UserState.DONE)]
    assert second[0].resumed_from == 100
    with Store(db, create=False) as store:
        ids = [int(video_id) for user, video_id, _ in store.iter_videos() if user == "cap_n500"]
    assert ids == truth(sim, "cap_n500")
    assert sim.stats.by_user["cap_n500"] == sim.pages_needed("cap_n500", 50)


@pytest.mark.parametrize(
    ("name", "guard"),
    [("stall_n500", WalkGuard.REPEATED_CURSOR), ("endless_n150", WalkGuard.EMPTY_PAGES)],
)
async def test_a_guard_met_on_the_max_pages_page_is_named_and_never_walked_again(
    sim: Simulator, tmp_path: Path, name: str, guard: WalkGuard
) -> None:
    # max_pages ends the walk on the very page where the API repeats a cursor (a stall user's
    # second page) or completes a run of empty pages (an endless user's real pages and then
    # the bound): the guard that says the API misbehaves is what the user's state tells.
    cut_at = sim.pages_needed(name)
    if guard is WalkGuard.EMPTY_PAGES:
        cut_at += empty_page_bound(100)
    db = tmp_path / "h.db"
    async with make_client(sim) as client:
        ends = [
            event
            async for event in client.walk_many([name], max_pages=cut_at)
            if isinstance(event, UserDone)
        ]
        assert [(end.state, end.guard) for end in ends] == [(WalkState.INCOMPLETE, guard)]
        sim.reset_stats()
        [first] = await run(client, [name], db, max_pages=cut_at)
        assert (first.state, first.incomplete) == (UserState.INCOMPLETE, True)
        assert sim.stats.by_user[name] == cut_at
        with Store(db, create=False) as store:
            record = store.user(name)
            assert record is not None
            assert record.state is UserState.INCOMPLETE
            assert (record.error or "").startswith(f"{guard}:")
        # The same command again, and one without max_pages: the user is final, so no
        # (user, cursor) is ever sent twice.
        assert await run(client, [name], db, max_pages=cut_at) == []
        assert await run(client, [name], db) == []
    assert sim.stats.by_user[name] == cut_at
    assert max(sim.stats.by_cursor.values()) == 1


async def test_a_round_with_incomplete_users_is_complete_and_they_take_no_part_in_a_diff(
    sim: Simulator, tmp_path: Path
) -> None:
    db = tmp_path / "h.db"
    names = ["endless_n150", "panel_n90"]
    async with make_client(sim) as client:
        await run(client, names, db)
        sim.config.epoch = 1
        await run(client, names, db, new_round=True)
    with Store(db, create=False) as store:
        rounds = store.rounds()
        assert [r.users[UserState.INCOMPLETE] for r in rounds] == [1, 1]
        assert all(r.complete for r in rounds)
        changed = {change.username for change in diff_rounds(store)}
    assert "endless_n150" not in changed
    assert changed <= {"panel_n90"}
