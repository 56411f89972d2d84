"""Guided deep image prior: fine-scale covariates (``guide=``) for ``dip`` and ``dip-ensemble``.

Tiny grids and few iterations, as in ``tests/test_dip.py``: exact conservation, shapes,
static and dynamic guides, members and spread, batching equal to one-by-one fits, periodic
input, NaN, float32; and one skill test that could fail (a guide that explains the fine
structure must help, a guide of pure noise must not hurt).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xsr.conserve import block_mean, conservation_error, upsample
from xsr.exceptions import OptionError
from xsr.methods import downscale_array, get_method
from xsr.methods.dip import DIP, fit_dip
from xsr.nn.generators import DecoderGenerator, StudyGenerator

FAST = {"iterations": 8, "progress": False}
# the guides of the mechanical tests are random: a significance of 0 keeps their path open
GUIDED = {**FAST, "guide_significance": 0.0}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _smooth_noise(rng, shape, ell):
    """Gaussian-correlated noise (length ``ell`` cells, periodic), zero mean, unit std."""
    ny, nx = shape
    ky = np.fft.fftfreq(ny)[:, None]
    kx = np.fft.fftfreq(nx)[None, :]
    spec = np.exp(-2.0 * (np.pi * ell) ** 2 * (kx**2 + ky**2))
    g = np.fft.ifft2(np.fft.fft2(rng.normal(size=shape)) * spec).real
    return (g - g.mean()) / g.std()


def _field(shape, seed=0):
    rng = np.random.default_rng(seed)
    ny, nx = shape[-2:]
    yy, xx = np.meshgrid(np.linspace(0, 3, ny), np.linspace(0, 4, nx), indexing="ij")
    return np.broadcast_to(np.sin(xx + yy), shape) + 0.2 * rng.normal(size=shape)


def _guide(shape, seed=1):
    rng = np.random.default_rng(seed)
    return rng.normal(size=shape)


# ----------------------------------------------------------------------------------------
# generators
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", [DecoderGenerator, StudyGenerator])
@pytest.mark.parametrize("shape", [(24, 40), (7, 13), (1, 5)])
def test_generators_take_guides_at_every_stage(cls, shape):
    opts = {"width": 16} if cls is StudyGenerator else {}
    g = cls(2, shape, seeds=[0, 1], guide_channels=2, out_channels=3, **opts)
    with pytest.raises(ValueError, match="set_guide"):
        g()
    guide = torch.randn(2, 2, *shape)
    g.set_guide(guide)
    y = g()
    assert y.shape == (2, 3, *shape)
    assert torch.isfinite(y).all()
    # the output depends on the guide
    g.set_guide(guide + torch.randn_like(guide))
    assert not torch.allclose(g(), y)
    with pytest.raises(ValueError, match="guide must have shape"):
        g.set_guide(torch.randn(2, 1, *shape))


@pytest.mark.parametrize("cls", [DecoderGenerator, StudyGenerator])
def test_guided_member_k_of_a_batch_is_the_network_of_seed_k(cls):
    opts = {"width": 32} if cls is StudyGenerator else {}
    guide = torch.randn(3, 1, 20, 28)
    batch = cls(3, (20, 28), seeds=[5, 6, 7], guide_channels=1, out_channels=2, **opts)
    batch.set_guide(guide)
    for k, seed in enumerate([5, 6, 7]):
        one = cls(1, (20, 28), seeds=[seed], guide_channels=1, out_channels=2, **opts)
        one.set_guide(guide[k : k + 1])
        torch.testing.assert_close(batch()[k], one()[0], rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------------------
# the array pipeline
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("factor", [2, 3, 5])
def test_guided_dip_shapes_conservation_and_masking(factor):
    x = _field((2, 5, 6))
    x[1, :2, :2] = np.nan
    g = _guide((2, 5 * factor, 6 * factor))  # static, two channels
    y = downscale_array(x, factor=factor, method="dip", guide=g, **GUIDED)
    assert y.shape == (2, 5 * factor, 6 * factor)
    keep = upsample(np.isfinite(x), factor)
    assert np.isfinite(y[keep]).all()
    assert np.isnan(y[~keep]).all()
    assert conservation_error(y, x, factor) < 1e-12
    # the guide changes the result
    plain = downscale_array(x, factor=factor, method="dip", **FAST)
    assert np.nanmax(np.abs(y - plain)) > 1e-6


def test_guided_study_generator_and_linear_path_conserve():
    x = _field((6, 6))
    g = _guide((1, 24, 24))
    y = downscale_array(
        x, factor=4, method="dip", generator="study", iterations=3, guide=g, guide_significance=0.0
    )
    assert y.shape == (24, 24)
    assert conservation_error(y, x, 4) < 1e-12
    lin = downscale_array(x, factor=4, method="dip", guide=g, guide_network=False, **GUIDED)
    assert conservation_error(lin, x, 4) < 1e-12


def test_static_and_dynamic_guides():
    x = _field((2, 4, 5), seed=3)
    g = _guide((1, 8, 10), seed=4)
    static = downscale_array(x, factor=2, method="dip", guide=g, **GUIDED)
    dynamic = downscale_array(x, factor=2, method="dip", guide=np.stack([g, g]), **GUIDED)
    np.testing.assert_allclose(dynamic, static, rtol=0, atol=1e-10)
    other = np.stack([g, _guide((1, 8, 10), seed=5)])
    mixed = downscale_array(x, factor=2, method="dip", guide=other, **GUIDED)
    np.testing.assert_allclose(mixed[0], static[0], rtol=0, atol=1e-10)
    assert np.abs(mixed[1] - static[1]).max() > 1e-6
    assert conservation_error(mixed, x, 2) < 1e-12


def test_guided_fields_are_independent_fits():
    x = _field((2, 5, 5), seed=4)
    g = _guide((2, 1, 10, 10), seed=6)  # dynamic: one guide per field
    both = downscale_array(x, factor=2, method="dip", guide=g, **GUIDED)
    for t in range(2):
        alone = downscale_array(x[t], factor=2, method="dip", guide=g[t], **GUIDED)
        np.testing.assert_allclose(both[t], alone, rtol=0, atol=1e-5)


def test_guided_ensemble_batch_equals_independent_fits():
    x = _field((5, 6), seed=5)
    g = _guide((1, 15, 18), seed=7)
    res = downscale_array(
        x,
        factor=3,
        method="dip-ensemble",
        members=3,
        seed=10,
        keep_members=True,
        extras=True,
        guide=g,
        **GUIDED,
    )
    assert res.members.shape == (3, 15, 18)
    for k in range(3):
        single = downscale_array(x, factor=3, method="dip", seed=10 + k, guide=g, **GUIDED)
        np.testing.assert_allclose(res.members[k], single, rtol=0, atol=1e-4)
        assert conservation_error(res.members[k], x, 3) < 1e-12
    np.testing.assert_allclose(res.fine, res.members.mean(axis=0), rtol=0, atol=1e-12)
    np.testing.assert_allclose(res.std, res.members.std(axis=0, ddof=1), rtol=0, atol=1e-12)
    assert (res.std >= 0).all() and res.std.max() > 0
    assert conservation_error(res.fine, x, 3) < 1e-12


def test_guided_members_in_several_batches_equal_one_batch():
    x = _field((2, 4, 5), seed=8)
    g = _guide((2, 2, 8, 10), seed=9)
    kw = {"method": "dip-ensemble", "members": 3, "extras": True, "guide": g, **GUIDED}
    one = downscale_array(x, factor=2, max_batch=3, **kw)
    split = downscale_array(x, factor=2, max_batch=2, **kw)
    np.testing.assert_allclose(split.members, one.members, rtol=0, atol=1e-5)
    np.testing.assert_allclose(split.std, one.std, rtol=0, atol=1e-5)


def test_guided_periodic_nan_and_weights():
    x = _field((1, 4, 6), seed=2)
    x[0, 0, 0] = np.nan
    f = 4
    w = np.linspace(0.5, 2.0, 16)[:, None] * np.ones((16, 24))
    g = _guide((1, 16, 24), seed=3)
    y = downscale_array(x, factor=f, method="dip", weights=w, periodic=True, guide=g, **GUIDED)
    keep = upsample(np.isfinite(x), f)
    assert np.isfinite(y[keep]).all() and np.isnan(y[~keep]).all()
    np.testing.assert_allclose(block_mean(y, f, weights=w), x, rtol=0, atol=1e-12)


def test_guided_float32_stays_float32():
    x = _field((5, 5)).astype(np.float32)
    g = _guide((1, 10, 10)).astype(np.float32)
    y = downscale_array(x, factor=2, method="dip", guide=g, **GUIDED)
    assert y.dtype == np.float32
    assert conservation_error(y.astype(np.float64), x.astype(np.float64), 2) < 2e-6


def test_guided_latent_uncertainty():
    x = _field((4, 4), seed=7)
    g = _guide((1, 8, 8))
    m = get_method("dip", uncertainty="latent", latent_samples=3, **GUIDED)
    res = downscale_array(x, factor=2, method=m, extras=True, guide=g)
    assert res.members.shape == (3, 8, 8)
    assert (res.std >= 0).all() and res.std.max() > 0
    for s in res.members:
        assert conservation_error(s, x, 2) < 1e-12


def test_guided_is_deterministic_on_cpu():
    x = _field((5, 6), seed=1)
    g = _guide((1, 20, 24))
    a = downscale_array(x, factor=4, method="dip", seed=3, guide=g, **GUIDED)
    b = downscale_array(x, factor=4, method="dip", seed=3, guide=g, **GUIDED)
    np.testing.assert_array_equal(a, b)


def test_guide_options():
    with pytest.raises(OptionError, match="guide_network must be True or False"):
        DIP(guide_network="yes")  # type: ignore[arg-type]
    with pytest.raises(OptionError, match="guide_significance must be a finite number >= 0"):
        DIP(guide_significance=-1.0)
    assert "guide_network" not in DIP().options()
    assert DIP(guide_network=False, guide_significance=2.0).options()["guide_significance"] == 2.0


# ----------------------------------------------------------------------------------------
# what the guide path does
# ----------------------------------------------------------------------------------------
def _twin(seed=0, ny=16, f=4, b=1.0, noise=0.02):
    """Truth = smooth part + b * guide anomaly + small noise, and the guide (fine grid)."""
    rng = np.random.default_rng(seed)
    H = ny * f
    yy, xx = np.meshgrid(np.linspace(0, 1, H), np.linspace(0, 1, H), indexing="ij")
    smooth = 2.0 * np.sin(2 * np.pi * (xx + 0.3 * yy)) + np.cos(3 * np.pi * yy)
    smooth = smooth + 0.5 * _smooth_noise(rng, (H, H), 2.0 * f)
    guide = _smooth_noise(rng, (H, H), 0.5 * f) + 0.5 * _smooth_noise(rng, (H, H), 2.0 * f)
    truth = smooth + b * (guide - guide.mean()) + noise * rng.normal(size=(H, H))
    return truth, guide


def test_the_fit_finds_the_guide_coefficient_and_gates_noise():
    truth, guide = _twin(seed=1)
    x = torch.from_numpy(block_mean(truth, 4))[None]
    g = torch.from_numpy(guide)[None, None]
    fit = fit_dip(x, 4, iterations=1, guide=g)
    assert torch.isfinite(fit.members).all()
    from xsr.methods.dip import _guide_parts, _normalise

    xn, _mu, sd = _normalise(x)
    ok = torch.ones(1, 1, 16, 16, dtype=torch.bool)
    H = 64
    w = torch.ones(H, H, dtype=torch.float64)
    base = torch.nn.functional.interpolate(xn[:, None], size=(H, H), mode="bicubic")
    target = xn[:, None] - block_mean(base, 4)
    parts = _guide_parts(g, xn, ok, target, ok / ok.sum(), w, None, 4, 1, 4.0)
    # in physical units the coefficient is b = 1 (truth = smooth + guide + noise)
    b = float(parts.beta[0, 0]) * float(sd) / float(g.std())
    assert 0.8 < b < 1.2
    assert float(parts.gate[0, 0]) > 0.9
    rng = np.random.default_rng(2)
    noise = torch.from_numpy(rng.normal(size=(1, 1, H, H)))
    parts = _guide_parts(noise, xn, ok, target, ok / ok.sum(), w, None, 4, 1, 4.0)
    assert float(parts.t[0, 0]) < 4.0
    assert float(parts.gate[0, 0]) == 0.0
    assert float(parts.beta[0, 0]) == 0.0


def test_guided_dip_beats_unguided_and_a_noise_guide_does_not_hurt():
    """Skill: a guide that explains the fine structure helps, a guide of noise does not hurt.

    16 x 16 coarse cells at x4, one member, 100 iterations, two truths (5-9 s on 2 cores).  Measured
    when written (seeds 0-3): guided / unguided RMSE 0.12-0.19, noise guide / unguided
    0.99-1.02.
    """
    f = 4
    opts = {"iterations": 100, "progress": False}
    ratios, noise_ratios = [], []
    for seed in (0, 1):
        truth, guide = _twin(seed=seed, f=f)
        x = block_mean(truth, f)

        def rmse(y, truth=truth):
            return float(np.sqrt(np.mean((y - truth) ** 2)))

        bicubic = rmse(downscale_array(x, factor=f, method="bicubic"))
        plain = rmse(downscale_array(x, factor=f, method="dip", **opts))
        guided = rmse(downscale_array(x, factor=f, method="dip", guide=guide[None], **opts))
        noise = np.random.default_rng(100 + seed).normal(size=(1, *truth.shape))
        noisy = rmse(downscale_array(x, factor=f, method="dip", guide=noise, **opts))
        assert plain < bicubic
        ratios.append(guided / plain)
        noise_ratios.append(noisy / plain)
    assert max(ratios) < 0.5, ratios
    assert max(noise_ratios) <= 1.05, noise_ratios


def test_gridmet_temperature_with_elevation_through_the_accessor():
    """The real case of benchmarks/bench_guided.py at x8, in brief, as a user runs it: the
    1-arcmin elevation on its own grid, a Dataset, ``ds.sr.downscale(guide=)``.  The guide
    must help a lot (the full run: 0.57-0.60 of bicubic's RMSE), the shuffled elevation must
    not hurt (the gate closes), and both conserve exactly."""
    import xarray as xr
    from conftest import shared_file

    tpath = shared_file("tasmax_gridmet_24thdeg_20190121.nc")
    epath = shared_file("elevation_colorado_1arcmin.nc")
    with xr.open_dataset(tpath) as t, xr.open_dataset(epath) as e:
        crop = t[["air_temperature"]].sel(lat=slice(42.98, 36.0), lon=slice(-110, -102))
        crop = crop.isel(lat=slice(0, 160)).drop_vars(["crs", "day"], errors="ignore")
        crop = crop.astype("float64").load()
        elev = e["z"].astype("float64").load().rename("elevation")
    elev.attrs["units"] = "m"
    perm = np.random.default_rng(0).permutation(elev.values.ravel())
    shuffled = elev.copy(data=perm.reshape(elev.shape))
    coarse = crop.sr.coarsen(factor=8)
    truth = crop["air_temperature"].values

    def rmse(ds):
        return float(np.sqrt(np.mean((ds["air_temperature"].values - truth) ** 2)))

    bic = rmse(coarse.sr.downscale(factor=8, method="bicubic"))
    opts = {"members": 2, "iterations": 30, "progress": False}
    out = {}
    for name, g in (("elevation", elev), ("shuffled", shuffled)):
        fine = coarse.sr.downscale(factor=8, method="dip-ensemble", guide=g, **opts)
        back = fine[["air_temperature"]].sr.coarsen(factor=8)["air_temperature"]
        c = coarse["air_temperature"]
        assert float(np.abs(back - c).max() / np.abs(c).max()) < 1e-12
        assert "elevation" in fine["air_temperature"].attrs["xsr_guide"]
        out[name] = rmse(fine) / bic
    assert out["elevation"] < 0.7
    assert out["shuffled"] < 1.02
