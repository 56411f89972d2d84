"""xsr.metrics on fields: isotropic power spectra, the effective resolution, gradients and
geostrophic velocities, each against an analytic answer (a sinusoid, a power law, a white
noise floor, linear and Gaussian fields), on projected, latitude/longitude and index grids,
with NaN, errors, and dask laziness; and one real field (Mediterranean SSH)."""

from __future__ import annotations

import math

import dask
import numpy as np
import pytest
import xarray as xr
from conftest import shared_file

from xsr import metrics
from xsr.exceptions import CoordinateError, InputValueError, OptionError, ShapeError
from xsr.metrics._geometry import EARTH_RADIUS

G, OMEGA = 9.81, 7.2921e-5


class RaiseOnCompute:
    """A dask scheduler that fails the test if anything is computed."""

    def __call__(self, dsk, keys, **kwargs):
        raise AssertionError("dask computed something, but the call should stay lazy")


def _projected(values: np.ndarray, dx: float = 2000.0, units: str = "m") -> xr.DataArray:
    ny, nx = values.shape[-2:]
    scale = 1000.0 if units == "km" else 1.0
    dims = ("time", "y", "x")[-values.ndim :]
    return xr.DataArray(
        values,
        dims=dims,
        coords={
            "y": ("y", np.arange(ny) * dx / scale, {"units": units}),
            "x": ("x", np.arange(nx) * dx / scale, {"units": units}),
        },
        attrs={"units": "m"},
        name="ssh",
    )


def _lonlat(values: np.ndarray, lat: np.ndarray, lon: np.ndarray, units: str = "m"):
    dims = ("time", "lat", "lon")[-values.ndim :]
    return xr.DataArray(
        values,
        dims=dims,
        coords={
            "lat": ("lat", lat, {"units": "degrees_north", "standard_name": "latitude"}),
            "lon": ("lon", lon, {"units": "degrees_east", "standard_name": "longitude"}),
        },
        attrs={"units": units},
        name="ssh",
    )


def _power_law(n: int, beta: float, seed: int = 0, nt: int | None = None) -> np.ndarray:
    """A periodic random field whose isotropic spectrum goes as k**-beta (2-D PSD k**-(b+1))."""
    rng = np.random.default_rng(seed)
    k = np.hypot(np.fft.fftfreq(n)[:, None], np.fft.fftfreq(n)[None, :])
    k[0, 0] = np.inf
    shape = (n, n) if nt is None else (nt, n, n)
    phases = np.exp(2j * np.pi * rng.random(shape))
    f = np.real(np.fft.ifft2(k ** (-(beta + 1) / 2) * phases))
    return f / f.std(axis=(-2, -1), keepdims=True)


# ------------------------------------------------------------------------------------------
# power spectrum
# ------------------------------------------------------------------------------------------
def test_sinusoid_puts_its_variance_in_its_bin() -> None:
    n, dx = 64, 2000.0
    xx = np.arange(n) * dx
    f = np.broadcast_to(np.sin(2 * np.pi * 5 * xx / (n * dx)), (n, n))
    ps = metrics.power_spectrum(_projected(f), window=None)
    assert ps.dims == ("wavenumber",)
    assert ps.name == "power_spectrum"
    assert ps.attrs["units"] == "m2 km"
    assert ps["wavenumber"].attrs["units"] == "km-1"
    dk = float(ps.wavenumber[0])
    np.testing.assert_allclose(np.diff(ps.wavenumber), dk)
    assert dk == pytest.approx(1 / (n * dx / 1000))
    # all the variance 1/2 in the bin of wavelength 128/5 km, nothing elsewhere
    i = int(np.argmax(ps.values))
    assert float(ps.wavelength[i]) == pytest.approx(n * dx / 1000 / 5)
    assert float(ps[i]) * dk == pytest.approx(0.5, rel=1e-12)
    assert float(ps.sum()) * dk == pytest.approx(f.var(), rel=1e-12)
    # the Hann window spreads it over the neighbouring bins, keeping the total
    psh = metrics.power_spectrum(_projected(f))
    assert float(psh.sum()) * dk == pytest.approx(0.5, rel=1e-12)
    assert float(psh[i]) * dk == pytest.approx(1 / 3, rel=1e-9)
    # the same in km coordinates
    ps_km = metrics.power_spectrum(_projected(f, units="km"), window=None)
    xr.testing.assert_allclose(ps_km, ps)


