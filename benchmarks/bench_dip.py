"""Twin experiments with the deep image prior on real sea surface height; JSON on stdout.

Each truth field (256 x 256) is block-averaged by a factor with ``ds.sr.coarsen`` and
downscaled back with ``ds.sr.downscale``; the scores are against the truth:

* ``nearest``, ``bicubic`` (``conserve=None``), ``bicubic_conservative`` (additive);
* ``dip_study``: ``method="dip", generator="study"`` (the study's configuration);
* ``dip``: ``method="dip"`` with the defaults;
* ``dip_ensemble``: ``method="dip-ensemble"`` (``--members``), with the RMSE of the
  ensemble mean and the mean RMSE of its members, and the Pearson correlation of the
  ensemble spread with the absolute error of the mean.

RMSE is in cm (the fields are in m), SSIM is :func:`xsr.metrics.ssim`, the conservation
error is the largest relative error of the coarsened result against the coarse input
(float64), and ``seconds`` is the wall time of the ``downscale`` call for one field.

Data (``XSR_DATA_DIR`` or the cache of :func:`xsr.datasets.fetch`):

* ``qg:T``: snapshot ``T`` of ``ssh_qg_256_train.nc`` (two-layer QG simulation, doubly
  periodic; the defaults of ``method="dip"`` were chosen on snapshot 0 only, so report
  snapshots 1-5 as unseen fields);
* ``global``: an all-ocean 256 x 256 window of ``ssh_global_quarterdeg_20190223.nc``
  (South Pacific, 65.9 S - 2.1 S, 188 E - 252 E).

``--speed`` adds the batched-ensemble speed test: ``fit_dip`` of K members in one batch
against K sequential one-member fits of the same network and iterations, measured in the
same run on ``--device``.

Usage::

    XSR_DATA_DIR=/work/shared/data python benchmarks/bench_dip.py --fields qg:1 \\
        --factors 8 16 --members 10 --device cpu > dip_cpu.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import numpy as np
import xarray as xr
from _machine import machine_info  # benchmarks/_machine.py (run as a script)

QG = "ssh_qg_256_train.nc"
GLOBAL = "ssh_global_quarterdeg_20190223.nc"
GLOBAL_WINDOW = {"latitude": slice(96, 352), "longitude": slice(752, 1008)}


def log(*a: Any) -> None:
    print(*a, file=sys.stderr, flush=True)


def load_field(spec: str) -> tuple[xr.Dataset, str]:
    """A one-variable Dataset ``ssh`` (m) of shape (1, 256, 256) for ``qg:T`` or ``global``."""
    import xsr

    if spec.startswith("qg:"):
        t = int(spec.split(":")[1])
        ds = xr.open_dataset(xsr.datasets.fetch(QG)).isel(time=[t]).load()
        ds = ds[["ssh"]].astype("float64")
        ds["ssh"].attrs.update(units="m", standard_name="sea_surface_height_above_geoid")
        return ds, f"{QG} snapshot {t}"
    if spec == "global":
        ds = xr.open_dataset(xsr.datasets.fetch(GLOBAL)).isel(GLOBAL_WINDOW).load()
        ds = ds[["adt"]].rename({"adt": "ssh"}).astype("float64")
        if not bool(ds["ssh"].notnull().all()):
            raise RuntimeError("the global window is not all ocean")
        return ds, f"{GLOBAL} window 65.9S-2.1S, 188E-252E"
    raise SystemExit(f"unknown field {spec!r}; use qg:T (T = 0..5) or global")


def score(fine: xr.DataArray, truth: xr.DataArray) -> dict[str, float]:
    from xsr import metrics

    a = fine.transpose(*truth.dims)
    return {
        "rmse_cm": 100.0 * metrics.rmse(a, truth),
        "ssim": metrics.ssim(a.squeeze().values, truth.squeeze().values),
    }


def cons_error(fine: xr.DataArray, coarse: xr.DataArray, f: int) -> float:
    back = fine.to_dataset(name="v").sr.coarsen(factor=f)["v"]
    c = np.asarray(coarse.values, np.float64)
    b = np.asarray(back.transpose(*coarse.dims).values, np.float64)
    ok = np.isfinite(c)
    return float(np.abs(b[ok] - c[ok]).max() / np.abs(c[ok]).max())


def twin(
    spec: str,
    f: int,
    args: argparse.Namespace,
) -> list[dict[str, Any]]:
    from xsr import metrics

    ds, source = load_field(spec)
    truth = ds["ssh"]
    coarse = ds.sr.coarsen(factor=f)
    rows: list[dict[str, Any]] = []
    common = {"field": spec, "source": source, "factor": f}
    cases: list[tuple[str, dict[str, Any]]] = [
        ("nearest", {"method": "nearest"}),
        ("bicubic", {"method": "bicubic", "conserve": None}),
        ("bicubic_conservative", {"method": "bicubic"}),
    ]
    if not args.no_study:
        opts = {"method": "dip", "generator": "study", "seed": args.seed}
        if args.study_iterations is not None:
            opts["iterations"] = args.study_iterations
        cases.append(("dip_study", opts))
    opts = {"method": "dip", "seed": args.seed}
    if args.iterations is not None:
        opts["iterations"] = args.iterations
    cases.append(("dip", opts))
    ens = {"method": "dip-ensemble", "members": args.members, "seed": args.seed}
    ens["keep_members"] = True
    if args.iterations is not None:
        ens["iterations"] = args.iterations
    cases.append(("dip_ensemble", ens))

    for label, opts in cases:
        log(f"{spec} x{f}: {label} ...")
        kw = dict(opts)
        if kw["method"].startswith("dip"):
            kw["progress"] = False
        t0 = time.perf_counter()
        out = coarse.sr.downscale(factor=f, device=args.device, **kw)
        out = out.load()
        seconds = time.perf_counter() - t0
        fine = out["ssh"]
        row: dict[str, Any] = {**common, "method": label, "options": opts, "seconds": seconds}
        row.update(score(fine, truth))
        if kw.get("conserve", "additive") is not None:
            row["conservation_error"] = cons_error(fine, coarse["ssh"], f)
        if label.startswith("dip"):
            from xsr.methods.registry import get_method

            m = get_method(opts["method"], **{k: v for k, v in opts.items() if k != "method"})
            k = getattr(m, "_members", 1)
            row["members_iterations_per_s"] = k * m.iterations / seconds
        if label == "dip_ensemble":
            members = out["ssh_members"]
            rm = [100.0 * metrics.rmse(members.isel(member=i), truth) for i in range(k)]
            row["member_rmse_cm"] = rm
            row["mean_member_rmse_cm"] = float(np.mean(rm))
            err = np.abs(fine.transpose(*truth.dims) - truth)
            row["corr_std_abs_error"] = metrics.pearson(out["ssh_std"], err)
            row["mean_std_cm"] = 100.0 * float(out["ssh_std"].mean())
        rows.append(row)
        log(f"  {label}: rmse {row['rmse_cm']:.4f} cm, ssim {row['ssim']:.4f}, {seconds:.1f} s")
    base = next(r["rmse_cm"] for r in rows if r["method"] == "bicubic_conservative")
    for r in rows:
        r["rmse_vs_conservative_bicubic"] = r["rmse_cm"] / base
    return rows


def speed(args: argparse.Namespace) -> dict[str, Any]:
    """Batched K-member fit against K sequential one-member fits, same network and iterations."""
    import torch

    from xsr.conserve import block_mean
    from xsr.methods.dip import fit_dip
    from xsr.options import resolve_device

    dev = resolve_device(args.device)
    ds, _ = load_field(args.fields[0])
    f = args.speed_factor
    truth = torch.tensor(ds["ssh"].values[0], dtype=torch.float64)
    x = block_mean(truth, f)[None].to(dev)
    K, its = args.speed_members, args.speed_iterations
    out: dict[str, Any] = {"device": dev, "factor": f, "members": K, "iterations": its}
    for gen in args.speed_generators:
        opts = {"generator": gen, "iterations": its, "lr": 1e-3 if gen == "study" else 1e-2}
        if gen == "study":
            opts.update(skip=False, resolution=None)
        fit_dip(x, f, members=2, **{**opts, "iterations": 3})  # warm-up
        t0 = time.perf_counter()
        fit_dip(x, f, members=K, seed=0, **opts)
        batched = time.perf_counter() - t0
        t0 = time.perf_counter()
        for k in range(K):
            fit_dip(x, f, members=1, seed=k, **opts)
        loop = time.perf_counter() - t0
        out[gen] = {
            "batched_s": batched,
            "loop_s": loop,
            "speedup": loop / batched,
            "members_iterations_per_s_batched": K * its / batched,
            "members_iterations_per_s_loop": K * its / loop,
        }
        log(f"speed {gen}: batched {batched:.1f} s, loop {loop:.1f} s, x{loop / batched:.2f}")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--fields", nargs="+", default=["qg:1"], help="qg:T and/or global")
    p.add_argument("--factors", nargs="+", type=int, default=[4, 8, 16])
    p.add_argument("--members", type=int, default=10)
    p.add_argument("--iterations", type=int, default=None, help="dip / dip-ensemble")
    p.add_argument("--study-iterations", type=int, default=None, help="default 1500")
    p.add_argument("--no-study", action="store_true", help="leave out dip_study")
    p.add_argument("--no-twin", action="store_true", help="only the speed test")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--speed", action="store_true", help="batched ensemble vs loop")
    p.add_argument("--speed-members", type=int, default=10)
    p.add_argument("--speed-iterations", type=int, default=100)
    p.add_argument("--speed-factor", type=int, default=16)
    p.add_argument(
        "--speed-generators", nargs="+", default=["decoder", "study"], choices=["decoder", "study"]
    )
    args = p.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    result: dict[str, Any] = {"machine": machine_info(args.device), "argv": sys.argv[1:]}
    result["config"] = vars(args)
    rows: list[dict[str, Any]] = []
    if not args.no_twin:
        for spec in args.fields:
            for f in args.factors:
                rows.extend(twin(spec, f, args))
    result["twin"] = rows
    if args.speed:
        result["speed"] = speed(args)
    json.dump(result, sys.stdout, indent=1, default=str)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
