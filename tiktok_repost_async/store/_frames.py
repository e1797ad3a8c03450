"""The store's data frames: its videos as an Arrow table, a pandas or a Polars data frame."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from ._protocol import StoreLike


class _StoreFrames:
    """Hand the store's videos to `tiktok_repost_async.frames`, which holds the column code.

    Both engines inherit it: the frames read a store through `StoreLike` alone.
    """

    # The frames module sits above the store (it reuses the export's columns): imported on first
    # use, so that a store never loads pyarrow, pandas or Polars unless asked for a frame.

    def to_arrow(
        self,
        *,
        round: int | None = None,
        provenance: bool = False,
        id_type: str = "number",
    ) -> Any:
        """Return the videos as a ``pyarrow.Table``, ids exact, with the Parquet export's columns.

        :param round: the videos as observed in this round (default: each user's latest complete
            observation, as ``export`` writes them).
        :param provenance: add ``round``, and ``fetched_at`` (UTC) and ``log_id`` of each
            video's page.
        :param id_type: ids as ``decimal128(38, 0)`` (``number``) or as the text of their digits
            (``string``).
        :raises MissingExtraError: pyarrow is not installed (the ``parquet`` extra).
        """
        from ..frames import to_arrow

        return to_arrow(
            cast("StoreLike", self), round=round, provenance=provenance, id_type=id_type
        )

    def to_pandas(
        self,
        *,
        round: int | None = None,
        provenance: bool = False,
        id_type: str = "number",
    ) -> Any:
        """Return the videos as a ``pandas.DataFrame`` of ``pd.ArrowDtype`` columns, ids exact.

        Ids are ``decimal128(38, 0)[pyarrow]`` (``string[pyarrow]`` with ``id_type="string"``),
        never float64 or a column of ``Decimal`` objects; counts with nulls stay integers.

        :param round: the videos as observed in this round (default: each user's latest complete
            observation).
        :param provenance: add ``round``, and ``fetched_at`` (UTC) and ``log_id`` of each
            video's page.
        :param id_type: ids as ``number`` (decimal) or ``string``.
        :raises MissingExtraError: pandas or pyarrow is not installed (the ``pandas`` extra).
        """
        from ..frames import to_pandas

        return to_pandas(
            cast("StoreLike", self), round=round, provenance=provenance, id_type=id_type
        )

    def to_polars(
        self,
        *,
        round: int | None = None,
        provenance: bool = False,
        id_type: str = "number",
    ) -> Any:
        """Return the videos as a ``polars.DataFrame``, ids as ``Decimal(38, 0)``, exact.

        :param round: the videos as observed in this round (default: each user's latest complete
            observation).
        :param provenance: add ``round``, and ``fetched_at`` (UTC) and ``log_id`` of each
            video's page.
        :param id_type: ids as ``number`` (decimal) or ``string``.
        :raises MissingExtraError: Polars or pyarrow is not installed (the ``polars`` extra).
        """
        from ..frames import to_polars

        return to_polars(
            cast("StoreLike", self), round=round, provenance=provenance, id_type=id_type
        )
