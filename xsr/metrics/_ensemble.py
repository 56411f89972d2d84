"""Probabilistic scores: CRPS (ensemble, deterministic, Gaussian), spread-skill, rank histogram.

xarray in, xarray out (plain arrays in, floats or arrays out); ``dim=None`` averages over
every dimension of the truth; ``weights`` (e.g. ``"area"``) broadcast by dim name; NaN cells
are left out with the weights renormalised over the others; dask stays lazy.
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from typing import Any

import numpy as np
import xarray as xr
from scipy import special

from .._validate import check_bool, check_int
from ..exceptions import InputValueError, OptionError, ShapeError
from ._common import (
    DimArg,
    any_xarray,
    as_dataarray,
    conform,
    drop_clashes,
    finish,
    is_dask,
    reduce_dims,
    units_of,
    weighted_mean,
    weights_for,
)

__all__ = [
    "crps",
    "crps_ensemble",
    "crps_gaussian",
    "rank_histogram",
    "spread_error_correlation",
    "spread_skill",
]


# ------------------------------------------------------------------------------------------
# inputs
# ------------------------------------------------------------------------------------------
def _truth(truth: Any, like: xr.DataArray | None, drop: Hashable | None) -> xr.DataArray:
    """The truth as a DataArray; a plain array takes the dims of ``like`` (less ``drop``)."""
    if isinstance(truth, xr.DataArray):
        dims: tuple[Hashable, ...] = truth.dims
    elif like is not None:
        dims = tuple(d for d in like.dims if d != drop)
    else:
        dims = tuple(f"dim_{i}" for i in range(np.ndim(truth)))
    return as_dataarray(truth, dims=dims, what="truth")


def _member_dim(member_dim: Any) -> Hashable:
    if not isinstance(member_dim, str) or not member_dim:
        raise OptionError(
            f"member_dim must be the name of the ensemble dimension (a str), got "
            f"{member_dim!r}; the usual name is 'member'"
        )
    return member_dim


def _ensemble_inputs(
    ensemble: Any, truth: Any, member_dim: Any, *, min_members: int = 1
) -> tuple[xr.DataArray, xr.DataArray, Hashable]:
    """(ensemble, truth) as DataArrays, the ensemble conformed to the truth's grid.

    A plain-array ensemble has the members along its first axis.
    """
    mdim = _member_dim(member_dim)
    t = _truth(truth, ensemble if isinstance(ensemble, xr.DataArray) else None, mdim)
    if mdim in t.dims:
        raise ShapeError(
            f"the truth has the member dimension {mdim!r}; it must be one field, not an "
            f"ensemble: select one (truth.isel({mdim}=0)) or pass member_dim= the name of "
            "the ensemble's own dimension"
        )
    e = as_dataarray(ensemble, dims=(mdim, *t.dims), what="ensemble")
    if mdim not in e.dims:
        raise ShapeError(
            f"the ensemble has no dimension {mdim!r} (its dims: {[str(d) for d in e.dims]}); "
            "pass member_dim= the name of the dimension that holds the members"
        )
    if e.sizes[mdim] < min_members:
        raise ShapeError(
            f"the ensemble has {e.sizes[mdim]} member(s) along {mdim!r}; this needs at least "
            f"{min_members}"
        )
    e = conform(e, t, what="the ensemble", ref_what="the truth")
    t = drop_clashes(t, e)
    if is_dask(e) and len(e.chunks[e.get_axis_num(mdim)]) > 1:  # type: ignore[index]
        e = e.chunk({mdim: -1})
    return e, t, mdim


def _pair_inputs(
    forecast: Any, truth: Any, *, what: str = "forecast"
) -> tuple[xr.DataArray, xr.DataArray]:
    t = _truth(truth, forecast if isinstance(forecast, xr.DataArray) else None, None)
    f = conform(as_dataarray(forecast, dims=t.dims, what=what), t, what=what, ref_what="truth")
    return f, drop_clashes(t, f)


# ------------------------------------------------------------------------------------------
# CRPS
# ------------------------------------------------------------------------------------------
def _crps_ensemble_cells(ens: np.ndarray, obs: np.ndarray, fair: bool) -> np.ndarray:
    """CRPS of each cell: ``ens`` (..., M) members, ``obs`` (...); O(M log M) per cell.

    With the members sorted, ``sum_ij |x_i - x_j| = 2 sum_k (2k - M - 1) x_(k)``.  The
    differences to the observation are used in place of the members (the sum does not change)
    to keep the round-off small for fields far from 0.  A NaN member gives NaN.
    """
    d = np.sort(ens - obs[..., None], axis=-1)
    m = d.shape[-1]
    coef = 2.0 * np.arange(1, m + 1) - m - 1.0
    half_pairs = d @ coef  # (1/2) sum_ij |x_i - x_j|
    mean_abs = np.mean(np.abs(d), axis=-1)
    norm = m * (m - 1.0) if fair else m * float(m)
    return mean_abs - half_pairs / norm


def crps_ensemble(
    ensemble: Any,
    truth: Any,
    *,
    member_dim: str = "member",
    dim: DimArg = None,
    weights: Any = None,
    fair: bool = True,
) -> Any:
    """Continuous ranked probability score of an ensemble, averaged over ``dim``.

    For members :math:`x_1..x_M` and the truth :math:`y` of a cell,

    .. math::

        \\mathrm{CRPS} = \\frac{1}{M}\\sum_i |x_i - y|
        - \\frac{1}{2 M (M - 1)} \\sum_{i,j} |x_i - x_j|

    with ``fair=True`` (the fair estimator, Ferro 2014: unbiased for the CRPS of the
    distribution the members are drawn from, whatever ``M``), or with :math:`2M^2` in place of
    :math:`2M(M-1)` with ``fair=False`` (the CRPS of the ensemble's empirical distribution).
    Computed per cell from the sorted members, in :math:`O(M \\log M)` time and :math:`O(M)`
    memory.  Lower is better; in the units of the field.

    Parameters
    ----------
    ensemble : DataArray or array_like
        The members, with dimension ``member_dim`` besides the truth's dims (a plain array:
        members along the first axis, then the truth's axes).
    truth : DataArray or array_like
        The reference field.
    member_dim : str, default "member"
        The ensemble dimension.
    dim : str or list of str, optional
        Dims (of the truth) to average over; default all of them.  Integers name axes of
        plain-array input.
    weights : DataArray, array_like or "area", optional
        Non-negative weights broadcast by dim name (a plain array: against the truth's trailing
        dims), e.g. ``"area"`` for :func:`xsr.cell_areas` of the truth's grid.
    fair : bool, default True
        The fair estimator (needs ``M >= 2``); False for the standard one.

    Returns
    -------
    DataArray or float or ndarray
        Named ``"crps"``, over the dims not averaged (those of the truth not in ``dim`` and the
        ensemble's extra dims); a float for plain arrays reduced over every axis.  A cell with
        a NaN member or a NaN truth is left out; NaN where no cell is left.

    References
    ----------
    Ferro, C. A. T. (2014): Fair scores for ensemble forecasts. Q. J. R. Meteorol. Soc. 140,
    1917-1923.  Gneiting, T. and Raftery, A. E. (2007): Strictly proper scoring rules,
    prediction, and estimation. J. Am. Stat. Assoc. 102, 359-378.
    """
    fair = check_bool(fair, name="fair")
    e, t, mdim = _ensemble_inputs(ensemble, truth, member_dim, min_members=2 if fair else 1)
    dims = reduce_dims(dim, t)
    w = weights_for(weights, t)
    cells = xr.apply_ufunc(
        _crps_ensemble_cells,
        e,
        t,
        input_core_dims=[[mdim], []],
        kwargs={"fair": fair},
        dask="parallelized",
        output_dtypes=[np.float64],
    )
    return finish(
        weighted_mean(cells, dims, w),
        name="crps",
        long_name="continuous ranked probability score"
        + (" (fair ensemble estimator)" if fair else " (ensemble)"),
        units=units_of(t),
        xarray_out=any_xarray(ensemble, truth),
    )


def crps(forecast: Any, truth: Any, *, dim: DimArg = None, weights: Any = None) -> Any:
    """CRPS of a deterministic forecast: the mean absolute error ``mean(|forecast - truth|)``.

    The CRPS of a point forecast (a one-member ensemble, or a distribution of zero spread) is
    its absolute error, so this is the score to set beside :func:`crps_ensemble` and
    :func:`crps_gaussian` for a deterministic method.

    Parameters
    ----------
    forecast, truth : DataArray or array_like
        Estimate and reference, matched by dim name.
    dim : str or list of str, optional
        Dims (of the truth) to average over; default all of them.
    weights : DataArray, array_like or "area", optional
        As for :func:`crps_ensemble`.

    Returns
    -------
    DataArray or float or ndarray
        Named ``"crps"``, in the units of the truth; NaN cells left out.
    """
    f, t = _pair_inputs(forecast, truth)
    dims = reduce_dims(dim, t)
    w = weights_for(weights, t)
    return finish(
        weighted_mean(abs(f - t), dims, w),
        name="crps",
        long_name="continuous ranked probability score (deterministic: mean absolute error)",
        units=units_of(t),
        xarray_out=any_xarray(forecast, truth),
    )


def _crps_gaussian_cells(mu: np.ndarray, sigma: np.ndarray, y: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (y - mu) / sigma
        c = sigma * (
            z * (2.0 * special.ndtr(z) - 1.0)
            + 2.0 * np.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
            - 1.0 / math.sqrt(math.pi)
        )
    out = np.where(sigma == 0, np.abs(y - mu), c)
    return np.where(sigma < 0, np.nan, out)


def crps_gaussian(
    mean: Any, std: Any, truth: Any, *, dim: DimArg = None, weights: Any = None
) -> Any:
    """CRPS of a Gaussian forecast ``N(mean, std**2)``, in closed form, averaged over ``dim``.

    .. math::

        \\mathrm{CRPS} = \\sigma\\left[z\\,(2\\Phi(z) - 1) + 2\\varphi(z)
        - \\frac{1}{\\sqrt\\pi}\\right], \\quad z = \\frac{y - \\mu}{\\sigma}

    (Gneiting et al. 2005); ``|y - mu|`` where ``std == 0``.  This scores a calibrated
    ``(mean, std)`` pair such as the mean and spread of a DIP ensemble.

    Parameters
    ----------
    mean, std : DataArray or array_like
        The forecast mean and standard deviation (``std >= 0``), matched to the truth by dim
        name.
    truth : DataArray or array_like
    dim, weights
        As for :func:`crps_ensemble`.

    Returns
    -------
    DataArray or float or ndarray
        Named ``"crps"``, in the units of the truth; NaN cells left out.

    Raises
    ------
    InputValueError
        If ``std`` (in memory) is negative somewhere; a lazy ``std`` gives NaN on such cells.

    References
    ----------
    Gneiting, T., Raftery, A. E., Westveld, A. H. and Goldman, T. (2005): Calibrated
    probabilistic forecasting using ensemble model output statistics and minimum CRPS
    estimation. Mon. Weather Rev. 133, 1098-1118.
    """
    m, t = _pair_inputs(mean, truth, what="mean")
    s, _ = _pair_inputs(std, t, what="std")
    if not is_dask(s) and bool((s < 0).any()):
        raise InputValueError(
            f"std is negative on {int((s < 0).sum())} cell(s) (min {float(s.min())!r}); a "
            "standard deviation must be >= 0: pass the spread, not a signed error"
        )
    dims = reduce_dims(dim, t)
    w = weights_for(weights, t)
    cells = xr.apply_ufunc(
        _crps_gaussian_cells, m, s, t, dask="parallelized", output_dtypes=[np.float64]
    )
    return finish(
        weighted_mean(cells, dims, w),
        name="crps",
        long_name="continuous ranked probability score (Gaussian)",
        units=units_of(t),
        xarray_out=any_xarray(mean, std, truth),
    )


# ------------------------------------------------------------------------------------------
# spread and skill
# ------------------------------------------------------------------------------------------
def _mean_spread(
    ensemble: Any, truth: Any, member_dim: Any
) -> tuple[xr.DataArray, xr.DataArray, xr.DataArray, int | None]:
    """(mean, spread, truth, M): from members (spread: std with ddof=1) or a (mean, spread)."""
    if isinstance(ensemble, tuple | list):
        if len(ensemble) != 2:
            raise ShapeError(
                f"ensemble must be the members or a (mean, spread) pair, got a sequence of "
                f"{len(ensemble)}; pass (mean, spread)"
            )
        mean, spread = ensemble
        m, t = _pair_inputs(mean, truth, what="mean")
        s, _ = _pair_inputs(spread, t, what="spread")
        return m, s, t, None
    e, t, mdim = _ensemble_inputs(ensemble, truth, member_dim, min_members=2)
    # skipna=False: a cell with a NaN member is left out, not scored on fewer members
    mean = e.mean([mdim], skipna=False)
    spread = e.std([mdim], ddof=1, skipna=False)
    return mean, spread, t, int(e.sizes[mdim])


def spread_skill(
    ensemble: Any,
    truth: Any,
    *,
    member_dim: str = "member",
    dim: DimArg = None,
    weights: Any = None,
) -> Any:
    """Spread-skill ratio: the RMS spread over the RMSE of the ensemble mean.

    With members :math:`x_1..x_M` (sample variance :math:`s^2`, ``ddof=1``, and mean
    :math:`\\bar x` per cell),

    .. math::

        \\mathrm{SSR} = \\sqrt{\\frac{M + 1}{M}}\\;
        \\frac{\\sqrt{\\langle s^2 \\rangle}}{\\sqrt{\\langle (\\bar x - y)^2 \\rangle}}

    where :math:`\\langle\\cdot\\rangle` is the (weighted) mean over ``dim``.  The factor
    :math:`\\sqrt{(M+1)/M}` corrects for the finite ensemble (Fortin et al. 2014): for
    members and truth drawn from one distribution, :math:`E[(\\bar x - y)^2] = (1 + 1/M)\\,
    \\sigma^2`, so that a reliable ensemble scores 1 whatever ``M``.  Given a
    ``(mean, spread)`` pair instead (the spread a standard deviation of the predictive
    distribution, e.g. a calibrated DIP spread), the ratio is
    :math:`\\sqrt{\\langle \\mathrm{spread}^2\\rangle} / \\mathrm{RMSE}(\\mathrm{mean})`,
    without the factor.  Below 1: under-dispersive (over-confident); above 1: over-dispersive.

    Parameters
    ----------
    ensemble : DataArray, array_like, or (mean, spread)
        The members (with ``member_dim``; a plain array: members along the first axis), or a
        pair of fields on the truth's grid.
    truth : DataArray or array_like
    member_dim, dim, weights
        As for :func:`crps_ensemble`.

    Returns
    -------
    DataArray or float or ndarray
        Named ``"spread_skill_ratio"`` (units ``"1"``).  Both means run over the same cells:
        those where the mean, the spread and the truth are finite (a NaN member leaves its
        cell out).
    """
    mean, spread, t, m = _mean_spread(ensemble, truth, member_dim)
    dims = reduce_dims(dim, t)
    w = weights_for(weights, t)
    ok = mean.notnull() & spread.notnull() & t.notnull()
    var = weighted_mean((spread**2).where(ok), dims, w)
    mse = weighted_mean(((mean - t) ** 2).where(ok), dims, w)
    ratio = np.sqrt(var / mse)
    if m is not None:
        ratio = ratio * math.sqrt((m + 1.0) / m)
    return finish(
        ratio,
        name="spread_skill_ratio",
        long_name="spread-skill ratio (RMS spread / RMSE of the ensemble mean)",
        units="1",
        xarray_out=any_xarray(ensemble, truth)
        or (isinstance(ensemble, tuple | list) and any_xarray(*ensemble)),
    )


def spread_error_correlation(
    ensemble: Any,
    truth: Any,
    *,
    member_dim: str = "member",
    dim: DimArg = None,
    weights: Any = None,
) -> Any:
    """(Weighted) Pearson correlation of the spread with the absolute error of the mean.

    Does the ensemble know where it is wrong?  The spread is the members' standard deviation
    (``ddof=1``) or the given one; the error is ``|mean - truth|``; the correlation runs over
    ``dim`` on the cells where all three are finite.

    Parameters
    ----------
    ensemble : DataArray, array_like, or (mean, spread)
        As for :func:`spread_skill`.
    truth : DataArray or array_like
    member_dim, dim, weights
        As for :func:`crps_ensemble`.

    Returns
    -------
    DataArray or float or ndarray
        Named ``"spread_error_correlation"``, in ``[-1, 1]``; NaN where the spread or the
        error is constant over the cells.
    """
    mean, spread, t, _ = _mean_spread(ensemble, truth, member_dim)
    dims = reduce_dims(dim, t)
    w = weights_for(weights, t)
    err = abs(mean - t)
    ok = err.notnull() & spread.notnull()
    s, e = spread.where(ok), err.where(ok)
    ds = s - weighted_mean(s, dims, w)
    de = e - weighted_mean(e, dims, w)
    cov = weighted_mean(ds * de, dims, w)
    vs = weighted_mean(ds * ds, dims, w)
    ve = weighted_mean(de * de, dims, w)
    den = np.sqrt(vs * ve)
    corr = (cov / den.where(den > 0)).clip(-1.0, 1.0)
    return finish(
        corr,
        name="spread_error_correlation",
        long_name="correlation of the ensemble spread with the absolute error of the mean",
        units="1",
        xarray_out=any_xarray(ensemble, truth)
        or (isinstance(ensemble, tuple | list) and any_xarray(*ensemble)),
    )


# ------------------------------------------------------------------------------------------
# rank histogram
# ------------------------------------------------------------------------------------------
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def _uniform_hash(index: np.ndarray, seed: int) -> np.ndarray:
    """Uniform [0, 1) numbers from cell indices (splitmix64): the same for numpy and dask,
    whatever the chunks, and independent from cell to cell."""
    with np.errstate(over="ignore"):
        z = index.astype(np.uint64) + np.uint64(seed + 1) * _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _MIX1
        z = (z ^ (z >> np.uint64(27))) * _MIX2
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) * 2.0**-53


def _rank_cells(ens: np.ndarray, obs: np.ndarray, index: np.ndarray, seed: int) -> np.ndarray:
    """Rank of the truth among the members (0..M), ties at random; NaN for incomplete cells."""
    below = np.sum(ens < obs[..., None], axis=-1)
    equal = np.sum(ens == obs[..., None], axis=-1)
    u = _uniform_hash(index, seed)
    rank = below + np.floor(u * (equal + 1.0))
    bad = np.isnan(obs) | np.isnan(ens).any(axis=-1)
    return np.where(bad, np.nan, rank)


def _cell_index(template: xr.DataArray) -> xr.DataArray:
    """The flat (C-order) index of every cell of ``template``, chunked like it."""
    index: xr.DataArray | int = 0
    stride = 1
    for d in reversed(template.dims):
        n = int(template.sizes[d])
        if is_dask(template):
            import dask.array as dsa

            chunks = template.chunksizes[d]
            axis = dsa.arange(n, chunks=chunks, dtype=np.int64) * stride
        else:
            axis = np.arange(n, dtype=np.int64) * stride
        index = index + xr.DataArray(axis, dims=(d,))
        stride *= n
    if isinstance(index, int):  # a 0-d template
        return xr.DataArray(np.int64(0))
    return index.transpose(*template.dims)


def rank_histogram(
    ensemble: Any,
    truth: Any,
    *,
    member_dim: str = "member",
    dim: DimArg = None,
    weights: Any = None,
    seed: int = 0,
) -> Any:
    """Rank histogram (Talagrand diagram): where the truth falls among the sorted members.

    The rank of a cell is the number of members below the truth, ``0..M``; ties (members
    equal to the truth, as for zero precipitation) are broken at random, the rank drawn
    uniformly from ``below .. below + equal``.  The histogram gives the (weighted) fraction of
    cells in each of the ``M + 1`` ranks.  Flat for a reliable ensemble; U-shaped for an
    under-dispersive one; a hump for an over-dispersive one; sloped for a biased one.

    Parameters
    ----------
    ensemble : DataArray or array_like
        The members, with ``member_dim`` (a plain array: members along the first axis).
    truth : DataArray or array_like
    member_dim, dim, weights
        As for :func:`crps_ensemble`.
    seed : int, default 0
        Seed of the tie-breaking draws.  They are a hash of the seed and the cell's position,
        so the same for numpy and dask inputs whatever the chunks.

    Returns
    -------
    DataArray or ndarray
        Named ``"rank_histogram"``, the remaining dims then ``"rank"`` (length ``M + 1``,
        coordinate ``0..M``); fractions summing to 1 over ``"rank"``.  Cells with a NaN truth
        or a NaN member are left out; NaN where no cell is left.
    """
    seed = check_int(seed, name="seed", minimum=0, hint="use a non-negative integer such as 0")
    e, t, mdim = _ensemble_inputs(ensemble, truth, member_dim)
    dims = reduce_dims(dim, t)
    w = weights_for(weights, t)
    m = int(e.sizes[mdim])
    template = xr.zeros_like(t) + xr.zeros_like(e.isel({mdim: 0}, drop=True))
    index = _cell_index(template)
    rank = xr.apply_ufunc(
        _rank_cells,
        e,
        t,
        index,
        input_core_dims=[[mdim], [], []],
        kwargs={"seed": seed},
        dask="parallelized",
        output_dtypes=[np.float64],
    )
    valid = rank.notnull()
    bins = [
        weighted_mean((rank == k).astype(np.float64).where(valid), dims, w) for k in range(m + 1)
    ]
    hist = xr.concat(bins, dim="rank", coords="minimal", compat="override")
    hist = hist.assign_coords(rank=np.arange(m + 1)).transpose(..., "rank")
    return finish(
        hist,
        name="rank_histogram",
        long_name="rank histogram (fraction of cells with the truth at each rank)",
        units="1",
        xarray_out=any_xarray(ensemble, truth),
    )
