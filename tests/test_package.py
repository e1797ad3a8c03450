"""The public surface: what the package re-exports, and that importing it stays light."""

from __future__ import annotations

import subprocess
import sys

import pytest

import tiktok_repost_async


def test_every_public_name_resolves() -> None:
    for name in tiktok_repost_async.__all__:
        assert getattr(tiktok_repost_async, name) is not None


def test_all_matches_the_lazy_map() -> None:
    # Its order is ruff's concern (RUF022); here, that nothing is listed without a home.
    names = tiktok_repost_async.__all__
    assert len(names) == len(set(names))
    assert set(names) - {"__version__"} == set(tiktok_repost_async._LAZY)


def test_unknown_attribute_raises_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_name"):
        _ = tiktok_repost_async.no_such_name  # type: ignore[attr-defined]


def test_importing_the_package_does_not_import_aiohttp() -> None:
    script = "import sys, tiktok_repost_async; print('aiohttp' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "False"
