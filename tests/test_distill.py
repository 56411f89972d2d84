"""Tests of xsr.distill (teacher on samples, student trained on them, whole series)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xarray as xr

import xsr
from xsr.conserve import conservation_error
from xsr.distillation import Distillation
from xsr.exceptions import OptionError, ShapeError

TEACHER = {"members": 2, "iterations": 30, "progress": False}
TRAIN = {
    "epochs": 2,
    "steps_per_epoch": 3,
    "crop": 8,
    "progress": False,
    "model_options": {"channels": (8, 4), "kernels": (3, 3, 3)},
}


def _coarse(nt: int = 8) -> xr.Dataset:
    return xsr.coarsen(xsr.testing.projected_dataset(24, 24, nt=nt), factor=2)


@pytest.fixture(scope="module")
def distilled() -> tuple[xr.Dataset, Distillation]:
    coarse = _coarse()
    d = xsr.distill(
        coarse,
        factor=2,
        samples=6,
        student="srcnn",
        teacher_options=TEACHER,
        train_options=TRAIN,
        device="cpu",
    )
    return coarse, d


def test_series_result_conserves(distilled: tuple[xr.Dataset, Distillation]) -> None:
    coarse, d = distilled
    assert isinstance(d.result, xr.Dataset)
    fine = d.result["ssh"]
    assert fine.sizes == {"time": 8, "y": 24, "x": 24}
    assert np.isfinite(fine.values).all()
    assert conservation_error(fine.values, coarse["ssh"].values, 2) < 1e-12
    assert fine.attrs["xsr_method"] == "cnn"
    assert fine.attrs["xsr_distilled_from"] == "dip-ensemble"
    assert "distilled from dip-ensemble into srcnn" in d.result.attrs["history"]
    # the teacher's outputs conserve too, and carry the ensemble spread
    t = d.teacher
    assert t.sizes["time"] == 6
    assert "ssh_std" in t
    src = coarse["ssh"].isel(time=d.report["samples"]).values
    assert conservation_error(t["ssh"].values, src, 2) < 1e-12


def test_report(distilled: tuple[xr.Dataset, Distillation]) -> None:
    _, d = distilled
    r = d.report
    assert r["fields"] == 8
    assert r["samples"] == [0, 1, 3, 4, 6, 7]
    tr, ck = set(r["train_indices"]), set(r["check_indices"])
    assert tr.isdisjoint(ck)
    assert tr | ck == set(r["samples"])
    assert len(ck) == 2  # 25 % of 6, rounded
    for k in (
        "teacher_seconds_per_field",
        "student_seconds_per_field",
        "speedup",
        "rmse_student_teacher",
        "rmse_bicubic_teacher",
        "relative_rmse",
        "teacher_spread",
    ):
        assert np.isfinite(r[k]) and r[k] > 0, k
    assert r["speedup"] == pytest.approx(
        r["teacher_seconds_per_field"] / r["student_seconds_per_field"]
    )
    assert "speed-up" in repr(d)
    # the RMSEs are what they say: recompute them on the held-out fields (uniform areas on
    # this projected grid), from the student and from conservative bicubic
    ck = r["check_indices"]
    coarse = _coarse().isel(time=ck)
    pos = [r["samples"].index(i) for i in ck]
    ref = d.teacher["ssh"].isel(time=pos).values
    got = d.model.predict(coarse)["ssh"].values
    bic = coarse.sr.downscale(factor=2, method="bicubic")["ssh"].values
    assert np.sqrt(np.mean((got - ref) ** 2)) == pytest.approx(r["rmse_student_teacher"], rel=1e-5)
    assert np.sqrt(np.mean((bic - ref) ** 2)) == pytest.approx(r["rmse_bicubic_teacher"], rel=1e-9)


def test_student_reusable(distilled: tuple[xr.Dataset, Distillation], tmp_path: Path) -> None:
    coarse, d = distilled
    path = d.model.save(tmp_path / "student.pt")
    again = coarse.sr.downscale(factor=2, method="cnn", model=str(path))
    assert d.result is not None
    np.testing.assert_allclose(again["ssh"].values, d.result["ssh"].values, rtol=0, atol=1e-12)


def test_dataarray_and_plain_teacher() -> None:
    da = _coarse(6)["ssh"]
    d = xsr.distill(
        da,
        factor=2,
        teacher="bicubic",
        samples=4,
        student="srcnn",
        train_options=TRAIN,
        downscale=True,
    )
    assert isinstance(d.result, xr.DataArray)
    assert d.report["teacher_spread"] is None
    assert conservation_error(d.result.values, da.values, 2) < 1e-12
    # the yardstick against itself: bicubic vs a bicubic teacher is zero
    assert d.report["rmse_bicubic_teacher"] < 1e-12


def test_errors() -> None:
    coarse = _coarse(6)
    bad: list[tuple[dict[str, Any], type[Exception], str]] = [
        ({"samples": 2}, OptionError, "samples must be an integer >= 3"),
        ({"holdout": 1.0}, OptionError, "holdout must be in"),
        ({"train_options": {"factor": 4}}, OptionError, "may not set 'factor'"),
    ]
    for kw, exc, msg in bad:
        with pytest.raises(exc, match=msg):
            xsr.distill(coarse, factor=2, **kw)
    with pytest.raises(OptionError, match="has 2 field"):
        xsr.distill(coarse.isel(time=[0, 1]), factor=2)
    with pytest.raises(ShapeError, match="needs a series"):
        xsr.distill(coarse["ssh"].isel(time=0), factor=2)


def test_cli_distill(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import json

    from xsr.cli import main
    from xsr.training import TrainedModel

    src = tmp_path / "coarse.nc"
    _coarse(6).to_netcdf(src)
    out, rep = tmp_path / "student.pt", tmp_path / "report.json"
    args = ["distill", str(src), "--out", str(out), "-f", "2", "--student", "srcnn",
            "--samples", "4", "--members", "2", "--iterations", "10", "--epochs", "1",
            "--crop", "8", "--report", str(rep), "--no-progress"]  # fmt: skip
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "speed-up" in text and "--method cnn --model" in text
    tm = TrainedModel.load(out)
    assert tm.factor == 2 and tm.name == "srcnn" and tm.options.get("skip") is True
    report = json.loads(rep.read_text())
    assert report["fields"] == 6 and len(report["samples"]) == 4
    assert report["rmse_student_teacher"] > 0
    # the student then downscales the series through the CLI, conservatively
    fine = tmp_path / "fine.nc"
    assert main(["downscale", str(src), str(fine), "-f", "2", "-m", "cnn",
                 "--model", str(out)]) == 0  # fmt: skip
    with xr.open_dataset(fine) as f, xr.open_dataset(src) as c:
        assert conservation_error(f["ssh"].values, c["ssh"].values, 2) < 1e-12
    assert main(args) == 2  # exists: refused
    assert "exists; pass --overwrite" in capsys.readouterr().err


def test_student_skip_default_follows_conserve() -> None:
    rain = _coarse(6)["ssh"]
    rain = (rain - float(rain.min()) + 0.1).rename("pr")
    rain.attrs["units"] = "kg m-2"
    kw: dict[str, Any] = {"factor": 2, "teacher": "bicubic", "samples": 4, "student": "srcnn",
                          "downscale": False}  # fmt: skip
    d = xsr.distill(rain, conserve="multiplicative", train_options=TRAIN, **kw)
    assert not d.model.model.skip
    d = xsr.distill(rain, conserve="additive", train_options=TRAIN, **kw)
    assert d.model.model.skip
    opts = {**TRAIN, "model_options": {**TRAIN["model_options"], "skip": False}}
    d = xsr.distill(rain, conserve="additive", train_options=opts, **kw)
    assert not d.model.model.skip
