"""A user's list in a round, completed where a walk stopped at a known video.

A walk of a repeat round with ``stop_at_known`` (``partial``) fetched the head of the list only,
up to the first page holding a video of the user's previous whole list. Such an observation means
"these, then the list as last walked before": the user's latest earlier round in which its walk
ended ``done``, itself completed the same way if it was partial too, round after round. The
reading part (export by round) and the rounds part (diffs, the known videos of the next walk)
both read lists through these functions; the PostgreSQL store through `complete_chain`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from typing import Any, TypeAlias

#: (video_id, data, round observed in, page's fetched_at, page's log_id); the last two are None
#: unless provenance was asked for (and for videos stored before provenance was recorded).
Row: TypeAlias = tuple[str, bytes, int, str | None, str | None]


def user_rounds(conn: sqlite3.Connection, username: str) -> dict[int, tuple[str, bool]]:
    """Return the user's state and partial flag in each round it took part in."""
    rows = conn.execute(
        "SELECT round, state, partial FROM user_rounds WHERE username = ?"
        " UNION ALL SELECT round, state, partial FROM users WHERE username = ?",
        (username, username),
    )
    return {int(number): (str(state), bool(partial)) for number, state, partial in rows}


def done_before(rounds: dict[int, tuple[str, bool]], before: int) -> int | None:
    """Return the latest round before ``before`` in which the walk ended ``done``, or None."""
    return max(
        (number for number, (state, _) in rounds.items() if number < before and state == "done"),
        default=None,
    )


def is_partial(rounds: dict[int, tuple[str, bool]], number: int) -> bool:
    """Tell whether the user's walk of round ``number`` ended done at a known video."""
    return rounds.get(number) == ("done", True)


def completed(
    conn: sqlite3.Connection,
    username: str,
    number: int,
    rounds: dict[int, tuple[str, bool]],
    *,
    provenance: bool,
) -> list[Row]:
    """Return the user's list in round ``number``, completed where its walk was partial.

    :param conn: the store's connection.
    :param username: the user.
    :param number: the round.
    :param rounds: the user's `user_rounds`.
    :param provenance: fill in each video's page's fetched_at and log_id.
    """
    return complete_chain(
        number, rounds, lambda round_: observed(conn, username, round_, provenance=provenance)
    )


def complete_chain(
    number: int, rounds: dict[int, tuple[str, bool]], observe: Callable[[int], list[Row]]
) -> list[Row]:
    """Return a user's list in round ``number`` from its observations, whatever the engine.

    :param number: the round.
    :param rounds: the user's state and partial flag per round (as `user_rounds` gives them).
    :param observe: the videos observed of the user in a round, in API order.
    """
    # The chain of rounds the list rests on: each partial walk on the latest earlier done one,
    # down to a walk that saw the whole list (or to none: the walk is then given as it is).
    chain = [number]
    while is_partial(rounds, chain[-1]):
        base = done_before(rounds, chain[-1])
        if base is None:
            break
        chain.append(base)
    listing = observe(chain[-1])
    for later in reversed(chain[:-1]):
        listing = splice(observe(later), listing)
    return listing


def observed(
    conn: sqlite3.Connection, username: str, number: int, *, provenance: bool
) -> list[Row]:
    """Return the videos observed of the user in one round, in API order."""
    if not provenance:
        rows = conn.execute(
            "SELECT video_id, data FROM videos WHERE username = ? AND round = ? ORDER BY rowid",
            (username, number),
        )
        return [(str(video_id), bytes(data), number, None, None) for video_id, data in rows]
    # An empty log_id is how the pages table records "none sent".
    rows = conn.execute(
        "SELECT v.video_id, v.data, p.fetched_at, nullif(p.log_id, '') FROM videos AS v"
        " LEFT JOIN pages AS p ON p.id = v.page_id WHERE v.username = ? AND v.round = ?"
        " ORDER BY v.rowid",
        (username, number),
    )
    return [
        (str(video_id), bytes(data), number, fetched_at, log_id)
        for video_id, data, fetched_at, log_id in rows
    ]


def splice(head: list[Row], earlier: list[Row]) -> list[Row]:
    """Return a stopped walk's ``head`` followed by ``earlier`` past the last video both hold."""
    seen = {row[0] for row in head}
    anchor = -1
    for position, row in enumerate(earlier):
        if row[0] in seen:
            anchor = position
    if anchor < 0:
        # Nothing of the earlier list was seen again: no ground to join the two on.
        return head
    # Past the anchor the earlier list goes on as it was (newest first: the assumption that
    # stop_at_known rests on); before it, a video that this walk did not see again was gone.
    return head + [row for row in earlier[anchor + 1 :] if row[0] not in seen]


def completing(
    rows: Iterator[Any],
    number: int,
    *,
    provenance: bool,
    rounds_of: Callable[[str], dict[int, tuple[str, bool]]],
    list_of: Callable[[str, dict[int, tuple[str, bool]]], list[Row]],
) -> Iterator[Any]:
    """Pass round ``number``'s rows on (grouped by user), each partial walk's list completed.

    What follows a user's rows is the rest of its `completed` list, from the rounds before: one
    engine's reading of the user's rounds (``rounds_of``) and of its completed list (``list_of``).

    :param rows: (username, video_id, data[, round, fetched_at, log_id]) in the store's order.
    :param number: the round the rows are of.
    :param provenance: the rows, and so their completion, carry round, fetched_at and log_id.
    :param rounds_of: a user's `user_rounds`.
    :param list_of: a user's completed list in the round, given its rounds.
    """

    def completion(username: str, seen: int) -> Iterator[Any]:
        # One small lookup per user, not per video: most walks are whole and add nothing.
        rounds = rounds_of(username)
        if not is_partial(rounds, number):
            return
        for video_id, data, observed, fetched_at, log_id in list_of(username, rounds)[seen:]:
            if provenance:
                yield username, video_id, data, observed, fetched_at, log_id
            else:
                yield username, video_id, data

    username: str | None = None
    count = 0
    for row in rows:
        if row[0] != username:
            if username is not None:
                yield from completion(username, count)
            username, count = row[0], 0
        count += 1
        yield row
    if username is not None:
        yield from completion(username, count)
