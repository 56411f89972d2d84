"""The result of a call, assembled: variables on the new grid, CF attributes, provenance.

The xarray layer under :mod:`xsr.api`: :func:`assemble` puts the downscaled (or coarsened)
variables, the new coordinates, their bounds and cell areas, and the variables off the grid
into a Dataset or DataArray of the input's type; the other helpers keep the result CF-clean
(no fill value on coordinates and bounds, ``cell_measures`` pointing at what exists, range
attributes that stay true, the input's encoding) and record what was done (``history``).
"""

from __future__ import annotations

import datetime as _dt
import warnings
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import xarray as xr

from ._version import __version__
from .cfgrid import Grid, spatial_vars
from .exceptions import SpatialDimsError

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from .conserve import ConserveMode

__all__ = [
    "DATA_ENCODING",
    "add_history",
    "assemble",
    "dataarray",
    "extra_vars",
    "history_line",
    "no_default_fill",
    "order_like",
    "range_attrs",
    "unique_name",
    "valid_range",
    "with_measure",
]

XrObj = xr.Dataset | xr.DataArray
T_Xr = TypeVar("T_Xr", xr.Dataset, xr.DataArray)


def order_like(out: xr.Dataset, obj: xr.Dataset) -> xr.Dataset:
    """``out`` with its data variables in ``obj``'s order (new ones last), every coordinate
    kept (selecting variables would drop coordinates that no data variable uses, such as a
    grid-mapping variable stored as a dimension coordinate)."""
    first = [str(v) for v in obj.data_vars if v in out.data_vars]
    rest = [str(v) for v in out.data_vars if v not in obj.data_vars]
    ordered = out[first + rest]
    lost = [c for c in out.coords if c not in ordered.coords]
    return ordered.assign_coords({c: out[c].variable for c in lost}) if lost else ordered


def history_line(op: str, args: Mapping[str, Any]) -> str:
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    a = ", ".join(f"{k}={v!r}" for k, v in args.items())
    return f"{now}: xsr {__version__} {op}({a})"


def add_history(attrs: dict[str, Any], line: str) -> dict[str, Any]:
    old = attrs.get("history")
    attrs = dict(attrs)
    attrs["history"] = line if not old else f"{line}\n{old}"
    return attrs


def warn_dropped(obj: xr.Dataset, g: Grid, kept: list[str], skip: set[str]) -> None:
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


