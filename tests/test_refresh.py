"""refresh(): a store checked against the simulator's compliance tasks, what is gone deleted.

Expectations come from the simulator's own ground truth (its wire JSON at each epoch, the tasks
it made), never from what our code computes.
"""

from __future__ import annotations

import contextlib
import csv
import json
import sqlite3
from pathlib import Path
from typing import Any

from support import FakeTime, make_client

from tiktok_repost_async import (
    MAX_TASK_IDS,
    RefreshReport,
    Store,
    UserState,
    diff_rounds,
    harvest,
    refresh,
)
from tiktok_repost_async.export import export_to_path
from tiktok_repost_async.refresher import SUSPICIOUS_MIN, Refresher
from tiktok_repost_async.simulator import Simulator
from tiktok_repost_async.simulator._compliance import TASK_STATUS_PATH
from tiktok_repost_async.store import SCHEMA_VERSION, PageCommit

# Ten users of 300 reposts: 3,000 videos, some of which the simulator deletes by epoch 3.
USERS = [f"keep{i}_n300" for i in range(10)]
EPOCH = 3


def wire_ids(sim: Simulator, names: list[str], epoch: int) -> set[int]:
    """Return the ids of the users' videos at an epoch, from the simulator's own wire JSON."""
    return {int(video["id"]) for name in names for video in sim.ground_truth(name, epoch=epoch)}


async def harvested(sim: Simulator, db: Path, names: list[str]) -> None:
    async with make_client(sim) as client:
        async for outcome in harvest(client, names, store=db, daily_quota=10**6):
            assert outcome.state in (UserState.DONE, UserState.NOT_FOUND, UserState.UNAVAILABLE)


def stored(db: Path) -> dict[tuple[str, int, str], bytes]:
    """Return every observation in the store: (user, round, video id) -> its bytes."""
    with Store(db, create=False) as store:
        return {
            (user, round_, video_id): data
            for number in range(1, store.current_round + 1)
            for user, video_id, data, round_, _, _ in store.iter_videos_with_provenance(
                round=number
            )
        }


def file_bytes(db: Path) -> bytes:
    """Return the bytes of every file of the store: the database, its WAL and any journal."""
    return b"".join(p.read_bytes() for p in db.parent.iterdir() if p.name.startswith(db.name))


async def run_refresh(sim: Simulator, db: Path, **options: Any) -> RefreshReport:
    options.setdefault("daily_quota", 10**6)
    time = FakeTime()
    async with make_client(sim) as client:
        with Store(db, create=False) as store:
            return await refresh(client, store, sleep=time.sleep, clock=time, **options)


async def test_a_rebuild_owed_by_a_killed_refresh_is_paid_by_the_next_one(
    sim: Simulator, tmp_path: Path
) -> None:
    # A refresh killed after its deletions committed, before its rebuild: the debt it recorded
    # in the same transaction makes the next refresh rebuild first, even one that removes none.
    db = tmp_path / "h.db"
    await harvested(sim, db, USERS)
    gone = sorted(str(i) for i in wire_ids(sim, USERS, 0) - wire_ids(sim, USERS, EPOCH))
    marks = ",".join("?" * len(gone))
    with contextlib.closing(sqlite3.connect(db)) as conn, conn:
        conn.execute("PRAGMA secure_delete=OFF")  # some builds default to ON
        for video_id in gone:  # moved, so that stale copies stay in free space
            conn.execute(
                "UPDATE videos SET data = CAST(data || zeroblob(600) AS BLOB) WHERE video_id = ?",
                (video_id,),
            )
        conn.execute("PRAGMA secure_delete=ON")
        conn.execute(f"DELETE FROM videos WHERE video_id IN ({marks})", gone)
        conn.execute("INSERT INTO meta (key, value) VALUES ('erase_pending', '1')")
    assert any(video_id.encode() in file_bytes(db) for video_id in gone)

    report = await run_refresh(sim, db)  # epoch 0: nothing is gone now

    assert report.finished
    assert report.removed == 0
    blob = file_bytes(db)
    assert [video_id for video_id in gone if video_id.encode() in blob] == []


