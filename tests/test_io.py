"""Safe output (xsr._io): atomic files, permissions, signals, stale temporaries, locks, markers
and CF hygiene.  Processes that must be killed run in subprocesses (``sys.executable -c``)."""

from __future__ import annotations

import errno
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import netCDF4
import numpy as np
import pytest
import xarray as xr

import xsr
from xsr import _io
from xsr.exceptions import LockError, OutputError, OutputExistsError, OutputFolderError
from xsr.testing import lonlat_dataset

REPO = Path(xsr.__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}


def _temps(folder: Path, name: str) -> list[str]:
    """xsr's temporaries of ``folder/name``."""
    return [n for n in os.listdir(folder) if n.startswith(f".{name}.xsr-") and n.endswith(".tmp")]


def _wait_for(cond, timeout: float = 60.0, what: str = "condition") -> None:
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def _dead_pid() -> int:
    """The PID of a process that has ended."""
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


# a child that writes a netCDF file slowly (each chunk written takes 0.2 s)
_SLOW_WRITER = """
import sys, time
import numpy as np, xarray as xr
from xarray.backends import netCDF4_
from xsr import _io
real = netCDF4_.NetCDF4ArrayWrapper.__setitem__
def slow(self, key, value):
    time.sleep(0.2)
    real(self, key, value)
netCDF4_.NetCDF4ArrayWrapper.__setitem__ = slow
ds = xr.Dataset({"a": (("t", "y", "x"), np.zeros((30, 20, 20)))})
_io.WRITE_CHUNK_BYTES = 20 * 20 * 8  # one chunk per time step
print("ready", flush=True)
_io.write_netcdf(ds, sys.argv[1], overwrite=True)
print("done", flush=True)
"""


def _start_slow_writer(target: Path) -> subprocess.Popen[str]:
    p = subprocess.Popen(
        [sys.executable, "-c", _SLOW_WRITER, str(target)],
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_for(lambda: _temps(target.parent, target.name) or p.poll() is not None, what="temp")
    assert p.poll() is None, p.communicate()
    time.sleep(0.3)  # mid-write
    return p


# ------------------------------------------------------------------------------------------
# atomic files and permissions
# ------------------------------------------------------------------------------------------
def test_failed_write_leaves_previous_file_and_no_temp(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"previous")

    def boom(tmp: str) -> None:
        Path(tmp).write_bytes(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        _io.atomic_write(target, boom)
    assert target.read_bytes() == b"previous"
    assert os.listdir(tmp_path) == ["out.bin"]
    with pytest.raises(OutputExistsError, match="exists; pass --overwrite"):
        _io.atomic_write(target, boom, overwrite=False)


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o027])
def test_new_files_get_the_mode_of_a_plain_open(tmp_path, umask):
    old = os.umask(umask)
    try:
        plain = tmp_path / "plain.txt"
        with open(plain, "w") as fh:
            fh.write("x")
        want = stat.S_IMODE(plain.stat().st_mode)
        assert want == 0o666 & ~umask
        a = _io.write_text(tmp_path / "a.txt", "x")
        b = _io.write_netcdf(lonlat_dataset(ny=4, nx=6), tmp_path / "b.nc", overwrite=False)
        for p in (a, b):
            assert stat.S_IMODE(p.stat().st_mode) == want, oct(p.stat().st_mode)
        # replacing a file keeps its mode, as open(path, "w") does
        os.chmod(b, 0o604)
        _io.write_netcdf(lonlat_dataset(ny=4, nx=6), b, overwrite=True)
        assert stat.S_IMODE(b.stat().st_mode) == 0o604
    finally:
        os.umask(old)


def test_cli_alias_is_the_io_writer():
    from xsr.cli import write_netcdf_atomic

    assert write_netcdf_atomic is _io.write_netcdf


