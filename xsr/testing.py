"""Helpers for tests (xsr's own and downstream ones): synthetic CF datasets and
:func:`assert_conserves`."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import xarray as xr

if TYPE_CHECKING:
    from collections.abc import Hashable

__all__ = [
    "assert_conserves",
    "curvilinear_dataset",
    "lonlat_dataset",
    "projected_dataset",
]


def _field(ny: int, nx: int, nt: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.meshgrid(np.linspace(0, 1, ny), np.linspace(0, 1, nx), indexing="ij")
    out = np.empty((nt, ny, nx))
    for t in range(nt):
        kx, ky = rng.uniform(1, 4, 2)
        out[t] = np.sin(2 * np.pi * kx * xx + t) * np.cos(2 * np.pi * ky * yy) + 0.1 * rng.normal(
            size=(ny, nx)
        )
    return out


def lonlat_dataset(
    ny: int = 12,
    nx: int = 24,
    *,
    nt: int = 2,
    land: bool = True,
    global_grid: bool = False,
    descending: bool = False,
    lon_convention: str = "0-360",
    bounds: bool = True,
    seed: int = 0,
    dtype: str = "float64",
) -> xr.Dataset:
    """A CF latitude/longitude Dataset with variables ``sst`` (signed, NaN land) and
    ``pr`` (non-negative).

    Returns
    -------
    Dataset with dims ``(time, lat, lon)``, 1-D CF coordinates and, if ``bounds``,
    ``lat_bnds``/``lon_bnds``.
    """
    if global_grid:
        dlat, dlon = 180.0 / ny, 360.0 / nx
        lat = -90 + dlat * (np.arange(ny) + 0.5)
        lon = dlon * (np.arange(nx) + 0.5)
    else:
        dlat, dlon = 1.0, 1.0
        lat = 30 + dlat * (np.arange(ny) + 0.5)
        lon = 300 + dlon * (np.arange(nx) + 0.5)
    if lon_convention == "-180-180":
        lon = np.where(lon > 180, lon - 360, lon)
        lon = np.sort(lon)
    if descending:
        lat = lat[::-1]
    sst = _field(ny, nx, nt, seed) * 2 + 15
    if land:
        sst[:, : ny // 3, : nx // 4] = np.nan
        sst[:, -1, -1] = np.nan
    pr = np.abs(_field(ny, nx, nt, seed + 1)) * 3
    pr[:, ny // 2, :] = 0.0
    ds = xr.Dataset(
        {
            "sst": (
                ("time", "lat", "lon"),
                sst.astype(dtype),
                {
                    "units": "degC",
                    "standard_name": "sea_surface_temperature",
                    "long_name": "synthetic SST",
                    "cell_methods": "time: mean",
                },
            ),
            "pr": (
                ("time", "lat", "lon"),
                pr.astype(dtype),
                {
                    "units": "kg m-2 s-1",
                    "standard_name": "precipitation_flux",
                },
            ),
            "station_count": (("time",), np.arange(nt)),
        },
        coords={
            "time": np.arange(nt).astype("datetime64[D]"),
            "lat": (
                "lat",
                lat,
                {"units": "degrees_north", "standard_name": "latitude", "axis": "Y"},
            ),
            "lon": (
                "lon",
                lon,
                {"units": "degrees_east", "standard_name": "longitude", "axis": "X"},
            ),
        },
        attrs={"title": "synthetic", "history": "created by xsr.testing"},
    )
    if bounds:
        sgn = -1.0 if descending else 1.0
        ds["lat_bnds"] = (
            ("lat", "bnds"),
            np.stack([lat - sgn * dlat / 2, lat + sgn * dlat / 2], 1),
        )
        ds["lon_bnds"] = (("lon", "bnds"), np.stack([lon - dlon / 2, lon + dlon / 2], 1))
        ds["lat"].attrs["bounds"] = "lat_bnds"
        ds["lon"].attrs["bounds"] = "lon_bnds"
    return ds


def projected_dataset(ny: int = 16, nx: int = 20, *, nt: int = 2, seed: int = 0) -> xr.Dataset:
    """A projected-grid Dataset (``y``/``x`` in metres) with variable ``ssh``."""
    dx = 4000.0
    ds = xr.Dataset(
        {"ssh": (("time", "y", "x"), _field(ny, nx, nt, seed) * 0.3, {"units": "m"})},
        coords={
            "y": (
                "y",
                dx * (np.arange(ny) + 0.5),
                {"units": "m", "axis": "Y", "standard_name": "projection_y_coordinate"},
            ),
            "x": (
                "x",
                dx * (np.arange(nx) + 0.5),
                {"units": "m", "axis": "X", "standard_name": "projection_x_coordinate"},
            ),
        },
    )
    return ds


def curvilinear_dataset(ny: int = 12, nx: int = 16, *, seed: int = 0) -> xr.Dataset:
    """A curvilinear Dataset: dims ``(nj, ni)`` without coordinates, 2-D ``lat``/``lon``
    (a rotated, stretched grid crossing the dateline), variable ``t`` with NaN land."""
    j, i = np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij")
    lat = 40 + 0.8 * j + 0.2 * i
    lon = (170 + 0.9 * i - 0.3 * j + 180) % 360 - 180  # crosses +-180
    t = _field(ny, nx, 1, seed)[0] + 10
    t[:3, :4] = np.nan
    return xr.Dataset(
        {"t": (("nj", "ni"), t, {"units": "degC"})},
        coords={
            "lat": (("nj", "ni"), lat, {"units": "degrees_north", "standard_name": "latitude"}),
            "lon": (("nj", "ni"), lon, {"units": "degrees_east", "standard_name": "longitude"}),
        },
    )


def assert_conserves(
    fine: xr.Dataset | xr.DataArray,
    coarse: xr.Dataset | xr.DataArray,
    factor: int,
    *,
    dims: tuple[Hashable, Hashable] | None = None,
    rtol: float = 1e-12,
    weights: str | None = "auto",
    coords_atol: float | None = 1e-9,
) -> float:
    """Assert that ``coarsen(fine)`` reproduces ``coarse``: the same values within ``rtol``
    relative to the largest magnitude (computed in float64), the same NaN cells, and the
    same horizontal coordinates, so that ``coarsen(fine) - coarse`` aligns every cell.

    Parameters
    ----------
    fine, coarse : Dataset or DataArray
        ``fine`` of the same type as ``coarse``.
    factor : int
    dims : (y, x), optional
    rtol : float
        Largest relative error allowed (1e-12 suits float64; use 2e-6 for float32).
    weights : str or None
        Passed to :func:`xsr.coarsen`.
    coords_atol : float or None
        Largest difference allowed in 2-D latitude/longitude coordinates (degrees); None
        skips them.  1-D dimension coordinates must be identical in any case: xarray aligns
        on them.

    Returns
    -------
    float
        The largest relative error found.
    """
    from .api import coarsen, spatial_dims

    assert type(fine) is type(coarse), (
        f"fine is a {type(fine).__name__} but coarse a {type(coarse).__name__}"
    )
    back = coarsen(fine, factor=factor, dims=dims, weights=weights)  # type: ignore[arg-type]
    ydim, xdim = spatial_dims(coarse, dims)
    for d in (ydim, xdim):
        if d in coarse.coords:
            assert d in back.coords, f"coordinate {d!r} is missing after coarsen"
            cv, bv = coarse[d].values, back[d].values
            assert cv.dtype == bv.dtype and np.array_equal(cv, bv), (
                f"coordinate {d!r} differs after coarsen: {bv[:4]!r}... ({bv.dtype}) instead "
                f"of {cv[:4]!r}... ({cv.dtype}); coarsen(fine) - coarse would drop cells"
            )
    if coords_atol is not None:
        for cname, cvar in coarse.coords.items():
            if cvar.ndim == 2 and set(cvar.dims) == {ydim, xdim} and cname in back.coords:
                bc = np.asarray(back[cname].transpose(*cvar.dims).values, np.float64)
                diff = np.abs(bc - cvar.values)
                units = str(cvar.attrs.get("units", ""))
                if units.startswith("degree") and "east" in units:
                    diff = np.abs((diff + 180.0) % 360.0 - 180.0)
                worst_c = float(diff.max())
                assert worst_c <= coords_atol, (
                    f"2-D coordinate {cname!r} differs after coarsen by up to {worst_c:.3g}"
                )
    if isinstance(coarse, xr.DataArray):
        pairs = [(str(coarse.name), coarse, back)]
    else:
        assert isinstance(back, xr.Dataset)
        pairs = [
            (str(n), v, back[n])
            for n, v in coarse.data_vars.items()
            if ydim in v.dims and xdim in v.dims and n in back.data_vars
        ]
    assert pairs, "no variable to compare"
    worst = 0.0
    for name, c, b in pairs:
        cv = np.asarray(c.values, np.float64)
        bv = np.asarray(b.transpose(*c.dims).values, np.float64)
        assert cv.shape == bv.shape, f"{name}: shape {bv.shape} != {cv.shape}"
        nan_c, nan_b = np.isnan(cv), np.isnan(bv)
        assert np.array_equal(nan_c, nan_b), (
            f"{name}: NaN pattern differs in {int((nan_c != nan_b).sum())} cells"
        )
        ok = ~nan_c
        if not ok.any():
            continue
        scale = max(float(np.abs(cv[ok]).max()), np.finfo(float).tiny)
        err = float(np.abs(bv[ok] - cv[ok]).max()) / scale
        assert err <= rtol, f"{name}: relative conservation error {err:.3e} > {rtol:.1e}"
        worst = max(worst, err)
    return worst
