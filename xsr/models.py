"""Trained networks by name: a registry of published weights, fetched with pooch.

:func:`load_model` turns what a user passes as ``model=`` (to ``method="cnn"``, the CLI's
``--model`` or :func:`xsr.distill`) into a :class:`~xsr.training.TrainedModel`:

* a :class:`~xsr.training.TrainedModel` is used as it is;
* a path to a file written by :meth:`TrainedModel.save <xsr.training.TrainedModel.save>`
  is loaded (``~`` expanded);
* otherwise the value is a registry name (:func:`list_models`), resolved by
  :func:`fetch_model`.

:func:`fetch_model` looks in ``XSR_MODEL_DIR``, then the cache, then downloads with pooch
(checked against the sha256; ``XSR_OFFLINE=1`` forbids it): see :mod:`xsr.nn.published`.

Teams publish their own weights with :func:`register_model` (a URL and its sha256).  None is
published with xsr yet.  The registry itself lives in :mod:`xsr.nn.published`, below the
methods; this module adds :func:`load_model`, which returns the xarray-aware
:class:`~xsr.training.TrainedModel`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .nn.published import ModelSource, fetch_model, list_models, model_source, register_model

if TYPE_CHECKING:
    from .training import TrainedModel

__all__ = [
    "ModelSource",
    "fetch_model",
    "list_models",
    "load_model",
    "model_source",
    "register_model",
]


def load_model(model: Any, *, device: str | None = None) -> TrainedModel:
    """A :class:`~xsr.training.TrainedModel` from a model, a file path or a registry name.

    Parameters
    ----------
    model : TrainedModel, str or path-like
        A trained model (returned as it is), the path of a file written by
        :meth:`TrainedModel.save <xsr.training.TrainedModel.save>`, or a registered name
        (:func:`list_models`).
    device : str, optional
        Where to put a loaded network (``None``: the global ``device`` option).

    Returns
    -------
    TrainedModel
    """
    from .nn.published import resolve_model
    from .training import TrainedModel

    return resolve_model(model, cls=TrainedModel, device=device)
