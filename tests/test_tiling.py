"""Tiled downscaling (xsr.tiling): equality with the untiled result, conservation across seams
and the dateline, laziness, blending of stochastic methods, CUDA out-of-memory retries."""

from __future__ import annotations

from typing import Any, ClassVar

import dask
import dask.array as da
import numpy as np
import pytest
import torch
import xarray as xr

import xsr
from xsr import tiling
from xsr.exceptions import OptionError, TileMemoryError
from xsr.methods.base import Method, Upscaled
from xsr.methods.interp import Bicubic
from xsr.testing import assert_conserves, lonlat_dataset, projected_dataset


class RaiseOnCompute:
    """A dask scheduler that fails the test if anything is computed."""

    def __call__(self, dsk, keys, **kwargs):
        raise AssertionError("dask computed something, but the call should stay lazy")


class NoisyBicubic(Method):
    """Bicubic plus noise that depends on the tile it sees: a stand-in for a stochastic
    method (seams between tiles are visible unless blended).  Each field's noise is seeded
    from its own values, so that the output does not depend on how tiles are batched."""

    name = "noisy-bicubic-test"
    halo: ClassVar[int] = 1
    stochastic: ClassVar[bool] = True

    def upscale(self, x: torch.Tensor, factor: int, **context: Any) -> Upscaled:
        y = Bicubic().upscale(x, factor)
        ny, nx = y.shape[-2:]
        flat = x.reshape(-1, *x.shape[-2:])
        noise = []
        for field in flat:
            seed = int(abs(float(torch.nan_to_num(field).sum())) * 1e6) % 2**31
            gen = torch.Generator().manual_seed(seed)
            noise.append(torch.randn((3, ny, nx), generator=gen, dtype=y.dtype))
        members = y[None] + 0.5 * torch.stack(noise, 1).reshape(3, *y.shape)
        return Upscaled(fine=members.mean(0), members=members)

    @property
    def extra_outputs(self) -> tuple[str, ...]:
        return ("std", "members")

    @property
    def n_members(self) -> int:
        return 3


def _global(ny=12, nx=24, nt=2, land=True):
    # a global 0..360 grid whose land mask reaches the dateline (x = 0 and x = nx - 1)
    ds = lonlat_dataset(ny=ny, nx=nx, nt=nt, global_grid=True, land=land)
    if land:
        ds["sst"][:, 3:6, -2:] = np.nan
    return ds


# ------------------------------------------------------------------------------------------
# building blocks
# ------------------------------------------------------------------------------------------
def test_split_axis_near_equal():
    b = tiling.split_axis(0, 10, 4)
    np.testing.assert_array_equal(b, [0, 3, 6, 10])
    assert np.diff(tiling.split_axis(5, 105, 7)).max() <= 7
    assert np.ptp(np.diff(tiling.split_axis(5, 105, 7))) <= 1
    with pytest.raises(OptionError, match="cannot split"):
        tiling.split_axis(3, 3, 2)


def test_blend_weights_add_up_to_one_across_a_seam():
    f, o = 3, 2
    left = tiling.blend_weights(10 * f, f, o, left=False, right=True)
    right = tiling.blend_weights(10 * f, f, o, left=True, right=False)
    band = 2 * o * f
    np.testing.assert_allclose(left[-band:] + right[:band], 1.0, rtol=0, atol=1e-15)
    assert left[0] == 1.0
    assert (np.diff(left[-band:]) < 0).all()


def test_align_chunks_to_coarse_cells():
    # boundaries 7, 14, 21 move to the nearest multiples of 4: 8, 16, 20
    assert tiling.align_chunks((7, 7, 7, 3), 4) == (8, 8, 4, 4)
    assert tiling.align_chunks((5, 5, 5), 3) == (6, 3, 6)  # 5, 10 -> 6, 9
    c = tiling.align_chunks((10, 1, 1, 11), 4)
    assert sum(c) == 23
    assert all(n % 4 == 0 for n in c[:-1])


def test_coarsen_rechunks_fine_input_to_coarse_cells():
    ds = lonlat_dataset(ny=12, nx=24, nt=1)
    fine = ds.sr.downscale(factor=3).chunk({"lat": 7, "lon": 10})
    back = fine.sr.coarsen(factor=3)
    assert all(c == 2 or c == 3 or c == 4 for c in back["sst"].chunksizes["lat"][:-1])
    assert_conserves(fine, ds, 3)
    np.testing.assert_allclose(back["sst"].values, ds["sst"].values, rtol=1e-12)


