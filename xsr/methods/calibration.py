"""Calibrated ensemble spread, fitted on the input itself (no truth needed).

An ensemble method (``dip-ensemble``) returns the spread of its members, which says *where*
the members disagree but not *how large* the error of their mean is.  Without a truth, the
only field whose error can be measured is the input itself: coarsen the coarse field ``x``
once more (by a calibration factor ``r``), downscale that back onto the grid of ``x`` with
the same method, compare the spread with the actual error there and carry the fitted
relation down to the requested scale.  That is an assumption of **scale similarity**: the
spread-to-error relation of the method one level up (``x / r -> x``) is the one at the
requested level (``x -> x * factor``).  It holds for fields whose statistics do not depend
on the scale over that range (a power-law spectrum with no characteristic scale between the
two levels) and fails when the coarsened-again grid crosses a characteristic scale of the
field (the eddy scale, the domain size), see ``docs/dip.md``.

Two relations can be fitted (``mode``):

* ``"scale"``: one factor per field, ``s = sqrt(sum w e^2 / sum w sigma^2)`` over the valid
  cells of the calibration level (``e`` the error of the enforced ensemble mean, ``sigma``
  the raw spread, ``w`` the cell areas): the spread-skill ratio of the calibration level
  made 1.
* ``"local"``: the ratio of error variance to raw spread variance of each coarse cell as a
  function of the raw spread and local features of the coarse field,
  ``log(e2_I / sigma2_I) = a + b . phi_I`` by least squares over the
  coarse cells of the calibration level (``phi`` are scale-free: logarithms of the raw spread
  variance, the squared gradient and the squared departure of the ensemble mean from the
  bicubic interpolation, each relative to its field mean), its level then set so that the
  spread-skill ratio of the calibration level is 1.

The calibrated spread is applied as a factor that is constant over each coarse cell of the
requested level (:func:`spread_factor`), and the members are rescaled about their mean by
that factor (:func:`scale_members`): with additive enforcement the members still conserve
every coarse cell exactly, their mean is unchanged and their standard deviation *is* the
calibrated spread.

Arrays only (torch), no xarray; the enforcement and block means are those of
:mod:`xsr.conserve`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import torch

__all__ = [
    "CALIBRATE_MODES",
    "DEFAULT_FACTOR",
    "MIN_CELLS",
    "CalibrateMode",
    "SpreadCalibration",
    "choose_factor",
    "crop_blocks",
    "fit_calibration",
    "member_deviations",
    "scale_members",
    "spread_factor",
]

CalibrateMode = Literal["none", "scale", "local"]
CALIBRATE_MODES: tuple[str, ...] = ("none", "scale", "local")

#: Default calibration factor: the input is coarsened by 2, whatever the requested factor
#: (the nearest coarser level, the most cells; measured against the requested factor itself
#: and 4 in ``docs/dip.md``).
DEFAULT_FACTOR = 2
#: Fewest valid coarse cells the calibration level (the input coarsened by the calibration
#: factor) must keep for a fit; fewer, and the calibration factor is lowered (down to 2).
MIN_CELLS = 16
#: Fewest valid coarse cells of the calibration level for ``mode="local"`` (it fits
#: ``1 + len(FEATURES)`` coefficients); fewer, and the field gets ``"scale"`` instead.
LOCAL_MIN_CELLS = 64
#: Features of the local model (per coarse cell, logarithms relative to the field mean).
FEATURES: tuple[str, ...] = ("spread", "gradient", "departure")
#: The features' ratios to their field mean are clipped to ``[1 / FEATURE_RANGE,
#: FEATURE_RANGE]``, which bounds the local factor (a cell with no raw spread got a factor
#: of 7570 on a Med field before this bound).
FEATURE_RANGE = 100.0

#: ``run(coarse, factor, weights, mask) -> (mean, std)``: the method itself, uncalibrated,
#: through the enforcement: ``coarse`` ``(B, ny, nx)``, ``weights`` and ``mask`` on the
#: output grid ``(B, ny*factor, nx*factor)`` (or None); ``mean`` and ``std`` on that grid.
Runner = Callable[
    ["torch.Tensor", int, "torch.Tensor | None", "torch.Tensor | None"],
    "tuple[torch.Tensor, torch.Tensor]",
]


@dataclass
class SpreadCalibration:
    """A fitted spread calibration, one per field of the batch.

    Attributes
    ----------
    mode : {"scale", "local"}
    factor : int or None
        Calibration factor ``r`` (the input was coarsened by it and downscaled back); None
        when no field could be fitted.
    fitted : torch.Tensor of bool, shape ``(B,)``
        Fields whose calibration was fitted (the others keep their raw spread).
    local : torch.Tensor of bool, shape ``(B,)``
        Fields fitted with the local model (the others, if fitted, with one scale factor).
    scale : torch.Tensor, shape ``(B,)``
        The factor on the raw spread that makes the spread-skill ratio of the calibration
        level 1 (1 where not fitted).
    coef : torch.Tensor, shape ``(B, 1 + len(FEATURES))``
        Coefficients of the local model (intercept first), the intercept already set so that
        the calibration level has a spread-skill ratio of 1; zeros where not used.
    raw_ratio : torch.Tensor, shape ``(B,)``
        Spread-skill ratio (RMS raw spread / RMS error of the mean) of the calibration level
        before calibration (NaN where not fitted).
    cells : torch.Tensor, shape ``(B,)``
        Valid coarse cells of the calibration level.
    reasons : tuple of (str or None)
        Per field, why it was not fitted, or fitted with one factor although ``"local"``
        was asked for (None when fitted as asked).
    seconds : float
        Wall time of the fit (the calibration run of the method included).
    spread : torch.Tensor or None, shape ``(B, ny, nx)``
        The factor applied to the raw spread on each coarse cell of the requested level
        (:func:`spread_factor`), on the grid the method saw (with the periodic halo, if
        any); set by the method once applied.
    """

    mode: str
    factor: int | None
    fitted: torch.Tensor
    local: torch.Tensor
    scale: torch.Tensor
    coef: torch.Tensor
    raw_ratio: torch.Tensor
    cells: torch.Tensor
    reasons: tuple[str | None, ...]
    seconds: float
    spread: torch.Tensor | None = None

    def describe(self) -> str:
        """One line for the output attributes."""
        n = int(self.fitted.sum())
        b = len(self.reasons)
        if self.factor is None or n == 0:
            why = next((r for r in self.reasons if r), "no field could be fitted")
            return f"not fitted ({why}); raw spread"
        s = ", ".join(f"{float(v):.3g}" for v in self.scale[self.fitted][:4])
        more = ", ..." if n > 4 else ""
        kind = "local model" if bool(self.local.any()) else "scale factor"
        return (
            f"{kind} fitted at x{self.factor} on the input coarsened by {self.factor} "
            f"({n} of {b} field(s)); scale {s}{more}"
        )


def _valid_counts(x: torch.Tensor, r: int) -> torch.Tensor:
    """Valid coarse cells per field of ``x`` ``(B, ny, nx)`` coarsened by ``r`` (cropped)."""
    import torch

    B, ny, nx = x.shape
    cy, cx = ny // r, nx // r
    if cy == 0 or cx == 0:
        return torch.zeros((B,), dtype=torch.long, device=x.device)
    v = crop_blocks(x, r).isfinite()
    return v.reshape(B, cy, r, cx, r).any(dim=(2, 4)).sum(dim=(1, 2))


def _crop_slices(n: int, r: int) -> slice:
    """The central ``(n // r) * r`` cells of an axis of ``n`` cells."""
    m = (n // r) * r
    start = (n - m) // 2
    return slice(start, start + m)


def crop_blocks(t: torch.Tensor, r: int, scale: int = 1) -> torch.Tensor:
    """``t`` cropped on its last two axes to its central whole blocks of ``r`` cells (of
    ``scale`` fine cells each): the region the calibration level covers."""
    ny, nx = t.shape[-2] // scale, t.shape[-1] // scale
    sy, sx = _crop_slices(ny, r), _crop_slices(nx, r)
    return t[
        ...,
        sy.start * scale : sy.stop * scale,
        sx.start * scale : sx.stop * scale,
    ]


def choose_factor(
    x: torch.Tensor, *, min_cells: int = MIN_CELLS, requested: int | None = None
) -> int | None:
    """The calibration factor ``r`` for the coarse fields ``x`` ``(B, ny, nx)``.

    The largest ``r`` from ``requested`` (default :data:`DEFAULT_FACTOR`, 2) down to 2 for
    which every field of ``x`` coarsened by ``r`` keeps at least ``min_cells`` valid coarse
    cells; None if even ``r = 2`` does not.
    """
    start = DEFAULT_FACTOR if requested is None else int(requested)
    for r in range(start, 1, -1):
        if bool((_valid_counts(x, r) >= min_cells).all()):
            return r
    return None


def _block_w(t: torch.Tensor, r: int, w: torch.Tensor | None) -> torch.Tensor:
    """Area-weighted block mean of ``t`` over ``r x r`` blocks (NaN cells left out)."""
    from ..conserve import block_mean

    return block_mean(t, r, weights=w)


def _wsum(t: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Sum over the last two axes of ``w * t`` where both are finite, ``(B,)``."""
    import torch

    ok = t.isfinite() & w.isfinite() & (w > 0)
    zero = torch.zeros((), dtype=t.dtype, device=t.device)
    return torch.where(ok, t * w, zero).sum(dim=(-2, -1))


def coarse_features(
    x: torch.Tensor,
    mean: torch.Tensor,
    std: torch.Tensor,
    factor: int,
    *,
    weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale-free features of every coarse cell, and the raw spread variance per cell.

    Parameters
    ----------
    x : torch.Tensor, shape ``(B, ny, nx)``
        Coarse input of the level (NaN: land).
    mean, std : torch.Tensor, shape ``(B, ny*factor, nx*factor)``
        Enforced ensemble mean and raw spread on the output grid of the level.
    factor : int
    weights : torch.Tensor, optional, broadcastable to ``mean``
        Output cell areas.

    Returns
    -------
    phi : torch.Tensor, shape ``(B, len(FEATURES), ny, nx)``
        ``log(q_I / <q>)`` (the ratio clipped to ``[1 / FEATURE_RANGE, FEATURE_RANGE]``)
        for the raw spread variance, the squared centred gradient of
        ``x`` (in coarse-cell units) and the squared departure of ``mean`` from the
        bicubic interpolation of ``x`` (block means), ``<q>`` the field's area-weighted mean;
        NaN on invalid cells.
    var : torch.Tensor, shape ``(B, ny, nx)``
        Block mean of the raw spread variance.
    """
    import torch
    import torch.nn.functional as F

    from .pipeline import fill_nan

    var = _block_w(std.to(torch.float64) ** 2, factor, weights)
    filled = fill_nan(x.to(torch.float64), 2)
    p = F.pad(filled[:, None], (1, 1, 1, 1), mode="replicate")[:, 0]
    gx = (p[:, 1:-1, 2:] - p[:, 1:-1, :-2]) / 2
    gy = (p[:, 2:, 1:-1] - p[:, :-2, 1:-1]) / 2
    grad = gx**2 + gy**2
    smooth = F.interpolate(
        filled[:, None], scale_factor=factor, mode="bicubic", align_corners=False
    )[:, 0]
    dep = _block_w((mean.to(torch.float64) - smooth) ** 2, factor, weights)
    ok = x.isfinite() & var.isfinite()
    area = _area(x, factor, weights)
    feats = []
    for q in (var, grad, dep):
        tiny = torch.finfo(torch.float64).tiny
        qm = _wsum(q, area) / _wsum(torch.ones_like(q), area).clamp(min=tiny)
        rel = q / qm.clamp(min=tiny)[:, None, None]
        # within a factor FEATURE_RANGE of the mean: a cell where the raw spread vanishes
        # (a coast) must not get an unbounded factor
        lq = torch.log(rel.clamp(min=1 / FEATURE_RANGE, max=FEATURE_RANGE))
        feats.append(torch.where(ok, lq, torch.full_like(lq, math.nan)))
    return torch.stack(feats, dim=1), var


def _area(x: torch.Tensor, factor: int, weights: torch.Tensor | None) -> torch.Tensor:
    """Weight of each coarse cell of ``x`` ``(B, ny, nx)``: its area (mean fine weight),
    0 where ``x`` is NaN."""
    import torch

    if weights is None:
        a = torch.ones_like(x, dtype=torch.float64)
    else:
        B, ny, nx = x.shape
        w = torch.broadcast_to(weights.to(torch.float64), (B, ny * factor, nx * factor))
        a = _block_w(w, factor, None)
    return torch.where(x.isfinite() & a.isfinite(), a, torch.zeros_like(a))


def fit_calibration(
    x: torch.Tensor,
    factor: int,
    run: Runner,
    *,
    weights: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
    mode: CalibrateMode = "scale",
    calibration_factor: int | None = None,
    min_cells: int = MIN_CELLS,
) -> SpreadCalibration:
    """Fit the spread calibration on ``x`` itself (see the module docstring).

    Parameters
    ----------
    x : torch.Tensor, shape ``(B, ny, nx)``
        The coarse fields to be downscaled (NaN: land).
    factor : int
        The requested factor.
    run : callable
        The uncalibrated method through the enforcement (see :data:`Runner`).
    weights : torch.Tensor, optional
        Fine cell areas of the requested level, broadcastable to ``(B, ny*factor,
        nx*factor)``.
    mask : torch.Tensor of bool, optional
        Valid fine cells of the requested level, broadcastable like ``weights``.
    mode : {"scale", "local"}
    calibration_factor : int, optional
        Calibration factor (default :data:`DEFAULT_FACTOR`; lowered by
        :func:`choose_factor` when the coarsened field keeps too few cells).
    min_cells : int
        Fewest valid coarse cells of the calibration level.

    Returns
    -------
    SpreadCalibration
    """
    import torch

    t0 = time.perf_counter()
    B = x.shape[0]
    dev = x.device
    x64 = x.to(torch.float64)
    P = 1 + len(FEATURES)
    ones = torch.ones((B,), dtype=torch.float64, device=dev)
    nan = torch.full((B,), math.nan, dtype=torch.float64, device=dev)
    r = choose_factor(x64, min_cells=min_cells, requested=calibration_factor)

    def unfitted(why: str, cells: torch.Tensor) -> SpreadCalibration:
        return SpreadCalibration(
            mode=mode,
            factor=None,
            fitted=torch.zeros((B,), dtype=torch.bool, device=dev),
            local=torch.zeros((B,), dtype=torch.bool, device=dev),
            scale=ones,
            coef=torch.zeros((B, P), dtype=torch.float64, device=dev),
            raw_ratio=nan,
            cells=cells,
            reasons=tuple([why] * B),
            seconds=time.perf_counter() - t0,
        )

    if r is None:
        c2 = _valid_counts(x64, 2)
        n = ", ".join(str(int(v)) for v in c2)
        return unfitted(
            f"the input coarsened once more by 2 keeps fewer than {min_cells} valid coarse "
            f"cells ({n} per field)",
            c2,
        )
    cells = _valid_counts(x64, r)
    reasons: list[str | None] = [None] * B
    # the calibration level: truth = x (cropped to whole blocks of r), input = its block means
    truth = crop_blocks(x64, r)
    area = _area(x64, factor, _fine_weights(weights, mask, x64, factor))
    area = crop_blocks(area, r)
    truth = torch.where(area > 0, truth, torch.full_like(truth, math.nan))
    xc = _block_w(truth, r, area)
    valid_fields = xc.isfinite().flatten(1).any(dim=1) & (cells >= min_cells)
    if not bool(valid_fields.any()):
        n = ", ".join(str(int(v)) for v in cells)
        return unfitted(
            f"the input coarsened by {r} keeps fewer than {min_cells} valid coarse cells "
            f"({n} per field)",
            cells,
        )
    mean, std = run(xc, r, area, truth.isfinite())
    mean = mean.to(torch.float64)
    std = std.to(torch.float64)
    err2 = (mean - truth) ** 2
    s2 = std**2
    tot_e = _wsum(err2, area)
    tot_v = _wsum(s2, area)
    tiny = torch.finfo(torch.float64).tiny
    ok_fit = (cells >= min_cells) & (tot_v > tiny) & (tot_e > tiny) & valid_fields
    scale = torch.where(ok_fit, (tot_e / tot_v.clamp(min=tiny)).sqrt(), ones)
    raw_ratio = torch.where(ok_fit, (tot_v / tot_e.clamp(min=tiny)).sqrt(), nan)
    for b in range(B):
        if not bool(ok_fit[b]):
            if int(cells[b]) < min_cells:
                reasons[b] = (
                    f"the input coarsened by {r} keeps {int(cells[b])} valid coarse cells "
                    f"(fewer than {min_cells})"
                )
            else:
                reasons[b] = "the raw spread or the error of the calibration level is zero"
    coef = torch.zeros((B, P), dtype=torch.float64, device=dev)
    local = torch.zeros((B,), dtype=torch.bool, device=dev)
    if mode == "local":
        # per coarse cell of the calibration level: log error variance on the features
        phi, var_c = coarse_features(xc, mean, std, r, weights=area)
        e_c = _block_w(err2, r, area)
        a_c = _area(xc, r, area)
        for b in range(B):
            if not bool(ok_fit[b]):
                continue
            use = (a_c[b] > 0) & e_c[b].isfinite() & (e_c[b] > 0) & (var_c[b] > 0)
            use = use & phi[b].isfinite().all(0)
            n_use = int(use.sum())
            if n_use < max(LOCAL_MIN_CELLS, 4 * P):
                reasons[b] = (
                    f"local model: {n_use} usable coarse cells at x{r} (fewer than "
                    f"{max(LOCAL_MIN_CELLS, 4 * P)}); one scale factor instead"
                )
                continue
            A = torch.cat([torch.ones((1, n_use), dtype=torch.float64, device=dev), phi[b][:, use]])
            # the ratio of error variance to raw spread variance, not the error itself: its
            # level is what is carried across scales
            v_use = var_c[b][use]
            y = torch.log(e_c[b][use] / v_use)
            wt = a_c[b][use]
            Aw = A * wt.sqrt()
            sol = torch.linalg.lstsq(Aw.T, (y * wt.sqrt())[:, None]).solution[:, 0]
            # the level: spread-skill ratio 1 at the calibration level
            pred = v_use * torch.exp(A.T @ sol)
            level = (e_c[b][use] * wt).sum() / (pred * wt).sum()
            sol[0] = sol[0] + torch.log(level)
            coef[b] = sol
            local[b] = True
    return SpreadCalibration(
        mode=mode,
        factor=r,
        fitted=ok_fit,
        local=local,
        scale=scale,
        coef=coef,
        raw_ratio=raw_ratio,
        cells=cells,
        reasons=tuple(reasons),
        seconds=time.perf_counter() - t0,
    )


def _fine_weights(
    weights: torch.Tensor | None, mask: torch.Tensor | None, x: torch.Tensor, factor: int
) -> torch.Tensor | None:
    """Fine weights with masked cells at 0, ``(B, ny*factor, nx*factor)`` (or None)."""
    import torch

    if weights is None and mask is None:
        return None
    B, ny, nx = x.shape
    shape = (B, ny * factor, nx * factor)
    w = torch.ones(shape, dtype=torch.float64, device=x.device)
    if weights is not None:
        w = w * torch.broadcast_to(weights.to(device=x.device, dtype=torch.float64), shape)
    if mask is not None:
        m = torch.broadcast_to(mask.to(device=x.device, dtype=torch.bool), shape)
        w = torch.where(m, w, torch.zeros_like(w))
    return w


def spread_factor(
    cal: SpreadCalibration,
    x: torch.Tensor,
    factor: int,
    mean: torch.Tensor,
    std: torch.Tensor,
    *,
    weights: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """The factor on the raw spread, constant over each coarse cell: ``(B, ny, nx)``.

    ``x`` ``(B, ny, nx)`` the coarse fields, ``mean`` and ``std`` ``(B, ny*f, nx*f)`` the
    enforced ensemble mean and the raw spread of the requested level.  Fields that were not
    fitted get 1; fields with the local model get ``sqrt(exp(a + b . phi_I))``,
    the others ``cal.scale``.
    """
    import torch

    B, ny, nx = x.shape
    x64 = x.to(torch.float64)
    s = cal.scale.to(torch.float64)[:, None, None].expand(B, ny, nx).clone()
    if bool(cal.local.any()):
        fw = _fine_weights(weights, mask, x64, factor)
        phi, var = coarse_features(x64, mean, std, factor, weights=fw)
        loc = torch.exp(
            0.5 * (cal.coef[:, 0, None, None] + (cal.coef[:, 1:, None, None] * phi).sum(1))
        )
        use = cal.local[:, None, None] & loc.isfinite() & (var > 0)
        s = torch.where(use, loc, s)
    return s


def member_deviations(
    members: torch.Tensor,
    x: torch.Tensor,
    factor: int,
    *,
    weights: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The members' mean, enforced mean, enforced deviations and raw spread (float64).

    Parameters
    ----------
    members : torch.Tensor, shape ``(M, B, ny*f, nx*f)``
        The raw (not yet enforced) members.
    x : torch.Tensor, shape ``(B, ny, nx)``
        The coarse fields.
    factor : int
    weights, mask : torch.Tensor, optional
        Fine weights and valid fine cells of the block means.

    Returns
    -------
    mean : torch.Tensor, shape ``(B, ny*f, nx*f)``
        Mean of the raw members.
    emean : torch.Tensor, shape ``(B, ny*f, nx*f)``
        Mean of the (additively) enforced members (= the enforced ``mean``).
    dev : torch.Tensor, shape ``(M, B, ny*f, nx*f)``
        Enforced members minus ``emean``: zero block means.
    std : torch.Tensor, shape ``(B, ny*f, nx*f)``
        Standard deviation of the enforced members (``correction=1``): the raw spread.
    """
    import torch

    from ..conserve import enforce

    m64 = members.to(torch.float64)
    mean = m64.mean(dim=0)
    enf = enforce(m64, x.to(torch.float64), factor, weights=weights, mask=mask, validate=False)
    emean = enf.mean(dim=0)
    return mean, emean, enf - emean, enf.std(dim=0, correction=1)


def scale_members(
    members: torch.Tensor,
    x: torch.Tensor,
    factor: int,
    s: torch.Tensor,
    *,
    weights: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
    deviations: tuple[torch.Tensor, ...] | None = None,
) -> torch.Tensor:
    """Rescale the members about their mean so that their spread is ``s`` times the raw one.

    Parameters
    ----------
    members : torch.Tensor, shape ``(M, B, ny*f, nx*f)``
        The raw (not yet enforced) members.
    x : torch.Tensor, shape ``(B, ny, nx)``
        The coarse fields.
    factor : int
    s : torch.Tensor, shape ``(B, ny, nx)``
        Factor per coarse cell (:func:`spread_factor`).
    weights, mask : torch.Tensor, optional
        Fine weights and valid fine cells of the block means.
    deviations : tuple of torch.Tensor, optional
        What :func:`member_deviations` returned for these members, when the caller already
        has it (it is not computed again).

    Returns
    -------
    torch.Tensor, shape ``(M, B, ny*f, nx*f)``, dtype of ``members``
        ``mean + s * d_k`` with ``mean`` the mean of the raw members and ``d_k`` the
        deviations of the enforced members from their mean (:func:`member_deviations`).
        After additive enforcement member ``k`` is ``enforce(mean) + s * d_k``: ``d_k`` has
        zero block means and ``s`` is constant over each block, so the members conserve
        exactly, their mean is the enforced mean and their standard deviation is ``s``
        times the raw one.
    """
    from ..conserve import upsample

    if deviations is None:
        deviations = member_deviations(members, x, factor, weights=weights, mask=mask)
    mean, _, dev, _ = deviations
    out = mean + upsample(s.to(dev.dtype), factor) * dev
    return out.to(members.dtype)
