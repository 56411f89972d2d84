"""Supervised super-resolution networks ending in the enforcement layer.

The seven schemes compared in the downsampling-enforcement study (Geiss & Hardin 2023,
"Strictly enforcing invertibility and conservation in CNN-based super resolution"), sized for
geophysical fields: one channel by default, small widths that train on a CPU, and any integer
factor >= 2 (not only powers of two).

=============  ==============================================================================
name           scheme
=============  ==============================================================================
``srcnn``      :class:`SRCNN`: bicubic pre-upsampling, then 9-5-5 convolutions (Dong et al.)
``lapsrn``     :class:`LapSRN`: progressive 2x pyramid levels; a resize step to the exact size
               when the factor is not a power of two (Lai et al.)
``dense-unet`` :class:`DenseUNet`: a U-Net of dense blocks on the coarse grid, followed by
               upsampling and a dense block on the fine grid
``dbpn``       :class:`DBPN`: iterative up- and down-projection units (Haris et al.)
``srdensenet`` :class:`SRDenseNet`: dense blocks, all concatenated, bottleneck, upsampling
               (Tong et al.)
``edsr``       :class:`EDSR`: residual blocks without batch normalisation, global skip,
               sub-pixel upsampling (Lim et al.)
``rdn``        :class:`RDN`: residual dense blocks with local and global feature fusion
               (Zhang et al.)
=============  ==============================================================================

Every model maps a coarse batch ``(N, C, ny, nx)`` to ``(N, C, ny*f, nx*f)`` and ends with
:class:`xsr.conserve.Enforce` (held as ``self.enforce``; ``None`` when ``conserve=None``), so
the same network can be trained with or without the layer.  With ``conserve="multiplicative"``
the pre-enforcement output passes through a softplus so that it is non-negative.

Upsampling by a factor ``f`` inside the feature networks (EDSR, RDN, SRDenseNet, Dense U-Net)
is a chain over the prime factors of ``f``: a convolution and a pixel shuffle for the primes
2 and 3, and nearest-neighbour interpolation followed by a convolution for larger primes.

Guides (fine-scale covariates such as terrain height): every network takes
``guide_channels=C`` (default 0: the networks above, unchanged) and is then called as
``model(coarse, guide=g)`` with ``g`` of shape ``(N, C, ny*f, nx*f)``.  The guides enter
twice, by the same mechanism for the seven schemes (:class:`SRModel`):

* *early fusion* (:class:`GuideEncoder`): space-to-depth by ``f`` puts the ``f * f`` fine
  values of each guide in every coarse cell into channels, a 1 x 1 convolution compresses them
  to ``guide_features`` channels, which are concatenated to the coarse input: the network
  sees the sub-cell structure of the guides with its whole receptive field;
* *late fusion* (:class:`GuideFusion`): the network outputs, besides its fine field, one
  coefficient map per guide (and output channel); the fine field gets the sum of coefficients
  times guides (a spatially varying regression on the guides, e.g. a local lapse rate times
  elevation), then a small residual convolution head on the fine grid that sees the field and
  the guides (its last layer starts at zero).

Both stand before the enforcement layer, which keeps the result exactly conservative.
"""

from __future__ import annotations

import copy
import difflib
import math
from collections.abc import Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from .._kwargs import accepted_options
from .._validate import check_int
from ..conserve import ConserveMode, Enforce, check_options, enforce
from ..exceptions import MethodError, OptionError, ShapeError

__all__ = [
    "DBPN",
    "EDSR",
    "RDN",
    "SRCNN",
    "SR_MODELS",
    "DenseUNet",
    "GuideEncoder",
    "GuideFusion",
    "LapSRN",
    "SRDenseNet",
    "SRModel",
    "SRModelName",
    "SubPixelUpsampler",
    "build_sr_model",
    "soft_bound",
]

SRModelName = Literal["srcnn", "lapsrn", "dense-unet", "dbpn", "srdensenet", "edsr", "rdn"]


# --------------------------------------------------------------------------------------------
# building blocks
# --------------------------------------------------------------------------------------------
def _conv(cin: int, cout: int, kernel: int = 3) -> nn.Conv2d:
    """A stride-1 convolution that keeps the spatial size (replicate padding)."""
    return nn.Conv2d(cin, cout, kernel, padding=kernel // 2, padding_mode="replicate")


def _prime_factors(n: int) -> list[int]:
    out, p = [], 2
    while n > 1:
        while n % p == 0:
            out.append(p)
            n //= p
        p += 1
    return out


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bicubic resize of ``(N, C, h, w)`` to ``(N, C, *size)``."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bicubic", align_corners=False)


