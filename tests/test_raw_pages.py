"""What the API sent is what a page keeps: raw bytes per video, a decode that never loses a page."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tiktok_repost_async.errors import ProtocolError
from tiktok_repost_async.models import Video, VideoProblem, decode_video
from tiktok_repost_async.protocol import parse_reposted_response


def answer(*videos: bytes, extra_top: bytes = b"", extra_data: bytes = b"") -> bytes:
    """Return a page's body, the videos' JSON text placed in it byte for byte."""
    return (
        b'{"data": {"reposted_videos": [' + b", ".join(videos) + b'], "cursor": 200,'
        b' "has_more": true' + extra_data + b'}, "error": {"code": "ok", "message": "",'
        b' "log_id": "L1", "http_status_code": 200}' + extra_top + b"}"
    )


# Spellings and keys our model would not write back the same: spaces, exponents, trailing
# zeros, unknown keys at every depth, string ids, escapes.
ODD_SPELLINGS = (
    b'{ "id" : 7000000000000000001 , "like_count": 1e3, "view_count": 10.0,'
    b' "video_description": "caf\\u00e9 \\u0000 \\ud83d\\ude02",'
    b' "sticker_info_list": [{"sticker_id": "277994419946979", "sticker_z": [1, {"q": null}]}],'
    b' "hashtag_info_list": [{"hashtag_id": 73207681965695992750, "hashtag_name": "fyp"}],'
    b' "effect_ids": ["1", "2"], "x_new": {"deep": {"deeper": [true, false, -0.0]}} }'
)


def test_raw_videos_are_the_bytes_of_each_object_as_sent() -> None:
    plain = b'{"id": 1, "username": "a"}'
    body = answer(plain, ODD_SPELLINGS, extra_top=b', "extensions": {"x": 1}')
    page = parse_reposted_response(200, {}, body, username="u")
    assert page.raw_videos == [plain, ODD_SPELLINGS]
    assert [video.id for video in page.videos] == [1, 7000000000000000001]
    assert page.problems == []
    # The typed view reads the numbers; the raw keeps their spelling and every unknown key.
    odd = page.videos[1]
    assert (odd.like_count, odd.view_count) == (1000, 10)
    assert odd.sticker_info_list is not None
    assert odd.sticker_info_list[0].sticker_id == "277994419946979"
    assert odd.hashtag_info_list is not None
    assert odd.hashtag_info_list[0].hashtag_id == 73207681965695992750
    assert json.loads(page.raw_videos[1])["x_new"] == {"deep": {"deeper": [True, False, -0.0]}}


DRIFTED = {
    "video_duration": b"15.5",
    "hashtag_names": b'["fyp", null]',
    "region_code": b"42",
    "is_stem_verified": b'"maybe"',
    "like_count": b'"12K"',
    "create_time": b'"2024-01-28T10:00:00Z"',
    "video_label": b'"AI-generated"',
    "hashtag_info_list": b'["fyp"]',
    "sticker_info_list": b'{"sticker_id": 1}',
    "music_id": b"1.5e18",
}


@pytest.mark.parametrize(("field", "value"), sorted(DRIFTED.items()))
def test_a_value_of_another_json_type_costs_only_its_typed_field(field: str, value: bytes) -> None:
    before = b'{"id": 1, "username": "a", "like_count": 3}'
    drifted = b'{"id": 2, "username": "b", "view_count": 9, "%s": %s}' % (field.encode(), value)
    after = b'{"id": 3, "username": "c"}'
    page = parse_reposted_response(200, {}, answer(before, drifted, after), username="u")
    # The page decodes, every video is there, and the odd one is kept as sent.
    assert [video.id for video in page.videos] == [1, 2, 3]
    assert page.raw_videos == [before, drifted, after]
    assert page.videos[0] == Video(id=1, username="a", like_count=3)
    assert page.videos[2] == Video(id=3, username="c")
    odd = page.videos[1]
    assert (odd.username, odd.view_count) == ("b", 9)
    assert getattr(odd, field) is None
    (problem,) = page.problems
    assert (problem.position, problem.video_id, problem.field, problem.skipped) == (
        1,
        2,
        field,
        False,
    )
    assert problem.reason


def test_several_odd_fields_in_one_video_are_each_named() -> None:
    video = b'{"id": 5, "video_duration": 1.5, "is_stem_verified": "yes", "username": "ok"}'
    page = parse_reposted_response(200, {}, answer(video))
    assert page.videos == [Video(id=5, username="ok")]
    assert {problem.field for problem in page.problems} == {"video_duration", "is_stem_verified"}


@pytest.mark.parametrize(
    ("video", "reason"),
    [
        (b'{"like_count": 1}', "no id"),
        (b'{"id": null, "like_count": 1}', "unusable id"),
        (b'{"id": "n/a"}', "unusable id"),
        (b'{"id": 1.5}', "unusable id"),
        (b'{"id": true}', "unusable id"),
        (b'{"id": ' + b"9" * 5000 + b"}", "unusable id"),
        (b'"just a string"', "not a JSON object"),
        (b"[1, 2]", "not a JSON object"),
        (b"null", "not a JSON object"),
    ],
)
def test_a_video_without_a_usable_id_is_reported_and_skipped(video: bytes, reason: str) -> None:
    good = b'{"id": 10}'
    page = parse_reposted_response(200, {}, answer(good, video, good), username="u")
    assert [v.id for v in page.videos] == [10, 10]
    assert page.raw_videos == [good, good]
    (problem,) = page.problems
    assert (problem.position, problem.video_id, problem.field, problem.skipped) == (
        1,
        None,
        None,
        True,
    )
    assert reason in problem.reason
    assert problem.excerpt == video[:200].decode()


def test_deep_nesting_inside_an_unknown_key_keeps_the_video() -> None:
    # Up to about Python's recursion limit (1,000 levels, far past any real answer); deeper than
    # that the whole answer is a ProtocolError (tests/test_protocol.py), never a crash.
    deep = b"[" * 800 + b"]" * 800
    video = b'{"id": 4, "x_deep": ' + deep + b', "username": "d"}'
    page = parse_reposted_response(200, {}, answer(video))
    assert page.raw_videos == [video]
    assert page.videos == [Video(id=4, username="d")]


def test_huge_numbers_and_nuls_anywhere_survive_in_the_raw_bytes() -> None:
    video = (
        b'{"id": 123456789012345678901, "like_count": 1' + b"0" * 30 + b', "username":'
        b' "a\\u0000b", "x": 1e400}'
    )
    page = parse_reposted_response(200, {}, answer(video))
    assert page.raw_videos == [video]
    (kept,) = page.videos
    assert kept.id == 123456789012345678901
    assert kept.username == "a\x00b"
    # 1 followed by 30 zeros is an int to Python: typed, exact.
    assert kept.like_count == 10**30


def test_a_body_that_is_not_json_is_still_a_protocol_error() -> None:
    for body in (b"<html>502 Bad Gateway</html>", answer(b'{"id": 1}')[:-5], b""):
        with pytest.raises(ProtocolError):
            parse_reposted_response(200, {"Content-Type": "text/html"}, body)


def test_invalid_utf8_inside_an_unknown_key_is_kept_as_sent() -> None:
    # The envelope's decoder does not check strings it skips; the typed view never reads it.
    video = b'{"id": 1, "x_blob": "ab\xffc", "username": "ok"}'
    page = parse_reposted_response(200, {}, answer(video))
    assert page.videos == [Video(id=1, username="ok")]
    assert page.raw_videos == [video]


def test_decode_video_is_the_documented_way_to_read_raw_bytes() -> None:
    video, problems = decode_video(b'{"id": "77", "video_duration": 2.5, "unknown": 1}', 3)
    assert video == Video(id=77)
    assert problems == [VideoProblem(3, 77, "video_duration", "Expected `int | null`, got `float`")]


# Any JSON value in any field: the page never fails, and every video with a usable id is kept.
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**25), max_value=10**25)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=6,
)
FIELD_NAMES = [*DRIFTED, "id", "username", "effect_info_list", "video_tag", "favourites_count"]


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(st.lists(st.dictionaries(st.sampled_from(FIELD_NAMES), json_values), max_size=5))
def test_any_mix_of_values_gives_a_page_with_every_usable_video(
    videos: list[dict[str, Any]],
) -> None:
    raws = [json.dumps(video).encode() for video in videos]
    page = parse_reposted_response(200, {}, answer(*raws) if raws else answer())
    usable = []
    for raw, video in zip(raws, videos, strict=True):
        value = video.get("id")
        try:
            usable.append((msgspec.json.decode(json.dumps(value), type=int, strict=False), raw))
        except (msgspec.ValidationError, ValueError):
            continue
    assert [(video.id, raw) for video, raw in zip(page.videos, page.raw_videos, strict=True)] == (
        usable
    )
    assert sum(problem.skipped for problem in page.problems) == len(videos) - len(usable)
