"""Interpolation baselines: nearest, bilinear and bicubic (torch), made conservative by the
enforcement step of :func:`~xsr.methods.pipeline.downscale_array`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from .base import Method

if TYPE_CHECKING:
    import torch

__all__ = ["Bicubic", "Bilinear", "Nearest"]


class _Interp(Method):
    mode: ClassVar[str] = "nearest"
    local = True  # each output row depends on the coarse rows within ``halo`` only

    def upscale(self, x: torch.Tensor, factor: int, **context: Any) -> torch.Tensor:
        import torch.nn.functional as F

        *lead, ny, nx = x.shape
        x4 = x.reshape(-1, 1, ny, nx)
        size = (ny * factor, nx * factor)
        if self.mode == "nearest":
            y = F.interpolate(x4, size=size, mode="nearest")
        else:
            y = F.interpolate(x4, size=size, mode=self.mode, align_corners=False)
        return y.reshape(*lead, *size)


class Nearest(_Interp):
    """Each fine cell takes the value of its coarse cell (already conservative)."""

    name = "nearest"
    mode = "nearest"
    halo = 0


class Bilinear(_Interp):
    """Bilinear interpolation between coarse cell centres (torch ``F.interpolate``)."""

    name = "bilinear"
    mode = "bilinear"
    halo = 1


class Bicubic(_Interp):
    """Bicubic convolution interpolation (Keys, a = -0.75, torch ``F.interpolate``)."""

    name = "bicubic"
    mode = "bicubic"
    halo = 2
