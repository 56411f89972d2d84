"""Fault injection: batch jobs killed (SIGKILL, SIGINT) part-way, and two jobs on one output.

The jobs run as ``sys.executable -c`` subprocesses (``xsr.cli.main``), slowed down by a
delay after each recorded region (zarr) or each chunk written (netCDF), so that the signal
lands mid-write; the tests poll the output and stay fast when the machine is not busy."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import xsr
from xsr import batch
from xsr.cli import main
from xsr.testing import assert_conserves, lonlat_dataset

pytestmark = pytest.mark.filterwarnings("ignore:Consolidated metadata")

REPO = Path(xsr.__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}

# xsr downscale ARGS..., with a pause after each region recorded (zarr) and after each chunk
# written (netCDF): argv[1] is the pause in seconds
_SLOW_JOB = """
import sys, time
from xarray.backends import netCDF4_
from xsr import _io, batch
from xsr.cli import main
pause = float(sys.argv[1])
batch.REGIONS_PER_GROUP = 1
record = batch._set_attrs
def slow_record(store, **attrs):
    record(store, **attrs)
    if "xsr_regions_done" in attrs:
        time.sleep(pause)
batch._set_attrs = slow_record
put = netCDF4_.NetCDF4ArrayWrapper.__setitem__
def slow_put(self, key, value):
    time.sleep(pause)
    put(self, key, value)
netCDF4_.NetCDF4ArrayWrapper.__setitem__ = slow_put
_io.WRITE_CHUNK_BYTES = 4096
sys.exit(main(sys.argv[2:]))
"""


def _start(pause: float, *args: object, cwd: Path | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", _SLOW_JOB, str(pause), "downscale", *map(str, args)],
        env=ENV,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(cond, proc: subprocess.Popen[str], what: str, timeout: float = 90.0) -> None:
    t0 = time.monotonic()
    while not cond():
        if proc.poll() is not None:
            _, err = proc.communicate()
            raise AssertionError(f"the job ended (rc {proc.returncode}) before {what}: {err}")
        if time.monotonic() - t0 > timeout:  # pragma: no cover - a very busy machine
            proc.kill()
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def _regions_done(store: Path) -> int:
    try:
        return len(batch.zarr_status(store).get("done") or [])
    except Exception:  # written at this moment
        return 0


@pytest.fixture
def job(tmp_path):
    """Inputs (two files, 6 time steps) and the arguments of a zarr job of 6 regions."""
    ds = lonlat_dataset(ny=6, nx=8, nt=6)[["sst", "pr", "lat_bnds", "lon_bnds"]]
    ds.isel(time=slice(0, 3)).to_netcdf(tmp_path / "a.nc")
    ds.isel(time=slice(3, 6)).to_netcdf(tmp_path / "b.nc")
    args = [tmp_path / "a.nc", tmp_path / "b.nc"]
    opts = ["--factor", "2", "--chunks", "time=1", "--no-progress"]
    return tmp_path, ds, args, opts


_TIMESTAMP = re.compile(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


def _files(store: Path) -> dict[str, bytes]:
    """Every file of a store, the time of the run (in ``history``) left out."""
    return {
        str(p.relative_to(store)): _TIMESTAMP.sub(b"<time>", p.read_bytes())
        for p in sorted(store.rglob("*"))
        if p.is_file()
    }


def test_sigkill_then_resume_gives_the_uninterrupted_store(job, monkeypatch):
    tmp, ds, args, opts = job
    # the same relative paths in both runs: the stored configurations are equal
    inputs = [f"../{Path(a).name}" for a in args]
    (tmp / "ref").mkdir()
    monkeypatch.chdir(tmp / "ref")
    assert main(["downscale", *inputs, "out.zarr", *opts]) == 0
    (tmp / "run").mkdir()
    out = tmp / "run" / "out.zarr"
    proc = _start(0.4, *inputs, "out.zarr", *opts, cwd=tmp / "run")
    _wait_for(lambda: _regions_done(out) >= 2, proc, "two regions were recorded")
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    status = batch.zarr_status(out)
    assert status["status"] == "incomplete"
    assert 2 <= len(status["done"]) < status["total"] == 6
    monkeypatch.chdir(tmp / "run")
    assert main(["downscale", *inputs, "out.zarr", *opts, "--resume"]) == 0
    # byte for byte the store of the uninterrupted run: every array, every attribute
    ref = tmp / "ref" / "out.zarr"
    assert _files(out) == _files(ref)
    a, b = xr.open_zarr(out).load(), xr.open_zarr(ref).load()
    xr.testing.assert_identical(a.drop_attrs(), b.drop_attrs())
    assert a.attrs["xsr_status"] == "complete"
    assert_conserves(a[["sst", "pr"]], ds[["sst", "pr"]], 2)


def test_ctrl_c_during_a_netcdf_write_leaves_nothing(job):
    # (the writer of one-file jobs, xsr._io.write_netcdf, is tested alone in test_io.py)
    tmp, _, args, opts = job
    out = tmp / "out.nc"
    proc = _start(0.2, *args, out, *opts)

    def writing() -> bool:
        return any(n.startswith(".out.nc.xsr-") and n.endswith(".tmp") for n in os.listdir(tmp))

    _wait_for(writing, proc, "the netCDF write started")
    time.sleep(0.3)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    elapsed = time.monotonic() - t0
    assert proc.returncode == 130, err
    assert "xsr: interrupted" in err
    assert elapsed < 5, f"took {elapsed:.1f} s to stop after Ctrl-C"
    assert not out.exists()
    assert sorted(os.listdir(tmp)) == ["a.nc", "b.nc"]  # no temporary, no lock


def test_sigterm_during_a_batch_job_releases_its_lock(job):
    tmp, _, args, opts = job
    out = tmp / "out.nc"
    # every netCDF write takes 1 s, so the job is still writing 0.2 s after taking the lock
    # (with 0.2 s writes and a 0.5 s wait, a fast run finished before the signal came)
    proc = _start(1.0, *args, out, *opts)
    _wait_for(lambda: (tmp / ".out.nc.xsr-lock").exists(), proc, "the lock was taken")
    time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGTERM
    assert sorted(os.listdir(tmp)) == ["a.nc", "b.nc"]


def test_two_runs_on_one_store(job, capsys):
    tmp, ds, args, opts = job
    out = tmp / "out.zarr"
    first = _start(0.3, *args, out, *opts)
    _wait_for(lambda: _regions_done(out) >= 1, first, "the first run wrote a region")
    capsys.readouterr()
    for extra in ([], ["--resume"], ["--overwrite"]):
        t0 = time.monotonic()
        assert main(["downscale", *map(str, args), str(out), *opts, *extra]) == 2
        assert time.monotonic() - t0 < 5  # fails fast, before computing anything
        err = capsys.readouterr().err
        assert f"xsr: error: output '{out}' is being written by another xsr run: " in err
        assert f"PID {first.pid} on host " in err and ", started 20" in err
    _, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    assert batch.zarr_status(out)["status"] == "complete"
    fine = xr.open_zarr(out).load()  # complete, readable, and right
    ref = ds.sr.downscale(factor=2)
    for v in ("sst", "pr", "lat", "lon", "lat_bnds", "lon_bnds"):
        np.testing.assert_array_equal(fine[v].values, ref[v].values)
    assert_conserves(fine[["sst", "pr"]], ds[["sst", "pr"]], 2)
    assert not (tmp / ".out.zarr.xsr-lock").exists()
