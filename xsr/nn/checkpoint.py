"""The model-file format: a trained super-resolution network and what is needed to apply it.

:class:`TrainedNetwork` holds a network of :mod:`xsr.nn.sr` (ending in its enforcement layer),
the normalisation it was trained with and the metadata that make its use safe (factor,
operator, bounds, variable, units, receptive radius); it writes and reads itself with
:func:`torch.save`/``torch.load(weights_only=True)`` and refuses a file that is not such a
model (:class:`~xsr.exceptions.ModelFileError`).  Torch only: the method that applies it
(:mod:`xsr.methods.cnn`) stands above, training and the xarray conveniences
(:class:`xsr.training.TrainedModel`, :func:`xsr.train`) above that.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ..exceptions import ModelFileError, OptionError

if TYPE_CHECKING:
    from ..conserve import ConserveMode
    from .sr import SRModel

__all__ = ["FORMAT", "TrainedNetwork", "build_network"]

#: Value of the ``format`` entry of a model file.
FORMAT = "xsr.TrainedModel"
_FORMAT_VERSION = 1

T = TypeVar("T", bound="TrainedNetwork")


def _norm_bounds(
    bounds: tuple[float | None, float | None] | None, mean: float, std: float
) -> tuple[float | None, float | None] | None:
    """Bounds in the normalised space of the network."""
    if bounds is None:
        return None
    lo, hi = bounds
    return (
        None if lo is None else (lo - mean) / std,
        None if hi is None else (hi - mean) / std,
    )


def build_network(
    name: str,
    factor: int,
    conserve: ConserveMode | None,
    bounds: tuple[float | None, float | None] | None,
    mean: float,
    std: float,
    options: Mapping[str, Any],
) -> SRModel:
    """The network ``name`` for ``factor`` with its enforcement layer (bounds normalised)."""
    from .sr import build_sr_model

    kw = dict(options)
    if conserve == "bounded":
        kw["bounds"] = _norm_bounds(bounds, mean, std)
    return build_sr_model(name, factor=factor, conserve=conserve, **kw)


# --------------------------------------------------------------------------------------------
# the model file
# --------------------------------------------------------------------------------------------
@dataclass(repr=False)
class TrainedNetwork:
    """A trained super-resolution network with the metadata needed to apply it (the
    model-file format; :class:`xsr.training.TrainedModel` adds the xarray conveniences).

    Attributes
    ----------
    model : SRModel
        The network (its last layer is the enforcement layer, in normalised units).
    name : str
        Registry name of the network (:data:`xsr.nn.sr.SR_MODELS`).
    options : dict
        Keyword options the network was built with (widths, depths...).
    factor : int
        Refinement factor.
    conserve : {"additive", "multiplicative", "bounded", None}
        Enforcement operator.
    bounds : (lower, upper) or None
        Physical bounds for ``conserve="bounded"``.
    var : str or None
        Name of the variable trained on.
    units : str or None
        Its ``units`` attribute.
    mean, std : float
        Normalisation: the network sees ``(x - mean) / std``.
    version : str
        xsr version that trained the model.
    history : dict
        ``{"train": [...], "val": [...]}``: mean loss per epoch (``val`` holds ``None``
        when no field was held out).
    receptive_radius : int or None
        The network's receptive radius in coarse cells
        (:meth:`xsr.nn.sr.SRModel.receptive_radius`), measured at training time: the tile
        halo of ``method="cnn"``; ``None``: measured when first needed.
    """

    model: SRModel
    name: str
    options: dict[str, Any]
    factor: int
    conserve: ConserveMode | None
    bounds: tuple[float | None, float | None] | None
    var: str | None
    units: str | None
    mean: float
    std: float
    version: str
    history: dict[str, list[float | None]] = field(default_factory=dict)
    receptive_radius: int | None = None

    def __repr__(self) -> str:
        parts = [f"{self.name} x{self.factor}", f"conserve={self.conserve!r}"]
        if self.var is not None:
            parts.append(f"var={self.var!r}")
        if self.units is not None:
            parts.append(f"units={self.units!r}")
        return f"{type(self).__name__}({', '.join(parts)})"

    def xsr_cache_key(self) -> str:
        """sha256 of the metadata and the weights: equal for equal models only (used to
        share one built ``method="cnn"`` between tiles and tasks, :mod:`xsr.tiling`)."""
        import hashlib
        import json

        h = hashlib.sha256(json.dumps(self.metadata(), sort_keys=True, default=str).encode())
        for name, t in sorted(self.model.state_dict().items()):
            h.update(name.encode())
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()

    # ---------------------------------------------------------------------- persistence
    def metadata(self) -> dict[str, Any]:
        """Everything but the weights, as plain Python types."""
        return {
            "name": self.name,
            "options": dict(self.options),
            "factor": int(self.factor),
            "conserve": self.conserve,
            "bounds": None if self.bounds is None else list(self.bounds),
            "var": self.var,
            "units": self.units,
            "mean": float(self.mean),
            "std": float(self.std),
            "version": self.version,
            "history": {k: list(v) for k, v in self.history.items()},
            "receptive_radius": self.receptive_radius,
        }

    def save(self, path: str | Path) -> Path:
        """Write the weights and metadata with :func:`torch.save`, atomically.

        The file holds only types that ``torch.load(path, weights_only=True)`` accepts.  It
        is written to a temporary file in the same folder and renamed into place
        (:func:`xsr._io.atomic_write`), so an interrupted save (exception, Ctrl-C, SIGTERM)
        never leaves a partial file or a temporary; an existing file is replaced, keeping
        its permissions.

        Parameters
        ----------
        path : str or Path

        Returns
        -------
        Path

        Raises
        ------
        OutputError
            If ``path`` is a directory.
        OutputFolderError
            If the folder of ``path`` does not exist or is not writable.
        """
        import torch

        from .._io import atomic_write

        state = {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}
        obj = {
            "format": FORMAT,
            "format_version": _FORMAT_VERSION,
            "state_dict": state,
            "metadata": self.metadata(),
        }
        # an interrupted save (or checkpoint) never leaves a half-written file
        return atomic_write(path, lambda tmp: torch.save(obj, tmp))

    @classmethod
    def load(cls: type[T], path: str | Path, *, device: str | None = None) -> T:
        """Read a model written by :meth:`save` (with ``weights_only=True``).

        Parameters
        ----------
        path : str or Path
        device : str, optional
            Where to put the network (``None``: the global ``device`` option).

        Raises
        ------
        ModelFileError
            If ``path`` is not a model file written by :meth:`save` (another file, an empty
            or truncated one, a model of another format); the message names the file.
        """
        import torch

        from ..options import resolve_device

        p = Path(path)

        def not_a_model(detail: str) -> ModelFileError:
            return ModelFileError(
                f"model file {str(p)!r} is not a model written by xsr ({detail}); expected a "
                f"file written by TrainedModel.save or `xsr train --out` (format={FORMAT!r}). "
                "Fix: pass such a file, or a registered name (xsr.models.list_models())"
            )

        if p.is_file() and p.stat().st_size == 0:
            raise not_a_model("the file is empty")
        try:
            obj = torch.load(p, map_location="cpu", weights_only=True)
        except (FileNotFoundError, IsADirectoryError, PermissionError):
            raise
        except Exception as e:
            text = str(e).strip()
            first = text.splitlines()[0].split(". ")[0][:120] if text else ""
            raise not_a_model(f"torch.load cannot read it: {type(e).__name__}: {first}") from e
        if not isinstance(obj, dict) or obj.get("format") != FORMAT:
            got = f"format={obj.get('format')!r}" if isinstance(obj, dict) else type(obj).__name__
            raise not_a_model(f"it holds {got}")
        try:
            meta = obj["metadata"]
            bounds = None if meta["bounds"] is None else tuple(meta["bounds"])
            model = build_network(
                meta["name"],
                meta["factor"],
                meta["conserve"],
                bounds,
                meta["mean"],
                meta["std"],
                meta["options"],
            )
            model.load_state_dict(obj["state_dict"])
        except (KeyError, TypeError, RuntimeError) as e:
            raise not_a_model(f"incomplete or damaged: {type(e).__name__}: {e}") from e
        model.to(resolve_device(device)).eval()
        return cls(
            model=model,
            name=meta["name"],
            options=dict(meta["options"]),
            factor=int(meta["factor"]),
            conserve=meta["conserve"],
            bounds=bounds,
            var=meta["var"],
            units=meta["units"],
            mean=float(meta["mean"]),
            std=float(meta["std"]),
            version=str(meta["version"]),
            history={k: list(v) for k, v in meta["history"].items()},
            receptive_radius=meta.get("receptive_radius"),
        )

    def check_factor(self, factor: int) -> None:
        """Raise :class:`~xsr.exceptions.OptionError` unless ``factor`` is the model's."""
        if factor != self.factor:
            raise OptionError(
                f"factor={factor!r} does not match the trained model's factor: allowed is "
                f"{self.factor} (the factor it was trained for); pass factor={self.factor} or "
                f"train a model for factor {factor}"
            )

    def check_units(self, units: str | None, *, name: str = "the data") -> None:
        """Raise :class:`~xsr.exceptions.OptionError` when ``units`` differ from the units
        of the training data (no check when either is unknown)."""
        if units is not None and self.units is not None and str(units) != self.units:
            raise OptionError(
                f"units mismatch: {name} has units={str(units)!r} but the model was trained "
                f"on units={self.units!r} (allowed: {self.units!r}); convert the data to "
                f"{self.units!r} first or train a model on data in {str(units)!r}"
            )
