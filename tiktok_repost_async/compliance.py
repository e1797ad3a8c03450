"""Build the Batch Compliance API's requests and read its answers; no I/O.

Three endpoints check which stored video ids TikTok still serves: create a task from a file of
ids, ask its status, download the ids still valid. Their answers use the research envelope, so
their failures become the same typed errors as a research answer's (`_answers._api_error`).
"""

from __future__ import annotations

import enum
import re
import secrets
from collections.abc import Iterable, Mapping

import msgspec

from ._answers import _api_error, _clean, _decode, _describe, _header, _header_log_id, _is_failure
from .errors import APIError, InvalidFileUploadError, ProtocolError
from .models import ERROR_RESPONSE_DECODER, APIErrorBody
from .protocol import DEFAULT_BASE_URL, Request, _check_base_url, _check_token

__all__ = [
    "COMPLIANCE_CATEGORIES",
    "CREATE_TASK_PATH",
    "DOWNLOAD_TASK_PATH",
    "MAX_TASK_IDS",
    "TASK_STATUS_PATH",
    "TaskStatus",
    "build_create_task_request",
    "build_download_task_request",
    "build_task_status_request",
    "parse_create_task_response",
    "parse_download_task_response",
    "parse_task_status_response",
    "validate_category",
    "validate_task_id",
    "validate_video_ids",
]

CREATE_TASK_PATH = "/v2/research/validation_task/create/"
TASK_STATUS_PATH = "/v2/research/validation_task_status/get/"
# The documentation's curl for the download repeats the status URL: a documentation mistake.
DOWNLOAD_TASK_PATH = "/v2/research/validation_task/download/"
#: The most ids one task takes, as documented.
MAX_TASK_IDS = 10_000
#: What a task may check, as documented; this library stores videos only.
COMPLIANCE_CATEGORIES = ("video", "comment")


class TaskStatus(enum.StrEnum):
    """Name the states of a compliance task, spelled as the API sends them."""

    PROCESSING = "Processing"
    COMPLETED = "Completed"
    FAILED = "Failed"


_STATUSES = {status.value.lower(): status for status in TaskStatus}
_DIGITS = re.compile(r"[1-9][0-9]*")
# Bytes, not str: an id file line is checked before anything is decoded.
_DIGIT_LINE = re.compile(rb"[0-9]+")


# --- Validation --------------------------------------------------------------------------


def _exact_id(what: str, value: object) -> int:
    """Return an id given as a positive int or a str of its digits; raise ValueError if not."""
    if isinstance(value, bool):
        raise ValueError(f"{what} must be a positive int or a str of digits, got {value!r}")
    if isinstance(value, int):
        if value < 1:
            raise ValueError(f"{what} must be positive, got {value}")
        return value
    if isinstance(value, str):
        # ASCII digits only (str.isdigit would take "٣"), and no leading zero: "0123" and 123
        # would be one id in TikTok's file and two in ours.
        if value.isascii() and _DIGITS.fullmatch(value):
            return int(value)
        raise ValueError(
            f"{what} must be digits without a leading zero, got {_clean(value)[:40]!r}"
        )
    # A float cannot hold a 19-digit id exactly: it is refused, never rounded.
    raise ValueError(
        f"{what} must be a positive int or a str of digits, got {type(value).__name__}"
    )


def validate_video_ids(ids: Iterable[int | str]) -> tuple[int, ...]:
    """Return the ids of one task as ints, in order; raise ValueError if they cannot be sent.

    A repeated id is refused: the API does not say whether it counts twice toward the 10,000, and
    a batch with repeats was not built from a set of stored ids, which the refresh relies on to
    read the answer.

    :param ids: 1 to 10,000 video ids, each a positive int or a str of its digits (never a
        float: ids exceed what a float holds).
    """
    if isinstance(ids, str | bytes | bytearray | memoryview) or not isinstance(ids, Iterable):
        raise ValueError(f"ids must be an iterable of video ids, got {type(ids).__name__}")
    checked: list[int] = []
    seen: set[int] = set()
    for position, value in enumerate(ids):
        video_id = _exact_id(f"video id at position {position}", value)
        if video_id in seen:
            raise ValueError(f"video id {video_id} is repeated (again at position {position})")
        seen.add(video_id)
        checked.append(video_id)
        if len(checked) > MAX_TASK_IDS:
            raise ValueError(
                f"a compliance task takes at most {MAX_TASK_IDS} ids; split the ids into batches"
            )
    if not checked:
        raise ValueError("a compliance task needs at least one video id")
    return tuple(checked)


