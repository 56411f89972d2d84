"""The xarray layer and the ``sr`` accessor, on numpy- and dask-backed synthetic CF data."""

from __future__ import annotations

import dask
import numpy as np
import pytest
import xarray as xr

import xsr
from xsr.exceptions import (
    BoundsError,
    CoordinateError,
    DtypeError,
    FactorError,
    InputValueError,
    MethodError,
    ShapeError,
    SpatialDimsError,
    XsrError,
)
from xsr.testing import (
    assert_conserves,
    curvilinear_dataset,
    lonlat_dataset,
    projected_dataset,
)


class RaiseOnCompute:
    """A dask scheduler that fails the test if anything is computed."""

    def __call__(self, dsk, keys, **kwargs):
        raise AssertionError("dask computed something, but the call should stay lazy")


@pytest.fixture(params=["numpy", "dask"])
def backend(request):
    return request.param


def _maybe_chunk(ds, backend):
    # chunk sizes along time that do not divide the length, to catch edge cases
    return ds.chunk({"time": 2}) if backend == "dask" else ds


@pytest.mark.parametrize("factor", [2, 3])
@pytest.mark.parametrize("method", ["nearest", "bilinear", "bicubic"])
def test_dataset_downscale_conserves(backend, factor, method):
    ds = _maybe_chunk(lonlat_dataset(nt=3), backend)
    fine = ds.sr.downscale(factor=factor, method=method)
    assert isinstance(fine, xr.Dataset)
    assert fine.sizes["lat"] == ds.sizes["lat"] * factor
    assert fine.sizes["lon"] == ds.sizes["lon"] * factor
    if backend == "dask":
        assert fine["sst"].chunks is not None
    assert_conserves(fine, ds, factor)
    # non-spatial variable untouched
    xr.testing.assert_identical(fine["station_count"], ds["station_count"].compute())


def test_dask_stays_lazy():
    # data variables are dask-backed; coordinates and bounds are small and are read (as
    # xarray does for index coordinates), so they are loaded up front here
    ds = lonlat_dataset(nt=4).chunk({"time": 1})
    ds = ds.assign(lat_bnds=ds["lat_bnds"].load(), lon_bnds=ds["lon_bnds"].load())
    with dask.config.set(scheduler=RaiseOnCompute()):
        fine = ds.sr.downscale(factor=2)
        back = fine.sr.coarsen(factor=2)
    assert fine["sst"].data.npartitions == 4
    assert back["sst"].chunks is not None
    assert_conserves(fine, ds, 2)


def test_spatially_chunked_dask_is_tiled():
    # formerly refused; now tiled chunk by chunk (tests/test_tiling.py has the details)
    ds = lonlat_dataset()
    fine = ds.chunk({"lat": 4}).sr.downscale(factor=2)
    assert fine["sst"].chunks is not None
    assert fine["sst"].chunksizes["lat"] == (8, 8, 8)
    ref = ds.sr.downscale(factor=2)
    np.testing.assert_allclose(fine["sst"].values, ref["sst"].values, rtol=1e-13, atol=0)
    assert_conserves(fine, ds, 2)


def test_dataarray_downscale_and_coarsen():
    ds = lonlat_dataset()
    da = ds["sst"]
    fine = da.sr.downscale(factor=4)
    assert isinstance(fine, xr.DataArray)
    assert fine.name == "sst"
    assert fine.dims == da.dims
    assert fine.attrs["units"] == "degC"
    assert fine.attrs["xsr_method"] == "bicubic"
    assert fine.attrs["xsr_factor"] == 4
    assert fine.attrs["xsr_conserve"] == "additive"
    assert "downscale(factor=4" in fine.attrs["history"]
    back = fine.sr.coarsen(factor=4)
    assert isinstance(back, xr.DataArray)
    np.testing.assert_allclose(back.values, da.values, rtol=1e-12)
    np.testing.assert_allclose(back["lat"], da["lat"], rtol=1e-12)
    np.testing.assert_allclose(back["lon"], da["lon"], rtol=1e-12)
    # DataArray and Dataset paths agree
    fine_ds = ds.sr.downscale(factor=4)
    np.testing.assert_array_equal(fine.values, fine_ds["sst"].values)


