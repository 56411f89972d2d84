"""Errors of derived quantities: horizontal gradients and, for sea-surface height, the
geostrophic velocity."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import numpy as np
import xarray as xr

from .._validate import check_number
from ..exceptions import CoordinateError, InputValueError
from ._common import (
    DimArg,
    as_dataarray,
    conform,
    finish,
    reduce_dims,
    units_of,
    weighted_mean,
    weights_for,
)
from ._geometry import Horizontal, horizontal

__all__ = [
    "geostrophic_velocity",
    "geostrophic_velocity_error",
    "gradient",
    "gradient_error",
]

#: Standard gravity (m s-2) and the Earth's rotation rate (rad s-1), the defaults.
GRAVITY = 9.81
OMEGA = 7.2921e-5

_SSH_UNITS = {
    "": 1.0,
    "m": 1.0,
    "metre": 1.0,
    "metres": 1.0,
    "meter": 1.0,
    "meters": 1.0,
    "cm": 0.01,
    "centimetres": 0.01,
    "centimeters": 0.01,
    "mm": 0.001,
}


def _field(field: Any, *, what: str) -> tuple[xr.DataArray, bool]:
    plain = not isinstance(field, xr.DataArray)
    dims = tuple(f"dim_{i}" for i in range(np.ndim(field))) if plain else field.dims
    return as_dataarray(field, dims=dims, what=what), plain


def _gradient(f: xr.DataArray, h: Horizontal) -> tuple[xr.DataArray, xr.DataArray]:
    """(d f / dx, d f / dy) on the cells of ``f``, in field units per metre (or per cell).

    Second-order centred differences inside, one-sided at the edges (``np.gradient``, through
    :meth:`xarray.DataArray.differentiate`, which keeps dask lazy); a cell next to a NaN is
    NaN.  On latitude/longitude grids ``d/dx = (1 / (R cos lat)) d/dlon``.
    """
    on_grid = [c for c in f.coords if h.ydim in f[c].dims or h.xdim in f[c].dims]
    tmp = f.drop_vars(on_grid).assign_coords({h.ydim: h.y, h.xdim: h.x})
    gy = tmp.differentiate(h.ydim)
    gx = tmp.differentiate(h.xdim)
    if h.kind == "lonlat":
        assert h.lat is not None
        coslat = xr.DataArray(np.cos(np.deg2rad(h.lat)), dims=(h.ydim,), coords={h.ydim: h.y})
        gx = gx / coslat
    gx = f.copy(data=gx.transpose(*f.dims).data)
    gy = f.copy(data=gy.transpose(*f.dims).data)
    return gx, gy


def gradient(
    field: Any,
    *,
    dims: tuple[Hashable, Hashable] | None = None,
    spacing: tuple[float, float] | None = None,
) -> tuple[Any, Any]:
    """The horizontal gradient ``(d field / dx, d field / dy)`` on the grid's metric.

    Per cell, with second-order centred differences (one-sided at the edges of the grid).
    On latitude/longitude grids the distances are on a sphere of the Earth's mean radius
    ``R``: ``dy = R dlat`` and ``dx = R cos(lat) dlon`` at each cell's latitude (on a
    rotated-pole grid, along its rotated axes).  Projected grids use their coordinates in
    their units (metres when absent); grids without coordinates and plain arrays count in
    cells unless ``spacing=`` gives the cell size.

    Parameters
    ----------
    field : DataArray or array_like
        Two horizontal dims and any others (a plain array: the last two axes ``(y, x)``).
    dims : (y, x), optional
        The horizontal dims; found with cf-xarray (:func:`xsr.spatial_dims`) when omitted.
    spacing : (dy, dx), optional
        The cell size in metres, overriding the coordinates.

    Returns
    -------
    (DataArray, DataArray) or (ndarray, ndarray)
        The eastward (x) and northward (y) components, with the field's dims and coordinates,
        in field units per metre (per grid cell without a metric).  A cell next to a NaN
        cell is NaN (centred differences need both neighbours).

    Raises
    ------
    CoordinateError
        On a curvilinear grid (cell sizes vary across it): pass ``spacing=``, or interpolate
        onto a regular grid.
    """
    f, plain = _field(field, what="field")
    h = horizontal(f, dims=dims, spacing=spacing, plain=plain)
    gx, gy = _gradient(f, h)
    u = units_of(f)
    per = " per grid cell" if h.kind == "cells" else " m-1"
    units = (u + per).strip() if u else per.strip()
    name = str(f.name) if f.name is not None else "field"
    out = []
    for comp, g, axis in (("x", gx, "eastward (x)"), ("y", gy, "northward (y)")):
        out.append(
            finish(
                g,
                name=f"d{name}_d{comp}",
                long_name=f"{axis} derivative of {name}",
                units=units,
                xarray_out=not plain,
            )
        )
    return out[0], out[1]


def _pair(estimate: Any, truth: Any) -> tuple[xr.DataArray, xr.DataArray, bool]:
    t, plain = _field(truth, what="truth")
    if plain and isinstance(estimate, xr.DataArray):
        t = as_dataarray(truth, dims=estimate.dims, what="truth")
        plain = False
    e = as_dataarray(estimate, dims=t.dims, what="estimate")
    return conform(e, t, what="the estimate", ref_what="the truth"), t, plain


def _vector_rmse(
    gx: xr.DataArray, gy: xr.DataArray, t: xr.DataArray, dim: DimArg, weights: Any
) -> xr.DataArray:
    dims = reduce_dims(dim, t)
    w = weights_for(weights, t)
    out = weighted_mean(gx**2 + gy**2, dims, w)
    return np.sqrt(out)


def gradient_error(
    estimate: Any,
    truth: Any,
    *,
    dims: tuple[Hashable, Hashable] | None = None,
    dim: DimArg = None,
    weights: Any = None,
    spacing: tuple[float, float] | None = None,
) -> Any:
    """RMSE of the gradient vector: ``sqrt(mean(|grad estimate - grad truth|^2))``.

    The gradients are those of :func:`gradient` on the truth's grid (the difference of the
    gradients is the gradient of the difference, which is what is computed).  Where either
    field is NaN, or next to such a cell, the cell is left out.

    Parameters
    ----------
    estimate, truth : DataArray or array_like
        On the same grid (matched by dim name).
    dims, spacing
        As for :func:`gradient`.
    dim : str or list of str, optional
        Dims (of the truth) to average over; default all of them.
    weights : DataArray, array_like or "area", optional
        As for :func:`xsr.metrics.crps_ensemble`.

    Returns
    -------
    DataArray or float or ndarray
        Named ``"gradient_rmse"``, in field units per metre (per grid cell without a metric).
    """
    e, t, plain = _pair(estimate, truth)
    h = horizontal(t, dims=dims, spacing=spacing, plain=plain)
    gx, gy = _gradient(e - t, h)
    u = units_of(t)
    per = " per grid cell" if h.kind == "cells" else " m-1"
    return finish(
        _vector_rmse(gx, gy, t, dim, weights),
        name="gradient_rmse",
        long_name="root-mean-square error of the horizontal gradient vector",
        units=(u + per).strip() if u else per.strip(),
        xarray_out=not plain,
    )


def _coriolis(f: xr.DataArray, h: Horizontal, omega: float) -> tuple[xr.DataArray, xr.DataArray]:
    """(``2 omega sin(lat)``, lat) of each cell, from the true latitudes."""
    if h.lat2d is not None:
        lat = f[h.lat2d].astype(np.float64)
        lat = lat.drop_vars([c for c in lat.coords if c not in (h.ydim, h.xdim)])
    elif h.lat is not None and not h.rotated:
        lat = xr.DataArray(h.lat, dims=(h.ydim,))
    else:
        raise CoordinateError(
            f"the geostrophic velocity needs the true latitude of every cell, and the grid "
            f"({h.ydim!r}, {h.xdim!r}) has none (a rotated-pole or projected grid without a "
            "2-D latitude coordinate); add one (CF standard_name 'latitude')"
        )
    for d in (h.ydim, h.xdim):
        if d in lat.dims and d in f.indexes:
            lat = lat.assign_coords({d: f[d].variable})
    cor: xr.DataArray = 2.0 * omega * np.sin(np.deg2rad(lat))  # type: ignore[assignment]
    return cor, lat


def _ssh_factor(f: xr.DataArray) -> float:
    u = units_of(f).strip()
    if u in _SSH_UNITS:
        return _SSH_UNITS[u]
    raise InputValueError(
        f"sea-surface height has units {u!r}; the geostrophic velocity needs a height in "
        f"metres ({sorted(k for k in _SSH_UNITS if k)}; none counts as metres): convert it, "
        "or set its units attribute"
    )


def _geostrophy(
    ssh: xr.DataArray,
    h: Horizontal,
    *,
    g: float,
    omega: float,
    min_latitude: float,
) -> tuple[xr.DataArray, xr.DataArray]:
    cor, lat = _coriolis(ssh, h, omega)
    near = abs(lat) < min_latitude
    if bool(near.all()):
        raise InputValueError(
            f"every cell is within {min_latitude:g} degrees of the equator, where geostrophy "
            "does not hold (f -> 0); select cells farther from it, or lower min_latitude"
        )
    gx, gy = _gradient(ssh * _ssh_factor(ssh), h)
    fac = (g / cor).where(~near & (cor != 0))
    u = -(fac * gy)
    v = fac * gx
    return u.transpose(*ssh.dims), v.transpose(*ssh.dims)


def _geo_options(g: Any, omega: Any, min_latitude: Any) -> tuple[float, float, float]:
    g = check_number(g, name="g", positive=True, hint="standard gravity is 9.81 m s-2")
    omega = check_number(omega, name="omega", positive=True, hint="the Earth's is 7.2921e-5")
    min_latitude = check_number(
        min_latitude, name="min_latitude", minimum=0.0, hint="degrees, e.g. 5.0"
    )
    if min_latitude >= 90:
        raise InputValueError(f"min_latitude={min_latitude:g} masks every latitude; use < 90")
    return g, omega, min_latitude


def _ssh_dataarray(ssh: Any, what: str) -> xr.DataArray:
    if not isinstance(ssh, xr.DataArray):
        raise InputValueError(
            f"{what} is a plain array; the geostrophic velocity needs the latitude of each "
            "cell: pass a DataArray with latitude coordinates"
        )
    return as_dataarray(ssh, dims=ssh.dims, what=what)


def geostrophic_velocity(
    ssh: xr.DataArray,
    *,
    dims: tuple[Hashable, Hashable] | None = None,
    g: float = GRAVITY,
    omega: float = OMEGA,
    min_latitude: float = 5.0,
    spacing: tuple[float, float] | None = None,
) -> tuple[xr.DataArray, xr.DataArray]:
    """Surface geostrophic velocity ``(u, v)`` from sea-surface height ``eta``.

    .. math::

        u = -\\frac{g}{f} \\frac{\\partial \\eta}{\\partial y}, \\quad
        v = \\frac{g}{f} \\frac{\\partial \\eta}{\\partial x}, \\quad
        f = 2 \\Omega \\sin\\varphi

    with the derivatives of :func:`gradient` (centred differences on the grid's metric) and
    ``phi`` the true latitude: the 1-D latitude of a latitude/longitude grid, or a 2-D
    latitude coordinate (rotated-pole and projected grids need one).  Near the equator ``f``
    vanishes and geostrophy does not hold: cells with ``|lat| < min_latitude`` are masked
    (NaN).  On a rotated-pole grid the components are along its rotated axes.

    Parameters
    ----------
    ssh : DataArray
        Sea-surface height in metres (``units`` ``"m"``, ``"cm"`` or ``"mm"``; none counts as
        metres), with two horizontal dims and any others.
    dims : (y, x), optional
        The horizontal dims; found with cf-xarray when omitted.
    g : float, default 9.81
        Gravity (m s-2).
    omega : float, default 7.2921e-5
        The rotation rate (rad s-1).
    min_latitude : float, default 5.0
        Cells closer to the equator than this (degrees) are NaN.
    spacing : (dy, dx), optional
        The cell size in metres, overriding the coordinates.

    Returns
    -------
    (DataArray, DataArray)
        ``u`` (eastward) and ``v`` (northward), in m s-1, on the cells and dims of ``ssh``.

    Raises
    ------
    CoordinateError
        If the grid has no true latitude.
    InputValueError
        If ``ssh`` is a plain array or not in a length unit, or every cell is masked.
    """
    g, omega, min_latitude = _geo_options(g, omega, min_latitude)
    f = _ssh_dataarray(ssh, "ssh")
    h = horizontal(f, dims=dims, spacing=spacing)
    u, v = _geostrophy(f, h, g=g, omega=omega, min_latitude=min_latitude)
    name = str(f.name) if f.name is not None else "ssh"
    out = []
    for comp, arr, what in (("u", u, "eastward"), ("v", v, "northward")):
        arr = f.copy(data=arr.data)
        res = finish(
            arr,
            name=f"{comp}g",
            long_name=f"surface geostrophic {what} velocity from {name}",
            units="m s-1",
            xarray_out=True,
        )
        res.attrs["xsr_min_latitude"] = min_latitude
        out.append(res)
    return out[0], out[1]


def geostrophic_velocity_error(
    estimate: xr.DataArray,
    truth: xr.DataArray,
    *,
    dims: tuple[Hashable, Hashable] | None = None,
    dim: DimArg = None,
    weights: Any = None,
    g: float = GRAVITY,
    omega: float = OMEGA,
    min_latitude: float = 5.0,
    spacing: tuple[float, float] | None = None,
) -> Any:
    """RMSE of the geostrophic velocity vector of an SSH estimate against the truth's.

    ``sqrt(mean((u_e - u_t)^2 + (v_e - v_t)^2))`` with the velocities of
    :func:`geostrophic_velocity` (computed as the velocity of the SSH difference, the same by
    linearity), over the cells not masked near the equator and not NaN or next to NaN.

    Parameters
    ----------
    estimate, truth : DataArray
        Sea-surface heights on the same grid (the truth's units apply to both).
    dims, g, omega, min_latitude, spacing
        As for :func:`geostrophic_velocity`.
    dim : str or list of str, optional
        Dims (of the truth) to average over; default all of them.
    weights : DataArray, array_like or "area", optional
        As for :func:`xsr.metrics.crps_ensemble`.

    Returns
    -------
    DataArray
        Named ``"geostrophic_velocity_rmse"``, in m s-1.
    """
    g, omega, min_latitude = _geo_options(g, omega, min_latitude)
    t = _ssh_dataarray(truth, "truth")
    e = conform(_ssh_dataarray(estimate, "estimate"), t, what="the estimate", ref_what="the truth")
    h = horizontal(t, dims=dims, spacing=spacing)
    diff = (e - t).assign_attrs(units=units_of(t))
    if h.lat2d is not None:
        diff = diff.assign_coords({h.lat2d: t[h.lat2d].variable})
    u, v = _geostrophy(diff, h, g=g, omega=omega, min_latitude=min_latitude)
    return finish(
        _vector_rmse(u, v, t, dim, weights),
        name="geostrophic_velocity_rmse",
        long_name="root-mean-square error of the surface geostrophic velocity vector",
        units="m s-1",
        xarray_out=True,
    )
