"""xsr's netCDF outputs are no less CF-compliant than their inputs.

For each real file in ../shared/data (skipped when absent) the IOOS compliance checker's
``cf:1.8`` suite runs, offline, on the input and on xsr's output of it, written five ways:
the ``xsr downscale`` command (:func:`xsr.cli.main`), the same with ``--var`` naming the
field, the batch command on a netCDF output (``--config FILE`` sends it through
:mod:`xsr.batch`), and the Python API (``ds.sr.downscale(...).to_netcdf(...)``) on the file
opened with xarray's default ``decode_coords=True`` and with ``decode_coords="all"``.

An output may fix problems of its input, never add one: every error (high priority) or
warning (medium) on the output must be on the input too.  Checks the checker lacks are
added (tests/_cfcheck.py): names in ``bounds``, ``coordinates``, ``ancillary_variables``,
``cell_measures``, ``grid_mapping`` and ``cell_methods`` resolve, and ``valid_*`` /
``actual_range`` attributes hold for the data.  ``history`` and ``Conventions`` are kept,
and so are the variables' ``grid_mapping``, ``bounds`` (the file's bounds are refined, not
replaced by inferred ones under another name), ``cell_methods``, ``standard_name`` and other
such attributes.

Large inputs are cropped first with :func:`_cfcheck.crop_netcdf` (netCDF4, raw copy, so the
crop keeps every attribute, type and fill value of the file) and the crop is the input.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

import netCDF4
import numpy as np
import pytest
import xarray as xr
from _cfcheck import crop_netcdf, findings, new_findings, referenced_names
from conftest import shared_file

import xsr  # noqa: F401  (registers .sr)
from xsr.cli import main

pytest.importorskip("compliance_checker")

FACTOR = 2


@dataclass(frozen=True)
class Case:
    file: str
    var: str  # the field, for --var
    dims: tuple[str, str]  # horizontal (y, x): their sizes differ between input and output
    crop: tuple[tuple[str, int, int], ...] = ()  # (dimension, start, stop)
    # give the field valid_min = 0 and its actual_range, as many precipitation files have
    ranged: bool = False

    def __str__(self) -> str:
        parts = self.file.split("_")
        return f"{parts[0]}-{parts[1]}" + ("-ranged" if self.ranged else "")


CASES = [
    # 0.25 deg global, CF bounds, valid_min/valid_max on the coordinates, a grid_mapping
    # naming an absent variable; kept whole (periodic longitude, the poles)
    Case("ssh_global_quarterdeg_20190223.nc", "adt", ("latitude", "longitude")),
    # rotated pole: grid mapping in a scalar char variable, time bounds, missing_value
    Case("tas_euro_cordex_rotated_pole.nc", "tas", ("rlat", "rlon")),
    # displaced-pole curvilinear (2-D lat/lon, no bounds), cell_methods
    Case("ocean_pop_curvilinear.nc", "t", ("nlat", "nlon")),
    # grid mapping in a length-1 dimension coordinate (crs), packed uint16 data
    Case(
        "tasmax_gridmet_24thdeg_20190121.nc",
        "air_temperature",
        ("lat", "lon"),
        (("lat", 150, 450), ("lon", 300, 900)),
    ),
    # polar stereographic with 2-D lat/lon and a coordinates attribute naming absent variables
    Case(
        "precip_stageiv_4km_2002030112.nc",
        "precipitation_amount",
        ("y", "x"),
        (("y", 300, 500), ("x", 400, 650)),
    ),
    # the same with valid_min = 0 and actual_range on the precipitation: downscaling must not
    # leave the valid range (netCDF4 readers mask values outside it) nor keep a stale range
    Case(
        "precip_stageiv_4km_2002030112.nc",
        "precipitation_amount",
        ("y", "x"),
        (("y", 300, 500), ("x", 400, 650)),
        ranged=True,
    ),
    # projection x/y with _FillValue on the coordinates
    Case(
        "precip_radolan_1km_201408102050.nc", "precipitation_amount", ("y", "x"), (("y", 200, 500),)
    ),
]
# api-all: decode_coords="all" (bounds and grid mappings as coordinates, their names moved to
# .encoding), as rioxarray and cf-xarray users open files
ROUTES = ["cli", "cli-var", "batch", "api", "api-all"]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cf")


@functools.cache
def _input(case: Case, workdir: Path) -> Path:
    src = shared_file(case.file)
    if not case.crop and not case.ranged:
        return src
    slices = {d: slice(a, b) for d, a, b in case.crop}
    path = crop_netcdf(src, workdir / f"in_{case}.nc", slices)
    if case.ranged:
        with netCDF4.Dataset(path, "a") as nc:
            v = nc[case.var]
            data = np.ma.masked_invalid(v[...])
            v.setncattr("valid_min", np.array(0, v.dtype))
            v.setncattr("actual_range", np.array([data.min(), data.max()], v.dtype))
    return path


@functools.cache
def _output(case: Case, route: str, workdir: Path) -> Path:
    src = _input(case, workdir)
    out = workdir / f"{route}_{case}.nc"
    out.unlink(missing_ok=True)  # left by an earlier failure: retry, do not refuse
    if route in ("cli", "cli-var"):
        argv = ["downscale", str(src), str(out), "--factor", str(FACTOR), "-m", "bilinear"]
        assert main(argv + (["--var", case.var] if route == "cli-var" else [])) == 0
    elif route == "batch":
        config = workdir / "job.json"
        config.write_text(json.dumps({"factor": FACTOR, "method": "bilinear", "progress": False}))
        assert main(["downscale", str(src), str(out), "--config", str(config)]) == 0
    else:
        decode = "all" if route == "api-all" else True
        with xr.open_dataset(src, decode_coords=decode) as ds:
            ds.sr.downscale(factor=FACTOR, method="bicubic").to_netcdf(out)
    return out


@functools.cache
def _findings(path: Path, dims: tuple[str, str]) -> tuple:
    return tuple(findings(path, vary=dims))


def _ids(values: list) -> list[str]:
    return [str(v) for v in values]


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("case", CASES, ids=_ids(CASES))
def test_output_adds_no_cf_error_or_warning(case: Case, route: str, workdir: Path) -> None:
    before = _findings(_input(case, workdir), case.dims)
    after = _findings(_output(case, route, workdir), case.dims)
    new = new_findings(before, after)
    assert not new, f"{route} output of {case.file}: new CF problems\n" + "\n".join(
        f"  {f}" for f in new
    )


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("case", CASES, ids=_ids(CASES))
def test_history_and_conventions_kept(case: Case, route: str, workdir: Path) -> None:
    with (
        netCDF4.Dataset(_input(case, workdir)) as a,
        netCDF4.Dataset(_output(case, route, workdir)) as b,
    ):
        before = {k: a.getncattr(k) for k in a.ncattrs()}
        after = {k: b.getncattr(k) for k in b.ncattrs()}
    if "Conventions" in before:
        assert after.get("Conventions") == before["Conventions"]
    history = str(after.get("history", ""))
    first, _, rest = history.partition("\n")
    assert "xsr" in first
    assert "downscale" in first
    assert rest == str(before.get("history", ""))


# attributes that link a variable to others or say what it is: downscaling changes none of them
_KEPT_ATTRS = (
    "grid_mapping",
    "bounds",
    "cell_methods",
    "cell_measures",
    "ancillary_variables",
    "standard_name",
    "units",
    "axis",
    "positive",
)

_LINKS = ("grid_mapping", "bounds", "cell_measures", "ancillary_variables")


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("case", CASES, ids=_ids(CASES))
def test_cf_attributes_kept(case: Case, route: str, workdir: Path) -> None:
    """Every variable of the input that the output has keeps its ``grid_mapping``,
    ``bounds`` (the same bounds variable: xsr refines the file's bounds, it does not infer
    new ones under another name), ``cell_methods``, ``standard_name``, ... attributes."""
    lost = []
    with (
        netCDF4.Dataset(_input(case, workdir)) as a,
        netCDF4.Dataset(_output(case, route, workdir)) as b,
    ):
        for name, v in a.variables.items():
            if name not in b.variables:
                continue
            w = b.variables[name]
            for attr in _KEPT_ATTRS:
                if attr not in v.ncattrs():
                    continue
                old = str(v.getncattr(attr))
                if attr == "units" and " since " in old:
                    continue  # xarray re-encodes times ("days since 1949-12-01 00:00:00")
                if attr in _LINKS and not set(referenced_names(attr, old)) <= set(a.variables):
                    continue  # names a variable the input lacks: nothing to lose
                new = str(w.getncattr(attr)) if attr in w.ncattrs() else None
                if new != old:
                    lost.append(f"{name}:{attr} = {old!r} in the input, {new!r} in the output")
    assert not lost, f"{route} output of {case.file}:\n" + "\n".join(f"  {x}" for x in lost)


def test_checker_offline_and_helpers(tmp_path: Path) -> None:
    """The helpers on a small file of their own (no real data): the checker runs with the
    network refused although the file asks for standard-name table v37, extended-form
    grid_mapping references are parsed, sizes are normalised, and a crop keeps attributes."""
    from _cfcheck import cf_findings, normalise, reference_findings

    path = tmp_path / "small.nc"
    with netCDF4.Dataset(path, "w") as nc:
        nc.Conventions = "CF-1.8"
        nc.standard_name_vocabulary = "CF Standard Name Table v37"
        nc.createDimension("lat", 3)
        nc.createDimension("lon", 4)
        lat = nc.createVariable("lat", "f8", ("lat",))
        lat.setncatts({"units": "degrees_north", "standard_name": "latitude"})
        lat[:] = [0.0, 1.0, 2.0]
        lon = nc.createVariable("lon", "f8", ("lon",))
        lon.setncatts({"units": "degrees_east", "standard_name": "longitude"})
        lon[:] = [0.0, 1.0, 2.0, 3.0]
        t = nc.createVariable("t", "f4", ("lat", "lon"), fill_value=1e20)
        t.setncatts({"units": "K", "standard_name": "air_temperature"})
        t.setncatts({"grid_mapping": "crs: lat lon", "actual_range": [0.0, 5.0]})
        t[:] = 1.0
    found = cf_findings(path, vary=("lat", "lon"))  # raises if it tried the network
    assert any("crs" in f.message and f.priority == "high" for f in found), found
    assert [f.message for f in reference_findings(path)] == [
        "t:grid_mapping names 'crs', which is not in the file"
    ]
    text = "dimension lat has 3 cells; CF-1.3, 3.5, x3 and 13 stay"
    assert normalise(text, path=path, sizes={"lat": 3}) == (
        "dimension lat has <len(lat)> cells; CF-1.3, 3.5, x3 and 13 stay"
    )
    crop = crop_netcdf(path, tmp_path / "crop.nc", {"lon": slice(1, 3)})
    with netCDF4.Dataset(crop) as nc:
        assert nc.dimensions["lon"].size == 2
        assert nc["t"].getncattr("grid_mapping") == "crs: lat lon"
        assert nc["t"].getncattr("_FillValue") == np.float32(1e20)
        assert nc.standard_name_vocabulary == "CF Standard Name Table v37"
    assert [f.check for f in findings(crop)] == [f.check for f in findings(path)]
