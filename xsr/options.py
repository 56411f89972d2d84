"""Global options: ``xsr.set_options`` as a validating context manager."""

from __future__ import annotations

import re
from typing import Any

from ._validate import check_bool, check_int
from .exceptions import OptionError

__all__ = ["OPTIONS", "get_options", "set_options"]

OPTIONS: dict[str, Any] = {
    "device": "auto",
    "dtype": None,
    "progress": True,
    "tile_size": None,
}

_DTYPES = (None, "float32", "float64")
_TILE_HINT = "the edge of a tile in fine cells, e.g. tile_size=512"


def _validate(key: str, value: Any) -> Any:
    if key == "device":
        if not isinstance(value, str):
            # torch.device objects are accepted too
            value = str(value)
        if re.fullmatch(r"auto|cpu|mps|cuda(:[0-9]+)?", value) is None:
            raise OptionError(
                f"device must be 'auto', 'cpu', 'cuda', 'cuda:N' (N a GPU number) or 'mps', "
                f"got {value!r}; 'auto' picks a GPU when torch sees one"
            )
        return value
    if key == "dtype":
        if value is not None:
            value = str(value).replace("torch.", "")
        if value not in _DTYPES:
            raise OptionError(
                f"dtype must be one of {list(_DTYPES)}, got {value!r}; downscaled fields are "
                "floating point: pass 'float32' or 'float64', or None to keep each variable's "
                "own floating dtype"
            )
        return value
    if key == "progress":
        return check_bool(value, name="progress")
    if key == "tile_size":
        return check_int(value, name="tile_size", minimum=1, allow_none=True, hint=_TILE_HINT)
    raise OptionError(f"unknown option {key!r}; available: {sorted(OPTIONS)}")


def get_options() -> dict[str, Any]:
    """Return a copy of the current global options."""
    return dict(OPTIONS)


class set_options:
    """Set global options, for a ``with`` block or for the session.

    Parameters
    ----------
    device : {"auto", "cpu", "cuda", "cuda:N", "mps"}
        Where torch computations run; ``"auto"`` picks cuda, then mps, then cpu.
    dtype : {None, "float32", "float64"}
        Compute dtype; ``None`` keeps each variable's own floating dtype.
    progress : bool
        Show progress bars for long computations.
    tile_size : int or None
        Downscale in tiles of at most ``tile_size`` x ``tile_size`` fine cells (each sent to
        the method with a halo of a few coarse cells, see :mod:`xsr.tiling`), batched per
        chunk, to bound memory on CPU and GPU; ``None``: one tile per (dask) chunk.

    Examples
    --------
    >>> import xsr
    >>> with xsr.set_options(device="cpu"):
    ...     pass
    """

    def __init__(self, **kwargs: Any) -> None:
        self._old = dict(OPTIONS)
        new = {k: _validate(k, v) for k, v in kwargs.items()}
        OPTIONS.update(new)

    def __enter__(self) -> set_options:
        return self

    def __exit__(self, *exc: object) -> None:
        OPTIONS.clear()
        OPTIONS.update(self._old)


def resolve_device(device: str | None = None) -> str:
    """Resolve ``"auto"`` (or ``None``: the global option) to an available torch device."""
    import torch

    dev = _validate("device", OPTIONS["device"] if device is None else device)
    if dev == "auto":
        if torch.cuda.is_available():
            return "cuda"
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return "mps"
        return "cpu"
    if dev.startswith("cuda") and not torch.cuda.is_available():
        raise OptionError(
            f"device={dev!r} was asked for but torch sees no CUDA GPU; use device='auto' or "
            "'cpu', or install a CUDA build of torch"
        )
    return dev
