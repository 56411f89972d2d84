"""Hypothesis strategies for small CF datasets that :func:`xsr.downscale` accepts.

Everything here is built from numpy and xarray alone (nothing from ``xsr``), so that the
property tests compute their expectations independently of the library.

The generated objects are small (2-6 cells a side before downscaling) and valid input:

* horizontal grids (:func:`grids`): 1-D latitude/longitude (regular or irregular spacing,
  ascending or descending, regional or global, latitudes whose bounds or centres reach the
  poles, longitudes in 0..360 or -180..180, regional ones possibly wrapping across the
  convention's seam), rotated-pole ``rlat``/``rlon`` with a ``rotated_pole`` grid mapping
  (optionally with 2-D true latitude/longitude), projected ``y``/``x`` in metres (optionally
  with 2-D latitude/longitude), and curvilinear 2-D ``lat``/``lon`` on dimensions without
  coordinates; each with or without CF bounds variables;
* data (:func:`datasets`): one or two float32/float64 variables, NaN cells (a static land
  mask and scattered NaN), extra dimensions (``time``, ``lev``, ``member``) in any position
  among the horizontal ones, an optional CF cell-area variable (``cell_measures``), an
  optional variable off the grid, numpy or dask backing with irregular chunks along every
  dimension;
* :func:`dataarrays`: one variable of such a Dataset, with its coordinates;
* :func:`cases`: a Dataset or DataArray with a downscaling factor and the names of its
  horizontal dimensions, as a :class:`Case`.

The builders (:func:`latitude_axis`, :func:`longitude_axis`, :func:`projected_axis`,
:func:`grid_1d`, :func:`curvilinear_grid`, :func:`build_dataset`) are plain functions, so
that minimal failing inputs can be written down as ``@example``\\ s.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import xarray as xr
from hypothesis import assume
from hypothesis import strategies as st

__all__ = [
    "Axis",
    "Case",
    "Field",
    "Grid",
    "build_dataset",
    "cases",
    "curvilinear_grid",
    "dataarrays",
    "datasets",
    "grid_1d",
    "grids",
    "latitude_axis",
    "longitude_axis",
    "projected_axis",
    "rotated_grid",
]

# spacings (degrees or km) with and without an exact binary representation
_UNITS_DEG = (1.0, 0.5, 2.5, 0.25, 0.44, 1.875, 0.1)
_UNITS_KM = (1.0, 2.5, 12.5, 0.3)
_EXTRA = {"time": "time", "lev": "lev", "member": "member"}


# ------------------------------------------------------------------------------------------
# plain builders
# ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Axis:
    """A 1-D dimension coordinate: centres, optional CF bounds ``(n, 2)`` and attrs."""

    name: str
    values: np.ndarray
    bounds: np.ndarray | None
    attrs: dict[str, Any]
    bounds_dim: str = "bnds"

    def __repr__(self) -> str:
        b = None if self.bounds is None else self.bounds.tolist()
        return f"Axis({self.name!r}, values={self.values.tolist()}, bounds={b})"


def _cf_bounds(edges: np.ndarray) -> np.ndarray:
    """CF bounds ``(n, 2)`` of consecutive cells from their ``n + 1`` edges (any direction)."""
    return np.stack([edges[:-1], edges[1:]], axis=1)


def _flip(values: np.ndarray, bounds: np.ndarray | None) -> tuple[np.ndarray, Any]:
    """The same cells in the opposite order; CF bounds follow the coordinate's direction."""
    return values[::-1].copy(), None if bounds is None else bounds[::-1, ::-1].copy()


def latitude_axis(
    values: Any,
    bounds: Any = None,
    *,
    name: str = "lat",
    rotated: bool = False,
    axis_attr: bool = True,
) -> Axis:
    """A latitude (or rotated ``grid_latitude``) coordinate."""
    attrs: dict[str, Any] = (
        {"standard_name": "grid_latitude", "units": "degrees", "long_name": "rotated latitude"}
        if rotated
        else {"standard_name": "latitude", "units": "degrees_north", "long_name": "latitude"}
    )
    if axis_attr:
        attrs["axis"] = "Y"
    b = None if bounds is None else np.asarray(bounds, np.float64)
    return Axis(name, np.asarray(values, np.float64), b, attrs)


