"""Batch downscaling jobs: many files in, netCDF or zarr out, resumable, on any dask scheduler.

This is the engine of ``xsr downscale`` when it is given several inputs, a zarr store, chunks,
tiles, a scheduler, ``--resume`` or a configuration file (:func:`run`).  The steps:

1. **Configuration.**  Flags, or a YAML/JSON file with the same names (flags given on the
   command line win), resolved into a :class:`BatchConfig`; the resolved configuration is
   stored in the output's attributes (``xsr_config``, JSON).
2. **Input.**  netCDF or zarr, one path, several, or glob patterns (opened together with
   :func:`xarray.open_mfdataset`), lazily, with dask chunks: ``--chunks time=1`` by default;
   large grids are also split along y and x for deterministic methods (see
   :func:`default_chunks`).
3. **Downscaling.**  :func:`xsr.downscale` builds the lazy result (tiled with
   :mod:`xsr.tiling` when the grid is chunked or ``--tile-size`` is given).
4. **Output.**
   *netCDF*: written through a temporary file and renamed into place, so that the output
   either is complete or does not exist.
   *zarr*: first a template (metadata, coordinates and small variables, every data chunk
   missing), then one *region* after the other (a block of time steps x a row of spatial
   chunks), each written with ``to_zarr(region=...)`` and recorded in the store's attributes
   once it is on disk (``xsr_regions_done``).  The store says ``xsr_status = "incomplete"``
   until the last region is recorded, then ``"complete"``.  A job killed part-way and run
   again with ``--resume`` writes only the regions not recorded (a region cut off mid-write is
   written again whole), after checking that its configuration is the one stored.

Output safety (:mod:`xsr._io`):

* The output's folder is checked (it exists, it can be written to) before anything is
  computed, and the run holds a lock beside the output (``.NAME.xsr-lock``) from then on: a
  second run on the same output fails at once with :class:`~xsr.exceptions.LockError`
  naming the first (PID, host, start time).
* ``--resume`` and ``--overwrite`` exclude each other, whether they come from flags or from
  the configuration file.
* ``--resume`` continues only an output that xsr wrote (``xsr_config`` in the zarr store's or
  netCDF file's attributes) with the same settings: another configuration, finished or not,
  is refused with :class:`~xsr.exceptions.ResumeError` naming the settings that differ
  (stored vs now).  A finished output with the same settings is left as it is.
* ``--overwrite`` replaces a zarr store only if xsr wrote it (or an empty folder), never
  another folder or a file at a ``.zarr`` path; a netCDF output replaces an existing regular
  file (the documented behaviour of ``--overwrite``), never a folder.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import json
import os
import shutil
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import _io
from .exceptions import InputFileError, OptionError, OutputExistsError, ResumeError, XsrError

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    import xarray as xr

__all__ = [
    "BatchConfig",
    "default_chunks",
    "load_config",
    "open_guides",
    "open_inputs",
    "parse_chunks",
    "resolve",
    "run",
    "zarr_status",
]

#: Regions computed (locally) or submitted (distributed) together; None: four per core or
#: worker thread.  Locally, the regions of a group are recorded together once all are written.
REGIONS_PER_GROUP: int | None = None

#: Edge (fine cells) of the default spatial chunks of large outputs (2048**2 float64 = 32 MiB).
DEFAULT_FINE_CHUNK = 2048

_NETCDF_SUFFIXES = (".nc", ".nc4", ".netcdf")
_COMPLETE = "complete"
_INCOMPLETE = "incomplete"
# keys of the configuration that change the result (checked before resuming)
_RESULT_KEYS = (
    "inputs",
    "factor",
    "method",
    "var",
    "conserve",
    "lower",
    "upper",
    "dims",
    "method_options",
    "chunks",
    "tile_size",
    "guide",
)


@dataclass
class BatchConfig:
    """A resolved batch job (every field has its final value).

    Attributes
    ----------
    inputs : list of str
        Input paths (netCDF files or zarr stores), globs expanded, in order.
    output : str
        Output path: a zarr store if it ends with ``.zarr``, else a netCDF file.
    factor, method, conserve, lower, upper, dims, device, method_options
        As for :func:`xsr.downscale` (``lower``/``upper``: ``conserve="bounded"``).
    var : list of str or None
        Variables to downscale (None: every variable on the grid).
    chunks : dict
        Dask chunks of the input, ``{dim: size}`` (-1 for a whole dimension).
    tile_size : int or None
        Tile edge in fine cells (:mod:`xsr.tiling`).
    guide : list of str or None
        Fine-scale covariates, ``FILE`` or ``FILE:VAR`` each (:func:`open_guides`).
    scheduler : str or None
        Address or scheduler file of a ``dask.distributed`` cluster.
    resume, overwrite, progress, check : bool
        Skip regions already written; replace an existing output; show a progress bar;
        report the conservation error of the written output.
    """

    inputs: list[str]
    output: str
    factor: int = 4
    method: str = "bicubic"
    var: list[str] | None = None
    conserve: str | None = "additive"
    lower: float | None = None
    upper: float | None = None
    dims: list[str] | None = None
    device: str | None = None
    method_options: dict[str, Any] = field(default_factory=dict)
    chunks: dict[str, int] = field(default_factory=dict)
    tile_size: int | None = None
    guide: list[str] | None = None
    scheduler: str | None = None
    resume: bool = False
    overwrite: bool = False
    progress: bool = True
    check: bool = False

    def to_json(self) -> str:
        """The configuration as JSON (stored in the output's ``xsr_config`` attribute)."""
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    def result_key(self) -> dict[str, Any]:
        """The part of the configuration that determines the result."""
        d = dataclasses.asdict(self)
        return {k: d[k] for k in _RESULT_KEYS}

    @property
    def is_zarr(self) -> bool:
        return _is_zarr_path(self.output)

    def validate(self) -> BatchConfig:
        """Check the values that :func:`run` relies on (``self``, with ``factor`` an int).

        Raises
        ------
        FactorError
            If ``factor`` is not an integer >= 2.
        OptionError
            If ``resume`` and ``overwrite`` are both set, a flag is not a boolean, the output
            is neither ``*.zarr`` nor ``*.nc``, or ``tile_size`` is not a positive integer.
        """
        from .conserve import check_factor

        self.factor = check_factor(self.factor)
        for name in ("resume", "overwrite", "progress", "check"):
            value = getattr(self, name)
            if not isinstance(value, bool):
                raise OptionError(
                    f"{name} must be true or false, got {value!r} ({type(value).__name__}); "
                    f"write '{name}: true' or '{name}: false' in the configuration file"
                )
        if self.resume and self.overwrite:
            raise OptionError(
                "--resume and --overwrite exclude each other (both are set, by flags or by the "
                "configuration file): --resume finishes an interrupted output, --overwrite "
                "replaces it; pass only one"
            )
        if not self.is_zarr and Path(self.output).suffix.lower() not in _NETCDF_SUFFIXES:
            raise OptionError(
                f"output {self.output!r}: name it *.zarr for a zarr store or *.nc for netCDF"
            )
        if self.tile_size is not None and (
            isinstance(self.tile_size, bool)
            or not isinstance(self.tile_size, int)
            or self.tile_size < 1
        ):
            raise OptionError(f"tile_size must be a positive integer, got {self.tile_size!r}")
        return self


# ------------------------------------------------------------------------------------------
# configuration
# ------------------------------------------------------------------------------------------
_CONFIG_KEYS = {f.name for f in dataclasses.fields(BatchConfig)} | {
    "input",
    "members",
    "iterations",
    "seed",
    "model",
}


def load_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a YAML or JSON configuration file into a dict of options.

    Keys are the long option names of ``xsr downscale`` (``tile_size`` or ``tile-size``),
    plus ``inputs`` (a list or a single path/glob) and ``output``.
    """
    import yaml

    p = Path(path)
    if not p.is_file():
        raise OptionError(f"configuration file {str(p)!r} does not exist")
    text = p.read_text()
    try:
        data = json.loads(text) if p.suffix.lower() == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as e:
        raise OptionError(f"cannot read configuration file {str(p)!r}: {e}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise OptionError(
            f"configuration file {str(p)!r} must hold a mapping of options, got "
            f"{type(data).__name__}"
        )
    out = {str(k).replace("-", "_"): v for k, v in data.items()}
    unknown = sorted(set(out) - _CONFIG_KEYS)
    if unknown:
        raise OptionError(
            f"unknown keys {unknown} in configuration file {str(p)!r}; allowed: "
            f"{sorted(_CONFIG_KEYS)}"
        )
    return out


def parse_chunks(spec: Any) -> dict[str, int]:
    """``"time=1,lat=256"``, a list of such strings, or a mapping -> ``{dim: size}``.

    ``-1`` (or ``"all"``) keeps a dimension whole.
    """
    if spec is None:
        return {}
    items: list[tuple[str, Any]] = []
    if isinstance(spec, dict):
        items = [(str(k), v) for k, v in spec.items()]
    else:
        parts = [spec] if isinstance(spec, str) else list(spec)
        for part in parts:
            for tok in str(part).split(","):
                tok = tok.strip()
                if not tok:
                    continue
                if "=" not in tok:
                    raise OptionError(f"--chunks takes DIM=SIZE pairs, e.g. time=1, got {tok!r}")
                k, v = tok.split("=", 1)
                items.append((k.strip(), v.strip()))
    out: dict[str, int] = {}
    for k, v in items:
        try:
            n = -1 if str(v).lower() in ("all", "-1") else int(v)
        except ValueError:
            raise OptionError(f"chunk size of {k!r} must be an integer, got {v!r}") from None
        if n == 0 or n < -1:
            raise OptionError(f"chunk size of {k!r} must be >= 1 or -1 (whole), got {v!r}")
        out[k] = n
    return out


def resolve(explicit: Mapping[str, Any], config: Mapping[str, Any] | None = None) -> BatchConfig:
    """Merge a configuration file's options with the flags given (which win).

    Parameters
    ----------
    explicit : mapping
        Options given on the command line (only those given), by their ``dest`` names;
        ``paths`` holds the positional INPUT... OUTPUT.
    config : mapping, optional
        Options read by :func:`load_config`.
    """
    merged: dict[str, Any] = dict(config or {})
    paths = [str(p) for p in explicit.get("paths") or []]
    for k, v in explicit.items():
        if k not in ("paths", "config", "command"):
            merged[k] = v
    if len(paths) >= 2:  # INPUT... OUTPUT on the command line
        merged.pop("input", None)
        merged["inputs"], merged["output"] = paths[:-1], paths[-1]
    elif len(paths) == 1:  # one path: the input, with the output from the configuration
        if not merged.get("output"):
            raise OptionError(
                "give INPUT... OUTPUT (at least one input and the output), or 'output' in "
                "the configuration file"
            )
        merged.pop("input", None)
        merged["inputs"] = paths
    if "input" in merged:
        merged.setdefault("inputs", merged.pop("input"))
    inputs = merged.pop("inputs", None)
    if isinstance(inputs, str):
        inputs = [inputs]
    if not inputs:
        raise OptionError("no input: give INPUT... OUTPUT or 'inputs' in the configuration file")
    if not merged.get("output"):
        raise OptionError("no output: give INPUT... OUTPUT or 'output' in the configuration")
    opts = dict(merged.pop("method_options", None) or {})
    for k in ("members", "iterations", "seed", "model"):
        v = merged.pop(k, None)
        if v is not None:
            opts[k] = v
    var = merged.pop("var", None)
    if isinstance(var, str):
        var = [var]
    guide = merged.pop("guide", None)
    if isinstance(guide, str):
        guide = [guide]
    dims = merged.pop("dims", None)
    conserve = merged.pop("conserve", "additive")
    if isinstance(conserve, str) and conserve.lower() == "none":
        conserve = None
    chunks = parse_chunks(merged.pop("chunks", None))
    known = {f.name for f in dataclasses.fields(BatchConfig)}
    extra = sorted(set(merged) - known)
    if extra:
        raise OptionError(f"unknown options {extra}; allowed: {sorted(known)}")
    cfg = BatchConfig(
        inputs=[str(p) for p in inputs],
        output=str(merged.pop("output")),
        var=None if var is None else [str(v) for v in var],
        guide=None if not guide else [str(v) for v in guide],
        dims=None if dims is None else [str(d) for d in dims],
        conserve=conserve,
        method_options=opts,
        chunks=chunks,
        **{k: v for k, v in merged.items() if v is not None},
    )
    return cfg.validate()


# ------------------------------------------------------------------------------------------
# input
# ------------------------------------------------------------------------------------------
def _is_zarr_path(path: str) -> bool:
    p = Path(path)
    if str(path).rstrip("/").endswith(".zarr"):
        return True
    return p.is_dir() and any((p / n).exists() for n in ("zarr.json", ".zgroup", ".zattrs"))


def expand_inputs(patterns: list[str]) -> list[str]:
    """Paths from paths and glob patterns, in order, each pattern's matches sorted."""
    out: list[str] = []
    for pat in patterns:
        if glob.has_magic(pat):
            hits = sorted(glob.glob(pat))
            if not hits:
                raise OptionError(f"input pattern {pat!r} matches no file")
            out.extend(hits)
        else:
            if not Path(pat).exists():
                raise OptionError(f"input {pat!r} does not exist")
            out.append(pat)
    return out


def _unreadable(path: str, error: BaseException) -> InputFileError:
    p = Path(path)
    if p.is_file() and p.stat().st_size == 0:
        detail = "the file is empty: 0 bytes"
    else:
        text = str(error).strip().splitlines()[0] if str(error).strip() else ""
        detail = f"{type(error).__name__}: {text[:160]}"
    return InputFileError(
        f"input {path!r} cannot be read as netCDF or zarr ({detail}); xsr reads netCDF files "
        "(netCDF-3 or netCDF-4/HDF5) and zarr stores. Fix: check the file (ncdump -h), and "
        "download or write it again if it is truncated or corrupt"
    )


def open_input(path: str, *, engine: str | None = None, **kwargs: Any) -> xr.Dataset:
    """:func:`xarray.open_dataset` of one input, an unreadable file raising
    :class:`~xsr.exceptions.InputFileError` (empty, truncated, corrupt, not netCDF/zarr)."""
    import xarray as xr

    try:
        return xr.open_dataset(path, engine=engine, **kwargs)
    except XsrError:
        raise
    except Exception as e:
        raise _unreadable(path, e) from e


def open_guides(specs: list[str]) -> list[xr.DataArray]:
    """The guides named on the command line: ``FILE`` (its variables on a grid) or
    ``FILE:VAR``, each opened lazily (netCDF or zarr).

    Raises
    ------
    OptionError
        A file that does not exist, or a variable that is not in it (naming those that are).
    """
    out: list[xr.DataArray] = []
    for spec in specs:
        path, var = str(spec), None
        if not Path(path).exists() and ":" in path:
            path, var = path.rsplit(":", 1)
        if not Path(path).exists():
            raise OptionError(
                f"--guide {spec!r}: no file {path!r}; give FILE or FILE:VAR (e.g. "
                "--guide elevation.nc:elevation)"
            )
        ds = open_inputs([path])
        if var is not None:
            if var not in ds.data_vars:
                raise OptionError(
                    f"--guide {spec!r}: {var!r} is not a variable of {path!r}; its variables "
                    f"are {[str(n) for n in ds.data_vars]}"
                )
            out.append(ds[var])
            continue
        names = [n for n, v in ds.data_vars.items() if v.ndim >= 2 and v.dtype.kind in "biuf"]
        bounds = {str(v.attrs.get("bounds")) for v in ds.variables.values()}
        names = [n for n in names if str(n) not in bounds]
        if not names:
            raise OptionError(f"--guide {spec!r}: {path!r} holds no 2-D numeric variable")
        out.extend(ds[n] for n in names)
    return out


def open_inputs(paths: list[str], *, var: list[str] | None = None) -> xr.Dataset:
    """Open netCDF files or zarr stores lazily (dask) as one Dataset.

    Several paths are combined along their coordinates (:func:`xarray.open_mfdataset`,
    ``combine="by_coords"``), e.g. one file per day.

    Raises
    ------
    OptionError
        If an input or pattern names no file, or netCDF and zarr are mixed.
    InputFileError
        If an input cannot be read (empty, truncated, corrupt, not netCDF/zarr).
    """
    import xarray as xr

    files = expand_inputs(paths)
    zarr_in = [_is_zarr_path(p) for p in files]
    engine = "zarr" if all(zarr_in) else None
    if any(zarr_in) and not all(zarr_in):
        raise OptionError("inputs mix zarr stores and netCDF files; convert them to one format")
    if len(files) == 1:
        ds = open_input(files[0], engine=engine, chunks={})
    else:
        try:
            ds = xr.open_mfdataset(
                files,
                engine=engine,
                combine="by_coords",
                chunks={},
                data_vars="minimal",
                coords="minimal",
                compat="override",
                join="exact",
            )
        except XsrError:
            raise
        except Exception:
            for f in files:  # name the unreadable file, if one is the cause
                open_input(f, engine=engine, chunks={}).close()
            raise
    if var:
        missing = [v for v in var if v not in ds.data_vars]
        if missing:
            raise OptionError(
                f"--var {missing} not in the input; its variables are {list(ds.data_vars)}"
            )
        from .cfgrid import select_variables

        # with the bounds, grid mappings and cell measures they need (ds[var] drops them)
        ds = select_variables(ds, var)
    return ds


def default_chunks(
    ds: xr.Dataset, ydim: str, xdim: str, *, factor: int, tile_size: int | None, stochastic: bool
) -> dict[str, int]:
    """Chunks of a batch job's input when ``--chunks`` leaves them out.

    One step along every other dimension (time steps are the unit of work).  Along y and
    x the plane stays whole (-1), except, for deterministic methods, on an axis whose output
    exceeds :data:`DEFAULT_FINE_CHUNK` fine cells: chunks of about that many fine cells (at
    least one tile), so that memory stays bounded.  Stochastic methods keep the plane whole
    (tiles across chunk boundaries would be computed twice).
    """
    on_grid = [v for v in ds.data_vars.values() if ydim in v.dims and xdim in v.dims]
    dims = dict.fromkeys(str(d) for v in on_grid for d in v.dims)
    out: dict[str, int] = {d: 1 for d in dims if d not in (ydim, xdim)}
    out[ydim] = out[xdim] = -1
    if stochastic:
        return out
    edge = max(DEFAULT_FINE_CHUNK, tile_size or 0) // factor
    for d in (ydim, xdim):
        if int(ds.sizes[d]) * factor > DEFAULT_FINE_CHUNK:
            out[d] = max(1, edge)
    return out


# ------------------------------------------------------------------------------------------
# output
# ------------------------------------------------------------------------------------------
def zarr_status(store: str | os.PathLike[str]) -> dict[str, Any]:
    """The bookkeeping attributes of a zarr output (``{}`` if there is no such store).

    Returns
    -------
    dict
        ``status`` ("complete" or "incomplete"), ``done`` (indices of the regions written),
        ``total`` (number of regions) and ``config`` (the stored configuration, a dict).
    """
    import zarr

    if not Path(store).exists():
        return {}
    try:
        g = zarr.open_group(str(store), mode="r")
    except Exception:
        return {"status": "unreadable"}
    a: dict[str, Any] = dict(g.attrs)
    cfg = a.get("xsr_config")
    return {
        "status": a.get("xsr_status"),
        "template": a.get("xsr_template") == "written",
        "done": list(a.get("xsr_regions_done", [])),
        "total": a.get("xsr_regions_total"),
        "config": json.loads(cfg) if isinstance(cfg, str) else None,
    }


@dataclass
class _Region:
    index: int
    variables: list[str]
    selection: dict[str, slice]


def _chunk_slices(chunks: tuple[int, ...]) -> list[slice]:
    out, start = [], 0
    for c in chunks:
        out.append(slice(start, start + int(c)))
        start += int(c)
    return out


def _plan_regions(fine: xr.Dataset, ydim: str, xdim: str) -> tuple[list[_Region], list[str]]:
    """Regions of the zarr output and the variables written with the template.

    Data variables on the fine grid are written region by region: blocks of the record
    dimension (the first other dimension of the first such variable, typically time) times
    rows of spatial chunks; variables without the record dimension, by rows only.  The
    others (bounds, small variables) go with the template.
    """
    grid_vars = [str(n) for n, v in fine.data_vars.items() if ydim in v.dims and v.chunks]
    record = None
    for n in grid_vars:
        others = [str(d) for d in fine[n].dims if d not in (ydim, xdim)]
        if others:
            record = others[0]
            break
    regions: list[_Region] = []
    groups: dict[tuple[str, ...], list[str]] = {}
    for n in grid_vars:
        key: tuple[str, ...] = (
            (record, ydim) if record is not None and record in fine[n].dims else (ydim,)
        )
        groups.setdefault(key, []).append(n)
    for key, names in groups.items():
        chunks = fine[names[0]].chunksizes
        ys = _chunk_slices(chunks[ydim])
        rs = _chunk_slices(chunks[key[0]]) if len(key) == 2 else [None]
        for r in rs:
            for y in ys:
                sel = {ydim: y} if r is None else {key[0]: r, ydim: y}
                regions.append(_Region(len(regions), names, sel))
    small = [str(n) for n in fine.data_vars if n not in grid_vars]
    return regions, small


def _uniform_chunks(fine: xr.Dataset, ydim: str, xdim: str) -> xr.Dataset:
    """Rechunk grid variables to uniform chunks (zarr's chunk grid), first chunk's size."""
    out = {}
    for n, v in fine.data_vars.items():
        if v.chunks is None:
            continue
        want = {d: c[0] for d, c in v.chunksizes.items()}
        if any(len(set(c[:-1])) > 1 or c[-1] > c[0] for c in v.chunksizes.values()):
            v = v.chunk(want)
        v.encoding = {"chunks": tuple(int(v.chunksizes[d][0]) for d in v.dims)}
        out[n] = v
    return fine.assign(out)


def _clean_encoding(fine: xr.Dataset) -> xr.Dataset:
    """Drop netCDF encodings that zarr cannot take (compression settings, chunk sizes).

    The ``_FillValue`` of coordinates and bounds variables is kept (the input's choice;
    without one they are written with none, :func:`xsr._io.cf_encoding`).
    """
    fine = fine.copy()
    bounds = {str(v.attrs["bounds"]) for v in fine.variables.values() if "bounds" in v.attrs}
    coordinates = {str(n) for n in fine.coords} | bounds
    for n, v in fine.variables.items():
        keep = {k: v.encoding[k] for k in ("units", "calendar", "dtype") if k in v.encoding}
        if "dtype" in keep and str(keep["dtype"]).startswith(("int", "uint")):
            keep.pop("dtype")  # packed integers: the float data are written as they are
        elif str(n) in coordinates and "_FillValue" in v.encoding:
            keep["_FillValue"] = v.encoding["_FillValue"]
        v.encoding = keep
    return fine


@contextlib.contextmanager
def _quiet_zarr() -> Any:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Cc]onsolidated metadata.*")
        yield


