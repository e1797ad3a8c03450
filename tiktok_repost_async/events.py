"""Name what a walk of many users produces: its events, its jobs and the sink that receives them.

`Engine.run` yields `PageEvent`, `UserDone` and `NameSkipped` (together `WalkEvent`); a `Sink`
receives claims, pages and ends (the in-memory one keeps only the names it has seen; the
harvest's commits them to its store).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .errors import (
    TikTokError,
)
from .models import RepostedVideosPage

__all__ = [
    "NameSkipped",
    "PageEvent",
    "Sink",
    "UserDone",
    "WalkEvent",
    "WalkGuard",
    "WalkJob",
    "WalkState",
]


class WalkState(enum.StrEnum):
    """Name how one user's walk ended."""

    DONE = "done"
    NOT_FOUND = "not_found"
    UNAVAILABLE = "unavailable"
    FAILED = "failed"
    #: A guard (`WalkGuard`) cut the walk short while the API still said ``has_more``.
    INCOMPLETE = "incomplete"


class WalkGuard(enum.StrEnum):
    """Name the guard that cut a user's walk short while the API still said ``has_more``."""

    #: The walk reached its ``max_pages``.
    MAX_PAGES = "max_pages"
    #: The API sent back a cursor this walk had already sent: sending it again would loop.
    REPEATED_CURSOR = "repeated_cursor"
    #: Too many empty pages in a row with ``has_more`` true (`client.empty_page_bound`: 3 at
    #: 100 videos a page): a ``has_more`` that never turns false.
    EMPTY_PAGES = "empty_pages"
    #: The API said ``has_more`` but sent no cursor (null or absent): nowhere to continue from.
    NO_CURSOR = "no_cursor"

    def describe(self, cursor: int) -> str:
        """Return one line that says how this guard cut a walk that stopped at ``cursor``.

        :param cursor: the cursor the walk stopped at.
        """
        why = {
            WalkGuard.MAX_PAGES: "reached max_pages",
            WalkGuard.REPEATED_CURSOR: "the API sent back a cursor already sent",
            WalkGuard.EMPTY_PAGES: "empty pages in a row while the API said has_more",
            WalkGuard.NO_CURSOR: "the API said has_more but sent no cursor",
        }[self]
        return f"{self.value}: {why}; cut at cursor {cursor}"


@dataclass(frozen=True, slots=True)
class PageEvent:
    """Carry one page of one user's walk, as it arrives.

    :param username: the user whose list the page is of.
    :param cursor: the cursor this page was asked for.
    :param page: the page, with its videos (typed and raw) and the next cursor.
    """

    username: str
    cursor: int
    page: RepostedVideosPage


@dataclass(frozen=True, slots=True)
class UserDone:
    """Tell how one user's walk ended, with what it took.

    :param username: the user.
    :param state: how the walk ended (`WalkState`).
    :param pages: pages walked.
    :param videos: videos on the pages walked (the harvest counts the new ones it stored).
    :param requests: research requests sent for this user, retries included.
    :param error: the error that ended the user (a `TikTokError`), for every state but ``done``.
    :param guard: the guard that cut the walk short, if one did; ``state`` is then ``incomplete``.
    :param cursor: the cursor a later walk would continue from.
    :param partial: the sink ended the walk early by choice (a panel's stop_at_known), not a
        guard.
    """

    username: str
    state: WalkState
    pages: int
    videos: int
    requests: int
    error: TikTokError | None = None
    guard: WalkGuard | None = None
    cursor: int = 0
    partial: bool = False

    @property
    def incomplete(self) -> bool:
        """Tell whether a guard cut the walk short while the API still had more."""
        return self.guard is not None


@dataclass(frozen=True, slots=True)
class NameSkipped:
    """Report an input name that was not walked: unusable, or seen before.

    :param line: the name's position in the input, from 1.
    :param name: the name as given (``repr`` of anything that is not a str).
    :param reason: why: "blank line", "not a TikTok username", "duplicate", ...
    """

    line: int
    name: str
    reason: str


WalkEvent = PageEvent | UserDone | NameSkipped


@dataclass(slots=True)
class WalkJob:
    """Hold one user's walk in progress: where it started and where it stands."""

    username: str
    cursor: int = 0
    start: int = 0
    pages: int = 0
    videos: int = 0
    #: Set by a sink to end the walk after the page it is handed (the harvest's stop_at_known):
    #: the user ends ``done`` and ``partial``.
    stop_after: bool = False
    #: Empty pages in a row with ``has_more`` true so far, the page handed to the sink included
    #: (the walk ends at `client.empty_page_bound`).
    empty_pages: int = 0
    #: Set by a sink to ask the walk's last page again, at this cursor, before the walk ends
    #: (the harvest's second opinion on a suspect empty end; see `harvester.EMPTY_ALARM_SEEN`).
    again: int | None = None


class Sink:
    """Receive what a walk produces; this base keeps nothing but the names it has seen."""

    def __init__(self) -> None:
        """Start with no name seen."""
        # The one thing that grows with the input: walking each name once means remembering
        # it (about a hundred bytes a name). The harvest remembers them in its store instead.
        self._seen: set[str] = set()

    async def claim(self, names: list[str], lines: list[int]) -> list[WalkJob | NameSkipped]:
        """Turn valid names into jobs, or into skips (a duplicate, a user already done).

        :param names: the valid names of one batch of input, in input order.
        :param lines: each name's line number in the input, from 1.
        """
        out: list[WalkJob | NameSkipped] = []
        for name, line in zip(names, lines, strict=True):
            if name in self._seen:
                out.append(NameSkipped(line, name, "duplicate"))
            else:
                self._seen.add(name)
                out.append(WalkJob(name))
        return out

    async def skipped(self, names: list[NameSkipped]) -> None:
        """Receive the unusable names of one batch of input.

        :param names: the batch's unusable names, each with its line and why.
        """

    async def page(self, job: WalkJob, event: PageEvent) -> int:
        """Receive one page; return the number of videos to count for the user.

        :param job: the user's walk.
        :param event: the page, with the cursor that fetched it.
        """
        return len(event.page.videos)

    async def finish(self, job: WalkJob, done: UserDone) -> None:
        """Receive one user's end, before the event is handed on.

        :param job: the user's walk.
        :param done: how the walk ended.
        """

    def input_done(self) -> None:
        """Note that every input name has been read."""
