"""A griffe extension for the docs site: a msgspec Struct's signature is its fields.

msgspec generates a Struct's ``__init__`` at runtime, so griffe's static reading of
``tiktok_repost_async/models.py`` sees a class without parameters: the API pages would show the
structs without a signature, and every ``:param field:`` of their docstrings (which ``help()``
shows for the generated ``__init__``) as a parameter that does not exist. This extension asks the
imported class for its signature and gives griffe an ``__init__`` with those parameters, their
annotations taken from the fields as written in the source.

mkdocs.yml names it under mkdocstrings' python handler: ``extensions: [scripts/griffe_msgspec.py]``.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

import griffe
import msgspec

_KINDS = {
    inspect.Parameter.POSITIONAL_ONLY: griffe.ParameterKind.positional_only,
    inspect.Parameter.POSITIONAL_OR_KEYWORD: griffe.ParameterKind.positional_or_keyword,
    inspect.Parameter.VAR_POSITIONAL: griffe.ParameterKind.var_positional,
    inspect.Parameter.KEYWORD_ONLY: griffe.ParameterKind.keyword_only,
    inspect.Parameter.VAR_KEYWORD: griffe.ParameterKind.var_keyword,
}


class MsgspecStructs(griffe.Extension):
    """Give every msgspec Struct of the package an ``__init__`` made of its fields."""

    def on_class_members(self, *, cls: griffe.Class, **kwargs: Any) -> None:
        """Add the generated ``__init__`` to ``cls`` when the imported class is a Struct."""
        if "__init__" in cls.members:
            return
        try:
            runtime = getattr(importlib.import_module(cls.module.path), cls.name)
        except (ImportError, AttributeError):
            return
        if not (inspect.isclass(runtime) and issubclass(runtime, msgspec.Struct)):
            return
        parameters = [griffe.Parameter("self", kind=griffe.ParameterKind.positional_or_keyword)]
        for name, param in inspect.signature(runtime).parameters.items():
            field = cls.all_members.get(name)
            parameters.append(
                griffe.Parameter(
                    name,
                    annotation=getattr(field, "annotation", None),
                    kind=_KINDS[param.kind],
                    default=None if param.default is param.empty else repr(param.default),
                )
            )
        init = griffe.Function(
            "__init__",
            parameters=griffe.Parameters(*parameters),
            returns="None",
            lineno=cls.lineno,
            endlineno=cls.lineno,
        )
        cls.set_member("__init__", init)
