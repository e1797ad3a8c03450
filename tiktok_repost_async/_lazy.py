"""Load a package's re-exported names on first use (PEP 562), so that importing it stays light."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, names: Mapping[str, str], namespace: dict[str, Any]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Return a module ``__getattr__`` and ``__dir__`` that import each name from its submodule.

    :param package: the package's ``__name__``.
    :param names: each lazily exported name -> the submodule (relative, no dot) that defines it.
    :param namespace: the package's ``globals()``: a loaded name is kept there, and its
        ``__all__`` (read when ``__dir__`` runs) lists what ``dir()`` shows.
    """

    def __getattr__(name: str) -> Any:
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f".{module}", package), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(namespace["__all__"])

    return __getattr__, __dir__
