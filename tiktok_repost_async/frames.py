"""A store's videos as an Arrow table, a pandas or a Polars data frame, every id exact.

The columns are the Parquet export's, made by the same code (`export.arrow_batches`): one per
requested field, ``reposted_by`` first, ``extra`` last (as one JSON object, whatever no column holds
exactly). The API's ids (``id``, ``music_id`` and the nested hashtag, sticker and effect ids) do
not fit int64 (some exceed even uint64, with 20 digits), so they are ``decimal128(38, 0)``: exact,
and still numbers that sort, compare and join as numbers; ``id_type="string"`` gives the text of
their digits instead, for code that wants strings.

pandas gets every column as an Arrow-backed dtype (``pd.ArrowDtype``): the ids stay
``decimal128(38, 0)[pyarrow]`` (exact; not float64, and not a column of ``object``), counts stay
integers where some are missing (``int64[pyarrow]`` with nulls, not float64), lists and structs stay
lists and structs. Polars gets ``Decimal(38, 0)`` ids. pyarrow, pandas and Polars are optional:
each function names the extra to install when its library is missing.
"""

from __future__ import annotations

import importlib
from typing import Any

from ._extras import install_hint
from .export import MissingExtraError, arrow_batches, pyarrow_modules
from .store import StoreLike

__all__ = ["to_arrow", "to_pandas", "to_polars"]


def to_arrow(
    store: StoreLike, *, round: int | None = None, provenance: bool = False, id_type: str = "number"
) -> Any:
    """Return the store's videos as a ``pyarrow.Table`` with the Parquet export's columns.

    :param store: the harvest store to read.
    :param round: the videos as observed in this round (default: each user's latest complete
        observation, as ``export`` writes them).
    :param provenance: add ``round``, and ``fetched_at`` (UTC) and ``log_id`` of each video's page.
    :param id_type: ids as ``decimal128(38, 0)`` (``number``) or as the text of their digits
        (``string``).
    :raises MissingExtraError: pyarrow is not installed.
    """
    pa, _ = pyarrow_modules("an Arrow table")
    schema, batches = arrow_batches(store, provenance=provenance, round=round, id_type=id_type)
    return pa.Table.from_batches(list(batches), schema=schema)


def to_pandas(
    store: StoreLike, *, round: int | None = None, provenance: bool = False, id_type: str = "number"
) -> Any:
    """Return the store's videos as a ``pandas.DataFrame`` of Arrow-backed columns, ids exact.

    :param store: the harvest store to read.
    :param round: the videos as observed in this round (default: each user's latest complete
        observation).
    :param provenance: add ``round``, and ``fetched_at`` (UTC) and ``log_id`` of each video's page.
    :param id_type: ids as ``decimal128(38, 0)[pyarrow]`` (``number``) or ``string[pyarrow]``
        (``string``).
    :raises MissingExtraError: pandas or pyarrow is not installed.
    """
    pd = _library("pandas", "a pandas data frame", "pandas")
    table = to_arrow(store, round=round, provenance=provenance, id_type=id_type)
    # ArrowDtype for every column: numpy's dtypes would make the ids objects (Decimal) or floats,
    # and an integer column holding a null would become float64.
    return table.to_pandas(types_mapper=pd.ArrowDtype)


def to_polars(
    store: StoreLike, *, round: int | None = None, provenance: bool = False, id_type: str = "number"
) -> Any:
    """Return the store's videos as a ``polars.DataFrame``, ids as ``Decimal(38, 0)``.

    :param store: the harvest store to read.
    :param round: the videos as observed in this round (default: each user's latest complete
        observation).
    :param provenance: add ``round``, and ``fetched_at`` (UTC) and ``log_id`` of each video's page.
    :param id_type: ids as ``Decimal(38, 0)`` (``number``) or ``String`` (``string``).
    :raises MissingExtraError: Polars or pyarrow is not installed.
    """
    pl = _library("polars", "a Polars data frame", "polars")
    return pl.from_arrow(to_arrow(store, round=round, provenance=provenance, id_type=id_type))


def _library(name: str, purpose: str, extra: str) -> Any:
    # Imported on first use, through importlib so that mypy does not need their stubs.
    try:
        module = importlib.import_module(name)
        importlib.import_module("pyarrow")
    except ImportError as exc:
        raise MissingExtraError(
            f"{purpose} needs {exc.name or name}, which is not installed: {install_hint(extra)}"
        ) from exc
    return module
