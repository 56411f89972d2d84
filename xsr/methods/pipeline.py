"""The array-level downscaling pipeline: every method wrapped the same way.

:func:`downscale_array` validates the request, fills NaN cells (:func:`fill_nan`) for methods
that need it, wraps a periodic x axis, calls the method (:mod:`xsr.methods.base`
interface), checks its output, masks, and applies the enforcement operator of
:mod:`xsr.conserve` -- to the field and to each ensemble member.  No xarray here: numpy arrays
or torch tensors in, the same type out.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..exceptions import DtypeError, InputValueError, MethodError, ShapeError
from .base import Method, Upscaled
from .registry import get_method

if TYPE_CHECKING:
    import torch

    from ..conserve import ConserveMode

__all__ = ["Downscaled", "block_any", "downscale_array", "fill_nan"]


@dataclass
class Downscaled:
    """Result of :func:`downscale_array` with ``extras=True`` (arrays of the input's type).

    Attributes
    ----------
    fine : array, shape ``(..., ny*f, nx*f)``
        The enforced field (for an ensemble: the enforced mean).
    std : array or None, shape ``(..., ny*f, nx*f)``
        Standard deviation (``correction=1``) over the enforced members; None without
        members.
    members : array or None, shape ``(M, ..., ny*f, nx*f)``
        The members, each passed through the enforcement operator.
    """

    fine: Any
    std: Any = None
    members: Any = None


def fill_nan(x: torch.Tensor, iterations: int) -> torch.Tensor:
    """Fill NaN cells from their valid neighbours, ``iterations`` rings deep.

    Each iteration replaces every NaN cell that touches a valid cell (8-neighbourhood) by
    the mean of its valid neighbours.  Cells still NaN afterwards (far from any valid cell)
    get the mean of all valid cells of their field, so the result is NaN-free.

    Parameters
    ----------
    x : torch.Tensor, shape ``(..., ny, nx)``
    iterations : int

    Returns
    -------
    torch.Tensor, same shape and dtype
    """
    import torch

    valid = torch.isfinite(x)
    if bool(valid.all()):
        return x
    *lead, ny, nx = x.shape
    v = torch.where(valid, x, torch.zeros((), dtype=x.dtype, device=x.device))
    v = v.reshape(-1, ny, nx)  # zero wherever m is: v == v * m throughout
    m = valid.reshape(-1, ny, nx).to(x.dtype)
    for _ in range(iterations):
        s, c = _box3(torch.stack([v, m])).unbind(0)  # neighbour sums of values and counts
        new = (c > 0) & (m == 0)
        if not bool(new.any()):
            break
        v = torch.where(new, s / c.clamp(min=1), v)  # counts are whole: c where c > 0
        m = torch.where(new, 1.0, m)
    flat_m = m.reshape(m.shape[0], -1)
    flat_v = v.reshape(v.shape[0], -1)
    count = flat_m.sum(dim=1).clamp(min=1)
    mean = flat_v.sum(dim=1) / count
    v = torch.where(m > 0, v, mean[:, None, None])
    return v.reshape(*lead, ny, nx)


def _box3(a: torch.Tensor) -> torch.Tensor:
    """Sum over the 3 x 3 neighbourhood of each cell, zero outside: ``(..., ny, nx)``.

    Two passes of shifted slices (separable), which on the CPU is an order of magnitude
    faster than a float64 ``conv2d`` with a kernel of ones.
    """
    import torch.nn.functional as F

    p = F.pad(a, (1, 1, 1, 1))
    rows = p[..., :-2, :] + p[..., 1:-1, :] + p[..., 2:, :]
    return rows[..., :-2] + rows[..., 1:-1] + rows[..., 2:]


def _check_dtype(x: Any, name: str) -> None:
    dt = np.dtype(str(x.dtype).replace("torch.", ""))
    if dt.kind in "iub":
        raise DtypeError(
            f"{name} has {'boolean' if dt.kind == 'b' else 'integer'} dtype {dt}; downscaling "
            "produces fractional values, so xsr does not guess a rounding: cast it first, e.g. "
            "da.astype('float64'), or leave the variable out"
        )
    if dt.kind != "f":
        raise DtypeError(
            f"{name} has dtype {dt}; only real floating-point fields can be downscaled"
        )


def downscale_array(
    x: Any,
    *,
    factor: int,
    method: str | Method = "bicubic",
    conserve: ConserveMode | None = "additive",
    bounds: tuple[float | None, float | None] | None = None,
    weights: Any = None,
    mask: Any = None,
    periodic: bool = False,
    device: str | None = None,
    dtype: str | None = None,
    name: str = "input",
    extras: bool = False,
    guide: Any = None,
    guide_names: tuple[str, ...] | None = None,
    **method_options: Any,
) -> Any:
    """Downscale an array by ``factor`` along its last two axes, conservatively.

    Parameters
    ----------
    x : numpy.ndarray or torch.Tensor, shape ``(..., ny, nx)``
        Coarse field; NaN marks masked (land) cells, which stay NaN in the output.
    factor : int
        Refinement factor along each axis (>= 2).
    method : str or Method
        Registry name (see :func:`xsr.list_methods`) or a :class:`Method` instance.
    conserve : {"additive", "multiplicative", "bounded", None}
        Enforcement operator applied to the method's output.
    bounds : (lower, upper), optional
        For ``conserve="bounded"``.
    weights : array or pair of arrays, optional
        Fine cell weights (areas), broadcastable to ``(..., ny*f, nx*f)``, or separable
        factors ``(w_y, w_x)`` of shapes ``(ny*f,)`` and ``(nx*f,)`` (``w = w_y[:, None] *
        w_x[None, :]``, the areas of a rectilinear grid: :func:`xsr.grid.cell_area_factors`),
        which spare a plane of weights the size of the result.
    mask : array of bool, optional
        Valid fine cells, broadcastable to ``(..., ny*f, nx*f)``; other fine cells are NaN.
    periodic : bool
        Wrap the last axis (global longitude) so that no seam appears at the edges.
    device, dtype : str, optional
        Torch device and compute dtype (default: the global options).
    name : str
        Name used in error messages.
    extras : bool, default False
        Return a :class:`Downscaled` with the spread and the members of methods that return
        samples (:class:`Upscaled`), instead of the field alone.
    guide : array, optional
        Fine-scale covariates for methods that use them (:attr:`Method.uses_guide`), shape
        ``(C, ny*f, nx*f)`` (static) or ``(..., C, ny*f, nx*f)`` with the leading dims of
        ``x``; finite everywhere (fill missing values first).
    guide_names : tuple of str, optional
        Names of the ``C`` covariates (default ``guide0``, ``guide1``, ...).
    **method_options
        Options for the method (when ``method`` is a name).

    Notes
    -----
    Methods that are :attr:`~xsr.methods.base.Method.local` (the interpolations) run strip
    by strip of coarse rows: each strip's input is wrapped and filled, upscaled and enforced
    (:func:`xsr.conserve.enforce_into`) straight into the preallocated result, on the CPU by
    up to torch's intra-op thread count of independent workers (as many as there are idle
    cores, see :func:`_strip_workers`; the values do not depend on their number).  The
    result is then the only array of its size that the call makes (peak memory about 1.1 x
    the result on the global SSH benchmark, ``docs/benchmarks.md``); a float32 field stays
    float32 (block sums in float64), unless ``dtype`` asks otherwise.

    Returns
    -------
    numpy.ndarray or torch.Tensor, shape ``(..., ny*factor, nx*factor)``
        Same type as ``x``; dtype of ``x`` (or ``dtype``).  With ``extras=True``, a
        :class:`Downscaled` holding such arrays: ``fine``, ``std`` (or None) and ``members``
        ``(M, ..., ny*factor, nx*factor)`` (or None); the members are each enforced, the
        field is the enforced mean and ``std`` the spread of the enforced members.
    """
    import torch

    from ..conserve import check_coarse, check_options, enforce, enforce_into
    from ..options import OPTIONS, resolve_device

    f, mode, bnds = check_options(factor, conserve, bounds)
    m = get_method(method, **method_options)
    _check_dtype(x, name)

    was_np = not isinstance(x, torch.Tensor)
    xt = torch.from_numpy(np.ascontiguousarray(x)) if was_np else x
    if xt.ndim < 2:
        raise ShapeError(
            f"{name} must have at least 2 dimensions (y, x), got shape {tuple(xt.shape)}"
        )
    dev = resolve_device(device)
    dt_name = dtype if dtype is not None else OPTIONS["dtype"]
    out_dtype = xt.dtype
    work = getattr(torch, dt_name) if dt_name is not None else xt.dtype
    if dev == "mps" and work == torch.float64:
        work = torch.float32
    xt = xt.to(device=dev, dtype=work)

    valid = torch.isfinite(xt)
    if not bool(valid.any()):
        raise InputValueError(
            f"{name} is entirely NaN (shape {tuple(xt.shape)}); there is nothing to downscale: "
            "check the variable, time step or region you selected"
        )
    check_coarse(xt, mode, bounds=bnds, name=name)

    h = m.halo if periodic else 0
    if h > xt.shape[-1]:
        h = xt.shape[-1]
    # on a periodic axis the NaN filling also sees across the seam: wrap wide enough for the
    # fill rings (halo + 1) around the method's halo first, fill, then keep the halo only,
    # so that the result equals a tiled run (xsr.tiling) whose tiles straddle the seam
    ny, nx = xt.shape[-2:]
    fine_mask = None
    if mask is not None:
        fine_mask = torch.as_tensor(
            np.asarray(mask) if not isinstance(mask, torch.Tensor) else mask
        )
        fine_mask = fine_mask.to(device=dev, dtype=torch.bool)
    wts = _as_weights(weights, dev)
    _check_coverage(valid, fine_mask, wts, f, name)
    final = out_dtype if dtype is None and OPTIONS["dtype"] is None else work

    if _by_strips(m, guide):
        # a local method: upscale and enforce strip by strip of coarse rows, straight into
        # the result; no other full-size array is made
        out = _strips(
            m,
            xt,
            f=f,
            h=h,
            mode=mode,
            bounds=bnds,
            weights=wts,
            mask=fine_mask,
            dtype=final,
            name=name,
        )
        res_np = out.cpu().numpy() if was_np else out
        return Downscaled(fine=res_np) if extras else res_np

    xin = _method_input(xt, m, h)
    gt = _check_guide(guide, m, xt, f, name)
    if gt is not None:
        gt = gt.to(device=dev, dtype=work)
        gt = _wrap_fine(gt, h * f, dev)
        names = (
            tuple(guide_names) if guide_names else tuple(f"guide{i}" for i in range(gt.shape[-3]))
        )
        if len(names) != gt.shape[-3]:
            raise ShapeError(
                f"guide_names has {len(names)} names for {gt.shape[-3]} guide channels; give "
                "one name per channel"
            )

    context: dict[str, Any] = {}
    if m.handles_nan or gt is not None:
        full = _full_weights(wts)
        context = {
            "weights": _wrap_fine(full, h * f, dev),
            "mask": _wrap_fine(fine_mask, h * f, dev),
        }
    if gt is not None:
        lead_in = tuple(xin.shape[:-2])
        context["guide"] = gt.expand(*lead_in, *gt.shape[-3:]) if gt.ndim == 3 else gt
        context["guide_names"] = names
    with torch.no_grad():
        res = m.upscale(xin, f, **context)
    members = None
    if isinstance(res, Upscaled):
        y, members = res.fine, res.members
    else:
        y = res
    if h:
        y = y[..., h * f : -h * f]
        if members is not None:
            members = members[..., h * f : -h * f]
    if tuple(y.shape[-2:]) != (ny * f, nx * f):
        raise MethodError(
            f"method {m!r} returned shape {tuple(y.shape)}, expected (..., {ny * f}, {nx * f})"
        )
    if members is not None and tuple(members.shape[1:]) != tuple(y.shape):
        raise MethodError(
            f"method {m!r} returned members of shape {tuple(members.shape)}, expected "
            f"(M, {', '.join(map(str, y.shape))})"
        )
    lead = torch.broadcast_shapes(y.shape[:-2], xt.shape[:-2])
    out = _empty((*lead, ny * f, nx * f), final, y.device)
    bad = 0
    step = _strip_rows(out, ny, f)
    for r0 in range(0, ny, step):
        r1 = min(ny, r0 + step)
        bad += enforce_into(
            out[..., r0 * f : r1 * f, :],
            y[..., r0 * f : r1 * f, :].expand(*lead, -1, -1),
            xt[..., r0:r1, :],
            f,
            mode,
            weights=_rows(wts, r0 * f, r1 * f, ny * f),
            mask=_rows(fine_mask, r0 * f, r1 * f, ny * f),
            bounds=bnds,
        )
    if bad:
        raise _nonfinite(m, name)

    def _ret(t: torch.Tensor | None) -> Any:
        if t is None or not was_np:
            return t
        return t.cpu().numpy()

    if not extras:
        return _ret(out)
    std = None
    if members is not None:
        members = enforce(
            members.to(xt.dtype),
            xt,
            f,
            mode,
            weights=_full_weights(wts),
            mask=fine_mask,
            bounds=bnds,
            validate=False,
        )
        std = members.std(dim=0, correction=1) if members.shape[0] > 1 else None
        members = members.to(final)
        std = None if std is None else std.to(final)
    return Downscaled(fine=_ret(out), std=_ret(std), members=_ret(members))


#: Fine cells per strip of :func:`_strips` on the CPU (other devices: 16 times more), at
#: most; and the strips of all workers at most a sixteenth of the result, so that their
#: temporaries stay far below the size of the result.
STRIP_CELLS = 1 << 20
#: Coarse cells per block of :func:`_strips`' input preparation (NaN filling), at least.
FILL_CELLS = 1 << 16


def _by_strips(m: Method, guide: Any) -> bool:
    """Whether the method can run strip by strip (:attr:`Method.local`, no guide)."""
    return bool(getattr(m, "local", False)) and guide is None and not m.handles_nan


def _strip_rows(out: torch.Tensor, ny: int, f: int) -> int:
    """Coarse rows per strip of the result ``out`` ``(..., ny*f, nx*f)``."""
    import torch

    per_row = max(1, out[..., :f, :].numel())
    # all the workers' strips together at most 1/16 of the result, in the bytes of the
    # float64 sums of enforce_into
    cpu = out.device.type == "cpu"
    share = out.numel() * out.element_size() // (16 * 8 * (torch.get_num_threads() if cpu else 1))
    budget = min(STRIP_CELLS * (1 if cpu else 16), share)
    return max(1, min(ny, budget // per_row))


def _method_input(x: torch.Tensor, m: Method, h: int) -> torch.Tensor:
    """What the method gets: ``x`` ``(..., n, nx)`` with ``h`` periodic halo columns on each
    side, ``(..., n, nx + 2*h)``, its NaN cells filled unless the method handles NaN.

    On a periodic axis the NaN filling also sees across the seam: the field is wrapped wide
    enough for the fill rings (``halo + 1``) around the method's halo first, filled, then
    only the halo is kept, so that the result equals a tiled run (:mod:`xsr.tiling`) whose
    tiles straddle the seam.
    """
    import torch

    g = min(h + m.halo + 1, x.shape[-1]) if h and not m.handles_nan else h
    xin = torch.cat([x[..., -g:], x, x[..., :g]], dim=-1) if g else x
    if not m.handles_nan:
        xin = fill_nan(xin, m.halo + 1)
    if g > h:
        xin = xin[..., g - h : xin.shape[-1] - (g - h)]
    return xin


def _strips(
    m: Method,
    xt: torch.Tensor,
    *,
    f: int,
    h: int,
    mode: ConserveMode | None,
    bounds: tuple[float | None, float | None] | None,
    weights: Any,
    mask: torch.Tensor | None,
    dtype: torch.dtype,
    name: str,
) -> torch.Tensor:
    """Upscale and enforce a local method strip by strip of coarse rows.

    Parameters
    ----------
    m : Method
        A method with :attr:`Method.local` set: its output rows of coarse row ``i`` depend
        only on coarse rows ``i - halo .. i + halo``.
    xt : torch.Tensor, shape ``(..., ny, nx)``
        The coarse field to conserve (NaN: masked cells).  Each strip's input is made from
        it by :func:`_method_input` over the strip's rows and ``halo + 1`` more on each
        side: the fill rings reach no further, so that every value that can reach a valid
        fine cell is the one a fill of the whole field would give (cells beyond the rings,
        which get the mean of the valid cells, only ever feed masked fine cells).
    f, h : int
        Factor and periodic halo.
    mode, bounds
        The enforcement operator.
    weights : torch.Tensor, pair of tensors or None
        Fine cell weights (broadcastable to the result, or separable factors
        ``((ny*f,), (nx*f,))``).
    mask : torch.Tensor of bool or None
        Valid fine cells.
    dtype : torch.dtype
        Of the result.
    name : str
        For messages.

    Returns
    -------
    torch.Tensor, shape ``(..., ny*f, nx*f)``
        The enforced field: the only full-size array this makes.
    """

    ny, nx = xt.shape[-2:]
    out = _empty((*xt.shape[:-2], ny * f, nx * f), dtype, xt.device)
    step = _strip_rows(out, ny, f)
    starts = list(range(0, ny, step))

    def run(group: list[int]) -> int:
        return _run_strips(
            m, xt, out, group, step=step, f=f, h=h, mode=mode, bounds=bounds,
            weights=weights, mask=mask,
        )  # fmt: skip

    workers = _strip_workers(out, len(starts))
    if workers == 0:
        bad = run(starts)
    elif workers == 1:
        with _one_thread_each():
            bad = run(starts)
    else:
        groups = [list(g) for g in np.array_split(np.array(starts), workers)]
        with _one_thread_each(), ThreadPoolExecutor(workers) as pool:
            bad = sum(pool.map(run, groups))
    if bad:
        raise _nonfinite(m, name)
    return out


def _empty(shape: tuple[int, ...], dtype: torch.dtype, device: Any) -> torch.Tensor:
    """An uninitialised result; on the CPU allocated by numpy, which asks the kernel for
    transparent huge pages on large arrays (``madvise``): writing a fresh result then costs
    a fraction of the page faults of torch's own allocation."""
    import torch

    if torch.device(device).type != "cpu":
        return torch.empty(shape, dtype=dtype, device=device)
    np_dtype = torch.empty((), dtype=dtype).numpy().dtype
    return torch.from_numpy(np.empty(shape, dtype=np_dtype))


