"""Tests of ``method="cnn"`` (trained networks through the accessor, tiles, dask and the CLI)
and of the registry of published weights (:mod:`xsr.models`)."""

from __future__ import annotations

import hashlib
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xarray as xr

import xsr
from xsr import models
from xsr.api import cell_areas
from xsr.cli import main
from xsr.conserve import conservation_error
from xsr.exceptions import DataUnavailableError, OptionError
from xsr.nn import published
from xsr.training import TrainedModel, train

SMALL = {"channels": (8, 4), "kernels": (3, 3, 3)}


def _train(hr: Any, **kw: Any) -> TrainedModel:
    opts: dict[str, Any] = {
        "model": "srcnn",
        "factor": 2,
        "crop": 16,
        "batch_size": 4,
        "epochs": 2,
        "steps_per_epoch": 3,
        "lr": 3e-3,
        "progress": False,
        "device": "cpu",
        "model_options": SMALL,
    }
    opts.update(kw)
    return train(hr, **opts)


@pytest.fixture(scope="module")
def hr() -> xr.Dataset:
    return xsr.testing.projected_dataset(48, 48, nt=3)


@pytest.fixture(scope="module")
def tm(hr: xr.Dataset) -> TrainedModel:
    return _train(hr, var="ssh")


@pytest.fixture(scope="module")
def saved(tm: TrainedModel, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tm.save(tmp_path_factory.mktemp("models") / "srcnn_x2.pt")


def _coarse(hr: xr.Dataset) -> xr.Dataset:
    return xsr.coarsen(hr, factor=2)


def test_registered() -> None:
    assert "cnn" in xsr.list_methods()
    with pytest.raises(OptionError, match="needs model="):
        xsr.get_method("cnn")
    with pytest.raises(OptionError, match="model must be"):
        xsr.get_method("cnn", model=3)


def test_accessor_with_saved_file(hr: xr.Dataset, tm: TrainedModel, saved: Path) -> None:
    coarse = _coarse(hr)
    fine = coarse.sr.downscale(factor=2, method="cnn", model=str(saved))
    assert fine.sizes["y"] == 48 and fine.sizes["x"] == 48
    assert fine["ssh"].attrs["xsr_method"] == "cnn"
    assert fine["ssh"].attrs["xsr_model"] == str(saved)
    assert "y_bnds" in fine
    err = conservation_error(fine["ssh"].values, coarse["ssh"].values, 2)
    assert err < 1e-12
    # the same as the in-memory model and as TrainedModel.predict
    same = coarse.sr.downscale(factor=2, method="cnn", model=tm)
    np.testing.assert_array_equal(fine["ssh"].values, same["ssh"].values)
    pred = tm.predict(coarse)
    np.testing.assert_allclose(pred["ssh"].values, fine["ssh"].values, rtol=0, atol=1e-12)
    # a registered name does not exist: clear error with the registered names
    with pytest.raises(OptionError, match="neither an existing file nor a registered model"):
        coarse.sr.downscale(factor=2, method="cnn", model=str(saved) + ".missing")


def test_the_network_matters(hr: xr.Dataset, tm: TrainedModel) -> None:
    """The output is the network's, not the enforcement of a constant: it differs from
    nearest (which is what enforcing a flat first guess gives) and from bicubic."""
    coarse = _coarse(hr)
    cnn = coarse.sr.downscale(factor=2, method="cnn", model=tm)["ssh"].values
    near = coarse.sr.downscale(factor=2, method="nearest")["ssh"].values
    assert float(np.abs(cnn - near).max()) > 1e-3


def test_receptive_radius_is_halo(tm: TrainedModel) -> None:
    m = xsr.get_method("cnn", model=tm)
    r = tm.model.receptive_radius()
    assert m.halo == r
    # SRCNN with 3x3 kernels, three layers: 3 coarse cells at most (1 per layer)
    assert 1 <= r <= 3
    assert xsr.get_method("cnn", model=tm, halo=5).halo == 5
    with pytest.raises(OptionError, match="halo must be"):
        xsr.get_method("cnn", model=tm, halo=-1)


def test_tiled_and_dask_equal_untiled(hr: xr.Dataset, saved: Path) -> None:
    coarse = _coarse(hr)
    ref = coarse.sr.downscale(factor=2, method="cnn", model=str(saved))["ssh"].values
    tiled = coarse.sr.downscale(factor=2, method="cnn", model=str(saved), tile_size=16)
    np.testing.assert_allclose(tiled["ssh"].values, ref, rtol=0, atol=1e-12)
    lazy = coarse.chunk({"y": 8, "x": 8}).sr.downscale(factor=2, method="cnn", model=str(saved))
    assert lazy["ssh"].chunks is not None
    got = lazy["ssh"].values
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-12)
    assert conservation_error(got, coarse["ssh"].values, 2) < 1e-12