def test_fine_coordinates_and_bounds():
    ds = lonlat_dataset(ny=6, nx=8)
    fine = ds.sr.downscale(factor=4)
    lat_b = fine["lat_bnds"].values
    assert fine["lat"].attrs["bounds"] == "lat_bnds"
    assert fine["lat"].attrs["standard_name"] == "latitude"
    # fine bounds subdivide every coarse cell exactly
    np.testing.assert_array_equal(lat_b[::4, 0], ds["lat_bnds"].values[:, 0])
    np.testing.assert_array_equal(lat_b[3::4, 1], ds["lat_bnds"].values[:, 1])
    np.testing.assert_allclose(np.diff(lat_b, axis=1), 0.25)
    np.testing.assert_allclose(fine["lat"].values, lat_b.mean(axis=1))
    # contiguous
    np.testing.assert_array_equal(lat_b[1:, 0], lat_b[:-1, 1])


def test_descending_latitude_and_negative_longitudes():
    ds = lonlat_dataset(descending=True, lon_convention="-180-180", global_grid=True, ny=8, nx=16)
    fine = ds.sr.downscale(factor=2)
    assert (np.diff(fine["lat"].values) < 0).all()
    assert fine["lon"].min() > -180
    assert fine["lon"].max() < 180
    assert_conserves(fine, ds, 2)


def test_global_grid_is_periodic_without_seam():
    # with the longitude wrapped, downscaling commutes with a shift across the dateline
    ds = lonlat_dataset(global_grid=True, land=False, ny=8, nx=16, nt=1)
    lon = np.deg2rad(ds["lon"].values)
    ds["sst"].values[:] = (np.sin(lon) + 0.5 * np.sin(3 * lon + 1))[None, None, :]
    ds = ds[["sst"]]
    auto = ds.sr.downscale(factor=4)["sst"].values
    flat = ds.sr.downscale(factor=4, periodic=False)["sst"].values
    rolled = ds.copy(deep=True)
    rolled["sst"].values[:] = np.roll(ds["sst"].values, 8, axis=-1)
    r = rolled.sr.downscale(factor=4)["sst"].values
    np.testing.assert_allclose(np.roll(r, -32, axis=-1), auto, atol=1e-12)
    rf = rolled.sr.downscale(factor=4, periodic=False)["sst"].values
    assert np.abs(np.roll(rf, -32, axis=-1) - flat).max() > 1e-3
    assert_conserves(ds.sr.downscale(factor=4), ds, 4)


def test_area_weights_are_used_on_lonlat_grids():
    ds = lonlat_dataset(land=False)
    fine = ds.sr.downscale(factor=2)
    assert fine["sst"].attrs["xsr_weights"].startswith("cell area")
    # uniform coarsening of an area-weighted result does not reproduce the input exactly...
    uni = fine.sr.coarsen(factor=2, weights="uniform")
    assert np.abs(uni["sst"].values - ds["sst"].values).max() > 1e-9
    # ...but the area-weighted one does, and uniform weights conserve uniformly
    assert_conserves(fine, ds, 2)
    fine_u = ds.sr.downscale(factor=2, weights="uniform")
    assert fine_u["sst"].attrs["xsr_weights"] == "uniform"
    assert_conserves(fine_u, ds, 2, weights="uniform")


def test_cell_measures_area_variable_is_refined():
    ds = lonlat_dataset(land=False)
    rng = np.random.default_rng(0)
    ds["areacello"] = (("lat", "lon"), rng.uniform(1, 2, (ds.sizes["lat"], ds.sizes["lon"])))
    ds["sst"].attrs["cell_measures"] = "area: areacello"
    fine = ds.sr.downscale(factor=3)
    assert "areacello" in fine
    assert fine["areacello"].shape == (ds.sizes["lat"] * 3, ds.sizes["lon"] * 3)
    back_area = fine["areacello"].coarsen(lat=3, lon=3).sum()
    np.testing.assert_allclose(back_area.values, ds["areacello"].values, rtol=1e-12)
    assert_conserves(fine, ds, 3)
    # coarsen sums the area back
    back = fine.sr.coarsen(factor=3)
    np.testing.assert_allclose(back["areacello"].values, ds["areacello"].values, rtol=1e-12)


def test_projected_grid_uniform_areas():
    ds = projected_dataset()
    fine = ds.sr.downscale(factor=4)
    assert fine["ssh"].attrs["xsr_weights"] == "cell area (projected grid)"
    np.testing.assert_allclose(np.diff(fine["x"].values), 1000.0)
    assert_conserves(fine, ds, 4)