@pytest.mark.parametrize("window", [None, "hann", "tukey"])
@pytest.mark.parametrize("beta", [2.0, 3.0])
def test_power_law_slope(window, beta: float) -> None:
    f = _power_law(256, beta)
    ps = metrics.power_spectrum(f, window=window)
    k = ps.wavenumber.values
    sel = (k > 0.02) & (k < 0.3)
    slope = np.polyfit(np.log(k[sel]), np.log(ps.values[sel]), 1)[0]
    assert slope == pytest.approx(-beta, abs=0.1)
    # a plain array counts in grid cells
    assert ps.wavenumber.attrs["units"] == "1"
    assert float(ps.wavenumber[0]) == pytest.approx(1 / 256)


def test_lonlat_spacing_at_the_mean_latitude() -> None:
    lat = 40.0 + 0.1 * np.arange(60)
    lon = 0.1 * np.arange(64)
    dx_km = EARTH_RADIUS / 1000 * math.radians(0.1) * math.cos(math.radians(lat.mean()))
    wavelength = 64 * dx_km / 8  # 8 waves across the box
    x = np.arange(64) * dx_km
    f = np.broadcast_to(np.cos(2 * np.pi * x / wavelength), (60, 64))
    ps = metrics.power_spectrum(_lonlat(f, lat, lon), window=None)
    i = int(np.argmax(ps.values))
    dk = float(ps.wavenumber[0])
    assert dk == pytest.approx(1 / (64 * dx_km))  # the coarser fundamental: x is shorter
    assert float(ps.wavenumber[i]) == pytest.approx(1 / wavelength, rel=1e-9)
    assert ps["wavelength"].attrs["units"] == "km"


def test_spectrum_keeps_other_dims_and_stays_lazy() -> None:
    f = _projected(_power_law(64, 3.0, nt=3))
    eager = metrics.power_spectrum(f)
    assert eager.dims == ("time", "wavenumber")
    for t in range(3):
        np.testing.assert_allclose(eager[t], metrics.power_spectrum(f.isel(time=t)))
    lazy_in = f.chunk({"time": 2, "y": 20})
    with dask.config.set(scheduler=RaiseOnCompute()):
        lazy = metrics.power_spectrum(lazy_in)
    assert lazy.chunks is not None
    xr.testing.assert_allclose(lazy.compute(), eager)


def test_spectrum_nan_policy_and_plane() -> None:
    f = _projected(_power_law(64, 3.0))
    g = f.copy()
    g[10:13, 20:24] = np.nan
    with pytest.raises(InputValueError, match="12 NaN cell"):
        metrics.power_spectrum(g)
    filled = metrics.power_spectrum(g, nan_policy="fill")
    full = metrics.power_spectrum(f)
    # a small hole changes the spectrum little (within 10 % at the large scales)
    np.testing.assert_allclose(filled[:10], full[:10], rtol=0.1)
    assert np.isnan(metrics.power_spectrum(f * np.nan, nan_policy="fill")).all()
    # a plane: removed by detrend="plane" (only round-off left), not by the mean
    yy, xx = np.meshgrid(np.arange(64.0), np.arange(64.0), indexing="ij")
    plane = _projected(0.3 * yy - 0.2 * xx + 4)
    assert float(metrics.power_spectrum(plane, detrend="plane").max()) < 1e-20
    assert float(metrics.power_spectrum(plane).max()) > 1