# ------------------------------------------------------------------------------------------
# deterministic methods: tiled == untiled
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["nearest", "bilinear", "bicubic"])
@pytest.mark.parametrize(
    ("chunks", "tile_size"),
    [
        (None, 6),  # numpy, tiles of 2 coarse cells
        ({"time": 1, "lat": 5, "lon": 7}, None),  # chunks that divide nothing, one tile each
        ({"lat": 4, "lon": 10}, 9),  # chunks and tiles
        ({"lat": 2, "lon": 3}, None),  # chunks smaller than the halo: merged
    ],
)
def test_tiled_equals_untiled(method, chunks, tile_size):
    ds = _global()
    ref = ds.sr.downscale(factor=3, method=method)
    src = ds if chunks is None else ds.chunk(chunks)
    fine = src.sr.downscale(factor=3, method=method, tile_size=tile_size)
    if chunks is not None:
        assert fine["sst"].chunks is not None
    for v in ("sst", "pr"):
        a, b = ref[v].values, fine[v].values
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
        np.testing.assert_allclose(b, a, rtol=1e-13, atol=1e-13)
    assert_conserves(fine, ds, 3)


def test_tiled_equals_untiled_on_a_projected_grid_with_a_fine_mask():
    ds = projected_dataset(ny=16, nx=20, nt=2)
    rng = np.random.default_rng(1)
    mask = rng.random((16 * 4, 20 * 4)) > 0.2
    ref = ds.sr.downscale(factor=4, mask=mask)
    fine = ds.chunk({"y": 6, "x": 6}).sr.downscale(factor=4, mask=mask, tile_size=12)
    np.testing.assert_array_equal(np.isnan(ref["ssh"].values), np.isnan(fine["ssh"].values))
    np.testing.assert_allclose(fine["ssh"].values, ref["ssh"].values, rtol=1e-13, atol=1e-14)
    assert_conserves(fine, ds.where(ds.notnull()), 4)
    back = fine.sr.coarsen(factor=4)
    assert np.isfinite(back["ssh"].values).all()


def test_tile_size_option_and_validation():
    ds = _global(nt=1)
    with xsr.set_options(tile_size=6):
        fine = ds.sr.downscale(factor=3)
    ref = ds.sr.downscale(factor=3)
    np.testing.assert_allclose(fine["sst"].values, ref["sst"].values, rtol=1e-13)
    assert_conserves(fine, ds, 3)
    with pytest.raises(OptionError, match="tile_size must be an integer >= 1"):
        ds.sr.downscale(factor=3, tile_size=0)


# ------------------------------------------------------------------------------------------
# laziness, dateline
# ------------------------------------------------------------------------------------------
def test_tiled_dask_stays_lazy():
    ds = _global(nt=3)
    # data variables are dask-backed; the small bounds variables are read up front
    src = ds.chunk({"time": 1, "lat": 5, "lon": 7})
    src = src.assign(lat_bnds=ds["lat_bnds"], lon_bnds=ds["lon_bnds"])
    with dask.config.set(scheduler=RaiseOnCompute()):
        fine = src.sr.downscale(factor=3, tile_size=6)
        back = fine.sr.coarsen(factor=3)
    assert isinstance(fine["sst"].data, da.Array)
    # lat 5, 5, 2 and lon 7, 7, 7, 3: the last chunks are smaller than the bicubic tile
    # halo (4 coarse cells) and are merged into their neighbours
    assert fine["sst"].chunksizes["lat"] == (15, 21)
    assert fine["sst"].chunksizes["lon"] == (21, 21, 30)
    assert isinstance(back["sst"].data, da.Array)
    assert_conserves(fine, ds, 3)


def test_no_seam_at_the_dateline_with_chunks_and_tiles():
    # downscaling commutes with a shift of the longitude across 0/360 when x is periodic
    ds = _global(nt=1)
    fine = ds.chunk({"lon": 8}).sr.downscale(factor=3, tile_size=9)
    rolled = ds.assign(sst=ds["sst"].roll(lon=11, roll_coords=False))
    fr = rolled.chunk({"lon": 8}).sr.downscale(factor=3, tile_size=9)
    a = fine["sst"].values
    b = np.roll(fr["sst"].values, -33, axis=-1)
    np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
    np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-13)
    assert_conserves(fine, ds, 3)
    assert_conserves(fr, rolled, 3)
    # without periodicity the edges differ: the shift test above is not vacuous
    flat = ds.chunk({"lon": 8}).sr.downscale(factor=3, tile_size=9, periodic=False)
    assert np.nanmax(np.abs(flat["sst"].values - a)) > 1e-3


