"""Safe output: every file xsr writes is complete or absent, never half-written, never lost.

One mechanism for every writer of xsr: ``xsr downscale`` and its batch jobs
(:mod:`xsr.batch`), ``xsr train``, :meth:`TrainedModel.save <xsr.training.TrainedModel.save>`
and its checkpoints, ``xsr distill`` and ``xsr demo``.

Atomic files (:func:`atomic_write`, :func:`write_netcdf`, :func:`write_text`)
    The content goes to a temporary file beside the target, named
    ``.NAME.xsr-HOST-PID-RANDOM.tmp`` (:func:`temp_prefix`), which is flushed to disk and
    renamed over the target with :func:`os.replace`.  Readers see the previous file or the
    new one, never a part; a failing writer leaves the previous file untouched and removes
    its temporary.

Permissions
    The temporary is created private (mode 0600, :func:`tempfile.mkstemp`) and gets, just
    before the rename, the mode that a plain ``open(path, "w")`` would have given the file:
    the mode of the file it replaces (``open`` truncates and keeps it), else
    ``0o666 & ~umask``.

Signals
    While a file is written (main thread only: Python runs signal handlers there), a SIGINT,
    SIGTERM or SIGHUP whose handler would end the process without clean-up (``SIG_DFL``, or
    Python's own SIGINT handler) raises instead; the temporary is removed, the previous
    handlers are restored, and the signal is delivered again: ``KeyboardInterrupt`` for
    Python's SIGINT handler, else the default action (the process ends with the conventional
    status, -N for a child of Python, 128+N in a shell).  Repeated signals during the clean-up
    are dropped.  Handlers installed by the program itself, and ignored signals, are left
    alone (:class:`SignalGuard`).  Batch jobs hold such a guard for SIGTERM and SIGHUP during
    their whole run, so that their lock is released too.

Stale temporaries
    SIGKILL (or a power cut) cannot be caught and leaves the temporary.  The next write to the
    same target (:func:`remove_stale_temps`) removes the temporaries *of that target* whose
    name says they were made on this host by a process that no longer runs
    (``os.kill(pid, 0)``); never another live process's temporary, never other files.

Ctrl-C during a netCDF write
    *Investigation.*  A SIGINT sent to a process in ``xarray.Dataset.to_netcdf`` of a 200 MB
    dataset (netCDF4 engine) hangs it for ever, with plain xarray as with xsr: the
    ``KeyboardInterrupt`` lands while xarray holds its process-wide (non-reentrant) HDF5
    lock, and xarray's clean-up (``CachingFileManager.close``) then waits for that lock.
    *Choice.*  :func:`write_netcdf` runs ``to_netcdf`` in a worker thread, and the main thread
    only waits (interruptibly): signals are delivered to the main thread, so the
    ``KeyboardInterrupt`` never lands inside xarray's locked sections.  On Ctrl-C the main
    thread asks the worker to stop (a dask callback raises before the next chunk; data held
    in memory is written in chunks of at most :data:`WRITE_CHUNK_BYTES` for this, which also
    lets the main thread run between chunks) and waits up to :data:`CANCEL_GRACE` seconds for
    it to close the file and for the chunks under way to finish (xarray would otherwise
    reopen, that is re-create, the file to write them); then it removes the temporary and
    re-raises.  A writer that cannot be stopped in time (a ``dask.distributed``
    computation) is abandoned as a daemon thread; it removes its temporary when it ends.
    A child process was the other candidate: it would have to receive the data (a copy of
    in-memory data, a pickled graph computed away from the caller's scheduler), and
    ``fork`` is unsafe after dask's and torch's thread pools have started.  Measured
    (200 MB, in memory or lazy, on 2 cores): the process ends 0.2 to 0.5 s after the Ctrl-C
    (0.1 s after a SIGTERM), with neither output nor temporary left
    (``tests/test_io.py``).

Targets (:func:`check_target`, :func:`check_folder`)
    Checked before any long computation: the folder exists and can be written to (a real
    probe file, so read-only file systems and ACLs are seen, also by root); a file output is
    never a directory or a special file; an existing file is replaced only with
    ``overwrite``.

What xsr may replace or resume (:func:`read_marker`, :func:`check_store`)
    xsr marks its batch outputs with the attributes ``xsr_config`` (JSON) and
    ``xsr_status``: a zarr store's root group, a netCDF file's global attributes.  Rules:

    * a *file* output (netCDF, model, report): ``overwrite`` replaces an existing regular
      file, whoever wrote it (the documented behaviour of ``--overwrite``); a directory or
      special file at that path is refused, with or without ``overwrite``;
    * a *zarr store* output: only a store that carries xsr's marker, or an empty directory,
      may be replaced or resumed; a file, or any other directory, is refused.

Locks (:func:`output_lock`)
    A batch job holds ``.NAME.xsr-lock`` beside its output for the whole run: a file that
    names the holder (PID, host, start time, command), locked with ``flock`` (released by
    the kernel when the holder dies, so a lock left by a killed run is free).  A second run
    on the same output fails at once with :class:`~xsr.exceptions.LockError` naming the
    first.  Where ``flock`` is unavailable (some network file systems), the file is created
    with ``O_CREAT | O_EXCL`` instead and counts as stale when its PID is dead on this host.

CF hygiene (:func:`cf_encoding`)
    Coordinates and bounds variables are written without ``_FillValue`` (xarray adds one to
    every float variable; CF does not allow missing values there) unless their encoding
    already has one; data variables keep theirs.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import json
import os
import re
import signal
import socket
import stat
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .exceptions import LockError, OutputError, OutputExistsError, OutputFolderError

if TYPE_CHECKING:
    import xarray as xr

__all__ = [
    "CANCEL_GRACE",
    "WRITE_CHUNK_BYTES",
    "Marker",
    "SignalGuard",
    "atomic_write",
    "cf_encoding",
    "check_folder",
    "check_store",
    "check_target",
    "file_mode",
    "lock_path",
    "output_lock",
    "read_marker",
    "remove_stale_temps",
    "temp_prefix",
    "write_netcdf",
    "write_text",
]

#: Seconds a cancelled netCDF writer gets to close its file before it is abandoned.
CANCEL_GRACE = 5.0

#: In-memory data variables are written in chunks of at most about this many bytes (points
#: where a cancelled write stops, and where the waiting main thread may run).
WRITE_CHUNK_BYTES = 32 * 2**20

_TEMP_SUFFIX = ".tmp"
_LOCK_SUFFIX = ".xsr-lock"
_HOST: str | None = None


# ------------------------------------------------------------------------------------------
# names, processes, modes
# ------------------------------------------------------------------------------------------
def _host() -> str:
    """This host's name, reduced to the characters allowed in a file name."""
    global _HOST
    if _HOST is None:
        _HOST = re.sub(r"[^A-Za-z0-9.]", "_", socket.gethostname()) or "localhost"
    return _HOST


