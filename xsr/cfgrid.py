"""The CF description of a horizontal grid, built once per call.

Everything :func:`xsr.downscale` and :func:`xsr.coarsen` need to know about the grid of a
Dataset or DataArray, read in one place: the two horizontal dimensions (cf-xarray), the kind
of grid, 1-D coordinates and their CF bounds, 2-D latitude/longitude and their corners, the
CF ``cell_measures`` area variable, cell areas (geometry), the user's masks and weights
(aligned to the grid), and the coordinates of the refined or coarsened grid.

This module and :mod:`xsr.api` are the xarray layer; the geometry itself is numpy
(:mod:`xsr.grid`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import xarray as xr

from . import grid
from .exceptions import (
    CoordinateError,
    InputValueError,
    OptionError,
    ShapeError,
    SpatialDimsError,
    XsrError,
)

if TYPE_CHECKING:
    from collections.abc import Hashable, Iterable, Mapping

__all__ = [
    "Grid",
    "cell_areas",
    "check_weights",
    "coarse_coords",
    "describe",
    "field_variables",
    "fine_coords",
    "fine_weights",
    "grid_variables",
    "mask_arrays",
    "match_labels",
    "select_variables",
    "spatial_dims",
]

XrObj = xr.Dataset | xr.DataArray
WeightsArg = Literal["auto", "area", "uniform"] | None | xr.DataArray | np.ndarray
GridKind = Literal["lonlat", "rotated", "projected", "curvilinear", "index"]


_NAME_FALLBACKS: tuple[tuple[str, str], ...] = (
    ("y", "x"),
    ("lat", "lon"),
    ("latitude", "longitude"),
    ("rlat", "rlon"),
    ("nlat", "nlon"),
)


_LAT_UNITS = {"degrees_north", "degree_north", "degree_N", "degrees_N", "degreeN", "degreesN"}


_LON_UNITS = {"degrees_east", "degree_east", "degree_E", "degrees_E", "degreeE", "degreesE"}


def _cf_axes(obj: XrObj) -> dict[str, list[str]]:
    import cf_xarray  # noqa: F401  (registers .cf)

    try:
        axes = obj.cf.axes
    except Exception:  # pragma: no cover - cf-xarray failures on exotic attrs
        axes = {}
    return {k: [str(n) for n in v] for k, v in axes.items()}


def _cf_coords(obj: XrObj) -> dict[str, list[str]]:
    import cf_xarray  # noqa: F401

    try:
        coords = obj.cf.coordinates
    except Exception:  # pragma: no cover
        coords = {}
    return {k: [str(n) for n in v] for k, v in coords.items()}


def spatial_dims(obj: XrObj, dims: tuple[Hashable, Hashable] | None = None) -> tuple[str, str]:
    """Find the two horizontal dimensions ``(y, x)`` of ``obj``.

    Parameters
    ----------
    obj : Dataset or DataArray
    dims : (y, x), optional
        Explicit dimension names; validated and returned.

    Returns
    -------
    (str, str)
        The y (northward / row) and x (eastward / column) dimension names.

    Notes
    -----
    Detection order: cf-xarray X/Y axes that are dimensions (1-D coordinates such as
    ``latitude``/``longitude``, ``rlat``/``rlon`` or projection ``y``/``x``); then the
    dimensions of 2-D latitude/longitude coordinates (curvilinear grids); then common names
    (``y``/``x``, ``lat``/``lon``, ...).
    """
    all_dims = [str(d) for d in obj.dims]
    if dims is not None:
        if (
            isinstance(dims, str)
            or not isinstance(dims, tuple | list)
            or len(dims) != 2
            or dims[0] == dims[1]
        ):
            raise SpatialDimsError(
                f"dims must be a pair of two different dimension names (y, x), got {dims!r}"
            )
        missing = [d for d in dims if d not in obj.dims]
        if missing:
            raise SpatialDimsError(
                f"dims={tuple(dims)!r}: {missing} not among the dimensions {all_dims}; "
                "pass the names of the two horizontal dimensions, y first"
            )
        for d in dims:
            if d in obj.coords and obj[d].dtype.kind not in "iuf":
                raise SpatialDimsError(
                    f"dims={tuple(dims)!r}: {d!r} holds {obj[d].dtype} values, which cannot "
                    "be a horizontal axis (only numeric positions can); pass the names of the "
                    "two horizontal dimensions, y first"
                )
        return str(dims[0]), str(dims[1])

    axes = _cf_axes(obj)
    xs = [n for n in axes.get("X", []) if n in obj.dims]
    ys = [n for n in axes.get("Y", []) if n in obj.dims]
    if len(xs) > 1 or len(ys) > 1:
        raise SpatialDimsError(
            f"ambiguous horizontal dimensions: cf-xarray finds X axes {xs} and Y axes {ys}; "
            "pass dims=(y, x) to choose, or select one grid first"
        )
    if len(xs) == 1 and len(ys) == 1:
        return ys[0], xs[0]

    coords = _cf_coords(obj)
    lats = [n for n in coords.get("latitude", []) if obj[n].ndim == 2]
    lons = [n for n in coords.get("longitude", []) if obj[n].ndim == 2]
    if lats and lons:
        pairs = {tuple(obj[a].dims) for a in lats} | {tuple(obj[b].dims) for b in lons}
        if len({frozenset(p) for p in pairs}) > 1:
            raise SpatialDimsError(
                f"ambiguous horizontal dimensions: 2-D latitude/longitude coordinates "
                f"{lats + lons} span different dimensions {sorted(pairs)}; pass dims=(y, x)"
            )
        d2 = [str(d) for d in obj[lats[0]].dims]
        # order (y, x) as the data are laid out: x is the faster-varying (later) dimension
        order = [d for d in all_dims if d in d2]
        if isinstance(obj, xr.Dataset):
            for v in obj.data_vars.values():
                if set(d2) <= set(map(str, v.dims)):
                    order = [str(d) for d in v.dims if d in d2]
                    break
        return order[0], order[1]

    for y, x in _NAME_FALLBACKS:
        if y in obj.dims and x in obj.dims:
            return y, x
    raise SpatialDimsError(
        f"could not find the two horizontal dimensions among {all_dims}: no cf-xarray X/Y "
        "axes, no 2-D latitude/longitude coordinates and no usual names (y/x, lat/lon); "
        "pass dims=(y, x), or add CF attributes (axis='X'/'Y' or standard_name)"
    )


# ------------------------------------------------------------------------------------------
# the record of the grid a 1-D coordinate was refined from
# ------------------------------------------------------------------------------------------
#: Attributes that :func:`xsr.downscale` puts on each refined 1-D coordinate: the factor and
#: the coarse centres and bounds it refined.  :func:`xsr.coarsen` by the same factor gives
#: back exactly those coordinates (bit for bit, so that ``back - ds`` aligns every cell), and
#: a DataArray, which cannot hold bounds variables, gets its fine cell edges from them.
RECORD_ATTRS = ("xsr_factor", "xsr_coarse_centres", "xsr_coarse_bounds")


@dataclass(frozen=True)
class Record:
    """The coarse 1-D coordinate that a fine coordinate was refined from.

    Attributes
    ----------
    factor : int
        Refinement factor.
    centres : numpy.ndarray, shape ``(n,)``
        Coarse centres, in the coarse coordinate's own dtype.
    bounds : numpy.ndarray, shape ``(n, 2)``
        Coarse bounds (CF order), in the dtype of the coarse bounds variable (float64 when
        they were inferred).
    """

    factor: int
    centres: np.ndarray
    bounds: np.ndarray

    def attrs(self) -> dict[str, Any]:
        """The record as netCDF-storable attributes (numbers and 1-D arrays)."""
        return {
            "xsr_factor": self.factor,
            "xsr_coarse_centres": np.asarray(self.centres),
            "xsr_coarse_bounds": np.asarray(self.bounds).reshape(-1),
        }

    def refine(self, kind: str) -> tuple[np.ndarray, np.ndarray]:
        """Fine (centres, bounds) exactly as :func:`xsr.downscale` made them."""
        return grid.refine_1d(
            np.asarray(self.centres, np.float64),
            self.factor,
            bounds=np.asarray(self.bounds, np.float64),
            kind=kind,  # type: ignore[arg-type]
        )


def without_record(attrs: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
    """``attrs`` without the refinement record (:data:`RECORD_ATTRS`)."""
    return {k: v for k, v in attrs.items() if k not in RECORD_ATTRS}


def _read_record(coord: xr.DataArray, kind: str) -> Record | None:
    """The refinement record of a 1-D coordinate, if it has one that still describes it.

    The record is used only when refining its coarse centres and bounds by its factor gives
    the coordinate's values bit for bit: a coordinate that was subset, reversed, shifted or
    cast since :func:`xsr.downscale` wrote it is described by its values alone.
    """
    a = coord.attrs
    if not all(k in a for k in RECORD_ATTRS):
        return None
    try:
        f = int(a["xsr_factor"])
        centres = np.asarray(a["xsr_coarse_centres"])
        bounds = np.asarray(a["xsr_coarse_bounds"]).reshape(-1, 2)
        if centres.ndim != 1 or bounds.shape[0] != centres.size or centres.size * f != coord.size:
            return None
        rec = Record(f, centres, bounds)
        fine_c, _ = rec.refine(kind)
    except (XsrError, ValueError, TypeError):
        return None
    if not np.array_equal(fine_c, np.asarray(coord.values, np.float64)):
        return None
    return rec


@dataclass
class Grid:
    """The horizontal grid of a Dataset or DataArray, as xsr reads it (:func:`describe`).

    Attributes
    ----------
    ydim, xdim : str
        The horizontal dimensions; ``ny``, ``nx`` their sizes.
    kind : {"lonlat", "rotated", "projected", "curvilinear", "index"}
        How cell areas are computed (``"index"``: no coordinates, uniform).
    ycoord, xcoord, ycentres, xcentres, ykind, xkind
        The 1-D dimension coordinates (float64 centres) and their kinds.
    ybounds, xbounds : ndarray ``(n, 2)``
        Their bounds: from the CF bounds variable (``ybounds_name``), the refinement
        record (``yrecord``) or inferred; ``ybounds_given`` as given (their dtype).
    lat2d, lon2d, lat_c, lon_c, lat_v, lon_v
        2-D latitude/longitude: names, centres ``(ny, nx)`` and corners ``(ny+1, nx+1)``.
    area_name : str or None
        The CF ``cell_measures`` area variable on the grid.
    other_spatial_coords : list of str
        Other coordinates on the grid (dropped from results, with a warning).
    """

    ydim: str
    xdim: str
    ny: int
    nx: int
    kind: GridKind
    ycoord: str | None = None
    xcoord: str | None = None
    ycentres: np.ndarray | None = None  # (ny,)
    xcentres: np.ndarray | None = None  # (nx,)
    ykind: Literal["latitude", "longitude", "other"] = "other"
    xkind: Literal["latitude", "longitude", "other"] = "other"
    ybounds: np.ndarray | None = None  # (ny, 2)
    xbounds: np.ndarray | None = None  # (nx, 2)
    ybounds_name: str | None = None
    xbounds_name: str | None = None
    lat2d: str | None = None
    lon2d: str | None = None
    lat_c: np.ndarray | None = None  # (ny, nx) centres of a curvilinear grid
    lon_c: np.ndarray | None = None
    lat_v: np.ndarray | None = None  # (ny+1, nx+1) its corners
    lon_v: np.ndarray | None = None
    lat_bounds_name: str | None = None
    lon_bounds_name: str | None = None
    area_name: str | None = None
    yrecord: Record | None = None
    xrecord: Record | None = None
    yvalues: np.ndarray | None = None  # the 1-D coordinates as given (their own dtype)
    xvalues: np.ndarray | None = None
    ybounds_given: np.ndarray | None = None  # their bounds as given, or inferred (n, 2)
    xbounds_given: np.ndarray | None = None
    other_spatial_coords: list[str] = field(default_factory=list)
    _refined: dict[int, tuple[np.ndarray, ...]] = field(default_factory=dict, repr=False)

    @property
    def aux_names(self) -> set[str]:
        """Names of the variables that describe the grid: bounds and the cell-area variable."""
        names = (
            self.ybounds_name,
            self.xbounds_name,
            self.lat_bounds_name,
            self.lon_bounds_name,
            self.area_name,
        )
        return {n for n in names if n}

    def refinement(self, axis: Literal["y", "x"], factor: int) -> Record:
        """The record of refining the 1-D coordinate of ``axis`` by ``factor``."""
        values = self.yvalues if axis == "y" else self.xvalues
        given = self.ybounds_given if axis == "y" else self.xbounds_given
        assert values is not None
        assert given is not None
        return Record(factor, values, given)

    def centres(self, axis: Literal["y", "x"], factor: int | None = None) -> np.ndarray:
        """Centres (float64) of the 1-D coordinate of ``axis``, or of its refinement."""
        if factor is None:
            c = self.ycentres if axis == "y" else self.xcentres
            assert c is not None
            return c
        return self.refinement(axis, factor).refine(self.ykind if axis == "y" else self.xkind)[0]

    def refine_curvilinear(self, factor: int) -> tuple[np.ndarray, ...]:
        """(lat_c, lon_c, lat_v, lon_v) of the fine curvilinear grid, computed once."""
        if factor not in self._refined:
            assert self.lat_v is not None
            assert self.lon_v is not None
            assert self.lat_c is not None
            assert self.lon_c is not None
            self._refined[factor] = grid.refine_curvilinear(
                self.lat_v, self.lon_v, factor, centres=(self.lat_c, self.lon_c)
            )
        return self._refined[factor]


def _coord_kind(da: xr.DataArray) -> Literal["latitude", "longitude", "other"]:
    sn = str(da.attrs.get("standard_name", ""))
    units = str(da.attrs.get("units", ""))
    if sn in ("latitude", "grid_latitude") or units in _LAT_UNITS:
        return "latitude"
    if sn in ("longitude", "grid_longitude") or units in _LON_UNITS:
        return "longitude"
    return "other"


def _bounds_name(obj: XrObj, coord: str) -> str | None:
    # decode_coords="all" moves the attribute into .encoding
    name = obj[coord].attrs.get("bounds") or obj[coord].encoding.get("bounds")
    if isinstance(obj, xr.Dataset) and isinstance(name, str) and name in obj.variables:
        return name
    return None


def _bounds_1d(
    obj: XrObj, coord: str, kind: str, record: Record | None
) -> tuple[np.ndarray, str | None]:
    """(bounds (n, 2), bounds variable name): from the CF bounds variable, else from the
    refinement record, else inferred from the centres."""
    values = np.asarray(obj[coord].values, dtype=np.float64)
    bname = _bounds_name(obj, coord)
    if bname is None:  # with bounds, refine_1d checks the centres against them
        grid.check_monotonic(values, name=coord, period=360.0 if kind == "longitude" else None)
    if bname is not None:
        b = np.asarray(obj[bname].transpose(coord, ...).values, dtype=np.float64)
        if b.shape != (values.size, 2):
            raise CoordinateError(
                f"bounds variable {bname!r} of {coord!r} has shape {b.shape}, expected "
                f"({values.size}, 2); fix or drop it (ds.drop_vars({bname!r}))"
            )
        # the centres must be monotonic and inside their bounds (refining by 1 checks both)
        grid.refine_1d(values, 1, bounds=b, kind=kind, name=coord)  # type: ignore[arg-type]
        return b, bname
    if record is not None:
        return record.refine(kind)[1], None
    if values.size < 2:
        raise CoordinateError(
            f"coordinate {coord!r} has a single value and no bounds, so its cell size is "
            "unknown; add a bounds variable (ds.cf.add_bounds) or use dims without coordinates"
        )
    return grid.infer_bounds_1d(values, kind=kind), None  # type: ignore[arg-type]


def _given_bounds(obj: XrObj, dim: str, name: str | None, inferred: np.ndarray) -> np.ndarray:
    """The bounds of ``dim`` as the bounds variable holds them (its dtype), or ``inferred``."""
    if name is None:
        return inferred
    return np.asarray(obj[name].transpose(dim, ...).values)


def _find_area(obj: XrObj, ydim: str, xdim: str) -> str | None:
    """Name of a cell-area variable (CF cell_measures) on the grid, if any."""
    names: list[str] = []
    variables = [obj] if isinstance(obj, xr.DataArray) else list(obj.data_vars.values())
    for v in variables:
        cm = str(v.attrs.get("cell_measures", ""))
        tokens = cm.replace(":", ": ").split()
        for i, t in enumerate(tokens[:-1]):
            if t == "area:":
                names.append(tokens[i + 1])
    for n in dict.fromkeys(names):
        if n in obj.coords or (isinstance(obj, xr.Dataset) and n in obj.variables):
            a = obj[n]
            if set(a.dims) == {ydim, xdim}:
                return n
    return None


def describe(obj: XrObj, ydim: str, xdim: str) -> Grid:
    ny, nx = int(obj.sizes[ydim]), int(obj.sizes[xdim])
    g = Grid(ydim=ydim, xdim=xdim, ny=ny, nx=nx, kind="index")
    g.area_name = _find_area(obj, ydim, xdim)
    has_y = ydim in obj.coords and obj[ydim].ndim == 1
    has_x = xdim in obj.coords and obj[xdim].ndim == 1
    if has_y and has_x:
        ky, kx = _coord_kind(obj[ydim]), _coord_kind(obj[xdim])
        g.ycoord, g.xcoord = ydim, xdim
        g.ykind, g.xkind = ky, kx
        g.ycentres = np.asarray(obj[ydim].values, np.float64)
        g.xcentres = np.asarray(obj[xdim].values, np.float64)
        g.yrecord = _read_record(obj[ydim], ky)
        g.xrecord = _read_record(obj[xdim], kx)
        g.ybounds, g.ybounds_name = _bounds_1d(obj, ydim, ky, g.yrecord)
        g.xbounds, g.xbounds_name = _bounds_1d(obj, xdim, kx, g.xrecord)
        # a bounds variable changed since downscale wrote it outranks the record
        if g.yrecord is not None and not np.array_equal(g.yrecord.refine(ky)[1], g.ybounds):
            g.yrecord = None
        if g.xrecord is not None and not np.array_equal(g.xrecord.refine(kx)[1], g.xbounds):
            g.xrecord = None
        g.yvalues, g.xvalues = np.asarray(obj[ydim].values), np.asarray(obj[xdim].values)
        g.ybounds_given = _given_bounds(obj, ydim, g.ybounds_name, g.ybounds)
        g.xbounds_given = _given_bounds(obj, xdim, g.xbounds_name, g.xbounds)
        if ky == "latitude" and kx == "longitude":
            rotated = obj[ydim].attrs.get("standard_name") == "grid_latitude"
            g.kind = "rotated" if rotated else "lonlat"
        else:
            g.kind = "projected"
    coords = _cf_coords(obj)
    for lat in coords.get("latitude", []):
        if set(obj[lat].dims) == {ydim, xdim}:
            g.lat2d = lat
    for lon in coords.get("longitude", []):
        if set(obj[lon].dims) == {ydim, xdim}:
            g.lon2d = lon
    if g.lat2d is not None and g.lon2d is not None:
        lat2 = np.asarray(obj[g.lat2d].transpose(ydim, xdim).values, dtype=np.float64)
        lon2 = np.asarray(obj[g.lon2d].transpose(ydim, xdim).values, dtype=np.float64)
        if not (np.isfinite(lat2).all() and np.isfinite(lon2).all()):
            raise CoordinateError(
                f"2-D coordinates {g.lat2d!r}/{g.lon2d!r} contain NaN; curvilinear "
                "refinement needs every cell's position: fill them or pass dims=(y, x) with "
                "the coordinates dropped"
            )
        g.lat_c, g.lon_c = lat2, lon2
        g.lat_bounds_name = _bounds_name(obj, g.lat2d)
        g.lon_bounds_name = _bounds_name(obj, g.lon2d)
        if g.lat_bounds_name and g.lon_bounds_name:
            lb = obj[g.lat_bounds_name].transpose(ydim, xdim, ...).values
            ob = obj[g.lon_bounds_name].transpose(ydim, xdim, ...).values
            g.lat_v = grid.bounds_to_vertices_2d(np.asarray(lb, dtype=np.float64))
            g.lon_v = grid.bounds_to_vertices_2d(np.asarray(ob, dtype=np.float64))
        else:
            g.lat_v, g.lon_v = grid.vertices_from_centres_2d(lat2, lon2)
        if g.kind == "index":
            g.kind = "curvilinear"
    else:
        g.lat2d = g.lon2d = None
    known = {ydim, xdim, g.lat2d, g.lon2d} | g.aux_names
    g.other_spatial_coords = [
        str(c)
        for c in obj.coords
        if c not in known and (ydim in obj[c].dims or xdim in obj[c].dims)
    ]
    return g


def _geometry_areas(g: Grid, factor: int | None) -> np.ndarray | None:
    """Cell areas from the grid geometry, or None (no geometry: uniform).

    Of the grid itself with ``factor=None`` (shape (ny, nx)), else of its refinement by
    ``factor`` (shape (ny*f, nx*f)).
    """
    if g.kind in ("lonlat", "rotated", "projected"):
        assert g.ybounds is not None
        assert g.xbounds is not None
        yb = g.ybounds if factor is None else _refine_bounds(g, "y", factor)
        xb = g.xbounds if factor is None else _refine_bounds(g, "x", factor)
        area = grid.cell_area_xy if g.kind == "projected" else grid.cell_area_lonlat
        return area(yb, xb)
    if g.kind == "curvilinear":
        assert g.lat_v is not None
        assert g.lon_v is not None
        lat_v, lon_v = (g.lat_v, g.lon_v) if factor is None else g.refine_curvilinear(factor)[2:]
        return grid.cell_area_vertices(lat_v, lon_v)
    return None


def _refine_bounds(g: Grid, axis: Literal["y", "x"], factor: int) -> np.ndarray:
    """Fine bounds (n*f, 2) of a 1-D axis of the grid."""
    centres = g.ycentres if axis == "y" else g.xcentres
    bounds = g.ybounds if axis == "y" else g.xbounds
    kind = g.ykind if axis == "y" else g.xkind
    assert centres is not None
    return grid.refine_1d(centres, factor, bounds=bounds, kind=kind)[1]


def match_labels(
    labels: np.ndarray, target: np.ndarray, *, kind: str
) -> tuple[np.ndarray | None, int | None]:
    """Indices that put ``labels`` in the order of ``target``.

    Labels match when they differ by less than a thousandth of the smallest cell of
    ``target`` (so that float32-stored labels match their float64 grid); longitudes match
    modulo 360.

    Returns
    -------
    (indices, bad)
        ``indices`` (None when the labels are ``target`` already) and ``bad``: None when every
        target label has its own match, else the index of a target label without one.
    """
    v = np.asarray(labels, np.float64)
    t = np.asarray(target, np.float64)
    if v.shape == t.shape and np.array_equal(v, t):
        return None, None
    steps = np.abs(np.diff(t))
    tol = 1e-3 * float(steps.min()) if steps.size and steps.min() > 0 else 1e-9
    period = 360.0 if kind == "longitude" else None
    vv = np.mod(v, period) if period else v
    tt = np.mod(t, period) if period else t
    order = np.argsort(vv, kind="stable")
    sv = vv[order]
    pos = np.searchsorted(sv, tt)
    best = np.zeros(t.size, dtype=np.intp)
    dist = np.full(t.size, np.inf)
    for shift in (-1, 0):
        cand = pos + shift
        cand = np.mod(cand, sv.size) if period else np.clip(cand, 0, sv.size - 1)
        d = np.abs(sv[cand] - tt)
        if period:
            d = np.minimum(d, period - d)
        better = d < dist
        best = np.where(better, cand, best)
        dist = np.where(better, d, dist)
    idx = order[best]
    bad = dist > tol
    if bad.any():
        return idx, int(np.flatnonzero(bad)[0])
    if np.unique(idx).size != idx.size:
        return idx, 0
    return idx, None


def _label_order(
    labels: np.ndarray, target: np.ndarray, *, kind: str, what: str, dim: str, grid_name: str
) -> np.ndarray | None:
    """Indices that put ``labels`` in the order of ``target`` (None: already the same);
    an error naming the fix when they do not match (:func:`match_labels`)."""
    idx, bad = match_labels(labels, target, kind=kind)
    if bad is not None:
        assert idx is not None
        v = np.asarray(labels, np.float64)
        t = np.asarray(target, np.float64)
        raise CoordinateError(
            f"the {dim!r} labels of {what} do not match the {grid_name} grid: {float(t[bad])!r} "
            f"has no match (nearest {float(v[idx[bad]])!r}); {what} is aligned by its "
            f"coordinates, not by position: bring it onto the grid first (e.g. "
            f"{what}.interp_like(ds, method='nearest')), or, if it is on the same grid with "
            f"other labels, replace them: {what}.assign_coords({dim}=ds[{dim!r}])"
        )
    return idx


def grid_array(
    value: Any, g: Grid, *, what: str, factor: int | None
) -> tuple[np.ndarray, Literal["coarse", "fine"]]:
    """A user's 2-D array on the coarse or the fine grid, as ``(y, x)`` numpy values.

    The one place where xsr takes a grid array from the user (``mask=``, ``weights=``).  A
    DataArray is aligned by its labels: its dimension coordinates are matched to the grid's
    (any order, e.g. latitude stored the other way round; longitudes modulo 360) and its
    2-D latitude/longitude, if it has them, must equal the grid's.  An ndarray, which has no
    labels, is taken as ``(y, x)`` in the grid's order.  Which grid: the one whose shape the
    array has (coarse ``(ny, nx)``, or fine ``(ny*factor, nx*factor)`` when ``factor``).
    """
    coarse_shape = (g.ny, g.nx)
    fine_shape = (g.ny * factor, g.nx * factor) if factor else None
    allowed = f"{coarse_shape} (coarse grid)" + (
        f" or {fine_shape} (fine grid)" if fine_shape else ""
    )
    if isinstance(value, xr.DataArray):
        if set(value.dims) != {g.ydim, g.xdim}:
            raise ShapeError(
                f"{what} must have exactly the dimensions ({g.ydim!r}, {g.xdim!r}), got "
                f"{value.dims}; select or squeeze the other dimensions first"
            )
        v = value.transpose(g.ydim, g.xdim)
        shape = (int(v.sizes[g.ydim]), int(v.sizes[g.xdim]))
    else:
        if isinstance(value, str | bytes) or np.ndim(value) != 2:
            raise OptionError(
                f"{what} must be a 2-D DataArray or array on the coarse {coarse_shape} or fine "
                f"grid, got {value!r} ({type(value).__name__}); e.g. {what}=ds.sst.notnull()"
                if what == "mask"
                else f"{what} must be 'auto', 'area', 'uniform', None or a 2-D DataArray or "
                f"array of cell areas on the coarse {coarse_shape} or fine grid, got "
                f"{value!r} ({type(value).__name__})"
            )
        v = None
        shape = tuple(np.shape(value))
    if shape == coarse_shape:
        where: Literal["coarse", "fine"] = "coarse"
    elif fine_shape is not None and shape == fine_shape:
        where = "fine"
    else:
        raise ShapeError(f"{what} has shape {shape}; allowed: {allowed}")
    if v is None:
        return np.asarray(value), where
    f = factor if where == "fine" and factor else None
    name = "fine" if f else "coarse"
    if g.ycoord is not None and g.xcoord is not None:
        for dim, axis, kind in ((g.ydim, "y", g.ykind), (g.xdim, "x", g.xkind)):
            if dim not in v.indexes:
                continue  # no labels: by position
            target = g.centres(axis, f)  # type: ignore[arg-type]
            order = _label_order(
                v[dim].values, target, kind=kind, what=what, dim=dim, grid_name=name
            )
            if order is not None:
                v = v.isel({dim: order})
    if g.lat2d is not None and g.lon2d is not None:
        assert g.lat_c is not None
        assert g.lon_c is not None
        lat_t, lon_t = (g.lat_c, g.lon_c) if f is None else g.refine_curvilinear(f)[:2]
        for c, t in ((g.lat2d, lat_t), (g.lon2d, lon_t)):
            if c in v.coords and set(v[c].dims) == {g.ydim, g.xdim}:
                d = np.asarray(v[c].transpose(g.ydim, g.xdim).values, np.float64) - t
                if c == g.lon2d:
                    d = (d + 180.0) % 360.0 - 180.0
                if not (np.abs(d) < 1e-4).all():
                    raise CoordinateError(
                        f"the 2-D coordinate {c!r} of {what} differs from the {name} grid's "
                        f"(by up to {float(np.abs(d).max()):.3g} degrees); {what} is aligned "
                        f"by its coordinates: bring it onto the grid first, or drop its "
                        f"coordinates if it is on the same grid ({what}.drop_vars({c!r}))"
                    )
    return np.asarray(v.values), where


def mask_arrays(mask: Any, g: Grid, factor: int) -> tuple[np.ndarray | None, xr.DataArray | None]:
    """(fine mask (ny*f, nx*f), coarse mask as a (y, x) DataArray); either may be None.

    A coarse mask marks whole coarse cells as missing (they become NaN in the input); a fine
    mask removes fine cells, and the coarse means are conserved over the remaining ones.
    """
    if mask is None:
        return None, None
    arr, where = grid_array(mask, g, what="mask", factor=factor)
    if arr.dtype.kind == "f":
        other = arr[~np.isin(arr, (0.0, 1.0))]
        if other.size:
            raise OptionError(
                f"mask must be boolean (True = valid cell) or 0/1, got other values such as "
                f"{float(other.flat[0])!r} ({other.size} cells); build it with e.g. "
                "ds.adt.notnull() or (land_fraction < 0.5)"
            )
    elif arr.dtype.kind not in "biu":
        raise OptionError(f"mask must be boolean (True = valid cell), got dtype {arr.dtype}")
    arr = arr.astype(bool)
    if not arr.any():
        raise OptionError(
            "mask is False everywhere, so every cell would be masked; True marks the valid "
            "cells: pass the mask of the valid cells (e.g. ~land, or ds.adt.notnull())"
        )
    if where == "coarse":
        return None, xr.DataArray(arr, dims=(g.ydim, g.xdim))
    return arr, None


def check_weights(arr: np.ndarray, *, what: str) -> np.ndarray:
    """Weights (cell areas) as given: finite and non-negative, NaN read as 0 (no weight)."""
    bad = np.isinf(arr) | (arr < 0)
    if bad.any():
        k = tuple(int(i) for i in np.argwhere(bad)[0])
        raise InputValueError(
            f"{what} must be finite and non-negative (cell areas), got {float(arr[k])!r} at "
            f"index {k} ({int(bad.sum())} such cells); fix them, or pass weights='uniform'"
        )
    return np.where(np.isnan(arr), 0.0, arr)


def _area_values(obj: XrObj, g: Grid) -> np.ndarray:
    """The CF cell-area variable's values as (y, x) float64, checked."""
    assert g.area_name is not None
    a = np.asarray(obj[g.area_name].transpose(g.ydim, g.xdim).values, np.float64)
    return check_weights(a, what=f"cell-area variable {g.area_name!r} (cell_measures)")


