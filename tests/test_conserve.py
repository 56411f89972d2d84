"""Properties of the block mean and the enforcement operators (xsr.conserve)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from xsr.conserve import (
    Enforce,
    block_mean,
    check_factor,
    conservation_error,
    enforce,
    upsample,
)
from xsr.exceptions import BoundsError, FactorError, InputValueError, OptionError, ShapeError

MODES = [
    ("additive", None),
    ("multiplicative", None),
    ("bounded", (0.0, None)),
    ("bounded", (None, 1.0)),
    ("bounded", (0.0, 1.0)),
]


def reference_block_mean(fine, f, weights=None, mask=None):
    """Independent numpy path: loops over blocks."""
    fine = np.asarray(fine, np.float64)
    *lead, ny, nx = fine.shape
    w = np.ones(fine.shape[-2:]) if weights is None else np.broadcast_to(weights, fine.shape[-2:])
    m = np.ones(fine.shape, bool) if mask is None else np.broadcast_to(mask, fine.shape)
    out = np.full((*lead, ny // f, nx // f), np.nan)
    for idx in np.ndindex(*lead) if lead else [()]:
        for j in range(ny // f):
            for i in range(nx // f):
                blk = fine[(*idx, slice(j * f, j * f + f), slice(i * f, i * f + f))]
                wb = w[j * f : j * f + f, i * f : i * f + f]
                mb = m[(*idx, slice(j * f, j * f + f), slice(i * f, i * f + f))] & np.isfinite(blk)
                if mb.any():
                    out[(*idx, j, i)] = (blk[mb] * wb[mb]).sum() / wb[mb].sum()
    return out


@st.composite
def problems(draw):
    f = draw(st.integers(2, 5))
    ny = draw(st.integers(1, 4))
    nx = draw(st.integers(1, 4))
    lead = draw(st.sampled_from([(), (2,), (1, 2)]))
    seed = draw(st.integers(0, 2**31 - 1))
    mode, bounds = draw(st.sampled_from(MODES))
    dtype = draw(st.sampled_from([np.float64, np.float32]))
    use_w = draw(st.booleans())
    nan_frac = draw(st.sampled_from([0.0, 0.2]))
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0.05, 0.95, (*lead, ny, nx))
    if draw(st.booleans()):
        coarse = coarse * 100 - 20 if mode == "additive" else coarse
    coarse[rng.random(coarse.shape) < nan_frac] = np.nan
    if mode == "bounded" and bounds == (None, 1.0):
        coarse = coarse - 3.0  # far below the upper bound, negative values allowed
    fine = upsample(np.nan_to_num(coarse, nan=0.5), f) + rng.normal(0, 0.5, (*lead, ny * f, nx * f))
    if draw(st.booleans()):
        fine[..., 0, 0] = 0.0  # exact zeros: multiplicative zero-mean blocks
    w = rng.uniform(0.2, 2.0, (ny * f, nx * f)) if use_w else None
    mask = None
    if draw(st.booleans()):
        mask = rng.random((ny * f, nx * f)) > 0.5
        mask[::f, ::f] = True  # at least one valid fine cell per coarse cell
    return f, coarse.astype(dtype), fine.astype(dtype), mode, bounds, w, mask


@given(problems())
def test_enforce_conserves(problem):
    f, coarse, fine, mode, bounds, w, mask = problem
    out = enforce(fine, coarse, f, mode, weights=w, bounds=bounds, mask=mask)
    assert out.dtype == fine.dtype
    assert out.shape == fine.shape
    bm = reference_block_mean(out.astype(np.float64), f, w)
    ok = np.isfinite(coarse)
    tol = 1e-12 if fine.dtype == np.float64 else 2e-6
    scale = np.abs(coarse[ok]).max() if ok.any() else 1.0
    assert np.all(np.abs(bm[ok] - coarse[ok].astype(np.float64)) <= tol * scale)
    # NaN exactly where the coarse cell is NaN or the fine cell is masked
    expected_nan = np.isnan(upsample(coarse, f))
    if mask is not None:
        expected_nan = expected_nan | ~mask
    assert np.array_equal(np.isnan(out), expected_nan)
    if (mode == "multiplicative" or bounds is not None) and np.isfinite(out).any():
        lo, hi = bounds if bounds is not None else (0.0, None)
        if lo is not None:
            assert np.nanmin(out) >= lo - 1e-6
        if hi is not None:
            assert np.nanmax(out) <= hi + 1e-6


@given(
    st.integers(2, 6),
    st.integers(1, 5),
    st.integers(1, 5),
    st.integers(0, 10_000),
    st.booleans(),
)
def test_block_mean_matches_reference(f, ny, nx, seed, masked):
    rng = np.random.default_rng(seed)
    fine = rng.normal(size=(3, ny * f, nx * f))
    w = rng.uniform(0.1, 1.0, (ny * f, nx * f))
    mask = rng.random(fine.shape) > 0.3 if masked else None
    fine[rng.random(fine.shape) < 0.1] = np.nan
    got = block_mean(fine, f, weights=w, mask=mask)
    want = reference_block_mean(fine, f, w, mask)
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-15)
    assert np.array_equal(np.isnan(got), np.isnan(want))


def test_block_mean_agrees_with_xarray_coarsen():
    xr = pytest.importorskip("xarray")
    rng = np.random.default_rng(0)
    fine = rng.normal(size=(12, 20))
    da = xr.DataArray(fine, dims=("y", "x"))
    np.testing.assert_allclose(block_mean(fine, 4), da.coarsen(y=4, x=4).mean().values, rtol=1e-14)


def test_enforce_with_fine_mask_conserves_over_valid_cells():
    rng = np.random.default_rng(1)
    coarse = rng.normal(size=(4, 5))
    fine = rng.normal(size=(16, 20))
    mask = rng.random((16, 20)) > 0.4
    mask[::4, ::4] = True  # at least one valid cell per block
    out = enforce(fine, coarse, 4, "additive", mask=mask)
    assert np.isnan(out[~mask]).all()
    assert np.isfinite(out[mask]).all()
    np.testing.assert_allclose(reference_block_mean(out, 4), coarse, rtol=0, atol=1e-13)


def test_multiplicative_zero_block_is_uniform():
    coarse = np.array([[0.0, 2.0], [3.0, 0.0]])
    fine = np.zeros((4, 4))
    fine[:2, 2:] = 0.0  # zero-mean block with positive target
    out = enforce(fine, coarse, 2, "multiplicative")
    assert np.isfinite(out).all()
    np.testing.assert_array_equal(out, upsample(coarse, 2))


def test_bounded_no_nan_when_mean_already_matches():
    coarse = np.array([[0.5]])
    fine = np.array([[0.25, 0.75], [0.75, 0.25]])
    out = enforce(fine, coarse, 2, "bounded", bounds=(0.0, 1.0))
    np.testing.assert_array_equal(out, fine)
    # a block at the upper bound whose target equals it
    out = enforce(np.ones((2, 2)), np.array([[1.0]]), 2, "bounded", bounds=(0.0, 1.0))
    np.testing.assert_array_equal(out, np.ones((2, 2)))


def test_mode_none_is_identity_outside_masks():
    fine = np.arange(16.0).reshape(4, 4)
    coarse = np.array([[1.0, np.nan], [2.0, 3.0]])
    out = enforce(fine, coarse, 2, None)
    assert np.isnan(out[:2, 2:]).all()
    np.testing.assert_array_equal(out[2:], fine[2:])


@pytest.mark.parametrize(("mode", "bounds"), MODES)
def test_torch_gradients_finite(mode, bounds):
    torch.manual_seed(0)
    y = torch.rand(2, 8, 8, dtype=torch.float64, requires_grad=True)
    x = torch.rand(2, 2, 2, dtype=torch.float64) * 0.9 + 0.05
    out = enforce(y, x, 4, mode, bounds=bounds)
    out.square().sum().backward()
    assert y.grad is not None
    assert torch.isfinite(y.grad).all()
    assert torch.autograd.gradcheck(lambda t: enforce(t, x, 4, mode, bounds=bounds), (y,))


def test_enforce_module_is_last_layer():
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Upsample(scale_factor=4), torch.nn.Conv2d(1, 1, 3, padding=1)
    )
    net = net.double()
    layer = Enforce(4, "additive", weights=torch.rand(16, 16, dtype=torch.float64) + 0.5)
    x = torch.rand(3, 1, 4, 4, dtype=torch.float64)
    y = layer(net(x), x)
    assert y.shape == (3, 1, 16, 16)
    err = conservation_error(y.detach(), x, 4, weights=layer.weights)
    assert err < 1e-12
    y.sum().backward()
    assert all(p.grad is not None for p in net.parameters())
    assert "factor=4" in repr(layer)
    # buffers move with the module and are saved in the state dict
    assert "weights" in layer.state_dict()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("mode", "bounds"), MODES)
def test_enforce_on_gpu(dtype, mode, bounds):
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(4, 16, 16, generator=g) * 0.9 + 0.05).to(dtype)
    y = torch.rand(4, 128, 128, generator=g).to(dtype)
    w = torch.rand(128, 128, generator=g) + 0.5
    out = enforce(y.cuda(), x.cuda(), 8, mode, bounds=bounds, weights=w.cuda())
    assert out.device.type == "cuda"
    assert out.dtype == dtype
    ref = enforce(y, x, 8, mode, bounds=bounds, weights=w)
    tol = 1e-12 if dtype == torch.float64 else 2e-6
    assert conservation_error(out.cpu(), x, 8, weights=w) < tol
    torch.testing.assert_close(out.cpu(), ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("bad", [0, 1, 2.5, -4, True, "4", None])
def test_factor_errors(bad):
    with pytest.raises(FactorError, match="integer >= 2"):
        check_factor(bad)


def test_factor_accepts_integral_values():
    assert check_factor(4.0) == 4
    assert check_factor(np.int64(8)) == 8


def test_enforce_errors():
    fine = np.ones((4, 4))
    with pytest.raises(InputValueError, match="non-negative"):
        enforce(fine, np.array([[-1.0, 1.0], [1.0, 1.0]]), 2, "multiplicative")
    with pytest.raises(BoundsError, match=r"outside bounds=\(0.0, 1.0\)"):
        enforce(fine, np.array([[2.0, 0.5], [0.5, 0.5]]), 2, "bounded", bounds=(0, 1))
    with pytest.raises(OptionError, match="needs bounds"):
        enforce(fine, np.ones((2, 2)), 2, "bounded")
    with pytest.raises(OptionError, match="conserve must be one of"):
        enforce(fine, np.ones((2, 2)), 2, "additiv")  # type: ignore[arg-type]
    with pytest.raises(InputValueError, match="infinite"):
        enforce(fine, np.array([[np.inf, 1.0], [1.0, 1.0]]), 2)
    with pytest.raises(ShapeError, match="does not match"):
        enforce(fine, np.ones((3, 2)), 2)
    with pytest.raises(ShapeError, match="not divisible"):
        block_mean(np.ones((5, 4)), 2)
    with pytest.raises(OptionError, match="lower < upper"):
        enforce(fine, np.ones((2, 2)), 2, "bounded", bounds=(1, 0))


@given(
    ny=st.integers(1, 6),
    nx=st.integers(1, 6),
    f=st.integers(2, 5),
    batch=st.integers(1, 3),
    mode=st.sampled_from(["additive", "multiplicative", "bounded"]),
    weighted=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
)
def test_enforce_layer_conserves_under_bfloat16_autocast(
    ny: int, nx: int, f: int, batch: int, mode: str, weighted: bool, seed: int
) -> None:
    """A network run in bfloat16 autocast still ends in fields that conserve (float32)."""
    torch.manual_seed(seed)
    net = torch.nn.Sequential(
        torch.nn.Upsample(scale_factor=f), torch.nn.Conv2d(1, 1, 3, padding=1)
    )
    w = torch.rand(ny * f, nx * f, dtype=torch.float64) + 0.5 if weighted else None
    bounds = (0.0, 10.0) if mode == "bounded" else None
    layer = Enforce(f, mode, weights=w, bounds=bounds)
    x = torch.rand(batch, 1, ny, nx) + 0.5
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        raw = net(x)
        y = layer(raw.abs() + 0.1, x)
    assert raw.dtype == torch.bfloat16
    assert y.dtype == torch.float32
    err = (block_mean(y.double(), f, weights=w) - x.double()).abs().max() / x.abs().max()
    assert float(err) < 2e-6
