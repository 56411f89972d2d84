"""The method registry and the array pipeline; every registered method gets the smoke test."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xsr.conserve import block_mean, conservation_error, upsample
from xsr.exceptions import DtypeError, InputValueError, MethodError, OptionError
from xsr.methods import Method, downscale_array, get_method, list_methods, register_method
from xsr.methods.pipeline import fill_nan
from xsr.methods.registry import _REGISTERED


def _field(shape, seed=0):
    rng = np.random.default_rng(seed)
    *lead, ny, nx = shape
    yy, xx = np.meshgrid(np.linspace(0, 3, ny), np.linspace(0, 3, nx), indexing="ij")
    return np.sin(xx + yy)[None] * np.ones((*lead, 1, 1)) + 0.1 * rng.normal(size=shape)


#: options that keep the smoke test fast for methods whose defaults are expensive
FAST_OPTIONS = {
    "dip": {"iterations": 5, "progress": False},
    "dip-ensemble": {"iterations": 5, "members": 2, "progress": False},
    "regression": {"min_cells": 4},
}


def _untrained_cnn(factor):
    """A TrainedModel with random weights (the pipeline around it is what is tested)."""
    import torch

    from xsr.nn.sr import build_sr_model
    from xsr.training import TrainedModel

    opts = {"channels": (8, 4), "kernels": (3, 3, 3)}
    torch.manual_seed(0)
    net = build_sr_model("srcnn", factor=factor, **opts).eval()
    return TrainedModel(net, "srcnn", opts, factor, "additive", None, None, None, 0.0, 1.0, "test")


def _smoke_options(name, factor):
    if name == "cnn":
        return {"model": _untrained_cnn(factor)}
    opts = dict(FAST_OPTIONS.get(name, {}))
    if getattr(get_method(name, **opts), "requires_guide", False):
        # methods that refuse to run without fine-scale covariates get one
        rng = np.random.default_rng(1)
        opts["guide"] = rng.normal(size=(1, 6 * factor, 7 * factor))
    return opts


@pytest.mark.parametrize("name", list_methods())
@pytest.mark.parametrize("factor", [2, 3, 4])
def test_every_method_smoke(name, factor):
    x = _field((2, 6, 7))
    x[0, :2, :3] = np.nan
    y = downscale_array(x, factor=factor, method=name, **_smoke_options(name, factor))
    assert y.shape == (2, 6 * factor, 7 * factor)
    assert y.dtype == np.float64
    keep = upsample(np.isfinite(x), factor)
    assert np.isfinite(y[keep]).all()
    assert np.isnan(y[~keep]).all()
    assert conservation_error(y, x, factor) < 1e-12


@pytest.mark.parametrize("name", ["nearest", "bilinear", "bicubic"])
def test_float32_stays_float32_and_conserves(name):
    x = _field((3, 8, 8)).astype(np.float32)
    y = downscale_array(x, factor=4, method=name)
    assert y.dtype == np.float32
    assert conservation_error(y.astype(np.float64), x.astype(np.float64), 4) < 2e-6


def test_interpolation_baselines_differ_and_smooth():
    x = _field((1, 10, 10))
    baselines = ("nearest", "bilinear", "bicubic")
    outs = {m: downscale_array(x, factor=4, method=m, conserve=None) for m in baselines}
    assert not np.allclose(outs["nearest"], outs["bicubic"])
    # nearest is piecewise constant, hence already conservative
    np.testing.assert_array_equal(outs["nearest"], upsample(x, 4))

    # bicubic is smoother than nearest: smaller jumps between neighbours
    def jump(a):
        return np.abs(np.diff(a, axis=-1)).max()

    assert jump(outs["bicubic"]) < jump(outs["nearest"])


def test_conserve_none_does_not_conserve_bicubic():
    x = _field((1, 8, 8), seed=3)
    y = downscale_array(x, factor=4, method="bicubic", conserve=None)
    assert conservation_error(y, x, 4) > 1e-4
    y2 = downscale_array(x, factor=4, method="bicubic")
    assert conservation_error(y2, x, 4) < 1e-12


def test_periodic_removes_edge_seam():
    # a field periodic in x: with periodic=True the first and last fine columns continue
    # each other as in the interior
    nx = 16
    xx = np.arange(nx) * 2 * np.pi / nx
    x = np.sin(xx)[None, :] * np.ones((4, 1))
    y_p = downscale_array(x, factor=4, method="bicubic", periodic=True)
    y_n = downscale_array(x, factor=4, method="bicubic", periodic=False)
    wrap_p = abs(y_p[0, 0] - y_p[0, -1])
    wrap_n = abs(y_n[0, 0] - y_n[0, -1])
    interior = np.abs(np.diff(y_p[0])).max()
    assert wrap_p <= interior + 1e-12
    assert wrap_n > wrap_p
    assert conservation_error(y_p, x, 4) < 1e-12


def test_torch_in_torch_out():
    x = torch.from_numpy(_field((2, 5, 5)))
    y = downscale_array(x, factor=2, method="bilinear", device="cpu")
    assert isinstance(y, torch.Tensor)
    assert conservation_error(y, x, 2) < 1e-12


def test_weights_and_mask_are_respected():
    x = _field((1, 4, 6))
    w = np.linspace(0.5, 2.0, 16)[:, None] * np.ones((16, 24))
    mask = np.ones((16, 24), bool)
    mask[:3, :5] = False
    y = downscale_array(x, factor=4, method="bicubic", weights=w, mask=mask)
    assert np.isnan(y[0][~mask]).all()
    np.testing.assert_allclose(block_mean(y, 4, weights=w), x, rtol=0, atol=1e-13)


def test_fill_nan_reaches_far_cells():
    t = torch.full((1, 5, 5), float("nan"), dtype=torch.float64)
    t[0, 0, 0] = 2.0
    t[0, 4, 4] = 4.0
    out = fill_nan(t, 1)
    assert torch.isfinite(out).all()
    assert out[0, 0, 1] == 2.0  # filled from its only valid neighbour
    assert out[0, 2, 2] == 3.0  # beyond reach: mean of the valid cells


def test_unknown_method_did_you_mean():
    with pytest.raises(MethodError, match="did you mean 'bicubic'"):
        get_method("bicubc")
    with pytest.raises(ValueError, match="available: "):
        get_method("no-such-thing")


def test_unknown_option_lists_allowed():
    with pytest.raises(OptionError, match="does not take the option"):
        get_method("bicubic", members=3)


class Plus(Method):
    name = "plus"
    halo = 0

    def __init__(self, *, offset: float = 1.0) -> None:
        self.offset = offset

    def upscale(self, x, factor, **context):
        return upsample(x, factor) + self.offset

    def options(self):
        return {"offset": self.offset}


def test_register_method_roundtrip():
    try:
        register_method("plus", Plus)
        assert "plus" in list_methods()
        with pytest.raises(OptionError, match="exists already"):
            register_method("plus", Plus)
        x = _field((1, 3, 3))
        y = downscale_array(x, factor=2, method="plus", offset=5.0, conserve=None)
        np.testing.assert_allclose(y, upsample(x, 2) + 5.0)
        # the enforcement removes the offset
        y = downscale_array(x, factor=2, method="plus", offset=5.0)
        np.testing.assert_allclose(y, upsample(x, 2), atol=1e-12)
        # an instance works too
        y = downscale_array(x, factor=2, method=Plus(offset=2.0), conserve=None)
        np.testing.assert_allclose(y, upsample(x, 2) + 2.0)
    finally:
        _REGISTERED.pop("plus", None)


def test_entry_point_methods_are_listed(monkeypatch):
    import xsr.methods.registry as reg

    class EP:
        name = "ep-method"

        def load(self):
            return Plus

    monkeypatch.setattr(reg, "_entry_points", lambda: {"ep-method": EP()})
    assert "ep-method" in list_methods()
    m = get_method("ep-method", offset=3.0)
    assert isinstance(m, Plus)
    assert m.offset == 3.0


def test_array_errors():
    with pytest.raises(DtypeError, match="integer dtype"):
        downscale_array(np.ones((4, 4), dtype=np.int16), factor=2)
    with pytest.raises(DtypeError, match="boolean"):
        downscale_array(np.ones((4, 4), dtype=bool), factor=2)
    with pytest.raises(InputValueError, match="entirely NaN"):
        downscale_array(np.full((4, 4), np.nan), factor=2)
    with pytest.raises(InputValueError, match="infinite"):
        downscale_array(np.array([[1.0, np.inf], [0.0, 1.0]]), factor=2)
    with pytest.raises(InputValueError, match="non-negative"):
        downscale_array(np.array([[1.0, -1.0], [0.0, 1.0]]), factor=2, conserve="multiplicative")
    with pytest.raises(OptionError, match="only used with conserve='bounded'"):
        downscale_array(np.ones((2, 2)), factor=2, bounds=(0, 1))


def test_fine_mask_that_empties_a_valid_coarse_cell_is_refused():
    x = _field((1, 3, 3))
    mask = np.ones((6, 6), bool)
    mask[:2, :2] = False  # every fine cell of coarse cell (0, 0), which holds a value
    with pytest.raises(InputValueError, match="no valid fine cell in 1 coarse cell"):
        downscale_array(x, factor=2, method="bilinear", mask=mask)
    x[0, 0, 0] = np.nan  # with that coarse cell NaN the mask is fine
    y = downscale_array(x, factor=2, method="bilinear", mask=mask)
    assert np.isnan(y[0, :2, :2]).all()
    assert conservation_error(y, x, 2) < 1e-12


def test_forwarded_options_are_validated():
    """DIPEnsemble forwards **options to DIP: both sets are accepted, others named."""
    from xsr._kwargs import accepted_options
    from xsr.methods.dip import DIP, DIPEnsemble

    allowed = accepted_options(DIPEnsemble)
    assert allowed is not None
    assert {"members", "uncertainty"} | (accepted_options(DIP) or set()) == allowed
    assert get_method("dip-ensemble", members=3, iterations=5, progress=False).members == 3
    with pytest.raises(OptionError, match=r"does not take the option\(s\) \['memebrs'\]"):
        get_method("dip-ensemble", memebrs=3)
    assert accepted_options(lambda **kw: None) is None  # open-ended callables: not judged
    assert accepted_options(Plus) == {"offset"}
