"""Deep image prior (DIP): unsupervised downscaling of one coarse field at a time.

A generator network ``g`` (:mod:`xsr.nn.generators`) is fitted to a single coarse field so
that the block means of its output match the observation; the structure of the network is
the prior.  The fit is not exact, the output is: :func:`~xsr.methods.pipeline.downscale_array`
passes every result through the enforcement operator.

Here every fit is *batched*: the fields of the leading dimensions (time steps) and the
members of an ensemble are ``n = fields x members`` independent networks run as one grouped
computation (grouped convolutions, per-member instance normalisation, an Adam optimiser and
a plateau learning-rate schedule that act member by member), so member ``k`` of a batched
fit reproduces, to round-off, a fit of one network with seed ``seed + k``.

Two configurations:

* ``generator="decoder"`` (default): a small decoder from a latent map (33 k parameters),
  run at ``resolution=4`` cells per coarse cell and interpolated (bicubic) to the output
  grid, so that the cost hardly grows with the factor; 400 iterations, lr 1e-2.  Its output
  is added to the bicubic interpolation of the coarse field (a skip connection, ``skip``):
  without it the ensemble is better on simulated QG eddies at x8 but much worse where the
  field has a strong large-scale gradient (see ``docs/dip.md``).
* ``generator="study"``: the configuration of the deep-image-prior study of sea-surface
  height (2.39 M parameters at 256 x 256, Adam(0.5, 0.999), lr 1e-3, plateau schedule
  (0.95, patience 10), 1500 iterations, no skip, full resolution).

**Guided DIP.**  With fine-scale covariates (``guide=``), the unresolved part of each
(normalised) guide reaches the output directly, at full resolution, times a coefficient
fitted by least squares on the coarse grid and kept only where it is significant; the
generator also gets the guide as input channels at every stage and outputs a smooth
per-member modulation of that coefficient (see :func:`fit_dip` and ``docs/dip.md``).
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from .._validate import check_bool, check_choice, check_int, check_number
from ..exceptions import OptionError
from .base import Method, Upscaled
from .calibration import CALIBRATE_MODES, CalibrateMode, SpreadCalibration

if TYPE_CHECKING:
    import torch

    from ..nn.generators import GeneratorName

__all__ = ["DIP", "DIPEnsemble", "DIPFit", "fit_dip"]

Uncertainty = Literal["none", "ensemble", "latent"]
NetDtype = Literal["float32", "float64"]

#: Defaults that depend on the generator: (iterations, lr, skip, resolution, input_noise).
_DEFAULTS: dict[str, dict[str, Any]] = {
    "decoder": {"iterations": 400, "lr": 1e-2, "skip": True, "resolution": 4, "input_noise": 0.0},
    "study": {
        "iterations": 1500,
        "lr": 1e-3,
        "skip": False,
        "resolution": None,
        "input_noise": 0.0,
    },
}


@dataclass
class DIPFit:
    """The result of :func:`fit_dip`.

    Attributes
    ----------
    members : torch.Tensor, shape ``(B, K, H, W)``
        Output of each fitted network, in the units of the input (not yet enforced).
    samples : torch.Tensor or None, shape ``(S, B, K, H, W)``
        Outputs for latent inputs sampled around each fitted latent (``latent_samples > 0``).
    loss : torch.Tensor, shape ``(B, K)``
        Final loss of each member (mean squared block-mean misfit of the normalised field).
    iterations : int
        Iterations run (fewer than asked when every member met its stopping criterion).
    seconds : float
        Wall time of the fit.
    """

    members: torch.Tensor
    samples: torch.Tensor | None
    loss: torch.Tensor
    iterations: int
    seconds: float


def _normalise(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x - mean) / std per field over valid cells; returns (xn, mean, std), ``(B, 1, 1)``."""
    import torch

    valid = torch.isfinite(x)
    zero = torch.zeros((), dtype=x.dtype, device=x.device)
    cnt = valid.sum(dim=(-2, -1), keepdim=True).clamp(min=1).to(x.dtype)
    mu = torch.where(valid, x, zero).sum(dim=(-2, -1), keepdim=True) / cnt
    var = torch.where(valid, (x - mu) ** 2, zero).sum(dim=(-2, -1), keepdim=True) / cnt
    sd = var.sqrt()
    sd = torch.where(sd > 0, sd, torch.ones_like(sd))
    return (x - mu) / sd, mu, sd


