"""Grid geometry: cell bounds, refinement and coarsening of coordinates, cell areas.

Pure numpy (no xarray, no torch).  Conventions:

* 1-D bounds have shape ``(n, 2)`` and follow the direction of the coordinate, as in CF:
  ``bounds[i, 0]`` is the edge on the side of cell ``i - 1`` and ``bounds[i, 1]`` the edge on
  the side of cell ``i + 1`` (so a descending coordinate has ``bounds[:, 0] > bounds[:, 1]``).
* 2-D (curvilinear) cell corners are held either as *vertices* ``(ny + 1, nx + 1)`` or as CF
  *bounds* ``(ny, nx, 4)``, the four corners of cell ``(j, i)`` being
  ``[v[j, i], v[j, i + 1], v[j + 1, i + 1], v[j + 1, i]]``.
* Angles are in degrees.  Longitudes may use any 360-degree convention; functions that create
  longitudes keep the convention of their input (``0..360`` or ``-180..180``).
* Curvilinear geometry is computed on the unit sphere in Cartesian coordinates, with cell
  edges along great circles.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import numpy.typing as npt

from .exceptions import CoordinateError, FactorError, OptionError, ShapeError

__all__ = [
    "EARTH_RADIUS",
    "bounds_to_vertices_2d",
    "cell_area_factors",
    "cell_area_lonlat",
    "cell_area_vertices",
    "cell_area_xy",
    "centre_points_2d",
    "centres_from_vertices_2d",
    "check_monotonic",
    "coarsen_1d",
    "infer_bounds_1d",
    "is_periodic_longitude",
    "longitude_convention",
    "refine_1d",
    "refine_curvilinear",
    "regular_spacing",
    "vertices_from_centres_2d",
    "vertices_to_bounds_2d",
    "wrap_longitude",
]

FloatArray = npt.NDArray[np.float64]
Kind = Literal["latitude", "longitude", "other"]

#: Mean Earth radius (m), IUGG.
EARTH_RADIUS = 6371008.8

_KINDS = ("latitude", "longitude", "other")
# rows of fine points computed at once in refine_curvilinear (bounds the temporary memory)
_BLOCK_POINTS = 1 << 21


# ------------------------------------------------------------------------------------------
# small validation helpers
# ------------------------------------------------------------------------------------------
def _as_float(values: npt.ArrayLike, *, name: str) -> FloatArray:
    try:
        return np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise CoordinateError(
            f"{name} must be numeric, got values of type {type(values).__name__} that cannot "
            f"be converted to float64 ({err}); convert them to numbers first"
        ) from err


def _as_1d(values: npt.ArrayLike, *, name: str) -> FloatArray:
    arr = _as_float(values, name=name)
    if arr.ndim != 1:
        raise CoordinateError(
            f"{name} must be 1-D, got an array of shape {arr.shape}; pass one coordinate "
            "vector (2-D latitude/longitude go through the curvilinear functions)"
        )
    return arr


def _check_finite(arr: FloatArray, *, name: str) -> None:
    bad = ~np.isfinite(arr)
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        where = idx[0] if len(idx) == 1 else idx
        raise CoordinateError(
            f"{name} has a non-finite value ({arr[idx]}) at index {where}; coordinates and "
            "bounds must be finite everywhere: fill or drop the missing positions"
        )


def _check_kind(kind: str) -> None:
    if kind not in _KINDS:
        raise OptionError(
            f"kind must be one of {_KINDS}, got {kind!r}; use 'other' for projected or "
            "index coordinates"
        )


def _check_factor(factor: object) -> int:
    if isinstance(factor, (bool, np.bool_)) or not isinstance(factor, (int, np.integer)):
        raise FactorError(
            f"factor must be an integer >= 1, got {factor!r} of type {type(factor).__name__}; "
            "pass an int such as 2 or 4"
        )
    f = int(factor)
    if f < 1:
        raise FactorError(f"factor must be an integer >= 1, got {f}; pass e.g. 2 or 4")
    return f


def _check_radius(radius: float) -> float:
    r = float(radius)
    if not (np.isfinite(r) and r > 0):
        raise OptionError(
            f"radius must be a finite positive number (metres), got {radius!r}; the default "
            f"is the mean Earth radius {EARTH_RADIUS}"
        )
    return r


def _check_latitude(arr: FloatArray, *, name: str, atol: float = 0.0) -> None:
    bad = np.abs(arr) > 90.0 + atol
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        where = idx[0] if len(idx) == 1 else idx
        raise CoordinateError(
            f"{name} has the value {arr[idx]} at index {where}, outside [-90, 90] degrees; "
            "latitudes must be in degrees_north (for rotated or projected coordinates use "
            "kind='other')"
        )


def _bounds_shape(bounds: npt.ArrayLike, n: int, *, name: str) -> FloatArray:
    b = _as_float(bounds, name=name)
    if b.shape != (n, 2):
        raise CoordinateError(
            f"{name} have shape {b.shape}, expected ({n}, 2) (one [start, end] pair per cell); "
            "transpose them to (cell, 2), or pass bounds=None to infer them from the centres"
        )
    _check_finite(b, name=name)
    return b


def _unwrap(values: FloatArray, period: float = 360.0) -> FloatArray:
    """Remove jumps larger than half a period, adding exact multiples of the period."""
    if values.size < 2:
        return values.copy()
    turns = np.round(np.diff(values) / period)
    if not turns.any():
        return values.copy()
    out = values.copy()
    out[1:] -= period * np.cumsum(turns)
    return out


def _nearest(values: FloatArray, reference: npt.ArrayLike) -> FloatArray:
    """Shift ``values`` by multiples of 360 to lie within 180 of ``reference``."""
    turns = np.round((np.asarray(reference, dtype=np.float64) - values) / 360.0)
    return np.asarray(values + 360.0 * turns, dtype=np.float64)


# ------------------------------------------------------------------------------------------
# longitude conventions
# ------------------------------------------------------------------------------------------
def longitude_convention(values: npt.ArrayLike, *, slack: float = 0.0) -> float | None:
    """Tell which 360-degree range a set of longitudes uses.

    Parameters
    ----------
    values : array_like, any shape
        Longitudes (degrees); non-finite values are ignored.
    slack : float, optional
        How far (degrees) values may stick out of the range, e.g. half a cell for cell
        vertices of a grid whose centres are inside the range.

    Returns
    -------
    float or None
        ``-180.0`` for ``[-180, 180]`` (also when every value is in ``[0, 180]``), ``0.0`` for
        ``[0, 360]``, or None when the values fit neither range within ``slack``.
    """
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return None
    vmin, vmax = float(v.min()), float(v.max())
    excess_180 = max(-180.0 - vmin, vmax - 180.0, 0.0)
    excess_0 = max(-vmin, vmax - 360.0, 0.0)
    lo, excess = (-180.0, excess_180) if excess_180 <= excess_0 else (0.0, excess_0)
    return lo if excess <= slack else None


def wrap_longitude(values: npt.ArrayLike, lon_min: float) -> FloatArray:
    """Map longitudes into ``[lon_min, lon_min + 360)``.

    Values already in the range are returned unchanged (bit for bit).

    Parameters
    ----------
    values : array_like, any shape
        Longitudes (degrees).
    lon_min : float
        Start of the range, typically ``0.0`` or ``-180.0``.

    Returns
    -------
    numpy.ndarray of float64, same shape as ``values``
    """
    v = np.asarray(values, dtype=np.float64)
    hi = lon_min + 360.0
    shifted = v - 360.0 * np.floor((v - lon_min) / 360.0)
    # rounding can land a hair outside: -1e-14 + 360 gives 360, 179.99999999999997 - 360
    # gives -180.00000000000003
    shifted = np.where(shifted < lon_min, shifted + 360.0, shifted)
    shifted = np.where(shifted >= hi, lon_min, shifted)
    inside = (v >= lon_min) & (v < hi)
    return np.asarray(np.where(inside, v, shifted), dtype=np.float64)


# ------------------------------------------------------------------------------------------
# 1-D coordinates
# ------------------------------------------------------------------------------------------
def check_monotonic(values: npt.ArrayLike, *, name: str, period: float | None = None) -> int:
    """Check that a 1-D coordinate is finite and strictly monotonic.

    Parameters
    ----------
    values : array_like, shape ``(n,)``
        Coordinate values, ``n >= 2``.
    name : str
        Name of the coordinate, used in error messages.
    period : float, optional
        For longitudes pass ``360``: jumps of more than half a period are taken as wraps
        (e.g. ``170, 175, -180, -175`` is increasing).

    Returns
    -------
    int
        ``+1`` if increasing, ``-1`` if decreasing.

    Raises
    ------
    CoordinateError
        If the coordinate is not 1-D, has fewer than 2 values, holds NaN/inf, or is not
        strictly monotonic (the message names the first offending index).
    """
    v = _as_1d(values, name=f"coordinate {name!r}")
    if v.size < 2:
        raise CoordinateError(
            f"coordinate {name!r} has {v.size} value(s); at least 2 are needed to tell its "
            "direction and infer cell bounds: give explicit bounds or use a longer coordinate"
        )
    _check_finite(v, name=f"coordinate {name!r}")
    u = _unwrap(v, period) if period is not None else v
    d = np.diff(u)
    direction = 1 if d[0] > 0 else -1
    bad = np.flatnonzero(d * direction <= 0)
    if d[0] == 0 or bad.size:
        k = 0 if d[0] == 0 else int(bad[0])
        order = "increasing" if direction > 0 else "decreasing"
        hint = ""
        if period is None and np.abs(d).max() > 180.0:
            hint = (
                " (for a longitude that wraps around 0/360 or the dateline use "
                "kind='longitude', or period=360 here)"
            )
        raise CoordinateError(
            f"coordinate {name!r} is not strictly monotonic: the value {float(v[k + 1])!r} "
            f"at index {k + 1} does not continue the {order} order after {float(v[k])!r} at "
            f"index {k}; "
            "allowed are strictly increasing or strictly decreasing values: sort the data "
            f"along this dimension (e.g. ds.sortby({name!r})) and drop duplicates{hint}"
        )
    return direction


def regular_spacing(values: npt.ArrayLike, *, rtol: float = 1e-6) -> float | None:
    """Spacing of a regularly spaced 1-D coordinate.

    Parameters
    ----------
    values : array_like, shape ``(n,)``
        Coordinate values.
    rtol : float, optional
        Allowed relative deviation of every step from the mean step.

    Returns
    -------
    float or None
        The (signed) mean step if every step equals it within ``rtol``; None if the
        coordinate is irregular, has fewer than 2 values, or holds non-finite values.
    """
    v = _as_1d(values, name="values")
    if v.size < 2 or not np.isfinite(v).all():
        return None
    step = (v[-1] - v[0]) / (v.size - 1)
    if step == 0 or np.max(np.abs(np.diff(v) - step)) > rtol * abs(step):
        return None
    return float(step)


def infer_bounds_1d(
    centres: npt.ArrayLike, *, kind: Kind = "other", name: str | None = None
) -> FloatArray:
    """Infer cell bounds from cell centres.

    Interior edges are midpoints between neighbouring centres; the two outer edges are
    extrapolated by half the adjacent spacing.

    Parameters
    ----------
    centres : array_like, shape ``(n,)``
        Strictly monotonic cell centres, ``n >= 2``.  Longitudes may wrap (e.g.
        ``..., 179.5, -179.5, ...``).
    kind : {"latitude", "longitude", "other"}, optional
        ``"latitude"`` clips the bounds to ``[-90, 90]``; ``"longitude"`` handles wrapping
        (each cell's bounds are kept within 180 degrees of its centre).
    name : str, optional
        Coordinate name for error messages.

    Returns
    -------
    numpy.ndarray of float64, shape ``(n, 2)``
        Bounds following the direction of the coordinate (CF).

    Raises
    ------
    CoordinateError
        If the centres are not finite and strictly monotonic, or fewer than 2, or latitudes
        outside ``[-90, 90]``.
    """
    _check_kind(kind)
    nm = name or kind
    c = _as_1d(centres, name=f"coordinate {nm!r}")
    lon = kind == "longitude"
    check_monotonic(c, name=nm, period=360.0 if lon else None)
    if kind == "latitude":
        _check_latitude(c, name=f"latitude {nm!r}")
    u = _unwrap(c) if lon else c
    edges = np.empty(c.size + 1)
    edges[1:-1] = 0.5 * (u[:-1] + u[1:])
    edges[0] = u[0] - 0.5 * (u[1] - u[0])
    edges[-1] = u[-1] + 0.5 * (u[-1] - u[-2])
    bounds = np.stack([edges[:-1], edges[1:]], axis=1)
    if kind == "latitude":
        np.clip(bounds, -90.0, 90.0, out=bounds)
    if lon:
        bounds += (c - u)[:, None]
    return bounds


def _inside_tolerance(b0: FloatArray, b1: FloatArray, width: FloatArray) -> FloatArray:
    """How far a centre may lie outside its bounds (rounding of float32-stored values)."""
    return np.asarray(1e-6 * (np.abs(b0) + np.abs(b1)) + 1e-4 * width, dtype=np.float64)


def _lon_bounds_around(
    c: FloatArray, b: FloatArray, direction: int | None, *, name: str
) -> FloatArray:
    """Longitude bounds made continuous and shifted by 360s to contain their centres."""
    b0, b1 = b[:, 0], b[:, 1]
    raw = b1 - b0
    if direction is None:  # single cell: raw order if it contains the centre, else wrapped
        inside = (min(b0[0], b1[0]) <= c[0] <= max(b0[0], b1[0])) and raw[0] != 0
        direction = int(np.sign(raw[0])) if inside else (-int(np.sign(raw[0])) or 1)
    d = direction * raw
    width = np.where((d > 0) & (d <= 360.0), d, np.mod(d, 360.0))
    width = np.where((width == 0) & (d != 0), 360.0, width)
    b1u = b1 + 360.0 * np.round((direction * width - raw) / 360.0)
    lo = np.minimum(b0, b1u)
    tol = _inside_tolerance(b0, b1, width)
    turns = np.floor((c - lo + tol) / 360.0)
    bad = (width == 0) | (c - lo - 360.0 * turns > width + tol)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise CoordinateError(
            f"longitude {name!r}: the centre {float(c[i])!r} of cell {i} is not inside its "
            f"bounds [{float(b0[i])!r}, {float(b1[i])!r}], even allowing for 360-degree "
            "wrapping; allowed are bounds of non-zero width that contain their centre: fix the "
            "bounds variable or pass bounds=None to infer them"
        )
    shift = 360.0 * turns
    return np.stack([b0 + shift, b1u + shift], axis=1)


def _lon_steps_ok(c: FloatArray, direction: int) -> bool:
    """Whether longitudes ``c`` go round in ``direction`` with every step in (0, 360) and
    less than one turn in all (steps modulo 360)."""
    steps = np.mod(direction * np.diff(c), 360.0)
    return bool((steps > 0).all() and steps.sum() < 360.0)


def _lon_bounds_given(c: FloatArray, b: FloatArray, *, name: str) -> FloatArray:
    """Longitude bounds made continuous around their centres (:func:`_lon_bounds_around`),
    in the direction that the centres and the bounds agree on.

    Centres alone read a step of more than 180 degrees as a wrap the other way; with bounds
    given, a grid of such wide cells (two 180-degree cells, or a 240-degree one) is taken in
    the direction in which its bounds hold its centres.
    """
    if c.size < 2:
        return _lon_bounds_around(c, b, None, name=name)
    try:
        first: int | None = check_monotonic(c, name=name, period=360.0)
    except CoordinateError as e:
        first, error = None, e
    candidates = [d for d in (first, 1, -1) if d is not None]
    for d in dict.fromkeys(candidates):
        if d != first and not _lon_steps_ok(c, d):
            continue
        try:
            return _lon_bounds_around(c, b, d, name=name)
        except CoordinateError as e:
            if d == first:
                error = e
    raise error


def _validated_bounds_1d(
    c: FloatArray, bounds: npt.ArrayLike, kind: Kind, *, name: str
) -> FloatArray:
    b = _bounds_shape(bounds, c.size, name=f"bounds of {name!r}")
    lon = kind == "longitude"
    if lon:
        return _lon_bounds_given(c, b, name=name)
    direction = check_monotonic(c, name=name) if c.size > 1 else None
    if kind == "latitude":
        _check_latitude(c, name=f"latitude {name!r}")
        _check_latitude(b, name=f"latitude bounds of {name!r}", atol=1e-6)
        b = np.clip(b, -90.0, 90.0)
    raw = b[:, 1] - b[:, 0]
    if direction is None:
        direction = 1 if raw[0] >= 0 else -1
    width = direction * raw
    lo = np.minimum(b[:, 0], b[:, 1])
    tol = _inside_tolerance(b[:, 0], b[:, 1], np.abs(width))
    bad_dir = width <= 0
    if bad_dir.any():
        i = int(np.flatnonzero(bad_dir)[0])
        order = "increasing" if direction > 0 else "decreasing"
        raise CoordinateError(
            f"bounds of {name!r}: cell {i} has bounds [{float(b[i, 0])!r}, "
            f"{float(b[i, 1])!r}], which have zero width or do not follow the {order} "
            "direction of the coordinate; allowed "
            "are bounds ordered like the coordinate (CF): swap the two bounds columns or pass "
            "bounds=None to infer them" + (" (for longitudes use kind='longitude')" * (not lon))
        )
    bad = (c < lo - tol) | (c > lo + width + tol)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise CoordinateError(
            f"bounds of {name!r}: the centre {float(c[i])!r} of cell {i} is not inside its "
            f"bounds [{float(b[i, 0])!r}, {float(b[i, 1])!r}]; every centre must lie within "
            "its cell: fix the bounds variable, pass bounds=None to infer them, or use "
            "kind='longitude' if the bounds wrap around 360 degrees"
        )
    return b


def refine_1d(
    centres: npt.ArrayLike,
    factor: int,
    *,
    bounds: npt.ArrayLike | None = None,
    kind: Kind = "other",
    name: str | None = None,
) -> tuple[FloatArray, FloatArray]:
    """Subdivide every cell of a 1-D coordinate into ``factor`` equal sub-cells.

    Parameters
    ----------
    centres : array_like, shape ``(n,)``
        Cell centres, strictly monotonic (``n >= 2`` unless ``bounds`` is given).
    factor : int
        Number of sub-cells per cell (``>= 1``; 1 returns the cells unchanged).
    bounds : array_like, shape ``(n, 2)``, optional
        Cell bounds (CF order).  Inferred with :func:`infer_bounds_1d` when omitted.  Each
        centre must lie inside its bounds.  With ``kind="longitude"`` bounds may wrap
        (``[359.9, 0.1]``, ``[179.9, -179.9]``).
    kind : {"latitude", "longitude", "other"}, optional
        Coordinate kind (see :func:`infer_bounds_1d`).
    name : str, optional
        Coordinate name for error messages.

    Returns
    -------
    fine_centres : numpy.ndarray of float64, shape ``(n * factor,)``
        Midpoints of the fine bounds.
    fine_bounds : numpy.ndarray of float64, shape ``(n * factor, 2)``
        Cell ``[b0, b1]`` becomes the edges ``b0 + (b1 - b0) * k / factor``; the outer edges
        of each coarse cell are reproduced exactly.

    Notes
    -----
    Longitudes: fine centres are returned in the input's convention (``[-180, 180)`` when the
    centres are within ``[-180, 180]``, which includes ``[0, 180]``; else ``[0, 360)`` when
    within ``[0, 360]``; else left next to their coarse centre), each fine cell's bounds
    being shifted with its centre.  So a 0..360 grid whose first cell straddles 0 (centre 0,
    bounds [-0.5, 0.5]) gives a fine coordinate that wraps (359.75, 0.25, ...), which is
    monotonic only modulo 360 (``check_monotonic(..., period=360)`` accepts it).

    Raises
    ------
    FactorError
        If ``factor`` is not an integer >= 1.
    CoordinateError
        If the centres or bounds are unusable (non-finite, non-monotonic, wrong shape,
        centre outside its bounds, latitude outside [-90, 90]).
    """
    _check_kind(kind)
    f = _check_factor(factor)
    nm = name or kind
    c = _as_1d(centres, name=f"coordinate {nm!r}")
    _check_finite(c, name=f"coordinate {nm!r}")
    if bounds is None:
        b = infer_bounds_1d(c, kind=kind, name=nm)
    else:
        b = _validated_bounds_1d(c, bounds, kind, name=nm)
    t = np.arange(f + 1, dtype=np.float64) / f
    edges = b[:, :1] * (1.0 - t) + b[:, 1:] * t  # (n, f + 1), exact at t = 0 and t = 1
    fine_b = np.stack([edges[:, :-1], edges[:, 1:]], axis=-1).reshape(-1, 2)
    fine_c = 0.5 * (fine_b[:, 0] + fine_b[:, 1])
    if kind == "longitude":
        lo = longitude_convention(c)
        if lo is not None:
            wrapped = wrap_longitude(fine_c, lo)
            fine_b = fine_b + 360.0 * np.round((wrapped - fine_c) / 360.0)[:, None]
            fine_c = wrapped
    return fine_c, fine_b


def coarsen_1d(
    fine_centres: npt.ArrayLike,
    fine_bounds: npt.ArrayLike,
    factor: int,
    *,
    kind: Kind = "other",
    name: str | None = None,
) -> tuple[FloatArray, FloatArray]:
    """Merge every ``factor`` consecutive cells of a 1-D coordinate (inverse of refine_1d).

    Parameters
    ----------
    fine_centres : array_like, shape ``(m,)``
        Fine cell centres; ``m`` must be a multiple of ``factor``.
    fine_bounds : array_like, shape ``(m, 2)``
        Fine cell bounds (CF order).
    factor : int
        Number of fine cells per coarse cell (``>= 1``).
    kind : {"latitude", "longitude", "other"}, optional
        With ``"longitude"`` the centres are averaged modulo 360 and returned in the
        convention of ``fine_centres``, and each coarse cell's bounds are shifted by 360s
        to lie within 180 degrees of its centre.  Pass it whenever the fine cells may wrap.
    name : str, optional
        Coordinate name for error messages.

    Returns
    -------
    centres : numpy.ndarray of float64, shape ``(m // factor,)``
        Mean of each group of ``factor`` fine centres.
    bounds : numpy.ndarray of float64, shape ``(m // factor, 2)``
        ``[fine_bounds[i * f, 0], fine_bounds[i * f + f - 1, 1]]``.

    Raises
    ------
    FactorError
        If ``factor`` is not an integer >= 1.
    ShapeError
        If ``m`` is not a multiple of ``factor``.
    CoordinateError
        If the inputs are not finite or the bounds do not have shape ``(m, 2)``.
    """
    _check_kind(kind)
    f = _check_factor(factor)
    nm = name or kind
    fc = _as_1d(fine_centres, name=f"coordinate {nm!r}")
    _check_finite(fc, name=f"coordinate {nm!r}")
    fb = _bounds_shape(fine_bounds, fc.size, name=f"bounds of {nm!r}")
    m = fc.size
    if m % f:
        raise ShapeError(
            f"coordinate {nm!r} has {m} cells, not a multiple of factor {f}; allowed are "
            f"lengths divisible by {f}: trim it to {m - m % f} or pad it to {m + f - m % f} "
            "cells before coarsening"
        )
    n = m // f
    groups = fb.reshape(n, f, 2)
    bounds = np.stack([groups[:, 0, 0], groups[:, -1, 1]], axis=1)
    cg = fc.reshape(n, f)
    if kind == "longitude":
        cg = _nearest(cg, cg[:, :1])
    centres = cg.mean(axis=1)
    if kind == "longitude":
        lo = longitude_convention(fc)
        if lo is not None:
            centres = wrap_longitude(centres, lo)
        bounds = _nearest(bounds, centres[:, None])
    return centres, bounds


def is_periodic_longitude(
    centres: npt.ArrayLike, bounds: npt.ArrayLike | None = None, *, rtol: float = 0.01
) -> bool:
    """Whether a 1-D longitude coordinate covers exactly 360 degrees.

    Parameters
    ----------
    centres : array_like, shape ``(n,)``
        Longitudes (degrees), monotonic modulo 360.
    bounds : array_like, shape ``(n, 2)``, optional
        Cell bounds; inferred from the centres when omitted.
    rtol : float, optional
        Tolerance on the covered span, relative to the mean cell width.

    Returns
    -------
    bool
        True if the cells together span 360 degrees (so the last cell is followed by the
        first), e.g. ``0.125, 0.375, ..., 359.875``; False for regional grids and for
        global grids with a repeated cyclic column (``0, 1, ..., 360``).

    Raises
    ------
    CoordinateError
        If the coordinate or its bounds are unusable (see :func:`refine_1d`).
    """
    c = _as_1d(centres, name="longitude")
    _check_finite(c, name="longitude")
    if bounds is None:
        if c.size < 2:
            return False
        b = infer_bounds_1d(c, kind="longitude", name="longitude")
    else:
        b = _validated_bounds_1d(c, bounds, "longitude", name="longitude")
    u = _unwrap(c)
    bu = b + (u - c)[:, None]
    span = abs(bu[-1, 1] - bu[0, 0])
    mean_width = float(np.mean(np.abs(bu[:, 1] - bu[:, 0])))
    return bool(abs(span - 360.0) <= rtol * mean_width)


# ------------------------------------------------------------------------------------------
# areas of rectilinear cells
# ------------------------------------------------------------------------------------------
def _lon_widths(b: FloatArray) -> FloatArray:
    """Positive widths (degrees) of longitude cells, wrap-aware.

    A cell wider than 180 degrees whose bounds run against the direction of the other
    cells (or any such cell when there is no other cell to compare with) is taken as
    wrapped: ``[359, 1]`` is 2 degrees wide.  ``[0, 360]`` is 360 degrees wide.
    """
    raw = b[:, 1] - b[:, 0]
    width = np.abs(raw)
    normal = width <= 180.0
    ambiguous = (width > 180.0) & (width < 360.0)
    if normal.any():
        direction = np.sign(np.sum(np.sign(raw[normal]))) or 1.0
        wrapped = ambiguous & (np.sign(raw) != direction)
    else:
        wrapped = ambiguous
    width = np.where(wrapped, 360.0 - width, width)
    too_wide = np.abs(raw) > 360.0
    if too_wide.any():
        i = int(np.flatnonzero(too_wide)[0])
        raise CoordinateError(
            f"longitude bounds of cell {i} are [{float(b[i, 0])!r}, {float(b[i, 1])!r}], "
            "wider than 360 degrees; allowed are cells at most 360 degrees wide: check the "
            "units (degrees) and the bounds variable"
        )
    return np.asarray(width, dtype=np.float64)


def cell_area_lonlat(
    lat_bounds: npt.ArrayLike, lon_bounds: npt.ArrayLike, *, radius: float = EARTH_RADIUS
) -> FloatArray:
    """Exact areas of the cells of a regular latitude-longitude grid.

    The areas are the outer product of :func:`cell_area_factors` (``kind="lonlat"``).

    ``area = R**2 * |sin(lat1) - sin(lat0)| * |lon1 - lon0|`` (longitude difference in
    radians, wrap-aware: ``[359.9, 0.1]`` is 0.2 degrees wide).

    Parameters
    ----------
    lat_bounds : array_like, shape ``(ny, 2)``
        Latitude bounds (degrees) in ``[-90, 90]``.
    lon_bounds : array_like, shape ``(nx, 2)``
        Longitude bounds (degrees).
    radius : float, optional
        Sphere radius (m); the areas are in ``radius`` units squared.

    Returns
    -------
    numpy.ndarray of float64, shape ``(ny, nx)``
    """
    a_y, a_x = cell_area_factors(lat_bounds, lon_bounds, kind="lonlat", radius=radius)
    return np.asarray(a_y[:, None] * a_x[None, :], dtype=np.float64)


def cell_area_factors(
    y_bounds: npt.ArrayLike,
    x_bounds: npt.ArrayLike,
    *,
    kind: Literal["lonlat", "xy"],
    radius: float = EARTH_RADIUS,
) -> tuple[FloatArray, FloatArray]:
    """Separable cell areas of a rectilinear grid: ``area = a_y[:, None] * a_x[None, :]``.

    Large fine grids need their cell areas block by block; the two factors describe them
    all in ``O(ny + nx)`` memory and give exactly (bit for bit) the values of
    :func:`cell_area_lonlat` and :func:`cell_area_xy`.

    Parameters
    ----------
    y_bounds : array_like, shape ``(ny, 2)``
        Latitude bounds (degrees) for ``kind="lonlat"``, y bounds for ``kind="xy"``.
    x_bounds : array_like, shape ``(nx, 2)``
        Longitude bounds (degrees) or x bounds.
    kind : {"lonlat", "xy"}
        Spherical latitude-longitude cells, or planar (projected) cells.
    radius : float, optional
        Sphere radius (m), for ``kind="lonlat"``.

    Returns
    -------
    a_y : numpy.ndarray of float64, shape ``(ny,)``
        ``R**2 * |sin(lat1) - sin(lat0)|`` (lonlat) or ``|dy|`` (xy).
    a_x : numpy.ndarray of float64, shape ``(nx,)``
        Longitude widths in radians (wrap-aware) or ``|dx|``.
    """
    if kind not in ("lonlat", "xy"):
        raise OptionError(f"kind must be 'lonlat' or 'xy', got {kind!r}")
    names = ("lat_bounds", "lon_bounds") if kind == "lonlat" else ("y_bounds", "x_bounds")
    yb = _as_float(y_bounds, name=names[0])
    xb = _as_float(x_bounds, name=names[1])
    for arr, nm in ((yb, names[0]), (xb, names[1])):
        if arr.ndim != 2 or arr.shape[1] != 2:
            raise ShapeError(
                f"{nm} must have shape (n, 2), got {arr.shape}; pass the CF bounds of the "
                "1-D coordinate (e.g. from infer_bounds_1d)"
            )
        _check_finite(arr, name=nm)
    if kind == "xy":
        return np.abs(yb[:, 1] - yb[:, 0]), np.abs(xb[:, 1] - xb[:, 0])
    r = _check_radius(radius)
    _check_latitude(yb, name="lat_bounds", atol=1e-6)
    s = np.sin(np.deg2rad(np.clip(yb, -90.0, 90.0)))
    dsin = np.abs(s[:, 1] - s[:, 0])
    return r * r * dsin, np.deg2rad(_lon_widths(xb))


def cell_area_xy(y_bounds: npt.ArrayLike, x_bounds: npt.ArrayLike) -> FloatArray:
    """Areas ``|dy| * |dx|`` of the cells of a rectilinear projected grid.

    Parameters
    ----------
    y_bounds : array_like, shape ``(ny, 2)``
        Bounds of the y coordinate.
    x_bounds : array_like, shape ``(nx, 2)``
        Bounds of the x coordinate.

    Returns
    -------
    numpy.ndarray of float64, shape ``(ny, nx)``
        In the squared units of the coordinates.
    """
    dy, dx = cell_area_factors(y_bounds, x_bounds, kind="xy")
    return np.asarray(dy[:, None] * dx[None, :], dtype=np.float64)


# ------------------------------------------------------------------------------------------
# curvilinear grids
# ------------------------------------------------------------------------------------------
def _to_xyz(lat: FloatArray, lon: FloatArray) -> FloatArray:
    """Unit vectors, components first: shape ``(3, *lat.shape)``."""
    phi = np.deg2rad(lat)
    lam = np.deg2rad(lon)
    cphi = np.cos(phi)
    return np.stack([cphi * np.cos(lam), cphi * np.sin(lam), np.sin(phi)])


def _to_latlon(p: FloatArray, *, what: str) -> tuple[FloatArray, FloatArray]:
    """Latitude/longitude (degrees) of vectors ``p`` (components first, any length > 0)."""
    x, y, z = p[0], p[1], p[2]
    h = np.hypot(x, y)
    tiny = (h < 1e-12) & (np.abs(z) < 1e-12)
    if tiny.any():
        idx = tuple(int(i) for i in np.argwhere(tiny)[0])
        raise CoordinateError(
            f"cannot place {what} at index {idx}: the surrounding points cancel out on the "
            "sphere (antipodal or folded grid); allowed are grids whose neighbouring points "
            "are much less than 90 degrees apart: check the latitude/longitude arrays"
        )
    return np.rad2deg(np.arctan2(z, h)), np.rad2deg(np.arctan2(y, x))


def _check_pair_2d(
    lat: npt.ArrayLike, lon: npt.ArrayLike, *, names: tuple[str, str]
) -> tuple[FloatArray, FloatArray]:
    la = _as_float(lat, name=names[0])
    lo = _as_float(lon, name=names[1])
    if la.ndim != 2 or la.shape != lo.shape:
        raise ShapeError(
            f"{names[0]} and {names[1]} must be 2-D arrays of the same shape, got {la.shape} "
            f"and {lo.shape}; transpose them to (y, x)"
        )
    if min(la.shape) < 2:
        raise ShapeError(
            f"{names[0]}/{names[1]} have shape {la.shape}; at least 2 points are needed "
            "along each axis: use a larger grid"
        )
    _check_finite(la, name=names[0])
    _check_finite(lo, name=names[1])
    _check_latitude(la, name=names[0], atol=1e-6)
    return np.clip(la, -90.0, 90.0), lo


def _reflect(inner: FloatArray, edge: FloatArray) -> FloatArray:
    """``inner`` rotated by 180 degrees about ``edge`` (unit vectors, components first)."""
    return np.asarray(2.0 * np.sum(inner * edge, axis=0) * edge - inner, dtype=np.float64)


def _output_lon(lon: FloatArray, lon_min: float | None, reference: FloatArray) -> FloatArray:
    """Longitudes outside ``[lon_min, lon_min + 360]`` wrapped into it, or else (no
    ``lon_min``) each shifted to within 180 degrees of ``reference``."""
    if lon_min is None:
        return _nearest(lon, reference)
    outside = (lon < lon_min) | (lon > lon_min + 360.0)
    return np.where(outside, wrap_longitude(lon, lon_min), lon)


def vertices_from_centres_2d(
    lat2d: npt.ArrayLike, lon2d: npt.ArrayLike, *, periodic_x: bool = False
) -> tuple[FloatArray, FloatArray]:
    """Estimate the cell corners of a curvilinear grid from its cell centres.

    Works on the unit sphere: the centre grid is extended by one row/column on each side
    along great circles (the outer neighbour of edge centre ``p0`` with inner neighbour
    ``p1`` is ``p1`` rotated by 180 degrees about ``p0``), and each corner is the normalised
    mean of the 4 surrounding (possibly extrapolated) centres.  Robust across the dateline
    and at the poles: a regular global grid gets its outer corners exactly on the poles.

    Parameters
    ----------
    lat2d, lon2d : array_like, shape ``(ny, nx)``
        Centre latitudes and longitudes (degrees), ``ny, nx >= 2``.
    periodic_x : bool, optional
        The grid wraps around along x (the column after the last is the first), as in
        global ocean grids (POP, NEMO): the corners on the seam are then shared by the first
        and last columns instead of being extrapolated.

    Returns
    -------
    lat_v, lon_v : numpy.ndarray of float64, shape ``(ny + 1, nx + 1)``
        Corner latitudes and longitudes.  Longitudes are in the convention of ``lon2d``
        (``[0, 360]`` or ``[-180, 180]``, see :func:`longitude_convention`; corners outside
        it are wrapped in); when ``lon2d`` fits neither, each corner is within 180 degrees
        of an adjacent centre.

    Raises
    ------
    ShapeError
        If the arrays differ in shape or have fewer than 2 points along an axis.
    CoordinateError
        If the coordinates are non-finite or latitudes are outside ``[-90, 90]``.
    """
    la, lo = _check_pair_2d(lat2d, lon2d, names=("lat2d", "lon2d"))
    ny, nx = la.shape
    p = _to_xyz(la, lo)
    e = np.empty((3, ny + 2, nx + 2))
    e[:, 1:-1, 1:-1] = p
    e[:, 0, 1:-1] = _reflect(p[:, 1], p[:, 0])
    e[:, -1, 1:-1] = _reflect(p[:, -2], p[:, -1])
    if periodic_x:
        e[:, :, 0] = e[:, :, -2]
        e[:, :, -1] = e[:, :, 1]
    else:
        e[:, :, 0] = _reflect(e[:, :, 2], e[:, :, 1])
        e[:, :, -1] = _reflect(e[:, :, -3], e[:, :, -2])
    v = e[:, :-1, :-1] + e[:, :-1, 1:] + e[:, 1:, :-1] + e[:, 1:, 1:]
    lat_v, lon_v = _to_latlon(v, what="a cell corner")
    jr = np.minimum(np.arange(ny + 1), ny - 1)
    ir = np.minimum(np.arange(nx + 1), nx - 1)
    return lat_v, _output_lon(lon_v, longitude_convention(lo), lo[np.ix_(jr, ir)])


def _cell_reference_lon(lon_v: FloatArray) -> FloatArray:
    """Mean corner longitude of each cell, corners unwrapped around corner (j, i)."""
    c00 = lon_v[:-1, :-1]
    total = (
        c00
        + _nearest(lon_v[:-1, 1:], c00)
        + _nearest(lon_v[1:, 1:], c00)
        + _nearest(lon_v[1:, :-1], c00)
    )
    return np.asarray(0.25 * total, dtype=np.float64)


def _vertex_lon_range(lon_v: FloatArray, lon_min: float | Literal["auto"] | None) -> float | None:
    if lon_min is None:
        return None
    if isinstance(lon_min, str):
        if lon_min != "auto":
            raise OptionError(
                f"lon_min must be 'auto', None or a number, got {lon_min!r}; use 'auto' to "
                "keep the convention of the input"
            )
        # corners may stick out of the centres' range by half a cell
        return longitude_convention(lon_v, slack=90.0)
    return float(lon_min)


def centres_from_vertices_2d(
    lat_v: npt.ArrayLike,
    lon_v: npt.ArrayLike,
    *,
    lon_min: float | Literal["auto"] | None = "auto",
) -> tuple[FloatArray, FloatArray]:
    """Cell centres as the normalised mean of the 4 corner unit vectors.

    Parameters
    ----------
    lat_v, lon_v : array_like, shape ``(ny + 1, nx + 1)``
        Corner latitudes and longitudes (degrees).
    lon_min : float, "auto" or None, optional
        Output longitudes outside ``[lon_min, lon_min + 360]`` are wrapped into it;
        ``"auto"`` detects ``0`` or ``-180`` from ``lon_v``; None keeps each centre within
        180 degrees of the mean of its corner longitudes.

    Returns
    -------
    lat_c, lon_c : numpy.ndarray of float64, shape ``(ny, nx)``
    """
    la, lo = _check_pair_2d(lat_v, lon_v, names=("lat_v", "lon_v"))
    v = _to_xyz(la, lo)
    s = v[:, :-1, :-1] + v[:, :-1, 1:] + v[:, 1:, 1:] + v[:, 1:, :-1]
    lat_c, lon_c = _to_latlon(s, what="a cell centre")
    lon_range = _vertex_lon_range(lo, lon_min)
    ref = _cell_reference_lon(lo) if lon_range is None else lon_c
    return lat_c, _output_lon(lon_c, lon_range, ref)


def bounds_to_vertices_2d(bounds: npt.ArrayLike, *, check: bool = True) -> FloatArray:
    """Convert CF cell bounds ``(ny, nx, 4)`` into a vertex array ``(ny + 1, nx + 1)``.

    Parameters
    ----------
    bounds : array_like, shape ``(ny, nx, 4)``
        Corners of each cell, counterclockwise from corner ``(j, i)``:
        ``[v[j, i], v[j, i + 1], v[j + 1, i + 1], v[j + 1, i]]`` (CF).
    check : bool, optional
        Verify that neighbouring cells share their corners (to 1e-3 of the typical cell
        size, and modulo 360 so that longitude bounds written per cell are accepted).

    Returns
    -------
    numpy.ndarray of float64, shape ``(ny + 1, nx + 1)``
        ``v[j, i]`` is corner 0 of cell ``(j, i)``; the last row/column come from the last
        row/column of cells.

    Raises
    ------
    ShapeError
        If ``bounds`` is not ``(ny, nx, 4)``.
    CoordinateError
        If the cells do not share corners (the grid is not contiguous), with ``check``.
    """
    b = _as_float(bounds, name="bounds")
    if b.ndim != 3 or b.shape[2] != 4 or 0 in b.shape:
        raise ShapeError(
            f"2-D cell bounds must have shape (ny, nx, 4), got {b.shape}; transpose the "
            "bounds variable to (y, x, vertex)"
        )
    _check_finite(b, name="bounds")
    ny, nx = b.shape[:2]
    v = np.empty((ny + 1, nx + 1))
    v[:-1, :-1] = b[:, :, 0]
    v[:-1, -1] = b[:, -1, 1]
    v[-1, -1] = b[-1, -1, 2]
    v[-1, :-1] = b[-1, :, 3]
    if check:
        # each shared corner as given by the two cells on either side of an edge
        pairs = (
            (b[:, :-1, 1], b[:, 1:, 0]),
            (b[:, :-1, 2], b[:, 1:, 3]),
            (b[:-1, :, 3], b[1:, :, 0]),
            (b[:-1, :, 2], b[1:, :, 1]),
        )
        scale = float(
            np.median(np.abs(b[..., 1] - b[..., 0])) + np.median(np.abs(b[..., 3] - b[..., 0]))
        )
        atol = 1e-3 * scale if scale > 0 else 1e-9
        for first, second in pairs:
            diff = first - second
            diff = diff - 360.0 * np.round(diff / 360.0)
            bad = np.abs(diff) > atol
            if bad.any():
                j, i = (int(k) for k in np.argwhere(bad)[0])
                raise CoordinateError(
                    f"2-D bounds are not contiguous: near cell ({j}, {i}) two neighbouring "
                    f"cells give a shared corner as {float(first[j, i])!r} and "
                    f"{float(second[j, i])!r}; "
                    "allowed are bounds in CF order whose neighbouring cells share corners: "
                    "check the vertex order (counterclockwise from (j, i)) or pass check=False"
                )
    return v


def vertices_to_bounds_2d(vertices: npt.ArrayLike) -> FloatArray:
    """Convert a vertex array ``(ny + 1, nx + 1)`` into CF cell bounds ``(ny, nx, 4)``.

    Parameters
    ----------
    vertices : array_like, shape ``(ny + 1, nx + 1)``

    Returns
    -------
    numpy.ndarray of float64, shape ``(ny, nx, 4)``
        ``[v[j, i], v[j, i + 1], v[j + 1, i + 1], v[j + 1, i]]`` for each cell.
    """
    v = _as_float(vertices, name="vertices")
    if v.ndim != 2 or min(v.shape) < 2:
        raise ShapeError(
            f"vertices must be a 2-D array of shape (ny + 1, nx + 1) with ny, nx >= 1, got "
            f"{v.shape}; build it with vertices_from_centres_2d or bounds_to_vertices_2d"
        )
    return np.stack([v[:-1, :-1], v[:-1, 1:], v[1:, 1:], v[1:, :-1]], axis=-1)


def _fine_positions(
    n: int, f: int, *, centres: bool, anchored: bool = False
) -> tuple[npt.NDArray[np.intp], FloatArray]:
    """Cell index and fractional position in it of each fine vertex / centre.

    The cells are the coarse cells, or with ``anchored`` their halves (the cells of the
    control net of :func:`refine_curvilinear`, ``2 n`` along the axis).  Positions are
    computed in integers first, so that a point on a cell boundary gets fraction 0 exactly.
    """
    k = np.arange(n * f + (0 if centres else 1))
    num = 2 * k + 1 if centres else 2 * k  # position in units of 1 / (2 f) coarse cells
    per = f if anchored else 2 * f  # units per (control) cell
    cells = 2 * n if anchored else n
    cell = np.minimum(num // per, cells - 1)
    frac = (num - cell * per) / float(per)
    return cell.astype(np.intp), np.asarray(frac, dtype=np.float64)


def _bilinear_points(
    v: FloatArray,
    rows: tuple[npt.NDArray[np.intp], FloatArray],
    cols: tuple[npt.NDArray[np.intp], FloatArray],
    *,
    lon_range: float | None,
    ref: FloatArray,
) -> tuple[FloatArray, FloatArray]:
    """Lat/lon of the bilinear mix of each cell's corner unit vectors ``v (3, ny+1, nx+1)``.

    Separable: first along x on every coarse vertex row, then along y.  A point with
    fraction 0 or 1 along one axis mixes only the two corners of that edge, so it lies on
    the great circle through them.
    """
    jj, s = rows
    ii, t = cols
    rowmix = v[:, :, ii] * (1.0 - t) + v[:, :, ii + 1] * t  # (3, ny + 1, len(ii))
    lat = np.empty((jj.size, ii.size))
    lon = np.empty((jj.size, ii.size))
    block = max(1, _BLOCK_POINTS // max(ii.size, 1))
    for start in range(0, jj.size, block):
        sl = slice(start, start + block)
        j = jj[sl]
        s_ = s[sl][:, None]
        p = rowmix[:, j] * (1.0 - s_) + rowmix[:, j + 1] * s_
        la, lo = _to_latlon(p, what="a fine point")
        lat[sl] = la
        lon[sl] = _output_lon(lo, lon_range, ref[np.ix_(j, ii)] if lon_range is None else lo)
    return lat, lon


def _unit(p: FloatArray) -> FloatArray:
    """``p`` (components first) scaled to unit length."""
    return np.asarray(p / np.sqrt(np.sum(p * p, axis=0)), dtype=np.float64)


def _inside_cells(v: FloatArray, c: FloatArray) -> npt.NDArray[np.bool_]:
    """Whether each point ``c (3, ny, nx)`` lies strictly inside its cell of corners
    ``v (3, ny + 1, nx + 1)`` (great-circle edges; either orientation)."""
    ring = (v[:, :-1, :-1], v[:, :-1, 1:], v[:, 1:, 1:], v[:, 1:, :-1])
    signs = [np.sum(np.cross(a, b, axis=0) * c, axis=0) for a, b in zip(ring, ring[1:] + ring[:1])]
    pos = np.all([s_ > 0 for s_ in signs], axis=0)
    neg = np.all([s_ < 0 for s_ in signs], axis=0)
    return np.asarray(pos | neg)


def refine_curvilinear(
    lat_v: npt.ArrayLike,
    lon_v: npt.ArrayLike,
    factor: int,
    *,
    centres: tuple[npt.ArrayLike, npt.ArrayLike] | None = None,
    lon_min: float | Literal["auto"] | None = "auto",
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """Subdivide every cell of a curvilinear grid into ``factor x factor`` sub-cells.

    Each fine point is the bilinear combination of unit vectors of its coarse cell,
    normalised back to the sphere.  Without ``centres`` these are the cell's 4 corners.  With
    ``centres`` the cell is first split into 4 quarters at its centre and at the
    great-circle midpoints of its edges (a control net of 3 x 3 points), and each quarter is
    mixed from its own 4 points, so that the coarse centre is a point of the fine grid: the
    fine corner in the middle of the cell for an even ``factor``, the centre of the middle
    fine cell for an odd one, copied exactly (cells whose centre does not lie inside them
    are split at the mean of their corners instead).  :func:`centre_points_2d` reads the
    coarse centres back from there.

    Points on a coarse edge lie on the great-circle edge, so the fine cells tile each coarse
    cell exactly (in the sense of :func:`cell_area_vertices`), and fine corners that are
    coarse corners are copied exactly.

    Parameters
    ----------
    lat_v, lon_v : array_like, shape ``(ny + 1, nx + 1)``
        Coarse cell corners (degrees), e.g. from :func:`vertices_from_centres_2d` or
        :func:`bounds_to_vertices_2d`.
    factor : int
        Sub-cells per coarse cell along each axis (``>= 1``).
    centres : (lat, lon) of array_like, shape ``(ny, nx)``, optional
        The coarse cell centres (degrees) to anchor the fine grid at.
    lon_min : float, "auto" or None, optional
        Output longitudes outside ``[lon_min, lon_min + 360]`` are wrapped into it (values
        inside are returned unchanged).  ``"auto"`` (default) detects ``0`` or ``-180`` from
        ``lon_v`` with :func:`longitude_convention` (allowing the corners to stick out of
        the range by half a cell); None, or no convention detected, puts each new point
        within 180 degrees of the mean corner longitude of its coarse cell instead.

    Returns
    -------
    lat_c, lon_c : numpy.ndarray of float64, shape ``(ny * factor, nx * factor)``
        Fine cell centres, at fractional positions ``(k + 0.5) / factor`` in each coarse cell
        (in each quarter's own fraction with ``centres``).
    lat_vf, lon_vf : numpy.ndarray of float64, shape ``(ny * factor + 1, nx * factor + 1)``
        Fine cell corners; ``lat_vf[::factor, ::factor]`` is a copy of ``lat_v``, and
        ``lon_vf[::factor, ::factor]`` of ``lon_v`` wrapped into the ``lon_min`` range
        (identical when ``lon_v`` is inside it, as from :func:`vertices_from_centres_2d`).

    Raises
    ------
    FactorError
        If ``factor`` is not an integer >= 1.
    ShapeError, CoordinateError
        If the vertex or centre arrays are unusable.
    """
    f = _check_factor(factor)
    la, lo = _check_pair_2d(lat_v, lon_v, names=("lat_v", "lon_v"))
    ny, nx = la.shape[0] - 1, la.shape[1] - 1
    lon_range = _vertex_lon_range(lo, lon_min)
    ref = _cell_reference_lon(lo) if lon_range is None else lo
    v = _to_xyz(la, lo)
    anchored = centres is not None
    inside = None
    if centres is not None:
        lat_in = _as_float(centres[0], name="centre latitudes")
        lon_in = _as_float(centres[1], name="centre longitudes")
        if lat_in.shape != (ny, nx) or lon_in.shape != (ny, nx):
            raise ShapeError(
                f"centres must have the shape of the cells {(ny, nx)}, got {lat_in.shape} and "
                f"{lon_in.shape}; pass the (y, x) centre arrays of the grid of lat_v/lon_v"
            )
        _check_finite(lat_in, name="centre latitudes")
        _check_finite(lon_in, name="centre longitudes")
        _check_latitude(lat_in, name="centre latitudes", atol=1e-6)
        c = _to_xyz(np.clip(lat_in, -90.0, 90.0), lon_in)
        inside = _inside_cells(v, c)
        mean = _unit(v[:, :-1, :-1] + v[:, :-1, 1:] + v[:, 1:, 1:] + v[:, 1:, :-1])
        net = np.empty((3, 2 * ny + 1, 2 * nx + 1))
        net[:, ::2, ::2] = v
        net[:, 1::2, ::2] = _unit(v[:, :-1, :] + v[:, 1:, :])
        net[:, ::2, 1::2] = _unit(v[:, :, :-1] + v[:, :, 1:])
        net[:, 1::2, 1::2] = np.where(inside, c, mean)
        v = net
        if lon_range is None:
            ref = np.repeat(np.repeat(ref, 2, axis=0), 2, axis=1)
    else:
        lat_in = lon_in = np.empty((0, 0))
    lat_vf, lon_vf = _bilinear_points(
        v,
        _fine_positions(ny, f, centres=False, anchored=anchored),
        _fine_positions(nx, f, centres=False, anchored=anchored),
        lon_range=lon_range,
        ref=ref,
    )
    lat_vf[::f, ::f] = la
    lon_vf[::f, ::f] = lo if lon_range is None else _output_lon(lo, lon_range, lo)
    lat_c, lon_c = _bilinear_points(
        v,
        _fine_positions(ny, f, centres=True, anchored=anchored),
        _fine_positions(nx, f, centres=True, anchored=anchored),
        lon_range=lon_range,
        ref=ref,
    )
    if inside is not None:
        # the anchor points are the given centres, bit for bit
        h = f // 2
        lat_t, lon_t = (lat_vf, lon_vf) if f % 2 == 0 else (lat_c, lon_c)
        lon_out = lon_in if lon_range is None else _output_lon(lon_in, lon_range, lon_in)
        lat_t[h::f, h::f][:ny, :nx] = np.where(inside, lat_in, lat_t[h::f, h::f][:ny, :nx])
        lon_t[h::f, h::f][:ny, :nx] = np.where(inside, lon_out, lon_t[h::f, h::f][:ny, :nx])
    return lat_c, lon_c, lat_vf, lon_vf


def centre_points_2d(
    lat_c: npt.ArrayLike,
    lon_c: npt.ArrayLike,
    lat_v: npt.ArrayLike | None,
    lon_v: npt.ArrayLike | None,
    factor: int,
) -> tuple[FloatArray, FloatArray]:
    """Centres of the ``factor x factor`` blocks of a curvilinear grid: its middle points.

    For an even ``factor`` the fine corner in the middle of each block, for an odd one the
    centre of its middle cell: the points where :func:`refine_curvilinear` puts the coarse
    centres it is given, which come back bit for bit.

    Parameters
    ----------
    lat_c, lon_c : array_like, shape ``(ny, nx)``
        Fine cell centres (degrees); ``ny`` and ``nx`` multiples of ``factor``.
    lat_v, lon_v : array_like, shape ``(ny + 1, nx + 1)``, optional
        Fine cell corners; needed for an even ``factor``.
    factor : int

    Returns
    -------
    lat, lon : numpy.ndarray of float64, shape ``(ny // factor, nx // factor)``
    """
    f = _check_factor(factor)
    h = f // 2
    if f % 2 == 0:
        if lat_v is None or lon_v is None:
            raise ShapeError("an even factor needs the cell corners (lat_v, lon_v)")
        la, lo = _as_float(lat_v, name="lat_v"), _as_float(lon_v, name="lon_v")
        return la[h:-1:f, h:-1:f].copy(), lo[h:-1:f, h:-1:f].copy()
    la, lo = _as_float(lat_c, name="lat_c"), _as_float(lon_c, name="lon_c")
    return la[h::f, h::f].copy(), lo[h::f, h::f].copy()


def _signed_excess(a: FloatArray, b: FloatArray, c: FloatArray) -> FloatArray:
    """Signed spherical excess of triangles of unit vectors (components first); > 0 if CCW."""
    u = b - a
    w = c - a
    num = (
        a[0] * (u[1] * w[2] - u[2] * w[1])
        + a[1] * (u[2] * w[0] - u[0] * w[2])
        + a[2] * (u[0] * w[1] - u[1] * w[0])
    )
    den = 1.0 + np.sum(a * b, axis=0) + np.sum(b * c, axis=0) + np.sum(c * a, axis=0)
    return np.asarray(2.0 * np.arctan2(num, den), dtype=np.float64)


def cell_area_vertices(
    lat_v: npt.ArrayLike, lon_v: npt.ArrayLike, *, radius: float = EARTH_RADIUS
) -> FloatArray:
    """Areas of spherical quadrilaterals with great-circle edges.

    Each cell ``(v[j, i], v[j, i + 1], v[j + 1, i + 1], v[j + 1, i])`` is split into two
    triangles along the diagonal ``v[j, i] - v[j + 1, i + 1]``; a triangle's spherical
    excess comes from ``tan(E / 2) = a . (b x c) / (1 + a . b + b . c + c . a)``, with the
    triple product evaluated as ``a . ((b - a) x (c - a))`` for accuracy on small cells.

    Parameters
    ----------
    lat_v, lon_v : array_like, shape ``(ny + 1, nx + 1)``
        Cell corners (degrees); longitudes in any convention.
    radius : float, optional
        Sphere radius (m); the areas are in ``radius`` units squared.

    Returns
    -------
    numpy.ndarray of float64, shape ``(ny, nx)``
        Non-negative areas (the orientation of the grid does not matter).
    """
    r = _check_radius(radius)
    la, lo = _check_pair_2d(lat_v, lon_v, names=("lat_v", "lon_v"))
    ny, nx = la.shape[0] - 1, la.shape[1] - 1
    out = np.empty((ny, nx))
    block = max(1, _BLOCK_POINTS // (nx + 1))
    for j0 in range(0, ny, block):
        j1 = min(j0 + block, ny)
        v = _to_xyz(la[j0 : j1 + 1], lo[j0 : j1 + 1])
        a, b, c, d = v[:, :-1, :-1], v[:, :-1, 1:], v[:, 1:, 1:], v[:, 1:, :-1]
        out[j0:j1] = np.abs(_signed_excess(a, b, c) + _signed_excess(a, c, d))
    return np.asarray(r * r * out, dtype=np.float64)
