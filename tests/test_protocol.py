"""Tests of the sans-I/O protocol: validation, request building, and every answer's meaning."""

from __future__ import annotations

import json
import pathlib
import pickle
import urllib.parse
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

import pytest
import yarl
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict, CIMultiDictProxy

from tiktok_repost_async.errors import (
    APIError,
    AuthError,
    InvalidCursorError,
    ProtocolError,
    QuotaExhaustedError,
    RateLimitError,
    ServerError,
    TikTokError,
    TokenExpiredError,
    UserNotFoundError,
    UserUnavailableError,
)
from tiktok_repost_async.models import DEFAULT_FIELDS, VIDEO_FIELDS, RepostedVideosPage, Video
from tiktok_repost_async.protocol import (
    DEFAULT_BASE_URL,
    DEFAULT_MAX_COUNT,
    DEFAULT_TOKEN_LIFETIME,
    MAX_CURSOR,
    MAX_USERNAME_LENGTH,
    REPOSTED_VIDEOS_PATH,
    TOKEN_PATH,
    Request,
    build_reposted_request,
    build_token_request,
    normalize_fields,
    normalize_username,
    parse_reposted_response,
    parse_retry_after,
    parse_token_response,
    validate_cursor,
    validate_max_count,
)

SAMPLES = pathlib.Path(__file__).parent / "samples"
NON_JSON: dict[str, str] = json.loads((SAMPLES / "non_json_bodies.json").read_text("utf-8"))
HTML = {"Content-Type": "text/html; charset=utf-8"}
JSON = {"Content-Type": "application/json; charset=utf-8"}
TOKEN = "clt.2.T0kenT0kenT0kenT0kenT0kenT0ken"
SECRET = "s3cr3t-Cl1ent-S3cret-value"
KEY = "aw1b2c3d4e5f6g7h"


def sample(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


def page_of(name: str, status: int = 200, headers: dict[str, str] | None = None) -> Any:
    return parse_reposted_response(status, headers or JSON, sample(name), username="someone")


def fails(
    status: int, body: bytes, headers: Mapping[str, str] | None = None, **kwargs: Any
) -> APIError:
    with pytest.raises(TikTokError) as caught:
        parse_reposted_response(status, headers if headers is not None else JSON, body, **kwargs)
    # Every answer's error carries status, code, message, log_id and username.
    assert isinstance(caught.value, APIError)
    return caught.value


def body_of(obj: Any) -> bytes:
    return json.dumps(obj).encode()


# --- normalize_username ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("someone", "someone"),
        ("  @some.one_1 \n", "some.one_1"),
        ("@someone", "someone"),
        ("Some.One", "Some.One"),  # case is the API's business, not ours
        ("şahin.çelik", "şahin.çelik"),
        ("حمودي_الباشا", "حمودي_الباشا"),
        ("用户123", "用户123"),
        ("_", "_"),
        ("x" * MAX_USERNAME_LENGTH, "x" * MAX_USERNAME_LENGTH),
    ],
)
def test_usernames_are_trimmed_and_lose_one_at_sign(raw: str, expected: str) -> None:
    assert normalize_username(raw) == expected


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("@", "empty"),
        (" @ ", "empty"),
        ("@@someone", "'@'"),
        ("some one", "' '"),
        ("some-one", "'-'"),
        ("someone!", "'!'"),
        ("https://www.tiktok.com/@someone", "':'"),
        ("some\x00one", "U+0000"),
        ("some\u200bone", "U+200B"),  # zero-width space: invisible, never in a handle
        ("some\u202eone", "U+202E"),  # right-to-left override
        ("x" * (MAX_USERNAME_LENGTH + 1), str(MAX_USERNAME_LENGTH + 1)),
    ],
)
def test_unusable_usernames_are_refused_with_the_reason(raw: str, reason: str) -> None:
    with pytest.raises(ValueError, match="username") as caught:
        normalize_username(raw)
    assert reason in str(caught.value)


@pytest.mark.parametrize("raw", [None, b"someone", 123])
def test_a_username_must_be_a_str(raw: Any) -> None:
    with pytest.raises(ValueError, match="must be a str"):
        normalize_username(raw)


@given(st.text(max_size=80))
def test_normalize_username_returns_a_valid_handle_or_raises_value_error(raw: str) -> None:
    try:
        handle = normalize_username(raw)
    except ValueError:
        return
    assert 0 < len(handle) <= MAX_USERNAME_LENGTH
    assert all(char.isalnum() or char in "_." for char in handle)
    assert normalize_username(handle) == handle


# --- normalize_fields ----------------------------------------------------------------------


