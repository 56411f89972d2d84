"""Fine-scale covariates (``guide=``): brought onto the output grid, aligned, filled, stacked.

A *guide* is a field known at the fine scale that tells where the coarse field varies inside
its cells: terrain height for temperature and precipitation, sea-surface temperature for
sea-surface height, land fraction, bathymetry.  :func:`prepare_guides` takes what the user
passes to :func:`xsr.downscale` (a DataArray, a Dataset of several covariates, or a sequence
of DataArrays, each on its own grid) and returns one array ``(..., C, NY, NX)`` on the
output grid, in the steps below; the methods that use guides
(:attr:`xsr.methods.base.Method.uses_guide`) get it at the array level.

1. **Dims.**  A guide's horizontal dims are found like the field's (cf-xarray, or the usual
   names); its other dims (a daily SST: ``time``) must be dims of the field, and are aligned
   to the field's labels (every label of the field must be in the guide); a guide without
   them is static.
2. **Grid.**  Onto the output (fine) grid, by the first rule that applies:

   * *the output grid*: the guide's coordinates are the output grid's (any storage order,
     longitudes modulo 360, float32 labels): reordered;
   * *a refinement of the output grid by an integer k*: the guide's cells nest k x k in the
     output cells (edges coincide): their area-weighted, NaN-aware block mean (conservative);
   * *another grid that covers the domain*: bilinear interpolation at the output centres
     (:meth:`xarray.DataArray.interp`; for a curvilinear output, at its 2-D latitude and
     longitude).

   A guide that does not cover the output grid, is on a grid of another kind (latitude/
   longitude against a projection), or has coordinates in other units, is an error that
   names the fix.
3. **Missing values** (NaN: elevation over the sea, SST over land) are filled from their
   valid neighbours, ring after ring, then with the mean of the guide: methods need a finite
   guide everywhere.
4. What was done with each guide is recorded in the result's attributes (``xsr_guide``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from . import grid
from .cfgrid import Grid, _coord_kind, match_labels, spatial_dims
from .exceptions import CoordinateError, OptionError, ShapeError, SpatialDimsError

if TYPE_CHECKING:
    from collections.abc import Hashable

__all__ = ["GUIDE_DIM", "Guides", "prepare_guides"]

#: Dims of the guide array given to the array code: channel, fine y, fine x.
GUIDE_DIM = "xsr_guide"
FINE_Y = "xsr_fine_y"
FINE_X = "xsr_fine_x"


@dataclass(frozen=True)
class Guides:
    """The covariates on the output grid, ready for the array code.

    Attributes
    ----------
    variable : xarray.Variable
        Dims ``(*lead, "xsr_guide", "xsr_fine_y", "xsr_fine_x")``: ``lead`` the non-spatial
        dims of the guides (a subset of the field's, in the field's order; none for static
        guides), then one channel per guide on the fine grid; float64, finite; numpy or dask.
    names : tuple of str
        The guides' names, one per channel.
    units : tuple of str or None
        Their ``units`` attributes.
    notes : tuple of str
        What was done with each (for the ``xsr_guide`` attribute).
    """

    variable: xr.Variable
    names: tuple[str, ...]
    units: tuple[str | None, ...]
    notes: tuple[str, ...]

    @property
    def lead_dims(self) -> tuple[str, ...]:
        return tuple(str(d) for d in self.variable.dims[:-3])

    def describe(self) -> str:
        """One line for the ``xsr_guide`` attribute."""
        return "; ".join(f"{n}: {t}" for n, t in zip(self.names, self.notes))


def _as_list(guide: Any) -> list[xr.DataArray]:
    """The guides as a list of named DataArrays."""
    if isinstance(guide, xr.DataArray):
        items = [guide]
    elif isinstance(guide, xr.Dataset):
        bounds = {str(v.attrs.get("bounds")) for v in guide.variables.values()}
        items = [
            guide[n]
            for n, v in guide.data_vars.items()
            if v.ndim >= 2 and str(n) not in bounds and v.dtype.kind in "biuf"
        ]
        if not items:
            raise OptionError(
                f"guide is a Dataset without a 2-D numeric variable (it holds "
                f"{[str(n) for n in guide.data_vars]}); pass the covariates as DataArrays"
            )
    elif isinstance(guide, Sequence) and not isinstance(guide, str | bytes) and guide:
        items = list(guide)
        bad = [type(v).__name__ for v in items if not isinstance(v, xr.DataArray)]
        if bad:
            raise OptionError(
                f"guide must be a DataArray, a Dataset or a list of DataArrays, got a list "
                f"holding {bad}; open the files with xarray first"
            )
    else:
        raise OptionError(
            f"guide must be a DataArray, a Dataset or a list of DataArrays (fine-scale "
            f"covariates such as elevation), got {type(guide).__name__}; e.g. "
            "guide=xr.open_dataset('elevation.nc')['elevation']"
        )
    out: list[xr.DataArray] = []
    seen: set[str] = set()
    for k, da in enumerate(items):
        name = str(da.name) if da.name is not None else f"guide{k}"
        if name in seen:
            raise OptionError(
                f"two guides are named {name!r}; rename one (da.rename('...')): the names "
                "tell the guides apart (trained networks check them)"
            )
        seen.add(name)
        if da.dtype.kind not in "biuf":
            raise OptionError(
                f"guide {name!r} has dtype {da.dtype}; a guide must be numeric (a covariate "
                "such as elevation in m)"
            )
        out.append(da.rename(name))
    return out


def _field_dims(obj: xr.Dataset | xr.DataArray, g: Grid) -> dict[str, Any]:
    """Non-spatial dims of the fields to downscale (name -> labels or None), in order."""
    dims: dict[str, Any] = {}
    for d in obj.dims:
        if d in (g.ydim, g.xdim):
            continue
        dims[str(d)] = obj[d].values if d in obj.coords else None
    return dims


def _align_lead(da: xr.DataArray, gy: str, gx: str, dims: Mapping[str, Any]) -> xr.DataArray:
    """The guide with its non-spatial dims aligned to the field's labels."""
    lead = [str(d) for d in da.dims if d not in (gy, gx)]
    extra = [d for d in lead if d not in dims]
    if extra:
        raise ShapeError(
            f"guide {da.name!r} has dims {extra} that the data do not have (they have "
            f"{list(dims)}); a guide is static (only the horizontal dims) or shares the data's "
            f"other dims (e.g. a daily SST for a daily series): select or average them first, "
            f"e.g. guide.isel({extra[0]}=0)"
        )
    for d in lead:
        want = dims[d]
        if want is None or d not in da.coords:
            if da.sizes[d] != (len(want) if want is not None else da.sizes[d]):
                raise ShapeError(f"guide {da.name!r}: dim {d!r} has another length")
            continue
        have = da[d].values
        missing = np.setdiff1d(want, have)
        if missing.size:
            raise ShapeError(
                f"guide {da.name!r} lacks {missing.size} of the data's {d!r} labels (e.g. "
                f"{missing[:1].tolist()}); give the guide for every {d} of the data, or "
                "select the data to match"
            )
        da = da.sel({d: want})
    order = [d for d in dims if d in lead]
    return da.transpose(*order, gy, gx)


