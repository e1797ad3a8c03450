"""Tests of the msgspec models: field list, decoding quirks, the favourites alias, to_dict."""

from __future__ import annotations

import gc
import json
import pathlib
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tiktok_repost_async.models import (
    DEFAULT_FIELDS,
    ERROR_RESPONSE_DECODER,
    FIELD_ALIASES,
    REPOSTED_RESPONSE_DECODER,
    TOKEN_ANSWER_DECODER,
    VIDEO_FIELDS,
    APIErrorBody,
    EffectInfo,
    ErrorResponse,
    HashtagInfo,
    RepostedVideosData,
    RepostedVideosPage,
    RepostedVideosResponse,
    StickerInfo,
    TokenAnswer,
    TokenResponse,
    Video,
    VideoLabel,
    VideoTag,
)

SAMPLES = pathlib.Path(__file__).parent / "samples"

# The list in ../shared/api/NOTES.md, "Video fields accepted by this endpoint", in its order.
NOTES_FIELDS = [
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
]


def decode_video(obj: dict[str, Any] | bytes) -> Video:
    body = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
    return msgspec.json.decode(body, type=Video, strict=False)


def videos_of(sample: str) -> list[Video]:
    answer = REPOSTED_RESPONSE_DECODER.decode((SAMPLES / sample).read_bytes())
    assert answer.data is not None
    return answer.data.reposted_videos or answer.data.user_reposted_videos or []


# --- The field list ----------------------------------------------------------------------


def test_video_fields_are_the_documented_list_in_order() -> None:
    assert list(VIDEO_FIELDS) == NOTES_FIELDS


def test_video_struct_has_one_public_field_per_video_field_in_the_same_order() -> None:
    public = [f.encode_name for f in msgspec.structs.fields(Video) if not f.name.startswith("_")]
    assert public == list(VIDEO_FIELDS)


def test_default_fields_request_everything_and_include_id() -> None:
    assert DEFAULT_FIELDS == VIDEO_FIELDS
    assert "id" in DEFAULT_FIELDS


def test_field_aliases_point_at_valid_fields() -> None:
    assert FIELD_ALIASES == {"favourites_count": "favorites_count"}
    assert set(FIELD_ALIASES.values()) <= set(VIDEO_FIELDS)
    assert not set(FIELD_ALIASES) & set(VIDEO_FIELDS)


# --- Video decoding ----------------------------------------------------------------------


def test_only_requested_fields_come_back_and_the_rest_is_none() -> None:
    video = decode_video({"id": 7, "like_count": 3})
    assert video.id == 7
    assert video.like_count == 3
    for name in VIDEO_FIELDS:
        if name not in ("id", "like_count"):
            assert getattr(video, name) is None, name


def test_empty_list_and_absent_list_are_told_apart() -> None:
    assert decode_video({"id": 1, "hashtag_names": []}).hashtag_names == []
    assert decode_video({"id": 1}).hashtag_names is None


def test_every_field_decodes_with_its_nested_struct() -> None:
    video = videos_of("reposted_page_first.json")[0]
    assert video.hashtag_info_list == [
        HashtagInfo(hashtag_id=1594031, hashtag_description="Todo sobre el verano"),
        HashtagInfo(hashtag_id=229207, hashtag_description=""),
    ]
    assert video.sticker_info_list is not None
    assert video.sticker_info_list[0].sticker_id == 7041239952451094278
    assert video.effect_info_list == [
        EffectInfo(
            effect_id=1064389,
            effect_name="Green Screen",
            effect_photo_uri="https://p16-sign.tiktokcdn.com/obj/effect/green_screen.png",
        )
    ]
    assert video.video_label == VideoLabel(content="Creator labeled as AI-generated")
    assert video.video_tag == VideoTag(video_tag_type="ai_generated", video_tag_number=2)
    assert video.video_mention_list == ["playa.club", "sol_y_mar"]
    assert video.is_stem_verified is False
    assert video.video_duration == 23
    assert video.favorites_count == 312
    # Every field of the sample's first video was decoded into an attribute.
    raw = json.loads((SAMPLES / "reposted_page_first.json").read_text("utf-8"))
    raw_fields = {FIELD_ALIASES.get(k, k) for k in raw["data"]["reposted_videos"][0]}
    assert raw_fields == set(VIDEO_FIELDS)
    assert all(getattr(video, name) is not None for name in VIDEO_FIELDS)


def test_video_id_is_required() -> None:
    with pytest.raises(msgspec.ValidationError, match=r"missing required field `id`"):
        decode_video({"like_count": 1})