def _share_out(area: np.ndarray, geo: np.ndarray | None, g: Grid, factor: int) -> np.ndarray:
    """Coarse cell areas ``(ny, nx)`` shared out over the fine cells in proportion to their
    geometric areas ``geo`` (uniformly without geometry): each block sums to its area."""
    from .conserve import upsample

    if geo is None:
        return np.asarray(upsample(area, factor) / factor**2, dtype=np.float64)
    s = geo.reshape(g.ny, factor, g.nx, factor).sum(axis=(1, 3))
    return np.asarray(geo * upsample(area / s, factor), dtype=np.float64)


def fine_weights(
    weights: WeightsArg, g: Grid, factor: int, obj: XrObj
) -> tuple[np.ndarray | None, str]:
    """Fine weights (ny*f, nx*f) or None for uniform, and a description for attrs."""
    if weights is None or (isinstance(weights, str) and weights == "uniform"):
        return None, "uniform"
    if isinstance(weights, str):
        if weights not in ("auto", "area"):
            raise OptionError(
                f"weights must be 'auto', 'area', 'uniform', None or an array of cell areas, "
                f"got {weights!r}; weights= sets the cell areas of the conservation. A "
                "trained network is passed as model=, e.g. method='cnn', model='edsr.pt'"
            )
        geo = _geometry_areas(g, factor)
        if g.area_name is not None:
            fine = _share_out(_area_values(obj, g), geo, g, factor)
            # conserve with the areas as the result will store them (their dtype), so that
            # coarsen, which reads them back, weighs with the very same numbers
            dt = obj[g.area_name].dtype
            if dt.kind == "f" and dt != np.float64:
                fine = fine.astype(dt).astype(np.float64)
            return fine, f"cell area from {g.area_name!r}"
        if geo is None:
            if weights == "area":
                raise OptionError(
                    "weights='area' but the grid has no coordinates or cell_measures to compute "
                    "areas from; add coordinates, an area variable, or use weights='uniform'"
                )
            return None, "uniform"
        return geo, f"cell area ({g.kind} grid)"
    arr, where = grid_array(weights, g, what="weights", factor=factor)
    arr = check_weights(np.asarray(arr, dtype=np.float64), what="weights")
    if where == "coarse":
        # coarse cell areas, shared out over the fine cells as the geometry says
        arr = _share_out(arr, _geometry_areas(g, factor), g, factor)
    return arr, "user weights"


