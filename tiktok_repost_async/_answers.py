"""Read the Research API's answers: the typed error a failure means, mended JSON, headers.

The parts of `protocol` that every parser shares: pure functions, no I/O.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Mapping
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import TypeVar

import msgspec

from ._jsontext import ESCAPE, hold_surrogates
from .errors import (
    APIError,
    AuthError,
    InvalidCursorError,
    InvalidFieldsError,
    QuotaExhaustedError,
    RateLimitError,
    ServerError,
    TokenExpiredError,
    UnknownListKeyError,
    UserNotFoundError,
    UserUnavailableError,
)
from .models import (
    DATA_KEYS,
    DATA_MEMBERS_DECODER,
    RAW_RESPONSE_DECODER,
    APIErrorBody,
    RawRepostedVideosData,
    RawRepostedVideosResponse,
)

__all__ = ["parse_retry_after"]

# Substrings of the API's messages that tell the user states of a 400 invalid_params apart.
_USER_NOT_FOUND = ("cannot find the user",)
# The answer to a request naming a field the API does not accept: "Invalid fields: a,b".
_INVALID_FIELDS = "invalid fields:"
_USER_UNAVAILABLE = (
    "api cannot return this user's information",
    "is private",
    "information cannot be returned",
)
_INVALID_CURSOR = ("invalid count or cursor",)

# Error messages end up in logs: keep them on one line and of bounded size.
_MAX_MESSAGE = 500
_CONTROL_ESCAPES = {i: f"\\x{i:02x}" for i in (*range(32), 127)}

_T = TypeVar("_T")

# RFC 9110 delay-seconds in ASCII digits (str.isdigit would take "٣"); a fraction is tolerated.
_DELAY_SECONDS = re.compile(r"[0-9]{1,10}(?:\.[0-9]{1,9})?")


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Return the wait a Retry-After value asks for, in seconds, or None if it is unusable.

    :param value: the header's value: delay seconds or an HTTP date (None: no header).
    :param now: the epoch seconds an HTTP date is measured from (None: the system clock).
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if _DELAY_SECONDS.fullmatch(text):
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        # RFC 9110 dates are GMT; a zone-less one is read the same way.
        when = when.replace(tzinfo=UTC)
    try:
        delay = when.timestamp() - (time.time() if now is None else now)
    except (OverflowError, ValueError, OSError):
        return None
    if not math.isfinite(delay):
        return None
    return max(0.0, delay)


_NO_DATA = RawRepostedVideosData()


def _is_failure(error: APIErrorBody | None) -> bool:
    # "ok" is success; so is an error object without a code, since it reports nothing.
    return error is not None and bool(error.code) and (error.code or "").lower() != "ok"


def _api_error(
    status: int,
    headers: Mapping[str, str],
    error: APIErrorBody | None,
    username: str | None,
    body: bytes | None = None,
) -> APIError:
    """Return the typed error that a failed answer means."""
    code = _clean(error.code) if error is not None else ""
    message = _clean(error.message) if error is not None else ""
    log_id = (_clean(error.log_id) if error is not None else "") or _header_log_id(headers)
    lowered_code = code.lower()
    # Apostrophes come straight or curly depending on who typed the message.
    lowered = message.replace("\u2019", "'").lower()

    kind: type[APIError]
    if status >= 500 or lowered_code == "internal_error":
        kind, fallback = ServerError, f"server error ({_describe(headers, body)})"
    elif status == 429 or lowered_code == "rate_limit_exceeded":
        quota = "quota" in lowered or "quota" in lowered_code
        return (QuotaExhaustedError if quota else RateLimitError)(
            message or f"rate limited (HTTP {status})",
            status=status,
            code=code or None,
            log_id=log_id or None,
            username=username,
            retry_after=parse_retry_after(_header(headers, "Retry-After")),
        )
    elif lowered_code == "access_token_invalid":
        kind, fallback = TokenExpiredError, "the access token was refused"
    elif lowered_code in ("scope_not_authorized", "scope_permission_missed"):
        kind, fallback = AuthError, "the client lacks the authorisation"
    elif status == 401:
        # An unexplained 401 is the gateway's way to say the token is missing or stale.
        kind, fallback = TokenExpiredError, "HTTP 401: the access token was refused"
    elif status == 403:
        kind, fallback = AuthError, "HTTP 403: access refused"
    elif status == 400 and _INVALID_FIELDS in lowered:
        # A field TikTok stopped accepting: the same for every user, and for every retry.
        listed = message[lowered.index(_INVALID_FIELDS) + len(_INVALID_FIELDS) :]
        names = tuple(name.strip() for name in listed.split(",") if name.strip())
        return InvalidFieldsError(
            message,
            status=status,
            code=code or None,
            log_id=log_id or None,
            username=username,
            fields=names,
        )
    elif any(part in lowered for part in _USER_NOT_FOUND):
        kind, fallback = UserNotFoundError, ""
    elif any(part in lowered for part in _USER_UNAVAILABLE):
        kind, fallback = UserUnavailableError, ""
    elif any(part in lowered for part in _INVALID_CURSOR):
        kind, fallback = InvalidCursorError, ""
    else:
        kind, fallback = APIError, f"the API refused the request (HTTP {status})"
    return kind(
        message or fallback,
        status=status,
        code=code or None,
        log_id=log_id or None,
        username=username,
    )


_DECODE_ERRORS = (msgspec.MsgspecError, ValueError, RecursionError)


def _decode(decoder: msgspec.json.Decoder[_T], body: bytes) -> _T | str:
    """Return the decoded answer, or a short reason why it cannot be decoded."""
    try:
        return decoder.decode(body)
    except _DECODE_ERRORS as exc:
        failure: BaseException = exc
    if not isinstance(failure, msgspec.ValidationError | RecursionError):
        # Malformed text, not a wrong shape: try once more after mending the few defects that
        # real answers carry, rather than lose a whole page of videos to one bad character.
        mended = _mend(body)
        if mended is not None:
            try:
                return decoder.decode(mended)
            except _DECODE_ERRORS:
                pass
    return _reason(failure)


def _decode_page(
    body: bytes,
) -> tuple[RawRepostedVideosResponse | str, Callable[[bytes], bytes] | None]:
    """Return the decoded answer (or why it cannot be), and how to restore its raw videos.

    A lone UTF-16 surrogate escape is valid JSON that msgspec refuses. Mending it (to U+FFFD)
    would change the videos' raw bytes, which are what we keep: it is held aside instead
    (`hold_surrogates`), and the function returned puts it back into each raw video.
    """
    try:
        return RAW_RESPONSE_DECODER.decode(body), None
    except _DECODE_ERRORS as exc:
        failure: BaseException = exc
    if not isinstance(failure, msgspec.ValidationError | RecursionError):
        held = hold_surrogates(body)
        if held is not None:
            text, restore = held
            answer = _decode(RAW_RESPONSE_DECODER, text)
            if not isinstance(answer, str):
                return answer, restore
    return _decode(RAW_RESPONSE_DECODER, body), None


def _list_drift(
    body: bytes, status: int, headers: Mapping[str, str], username: str | None
) -> UnknownListKeyError | None:
    """Return the error for a list of objects under an unknown key of ``data``, if there is one.

    Called only for an answer without either documented list key: a list of videos under
    another key means the API renamed its list, and reading the answer as an empty page would
    record every user as having no reposts.
    """
    text = hold_surrogates(body)
    members = _decode(DATA_MEMBERS_DECODER, body if text is None else text[0])
    if isinstance(members, str) or not members.data:
        return None
    for key, raw in members.data.items():
        value = bytes(raw)
        if key in DATA_KEYS or value[:1] != b"[" or value[1:].lstrip()[:1] != b"{":
            continue
        return UnknownListKeyError(
            f"the answer's data holds a list of objects under the key {_clean(key)[:60]!r} and"
            " neither reposted_videos nor user_reposted_videos: the API has renamed its video"
            " list, which this version cannot read; the run stops so that no user is recorded"
            " as having no reposts",
            key=key,
            status=status,
            log_id=_header_log_id(headers),
            username=username,
        )
    return None


_BOM = b"\xef\xbb\xbf"
# Raw control bytes are invalid anywhere in JSON text but inside strings they are an easy fix.
# Tab, newline and carriage return are left alone: outside strings they are whitespace.
_RAW_CONTROL = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _mend(body: bytes, *, surrogates: bool = True) -> bytes | None:
    """Return ``body`` with invalid UTF-8, lone surrogates and raw control bytes mended.

    With ``surrogates`` False, lone surrogate escapes are left as they are: they are valid JSON.
    """
    text = bytes(body)
    if text.startswith(_BOM):
        text = text[len(_BOM) :]
    if not text.lstrip().startswith(b"{"):
        # Not a JSON object (an HTML page, say): there is nothing to mend.
        return None
    # Invalid UTF-8 (a string cut inside a character) becomes U+FFFD.
    text = text.decode("utf-8", "replace").encode("utf-8")
    # A lone UTF-16 surrogate (a description cut inside an emoji) becomes U+FFFD.
    if surrogates:
        text = ESCAPE.sub(_mend_escape, text)
    text = _RAW_CONTROL.sub(_escape_control, text)
    return None if text == body else text


def _mend_video(raw: bytes) -> tuple[bytes, bytes] | None:
    """Return a video's bytes to keep and the bytes its typed view is decoded from, or None.

    What is kept is what was sent, with only what is not JSON text mended: invalid UTF-8
    (U+FFFD in its place) and raw control bytes (escaped). Neither can be written as JSON, so
    keeping them would hand every reader of the store, and every JSONL line, bytes that no
    JSON reader takes; the replacement loses no character. A lone surrogate escape is valid
    JSON that says exactly what was sent: it is kept, and mended in the typed view only.
    """
    kept = _mend(raw, surrogates=False) or raw
    typed = _mend(kept) or kept
    if kept is raw and typed is raw:
        return None
    return kept, typed


def _mend_escape(match: re.Match[bytes]) -> bytes:
    escape = match.group()
    if len(escape) == 6 and escape[2:3] in (b"d", b"D"):
        return b"\\ufffd"
    return escape


def _escape_control(match: re.Match[bytes]) -> bytes:
    return b"\\u%04x" % match.group()[0]


def _reason(failure: BaseException) -> str:
    if isinstance(failure, RecursionError):
        return "JSON nested too deeply"
    if isinstance(failure, UnicodeDecodeError):
        return "invalid UTF-8"
    return _clean(str(failure)) or type(failure).__name__


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """Return a header's value, looked up case-insensitively in any mapping."""
    value = headers.get(name)
    if value is None:
        lowered = name.lower()
        for key, candidate in headers.items():
            if isinstance(key, str) and key.lower() == lowered:
                value = candidate
                break
    return value if isinstance(value, str) else None


def _header_log_id(headers: Mapping[str, str]) -> str | None:
    # TikTok's gateway stamps every answer, gateway error pages included.
    return _clean(_header(headers, "X-Tt-Logid")) or None


def _describe(headers: Mapping[str, str], body: bytes | None) -> str:
    content_type = (_header(headers, "Content-Type") or "").split(";")[0].strip()
    kind = _clean(content_type)[:60] or "untyped"
    if body is None:
        return f"HTTP answer, {kind}"
    if not body:
        return "empty body"
    return f"{kind} body of {len(body)} bytes"


def _clean(text: str | None) -> str:
    """Return ``text`` fit for a one-line log message: bounded, control characters escaped."""
    if not text:
        return ""
    if len(text) > _MAX_MESSAGE:
        text = text[:_MAX_MESSAGE] + "…"
    return text.translate(_CONTROL_ESCAPES)


def _clip(text: str) -> str:
    return text if len(text) <= 40 else text[:40] + "…"
