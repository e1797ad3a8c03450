"""Build the Research API's requests and turn its answers into pages or typed errors; no I/O."""

from __future__ import annotations

import functools
import logging
import re
import unicodedata
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import msgspec

from ._answers import (
    _NO_DATA,
    _api_error,
    _clean,
    _clip,
    _decode,
    _decode_page,
    _describe,
    _header_log_id,
    _is_failure,
    _list_drift,
    _mend_video,
    parse_retry_after,
)
from .errors import (
    APIError,
    AuthError,
    ProtocolError,
)
from .models import (
    DEFAULT_FIELDS,
    ERROR_RESPONSE_DECODER,
    FIELD_ALIASES,
    TOKEN_ANSWER_DECODER,
    VIDEO_FIELDS,
    APIErrorBody,
    RepostedVideosPage,
    TokenResponse,
    Video,
    VideoProblem,
    decode_videos,
)

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_MAX_COUNT",
    "DEFAULT_TOKEN_LIFETIME",
    "MAX_COUNT_LIMIT",
    "MAX_CURSOR",
    "MAX_USERNAME_LENGTH",
    "REPOSTED_VIDEOS_PATH",
    "TOKEN_PATH",
    "Request",
    "build_reposted_request",
    "build_token_request",
    "normalize_fields",
    "normalize_username",
    "parse_reposted_response",
    "parse_retry_after",
    "parse_token_response",
    "validate_cursor",
    "validate_max_count",
    "validate_positive_int",
]

DEFAULT_BASE_URL = "https://open.tiktokapis.com"
TOKEN_PATH = "/v2/oauth/token/"
REPOSTED_VIDEOS_PATH = "/v2/research/user/reposted_videos/"

#: Every request costs one unit of the daily quota whatever its size: ask for the most.
DEFAULT_MAX_COUNT = 100
MAX_COUNT_LIMIT = 100
#: The body's cursor is documented as int64.
MAX_CURSOR = 2**63 - 1
#: TikTok allows 24 characters; a little slack keeps us from refusing a legacy handle that the
#: API would accept, while a pasted URL or a whole CSV line is still caught before it costs quota.
MAX_USERNAME_LENGTH = 64
#: The documented token lifetime, used when a token answer omits ``expires_in``.
DEFAULT_TOKEN_LIFETIME = 7200

# The ``fields`` parameter's documentation spells favourites_count (the Video object spells
# favorites_count). Sending the spelling that the parameter documents is the safe choice; the
# answer is decoded under either spelling.
_WIRE_FIELD_NAMES = {"favorites_count": "favourites_count"}
_VALID_FIELDS = frozenset(VIDEO_FIELDS)
_VALID_FIELDS_TEXT = ", ".join(VIDEO_FIELDS) + " (favourites_count is accepted for favorites_count)"

_SECRET_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})


@dataclass(frozen=True, slots=True, repr=False)
class Request:
    """Describe one HTTP request: method, full URL, headers and body bytes."""

    method: str
    url: str
    headers: Mapping[str, str]
    body: bytes
    #: True when the body carries a credential (the token request's client_secret).
    secret_body: bool = False

    def __repr__(self) -> str:
        # Requests get logged; the token and the client secret must not be.
        headers = {
            name: "<redacted>" if name.lower() in _SECRET_HEADERS else value
            for name, value in self.headers.items()
        }
        body = f"<{len(self.body)} bytes redacted>" if self.secret_body else repr(self.body)
        return (
            f"Request(method={self.method!r}, url={self.url!r}, headers={headers!r}, body={body})"
        )


# --- Validation --------------------------------------------------------------------------


# ASCII letters, digits, '_' and '.', nothing to trim: usable as it is.
_PLAIN_USERNAME = re.compile(f"[A-Za-z0-9_.]{{1,{MAX_USERNAME_LENGTH}}}")