def _set_attrs(store: str, **attrs: Any) -> None:
    import zarr

    with _quiet_zarr():
        g = zarr.open_group(store, mode="r+")
        g.attrs.update(attrs)


def _run_regions(
    regions: list[_Region],
    task: Callable[[_Region], Any],
    on_done: Callable[[list[int]], None],
    *,
    client: Any,
    progress: Any,
) -> None:
    """Compute the region writes, recording each once it is on disk.

    Only this (driver) process writes the bookkeeping.  On a distributed cluster regions are
    submitted in groups of four per worker thread (one graph each, to keep the scheduler's
    overhead per region small), two groups ahead, and recorded one by one as they finish;
    locally, groups of four regions per core are computed together with the current dask
    scheduler and recorded together.
    """
    import dask

    pending = list(regions)
    if client is not None:
        from distributed import as_completed

        group = REGIONS_PER_GROUP or max(4, 4 * sum(client.nthreads().values()))
        index_of: dict[Any, int] = {}
        ac = as_completed()

        def submit() -> None:
            part = pending[:group]
            del pending[:group]
            if not part:
                return
            futures = client.compute([task(r) for r in part])
            for r, fut in zip(part, futures):
                index_of[fut.key] = r.index
                ac.add(fut)

        submit()
        submit()
        for finished, fut in enumerate(ac, start=1):
            fut.result()  # raises the task's error here
            on_done([index_of.pop(fut.key)])
            progress.update(1)
            if finished % group == 0:
                submit()
        return
    group = REGIONS_PER_GROUP or max(1, 4 * (os.cpu_count() or 1))
    for s in range(0, len(pending), group):
        part = pending[s : s + group]
        dask.compute(*[task(r) for r in part])
        on_done([r.index for r in part])
        progress.update(len(part))


