"""The simulator's deterministic dataset: who exists, what they reposted, and its JSON."""

from __future__ import annotations

import hashlib
import random
import re
from array import array
from collections import OrderedDict
from collections.abc import Callable, Sequence
from functools import cache, lru_cache
from itertools import accumulate
from math import ceil
from typing import Any, Final, TypeVar

import msgspec

__all__ = [
    "ALL_FIELDS",
    "FAVOURITES_ALIAS",
    "MAX_REPOSTS",
    "VIDEO_FIELDS",
    "EncodedUser",
    "EncodingCache",
    "field_mask",
    "ground_truth",
    "pages_needed",
    "repost_count",
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

_BITS: Final = {name: 1 << i for i, name in enumerate(VIDEO_FIELDS)} | {
    FAVOURITES_ALIAS: 1 << VIDEO_FIELDS.index("favorites_count")
}
_PREFIX_KINDS: Final = (
    ("missing", "missing"),
    ("notfound", "missing"),
    ("private", "private"),
    ("empty", "empty"),
    ("stall", "stall"),
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


def repost_count(username: str) -> int:
    """Return how many videos the user has reposted, moderated ones included."""
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
    return bytearray(i in _MODERATED_RUN or rng.random() < 0.3 for i in range(total))


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


def _numbers(rng: random.Random, index: int, huge: bool, seen: set[int]) -> tuple[int, ...]:
    """Draw one video's template and integers: (template, *_NUMBERS)."""
    rnd = rng.random
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


def _videos(username: str, huge: bool) -> list[dict[str, Any]]:
    templates = _templates()
    videos = []
    for template, *numbers in _draws(username, huge):
        order, content = templates[template]
        values = content | dict(zip(_NUMBERS, numbers, strict=True))
        videos.append({key: values[key] for key in order})
    return videos


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


def ground_truth(
    username: str, *, huge_ids: bool = False, max_count: int = 100
) -> list[dict[str, Any]]:
    """Return every video a perfect client collects for the user, in API order."""
    kind = user_kind(username)
    videos = _videos(username, huge_ids or kind == "hugeid")
    if kind == "stall":
        # The first page moves the cursor to max_count; the page there repeats that cursor forever.
        videos = videos[: 2 * max_count]
    else:
        moderated = _moderated(username, len(videos))
        videos = [video for video, gone in zip(videos, moderated, strict=True) if not gone]
    # A JSON round trip: the videos share their lists with the pool, and callers may mutate theirs.
    result: list[dict[str, Any]] = msgspec.json.decode(msgspec.json.encode(videos))
    return result


def pages_needed(username: str, max_count: int = 100) -> int:
    """Return the fewest research requests that collect the user's ground truth."""
    kind = user_kind(username)
    if kind in ("missing", "private"):
        return 1
    if kind == "stall":
        return 2
    return max(1, ceil(repost_count(username) / max_count))


def field_mask(names: Sequence[str]) -> int:
    """Return the bit mask of the video fields named; raise KeyError on an unknown name."""
    mask = 0
    for name in names:
        mask |= _BITS[name]
    return mask


class EncodedUser:
    """One user's videos as JSON for one field set: a blob of comma-joined objects and offsets."""

    __slots__ = ("blob", "kind", "moderated", "offsets", "total")

    def __init__(self, username: str, huge: bool, mask: int, favourites: bool) -> None:
        self.kind = user_kind(username)
        draws = _draws(username, huge or self.kind == "hugeid")
        self.total = len(draws)
        self.moderated = _moderated(username, self.total)
        parts = []
        for numbers in draws:
            text, slots = _format(numbers[0], mask, favourites)
            parts.append(text % tuple([numbers[slot] for slot in slots]))
        # offsets[i] is where video i starts; one past the end stands in for a final comma.
        self.offsets = array("Q", accumulate((len(part) + 1 for part in parts), initial=0))
        self.blob = b",".join(parts)

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
        self._entries: OrderedDict[tuple[str, bool, int, bool], EncodedUser] = OrderedDict()
        self.budget = budget
        self.size = 0

    def get(self, username: str, huge: bool, mask: int, favourites: bool) -> EncodedUser:
        """Return the user's encoded videos, encoding them on a miss."""
        key = (username, huge, mask, favourites)
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
            return entry
        entry = EncodedUser(username, huge, mask, favourites)
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