def test_no_fields_means_every_field() -> None:
    assert normalize_fields(None) == DEFAULT_FIELDS


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (["id", "like_count"], ("id", "like_count")),
        ("id, like_count ,view_count", ("id", "like_count", "view_count")),
        ("id,like_count,", ("id", "like_count")),
        ("id,,like_count", ("id", "like_count")),
        (("view_count", "id", "view_count"), ("view_count", "id")),
        (["favourites_count"], ("id", "favorites_count")),
        (["favorites_count", "favourites_count"], ("id", "favorites_count")),
        ("like_count", ("id", "like_count")),
        (iter(["username", "id"]), ("username", "id")),
    ],
)
def test_fields_are_canonical_unique_ordered_and_include_id(
    raw: Any, expected: tuple[str, ...]
) -> None:
    assert normalize_fields(raw) == expected


def test_an_unknown_field_is_named_with_the_valid_list() -> None:
    with pytest.raises(ValueError, match="unknown field 'likes'") as caught:
        normalize_fields(["id", "likes"])
    for name in VIDEO_FIELDS:
        assert name in str(caught.value)


@pytest.mark.parametrize("raw", ["", " , ", [], ()])
def test_an_empty_field_list_is_refused(raw: Any) -> None:
    with pytest.raises(ValueError, match="no field requested"):
        normalize_fields(raw)


@pytest.mark.parametrize("raw", [b"id", [b"id"], ["id", 3], 5])
def test_fields_of_the_wrong_type_are_refused(raw: Any) -> None:
    with pytest.raises(ValueError, match=r"fields|field names"):
        normalize_fields(raw)


@given(st.lists(st.sampled_from([*VIDEO_FIELDS, "favourites_count"]), min_size=1))
def test_normalized_fields_are_valid_unique_and_stable(raw: list[str]) -> None:
    fields = normalize_fields(raw)
    assert set(fields) <= set(VIDEO_FIELDS)
    assert len(set(fields)) == len(fields)
    assert "id" in fields
    assert normalize_fields(fields) == fields
    assert normalize_fields(",".join(raw)) == fields


# --- validate_max_count / validate_cursor ---------------------------------------------------


@pytest.mark.parametrize("n", [1, 20, 100])
def test_valid_max_counts_pass(n: int) -> None:
    assert validate_max_count(n) == n


@pytest.mark.parametrize("n", [0, -1, 101, 10**6, True, False, 1.0, "10", None])
def test_invalid_max_counts_are_named(n: Any) -> None:
    with pytest.raises(ValueError, match="max_count") as caught:
        validate_max_count(n)
    assert repr(n) in str(caught.value)


@pytest.mark.parametrize("cursor", [0, 1, 15, MAX_CURSOR])
def test_valid_cursors_pass(cursor: int) -> None:
    assert validate_cursor(cursor) == cursor


@pytest.mark.parametrize("cursor", [-1, MAX_CURSOR + 1, True, 1.0, "0", None])
def test_invalid_cursors_are_named(cursor: Any) -> None:
    with pytest.raises(ValueError, match="cursor") as caught:
        validate_cursor(cursor)
    assert repr(cursor) in str(caught.value)


# --- build_token_request ---------------------------------------------------------------------


def test_token_request_is_a_form_post() -> None:
    request = build_token_request(KEY, SECRET)
    assert request.method == "POST"
    assert (
        request.url
        == DEFAULT_BASE_URL + TOKEN_PATH
        == "https://open.tiktokapis.com/v2/oauth/token/"
    )
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert urllib.parse.parse_qs(request.body.decode("ascii"), strict_parsing=True) == {
        "client_key": [KEY],
        "client_secret": [SECRET],
        "grant_type": ["client_credentials"],
    }


def test_token_request_encodes_awkward_secrets() -> None:
    request = build_token_request(KEY, "a&b=c+d %")
    assert urllib.parse.parse_qs(request.body.decode("ascii"))["client_secret"] == ["a&b=c+d %"]


def test_token_request_repr_shows_no_secret() -> None:
    request = build_token_request(KEY, SECRET, "http://127.0.0.1:8080/")
    assert request.url == "http://127.0.0.1:8080/v2/oauth/token/"
    for text in (repr(request), str(request), f"{request}"):
        assert SECRET not in text
        assert "redacted" in text


@pytest.mark.parametrize(("key", "secret"), [("", SECRET), (KEY, ""), (KEY, "  "), (KEY, "a\nb")])
def test_unusable_credentials_are_refused_without_echoing_them(key: str, secret: str) -> None:
    with pytest.raises(ValueError, match="client_") as caught:
        build_token_request(key, secret)
    if secret.strip():
        assert secret not in str(caught.value)


