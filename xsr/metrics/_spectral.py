"""Isotropic wavenumber power spectra of fine fields, and the effective resolution."""

from __future__ import annotations

import math
from collections.abc import Hashable
from typing import Any, Literal

import numpy as np
import xarray as xr

from .._validate import check_choice
from ..exceptions import CoordinateError, InputValueError, OptionError, ShapeError
from ._common import (
    DimArg,
    any_xarray,
    as_dataarray,
    conform,
    finish,
    is_dask,
    squared_units,
    units_of,
)
from ._geometry import Horizontal, horizontal

__all__ = ["effective_resolution", "power_spectrum"]

Window = Literal["hann", "tukey"] | None
Detrend = Literal["mean", "plane"]
NanPolicy = Literal["raise", "fill"]

#: The fraction of each side that the Tukey window tapers (half at each end).
TUKEY_ALPHA = 0.5


# ------------------------------------------------------------------------------------------
# the grid steps
# ------------------------------------------------------------------------------------------
def _step(pos: np.ndarray, dim: Hashable) -> float:
    if pos.size < 4:
        raise ShapeError(
            f"{dim!r} has {pos.size} cells; a spectrum needs at least 4 along each horizontal "
            "dim: pass a larger box"
        )
    d = np.diff(pos)
    step = float(d.mean())
    if step == 0 or not np.allclose(d, step, rtol=1e-3, atol=0.0):
        raise CoordinateError(
            f"the cells along {dim!r} are not evenly spaced (steps from {d.min():.6g} to "
            f"{d.max():.6g}); a Fourier spectrum needs a regular grid: interpolate onto one "
            "(.interp), or pass spacing=(dy, dx) in metres to treat the grid as regular"
        )
    return abs(step)


def _steps(h: Horizontal) -> tuple[float, float, str]:
    """(dy, dx, unit): the cell sizes in km (or in cells), the x step at the mean latitude."""
    dy, dx = _step(h.y, h.ydim), _step(h.x, h.xdim)
    if h.kind == "cells":
        return dy, dx, "cell"
    if h.kind == "lonlat":
        assert h.lat is not None
        dx *= math.cos(math.radians(float(np.mean(h.lat))))
    return dy / 1000.0, dx / 1000.0, "km"


def _bins(ny: int, nx: int, dy: float, dx: float) -> tuple[np.ndarray, float]:
    """(bin of each 2-D wavenumber (ny, nx), 0 = not used; bin width dk).

    Bins are ``n * dk`` +- ``dk / 2``, ``n = 1 .. floor(k_nyquist / dk)``, with ``dk`` the
    coarser of the two fundamental wavenumbers and ``k_nyquist`` the smaller Nyquist
    wavenumber; the mean (``k = 0``) and the corners beyond ``k_nyquist`` are left out.
    """
    dk = max(1.0 / (nx * dx), 1.0 / (ny * dy))
    nb = math.floor(min(0.5 / dx, 0.5 / dy) / dk + 1e-9)
    ky = np.fft.fftfreq(ny, dy)[:, None]
    kx = np.fft.fftfreq(nx, dx)[None, :]
    b = np.rint(np.hypot(ky, kx) / dk).astype(np.int64)
    b[b > nb] = 0
    return b, dk


def _window_1d(n: int, window: Window) -> np.ndarray:
    from scipy.signal import windows

    if window == "hann":
        return np.asarray(windows.hann(n, sym=False))
    if window == "tukey":
        return np.asarray(windows.tukey(n, alpha=TUKEY_ALPHA, sym=False))
    return np.ones(n)


def _detrend(f: np.ndarray, ok: np.ndarray, detrend: Detrend) -> np.ndarray:
    """``f`` (fields, ny, nx) less its mean or least-squares plane over its finite cells."""
    out = np.empty_like(f)
    ny, nx = f.shape[-2:]
    yy, xx = np.meshgrid(np.linspace(-1, 1, ny), np.linspace(-1, 1, nx), indexing="ij")
    for i in range(f.shape[0]):
        v = ok[i]
        if not v.any():
            out[i] = np.nan
            continue
        if detrend == "mean" or v.sum() < 3:
            out[i] = f[i] - f[i][v].mean()
            continue
        a = np.stack([np.ones(int(v.sum())), yy[v], xx[v]], axis=1)
        coef = np.linalg.lstsq(a, f[i][v], rcond=None)[0]
        out[i] = f[i] - (coef[0] + coef[1] * yy + coef[2] * xx)
    return out