def longitude_axis(
    values: Any,
    bounds: Any = None,
    *,
    name: str = "lon",
    rotated: bool = False,
    axis_attr: bool = True,
) -> Axis:
    """A longitude (or rotated ``grid_longitude``) coordinate."""
    attrs: dict[str, Any] = (
        {"standard_name": "grid_longitude", "units": "degrees", "long_name": "rotated longitude"}
        if rotated
        else {"standard_name": "longitude", "units": "degrees_east", "long_name": "longitude"}
    )
    if axis_attr:
        attrs["axis"] = "X"
    b = None if bounds is None else np.asarray(bounds, np.float64)
    return Axis(name, np.asarray(values, np.float64), b, attrs)


def projected_axis(values: Any, bounds: Any = None, *, name: str = "x") -> Axis:
    """A projection coordinate in metres (``name`` ``"x"`` or ``"y"``)."""
    xy = "x" if name.endswith("x") else "y"
    attrs = {
        "standard_name": f"projection_{xy}_coordinate",
        "units": "m",
        "axis": xy.upper(),
        "long_name": f"{xy} coordinate of projection",
    }
    b = None if bounds is None else np.asarray(bounds, np.float64)
    return Axis(name, np.asarray(values, np.float64), b, attrs)


@dataclass(frozen=True)
class Grid:
    """A horizontal grid: its two dimensions, coordinates and grid variables.

    ``coords`` holds the coordinate variables (1-D dimension coordinates, 2-D latitude and
    longitude), ``variables`` the bounds and grid-mapping variables, ``data_attrs`` what every
    field on the grid carries (``grid_mapping``).
    """

    kind: str
    ydim: str
    xdim: str
    ny: int
    nx: int
    coords: dict[str, xr.Variable]
    variables: dict[str, xr.Variable] = field(default_factory=dict)
    data_attrs: dict[str, Any] = field(default_factory=dict)
    description: str = ""

    def __repr__(self) -> str:
        return (
            f"Grid({self.kind}, {self.ydim}={self.ny}, {self.xdim}={self.nx}; {self.description})"
        )


def _rotate_to_true(rlat: np.ndarray, rlon: np.ndarray, pole_lat: float, pole_lon: float):
    """True latitude/longitude of rotated-pole coordinates (a rotation of the sphere)."""
    phi, lam = np.deg2rad(rlat), np.deg2rad(rlon)
    p = np.stack([np.cos(phi) * np.cos(lam), np.cos(phi) * np.sin(lam), np.sin(phi)])
    t = np.deg2rad(90.0 - pole_lat)  # rotated north pole -> true pole position
    ry = np.array([[np.cos(t), 0, np.sin(t)], [0, 1, 0], [-np.sin(t), 0, np.cos(t)]])
    g = np.deg2rad(pole_lon + 180.0)
    rz = np.array([[np.cos(g), -np.sin(g), 0], [np.sin(g), np.cos(g), 0], [0, 0, 1]])
    q = np.einsum("ij,j...->i...", rz @ ry, p)
    lat = np.rad2deg(np.arctan2(q[2], np.hypot(q[0], q[1])))
    lon = np.rad2deg(np.arctan2(q[1], q[0]))
    return lat, lon


def _axis_vars(ax: Axis, coords: dict[str, xr.Variable], variables: dict[str, xr.Variable]):
    attrs = dict(ax.attrs)
    if ax.bounds is not None:
        bname = f"{ax.name}_bnds"
        attrs["bounds"] = bname
        variables[bname] = xr.Variable((ax.name, ax.bounds_dim), ax.bounds)
    coords[ax.name] = xr.Variable(ax.name, ax.values, attrs)


