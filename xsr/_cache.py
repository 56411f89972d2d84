"""Where downloaded files are kept, and whether downloading is allowed.

Shared by the data registry (:mod:`xsr.datasets`) and the registry of published network
weights (:mod:`xsr.nn.published`); no xarray, no torch.

Environment variables
---------------------
``XSR_CACHE_DIR``
    Folder of the cache (default ``pooch.os_cache("xsr")``).
``XSR_OFFLINE``
    ``1``/``true``/``yes``/``on``: never download (``0``/``false``/``no``/``off`` or unset:
    downloads allowed); any other value is an error.
"""

from __future__ import annotations

import os
from pathlib import Path

from .exceptions import OptionError

__all__ = ["cache_dir", "offline"]

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"", "0", "false", "no", "off"})


def offline() -> bool:
    """Whether ``XSR_OFFLINE`` forbids downloads.

    Raises
    ------
    OptionError
        If ``XSR_OFFLINE`` holds a value that is neither true nor false.
    """
    raw = os.environ.get("XSR_OFFLINE", "")
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise OptionError(
        f"environment variable XSR_OFFLINE={raw!r} is not understood; allowed: 1, true, yes, "
        "on (no downloads) or 0, false, no, off, unset (downloads allowed); set it to one of "
        "these"
    )


def cache_dir() -> Path:
    """The cache folder: ``XSR_CACHE_DIR``, else pooch's user cache for xsr."""
    raw = os.environ.get("XSR_CACHE_DIR", "")
    if raw:
        return Path(raw).expanduser()
    import pooch

    return Path(pooch.os_cache("xsr"))
