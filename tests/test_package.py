"""The public surface: what the package re-exports, and that importing it stays light."""

from __future__ import annotations

import dataclasses
import enum
import importlib
import inspect
import pkgutil
import pydoc
import re
import subprocess
import sys
from collections.abc import Callable
from types import ModuleType

import msgspec
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


def _constructor(cls: type) -> tuple[list[str], str | None, str]:
    """Return a class's constructor parameters, the docstring that must document them, and
    where that docstring lives."""
    if dataclasses.is_dataclass(cls) or issubclass(cls, msgspec.Struct):
        # A generated __init__: the class's own docstring is what help() shows for it.
        fields = [name for name in inspect.signature(cls).parameters if not name.startswith("_")]
        return fields, cls.__doc__, f"{cls.__name__} (class docstring)"
    owner = next(klass for klass in cls.__mro__ if "__init__" in klass.__dict__)
    if not owner.__module__.startswith("tiktok_repost_async"):
        return [], "", f"{cls.__name__} (inherits {owner.__name__}.__init__)"
    init = owner.__dict__["__init__"]
    params = [name for name in inspect.signature(init).parameters if name != "self"]
    return params, init.__doc__, f"{owner.__name__}.__init__"


def _public_callables() -> list[tuple[str, list[str], str | None]]:
    found = []
    for name in tiktok_repost_async.__all__:
        obj = getattr(tiktok_repost_async, name)
        if inspect.isclass(obj):
            if issubclass(obj, enum.Enum):
                continue  # made from a value, not constructed with parameters
            if getattr(obj, "_is_protocol", False):
                continue  # an interface (the ledger's): implemented, never constructed
            params, doc, where = _constructor(obj)
            found.append((where, params, doc))
        elif inspect.isfunction(obj):
            found.append((name, list(inspect.signature(obj).parameters), obj.__doc__))
    return found


def _param_problems(found: list[tuple[str, list[str], str | None]]) -> tuple[list[str], list[str]]:
    """Return the parameters without a ``:param`` line, and the ``:param`` lines without one."""
    missing = [
        f"{where}: {param}"
        for where, params, doc in found
        for param in params
        if f":param {param}:" not in (doc or "")
    ]
    # The docs site does not warn of the second (griffe cannot see a Struct's generated signature).
    unknown = [
        f"{where}: {param}"
        for where, params, doc in found
        for param in re.findall(r":param (\w+):", doc or "")
        if param not in params
    ]
    return missing, unknown


def test_every_public_constructor_and_function_documents_its_parameters() -> None:
    found = _public_callables()
    assert len(found) > 40
    assert _param_problems(found) == ([], [])
    undocumented = [where for where, _, doc in found if not (doc or "").strip()]
    assert undocumented == [] or all("inherits" in where for where in undocumented)


def _public_modules() -> list[ModuleType]:
    """Return the package's modules whose names do not start with ``_``, the command's aside.

    cli/ is the command: its options are documented by ``--help`` and reference/cli.md.
    """
    return [
        importlib.import_module(f"tiktok_repost_async.{info.name}")
        for info in pkgutil.iter_modules(tiktok_repost_async.__path__)
        if not info.name.startswith("_") and info.name != "cli"
    ]


def _ours(obj: object) -> bool:
    return str(getattr(obj, "__module__", "")).startswith("tiktok_repost_async")


def _methods(cls: type) -> list[tuple[str, list[str], str | None]]:
    """Return a class's public methods written in the package, inherited ones included: each
    with where it is written, its parameters (but self and cls) and its docstring."""
    found = []
    for owner in cls.__mro__:
        if not _ours(owner):
            continue  # object's, Exception's, Enum's, msgspec's
        for name, member in vars(owner).items():
            explicit_init = name == "__init__" and not (
                dataclasses.is_dataclass(owner)
                or issubclass(owner, enum.Enum)
                or getattr(owner, "_is_protocol", False)
            )
            if name.startswith("_") and not explicit_init:
                continue
            func: Callable[..., object]
            if isinstance(member, staticmethod | classmethod):
                func = member.__func__
            elif inspect.isfunction(member):
                func = member
            else:
                continue  # a property has no parameters; a constant none either
            params = list(inspect.signature(func).parameters)
            if not isinstance(member, staticmethod):
                params = params[1:]
            found.append((f"{owner.__module__}.{owner.__qualname__}.{name}", params, func.__doc__))
    return found


def _public_methods_and_functions() -> list[tuple[str, list[str], str | None]]:
    """Return every public method of the classes in ``__all__`` (and in the public modules'
    ``__all__``), and every public function of the public modules, each once."""
    classes: list[type] = []
    functions: list[Callable[..., object]] = []
    names = [(tiktok_repost_async, name) for name in tiktok_repost_async.__all__]
    for module in _public_modules():
        public = getattr(module, "__all__", [n for n in vars(module) if not n.startswith("_")])
        names += [(module, name) for name in public]
    for module, name in names:
        obj = getattr(module, name)
        if inspect.isclass(obj) and _ours(obj) and obj not in classes:
            classes.append(obj)
        elif inspect.isfunction(obj) and _ours(obj) and obj not in functions:
            functions.append(obj)
    found = {where: (where, params, doc) for cls in classes for where, params, doc in _methods(cls)}
    for func in functions:
        where = f"{func.__module__}.{func.__qualname__}"
        found[where] = (where, list(inspect.signature(func).parameters), func.__doc__)
    return list(found.values())


def test_every_public_method_and_function_documents_its_parameters() -> None:
    found = _public_methods_and_functions()
    wheres = {where for where, _, _ in found}
    # The ones an auditor found bare, as a check that the walk above reaches them at all.
    for where in (
        "client.RepostClient.fetch_page",
        "client.RepostClient.walk_many",
        "store._store.Store.add_users",
        "store._protocol.StoreLike.commit_pages",
        "store._postgres.PostgresStore.claim_users",
        "ledger.SQLiteLedger.book",
        "quota.DailyQuota.try_spend",
        "retry.RetryPolicy.delay",
        "simulator._server.Simulator.script",
        "export.export_csv",
        "diff.pick_rounds",
        "frames.to_pandas",
    ):
        assert f"tiktok_repost_async.{where}" in wheres, where
    assert _param_problems(found) == ([], [])
    assert [where for where, _, doc in found if not (doc or "").strip()] == []


def test_help_on_a_constructor_never_says_initialize_self() -> None:
    for name in ("RepostClient", "Store", "Harvester", "DailyQuota", "Credentials", "APIError"):
        init = getattr(tiktok_repost_async, name).__init__
        assert init.__doc__
        assert "Initialize self" not in init.__doc__
        assert pydoc.render_doc(init).count(":param ") >= 1


def test_harvest_takes_the_harvesters_options_by_name() -> None:
    from tiktok_repost_async import Harvester, harvest

    options = dict(inspect.signature(Harvester.__init__).parameters)
    given = dict(inspect.signature(harvest).parameters)
    for name in ("self", "client", "store"):
        options.pop(name)
    assert not any(p.kind is p.VAR_KEYWORD for p in given.values())
    for name, param in options.items():
        assert given[name].kind is param.KEYWORD_ONLY, name
        assert given[name].default == param.default, name
        assert given[name].annotation == param.annotation, name
