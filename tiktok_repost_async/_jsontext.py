"""Work on JSON text as bytes, keeping what was sent: surrogate escapes held aside, compacting.

Pure functions shared by the protocol (reading answers) and the export (writing stored videos);
they know nothing of the API.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final

__all__ = ["compact", "hold_surrogates", "mend_surrogates"]

# One JSON escape at a time, so that an escaped backslash is never read as starting another
# escape: a surrogate pair, a lone surrogate, or any other escape.
ESCAPE: Final = re.compile(
    rb"\\u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}|\\u[dD][89a-fA-F][0-9a-fA-F]{2}|\\.",
    re.DOTALL,
)
# Any escape, whole: what the stand-ins are told apart from and found by.
_ANY_ESCAPE: Final = re.compile(rb"\\u[0-9a-fA-F]{4}|\\.", re.DOTALL)
# Escapes of the Private Use Area stand in for lone surrogates while a decoder that refuses them
# reads the text: any escape is valid JSON, and a private one is rare in real text.
_STAND_INS: Final = tuple(b"\\u%04x" % code for code in range(0xE000, 0xF900))


def _is_lone(escape: bytes) -> bool:
    return len(escape) == 6 and escape[2:3] in (b"d", b"D")


def hold_surrogates(text: bytes) -> tuple[bytes, Callable[[bytes], bytes]] | None:
    """Return ``text`` with each lone surrogate escape replaced by a stand-in, and its undoing.

    A lone UTF-16 surrogate escape (``"ab\\ud83dcd"``) is valid JSON, but msgspec refuses it.
    Each one becomes a distinct private-use escape that ``text`` does not hold already, so that
    the text decodes; the function returned turns the stand-ins in any piece of the decoded
    text (a ``msgspec.Raw`` value, say) back into the escapes as sent. None: nothing to hold.
    """
    found = [m for m in ESCAPE.finditer(text) if _is_lone(m.group())]
    if not found:
        return None
    taken = {m.group().lower() for m in _ANY_ESCAPE.finditer(text)}
    free = (stand_in for stand_in in _STAND_INS if stand_in not in taken)
    originals: dict[bytes, bytes] = {}
    parts: list[bytes] = []
    at = 0
    for match in found:
        stand_in = next(free, None)
        if stand_in is None:
            return None  # thousands of lone surrogates in one answer: leave it to mending
        originals[stand_in] = match.group()
        parts += (text[at : match.start()], stand_in)
        at = match.end()
    parts.append(text[at:])

    def put_back(match: re.Match[bytes]) -> bytes:
        escape = match.group()
        return originals.get(escape, escape)

    def restore(piece: bytes) -> bytes:
        """Return ``piece`` with its stand-ins turned back into the escapes as sent."""
        if b"\\u" not in piece:
            return piece
        return _ANY_ESCAPE.sub(put_back, piece)

    return b"".join(parts), restore


def _mend_one(match: re.Match[bytes]) -> bytes:
    escape = match.group()
    return b"\\ufffd" if _is_lone(escape) else escape


def mend_surrogates(text: bytes) -> bytes:
    """Return JSON text with each lone surrogate escape turned into U+FFFD's."""
    return ESCAPE.sub(_mend_one, text)


# A JSON string (escapes included), kept; or a run of JSON whitespace, dropped. Whitespace can
# only stand between tokens, since a JSON string holds no raw whitespace but the space, which
# the string alternative consumes first.
_BETWEEN_TOKENS: Final = re.compile(rb'("(?:[^"\\]|\\.)*")|[ \t\r\n]+', re.DOTALL)


def compact(text: bytes) -> bytes:
    """Return JSON text without the whitespace between its tokens; strings stay byte for byte."""
    return _BETWEEN_TOKENS.sub(rb"\1", text)