def grid_1d(y: Axis, x: Axis, *, kind: str | None = None, aux_latlon: bool = False) -> Grid:
    """A rectilinear grid from two axes (lonlat, rotated or projected, from their attrs).

    ``aux_latlon`` adds 2-D true ``lat``/``lon`` coordinates (rotated and projected grids).
    """
    coords: dict[str, xr.Variable] = {}
    variables: dict[str, xr.Variable] = {}
    _axis_vars(y, coords, variables)
    _axis_vars(x, coords, variables)
    sn = y.attrs.get("standard_name")
    if kind is None:
        kind = {"grid_latitude": "rotated", "latitude": "lonlat"}.get(str(sn), "projected")
    data_attrs: dict[str, Any] = {}
    yy, xx = np.meshgrid(y.values, x.values, indexing="ij")
    if kind == "rotated":
        pole = (39.25, -162.0)
        variables["rotated_pole"] = xr.Variable(
            (),
            np.int32(0),
            {
                "grid_mapping_name": "rotated_latitude_longitude",
                "grid_north_pole_latitude": pole[0],
                "grid_north_pole_longitude": pole[1],
            },
        )
        data_attrs["grid_mapping"] = "rotated_pole"
        if aux_latlon:
            lat2, lon2 = _rotate_to_true(yy, xx, *pole)
    elif kind == "projected":
        variables["crs"] = xr.Variable(
            (),
            np.int32(0),
            {
                "grid_mapping_name": "lambert_conformal_conic",
                "standard_parallel": [30.0, 60.0],
                "longitude_of_central_meridian": 10.0,
                "latitude_of_projection_origin": 45.0,
            },
        )
        data_attrs["grid_mapping"] = "crs"
        if aux_latlon:  # any smooth map will do
            lat2 = 45.0 + yy / 111_000.0
            lon2 = 10.0 + xx / (111_000.0 * np.cos(np.deg2rad(lat2)))
    if aux_latlon and kind in ("rotated", "projected"):
        dims = (y.name, x.name)
        coords["lat"] = xr.Variable(
            dims, lat2, {"standard_name": "latitude", "units": "degrees_north"}
        )
        coords["lon"] = xr.Variable(
            dims, lon2, {"standard_name": "longitude", "units": "degrees_east"}
        )
    desc = f"{y!r}, {x!r}" + (", 2-D lat/lon" if aux_latlon else "")
    return Grid(kind, y.name, x.name, y.values.size, x.values.size, coords, variables,
                data_attrs, desc)  # fmt: skip


def rotated_grid(rlat: Axis, rlon: Axis, *, aux_latlon: bool = False) -> Grid:
    return grid_1d(rlat, rlon, kind="rotated", aux_latlon=aux_latlon)


def _wrap(lon: np.ndarray, lo: float) -> np.ndarray:
    return np.asarray(np.where((lon >= lo) & (lon < lo + 360.0), lon, (lon - lo) % 360.0 + lo))


def curvilinear_grid(
    ny: int,
    nx: int,
    *,
    lat0: float = 40.0,
    lon0: float = 170.0,
    dlat: tuple[float, float] = (0.8, 0.2),
    dlon: tuple[float, float] = (0.9, -0.3),
    lon_lo: float = -180.0,
    bounds: bool = False,
    dims: tuple[str, str] = ("nj", "ni"),
) -> Grid:
    """A curvilinear grid on dims without coordinates, affine in index space:
    ``lat = lat0 + dlat[0] * j + dlat[1] * i``, ``lon = lon0 + dlon[0] * i + dlon[1] * j``,
    longitudes wrapped into ``[lon_lo, lon_lo + 360)``; ``bounds`` adds CF corner bounds
    ``(ny, nx, 4)`` at the half-index positions."""
    j, i = np.meshgrid(np.arange(ny, dtype=float), np.arange(nx, dtype=float), indexing="ij")

    def lat_of(jj, ii):
        return lat0 + dlat[0] * jj + dlat[1] * ii

    def lon_of(jj, ii):
        return _wrap(lon0 + dlon[0] * ii + dlon[1] * jj, lon_lo)

    lat_attrs = {"standard_name": "latitude", "units": "degrees_north"}
    lon_attrs = {"standard_name": "longitude", "units": "degrees_east"}
    variables: dict[str, xr.Variable] = {}
    if bounds:
        jv, iv = np.meshgrid(np.arange(ny + 1) - 0.5, np.arange(nx + 1) - 0.5, indexing="ij")
        for nm, fn, attrs in (("lat", lat_of, lat_attrs), ("lon", lon_of, lon_attrs)):
            v = fn(jv, iv)
            b = np.stack([v[:-1, :-1], v[:-1, 1:], v[1:, 1:], v[1:, :-1]], axis=-1)
            variables[f"{nm}_bounds"] = xr.Variable((*dims, "nv4"), b)
            attrs["bounds"] = f"{nm}_bounds"
    coords = {
        "lat": xr.Variable(dims, lat_of(j, i), lat_attrs),
        "lon": xr.Variable(dims, lon_of(j, i), lon_attrs),
    }
    desc = f"lat0={lat0}, lon0={lon0}, dlat={dlat}, dlon={dlon}, lon_lo={lon_lo}, bounds={bounds}"
    return Grid("curvilinear", dims[0], dims[1], ny, nx, coords, variables, {}, desc)


