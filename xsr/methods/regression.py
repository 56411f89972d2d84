"""Guided regression downscaling (``method="regression"``): the "lapse-rate" method.

The coarse field is regressed on fine-scale covariates (the *guide*: terrain elevation for
temperature, say), fitted on the coarse data themselves one level coarser; the fitted
coefficients times the fine-scale anomaly of the guide are added to the bicubic
interpolation of the field, with a shrinkage chosen by cross-validation and a significance
threshold that drops guides without information, and the pipeline's enforcement operator
makes the result exactly conservative:

.. math::

    \\hat y = \\mathrm{bicubic}(x) + s \\sum_c b_c\\,
        \\bigl(G_c - \\mathrm{bicubic}(\\overline{G_c})\\bigr)

No training, no iteration: a few convolutions and one small linear solve per field (or per
coarse cell for the local variant).  See :class:`Regression` and ``docs/guided.md``.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal, NamedTuple

from .._validate import check_choice, check_int, check_number
from ..exceptions import MethodError, OptionError
from .base import Method

if TYPE_CHECKING:
    import torch

__all__ = ["Regression", "RegressionFit", "regression_downscale"]

RegressionMode = Literal["auto", "global", "local"]
RegressionFitKind = Literal["detail", "coarse"]

#: Window radii (half-width of the box filter of :func:`_window`, in cells of the grid fitted) that
#: ``mode="auto"`` tries besides the global fit when ``radius`` is not given.
AUTO_RADII: tuple[int, ...] = (3, 6)
#: Penalty pulling local coefficients towards the field's global ones, relative to the
#: global variance of each guide: where the guide hardly varies inside the window (flat
#: terrain), the local fit falls back on the global coefficient.
LOCAL_PENALTY = 0.1
#: A local fit is chosen over the global one only if its cross-validated squared error is
#: lower by this fraction of the unguided error (local coefficients are noisier).
LOCAL_MARGIN = 0.02
#: Side, in cells one level coarser, of the checkerboard tiles of the two-fold spatial
#: cross-validation of ``fit="detail"``.
CV_TILE = 3


@dataclass
class RegressionFit:
    """Diagnostics of a regression downscaling, one entry per field (2-D slice).

    Attributes
    ----------
    names : tuple of str
        The guide names, in channel order.
    coef : torch.Tensor, shape ``(B, C)``
        Fitted coefficient of each guide (units of the field per unit of the guide), before
        shrinkage; for a local fit, the area-weighted mean over the valid coarse cells.
        ``B`` is the product of the leading dims of the field.
    shrinkage : torch.Tensor, shape ``(B,)``
        The factor ``s`` in [0, 1] applied to the guide term (0: the bicubic result).
    choice : tuple of str
        The fit used for each field: ``"global"`` or ``"local:R"`` (window of radius ``R``
        cells), or ``"none"`` (no guide term: ``s = 0`` or every coefficient dropped as
        not significant).
    cv_ratio : torch.Tensor, shape ``(B,)``
        Cross-validated squared error of the guided prediction of the field's detail one
        level coarser, relative to the unguided one (below 1: the guide helps); NaN where
        no cross-validation ran.
    reason : tuple of (str or None)
        Why a field got ``s = 0`` without a fit (too few cells), else None.
    coef_map : torch.Tensor or None, shape ``(B, C, ny, nx)``
        The local coefficients on the coarse grid (None when every field used a global fit).
    """

    names: tuple[str, ...]
    coef: torch.Tensor
    shrinkage: torch.Tensor
    choice: tuple[str, ...]
    cv_ratio: torch.Tensor
    reason: tuple[str | None, ...] = field(default_factory=tuple)
    coef_map: torch.Tensor | None = None


# --------------------------------------------------------------------------------------------
# helpers (torch, no numpy round trips)
# --------------------------------------------------------------------------------------------
def _bicubic(t: torch.Tensor, factor: int) -> torch.Tensor:
    """The interpolation of ``method="bicubic"`` over the last two axes of ``t``."""
    from .interp import Bicubic

    return Bicubic().upscale(t, factor)


def _block_sum(t: torch.Tensor, f: int) -> torch.Tensor:
    *lead, ny, nx = t.shape
    return t.reshape(*lead, ny // f, f, nx // f, f).sum(dim=(-3, -1))


def _up(t: torch.Tensor, f: int) -> torch.Tensor:
    """Each coarse cell repeated ``f x f`` times (a view-based repeat)."""
    *lead, ny, nx = t.shape
    return t[..., :, None, :, None].expand(*lead, ny, f, nx, f).reshape(*lead, ny * f, nx * f)


def _batched(a: Any, lead: tuple[int, ...], hw: tuple[int, int], dev: Any, dtype: Any) -> Any:
    """A fine-grid array broadcastable to ``(*lead, H, W)`` as ``(1 or B, H, W)``, or None."""
    import numpy as np
    import torch

    if a is None:
        return None
    t = torch.as_tensor(np.asarray(a) if not isinstance(a, torch.Tensor) else a)
    t = t.to(device=dev, dtype=dtype)
    if t.ndim <= 2 or math.prod(t.shape[:-2]) == 1:
        t2 = t.reshape(t.shape[-2:]) if t.ndim >= 2 else t
        return torch.broadcast_to(t2, hw)[None]
    B = math.prod(lead)
    return torch.broadcast_to(t, (*lead, *hw)).reshape(B, *hw)


def _box(t: torch.Tensor, h: int, dim: int) -> torch.Tensor:
    """Sum over ``2h + 1`` cells along ``dim`` (cells outside the grid count 0), by cumsum."""
    import torch
    import torch.nn.functional as F

    dim = dim % t.ndim
    n = t.shape[dim]
    last = t.ndim - 1
    if dim != last:
        t = t.transpose(dim, last)
    # h + 1 zeros before and h after: the window of cell i is (i, i + 2h + 1] of the cumsum
    c = torch.cumsum(F.pad(t, (h + 1, h)), dim=-1)
    out = c[..., 2 * h + 1 : 2 * h + 1 + n] - c[..., :n]
    return out.transpose(dim, last) if dim != last else out


def _window(t: torch.Tensor, radius: int) -> torch.Tensor:
    """Smoothing of ``(..., y, x)`` by the local-regression window: three passes of a
    ``(2 radius + 1)``-cell box filter along each axis (close to a Gaussian of standard
    deviation ``sqrt(radius (radius + 1))``), zero outside the grid; cost independent of
    the radius."""
    for dim in (-2, -1):
        for _ in range(3):
            t = _box(t, radius, dim)
    return t


def _solve(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a^-1 b`` for ``a (..., C, C)`` and ``b (..., C)`` (closed form for C = 1)."""
    import torch

    if a.shape[-1] == 1:
        return b / a[..., 0]
    return torch.linalg.solve(a, b[..., None])[..., 0]


