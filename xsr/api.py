"""The xarray layer: :func:`downscale` and :func:`coarsen`, each a short sequence of steps.

Both take a Dataset or DataArray and return a new object of the same type:

1. validate the options and describe the grid once (:func:`xsr.cfgrid.describe`: axes,
   coordinates, bounds, cell areas, the user's masks and weights aligned to the grid);
2. plan the call (:class:`_Plan`, :class:`_CoarsenPlan`): weights, masks, tiles, the global
   options in force, generated names and sizes checked;
3. compute the coordinates of the new grid (:func:`xsr.cfgrid.fine_coords`,
   :func:`xsr.cfgrid.coarse_coords`);
4. transform each variable (:func:`_downscale_variable`: one :func:`xarray.apply_ufunc` into
   the array code, :func:`xsr.methods.downscale_array` or :mod:`xsr.tiling`, so that
   dask-backed inputs stay lazy; :func:`_coarsen_variable`: a weighted block mean);
5. assemble the result (:func:`xsr._assemble.assemble`).
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import numpy as np
import xarray as xr

from . import grid
from ._assemble import (
    DATA_ENCODING,
    assemble,
    dataarray,
    extra_vars,
    history_line,
    range_attrs,
    unique_name,
    valid_range,
)
from ._version import __version__
from .cfgrid import (
    Grid,
    WeightsArg,
    cell_areas,
    check_weights,
    coarse_coords,
    describe,
    field_variables,
    fine_coords,
    fine_weights,
    grid_array,
    grid_variables,
    mask_arrays,
    own_areas,
    select_variables,
    spatial_dims,
    spatial_vars,
    weights_factors,
)
from .exceptions import (
    DtypeError,
    InputValueError,
    MethodError,
    OptionError,
    ShapeError,
)
from .guides import FINE_X, FINE_Y, GUIDE_DIM, Guides, prepare_guides

if TYPE_CHECKING:
    from collections.abc import Hashable, Sequence

    from .conserve import ConserveMode
    from .methods.base import Method

__all__ = [
    "cell_areas",
    "coarsen",
    "downscale",
    "field_variables",
    "grid_variables",
    "select_variables",
    "spatial_dims",
]

XrObj = xr.Dataset | xr.DataArray
T_Xr = TypeVar("T_Xr", xr.Dataset, xr.DataArray)
Boundary = Literal["exact", "trim", "pad"]


# ------------------------------------------------------------------------------------------
# axis detection
# ------------------------------------------------------------------------------------------


# ------------------------------------------------------------------------------------------
# grid description
# ------------------------------------------------------------------------------------------


# ------------------------------------------------------------------------------------------
# weights and masks given by the user
# ------------------------------------------------------------------------------------------


# ------------------------------------------------------------------------------------------
# coordinates of the fine / coarse grid
# ------------------------------------------------------------------------------------------


# ------------------------------------------------------------------------------------------
# attrs and provenance
# ------------------------------------------------------------------------------------------


def _spatially_chunked(obj: XrObj, g: Grid) -> bool:
    """Whether a variable of ``obj`` on the grid is a dask array with several spatial chunks."""
    variables = [obj] if isinstance(obj, xr.DataArray) else list(obj.data_vars.values())
    for v in variables:
        if v.chunks is None:
            continue
        sizes = v.chunksizes
        if any(len(sizes.get(d, ())) > 1 for d in (g.ydim, g.xdim)):
            return True
    return False


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
    from .methods.pipeline import Downscaled
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
# downscale: the plan of one call, then one apply_ufunc per variable
# ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Plan:
    """Everything :func:`downscale` decides once per call, shared by every variable.

    The global options in force at the call (device, dtype, tile size) are resolved here, so
    that a lazy result computes later with the options it was built with.
    """

    grid: Grid
    factor: int
    mode: ConserveMode | None
    bounds: tuple[float | None, float | None] | None
    method: Method
    weights: np.ndarray | None  # fine cell weights (ny*f, nx*f), None: uniform or factors
    weight_factors: Any  # separable weights ((ny*f,), (nx*f,)) (rectilinear areas), or None
    weights_desc: str
    fine_mask: np.ndarray | None  # (ny*f, nx*f) bool
    coarse_mask: xr.DataArray | None  # (y, x) bool
    periodic: bool
    device: str  # the device option ("auto", "cpu", "cuda:1", ...), resolved where it runs
    dtype: str | None  # compute dtype; None: each variable's own
    tiled: bool
    tile_size: int | None
    extras: tuple[str, ...]  # "std" / "members": extra outputs (Datasets only)
    n_members: int
    xsr_attrs: dict[str, Any]
    history: str
    # the covariates (guide=): names and units; their values travel as an array of the graph
    guide_names: tuple[str, ...] = ()
    guide_units: tuple[str | None, ...] = ()


def _plan(
    obj: XrObj,
    g: Grid,
    m: Method,
    *,
    factor: int,
    mode: ConserveMode | None,
    bounds: tuple[float | None, float | None] | None,
    mask: Any,
    weights: WeightsArg,
    periodic: Any,
    device: Any,
    dtype: Any,
    tile_size: Any,
    guide: Any = None,
) -> tuple[_Plan, Guides | None]:
    """Validate the remaining options against the grid and decide how to run; the guides
    on the output grid (or None)."""
    from ._validate import check_bool
    from .options import OPTIONS, _validate

    f = factor
    periodic = check_bool(
        periodic,
        name="periodic",
        allow_none=True,
        hint="None detects a global longitude from the coordinates",
    )
    dev = _validate("device", OPTIONS["device"] if device is None else device)
    dt = _validate("dtype", OPTIONS["dtype"] if dtype is None else dtype)
    ts = _validate("tile_size", OPTIONS["tile_size"] if tile_size is None else tile_size)
    # tiles (xsr.tiling): with tile_size, or for dask inputs chunked along y or x
    tiled = ts is not None or _spatially_chunked(obj, g)
    # rectilinear cell areas as two factors: no (ny*f, nx*f) plane of weights, tiled or not
    factors = weights_factors(weights, g, f)
    # ... except for the methods that get the weights themselves (NaN-aware, guided)
    given = m.handles_nan or guide is not None
    plane = not tiled and (factors is None or given)
    _check_size(obj, g, f, weights_plane=plane, dtype=dt, copies=_copies(m, obj))
    if factors is not None:
        w, wdesc = None, factors[1]
    else:
        w, wdesc = fine_weights(weights, g, f, obj)
    fine_mask, coarse_mask = mask_arrays(mask, g, f)
    if periodic is None:
        periodic = g.kind == "lonlat" and grid.is_periodic_longitude(
            np.asarray(obj[g.xdim].values, np.float64), g.xbounds
        )
    dataset = isinstance(obj, xr.Dataset)
    # extra outputs of ensemble methods: "<var>_std" and "<var>_members" (Datasets only)
    extra: tuple[str, ...] = tuple(getattr(m, "extra_outputs", ()))
    if "members" in extra and not dataset:
        raise OptionError(
            "keep_members=True adds a variable with a 'member' dimension, which a DataArray "
            "result cannot hold; pass a Dataset instead: da.to_dataset().sr.downscale(...)"
        )
    name = getattr(m, "name", str(m))
    calibrate = getattr(m, "calibrate", "none")
    if tiled and calibrate != "none":
        warnings.warn(
            f"{name}: calibrate={calibrate!r} with tiles fits the spread calibration on each "
            "tile's own coarse field, so its factor differs from tile to tile and the spread "
            "can jump at tile seams (the mean and its conservation are not affected). Fix: "
            f"for one calibration per field, downscale without tile_size and without dask "
            f"chunks along {g.ydim!r}/{g.xdim!r}, or with tiles as large as memory allows",
            UserWarning,
            stacklevel=4,
        )
    guides = None
    if guide is None and getattr(m, "requires_guide", False):
        raise MethodError(
            f"method {name!r} needs a guide (fine-scale covariates such as elevation): pass "
            f"guide=<DataArray or Dataset> (on the command line --guide FILE[:VAR]), or use a "
            "method without one, e.g. 'bicubic'"
        )
    if guide is not None:
        if not getattr(m, "uses_guide", False):
            raise MethodError(
                f"method {name!r} does not use a guide (fine-scale covariates); methods that "
                f"do: {[n for n in _guided_methods()]} (and 'cnn' with a model trained on "
                "guides). Fix: pick one of them, or leave guide= out"
            )
        guides = prepare_guides(guide, obj, g, f)
    args: dict[str, Any] = {"factor": f, "method": name, "conserve": mode}
    if guides is not None:
        args["guide"] = list(guides.names)
    if bounds is not None:
        args["bounds"] = bounds
    args.update(m.options())
    xsr_attrs: dict[str, Any] = {
        "xsr_method": name,
        "xsr_factor": f,
        "xsr_conserve": str(mode),
        "xsr_weights": wdesc,
        "xsr_version": __version__,
    }
    if bounds is not None:
        xsr_attrs["xsr_bounds"] = str(bounds)
    for k, v in m.options().items():
        # netCDF attributes hold numbers and strings, not booleans or None
        ok = isinstance(v, int | float | str) and not isinstance(v, bool)
        xsr_attrs[f"xsr_{k}"] = v if ok else str(v)
    if guides is not None:
        xsr_attrs["xsr_guide"] = guides.describe()
    return _Plan(
        grid=g,
        factor=f,
        mode=mode,
        bounds=bounds,
        method=m,
        weights=w,
        weight_factors=None if factors is None else factors[0],
        weights_desc=wdesc,
        fine_mask=fine_mask,
        coarse_mask=coarse_mask,
        periodic=bool(periodic),
        device=dev,
        dtype=dt,
        tiled=tiled,
        tile_size=ts,
        extras=extra if dataset else (),
        n_members=int(getattr(m, "n_members", 0)),
        xsr_attrs=xsr_attrs,
        history=history_line("downscale", args),
        guide_names=() if guides is None else guides.names,
        guide_units=() if guides is None else guides.units,
    ), guides


def _check_names(obj: XrObj, g: Grid, plan: _Plan) -> None:
    """Refuse a call whose generated variables (``<var>_std``, ``<var>_members``) would
    replace a variable of ``obj`` or one another."""
    if not plan.extras or not isinstance(obj, xr.Dataset):
        return
    taken = {str(n) for n in obj.variables}
    made: dict[str, str] = {}
    for n in spatial_vars(obj, g, g.aux_names):
        for kind in plan.extras:
            new = f"{n}_{kind}"
            other = made.get(new)
            if new in taken or other is not None:
                what = "a variable of the Dataset" if new in taken else f"made for {other!r}"
                raise OptionError(
                    f"the ensemble {'spread' if kind == 'std' else 'members'} of {n!r} would be "
                    f"written to {new!r}, which is {what}; rename or drop it first, e.g. "
                    f"ds.rename({{{new!r}: {new + '_in'!r}}}) or ds.drop_vars({new!r})"
                )
            made[new] = n


def _copies(m: Method, obj: XrObj) -> int:
    """Fine arrays per variable: the field, and a Dataset's spread and members."""
    if not isinstance(obj, xr.Dataset):
        return 1
    extra = tuple(getattr(m, "extra_outputs", ()))
    members = int(getattr(m, "n_members", 0)) if "members" in extra else 0
    return 1 + ("std" in extra) + members


