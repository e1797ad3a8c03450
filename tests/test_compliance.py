"""The Batch Compliance API's requests and answers, sans I/O: ids exact, answers never misread."""

from __future__ import annotations

import email.parser
import email.policy

import msgspec
import pytest

from tiktok_repost_async.compliance import (
    CREATE_TASK_PATH,
    DOWNLOAD_TASK_PATH,
    MAX_TASK_IDS,
    TASK_STATUS_PATH,
    TaskStatus,
    build_create_task_request,
    build_download_task_request,
    build_task_status_request,
    parse_create_task_response,
    parse_download_task_response,
    parse_task_status_response,
    validate_task_id,
    validate_video_ids,
)
from tiktok_repost_async.errors import (
    APIError,
    InvalidFileUploadError,
    ProtocolError,
    RateLimitError,
    ServerError,
    TokenExpiredError,
)
from tiktok_repost_async.retry import RetryPolicy

# The documentation's example: a task id above int64.
DOC_TASK_ID = 12345678910987654321
DOC_CREATE_ANSWER = (
    b'{"data": {"task_id": 12345678910987654321}, "error": {"code": "ok",'
    b' "http_status_code": 200, "log_id": "20250516123456ABCDEF", "message": "ok."}}'
)
JSON = {"Content-Type": "application/json"}
TEXT = {"Content-Type": "text/plain; charset=utf-8"}


def _error(status: int, code: str, message: str = "") -> bytes:
    error = {"code": code, "message": message, "log_id": "L", "http_status_code": status}
    return msgspec.json.encode({"data": {}, "error": error})


# -- input checked before any request ---------------------------------------------------------


def test_ids_are_ints_in_order_from_ints_or_digit_strings() -> None:
    assert validate_video_ids([7, "73207681965695992750", 2**64]) == (
        7,
        73207681965695992750,
        2**64,
    )