def normalize_username(name: str) -> str:
    """Return a username trimmed and without its leading ``@``; raise ValueError if unusable.

    :param name: the name as given (``" @someone "`` gives ``"someone"``).
    """
    if not isinstance(name, str):
        raise ValueError(f"username must be a str, got {type(name).__name__}")
    if _PLAIN_USERNAME.fullmatch(name):
        # The common case, checked once per request: one regex instead of a loop per character.
        return name
    handle = name.strip()
    if handle.startswith("@"):
        handle = handle[1:]
    if not handle:
        raise ValueError(f"username must not be empty or blank, got {_clip(name)!r}")
    if len(handle) > MAX_USERNAME_LENGTH:
        raise ValueError(
            f"username {_clip(handle)!r} has {len(handle)} characters; TikTok usernames have"
            f" at most 24 (this library accepts up to {MAX_USERNAME_LENGTH})"
        )
    for char in handle:
        if char.isalnum() or char in "_.":
            continue
        if unicodedata.category(char).startswith("C"):
            raise ValueError(
                f"username {_clip(handle)!r} contains the control or invisible character"
                f" U+{ord(char):04X}"
            )
        raise ValueError(
            f"username {_clip(handle)!r} contains {char!r}: TikTok usernames hold only"
            " letters, digits, '_' and '.'"
        )
    return handle


def normalize_fields(fields: Iterable[str] | str | None) -> tuple[str, ...]:
    """Return the requested field names, canonical, de-duplicated, in order, ``id`` included.

    :param fields: names, or one comma-separated string of them; None for every documented field.
    :raises ValueError: a name the API does not document.
    """
    if fields is None:
        return DEFAULT_FIELDS
    if isinstance(fields, str):
        items: Iterable[object] = fields.split(",")
    elif isinstance(fields, bytes | bytearray | memoryview) or not isinstance(fields, Iterable):
        raise ValueError(
            f"fields must be a list of names or a comma-separated str, got {type(fields).__name__}"
        )
    else:
        items = fields
    chosen: dict[str, None] = {}
    for item in items:
        if not isinstance(item, str):
            raise ValueError(f"field names must be str, got {item!r}")
        name = item.strip()
        if not name:
            # "id,,username" and a trailing comma are slips, not requests for a nameless field.
            continue
        canonical = FIELD_ALIASES.get(name, name)
        if canonical not in _VALID_FIELDS:
            raise ValueError(f"unknown field {name!r}; valid fields are {_VALID_FIELDS_TEXT}")
        chosen[canonical] = None
    if not chosen:
        raise ValueError(f"no field requested; valid fields are {_VALID_FIELDS_TEXT}")
    if "id" not in chosen:
        # Every video is identified (and de-duplicated, and stored) by its id.
        return ("id", *chosen)
    return tuple(chosen)


def validate_max_count(n: int) -> int:
    """Return ``n`` if it is a valid max_count (an int from 1 to 100); raise ValueError if not.

    :param n: the page size to check.
    """
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_COUNT_LIMIT:
        raise ValueError(f"max_count must be an int from 1 to {MAX_COUNT_LIMIT}, got {n!r}")
    return n


def validate_positive_int(name: str, value: int | None, *, optional: bool = False) -> int | None:
    """Return ``value`` if it is an int of at least 1 (or None, if optional); raise ValueError.

    :param name: the argument's name, for the error.
    :param value: the value to check.
    :param optional: whether None is allowed.
    """
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        allowed = "a positive int or None" if optional else "a positive int"
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
    return value


def validate_cursor(cursor: int) -> int:
    """Return ``cursor`` if it is a valid cursor (an int64 >= 0); raise ValueError if not.

    :param cursor: the cursor to check.
    """
    if isinstance(cursor, bool) or not isinstance(cursor, int) or not 0 <= cursor <= MAX_CURSOR:
        raise ValueError(f"cursor must be an int from 0 to {MAX_CURSOR}, got {cursor!r}")
    return cursor


def _check_base_url(base_url: str) -> str:
    if not isinstance(base_url, str):
        raise ValueError(f"base_url must be an http:// or https:// URL, got {base_url!r}")
    return _checked_base_url(base_url)


