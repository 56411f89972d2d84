"""Guided deep image prior on real data: twin experiments with a fine-scale guide; JSON on stdout.

Cases (``XSR_DATA_DIR``, default ``/work/shared/data``, or the cache of
:func:`xsr.datasets.fetch`):

* ``tasmax``: daily maximum temperature ``air_temperature`` of
  ``tasmax_gridmet_24thdeg_20190121.nc`` (gridMET, 1/24 deg) cropped to the extent of
  ``elevation_colorado_1arcmin.nc`` (the central 160 x 192 cells, so that 4, 8 and 16 divide
  it); the guide is that elevation (1 arcmin) interpolated bilinearly in lat/lon to the
  gridMET cell centres.
* ``med``: absolute dynamic topography ``adt`` of ``ssh_med_eighthdeg_2005AMJ.nc`` (1/8 deg,
  62 % land), days ``--med-days`` (cropped to 128 x 336), fitted as one batch of fields; the
  guide of day ``t`` is the field of day ``t - --med-lag`` (a dynamic guide with a realistic
  mismatch; land filled from the neighbours).

Each truth is block-averaged with :func:`xsr.coarsen` (cell areas from the grid) and
downscaled back through :func:`xsr.methods.downscale_array` with the same areas:

* ``bicubic``: conservative bicubic (additive enforcement);
* ``dip_ensemble``: unguided ``dip-ensemble`` (``--members``);
* ``guided``: the same with the guide;
* ``guided_linear``: the same with ``guide_network=False`` (the linear path only);
* ``shuffled``: the same with the guide's values permuted at random over the grid (a guide
  with the same values and no information: the control).

Scores over the valid fine cells: RMSE (K, or cm for SSH), ratio to conservative bicubic,
mean RMSE of the members, Pearson correlation of the spread with the absolute error, the
largest relative conservation error against the coarse field of ``xsr.coarsen``, and the
wall time of the call.  ``--quick``: 2 members, 30 iterations, x8, tasmax only (a smoke run).

Usage::

    python benchmarks/bench_dip_guided.py --threads 2 > dip_guided_cpu.json
    python benchmarks/bench_dip_guided.py --quick
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from _machine import machine_info  # benchmarks/_machine.py (run as a script)

TASMAX = "tasmax_gridmet_24thdeg_20190121.nc"
ELEVATION = "elevation_colorado_1arcmin.nc"
MED = "ssh_med_eighthdeg_2005AMJ.nc"


def log(*a: Any) -> None:
    print(*a, file=sys.stderr, flush=True)


def data_path(name: str) -> str:
    d = os.environ.get("XSR_DATA_DIR", "/work/shared/data")
    p = Path(d) / name
    if p.exists():
        return str(p)
    import xsr

    return str(xsr.datasets.fetch(name))


def bilinear(z: np.ndarray, y: np.ndarray, x: np.ndarray, yq: np.ndarray, xq: np.ndarray) -> Any:
    """``z`` on the regular ascending axes ``y``, ``x``, interpolated to the grid ``yq x xq``."""
    fy = (yq - y[0]) / (y[1] - y[0])
    fx = (xq - x[0]) / (x[1] - x[0])
    iy = np.clip(np.floor(fy).astype(int), 0, len(y) - 2)
    ix = np.clip(np.floor(fx).astype(int), 0, len(x) - 2)
    ty = np.clip(fy - iy, 0.0, 1.0)[:, None]
    tx = np.clip(fx - ix, 0.0, 1.0)[None, :]
    z00, z01 = z[np.ix_(iy, ix)], z[np.ix_(iy, ix + 1)]
    z10, z11 = z[np.ix_(iy + 1, ix)], z[np.ix_(iy + 1, ix + 1)]
    return (1 - ty) * ((1 - tx) * z00 + tx * z01) + ty * ((1 - tx) * z10 + tx * z11)


def areas(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    from xsr.grid import cell_area_lonlat, infer_bounds_1d

    return cell_area_lonlat(
        infer_bounds_1d(lat, kind="latitude"), infer_bounds_1d(lon, kind="longitude")
    )


def load_tasmax() -> dict[str, Any]:
    """Truth (1, 160, 192) in K, the elevation guide (1, 160, 192) in m, areas, the Dataset."""
    t = xr.open_dataset(data_path(TASMAX))
    e = xr.open_dataset(data_path(ELEVATION))
    ey, ex = e["y"].values, e["x"].values
    lat, lon = t["lat"].values, t["lon"].values
    iy = np.where((lat >= ey.min()) & (lat <= ey.max()))[0]
    ix = np.where((lon >= ex.min()) & (lon <= ex.max()))[0]
    ny, nx = len(iy) // 16 * 16, len(ix) // 16 * 16
    oy, ox = (len(iy) - ny) // 2, (len(ix) - nx) // 2
    iy, ix = iy[oy : oy + ny], ix[ox : ox + nx]
    ds = t[["air_temperature"]].isel(lat=iy, lon=ix).load()
    truth = ds["air_temperature"].values.astype(np.float64)[None]
    guide = bilinear(e["z"].values.astype(np.float64), ey, ex, lat[iy], lon[ix])[None]
    return {
        "ds": ds,
        "var": "air_temperature",
        "truth": truth,
        "guide": guide[None],  # (1 field, 1 channel, ny, nx)
        "area": areas(lat[iy], lon[ix]),
        "mask": None,
        "scale": 1.0,
        "units": "K",
        "source": f"{TASMAX} lat {lat[iy][-1]:.3f}-{lat[iy][0]:.3f}, lon "
        f"{lon[ix][0]:.3f}-{lon[ix][-1]:.3f} ({ny} x {nx}); guide {ELEVATION} (bilinear)",
    }


def load_med(days: list[int], lag: int) -> dict[str, Any]:
    """Truth (T, 128, 336) in m; guide of day t = field of day t - lag, land filled."""
    import torch

    from xsr.methods.pipeline import fill_nan

    d = xr.open_dataset(data_path(MED))
    ds = d[["adt"]].isel(time=days, longitude=slice(4, 340)).load()
    prev = d["adt"].isel(time=[t - lag for t in days], longitude=slice(4, 340)).values
    g = fill_nan(torch.from_numpy(prev.astype(np.float64)), 64).numpy()
    lat = ds["latitude"].values.astype(np.float64)
    lon = ds["longitude"].values.astype(np.float64)
    truth = ds["adt"].values.astype(np.float64)
    return {
        "ds": ds,
        "var": "adt",
        "truth": truth,
        "guide": g[:, None],  # (T fields, 1 channel, ny, nx): a dynamic guide
        "area": areas(lat, lon),
        "mask": np.isfinite(truth[0]),
        "scale": 100.0,
        "units": "cm",
        "source": f"{MED} days {days} (128 x 336); guide: the field {lag} days earlier",
    }


def shuffled(guide: np.ndarray, seed: int) -> np.ndarray:
    """The guide's values permuted at random over the grid, per field and channel."""
    rng = np.random.default_rng(seed)
    out = np.empty_like(guide)
    for idx in np.ndindex(guide.shape[:-2]):
        out[idx] = rng.permutation(guide[idx].ravel()).reshape(guide.shape[-2:])
    return out


