"""Write a harvest store's videos as JSONL, CSV or Parquet: streamed, every id exact.

Every writer reads the store in batches (`Store.iter_videos`) and writes as it goes, so memory does
not grow with the number of videos: ten million export like ten. Videos come in the store's order
(users in input order, each user's videos in the API's order), each with a ``reposted_by`` column
naming the user whose repost list held it.

Ids are never floats. JSONL copies the stored JSON text of each video, so its numbers are the API's
digits. CSV writes integers as decimal text and lists or objects as JSON text. Parquet stores ids
(``id``, ``music_id`` and the nested hashtag, sticker and effect ids) as ``decimal128(38, 0)``:
the API's ids do not fit int64 (some exceed even uint64, with 20 digits, and the documentation
shows a 21-digit one), while 38 digits hold every id seen with room to spare, keep the column
numeric (it sorts, compares and joins as a number in pyarrow, pandas, Polars, DuckDB and Spark),
and read back as exact ``decimal.Decimal`` values. A string column would be exact too, but would
sort ``"10"`` before ``"9"`` and leave every reader to convert it.
"""

from __future__ import annotations

import csv
import importlib
import io
import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Final, Protocol

import msgspec

from .errors import ExportError
from .store import Store

__all__ = [
    "FORMATS",
    "PARQUET_EXTRA",
    "REPOSTED_BY",
    "BinaryOutput",
    "ExportError",
    "MissingExtraError",
    "export",
    "export_csv",
    "export_jsonl",
    "export_parquet",
    "format_for_path",
    "parquet_schema",
    "require_format",
]

#: The export formats, by name.
FORMATS: Final = ("jsonl", "csv", "parquet")
#: What to install for Parquet.
PARQUET_EXTRA: Final = "pip install 'tiktok-repost-async[parquet]'"

REPOSTED_BY: Final = "reposted_by"

# Bytes gathered before each write: large enough that a pipe or a file sees few system calls,
# small enough not to matter in memory.
_FLUSH_BYTES: Final = 1 << 20
# Rows read from the store per round trip, and rows per Parquet row group. A row group of ten
# thousand videos (a few megabytes) keeps the export's memory flat however large the store is,
# and is still large enough for readers to scan efficiently.
_BATCH: Final = 1000
_ROW_GROUP: Final = 10_000

_SUFFIXES: Final = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
}


class MissingExtraError(ExportError, ImportError):
    """Report that a format needs an optional dependency that is not installed."""


class BinaryOutput(Protocol):
    """Anything with ``write(bytes)``: a file opened in binary mode, ``sys.stdout.buffer``."""

    def write(self, data: bytes, /) -> object:
        """Write the bytes."""


def format_for_path(path: str) -> str | None:
    """Return the format a file name's suffix implies (``.csv`` is csv), or None."""
    return _SUFFIXES.get(os.path.splitext(path)[1].lower())


def require_format(format: str) -> None:
    """Raise ValueError for an unknown format, MissingExtraError if its extra is not installed."""
    if format not in FORMATS:
        raise ValueError(f"unknown export format {format!r}; choose from {', '.join(FORMATS)}")
    if format == "parquet":
        _pyarrow()


def export(store: Store, out: BinaryOutput, format: str) -> int:
    """Write every video of the store to ``out`` in ``format``; return how many."""
    writers: dict[str, Callable[[Store, BinaryOutput], int]] = {
        "jsonl": export_jsonl,
        "csv": export_csv,
        "parquet": export_parquet,
    }
    writer = writers.get(format)
    if writer is None:
        raise ValueError(f"unknown export format {format!r}; choose from {', '.join(FORMATS)}")
    return writer(store, out)


class _Buffered:
    """Gather small writes into large ones."""

    __slots__ = ("_buffer", "_out")

    def __init__(self, out: BinaryOutput) -> None:
        self._out = out
        self._buffer = bytearray()

    def write(self, data: bytes) -> None:
        self._buffer += data
        if len(self._buffer) >= _FLUSH_BYTES:
            self.flush()

    def flush(self) -> None:
        if self._buffer:
            self._out.write(bytes(self._buffer))
            self._buffer.clear()


def export_jsonl(store: Store, out: BinaryOutput) -> int:
    """Write one JSON object per line: ``reposted_by`` then the video's fields; return the count."""
    sink = _Buffered(out)
    count = 0
    user = ""
    prefix = b""
    for username, video_id, data in store.iter_videos(_BATCH):
        if username != user:
            user = username
            prefix = b'{"' + REPOSTED_BY.encode() + b'":' + msgspec.json.encode(username) + b","
        # The stored text is the video's own JSON object; splicing the user into it keeps every
        # number exactly as the API sent it and costs no decode.
        if len(data) < 3 or data[:1] != b"{" or data[-1:] != b"}":
            raise ExportError(f"video {video_id} of {username!r}: its stored data is not an object")
        sink.write(prefix + data[1:] + b"\n")
        count += 1
    sink.flush()
    return count


