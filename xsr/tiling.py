"""Tiles aligned to coarse cells, halos, blending weights and stitching, for large grids.

:func:`downscale_tiled` runs :func:`xsr.methods.pipeline.downscale_array` on pieces of the
horizontal plane instead of the whole of it, so that grids far larger than one method call,
spatially chunked dask arrays and ``dask.distributed`` clusters can be downscaled, and every
coarse cell is still conserved exactly.

How it works, along each horizontal axis:

* **Tiles.** The plane is split into tiles of whole coarse cells, of at most
  ``tile_size // factor`` coarse cells (near-equal sizes, so that no sliver is left over).
* **Halo.** Each tile is sent to the method with ``halo`` coarse cells of context on each
  side (fewer at the edges of a non-periodic grid; wrapped across the dateline on periodic
  ones).  The default is ``2 * method.halo``: the method's stencil plus the rings of the NaN
  filling that precedes it, so that a deterministic method gives in the interior of each
  tile exactly what it gives on the whole grid.  All tiles of a chunk get windows of the same
  size and go to the device in one batch.
* **Blending.** Tiles of stochastic methods (``method.stochastic``, e.g. deep image priors)
  extend ``overlap`` coarse cells into their neighbours; in the ``2 * overlap`` wide bands
  around tile edges their outputs are averaged with smooth weights
  (``sin**2`` ramps that add up to one), and the enforcement operator is applied again to the
  blended field, so that every coarse cell, seams included, is conserved exactly.
  Deterministic methods need no blending (``overlap=0``): each tile's interior is kept as
  it is, and it is already enforced cell by cell.
* **dask.** Spatial chunks are merged where they are smaller than the halo they must lend
  their neighbours; each chunk gets that halo (:func:`dask.array.overlap.overlap`, periodic
  along a global longitude) and computes the tiles that cover it.  Everything stays lazy.
  Stochastic methods use one tile lattice for the whole grid, so their result does not depend
  on the chunking; tiles that straddle a chunk boundary are computed by both chunks.
* **Memory.** On CPU the tiles of a chunk are batched up to about :data:`CPU_BATCH_CELLS`
  fine cells per call; on CUDA the whole chunk is tried at once and, on an out-of-memory
  error, the batch is split in halves and retried.
* **Workers.** Tasks carry the method's name and options, not the method: each process
  builds a method once (:func:`cached_method`) and reuses it for all its tasks.

Only this module, :mod:`xsr.api` and the command line know about dask chunks; the method
code sees NumPy arrays or tensors.
"""

from __future__ import annotations

import dataclasses
import itertools
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from .exceptions import OptionError, TileMemoryError

if TYPE_CHECKING:
    from .conserve import ConserveMode
    from .methods.base import Method

__all__ = [
    "CPU_BATCH_CELLS",
    "align_chunks",
    "blend_weights",
    "cached_method",
    "downscale_tiled",
    "method_cache_info",
    "split_axis",
]

#: Largest number of fine cells (tiles x window, all leading dims) per method call on CPU.
CPU_BATCH_CELLS = 1 << 22

FineWeights = np.ndarray | tuple[np.ndarray, np.ndarray] | None
Extra = Literal["std", "members"]


# ------------------------------------------------------------------------------------------
# methods built once per process
# ------------------------------------------------------------------------------------------
_CACHE: dict[Any, Method] = {}
_CACHE_LOCK = threading.Lock()
_BUILT = {"count": 0}