def _check_same_config(path: str, marker: _io.Marker, cfg: BatchConfig) -> None:
    """Refuse to resume an output written with settings that change the result."""
    stored = marker.config
    mine = json.loads(json.dumps(cfg.result_key()))  # as stored (tuples become lists)
    diff = sorted(k for k in mine if stored.get(k) != mine[k])
    if diff:
        detail = "; ".join(f"{k}: stored {stored.get(k)!r}, now {mine[k]!r}" for k in diff)
        raise ResumeError(
            f"cannot resume {path!r}: it was written with other values of {diff} ({detail}); "
            "rerun with the stored values to finish it, or with --overwrite instead of "
            "--resume to start again"
        )


def _plan_output(cfg: BatchConfig) -> str:
    """What to do with the output (its lock held): ``"new"``, ``"replace"``, ``"resume"``
    or ``"done"`` (finished before with the same settings), after the checks of the module
    documentation (*Output safety*)."""
    out = Path(cfg.output)
    if cfg.is_zarr:
        marker = _io.check_store(out)  # refuses what xsr did not write
        if marker is None:
            return "new"
        if cfg.resume:
            _check_same_config(cfg.output, marker, cfg)
            return "done" if marker.status == _COMPLETE else "resume"
        if cfg.overwrite:
            return "replace"
        raise OutputExistsError(
            f"output {cfg.output!r} exists; pass --resume to finish an interrupted job, or "
            "--overwrite to replace it"
        )
    exists = out.exists() or out.is_symlink()
    if exists and cfg.resume and out.is_file():
        nc_marker = _io.read_marker(out)
        if nc_marker is None:
            raise ResumeError(
                f"cannot resume {cfg.output!r}: the file exists but no xsr batch job wrote it "
                "(no xsr_config attribute, or unreadable), so there is nothing to resume; "
                "choose another output, or pass --overwrite instead of --resume to replace it"
            )
        _check_same_config(cfg.output, nc_marker, cfg)
        return "done"
    _io.check_target(out, overwrite=cfg.overwrite)  # never a folder; a file only if allowed
    return "replace" if exists else "new"


