"""``tiktok-reposts status``: what a store holds, what is left, and when the quota lets it finish.

`status_report` gathers a typed `StatusReport`; the text table and ``--json`` both render it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import TYPE_CHECKING, Any, Final

import msgspec

from ..models import VIDEO_FIELDS
from ..quota import DEFAULT_DAILY_LIMIT, utc_day
from ..store import FINAL_STATES, REFRESH_DAYS, RefreshRecord, RunRecord, StoreLike, UserState
from ._common import DEFAULT_DB, ERASE_OWED, EXIT_FAILED, EXIT_OK, PROG, stdout
from ._parser import add_ledger, add_refresh_days, age_text, int_in
from ._stores import open_existing, open_shared_ledger
from .plan import QuotaPlan, estimate_plan, pages_seen

if TYPE_CHECKING:
    from ..ledger import Ledger

__all__ = [
    "DESCRIPTION",
    "FailedUser",
    "IncompleteUser",
    "RefreshClock",
    "RefreshRow",
    "RequestsToday",
    "RoundRow",
    "RunRow",
    "ScheduleRow",
    "SkippedLine",
    "SkippedLines",
    "StatusReport",
    "add_arguments",
    "needs_a_person",
    "run",
    "status_report",
    "status_text",
]

DESCRIPTION = (
    "Show what a store holds, what is left to do, and on which day the daily quota lets the"
    " harvest finish."
)

# The runs status shows: the latest ones say how the store is going; all are in the store.
_RUNS_SHOWN: Final = 10
# Skipped lines listed with --limit 0 at most: the counts by reason cover the rest.
_SKIPPED_ALL: Final = 10_000


class FailedUser(msgspec.Struct, frozen=True):
    """One failed user: its last error, and where its walk resumes."""

    username: str
    error: str | None
    cursor: int
    videos: int
    requests: int


class IncompleteUser(msgspec.Struct, frozen=True):
    """One user a guard cut short: the guard, and where ``--retry-incomplete`` resumes it."""

    username: str
    reason: str | None
    cursor: int
    videos: int
    requests: int


class RequestsToday(msgspec.Struct, frozen=True):
    """Today's (UTC) research requests: what this store sent, and what the quota leaves."""

    day: str
    #: Requests this store's ledger counts for today.
    spent: int
    #: What today's quota leaves: 0 once the API said it is spent (collaborators on the same
    #: project draw on it too), else the quota less what the organisation spent (with a shared
    #: ledger) or ``spent`` (without). The plan's ``left_today``.
    left: int
    daily_quota: int
    #: True when the last run today was stopped by the API's word that the quota is spent.
    quota_spent_by_api: bool = False
    #: The organisation's shared ledger (its path, or its URL with the password masked), or
    #: None when the store keeps its own.
    ledger: str | None = None
    #: Requests the shared ledger counts for today, every store of the organisation together.
    organisation_spent: int | None = None
    #: The shared ledger's count for today per source (``host:/path/to/store``).
    by_source: dict[str, int] = msgspec.field(default_factory=dict)


class RoundRow(msgspec.Struct, frozen=True):
    """One round of a panel."""

    round: int
    started_at: str
    stop_at_known: bool
    complete: bool
    users: dict[str, int]
    partial: int
    videos: int
    requests: int
    #: False while a run on the round has not read its input to the end.
    input_read: bool


class RunRow(msgspec.Struct, frozen=True):
    """One harvest run."""

    run: int
    started_at: str
    ended_at: str | None
    outcome: str | None
    version: str
    fields: list[str]
    max_count: int
    requests: int
    pages: int
    videos: int


class SkippedLine(msgspec.Struct, frozen=True):
    """One input line the last run skipped."""

    line: int
    text: str
    reason: str


class SkippedLines(msgspec.Struct, frozen=True):
    """The input lines the last run skipped: counts by reason, and the first few."""

    total: int
    by_reason: dict[str, int]
    lines: list[SkippedLine]


class RefreshRow(msgspec.Struct, frozen=True):
    """One refresh: when, what it checked and removed, what it spent, its tasks."""

    refresh: int
    started_at: str
    ended_at: str | None
    #: finished, incomplete, stopped: <reason>, error: <type>; None while running or killed.
    outcome: str | None
    checked: int
    #: Of the checked ids, those whose task's answer was applied (all once finished).
    answered: int
    removed: int
    observations_removed: int
    users_checked: int
    users_removed: int
    requests: int
    task_ids: list[str]


