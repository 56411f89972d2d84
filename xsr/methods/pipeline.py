"""The array-level downscaling pipeline: every method wrapped the same way.

:func:`downscale_array` validates the request, fills NaN cells (:func:`fill_nan`) for methods
that need it, wraps a periodic x axis, calls the method (:mod:`xsr.methods.base`
interface), checks its output, masks, and applies the enforcement operator of
:mod:`xsr.conserve` -- to the field and to each ensemble member.  No xarray here: numpy arrays
or torch tensors in, the same type out.
"""

from __future__ import annotations

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
    import torch.nn.functional as F

    valid = torch.isfinite(x)
    if bool(valid.all()):
        return x
    *lead, ny, nx = x.shape
    v = torch.where(valid, x, torch.zeros((), dtype=x.dtype, device=x.device))
    v = v.reshape(-1, 1, ny, nx)
    m = valid.reshape(-1, 1, ny, nx).to(x.dtype)
    kernel = torch.ones(1, 1, 3, 3, dtype=x.dtype, device=x.device)
    for _ in range(iterations):
        s = F.conv2d(F.pad(v * m, (1, 1, 1, 1)), kernel)
        c = F.conv2d(F.pad(m, (1, 1, 1, 1)), kernel)
        new = (m == 0) & (c > 0)
        if not bool(new.any()):
            break
        v = torch.where(new, s / torch.where(c > 0, c, torch.ones_like(c)), v)
        m = torch.where(new, torch.ones_like(m), m)
    flat_m = m.reshape(m.shape[0], -1)
    flat_v = v.reshape(v.shape[0], -1)
    count = flat_m.sum(dim=1).clamp(min=1)
    mean = (flat_v * flat_m).sum(dim=1) / count
    v = torch.where(m > 0, v, mean[:, None, None, None])
    return v.reshape(*lead, ny, nx)


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
    weights : array, optional
        Fine cell weights (areas), broadcastable to ``(..., ny*f, nx*f)``.
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

    Returns
    -------
    numpy.ndarray or torch.Tensor, shape ``(..., ny*factor, nx*factor)``
        Same type as ``x``; dtype of ``x`` (or ``dtype``).  With ``extras=True``, a
        :class:`Downscaled` holding such arrays: ``fine``, ``std`` (or None) and ``members``
        ``(M, ..., ny*factor, nx*factor)`` (or None); the members are each enforced, the
        field is the enforced mean and ``std`` the spread of the enforced members.
    """
    import torch

    from ..conserve import check_coarse, check_options, enforce, upsample
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
    g = min(h + m.halo + 1, xt.shape[-1]) if h and not m.handles_nan else h
    xin = torch.cat([xt[..., -g:], xt, xt[..., :g]], dim=-1) if g else xt
    if not m.handles_nan:
        xin = fill_nan(xin, m.halo + 1)
    if g > h:
        xin = xin[..., g - h : xin.shape[-1] - (g - h)]

    ny, nx = xt.shape[-2:]
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

    fine_mask = None
    if mask is not None:
        fine_mask = torch.as_tensor(
            np.asarray(mask) if not isinstance(mask, torch.Tensor) else mask
        )
        fine_mask = fine_mask.to(device=dev, dtype=torch.bool)
    context: dict[str, Any] = {}
    if m.handles_nan or gt is not None:
        context = {
            "weights": _wrap_fine(weights, h * f, dev),
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
    # Fine cells outside ``keep`` become NaN in enforce (through the NaN coarse cell or the
    # user's fine mask); only the user's mask needs passing, which keeps enforce on its fast
    # path when the method's output is finite everywhere.
    keep = upsample(valid, f)
    if fine_mask is not None:
        keep = keep & fine_mask
        lost = valid & ~block_any(keep, f)
        if bool(lost.any()):
            raise InputValueError(
                f"the fine mask leaves no valid fine cell in {int(lost.sum())} coarse cell(s) "
                f"of {name} that hold values, whose means could not be conserved; make the "
                "mask True on at least one fine cell of every coarse cell with data, or set "
                "those coarse cells to NaN"
            )
    if weights is not None:
        wt = torch.as_tensor(
            np.asarray(weights) if not isinstance(weights, torch.Tensor) else weights
        )
        if not bool((wt > 0).all()):
            # zero weights: a block with values needs a valid fine cell of positive weight
            pos = torch.broadcast_to((wt > 0).to(keep.device), keep.shape)
            lost = valid & ~block_any(keep & pos, f)
            if bool(lost.any()):
                raise InputValueError(
                    f"{int(lost.sum())} coarse cell(s) of {name} hold values but every valid "
                    "fine cell in them has zero weight, so their mean cannot be conserved; "
                    "give them positive weights (cell areas), or set those coarse cells to NaN"
                )
    if not bool(torch.isfinite(y).all()) and bool((keep & ~torch.isfinite(y)).any()):
        raise MethodError(
            f"method {m!r} produced non-finite values inside the valid region of {name}; "
            "this is a bug in the method: please report it"
        )
    out = enforce(y, xt, f, mode, weights=weights, mask=fine_mask, bounds=bnds, validate=False)
    final = out_dtype if dtype is None and OPTIONS["dtype"] is None else work
    out = out.to(final)

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
            weights=weights,
            mask=fine_mask,
            bounds=bnds,
            validate=False,
        )
        std = members.std(dim=0, correction=1) if members.shape[0] > 1 else None
        members = members.to(final)
        std = None if std is None else std.to(final)
    return Downscaled(fine=_ret(out), std=_ret(std), members=_ret(members))


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