async def test_a_refresh_deletes_exactly_what_is_gone_and_leaves_no_trace(
    sim: Simulator, tmp_path: Path
) -> None:
    db = tmp_path / "h.db"
    await harvested(sim, db, USERS)
    before = stored(db)
    sent = wire_ids(sim, USERS, 0)
    gone = sent - wire_ids(sim, USERS, EPOCH)
    assert 50 < len(gone) < 500, "the simulator must delete some videos by this epoch"
    sim.config.epoch = EPOCH
    sim.config.task_processing_polls = 2

    report = await run_refresh(sim, db)

    assert report.finished
    assert not report.resumed
    assert (report.checked, report.removed, report.observations_removed) == (
        len(sent),
        len(gone),
        len(gone),
    )
    [task] = sim.tasks
    assert set(task.ids) == sent
    assert report.task_ids == (task.task_id,)
    # One create, three polls (two Processing), one download.
    assert report.requests == report.requests_total == sim.stats.compliance_requests == 5
    after = stored(db)
    assert {int(key[2]) for key in after} == sent - gone
    # The survivors are byte for byte what was stored, which is the simulator's wire JSON.
    truth = {int(v["id"]): v for name in USERS for v in sim.ground_truth(name, epoch=0)}
    for key, data in after.items():
        assert data == before[key]
        assert json.loads(data) == truth[int(key[2])]
    # A removed video's bytes are in none of the store's files, nor is any long run of them
    # that no survivor shares.
    blob = file_bytes(db)
    survivors = b"\n".join(after.values())
    for key, data in before.items():
        if int(key[2]) not in gone:
            continue
        assert data not in blob
        assert key[2].encode() not in blob
        for start in range(0, len(data) - 40, 20):
            window = data[start : start + 40]
            assert window not in blob or window in survivors, (key, window)
    with Store(db, create=False) as store:
        [audit] = store.refreshes()
        assert audit.finished
        assert audit.removed == len(gone)
        assert audit.requests == 5
        assert audit.task_ids == (str(task.task_id),)
        # The ledger counts the harvest's requests and every compliance call.
        assert store.requests_on(time_day()) == sim.stats.quota_used


def time_day() -> str:
    import time

    from tiktok_repost_async.quota import utc_day

    return utc_day(time.time())


async def test_stale_copies_in_free_space_are_gone_after_a_refresh_too(
    sim: Simulator, tmp_path: Path
) -> None:
    # SQLite moves a row when it grows, and with secure_delete off (the default of many builds)
    # the old cell stays in the page's free space, bytes intact; page splits leave such copies
    # even with it on. Each video to be removed is moved twice so: its stale copies are in the
    # file, whatever secure_delete does later.
    db = tmp_path / "h.db"
    await harvested(sim, db, USERS)
    gone = wire_ids(sim, USERS, 0) - wire_ids(sim, USERS, EPOCH)
    with contextlib.closing(sqlite3.connect(db)) as conn, conn:
        conn.execute("PRAGMA secure_delete=OFF")
        for video_id in gone:
            conn.execute(
                "UPDATE videos SET data = CAST(data || zeroblob(600) AS BLOB) WHERE video_id = ?",
                (str(video_id),),
            )
            conn.execute(
                "UPDATE videos SET data = substr(data, 1, length(data) - 600) WHERE video_id = ?",
                (str(video_id),),
            )
    before = stored(db)
    removed = {key: data for key, data in before.items() if int(key[2]) in gone}
    assert removed
    assert all(data in file_bytes(db) for data in removed.values())
    sim.config.epoch = EPOCH

    report = await run_refresh(sim, db)

    assert report.finished
    assert report.removed == len(gone)
    blob = file_bytes(db)
    for (_, _, video_id), data in removed.items():
        assert data not in blob
        assert video_id.encode() not in blob
    # What is kept is as it was, and no rebuild is owed any more.
    assert stored(db) == {key: data for key, data in before.items() if key not in removed}
    with contextlib.closing(sqlite3.connect(db)) as conn:
        assert conn.execute("SELECT value FROM meta WHERE key = 'erase_pending'").fetchone() is None


async def test_the_waits_between_polls_double_from_one_second_on(
    sim: Simulator, tmp_path: Path
) -> None:
    # As --poll-wait's help says: the first wait as given, then doubling, at least 1 s (a short
    # first wait must not make every later poll as fast as the API answers).
    db = tmp_path / "h.db"
    await harvested(sim, db, USERS[:1])
    sim.config.task_processing_polls = 4
    time = FakeTime()
    async with make_client(sim) as client:
        with Store(db, create=False) as store:
            report = await refresh(
                client, store, poll_first_wait=0.25, sleep=time.sleep, clock=time
            )
    assert report.finished
    polls = sim.stats.compliance_by_path[TASK_STATUS_PATH]
    assert polls == 5
    assert time.sleeps == [0.25, 1.0, 2.0, 4.0, 8.0]