# ------------------------------------------------------------------------------------------
# targets
# ------------------------------------------------------------------------------------------
def test_targets_are_checked_before_writing(tmp_path):
    folder = tmp_path / "a_folder.nc"
    folder.mkdir()
    for overwrite in (False, True):
        with pytest.raises(OutputError, match="is an empty folder: xsr writes a file there"):
            _io.check_target(folder, overwrite=overwrite)
    with pytest.raises(OutputFolderError, match="does not exist; create it first"):
        _io.check_target(tmp_path / "missing" / "x.nc", overwrite=True)
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputFolderError, match=r"is a file .* not a folder"):
        _io.check_target(tmp_path / "file" / "x.nc", overwrite=True)
    if Path("/dev/null").exists():
        with pytest.raises(OutputError, match="special file"):
            _io.check_target("/dev/null", overwrite=True)
    assert os.listdir(folder) == []


def _unwritable_folder(tmp_path: Path) -> Path:
    if os.geteuid() != 0:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        return ro
    # root may write anywhere, except on read-only file systems such as /sys
    try:
        _io.check_folder("/sys/x.nc")
    except OutputFolderError:
        return Path("/sys")
    pytest.skip("no unwritable folder available to root here")


def test_unwritable_folder_is_refused(tmp_path):
    ro = _unwritable_folder(tmp_path)
    try:
        with pytest.raises(OutputFolderError, match=r"is not writable .*write it to a folder"):
            _io.check_target(ro / "x.nc", overwrite=True)
        with pytest.raises(OutputFolderError, match="is not writable"):
            _io.write_text(ro / "x.txt", "x")
    finally:
        if ro != Path("/sys"):
            ro.chmod(0o700)


# ------------------------------------------------------------------------------------------
# stale temporaries
# ------------------------------------------------------------------------------------------
def test_stale_temps_of_dead_processes_only_are_removed(tmp_path):
    target = tmp_path / "out.nc"
    host = _io._host()
    dead = tmp_path / f".out.nc.xsr-{host}-{_dead_pid()}-abc_123.tmp"
    live = tmp_path / f".out.nc.xsr-{host}-{os.getpid()}-xyz.tmp"  # this process: alive
    elsewhere = tmp_path / f".out.nc.xsr-otherhost-{_dead_pid()}-abc.tmp"  # cannot tell
    other_target = tmp_path / f".other.nc.xsr-{host}-{_dead_pid()}-abc.tmp"
    unrelated = tmp_path / ".out.nc.abc.tmp"  # not xsr's naming
    for p in (dead, live, elsewhere, other_target, unrelated):
        p.write_bytes(b"x")
    assert _io.remove_stale_temps(target) == [dead]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        p.name for p in (live, elsewhere, other_target, unrelated)
    )


def test_sigkill_leaves_a_temp_that_the_next_write_removes(tmp_path):
    target = tmp_path / "out.nc"
    p = _start_slow_writer(target)
    p.kill()
    p.wait(30)
    left = _temps(tmp_path, "out.nc")
    assert len(left) == 1 and f"-{p.pid}-" in left[0]
    assert not target.exists()
    _io.write_netcdf(lonlat_dataset(ny=4, nx=6), target, overwrite=False)
    assert _temps(tmp_path, "out.nc") == []
    assert xr.open_dataset(target).sizes["lat"] == 4


# ------------------------------------------------------------------------------------------
# signals
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("sig", "returncodes"),
    [(signal.SIGINT, (-signal.SIGINT,)), (signal.SIGTERM, (-signal.SIGTERM,))],
)
def test_signal_mid_write_leaves_nothing(tmp_path, sig, returncodes):
    target = tmp_path / "out.nc"
    p = _start_slow_writer(target)
    t0 = time.monotonic()
    p.send_signal(sig)
    out, err = p.communicate(timeout=60)
    elapsed = time.monotonic() - t0
    assert p.returncode in returncodes, err
    assert "done" not in out
    assert elapsed < 5, f"the writer took {elapsed:.1f} s to stop"
    assert os.listdir(tmp_path) == []  # neither the output nor a temporary


