"""xsr.metrics: known values, NaN handling, SSIM against a direct window-by-window sum."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
import xarray as xr

from xsr import metrics
from xsr.exceptions import InputValueError, OptionError, ShapeError


def _smooth(ny: int = 40, nx: int = 48, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.meshgrid(np.linspace(0, 2, ny), np.linspace(0, 3, nx), indexing="ij")
    return np.sin(2 * xx + yy) + 0.5 * np.cos(3 * yy) + 0.01 * rng.normal(size=(ny, nx))


def _ssim_direct(a: np.ndarray, b: np.ndarray, data_range: float, win: int = 7) -> float:
    """SSIM as the mean over windows, each computed with np.cov; windows with NaN skipped."""
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    vals = []
    for i in range(a.shape[0] - win + 1):
        for j in range(a.shape[1] - win + 1):
            x = a[i : i + win, j : j + win].ravel()
            y = b[i : i + win, j : j + win].ravel()
            if not (np.isfinite(x).all() and np.isfinite(y).all()):
                continue
            c = np.cov(x, y)
            mx, my = x.mean(), y.mean()
            vals.append(
                (2 * mx * my + c1)
                * (2 * c[0, 1] + c2)
                / ((mx**2 + my**2 + c1) * (c[0, 0] + c[1, 1] + c2))
            )
    return float(np.mean(vals))


# ------------------------------------------------------------------------------------------
# identical fields and constant offsets
# ------------------------------------------------------------------------------------------
def test_identical_fields() -> None:
    a = _smooth()
    assert metrics.rmse(a, a) == 0.0
    assert metrics.mae(a, a) == 0.0
    assert metrics.bias(a, a) == 0.0
    assert metrics.psnr(a, a) == math.inf
    assert metrics.ssim(a, a) == pytest.approx(1.0, abs=1e-12)
    assert metrics.pearson(a, a) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("offset", [0.25, -3.0])
def test_constant_offset(offset: float) -> None:
    b = _smooth()
    a = b + offset
    assert metrics.rmse(a, b) == pytest.approx(abs(offset), rel=1e-12)
    assert metrics.mae(a, b) == pytest.approx(abs(offset), rel=1e-12)
    assert metrics.bias(a, b) == pytest.approx(offset, rel=1e-12)
    assert metrics.pearson(a, b) == pytest.approx(1.0, abs=1e-12)
    # PSNR with an explicit range: 20 log10(range / |offset|)
    assert metrics.psnr(a, b, data_range=1.0) == pytest.approx(-20 * math.log10(abs(offset)))
    # the luminance term drops below 1, the structure terms stay 1
    assert metrics.ssim(a, b) < 1.0


def test_psnr_default_range_is_reference_range() -> None:
    b = np.array([0.0, 1.0, 2.0, 4.0])
    a = b + 0.4
    assert metrics.psnr(a, b) == pytest.approx(10 * math.log10(16 / 0.16))


def test_pearson_signs() -> None:
    x = _smooth().ravel()
    assert metrics.pearson(2 * x + 1, x) == pytest.approx(1.0, abs=1e-12)
    assert metrics.pearson(-x, x) == pytest.approx(-1.0, abs=1e-12)
    assert math.isnan(metrics.pearson(np.ones(5), np.arange(5.0)))


def test_weighted_statistics() -> None:
    b = np.zeros((2, 2))
    a = np.array([[1.0, 1.0], [3.0, 3.0]])
    w = np.array([[3.0], [1.0]])  # broadcast along x
    assert metrics.bias(a, b, weights=w) == pytest.approx(1.5)
    assert metrics.mae(a, b, weights=w) == pytest.approx(1.5)
    assert metrics.rmse(a, b, weights=w) == pytest.approx(math.sqrt((3 * 1 + 1 * 9) / 4))
    with pytest.raises(OptionError, match="non-negative"):
        metrics.rmse(a, b, weights=-w)


# ------------------------------------------------------------------------------------------
# NaN handling
# ------------------------------------------------------------------------------------------
def test_nan_cells_are_ignored() -> None:
    b = _smooth()
    a = b + 0.1
    a[:5, :5] = np.nan  # missing in the estimate
    b2 = b.copy()
    b2[-3:, :] = np.nan  # missing in the reference
    b2[10, 10] = 1e6  # ... and a wild value that a finite a would expose
    a[10, 10] = np.nan
    assert metrics.rmse(a, b2) == pytest.approx(0.1, rel=1e-10)
    assert metrics.bias(a, b2) == pytest.approx(0.1, rel=1e-10)
    ok = np.isfinite(a) & np.isfinite(b2)
    assert metrics.pearson(a, b2) == pytest.approx(np.corrcoef(a[ok], b2[ok])[0, 1])


def test_all_nan_gives_nan() -> None:
    a = np.full((8, 8), np.nan)
    b = np.ones((8, 8))
    for f in (metrics.rmse, metrics.mae, metrics.bias, metrics.pearson, metrics.psnr):
        assert math.isnan(f(a, b))
    assert math.isnan(metrics.ssim(a, b, data_range=1.0))


def test_ssim_matches_direct_window_sums() -> None:
    b = _smooth(24, 30)
    a = b + 0.2 * np.random.default_rng(1).normal(size=b.shape)
    rng = float(b.max() - b.min())
    assert metrics.ssim(a, b) == pytest.approx(_ssim_direct(a, b, rng), rel=1e-10)
    assert metrics.ssim(a, b, win=5, data_range=3.0) == pytest.approx(
        _ssim_direct(a, b, 3.0, win=5), rel=1e-10
    )


def test_ssim_skips_windows_touching_nan() -> None:
    b = _smooth(24, 30)
    a = b + 0.2 * np.random.default_rng(2).normal(size=b.shape)
    a[:6, :9] = np.nan  # "land" in a corner
    b[20, 3] = np.nan
    ok = np.isfinite(a) & np.isfinite(b)
    rng = float(b[ok].max() - b[ok].min())
    got = metrics.ssim(a, b)
    assert np.isfinite(got)
    assert got == pytest.approx(_ssim_direct(a, b, rng), rel=1e-10)


def test_ssim_of_field_vs_noise_is_low() -> None:
    b = _smooth()
    noise = np.random.default_rng(3).normal(size=b.shape)
    assert metrics.ssim(noise, b) < 0.5
    assert metrics.ssim(b + 0.01 * noise, b) > 0.9


def test_ssim_pools_leading_axes() -> None:
    b = np.stack([_smooth(seed=0), _smooth(seed=1)])
    a = b + 0.1
    r = float(b.max() - b.min())
    direct = np.mean([_ssim_direct(a[i], b[i], r) for i in range(2)])
    assert metrics.ssim(a, b) == pytest.approx(direct, rel=1e-10)


# ------------------------------------------------------------------------------------------
# xarray inputs and errors
# ------------------------------------------------------------------------------------------
def test_dataarrays_matched_by_dimension_name() -> None:
    b = _smooth(10, 12)
    a = b + 0.5
    da = xr.DataArray(a, dims=("y", "x"))
    db = xr.DataArray(b.T, dims=("x", "y"))
    assert metrics.rmse(da, db) == pytest.approx(0.5)
    assert metrics.ssim(da, db) == pytest.approx(metrics.ssim(a, b))


def test_errors() -> None:
    a = np.zeros((10, 10))
    with pytest.raises(ShapeError, match="broadcast"):
        metrics.rmse(a, np.zeros((3, 4)))
    with pytest.raises(ShapeError, match="same shape"):
        metrics.ssim(a, np.zeros((1, 10)))
    with pytest.raises(ShapeError, match="at least 2 dimensions"):
        metrics.ssim(np.arange(10.0), np.arange(10.0))
    for bad in (6, 1, 7.0, True):
        with pytest.raises(OptionError, match="odd integer"):
            metrics.ssim(a, a, win=bad)  # type: ignore[arg-type]
    with pytest.raises(InputValueError, match="data_range"):
        metrics.psnr(a + 1, a)
    with pytest.raises(OptionError, match="data_range"):
        metrics.ssim(a, a, data_range=-1.0)


def test_conservation_error_is_the_conserve_function() -> None:
    from xsr import conserve

    assert metrics.conservation_error is conserve.conservation_error
    coarse = np.array([[1.0, 2.0], [3.0, np.nan]])
    fine = np.repeat(np.repeat(coarse, 3, axis=0), 3, axis=1)
    assert metrics.conservation_error(fine, coarse, 3) == 0.0


def test_import_does_not_need_torch() -> None:
    code = (
        "import sys, numpy as np, xsr.metrics as m; m.ssim(np.eye(8), np.eye(8)); "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ------------------------------------------------------------------------------------------
# SSIM against scikit-image
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("win", [3, 7, 11])
@pytest.mark.parametrize("noise", [0.01, 0.2, 1.0])
def test_ssim_matches_scikit_image(win: int, noise: float) -> None:
    skm = pytest.importorskip("skimage.metrics")
    b = _smooth()
    a = b + noise * np.random.default_rng(1).normal(size=b.shape)
    rng = float(b.max() - b.min())
    # the same convention: uniform window, sample (N - 1) covariance, valid windows only
    # (scikit-image crops the (win - 1) / 2 border); only round-off apart
    ref = skm.structural_similarity(a, b, data_range=rng, win_size=win)
    assert metrics.ssim(a, b, win=win) == pytest.approx(ref, abs=1e-12)
    # the default data_range is the reference's range, as passed here
    assert metrics.ssim(a, b, data_range=2 * rng, win=win) == pytest.approx(
        skm.structural_similarity(a, b, data_range=2 * rng, win_size=win), abs=1e-12
    )


def test_ssim_gaussian_window_is_another_convention() -> None:
    # Wang et al.'s Gaussian window (sigma 1.5, population covariance) weights the window's
    # centre: a different number (here by up to ~0.1), which xsr does not compute; the ranking
    # of estimates by the two conventions agrees
    skm = pytest.importorskip("skimage.metrics")
    b = _smooth()
    rng = float(b.max() - b.min())
    noise = np.random.default_rng(2).normal(size=b.shape)
    ours, gauss = [], []
    for s in (0.02, 0.1, 0.3, 1.0):
        a = b + s * noise
        ours.append(metrics.ssim(a, b))
        gauss.append(
            skm.structural_similarity(
                a, b, data_range=rng, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
            )
        )
    assert np.all(np.diff(ours) < 0) and np.all(np.diff(gauss) < 0)
    assert np.max(np.abs(np.subtract(ours, gauss))) < 0.15
