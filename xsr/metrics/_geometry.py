"""The metric of a horizontal grid for spectra and derivatives: positions in metres.

Latitude/longitude grids (and rotated-pole grids, on their rotated sphere) are placed on a
sphere of the Earth's mean radius: ``y = R * lat``, ``x = R * lon`` (radians, longitudes
unwrapped across the seam), the eastward distance scaled by ``cos(lat)`` where it is used.
Projected grids take their coordinates in their ``units`` (metres when absent, the CF
default).  Grids without coordinates count in cells, unless ``spacing=`` gives the cell size.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import xarray as xr

from .._validate import check_number
from ..exceptions import CoordinateError, OptionError, SpatialDimsError

__all__ = ["EARTH_RADIUS", "Horizontal", "horizontal"]

#: Mean radius of the Earth in metres (IUGG), the sphere that latitude/longitude grids are
#: placed on (the same as :mod:`xsr.grid`'s cell areas).
EARTH_RADIUS = 6_371_008.8

_LENGTH_UNITS = {
    "m": 1.0,
    "metre": 1.0,
    "metres": 1.0,
    "meter": 1.0,
    "meters": 1.0,
    "km": 1000.0,
    "kilometre": 1000.0,
    "kilometres": 1000.0,
    "kilometer": 1000.0,
    "kilometers": 1000.0,
}


@dataclass(frozen=True)
class Horizontal:
    """The two horizontal dims of a field and where their cells are.

    Attributes
    ----------
    ydim, xdim : str
        The horizontal dims (y first).
    kind : {"lonlat", "projected", "cells"}
        How positions were found: on the sphere from latitude/longitude, from projected
        coordinates or ``spacing=``, or in cells (no coordinates).
    y, x : ndarray
        Cell-centre positions along each dim, in metres (``"cells"``: in cells).  For
        ``"lonlat"``, ``x`` is ``R * lon`` (radians): an eastward distance only once scaled by
        ``cos(lat)``.
    lat : ndarray or None
        For ``"lonlat"``: the latitudes (degrees) along ``ydim`` (rotated latitudes on a
        rotated-pole grid).
    rotated : bool
        Whether ``lat`` is a rotated-pole latitude (not the true one).
    lat2d : str or None
        The name of a 2-D (true) latitude coordinate on ``(ydim, xdim)``, if any.
    """

    ydim: Hashable
    xdim: Hashable
    kind: Literal["lonlat", "projected", "cells"]
    y: np.ndarray
    x: np.ndarray
    lat: np.ndarray | None = None
    rotated: bool = False
    lat2d: str | None = None

    @property
    def length_unit(self) -> str:
        """``"m"``, or ``"cell"`` when the grid has no physical coordinates."""
        return "cell" if self.kind == "cells" else "m"


def _find_dims(obj: xr.DataArray, dims: Any, plain: bool) -> tuple[Hashable, Hashable]:
    if plain and dims is None:
        if obj.ndim < 2:
            raise SpatialDimsError(
                f"a plain array of shape {tuple(obj.shape)} has no two horizontal axes; "
                "pass an array whose last two axes are (y, x)"
            )
        return obj.dims[-2], obj.dims[-1]
    from ..cfgrid import spatial_dims

    return spatial_dims(obj, dims)


def _spacing(spacing: Any) -> tuple[float, float]:
    if not isinstance(spacing, tuple | list) or len(spacing) != 2:
        raise OptionError(
            f"spacing must be a pair (dy, dx) of cell sizes in metres, got {spacing!r}"
        )
    dy = check_number(spacing[0], name="spacing[0] (dy)", positive=True)
    dx = check_number(spacing[1], name="spacing[1] (dx)", positive=True)
    return dy, dx


def _length_factor(coord: xr.DataArray) -> float:
    units = str(coord.attrs.get("units", "m")).strip()
    if units in _LENGTH_UNITS:
        return _LENGTH_UNITS[units]
    raise CoordinateError(
        f"coordinate {coord.name!r} has units {units!r}, which is not a length xsr knows "
        f"({sorted(_LENGTH_UNITS)}); set its units attribute (e.g. 'm' or 'km') or pass "
        "spacing=(dy, dx) in metres"
    )


def _latitude_2d(obj: xr.DataArray, g: Any) -> str | None:
    """The 2-D latitude coordinate on the grid: cfgrid's (with its longitude), or any
    coordinate on ``(y, x)`` that cf-xarray calls a latitude."""
    if g.lat2d is not None:
        return str(g.lat2d)
    import cf_xarray  # noqa: F401  (registers .cf)

    try:
        names = obj.cf.coordinates.get("latitude", [])
    except Exception:  # pragma: no cover - cf-xarray failures on exotic attrs
        names = []
    for n in names:
        if set(obj[n].dims) == {g.ydim, g.xdim}:
            return str(n)
    return None


def _cells(ydim: Hashable, xdim: Hashable, ny: int, nx: int) -> Horizontal:
    return Horizontal(ydim, xdim, "cells", np.arange(ny, dtype=float), np.arange(nx, dtype=float))


def horizontal(
    obj: xr.DataArray, *, dims: Any = None, spacing: Any = None, plain: bool = False
) -> Horizontal:
    """The horizontal dims of ``obj`` and the positions of its cells.

    Parameters
    ----------
    obj : DataArray
    dims : (y, x), optional
        The horizontal dims; found with cf-xarray (:func:`xsr.spatial_dims`) when omitted,
        or the last two axes of a plain array (``plain=True``).
    spacing : (dy, dx), optional
        Cell sizes in metres, overriding the coordinates (a regular grid).
    """
    ydim, xdim = _find_dims(obj, dims, plain)
    ny, nx = int(obj.sizes[ydim]), int(obj.sizes[xdim])
    if plain:
        if spacing is not None:
            dy, dx = _spacing(spacing)
            return Horizontal(ydim, xdim, "projected", np.arange(ny) * dy, np.arange(nx) * dx)
        return Horizontal(
            ydim, xdim, "cells", np.arange(ny, dtype=float), np.arange(nx, dtype=float)
        )
    from ..cfgrid import describe

    g = describe(obj, str(ydim), str(xdim))
    if spacing is not None:
        dy, dx = _spacing(spacing)
        lonlat = g.kind in ("lonlat", "rotated")
        return Horizontal(
            ydim,
            xdim,
            "projected",
            np.arange(ny) * dy,
            np.arange(nx) * dx,
            lat=g.ycentres if lonlat else None,
            rotated=g.kind == "rotated",
            lat2d=_latitude_2d(obj, g),
        )
    if g.kind in ("lonlat", "rotated"):
        assert g.ycentres is not None
        assert g.xcentres is not None
        lat = g.ycentres
        lon = np.rad2deg(np.unwrap(np.deg2rad(g.xcentres)))
        return Horizontal(
            ydim,
            xdim,
            "lonlat",
            EARTH_RADIUS * np.deg2rad(lat),
            EARTH_RADIUS * np.deg2rad(lon),
            lat=lat,
            rotated=g.kind == "rotated",
            lat2d=_latitude_2d(obj, g),
        )
    if g.kind == "projected":
        if g.ykind != "other" or g.xkind != "other":
            raise CoordinateError(
                f"the coordinates of ({ydim!r}, {xdim!r}) mix a latitude or longitude with "
                "another kind of axis; pass spacing=(dy, dx) in metres"
            )
        assert g.ycentres is not None
        assert g.xcentres is not None
        fy, fx = _length_factor(obj[ydim]), _length_factor(obj[xdim])
        return Horizontal(
            ydim, xdim, "projected", g.ycentres * fy, g.xcentres * fx, lat2d=_latitude_2d(obj, g)
        )
    if g.kind == "curvilinear":
        raise CoordinateError(
            f"({ydim!r}, {xdim!r}) is a curvilinear grid (2-D latitude/longitude): cell sizes "
            "vary across it; interpolate onto a regular grid first, or pass spacing=(dy, dx) "
            "in metres to treat it as regular"
        )
    return _cells(ydim, xdim, ny, nx)
