"""The simulator's deterministic dataset: who exists, what they reposted, and how lists move.

How the videos go over the wire (field sets, the wire knobs, drift, the encoded pages and the
ground truth) is `_wire`'s.
"""

from __future__ import annotations

import hashlib
import random
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from functools import cache
from math import ceil
from typing import Any, Final, NamedTuple, TypeVar

__all__ = [
    "ALL_FIELDS",
    "COUNT_FIELDS",
    "DRIFT_KINDS",
    "FAVOURITES_ALIAS",
    "MAX_REPOSTS",
    "VIDEO_FIELDS",
    "Timeline",
    "field_mask",
    "pages_needed",
    "repost_count",
    "timeline",
    "user_kind",
]


VIDEO_FIELDS: Final = (
    "id",
    "create_time",
    "username",
    "region_code",
    "video_description",
    "music_id",
    "like_count",
    "comment_count",
    "share_count",
    "view_count",
    "hashtag_names",
    "hashtag_info_list",
    "sticker_info_list",
    "effect_info_list",
    "video_mention_list",
    "video_label",
    "video_duration",
    "is_stem_verified",
    "favorites_count",
    "video_tag",
)
FAVOURITES_ALIAS: Final = "favourites_count"
MAX_REPOSTS: Final = 100_000
ALL_FIELDS: Final = (1 << len(VIDEO_FIELDS)) - 1
# Each kind is named after the one field it touches; the last two are never drawn at random.
DRIFT_KINDS: Final = (
    "video_duration",
    "hashtag_names",
    "region_code",
    "is_stem_verified",
    "like_count",
    "create_time",
    "video_label",
    "hashtag_info_list",
    "sticker_info_list",
    "music_id",
    "no_id",
    "bad_id",
)
_RANDOM_KINDS: Final = DRIFT_KINDS[:-2]
_ID_KINDS: Final = DRIFT_KINDS[-2:]

_BITS: Final = {name: 1 << i for i, name in enumerate(VIDEO_FIELDS)} | {
    FAVOURITES_ALIAS: 1 << VIDEO_FIELDS.index("favorites_count")
}
_PREFIX_KINDS: Final = (
    ("missing", "missing"),
    ("notfound", "missing"),
    ("private", "private"),
    ("empty", "empty"),
    ("stall", "stall"),
    ("endless", "endless"),
    ("short", "short"),
    ("hugeid", "hugeid"),
    ("big", "big"),
)
T = TypeVar("T")
_COUNT_SEGMENT: Final = re.compile(r"n(\d+)")
_SEPARATORS: Final = re.compile(r"[_.]")
# Videos [100, 250) of a `short` user are all moderated away: a 100-video page comes back empty.
_MODERATED_RUN: Final = range(100, 250)

_EPOCH_2019: Final = 1_546_300_800
_SIX_YEARS: Final = 189_000_000
_INT64_LIMIT: Final = 1 << 63
# Every epoch-0 video was created before this; epoch k adds videos of the k-th week after it, so
# that their snowflake ids are above every earlier one, as later create_times make them.
_LATEST: Final = _EPOCH_2019 + _SIX_YEARS
_WEEK: Final = 604_800
# What one epoch step does to each video already listed: removed at the user's rate for the step
# (drawn up to this), else its counts grow with this probability.
_MAX_REMOVAL_RATE: Final = 0.02
_GROWTH_RATE: Final = 0.3
# The share of a `short` user's videos moderated away besides its run, new videos included.
_MODERATED_SHARE: Final = 0.3
# `_huge` forces the shape of the first two videos of a list; later additions draw theirs.
_UNFORCED: Final = 2
#: The video fields that grow from epoch to epoch, as `changes` and the client's diff name them.
COUNT_FIELDS: Final = (
    "like_count",
    "comment_count",
    "share_count",
    "view_count",
    "favorites_count",
)

