"""How the simulator's videos go over the wire: field sets, the wire knobs, drift, encoded pages.

The dataset (`_data`) says which videos a user has at an epoch; this module turns them into the
JSON a request gets, and into the ground truth and changes that tests compare against.
"""

from __future__ import annotations

import json
import random
import re
import time
from array import array
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from functools import lru_cache
from itertools import accumulate
from typing import Any, Final, NamedTuple, TypedDict

import msgspec

from ._data import (
    _BITS,
    _HASHTAGS,
    _ID_KINDS,
    _LABELS,
    _NUMBERS,
    _RANDOM_KINDS,
    _REGION_NUMBERS,
    _SLOTS,
    ALL_FIELDS,
    COUNT_FIELDS,
    DRIFT_KINDS,
    FAVOURITES_ALIAS,
    Timeline,
    _digest,
    _templates,
    _videos,
    field_mask,
    timeline,
    user_kind,
)

__all__ = [
    "PLAIN",
    "EncodedUser",
    "EncodingCache",
    "EpochChanges",
    "Wire",
    "changes",
    "drift_plan",
    "drifted",
    "fitted_kind",
    "ground_truth",
    "pretty",
]


@lru_cache(maxsize=1 << 16)
def _format(template: int, mask: int, favourites: bool) -> tuple[bytes, tuple[int, ...]]:
    """Compile a template for a field set: a %-format of its JSON, and the numbers it takes."""
    order, content = _templates()[template]
    parts = []
    slots = []
    for key in order:
        if not mask & _BITS[key]:
            continue
        name = FAVOURITES_ALIAS if favourites and key == "favorites_count" else key
        if key in _SLOTS:
            parts.append(b'"%s":%%d' % name.encode())
            slots.append(_SLOTS[key] + 1)
        else:
            value = msgspec.json.encode(content[key]).replace(b"%", b"%%")
            parts.append(b'"%s":%s' % (name.encode(), value))
    return b"{" + b",".join(parts) + b"}", tuple(slots)


class Wire(NamedTuple):
    """How videos go out beyond their field set: the wire knobs and one user's scripted drift."""

    extra_keys: bool = False
    string_ids: bool = False
    type_drift: float = 0.0
    #: (position, kind) pairs sorted by position; a kind of None is drawn for the position.
    drifts: tuple[tuple[int, str | None], ...] = ()
    #: The share of videos carrying a lone surrogate escape and a number beyond any float.
    odd_values: float = 0.0


PLAIN: Final = Wire()


def drift_plan(
    username: str, total: int, rate: float, scripted: Sequence[tuple[int, str | None]] = ()
) -> dict[int, str]:
    """Return the kind of every drifted position of a user's first `total` videos.

    Raise ValueError on a scripted position outside the list or an unknown kind. The kinds are
    those a request for every field gets; `fitted_kind` adapts them to narrower requests.
    """
    for index, kind in scripted:
        if kind is not None and kind not in DRIFT_KINDS:
            raise ValueError(f"unknown drift kind {kind!r}; kinds: {', '.join(DRIFT_KINDS)}")
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < total:
            raise ValueError(f"drift position {index!r} is not in 0..{total - 1} for {username!r}")
    plan: dict[int, str] = {}
    picks: list[str] = []
    if rate or any(kind is None for _, kind in scripted):
        # Its own stream, seeded by the name alone, so that a video's drift depends only on the
        # user and its position, never on the faults served before or on other knobs.
        rnd = random.Random(int.from_bytes(_digest(b"drift:", username))).random
        for index in range(total):
            roll, kind = rnd(), _RANDOM_KINDS[int(rnd() * len(_RANDOM_KINDS))]
            picks.append(kind)
            if roll < rate:
                plan[index] = kind
    for index, scripted_kind in scripted:
        plan[index] = picks[index] if scripted_kind is None else scripted_kind
    return plan


@lru_cache(maxsize=1 << 12)
def fitted_kind(kind: str, mask: int) -> str | None:
    """Return the drift kind a video gets from a request for `mask`: `kind` or the next asked."""
    if kind in _ID_KINDS:
        return kind if mask & _BITS["id"] else None
    start = _RANDOM_KINDS.index(kind)
    for step in range(len(_RANDOM_KINDS)):
        candidate = _RANDOM_KINDS[(start + step) % len(_RANDOM_KINDS)]
        if mask & _BITS[candidate]:
            return candidate
    return None


