"""Tests of the supervised super-resolution networks (xsr.nn.sr)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from xsr.conserve import Enforce, block_mean, conservation_error
from xsr.exceptions import FactorError, MethodError, OptionError, ShapeError
from xsr.nn import SR_MODELS, SRModel, build_sr_model
from xsr.nn.sr import SubPixelUpsampler

MODELS = list(SR_MODELS)
NY, NX = 6, 5


def _coarse(factor: int = 2, *, n: int = 2, c: int = 1, positive: bool = False) -> torch.Tensor:
    gen = torch.Generator().manual_seed(100 + factor)
    x = torch.randn(n, c, NY, NX, generator=gen, dtype=torch.float64)
    return x.abs() + 0.1 if positive else x


def _model(name: str, factor: int, **kw: object) -> SRModel:
    torch.manual_seed(0)
    return build_sr_model(name, factor=factor, **kw).double()  # type: ignore[arg-type]


def test_registry_names() -> None:
    assert set(SR_MODELS) == {"srcnn", "lapsrn", "dense-unet", "dbpn", "srdensenet", "edsr", "rdn"}
    assert all(issubclass(cls, SRModel) for cls in SR_MODELS.values())


@pytest.mark.parametrize(
    ("name", "factor"),
    [(m, f) for m in MODELS for f in (2, 3, 4)] + [("edsr", 5), ("lapsrn", 5), ("dbpn", 5)],
)
def test_shape_and_additive_conservation(name: str, factor: int) -> None:
    model = _model(name, factor)
    x = _coarse(factor)
    with torch.no_grad():
        y = model(x)
    assert y.shape == (2, 1, NY * factor, NX * factor)
    assert y.dtype == torch.float64
    assert bool(torch.isfinite(y).all())
    assert conservation_error(y, x, factor) < 1e-12


@pytest.mark.parametrize("name", MODELS)
def test_multiplicative_nonnegative_and_conserving(name: str) -> None:
    model = _model(name, 3, conserve="multiplicative")
    x = _coarse(3, positive=True)
    with torch.no_grad():
        y = model(x)
    assert float(y.min()) >= 0.0
    assert conservation_error(y, x, 3) < 1e-12


@pytest.mark.parametrize("name", ["edsr", "srcnn"])
def test_bounded_within_bounds_and_conserving(name: str) -> None:
    model = _model(name, 2, conserve="bounded", bounds=(0.0, 1.0))
    x = torch.sigmoid(_coarse(2))
    with torch.no_grad():
        y = model(x)
    assert float(y.min()) >= 0.0
    assert float(y.max()) <= 1.0
    assert conservation_error(y, x, 2) < 1e-12


@pytest.mark.parametrize("name", MODELS)
def test_without_enforcement_is_not_conservative(name: str) -> None:
    model = _model(name, 2, conserve=None)
    assert model.enforce is None
    x = _coarse(2)
    with torch.no_grad():
        y = model(x)
    assert y.shape == (2, 1, 2 * NY, 2 * NX)
    assert conservation_error(y, x, 2) > 1e-6


def test_weights_and_mask_in_forward_and_buffers() -> None:
    factor = 3
    model = _model("edsr", factor)
    x = _coarse(factor)
    gen = torch.Generator().manual_seed(5)
    w = torch.rand(NY * factor, NX * factor, generator=gen, dtype=torch.float64) + 0.5
    mask = torch.ones(NY * factor, NX * factor, dtype=torch.bool)
    mask[0, 0] = False
    with torch.no_grad():
        y_call = model(x, weights=w, mask=mask)
        plain = model(x)
    assert conservation_error(y_call, x, factor, weights=w, mask=mask) < 1e-12
    assert bool(torch.isnan(y_call[..., 0, 0]).all())
    # weighted means differ from plain means, so the plain output is not weight-conserving
    assert conservation_error(plain, x, factor, weights=w) > 1e-6
    # the same through the buffers of the held Enforce layer
    assert isinstance(model.enforce, Enforce)
    model.enforce.weights = w
    model.enforce.mask = mask
    with torch.no_grad():
        y_buf = model(x)
    torch.testing.assert_close(y_buf, y_call, rtol=0, atol=0, equal_nan=True)


def test_weights_need_enforcement() -> None:
    model = _model("srcnn", 2, conserve=None)
    with pytest.raises(OptionError, match="conserve=None"):
        model(_coarse(2), weights=torch.ones(2 * NY, 2 * NX, dtype=torch.float64))


@pytest.mark.parametrize("name", MODELS)
def test_adam_steps_reduce_loss(name: str) -> None:
    factor = 2
    model = _model(name, factor)
    gen = torch.Generator().manual_seed(7)
    target = torch.randn(4, 1, NY * factor, NX * factor, generator=gen, dtype=torch.float64)
    x = block_mean(target, factor)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(6):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), target)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


@pytest.mark.parametrize("name", MODELS)
def test_state_dict_round_trip(name: str, tmp_path: Path) -> None:
    model = _model(name, 3)
    path = tmp_path / f"{name}.pt"
    torch.save(model.state_dict(), path)
    torch.manual_seed(123)  # a different initialisation
    fresh = build_sr_model(name, factor=3).double()
    x = _coarse(3)
    with torch.no_grad():
        assert not torch.equal(fresh(x), model(x))
        fresh.load_state_dict(torch.load(path, weights_only=True))
        torch.testing.assert_close(fresh(x), model(x), rtol=0, atol=0)


def test_multichannel() -> None:
    model = _model("rdn", 2, in_channels=2, blocks=1, layers=2)
    x = _coarse(2, c=2)
    with torch.no_grad():
        y = model(x)
    assert y.shape == (2, 2, 2 * NY, 2 * NX)
    assert conservation_error(y, x, 2) < 1e-12
    # changing the channels is only possible without enforcement
    with pytest.raises(OptionError, match="out_channels == in_channels"):
        build_sr_model("edsr", factor=2, in_channels=2, out_channels=1)
    plain = _model("edsr", 2, conserve=None, in_channels=2, out_channels=1)
    with torch.no_grad():
        assert plain(x).shape == (2, 1, 2 * NY, 2 * NX)


def test_wrong_input_shape() -> None:
    model = _model("edsr", 2)
    with pytest.raises(ShapeError, match=r"\(N, 1, ny, nx\)"):
        model(torch.zeros(1, 2, NY, NX, dtype=torch.float64))
    with pytest.raises(ShapeError):
        model(torch.zeros(NY, NX, dtype=torch.float64))


def test_unknown_name_suggests() -> None:
    with pytest.raises(MethodError, match=r"unknown SR model 'edrs'; did you mean 'edsr'\?"):
        build_sr_model("edrs", factor=2)
    with pytest.raises(MethodError, match=r"available: .*'rdn'"):
        build_sr_model("transformer", factor=2)


def test_bad_options() -> None:
    with pytest.raises(FactorError, match="integer >= 2"):
        build_sr_model("edsr", factor=1)
    with pytest.raises(OptionError, match="bounds"):
        build_sr_model("edsr", factor=2, conserve="bounded")


@pytest.mark.parametrize(("factor", "shuffles", "interps"), [(6, 2, 0), (10, 1, 1), (7, 0, 1)])
def test_upsampler_prime_chain(factor: int, shuffles: int, interps: int) -> None:
    up = SubPixelUpsampler(4, factor)
    kinds = [type(m).__name__ for m in up]
    assert kinds.count("PixelShuffle") == shuffles
    assert kinds.count("Upsample") == interps
    with torch.no_grad():
        assert up(torch.zeros(1, 4, 3, 2)).shape == (1, 4, 3 * factor, 2 * factor)


@pytest.mark.parametrize("bounds", [(0.0, None), (None, 1.0), (-1.0, 2.0)])
def test_soft_bound_keeps_gradient_outside_bounds(bounds: tuple[float | None, float | None]):
    from xsr.nn.sr import soft_bound

    x = torch.linspace(-10.0, 10.0, 201, dtype=torch.float64, requires_grad=True)
    y = soft_bound(x, bounds)
    lo, hi = bounds
    if lo is not None:
        assert bool((y > lo).all())
    if hi is not None:
        assert bool((y < hi).all())
    assert bool((torch.diff(y) > 0).all())  # monotone: order is kept
    (g,) = torch.autograd.grad(y.sum(), x)
    assert bool((g > 0).all())  # unlike a clip, a gradient everywhere
    # close to the identity well inside the bounds
    inside = 0.5 if lo is not None and hi is not None else 5.0
    c = (lo + hi) / 2 if lo is not None and hi is not None else inside * (1 if lo == 0.0 else -1)
    i = int(torch.argmin((x - c).abs()))
    assert abs(float(y.detach()[i]) - float(x.detach()[i])) < 0.05


@pytest.mark.parametrize("name", list(SR_MODELS))
def test_skip_adds_bicubic(name: str) -> None:
    """skip=True adds the bicubic interpolation of the input to the same network's output."""
    import torch.nn.functional as F

    torch.manual_seed(0)
    plain = build_sr_model(name, factor=2, conserve=None).eval()
    skip = build_sr_model(name, factor=2, conserve=None, skip=True).eval()
    skip.load_state_dict(plain.state_dict())
    x = torch.randn(2, 1, 9, 10)
    with torch.no_grad():
        diff = skip(x) - plain(x)
    up = F.interpolate(x, size=(18, 20), mode="bicubic", align_corners=False)
    torch.testing.assert_close(diff, up, rtol=0, atol=1e-5)
    enforced = build_sr_model(name, factor=2, skip=True).eval()
    xd = x.double()
    with torch.no_grad():
        y = enforced.double()(xd)
    assert conservation_error(y, xd, 2) < 1e-12