@pytest.mark.parametrize("base_url", ["ftp://x", "open.tiktokapis.com", "https://a b", ""])
def test_bad_base_urls_are_refused(base_url: str) -> None:
    # Twice: the check of a base URL is remembered, and a refusal must be refused again.
    for _ in range(2):
        with pytest.raises(ValueError, match="base_url"):
            build_token_request(KEY, SECRET, base_url)
        with pytest.raises(ValueError, match="base_url"):
            build_reposted_request("a", access_token=TOKEN, base_url=base_url)


def test_a_base_url_that_is_not_a_str_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="base_url"):
        build_reposted_request("a", access_token=TOKEN, base_url=["http://x"])  # type: ignore[arg-type]


# --- build_reposted_request ------------------------------------------------------------------


def test_reposted_request_matches_the_documented_shape() -> None:
    request = build_reposted_request(
        " @someone ",
        fields=["id", "like_count"],
        max_count=6,
        cursor=15,
        access_token=TOKEN,
    )
    assert request.method == "POST"
    assert request.url == (
        "https://open.tiktokapis.com/v2/research/user/reposted_videos/?fields=id,like_count"
    )
    assert request.headers == {
        "Authorization": f"Bearer {TOKEN}",
        "Content-Type": "application/json",
    }
    assert request.body == b'{"username":"someone","max_count":6,"cursor":15}'


def test_reposted_request_defaults_ask_for_everything_from_the_start() -> None:
    request = build_reposted_request("someone", access_token=TOKEN)
    assert json.loads(request.body) == {"username": "someone", "max_count": 100, "cursor": 0}
    assert DEFAULT_MAX_COUNT == 100
    query = request.url.split("?fields=", 1)[1].split(",")
    assert len(query) == len(VIDEO_FIELDS)


def test_favourites_goes_out_in_the_spelling_the_fields_parameter_documents() -> None:
    for asked in ("favorites_count", "favourites_count"):
        request = build_reposted_request("a", fields=[asked], access_token=TOKEN)
        assert request.url.endswith("?fields=id,favourites_count")


def test_fields_commas_survive_aiohttp_url_handling() -> None:
    # aiohttp turns the URL string into a yarl.URL: the commas must stay literal.
    request = build_reposted_request(
        "a", fields="id,like_count,view_count", access_token=TOKEN, base_url="http://127.0.0.1:9"
    )
    url = yarl.URL(request.url)
    assert url.query["fields"] == "id,like_count,view_count"
    assert str(url).endswith("?fields=id,like_count,view_count")
    assert url.path == REPOSTED_VIDEOS_PATH


def test_request_body_is_strict_json_even_for_unicode_and_huge_cursors() -> None:
    request = build_reposted_request("用户.名", cursor=MAX_CURSOR, access_token=TOKEN)
    text = request.body.decode("utf-8")
    assert json.loads(text, parse_constant=pytest.fail) == {
        "username": "用户.名",
        "max_count": 100,
        "cursor": MAX_CURSOR,
    }
    assert ",}" not in text


def test_the_server_cursor_goes_back_verbatim() -> None:
    page = page_of("empty_page_has_more.json")
    request = build_reposted_request("a", cursor=page.cursor, access_token=TOKEN)
    assert json.loads(request.body)["cursor"] == 200


@pytest.mark.parametrize(
    "token", ["", "clt.abc\r\nX-Evil: 1", "clt abc", "clt.\x00", "clt.tökén", "clt.\t"]
)
def test_unusable_tokens_are_refused_without_echoing_them(token: str) -> None:
    with pytest.raises(ValueError, match="access_token") as caught:
        build_reposted_request("a", access_token=token)
    if token:
        assert token not in str(caught.value)


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"max_count": 0}, "max_count"),
        ({"max_count": 101}, "max_count"),
        ({"cursor": -1}, "cursor"),
        ({"fields": ["nope"]}, "nope"),
        ({"base_url": "open.tiktokapis.com"}, "base_url"),
    ],
)
def test_reposted_request_validates_its_arguments(kwargs: dict[str, Any], named: str) -> None:
    with pytest.raises(ValueError, match=named):
        build_reposted_request("someone", access_token=TOKEN, **kwargs)


def test_reposted_request_repr_shows_no_token() -> None:
    request = build_reposted_request("someone", access_token=TOKEN)
    for text in (repr(request), str(request)):
        assert TOKEN not in text
        assert "Bearer" not in text
        assert "someone" in text  # the body is no secret, and helps reading logs


def test_request_repr_redacts_authorization_in_any_case() -> None:
    request = Request("GET", "http://x/", {"authorization": TOKEN, "Cookie": TOKEN}, b"")
    assert TOKEN not in repr(request)


# --- parse_reposted_response: success ----------------------------------------------------------