class RefreshClock(msgspec.Struct, frozen=True):
    """Where the store stands with TikTok's duty to refresh: the last refresh, the next one."""

    every_days: int
    #: The latest refresh, whatever its outcome (None: never refreshed).
    last: RefreshRow | None
    #: When the last finished refresh began (None: none finished).
    last_finished: str | None
    #: When the next refresh is due, UTC (None: nothing stored).
    due: str | None
    overdue: bool
    #: Content a refresh deleted may still lie in the store's files (a reader held off its
    #: erasure): the next refresh erases it first.
    erase_owed: bool = False


def _refresh_row(record: RefreshRecord) -> RefreshRow:
    return RefreshRow(
        record.id,
        record.started_at,
        record.ended_at,
        record.outcome,
        record.checked,
        record.answered,
        record.removed,
        record.observations_removed,
        record.users_checked,
        record.users_removed,
        record.requests,
        list(record.task_ids),
    )


def _refresh_clock(store: StoreLike, days: int, now: float) -> RefreshClock:
    refreshes = store.refreshes()
    finished = next((r.started_at for r in refreshes if r.finished), None)
    due = store.refresh_due(days)
    return RefreshClock(
        every_days=days,
        last=_refresh_row(refreshes[0]) if refreshes else None,
        last_finished=finished,
        due=None if due is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(due)),
        overdue=due is not None and due <= now,
        erase_owed=store.erase_owed(),
    )


class ScheduleRow(msgspec.Struct, frozen=True):
    """When the next round is due, under the cadence ``harvest --new-round-every`` recorded."""

    #: The cadence as the option takes it (``7d``), and in seconds.
    every: str
    every_seconds: float
    #: The latest round, when it started, and whether a run would resume it.
    round: int
    round_started_at: str
    round_finished: bool
    #: When the next round is due (UTC, ISO 8601): the latest round's start plus the cadence.
    next_due: str
    #: True once the next round is late enough for a person to look (see `RoundSchedule`).
    overdue: bool
    #: True once the next round's time has come (the next scheduled run starts it).
    due_now: bool = False


class StatusReport(msgspec.Struct, frozen=True, kw_only=True):
    """Hold everything ``status`` shows; ``to_json`` is what ``status --json`` prints."""

    store: str
    fields: list[str]
    max_count: int
    #: Users per state (every state's value), and "total".
    users: dict[str, int]
    #: Videos of each user's latest whole list: what ``export`` writes without ``--round``.
    videos: int
    #: Observations of videos stored over every round (one per video and round).
    observations: int
    requests: RequestsToday
    failed: list[FailedUser]
    incomplete: list[IncompleteUser]
    rounds: list[RoundRow]
    runs: list[RunRow]
    runs_total: int
    skipped: SkippedLines
    plan: QuotaPlan
    #: The refresh's clock (TikTok's terms): the last refresh and when the next is due.
    refresh: RefreshClock | None = None
    #: None unless a harvest ran with ``--new-round-every``.
    schedule: ScheduleRow | None = None

    def to_json(self) -> dict[str, Any]:
        """Return the report as plain JSON values (dicts, lists, str, int, float, None)."""
        built: dict[str, Any] = msgspec.to_builtins(self)
        return built


def _plan(store: StoreLike, *, daily_quota: int, left_today: int, now: float) -> QuotaPlan:
    finished = finished_requests = users_left = fetched_left = 0
    # One pass over the users: the store has no aggregate of pages by state.
    for record in store.iter_users():
        if record.state in FINAL_STATES:
            finished += 1
            finished_requests += pages_seen(record.pages)
        elif record.state is UserState.DROPPED:
            continue  # out of its round: no run walks it unless its input names it again
        else:
            users_left += 1
            fetched_left += record.pages
    basis_round = None
    if not finished and users_left:
        # A new round none of whose users has finished yet (just started, or stopped by the
        # silent empty): the latest complete round's cost is the best guess there is, a timer
        # running each round with the same options.
        for earlier in reversed(store.rounds()[:-1]):
            if earlier.complete:
                walked = sum(n for state, n in earlier.users.items() if state in FINAL_STATES)
                if walked:
                    finished, finished_requests = walked, earlier.requests
                    basis_round = earlier.number
                break
    return estimate_plan(
        # A round whose input is not read to the end will name more users than it holds yet.
        users_left=users_left + store.awaited_users(),
        finished_users=finished,
        finished_requests=finished_requests,
        fetched_left=fetched_left,
        daily_quota=daily_quota,
        spent_today=daily_quota - left_today,
        now=now,
        basis_round=basis_round,
    )


