"""The ``xsr`` command."""

from __future__ import annotations

import os
import subprocess
import sys

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
