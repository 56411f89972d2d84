"""Deep-image-prior generators, batched over independent members.

Every module here holds ``n`` *independent* networks (the members of an ensemble, or the
fields of a batch, or both) and runs them as one computation: the convolutions are grouped
convolutions with ``groups=n`` over ``n*C`` channels, and the normalisation is computed per
member and per channel (instance normalisation), so that no statistic mixes members.  Member
``k`` of a batched module gives, to round-off, the output of a one-member module built with
``seeds[k]``: the parameters and the latent input of each member are drawn from a
``torch.Generator`` seeded with its own seed.

Shapes: latent inputs are ``(n, C, h, w)`` and outputs ``(n, 1, H, W)`` (``out_channels``
channels when asked for).

Two generators:

* :class:`StudyGenerator`, the generator of the deep-image-prior study of sea-surface-height
  downscaling: a latent vector ``z ~ N(0, 1)`` of 100 channels (1 x 1), a transposed
  convolution to a 4 x 4 map of 512 channels, then blocks of [2x upsampling, reflection
  padding, 3 x 3 convolution, normalisation, ReLU] halving the channels, and a last 3 x 3
  convolution to one channel (2.39 M parameters for a 256 x 256 output).
* :class:`DecoderGenerator`, a smaller decoder (the default of ``method="dip"``): a latent
  *map* of a few channels at about the coarse resolution, blocks of [3 x 3 convolution,
  normalisation, ReLU, 2x bilinear upsampling] with few channels, and a 1 x 1 convolution to
  one channel whose initial weights are scaled down, so that, used as a correction to a
  smooth first guess (a skip connection), it starts near zero.

Both compute the number of 2x upsampling blocks from the output size, start from a map
shaped to the output's aspect ratio, and crop the last map centrally to exactly ``(H, W)``,
so any output size works.

**Guides.**  Built with ``guide_channels=C > 0``, a generator also takes ``C`` fine-scale
covariates (:meth:`_Generator.set_guide`, ``(n, C, H, W)`` at the output size): they are
padded to the uncropped size of the last map, area-averaged (2 x 2 means) down to the size of
every earlier map, and concatenated beside the features at the input of every convolution,
the last one included, so that each stage sees the guide at its own resolution.
``out_channels`` > 1 gives the extra output channels that a caller uses to modulate its
own use of the guide (see :func:`xsr.methods.dip.fit_dip`).  With ``guide_channels=0`` (the
default) nothing changes: same layers, same initial parameters.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "GENERATORS",
    "DecoderGenerator",
    "GeneratorName",
    "MemberConv2d",
    "MemberLatentToMap",
    "MemberNorm",
    "StudyGenerator",
    "build_generator",
    "count_parameters",
]

GeneratorName = Literal["decoder", "study"]
GENERATORS: tuple[str, ...] = ("decoder", "study")
Upsample = Literal["bilinear", "nearest"]


def _check_seeds(n: int, seeds: Sequence[int] | None) -> list[int]:
    if seeds is None:
        return list(range(n))
    s = [int(v) for v in seeds]
    if len(s) != n:
        raise ValueError(f"need one seed per member: {n} members, got {len(s)} seeds")
    return s


def _uniform(shape: Sequence[int], bound: float, gen: torch.Generator) -> torch.Tensor:
    return (torch.rand(*shape, generator=gen, dtype=torch.float64) * 2.0 - 1.0) * bound


class MemberConv2d(nn.Module):
    """``n`` independent 2-D convolutions run as one grouped convolution.

    Parameters
    ----------
    n : int
        Number of members.
    cin, cout : int
        Input and output channels of each member.
    kernel : int
        Kernel size (square, stride 1, no padding: pad before calling).
    scale : float, default 1.0
        Multiplies the initial weights and bias (use < 1 for a last layer that should
        start near zero).

    Notes
    -----
    Shapes: input ``(n, cin, H, W)``, output ``(n, cout, H - kernel + 1, W - kernel + 1)``.
    """

    def __init__(self, n: int, cin: int, cout: int, kernel: int, *, scale: float = 1.0) -> None:
        super().__init__()
        self.n, self.cin, self.cout, self.kernel, self.scale = n, cin, cout, kernel, scale
        self.weight = nn.Parameter(torch.zeros(n, cout, cin, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(n, cout))

    def reset_member(self, k: int, gen: torch.Generator) -> None:
        """Draw member ``k``'s parameters (PyTorch's default uniform initialisation)."""
        bound = 1.0 / math.sqrt(self.cin * self.kernel * self.kernel)
        with torch.no_grad():
            w = _uniform(self.weight.shape[1:], bound, gen) * self.scale
            b = _uniform(self.bias.shape[1:], bound, gen) * self.scale
            self.weight[k].copy_(w)
            self.bias[k].copy_(b)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        k = self.kernel
        if k == 1:
            # a grouped 1 x 1 convolution takes a slow per-group path on the CPU: a product
            # with the weights and a sum over the channels instead, in the layout of ``x``
            w1 = self.weight.reshape(n, self.cout, self.cin)
            xp = x.permute(2, 3, 0, 1)  # (h, w, n, c): contiguous for a channels-last map
            if xp.is_contiguous():
                y = (xp[:, :, :, None, :] * w1).sum(dim=-1) + self.bias  # (h, w, n, cout)
                return y.permute(2, 3, 0, 1)
            y = torch.baddbmm(self.bias[:, :, None], w1, x.reshape(n, c, h * w))
            return y.reshape(n, self.cout, h, w)
        weight = self.weight.reshape(n * self.cout, self.cin, k, k)
        xi = x.reshape(1, n * c, h, w)
        if x.device.type == "cpu" and x.dtype == torch.float32:
            # channels last on the CPU: oneDNN then runs the backward pass too (about 1.5x
            # faster than the NCHW backward) and the maps stay in that layout between layers
            # (``(n, C, H, W)`` views of a channels-last ``(1, n*C, H, W)``).  float32 only:
            # other dtypes take ATen's fallback, whose weight gradient was measured wrong for
            # such inputs in float64 (torch 2.13), so they stay NCHW
            xi = xi.contiguous(memory_format=torch.channels_last)
            weight = weight.contiguous(memory_format=torch.channels_last)
        else:
            xi = xi.contiguous()
        y = F.conv2d(xi, weight, self.bias.reshape(n * self.cout), groups=n)
        return y.reshape(n, self.cout, y.shape[-2], y.shape[-1])

    def extra_repr(self) -> str:
        return f"n={self.n}, cin={self.cin}, cout={self.cout}, kernel={self.kernel}"


class MemberLatentToMap(nn.Module):
    """A transposed convolution from a ``1 x 1`` latent to an ``h x w`` map, per member.

    Equivalent to ``ConvTranspose2d(cin, cout, (h, w))`` applied to a ``1 x 1`` input.

    Notes
    -----
    Shapes: input ``(n, cin, 1, 1)``, output ``(n, cout, h, w)``.
    """

    def __init__(self, n: int, cin: int, cout: int, size: tuple[int, int]) -> None:
        super().__init__()
        self.n, self.cin, self.cout, self.size = n, cin, cout, size
        self.weight = nn.Parameter(torch.zeros(n, cin, cout, *size))
        self.bias = nn.Parameter(torch.zeros(n, cout))

    def reset_member(self, k: int, gen: torch.Generator) -> None:
        """Draw member ``k``'s parameters (uniform, bound ``1/sqrt(cin)``)."""
        bound = 1.0 / math.sqrt(self.cin)
        with torch.no_grad():
            self.weight[k].copy_(_uniform(self.weight.shape[1:], bound, gen))
            self.bias[k].copy_(_uniform(self.bias.shape[1:], bound, gen))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        y = torch.einsum("nc,ncohw->nohw", z[:, :, 0, 0], self.weight)
        return y + self.bias[:, :, None, None]


