"""Downsampling enforcement: block means and the conservation operators.

Pure array code (torch, with numpy accepted and returned): no xarray here.  A fine field
``y`` of shape ``(..., ny*f, nx*f)`` and a coarse field ``x`` of shape ``(..., ny, nx)`` are
linked by the (optionally area-weighted, NaN-masked) block mean

.. math:: \\bar y_I = \\frac{\\sum_{i \\in I} w_i m_i y_i}{\\sum_{i \\in I} w_i m_i}

where ``I`` runs over the ``f*f`` fine cells of coarse cell ``I``, ``w`` are cell areas and
``m`` is 1 on valid (finite, unmasked) fine cells.  :func:`enforce` corrects ``y`` so that
``block_mean(enforce(y, x)) == x`` to round-off (Geiss & Hardin 2023, "Strictly enforcing
invertibility and conservation in CNN-based super resolution"):

* ``"additive"``: :math:`y_i + (x_I - \\bar y_I)`
* ``"multiplicative"``: :math:`y_i\\, x_I / \\bar y_I` for non-negative fields (``y`` is
  clipped at 0 first; a block whose mean is 0 becomes the uniform value :math:`x_I`)
* ``"bounded"``: :math:`y_i + (x_I - \\bar y_I)(\\sigma - y_i)/(\\sigma - \\bar y_I)` with
  :math:`\\sigma` the upper bound where :math:`x_I > \\bar y_I` and the lower bound otherwise
  (``y`` is clipped to the bounds first; a missing bound, ``None``, gives the additive step on
  that side, which cannot cross the other bound).

Every function is differentiable (torch autograd) and runs on any device.  Internally the
sums are accumulated in float64 (except on devices without float64, such as Apple MPS) and the
result is cast back to the input's dtype: float64 fields conserve to <= 1e-12 and float32
fields to <= 2e-6 relative to the largest coarse magnitude (typically about 1e-7).
"""

from __future__ import annotations

import numbers
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import numpy as np
import torch

from .exceptions import BoundsError, FactorError, InputValueError, OptionError, ShapeError

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "CONSERVE_MODES",
    "ConserveMode",
    "Enforce",
    "block_mean",
    "check_bounds",
    "check_coarse",
    "check_conserve",
    "check_factor",
    "check_options",
    "conservation_error",
    "enforce",
    "enforce_into",
    "upsample",
]

ConserveMode = Literal["additive", "multiplicative", "bounded"]
CONSERVE_MODES: tuple[str, ...] = ("additive", "multiplicative", "bounded")

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)
Bounds = tuple[float | None, float | None]


# --------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------
def check_factor(factor: Any) -> int:
    """Return ``factor`` as an ``int`` >= 2, or raise :class:`~xsr.exceptions.FactorError`.

    Integral floats such as ``4.0`` are accepted; booleans, fractions, zero, one and negative
    numbers are not.
    """
    if isinstance(factor, bool | np.bool_) or not isinstance(factor, numbers.Real):
        raise FactorError(
            f"factor must be an integer >= 2, got {factor!r} ({type(factor).__name__}); "
            "pass e.g. factor=4"
        )
    if not float(factor).is_integer():
        raise FactorError(
            f"factor must be an integer >= 2, got {factor!r}; for non-integer ratios regrid "
            "first (for example with xesmf or xarray's interp) and downscale by an integer"
        )
    f = int(float(factor))
    if f < 2:
        raise FactorError(
            f"factor must be an integer >= 2, got {factor!r}; factor is the number of fine "
            "cells per coarse cell along each axis (factor=4 turns 1 degree into 0.25 degree)"
        )
    return f


