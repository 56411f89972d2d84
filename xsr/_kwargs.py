"""The keyword options a class accepts, including those its ``__init__`` forwards to its
bases through ``**kwargs``."""

from __future__ import annotations

import inspect
from typing import Any

__all__ = ["accepted_options"]


def accepted_options(factory: Any) -> set[str] | None:
    """Names of the keyword options of ``factory`` (a class or a callable).

    A class whose ``__init__`` ends in ``**kwargs`` accepts the options of its bases too,
    up its MRO, until an ``__init__`` without ``**kwargs`` (``object.__init__`` takes none).
    ``None`` when that cannot be told: no signature, or a callable taking ``**kwargs``.
    """
    inits = (
        [
            c.__dict__["__init__"]
            for c in factory.__mro__
            if "__init__" in c.__dict__ and c is not object
        ]
        if isinstance(factory, type)
        else [factory]
    )
    names: set[str] = set()  # object.__init__ (reached last) takes no options
    for init in inits:
        try:
            params = inspect.signature(init).parameters.values()
        except (TypeError, ValueError):
            return None
        kinds = (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        names |= {p.name for p in params if p.kind in kinds and p.name != "self"}
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
            return names
    return names if isinstance(factory, type) else None