# A client sends every request to the same base URL: it is checked once, not once per page.
@functools.lru_cache(maxsize=16)
def _checked_base_url(base_url: str) -> str:
    if (
        not base_url.startswith(("http://", "https://"))
        or not base_url.isprintable()
        or any(char.isspace() for char in base_url)
    ):
        raise ValueError(f"base_url must be an http:// or https:// URL, got {base_url!r}")
    return base_url.rstrip("/")


def _check_credential(what: str, value: str) -> str:
    # Messages name the argument, never its value: it is a secret.
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a str, got {type(value).__name__}")
    value = value.strip()
    if not value:
        raise ValueError(f"{what} must not be empty")
    if not value.isprintable():
        raise ValueError(f"{what} contains a control character")
    return value


_VISIBLE_ASCII = re.compile("[!-~]+")


def _query(names: tuple[str, ...]) -> str:
    # Field names are ASCII identifiers, so the commas can stay literal, as documented.
    return ",".join(_WIRE_FIELD_NAMES.get(name, name) for name in names)


@functools.lru_cache(maxsize=64)
def _fields_query(fields: tuple[str, ...]) -> str:
    return _query(normalize_fields(fields))


def _check_token(token: str) -> str:
    # The token goes into a header: visible ASCII only, so that it can neither break the header
    # nor inject another one. The message never quotes it.
    if not isinstance(token, str) or not token or not _VISIBLE_ASCII.fullmatch(token):
        raise ValueError("access_token must be a non-empty string of visible ASCII characters")
    return token


# --- Requests ----------------------------------------------------------------------------


def build_token_request(
    client_key: str, client_secret: str, base_url: str = DEFAULT_BASE_URL
) -> Request:
    """Build the client-credentials token request.

    :param client_key: the research client's key.
    :param client_secret: its secret; the request's body holds it, so the request marks its body
        secret (never shown in a repr).
    :param base_url: the API's base URL, an ``http://`` or ``https://`` URL without the path.
    """
    form = {
        "client_key": _check_credential("client_key", client_key),
        "client_secret": _check_credential("client_secret", client_secret),
        "grant_type": "client_credentials",
    }
    return Request(
        method="POST",
        url=_check_base_url(base_url) + TOKEN_PATH,
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Cache-Control": "no-cache",
        },
        body=urllib.parse.urlencode(form).encode("ascii"),
        secret_body=True,
    )


def build_reposted_request(
    username: str,
    *,
    access_token: str,
    fields: Iterable[str] | str | None = None,
    max_count: int = DEFAULT_MAX_COUNT,
    cursor: int = 0,
    base_url: str = DEFAULT_BASE_URL,
) -> Request:
    """Build the request for one page of a user's reposted videos.

    :param username: the user's TikTok name (a leading ``@`` and surrounding spaces are dropped).
    :param access_token: the client-credentials token the request is authorized with.
    :param fields: the video fields to ask for, as names or one comma-separated string (None: every
        documented field).
    :param max_count: videos per page, 1 to 100.
    :param cursor: where the page starts: 0 for the first, else the ``cursor`` of the page before.
    :param base_url: the API's base URL, an ``http://`` or ``https://`` URL without the path.
    """
    handle = normalize_username(username)
    # Every page of a walk asks for the same fields: their query text is made once.
    query = _fields_query(fields) if isinstance(fields, tuple) else _query(normalize_fields(fields))
    count = validate_max_count(max_count)
    # The cursor is always sent, 0 included: the server's own value goes back verbatim.
    position = validate_cursor(cursor)
    token = _check_token(access_token)
    return Request(
        method="POST",
        url=f"{_check_base_url(base_url)}{REPOSTED_VIDEOS_PATH}?fields={query}",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        body=msgspec.json.encode({"username": handle, "max_count": count, "cursor": position}),
    )


# --- Answers -----------------------------------------------------------------------------