def check_conserve(conserve: Any) -> ConserveMode | None:
    """Validate a conservation mode (``None``, ``"none"`` or one of :data:`CONSERVE_MODES`)."""
    if conserve is None or (isinstance(conserve, str) and conserve.lower() == "none"):
        return None
    if isinstance(conserve, str) and conserve in CONSERVE_MODES:
        return conserve  # type: ignore[return-value]
    raise OptionError(
        f"conserve must be one of {list(CONSERVE_MODES)} or None, got {conserve!r}; use "
        "'additive' for signed fields, 'multiplicative' for non-negative ones (precipitation) "
        "and 'bounded' with bounds=(lo, hi) for fields with physical limits"
    )


def check_bounds(bounds: Any) -> Bounds:
    """Validate ``bounds=(lower, upper)``; either may be ``None`` but not both."""
    if bounds is None:
        raise OptionError(
            "conserve='bounded' needs bounds=(lower, upper), got bounds=None; pass e.g. "
            "bounds=(0, None) for a non-negative field or bounds=(0, 1) for a fraction"
        )
    try:
        lo, hi = bounds
    except (TypeError, ValueError):
        raise OptionError(
            f"bounds must be a pair (lower, upper) with None for a missing side, got {bounds!r}"
        ) from None
    lo = None if lo is None else float(lo)
    hi = None if hi is None else float(hi)
    if lo is None and hi is None:
        raise OptionError(
            "bounds=(None, None) bounds nothing; give at least one side, or use conserve='additive'"
        )
    for v in (lo, hi):
        if v is not None and not np.isfinite(v):
            raise OptionError(f"bounds must be finite numbers or None, got {bounds!r}")
    if lo is not None and hi is not None and not lo < hi:
        raise OptionError(f"bounds must satisfy lower < upper, got {bounds!r}")
    return lo, hi


def check_options(
    factor: Any, conserve: Any, bounds: Any
) -> tuple[int, ConserveMode | None, Bounds | None]:
    """Validate ``factor``, ``conserve`` and ``bounds`` together.

    Returns
    -------
    (factor, mode, bounds)
        ``bounds`` is None unless ``mode == "bounded"``; bounds given with another mode are
        an error rather than silently ignored.
    """
    f = check_factor(factor)
    mode = check_conserve(conserve)
    if mode != "bounded" and bounds is not None:
        raise OptionError(
            f"bounds={bounds!r} is only used with conserve='bounded', got conserve={conserve!r}"
        )
    return f, mode, check_bounds(bounds) if mode == "bounded" else None


def check_coarse(
    coarse: np.ndarray | torch.Tensor,
    mode: ConserveMode | None,
    *,
    bounds: Bounds | None = None,
    name: str = "input",
) -> None:
    """Raise if ``coarse`` cannot be conserved under ``mode``.

    Checks for infinite values, negative values with ``"multiplicative"`` and values outside
    ``bounds`` with ``"bounded"``.  NaN values are allowed (they are masked cells).
    """
    x = coarse.detach() if isinstance(coarse, torch.Tensor) else torch.as_tensor(coarse)
    if not (x.is_floating_point() or x.is_complex()):
        return
    if bool(torch.isinf(x).any()):
        n = int(torch.isinf(x).sum())
        raise InputValueError(
            f"{name} has {n} infinite value(s); only finite values and NaN (masked cells) are "
            "allowed; replace them, e.g. with .where(np.isfinite(da))"
        )
    if mode not in ("multiplicative", "bounded"):
        return
    finite = x[torch.isfinite(x)]
    if finite.numel() == 0:
        return
    if mode == "multiplicative":
        vmin = float(finite.min())
        if vmin < 0:
            raise InputValueError(
                f"conserve='multiplicative' needs a non-negative {name}, but its minimum is "
                f"{vmin:g}; use conserve='additive' for signed fields, or "
                "conserve='bounded' with bounds=(lo, None)"
            )
    elif mode == "bounded":
        lo, hi = check_bounds(bounds)
        vmin, vmax = float(finite.min()), float(finite.max())
        if (lo is not None and vmin < lo) or (hi is not None and vmax > hi):
            raise BoundsError(
                f"{name} lies in [{vmin:g}, {vmax:g}], outside bounds=({lo}, {hi}); a "
                "conserved fine field cannot stay inside bounds its coarse means violate: "
                "widen the bounds or clip the input first"
            )


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
def _to_torch(a: Any) -> tuple[torch.Tensor, bool]:
    if isinstance(a, torch.Tensor):
        return a, False
    return torch.from_numpy(np.ascontiguousarray(a)), True