class MemberNorm(nn.Module):
    """Instance normalisation with a per-member, per-channel affine map.

    Statistics are taken over the two spatial axes of each member and channel, so members
    never mix; with one member it equals ``BatchNorm2d`` in training mode on a batch of one.

    Notes
    -----
    Shapes: input and output ``(n, C, H, W)``.
    """

    def __init__(self, n: int, channels: int, *, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(n, channels))
        self.bias = nn.Parameter(torch.zeros(n, channels))

    def reset_member(self, k: int, gen: torch.Generator) -> None:
        """Member ``k`` starts as the identity map (weight 1, bias 0)."""
        with torch.no_grad():
            self.weight[k].fill_(1.0)
            self.bias[k].zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # instance normalisation with the affine map fused: a batch normalisation (batch
        # statistics) of the n * C channels of one sample
        n, c, h, w = x.shape
        y = F.batch_norm(
            x.reshape(1, n * c, h, w),
            None,
            None,
            self.weight.reshape(n * c),
            self.bias.reshape(n * c),
            training=True,
            momentum=0.0,
            eps=self.eps,
        )
        return y.reshape(n, c, h, w)


def _pad(x: torch.Tensor, p: int) -> torch.Tensor:
    if p == 0:
        return x
    # reflection needs at least p + 1 cells; replicate on maps smaller than that
    mode = "reflect" if min(x.shape[-2:]) > p else "replicate"
    return F.pad(x, (p, p, p, p), mode=mode)