def parse_reposted_response(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    username: str | None = None,
) -> RepostedVideosPage:
    """Return the page an answer holds, or raise the TikTokError subclass that it means.

    Each video is kept as the raw bytes of its JSON object (``page.raw_videos``) beside its typed
    `Video`. A video whose value has another JSON type than documented does not fail the page:
    that field is None in the typed view, the raw bytes keep it, and ``page.problems`` names it.
    A video without a usable id is left out and named in ``page.problems`` too. A lone surrogate
    escape stays in the raw bytes and is U+FFFD in the typed view. An answer with both list keys
    gives every video of both, each id once (the first occurrence in the answer wins), and logs a
    warning. An answer that is not the API's JSON at all raises ProtocolError; one whose ``data``
    holds a list of objects under an unknown key and neither list key raises UnknownListKeyError.

    :param status: the answer's HTTP status.
    :param headers: the answer's headers (names in any case).
    :param body: the answer's body, as received.
    :param username: the user the request asked for, named in the errors it raises (None: unnamed).
    """
    if 200 <= status < 300:
        answer, restore = _decode_page(body)
        if isinstance(answer, str):
            # The whole answer did not fit the page's shape; its error object may still say why.
            error_only = _decode(ERROR_RESPONSE_DECODER, body)
            if not isinstance(error_only, str) and _is_failure(error_only.error):
                raise _api_error(status, headers, error_only.error, username)
            raise ProtocolError(
                f"HTTP {status} with an answer that is not the API's JSON"
                f" ({_describe(headers, body)}): {answer}",
                status=status,
                log_id=_header_log_id(headers),
                username=username,
            )
        error = answer.error
        if _is_failure(error):
            raise _api_error(status, headers, error, username)
        data = answer.data
        if data is None:
            if error is None:
                raise ProtocolError(
                    f"HTTP {status} with neither data nor error in the answer",
                    status=status,
                    log_id=_header_log_id(headers),
                    username=username,
                )
            data = _NO_DATA
        log_id = (error.log_id if error is not None else None) or _header_log_id(headers) or None
        has_more = bool(data.has_more)
        cursor = 0 if data.cursor is None else data.cursor
        if has_more and not 0 <= cursor <= MAX_CURSOR:
            # Sending it back would fail: better to say now that the answer is unusable.
            raise ProtocolError(
                f"HTTP {status} with has_more true and an unusable cursor {_clip(str(cursor))}",
                status=status,
                log_id=log_id,
                username=username,
            )
        first, second = data.reposted_videos, data.user_reposted_videos
        if first and second:
            videos, raw_videos, problems = _both_lists(body, first, second, restore, username)
        else:
            if (
                first is None
                and second is None
                and (drift := _list_drift(body, status, headers, username))
            ):
                raise drift
            # Whichever list key holds the videos; an answer without either is an empty page.
            raws = first or second or []
            videos, raw_videos, problems = decode_videos(raws, _mend_video, restore)
        return RepostedVideosPage(
            videos=videos,
            cursor=cursor,
            has_more=has_more,
            log_id=log_id,
            raw_videos=raw_videos,
            problems=problems,
            cursor_missing=has_more and data.cursor is None,
        )
    if 400 <= status < 600:
        decoded = _decode(ERROR_RESPONSE_DECODER, body)
        error = None if isinstance(decoded, str) else decoded.error
        raise _api_error(status, headers, error, username, body)
    raise ProtocolError(
        f"unexpected HTTP status {status} ({_describe(headers, body)})",
        status=status,
        log_id=_header_log_id(headers),
        username=username,
    )


# Where each list key stands in an answer: a key, since only a key is followed by a colon.
_LIST_KEY = re.compile(rb'"(user_)?reposted_videos"\s*:')


