"""The CPU fast paths of the DIP generators against a straightforward reference.

The generators fuse the bilinear upsampling with the reflection padding (hand-written
backward), fuse the instance normalisation with its affine map, run the member convolutions
channels-last on the CPU and the last 1 x 1 layer as a product and sum.  Here the same
modules, run through the plain PyTorch operations (the code before the change), give the
same outputs and gradients to round-off, and a short fit gives the same members.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from xsr.methods.dip import fit_dip
from xsr.nn import generators as G

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _ref_up_pad(x: torch.Tensor) -> torch.Tensor:
    y = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
    return F.pad(y, (1, 1, 1, 1), mode="reflect")


def _ref_conv(m: G.MemberConv2d, x: torch.Tensor) -> torch.Tensor:
    n, c, h, w = x.shape
    k = m.kernel
    weight = m.weight.reshape(n * m.cout, m.cin, k, k)
    y = F.conv2d(x.reshape(1, n * c, h, w), weight, m.bias.reshape(n * m.cout), groups=n)
    return y.reshape(n, m.cout, y.shape[-2], y.shape[-1])


def _ref_norm(m: G.MemberNorm, x: torch.Tensor) -> torch.Tensor:
    y = F.instance_norm(x, eps=m.eps)
    return y * m.weight[:, :, None, None] + m.bias[:, :, None, None]


def _ref_decoder_body(gen: G.DecoderGenerator, z: torch.Tensor) -> torch.Tensor:
    x = z
    nb = len(gen.convs) - 1
    for i, (conv, norm) in enumerate(zip(gen.convs, gen.norms)):
        x = F.relu(_ref_norm(norm, _ref_conv(conv, G._pad(gen._cat(x), 1))))
        if i < nb:
            x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
    return _ref_conv(gen.last, gen._cat(x))


@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (1, 2, 1, 3), (1, 1, 2, 1), (3, 2, 7, 6)])
def test_up_pad_equals_interpolate_and_reflect(shape):
    x = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    y = G._UpPad.apply(x)
    ref = _ref_up_pad(x)
    assert y.shape == ref.shape == (*shape[:2], 2 * shape[2] + 2, 2 * shape[3] + 2)
    torch.testing.assert_close(y, ref, rtol=0, atol=1e-14)
    g = torch.randn_like(ref)
    (gx,) = torch.autograd.grad(y, x, g)
    (gref,) = torch.autograd.grad(ref, x, g)
    torch.testing.assert_close(gx, gref, rtol=0, atol=1e-13)
    assert torch.autograd.gradcheck(G._UpPad.apply, (x,))


def test_up_pad_keeps_a_channels_last_layout():
    x = torch.randn(1, 6, 5, 4).contiguous(memory_format=torch.channels_last).reshape(2, 3, 5, 4)
    y = G._UpPad.apply(x)
    assert y.permute(2, 3, 0, 1).is_contiguous()
    torch.testing.assert_close(y, _ref_up_pad(x), rtol=0, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("out_shape", [(64, 64), (24, 40), (5, 9)])
def test_decoder_equals_the_plain_operations(out_shape, dtype):
    # float32 runs the channels-last oneDNN path on the CPU, float64 the NCHW one
    tol = 1e-10 if dtype == torch.float64 else 2e-5
    gen = G.DecoderGenerator(3, out_shape, seeds=[4, 5, 6]).to(dtype)
    params = list(gen.parameters())
    y = gen()
    ref = G._crop(_ref_decoder_body(gen, gen.latent), out_shape)
    torch.testing.assert_close(y, ref, rtol=0, atol=tol)
    g = torch.randn_like(ref)
    grads = torch.autograd.grad(y, params, g)
    grads_ref = torch.autograd.grad(ref, params, g)
    for a, b in zip(grads, grads_ref):
        torch.testing.assert_close(a, b, rtol=0, atol=tol * max(1.0, float(b.abs().max())))


def test_study_generator_equals_the_plain_operations():
    gen = G.StudyGenerator(2, (16, 16), seeds=[0, 1], width=32).double()
    y = gen()
    x = gen.head(gen.latent)
    for conv, norm in zip(gen.convs, gen.norms):
        x = F.relu(_ref_norm(norm, _ref_conv(conv, _ref_up_pad(x))))
    ref = _ref_conv(gen.last, G._pad(x, 1))
    torch.testing.assert_close(y, ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize("net_dtype", ["float64", "float32"])
def test_fit_equals_a_fit_through_the_plain_operations(monkeypatch, net_dtype):
    # a few iterations: over hundreds the round-off of two orders of summation grows
    rng = np.random.default_rng(3)
    x = torch.tensor(rng.normal(size=(1, 4, 5)))
    x[0, 0, 0] = float("nan")  # a land cell
    w = torch.tensor(1.0 + rng.random((16, 20)))
    kw = {"members": 3, "iterations": 6, "factor": 4, "weights": w, "net_dtype": net_dtype}
    tol = 1e-9 if net_dtype == "float64" else 1e-4
    fast = fit_dip(x, **kw)
    monkeypatch.setattr(G.DecoderGenerator, "body", _ref_decoder_body)
    monkeypatch.setattr(G.MemberConv2d, "forward", _ref_conv)
    monkeypatch.setattr(G.MemberNorm, "forward", _ref_norm)
    plain = fit_dip(x, **kw)
    torch.testing.assert_close(fast.members, plain.members, rtol=0, atol=tol)
    torch.testing.assert_close(fast.loss, plain.loss, rtol=100 * tol, atol=1e-12)