def test_page_under_reposted_videos() -> None:
    page = page_of("reposted_page_first.json")
    assert isinstance(page, RepostedVideosPage)
    assert len(page.videos) == 5
    assert all(isinstance(video, Video) for video in page.videos)
    assert (page.cursor, page.has_more) == (5, True)
    assert page.log_id == "202402280943155BE7C2EBA1D1B8017AE1"


def test_page_under_user_reposted_videos() -> None:
    page = page_of("user_reposted_page_last.json")
    assert [v.id for v in page.videos] == [7301998274650148138, 7299815120440954154]
    assert (page.cursor, page.has_more) == (7, False)
    assert [v.favorites_count for v in page.videos] == [1, 0]


def test_successful_answer_without_the_list_key_is_an_empty_page() -> None:
    page = page_of("empty_no_list_key.json")
    assert page.videos == []
    assert page.has_more is False


def test_empty_page_with_has_more_is_not_the_end() -> None:
    page = page_of("empty_page_has_more.json")
    assert page.videos == []
    assert (page.cursor, page.has_more) == (200, True)


def test_fewer_videos_than_max_count_with_has_more() -> None:
    # The first page holds 5 videos where 100 were asked for, and more are to come.
    page = page_of("reposted_page_first.json")
    assert len(page.videos) < DEFAULT_MAX_COUNT
    assert page.has_more


def test_the_list_key_that_holds_the_videos_wins() -> None:
    both = {
        "data": {"reposted_videos": [], "user_reposted_videos": [{"id": 2}], "has_more": False},
        "error": {"code": "ok"},
    }
    assert [v.id for v in parse_reposted_response(200, {}, body_of(both)).videos] == [2]


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"reposted_videos": None, "cursor": None, "has_more": None},
    ],
)
def test_missing_or_null_cursor_and_has_more_end_the_walk(data: dict[str, Any]) -> None:
    page = parse_reposted_response(200, {}, body_of({"data": data, "error": {"code": "ok"}}))
    assert (page.videos, page.cursor, page.has_more) == ([], 0, False)


@pytest.mark.parametrize(
    "answer",
    [
        {"data": {"has_more": False}},  # no error object at all
        {"data": {"has_more": False}, "error": {"code": "OK", "message": "ok"}},
        {"data": {"has_more": False}, "error": {"code": "", "message": ""}},
        {"data": {"has_more": False}, "error": None},
        {"error": {"code": "ok", "message": "", "log_id": "x"}},  # no data at all
    ],
)
def test_success_is_recognised_in_its_loose_forms(answer: dict[str, Any]) -> None:
    assert parse_reposted_response(200, {}, body_of(answer)).videos == []


def test_every_real_world_page_shape_decodes() -> None:
    for name in (
        "big_ids.json",
        "unicode_nul.json",
        "unknown_fields.json",
        "requested_fields_only.json",
        "string_numbers.json",
        "favourites_spellings.json",
    ):
        page = page_of(name)
        assert page.videos, name
        assert page.log_id, name


def test_log_id_falls_back_to_the_gateway_header() -> None:
    body = body_of({"data": {"has_more": False}, "error": {"code": "ok"}})
    page = parse_reposted_response(200, {"x-tt-logid": "HDR123"}, body)
    assert page.log_id == "HDR123"


def test_headers_may_be_a_multidict() -> None:
    headers = CIMultiDictProxy(CIMultiDict({"RETRY-AFTER": "12", "Content-Type": "text/html"}))
    error = fails(429, sample("error_429_rate_limit.json"), headers)
    assert isinstance(error, RateLimitError)
    assert error.retry_after == 12.0


# --- parse_reposted_response: error answers -------------------------------------------------

ERROR_SAMPLES = [
    ("error_400_user_not_found.json", 400, UserNotFoundError, "invalid_params"),
    ("error_400_user_refused.json", 400, UserUnavailableError, "invalid_params"),
    ("error_400_user_private.json", 400, UserUnavailableError, "invalid_params"),
    ("error_400_info_cannot_be_returned.json", 400, UserUnavailableError, "invalid_params"),
    ("error_400_invalid_cursor.json", 400, InvalidCursorError, "invalid_params"),
    ("error_400_invalid_params_other.json", 400, APIError, "invalid_params"),
    ("error_400_scope_permission_missed.json", 400, AuthError, "scope_permission_missed"),
    ("error_401_access_token_invalid.json", 401, TokenExpiredError, "access_token_invalid"),
    ("error_401_scope_not_authorized.json", 401, AuthError, "scope_not_authorized"),
    ("error_429_rate_limit.json", 429, RateLimitError, "rate_limit_exceeded"),
    ("error_429_daily_quota.json", 429, QuotaExhaustedError, "rate_limit_exceeded"),
    ("error_500_internal.json", 500, ServerError, "internal_error"),
    ("error_500_no_message.json", 500, ServerError, "internal_error"),
]