def _write_zarr(
    fine: xr.Dataset, cfg: BatchConfig, ydim: str, xdim: str, client: Any, plan: str
) -> str:
    """Write (or resume writing) the zarr output region by region; returns a summary line.

    ``plan`` comes from :func:`_plan_output` (``"new"``, ``"replace"`` or ``"resume"``).
    """
    store = cfg.output
    fine = _uniform_chunks(_clean_encoding(fine), ydim, xdim)
    regions, small = _plan_regions(fine, ydim, xdim)
    fresh = True
    done: set[int] = set()
    if plan == "resume":
        status = zarr_status(store)
        if status.get("template"):
            if status.get("total") != len(regions):
                raise ResumeError(
                    f"cannot resume {store!r}: it has {status.get('total')} regions, this job "
                    f"{len(regions)} (the input changed?); rerun on the same input, or with "
                    "--overwrite instead of --resume to start again"
                )
            done = {int(i) for i in status.get("done", [])}
            fresh = False
    if fresh and Path(store).exists():
        shutil.rmtree(store)  # an xsr store (or an empty folder): _plan_output checked
    if fresh:
        template = fine.copy()
        template.attrs = {
            **fine.attrs,
            "xsr_status": _INCOMPLETE,
            "xsr_config": cfg.to_json(),
            "xsr_regions_total": len(regions),
            "xsr_regions_done": [],
        }
        # small variables are written now, with the coordinates
        template = template.assign({n: template[n].compute() for n in small})
        with _quiet_zarr():
            template.to_zarr(store, mode="w", compute=False, consolidated=True)
        _set_attrs(store, xsr_template="written")

    todo = [r for r in regions if r.index not in done]

    def task(r: _Region) -> Any:
        # the lazy write of one region (built when it is about to run)
        sub = fine[r.variables].isel(r.selection)
        sub = sub.drop_vars(list(sub.coords))
        sub.attrs = {}
        with _quiet_zarr():
            return sub.to_zarr(
                store, region=r.selection, mode="r+", compute=False, consolidated=False
            )

    def on_done(idx: list[int]) -> None:
        done.update(idx)
        _set_attrs(store, xsr_regions_done=sorted(done))

    from tqdm.auto import tqdm

    with tqdm(
        total=len(regions),
        initial=len(regions) - len(todo),
        desc=f"xsr -> {Path(store).name}",
        unit="region",
        disable=not cfg.progress,
        file=sys.stderr,
    ) as bar:
        _run_regions(todo, task, on_done, client=client, progress=bar)
    _set_attrs(store, xsr_status=_COMPLETE)
    skipped = len(regions) - len(todo)
    return f"wrote {len(todo)} of {len(regions)} regions to {store}" + (
        f" ({skipped} written before)" if skipped else ""
    )


