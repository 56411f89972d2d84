"""Round trips: ``coarsen(downscale(x))`` gives back ``x`` -- values, NaN cells and coordinates.

Hand-picked grids that broke it once (irregular and pole-reaching latitudes, curvilinear
grids, DataArrays without bounds); the generated grids are in ``test_properties.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import xsr  # noqa: F401  (registers .sr)
from xsr import grid
from xsr.cfgrid import RECORD_ATTRS
from xsr.testing import assert_conserves, curvilinear_dataset, lonlat_dataset


def _irregular(lat, nx=4, seed=0):
    rng = np.random.default_rng(seed)
    lon = np.arange(nx) + 0.5
    t = rng.normal(size=(len(lat), nx)) + 10
    t[0, 0] = np.nan
    return xr.Dataset(
        {"t": (("lat", "lon"), t, {"units": "K"})},
        coords={
            "lat": ("lat", np.asarray(lat, float), {"units": "degrees_north"}),
            "lon": ("lon", lon, {"units": "degrees_east"}),
        },
    )


LATS = {
    "irregular": [0, 1, 3, 6, 10, 15],
    "poles": [-90, -60, -30, 0, 30, 60, 90],
    "decimal": list(np.arange(6) * 0.1 + 0.05),
    "descending": [15, 10, 6, 3, 1, 0],
}


@pytest.mark.parametrize("kind", ["Dataset", "DataArray"])
@pytest.mark.parametrize("lats", LATS.values(), ids=LATS.keys())
@pytest.mark.parametrize("factor", [2, 3, 4])
def test_1d_round_trip_is_exact_with_identical_coordinates(lats, kind, factor):
    ds = _irregular(lats)
    obj = ds if kind == "Dataset" else ds["t"]
    back = obj.sr.downscale(factor=factor).sr.coarsen(factor=factor)
    assert type(back) is type(obj)
    for d in ("lat", "lon"):
        assert back[d].dtype == obj[d].dtype
        np.testing.assert_array_equal(back[d].values, obj[d].values)
        assert not set(RECORD_ATTRS) & set(back[d].attrs)
    xr.align(back, obj, join="exact")  # back - obj cannot drop a row
    assert_conserves(obj.sr.downscale(factor=factor), obj, factor)
    b = back if kind == "DataArray" else back["t"]
    np.testing.assert_allclose(b.values, ds["t"].values, rtol=1e-13, atol=0)


def test_float32_coordinates_come_back_in_float32():
    ds = lonlat_dataset(8, 12)
    ds = ds.assign_coords(lat=ds.lat.astype("float32"), lon=ds.lon.astype("float32"))
    ds["lat_bnds"] = ds["lat_bnds"].astype("float32")
    back = ds.sr.downscale(factor=4).sr.coarsen(factor=4)
    for v in ("lat", "lon", "lat_bnds"):
        assert back[v].dtype == ds[v].dtype, v
        np.testing.assert_array_equal(back[v].values, ds[v].values)


def test_record_survives_netcdf_and_dask(tmp_path):
    ds = _irregular(LATS["irregular"])
    fine = ds["t"].sr.downscale(factor=4)
    fine.to_netcdf(tmp_path / "f.nc")
    read = xr.open_dataarray(tmp_path / "f.nc", chunks={})
    back = read.sr.coarsen(factor=4)
    np.testing.assert_array_equal(back.lat.values, ds.lat.values)
    np.testing.assert_allclose(back.values, ds["t"].values, rtol=1e-13)


def test_a_stale_record_is_ignored():
    ds = _irregular(LATS["irregular"])
    fine = ds["t"].sr.downscale(factor=2)
    # reversed: same length, but the record no longer describes the coordinate
    rev = fine.isel(lat=slice(None, None, -1))
    back = rev.sr.coarsen(factor=2)
    coarse_lat = grid.coarsen_1d(
        rev.lat.values, grid.infer_bounds_1d(rev.lat.values, kind="latitude"), 2
    )[0]
    np.testing.assert_allclose(back.lat.values, coarse_lat)
    # subset: the record's length no longer fits
    sub = fine.isel(lat=slice(2, 10))
    assert sub.sr.coarsen(factor=2).sizes["lat"] == 4
    # another factor: the record is for factor 2
    fine4 = ds["t"].sr.downscale(factor=4)
    assert fine4.sr.coarsen(factor=2).sizes["lat"] == 12


@pytest.mark.parametrize("factor", [2, 3, 4])
def test_curvilinear_dataset_round_trip_is_exact(factor):
    ds = curvilinear_dataset(6, 8)
    fine = ds.sr.downscale(factor=factor)
    back = fine.sr.coarsen(factor=factor)
    for c in ("lat", "lon"):
        np.testing.assert_array_equal(back[c].values, ds[c].values)
    assert_conserves(fine, ds, factor)


@pytest.mark.parametrize("factor", [2, 3])
def test_curvilinear_dataarray_keeps_its_cell_areas(factor):
    ds = curvilinear_dataset(6, 8)
    fine = ds["t"].sr.downscale(factor=factor)
    assert "cell_area" in fine.coords
    assert fine.attrs["cell_measures"] == "area: cell_area"
    # no corners in a DataArray: for even factors the middle corner is estimated
    assert_conserves(fine, ds["t"], factor, coords_atol=None if factor % 2 == 0 else 0.0)
    back = fine.sr.coarsen(factor=factor)
    assert "cell_area" not in back.coords
    assert "cell_measures" not in back.attrs
    np.testing.assert_allclose(back.values, ds["t"].values, rtol=1e-13)
    if factor % 2:  # the middle fine cell's centre is the coarse centre
        np.testing.assert_array_equal(back["lat"].values, ds["lat"].values)
    else:  # no corners in a DataArray: the middle corner is estimated
        np.testing.assert_allclose(back["lat"].values, ds["lat"].values, atol=5e-3)


def test_dataarray_keeps_a_cell_measures_area():
    ds = lonlat_dataset(6, 8)
    area = xr.DataArray(
        np.random.default_rng(1).uniform(1, 2, (6, 8)),
        dims=("lat", "lon"),
        attrs={"units": "m2", "standard_name": "cell_area"},
    )
    da = ds["sst"].assign_coords(areacello=area)
    da.attrs["cell_measures"] = "area: areacello"
    fine = da.sr.downscale(factor=2)
    assert "areacello" in fine.coords
    np.testing.assert_allclose(
        fine.areacello.coarsen(lat=2, lon=2).sum().values, area.values, rtol=1e-14
    )
    assert_conserves(fine, da, 2)
    back = fine.sr.coarsen(factor=2)
    np.testing.assert_allclose(back.areacello.values, area.values, rtol=1e-14)


def test_a_record_whose_bounds_variable_was_changed_is_ignored():
    ds = _irregular(LATS["irregular"])
    fine = ds.sr.downscale(factor=2)
    moved = fine.copy()
    moved["lat_bnds"] = fine["lat_bnds"] + 0.01  # edited after downscale
    back = moved.sr.coarsen(factor=2)
    mb = moved["lat_bnds"].values
    # the coarse cells are those of the edited bounds, not the recorded ones
    np.testing.assert_array_equal(back["lat_bnds"].values, np.stack([mb[::2, 0], mb[1::2, 1]], 1))
    assert not np.array_equal(back.lat.values, ds.lat.values)