@pytest.mark.parametrize(("name", "status", "kind", "code"), ERROR_SAMPLES)
def test_each_error_sample_raises_its_exact_type_with_details(
    name: str, status: int, kind: type[APIError], code: str
) -> None:
    error = fails(status, sample(name), username="someone")
    assert type(error) is kind
    assert isinstance(error, APIError)
    raw = json.loads(sample(name))["error"]
    assert (error.status, error.code, error.log_id) == (status, code, raw["log_id"])
    assert error.username == "someone"
    assert error.message == (raw.get("message") or error.message)
    assert error.message  # never empty, even when the API said nothing
    assert "user='someone'" in str(error)
    assert raw["log_id"] in str(error)


@pytest.mark.parametrize(("name", "status", "kind", "code"), ERROR_SAMPLES)
def test_an_error_object_on_http_200_means_the_same(
    name: str, status: int, kind: type[APIError], code: str
) -> None:
    error = fails(200, sample(name))
    if status == 401 and code != "access_token_invalid":
        kind = AuthError
    assert type(error) is kind
    assert error.status == 200
    assert error.code == code


def test_scope_refusals_are_fatal_auth_errors_not_token_refreshes() -> None:
    for name in ("error_401_scope_not_authorized.json", "error_400_scope_permission_missed.json"):
        status = int(name.split("_")[1])
        error = fails(status, sample(name))
        assert isinstance(error, AuthError)
        assert not isinstance(error, TokenExpiredError)


def test_user_state_messages_are_matched_as_substrings_in_any_case() -> None:
    for message, kind in [
        ("User X IS INVALID: Cannot Find The User", UserNotFoundError),
        ("api cannot return this user\u2019s information", UserUnavailableError),
        ("Account foo is private.", UserUnavailableError),
        ("invalid COUNT or cursor", InvalidCursorError),
    ]:
        body = body_of({"error": {"code": "invalid_params", "message": message}})
        assert type(fails(400, body)) is kind, message


@pytest.mark.parametrize(
    ("status", "headers", "body"),
    [
        (502, HTML, NON_JSON["gateway_502_html"].encode()),
        (504, HTML, NON_JSON["gateway_504_html"].encode()),
        (503, {}, b""),
        (500, JSON, b"{}"),
        (500, JSON, b'{"error": {"code": "internal_error", "message": null}}'),
        (500, JSON, b'{"error": "boom"}'),
        (500, JSON, b"null"),
        (599, {}, b"\x00\xff"),
        (
            500,
            JSON,
            body_of({"error": {"code": "invalid_params", "message": "Invalid count or cursor"}}),
        ),
    ],
)
def test_every_5xx_is_a_server_error_whatever_its_body(
    status: int, headers: dict[str, str], body: bytes
) -> None:
    error = fails(status, body, {**headers, "X-Tt-Logid": "LOG5XX"}, username="u")
    assert type(error) is ServerError
    assert error.status == status
    assert error.message
    assert error.username == "u"
    assert error.log_id == "LOG5XX"


def test_gateway_page_message_names_the_content_not_the_html() -> None:
    error = fails(502, NON_JSON["gateway_502_html"].encode(), HTML)
    assert "text/html" in error.message
    assert "<html>" not in str(error)


def test_an_unexplained_401_asks_for_a_new_token() -> None:
    assert type(fails(401, b"<html>401</html>", HTML)) is TokenExpiredError
    assert type(fails(401, b"")) is TokenExpiredError


def test_403_and_unknown_4xx() -> None:
    assert type(fails(403, b"forbidden")) is AuthError
    unknown = fails(404, body_of({"error": {"code": "not_found", "message": "No such path"}}))
    assert type(unknown) is APIError
    assert (unknown.code, unknown.message) == ("not_found", "No such path")
    assert type(fails(418, b"")) is APIError


@pytest.mark.parametrize("status", [0, 100, 199, 301, 302, 304, 600, 999, -1])
def test_statuses_outside_2xx_4xx_5xx_are_protocol_errors(status: int) -> None:
    assert type(fails(status, sample("reposted_page_first.json"))) is ProtocolError


# --- Retry-After --------------------------------------------------------------------------


def test_retry_after_in_seconds_is_honoured() -> None:
    error = fails(429, sample("error_429_rate_limit.json"), {"Retry-After": "30"})
    assert isinstance(error, RateLimitError)
    assert error.retry_after == 30.0