def test_request_checks(hr: xr.Dataset, tm: TrainedModel) -> None:
    coarse = _coarse(hr)
    with pytest.raises(OptionError, match="factor=4 does not match"):
        coarse.sr.downscale(factor=4, method="cnn", model=tm)
    cm = coarse.copy()
    cm["ssh"] = cm["ssh"] * 100
    cm["ssh"].attrs["units"] = "cm"
    with pytest.raises(OptionError, match="units mismatch: variable 'ssh' has units='cm'"):
        cm.sr.downscale(factor=2, method="cnn", model=tm)
    with pytest.raises(OptionError, match="differs from the enforcement the model was trained"):
        coarse.sr.downscale(factor=2, method="cnn", model=tm, conserve="multiplicative")
    # conserve=None: the network's own output (its layer still conserves in float32)
    raw = coarse.sr.downscale(factor=2, method="cnn", model=tm, conserve=None)
    assert conservation_error(raw["ssh"].values, coarse["ssh"].values, 2) < 1e-5
    # weights= is the conservation weights: a model path there gets a pointer to model=
    with pytest.raises(OptionError, match="passed as model="):
        coarse.sr.downscale(factor=2, method="bicubic", weights="model.pt")


def test_land_mask_and_areas() -> None:
    ds = xsr.testing.lonlat_dataset(24, 32, nt=3)[["sst"]]
    model = _train(ds, var="sst", crop=8)
    coarse = xsr.coarsen(ds, factor=2)
    fine = coarse.sr.downscale(factor=2, method="cnn", model=model)
    w = cell_areas(fine["sst"])
    valid = np.isfinite(coarse["sst"].values).repeat(2, -2).repeat(2, -1)
    assert np.array_equal(np.isfinite(fine["sst"].values), valid)
    err = conservation_error(fine["sst"].values, coarse["sst"].values, 2, weights=w)
    assert err < 1e-12
    # tiles near land: the filled cells a tile sees are those of the untiled run
    tiled = coarse.sr.downscale(factor=2, method="cnn", model=model, tile_size=8)
    np.testing.assert_allclose(tiled["sst"].values, fine["sst"].values, rtol=0, atol=1e-12)


def test_periodic_longitude() -> None:
    ds = xsr.testing.lonlat_dataset(16, 32, nt=2, global_grid=True, land=False)[["sst"]]
    model = _train(ds, var="sst", crop=8)
    coarse = xsr.coarsen(ds, factor=2)
    fine = coarse.sr.downscale(factor=2, method="cnn", model=model)
    assert fine["sst"].attrs.get("xsr_method") == "cnn"
    w = cell_areas(fine["sst"])
    assert conservation_error(fine["sst"].values, coarse["sst"].values, 2, weights=w) < 1e-12
    # periodic: rolling the input by whole coarse cells rolls the output
    shifted = coarse.copy()
    shifted["sst"] = coarse["sst"].roll(lon=5, roll_coords=False)
    rolled = shifted.sr.downscale(factor=2, method="cnn", model=model, periodic=True)
    np.testing.assert_allclose(
        rolled["sst"].values, np.roll(fine["sst"].values, 10, axis=-1), rtol=0, atol=1e-12
    )


def test_multiplicative_model_never_negative() -> None:
    ds = xsr.testing.projected_dataset(32, 32, nt=3, seed=3)
    rain = np.maximum(ds["ssh"] * 30.0 + 1.0, 0.0) ** 2
    rain.attrs["units"] = "kg m-2"
    model = _train(rain.rename("pr"), conserve="multiplicative")
    coarse = xsr.coarsen(rain.rename("pr"), factor=2)
    fine = coarse.sr.downscale(factor=2, method="cnn", model=model, conserve="multiplicative")
    assert float(fine.min()) >= 0.0
    assert conservation_error(fine.values, coarse.values, 2) < 1e-12


