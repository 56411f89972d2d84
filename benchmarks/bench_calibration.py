"""Calibrated spread of ``dip-ensemble`` (``calibrate=``): twin experiments; JSON on stdout.

Each truth field is block-averaged by a factor (area weights, land NaN) and downscaled back
with ``method="dip-ensemble"`` (``--members``, default iterations) through
:func:`xsr.methods.downscale_array`; the spread is scored against the truth:

* ``raw``: the ensemble's own spread (``calibrate="none"``);
* ``scale``: one factor per field fitted on the input coarsened once more
  (``calibrate="scale"``);
* ``local``: a factor per coarse cell from the raw spread and local features
  (``calibrate="local"``).

To save a run of the ensemble per variant, each case is downscaled once with
``calibrate="local"`` (which fits the scale factor too) and ``keep_members=True``; the raw
spread and members are recovered exactly from the applied factor map
(``method.last_calibration.spread``: with additive enforcement member ``k`` is
``mean + s * d_k``), and the ``scale`` variant is the raw one times
``last_calibration.scale`` -- what ``calibrate="scale"`` returns
(``tests/test_calibration.py`` checks both identities).

Scores (:mod:`xsr.metrics`, area-weighted over the valid fine cells):

* ``ssr``: spread-skill ratio, RMS spread / RMSE of the mean (target 0.8-1.25);
* ``crps_gauss_vs_bicubic_mae``: CRPS of the Gaussian with the ensemble mean and the
  (calibrated) spread, divided by the MAE of conservative bicubic (target <= 0.75; a
  perfectly calibrated Gaussian reaches about 0.71 x its own MAE);
* ``crps_members_vs_bicubic_mae``: the same for the members (the fair ensemble CRPS,
  :func:`xsr.metrics.crps_ensemble`);
* ``corr``: area-weighted Pearson correlation of the spread with the absolute error
  (:func:`xsr.metrics.spread_error_correlation`; target >= 0.4);
* ``rank_outer``: frequency of the truth below all members and above all members, times
  ``K + 1`` (1 is uniform; target <= 2);
* ``rmse_cm``: RMSE of the mean (the calibration does not change it);
* times: ``seconds`` (the whole call), ``calibration_seconds`` (the calibration fit, its run
  of the ensemble on the coarsened input included).

``other_calibration_factors``: ``calibrate="scale"`` fitted at other calibration factors
(``--other-factors``, default 4 and the requested factor itself, where the coarsened input
keeps :data:`~xsr.methods.calibration.MIN_CELLS` valid cells) on the same ensemble, to
measure whether the spread-to-error relation transfers across factors.

Cases (``XSR_DATA_DIR`` or the cache of :func:`xsr.datasets.fetch`):

* ``qg:T``: snapshot ``T`` of ``ssh_qg_256_train.nc`` (256 x 256, doubly periodic; the
  calibration sees only the coarse field, so every snapshot is held out; snapshot 0 was
  used to design it);
* ``global``: the all-ocean 256 x 256 South Pacific window of
  ``ssh_global_quarterdeg_20190223.nc`` of ``bench_dip.py`` (cos-latitude weights);
* ``med:T``: day ``T`` of ``ssh_med_eighthdeg_2005AMJ.nc``, 128 x 320 (the 24 westernmost
  columns dropped so that 16 divides the width; 60 % land, masked).

``--speed`` only times ``calibrate="none"`` against ``"scale"`` (best of ``--repeat``) on
the first case: the times of the twin runs vary with the load of a shared machine.

Usage::

    XSR_DATA_DIR=/work/shared/data python benchmarks/bench_calibration.py \\
        --cases qg:1 qg:2 global med:0 --factors 8 16 > calibration_cpu.json
    XSR_DATA_DIR=/work/shared/data python benchmarks/bench_calibration.py --speed \\
        --cases qg:1 --factors 8 16 > calibration_cpu_speed.json
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from typing import Any

import numpy as np
from _machine import machine_info  # benchmarks/_machine.py (run as a script)

QG = "ssh_qg_256_train.nc"
GLOBAL = "ssh_global_quarterdeg_20190223.nc"
MED = "ssh_med_eighthdeg_2005AMJ.nc"
GLOBAL_WINDOW = {"latitude": slice(96, 352), "longitude": slice(752, 1008)}


def log(*a: Any) -> None:
    print(*a, file=sys.stderr, flush=True)


def load_case(spec: str) -> tuple[np.ndarray, np.ndarray | None, str]:
    """(truth (ny, nx) in m, float64 with NaN land; fine cell weights or None; source)."""
    import xarray as xr

    import xsr

    if spec.startswith("qg:"):
        t = int(spec.split(":")[1])
        ds = xr.open_dataset(xsr.datasets.fetch(QG))
        return ds["ssh"].isel(time=t).values.astype("f8"), None, f"{QG} snapshot {t}"
    if spec == "global":
        ds = xr.open_dataset(xsr.datasets.fetch(GLOBAL)).isel(GLOBAL_WINDOW)
        truth = ds["adt"].isel(time=0).values.astype("f8")
        lat = ds["latitude"].values.astype("f8")
        w = np.cos(np.deg2rad(lat))[:, None] * np.ones((1, truth.shape[1]))
        return truth, w, f"{GLOBAL} window 65.9S-2.1S, 188E-252E"
    if spec.startswith("med:"):
        t = int(spec.split(":")[1])
        ds = xr.open_dataset(xsr.datasets.fetch(MED)).isel(longitude=slice(24, None))
        truth = ds["adt"].isel(time=t).values.astype("f8")
        lat = ds["latitude"].values.astype("f8")
        w = np.cos(np.deg2rad(lat))[:, None] * np.ones((1, truth.shape[1]))
        day = str(ds["time"].values[t])[:10]
        return truth, w, f"{MED} {day}, 2.9W-36.9E, land masked"
    raise SystemExit(f"unknown case {spec!r}; use qg:T, global or med:T")


# ----------------------------------------------------------------------------------------
# scores: xsr.metrics, area-weighted over the valid fine cells
# ----------------------------------------------------------------------------------------
def scores(
    mean: np.ndarray,
    std: np.ndarray,
    members: np.ndarray,
    truth: np.ndarray,
    w: np.ndarray,
    mae_bicubic: float,
) -> dict[str, float]:
    """The scores of one variant (:mod:`xsr.metrics`; cells where all inputs are finite)."""
    import xarray as xr

    from xsr import metrics

    ok = np.isfinite(truth) & np.isfinite(mean) & np.isfinite(std) & (std > 0)
    dims = ("y", "x")

    def da(a: np.ndarray) -> xr.DataArray:
        return xr.DataArray(np.where(ok, a, np.nan), dims=dims)

    y, mu, sd = da(truth), da(mean), da(std)
    wts = xr.DataArray(np.broadcast_to(w, truth.shape), dims=dims)
    mem = xr.DataArray(np.where(ok, members, np.nan), dims=("member", *dims))
    k = members.shape[0]
    rmse = float(metrics.rmse(mu, y, weights=wts))
    hist = np.asarray(metrics.rank_histogram(mem, y, weights=wts).values, dtype=np.float64)
    wv = np.broadcast_to(w, truth.shape)[ok]
    rms_spread = float(np.sqrt((wv * std[ok] ** 2).sum() / wv.sum()))
    crps_g = float(metrics.crps_gaussian(mu, sd, y, weights=wts))
    crps_m = float(metrics.crps_ensemble(mem, y, weights=wts))
    return {
        "rmse_cm": 100 * rmse,
        "mae_cm": 100 * float(metrics.mae(mu, y, weights=wts)),
        "mean_std_cm": 100 * rms_spread,
        "ssr": float(metrics.spread_skill((mu, sd), y, weights=wts)),
        "crps_gauss_vs_bicubic_mae": crps_g / mae_bicubic,
        "crps_members_vs_bicubic_mae": crps_m / mae_bicubic,
        "corr": float(metrics.spread_error_correlation((mu, sd), y, weights=wts)),
        "rank_outer_low": float(hist[0] * (k + 1)),
        "rank_outer_high": float(hist[-1] * (k + 1)),
        "rank_outer": float(max(hist[0], hist[-1]) * (k + 1)),
    }


def cons_error(members: np.ndarray, coarse: np.ndarray, f: int, w: Any, mask: Any) -> float:
    from xsr.conserve import conservation_error

    return max(conservation_error(m, coarse, f, weights=w, mask=mask) for m in members)


# ----------------------------------------------------------------------------------------
def run_case(spec: str, f: int, args: argparse.Namespace) -> dict[str, Any]:
    import xarray as xr

    from xsr import metrics
    from xsr.conserve import block_mean, upsample
    from xsr.methods import downscale_array, get_method

    truth, w, source = load_case(spec)
    mask = np.isfinite(truth)
    coarse = block_mean(truth, f, weights=w)
    wts = np.ones_like(truth) if w is None else w
    kw: dict[str, Any] = {"weights": w, "mask": None if mask.all() else mask}
    bic = downscale_array(coarse, factor=f, method="bicubic", **kw)
    mae_bic = float(
        metrics.mae(
            xr.DataArray(bic, dims=("y", "x")),
            xr.DataArray(truth, dims=("y", "x")),
            weights=xr.DataArray(np.broadcast_to(wts, truth.shape), dims=("y", "x")),
        )
    )
    m = get_method(
        "dip-ensemble",
        members=args.members,
        seed=args.seed,
        keep_members=True,
        calibrate="local",
        progress=False,
        **({"iterations": args.iterations} if args.iterations else {}),
    )
    log(f"{spec} x{f}: dip-ensemble ({coarse.shape[0]}x{coarse.shape[1]} coarse cells) ...")
    t0 = time.perf_counter()
    out = downscale_array(coarse, factor=f, method=m, extras=True, **kw)
    seconds = time.perf_counter() - t0
    cal = m.last_calibration
    assert cal is not None
    row: dict[str, Any] = {
        "case": spec,
        "source": source,
        "factor": f,
        "coarse_shape": list(coarse.shape),
        "valid_coarse_cells": int(np.isfinite(coarse).sum()),
        "members": args.members,
        "seconds": seconds,
        "calibration_seconds": cal.seconds,
        "calibration_factor": cal.factor,
        "calibration_cells": int(cal.cells[0]),
        "calibration_local": bool(cal.local[0]),
        "calibration_reason": cal.reasons[0],
        "scale_factor": float(cal.scale[0]),
        "raw_ratio_at_calibration_level": float(cal.raw_ratio[0]),
        "local_coefficients": [float(v) for v in cal.coef[0]],
        "bicubic_mae_cm": 100 * mae_bic,
    }
    mean = out.fine
    if cal.spread is None:  # not fitted: the raw spread
        s_map = np.ones(coarse.shape)
    else:
        s_map = cal.spread.cpu().numpy().reshape(coarse.shape)
    s_fine = upsample(s_map, f)
    dev = out.members - mean
    raw_members = mean + dev / s_fine
    raw_std = out.std / s_fine
    variants = {
        "raw": (raw_std, raw_members),
        "scale": (raw_std * row["scale_factor"], mean + dev / s_fine * row["scale_factor"]),
        "local": (out.std, out.members),
    }
    for name, (sd, mem) in variants.items():
        row[name] = scores(mean, sd, mem, truth, wts, mae_bic)
    row["conservation_error_members"] = cons_error(out.members, coarse, f, w, kw["mask"])
    # the scale factor fitted at other calibration factors, on the same ensemble
    row["other_calibration_factors"] = other_factors(
        coarse, f, w, kw["mask"], mean, raw_std, raw_members, truth, wts, mae_bic, cal.factor, args
    )
    row["local_factor_range"] = [float(np.nanmin(s_map)), float(np.nanmax(s_map))]
    r, s, loc = row["raw"], row["scale"], row["local"]
    log(
        f"  {seconds:.0f} s (calibration {cal.seconds:.0f} s at x{cal.factor}); rmse "
        f"{r['rmse_cm']:.4f} cm; ssr raw {r['ssr']:.3f} scale {s['ssr']:.3f} local "
        f"{loc['ssr']:.3f}; corr {r['corr']:.2f}/{s['corr']:.2f}/{loc['corr']:.2f}; crps/bic "
        f"{r['crps_gauss_vs_bicubic_mae']:.3f}/{s['crps_gauss_vs_bicubic_mae']:.3f}/"
        f"{loc['crps_gauss_vs_bicubic_mae']:.3f}; rank outer {r['rank_outer']:.2f}/"
        f"{s['rank_outer']:.2f}/{loc['rank_outer']:.2f}"
    )
    return row


def other_factors(
    coarse: np.ndarray,
    f: int,
    w: Any,
    mask: Any,
    mean: np.ndarray,
    raw_std: np.ndarray,
    raw_members: np.ndarray,
    truth: np.ndarray,
    wts: np.ndarray,
    mae_bic: float,
    used: int | None,
    args: argparse.Namespace,
) -> list[dict[str, Any]]:
    """``calibrate="scale"`` with ``calibration_factor=r`` for each ``--other-factors`` ``r``
    (``r = 0`` stands for the requested factor itself), on the raw ensemble of the case: only
    the calibration runs are new.  Skipped where the coarsened input keeps too few cells."""
    import torch

    from xsr.methods import downscale_array, get_method
    from xsr.methods.calibration import MIN_CELLS, choose_factor, fit_calibration

    raw = get_method(
        "dip-ensemble",
        members=args.members,
        seed=args.seed,
        progress=False,
        **({"iterations": args.iterations} if args.iterations else {}),
    )

    def run(xc: Any, r: int, wc: Any, mc: Any) -> tuple[Any, Any]:
        res = downscale_array(xc, factor=r, method=raw, weights=wc, mask=mc, extras=True)
        return res.fine, res.std

    x = torch.as_tensor(coarse)[None]
    wt = None if w is None else torch.as_tensor(np.asarray(w, dtype="f8"))
    mt = None if mask is None else torch.as_tensor(mask)
    rows = []
    for r0 in args.other_factors:
        r = f if r0 == 0 else r0
        if r == used or choose_factor(x, requested=r) != r:
            continue
        log(f"  scale calibration at x{r} ...")
        fit = fit_calibration(x, f, run, weights=wt, mask=mt, mode="scale", calibration_factor=r)
        s = float(fit.scale[0])
        dev = raw_members - mean
        row: dict[str, Any] = {
            "calibration_factor": r,
            "calibration_cells": int(fit.cells[0]),
            "min_cells": MIN_CELLS,
            "scale": s,
            "calibration_seconds": fit.seconds,
        }
        row.update(scores(mean, raw_std * s, mean + dev * s, truth, wts, mae_bic))
        log(
            f"    x{r}: scale {s:.2f}, ssr {row['ssr']:.3f}, crps/bic "
            f"{row['crps_gauss_vs_bicubic_mae']:.3f}"
        )
        rows.append(row)
    return rows


def speed(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Wall time of ``calibrate="none"`` against ``"scale"`` (best of ``--repeat``), same
    ensemble, for the first case at each factor."""
    from xsr.conserve import block_mean
    from xsr.methods import downscale_array

    truth, w, _ = load_case(args.cases[0])
    mask = np.isfinite(truth)
    out = []
    for f in args.factors:
        coarse = block_mean(truth, f, weights=w)
        row: dict[str, Any] = {"case": args.cases[0], "factor": f}
        for mode in ("none", "scale"):
            best = math.inf
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                downscale_array(
                    coarse,
                    factor=f,
                    method="dip-ensemble",
                    members=args.members,
                    seed=args.seed,
                    calibrate=mode,
                    progress=False,
                    weights=w,
                    mask=None if mask.all() else mask,
                    extras=True,
                )
                best = min(best, time.perf_counter() - t0)
            row[f"seconds_{mode}"] = best
        row["extra"] = row["seconds_scale"] / row["seconds_none"] - 1
        log(f"speed x{f}: none {row['seconds_none']:.1f} s, scale {row['seconds_scale']:.1f} s")
        out.append(row)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cases", nargs="+", default=["qg:1", "global", "med:0"])
    p.add_argument("--factors", nargs="+", type=int, default=[8, 16])
    p.add_argument("--members", type=int, default=10)
    p.add_argument("--iterations", type=int, default=None, help="default of dip-ensemble")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument(
        "--other-factors",
        nargs="*",
        type=int,
        default=[4, 0],
        help="also fit calibrate='scale' at these calibration factors (0: the requested "
        "factor itself) on the same ensemble",
    )
    p.add_argument("--speed", action="store_true", help="only time none vs scale")
    p.add_argument("--repeat", type=int, default=2, help="best of, for --speed")
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    result: dict[str, Any] = {"machine": machine_info("cpu"), "argv": sys.argv[1:]}
    result["config"] = vars(args)
    if args.speed:
        result["speed"] = speed(args)
        json.dump(result, sys.stdout, indent=1, default=str)
        print()
        return 0
    rows = []
    for spec in args.cases:
        for f in args.factors:
            rows.append(run_case(spec, f, args))
            # partial results survive an interrupted run
            log(json.dumps({"partial": rows[-1]["case"], "factor": f}))
    result["cases"] = rows
    json.dump(result, sys.stdout, indent=1, default=str)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