@pytest.mark.parametrize(
    ("ids", "words"),
    [
        ([], "at least one"),
        (range(1, MAX_TASK_IDS + 2), "at most 10000"),
        ([1, 2, 1], "repeated"),
        (["12a"], "digits"),
        (["٣"], "digits"),
        (["0123"], "leading zero"),
        ([" 12"], "digits"),
        ([1.5e19], "float"),
        ([True], "positive int"),
        ([0], "positive"),
        ([-5], "positive"),
        ("123", "iterable"),
        (None, "iterable"),
    ],
)
def test_bad_ids_are_refused_naming_the_problem(ids: object, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        validate_video_ids(ids)  # type: ignore[arg-type]


def test_exactly_ten_thousand_ids_pass() -> None:
    assert len(validate_video_ids(range(1, MAX_TASK_IDS + 1))) == MAX_TASK_IDS


def test_task_ids_are_exact_ints() -> None:
    assert validate_task_id(DOC_TASK_ID) == DOC_TASK_ID
    assert validate_task_id(str(DOC_TASK_ID)) == DOC_TASK_ID
    for bad in (1.2345678910987655e19, "1e5", "", 0, True):
        with pytest.raises(ValueError, match="task_id"):
            validate_task_id(bad)  # type: ignore[arg-type]


# -- requests -----------------------------------------------------------------------------------


def _form(content_type: str, body: bytes) -> dict[str, tuple[str | None, str | None, bytes]]:
    """Read a multipart/form-data body with the standard library's MIME parser, not ours."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body
    )
    assert message.is_multipart()
    parts = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        assert isinstance(name, str)
        assert isinstance(payload, bytes)
        parts[name] = (part.get_filename(), part.get_content_type(), payload)
    return parts


def test_create_sends_a_real_multipart_form_with_one_id_per_line() -> None:
    request = build_create_task_request(
        [5, "73207681965695992750"],
        access_token="clt.abc",
        base_url="http://127.0.0.1:1/",
        boundary="b-1",
    )
    assert request.method == "POST"
    assert request.url == "http://127.0.0.1:1" + CREATE_TASK_PATH
    assert request.headers["Authorization"] == "Bearer clt.abc"
    # Not application/json, whatever the documentation's curl says.
    content_type = request.headers["Content-Type"]
    assert content_type == "multipart/form-data; boundary=b-1"
    parts = _form(content_type, request.body)
    assert set(parts) == {"file_data", "category"}
    filename, kind, content = parts["file_data"]
    assert filename is not None
    assert kind == "text/plain"
    assert content == b"5\n73207681965695992750\n"
    assert parts["category"][2] == b"video"


def test_create_boundaries_differ_and_never_occur_in_the_body() -> None:
    first = build_create_task_request(range(1, 1000), access_token="t")
    second = build_create_task_request(range(1, 1000), access_token="t")
    assert first.headers["Content-Type"] != second.headers["Content-Type"]
    boundary = first.headers["Content-Type"].split("boundary=")[1]
    assert first.body.count(b"--" + boundary.encode()) == 3  # two parts and the close


def test_create_refuses_bad_input_and_a_bad_category() -> None:
    with pytest.raises(ValueError, match="category"):
        build_create_task_request([1], access_token="t", category="videos")
    with pytest.raises(ValueError, match="at most"):
        build_create_task_request(range(1, 10_002), access_token="t")
    with pytest.raises(ValueError, match="access_token"):
        build_create_task_request([1], access_token="bad token\n")


@pytest.mark.parametrize(
    ("build", "path"),
    [
        (build_task_status_request, TASK_STATUS_PATH),
        (build_download_task_request, DOWNLOAD_TASK_PATH),
    ],
)
def test_task_requests_carry_the_id_digits_exactly(build: object, path: str) -> None:
    for task_id in (DOC_TASK_ID, str(DOC_TASK_ID)):
        request = build(task_id, access_token="t", base_url="http://h")  # type: ignore[operator]
        assert request.url == "http://h" + path
        assert request.headers["Content-Type"] == "application/json"
        assert request.body == b'{"task_id":12345678910987654321}'


# -- answers ------------------------------------------------------------------------------------


def test_create_answer_of_the_documentation_gives_the_exact_task_id() -> None:
    assert parse_create_task_response(200, JSON, DOC_CREATE_ANSWER) == DOC_TASK_ID
    as_string = b'{"data":{"task_id":"12345678910987654321"},"error":{"code":"ok"}}'
    assert parse_create_task_response(200, JSON, as_string) == DOC_TASK_ID


@pytest.mark.parametrize(
    "body",
    [
        b'{"data":{"task_id":1.2345678910987655e19},"error":{"code":"ok"}}',
        b'{"data":{"task_id":"1e5"},"error":{"code":"ok"}}',
        b'{"data":{},"error":{"code":"ok"}}',
        b'{"error":{"code":"ok"}}',
        b"<html>502</html>",
    ],
)
def test_create_answer_without_an_exact_task_id_is_drift(body: bytes) -> None:
    with pytest.raises(ProtocolError):
        parse_create_task_response(200, JSON, body)


def test_refused_upload_is_its_own_error_and_never_retried() -> None:
    body = _error(400, "invalid_file_upload", "The uploaded file does not meet API specifications")
    with pytest.raises(InvalidFileUploadError, match="does not meet") as caught:
        parse_create_task_response(400, JSON, body)
    assert caught.value.status == 400
    assert caught.value.code == "invalid_file_upload"
    assert not RetryPolicy().is_retryable(caught.value)


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (429, _error(429, "rate_limit_exceeded", "Too many requests"), RateLimitError),
        (500, _error(500, "internal_error"), ServerError),
        (504, b"<html><body>504 Gateway Time-out</body></html>", ServerError),
        (401, _error(401, "access_token_invalid"), TokenExpiredError),
        (400, _error(400, "invalid_params", "Invalid task_id"), APIError),
    ],
)
def test_failures_are_the_research_errors(status: int, body: bytes, kind: type[Exception]) -> None:
    for parse in (
        parse_create_task_response,
        parse_task_status_response,
        parse_download_task_response,
    ):
        with pytest.raises(kind):
            parse(status, JSON, body)


@pytest.mark.parametrize("status", list(TaskStatus))
def test_status_answers(status: TaskStatus) -> None:
    body = b'{"data":{"task_status":"%s"},"error":{"code":"ok"}}' % status.value.encode()
    assert parse_task_status_response(200, JSON, body) is status


@pytest.mark.parametrize("value", [b'"Queued"', b"null", b"3", b'""'])
def test_an_undocumented_status_is_drift(value: bytes) -> None:
    with pytest.raises(ProtocolError):
        parse_task_status_response(200, JSON, b'{"data":{"task_status":%s}}' % value)


def test_download_reads_a_text_file_of_ids() -> None:
    body = b"\xef\xbb\xbf73207681965695992750\r\n5\n\n  6  \n5"
    assert parse_download_task_response(200, TEXT, body) == {73207681965695992750, 5, 6}


def test_download_of_a_task_whose_ids_are_all_gone_is_empty_only_as_text() -> None:
    assert parse_download_task_response(200, TEXT, b"") == frozenset()
    assert parse_download_task_response(200, TEXT, b"\n") == frozenset()
    for headers in ({}, JSON, {"Content-Type": "text/html"}):
        with pytest.raises(ProtocolError):
            parse_download_task_response(200, headers, b"")


@pytest.mark.parametrize(
    ("headers", "body"),
    [
        ({"Content-Type": "text/html"}, b"<!DOCTYPE html><html><body>Log in</body></html>"),
        (TEXT, b"<html><body>maintenance</body></html>"),
        (JSON, b'{"data":{},"error":{"code":"ok","message":"ok."}}'),
        (TEXT, b'{"data":{"ids":[]}}'),
        (TEXT, b"video_id\n123\n"),
        (TEXT, b"123,456\n"),
        (TEXT, b"123\n1.5e19\n"),
    ],
)
def test_download_that_is_not_a_file_of_ids_is_an_error_never_an_empty_set(
    headers: dict[str, str], body: bytes
) -> None:
    with pytest.raises(ProtocolError):
        parse_download_task_response(200, headers, body)


def test_download_json_error_with_200_is_its_error() -> None:
    with pytest.raises(ServerError):
        parse_download_task_response(200, JSON, _error(200, "internal_error", "boom"))