def _folder(out: Path) -> Path:
    return out.parent if str(out.parent) else Path(".")


def temp_prefix(path: str | os.PathLike[str]) -> str:
    """Start of the names of this process's temporary files for ``path``.

    ``.NAME.xsr-HOST-PID-``; :func:`tempfile.mkstemp` adds random characters and ``.tmp``.
    """
    return f".{Path(path).name}.xsr-{_host()}-{os.getpid()}-"


def _temp_pattern(out: Path) -> re.Pattern[str]:
    # the random part of mkstemp has no '-': host and PID are unambiguous
    return re.compile(
        rf"^\.{re.escape(out.name)}\.xsr-(?P<host>.+)-(?P<pid>\d+)-[A-Za-z0-9_]+"
        rf"{re.escape(_TEMP_SUFFIX)}$"
    )


def _pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this host (in doubt: yes)."""
    if pid <= 0 or os.name == "nt":  # on Windows os.kill(pid, 0) would end the process
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it runs, as another user
        return True
    return True


def _unlink(path: str | os.PathLike[str]) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def remove_stale_temps(path: str | os.PathLike[str]) -> list[Path]:
    """Remove the temporaries of ``path`` left by dead xsr processes of this host.

    Only files named like xsr's temporaries *for this target* (:func:`temp_prefix`), made on
    this host by a process that no longer runs, are removed (a SIGKILL'd write leaves one).

    Returns
    -------
    list of Path
        The files removed.
    """
    out = Path(path)
    folder = _folder(out)
    pattern = _temp_pattern(out)
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    for entry in entries:
        m = pattern.match(entry.name)
        if m is None or m["host"] != _host() or _pid_alive(int(m["pid"])):
            continue
        with contextlib.suppress(FileNotFoundError, IsADirectoryError, PermissionError):
            os.unlink(entry.path)
            removed.append(Path(entry.path))
    return removed


def _umask() -> int:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # pragma: no cover - systems without /proc/self/status
    os.umask(mask)  # pragma: no cover
    return mask  # pragma: no cover


def file_mode(path: str | os.PathLike[str]) -> int:
    """The permission bits ``open(path, "w")`` gives: those of the existing file, else
    ``0o666 & ~umask``."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return 0o666 & ~_umask()


def _fsync(path: str | os.PathLike[str], *, folder: bool = False) -> None:
    """Flush a file (or a folder's entries) to disk; best effort."""
    try:
        fd = os.open(path, os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if folder else 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# ------------------------------------------------------------------------------------------
# targets
# ------------------------------------------------------------------------------------------
def _describe(path: Path) -> str:
    if path.is_symlink() and not path.exists():
        return "a broken symbolic link"
    if path.is_dir():
        try:
            n = len(os.listdir(path))
        except OSError:
            n = -1
        if n < 0:
            return "a folder"
        return "an empty folder" if n == 0 else f"a folder ({n} entr{'y' if n == 1 else 'ies'})"
    if path.is_file():
        return f"a file ({path.stat().st_size} bytes)"
    return "a special file (device, pipe or socket)"


def check_folder(path: str | os.PathLike[str]) -> Path:
    """The folder of ``path``, if a file can be created in it.

    Tested by creating (and removing) a temporary file there, so that read-only file
    systems, ACLs and quotas are seen as well as the permission bits.

    Raises
    ------
    OutputFolderError
        If the folder does not exist, is not a folder, or cannot be written to.
    """
    out = Path(path)
    folder = _folder(out)
    if not folder.exists():
        raise OutputFolderError(
            f"output folder {str(folder)!r} (of {str(out)!r}) does not exist; create it first "
            f"(mkdir -p {str(folder)!r}) or write to an existing folder"
        )
    if not folder.is_dir():
        raise OutputFolderError(
            f"{str(folder)!r} (the folder of the output {str(out)!r}) is {_describe(folder)}, "
            "not a folder; choose an output inside an existing folder"
        )
    try:
        fd, probe = tempfile.mkstemp(prefix=temp_prefix(out), suffix=_TEMP_SUFFIX, dir=folder)
    except OSError as e:
        raise OutputFolderError(
            f"cannot write the output {str(out)!r}: its folder {str(folder)!r} is not "
            f"writable ({e.strerror or e}); write it to a folder you may write to, or change "
            f"the folder's permissions (chmod u+w {str(folder)!r})"
        ) from None
    os.close(fd)
    _unlink(probe)
    return folder


def check_target(path: str | os.PathLike[str], *, overwrite: bool) -> Path:
    """``path`` as a :class:`~pathlib.Path`, if a file may be written there.

    Call it before long work: a file output is refused when ``path`` is a directory or a
    special file (whatever ``overwrite`` says), when it exists and ``overwrite`` is False,
    or when its folder is missing or not writable (:func:`check_folder`).  An existing
    regular file is replaced with ``overwrite``, whoever wrote it.

    Parameters
    ----------
    path : str or path-like
    overwrite : bool
        Whether an existing file may be replaced.

    Raises
    ------
    OutputError
        If ``path`` is a directory or a special file.
    OutputExistsError
        If ``path`` is a file and ``overwrite`` is False.
    OutputFolderError
        If the folder of ``path`` does not exist or is not writable.
    """
    out = Path(path)
    if out.exists() or out.is_symlink():
        if out.is_dir():
            raise OutputError(
                f"output {str(out)!r} is {_describe(out)}: xsr writes a file there and never "
                "replaces a folder, even with --overwrite; give a file name (e.g. "
                f"{str(out / 'result.nc')!r}) or remove the folder yourself"
            )
        if not out.is_file():
            raise OutputError(
                f"output {str(out)!r} is {_describe(out)}, not a regular file; xsr does not "
                "replace it; choose another output name"
            )
        if not overwrite:
            raise OutputExistsError(
                f"output file {str(out)!r} exists; pass --overwrite to replace it, or choose "
                "another name"
            )
    check_folder(out)
    return out


# ------------------------------------------------------------------------------------------
# signals and interruptible writers
# ------------------------------------------------------------------------------------------
class _Signalled(BaseException):
    """A terminating signal arrived while a file was being written."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"signal {signum}")
        self.signum = signum


class _Cancelled(Exception):
    """Raised in a netCDF writer that the main thread cancelled."""


_TERMINATING = tuple(getattr(signal, n) for n in ("SIGTERM", "SIGHUP") if hasattr(signal, n))


class SignalGuard:
    """Make terminating signals raise (once) while active, then deliver them again.

    Use it as a context manager around work whose clean-up (``finally`` blocks, removal of
    temporaries, release of locks) must run also when the process is told to stop.  Only
    signals whose handler would end the process without clean-up are taken over: ``SIG_DFL``
    of SIGTERM and SIGHUP (and of SIGINT), and, with ``sigint=True``, Python's
    ``default_int_handler`` (which raises ``KeyboardInterrupt`` at any point, also during
    clean-up: while the guard is active, signals after the first are dropped).  A SIGTERM or SIGHUP
    raises a private ``BaseException``; on leaving the outermost guard that took the signal
    over, the previous handlers are restored and the signal is delivered again, so the process
    ends with the conventional status.  Only in the main thread; elsewhere it does nothing.

    Parameters
    ----------
    sigint : bool, default True
        Also take over SIGINT (held back after the first one).  Leave it False around long
        work, so that a second Ctrl-C stays effective.
    """

    def __init__(self, *, sigint: bool = True) -> None:
        self.signals = ((signal.SIGINT,) if sigint else ()) + _TERMINATING
        self.previous: dict[int, Any] = {}
        self.received: int | None = None

    def __enter__(self) -> SignalGuard:
        if threading.current_thread() is not threading.main_thread():
            return self
        for sig in self.signals:
            h = signal.getsignal(sig)
            if h is signal.SIG_DFL or (sig == signal.SIGINT and h is signal.default_int_handler):
                self.previous[sig] = h
                signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.received is not None:
            return  # clean-up under way: later signals are dropped, the first one acts
        self.received = signum
        if self.previous.get(signum) is signal.default_int_handler:
            raise KeyboardInterrupt
        raise _Signalled(signum)

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        for sig, h in self.previous.items():
            signal.signal(sig, h)
        if isinstance(exc, _Signalled) and exc.signum in self.previous:
            # the default action: the process ends with the conventional status
            sys.stderr.flush()
            signal.raise_signal(exc.signum)
            raise SystemExit(128 + exc.signum)  # pragma: no cover - not reached


@contextlib.contextmanager
def _cancel_point(cancel: threading.Event) -> Iterator[None]:
    """Make the dask computations of this thread raise :class:`_Cancelled` before their
    next task once ``cancel`` is set."""
    try:
        from dask.callbacks import Callback
    except ImportError:  # pragma: no cover - dask is a dependency
        yield
        return
    me = threading.get_ident()

    def pretask(key: Any, dsk: Any, state: Any) -> None:
        if cancel.is_set() and threading.get_ident() == me:
            raise _Cancelled("the write was interrupted")

    with Callback(pretask=pretask):
        yield


@contextlib.contextmanager
def _own_dask_pool() -> Iterator[None]:
    """Run the threaded dask computations started here in a pool of their own, shut down
    (waiting for the tasks under way) on exit.

    After a cancel, tasks already running still write their chunk, and xarray reopens the
    closed file to do so (mode ``"a"``, which creates it again); waiting for them before
    the temporary is removed keeps it removed.  Other schedulers (a ``dask.distributed``
    client, ``"synchronous"``...) are left as they are.
    """
    try:
        import dask
        import dask.threaded
        from dask.base import get_scheduler

        threaded = get_scheduler() in (None, dask.threaded.get)
    except Exception:  # pragma: no cover - dask is a dependency
        threaded = False
    if not threaded:
        yield
        return
    from concurrent.futures import ThreadPoolExecutor

    executor = getattr(dask.threaded, "ContextAwareThreadPoolExecutor", ThreadPoolExecutor)
    workers = dask.config.get("num_workers", None) or os.cpu_count() or 1
    pool = executor(int(workers), thread_name_prefix="xsr-writer-dask")
    try:
        with dask.config.set(pool=pool):
            yield
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _run_interruptibly(work: Callable[[], object], on_cancel: Callable[[], None]) -> None:
    """Run ``work()`` in a worker thread while the main thread waits interruptibly.

    An exception in the waiting main thread (``KeyboardInterrupt``, a terminating signal)
    cancels the worker (:func:`_cancel_point`), waits up to :data:`CANCEL_GRACE` s for it to
    end and is re-raised; the worker calls ``on_cancel()`` when it ends after a cancel.
    Called outside the main thread, ``work()`` runs in the caller's thread.
    """
    if threading.current_thread() is not threading.main_thread():
        work()
        return
    done = threading.Event()
    cancel = threading.Event()
    errors: list[BaseException] = []

    def target() -> None:
        try:
            with _own_dask_pool(), _cancel_point(cancel):
                work()
        except BaseException as e:
            errors.append(e)
        finally:
            if cancel.is_set():
                on_cancel()
            done.set()

    worker = threading.Thread(target=target, name="xsr-writer", daemon=True)
    worker.start()
    try:
        while not done.wait(0.05):
            pass
    except BaseException:
        cancel.set()
        done.wait(CANCEL_GRACE)  # else abandoned: it removes its temporary when it ends
        raise
    if errors:
        raise errors[0]


# ------------------------------------------------------------------------------------------
# atomic files
# ------------------------------------------------------------------------------------------
def atomic_write(
    path: str | os.PathLike[str],
    write: Callable[[str], object],
    *,
    overwrite: bool = True,
    interruptible: bool = False,
) -> Path:
    """Write a file all at once: ``write(tmp)`` on a temporary beside ``path``, then rename.

    The target is checked first (:func:`check_target`); temporaries of ``path`` left by dead
    processes are removed (:func:`remove_stale_temps`).  A failing or interrupted ``write``
    (exception, SIGINT, SIGTERM, SIGHUP) leaves no temporary and the previous file, if any,
    untouched.  The new file gets the permissions of :func:`file_mode`.

    Parameters
    ----------
    path : str or path-like
        The file to write.
    write : callable
        ``write(tmp)`` writes the whole content to the file named ``tmp`` (which exists,
        empty, mode 0600).
    overwrite : bool, default True
        Whether an existing file may be replaced.
    interruptible : bool, default False
        Run ``write`` in a worker thread that the main thread abandons on Ctrl-C (for
        writers that must not be interrupted themselves, such as ``to_netcdf``).

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    OutputError, OutputExistsError, OutputFolderError
        See :func:`check_target`.
    """
    out = check_target(path, overwrite=overwrite)
    folder = _folder(out)
    remove_stale_temps(out)
    mode = file_mode(out)
    tmp: str | None = None
    with SignalGuard():
        try:
            fd, tmp = tempfile.mkstemp(prefix=temp_prefix(out), suffix=_TEMP_SUFFIX, dir=folder)
            os.close(fd)
            name = tmp
            if interruptible:
                _run_interruptibly(lambda: write(name), lambda: _unlink(name))
            else:
                write(tmp)
            os.chmod(tmp, mode)
            _fsync(tmp)
            os.replace(tmp, out)
        except BaseException:
            if tmp is not None:
                _unlink(tmp)
            raise
    _fsync(folder, folder=True)
    return out


def write_text(path: str | os.PathLike[str], text: str, *, overwrite: bool = True) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically (:func:`atomic_write`)."""
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text), overwrite=overwrite)


