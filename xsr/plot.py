"""Comparison figures for downscaling results (matplotlib, imported on first use).

:func:`compare` draws the truth, the coarse input, one or more downscaled fields, their
absolute errors and, optionally, ensemble spreads, side by side on shared colour scales.
:func:`uncertainty_figure` draws one ensemble result as truth / coarse / downscaled /
spread / absolute error, the layout of the deep-image-prior study's uncertainty figure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import xarray as xr

from .api import spatial_dims
from .exceptions import OptionError, ShapeError

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["compare", "uncertainty_figure"]

#: Colour of NaN (land) cells.
NAN_COLOUR = "0.75"


def _plane(da: xr.DataArray, what: str) -> tuple[xr.DataArray, str, str]:
    """``da`` reduced to its two horizontal dims ``(y, x)`` (size-1 dims squeezed)."""
    if not isinstance(da, xr.DataArray):
        raise TypeError(f"{what} must be an xarray DataArray, got {type(da).__name__}")
    ydim, xdim = spatial_dims(da)
    extra = [d for d in da.dims if d not in (ydim, xdim)]
    big = [f"{d}: {da.sizes[d]}" for d in extra if da.sizes[d] > 1]
    if big:
        raise ShapeError(
            f"{what} has more than one horizontal plane ({', '.join(big)}); select one, "
            "e.g. da.isel(time=0)"
        )
    plane = da.isel({d: 0 for d in extra}, drop=True).transpose(ydim, xdim)
    return plane, ydim, xdim


Origin = Literal["upper", "lower"]


def _extent(plane: xr.DataArray, ydim: str, xdim: str) -> tuple[list[float] | None, Origin]:
    """imshow extent from 1-D coordinates (outer cell edges), and the matching origin."""
    if not (ydim in plane.coords and xdim in plane.coords):
        return None, "lower"
    y = np.asarray(plane[ydim].values, dtype=np.float64)
    x = np.asarray(plane[xdim].values, dtype=np.float64)
    if y.ndim != 1 or x.ndim != 1 or y.size < 2 or x.size < 2:
        return None, "lower"
    dy, dx = np.diff(y), np.diff(x)
    if not ((dy > 0).all() or (dy < 0).all()) or not ((dx > 0).all() or (dx < 0).all()):
        return None, "lower"  # not monotonic (e.g. longitudes that wrap): index space
    hy = (y[-1] - y[0]) / (y.size - 1) / 2
    hx = (x[-1] - x[0]) / (x.size - 1) / 2
    xs = [x[0] - hx, x[-1] + hx]
    if hy > 0:  # row 0 is the southernmost: draw it at the bottom
        return [float(v) for v in (*xs, y[0] - hy, y[-1] + hy)], "lower"
    return [float(v) for v in (*xs, y[-1] + hy, y[0] - hy)], "upper"


def _robust_max(arrays: Sequence[np.ndarray], q: float = 99.0) -> float:
    vals = np.concatenate([a[np.isfinite(a)].ravel() for a in arrays])
    if vals.size == 0:
        return 1.0
    top = float(np.percentile(vals, q))
    return top if top > 0 else float(vals.max()) or 1.0


def compare(
    truth: xr.DataArray,
    coarse: xr.DataArray,
    fields: Mapping[str, xr.DataArray],
    *,
    error: bool = True,
    std: xr.DataArray | Mapping[str, xr.DataArray] | None = None,
    ax: Sequence[Axes] | None = None,
    cmap: str = "viridis",
    title: str | None = None,
) -> Figure:
    """Compare downscaled fields with the truth and the coarse input, panel by panel.

    Layout (one column per field after the truth and coarse columns)::

        truth | coarse | field 1       | field 2       | ...
              |        | |field 1 - truth| | |field 2 - truth| | ...   (if error)
              |        | std 1         | std 2         | ...   (if std)

    Parameters
    ----------
    truth : DataArray, dims ``(y, x)`` on the fine grid
        The reference fine field (size-1 dims such as ``time`` are squeezed).
    coarse : DataArray, dims ``(y, x)`` on the coarse grid
        The input that was downscaled; drawn over the same extent as ``truth`` when both
        have 1-D coordinates.
    fields : mapping of str to DataArray, each ``(y, x)`` on the fine grid
        Downscaled fields by label (the labels become panel titles).
    error : bool, default True
        Add a row with ``|field - truth|`` under each field, on one shared colour scale
        (0 to the 99th percentile of all the errors).
    std : DataArray or mapping of str to DataArray, optional
        Ensemble spread: a mapping keyed like ``fields`` (any subset), or one DataArray when
        ``fields`` has a single entry.  Drawn in a last row under the matching fields.
    ax : sequence of matplotlib Axes, optional
        Axes to draw into, one per panel in reading order (truth, coarse, fields, errors,
        spreads); the figure is the first axes' figure.  By default a new figure is made.
    cmap : str, default "viridis"
        Colour map of the value panels (truth, coarse and fields share its scale, from the
        truth's minimum to its maximum).  Errors and spreads use "magma".
    title : str, optional
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
        One axes per panel plus one colour-bar axes per colour scale (values, errors if
        ``error``, spreads if ``std``).  NaN cells (land) are drawn in grey.

    Raises
    ------
    ShapeError
        If a field is not on the grid of ``truth`` or has more than one horizontal plane.
    OptionError
        If ``fields`` is empty, ``std`` names unknown fields, or ``ax`` has too few axes.
    """
    import matplotlib as mpl

    if not fields:
        raise OptionError(
            "fields is empty; pass at least one downscaled field, e.g. {'bicubic': da}"
        )
    t, ty, tx = _plane(truth, "truth")
    c, cy, cx = _plane(coarse, "coarse")
    names = list(fields)
    planes: dict[str, np.ndarray] = {}
    for name in names:
        p, py, px = _plane(fields[name], f"fields[{name!r}]")
        if (p.sizes[py], p.sizes[px]) != (t.sizes[ty], t.sizes[tx]):
            raise ShapeError(
                f"fields[{name!r}] has horizontal shape {(p.sizes[py], p.sizes[px])}, the "
                f"truth {(t.sizes[ty], t.sizes[tx])}; compare fields on the truth's grid"
            )
        planes[name] = np.asarray(p.values, dtype=np.float64)

    if std is None:
        stds: dict[str, np.ndarray] = {}
    else:
        if isinstance(std, xr.DataArray):
            if len(names) != 1:
                raise OptionError(
                    f"std is a single DataArray but there are {len(names)} fields; pass a "
                    f"mapping keyed by field name, e.g. {{{names[0]!r}: std}}"
                )
            std = {names[0]: std}
        unknown = [k for k in std if k not in fields]
        if unknown:
            raise OptionError(f"std has entries {unknown} that are not in fields {names}")
        stds = {
            k: np.asarray(_plane(v, f"std[{k!r}]")[0].values, np.float64) for k, v in std.items()
        }

    tv = np.asarray(t.values, dtype=np.float64)
    errs = {k: np.abs(v - tv) for k, v in planes.items()} if error else {}
    ncols = 2 + len(names)
    nrows = 1 + (1 if errs else 0) + (1 if stds else 0)
    slots: list[tuple[int, int]] = [(0, j) for j in range(ncols)]
    row = 1
    if errs:
        slots += [(row, 2 + j) for j in range(len(names))]
        row += 1
    if stds:
        slots += [(row, 2 + names.index(k)) for k in names if k in stds]
    npanels = len(slots)

    if ax is None:
        import matplotlib.pyplot as plt

        fig = plt.figure(figsize=(3.2 * ncols + 1.0, 2.6 * nrows + 0.4), layout="constrained")
        gs = fig.add_gridspec(nrows, ncols)
        axes = [fig.add_subplot(gs[r, j]) for r, j in slots]
    else:
        axes = list(ax)
        if len(axes) < npanels:
            raise OptionError(f"ax has {len(axes)} axes; this comparison needs {npanels}")
        axes = axes[:npanels]
        fig = axes[0].figure  # type: ignore[assignment]

    def _cmap(name: str) -> Any:
        return mpl.colormaps[name].with_extremes(bad=NAN_COLOUR)

    finite = tv[np.isfinite(tv)]
    vmin, vmax = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    ext, origin = _extent(t, ty, tx)
    c_ext, c_origin = _extent(c, cy, cx)
    value_kw = {"cmap": _cmap(cmap), "vmin": vmin, "vmax": vmax, "interpolation": "nearest"}

    def _show(a: Axes, data: np.ndarray, label: str, extent: Any, org: Origin, **kw: Any) -> Any:
        im = a.imshow(np.ma.masked_invalid(data), extent=extent, origin=org, **kw)
        a.set_title(label, fontsize="medium")
        a.tick_params(labelsize="small")
        return im

    it = iter(axes)
    im = _show(next(it), tv, "truth", ext, origin, **value_kw)
    _show(next(it), np.asarray(c.values, np.float64), "coarse", c_ext, c_origin, **value_kw)
    for name in names:
        _show(next(it), planes[name], name, ext, origin, **value_kw)
    value_axes = axes[:ncols]
    units = str(truth.attrs.get("units", ""))
    fig.colorbar(im, ax=value_axes, shrink=0.9, extend="both", label=units or None)

    if errs:
        emax = _robust_max(list(errs.values()))
        ekw = {"cmap": _cmap("magma"), "vmin": 0.0, "vmax": emax, "interpolation": "nearest"}
        err_axes = []
        for name in names:
            a = next(it)
            im = _show(a, errs[name], f"|{name} - truth|", ext, origin, **ekw)
            err_axes.append(a)
        fig.colorbar(im, ax=err_axes, shrink=0.9, extend="max", label=units or None)
    if stds:
        smax = _robust_max(list(stds.values()))
        skw = {"cmap": _cmap("magma"), "vmin": 0.0, "vmax": smax, "interpolation": "nearest"}
        std_axes = []
        for name in names:
            if name not in stds:
                continue
            a = next(it)
            im = _show(a, stds[name], f"std {name}", ext, origin, **skw)
            std_axes.append(a)
        fig.colorbar(im, ax=std_axes, shrink=0.9, extend="max", label=units or None)
    if title:
        fig.suptitle(title)
    return fig


def uncertainty_figure(
    truth: xr.DataArray,
    coarse: xr.DataArray,
    fine: xr.DataArray,
    std: xr.DataArray,
    *,
    ax: Sequence[Axes] | None = None,
    cmap: str = "viridis",
    title: str | None = None,
) -> Figure:
    """Truth, coarse input, downscaled field, ensemble spread and absolute error in a row.

    Parameters
    ----------
    truth : DataArray, dims ``(y, x)`` on the fine grid
        The reference fine field (size-1 dims such as ``time`` are squeezed).
    coarse : DataArray, dims ``(y, x)`` on the coarse grid
        The input that was downscaled.
    fine : DataArray, dims ``(y, x)`` on the fine grid
        The downscaled field (an ensemble mean, e.g. ``out["adt"]``).
    std : DataArray, dims ``(y, x)`` on the fine grid
        Its spread (e.g. ``out["adt_std"]``).
    ax : sequence of 5 matplotlib Axes, optional
        Axes to draw into (truth, coarse, fine, std, error); by default a new figure.
    cmap : str, default "viridis"
        Colour map of the three value panels (one scale: the truth's range); the spread and
        the error use "magma", each on its own scale from 0 to its 99th percentile.
    title : str, optional
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
        Five panels and three colour bars; the error panel's title gives the RMSE and the
        Pearson correlation of the spread with the absolute error.  NaN cells are grey.

    Raises
    ------
    ShapeError
        If ``fine`` or ``std`` is not on the grid of ``truth``.
    OptionError
        If ``ax`` has fewer than 5 axes.
    """
    import matplotlib as mpl

    t, ty, tx = _plane(truth, "truth")
    c, cy, cx = _plane(coarse, "coarse")
    planes = {}
    for label, da in (("fine", fine), ("std", std)):
        p, py, px = _plane(da, label)
        if (p.sizes[py], p.sizes[px]) != (t.sizes[ty], t.sizes[tx]):
            raise ShapeError(
                f"{label} has horizontal shape {(p.sizes[py], p.sizes[px])}, the truth "
                f"{(t.sizes[ty], t.sizes[tx])}; pass fields on the truth's grid"
            )
        planes[label] = np.asarray(p.values, np.float64)
    tv = np.asarray(t.values, np.float64)
    err = np.abs(planes["fine"] - tv)
    sd = planes["std"]

    if ax is None:
        import matplotlib.pyplot as plt

        fig = plt.figure(figsize=(17.0, 3.6), layout="constrained")
        axes = list(fig.subplots(1, 5))
    else:
        axes = list(ax)
        if len(axes) < 5:
            raise OptionError(f"ax has {len(axes)} axes; this figure needs 5")
        axes = axes[:5]
        fig = axes[0].figure

    def _cm(name: str) -> Any:
        return mpl.colormaps[name].with_extremes(bad=NAN_COLOUR)

    finite = tv[np.isfinite(tv)]
    vmin, vmax = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    ext, origin = _extent(t, ty, tx)
    c_ext, c_origin = _extent(c, cy, cx)
    units = str(truth.attrs.get("units", "")) or None
    vkw = {"cmap": _cm(cmap), "vmin": vmin, "vmax": vmax, "interpolation": "nearest"}

    def _show(a: Axes, data: np.ndarray, label: str, extent: Any, org: Origin, **kw: Any) -> Any:
        im = a.imshow(np.ma.masked_invalid(data), extent=extent, origin=org, **kw)
        a.set_title(label, fontsize="medium")
        a.tick_params(labelsize="small")
        return im

    im = _show(axes[0], tv, "truth", ext, origin, **vkw)
    _show(axes[1], np.asarray(c.values, np.float64), "coarse", c_ext, c_origin, **vkw)
    _show(axes[2], planes["fine"], "downscaled", ext, origin, **vkw)
    fig.colorbar(im, ax=axes[:3], shrink=0.9, extend="both", label=units)
    ok = np.isfinite(err) & np.isfinite(sd)
    corr = (
        float(np.corrcoef(sd[ok], err[ok])[0, 1]) if ok.sum() > 1 and sd[ok].std() > 0 else np.nan
    )
    rmse = float(np.sqrt(np.mean(err[np.isfinite(err)] ** 2))) if np.isfinite(err).any() else np.nan
    for a, data, label in (
        (axes[3], sd, "ensemble std"),
        (axes[4], err, f"|error|: rmse {rmse:.3g}, corr(std) {corr:.2f}"),
    ):
        kw = {"cmap": _cm("magma"), "vmin": 0.0, "vmax": _robust_max([data])}
        im = _show(a, data, label, ext, origin, interpolation="nearest", **kw)
        fig.colorbar(im, ax=a, shrink=0.9, extend="max", label=units)
    if title:
        fig.suptitle(title)
    return fig