def assemble(
    obj: XrObj,
    g: Grid,
    one: Callable[[xr.DataArray, str], xr.DataArray | dict[str, xr.DataArray]],
    coords: dict[str, Any],
    bvars: dict[str, Any],
    area: tuple[str, xr.Variable] | None,
    line: str,
) -> XrObj:
    """Apply ``one`` to every variable on the grid and build the result on the new grid.

    ``one(da, name)`` gets a variable without its horizontal coordinates and returns it on
    the new grid (or a dict of new variables, ``name`` among them, for a Dataset); the new
    ``coords``, bounds variables ``bvars`` and the cell ``area`` (name, variable) are
    attached, other variables and coordinates are kept, and ``line`` goes into ``history``.
    A DataArray, which cannot hold bounds variables, keeps its cell areas as a coordinate
    named by its ``cell_measures`` attribute.
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
        attrs = dict(out.attrs)
        if area is not None:
            aname, avar = area
            out = out.assign_coords({aname: avar.transpose(*area_dims(obj, aname, g))})
            attrs["cell_measures"] = with_measure(attrs.get("cell_measures"), aname)
        elif g.area_name is not None:  # the areas were not used: do not point at them
            attrs["cell_measures"] = with_measure(attrs.get("cell_measures"), g.area_name, False)
        out.attrs = add_history({k: v for k, v in attrs.items() if v != ""}, line)
        return no_default_fill(out)

    skip = set(bvars) | g.aux_names
    names = spatial_vars(obj, g, skip)
    if not names:
        raise SpatialDimsError(
            f"no data variable of the Dataset has both horizontal dimensions ({ydim!r}, "
            f"{xdim!r}); variables: {list(obj.data_vars)}"
        )
    warn_dropped(obj, g, names, skip)
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
    if area is not None:
        aname, avar = area
        avar = avar.transpose(*area_dims(obj, aname, g))
        if aname in obj.coords:
            out_ds = out_ds.assign_coords({aname: avar})
        else:
            out_ds[aname] = avar
    out_ds = no_default_fill(order_like(out_ds, obj))
    out_ds.attrs = add_history(dict(obj.attrs), line)
    return out_ds


def area_dims(obj: XrObj, name: str, g: Grid) -> tuple[str, ...]:
    """Dims of the cell-area variable ``name``: its own order if ``obj`` has it."""
    if name in obj.coords or (isinstance(obj, xr.Dataset) and name in obj.variables):
        return tuple(str(d) for d in obj[name].dims)
    return (g.ydim, g.xdim)


def with_measure(cell_measures: Any, name: str, keep: bool = True) -> str:
    """A CF ``cell_measures`` string with ``area: name`` added (``keep``) or removed."""
    tokens = str(cell_measures or "").replace(":", ": ").split()
    pairs = [(tokens[i], tokens[i + 1]) for i in range(0, len(tokens) - 1, 2)]
    pairs = [(k, v) for k, v in pairs if k != "area:"]
    if keep:
        pairs.append(("area:", name))
    return " ".join(f"{k} {v}" for k, v in pairs)


def no_default_fill(obj: T_Xr) -> T_Xr:
    """``obj`` whose coordinate and bounds variables without a fill value keep having none.

    xarray writes ``_FillValue = NaN`` on every floating-point (and time) variable whose
    encoding does not say otherwise; CF forbids it on coordinate variables (2.5.1) and on
    bounds (7.1).  A shallow copy: the input's variables are not touched.
    """
    variables = obj.variables if isinstance(obj, xr.Dataset) else obj.coords.variables
    bounds = {
        str(src["bounds"])
        for v in variables.values()
        for src in (v.attrs, v.encoding)
        if "bounds" in src
    }
    names = [
        k
        for k, v in variables.items()
        if (k in obj.dims or k in bounds) and "_FillValue" not in v.encoding
    ]
    if not names:
        return obj
    obj = obj.copy(deep=False)
    target = obj.variables if isinstance(obj, xr.Dataset) else obj.coords.variables
    for k in names:
        var = target[k].copy(deep=False)
        var.encoding = {**var.encoding, "_FillValue": None}
        if isinstance(obj, xr.Dataset):
            obj = obj.assign_coords({k: var}) if k in obj.coords else obj.assign({k: var})
        else:
            obj = obj.assign_coords({k: var})
    return obj


def dataarray(v: xr.Variable | xr.DataArray) -> xr.DataArray:
    """``v`` as a DataArray, its encoding included (``xr.DataArray(v)`` drops it)."""
    out = xr.DataArray(v)
    out.encoding = dict(v.encoding)
    return out


def extra_vars(
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
        out[std_name] = dataarray(sd)
    if "members" in want:
        mem = next(it).transpose("member", *da.dims)
        mem.attrs = {k: v for k, v in res.attrs.items() if k != "ancillary_variables"}
        mem.attrs["long_name"] = f"ensemble members of {label}"
        mem.encoding = dict(enc)
        members = dataarray(mem)
        out[f"{name}_members"] = members.assign_coords(member=np.arange(members.sizes["member"]))
    return out


DATA_ENCODING = ("dtype", "_FillValue", "scale_factor", "add_offset", "zlib", "complevel")


_VALID_ATTRS = ("valid_min", "valid_max", "valid_range")


def valid_range(da: xr.DataArray) -> tuple[float | None, float | None] | None:
    """(lower, upper) of ``da``'s CF ``valid_range``/``valid_min``/``valid_max`` in data units
    (they are stored in the packed type), or None when it declares none."""
    a = da.attrs
    lo = hi = None
    try:
        if "valid_range" in a:
            lo, hi = (float(v) for v in np.ravel(a["valid_range"])[:2])
        if "valid_min" in a:
            lo = float(np.ravel(a["valid_min"])[0])
        if "valid_max" in a:
            hi = float(np.ravel(a["valid_max"])[0])
    except (TypeError, ValueError):
        return None
    if lo is None and hi is None:
        return None
    scale = float(da.encoding.get("scale_factor", 1.0))
    offset = float(da.encoding.get("add_offset", 0.0))
    lo = None if lo is None else lo * scale + offset
    hi = None if hi is None else hi * scale + offset
    if lo is not None and hi is not None and not lo < hi:
        return None
    return lo, hi


def range_attrs(
    res: xr.DataArray,
    da: xr.DataArray,
    mode: ConserveMode | None,
    bounds: tuple[float | None, float | None] | None,
) -> None:
    """Keep on ``res`` only the range attributes that remain true (in place).

    ``actual_range`` (the input's extremes) goes; ``valid_*`` stay where the operator keeps
    the values inside them, in data units when the output is no longer packed.
    """
    res.attrs.pop("actual_range", None)
    valid = valid_range(da)
    if valid is None:
        return
    lo, hi = valid
    glo = bounds[0] if mode == "bounded" and bounds else (0.0 if mode == "multiplicative" else None)
    ghi = bounds[1] if mode == "bounded" and bounds else None
    kept = (lo is None or (glo is not None and glo >= lo)) and (
        hi is None or (ghi is not None and ghi <= hi)
    )
    packed = "scale_factor" in da.encoding or "add_offset" in da.encoding
    for k in _VALID_ATTRS:
        res.attrs.pop(k, None)
    if kept:
        dt = res.dtype
        if lo is not None:
            res.attrs["valid_min"] = (
                np.array(lo, dt) if packed else da.attrs.get("valid_min", np.array(lo, dt))
            )
        if hi is not None:
            res.attrs["valid_max"] = (
                np.array(hi, dt) if packed else da.attrs.get("valid_max", np.array(hi, dt))
            )


def unique_name(name: str, taken: set[str]) -> str:
    """``name``, or ``name_1``, ``name_2``, ... the first not in ``taken``."""
    k, out = 0, name
    while out in taken:
        k += 1
        out = f"{name}_{k}"
    return out
