"""Writing a user's file all at once: to a temporary file beside it, then renamed."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from .exceptions import OptionError, OutputExistsError

__all__ = ["atomic_write", "check_target"]


def check_target(path: str | os.PathLike[str], *, overwrite: bool) -> Path:
    """``path`` as a Path, if it may be written: refused when it exists (unless
    ``overwrite``) or when its folder does not exist.  Call it before long work too.

    Raises
    ------
    OutputExistsError
        If ``path`` exists and ``overwrite`` is False.
    OptionError
        If the folder of ``path`` does not exist.
    """
    out = Path(path)
    if out.exists() and not overwrite:
        raise OutputExistsError(
            f"output file {str(out)!r} exists; pass --overwrite to replace it, or choose "
            "another name"
        )
    folder = out.parent if str(out.parent) else Path(".")
    if not folder.is_dir():
        raise OptionError(
            f"output folder {str(folder)!r} does not exist; create it first (mkdir -p)"
        )
    return out


def atomic_write(
    path: str | os.PathLike[str], write: Callable[[str], object], *, overwrite: bool = True
) -> Path:
    """Call ``write(tmp)`` on a temporary file in ``path``'s folder, then rename it to ``path``.

    An interrupted or failing ``write`` leaves no partial file, and the previous file (if
    any) untouched.  The target is checked first with :func:`check_target`.
    """
    out = check_target(path, overwrite=overwrite)
    folder = out.parent if str(out.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=folder)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, out)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return out