def test_ctrl_c_during_a_large_in_memory_write_does_not_hang(tmp_path):
    """Plain xarray hangs here (KeyboardInterrupt inside its HDF5 lock, then waiting for it)."""
    target = tmp_path / "big.nc"
    code = (
        "import sys, numpy as np, xarray as xr\n"
        "from xsr import _io\n"
        "ds = xr.Dataset({'a': (('t', 'y', 'x'), np.ones((25, 1000, 1000)))})  # 200 MB\n"
        "_io.write_netcdf(ds, sys.argv[1], overwrite=True)\n"
    )
    p = subprocess.Popen(
        [sys.executable, "-c", code, str(target)], env=ENV, stderr=subprocess.PIPE, text=True
    )

    def writing() -> bool:
        temps = _temps(tmp_path, "big.nc")
        try:
            return bool(temps) and (tmp_path / temps[0]).stat().st_size > 0
        except FileNotFoundError:
            return False

    _wait_for(lambda: writing() or p.poll() is not None, what="the write")
    t0 = time.monotonic()
    p.send_signal(signal.SIGINT)
    try:
        p.communicate(timeout=30)
    except subprocess.TimeoutExpired:  # pragma: no cover - the defect
        p.kill()
        p.communicate()
        pytest.fail("Ctrl-C during to_netcdf hung the process")
    elapsed = time.monotonic() - t0
    if p.returncode == 0:  # pragma: no cover - a very fast disk: written before the signal
        pytest.skip("the write finished before the signal arrived")
    assert p.returncode == -signal.SIGINT
    assert elapsed < 5, f"the writer took {elapsed:.1f} s to stop"
    assert os.listdir(tmp_path) == []


def test_handlers_are_restored_and_custom_ones_left_alone(tmp_path):
    seen = {}

    def spy(tmp: str) -> None:
        seen["term"] = signal.getsignal(signal.SIGTERM)
        seen["int"] = signal.getsignal(signal.SIGINT)
        Path(tmp).write_text("x")

    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    _io.atomic_write(tmp_path / "a.txt", spy)
    assert {s: signal.getsignal(s) for s in before} == before
    if before[signal.SIGTERM] is signal.SIG_DFL:
        assert seen["term"] is not signal.SIG_DFL  # taken over during the write

    def custom(signum, frame):  # pragma: no cover - never called
        pass

    old = signal.signal(signal.SIGTERM, custom)
    try:
        _io.atomic_write(tmp_path / "b.txt", spy)
        assert seen["term"] is custom
        assert signal.getsignal(signal.SIGTERM) is custom
    finally:
        signal.signal(signal.SIGTERM, old)


# ------------------------------------------------------------------------------------------
# locks
# ------------------------------------------------------------------------------------------
def test_lock_names_its_holder_and_is_released(tmp_path):
    out = tmp_path / "out.zarr"
    with _io.output_lock(out) as lock:
        assert lock == tmp_path / ".out.zarr.xsr-lock"
        info = json.loads(lock.read_text())
        assert info["pid"] == os.getpid()
        pattern = rf"being written by another xsr run: PID {os.getpid()} on host .*, started 2"
        with pytest.raises(LockError, match=pattern), _io.output_lock(out):
            pass  # pragma: no cover
    assert not lock.exists()
    with _io.output_lock(out):  # free again
        pass


def test_lock_left_by_a_killed_run_is_free(tmp_path):
    out = tmp_path / "out.nc"
    info = {"pid": _dead_pid(), "host": "h", "started": "then", "command": "xsr"}
    _io.lock_path(out).write_text(json.dumps(info))  # nobody holds it (flock)
    with _io.output_lock(out) as lock:
        assert json.loads(lock.read_text())["pid"] == os.getpid()