def run_case(case: dict[str, Any], f: int, args: argparse.Namespace) -> list[dict[str, Any]]:
    import torch

    import xsr
    from xsr.conserve import block_mean, conservation_error
    from xsr.methods import downscale_array

    var, truth, area, mask = case["var"], case["truth"], case["area"], case["mask"]
    coarse = xsr.coarsen(case["ds"], factor=f)[var].values.astype(np.float64)
    if coarse.ndim == 2:
        coarse = coarse[None]
    # the coarse field is the area-weighted block mean that the methods conserve
    check = block_mean(torch.from_numpy(truth), f, weights=torch.from_numpy(area)).numpy()
    coarsen_vs_block_mean = float(np.nanmax(np.abs(check - coarse)))
    valid = np.isfinite(truth)
    sc = case["scale"]
    key = f"rmse_{case['units']}"

    def rmse(y: np.ndarray) -> float:
        return float(sc * np.sqrt(np.mean((y[valid] - truth[valid]) ** 2)))

    dip = {"members": args.members, "seed": args.seed, "progress": False, "keep_members": True}
    if args.iterations is not None:
        dip["iterations"] = args.iterations
    cases: list[tuple[str, dict[str, Any], Any]] = [("bicubic", {"method": "bicubic"}, None)]
    for label in args.methods:
        if label == "dip_ensemble":
            cases.append((label, {"method": "dip-ensemble", **dip}, None))
        elif label == "guided":
            cases.append((label, {"method": "dip-ensemble", **dip}, case["guide"]))
        elif label == "guided_linear":
            opts = {"method": "dip-ensemble", **dip, "guide_network": False}
            cases.append((label, opts, case["guide"]))
        elif label == "shuffled":
            g = shuffled(case["guide"], args.seed)
            cases.append((label, {"method": "dip-ensemble", **dip}, g))
    rows: list[dict[str, Any]] = []
    for label, opts, guide in cases:
        log(f"{case['name']} x{f}: {label} ...")
        t0 = time.perf_counter()
        res = downscale_array(
            coarse, factor=f, weights=area, mask=mask, guide=guide, extras=True, **opts
        )
        seconds = time.perf_counter() - t0
        fine = res.fine
        row: dict[str, Any] = {
            "case": case["name"],
            "factor": f,
            "method": label,
            "options": {k: v for k, v in opts.items() if k != "progress"},
            "guide": None if guide is None else list(guide.shape),
            "seconds": seconds,
            "load_average": os.getloadavg()[0],
            key: rmse(fine),
            "conservation_error": conservation_error(fine, coarse, f, weights=area),
            "coarsen_vs_block_mean": coarsen_vs_block_mean,
        }
        if res.members is not None:
            mem = [rmse(m) for m in res.members]
            row["mean_member_rmse"] = float(np.mean(mem))
            row["max_member_conservation_error"] = max(
                conservation_error(m, coarse, f, weights=area) for m in res.members
            )
            err = np.abs(fine - truth)[valid]
            row["corr_std_abs_error"] = float(np.corrcoef(res.std[valid], err)[0, 1])
        rows.append(row)
        log(f"  {label}: rmse {row[key]:.4f}, {seconds:.1f} s")
    for r in rows:
        r["ratio_to_bicubic"] = r[key] / rows[0][key]
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cases", nargs="+", default=["tasmax", "med"], choices=["tasmax", "med"])
    p.add_argument("--factors", nargs="+", type=int, default=[8, 4, 16])
    p.add_argument("--med-factors", nargs="+", type=int, default=[8])
    p.add_argument("--med-days", nargs="+", type=int, default=[10, 40, 70])
    p.add_argument("--med-lag", type=int, default=7)
    p.add_argument("--members", type=int, default=10)
    p.add_argument("--iterations", type=int, default=None, help="default of dip-ensemble")
    p.add_argument(
        "--methods",
        nargs="+",
        default=["dip_ensemble", "guided", "guided_linear", "shuffled"],
        choices=["dip_ensemble", "guided", "guided_linear", "shuffled"],
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--quick", action="store_true", help="2 members, 30 iterations, tasmax x8")
    args = p.parse_args(argv)
    if args.quick:
        args.members, args.iterations = 2, 30
        args.cases, args.factors = ["tasmax"], [8]

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    result: dict[str, Any] = {"machine": machine_info("cpu"), "argv": sys.argv[1:]}
    result["config"] = vars(args)
    rows: list[dict[str, Any]] = []
    for name in args.cases:
        case = load_tasmax() if name == "tasmax" else load_med(args.med_days, args.med_lag)
        case["name"] = name
        result.setdefault("sources", {})[name] = case["source"]
        for f in args.factors if name == "tasmax" else args.med_factors:
            rows.extend(run_case(case, f, args))
    result["rows"] = rows
    result["load_average_at_end"] = os.getloadavg()
    json.dump(result, sys.stdout, indent=1, default=str)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
