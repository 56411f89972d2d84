"""DIP twin experiments and batching speed on plain arrays (for machines without netCDF).

The same experiments as ``bench_dip.py`` through the array pipeline
(:func:`xsr.methods.downscale_array`, numpy + torch only), so that they run on a GPU machine
whose Python has torch but neither netCDF nor cf-xarray.  The fields are first written as
``.npy`` files where the netCDF files can be read::

    XSR_DATA_DIR=/work/shared/data python benchmarks/bench_dip_arrays.py prepare --data .gpu
    python benchmarks/bench_dip_arrays.py speed --data .gpu --device cuda > speed.json
    python benchmarks/bench_dip_arrays.py eval --data .gpu --device cuda > eval.json

* ``speed``: ``fit_dip`` of 10 members in one batch against 10 sequential one-member fits
  (same network, same iterations) on the QG snapshot 1 at x16, for the default decoder and
  the study's generator (with and without bfloat16 autocast on CUDA).
* ``eval``: QG snapshots 0-5 (snapshot 0 is the one the defaults were chosen on) at x8 and
  x16: conservative bicubic, ``dip``, ``dip-ensemble`` (10 members) with the default and
  with ``skip=False``; QG snapshot 1 at x4 and with latent-space uncertainty; the all-ocean
  South Pacific window of the global file at x4, x8, x16 (area weights); the study's
  configuration (one member and 3 members, 1500 iterations) on QG snapshot 1.

The truth is block-averaged (:func:`xsr.conserve.block_mean`, area weights for the global
window) and downscaled back; RMSE in cm, SSIM, the relative conservation error, the
ensemble's mean member RMSE and the Pearson correlation of its spread with the absolute
error; ``seconds`` is the wall time of one ``downscale_array`` call.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np


def log(*a: Any) -> None:
    print(*a, file=sys.stderr, flush=True)


def prepare(data: Path) -> None:
    import xarray as xr

    import xsr

    data.mkdir(parents=True, exist_ok=True)
    qg = xr.open_dataset(xsr.datasets.fetch("ssh_qg_256_train.nc"))
    np.save(data / "qg.npy", qg["ssh"].values.astype("float64"))
    g = xr.open_dataset(xsr.datasets.fetch("ssh_global_quarterdeg_20190223.nc"))
    g = g.isel(latitude=slice(96, 352), longitude=slice(752, 1008))
    if not bool(g["adt"].notnull().all()):
        raise RuntimeError("the global window is not all ocean")
    np.save(data / "global.npy", g["adt"].values[0].astype("float64"))
    np.save(data / "global_lat_bnds.npy", g["lat_bnds"].values.astype("float64"))
    np.save(data / "global_lon_bnds.npy", g["lon_bnds"].values.astype("float64"))
    log(f"wrote {data}/qg.npy, global*.npy")


def twin(
    rows: list[dict[str, Any]],
    name: str,
    truth: np.ndarray,
    f: int,
    method: str,
    device: str,
    weights: np.ndarray | None = None,
    **opts: Any,
) -> None:
    from xsr import metrics
    from xsr.conserve import block_mean, conservation_error
    from xsr.methods import downscale_array

    x = block_mean(truth, f, weights=weights)
    kw = {"progress": False} if method.startswith("dip") else {}
    t0 = time.perf_counter()
    r = downscale_array(
        x, factor=f, method=method, weights=weights, device=device, extras=True, **kw, **opts
    )
    sec = time.perf_counter() - t0
    row: dict[str, Any] = {
        "field": name,
        "factor": f,
        "method": method,
        "options": opts,
        "seconds": sec,
        "rmse_cm": 100 * metrics.rmse(r.fine, truth),
        "ssim": metrics.ssim(r.fine, truth),
        "conservation_error": conservation_error(r.fine, x, f, weights=weights),
    }
    if r.members is not None:
        rm = [100 * metrics.rmse(m, truth) for m in r.members]
        row["member_rmse_cm"] = rm
        row["mean_member_rmse_cm"] = float(np.mean(rm))
        row["corr_std_abs_error"] = metrics.pearson(r.std, np.abs(r.fine - truth))
    rows.append(row)
    log(name, f, method, opts, f"{row['rmse_cm']:.4f} cm", row.get("corr_std_abs_error"))


def evaluate(data: Path, device: str) -> list[dict[str, Any]]:
    from xsr.grid import cell_area_lonlat

    qg = np.load(data / "qg.npy")
    glob = np.load(data / "global.npy")
    area = cell_area_lonlat(
        np.load(data / "global_lat_bnds.npy"), np.load(data / "global_lon_bnds.npy")
    )
    rows: list[dict[str, Any]] = []
    for t in range(qg.shape[0]):
        for f in (8, 16):
            twin(rows, f"qg:{t}", qg[t], f, "bicubic", device)
            twin(rows, f"qg:{t}", qg[t], f, "dip", device)
            twin(rows, f"qg:{t}", qg[t], f, "dip-ensemble", device, members=10)
            twin(rows, f"qg:{t}", qg[t], f, "dip-ensemble", device, members=10, skip=False)
    twin(rows, "qg:1", qg[1], 4, "bicubic", device)
    twin(rows, "qg:1", qg[1], 4, "dip-ensemble", device, members=10)
    for f in (8, 16):
        opts = {"members": 10, "uncertainty": "latent", "latent_samples": 4}
        twin(rows, "qg:1", qg[1], f, "dip-ensemble", device, **opts)
    for f in (4, 8, 16):
        twin(rows, "global", glob, f, "bicubic", device, weights=area)
        twin(rows, "global", glob, f, "dip-ensemble", device, weights=area, members=10)
        opts = {"members": 10, "skip": False}
        twin(rows, "global", glob, f, "dip-ensemble", device, weights=area, **opts)
    twin(rows, "qg:1", qg[1], 16, "dip", device, generator="study")
    for f in (8, 16):
        twin(rows, "qg:1", qg[1], f, "dip-ensemble", device, members=3, generator="study")
    return rows


def speed(data: Path, device: str) -> list[dict[str, Any]]:
    import torch

    from xsr.conserve import block_mean
    from xsr.methods.dip import fit_dip

    qg = np.load(data / "qg.npy")
    x = block_mean(torch.tensor(qg[1]), 16)[None].to(device)
    out = []
    cases: list[tuple[str, int, bool]] = [("decoder", 400, False), ("study", 200, False)]
    if device.startswith("cuda"):
        cases.append(("study", 200, True))
    for gen, its, amp in cases:
        opts: dict[str, Any] = {"generator": gen, "iterations": its, "amp": amp}
        if gen == "study":
            opts.update(lr=1e-3, skip=False, resolution=None)
        fit_dip(x, 16, members=2, **{**opts, "iterations": 5})  # warm-up
        t0 = time.perf_counter()
        fit_dip(x, 16, members=10, seed=0, **opts)
        tb = time.perf_counter() - t0
        t0 = time.perf_counter()
        for k in range(10):
            fit_dip(x, 16, members=1, seed=k, **opts)
        tl = time.perf_counter() - t0
        row = {
            "generator": gen,
            "amp": amp,
            "members": 10,
            "iterations": its,
            "batched_s": tb,
            "loop_s": tl,
            "speedup": tl / tb,
            "members_iterations_per_s_batched": 10 * its / tb,
        }
        out.append(row)
        log(f"speed {gen} amp={amp}: batched {tb:.2f} s, loop {tl:.2f} s, x{tl / tb:.2f}")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("what", choices=["prepare", "speed", "eval"])
    p.add_argument("--data", type=Path, default=Path(".gpu"))
    p.add_argument("--device", default="cpu")
    a = p.parse_args(argv)
    if a.what == "prepare":
        prepare(a.data)
        return 0
    import torch

    info = {"torch": torch.__version__, "device": a.device, "what": a.what}
    if a.device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(0)
    rows = speed(a.data, a.device) if a.what == "speed" else evaluate(a.data, a.device)
    json.dump({"machine": info, "rows": rows}, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
