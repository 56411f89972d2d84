"""Downscaling the real grids in ../shared/data (skipped when the folder is absent)."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from conftest import shared_file

from xsr.testing import assert_conserves


def _open(name: str) -> xr.Dataset:
    return xr.open_dataset(shared_file(name)).load()


def test_global_ssh_land_bounds_and_periodic():
    ds = _open("ssh_global_quarterdeg_20190223.nc")
    fine = ds.sr.downscale(factor=4, method="bicubic")
    assert fine["adt"].shape == (1, 2880, 5760)
    assert fine["adt"].attrs["standard_name"] == "sea_surface_height_above_geoid"
    assert fine["adt"].attrs["xsr_weights"] == "cell area (lonlat grid)"
    # fine bounds come from the file's bounds and tile the sphere
    lat_b = fine["lat_bnds"].values
    lon_b = fine["lon_bnds"].values
    assert lat_b[0, 0] == pytest.approx(-90.0)
    assert lat_b[-1, 1] == pytest.approx(90.0)
    assert lon_b[0, 0] == pytest.approx(0.0)
    assert lon_b[-1, 1] == pytest.approx(360.0)
    # NaN exactly under land, coarse means reproduced
    err = assert_conserves(fine, ds, 4, rtol=1e-12)
    assert err < 1e-12
    # the dateline is seamless: the jump between the last and first fine columns is no
    # larger than typical neighbour differences there
    a = fine["adt"].values[0]
    ok = np.isfinite(a[:, 0]) & np.isfinite(a[:, -1])
    wrap = np.abs(a[ok, 0] - a[ok, -1])
    inner = np.abs(a[ok, 1] - a[ok, 0])
    assert np.median(wrap) <= 2 * np.median(inner)


def test_euro_cordex_rotated_pole():
    ds = _open("tas_euro_cordex_rotated_pole.nc")
    fine = ds.sr.downscale(factor=2)
    assert fine["tas"].shape == (1, 1, 824, 848)
    assert fine["tas"].attrs["grid_mapping"] == "rotated_pole"
    assert "rotated_pole" in fine
    assert fine["tas"].attrs["xsr_weights"] == "cell area (rotated grid)"
    np.testing.assert_allclose(np.diff(fine["rlon"].values), 0.055, rtol=1e-4)
    xr.testing.assert_identical(fine["time_bnds"], ds["time_bnds"])
    assert_conserves(fine, ds, 2, rtol=2e-6)  # float32 data


def test_pop_displaced_pole_curvilinear():
    ds = _open("ocean_pop_curvilinear.nc")
    fine = ds.sr.downscale(factor=2)
    assert fine["t"].dims == ("nlat", "nlon")
    assert fine["lat2d"].shape == (768, 640)
    assert fine["t"].attrs["xsr_weights"] == "cell area (curvilinear grid)"
    bname = fine["lat2d"].attrs["bounds"]
    assert fine[bname].shape == (768, 640, 4)
    assert np.isfinite(fine["lat2d"]).all()
    assert float(np.abs(fine["lat2d"]).max()) <= 90.0
    assert_conserves(fine, ds, 2, rtol=2e-6)


@pytest.mark.parametrize(
    "kwargs", [{"conserve": "multiplicative"}, {"conserve": "bounded", "bounds": (0, None)}]
)
def test_stage_iv_precipitation_non_negative(kwargs):
    ds = _open("precip_stageiv_4km_2002030112.nc")
    ds = ds.isel(y=slice(0, 440), x=slice(0, 560))  # a quarter keeps the test fast
    fine = ds.sr.downscale(factor=2, method="bicubic", **kwargs)
    pr = fine["precipitation_amount"]
    assert float(pr.min()) >= 0.0
    assert_conserves(fine, ds, 2, rtol=2e-6)
    # additive bicubic would have produced negative precipitation here
    plain = ds.sr.downscale(factor=2, method="bicubic")
    assert float(plain["precipitation_amount"].min()) < 0.0


def test_qg_projected_float32():
    ds = _open("ssh_qg_256_train.nc").isel(time=slice(0, 2))
    fine = ds.sr.downscale(factor=4)
    assert fine["ssh"].dtype == np.float32
    assert fine["ssh"].attrs["xsr_weights"] == "cell area (projected grid)"
    assert_conserves(fine, ds, 4, rtol=2e-6)


def test_cnn_on_the_med_ssh_series(tmp_path):
    """A small network trained on real SSH with land (coastal crops), applied with tiles to
    other days: exact, NaN under land, tiled == untiled, and the model's checks on real
    metadata."""
    import xsr
    from xsr.exceptions import OptionError

    ds = _open("ssh_med_eighthdeg_2005AMJ.nc")[["adt"]].isel(time=slice(0, 12))
    ds["adt"] = ds["adt"].astype("float64")
    tm = xsr.train(
        ds.isel(time=slice(0, 6)), model="srcnn", factor=4, crop=32, epochs=1,
        steps_per_epoch=3, progress=False, device="cpu",
        model_options={"channels": (8, 4), "kernels": (3, 3, 3)},
    )  # fmt: skip
    assert tm.units == ds["adt"].attrs["units"]
    path = tm.save(tmp_path / "med.pt")
    coarse = xsr.coarsen(ds.isel(time=slice(6, 12)), factor=4)
    fine = coarse.sr.downscale(factor=4, method="cnn", model=str(path))
    tiled = coarse.sr.downscale(factor=4, method="cnn", model=str(path), tile_size=64)
    err = assert_conserves(fine, coarse, 4, rtol=1e-12)
    assert err < 1e-12
    np.testing.assert_allclose(tiled["adt"].values, fine["adt"].values, rtol=0, atol=1e-12)
    with pytest.raises(OptionError, match="does not match the trained model's factor"):
        coarse.sr.downscale(factor=8, method="cnn", model=str(path))
