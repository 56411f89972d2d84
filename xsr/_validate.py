"""One validator per option type, used by every public entry point.

Options are validated, never coerced: ``periodic="no"`` is an error, not ``True``;
``members=2.5`` is an error, not ``2``.  Each function returns the value in its canonical
type (a builtin ``bool``, ``int`` or ``float``) and raises :class:`~xsr.exceptions.OptionError`
with a message that names the option, the value received, what is allowed and, through
``hint``, the fix.  No xarray, no torch: every layer may use this module.
"""

from __future__ import annotations

import math
import numbers
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

import numpy as np

from .exceptions import OptionError

if TYPE_CHECKING:
    from collections.abc import Collection

__all__ = ["check_bool", "check_choice", "check_int", "check_number"]

T = TypeVar("T")


def _fail(name: str, value: Any, allowed: str, hint: str) -> OptionError:
    text = f"{name} must be {allowed}, got {value!r}"
    if not isinstance(value, str | int | float | bool | type(None)):
        text += f" ({type(value).__name__})"
    return OptionError(f"{text}; {hint}" if hint else text)


@overload
def check_bool(
    value: Any, *, name: str, allow_none: Literal[False] = ..., hint: str = ...
) -> bool: ...
@overload
def check_bool(
    value: Any, *, name: str, allow_none: Literal[True], hint: str = ...
) -> bool | None: ...


def check_bool(value: Any, *, name: str, allow_none: bool = False, hint: str = "") -> bool | None:
    """``value`` if it is ``True`` or ``False`` (numpy booleans too), else an error.

    Strings such as ``"no"`` and numbers such as ``0`` are refused: in Python they would
    count as true or false without saying so.
    """
    if value is None and allow_none:
        return None
    if isinstance(value, bool | np.bool_):
        return bool(value)
    allowed = "True or False" + (" (or None)" if allow_none else "")
    raise _fail(name, value, allowed, hint)


@overload
def check_int(
    value: Any,
    *,
    name: str,
    minimum: int | None = ...,
    maximum: int | None = ...,
    allow_none: Literal[False] = ...,
    hint: str = ...,
) -> int: ...
@overload
def check_int(
    value: Any,
    *,
    name: str,
    minimum: int | None = ...,
    maximum: int | None = ...,
    allow_none: Literal[True],
    hint: str = ...,
) -> int | None: ...


def check_int(
    value: Any,
    *,
    name: str,
    minimum: int | None = None,
    maximum: int | None = None,
    allow_none: bool = False,
    hint: str = "",
) -> int | None:
    """``value`` as an ``int`` if it is an integer (numpy integers too) within the limits.

    Booleans and floats (even integral ones such as ``4.0``) are refused.
    """
    if value is None and allow_none:
        return None
    ok = isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)
    if ok and (minimum is None or value >= minimum) and (maximum is None or value <= maximum):
        return int(value)
    if minimum is not None and maximum is not None:
        allowed = f"an integer from {minimum} to {maximum}"
    elif minimum is not None:
        allowed = f"an integer >= {minimum}"
    elif maximum is not None:
        allowed = f"an integer <= {maximum}"
    else:
        allowed = "an integer"
    raise _fail(name, value, allowed + (" (or None)" if allow_none else ""), hint)


@overload
def check_number(
    value: Any,
    *,
    name: str,
    minimum: float | None = ...,
    positive: bool = ...,
    allow_none: Literal[False] = ...,
    hint: str = ...,
) -> float: ...
@overload
def check_number(
    value: Any,
    *,
    name: str,
    minimum: float | None = ...,
    positive: bool = ...,
    allow_none: Literal[True],
    hint: str = ...,
) -> float | None: ...


def check_number(
    value: Any,
    *,
    name: str,
    minimum: float | None = None,
    positive: bool = False,
    allow_none: bool = False,
    hint: str = "",
) -> float | None:
    """``value`` as a finite ``float`` (``> 0`` with ``positive``, ``>= minimum``)."""
    if value is None and allow_none:
        return None
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_)
    if ok and math.isfinite(float(value)):
        v = float(value)
        if not (positive and v <= 0) and not (minimum is not None and v < minimum):
            return v
    allowed = "a finite number"
    if positive:
        allowed += " > 0"
    elif minimum is not None:
        allowed += f" >= {minimum:g}"
    raise _fail(name, value, allowed + (" (or None)" if allow_none else ""), hint)


def check_choice(value: T, choices: Collection[Any], *, name: str, hint: str = "") -> T:
    """``value`` if it is one of ``choices`` (compared as hashable values, type included).

    ``True`` does not pass for ``1`` nor ``1.0`` for ``1``: the types must match too.
    """
    for c in choices:
        if type(c) is type(value) and c == value:
            return value
    allowed = "one of " + ", ".join(repr(c) for c in choices)
    raise _fail(name, value, allowed, hint)