def test_receptive_radius_limit() -> None:
    net = build_sr_model("edsr", factor=2)
    full = net.receptive_radius()
    assert full > 4
    assert net.receptive_radius(limit=4) == 4  # a wider reach is reported as the limit
    assert build_sr_model("srcnn", factor=2, kernels=(3, 3, 3)).receptive_radius() == 3


def test_docs_network_table_matches_the_code() -> None:
    """The parameter counts and receptive radii in docs/training.md are the code's."""
    import re

    doc = Path(__file__).resolve().parents[1] / "docs" / "training.md"
    if not doc.exists():
        pytest.skip("docs/ not present beside the tests (installed package)")
    rows = re.findall(
        r'^\| `"([a-z-]+)"`[^|]*\|[^|]*\| ([\d,]+) \| (\d+) \|$', doc.read_text(), re.M
    )
    assert {name for name, _, _ in rows} == set(SR_MODELS)
    for name, params, radius in rows:
        net = build_sr_model(name, factor=4)
        assert sum(p.numel() for p in net.parameters()) == int(params.replace(",", "")), name
        assert net.receptive_radius() == int(radius), name


def test_unknown_option_is_named() -> None:
    with pytest.raises(OptionError, match=r"'edsr' does not take the option\(s\) \['blockz'\]"):
        build_sr_model("edsr", factor=2, blockz=3)
    # the shared options reach the base class through every network
    net = build_sr_model("rdn", factor=3, in_channels=2, skip=True, conserve=None)
    assert net.in_channels == 2 and net.skip and net.factor == 3