def test_spectrum_errors() -> None:
    f = _projected(_power_law(32, 3.0))
    with pytest.raises(OptionError, match="window must be"):
        metrics.power_spectrum(f, window="hamming")
    with pytest.raises(OptionError, match="nan_policy must be"):
        metrics.power_spectrum(f, nan_policy="drop")
    with pytest.raises(ShapeError, match="at least 4"):
        metrics.power_spectrum(f.isel(y=slice(0, 3)))
    uneven = f.assign_coords(x=("x", np.arange(32.0) ** 1.5 * 1000, {"units": "m"}))
    with pytest.raises(CoordinateError, match="not evenly spaced"):
        metrics.power_spectrum(uneven)
    # spacing= treats it as regular
    assert metrics.power_spectrum(uneven, spacing=(2000.0, 2000.0)).sizes["wavenumber"] == 16
    with pytest.raises(CoordinateError, match="units 'furlong'"):
        metrics.power_spectrum(f.assign_coords(x=f.x.assign_attrs(units="furlong")))
    curvi = xr.DataArray(
        f.values,
        dims=("j", "i"),
        coords={
            "lat": (("j", "i"), 40 + np.add.outer(np.arange(32.0), np.arange(32.0)) * 0.01),
            "lon": (("j", "i"), np.add.outer(-np.arange(32.0), np.arange(32.0)) * 0.01),
        },
    )
    curvi["lat"].attrs = {"units": "degrees_north", "standard_name": "latitude"}
    curvi["lon"].attrs = {"units": "degrees_east", "standard_name": "longitude"}
    with pytest.raises(CoordinateError, match="curvilinear"):
        metrics.power_spectrum(curvi)


# ------------------------------------------------------------------------------------------
# effective resolution
# ------------------------------------------------------------------------------------------
def test_effective_resolution_white_noise_floor() -> None:
    # truth spectrum A k^-3 against a flat error spectrum N: they cross at k* = (A / N)^(1/3)
    n = 256
    truth = _power_law(n, 3.0, seed=1, nt=4)
    ps_t = metrics.power_spectrum(truth, window=None).mean("dim_0")
    k = ps_t.wavenumber.values
    sel = (k > 0.01) & (k < 0.4)
    a = np.exp(np.mean(np.log(ps_t.values[sel] * k[sel] ** 3)))  # fitted amplitude
    # white noise of variance s^2 on the unit grid: N(k) = 2 pi k s^2 (the ring's length),
    # which meets A k^-3 at k* = (A / (2 pi s^2))^(1/4): pick s^2 for k* = 1/12 cells
    k_star = 1 / 12
    s2 = a / (2 * np.pi * k_star**4)
    noise = np.random.default_rng(2).normal(scale=math.sqrt(s2), size=truth.shape)
    got = metrics.effective_resolution(truth + noise, truth, window=None)
    assert isinstance(got, float)
    assert got == pytest.approx(1 / k_star, rel=0.15)


def test_effective_resolution_low_pass_cutoff_and_limits() -> None:
    n = 128
    truth = _power_law(n, 3.0, seed=4)
    kk = np.hypot(np.fft.fftfreq(n)[:, None], np.fft.fftfreq(n)[None, :])
    high = np.real(np.fft.ifft2(np.fft.fft2(truth) * (kk >= 20 / n)))
    # error = -2 x the scales shorter than n/20 cells, 0 at the longer ones
    est = _projected(truth - 2 * high)
    t = _projected(truth)
    lam = metrics.effective_resolution(est, t, window=None)
    assert lam.name == "effective_resolution"
    assert lam.attrs["units"] == "km"
    dx_km = 2.0
    assert n * dx_km / 20 <= float(lam) <= n * dx_km / 19
    # never exceeding: NaN; exceeding at once: inf
    assert math.isnan(float(metrics.effective_resolution(t * 1.001, t)))
    assert math.isinf(float(metrics.effective_resolution(-3 * t, t)))


def test_effective_resolution_dims_and_dask() -> None:
    truth = _projected(_power_law(64, 3.0, seed=3, nt=3))
    est = truth + np.random.default_rng(0).normal(scale=0.3, size=truth.shape)
    one = metrics.effective_resolution(est, truth)
    assert one.dims == ()
    per = metrics.effective_resolution(est, truth, dim=[])
    assert per.dims == ("time",)
    assert np.isfinite(per).all()
    with dask.config.set(scheduler=RaiseOnCompute()):
        lazy = metrics.effective_resolution(est.chunk({"time": 1}), truth.chunk({"time": 2}))
    assert lazy.chunks is not None or lazy.ndim == 0
    assert float(lazy) == pytest.approx(float(one), rel=1e-12)
    with pytest.raises(OptionError, match="non-horizontal"):
        metrics.effective_resolution(est, truth, dim="x")


