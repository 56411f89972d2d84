"""The ``sr`` accessor on :class:`xarray.Dataset` and :class:`xarray.DataArray`.

Stateless: it holds only the object and forwards to :mod:`xsr.api`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Generic, TypeVar

import xarray as xr

from . import api

if TYPE_CHECKING:
    from collections.abc import Hashable

__all__ = ["SRAccessor"]

T = TypeVar("T", xr.Dataset, xr.DataArray)


class SRAccessor(Generic[T]):
    """Super-resolution and conservative coarsening: ``obj.sr.downscale(...)``.

    Examples
    --------
    >>> import xsr
    >>> ds = xsr.datasets.open_sample()
    >>> fine = ds.sr.downscale(factor=4, method="bicubic")
    >>> back = fine.sr.coarsen(factor=4)
    """

    def __init__(self, obj: T) -> None:
        self._obj: T = obj

    def downscale(self, factor: int, **kwargs: Any) -> T:
        """Downscale by ``factor``; see :func:`xsr.downscale` for every option."""
        return api.downscale(self._obj, factor=factor, **kwargs)  # type: ignore[return-value]

    def coarsen(self, factor: int, **kwargs: Any) -> T:
        """Conservative block mean; see :func:`xsr.coarsen` for every option."""
        return api.coarsen(self._obj, factor=factor, **kwargs)  # type: ignore[return-value]

    def spatial_dims(self, dims: tuple[Hashable, Hashable] | None = None) -> tuple[str, str]:
        """The horizontal dimensions ``(y, x)`` that xsr works on."""
        return api.spatial_dims(self._obj, dims)


xr.register_dataset_accessor("sr")(SRAccessor)
xr.register_dataarray_accessor("sr")(SRAccessor)
