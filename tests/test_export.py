"""Export writers: every format read back with ids exact, and streamed in bounded memory."""

from __future__ import annotations

import csv
import decimal
import io
import json
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tiktok_repost_async import (
    VIDEO_FIELDS,
    EffectInfo,
    HashtagInfo,
    Store,
    Video,
    VideoLabel,
    VideoTag,
)
from tiktok_repost_async.export import (
    PARQUET_EXTRA,
    MissingExtraError,
    export,
    export_csv,
    export_jsonl,
    export_parquet,
    export_to_path,
    format_for_path,
    parquet_schema,
    require_format,
    write_atomically,
)
from tiktok_repost_async.store import PageCommit

ABOVE_UINT64 = 73207681965695992750  # the recorded real id: 20 digits
ABOVE_INT64 = (1 << 63) + 5

VIDEOS: dict[str, list[Video]] = {
    "alice": [
        Video(
            id=ABOVE_UINT64,
            create_time=1_700_000_000,
            username="na\x00me",
            region_code="US",
            video_description='comma, "quote"\nnew line, café 😂',
            music_id=ABOVE_INT64,
            like_count=0,
            hashtag_names=["fyp", "تيك_توك"],
            hashtag_info_list=[HashtagInfo(hashtag_id=1_600_000_000_000_000_001)],
            sticker_info_list=[],
            effect_info_list=[
                EffectInfo(effect_id=12, effect_name="Bling", effect_photo_uri="https://x/1.png")
            ],
            video_label=VideoLabel(content="Unverified content"),
            is_stem_verified=True,
            favorites_count=3,
            video_tag=VideoTag(video_tag_type="ai_generated", video_tag_number=1),
        ),
        Video(id=9_999_999_999_999_999_999, is_stem_verified=False, hashtag_names=[]),
        Video(id=1),
    ],
    "empty_one": [],
    "bob": [Video(id=ABOVE_INT64, view_count=12, video_mention_list=["a", "b"])],
}


def expected_rows() -> list[dict[str, Any]]:
    return [
        {"reposted_by": user, **msgspec.to_builtins(video)}
        for user, videos in VIDEOS.items()
        for video in videos
    ]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "s.db", fields=VIDEO_FIELDS, max_count=100) as made:
        made.add_users(list(VIDEOS))
        for user, videos in VIDEOS.items():
            rows = [(video.id, msgspec.json.encode(video)) for video in videos]
            made.commit_page(user, rows, next_cursor=100, has_more=False, requests=1)
        yield made


def test_jsonl_keeps_every_field_and_id_exactly(store: Store) -> None:
    out = io.BytesIO()
    assert export_jsonl(store, out) == 4
    lines = out.getvalue().decode("utf-8").splitlines()
    # The standard library's json keeps integers of any size exact.
    assert [json.loads(line) for line in lines] == expected_rows()
    assert lines[0].startswith('{"reposted_by":"alice","id":73207681965695992750,')


def test_csv_is_flat_with_exact_ids_and_json_lists(store: Store) -> None:
    out = io.BytesIO()
    assert export_csv(store, out) == 4
    rows = list(csv.reader(io.StringIO(out.getvalue().decode("utf-8"), newline="")))
    assert rows[0] == ["reposted_by", *VIDEO_FIELDS, "extra"]
    records = [dict(zip(rows[0], row, strict=True)) for row in rows[1:]]
    assert [int(r["id"]) for r in records] == [r["id"] for r in expected_rows()]
    first = records[0]
    assert first["music_id"] == str(ABOVE_INT64)
    # A NUL would end the field in many readers: the string goes as its JSON literal.
    assert first["username"] == '"na\\u0000me"'
    assert json.loads(first["username"]) == "na\x00me"
    assert first["video_description"] == 'comma, "quote"\nnew line, café 😂'
    assert json.loads(first["hashtag_names"]) == ["fyp", "تيك_توك"]
    assert json.loads(first["hashtag_info_list"]) == [{"hashtag_id": 1_600_000_000_000_000_001}]
    assert json.loads(first["effect_info_list"])[0]["effect_photo_URI"] == "https://x/1.png"
    assert first["sticker_info_list"] == "[]"
    assert first["like_count"] == "0"
    assert (first["is_stem_verified"], records[1]["is_stem_verified"]) == ("true", "false")
    # A field the API did not return is an empty cell; an empty list is "[]".
    assert records[2]["like_count"] == ""
    assert records[1]["hashtag_names"] == "[]"
    assert records[3]["reposted_by"] == "bob"


