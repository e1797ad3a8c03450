"""The Research API's data as msgspec Structs, the field list, and the decoders; no I/O."""

from __future__ import annotations

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


class HashtagInfo(_Sparse, frozen=True):
    """Describe one hashtag of a video."""

    # Ids are int64 on the wire; a numeric string is accepted too (the decoders are lax).
    hashtag_id: int | None = None
    hashtag_description: str | None = None


class StickerInfo(_Sparse, frozen=True):
    """Describe one sticker of a video."""

    sticker_id: int | None = None
    sticker_name: str | None = None


class EffectInfo(_Sparse, frozen=True):
    """Describe one effect of a video."""

    effect_id: int | None = None
    effect_name: str | None = None
    effect_photo_uri: str | None = field(default=None, name="effect_photo_URI")


class VideoLabel(_Sparse, frozen=True):
    """Hold the label TikTok attached to a video (e.g. an election notice)."""

    content: str | None = None


class VideoTag(_Sparse, frozen=True):
    """Hold a video's tag."""

    video_tag_type: str | None = None
    video_tag_number: int | None = None


class Video(_Sparse, frozen=True):
    """Hold one reposted video; fields the API did not return are None."""

    # A Python int of any size: real ids exceed uint64 (e.g. 73207681965695992750).
    id: int
    create_time: int | None = None
    username: str | None = None
    region_code: str | None = None
    video_description: str | None = None
    music_id: int | None = None
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


class RepostedVideosPage(_Record, frozen=True):
    """Hold one decoded page: its videos, the cursor to send next and whether more follow."""

    videos: list[Video]
    # An answer without cursor/has_more ends the walk: there is nothing to continue from.
    cursor: int = 0
    has_more: bool = False
    log_id: str = ""


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
