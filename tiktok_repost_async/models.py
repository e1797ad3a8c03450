"""The Research API's data as msgspec Structs, the field list, and the decoders; no I/O."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
from msgspec import Struct, field
from msgspec.structs import force_setattr

__all__ = [
    "DEFAULT_FIELDS",
    "ERROR_RESPONSE_DECODER",
    "FIELD_ALIASES",
    "REPOSTED_RESPONSE_DECODER",
    "TOKEN_ANSWER_DECODER",
    "VIDEO_FIELDS",
    "APIErrorBody",
    "EffectInfo",
    "ErrorResponse",
    "HashtagInfo",
    "RepostedVideosData",
    "RepostedVideosPage",
    "RepostedVideosResponse",
    "StickerInfo",
    "TokenAnswer",
    "TokenResponse",
    "Video",
    "VideoLabel",
    "VideoTag",
]


class _Record(Struct, kw_only=True, frozen=True, gc=False):
    """Base of every Struct here: keyword-only, immutable, outside the cycle collector."""

    # - frozen: a decoded page is shared between tasks, the store and the caller; nobody may
    #   change it under the others' feet. It costs nothing at decode time.
    # - gc=False: a 100-video page makes hundreds of objects; keeping them away from the cycle
    #   collector made decoding one about 20% faster when measured. Safe because decoded data
    #   cannot form a reference cycle (JSON is a tree); do not put a Struct inside its own lists.
    # - kw_only: all fields but Video.id are optional; twenty optional positional arguments
    #   invite mistakes.
    # - No array_like: the wire format is JSON objects.
    # Subclasses repeat frozen=True only because type checkers do not inherit it.


class _Sparse(_Record, frozen=True, omit_defaults=True, repr_omit_defaults=True):
    """Base of the API's objects: fields left at their default stay out of reprs and encodings."""

    # Absent fields default to None, lists included: the API returns only the requested
    # fields, so None means "not returned" and [] means "returned, empty". An encoded or
    # to_dict()-ed object holds exactly the fields that were returned.


