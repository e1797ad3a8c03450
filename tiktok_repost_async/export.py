"""Write a harvest store's videos as JSONL, CSV or Parquet: streamed, every id exact.

Every writer reads the store in batches (`Store.iter_videos`) and writes as it goes, so memory does
not grow with the number of videos: ten million export like ten. Videos come in the store's order
(users in input order, each user's videos in the API's order), each with a ``reposted_by`` column
naming the user whose repost list held it. With ``provenance=True`` each video also carries the
``round`` it was observed in, and ``fetched_at`` (UTC, ISO 8601 with milliseconds) and ``log_id``
of the page it came on (null for videos harvested before provenance was recorded). A store of a
panel holds several rounds: ``round=N`` exports each user's list as observed in round N (a walk
that stopped at a known video completed from the rounds before it: its head, then the earlier list
past it, each video with the round it was observed in); by
default each user's latest complete observation: its latest round in which its walk reached a
final state and saw the whole list (not partial: a stop-at-known walk sees only the head; not
incomplete: a guard cut it short), else its latest one.

The store holds each video's JSON object byte for byte as the API sent it, and the formats differ
only in how much of it a typed table can hold:

- **JSONL** copies those bytes: every key (unknown and nested unknown keys too), every JSON type and
  every number's spelling is as the API sent it, with ``reposted_by`` (and the provenance keys)
  spliced in front. Bytes that are not valid UTF-8 (never seen from the live API, but a string cut
  inside a character is possible) are written with U+FFFD in their place, so that every line is
  valid JSON text; a lone surrogate escape (``"\\ud83d"``) is valid JSON and stays as sent. A video
  sent pretty-printed loses the whitespace between its tokens (never inside a string), so that it
  is one line; keys, values and spellings stay.
- **CSV** has one column per requested field plus ``extra``. A JSON string is written as its text;
  a number, ``true``/``false``, a list or an object as its JSON text exactly as sent (so ids keep
  their digits, nested ids keep their quotes, nested unknown keys stay); null and a field the API
  did not return are empty. A value of an unexpected JSON type is written the same way, as text;
  a string holding a lone surrogate escape, which no UTF-8 text holds, as its JSON literal as sent.
  ``extra`` holds the keys no column is named after, as one JSON object (empty when none). A
  string that is empty, starts with a double quote, or holds a control character (U+0000 to
  U+001F but tab, newline and carriage return, and U+007F: a NUL ends a field in many readers) is
  written as its JSON literal instead, in double quotes with ``\u0000``-style escapes: so an empty
  cell is a field not returned (or null), ``""`` is an empty string, and a cell that starts with
  a double quote is always a JSON string to decode.
- **Parquet** has typed columns: ids (``id``, ``music_id`` and the nested hashtag, sticker and
  effect ids) as ``decimal128(38, 0)``; the API's ids do not fit int64 (some exceed even uint64,
  with 20 digits, and the documentation shows a 21-digit one), while 38 digits hold every id seen
  with room to spare, keep the column numeric (it sorts, compares and joins as a number in
  pyarrow, pandas, Polars, DuckDB and Spark), and read back as exact ``decimal.Decimal`` values.
  A typed column cannot hold everything JSON can, so the string column ``extra`` holds, as one
  JSON object with the values exactly as sent, every key whose value a column does not hold
  exactly: unknown keys, a value of an unexpected JSON type (its column is then null), an id sent
  as a JSON string (its column holds the number), a nested object with keys its struct does not
  have (the struct keeps the ones it knows) or without a key its struct has (so that a missing key
  and a null stay apart), and a value that no column can take: valid JSON that msgspec cannot
  read, such as ``1e400`` (its column is null) or a string with a lone surrogate escape (its
  column holds the text with U+FFFD). Columns plus ``extra`` lose nothing, and an export never
  fails on a value the harvest kept.
"""

from __future__ import annotations

import contextlib
import csv
import datetime
import importlib
import io
import os
import re
import stat
import tempfile
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Final, Literal, Protocol, TypeVar

import msgspec

from ._extras import install_hint
from ._jsontext import compact, hold_surrogates, mend_surrogates
from .errors import ExportError
from .models import FIELD_ALIASES
from .store import StoreLike

__all__ = [
    "ALL_ROUNDS",
    "EXTRA",
    "FORMATS",
    "IDS_ONLY_COLUMNS",
    "ID_TYPES",
    "PARQUET_EXTRA",
    "PROVENANCE_COLUMNS",
    "REPOSTED_BY",
    "BinaryOutput",
    "CsvOutput",
    "ExportError",
    "MissingExtraError",
    "arrow_batches",
    "check_options",
    "export",
    "export_csv",
    "export_jsonl",
    "export_parquet",
    "export_to_path",
    "format_for_path",
    "ids_schema",
    "parquet_schema",
    "pyarrow_modules",
    "require_format",
    "write_atomically",
]

_T = TypeVar("_T")