def test_cli(hr: xr.Dataset, saved: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    src = tmp_path / "coarse.nc"
    _coarse(hr).to_netcdf(src)
    out = tmp_path / "fine.nc"
    rc = main(["downscale", str(src), str(out), "-f", "2", "-m", "cnn", "--model", str(saved)])
    assert rc == 0
    with xr.open_dataset(out) as fine, xr.open_dataset(src) as coarse:
        assert fine["ssh"].attrs["xsr_model"] == str(saved)
        assert conservation_error(fine["ssh"].values, coarse["ssh"].values, 2) < 1e-12
    rc = main(["downscale", str(src), str(tmp_path / "x.nc"), "-f", "4", "-m", "cnn",
               "--model", str(saved)])  # fmt: skip
    assert rc == 2
    assert "does not match the trained model's factor" in capsys.readouterr().err
    assert not (tmp_path / "x.nc").exists()


def test_batch_cli_zarr(hr: xr.Dataset, saved: Path, tmp_path: Path) -> None:
    src = tmp_path / "coarse.nc"
    _coarse(hr).to_netcdf(src)
    out = tmp_path / "fine.zarr"
    rc = main(
        ["downscale", str(src), str(out), "-f", "2", "-m", "cnn", "--model", str(saved),
         "--no-progress"]
    )  # fmt: skip
    assert rc == 0
    fine = xr.open_zarr(out)
    coarse = xr.open_dataset(src)
    assert conservation_error(fine["ssh"].values, coarse["ssh"].values, 2) < 1e-12


# --------------------------------------------------------------------------------------------
# the registry of published weights
# --------------------------------------------------------------------------------------------
@pytest.fixture
def clean_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(published, "_REGISTRY", dict(published._REGISTRY))


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_register_model_validation(clean_registry: None) -> None:
    with pytest.raises(OptionError, match="not a sha256 digest"):
        models.register_model("m", url="https://example.org/m.pt", sha256="abc")
    with pytest.raises(OptionError, match="non-empty string without"):
        models.register_model("a/b", url="https://example.org/m.pt", sha256="0" * 64)
    models.register_model("qg-test", url="https://example.org/m.pt", sha256="0" * 64)
    assert "qg-test" in models.list_models()
    with pytest.raises(OptionError, match="registered already"):
        models.register_model("qg-test", url="https://example.org/m.pt", sha256="0" * 64)
    with pytest.raises(OptionError, match="did you mean 'qg-test'"):
        models.load_model("qg-tset")


def test_model_dir_override_and_offline(
    clean_registry: None, saved: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    models.register_model("qg-x2", url="https://example.invalid/qg-x2.pt", sha256=_sha(saved))
    monkeypatch.setenv("XSR_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("XSR_OFFLINE", "1")
    monkeypatch.delenv("XSR_MODEL_DIR", raising=False)
    with pytest.raises(DataUnavailableError, match="XSR_MODEL_DIR is not set"):
        models.fetch_model("qg-x2")
    d = tmp_path / "weights"
    d.mkdir()
    (d / "qg-x2.pt").write_bytes(saved.read_bytes())
    monkeypatch.setenv("XSR_MODEL_DIR", str(d))
    assert models.fetch_model("qg-x2") == d / "qg-x2.pt"
    loaded = models.load_model("qg-x2")
    assert isinstance(loaded, TrainedModel) and loaded.factor == 2
    # by name through the accessor
    hr = xsr.testing.projected_dataset(48, 48, nt=3)
    coarse = _coarse(hr)
    fine = coarse.sr.downscale(factor=2, method="cnn", model="qg-x2")
    assert conservation_error(fine["ssh"].values, coarse["ssh"].values, 2) < 1e-12


@pytest.fixture
def http_dir(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A local HTTP server (loopback only) serving a directory."""
    root = tmp_path / "www"
    root.mkdir()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a: Any, **k: Any) -> None:
            super().__init__(*a, directory=str(root), **k)

        def log_message(self, *a: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()


def test_download_with_pooch(
    clean_registry: None,
    saved: Path,
    tmp_path: Path,
    http_dir: tuple[str, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    base, root = http_dir
    (root / "w.pt").write_bytes(saved.read_bytes())
    monkeypatch.setenv("XSR_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("XSR_MODEL_DIR", raising=False)
    monkeypatch.delenv("XSR_OFFLINE", raising=False)
    models.register_model("srv", url=f"{base}/w.pt", sha256=_sha(saved))
    path = models.fetch_model("srv")
    assert path == tmp_path / "cache" / "models" / "srv.pt"
    assert _sha(path) == _sha(saved)
    # cached: works offline now
    monkeypatch.setenv("XSR_OFFLINE", "1")
    assert models.fetch_model("srv") == path
    monkeypatch.delenv("XSR_OFFLINE")
    # a wrong hash is refused, nothing is kept under the registered name
    models.register_model("bad", url=f"{base}/w.pt", sha256="0" * 64)
    with pytest.raises(ValueError, match=r"(?i)hash"):
        models.fetch_model("bad")
    assert not (tmp_path / "cache" / "models" / "bad.pt").exists()


def test_tiles_never_mix_up_models(hr: xr.Dataset) -> None:
    """Two models with the same metadata (and repr) but different weights: the per-process
    method cache of the tiles must keep them apart."""
    a = _train(hr, var="ssh", seed=0)
    b = _train(hr, var="ssh", seed=1)
    assert repr(a) == repr(b)
    assert a.xsr_cache_key() != b.xsr_cache_key()
    coarse = _coarse(hr)
    outs = []
    for tm in (a, b):
        ref = coarse.sr.downscale(factor=2, method="cnn", model=tm)["ssh"].values
        tiled = coarse.sr.downscale(factor=2, method="cnn", model=tm, tile_size=16)
        np.testing.assert_allclose(tiled["ssh"].values, ref, rtol=0, atol=1e-12)
        outs.append(ref)
    assert float(np.abs(outs[0] - outs[1]).max()) > 1e-6


def test_name_follows_model_dir(
    clean_registry: None, hr: xr.Dataset, tm: TrainedModel, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """A registered name is loaded from the file it resolves to now, not from a stale cache."""
    other = _train(hr, var="ssh", seed=1)
    d1, d2 = tmp_path / "one", tmp_path / "two"
    d1.mkdir()
    d2.mkdir()
    tm.save(d1 / "qg.pt")
    other.save(d2 / "qg.pt")
    models.register_model("qg", url="https://example.invalid/qg.pt", sha256="0" * 64)
    coarse = _coarse(hr)
    monkeypatch.setenv("XSR_MODEL_DIR", str(d1))
    a = coarse.sr.downscale(factor=2, method="cnn", model="qg")["ssh"].values
    monkeypatch.setenv("XSR_MODEL_DIR", str(d2))
    b = coarse.sr.downscale(factor=2, method="cnn", model="qg")["ssh"].values
    ref_b = coarse.sr.downscale(factor=2, method="cnn", model=other)["ssh"].values
    np.testing.assert_array_equal(b, ref_b)
    assert float(np.abs(a - b).max()) > 1e-6


def test_cli_train_then_downscale(hr: xr.Dataset, tmp_path: Path, capsys: pytest.CaptureFixture):
    src = tmp_path / "hr.nc"
    hr.to_netcdf(src)
    out = tmp_path / "m.pt"
    args = ["train", str(src), "--out", str(out), "-f", "2", "-m", "srcnn", "--var", "ssh",
            "--crop", "16", "--epochs", "2", "--steps-per-epoch", "2", "--no-progress",
            "--skip"]  # fmt: skip
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "wrote" in text and "--method cnn --model" in text
    tm = TrainedModel.load(out)
    assert tm.factor == 2 and tm.var == "ssh" and tm.units == "m"
    assert tm.options == {"skip": True} and tm.model.skip
    assert len(tm.history["train"]) >= 1
    # refuses to overwrite, and leaves the file alone
    before = out.read_bytes()
    assert main(args) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert out.read_bytes() == before
    # and the model downscales through the CLI
    coarse = tmp_path / "coarse.nc"
    _coarse(hr).to_netcdf(coarse)
    fine = tmp_path / "fine.nc"
    assert main(["downscale", str(coarse), str(fine), "-f", "2", "-m", "cnn",
                 "--model", str(out)]) == 0  # fmt: skip
    with xr.open_dataset(fine) as f, xr.open_dataset(coarse) as c:
        assert conservation_error(f["ssh"].values, c["ssh"].values, 2) < 1e-12
    # bad options end with status 2 and a message
    assert main(["train", str(src), "--out", str(tmp_path / "x.pt"), "-f", "2",
                 "--lower", "0"]) == 2  # fmt: skip
    assert "--lower/--upper are only used with --conserve bounded" in capsys.readouterr().err
    assert not (tmp_path / "x.pt").exists()


def test_save_is_atomic(tm: TrainedModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import torch

    path = tm.save(tmp_path / "m.pt")
    before = path.read_bytes()

    def boom(*a: Any, **k: Any) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        tm.save(path)
    assert path.read_bytes() == before  # the previous file is intact
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]  # no temporary left behind
    with pytest.raises(OptionError, match="does not exist; create it first"):
        tm.save(tmp_path / "missing" / "m.pt")


def test_batch_size_option(hr: xr.Dataset, tm: TrainedModel) -> None:
    coarse = _coarse(hr)
    one = coarse.sr.downscale(factor=2, method="cnn", model=tm, batch_size=1)["ssh"].values
    many = coarse.sr.downscale(factor=2, method="cnn", model=tm)["ssh"].values
    # float32 network: the batch size may change the round-off only
    np.testing.assert_allclose(one, many, rtol=0, atol=1e-6)
    assert xsr.get_method("cnn", model=tm, batch_size=3).options()["batch_size"] == 3
    for bad in (0, 2.5, True):
        with pytest.raises(OptionError, match="batch_size must be an integer >= 1"):
            xsr.get_method("cnn", model=tm, batch_size=bad)
