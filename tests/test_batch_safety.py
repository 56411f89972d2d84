"""Batch outputs are never lost or left unreadable: --resume and --overwrite act only on
outputs that xsr wrote (with the same settings, for --resume), never together, and only
after the folder and the settings were checked."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr

from xsr import batch
from xsr.cli import main
from xsr.testing import lonlat_dataset

pytestmark = pytest.mark.filterwarnings("ignore:Consolidated metadata")


@pytest.fixture
def files(tmp_path):
    """A small dataset in two netCDF files along time."""
    ds = lonlat_dataset(ny=6, nx=8, nt=4)[["sst", "pr"]]
    for i, sl in enumerate((slice(0, 2), slice(2, 4))):
        ds.isel(time=sl).to_netcdf(tmp_path / f"day_{i}.nc")
    return tmp_path, str(tmp_path / "day_*.nc")


def _run(*args):
    return main(["downscale", *map(str, args), "--no-progress"])


def _snapshot(path):
    """Everything a reader sees of a store or file: values and attributes."""
    ds = xr.open_zarr(path) if str(path).endswith(".zarr") else xr.open_dataset(path)
    with ds:
        return {n: v.values.copy() for n, v in ds.variables.items()}, dict(ds.attrs)


def _same(a, b):
    assert a[1] == b[1]
    assert a[0].keys() == b[0].keys()
    for n in a[0]:
        np.testing.assert_array_equal(a[0][n], b[0][n])


def _crash_after_first_region(monkeypatch):
    """Make the next run die after recording one region (an unfinished store)."""
    monkeypatch.setattr(batch, "REGIONS_PER_GROUP", 1)
    real = batch._set_attrs
    calls = {"n": 0}

    def crashing(store, **attrs):
        real(store, **attrs)
        if "xsr_regions_done" in attrs:
            calls["n"] += 1
            if calls["n"] == 1:
                raise RuntimeError("simulated crash")

    monkeypatch.setattr(batch, "_set_attrs", crashing)


# ------------------------------------------------------------------------------------------
# --resume with another configuration
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("finished", [True, False])
def test_resume_refuses_other_settings(files, capsys, monkeypatch, finished):
    tmp, inputs = files
    out = tmp / "out.zarr"
    if finished:
        assert _run(inputs, out, "-f", "2", "--chunks", "time=1") == 0
    else:
        _crash_after_first_region(monkeypatch)
        with pytest.raises(RuntimeError, match="simulated crash"):
            _run(inputs, out, "-f", "2", "--chunks", "time=1")
        monkeypatch.undo()
    before = _snapshot(out)
    capsys.readouterr()
    rc = _run(inputs, out, "-f", "3", "-m", "nearest", "--chunks", "time=1", "--resume")
    assert rc == 2
    err = capsys.readouterr().err
    assert f"xsr: error: cannot resume '{out}': it was written with other values of " in err
    assert "['factor', 'method'] (factor: stored 2, now 3; method: stored 'bicubic', now " in err
    assert "rerun with the stored values to finish it, or with --overwrite instead" in err
    _same(_snapshot(out), before)  # untouched
    # the same settings finish it, or find it finished
    assert _run(inputs, out, "-f", "2", "--chunks", "time=1", "--resume") == 0
    text = capsys.readouterr().out
    assert ("complete already" in text) == finished
    assert batch.zarr_status(out)["status"] == "complete"


def test_resume_of_a_netcdf_output(files, capsys):
    tmp, inputs = files
    out = tmp / "out.nc"
    assert _run(inputs, out, "-f", "2", "--chunks", "time=1") == 0
    before = out.read_bytes()
    capsys.readouterr()
    assert _run(inputs, out, "-f", "3", "--chunks", "time=1", "--resume") == 2
    err = capsys.readouterr().err
    assert f"cannot resume '{out}': it was written with other values of ['factor']" in err
    assert "factor: stored 2, now 3" in err
    assert _run(inputs, out, "-f", "2", "--chunks", "time=1", "--resume") == 0
    assert "complete already" in capsys.readouterr().out
    assert out.read_bytes() == before
    # a netCDF file that no xsr batch job wrote: nothing to resume
    other = tmp / "other.nc"
    lonlat_dataset(ny=6, nx=8).to_netcdf(other)
    theirs = other.read_bytes()
    assert _run(inputs, other, "-f", "2", "--resume") == 2
    err = capsys.readouterr().err
    assert f"cannot resume '{other}': the file exists but no xsr batch job wrote it" in err
    assert "pass --overwrite instead of --resume to replace it" in err
    assert other.read_bytes() == theirs


# ------------------------------------------------------------------------------------------
# paths that xsr did not write
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("flag", ["--resume", "--overwrite"])
def test_a_folder_that_xsr_did_not_make_is_never_touched(files, capsys, flag):
    tmp, inputs = files
    folder = tmp / "mine.zarr"
    folder.mkdir()
    (folder / "thesis.tex").write_text("years of work")
    lonlat_dataset(ny=2, nx=2).to_zarr(tmp / "theirs.zarr")  # a zarr store, not xsr's
    for path in (folder, tmp / "theirs.zarr"):
        assert _run(inputs, path, "-f", "2", flag) == 2
        err = capsys.readouterr().err
        assert f"xsr: error: output '{path}' is a folder (" in err
        assert "that xsr did not write (no zarr group with an xsr_config attribute)" in err
        assert "remove" in err and "yourself if it may go" in err
    assert (folder / "thesis.tex").read_text() == "years of work"
    assert "sst" in xr.open_zarr(tmp / "theirs.zarr")


def test_a_file_at_a_zarr_path_is_never_replaced(files, capsys):
    tmp, inputs = files
    f = tmp / "out.zarr"
    f.write_text("not a store")
    for flag in ("--resume", "--overwrite"):
        assert _run(inputs, f, "-f", "2", flag) == 2
        assert f"output '{f}' is a file (11 bytes) that xsr did not write" in (
            capsys.readouterr().err
        )
    assert f.read_text() == "not a store"


def test_overwrite_replaces_xsr_outputs_and_files(files, capsys):
    tmp, inputs = files
    out = tmp / "out.zarr"
    assert _run(inputs, out, "-f", "2") == 0
    assert _run(inputs, out, "-f", "3", "--overwrite") == 0
    assert json.loads(xr.open_zarr(out).attrs["xsr_config"])["factor"] == 3
    empty = tmp / "empty.zarr"
    empty.mkdir()
    assert _run(inputs, empty, "-f", "2") == 0  # an empty folder holds nothing to lose
    assert batch.zarr_status(empty)["status"] == "complete"
    nc = tmp / "out.nc"
    nc.write_text("any file")  # --overwrite replaces a file, as documented
    assert _run(inputs, nc, "-f", "2") == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert _run(inputs, nc, "-f", "2", "--overwrite") == 0
    assert xr.open_dataset(nc).attrs["xsr_status"] == "complete"


# ------------------------------------------------------------------------------------------
# --resume with --overwrite, from flags or the configuration file
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("config", "flags"),
    [
        ({}, ["--resume", "--overwrite"]),
        ({"overwrite": True}, ["--resume"]),
        ({"resume": True}, ["--overwrite"]),
        ({"resume": True, "overwrite": True}, []),
    ],
)
@pytest.mark.parametrize("output", ["out.zarr", "out.nc"])
def test_resume_and_overwrite_are_refused_together(files, capsys, config, flags, output):
    tmp, inputs = files
    out = tmp / output
    assert _run(inputs, out, "-f", "2", "--chunks", "time=1") == 0
    before = _snapshot(out)
    job = tmp / "job.json"
    job.write_text(json.dumps({"inputs": inputs, "output": str(out), "factor": 2, **config}))
    capsys.readouterr()
    assert main(["downscale", "--config", str(job), "--chunks", "time=1", *flags]) == 2
    err = capsys.readouterr().err
    assert "xsr: error: --resume and --overwrite exclude each other" in err
    assert "pass only one" in err
    _same(_snapshot(out), before)
    assert not list(tmp.glob(".out.*"))  # no lock or temporary left


@pytest.mark.parametrize("value", ["no", "false", 1])
def test_flags_in_the_configuration_must_be_booleans(files, capsys, value):
    tmp, inputs = files
    job = tmp / "job.json"
    out = tmp / "out.zarr"
    job.write_text(json.dumps({"inputs": inputs, "output": str(out), "overwrite": value}))
    assert main(["downscale", "--config", str(job)]) == 2
    err = capsys.readouterr().err
    assert f"overwrite must be true or false, got {value!r}" in err
    assert "'overwrite: false'" in err
    assert not out.exists()