def _write_netcdf(fine: xr.Dataset, cfg: BatchConfig, client: Any) -> str:
    out = Path(cfg.output)
    fine = fine.copy()
    fine.attrs = {**fine.attrs, "xsr_config": cfg.to_json(), "xsr_status": _COMPLETE}
    _io.write_netcdf(_clean_encoding(fine), out, overwrite=cfg.overwrite)
    return f"wrote {out}"


def _client(address: str | None) -> Any:
    if not address:
        return None
    try:
        from distributed import Client
    except ImportError:  # pragma: no cover
        raise OptionError(
            "--scheduler needs dask.distributed: pip install 'xsr[distributed]'"
        ) from None
    if Path(address).is_file():
        return Client(scheduler_file=address)
    return Client(address)


def _check(fine_path: str, ds: xr.Dataset, cfg: BatchConfig, dims: Any) -> float:
    """Largest relative conservation error of the written output (read back, chunk-wise)."""
    import numpy as np
    import xarray as xr

    from . import api

    out = xr.open_zarr(fine_path) if cfg.is_zarr else xr.open_dataset(fine_path, chunks={})
    back = api.coarsen(out, factor=cfg.factor, dims=dims)
    worst = 0.0
    for n in api.field_variables(ds, dims):
        v = ds[n]
        if n not in back.data_vars:
            continue
        b = back[n].transpose(*v.dims)
        scale = float(abs(v).max().compute())
        # by position: label alignment would skip any cell whose coordinates moved
        err = float(abs(b.variable - v.variable).max().compute())
        if scale > 0 and np.isfinite(err):
            worst = max(worst, err / scale)
    return worst