class _Global(NamedTuple):
    """A field's global regression: ``coef``, guide means ``mg`` and variances ``var``
    ``(B, C)``, field means ``mx (B,)`` and the t statistics of the coefficients ``t (B, C)``."""

    coef: torch.Tensor
    mg: torch.Tensor
    mx: torch.Tensor
    var: torch.Tensor
    t: torch.Tensor


def _fit_global(x: torch.Tensor, g: torch.Tensor, w: torch.Tensor, ridge: float) -> _Global:
    """Weighted ridge regression of ``x`` on ``g`` with an intercept, one per field.

    ``x (B, y, x)`` (0 where ``w`` is 0), ``g (1|B, C, y, x)``, ``w (B, y, x)`` >= 0.  The
    penalty ``ridge`` acts on standardised guides (correlation matrix + ridge * I), so a
    constant or collinear guide gets a finite (zero or shared) coefficient.  The t statistics
    use the sandwich variance of weighted least squares with independent residuals.
    """
    import torch

    tiny = torch.finfo(w.dtype).tiny
    n = w.sum(dim=(-2, -1)).clamp(min=tiny)  # (B,)
    mg = (g * w[:, None]).sum(dim=(-2, -1)) / n[:, None]  # (B, C)
    mx = (x * w).sum(dim=(-2, -1)) / n
    gc = g - mg[..., None, None]
    xc = torch.where(w > 0, x - mx[:, None, None], torch.zeros((), dtype=w.dtype, device=w.device))
    cgg = torch.einsum("bcij,bdij,bij->bcd", gc, gc, w) / n[:, None, None]
    cgx = torch.einsum("bcij,bij,bij->bc", gc, xc, w) / n[:, None]
    var = torch.diagonal(cgg, dim1=-2, dim2=-1)
    sd = torch.sqrt(var.clamp(min=0))
    ok = sd > 1e-12 * sd.amax(dim=-1, keepdim=True).clamp(min=tiny)
    sds = torch.where(ok, sd, torch.ones_like(sd))
    corr = cgg / (sds[:, :, None] * sds[:, None, :])
    eye = torch.eye(g.shape[1], dtype=w.dtype, device=w.device)
    a = corr + max(ridge, 1e-10) * eye
    beta = _solve(a, cgx / sds)
    coef = torch.nan_to_num(torch.where(ok, beta / sds, torch.zeros_like(beta)))
    # t statistics: residual variance with the effective sample size of the weights, and
    # the sandwich a^-1 (sum w^2 z z^T / n^2) a^-1 sigma^2 on the standardised guides z
    res = xc - torch.einsum("bc,bcij->bij", coef, gc)
    res = torch.where(w > 0, res, torch.zeros_like(res))
    n_eff = n * n / (w * w).sum(dim=(-2, -1)).clamp(min=tiny)
    dof = (n_eff - g.shape[1] - 1).clamp(min=1.0)
    sigma2 = (w * res * res).sum(dim=(-2, -1)) / n * n_eff / dof
    z = gc / sds[..., None, None]
    meat = torch.einsum("bcij,bdij,bij->bcd", z, z, w * w) / (n * n)[:, None, None]
    ainv = torch.linalg.inv(a)
    cov = ainv @ meat @ ainv * sigma2[:, None, None]
    se = torch.sqrt(torch.diagonal(cov, dim1=-2, dim2=-1).clamp(min=0)) / sds
    t = torch.where(ok & (se > 0), coef / torch.where(se > 0, se, torch.ones_like(se)), 0.0)
    return _Global(coef, mg, mx, var, torch.nan_to_num(t))


