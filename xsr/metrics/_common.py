"""What the xarray metrics share: inputs as DataArrays, dims, weights, reductions, outputs.

Every metric of :mod:`xsr.metrics._ensemble`, :mod:`~xsr.metrics._spectral` and
:mod:`~xsr.metrics._derived` follows the same steps:

1. :func:`as_dataarray` turns each input into a DataArray (plain arrays take the dims of the
   DataArrays among the inputs by position, else ``dim_0, dim_1, ...``);
2. :func:`conform` checks that two inputs sharing a dimension agree on its size and
   coordinates, and gives the second one the first one's coordinates (so that arithmetic
   never aligns, that is never silently drops cells);
3. :func:`reduce_dims` and :func:`weights_for` read ``dim=`` and ``weights=``;
4. :func:`weighted_mean` averages over the cells that are finite (NaN cells left out, the
   weights renormalised over the others), as xarray reductions, so dask stays lazy;
5. :func:`finish` names the result and gives it ``long_name``/``units``, or returns a float
   or an array for plain-array input.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np
import xarray as xr

from .._validate import check_choice
from ..exceptions import DtypeError, InputValueError, OptionError, ShapeError

__all__ = [
    "DimArg",
    "any_xarray",
    "as_dataarray",
    "conform",
    "drop_clashes",
    "finish",
    "is_dask",
    "reduce_dims",
    "units_of",
    "weighted_mean",
    "weights_for",
]

#: ``dim=``: ``None`` (every dimension of the truth), one name, or a sequence of names
#: (integers name axes of plain-array input).
DimArg = Hashable | Sequence[Hashable] | None


def any_xarray(*objs: Any) -> bool:
    """Whether any of ``objs`` is a DataArray (then the result is one too)."""
    return any(isinstance(o, xr.DataArray) for o in objs)


def is_dask(obj: Any) -> bool:
    """Whether ``obj`` (a DataArray) holds a dask array."""
    return getattr(obj, "chunks", None) is not None


def as_dataarray(x: Any, *, dims: Sequence[Hashable], what: str) -> xr.DataArray:
    """``x`` as a float DataArray; a plain array gets ``dims`` (by position).

    Parameters
    ----------
    x : DataArray or array_like
    dims : sequence of str
        The dims a plain array must have (its number of axes must match).
    what : str
        The argument's name, for messages.
    """
    if isinstance(x, xr.Dataset):
        raise InputValueError(
            f"{what} is a Dataset; the metrics take DataArrays: pass one variable, "
            f"e.g. {what}['name']"
        )
    if isinstance(x, xr.DataArray):
        da = x
    else:
        data = x if hasattr(x, "chunks") and hasattr(x, "dtype") else np.asarray(x)
        if data.ndim != len(dims):
            raise ShapeError(
                f"{what} has shape {tuple(data.shape)}, but as a plain array it must have "
                f"{len(dims)} axes {tuple(str(d) for d in dims)}; pass a DataArray with named "
                "dims, or an array of that layout"
            )
        da = xr.DataArray(data, dims=tuple(dims))
    kind = da.dtype.kind
    if kind not in "iuf":
        raise DtypeError(
            f"{what} holds {da.dtype} values; the metrics need real numbers (float or int): "
            "convert with .astype('float64')"
        )
    return da if kind == "f" else da.astype(np.float64)


def _same_coordinate(a: xr.DataArray, b: xr.DataArray) -> bool:
    av, bv = np.asarray(a.values), np.asarray(b.values)
    if av.shape != bv.shape:
        return False
    if av.dtype.kind in "iuf" and bv.dtype.kind in "iuf":
        av, bv = av.astype(np.float64), bv.astype(np.float64)
        scale = float(np.max(np.abs(av))) if av.size else 0.0
        return bool(np.allclose(av, bv, rtol=1e-6, atol=1e-9 * max(scale, 1.0)))
    return bool(np.array_equal(av, bv))


def drop_clashes(x: xr.DataArray, other: xr.DataArray) -> xr.DataArray:
    """``x`` without its coordinates that are not its dims but are dims of ``other`` (a scalar
    ``time`` left by ``.isel(time=0)`` against a ``time`` dim), which xarray cannot combine."""
    clash = [c for c in x.coords if c not in x.dims and c in other.dims]
    return x.drop_vars(clash) if clash else x


def conform(other: xr.DataArray, ref: xr.DataArray, *, what: str, ref_what: str) -> xr.DataArray:
    """``other`` with ``ref``'s coordinates on the dims they share, after checking they agree.

    Dimension sizes must be equal; where both carry an index coordinate, its values must agree
    to a relative 1e-6 (so that round-off from a refinement passes but a reversed or shifted
    axis does not).  Where only ``other`` has an index, it is dropped; so are coordinates of
    ``other`` that clash with dims of ``ref`` (:func:`drop_clashes`).
    """
    other = drop_clashes(other, ref)
    for d in other.dims:
        if d not in ref.dims:
            continue
        if other.sizes[d] != ref.sizes[d]:
            raise ShapeError(
                f"{what} has {other.sizes[d]} cells along {d!r} but {ref_what} has "
                f"{ref.sizes[d]}; compare fields on the same grid (select, coarsen or "
                "downscale one of them first)"
            )
        if d in other.indexes and d in ref.indexes:
            if not _same_coordinate(other[d], ref[d]):
                raise ShapeError(
                    f"{what} and {ref_what} have different {d!r} coordinates (first values "
                    f"{np.asarray(other[d].values)[:3]} and {np.asarray(ref[d].values)[:3]}); "
                    "they must describe the same cells: reindex one like the other "
                    "(.reindex_like / .sortby), or assign the same coordinates"
                )
            other = other.assign_coords({d: ref[d].variable})
        elif d in other.indexes:
            other = other.drop_vars([d])
    return other


def reduce_dims(dim: DimArg, truth: xr.DataArray, *, what: str = "truth") -> list[Hashable]:
    """The dims to reduce over: ``None`` -> every dim of ``truth``; names must be its dims."""
    if dim is None:
        return list(truth.dims)
    names = [dim] if isinstance(dim, str | int) or not isinstance(dim, Sequence) else list(dim)
    out: list[Hashable] = []
    for d in names:
        if isinstance(d, int | np.integer) and not isinstance(d, bool):
            if not -truth.ndim <= int(d) < truth.ndim:
                raise OptionError(
                    f"dim={dim!r}: axis {d} is out of range for {what} with {truth.ndim} "
                    "axes; pass axes of the truth, or None to reduce over all of them"
                )
            d = truth.dims[int(d)]
        if d not in truth.dims:
            raise OptionError(
                f"dim={dim!r}: {d!r} is not a dimension of {what} (its dims: "
                f"{[str(x) for x in truth.dims]}); pass some of those, or None for all"
            )
        if d not in out:
            out.append(d)
    return out


def weights_for(weights: Any, truth: xr.DataArray) -> xr.DataArray | None:
    """``weights=`` as a DataArray that broadcasts against ``truth`` by dim name.

    ``None``: equal weights.  ``"area"``: :func:`xsr.cell_areas` of ``truth``'s horizontal
    grid.  A DataArray: matched by dim name (its dims must be dims of the truth, those that
    can be averaged over).  A plain
    array: takes the trailing dims of ``truth`` (numpy broadcasting).  Negative or infinite
    weights are refused (when in memory); NaN weights leave their cells out.
    """
    if weights is None:
        return None
    if isinstance(weights, str):
        check_choice(
            weights,
            ("area",),
            name="weights",
            hint="pass 'area' for cell areas, None for equal weights, or an array",
        )
        from ..api import cell_areas
        from ..cfgrid import spatial_dims

        ydim, xdim = spatial_dims(truth)
        areas = cell_areas(truth, dims=(ydim, xdim))
        if areas is None:
            raise InputValueError(
                f"weights='area': the grid of the truth has no coordinates on ({ydim!r}, "
                f"{xdim!r}), so its cells have no area; pass weights=None (equal weights) "
                "or an array of weights"
            )
        w = xr.DataArray(areas, dims=(ydim, xdim))
        return w.assign_coords({d: truth[d].variable for d in (ydim, xdim) if d in truth.indexes})
    if isinstance(weights, xr.DataArray):
        extra = [str(d) for d in weights.dims if d not in truth.dims]
        if extra:
            raise ShapeError(
                f"weights have dims {extra} that the truth does not have (its dims: "
                f"{[str(d) for d in truth.dims]}); give weights on dims of the truth"
            )
        w = conform(weights, truth, what="weights", ref_what="the truth")
    else:
        arr = np.asarray(weights)
        if arr.ndim > truth.ndim:
            raise ShapeError(
                f"weights of shape {arr.shape} have more axes than the truth "
                f"{tuple(truth.shape)}; pass weights broadcastable to the truth"
            )
        dims = truth.dims[truth.ndim - arr.ndim :]
        for d, n in zip(dims, arr.shape):
            if n not in (1, truth.sizes[d]):
                raise ShapeError(
                    f"weights of shape {arr.shape} do not broadcast to the truth's shape "
                    f"{tuple(truth.shape)} (dims {[str(x) for x in truth.dims]}); pass a "
                    "DataArray with named dims, or an array of the trailing dims' shape"
                )
        # axes of length 1 broadcast (numpy rules): drop them, xarray broadcasts by name
        keep = [i for i, n in enumerate(arr.shape) if n == truth.sizes[dims[i]]]
        w = xr.DataArray(arr.reshape([arr.shape[i] for i in keep]), dims=[dims[i] for i in keep])
    if w.dtype.kind not in "iuf":
        raise OptionError(f"weights must be real numbers, got dtype {w.dtype}")
    w = w.astype(np.float64)
    if not is_dask(w):
        v = np.asarray(w.values)
        bad = (v < 0) | np.isinf(v)
        if bad.any():
            raise OptionError(
                f"weights must be finite and non-negative, got {int(bad.sum())} cell(s) "
                f"negative or infinite (e.g. {v[bad].ravel()[0]!r}); use cell areas, or "
                "set those weights to 0 or NaN to leave the cells out"
            )
    return w


def weighted_mean(x: xr.DataArray, dims: Sequence[Hashable], w: xr.DataArray | None) -> Any:
    """Mean of ``x`` over ``dims``, the weights renormalised over the finite cells of ``x``.

    NaN cells of ``x`` (and NaN weights) are left out; where no cell with positive weight is
    left the result is NaN.  Lazy for dask-backed inputs.
    """
    valid = x.notnull()
    wv = valid.astype(np.float64) if w is None else w.fillna(0.0).where(valid, 0.0)
    dims = [d for d in dims if d in wv.dims]
    num = (x.fillna(0.0) * wv).sum(dims)
    den = wv.sum(dims)
    return num / den.where(den > 0)


def units_of(obj: xr.DataArray) -> str:
    """The ``units`` attribute of ``obj`` as a string ('' when absent)."""
    return str(obj.attrs.get("units", ""))


def squared_units(units: str) -> str:
    """``'m'`` -> ``'m2'``, ``'kg m-2'`` -> ``'(kg m-2)2'``, ``''`` -> ``''``."""
    if not units or units == "1":
        return units
    return f"{units}2" if units.isalpha() else f"({units})2"


def finish(result: xr.DataArray, *, name: str, long_name: str, units: str, xarray_out: bool) -> Any:
    """The result named and described, or a float / array for plain-array input."""
    result = result.rename(name)
    result.attrs = {"long_name": long_name, "units": units}
    if xarray_out:
        return result
    data = result.data
    if getattr(data, "chunks", None) is None:
        data = np.asarray(data)
        if data.ndim == 0:
            return float(data)
    return data
