"""xsr.evaluate and ``xsr evaluate``: the twin experiment on the user's own data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from conftest import SHARED_DATA
from hypothesis import given
from hypothesis import strategies as st

import xsr
from xsr.batch import open_inputs
from xsr.cli import main
from xsr.exceptions import MethodError, OptionError, OutputExistsError
from xsr.testing import assert_conserves

DIP = {"members": 3, "iterations": 5, "progress": False}


def _fields(nt: int = 2, ny: int = 24, nx: int = 32, seed: int = 0) -> xr.Dataset:
    """Two smooth fields with fine structure on a lat/lon grid; ``sst`` has land."""
    rng = np.random.default_rng(seed)
    lat = np.linspace(30.25, 30.25 + 0.5 * (ny - 1), ny)
    lon = np.linspace(-60.25, -60.25 + 0.5 * (nx - 1), nx)
    yy, xx = np.meshgrid(np.linspace(0, 3, ny), np.linspace(0, 4, nx), indexing="ij")
    base = np.sin(xx + yy) + 0.3 * np.cos(3 * xx)
    a = np.stack([base + 0.1 * rng.normal(size=(ny, nx)) for _ in range(nt)])
    b = 15 + 2 * a
    b[:, :5, :7] = np.nan  # land
    coords = {
        "time": np.arange(nt),
        "lat": ("lat", lat, {"units": "degrees_north", "standard_name": "latitude"}),
        "lon": ("lon", lon, {"units": "degrees_east", "standard_name": "longitude"}),
    }
    ssh = {"units": "m", "standard_name": "sea_surface_height_above_geoid"}
    return xr.Dataset(
        {
            "adt": (("time", "lat", "lon"), 0.1 * a, ssh),
            "sst": (("time", "lat", "lon"), b, {"units": "degC"}),
        },
        coords=coords,
    )


@pytest.fixture(scope="module")
def ev(tmp_path_factory: pytest.TempPathFactory) -> xsr.Evaluation:
    out = tmp_path_factory.mktemp("ev") / "run"
    return xsr.evaluate(
        _fields(),
        factor=4,
        methods=["nearest", "bicubic", "dip-ensemble"],
        method_options={"dip-ensemble": DIP},
        out=out,
        progress=False,
    )


def test_every_variable_and_method_scored(ev: xsr.Evaluation) -> None:
    assert ev.variables == ["adt", "sst"]
    assert ev.methods == ["nearest", "bicubic", "dip-ensemble"]
    assert len(ev.scores) == 6
    for r in ev.scores:
        # exact conservation of every result (float64), checked by evaluate itself
        assert r["conservation_error"] < 1e-12
        assert np.isfinite(r["rmse"]) and r["rmse"] > 0
        assert r["seconds"] >= 0
        if r["method"] == "dip-ensemble":
            assert r["crps_kind"].startswith("ensemble of 3 members")
            assert r["spread_skill"] is not None and r["spread_skill"] > 0
            assert len(r["rank_histogram"]) == 4
            assert abs(sum(r["rank_histogram"]) - 1) < 1e-9
            assert r["rank_outer_vs_uniform"] >= 1
        else:
            # a deterministic field's CRPS is its MAE
            assert r["crps"] == pytest.approx(r["mae"])
            assert r["spread_skill"] is None
    first = [r for r in ev.scores if r["method"] == "nearest"]
    assert all(r["rmse_vs_first"] == pytest.approx(1.0) for r in first)
    # bicubic beats nearest on smooth fields
    rm = {(r["variable"], r["method"]): r["rmse"] for r in ev.scores}
    assert rm[("adt", "bicubic")] < rm[("adt", "nearest")]
    assert ev.best("rmse", variable="adt") in ("bicubic", "dip-ensemble")
    df = ev.to_dataframe()
    assert df.loc[("adt", "bicubic"), "rmse"] == rm[("adt", "bicubic")]
    assert ev.best("ssim", variable="sst") == df.xs("sst")["ssim"].idxmax()
    # the results conserve (the helper of the test suite, independently of evaluate)
    for label in ev.methods:
        assert_conserves(ev.results[label][["adt", "sst"]], ev.coarse, 4)


def test_land_left_out_and_masked(ev: xsr.Evaluation) -> None:
    sst = ev.results["bicubic"]["sst"]
    assert bool(sst.isel(lat=slice(0, 5), lon=slice(0, 7)).isnull().all())
    assert bool(sst.isel(lat=slice(8, None)).notnull().all())


def test_files_written_and_readable(ev: xsr.Evaluation) -> None:
    names = {p.name for p in ev.files}
    assert {"evaluation.json", "evaluation.md"} <= names
    pytest.importorskip("matplotlib")
    assert {"errors_adt.png", "spectra_adt.png", "spread_adt.png"} <= names
    folder = ev.files[0].parent
    doc = json.loads((folder / "evaluation.json").read_text())
    assert doc["factor"] == 4
    assert [r["method"] for r in doc["scores"]][:3] == ["nearest", "bicubic", "dip-ensemble"]
    assert "adt" in doc["spectra"] and "wavelength" in doc["spectra"]["adt"]
    table = (folder / "evaluation.md").read_text()
    assert "| dip-ensemble |" in table and "CRPS" in table
    assert str(ev).startswith("Evaluation(x4")


def test_existing_files_are_not_replaced(ev: xsr.Evaluation) -> None:
    folder = ev.files[0].parent
    before = (folder / "evaluation.json").read_bytes()
    with pytest.raises(OutputExistsError):
        xsr.evaluate(_fields(), factor=4, methods="bicubic", out=folder, progress=False)
    assert (folder / "evaluation.json").read_bytes() == before


def test_dataarray_and_cropping() -> None:
    da = _fields(nt=1, ny=26, nx=33)["adt"]
    ev = xsr.evaluate(da, factor=4, methods="bicubic,nearest", progress=False)
    assert ev.variables == ["adt"]
    assert ev.truth.sizes["lat"] == 24 and ev.truth.sizes["lon"] == 32
    assert any("cropped to 24 x 32" in n for n in ev.settings["notes"])
    assert ev.scores[0]["conservation_error"] < 1e-12


def test_guide_goes_to_the_methods_that_use_one() -> None:
    ds = _fields(nt=1, ny=48, nx=48)
    rng = np.random.default_rng(3)
    g = xr.DataArray(
        rng.normal(size=(48, 48)), dims=("lat", "lon"), coords={"lat": ds.lat, "lon": ds.lon}
    ).rename("elev")
    g.attrs["units"] = "m"
    ds["adt"] = ds["adt"] + 0.05 * g
    ev = xsr.evaluate(
        ds, factor=4, methods=["bicubic", "regression"], var="adt", guide=g, progress=False
    )
    rows = {r["method"]: r for r in ev.scores}
    assert "guide" not in rows["bicubic"]
    assert "elev" in rows["regression"]["guide"]
    assert rows["regression"]["rmse"] < rows["bicubic"]["rmse"]
    assert rows["regression"]["conservation_error"] < 1e-12


@pytest.mark.parametrize(
    ("kw", "err", "match"),
    [
        ({"methods": []}, OptionError, "methods is empty"),
        ({"methods": "bicubic,nope"}, MethodError, "unknown method 'nope'"),
        ({"methods": "bicubic:x"}, OptionError, "only 'cnn' takes"),
        ({"methods": "bicubic,bicubic"}, OptionError, "more than once"),
        ({"methods": "bicubic", "method_options": {"dip": {}}}, OptionError, "not among"),
        ({"methods": "dip", "method_options": {"dip": {"nope": 1}}}, OptionError, "nope"),
        ({"methods": "bicubic", "var": "zzz"}, OptionError, "zzz"),
        ({"methods": "bicubic", "mask": "yes"}, OptionError, "mask"),
        ({"methods": "a b=bicubic"}, OptionError, "LABEL=NAME"),
        ({"methods": "x=a=bicubic"}, OptionError, "LABEL=NAME"),
        ({"methods": "x="}, OptionError, "LABEL=NAME"),
        ({"methods": "nearest=bicubic"}, OptionError, "name of another method"),
        ({"methods": "x=nope"}, MethodError, "unknown method 'nope'"),
        ({"methods": "bicubic,bicubic=bicubic"}, OptionError, "more than once"),
        ({"methods": "x=bicubic", "method_options": {"y": {}}}, OptionError, "not among"),
    ],
)
def test_bad_options_are_clear_errors(kw: dict, err: type, match: str) -> None:
    with pytest.raises(err, match=match):
        xsr.evaluate(_fields(nt=1), factor=4, progress=False, **kw)


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    src = tmp_path / "fine.nc"
    _fields().to_netcdf(src)
    out = tmp_path / "ev"
    args = ["evaluate", str(src), "-f", "4", "-m", "bicubic,dip-ensemble,s2=dip-ensemble",
            "--out", str(out), "--members", "2", "--iterations", "3",
            "-O", "dip-ensemble.seed=1", "-O", "s2.seed=2",
            "--no-progress", "--no-figures", "--var", "adt"]  # fmt: skip
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "| dip-ensemble |" in text and "| s2 |" in text and "best RMSE for adt" in text
    doc = json.loads((out / "evaluation.json").read_text())
    dip = next(r for r in doc["scores"] if r["method"] == "dip-ensemble")
    assert dip["options"]["members"] == 2 and dip["options"]["seed"] == 1
    assert dip["options"]["iterations"] == 3
    # the labelled run: the options of the method's name and of its label
    s2 = next(r for r in doc["scores"] if r["method"] == "s2")
    assert s2["options"]["members"] == 2 and s2["options"]["seed"] == 2
    assert s2["rmse"] != dip["rmse"]
    # an existing evaluation is not replaced without --overwrite
    assert main(args) == 2
    assert "exists" in capsys.readouterr().err
    assert main([*args, "--overwrite"]) == 0
    capsys.readouterr()
    assert main([*args[:8], "-O", "members=2", "--overwrite"]) == 2
    assert "METHOD.KEY=VALUE" in capsys.readouterr().err


REAL = {
    "ssh_global_quarterdeg_20190223.nc": 8,
    "ssh_med_eighthdeg_2005AMJ.nc": 4,
    "ssh_qg_256_train.nc": 8,
    "tasmax_gridmet_24thdeg_20190121.nc": 8,
    "tas_euro_cordex_rotated_pole.nc": 4,
    "ocean_pop_curvilinear.nc": 4,
    "precip_radolan_1km_201408102050.nc": 8,
    "precip_stageiv_4km_2002030112.nc": 4,
    "landsat7_rgb_300m.nc": 8,
    "elevation_colorado_1arcmin.nc": 4,
}


@pytest.mark.parametrize("name", sorted(REAL))
def test_every_real_file(name: str) -> None:
    """Every real file: bicubic and nearest on every field, exact conservation."""
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"real data file {path} not present")
    ds = open_inputs([str(path)])
    ydim, xdim = xsr.spatial_dims(ds)
    lead = [d for d in ds.dims if d not in (ydim, xdim) and ds.sizes[d] > 2]
    ds = ds.isel({d: slice(0, 2) for d in lead})  # two steps of a series
    ev = xsr.evaluate(ds, factor=REAL[name], methods="nearest,bicubic", progress=False)
    assert ev.scores
    for r in ev.scores:
        assert r["conservation_error"] < 1e-12 or (
            r["conservation_error"] < 2e-6 and ev.truth[r["variable"]].dtype == np.float32
        )
        assert np.isfinite(r["rmse"])


def test_cli_isel(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    src = tmp_path / "fine.nc"
    _fields(nt=3).to_netcdf(src)
    out = tmp_path / "ev"
    base = ["evaluate", str(src), "-f", "4", "-m", "nearest", "--out", str(out),
            "--no-progress", "--no-figures"]  # fmt: skip
    assert main([*base, "--isel", "time=1:3"]) == 0
    capsys.readouterr()
    doc = json.loads((out / "evaluation.json").read_text())
    assert doc["settings"]["shape"] == [24, 32]
    ev_one = xsr.evaluate(_fields(nt=3).isel(time=slice(1, 3)), factor=4, methods="nearest",
                          progress=False)  # fmt: skip
    assert doc["scores"][0]["rmse"] == pytest.approx(ev_one.scores[0]["rmse"], rel=1e-12)
    for bad, match in (("time", "expected DIM="), ("depth=0:1", "not a dimension"),
                       ("time=a:b", "integers")):  # fmt: skip
        assert main([*base, "--overwrite", "--isel", bad]) == 2
        assert match in capsys.readouterr().err


def test_one_method_under_two_labels_raw_and_calibrated() -> None:
    """``LABEL=NAME``: the same method with other options; the scores come from the result
    (the area-weighted spread-error correlation recomputed here independently)."""
    ds = _fields(nt=1, ny=64, nx=64)[["adt"]]
    ev = xsr.evaluate(
        ds,
        factor=4,
        methods="dip-ensemble,cal=dip-ensemble",
        method_options={"dip-ensemble": DIP, "cal": {"calibrate": "scale"}},
        progress=False,
    )
    assert ev.methods == ["dip-ensemble", "cal"]
    raw, cal = ev.results["dip-ensemble"], ev.results["cal"]
    assert cal.attrs.get("xsr_calibrate", cal["adt"].attrs.get("xsr_calibrate"))
    # the calibration rescales the spread about an unchanged mean
    np.testing.assert_allclose(cal["adt"].values, raw["adt"].values, rtol=0, atol=1e-12)
    ratio = (cal["adt_std"] / raw["adt_std"]).values
    ratio = ratio[np.isfinite(ratio)]
    assert ratio.std() < 1e-9 * ratio.mean() and abs(ratio.mean() - 1) > 1e-3
    rows = {r["method"]: r for r in ev.scores}
    assert rows["cal"]["spread_skill"] != pytest.approx(rows["dip-ensemble"]["spread_skill"])
    assert rows["cal"]["calibration"].startswith("scale factor fitted at x2")
    assert "calibration" not in rows["dip-ensemble"]
    for label in ev.methods:
        assert rows[label]["conservation_error"] < 1e-12
        assert_conserves(ev.results[label][["adt"]], ev.coarse, 4)
    # corr(spread, |error|), area-weighted, by hand
    area = np.asarray(xsr.cell_areas(ev.truth, dims=("lat", "lon")), dtype=np.float64)
    t = ev.truth["adt"].values[0]
    for label in ev.methods:
        res = ev.results[label]
        s = res["adt_std"].values[0].astype(np.float64)
        e = np.abs(res["adt"].values[0] - t)
        w = np.broadcast_to(area, e.shape) / area.sum()
        sm, em = (w * s).sum(), (w * e).sum()
        c = (w * (s - sm) * (e - em)).sum() / np.sqrt(
            (w * (s - sm) ** 2).sum() * (w * (e - em) ** 2).sum()
        )
        assert rows[label]["spread_error_corr"] == pytest.approx(c, rel=1e-9)
    # the weights matter here: the unweighted correlation differs
    u = np.corrcoef(s.ravel(), e.ravel())[0, 1]
    assert abs(u - c) > 1e-6


def test_a_constant_field_is_scored_without_failing() -> None:
    """A field with no variation (no rain anywhere in the window): SSIM is undefined (None),
    the conservation error is absolute, everything else is scored."""
    ds = _fields(nt=1, ny=32, nx=32)
    ds["rain"] = ds["adt"] * 0.0
    ds["rain"].attrs = {"units": "kg m-2"}
    ev = xsr.evaluate(ds[["rain"]], factor=4, methods="bicubic,dip-ensemble",
                      method_options={"dip-ensemble": DIP}, progress=False)  # fmt: skip
    rows = {r["method"]: r for r in ev.scores}
    assert rows["bicubic"]["ssim"] is None and rows["dip-ensemble"]["ssim"] is None
    assert rows["bicubic"]["rmse"] == 0.0
    for r in ev.scores:
        assert np.isfinite(r["conservation_error"]) and r["conservation_error"] < 1e-12
        assert np.isfinite(r["rmse"])
    assert "| bicubic |" in ev.table()


@given(
    cy=st.integers(2, 5),
    cx=st.integers(2, 5),
    f=st.integers(2, 4),
    value=st.sampled_from([0.0, 1.5, -273.15]),
    as_dataarray=st.booleans(),
    land=st.booleans(),
)
def test_constant_fields_on_generated_grids(cy, cx, f, value, as_dataarray, land) -> None:
    """Any constant field (zero or not, with or without land, Dataset or DataArray) is
    scored: bicubic gives it back exactly, SSIM is left out, conservation is checked."""
    ny, nx = cy * f, cx * f
    lat = 10.0 + 0.5 * np.arange(ny)
    lon = -40.0 + 0.5 * np.arange(nx)
    a = np.full((1, ny, nx), value)
    if land:
        a[0, :f, :f] = np.nan  # one coarse cell of land
    da = xr.DataArray(
        a,
        dims=("time", "lat", "lon"),
        coords={
            "time": [0],
            "lat": ("lat", lat, {"units": "degrees_north", "standard_name": "latitude"}),
            "lon": ("lon", lon, {"units": "degrees_east", "standard_name": "longitude"}),
        },
        name="v",
        attrs={"units": "1"},
    )
    obj = da if as_dataarray else da.to_dataset()
    ev = xsr.evaluate(obj, factor=f, methods="bicubic", progress=False)
    (row,) = ev.scores
    assert row["ssim"] is None
    assert row["rmse"] <= 1e-12 * max(1.0, abs(value))
    assert np.isfinite(row["conservation_error"]) and row["conservation_error"] < 1e-12
    assert_conserves(ev.results["bicubic"][["v"]], ev.coarse, f)