def run(cfg: BatchConfig, *, out: Any = None) -> int:
    """Run a batch job: open, downscale lazily, write; returns the exit status (0).

    Before anything is computed: the configuration is validated
    (:meth:`BatchConfig.validate`), the output's folder checked, the output's lock taken
    (held until the end) and the output checked (see *Output safety* in the module
    documentation).

    Parameters
    ----------
    cfg : BatchConfig
    out : file-like, optional
        Where to print the summary (default stdout).

    Raises
    ------
    LockError
        If another run is writing the same output.
    ResumeError
        If ``resume`` meets an output written with other settings, or not by xsr.
    OutputError
        If the output is something that xsr may not replace, or cannot be written.
    """
    stream = out if out is not None else sys.stdout
    t0 = time.perf_counter()
    cfg.validate()
    _io.check_folder(cfg.output)
    # SIGTERM/SIGHUP unwind the run (lock released, temporaries removed), then end it
    with _io.SignalGuard(sigint=False), _io.output_lock(cfg.output):
        plan = _plan_output(cfg)
        if plan == "done":
            print(
                f"xsr downscale: {len(expand_inputs(cfg.inputs))} input(s) -> {cfg.output}",
                file=stream,
            )
            print(
                f"  {cfg.output} is complete already (same settings): nothing to do",
                file=stream,
            )
            return 0
        return _run(cfg, plan, stream, t0)


