"""Batch jobs of ``xsr downscale`` (xsr.batch): several files in, zarr written region by region,
resumed after a crash, configuration files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr

from xsr import batch
from xsr.cli import main
from xsr.testing import assert_conserves, lonlat_dataset


@pytest.fixture
def files(tmp_path):
    """One small global dataset split into three netCDF files along time, and the whole."""
    ds = lonlat_dataset(ny=12, nx=24, nt=5, global_grid=True)[["sst", "pr"]]
    ds = ds.assign(lat_bnds=lonlat_dataset(ny=12, nx=24, global_grid=True)["lat_bnds"])
    ds = ds.assign(lon_bnds=lonlat_dataset(ny=12, nx=24, global_grid=True)["lon_bnds"])
    for i, sl in enumerate((slice(0, 2), slice(2, 4), slice(4, 5))):
        ds.isel(time=sl).to_netcdf(tmp_path / f"day_{i}.nc")
    return tmp_path, ds


def _run(*args):
    return main(["downscale", *map(str, args), "--no-progress"])


def test_glob_of_files_to_zarr(files, capsys):
    tmp, ds = files
    out = tmp / "out.zarr"
    rc = _run(tmp / "day_*.nc", out, "--factor", "3", "--chunks", "time=2", "--check")
    assert rc == 0
    text = capsys.readouterr().out
    assert "wrote 3 of 3 regions" in text  # time chunks 2, 2, 1; the plane in one row
    assert "max relative conservation error" in text
    fine = xr.open_zarr(out)
    assert fine.attrs["xsr_status"] == "complete"
    assert fine.sizes["time"] == 5
    cfg = json.loads(fine.attrs["xsr_config"])
    assert cfg["factor"] == 3
    assert cfg["chunks"] == {"time": 2}
    assert len(cfg["inputs"]) == 1  # the pattern, as given
    assert_conserves(fine.load(), ds, 3)
    # the output equals an in-memory downscale of the same data
    ref = ds.sr.downscale(factor=3)
    np.testing.assert_allclose(fine["sst"].values, ref["sst"].values, rtol=1e-13, atol=1e-13)


def test_resume_after_a_crash_gives_the_uninterrupted_result(files, monkeypatch, capsys):
    tmp, ds = files
    args = ["--factor", "2", "--chunks", "time=1", "--tile-size", "8"]
    ref_out = tmp / "ref.zarr"
    assert _run(tmp / "day_*.nc", ref_out, *args) == 0
    out = tmp / "out.zarr"

    # crash while recording the second group of regions: its data may be on disk, but it is
    # not recorded, so it must be written again
    monkeypatch.setattr(batch, "REGIONS_PER_GROUP", 2)
    real = batch._set_attrs
    calls = {"n": 0}

    def crashing(store, **attrs):
        if "xsr_regions_done" in attrs:
            calls["n"] += 1
            if calls["n"] == 2:
                raise RuntimeError("simulated crash")
        real(store, **attrs)

    monkeypatch.setattr(batch, "_set_attrs", crashing)
    with pytest.raises(RuntimeError, match="simulated crash"):
        _run(tmp / "day_*.nc", out, *args)
    monkeypatch.setattr(batch, "_set_attrs", real)
    status = batch.zarr_status(out)
    assert status["status"] == "incomplete"  # never looks complete
    assert 0 < len(status["done"]) < status["total"]
    assert xr.open_zarr(out).attrs["xsr_status"] == "incomplete"
    n_done = len(status["done"])

    # without --resume the partial output is not touched
    assert _run(tmp / "day_*.nc", out, *args) == 2
    assert "--resume" in capsys.readouterr().err

    capsys.readouterr()
    assert _run(tmp / "day_*.nc", out, *args, "--resume") == 0
    text = capsys.readouterr().out
    total = status["total"]
    assert f"wrote {total - n_done} of {total} regions" in text
    assert batch.zarr_status(out)["status"] == "complete"
    a, b = xr.open_zarr(out).load(), xr.open_zarr(ref_out).load()
    for v in ("sst", "pr"):
        np.testing.assert_array_equal(a[v].values, b[v].values)
    assert_conserves(a, ds, 2)

    # resuming a complete output does nothing
    assert _run(tmp / "day_*.nc", out, *args, "--resume") == 0
    assert "complete already" in capsys.readouterr().out


def test_resume_refuses_another_configuration(files, monkeypatch, capsys):
    tmp, ds = files
    out = tmp / "out.zarr"
    monkeypatch.setattr(batch, "_set_attrs", _crash_on_first_record(batch._set_attrs))
    with pytest.raises(RuntimeError):
        _run(tmp / "day_*.nc", out, "--factor", "2", "--chunks", "time=1")
    monkeypatch.undo()
    rc = _run(tmp / "day_*.nc", out, "--factor", "3", "--chunks", "time=1", "--resume")
    assert rc == 2
    err = capsys.readouterr().err
    assert "cannot resume" in err
    assert "['factor']" in err
    # --overwrite starts again
    assert _run(tmp / "day_*.nc", out, "--factor", "3", "--chunks", "time=1", "--overwrite") == 0
    assert_conserves(xr.open_zarr(out).load(), ds, 3)


def _crash_on_first_record(real):
    def crashing(store, **attrs):
        if "xsr_regions_done" in attrs:
            raise RuntimeError("simulated crash")
        real(store, **attrs)

    return crashing


def test_config_file_with_flags_winning(files, capsys):
    tmp, ds = files
    cfg = tmp / "job.yaml"
    cfg.write_text(
        "inputs:\n"
        f"  - {tmp / 'day_0.nc'}\n"
        f"  - {tmp / 'day_1.nc'}\n"
        f"output: {tmp / 'out.nc'}\n"
        "factor: 2\n"
        "method: bilinear\n"
        "tile-size: 8\n"
        "chunks: {time: 1}\n"
        "var: sst\n"
    )
    assert main(["downscale", "--config", str(cfg), "--factor", "3", "--no-progress"]) == 0
    fine = xr.open_dataset(tmp / "out.nc").load()
    assert next(iter(fine.data_vars)) == "sst"
    assert "pr" not in fine.data_vars
    assert fine.sizes["time"] == 4
    assert fine.sizes["lat"] == 36  # the flag's factor 3, not the file's 2
    stored = json.loads(fine.attrs["xsr_config"])
    assert stored["method"] == "bilinear"
    assert stored["factor"] == 3
    assert stored["tile_size"] == 8
    assert_conserves(fine, ds.isel(time=slice(0, 4))[["sst"]], 3)


def test_config_errors_name_the_problem(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"factr": 2}')
    with pytest.raises(batch.OptionError, match=r"unknown keys \['factr'\]"):
        batch.load_config(bad)
    with pytest.raises(batch.OptionError, match="DIM=SIZE"):
        batch.parse_chunks("time")
    assert batch.parse_chunks(["time=1,lat=4", "lon=all"]) == {"time": 1, "lat": 4, "lon": -1}


def test_default_chunks_split_large_planes_for_deterministic_methods():
    ds = lonlat_dataset(ny=300, nx=600, nt=1, land=False)
    c = batch.default_chunks(ds, "lat", "lon", factor=8, tile_size=None, stochastic=False)
    assert c == {"time": 1, "lat": 256, "lon": 256}
    c = batch.default_chunks(ds, "lat", "lon", factor=8, tile_size=None, stochastic=True)
    assert c == {"time": 1, "lat": -1, "lon": -1}
