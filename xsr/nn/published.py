"""Trained networks by name: the registry of published weights, fetched with pooch.

Below the methods (``method="cnn"`` resolves names here); users meet it as :mod:`xsr.models`.
:func:`resolve_model` turns what a user passes as ``model=`` (to ``method="cnn"``, the CLI's
``--model`` or :func:`xsr.distill`) into a :class:`~xsr.nn.checkpoint.TrainedNetwork`:

* a :class:`~xsr.nn.checkpoint.TrainedNetwork` (such as an :class:`xsr.TrainedModel`) is used
  as it is;
* a path to a file written by :meth:`TrainedNetwork.save
  <xsr.nn.checkpoint.TrainedNetwork.save>` is loaded (``~`` expanded);
* otherwise the value is a registry name (:func:`list_models`), resolved by
  :func:`fetch_model`.

:func:`fetch_model` looks in this order:

1. ``XSR_MODEL_DIR``: a directory holding ``<name>.pt`` files (offline override; no network).
2. The cache, ``XSR_CACHE_DIR/models`` (default ``pooch.os_cache("xsr")/models``).
3. A download with :mod:`pooch` from the registered URL, checked against its sha256.
   ``XSR_OFFLINE=1`` forbids this step.

Teams publish their own weights with :func:`register_model` (a URL and its sha256).
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from .. import _cache
from ..exceptions import DataUnavailableError, OptionError

if TYPE_CHECKING:
    from .checkpoint import TrainedNetwork

__all__ = [
    "ModelSource",
    "fetch_model",
    "list_models",
    "model_source",
    "register_model",
    "resolve_model",
]

T = TypeVar("T", bound="TrainedNetwork")


@dataclass(frozen=True)
class ModelSource:
    """Where a named trained network comes from.

    Attributes
    ----------
    name : str
        Registry name; the file is ``<name>.pt``.
    url : str
        Download address (``https://``, ``ftp://``, ``doi:``...).
    sha256 : str
        sha256 of the file, checked on download and on offline use of the cache.
    description : str
        What the network does and what it was trained on.
    licence : str
        Licence and credit of the weights (and of their training data).
    """

    name: str
    url: str
    sha256: str
    description: str = ""
    licence: str = ""

    @property
    def filename(self) -> str:
        return f"{self.name}.pt"


#: Registered weights.  None is published with xsr yet (the project has no release host);
#: teams add theirs with :func:`register_model`.
_REGISTRY: dict[str, ModelSource] = {}


def list_models() -> list[str]:
    """Names of the registered trained networks (registered with :func:`register_model`)."""
    return sorted(_REGISTRY)


def model_source(name: str) -> ModelSource:
    """The :class:`ModelSource` registered under ``name``."""
    if not isinstance(name, str) or name not in _REGISTRY:
        available = list_models()
        close = difflib.get_close_matches(str(name), available, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise OptionError(
            f"unknown trained model {name!r}; {hint}registered names: {available}; pass a "
            "registered name, the path of a file written by TrainedModel.save, or a "
            "TrainedModel"
        )
    return _REGISTRY[name]


def register_model(
    name: str,
    *,
    url: str,
    sha256: str,
    description: str = "",
    licence: str = "",
    overwrite: bool = False,
) -> ModelSource:
    """Make published weights available by name (to ``model=`` and :func:`xsr.load_model`).

    Parameters
    ----------
    name : str
        Registry name, e.g. ``"natl60-ssh-edsr-x8"``; ``XSR_MODEL_DIR/<name>.pt`` overrides
        the download.
    url : str
        Where :mod:`pooch` downloads the file (``https://``, ``ftp://``, ``doi:``...).
    sha256 : str
        64 hex digits: the download is refused when the file does not match.
    description, licence : str
    overwrite : bool, default False
        Replace an existing entry of that name.

    Returns
    -------
    ModelSource
    """
    if not isinstance(name, str) or not name or "/" in name or "\\" in name:
        raise OptionError(f"model name must be a non-empty string without '/', got {name!r}")
    h = str(sha256).lower()
    if len(h) != 64 or any(c not in "0123456789abcdef" for c in h):
        raise OptionError(
            f"sha256={sha256!r} is not a sha256 digest (64 hex digits); compute it with "
            "`sha256sum FILE` or pooch.file_hash(FILE)"
        )
    if not isinstance(url, str) or not url:
        raise OptionError(f"url must be a non-empty string, got {url!r}")
    if name in _REGISTRY and not overwrite:
        raise OptionError(
            f"a model named {name!r} is registered already; pass overwrite=True to replace it"
        )
    src = ModelSource(name=name, url=url, sha256=h, description=description, licence=licence)
    _REGISTRY[name] = src
    return src


def fetch_model(name: str) -> Path:
    """Local path of the weights registered as ``name``, downloading them if needed.

    Parameters
    ----------
    name : str
        One of :func:`list_models`.

    Returns
    -------
    pathlib.Path

    Raises
    ------
    OptionError
        Unknown name (with a suggestion).
    DataUnavailableError
        Not in ``XSR_MODEL_DIR``, not cached, and ``XSR_OFFLINE`` forbids the download.
    """
    src = model_source(name)
    raw = os.environ.get("XSR_MODEL_DIR", "")
    model_dir = Path(raw).expanduser() if raw else None
    if model_dir is not None and (model_dir / src.filename).is_file():
        return model_dir / src.filename
    import pooch

    cache = _cache.cache_dir() / "models"
    target = cache / src.filename
    looked = (
        "XSR_MODEL_DIR is not set"
        if model_dir is None
        else f"XSR_MODEL_DIR={str(model_dir)!r} holds no file {src.filename!r}"
    )
    if _cache.offline():
        if target.is_file() and pooch.file_hash(str(target)) == src.sha256:
            return target
        raise DataUnavailableError(
            f"trained model {name!r} is not available offline: {looked}, and the cache "
            f"{str(cache)!r} holds no valid copy, and XSR_OFFLINE="
            f"{os.environ.get('XSR_OFFLINE')!r} forbids downloading it from {src.url}. Fix: "
            f"put {src.filename!r} in a directory and set XSR_MODEL_DIR to it, or unset "
            "XSR_OFFLINE."
        )
    cache.mkdir(parents=True, exist_ok=True)
    return Path(
        pooch.retrieve(
            src.url, f"sha256:{src.sha256}", fname=src.filename, path=cache, progressbar=False
        )
    )


def resolve_model(model: Any, *, cls: type[T], device: str | None = None) -> T:
    """A trained network from a model, a file path or a registry name.

    Parameters
    ----------
    model : TrainedNetwork, str or path-like
        A trained network (returned as it is), the path of a file written by
        :meth:`TrainedNetwork.save <xsr.nn.checkpoint.TrainedNetwork.save>`, or a registered
        name (:func:`list_models`).
    cls : type
        The class to load files with (:class:`~xsr.nn.checkpoint.TrainedNetwork` or a
        subclass, e.g. :class:`xsr.TrainedModel`).
    device : str, optional
        Where to put a loaded network (``None``: the global ``device`` option).

    Returns
    -------
    TrainedNetwork
        An instance of ``cls`` for files and names.
    """
    from .checkpoint import TrainedNetwork

    if isinstance(model, TrainedNetwork):
        return model  # type: ignore[return-value]
    if not isinstance(model, str | os.PathLike):
        raise OptionError(
            f"model must be a TrainedModel, the path of a saved model or a registered name "
            f"({list_models()}), got {type(model).__name__}"
        )
    path = Path(model).expanduser()
    if path.is_file():
        return cls.load(path, device=device)
    if isinstance(model, str) and model in _REGISTRY:
        return cls.load(fetch_model(model), device=device)
    available = list_models()
    close = difflib.get_close_matches(str(model), available, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise OptionError(
        f"model={str(model)!r} is neither an existing file nor a registered model name"
        f"{hint}; registered names: {available}. Fix: pass the path of a file written by "
        "TrainedModel.save (xsr.train(...).save(path)) or one of the registered names"
    )