_REGIONS: Final = (
    "US", "GB", "DE", "FR", "IT", "ES", "NL", "PL", "SE", "IE", "BR", "MX", "IQ", "EG", "TR",
    "IN", "ID", "PH", "JP", "KR", "AU", "NG", "MD", "DO", "UA", "RO", "SA", "AE", "VN", "AR",
)  # fmt: skip
_WORDS: Final = (
    "the", "cat", "morning", "vibes", "when", "you", "finally", "get", "it", "duet", "with",
    "wait", "for", "end", "pov", "my", "mom", "tried", "this", "recipe", "day", "in", "life",
    "no", "way", "storytime", "part", "2", "ok", "but", "why", "café", "naïve", "straße",
    "東京", "ラーメン", "сегодня", "привет", "مرحبا", "שלום", "नमस्ते", "ยินดี", "😂", "🔥", "✨",
    "❤️", "🐱", "🇺🇸", "🇩🇴", "👀", "🥹", "we", "fr", "neeed", "heelppp", "unbothered", "queen",
)  # fmt: skip
_HASHTAGS: Final = (
    "fyp", "foryou", "foryoupage", "viral", "cats", "catsoftiktok", "duet", "comedy", "booktok",
    "learnontiktok", "stem", "science", "fitness", "recipe", "travel", "dance", "music", "art",
    "تيك_توك", "الباشا👑", "salvadoreña", "cubanosporelmundo🇨🇺", "日本", "猫", "котики",
    "müzik", "fußball", "🔥", "cutecat", "newsong", "trainingseason", "example", "bigcat",
    "diminicano🇩🇴", "habanacuba🇨🇺", "elections2024", "climate", "history", "math", "physics",
)  # fmt: skip
_HANDLES: Final = (
    "maria", "jay", "the", "real", "cat", "lover", "daily", "official", "studio", "dj", "mama",
    "tv", "s", "clovis", "rokxz", "meow", "its", "isabela", "zoë", "حمودي", "الباشا", "さくら",
    "ольга", "小明", "noor", "lukas", "ana", "kim", "lee", "nguyen",
)  # fmt: skip
_STICKERS: Final = ("Question", "Poll", "Countdown", "Location", "Hashtag", "Mention", "GIF")
_EFFECTS: Final = ("Green Screen", "Time Warp Scan", "Bling", "Aged", "Slow Zoom", "Inverted")
_LABELS: Final = (
    "Get info on the U.S. elections",
    "Learn more about climate change",
    "Participating in this challenge could result in you or someone else getting hurt",
    "Unverified content",
)
_TAG_TYPES: Final = ("ai_generated", "paid_partnership", "branded_content")
# ISO 3166 numeric codes: what a region drifted to a number looks like.
_REGION_NUMBERS: Final = {
    "US": 840, "GB": 826, "DE": 276, "FR": 250, "IT": 380, "ES": 724, "NL": 528, "PL": 616,
    "SE": 752, "IE": 372, "BR": 76, "MX": 484, "IQ": 368, "EG": 818, "TR": 792, "IN": 356,
    "ID": 360, "PH": 608, "JP": 392, "KR": 410, "AU": 36, "NG": 566, "MD": 498, "DO": 214,
    "UA": 804, "RO": 642, "SA": 682, "AE": 784, "VN": 704, "AR": 32,
}  # fmt: skip
# The integers drawn for every video, in the order `_numbers` returns them; the rest of a video
# comes from a shared pool of templates.
_NUMBERS: Final = (
    "id",
    "create_time",
    "music_id",
    "like_count",
    "comment_count",
    "share_count",
    "view_count",
    "favorites_count",
    "video_duration",
)
_SLOTS: Final = {name: i for i, name in enumerate(_NUMBERS)}
_MISSING_RATES: Final = (
    ("like_count", 0.02),
    ("view_count", 0.01),
    ("music_id", 0.03),
    ("region_code", 0.01),
    ("video_description", 0.02),
    ("hashtag_names", 0.04),
    ("hashtag_info_list", 0.04),
    ("favorites_count", 0.08),
    ("video_duration", 0.02),
    ("is_stem_verified", 0.05),
)
_HASHTAG_IDS: Final = {
    tag: 1_600_000_000_000_000_000 + int.from_bytes(hashlib.sha256(tag.encode()).digest()[:7])
    for tag in _HASHTAGS
}


