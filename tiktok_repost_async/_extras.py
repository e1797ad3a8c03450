"""The optional dependencies behind each extra, and the one install hint that names them."""

from __future__ import annotations

from typing import Final

__all__ = ["EXTRAS", "install_hint"]

#: What each extra of the distribution installs; pyproject.toml's lists match (a test checks).
EXTRAS: Final[dict[str, tuple[str, ...]]] = {
    "parquet": ("pyarrow>=14",),
    "pandas": ("pyarrow>=14", "pandas>=2.0"),
    "polars": ("pyarrow>=14", "polars>=1.0"),
    "postgres": ("psycopg[binary]>=3.1",),
}


def install_hint(extra: str) -> str:
    """Return the pip command that installs what ``extra`` needs.

    The requirements themselves, not ``tiktok-repost-async[extra]``: that spelling works only
    where an index serves the distribution, and this one works in any environment, a checkout's
    included (where an editable install of the extra does the same).

    :param extra: the extra's name, a key of `EXTRAS`.
    """
    requirements = " ".join(f"'{requirement}'" for requirement in EXTRAS[extra])
    return f"pip install {requirements} (the package's [{extra}] extra)"