# ------------------------------------------------------------------------------------------
# stochastic methods: blended seams, re-enforced
# ------------------------------------------------------------------------------------------
def test_stochastic_tiles_are_blended_and_conserved():
    ds = _global(ny=12, nx=24, nt=2, land=False)[["sst"]]
    m = NoisyBicubic()
    f = 3
    blended = ds.sr.downscale(factor=f, method=m, tile_size=18)  # tiles of 6 coarse cells
    assert {"sst", "sst_std", "sst_members"} <= set(blended.data_vars)
    assert blended["sst_members"].sizes["member"] == 3
    assert_conserves(blended, ds, f)
    member = blended["sst_members"].isel(member=2).drop_vars("member")
    assert_conserves(member.to_dataset(name="sst"), ds, f)
    assert np.nanmin(blended["sst_std"].values) > 0
    # each member is bicubic + white noise; where two tiles meet, the blend averages two
    # independent noises with weights near 1/2, which halves their variance
    noise = member.values - ds.sr.downscale(factor=f)["sst"].values
    seams = [18 * k for k in range(4)]  # fine columns where tiles meet (0: the dateline)
    at_seams = noise[..., [c for s in seams for c in (s - 1, s)]]
    inside = noise[..., [s + 9 for s in seams]]
    ratio = at_seams.var() / inside.var()
    assert 0.3 < ratio < 0.75
    # a hard cut (overlap=0) does not blend: the same variance everywhere
    cut = tiling.downscale_tiled(
        ds["sst"].values,
        factor=f,
        method=m,
        tile_size=18,
        overlap=0,
        periodic=True,
        extras=("members",),
    )[1][2]
    noise_cut = cut - ds.sr.downscale(factor=f)["sst"].values
    at_cut = noise_cut[..., [c for s in seams for c in (s - 1, s)]]
    assert at_cut.var() / noise_cut[..., [s + 9 for s in seams]].var() > 0.75


def test_stochastic_result_does_not_depend_on_the_chunks():
    ds = _global(ny=12, nx=24, nt=2)[["sst"]]
    m = NoisyBicubic()
    a = ds.sr.downscale(factor=3, method=m, tile_size=18)
    b = ds.chunk({"time": 1, "lat": 7, "lon": 9}).sr.downscale(factor=3, method=m, tile_size=18)
    assert b["sst"].chunks is not None
    for v in ("sst", "sst_std", "sst_members"):
        np.testing.assert_allclose(b[v].values, a[v].values, rtol=1e-13, atol=1e-13)
    assert_conserves(b, ds, 3)


# ------------------------------------------------------------------------------------------
# memory: batches split on CUDA out-of-memory errors
# ------------------------------------------------------------------------------------------
def test_out_of_memory_splits_the_batch(monkeypatch):
    import xsr.methods.pipeline as pipeline

    real = pipeline.downscale_array
    sizes: list[int] = []

    def fake(x, **kw):
        sizes.append(x.shape[0])
        if x.shape[0] > 2:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(x, **kw)

    ds = _global(nt=1)
    ref = ds.sr.downscale(factor=3)
    monkeypatch.setattr(pipeline, "downscale_array", fake)
    fine = ds.sr.downscale(factor=3, tile_size=6)  # tiles of 2 x 2 coarse cells: 6 x 12
    assert sizes[0] == 72  # all in one batch first, then halved until it fits
    assert sum(s for s in sizes if s <= 2) == 2 * 72  # each tile done once, sst and pr
    # once a size has failed, larger batches are split before they are tried: 72, 36, 18,
    # 9, 4 and 3 fail once per variable
    assert len([s for s in sizes if s > 2]) == 2 * 6
    np.testing.assert_allclose(fine["sst"].values, ref["sst"].values, rtol=1e-13)
    assert_conserves(fine, ds, 3)


def test_out_of_memory_on_one_tile_says_what_to_do(monkeypatch):
    import xsr.methods.pipeline as pipeline

    def fake(x, **kw):
        raise torch.OutOfMemoryError("CUDA out of memory (simulated)")

    monkeypatch.setattr(pipeline, "downscale_array", fake)
    with pytest.raises(TileMemoryError, match="lower tile_size"):
        _global(nt=1).sr.downscale(factor=3, tile_size=36)


# ------------------------------------------------------------------------------------------
# methods are built once per process and tasks stay small
# ------------------------------------------------------------------------------------------
def test_tasks_carry_a_method_spec_and_build_it_once():
    ds = _global(nt=1).chunk({"lon": 8})
    before = tiling.method_cache_info()["built"]
    fine = ds.sr.downscale(factor=3, method="bilinear", tile_size=6)
    fine.compute()
    fine.compute()
    assert tiling.method_cache_info()["built"] - before <= 1
    # the graph holds the method's name, not the method object
    spec = tiling._spec_of(xsr.methods.registry.get_method("bilinear"))
    assert isinstance(spec, tiling._MethodSpec)
    assert spec.name == "bilinear"
    assert isinstance(tiling._spec_of(NoisyBicubic()), NoisyBicubic)
    assert_conserves(fine, _global(nt=1), 3)


def test_dataarray_input_and_float32():
    ds = _global(nt=2)
    da32 = ds["sst"].astype("float32")
    fine = da32.chunk({"lat": 6, "lon": 8}).sr.downscale(factor=2)
    assert isinstance(fine, xr.DataArray)
    assert fine.dtype == np.float32
    ref = da32.sr.downscale(factor=2)
    np.testing.assert_allclose(fine.values, ref.values, rtol=2e-6, atol=1e-5)
    assert_conserves(fine, da32, 2, rtol=2e-6)
