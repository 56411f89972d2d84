"""The xarray layer: spatial axes, coordinates, weights, attrs, and the calls into arrays.

:func:`downscale` and :func:`coarsen` take a Dataset or DataArray and return a new object of
the same type.  They find the two horizontal dimensions (cf-xarray, or ``dims=``), refine or
coarsen the coordinates and their CF bounds, compute cell areas used as weights, and call the
array code (:func:`xsr.methods.downscale_array`) through :func:`xarray.apply_ufunc`, so that
dask-backed inputs stay lazy.
"""

from __future__ import annotations

import datetime as _dt
import functools
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import xarray as xr

from . import grid
from .exceptions import (
    CoordinateError,
    DtypeError,
    OptionError,
    ShapeError,
    SpatialDimsError,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Hashable, Mapping

    from .conserve import ConserveMode
    from .methods.base import Method

__all__ = ["cell_areas", "coarsen", "downscale", "spatial_dims"]

XrObj = xr.Dataset | xr.DataArray
Boundary = Literal["exact", "trim", "pad"]
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


def _version() -> str:
    from . import __version__

    return __version__


# ------------------------------------------------------------------------------------------
# axis detection
# ------------------------------------------------------------------------------------------
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
# grid description
# ------------------------------------------------------------------------------------------
@dataclass
class _Grid:
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
    lat_v: np.ndarray | None = None  # (ny+1, nx+1)
    lon_v: np.ndarray | None = None
    lat_bounds_name: str | None = None
    lon_bounds_name: str | None = None
    area_name: str | None = None
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

    def refine_curvilinear(self, factor: int) -> tuple[np.ndarray, ...]:
        """(lat_c, lon_c, lat_v, lon_v) of the fine curvilinear grid, computed once."""
        if factor not in self._refined:
            assert self.lat_v is not None
            assert self.lon_v is not None
            self._refined[factor] = grid.refine_curvilinear(self.lat_v, self.lon_v, factor)
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
    name = obj[coord].attrs.get("bounds")
    if isinstance(obj, xr.Dataset) and isinstance(name, str) and name in obj.variables:
        return name
    return None


def _bounds_1d(obj: XrObj, coord: str, kind: str) -> tuple[np.ndarray, str | None]:
    values = np.asarray(obj[coord].values, dtype=np.float64)
    grid.check_monotonic(values, name=coord, period=360.0 if kind == "longitude" else None)
    bname = _bounds_name(obj, coord)
    if bname is not None:
        b = np.asarray(obj[bname].transpose(coord, ...).values, dtype=np.float64)
        if b.shape != (values.size, 2):
            raise CoordinateError(
                f"bounds variable {bname!r} of {coord!r} has shape {b.shape}, expected "
                f"({values.size}, 2); fix or drop it (ds.drop_vars({bname!r}))"
            )
        return b, bname
    if values.size < 2:
        raise CoordinateError(
            f"coordinate {coord!r} has a single value and no bounds, so its cell size is "
            "unknown; add a bounds variable (ds.cf.add_bounds) or use dims without coordinates"
        )
    return grid.infer_bounds_1d(values, kind=kind), None  # type: ignore[arg-type]


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
        if n in obj.variables or n in obj.coords:
            a = obj[n]
            if set(a.dims) == {ydim, xdim}:
                return n
    return None


def _describe(obj: XrObj, ydim: str, xdim: str) -> _Grid:
    ny, nx = int(obj.sizes[ydim]), int(obj.sizes[xdim])
    g = _Grid(ydim=ydim, xdim=xdim, ny=ny, nx=nx, kind="index")
    g.area_name = _find_area(obj, ydim, xdim)
    has_y = ydim in obj.coords and obj[ydim].ndim == 1
    has_x = xdim in obj.coords and obj[xdim].ndim == 1
    if has_y and has_x:
        ky, kx = _coord_kind(obj[ydim]), _coord_kind(obj[xdim])
        g.ycoord, g.xcoord = ydim, xdim
        g.ykind, g.xkind = ky, kx
        g.ycentres = np.asarray(obj[ydim].values, np.float64)
        g.xcentres = np.asarray(obj[xdim].values, np.float64)
        g.ybounds, g.ybounds_name = _bounds_1d(obj, ydim, ky)
        g.xbounds, g.xbounds_name = _bounds_1d(obj, xdim, kx)
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
    known = {ydim, xdim, g.lat2d, g.lon2d, g.area_name}
    g.other_spatial_coords = [
        str(c)
        for c in obj.coords
        if c not in known and (ydim in obj[c].dims or xdim in obj[c].dims)
    ]
    return g


def _geometry_areas(g: _Grid, factor: int | None) -> np.ndarray | None:
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


def _refine_bounds(g: _Grid, axis: Literal["y", "x"], factor: int) -> np.ndarray:
    """Fine bounds (n*f, 2) of a 1-D axis of the grid."""
    centres = g.ycentres if axis == "y" else g.xcentres
    bounds = g.ybounds if axis == "y" else g.xbounds
    kind = g.ykind if axis == "y" else g.xkind
    assert centres is not None
    return grid.refine_1d(centres, factor, bounds=bounds, kind=kind)[1]


# ------------------------------------------------------------------------------------------
# weights and masks given by the user
# ------------------------------------------------------------------------------------------
def _grid_array(
    value: Any, g: _Grid, *, what: str, factor: int | None
) -> tuple[np.ndarray, Literal["coarse", "fine"]]:
    """A 2-D (y, x) array on the coarse or the fine grid, from a DataArray or an ndarray."""
    if isinstance(value, xr.DataArray):
        if set(value.dims) != {g.ydim, g.xdim}:
            raise ShapeError(
                f"{what} must have exactly the dimensions ({g.ydim!r}, {g.xdim!r}), got "
                f"{value.dims}"
            )
        arr = np.asarray(value.transpose(g.ydim, g.xdim).values)
    else:
        arr = np.asarray(value)
    coarse_shape = (g.ny, g.nx)
    fine_shape = (g.ny * factor, g.nx * factor) if factor else None
    if arr.shape == coarse_shape:
        return arr, "coarse"
    if fine_shape is not None and arr.shape == fine_shape:
        return arr, "fine"
    allowed = f"{coarse_shape} (coarse grid)" + (
        f" or {fine_shape} (fine grid)" if fine_shape else ""
    )
    raise ShapeError(f"{what} has shape {arr.shape}; allowed: {allowed}")


def _mask_array(mask: Any, g: _Grid, factor: int) -> tuple[np.ndarray | None, xr.DataArray | None]:
    """(fine mask (ny*f, nx*f), coarse mask as a (y, x) DataArray); either may be None.

    A coarse mask marks whole coarse cells as missing (they become NaN in the input); a fine
    mask removes fine cells, and the coarse means are conserved over the remaining ones.
    """
    if mask is None:
        return None, None
    arr, where = _grid_array(mask, g, what="mask", factor=factor)
    if arr.dtype.kind == "f":
        if not np.isin(arr[np.isfinite(arr)], (0.0, 1.0)).all() or np.isnan(arr).any():
            raise OptionError(
                "mask must be boolean (True = valid cell) or 0/1, got other values; build it "
                "with e.g. ds.adt.notnull() or (land_fraction < 0.5)"
            )
    elif arr.dtype.kind not in "biu":
        raise OptionError(f"mask must be boolean (True = valid cell), got dtype {arr.dtype}")
    arr = arr.astype(bool)
    if where == "coarse":
        return None, xr.DataArray(arr, dims=(g.ydim, g.xdim))
    return arr, None


def _weights_array(
    weights: WeightsArg, g: _Grid, factor: int, obj: XrObj
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
            area = np.asarray(obj[g.area_name].transpose(g.ydim, g.xdim).values, np.float64)
            if geo is None:
                geo = np.ones((g.ny * factor, g.nx * factor))
            # scale the geometric fine areas so that each block sums to the given area
            from .conserve import upsample

            s = geo.reshape(g.ny, factor, g.nx, factor).sum(axis=(1, 3))
            return geo * upsample(area / s, factor), f"cell area from {g.area_name!r}"
        if geo is None:
            if weights == "area":
                raise OptionError(
                    "weights='area' but the grid has no coordinates or cell_measures to compute "
                    "areas from; add coordinates, an area variable, or use weights='uniform'"
                )
            return None, "uniform"
        return geo, f"cell area ({g.kind} grid)"
    arr, where = _grid_array(weights, g, what="weights", factor=factor)
    arr = np.asarray(arr, dtype=np.float64)
    if where == "coarse":
        arr = np.repeat(np.repeat(arr, factor, axis=0), factor, axis=1) / factor**2
    if not (np.isfinite(arr).all() and (arr >= 0).all()):
        raise OptionError("weights must be finite and non-negative everywhere")
    return arr, "user weights"


# ------------------------------------------------------------------------------------------
# coordinates of the fine / coarse grid
# ------------------------------------------------------------------------------------------
def _bounds_dim(obj: XrObj, name: str | None, default: str) -> str:
    if name is not None and isinstance(obj, xr.Dataset):
        dims = [d for d in obj[name].dims if d not in obj[name].dims[:-1]]
        return str(dims[-1])
    return default


def _coord_encoding(old: xr.DataArray) -> dict[str, Any]:
    """The encoding of a refined coordinate: refined values are stored in float64."""
    return {k: v for k, v in old.encoding.items() if k in ("zlib", "complevel", "_FillValue")}


def _order_like(out: xr.Dataset, obj: xr.Dataset) -> xr.Dataset:
    first = [str(v) for v in obj.data_vars if v in out.data_vars]
    rest = [str(v) for v in out.data_vars if v not in obj.data_vars]
    return out[first + rest]


def _make_coords(
    obj: XrObj,
    g: _Grid,
    axes: dict[str, tuple[np.ndarray, np.ndarray]],
    curvilinear: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(coords, bounds variables) of a new grid.

    ``axes`` maps the 1-D dimension coordinates to (centres, bounds (n, 2)); ``curvilinear`` is
    (lat centres, lon centres, lat vertices, lon vertices) for 2-D latitude/longitude.
    Attributes (with a ``bounds`` attribute added) and bounds-variable names are kept.
    """
    coords: dict[str, Any] = {}
    bvars: dict[str, Any] = {}
    for dim, (c, b) in axes.items():
        bname = g.ybounds_name if dim == g.ydim else g.xbounds_name
        old = obj[dim]
        name = bname or f"{dim}_bnds"
        coords[dim] = xr.Variable(dim, c, {**old.attrs, "bounds": name}, _coord_encoding(old))
        battrs = dict(obj[bname].attrs) if bname else {}
        bvars[name] = xr.Variable((dim, _bounds_dim(obj, bname, "bnds")), b, battrs)
    if curvilinear is not None and g.lat2d is not None and g.lon2d is not None:
        lat_c, lon_c, lat_v, lon_v = curvilinear
        for name, c, v, bname in (
            (g.lat2d, lat_c, lat_v, g.lat_bounds_name),
            (g.lon2d, lon_c, lon_v, g.lon_bounds_name),
        ):
            old = obj[name]
            bn = bname or f"{name}_bounds"
            coords[name] = xr.Variable(
                (g.ydim, g.xdim), c, {**old.attrs, "bounds": bn}, _coord_encoding(old)
            ).transpose(*old.dims)
            battrs = dict(obj[bname].attrs) if bname else {}
            bvars[bn] = xr.Variable(
                (g.ydim, g.xdim, _bounds_dim(obj, bname, "nv4")),
                grid.vertices_to_bounds_2d(v),
                battrs,
            )
    return coords, bvars


def _fine_coords(obj: XrObj, g: _Grid, factor: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """(coords, bounds variables) of the fine grid."""
    axes = {}
    if g.ycoord is not None and g.xcoord is not None:
        for dim, c, b, kind in (
            (g.ydim, g.ycentres, g.ybounds, g.ykind),
            (g.xdim, g.xcentres, g.xbounds, g.xkind),
        ):
            assert c is not None
            axes[dim] = grid.refine_1d(c, factor, bounds=b, kind=kind)
    curvi = None
    if g.lat2d is not None and g.lon2d is not None:
        lat_c, lon_c, lat_vf, lon_vf = g.refine_curvilinear(factor)
        curvi = (lat_c, lon_c, lat_vf, lon_vf)
    return _make_coords(obj, g, axes, curvi)


# ------------------------------------------------------------------------------------------
# attrs and provenance
# ------------------------------------------------------------------------------------------
def _history_line(op: str, args: Mapping[str, Any]) -> str:
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    a = ", ".join(f"{k}={v!r}" for k, v in args.items())
    return f"{now}: xsr {_version()} {op}({a})"


def _add_history(attrs: dict[str, Any], line: str) -> dict[str, Any]:
    old = attrs.get("history")
    attrs = dict(attrs)
    attrs["history"] = line if not old else f"{line}\n{old}"
    return attrs


def _spatial_vars(obj: xr.Dataset, g: _Grid, skip: set[str]) -> list[str]:
    return [
        str(n)
        for n, v in obj.data_vars.items()
        if g.ydim in v.dims and g.xdim in v.dims and n not in skip
    ]


def grid_variables(obj: xr.Dataset, dims: tuple[Hashable, Hashable] | None = None) -> list[str]:
    """Variables of ``obj`` that describe its horizontal grid: the CF bounds of its
    coordinates and its cell-area variable (the ones :func:`downscale` refines or
    rebuilds instead of downscaling)."""
    ydim, xdim = spatial_dims(obj, dims)
    return sorted(_describe(obj, ydim, xdim).aux_names)


def field_variables(obj: xr.Dataset, dims: tuple[Hashable, Hashable] | None = None) -> list[str]:
    """Data variables of ``obj`` on its horizontal grid, bounds and cell areas left out: the
    fields :func:`downscale` and :func:`coarsen` transform."""
    ydim, xdim = spatial_dims(obj, dims)
    g = _describe(obj, ydim, xdim)
    return _spatial_vars(obj, g, g.aux_names)


def _warn_dropped(obj: xr.Dataset, g: _Grid, kept: list[str], skip: set[str]) -> None:
    """Warn about data variables on only one of the horizontal dimensions (dropped)."""
    dropped = [
        str(n)
        for n, v in obj.data_vars.items()
        if (g.ydim in v.dims or g.xdim in v.dims) and n not in kept and n not in skip
    ]
    if dropped:
        warnings.warn(
            f"data variables {dropped} have only one of the horizontal dimensions "
            f"({g.ydim!r}, {g.xdim!r}) and are dropped from the result; downscale them "
            "separately if you need them",
            stacklevel=4,
        )


def _assemble(
    obj: XrObj,
    g: _Grid,
    one: Callable[[xr.DataArray, str], xr.DataArray | dict[str, xr.DataArray]],
    coords: dict[str, Any],
    bvars: dict[str, Any],
    area: xr.Variable | None,
    line: str,
) -> XrObj:
    """Apply ``one`` to every variable on the grid and build the result on the new grid.

    ``one(da, name)`` gets a variable without its horizontal coordinates and returns it on
    the new grid (or a dict of new variables, ``name`` among them, for a Dataset); the new
    ``coords``, bounds variables ``bvars`` and cell ``area`` are attached, other variables
    and coordinates are kept, and ``line`` goes into ``history``.
    """
    ydim, xdim = g.ydim, g.xdim

    def on_grid(v: xr.DataArray) -> bool:
        return ydim in v.dims or xdim in v.dims

    def strip(da: xr.DataArray) -> xr.DataArray:
        return da.drop_vars([c for c in da.coords if on_grid(da[c])])

    if isinstance(obj, xr.DataArray):
        vname = str(obj.name) if obj.name is not None else "data"
        res = one(strip(obj), vname)
        out = res[vname] if isinstance(res, dict) else res
        out = out.drop_vars([c for c in out.coords if on_grid(out[c])])
        # a DataArray cannot carry bounds variables: do not point at missing ones
        out = out.assign_coords(
            {
                k: xr.Variable(
                    v.dims, v.data, {a: b for a, b in v.attrs.items() if a != "bounds"}, v.encoding
                )
                for k, v in coords.items()
            }
        )
        out = out.assign_coords({k: v for k, v in obj.coords.items() if not on_grid(v)})
        out.name = obj.name
        out.attrs = _add_history(out.attrs, line)
        return out

    skip = set(bvars) | g.aux_names
    names = _spatial_vars(obj, g, skip)
    if not names:
        raise SpatialDimsError(
            f"no data variable of the Dataset has both horizontal dimensions ({ydim!r}, "
            f"{xdim!r}); variables: {list(obj.data_vars)}"
        )
    _warn_dropped(obj, g, names, skip)
    base = obj.drop_vars([c for c in obj.variables if on_grid(obj[c])])
    new: dict[str, xr.DataArray] = {}
    for n in names:
        res = one(strip(obj[n]), n)
        new.update(res if isinstance(res, dict) else {n: res})
    out_ds = base.assign(new).assign_coords(coords)
    for k, v in bvars.items():
        out_ds[k] = v
        if k in obj.coords:
            out_ds = out_ds.set_coords(k)
    if area is not None and g.area_name is not None:
        area = area.transpose(*obj[g.area_name].dims)
        if g.area_name in obj.coords:
            out_ds = out_ds.assign_coords({g.area_name: area})
        else:
            out_ds[g.area_name] = area
    out_ds = _order_like(out_ds, obj)
    out_ds.attrs = _add_history(dict(obj.attrs), line)
    return out_ds


def _extra_vars(
    res: xr.DataArray,
    parts: list[xr.DataArray],
    da: xr.DataArray,
    name: str,
    want: tuple[str, ...],
) -> dict[str, xr.DataArray]:
    """``<name>_std`` and ``<name>_members`` from the extra outputs of an ensemble method.

    The spread gets the units of ``da``, a ``long_name``, the CF ``standard_name`` modifier
    ``standard_error`` when ``da`` has a standard name, and is linked from ``res`` (updated
    in place) through ``ancillary_variables``.  The members keep the attrs of ``res``.
    """
    out: dict[str, xr.DataArray] = {}
    label = str(da.attrs.get("long_name", name))
    sn = da.attrs.get("standard_name")
    enc = {k: v for k, v in res.encoding.items() if k in ("zlib", "complevel")}
    xsr_attrs = {k: v for k, v in res.attrs.items() if str(k).startswith("xsr_")}
    it = iter(parts)
    if "std" in want:
        sd = next(it).transpose(*da.dims)
        sd.attrs = {"long_name": f"ensemble standard deviation of {label}"}
        if sn:
            sd.attrs["standard_name"] = f"{sn} standard_error"
        if "units" in da.attrs:
            sd.attrs["units"] = da.attrs["units"]
        sd.attrs.update(xsr_attrs)
        sd.encoding = dict(enc)
        std_name = f"{name}_std"
        anc = str(res.attrs.get("ancillary_variables", "")).split()
        res.attrs["ancillary_variables"] = " ".join([*anc, std_name])
        out[std_name] = xr.DataArray(sd)
    if "members" in want:
        mem = next(it).transpose("member", *da.dims)
        mem.attrs = {k: v for k, v in res.attrs.items() if k != "ancillary_variables"}
        mem.attrs["long_name"] = f"ensemble members of {label}"
        mem.encoding = dict(enc)
        members = xr.DataArray(mem)
        out[f"{name}_members"] = members.assign_coords(member=np.arange(members.sizes["member"]))
    return out


def _spatially_chunked(obj: XrObj, g: _Grid) -> bool:
    """Whether a variable of ``obj`` on the grid is a dask array with several spatial chunks."""
    variables = [obj] if isinstance(obj, xr.DataArray) else list(obj.data_vars.values())
    for v in variables:
        if v.chunks is None:
            continue
        sizes = v.chunksizes
        if any(len(sizes.get(d, ())) > 1 for d in (g.ydim, g.xdim)):
            return True
    return False


def _check_tile_size(tile_size: int | None) -> int | None:
    """``tile_size``, or the global option; validated (a positive number of fine cells)."""
    from .options import OPTIONS, _validate

    return _validate("tile_size", OPTIONS["tile_size"] if tile_size is None else tile_size)


def _weights_factors(weights: WeightsArg, g: _Grid, factor: int) -> tuple[Any, str] | None:
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


def _run_tiled(
    x: Any,
    *,
    extras: bool,
    tile_size: int | None,
    tile_weights: Any,
    want: tuple[str, ...],
    **kwargs: Any,
) -> Any:
    """:func:`xsr.tiling.downscale_tiled` with the calling convention of ``downscale_array``."""
    from .methods.base import Downscaled
    from .tiling import downscale_tiled

    if kwargs.get("weights") is None:
        kwargs["weights"] = tile_weights
    res = downscale_tiled(
        x,
        tile_size=tile_size,
        extras=want if extras else (),  # type: ignore[arg-type]
        **kwargs,
    )
    if not extras:
        return res
    parts = list(res)
    fine = parts.pop(0)
    std = parts.pop(0) if "std" in want else None
    members = parts.pop(0) if "members" in want else None
    return Downscaled(fine=fine, std=std, members=members)


# ------------------------------------------------------------------------------------------
# public API
# ------------------------------------------------------------------------------------------
def downscale(
    obj: XrObj,
    *,
    factor: int,
    method: str | Method = "bicubic",
    conserve: ConserveMode | None = "additive",
    bounds: tuple[float | None, float | None] | None = None,
    dims: tuple[Hashable, Hashable] | None = None,
    mask: xr.DataArray | np.ndarray | None = None,
    weights: WeightsArg = "auto",
    periodic: bool | None = None,
    device: str | None = None,
    dtype: str | None = None,
    tile_size: int | None = None,
    **method_options: Any,
) -> XrObj:
    """Downscale every variable on the horizontal grid by ``factor``, conservatively.

    Parameters
    ----------
    obj : Dataset or DataArray
        Input on a coarse grid with dims ``(..., y, x)`` in any order; NaN marks masked
        (land) cells.
    factor : int
        Refinement factor along each horizontal axis (>= 2): the output has
        ``ny*factor x nx*factor`` cells.
    method : str or Method, default "bicubic"
        A registered method name (:func:`xsr.list_methods`) or a method object.
    conserve : {"additive", "multiplicative", "bounded", None}, default "additive"
        Enforcement applied to the method's output, so that :func:`coarsen` of the result
        reproduces ``obj``.  ``None`` switches it off.
    bounds : (lower, upper), optional
        Bounds for ``conserve="bounded"``; either side may be None, e.g. ``(0, None)``.
    dims : (y, x), optional
        The horizontal dimensions; found with cf-xarray when omitted.
    mask : DataArray or ndarray of bool, optional
        Valid cells (True) on the coarse grid ``(ny, nx)`` or the fine grid
        ``(ny*f, nx*f)``, e.g. a high-resolution land-sea mask.  Cells that are False, and
        fine cells of NaN coarse cells, are NaN in the output.
    weights : {"auto", "area", "uniform"}, None, DataArray or ndarray
        Weights of the conservation (block) means.  ``"auto"``: the CF ``cell_measures``
        area variable if any, else spherical cell areas on latitude/longitude grids (also
        rotated-pole and curvilinear ones), else projected cell areas, else uniform.
    periodic : bool, optional
        Treat x as periodic (global longitude).  Default: detected from the coordinates.
    device : str, optional
        Torch device ("auto", "cpu", "cuda", ...); default from :func:`xsr.set_options`.
    dtype : {"float32", "float64"}, optional
        Compute dtype; by default each variable's own.
    tile_size : int, optional
        Downscale tile by tile, tiles of at most ``tile_size`` x ``tile_size`` fine cells
        (plus a halo), batched per chunk; default :func:`xsr.set_options` ``tile_size``.
        Dask inputs chunked along the horizontal dimensions are tiled in any case (one tile
        per chunk without ``tile_size``).  Every coarse cell stays exactly conserved, seams
        included; deterministic methods give the untiled result to round-off, and the result
        stays lazy.  See :mod:`xsr.tiling`.
    **method_options
        Options of the method, e.g. ``members=10`` for ``"dip-ensemble"``.

    Returns
    -------
    Dataset or DataArray
        Same type as ``obj``; horizontal dims of sizes ``ny*factor`` and ``nx*factor``,
        refined coordinates with CF bounds (Datasets), attrs kept plus ``xsr_*`` provenance
        attrs and a ``history`` line.  Variables without both horizontal dims are unchanged.

        Ensemble methods (``"dip-ensemble"``, or ``"dip"`` with ``uncertainty="latent"``):
        each variable ``<var>`` is the enforced ensemble mean; a Dataset also gets
        ``<var>_std``, the standard deviation of the enforced members (same dims; attrs
        ``units``, ``long_name``, ``standard_name = "<standard_name> standard_error"`` when
        ``<var>`` has a standard name), linked from ``<var>.attrs["ancillary_variables"]``,
        and, with ``keep_members=True``, ``<var>_members`` of dims ``("member", *<var>.dims)``.
        A DataArray gives a DataArray: the ensemble mean alone (the result keeps its type);
        for the spread, downscale ``da.to_dataset()`` instead (``keep_members=True`` with a
        DataArray raises :class:`~xsr.exceptions.OptionError`).
    """
    from .conserve import check_options
    from .methods.base import downscale_array
    from .methods.registry import get_method

    f, mode, bnds = check_options(factor, conserve, bounds)
    m = get_method(method, **method_options)
    if not isinstance(obj, xr.Dataset | xr.DataArray):
        raise TypeError(f"expected an xarray Dataset or DataArray, got {type(obj).__name__}")

    ydim, xdim = spatial_dims(obj, dims)
    g = _describe(obj, ydim, xdim)
    # tiles (xsr.tiling): with tile_size, or for dask inputs chunked along y or x
    ts = _check_tile_size(tile_size)
    tiled = ts is not None or _spatially_chunked(obj, g)
    factors = _weights_factors(weights, g, f) if tiled else None
    if factors is not None:
        w, wdesc = None, factors[1]
    else:
        w, wdesc = _weights_array(weights, g, f, obj)
    fine_mask, coarse_mask = _mask_array(mask, g, f)
    if periodic is None:
        periodic = g.kind == "lonlat" and grid.is_periodic_longitude(
            np.asarray(obj[xdim].values, np.float64), g.xbounds
        )

    args: dict[str, Any] = {"factor": f, "method": getattr(m, "name", str(m))}
    args["conserve"] = mode
    if bnds is not None:
        args["bounds"] = bnds
    args.update(m.options())
    xsr_attrs = {
        "xsr_method": args["method"],
        "xsr_factor": f,
        "xsr_conserve": str(mode),
        "xsr_weights": wdesc,
        "xsr_version": _version(),
    }
    if bnds is not None:
        xsr_attrs["xsr_bounds"] = str(bnds)
    for k, v in m.options().items():
        # netCDF attributes hold numbers and strings, not booleans or None
        ok = isinstance(v, int | float | str) and not isinstance(v, bool)
        xsr_attrs[f"xsr_{k}"] = v if ok else str(v)

    dataset = isinstance(obj, xr.Dataset)
    # extra outputs of ensemble methods: "<var>_std" and "<var>_members" (Datasets only)
    extra: tuple[str, ...] = tuple(getattr(m, "extra_outputs", ()))
    n_members = int(getattr(m, "n_members", 0))
    if "members" in extra and not dataset:
        raise OptionError(
            "keep_members=True adds a variable with a 'member' dimension, which a DataArray "
            "result cannot hold; pass a Dataset instead: da.to_dataset().sr.downscale(...)"
        )

    run: Callable[..., Any] = downscale_array
    if tiled:
        run = functools.partial(
            _run_tiled,
            tile_size=ts,
            tile_weights=None if factors is None else factors[0],
            want=extra if dataset else (),
        )

    def _one(da: xr.DataArray, name: str) -> xr.DataArray | dict[str, xr.DataArray]:
        if coarse_mask is not None and da.dtype.kind == "f":
            da = da.where(coarse_mask)
        if da.dtype.kind in "iub":
            raise DtypeError(
                f"variable {name!r} has {'boolean' if da.dtype.kind == 'b' else 'integer'} "
                f"dtype {da.dtype}; downscaling produces fractional values, so xsr does not "
                f"guess a rounding: cast it first (ds[{name!r}].astype('float64')) or drop it"
            )
        if da.dtype.kind != "f":
            raise DtypeError(
                f"variable {name!r} has dtype {da.dtype}; only real floating-point fields can "
                "be downscaled"
            )
        units = da.attrs.get("units")
        m.check_request(
            factor=f,
            conserve=mode,
            bounds=bnds,
            units=None if units is None else str(units),
            name=name,
        )
        if da.chunks is None:
            arr = np.asarray(da.values)
            if not np.isfinite(arr).any():
                from .exceptions import InputValueError

                raise InputValueError(
                    f"variable {name!r} is entirely NaN; there is nothing to downscale: check "
                    "the variable, time step or region you selected"
                )

        # a DataArray gives a DataArray (an ensemble's mean); a Dataset also gets the extras
        want = extra if dataset else ()

        def func(x: np.ndarray) -> np.ndarray | tuple[np.ndarray, ...]:
            r = run(
                x,
                factor=f,
                method=m,
                conserve=mode,
                bounds=bnds,
                weights=w,
                mask=fine_mask,
                periodic=bool(periodic),
                device=device,
                dtype=dtype,
                name=f"variable {name!r}",
                extras=bool(want),
            )
            if not want:
                return r
            outs = [r.fine]
            if "std" in want:
                outs.append(r.std if r.std is not None else np.full_like(r.fine, np.nan))
            if "members" in want:
                outs.append(np.moveaxis(r.members, 0, -3))  # member before (y, x)
            return tuple(outs)

        out_dtype = np.dtype(dtype) if dtype is not None else da.dtype
        core = [[ydim, xdim]] * (1 + ("std" in want))
        sizes = {ydim: g.ny * f, xdim: g.nx * f}
        if "members" in want:
            core.append(["member", ydim, xdim])
            sizes["member"] = n_members
        res_all = xr.apply_ufunc(
            func,
            da.variable,
            input_core_dims=[[ydim, xdim]],
            output_core_dims=core,
            exclude_dims={ydim, xdim},
            dask="allowed" if tiled else "parallelized",  # tiled: xsr.tiling builds the graph
            output_dtypes=[out_dtype] * len(core),
            dask_gufunc_kwargs={"output_sizes": sizes},
            keep_attrs=True,
        )
        parts = list(res_all) if want else [res_all]
        res = parts[0].transpose(*da.dims)
        res.attrs.update(xsr_attrs)
        res.encoding = {
            k: v
            for k, v in da.encoding.items()
            if k in ("dtype", "_FillValue", "scale_factor", "add_offset", "zlib", "complevel")
        }
        if "dtype" in res.encoding and np.dtype(res.encoding["dtype"]).kind in "iu":
            # packed integers cannot hold the refined values faithfully
            for k in ("dtype", "scale_factor", "add_offset", "_FillValue"):
                res.encoding.pop(k, None)
        if not want:
            return xr.DataArray(res)
        extras = _extra_vars(res, parts[1:], da, name, want)  # links res to <name>_std
        return {name: xr.DataArray(res), **extras}

    coords, bvars = _fine_coords(obj, g, f)
    line = _history_line("downscale", args)
    if g.other_spatial_coords:
        warnings.warn(
            f"coordinates {g.other_spatial_coords} lie on the horizontal grid but are not "
            "latitude/longitude or cell areas; they are dropped from the result",
            stacklevel=3,
        )

    area = None
    if g.area_name is not None and w is not None:
        a = obj[g.area_name]
        area = xr.Variable((ydim, xdim), w.astype(a.dtype), dict(a.attrs))
    return _assemble(obj, g, _one, coords, bvars, area, line)


def coarsen(
    obj: XrObj,
    *,
    factor: int,
    dims: tuple[Hashable, Hashable] | None = None,
    boundary: Boundary = "exact",
    weights: WeightsArg = "auto",
) -> XrObj:
    """Average ``factor x factor`` blocks of the horizontal grid: the inverse of downscale.

    The block mean is the one that :func:`downscale` conserves: weighted by cell areas
    (``weights``, same rules as :func:`downscale`) and taken over valid (non-NaN) cells only.
    ``obj.sr.downscale(factor=f).sr.coarsen(factor=f)`` reproduces ``obj`` (to round-off,
    NaN where ``obj`` is NaN).

    Parameters
    ----------
    obj : Dataset or DataArray
        Fine field with dims ``(..., y, x)``.
    factor : int
        Block size along each horizontal axis (>= 2).
    dims : (y, x), optional
        Horizontal dimensions; found with cf-xarray when omitted.
    boundary : {"exact", "trim", "pad"}, default "exact"
        When a horizontal size is not a multiple of ``factor``: raise ("exact"), drop the
        trailing cells ("trim"), or pad at the end with missing cells that take no part in
        the mean ("pad"), as in :meth:`xarray.Dataset.coarsen`.
    weights : {"auto", "area", "uniform"}, None, DataArray or ndarray
        Cell weights on ``obj``'s grid.

    Returns
    -------
    Dataset or DataArray
        Same type as ``obj``; horizontal sizes divided by ``factor`` (rounded down for
        "trim", up for "pad"); coordinates, bounds and cell areas coarsened; ``cell_methods``
        gains ``area: mean``; attrs kept plus a ``history`` line.
    """
    from .conserve import check_factor

    f = check_factor(factor)
    if boundary not in ("exact", "trim", "pad"):
        raise OptionError(f"boundary must be 'exact', 'trim' or 'pad', got {boundary!r}")
    if not isinstance(obj, xr.Dataset | xr.DataArray):
        raise TypeError(f"expected an xarray Dataset or DataArray, got {type(obj).__name__}")
    ydim, xdim = spatial_dims(obj, dims)
    ny, nx = int(obj.sizes[ydim]), int(obj.sizes[xdim])
    if (ny % f or nx % f) and boundary == "exact":
        raise ShapeError(
            f"horizontal shape ({ydim}: {ny}, {xdim}: {nx}) is not divisible by factor {f}; "
            "pass boundary='trim' to drop the trailing cells or boundary='pad' to pad them"
        )
    if boundary == "trim":
        obj = obj.isel({ydim: slice(0, ny - ny % f), xdim: slice(0, nx - nx % f)})
    obj = _align_chunks(obj, ydim, xdim, f)
    g = _describe(obj, ydim, xdim)
    if isinstance(weights, str) and weights in ("auto", "area"):
        w = _own_areas(obj, g)
        if w is None and weights == "area":
            raise OptionError(
                "weights='area' but the grid has no coordinates or cell_measures to compute "
                "areas from; add coordinates, an area variable, or use weights='uniform'"
            )
    elif weights is None or weights == "uniform":
        w = None
    else:
        w, _ = _grid_array(weights, g, what="weights", factor=None)
        w = np.asarray(w, np.float64)
    pad_y = (-g.ny) % f
    pad_x = (-g.nx) % f
    wda = xr.DataArray(np.ones((g.ny, g.nx)) if w is None else w, dims=(ydim, xdim))
    if pad_y or pad_x:
        wda = wda.pad({ydim: (0, pad_y), xdim: (0, pad_x)}, constant_values=0.0)
    den_base = wda
    line = _history_line("coarsen", {"factor": f, "boundary": boundary})

    def _one(da: xr.DataArray) -> xr.DataArray:
        if da.dtype.kind != "f":
            raise DtypeError(
                f"variable {da.name!r} has dtype {da.dtype}; coarsen averages, so it needs a "
                "floating-point field: cast it first (.astype('float64'))"
            )
        x = da.astype(np.float64)
        if pad_y or pad_x:
            x = x.pad({ydim: (0, pad_y), xdim: (0, pad_x)})
        valid = x.notnull()
        num = (x.fillna(0.0) * den_base).coarsen({ydim: f, xdim: f}).sum()
        den = den_base.where(valid, 0.0).coarsen({ydim: f, xdim: f}).sum()
        res = (num / den.where(den > 0)).astype(da.dtype)
        res = res.drop_vars(
            [c for c in res.coords if c not in res.dims or c in (ydim, xdim)], errors="ignore"
        )
        res.attrs = dict(da.attrs)
        cm = str(res.attrs.get("cell_methods", "")).strip()
        res.attrs["cell_methods"] = f"{cm} area: mean".strip()
        res.encoding = {k: v for k, v in da.encoding.items() if k in ("zlib", "complevel")}
        return res.transpose(*da.dims)

    coords, bvars = _coarse_coords(obj, g, f, pad_y, pad_x)
    area = None
    if g.area_name is not None:
        a = obj[g.area_name].transpose(ydim, xdim)
        av = a.values.astype(np.float64)
        if pad_y or pad_x:
            av = np.pad(av, ((0, pad_y), (0, pad_x)))
        s = av.reshape(av.shape[0] // f, f, av.shape[1] // f, f).sum(axis=(1, 3))
        area = xr.Variable((ydim, xdim), s.astype(a.dtype), dict(a.attrs))
    return _assemble(obj, g, lambda da, name: _one(da), coords, bvars, area, line)


def _align_chunks(obj: XrObj, ydim: str, xdim: str, f: int) -> XrObj:
    """Rechunk dask variables so that spatial chunks hold whole coarse cells (``f`` x ``f``)."""
    from .tiling import align_chunks

    def aligned(v: xr.DataArray) -> xr.DataArray:
        if v.chunks is None:
            return v
        new: dict[str, tuple[int, ...]] = {}
        for d in (ydim, xdim):
            c = tuple(v.chunksizes.get(d, ()))
            if len(c) > 1 and any(n % f for n in c[:-1]):
                new[d] = align_chunks(c, f)
        return v.chunk(new) if new else v

    if isinstance(obj, xr.DataArray):
        return aligned(obj)
    return obj.assign({n: aligned(v) for n, v in obj.data_vars.items()})


def _own_areas(obj: XrObj, g: _Grid) -> np.ndarray | None:
    """Areas of ``obj``'s own cells: its CF area variable, else the geometry, else None."""
    if g.area_name is not None:
        return np.asarray(obj[g.area_name].transpose(g.ydim, g.xdim).values, np.float64)
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
    g = _describe(obj, ydim, xdim)
    if factor is None:
        return _own_areas(obj, g)
    return _weights_array("auto", g, check_factor(factor), obj)[0]


def _coarse_coords(
    obj: XrObj, g: _Grid, f: int, pad_y: int, pad_x: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(coords, bounds variables) of the coarse grid (padded cells extend the last cell)."""
    axes = {}
    if g.ycoord is not None and g.xcoord is not None:
        for dim, c, b, kind, pad in (
            (g.ydim, g.ycentres, g.ybounds, g.ykind, pad_y),
            (g.xdim, g.xcentres, g.xbounds, g.xkind, pad_x),
        ):
            assert c is not None
            assert b is not None
            if pad:
                width = b[-1, 1] - b[-1, 0]
                extra_lo = b[-1, 1] + width * np.arange(pad)
                eb = np.stack([extra_lo, extra_lo + width], axis=1)
                b = np.concatenate([b, eb])
                c = np.concatenate([c, eb.mean(axis=1)])
            axes[dim] = grid.coarsen_1d(c, b, f, kind=kind)
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
        lat_c, lon_c = grid.centres_from_vertices_2d(lat_v, lon_v)
        curvi = (lat_c, lon_c, lat_v, lon_v)
    return _make_coords(obj, g, axes, curvi)
