"""Guided supervised networks: the seven schemes with fine-scale covariates, their model
files, ``method="cnn"`` with ``guide=``, training with ``guides=`` and distillation with a
guide.

The toy problem: ``truth = smooth + b * guide``, where the guide holds structure finer than
the coarse cells that no network can infer from the coarse field alone.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import xarray as xr
from scipy.ndimage import gaussian_filter

import xsr
from xsr.conserve import conservation_error
from xsr.exceptions import MethodError, ModelFileError, OptionError, ShapeError
from xsr.methods.base import Method
from xsr.methods.interp import Bicubic
from xsr.nn import SR_MODELS, SRModel, build_sr_model
from xsr.training import TrainedModel, _augment, train

MODELS = list(SR_MODELS)
NY, NX = 6, 5
F = 4
SMALL_EDSR = {"blocks": 1, "channels": 8}


# --------------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------------
def _toy(nt: int, seed: int, *, n: int = 48, b: float = 1.0) -> tuple[xr.DataArray, xr.DataArray]:
    """(hr, guide): ``hr = smooth + b * guide`` on an n x n projected grid, a new guide
    (fine-scale noise) and smooth field at every time."""
    rng = np.random.default_rng(seed)
    yx = np.arange(n) * 1000.0 + 500.0
    smooth = np.stack(
        [gaussian_filter(rng.normal(size=(n, n)), 8, mode="wrap") * 8 for _ in range(nt)]
    )
    g = np.stack(
        [gaussian_filter(rng.normal(size=(n, n)), 1.0, mode="wrap") * 2 for _ in range(nt)]
    )
    coords = {
        "time": np.arange(nt) + 100 * seed,
        "y": ("y", yx, {"units": "m", "axis": "Y"}),
        "x": ("x", yx, {"units": "m", "axis": "X"}),
    }
    hr = xr.DataArray(
        smooth + b * g, dims=("time", "y", "x"), coords=coords, name="tas", attrs={"units": "K"}
    )
    guide = xr.DataArray(
        g, dims=("time", "y", "x"), coords=coords, name="elev", attrs={"units": "m"}
    )
    return hr, guide


def _static(hr: xr.DataArray, seed: int = 3) -> xr.DataArray:
    """A static guide on hr's grid."""
    rng = np.random.default_rng(seed)
    vals = gaussian_filter(rng.normal(size=(hr.sizes["y"], hr.sizes["x"])), 1.0) * 100 + 500
    return xr.DataArray(
        vals, dims=("y", "x"), coords={"y": hr.y, "x": hr.x}, name="elev", attrs={"units": "m"}
    )


def _train(hr: xr.DataArray, **kw: Any) -> TrainedModel:
    opts: dict[str, Any] = {
        "model": "edsr",
        "factor": F,
        "crop": 16,
        "batch_size": 4,
        "epochs": 2,
        "steps_per_epoch": 3,
        "lr": 3e-3,
        "progress": False,
        "device": "cpu",
        "model_options": SMALL_EDSR,
    }
    opts.update(kw)
    return train(hr, **opts)


@pytest.fixture(scope="module")
def toy() -> tuple[xr.DataArray, xr.DataArray]:
    return _toy(4, 0, n=32)


@pytest.fixture(scope="module")
def dyn(toy: tuple[xr.DataArray, xr.DataArray]) -> TrainedModel:
    """Trained with a dynamic guide (one per time)."""
    hr, g = toy
    return _train(hr, guides=g)


@pytest.fixture(scope="module")
def static(toy: tuple[xr.DataArray, xr.DataArray]) -> TrainedModel:
    """Trained with a static guide, with augmentation."""
    hr, _ = toy
    return _train(hr, guides=_static(hr), augment=True)


# --------------------------------------------------------------------------------------------
# the networks
# --------------------------------------------------------------------------------------------
def _model(name: str, factor: int, c: int = 1, **kw: Any) -> SRModel:
    torch.manual_seed(0)
    return build_sr_model(name, factor=factor, guide_channels=c, **kw).double()