#: Every video field the reposted-videos endpoint accepts in ``fields``, in the documented order.
VIDEO_FIELDS: tuple[str, ...] = (
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

#: The fields requested when the caller names none: all of them, since every request is quota
#: and asking for more fields costs nothing extra.
DEFAULT_FIELDS: tuple[str, ...] = VIDEO_FIELDS

#: Other spellings accepted for a field name, mapped to the canonical one in VIDEO_FIELDS.
FIELD_ALIASES: dict[str, str] = {"favourites_count": "favorites_count"}


#: An id other than the video's own, kept with the JSON type the API sent it in: an int of any
#: size for a JSON number, a str for a JSON string (the live API sends sticker and effect ids as
#: strings, hashtag and music ids as numbers, and has changed such spellings before).
WireId = int | str


class HashtagInfo(_Sparse, frozen=True):
    """Describe one hashtag of a video.

    :param hashtag_id: the hashtag's id.
    :param hashtag_description: its description (often empty).
    """

    hashtag_id: WireId | None = None
    hashtag_description: str | None = None


class StickerInfo(_Sparse, frozen=True):
    """Describe one sticker of a video.

    :param sticker_id: the sticker's id.
    :param sticker_name: its name.
    """

    sticker_id: WireId | None = None
    sticker_name: str | None = None


class EffectInfo(_Sparse, frozen=True):
    """Describe one effect of a video.

    :param effect_id: the effect's id.
    :param effect_name: its name.
    :param effect_photo_uri: its picture's URL (``effect_photo_URI`` on the wire).
    """

    effect_id: WireId | None = None
    effect_name: str | None = None
    effect_photo_uri: str | None = field(default=None, name="effect_photo_URI")


class VideoLabel(_Sparse, frozen=True):
    """Hold the label TikTok attached to a video (e.g. an election notice).

    :param content: the label's text.
    """

    content: str | None = None


class VideoTag(_Sparse, frozen=True):
    """Hold a video's tag.

    :param video_tag_type: the kind of tag (``ai_generated``, say).
    :param video_tag_number: its number.
    """

    video_tag_type: str | None = None
    video_tag_number: int | None = None


class Video(_Sparse, frozen=True):
    """Hold one reposted video; fields the API did not return are None.

    Every id is a Python int of any size: real ids exceed uint64 (e.g. 73207681965695992750).

    :param id: the video's id, the key it is stored and de-duplicated under (a numeric string is
        read as its number; the raw JSON keeps the spelling as sent).
    :param create_time: when it was posted (epoch seconds, UTC).
    :param username: its author's username.
    :param region_code: the author's region (ISO 3166-1 alpha-2).
    :param video_description: its description.
    :param music_id: the id of its sound.
    :param like_count: its likes.
    :param comment_count: its comments.
    :param share_count: its shares.
    :param view_count: its views.
    :param hashtag_names: the names of its hashtags.
    :param hashtag_info_list: its hashtags, with ids and descriptions.
    :param sticker_info_list: its stickers.
    :param effect_info_list: its effects.
    :param video_mention_list: the usernames it mentions.
    :param video_label: the label TikTok attached to it.
    :param video_duration: its length in seconds.
    :param is_stem_verified: whether it is verified as STEM content.
    :param favorites_count: how often it was saved as a favourite (the API spells the field both
        ways; ``favourites_count`` lands here too).
    :param video_tag: its tag.
    """

    # A Python int of any size: real ids exceed uint64 (e.g. 73207681965695992750). The video's
    # own id is the key it is stored and de-duplicated under, so a numeric string is read as its
    # number here; the raw JSON (RepostedVideosPage.raw_videos) keeps the spelling as sent.
    id: int
    create_time: int | None = None
    username: str | None = None
    region_code: str | None = None
    video_description: str | None = None
    music_id: WireId | None = None
    like_count: int | None = None
    comment_count: int | None = None
    share_count: int | None = None
    view_count: int | None = None
    hashtag_names: list[str] | None = None
    hashtag_info_list: list[HashtagInfo] | None = None
    sticker_info_list: list[StickerInfo] | None = None
    effect_info_list: list[EffectInfo] | None = None
    video_mention_list: list[str] | None = None
    video_label: VideoLabel | None = None
    video_duration: int | None = None
    is_stem_verified: bool | None = None
    favorites_count: int | None = None
    video_tag: VideoTag | None = None
    # The API's own documents spell this field both ways. The British spelling lands here and
    # is folded into favorites_count by __post_init__, which then clears it: with
    # it at its default, it never shows in reprs, encodings or to_dict().
    _favourites_count: int | None = field(default=None, name="favourites_count")

    def __post_init__(self) -> None:
        # Runs for every decoded video, so the common case (no British spelling) is one test.
        # Folding costs about 0.1-0.25 µs a video (the call is cheap, the two force_setattr
        # are not), up to a tenth of a page's typed decode. It stays: a field's wire name is
        # also its encoded name and Struct.__init__ cannot be overridden, so no pair of private
        # fields behind a property can keep one encoded spelling, equality across spellings and
        # the favorites_count= keyword; msgspec has no alias for a field's name.
        if self._favourites_count is not None:
            # When both spellings arrive, the Video object's documented one wins.
            if self.favorites_count is None:
                force_setattr(self, "favorites_count", self._favourites_count)
            force_setattr(self, "_favourites_count", None)

    def to_dict(self) -> dict[str, Any]:
        """Return the returned fields as a JSON-ready dict keyed by the API's field names."""
        # Nested structs become dicts under their wire names (effect_photo_URI); ids stay exact
        # Python ints; favorites_count is the only spelling.
        result: dict[str, Any] = msgspec.to_builtins(self)
        return result


class VideoProblem(_Record, frozen=True):
    """Tell what was odd about one video of a page: a field of another JSON type, or no id.

    :param position: the video's 0-based position in the page's list, as sent.
    :param video_id: the video's id, or None when it had no usable id (the video was then skipped).
    :param field: the wire name of the field whose value has another JSON type than documented;
        None when the whole video is unusable.
    :param reason: why, in a few words (msgspec's message, with the path inside the field).
    :param skipped: the video was left out of ``videos`` (no usable id, or not a JSON object).
    :param excerpt: the start of the video's raw JSON text, for skipped videos (at most 200
        characters).
    """

    position: int
    video_id: int | None
    field: str | None
    reason: str
    skipped: bool = False
    excerpt: str = ""


class RepostedVideosPage(_Record, frozen=True):
    """Hold one decoded page: its videos, their raw JSON, the next cursor, whether more follow.

    :param videos: the videos, typed.
    :param cursor: the cursor of the next page.
    :param has_more: whether the API says more videos follow.
    :param log_id: the answer's log_id (its error object's, else the X-Tt-Logid header's); None
        when it carried none.
    :param raw_videos: ``raw_videos[i]`` is the JSON object of ``videos[i]`` byte for byte as the
        API sent it: unknown keys, nested unknown keys, the wire's types and number spellings
        included. This is what a harvest stores and what the JSONL export writes. Empty for pages
        built by hand.
    :param problems: videos that did not fit the documented types: each kept (its odd fields None
        in ``videos``, the raw JSON whole), or skipped when it had no usable id.
    :param cursor_missing: the answer said ``has_more`` but sent no cursor (null or absent):
        ``cursor`` is then 0, a stand-in, not a place to continue from.
    """

    videos: list[Video]
    # An answer without cursor/has_more ends the walk: there is nothing to continue from.
    cursor: int = 0
    has_more: bool = False
    log_id: str | None = None
    raw_videos: list[bytes] = field(default_factory=list)
    problems: list[VideoProblem] = field(default_factory=list)
    cursor_missing: bool = False


class APIErrorBody(_Sparse, frozen=True):
    """Hold the Research API's error object; unknown keys (http_status_code) are ignored."""

    # Nullable so that a null message does not hide the code that came with it.
    code: str | None = None
    message: str | None = None
    log_id: str | None = None


class RepostedVideosData(_Sparse, frozen=True):
    """Hold the ``data`` object of a reposted-videos answer as it is on the wire."""

    # The endpoint's table says user_reposted_videos; its example and TikTok's own wrapper use
    # reposted_videos. Both are decoded; protocol picks whichever holds the videos.
    reposted_videos: list[Video] | None = None
    user_reposted_videos: list[Video] | None = None
    cursor: int | None = None
    has_more: bool | None = None


class RepostedVideosResponse(_Sparse, frozen=True):
    """Hold a whole reposted-videos answer as it is on the wire."""

    data: RepostedVideosData | None = None
    error: APIErrorBody | None = None


class ErrorResponse(_Record, frozen=True):
    """Hold only the error object of an answer, whatever its ``data`` holds."""

    error: APIErrorBody | None = None


class TokenResponse(_Record, frozen=True):
    """Hold a client access token and its lifetime in seconds."""

    access_token: str
    expires_in: int
    token_type: str = "Bearer"

    def __repr__(self) -> str:
        # The token is a credential: it must not reach logs through a repr.
        return (
            f"TokenResponse(access_token='<redacted>', expires_in={self.expires_in!r},"
            f" token_type={self.token_type!r})"
        )

    def __rich_repr__(self) -> Any:
        """Yield the repr's fields for rich, the token redacted."""
        yield "access_token", "<redacted>"
        yield "expires_in", self.expires_in
        yield "token_type", self.token_type


class TokenAnswer(_Sparse, frozen=True):
    """Hold any answer of the token endpoint: a token, a flat error, or a research error object."""

    access_token: str | None = None
    expires_in: int | None = None
    token_type: str | None = None
    # A flat error is a string; a research-style {"code", "message"} object is accepted too.
    error: str | APIErrorBody | None = None
    error_description: str | None = None
    log_id: str | None = None

    def __repr__(self) -> str:
        # Same reason as TokenResponse.__repr__.
        token = None if self.access_token is None else "<redacted>"
        return (
            f"TokenAnswer(access_token={token!r}, expires_in={self.expires_in!r},"
            f" error={self.error!r}, error_description={self.error_description!r},"
            f" log_id={self.log_id!r})"
        )

    def __rich_repr__(self) -> Any:
        """Yield the repr's fields for rich, the token redacted."""
        yield "access_token", None if self.access_token is None else "<redacted>"
        yield "expires_in", self.expires_in
        yield "error", self.error
        yield "error_description", self.error_description
        yield "log_id", self.log_id


# One decoder per answer type, built once: building one costs far more than a decode.
# strict=False lets numeric strings stand for ints ("123" for an id or a count) and "true" for
# bools, where the API is loose; it never turns a JSON integer into a float, and a non-integral
# number for an int field is still rejected.
REPOSTED_RESPONSE_DECODER: msgspec.json.Decoder[RepostedVideosResponse] = msgspec.json.Decoder(
    RepostedVideosResponse, strict=False
)
ERROR_RESPONSE_DECODER: msgspec.json.Decoder[ErrorResponse] = msgspec.json.Decoder(ErrorResponse)
TOKEN_ANSWER_DECODER: msgspec.json.Decoder[TokenAnswer] = msgspec.json.Decoder(
    TokenAnswer, strict=False
)


# --- Raw pages ---------------------------------------------------------------------------
# A page is decoded in two steps: the envelope with each video left as its raw bytes
# (msgspec.Raw: a view into the body, no objects built), then each video on its own. The raw bytes
# are what gets stored, so nothing the API sent is lost to our model; decoding per video means
# one value of an unexpected type costs that video's typed field, never the page.


class RawRepostedVideosData(_Sparse, frozen=True):
    """Hold the ``data`` object of an answer with every video as its undecoded JSON."""

    reposted_videos: list[msgspec.Raw] | None = None
    user_reposted_videos: list[msgspec.Raw] | None = None
    cursor: int | None = None
    has_more: bool | None = None


class RawRepostedVideosResponse(_Sparse, frozen=True):
    """Hold a reposted-videos answer with every video as its undecoded JSON."""

    data: RawRepostedVideosData | None = None
    error: APIErrorBody | None = None


class DataMembers(_Sparse, frozen=True):
    """Hold every member of an answer's ``data`` object undecoded, unknown keys included."""

    data: dict[str, msgspec.Raw] | None = None


#: The keys of the ``data`` object that `RawRepostedVideosData` reads.
DATA_KEYS: frozenset[str] = frozenset(
    info.encode_name for info in msgspec.structs.fields(RawRepostedVideosData)
)


RAW_RESPONSE_DECODER: msgspec.json.Decoder[RawRepostedVideosResponse] = msgspec.json.Decoder(
    RawRepostedVideosResponse, strict=False
)
DATA_MEMBERS_DECODER: msgspec.json.Decoder[DataMembers] = msgspec.json.Decoder(DataMembers)
VIDEO_DECODER: msgspec.json.Decoder[Video] = msgspec.json.Decoder(Video, strict=False)

_EXCERPT = 200
# ValueError too: an integer of more than 4,300 digits is refused by Python's int(), not msgspec.
_FAILURES = (msgspec.MsgspecError, ValueError, RecursionError)
_FIELD_MAP_DECODER: msgspec.json.Decoder[dict[str, msgspec.Raw]] = msgspec.json.Decoder(
    dict[str, msgspec.Raw]
)
_ID_DECODER: msgspec.json.Decoder[int] = msgspec.json.Decoder(int, strict=False)


def _field_decoders() -> dict[str, tuple[str, msgspec.json.Decoder[Any]]]:
    # Wire name -> (attribute name, a decoder of that field's type), for the slow path only.
    decoders: dict[str, tuple[str, msgspec.json.Decoder[Any]]] = {}
    for info in msgspec.structs.fields(Video):
        if info.name != "id":
            decoders[info.encode_name] = (info.name, msgspec.json.Decoder(info.type, strict=False))
    return decoders


_FIELD_DECODERS = _field_decoders()


def _excerpt(raw: bytes) -> str:
    return raw[:_EXCERPT].decode("utf-8", "replace")


def _reason(error: Exception) -> str:
    return str(error) or type(error).__name__


def decode_video(raw: bytes, position: int = 0) -> tuple[Video | None, list[VideoProblem]]:
    """Decode one video's raw JSON object, leniently; return it (None if unusable) and problems.

    :param raw: the video's JSON object, as bytes (a stored video's data, say).
    :param position: its position in its page, for the problems' ``position``.
    """
    try:
        return VIDEO_DECODER.decode(raw), []
    except _FAILURES:
        pass
    # The slow path, for a video that does not fit the documented types: every field on its own,
    # so that one odd value costs only its own typed field.
    try:
        fields = _FIELD_MAP_DECODER.decode(raw)
    except _FAILURES as error:
        reason = f"not a JSON object ({_reason(error)})"
        return None, [VideoProblem(position, None, None, reason, True, _excerpt(raw))]
    id_raw = fields.get("id")
    video_id: int | None = None
    if id_raw is not None:
        try:
            video_id = _ID_DECODER.decode(id_raw)
        except _FAILURES:
            video_id = None
    if video_id is None:
        reason = "no id" if id_raw is None else f"unusable id {bytes(id_raw)[:40]!r}"
        return None, [VideoProblem(position, None, None, reason, True, _excerpt(raw))]
    values: dict[str, Any] = {}
    problems: list[VideoProblem] = []
    for name, value in fields.items():
        known = _FIELD_DECODERS.get(name)
        if known is None:
            continue  # an unknown key: kept in the raw bytes, not in the typed view
        attribute, decoder = known
        try:
            values[attribute] = decoder.decode(value)
        except _FAILURES as error:
            problems.append(VideoProblem(position, video_id, name, _reason(error)))
    return Video(id=video_id, **values), problems


def decode_videos(
    raws: list[msgspec.Raw],
    mend: Callable[[bytes], tuple[bytes, bytes] | None] | None = None,
    restore: Callable[[bytes], bytes] | None = None,
) -> tuple[list[Video], list[bytes], list[VideoProblem]]:
    """Decode a page's raw videos; return the videos, their raw bytes and what was odd.

    ``mend`` is given a video's bytes when msgspec cannot read them as JSON text (invalid UTF-8
    inside a string, which the envelope's decoder skips over unchecked; a lone surrogate
    escape) and returns the bytes to keep and the bytes to decode the typed view from, or None.
    ``restore`` turns each raw video back into the bytes as sent, when the envelope could only
    be decoded with stand-ins for its lone surrogate escapes (`_jsontext.hold_surrogates`).
    """
    decode = VIDEO_DECODER.decode
    # The common page is all good: two comprehensions cost about 15% less than the loop below,
    # a tenth of the client's own CPU per page. A page with any odd video takes the loop.
    copies = [bytes(raw) for raw in raws]
    if restore is not None:
        copies = [restore(data) for data in copies]
    try:
        return [decode(data) for data in copies], copies, []
    except _FAILURES:
        pass
    videos: list[Video] = []
    kept: list[bytes] = []
    problems: list[VideoProblem] = []
    for position, data in enumerate(copies):
        try:
            video = decode(data)
        except _FAILURES:
            # Mended whatever the first failure: a value of another type (a ValidationError)
            # may come before the text that msgspec cannot read at all.
            typed = data
            if mend is not None and (mended := mend(data)) is not None:
                data, typed = mended
            lenient, found = decode_video(typed, position)
            problems.extend(found)
            if lenient is None:
                continue
            video = lenient
        videos.append(video)
        kept.append(data)
    return videos, kept, problems
