"""Bad or awkward input gets a correct result or a clear error -- never a silent wrong number.

One test per class of defect found in the trust review (issue 9): user arrays aligned by
their labels, blocks with values but no weight, options validated instead of coerced,
generated names that would replace user data, lazy graphs that keep the options in force,
and the errors that used to come from numpy/torch/xarray internals.
"""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import xsr
from xsr.exceptions import (
    CoordinateError,
    InputValueError,
    OptionError,
    OutputSizeError,
    ShapeError,
    SpatialDimsError,
)
from xsr.testing import assert_conserves, curvilinear_dataset, lonlat_dataset


def _same(a, b) -> None:
    """Identical but for the time stamps of the history lines."""
    a, b = a.copy(), b.copy()
    a.attrs.pop("history", None)
    b.attrs.pop("history", None)
    xr.testing.assert_identical(a, b)


def _flip(da: xr.DataArray, dim: str) -> xr.DataArray:
    return da.isel({dim: slice(None, None, -1)})


# ----------------------------------------------------------------------------------------
# user arrays are aligned by their labels
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("grid_of", ["coarse", "fine"])
@pytest.mark.parametrize("dim", ["lat", "lon"])
def test_mask_stored_in_the_other_order_is_aligned(grid_of, dim):
    ds = lonlat_dataset(6, 8, land=False)
    f = 2
    target = ds if grid_of == "coarse" else ds.sr.downscale(factor=f)
    mask = xr.ones_like(target["sst"].isel(time=0, drop=True), dtype=bool)
    mask[{dim: 1}] = False  # one row/column off
    ref = ds.sr.downscale(factor=f, mask=mask)
    got = ds.sr.downscale(factor=f, mask=_flip(mask, dim))
    _same(got, ref)
    assert ref["sst"].isnull().any()
    expected = (
        ds.assign(sst=ds.sst.where(mask), pr=ds.pr.where(mask)) if grid_of == "coarse" else ds
    )
    assert_conserves(got, expected, f)


@pytest.mark.parametrize("dim", ["lat", "lon"])
def test_weights_stored_in_the_other_order_are_aligned(dim):
    ds = lonlat_dataset(6, 8)
    rng = np.random.default_rng(0)
    w = xr.DataArray(
        rng.uniform(1, 3, (6, 8)), dims=("lat", "lon"), coords={"lat": ds.lat, "lon": ds.lon}
    )
    ref = ds.sr.downscale(factor=2, weights=w)
    got = ds.sr.downscale(factor=2, weights=_flip(w, dim))
    _same(got, ref)
    fine_w = xr.DataArray(
        rng.uniform(1, 3, (12, 16)), dims=("lat", "lon"), coords={"lat": ref.lat, "lon": ref.lon}
    )
    a = ref.sr.coarsen(factor=2, weights=fine_w)
    b = ref.sr.coarsen(factor=2, weights=_flip(fine_w, dim))
    _same(a, b)


def test_mask_labels_in_another_longitude_convention_or_float32_are_matched():
    ds = lonlat_dataset(6, 8, land=False)  # longitudes 300.5 .. 307.5
    mask = xr.ones_like(ds["sst"].isel(time=0, drop=True), dtype=bool)
    mask[{"lon": 2}] = False
    ref = ds.sr.downscale(factor=2, mask=mask)
    west = mask.assign_coords(lon=mask.lon - 360.0).sortby("lon", ascending=False)
    _same(ds.sr.downscale(factor=2, mask=west), ref)
    f32 = mask.assign_coords(lat=mask.lat.astype("float32"), lon=mask.lon.astype("float32"))
    _same(ds.sr.downscale(factor=2, mask=f32), ref)


def test_mask_on_another_grid_is_refused():
    ds = lonlat_dataset(6, 8)
    mask = xr.ones_like(ds["sst"].isel(time=0, drop=True), dtype=bool)
    shifted = mask.assign_coords(lat=mask.lat + 0.5)
    with pytest.raises(CoordinateError, match=r"labels of mask do not match.*assign_coords"):
        ds.sr.downscale(factor=2, mask=shifted)


def test_curvilinear_mask_with_other_coordinates_is_refused():
    ds = curvilinear_dataset(6, 8)
    mask = ds["t"].notnull()
    ds.sr.downscale(factor=2, mask=mask)  # its own coordinates: fine
    with pytest.raises(CoordinateError, match="2-D coordinate 'lat' of mask differs"):
        ds.sr.downscale(factor=2, mask=mask.assign_coords(lat=mask.lat + 1.0))


