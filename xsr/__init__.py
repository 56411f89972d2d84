"""xsr: exactly conservative super-resolution and downscaling for xarray grids.

>>> import xsr
>>> ds = xsr.datasets.open_sample()
>>> fine = ds.sr.downscale(factor=4, method="bicubic")

Importing xsr registers the ``sr`` accessor; torch is imported only when a computation
needs it.
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _pkg_version
from typing import Any

from . import accessor as _accessor  # noqa: F401  (registers .sr)
from . import exceptions
from .api import cell_areas, coarsen, downscale, spatial_dims
from .exceptions import XsrError
from .methods.base import Method
from .methods.registry import get_method, list_methods, register_method
from .options import get_options, set_options

try:
    __version__ = _pkg_version("xsr")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0+unknown"

__all__ = [
    "Method",
    "XsrError",
    "__version__",
    "cell_areas",
    "coarsen",
    "datasets",
    "downscale",
    "exceptions",
    "get_method",
    "get_options",
    "list_methods",
    "register_method",
    "set_options",
    "spatial_dims",
]

_LAZY = {"datasets", "conserve", "metrics", "plot", "grid", "testing"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return import_module(f".{name}", __name__)
    raise AttributeError(f"module 'xsr' has no attribute {name!r}")