def _spectrum_cells(
    f: np.ndarray,
    *,
    dy: float,
    dx: float,
    window: Window,
    detrend: Detrend,
    nan_policy: NanPolicy,
) -> np.ndarray:
    """Isotropic spectra of ``f`` (..., ny, nx) -> (..., nbins)."""
    lead = f.shape[:-2]
    ny, nx = f.shape[-2:]
    f = np.asarray(f, dtype=np.float64).reshape(-1, ny, nx)
    ok = np.isfinite(f)
    if nan_policy == "raise" and not ok.all():
        bad = int((~ok).sum())
        raise InputValueError(
            f"the field has {bad} NaN cell(s) in the (y, x) box; a Fourier spectrum needs "
            "every cell: select a box without land (e.g. .sel(lat=slice(...), "
            "lon=slice(...))), or pass nan_policy='fill' (NaN set to the mean, the power "
            "rescaled by the fraction of valid cells)"
        )
    g = np.where(ok, _detrend(f, ok, detrend), 0.0)
    w2 = np.outer(_window_1d(ny, window), _window_1d(nx, window))
    # E[sum (g w)^2] = sum g^2 * mean(w^2 ok): divide the window's (and the gaps') loss out
    with np.errstate(invalid="ignore", divide="ignore"):
        norm = (w2 * w2 * ok).mean(axis=(-2, -1))
        psd2 = np.abs(np.fft.fft2(g * w2)) ** 2 * (dy * dx / (ny * nx)) / norm[:, None, None]
    b, dk = _bins(ny, nx, dy, dx)
    nb = int(b.max())
    cell = 1.0 / (ny * dy) * (1.0 / (nx * dx)) / dk  # dkx dky / dk
    flat = b.ravel()
    out = np.empty((f.shape[0], nb))
    for i in range(f.shape[0]):
        out[i] = np.bincount(flat, weights=psd2[i].ravel(), minlength=nb + 1)[1:] * cell
        if not np.isfinite(norm[i]) or norm[i] == 0:
            out[i] = np.nan
    return out.reshape(*lead, nb)


def _check_options(window: Any, detrend: Any, nan_policy: Any) -> None:
    if window is not None:
        check_choice(window, ("hann", "tukey"), name="window", hint="or None for no window")
    check_choice(detrend, ("mean", "plane"), name="detrend")
    check_choice(
        nan_policy,
        ("raise", "fill"),
        name="nan_policy",
        hint="'raise' refuses NaN cells, 'fill' fills them with the mean",
    )


def _spectrum(
    f: xr.DataArray,
    h: Horizontal,
    *,
    window: Window,
    detrend: Detrend,
    nan_policy: NanPolicy,
) -> xr.DataArray:
    """The spectrum of ``f`` as a DataArray over the other dims and ``"wavenumber"``."""
    dy, dx, unit = _steps(h)
    ny, nx = int(f.sizes[h.ydim]), int(f.sizes[h.xdim])
    b, dk = _bins(ny, nx, dy, dx)
    nb = int(b.max())
    if nb < 1:
        raise ShapeError(f"the box of {ny} x {nx} cells is too small for a spectrum")
    if is_dask(f):
        f = f.chunk({h.ydim: -1, h.xdim: -1})
    spec = xr.apply_ufunc(
        _spectrum_cells,
        f,
        input_core_dims=[[h.ydim, h.xdim]],
        output_core_dims=[["wavenumber"]],
        kwargs={
            "dy": dy,
            "dx": dx,
            "window": window,
            "detrend": detrend,
            "nan_policy": nan_policy,
        },
        dask="parallelized",
        output_dtypes=[np.float64],
        dask_gufunc_kwargs={"output_sizes": {"wavenumber": nb}},
    )
    k = dk * np.arange(1, nb + 1)
    per = "cycles per grid cell" if unit == "cell" else f"cycles per {unit}"
    kunits = "1" if unit == "cell" else f"{unit}-1"
    return spec.assign_coords(
        wavenumber=("wavenumber", k, {"long_name": f"wavenumber ({per})", "units": kunits}),
        wavelength=(
            "wavenumber",
            1.0 / k,
            {"long_name": "wavelength", "units": unit if unit != "cell" else "1"},
        ),
    )


def _field(field: Any, *, what: str) -> tuple[xr.DataArray, bool]:
    plain = not isinstance(field, xr.DataArray)
    dims = tuple(f"dim_{i}" for i in range(np.ndim(field))) if plain else field.dims
    return as_dataarray(field, dims=dims, what=what), plain


