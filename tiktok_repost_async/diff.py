"""Compare two rounds of a panel: which reposts were added, removed, and how counts moved.

A round is one walk over a panel's users (`Store.start_round`), in a store of either engine
(`StoreLike`: SQLite or PostgreSQL). For every user whose walk ended
``done`` in both rounds, `diff_rounds` compares the two lists of videos it observed and yields one
`VideoChange` per difference, users in input order:

- ``added``: in the later round, not in the earlier one (in the later round's order);
- ``removed``: in the earlier round, not in the later one (withdrawn, deleted or made private);
- ``changed``: in both, with at least one count field (`COUNT_FIELDS`) that moved; ``deltas``
  holds later minus earlier for each count that both rounds hold as an integer.

Users ``not_found``, ``unavailable``, ``failed``, still ``pending``, or ``dropped`` (left out of a
round by the panel's list) in either round take no part: a user that could not be walked never shows
as "all removed". A walk that stopped at a known video (``partial``: a repeat round with
``stop_at_known``) saw only the head of its list; it means "these, then the list as walked before",
so each round's list is completed from the rounds before it (`Store.completed_round_videos`): a
video added in a round in between shows as ``added`` however deep it lies. The user's records are
flagged ``partial``: past the head, removals and count changes were not looked at, so only those
within what the walks saw are reported. Ids are exact ints of any size.

For pandas or Polars::

    import pandas as pd
    from tiktok_repost_async import diff_rounds, open_store

    with open_store("panel.db", create=False) as store:  # or a postgresql:// URL
        frame = pd.DataFrame(change.as_row() for change in diff_rounds(store))
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any, Final

import msgspec

from ._jsontext import mend_surrogates
from .errors import TikTokError
from .export import BinaryOutput, CsvOutput
from .store import RoundRecord, StoreLike, UserState

__all__ = [
    "COUNT_FIELDS",
    "DIFF_COLUMNS",
    "DiffError",
    "VideoChange",
    "diff_rounds",
    "pick_rounds",
    "write_diff",
]

#: The video fields whose change between rounds a diff reports.
COUNT_FIELDS: Final = (
    "like_count",
    "comment_count",
    "share_count",
    "view_count",
    "favorites_count",
)
#: The columns of a diff's CSV, and the keys of each JSONL record, in order.
DIFF_COLUMNS: Final = (
    "username",
    "video_id",
    "change",
    "from_round",
    "to_round",
    "partial",
    *(f"{name}_delta" for name in COUNT_FIELDS),
)

_ENCODE = msgspec.json.Encoder().encode


class DiffError(TikTokError, ValueError):
    """Refuse a diff that cannot be made: a round that does not exist, is in progress, or alone."""


@dataclasses.dataclass(frozen=True, slots=True)
class VideoChange:
    """Describe one difference between two rounds of one user's reposts.

    :param username: the user whose repost list changed.
    :param video_id: the video.
    :param change: ``added``, ``removed`` or ``changed``.
    :param from_round: the earlier round.
    :param to_round: the later round.
    :param partial: either round's walk of this user stopped at a known video (see the module).
    :param deltas: for ``changed``: later minus earlier, per count field both rounds hold as an
        int.
    """

    username: str
    video_id: int
    change: str
    from_round: int
    to_round: int
    partial: bool
    deltas: dict[str, int] = dataclasses.field(default_factory=dict)

    def as_row(self) -> dict[str, Any]:
        """Return the change as one flat record keyed by `DIFF_COLUMNS`."""
        row: dict[str, Any] = {
            "username": self.username,
            "video_id": self.video_id,
            "change": self.change,
            "from_round": self.from_round,
            "to_round": self.to_round,
            "partial": self.partial,
        }
        for name in COUNT_FIELDS:
            row[f"{name}_delta"] = self.deltas.get(name)
        return row


class _Counts(msgspec.Struct, frozen=True, gc=False):
    # Only the counts; anything else in the video is skipped without being built.
    like_count: Any = None
    comment_count: Any = None
    share_count: Any = None
    view_count: Any = None
    favorites_count: Any = None
    favourites_count: Any = None


_COUNTS = msgspec.json.Decoder(_Counts)
_FIELDS = msgspec.json.Decoder(dict[str, msgspec.Raw])
_ANY = msgspec.json.Decoder()
_UNREADABLE = (msgspec.MsgspecError, ValueError, RecursionError)


def _counts(data: bytes) -> dict[str, int]:
    try:
        counts = _COUNTS.decode(data)
    except _UNREADABLE:
        return _counts_one_by_one(data)
    values = {name: getattr(counts, name) for name in COUNT_FIELDS}
    if values["favorites_count"] is None:
        values["favorites_count"] = counts.favourites_count
    return _ints(values)


def _counts_one_by_one(data: bytes) -> dict[str, int]:
    """Return the counts of a video that msgspec cannot read whole, each on its own."""
    # Valid JSON kept as sent may hold what msgspec refuses: a lone surrogate escape (outside
    # the counts, so mending it changes none) or a number beyond any float (that count only).
    try:
        fields = _FIELDS.decode(mend_surrogates(data))
    except _UNREADABLE:
        return {}
    values: dict[str, Any] = {}
    for name in (*COUNT_FIELDS, "favourites_count"):
        raw = fields.get(name)
        if raw is None:
            continue
        try:
            values[name] = _ANY.decode(raw)
        except _UNREADABLE:
            continue
    if values.get("favorites_count") is None:
        values["favorites_count"] = values.get("favourites_count")
    return _ints({name: values.get(name) for name in COUNT_FIELDS})


def _ints(values: dict[str, Any]) -> dict[str, int]:
    # A count of another JSON type than an int (a drifted value) cannot be subtracted: left out.
    return {
        name: value
        for name, value in values.items()
        if isinstance(value, int) and not isinstance(value, bool)
    }


def pick_rounds(
    store: StoreLike, from_round: int | None = None, to_round: int | None = None
) -> tuple[int, int]:
    """Return the two rounds to compare; by default the last two complete ones.

    Raise DiffError naming the problem: one round only, a round that does not exist, one still in
    progress, or the same round twice.

    :param store: the store whose rounds to compare.
    :param from_round: the earlier round (None: the complete round before ``to_round``).
    :param to_round: the later round (None: the latest complete one, after ``from_round`` if given).
    """
    rounds = {record.number: record for record in store.rounds()}
    if len(rounds) < 2:
        raise DiffError(
            f"{str(store.path)!r} has one round only: harvest it again with --new-round "
            "before asking what changed"
        )
    for name, number in (("--from", from_round), ("--to", to_round)):
        if number is None:
            continue
        if number not in rounds:
            raise DiffError(
                f"{name} {number}: {str(store.path)!r} has no round {number}; "
                f"its rounds are 1 to {max(rounds)}"
            )
        if rounds[number].in_progress:
            raise DiffError(f"{name} {number}: round {number} is {_progress(rounds[number])}")
    if from_round is None or to_round is None:
        complete = [number for number, record in sorted(rounds.items()) if record.complete]
        if to_round is None:
            later = [n for n in complete if from_round is None or n > from_round]
            if from_round is None and len(later) < 2:
                raise DiffError(_no_complete(rounds, "there are not two complete rounds"))
            if not later:
                raise DiffError(
                    _no_complete(rounds, f"there is no complete round after round {from_round}")
                )
            to_round = later[-1]
        if from_round is None:
            earlier = [n for n in complete if n < to_round]
            if not earlier:
                raise DiffError(
                    _no_complete(rounds, f"there is no complete round before round {to_round}")
                )
            from_round = earlier[-1]
    if from_round >= to_round:
        raise DiffError(f"--from {from_round} must be an earlier round than --to {to_round}")
    return from_round, to_round


def _progress(record: RoundRecord) -> str:
    pending = record.users[UserState.PENDING]
    if not sum(record.users.values()):
        return "still in progress: no user has been walked in it yet"
    if not pending:
        return (
            "still in progress: the input of its last run was not read to the end (run the"
            " harvest again)"
        )
    return f"still in progress: {pending:,} of its users are not walked yet (run the harvest again)"


def _standing(record: RoundRecord) -> str:
    if record.complete:
        return "complete"
    return "in progress" if record.in_progress else "with failed users"


def _no_complete(rounds: dict[int, RoundRecord], wanted: str) -> str:
    states = ", ".join(f"round {n} {_standing(r)}" for n, r in sorted(rounds.items()))
    return f"{wanted} to compare ({states}); name the rounds with --from and --to"


def diff_rounds(
    store: StoreLike, from_round: int | None = None, to_round: int | None = None
) -> Iterator[VideoChange]:
    """Yield what changed in each user's reposts between two rounds (the last two complete ones).

    :param store: the panel's store.
    :param from_round: the earlier round.
    :param to_round: the later round.
    """
    first, second = pick_rounds(store, from_round, to_round)
    before = {
        name: partial
        for name, state, partial in store.iter_round_users(first)
        if state is UserState.DONE
    }
    for username, state, partial in store.iter_round_users(second):
        if state is not UserState.DONE or username not in before:
            continue
        flagged = partial or before[username]
        # A walk that stopped at a known video is completed from the rounds before it, so that
        # what earlier rounds saw past its head counts (videos added in a round in between).
        old = [row[:2] for row in store.completed_round_videos(username, first)]
        new = [row[:2] for row in store.completed_round_videos(username, second)]
        old_ids = dict(old)
        new_ids = {video_id for video_id, _ in new}
        for video_id, data in new:
            earlier = old_ids.get(video_id)
            if earlier is None:
                yield VideoChange(username, int(video_id), "added", first, second, flagged)
                continue
            was, now = _counts(earlier), _counts(data)
            deltas = {name: now[name] - was[name] for name in now.keys() & was.keys()}
            if any(deltas.values()):
                ordered: dict[str, int] = {n: deltas[n] for n in COUNT_FIELDS if n in deltas}
                yield VideoChange(
                    username, int(video_id), "changed", first, second, flagged, ordered
                )
        # Past a partial walk's head its list is the earlier one as it was: a removal there
        # goes unseen, and only videos gone from what the walks looked at show as removed.
        for video_id, _ in old:
            if video_id not in new_ids:
                yield VideoChange(username, int(video_id), "removed", first, second, flagged)


def _csv_value(value: Any) -> object:
    # JSON's spelling of the booleans, and an empty cell for a count that did not move or was
    # not held as an int in both rounds.
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def write_diff(
    store: StoreLike,
    out: BinaryOutput,
    format: str = "jsonl",
    *,
    from_round: int | None = None,
    to_round: int | None = None,
) -> int:
    """Write the diff of two rounds to a binary ``out`` as JSONL or CSV; return the records.

    :param store: the panel's store.
    :param out: anything with ``write(bytes)``.
    :param format: ``jsonl`` (one object a line, keys `DIFF_COLUMNS`) or ``csv`` (RFC 4180).
    :param from_round: the earlier round (default: see `pick_rounds`).
    :param to_round: the later round.
    """
    if format not in ("jsonl", "csv"):
        raise ValueError(f"a diff is written as jsonl or csv, not {format!r}")
    changes = diff_rounds(store, from_round, to_round)
    count = 0
    if format == "jsonl":
        for change in changes:
            out.write(_ENCODE(change.as_row()) + b"\n")
            count += 1
        return count
    writer = CsvOutput(out, DIFF_COLUMNS)
    for change in changes:
        row = change.as_row()
        writer.writerow(_csv_value(row[name]) for name in DIFF_COLUMNS)
        count += 1
    writer.flush()
    return count