def _digest(purpose: bytes, name: str) -> bytes:
    # sha256, not hash(): the dataset must not change between processes or Python versions.
    return hashlib.sha256(purpose + name.encode("utf-8", "surrogatepass")).digest()


def user_kind(username: str) -> str:
    """Return the kind a username's prefix selects: normal, missing, private, empty, stall, ..."""
    low = username.lower()
    for prefix, kind in _PREFIX_KINDS:
        if low.startswith(prefix):
            return kind
    return "normal"


def repost_count(username: str, epoch: int = 0) -> int:
    """Return how many videos the user has reposted at `epoch`, moderated ones included.

    A name's ``n<digits>`` segment fixes the count at epoch 0; later epochs move on from there.
    """
    if epoch:
        return len(timeline(username, False, epoch).draws)
    kind = user_kind(username)
    if kind in ("missing", "private", "empty"):
        return 0
    for segment in _SEPARATORS.split(username):
        if match := _COUNT_SEGMENT.fullmatch(segment):
            return min(int(match[1]), MAX_REPOSTS)
    spread = int.from_bytes(_digest(b"count:", username)[:8])
    if kind == "big":
        return 950 + spread % 101
    if kind == "short":
        return 300 + spread % 201
    if kind == "stall":
        return 150 + spread % 301
    if kind == "hugeid":
        return 50 + spread % 300
    return 0 if spread % 100 < 15 else 1 + (spread >> 8) % 600


def _moderated(username: str, total: int) -> bytearray:
    if user_kind(username) != "short":
        return bytearray(total)
    rng = random.Random(int.from_bytes(_digest(b"moderation:", username)))
    return bytearray(i in _MODERATED_RUN or rng.random() < _MODERATED_SHARE for i in range(total))


def _pick(rnd: Callable[[], float], pool: Sequence[T]) -> T:
    return pool[int(rnd() * len(pool))]


def _handle(rng: random.Random) -> str:
    rnd = rng.random
    name = _pick(rnd, _HANDLES) + ("_", ".", "")[int(rnd() * 3)] + _pick(rnd, _HANDLES)
    if rnd() < 0.5:
        name += str(int(rnd() * 10_000))
    if rnd() < 0.01:
        # As recorded from the live API: NUL bytes inside a username.
        name += "\u0000" * (1 + int(rnd() * 6)) + str(int(rnd() * 10))
    return name


def _snowflake(rng: random.Random, low: int, span: int) -> int:
    return ((low + int(rng.random() * span)) << 32) | rng.getrandbits(32)


def _huge(video_id: int, index: int, shape: float, digit: int) -> int:
    # The first two videos guarantee both shapes, so that even a short list shows them.
    if index == 0 or (index > 1 and shape < 0.3):
        return video_id * 10 + digit  # 20 digits, above uint64, like the recorded sample
    if index == 1 or shape < 0.75:
        return video_id + _INT64_LIMIT  # above int64, below uint64
    return video_id