def soft_bound(x: torch.Tensor, bounds: Sequence[float | None] | None) -> torch.Tensor:
    """Map ``x`` smoothly into ``bounds`` (differentiable everywhere, unlike a clip).

    ``lo + softplus(x - lo)`` below a lower bound only, ``hi - softplus(hi - x)`` for an
    upper bound only, and ``lo + (hi - lo) * sigmoid(...)`` (the identity's slope at the
    centre) for both; values well inside the bounds are nearly unchanged.  Networks with
    ``conserve="bounded"`` apply it before the enforcement layer, so that training gets a
    gradient where the raw output leaves the bounds (the layer's clip would give none).
    """
    if bounds is None:
        return x
    lo, hi = bounds
    if lo is not None and hi is not None:
        width = float(hi) - float(lo)
        return float(lo) + width * torch.sigmoid(4.0 * (x - (float(lo) + width / 2)) / width)
    if lo is not None:
        return float(lo) + F.softplus(x - float(lo))
    if hi is not None:
        return float(hi) - F.softplus(float(hi) - x)
    return x


class SubPixelUpsampler(nn.Sequential):
    """Upsample features by an integer factor, one prime factor at a time.

    Primes 2 and 3: a 3 x 3 convolution to ``channels * p**2`` channels and a pixel shuffle.
    Other primes: nearest-neighbour interpolation by ``p`` and a 3 x 3 convolution.

    Parameters
    ----------
    channels : int
        Feature channels (kept).
    factor : int
        Upsampling factor (>= 2).

    Notes
    -----
    Shapes: input ``(N, channels, h, w)``, output ``(N, channels, h*factor, w*factor)``.
    """

    def __init__(self, channels: int, factor: int) -> None:
        layers: list[nn.Module] = []
        for p in _prime_factors(factor):
            if p in (2, 3):
                layers += [_conv(channels, channels * p * p), nn.PixelShuffle(p)]
            else:
                layers += [nn.Upsample(scale_factor=p, mode="nearest"), _conv(channels, channels)]
        super().__init__(*layers)


class _DenseBlock(nn.Module):
    """``layers`` convolutions, each fed the concatenation of all previous outputs.

    Shapes: input ``(N, cin, h, w)``, output ``(N, cin + layers*growth, h, w)``.
    """

    def __init__(self, cin: int, growth: int, layers: int) -> None:
        super().__init__()
        self.convs = nn.ModuleList(_conv(cin + i * growth, growth) for i in range(layers))
        self.out_channels = cin + layers * growth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [x]
        for conv in self.convs:
            feats.append(F.relu(conv(torch.cat(feats, dim=1))))
        return torch.cat(feats, dim=1)


class GuideEncoder(nn.Module):
    """Early fusion: the fine guides brought onto the coarse grid without losing detail.

    Space-to-depth (:class:`torch.nn.PixelUnshuffle`) by ``factor`` turns each guide's
    ``factor x factor`` fine values inside a coarse cell into ``factor**2`` channels of that
    cell; a 1 x 1 convolution compresses the ``guides * factor**2`` channels to ``features``.

    Parameters
    ----------
    guides : int
        Guide channels ``C``.
    factor : int
        Refinement factor.
    features : int
        Output channels.

    Notes
    -----
    Shapes: ``(N, C, ny*factor, nx*factor) -> (N, features, ny, nx)``.
    """

    def __init__(self, guides: int, factor: int, features: int) -> None:
        super().__init__()
        self.unshuffle = nn.PixelUnshuffle(factor)
        self.mix = nn.Conv2d(guides * factor * factor, features, 1)

    def forward(self, guide: torch.Tensor) -> torch.Tensor:
        return self.mix(self.unshuffle(guide))