def validate_task_id(task_id: int | str) -> int:
    """Return a task id as an int (they exceed int64: never a float); raise ValueError if bad.

    :param task_id: a task id, a positive int or a str of its digits.
    """
    return _exact_id("task_id", task_id)


def validate_category(category: str) -> str:
    """Return ``category`` if a task can check it (``video`` or ``comment``); raise ValueError.

    :param category: the category asked for.
    """
    if category not in COMPLIANCE_CATEGORIES:
        raise ValueError(
            f"category must be one of {', '.join(COMPLIANCE_CATEGORIES)}, got {category!r}"
        )
    return category


# --- Requests ----------------------------------------------------------------------------

_BOUNDARY = re.compile(r"[0-9A-Za-z'()+_,./:=?-]{1,70}")


def _multipart(fields: list[tuple[str, str | None, str | None, bytes]], boundary: str) -> bytes:
    """Return a multipart/form-data body (RFC 7578) of (name, filename, type, content) parts."""
    dash = b"--" + boundary.encode("ascii")
    out = bytearray()
    for name, filename, content_type, content in fields:
        if dash in content:
            raise ValueError("the multipart boundary occurs in a part's content")
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        out += dash + b"\r\nContent-Disposition: " + disposition.encode("ascii") + b"\r\n"
        if content_type is not None:
            out += b"Content-Type: " + content_type.encode("ascii") + b"\r\n"
        out += b"\r\n" + content + b"\r\n"
    out += dash + b"--\r\n"
    return bytes(out)


def build_create_task_request(
    ids: Iterable[int | str],
    *,
    access_token: str,
    category: str = "video",
    base_url: str = DEFAULT_BASE_URL,
    boundary: str | None = None,
) -> Request:
    """Build the request that creates a compliance task for up to 10,000 ids.

    The body is a multipart form: ``file_data``, a text file of one id per line, and
    ``category``.

    :param ids: 1 to 10,000 video ids, each a positive int or a str of its digits, none repeated.
    :param access_token: the client-credentials token the request is authorized with.
    :param category: what the ids are: ``"video"`` or ``"comment"``.
    :param base_url: the API's base URL, an ``http://`` or ``https://`` URL without the path.
    :param boundary: the multipart boundary (tests fix it); None: a random one.
    """
    checked = validate_video_ids(ids)
    kind = validate_category(category)
    token = _check_token(access_token)
    if boundary is None:
        boundary = "tiktok-repost-async-" + secrets.token_hex(16)
    elif not _BOUNDARY.fullmatch(boundary) or boundary.endswith(" "):
        raise ValueError(
            f"boundary must be 1 to 70 characters that RFC 2046 allows, got {boundary!r}"
        )
    # The id file's format is not documented: one id per line, each line ended, is the natural
    # reading of "a text file of video ids".
    file_data = b"".join(b"%d\n" % video_id for video_id in checked)
    body = _multipart(
        [
            ("file_data", "ids.txt", "text/plain", file_data),
            ("category", None, None, kind.encode("ascii")),
        ],
        boundary,
    )
    return Request(
        method="POST",
        url=_check_base_url(base_url) + CREATE_TASK_PATH,
        # The documentation's curl says Content-Type: application/json while it sends a form
        # (-F): a documentation mistake. A multipart body needs its own type and boundary.
        headers={
            "Authorization": f"Bearer {token}",
            "Content-Type": f"multipart/form-data; boundary={boundary}",
        },
        body=body,
    )


def _task_request(path: str, task_id: int | str, access_token: str, base_url: str) -> Request:
    number = validate_task_id(task_id)
    token = _check_token(access_token)
    return Request(
        method="POST",
        url=_check_base_url(base_url) + path,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        # msgspec writes an int of any size as its digits: the id goes back exactly as it came.
        body=msgspec.json.encode({"task_id": number}),
    )