def _decoded(store: Store) -> Iterator[tuple[str, dict[str, Any]]]:
    decode = msgspec.json.Decoder(dict[str, Any]).decode
    for username, video_id, data in store.iter_videos(_BATCH):
        try:
            video = decode(data)
        except msgspec.DecodeError as exc:
            raise ExportError(f"video {video_id} of {username!r}: {exc}") from None
        yield username, video


def _cell(value: Any, encode: Callable[[Any], bytes]) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        # Before int: a bool is an int to Python, but "True" is neither JSON nor an integer.
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    return encode(value).decode()


def export_csv(store: Store, out: BinaryOutput) -> int:
    """Write a header and one row per video, lists and objects as JSON text; return the count."""
    columns = (REPOSTED_BY, *store.fields)
    text = io.StringIO()
    # RFC 4180: CRLF line ends, quotes doubled; fields holding commas, quotes or newlines quoted.
    writer = csv.writer(text, lineterminator="\r\n")
    writer.writerow(columns)
    encode = msgspec.json.Encoder().encode
    fields = store.fields
    count = 0
    for username, video in _decoded(store):
        writer.writerow([username, *(_cell(video.get(name), encode) for name in fields)])
        count += 1
        if text.tell() >= _FLUSH_BYTES:
            out.write(text.getvalue().encode("utf-8"))
            text.seek(0)
            text.truncate()
    out.write(text.getvalue().encode("utf-8"))
    return count


def _pyarrow() -> tuple[Any, Any]:
    # Imported on first use: pyarrow is an optional extra, and a large import that JSONL and CSV
    # exports have no use for. importlib also keeps its untyped modules away from mypy.
    try:
        return importlib.import_module("pyarrow"), importlib.import_module("pyarrow.parquet")
    except ImportError as exc:
        raise MissingExtraError(
            f"writing Parquet needs pyarrow, which is not installed: {PARQUET_EXTRA}"
        ) from exc


def parquet_schema(fields: Iterable[str]) -> Any:
    """Return the Parquet schema of an export of these video fields, ``reposted_by`` first."""
    pa, _ = _pyarrow()
    video_id = pa.decimal128(38, 0)
    string, int64 = pa.string(), pa.int64()
    known = {
        "id": video_id,
        "create_time": int64,
        "username": string,
        "region_code": string,
        "video_description": string,
        "music_id": video_id,
        "like_count": int64,
        "comment_count": int64,
        "share_count": int64,
        "view_count": int64,
        "hashtag_names": pa.list_(string),
        "hashtag_info_list": pa.list_(
            pa.struct([("hashtag_id", video_id), ("hashtag_description", string)])
        ),
        "sticker_info_list": pa.list_(
            pa.struct([("sticker_id", video_id), ("sticker_name", string)])
        ),
        "effect_info_list": pa.list_(
            pa.struct(
                [("effect_id", video_id), ("effect_name", string), ("effect_photo_URI", string)]
            )
        ),
        "video_mention_list": pa.list_(string),
        "video_label": pa.struct([("content", string)]),
        "video_duration": int64,
        "is_stem_verified": pa.bool_(),
        "favorites_count": int64,
        "video_tag": pa.struct([("video_tag_type", string), ("video_tag_number", int64)]),
    }
    # A field this module does not know yet (the API grows) is kept as JSON text, not dropped.
    columns = [(REPOSTED_BY, string)] + [(name, known.get(name, string)) for name in fields]
    return pa.schema(columns)


def export_parquet(
    store: Store, out: BinaryOutput | str | os.PathLike[str], *, row_group_size: int = _ROW_GROUP
) -> int:
    """Write a typed Parquet file, ids as decimal128(38, 0), in row groups; return the count."""
    if isinstance(row_group_size, bool) or not isinstance(row_group_size, int):
        raise TypeError(f"row_group_size must be an int, not {row_group_size!r}")
    if row_group_size < 1:
        raise ValueError(f"row_group_size must be positive, not {row_group_size}")
    pa, pq = _pyarrow()
    schema = parquet_schema(store.fields)
    names = schema.names
    fields = store.fields
    as_text = [name for name in fields if schema.field(name).type == pa.string()]
    encode = msgspec.json.Encoder().encode
    count = 0
    with pq.ParquetWriter(out, schema) as writer:
        columns: list[list[Any]] = [[] for _ in names]
        for username, video in _decoded(store):
            for name in as_text:
                value = video.get(name)
                if value is not None and not isinstance(value, str):
                    video[name] = encode(value).decode()
            columns[0].append(username)
            for column, name in zip(columns[1:], fields, strict=True):
                column.append(video.get(name))
            count += 1
            if len(columns[0]) >= row_group_size:
                _write_group(pa, writer, schema, columns)
                columns = [[] for _ in names]
        if columns[0]:
            _write_group(pa, writer, schema, columns)
    return count


def _write_group(pa: Any, writer: Any, schema: Any, columns: list[list[Any]]) -> None:
    arrays = []
    for field, values in zip(schema, columns, strict=True):
        try:
            arrays.append(pa.array(values, type=field.type))
        except (pa.ArrowException, OverflowError, TypeError, ValueError) as exc:
            raise ExportError(
                f"column {field.name!r} does not fit its Parquet type {field.type}: {exc}"
            ) from None
    writer.write_batch(pa.record_batch(arrays, schema=schema))