def _spent_by_api(last_run: RunRecord | None, day: str) -> bool:
    # The API said today's quota is spent: collaborators on the same project draw on it too, so
    # the ledger of this store may read less than the budget while nothing is left.
    return (
        last_run is not None
        and last_run.outcome == "stopped: quota"
        and (last_run.ended_at or "")[:10] == day
    )


def status_report(
    store: StoreLike,
    *,
    daily_quota: int,
    limit: int | None,
    now: float | None = None,
    refresh_days: int = REFRESH_DAYS,
    ledger: Ledger | None = None,
) -> StatusReport:
    """Return what ``status`` shows: users per state, videos, requests, problems, quota plan.

    :param store: the store to describe.
    :param daily_quota: the research requests per UTC day that "left" and the plan count with.
    :param limit: failed and incomplete users and skipped lines listed at most (None: all).
    :param now: the current time, epoch seconds (None: the clock's); it decides "today".
    :param refresh_days: the days between two refreshes (TikTok's terms) the clock counts.
    :param ledger: the organisation's shared ledger: "left" and the plan count with what it
        leaves of the day (None, or a store's own: this store's count alone).
    """
    now = time.time() if now is None else now
    counts = store.state_counts()
    day = utc_day(now)
    spent = store.requests_on(day)
    shared = ledger if ledger is not None and ledger.shared else None
    organisation = None if shared is None else shared.spent(day)
    skipped = store.skipped_counts()
    runs = store.runs(_RUNS_SHOWN if limit is None else max(limit, _RUNS_SHOWN))
    by_api = _spent_by_api(runs[0] if runs else None, day)
    if organisation is not None and organisation >= daily_quota:
        # A run stopped by the shared ledger's refusal ends "stopped: quota" too; only below
        # the quota was it the API's word.
        by_api = False
    left = 0 if by_api else max(daily_quota - (spent if organisation is None else organisation), 0)
    return StatusReport(
        store=str(store.path),
        fields=list(store.fields),
        max_count=store.max_count,
        users={
            **{state.value: counts[state] for state in UserState},
            "total": sum(counts.values()),
        },
        videos=store.latest_video_count(),
        observations=store.video_count(),
        requests=RequestsToday(
            day=day,
            spent=spent,
            left=left,
            daily_quota=daily_quota,
            quota_spent_by_api=by_api,
            ledger=None if shared is None else shared.label,
            organisation_spent=organisation,
            by_source={} if shared is None else shared.breakdown(day),
        ),
        failed=[
            FailedUser(r.username, r.error, r.cursor, r.videos, r.requests)
            for r in store.failed_users(limit)
        ],
        incomplete=[
            IncompleteUser(r.username, r.error, r.cursor, r.videos, r.requests)
            for r in store.users_in(UserState.INCOMPLETE, limit)
        ],
        rounds=[
            RoundRow(
                r.number,
                r.started_at,
                r.stop_at_known,
                r.complete,
                {state.value: r.users[state] for state in UserState},
                r.partial,
                r.videos,
                r.requests,
                r.input_read,
            )
            for r in store.rounds()
        ],
        runs=[
            RunRow(
                run.id,
                run.started_at,
                run.ended_at,
                run.outcome,
                run.version,
                list(run.fields),
                run.max_count,
                run.requests,
                run.pages,
                run.videos,
            )
            for run in runs
        ],
        runs_total=store.run_count(),
        skipped=SkippedLines(
            total=sum(skipped.values()),
            by_reason=skipped,
            lines=[
                SkippedLine(line, raw, reason)
                for line, raw, reason in store.skipped(_SKIPPED_ALL if limit is None else limit)
            ],
        ),
        plan=_plan(store, daily_quota=daily_quota, left_today=left, now=now),
        refresh=_refresh_clock(store, refresh_days, now),
        schedule=_schedule(store, now),
    )


def _stamp(when: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when))