def test_all_false_mask_is_an_error_that_says_so():
    ds = lonlat_dataset(6, 8)
    mask = xr.zeros_like(ds["sst"].isel(time=0, drop=True), dtype=bool)
    with pytest.raises(OptionError, match="mask is False everywhere"):
        ds.sr.downscale(factor=2, mask=mask)


# ----------------------------------------------------------------------------------------
# blocks with values but no weight
# ----------------------------------------------------------------------------------------
def _with_area(ds, area):
    ds = ds.copy()
    ds["area"] = (("lat", "lon"), area, {"units": "m2", "standard_name": "cell_area"})
    for v in ("sst", "pr"):
        ds[v].attrs["cell_measures"] = "area: area"
    return ds


def test_zero_area_under_data_is_refused():
    ds = lonlat_dataset(6, 8, land=False)
    area = np.ones((6, 8))
    area[2, 3] = 0.0
    with pytest.raises(InputValueError, match="hold values but every valid fine cell"):
        _with_area(ds, area).sr.downscale(factor=2)
    # zero area under NaN data is fine
    ok = ds.copy()
    ok["sst"] = ok["sst"].where((ok.lat != ok.lat[2]) | (ok.lon != ok.lon[3]))
    ok = _with_area(ok, area).drop_vars("pr")
    assert_conserves(ok.sr.downscale(factor=2), ok, 2)


def test_negative_or_infinite_area_is_refused():
    ds = lonlat_dataset(6, 8)
    area = np.ones((6, 8))
    area[1, 1] = -1.0
    with pytest.raises(
        InputValueError, match=r"'area' \(cell_measures\) must be finite and non-negative"
    ):
        _with_area(ds, area).sr.downscale(factor=2)
    with pytest.raises(InputValueError, match="weights must be finite and non-negative"):
        ds.sr.downscale(factor=2, weights=np.full((6, 8), np.inf))


@pytest.mark.parametrize("lazy", [False, True])
def test_coarsen_refuses_zero_weight_blocks_with_values(lazy):
    ds = lonlat_dataset(8, 8, land=False)
    w = np.ones((8, 8))
    w[0:2, 0:2] = 0.0
    obj = ds.chunk({"time": 1}) if lazy else ds
    with pytest.raises(InputValueError, match="hold values but all their cells have zero weight"):
        obj.sr.coarsen(factor=2, weights=w).compute()


def test_coarsen_takes_array_weights():
    ds = lonlat_dataset(8, 8)
    w = np.random.default_rng(0).uniform(1, 2, (8, 8))
    out = ds.sr.coarsen(factor=2, weights=w)
    x = ds["sst"].values
    num = np.nansum((x * w).reshape(2, 4, 2, 4, 2), axis=(2, 4))
    den = np.nansum((np.isfinite(x) * w).reshape(2, 4, 2, 4, 2), axis=(2, 4))
    with np.errstate(invalid="ignore"):
        np.testing.assert_allclose(out["sst"].values, num / np.where(den > 0, den, np.nan))


# ----------------------------------------------------------------------------------------
# options are validated, not coerced
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["no", 0, 1, "False", np.array([True])])
def test_periodic_must_be_a_boolean(value):
    ds = lonlat_dataset(6, 8)
    with pytest.raises(OptionError, match=r"periodic must be True or False \(or None\), got"):
        ds.sr.downscale(factor=2, periodic=value)


def test_time_is_not_a_horizontal_dimension():
    ds = lonlat_dataset(6, 8)
    with pytest.raises(
        SpatialDimsError,
        match=r"'time' holds datetime64.* values, which cannot be a horizontal axis",
    ):
        ds.sr.downscale(factor=2, dims=("time", "lon"))


@pytest.mark.parametrize("dtype", ["int32", "float16", "double"])
def test_dtype_must_be_float32_or_float64(dtype):
    ds = lonlat_dataset(6, 8)
    with pytest.raises(OptionError, match=r"dtype must be one of \[None, 'float32', 'float64'\]"):
        ds.sr.downscale(factor=2, dtype=dtype)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"members": 2.0}, "members must be an integer >= 2"),
        ({"members": True}, "members must be an integer >= 2"),
        ({"keep_members": "yes"}, "keep_members must be True or False"),
        ({"seed": -1}, "seed must be an integer >= 0"),
        ({"progress": 1}, r"progress must be True or False \(or None\)"),
    ],
)
def test_method_options_are_validated(options, match):
    ds = lonlat_dataset(6, 8)
    with pytest.raises(OptionError, match=match):
        ds.sr.downscale(factor=2, method="dip-ensemble", iterations=2, **options)