def _check_size(
    obj: XrObj, g: Grid, f: int, *, weights_plane: bool, dtype: str | None, copies: int
) -> None:
    """Refuse, before any allocation, a result that cannot fit in memory.

    Counted: the eager (numpy-backed) fine fields, and with ``weights_plane`` one fine plane
    of float64 (cell weights that are not separable factors, in untiled runs).
    """
    from .exceptions import OutputSizeError

    free = _available_memory()
    if free is None:
        return
    f2 = f * f
    variables = [obj] if isinstance(obj, xr.DataArray) else list(obj.data_vars.values())
    need = g.ny * g.nx * f2 * 8 if weights_plane else 0
    for v in variables:
        if g.ydim in v.dims and g.xdim in v.dims and v.chunks is None and v.dtype.kind == "f":
            need += int(v.size) * f2 * np.dtype(dtype or v.dtype).itemsize * copies
    if need > free:
        gib = 1024.0**3
        raise OutputSizeError(
            f"downscaling by factor {f} makes a {g.ny * f} x {g.nx * f} grid: about "
            f"{need / gib:.1f} GiB in memory, more than the {free / gib:.1f} GiB available; "
            "chunk the input with dask (e.g. ds.chunk({'time': 1})) and pass tile_size=512, "
            "then write the lazy result to zarr (or run `xsr downscale IN OUT.zarr "
            "--tile-size 512`), or downscale a smaller region"
        )