def _bounds_dim(obj: XrObj, name: str | None, default: str) -> str:
    if name is not None and isinstance(obj, xr.Dataset):
        dims = [d for d in obj[name].dims if d not in obj[name].dims[:-1]]
        return str(dims[-1])
    return default


def _coord_encoding(old: xr.DataArray) -> dict[str, Any]:
    """The encoding of a new coordinate: stored in float64, compressed like the old one, and
    with no fill value (CF 2.5.1: coordinates have no missing values; new ones are finite)."""
    enc: dict[str, Any] = {k: v for k, v in old.encoding.items() if k in ("zlib", "complevel")}
    enc["_FillValue"] = None
    return enc


#: Attributes that describe the values of the old coordinate, not of the new one.
_RANGE_ATTRS = ("valid_min", "valid_max", "valid_range", "actual_range")


def _coord_attrs(old: xr.DataArray, bounds: str, record: dict[str, Any]) -> dict[Any, Any]:
    """Attributes of a new coordinate: the old ones, without ranges and refinement record,
    with ``bounds`` naming its bounds variable and the new ``record`` (if any)."""
    attrs = {k: v for k, v in without_record(old.attrs).items() if k not in _RANGE_ATTRS}
    return {**attrs, "bounds": bounds, **record}


def _make_coords(
    obj: XrObj,
    g: Grid,
    axes: dict[str, tuple[np.ndarray, np.ndarray, dict[str, Any]]],
    curvilinear: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(coords, bounds variables) of a new grid.

    ``axes`` maps the 1-D dimension coordinates to (centres, bounds (n, 2), the refinement
    record's attributes or ``{}``); ``curvilinear`` is (lat centres, lon centres, lat
    vertices, lon vertices) for 2-D latitude/longitude.  Attributes (with a ``bounds``
    attribute added, an old refinement record replaced) and bounds-variable names are kept.
    """
    coords: dict[str, Any] = {}
    bvars: dict[str, Any] = {}
    for dim, (c, b, record) in axes.items():
        bname = g.ybounds_name if dim == g.ydim else g.xbounds_name
        old = obj[dim]
        name = bname or f"{dim}_bnds"
        coords[dim] = xr.Variable(dim, c, _coord_attrs(old, name, record), _coord_encoding(old))
        battrs = dict(obj[bname].attrs) if bname else {}
        bdims = (dim, _bounds_dim(obj, bname, "bnds"))
        bvars[name] = xr.Variable(bdims, b, battrs, {"_FillValue": None})
    if curvilinear is not None and g.lat2d is not None and g.lon2d is not None:
        lat_c, lon_c, lat_v, lon_v = curvilinear
        for name, c, v, bname in (
            (g.lat2d, lat_c, lat_v, g.lat_bounds_name),
            (g.lon2d, lon_c, lon_v, g.lon_bounds_name),
        ):
            old = obj[name]
            bn = bname or f"{name}_bounds"
            coords[name] = xr.Variable(
                (g.ydim, g.xdim), c, _coord_attrs(old, bn, {}), _coord_encoding(old)
            ).transpose(*old.dims)
            battrs = dict(obj[bname].attrs) if bname else {}
            bvars[bn] = xr.Variable(
                (g.ydim, g.xdim, _bounds_dim(obj, bname, "nv4")),
                grid.vertices_to_bounds_2d(v),
                battrs,
                {"_FillValue": None},
            )
    return coords, bvars


def fine_coords(obj: XrObj, g: Grid, factor: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """(coords, bounds variables) of the fine grid."""
    axes: dict[str, tuple[np.ndarray, np.ndarray, dict[str, Any]]] = {}
    if g.ycoord is not None and g.xcoord is not None:
        for dim, axis, kind in ((g.ydim, "y", g.ykind), (g.xdim, "x", g.xkind)):
            # the record holds the coarse values as given (their dtype too)
            rec = g.refinement(axis, factor)  # type: ignore[arg-type]
            fc, fb = rec.refine(kind)
            axes[dim] = (fc, fb, rec.attrs())
    curvi = None
    if g.lat2d is not None and g.lon2d is not None:
        lat_c, lon_c, lat_vf, lon_vf = g.refine_curvilinear(factor)
        curvi = (lat_c, lon_c, lat_vf, lon_vf)
    return _make_coords(obj, g, axes, curvi)


def spatial_vars(obj: xr.Dataset, g: Grid, skip: set[str]) -> list[str]:
    return [
        str(n)
        for n, v in obj.data_vars.items()
        if g.ydim in v.dims and g.xdim in v.dims and n not in skip
    ]


#: CF attributes by which a variable names other variables it needs.
_LINK_ATTRS = ("bounds", "grid_mapping", "cell_measures", "climatology", "ancillary_variables")


def _linked_names(v: xr.Variable) -> set[str]:
    """Names in ``v``'s CF link attributes (in attrs, or in encoding with
    ``decode_coords="all"``), in the plain and the ``"crs: lat lon"`` / ``"area: a"`` forms
    (keywords come along too, harmless: only names of variables are used)."""
    names: set[str] = set()
    for attr in _LINK_ATTRS:
        text = v.attrs.get(attr, v.encoding.get(attr))
        if isinstance(text, str):
            names.update(t.rstrip(":") for t in text.replace(":", ": ").split())
    return names


def select_variables(ds: xr.Dataset, names: Iterable[Hashable]) -> xr.Dataset:
    """``ds`` with the data variables ``names`` and those they need: the bounds, grid
    mappings, cell measures and ancillary variables that they or the coordinates name.

    Every coordinate is kept, unlike ``ds[names]``, which drops a grid mapping stored as a
    dimension coordinate and every bounds variable.

    Raises
    ------
    OptionError
        If a name is not a data variable of ``ds``.
    """
    keep = {str(n) for n in names}
    missing = sorted(keep - {str(n) for n in ds.data_vars})
    if missing:
        raise OptionError(
            f"variables {missing} are not in the input; its data variables are "
            f"{[str(n) for n in ds.data_vars]}"
        )
    todo = [*keep, *map(str, ds.coords)]
    while todo:
        for ref in _linked_names(ds.variables[todo.pop()]):
            if ref in ds.data_vars and ref not in keep:
                keep.add(ref)
                todo.append(ref)
    return ds.drop_vars([n for n in ds.data_vars if str(n) not in keep])


def grid_variables(obj: xr.Dataset, dims: tuple[Hashable, Hashable] | None = None) -> list[str]:
    """Variables of ``obj`` that describe its horizontal grid: the CF bounds of its
    coordinates and its cell-area variable (the ones :func:`downscale` refines or
    rebuilds instead of downscaling)."""
    ydim, xdim = spatial_dims(obj, dims)
    return sorted(describe(obj, ydim, xdim).aux_names)


def field_variables(obj: xr.Dataset, dims: tuple[Hashable, Hashable] | None = None) -> list[str]:
    """Data variables of ``obj`` on its horizontal grid, bounds and cell areas left out: the
    fields :func:`downscale` and :func:`coarsen` transform."""
    ydim, xdim = spatial_dims(obj, dims)
    g = describe(obj, ydim, xdim)
    return spatial_vars(obj, g, g.aux_names)


def weights_factors(weights: WeightsArg, g: Grid, factor: int) -> tuple[Any, str] | None:
    """Separable fine cell areas ``((ny*f,), (nx*f,))`` and their description, or None.

    For tiled runs on rectilinear grids: the factors hold the areas of any fine grid in
    ``O(ny + nx)`` memory (see :func:`xsr.grid.cell_area_factors`).
    """
    if not (isinstance(weights, str) and weights in ("auto", "area")) or g.area_name:
        return None
    if g.kind not in ("lonlat", "rotated", "projected"):
        return None
    kind: Literal["lonlat", "xy"] = "xy" if g.kind == "projected" else "lonlat"
    yb, xb = _refine_bounds(g, "y", factor), _refine_bounds(g, "x", factor)
    return grid.cell_area_factors(yb, xb, kind=kind), f"cell area ({g.kind} grid)"


def own_areas(obj: XrObj, g: Grid) -> np.ndarray | None:
    """Areas of ``obj``'s own cells: its CF area variable, else the geometry, else None."""
    if g.area_name is not None:
        return _area_values(obj, g)
    return _geometry_areas(g, None)


