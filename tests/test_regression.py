"""The guided regression method (``method="regression"``): conservation, shapes, NaN,
several guides, skill on fields that a guide explains, and no harm from guides that do not."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from conftest import shared_file

from xsr.conserve import block_mean, conservation_error, upsample
from xsr.exceptions import MethodError, OptionError
from xsr.methods import downscale_array, get_method, list_methods
from xsr.methods.regression import Regression, regression_downscale


def _smooth(shape, scale, seed):
    """A random field of unit variance with features of about ``scale`` cells (FFT filter)."""
    rng = np.random.default_rng(seed)
    ny, nx = shape[-2:]
    ky = np.fft.fftfreq(ny)[:, None]
    kx = np.fft.fftfreq(nx)[None, :]
    filt = np.exp(-0.5 * (ky**2 + kx**2) * (2 * np.pi * scale) ** 2)
    a = np.fft.ifft2(np.fft.fft2(rng.normal(size=shape)) * filt).real
    return (a - a.mean()) / a.std()


def _twin(n=192, f=8, b=-0.0065, seed=0):
    """Truth = a large-scale field + b * a terrain-like guide; its coarse means."""
    elev = 600.0 * _smooth((n, n), 3.0, seed) + 1500.0
    large = 4.0 * _smooth((n, n), 25.0, seed + 1) + 280.0
    truth = large + b * elev
    return truth, block_mean(truth, f), elev


def _rmse(a, b):
    ok = np.isfinite(a) & np.isfinite(b)
    return float(np.sqrt(np.mean((a[ok] - b[ok]) ** 2)))


def test_registered_and_declares_a_guide():
    assert "regression" in list_methods()
    m = get_method("regression")
    assert isinstance(m, Regression)
    assert m.uses_guide and m.requires_guide and m.handles_nan and not m.stochastic
    assert m.options() == {
        "fit": "detail",
        "mode": "auto",
        "radius": None,
        "shrinkage": "cv",
        "ridge": 1e-3,
        "significance": 3.0,
        "min_cells": 24,
    }


def test_without_a_guide_the_error_names_the_fix():
    x = np.ones((8, 8))
    with pytest.raises(MethodError, match=r"needs a guide.*guide=.*'bicubic'"):
        downscale_array(x, factor=4, method="regression")


@pytest.mark.parametrize(
    ("opts", "match"),
    [
        ({"mode": "locl"}, "mode must be one of"),
        ({"fit": "fine"}, "fit must be one of"),
        ({"shrinkage": "auto"}, "shrinkage must be one of 'cv'"),
        ({"shrinkage": 1.5}, "shrinkage must be 'cv' or from 0 to 1"),
        ({"shrinkage": -0.1}, "shrinkage must be a finite number >= 0"),
        ({"shrinkage": True}, "shrinkage must be"),
        ({"radius": 0}, "radius must be an integer >= 1"),
        ({"radius": 2.0}, "radius must be an integer"),
        ({"ridge": -1.0}, "ridge must be a finite number >= 0"),
        ({"significance": float("nan")}, "significance must be a finite number"),
        ({"min_cells": 2}, "min_cells must be an integer >= 4"),
        ({"members": 3}, "does not take the option"),
    ],
)
def test_options_are_validated(opts, match):
    with pytest.raises(OptionError, match=match):
        get_method("regression", **opts)


def test_recovers_the_coefficient_and_beats_bicubic():
    truth, x, elev = _twin()
    bic = downscale_array(x, factor=8, method="bicubic")
    m = get_method("regression")
    y = downscale_array(x, factor=8, method=m, guide=elev[None], guide_names=("elev",))
    assert conservation_error(y, x, 8) < 1e-12
    fit = m.last_fit
    assert fit is not None and fit.names == ("elev",)
    assert fit.coef.shape == (1, 1)
    assert float(fit.coef[0, 0]) == pytest.approx(-0.0065, rel=0.05)
    assert float(fit.shrinkage[0]) > 0.9
    assert fit.choice[0] in ("global", "local:3", "local:6")
    assert float(fit.cv_ratio[0]) < 0.2
    assert _rmse(y, truth) < 0.2 * _rmse(bic, truth)


@pytest.mark.parametrize("fit", ["detail", "coarse"])
@pytest.mark.parametrize("mode", ["global", "local"])
def test_every_fit_and_mode_helps_and_conserves(fit, mode):
    truth, x, elev = _twin(seed=3)
    bic = downscale_array(x, factor=8, method="bicubic")
    y = downscale_array(x, factor=8, method="regression", guide=elev[None], fit=fit, mode=mode)
    assert conservation_error(y, x, 8) < 1e-12
    assert _rmse(y, truth) < 0.5 * _rmse(bic, truth)


@pytest.mark.parametrize("kind", ["noise", "shuffled"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_guide_without_information_does_no_harm(kind, seed):
    truth, x, elev = _twin(seed=seed)
    rng = np.random.default_rng(100 + seed)
    g = rng.normal(size=elev.shape) * 600.0 if kind == "noise" else rng.permutation(elev.ravel())
    g = g.reshape(elev.shape)
    bic = downscale_array(x, factor=8, method="bicubic")
    m = get_method("regression")
    y = downscale_array(x, factor=8, method=m, guide=g[None])
    assert m.last_fit is not None
    assert float(m.last_fit.shrinkage[0]) * float(abs(m.last_fit.coef[0, 0])) * 600 < 0.05
    assert _rmse(y, truth) <= 1.02 * _rmse(bic, truth)
    assert conservation_error(y, x, 8) < 1e-12


def test_plain_regression_without_protection_is_hurt_by_noise():
    """The reason for the significance threshold: with it off and s fixed at 1, a noise
    guide adds its fine-scale noise times a chance coefficient."""
    truth, x, elev = _twin(seed=0)
    g = np.random.default_rng(7).normal(size=elev.shape)
    bic = downscale_array(x, factor=8, method="bicubic")
    y = downscale_array(
        x, factor=8, method="regression", guide=g[None], shrinkage=1.0, significance=0.0
    )
    guarded = downscale_array(x, factor=8, method="regression", guide=g[None])
    assert _rmse(y, truth) > _rmse(guarded, truth) == pytest.approx(_rmse(bic, truth))


def test_a_constant_guide_gives_bicubic():
    _, x, elev = _twin()
    bic = downscale_array(x, factor=8, method="bicubic")
    y = downscale_array(x, factor=8, method="regression", guide=np.full((1, *elev.shape), 3.0))
    np.testing.assert_allclose(y, bic, rtol=0, atol=1e-12)


def test_several_guides_multiple_regression():
    n, f = 192, 8
    g1 = 500.0 * _smooth((n, n), 3.0, 10)
    g2 = 2.0 * _smooth((n, n), 2.0, 11)
    truth = 5.0 * _smooth((n, n), 25.0, 12) - 0.006 * g1 + 0.8 * g2
    x = block_mean(truth, f)
    m = get_method("regression", mode="global")
    y = downscale_array(x, factor=f, method=m, guide=np.stack([g1, g2]), guide_names=("a", "b"))
    assert conservation_error(y, x, f) < 1e-12
    assert m.last_fit is not None and m.last_fit.names == ("a", "b")
    np.testing.assert_allclose(m.last_fit.coef[0].numpy(), [-0.006, 0.8], rtol=0.1)
    one = downscale_array(x, factor=f, method="regression", guide=g1[None], mode="global")
    assert _rmse(y, truth) < 0.7 * _rmse(one, truth)


def test_collinear_guides_stay_finite():
    truth, x, elev = _twin()
    g = np.stack([elev, elev, 2 * elev + 1])
    m = get_method("regression")
    y = downscale_array(x, factor=8, method=m, guide=g)
    assert np.isfinite(y).all()
    assert conservation_error(y, x, 8) < 1e-12
    single = downscale_array(x, factor=8, method="regression", guide=elev[None])
    assert _rmse(y, truth) < 1.1 * _rmse(single, truth)


def test_static_and_dynamic_guides_and_leading_dims():
    _, x0, elev = _twin()
    _, x1, _ = _twin(seed=5)
    x = np.stack([x0, x1])  # (2, ny, nx)
    static = downscale_array(x, factor=8, method="regression", guide=elev[None])
    assert static.shape == (2, *elev.shape)
    dynamic = downscale_array(
        x, factor=8, method="regression", guide=np.stack([elev[None], elev[None]])
    )
    np.testing.assert_allclose(static, dynamic, rtol=0, atol=1e-12)
    # each field is fitted on its own: the same as one at a time
    alone = downscale_array(x1, factor=8, method="regression", guide=elev[None])
    np.testing.assert_allclose(static[1], alone, rtol=0, atol=1e-10)
    assert conservation_error(static, x, 8) < 1e-12


def test_nan_cells_are_left_out_and_stay_nan():
    truth, x, elev = _twin()
    x = x.copy()
    x[:6, :9] = np.nan  # land
    x[14, 3] = np.nan
    bic = downscale_array(x, factor=8, method="bicubic")
    y = downscale_array(x, factor=8, method="regression", guide=elev[None])
    keep = upsample(np.isfinite(x), 8)
    assert np.isfinite(y[keep]).all() and np.isnan(y[~keep]).all()
    assert conservation_error(y, x, 8) < 1e-12
    assert _rmse(y, truth) < 0.3 * _rmse(bic, truth)


def test_weights_mask_and_periodic():
    truth, _, elev = _twin(n=160)
    lat = np.linspace(-70, 70, 160)
    w = np.cos(np.deg2rad(lat))[:, None] * np.ones((1, 160))
    xw = block_mean(truth, 8, weights=w)
    mask = np.ones(truth.shape, bool)
    mask[40:44, 10:90] = False  # a fine-scale coastline inside some coarse cells
    xm = block_mean(truth, 8, weights=w, mask=mask)
    y = downscale_array(
        xm, factor=8, method="regression", guide=elev[None], weights=w, mask=mask, periodic=True
    )
    assert conservation_error(y, xm, 8, weights=w, mask=mask) < 1e-12
    assert np.isnan(y[~mask]).all() and np.isfinite(y[mask]).all()
    bic = downscale_array(xm, factor=8, method="bicubic", weights=w, mask=mask, periodic=True)
    assert _rmse(y, truth) < 0.3 * _rmse(bic, truth)
    y2 = downscale_array(xw, factor=8, method="regression", guide=elev[None], weights=w)
    assert conservation_error(y2, xw, 8, weights=w) < 1e-12


def test_float32_and_torch_in_torch_out():
    _, x, elev = _twin()
    xt = torch.tensor(x, dtype=torch.float32)
    gt = torch.tensor(elev[None], dtype=torch.float32)
    y = downscale_array(xt, factor=8, method="regression", guide=gt)
    assert isinstance(y, torch.Tensor) and y.dtype == torch.float32
    assert conservation_error(y.double(), xt.double(), 8) < 2e-6
    y64 = downscale_array(x, factor=8, method="regression", guide=elev[None])
    assert float((y.double() - torch.from_numpy(y64)).abs().max()) < 1e-3


def test_small_grids_fall_back_to_bicubic_with_a_warning():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 7))
    g = rng.normal(size=(1, 24, 28))
    bic = downscale_array(x, factor=4, method="bicubic")
    m = get_method("regression")
    with pytest.warns(UserWarning, match="guide was not used.*min_cells"):
        y = downscale_array(x, factor=4, method=m, guide=g)
    np.testing.assert_allclose(y, bic, rtol=0, atol=1e-12)
    assert m.last_fit is not None and m.last_fit.reason[0] is not None
    assert m.last_fit.choice == ("none",)


def test_a_field_without_data_in_a_batch():
    _, x, elev = _twin()
    x = np.stack([x, np.full_like(x, np.nan)])
    m = get_method("regression")
    with pytest.warns(UserWarning, match="1 of 2 field"):
        y = downscale_array(x, factor=8, method=m, guide=elev[None])
    assert np.isnan(y[1]).all() and np.isfinite(y[0]).all()
    assert conservation_error(y, x, 8) < 1e-12


def test_fixed_shrinkage_scales_the_guide_term():
    _, x, elev = _twin()
    bic = downscale_array(x, factor=8, method="bicubic")
    opts = {"method": "regression", "mode": "global", "significance": 0.0, "fit": "coarse"}
    full = downscale_array(x, factor=8, guide=elev[None], shrinkage=1.0, **opts)
    half = downscale_array(x, factor=8, guide=elev[None], shrinkage=0.5, **opts)
    none = downscale_array(x, factor=8, guide=elev[None], shrinkage=0.0, **opts)
    np.testing.assert_allclose(half, 0.5 * (full + bic), rtol=0, atol=1e-9)
    np.testing.assert_allclose(none, bic, rtol=0, atol=1e-12)


def test_diagnostics_without_the_pipeline():
    _, x, elev = _twin()
    out, fit = regression_downscale(
        torch.tensor(np.stack([x, x])), torch.tensor(elev[None]), 8, names=("elev",)
    )
    assert out.shape == (2, *elev.shape)
    assert fit.coef.shape == (2, 1) and fit.shrinkage.shape == (2,)
    assert fit.reason == (None, None)
    if fit.coef_map is not None:
        assert fit.coef_map.shape == (2, 1, *x.shape)


def test_gridmet_temperature_with_elevation():
    """The real twin experiment of benchmarks/bench_guided.py at x8, in brief."""
    xr = pytest.importorskip("xarray")
    import xsr

    tpath = shared_file("tasmax_gridmet_24thdeg_20190121.nc")
    epath = shared_file("elevation_colorado_1arcmin.nc")
    with xr.open_dataset(tpath) as t, xr.open_dataset(epath) as e:
        crop = t[["air_temperature"]].sel(lat=slice(42.98, 36.0), lon=slice(-110, -102))
        crop = crop.isel(lat=slice(0, 160)).drop_vars(["crs", "day"], errors="ignore").load()
        ey, ex, ez = e["y"].values, e["x"].values, e["z"].values
    lat, lon = crop["lat"].values, crop["lon"].values
    iy = np.interp(lat, ey, np.arange(ey.size))
    ix = np.interp(lon, ex, np.arange(ex.size))
    y0 = np.clip(np.floor(iy).astype(int), 0, ey.size - 2)[:, None]
    x0 = np.clip(np.floor(ix).astype(int), 0, ex.size - 2)[None, :]
    fy, fx = (iy - y0[:, 0])[:, None], (ix - x0[0])[None, :]
    elev = (
        ez[y0, x0] * (1 - fy) * (1 - fx)
        + ez[y0 + 1, x0] * fy * (1 - fx)
        + ez[y0, x0 + 1] * (1 - fy) * fx
        + ez[y0 + 1, x0 + 1] * fy * fx
    )
    truth = crop["air_temperature"].values.astype(np.float64)
    coarse_ds = xsr.coarsen(crop, factor=8)
    x = coarse_ds["air_temperature"].values
    w = xsr.cell_areas(coarse_ds, factor=8)
    bic = downscale_array(x, factor=8, method="bicubic", weights=w)
    y = downscale_array(x, factor=8, method="regression", guide=elev[None], weights=w)
    assert conservation_error(y, x, 8, weights=w) < 1e-12
    assert _rmse(y, truth) < 0.62 * _rmse(bic, truth)
    shuffled = np.random.default_rng(0).permutation(elev.ravel()).reshape(elev.shape)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ys = downscale_array(x, factor=8, method="regression", guide=shuffled[None], weights=w)
    assert _rmse(ys, truth) <= 1.02 * _rmse(bic, truth)


def test_land_masked_on_the_fine_grid():
    """Whole coarse cells of land, given as a fine mask (coarse means over valid cells)."""
    truth, _, elev = _twin()
    mask = np.ones(truth.shape, bool)
    mask[:64, :80] = False  # land: whole coarse cells
    mask[100:103, 50:150] = False  # a coastline through coarse cells
    x = block_mean(truth, 8, mask=mask)
    assert np.isnan(x).any()
    bic = downscale_array(x, factor=8, method="bicubic", mask=mask)
    m = get_method("regression")
    y = downscale_array(x, factor=8, method=m, guide=elev[None], mask=mask)
    assert conservation_error(y, x, 8, mask=mask) < 1e-12
    assert np.isnan(y[~mask]).all() and np.isfinite(y[mask]).all()
    assert m.last_fit is not None and np.isfinite(float(m.last_fit.cv_ratio[0]))
    assert _rmse(y, truth) < 0.3 * _rmse(bic, truth)