def _block_sum(t: torch.Tensor, n: int) -> torch.Tensor:
    """Sums over ``n x n`` blocks of the last two axes."""
    if n == 1:
        return t
    *lead, h, w = t.shape
    return t.reshape(*lead, h // n, n, w // n, n).sum(dim=(-3, -1))


def _net_resolution(factor: int, resolution: int | None) -> int:
    """Cells per coarse cell of the network's output: the largest divisor of ``factor`` not
    above ``resolution`` (the factor itself when ``resolution`` is None or no divisor >= 2
    fits)."""
    if resolution is None or resolution >= factor:
        return factor
    best = max(d for d in range(1, resolution + 1) if factor % d == 0)
    return best if best >= 2 else factor


def fit_dip(
    x: torch.Tensor,
    factor: int,
    *,
    members: int = 1,
    seed: int = 0,
    generator: GeneratorName = "decoder",
    iterations: int = 400,
    lr: float = 1e-2,
    skip: bool = True,
    resolution: int | None = 4,
    input_noise: float = 0.0,
    noise_std: float | None = None,
    tol: float | None = None,
    weights: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
    latent_samples: int = 0,
    latent_noise: float = 0.1,
    amp: bool = False,
    net_dtype: NetDtype = "float32",
    progress: bool = False,
    generator_options: dict[str, Any] | None = None,
    guide: torch.Tensor | None = None,
    guide_network: bool = True,
    guide_significance: float = 4.0,
) -> DIPFit:
    """Fit ``members`` generators to each of ``B`` coarse fields, all in one batch.

    Parameters
    ----------
    x : torch.Tensor, shape ``(B, ny, nx)``
        Coarse fields; NaN cells (land) are left out of the loss.
    factor : int
        Refinement factor; the outputs are ``(ny*factor, nx*factor)``.
    members : int
        Networks per field (different seeds).
    seed : int
        Member ``k`` (of every field) is initialised from seed ``seed + k``.
    generator : {"decoder", "study"}
    iterations, lr : int, float
        Adam (betas 0.5, 0.999) iterations and initial learning rate; the learning rate of
        each member is multiplied by 0.95 after 10 iterations without improvement.
    skip : bool
        Add the generator's output to the bicubic interpolation of the (normalised) field.
    resolution : int or None
        Fine cells per coarse cell of the generator's output: the largest divisor of
        ``factor`` not above it (``factor`` when none >= 2 is); the fit compares block means
        at that resolution, and the output is interpolated (bicubic) to the fine grid.
        None: the fine grid itself.
    input_noise : float
        Standard deviation of the noise added to the latent input at each iteration
        (regularisation); 0 switches it off.
    noise_std : float, optional
        Observation noise (units of ``x``): a member stops once its root-mean-square misfit
        is below it, so that it does not fit the noise.
    tol : float, optional
        A member also stops once its normalised mean-square misfit is below ``tol``.
    weights, mask : torch.Tensor, optional, shape ``(B or 1, 1, H, W)``
        Fine cell weights and valid fine cells of the block means (see
        :func:`xsr.conserve.block_mean`).
    latent_samples : int
        After the fit, also render this many outputs per member for latent inputs
        ``z + latent_noise * N(0, 1)`` around its fitted latent.
    latent_noise : float
        Standard deviation of those latent perturbations.
    amp : bool
        Run the generator in bfloat16 autocast (CUDA only).
    net_dtype : {"float32", "float64"}
        Dtype of the networks' parameters.
    progress : bool
        Show a tqdm progress bar with the loss.
    generator_options : dict, optional
        Extra keyword options of the generator class.
    guide : torch.Tensor, optional, shape ``(B or 1, C, H, W)``
        Fine-scale covariates (finite).  Each channel is normalised per field (mean and
        standard deviation over the fine cells of the fit) and split into its coarse part
        and its *anomaly* ``a_c`` (the guide minus the bicubic interpolation of its block
        means).  The output gains ``sum_c (beta_c + gate_c * m_c) * a_c`` at full resolution,
        with ``beta_c`` the least-squares fit of the block means of ``a_c`` to what bicubic
        interpolation leaves of the field (fixed; shrunk by ``gate_c``), ``m_c`` an extra
        output channel of the network (a smooth, per-member modulation) and
        ``gate_c = (1 - (guide_significance / t_c)**2)+`` from the coefficient's t-statistic;
        ``gate_c * a_c`` (on the network's cells) also enters every convolution of the
        generator as input channels.
    guide_network : bool
        Feed the guide to the generator (input channels and modulation); False keeps only
        the fixed linear path ``beta_c * a_c``.
    guide_significance : float
        t-statistic below which a guide channel is not used at all (its gate is 0); 0 uses
        every guide as fitted.

    Returns
    -------
    DIPFit
        ``members`` of shape ``(B, K, H, W)`` in the units of ``x``.
    """
    import torch
    import torch.nn.functional as F

    from ..conserve import block_mean
    from ..nn.generators import build_generator
    from .pipeline import fill_nan

    t0 = time.perf_counter()
    dev = x.device
    ndt = torch.float64 if net_dtype == "float64" else torch.float32
    B, ny, nx = x.shape
    K = int(members)
    H, W = ny * factor, nx * factor
    N = B * K
    res = _net_resolution(factor, resolution)
    sub = factor // res
    net_shape = (ny * res, nx * res)

    xn, mu, sd = _normalise(x.to(torch.float64))
    valid = torch.isfinite(xn)[:, None]  # (B, 1, ny, nx)
    # weights of the fine cells in the block means (area x valid), and summed over the
    # network's cells: the fit compares block means of the network's output at its own
    # resolution, so no iteration touches the fine grid
    wm = torch.ones((H, W), dtype=torch.float64, device=dev)
    if weights is not None:
        wm = wm * weights.to(device=dev, dtype=torch.float64)
    if mask is not None:
        wm = wm * mask.to(device=dev, dtype=torch.float64)
    w_net = _block_sum(wm, sub)
    ok = valid & (_block_sum(wm, factor) > 0)
    cw = (ok / ok.sum(dim=(-2, -1), keepdim=True).clamp(min=1)).to(ndt)
    zero = torch.zeros((), dtype=torch.float64, device=dev)
    target = torch.where(ok, xn[:, None], zero)  # (B, 1, ny, nx)
    base = None
    if skip:
        filled = fill_nan(xn, 4)[:, None]
        base = F.interpolate(filled, size=(H, W), mode="bicubic", align_corners=False)
        base_mean = torch.nan_to_num(block_mean(base, factor, weights=wm))
        target = torch.where(ok, target - base_mean, zero)
        base = base.to(ndt)  # (B, 1, H, W)
    target = target.to(ndt)
    stop_level = None
    if noise_std is not None and noise_std > 0:
        stop_level = (float(noise_std) / sd.reshape(B, 1).to(ndt)) ** 2  # (B, 1)
    if tol is not None:
        tol_t = torch.full((B, 1), float(tol), dtype=ndt, device=dev)
        stop_level = tol_t if stop_level is None else torch.maximum(stop_level, tol_t)

    gp = None
    if guide is not None:
        # the guide's coefficients are fitted to what bicubic interpolation leaves of the
        # field (with or without the skip connection)
        hp = target
        if base is None:
            filled = fill_nan(xn, 4)[:, None]
            smooth = F.interpolate(filled, size=(H, W), mode="bicubic", align_corners=False)
            hp = torch.where(ok, xn[:, None] - block_mean(smooth, factor, weights=wm), zero)
        gp = _guide_parts(guide, xn, ok, hp, cw, wm, weights, factor, sub, guide_significance)
    C = 0 if gp is None else gp.channels
    seeds = [int(seed) + k for _ in range(B) for k in range(K)]
    gopts = dict(generator_options or {})
    if C and guide_network:
        gopts.update(guide_channels=C, out_channels=1 + C)
    gen = build_generator(generator, N, net_shape, seeds=seeds, **gopts)
    gen = gen.to(device=dev, dtype=ndt)
    params = list(gen.parameters())
    if gp is not None:
        # per member (n = field * K + k): the fixed coefficients, the gate, the anomaly
        beta = gp.beta.repeat_interleave(K, dim=0).to(ndt)[:, :, None, None]  # (N, C, 1, 1)
        gate = gp.gate.repeat_interleave(K, dim=0).to(ndt)[:, :, None, None]
        a_net = gp.anomaly_net.repeat_interleave(K, dim=0).to(ndt)  # (N, C, h, w)
        if guide_network:
            gen.set_guide(gate * a_net)
    use_amp = bool(amp) and dev.type == "cuda"

    def raw(z: torch.Tensor | None = None) -> torch.Tensor:
        """The generators' output at their resolution, ``(N, out_channels, ny*res, nx*res)``."""
        if use_amp:
            with torch.autocast("cuda", dtype=torch.bfloat16):
                y = gen(z)
            return y.to(ndt)
        return gen(z)

    def net(z: torch.Tensor | None = None) -> torch.Tensor:
        """The output at the network's resolution, guide path included, ``(N, 1, h, w)``."""
        y = raw(z)
        if gp is None:
            return y
        coef = beta + gate * y[:, 1:] if guide_network else beta
        return y[:, :1] + (coef * a_net).sum(dim=1, keepdim=True)

    def render(z: torch.Tensor | None = None) -> torch.Tensor:
        """The fine output ``(B, K, H, W)``: skip + output interpolated to the fine grid."""
        y = raw(z)
        if sub > 1:
            y = F.interpolate(y, size=(H, W), mode="bicubic", align_corners=False)
        if gp is not None:
            # the guide path at full resolution: (beta + gate * modulation) * anomaly
            coef = beta + gate * y[:, 1:] if guide_network else beta  # (N, C, H or 1, W or 1)
            a = gp.anomaly.to(ndt).repeat_interleave(K, dim=0)  # (N, C, H, W)
            y = y[:, :1] + (coef * a).sum(dim=1, keepdim=True)
        y = y.reshape(B, K, H, W)
        return y if base is None else y + base

    # the block means of the network's output inside the loop: the weights of its cells,
    # normalised per block once (0 in blocks without weight, whose mean does not count), so
    # that each iteration is one product and one reshaped sum.  The sum is accumulated in
    # float64 (as block_mean does; a few hundred microseconds per iteration): in float32 its
    # order, and so its round-off, depends on the batch shape, and the fit amplifies that
    w_blk = _block_sum(w_net, res)
    w_up = w_blk.repeat_interleave(res, dim=-2).repeat_interleave(res, dim=-1)
    w_norm = torch.where(w_up > 0, w_net / torch.where(w_up > 0, w_up, 1.0), 0.0)

    def misfit(g: torch.Tensor) -> torch.Tensor:
        """Weighted mean squared misfit of the block means of ``g`` (network output), (B, K)."""
        g64 = g.reshape(B, K, *net_shape).to(torch.float64)
        bm = _block_sum(g64 * w_norm, res).to(ndt)
        return ((bm - target) ** 2 * cw).sum(dim=(-2, -1))

    noise_gens = None
    if input_noise > 0:
        noise_gens = [torch.Generator(device=dev).manual_seed(s + 7919) for s in seeds]
    zshape = tuple(gen.latent.shape[1:])

    def latent_noise_draw(gens: list[torch.Generator], std: float) -> torch.Tensor:
        eps = torch.stack([torch.randn(zshape, generator=g, device=dev) for g in gens])
        return gen.latent + std * eps.to(gen.latent.dtype)

    # Adam (betas 0.5, 0.999) with one learning rate per member, and a per-member
    # ReduceLROnPlateau(factor=0.95, patience=10, threshold=1e-4 relative)
    b1, b2, eps = 0.5, 0.999, 1e-8
    m_state = [torch.zeros_like(p) for p in params]
    v_state = [torch.zeros_like(p) for p in params]
    lr_n = torch.full((N,), float(lr), dtype=ndt, device=dev)
    best = torch.full((N,), math.inf, dtype=ndt, device=dev)
    bad = torch.zeros((N,), dtype=torch.long, device=dev)
    active = torch.ones((N,), dtype=torch.bool, device=dev)

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=iterations, desc=f"dip x{factor} ({B} field(s) x {K} member(s))")
    loss = torch.zeros((B, K), dtype=ndt, device=dev)
    done = 0
    for it in range(1, iterations + 1):
        z = latent_noise_draw(noise_gens, input_noise) if noise_gens is not None else None
        with torch.enable_grad():  # the pipeline calls upscale under no_grad
            loss = misfit(net(z))
            grads = torch.autograd.grad(loss.sum(), params)
        with torch.no_grad():
            step_lr = lr_n * active
            c1 = 1.0 - b1**it
            c2 = 1.0 - b2**it
            for p, g, m, v in zip(params, grads, m_state, v_state):
                m.mul_(b1).add_(g, alpha=1.0 - b1)
                v.mul_(b2).addcmul_(g, g, value=1.0 - b2)
                denom = (v / c2).sqrt_().add_(eps)
                shape = (N,) + (1,) * (p.ndim - 1)
                p.sub_(step_lr.reshape(shape) / c1 * m / denom)
            lf = loss.detach().reshape(N)
            better = lf < best * (1.0 - 1e-4)
            best = torch.where(better, lf, best)
            bad = torch.where(better, torch.zeros_like(bad), bad + 1)
            cut = bad > 10
            lr_n = torch.where(cut, lr_n * 0.95, lr_n)
            bad = torch.where(cut, torch.zeros_like(bad), bad)
            if stop_level is not None:
                met = (loss.detach() <= stop_level).reshape(N)
                active = active & ~met
        done = it
        if bar is not None:
            bar.update(1)
            if it % 10 == 0 or it == iterations:
                bar.set_postfix(loss=f"{float(loss.detach().mean()):.2e}")
        if stop_level is not None and it % 10 == 0 and not bool(active.any()):
            break
    if bar is not None:
        bar.close()

    with torch.no_grad():
        out = render()
        # the misfit of the fine output itself (the fit used the network's resolution)
        bm = torch.nan_to_num(block_mean(out.to(torch.float64), factor, weights=wm))
        full_target = torch.where(ok, xn[:, None], zero)
        final = ((bm - full_target) ** 2 * cw).sum(dim=(-2, -1))
        scale = sd.to(ndt)[:, None]
        shift = mu.to(ndt)[:, None]
        members_out = out * scale + shift
        samples = None
        if latent_samples > 0:
            gens = [torch.Generator(device=dev).manual_seed(s + 104729) for s in seeds]
            draws = [render(latent_noise_draw(gens, latent_noise)) for _ in range(latent_samples)]
            samples = torch.stack(draws) * scale + shift
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    return DIPFit(
        members=members_out.to(x.dtype),
        samples=None if samples is None else samples.to(x.dtype),
        loss=final.detach(),
        iterations=done,
        seconds=time.perf_counter() - t0,
    )