@pytest.mark.parametrize(
    "literal",
    [
        "9999999999999999999",  # above int64 (the endpoint's own example)
        "18446744073709551616",  # 2**64
        "73207681965695992750",  # the 20-digit id of the recorded sample, above uint64
        "123456789012345678901",  # 21 digits, like the liked-videos example
    ],
)
def test_ids_beyond_int64_and_uint64_stay_exact_python_ints(literal: str) -> None:
    video = decode_video(f'{{"id": {literal}, "music_id": {literal}}}'.encode())
    assert type(video.id) is int
    assert video.id == int(literal)
    assert video.music_id == int(literal)
    # And back out, exact, through both export paths.
    assert str(video.to_dict()["id"]) == literal
    assert f'"id":{literal}' in msgspec.json.encode(video).decode()
    assert f'"id": {literal}' in json.dumps(video.to_dict())


def test_big_ids_sample_decodes_every_id_exactly() -> None:
    ids = [video.id for video in videos_of("big_ids.json")]
    assert ids == [
        9999999999999999999,
        73207681965695992750,
        123456789012345678901,
        9223372036854775807,
    ]


def test_numeric_strings_are_read_for_the_video_id_and_counts_and_kept_for_other_ids() -> None:
    video = videos_of("string_numbers.json")[0]
    # The video's own id is its key: read as its number. Other ids keep the wire's type.
    assert video.id == 7320768154089704750
    assert video.music_id == "7311335408369223682"
    assert video.like_count == 101
    assert video.hashtag_info_list == [HashtagInfo(hashtag_id="1594031", hashtag_description="x")]


def test_nested_ids_keep_the_json_type_they_were_sent_in() -> None:
    video = decode_video(
        b'{"id": 1, "music_id": 73207681965695992750, "hashtag_info_list": [{"hashtag_id": 5},'
        b' {"hashtag_id": "6"}], "sticker_info_list": [{"sticker_id": "277994419946979"}],'
        b' "effect_info_list": [{"effect_id": 123456789012345678901}]}'
    )
    assert video.music_id == 73207681965695992750
    assert video.hashtag_info_list is not None
    assert [tag.hashtag_id for tag in video.hashtag_info_list] == [5, "6"]
    assert video.sticker_info_list == [StickerInfo(sticker_id="277994419946979")]
    assert video.effect_info_list == [EffectInfo(effect_id=123456789012345678901)]
    assert video.to_dict()["sticker_info_list"] == [{"sticker_id": "277994419946979"}]


@pytest.mark.parametrize(
    "body",
    [
        b'{"id": 1.5}',
        b'{"id": "7.3e18"}',
        b'{"id": "abc"}',
        b'{"id": null}',
        b'{"id": [1]}',
        b'{"id": 1, "hashtag_names": "fyp"}',
        b'{"id": 1, "like_count": 2.5}',
        b'{"id": 1, "username": 5}',
        b'{"id": 1, "video_label": "x"}',
    ],
)
def test_wrong_types_are_rejected_not_guessed(body: bytes) -> None:
    with pytest.raises(msgspec.ValidationError):
        decode_video(body)


def test_strings_keep_nuls_emoji_and_escapes() -> None:
    first, second = videos_of("unicode_nul.json")
    assert first.username == "حموديالباشا" + "\x00" * 6 + "4"
    assert first.hashtag_names is not None
    assert "الباشا👑" in first.hashtag_names
    assert "catrachos504🇭🇳parati" in first.hashtag_names
    assert second.video_description == ('👨\u200d👩\u200d👧 旅行 😀 "quoted" tab\tend\nnew line')
    assert second.video_mention_list == ["ゆき_123"]


def test_unknown_fields_are_ignored_at_every_level() -> None:
    answer = REPOSTED_RESPONSE_DECODER.decode((SAMPLES / "unknown_fields.json").read_bytes())
    assert answer.error == APIErrorBody(
        code="ok", message="", log_id="20240405132544A8A35938AA061A19F445"
    )
    assert answer.data is not None
    (video,) = answer.data.reposted_videos or []
    assert video == Video(
        id=7320768196569599275,
        like_count=6,
        hashtag_info_list=[HashtagInfo(hashtag_id=42, hashtag_description="")],
        video_label=VideoLabel(content="label"),
    )


def test_keys_in_any_order_and_fields_missing_in_some_videos() -> None:
    videos = videos_of("reposted_page_first.json")
    assert [v.id for v in videos] == [
        7331458123984915744,
        7329902817264618798,
        7329021552290499882,
        7328674110035693856,
        7328110493281258795,
    ]
    assert videos[1].video_label is None
    assert videos[4].video_label == VideoLabel(content="Paid partnership")
    assert videos[3].music_id is None
    assert videos[3].view_count == 0


# --- favorites_count / favourites_count ---------------------------------------------------


def test_both_spellings_fill_the_one_favorites_count() -> None:
    videos = videos_of("favourites_spellings.json")
    assert [v.favorites_count for v in videos] == [10, 20, 30, None]