# ------------------------------------------------------------------------------------------
# gradients
# ------------------------------------------------------------------------------------------
def test_gradient_projected_exact_for_linear_and_quadratic() -> None:
    yy, xx = np.meshgrid(np.arange(20) * 500.0, np.arange(30) * 500.0, indexing="ij")
    f = _projected(3e-3 * xx + 1e-7 * yy**2, dx=500.0)
    gx, gy = metrics.gradient(f)
    assert gx.dims == f.dims and gx.name == "dssh_dx" and gy.name == "dssh_dy"
    assert gx.attrs["units"] == "m m-1"
    np.testing.assert_allclose(gx, 3e-3, rtol=1e-10)
    # centred differences are exact for a quadratic inside; one-sided at the edges
    np.testing.assert_allclose(gy[1:-1], 2e-7 * yy[1:-1], rtol=1e-10)
    xr.testing.assert_identical(gx.coords.to_dataset(), f.coords.to_dataset())


def test_gradient_lonlat_metric() -> None:
    lat = np.linspace(20, 60, 41)
    lon = np.linspace(350, 370, 21) % 360  # across the 0 meridian
    lam = np.deg2rad(np.unwrap(lon, period=360))
    phi = np.deg2rad(lat)
    f = _lonlat(EARTH_RADIUS * (phi[:, None] + 2 * lam[None, :]), lat, lon)
    gx, gy = metrics.gradient(f)
    np.testing.assert_allclose(gy, 1.0, rtol=1e-9)
    np.testing.assert_allclose(gx, 2 / np.cos(phi)[:, None] * np.ones((1, 21)), rtol=1e-9)
    # plain arrays count in cells; spacing= in metres
    px, py = metrics.gradient(np.outer(np.arange(5.0), np.ones(6)))
    np.testing.assert_allclose(py, 1.0)
    np.testing.assert_allclose(px, 0.0)
    px, py = metrics.gradient(np.outer(np.arange(5.0), np.ones(6)), spacing=(10.0, 1.0))
    np.testing.assert_allclose(py, 0.1)


def test_gradient_nan_and_dask() -> None:
    f = _projected(_power_law(24, 2.0, nt=2))
    g = f.copy()
    g[0, 5, 5] = np.nan
    gx, gy = metrics.gradient(g)
    assert np.isnan(gx[0, 5, 4]) and np.isnan(gx[0, 5, 6]) and np.isfinite(gx[0, 4, 5])
    assert np.isnan(gy[0, 4, 5]) and np.isnan(gy[0, 6, 5]) and np.isfinite(gy[0, 5, 4])
    with dask.config.set(scheduler=RaiseOnCompute()):
        lx, ly = metrics.gradient(f.chunk({"y": 7, "x": 10}))
        err = metrics.gradient_error(f.chunk({"time": 1}) * 1.1, f)
    assert lx.chunks is not None and err.chunks is not None
    ex, ey = metrics.gradient(f)
    xr.testing.assert_allclose(lx.compute(), ex)
    xr.testing.assert_allclose(ly.compute(), ey)
    assert float(err) == pytest.approx(0.1 * math.sqrt(float((ex**2 + ey**2).mean())))