def _available_memory() -> int | None:
    """Bytes of memory available to this process (Linux ``MemAvailable``), or None."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        import os

        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, OSError, ValueError):
        return None


def _downscale_block(
    x: np.ndarray,
    *guide: np.ndarray,
    plan: _Plan,
    label: str,
    dtype: str,
    want: tuple[str, ...],
    mode: ConserveMode | None,
    bounds: tuple[float | None, float | None] | None,
) -> np.ndarray | tuple[np.ndarray, ...]:
    """The array function of one variable: ``(..., ny, nx)`` in, fine arrays out."""
    from .methods.pipeline import downscale_array

    kwargs: dict[str, Any] = {
        "factor": plan.factor,
        "method": plan.method,
        "conserve": mode,
        "bounds": bounds,
        "weights": plan.weights if plan.weights is not None else plan.weight_factors,
        "mask": plan.fine_mask,
        "periodic": plan.periodic,
        "device": plan.device,
        "dtype": dtype,
        "name": label,
        "extras": bool(want),
    }
    if guide:
        gv = guide[0]  # (..., C, NY, NX), leading dims of 1 where the field has more
        kwargs["guide"] = gv
        kwargs["guide_names"] = plan.guide_names
    if plan.tiled:
        r = _run_tiled(
            x, tile_size=plan.tile_size, tile_weights=plan.weight_factors, want=want, **kwargs
        )
    else:
        r = downscale_array(x, **kwargs)
    if not want:
        return r
    outs = [r.fine]
    if "std" in want:
        outs.append(r.std if r.std is not None else np.full_like(r.fine, np.nan))
    if "members" in want:
        outs.append(np.moveaxis(r.members, 0, -3))  # member before (y, x)
    return tuple(outs)


def _guide_for(da: xr.DataArray, name: str, guides: Guides) -> xr.Variable:
    """The guide array for one variable: its non-spatial dims must be the variable's."""
    v = guides.variable
    extra = [d for d in guides.lead_dims if d not in da.dims]
    if extra:
        raise ShapeError(
            f"the guides vary along {extra}, which variable {name!r} does not have; give "
            f"static guides, or downscale the variables with {extra} separately"
        )
    if v.chunks is not None:  # the fine grid and the channels in one chunk
        v = v.chunk({GUIDE_DIM: -1, FINE_Y: -1, FINE_X: -1})
    return v