def test_the_documented_spelling_wins_when_both_disagree() -> None:
    video = decode_video({"id": 1, "favorites_count": 5, "favourites_count": 9})
    assert video.favorites_count == 5


def test_favourites_spelling_never_shows_in_repr_encoding_or_to_dict() -> None:
    video = decode_video({"id": 1, "favourites_count": 9})
    assert "favourites" not in repr(video)
    assert video.to_dict() == {"id": 1, "favorites_count": 9}
    assert msgspec.json.encode(video) == b'{"id":1,"favorites_count":9}'
    assert video == decode_video({"id": 1, "favorites_count": 9})


def test_constructing_with_the_british_spelling_folds_it_too() -> None:
    assert Video(id=1, _favourites_count=4) == Video(id=1, favorites_count=4)


def test_constructing_with_both_spellings_keeps_the_documented_one() -> None:
    video = Video(id=1, favorites_count=5, _favourites_count=9)
    assert video == Video(id=1, favorites_count=5)
    assert "favourites" not in repr(video)
    assert video.to_dict() == {"id": 1, "favorites_count": 5}


def test_a_page_folds_the_british_spelling_of_every_video() -> None:
    # The spelling that the fields parameter asks for, for a whole page and in any key order:
    # each video must equal the one the documented spelling gives.
    british = [{"favourites_count": n, "id": n} for n in range(50)]
    body = json.dumps({"data": {"reposted_videos": british}}).encode()
    answer = REPOSTED_RESPONSE_DECODER.decode(body)
    assert answer.data is not None
    assert answer.data.reposted_videos == [Video(id=n, favorites_count=n) for n in range(50)]


def test_zero_favourites_is_kept_not_mistaken_for_absent() -> None:
    assert decode_video({"id": 1, "favourites_count": 0}).favorites_count == 0


# --- to_dict -----------------------------------------------------------------------------


def test_to_dict_holds_only_returned_fields_under_wire_names() -> None:
    video = videos_of("reposted_page_first.json")[0]
    data = video.to_dict()
    assert list(data) == list(VIDEO_FIELDS)
    assert data["effect_info_list"][0]["effect_photo_URI"].endswith("green_screen.png")
    assert data["video_tag"] == {"video_tag_type": "ai_generated", "video_tag_number": 2}
    assert data["favorites_count"] == 312
    sparse = decode_video({"id": 3, "hashtag_info_list": [{"hashtag_id": 1}]}).to_dict()
    assert sparse == {"id": 3, "hashtag_info_list": [{"hashtag_id": 1}]}


def test_to_dict_is_plain_json_and_decodes_back_to_the_same_video() -> None:
    for sample in ("reposted_page_first.json", "big_ids.json", "unicode_nul.json"):
        for video in videos_of(sample):
            text = json.dumps(video.to_dict(), ensure_ascii=False)
            assert decode_video(text.encode()) == video


# --- Struct configuration ----------------------------------------------------------------


def test_videos_are_frozen() -> None:
    video = decode_video({"id": 1})
    with pytest.raises(AttributeError):
        video.like_count = 3  # type: ignore[misc]


def test_decoded_objects_stay_out_of_the_cycle_collector() -> None:
    answer = REPOSTED_RESPONSE_DECODER.decode((SAMPLES / "reposted_page_first.json").read_bytes())
    assert answer.data is not None
    video = (answer.data.reposted_videos or [])[0]
    assert not gc.is_tracked(video)
    assert video.hashtag_info_list is not None
    assert not gc.is_tracked(video.hashtag_info_list[0])


def _structs_in(value: Any) -> list[msgspec.Struct]:
    if isinstance(value, list):
        return [struct for item in value for struct in _structs_in(item)]
    if isinstance(value, msgspec.Struct):
        nested = [_structs_in(getattr(value, name)) for name in value.__struct_fields__]
        return [value, *(struct for group in nested for struct in group)]
    return []


def test_every_decoded_struct_is_frozen_and_outside_the_cycle_collector() -> None:
    # With gc=True the typed decode of a 100-video page measured 13-19% slower; a type that
    # lost gc=False would cost that silently, so every kind of decoded object is checked here.
    answer = REPOSTED_RESPONSE_DECODER.decode((SAMPLES / "reposted_page_first.json").read_bytes())
    structs = _structs_in(answer)
    kinds = {type(struct) for struct in structs}
    assert kinds >= {
        RepostedVideosResponse,
        RepostedVideosData,
        APIErrorBody,
        Video,
        HashtagInfo,
        StickerInfo,
        EffectInfo,
        VideoLabel,
        VideoTag,
    }
    for kind in kinds:
        assert kind.__struct_config__.gc is False, kind
        assert kind.__struct_config__.frozen is True, kind
    assert not any(gc.is_tracked(struct) for struct in structs)


def test_page_defaults_end_the_walk() -> None:
    page = RepostedVideosPage(videos=[])
    assert (page.cursor, page.has_more, page.log_id) == (0, False, None)