def build_task_status_request(
    task_id: int | str, *, access_token: str, base_url: str = DEFAULT_BASE_URL
) -> Request:
    """Build the request for a compliance task's status.

    :param task_id: the task's id, an int or a str of digits.
    :param access_token: the client-credentials token the request is authorized with.
    :param base_url: the API's base URL, an ``http://`` or ``https://`` URL without the path.
    """
    return _task_request(TASK_STATUS_PATH, task_id, access_token, base_url)


def build_download_task_request(
    task_id: int | str, *, access_token: str, base_url: str = DEFAULT_BASE_URL
) -> Request:
    """Build the request that downloads a completed task's file of valid ids.

    :param task_id: the task's id, an int or a str of digits.
    :param access_token: the client-credentials token the request is authorized with.
    :param base_url: the API's base URL, an ``http://`` or ``https://`` URL without the path.
    """
    return _task_request(DOWNLOAD_TASK_PATH, task_id, access_token, base_url)


# --- Answers -----------------------------------------------------------------------------


class _TaskData(msgspec.Struct, frozen=True):
    # Strict: a float (which cannot hold the id) is refused; a str is checked for digits here,
    # since msgspec's lax mode would read "1e5" as 100000.
    task_id: int | str | None = None
    task_status: str | None = None


class _TaskAnswer(msgspec.Struct, frozen=True):
    data: _TaskData | None = None
    error: APIErrorBody | None = None


_TASK_ANSWER_DECODER: msgspec.json.Decoder[_TaskAnswer] = msgspec.json.Decoder(_TaskAnswer)


def _failure(
    status: int, headers: Mapping[str, str], error: APIErrorBody | None, body: bytes | None
) -> APIError:
    """Return the typed error of a failed compliance answer: research errors, and one more."""
    if error is not None and (error.code or "").lower() == "invalid_file_upload":
        return InvalidFileUploadError(
            _clean(error.message) or "the uploaded file does not meet API specifications",
            status=status,
            code=_clean(error.code),
            log_id=_clean(error.log_id) or _header_log_id(headers),
        )
    return _api_error(status, headers, error, None, body)


def _task_data(status: int, headers: Mapping[str, str], body: bytes, what: str) -> _TaskData:
    """Return the ``data`` of a successful task answer, or raise the error the answer means."""
    if not 200 <= status < 300:
        decoded = _decode(ERROR_RESPONSE_DECODER, body)
        error = None if isinstance(decoded, str) else decoded.error
        if 400 <= status < 600:
            raise _failure(status, headers, error, body)
        raise ProtocolError(
            f"unexpected HTTP status {status} from the {what} endpoint"
            f" ({_describe(headers, body)})",
            status=status,
            log_id=_header_log_id(headers),
        )
    answer = _decode(_TASK_ANSWER_DECODER, body)
    if isinstance(answer, str):
        error_only = _decode(ERROR_RESPONSE_DECODER, body)
        if not isinstance(error_only, str) and _is_failure(error_only.error):
            raise _failure(status, headers, error_only.error, body)
        raise ProtocolError(
            f"HTTP {status} from the {what} endpoint with an answer that is not the API's JSON"
            f" ({_describe(headers, body)}): {answer}",
            status=status,
            log_id=_header_log_id(headers),
        )
    if _is_failure(answer.error):
        raise _failure(status, headers, answer.error, body)
    if answer.data is None:
        raise ProtocolError(
            f"HTTP {status} from the {what} endpoint without data",
            status=status,
            log_id=_log_id(answer.error, headers),
        )
    return answer.data


def _log_id(error: APIErrorBody | None, headers: Mapping[str, str]) -> str | None:
    return (_clean(error.log_id) if error is not None else "") or _header_log_id(headers)