def test_gradient_error_by_hand() -> None:
    rng = np.random.default_rng(0)
    t = _projected(_power_law(20, 2.0, nt=2), dx=100.0)
    e = t + 0.01 * rng.normal(size=t.shape)
    gy_e, gx_e = np.gradient(e.values, 100.0, axis=(1, 2))
    gy_t, gx_t = np.gradient(t.values, 100.0, axis=(1, 2))
    sq = (gx_e - gx_t) ** 2 + (gy_e - gy_t) ** 2
    got = metrics.gradient_error(e, t)
    assert got.name == "gradient_rmse"
    assert float(got) == pytest.approx(math.sqrt(sq.mean()), rel=1e-10)
    per = metrics.gradient_error(e, t, dim=["y", "x"])
    np.testing.assert_allclose(per, np.sqrt(sq.mean(axis=(1, 2))), rtol=1e-10)
    w = np.linspace(1, 2, 20)[:, None]
    ww = np.broadcast_to(w, sq.shape)
    assert float(metrics.gradient_error(e, t, weights=w)) == pytest.approx(
        math.sqrt((sq * ww).sum() / ww.sum()), rel=1e-10
    )
    assert metrics.gradient_error(e.values, t.values) == pytest.approx(
        math.sqrt(
            np.mean(
                np.sum(
                    [
                        (a - b) ** 2
                        for a, b in zip(
                            np.gradient(e.values, axis=(1, 2)), np.gradient(t.values, axis=(1, 2))
                        )
                    ],
                    axis=0,
                )
            )
        ),
        rel=1e-10,
    )


# ------------------------------------------------------------------------------------------
# geostrophic velocity
# ------------------------------------------------------------------------------------------
def _eddy(lat: np.ndarray, lon: np.ndarray, amp: float = 0.3, s: float = 1.5):
    """A Gaussian eddy (in degrees) and its analytic geostrophic velocity."""
    p, q = np.meshgrid(lat, lon, indexing="ij")
    eta = amp * np.exp(-((p - 35) ** 2 + (q - 15) ** 2) / s**2)
    deta_dlat = eta * (-2 * (p - 35) / s**2) * 180 / np.pi  # per radian
    deta_dlon = eta * (-2 * (q - 15) / s**2) * 180 / np.pi
    f = 2 * OMEGA * np.sin(np.deg2rad(p))
    u = -G / f * deta_dlat / EARTH_RADIUS
    v = G / f * deta_dlon / (EARTH_RADIUS * np.cos(np.deg2rad(p)))
    return eta, u, v


def test_geostrophic_velocity_of_an_analytic_eddy() -> None:
    lat, lon = np.arange(30, 40.001, 0.05), np.arange(10, 20.001, 0.05)
    eta, u_ref, v_ref = _eddy(lat, lon)
    u, v = metrics.geostrophic_velocity(_lonlat(eta, lat, lon))
    assert u.attrs["units"] == "m s-1" and u.name == "ug" and v.name == "vg"
    inner = (slice(1, -1), slice(1, -1))
    scale = np.abs(u_ref).max()
    # second-order differences: an error of about (h / s)^2 = 1e-3 of the peak
    np.testing.assert_allclose(u.values[inner], u_ref[inner], atol=2e-3 * scale)
    np.testing.assert_allclose(v.values[inner], v_ref[inner], atol=2e-3 * scale)
    # in cm, the same velocities
    u_cm, _ = metrics.geostrophic_velocity(_lonlat(100 * eta, lat, lon, units="cm"))
    xr.testing.assert_allclose(u_cm, u)
    with pytest.raises(InputValueError, match="units 'K'"):
        metrics.geostrophic_velocity(_lonlat(eta, lat, lon, units="K"))
    # error: the velocity of the difference
    est = _lonlat(eta * 1.1, lat, lon)
    err = metrics.geostrophic_velocity_error(est, _lonlat(eta, lat, lon))
    ue, ve = metrics.geostrophic_velocity(est)
    assert float(err) == pytest.approx(
        float(np.sqrt(((ue - u) ** 2 + (ve - v) ** 2).mean())), rel=1e-10
    )
    assert err.name == "geostrophic_velocity_rmse"


def test_geostrophic_velocity_masks_the_equator() -> None:
    lat, lon = np.arange(-10.0, 10.01, 0.5), np.arange(0.0, 5.0, 0.5)
    eta = np.outer(np.cos(np.deg2rad(lat)), np.ones(lon.size))
    u, _ = metrics.geostrophic_velocity(_lonlat(eta, lat, lon))
    near = np.abs(lat) < 5
    assert np.isnan(u.values[near]).all()
    assert np.isfinite(u.values[~near][1:-1]).all()
    u3, _ = metrics.geostrophic_velocity(_lonlat(eta, lat, lon), min_latitude=3.0)
    assert np.isfinite(u3.values[np.abs(lat) >= 3]).all()
    with pytest.raises(InputValueError, match="within 20 degrees of the equator"):
        metrics.geostrophic_velocity(_lonlat(eta, lat, lon), min_latitude=20.0)
    with pytest.raises(OptionError, match="min_latitude must be"):
        metrics.geostrophic_velocity(_lonlat(eta, lat, lon), min_latitude=-1)


