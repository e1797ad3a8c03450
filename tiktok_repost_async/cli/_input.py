"""The usernames to harvest: a file's or standard input's lines, in whatever text it was saved.

A file that starts with a byte order mark is read in the encoding the mark names (UTF-8, as
Windows' Notepad saves it; UTF-16 or UTF-32, little or big endian, as "Unicode" exports do);
any other is read as UTF-8. Bytes that do not decode end the command with the line's number:
a file is checked whole before anything is sent, standard input as each line comes.
"""

from __future__ import annotations

import codecs
import io
import os
import re
import sys
from collections.abc import Iterator
from typing import BinaryIO, Final, NoReturn

from ._common import UsageError

__all__ = ["UserLines", "sniff_encoding"]

# An input line is read at most this many characters at a time: a username has at most 64, and
# a file with no line breaks must not be pulled into memory whole.
_LINE_LIMIT: Final = 1024
# The longest mark first: UTF-32-LE's starts with UTF-16-LE's.
_BOMS: Final = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
_MARK_BYTES: Final = max(len(bom) for bom, _ in _BOMS)
# What surrogateescape makes of bytes that do not decode; no decodable text holds one.
_UNDECODED: Final = re.compile("[\udc80-\udcff]")


def sniff_encoding(head: bytes) -> tuple[str, int]:
    """Return the encoding a text's first bytes name by their byte order mark, and its length.

    :param head: the text's first bytes (four suffice).
    """
    for bom, encoding in _BOMS:
        if head.startswith(bom):
            return encoding, len(bom)
    return "utf-8", 0


class _Prefixed(io.RawIOBase):
    """Give back bytes already read from a raw stream, then read on from the stream itself."""

    def __init__(self, raw: BinaryIO, prefix: bytes) -> None:
        super().__init__()
        self._raw = raw
        self._prefix = prefix

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self._prefix:
            n = min(len(buffer), len(self._prefix))
            buffer[:n] = self._prefix[:n]
            self._prefix = self._prefix[n:]
            return n
        # read1 where there is one: a buffered stdin must hand over what it has, not wait.
        data = getattr(self._raw, "read1", self._raw.read)(len(buffer)) or b""
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if isinstance(self._raw, io.FileIO):
            self._raw.close()
        super().close()


class UserLines:
    """Give the lines of a users file or of standard input, decoded, one at a time.

    :param path: the users file, or ``-`` for standard input.
    :raises UsageError: the file cannot be opened, or (a regular file) holds a line that does
        not decode.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.total_lines: int | None = None
        self._stream: io.TextIOWrapper | None = None
        self._stdin: BinaryIO | None = None
        try:
            if path == "-":
                if sys.stdin is None:
                    raise UsageError("USERS is -, but there is no standard input")
                # Its byte order mark is read with the first line (on the harvest's thread):
                # here, a read would wait for the pipe's writer before the command is ready.
                self._stdin = _unbuffered_stdin()
            else:
                self._stream = self._open(path)
        except OSError as exc:
            raise UsageError(
                f"cannot read the users file {path!r}: {exc.strerror or exc}"
            ) from None
        if self._stream is not None and os.path.isfile(path):
            # Before any request: a line that does not decode must cost no quota.
            self.total_lines = self._check(path)

    @staticmethod
    def _open(path: str) -> io.TextIOWrapper:
        raw = open(path, "rb")  # noqa: SIM115
        try:
            encoding, skip = sniff_encoding(raw.read(_MARK_BYTES))
            raw.seek(skip)
        except OSError:
            raw.close()
            raise
        return io.TextIOWrapper(raw, encoding=encoding, errors="surrogateescape")

    def _check(self, path: str) -> int:
        """Return the file's line count; raise UsageError naming a line that does not decode."""
        newlines = 0
        last = "\n"
        try:
            with open(path, "rb") as raw:
                encoding, skip = sniff_encoding(raw.read(_MARK_BYTES))
                raw.seek(skip)
                decoder = codecs.getincrementaldecoder(encoding)("strict")
                final = False
                while not final:
                    chunk = raw.read(1 << 20)
                    final = not chunk
                    try:
                        text = decoder.decode(chunk, final)
                    except UnicodeDecodeError as exc:
                        # exc.object holds the bytes not yet decoded: those before the culprit
                        # are whole characters, whose line breaks count.
                        before = bytes(exc.object[: exc.start]).decode(encoding, "replace")
                        self._undecodable(encoding, newlines + before.count("\n") + 1)
                    newlines += text.count("\n")
                    last = text[-1:] or last
        except OSError as exc:
            raise UsageError(f"cannot read the users file {path!r}: {exc}") from None
        return newlines + (last != "\n")

    def _undecodable(self, encoding: str, line: int) -> NoReturn:
        self.close()
        raise UsageError(
            f"the users file {self.label()!r} is not {encoding.upper()} text: line {line:,}"
            " holds bytes that do not decode (save it as UTF-8, or with a byte order mark)"
        )

    def close(self) -> None:
        """Close the input file (standard input itself stays open)."""
        if self._stream is not None:
            self._stream.close()
        elif self._stdin is not None and isinstance(self._stdin, io.FileIO):
            self._stdin.close()

    def label(self) -> str:
        """Return the input's name for messages."""
        return "standard input" if self.path == "-" else self.path

    def _stdin_text(self, raw: BinaryIO) -> io.TextIOWrapper:
        head = b""
        # Only as many bytes as may still be a byte order mark: a name must not wait for more.
        while len(head) < _MARK_BYTES and any(bom.startswith(head) for bom, _ in _BOMS):
            chunk = raw.read(_MARK_BYTES - len(head))
            if not chunk:
                break
            head += chunk
        encoding, skip = sniff_encoding(head)
        prefixed = _Prefixed(raw, head[skip:])
        return io.TextIOWrapper(prefixed, encoding=encoding, errors="surrogateescape")  # type: ignore[arg-type]

    def lines(self) -> Iterator[str]:
        """Yield each line of the input, even blank and overlong ones (the harvest skips them).

        A plain iterator: the harvest reads it on a thread of its own and hands each name to a
        worker as soon as it arrives, so a slow pipe's first name is fetched at once.
        """
        number = 0
        try:
            if self._stream is None and self._stdin is not None:
                self._stream = self._stdin_text(self._stdin)
            stream = self._stream
            assert stream is not None
            while line := stream.readline(_LINE_LIMIT):
                number += 1
                if len(line) == _LINE_LIMIT and not line.endswith("\n"):
                    # Keep the line's head (the harvest reports it as too long), skip the rest.
                    while (rest := stream.readline(_LINE_LIMIT)) and not rest.endswith("\n"):
                        pass
                if _UNDECODED.search(line):
                    self._undecodable(stream.encoding, number)
                yield line.rstrip("\n")
        except UnicodeDecodeError:
            self._undecodable(self._stream.encoding if self._stream else "utf-8", number + 1)
        except (OSError, ValueError) as exc:
            raise UsageError(f"cannot read the users file {self.label()!r}: {exc}") from None
        finally:
            self.close()


def _unbuffered_stdin() -> BinaryIO:
    # The names are read on a daemon thread that may sit in a read of an open pipe when a stop
    # ends the run. A buffered reader holds its lock during that read, and Python aborts at exit
    # when it finds sys.stdin's lock held. A raw reader of a copy of the descriptor has no lock,
    # and a raw read returns whatever the pipe holds, so a name is not kept waiting for more.
    try:
        fd = os.dup(sys.stdin.fileno())
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is both of the last
        return sys.stdin.buffer
    return io.FileIO(fd, "rb", closefd=True)