def cf_encoding(ds: xr.Dataset) -> xr.Dataset:
    """``ds`` (a shallow copy) with ``_FillValue: None`` in the encoding of its float
    coordinates and bounds variables that have no ``_FillValue`` in their encoding.

    Bounds variables are those named by a ``bounds`` attribute.  xarray would otherwise write
    ``_FillValue = NaN`` on them (its default for floats), which CF does not allow for
    coordinates; data variables keep xarray's default.
    """
    out = ds.copy(deep=False)
    names = {str(n) for n in out.coords}
    for v in out.variables.values():
        b = v.attrs.get("bounds")
        if isinstance(b, str):
            names.update(b.split())
    for n in names:
        if n not in out.variables:
            continue
        var = out.variables[n]
        if var.dtype.kind in "fc" and "_FillValue" not in var.encoding:
            var.encoding = {**var.encoding, "_FillValue": None}
    return out


def _in_chunks(ds: xr.Dataset) -> xr.Dataset:
    """``ds`` with its numeric in-memory data variables as dask arrays, in chunks of at most
    about :data:`WRITE_CHUNK_BYTES` along their first dimension: each chunk written is a
    point where a cancelled write stops (:func:`_cancel_point`)."""
    changed = {}
    for n, v in ds.data_vars.items():
        if v.chunks is not None or v.ndim == 0 or v.dtype.kind not in "biufc":
            continue
        first = v.dims[0]
        slab = max(1, v.nbytes // max(1, v.sizes[first]))
        changed[n] = v.chunk({first: max(1, WRITE_CHUNK_BYTES // slab)})
    return ds.assign(changed) if changed else ds


def write_netcdf(ds: xr.Dataset, path: str | os.PathLike[str], *, overwrite: bool) -> Path:
    """Write ``ds`` to the netCDF file ``path`` atomically; Ctrl-C stops it at once.

    :func:`atomic_write` with ``to_netcdf`` run in a worker thread (see the module
    documentation: a Ctrl-C inside ``to_netcdf`` hangs the process), and with
    :func:`cf_encoding` (no ``_FillValue`` on coordinates and bounds).

    Parameters
    ----------
    ds : xarray.Dataset
        Data in memory or lazy (dask): computed chunk by chunk while it is written.
    path : str or path-like
    overwrite : bool
        Whether an existing file may be replaced.

    Returns
    -------
    Path

    Raises
    ------
    OutputError, OutputExistsError, OutputFolderError
        See :func:`check_target`.
    """
    data = _in_chunks(cf_encoding(ds))
    return atomic_write(path, data.to_netcdf, overwrite=overwrite, interruptible=True)


# ------------------------------------------------------------------------------------------
# xsr's outputs
# ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Marker:
    """What xsr recorded in one of its batch outputs.

    Attributes
    ----------
    kind : {"zarr", "netcdf"}
    status : str or None
        ``"complete"`` or ``"incomplete"`` (``xsr_status``).
    config : dict
        The job's configuration (``xsr_config``, decoded).
    attrs : dict
        Every ``xsr_*`` attribute.
    """

    kind: str
    status: str | None
    config: dict[str, Any]
    attrs: dict[str, Any] = field(default_factory=dict)


def _marker(kind: str, attrs: dict[str, Any]) -> Marker | None:
    raw = attrs.get("xsr_config")
    try:
        config = json.loads(raw) if isinstance(raw, str) else None
    except ValueError:
        config = None
    if not isinstance(config, dict):
        return None
    status = attrs.get("xsr_status")
    xsr = {k: v for k, v in attrs.items() if k.startswith("xsr_")}
    return Marker(kind, None if status is None else str(status), config, xsr)


def read_marker(path: str | os.PathLike[str]) -> Marker | None:
    """xsr's marker in the output at ``path``, or None if xsr did not write it (or cannot
    read it): the ``xsr_config`` attribute of a zarr store's root group or of a netCDF
    file."""
    p = Path(path)
    if p.is_dir():
        try:
            import warnings

            import zarr

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                attrs = dict(zarr.open_group(str(p), mode="r").attrs)
        except Exception:
            return None
        return _marker("zarr", attrs)
    if p.is_file():
        try:
            import netCDF4

            with netCDF4.Dataset(str(p), "r") as nc:
                attrs = {k: nc.getncattr(k) for k in nc.ncattrs() if k.startswith("xsr_")}
        except Exception:
            return None
        return _marker("netcdf", attrs)
    return None


def check_store(path: str | os.PathLike[str]) -> Marker | None:
    """What is at the zarr output ``path``, if xsr may replace or resume it.

    Allowed: nothing, an empty folder (both: None), or a store that carries xsr's marker
    (its :class:`Marker`).

    Raises
    ------
    OutputError
        For a file, or a folder that xsr did not write.
    """
    p = Path(path)
    if not (p.exists() or p.is_symlink()):
        return None
    if p.is_dir() and not any(p.iterdir()):
        return None
    marker = read_marker(p) if p.is_dir() else None
    if marker is None:
        raise OutputError(
            f"output {str(p)!r} is {_describe(p)} that xsr did not write (no zarr group with "
            "an xsr_config attribute): xsr replaces (--overwrite) or resumes (--resume) only "
            "zarr stores it wrote itself; choose another output path, or remove "
            f"{str(p)!r} yourself if it may go"
        )
    return marker


# ------------------------------------------------------------------------------------------
# locks
# ------------------------------------------------------------------------------------------
def lock_path(path: str | os.PathLike[str]) -> Path:
    """The lock file of the output ``path``: ``.NAME.xsr-lock`` beside it."""
    out = Path(path)
    return _folder(out) / f".{out.name}{_LOCK_SUFFIX}"


def _lock_info() -> dict[str, Any]:
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv else "",
    }


def _parse_info(raw: bytes) -> dict[str, Any]:
    try:
        info = json.loads(raw.decode("utf-8", "replace"))
    except ValueError:
        return {}
    return info if isinstance(info, dict) else {}


def _held(out: Path, lock: Path, info: dict[str, Any], *, stale_hint: bool) -> LockError:
    if info:
        who = (
            f"PID {info.get('pid')} on host {info.get('host')!r}, started "
            f"{info.get('started')} ({info.get('command') or 'unknown command'})"
        )
    else:
        who = "a process that has not written its name yet"
    hint = f"; if no such run is active any more, remove {str(lock)!r}" if stale_hint else ""
    return LockError(
        f"output {str(out)!r} is being written by another xsr run: {who}. Wait for it to "
        f"finish or stop it, or write to another output (lock file {str(lock)!r}){hint}"
    )


def _write_info(fd: int) -> None:
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, json.dumps(_lock_info()).encode())


def _flock(fd: int) -> None:
    import fcntl

    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


_NO_FLOCK = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}


def _acquire_flock(out: Path, lock: Path) -> int | None:
    """The locked descriptor of ``lock``; None where ``flock`` is not supported."""
    for _ in range(100):
        try:
            fd, created = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666), True
        except FileExistsError:
            try:
                fd, created = os.open(lock, os.O_RDWR), False
            except FileNotFoundError:
                continue  # removed meanwhile by its holder
        try:
            _flock(fd)
        except BlockingIOError:
            info = _parse_info(os.read(fd, 65536))
            os.close(fd)
            raise _held(out, lock, info, stale_hint=False) from None
        except (ImportError, OSError) as e:
            os.close(fd)
            if isinstance(e, ImportError) or e.errno in _NO_FLOCK:
                if created:
                    _unlink(lock)  # leave the O_EXCL scheme a clean start
                return None
            raise
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(lock))
        except FileNotFoundError:
            same = False
        if same:
            _write_info(fd)
            return fd
        os.close(fd)  # its holder removed that file as it finished: take the new one
    raise LockError(f"cannot take the lock {str(lock)!r} of {str(out)!r}; try again")