def test_retry_after_as_http_date_is_turned_into_seconds() -> None:
    when = datetime(2030, 1, 1, 0, 0, 10, tzinfo=UTC)
    now = datetime(2030, 1, 1, 0, 0, 0, tzinfo=UTC).timestamp()
    assert parse_retry_after(format_datetime(when, usegmt=True), now=now) == 10.0
    assert parse_retry_after("Tue, 01 Jan 2030 00:00:10 GMT", now=now) == 10.0
    assert parse_retry_after("Tue, 01 Jan 2030 00:00:10", now=now) == 10.0
    # A date in the past means "now".
    assert parse_retry_after("Tue, 01 Jan 2030 00:00:00 GMT", now=now + 60) == 0.0


@pytest.mark.parametrize(
    ("value", "expected"),
    [("0", 0.0), ("120", 120.0), (" 7 ", 7.0), ("1.5", 1.5)],
)
def test_retry_after_seconds(value: str, expected: float) -> None:
    assert parse_retry_after(value) == expected


@pytest.mark.parametrize(
    "value", [None, "", " ", "soon", "-5", "1e3", "NaN", "inf", "٣", "0x10", "Tue, 99 Foo"]
)
def test_garbage_retry_after_is_ignored(value: str | None) -> None:
    assert parse_retry_after(value) is None


def test_429_without_retry_after_has_none_and_the_quota_is_told_apart() -> None:
    rate = fails(429, sample("error_429_rate_limit.json"), {"Retry-After": "soon"})
    assert type(rate) is RateLimitError
    assert rate.retry_after is None
    quota = fails(429, sample("error_429_daily_quota.json"), {"retry-after": "3600"})
    assert type(quota) is QuotaExhaustedError
    assert quota.retry_after == 3600.0
    bare = fails(429, b"")
    assert type(bare) is RateLimitError
    assert bare.message


@pytest.mark.parametrize(
    ("code", "message", "kind"),
    [
        ("rate_limit_exceeded", "DAILY QUOTA EXCEEDED", QuotaExhaustedError),
        ("daily_quota_exceeded", "", QuotaExhaustedError),
        ("rate_limit_exceeded", "Too many requests", RateLimitError),
        ("rate_limit_exceeded", None, RateLimitError),
    ],
)
def test_quota_is_recognised_in_the_message_or_code_in_any_case(
    code: str, message: str | None, kind: type[RateLimitError]
) -> None:
    error = fails(429, body_of({"error": {"code": code, "message": message}}))
    assert type(error) is kind


@given(st.text(max_size=40))
def test_parse_retry_after_never_raises(value: str) -> None:
    delay = parse_retry_after(value)
    assert delay is None or (delay >= 0 and delay != float("inf"))


# --- Undecodable and malformed answers -------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        (NON_JSON["gateway_502_html"].encode(), HTML),
        (b"", {}),
        (b"[]", JSON),
        (b"null", JSON),
        (b"{}", JSON),
        (b'"ok"', JSON),
        (b'{"data": [], "error": {"code": "ok"}}', JSON),
        (b'{"data": {"reposted_videos": {"id": 1}}, "error": {"code": "ok"}}', JSON),
        (b'{"data": {"cursor": "abc"}, "error": {"code": "ok"}}', JSON),
        (b'{"data": {"has_more": []}, "error": {"code": "ok"}}', JSON),
        (b'{"data": {}, "error": {"code": 5}}', JSON),
        (b'{"data": {}} trailing', JSON),
        (b'{"data": {"reposted_videos": [],}}', JSON),  # the documentation's trailing comma
        (b"\x00\x01\x02", {}),
    ],
)
def test_a_200_that_is_not_a_valid_page_is_a_protocol_error(
    body: bytes, headers: dict[str, str]
) -> None:
    error = fails(200, body, headers, username="u")
    assert type(error) is ProtocolError
    assert (error.status, error.username) == (200, "u")


def test_a_200_with_an_error_code_and_a_broken_data_part_still_says_the_error() -> None:
    body = (
        b'{"data": [1, 2], "error": {"code": "invalid_params", "message": "cannot find the user"}}'
    )
    assert type(fails(200, body)) is UserNotFoundError


def test_has_more_with_an_unusable_cursor_is_a_protocol_error() -> None:
    for cursor in (-1, MAX_CURSOR + 1):
        body = body_of({"data": {"cursor": cursor, "has_more": True}, "error": {"code": "ok"}})
        assert type(fails(200, body)) is ProtocolError
    last = body_of({"data": {"cursor": -1, "has_more": False}, "error": {"code": "ok"}})
    assert parse_reposted_response(200, {}, last).has_more is False


def test_every_truncation_of_a_page_is_a_protocol_error() -> None:
    body = sample("reposted_page_first.json")
    for end in range(len(body)):
        error = fails(200, body[:end])
        assert type(error) is ProtocolError, end