def _guided_methods() -> list[str]:
    """Names of the registered methods that take a guide."""
    from .methods.registry import get_method, list_methods

    out = []
    for n in list_methods():
        try:
            cls = type(get_method(n)) if n != "cnn" else None
        except Exception:
            continue
        if cls is not None and getattr(cls, "uses_guide", False):
            out.append(n)
    return out


def _conservation_of(
    da: xr.DataArray, plan: _Plan
) -> tuple[ConserveMode | None, tuple[float | None, float | None] | None, bool]:
    """The operator for one variable: (mode, bounds, bounded to its declared range).

    A variable that declares a valid range (``valid_min``/``valid_max``/``valid_range``)
    under the default additive operator is conserved with the bounded one, to that range:
    the additive step could leave it, and readers that honour the range would then mask
    values and break the conservation without a word.
    """
    valid = valid_range(da)
    if valid is not None and plan.mode == "additive" and plan.bounds is None:
        return "bounded", valid, True
    return plan.mode, plan.bounds, False


def _check_field(
    da: xr.DataArray,
    name: str,
    plan: _Plan,
    mode: ConserveMode | None,
    bounds: tuple[float | None, float | None] | None,
) -> None:
    """Refuse a variable that cannot be downscaled, naming why and the fix."""
    from .exceptions import InputValueError

    if da.dtype.kind in "iub":
        raise DtypeError(
            f"variable {name!r} has {'boolean' if da.dtype.kind == 'b' else 'integer'} "
            f"dtype {da.dtype}; downscaling produces fractional values, so xsr does not "
            f"guess a rounding: cast it first (ds[{name!r}].astype('float64')) or drop it"
        )
    if da.dtype.kind != "f":
        raise DtypeError(
            f"variable {name!r} has dtype {da.dtype}; only real floating-point fields can "
            "be downscaled: convert it (.astype('float64')) or drop it"
        )
    empty = [f"{d!r} has length 0" for d, n in da.sizes.items() if n == 0]
    if empty:
        raise InputValueError(
            f"variable {name!r} has no values: dimension {', '.join(empty)}; check the "
            "selection (e.g. a time range or region that matches nothing)"
        )
    units = da.attrs.get("units")
    request: dict[str, Any] = {}
    if plan.guide_names:
        request["guides"] = tuple(zip(plan.guide_names, plan.guide_units))
    plan.method.check_request(
        factor=plan.factor,
        conserve=mode,
        bounds=bounds,
        units=None if units is None else str(units),
        name=name,
        **request,
    )
    if da.chunks is None and not np.isfinite(np.asarray(da.values)).any():
        raise InputValueError(
            f"variable {name!r} is entirely NaN"
            + (" where the mask is True" if plan.coarse_mask is not None else "")
            + "; there is nothing to downscale: check the variable, time step or region you "
            "selected"
        )