def _local_sums(
    x: torch.Tensor, g: torch.Tensor, w: torch.Tensor, glob: _Global, radius: int
) -> torch.Tensor:
    """Window sums (:func:`_window`) of the weighted moments of ``x`` and ``g`` (centred
    on the means of ``glob``): ``(B, K, y, x)``, linear in ``w``."""
    import torch

    B, C = glob.coef.shape
    ny, nx = x.shape[-2:]
    gc = (g - glob.mg[..., None, None]).expand(B, C, ny, nx)
    xc = x - glob.mx[:, None, None]
    pairs = [(c, d) for c in range(C) for d in range(c, C)]
    chans = [w[:, None], gc * w[:, None], (xc * w)[:, None]]
    chans += [(gc[:, c] * gc[:, d] * w)[:, None] for c, d in pairs]
    chans += [gc * (xc * w)[:, None]]
    return _window(torch.cat(chans, dim=1), radius)


def _local_solve(s: torch.Tensor, glob: _Global) -> torch.Tensor:
    """Geographically weighted regression from window sums ``s`` (:func:`_local_sums`):
    coefficients ``(B, C, y, x)``, pulled towards the global fit ``glob`` by
    :data:`LOCAL_PENALTY` times the global variance of each guide."""
    import torch

    B, C = glob.coef.shape
    ny, nx = s.shape[-2:]
    pairs = [(c, d) for c in range(C) for d in range(c, C)]
    s0 = s[:, 0]
    good = s0 > 1e-6 * s0.amax(dim=(-2, -1), keepdim=True)
    s0s = torch.where(good, s0, torch.ones_like(s0))
    mean_g = s[:, 1 : 1 + C] / s0s[:, None]
    mean_x = s[:, 1 + C] / s0s
    k = 2 + C
    cgg = torch.empty(B, ny, nx, C, C, dtype=s.dtype, device=s.device)
    for j, (c, d) in enumerate(pairs):
        v = s[:, k + j] / s0s - mean_g[:, c] * mean_g[:, d]
        cgg[..., c, d] = v
        cgg[..., d, c] = v
    cgx = (s[:, k + len(pairs) :] / s0s[:, None] - mean_g * mean_x[:, None]).permute(0, 2, 3, 1)
    pen = LOCAL_PENALTY * glob.var.clamp(min=0)  # (B, C)
    pen = torch.where(pen > 0, pen, torch.ones_like(pen))
    a = cgg + torch.diag_embed(pen)[:, None, None]
    rhs = cgx + (pen * glob.coef)[:, None, None]
    coef = _solve(a, rhs).permute(0, 3, 1, 2)  # (B, C, y, x)
    coef = torch.where(good[:, None], coef, glob.coef[..., None, None])
    return torch.nan_to_num(coef)


def _fit_local(
    x: torch.Tensor, g: torch.Tensor, w: torch.Tensor, radius: int, glob: _Global
) -> torch.Tensor:
    """Geographically weighted regression of ``x`` on ``g`` with weights ``w`` in windows of
    ``radius`` cells: ``(B, C, y, x)``."""
    return _local_solve(_local_sums(x, g, w, glob, radius), glob)


def _significance(t: torch.Tensor, z: float) -> torch.Tensor:
    """Factor of each coefficient from its t statistic: 0 unless ``|t| > z``, then the
    James-Stein factor ``1 - 1 / t^2`` (1 when ``z = 0``)."""
    import torch

    if z == 0:
        return torch.ones_like(t)
    t2 = t * t
    return torch.where(t2 > z * z, 1.0 - 1.0 / torch.where(t2 > 0, t2, 1.0), 0.0)


def _fit(
    x: torch.Tensor,
    g: torch.Tensor,
    w: torch.Tensor,
    radius: int | None,
    z: float,
    glob: _Global,
) -> torch.Tensor:
    """Coefficients ``(B, C, 1, 1)`` (global) or ``(B, C, y, x)`` (local), each multiplied
    by the James-Stein factor of its field's global t statistic."""
    k = _significance(glob.t, z)[..., None, None]
    if radius is None:
        return glob.coef[..., None, None] * k
    return _fit_local(x, g, w, radius, glob) * k