#: The export formats, by name.
FORMATS: Final = ("jsonl", "csv", "parquet")
#: ``round=ALL_ROUNDS`` with ``ids_only``: every complete round's list, one row per user, video and
#: round (a panel's whole dehydrated dataset in one file).
ALL_ROUNDS: Final = "all"
#: What to install for Parquet.
PARQUET_EXTRA: Final = install_hint("parquet")
#: How ids can be written: ``number`` (Parquet decimal128(38, 0); CSV and JSONL as sent) or
#: ``string`` (every id column, nested ones included, as the text of its decimal digits).
ID_TYPES: Final = ("number", "string")
#: The columns of a dehydrated export (``ids_only``): who reposted which video, in which round.
IDS_ONLY_COLUMNS: Final = ("reposted_by", "id", "round")

REPOSTED_BY: Final = "reposted_by"
#: The CSV and Parquet column holding what no other column holds, as a JSON object.
EXTRA: Final = "extra"
#: The columns ``provenance=True`` adds after ``reposted_by``.
PROVENANCE_COLUMNS: Final = ("round", "fetched_at", "log_id")

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

# Wire spellings of a canonical field name (the API spells favourites_count both ways).
_SPELLINGS: Final = {canonical: (canonical, alias) for alias, canonical in FIELD_ALIASES.items()}

_LF: Final = ord("\n")
_CR: Final = ord("\r")
_FIELDS_DECODER: Final = msgspec.json.Decoder(dict[str, msgspec.Raw])
_ANY_DECODER: Final = msgspec.json.Decoder()
_STR_DECODER: Final = msgspec.json.Decoder(str)
_ENCODE: Final = msgspec.json.Encoder().encode


class MissingExtraError(ExportError, ImportError):
    """Report that a format needs an optional dependency that is not installed."""


class BinaryOutput(Protocol):
    """Anything with ``write(bytes)``: a file opened in binary mode, ``sys.stdout.buffer``."""

    def write(self, data: bytes, /) -> object:
        """Write the bytes.

        :param data: the bytes to write.
        """


def format_for_path(path: str) -> str | None:
    """Return the format a file name's suffix implies (``.csv`` is csv), or None.

    :param path: the file's path or name.
    """
    return _SUFFIXES.get(os.path.splitext(path)[1].lower())


def require_format(format: str) -> None:
    """Raise ValueError for an unknown format, MissingExtraError if its extra is not installed.

    :param format: the format's name (``jsonl``, ``csv`` or ``parquet``).
    """
    if format not in FORMATS:
        raise ValueError(f"unknown export format {format!r}; choose from {', '.join(FORMATS)}")
    if format == "parquet":
        pyarrow_modules()


def check_options(
    format: str,
    *,
    id_type: str = "number",
    ids_only: bool = False,
    round: int | Literal["all"] | None = None,
) -> None:
    """Raise ValueError for options that do not go together, before anything is read.

    :param format: ``jsonl``, ``csv`` or ``parquet``.
    :param id_type: ``number`` or ``string`` (see `ID_TYPES`).
    :param ids_only: a dehydrated export (see `export`).
    :param round: the round asked for (`ALL_ROUNDS` goes with ``ids_only`` only).
    """
    require_format(format)
    if round == ALL_ROUNDS and not ids_only:
        # Every round's full content would repeat each video's JSON once per round: a panel's
        # content is exported a round at a time, its ids all at once.
        raise ValueError(
            "--round all goes with --ids-only (who reposted which video in each round); export"
            " the videos themselves one round at a time (--round N)"
        )
    if isinstance(round, str) and round != ALL_ROUNDS:
        raise ValueError(f"round {round!r}: give a round's number, or {ALL_ROUNDS!r}")
    if id_type not in ID_TYPES:
        raise ValueError(f"unknown id type {id_type!r}; choose from {', '.join(ID_TYPES)}")
    if format == "jsonl" and id_type == "string" and not ids_only:
        # The JSONL export is the API's own bytes; rewriting its ids would make it a copy of
        # something TikTok never sent. The typed formats are where a reader's types are chosen.
        raise ValueError(
            "--id-type string applies to csv and parquet (and to --ids-only): the JSONL export"
            " keeps every video's JSON exactly as the API sent it, ids included; read it with a"
            " reader that keeps big integers (see the docs' data frames page) or export csv or"
            " parquet"
        )