@dataclass(frozen=True)
class Field:
    """A data variable: name, dimension order, dtype, and how its values are drawn."""

    name: str
    dims: tuple[str, ...]
    dtype: str = "float64"
    seed: int = 0
    nonnegative: bool = False
    scale: float = 1.0
    offset: float = 0.0
    land: float = 0.0  # probability of a NaN (land) cell, the same in every slice
    scattered: float = 0.0  # probability of a NaN in any single cell
    zeros: float = 0.0  # probability of an exact zero (non-negative fields)


def _values(f: Field, shape: tuple[int, ...], yx: tuple[int, int]) -> np.ndarray:
    """Values of a field: random, NaN masked, at least one valid cell per horizontal slice."""
    rng = np.random.default_rng(f.seed)
    ya, xa = yx
    v = rng.normal(size=shape)
    if f.nonnegative:
        v = np.abs(v) * f.scale
        v[rng.random(shape) < f.zeros] = 0.0
    else:
        v = v * f.scale + f.offset
    nan = rng.random(shape) < f.scattered
    land_shape = [1] * len(shape)
    land_shape[ya], land_shape[xa] = shape[ya], shape[xa]
    nan |= rng.random(land_shape) < f.land
    v[nan] = np.nan
    # every horizontal slice keeps at least one valid cell
    moved = np.moveaxis(v, (ya, xa), (-2, -1))
    flat = moved.reshape(-1, shape[ya] * shape[xa])
    for row, src in zip(
        flat,
        np.moveaxis(rng.normal(size=shape), (ya, xa), (-2, -1)).reshape(flat.shape),
        strict=True,
    ):
        if np.isnan(row).all():
            k = int(rng.integers(row.size))
            row[k] = abs(src[k]) * f.scale if f.nonnegative else src[k] * f.scale + f.offset
    v = np.moveaxis(flat.reshape(moved.shape), (-2, -1), (ya, xa))
    return v.astype(f.dtype)


def build_dataset(
    grid: Grid,
    fields: list[Field],
    *,
    sizes: dict[str, int] | None = None,
    area: str | None = None,
    area_seed: int = 0,
    area_dtype: str = "float64",
    off_grid: bool = False,
    chunks: dict[str, tuple[int, ...]] | None = None,
) -> xr.Dataset:
    """A Dataset of ``fields`` on ``grid``.

    ``sizes`` gives the extra dimensions (``time`` gets datetime coordinates, ``lev`` pressure
    levels, ``member`` none); ``area`` = ``"data"`` / ``"coord"`` adds a positive cell-area
    variable ``areacella`` (as data variable or coordinate) named by ``cell_measures``;
    ``off_grid`` adds a variable on the extra dimensions only; ``chunks`` makes it dask-backed.
    """
    sizes = dict(sizes or {})
    all_sizes = {**sizes, grid.ydim: grid.ny, grid.xdim: grid.nx}
    coords: dict[str, Any] = dict(grid.coords)
    if "time" in sizes:
        coords["time"] = xr.Variable(
            "time",
            np.datetime64("2000-01-01") + np.arange(sizes["time"]) * np.timedelta64(1, "D"),
            {"standard_name": "time", "axis": "T"},
        )
    if "lev" in sizes:
        coords["lev"] = xr.Variable(
            "lev",
            np.linspace(1000.0, 500.0, sizes["lev"]),
            {"standard_name": "air_pressure", "units": "hPa", "positive": "down", "axis": "Z"},
        )
    data: dict[str, Any] = dict(grid.variables)
    for f in fields:
        shape = tuple(all_sizes[d] for d in f.dims)
        yx = (f.dims.index(grid.ydim), f.dims.index(grid.xdim))
        attrs = {"units": "1", "long_name": f"field {f.name}", **grid.data_attrs}
        if area is not None:
            attrs["cell_measures"] = "area: areacella"
        data[f.name] = xr.Variable(f.dims, _values(f, shape, yx), attrs)
    if area is not None:
        rng = np.random.default_rng(area_seed)
        a = xr.Variable(
            (grid.ydim, grid.xdim),
            (rng.uniform(0.5, 2.0, (grid.ny, grid.nx)) * 1e9).astype(area_dtype),
            {"standard_name": "cell_area", "units": "m2"},
        )
        (coords if area == "coord" else data)["areacella"] = a
    if off_grid:
        extra = [d for d in sizes if d != "member"][:1]
        data["count"] = xr.Variable(tuple(extra), np.arange(sizes[extra[0]]) if extra else 3)
    ds = xr.Dataset(data, coords=coords, attrs={"title": "xsr property test"})
    if chunks:
        ds = ds.chunk({d: c for d, c in chunks.items() if d in ds.dims})
    return ds