def _inputs(factor: int, c: int = 1, n: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(7 + factor)
    x = torch.randn(n, 1, NY, NX, generator=gen, dtype=torch.float64)
    g = torch.randn(n, c, NY * factor, NX * factor, generator=gen, dtype=torch.float64)
    return x, g


@pytest.mark.parametrize(
    ("name", "factor"), [(m, 2) for m in MODELS] + [("edsr", 3), ("lapsrn", 3), ("dbpn", 3)]
)
def test_guided_network_shape_and_conservation(name: str, factor: int) -> None:
    model = _model(name, factor, c=2)
    x, g = _inputs(factor, c=2)
    with torch.no_grad():
        y = model(x, g)
    assert y.shape == (2, 1, NY * factor, NX * factor)
    assert y.dtype == torch.float64
    assert bool(torch.isfinite(y).all())
    assert conservation_error(y, x, factor) < 1e-12
    # the guide is used: another guide, another (still conservative) output
    with torch.no_grad():
        y2 = model(x, g.flip(-1))
    assert float((y2 - y).abs().max()) > 1e-6
    assert conservation_error(y2, x, factor) < 1e-12


@pytest.mark.parametrize("name", MODELS)
def test_guided_network_trains_and_round_trips(name: str) -> None:
    model = _model(name, 2)
    x, g = _inputs(2, n=4)
    target = torch.nn.functional.interpolate(x, scale_factor=2) + 0.5 * g
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(6):
        loss = ((model(x, g) - target) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    # the guide's parameters are counted and learn
    assert model.guide_encoder is not None and model.guide_fusion is not None
    names = [n for n, _ in model.named_parameters()]
    assert any(n.startswith("guide_encoder.") for n in names)
    assert any(n.startswith("guide_fusion.") for n in names)
    # state_dict round trip
    other = _model(name, 2)
    other.load_state_dict(model.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(other(x, g), model(x, g), rtol=0, atol=0)


def test_unguided_networks_have_no_guide_parts() -> None:
    for name in MODELS:
        net = build_sr_model(name, factor=2)
        assert net.guide_channels == 0
        assert net.guide_encoder is None and net.guide_fusion is None
        assert not any("guide" in k for k in net.state_dict())
        assert net.feature_in == net.in_channels and net.feature_out == net.out_channels


def test_guide_argument_checked() -> None:
    x, g = _inputs(2)
    with pytest.raises(OptionError, match="needs guide="):
        _model("edsr", 2)(x)
    with pytest.raises(OptionError, match="built without guides"):
        build_sr_model("edsr", factor=2).double()(x, g)
    with pytest.raises(ShapeError, match="expects a guide of shape"):
        _model("edsr", 2)(x, g[..., :-1])
    with pytest.raises(OptionError, match="guide_channels"):
        build_sr_model("edsr", factor=2, guide_channels=-1)


@pytest.mark.parametrize(
    ("name", "options"),
    [("edsr", {"blocks": 2, "channels": 8}), ("srcnn", {}), ("dbpn", {"channels": 8})],
)
def test_receptive_radius_covers_the_guide(name: str, options: dict[str, Any]) -> None:
    """A change of the guide beyond the radius leaves the centre's output unchanged."""
    f = 3
    model = _model(name, f, **options)
    r = model.receptive_radius()
    assert r >= build_sr_model(name, factor=f, **options).receptive_radius()
    n = 2 * r + 5
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, 1, n, n, generator=gen, dtype=torch.float64)
    g = torch.randn(1, 1, n * f, n * f, generator=gen, dtype=torch.float64)
    c = n // 2
    g2 = g.clone()
    near, far = (c - r) * f, (c + r + 1) * f  # fine cells of the coarse cells beyond r
    g2[..., :near, :] += 5.0
    g2[..., far:, :] += 5.0
    g2[..., :, :near] += 5.0
    g2[..., :, far:] += 5.0
    with torch.no_grad():
        a = model.first_guess(x, g)[..., c * f : (c + 1) * f, c * f : (c + 1) * f]
        b = model.first_guess(x, g2)[..., c * f : (c + 1) * f, c * f : (c + 1) * f]
    torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def _guided_table() -> dict[str, tuple[int, int, int, int]]:
    """docs/training.md's table of guided networks: name -> (parameters, added, radius,
    radius without guide)."""
    doc = Path(__file__).resolve().parents[1] / "docs" / "training.md"
    if not doc.exists():
        pytest.skip("docs/ not present beside the tests (installed package)")
    rows = re.findall(
        r'^\| `"([a-z-]+)"` \| ([\d,]+) \| \+([\d,]+) \| (\d+) \| (\d+) \|$', doc.read_text(), re.M
    )
    return {n: tuple(int(v.replace(",", "")) for v in rest) for n, *rest in rows}  # type: ignore[misc]


def test_docs_guided_table_matches_the_code() -> None:
    """The guided parameter counts and radii in docs/training.md are the code's (the radii
    of the three slow-to-measure networks: the next test)."""
    table = _guided_table()
    assert set(table) == set(SR_MODELS)
    for name, (params, added, radius, _radius0) in table.items():
        net = build_sr_model(name, factor=4, guide_channels=1)
        n = sum(p.numel() for p in net.parameters())
        n0 = sum(p.numel() for p in build_sr_model(name, factor=4).parameters())
        assert (n, n - n0) == (params, added), name
        if name in ("srcnn", "lapsrn", "dbpn", "edsr"):
            assert net.receptive_radius() == radius, name
            # (the radius without guide: the main table, test_nn_sr.py)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["dense-unet", "srdensenet", "rdn"])
def test_docs_guided_radii_of_the_wide_networks(name: str) -> None:
    radius = _guided_table()[name][2]
    assert build_sr_model(name, factor=4, guide_channels=1).receptive_radius() == radius


# --------------------------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------------------------
def test_augment_transforms_the_guides_alike() -> None:
    rng = np.random.default_rng(0)
    cs = rng.normal(size=(6, 4, 4)).astype(np.float32)
    fs = rng.normal(size=(6, 8, 8)).astype(np.float32)
    gs = np.stack([fs, -fs], axis=1)  # (B, C, fy, fx): copies of the fine crops
    cbad = np.zeros(cs.shape, bool)
    ca, fa, _, _, ga = _augment(cs, fs, None, np.random.default_rng(1), cbad, gs)
    np.testing.assert_array_equal(ga[:, 0], fa)
    np.testing.assert_array_equal(ga[:, 1], -fa)
    # the same draws as without guides: unguided training is unchanged
    ca2, fa2, _, _ = _augment(cs, fs, None, np.random.default_rng(1), cbad)
    np.testing.assert_array_equal(ca, ca2)
    np.testing.assert_array_equal(fa, fa2)


def test_trained_metadata(
    toy: tuple[xr.DataArray, xr.DataArray], dyn: TrainedModel, static: TrainedModel
) -> None:
    hr, g = toy
    assert dyn.guide_names == ("elev",) and dyn.guide_units == ("m",)
    assert dyn.options["guide_channels"] == 1
    assert dyn.model.guide_channels == 1
    # normalisation from the training fields (the last time is held out for validation)
    used = g.isel(time=slice(0, 3)).values
    assert dyn.guide_mean[0] == pytest.approx(float(used.mean()), rel=1e-9, abs=1e-12)
    assert dyn.guide_std[0] == pytest.approx(float(used.std()), rel=1e-9)
    sg = _static(hr)
    assert static.guide_mean[0] == pytest.approx(float(sg.mean()), rel=1e-9)
    assert static.guide_std[0] == pytest.approx(float(sg.std()), rel=1e-9)
    assert "guides=['elev' (m)]" in repr(dyn)
    assert dyn.receptive_radius == dyn.model.receptive_radius()


def test_train_guide_on_another_grid(toy: tuple[xr.DataArray, xr.DataArray]) -> None:
    """A static guide on a 2x finer grid is block-averaged onto hr's grid."""
    hr, _ = toy
    sg = _static(hr)
    fine = sg.interp(
        y=np.arange(2 * hr.sizes["y"]) * 500.0 + 250.0,
        x=np.arange(2 * hr.sizes["x"]) * 500.0 + 250.0,
        kwargs={"fill_value": None},
    ).assign_attrs(units="m")
    tm = _train(hr, guides=fine, epochs=1, steps_per_epoch=1)
    on_grid = fine.coarsen(y=2, x=2).mean()
    assert tm.guide_mean[0] == pytest.approx(float(on_grid.mean()), rel=1e-9)


def test_train_guide_errors(toy: tuple[xr.DataArray, xr.DataArray]) -> None:
    hr, g = toy
    with pytest.raises(OptionError, match="guide_channels"):
        _train(hr, guides=g, model_options={"guide_channels": 1})
    with pytest.raises(ShapeError, match="lacks"):
        _train(hr, guides=g.isel(time=[0, 1]))
    with pytest.raises(OptionError, match="guide must be"):
        _train(hr, guides="elevation.nc")


@pytest.mark.slow
def test_guided_network_beats_unguided_on_held_out_fields() -> None:
    """truth = smooth + guide: the guide carries what the coarse field cannot tell."""
    hr, g = _toy(6, 0)
    test, gt = _toy(3, 1)
    kw = {
        "crop": 24,
        "epochs": 4,
        "steps_per_epoch": 10,
        "val_fraction": 0,
        "model_options": SMALL_EDSR,
    }
    coarse = xsr.coarsen(test, factor=F)

    def rmse(a: xr.DataArray) -> float:
        return float(np.sqrt(((a - test) ** 2).mean()))

    guided = _train(hr, guides=g, **kw).predict(coarse, guide=gt)
    plain = _train(hr, **kw).predict(coarse)
    bicubic = coarse.sr.downscale(factor=F, method="bicubic")
    assert conservation_error(guided.values, coarse.values, F) < 1e-12
    assert rmse(guided) < 0.5 * rmse(plain)
    assert rmse(guided) < 0.5 * rmse(bicubic)


# --------------------------------------------------------------------------------------------
# model files
# --------------------------------------------------------------------------------------------
def test_save_load_with_guides(dyn: TrainedModel, tmp_path: Path) -> None:
    path = dyn.save(tmp_path / "guided.pt")
    raw = torch.load(path, weights_only=True)
    assert raw["format_version"] == 2
    assert raw["metadata"]["guides"] == [
        {"name": "elev", "units": "m", "mean": dyn.guide_mean[0], "std": dyn.guide_std[0]}
    ]
    back = TrainedModel.load(path, device="cpu")
    assert back.guide_names == ("elev",)
    assert back.guide_units == ("m",)
    assert back.guide_mean == dyn.guide_mean and back.guide_std == dyn.guide_std
    assert back.model.guide_channels == 1
    x, g = torch.randn(1, 1, 4, 4), torch.randn(1, 1, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(back.model(x, g), dyn.model(x, g), rtol=0, atol=0)


def test_file_without_guides_loads(tmp_path: Path) -> None:
    """A file written before guides existed (no ``guides`` entry, version 1) loads as a
    network without guides; an unguided model is still written so."""
    hr = xsr.testing.projected_dataset(16, 16, nt=2)["ssh"]
    tm = _train(hr, epochs=1, steps_per_epoch=1)
    path = tm.save(tmp_path / "plain.pt")
    raw = torch.load(path, weights_only=True)
    assert raw["format_version"] == 1
    assert "guides" not in raw["metadata"]
    assert "guide_channels" not in raw["metadata"]["options"]
    # exactly the keys of the version-1 metadata
    assert set(raw["metadata"]) == {
        "name", "options", "factor", "conserve", "bounds", "var", "units", "mean", "std",
        "version", "history", "receptive_radius",
    }  # fmt: skip
    back = TrainedModel.load(path)
    assert back.guide_names == () and back.model.guide_channels == 0
    coarse = xsr.coarsen(hr, factor=F)
    np.testing.assert_allclose(back.predict(coarse).values, tm.predict(coarse).values)


def test_newer_or_damaged_file_refused(dyn: TrainedModel, tmp_path: Path) -> None:
    path = dyn.save(tmp_path / "guided.pt")
    raw = torch.load(path, weights_only=True)
    raw["format_version"] = 3
    torch.save(raw, tmp_path / "newer.pt")
    with pytest.raises(ModelFileError, match=r"format_version=3.*upgrade xsr"):
        TrainedModel.load(tmp_path / "newer.pt")
    raw["format_version"] = 2
    raw["metadata"]["guides"] = []
    torch.save(raw, tmp_path / "damaged.pt")
    with pytest.raises(ModelFileError, match="incomplete or damaged"):
        TrainedModel.load(tmp_path / "damaged.pt")


# --------------------------------------------------------------------------------------------
# method="cnn" with guides
# --------------------------------------------------------------------------------------------
def test_errors_at_inference(
    toy: tuple[xr.DataArray, xr.DataArray], dyn: TrainedModel, tmp_path: Path
) -> None:
    hr, g = toy
    coarse = xsr.coarsen(hr, factor=F)
    run = {"factor": F, "method": "cnn", "model": dyn}
    with pytest.raises(OptionError, match=r"trained with the guides \['elev' \(m\)\].*none"):
        coarse.sr.downscale(**run)
    with pytest.raises(OptionError, match=r"allowed: \['elev'\]. Fix: pass exactly"):
        coarse.sr.downscale(**run, guide=g.rename("height"))
    with pytest.raises(OptionError, match=r"allowed: \['elev'\]"):
        coarse.sr.downscale(**run, guide=[g, g.rename("slope").assign_attrs(units="1")])
    with pytest.raises(OptionError, match=r"units='km'.*allowed: 'm'"):
        coarse.sr.downscale(**run, guide=g.assign_attrs(units="km"))
    # a model trained without guides refuses one, by file too
    plain = _train(hr, epochs=1, steps_per_epoch=1)
    path = plain.save(tmp_path / "plain.pt")
    for model in (plain, str(path)):
        with pytest.raises(OptionError, match=r"trained without guides \(allowed: no guide\)"):
            coarse.sr.downscale(factor=F, method="cnn", model=model, guide=g)
    # the array level checks too
    with pytest.raises(OptionError, match="needs them"):
        dyn.predict(coarse.values)
    with pytest.raises(OptionError, match="trained without guides"):
        plain.predict(coarse.values, guide=g.values[:, None])
    with pytest.raises(ShapeError, match="allowed: 1 channel"):
        dyn.predict(coarse.values, guide=np.stack([g.values, g.values], axis=1))
    from xsr.methods.cnn import CNN
    from xsr.methods.pipeline import downscale_array

    with pytest.raises(OptionError, match=r"no names.*guide_names=\('elev',\)"):
        downscale_array(coarse.values, factor=F, method=CNN(model=dyn), guide=g.values[:, None])
    arr = downscale_array(
        coarse.values, factor=F, method=CNN(model=dyn), guide=g.values[:, None],
        guide_names=("elev",),
    )  # fmt: skip
    assert conservation_error(arr, coarse.values, F) < 1e-12
    # other methods still refuse a guide
    with pytest.raises(MethodError, match="does not use a guide"):
        coarse.sr.downscale(factor=F, method="bicubic", guide=g)


def test_dynamic_guide_through_downscale(
    toy: tuple[xr.DataArray, xr.DataArray], dyn: TrainedModel
) -> None:
    hr, g = toy
    coarse = xsr.coarsen(hr, factor=F)
    ref = dyn.predict(coarse, guide=g)
    assert isinstance(ref, xr.DataArray) and ref.shape == hr.shape
    assert conservation_error(ref.values, coarse.values, F) < 1e-12
    assert ref.attrs["xsr_method"] == "cnn" and "elev" in ref.attrs["xsr_guide"]
    # the guide is used: another guide gives another result
    other = dyn.predict(coarse, guide=g.roll(x=3, roll_coords=False))
    assert float(np.abs(other - ref).max()) > 1e-3
    kw: dict[str, Any] = {"factor": F, "method": "cnn", "model": dyn, "dtype": "float64"}
    # Dataset, tiled, dask chunked in time (the guide too), guide labels in another order
    ds = coarse.to_dataset()
    got = ds.sr.downscale(guide=g.isel(time=slice(None, None, -1)), **kw)["tas"]
    np.testing.assert_allclose(got.values, ref.values, rtol=0, atol=1e-5)
    tiled = coarse.sr.downscale(guide=g, tile_size=4, **kw)
    np.testing.assert_allclose(tiled.values, ref.values, rtol=0, atol=1e-5)
    assert conservation_error(tiled.values, coarse.values, F) < 1e-12
    lazy = coarse.chunk({"time": 1}).sr.downscale(guide=g.chunk({"time": 1}), **kw)
    assert lazy.chunks is not None
    np.testing.assert_allclose(lazy.compute().values, ref.values, rtol=0, atol=1e-5)
    # arrays: the guide in the trained order, with the field's leading dims
    arr = dyn.predict(coarse.values, guide=g.values[:, None])
    np.testing.assert_allclose(arr, ref.values, rtol=0, atol=1e-5)


def test_static_guide_through_downscale(
    toy: tuple[xr.DataArray, xr.DataArray], static: TrainedModel, tmp_path: Path
) -> None:
    hr, _ = toy
    sg = _static(hr)
    coarse = xsr.coarsen(hr, factor=F)
    path = static.save(tmp_path / "static.pt")
    ref = coarse.sr.downscale(factor=F, method="cnn", model=str(path), guide=sg)
    assert conservation_error(ref.values, coarse.values, F) < 1e-12
    np.testing.assert_allclose(static.predict(coarse, guide=sg).values, ref.values, atol=1e-5)
    # a guide on another grid covering the domain (bilinear interpolation): still conservative
    wide = sg.interp(
        y=np.linspace(-500.0, 32500.0, 50), x=np.linspace(-500.0, 32500.0, 40),
        kwargs={"fill_value": None},
    ).assign_attrs(units="m")  # fmt: skip
    other = coarse.sr.downscale(factor=F, method="cnn", model=static, guide=wide)
    assert conservation_error(other.values, coarse.values, F) < 1e-12
    ds = coarse.to_dataset()
    tiled = ds.sr.downscale(factor=F, method="cnn", model=static, guide=sg, tile_size=4)["tas"]
    np.testing.assert_allclose(tiled.values, ref.values, rtol=0, atol=1e-5)
    lazy = ds.chunk({"time": 1}).sr.downscale(factor=F, method="cnn", model=static, guide=sg)
    np.testing.assert_allclose(lazy["tas"].compute().values, ref.values, rtol=0, atol=1e-5)
    # a static guide as an array (C, NY, NX)
    arr = static.predict(coarse.values, guide=sg.values[None])
    np.testing.assert_allclose(arr, ref.values, rtol=0, atol=1e-5)


def test_guides_matched_by_name_not_position(toy: tuple[xr.DataArray, xr.DataArray]) -> None:
    """Two guides given in another order give the same result."""
    hr, g = toy
    sg = _static(hr)
    slope = sg.differentiate("x").rename("slope").assign_attrs(units="1")
    tm = _train(hr, guides=[g, slope], epochs=1, steps_per_epoch=2)
    assert tm.guide_names == ("elev", "slope")
    coarse = xsr.coarsen(hr, factor=F)
    a = coarse.sr.downscale(factor=F, method="cnn", model=tm, guide=[g, slope])
    b = coarse.sr.downscale(factor=F, method="cnn", model=tm, guide=[slope, g])
    np.testing.assert_array_equal(a.values, b.values)
    c = coarse.sr.downscale(
        factor=F, method="cnn", model=tm, guide=[g, g.rename("slope").assign_attrs(units="1")]
    )
    assert float(np.abs(c - a).max()) > 0


# --------------------------------------------------------------------------------------------
# distillation
# --------------------------------------------------------------------------------------------
class _GuidedTeacher(Method):
    """bicubic + 0.5 * the first guide (a guided test teacher)."""

    name = "test-guided-teacher"
    halo = 2
    uses_guide = True

    def upscale(self, x: torch.Tensor, factor: int, **context: Any) -> torch.Tensor:
        return Bicubic().upscale(x, factor) + 0.5 * context["guide"][..., 0, :, :]


@pytest.fixture
def guided_teacher() -> Any:
    from xsr.methods import registry

    xsr.register_method("test-guided-teacher", _GuidedTeacher, overwrite=True)
    yield "test-guided-teacher"
    registry._REGISTERED.pop("test-guided-teacher", None)


def test_distill_with_a_guide(guided_teacher: str) -> None:
    hr, g = _toy(6, 2, n=16)
    coarse = xsr.coarsen(hr, factor=2).to_dataset()
    train_opts = {
        "epochs": 2,
        "steps_per_epoch": 3,
        "crop": 8,
        "progress": False,
        "model_options": {"channels": (8, 4), "kernels": (3, 3, 3)},
    }
    d = xsr.distill(
        coarse,
        factor=2,
        teacher=guided_teacher,
        student="srcnn",
        samples=6,
        guide=g,
        train_options=train_opts,
        device="cpu",
    )
    assert d.report["guides"] == ["elev"] and d.report["guide_units"] == ["m"]
    assert "guides ['elev']" in repr(d)
    assert d.model.guide_names == ("elev",)
    assert d.result is not None
    fine = d.result["tas"]
    assert conservation_error(fine.values, coarse["tas"].values, 2) < 1e-12
    assert "with the guides ['elev']" in d.result.attrs["history"]
    assert "elev" in fine.attrs["xsr_guide"]
    # the teacher's outputs used the guide: they differ from bicubic by 0.5 * guide (enforced)
    bic = coarse.isel(time=d.report["samples"]).sr.downscale(factor=2, method="bicubic")
    assert float(np.abs(d.teacher["tas"] - bic["tas"]).max()) > 0.1
    # an unguided teacher cannot take the guide
    with pytest.raises(MethodError, match="does not use a guide"):
        xsr.distill(coarse, factor=2, teacher="bicubic", samples=6, guide=g, device="cpu")


def test_cli_train_and_distill_with_guides(
    guided_teacher: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from xsr.cli import main

    hr, g = _toy(4, 5, n=16)
    src, gfile = tmp_path / "hr.nc", tmp_path / "elev.nc"
    hr.to_dataset().to_netcdf(src)
    g.to_dataset().to_netcdf(gfile)
    out = tmp_path / "m.pt"
    args = ["train", str(src), "--out", str(out), "-f", "2", "-m", "srcnn", "--crop", "8",
            "--epochs", "1", "--steps-per-epoch", "2", "--no-progress",
            "--guide", f"{gfile}:elev"]  # fmt: skip
    assert main(args) == 0
    text = capsys.readouterr().out
    assert f"--guide {gfile}:elev" in text
    tm = TrainedModel.load(out)
    assert tm.guide_names == ("elev",)
    # the model downscales through the CLI with the guide, and refuses to without it
    coarse, fine = tmp_path / "coarse.nc", tmp_path / "fine.nc"
    xsr.coarsen(hr, factor=2).to_dataset().to_netcdf(coarse)
    down = ["downscale", str(coarse), str(fine), "-f", "2", "-m", "cnn", "--model", str(out)]
    assert main(down) == 2
    assert "elev" in capsys.readouterr().err and not fine.exists()
    assert main([*down, "--guide", str(gfile)]) == 0
    with xr.open_dataset(fine) as f, xr.open_dataset(coarse) as c:
        assert conservation_error(f["tas"].values, c["tas"].values, 2) < 1e-12
        assert "elev" in f["tas"].attrs["xsr_guide"]
    # distillation of a guided teacher into a guided student
    student = tmp_path / "s.pt"
    dist = ["distill", str(coarse), "--out", str(student), "-f", "2", "--teacher",
            guided_teacher, "--student", "srcnn", "--samples", "4", "--epochs", "1",
            "--crop", "8", "--no-progress", "--guide", f"{gfile}:elev"]  # fmt: skip
    assert main(dist) == 0
    assert f"--guide {gfile}:elev" in capsys.readouterr().out
    assert TrainedModel.load(student).guide_names == ("elev",)
    # a guide that is not in the file: status 2 and the variables that are
    assert main([*args[:-2], "--overwrite", "--guide", f"{gfile}:nope"]) == 2
    assert "'nope' is not a variable" in capsys.readouterr().err