def _run(cfg: BatchConfig, plan: str, stream: Any, t0: float) -> int:
    from . import api
    from .methods.registry import get_method

    method = get_method(cfg.method, **cfg.method_options)
    ds = open_inputs(cfg.inputs, var=cfg.var)
    dims = tuple(cfg.dims) if cfg.dims else None
    ydim, xdim = api.spatial_dims(ds, dims)  # type: ignore[arg-type]
    chunks = default_chunks(
        ds,
        ydim,
        xdim,
        factor=cfg.factor,
        tile_size=cfg.tile_size,
        stochastic=bool(getattr(method, "stochastic", False)),
    )
    chunks.update(cfg.chunks)
    unknown = [d for d in cfg.chunks if d not in ds.dims]
    if unknown:
        raise OptionError(f"--chunks names {unknown}, not dimensions of the input {list(ds.dims)}")
    grid_vars = [n for n, v in ds.data_vars.items() if ydim in v.dims and xdim in v.dims]
    ds = ds.assign(
        {n: ds[n].chunk({d: c for d, c in chunks.items() if d in ds[n].dims}) for n in grid_vars}
    )
    ds = ds.assign({n: ds[n].load() for n in ds.data_vars if n not in grid_vars})
    bounds = None
    if cfg.conserve == "bounded":
        bounds = (cfg.lower, cfg.upper)
    elif cfg.lower is not None or cfg.upper is not None:
        raise OptionError("--lower/--upper are only used with --conserve bounded")
    client = _client(cfg.scheduler)
    try:
        fine = api.downscale(
            ds,
            factor=cfg.factor,
            method=method,
            conserve=cfg.conserve,  # type: ignore[arg-type]
            bounds=bounds,
            dims=dims,  # type: ignore[arg-type]
            device=cfg.device,
            tile_size=cfg.tile_size,
            guide=open_guides(cfg.guide) if cfg.guide else None,
        )
        assert not isinstance(fine, type(None))
        fine.attrs["xsr_config"] = cfg.to_json()
        if cfg.is_zarr:
            line = _write_zarr(fine, cfg, ydim, xdim, client, plan)  # type: ignore[arg-type]
        else:
            line = _write_netcdf(fine, cfg, client)  # type: ignore[arg-type]
        print(
            f"xsr downscale: {len(expand_inputs(cfg.inputs))} input(s) -> {cfg.output}", file=stream
        )
        print(
            f"  method={cfg.method} factor={cfg.factor} conserve={cfg.conserve} "
            f"tile_size={cfg.tile_size} chunks={chunks}",
            file=stream,
        )
        print(
            f"  grid ({ydim}, {xdim}): {ds.sizes[ydim]} x {ds.sizes[xdim]} -> "
            f"{ds.sizes[ydim] * cfg.factor} x {ds.sizes[xdim] * cfg.factor}",
            file=stream,
        )
        print(f"  {line}", file=stream)
        if cfg.check:
            err = _check(cfg.output, ds, cfg, dims)
            print(f"  max relative conservation error {err:.2e}", file=stream)
        print(f"  time: {time.perf_counter() - t0:.2f} s", file=stream)
    finally:
        if client is not None:
            client.close()
    return 0
