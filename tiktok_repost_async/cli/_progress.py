"""The harvest's progress: one line of users, videos, quota, rate and ETA, redrawn or logged."""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from ..store import UserState
from ._console import Console, logger
from .plan import estimate_plan

if TYPE_CHECKING:
    from ..harvester import HarvestProgress

__all__ = ["LOG_INTERVAL", "Display", "duration", "render_progress"]

# Four redraws a second look live without costing the harvest anything measurable.
_REDRAW_SECONDS: Final = 0.25
# The request rate shown is measured over this many recent seconds.
_RATE_WINDOW: Final = 10.0
#: Without a terminal, a progress line is logged at most this often by default, and, while
#: nothing changes (a wait for the quota), only once every _QUIET_LOG_SECONDS.
LOG_INTERVAL: Final = 10.0
_QUIET_LOG_SECONDS: Final = 600.0


def duration(seconds: float) -> str:
    """Return a short human duration: ``42s``, ``3m05s``, ``5h07m``, ``3d04h``."""
    total = max(round(seconds), 0)
    if total < 60:
        return f"{total}s"
    minutes, secs = divmod(total, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


def _total(progress: HarvestProgress, input_lines: int | None) -> tuple[int | None, bool]:
    """Return the users this run walks and whether that is an estimate."""
    if progress.total is not None:
        return progress.total, False
    if input_lines is None:
        return None, False
    # Every line counts as a user to walk until the harvest has found it to be a bad line, a
    # duplicate or a user finished in an earlier run.
    skipped = progress.invalid + progress.duplicates + progress.already_final
    return max(input_lines - skipped, progress.queued), True


def _eta(progress: HarvestProgress, total: int | None, rate: float | None, now: float) -> str:
    done = progress.done
    if total is None or not done or not rate:
        return "--"
    left = max(total - done, 0)
    if not left:
        return "0s"
    # Requests per user so far, in-flight ones included: a slight overestimate early on.
    plan = estimate_plan(
        users_left=left,
        finished_users=done,
        finished_requests=progress.requests,
        fetched_left=0,
        daily_quota=progress.quota_limit or 1,
        spent_today=progress.quota_spent,
        now=now,
    )
    needed = plan.requests_left or 0
    if progress.quota_limit and plan.days_left:
        # The day's quota binds: the days it takes say more than the seconds the rate would.
        days = plan.days_left
        return f"~{days} day{'s' if days > 1 else ''}, done about {plan.finish_day}"
    return duration(needed / rate)


def render_progress(
    progress: HarvestProgress,
    *,
    now: float,
    rate: float | None,
    input_lines: int | None = None,
) -> str:
    """Return one line: users done of total, videos, today's quota, request rate, ETA or wait.

    :param progress: the harvest's live counters.
    :param now: the current time, epoch seconds (for waits and the ETA's finishing date).
    :param rate: the requests per second of the last few seconds, None until measurable.
    :param input_lines: the input's line count, while the harvest is still reading it.
    """
    total, estimated = _total(progress, input_lines)
    users = f"users {progress.done:,}"
    if total is not None:
        users += f"/{'~' if estimated else ''}{total:,}"
    failed = progress.finished[UserState.FAILED]
    incomplete = progress.finished[UserState.INCOMPLETE]
    if failed or incomplete:
        notes = [f"{failed:,} failed"] if failed else []
        notes += [f"{incomplete:,} incomplete"] if incomplete else []
        users += f" ({', '.join(notes)})"
    parts = [
        users,
        f"{progress.videos:,} videos",
        f"requests today {progress.quota_spent:,}/{progress.quota_limit:,}",
    ]
    if progress.waiting_until is not None:
        until = time.strftime("%H:%M", time.gmtime(progress.waiting_until))
        wait = duration(progress.waiting_until - now)
        parts.append(f"quota spent: waiting until {until} UTC ({wait})")
    elif progress.probe_at is not None:
        why = "429s in a row" if progress.probe_for == "limit" else "API unhealthy"
        parts.append(f"{why}: pausing, next probe in {duration(progress.probe_at - now)}")
    else:
        parts.append("-- req/s" if rate is None else f"{rate:.1f} req/s")
        parts.append(f"ETA {_eta(progress, total, rate, now)}")
    return " | ".join(parts)


class Display:
    """Refresh the progress of a harvest: redrawn on a terminal, logged now and then elsewhere.

    :param progress: the harvest's live counters.
    :param console: where to draw or log.
    :param input_lines: returns the input's line count once known (counted on a thread).
    :param log_interval: without a terminal, the seconds between two logged lines.
    """

    def __init__(
        self,
        progress: HarvestProgress,
        console: Console,
        *,
        input_lines: Callable[[], int | None],
        log_interval: float,
    ) -> None:
        self.progress = progress
        self.console = console
        self.input_lines = input_lines
        self.log_interval = log_interval
        self._samples: deque[tuple[float, int]] = deque()
        self._logged_at = -math.inf
        self._logged: tuple[int, int, int, float | None, float | None] | None = None

    def rate(self) -> float | None:
        """Return the requests per second of the last few seconds, or of the run so far while
        the display's own window is under a second old; None until a request was sent."""
        now = time.monotonic()
        samples = self._samples
        # Requests sent, not booked: a request paid ahead is booked with the page before it,
        # up to a worker's worth early, which showed 13 req/s under a limit of 10 at the start.
        samples.append((now, self.progress.sent))
        while len(samples) > 2 and samples[1][0] <= now - _RATE_WINDOW:
            samples.popleft()
        elapsed = now - samples[0][0]
        if elapsed >= 1.0:
            return (samples[-1][1] - samples[0][1]) / elapsed
        # The window is younger than a second: the display began sampling only now, while the
        # run may have sent for seconds (the first logged line came out as "-- req/s"). The run's
        # mean so far stands in, over at least a second, so that the limiter's first burst does
        # not read as a rate above its limit.
        progress = self.progress
        if not progress.sent or not progress.started_at:
            return None
        return progress.sent / max(time.time() - progress.started_at, 1.0)

    def text(self) -> str:
        """Return the current progress line."""
        return render_progress(
            self.progress, now=time.time(), rate=self.rate(), input_lines=self.input_lines()
        )

    async def run(self) -> None:
        """Refresh until cancelled."""
        interval = _REDRAW_SECONDS if self.console.tty else min(self.log_interval, 1.0)
        while True:
            self.refresh()
            await asyncio.sleep(interval)

    def refresh(self) -> None:
        """Redraw the line, or log it if it is time to."""
        if self.progress.started_at == 0.0:
            return
        text = self.text()
        if self.console.tty:
            self.console.status(text)
            return
        now = time.monotonic()
        p = self.progress
        state = (p.done, p.requests, p.videos, p.waiting_until, p.probe_at)
        quiet = state == self._logged
        if now - self._logged_at >= (_QUIET_LOG_SECONDS if quiet else self.log_interval):
            self._logged_at, self._logged = now, state
            logger.info("progress: %s", text)