def _downscale_variable(
    da: xr.DataArray, name: str, *, plan: _Plan, guides: Guides | None = None
) -> xr.DataArray | dict[str, xr.DataArray]:
    """One variable on the fine grid (and its ensemble spread/members for a Dataset)."""
    g = plan.grid
    ydim, xdim, f = g.ydim, g.xdim, plan.factor
    if plan.coarse_mask is not None and da.dtype.kind == "f":
        da = da.where(plan.coarse_mask)
    mode, bounds, ranged = _conservation_of(da, plan)
    _check_field(da, name, plan, mode, bounds)
    want = plan.extras
    dtype = plan.dtype or str(da.dtype)  # explicit: later global options do not apply
    core = [[ydim, xdim]] * (1 + ("std" in want))
    sizes = {ydim: g.ny * f, xdim: g.nx * f}
    if "members" in want:
        core.append(["member", ydim, xdim])
        sizes["member"] = plan.n_members
    inputs = [da.variable]
    core_in = [[ydim, xdim]]
    if guides is not None:
        inputs.append(_guide_for(da, name, guides))
        core_in.append([GUIDE_DIM, FINE_Y, FINE_X])
    res_all = xr.apply_ufunc(
        _downscale_block,
        *inputs,
        input_core_dims=core_in,
        output_core_dims=core,
        exclude_dims={ydim, xdim},
        dask="allowed" if plan.tiled else "parallelized",  # tiled: xsr.tiling builds the graph
        output_dtypes=[np.dtype(dtype)] * len(core),
        dask_gufunc_kwargs={"output_sizes": sizes},
        keep_attrs=True,
        kwargs={
            "plan": plan,
            "label": f"variable {name!r}"
            + (
                " (conserved with conserve='bounded' to its declared valid range)" if ranged else ""
            ),
            "dtype": dtype,
            "want": want,
            "mode": mode,
            "bounds": bounds,
        },
    )
    parts = list(res_all) if want else [res_all]
    res = parts[0].transpose(*da.dims)
    res.attrs.update(plan.xsr_attrs)
    if ranged:
        res.attrs.update(xsr_conserve="bounded", xsr_bounds=str(bounds))
    range_attrs(res, da, mode, bounds)
    res.encoding = {
        k: v
        for k, v in da.encoding.items()
        if k in (*DATA_ENCODING, "grid_mapping", "cell_measures", "coordinates")
    }
    if "dtype" in res.encoding and np.dtype(res.encoding["dtype"]).kind in "iu":
        # packed integers cannot hold the refined values faithfully
        for k in ("dtype", "scale_factor", "add_offset", "_FillValue"):
            res.encoding.pop(k, None)
    if not want:
        return dataarray(res)
    extras = extra_vars(res, parts[1:], da, name, want)  # links res to <name>_std
    return {name: dataarray(res), **extras}


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
    guide: xr.DataArray | xr.Dataset | Sequence[xr.DataArray] | None = None,
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
        included; deterministic methods give the untiled result to round-off (but
        ``"regression"``, which fits its coefficients on each tile), and the result
        stays lazy.  See :mod:`xsr.tiling`.
    guide : DataArray, Dataset or sequence of DataArrays, optional
        Fine-scale covariates for methods that use them (``"regression"``, ``"dip"``,
        ``"dip-ensemble"``, ``"cnn"`` with a model trained on guides): terrain height for
        temperature, sea-surface temperature for sea-surface height...  Each is static
        (horizontal dims only) or shares the data's other dims (e.g. a daily SST), on the
        output grid or on any grid that covers the domain: it is brought onto the output
        grid (reordered if it is the output grid, area-weighted block mean if its grid
        refines the output grid by an integer, bilinear interpolation otherwise), its
        missing cells are filled from their neighbours, and what was done is recorded in
        the ``xsr_guide`` attribute.  See :mod:`xsr.guides` and the guide "Guided
        downscaling" in the docs.
    **method_options
        Options of the method, e.g. ``members=10`` for ``"dip-ensemble"``.

    Returns
    -------
    Dataset or DataArray
        Same type as ``obj``; horizontal dims of sizes ``ny*factor`` and ``nx*factor``,
        refined coordinates with CF bounds (Datasets), attrs kept plus ``xsr_*`` provenance
        attrs and a ``history`` line.  Each refined 1-D coordinate records the coarse one
        (attributes ``xsr_factor``, ``xsr_coarse_centres``, ``xsr_coarse_bounds``), so that
        :func:`coarsen` by the same factor gives it back bit for bit.  A DataArray, which
        cannot hold bounds variables, keeps its cell areas as a CF ``cell_measures``
        coordinate where its coordinates alone would not give them (a curvilinear grid, or
        an area coordinate of its own).

        What happens to the other variables: data variables on both horizontal dimensions are
        downscaled (they must be floating point: integers and booleans raise
        :class:`~xsr.exceptions.DtypeError`, because xsr does not guess a rounding); those
        with neither are kept unchanged; those with only one of them (a zonal mean, say)
        cannot live on the new grid and are dropped with a warning that names them; so are
        coordinates on the grid other than latitude/longitude, bounds and cell areas.  Bounds
        and cell-area variables are rebuilt for the new grid; grid-mapping variables are kept.

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
    from .methods.registry import get_method

    f, mode, bnds = check_options(factor, conserve, bounds)
    m = get_method(method, **method_options)
    if not isinstance(obj, xr.Dataset | xr.DataArray):
        raise TypeError(f"expected an xarray Dataset or DataArray, got {type(obj).__name__}")
    ydim, xdim = spatial_dims(obj, dims)
    g = describe(obj, ydim, xdim)
    plan, guides = _plan(
        obj,
        g,
        m,
        factor=f,
        mode=mode,
        bounds=bnds,
        mask=mask,
        weights=weights,
        periodic=periodic,
        device=device,
        dtype=dtype,
        tile_size=tile_size,
        guide=guide,
    )
    _check_names(obj, g, plan)
    coords, bvars = fine_coords(obj, g, f)
    if g.other_spatial_coords:
        warnings.warn(
            f"coordinates {g.other_spatial_coords} lie on the horizontal grid but are not "
            "latitude/longitude or cell areas; they are dropped from the result",
            stacklevel=3,
        )
    one = functools.partial(_downscale_variable, plan=plan, guides=guides)
    area = _fine_area(obj, g, f, plan.weights, weights)
    return assemble(obj, g, one, coords, bvars, area, plan.history)