@dataclass(frozen=True)
class Case:
    """An input to downscale: the object, a factor and its horizontal dims ``(y, x)``."""

    obj: xr.Dataset | xr.DataArray
    factor: int
    ydim: str
    xdim: str
    description: str = ""

    def __repr__(self) -> str:
        o = self.obj
        kind = type(o).__name__
        backing = "dask" if o.chunks else "numpy"
        if isinstance(o, xr.DataArray):
            vars_ = f"{o.name}{o.dims}:{o.dtype}"
        else:
            vars_ = ", ".join(f"{n}{v.dims}:{v.dtype}" for n, v in o.data_vars.items())
        return (
            f"Case({kind} [{backing}] factor={self.factor} y={self.ydim} x={self.xdim} "
            f"vars=[{vars_}] {self.description})"
        )


# ------------------------------------------------------------------------------------------
# strategies: axes and grids
# ------------------------------------------------------------------------------------------
@st.composite
def _widths(draw: st.DrawFn, n: int, regular: bool) -> np.ndarray:
    if regular:
        return np.full(n, float(draw(st.integers(1, 3))))
    return np.array(draw(st.lists(st.integers(1, 5), min_size=n, max_size=n)), dtype=float)


@st.composite
def _centres_in(draw: st.DrawFn, edges: np.ndarray, with_bounds: bool) -> np.ndarray:
    """Cell centres inside the cells of ``edges``: midpoints, or anywhere when the bounds
    are stored (CF centres need not be midpoints)."""
    mid = 0.5 * (edges[:-1] + edges[1:])
    if not with_bounds or not draw(st.booleans()):
        return mid
    frac = np.array(
        draw(st.lists(st.sampled_from([0.25, 0.5, 0.75]), min_size=mid.size, max_size=mid.size))
    )
    return edges[:-1] + frac * (edges[1:] - edges[:-1])


@st.composite
def latitudes(draw: st.DrawFn, n: int, *, name: str = "lat") -> Axis:
    """A latitude axis: regional, global (bounds at the poles) or with centres at the poles."""
    layout = draw(st.sampled_from(["regional", "global", "pole_centres"]))
    regular = draw(st.booleans())
    with_bounds = draw(st.booleans())
    w = draw(_widths(n, regular))
    if layout == "regional":
        unit = draw(st.sampled_from(_UNITS_DEG))
        span = unit * w.sum()
        start = float(draw(st.integers(-85, 80)))
        start = min(start, 85.0 - span)
        edges = start + unit * np.concatenate([[0.0], np.cumsum(w)])
        centres = draw(_centres_in(edges, with_bounds))
        bounds = _cf_bounds(edges) if with_bounds else None
    elif layout == "global":
        edges = -90.0 + 180.0 * np.concatenate([[0.0], np.cumsum(w)]) / w.sum()
        edges[-1] = 90.0
        if regular:
            edges = np.linspace(-90.0, 90.0, n + 1)
        centres = draw(_centres_in(edges, with_bounds))
        bounds = _cf_bounds(edges) if with_bounds else None
    else:
        ends = draw(st.sampled_from(["both", "north", "south"]))
        if ends == "both":
            centres = -90.0 + 180.0 * np.concatenate([[0.0], np.cumsum(w[:-1])]) / w[:-1].sum()
            centres[-1] = 90.0
            if regular:
                centres = np.linspace(-90.0, 90.0, n)
        else:
            unit = draw(st.sampled_from(_UNITS_DEG))
            steps = unit * np.concatenate([[0.0], np.cumsum(w[:-1])])
            centres = 90.0 - steps[::-1] if ends == "north" else -90.0 + steps
        bounds = None
        if with_bounds:  # midpoints between centres, the pole cells ending at the pole
            edges = np.concatenate(
                [
                    [centres[0] - 0.5 * (centres[1] - centres[0])],
                    0.5 * (centres[:-1] + centres[1:]),
                    [centres[-1] + 0.5 * (centres[-1] - centres[-2])],
                ]
            )
            bounds = _cf_bounds(np.clip(edges, -90.0, 90.0))
    if draw(st.booleans()):
        centres, bounds = _flip(centres, bounds)
    return latitude_axis(centres, bounds, name=name)