def _acquire_excl(out: Path, lock: Path) -> int:
    """The descriptor of ``lock``, created with O_EXCL (a stale one, of a dead process of
    this host, is removed first)."""
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            try:
                info = _parse_info(lock.read_bytes())
            except FileNotFoundError:
                continue
            pid = info.get("pid")
            if info.get("host") == socket.gethostname() and isinstance(pid, int):
                if not _pid_alive(pid):
                    _unlink(lock)  # stale: its run is gone
                    continue
                raise _held(out, lock, info, stale_hint=False) from None
            raise _held(out, lock, info, stale_hint=True) from None
        _write_info(fd)
        return fd
    raise LockError(f"cannot take the lock {str(lock)!r} of {str(out)!r}; try again")


@contextlib.contextmanager
def output_lock(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Hold the lock of the output ``path`` (:func:`lock_path`) for the ``with`` block.

    Yields
    ------
    Path
        The lock file (removed on exit).

    Raises
    ------
    LockError
        If another live xsr run holds it; the message names that run (PID, host, start
        time, command).
    OutputFolderError
        If the lock file cannot be created (see :func:`check_folder`).
    """
    out = Path(path)
    lock = lock_path(out)
    try:
        fd = _acquire_flock(out, lock)
        if fd is None:
            fd = _acquire_excl(out, lock)
    except (FileNotFoundError, PermissionError):
        check_folder(out)  # names the folder's problem, if that is the cause
        raise
    try:
        yield lock
    finally:
        _unlink(lock)
        os.close(fd)
