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


def test_harvest_is_the_function_whatever_was_imported_first() -> None:
    # A submodule named like a re-exported function shadows it once the submodule is imported:
    # no module of the package may share a name with a public name.
    code = (
        "import tiktok_repost_async.harvester, tiktok_repost_async.engine\n"
        "import tiktok_repost_async.cli\n"
        "from tiktok_repost_async import harvest, diff_rounds\n"
        "assert callable(harvest) and harvest.__module__ == 'tiktok_repost_async.harvester'\n"
        "import pkgutil, tiktok_repost_async as p\n"
        "mods = {m.name for m in pkgutil.iter_modules(p.__path__)}\n"
        "assert not mods & set(p.__all__), mods & set(p.__all__)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
