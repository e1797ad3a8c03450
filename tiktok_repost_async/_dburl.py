"""Show a database URL without its password: the one helper every message and record uses.

A PostgreSQL URL may carry a password (``postgresql://user:secret@host/db``, or
``?password=secret``); like the client secret it must never reach a log line, an error, ``status``,
a repr, the store or an export. Whatever names a ledger or a database to a person goes through
`mask_url` first; `scrub` takes a password out of text that came from elsewhere (a driver's
error message).
"""

from __future__ import annotations

import re
import urllib.parse
from typing import Any, Final

from ._extras import install_hint

__all__ = [
    "MASK",
    "driver_detail",
    "import_psycopg",
    "is_postgres_url",
    "mask_url",
    "pg_connect",
    "scrub",
    "url_password",
]

#: What stands in for a password.
MASK: Final = "***"

# Seconds to wait for a PostgreSQL server before a command gives up with one line.
_PG_CONNECT_TIMEOUT_S: Final = 10
_SCHEMES: Final = ("postgresql://", "postgres://")
# libpq's keyword form (``host=... password=...``), and ``password=`` in a URL's query.
_KEYWORD_PASSWORD: Final = re.compile(r"(?i)(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&;]+)")


def is_postgres_url(text: str) -> bool:
    """Tell whether ``text`` is a PostgreSQL URL (``postgresql://`` or ``postgres://``)."""
    return text.strip().lower().startswith(_SCHEMES)


def url_password(text: str) -> str | None:
    """Return the password a URL carries (in its user part or its query), or None."""
    try:
        parts = urllib.parse.urlsplit(text)
        password = parts.password
    except ValueError:
        return None
    if password:
        return urllib.parse.unquote(password)
    for key, value in urllib.parse.parse_qsl(parts.query):
        if key.lower() == "password" and value:
            return value
    return None


def mask_url(text: str) -> str:
    """Return ``text`` with any password it carries replaced by ``***``.

    :param text: a URL (``postgresql://user:secret@host/db?password=secret``), a libpq keyword
        string, or a plain path (returned as it is).
    """
    masked = text
    if "://" in text:
        try:
            parts = urllib.parse.urlsplit(text)
            has_password = parts.password is not None
        except ValueError:
            parts, has_password = None, False
        if parts is not None and has_password:
            # The user part is everything before the last "@" of the netloc: a password may
            # hold "@" or ":" of its own (percent-encoded or not).
            userinfo, _, host = parts.netloc.rpartition("@")
            user = userinfo.split(":", 1)[0]
            masked = urllib.parse.urlunsplit(parts._replace(netloc=f"{user}:{MASK}@{host}"))
    return _KEYWORD_PASSWORD.sub(lambda m: m.group(1) + MASK, masked)


def scrub(text: str, secret: str | None) -> str:
    """Return ``text`` with ``secret`` (and any URL password in it) replaced by ``***``."""
    if secret:
        text = text.replace(secret, MASK)
        quoted = urllib.parse.quote(secret, safe="")
        if quoted != secret:
            text = text.replace(quoted, MASK)
    return mask_url(text)


def driver_detail(exc: BaseException, password: str | None) -> str:
    """Return a driver's error message on one line, ``password`` (and any URL's) masked."""
    # libpq's messages name the host, port and user, not the password; scrubbed anyway, since
    # a message may quote the connection string it was given.
    return scrub(" ".join(str(exc).split()), password)


def import_psycopg(error: type[Exception], what: str) -> Any:
    """Return the psycopg module, or raise ``error`` naming ``what`` needs it and how to install it.

    :param error: the exception class to raise when psycopg is missing.
    :param what: what needs it (``a postgresql:// store``).
    """
    try:
        import psycopg
    except ImportError:
        raise error(
            f"{what} needs psycopg 3, which is not installed: " + install_hint("postgres")
        ) from None
    return psycopg


def pg_connect(psycopg: Any, url: str, application: str) -> Any:
    """Open an autocommit connection to ``url``, named ``application`` in the server's views.

    :param psycopg: the module `import_psycopg` returned.
    :param url: the database URL (or libpq connection string).
    :param application: the ``application_name`` the server shows for the connection.
    """
    return psycopg.connect(
        url,
        autocommit=True,
        connect_timeout=_PG_CONNECT_TIMEOUT_S,
        application_name=application,
    )