def export(
    store: StoreLike,
    out: BinaryOutput,
    format: str,
    *,
    provenance: bool = False,
    round: int | Literal["all"] | None = None,
    id_type: str = "number",
    ids_only: bool = False,
) -> int:
    """Write every video of the store to ``out`` in ``format``; return how many.

    :param store: the harvest store to read.
    :param out: where to write (a binary file, ``sys.stdout.buffer``).
    :param format: ``jsonl``, ``csv`` or ``parquet``.
    :param provenance: add each video's ``round``, and ``fetched_at`` and ``log_id`` of its page.
    :param round: export each user's list as observed in this round, a partial walk completed
        from the rounds before it (default: each user's latest complete observation); with
        ``ids_only``, `ALL_ROUNDS` (``"all"``) writes every complete round's list, each row's
        ``round`` the round whose list holds it.
    :param id_type: ``number`` (Parquet ids as decimal128(38, 0), CSV and JSONL as sent) or
        ``string`` (Parquet and CSV: every id as the text of its digits, for R, Excel and other
        readers that cannot hold 20 digits; JSONL only with ``ids_only``).
    :param ids_only: write a dehydrated dataset, for sharing under TikTok's terms: only
        ``reposted_by``, ``id`` and ``round`` (plus ``fetched_at`` and ``log_id`` with
        ``provenance``), no content.
    """
    check_options(format, id_type=id_type, ids_only=ids_only, round=round)
    if ids_only:
        return _export_ids(store, out, format, provenance=provenance, round=round, id_type=id_type)
    assert not isinstance(round, str)  # check_options refused "all" without ids_only
    if format == "jsonl":
        return export_jsonl(store, out, provenance=provenance, round=round)
    if format == "csv":
        return export_csv(store, out, provenance=provenance, round=round, id_type=id_type)
    return export_parquet(store, out, provenance=provenance, round=round, id_type=id_type)