def test_curvilinear_grid_across_dateline():
    ds = curvilinear_dataset()
    fine = ds.sr.downscale(factor=3)
    assert fine["lat"].dims == ("nj", "ni")
    assert fine["lat"].shape == (36, 48)
    assert fine["lat"].attrs["bounds"] in fine
    assert fine[fine["lat"].attrs["bounds"]].shape == (36, 48, 4)
    lon = fine["lon"].values
    assert lon.min() >= -180
    assert lon.max() <= 180
    # fine centres lie between the coarse neighbours: no jump larger than the coarse spacing
    dlon = np.abs((np.diff(lon, axis=1) + 180) % 360 - 180)
    assert dlon.max() < 1.0
    assert_conserves(fine, ds, 3)


def test_index_only_grid_with_dims():
    da = xr.DataArray(np.random.default_rng(0).normal(size=(5, 6, 8)), dims=("t", "a", "b"))
    with pytest.raises(SpatialDimsError, match=r"pass dims=\(y, x\)"):
        da.sr.downscale(factor=2)
    fine = da.sr.downscale(factor=2, dims=("a", "b"))
    assert fine.shape == (5, 12, 16)
    back = fine.sr.coarsen(factor=2, dims=("a", "b"))
    np.testing.assert_allclose(back.values, da.values, rtol=1e-12)


def test_transposed_dims_order_kept():
    ds = lonlat_dataset().transpose("lon", "time", "lat", ...)
    fine = ds.sr.downscale(factor=2)
    assert fine["sst"].dims == ("lon", "time", "lat")
    assert_conserves(fine, ds, 2)


def test_mask_on_coarse_and_fine_grid():
    ds = lonlat_dataset(land=False, nt=1)
    coarse_mask = xr.ones_like(ds["sst"].isel(time=0), dtype=bool)
    coarse_mask[0, 0] = False
    fine = ds.sr.downscale(factor=2, mask=coarse_mask)
    assert np.isnan(fine["sst"].values[0, :2, :2]).all()
    fine_mask = np.ones((ds.sizes["lat"] * 2, ds.sizes["lon"] * 2), bool)
    fine_mask[0, 0] = False  # one fine cell of a valid coarse cell is land
    fine2 = ds.sr.downscale(factor=2, mask=fine_mask)
    assert np.isnan(fine2["sst"].values[0, 0, 0])
    assert np.isfinite(fine2["sst"].values[0, 0, 1])
    assert_conserves(fine2, ds, 2)
    with pytest.raises(ShapeError, match="allowed"):
        ds.sr.downscale(factor=2, mask=np.ones((3, 3), bool))


def test_multiplicative_and_bounded_keep_non_negative():
    ds = lonlat_dataset()[["pr"]]
    for kw in ({"conserve": "multiplicative"}, {"conserve": "bounded", "bounds": (0, None)}):
        fine = ds.sr.downscale(factor=4, **kw)
        assert float(fine["pr"].min()) >= 0.0
        assert fine["pr"].attrs["xsr_conserve"] == kw["conserve"]
        assert_conserves(fine, ds, 4)
    # bicubic overshoots below zero without a positive-preserving enforcement
    plain = ds.sr.downscale(factor=4, conserve="additive")
    assert float(plain["pr"].min()) < 0.0


def test_attrs_history_and_global_attrs():
    ds = lonlat_dataset()
    fine = ds.sr.downscale(factor=2)
    assert fine.attrs["title"] == "synthetic"
    lines = fine.attrs["history"].splitlines()
    assert "xsr" in lines[0]
    assert "downscale(factor=2, method='bicubic', conserve='additive')" in lines[0]
    assert lines[1] == "created by xsr.testing"
    assert fine["sst"].attrs["cell_methods"] == "time: mean"
    assert fine["sst"].attrs["xsr_version"] == xsr.__version__
    back = fine.sr.coarsen(factor=2)
    assert back["sst"].attrs["cell_methods"] == "time: mean area: mean"
    assert "coarsen(factor=2" in back.attrs["history"].splitlines()[0]
    # the input is not modified
    assert ds.attrs["history"] == "created by xsr.testing"
    assert "xsr_method" not in ds["sst"].attrs


def test_grid_mapping_variable_kept():
    ds = projected_dataset()
    ds["crs"] = xr.DataArray(0, attrs={"grid_mapping_name": "transverse_mercator"})
    ds["ssh"].attrs["grid_mapping"] = "crs"
    fine = ds.sr.downscale(factor=2)
    assert "crs" in fine
    assert fine["crs"].attrs["grid_mapping_name"] == "transverse_mercator"
    assert fine["ssh"].attrs["grid_mapping"] == "crs"