def test_deep_nesting_is_a_protocol_error_not_a_crash() -> None:
    deep = b"[" * 200_000 + b"]" * 200_000
    for body in (
        b'{"data": {"extra": ' + deep + b'}, "error": {"code": "ok"}}',
        b'{"data": {"reposted_videos": ' + deep + b"}}",
        deep,
    ):
        assert type(fails(200, body)) is ProtocolError
        assert isinstance(fails(400, body), APIError)


def test_invalid_utf8_in_a_string_is_mended_not_fatal() -> None:
    body = b'{"data": {"reposted_videos": [{"id": 1, "username": "ab\xffc\xed\xa0\x80"}]}}'
    (video,) = parse_reposted_response(200, {}, body).videos
    assert video.username is not None
    assert video.username.startswith("ab\ufffdc")


def test_a_lone_surrogate_escape_is_mended_and_pairs_survive() -> None:
    body = (
        rb'{"data": {"reposted_videos": [{"id": 1, "video_description": "cut \ud83d",'
        rb' "hashtag_names": ["\ude00x", "\ud83d\ude00", "\\ud800"]}]}}'
    )
    (video,) = parse_reposted_response(200, {}, body).videos
    assert video.video_description == "cut \ufffd"
    # An escaped backslash before "ud800" is text, not an escape: it stays as it was.
    assert video.hashtag_names == ["\ufffdx", "😀", "\\ud800"]


def test_raw_control_bytes_and_a_bom_are_mended() -> None:
    body = b'\xef\xbb\xbf{"data": {"reposted_videos": [{"id": 1, "username": "a\x00b\x1f"}]}}'
    (video,) = parse_reposted_response(200, {}, body).videos
    assert video.username == "a\x00b\x1f"


def test_mending_never_turns_a_non_object_into_a_page() -> None:
    assert type(fails(200, b"\xef\xbb\xbf<html>\xff</html>", HTML)) is ProtocolError


def test_a_raw_tab_inside_a_string_stays_a_protocol_error() -> None:
    # Tab is whitespace outside strings, so it cannot be mended without a tokenizer.
    assert type(fails(200, b'{"data": {"reposted_videos": [{"id": 1, "username": "a\tb"}]}}')) is (
        ProtocolError
    )


# --- Any bytes at all ----------------------------------------------------------------------

STATUSES = st.sampled_from([200, 201, 204, 400, 401, 403, 404, 429, 500, 502, 503, 504]) | (
    st.integers(min_value=-5, max_value=1000)
)


def _page_or_tiktok_error(status: int, body: bytes) -> None:
    try:
        page = parse_reposted_response(status, {"Retry-After": "1"}, body, username="u")
    except TikTokError:
        return
    assert isinstance(page, RepostedVideosPage)
    assert 200 <= status < 300
    assert all(isinstance(video, Video) and type(video.id) is int for video in page.videos)
    assert isinstance(page.cursor, int)
    assert isinstance(page.has_more, bool)


@settings(max_examples=400)
@given(STATUSES, st.binary(max_size=400))
def test_arbitrary_bytes_give_a_page_or_a_tiktok_error(status: int, body: bytes) -> None:
    _page_or_tiktok_error(status, body)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False)
    | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
video_like = st.dictionaries(
    st.sampled_from([*VIDEO_FIELDS, "favourites_count", "effect_ids"]), json_values, max_size=6
)
answers = st.fixed_dictionaries(
    {},
    optional={
        "data": json_values
        | st.fixed_dictionaries(
            {},
            optional={
                "reposted_videos": st.lists(video_like, max_size=3) | json_values,
                "user_reposted_videos": st.lists(video_like, max_size=3),
                "cursor": json_values,
                "has_more": json_values,
            },
        ),
        "error": json_values
        | st.fixed_dictionaries(
            {},
            optional={
                "code": st.sampled_from(["ok", "invalid_params", "rate_limit_exceeded"])
                | json_values,
                "message": json_values,
                "log_id": json_values,
            },
        ),
    },
)


@settings(max_examples=400)
@given(STATUSES, answers)
def test_json_of_any_shape_gives_a_page_or_a_tiktok_error(status: int, answer: Any) -> None:
    _page_or_tiktok_error(status, json.dumps(answer).encode())


@settings(max_examples=300)
@given(
    st.sampled_from(sorted(p.name for p in SAMPLES.glob("*.json"))),
    st.lists(st.tuples(st.integers(min_value=0), st.binary(max_size=3)), min_size=1, max_size=4),
)
def test_mangled_samples_give_a_page_or_a_tiktok_error(
    name: str, edits: list[tuple[int, bytes]]
) -> None:
    body = bytearray(sample(name))
    for position, replacement in edits:
        at = position % (len(body) + 1)
        body[at : at + len(replacement)] = replacement
    _page_or_tiktok_error(200, bytes(body))
    _page_or_tiktok_error(400, bytes(body))


# --- parse_token_response ----------------------------------------------------------------------


