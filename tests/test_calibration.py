"""Calibrated ensemble spread (``calibrate=`` of the ensemble methods).

Tiny grids and a few iterations: these tests check the machinery (shapes, exact conservation
of the rescaled members, the mean unchanged, the fallback on small grids, option checks,
land), and that the fit recovers a known spread deficit where the truth is known.  Whether
the calibration helps on real fields is the benchmark's job
(``benchmarks/bench_calibration.py``).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from xsr.conserve import block_mean, conservation_error, enforce, upsample
from xsr.exceptions import OptionError
from xsr.methods import downscale_array, get_method
from xsr.methods.calibration import (
    DEFAULT_FACTOR,
    MIN_CELLS,
    choose_factor,
    fit_calibration,
    member_deviations,
    scale_members,
    spread_factor,
)
from xsr.testing import lonlat_dataset

FAST = {"iterations": 6, "progress": False, "members": 3}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _field(shape, seed=0):
    """A smooth field with small-scale structure (float64)."""
    rng = np.random.default_rng(seed)
    ny, nx = shape[-2:]
    yy, xx = np.meshgrid(np.linspace(0, 3, ny), np.linspace(0, 4, nx), indexing="ij")
    base = np.broadcast_to(np.sin(xx + yy) + 0.5 * np.cos(3 * xx), shape)
    return base + 0.2 * rng.normal(size=shape)


def _run(x, factor, **opts):
    m = get_method("dip-ensemble", keep_members=True, **{**FAST, **opts})
    return m, downscale_array(x, factor=factor, method=m, extras=True)


# ----------------------------------------------------------------------------------------
# through the pipeline
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["scale", "local"])
def test_shapes_conservation_and_unchanged_mean(mode):
    x = _field((2, 16, 16))
    _, raw = _run(x, 2)
    m, cal = _run(x, 2, calibrate=mode)
    assert cal.fine.shape == (2, 32, 32)
    assert cal.std.shape == (2, 32, 32)
    assert cal.members.shape == (3, 2, 32, 32)
    # the mean does not change, bit for bit
    np.testing.assert_array_equal(cal.fine, raw.fine)
    # every calibrated member conserves every coarse cell exactly
    for k in range(3):
        assert conservation_error(cal.members[k], x, 2) <= 1e-12
    # the members' mean is the (enforced) mean, and the spread is their spread
    np.testing.assert_allclose(cal.members.mean(axis=0), cal.fine, rtol=0, atol=1e-12)
    np.testing.assert_allclose(cal.members.std(axis=0, ddof=1), cal.std, rtol=1e-12)
    fit = m.last_calibration
    assert fit is not None
    assert fit.factor == 2
    assert bool(fit.fitted.all())
    # the spread is the raw one times a factor constant over each coarse cell
    ratio = cal.std / raw.std
    blocks = ratio.reshape(2, 16, 2, 16, 2)
    np.testing.assert_allclose(
        blocks, np.broadcast_to(blocks[:, :, :1, :, :1], blocks.shape), rtol=1e-9
    )
    if mode == "scale":
        for b in range(2):
            np.testing.assert_allclose(ratio[b], float(fit.scale[b]), rtol=1e-9)
    else:
        assert bool(fit.local.all())
        assert np.isfinite(ratio).all()


def test_calibration_is_deterministic_and_off_by_default():
    x = _field((12, 12))
    m1, a = _run(x, 2, calibrate="scale", seed=3)
    _, b = _run(x, 2, calibrate="scale", seed=3)
    np.testing.assert_array_equal(a.members, b.members)
    assert get_method("dip").calibrate == "none"
    assert get_method("dip-ensemble").calibrate == "none"
    assert get_method("dip", uncertainty="latent").calibrate == "none"
    assert m1.options()["calibrate"] == "scale"


def test_small_grid_lowers_the_factor_then_falls_back_with_a_warning():
    # 8 x 8 coarse cells at x4: asked to calibrate at x4, coarsening by 4 leaves 4 cells,
    # by 2 leaves 16 -> r = 2
    x = _field((8, 8))
    m, _ = _run(x, 4, calibrate="scale", calibration_factor=4)
    assert m.last_calibration.factor == 2
    xt = torch.as_tensor(x)[None]
    assert choose_factor(xt) == DEFAULT_FACTOR == 2
    assert choose_factor(xt, requested=4) == 2
    assert choose_factor(xt, requested=4, min_cells=4) == 4
    assert choose_factor(xt, requested=3, min_cells=4) == 3  # a crop to 6 x 6 cells
    # 6 x 6 cells: coarsened by 2 leaves 9 < MIN_CELLS: not fitted, raw spread, warned
    x = _field((6, 6))
    _, raw = _run(x, 2)
    with pytest.warns(UserWarning, match="spread left raw"):
        m, cal = _run(x, 2, calibrate="scale")
    assert m.last_calibration.factor is None
    assert not bool(m.last_calibration.fitted.any())
    assert "not fitted" in m.last_calibration.describe()
    np.testing.assert_array_equal(cal.members, raw.members)
    np.testing.assert_array_equal(cal.std, raw.std)
    assert MIN_CELLS > 9


def test_local_needs_more_cells_and_falls_back_to_a_scale():
    x = _field((12, 12))  # coarsened by 2: 36 cells, fewer than LOCAL_MIN_CELLS
    with pytest.warns(UserWarning, match="one scale factor instead of the local model"):
        m, cal = _run(x, 2, calibrate="local")
    fit = m.last_calibration
    assert bool(fit.fitted.all())
    assert not bool(fit.local.any())
    assert conservation_error(cal.members[0], x, 2) <= 1e-12


def test_land_nan_and_weights():
    x = _field((16, 16), seed=1)
    x[:5, :4] = np.nan  # land
    x[10, 10] = np.nan
    w = np.cos(np.linspace(-1, 1, 32))[:, None] * np.ones((1, 32))
    m = get_method("dip-ensemble", keep_members=True, calibrate="scale", **FAST)
    cal = downscale_array(x, factor=2, method=m, weights=w, extras=True)
    raw = downscale_array(
        x, factor=2, method="dip-ensemble", weights=w, extras=True, keep_members=True, **FAST
    )
    land = np.isnan(upsample(x, 2))
    assert np.isnan(cal.members[:, land]).all()
    assert np.isnan(cal.std[land]).all()
    assert np.isfinite(cal.std[~land]).all()
    np.testing.assert_array_equal(cal.fine, raw.fine)
    for k in range(3):
        assert conservation_error(cal.members[k], x, 2, weights=w) <= 1e-12
    assert bool(m.last_calibration.fitted.all())
    assert float(m.last_calibration.scale[0]) > 0


def test_multiplicative_enforcement_members_still_conserve():
    x = np.exp(_field((16, 16), seed=3))  # positive
    m = get_method("dip-ensemble", keep_members=True, calibrate="scale", **FAST)
    out = downscale_array(x, factor=2, method=m, conserve="multiplicative", extras=True)
    raw = downscale_array(
        x, factor=2, method="dip-ensemble", conserve="multiplicative", extras=True, **FAST
    )
    np.testing.assert_array_equal(out.fine, raw.fine)
    assert (out.members >= 0).all()
    for k in range(3):
        assert conservation_error(out.members[k], x, 2) <= 1e-12


def test_guided_calibration_coarsens_the_guide_too():
    x = _field((16, 18), seed=5)
    rng = np.random.default_rng(0)
    guide = rng.normal(size=(1, 32, 36))
    m = get_method("dip-ensemble", keep_members=True, calibrate="scale", **FAST)
    out = downscale_array(x, factor=2, method=m, guide=guide, extras=True)
    assert bool(m.last_calibration.fitted.all())
    for k in range(3):
        assert conservation_error(out.members[k], x, 2) <= 1e-12


def test_periodic_and_latent_uncertainty():
    x = _field((12, 16))
    m = get_method(
        "dip",
        uncertainty="latent",
        latent_samples=3,
        keep_members=True,
        calibrate="scale",
        iterations=5,
        progress=False,
    )
    out = downscale_array(x, factor=2, method=m, periodic=True, extras=True)
    assert out.members.shape == (3, 24, 32)
    assert conservation_error(out.members[1], x, 2) <= 1e-12
    assert m.last_calibration.fitted.all()


def test_attrs_through_the_api():
    ds = lonlat_dataset(ny=12, nx=16, nt=1)[["sst"]]
    fine = ds.sr.downscale(factor=2, method="dip-ensemble", calibrate="scale", **FAST)
    name = "sst"
    assert fine[name].attrs["xsr_calibrate"] == "scale"
    assert f"{name}_std" in fine
    back = fine[[name]].sr.coarsen(factor=2)
    np.testing.assert_allclose(back[name].values, ds[name].values, rtol=1e-10, atol=0)


def test_tiles_are_calibrated_each_on_its_own_and_say_so():
    """With tiles every tile fits its own factor: a warning says so (and not without
    tiles); the tiled result still conserves exactly."""
    ds = lonlat_dataset(ny=32, nx=32, nt=1)[["sst"]]
    kw = {"factor": 4, "method": "dip-ensemble", "calibrate": "scale", **FAST}
    with pytest.warns(UserWarning, match="each tile's own coarse field"):
        tiled = ds.sr.downscale(tile_size=64, **kw)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no such warning without tiles
        whole = ds.sr.downscale(**kw)
    back = tiled[["sst"]].sr.coarsen(factor=4)
    np.testing.assert_allclose(back["sst"].values, ds["sst"].values, rtol=1e-10, atol=0)
    assert tiled["sst_std"].notnull().any() and whole["sst_std"].notnull().any()
    # what the warning says: each tile has its own factor (raw tiles, same seeds)
    raw = ds.sr.downscale(tile_size=64, **{**kw, "calibrate": "none"})
    ratio = (tiled["sst_std"] / raw["sst_std"]).values[0]
    quads = [ratio[:64, :64], ratio[:64, 64:], ratio[64:, :64], ratio[64:, 64:]]
    per_tile = [float(np.nanmedian(q)) for q in quads]
    assert max(per_tile) / min(per_tile) > 1.01


# ----------------------------------------------------------------------------------------
# options
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("opts", "match"),
    [
        ({"calibrate": "yes"}, r"calibrate must be one of 'none', 'scale', 'local', got 'yes'"),
        ({"calibrate": True}, "calibrate must be one of"),
        ({"calibrate": "scale", "calibration_factor": 1}, "calibration_factor must be an integer"),
        ({"calibrate": "scale", "calibration_factor": 2.0}, "calibration_factor must be"),
        ({"calibration_factor": 2}, "only used with a calibration"),
    ],
)
def test_option_errors(opts, match):
    with pytest.raises(OptionError, match=match):
        get_method("dip-ensemble", **opts)


def test_calibrate_needs_a_spread():
    with pytest.raises(OptionError, match=r"uncertainty='none' gives none.*dip-ensemble"):
        get_method("dip", calibrate="scale")
    assert "calibrate" not in get_method("dip").options()
    opts = get_method("dip-ensemble", calibrate="local", calibration_factor=2).options()
    assert opts["calibrate"] == "local"
    assert opts["calibration_factor"] == 2
    # the options rebuild the same method (what tiling and the attrs rely on)
    again = get_method("dip-ensemble", **opts)
    assert again.options() == opts


# ----------------------------------------------------------------------------------------
# the fit, where the truth is known
# ----------------------------------------------------------------------------------------
def _synthetic_runner(truth, under: float, seed: int = 0, pattern: bool = False):
    """A stand-in for the method where the truth is known: its result is the truth plus
    noise of a known standard deviation (uniform, or a fixed spatial pattern), enforced;
    its spread is that standard deviation divided by ``under`` (an ensemble ``under``
    times too narrow).  ``truth`` ``(B, NY, NX)``: the level is found by the input's shape
    (the input coarsened by ``r`` is cropped to whole blocks)."""
    gen = torch.Generator().manual_seed(seed)

    def run(xc, r, w, m):
        ny, nx = xc.shape[-2] * r, xc.shape[-1] * r
        oy, ox = (truth.shape[-2] - ny) // 2, (truth.shape[-1] - nx) // 2
        t = truth[:, oy : oy + ny, ox : ox + nx]
        yy, xx = torch.meshgrid(
            torch.arange(ny, dtype=t.dtype), torch.arange(nx, dtype=t.dtype), indexing="ij"
        )
        sig = 0.1 * (1 + 0.9 * torch.sin(yy / 5.0) * torch.cos(xx / 7.0)) if pattern else 0.1
        sig = torch.broadcast_to(torch.as_tensor(sig, dtype=t.dtype), t.shape)
        noise = torch.randn(t.shape, generator=gen, dtype=t.dtype) * sig
        return enforce(t + noise, xc, r, weights=w, mask=m), sig / under

    return run


@pytest.mark.parametrize("under", [0.5, 3.0, 10.0])
def test_fit_recovers_a_known_spread_deficit(under):
    x = torch.as_tensor(_field((2, 64, 64), seed=2))
    fit = fit_calibration(x, 4, _synthetic_runner(x, under), mode="scale", calibration_factor=4)
    assert fit.factor == 4
    # enforcement removes the block mean of the noise: 15/16 of its variance stays
    expected = under * math.sqrt(15 / 16)
    np.testing.assert_allclose(fit.scale.numpy(), expected, rtol=0.05)
    np.testing.assert_allclose(fit.raw_ratio.numpy(), 1 / expected, rtol=0.05)


def test_local_fit_follows_a_spread_pattern():
    x = torch.as_tensor(_field((1, 96, 96), seed=4))
    fit = fit_calibration(x, 2, _synthetic_runner(x, 4.0, pattern=True), mode="local")
    assert bool(fit.local.all())
    # the error variance follows the spread's pattern, so their ratio is uniform: no weight
    # on the spread nor the gradient (the departure from bicubic holds the noise itself, so
    # it may get some), and a level that undoes the deficit (4^2 * 3/4)
    coef = fit.coef[0].numpy()
    assert np.abs(coef[1:3]).max() < 0.1
    assert abs(coef[3]) < 0.3
    s = spread_factor(fit, x, 2, upsample(x, 2), torch.full((1, 192, 192), 0.1 / 4))
    assert s.shape == (1, 96, 96)
    assert bool(torch.isfinite(s).all())
    # a uniform raw spread gets a uniform factor near the deficit
    np.testing.assert_allclose(float(s.median()), 4.0 * math.sqrt(3 / 4), rtol=0.15)


def test_unfitted_when_everything_is_nan_but_a_few_cells():
    x = torch.full((1, 10, 10), math.nan, dtype=torch.float64)
    x[0, :3, :3] = 1.0
    fit = fit_calibration(x, 2, _synthetic_runner(x, 2.0), mode="scale")
    assert fit.factor is None
    assert not bool(fit.fitted.any())
    assert float(fit.scale[0]) == 1.0


# ----------------------------------------------------------------------------------------
# properties of the member rescaling (pure arrays, no network)
# ----------------------------------------------------------------------------------------
@settings(max_examples=40, deadline=None)
@given(
    ny=st.integers(1, 4),
    nx=st.integers(1, 4),
    f=st.integers(2, 4),
    m=st.integers(2, 5),
    seed=st.integers(0, 2**31 - 1),
    land=st.booleans(),
    weighted=st.booleans(),
)
def test_rescaled_members_conserve_and_keep_their_mean(ny, nx, f, m, seed, land, weighted):
    rng = np.random.default_rng(seed)
    x = torch.as_tensor(rng.normal(size=(2, ny, nx)) * 10.0 ** rng.uniform(-3, 3))
    if land and ny * nx > 1:
        x[0, 0, 0] = math.nan
    members = upsample(x, f)[None] + torch.as_tensor(rng.normal(size=(m, 2, ny * f, nx * f)))
    w = torch.as_tensor(rng.uniform(0.1, 2.0, size=(ny * f, nx * f))) if weighted else None
    s = torch.as_tensor(rng.uniform(0.1, 10.0, size=(2, ny, nx)))
    out = scale_members(members, x, f, s, weights=w)
    enforced = enforce(out, x, f, weights=w)
    raw = enforce(members, x, f, weights=w)
    # round-off is relative to the largest values involved: members up to 1e4 x the coarse
    # field (x down to 1e-3, deviations up to 10) leave 1e-12 of the coarse magnitude
    xmax = float(torch.nan_to_num(x).abs().max())
    big = max(xmax, float(torch.nan_to_num(enforced).abs().max()))
    for k in range(m):
        assert conservation_error(enforced[k], x, f, weights=w) * xmax <= 1e-12 * big
    scale = float(torch.nan_to_num(x).abs().max()) + 1.0
    ok = torch.isfinite(upsample(x, f))
    diff = (enforced.mean(0) - enforce(members.mean(0), x, f, weights=w))[ok]
    assert float(diff.abs().max()) <= 1e-12 * scale
    ratio = (enforced.std(0, correction=1) / raw.std(0, correction=1))[ok]
    np.testing.assert_allclose(ratio.numpy(), upsample(s, f)[ok].numpy(), rtol=1e-9)
    _, _, dev, std = member_deviations(members, x, f, weights=w)
    bm = block_mean(dev, f, weights=w)
    assert float(torch.nan_to_num(bm).abs().max()) <= 1e-12 * (float(std[ok].max()) + 1)