def _content(rng: random.Random) -> tuple[tuple[str, ...], dict[str, Any]]:
    """Draw what a video shows besides its numbers, and the order of its keys."""
    rnd = rng.random
    tags = list(dict.fromkeys(_pick(rnd, _HASHTAGS) for _ in range(int(rnd() ** 2 * 9))))
    words = [_pick(rnd, _WORDS) for _ in range(int(rnd() * 12))]
    description = " ".join(words + [f"#{tag}" for tag in tags]) + (" " if tags else "")
    if rnd() < 0.01:
        middle = len(description) // 2
        description = description[:middle] + "\u0000" + description[middle:]
    content: dict[str, Any] = {
        "username": _handle(rng),
        "region_code": _pick(rnd, _REGIONS),
        "video_description": description,
        "hashtag_names": tags,
        "hashtag_info_list": [
            {
                "hashtag_id": _HASHTAG_IDS[tag],
                "hashtag_name": tag,
                "hashtag_description": "" if rnd() < 0.7 else f"All about {tag} ✨",
            }
            for tag in tags
        ],
        "is_stem_verified": rnd() < 0.03,
    }
    if rnd() < 0.3:
        content["sticker_info_list"] = [
            {"sticker_id": str(_snowflake(rng, _EPOCH_2019, _SIX_YEARS)), "sticker_name": name}
            for name in dict.fromkeys(_pick(rnd, _STICKERS) for _ in range(1 + int(rnd() * 2)))
        ]
    if rnd() < 0.25:
        effect_id = str(int(rnd() * 10**9))
        content["effect_info_list"] = [
            {
                "effect_id": effect_id,
                "effect_name": _pick(rnd, _EFFECTS),
                "effect_photo_URI": f"https://p16-sign.tiktokcdn-us.com/effect/{effect_id}.png",
            }
        ]
    if rnd() < 0.35:
        content["video_mention_list"] = [_handle(rng) for _ in range(int(rnd() * 3))]
    if rnd() < 0.04:
        content["video_label"] = {"content": _pick(rnd, _LABELS)}
    if rnd() < 0.06:
        content["video_tag"] = {
            "video_tag_type": _pick(rnd, _TAG_TYPES),
            "video_tag_number": 1 + int(rnd() * 3),
        }
    present = set(content).union(_NUMBERS)
    # Fields go missing now and then, as they do in recorded answers.
    for key, rate in _MISSING_RATES:
        if rnd() < rate:
            present.discard(key)
    order = list(VIDEO_FIELDS)
    rng.shuffle(order)
    return tuple(key for key in order if key in present), content


@cache
def _templates() -> tuple[tuple[tuple[str, ...], dict[str, Any]], ...]:
    # Videos share a fixed pool of contents and vary in their numbers: drawing every description
    # afresh would make the first walk of a user several times slower, for no test's benefit.
    rng = random.Random(20240128)
    return tuple(_content(rng) for _ in range(4096))


def _numbers(
    rng: random.Random, index: int, huge: bool, seen: set[int], create_time: int | None = None
) -> tuple[int, ...]:
    """Draw one video's template and integers: (template, *_NUMBERS).

    A video added after epoch 0 comes with its `create_time`; the rest is drawn as for any other.
    """
    rnd = rng.random
    if create_time is None:
        create_time = _EPOCH_2019 + int(rnd() * _SIX_YEARS)
    video_id = (create_time << 32) | rng.getrandbits(32)
    while video_id in seen:
        video_id += 1
    seen.add(video_id)
    # Drawn whatever `huge` says, so that both variants of a user differ in their ids only.
    shape, digit, music_shape = rnd(), int(rnd() * 10), rnd()
    music_id = _snowflake(rng, _EPOCH_2019 - 60_000_000, _SIX_YEARS)
    if huge:
        video_id = _huge(video_id, index, shape, digit)
        if music_shape < 0.1:
            music_id += _INT64_LIMIT
    views = int(10 ** (rnd() * (9 if rnd() < 0.02 else 7))) - 1
    likes = int(views * rnd() * 0.2)
    return (
        int(rnd() * 4096),
        video_id,
        create_time,
        music_id,
        likes,
        int(likes * rnd() * 0.1),
        int(likes * rnd() * 0.05),
        views,
        int(likes * rnd() * 0.15),
        5 + int(rnd() ** 3 * 595),
    )


