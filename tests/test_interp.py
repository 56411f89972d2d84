"""The fast path of the interpolation methods: separable kernels, strips, enforce_into.

``downscale_array`` runs local methods (nearest, bilinear, bicubic) strip by strip of coarse
rows, each strip upscaled by separable matrix products and enforced by
:func:`xsr.conserve.enforce_into` straight into the result.  These tests hold it to a
straightforward reference computed here: ``torch.nn.functional.interpolate`` on the
periodically wrapped, NaN-filled field, cropped, then :func:`xsr.conserve.enforce` (the
whole-array, differentiable operator) -- on grids with land, weights, fine masks and a
periodic x axis, in float64 and float32; and they check that float32 stays float32 and
conserves to 2e-6.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import xarray as xr
from conftest import shared_file
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import Case, cases, field_names

import xsr
import xsr.methods.pipeline as pipeline
from xsr.conserve import conservation_error, enforce, enforce_into
from xsr.methods.interp import Bicubic, Bilinear, phase_weights
from xsr.methods.pipeline import downscale_array, fill_nan

RTOL = {np.dtype("float64"): 1e-12, np.dtype("float32"): 2e-6}
HALO = {"nearest": 0, "bilinear": 1, "bicubic": 2}


def _rel(got: np.ndarray, want: np.ndarray) -> float:
    ok = np.isfinite(want)
    scale = max(float(np.abs(want[ok]).max()), 1e-300) if ok.any() else 1.0
    return float(np.abs(got[ok] - want[ok]).max()) / scale if ok.any() else 0.0


# ------------------------------------------------------------------------------------------
# the separable kernels
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("factor", [2, 3, 4, 5, 8])
@pytest.mark.parametrize("method", [Bilinear(), Bicubic()], ids=["bilinear", "bicubic"])
@pytest.mark.parametrize("shape", [(1, 1), (1, 2), (2, 3), (7, 5), (3, 11, 9), (2, 2, 4, 6)])
def test_separable_kernels_equal_torch_interpolate(
    method: Bicubic, factor: int, dtype: torch.dtype, shape: tuple[int, ...]
) -> None:
    x = torch.randn(*shape, dtype=dtype, generator=torch.Generator().manual_seed(1))
    *lead, ny, nx = shape
    want = F.interpolate(
        x.reshape(-1, 1, ny, nx), size=(ny * factor, nx * factor), mode=method.mode,
        align_corners=False,
    ).reshape(*lead, ny * factor, nx * factor)  # fmt: skip
    got = method.upscale(x, factor)
    assert got.dtype == dtype
    assert got.shape == want.shape
    tol = 1e-13 if dtype == torch.float64 else 1e-5
    assert float((got - want).abs().max()) <= tol


@pytest.mark.parametrize("mode", ["bilinear", "bicubic"])
@pytest.mark.parametrize("factor", [2, 3, 4, 7])
def test_phase_weights_sum_to_one(mode: str, factor: int) -> None:
    w = np.array(phase_weights(factor, mode))
    assert w.shape == (factor, 3 if mode == "bilinear" else 5)
    np.testing.assert_allclose(w.sum(axis=1), 1.0, rtol=0, atol=1e-15)


# ------------------------------------------------------------------------------------------
# NaN filling
# ------------------------------------------------------------------------------------------
def _fill_reference(x: torch.Tensor, iterations: int) -> torch.Tensor:
    """The NaN filling as it was written first: 3 x 3 convolutions with a kernel of ones."""
    valid = torch.isfinite(x)
    *lead, ny, nx = x.shape
    v = torch.where(valid, x, torch.zeros(())).reshape(-1, 1, ny, nx)
    m = valid.reshape(-1, 1, ny, nx).to(x.dtype)
    k = torch.ones(1, 1, 3, 3, dtype=x.dtype)
    for _ in range(iterations):
        s = F.conv2d(F.pad(v * m, (1, 1, 1, 1)), k)
        c = F.conv2d(F.pad(m, (1, 1, 1, 1)), k)
        new = (m == 0) & (c > 0)
        if not bool(new.any()):
            break
        v = torch.where(new, s / torch.where(c > 0, c, torch.ones_like(c)), v)
        m = torch.where(new, torch.ones_like(m), m)
    mean = (v * m).reshape(v.shape[0], -1).sum(1) / m.reshape(m.shape[0], -1).sum(1).clamp(min=1)
    return torch.where(m > 0, v, mean[:, None, None, None]).reshape(*lead, ny, nx)


@pytest.mark.parametrize("iterations", [1, 3])
@pytest.mark.parametrize("shape", [(9, 13), (2, 6, 5), (1, 1)])
def test_fill_nan_matches_the_convolution(shape: tuple[int, ...], iterations: int) -> None:
    rng = np.random.default_rng(3)
    a = rng.normal(size=shape)
    a[rng.random(shape) < 0.6] = np.nan
    a.reshape(-1)[0] = 1.5  # one valid cell at least
    x = torch.from_numpy(a)
    got = fill_nan(x, iterations)
    want = _fill_reference(x, iterations)
    assert bool(torch.isfinite(got).all())
    torch.testing.assert_close(got, want, rtol=1e-14, atol=1e-14)


# ------------------------------------------------------------------------------------------
# enforce_into against enforce
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["additive", "multiplicative", "bounded", None])
@pytest.mark.parametrize("weights", ["none", "full", "separable", "separable-uniform-x"])
@pytest.mark.parametrize("with_mask", [False, True])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_enforce_into_matches_enforce(
    mode: str | None, weights: str, with_mask: bool, dtype: torch.dtype
) -> None:
    g = torch.Generator().manual_seed(7)
    f, ny, nx = 3, 4, 5
    x = torch.rand(2, ny, nx, dtype=torch.float64, generator=g) + 0.5
    x[0, 1, 2] = float("nan")
    y = (torch.rand(2, ny * f, nx * f, dtype=torch.float64, generator=g) + 0.5).to(dtype)
    wy = torch.rand(ny * f, dtype=torch.float64, generator=g) + 0.5
    wx = torch.rand(nx * f, dtype=torch.float64, generator=g) + 0.5
    if weights == "separable-uniform-x":
        wx = torch.full_like(wx, 0.7)
    w_full = None if weights == "none" else wy[:, None] * wx[None, :]
    w_arg = w_full if weights in ("none", "full") else (wy, wx)
    mask = None
    if with_mask:
        mask = torch.rand(ny * f, nx * f, generator=g) < 0.8
        mask.reshape(ny, f, nx, f)[:, 0, :, 0] = True
    bounds = (0.0, 5.0) if mode == "bounded" else None
    want = enforce(y, x, f, mode, weights=w_full, mask=mask, bounds=bounds)  # type: ignore[arg-type]
    out = torch.empty_like(y)
    bad = enforce_into(out, y, x, f, mode, weights=w_arg, mask=mask, bounds=bounds)  # type: ignore[arg-type]
    assert bad == 0
    tol = 1e-14 if dtype == torch.float64 else 1e-6
    torch.testing.assert_close(out, want, rtol=tol, atol=tol, equal_nan=True)


def test_enforce_into_counts_nonfinite_first_guess_cells() -> None:
    f = 2
    x = torch.tensor([[1.0, float("nan")], [2.0, 3.0]], dtype=torch.float64)
    y = torch.ones(4, 4, dtype=torch.float64)
    y[0, 0] = float("nan")  # inside a valid coarse cell: counted, left out of the mean
    y[0, 3] = float("inf")  # inside the NaN coarse cell: not counted
    out = torch.empty_like(y)
    assert enforce_into(out, y, x, f, "additive") == 1
    assert bool(torch.isnan(out[0, 0]))
    np.testing.assert_allclose(float(out[0:2, 0:2].nansum()) / 3, 1.0, rtol=1e-15)


def test_enforce_into_writes_in_place() -> None:
    x = torch.tensor([[1.0, 2.0]], dtype=torch.float64)
    y = torch.arange(8, dtype=torch.float64).reshape(2, 4)
    want = enforce(y.clone(), x, 2)
    assert enforce_into(y, y, x, 2) == 0
    torch.testing.assert_close(y, want)


# ------------------------------------------------------------------------------------------
# downscale_array against a straightforward reference
# ------------------------------------------------------------------------------------------
def _reference(
    x: np.ndarray, f: int, method: str, *, weights=None, mask=None, periodic: bool,
    conserve: str | None = "additive", bounds=None,
) -> np.ndarray:  # fmt: skip
    """Wrap, fill, interpolate the whole field with torch, crop, enforce with ``enforce``."""
    h = min(HALO[method], x.shape[-1]) if periodic else 0
    xt = torch.from_numpy(x)
    g = min(h + HALO[method] + 1, x.shape[-1]) if h else 0
    xin = torch.cat([xt[..., -g:], xt, xt[..., :g]], dim=-1) if g else xt
    xin = _fill_reference(xin, HALO[method] + 1)
    if g > h:
        xin = xin[..., g - h : xin.shape[-1] - (g - h)]
    *lead, ny, nx = xin.shape
    y = F.interpolate(
        xin.reshape(-1, 1, ny, nx), size=(ny * f, nx * f), mode=method,
        **({} if method == "nearest" else {"align_corners": False}),
    ).reshape(*lead, ny * f, nx * f)  # fmt: skip
    if h:
        y = y[..., h * f : -h * f]
    out = enforce(y, xt, f, conserve, weights=weights, mask=mask, bounds=bounds)  # type: ignore[arg-type]
    return out.numpy()


@settings(deadline=None)
@given(
    ny=st.integers(1, 9),
    nx=st.integers(1, 9),
    lead=st.sampled_from([(), (2,), (2, 1)]),
    factor=st.integers(2, 5),
    method=st.sampled_from(["nearest", "bilinear", "bicubic"]),
    conserve=st.sampled_from(["additive", "additive", "multiplicative", "bounded", None]),
    land=st.sampled_from([0.0, 0.3, 0.6]),
    weights=st.sampled_from(["none", "full", "separable"]),
    with_mask=st.booleans(),
    periodic=st.booleans(),
    strips=st.sampled_from([None, 1]),
    dtype=st.sampled_from([np.float64, np.float32]),
    seed=st.integers(0, 2**16),
)
def test_downscale_array_matches_the_reference(
    ny: int, nx: int, lead: tuple[int, ...], factor: int, method: str, conserve: str | None,
    land: float, weights: str, with_mask: bool, periodic: bool, strips: int | None,
    dtype: type, seed: int,
) -> None:  # fmt: skip
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(*lead, ny, nx)) + 3.0
    if conserve in ("multiplicative", "bounded"):
        x = np.abs(x)
    x[..., rng.random((ny, nx)) < land] = np.nan
    x.reshape(-1)[0] = 2.0  # one valid cell at least
    f = factor
    wy, wx = rng.random(ny * f) + 0.5, rng.random(nx * f) + 0.5
    full = wy[:, None] * wx[None, :]
    w_arg = {"none": None, "full": full, "separable": (wy, wx)}[weights]
    w_ref = None if weights == "none" else torch.from_numpy(full)
    mask = None
    if with_mask:
        mask = rng.random((ny * f, nx * f)) < 0.7
        mask.reshape(ny, f, nx, f)[:, 0, :, 0] = True
    bounds = (0.0, 50.0) if conserve == "bounded" else None
    xd = x.astype(dtype)
    want = _reference(
        xd, f, method, weights=w_ref, mask=None if mask is None else torch.from_numpy(mask),
        periodic=periodic, conserve=conserve, bounds=bounds,
    )  # fmt: skip
    old = pipeline.STRIP_CELLS, pipeline.FILL_CELLS
    try:
        if strips is not None:  # one coarse row per strip, the smallest fill blocks
            pipeline.STRIP_CELLS, pipeline.FILL_CELLS = strips, 1
        got = downscale_array(
            xd, factor=f, method=method, conserve=conserve, bounds=bounds, weights=w_arg,
            mask=mask, periodic=periodic,
        )  # fmt: skip
    finally:
        pipeline.STRIP_CELLS, pipeline.FILL_CELLS = old
    assert got.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    # float32: torch's own float32 kernel rounds its sample positions at large indices
    assert _rel(got, want) <= (1e-13 if dtype == np.float64 else 2e-6)


@pytest.mark.parametrize("idle", [0, 1, 8])
def test_strip_workers_give_the_same_bits_and_restore_torch_threads(
    idle: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    n = torch.get_num_threads()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 40, 30))
    x[:, 5:12, 3:9] = np.nan
    w = (rng.random(160) + 0.5, rng.random(120) + 0.5)
    monkeypatch.setattr(pipeline, "STRIP_CELLS", 64)  # many strips
    monkeypatch.setattr(pipeline, "_idle_cores", lambda: 0)
    one = downscale_array(x, factor=4, method="bicubic", periodic=True, weights=w)
    monkeypatch.setattr(pipeline, "_idle_cores", lambda: idle)
    torch.set_num_threads(2)
    try:
        got = downscale_array(x, factor=4, method="bicubic", periodic=True, weights=w)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(n)
    np.testing.assert_array_equal(got, one)


# ------------------------------------------------------------------------------------------
# float32 stays float32, conserved to 2e-6
# ------------------------------------------------------------------------------------------
def _float32(obj: xr.Dataset | xr.DataArray, case: Case) -> xr.Dataset | xr.DataArray:
    if isinstance(obj, xr.DataArray):
        return obj.astype("float32")
    return obj.assign({n: obj[n].astype("float32") for n in field_names(obj, case.ydim, case.xdim)})


@settings(deadline=None)
@given(
    case=cases(dask=False),
    method=st.sampled_from(["nearest", "bilinear", "bicubic"]),
)
def test_float32_stays_float32_and_conserves(case: Case, method: str) -> None:
    obj = _float32(case.obj, case)
    fine = obj.sr.downscale(factor=case.factor, method=method)
    names = [None] if isinstance(obj, xr.DataArray) else field_names(obj, case.ydim, case.xdim)
    # the block means in float64, of the float32 result
    back = fine.astype("float64") if isinstance(fine, xr.DataArray) else fine.map(
        lambda v: v.astype("float64") if v.dtype == np.float32 else v
    )  # fmt: skip
    back = back.sr.coarsen(factor=case.factor)
    for n in names:
        a = obj if n is None else obj[n]
        b = fine if n is None else fine[n]
        c = back if n is None else back[n]
        assert b.dtype == np.float32, n
        want = np.asarray(a.values, np.float64)
        got = np.asarray(c.transpose(*a.dims).values, np.float64)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        assert _rel(got, want) <= RTOL[np.dtype("float32")], n


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_global_ssh_dtype_and_conservation(dtype: str) -> None:
    ds = xr.open_dataset(shared_file("ssh_global_quarterdeg_20190223.nc")).load()
    ds["adt"] = ds["adt"].astype(dtype)
    f = 4
    out = ds.sr.downscale(factor=f, method="bicubic")
    assert out["adt"].dtype == np.dtype(dtype)
    err = conservation_error(
        np.asarray(out["adt"].values[0], np.float64),
        np.asarray(ds["adt"].values[0], np.float64),
        f,
        weights=xsr.cell_areas(ds, factor=f),
    )
    assert err <= RTOL[np.dtype(dtype)]
    # the separable area factors give the full-plane weights' result
    full = ds.sr.downscale(factor=f, method="bicubic", weights=xsr.cell_areas(ds, factor=f))
    assert _rel(out["adt"].values, full["adt"].values) <= RTOL[np.dtype(dtype)] / 100


def test_float32_field_in_float64_when_asked() -> None:
    da = xr.DataArray(np.arange(12, dtype=np.float32).reshape(3, 4), dims=("y", "x"), name="v")
    assert da.sr.downscale(factor=2).dtype == np.float32
    out = da.sr.downscale(factor=2, dtype="float64")
    assert out.dtype == np.float64
    np.testing.assert_allclose(out.sr.coarsen(factor=2).values, da.values, rtol=1e-12)