@dataclass
class _GuideParts:
    """What a guided fit needs of the guide, per field (float64).

    Attributes
    ----------
    channels : int
    anomaly : torch.Tensor, shape ``(B, C, H, W)``
        The normalised guide minus the bicubic interpolation of its block means: the part of
        the guide that the coarse grid does not resolve.
    anomaly_net : torch.Tensor, shape ``(B, C, h, w)``
        Its (weighted) means on the network's cells.
    beta : torch.Tensor, shape ``(B, C)``
        Least-squares coefficients of the coarse residual on the block means of the anomaly,
        times ``gate``.
    gate : torch.Tensor, shape ``(B, C)``
        Significance of each coefficient, in [0, 1]: ``(1 - (k / t)**2)+`` with ``t`` its
        t-statistic and ``k`` the ``significance`` threshold.
    t : torch.Tensor, shape ``(B, C)``
        The t-statistics.
    """

    channels: int
    anomaly: torch.Tensor
    anomaly_net: torch.Tensor
    beta: torch.Tensor
    gate: torch.Tensor
    t: torch.Tensor


def _guide_parts(
    guide: torch.Tensor,
    xn: torch.Tensor,
    ok: torch.Tensor,
    target: torch.Tensor,
    cw: torch.Tensor,
    wm: torch.Tensor,
    weights: torch.Tensor | None,
    factor: int,
    sub: int,
    significance: float,
) -> _GuideParts:
    """Normalise the guide, split off its unresolved part and fit it to the coarse residual.

    ``guide`` ``(B or 1, C, H, W)``; ``xn`` the normalised coarse fields ``(B, ny, nx)``,
    ``ok`` their cells in the loss, ``target`` ``(B, 1, ny, nx)`` the normalised field minus
    the block means of its bicubic interpolation, ``cw`` the cells' weights in the loss,
    ``wm`` the fine weights of the block means, ``weights`` the cell areas.
    """
    import torch
    import torch.nn.functional as F

    from ..conserve import block_mean

    dev = xn.device
    B, ny, nx = xn.shape
    H, W = ny * factor, nx * factor
    g = guide.to(device=dev, dtype=torch.float64)
    g = torch.broadcast_to(g, (B, g.shape[-3], H, W))
    C = int(g.shape[1])
    area = None if weights is None else weights.to(device=dev, dtype=torch.float64)
    # normalise per field and channel over the fine cells that count in the fit
    okf = ok.repeat_interleave(factor, dim=-2).repeat_interleave(factor, dim=-1)
    wv = torch.broadcast_to(wm * okf, (B, 1, H, W))
    tot = wv.sum(dim=(-2, -1), keepdim=True).clamp(min=1e-300)
    mg = (g * wv).sum(dim=(-2, -1), keepdim=True) / tot
    sg = (((g - mg) ** 2 * wv).sum(dim=(-2, -1), keepdim=True) / tot).sqrt()
    gn = (g - mg) / torch.where(sg > 0, sg, torch.ones_like(sg))
    # the part of the guide the coarse grid does not resolve
    gc = block_mean(gn, factor, weights=area)
    anomaly = gn - F.interpolate(gc, size=(H, W), mode="bicubic", align_corners=False)
    a_net = torch.nan_to_num(block_mean(anomaly, sub, weights=wm)) if sub > 1 else anomaly
    # weighted least squares, per field: target ~ sum_c beta_c * block_mean(anomaly_c)
    X = torch.nan_to_num(block_mean(anomaly, factor, weights=wm)).reshape(B, C, -1)
    c64 = cw.to(torch.float64).reshape(B, 1, -1)
    t = target.to(torch.float64).reshape(B, 1, -1)
    eye = torch.eye(C, dtype=torch.float64, device=dev)
    M = (X * c64) @ X.transpose(1, 2)  # (B, C, C)
    M = M + eye * (1e-10 * M.diagonal(dim1=1, dim2=2).sum(-1)[:, None, None] + 1e-30)
    r = (X * c64 * t).sum(dim=-1)  # (B, C)
    Minv = torch.linalg.inv(M)
    beta = (Minv @ r[..., None])[..., 0]
    # t-statistics (cw sums to one over the n cells in the loss)
    n = ok.reshape(B, -1).sum(-1).to(torch.float64)
    resid = t[:, 0] - (beta[..., None] * X).sum(1)
    s2 = (c64[:, 0] * resid**2).sum(-1) * n / (n - C).clamp(min=1)
    se2 = s2[:, None] * Minv.diagonal(dim1=1, dim2=2) / n.clamp(min=1)[:, None]
    tstat = beta.abs() / se2.clamp(min=1e-300).sqrt()
    gate = (1.0 - (float(significance) / tstat.clamp(min=1e-300)) ** 2).clamp(min=0.0)
    return _GuideParts(C, anomaly, a_net, beta * gate, gate, tstat)