def test_parquet_keeps_types_and_ids_exact(store: Store) -> None:
    out = io.BytesIO()
    assert export_parquet(store, out, row_group_size=3) == 4
    parquet = pq.ParquetFile(io.BytesIO(out.getvalue()))
    assert parquet.metadata.num_row_groups == 2  # written in batches, not all at once
    table = parquet.read()
    schema = table.schema
    assert schema.names == ["reposted_by", *VIDEO_FIELDS, "extra"]
    assert schema.field("id").type == pa.decimal128(38, 0)
    assert schema.field("music_id").type == pa.decimal128(38, 0)
    assert schema.field("like_count").type == pa.int64()
    assert schema.field("is_stem_verified").type == pa.bool_()
    assert schema.field("hashtag_names").type == pa.list_(pa.string())
    rows = table.to_pylist()
    assert [int(r["id"]) for r in rows] == [r["id"] for r in expected_rows()]
    assert all(isinstance(r["id"], decimal.Decimal) for r in rows)
    first = rows[0]
    assert int(first["music_id"]) == ABOVE_INT64
    assert int(first["hashtag_info_list"][0]["hashtag_id"]) == 1_600_000_000_000_000_001
    assert first["hashtag_info_list"][0]["hashtag_description"] is None
    assert first["effect_info_list"][0]["effect_photo_URI"] == "https://x/1.png"
    assert first["video_label"] == {"content": "Unverified content"}
    assert first["video_tag"] == {"video_tag_type": "ai_generated", "video_tag_number": 1}
    assert first["username"] == "na\x00me"
    assert first["sticker_info_list"] == []
    assert rows[2]["hashtag_names"] is None
    assert rows[3]["video_mention_list"] == ["a", "b"]


def test_an_empty_store_exports_headers_and_schema_only(tmp_path: Path) -> None:
    with Store(tmp_path / "e.db", fields=("id", "like_count"), max_count=100) as empty:
        outputs = {}
        for fmt in ("jsonl", "csv", "parquet"):
            outputs[fmt] = io.BytesIO()
            assert export(empty, outputs[fmt], fmt) == 0
    assert outputs["jsonl"].getvalue() == b""
    assert outputs["csv"].getvalue() == b"reposted_by,id,like_count,extra\r\n"
    table = pq.read_table(io.BytesIO(outputs["parquet"].getvalue()))
    assert table.num_rows == 0
    assert table.schema.names == ["reposted_by", "id", "like_count", "extra"]


def test_a_field_unknown_to_the_exporter_is_kept_as_json_text(tmp_path: Path) -> None:
    # The API's field list grows; a store made for a newer field must export it, not drop it.
    with Store(tmp_path / "n.db", fields=("id", "new_thing"), max_count=100) as newer:
        newer.add_users(["u"])
        newer.commit_pages([PageCommit("u", [(5, b'{"id":5,"new_thing":{"a":[1]}}')], 0, False, 1)])
        parquet, text = io.BytesIO(), io.BytesIO()
        export_parquet(newer, parquet)
        export_csv(newer, text)
    assert parquet_schema(["id", "new_thing"]).field("new_thing").type == pa.string()
    assert pq.read_table(parquet).to_pylist() == [
        {"reposted_by": "u", "id": decimal.Decimal(5), "new_thing": '{"a":[1]}', "extra": None}
    ]
    assert text.getvalue().decode().splitlines()[1] == 'u,5,"{""a"":[1]}",'


