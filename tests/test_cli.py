"""The ``xsr`` command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import xarray as xr

from xsr.cli import main, write_netcdf_atomic
from xsr.datasets import open_sample
from xsr.exceptions import OutputExistsError
from xsr.testing import assert_conserves, lonlat_dataset


def test_cli_on_the_sample(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    rc = main(["downscale", "--factor", "4"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "128 x 256 -> 512 x 1024" in text
    assert "max relative conservation error" in text
    out = tmp_path / "xsr_sample_x4_bicubic.nc"
    assert out.exists()
    fine = xr.open_dataset(out).load()
    assert_conserves(fine, open_sample(), 4)
    # a second run refuses to overwrite, and leaves the file as it was
    before = out.stat().st_mtime_ns
    rc = main(["downscale", "--factor", "4"])
    assert rc == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert out.stat().st_mtime_ns == before


def test_cli_file_in_file_out(tmp_path, capsys):
    src = tmp_path / "in.nc"
    lonlat_dataset().to_netcdf(src)
    dst = tmp_path / "out.nc"
    rc = main(
        [
            "downscale",
            str(src),
            str(dst),
            "-f",
            "3",
            "-m",
            "nearest",
            "--var",
            "pr",
            "--conserve",
            "multiplicative",
        ]
    )
    assert rc == 0
    fine = xr.open_dataset(dst).load()
    assert "pr" in fine.data_vars
    assert "sst" not in fine.data_vars
    assert fine["pr"].attrs["xsr_conserve"] == "multiplicative"
    assert_conserves(fine, xr.open_dataset(src).load()[["pr"]], 3)


def test_cli_errors(tmp_path, capsys):
    assert main(["downscale", "--factor", "1"]) == 2
    assert "integer >= 2" in capsys.readouterr().err
    assert main(["downscale", "--method", "bicubc", "--factor", "2"]) == 2
    assert "did you mean 'bicubic'" in capsys.readouterr().err
    assert main(["downscale", str(tmp_path / "missing.nc")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_atomic_write_leaves_nothing_on_failure(tmp_path, monkeypatch):
    ds = lonlat_dataset()
    target = tmp_path / "out.nc"
    target.write_bytes(b"previous contents")

    def boom(self, path, *args, **kwargs):
        with open(path, "wb") as fh:
            fh.write(b"half")
        raise RuntimeError("disk full")

    monkeypatch.setattr(xr.Dataset, "to_netcdf", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        write_netcdf_atomic(ds, target, overwrite=True)
    assert target.read_bytes() == b"previous contents"
    assert os.listdir(tmp_path) == ["out.nc"]
    with pytest.raises(OutputExistsError, match="--overwrite"):
        write_netcdf_atomic(ds, target, overwrite=False)


def test_methods_command(capsys):
    assert main(["methods"]) == 0
    assert "bicubic" in capsys.readouterr().out.split()


def test_console_script_installed():
    out = subprocess.run(
        [sys.executable, "-m", "xsr.cli", "--version"], capture_output=True, text=True
    )
    assert out.returncode == 0
    assert out.stdout.startswith("xsr ")


def test_demo_command_writes_result_figure_and_table(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out = tmp_path / "demo"
    rc = main(
        [
            "demo",
            "--out",
            str(out),
            "--factor",
            "8",
            "--members",
            "2",
            "--iterations",
            "3",
            "--no-progress",
        ]
    )
    assert rc == 0
    text = capsys.readouterr().out
    assert "conservative bicubic" in text
    assert "dip-ensemble (2 members)" in text
    assert (out / "dip_twin_x8.png").stat().st_size > 10_000
    assert (out / "dip_twin_table.md").read_text().count("|") > 10
    fine = xr.open_dataset(out / "dip_twin_x8.nc").load()
    assert "adt_std" in fine
    # exact conservation of the written result against the coarse field it came from
    coarse = open_sample().sr.coarsen(factor=8)
    assert_conserves(fine[["adt"]], coarse[["adt"]], 8)


# ------------------------------------------------------------------------------------------
# clear errors (xsr: error: ..., status 2) for unusable files, found before computing
# ------------------------------------------------------------------------------------------
@pytest.fixture
def no_compute(monkeypatch):
    """Make any downscaling fail: errors must come before the computation."""
    import xsr.api

    def refuse(*args, **kwargs):
        raise AssertionError("computed before checking the files")

    monkeypatch.setattr(xsr.api, "downscale", refuse)


def _unwritable_folder(tmp_path):
    if os.geteuid() != 0:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        return ro
    from xsr import _io
    from xsr.exceptions import OutputFolderError

    try:  # root may write anywhere, except on read-only file systems such as /sys
        _io.check_folder("/sys/x.nc")
    except OutputFolderError:
        return Path("/sys")
    pytest.skip("no unwritable folder available to root here")


@pytest.mark.parametrize("output", ["out.nc", "out.zarr"])
def test_unwritable_output_folder_is_refused_before_computing(tmp_path, capsys, no_compute, output):
    src = tmp_path / "in.nc"
    lonlat_dataset().to_netcdf(src)
    ro = _unwritable_folder(tmp_path)
    assert main(["downscale", str(src), str(ro / output), "-f", "2", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("xsr: error: ")
    assert f"cannot write the output '{ro / output}': its folder '{ro}' is not writable" in err
    assert "write it to a folder you may write to" in err
    if ro != Path("/sys"):
        ro.chmod(0o700)


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
@pytest.mark.parametrize("extra", [[], ["--chunks", "time=1"]])  # single file, batch
def test_output_that_is_a_folder_is_refused_before_computing(
    tmp_path, capsys, no_compute, overwrite, extra
):
    src = tmp_path / "in.nc"
    lonlat_dataset().to_netcdf(src)
    folder = tmp_path / "out.nc"
    folder.mkdir()
    (folder / "keep.txt").write_text("mine")
    assert main(["downscale", str(src), str(folder), "-f", "2", *overwrite, *extra]) == 2
    err = capsys.readouterr().err
    assert f"output '{folder}' is a folder (1 entry): xsr writes a file there" in err
    assert "never replaces a folder, even with --overwrite" in err
    assert (folder / "keep.txt").read_text() == "mine"


@pytest.mark.parametrize("content", [b"", b"CDF\x01 truncated", b"hello, not netCDF\n"])
@pytest.mark.parametrize("output", ["out.nc", "out.zarr"])
def test_unreadable_input_is_named(tmp_path, capsys, content, output):
    bad = tmp_path / "bad.nc"
    bad.write_bytes(content)
    assert main(["downscale", str(bad), str(tmp_path / output), "-f", "2"]) == 2
    err = capsys.readouterr().err
    assert f"xsr: error: input '{bad}' cannot be read as netCDF or zarr (" in err
    assert "the file is empty: 0 bytes" in err if not content else "Error" in err
    assert "download or write it again if it is truncated or corrupt" in err
    assert not (tmp_path / output).exists()


def test_unreadable_input_among_several_is_named(tmp_path, capsys):
    good = tmp_path / "a.nc"
    lonlat_dataset().to_netcdf(good)
    bad = tmp_path / "b.nc"
    bad.write_bytes(b"")
    assert main(["downscale", str(good), str(bad), str(tmp_path / "o.zarr"), "-f", "2"]) == 2
    assert f"input '{bad}' cannot be read" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("content", "detail"),
    [
        (b"", r"\(the file is empty\)"),
        (b"hello\n", r"\(torch.load cannot read it: \w+"),
        (None, r"\(torch.load cannot read it: UnpicklingError"),  # a netCDF file
    ],
)
def test_model_file_that_is_not_a_model(tmp_path, capsys, content, detail):
    import re

    src = tmp_path / "in.nc"
    lonlat_dataset().to_netcdf(src)
    model = tmp_path / "model.pt"
    if content is None:
        lonlat_dataset().to_netcdf(model)
    else:
        model.write_bytes(content)
    args = ["downscale", str(src), str(tmp_path / "o.nc"), "-f", "2", "-m", "cnn"]
    assert main([*args, "--model", str(model)]) == 2
    err = capsys.readouterr().err
    assert re.search(rf"xsr: error: model file '{re.escape(str(model))}' is not a model "
                     rf"written by xsr {detail}", err), err  # fmt: skip
    assert "expected a file written by TrainedModel.save or `xsr train --out`" in err
    assert "registered name" in err


@pytest.mark.parametrize("factor", ["0", "-2", "1"])
def test_bad_factor_with_a_zarr_output(tmp_path, capsys, no_compute, factor):
    src = tmp_path / "in.nc"
    lonlat_dataset().to_netcdf(src)
    out = tmp_path / "o.zarr"
    assert main(["downscale", str(src), str(out), "--factor", factor]) == 2
    err = capsys.readouterr().err
    assert f"xsr: error: factor must be an integer >= 2, got {factor}" in err
    assert not out.exists()


# ------------------------------------------------------------------------------------------
# the files written: permissions and CF attributes
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("extra", [[], ["--chunks", "time=1"]])  # single file, batch
def test_written_files_are_cf_clean_and_get_the_umask(tmp_path, extra):
    import stat

    import netCDF4

    src = tmp_path / "in.nc"
    ds = lonlat_dataset(ny=4, nx=6)
    coords = ("lat", "lon", "lat_bnds", "lon_bnds")
    ds.to_netcdf(src, encoding={n: {"_FillValue": None} for n in coords})  # a CF-clean input
    out = tmp_path / "out.nc"
    old = os.umask(0o027)
    try:
        assert main(["downscale", str(src), str(out), "-f", "2", "--no-progress", *extra]) == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == 0o640  # as open(path, "w") would: 0o666 & ~umask
    with netCDF4.Dataset(out) as nc:
        for name in coords:
            assert "_FillValue" not in nc[name].ncattrs(), name
        assert "_FillValue" in nc["sst"].ncattrs()
