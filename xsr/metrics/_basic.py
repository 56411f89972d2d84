"""Point-wise and image scores of an estimate against a reference, as floats.

Array functions on numpy arrays, xarray DataArrays or anything :func:`numpy.asarray`
accepts.  The first argument ``a`` is the estimate (a downscaled field) and the second ``b``
the reference (the truth).

Every metric is NaN-aware: it is computed on the *finite overlap*, the cells where both
``a`` and ``b`` are finite, so land cells (NaN) are left out.  When the overlap is empty the
result is ``nan``.  Two DataArrays are matched by dimension name (``b`` is transposed to the
dimension order of ``a``); coordinates are not compared.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from ..exceptions import InputValueError, OptionError, ShapeError

__all__ = [
    "bias",
    "mae",
    "pearson",
    "psnr",
    "rmse",
    "ssim",
]

FloatArray = npt.NDArray[np.float64]

#: Constants of the SSIM index (Wang et al. 2004).
SSIM_K1 = 0.01
SSIM_K2 = 0.03


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
def _values(a: Any, b: Any, *, broadcast: bool = True) -> tuple[FloatArray, FloatArray]:
    """float64 arrays of ``a`` and ``b``, ``b`` transposed like ``a`` for DataArrays.

    With ``broadcast`` the two are broadcast against each other, else their shapes must match.
    """
    dims_a = getattr(a, "dims", None)
    dims_b = getattr(b, "dims", None)
    if (
        isinstance(dims_a, tuple)
        and isinstance(dims_b, tuple)
        and dims_a != dims_b
        and set(dims_a) == set(dims_b)
        and hasattr(b, "transpose")
    ):
        b = b.transpose(*dims_a)
    av = np.asarray(getattr(a, "values", a), dtype=np.float64)
    bv = np.asarray(getattr(b, "values", b), dtype=np.float64)
    if av.shape != bv.shape and not broadcast:
        raise ShapeError(
            f"the two fields have shapes {av.shape} and {bv.shape}; this metric compares "
            "fields of the same shape: compare fields on the same grid"
        )
    if av.shape != bv.shape:
        try:
            av, bv = np.broadcast_arrays(av, bv)
        except ValueError:
            raise ShapeError(
                f"the two fields have shapes {av.shape} and {bv.shape}, which do not "
                "broadcast; compare fields on the same grid (downscale or coarsen one first)"
            ) from None
    return av, bv


def _overlap(
    a: Any, b: Any, weights: Any = None
) -> tuple[FloatArray, FloatArray, FloatArray | None]:
    """Values of ``a`` and ``b`` (and weights) on the cells where both are finite, 1-D."""
    av, bv = _values(a, b)
    ok = np.isfinite(av) & np.isfinite(bv)
    w = None
    if weights is not None:
        wv = np.asarray(getattr(weights, "values", weights), dtype=np.float64)
        try:
            wv = np.broadcast_to(wv, av.shape)
        except ValueError:
            raise ShapeError(
                f"weights of shape {wv.shape} do not broadcast to the fields' shape {av.shape}"
            ) from None
        if not (np.isfinite(wv[ok]).all() and (wv[ok] >= 0).all()):
            raise OptionError("weights must be finite and non-negative on the compared cells")
        w = wv[ok]
    return av[ok], bv[ok], w


def _mean(x: FloatArray, w: FloatArray | None) -> float:
    if x.size == 0:
        return math.nan
    if w is None:
        return float(np.mean(x))
    total = float(w.sum())
    return float(np.dot(w, x) / total) if total > 0 else math.nan


def _data_range(data_range: float | None, reference: FloatArray) -> float:
    if data_range is None:
        data_range = float(reference.max() - reference.min())
        if data_range <= 0:
            raise InputValueError(
                "the reference field is constant on the compared cells, so its range (the "
                "default data_range) is 0; pass data_range= explicitly"
            )
        return data_range
    value = float(data_range)
    if not (math.isfinite(value) and value > 0):
        raise OptionError(f"data_range must be a finite positive number, got {data_range!r}")
    return value


# --------------------------------------------------------------------------------------------
# point-wise statistics
# --------------------------------------------------------------------------------------------
def rmse(a: Any, b: Any, *, weights: Any = None) -> float:
    """Root-mean-square difference ``sqrt(mean((a - b)**2))`` over the finite overlap.

    Parameters
    ----------
    a, b : array_like or DataArray, same shape (or broadcastable)
        Estimate and reference.
    weights : array_like, optional
        Non-negative weights broadcastable to the fields' shape (e.g. cell areas); default
        equal weights.

    Returns
    -------
    float
        In the units of the fields; ``nan`` if no cell is finite in both.
    """
    av, bv, w = _overlap(a, b, weights)
    return math.sqrt(_mean((av - bv) ** 2, w)) if av.size else math.nan


def mae(a: Any, b: Any, *, weights: Any = None) -> float:
    """Mean absolute difference ``mean(|a - b|)`` over the finite overlap.

    Parameters
    ----------
    a, b : array_like or DataArray, same shape (or broadcastable)
        Estimate and reference.
    weights : array_like, optional
        Non-negative weights broadcastable to the fields' shape.

    Returns
    -------
    float
        ``nan`` if no cell is finite in both.
    """
    av, bv, w = _overlap(a, b, weights)
    return _mean(np.abs(av - bv), w)


def bias(a: Any, b: Any, *, weights: Any = None) -> float:
    """Mean difference ``mean(a - b)`` (estimate minus reference) over the finite overlap.

    Parameters
    ----------
    a, b : array_like or DataArray, same shape (or broadcastable)
        Estimate and reference.
    weights : array_like, optional
        Non-negative weights broadcastable to the fields' shape.

    Returns
    -------
    float
        Positive when ``a`` is too large on average; ``nan`` if no cell is finite in both.
    """
    av, bv, w = _overlap(a, b, weights)
    return _mean(av - bv, w)


def pearson(a: Any, b: Any) -> float:
    """Pearson correlation coefficient of ``a`` and ``b`` over the finite overlap.

    Parameters
    ----------
    a, b : array_like or DataArray, same shape (or broadcastable)

    Returns
    -------
    float
        In ``[-1, 1]``; ``nan`` if fewer than 2 cells are finite in both or either field is
        constant there.
    """
    av, bv, _ = _overlap(a, b)
    if av.size < 2:
        return math.nan
    da = av - av.mean()
    db = bv - bv.mean()
    den = math.sqrt(float(np.dot(da, da)) * float(np.dot(db, db)))
    if den == 0:
        return math.nan
    return float(np.clip(np.dot(da, db) / den, -1.0, 1.0))


def psnr(a: Any, b: Any, *, data_range: float | None = None) -> float:
    """Peak signal-to-noise ratio ``10 log10(data_range**2 / MSE)`` in decibels.

    Parameters
    ----------
    a, b : array_like or DataArray, same shape (or broadcastable)
        Estimate and reference.
    data_range : float, optional
        The peak-to-peak range of the signal; default the range ``max(b) - min(b)`` of the
        reference over the finite overlap.

    Returns
    -------
    float
        ``inf`` when ``a == b`` on every compared cell; ``nan`` if no cell is finite in both.

    Raises
    ------
    InputValueError
        If ``data_range`` is not given and the reference is constant.
    """
    av, bv, _ = _overlap(a, b)
    if av.size == 0:
        return math.nan
    mse = float(np.mean((av - bv) ** 2))
    if mse == 0:
        return math.inf
    rng = _data_range(data_range, bv)
    return 10.0 * math.log10(rng * rng / mse)


# --------------------------------------------------------------------------------------------
# SSIM
# --------------------------------------------------------------------------------------------
def _window_sum(x: FloatArray, win: int) -> FloatArray:
    """Sums over every ``win x win`` window of the last two axes ("valid" positions).

    Separable running sums from cumulative sums; ``(..., ny, nx)`` gives
    ``(..., ny - win + 1, nx - win + 1)``.
    """
    for axis in (-1, -2):
        pad = [(0, 0)] * x.ndim
        pad[axis] = (1, 0)
        c = np.cumsum(np.pad(x, pad), axis=axis)
        n = c.shape[axis]
        x = np.take(c, np.arange(win, n), axis=axis) - np.take(c, np.arange(0, n - win), axis=axis)
    return x


def ssim(a: Any, b: Any, *, data_range: float | None = None, win: int = 7) -> float:
    """Mean structural similarity index (SSIM) of ``a`` against ``b``.

    For every ``win x win`` window of the last two axes,

    .. math::

        \\mathrm{SSIM} = \\frac{(2\\mu_a\\mu_b + C_1)(2\\sigma_{ab} + C_2)}
        {(\\mu_a^2 + \\mu_b^2 + C_1)(\\sigma_a^2 + \\sigma_b^2 + C_2)},
        \\quad C_1 = (K_1 L)^2,\\ C_2 = (K_2 L)^2,

    with ``K1 = 0.01``, ``K2 = 0.03`` (Wang et al. 2004), ``L = data_range``, local means
    and (sample, ``N - 1``) variances and covariance over a uniform window.  The result is the
    mean over all windows in which both fields are finite on every cell.  On NaN-free fields
    this equals scikit-image's ``structural_similarity`` with its defaults
    (``win_size=7``, uniform filter, sample covariance).

    Parameters
    ----------
    a, b : array_like or DataArray, shape ``(..., ny, nx)``
        Estimate and reference, the same shape; leading axes are separate images whose
        windows are pooled.
    data_range : float, optional
        The peak-to-peak range ``L``; default ``max(b) - min(b)`` over the cells finite in
        both fields.
    win : int, default 7
        Window edge (odd, >= 3).

    Returns
    -------
    float
        At most 1 (1 for identical fields); ``nan`` if no window is entirely finite in both.

    Raises
    ------
    ShapeError
        If the fields differ in shape or have fewer than 2 dimensions.
    OptionError
        If ``win`` is not an odd integer >= 3.
    InputValueError
        If ``data_range`` is not given and the reference is constant.

    References
    ----------
    Wang, Z., Bovik, A. C., Sheikh, H. R. and Simoncelli, E. P. (2004): Image quality
    assessment: from error visibility to structural similarity. IEEE Trans. Image Process.
    13(4), 600-612.
    """
    if isinstance(win, bool) or not isinstance(win, int | np.integer) or win < 3 or win % 2 == 0:
        raise OptionError(f"win must be an odd integer >= 3, got {win!r}; the usual value is 7")
    win = int(win)
    av, bv = _values(a, b, broadcast=False)
    if av.ndim < 2:
        raise ShapeError(f"ssim needs fields with at least 2 dimensions (y, x), got {av.shape}")
    ok = np.isfinite(av) & np.isfinite(bv)
    if not ok.any():
        return math.nan
    if min(av.shape[-2:]) < win:
        return math.nan
    rng = _data_range(data_range, bv[ok])
    # shift both fields by the same constant to reduce cancellation in the variances;
    # the means are shifted back before they enter the luminance term
    shift = float(bv[ok].mean())
    x = np.where(ok, av - shift, 0.0)
    y = np.where(ok, bv - shift, 0.0)
    n = win * win
    full = _window_sum(ok.astype(np.float64), win) == n
    if not full.any():
        return math.nan
    sx = _window_sum(x, win)[full]
    sy = _window_sum(y, win)[full]
    sxx = _window_sum(x * x, win)[full]
    syy = _window_sum(y * y, win)[full]
    sxy = _window_sum(x * y, win)[full]
    mx, my = sx / n, sy / n
    cov_norm = n / (n - 1.0)
    vx = (sxx / n - mx * mx) * cov_norm
    vy = (syy / n - my * my) * cov_norm
    vxy = (sxy / n - mx * my) * cov_norm
    mx += shift
    my += shift
    c1 = (SSIM_K1 * rng) ** 2
    c2 = (SSIM_K2 * rng) ** 2
    num = (2.0 * mx * my + c1) * (2.0 * vxy + c2)
    den = (mx * mx + my * my + c1) * (vx + vy + c2)
    return float(np.mean(num / den))