def test_parquet_without_pyarrow_names_the_extra(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    with pytest.raises(MissingExtraError, match=re.escape(PARQUET_EXTRA)):
        require_format("parquet")
    with pytest.raises(ImportError, match="pyarrow"):
        export_parquet(store, io.BytesIO())
    require_format("csv")


def test_formats_follow_file_suffixes() -> None:
    assert format_for_path("out/videos.CSV") == "csv"
    assert format_for_path("v.ndjson") == "jsonl"
    assert format_for_path("v.parquet") == "parquet"
    assert format_for_path("v.txt") is None
    with pytest.raises(ValueError, match="xml"):
        require_format("xml")


# A child exports a 20,000-video store, then a 200,000-video one. Its peak RSS may grow with
# the first (buffers, pyarrow's pool), but a streaming writer's peak must not grow with the second.
MEMORY_CHILD = textwrap.dedent(
    """
    import os, resource, sys
    if sys.argv[1] == "parquet":
        import pyarrow, pyarrow.parquet
    from tiktok_repost_async import Store
    from tiktok_repost_async.export import export

    peaks = []
    for db in sys.argv[2:]:
        with Store(db, create=False) as store, open(os.devnull, "wb") as out:
            count = export(store, out, sys.argv[1])
        peaks.append((count, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))
    print(peaks[0][0], peaks[1][0], peaks[1][1] - peaks[0][1])
    """
)


def build_store(path: Path, users: int, per_user: int) -> None:
    number = 0
    with Store(path, fields=VIDEO_FIELDS, max_count=100) as store:
        names = [f"user{i}" for i in range(users)]
        store.add_users(names)
        for name in names:
            pages = []
            for page in range(per_user // 100):
                rows = []
                for _ in range(100):
                    number += 1
                    video_id = (7_300_000_000_000_000_000 + number) * 10 + 7
                    video = Video(
                        id=video_id,
                        create_time=1_700_000_000 + number,
                        like_count=number,
                        hashtag_names=["fyp", "cats"],
                        hashtag_info_list=[HashtagInfo(hashtag_id=1_600_000_000_000_000_000)],
                        video_description="a video about cats " * 8,
                    )
                    rows.append((video_id, msgspec.json.encode(video)))
                more = page < per_user // 100 - 1
                pages.append(PageCommit(name, rows, (page + 1) * 100, more, 1))
            store.commit_pages(pages)


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("large")
    small, large = folder / "small.db", folder / "large.db"
    build_store(small, 20, 1000)
    build_store(large, 200, 1000)
    return small, large


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_a_large_store_exports_in_bounded_memory(fmt: str, stores: tuple[Path, Path]) -> None:
    small, large = stores
    result = subprocess.run(
        [sys.executable, "-c", MEMORY_CHILD, fmt, str(small), str(large)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    small_count, large_count, growth_kib = map(int, result.stdout.split())
    assert (small_count, large_count) == (20_000, 200_000)
    # Holding the 200,000 rows at once would take over 100 MB; streaming stays flat.
    assert growth_kib < 16 * 1024, f"peak RSS grew by {growth_kib} KiB"


def test_an_id_beyond_38_digits_is_kept_in_extra_not_rounded(tmp_path: Path) -> None:
    with Store(tmp_path / "x.db", fields=("id",), max_count=100) as store:
        store.add_users(["u"])
        huge = 10**40
        store.commit_pages([PageCommit("u", [(huge, b'{"id":%d}' % huge)], 0, False, 1)])
        parquet = io.BytesIO()
        export_parquet(store, parquet)
        # JSONL and CSV have no width to overflow: the digits pass through.
        text = io.BytesIO()
        export_csv(store, text)
    (row,) = pq.read_table(parquet).to_pylist()
    # decimal128(38, 0) cannot hold 41 digits: the column is null, the digits are in extra.
    assert row["id"] is None
    assert json.loads(row["extra"]) == {"id": huge}
    assert f'"id":{huge}' in row["extra"]
    assert text.getvalue().decode().splitlines()[1] == f"u,{huge},"


def test_string_ids_keep_the_extra_rules_and_leave_odd_values_as_sent(tmp_path: Path) -> None:
    fields = ("id", "music_id", "hashtag_info_list", "sticker_info_list")
    huge = 10**40
    videos = [
        # Ids as numbers, as the API sends id, music_id and hashtag_id.
        b'{"id":73207681965695992750,"music_id":9223372036854775813,'
        b'"hashtag_info_list":[{"hashtag_id":1600000000000000001,"hashtag_name":"x"}],'
        b'"sticker_info_list":[{"sticker_id":"277994419946979","sticker_name":"s"}]}',
        # An id sent as a string, one beyond 38 digits, and a list no decoder takes whole.
        b'{"id":"12","music_id":%d,"hashtag_info_list":[{"hashtag_id":1e400}]}' % huge,
    ]
    with Store(tmp_path / "s.db", fields=fields, max_count=100) as store:
        store.add_users(["u"])
        rows = [(73207681965695992750, videos[0]), (12, videos[1])]
        store.commit_pages([PageCommit("u", rows, 0, False, 1)])
        parquet, text = io.BytesIO(), io.BytesIO()
        export(store, parquet, "parquet", id_type="string")
        export(store, text, "csv", id_type="string")
        with pytest.raises(ValueError, match="--id-type string applies to csv and parquet"):
            export(store, io.BytesIO(), "jsonl", id_type="string")
        with pytest.raises(ValueError, match="unknown id type"):
            export(store, io.BytesIO(), "csv", id_type="int")
    first, second = pq.read_table(parquet).to_pylist()
    assert first["id"] == "73207681965695992750"
    assert first["music_id"] == "9223372036854775813"
    assert first["hashtag_info_list"] == [
        {"hashtag_id": "1600000000000000001", "hashtag_description": None}
    ]
    assert first["sticker_info_list"] == [{"sticker_id": "277994419946979", "sticker_name": "s"}]
    # The same rules as with decimal ids: the string spelling, the 41 digits and the nested
    # object with keys its struct lacks go to extra exactly as sent.
    assert second["id"] == "12"
    assert second["music_id"] is None
    extra = json.loads(second["extra"])
    assert extra["id"] == "12"
    assert extra["music_id"] == huge
    records = list(csv.DictReader(io.StringIO(text.getvalue().decode(), newline="")))
    assert records[0]["id"] == "73207681965695992750"
    assert json.loads(records[0]["hashtag_info_list"]) == [
        {"hashtag_id": "1600000000000000001", "hashtag_name": "x"}
    ]
    # Already strings on the wire: the cell is the wire's text.
    assert records[0]["sticker_info_list"] == (
        '[{"sticker_id":"277994419946979","sticker_name":"s"}]'
    )
    # 1e400 is beyond any float: the cell keeps the value as sent rather than failing.
    assert records[1]["hashtag_info_list"] == '[{"hashtag_id":1e400}]'


def test_bytes_that_are_not_utf8_never_stop_an_export(tmp_path: Path) -> None:
    # Kept as sent in the store (an unknown key's string cut inside a character); every
    # export mends them to U+FFFD instead of failing half-way.
    data = b'{"id": 1, "username": "ok", "x_note": "ab\xffc"}'
    with Store(tmp_path / "u.db", fields=("id", "username"), max_count=100) as store:
        store.add_users(["u"])
        store.commit_pages([PageCommit("u", [(1, data)], 0, False, 1)])
        outputs = {fmt: io.BytesIO() for fmt in ("jsonl", "csv", "parquet")}
        for fmt, out in outputs.items():
            assert export(store, out, fmt) == 1
    (line,) = outputs["jsonl"].getvalue().decode("utf-8").splitlines()
    assert json.loads(line) == {
        "reposted_by": "u",
        "id": 1,
        "username": "ok",
        "x_note": "ab\ufffdc",
    }
    (row,) = list(csv.DictReader(io.StringIO(outputs["csv"].getvalue().decode(), newline="")))
    assert json.loads(row["extra"]) == {"x_note": "ab\ufffdc"}
    (record,) = pq.read_table(io.BytesIO(outputs["parquet"].getvalue())).to_pylist()
    assert json.loads(record["extra"]) == {"x_note": "ab\ufffdc"}


def test_csv_tells_empty_strings_from_missing_fields_and_escapes_control_characters(
    tmp_path: Path,
) -> None:
    videos = [
        b'{"id": 1, "username": "", "region_code": "US"}',
        b'{"id": 2, "region_code": null}',
        b'{"id": 3, "username": "a\\u0000b\\u0007c\\u007f", "region_code": "tab\\tnew\\nline"}',
        b'{"id": 4, "username": "\\"quoted\\" start", "region_code": "x\\"y"}',
    ]
    with Store(tmp_path / "c.db", fields=("id", "username", "region_code"), max_count=100) as st:
        st.add_users(["u"])
        st.commit_pages([PageCommit("u", [(i + 1, v) for i, v in enumerate(videos)], 0, False, 1)])
        out = io.BytesIO()
        export_csv(st, out)
    text = out.getvalue()
    assert b"\x00" not in text
    assert b"\x07" not in text
    rows = list(csv.DictReader(io.StringIO(text.decode(), newline="")))
    cells = [(r["username"], r["region_code"]) for r in rows]
    assert cells == [
        ('""', "US"),  # an empty string
        ("", ""),  # not returned, and null
        ('"a\\u0000b\\u0007c\\u007f"', "tab\tnew\nline"),  # RFC 4180 quoting suffices
        ('"\\"quoted\\" start"', 'x"y'),
    ]

    def read(cell: str) -> str | None:
        # The documented rule: empty is missing, a leading quote is a JSON string.
        if not cell:
            return None
        return json.loads(cell) if cell.startswith('"') else cell

    sent = [json.loads(v) for v in videos]
    for row, video in zip(rows, sent, strict=True):
        for name in ("username", "region_code"):
            assert read(row[name]) == video.get(name), (name, row)


def test_export_to_path_follows_the_suffix_and_replaces_only_when_whole(
    store: Store, tmp_path: Path
) -> None:
    out = tmp_path / "v.csv"
    out.write_bytes(b"the old export")
    count = export_to_path(store, out)
    assert count == sum(len(videos) for videos in VIDEOS.values())
    with out.open(encoding="utf-8", newline="") as text:
        assert len(list(csv.DictReader(text))) == count
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".v.csv.")] == []

    def fail(sink: io.BufferedWriter) -> int:
        sink.write(b"half an export")
        raise OSError("disk full")

    before = out.read_bytes()
    with pytest.raises(OSError, match="disk full"):
        write_atomically(out, fail)
    # The old file stands, and the partial one is gone.
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("v.")) == ["v.csv"]
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".part")] == []


