"""Exceptions raised by xsr.

Every error is an :class:`XsrError` and also a builtin exception (``ValueError``,
``TypeError``, ...) so that ``except ValueError`` keeps working.  Messages name the value
received, what is allowed, and how to fix it.
"""

from __future__ import annotations

__all__ = [
    "BoundsError",
    "ChunkError",
    "CoordinateError",
    "DataUnavailableError",
    "DtypeError",
    "FactorError",
    "InputFileError",
    "InputValueError",
    "LockError",
    "MethodError",
    "ModelFileError",
    "OptionError",
    "OutputError",
    "OutputExistsError",
    "OutputFolderError",
    "OutputSizeError",
    "ResumeError",
    "ShapeError",
    "SpatialDimsError",
    "TileMemoryError",
    "XsrError",
]


class XsrError(Exception):
    """Base class of every error raised by xsr."""


class FactorError(XsrError, ValueError):
    """The refinement factor is not an integer >= 2."""


class MethodError(XsrError, ValueError):
    """Unknown or unusable downscaling method."""


class SpatialDimsError(XsrError, ValueError):
    """The two horizontal dimensions could not be found, or are ambiguous."""


class CoordinateError(XsrError, ValueError):
    """A spatial coordinate is unusable (non-monotonic, inconsistent bounds...)."""


class DtypeError(XsrError, TypeError):
    """The data type cannot be downscaled (integers, booleans, complex...)."""


class InputValueError(XsrError, ValueError):
    """The values cannot be downscaled (all NaN, infinite, negative for multiplicative...)."""


class BoundsError(InputValueError):
    """The coarse input violates the bounds given for ``conserve='bounded'``."""


class ShapeError(XsrError, ValueError):
    """Array shapes do not fit the factor or each other."""


class ChunkError(XsrError, ValueError):
    """The dask chunking of the input cannot be used as it is."""


class OptionError(XsrError, ValueError):
    """An option has a value that is not allowed."""


class OutputError(XsrError, OSError):
    """The output cannot be written here: its folder is missing or not writable, the path is
    a directory where a file is expected, or it holds something that xsr did not write and
    must not replace."""


class OutputExistsError(OutputError, FileExistsError):
    """The output file exists and overwriting was not asked for."""


class OutputFolderError(OutputError, OptionError):
    """The output's folder does not exist, is not a folder, or cannot be written to."""


class LockError(OutputError):
    """Another xsr run is writing the same output (its lock file names it)."""


class InputFileError(XsrError, ValueError):
    """An input file cannot be read: empty, truncated, corrupt, or not netCDF/zarr."""


class DataUnavailableError(XsrError, FileNotFoundError):
    """A registered data file cannot be provided here (offline, or no public origin)."""


class OutputSizeError(XsrError, MemoryError):
    """The result would not fit in memory; chunk the input with dask and use tiles."""


class TileMemoryError(XsrError, MemoryError):
    """A single tile does not fit in the device's memory; lower ``tile_size``."""


class ResumeError(XsrError, ValueError):
    """A batch job cannot be resumed: the output was written with another configuration."""


class ModelFileError(OptionError):
    """A file given as a trained model is not one written by ``TrainedModel.save``."""
