"""Open the store that a path or a ``postgresql://`` URL names: the one factory for both engines."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence

from .._dburl import is_postgres_url
from ._postgres import PostgresStore
from ._protocol import StoreLike
from ._store import Store

__all__ = ["open_store"]


def open_store(
    spec: str | os.PathLike[str],
    *,
    fields: Sequence[str] | None = None,
    max_count: int | None = None,
    create: bool = True,
    clock: Callable[[], float] = time.time,
) -> StoreLike:
    """Open (or create) the store at ``spec``: a SQLite file, or a PostgreSQL database.

    :param spec: a file path (`Store`) or a ``postgresql://`` / ``postgres://`` URL
        (`PostgresStore`; needs the ``postgres`` extra).
    :param fields: the video fields a new store is made for; an existing one must match.
    :param max_count: the page size a new store is made for; an existing one must match.
    :param create: make the store when there is none (False: that is a `StoreError`).
    :param clock: the wall clock whose UTC day the request ledger counts.
    """
    text = os.fspath(spec)
    if is_postgres_url(text):
        return PostgresStore(text, fields=fields, max_count=max_count, create=create, clock=clock)
    return Store(text, fields=fields, max_count=max_count, create=create, clock=clock)
