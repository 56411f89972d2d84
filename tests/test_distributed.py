"""The same downscale call on a dask.distributed LocalCluster (worker processes) gives the
local-scheduler result; methods are built on the workers, once per process."""

from __future__ import annotations

import numpy as np
import pytest

import xsr
from xsr import tiling
from xsr.testing import assert_conserves, lonlat_dataset, projected_dataset

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def client():
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",
        ) as cluster,
        distributed.Client(cluster) as c,
    ):
        yield c


def test_distributed_equals_local(client):
    ds = lonlat_dataset(ny=12, nx=24, nt=3, global_grid=True)
    src = ds.chunk({"time": 1, "lat": 6, "lon": 8})
    fine = src.sr.downscale(factor=3, method="bicubic", tile_size=9)
    local = fine.compute(scheduler="threads")
    remote = client.compute(fine).result()  # the same graph, on the worker processes
    for v in ("sst", "pr"):
        np.testing.assert_array_equal(np.isnan(remote[v].values), np.isnan(local[v].values))
        np.testing.assert_allclose(remote[v].values, local[v].values, rtol=1e-14, atol=0)
    assert_conserves(remote, ds, 3)
    # tasks carried the method's name: each worker process built it at most once
    built = client.run(tiling.method_cache_info)
    assert len(built) == 2
    assert all(info["built"] <= 1 for info in built.values())
    assert sum(info["built"] for info in built.values()) >= 1


def test_distributed_stochastic_method_equals_local(client):
    # a method object that its options do not rebuild (progress=False is not an option)
    # travels as one graph key; blended tiles give the same result on the cluster
    ds = projected_dataset(ny=12, nx=12, nt=1)
    src = ds.chunk({"x": 6})
    kw = {"method": "dip-ensemble", "members": 2, "iterations": 3, "progress": False}
    fine = src.sr.downscale(factor=2, tile_size=12, **kw)
    local = fine.compute(scheduler="sync")
    remote = client.compute(fine).result()
    # the networks are fitted in float32, whose round-off differs with the thread count of
    # the process: equal to about 1e-8 m here (fields of 0.3 m)
    for v in ("ssh", "ssh_std"):
        np.testing.assert_allclose(remote[v].values, local[v].values, rtol=0, atol=1e-6)
    assert_conserves(remote, ds, 2)


def test_cli_batch_on_the_cluster_equals_local(client, tmp_path):
    from xsr.cli import main

    ds = lonlat_dataset(ny=12, nx=24, nt=4, global_grid=True)[["sst"]]
    ds.to_netcdf(tmp_path / "in.nc")
    common = ["--factor", "2", "--chunks", "time=1,lon=8", "--tile-size", "8", "--no-progress"]
    rc = main(["downscale", str(tmp_path / "in.nc"), str(tmp_path / "local.zarr"), *common])
    assert rc == 0
    address = client.scheduler.address
    remote = str(tmp_path / "remote.zarr")
    rc = main(["downscale", str(tmp_path / "in.nc"), remote, *common, "--scheduler", address])
    assert rc == 0
    import xarray as xr

    a = xr.open_zarr(tmp_path / "remote.zarr").load()
    b = xr.open_zarr(tmp_path / "local.zarr").load()
    assert a.attrs["xsr_status"] == "complete"
    np.testing.assert_allclose(a["sst"].values, b["sst"].values, rtol=1e-14, atol=0)
    assert_conserves(a, ds, 2)


def test_distributed_cnn_from_a_file(client, tmp_path):
    """method="cnn" with a saved model: the workers load the file (once per process) and give
    the local result; an in-memory model travels with the graph."""
    from xsr.conserve import conservation_error
    from xsr.training import train

    hr = projected_dataset(ny=32, nx=32, nt=3)
    tm = train(
        hr, var="ssh", model="srcnn", factor=2, crop=16, epochs=1, steps_per_epoch=2,
        progress=False, device="cpu",
        model_options={"channels": (8, 4), "kernels": (3, 3, 3)},
    )  # fmt: skip
    path = tm.save(tmp_path / "m.pt")
    coarse = xsr.coarsen(hr, factor=2)
    src = coarse.chunk({"time": 1, "y": 8})
    for model in (str(path), tm):
        fine = src.sr.downscale(factor=2, method="cnn", model=model)
        local = fine.compute(scheduler="threads")
        remote = client.compute(fine).result()
        np.testing.assert_allclose(remote["ssh"].values, local["ssh"].values, rtol=0, atol=1e-6)
        err = conservation_error(remote["ssh"].values, coarse["ssh"].values, 2)
        assert err < 1e-12


def test_distributed_guided_regression_equals_local(client):
    import xarray as xr

    ds = lonlat_dataset(ny=12, nx=16, nt=2, land=False)[["sst"]]
    fine = ds.sr.downscale(factor=2, method="nearest", conserve=None)
    rng = np.random.default_rng(0)
    guide = xr.DataArray(
        rng.normal(size=(24, 32)), dims=("lat", "lon"),
        coords={"lat": fine.lat.values, "lon": fine.lon.values}, name="elev",
    )  # fmt: skip
    src = ds.chunk({"time": 1})
    lazy = src.sr.downscale(factor=2, method="regression", guide=guide)
    local = lazy.compute(scheduler="sync")
    remote = client.compute(lazy).result()
    np.testing.assert_allclose(remote["sst"].values, local["sst"].values, rtol=1e-14, atol=0)
    assert "elev" in remote["sst"].attrs["xsr_guide"]
    assert_conserves(remote, ds, 2)
