"""Tests of supervised training (xsr.training)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import xarray as xr

import xsr
from xsr.api import cell_areas
from xsr.conserve import conservation_error
from xsr.exceptions import OptionError
from xsr.training import TrainedModel, train

SMALL = {"blocks": 2, "channels": 8}


def _hr() -> xr.DataArray:
    return xsr.testing.projected_dataset(32, 32, nt=4)["ssh"]


def _train(hr: xr.DataArray, **kw: Any) -> TrainedModel:
    opts: dict[str, Any] = {
        "factor": 4,
        "crop": 16,
        "batch_size": 4,
        "epochs": 3,
        "steps_per_epoch": 5,
        "lr": 3e-3,
        "progress": False,
        "device": "cpu",
        "model_options": SMALL,
    }
    opts.update(kw)
    return train(hr, **opts)


@pytest.fixture(scope="module")
def trained() -> TrainedModel:
    return _train(_hr())


def test_validation_loss_decreases(trained: TrainedModel) -> None:
    val = trained.history["val"]
    assert len(val) == 3
    assert all(v is not None for v in val)
    assert val[-1] < val[0]  # type: ignore[operator]
    assert len(trained.history["train"]) == 3


def test_metadata(trained: TrainedModel) -> None:
    assert trained.name == "edsr"
    assert trained.factor == 4
    assert trained.conserve == "additive"
    assert trained.var == "ssh"
    assert trained.units == "m"
    assert trained.std > 0
    assert trained.version == xsr.__version__
    assert trained.options == SMALL


def test_predictions_conserve(trained: TrainedModel) -> None:
    coarse = xsr.coarsen(_hr(), factor=4)
    pred = trained.predict(coarse)
    # xarray in, xarray out: refined coordinates, attrs and provenance
    assert isinstance(pred, xr.DataArray)
    assert pred.shape == (4, 32, 32)
    assert pred.dtype == np.float64
    assert pred.attrs["units"] == "m"
    assert pred.attrs["xsr_method"] == "cnn"
    np.testing.assert_allclose(pred["x"].values, _hr()["x"].values)
    assert conservation_error(pred.values, coarse.values, 4) < 1e-12
    back = xsr.coarsen(pred, factor=4)
    np.testing.assert_allclose(back.values, coarse.values, rtol=0, atol=1e-12)
    # plain arrays work too (uniform weights: the same to round-off on this uniform grid)
    pred_np = trained.predict(coarse.values)
    assert isinstance(pred_np, np.ndarray)
    assert conservation_error(pred_np, coarse.values, 4) < 1e-12
    np.testing.assert_allclose(pred.values, pred_np, rtol=0, atol=1e-12)


def test_save_load_round_trip(trained: TrainedModel, tmp_path: Path) -> None:
    path = trained.save(tmp_path / "model.pt")
    raw = torch.load(path, weights_only=True)  # only safe types
    assert raw["metadata"]["factor"] == 4
    loaded = TrainedModel.load(path, device="cpu")
    assert loaded.metadata() == trained.metadata()
    # the receptive radius is measured at training and stored: the tile halo of "cnn"
    assert loaded.receptive_radius == trained.model.receptive_radius() > 0
    assert xsr.get_method("cnn", model=loaded).halo == loaded.receptive_radius
    coarse = xsr.coarsen(_hr(), factor=4)
    np.testing.assert_array_equal(loaded.predict(coarse), trained.predict(coarse))


def test_check_factor_mismatch(trained: TrainedModel) -> None:
    coarse = xsr.coarsen(_hr(), factor=4)
    trained.check(coarse, factor=4)
    with pytest.raises(OptionError, match=r"factor=2 does not match the trained model's factor"):
        trained.check(coarse, factor=2)


def test_check_units_mismatch(trained: TrainedModel) -> None:
    coarse = xsr.coarsen(_hr(), factor=4)
    coarse.attrs["units"] = "cm"
    with pytest.raises(OptionError, match=r"units mismatch: variable 'ssh' has units='cm'"):
        trained.check(coarse)
    with pytest.raises(OptionError, match="units mismatch"):
        trained.predict(coarse)


def test_determinism() -> None:
    hr = _hr()
    a = _train(hr, epochs=1, steps_per_epoch=3)
    b = _train(hr, epochs=1, steps_per_epoch=3)
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
    assert a.history == b.history


def test_land_nan_and_area_weights(tmp_path: Path) -> None:
    sst = xsr.testing.lonlat_dataset(24, 32, nt=4)
    ckpt = tmp_path / "best.pt"
    tm = _train(sst, var="sst", epochs=2, steps_per_epoch=3, checkpoint=ckpt)
    assert ckpt.exists()
    assert all(np.isfinite(v) for v in tm.history["train"])  # type: ignore[arg-type]
    hr = sst["sst"]
    coarse = xsr.coarsen(hr, factor=4)
    valid = np.isfinite(hr.values)
    w = cell_areas(hr)
    assert (valid == valid[:1]).all()  # a static land mask
    pred = tm.predict(coarse, mask=valid[0])
    assert np.array_equal(np.isnan(pred.values), ~valid)
    assert conservation_error(pred.values, coarse.values, 4, weights=w, mask=valid) < 1e-12
    # arrays take a time-varying fine mask; same result
    pred_np = tm.predict(coarse.values, mask=valid, weights=w)
    np.testing.assert_allclose(pred_np, pred.values, rtol=0, atol=1e-12)


def test_option_errors() -> None:
    hr = _hr()
    with pytest.raises(OptionError, match="multiple of factor"):
        _train(hr, crop=18)
    with pytest.raises(OptionError, match="var="):
        _train(xsr.testing.lonlat_dataset(24, 32, nt=2))


def test_augment_keeps_pairs_consistent() -> None:
    """Each symmetry maps coarse blocks to coarse blocks: the augmented fine crop still
    averages to the augmented coarse crop (with its weights moved alike)."""
    from xsr.conserve import block_mean
    from xsr.training import _augment

    rng = np.random.default_rng(1)
    for shape in ((6, 6), (6, 4)):
        fs = rng.normal(size=(16, shape[0] * 2, shape[1] * 2))
        ws = rng.uniform(0.5, 2.0, size=fs.shape)
        cs = block_mean(fs, 2, weights=ws)
        ca, fa, wa = _augment(cs, fs, ws, np.random.default_rng(0))
        assert wa is not None
        np.testing.assert_allclose(block_mean(fa, 2, weights=wa), ca, rtol=0, atol=1e-12)
        assert not np.array_equal(ca, cs)  # something was transformed
        # a symmetry permutes values: the multiset of each crop is unchanged
        np.testing.assert_allclose(np.sort(fa.reshape(16, -1)), np.sort(fs.reshape(16, -1)))


def test_train_with_augment() -> None:
    tm = _train(_hr(), augment=True, epochs=2)
    assert all(np.isfinite(v) for v in tm.history["train"])  # type: ignore[arg-type]
    coarse = xsr.coarsen(_hr(), factor=4)
    pred = tm.predict(coarse)
    assert conservation_error(pred.values, coarse.values, 4) < 1e-12


def test_val_fraction_zero_uses_every_field() -> None:
    tm = _train(_hr(), val_fraction=0.0, epochs=1)
    assert tm.history["val"] == [None]
    tm2 = _train(_hr(), val_fraction=0.2, epochs=1)
    assert tm2.history["val"][0] is not None


def test_coastal_crops_filled_like_inference() -> None:
    """With min_valid < 1 crops may hold land: their inputs are filled as method='cnn'
    fills them, and the validation loss is the loss of what predict returns."""
    ds = xsr.testing.lonlat_dataset(24, 32, nt=3, seed=2)[["sst"]]
    hr = ds["sst"]
    assert bool(np.isnan(hr.values).any())
    tm = _train(ds, var="sst", factor=2, crop=24, epochs=1, steps_per_epoch=2, min_valid=0.3)
    assert all(np.isfinite(v) for v in tm.history["train"])  # type: ignore[arg-type]
    # the recorded validation loss (last field, normalised MSE over valid fine cells) is
    # reproduced by predict on that field
    coarse = xsr.coarsen(hr, factor=2)
    pred = tm.predict(coarse.isel(time=[-1]))
    t = (hr.isel(time=[-1]).values - tm.mean) / tm.std
    o = (pred.values - tm.mean) / tm.std
    ok = np.isfinite(t)
    mse = float(np.mean((o[ok] - t[ok]) ** 2))
    val = tm.history["val"][-1]
    assert val is not None
    assert mse == pytest.approx(val, rel=1e-4)
    with pytest.raises(OptionError, match="min_valid must be"):
        _train(ds, var="sst", min_valid=0.0)
    # strict crops: the whole domain (the crop is clipped to it) holds land
    with pytest.raises(OptionError, match="lower crop= or min_valid="):
        _train(ds, var="sst", factor=2, crop=32, min_valid=1.0)


def test_checkpoint_target_is_checked_before_training(tmp_path: Path, monkeypatch) -> None:
    from xsr import training
    from xsr.exceptions import OutputError, OutputFolderError

    def no_training(*a: Any, **k: Any) -> None:
        raise AssertionError("trained before checking the checkpoint path")

    monkeypatch.setattr(training, "_select_var", no_training)
    with pytest.raises(OutputError, match="is an empty folder: xsr writes a file there"):
        _train(_hr(), checkpoint=tmp_path)
    with pytest.raises(OutputFolderError, match="does not exist; create it first"):
        _train(_hr(), checkpoint=tmp_path / "missing" / "best.pt")