def _schedule(store: StoreLike, now: float) -> ScheduleRow | None:
    schedule = store.round_schedule()
    if schedule is None:
        return None
    return ScheduleRow(
        every=age_text(schedule.every),
        every_seconds=schedule.every,
        round=schedule.round,
        round_started_at=_stamp(schedule.started),
        round_finished=schedule.finished,
        next_due=_stamp(schedule.due),
        overdue=schedule.overdue(now),
        due_now=now >= schedule.due,
    )


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _plan_lines(plan: QuotaPlan) -> list[str]:
    if not plan.users_left:
        return ["plan      nothing left to harvest: every user has a final state"]
    users = f"{plan.users_left:,} user{'s' if plan.users_left > 1 else ''} left"
    if plan.requests_left is None or plan.pages_per_user is None:
        return [
            f"plan      {users}; requests left unknown until a user has finished (the estimate"
            " rests on what finished users cost)"
        ]
    when = (
        f"fits in today's {plan.left_today:,} left: done today"
        if not plan.days_left
        else f"{plan.left_today:,} left today, then {plan.days_left:,} more"
        f" day{'s' if plan.days_left > 1 else ''} at {plan.daily_quota:,} a day: done about"
    )
    return [
        f"plan      {users}, ~{plan.requests_left:,} requests"
        f" ({plan.pages_per_user:g} per user, the mean of {plan.finished_users:,} finished"
        + (f" in round {plan.basis_round}" if plan.basis_round is not None else "")
        + (
            # Else "5 users, 2 per user" beside "~5 requests" does not add up.
            f", less {plan.fetched_left:,} page{'s' if plan.fetched_left != 1 else ''} fetched"
            " already)"
            if plan.fetched_left
            else ")"
        ),
        f"          {when} {plan.finish_day} (UTC)",
    ]


def _requests_lines(requests: RequestsToday) -> list[str]:
    by_api = " (the API said today's quota is spent)" if requests.quota_spent_by_api else ""
    if requests.organisation_spent is None:
        return [
            f"requests  {requests.spent:,} spent today ({requests.day} UTC),"
            f" {requests.left:,} left of {requests.daily_quota:,}{by_api}"
        ]
    lines = [
        f"requests  {requests.spent:,} spent today by this store ({requests.day} UTC);"
        f" {requests.organisation_spent:,} by the organisation, {requests.left:,} left of"
        f" {requests.daily_quota:,}{by_api}",
        f"ledger    {requests.ledger} (shared)",
    ]
    lines += [f"  {n:>9,}  {source}" for source, n in requests.by_source.items()]
    return lines


def _schedule_lines(schedule: ScheduleRow | None) -> list[str]:
    if schedule is None:
        return []
    head = f"schedule  a new round every {schedule.every} (harvest --new-round-every):"
    due = schedule.next_due.replace("T", " ").replace("Z", " UTC")
    if schedule.overdue:
        why = (
            f"round {schedule.round} is not finished"
            if not schedule.round_finished
            else "no harvest has started it"
        )
        return [head, f"          round {schedule.round + 1} was due {due}: OVERDUE ({why})"]
    if not schedule.round_finished:
        return [head, f"          round {schedule.round} in progress; the next is due {due}"]
    if schedule.due_now and schedule.round_finished:
        # Past its time but not yet overdue: the next run of the timer starts it.
        return [head, f"          next round due {due}: now (the next scheduled run starts it)"]
    return [head, f"          next round due {due}"]


def _table_lines(report: StatusReport) -> list[str]:
    lines: list[str] = []
    if len(report.rounds) > 1:
        # The heads take the widths of the rows' own fields, so that each stands over its column.
        lines += [
            "",
            "rounds",
            f"  {'round':>5}  {'started':<20}  {'done':>5} {'not_found':>10} {'unavailable':>12}"
            f" {'failed':>7} {'incomplete':>11} {'pending':>8} {'dropped':>8} {'videos':>8}"
            f" {'requests':>9}  how",
        ]
        for panel in report.rounds:
            users = panel.users
            how = "complete" if panel.complete else "in progress"
            if not panel.input_read:
                how += " (its input not read to the end)"
            if panel.stop_at_known:
                how += f", stop-at-known ({panel.partial:,} partial)"
            lines.append(
                f"  {panel.round:>5}  {panel.started_at:<20}  {users['done']:>5,}"
                f" {users['not_found']:>10,} {users['unavailable']:>12,} {users['failed']:>7,}"
                f" {users['incomplete']:>11,} {users['pending']:>8,} {users['dropped']:>8,}"
                f" {panel.videos:>8,}"
                f" {panel.requests:>9,}  {how}"
            )
    if report.runs:
        lines += [
            "",
            "runs (newest first)",
            f"  {'run':>5}  {'started':<20}  {'ended':<20} {'requests':>9} {'pages':>6}"
            f" {'videos':>7}  how",
        ]
        for run in report.runs:
            ended = run.ended_at or "-"
            how = run.outcome or "running, or killed"
            lines.append(
                f"  {run.run:>5}  {run.started_at:<20}  {ended:<20} {run.requests:>9,}"
                f" {run.pages:>6,} {run.videos:>7,}  {how} (v{run.version})"
            )
        more = report.runs_total - len(report.runs)
        if more > 0:
            lines.append(f"  … and {more:,} older runs (status --json --limit N shows more)")
    return lines