def _both_lists(
    body: bytes,
    reposted: list[msgspec.Raw],
    user_reposted: list[msgspec.Raw],
    restore: Callable[[bytes], bytes] | None,
    username: str | None,
) -> tuple[list[Video], list[bytes], list[VideoProblem]]:
    """Return the videos of an answer that holds both list keys: all of both, each id once.

    The list that comes first in the answer comes first, and a video's first occurrence wins.
    """
    lists = {b"reposted_videos": reposted, b"user_reposted_videos": user_reposted}
    found = _LIST_KEY.search(body)
    if found is not None and found.group(1):
        lists = dict(reversed(lists.items()))
    (first_key, first), (second_key, second) = lists.items()
    videos, raw_videos, problems = decode_videos(first, _mend_video, restore)
    more, more_raw, more_problems = decode_videos(second, _mend_video, restore)
    seen = {video.id for video in videos}
    first_ids = frozenset(seen)
    duplicates = 0
    for video, raw in zip(more, more_raw, strict=True):
        if video.id in seen:
            duplicates += 1
            continue
        seen.add(video.id)
        videos.append(video)
        raw_videos.append(raw)
    # Positions count through both lists, the first one's first.
    offset = len(first)
    problems += [
        msgspec.structs.replace(problem, position=problem.position + offset)
        for problem in more_problems
        if problem.video_id is None or problem.video_id not in first_ids
    ]
    logger.warning(
        "user %r: the answer holds both %s and %s (%d and %d videos, %d of them in both);"
        " every video of both is kept, each id once",
        username,
        first_key.decode(),
        second_key.decode(),
        len(first),
        len(second),
        duplicates,
    )
    return videos, raw_videos, problems


def parse_token_response(status: int, headers: Mapping[str, str], body: bytes) -> TokenResponse:
    """Return the token an answer of the token endpoint holds, or raise the matching error.

    :param status: the answer's HTTP status.
    :param headers: the answer's headers (names in any case).
    :param body: the answer's body, as received.
    """
    # This function never sees the client secret, so no message it builds can hold it.
    if 500 <= status < 600 or status == 429:
        raise _api_error(status, headers, _token_error_object(body), None, body)
    answer = _decode(TOKEN_ANSWER_DECODER, body)
    if isinstance(answer, str):
        kind: type[APIError] = AuthError if 400 <= status < 500 else ProtocolError
        raise kind(
            f"HTTP {status} from the token endpoint with an answer that is not its JSON"
            f" ({_describe(headers, body)}): {answer}",
            status=status,
            log_id=_header_log_id(headers),
        )
    log_id = _clean(answer.log_id) or _header_log_id(headers)
    failure = answer.error
    if isinstance(failure, APIErrorBody):
        if _is_failure(failure):
            code = (failure.code or "").lower()
            if code in ("rate_limit_exceeded", "internal_error"):
                raise _api_error(status, headers, failure, None)
            raise AuthError(
                _clean(failure.message) or "the token endpoint refused the credentials",
                status=status,
                code=_clean(failure.code),
                log_id=_clean(failure.log_id) or log_id,
            )
    elif failure:
        # The documented flat failure; it also comes with HTTP 200 for wrong credentials.
        raise AuthError(
            _clean(answer.error_description) or _clean(failure),
            status=status,
            code=_clean(failure),
            log_id=log_id,
        )
    token = answer.access_token
    if not token or not 200 <= status < 300:
        kind = AuthError if 400 <= status < 500 else ProtocolError
        raise kind(
            f"HTTP {status} from the token endpoint without an access token or an error",
            status=status,
            log_id=log_id,
        )
    try:
        _check_token(token)
    except ValueError:
        raise ProtocolError(
            "the token endpoint returned an access token that cannot be sent in a header",
            status=status,
            log_id=log_id,
        ) from None
    expires_in = DEFAULT_TOKEN_LIFETIME if answer.expires_in is None else answer.expires_in
    if expires_in <= 0:
        raise ProtocolError(
            f"the token endpoint returned a token that expires in {expires_in} s",
            status=status,
            log_id=log_id,
        )
    return TokenResponse(
        access_token=token, expires_in=expires_in, token_type=answer.token_type or "Bearer"
    )


def _token_error_object(body: bytes) -> APIErrorBody | None:
    """Return the error a failed token answer states, in the research or the flat shape."""
    answer = _decode(TOKEN_ANSWER_DECODER, body)
    if isinstance(answer, str):
        return None
    if isinstance(answer.error, APIErrorBody):
        return answer.error
    if answer.error:
        return APIErrorBody(
            code=answer.error, message=answer.error_description, log_id=answer.log_id
        )
    return None