@pytest.mark.parametrize("boundary", ["exact", "trim", "pad"])
def test_coarsen_boundaries(boundary):
    ds = lonlat_dataset(ny=10, nx=12, land=False)
    if boundary == "exact":
        with pytest.raises(ShapeError, match="boundary='trim'"):
            ds.sr.coarsen(factor=4)
        return
    out = ds.sr.coarsen(factor=4, boundary=boundary)
    n = {"trim": 2, "pad": 3}[boundary]
    assert out.sizes["lat"] == n
    assert out.sizes["lon"] == 3
    w = np.cos(np.deg2rad(ds["lat"]))  # area weights on a regular lat/lon grid
    first = (ds["sst"].isel(lat=slice(0, 4), lon=slice(0, 4)) * w).sum(("lat", "lon")) / (
        w.isel(lat=slice(0, 4)).sum() * 4
    )
    np.testing.assert_allclose(out["sst"].isel(lat=0, lon=0), first, rtol=1e-6)
    if boundary == "pad":
        last = ds["sst"].isel(lat=slice(8, 10), lon=slice(0, 4))
        wl = w.isel(lat=slice(8, 10))
        want = (last * wl).sum(("lat", "lon")) / (wl.sum() * 4)
        np.testing.assert_allclose(out["sst"].isel(lat=2, lon=0), want, rtol=1e-6)
        assert out["lat_bnds"].values[-1, 1] == pytest.approx(42.0)


def test_coarsen_matches_xarray_for_uniform_weights():
    ds = projected_dataset()
    out = ds.sr.coarsen(factor=2, weights="uniform")
    ref = ds["ssh"].coarsen(y=2, x=2).mean()
    np.testing.assert_allclose(out["ssh"].values, ref.values, rtol=1e-13)
    np.testing.assert_allclose(out["x"].values, ref["x"].values)


def test_float32_conserves_within_float32_tolerance():
    ds = lonlat_dataset(dtype="float32")
    fine = ds.sr.downscale(factor=4)
    assert fine["sst"].dtype == np.float32
    assert_conserves(fine, ds, 4, rtol=2e-6)
    fine64 = ds.sr.downscale(factor=4, dtype="float64")
    assert fine64["sst"].dtype == np.float64


# ---------------------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [0, 1, 2.5, -2])
def test_factor_errors(bad):
    with pytest.raises(FactorError, match="integer >= 2"):
        lonlat_dataset().sr.downscale(factor=bad)


def test_unknown_method():
    with pytest.raises(MethodError, match="did you mean 'bilinear'"):
        lonlat_dataset().sr.downscale(factor=2, method="bilinera")


def test_ambiguous_dims():
    ds = lonlat_dataset()
    ds["x2"] = ("x2", np.arange(3.0), {"axis": "X"})
    ds["other"] = (("x2",), np.zeros(3))
    with pytest.raises(SpatialDimsError, match="ambiguous"):
        ds.sr.downscale(factor=2)
    fine = ds.sr.downscale(factor=2, dims=("lat", "lon"))
    assert fine.sizes["x2"] == 3


def test_bad_dims_argument():
    with pytest.raises(SpatialDimsError, match="not among the dimensions"):
        lonlat_dataset().sr.downscale(factor=2, dims=("lat", "nope"))


def test_non_monotonic_coordinate():
    ds = lonlat_dataset(bounds=False)
    lat = ds["lat"].values.copy()
    lat[[2, 3]] = lat[[3, 2]]
    ds = ds.assign_coords(lat=("lat", lat, ds["lat"].attrs))
    with pytest.raises(CoordinateError, match="monoton"):
        ds.sr.downscale(factor=2)


def test_integer_dtype_refused():
    ds = lonlat_dataset()
    ds["sst"] = ds["sst"].fillna(0).astype("int16")
    with pytest.raises(DtypeError, match=r"astype\('float64'\)"):
        ds.sr.downscale(factor=2)


def test_all_nan_and_inf():
    ds = lonlat_dataset()
    ds["sst"][:] = np.nan
    with pytest.raises(InputValueError, match="entirely NaN"):
        ds.sr.downscale(factor=2)
    ds = lonlat_dataset()
    ds["sst"][0, 5, 5] = np.inf
    with pytest.raises(InputValueError, match="infinite"):
        ds.sr.downscale(factor=2)