def test_lock_without_flock_uses_o_excl_and_pids(tmp_path, monkeypatch):
    import socket

    def no_flock(fd: int) -> None:
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(_io, "_flock", no_flock)
    out = tmp_path / "out.zarr"
    lock = _io.lock_path(out)
    with (
        _io.output_lock(out),
        pytest.raises(LockError, match=f"PID {os.getpid()}"),
        _io.output_lock(out),
    ):
        pass  # pragma: no cover
    assert not lock.exists()
    # stale: a dead process of this host
    here = {"pid": _dead_pid(), "host": socket.gethostname(), "started": "t", "command": "c"}
    lock.write_text(json.dumps(here))
    with _io.output_lock(out):
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    # another host: cannot be checked, so it holds, and the message says how to clear it
    there = {"pid": 1, "host": "elsewhere", "started": "t", "command": "c"}
    lock.write_text(json.dumps(there))
    with (
        pytest.raises(LockError, match="if no such run is active any more, remove"),
        _io.output_lock(out),
    ):
        pass  # pragma: no cover


# ------------------------------------------------------------------------------------------
# markers
# ------------------------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore:Consolidated metadata")
def test_markers_tell_xsr_outputs(tmp_path):
    ds = lonlat_dataset(ny=4, nx=6)
    mine = ds.assign_attrs(xsr_config=json.dumps({"factor": 2}), xsr_status="complete")
    mine.to_zarr(tmp_path / "mine.zarr")
    ds.to_zarr(tmp_path / "theirs.zarr")
    _io.write_netcdf(mine, tmp_path / "mine.nc", overwrite=False)
    _io.write_netcdf(ds, tmp_path / "theirs.nc", overwrite=False)
    (tmp_path / "empty.zarr").mkdir()
    (tmp_path / "junk.nc").write_bytes(b"")
    m = _io.read_marker(tmp_path / "mine.zarr")
    assert m is not None and m.kind == "zarr" and m.config == {"factor": 2}
    m = _io.read_marker(tmp_path / "mine.nc")
    assert m is not None and m.kind == "netcdf" and m.status == "complete"
    for name in ("theirs.zarr", "theirs.nc", "empty.zarr", "junk.nc", "missing"):
        assert _io.read_marker(tmp_path / name) is None
    assert _io.check_store(tmp_path / "mine.zarr") is not None
    assert _io.check_store(tmp_path / "empty.zarr") is None
    assert _io.check_store(tmp_path / "missing.zarr") is None
    for name, what in (("theirs.zarr", "a folder"), ("junk.nc", "a file")):
        with pytest.raises(OutputError, match=f"is {what} .*that xsr did not write"):
            _io.check_store(tmp_path / name)


# ------------------------------------------------------------------------------------------
# CF hygiene
# ------------------------------------------------------------------------------------------
def test_no_fill_value_on_coordinates_and_bounds(tmp_path):
    ds = lonlat_dataset(ny=4, nx=6)
    assert ds["lat"].attrs["bounds"] == "lat_bnds"
    _io.write_netcdf(ds, tmp_path / "a.nc", overwrite=False)
    with netCDF4.Dataset(tmp_path / "a.nc") as nc:
        for name in ("lat", "lon", "lat_bnds", "lon_bnds"):
            assert "_FillValue" not in nc[name].ncattrs(), name
        assert "_FillValue" in nc["sst"].ncattrs()  # data variables keep theirs
    # a _FillValue in the encoding (the user's, or the input file's) is kept
    ds["lat"].encoding["_FillValue"] = -999.0
    _io.write_netcdf(ds, tmp_path / "b.nc", overwrite=False)
    with netCDF4.Dataset(tmp_path / "b.nc") as nc:
        assert nc["lat"].getncattr("_FillValue") == -999.0
        assert "_FillValue" not in nc["lon"].ncattrs()
    assert "_FillValue" not in ds["lon"].encoding  # the caller's Dataset is not changed
    back = xr.open_dataset(tmp_path / "a.nc").load()
    xr.testing.assert_identical(back.drop_encoding(), ds.drop_encoding())
    np.testing.assert_array_equal(back["lat"].values, ds["lat"].values)