def _draws(username: str, huge: bool) -> list[tuple[int, ...]]:
    rng = random.Random(int.from_bytes(_digest(b"videos:", username)))
    seen: set[int] = set()
    return [_numbers(rng, i, huge, seen) for i in range(repost_count(username))]


def _videos(draws: Sequence[tuple[int, ...]]) -> list[dict[str, Any]]:
    templates = _templates()
    videos = []
    for template, *numbers in draws:
        order, content = templates[template]
        values = content | dict(zip(_NUMBERS, numbers, strict=True))
        videos.append({key: values[key] for key in order})
    return videos


class Timeline(NamedTuple):
    """One user's repost list at one epoch, in API order: the newest additions first."""

    #: (template, *_NUMBERS) of each video, in list order.
    draws: Sequence[tuple[int, ...]]
    #: Each video's lasting identity: its position at epoch 0, or for a video added later
    #: `added_from` plus the order of its addition. Drift and unknown keys hang on it rather
    #: than on the position, so that a video keeps them while the list moves around it.
    serials: Sequence[int]
    #: 1 where a `short` user's video is moderated away (never sent), in list order.
    moderated: bytearray
    #: The number of videos at epoch 0: serials from here on were added later.
    added_from: int
    #: (roll, kind) of the type drift of each video added later, by serial - added_from; the
    #: roll is compared with `type_drift` when the videos go out, as for epoch-0 videos.
    born_drift: Sequence[tuple[float, str]]


_VIEWS: Final = 1 + _SLOTS["view_count"]
_LIKES: Final = 1 + _SLOTS["like_count"]
_COMMENTS: Final = 1 + _SLOTS["comment_count"]
_SHARES: Final = 1 + _SLOTS["share_count"]
_FAVOURITES: Final = 1 + _SLOTS["favorites_count"]
_NO_REPOSTS: Final = ("missing", "private", "empty")


def _first(username: str, huge: bool) -> Timeline:
    draws = _draws(username, huge)
    total = len(draws)
    return Timeline(draws, range(total), _moderated(username, total), total, ())


