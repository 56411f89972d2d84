"""Downscaling with a trained super-resolution network (``method="cnn"``).

The network (a :class:`~xsr.nn.checkpoint.TrainedNetwork` such as the
:class:`~xsr.training.TrainedModel` that :func:`xsr.train` returns, a saved file or a
registered name, see :mod:`xsr.models`) runs on normalised fields with its own enforcement
layer, given the fine cell areas and mask; :func:`~xsr.methods.pipeline.downscale_array` then
enforces the result once more in the compute dtype against the original coarse field, so
conservation holds to the round-off of that dtype whatever the network's precision.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from .._validate import check_int
from ..exceptions import OptionError
from .base import Method

if TYPE_CHECKING:
    import torch

    from ..conserve import ConserveMode
    from ..nn.checkpoint import TrainedNetwork

__all__ = ["CNN"]

_LOADED: dict[Any, TrainedNetwork] = {}
_LOCK = threading.Lock()


def _key(model: str | os.PathLike[str]) -> Any:
    """The file behind ``model`` (a path, or a registered name resolved by
    :func:`xsr.models.fetch_model`): its path, time and size, so a changed file is loaded
    again."""
    from ..nn.published import fetch_model, list_models

    path = Path(model).expanduser()
    if not path.is_file() and isinstance(model, str) and model in list_models():
        path = fetch_model(model)
    if path.is_file():
        st = path.stat()
        return ("file", str(path.resolve()), st.st_mtime_ns, st.st_size)
    return ("name", str(model))


def _resolve(model: Any) -> TrainedNetwork:
    """The trained network for ``model``, loaded at most once per process per file."""
    from ..nn.checkpoint import TrainedNetwork
    from ..nn.published import resolve_model

    if isinstance(model, TrainedNetwork):
        return model
    key = _key(model)
    with _LOCK:
        tm = _LOADED.get(key)
        if tm is None:
            target = key[1] if key[0] == "file" else model
            tm = resolve_model(target, cls=TrainedNetwork, device="cpu")
            _LOADED[key] = tm
    return tm


def _radius(tm: TrainedNetwork) -> int:
    """The network's receptive radius in coarse cells: stored by :func:`xsr.train`, else
    measured once and kept on the model."""
    if tm.receptive_radius is None:
        tm.receptive_radius = tm.model.receptive_radius()
    return int(tm.receptive_radius)


class CNN(Method):
    """A trained conservative super-resolution network (:func:`xsr.train`).

    Parameters
    ----------
    model : TrainedModel, str or path-like
        The network: a :class:`~xsr.training.TrainedModel` (any
        :class:`~xsr.nn.checkpoint.TrainedNetwork`), the path of a file written by
        :meth:`TrainedModel.save <xsr.training.TrainedModel.save>`, or a registered name
        (:func:`xsr.models.list_models`).  Files and names are loaded once per process.
    halo : int, optional
        Coarse cells of context a tile (or a periodic edge) gets on each side.  Default: the
        network's receptive radius (:meth:`xsr.nn.sr.SRModel.receptive_radius`, measured once),
        so that tiled runs give the untiled result.
    batch_size : int, default 16
        Fields per network call.

    Notes
    -----
    The request is checked against the model before anything runs
    (:meth:`check_request`): the factor must be the one the model was trained for, the
    data's ``units`` those of its training data, and ``conserve`` the model's enforcement
    (or ``None`` to switch the final enforcement off), and the guides (``guide=`` of
    :func:`xsr.downscale`) those the model was trained with: the same names (matched by name,
    in any order) and units, none for a model trained without
    (:meth:`~xsr.nn.checkpoint.TrainedNetwork.check_guides`).  The guides are normalised with
    the mean and standard deviation of training and given to the network in the order of
    training.  Missing (NaN) coarse cells are
    filled from their neighbours before the network sees them (by the pipeline, over
    ``halo + 1`` rings, as :func:`xsr.train` fills them for training) and are NaN again in
    the output; tiles get ``2 * halo`` cells of context, so that tiled runs reproduce the
    untiled one near land too.
    """

    name = "cnn"
    halo: ClassVar[int] = 8
    # a guide reaches check_request, which accepts it for models trained with guides and
    # refuses it, naming the fix, for the others
    uses_guide: ClassVar[bool] = True

    def __init__(self, *, model: Any = None, halo: int | None = None, batch_size: int = 16) -> None:
        from ..nn.checkpoint import TrainedNetwork

        if model is None:
            raise OptionError(
                "method 'cnn' needs model=: a TrainedModel (xsr.train(...)), the path of a "
                "saved model, or a registered name (xsr.models.list_models()); on the "
                "command line: --model PATH_OR_NAME"
            )
        if not isinstance(model, TrainedNetwork | str | os.PathLike):
            raise OptionError(
                f"model must be a TrainedModel, a file path or a registered name, got "
                f"{type(model).__name__}"
            )
        halo = check_int(halo, name="halo", minimum=0, allow_none=True, hint="in coarse cells")
        self.model = model
        self.batch_size = check_int(batch_size, name="batch_size", minimum=1)
        self._halo_option = halo
        # loaded now (errors surface here, not in a dask task), once per process per file,
        # and held: tiles do not look the file up again
        self.trained: TrainedNetwork = _resolve(model)
        self.halo = _radius(self.trained) if halo is None else halo  # type: ignore[misc]

    def __repr__(self) -> str:
        return f"CNN(model={self._describe_model()})"

    def _describe_model(self) -> str:
        from ..nn.checkpoint import TrainedNetwork

        if isinstance(self.model, TrainedNetwork):
            return repr(self.model)
        return repr(os.fspath(self.model))

    def options(self) -> dict[str, Any]:
        from ..nn.checkpoint import TrainedNetwork

        opts: dict[str, Any] = {
            "model": self.model if isinstance(self.model, TrainedNetwork) else os.fspath(self.model)
        }
        if self._halo_option is not None:
            opts["halo"] = self._halo_option
        if self.batch_size != 16:
            opts["batch_size"] = self.batch_size
        return opts

    def check_request(
        self,
        *,
        factor: int,
        conserve: ConserveMode | None,
        bounds: tuple[float | None, float | None] | None,
        units: str | None,
        name: str,
        guides: tuple[tuple[str, str | None], ...] | None = None,
    ) -> None:
        tm = self.trained
        tm.check_factor(factor)
        try:
            tm.check_units(units, name=f"variable {name!r}")
        except OptionError as e:
            hint = ""
            if tm.var is not None and tm.var != name:
                hint = (
                    f"; or downscale only the variable(s) the model fits, e.g. "
                    f"ds[[{tm.var!r}]].sr.downscale(...)"
                )
            raise OptionError(f"{e}{hint}") from None
        tm.check_guides(guides, name=f"variable {name!r}")
        if conserve is not None and tm.conserve is not None and conserve != tm.conserve:
            raise OptionError(
                f"conserve={conserve!r} differs from the enforcement the model was trained "
                f"with ({tm.conserve!r}); allowed: {tm.conserve!r} or None. Fix: pass "
                f"conserve={tm.conserve!r}"
                + (f", bounds={tm.bounds!r}" if tm.conserve == "bounded" else "")
            )

    def upscale(self, x: torch.Tensor, factor: int, **context: Any) -> torch.Tensor:
        import torch

        tm = self.trained
        tm.check_factor(factor)
        net = tm.model
        param = next(net.parameters())
        if param.device != x.device:
            with _LOCK:
                net.to(x.device)
            param = next(net.parameters())
        *lead, ny, nx = x.shape
        # x is NaN-free here: the pipeline filled missing cells from their neighbours
        # (halo + 1 rings), as xsr.train fills them for training
        xn = ((x.reshape(-1, 1, ny, nx) - tm.mean) / tm.std).to(param.dtype)
        gv, order = self._guide(context, x, factor)
        outs = []
        net.eval()
        with torch.no_grad():
            for i in range(0, xn.shape[0], self.batch_size):
                # the network's own layer enforces with uniform weights; the pipeline then
                # enforces with the grid's areas and masks, which for the additive and
                # multiplicative operators gives exactly the layer's result with them
                sl = slice(i, i + self.batch_size)
                g = None
                if gv is not None:  # a batch at a time: a static guide is not copied N times
                    g = tm.normalise_guide(gv[sl][:, order]).to(param.dtype)
                outs.append(net(xn[sl], g)[:, 0])
        y = torch.cat(outs, dim=0).to(x.dtype) * tm.std + tm.mean
        return y.reshape(*lead, ny * factor, nx * factor)

    def _guide(
        self, context: dict[str, Any], x: torch.Tensor, factor: int
    ) -> tuple[torch.Tensor | None, list[int]]:
        """The guides of the call, ``(N, C, ny*f, nx*f)`` (a view where possible), and the
        positions of the trained guides in them, in the order of training; ``(None, [])``
        for a model without guides.  Refused when the call and the model disagree."""
        tm = self.trained
        guide = context.get("guide")
        names = context.get("guide_names")
        if guide is None:
            tm.check_guides(None, name="the coarse field")
            return None, []
        channels = int(guide.shape[-3])
        if not tm.guide_names:
            given = list(names) if names else [f"guide{i}" for i in range(channels)]
            tm.check_guides([(n, None) for n in given], name="the coarse field")
        default = tuple(f"guide{i}" for i in range(channels))
        if names is not None and tuple(names) == default and default != tm.guide_names:
            raise OptionError(
                f"the guides of this call have no names ({channels} channel(s)); the model "
                f"was trained with {tm.describe_guides()} (allowed: those names). Fix: pass "
                f"guide_names={tm.guide_names!r} with the channels in that order (or use "
                "TrainedModel.predict, or guide= of xsr.downscale with named DataArrays)"
            )
        order = tm.guide_order(None if names is None else tuple(names), channels)
        ny, nx = x.shape[-2:]
        return guide.reshape(-1, channels, ny * factor, nx * factor), order