def _wire_value(key: str, value: Any, wire: Wire) -> Any:
    """Return a field's value as the wire knobs send it; never mutate the shared template."""
    strings, extra = wire.string_ids, wire.extra_keys
    if key in ("id", "music_id"):
        return str(value) if strings else value
    if key == "hashtag_info_list":
        tags = []
        for item in value:
            tag = dict(item)
            if strings:
                tag["hashtag_id"] = str(tag["hashtag_id"])
            if extra:
                tag["is_commerce"] = False
            tags.append(tag)
        return tags
    if not extra:
        return value
    # Unknown keys of every JSON type, first or last, as a newer API version might add them.
    if key == "sticker_info_list":
        return [{"sticker_text": [item["sticker_name"].lower()]} | item for item in value]
    if key == "effect_info_list":
        return [
            item | {"effect_creator": {"uid": item["effect_id"][::-1], "verified": True}}
            for item in value
        ]
    if key == "video_label":
        return value | {"label_url": "https://www.tiktok.com/safety/en/"}
    if key == "video_tag":
        return {"video_tag_source": None} | value
    return value


def _drift(
    kind: str, video: dict[str, Any], values: Mapping[str, Any], index: int, wire: Wire
) -> None:
    """Give the field `kind` names a value of another JSON type than documented, in place."""
    if kind == "no_id":
        video.pop("id", None)
    elif kind == "bad_id":
        video["id"] = "n/a"
    elif kind == "video_duration":
        video[kind] = values[kind] + 0.5
    elif kind == "hashtag_names":
        names: list[str | None] = list(values[kind]) or [_HASHTAGS[index % len(_HASHTAGS)]]
        names.insert((len(names) + 1) // 2, None)
        video[kind] = names
    elif kind == "region_code":
        video[kind] = _REGION_NUMBERS[values[kind]]
    elif kind == "is_stem_verified":
        video[kind] = int(values[kind])
    elif kind == "like_count":
        video[kind] = f"{values[kind] / 1000:.1f}K"
    elif kind == "create_time":
        video[kind] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(values[kind]))
    elif kind == "video_label":
        label = values.get(kind)
        video[kind] = label["content"] if label else _LABELS[index % len(_LABELS)]
    elif kind == "hashtag_info_list":
        tags = values["hashtag_names"]
        video[kind] = [*_wire_value(kind, values[kind], wire), tags[0] if tags else "fyp"]
    elif kind == "sticker_info_list":
        stickers = values.get(kind) or [
            {"sticker_id": str(values["music_id"] + index), "sticker_name": "Poll"}
        ]
        video[kind] = _wire_value(kind, stickers, wire)[0]
    elif kind == "music_id":
        video[kind] = float(values[kind])
    else:
        raise AssertionError(f"drift kind {kind!r} has no value")


# A high surrogate with no low one after it: the first half of U+1F602, as a string cut inside
# an emoji by a UTF-16 based truncation sends it.
_LONE_SURROGATE: Final = b"\\ud83d"
# Valid JSON (the grammar bounds no exponent), beyond any IEEE double.
_HUGE_NUMBER: Final = msgspec.Raw(b"1e400")


def _is_odd(username: str, serial: int, rate: float) -> bool:
    """Tell whether the video of this serial carries odd values; the same answer at every epoch."""
    roll = int.from_bytes(_digest(b"odd:", f"{username}:{serial}")[:8]) / 2.0**64
    return roll < rate


def _make_odd(video: dict[str, Any], serial: int) -> None:
    """Give the video a lone surrogate escape and a number beyond any float, in place.

    Its video_tag, too, lacks video_tag_number (an even serial) or holds it as null (an odd
    one): a typed column must tell the two apart.
    """
    description = video.get("video_description")
    if isinstance(description, str):
        half = len(description) // 2
        encode = msgspec.json.encode
        # Spliced as JSON text: no encoder writes a lone surrogate.
        video["video_description"] = msgspec.Raw(
            encode(description[:half])[:-1] + _LONE_SURROGATE + encode(description[half:])[1:]
        )
    if "like_count" in video:
        video["like_count"] = _HUGE_NUMBER
    tag = video.get("video_tag")
    if isinstance(tag, dict) and "video_tag_number" in tag:
        if serial % 2:
            video["video_tag"] = tag | {"video_tag_number": None}
        else:
            video["video_tag"] = {k: v for k, v in tag.items() if k != "video_tag_number"}