#: ``xsr_role`` of the cell-area coordinate that a DataArray on a curvilinear grid gets from
#: :func:`downscale` (it cannot hold the cell corners); :func:`coarsen` uses and removes it.
_GENERATED_AREA = "cell areas of the refined grid"


def _fine_area(
    obj: XrObj, g: Grid, f: int, w: np.ndarray | None, weights: Any
) -> tuple[str, xr.Variable] | None:
    """The refined cell-area variable of the result, as (name, variable), or None.

    The input's CF area variable refined (its areas shared out by the geometry); for a
    DataArray on a curvilinear grid, which cannot hold the cell corners that :func:`coarsen`
    would need, the geometric areas as a new ``cell_area`` coordinate.
    """
    auto = isinstance(weights, str) and weights in ("auto", "area")
    if g.area_name is not None:
        a = obj[g.area_name]
        fa = w if auto and w is not None else fine_weights("auto", g, f, obj)[0]
        assert fa is not None
        return g.area_name, xr.Variable((g.ydim, g.xdim), fa.astype(a.dtype), dict(a.attrs))
    if isinstance(obj, xr.DataArray) and g.kind == "curvilinear":
        fa = w if auto and w is not None else fine_weights("auto", g, f, obj)[0]
        assert fa is not None
        taken = {str(n) for n in (*obj.coords, *obj.dims)}
        name = unique_name("cell_area", taken)
        attrs = {
            "standard_name": "cell_area",
            "long_name": "area of the grid cells",
            "units": "m2",
            "xsr_role": _GENERATED_AREA,
        }
        return name, xr.Variable((g.ydim, g.xdim), fa, attrs)
    return None


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
        Cell weights on ``obj``'s grid (a DataArray is aligned by its coordinates).  A block
        that holds values but whose valid cells all have zero weight raises
        :class:`~xsr.exceptions.InputValueError` (for dask inputs, when computed).

    Returns
    -------
    Dataset or DataArray
        Same type as ``obj``; horizontal sizes divided by ``factor`` (rounded down for
        "trim", up for "pad"); coordinates, bounds and cell areas coarsened; ``cell_methods``
        gains ``area: mean``; attrs kept plus a ``history`` line.  Coordinates that
        :func:`downscale` refined by this factor come back exactly as they were (1-D
        coordinates from their ``xsr_coarse_*`` record, 2-D latitude/longitude from the
        middle point of each block); other grids get block-mean coordinates.  Variables are
        treated as in :func:`downscale`: those with one horizontal dimension are dropped
        with a warning, those with none are kept.
    """
    from ._validate import check_choice
    from .conserve import check_factor

    f = check_factor(factor)
    check_choice(
        boundary,
        ("exact", "trim", "pad"),
        name="boundary",
        hint="it says what to do with a size that is not a multiple of the factor",
    )
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
    g = describe(obj, ydim, xdim)
    plan = _coarsen_plan(obj, g, f, weights)
    coords, bvars = coarse_coords(obj, g, f, plan.pad_y, plan.pad_x)
    area = _coarse_area(obj, plan)
    line = history_line("coarsen", {"factor": f, "boundary": boundary})
    one = functools.partial(_coarsen_variable, plan=plan)
    return assemble(obj, g, one, coords, bvars, area, line)


# ------------------------------------------------------------------------------------------
# coarsen: the plan of one call, then one block mean per variable
# ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _CoarsenPlan:
    """What :func:`coarsen` decides once per call, shared by every variable."""

    grid: Grid
    factor: int
    pad_y: int  # missing cells added at the end of y and x ("pad")
    pad_x: int
    weights: xr.DataArray  # (y, x) cell weights, padded with zeros
    some_zero: bool  # whether a cell has zero weight (a block may hold values but no weight)


def _coarsen_plan(obj: XrObj, g: Grid, f: int, weights: Any) -> _CoarsenPlan:
    w = _own_weights(obj, g, weights)
    pad_y, pad_x = (-g.ny) % f, (-g.nx) % f
    wda = xr.DataArray(np.ones((g.ny, g.nx)) if w is None else w, dims=(g.ydim, g.xdim))
    if pad_y or pad_x:
        wda = wda.pad({g.ydim: (0, pad_y), g.xdim: (0, pad_x)}, constant_values=0.0)
    some_zero = w is not None and not bool((w > 0).all())
    return _CoarsenPlan(g, f, pad_y, pad_x, wda, some_zero)


def _coarsen_variable(da: xr.DataArray, name: str, *, plan: _CoarsenPlan) -> xr.DataArray:
    """The weighted, NaN-aware block mean of one variable (lazy for dask inputs)."""
    ydim, xdim, f = plan.grid.ydim, plan.grid.xdim, plan.factor
    if da.dtype.kind != "f":
        raise DtypeError(
            f"variable {name!r} has dtype {da.dtype}; coarsen averages, so it needs a "
            "floating-point field: cast it first (.astype('float64'))"
        )
    x = da.astype(np.float64)
    if plan.pad_y or plan.pad_x:
        x = x.pad({ydim: (0, plan.pad_y), xdim: (0, plan.pad_x)})
    valid = x.notnull()
    blocks = {ydim: f, xdim: f}
    num = (x.fillna(0.0) * plan.weights).coarsen(blocks).sum()
    den = plan.weights.where(valid, 0.0).coarsen(blocks).sum()
    res = (num / den.where(den > 0)).astype(da.dtype)
    if plan.some_zero:
        # a block with values but no weight would silently become NaN: refuse it
        held = valid.coarsen(blocks).any()
        res = _refuse_lost(res, held & (den <= 0), name)
    res = res.drop_vars(
        [c for c in res.coords if c not in res.dims or c in (ydim, xdim)], errors="ignore"
    )
    res.attrs = dict(da.attrs)
    cm = str(res.attrs.get("cell_methods", "")).strip()
    res.attrs["cell_methods"] = f"{cm} area: mean".strip()
    res.encoding = {k: v for k, v in da.encoding.items() if k in ("zlib", "complevel")}
    return res.transpose(*da.dims)


def _coarse_area(obj: XrObj, plan: _CoarsenPlan) -> tuple[str, xr.Variable] | None:
    """The cell-area variable of the coarse grid (block sums), or None.

    The areas :func:`downscale` gave a curvilinear DataArray (``xsr_role``) served the
    conservation of that step only: they are not carried over.
    """
    g, f = plan.grid, plan.factor
    if g.area_name is None or obj[g.area_name].attrs.get("xsr_role") == _GENERATED_AREA:
        return None
    a = obj[g.area_name].transpose(g.ydim, g.xdim)
    av = a.values.astype(np.float64)
    if plan.pad_y or plan.pad_x:
        av = np.pad(av, ((0, plan.pad_y), (0, plan.pad_x)))
    s = av.reshape(av.shape[0] // f, f, av.shape[1] // f, f).sum(axis=(1, 3))
    return g.area_name, xr.Variable((g.ydim, g.xdim), s.astype(a.dtype), dict(a.attrs))


def _own_weights(obj: XrObj, g: Grid, weights: Any) -> np.ndarray | None:
    """The weights of ``obj``'s own cells for :func:`coarsen` (None: uniform)."""
    if weights is None or (isinstance(weights, str) and weights == "uniform"):
        return None
    if isinstance(weights, str):
        from ._validate import check_choice

        check_choice(
            weights,
            ("auto", "area", "uniform"),
            name="weights",
            hint="or None, or an array of the cell areas",
        )
        w = own_areas(obj, g)
        if w is None and weights == "area":
            raise OptionError(
                "weights='area' but the grid has no coordinates or cell_measures to compute "
                "areas from; add coordinates, an area variable, or use weights='uniform'"
            )
        return w
    arr, _ = grid_array(weights, g, what="weights", factor=None)
    return check_weights(np.asarray(arr, np.float64), what="weights")


def _raise_lost(res: np.ndarray, lost: np.ndarray, name: str) -> np.ndarray:
    if lost.any():
        raise InputValueError(
            f"{int(lost.sum())} coarse cell(s) of {name!r} hold values but all their cells "
            "have zero weight, so their mean is undefined; give those cells positive weights "
            "(cell areas), or set their values to NaN"
        )
    return res


def _refuse_lost(res: xr.DataArray, lost: xr.DataArray, name: str) -> xr.DataArray:
    """``res``, checked (when computed, for dask) for blocks with values but no weight."""
    out = xr.apply_ufunc(
        _raise_lost,
        res,
        lost.broadcast_like(res),
        dask="parallelized",
        output_dtypes=[res.dtype],
        kwargs={"name": name},
        keep_attrs=True,
    )
    return out.transpose(*res.dims)


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