class GuideFusion(nn.Module):
    """Late fusion on the fine grid, before the enforcement layer.

    ``y = fine + sum_c a_c * g_c`` (coefficient maps ``a`` predicted by the network: a
    spatially varying regression on the guides ``g``), then ``y + head([y, g])`` with a
    three-layer convolution head of width ``width`` whose last layer is initialised to zero
    (the network starts as the regression alone).

    Parameters
    ----------
    channels : int
        Channels of the fine field ``C_out``.
    guides : int
        Guide channels ``C``.
    width : int
        Width of the head.

    Notes
    -----
    Shapes: ``fine (N, C_out, H, W)``, ``coefs (N, C_out * C, H, W)``, ``guide (N, C, H, W)``
    -> ``(N, C_out, H, W)``.
    """

    def __init__(self, channels: int, guides: int, width: int) -> None:
        super().__init__()
        self.channels, self.guides = int(channels), int(guides)
        self.head = nn.Sequential(
            _conv(channels + guides, width),
            nn.ReLU(),
            _conv(width, width),
            nn.ReLU(),
            _conv(width, channels),
        )
        last = self.head[-1]
        assert isinstance(last, nn.Conv2d)
        nn.init.zeros_(last.weight)
        assert last.bias is not None
        nn.init.zeros_(last.bias)

    def forward(self, fine: torch.Tensor, coefs: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
        n, co, h, w = fine.shape
        a = coefs.reshape(n, co, self.guides, h, w)
        y = fine + (a * guide[:, None]).sum(dim=2)
        return y + self.head(torch.cat([y, guide], dim=1))


# --------------------------------------------------------------------------------------------
# base class
# --------------------------------------------------------------------------------------------
class SRModel(nn.Module):
    """Base class: options, input checks, output activation and the enforcement layer.

    Subclasses implement :meth:`features`, mapping ``(N, feature_in, ny, nx)`` to
    ``(N, feature_out, ny*f, nx*f)``: their first layer takes :attr:`feature_in` channels
    (``C_in``, plus ``guide_features`` with guides) and their last gives :attr:`feature_out`
    (``C_out``, times ``1 + C`` with ``C`` guides: the field and its guide coefficients).

    Parameters
    ----------
    factor : int
        Refinement factor along each axis (>= 2).
    conserve : {"additive", "multiplicative", "bounded", None}, default "additive"
        Enforcement operator of the last layer; ``None`` for no layer.
    bounds : (lower, upper), optional
        For ``conserve="bounded"``.
    in_channels : int, default 1
        Channels (variables) of the coarse input.
    out_channels : int, optional
        Channels of the output; defaults to ``in_channels``, and must equal it when
        ``conserve`` is not ``None`` (each output channel is conserved against the same input
        channel).
    skip : bool, default False
        Add the bicubic interpolation of the input to the network's output, so that the
        network learns a correction to it (a global skip connection; with few training
        fields the network then starts from bicubic instead of from noise).
    guide_channels : int, default 0
        Fine-scale covariates (guides) the network takes, ``model(coarse, guide=g)`` with
        ``g`` of shape ``(N, guide_channels, ny*f, nx*f)``; 0: none (the network is then the
        same, parameter for parameter, as without the option).  See the module docstring.
    guide_features : int, default 16
        With guides: channels of the early fusion (:class:`GuideEncoder`) added to the
        coarse input.
    fusion_width : int, default 16
        With guides: width of the late-fusion head (:class:`GuideFusion`).
    """

    enforce: Enforce | None
    guide_encoder: GuideEncoder | None
    guide_fusion: GuideFusion | None

    def __init__(
        self,
        *,
        factor: int,
        conserve: ConserveMode | None = "additive",
        bounds: Sequence[float | None] | None = None,
        in_channels: int = 1,
        out_channels: int | None = None,
        skip: bool = False,
        guide_channels: int = 0,
        guide_features: int = 16,
        fusion_width: int = 16,
    ) -> None:
        super().__init__()
        f, mode, b = check_options(factor, conserve, bounds)
        out_channels = in_channels if out_channels is None else int(out_channels)
        if in_channels < 1 or out_channels < 1:
            raise OptionError(
                f"in_channels and out_channels must be >= 1, got {in_channels}, {out_channels}"
            )
        if mode is not None and out_channels != in_channels:
            raise OptionError(
                f"conserve={mode!r} needs out_channels == in_channels, got {out_channels} and "
                f"{in_channels}; use conserve=None for a network that changes the channels"
            )
        self.factor: int = f
        self.conserve: ConserveMode | None = mode
        self.in_channels = int(in_channels)
        self.out_channels = out_channels
        if skip and out_channels != in_channels:
            raise OptionError(
                f"skip=True adds the bicubic interpolation of the input to the output, which "
                f"needs out_channels == in_channels, got {out_channels} and {in_channels}"
            )
        self.skip = bool(skip)
        self.enforce = None if mode is None else Enforce(f, mode, bounds=b)
        hint = "fine-scale covariates (guides) the network takes; 0 for none"
        c = check_int(guide_channels, name="guide_channels", minimum=0, hint=hint)
        self.guide_channels: int = c
        #: channels of the first layer of :meth:`features` (the coarse input, plus the
        #: early fusion of the guides)
        self.feature_in: int = self.in_channels
        #: channels of the output of :meth:`features` (the field, plus one coefficient map
        #: per guide and output channel)
        self.feature_out: int = out_channels
        self.guide_encoder = None
        self.guide_fusion = None
        if c:
            e = check_int(guide_features, name="guide_features", minimum=1)
            w = check_int(fusion_width, name="fusion_width", minimum=1)
            self.guide_encoder = GuideEncoder(c, f, e)
            self.guide_fusion = GuideFusion(out_channels, c, w)
            self.feature_in = self.in_channels + e
            self.feature_out = out_channels * (1 + c)

    def features(self, coarse: torch.Tensor) -> torch.Tensor:
        """Pre-enforcement fine output ``(N, feature_out, ny*f, nx*f)`` (before any
        activation) of the input ``(N, feature_in, ny, nx)``: the coarse fields (their
        first ``C_in`` channels), then the early fusion of the guides, if any."""
        raise NotImplementedError

    def _check_guide(self, coarse: torch.Tensor, guide: torch.Tensor | None) -> None:
        c = self.guide_channels
        if not c:
            if guide is not None:
                raise OptionError(
                    f"{type(self).__name__} was built without guides (guide_channels=0) but "
                    "got guide=; allowed: no guide. Fix: leave guide= out, or build the "
                    "network with guide_channels=C"
                )
            return
        want = (coarse.shape[0], c, *self.fine_size(coarse))
        if guide is None:
            raise OptionError(
                f"{type(self).__name__} was built with guide_channels={c} and needs guide= of "
                f"shape {want}; got none. Fix: pass the guides (normalised as in training)"
            )
        if tuple(guide.shape) != want:
            raise ShapeError(
                f"{type(self).__name__} expects a guide of shape {want} (N, guide_channels, "
                f"ny*factor, nx*factor), got {tuple(guide.shape)}"
            )

    def first_guess(self, coarse: torch.Tensor, guide: torch.Tensor | None = None) -> torch.Tensor:
        """The fine field before the output activation and the enforcement layer.

        :meth:`features` of the coarse input (concatenated with the early fusion of the
        guides), plus the bicubic interpolation with ``skip=True``, then the late fusion of
        the guides.  Shapes: ``(N, C_in, ny, nx)`` and ``(N, C, ny*f, nx*f)`` ->
        ``(N, C_out, ny*f, nx*f)``.
        """
        self._check_guide(coarse, guide)
        if self.guide_encoder is None or self.guide_fusion is None or guide is None:
            fine = self.features(coarse)
            if self.skip:
                fine = fine + _resize(coarse, self.fine_size(coarse))
            return fine
        guide = guide.to(coarse.dtype)
        raw = self.features(torch.cat([coarse, self.guide_encoder(guide)], dim=1))
        fine, coefs = raw[:, : self.out_channels], raw[:, self.out_channels :]
        if self.skip:
            fine = fine + _resize(coarse, self.fine_size(coarse))
        return self.guide_fusion(fine, coefs, guide)

    def forward(
        self,
        coarse: torch.Tensor,
        guide: torch.Tensor | None = None,
        *,
        weights: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Super-resolve a coarse batch.

        Parameters
        ----------
        coarse : tensor, shape ``(N, C_in, ny, nx)``
            Finite coarse fields (fill masked cells before calling).
        guide : tensor, shape ``(N, guide_channels, ny*factor, nx*factor)``
            The fine-scale covariates, finite (required with ``guide_channels > 0``,
            refused without).
        weights : tensor, optional
            Fine cell weights (areas) broadcastable to the output; overrides the
            ``self.enforce.weights`` buffer for this call.
        mask : tensor of bool, optional
            Valid fine cells; overrides the ``self.enforce.mask`` buffer for this call.

        Returns
        -------
        tensor, shape ``(N, C_out, ny*factor, nx*factor)``
            With enforcement, its (weighted, masked) block means equal ``coarse``.
        """
        if coarse.ndim != 4 or coarse.shape[1] != self.in_channels:
            raise ShapeError(
                f"{type(self).__name__} expects a coarse batch (N, {self.in_channels}, ny, nx), "
                f"got shape {tuple(coarse.shape)}"
            )
        fine = self.first_guess(coarse, guide)
        if self.conserve == "multiplicative":
            fine = F.softplus(fine)
        elif self.conserve == "bounded" and self.enforce is not None:
            fine = soft_bound(fine, self.enforce.bounds)
        if self.enforce is None:
            if weights is not None or mask is not None:
                raise OptionError(
                    "weights= and mask= are used by the enforcement layer, but this model was "
                    "built with conserve=None"
                )
            return fine
        if weights is None and mask is None:
            return self.enforce(fine, coarse)
        return enforce(
            fine,
            coarse,
            self.factor,
            self.conserve,
            weights=self.enforce.weights if weights is None else weights,
            mask=self.enforce.mask if mask is None else mask,
            bounds=self.enforce.bounds,
            validate=False,
        )

    def receptive_radius(self, *, limit: int = 64) -> int:
        """How far, in coarse cells, an input cell can influence the output (measured).

        The reach is structural, not that of particular weights or inputs: on a float64
        copy of the network with every parameter made positive (``|p| + 0.01``) and a
        positive input, every ReLU passes, so no path is gated off; the gradient of the
        output of the centre coarse cell (its fine cells, before the enforcement, which
        acts within coarse cells) with respect to the input is then a sum of positive
        products, non-zero exactly on the input cells that reach it.  The radius is their
        largest Chebyshev distance; the square grows (17, 33, 65... cells) until they stay
        inside it.  This is the halo tiles need for the network to reproduce the untiled
        result.  With guides, the fine guide cells that reach the centre count too (by the
        coarse cell they lie in).

        Parameters
        ----------
        limit : int, default 64
            Largest radius looked for; networks with a wider (or global) reach return
            ``limit``.

        Returns
        -------
        int
        """
        net = copy.deepcopy(self).to(device="cpu", dtype=torch.float64).eval()
        with torch.no_grad():
            for p in net.parameters():
                p.copy_(p.abs() + 0.01)
        f = self.factor
        r = 4
        while True:
            r = min(2 * r, int(limit))
            n = 2 * r + 1
            gen = torch.Generator().manual_seed(0)
            x = 0.5 + torch.rand(1, self.in_channels, n, n, generator=gen, dtype=torch.float64)
            x.requires_grad_(True)
            g = None
            if self.guide_channels:
                shape = (1, self.guide_channels, n * f, n * f)
                g = 0.5 + torch.rand(*shape, generator=gen, dtype=torch.float64)
                g.requires_grad_(True)
            y = net.first_guess(x, g)
            y[..., r * f : (r + 1) * f, r * f : (r + 1) * f].sum().backward()
            assert x.grad is not None
            reach_map = x.grad.abs().amax(dim=(0, 1))
            if g is not None:
                assert g.grad is not None
                gmap = g.grad.abs().amax(dim=(0, 1)).reshape(n, f, n, f).amax(dim=(1, 3))
                reach_map = torch.maximum(reach_map, gmap)
            idx = torch.nonzero(reach_map > 0)
            reach = 0 if idx.numel() == 0 else int((idx - r).abs().max())
            if reach < r or r >= limit:
                return min(reach, int(limit))

    def fine_size(self, coarse: torch.Tensor) -> tuple[int, int]:
        """``(ny*factor, nx*factor)`` for a coarse batch."""
        ny, nx = coarse.shape[-2:]
        return ny * self.factor, nx * self.factor

    def extra_repr(self) -> str:
        return (
            f"factor={self.factor}, conserve={self.conserve!r}, in_channels={self.in_channels}, "
            f"out_channels={self.out_channels}, skip={self.skip}"
            + (f", guide_channels={self.guide_channels}" if self.guide_channels else "")
        )


# --------------------------------------------------------------------------------------------
# the seven schemes
# --------------------------------------------------------------------------------------------
class SRCNN(SRModel):
    """SRCNN: bicubic pre-upsampling and three convolutions (9-5-5).

    Parameters
    ----------
    **common
        ``factor``, ``conserve``, ``bounds``, ``in_channels``, ``out_channels``, ``skip``,
        ``guide_channels``, ``guide_features``, ``fusion_width``: see :class:`SRModel`.
    channels : (int, int), default (64, 32)
        Widths of the first two convolutions.
    kernels : (int, int, int), default (9, 5, 5)
        Kernel sizes (odd).

    Notes
    -----
    Shapes: ``(N, C_in, ny, nx) -> (N, C_out, ny*factor, nx*factor)`` (with guides
    ``(N, C, ny*factor, nx*factor)`` besides).
    """

    def __init__(
        self,
        *,
        channels: tuple[int, int] = (64, 32),
        kernels: tuple[int, int, int] = (9, 5, 5),
        **common: Any,
    ) -> None:
        super().__init__(**common)
        c1, c2 = channels
        k1, k2, k3 = kernels
        self.body = nn.Sequential(
            _conv(self.feature_in, c1, k1),
            nn.ReLU(),
            _conv(c1, c2, k2),
            nn.ReLU(),
            _conv(c2, self.feature_out, k3),
        )

    def features(self, coarse: torch.Tensor) -> torch.Tensor:
        up = _resize(coarse, self.fine_size(coarse))
        out = self.body(up)
        return out


class LapSRN(SRModel):
    """LapSRN: a Laplacian pyramid of 2x levels.

    Each level upsamples the features by 2 (convolution + pixel shuffle) after ``depth``
    convolutions with leaky ReLU, predicts a residual image, and adds it to the 2x
    (transposed-convolution) upsampled image of the previous level.  ``ceil(log2(factor))``
    levels are used; when ``factor`` is not a power of two the last image is resized
    (bicubic) to the exact fine size.

    Parameters
    ----------
    **common
        ``factor``, ``conserve``, ``bounds``, ``in_channels``, ``out_channels``, ``skip``,
        ``guide_channels``, ``guide_features``, ``fusion_width``: see :class:`SRModel`.
    channels : int, default 32
        Feature width.
    depth : int, default 3
        Convolutions per level.

    Notes
    -----
    Shapes: ``(N, C_in, ny, nx) -> (N, C_out, ny*factor, nx*factor)`` (with guides
    ``(N, C, ny*factor, nx*factor)`` besides).
    """

    def __init__(
        self,
        *,
        channels: int = 32,
        depth: int = 3,
        **common: Any,
    ) -> None:
        super().__init__(**common)
        self.levels = max(1, math.ceil(math.log2(self.factor) - 1e-9))
        cin, cout = self.in_channels, self.feature_out
        self.head = _conv(self.feature_in, channels)
        # the image path starts from the coarse fields alone (without the guides' features)
        self.image_in = _conv(cin, cout) if cout != cin else nn.Identity()
        self.feature_levels = nn.ModuleList()
        self.residual_out = nn.ModuleList()
        self.image_up = nn.ModuleList()
        for _ in range(self.levels):
            layers: list[nn.Module] = []
            for _ in range(depth):
                layers += [_conv(channels, channels), nn.LeakyReLU(0.2)]
            layers += [_conv(channels, 4 * channels), nn.PixelShuffle(2), nn.LeakyReLU(0.2)]
            self.feature_levels.append(nn.Sequential(*layers))
            self.residual_out.append(_conv(channels, cout))
            # kernel 4, stride 2, padding 1: exactly doubles the size
            self.image_up.append(nn.ConvTranspose2d(cout, cout, 4, stride=2, padding=1))

    def features(self, coarse: torch.Tensor) -> torch.Tensor:
        feat = F.leaky_relu(self.head(coarse), 0.2)
        image = self.image_in(coarse[:, : self.in_channels])
        for level, res_out, up in zip(
            self.feature_levels, self.residual_out, self.image_up, strict=True
        ):
            feat = level(feat)
            image = up(image) + res_out(feat)
        return _resize(image, self.fine_size(coarse))


class DenseUNet(SRModel):
    """Dense U-Net: a U-Net of dense blocks on the coarse grid, then upsampling.

    The encoder has ``levels`` dense blocks each followed by 2x average pooling (with
    ceil mode, so odd sizes work); the decoder upsamples (bilinear, to the skip's exact size),
    concatenates the skip connection, and applies a 1 x 1 fusion and a dense block.  The
    coarse-grid features are then upsampled by ``factor`` and refined by a dense block on the
    fine grid.

    Parameters
    ----------
    **common
        ``factor``, ``conserve``, ``bounds``, ``in_channels``, ``out_channels``, ``skip``,
        ``guide_channels``, ``guide_features``, ``fusion_width``: see :class:`SRModel`.
    channels : int, default 32
        Width between blocks.
    growth : int, default 16
        Growth rate of the dense blocks.
    layers : int, default 3
        Convolutions per dense block.
    levels : int, default 2
        Poolings in the encoder.

    Notes
    -----
    Shapes: ``(N, C_in, ny, nx) -> (N, C_out, ny*factor, nx*factor)`` (with guides
    ``(N, C, ny*factor, nx*factor)`` besides).
    """

    def __init__(
        self,
        *,
        channels: int = 32,
        growth: int = 16,
        layers: int = 3,
        levels: int = 2,
        **common: Any,
    ) -> None:
        super().__init__(**common)

        def block(cin: int) -> nn.Sequential:
            dense = _DenseBlock(cin, growth, layers)
            return nn.Sequential(dense, nn.Conv2d(dense.out_channels, channels, 1), nn.ReLU())

        self.head = _conv(self.feature_in, channels)
        self.down = nn.ModuleList(block(channels) for _ in range(levels))
        self.bottom = block(channels)
        self.up = nn.ModuleList(block(2 * channels) for _ in range(levels))
        self.upsample = SubPixelUpsampler(channels, self.factor)
        self.fine_block = block(channels)
        self.tail = _conv(channels, self.feature_out)

    def features(self, coarse: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.head(coarse))
        skips = []
        for blk in self.down:
            x = blk(x)
            skips.append(x)
            x = F.avg_pool2d(x, 2, ceil_mode=True)
        x = self.bottom(x)
        for blk, enc in zip(self.up, reversed(skips), strict=True):
            x = F.interpolate(x, size=enc.shape[-2:], mode="bilinear", align_corners=False)
            x = blk(torch.cat([x, enc], dim=1))
        x = self.fine_block(self.upsample(x))
        return self.tail(x)


class _Projection(nn.Module):
    """A DBPN up- (``up=True``) or down-projection unit.

    Up: ``H0 = up(L); e = down(H0) - L; H = H0 + up(e)``; down: the same with the roles of
    the operators swapped.  The scaling operators are (transposed) convolutions with kernel
    ``factor + 4``, stride ``factor`` and padding 2, which scale sizes exactly by ``factor``.
    """

    def __init__(self, channels: int, factor: int, *, up: bool) -> None:
        super().__init__()
        k, s, p = factor + 4, factor, 2

        def upop() -> nn.Sequential:
            return nn.Sequential(
                nn.ConvTranspose2d(channels, channels, k, stride=s, padding=p), nn.PReLU()
            )

        def downop() -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(channels, channels, k, stride=s, padding=p), nn.PReLU())

        self.is_up = up
        if up:
            self.a, self.b, self.c = upop(), downop(), upop()
        else:
            self.a, self.b, self.c = downop(), upop(), downop()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y0 = self.a(x)
        return y0 + self.c(self.b(y0) - x)


class DBPN(SRModel):
    """DBPN: deep back-projection with alternating up- and down-projection units.

    ``stages`` up-projection units and ``stages - 1`` down-projection units alternate; the
    fine-grid outputs of all up-projection units are concatenated and reconstructed by a
    3 x 3 convolution.  Works for any integer factor directly.

    Parameters
    ----------
    **common
        ``factor``, ``conserve``, ``bounds``, ``in_channels``, ``out_channels``, ``skip``,
        ``guide_channels``, ``guide_features``, ``fusion_width``: see :class:`SRModel`.
    channels : int, default 32
        Feature width.
    stages : int, default 2
        Number of up-projection units.

    Notes
    -----
    Shapes: ``(N, C_in, ny, nx) -> (N, C_out, ny*factor, nx*factor)`` (with guides
    ``(N, C, ny*factor, nx*factor)`` besides).
    """

    def __init__(
        self,
        *,
        channels: int = 32,
        stages: int = 2,
        **common: Any,
    ) -> None:
        super().__init__(**common)
        if stages < 1:
            raise OptionError(f"stages must be >= 1, got {stages}")
        self.head = nn.Sequential(
            _conv(self.feature_in, 4 * channels),
            nn.PReLU(),
            nn.Conv2d(4 * channels, channels, 1),
            nn.PReLU(),
        )
        self.ups = nn.ModuleList(_Projection(channels, self.factor, up=True) for _ in range(stages))
        self.downs = nn.ModuleList(
            _Projection(channels, self.factor, up=False) for _ in range(stages - 1)
        )
        self.tail = _conv(stages * channels, self.feature_out)

    def features(self, coarse: torch.Tensor) -> torch.Tensor:
        low = self.head(coarse)
        highs = []
        for i, up in enumerate(self.ups):
            high = up(low)
            highs.append(high)
            if i < len(self.downs):
                low = self.downs[i](high)
        return self.tail(torch.cat(highs, dim=1))


class SRDenseNet(SRModel):
    """SRDenseNet: dense blocks whose outputs are all concatenated, then upsampled.

    Parameters
    ----------
    **common
        ``factor``, ``conserve``, ``bounds``, ``in_channels``, ``out_channels``, ``skip``,
        ``guide_channels``, ``guide_features``, ``fusion_width``: see :class:`SRModel`.
    blocks : int, default 4
        Dense blocks.
    layers : int, default 4
        Convolutions per dense block.
    growth : int, default 16
        Growth rate (each block outputs ``layers * growth`` new channels).
    bottleneck : int, default 64
        Channels after the 1 x 1 bottleneck, upsampled and reconstructed.

    Notes
    -----
    Shapes: ``(N, C_in, ny, nx) -> (N, C_out, ny*factor, nx*factor)`` (with guides
    ``(N, C, ny*factor, nx*factor)`` besides).
    """

    def __init__(
        self,
        *,
        blocks: int = 4,
        layers: int = 4,
        growth: int = 16,
        bottleneck: int = 64,
        **common: Any,
    ) -> None:
        super().__init__(**common)
        width = layers * growth
        self.head = _conv(self.feature_in, width)
        self.blocks = nn.ModuleList(_DenseBlock(width, growth, layers) for _ in range(blocks))
        self.fuse = nn.Conv2d(width * (blocks + 1), bottleneck, 1)
        self.upsample = SubPixelUpsampler(bottleneck, self.factor)
        self.tail = _conv(bottleneck, self.feature_out)

    def features(self, coarse: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.head(coarse))
        feats = [x]
        for blk in self.blocks:
            # keep only the new channels of each block (its input is the previous output)
            x = blk(x)[:, -x.shape[1] :]
            feats.append(x)
        x = F.relu(self.fuse(torch.cat(feats, dim=1)))
        return self.tail(F.relu(self.upsample(x)))


class _ResBlock(nn.Module):
    """conv-ReLU-conv with an identity skip and a residual scale (no batch normalisation)."""

    def __init__(self, channels: int, scale: float) -> None:
        super().__init__()
        self.conv1, self.conv2, self.scale = (
            _conv(channels, channels),
            _conv(channels, channels),
            scale,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.scale * self.conv2(F.relu(self.conv1(x)))


class EDSR(SRModel):
    """EDSR: residual blocks without batch normalisation, a global skip and upsampling.

    Parameters
    ----------
    **common
        ``factor``, ``conserve``, ``bounds``, ``in_channels``, ``out_channels``, ``skip``,
        ``guide_channels``, ``guide_features``, ``fusion_width``: see :class:`SRModel`.
    blocks : int, default 8
        Residual blocks.
    channels : int, default 32
        Feature width.
    res_scale : float, default 1.0
        Multiplies each block's residual (0.1 stabilises wide networks).

    Notes
    -----
    Shapes: ``(N, C_in, ny, nx) -> (N, C_out, ny*factor, nx*factor)`` (with guides
    ``(N, C, ny*factor, nx*factor)`` besides).
    """

    def __init__(
        self,
        *,
        blocks: int = 8,
        channels: int = 32,
        res_scale: float = 1.0,
        **common: Any,
    ) -> None:
        super().__init__(**common)
        self.head = _conv(self.feature_in, channels)
        self.body = nn.Sequential(
            *(_ResBlock(channels, res_scale) for _ in range(blocks)), _conv(channels, channels)
        )
        self.upsample = SubPixelUpsampler(channels, self.factor)
        self.tail = _conv(channels, self.feature_out)

    def features(self, coarse: torch.Tensor) -> torch.Tensor:
        x = self.head(coarse)
        x = x + self.body(x)
        return self.tail(self.upsample(x))


class _RDB(nn.Module):
    """Residual dense block: dense layers, 1 x 1 local feature fusion, local residual."""

    def __init__(self, channels: int, growth: int, layers: int) -> None:
        super().__init__()
        self.dense = _DenseBlock(channels, growth, layers)
        self.fuse = nn.Conv2d(self.dense.out_channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fuse(self.dense(x))


class RDN(SRModel):
    """RDN: residual dense blocks with global feature fusion and global residual learning.

    Parameters
    ----------
    **common
        ``factor``, ``conserve``, ``bounds``, ``in_channels``, ``out_channels``, ``skip``,
        ``guide_channels``, ``guide_features``, ``fusion_width``: see :class:`SRModel`.
    blocks : int, default 4
        Residual dense blocks (D).
    layers : int, default 4
        Convolutions per block (C).
    growth : int, default 16
        Growth rate (G).
    channels : int, default 32
        Feature width (G0).

    Notes
    -----
    Shapes: ``(N, C_in, ny, nx) -> (N, C_out, ny*factor, nx*factor)`` (with guides
    ``(N, C, ny*factor, nx*factor)`` besides).
    """

    def __init__(
        self,
        *,
        blocks: int = 4,
        layers: int = 4,
        growth: int = 16,
        channels: int = 32,
        **common: Any,
    ) -> None:
        super().__init__(**common)
        self.sfe1 = _conv(self.feature_in, channels)
        self.sfe2 = _conv(channels, channels)
        self.rdbs = nn.ModuleList(_RDB(channels, growth, layers) for _ in range(blocks))
        self.gff = nn.Sequential(
            nn.Conv2d(blocks * channels, channels, 1), _conv(channels, channels)
        )
        self.upsample = SubPixelUpsampler(channels, self.factor)
        self.tail = _conv(channels, self.feature_out)

    def features(self, coarse: torch.Tensor) -> torch.Tensor:
        f_1 = self.sfe1(coarse)
        x = self.sfe2(f_1)
        outs = []
        for rdb in self.rdbs:
            x = rdb(x)
            outs.append(x)
        x = self.gff(torch.cat(outs, dim=1)) + f_1
        return self.tail(self.upsample(x))


# --------------------------------------------------------------------------------------------
# registry
# --------------------------------------------------------------------------------------------
SR_MODELS: dict[str, type[SRModel]] = {
    "srcnn": SRCNN,
    "lapsrn": LapSRN,
    "dense-unet": DenseUNet,
    "dbpn": DBPN,
    "srdensenet": SRDenseNet,
    "edsr": EDSR,
    "rdn": RDN,
}


def build_sr_model(
    name: SRModelName | str,
    *,
    factor: int,
    conserve: ConserveMode | None = "additive",
    **kwargs: Any,
) -> SRModel:
    """Build a super-resolution network by name.

    Parameters
    ----------
    name : {"srcnn", "lapsrn", "dense-unet", "dbpn", "srdensenet", "edsr", "rdn"}
    factor : int
        Refinement factor (>= 2).
    conserve : {"additive", "multiplicative", "bounded", None}, default "additive"
        Enforcement layer at the end of the network.
    **kwargs
        Keyword options of the model class (``bounds``, ``in_channels``, widths...).

    Returns
    -------
    SRModel
        Maps ``(N, C, ny, nx)`` to ``(N, C, ny*factor, nx*factor)``.

    Raises
    ------
    MethodError
        For an unknown name, with the nearest match and the available names.
    OptionError
        For an option the network does not take, with the allowed ones.
    """
    key = str(name).lower()
    if key not in SR_MODELS:
        available = list(SR_MODELS)
        close = difflib.get_close_matches(key, available, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise MethodError(f"unknown SR model {name!r}; {hint}available: {available}")
    cls = SR_MODELS[key]
    allowed = accepted_options(cls) or set()
    bad = sorted(set(kwargs) - allowed)
    if bad:
        raise OptionError(f"{key!r} does not take the option(s) {bad}; allowed: {sorted(allowed)}")
    return cls(factor=factor, conserve=conserve, **kwargs)