def _freeze(value: Any) -> Any:
    """A hashable key for a method option.  Objects that are not plain values are keyed by
    their ``xsr_cache_key()`` (a content fingerprint, e.g. of a trained network's weights)
    or else by identity: two different objects never share a cached method, even when their
    reprs agree."""
    if isinstance(value, dict):
        return tuple(sorted((str(k), _freeze(v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, int | float | str | bool | None):
        return value
    fingerprint = getattr(value, "xsr_cache_key", None)
    if callable(fingerprint):
        return (type(value).__qualname__, fingerprint())
    return (type(value).__qualname__, id(value))


@dataclass(frozen=True)
class _MethodSpec:
    """What a task needs to build a method: a registry name and options (cheap to pickle),
    and the cache key, computed once where the spec is made (fingerprints of large
    options, such as a trained network's weights, are not recomputed for every tile)."""

    name: str
    options: tuple[tuple[str, Any], ...]
    cache_key: Any


def _spec_of(method: Method) -> _MethodSpec | Method:
    """A spec that rebuilds ``method`` from the registry, or the method itself if none does."""
    from .methods.registry import get_method

    name = getattr(method, "name", None)
    if not isinstance(name, str):
        return method
    try:
        opts = dict(method.options())
        rebuilt = get_method(name, **opts)
        # the name and options must give back the same object, state included
        same = type(rebuilt) is type(method) and bool(vars(rebuilt) == vars(method))
    except Exception:
        return method
    if not same:
        return method
    return _MethodSpec(name, tuple(opts.items()), (name, _freeze(opts)))


def cached_method(spec: _MethodSpec | Method) -> Method:
    """The method for ``spec``, built at most once per process (thread-safe).

    Parameters
    ----------
    spec : _MethodSpec or Method
        A registry name with options (built here and cached), or a method object (returned
        as it is).

    Returns
    -------
    Method
    """
    from .methods.base import Method
    from .methods.registry import get_method

    if isinstance(spec, Method):
        return spec
    key = spec.cache_key
    with _CACHE_LOCK:
        m = _CACHE.get(key)
        if m is None:
            m = get_method(spec.name, **dict(spec.options))
            _CACHE[key] = m
            _BUILT["count"] += 1
    return m


def method_cache_info() -> dict[str, int]:
    """How many methods this process has built and holds: ``{"built": n, "cached": m}``."""
    with _CACHE_LOCK:
        return {"built": _BUILT["count"], "cached": len(_CACHE)}


# ------------------------------------------------------------------------------------------
# tiles along one axis
# ------------------------------------------------------------------------------------------
def split_axis(start: int, stop: int, size: int) -> np.ndarray:
    """Boundaries of near-equal tiles of at most ``size`` cells covering ``[start, stop)``.

    Parameters
    ----------
    start, stop : int
        The range of (coarse) cells to split, ``stop > start``.
    size : int
        Largest tile length (>= 1).

    Returns
    -------
    numpy.ndarray of int, shape ``(k + 1,)``
        ``start = b[0] < b[1] < ... < b[k] = stop`` with ``k = ceil((stop - start) / size)``
        tiles whose lengths differ by at most one.
    """
    n = int(stop) - int(start)
    if n < 1 or size < 1:
        raise OptionError(f"cannot split [{start}, {stop}) into tiles of {size} cells")
    k = -(-n // int(size))
    return int(start) + (np.arange(k + 1) * n) // k


def blend_weights(n_fine: int, factor: int, overlap: int, *, left: bool, right: bool) -> np.ndarray:
    """Blending weights of one tile along one axis, over its extended region.

    The extended region is the tile with ``overlap`` coarse cells added on each side that
    has a neighbour.  Across a shared band of ``2 * overlap`` coarse cells the weight of one
    tile rises as ``sin(pi t / 2)**2`` while its neighbour's falls as ``cos(pi t / 2)**2``, so
    that the weights add up to one everywhere.

    Parameters
    ----------
    n_fine : int
        Fine cells of the extended region.
    factor : int
        Refinement factor.
    overlap : int
        Coarse cells of overlap (half the band width).
    left, right : bool
        Whether the tile has a neighbour on that side (a band to ramp over).

    Returns
    -------
    numpy.ndarray of float64, shape ``(n_fine,)``
        In ``(0, 1]``.
    """
    w = np.ones(n_fine)
    band = 2 * overlap * factor
    if band == 0:
        return w
    t = (np.arange(band) + 0.5) / band
    ramp = np.sin(0.5 * np.pi * t) ** 2
    nb = min(band, n_fine)
    if left:
        w[:nb] *= ramp[:nb]
    if right:
        w[n_fine - nb :] *= ramp[::-1][band - nb :]
    return w


def align_chunks(chunks: tuple[int, ...], factor: int) -> tuple[int, ...]:
    """Chunk sizes along a fine axis moved to coarse-cell boundaries (multiples of ``factor``).

    Each boundary is rounded to the nearest multiple of ``factor``; chunks that vanish are
    dropped, and an odd remainder (when the axis is not a multiple of ``factor``) stays in
    the last chunk.

    Parameters
    ----------
    chunks : tuple of int
        Chunk sizes of one axis.
    factor : int

    Returns
    -------
    tuple of int
        Same total; every chunk but the last a multiple of ``factor``.
    """
    n = int(sum(chunks))
    ends = np.cumsum(chunks)[:-1]
    cut = np.unique(np.clip(np.round(ends / factor).astype(int) * factor, 0, n))
    cut = cut[(cut > 0) & (cut < n)]
    b = np.concatenate([[0], cut, [n]])
    return tuple(int(v) for v in np.diff(b) if v > 0)


def _merge_small(chunks: tuple[int, ...], minimum: int) -> tuple[int, ...]:
    """Merge neighbouring chunks until each has at least ``minimum`` cells (or one is left)."""
    out: list[int] = []
    acc = 0
    for c in chunks:
        acc += int(c)
        if acc >= minimum:
            out.append(acc)
            acc = 0
    if acc:
        if out:
            out[-1] += acc
        else:
            out.append(acc)
    return tuple(out)


# ------------------------------------------------------------------------------------------
# the plan and the block function
# ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Axis:
    """One horizontal axis of the plan (coarse cells)."""

    n: int
    periodic: bool
    depth: int  # dask halo of each chunk along this axis
    chunked: bool  # more than one chunk along this axis (else the block holds it whole)
    lattice: np.ndarray | None = field(default=None, compare=False)  # global tile bounds
    tile: int = 0  # largest tile length (coarse cells)


@dataclass(frozen=True)
class _Plan:
    factor: int
    method: Any  # _MethodSpec or Method
    mode: Any
    bounds: Any
    device: str | None
    dtype: str | None
    name: str
    ay: _Axis
    ax: _Axis
    halo: int
    overlap: int
    stochastic: bool
    extras: tuple[str, ...]
    n_members: int
    out_dtype: Any
    guide_names: tuple[str, ...] = ()


@dataclass
class _Window:
    """Tiles of one block along one axis (all coordinates in unwrapped coarse cells)."""

    starts: list[int]  # window starts
    width: int  # window length (same for every tile)
    keep: list[tuple[int, int]]  # part of the tile's output to keep, [k0, k1)
    core: list[tuple[int, int]]  # the tile's own cells (blending weights ramp around them)
    left: list[bool]
    right: list[bool]


def _tiles_1d(
    axis: _Axis, b0: int, b1: int, avail0: int, avail1: int, halo: int, overlap: int, det: bool
) -> _Window:
    """Tiles (with windows) covering the block core ``[b0, b1)`` along one axis.

    ``[avail0, avail1)`` is the range of input cells the block holds (unwrapped; for a
    periodic axis held whole, any range, read modulo ``n``).
    """
    n = axis.n
    size = axis.tile if axis.tile > 0 else b1 - b0
    if det:
        bounds = split_axis(b0, b1, size)
        tiles = [(int(a), int(c), 0) for a, c in itertools.pairwise(bounds)]
        o = 0
    else:
        lat = axis.lattice if axis.lattice is not None else split_axis(0, n, size)
        shifts = (-n, 0, n) if axis.periodic else (0,)
        tiles = []
        o = overlap
        for s in shifts:
            for a, c in itertools.pairwise(lat):
                e0, e1 = int(a) + s - o, int(c) + s + o
                if e1 > b0 and e0 < b1:
                    tiles.append((int(a) + s, int(c) + s, s))
    tmax = max(c - a for a, c, _ in tiles)
    whole = axis.periodic and not axis.chunked
    lo, hi = (-(10**12), 10**12) if whole else (avail0, avail1)
    if not axis.periodic:
        lo, hi = max(lo, 0), min(hi, n)
    width = tmax + 2 * o + 2 * halo
    if not whole:
        width = min(width, hi - lo)
    win = _Window([], width, [], [], [], [])
    for a, c, _ in tiles:
        e0, e1 = a - o, c + o
        if not axis.periodic:
            e0, e1 = max(e0, 0), min(e1, n)
        start = a - o - halo
        if not whole:
            start = min(max(start, lo), hi - width)
        win.starts.append(start)
        win.keep.append((max(e0, b0), min(e1, b1)))
        win.core.append((a, c))
        win.left.append(axis.periodic or a > 0)
        win.right.append(axis.periodic or c < n)
    return win


def _take(arr: np.ndarray, axis: int, start: int, width: int, avail0: int, period: int | None):
    """Cells ``[start, start + width)`` (unwrapped) of ``arr`` along ``axis``.

    ``arr`` holds cells ``[avail0, ...)``, or a whole period (``period`` set: read modulo).
    """
    if period is not None:
        idx = np.arange(start, start + width) % period
        if idx[-1] - idx[0] == width - 1:
            sl = [slice(None)] * arr.ndim
            sl[axis] = slice(int(idx[0]), int(idx[0]) + width)
            return arr[tuple(sl)]
        return np.take(arr, idx, axis=axis)
    i0 = start - avail0
    if i0 < 0 or i0 + width > arr.shape[axis]:
        raise AssertionError(
            f"tile window [{start}, {start + width}) outside the block's input "
            f"[{avail0}, {avail0 + arr.shape[axis]})"
        )
    sl = [slice(None)] * arr.ndim
    sl[axis] = slice(i0, i0 + width)
    return arr[tuple(sl)]


def _fine_take(
    arr: np.ndarray, axis: int, start: int, width: int, avail0: int, period: int | None, f: int
) -> np.ndarray:
    return _take(
        arr, axis, start * f, width * f, avail0 * f, None if period is None else period * f
    )


def _resolve_device(device: str | None) -> str:
    from .options import resolve_device

    return resolve_device(device)


def _call(
    xb: np.ndarray,
    wb: np.ndarray | None,
    mb: np.ndarray | None,
    gb: np.ndarray | None,
    plan: _Plan,
    dev: str,
    method: Method | None = None,
    limit: dict[str, int] | None = None,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """One method call on a batch of tiles ``(T, ..., wy, wx)``; splits it on CUDA OOM.

    ``limit["max"]``, updated here, is the largest batch not yet known to be too large: later
    batches of the same block are split before they are tried.
    """
    import torch

    from .methods import pipeline

    m = method if method is not None else cached_method(plan.method)
    limit = {} if limit is None else limit
    nt = xb.shape[0]
    message = ""
    if nt > limit.get("max", nt):
        return _split_call(xb, wb, mb, gb, plan, dev, m, limit, message)
    try:
        r = pipeline.downscale_array(
            xb,
            factor=plan.factor,
            method=m,
            conserve=plan.mode,
            bounds=plan.bounds,
            weights=wb,
            mask=mb,
            periodic=False,
            device=dev,
            dtype=plan.dtype,
            name=plan.name,
            extras=True,
            guide=gb,
            guide_names=plan.guide_names or None,
        )
    except torch.OutOfMemoryError as err:
        message = str(err)
    else:
        return r.fine, r.std, r.members
    # split outside the except clause: the traceback of the failed call, and the device
    # memory its frames hold, are released first
    if dev.startswith("cuda"):
        torch.cuda.empty_cache()
    limit["max"] = min(limit.get("max", nt), nt - 1)
    return _split_call(xb, wb, mb, gb, plan, dev, m, limit, message)


def _split_call(
    xb: np.ndarray,
    wb: np.ndarray | None,
    mb: np.ndarray | None,
    gb: np.ndarray | None,
    plan: _Plan,
    dev: str,
    m: Method,
    limit: dict[str, int],
    message: str,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """:func:`_call` on the two halves of a batch, results joined."""
    nt = xb.shape[0]
    if nt == 1:
        raise TileMemoryError(
            f"one tile of {xb.shape[-2]} x {xb.shape[-1]} coarse cells (with its halo) "
            f"does not fit on {dev}: {message}; lower tile_size (xsr.set_options(tile_size=...)"
            " or --tile-size) or the number of ensemble members"
        )
    h = nt // 2

    def part(sl: slice) -> Any:
        return _call(
            xb[sl],
            None if wb is None or wb.shape[0] == 1 else wb[sl],
            None if mb is None or mb.shape[0] == 1 else mb[sl],
            None if gb is None else gb[sl],
            plan,
            dev,
            m,
            limit,
        )

    a, b = part(slice(0, h)), part(slice(h, nt))
    std = None if a[1] is None or b[1] is None else np.concatenate([a[1], b[1]])
    mem = None if a[2] is None or b[2] is None else np.concatenate([a[2], b[2]], axis=1)
    return np.concatenate([a[0], b[0]]), std, mem


def _block(
    x: np.ndarray,
    w2: np.ndarray | None,
    wy: np.ndarray | None,
    wx: np.ndarray | None,
    fmask: np.ndarray | None,
    guide: np.ndarray | None,
    iy: np.ndarray,
    ix: np.ndarray,
    *,
    plan: _Plan,
    method: Method | None = None,
) -> np.ndarray:
    """Downscale one block: ``x`` ``(..., ay, ax)`` with halos -> ``(K?, ..., cy*f, cx*f)``.

    ``iy``/``ix`` are the global indices of the block's own (core) coarse cells; the halos
    that ``x`` (and the fine ``w2``/``wy``/``wx``/``fmask``, and the ``guide``, static
    ``(C, fy, fx)`` or ``(..., C, fy, fx)`` with the leading dims of ``x``) hold around them
    follow from the plan.  With extras the outputs are stacked on a new first axis: the
    field, then the spread (``"std"``) and the members (``"members"``).
    """
    f = plan.factor
    ay, ax = plan.ay, plan.ax
    by0, by1 = int(iy[0]), int(iy[-1]) + 1
    bx0, bx1 = int(ix[0]), int(ix[-1]) + 1
    # the block's input range along each axis (unwrapped coarse cells)
    ly = ay.depth if by0 > 0 else 0
    lx = ax.depth if (ax.periodic or bx0 > 0) else 0
    py = None
    px = ax.n if (ax.periodic and not ax.chunked) else None
    vy0, vx0 = by0 - ly, (0 if px is not None else bx0 - lx)
    vy1, vx1 = vy0 + x.shape[-2], vx0 + x.shape[-1]
    lead = x.shape[:-2]
    det = not plan.stochastic
    ty = _tiles_1d(ay, by0, by1, vy0, vy1, plan.halo, plan.overlap, det)
    tx = _tiles_1d(ax, bx0, bx1, vx0, vx1, plan.halo, plan.overlap, det)
    cy, cx = (by1 - by0) * f, (bx1 - bx0) * f
    out_dt = np.dtype(plan.out_dtype)
    n_extra = ("std" in plan.extras) + (plan.n_members if "members" in plan.extras else 0)

    # every (ty, tx) pair is a tile; gather the windows
    pairs = [(i, j) for i in range(len(ty.starts)) for j in range(len(tx.starts))]
    xs, ws, ms, gs, todo = [], [], [], [], []
    for i, j in pairs:
        xt = _take(x, -2, ty.starts[i], ty.width, vy0, py)
        xt = _take(xt, -1, tx.starts[j], tx.width, vx0, px)
        if not np.isfinite(xt).any():
            continue  # all land: the output stays NaN
        todo.append((i, j))
        xs.append(xt)
        if w2 is not None:
            wt = _fine_take(w2, -2, ty.starts[i], ty.width, vy0, py, f)
            ws.append(_fine_take(wt, -1, tx.starts[j], tx.width, vx0, px, f))
        elif wy is not None and wx is not None:
            a = _fine_take(wy, 0, ty.starts[i], ty.width, vy0, py, f)
            b = _fine_take(wx, 0, tx.starts[j], tx.width, vx0, px, f)
            ws.append(a[:, None] * b[None, :])
        if fmask is not None:
            mt = _fine_take(fmask, -2, ty.starts[i], ty.width, vy0, py, f)
            ms.append(_fine_take(mt, -1, tx.starts[j], tx.width, vx0, px, f))
        if guide is not None:
            gt = _fine_take(guide, -2, ty.starts[i], ty.width, vy0, py, f)
            gs.append(_fine_take(gt, -1, tx.starts[j], tx.width, vx0, px, f))

    shape = (*lead, cy, cx)
    fine = np.full(shape, np.nan, dtype=np.float64 if not det else out_dt)
    std = np.full(shape, np.nan, dtype=out_dt) if "std" in plan.extras else None
    members = (
        np.full((plan.n_members, *shape), np.nan, dtype=np.float64 if not det else out_dt)
        if "members" in plan.extras
        else None
    )
    wsum = np.zeros((cy, cx)) if not det else None
    need_members = "members" in plan.extras or ("std" in plan.extras and not det)
    if need_members and members is None:
        members = np.full((plan.n_members, *shape), np.nan, dtype=np.float64)

    if todo:
        dev = _resolve_device(plan.device)
        nd = len(lead)
        xb_all = np.stack(xs)
        wb_all = None if not ws else np.stack(ws).reshape(len(ws), *([1] * nd), *ws[0].shape)
        mb_all = None if not ms else np.stack(ms).reshape(len(ms), *([1] * nd), *ms[0].shape)
        gb_all = None
        if gs:  # (T, ..., C, fy, fx): a static guide gets leading dims of 1
            gb_all = np.stack(gs)
            if gb_all.ndim == 4 and nd:
                gb_all = gb_all.reshape(len(gs), *([1] * nd), *gb_all.shape[1:])
        per_tile = int(np.prod(xb_all.shape[1:])) * f * f
        step = len(todo) if dev.startswith("cuda") else max(1, CPU_BATCH_CELLS // per_tile)
        limit: dict[str, int] = {}
        for s0 in range(0, len(todo), step):
            sl = slice(s0, s0 + step)
            rf, rs, rm = _call(
                xb_all[sl],
                None if wb_all is None else wb_all[sl],
                None if mb_all is None else mb_all[sl],
                None if gb_all is None else gb_all[sl],
                plan,
                dev,
                method,
                limit,
            )
            for k, (i, j) in enumerate(todo[sl]):
                k0y, k1y = ty.keep[i]
                k0x, k1x = tx.keep[j]
                if k1y <= k0y or k1x <= k0x:
                    continue
                # output rows of the tile's window that land in the block
                src = (
                    slice((k0y - ty.starts[i]) * f, (k1y - ty.starts[i]) * f),
                    slice((k0x - tx.starts[j]) * f, (k1x - tx.starts[j]) * f),
                )
                dst = (
                    slice((k0y - by0) * f, (k1y - by0) * f),
                    slice((k0x - bx0) * f, (k1x - bx0) * f),
                )
                if det:
                    fine[(..., *dst)] = rf[k][(..., *src)]
                    if std is not None and rs is not None:
                        std[(..., *dst)] = rs[k][(..., *src)]
                    if members is not None and rm is not None:
                        members[(..., *dst)] = rm[:, k][(..., *src)]
                    continue
                wgt = (
                    _tile_weight(ty, i, k0y, k1y, f, plan.overlap)[:, None]
                    * _tile_weight(tx, j, k0x, k1x, f, plan.overlap)[None, :]
                )
                assert wsum is not None
                first = wsum[dst] == 0
                wsum[dst] += wgt
                _accumulate(fine, dst, rf[k][(..., *src)], wgt, first)
                if members is not None and rm is not None:
                    _accumulate(members, dst, rm[:, k][(..., *src)], wgt, first)

    if not det and todo:
        assert wsum is not None
        fine = _finish_blend(fine, wsum, x, w2, wy, wx, fmask, plan, (by0, by1, bx0, bx1))
        if members is not None:
            members = _finish_blend(members, wsum, x, w2, wy, wx, fmask, plan, (by0, by1, bx0, bx1))
            if std is not None:
                std = (
                    members.std(axis=0, ddof=1)
                    if members.shape[0] > 1
                    else np.full(shape, np.nan, out_dt)
                ).astype(out_dt)
        fine = fine.astype(out_dt)
        if members is not None:
            members = members.astype(out_dt)
    fine = fine.astype(out_dt, copy=False)
    if not plan.extras:
        return fine
    outs = [fine[None]]
    if "std" in plan.extras:
        assert std is not None
        outs.append(std.astype(out_dt, copy=False)[None])
    if "members" in plan.extras:
        assert members is not None
        outs.append(members.astype(out_dt, copy=False))
    res = np.concatenate(outs, axis=0)
    assert res.shape[0] == 1 + n_extra
    return res


def _tile_weight(t: _Window, i: int, k0: int, k1: int, f: int, overlap: int) -> np.ndarray:
    """Blending weights of tile ``i`` over the fine cells of its kept range ``[k0, k1)``."""
    a, c = t.core[i]
    e0 = a - overlap if t.left[i] else a
    e1 = c + overlap if t.right[i] else c
    w = blend_weights((e1 - e0) * f, f, overlap, left=t.left[i], right=t.right[i])
    return w[(k0 - e0) * f : (k1 - e0) * f]


def _accumulate(
    acc: np.ndarray, dst: tuple[slice, slice], val: np.ndarray, wgt: np.ndarray, first: Any
) -> None:
    """``acc[dst] += wgt * val`` with NaN kept where ``val`` is NaN (land, masked cells)."""
    cur = acc[(..., *dst)]
    v = np.asarray(val, np.float64)
    add = np.where(np.isnan(v), 0.0, v) * wgt
    base = np.where(first, 0.0, cur)
    out = base + add
    acc[(..., *dst)] = np.where(np.isnan(v), np.nan, out)


def _finish_blend(
    acc: np.ndarray,
    wsum: np.ndarray,
    x: np.ndarray,
    w2: np.ndarray | None,
    wy: np.ndarray | None,
    wx: np.ndarray | None,
    fmask: np.ndarray | None,
    plan: _Plan,
    core: tuple[int, int, int, int],
) -> np.ndarray:
    """Normalise the blended sums and enforce conservation on the block's own cells."""
    from .conserve import enforce

    f = plan.factor
    by0, by1, bx0, bx1 = core
    ay, ax = plan.ay, plan.ax
    ly = ay.depth if by0 > 0 else 0
    lx = ax.depth if (ax.periodic or bx0 > 0) else 0
    whole_x = ax.periodic and not ax.chunked
    ox = bx0 if whole_x else lx
    xc = x[..., ly : ly + by1 - by0, ox : ox + bx1 - bx0]
    fy = slice(ly * f, (ly + by1 - by0) * f)
    fx = slice(ox * f, (ox + bx1 - bx0) * f)
    wc: np.ndarray | None = None
    if w2 is not None:
        wc = w2[fy, fx]
    elif wy is not None and wx is not None:
        wc = wy[fy][:, None] * wx[fx][None, :]
    mc = None if fmask is None else fmask[fy, fx]
    blended = acc / np.where(wsum > 0, wsum, 1.0)
    return enforce(
        blended,
        np.asarray(xc, np.float64),
        f,
        plan.mode,
        weights=wc,
        mask=mc,
        bounds=plan.bounds,
        validate=False,
    )


# ------------------------------------------------------------------------------------------
# public entry point
# ------------------------------------------------------------------------------------------
def downscale_tiled(
    x: Any,
    *,
    factor: int,
    method: str | Method = "bicubic",
    conserve: ConserveMode | None = "additive",
    bounds: tuple[float | None, float | None] | None = None,
    weights: FineWeights = None,
    mask: np.ndarray | None = None,
    periodic: bool = False,
    tile_size: int | None = None,
    halo: int | None = None,
    overlap: int | None = None,
    device: str | None = None,
    dtype: str | None = None,
    name: str = "input",
    extras: tuple[Extra, ...] = (),
    guide: Any = None,
    guide_names: tuple[str, ...] | None = None,
    **method_options: Any,
) -> Any:
    """Downscale ``x`` tile by tile (and chunk by chunk), conserving every coarse cell.

    Parameters
    ----------
    x : numpy.ndarray or dask.array.Array, shape ``(..., ny, nx)``
        Coarse field; NaN marks masked cells.  A dask array may be chunked along any axis.
    factor : int
        Refinement factor (>= 2).
    method : str or Method
        Registry name or method object.
    conserve : {"additive", "multiplicative", "bounded", None}
    bounds : (lower, upper), optional
        For ``conserve="bounded"``.
    weights : ndarray ``(ny*f, nx*f)``, pair of ndarrays ``((ny*f,), (nx*f,))`` or None
        Fine cell weights, whole or as separable factors (``w = wy[:, None] * wx[None, :]``,
        see :func:`xsr.grid.cell_area_factors`); None for uniform weights.
    mask : ndarray of bool, shape ``(ny*f, nx*f)``, optional
        Valid fine cells.
    periodic : bool
        Whether the last axis wraps around (global longitude).
    tile_size : int, optional
        Largest tile edge in fine cells, halo not included (rounded down to whole coarse
        cells, at least one); default :func:`xsr.set_options` ``tile_size``, else one tile
        per chunk.
    halo : int, optional
        Coarse cells of context on each side of a tile; default ``2 * method.halo``
        (``method.halo`` for methods that handle NaN themselves).
    overlap : int, optional
        Coarse cells by which tiles of stochastic methods extend into their neighbours to be
        blended; default ``max(method.halo, tile // 4)``, at most half the smallest tile.
        Deterministic methods use 0 unless it is given.
    device, dtype : str, optional
        Torch device and compute dtype (default: the global options, read now).
    name : str
        Name used in error messages.
    extras : tuple of {"std", "members"}
        Extra outputs of ensemble methods to return as well.
    guide : numpy.ndarray or dask.array.Array, optional
        Fine-scale covariates for methods that use them, ``(C, ny*f, nx*f)`` (static) or
        ``(..., C, ny*f, nx*f)`` with the leading dims of ``x``; cut into the same tiles and
        halos as ``x``.
    guide_names : tuple of str, optional
        Their names.
    **method_options
        Options of the method (when ``method`` is a name).

    Returns
    -------
    array, shape ``(..., ny*factor, nx*factor)``, or a tuple of arrays
        Of the type of ``x`` (a lazy dask array for a dask input, chunked like ``x``
        times ``factor``, after spatial chunks smaller than the halo are merged).  With
        ``extras``: ``(field, std, members)`` in the order asked, ``std`` of the field's
        shape and ``members`` of shape ``(M, ..., ny*factor, nx*factor)``.
    """
    from .conserve import check_options
    from .methods.registry import get_method
    from .options import OPTIONS, _validate

    f, mode, bnds = check_options(factor, conserve, bounds)
    m = get_method(method, **method_options)
    if x.ndim < 2:
        raise OptionError(f"{name} must have at least 2 dimensions (y, x), got {x.shape}")
    ny, nx = int(x.shape[-2]), int(x.shape[-1])
    ts = OPTIONS["tile_size"] if tile_size is None else tile_size
    ts = _validate("tile_size", ts)
    tile = 0 if ts is None else max(1, int(ts) // f)
    h = (m.halo if m.handles_nan else 2 * m.halo) if halo is None else int(halo)
    if h < 0:
        raise OptionError(f"halo must be >= 0 coarse cells, got {halo!r}")
    stochastic = bool(getattr(m, "stochastic", False)) or (overlap is not None and overlap > 0)
    want = tuple(extras)
    for e in want:
        if e not in ("std", "members"):
            raise OptionError(f"extras may hold 'std' and 'members', got {e!r}")
    n_members = int(getattr(m, "n_members", 0)) if "members" in want or "std" in want else 0
    out_dtype = np.dtype(dtype) if dtype is not None else np.dtype(x.dtype)
    dev = device if device is not None else OPTIONS["device"]
    dt = dtype if dtype is not None else OPTIONS["dtype"]
    if dt is not None:
        out_dtype = np.dtype(dt)

    is_dask = _is_dask(x)
    if is_dask:
        ychunks, xchunks = tuple(x.chunks[-2]), tuple(x.chunks[-1])
    else:
        ychunks, xchunks = (ny,), (nx,)

    def lattice(n: int, chunks: tuple[int, ...]) -> tuple[np.ndarray, int]:
        size = tile if tile else max(chunks)
        b = split_axis(0, n, size)
        return b, int(np.diff(b).max())

    laty, tmaxy = lattice(ny, ychunks)
    latx, tmaxx = lattice(nx, xchunks)
    if stochastic:
        tmin = int(min(np.diff(laty).min(), np.diff(latx).min()))
        o = max(m.halo, max(tmaxy, tmaxx) // 4) if overlap is None else int(overlap)
        o = max(0, min(o, tmin // 2))
        dy = tmaxy + 2 * o + h
        dx = tmaxx + 2 * o + h
    else:
        o = 0
        dy = dx = h

    # spatial chunks must lend their neighbours a full halo: merge those that are too small
    if is_dask:
        ychunks = _merge_small(ychunks, dy) if len(ychunks) > 1 else ychunks
        xchunks = _merge_small(xchunks, dx) if len(xchunks) > 1 else xchunks
    depth_y = dy if len(ychunks) > 1 else 0
    depth_x = dx if len(xchunks) > 1 else 0

    plan = _Plan(
        factor=f,
        method=_spec_of(m),
        mode=mode,
        bounds=bnds,
        device=dev,
        dtype=dt,
        name=name,
        # deterministic methods split each chunk (tile 0: one tile a chunk); stochastic ones
        # use the global lattice
        ay=_Axis(ny, False, depth_y, len(ychunks) > 1, laty, tile),
        ax=_Axis(nx, bool(periodic), depth_x, len(xchunks) > 1, latx, tile),
        halo=h,
        overlap=o,
        stochastic=stochastic,
        extras=want,
        n_members=n_members,
        out_dtype=out_dtype.str,
        guide_names=tuple(guide_names or ()),
    )
    w2, wy, wx = _split_weights(weights, ny * f, nx * f)
    fmask = None if mask is None else np.asarray(mask, dtype=bool)
    if fmask is not None and fmask.shape != (ny * f, nx * f):
        raise OptionError(f"mask must have shape {(ny * f, nx * f)}, got {fmask.shape}")

    if guide is not None:
        gshape = tuple(guide.shape)
        if (
            len(gshape) < 3
            or gshape[-2:] != (ny * f, nx * f)
            or (len(gshape) > 3 and gshape[:-3] != tuple(x.shape[:-2]))
        ):
            raise OptionError(
                f"guide must have shape (C, {ny * f}, {nx * f}) or (..., C, {ny * f}, "
                f"{nx * f}) with the leading dims of x {tuple(x.shape[:-2])}, got {gshape}"
            )
    if not is_dask:
        g_np = None if guide is None else np.asarray(guide)
        res = _block(
            np.asarray(x), w2, wy, wx, fmask, g_np, np.arange(ny), np.arange(nx), plan=plan
        )
    else:
        res = _dask_tiled(x, w2, wy, wx, fmask, guide, plan, ychunks, xchunks)
    if not want:
        return res
    parts = [res[0]]
    k = 1
    if "std" in want:
        parts.append(res[k])
        k += 1
    if "members" in want:
        parts.append(res[k : k + n_members])
    return tuple(parts)


def _is_dask(x: Any) -> bool:
    try:
        import dask.array as da
    except ImportError:  # pragma: no cover
        return False
    return isinstance(x, da.Array)


def _split_weights(
    weights: FineWeights, fy: int, fx: int
) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    if weights is None:
        return None, None, None
    if isinstance(weights, tuple):
        wy, wx = (np.asarray(w, np.float64) for w in weights)
        if wy.shape != (fy,) or wx.shape != (fx,):
            raise OptionError(
                f"separable weights must have shapes ({fy},) and ({fx},), got {wy.shape} and "
                f"{wx.shape}"
            )
        return None, wy, wx
    w = np.asarray(weights, np.float64)
    if w.shape != (fy, fx):
        w = np.broadcast_to(w, (fy, fx))
    return w, None, None


def _dask_tiled(
    x: Any,
    w2: np.ndarray | None,
    wy: np.ndarray | None,
    wx: np.ndarray | None,
    fmask: np.ndarray | None,
    guide: Any,
    plan: _Plan,
    ychunks: tuple[int, ...],
    xchunks: tuple[int, ...],
) -> Any:
    """The lazy graph: halos with :func:`dask.array.overlap.overlap`, then one task a block."""
    import dask
    import dask.array as da

    f = plan.factor
    nd = x.ndim
    x = x.rechunk({nd - 2: ychunks, nd - 1: xchunks})
    bnd_x = "periodic" if plan.ax.periodic else "none"
    dy, dx = plan.ay.depth, plan.ax.depth

    def halo(a: Any, axes: tuple[int, int] | tuple[int], scale: int) -> Any:
        depth = {i: 0 for i in range(a.ndim)}
        boundary = {i: "none" for i in range(a.ndim)}
        if len(axes) == 2:
            depth[axes[0]], depth[axes[1]] = dy * scale, dx * scale
            boundary[axes[1]] = bnd_x
        if not any(depth.values()):
            return a
        return da.overlap.overlap(a, depth=depth, boundary=boundary)

    def halo_1d(a: Any, d: int, boundary: str) -> Any:
        if d == 0:
            return a
        return da.overlap.overlap(a, depth={0: d * f}, boundary={0: boundary})

    xo = halo(x, (nd - 2, nd - 1), 1)
    fyc = tuple(c * f for c in ychunks)
    fxc = tuple(c * f for c in xchunks)
    lead = tuple(range(nd - 2))
    iy_l, ix_l = nd - 2, nd - 1
    args: list[Any] = [xo, (*lead, iy_l, ix_l)]
    if w2 is not None:
        args += [halo(da.from_array(w2, chunks=(fyc, fxc)), (0, 1), f), (iy_l, ix_l)]
    else:
        args += [None, None]
    if wy is not None and wx is not None:
        args += [halo_1d(da.from_array(wy, chunks=(fyc,)), dy, "none"), (iy_l,)]
        args += [halo_1d(da.from_array(wx, chunks=(fxc,)), dx, bnd_x), (ix_l,)]
    else:
        args += [None, None, None, None]
    if fmask is not None:
        args += [halo(da.from_array(fmask, chunks=(fyc, fxc)), (0, 1), f), (iy_l, ix_l)]
    else:
        args += [None, None]
    if guide is not None:
        # the channels in one chunk (a contracted index, passed whole); the leading dims
        # chunked as x's, the fine grid as x's times the factor, with the same halos
        c_l = nd + 1
        g = guide if _is_dask(guide) else da.from_array(guide)
        gl = g.ndim - 3
        gchunks = (*x.chunks[:gl], -1, fyc, fxc)
        g = halo(g.rechunk(gchunks), (g.ndim - 2, g.ndim - 1), f)
        args += [g, (*lead[:gl], c_l, iy_l, ix_l)]
    else:
        args += [None, None]
    args += [da.arange(plan.ay.n, chunks=(ychunks,)), (iy_l,)]
    args += [da.arange(plan.ax.n, chunks=(xchunks,)), (ix_l,)]
    # a method that its name and options do not rebuild travels as one graph key (sent to
    # each worker once), not inside every task
    if isinstance(plan.method, _MethodSpec):
        args += [None, None]
    else:
        args += [dask.delayed(plan.method, pure=True), None]
        plan = dataclasses.replace(plan, method=None)

    nk = 0
    if plan.extras:
        nk = 1 + ("std" in plan.extras) + (plan.n_members if "members" in plan.extras else 0)
    out_ind: tuple[int, ...] = (*lead, iy_l, ix_l)
    new_axes: dict[int, int] = {}
    if nk:
        out_ind = (nd, *out_ind)
        new_axes = {nd: nk}
    meta = np.empty((0,) * (len(out_ind)), dtype=np.dtype(plan.out_dtype))
    return da.blockwise(
        _block_task,
        out_ind,
        *args,
        plan=plan,
        adjust_chunks={iy_l: fyc, ix_l: fxc},
        new_axes=new_axes,
        align_arrays=False,
        concatenate=True,
        dtype=np.dtype(plan.out_dtype),
        meta=meta,
        token="xsr-downscale",
    )


def _block_task(*args: Any, plan: _Plan) -> np.ndarray:
    x, w2, wy, wx, fmask, guide, iy, ix, method = args
    return _block(
        np.asarray(x),
        None if w2 is None else np.asarray(w2),
        None if wy is None else np.asarray(wy),
        None if wx is None else np.asarray(wx),
        None if fmask is None else np.asarray(fmask),
        None if guide is None else np.asarray(guide),
        np.asarray(iy),
        np.asarray(ix),
        plan=plan,
        method=method,
    )
