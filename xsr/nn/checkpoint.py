"""The model-file format: a trained super-resolution network and what is needed to apply it.

:class:`TrainedNetwork` holds a network of :mod:`xsr.nn.sr` (ending in its enforcement layer),
the normalisation it was trained with and the metadata that make its use safe (factor,
operator, bounds, variable, units, receptive radius, and the fine-scale covariates (guides) it
was trained with: their names, units and normalisation); it writes and reads itself with
:func:`torch.save`/``torch.load(weights_only=True)`` and refuses a file that is not such a
model (:class:`~xsr.exceptions.ModelFileError`).  Torch only: the method that applies it
(:mod:`xsr.methods.cnn`) stands above, training and the xarray conveniences
(:class:`xsr.training.TrainedModel`, :func:`xsr.train`) above that.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ..exceptions import ModelFileError, OptionError

if TYPE_CHECKING:
    import torch

    from ..conserve import ConserveMode
    from .sr import SRModel

__all__ = ["FORMAT", "TrainedNetwork", "build_network"]

#: Value of the ``format`` entry of a model file.
FORMAT = "xsr.TrainedModel"
#: 1: networks without guides (written so still, readable by earlier xsr); 2: with guides
#: (``metadata["guides"]``).
_FORMAT_VERSION = 1
_FORMAT_VERSION_GUIDES = 2

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
    guide_names : tuple of str
        The fine-scale covariates (guides) the network was trained with, in the order of its
        guide channels; empty for a network without guides.
    guide_units : tuple of (str or None)
        Their ``units`` attributes.
    guide_mean, guide_std : tuple of float
        Their normalisation: the network sees ``(g - guide_mean[c]) / guide_std[c]`` (mean
        and standard deviation over the training data).
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
    guide_names: tuple[str, ...] = ()
    guide_units: tuple[str | None, ...] = ()
    guide_mean: tuple[float, ...] = ()
    guide_std: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        self.guide_names = tuple(str(n) for n in self.guide_names)
        c = len(self.guide_names)
        units = self.guide_units or (None,) * c
        self.guide_units = tuple(None if u is None else str(u) for u in units)
        self.guide_mean = tuple(float(v) for v in (self.guide_mean or (0.0,) * c))
        self.guide_std = tuple(float(v) for v in (self.guide_std or (1.0,) * c))
        if not all(v > 0 and math.isfinite(v) for v in self.guide_std):
            raise OptionError(f"guide_std must be positive and finite, got {self.guide_std}")
        lengths = {len(self.guide_units), len(self.guide_mean), len(self.guide_std)}
        if lengths != {c}:
            raise OptionError(
                f"guide_names, guide_units, guide_mean and guide_std must have one entry per "
                f"guide ({c}), got lengths {sorted(lengths)}"
            )
        have = int(getattr(self.model, "guide_channels", 0))
        if have != c:
            raise OptionError(
                f"the network takes {have} guide channel(s) but {c} guide name(s) were given "
                f"({list(self.guide_names)}); build it with guide_channels={c}"
            )

    def __repr__(self) -> str:
        parts = [f"{self.name} x{self.factor}", f"conserve={self.conserve!r}"]
        if self.var is not None:
            parts.append(f"var={self.var!r}")
        if self.units is not None:
            parts.append(f"units={self.units!r}")
        if self.guide_names:
            parts.append(f"guides={self.describe_guides()}")
        return f"{type(self).__name__}({', '.join(parts)})"

    # ---------------------------------------------------------------------- guides
    def describe_guides(self) -> str:
        """The guides as ``"['elevation' (m), ...]"`` (``"none"`` without)."""
        if not self.guide_names:
            return "none"
        items = [
            repr(n) + ("" if u is None else f" ({u})")
            for n, u in zip(self.guide_names, self.guide_units, strict=True)
        ]
        return "[" + ", ".join(items) + "]"

    def check_guides(
        self, guides: Sequence[tuple[str, str | None]] | None, *, name: str = "the data"
    ) -> None:
        """Refuse guides other than those the network was trained with.

        Parameters
        ----------
        guides : sequence of (name, units), or None
            The guides of the call (``None`` or empty: none).  They must be the trained
            ones by name (any order), with the same ``units`` (not checked when either is
            unknown).
        name : str
            What is downscaled, for messages.

        Raises
        ------
        OptionError
            Naming what was given, what is allowed and the fix.
        """
        given = list(guides or ())
        trained = self.describe_guides()
        if not self.guide_names:
            if given:
                names = [str(n) for n, _ in given]
                raise OptionError(
                    f"guide={names} for {name}, but the model was trained without guides "
                    f"(allowed: no guide). Fix: leave guide= out, or train a model on guides "
                    f"(xsr.train(..., guides=...))"
                )
            return
        if not given:
            raise OptionError(
                f"the model was trained with the guides {trained} and needs them to downscale "
                f"{name}, but the call has none. Fix: pass guide= with "
                + ("that covariate" if len(self.guide_names) == 1 else "those covariates")
                + f", named {list(self.guide_names)} (e.g. guide=elev.rename("
                f"{self.guide_names[0]!r})), in the units of training"
            )
        names = [str(n) for n, _ in given]
        if sorted(names) != sorted(self.guide_names):
            missing = [n for n in self.guide_names if n not in names]
            extra = [n for n in names if n not in self.guide_names]
            detail = "; ".join(
                part
                for part in (
                    f"missing {missing}" if missing else "",
                    f"not trained on {extra}" if extra else "",
                )
                if part
            )
            raise OptionError(
                f"guide={names} for {name} differ from the guides the model was trained with "
                f"({detail}); allowed: {list(self.guide_names)}. Fix: pass exactly those "
                f"covariates, renamed if needed (da.rename({self.guide_names[0]!r}))"
            )
        units = dict(given)
        for n, u in zip(self.guide_names, self.guide_units, strict=True):
            got = units[n]
            if got is not None and u is not None and str(got) != u:
                raise OptionError(
                    f"units mismatch: guide {n!r} has units={str(got)!r} but the model was "
                    f"trained on it in units={u!r} (allowed: {u!r}); convert the guide to "
                    f"{u!r} first or train a model on a guide in {str(got)!r}"
                )

    def guide_order(self, names: Sequence[str] | None, channels: int) -> list[int]:
        """Positions, in guides named ``names`` (``channels`` of them), of the trained
        guides in training order; without names the guides are taken in training order."""
        c = len(self.guide_names)
        if names is None or not len(names):
            if channels != c:
                raise OptionError(
                    f"{channels} guide channel(s) given, but the model was trained with {c}: "
                    f"{self.describe_guides()}; allowed: {c} channel(s), in that order"
                )
            return list(range(c))
        self.check_guides([(str(n), None) for n in names])
        pos = {str(n): i for i, n in enumerate(names)}
        return [pos[n] for n in self.guide_names]

    def normalise_guide(self, guide: torch.Tensor) -> torch.Tensor:
        """``(g - guide_mean) / guide_std`` per channel of ``(..., C, ny, nx)`` guides in
        training order."""
        import torch

        mean = torch.tensor(self.guide_mean, dtype=guide.dtype, device=guide.device)
        std = torch.tensor(self.guide_std, dtype=guide.dtype, device=guide.device)
        return (guide - mean[:, None, None]) / std[:, None, None]

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
        """Everything but the weights, as plain Python types (``guides``: a list of
        ``{"name", "units", "mean", "std"}``, only for a network trained with guides)."""
        meta: dict[str, Any] = {
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
        if self.guide_names:  # without guides, the metadata of format version 1
            meta["guides"] = [
                {"name": n, "units": u, "mean": float(m), "std": float(s)}
                for n, u, m, s in zip(
                    self.guide_names, self.guide_units, self.guide_mean, self.guide_std, strict=True
                )
            ]
        return meta

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
            "format_version": _FORMAT_VERSION_GUIDES if self.guide_names else _FORMAT_VERSION,
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
        version = obj.get("format_version", _FORMAT_VERSION)
        if not isinstance(version, int) or version > _FORMAT_VERSION_GUIDES:
            raise ModelFileError(
                f"model file {str(p)!r} has format_version={version!r}, newer than this xsr "
                f"reads (allowed: up to {_FORMAT_VERSION_GUIDES}). Fix: upgrade xsr "
                "(pip install -U xsr)"
            )
        try:
            meta = obj["metadata"]
            bounds = None if meta["bounds"] is None else tuple(meta["bounds"])
            guides = list(meta.get("guides") or [])
            g_names = tuple(str(g["name"]) for g in guides)
            g_units = tuple(None if g["units"] is None else str(g["units"]) for g in guides)
            g_mean = tuple(float(g["mean"]) for g in guides)
            g_std = tuple(float(g["std"]) for g in guides)
            if int(meta["options"].get("guide_channels", 0)) != len(guides):
                raise KeyError(
                    f"guide_channels={meta['options'].get('guide_channels', 0)} but "
                    f"{len(guides)} guide(s) described"
                )
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
            guide_names=g_names,
            guide_units=g_units,
            guide_mean=g_mean,
            guide_std=g_std,
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