def _problem_lines(report: StatusReport) -> list[str]:
    lines: list[str] = []
    listed: list[tuple[str, list[tuple[str, str | None]], str]] = [
        (
            "failed users and their last error:",
            [(f.username, f.error) for f in report.failed],
            "failed",
        ),
        (
            "incomplete users (--retry-incomplete walks them on) and the guard that cut them:",
            [(f.username, f.reason) for f in report.incomplete],
            "incomplete",
        ),
    ]
    for title, users, state in listed:
        if not users:
            continue
        width = max(len(name) for name, _ in users)
        lines += ["", title]
        lines += [f"  {name:<{width}}  {_clip(why or '', 300)}" for name, why in users]
        more = report.users[state] - len(users)
        if more > 0:
            lines.append(f"  … and {more:,} more (--limit 0 lists all)")
    skipped = report.skipped
    if skipped.total:
        lines += ["", f"skipped input lines (last run): {skipped.total:,}"]
        lines += [f"  {reason:<24} {n:>7,}" for reason, n in skipped.by_reason.items()]
        lines += [
            f"  line {s.line}: {_clip(repr(s.text), 60)}  ({s.reason})" for s in skipped.lines
        ]
        more = skipped.total - len(skipped.lines)
        if more > 0:
            lines.append(f"  … and {more:,} more lines")
    return lines


def _videos_line(report: StatusReport) -> str:
    if len(report.rounds) < 2:
        return f"videos    {report.videos:,}"
    return (
        f"videos    {report.videos:,} (each user's latest whole list; {report.observations:,}"
        f" observations in {len(report.rounds):,} rounds)"
    )


def _refresh_lines(report: StatusReport) -> list[str]:
    clock = report.refresh
    if clock is None:
        return []
    every = f"every {clock.every_days} days"
    last = clock.last
    if last is None:
        lines = ["refresh   never"]
    else:
        how = last.outcome or "running, or killed (the next refresh resumes it)"
        lines = [
            f"refresh   #{last.refresh} begun {last.started_at}, {how}:"
            + (
                f" {last.checked:,} ids checked"
                if last.answered == last.checked
                else f" {last.answered:,} of {last.checked:,} ids answered so far"
            )
            + f", {last.removed:,} removed"
            + (
                f", {last.users_checked:,} user{'' if last.users_checked == 1 else 's'}"
                f" re-checked, {last.users_removed:,} removed"
                if last.users_checked
                else ""
            )
            + f"; {last.requests:,} request{'' if last.requests == 1 else 's'},"
            f" {len(last.task_ids):,}" + (" task" if len(last.task_ids) == 1 else " tasks")
        ]
    if clock.due is None:
        lines.append(f"          nothing stored to refresh ({every})")
    elif clock.overdue:
        lines.append(
            f"          OVERDUE since {clock.due} ({every}, TikTok's terms):"
            f" {PROG} refresh --db {report.store}"
        )
    else:
        lines.append(f"          next due {clock.due} ({every})")
    if clock.erase_owed:
        lines.append(f"          {ERASE_OWED}")
    return lines