def parse_create_task_response(status: int, headers: Mapping[str, str], body: bytes) -> int:
    """Return the id of the task an answer created, or raise the TikTokError it means.

    A refused file (400 ``invalid_file_upload``) raises `InvalidFileUploadError`.

    :param status: the answer's HTTP status.
    :param headers: the answer's headers (names in any case).
    :param body: the answer's body, as received.
    """
    data = _task_data(status, headers, body, "create task")
    task_id = data.task_id
    try:
        if task_id is None:
            raise ValueError("no task_id")
        return _exact_id("task_id", task_id)
    except ValueError as exc:
        raise ProtocolError(
            f"the create task endpoint answered without a usable task id: {exc}",
            status=status,
            log_id=_header_log_id(headers),
        ) from None


def parse_task_status_response(status: int, headers: Mapping[str, str], body: bytes) -> TaskStatus:
    """Return a task's status from an answer, or raise the TikTokError it means.

    A status the documentation does not name raises ProtocolError: reading it as one of ours
    would either poll for ever or download a file that is not there.

    :param status: the answer's HTTP status.
    :param headers: the answer's headers (names in any case).
    :param body: the answer's body, as received.
    """
    data = _task_data(status, headers, body, "task status")
    text = data.task_status
    found = _STATUSES.get(text.strip().lower()) if isinstance(text, str) else None
    if found is None:
        raise ProtocolError(
            f"the task status endpoint answered the undocumented status {_clean(text)[:60]!r}"
            " (Processing, Completed or Failed expected)",
            status=status,
            log_id=_header_log_id(headers),
        )
    return found


def parse_download_task_response(
    status: int, headers: Mapping[str, str], body: bytes
) -> frozenset[int]:
    """Return the ids a completed task found valid, or raise the TikTokError the answer means.

    The answer is documented as "a text file with valid IDs": lines of digits (CRLF, blank lines
    and a BOM pass). Anything else is an error, never an empty set: an HTML page, a JSON answer
    (the research envelope, with or without an error), a line that is not an id. A body with no
    id at all is the empty set only when its Content-Type says text (text/plain, or an
    octet-stream attachment): a task all of whose ids are gone. Every id the answer names is
    returned, also one that was never sent: the caller, who knows what it sent, decides.

    :param status: the answer's HTTP status.
    :param headers: the answer's headers (names in any case); its Content-Type tells an empty file
        from an empty answer.
    :param body: the answer's body, as received.
    """
    if not 200 <= status < 300:
        _task_data(status, headers, body, "download task")
        raise AssertionError("unreachable: a failed status always raises")  # pragma: no cover
    content_type = (_header(headers, "Content-Type") or "").split(";")[0].strip().lower()
    text = body[3:] if body.startswith(b"\xef\xbb\xbf") else body
    start = text.lstrip()[:1]
    if start in (b"{", b"[") or content_type.endswith("json"):
        # The envelope where the file was expected: its error says why, else it is drift.
        _task_data(status, headers, body, "download task")
        raise ProtocolError(
            f"the download endpoint answered JSON ({_describe(headers, body)}) where a text file"
            " of valid ids was expected",
            status=status,
            log_id=_header_log_id(headers),
        )
    if start == b"<" or content_type in ("text/html", "application/xhtml+xml"):
        raise ProtocolError(
            f"the download endpoint answered a web page ({_describe(headers, body)}) where a"
            " text file of valid ids was expected",
            status=status,
            log_id=_header_log_id(headers),
        )
    valid: set[int] = set()
    for number, line in enumerate(text.split(b"\n"), start=1):
        line = line.strip(b" \t\r")
        if not line:
            continue
        if not _DIGIT_LINE.fullmatch(line):
            excerpt = _clean(line[:60].decode("utf-8", "replace"))
            raise ProtocolError(
                f"line {number} of the downloaded file is not a video id: {excerpt!r}",
                status=status,
                log_id=_header_log_id(headers),
            )
        valid.add(int(line))
    if not valid and not (
        content_type.startswith("text/") or content_type == "application/octet-stream"
    ):
        raise ProtocolError(
            f"the download endpoint answered {_describe(headers, body)}, not a text file: an"
            " answer that says nothing is not read as 'no id is valid'",
            status=status,
            log_id=_header_log_id(headers),
        )
    return frozenset(valid)