@st.composite
def longitudes(draw: st.DrawFn, n: int, *, name: str = "lon") -> Axis:
    """A longitude axis in 0..360 or -180..180: global (periodic) or regional."""
    lo = draw(st.sampled_from([0.0, -180.0]))
    regular = draw(st.booleans())
    with_bounds = draw(st.booleans())
    w = draw(_widths(n, regular))
    if draw(st.booleans()):  # global
        edges = 360.0 * np.concatenate([[0.0], np.cumsum(w)]) / w.sum()
        edges[-1] = 360.0
        if regular:
            edges = np.linspace(0.0, 360.0, n + 1)
        # the first cell starts on the convention's start, or is centred on it
        edges = lo + edges - (0.5 * edges[1] if draw(st.booleans()) else 0.0)
    else:
        unit = draw(st.sampled_from(_UNITS_DEG))
        start = lo + float(draw(st.integers(0, 359)))
        edges = start + unit * np.concatenate([[0.0], np.cumsum(w)])
    centres = draw(_centres_in(edges, with_bounds))
    bounds = _cf_bounds(edges) if with_bounds else None
    # centres in the convention's range; each cell's bounds move with its centre
    wrapped = _wrap(centres, lo)
    if bounds is not None:
        bounds = bounds + (wrapped - centres)[:, None]
    centres = wrapped
    if draw(st.booleans()):
        centres, bounds = _flip(centres, bounds)
    return longitude_axis(centres, bounds, name=name)


@st.composite
def _rotated_axis(draw: st.DrawFn, n: int, *, lat: bool) -> Axis:
    regular = draw(st.booleans())
    with_bounds = draw(st.booleans())
    unit = draw(st.sampled_from(_UNITS_DEG))
    w = draw(_widths(n, regular))
    start = float(draw(st.integers(-30, 10)))
    edges = start + unit * np.concatenate([[0.0], np.cumsum(w)])
    centres = draw(_centres_in(edges, with_bounds))
    bounds = _cf_bounds(edges) if with_bounds else None
    if draw(st.booleans()):
        centres, bounds = _flip(centres, bounds)
    make = latitude_axis if lat else longitude_axis
    return make(centres, bounds, name="rlat" if lat else "rlon", rotated=True)


@st.composite
def _projected(draw: st.DrawFn, n: int, *, name: str) -> Axis:
    regular = draw(st.booleans())
    with_bounds = draw(st.booleans())
    unit = 1000.0 * draw(st.sampled_from(_UNITS_KM))
    w = draw(_widths(n, regular))
    start = 1000.0 * draw(st.integers(-500, 500))
    edges = start + unit * np.concatenate([[0.0], np.cumsum(w)])
    centres = draw(_centres_in(edges, with_bounds))
    bounds = _cf_bounds(edges) if with_bounds else None
    if draw(st.booleans()):
        centres, bounds = _flip(centres, bounds)
    return projected_axis(centres, bounds, name=name)


KINDS = ("lonlat", "rotated", "projected", "curvilinear")