def write_atomically(path: str | os.PathLike[str], write: Callable[[BinaryOutput], _T]) -> _T:
    """Write a file through ``write`` under a temporary name beside it, then rename it into place.

    An interrupted or failed write never leaves a truncated file under the name a reader expects:
    the old file (if any) stays until the new one is whole. The new file gets the permissions a
    plain ``open()`` would give it (0o666 less the umask), not the temporary file's 0o600.

    A symbolic link is followed: the file it points to is replaced, and the link stays. What is
    not a regular file (a FIFO, a device such as ``/dev/stdout`` or ``/dev/null``, a process
    substitution) is written in place, as ``open()`` would: renaming over it would put a plain
    file where a reader or the system expects the device.

    :param path: the file to write (replaced if it exists).
    :param write: writes the content to the binary file it is given; what it returns is returned.
    :raises OSError: the directory cannot hold the temporary file, or the rename failed.
    """
    target = os.path.realpath(path)
    try:
        regular = stat.S_ISREG(os.stat(target).st_mode)
    except FileNotFoundError:
        regular = True  # a new file
    if not regular:
        with open(target, "wb") as sink:
            return write(sink)
    directory = os.path.dirname(target) or "."
    fd, partial = tempfile.mkstemp(
        prefix=f".{os.path.basename(target)}.", suffix=".part", dir=directory
    )
    try:
        with os.fdopen(fd, "wb") as out:
            result = write(out)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(partial, 0o666 & ~umask)
        os.replace(partial, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(partial)
        raise
    return result


def export_to_path(
    store: StoreLike,
    path: str | os.PathLike[str],
    format: str | None = None,
    *,
    provenance: bool = False,
    round: int | Literal["all"] | None = None,
    id_type: str = "number",
    ids_only: bool = False,
) -> int:
    """Export every video of the store to the file ``path``, atomically; return how many.

    :param store: the harvest store to read.
    :param path: the file to write (replaced, once the export is whole, if it exists).
    :param format: ``jsonl``, ``csv`` or ``parquet`` (None: from the path's suffix, else jsonl).
    :param provenance: add each video's ``round``, and ``fetched_at`` and ``log_id`` of its page.
    :param round: a round's number, or `ALL_ROUNDS` with ``ids_only``, as `export` takes it.
    :param id_type: ``number`` or ``string``, as `export` takes it.
    :param ids_only: a dehydrated dataset, as `export` writes it.
    """
    chosen = format or format_for_path(os.fspath(path)) or "jsonl"
    check_options(chosen, id_type=id_type, ids_only=ids_only, round=round)
    return write_atomically(
        path,
        lambda out: export(
            store,
            out,
            chosen,
            provenance=provenance,
            round=round,
            id_type=id_type,
            ids_only=ids_only,
        ),
    )


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


_Row = tuple[str, str, bytes, int | None, str | None, str | None]


def _rows(store: StoreLike, provenance: bool, round: int | None) -> Iterator[_Row]:
    if provenance:
        yield from store.iter_videos_with_provenance(_BATCH, round=round)
    else:
        for username, video_id, data in store.iter_videos(_BATCH, round=round):
            yield username, video_id, data, None, None, None


def _valid_utf8(data: bytes) -> bytes:
    # ASCII is the common case and costs one scan; anything else is checked once and mended.
    if data.isascii():
        return data
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("utf-8", "replace").encode("utf-8")
    return data


def _object_body(username: str, video_id: str, data: bytes) -> bytes:
    """Return what lies between the braces of a stored video's JSON object, trimmed."""
    text = data.strip()
    if len(text) < 2 or text[:1] != b"{" or text[-1:] != b"}":
        raise ExportError(f"video {video_id} of {username!r}: its stored data is not an object")
    return text[1:-1].strip()


def export_jsonl(
    store: StoreLike, out: BinaryOutput, *, provenance: bool = False, round: int | None = None
) -> int:
    """Write one JSON object per line: ``reposted_by``, then the video as sent; return the count.

    :param store: the harvest store to read.
    :param out: where to write (a binary file, ``sys.stdout.buffer``).
    :param provenance: add each video's ``round``, and ``fetched_at`` and ``log_id`` of its page.
    :param round: export each user's list as observed in this round, a partial walk completed from
        the rounds before it (default: each user's latest complete observation).
    """
    sink = _Buffered(out)
    count = 0
    user: str | None = None
    prefix = b""
    for username, video_id, data, observed, fetched_at, log_id in _rows(store, provenance, round):
        if username != user:
            user = username
            prefix = b'{"' + REPOSTED_BY.encode() + b'":' + _ENCODE(username)
        head = prefix
        if provenance:
            head += b',"round":%s,"fetched_at":%s,"log_id":%s' % (
                _ENCODE(observed),
                _ENCODE(fetched_at),
                _ENCODE(log_id),
            )
        # The stored bytes are the video's own JSON object as the API sent it; splicing the
        # user into it keeps every key, type and number spelling and costs no decode.
        body = _object_body(username, video_id, _valid_utf8(data))
        if _LF in body or _CR in body:
            # Sent pretty-printed: one record per line needs the whitespace between its tokens
            # gone (strings keep theirs). A compact object, the common case, costs two memchr
            # scans (an int needle: a bytes needle costs ten times more, measured).
            body = compact(body)
        sink.write(head + (b"," + body if body else b"") + b"}\n")
        count += 1
    sink.flush()
    return count


def _fields_of(username: str, video_id: str, data: bytes) -> dict[str, msgspec.Raw]:
    # Mended first: the values are decoded one by one later, and a string cut inside a
    # character must not stop an export half-way.
    text = _valid_utf8(data)
    try:
        return _FIELDS_DECODER.decode(text)
    except msgspec.DecodeError as exc:
        failure = exc
    # A lone surrogate escape is valid JSON that msgspec refuses: held aside while the object
    # is split into its values, each value then has it back as sent.
    held = hold_surrogates(text)
    if held is not None:
        stand_ins, restore = held
        try:
            fields = _FIELDS_DECODER.decode(stand_ins)
        except msgspec.DecodeError:
            pass
        else:
            return {key: msgspec.Raw(restore(bytes(raw))) for key, raw in fields.items()}
    raise ExportError(f"video {video_id} of {username!r}: {failure}") from None


def _pick(fields: dict[str, msgspec.Raw], name: str) -> tuple[str, msgspec.Raw] | None:
    """Return the wire key and raw value of a column's field, under any of its spellings."""
    for key in _SPELLINGS.get(name, (name,)):
        raw = fields.get(key)
        if raw is not None:
            return key, raw
    return None


def _extra(fields: dict[str, msgspec.Raw], keys: Iterable[str]) -> str:
    """Return the given keys and their raw values as one JSON object's text, or ''."""
    parts = [_ENCODE(key) + b":" + bytes(fields[key]) for key in keys]
    if not parts:
        return ""
    return (b"{" + b",".join(parts) + b"}").decode("utf-8", "replace")


# Characters that many CSV readers mishandle (a NUL ends the field in C-based readers and
# spreadsheets) or that are invisible in a cell. Tab, newline and carriage return are left to the
# RFC 4180 quoting, which every reader handles.
_UNSAFE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _csv_text(text: str, literal: bytes | None = None) -> str:
    """Return a string's cell: its text, or its JSON literal where the text would be ambiguous."""
    # An empty string must not look like a missing field (an empty cell), a string starting with
    # a double quote must not look like such a literal, and control characters are escaped.
    if text and text[0] != '"' and not _UNSAFE.search(text):
        return text
    if literal is None:
        literal = _ENCODE(text)
    return literal.decode("utf-8", "replace")


def _csv_cell(raw: msgspec.Raw) -> str:
    data = bytes(raw)
    first = data[:1]
    if first == b'"':
        # The wire's own literal when one is needed: valid JSON, so it holds no raw control
        # character, and its escapes are the API's.
        try:
            text = _STR_DECODER.decode(data)
        except msgspec.DecodeError:
            # A lone surrogate escape: no UTF-8 text holds it, its literal does.
            return data.decode("utf-8", "replace")
        return _csv_text(text, data)
    if first == b"n":
        return ""  # null
    # Numbers, booleans, lists and objects: their JSON text exactly as sent.
    return data.decode("utf-8", "replace")


class CsvOutput:
    """Write RFC 4180 rows (CRLF line ends, quotes doubled) as UTF-8, in large writes."""

    __slots__ = ("_out", "_text", "_writer")

    def __init__(self, out: BinaryOutput, header: Iterable[str]) -> None:
        """Write the header row first.

        :param out: where the encoded rows go (a binary file, ``sys.stdout.buffer``).
        :param header: the column names.
        """
        self._out = out
        self._text = io.StringIO()
        # Fields holding commas, quotes or newlines are quoted by the csv module.
        self._writer = csv.writer(self._text, lineterminator="\r\n")
        self._writer.writerow(header)

    def writerow(self, row: Iterable[object]) -> None:
        """Write one row; the text reaches ``out`` in blocks of about a megabyte.

        :param row: the row's values, in the header's order (None is an empty field).
        """
        self._writer.writerow(row)
        if self._text.tell() >= _FLUSH_BYTES:
            self.flush()

    def flush(self) -> None:
        """Write out what is gathered."""
        self._out.write(self._text.getvalue().encode("utf-8"))
        self._text.seek(0)
        self._text.truncate()


def export_csv(
    store: StoreLike,
    out: BinaryOutput,
    *,
    provenance: bool = False,
    round: int | None = None,
    id_type: str = "number",
) -> int:
    """Write a header and one row per video, values as sent, ``extra`` last; return the count.

    With ``id_type="string"`` the ids inside the hashtag, sticker and effect lists are written
    as JSON strings of their digits, so that a JSON reader that turns big numbers into floats
    (R's jsonlite, pandas) keeps them; top-level ids are their digits either way.

    :param store: the harvest store to read.
    :param out: where to write (a binary file, ``sys.stdout.buffer``).
    :param provenance: add each video's ``round``, and ``fetched_at`` and ``log_id`` of its page.
    :param round: export each user's list as observed in this round, a partial walk completed from
        the rounds before it (default: each user's latest complete observation).
    :param id_type: ``number`` (ids as sent) or ``string`` (nested ids too as the text of their
        digits).
    """
    fields = store.fields
    nested = _STRUCTS if id_type == "string" else {}
    columns = (REPOSTED_BY, *(PROVENANCE_COLUMNS if provenance else ()), *fields, EXTRA)
    writer = CsvOutput(out, columns)
    count = 0
    for username, video_id, data, observed, fetched_at, log_id in _rows(store, provenance, round):
        values = _fields_of(username, video_id, data)
        row = [username]
        if provenance:
            row += [str(observed), fetched_at or "", "" if log_id is None else _csv_text(log_id)]
        used: set[str] = set()
        for name in fields:
            found = _pick(values, name)
            if found is None:
                row.append("")
                continue
            used.add(found[0])
            kind = nested.get(name)
            row.append(_csv_cell(found[1] if kind is None else _with_text_ids(found[1], kind)))
        row.append(_extra(values, [key for key in values if key not in used]))
        writer.writerow(row)
        count += 1
    writer.flush()
    return count


def _with_text_ids(raw: msgspec.Raw, kind: _Kind) -> msgspec.Raw:
    """Return a list or object with the ids its kind names as JSON strings, else as sent."""
    try:
        value = _ANY_DECODER.decode(raw)
    except _UNREADABLE:
        return raw  # a value the decoder cannot take whole stays exactly as sent
    return msgspec.Raw(_ENCODE(value)) if _ids_to_text(value, kind) else raw


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _ids_to_text(value: Any, kind: _Kind) -> bool:
    """Turn the integer ids inside ``value`` into their digits, in place; return whether any."""
    if not isinstance(kind, tuple):
        return False
    changed = False
    if kind[0] == "list" and isinstance(value, list):
        for index, item in enumerate(value):
            if kind[1] == "id" and _is_int(item):
                value[index] = str(item)
                changed = True
            elif _ids_to_text(item, kind[1]):
                changed = True
    elif kind[0] == "struct" and isinstance(value, dict):
        for key, sub in kind[1]:
            item = value.get(key)
            if sub == "id" and _is_int(item):
                value[key] = str(item)
                changed = True
            elif _ids_to_text(item, sub):
                changed = True
    return changed


def pyarrow_modules(purpose: str = "writing Parquet") -> tuple[Any, Any]:
    """Return the modules ``pyarrow`` and ``pyarrow.parquet``, or raise MissingExtraError.

    :param purpose: what needs them, for the error's message.
    """
    # Imported on first use: pyarrow is an optional extra, and a large import that JSONL and CSV
    # exports have no use for. importlib also keeps its untyped modules away from mypy.
    try:
        return importlib.import_module("pyarrow"), importlib.import_module("pyarrow.parquet")
    except ImportError as exc:
        raise MissingExtraError(
            f"{purpose} needs pyarrow, which is not installed: {PARQUET_EXTRA}"
        ) from exc


# The documented shape of each field, in a small language of its own, from which both the Parquet
# schema and the check of each value are made: "id", "int", "str", "bool", ("list", item),
# ("struct", ((key, kind), ...)).
_Kind = Any
_STRUCTS: Final[dict[str, _Kind]] = {
    "hashtag_info_list": (
        "list",
        ("struct", (("hashtag_id", "id"), ("hashtag_description", "str"))),
    ),
    "sticker_info_list": ("list", ("struct", (("sticker_id", "id"), ("sticker_name", "str")))),
    "effect_info_list": (
        "list",
        ("struct", (("effect_id", "id"), ("effect_name", "str"), ("effect_photo_URI", "str"))),
    ),
    "video_label": ("struct", (("content", "str"),)),
    "video_tag": ("struct", (("video_tag_type", "str"), ("video_tag_number", "int"))),
}
_KINDS: Final[dict[str, _Kind]] = {
    "id": "id",
    "create_time": "int",
    "username": "str",
    "region_code": "str",
    "video_description": "str",
    "music_id": "id",
    "like_count": "int",
    "comment_count": "int",
    "share_count": "int",
    "view_count": "int",
    "hashtag_names": ("list", "str"),
    "video_mention_list": ("list", "str"),
    "video_duration": "int",
    "is_stem_verified": "bool",
    "favorites_count": "int",
    **_STRUCTS,
}
_INT64 = range(-(2**63), 2**63)
# What msgspec raises for valid JSON it cannot read: a number beyond any float, a lone surrogate
# escape, an integer of more than 4,300 digits (Python's int()), nesting beyond its limit.
_UNREADABLE: Final = (msgspec.MsgspecError, ValueError, RecursionError)
_DECIMAL38 = 10**38


def _arrow_type(pa: Any, kind: _Kind, id_type: str = "number") -> Any:
    if kind == "id":
        return pa.string() if id_type == "string" else pa.decimal128(38, 0)
    if kind == "int":
        return pa.int64()
    if kind == "str":
        return pa.string()
    if kind == "bool":
        return pa.bool_()
    if kind[0] == "list":
        return pa.list_(_arrow_type(pa, kind[1], id_type))
    return pa.struct([(key, _arrow_type(pa, sub, id_type)) for key, sub in kind[1]])


def _fit(value: Any, kind: _Kind, text_ids: bool = False) -> tuple[Any, bool]:
    """Return ``value`` as its column holds it, and whether that holds it exactly as sent.

    With ``text_ids`` an id is held as the text of its digits (a string column), else as an int.
    """
    if value is None:
        return None, True
    if kind == "id":
        if isinstance(value, int) and not isinstance(value, bool):
            if abs(value) >= _DECIMAL38:
                return None, False
            return (str(value) if text_ids else value), True
        if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 38:
            # The number fits; its spelling (a JSON string) lives in extra. int() drops
            # leading zeros, which no id has, so the text column holds the same digits.
            return (str(int(value)) if text_ids else int(value)), False
        return None, False
    if kind == "int":
        ok = isinstance(value, int) and not isinstance(value, bool) and value in _INT64
        return (value, True) if ok else (None, False)
    if kind == "str":
        return (value, True) if isinstance(value, str) else (None, False)
    if kind == "bool":
        return (value, True) if isinstance(value, bool) else (None, False)
    if kind[0] == "list":
        if not isinstance(value, list):
            return None, False
        items = []
        exact = True
        for item in value:
            fitted, item_exact = _fit(item, kind[1], text_ids)
            if fitted is None and item is not None:
                return None, False  # an item of another type: the list cannot be typed
            items.append(fitted)
            exact = exact and item_exact
        return items, exact
    if not isinstance(value, dict):
        return None, False
    known = dict(kind[1])
    struct = {}
    # A key missing from the object would read back as null, like a null sent: the object then
    # goes to extra as sent, so that the two stay apart.
    exact = value.keys() == known.keys()
    for key, sub in known.items():
        fitted, sub_exact = _fit(value.get(key), sub, text_ids)
        struct[key] = fitted
        exact = exact and sub_exact
    return struct, exact


def _typed(raw: msgspec.Raw, kind: _Kind, text_ids: bool = False) -> tuple[Any, bool]:
    """Return a value as its column holds it, and whether that holds it exactly as sent.

    A value the harvest kept never fails the export: one that no Python value holds (``1e400``)
    gives a null column, one with a lone surrogate escape its text mended; either way the value
    as sent goes to extra.
    """
    try:
        return _fit(_ANY_DECODER.decode(raw), kind, text_ids)
    except _UNREADABLE:
        pass
    try:
        value = _ANY_DECODER.decode(mend_surrogates(bytes(raw)))
    except _UNREADABLE:
        return None, False
    return _fit(value, kind, text_ids)[0], False


def parquet_schema(
    fields: Iterable[str], *, provenance: bool = False, id_type: str = "number"
) -> Any:
    """Return the Parquet schema of an export of these video fields, ``reposted_by`` first.

    :param fields: the store's video fields, in its order.
    :param provenance: add the ``round``, ``fetched_at`` and ``log_id`` columns.
    :param id_type: ids as ``decimal128(38, 0)`` (``number``) or as ``string``.
    """
    pa, _ = pyarrow_modules()
    string = pa.string()
    columns = [(REPOSTED_BY, string), *_provenance_columns(pa, provenance)]
    # A field this module does not know yet (the API grows) is kept as JSON text, not dropped.
    columns += [
        (name, _arrow_type(pa, _KINDS[name], id_type) if name in _KINDS else string)
        for name in fields
    ]
    columns.append((EXTRA, string))
    return pa.schema(columns)


def ids_schema(*, provenance: bool = False, id_type: str = "number") -> Any:
    """Return the schema of a dehydrated export: ``reposted_by``, ``id``, ``round``.

    :param provenance: add the ``fetched_at`` and ``log_id`` columns.
    :param id_type: the id as ``decimal128(38, 0)`` (``number``) or as ``string``.
    """
    pa, _ = pyarrow_modules()
    columns = [
        (REPOSTED_BY, pa.string()),
        ("id", _arrow_type(pa, "id", id_type)),
        ("round", pa.int32()),
    ]
    if provenance:
        columns += _provenance_columns(pa, True)[1:]
    return pa.schema(columns)


def _provenance_columns(pa: Any, provenance: bool) -> list[tuple[str, Any]]:
    if not provenance:
        return []
    return [
        ("round", pa.int32()),
        ("fetched_at", pa.timestamp("ms", tz="UTC")),
        ("log_id", pa.string()),
    ]


def _timestamp(stamp: str | None) -> datetime.datetime | None:
    if stamp is None:
        return None
    return datetime.datetime.fromisoformat(stamp)


def _check_row_group_size(row_group_size: int) -> None:
    if isinstance(row_group_size, bool) or not isinstance(row_group_size, int):
        raise TypeError(f"row_group_size must be an int, not {row_group_size!r}")
    if row_group_size < 1:
        raise ValueError(f"row_group_size must be positive, not {row_group_size}")


def arrow_batches(
    store: StoreLike,
    *,
    provenance: bool = False,
    round: int | None = None,
    id_type: str = "number",
    rows: int = _ROW_GROUP,
) -> tuple[Any, Iterator[Any]]:
    """Return the schema of the store's videos as Arrow, and their record batches, streamed.

    The columns are the Parquet export's (`parquet_schema`), made by the same code, so that a
    table in memory and a Parquet file hold the same values.

    :param store: the harvest store to read.
    :param provenance: add the ``round``, ``fetched_at`` and ``log_id`` columns.
    :param round: the videos as observed in this round (default: each user's latest complete
        observation).
    :param id_type: ids as ``decimal128(38, 0)`` (``number``) or as ``string``.
    :param rows: videos per batch at most.
    """
    _check_row_group_size(rows)
    if id_type not in ID_TYPES:
        raise ValueError(f"unknown id type {id_type!r}; choose from {', '.join(ID_TYPES)}")
    pa, _ = pyarrow_modules()
    fields = store.fields
    schema = parquet_schema(fields, provenance=provenance, id_type=id_type)
    return schema, _batched(pa, schema, _video_rows(store, provenance, round, id_type), rows)


def _video_rows(
    store: StoreLike, provenance: bool, round: int | None, id_type: str
) -> Iterator[list[Any]]:
    fields = store.fields
    kinds = [_KINDS.get(name) for name in fields]
    text_ids = id_type == "string"
    for username, video_id, data, observed, fetched_at, log_id in _rows(store, provenance, round):
        values = _fields_of(username, video_id, data)
        row: list[Any] = [username]
        if provenance:
            row += [observed, _timestamp(fetched_at), log_id]
        used: set[str] = set()
        for name, kind in zip(fields, kinds, strict=True):
            found = _pick(values, name)
            if found is None:
                row.append(None)
                continue
            key, raw = found
            if kind is None:
                # Not a documented field: its JSON text, whole.
                text = bytes(raw)
                row.append(None if text == b"null" else text.decode("utf-8", "replace"))
                used.add(key)
                continue
            fitted, exact = _typed(raw, kind, text_ids)
            row.append(fitted)
            if exact:
                used.add(key)
        row.append(_extra(values, [key for key in values if key not in used]) or None)
        yield row


def _id_observations(
    store: StoreLike, round: int | Literal["all"] | None
) -> Iterator[tuple[str, str, int, str | None, str | None]]:
    """Yield (reposted_by, video id, round, fetched_at, log_id) for each row of an ids export."""
    if round != ALL_ROUNDS:
        rows = store.iter_videos_with_provenance(_BATCH, round=round)
        for username, video_id, _, observed, fetched_at, log_id in rows:
            yield username, video_id, observed, fetched_at, log_id
        return
    for record in store.rounds():
        if not record.complete:
            continue  # a round in progress is shared once it is whole
        rows = store.iter_videos_with_provenance(_BATCH, round=record.number)
        for username, video_id, _, _, fetched_at, log_id in rows:
            # The round whose list holds it, also where a stop-at-known walk's list was
            # completed from an earlier round's observation: one row per round, none twice.
            yield username, video_id, record.number, fetched_at, log_id


def _id_rows(
    store: StoreLike, provenance: bool, round: int | Literal["all"] | None, id_type: str
) -> Iterator[list[Any]]:
    # The store's video_id is the decimal text of the id the API sent: no video is decoded.
    text_ids = id_type == "string"
    for username, video_id, observed, fetched_at, log_id in _id_observations(store, round):
        row: list[Any] = [username, video_id if text_ids else int(video_id), observed]
        if provenance:
            row += [_timestamp(fetched_at), log_id]
        yield row


def _batched(pa: Any, schema: Any, rows: Iterator[list[Any]], size: int) -> Iterator[Any]:
    """Yield record batches of ``size`` rows at most, each row a list of column values."""
    columns: list[list[Any]] = [[] for _ in schema.names]
    for row in rows:
        for column, value in zip(columns, row, strict=True):
            column.append(value)
        if len(columns[0]) >= size:
            # The rows' Python objects go before the batch is handed on: one batch's worth of
            # memory at a time, however large the store.
            batch = _batch(pa, schema, columns)
            columns = [[] for _ in schema.names]
            yield batch
            del batch
    if columns[0]:
        yield _batch(pa, schema, columns)


def export_parquet(
    store: StoreLike,
    out: BinaryOutput | str | os.PathLike[str],
    *,
    row_group_size: int = _ROW_GROUP,
    provenance: bool = False,
    round: int | None = None,
    id_type: str = "number",
) -> int:
    """Write a typed Parquet file in row groups, ids as decimal128(38, 0) or text; return the count.

    :param store: the harvest store to read.
    :param out: a binary file, or a path.
    :param row_group_size: videos per row group.
    :param provenance: add the ``round``, ``fetched_at`` and ``log_id`` columns.
    :param round: the videos as observed in this round (default: each user's latest complete
        observation).
    :param id_type: ids as ``decimal128(38, 0)`` (``number``) or as ``string``.
    """
    schema, batches = arrow_batches(
        store, provenance=provenance, round=round, id_type=id_type, rows=row_group_size
    )
    return _write_parquet(out, schema, batches)


def _write_parquet(out: BinaryOutput | str | os.PathLike[str], schema: Any, batches: Any) -> int:
    _, pq = pyarrow_modules()
    count = 0
    with pq.ParquetWriter(out, schema) as writer:
        for batch in batches:
            writer.write_batch(batch)
            count += batch.num_rows
            del batch  # not held while the next one is made
    return count


def _batch(pa: Any, schema: Any, columns: list[list[Any]]) -> Any:
    arrays = []
    for field, values in zip(schema, columns, strict=True):
        try:
            arrays.append(pa.array(values, type=field.type))
        except (pa.ArrowException, OverflowError, TypeError, ValueError) as exc:
            raise ExportError(
                f"column {field.name!r} does not fit its Parquet type {field.type}: {exc}"
            ) from None
    return pa.record_batch(arrays, schema=schema)


def _export_ids(
    store: StoreLike,
    out: BinaryOutput,
    format: str,
    *,
    provenance: bool,
    round: int | Literal["all"] | None,
    id_type: str,
) -> int:
    """Write who reposted which video in which round, and nothing of the videos themselves."""
    if format == "parquet":
        pa, _ = pyarrow_modules()
        schema = ids_schema(provenance=provenance, id_type=id_type)
        return _write_parquet(
            out,
            schema,
            _batched(pa, schema, _id_rows(store, provenance, round, id_type), _ROW_GROUP),
        )
    columns = list(IDS_ONLY_COLUMNS) + (["fetched_at", "log_id"] if provenance else [])
    csv_out = CsvOutput(out, columns) if format == "csv" else None
    sink = _Buffered(out)
    count = 0
    for username, video_id, observed, fetched_at, log_id in _id_observations(store, round):
        count += 1
        if csv_out is not None:
            row = [username, video_id, str(observed)]
            if provenance:
                row += [fetched_at or "", "" if log_id is None else _csv_text(log_id)]
            csv_out.writerow(row)
            continue
        # video_id is the decimal text of the id: a JSON number by default, as the API sends ids.
        line = b'{"reposted_by":%s,"id":%s,"round":%d' % (
            _ENCODE(username),
            _ENCODE(video_id) if id_type == "string" else video_id.encode(),
            observed,
        )
        if provenance:
            line += b',"fetched_at":%s,"log_id":%s' % (_ENCODE(fetched_at), _ENCODE(log_id))
        sink.write(line + b"}\n")
    if csv_out is not None:
        csv_out.flush()
    sink.flush()
    return count
