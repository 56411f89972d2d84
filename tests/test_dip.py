"""Deep image prior: generators, batched fits, ensembles, extras through the API and CLI.

Tiny grids and a few iterations: these tests check shapes, exact conservation, masking,
determinism and that a batched ensemble is K independent fits, not the quality of the fit
(that is the benchmark's job, ``benchmarks/bench_dip.py``).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

from xsr.cli import main
from xsr.conserve import block_mean, conservation_error, upsample
from xsr.exceptions import OptionError
from xsr.methods import downscale_array, get_method
from xsr.methods.dip import DIP, DIPEnsemble, fit_dip
from xsr.nn.generators import (
    DecoderGenerator,
    MemberNorm,
    StudyGenerator,
    build_generator,
    count_parameters,
)
from xsr.testing import assert_conserves, lonlat_dataset

FAST = {"iterations": 8, "progress": False}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _field(shape, seed=0):
    rng = np.random.default_rng(seed)
    ny, nx = shape[-2:]
    yy, xx = np.meshgrid(np.linspace(0, 3, ny), np.linspace(0, 4, nx), indexing="ij")
    base = np.broadcast_to(np.sin(xx + yy), shape)
    return base + 0.2 * rng.normal(size=shape)


# ----------------------------------------------------------------------------------------
# generators
# ----------------------------------------------------------------------------------------
def test_study_generator_has_the_papers_size():
    g = StudyGenerator(1, (256, 256))
    # 100 -> 512 (4x4 transposed conv), six blocks 512 -> 8 channels, 3x3 conv to one
    assert count_parameters(g) == 2_393_777
    assert g.latent.shape == (1, 100, 1, 1)


@pytest.mark.parametrize("name", ["study", "decoder"])
@pytest.mark.parametrize("shape", [(24, 40), (7, 13), (64, 64), (1, 5)])
def test_generators_give_any_output_size(name, shape):
    opts = {"width": 16} if name == "study" else {}
    g = build_generator(name, 2, shape, seeds=[0, 1], **opts)
    y = g()
    assert y.shape == (2, 1, *shape)
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("cls", [StudyGenerator, DecoderGenerator])
def test_member_k_of_a_batch_is_the_network_of_seed_k(cls):
    opts = {"width": 32} if cls is StudyGenerator else {}
    batch = cls(3, (20, 28), seeds=[5, 6, 7], **opts)
    for k, seed in enumerate([5, 6, 7]):
        one = cls(1, (20, 28), seeds=[seed], **opts)
        torch.testing.assert_close(batch()[k], one()[0], rtol=1e-5, atol=1e-5)
    # different seeds give different networks
    assert not torch.allclose(batch()[0], batch()[1])


def test_member_statistics_do_not_mix():
    norm = MemberNorm(2, 3)
    x = torch.randn(2, 3, 8, 8)
    y = norm(x)
    x2 = x.clone()
    x2[0] = 100.0 * x2[0] + 5.0  # change member 0 only
    y2 = norm(x2)
    torch.testing.assert_close(y2[1], y[1])
    # per member and channel: zero mean, unit variance
    torch.testing.assert_close(y.mean(dim=(-2, -1)), torch.zeros(2, 3), atol=1e-5, rtol=0)


def test_build_generator_rejects_unknown_names():
    with pytest.raises(ValueError, match="unknown generator 'unet'"):
        build_generator("unet", 1, (8, 8))  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------
# the array pipeline
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("factor", [2, 3, 5])
def test_dip_shapes_conservation_and_masking(factor):
    x = _field((2, 5, 6))
    x[1, :2, :2] = np.nan
    y = downscale_array(x, factor=factor, method="dip", **FAST)
    assert y.shape == (2, 5 * factor, 6 * factor)
    keep = upsample(np.isfinite(x), factor)
    assert np.isfinite(y[keep]).all()
    assert np.isnan(y[~keep]).all()
    assert conservation_error(y, x, factor) < 1e-12


def test_dip_study_configuration_conserves():
    x = _field((6, 6))
    y = downscale_array(x, factor=4, method="dip", generator="study", iterations=3)
    assert y.shape == (24, 24)
    assert conservation_error(y, x, 4) < 1e-12


def test_dip_with_fine_mask_weights_and_periodic_halo():
    x = _field((1, 4, 6), seed=2)
    f = 4
    w = np.linspace(0.5, 2.0, 16)[:, None] * np.ones((16, 24))
    mask = np.ones((16, 24), bool)
    mask[:5, :3] = False
    y = downscale_array(x, factor=f, method="dip", weights=w, mask=mask, periodic=True, **FAST)
    assert np.isnan(y[0][~mask]).all()
    assert np.isfinite(y[0][mask]).all()
    np.testing.assert_allclose(block_mean(y, f, weights=w), x, rtol=0, atol=1e-12)


def test_dip_float32_input_stays_float32():
    x = _field((5, 5)).astype(np.float32)
    y = downscale_array(x, factor=2, method="dip", **FAST)
    assert y.dtype == np.float32
    assert conservation_error(y.astype(np.float64), x.astype(np.float64), 2) < 2e-6


def test_dip_is_deterministic_on_cpu_and_depends_on_the_seed():
    x = _field((5, 6), seed=1)
    a = downscale_array(x, factor=4, method="dip", seed=3, **FAST)
    b = downscale_array(x, factor=4, method="dip", seed=3, **FAST)
    c = downscale_array(x, factor=4, method="dip", seed=4, **FAST)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 1e-6


def test_dip_fit_reduces_the_misfit():
    x = torch.from_numpy(_field((1, 6, 6)))
    short = fit_dip(x, 4, iterations=1, seed=0)
    longer = fit_dip(x, 4, iterations=40, seed=0)
    assert float(longer.loss.max()) < 0.1 * float(short.loss.min())
    assert longer.members.shape == (1, 1, 24, 24)


def test_noise_std_stops_at_the_noise_level():
    x = torch.from_numpy(_field((1, 6, 6)))
    sd = float(x.std())
    fit = fit_dip(x, 4, iterations=100, noise_std=0.5 * sd, seed=0)
    assert fit.iterations < 100
    # it stopped once the misfit went below the noise level, not far below it
    misfit = float(fit.loss.sqrt().max()) * sd
    assert misfit <= 0.5 * sd
    full = fit_dip(x, 4, iterations=100, seed=0)
    assert float(full.loss.max()) < float(fit.loss.min())


def test_leading_dims_are_independent_fields():
    x = _field((2, 5, 5), seed=4)
    both = downscale_array(x, factor=2, method="dip", **FAST)
    for t in range(2):
        alone = downscale_array(x[t], factor=2, method="dip", **FAST)
        np.testing.assert_allclose(both[t], alone, rtol=0, atol=1e-5)


# ----------------------------------------------------------------------------------------
# ensembles
# ----------------------------------------------------------------------------------------
def test_ensemble_batch_equals_independent_fits():
    x = _field((5, 6), seed=5)
    res = downscale_array(
        x,
        factor=3,
        method="dip-ensemble",
        members=3,
        seed=10,
        keep_members=True,
        extras=True,
        **FAST,
    )
    assert res.members.shape == (3, 15, 18)
    for k in range(3):
        single = downscale_array(x, factor=3, method="dip", seed=10 + k, **FAST)
        np.testing.assert_allclose(res.members[k], single, rtol=0, atol=1e-4)
        assert conservation_error(res.members[k], x, 3) < 1e-12
    # the field is the (enforced) mean of the enforced members
    np.testing.assert_allclose(res.fine, res.members.mean(axis=0), rtol=0, atol=1e-12)
    np.testing.assert_allclose(res.std, res.members.std(axis=0, ddof=1), rtol=0, atol=1e-12)
    assert conservation_error(res.fine, x, 3) < 1e-12


def test_members_in_several_batches_equal_one_batch():
    x = _field((2, 4, 5), seed=8)
    one = downscale_array(
        x, factor=2, method="dip-ensemble", members=3, extras=True, max_batch=3, **FAST
    )
    split = downscale_array(
        x, factor=2, method="dip-ensemble", members=3, extras=True, max_batch=2, **FAST
    )
    np.testing.assert_allclose(split.members, one.members, rtol=0, atol=1e-5)
    np.testing.assert_allclose(split.std, one.std, rtol=0, atol=1e-5)
    # on the CPU the default batch keeps members x fields x network cells within 2**18
    from xsr.methods.dip import _cpu_chunk

    m = DIPEnsemble(members=10)
    assert _cpu_chunk(1, 16, 16, 16, m) == 10  # x16 to 256 x 256: one batch
    assert _cpu_chunk(1, 32, 32, 8, m) == 10  # x8 to 256 x 256: one batch
    assert _cpu_chunk(1, 64, 64, 4, m) == 4  # x4 to 256 x 256: batches of 4
    assert _cpu_chunk(100, 64, 64, 4, m) == 1


def test_ensemble_std_is_non_negative_and_masked():
    x = _field((2, 4, 5), seed=6)
    x[0, 0, 0] = np.nan
    res = downscale_array(x, factor=2, method="dip-ensemble", members=2, extras=True, **FAST)
    keep = upsample(np.isfinite(x), 2)
    assert res.std.shape == (2, 8, 10)
    assert (res.std[keep] >= 0).all()
    assert res.std[keep].max() > 0
    assert np.isnan(res.std[~keep]).all()
    assert res.members is not None and res.members.shape == (2, 2, 8, 10)


def test_latent_uncertainty_samples_around_the_fit():
    x = _field((4, 4), seed=7)
    m = get_method("dip", uncertainty="latent", latent_samples=3, **FAST)
    assert m.n_members == 3
    assert m.extra_outputs == ("std",)
    res = downscale_array(x, factor=2, method=m, extras=True)
    assert res.members.shape == (3, 8, 8)
    assert res.std.shape == (8, 8)
    assert (res.std >= 0).all() and res.std.max() > 0
    for s in res.members:
        assert conservation_error(s, x, 2) < 1e-12
    e = get_method("dip-ensemble", members=2, uncertainty="latent", latent_samples=2)
    assert e.n_members == 4


def test_progress_bar_shows_the_loss(capsys):
    x = _field((4, 4))
    downscale_array(x, factor=2, method="dip", iterations=10, progress=True)
    err = capsys.readouterr().err
    assert "loss=" in err
    downscale_array(x, factor=2, method="dip", iterations=10, progress=False)
    assert "loss=" not in capsys.readouterr().err


def test_option_errors():
    with pytest.raises(OptionError, match="members must be an integer >= 2"):
        DIPEnsemble(members=1)
    with pytest.raises(OptionError, match="generator must be one of"):
        DIP(generator="unet")  # type: ignore[arg-type]
    with pytest.raises(OptionError, match="uncertainty must be one of"):
        DIP(uncertainty="ensemble")
    with pytest.raises(OptionError, match="keep_members=True needs samples"):
        DIP(keep_members=True)
    with pytest.raises(OptionError, match="iterations must be an integer >= 1"):
        DIP(iterations=0)
    with pytest.raises(OptionError, match="noise_std must be a finite number >= 0"):
        DIP(noise_std=-1.0)
    with pytest.raises(OptionError, match="does not take the option"):
        get_method("dip", members=3)
    assert DIP(generator="study").options()["iterations"] == 1500
    assert DIP(generator="study").options()["lr"] == 1e-3


# ----------------------------------------------------------------------------------------
# xarray and the command line
# ----------------------------------------------------------------------------------------
def _ds():
    ds = lonlat_dataset(8, 10, nt=2)[["sst"]]
    ds["sst"].attrs.update(standard_name="sea_surface_temperature", units="K")
    return ds


def test_dataset_gets_std_with_cf_attrs():
    ds = _ds()
    fine = ds.sr.downscale(factor=2, method="dip-ensemble", members=2, seed=0, **FAST)
    assert set(fine.data_vars) >= {"sst", "sst_std"}
    assert fine["sst_std"].dims == fine["sst"].dims == ds["sst"].dims
    assert fine["sst_std"].shape == (2, 16, 20)
    sd = fine["sst_std"].attrs
    assert sd["standard_name"] == "sea_surface_temperature standard_error"
    assert sd["units"] == "K"
    assert fine["sst"].attrs["ancillary_variables"] == "sst_std"
    assert fine["sst"].attrs["xsr_members"] == 2
    assert_conserves(fine[["sst"]], ds, 2)
    ok = fine["sst"].notnull().values
    assert (fine["sst_std"].values[ok] >= 0).all()
    assert bool(fine["sst_std"].isnull().equals(fine["sst"].isnull()))


def test_keep_members_adds_a_member_dimension():
    ds = _ds()
    fine = ds.sr.downscale(factor=2, method="dip-ensemble", members=3, keep_members=True, **FAST)
    mem = fine["sst_members"]
    assert mem.dims == ("member", *ds["sst"].dims)
    assert mem.sizes["member"] == 3
    np.testing.assert_array_equal(mem["member"].values, [0, 1, 2])
    np.testing.assert_allclose(mem.mean("member"), fine["sst"], rtol=0, atol=1e-12)
    for k in range(3):
        assert_conserves(mem.isel(member=k, drop=True).to_dataset(name="sst"), ds, 2)


def test_dataarray_in_dataarray_out():
    ds = _ds()
    da = ds["sst"]
    out = da.sr.downscale(factor=2, method="dip-ensemble", members=2, **FAST)
    assert isinstance(out, xr.DataArray)
    assert out.shape == (2, 16, 20)
    via_ds = da.to_dataset().sr.downscale(factor=2, method="dip-ensemble", members=2, **FAST)
    np.testing.assert_allclose(out.values, via_ds["sst"].values, rtol=0, atol=1e-12)
    assert "sst_std" in via_ds
    with pytest.raises(OptionError, match=r"da\.to_dataset"):
        da.sr.downscale(factor=2, method="dip-ensemble", members=2, keep_members=True, **FAST)


def test_dask_input_stays_lazy_and_matches():
    ds = _ds()
    eager = ds.sr.downscale(factor=2, method="dip-ensemble", members=2, keep_members=True, **FAST)
    lazy = ds.chunk({"time": 1}).sr.downscale(
        factor=2, method="dip-ensemble", members=2, keep_members=True, **FAST
    )
    assert lazy["sst_std"].chunks is not None
    assert lazy["sst_members"].chunks is not None
    # in this thread: torch's thread count (set to 1 above) changes float32 round-off, which
    # the fit amplifies; dask's worker threads keep the process default
    xr.testing.assert_allclose(lazy.compute(scheduler="synchronous"), eager, atol=1e-5)


def test_cli_dip_ensemble(tmp_path, capsys):
    src = tmp_path / "in.nc"
    _ds().to_netcdf(src)
    dst = tmp_path / "out.nc"
    argv = ["downscale", str(src), str(dst), "-f", "2", "--method", "dip-ensemble"]
    rc = main([*argv, "--members", "2", "--iterations", "3", "--seed", "1"])
    assert rc == 0
    assert "max relative conservation error" in capsys.readouterr().out
    out = xr.open_dataset(dst).load()
    assert "sst_std" in out
    assert out["sst"].attrs["xsr_members"] == 2
    assert out["sst"].attrs["xsr_iterations"] == 3
    assert out["sst"].attrs["xsr_seed"] == 1
    assert_conserves(out[["sst"]], _ds(), 2)


def test_uncertainty_figure_panels_and_correlation():
    mpl = pytest.importorskip("matplotlib")
    mpl.use("Agg")
    import matplotlib.pyplot as plt

    from xsr.exceptions import ShapeError
    from xsr.plot import uncertainty_figure

    ds = _ds()
    fine = ds.sr.downscale(factor=2, method="dip-ensemble", members=2, **FAST)
    truth = fine["sst"] + 0.1  # any field on the fine grid serves as the "truth"
    fig = uncertainty_figure(
        truth.isel(time=0),
        ds["sst"].isel(time=0),
        fine["sst"].isel(time=0),
        fine["sst_std"].isel(time=0),
        title="t",
    )
    try:
        panels = [a for a in fig.axes if a.get_title()]
        assert [a.get_title() for a in panels[:4]] == [
            "truth",
            "coarse",
            "downscaled",
            "ensemble std",
        ]
        assert "rmse 0.1" in panels[4].get_title()  # |error| is 0.1 everywhere on the ocean
        assert len(fig.axes) == 5 + 3  # five panels, three colour bars
    finally:
        plt.close(fig)
    c = ds["sst"].isel(time=0)  # a coarse field where a fine one belongs
    with pytest.raises(ShapeError, match="truth's grid"):
        uncertainty_figure(truth.isel(time=0), c, c, fine["sst_std"].isel(time=0))