def cell_areas(
    obj: XrObj,
    *,
    dims: tuple[Hashable, Hashable] | None = None,
    factor: int | None = None,
) -> np.ndarray | None:
    """The cell weights that ``weights="auto"`` uses, as an array.

    Parameters
    ----------
    obj : Dataset or DataArray
    dims : (y, x), optional
        Horizontal dimensions; found with cf-xarray when omitted.
    factor : int, optional
        ``None``: the areas of ``obj``'s cells (what :func:`coarsen` weights with), shape
        ``(ny, nx)``.  An integer: the areas of the cells of ``obj`` refined by ``factor``
        (what :func:`downscale` conserves with), shape ``(ny*factor, nx*factor)``.

    Returns
    -------
    numpy.ndarray or None
        In the units of the geometry (m^2 on the sphere, projection units squared) or of the
        CF ``cell_measures`` area variable; ``None`` when the grid has no coordinates, in which
        case the weights are uniform.
    """
    from .conserve import check_factor

    ydim, xdim = spatial_dims(obj, dims)
    g = describe(obj, ydim, xdim)
    if factor is None:
        return own_areas(obj, g)
    return fine_weights("auto", g, check_factor(factor), obj)[0]


def coarse_coords(
    obj: XrObj, g: Grid, f: int, pad_y: int, pad_x: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(coords, bounds variables) of the coarse grid (padded cells extend the last cell)."""
    axes: dict[str, tuple[np.ndarray, np.ndarray, dict[str, Any]]] = {}
    if g.ycoord is not None and g.xcoord is not None:
        for dim, c, b, kind, pad in (
            (g.ydim, g.ycentres, g.ybounds, g.ykind, pad_y),
            (g.xdim, g.xcentres, g.xbounds, g.xkind, pad_x),
        ):
            assert c is not None
            assert b is not None
            rec = g.yrecord if dim == g.ydim else g.xrecord
            if rec is not None and rec.factor == f and not pad:
                # coarsening what downscale refined: its coarse grid, exactly
                axes[dim] = (rec.centres, rec.bounds, {})
                continue
            if pad:
                width = b[-1, 1] - b[-1, 0]
                extra_lo = b[-1, 1] + width * np.arange(pad)
                eb = np.stack([extra_lo, extra_lo + width], axis=1)
                b = np.concatenate([b, eb])
                c = np.concatenate([c, eb.mean(axis=1)])
            axes[dim] = (*grid.coarsen_1d(c, b, f, kind=kind), {})
    curvi = None
    if g.lat2d is not None and g.lon2d is not None and (pad_y or pad_x):
        warnings.warn(
            f"coarsen(boundary='pad') on a curvilinear grid drops the 2-D coordinates "
            f"{g.lat2d!r}/{g.lon2d!r}: the padded cells have no position; use "
            "boundary='trim' to keep them",
            stacklevel=4,
        )
    elif g.lat2d is not None and g.lon2d is not None:
        assert g.lat_v is not None
        assert g.lon_v is not None
        lat_v, lon_v = g.lat_v[::f, ::f], g.lon_v[::f, ::f]
        # the middle point of each block: where downscale put the coarse centre
        assert g.lat_c is not None
        assert g.lon_c is not None
        lat_c, lon_c = grid.centre_points_2d(g.lat_c, g.lon_c, g.lat_v, g.lon_v, f)
        curvi = (lat_c, lon_c, lat_v, lon_v)
    return _make_coords(obj, g, axes, curvi)