async def test_more_than_ten_thousand_ids_go_in_several_tasks(
    sim: Simulator, tmp_path: Path
) -> None:
    db = tmp_path / "h.db"
    names = ["big1_n4500", "big2_n4500", "big3_n4500"]
    await harvested(sim, db, names)
    sent = wire_ids(sim, names, 0)
    assert len(sent) == 13_500
    sim.config.epoch = 1
    report = await run_refresh(sim, db)
    assert report.finished
    assert [len(task.ids) for task in sim.tasks] == [MAX_TASK_IDS, 3_500]
    assert set().union(*(task.ids for task in sim.tasks)) == sent
    assert report.task_ids == tuple(task.task_id for task in sim.tasks)
    assert report.removed == len(sent - wire_ids(sim, names, 1)) > 0
    # Two creates, two polls, two downloads.
    assert report.requests == sim.stats.compliance_requests == 6


async def test_a_failed_task_is_made_again_once(sim: Simulator, tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    await harvested(sim, db, USERS[:3])
    sim.config.epoch = EPOCH
    sim.fail_tasks(1)
    report = await run_refresh(sim, db)
    assert report.finished
    assert report.failed_batches == 0
    first, second = sim.tasks
    assert first.ids == second.ids
    assert first.fails
    assert not second.fails
    assert report.task_ids == (first.task_id, second.task_id)
    assert report.removed == len(wire_ids(sim, USERS[:3], 0) - wire_ids(sim, USERS[:3], EPOCH))
    # create, status (Failed), create, status, download
    assert report.requests == sim.stats.compliance_requests == 5


async def test_a_batch_whose_tasks_keep_failing_is_left_whole(
    sim: Simulator, tmp_path: Path
) -> None:
    db = tmp_path / "h.db"
    await harvested(sim, db, USERS[:3])
    before = stored(db)
    sim.config.epoch = EPOCH
    sim.fail_tasks(2)
    report = await run_refresh(sim, db)
    assert report.outcome == "incomplete"
    assert report.failed_batches == 1
    assert "failed 2 times" in (report.detail or "")
    assert stored(db) == before  # nothing deleted on a Failed task's word
    assert len(sim.tasks) == 2
    # The next run resumes the same refresh and makes the batch a new task.
    again = await run_refresh(sim, db)
    assert again.finished
    assert again.resumed
    assert again.refresh_id == report.refresh_id
    assert len(sim.tasks) == 3
    assert again.removed > 0
    assert again.requests_total == report.requests + again.requests


async def test_a_stopped_refresh_polls_the_same_task_and_spares_later_observations(
    sim: Simulator, tmp_path: Path
) -> None:
    db = tmp_path / "h.db"
    await harvested(sim, db, USERS[:2])
    gone = wire_ids(sim, USERS[:2], 0) - wire_ids(sim, USERS[:2], EPOCH)
    assert gone
    sim.config.epoch = EPOCH
    sim.config.task_processing_seconds = 10**6  # stays Processing
    stopped = await run_refresh(sim, db, poll_timeout=100.0)
    assert stopped.outcome == "stopped: processing"
    assert "still processing" in (stopped.detail or "")
    [task] = sim.tasks
    # Meanwhile one of the videos the task will find gone is observed again (a later harvest
    # stored it after the refresh began): that observation was not checked and is kept.
    victim = min(gone)
    with Store(db, create=False) as store:
        data = next(d for _, v, d in store.iter_videos() if int(v) == victim)
        store.add_users(["later_n1"])
        store.commit_pages([PageCommit("later_n1", [(victim, data)], 1, False, 0)])
    sim.config.task_processing_seconds = 0.0
    report = await run_refresh(sim, db)
    assert report.finished
    assert report.resumed
    assert len(sim.tasks) == 1  # the same task, polled again
    assert report.task_ids == (task.task_id,)
    after = stored(db)
    assert {int(key[2]) for key in after if key[0] != "later_n1"} == wire_ids(
        sim, USERS[:2], 0
    ) - gone
    assert after[("later_n1", 1, str(victim))] == data


async def test_the_quota_bounds_a_refresh_and_the_ledger_counts_every_call(
    sim: Simulator, tmp_path: Path
) -> None:
    db = tmp_path / "h.db"
    names = ["q1_n6000", "q2_n6000"]  # 12,000 ids: two tasks
    await harvested(sim, db, names)
    harvest_requests = sim.stats.quota_used
    sim.config.epoch = 1
    # The wall clock of the harvest's ledger day, moved by the refresh's sleeps from there.
    time = FakeTime(start=wall_clock())
    quota = harvest_requests + 3  # two creates and one poll, then the day is spent
    async with make_client(sim) as client:
        with Store(db, create=False, clock=time) as store:
            first = await refresh(client, store, daily_quota=quota, sleep=time.sleep, clock=time)
            assert first.outcome == "stopped: quota"
            assert first.retry_at is not None
            assert first.requests == 3 == sim.stats.compliance_requests
            assert sim.stats.quota_used == quota  # never a request past the budget
            assert store.requests_on(_day(time.now)) == quota
            # The next UTC day: the same tasks are polled and downloaded.
            time.now = first.retry_at + 1
            second = await refresh(client, store, daily_quota=quota, sleep=time.sleep, clock=time)
            assert second.finished
            assert second.resumed
            assert len(sim.tasks) == 2
            # Both tasks polled again (a Completed status is not kept), both downloaded.
            assert second.requests == 4
            assert store.requests_on(_day(time.now)) == 4
            assert second.requests_total == 7 == sim.stats.compliance_requests


def wall_clock() -> float:
    import time

    return time.time()


def _day(now: float) -> str:
    from tiktok_repost_async.quota import utc_day

    return utc_day(now)


async def test_a_suspicious_answer_deletes_nothing_until_accepted(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    async with Simulator() as first:
        await harvested(first, db, USERS[:2])
    before = stored(db)
    # Another simulator never served these users: its tasks find every id gone.
    async with Simulator() as other:
        report = await run_refresh(other, db)
        assert report.outcome == "stopped: suspicious"
        assert "accept" in (report.detail or "")
        assert stored(db) == before
        accepted = await run_refresh(other, db, accept_removals=True)
        assert accepted.finished
        assert accepted.resumed
        assert accepted.removed == len(before) >= SUSPICIOUS_MIN
        assert stored(db) == {}
        assert len(other.tasks) == 1  # the same task's answer, downloaded again


async def test_a_small_store_is_not_wiped_by_an_answer_that_finds_everything_gone(
    tmp_path: Path,
) -> None:
    # A store of 40 videos, far under a hundred; a simulator that never served the user (a
    # server restarted without it) finds every id gone: suspicious, not acted on.
    db = tmp_path / "h.db"
    async with Simulator() as first:
        await harvested(first, db, ["dave_n40"])
        assert len(wire_ids(first, ["dave_n40"], 0)) == 40
    before = stored(db)
    async with Simulator() as other:
        report = await run_refresh(other, db)
        assert report.outcome == "stopped: suspicious"
        assert "40 of the 40 videos" in (report.detail or "")
        assert "all of them" in (report.detail or "")
        assert (report.removed, report.answered) == (0, 0)
        assert stored(db) == before


async def test_more_than_half_gone_is_suspicious_from_ten_ids_on(tmp_path: Path) -> None:
    # Two users; the checking simulator has served only the second, so every video of the
    # first is gone there: 20 of 35 gone (over half, ten or more) is suspicious, while 8 of 13
    # gone (over half, under ten) is an ordinary loss and is deleted.
    for first_user, second_user, is_suspicious in (
        ("ann_n20", "bob_n15", True),
        ("cat_n8", "dan_n5", False),
    ):
        db = tmp_path / f"{first_user}.db"
        async with Simulator() as first:
            await harvested(first, db, [first_user])
        async with Simulator() as other:
            await harvested(other, db, [second_user])
            kept = wire_ids(other, [second_user], 0)
            lost = {int(key[2]) for key in stored(db)} - kept
            assert len(lost) > len(kept)
            report = await run_refresh(other, db)
            if is_suspicious:
                assert report.outcome == "stopped: suspicious"
                assert "more than 50%" in (report.detail or "")
                assert {int(key[2]) for key in stored(db)} == kept | lost
            else:
                assert report.finished, report.detail
                assert report.removed == len(lost) < SUSPICIOUS_MIN
                assert {int(key[2]) for key in stored(db)} == kept


async def test_a_video_two_users_reposted_in_two_rounds_is_deleted_everywhere(
    tmp_path: Path,
) -> None:
    # ann reposted exactly what keep3 did (the simulator's same_reposts knob): every video of
    # keep3 is in two users' lists, and a panel's two rounds store each of them twice over.
    db = tmp_path / "h.db"
    names = ["ann_n300", USERS[3]]
    async with Simulator(same_reposts={"ann_n300": USERS[3]}) as sim:
        assert sim.ground_truth("ann_n300") == sim.ground_truth(USERS[3])
        for epoch in (0, 1):
            sim.config.epoch = epoch
            async with make_client(sim) as client:
                async for outcome in harvest(
                    client, names, store=db, daily_quota=10**6, new_round=epoch > 0
                ):
                    assert outcome.state is UserState.DONE
        before = stored(db)
        sim.config.epoch = EPOCH
        # From the simulator's own lists: what epoch 3 no longer has, of what rounds 1 and 2 saw.
        seen = wire_ids(sim, names, 0) | wire_ids(sim, names, 1)
        gone = seen - wire_ids(sim, names, EPOCH)
        copies = [key for key in before if int(key[2]) in gone]
        places = {
            video_id: {(user, round_) for user, round_, v in copies if v == video_id}
            for *_, video_id in copies
        }
        assert sum(len(where) == 4 for where in places.values()) > 1, "removed from 2x2 places"
        report = await run_refresh(sim, db)
    assert report.finished
    assert report.removed == len(gone)
    assert report.observations_removed == len(copies)
    after = stored(db)
    assert after == {key: data for key, data in before.items() if int(key[2]) not in gone}
    blob = file_bytes(db)
    assert [video_id for video_id in gone if str(video_id).encode() in blob] == []


async def test_users_now_gone_lose_all_their_data(sim: Simulator, tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    names = [*USERS[:4], "missing_a", "private_b", "empty_c"]
    await harvested(sim, db, names)
    sim.remove_user(USERS[1])
    sim.remove_user(USERS[2], how="private")
    before = stored(db)
    report = await run_refresh(sim, db, check_users=True)
    assert report.finished
    # Users with videos only: one request each.
    assert report.users_checked == 4
    assert report.users_removed == 2
    assert report.requests == 4 + sim.stats.compliance_requests
    after = stored(db)
    assert {key[0] for key in after} == {USERS[0], USERS[3]}
    assert {k: v for k, v in before.items() if k[0] in (USERS[0], USERS[3])} == after
    with Store(db, create=False) as store:
        assert store.user(USERS[1]).state is UserState.NOT_FOUND  # type: ignore[union-attr]
        assert store.user(USERS[2]).state is UserState.UNAVAILABLE  # type: ignore[union-attr]
        assert list(store.iter_pages(USERS[1])) == []
        assert store.user(USERS[1]).videos == 0  # type: ignore[union-attr]
    blob = file_bytes(db)
    assert all(data not in blob for key, data in before.items() if key[0] in USERS[1:3])


async def test_users_all_answered_not_found_delete_nothing_until_accepted(
    sim: Simulator, tmp_path: Path
) -> None:
    # An API bug that answers "not found" for every user must not wipe the store user by user.
    db = tmp_path / "h.db"
    names = USERS[:3]
    await harvested(sim, db, names)
    for name in names:
        sim.remove_user(name)
    before = stored(db)
    report = await run_refresh(sim, db, check_users=True)
    assert report.outcome == "stopped: suspicious"
    assert "3 of the 3 users" in (report.detail or "")
    assert "--accept-removals" in (report.detail or "")
    assert (report.users_checked, report.users_removed) == (0, 0)
    assert sim.stats.compliance_requests == 0  # stopped before the videos' tasks
    assert stored(db) == before
    with Store(db, create=False) as store:
        assert {store.user(name).state for name in names} == {UserState.DONE}  # type: ignore[union-attr]
    accepted = await run_refresh(sim, db, check_users=True, accept_removals=True)
    assert accepted.finished
    assert accepted.resumed
    assert (accepted.users_checked, accepted.users_removed) == (3, 3)
    assert stored(db) == {}


async def test_a_stop_before_anything_is_sent_spends_nothing(
    sim: Simulator, tmp_path: Path
) -> None:
    db = tmp_path / "h.db"
    await harvested(sim, db, USERS[:1])
    spent = sim.stats.quota_used
    async with make_client(sim) as client:
        with Store(db, create=False) as store:
            refresher = Refresher(client, store)
            refresher.stop()
            report = await refresher.run()
            assert report.outcome == "stopped: requested"
            assert store.requests_on() == spent
            assert not store.holds_run_lock
    assert sim.stats.compliance_requests == 0


def test_a_schema_3_store_gains_the_refresh_tables(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    with Store(db, fields=["id"], max_count=100) as store:
        store.add_users(["alice"])
        store.commit_page("alice", [(7, b'{"id":7}')], next_cursor=1, has_more=False, requests=1)
    with contextlib.closing(sqlite3.connect(db)) as conn, conn:
        for table in ("refresh_ids", "refresh_tasks", "refreshes"):
            conn.execute(f"DROP TABLE {table}")
        conn.execute("UPDATE meta SET value = '3' WHERE key = 'schema_version'")
    with Store(db, create=False) as store:
        assert list(store.iter_videos()) == [("alice", "7", b'{"id":7}')]
        assert store.refreshes() == []
        record, started = store.start_refresh("test")
        assert started
        assert record.checked == 1
    with contextlib.closing(sqlite3.connect(db)) as conn, conn:
        version = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    assert version == (str(SCHEMA_VERSION),) == ("4",)


def test_the_clock_counts_from_the_oldest_page_then_from_the_last_refresh(
    tmp_path: Path,
) -> None:
    day = 86_400.0
    now = [1_800_000_000.0]
    with Store(tmp_path / "h.db", fields=["id"], max_count=100, clock=lambda: now[0]) as store:
        assert store.refresh_due(15) is None  # nothing stored, nothing due
        store.add_users(["alice"])
        store.commit_page("alice", [(7, b'{"id":7}')], next_cursor=1, has_more=False, requests=1)
        assert store.refresh_due(15) == now[0] + 15 * day
        now[0] += 20 * day
        store.commit_page("alice", [(8, b'{"id":8}')], next_cursor=2, has_more=False, requests=1)
        assert store.refresh_due(15) == now[0] - 5 * day  # the oldest page decides: overdue
        record, _ = store.start_refresh("test")
        store.end_refresh(record.id, "stopped: quota")
        assert store.refresh_due(30) == now[0] + 10 * day  # an unfinished refresh counts not
        record, _ = store.start_refresh("test")
        store.end_refresh(record.id, "finished")
        assert store.refresh_due(30) == now[0] + 30 * day


async def test_no_export_or_diff_made_after_a_refresh_holds_a_removed_video(
    sim: Simulator, tmp_path: Path
) -> None:
    # Two rounds, the second stopping at known videos (so its export is completed from round
    # 1), then a refresh: no export of any round, in any format, nor the diff, names a removed
    # video, although round 2's completion reaches back into round 1.
    db = tmp_path / "h.db"
    names = USERS[:4]
    await harvested(sim, db, names)
    sim.config.epoch = 1
    async with make_client(sim) as client:
        async for _ in harvest(
            client, names, store=db, daily_quota=10**6, new_round=True, stop_at_known=True
        ):
            pass
    before = {int(key[2]) for key in stored(db)}
    sim.config.epoch = EPOCH
    report = await run_refresh(sim, db)
    assert report.finished
    gone = before - {int(key[2]) for key in stored(db)}
    assert gone, "the simulator must delete some stored videos by this epoch"
    assert gone <= before - wire_ids(sim, names, EPOCH)  # only what TikTok no longer serves
    exported: dict[str, set[int]] = {}
    with Store(db, create=False) as store:
        for round_ in (None, 1, 2):
            for fmt in ("jsonl", "csv", "parquet"):
                for ids_only in (False, True):
                    path = tmp_path / f"out-{round_}-{ids_only}.{fmt}"
                    export_to_path(store, path, fmt, round=round_, ids_only=ids_only)
                    exported[path.name] = _ids_in(path, fmt)
        changed = {int(change.video_id) for change in diff_rounds(store, 1, 2)}
    for name, ids in exported.items():
        assert ids, name
        assert not ids & gone, name
    assert changed
    assert not changed & gone


def _ids_in(path: Path, fmt: str) -> set[int]:
    """Return every id the export at ``path`` names, read back as its readers would."""
    if fmt == "jsonl":
        return {int(json.loads(line)["id"]) for line in path.read_text().splitlines()}
    if fmt == "csv":
        with path.open(newline="") as file:
            return {int(row["id"]) for row in csv.DictReader(file)}
    import pyarrow.parquet as pq

    return {int(value) for value in pq.read_table(path).column("id").to_pylist()}