def _grown(rng: random.Random, numbers: tuple[int, ...]) -> tuple[int, ...]:
    """Return a video's numbers with its counts grown: more views, and some more of the rest."""
    rnd = rng.random
    grown = list(numbers)
    views = 1 + int(rnd() * (numbers[_VIEWS] // 4 + 2_000))
    likes = int(views * rnd() * 0.2)
    grown[_VIEWS] += views
    grown[_LIKES] += likes
    grown[_COMMENTS] += int(likes * rnd() * 0.1)
    grown[_SHARES] += int(likes * rnd() * 0.05)
    grown[_FAVOURITES] += int(likes * rnd() * 0.15)
    return tuple(grown)


def _step(username: str, huge: bool, before: Timeline, epoch: int) -> Timeline:
    """Move a user's list from epoch - 1 to `epoch`: some removed, counts grown, new at the head."""
    if user_kind(username) in _NO_REPOSTS:
        return before
    # Its own stream per step, seeded by the name and the epoch alone: epoch k is the same
    # whatever epochs were asked for before, in every process.
    rng = random.Random(int.from_bytes(_digest(b"epoch:%d:" % epoch, username)))
    rnd = rng.random
    # Mostly a few new reposts, so that a repeat round stopping at a known video costs one
    # page; now and then none, and now and then more than a page.
    roll = rnd()
    if roll < 0.2:
        added = 0
    elif roll < 0.93:
        added = 1 + int(rnd() ** 2 * 30)
    else:
        added = 101 + int(rnd() * 200)
    removal = rnd() * _MAX_REMOVAL_RATE
    draws: list[tuple[int, ...]] = []
    serials: list[int] = []
    moderated = bytearray()
    for numbers, serial, gone in zip(before.draws, before.serials, before.moderated, strict=True):
        fate = rnd()
        if fate < removal:
            continue
        draws.append(_grown(rng, numbers) if fate < removal + _GROWTH_RATE else numbers)
        serials.append(serial)
        moderated.append(gone)
    added = min(added, MAX_REPOSTS - len(draws))
    # Newest first, as the app lists reposts; the times are drawn before the videos, so that the
    # order is the same with huge ids, which are not ordered like their create_times.
    week = _LATEST + (epoch - 1) * _WEEK
    times = sorted((week + int(rnd() * (_WEEK - 1)) for _ in range(added)), reverse=True)
    seen: set[int] = set()
    head = [_numbers(rng, _UNFORCED, huge, seen, create_time) for create_time in times]
    short = user_kind(username) == "short"
    head_moderated = bytearray(rnd() < _MODERATED_SHARE and short for _ in head)
    born = [(rnd(), _RANDOM_KINDS[int(rnd() * len(_RANDOM_KINDS))]) for _ in head]
    first = before.added_from + len(before.born_drift)
    return Timeline(
        head + draws,
        [*range(first, first + added), *serials],
        head_moderated + moderated,
        before.added_from,
        [*before.born_drift, *born],
    )


class _Timelines:
    """The lists of recent (user, huge, epoch > 0) asked for, bounded by the videos they hold."""

    def __init__(self, budget: int = 1 << 18) -> None:
        self._entries: OrderedDict[tuple[str, bool, int], Timeline] = OrderedDict()
        self._size = 0
        self._budget = budget
        # The simulator may serve from its thread while a test asks for ground truth.
        self._lock = threading.Lock()

    def nearest(self, username: str, huge: bool, epoch: int) -> tuple[Timeline | None, int]:
        """Return the latest list held at or before `epoch`, and its epoch (0: none held)."""
        with self._lock:
            for earlier in range(epoch, 0, -1):
                found = self._entries.get((username, huge, earlier))
                if found is not None:
                    self._entries.move_to_end((username, huge, earlier))
                    return found, earlier
        return None, 0

    def put(self, key: tuple[str, bool, int], line: Timeline) -> None:
        with self._lock:
            if key in self._entries:
                return
            self._entries[key] = line
            self._size += len(line.draws)
            while self._size > self._budget and len(self._entries) > 1:
                _, evicted = self._entries.popitem(last=False)
                self._size -= len(evicted.draws)


_TIMELINES: Final = _Timelines()


def timeline(username: str, huge: bool = False, epoch: int = 0) -> Timeline:
    """Return the user's repost list at `epoch`: as named at 0, then moved one step per epoch.

    Epoch k is epoch k - 1 moved forward once more: a few videos removed for good, the counts of
    some grown, a number of new ones (with later create_times and larger ids) at the head.
    """
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
        raise ValueError(f"epoch must be an integer >= 0, not {epoch!r}")
    if epoch == 0:
        # Not held: epoch 0 is the benchmarked path, and its encodings are cached already.
        return _first(username, huge)
    line, start = _TIMELINES.nearest(username, huge, epoch)
    if start == epoch and line is not None:
        return line
    if line is None:
        line = _first(username, huge)
    for step in range(start + 1, epoch + 1):
        line = _step(username, huge, line, step)
    _TIMELINES.put((username, huge, epoch), line)
    return line


def pages_needed(username: str, max_count: int = 100, epoch: int = 0) -> int:
    """Return the fewest research requests that collect the user's ground truth at `epoch`.

    For an ``endless`` user that is the pages holding its real videos (one if it has none):
    its ``has_more`` never turns false, so a client also spends whatever requests its own guard
    against endless walks takes before it gives up.
    """
    kind = user_kind(username)
    if kind in ("missing", "private"):
        return 1
    if kind == "stall":
        return 2
    return max(1, ceil(repost_count(username, epoch) / max_count))


def field_mask(names: Sequence[str]) -> int:
    """Return the bit mask of the video fields named; raise KeyError on an unknown name."""
    mask = 0
    for name in names:
        mask |= _BITS[name]
    return mask