def _strip_workers(out: torch.Tensor, n_strips: int) -> int:
    """Threads for the strips of :func:`_strips` on the CPU, 0 for none (another device, or
    not the main thread).

    The strips are independent, so each of ``n`` threads takes a contiguous run of them with
    single-threaded torch operations, instead of running every small operation on ``n``
    threads: no barrier per operation.  ``n`` is torch's intra-op thread count, capped by
    the idle cores (:func:`_idle_cores`) plus this one: on a machine with more runnable
    threads than cores, more threads only wait for one another (a thread descheduled while
    it holds the interpreter lock stalls the others).  The result does not depend on ``n``:
    every strip is computed the same way, single-threaded, whatever runs it.  Only from the
    main thread: inside dask workers (threads), or other threads of the user, the global
    thread setting is not touched.
    """
    import torch

    if out.device.type != "cpu" or threading.current_thread() is not threading.main_thread():
        return 0
    return max(1, min(torch.get_num_threads(), n_strips, _idle_cores() + 1))


def _idle_cores() -> int:
    """Cores of this process's CPU set that no runnable thread wants (1-minute load)."""
    import os

    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover (not Linux)
        cores = os.cpu_count() or 1
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # pragma: no cover (not Unix)
        return cores
    return max(0, int(cores - load))