def test_token_answer_is_decoded() -> None:
    token = parse_token_response(200, JSON, sample("token_ok.json"))
    assert token.access_token.startswith("clt.2.")
    assert (token.expires_in, token.token_type) == (7200, "Bearer")


def test_flat_token_error_on_http_200_is_an_auth_error() -> None:
    with pytest.raises(AuthError) as caught:
        parse_token_response(200, JSON, sample("token_error_invalid_client.json"))
    error = caught.value
    assert type(error) is AuthError
    assert (error.status, error.code) == (200, "invalid_client")
    assert error.message == "Client key or secret is incorrect."
    assert error.log_id == "20240228094323C6B5A4F3E2D1C0B9A8F7"


def test_flat_token_error_on_http_400_is_an_auth_error() -> None:
    with pytest.raises(AuthError) as caught:
        parse_token_response(400, JSON, sample("token_error_missing_secret.json"))
    assert (caught.value.status, caught.value.code) == (400, "invalid_request")
    assert caught.value.message == "Client secret is missed in request."


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (502, NON_JSON["gateway_502_html"].encode(), ServerError),
        (500, b"", ServerError),
        (500, b'{"error": "server_error", "error_description": "try later"}', ServerError),
        (429, b"", RateLimitError),
        (401, b"<html>401</html>", AuthError),
        (400, b"", AuthError),
        (200, b"", ProtocolError),
        (200, NON_JSON["gateway_504_html"].encode(), ProtocolError),
        (200, b"{}", ProtocolError),
        (200, b'{"access_token": ""}', ProtocolError),
        (200, b'{"access_token": "clt.x", "expires_in": 0}', ProtocolError),
        (200, b'{"access_token": "clt.x", "expires_in": "soon"}', ProtocolError),
        (200, b'{"access_token": "clt.x\\r\\nX-Evil: 1", "expires_in": 60}', ProtocolError),
        (200, b'{"error": {"code": "scope_not_authorized", "message": "no"}}', AuthError),
        (200, b'{"error": {"code": "rate_limit_exceeded", "message": "slow"}}', RateLimitError),
        (302, b'{"access_token": "clt.x", "expires_in": 60}', ProtocolError),
        (400, b'{"access_token": "clt.x", "expires_in": 60}', AuthError),
    ],
)
def test_token_failures_have_their_types(status: int, body: bytes, kind: type[APIError]) -> None:
    with pytest.raises(TikTokError) as caught:
        parse_token_response(status, {"Retry-After": "5"}, body)
    assert type(caught.value) is kind
    assert "X-Evil" not in str(caught.value)


def test_token_answer_loose_forms() -> None:
    token = parse_token_response(200, {}, b'{"access_token": "clt.x", "expires_in": "3600"}')
    assert (token.expires_in, token.token_type) == (3600, "Bearer")
    token = parse_token_response(200, {}, b'{"access_token": "clt.x"}')
    assert token.expires_in == DEFAULT_TOKEN_LIFETIME


@settings(max_examples=300)
@given(STATUSES, st.binary(max_size=200) | answers.map(lambda a: json.dumps(a).encode()))
def test_any_token_answer_gives_a_token_or_a_tiktok_error(status: int, body: bytes) -> None:
    try:
        token = parse_token_response(status, {}, body)
    except TikTokError:
        return
    assert 200 <= status < 300
    assert token.access_token
    assert token.expires_in > 0


# --- Secrets never leak ------------------------------------------------------------------------


def test_no_token_or_secret_in_any_repr_or_error_on_the_whole_path() -> None:
    texts: list[str] = []
    token_request = build_token_request(KEY, SECRET)
    texts += [repr(token_request), str(token_request)]
    answer = parse_token_response(200, {}, body_of({"access_token": TOKEN, "expires_in": 60}))
    texts += [repr(answer), str(answer)]
    request = build_reposted_request("someone", access_token=answer.access_token)
    texts += [repr(request), str(request)]
    for name, status, _kind, _code in ERROR_SAMPLES:
        error = fails(status, sample(name), username="someone")
        texts += [str(error), repr(error), repr(pickle.loads(pickle.dumps(error)))]
    for text in texts:
        assert TOKEN not in text
        assert SECRET not in text


def test_new_error_types_survive_pickling_with_their_details() -> None:
    for error in (
        fails(400, sample("error_400_invalid_cursor.json"), username="a"),
        fails(401, sample("error_401_access_token_invalid.json"), username="b"),
        fails(429, sample("error_429_daily_quota.json"), {"Retry-After": "9"}),
    ):
        copy = pickle.loads(pickle.dumps(error))
        assert type(copy) is type(error)
        assert copy.__dict__ == error.__dict__
        assert str(copy) == str(error)