def _up(x: torch.Tensor, mode: Upsample) -> torch.Tensor:
    if mode == "nearest":
        return F.interpolate(x, scale_factor=2.0, mode="nearest")
    return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)


def _at(dim: int, index: int | slice) -> tuple[Any, ...]:
    """An index of axis ``dim`` (-1 or -2) of a tensor, every other axis whole."""
    return (..., index) if dim == -1 else (..., index, slice(None))


def _empty_as(x: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """An empty tensor of ``shape`` whose axes are laid out in memory in the order of ``x``'s
    (so that a channels-last map stays channels-last)."""
    strides = x.stride()
    order = sorted(range(x.ndim), key=lambda d: -strides[d])
    t = x.new_empty([shape[d] for d in order])
    return t.permute([order.index(d) for d in range(x.ndim)])


def _up_pad_axis(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Bilinear 2x upsampling (``align_corners=False``) along axis ``dim`` (-1 or -2), then
    reflection padding by one cell: ``n`` cells -> ``2n + 2``.

    Upsampled cell ``2i`` is ``0.75 x[i] + 0.25 x[i-1]`` and cell ``2i + 1`` is
    ``0.75 x[i] + 0.25 x[i+1]`` (edges clamped), written through strided views of the output.
    """
    n = x.shape[dim]
    shape = list(x.shape)
    shape[dim] = 2 * n + 2
    out = _empty_as(x, shape)
    even = out[_at(dim, slice(1, 2 * n + 1, 2))]
    odd = out[_at(dim, slice(2, 2 * n + 2, 2))]
    even.copy_(x).mul_(0.75)
    odd.copy_(even)
    even[_at(dim, slice(1, None))].add_(x[_at(dim, slice(None, -1))], alpha=0.25)
    even[_at(dim, 0)].add_(x[_at(dim, 0)], alpha=0.25)
    odd[_at(dim, slice(None, -1))].add_(x[_at(dim, slice(1, None))], alpha=0.25)
    odd[_at(dim, -1)].add_(x[_at(dim, -1)], alpha=0.25)
    out[_at(dim, 0)] = out[_at(dim, 2)]
    out[_at(dim, -1)] = out[_at(dim, -3)]
    return out


def _up_pad_axis_grad(g: torch.Tensor, dim: int) -> torch.Tensor:
    """The adjoint of :func:`_up_pad_axis`: ``2n + 2`` cells along ``dim`` -> ``n``."""
    gu = g[_at(dim, slice(1, -1))].clone()  # fold the reflected cells back onto their sources
    gu[_at(dim, 1)] += g[_at(dim, 0)]
    gu[_at(dim, -2)] += g[_at(dim, -1)]
    ge = gu[_at(dim, slice(0, None, 2))]
    go = gu[_at(dim, slice(1, None, 2))]
    gx = torch.add(ge, go).mul_(0.75)
    gx[_at(dim, slice(1, None))].add_(go[_at(dim, slice(None, -1))], alpha=0.25)
    gx[_at(dim, 0)].add_(ge[_at(dim, 0)], alpha=0.25)
    gx[_at(dim, slice(None, -1))].add_(ge[_at(dim, slice(1, None))], alpha=0.25)
    gx[_at(dim, -1)].add_(go[_at(dim, -1)], alpha=0.25)
    return gx


class _UpPad(torch.autograd.Function):
    """Bilinear 2x upsampling followed by one cell of reflection padding, as one operation.

    Equal, to round-off, to ``F.pad(F.interpolate(x, scale_factor=2, mode="bilinear"), (1,) *
    4, mode="reflect")`` (input ``(n, C, h, w)``, output ``(n, C, 2h + 2, 2w + 2)``), with a
    hand-written backward: each axis is two weighted sums of shifted, strided views, which on
    the CPU is 2-3x faster than ATen's ``upsample_bilinear2d`` and ``reflection_pad2d`` with
    their backward passes (measured on the decoder's maps, 16 x 16 to 64 x 64).
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        return _up_pad_axis(_up_pad_axis(x, -1), -2)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> torch.Tensor:
        return _up_pad_axis_grad(_up_pad_axis_grad(g, -2), -1)


def _up_pad(x: torch.Tensor, mode: Upsample) -> torch.Tensor:
    """``_pad(_up(x, mode), 1)``: 2x upsampling, then one cell of reflection padding."""
    if mode == "nearest":
        return _pad(_up(x, mode), 1)
    return _UpPad.apply(x)


def _crop(x: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    h, w = shape
    oy = (x.shape[-2] - h) // 2
    ox = (x.shape[-1] - w) // 2
    return x[..., oy : oy + h, ox : ox + w]


def _n_blocks(shape: tuple[int, int], start: int) -> int:
    return max(0, math.ceil(math.log2(max(shape) / start))) if max(shape) > start else 0


class _Generator(nn.Module):
    """Common parts: the latent buffer, per-member initialisation, the output crop, guides."""

    latent: torch.Tensor

    def __init__(
        self,
        n: int,
        out_shape: tuple[int, int],
        *,
        guide_channels: int = 0,
        out_channels: int = 1,
    ) -> None:
        super().__init__()
        if n < 1:
            raise ValueError(f"n (members) must be >= 1, got {n}")
        h, w = (int(v) for v in out_shape)
        if h < 1 or w < 1:
            raise ValueError(f"out_shape must be positive, got {out_shape}")
        if guide_channels < 0 or out_channels < 1:
            raise ValueError(
                f"guide_channels must be >= 0 and out_channels >= 1, got {guide_channels} "
                f"and {out_channels}"
            )
        self.n = n
        self.out_shape = (h, w)
        self.guide_channels = int(guide_channels)
        self.out_channels = int(out_channels)
        self._pyramid: dict[tuple[int, int], torch.Tensor] = {}
        self._full_shape = (h, w)  # the uncropped size of the last map (set by subclasses)

    def set_guide(self, guide: torch.Tensor | None) -> None:
        """Store the guide, ``(n, guide_channels, H, W)`` at the output size (or None).

        The guide is padded (replicated edges) to the uncropped size of the last map, with
        the offsets of the final crop, and area-averaged by 2 x 2 blocks down to the size of
        every earlier map; each convolution gets the level of its input's size.
        """
        self._pyramid = {}
        if guide is None:
            if self.guide_channels:
                raise ValueError(f"this generator needs a guide of {self.guide_channels} channels")
            return
        h, w = self.out_shape
        if tuple(guide.shape) != (self.n, self.guide_channels, h, w):
            raise ValueError(
                f"guide must have shape {(self.n, self.guide_channels, h, w)}, got "
                f"{tuple(guide.shape)}"
            )
        hf, wf = self._full_shape
        oy, ox = (hf - h) // 2, (wf - w) // 2
        g = F.pad(guide, (ox, wf - w - ox, oy, hf - h - oy), mode="replicate")
        while True:
            self._pyramid[(int(g.shape[-2]), int(g.shape[-1]))] = g
            if g.shape[-2] % 2 or g.shape[-1] % 2 or min(g.shape[-2:]) < 2:
                break
            g = F.avg_pool2d(g, 2)

    def _cat(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` with the guide at its resolution concatenated as extra channels."""
        if not self.guide_channels:
            return x
        if not self._pyramid:
            raise ValueError("this generator has guide channels: call set_guide(guide) first")
        g = self._pyramid[(int(x.shape[-2]), int(x.shape[-1]))]
        return torch.cat([x, g.to(x.dtype)], dim=1)

    def _latent_shape(self) -> tuple[int, int, int]:
        raise NotImplementedError

    def _reset(self, seeds: list[int]) -> None:
        c, h, w = self._latent_shape()
        z = torch.zeros(self.n, c, h, w)
        kinds = (MemberConv2d, MemberLatentToMap, MemberNorm)
        layers = [m for m in self.modules() if isinstance(m, kinds)]
        for k, seed in enumerate(seeds):
            gen = torch.Generator().manual_seed(seed)
            z[k] = torch.randn(c, h, w, generator=gen, dtype=torch.float64).float()
            for layer in layers:
                layer.reset_member(k, gen)
        self.register_buffer("latent", z)

    def forward(self, z: torch.Tensor | None = None) -> torch.Tensor:
        """Return ``g(z)``, shape ``(n, out_channels, H, W)``; ``z`` defaults to the stored
        latent."""
        y = self.body(self.latent if z is None else z)
        return _crop(y, self.out_shape)

    def body(self, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class StudyGenerator(_Generator):
    """The generator of the deep-image-prior study, for any output size.

    Parameters
    ----------
    n : int
        Number of independent members.
    out_shape : (H, W)
        Output size; the network generates ``(h0 * 2**B, w0 * 2**B)`` with ``B`` upsampling
        blocks chosen so that the start map is at most ``start x start`` and crops centrally.
    seeds : sequence of int, optional
        One seed per member (default ``0..n-1``).
    latent_channels : int, default 100
    width : int, default 512
        Channels after the transposed convolution; halved by each block.
    min_width : int, default 4
    start : int, default 4
        Size of the first map (4 x 4 for a square output).
    upsample : {"bilinear", "nearest"}, default "bilinear"
    guide_channels : int, default 0
        Fine-scale covariates concatenated at the input of every convolution (see
        :meth:`set_guide`).
    out_channels : int, default 1

    Notes
    -----
    Shapes: latent ``(n, latent_channels, 1, 1)``, output ``(n, out_channels, H, W)``.
    """

    def __init__(
        self,
        n: int,
        out_shape: tuple[int, int],
        *,
        seeds: Sequence[int] | None = None,
        latent_channels: int = 100,
        width: int = 512,
        min_width: int = 4,
        start: int = 4,
        upsample: Upsample = "bilinear",
        guide_channels: int = 0,
        out_channels: int = 1,
    ) -> None:
        super().__init__(n, out_shape, guide_channels=guide_channels, out_channels=out_channels)
        h, w = self.out_shape
        nb = _n_blocks(self.out_shape, start)
        h0, w0 = math.ceil(h / 2**nb), math.ceil(w / 2**nb)
        self._full_shape = (h0 * 2**nb, w0 * 2**nb)
        self.latent_channels = latent_channels
        self.upsample: Upsample = upsample
        self.head = MemberLatentToMap(n, latent_channels, width, (h0, w0))
        convs, norms = [], []
        c = width
        gc = self.guide_channels
        for _ in range(nb):
            c2 = max(c // 2, min_width)
            convs.append(MemberConv2d(n, c + gc, c2, 3))
            norms.append(MemberNorm(n, c2))
            c = c2
        self.convs = nn.ModuleList(convs)
        self.norms = nn.ModuleList(norms)
        self.last = MemberConv2d(n, c + gc, self.out_channels, 3)
        self._reset(_check_seeds(n, seeds))

    def _latent_shape(self) -> tuple[int, int, int]:
        return (self.latent_channels, 1, 1)

    def body(self, z: torch.Tensor) -> torch.Tensor:
        x = self.head(z)
        for conv, norm in zip(self.convs, self.norms):
            if self.guide_channels:
                x = _pad(self._cat(_up(x, self.upsample)), 1)
            else:
                x = _up_pad(x, self.upsample)
            x = F.relu(norm(conv(x)))
        return self.last(_pad(self._cat(x), 1))


class DecoderGenerator(_Generator):
    """A small decoder from a latent map (the default generator of ``method="dip"``).

    Parameters
    ----------
    n : int
        Number of independent members.
    out_shape : (H, W)
        Output size.
    seeds : sequence of int, optional
        One seed per member (default ``0..n-1``).
    latent_channels : int, default 8
        Channels of the latent map ``z ~ N(0, 1)``.
    latent_size : int, default 16
        Largest edge of the latent map: ``B = ceil(log2(max(H, W) / latent_size))``
        upsampling blocks, latent map ``(ceil(H / 2**B), ceil(W / 2**B))``.
    width : int, default 64
        Channels of the first block, halved by each further block down to ``min_width``.
    min_width : int, default 16
    upsample : {"bilinear", "nearest"}, default "bilinear"
    out_scale : float, default 0.1
        Factor on the initial weights of the last (1 x 1) convolution.
    guide_channels : int, default 0
        Fine-scale covariates concatenated at the input of every convolution (see
        :meth:`set_guide`).
    out_channels : int, default 1

    Notes
    -----
    Shapes: latent ``(n, latent_channels, H / 2**B, W / 2**B)`` (rounded up), output
    ``(n, out_channels, H, W)``.
    """

    def __init__(
        self,
        n: int,
        out_shape: tuple[int, int],
        *,
        seeds: Sequence[int] | None = None,
        latent_channels: int = 8,
        latent_size: int = 16,
        width: int = 64,
        min_width: int = 16,
        upsample: Upsample = "bilinear",
        out_scale: float = 0.1,
        guide_channels: int = 0,
        out_channels: int = 1,
    ) -> None:
        super().__init__(n, out_shape, guide_channels=guide_channels, out_channels=out_channels)
        h, w = self.out_shape
        nb = _n_blocks(self.out_shape, latent_size)
        self.latent_hw = (math.ceil(h / 2**nb), math.ceil(w / 2**nb))
        self._full_shape = (self.latent_hw[0] * 2**nb, self.latent_hw[1] * 2**nb)
        self.latent_channels = latent_channels
        self.upsample: Upsample = upsample
        convs, norms = [], []
        c = latent_channels
        c2 = width
        gc = self.guide_channels
        for _ in range(nb + 1):
            convs.append(MemberConv2d(n, c + gc, c2, 3))
            norms.append(MemberNorm(n, c2))
            c, c2 = c2, max(c2 // 2, min_width)
        self.convs = nn.ModuleList(convs)
        self.norms = nn.ModuleList(norms)
        self.last = MemberConv2d(n, c + gc, self.out_channels, 1, scale=out_scale)
        self._reset(_check_seeds(n, seeds))

    def _latent_shape(self) -> tuple[int, int, int]:
        return (self.latent_channels, *self.latent_hw)

    def body(self, z: torch.Tensor) -> torch.Tensor:
        x = _pad(self._cat(z), 1)
        nb = len(self.convs) - 1
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms)):
            x = F.relu(norm(conv(x)))
            if i < nb:
                if self.guide_channels:
                    x = _pad(self._cat(_up(x, self.upsample)), 1)
                else:
                    x = _up_pad(x, self.upsample)
        return self.last(self._cat(x))


def build_generator(
    name: GeneratorName,
    n: int,
    out_shape: tuple[int, int],
    *,
    seeds: Sequence[int] | None = None,
    **options: Any,
) -> StudyGenerator | DecoderGenerator:
    """Build a generator by name (``"decoder"`` or ``"study"``) with ``n`` members.

    Parameters
    ----------
    name : {"decoder", "study"}
    n : int
        Number of independent members.
    out_shape : (H, W)
        Output size.
    seeds : sequence of int, optional
        One seed per member.
    **options
        Keyword options of the generator class.

    Returns
    -------
    StudyGenerator or DecoderGenerator
        Its ``forward()`` returns ``(n, out_channels, H, W)`` (one channel by default).
    """
    if name == "study":
        return StudyGenerator(n, out_shape, seeds=seeds, **options)
    if name == "decoder":
        return DecoderGenerator(n, out_shape, seeds=seeds, **options)
    raise ValueError(f"unknown generator {name!r}; available: {list(GENERATORS)}")


def count_parameters(module: nn.Module, *, per_member: bool = True) -> int:
    """Number of trainable parameters, of one member (default) or of all members."""
    total = sum(p.numel() for p in module.parameters() if p.requires_grad)
    n = int(getattr(module, "n", 1))
    return total // n if per_member else total