def test_boundary_and_device_are_validated():
    ds = lonlat_dataset(6, 8)
    with pytest.raises(OptionError, match="boundary must be one of 'exact', 'trim', 'pad'"):
        ds.sr.coarsen(factor=2, boundary="crop")
    with pytest.raises(OptionError, match="device must be"):
        ds.sr.downscale(factor=2, device="gpu")
    with pytest.raises(OptionError, match="device must be"):
        ds.sr.downscale(factor=2, device="cuda:x")


# ----------------------------------------------------------------------------------------
# generated names never replace user data
# ----------------------------------------------------------------------------------------
def test_ensemble_spread_may_not_replace_a_user_variable():
    ds = lonlat_dataset(6, 8)[["sst"]]
    ds["sst_std"] = ds["sst"] * 0 + 1.0
    with pytest.raises(OptionError, match=r"spread of 'sst' would be written to 'sst_std'"):
        ds.sr.downscale(factor=2, method="dip-ensemble", members=2, iterations=2, progress=False)
    ds2 = lonlat_dataset(6, 8)[["sst"]]
    ds2["sst_members"] = ds2["sst"].isel(time=0, drop=True)
    with pytest.raises(OptionError, match="members of 'sst' would be written to 'sst_members'"):
        ds2.sr.downscale(
            factor=2,
            method="dip-ensemble",
            members=2,
            iterations=2,
            keep_members=True,
            progress=False,
        )


def test_ensemble_spread_name_clash_between_variables():
    ds = lonlat_dataset(6, 8)[["sst"]]
    ds["sst_std"] = ds["sst"] + 1.0  # a field too: its spread would be sst_std_std
    with pytest.raises(OptionError, match="'sst_std'"):
        ds.sr.downscale(factor=2, method="dip-ensemble", members=2, iterations=2, progress=False)


# ----------------------------------------------------------------------------------------
# lazy results keep the options in force when they were built
# ----------------------------------------------------------------------------------------
def test_lazy_result_keeps_the_dtype_option_in_force_at_the_call():
    ds = lonlat_dataset(6, 8).chunk({"time": 1})
    with xsr.set_options(dtype="float32"):
        lazy = ds.sr.downscale(factor=2)
    assert lazy["sst"].dtype == np.float32
    out = lazy.compute()  # outside the with block
    assert out["sst"].dtype == np.float32
    with xsr.set_options(dtype="float32"):
        lazy64 = ds.sr.downscale(factor=2, dtype="float64")
    eager = ds.compute().sr.downscale(factor=2)
    with xsr.set_options(dtype="float32"):
        got = lazy64.compute()  # a later option does not change a built graph either
    assert got["sst"].dtype == np.float64
    xr.testing.assert_allclose(got, eager, rtol=0, atol=0)


def test_lazy_tiled_result_keeps_the_tile_size_in_force():
    ds = lonlat_dataset(8, 12).chunk({"time": 1, "lat": 4})
    with xsr.set_options(tile_size=8):
        lazy = ds.sr.downscale(factor=2)
    with xsr.set_options(tile_size=0 + 4):
        out = lazy.compute()
    assert_conserves(out, ds.compute(), 2)


# ----------------------------------------------------------------------------------------
# clear errors instead of internals
# ----------------------------------------------------------------------------------------
def test_empty_selection_is_named_as_such():
    ds = lonlat_dataset(6, 8).isel(time=slice(0, 0))
    with pytest.raises(InputValueError, match="'time' has length 0"):
        ds.sr.downscale(factor=2)


def test_entirely_nan_under_the_mask_is_named_as_such():
    ds = lonlat_dataset(6, 8)[["sst"]]
    mask = ds["sst"].isel(time=0, drop=True).isnull()  # True only on land
    with pytest.raises(InputValueError, match="entirely NaN where the mask is True"):
        ds.sr.downscale(factor=2, mask=mask)


def test_huge_factor_is_refused_before_allocating():
    ds = lonlat_dataset(6, 8)
    with pytest.raises(OutputSizeError, match=r"GiB in memory.*tile_size"):
        ds.sr.downscale(factor=100_000)


