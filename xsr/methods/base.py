"""The method interface: what a downscaling method is and what it returns.

A *method* turns a coarse field ``(..., ny, nx)`` into a first-guess fine field
``(..., ny*f, nx*f)`` (:meth:`Method.upscale`); the pipeline
(:func:`xsr.methods.pipeline.downscale_array`) wraps every method with the same validation,
NaN handling, periodic halos and the enforcement operator of :mod:`xsr.conserve`.
This module holds the interface only (it imports nothing of xsr at run time).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    import torch

    from ..conserve import ConserveMode

__all__ = ["Method", "Upscaled"]


@dataclass
class Upscaled:
    """What :meth:`Method.upscale` may return instead of a tensor: a field and its samples.

    Attributes
    ----------
    fine : torch.Tensor, shape ``(..., ny*f, nx*f)``
        First-guess fine field (for an ensemble: the mean of the members).
    members : torch.Tensor or None, shape ``(M, ..., ny*f, nx*f)``
        Samples (ensemble members) whose spread measures the uncertainty of ``fine``.
    """

    fine: torch.Tensor
    members: torch.Tensor | None = None


class Method:
    """Base class of downscaling methods.

    Subclasses set :attr:`name` and implement :meth:`upscale`.  Options are keyword arguments
    of ``__init__`` (so that ``get_method("bicubic", **options)`` validates them).

    Attributes
    ----------
    name : str
        Registry name.
    halo : int
        Coarse cells of context the method needs on each side of a tile (used for periodic
        wrapping and tiling).
    handles_nan : bool
        If False (the default) NaN cells are filled before :meth:`upscale` is called, from
        their valid neighbours, over ``halo + 1`` cells; the output is masked again afterwards.
    stochastic : bool
        True when the result depends on a random seed.
    uses_guide : bool
        True when the method takes fine-scale covariates (``guide=`` of
        :func:`xsr.downscale`): :meth:`upscale` then gets them as ``context["guide"]``.  A
        guide given to a method that does not use one is an error.
    requires_guide : bool
        True when the method cannot run without a guide: a call without one is refused
        before anything is computed.
    local : bool
        True when the output rows of each coarse row depend only on the coarse rows within
        :attr:`halo` of it, exactly (interpolation, not a network with a wider receptive
        field nor a fit over the whole field), and :meth:`upscale` returns a tensor.  The
        pipeline then upscales and enforces strip by strip of coarse rows, writing into the
        result as it goes, so that no full-size temporary is made.
    """

    name: ClassVar[str] = "method"
    halo: ClassVar[int] = 0
    handles_nan: ClassVar[bool] = False
    stochastic: ClassVar[bool] = False
    uses_guide: ClassVar[bool] = False
    requires_guide: ClassVar[bool] = False
    local: ClassVar[bool] = False

    def upscale(self, x: torch.Tensor, factor: int, **context: Any) -> torch.Tensor | Upscaled:
        """Return the first-guess fine field (and, optionally, samples of it).

        Parameters
        ----------
        x : torch.Tensor, shape ``(..., ny, nx)``
            Coarse field, floating point; NaN-free unless :attr:`handles_nan`.
        factor : int
            Refinement factor (>= 2).
        **context
            ``weights`` (fine cell weights, broadcastable to ``(..., ny*factor, nx*factor)``,
            or None) and ``mask`` (valid fine cells, or None), given to methods that handle
            NaN or use a guide; ``guide`` (methods with :attr:`uses_guide`, when the call
            has one): a finite tensor of shape ``(..., C, ny*factor, nx*factor)`` whose
            leading dims are those of ``x`` (a static guide is broadcast over them), in the
            dtype and on the device of ``x``, holding the ``C`` covariates on the fine grid
            (with the same periodic halo as ``x``); ``guide_names``: their names, a tuple of
            ``C`` strings.

        Returns
        -------
        torch.Tensor, shape ``(..., ny*factor, nx*factor)``, or Upscaled
            An :class:`Upscaled` carries samples ``(M, ..., ny*factor, nx*factor)`` besides
            the field; the pipeline enforces each of them and returns their spread.
        """
        raise NotImplementedError

    def options(self) -> dict[str, Any]:
        """The options this instance was built with (recorded in output attrs)."""
        return {}

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
        """Refuse a request this method cannot serve, before anything is computed.

        :func:`xsr.downscale` calls it once per variable.  The default accepts everything;
        methods bound to a factor or to units (trained networks) raise
        :class:`~xsr.exceptions.OptionError` naming the value, what is allowed and the fix.

        Parameters
        ----------
        factor : int
        conserve : {"additive", "multiplicative", "bounded", None}
        bounds : (lower, upper) or None
        units : str or None
            The variable's ``units`` attribute.
        name : str
            The variable, for messages.
        guides : tuple of (name, units), optional
            The guides of the call (given only when there are some, to methods that use
            guides), e.g. for a network to check that they are the ones it was trained on.
        """
        return None

    @property
    def extra_outputs(self) -> tuple[str, ...]:
        """Outputs besides the field: ``"std"`` (a spread) and ``"members"`` (the samples).

        A method that returns :class:`Upscaled` with members lists ``"std"`` here, and
        ``"members"`` too when the samples should be kept; :func:`xsr.downscale` then adds
        ``<var>_std`` (and ``<var>_members``) to a Dataset.
        """
        return ()

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options().items())
        return f"{type(self).__name__}({opts})"


#: Names that lived here before the pipeline moved to :mod:`xsr.methods.pipeline`.
_MOVED = ("Downscaled", "block_any", "downscale_array", "fill_nan")


def __getattr__(name: str) -> Any:
    """Deprecated access to the pipeline's names through this module (0.1 compatibility)."""
    if name in _MOVED:
        import importlib
        import warnings

        warnings.warn(
            f"xsr.methods.base.{name} moved to xsr.methods.pipeline.{name}; import it from "
            "there (xsr.methods.downscale_array stays as it is)",
            DeprecationWarning,
            stacklevel=2,
        )
        # by name at run time: the interface does not depend on the pipeline
        return getattr(importlib.import_module("xsr.methods.pipeline"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
