"""Help a walk along: its guards, the gate it asks before each request, how failures are told.

`RepostClient._walk` and `_fetch_page` use these; the engine's `Gate` implements `RequestGate`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Protocol

from .errors import (
    CertificateError,
    InvalidCursorError,
    QuotaExhaustedError,
    RateLimitError,
    ServerError,
    TikTokError,
    TransportError,
)
from .models import VideoProblem

if TYPE_CHECKING:
    pass

__all__ = [
    "EMPTY_RUN_POSITIONS",
    "MIN_EMPTY_PAGES",
    "RequestGate",
    "Sleep",
    "StepAside",
    "WalkTally",
    "empty_page_bound",
    "is_outage",
]

# Odd videos are reported as the client's: that is the logger users configure for requests.
logger = logging.getLogger("tiktok_repost_async.client")

Sleep = Callable[[float], Awaitable[None]]

#: A walk ends after this many consecutive empty pages with ``has_more`` true, at least (see
#: `empty_page_bound`): one page emptied by moderation is crossed, a ``has_more`` that never
#: turns false is not followed for ever.
MIN_EMPTY_PAGES = 3
#: ... or after empty pages spanning this many list positions, when pages are small: a run of
#: moderated videos is as long in positions whatever max_count is (150 seen in the simulator's
#: ``short`` users, so twice that is crossed).
EMPTY_RUN_POSITIONS = 300


def empty_page_bound(max_count: int) -> int:
    """Return how many consecutive empty pages with ``has_more`` true end a walk.

    The bound is ``MIN_EMPTY_PAGES`` (3) pages, or as many as span ``EMPTY_RUN_POSITIONS``
    (300) positions when pages are smaller: 3 at 100 videos a page, 15 at 20.

    :param max_count: videos asked for per page.
    """
    return max(MIN_EMPTY_PAGES, math.ceil(EMPTY_RUN_POSITIONS / max_count))


class RequestGate(Protocol):
    """Decide whether a research request may go out: the quota and stop gate of a walk."""

    async def admit(self, username: str) -> None:
        """Wait until a request may queue for the limiter; raise `WalkStopped` after a stop.

        :param username: the user whose request it is.
        """

    async def take(self, username: str) -> bool:
        """Spend and book one request about to be sent; False sends it back to `admit`.

        :param username: the user whose request it is.
        """

    async def refund(self, username: str) -> None:
        """Give back the request of ``username`` that `take` booked and that never left.

        :param username: the user whose request it was.
        """

    async def pause(self, seconds: float, sleep: Sleep) -> None:
        """Sleep before a retry, cut short (with `WalkStopped`) by a stop.

        :param seconds: how long to sleep.
        :param sleep: the sleep to use (the client's).
        """

    def answered(self, reached: bool, username: str | None = None) -> None:
        """Note that ``username``'s request got an answer (``reached``) or none (no answer).

        :param reached: whether an answer came (any status); False: none came (a refused connection,
            a timeout).
        :param username: the user whose request it was (None: none named).
        """

    def rate_limited(self, username: str, error: RateLimitError) -> bool:
        """Note a 429 for ``username``; tell whether it means the daily quota is spent.

        :param username: the user whose request got the 429.
        :param error: the 429, with its Retry-After.
        """

    def not_rate_limited(self) -> None:
        """Note an answer that was not a 429: the API still serves this project today."""

    def served(self) -> None:
        """Note a page served: the quota of this UTC day is fresh (a lagging reset came)."""

    def unhealthy(self, username: str, error: TikTokError) -> bool:
        """Note an outage failure (5xx, timeout, no connection); True: hold it, not the user's.

        :param username: the user whose request failed.
        :param error: the failure.
        """

    def healthy(self, username: str | None = None) -> None:
        """Note that the API answered ``username``'s request (anything but an outage failure).

        :param username: the user whose request was answered (None: none named).
        """

    def limit_held(self) -> bool:
        """Tell whether a streak of 429s holds every request until a probe is answered."""

    def guilty(self, username: str) -> TikTokError | None:
        """Return the failure shown ``username``'s own while others were served, if any.

        :param username: the user.
        """


class StepAside(TikTokError):
    """Tell the engine that a suspect user must let another user probe the API (see `Gate`).

    A signal between the gate and the engine, never raised to a caller.
    """

    def __init__(self, username: str) -> None:
        """Make the signal.

        :param username: the suspect user that steps aside.
        """
        self.username = username
        super().__init__(f"user {username!r} steps aside while another user probes the API")


class WalkTally:
    """Count one user's requests across its pages and say which guard cut its walk, if any."""

    __slots__ = ("cut", "requests")

    def __init__(self) -> None:
        """Start at no request and no cut."""
        self.requests = 0
        self.cut: str | None = None


def is_outage(error: BaseException) -> bool:
    """Tell whether ``error`` is a failure of the API as a whole, nobody's request in particular.

    A 5xx (HTML gateway pages included), a timeout, a dropped or refused connection, and the
    API's "Invalid count or cursor" (a bug of the API, documented as transient: when every user
    meets it, the run pauses as for an outage; when one user alone does, the breaker finds it
    that user's own); not a certificate that does not verify (no wait cures it), not a garbled
    answer (`ProtocolError`).

    :param error: the failure of a request.
    """
    if isinstance(error, CertificateError):
        return False
    return isinstance(error, ServerError | TransportError | InvalidCursorError)


def _token_failure(error: TikTokError) -> TikTokError:
    """Return a failure of the token endpoint as retried: its 429 is never the research quota."""
    if isinstance(error, QuotaExhaustedError):
        return _retyped(error, RateLimitError)
    return error


def _retyped(error: RateLimitError, kind: type[RateLimitError]) -> RateLimitError:
    """Return ``error`` as a ``kind``: the same answer, told apart by the gate."""
    return kind(
        error.message,
        status=error.status,
        code=error.code,
        log_id=error.log_id,
        username=error.username,
        retry_after=error.retry_after,
    )


def _report_problems(username: str, cursor: int, problems: list[VideoProblem]) -> None:
    """Log one warning per odd video of a page: the user, the video id and the fields."""
    odd: dict[int, list[VideoProblem]] = {}
    for problem in problems:
        if problem.skipped:
            logger.warning(
                "user %r, page at cursor %d: the video at position %d has %s; skipped: %r",
                username,
                cursor,
                problem.position,
                problem.reason,
                problem.excerpt,
            )
        else:
            odd.setdefault(problem.position, []).append(problem)
    for found in odd.values():
        logger.warning(
            "user %r: video %s has values of another JSON type than documented in %s;"
            " stored as sent, those fields are None in the typed Video",
            username,
            found[0].video_id,
            "; ".join(f"{problem.field} ({problem.reason})" for problem in found),
        )