def status_text(report: StatusReport) -> str:
    """Return the report as the text table ``status`` prints."""
    users = report.users
    requests = report.requests
    fields = report.fields
    fields_text = f"all {len(fields)}" if set(fields) == set(VIDEO_FIELDS) else ", ".join(fields)
    lines = [
        f"store     {report.store}",
        f"fields    {fields_text}; max_count {report.max_count}",
        "",
        "state          users",
    ]
    lines += [f"{state:<12} {users[state]:>7,}" for state in (s.value for s in UserState)]
    lines += [
        f"{'total':<12} {users['total']:>7,}",
        "",
        _videos_line(report),
        *_requests_lines(requests),
        *_plan_lines(report.plan),
        *_refresh_lines(report),
        *_schedule_lines(report.schedule),
    ]
    return "\n".join(lines + _table_lines(report) + _problem_lines(report))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the status command's arguments to ``parser``."""
    parser.add_argument("--db", default=DEFAULT_DB, help="the store (%(default)s)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--daily-quota",
        type=int_in(1),
        default=DEFAULT_DAILY_LIMIT,
        metavar="N",
        help=f"the daily quota that 'left today' and the plan count with ({DEFAULT_DAILY_LIMIT:,})",
    )
    add_ledger(parser)
    parser.add_argument(
        "--check",
        action="store_true",
        help="for a monitoring job: exit 1, with one line each on standard error, when something"
        " needs a person (failed users; a last run stopped by an API that stayed down, by a"
        " repeat round coming back empty, by a shared ledger that could not book, or by an"
        " error, or refused its credentials; a round overdue under the cadence harvest"
        " --new-round-every recorded; a refresh overdue, or the last one stopped on a"
        " suspicious answer, incomplete or ended by an error; deleted data a refresh could not"
        " yet erase from the store's files)",
    )
    add_refresh_days(parser)
    parser.add_argument(
        "--limit",
        type=int_in(0),
        default=20,
        metavar="N",
        help="failed users and skipped lines listed at most; 0 lists all (%(default)s)",
    )


def run(args: argparse.Namespace) -> int:
    """Run ``status``; return the exit status."""
    with open_existing(args.db) as store:
        ledger = open_shared_ledger(args.ledger, args.db, create=False)
        try:
            report = status_report(
                store,
                daily_quota=args.daily_quota,
                limit=args.limit if args.limit else None,
                refresh_days=args.refresh_days,
                ledger=ledger,
            )
        finally:
            if ledger is not None:
                ledger.close()
    out = stdout()
    if args.json:
        out.write(json.dumps(report.to_json(), ensure_ascii=False, indent=2) + "\n")
    else:
        out.write(status_text(report) + "\n")
    out.flush()
    if args.check and (problems := needs_a_person(report)):
        for problem in problems:
            print(f"needs a person: {problem}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


# How a last run may end that no later run of the same command cures by itself.
_ALARMING_STOPS: Final = {
    "stopped: unhealthy": "the API answered nothing but outage failures for an hour",
    "stopped: empty": "a repeat round's users kept coming back empty (the API's silent empty?)",
    # A scheduled run retries by itself, but a ledger that cannot book (its server down, a full
    # disk, a file locked by another program) stays so until someone looks.
    "stopped: ledger": "the shared ledger could not book a request, so nothing more was sent",
    # Expired or revoked access: every scheduled run after it is refused the same way.
    "refused: authentication": "the API refused the credentials (or the base URL is not the"
    " API's) before the run began; no later run can succeed until they are fixed",
}


def needs_a_person(report: StatusReport) -> list[str]:
    """Return one line for each thing in ``report`` that a person should look at, if any."""
    problems: list[str] = []
    failed = report.users.get(UserState.FAILED.value, 0)
    if failed:
        problems.append(
            f"{failed:,} failed user{'s' if failed > 1 else ''} (status lists them with the error)"
        )
    if report.runs:
        last = report.runs[0]
        outcome = last.outcome or ""
        if outcome in _ALARMING_STOPS:
            problems.append(f"run {last.run} {outcome}: {_ALARMING_STOPS[outcome]}")
        elif outcome.startswith("error"):
            problems.append(f"run {last.run} ended in an {outcome}")
    clock = report.refresh
    if clock is not None:
        if clock.overdue:
            problems.append(
                f"a refresh is overdue since {clock.due} (every {clock.every_days} days, TikTok's"
                f" terms): {PROG} refresh --db {report.store}"
            )
        if clock.erase_owed:
            problems.append(f"{ERASE_OWED} ({PROG} refresh --db {report.store})")
        last_refresh = clock.last
        outcome = (last_refresh.outcome or "") if last_refresh is not None else ""
        if last_refresh is not None and (
            outcome in ("incomplete", "stopped: suspicious") or outcome.startswith("error")
        ):
            problems.append(f"refresh {last_refresh.refresh} ended {outcome}")
    schedule = report.schedule
    if schedule is not None and schedule.overdue:
        late = (
            f"round {schedule.round}, started {schedule.round_started_at}, is not finished"
            if not schedule.round_finished
            else "no harvest has started it (is the timer running?)"
        )
        problems.append(
            f"round {schedule.round + 1} is overdue: due {schedule.next_due} under"
            f" --new-round-every {schedule.every}, and {late}"
        )
    return problems
