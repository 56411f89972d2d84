"""xsr: exactly conservative super-resolution and downscaling for xarray grids.

>>> import xsr
>>> ds = xsr.datasets.open_sample()
>>> fine = ds.sr.downscale(factor=4, method="bicubic")

Importing xsr registers the ``sr`` accessor; torch is imported only when a computation
needs it.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from . import accessor as _accessor  # noqa: F401  (registers .sr)
from . import exceptions
from ._version import __version__
from .api import cell_areas, coarsen, downscale, spatial_dims
from .exceptions import XsrError
from .methods.base import Method
from .methods.registry import get_method, list_methods, register_method
from .options import get_options, set_options

__all__ = [
    "Distillation",
    "Evaluation",
    "Method",
    "TrainedModel",
    "XsrError",
    "__version__",
    "cell_areas",
    "coarsen",
    "datasets",
    "distill",
    "downscale",
    "evaluate",
    "exceptions",
    "get_method",
    "get_options",
    "list_methods",
    "load_model",
    "register_method",
    "set_options",
    "spatial_dims",
    "train",
]

_LAZY = {
    "datasets",
    "conserve",
    "metrics",
    "plot",
    "grid",
    "testing",
    "training",
    "models",
    "distillation",
    "evaluation",
}
#: Callables and classes imported on first use (they pull in torch or heavier modules).
_LAZY_ATTRS = {
    "train": ("training", "train"),
    "TrainedModel": ("training", "TrainedModel"),
    "load_model": ("models", "load_model"),
    "distill": ("distillation", "distill"),
    "Distillation": ("distillation", "Distillation"),
    "evaluate": ("evaluation", "evaluate"),
    "Evaluation": ("evaluation", "Evaluation"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return import_module(f".{name}", __name__)
    if name in _LAZY_ATTRS:
        module, attr = _LAZY_ATTRS[name]
        return getattr(import_module(f".{module}", __name__), attr)
    raise AttributeError(f"module 'xsr' has no attribute {name!r}")