def test_geostrophic_velocity_needs_true_latitudes() -> None:
    eta = _power_law(16, 3.0)
    with pytest.raises(InputValueError, match="plain array"):
        metrics.geostrophic_velocity(eta)
    with pytest.raises(CoordinateError, match="true latitude"):
        metrics.geostrophic_velocity(_projected(eta))
    # a projected grid with 2-D latitudes: f from them
    proj = _projected(eta, dx=5000.0)
    lat2 = 40 + np.outer(np.arange(16.0), np.ones(16)) * 5000 / 111_195
    proj = proj.assign_coords(
        lat=(("y", "x"), lat2, {"units": "degrees_north", "standard_name": "latitude"})
    )
    u, v = metrics.geostrophic_velocity(proj)
    gx, gy = metrics.gradient(proj)
    f = 2 * OMEGA * np.sin(np.deg2rad(lat2))
    np.testing.assert_allclose(u, -G / f * gy.values, rtol=1e-12)
    np.testing.assert_allclose(v, G / f * gx.values, rtol=1e-12)


def test_geostrophic_velocity_stays_lazy() -> None:
    lat, lon = np.arange(30, 40.001, 0.25), np.arange(10, 20.001, 0.25)
    eta, _, _ = _eddy(lat, lon)
    t = _lonlat(np.stack([eta, 0.9 * eta]), lat, lon)
    with dask.config.set(scheduler=RaiseOnCompute()):
        u, _ = metrics.geostrophic_velocity(t.chunk({"lat": 15}))
        err = metrics.geostrophic_velocity_error(t.chunk({"time": 1}) + 0.01 * t, t, dim="lat")
    assert u.chunks is not None and err.chunks is not None
    ue, _ = metrics.geostrophic_velocity(t)
    xr.testing.assert_allclose(u.compute(), ue)
    assert err.dims == ("time", "lon")


# ------------------------------------------------------------------------------------------
# a real field
# ------------------------------------------------------------------------------------------
def test_real_ssh_spectrum_and_effective_resolution() -> None:
    import xsr

    ds = xr.open_dataset(shared_file("ssh_med_eighthdeg_2005AMJ.nc"))
    # an open-sea box of the Ionian Sea, no land: 32 x 64 cells of 1/8 degree
    box = ds["adt"].isel(time=slice(0, 4)).sel(latitude=slice(32.8, 36.7))
    box = box.sel(longitude=slice(13.4, 21.35)).load()
    assert box.shape == (4, 32, 64)
    assert box.notnull().all()
    ps = metrics.power_spectrum(box)
    assert ps.dims == ("time", "wavenumber")
    assert np.isfinite(ps).all() and (ps > 0).all()
    # decreasing with wavenumber: the large scales hold most of the variance
    assert float(ps.mean("time")[0]) > 10 * float(ps.mean("time")[-1])
    coarse = box.sr.coarsen(factor=4)
    fine = coarse.sr.downscale(factor=4, method="bicubic")
    lam = metrics.effective_resolution(fine, box)
    # bicubic from 1/2 degree resolves scales longer than a few coarse cells, not the finest
    dx_km = 0.125 * 111.2 * math.cos(math.radians(35))
    assert 2 * dx_km < float(lam) < 64 * dx_km
    u, v = metrics.geostrophic_velocity(box)
    speed = np.hypot(u, v)
    assert 0.01 < float(speed.median()) < 1.0  # m/s: a typical surface current
    assert float(metrics.geostrophic_velocity_error(fine, box)) > 0
    assert float(metrics.crps(fine, box, weights="area")) == pytest.approx(
        metrics.mae(fine, box, weights=np.broadcast_to(xsr.cell_areas(box), box.shape)),
        rel=1e-10,
    )