def _work_dtype(t: torch.Tensor) -> torch.dtype:
    """float64 for accumulation, except on devices without float64 support."""
    if t.device.type == "mps":
        return torch.float32
    return torch.float64


def _check_shapes(fine: torch.Tensor, coarse: torch.Tensor | None, factor: int) -> None:
    if fine.ndim < 2:
        raise ShapeError(f"fine field must have at least 2 dimensions (y, x), got {fine.ndim}")
    ny, nx = fine.shape[-2:]
    if ny % factor or nx % factor:
        raise ShapeError(
            f"fine shape {tuple(fine.shape[-2:])} is not divisible by factor {factor}; "
            "trim or pad the grid to a multiple of the factor (see coarsen(boundary=...))"
        )
    if coarse is not None and tuple(coarse.shape[-2:]) != (ny // factor, nx // factor):
        raise ShapeError(
            f"coarse shape {tuple(coarse.shape[-2:])} does not match fine shape "
            f"{tuple(fine.shape[-2:])} / factor {factor} = ({ny // factor}, {nx // factor})"
        )


def upsample(coarse: ArrayT, factor: int) -> ArrayT:
    """Repeat each coarse cell ``factor`` times along the last two axes.

    Parameters
    ----------
    coarse : array or tensor, shape ``(..., ny, nx)``
    factor : int

    Returns
    -------
    array or tensor, shape ``(..., ny*factor, nx*factor)``, same type as ``coarse``.
    """
    factor = check_factor(factor)
    t, was_np = _to_torch(coarse)
    *lead, ny, nx = t.shape
    out = (
        t[..., :, None, :, None]
        .expand(*lead, ny, factor, nx, factor)
        .reshape(*lead, ny * factor, nx * factor)
    )
    return out.numpy() if was_np else out  # type: ignore[return-value]


def _blocks(t: torch.Tensor, factor: int) -> torch.Tensor:
    """View ``(..., ny*f, nx*f)`` as ``(..., ny, f, nx, f)`` (no copy when contiguous)."""
    *lead, ny, nx = t.shape
    return t.reshape(*lead, ny // factor, factor, nx // factor, factor)


def _spread(c: torch.Tensor) -> torch.Tensor:
    """View coarse ``(..., ny, nx)`` as ``(..., ny, 1, nx, 1)`` to broadcast over blocks."""
    return c[..., :, None, :, None]


class _BlockStats:
    """Valid cells and weights of a fine field in the block view, with fast paths.

    ``valid`` is None when every fine cell is valid and ``w`` is None for uniform weights,
    so that the common cases (no NaN, no mask, uniform or broadcast weights) never
    materialise full-size temporaries.
    """

    def __init__(
        self, y6: torch.Tensor, factor: int, weights: Any, mask: Any, work: torch.dtype
    ) -> None:
        isfin = torch.isfinite(y6)
        self.finite = isfin  # finite cells of y6, before the mask
        self.mask: torch.Tensor | None = None  # the mask in the block view
        fine_hw = (y6.shape[-4] * factor, y6.shape[-2] * factor)
        if mask is not None:
            m, _ = _to_torch(mask)
            m = m.to(device=y6.device, dtype=torch.bool)
            try:
                m = torch.broadcast_to(m, (*m.shape[:-2], *fine_hw))
                self.mask = _blocks(m, factor)
                isfin = isfin & self.mask
            except RuntimeError:
                raise ShapeError(
                    f"mask of shape {tuple(m.shape)} does not fit the fine field's last two "
                    f"dimensions {fine_hw}"
                ) from None
        valid: torch.Tensor | None = None if bool(isfin.all()) else isfin
        w6: torch.Tensor | None = None
        if weights is not None:
            wt, _ = _to_torch(weights)
            wt = wt.to(device=y6.device, dtype=work)
            fine_shape = (*y6.shape[:-4], y6.shape[-4] * factor, y6.shape[-2] * factor)
            try:
                torch.broadcast_shapes(wt.shape, fine_shape)
            except RuntimeError:
                raise ShapeError(
                    f"weights of shape {tuple(wt.shape)} do not broadcast to the fine field's "
                    f"shape {fine_shape}"
                ) from None
            if wt.ndim < 2:
                wt = torch.broadcast_to(wt, fine_shape[-2:])
            if wt.shape[-2] == 1 or wt.shape[-1] == 1:
                wt = torch.broadcast_to(wt, (*wt.shape[:-2], *fine_shape[-2:]))
            w6 = _blocks(wt, factor)
        self.valid = valid
        self.w = w6
        self.work = work

    def masked(self, y6: torch.Tensor) -> torch.Tensor:
        """``y6`` with invalid cells set to 0."""
        if self.valid is None:
            return y6
        return torch.where(self.valid, y6, torch.zeros((), dtype=y6.dtype, device=y6.device))

    def mean(self, y6: torch.Tensor) -> torch.Tensor:
        """Weighted mean over valid cells of each block: ``(..., ny, nx)``, NaN if none."""
        y0 = self.masked(y6)
        if self.w is None:
            num = y0.sum(dim=(-3, -1))
            den = (
                torch.full((), y6.shape[-3] * y6.shape[-1], dtype=y6.dtype, device=y6.device)
                if self.valid is None
                else self.valid.sum(dim=(-3, -1)).to(y6.dtype)
            )
        else:
            wv = self.w if self.valid is None else self.masked(self.w.expand_as(y6))
            num = (y0 * wv).sum(dim=(-3, -1))
            den = wv.sum(dim=(-3, -1))
        ok = den > 0
        safe = torch.where(ok, den, torch.ones_like(den))
        nan = torch.full((), float("nan"), dtype=y6.dtype, device=y6.device)
        return torch.where(ok, num / safe, nan)


def _operator(
    y6: torch.Tensor,
    xw: torch.Tensor,
    stats: _BlockStats,
    mode: ConserveMode | None,
    lo: float | None,
    hi: float | None,
) -> torch.Tensor:
    """The enforcement operator on the block view, NaN where no value belongs.

    Parameters
    ----------
    y6 : torch.Tensor, shape ``(..., ny, f, nx, f)``
        First guess in the work dtype.
    xw : torch.Tensor, shape ``(..., ny, nx)``
        Coarse field in the work dtype (NaN: masked cell).
    stats : _BlockStats
        Valid cells and weights of ``y6``.
    mode, lo, hi
        Validated operator and bounds.

    Returns
    -------
    torch.Tensor, shape ``(..., ny, f, nx, f)``, work dtype
        May be ``y6`` itself (``mode=None``, nothing masked).
    """
    work, dev = y6.dtype, y6.device
    coarse_ok = torch.isfinite(xw)
    zero = torch.zeros((), dtype=work, device=dev)

    if mode is None:
        out6 = y6
    elif mode == "additive":
        d = torch.where(coarse_ok, xw - stats.mean(y6), zero)
        out6 = y6 + _spread(d)
    elif mode == "multiplicative":
        yc = torch.clamp(stats.masked(y6), min=0.0)
        ybar = stats.mean(yc)
        pos = ybar > 0
        ratio = torch.where(pos, xw / torch.where(pos, ybar, torch.ones_like(ybar)), zero)
        out6 = torch.where(_spread(pos), yc * _spread(ratio), _spread(xw))
    else:  # bounded
        yc = stats.masked(y6)
        if lo is not None or hi is not None:
            yc = torch.clamp(yc, min=lo, max=hi)
        ybar = stats.mean(yc)
        d = torch.where(coarse_ok, xw - ybar, zero)
        up = d > 0
        has_sigma = up if hi is not None else torch.zeros_like(up)
        if lo is not None:
            has_sigma = has_sigma | ~up
        sigma = torch.where(
            up,
            torch.full((), hi if hi is not None else 0.0, dtype=work, device=dev),
            torch.full((), lo if lo is not None else 0.0, dtype=work, device=dev),
        )
        den = sigma - ybar
        use = has_sigma & (den != 0) & (d != 0)
        a = torch.where(use, d / torch.where(use, den, torch.ones_like(den)), zero)
        shift = torch.where(has_sigma, zero, d)  # no bound on that side: additive step
        out6 = yc + _spread(a) * (_spread(sigma) - yc) + _spread(shift)

    keep = _spread(coarse_ok)
    if stats.valid is not None:
        keep = keep & stats.valid
    if not bool(keep.all()):
        out6 = torch.where(keep, out6, torch.full((), float("nan"), dtype=work, device=dev))
    return out6


# --------------------------------------------------------------------------------------------
# public operators
# --------------------------------------------------------------------------------------------
def block_mean(
    fine: ArrayT,
    factor: int,
    *,
    weights: Any = None,
    mask: Any = None,
) -> ArrayT:
    """Mean over each ``factor x factor`` block of the last two axes.

    Parameters
    ----------
    fine : array or tensor, shape ``(..., ny*factor, nx*factor)``
        Fine field; NaN cells are left out of the mean.
    factor : int
        Block size along each axis (>= 2).
    weights : array or tensor, optional
        Cell weights (typically areas) broadcastable to ``fine.shape``.
    mask : array or tensor of bool, optional
        ``True`` on valid fine cells; cells with ``False`` are left out of the mean.

    Returns
    -------
    array or tensor, shape ``(..., ny, nx)``, same type and dtype as ``fine``
        NaN where a block has no valid cell.
    """
    factor = check_factor(factor)
    t, was_np = _to_torch(fine)
    _check_shapes(t, None, factor)
    work = _work_dtype(t)
    y6 = _blocks(t.to(work), factor)
    out = _BlockStats(y6, factor, weights, mask, work).mean(y6).to(t.dtype)
    return out.numpy() if was_np else out  # type: ignore[return-value]


def enforce(
    fine: ArrayT,
    coarse: ArrayT,
    factor: int,
    mode: ConserveMode | None = "additive",
    *,
    weights: Any = None,
    mask: Any = None,
    bounds: Sequence[float | None] | None = None,
    validate: bool = True,
) -> ArrayT:
    """Correct ``fine`` so that its block means reproduce ``coarse`` exactly.

    Parameters
    ----------
    fine : array or tensor, shape ``(..., ny*factor, nx*factor)``
        First-guess fine field (for example an interpolation or a network's output).
    coarse : array or tensor, shape ``(..., ny, nx)``
        Coarse field to conserve; NaN marks masked (land) cells.
    factor : int
        Refinement factor along each axis (>= 2).
    mode : {"additive", "multiplicative", "bounded", None}
        Enforcement operator (see the module docstring); ``None`` returns ``fine`` unchanged
        (but still masked).
    weights : array or tensor, optional
        Fine cell weights (areas), broadcastable to ``fine.shape``.
    mask : array or tensor of bool, optional
        ``True`` on fine cells that may hold a value.  Fine cells that are masked, NaN in
        ``fine``, or inside a NaN coarse cell are NaN in the output.
    bounds : (lower, upper), optional
        For ``mode="bounded"``; either side may be ``None``.
    validate : bool, default True
        Check ``coarse`` for infinities, negatives (multiplicative) and bound violations
        first.  Turn off inside training loops to avoid a device synchronisation.

    Returns
    -------
    array or tensor, shape ``(..., ny*factor, nx*factor)``, same type and dtype as ``fine``
        ``block_mean(out, factor, weights=weights, mask=mask) == coarse`` wherever ``coarse``
        is finite and its block has at least one valid fine cell.
    """
    factor = check_factor(factor)
    mode = check_conserve(mode)
    y, was_np = _to_torch(fine)
    x, _ = _to_torch(coarse)
    x = x.to(device=y.device)
    _check_shapes(y, x, factor)
    if not y.is_floating_point():
        raise InputValueError(f"fine field must be floating point, got dtype {y.dtype}")
    lo, hi = check_bounds(bounds) if mode == "bounded" else (None, None)
    if validate:
        check_coarse(x, mode, bounds=(lo, hi) if mode == "bounded" else None, name="coarse")

    work = _work_dtype(y)
    try:
        lead = torch.broadcast_shapes(y.shape[:-2], x.shape[:-2])
    except RuntimeError:
        raise ShapeError(
            f"leading dimensions of fine {tuple(y.shape)} and coarse {tuple(x.shape)} "
            "do not broadcast"
        ) from None
    y6 = _blocks(y.to(work), factor).expand(*lead, -1, -1, -1, -1)
    xw = x.to(work).expand(*lead, *x.shape[-2:])
    stats = _BlockStats(y6, factor, weights, mask, work)
    out6 = _operator(y6, xw, stats, mode, lo, hi)
    out = out6.reshape(*lead, *y.shape[-2:]).to(y.dtype)
    return out.numpy() if was_np else out  # type: ignore[return-value]


def enforce_into(
    out: torch.Tensor,
    fine: torch.Tensor,
    coarse: torch.Tensor,
    factor: int,
    mode: ConserveMode | None = "additive",
    *,
    weights: Any = None,
    mask: Any = None,
    bounds: Sequence[float | None] | None = None,
) -> int:
    """:func:`enforce` written into ``out``: no full-size temporary beyond ``out`` itself.

    The operator works block by block, so a large field can be enforced strip by strip of
    whole coarse rows, each written into its rows of one preallocated result (this is how
    :func:`~xsr.methods.pipeline.downscale_array` keeps its memory near the size of the
    output).  The additive operator on a finite first guess without a mask takes a fast
    path: one weighted block sum, accumulated in float64, and one pass ``out = fine + d``
    (``d`` broadcast over the blocks, NaN in masked coarse cells), with no temporary of the
    fine field's size when the weights are uniform or separable with uniform columns.  Not
    differentiable; ``coarse`` is not validated (see :func:`check_coarse`).

    Parameters
    ----------
    out : torch.Tensor, shape ``(..., ny*factor, nx*factor)``
        Where the result goes, in its own dtype (may be ``fine`` itself: then ``fine`` is
        corrected in place).
    fine : torch.Tensor, shape ``(..., ny*factor, nx*factor)``
        First guess, floating point, any strides (a cropped view is fine).
    coarse : torch.Tensor, shape ``(ny, nx)`` or ``(..., ny, nx)``
        Coarse field; NaN marks masked cells.  Its leading dims broadcast to ``fine``'s.
    factor : int
        Refinement factor (>= 2).
    mode : {"additive", "multiplicative", "bounded", None}
    weights : tensor, pair of tensors, or None
        Fine cell weights broadcastable to ``fine.shape``, or separable factors ``(w_y,
        w_x)`` of shapes ``(ny*factor,)`` and ``(nx*factor,)`` (``w = w_y[:, None] *
        w_x[None, :]``, see :func:`xsr.grid.cell_area_factors`).
    mask : array or tensor of bool, optional
        Valid fine cells, broadcastable to ``fine.shape``.
    bounds : (lower, upper), optional
        For ``mode="bounded"``.

    Returns
    -------
    int
        The number of non-finite cells of ``fine`` where a value belongs (coarse cell
        finite, ``mask`` True): 0 for a sound first guess.  Such cells are left out of the
        block means and are NaN in ``out``.
    """
    factor = check_factor(factor)
    mode = check_conserve(mode)
    lo, hi = check_bounds(bounds) if mode == "bounded" else (None, None)
    _check_shapes(fine, coarse, factor)
    if tuple(out.shape) != tuple(fine.shape):
        raise ShapeError(
            f"out has shape {tuple(out.shape)}, but the fine field has {tuple(fine.shape)}; "
            "give an output of the fine field's shape"
        )
    work = _work_dtype(fine)
    o6 = out.unflatten(-1, (out.shape[-1] // factor, factor))
    o6 = o6.unflatten(-3, (out.shape[-2] // factor, factor))  # a view, whatever the strides
    xw = coarse.to(device=fine.device, dtype=work).expand(*fine.shape[:-2], *coarse.shape[-2:])
    if mode == "additive" and mask is None and _additive_into(out, fine, xw, factor, weights):
        return 0
    if isinstance(weights, tuple):
        weights = weights[0].to(work)[:, None] * weights[1].to(work)[None, :]
    y6 = _blocks(fine.to(work), factor)
    stats = _BlockStats(y6, factor, weights, mask, work)
    bad = 0
    if stats.valid is not None and not bool(stats.finite.all()):
        lost = ~stats.finite & _spread(torch.isfinite(xw))
        if stats.mask is not None:
            lost = lost & stats.mask
        bad = int(lost.sum())
    o6.copy_(_operator(y6, xw, stats, mode, lo, hi))
    return bad


def _additive_into(
    out: torch.Tensor, fine: torch.Tensor, xw: torch.Tensor, factor: int, weights: Any
) -> bool:
    """The additive operator's fast path of :func:`enforce_into`; False if it does not apply.

    It applies when every block sum of ``fine`` is finite (so ``fine`` is) and every block
    has positive total weight; then ``out = fine + (xw - mean)`` over each block, NaN where
    ``xw`` is.  Every pass runs along whole fine rows (the contiguous axis): the sums over the
    rows of a block first (a batched matrix product with the row weights), then over the
    columns on an array ``factor`` times smaller.
    """
    work = xw.dtype
    f = factor
    y = fine if fine.dtype == work else fine.to(work)  # a strip: float32 sums in float64
    nyf, nxf = y.shape[-2:]
    ny, nx = nyf // f, nxf // f
    y3 = y.unflatten(-2, (ny, f))  # (..., ny, f, NX), a view
    if weights is None:
        cols = y3.sum(dim=-2)  # (..., ny, NX)
        num = cols.unflatten(-1, (nx, f)).sum(dim=-1)
        den = torch.full((), float(f * f), dtype=work, device=y.device)
    elif isinstance(weights, tuple):
        wy = weights[0].to(device=y.device, dtype=work).reshape(ny, 1, f)
        wx = weights[1].to(device=y.device, dtype=work).reshape(nx, f)
        cols = torch.matmul(wy, y3).squeeze(-2)  # (..., ny, NX): sum_a wy[a] y[a, :]
        num = (cols.unflatten(-1, (nx, f)) * wx).sum(dim=-1)
        den = wy.sum(dim=-1) * wx.sum(dim=-1)  # (ny, 1) * (nx,)
    else:
        wt = weights.to(device=y.device, dtype=work)
        w6 = _blocks(torch.broadcast_to(wt, (*wt.shape[:-2], nyf, nxf)), f)
        num = (_blocks(y, f) * w6).sum(dim=(-3, -1))
        den = w6.sum(dim=(-3, -1))
    if not bool(torch.isfinite(num).all()) or not bool((den > 0).all()):
        return False
    d = xw - num / den  # (..., ny, nx); NaN where the coarse cell is masked
    dx = d[..., None].expand(*d.shape, f).reshape(*d.shape[:-1], nxf)  # (..., ny, NX)
    if out.dtype == fine.dtype:  # one dtype (float32 fine: d rounded to float32 first)
        y3, dx = fine.unflatten(-2, (ny, f)), dx.to(fine.dtype)
    torch.add(y3, dx.unsqueeze(-2), out=out.unflatten(-2, (ny, f)))  # a view of out
    return True


def conservation_error(
    fine: Any,
    coarse: Any,
    factor: int,
    *,
    weights: Any = None,
    mask: Any = None,
) -> float:
    """Largest conservation error relative to the coarse field's magnitude.

    ``max |block_mean(fine) - coarse| / max |coarse|`` over cells where both are finite,
    computed in float64.  Returns ``nan`` when no cell is finite, and raises if ``fine`` is NaN
    in a block where ``coarse`` is finite and no valid fine cell remains.
    """
    f = torch.as_tensor(np.asarray(fine) if not isinstance(fine, torch.Tensor) else fine)
    c = torch.as_tensor(np.asarray(coarse) if not isinstance(coarse, torch.Tensor) else coarse)
    f = f.detach().to("cpu", torch.float64)
    c = c.detach().to("cpu", torch.float64)
    bm = block_mean(f, factor, weights=weights, mask=mask)
    both = torch.isfinite(c)
    if not bool(both.any()):
        return float("nan")
    lost = both & ~torch.isfinite(bm)
    if bool(lost.any()):
        return float("inf")
    scale = float(c[both].abs().max())
    err = float((bm - c)[both].abs().max())
    return err / scale if scale > 0 else err


class Enforce(torch.nn.Module):
    """The enforcement operator as a network layer.

    Use it as the last layer of a super-resolution network: ``forward(fine, coarse)`` returns
    ``enforce(fine, coarse, factor, mode, ...)`` and is differentiable.

    Parameters
    ----------
    factor : int
        Refinement factor (>= 2).
    mode : {"additive", "multiplicative", "bounded", None}, default "additive"
    bounds : (lower, upper), optional
        For ``mode="bounded"``.
    weights : tensor, optional
        Fine cell weights broadcastable to the output, stored as a buffer (moves with
        ``.to(device)``).
    mask : tensor of bool, optional
        Valid fine cells, stored as a buffer.
    validate : bool, default False
        Check the coarse input on every call (costs a device synchronisation).

    Examples
    --------
    >>> import torch
    >>> from xsr.conserve import Enforce, block_mean
    >>> layer = Enforce(4)
    >>> x = torch.rand(2, 1, 8, 8, dtype=torch.float64)
    >>> y = layer(torch.rand(2, 1, 32, 32, dtype=torch.float64), x)
    >>> bool(torch.allclose(block_mean(y, 4), x, rtol=0, atol=1e-12))
    True
    """

    weights: torch.Tensor | None
    mask: torch.Tensor | None

    def __init__(
        self,
        factor: int,
        mode: ConserveMode | None = "additive",
        *,
        bounds: Sequence[float | None] | None = None,
        weights: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        validate: bool = False,
    ) -> None:
        super().__init__()
        self.factor = check_factor(factor)
        self.mode = check_conserve(mode)
        self.bounds = check_bounds(bounds) if self.mode == "bounded" else None
        self.validate = validate
        self.register_buffer("weights", None if weights is None else torch.as_tensor(weights))
        self.register_buffer("mask", None if mask is None else torch.as_tensor(mask))

    def forward(self, fine: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        import torch

        # at least float32 and outside any autocast region: a network run in bfloat16 or
        # float16 still returns fields that conserve to float32 round-off (in bfloat16
        # they were off by 1e-3)
        dt = torch.promote_types(torch.promote_types(fine.dtype, coarse.dtype), torch.float32)
        with torch.autocast(device_type=fine.device.type, enabled=False):
            return enforce(
                fine.to(dt),
                coarse.to(dt),
                self.factor,
                self.mode,
                weights=self.weights,
                mask=self.mask,
                bounds=self.bounds,
                validate=self.validate,
            )

    def extra_repr(self) -> str:
        b = f", bounds={self.bounds}" if self.bounds is not None else ""
        return f"factor={self.factor}, mode={self.mode!r}{b}"