#: On the CPU, members are fitted in batches of at most this many network output cells
#: (members x fields x cells): beyond it the grouped convolutions outgrow the caches and a
#: batch becomes slower per member than a loop (measured on a 256 x 256 output, one thread:
#: 10 members at x4, 655 k cells, 1.8x slower than a loop; 10 at x8, 164 k cells, 1.1x faster).
CPU_BATCH_CELLS = 2**18


def _cpu_chunk(B: int, ny: int, nx: int, factor: int, m: DIP) -> int:
    """Members per batch on the CPU (see :data:`CPU_BATCH_CELLS`)."""
    res = _net_resolution(factor, m.resolution)
    cells = B * ny * nx * res * res
    return max(1, min(m._members, CPU_BATCH_CELLS // max(cells, 1)))


class DIP(Method):
    """Deep image prior: one generator network fitted to each coarse field.

    Parameters
    ----------
    generator : {"decoder", "study"}, default "decoder"
        ``"decoder"``: a small decoder (latent map, few channels) run at ``resolution``
        cells per coarse cell.  ``"study"``: the study's generator and training (2.39 M
        parameters at 256 x 256, 1500 iterations, lr 1e-3, full resolution).
    iterations : int, optional
        Adam iterations (default 400 for "decoder", 1500 for "study").
    lr : float, optional
        Initial learning rate (default 1e-2 for "decoder", 1e-3 for "study").
    seed : int, default 0
        Seed of the initialisation (parameters and latent input).
    skip : bool, optional
        Add the network's output to the bicubic interpolation of the coarse field (default
        True for "decoder", False for "study").
    resolution : int, optional
        Fine cells per coarse cell of the network output (default 4 for "decoder", the
        factor for "study").
    input_noise : float, optional
        Noise added to the latent input at each iteration (default 0).
    noise_std : float, optional
        Noise level of the observations (units of the field): each fit stops once its
        root-mean-square misfit of the block means is below it (no overfitting of noise).
    tol : float, optional
        Stop a fit once its normalised mean-square misfit is below ``tol``.
    uncertainty : {"none", "latent"}, default "none"
        ``"latent"``: after the fit, render ``latent_samples`` outputs for latent inputs
        sampled around the fitted latent and return their spread.
    latent_samples : int, default 16
    latent_noise : float, default 0.1
        Standard deviation of the latent perturbations (the latent is ``N(0, 1)``).
    keep_members : bool, default False
        Also return the samples the spread is computed from (a ``member`` dimension).
    amp : bool, optional
        bfloat16 autocast of the generator on CUDA (default False).
    net_dtype : {"float32", "float64"}, default "float32"
        Dtype of the network parameters and of the fit.
    progress : bool, optional
        tqdm progress bar with the loss (default: ``xsr.set_options(progress=...)``).
    max_batch : int, optional
        Largest number of members fitted in one batch (the rest follow in further batches;
        results do not change).  Default: all of them on a GPU; on the CPU as many as keep
        ``members x fields x network cells`` within ``CPU_BATCH_CELLS`` (2**18).
    guide_network : bool, default True
        With a guide (``guide=`` of :func:`xsr.downscale`): also feed it to the generator,
        as input channels of every convolution and as a per-member modulation of its
        coefficient.  False keeps only the linear path (the guide's unresolved part times
        its least-squares coefficient), which is cheaper and cannot overfit.
    guide_significance : float, default 4.0
        With a guide: a channel whose least-squares coefficient has a t-statistic ``t`` is
        used with the weight ``(1 - (guide_significance / t)**2)+``, so that a guide that
        does not explain the coarse field (``t`` below the threshold) is not used at all.
        0 uses every guide as fitted.
    calibrate : {"none", "scale", "local"}, default "none"
        Calibrate the spread (needs one: ``uncertainty="latent"`` or ``dip-ensemble``) on
        the input itself: coarsen it once more, downscale that with the same options,
        compare the spread with the error there and carry the fitted relation to the
        requested scale (scale similarity; see :mod:`xsr.methods.calibration` and
        ``docs/dip.md``).  ``"scale"``: one factor on the spread per field; ``"local"``: a
        factor per coarse cell from the raw spread and local features of the field.  The
        members are rescaled about their mean by the same factor (they still conserve
        exactly; the mean does not change).  Costs one more run of the method, onto the
        input's grid (``factor**2`` times fewer cells than the output; measured +13-14 % of
        the time at x8 and x16).  Off by default: measured not to help on every case.
    calibration_factor : int, optional
        Factor ``r`` of that coarsening (default 2, whatever the requested factor: measured
        to transfer better than 4 or the requested factor itself on QG and the Med, worse
        on a global SSH window; see ``docs/dip.md``).  A
        factor whose coarsened field keeps fewer than
        :data:`~xsr.methods.calibration.MIN_CELLS` valid cells is lowered; a warning says
        when even ``r = 2`` does not, and the spread is left raw.

    Notes
    -----
    **Guides.**  Fine-scale covariates (``context["guide"]``, ``C`` channels) are used when
    given: see ``guide`` of :func:`fit_dip` and ``docs/dip.md`` ("Guided DIP").  The fit
    loss stays the misfit of the block means, and the output is enforced as without one.
    """

    name = "dip"
    halo: ClassVar[int] = 2
    handles_nan: ClassVar[bool] = True
    stochastic: ClassVar[bool] = True
    uses_guide: ClassVar[bool] = True
    _members: int = 1

    def __init__(
        self,
        *,
        generator: GeneratorName = "decoder",
        iterations: int | None = None,
        lr: float | None = None,
        seed: int = 0,
        skip: bool | None = None,
        resolution: int | None = None,
        input_noise: float | None = None,
        noise_std: float | None = None,
        tol: float | None = None,
        uncertainty: Uncertainty = "none",
        latent_samples: int = 16,
        latent_noise: float = 0.1,
        keep_members: bool = False,
        amp: bool | None = None,
        net_dtype: NetDtype = "float32",
        progress: bool | None = None,
        max_batch: int | None = None,
        guide_network: bool = True,
        guide_significance: float = 4.0,
        calibrate: CalibrateMode = "none",
        calibration_factor: int | None = None,
    ) -> None:
        from ..nn.generators import GENERATORS

        check_choice(generator, GENERATORS, name="generator")
        d = _DEFAULTS[generator]
        self.generator: GeneratorName = generator
        self.iterations = check_int(
            d["iterations"] if iterations is None else iterations, name="iterations", minimum=1
        )
        self.lr = check_number(d["lr"] if lr is None else lr, name="lr", positive=True)
        self.seed = check_int(seed, name="seed", minimum=0)
        self.skip = check_bool(d["skip"] if skip is None else skip, name="skip")
        r = d["resolution"] if resolution is None else resolution
        self.resolution = check_int(r, name="resolution", minimum=2, allow_none=True)
        self.input_noise = check_number(
            d["input_noise"] if input_noise is None else input_noise, name="input_noise", minimum=0
        )
        self.noise_std = check_number(noise_std, name="noise_std", minimum=0, allow_none=True)
        self.tol = check_number(tol, name="tol", minimum=0, allow_none=True)
        check_choice(uncertainty, self._uncertainties(), name="uncertainty")
        self.uncertainty: Uncertainty = uncertainty
        self.latent_samples = check_int(latent_samples, name="latent_samples", minimum=2)
        self.latent_noise = check_number(latent_noise, name="latent_noise", positive=True)
        self.keep_members = check_bool(keep_members, name="keep_members")
        if self.keep_members and self.uncertainty == "none":
            raise OptionError(
                "keep_members=True needs samples: use method='dip-ensemble' or uncertainty='latent'"
            )
        self.amp = check_bool(amp, name="amp", allow_none=True)
        check_choice(net_dtype, ("float32", "float64"), name="net_dtype")
        self.net_dtype: NetDtype = net_dtype
        self.progress = check_bool(progress, name="progress", allow_none=True)
        self.max_batch = check_int(max_batch, name="max_batch", minimum=1, allow_none=True)
        self.guide_network = check_bool(guide_network, name="guide_network")
        self.guide_significance = check_number(
            guide_significance,
            name="guide_significance",
            minimum=0,
            hint="it is the t-statistic a guide's coefficient must exceed to be used (0: always)",
        )
        check_choice(
            calibrate,
            CALIBRATE_MODES,
            name="calibrate",
            hint="'scale' fits one factor on the spread, 'local' one per coarse cell, "
            "'none' keeps the raw spread",
        )
        self.calibrate: CalibrateMode = calibrate
        if calibrate != "none" and self.uncertainty == "none":
            raise OptionError(
                f"calibrate={calibrate!r} calibrates a spread, and uncertainty='none' gives "
                "none; allowed: calibrate='none' here. Fix: use method='dip-ensemble', or "
                "uncertainty='latent'"
            )
        self.calibration_factor = check_int(
            calibration_factor,
            name="calibration_factor",
            minimum=2,
            allow_none=True,
            hint="it is the factor by which the input is coarsened once more to fit the "
            "calibration (None: chosen from the grid size)",
        )
        if self.calibration_factor is not None and calibrate == "none":
            raise OptionError(
                f"calibration_factor={self.calibration_factor} is only used with a "
                "calibration; allowed: None with calibrate='none'. Fix: also pass "
                "calibrate='scale' (or 'local'), or leave calibration_factor out"
            )
        #: The calibration of the last :meth:`upscale` call (None without one).
        self.last_calibration: SpreadCalibration | None = None

    @staticmethod
    def _uncertainties() -> tuple[str, ...]:
        return ("none", "latent")

    @property
    def extra_outputs(self) -> tuple[str, ...]:
        """``("std",)`` with a spread, plus ``"members"`` with ``keep_members=True``."""
        if self.uncertainty == "none":
            return ()
        return ("std", "members") if self.keep_members else ("std",)

    @property
    def n_members(self) -> int:
        """Length of the ``member`` dimension of the samples (0 without an uncertainty)."""
        if self.uncertainty == "none":
            return 0
        if self.uncertainty == "latent":
            return self._members * self.latent_samples
        return self._members

    def options(self) -> dict[str, Any]:
        opts: dict[str, Any] = {
            "generator": self.generator,
            "iterations": self.iterations,
            "lr": self.lr,
            "seed": self.seed,
            "skip": self.skip,
            "resolution": self.resolution,
            "input_noise": self.input_noise,
        }
        if self._members > 1:
            opts["members"] = self._members
        if self.noise_std is not None:
            opts["noise_std"] = self.noise_std
        if self.tol is not None:
            opts["tol"] = self.tol
        if not self.guide_network:
            opts["guide_network"] = False
        if self.guide_significance != 4.0:
            opts["guide_significance"] = self.guide_significance
        opts["uncertainty"] = self.uncertainty
        if self.uncertainty == "latent":
            opts["latent_samples"] = self.latent_samples
            opts["latent_noise"] = self.latent_noise
        if self.uncertainty != "none":
            opts["calibrate"] = self.calibrate
        if self.calibration_factor is not None:
            opts["calibration_factor"] = self.calibration_factor
        return opts

    def fit(
        self,
        x: torch.Tensor,
        factor: int,
        *,
        weights: Any = None,
        mask: Any = None,
        guide: Any = None,
    ) -> DIPFit:
        """Fit the networks to ``x`` of shape ``(..., ny, nx)`` (leading dims flattened).

        ``guide``: fine-scale covariates, ``(C, ny*factor, nx*factor)`` or
        ``(..., C, ny*factor, nx*factor)`` with the leading dims of ``x``.

        Returns
        -------
        DIPFit
            ``members`` of shape ``(B, K, ny*factor, nx*factor)`` with ``B`` the product of
            the leading dims and ``K`` the number of members.
        """
        import torch

        from ..options import OPTIONS

        *lead, ny, nx = x.shape
        B = math.prod(lead)
        H, W = ny * factor, nx * factor
        xb = x.reshape(B, ny, nx)

        def _fine(a: Any, dtype: torch.dtype) -> torch.Tensor | None:
            # (H, W) broadcasts as it is; anything with leading dims goes to (B, 1, H, W)
            if a is None:
                return None
            t = torch.as_tensor(a).to(device=x.device, dtype=dtype)
            if t.ndim <= 2:
                return t
            return torch.broadcast_to(t, (*lead, H, W)).reshape(B, 1, H, W)

        gb = None
        if guide is not None:
            gt = torch.as_tensor(guide).to(device=x.device, dtype=torch.float64)
            nc = gt.shape[-3]
            gb = torch.broadcast_to(gt, (*lead, nc, H, W)).reshape(B, nc, H, W)
        progress = OPTIONS["progress"] if self.progress is None else self.progress
        amp = bool(self.amp)  # bfloat16 only when asked for (see docs/dip.md)
        K = self._members
        chunk = self.max_batch
        if chunk is None:
            chunk = K if x.device.type != "cpu" else _cpu_chunk(B, ny, nx, factor, self)
        fits = []
        for start in range(0, K, chunk):
            fits.append(
                fit_dip(
                    xb,
                    factor,
                    members=min(chunk, K - start),
                    seed=self.seed + start,
                    generator=self.generator,
                    iterations=self.iterations,
                    lr=self.lr,
                    skip=self.skip,
                    resolution=self.resolution,
                    input_noise=self.input_noise,
                    noise_std=self.noise_std,
                    tol=self.tol,
                    weights=_fine(weights, torch.float64),
                    mask=_fine(mask, torch.bool),
                    latent_samples=self.latent_samples if self.uncertainty == "latent" else 0,
                    latent_noise=self.latent_noise,
                    amp=amp,
                    net_dtype=self.net_dtype,
                    progress=progress,
                    guide=gb,
                    guide_network=self.guide_network,
                    guide_significance=self.guide_significance,
                )
            )
        if len(fits) == 1:
            return fits[0]
        samples = [f.samples for f in fits]
        return DIPFit(
            members=torch.cat([f.members for f in fits], dim=1),
            samples=None if samples[0] is None else torch.cat(samples, dim=2),  # type: ignore[arg-type]
            loss=torch.cat([f.loss for f in fits], dim=1),
            iterations=max(f.iterations for f in fits),
            seconds=sum(f.seconds for f in fits),
        )

    def upscale(self, x: torch.Tensor, factor: int, **context: Any) -> Upscaled:
        """Fit and return the mean of the members and the samples of the spread.

        Returns
        -------
        Upscaled
            ``fine`` ``(..., ny*f, nx*f)`` (mean of the members, NaN where the fine cell is
            masked) and, with an uncertainty, ``members`` ``(M, ..., ny*f, nx*f)``.
        """
        import torch

        *lead, ny, nx = x.shape
        H, W = ny * factor, nx * factor
        fit = self.fit(
            x,
            factor,
            weights=context.get("weights"),
            mask=context.get("mask"),
            guide=context.get("guide"),
        )
        fine = fit.members.mean(dim=1).reshape(*lead, H, W)
        samples: torch.Tensor | None
        if self.uncertainty == "latent":
            assert fit.samples is not None
            s = fit.samples  # (S, B, K, H, W)
            samples = s.permute(0, 2, 1, 3, 4).reshape(-1, *lead, H, W)
        elif self.uncertainty == "ensemble":
            samples = fit.members.permute(1, 0, 2, 3).reshape(-1, *lead, H, W)
        else:
            samples = None
        self.last_calibration = None
        if samples is not None and self.calibrate != "none":
            samples = self._calibrated(x, factor, samples, context)
        mask = context.get("mask")
        if mask is not None:
            nan = torch.full((), float("nan"), dtype=fine.dtype, device=fine.device)
            m = torch.as_tensor(mask, device=fine.device)
            fine = torch.where(m, fine, nan)
            if samples is not None:
                samples = torch.where(m, samples, nan)
        return Upscaled(fine=fine, members=samples)

    def _calibrated(
        self, x: torch.Tensor, factor: int, samples: torch.Tensor, context: dict[str, Any]
    ) -> torch.Tensor:
        """The samples rescaled about their mean by the fitted calibration (see
        :mod:`xsr.methods.calibration`); records it in :attr:`last_calibration`."""
        import copy

        import torch

        from ..conserve import block_mean
        from .calibration import (
            crop_blocks,
            fit_calibration,
            member_deviations,
            scale_members,
            spread_factor,
        )
        from .pipeline import downscale_array

        *lead, ny, nx = x.shape
        B = math.prod(lead)
        H, W = ny * factor, nx * factor
        xb = x.reshape(B, ny, nx)
        M = samples.shape[0]
        sb = samples.reshape(M, B, H, W)

        def _fine(a: Any, dtype: torch.dtype) -> torch.Tensor | None:
            if a is None:
                return None
            t = torch.as_tensor(a).to(device=x.device, dtype=dtype)
            return torch.broadcast_to(t, (*lead, H, W)).reshape(B, H, W)

        weights = _fine(context.get("weights"), torch.float64)
        mask = _fine(context.get("mask"), torch.bool)
        raw = copy.copy(self)
        raw.calibrate = "none"
        raw.calibration_factor = None
        raw.keep_members = False
        raw.progress = False
        # a guide goes one level up too: its block means on the grid of x
        guide = context.get("guide")
        gx = None
        if guide is not None:
            g = torch.as_tensor(guide).to(device=x.device, dtype=torch.float64)
            g = torch.broadcast_to(g, (*lead, g.shape[-3], H, W)).reshape(B, -1, H, W)
            gx = block_mean(g, factor)

        def run(
            xc: torch.Tensor, r: int, w: torch.Tensor | None, m: torch.Tensor | None
        ) -> tuple[torch.Tensor, torch.Tensor]:
            res = downscale_array(
                xc,
                factor=r,
                method=raw,
                weights=w,
                mask=m,
                extras=True,
                device=str(xc.device),
                dtype=str(xc.dtype).replace("torch.", ""),
                guide=None if gx is None else crop_blocks(gx, r),
                guide_names=context.get("guide_names") if gx is not None else None,
            )
            return res.fine, res.std

        cal = fit_calibration(
            xb,
            factor,
            run,
            weights=weights,
            mask=mask,
            mode=self.calibrate,
            calibration_factor=self.calibration_factor,
        )
        self.last_calibration = cal
        missed = [r for r in cal.reasons if r is not None]
        if missed:
            n = int((~cal.fitted).sum())
            if n:
                what = f"spread left raw for {n} of {B} field(s)"
                fix = "downscale a larger region (the calibration coarsens the input once more)"
            else:
                what = (
                    f"one scale factor instead of the local model for {len(missed)} of {B} field(s)"
                )
                fix = "downscale a larger region, or pass calibrate='scale'"
            warnings.warn(
                f"{self.name}: calibrate={self.calibrate!r}: {what} "
                f"({'; '.join(sorted(set(missed)))}). Fix: {fix}",
                UserWarning,
                stacklevel=4,
            )
        if not bool(cal.fitted.any()):
            return samples
        devs = member_deviations(sb, xb, factor, weights=weights, mask=mask)
        _, emean, _, std = devs
        s = spread_factor(cal, xb, factor, emean, std, weights=weights, mask=mask)
        cal.spread = s.reshape(*lead, ny, nx)
        out = scale_members(sb, xb, factor, s, weights=weights, mask=mask, deviations=devs)
        return out.reshape(samples.shape)


class DIPEnsemble(DIP):
    """An ensemble of deep-image-prior fits, run together as one batched computation.

    Takes the options of :class:`DIP`, plus:

    Parameters
    ----------
    members : int, default 10
        Number of networks per field (seeds ``seed .. seed + members - 1``), fitted together.
    uncertainty : {"ensemble", "latent"}, default "ensemble"
        Spread of the fitted members, or of ``latent_samples`` latent samples around each
        member's fitted latent (``members x latent_samples`` samples).
    keep_members : bool, default False
        Also return the (enforced) members, or latent samples, with a ``member`` dimension.

    The result is the mean of the members (enforced); ``<var>_std`` is the standard
    deviation of the enforced members.
    """

    name = "dip-ensemble"

    def __init__(
        self,
        *,
        members: int = 10,
        uncertainty: Uncertainty = "ensemble",
        latent_samples: int = 4,
        **options: Any,
    ) -> None:
        self._members = check_int(members, name="members", minimum=2)
        super().__init__(uncertainty=uncertainty, latent_samples=latent_samples, **options)

    @property
    def members(self) -> int:
        """Number of ensemble members per field."""
        return self._members

    @staticmethod
    def _uncertainties() -> tuple[str, ...]:
        return ("ensemble", "latent")