# A JSON string (escapes included) or one structural character: what `pretty` walks over.
_TOKEN: Final = re.compile(rb'"(?:[^"\\]|\\.)*"|[{}\[\],:]', re.DOTALL)


_EMPTY: Final = re.compile(rb"([\[{])\n *\n *([\]}])")


def pretty(text: bytes, indent: int = 2, level: int = 0) -> bytes:
    """Return compact JSON text laid out as ``json.dumps(indent=2)`` would: strings untouched."""
    out = bytearray()
    depth = level
    at = 0
    for match in _TOKEN.finditer(text):
        out += text[at : match.start()]  # a number, true, false or null, as spelled
        at = match.end()
        token = match.group()
        if token in (b"{", b"["):
            depth += 1
            out += token + b"\n" + b" " * (indent * depth)
        elif token in (b"}", b"]"):
            depth -= 1
            out += b"\n" + b" " * (indent * depth) + token
        elif token == b",":
            out += b",\n" + b" " * (indent * depth)
        elif token == b":":
            out += b": "
        else:
            out += token
    out += text[at:]
    # An empty list or object stays on one line, as json.dumps writes it; no JSON string holds a
    # raw newline, so this never reaches inside one.
    return _EMPTY.sub(rb"\1\2", bytes(out))


def _video_extras(index: int, values: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """Return the unknown top-level keys of one video; a quarter of the videos have none."""
    create_time, music_id = values["create_time"], values["music_id"]
    variant = create_time % 4
    extras: list[tuple[str, Any]] = []
    if variant & 1:
        # Ids as strings, as the sibling endpoints send them.
        ids = [str(music_id % 999_983 + 1000), str(create_time % 999_979 + 1000)]
        extras.append(("effect_ids", ids[: 1 + index % 2]))
    if variant & 2:
        playlist = {
            "playlist_id": music_id * 10 + index % 10,
            "name": f"Part {1 + index % 7} ✨",
            "meta": {"depth": [1, {"k": None, "f": 1.5e3}]},
        }
        extras.append(("x_playlist_info", playlist))
    return extras


def _wire_video(
    index: int,
    numbers: Sequence[int],
    mask: int,
    favourites: bool,
    wire: Wire,
    kind: str | None,
    odd: bool = False,
) -> dict[str, Any]:
    """Build one video as the wire knobs send it for a request for `mask`."""
    order, content = _templates()[numbers[0]]
    values = content | dict(zip(_NUMBERS, numbers[1:], strict=True))
    video = {key: _wire_value(key, values[key], wire) for key in order if mask & _BITS[key]}
    if kind is not None:
        _drift(kind, video, values, index, wire)
    if odd:
        _make_odd(video, index)
    if favourites and "favorites_count" in video:
        video = {
            FAVOURITES_ALIAS if key == "favorites_count" else key: value
            for key, value in video.items()
        }
    if wire.extra_keys and (extras := _video_extras(index, values)):
        items = list(video.items())
        at = values["create_time"] // 4 % (len(items) + 1)
        video = dict(items[:at] + extras + items[at:])
    return video


def _positions_drifted(
    username: str, line: Timeline, rate: float, scripted: Sequence[tuple[int, str | None]]
) -> dict[int, str]:
    """Return the kind of every drifted video of a list by its position in the list.

    Scripted positions and the type_drift draws of epoch-0 videos belong to the video, by its
    position at epoch 0; videos added later roll their own. So a video drifts alike at every
    epoch while the list moves.
    """
    by_serial = drift_plan(username, line.added_from, rate, scripted)
    if isinstance(line.serials, range):
        return by_serial  # epoch 0: the serials are the positions
    plan: dict[int, str] = {}
    for position, serial in enumerate(line.serials):
        if serial < line.added_from:
            if serial in by_serial:
                plan[position] = by_serial[serial]
        else:
            roll, kind = line.born_drift[serial - line.added_from]
            if roll < rate:
                plan[position] = kind
    return plan


def _wire_videos(
    username: str, line: Timeline, mask: int, favourites: bool, wire: Wire
) -> list[dict[str, Any]]:
    plan = _positions_drifted(username, line, wire.type_drift, wire.drifts)
    return [
        _wire_video(
            serial,
            numbers,
            mask,
            favourites,
            wire,
            fitted_kind(plan[position], mask) if position in plan else None,
            bool(wire.odd_values) and _is_odd(username, serial, wire.odd_values),
        )
        for position, (serial, numbers) in enumerate(zip(line.serials, line.draws, strict=True))
    ]


def drifted(
    username: str,
    *,
    type_drift: float = 0.0,
    drifts: Mapping[int, str | None] | None = None,
    epoch: int = 0,
) -> dict[int, str]:
    """Return the position and kind of every drifted video the user's answers can carry.

    Positions count in the full repost list at `epoch`; moderated videos, never sent, are left
    out. `drifts` are positions at epoch 0 (see `_positions_drifted`). The kinds are those of a
    request for every field.
    """
    line = timeline(username, False, epoch)
    plan = _positions_drifted(username, line, type_drift, sorted((drifts or {}).items()))
    return {index: plan[index] for index in sorted(plan) if not line.moderated[index]}


def ground_truth(
    username: str,
    *,
    huge_ids: bool = False,
    max_count: int = 100,
    extra_keys: bool = False,
    string_ids: bool = False,
    type_drift: float = 0.0,
    drifts: Mapping[int, str | None] | None = None,
    fields: Sequence[str] | None = None,
    epoch: int = 0,
    odd_values: float = 0.0,
) -> list[dict[str, Any]]:
    """Return every video a perfect client collects for the user, in API order, as sent.

    The videos are the JSON the simulator sends with these settings at `epoch`, decoded: unknown
    keys, ids as strings and drifted values included; `no_id` videos lack their id and `bad_id`
    ones carry ``"n/a"``, both kept as sent (a client is expected to skip them). Every field comes
    back unless `fields` names the fields of a request (drift then picks among those as the
    request does); the favourites count is spelled favorites_count. With `odd_values`, a lone
    surrogate escape decodes to a str holding that surrogate and ``1e400`` to ``inf``, as
    Python's json module reads them.
    """
    kind = user_kind(username)
    huge = huge_ids or kind == "hugeid"
    wire = Wire(
        extra_keys, string_ids, type_drift, tuple(sorted((drifts or {}).items())), odd_values
    )
    line = timeline(username, huge, epoch)
    if wire == PLAIN and fields is None:
        videos = _videos(line.draws)
    else:
        mask = ALL_FIELDS if fields is None else field_mask(fields)
        videos = _wire_videos(username, line, mask, False, wire)
    if kind == "stall":
        # The first page moves the cursor to max_count; the page there repeats that cursor forever.
        videos = videos[: 2 * max_count]
    else:
        videos = [video for video, gone in zip(videos, line.moderated, strict=True) if not gone]
    # A JSON round trip: the videos share their lists with the pool, callers may mutate theirs, and
    # what comes back holds exactly the JSON types of the wire.
    if odd_values:
        # msgspec refuses a lone surrogate and a number beyond any float; json reads both.
        odd: list[dict[str, Any]] = json.loads(msgspec.json.encode(videos))
        return odd
    result: list[dict[str, Any]] = msgspec.json.decode(msgspec.json.encode(videos))
    return result


class EpochChanges(TypedDict):
    """What changed in a user's list between two epochs, as a perfect client sees it."""

    #: Ids new in the later list, in its order (newest first).
    added: list[int]
    #: Ids gone from the later list, in the earlier list's order.
    removed: list[int]
    #: For videos in both lists: later minus earlier, per count field that changed.
    counts: dict[int, dict[str, int]]


def _exact_id(video: Mapping[str, Any]) -> int | None:
    """Return a video's id as an int, from a number or a string of digits; None if it has none."""
    value = video.get("id")
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    return None


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def changes(
    username: str,
    from_epoch: int,
    to_epoch: int,
    *,
    huge_ids: bool = False,
    max_count: int = 100,
    extra_keys: bool = False,
    string_ids: bool = False,
    type_drift: float = 0.0,
    drifts: Mapping[int, str | None] | None = None,
    odd_values: float = 0.0,
) -> EpochChanges:
    """Return what changed in the user's list from one epoch to a later one, by video id.

    Both sides are `ground_truth` with these settings, so that the result is what a client's
    diff of two full walks finds: videos without a usable id (drifted to `no_id` or `bad_id`) are
    left out, and a count that is not an integer on either side (drifted) has no delta. Raise
    ValueError unless 0 <= from_epoch <= to_epoch.
    """
    for name, value in (("from_epoch", from_epoch), ("to_epoch", to_epoch)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be an integer >= 0, not {value!r}")
    if from_epoch > to_epoch:
        raise ValueError(f"from_epoch {from_epoch} is after to_epoch {to_epoch}")

    def listed(epoch: int) -> dict[int, dict[str, Any]]:
        videos = ground_truth(
            username,
            huge_ids=huge_ids,
            max_count=max_count,
            extra_keys=extra_keys,
            string_ids=string_ids,
            type_drift=type_drift,
            drifts=drifts,
            epoch=epoch,
            odd_values=odd_values,
        )
        return {video_id: video for video in videos if (video_id := _exact_id(video)) is not None}

    before, after = listed(from_epoch), listed(to_epoch)
    counts: dict[int, dict[str, int]] = {}
    for video_id, video in after.items():
        old = before.get(video_id)
        if old is None:
            continue
        deltas = {
            name: video[name] - old[name]
            for name in COUNT_FIELDS
            if _is_count(video.get(name)) and _is_count(old.get(name)) and video[name] != old[name]
        }
        if deltas:
            counts[video_id] = deltas
    return {
        "added": [video_id for video_id in after if video_id not in before],
        "removed": [video_id for video_id in before if video_id not in after],
        "counts": counts,
    }


class EncodedUser:
    """One user's videos as JSON for one field set: a blob of comma-joined objects and offsets."""

    __slots__ = ("blob", "kind", "moderated", "offsets", "total")

    def __init__(
        self,
        username: str,
        huge: bool,
        mask: int,
        favourites: bool,
        wire: Wire = PLAIN,
        epoch: int = 0,
    ) -> None:
        self.kind = user_kind(username)
        huge = huge or self.kind == "hugeid"
        line = timeline(username, huge, epoch)
        if wire == PLAIN:
            parts = []
            for numbers in line.draws:
                text, slots = _format(numbers[0], mask, favourites)
                parts.append(text % tuple([numbers[slot] for slot in slots]))
        else:
            # Off the benchmarked path: each video is built and encoded, which the templates avoid.
            encode = msgspec.json.encode
            videos = _wire_videos(username, line, mask, favourites, wire)
            parts = [encode(video) for video in videos]
        self.total = len(parts)
        self.moderated = line.moderated
        # offsets[i] is where video i starts; one past the end stands in for a final comma.
        self.offsets = array("Q", accumulate((len(part) + 1 for part in parts), initial=0))
        self.blob = b",".join(parts)

    def objects(self, start: int, stop: int) -> list[bytes]:
        """Return videos [start, stop) as a list of JSON objects, moderated ones left out."""
        stop = min(stop, self.total)
        offsets, blob = self.offsets, self.blob
        return [
            blob[offsets[i] : offsets[i + 1] - 1]
            for i in range(start, stop)
            if self.kind != "short" or not self.moderated[i]
        ]

    def page(self, start: int, stop: int) -> tuple[bytes, int]:
        """Return videos [start, stop) as comma-joined JSON objects, and how many there are."""
        stop = min(stop, self.total)
        if start >= stop:
            return b"", 0
        offsets = self.offsets
        if self.kind != "short":
            return self.blob[offsets[start] : offsets[stop] - 1], stop - start
        kept = [i for i in range(start, stop) if not self.moderated[i]]
        blob = self.blob
        return b",".join(blob[offsets[i] : offsets[i + 1] - 1] for i in kept), len(kept)


class EncodingCache:
    """A least-recently-used cache of encoded users, bounded by the bytes it holds."""

    __slots__ = ("_entries", "budget", "size")

    def __init__(self, budget: int = 256 << 20) -> None:
        self._entries: OrderedDict[tuple[str, bool, int, bool, Wire, int], EncodedUser] = (
            OrderedDict()
        )
        self.budget = budget
        self.size = 0

    def get(
        self,
        username: str,
        huge: bool,
        mask: int,
        favourites: bool,
        wire: Wire = PLAIN,
        epoch: int = 0,
    ) -> EncodedUser:
        """Return the user's encoded videos at `epoch`, encoding them on a miss."""
        # The wire knobs and the epoch are part of the key, so that a knob changed at run time
        # never meets an encoding made under its old value; a new epoch encodes a user once.
        key = (username, huge, mask, favourites, wire, epoch)
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
            return entry
        entry = EncodedUser(username, huge, mask, favourites, wire, epoch)
        self._entries[key] = entry
        self.size += len(entry.blob)
        while self.size > self.budget and len(self._entries) > 1:
            _, evicted = self._entries.popitem(last=False)
            self.size -= len(evicted.blob)
        return entry

    def clear(self) -> None:
        """Forget every encoded user."""
        self._entries.clear()
        self.size = 0