@contextmanager
def _one_thread_each() -> Iterator[None]:
    """torch's intra-op parallelism off for the duration, restored afterwards."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def _run_strips(
    m: Method,
    xt: torch.Tensor,
    out: torch.Tensor,
    starts: list[int],
    *,
    step: int,
    f: int,
    h: int,
    mode: ConserveMode | None,
    bounds: tuple[float | None, float | None] | None,
    weights: Any,
    mask: torch.Tensor | None,
) -> int:
    """Upscale and enforce the strips of coarse rows ``[r0, r0 + step)`` for ``r0`` in
    ``starts`` (ascending) into ``out``; the number of non-finite first-guess cells where a
    value belongs (see :func:`xsr.conserve.enforce_into`)."""
    import torch

    from ..conserve import enforce_into

    ny = xt.shape[-2]
    reach = m.halo + 1  # the fill rings
    # the input is prepared (wrapped, filled) in blocks of rows that serve several strips
    rows = max(step + 2 * m.halo + 2 * reach, FILL_CELLS // max(1, xt[..., :1, :].numel()))
    k0, v0, v1 = 0, 0, -1  # rows of the block, rows of it that a fill of all would give
    blk = xt
    bad = 0
    for r0 in starts:
        r1 = min(ny, r0 + step)
        a0, a1 = max(0, r0 - m.halo), min(ny, r1 + m.halo)
        if a0 < v0 or a1 > v1:
            k0 = max(0, a0 - reach)
            k1 = min(ny, k0 + rows)
            blk = _method_input(xt[..., k0:k1, :], m, h)
            v0 = k0 + reach if k0 > 0 else 0
            v1 = k1 - reach if k1 < ny else ny
        xin = blk[..., a0 - k0 : a1 - k0, :]
        with torch.no_grad():
            y = m.upscale(xin, f)
        want = (*xin.shape[:-2], (a1 - a0) * f, xin.shape[-1] * f)
        if isinstance(y, Upscaled) or tuple(y.shape) != want:
            raise MethodError(
                f"method {m!r} returned {type(y).__name__} of shape "
                f"{tuple(getattr(y, 'shape', ()))}, expected a tensor of shape {want}"
            )
        nx = xt.shape[-1]
        y = y[..., (r0 - a0) * f : (r1 - a0) * f, h * f : h * f + nx * f]
        bad += enforce_into(
            out[..., r0 * f : r1 * f, :],
            y,
            xt[..., r0:r1, :],
            f,
            mode,
            weights=_rows(weights, r0 * f, r1 * f, ny * f),
            mask=_rows(mask, r0 * f, r1 * f, ny * f),
            bounds=bounds,
        )
    return bad


def _nonfinite(m: Method, name: str) -> MethodError:
    return MethodError(
        f"method {m!r} produced non-finite values inside the valid region of {name}; "
        "this is a bug in the method: please report it"
    )


def _as_weights(weights: Any, dev: Any) -> Any:
    """Fine weights as a float64 tensor on ``dev``, a pair of them (separable), or None."""
    import torch

    if weights is None:
        return None
    if isinstance(weights, tuple):
        wy, wx = (torch.as_tensor(np.asarray(w, np.float64)).to(dev) for w in weights)
        return wy, wx
    wt = torch.as_tensor(np.asarray(weights) if not isinstance(weights, torch.Tensor) else weights)
    # one memory order, so that the sums are the same whatever order the user's array had
    return wt.to(dev).contiguous()


def _full_weights(w: Any) -> Any:
    """Separable weights multiplied out to ``(ny*f, nx*f)``; others as they are."""
    if isinstance(w, tuple):
        return w[0][:, None] * w[1][None, :]
    return w


def _rows(a: Any, i0: int, i1: int, n: int) -> Any:
    """Fine rows ``i0:i1`` of weights or a mask broadcastable to ``(..., n, nx*f)``, or of
    separable weights (a pair)."""
    if a is None:
        return None
    if isinstance(a, tuple):
        return a[0][i0:i1], a[1]
    if a.ndim >= 2 and a.shape[-2] == n:
        return a[..., i0:i1, :]
    return a


def _check_coverage(
    valid: torch.Tensor, fine_mask: torch.Tensor | None, weights: Any, f: int, name: str
) -> None:
    """Refuse coarse cells with values whose block has no valid fine cell of positive weight
    (the mask or zero weights leave none): their mean cannot be conserved."""
    import torch

    if fine_mask is not None:
        fm = torch.broadcast_to(fine_mask, (*fine_mask.shape[:-2], *_fine_hw(valid, f)))
        lost = valid & ~block_any(fm, f)
        if bool(lost.any()):
            raise InputValueError(
                f"the fine mask leaves no valid fine cell in {int(lost.sum())} coarse cell(s) "
                f"of {name} that hold values, whose means could not be conserved; make the "
                "mask True on at least one fine cell of every coarse cell with data, or set "
                "those coarse cells to NaN"
            )
    if weights is None:
        return
    if isinstance(weights, tuple):
        wy, wx = weights
        if bool(wy.min() > 0) and bool(wx.min() > 0):
            return
        if fine_mask is None:  # separable: a block has a positive cell iff both factors do
            py = (wy > 0).reshape(-1, f).any(dim=1)
            px = (wx > 0).reshape(-1, f).any(dim=1)
            pos_blocks = py[:, None] & px[None, :]
        else:
            pos = (wy[:, None] > 0) & (wx[None, :] > 0)
            pos_blocks = block_any(pos & fm, f)
    else:
        if bool(weights.min() > 0):
            return
        pos = torch.broadcast_to(weights > 0, (*weights.shape[:-2], *_fine_hw(valid, f)))
        pos_blocks = block_any(pos & fm if fine_mask is not None else pos, f)
    lost = valid & ~pos_blocks.to(valid.device)
    if bool(lost.any()):
        raise InputValueError(
            f"{int(lost.sum())} coarse cell(s) of {name} hold values but every valid "
            "fine cell in them has zero weight, so their mean cannot be conserved; "
            "give them positive weights (cell areas), or set those coarse cells to NaN"
        )


def _fine_hw(valid: torch.Tensor, f: int) -> tuple[int, int]:
    return valid.shape[-2] * f, valid.shape[-1] * f


def _check_guide(guide: Any, m: Method, x: torch.Tensor, f: int, name: str) -> Any:
    """The guide as a tensor ``(C, NY, NX)`` or ``(*lead, C, NY, NX)``, checked; or None."""
    import torch

    if guide is None:
        return None
    if not getattr(m, "uses_guide", False):
        raise MethodError(
            f"method {getattr(m, 'name', m)!r} does not use a guide (fine-scale covariates); "
            "methods that do: 'regression', 'dip', 'dip-ensemble', 'cnn' with a model trained "
            "on guides. Fix: pick one of them, or leave guide= out"
        )
    if isinstance(guide, torch.Tensor):
        g = guide
    else:
        a = np.asarray(guide)
        g = torch.from_numpy(a if a.flags.writeable else a.copy())  # torch wants writable
    fine = (x.shape[-2] * f, x.shape[-1] * f)
    lead = tuple(x.shape[:-2])
    ok = g.ndim >= 3 and tuple(g.shape[-2:]) == fine
    if ok and g.ndim > 3:
        try:  # leading dims of 1 (or missing) are broadcast over the field's
            g = g.expand(*lead, *g.shape[-3:]) if g.ndim - 3 <= len(lead) else g
            ok = tuple(g.shape[:-3]) == lead
        except RuntimeError:
            ok = False
    if not ok:
        raise ShapeError(
            f"guide of {name} has shape {tuple(g.shape)}; allowed: (C, {fine[0]}, {fine[1]}) "
            f"(static) or ({', '.join(map(str, lead))}{', ' if lead else ''}C, {fine[0]}, "
            f"{fine[1]}) (with the leading dims of the field, or 1)"
        )
    if not g.is_floating_point():
        g = g.to(torch.float64)
    if not bool(torch.isfinite(g).all()):
        raise InputValueError(
            f"guide of {name} holds NaN or infinite values; fill them first (xsr.downscale "
            "fills missing guide cells from their neighbours)"
        )
    return g


def block_any(mask: torch.Tensor, factor: int) -> torch.Tensor:
    """Whether any cell of each ``factor x factor`` block is True: ``(..., ny, nx)``."""
    *lead, ny, nx = mask.shape
    return mask.reshape(*lead, ny // factor, factor, nx // factor, factor).any(dim=(-3, -1))


def _wrap_fine(a: Any, h: int, dev: Any) -> Any:
    """A fine-grid array with ``h`` columns wrapped around on each side (periodic halo)."""
    if a is None or h == 0:
        return a
    import torch

    t = torch.as_tensor(np.asarray(a) if not isinstance(a, torch.Tensor) else a).to(dev)
    if t.ndim < 2 or t.shape[-1] == 1:
        return t
    return torch.cat([t[..., -h:], t, t[..., :h]], dim=-1)