def _coef_fine(coef: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """Coefficients on a finer grid: bilinear (a local map) or as they are (global)."""
    import torch.nn.functional as F

    if coef.shape[-2:] == (1, 1):
        return coef
    return F.interpolate(coef, size=hw, mode="bilinear", align_corners=False)


def _guide_mean(
    g: torch.Tensor, f: int, w: torch.Tensor | None, m: torch.Tensor | None
) -> torch.Tensor:
    """Area-weighted block mean of the guide over the valid fine cells (all cells where a
    block has none): ``(1|B, C, ny, nx)``."""
    import torch

    from ..conserve import block_mean

    w4 = None if w is None else w[:, None]
    m4 = None if m is None else m[:, None]
    gm = block_mean(g, f, weights=w4, mask=m4)
    if m is not None and not bool(torch.isfinite(gm).all()):
        gm = torch.where(torch.isfinite(gm), gm, block_mean(g, f, weights=w4))
    return gm


# --------------------------------------------------------------------------------------------
# the method
# --------------------------------------------------------------------------------------------
def regression_downscale(
    x: torch.Tensor,
    guide: torch.Tensor,
    factor: int,
    *,
    weights: Any = None,
    mask: Any = None,
    names: tuple[str, ...] | None = None,
    fit: RegressionFitKind = "detail",
    mode: RegressionMode = "auto",
    radius: int | None = None,
    shrinkage: str | float = "cv",
    ridge: float = 1e-3,
    significance: float = 3.0,
    min_cells: int = 24,
    fill_rings: int = 3,
) -> tuple[torch.Tensor, RegressionFit]:
    """The first guess of :class:`Regression` (not enforced) and its diagnostics.

    Parameters
    ----------
    x : torch.Tensor, shape ``(*lead, ny, nx)``
        Coarse field; NaN marks cells without data.
    guide : torch.Tensor, shape ``(*lead, C, ny*factor, nx*factor)``
        Finite fine-scale covariates (a static guide may be an expanded view: it is then
        processed once).
    factor : int
    weights, mask : tensor, optional
        Fine cell areas and valid fine cells, broadcastable to ``(*lead, NY, NX)``.
    names : tuple of str, optional
        Guide names, for the diagnostics.
    fit, mode, radius, shrinkage, ridge, significance, min_cells
        As in :class:`Regression`.
    fill_rings : int
        Rings of NaN cells filled from their neighbours before the interpolation.

    Returns
    -------
    (torch.Tensor, RegressionFit)
        The fine first guess ``(*lead, NY, NX)``, finite everywhere, in the dtype of ``x``,
        and the fitted coefficients, shrinkage and choices.
    """
    import torch

    from .pipeline import fill_nan

    f = int(factor)
    dev, dt = x.device, x.dtype
    work = torch.float32 if dev.type == "mps" else torch.float64
    zero = torch.zeros((), dtype=work, device=dev)
    *lead_l, ny, nx = x.shape
    lead = tuple(lead_l)
    B = math.prod(lead)
    NY, NX = ny * f, nx * f
    C = guide.shape[-3]
    names = tuple(names) if names else tuple(f"guide{i}" for i in range(C))

    # a static guide arrives as a view expanded over the leading dims: treat it once
    static = guide.ndim == 3 or all(
        guide.stride(i) == 0 or guide.shape[i] == 1 for i in range(len(lead))
    )
    if guide.ndim == 3:
        gb = guide[None]
    elif static:
        gb = guide[(0,) * len(lead)][None]
    else:
        gb = guide.reshape(B, C, NY, NX)
    gb = gb.to(device=dev, dtype=dt)
    xb = x.reshape(B, ny, nx)

    w = _batched(weights, lead, (NY, NX), dev, work)
    m = _batched(mask, lead, (NY, NX), dev, torch.bool)
    if w is None and m is None:
        wc = torch.full((1, ny, nx), float(f * f), dtype=work, device=dev)
    else:
        cell = torch.ones((), dtype=work, device=dev) if w is None else w
        if m is not None:
            cell = torch.where(m, cell, zero)
        wc = _block_sum(cell, f)  # coarse weights: area of the valid fine cells, (1|B, ny, nx)
    valid = torch.isfinite(xb) & (wc > 0)
    om = torch.where(valid, wc, zero)  # (B, ny, nx)
    xv = torch.where(valid, xb.to(work), zero)
    gbar = _guide_mean(gb, f, w, m).to(work)  # (1|B, C, ny, nx)

    # the candidate fits: global, and local windows
    cands: list[int | None] = []
    if mode in ("auto", "global"):
        cands.append(None)
    if mode in ("auto", "local"):
        radii = (radius,) if radius is not None else AUTO_RADII
        cands.extend(int(r) for r in radii)
    n_c = len(cands)
    s_fixed = None if shrinkage == "cv" else float(shrinkage)

    nvalid = valid.sum(dim=(-2, -1))  # (B,)
    need = max(min_cells, C + 2)
    ny2, nx2 = ny // 2, nx // 2
    fit_ok = nvalid >= need
    if fit == "coarse" and n_c == 1 and s_fixed is not None:
        band_ok = torch.ones(B, dtype=torch.bool, device=dev)  # no band needed
    else:
        band_ok = torch.zeros(B, dtype=torch.bool, device=dev)

    # one level coarser: predict the field from its 2 x 2 block means, without the guide
    # (p0, residual r) and with the guide's anomaly at that level (anom1)
    err = torch.full((n_c, B), float("inf"), dtype=work, device=dev)
    s_c = torch.zeros((n_c, B), dtype=work, device=dev)
    rr = torch.full((B,), float("nan"), dtype=work, device=dev)
    detail: list[torch.Tensor | None] = [None] * n_c
    if ny2 >= 2 and nx2 >= 2 and not bool(band_ok.all()):
        x1 = xv[:, : 2 * ny2, : 2 * nx2]
        om1 = om[:, : 2 * ny2, : 2 * nx2]
        g1 = gbar[..., : 2 * ny2, : 2 * nx2]
        v1 = om1 > 0
        w2 = _block_sum(om1, 2)
        v2 = w2 > 0
        w2s = torch.where(v2, w2, torch.ones_like(w2))
        x2 = _block_sum(om1 * x1, 2) / w2s
        g2 = _block_sum(om1[:, None] * g1, 2) / w2s[:, None]
        # blocks without valid cells: the plain block mean of the guide
        g2 = torch.where(v2[:, None], g2, _block_sum(g1, 2) / 4)
        x2v = torch.where(v2, x2, zero)
        x2n = torch.where(v2, x2, torch.full((), float("nan"), dtype=work, device=dev))
        p0 = _bicubic(fill_nan(x2n, fill_rings), 2)
        p0 = p0 + _up(x2 - _block_sum(om1 * p0, 2) / w2s, 2)
        r = torch.where(v1, x1 - p0, zero)
        rr = (om1 * r * r).sum(dim=(-2, -1))
        anom1 = g1 - _bicubic(g2, 2)  # (B, C, 2ny2, 2nx2)
        band_ok = (v2.sum(dim=(-2, -1)) >= need) & fit_ok

        def enforced(t: torch.Tensor) -> torch.Tensor:
            """``t (B, [C,] y1, x1)`` minus its block means over valid cells (the additive
            enforcement against 0 at this level)."""
            o = om1 if t.ndim == 3 else om1[:, None]
            ws = w2s if t.ndim == 3 else w2s[:, None]
            e = t - _up(_block_sum(o * t, 2) / ws, 2)
            return torch.where(v1 if t.ndim == 3 else v1[:, None], e, zero)

        if fit == "detail":
            ea = enforced(anom1)  # (B, C, y1, x1)
            globd = _fit_global(r, ea, om1, ridge)
            # two-fold spatial cross-validation: a checkerboard of tiles of CV_TILE x CV_TILE
            # coarser cells; each half is predicted by coefficients fitted on the other
            iy = torch.arange(2 * ny2, device=dev) // (2 * CV_TILE)
            ix = torch.arange(2 * nx2, device=dev) // (2 * CV_TILE)
            fold = (iy[:, None] + ix[None, :]) % 2 == 0
            gf = (_fit_global(r, ea, om1 * fold, ridge), _fit_global(r, ea, om1 * ~fold, ridge))
            kf = [_significance(gk.t, significance)[..., None, None] for gk in gf]
            kd = _significance(globd.t, significance)[..., None, None]
            hw1 = (2 * ny2, 2 * nx2)
            for i, rad in enumerate(cands):
                if rad is not None and radius is None and min(ny2, nx2) < rad:
                    continue  # a default window too wide for the grid: not a candidate
                if rad is None:
                    detail[i] = globd.coef[..., None, None] * kd
                    cfold = [gk.coef[..., None, None] * k for gk, k in zip(gf, kf)]
                else:
                    # the window sums are linear in the weights: the second fold's are the
                    # difference of the whole's and the first's
                    s_all = _local_sums(r, ea, om1, globd, rad)
                    s_one = _local_sums(r, ea, om1 * fold, globd, rad)
                    detail[i] = _local_solve(s_all, globd) * kd
                    cfold = [
                        _local_solve(s_one, gf[0]) * kf[0],
                        _local_solve(s_all - s_one, gf[1]) * kf[1],
                    ]
                # each fold's cells predicted by the coefficients of the other fold
                e_other = (_coef_fine(cfold[1], hw1) * ea).sum(dim=1)
                e_one = (_coef_fine(cfold[0], hw1) * ea).sum(dim=1)
                e = torch.where(fold, e_other, e_one)
                re = (om1 * r * e).sum(dim=(-2, -1))
                ee = (om1 * e * e).sum(dim=(-2, -1))
                if s_fixed is None:
                    s = torch.where(ee > 0, re / torch.where(ee > 0, ee, torch.ones_like(ee)), 0)
                    s = s.clamp(0.0, 1.0)
                else:
                    s = torch.full_like(re, s_fixed)
                s_c[i] = s
                err[i] = rr - 2 * s * re + s * s * ee
        else:
            glob2 = _fit_global(x2v, g2, w2 * v2, ridge)
            for i, rad in enumerate(cands):
                if rad is not None and radius is None and min(ny2, nx2) < 2 * rad:
                    continue  # a default window too wide for the grid: not a candidate
                coef2 = _fit(x2v, g2, w2 * v2, rad, significance, glob2)
                e = enforced((_coef_fine(coef2, (2 * ny2, 2 * nx2)) * anom1).sum(dim=1))
                re = (om1 * r * e).sum(dim=(-2, -1))
                ee = (om1 * e * e).sum(dim=(-2, -1))
                if s_fixed is None:
                    s = torch.where(ee > 0, re / torch.where(ee > 0, ee, torch.ones_like(ee)), 0)
                    s = s.clamp(0.0, 1.0)
                else:
                    s = torch.full_like(re, s_fixed)
                s_c[i] = s
                err[i] = rr - 2 * s * re + s * s * ee

    # per field: the candidate with the smallest error at the coarser level, a local one
    # only if it beats the global fit by LOCAL_MARGIN of the unguided error (ties: global)
    if n_c > 1:
        extra = torch.tensor(
            [0.0 if rad is None else LOCAL_MARGIN for rad in cands], dtype=work, device=dev
        )
        best = torch.argmin(err + extra[:, None] * torch.nan_to_num(rr)[None], dim=0)
    else:
        best = torch.zeros(B, dtype=torch.long, device=dev)
    s = torch.gather(s_c, 0, best[None])[0]
    if fit == "coarse" and n_c == 1 and s_fixed is not None:
        s = torch.full((B,), s_fixed, dtype=work, device=dev)
    ok = fit_ok & band_ok
    s = torch.where(ok, s, zero)
    best_err = torch.gather(err, 0, best[None])[0]
    ratio = torch.where(ok & (rr > 0), best_err / rr.clamp(min=1e-300), float("nan"))

    # the coefficients applied at this level
    chosen = sorted({int(i) for i in best.tolist()})
    if fit == "detail":
        parts = [detail[i] for i in chosen]
        if all(p is None for p in parts):
            coef = torch.zeros((B, C, 1, 1), dtype=work, device=dev)
        else:
            full = [_pad_to(p, (ny, nx)) if p is not None else None for p in parts]
            coef = _select(best, chosen, full, B, C, ny, nx, work)
    else:
        glob1 = _fit_global(xv, gbar, om, ridge)
        full = [_fit(xv, gbar, om, cands[i], significance, glob1) for i in chosen]
        coef = _select(best, chosen, full, B, C, ny, nx, work)
    coef_map = coef if coef.shape[-2:] != (1, 1) else None
    if coef_map is not None:
        wsum = om.sum(dim=(-2, -1)).clamp(min=torch.finfo(work).tiny)
        coef_mean = (coef_map * om[:, None]).sum(dim=(-2, -1)) / wsum[:, None]
    else:
        coef_mean = coef[..., 0, 0]
    coef_report = torch.where(fit_ok[:, None], coef_mean, torch.zeros_like(coef_mean))
    coef = torch.where(s[:, None, None, None] > 0, coef, torch.zeros_like(coef))

    # the first guess: bicubic of the (filled) field plus the shrunk guide term
    xf = fill_nan(xb, fill_rings)
    out = _bicubic(xf, f)
    if bool((s > 0).any()):
        cf = _coef_fine((s[:, None, None, None] * coef).to(dt), (NY, NX))
        gbar_up = _bicubic(gbar.to(dt), f)
        for c in range(C):
            out = out + cf[:, c] * (gb[:, c] - gbar_up[:, c])

    # per-field descriptions, from host copies (one device synchronisation)
    n_h, fit_h, band_h, best_h = (t.tolist() for t in (nvalid, fit_ok, band_ok, best))
    used_h = ((s > 0) & (coef != 0).flatten(1).any(dim=1)).tolist()
    reasons: list[str | None] = []
    for b in range(B):
        if not fit_h[b]:
            reasons.append(
                f"{n_h[b]} valid coarse cells, fewer than min_cells={need}: guide not used"
            )
        elif not band_h[b]:
            reasons.append(
                f"too few cells at half the resolution (grid {ny} x {nx}, {n_h[b]} valid "
                f"cells; need >= {need} valid cells there) to fit or cross-validate the "
                "guide: guide not used"
            )
        else:
            reasons.append(None)
    choice = tuple(
        "none"
        if not used_h[b]
        else ("global" if cands[best_h[b]] is None else f"local:{cands[best_h[b]]}")
        for b in range(B)
    )
    diag = RegressionFit(
        names=names,
        coef=coef_report,
        shrinkage=s,
        choice=choice,
        cv_ratio=ratio,
        reason=tuple(reasons),
        coef_map=coef_map,
    )
    return out.reshape(*lead, NY, NX), diag


def _pad_to(t: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """A coefficient map ``(B, C, y, x)`` padded at the end (edge values) to ``hw``."""
    import torch.nn.functional as F

    if t.shape[-2:] == (1, 1) or tuple(t.shape[-2:]) == hw:
        return t
    return F.pad(t, (0, hw[1] - t.shape[-1], 0, hw[0] - t.shape[-2]), mode="replicate")


def _select(
    best: torch.Tensor,
    chosen: list[int],
    full: list[Any],
    B: int,
    C: int,
    ny: int,
    nx: int,
    work: Any,
) -> torch.Tensor:
    """Per field, the coefficients of its chosen candidate: ``(B, C, 1, 1)`` when all are
    global, else ``(B, C, ny, nx)``."""
    import torch

    parts = [p if p is not None else torch.zeros((B, C, 1, 1), dtype=work) for p in full]
    if len(chosen) == 1:
        return parts[0].to(best.device)
    if all(p.shape[-2:] == (1, 1) for p in parts):
        out = torch.zeros((B, C, 1, 1), dtype=work, device=best.device)
        shape = (B, C, 1, 1)
    else:
        out = torch.zeros((B, C, ny, nx), dtype=work, device=best.device)
        shape = (B, C, ny, nx)
    for i, p in zip(chosen, parts):
        out = torch.where((best == i)[:, None, None, None], p.expand(shape), out)
    return out


class Regression(Method):
    """Guided regression ("lapse-rate") downscaling: no training, exact after enforcement.

    The first guess is

    .. math::

        \\hat y = \\mathrm{bicubic}(x) + s \\sum_c b_c
            \\bigl(G_c - \\mathrm{bicubic}(\\overline{G_c})\\bigr)

    where ``x`` is the coarse field, ``G_c`` the ``C`` fine-scale guides (``guide=``),
    :math:`\\overline{G_c}` their area-weighted block means over the valid fine cells,
    ``bicubic`` the interpolation of ``method="bicubic"``, ``b_c`` regression coefficients
    fitted on the coarse field itself (per field: each 2-D slice of the leading dims) and
    ``s`` in [0, 1] a shrinkage.  The pipeline then applies the enforcement operator, so the
    result coarsens back to ``x`` exactly whatever ``b`` and ``s`` are.

    Everything is fitted one level coarser: the field and the guide block means are
    averaged once more by 2 (area-weighted); the unguided prediction of the coarse field
    from that level (bicubic, enforced) leaves a residual ``r``, the field's detail at the
    scales just above the coarse grid, and the guide's anomaly at that level, enforced the
    same way, is ``E_c``.  Two ways to get ``b`` (``fit=``):

    * ``"detail"`` (default): ``b`` is the weighted ridge regression of ``r`` on the
      ``E_c``: the relation between field and guide in the scale band next to the one
      being filled in, free of the large-scale covariation (a north-south gradient of both,
      say) that biases a regression of the coarse values; ``s`` is chosen by a two-fold
      spatial cross-validation of that regression (a checkerboard of :data:`CV_TILE` x
      :data:`CV_TILE` tiles, each half predicted from the other).
    * ``"coarse"``: ``b`` is the weighted ridge regression (with an intercept) of the coarse
      values ``x`` on :math:`\\overline{G}`, the classical lapse-rate regression; ``s`` is
      chosen by predicting ``r`` with the same formula one level up (coefficients fitted on
      the coarser level only): the enforced prediction is linear in ``s``, ``P0 + s E``, so
      the best ``s`` is ``<r, E> / <E, E>`` clipped to [0, 1].

    **No-information guides.**  Each coefficient is kept only if its t statistic (weighted
    least squares, sandwich variance) exceeds ``significance``, and then multiplied by the
    James-Stein factor ``1 - 1/t^2``.  This matters more than it seems: the guide term
    carries the guide's variance at the fine scales, which the coarse data never see -- for
    a noise guide ``f^2`` times the variance the fit was judged on -- so a chance
    correlation that the cross-validation alone lets through (``s`` > 0 with probability
    about 1/2) can double the error at x8-x16.  With the threshold, noise and shuffled
    guides get ``b = 0``, and the result is the conservative bicubic one.

    **Local coefficients** (``mode="local"``, or chosen by ``mode="auto"``): the moments of
    the regression are taken in a window of radius ``radius`` cells (three passes of a box
    filter, close to a Gaussian of standard deviation ``sqrt(radius (radius + 1))``)
    around every cell (a geographically weighted regression, with a penalty of
    :data:`LOCAL_PENALTY` times the global guide variance pulling each local coefficient
    towards the field's global one, so that flat or data-poor windows keep the global
    value); the coefficient map is interpolated bilinearly to the fine grid.
    ``mode="auto"`` tries the global fit and local ones with radii :data:`AUTO_RADII` (or
    ``radius``; default radii wider than the grid allows are skipped) and keeps, field by
    field, the one with the smallest cross-validated error, a local one only if it beats
    the global one by :data:`LOCAL_MARGIN` of the unguided error.

    Parameters
    ----------
    fit : {"detail", "coarse"}, default "detail"
        How the coefficients are estimated (see above).
    mode : {"auto", "global", "local"}, default "auto"
        One coefficient per guide and field, a map of them, or the better of both by
        cross-validation.
    radius : int, optional
        Standard deviation of the local window, in cells of the grid being fitted (for
        ``fit="detail"`` the coarse grid; for ``"coarse"`` the coarse grid at the end and
        the twice coarser one in the cross-validation).  Default: each of
        :data:`AUTO_RADII`.
    shrinkage : "cv" or float, default "cv"
        ``"cv"``: ``s`` cross-validated as above.  A number in [0, 1] fixes ``s`` (with
        ``significance=0`` and ``fit="coarse"``, ``shrinkage=1`` is the plain lapse-rate
        regression, without protection against an uninformative guide).
    ridge : float, default 1e-3
        Ridge penalty on the standardised guides (added to their correlation matrix):
        guards against collinear guides; a constant guide gets coefficient 0.
    significance : float, default 3.0
        Smallest ``|t|`` of a coefficient for its guide to be used (0: keep every
        coefficient as fitted, no James-Stein factor either).
    min_cells : int, default 24
        Fewest valid coarse cells needed, on the coarse grid and on the twice coarser one
        where everything is fitted.  A field with fewer keeps ``s = 0`` (the bicubic
        result) and a :class:`UserWarning` says why; the reason is also in
        :attr:`last_fit`.

    Attributes
    ----------
    last_fit : RegressionFit or None
        Diagnostics of the last call of :meth:`upscale` (coefficients, shrinkage, choice of
        fit and cross-validated error ratio per field).  With tiling or parallel calls it
        holds whichever call finished last; use :func:`regression_downscale` for the
        diagnostics of one call.

    Notes
    -----
    Assumptions: the field depends (locally) linearly on the guides, with the same
    coefficient at the scales being filled in as at the scales just above the coarse grid
    (true of near-surface temperature and elevation, the lapse rate, away from
    inversions).  It shrinks towards bicubic, or fails to help, where the relation changes
    with scale or sign (valley inversions), where the guide's fine structure is displaced
    from the field's (a misaligned or mis-registered guide), where the guide explains only
    part of the fine-scale variance, and where the coarse grid is too small to estimate
    the relation (fewer than ``min_cells`` cells at half its resolution, about 10 x 10
    coarse cells).  The guide term is added, never multiplied: with
    ``conserve="multiplicative"`` the enforcement still conserves, but a guide that explains
    a field's ratios (precipitation and elevation) is better given as ``log`` of both.
    When the input is tiled (``tile_size=``, dask chunks) each tile fits its own
    coefficients: conservation still holds exactly, but the result differs slightly from
    an untiled run.  Cost: a few bicubic interpolations of the fine grid per guide and
    small coarse-grid convolutions and solves; no iteration.

    Examples
    --------
    >>> import numpy as np
    >>> from xsr.methods import downscale_array
    >>> rng = np.random.default_rng(0)
    >>> elev = rng.normal(size=(1, 64, 64)).cumsum(-1).cumsum(-2)
    >>> truth = 0.5 * elev[0] + 20.0
    >>> coarse = truth.reshape(8, 8, 8, 8).mean(axis=(1, 3))
    >>> fine = downscale_array(coarse, factor=8, method="regression", guide=elev, min_cells=8)
    >>> fine.shape
    (64, 64)
    """

    name = "regression"
    halo: ClassVar[int] = 2
    handles_nan: ClassVar[bool] = True
    uses_guide: ClassVar[bool] = True
    #: Without a guide the method has nothing to add to bicubic: it refuses to run.
    requires_guide: ClassVar[bool] = True

    def __init__(
        self,
        *,
        fit: RegressionFitKind = "detail",
        mode: RegressionMode = "auto",
        radius: int | None = None,
        shrinkage: str | float = "cv",
        ridge: float = 1e-3,
        significance: float = 3.0,
        min_cells: int = 24,
    ) -> None:
        check_choice(
            fit,
            ("detail", "coarse"),
            name="fit",
            hint="'detail' regresses the field's detail on the guide's, 'coarse' the coarse "
            "values on the guide's block means",
        )
        self.fit: RegressionFitKind = fit
        check_choice(
            mode,
            ("auto", "global", "local"),
            name="mode",
            hint="'global' fits one coefficient per guide and field, 'local' a map of them",
        )
        self.mode: RegressionMode = mode
        self.radius = check_int(radius, name="radius", minimum=1, allow_none=True)
        hint = "'cv' (cross-validated) or a number from 0 to 1"
        if isinstance(shrinkage, str):
            self.shrinkage: str | float = check_choice(
                shrinkage, ("cv",), name="shrinkage", hint=hint
            )
        else:
            s = check_number(shrinkage, name="shrinkage", minimum=0, hint=hint)
            if s > 1:
                raise OptionError(f"shrinkage must be 'cv' or from 0 to 1, got {shrinkage!r}")
            self.shrinkage = s
        self.ridge = check_number(ridge, name="ridge", minimum=0)
        self.significance = check_number(significance, name="significance", minimum=0)
        self.min_cells = check_int(min_cells, name="min_cells", minimum=4)
        self.last_fit: RegressionFit | None = None

    def options(self) -> dict[str, Any]:
        opts: dict[str, Any] = {"fit": self.fit, "mode": self.mode}
        if self.mode != "global":
            opts["radius"] = self.radius
        opts.update(
            shrinkage=self.shrinkage,
            ridge=self.ridge,
            significance=self.significance,
            min_cells=self.min_cells,
        )
        return opts

    def upscale(self, x: torch.Tensor, factor: int, **context: Any) -> torch.Tensor:
        """The regression first guess (see the class docstring); needs ``context["guide"]``."""
        guide = context.get("guide")
        if guide is None:
            raise MethodError(
                "method 'regression' needs a guide: fine-scale covariates such as terrain "
                "elevation, on the output grid. Fix: pass guide=, e.g. "
                "ds.sr.downscale(factor=8, method='regression', guide=elevation), or "
                "downscale_array(x, factor=8, method='regression', guide=g) with g of shape "
                "(C, ny*8, nx*8); without a guide use method='bicubic', which this method "
                "then reduces to"
            )
        out, fit = regression_downscale(
            x,
            guide,
            factor,
            weights=context.get("weights"),
            mask=context.get("mask"),
            names=context.get("guide_names"),
            fit=self.fit,
            mode=self.mode,
            radius=self.radius,
            shrinkage=self.shrinkage,
            ridge=self.ridge,
            significance=self.significance,
            min_cells=self.min_cells,
            fill_rings=self.halo + 1,
        )
        self.last_fit = fit
        skipped = {r for r in fit.reason if r is not None}
        if skipped:
            n = sum(r is not None for r in fit.reason)
            warnings.warn(
                f"regression: the guide was not used for {n} of {len(fit.reason)} field(s) "
                f"({'; '.join(sorted(skipped))}); their result is the conservative bicubic "
                "one. Fix: downscale a larger region, or lower min_cells",
                UserWarning,
                stacklevel=3,
            )
        return out
