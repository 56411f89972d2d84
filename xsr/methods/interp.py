"""Interpolation baselines: nearest, bilinear and bicubic (torch), made conservative by the
enforcement step of :func:`~xsr.methods.pipeline.downscale_array`.

Bilinear and bicubic interpolation are separable: the coarse rows are interpolated along x
first (an array ``factor`` times smaller than the result), then the result's rows are
combined along y, each output row a sum of 2 (bilinear) or 4 (bicubic) input rows.  Every
pass is a vectorised multiply-add along whole rows, so the cost is a few passes over the
output, and the values are those of ``torch.nn.functional.interpolate`` (``align_corners=
False``, edges clamped) to round-off.
"""

from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING, Any, ClassVar

from .base import Method

if TYPE_CHECKING:
    import torch

__all__ = ["Bicubic", "Bilinear", "Nearest"]

#: Keys' cubic convolution parameter, as in torch and OpenCV.
_A = -0.75
#: Coarse cells of context each side that the kernels read.
_REACH = {"bilinear": 1, "bicubic": 2}


def _cubic1(t: float) -> float:
    return ((_A + 2) * t - (_A + 3)) * t * t + 1


def _cubic2(t: float) -> float:
    return ((_A * t - 5 * _A) * t + 8 * _A) * t - 4 * _A


@functools.lru_cache(maxsize=64)
def phase_weights(factor: int, mode: str) -> tuple[tuple[float, ...], ...]:
    """The 1-D interpolation kernel of each of the ``factor`` output phases.

    Output cell ``i * factor + k`` of a refined axis lies at ``r = (k + 0.5) / factor - 0.5``
    coarse cells from the centre of coarse cell ``i`` (``align_corners=False``).

    Parameters
    ----------
    factor : int
    mode : {"bilinear", "bicubic"}

    Returns
    -------
    tuple of ``factor`` tuples of ``2 * p + 1`` floats
        Row ``k`` holds the weights of coarse cells ``i - p .. i + p`` (indices clamped to
        the axis), ``p`` = 1 (linear) or 2 (Keys' cubic convolution, ``a = -0.75``); two
        (linear) or four (cubic) of them are non-zero.
    """
    p = _REACH[mode]
    rows = []
    for k in range(factor):
        real = (k + 0.5) / factor - 0.5
        i0 = math.floor(real)
        t = real - i0
        taps: tuple[float, ...]
        if mode == "bilinear":
            taps, first = (1.0 - t, t), i0
        else:
            taps, first = (_cubic2(t + 1), _cubic1(t), _cubic1(1 - t), _cubic2(2 - t)), i0 - 1
        row = [0.0] * (2 * p + 1)
        for j, w in enumerate(taps):
            row[p + first + j] += w
        rows.append(tuple(row))
    return tuple(rows)


def _kernel(factor: int, mode: str, like: torch.Tensor) -> torch.Tensor:
    """:func:`phase_weights` as a tensor ``(factor, 2p + 1)`` of ``like``'s dtype/device."""
    import torch

    return torch.tensor(phase_weights(factor, mode), dtype=like.dtype, device=like.device)


def _clamped(x: torch.Tensor, dim: int, p: int) -> torch.Tensor:
    """``x`` with ``p`` edge cells repeated on each side of axis ``dim`` (-1 or -2)."""
    import torch

    n = x.shape[dim]
    idx = torch.arange(-p, n + p, device=x.device).clamp_(0, n - 1)
    return x.index_select(dim, idx)


def _refine_x(x: torch.Tensor, factor: int, mode: str) -> torch.Tensor:
    """Interpolate along the last axis: ``(..., n)`` -> ``(..., n*factor)``.

    One matrix product of the sliding windows ``(..., n, 2p + 1)`` of the clamped input with
    the transposed kernel ``(2p + 1, factor)``.
    """
    import torch

    p = _REACH[mode]
    win = _clamped(x, -1, p).unfold(-1, 2 * p + 1, 1)  # (..., n, 2p + 1)
    return torch.matmul(win, _kernel(factor, mode, x).T).flatten(-2)


def _refine_y(x: torch.Tensor, factor: int, mode: str) -> torch.Tensor:
    """Interpolate along the second-last axis: ``(..., n, m)`` -> ``(..., n*factor, m)``.

    A batched matrix product of the kernel ``(factor, 2p + 1)`` with the overlapping windows
    of ``2p + 1`` whole rows (a strided view, not a copy): output row ``i * factor + k``
    is a weighted sum of input rows, computed along the contiguous axis.
    """
    import torch

    p = _REACH[mode]
    n, m = x.shape[-2:]
    xp = _clamped(x, -2, p).reshape(-1, n + 2 * p, m)  # contiguous
    b = xp.shape[0]
    win = xp.as_strided((b, n, 2 * p + 1, m), (xp.stride(0), m, m, 1))
    y = torch.matmul(_kernel(factor, mode, x), win)  # (b, n, factor, m)
    return y.reshape(*x.shape[:-2], n * factor, m)


class _Interp(Method):
    mode: ClassVar[str] = "nearest"
    local = True  # each output row depends on the coarse rows within ``halo`` only

    def upscale(self, x: torch.Tensor, factor: int, **context: Any) -> torch.Tensor:
        import torch.nn.functional as F

        *lead, ny, nx = x.shape
        if self.mode == "nearest":
            size = (ny * factor, nx * factor)
            y = F.interpolate(x.reshape(-1, 1, ny, nx), size=size, mode="nearest")
            return y.reshape(*lead, *size)
        return _refine_y(_refine_x(x, factor, self.mode), factor, self.mode)


class Nearest(_Interp):
    """Each fine cell takes the value of its coarse cell (already conservative)."""

    name = "nearest"
    mode = "nearest"
    halo = 0


class Bilinear(_Interp):
    """Bilinear interpolation between coarse cell centres (separable, as torch's
    ``F.interpolate(mode="bilinear", align_corners=False)``)."""

    name = "bilinear"
    mode = "bilinear"
    halo = 1


class Bicubic(_Interp):
    """Bicubic convolution interpolation (Keys, a = -0.75; separable, as torch's
    ``F.interpolate(mode="bicubic", align_corners=False)``)."""

    name = "bicubic"
    mode = "bicubic"
    halo = 2