def test_write_atomically_gives_the_file_the_umask_s_permissions(tmp_path: Path) -> None:
    import os

    umask = os.umask(0o027)
    try:
        assert write_atomically(tmp_path / "x.jsonl", lambda sink: sink.write(b"{}\n")) == 3
    finally:
        os.umask(umask)
    assert (tmp_path / "x.jsonl").stat().st_mode & 0o777 == 0o640
    with pytest.raises(FileNotFoundError):
        write_atomically(tmp_path / "no" / "x.jsonl", lambda sink: sink.write(b""))


def test_export_into_a_fifo_or_through_a_link_keeps_what_is_there(
    store: Store, tmp_path: Path
) -> None:
    import os
    import stat
    import threading

    db = str(tmp_path / "s.db")
    store.close()
    argv = [sys.executable, "-m", "tiktok_repost_async", "export", "--db", db, "--output"]
    plain = tmp_path / "plain.jsonl"
    subprocess.run([*argv, str(plain)], check=True, capture_output=True, timeout=60)
    # A FIFO (as a device or a shell's >(gzip > x.gz) is) is written in place: renaming a plain
    # file over it left its reader with nothing, and the FIFO gone (root's /dev/null likewise).
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()), daemon=True)
    reader.start()
    done = subprocess.run([*argv, str(fifo)], capture_output=True, text=True, timeout=60)
    reader.join(timeout=60)
    assert done.returncode == 0, done.stderr
    assert stat.S_ISFIFO(fifo.lstat().st_mode)
    assert got == [plain.read_bytes()]
    # A link stays a link, and the file it names gets the export.
    (tmp_path / "real.jsonl").write_bytes(b"an old export")
    link = tmp_path / "latest.jsonl"
    link.symlink_to("real.jsonl")
    subprocess.run([*argv, str(link)], check=True, capture_output=True, timeout=60)
    assert link.is_symlink()
    assert (tmp_path / "real.jsonl").read_bytes() == plain.read_bytes()
    assert len(plain.read_bytes().splitlines()) == len(expected_rows())