def power_spectrum(
    field: Any,
    *,
    dims: tuple[Hashable, Hashable] | None = None,
    spacing: tuple[float, float] | None = None,
    window: Window = "hann",
    detrend: Detrend = "mean",
    nan_policy: NanPolicy = "raise",
) -> xr.DataArray:
    """Isotropic (radially binned) wavenumber power spectral density over the horizontal dims.

    Each 2-D field (one per combination of the other dims) has its mean (``detrend="mean"``)
    or least-squares plane (``"plane"``) removed, is multiplied by a 2-D window (the outer
    product of two periodic 1-D windows: ``"hann"``, ``"tukey"`` tapering a quarter of each
    side at each end, or ``None``), and Fourier transformed.  The 2-D density
    ``|F|^2 dy dx / (ny nx)``, divided by the mean square of the window (so that the window
    does not lower the power), is summed over rings of width ``dk`` (the coarser fundamental
    wavenumber ``max(1/(nx dx), 1/(ny dy))``), centred on ``n dk`` for
    ``n = 1 .. floor(k_nyquist / dk)``; the mean and the corners beyond the smaller Nyquist
    wavenumber are left out.  Summed over the bins times ``dk``, the spectrum gives about the
    field's variance (the part within the Nyquist circle).

    Parameters
    ----------
    field : DataArray or array_like
        A DataArray with two horizontal dims (and any others), or a plain array whose last
        two axes are ``(y, x)``.
    dims : (y, x), optional
        The horizontal dims; found with cf-xarray (:func:`xsr.spatial_dims`) when omitted.
    spacing : (dy, dx), optional
        The cell size in metres, overriding the coordinates.  Without it the wavenumbers are
        physical where the grid has coordinates: projected ``y``/``x`` in their units (metres
        when absent); latitude/longitude placed on a sphere of the Earth's mean radius with
        ``dy = R dlat`` and ``dx = R cos(mean latitude) dlon``; plain arrays and grids without
        coordinates count in grid cells.
    window : {"hann", "tukey"} or None, default "hann"
    detrend : {"mean", "plane"}, default "mean"
    nan_policy : {"raise", "fill"}, default "raise"
        ``"raise"``: a field with a NaN cell is refused (:class:`~xsr.exceptions.
        InputValueError`, at compute time for dask input): select a box without land.
        ``"fill"``: NaN cells are set to the mean (0 after detrending, over the valid cells)
        and the power is divided by the window's mean square over the valid cells only (as if
        the gaps held a field of the same variance: a first-order correction).

    Returns
    -------
    DataArray
        Named ``"power_spectrum"``, over the other dims then ``"wavenumber"`` (cycles per
        km, or per grid cell; coordinate ``"wavelength"`` = 1 / wavenumber), in
        ``units^2 km`` (field units squared times length).  Always a DataArray, since the
        wavenumbers are part of the answer (``.values`` for the array).

    Raises
    ------
    CoordinateError
        If the grid is not evenly spaced (1e-3 relative) or is curvilinear (pass
        ``spacing=``).
    ShapeError
        If a horizontal dim has fewer than 4 cells.

    Notes
    -----
    On latitude/longitude grids, the distance between columns is taken at the mean latitude
    of the box: over a box spanning 10 degrees of latitude at 40N the true distance varies by
    about +-7 % from it, shifting wavenumbers along x by as much.  Use boxes of small
    latitude extent, or a projected grid, where this matters.
    """
    _check_options(window, detrend, nan_policy)
    f, plain = _field(field, what="field")
    h = horizontal(f, dims=dims, spacing=spacing, plain=plain)
    spec = _spectrum(f, h, window=window, detrend=detrend, nan_policy=nan_policy)
    unit = str(spec["wavelength"].attrs["units"])
    unit = "" if unit == "1" else unit
    su = squared_units(units_of(f))
    units = " ".join(u for u in (su, unit) if u) or "1"
    out = finish(
        spec,
        name="power_spectrum",
        long_name="isotropic wavenumber power spectral density",
        units=units,
        xarray_out=True,
    )
    assert isinstance(out, xr.DataArray)
    return out