def test_the_decoders_are_built_once_for_their_types() -> None:
    assert isinstance(REPOSTED_RESPONSE_DECODER, msgspec.json.Decoder)
    assert REPOSTED_RESPONSE_DECODER.type is RepostedVideosResponse
    assert ERROR_RESPONSE_DECODER.type is ErrorResponse
    assert TOKEN_ANSWER_DECODER.type is TokenAnswer


def test_wire_structs_encode_the_api_shape_without_nulls() -> None:
    # What a simulator would send: only the keys that were set.
    answer = RepostedVideosResponse(
        data=RepostedVideosData(user_reposted_videos=[Video(id=5)], cursor=1, has_more=False),
        error=APIErrorBody(code="ok", message="", log_id="x"),
    )
    body = msgspec.json.encode(answer)
    assert json.loads(body) == {
        "data": {"user_reposted_videos": [{"id": 5}], "cursor": 1, "has_more": False},
        "error": {"code": "ok", "message": "", "log_id": "x"},
    }
    assert REPOSTED_RESPONSE_DECODER.decode(body) == answer
    flat = TokenAnswer(error="invalid_client", error_description="bad", log_id="y")
    assert json.loads(msgspec.json.encode(flat)) == {
        "error": "invalid_client",
        "error_description": "bad",
        "log_id": "y",
    }


# --- Tokens never show ------------------------------------------------------------------

TOKEN = "clt.2.SECRETsecretSECRETsecret"


def test_token_response_repr_hides_the_token() -> None:
    answer = TokenResponse(access_token=TOKEN, expires_in=7200)
    for text in (repr(answer), str(answer), repr(list(answer.__rich_repr__()))):
        assert TOKEN not in text
        assert "7200" in text
    assert answer.access_token == TOKEN


def test_token_answer_repr_hides_the_token() -> None:
    answer = TOKEN_ANSWER_DECODER.decode(
        json.dumps({"access_token": TOKEN, "expires_in": 7200}).encode()
    )
    for text in (repr(answer), str(answer), repr(list(answer.__rich_repr__()))):
        assert TOKEN not in text
    assert answer.access_token == TOKEN
    assert "access_token=None" in repr(TokenAnswer(error="invalid_client"))


# --- Properties ----------------------------------------------------------------------------

# Text as the API sends it: any unicode scalar value (surrogates excluded, as in UTF-8), NULs and
# other control characters included.
texts = st.text(max_size=30)
ids = st.integers(min_value=0, max_value=10**25)
counts = st.integers(min_value=0, max_value=2**63 - 1)
optional_ids = st.none() | ids
nested = {
    "hashtag_info_list": st.lists(
        st.fixed_dictionaries(
            {}, optional={"hashtag_id": optional_ids, "hashtag_description": st.none() | texts}
        ),
        max_size=3,
    ),
    "sticker_info_list": st.lists(
        st.fixed_dictionaries({}, optional={"sticker_id": ids, "sticker_name": texts}),
        max_size=3,
    ),
    "effect_info_list": st.lists(
        st.fixed_dictionaries(
            {}, optional={"effect_id": ids, "effect_name": texts, "effect_photo_URI": texts}
        ),
        max_size=3,
    ),
    "video_label": st.fixed_dictionaries({}, optional={"content": texts}),
    "video_tag": st.fixed_dictionaries(
        {}, optional={"video_tag_type": texts, "video_tag_number": counts}
    ),
}
video_dicts = st.fixed_dictionaries(
    {"id": ids},
    optional={
        "create_time": counts,
        "username": texts,
        "region_code": texts,
        "video_description": texts,
        "music_id": ids,
        "like_count": counts,
        "comment_count": counts,
        "share_count": counts,
        "view_count": counts,
        "hashtag_names": st.lists(texts, max_size=4),
        "video_mention_list": st.lists(texts, max_size=4),
        "video_duration": counts,
        "is_stem_verified": st.booleans(),
        "favourites_count": counts,
        "effect_ids": st.lists(texts, max_size=2),  # unknown to us: must be ignored
        **nested,
    },
)


def _without_nones(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nones(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nones(v) for v in value]
    return value


@pytest.mark.slow
@settings(max_examples=300)
@given(video_dicts, st.booleans())
def test_any_valid_video_decodes_to_exactly_what_was_sent(
    raw: dict[str, Any], ascii_only: bool
) -> None:
    video = decode_video(json.dumps(raw, ensure_ascii=ascii_only).encode())
    expected = {FIELD_ALIASES.get(k, k): v for k, v in raw.items() if k != "effect_ids"}
    assert video.to_dict() == _without_nones(expected)
    # The exported dict is plain JSON and reads back to an equal Video.
    assert decode_video(json.dumps(video.to_dict()).encode()) == video