def test_negative_multiplicative_and_bounds_violation():
    ds = lonlat_dataset()
    with pytest.raises(InputValueError, match="non-negative"):
        ds[["sst"]].assign(sst=ds["sst"] - 100).sr.downscale(factor=2, conserve="multiplicative")
    with pytest.raises(BoundsError, match=r"outside bounds=\(0.0, 1.0\)"):
        ds[["pr"]].sr.downscale(factor=2, conserve="bounded", bounds=(0, 1))


def test_errors_are_builtin_subclasses():
    assert issubclass(FactorError, ValueError)
    assert issubclass(DtypeError, TypeError)
    assert issubclass(SpatialDimsError, XsrError)


def test_lazy_torch_import():
    import subprocess
    import sys

    code = "import sys, xsr; xsr.list_methods(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_variables_on_one_horizontal_dim_are_dropped_with_a_warning():
    ds = lonlat_dataset()
    ds["zonal_mean"] = ds["sst"].mean("lon")
    with pytest.warns(UserWarning, match=r"\['zonal_mean'\].*dropped"):
        fine = ds.sr.downscale(factor=2)
    assert "zonal_mean" not in fine
    assert "sst" in fine


def test_dataarray_coords_do_not_point_at_missing_bounds():
    fine = lonlat_dataset()["sst"].sr.downscale(factor=2)
    assert "bounds" not in fine["lat"].attrs
    assert "bounds" not in fine["lon"].attrs


def test_coarsen_pad_on_curvilinear_warns_about_coordinates():
    ds = curvilinear_dataset(ny=10, nx=16)
    with pytest.warns(UserWarning, match="drops the 2-D coordinates"):
        out = ds.sr.coarsen(factor=4, boundary="pad")
    assert out["t"].shape == (3, 4)
    trimmed = ds.sr.coarsen(factor=4, boundary="trim")
    assert trimmed["lat"].shape == (2, 4)


def test_cell_areas_are_the_weights_of_coarsen_and_downscale():
    ds = lonlat_dataset(land=False)
    own = xsr.cell_areas(ds)
    fine = xsr.cell_areas(ds, factor=3)
    assert own.shape == (ds.sizes["lat"], ds.sizes["lon"])
    assert fine.shape == (ds.sizes["lat"] * 3, ds.sizes["lon"] * 3)
    # refined areas tile the coarse cells exactly
    np.testing.assert_allclose(fine.reshape(12, 3, 24, 3).sum(axis=(1, 3)), own, rtol=1e-12)
    # and they are the weights coarsen averages with
    back = ds.sr.downscale(factor=3).sr.coarsen(factor=3)
    np.testing.assert_allclose(back["sst"].values, ds["sst"].values, rtol=1e-12)
    # a CF area variable wins over the geometry
    ds["areacello"] = (("lat", "lon"), np.full(own.shape, 2.0))
    ds["sst"].attrs["cell_measures"] = "area: areacello"
    np.testing.assert_array_equal(xsr.cell_areas(ds), 2.0)
    np.testing.assert_allclose(xsr.cell_areas(ds, factor=2).reshape(12, 2, 24, 2).sum((1, 3)), 2.0)
    # no coordinates: uniform weights
    da = xr.DataArray(np.ones((4, 4)), dims=("y", "x"))
    assert xsr.cell_areas(da) is None


def test_grid_and_field_variables():
    from xsr.api import field_variables, grid_variables

    ds = xsr.testing.lonlat_dataset(12, 24, nt=2)
    assert sorted(field_variables(ds)) == ["pr", "sst"]
    aux = grid_variables(ds)
    assert aux and all(n in ds.variables for n in aux)
    assert not set(aux) & set(field_variables(ds))
    assert {ds["lat"].attrs["bounds"], ds["lon"].attrs["bounds"]} <= set(aux)


def test_other_coordinates_on_the_grid_are_dropped_with_a_warning():
    ds = lonlat_dataset(6, 8)
    ds = ds.assign_coords(depth=(("lat", "lon"), np.ones((6, 8)), {"units": "m"}))
    with pytest.warns(UserWarning, match=r"coordinates \['depth'\] lie on the horizontal grid"):
        out = ds.sr.downscale(factor=2)
    assert "depth" not in out.coords
    assert_conserves(out, ds, 2)