def _guide_axes(da: xr.DataArray) -> tuple[str, str]:
    try:
        return spatial_dims(da)
    except SpatialDimsError as e:
        raise SpatialDimsError(
            f"guide {da.name!r}: {e}; the guide needs its own horizontal coordinates (or the "
            "usual dim names) to be brought onto the output grid"
        ) from None


def _lon_to(values: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Guide longitudes in the 360-degree convention of the target's."""
    lo = grid.longitude_convention(target)
    return values if lo is None else grid.wrap_longitude(values, lo)


def _wrap_lon(da: xr.DataArray, gx: str, target: np.ndarray) -> xr.DataArray:
    """The guide with its longitudes in the target's convention, ascending, each once (a
    global guide that repeats its first column as 360 or +180 keeps one of the two), and,
    when it goes round the globe, one column more on each side (taken across the seam), so
    that interpolation works up to the seam."""
    lon = _lon_to(np.asarray(da[gx].values, np.float64), target)
    _, first = np.unique(lon, return_index=True)
    da = da.assign_coords({gx: lon}).isel({gx: np.sort(first)}).sortby(gx)
    lon = np.asarray(da[gx].values, np.float64)
    if lon.size > 2 and grid.is_periodic_longitude(lon):
        left = da.isel({gx: [-1]}).assign_coords({gx: [lon[-1] - 360.0]})
        right = da.isel({gx: [0]}).assign_coords({gx: [lon[0] + 360.0]})
        da = xr.concat([left, da, right], dim=gx)
    return da


def _edges(c: np.ndarray, kind: str) -> np.ndarray:
    """Cell edges ``(n + 1,)`` of ascending 1-D centres (longitudes taken as they are)."""
    b = grid.infer_bounds_1d(c, kind="latitude" if kind == "latitude" else "other")
    return np.concatenate([b[:, 0], b[-1:, 1]])


def _nest(gc: np.ndarray, fine_b: np.ndarray, kind: str) -> tuple[int, int] | None:
    """(start, k) when the guide cells of centres ``gc`` nest k by k in the fine cells of
    bounds ``fine_b`` (edges coinciding), else None."""
    if gc.size < 2 * fine_b.shape[0]:
        return None
    ge = _edges(gc, kind)
    fe = np.concatenate([fine_b[:, 0], fine_b[-1:, 1]])
    gw = float(np.median(np.abs(np.diff(ge))))
    fw = float(np.median(np.abs(np.diff(fe))))
    if gw <= 0:
        return None
    k = round(fw / gw)
    if k < 2 or abs(fw / gw - k) > 1e-3 * k:
        return None
    if (ge[-1] - ge[0]) * (fe[-1] - fe[0]) < 0:  # other direction: flip the guide first
        return None
    tol = 1e-3 * gw
    i0 = int(np.argmin(np.abs(ge - fe[0])))
    if abs(ge[i0] - fe[0]) > tol or i0 + k * (fe.size - 1) >= ge.size:
        return None
    sel = ge[i0 : i0 + k * (fe.size - 1) + 1 : k]
    if sel.size != fe.size or not np.allclose(sel, fe, rtol=0, atol=tol):
        return None
    return i0, k


def _onto_rectilinear(
    da: xr.DataArray, gy: str, gx: str, g: Grid, f: int, units: Mapping[str, Any]
) -> tuple[Any, str]:
    """The guide on the fine 1-D grid: (values (..., NY, NX), what was done)."""
    fy, fx = g.centres("y", f), g.centres("x", f)
    kinds = {"y": g.ykind, "x": g.xkind}
    for axis, gd, target_dim in (("y", gy, g.ydim), ("x", gx, g.xdim)):
        if gd not in da.coords or da[gd].ndim != 1:
            n = fy.size if axis == "y" else fx.size
            if da.sizes[gd] != n:
                raise CoordinateError(
                    f"guide {da.name!r} has no coordinate on {gd!r} and {da.sizes[gd]} cells "
                    f"where the output grid has {n}: without labels a guide must be on the "
                    f"output grid itself; add its coordinates (guide.assign_coords({gd}=...))"
                )
            continue
        gk = _coord_kind(da[gd])
        tk = kinds[axis]
        if gk != tk and not (gk == "other" and tk != "other"):
            raise CoordinateError(
                f"guide {da.name!r}: its {gd!r} is a {gk} coordinate but the data's "
                f"{target_dim!r} is a {tk} one; bring the guide onto the data's kind of grid "
                "first (e.g. reproject it)"
            )
        gu = da[gd].attrs.get("units")
        tu = units[axis]
        if gk == "other" and gu is not None and tu is not None and str(gu) != str(tu):
            raise CoordinateError(
                f"guide {da.name!r}: its {gd!r} is in {gu!r} but the data's {target_dim!r} in "
                f"{tu!r}; convert the guide's coordinate first (e.g. "
                f"guide.assign_coords({gd}=guide.{gd} * 1000) for km to m)"
            )
    cy = np.asarray(da[gy].values, np.float64) if gy in da.coords else None
    cx = np.asarray(da[gx].values, np.float64) if gx in da.coords else None
    if cx is not None and g.xkind == "longitude":
        da = _wrap_lon(da, gx, fx)
        cx = np.asarray(da[gx].values, np.float64)
    if cy is not None and cy.size > 1 and cy[0] > cy[-1]:
        da = da.sortby(gy)
        cy = np.asarray(da[gy].values, np.float64)

    def reorder(c: np.ndarray | None, target: np.ndarray, kind: str) -> np.ndarray | bool | None:
        if c is None:
            return None
        if c.size != target.size:  # another grid (a finer one may share some labels)
            return False
        idx, bad = match_labels(c, target, kind=kind)
        return False if bad is not None else idx

    oy = reorder(cy, fy, g.ykind)
    ox = reorder(cx, fx, g.xkind)
    if oy is not False and ox is not False:
        sel = {}
        if isinstance(oy, np.ndarray):
            sel[gy] = oy
        if isinstance(ox, np.ndarray):
            sel[gx] = ox
        return da.isel(sel).data, "on the output grid"
    assert cy is not None and cx is not None
    fyb = grid.refine_1d(g.centres("y"), f, bounds=g.ybounds, kind=g.ykind)[1]
    fxb = grid.refine_1d(g.centres("x"), f, bounds=g.xbounds, kind=g.xkind)[1]
    ny_, nx_ = _nest(cy, _ascending(fyb), g.ykind), _nest(cx, _ascending(fxb), g.xkind)
    if ny_ is not None and nx_ is not None and ny_[1] == nx_[1]:
        (y0, k), (x0, _) = ny_, nx_
        sub = da.isel({gy: slice(y0, y0 + k * fy.size), gx: slice(x0, x0 + k * fx.size)})
        w = _guide_areas(sub, gy, gx, g)
        valid = sub.notnull()
        num = (sub.fillna(0.0) * w).coarsen({gy: k, gx: k}).sum()
        den = w.where(valid, 0.0).coarsen({gy: k, gx: k}).sum()
        mean = (num / den.where(den > 0)).drop_vars([gy, gx], errors="ignore")
        # the blocks run along the guide's (ascending) axes; the output grid may descend
        flip = {}
        if fy.size > 1 and fy[0] > fy[-1]:
            flip[gy] = slice(None, None, -1)
        if fx.size > 1 and fx[0] > fx[-1]:
            flip[gx] = slice(None, None, -1)
        out = mean.isel(flip) if flip else mean
        return out.data, f"conservative {k} x {k} block mean of its finer grid"
    _check_covers(da, gy, gx, cy, cx, fy, fx, g)
    out = da.interp(
        {gy: fy, gx: fx}, method="linear", kwargs={"fill_value": None}, assume_sorted=True
    )
    return out.data, f"bilinear interpolation from its {cy.size} x {cx.size} grid"


def _ascending(b: np.ndarray) -> np.ndarray:
    """Bounds ``(n, 2)`` ordered from low to high."""
    if b[0, 0] > b[-1, 1]:
        return b[::-1, ::-1]
    return b


def _guide_areas(sub: xr.DataArray, gy: str, gx: str, g: Grid) -> xr.DataArray:
    """Cell weights of the guide's own cells: spherical areas on latitude/longitude grids."""
    if g.ykind == "latitude":
        lat = np.asarray(sub[gy].values, np.float64)
        b = grid.infer_bounds_1d(lat, kind="latitude")
        w = np.abs(np.sin(np.deg2rad(b[:, 1])) - np.sin(np.deg2rad(b[:, 0])))
        return xr.DataArray(w, dims=(gy,)) * xr.ones_like(sub[gx], dtype=np.float64)
    return xr.ones_like(sub[gy], dtype=np.float64) * xr.ones_like(sub[gx], dtype=np.float64)


def _check_covers(
    da: xr.DataArray,
    gy: str,
    gx: str,
    cy: np.ndarray,
    cx: np.ndarray,
    fy: np.ndarray,
    fx: np.ndarray,
    g: Grid,
) -> None:
    """Refuse a guide whose cells do not cover every output centre."""
    for name, c, t, kind in ((gy, cy, fy, g.ykind), (gx, cx, fx, g.xkind)):
        if c.size < 2:
            raise CoordinateError(
                f"guide {da.name!r} has a single {name!r} value; it cannot be interpolated "
                "onto the output grid: give a guide with at least 2 cells along each axis"
            )
        e = _edges(c, kind)
        lo, hi = float(min(e[0], e[-1])), float(max(e[0], e[-1]))
        tol = 1e-6 * (hi - lo)
        out = (t < lo - tol) | (t > hi + tol)
        if out.any():
            raise CoordinateError(
                f"guide {da.name!r} covers {name} {lo:g} to {hi:g}, but the output grid "
                f"reaches {float(t.min()):g} to {float(t.max()):g} ({int(out.sum())} "
                f"{name} values outside); pass a guide that covers the whole domain, or "
                "downscale a region inside it (ds.sel(...))"
            )


def _onto_curvilinear(da: xr.DataArray, gy: str, gx: str, g: Grid, f: int) -> tuple[Any, str]:
    """The guide on the fine curvilinear grid: (values (..., NY, NX), what was done)."""
    lat_f, lon_f = g.refine_curvilinear(f)[:2]
    ny, nx = lat_f.shape
    same_dims = da.sizes[gy] == ny and da.sizes[gx] == nx
    lat2 = [c for c in da.coords if da[c].ndim == 2 and _coord_kind(da[c]) == "latitude"]
    lon2 = [c for c in da.coords if da[c].ndim == 2 and _coord_kind(da[c]) == "longitude"]
    if same_dims and (not lat2 or not lon2):
        return da.data, "on the output grid (by position: it has no coordinates)"
    if same_dims and lat2 and lon2:
        la = np.asarray(da[lat2[0]].transpose(gy, gx).values, np.float64)
        lo = np.asarray(da[lon2[0]].transpose(gy, gx).values, np.float64)
        dlon = (lo - lon_f + 180.0) % 360.0 - 180.0
        if np.abs(la - lat_f).max() < 1e-6 and np.abs(dlon).max() < 1e-6:
            return da.data, "on the output grid"
        raise CoordinateError(
            f"guide {da.name!r} has the output grid's shape but other 2-D coordinates (by up "
            f"to {float(np.abs(la - lat_f).max()):.3g} degrees); bring it onto the output "
            "grid first, or give it on a latitude/longitude grid to be interpolated"
        )
    ky = _coord_kind(da[gy]) if gy in da.coords else "other"
    kx = _coord_kind(da[gx]) if gx in da.coords else "other"
    if not (ky == "latitude" and kx == "longitude"):
        raise CoordinateError(
            f"guide {da.name!r} is on neither the output grid nor a latitude/longitude grid "
            f"({gy!r}, {gx!r}); on a curvilinear output grid a guide must be one of these"
        )
    da = _wrap_lon(da, gx, lon_f).sortby(gy)
    cy = np.asarray(da[gy].values, np.float64)
    cx = np.asarray(da[gx].values, np.float64)
    lonw = _lon_to(lon_f, cx)
    gdim = (g.ydim, g.xdim)
    fake = Grid(ydim=g.ydim, xdim=g.xdim, ny=g.ny, nx=g.nx, kind="lonlat")
    fake.ykind, fake.xkind = "latitude", "longitude"
    _check_covers(da, gy, gx, cy, cx, lat_f.ravel(), lonw.ravel(), fake)
    out = da.interp(
        {gy: xr.DataArray(lat_f, dims=gdim), gx: xr.DataArray(lonw, dims=gdim)},
        method="linear",
        kwargs={"fill_value": None},
    )
    out = out.drop_vars([c for c in out.coords if c not in out.dims], errors="ignore")
    return out.transpose(
        ..., *gdim
    ).data, f"bilinear interpolation from its {cy.size} x {cx.size} grid"


def _fill(values: np.ndarray, rings: int) -> np.ndarray:
    """NaN cells filled from their neighbours (``rings`` deep), then with the field's mean."""
    import torch

    from .methods.pipeline import fill_nan

    a = np.asarray(values, np.float64)
    if np.isfinite(a).all():
        return a
    if not np.isfinite(a).any():
        return np.zeros_like(a)
    return np.asarray(fill_nan(torch.from_numpy(np.ascontiguousarray(a)), rings).numpy())


def prepare_guides(
    guide: Any,
    obj: xr.Dataset | xr.DataArray,
    g: Grid,
    factor: int,
) -> Guides:
    """The user's guides on the output grid of ``obj`` refined by ``factor``.

    Parameters
    ----------
    guide : DataArray, Dataset or sequence of DataArrays
        The covariates, each on its own grid (see the module docstring).
    obj : Dataset or DataArray
        The data (their non-spatial dims and labels).
    g : Grid
        Their grid (:func:`xsr.cfgrid.describe`).
    factor : int

    Returns
    -------
    Guides
    """
    items = _as_list(guide)
    dims = _field_dims(obj, g)
    arrays: list[xr.Variable] = []
    names: list[str] = []
    units_: list[str | None] = []
    notes: list[str] = []
    for da in items:
        gy, gx = _guide_axes(da)
        da = _align_lead(da.astype(np.float64), gy, gx, dims)
        if g.kind == "curvilinear":
            data, note = _onto_curvilinear(da, gy, gx, g, factor)
        elif g.ycoord is not None and g.xcoord is not None:
            units = {
                "y": obj[g.ydim].attrs.get("units"),
                "x": obj[g.xdim].attrs.get("units"),
            }
            data, note = _onto_rectilinear(da, gy, gx, g, factor, units)
        else:
            if (da.sizes[gy], da.sizes[gx]) != (g.ny * factor, g.nx * factor):
                raise ShapeError(
                    f"guide {da.name!r} has {da.sizes[gy]} x {da.sizes[gx]} cells; the data "
                    f"have no coordinates, so the guide must be on the output grid itself: "
                    f"{g.ny * factor} x {g.nx * factor}"
                )
            data, note = da.data, "on the output grid (by position: no coordinates)"
        lead = [str(d) for d in da.dims if d not in (gy, gx)]
        var = xr.Variable((*lead, FINE_Y, FINE_X), data)
        nan = var.isnull().mean().values if not _is_dask(data) else None
        if nan is not None and float(nan) == 1.0:
            raise OptionError(
                f"guide {da.name!r} is entirely NaN on the output grid; check its values and "
                "that it covers the domain"
            )
        rings = 4 * factor + 2
        if var.chunks is not None:  # filling sees the whole fine grid
            var = var.chunk({FINE_Y: -1, FINE_X: -1})
        var = xr.apply_ufunc(
            _fill,
            var,
            input_core_dims=[[FINE_Y, FINE_X]],
            output_core_dims=[[FINE_Y, FINE_X]],
            dask="parallelized",
            output_dtypes=[np.float64],
            kwargs={"rings": rings},
        )
        if nan is not None and float(nan) > 0:
            note += f", {100 * float(nan):.3g}% missing cells filled"
        arrays.append(var)
        names.append(str(da.name))
        units_.append(None if da.attrs.get("units") is None else str(da.attrs.get("units")))
        notes.append(note)
    lead_all = [d for d in dims if any(d in a.dims for a in arrays)]
    sizes = {d: _size(arrays, d) for d in lead_all}
    stacked = [
        a.set_dims({**sizes, FINE_Y: a.sizes[FINE_Y], FINE_X: a.sizes[FINE_X]})
        .transpose(*lead_all, FINE_Y, FINE_X)
        .set_dims({**sizes, GUIDE_DIM: 1, FINE_Y: a.sizes[FINE_Y], FINE_X: a.sizes[FINE_X]})
        for a in arrays
    ]
    variable = xr.Variable.concat(stacked, dim=GUIDE_DIM)
    return Guides(variable, tuple(names), tuple(units_), tuple(notes))


def _size(arrays: list[xr.Variable], d: Hashable) -> int:
    for a in arrays:
        if d in a.dims:
            return int(a.sizes[d])
    raise AssertionError(d)  # pragma: no cover


def _is_dask(data: Any) -> bool:
    return hasattr(data, "dask")
