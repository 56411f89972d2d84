"""Guides (``guide=``): brought onto the output grid, aligned, filled, tiled, dask, errors.

A test method that adds its guide to bicubic (``GuideEcho``) shows what the array code
receives; every result still conserves exactly.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

import xsr
from xsr.exceptions import CoordinateError, MethodError, OptionError, ShapeError
from xsr.methods.base import Method
from xsr.methods.interp import Bicubic
from xsr.testing import assert_conserves, curvilinear_dataset, lonlat_dataset


class GuideEcho(Method):
    """bicubic + 0.5 * the first guide (a test method)."""

    name = "guide-echo"
    halo = 2
    uses_guide = True

    def upscale(self, x, factor, **context):
        g = context["guide"]
        assert g.shape[:-3] == x.shape[:-2]
        assert g.shape[-2:] == (x.shape[-2] * factor, x.shape[-1] * factor)
        assert torch.isfinite(g).all()
        return Bicubic().upscale(x, factor) + 0.5 * g[..., 0, :, :]


@pytest.fixture(autouse=True, scope="module")
def _echo():
    from xsr.methods import registry

    xsr.register_method("guide-echo", GuideEcho, overwrite=True)
    yield
    registry._REGISTERED.pop("guide-echo", None)


def _ds(ny=8, nx=12, nt=2):
    return lonlat_dataset(ny, nx, nt=nt, land=False)[["sst"]]


def _fine_guide(ds, f, seed=0):
    fine = ds.sr.downscale(factor=f, method="nearest", conserve=None)
    rng = np.random.default_rng(seed)
    vals = rng.normal(size=(fine.sizes["lat"], fine.sizes["lon"]))
    return xr.DataArray(
        vals, dims=("lat", "lon"), coords={"lat": fine.lat.values, "lon": fine.lon.values},
        name="elev", attrs={"units": "m"},
    )  # fmt: skip


def _no_guide_result(ds, f, guide_on_fine):
    """What GuideEcho must give: bicubic + 0.5 * guide, then enforced."""
    from xsr.conserve import enforce

    bic = ds.sr.downscale(factor=f, method="bicubic", conserve=None)
    g = guide_on_fine.transpose("lat", "lon").values
    w = xsr.cell_areas(ds, factor=f)
    y = bic["sst"].values + 0.5 * g
    return enforce(y, ds["sst"].values, f, "additive", weights=w)


def test_guide_on_the_output_grid_in_any_order():
    ds, f = _ds(), 2
    guide = _fine_guide(ds, f)
    a = ds.sr.downscale(factor=f, method="guide-echo", guide=guide)
    b = ds.sr.downscale(
        factor=f, method="guide-echo", guide=guide.isel(lat=slice(None, None, -1)).T
    )
    np.testing.assert_array_equal(a["sst"].values, b["sst"].values)
    np.testing.assert_allclose(a["sst"].values, _no_guide_result(ds, f, guide), atol=1e-12)
    assert "elev: on the output grid" in a["sst"].attrs["xsr_guide"]
    assert_conserves(a, ds, f)
    da = ds["sst"].sr.downscale(factor=f, method="guide-echo", guide=guide)
    np.testing.assert_array_equal(da.values, a["sst"].values)
    assert_conserves(da, ds["sst"], f)


def test_guide_on_a_finer_grid_is_block_averaged():
    ds, f, k = _ds(), 2, 3
    fine = _fine_guide(ds, f)
    finer = _fine_guide(ds, f * k, seed=1)
    out = ds.sr.downscale(factor=f, method="guide-echo", guide=finer)
    # the expected guide: area-weighted 3 x 3 block means of the finer guide
    lat = finer.lat.values
    w = np.abs(np.sin(np.deg2rad(lat + 1 / 12)) - np.sin(np.deg2rad(lat - 1 / 12)))
    wv = w[:, None] * np.ones(finer.sizes["lon"])[None, :]
    num = (finer.values * wv).reshape(16, k, 24, k).sum(axis=(1, 3))
    den = wv.reshape(16, k, 24, k).sum(axis=(1, 3))
    expect = xr.DataArray(num / den, dims=("lat", "lon"), coords=fine.coords)
    np.testing.assert_allclose(out["sst"].values, _no_guide_result(ds, f, expect), atol=1e-12)
    assert "conservative 3 x 3 block mean" in out["sst"].attrs["xsr_guide"]
    assert_conserves(out, ds, f)


def test_guide_on_another_grid_is_interpolated_and_must_cover():
    ds, f = _ds(), 2
    lat = np.linspace(29.0, 40.0, 23)
    lon = np.linspace(299.0, 313.0, 31)
    gg = xr.DataArray(
        np.add.outer(lat, lon * 0.1), dims=("lat", "lon"), coords={"lat": lat, "lon": lon},
        name="elev",
    )  # fmt: skip
    out = ds.sr.downscale(factor=f, method="guide-echo", guide=gg)
    fine = ds.sr.downscale(factor=f, method="nearest", conserve=None)
    expect = fine.lat.values[:, None] + 0.1 * fine.lon.values[None, :]  # linear: exact
    exp = xr.DataArray(expect, dims=("lat", "lon"), coords={"lat": fine.lat, "lon": fine.lon})
    np.testing.assert_allclose(out["sst"].values, _no_guide_result(ds, f, exp), atol=1e-9)
    assert "bilinear interpolation" in out["sst"].attrs["xsr_guide"]
    assert_conserves(out, ds, f)
    small = gg.sel(lat=slice(31, 40))
    with pytest.raises(CoordinateError, match=r"guide 'elev' covers lat .* pass a guide that"):
        ds.sr.downscale(factor=f, method="guide-echo", guide=small)


def test_guide_longitudes_in_another_convention():
    ds, f = _ds(), 2
    guide = _fine_guide(ds, f)
    west = guide.assign_coords(lon=guide.lon - 360.0)
    a = ds.sr.downscale(factor=f, method="guide-echo", guide=guide)
    b = ds.sr.downscale(factor=f, method="guide-echo", guide=west)
    np.testing.assert_allclose(a["sst"].values, b["sst"].values, atol=1e-12)


def test_dynamic_guide_follows_the_time_labels():
    ds, f = _ds(nt=3), 2
    g0 = _fine_guide(ds, f)
    dyn = xr.concat([g0 * (k + 1) for k in range(3)], dim="time").assign_coords(time=ds.time.values)
    out = ds.sr.downscale(factor=f, method="guide-echo", guide=dyn.isel(time=[2, 0, 1]))
    for k in range(3):
        one = ds.isel(time=[k]).sr.downscale(factor=f, method="guide-echo", guide=g0 * (k + 1))
        np.testing.assert_allclose(out["sst"].isel(time=k).values, one["sst"].values[0], atol=1e-12)
    assert_conserves(out, ds, f)
    with pytest.raises(ShapeError, match="lacks 1 of the data's 'time' labels"):
        ds.sr.downscale(factor=f, method="guide-echo", guide=dyn.isel(time=[0, 1]))
    with pytest.raises(ShapeError, match=r"dims \['depth'\] that the data do not have"):
        ds.sr.downscale(factor=f, method="guide-echo", guide=g0.expand_dims(depth=2))


def test_missing_guide_cells_are_filled_and_counted():
    ds, f = _ds(), 2
    guide = _fine_guide(ds, f)
    holes = guide.where(guide.lat < 33)
    out = ds.sr.downscale(factor=f, method="guide-echo", guide=holes)
    assert np.isfinite(out["sst"].values).all()
    assert "missing cells filled" in out["sst"].attrs["xsr_guide"]
    assert_conserves(out, ds, f)
    with pytest.raises(OptionError, match="entirely NaN"):
        ds.sr.downscale(factor=f, method="guide-echo", guide=guide * np.nan)


def test_several_guides_and_their_names():
    ds, f = _ds(), 2
    a, b = _fine_guide(ds, f), _fine_guide(ds, f, seed=3).rename("sst_hr")
    out = ds.sr.downscale(factor=f, method="guide-echo", guide=xr.merge([a, b]))
    out2 = ds.sr.downscale(factor=f, method="guide-echo", guide=[a, b])
    np.testing.assert_array_equal(out["sst"].values, out2["sst"].values)
    assert "elev:" in out["sst"].attrs["xsr_guide"]
    assert "sst_hr:" in out["sst"].attrs["xsr_guide"]
    with pytest.raises(OptionError, match="two guides are named 'elev'"):
        ds.sr.downscale(factor=f, method="guide-echo", guide=[a, a])


def test_a_method_without_guides_refuses_one():
    ds = _ds()
    with pytest.raises(MethodError, match="does not use a guide"):
        ds.sr.downscale(factor=2, method="bicubic", guide=_fine_guide(ds, 2))
    with pytest.raises(OptionError, match="guide must be a DataArray"):
        ds.sr.downscale(factor=2, method="guide-echo", guide="elevation.nc")


@pytest.mark.parametrize("tiling", ["tile_size", "dask-space", "dask-time"])
def test_guides_through_tiles_and_dask(tiling):
    ds, f = _ds(ny=12, nx=16, nt=2), 2
    guide = _fine_guide(ds, f)
    dyn = xr.concat([guide, guide * 2], dim="time").assign_coords(time=ds.time.values)
    for g in (guide, dyn):
        ref = ds.sr.downscale(factor=f, method="guide-echo", guide=g)
        if tiling == "tile_size":
            out = ds.sr.downscale(factor=f, method="guide-echo", guide=g, tile_size=8)
        elif tiling == "dask-space":
            out = ds.chunk({"lat": 6, "lon": 8}).sr.downscale(
                factor=f, method="guide-echo", guide=g.chunk({"lat": 7})
            )
            assert out["sst"].chunks is not None
        else:
            out = ds.chunk({"time": 1}).sr.downscale(factor=f, method="guide-echo", guide=g)
            assert out["sst"].chunks is not None
        np.testing.assert_allclose(out["sst"].values, ref["sst"].values, atol=1e-12)
        assert_conserves(out.compute(), ds, f)


def test_guide_on_a_periodic_grid():
    ds = lonlat_dataset(6, 12, nt=1, land=False, global_grid=True)[["sst"]]
    guide = _fine_guide(ds, 2)
    out = ds.sr.downscale(factor=2, method="guide-echo", guide=guide)
    tiled = ds.sr.downscale(factor=2, method="guide-echo", guide=guide, tile_size=6)
    np.testing.assert_allclose(out["sst"].values, tiled["sst"].values, atol=1e-12)
    assert_conserves(out, ds, 2)


def test_guide_on_a_curvilinear_grid():
    ds = curvilinear_dataset(6, 8)
    lat = np.linspace(35, 50, 40)
    lon = np.linspace(-180, 180, 361)
    gg = xr.DataArray(
        np.add.outer(lat, 0 * lon), dims=("lat", "lon"), coords={"lat": lat, "lon": lon},
        attrs={"units": "m"}, name="elev",
    )  # fmt: skip
    gg["lat"].attrs["units"] = "degrees_north"
    gg["lon"].attrs["units"] = "degrees_east"
    out = ds.sr.downscale(factor=2, method="guide-echo", guide=gg)
    assert "bilinear interpolation" in out["t"].attrs["xsr_guide"]
    assert_conserves(out, ds, 2)
    # on the output grid itself (by its 2-D coordinates)
    fine = ds.sr.downscale(factor=2, method="nearest", conserve=None)
    same = fine["lat"].rename("elev") * 1.0
    out2 = ds.sr.downscale(factor=2, method="guide-echo", guide=same)
    assert "on the output grid" in out2["t"].attrs["xsr_guide"]
    np.testing.assert_allclose(out2["t"].values, out["t"].values, atol=1e-6)


def test_a_global_guide_in_another_convention_reaches_the_seam():
    ds = lonlat_dataset(6, 12, nt=1, land=False, global_grid=True)[["sst"]]  # 15 .. 345
    lon = np.arange(-180.0, 180.0, 7.5)  # global, -180 .. 172.5
    lat = np.linspace(-90, 90, 25)
    gg = xr.DataArray(
        np.cos(np.deg2rad(lon))[None, :] + 0 * lat[:, None], dims=("lat", "lon"),
        coords={"lat": lat, "lon": lon}, name="elev",
    )  # fmt: skip
    out = ds.sr.downscale(factor=4, method="guide-echo", guide=gg)
    assert "bilinear interpolation" in out["sst"].attrs["xsr_guide"]
    assert_conserves(out, ds, 4)


def test_cli_and_batch_take_guides(tmp_path):
    from xsr.cli import main

    ds, f = _ds(), 2
    guide = _fine_guide(ds, f)
    ds.to_netcdf(tmp_path / "in.nc")
    guide.to_dataset().to_netcdf(tmp_path / "elev.nc")
    ref = ds.sr.downscale(factor=f, method="guide-echo", guide=guide)
    assert (
        main(
            [
                "downscale",
                str(tmp_path / "in.nc"),
                str(tmp_path / "out.nc"),
                "-f",
                "2",
                "-m",
                "guide-echo",
                "--guide",
                f"{tmp_path / 'elev.nc'}:elev",
            ]
        )
        == 0
    )
    with xr.open_dataset(tmp_path / "out.nc") as out:
        np.testing.assert_allclose(out["sst"].values, ref["sst"].values, atol=1e-12)
        assert "elev:" in out["sst"].attrs["xsr_guide"]
    # a batch job (zarr, resumable): the guide is part of the configuration
    args = ["downscale", str(tmp_path / "in.nc"), str(tmp_path / "out.zarr"), "-f", "2",
            "-m", "guide-echo", "--guide", str(tmp_path / "elev.nc"), "--no-progress"]  # fmt: skip
    assert main(args) == 0
    with xr.open_zarr(tmp_path / "out.zarr") as out:
        np.testing.assert_allclose(out["sst"].values, ref["sst"].values, atol=1e-12)
        assert '"guide"' in out.attrs["xsr_config"]
    other = [a if a != str(tmp_path / "elev.nc") else f"{tmp_path / 'elev.nc'}:elev" for a in args]
    assert main([*other, "--resume"]) == 2  # another guide spec: not the same job
    assert main(["downscale", str(tmp_path / "in.nc"), str(tmp_path / "o2.nc"), "-m",
                 "guide-echo", "--guide", f"{tmp_path / 'elev.nc'}:nope"]) == 2  # fmt: skip


def test_regression_needs_a_guide_before_anything_runs():
    ds = _ds().chunk({"time": 1})
    with pytest.raises(MethodError, match="needs a guide"):
        ds.sr.downscale(factor=2, method="regression")


def test_regression_through_the_accessor_conserves_and_uses_the_guide():
    ds, f = _ds(ny=16, nx=24, nt=1), 2
    guide = _fine_guide(ds, f)
    # a field whose sub-cell structure is the guide's: regression must find it
    fine = ds.sr.downscale(factor=f, method="bicubic")["sst"] + 2.0 * guide
    coarse = fine.to_dataset(name="sst").sr.coarsen(factor=f)
    coarse["sst"].attrs["units"] = "K"
    out = coarse.sr.downscale(factor=f, method="regression", guide=guide)
    bic = coarse.sr.downscale(factor=f, method="bicubic")
    err = float(np.sqrt(((out["sst"] - fine) ** 2).mean()))
    err_bic = float(np.sqrt(((bic["sst"] - fine) ** 2).mean()))
    assert err < 0.5 * err_bic
    assert_conserves(out, coarse, f)
    shuffled = guide.copy(
        data=np.random.default_rng(5).permutation(guide.values.ravel()).reshape(guide.shape)
    )
    noise = coarse.sr.downscale(factor=f, method="regression", guide=shuffled)
    err_noise = float(np.sqrt(((noise["sst"] - fine) ** 2).mean()))
    assert err_noise <= 1.02 * err_bic
    assert_conserves(noise, coarse, f)