def test_shape_errors_name_what_is_allowed():
    ds = lonlat_dataset(6, 8)
    with pytest.raises(ShapeError, match=r"mask has shape \(5, 8\); allowed: \(6, 8\)"):
        ds.sr.downscale(factor=2, mask=np.ones((5, 8), bool))


# ----------------------------------------------------------------------------------------
# CF: grid-mapping variables are kept in every form real files use
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("form", ["data variable", "scalar coordinate", "dimension coordinate"])
def test_grid_mapping_variable_is_kept(form):
    ds = lonlat_dataset(6, 8)
    attrs = {"grid_mapping_name": "latitude_longitude", "semi_major_axis": 6378137.0}
    if form == "data variable":
        ds["crs"] = xr.DataArray(np.int32(0), attrs=attrs)
    elif form == "scalar coordinate":
        ds = ds.assign_coords(crs=xr.DataArray(np.int32(0), attrs=attrs))
    else:  # as gridMET stores it
        ds = ds.assign_coords(crs=xr.DataArray(np.array([3], np.uint16), dims="crs", attrs=attrs))
    for v in ("sst", "pr"):
        ds[v].attrs["grid_mapping"] = "crs"
    for out in (ds.sr.downscale(factor=2), ds.sr.downscale(factor=2).sr.coarsen(factor=2)):
        assert "crs" in out.variables
        assert out["crs"].attrs == attrs
        assert out["sst"].attrs["grid_mapping"] == "crs"
    da = ds["sst"]
    if "crs" in da.coords:
        assert "crs" in da.sr.downscale(factor=2).coords


# ----------------------------------------------------------------------------------------
# CF: range attributes stay true
# ----------------------------------------------------------------------------------------
def _ranged(valid_min=0.0):
    ds = lonlat_dataset(6, 8, land=False)[["pr"]]
    ds["pr"].attrs.update(valid_min=np.float64(valid_min), actual_range=[0.0, 9.0])
    return ds


def test_declared_valid_range_is_kept_true():
    ds = _ranged()
    fine = ds.sr.downscale(factor=4, method="bicubic")
    pr = fine["pr"]
    assert pr.attrs["xsr_conserve"] == "bounded"
    assert pr.attrs["xsr_bounds"] == "(0.0, None)"
    assert float(pr.min()) >= 0.0
    assert pr.attrs["valid_min"] == 0.0
    assert "actual_range" not in pr.attrs
    assert_conserves(fine, ds, 4)
    # plain additive bicubic leaves the range on this field
    plain = ds.drop_attrs().sr.downscale(factor=4, method="bicubic")
    assert float(plain["pr"].min()) < 0.0


def test_input_outside_its_declared_range_is_an_error():
    ds = _ranged(valid_min=0.5)
    with pytest.raises(InputValueError, match="declared valid range"):
        ds.sr.downscale(factor=2)


def test_range_attributes_dropped_where_the_operator_does_not_keep_them():
    ds = _ranged()
    ds["pr"].attrs["valid_max"] = np.float64(100.0)
    mult = ds.sr.downscale(factor=2, conserve="multiplicative")
    assert "valid_min" not in mult["pr"].attrs  # no upper guarantee: both go
    assert "valid_max" not in mult["pr"].attrs
    bounded = ds.sr.downscale(factor=2, conserve="bounded", bounds=(0, 50))
    assert bounded["pr"].attrs["valid_min"] == 0.0
    assert bounded["pr"].attrs["valid_max"] == 100.0


def test_select_variables_keeps_what_they_need():
    from xsr.cfgrid import select_variables

    ds = lonlat_dataset(6, 8)
    ds["crs"] = xr.DataArray(np.int32(0), attrs={"grid_mapping_name": "latitude_longitude"})
    ds["sst"].attrs["grid_mapping"] = "crs: lat lon"
    ds["sst_err"] = ds["sst"] * 0.1
    ds["sst"].attrs["ancillary_variables"] = "sst_err"
    out = select_variables(ds, ["sst"])
    assert set(out.data_vars) == {"sst", "crs", "sst_err", "lat_bnds", "lon_bnds"}
    with pytest.raises(OptionError, match=r"variables \['nope'\] are not in the input"):
        select_variables(ds, ["nope"])


@pytest.mark.parametrize(
    ("mask", "match"), [("land", "2-D DataArray or array"), (3, "got 3 \\(int\\)")]
)
def test_a_mask_that_is_not_an_array_is_named(mask, match):
    with pytest.raises(OptionError, match=match):
        lonlat_dataset(6, 8).sr.downscale(factor=2, mask=mask)