@st.composite
def grids(draw: st.DrawFn, kinds: tuple[str, ...] = KINDS, max_cells: int = 6) -> Grid:
    """A horizontal grid of 2..``max_cells`` cells a side, of one of ``kinds``."""
    kind = draw(st.sampled_from(kinds))
    ny = draw(st.integers(2, max_cells))
    nx = draw(st.integers(2, max_cells))
    if kind == "lonlat":
        return grid_1d(draw(latitudes(ny)), draw(longitudes(nx)))
    if kind == "rotated":
        y = draw(_rotated_axis(ny, lat=True))
        x = draw(_rotated_axis(nx, lat=False))
        return rotated_grid(y, x, aux_latlon=draw(st.booleans()))
    if kind == "projected":
        y, x = draw(_projected(ny, name="y")), draw(_projected(nx, name="x"))
        return grid_1d(y, x, kind="projected", aux_latlon=draw(st.booleans()))
    steps = st.sampled_from([0.5, 0.8, 1.0, 1.5, 2.0])
    skew = st.sampled_from([0.0, 0.1, -0.2, 0.3])
    sign = st.sampled_from([1.0, -1.0])
    return curvilinear_grid(
        ny,
        nx,
        lat0=float(draw(st.integers(-60, 60))),
        lon0=float(draw(st.integers(-180, 359))),
        dlat=(draw(sign) * draw(steps), draw(skew)),
        dlon=(draw(sign) * draw(steps), draw(skew)),
        lon_lo=draw(st.sampled_from([0.0, -180.0])),
        bounds=draw(st.booleans()),
        dims=draw(st.sampled_from([("nj", "ni"), ("j", "i")])),
    )


# ------------------------------------------------------------------------------------------
# strategies: datasets
# ------------------------------------------------------------------------------------------
@st.composite
def _partition(draw: st.DrawFn, n: int) -> tuple[int, ...]:
    """Chunk sizes of an axis of ``n`` cells: any split into consecutive parts."""
    cuts = draw(st.sets(st.integers(1, n - 1), max_size=3)) if n > 1 else set()
    edges = [0, *sorted(cuts), n]
    return tuple(b - a for a, b in itertools.pairwise(edges))


@st.composite
def datasets(
    draw: st.DrawFn,
    *,
    grid: st.SearchStrategy[Grid] | None = None,
    nonnegative: bool | None = None,
    dask: bool | None = None,
    max_extra: int = 2,
) -> xr.Dataset:
    """A CF Dataset with one or two float fields on a horizontal grid.

    ``nonnegative``: all fields non-negative (True), signed (False), or drawn (None);
    ``dask``: dask-backed with irregular chunks along every dimension (True), numpy (False),
    or drawn (None).
    """
    g = draw(grid if grid is not None else grids())
    extra = draw(st.lists(st.sampled_from(list(_EXTRA)), unique=True, max_size=max_extra))
    sizes = {d: draw(st.integers(1, 3)) for d in extra}
    names = ["tas", "pr"][: draw(st.integers(1, 2))]
    fields = []
    for name in names:
        dims = tuple(draw(st.permutations([*extra, g.ydim, g.xdim])))
        nonneg = draw(st.booleans()) if nonnegative is None else nonnegative
        fields.append(
            Field(
                name,
                dims,
                dtype=draw(st.sampled_from(["float64", "float32"])),
                seed=draw(st.integers(0, 2**32 - 1)),
                nonnegative=nonneg,
                scale=draw(st.sampled_from([1.0, 1e-3, 300.0])),
                offset=draw(st.sampled_from([0.0, 273.15, -5.0])),
                land=draw(st.sampled_from([0.0, 0.0, 0.25, 0.5])),
                scattered=draw(st.sampled_from([0.0, 0.0, 0.15])),
                zeros=draw(st.sampled_from([0.0, 0.3])) if nonneg else 0.0,
            )
        )
    area = draw(st.sampled_from([None, None, "data", "coord"]))
    use_dask = draw(st.booleans()) if dask is None else dask
    chunks = None
    if use_dask:
        all_sizes = {**sizes, g.ydim: g.ny, g.xdim: g.nx}
        chunks = {d: draw(_partition(n)) for d, n in all_sizes.items()}
    return build_dataset(
        g,
        fields,
        sizes=sizes,
        area=area,
        area_seed=draw(st.integers(0, 2**16)),
        area_dtype=draw(st.sampled_from(["float64", "float32"])),
        off_grid=draw(st.booleans()),
        chunks=chunks,
    )


