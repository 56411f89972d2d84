"""Registry of downscaling methods.

Built-in methods live in a table ``name -> (module, class)`` and are imported lazily; other
packages add methods through the entry-point group ``xsr.methods`` (value ``"module:attr"``,
a :class:`~xsr.methods.base.Method` subclass or a factory returning one) or at run time with
:func:`register_method`.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any

from .._kwargs import accepted_options
from ..exceptions import MethodError, OptionError
from .base import Method

__all__ = ["get_method", "list_methods", "register_method"]

_BUILTIN: dict[str, tuple[str, str]] = {
    "nearest": ("xsr.methods.interp", "Nearest"),
    "bilinear": ("xsr.methods.interp", "Bilinear"),
    "bicubic": ("xsr.methods.interp", "Bicubic"),
    "dip": ("xsr.methods.dip", "DIP"),
    "dip-ensemble": ("xsr.methods.dip", "DIPEnsemble"),
    "cnn": ("xsr.methods.cnn", "CNN"),
    "regression": ("xsr.methods.regression", "Regression"),
}
_REGISTERED: dict[str, Callable[..., Method]] = {}


def _entry_points() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group="xsr.methods")}


def list_methods() -> list[str]:
    """Names of all available methods: built-in, entry points and registered at run time."""
    return sorted(set(_BUILTIN) | set(_entry_points()) | set(_REGISTERED))


def register_method(name: str, factory: Callable[..., Method], *, overwrite: bool = False) -> None:
    """Make a method available under ``name``.

    Parameters
    ----------
    name : str
        Registry name, e.g. ``"my-method"``.
    factory : callable
        A :class:`Method` subclass, or any callable taking the method's options as keyword
        arguments and returning a :class:`Method`.
    overwrite : bool, default False
        Replace an existing method of that name (built-ins included).
    """
    if not isinstance(name, str) or not name:
        raise OptionError(f"method name must be a non-empty string, got {name!r}")
    if not callable(factory):
        raise OptionError(f"factory must be a Method subclass or a callable, got {factory!r}")
    if not overwrite and name in list_methods():
        raise OptionError(
            f"a method named {name!r} exists already; pass overwrite=True to replace it"
        )
    _REGISTERED[name] = factory


def _factory(name: str) -> Callable[..., Method]:
    if name in _REGISTERED:
        return _REGISTERED[name]
    if name in _BUILTIN:
        module, attr = _BUILTIN[name]
        return getattr(importlib.import_module(module), attr)
    eps = _entry_points()
    if name in eps:
        return eps[name].load()
    available = list_methods()
    close = difflib.get_close_matches(name, available, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise MethodError(f"unknown method {name!r}; {hint}available: {available}")


def get_method(method: str | Method, **options: Any) -> Method:
    """Return a :class:`Method` instance for a name (with options) or an instance."""
    if isinstance(method, Method):
        if options:
            raise OptionError(
                f"options {sorted(options)} cannot be applied to the method instance "
                f"{method!r}; pass them when you build it"
            )
        return method
    if not isinstance(method, str):
        raise MethodError(
            f"method must be a name (str) or a xsr Method instance, got {type(method).__name__}"
        )
    factory = _factory(method)
    allowed = accepted_options(factory)
    if allowed is not None:
        bad = sorted(set(options) - allowed)
        if bad:
            raise OptionError(
                f"method {method!r} does not take the option(s) {bad}; its options are "
                f"{sorted(allowed)}"
            )
    inst = factory(**options)
    if not isinstance(inst, Method):
        raise MethodError(
            f"method {method!r} built {type(inst).__name__}, not a xsr.methods.Method"
        )
    return inst