def _crossing(ratio: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Wavelength of the first bin (from small k) where ``ratio >= 1``, log-interpolated;
    ``inf`` when already at the first bin, NaN when never."""
    exceed = ratio >= 1.0  # NaN counts as not exceeding
    anyx = exceed.any(axis=-1)
    i = np.argmax(exceed, axis=-1)
    i0 = np.maximum(i - 1, 0)
    r0 = np.take_along_axis(ratio, i0[..., None], axis=-1)[..., 0]
    r1 = np.take_along_axis(ratio, i[..., None], axis=-1)[..., 0]
    lk = np.log(k)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = -np.log(r0) / (np.log(r1) - np.log(r0))
    t = np.where(np.isfinite(t) & (t >= 0) & (t <= 1), t, 1.0)
    logk = lk[i0] + t * (lk[i] - lk[i0])
    lam = np.exp(-logk)
    lam = np.where(i == 0, np.inf, lam)
    return np.where(anyx, lam, np.nan)


def effective_resolution(
    estimate: Any,
    truth: Any,
    *,
    dims: tuple[Hashable, Hashable] | None = None,
    dim: DimArg = None,
    spacing: tuple[float, float] | None = None,
    window: Window = "hann",
    detrend: Detrend = "mean",
    nan_policy: NanPolicy = "raise",
) -> Any:
    """The wavelength below which the error spectrum exceeds the truth's spectrum.

    The power spectra (:func:`power_spectrum`) of the error ``estimate - truth`` and of the
    truth are averaged over ``dim``; going from the largest scales (the first wavenumber bin)
    to the smallest, the effective resolution is the wavelength where the ratio
    ``error / truth`` first reaches 1, interpolated between the two bins around the crossing
    (linearly in log ratio against log wavenumber).  Scales longer than it are resolved: the
    estimate's error there is smaller than the signal.

    Parameters
    ----------
    estimate, truth : DataArray or array_like
        On the same grid (matched by dim name; a plain array's last two axes are ``(y, x)``).
    dims : (y, x), optional
        The horizontal dims, as for :func:`power_spectrum`.
    dim : str or list of str, optional
        Other dims (of the truth) over which the spectra are averaged before the crossing is
        found; default every dim but the horizontal ones (one number), ``[]`` for one result
        per field.
    spacing, window, detrend, nan_policy
        As for :func:`power_spectrum` (NaN cells are those of either field).

    Returns
    -------
    DataArray or float or ndarray
        Named ``"effective_resolution"``, in km (or grid cells), over the dims not averaged.
        ``inf`` when the error exceeds the signal already at the largest resolved scale (no
        scale is resolved); ``nan`` when it never does (every scale down to the smallest
        resolved wavelength, twice the coarser grid step, is resolved) or the spectra are
        NaN.
    """
    _check_options(window, detrend, nan_policy)
    t, plain = _field(truth, what="truth")
    if plain and isinstance(estimate, xr.DataArray):
        t = as_dataarray(truth, dims=estimate.dims, what="truth")
        plain = False
    e = conform(
        as_dataarray(estimate, dims=t.dims, what="estimate"),
        t,
        what="the estimate",
        ref_what="the truth",
    )
    h = horizontal(t, dims=dims, spacing=spacing, plain=plain)
    opts = {"window": window, "detrend": detrend, "nan_policy": nan_policy}
    err = e - t
    if nan_policy == "fill":  # the same cells left out of both spectra
        t = t.where(err.notnull())
    se = _spectrum(err, h, **opts)  # type: ignore[arg-type]
    st = _spectrum(t, h, **opts)  # type: ignore[arg-type]
    others = [d for d in t.dims if d not in (h.ydim, h.xdim)]
    if dim is None:
        avg: list[Hashable] = others
    else:
        names = [dim] if isinstance(dim, str | int) or not isinstance(dim, list | tuple) else dim
        avg = []
        for d in names:
            d = t.dims[int(d)] if isinstance(d, int) else d
            if d not in others:
                raise OptionError(
                    f"dim={dim!r}: {d!r} is not one of the truth's non-horizontal dims "
                    f"{[str(x) for x in others]}; the spectra are averaged over those"
                )
            avg.append(d)
    if avg:
        se, st = se.mean(avg), st.mean(avg)
    ratio = se / st
    k = st["wavenumber"]
    lam = xr.apply_ufunc(
        _crossing,
        ratio.drop_vars(["wavenumber", "wavelength"]),
        k.drop_vars(["wavenumber", "wavelength"]),
        input_core_dims=[["wavenumber"], ["wavenumber"]],
        dask="parallelized",
        output_dtypes=[np.float64],
    )
    unit = str(st["wavelength"].attrs["units"])
    return finish(
        lam,
        name="effective_resolution",
        long_name="effective resolution (wavelength where the error spectrum reaches the truth's)",
        units=unit,
        xarray_out=any_xarray(estimate, truth),
    )