def field_names(ds: xr.Dataset, ydim: str, xdim: str) -> list[str]:
    """Data variables on both horizontal dims that are not CF bounds or cell measures."""
    named: set[str] = set()
    for v in ds.variables.values():
        if isinstance(v.attrs.get("bounds"), str):
            named.add(v.attrs["bounds"])
        cm = str(v.attrs.get("cell_measures", "")).split()
        named.update(cm[i + 1] for i, t in enumerate(cm[:-1]) if t == "area:")
    return [
        str(n)
        for n, v in ds.data_vars.items()
        if ydim in v.dims and xdim in v.dims and n not in named
    ]


@st.composite
def dataarrays(draw: st.DrawFn, **kwargs: Any) -> xr.DataArray:
    """One field of a :func:`datasets` Dataset, with its coordinates."""
    ds = draw(datasets(**kwargs))
    ydim, xdim = _horizontal(ds)
    return ds[draw(st.sampled_from(field_names(ds, ydim, xdim)))]


def _wide_longitude_steps(obj: xr.Dataset | xr.DataArray, xdim: str) -> bool:
    """Whether the 1-D longitude ``xdim`` reads, from its centres alone, as neither
    increasing nor decreasing: each step taken the short way round (a step of 180 degrees or
    more reads as a wrap the other way), the steps differ in sign or one is a half turn."""
    if xdim not in obj.coords or obj[xdim].ndim != 1:
        return False
    if not str(obj[xdim].attrs.get("units", "")).endswith("east"):
        return False
    steps = (np.diff(np.asarray(obj[xdim].values, np.float64)) + 180.0) % 360.0 - 180.0
    return bool((np.abs(steps) == 180.0).any() or ((steps > 0).any() and (steps < 0).any()))


def _horizontal(ds: xr.Dataset) -> tuple[str, str]:
    for y, x in (("lat", "lon"), ("rlat", "rlon"), ("y", "x"), ("nj", "ni"), ("j", "i")):
        if y in ds.dims and x in ds.dims:
            return y, x
    raise AssertionError(f"no horizontal dims in {ds.dims}")  # pragma: no cover


@st.composite
def cases(
    draw: st.DrawFn,
    *,
    kinds: tuple[str, ...] = KINDS,
    nonnegative: bool | None = None,
    dask: bool | None = None,
    dataarray: bool | None = None,
    factors: tuple[int, ...] = (2, 3, 4),
) -> Case:
    """A Dataset or DataArray (``dataarray`` True/False/None: drawn) and a factor."""
    factor = draw(st.sampled_from(factors))
    max_cells = 6 if factor < 4 else 5
    ds = draw(datasets(grid=grids(kinds, max_cells=max_cells), nonnegative=nonnegative, dask=dask))
    ydim, xdim = _horizontal(ds)
    use_da = draw(st.booleans()) if dataarray is None else dataarray
    obj: xr.Dataset | xr.DataArray = ds
    if use_da:
        obj = ds[draw(st.sampled_from(field_names(ds, ydim, xdim)))]
        # without bounds, a longitude step of 180 degrees or more reads as a wrap the other
        # way: such a grid (cells wider than a half turn) is defined by its bounds alone
        assume(not _wide_longitude_steps(obj, xdim))
    desc = _describe_coords(obj, ydim, xdim)
    return Case(obj, factor, ydim, xdim, desc)


def _describe_coords(obj: xr.Dataset | xr.DataArray, ydim: str, xdim: str) -> str:
    parts = []
    for d in (ydim, xdim):
        if d in obj.coords:
            c = obj[d]
            b = c.attrs.get("bounds")
            has_b = isinstance(obj, xr.Dataset) and isinstance(b, str) and b in obj.variables
            parts.append(
                f"{d}={np.asarray(c.values).tolist()}"
                + (f" {b}={np.asarray(obj[b].values).tolist()}" if has_b else "")
            )
    for n in ("lat", "lon"):
        if n in obj.coords and obj[n].ndim == 2:
            parts.append(f"2-D {n}")
    if "areacella" in obj.coords or (isinstance(obj, xr.Dataset) and "areacella" in obj):
        parts.append("areacella")
    if obj.chunks:
        parts.append(
            f"chunks={dict(obj.chunksizes) if isinstance(obj, xr.DataArray) else dict(obj.chunks)}"
        )
    return "; ".join(parts)
