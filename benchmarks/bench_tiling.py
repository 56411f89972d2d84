"""Large grids and batch jobs: tiled downscaling to zarr, seam quality, scaling; JSON on stdout.

Three experiments (``--only`` picks some):

``global``
    ``xsr downscale ssh_global_quarterdeg_20190223.nc OUT.zarr --factor 8 --method bicubic
    --tile-size T`` (720 x 1440 -> 5760 x 11520) for each ``T`` in ``--tile-sizes``, each in a
    fresh process: wall time of the command and its peak resident memory (GNU ``time -f %M``),
    then the largest relative conservation error of the written
    store, read back chunk by chunk (float64, area weights).

``seams``
    Twin experiment on ``ssh_qg_256_train.nc``: each snapshot (256 x 256, 3.9 km) is averaged
    over ``--seam-factor`` x ``--seam-factor`` blocks and downscaled back with tiles of
    ``--seam-tile`` fine cells; RMSE against the truth within ``--seam-band`` fine cells of an
    interior tile edge and elsewhere, their ratio, and the same with no tiling.  For
    ``bicubic`` and ``dip-ensemble`` (``--members``, ``--iterations``).

``scaling``
    The Mediterranean series ``ssh_med_eighthdeg_2005AMJ.nc`` (91 days, 128 x 344) downscaled
    by ``--scaling-factor`` to zarr with ``xsr downscale --scheduler`` on a
    ``dask.distributed`` LocalCluster of 1 and of 2 worker processes (1 thread each), and
    without a cluster (``--workers 0``: dask's threaded scheduler).

Data come from ``XSR_DATA_DIR`` or the cache of :func:`xsr.datasets.fetch`.  Example::

    XSR_DATA_DIR=/work/shared/data python benchmarks/bench_tiling.py --out /tmp/bench \\
        > tiling.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from _machine import machine_info  # benchmarks/_machine.py (run as a script)

GLOBAL = "ssh_global_quarterdeg_20190223.nc"
QG = "ssh_qg_256_train.nc"
MED = "ssh_med_eighthdeg_2005AMJ.nc"


def log(*a: Any) -> None:
    print(*a, file=sys.stderr, flush=True)


def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def run_child(cmd: list[str]) -> dict[str, Any]:
    """Run ``cmd``; wall time, exit status and peak RSS (MiB) of the child process.

    The peak comes from GNU ``time -f %M`` wrapped around the command: the ``ru_maxrss`` that
    ``os.wait4`` gives for a direct child would include this (larger) process's memory, which
    Linux carries across the fork and exec.
    """
    timer = shutil.which("time") or "/usr/bin/time"
    full = [timer, "-f", "XSR_MAXRSS_KIB=%M", *cmd]
    t0 = time.perf_counter()
    proc = subprocess.run(full, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wall = time.perf_counter() - t0
    out = proc.stdout
    if proc.returncode != 0:
        log(out)
        raise RuntimeError(f"{cmd} failed with status {proc.returncode}")
    kib = next(
        int(ln.split("=", 1)[1]) for ln in out.splitlines() if ln.startswith("XSR_MAXRSS_KIB=")
    )
    return {"wall_s": round(wall, 2), "peak_rss_mib": round(kib / 1024, 1), "log": out}


def conservation_of_store(store: Path, src: Path, factor: int) -> float:
    """Largest relative conservation error of a zarr output (read back chunk by chunk)."""
    import xarray as xr

    import xsr  # noqa: F401

    fine = xr.open_zarr(store)
    coarse = xr.open_dataset(src)
    back = fine.sr.coarsen(factor=factor)
    c = coarse["adt"].astype("float64")
    b = back["adt"].transpose(*c.dims).astype("float64")
    ok = c.notnull()
    err = float(abs(b - c).where(ok).max().compute())
    scale = float(abs(c).where(ok).max())
    nan_ok = bool((b.isnull() == ~ok).all().compute())
    if not nan_ok:
        raise RuntimeError("NaN pattern of the output differs from the input's")
    return err / scale


def bench_global(args: argparse.Namespace, data: Path, out: Path) -> list[dict[str, Any]]:
    rows = []
    src = data / GLOBAL
    for ts in args.tile_sizes:
        store = out / f"global_x8_tile{ts}.zarr"
        if store.exists():
            shutil.rmtree(store)
        cmd = [sys.executable, "-m", "xsr.cli", "downscale", str(src), str(store)]
        cmd += ["--factor", "8", "--method", "bicubic", "--tile-size", str(ts), "--no-progress"]
        log("global:", " ".join(cmd[1:]))
        r = run_child(cmd)
        err = conservation_of_store(store, src, 8)
        size = sum(p.stat().st_size for p in store.rglob("*") if p.is_file())
        chunks_line = next((ln for ln in r["log"].splitlines() if "chunks=" in ln), "")
        rows.append(
            {
                "experiment": "global",
                "tile_size": ts,
                "command": " ".join(["xsr", *cmd[3:]]),
                "output": "5760 x 11520 float64",
                "wall_s": r["wall_s"],
                "peak_rss_mib": r["peak_rss_mib"],
                "target_peak_rss_mib": 1536,
                "store_mib": round(size / 2**20, 1),
                "max_rel_conservation_error": err,
                "input_chunks": chunks_line.split("chunks=")[-1].strip(),
            }
        )
        log("  ", rows[-1])
        if not args.keep:
            shutil.rmtree(store)
    return rows


def bench_seams(args: argparse.Namespace, data: Path) -> list[dict[str, Any]]:
    import xarray as xr

    import xsr

    ds = xr.open_dataset(data / QG)[["ssh"]].astype("float64").load()
    f = args.seam_factor
    coarse = ds.sr.coarsen(factor=f)
    ny, nx = ds.sizes["y"], ds.sizes["x"]
    ts = args.seam_tile
    # the tile lattice of xsr.tiling: near-equal tiles of at most ts // f coarse cells
    ey = xsr.tiling.split_axis(0, ny // f, ts // f)[1:-1] * f
    ex = xsr.tiling.split_axis(0, nx // f, ts // f)[1:-1] * f

    def near(n: int, edges: np.ndarray) -> np.ndarray:
        c = np.arange(n) + 0.5
        return (np.abs(c[:, None] - edges[None, :]) < args.seam_band).any(axis=1)

    band = near(ny, ey)[:, None] | near(nx, ex)[None, :]
    rows = []
    cases: list[tuple[str, dict[str, Any]]] = [("bicubic", {"method": "bicubic"})]
    if not args.no_dip:
        cases.append(
            (
                "dip-ensemble",
                {
                    "method": "dip-ensemble",
                    "members": args.members,
                    "iterations": args.iterations,
                    "progress": False,
                },
            )
        )
    times = list(range(ds.sizes["time"]))[: args.seam_snapshots]
    truth = ds["ssh"].isel(time=times).values
    for name, opts in cases:
        for tiled in (False, True):
            t0 = time.perf_counter()
            with xsr.set_options(device=args.device):
                fine = coarse.isel(time=times).sr.downscale(
                    factor=f, tile_size=ts if tiled else None, **opts
                )
                fine = fine.load()
            secs = time.perf_counter() - t0
            err = fine["ssh"].values - truth
            r_edge = float(np.sqrt(np.mean(err[:, band] ** 2)))
            r_else = float(np.sqrt(np.mean(err[:, ~band] ** 2)))
            cons = xsr.testing.assert_conserves(fine[["ssh"]], coarse.isel(time=times), f)
            rows.append(
                {
                    "experiment": "seams",
                    "method": name,
                    "options": {k: v for k, v in opts.items() if k != "method"},
                    "tiled": tiled,
                    "tile_size": ts if tiled else None,
                    "factor": f,
                    "snapshots": times,
                    "band_fine_cells": args.seam_band,
                    "fraction_in_band": round(float(band.mean()), 3),
                    "rmse_near_edges_cm": round(100 * r_edge, 4),
                    "rmse_elsewhere_cm": round(100 * r_else, 4),
                    "ratio": round(r_edge / r_else, 4),
                    "target_ratio": 1.05,
                    "max_rel_conservation_error": cons,
                    "seconds": round(secs, 2),
                    "device": args.device,
                }
            )
            log("seams:", rows[-1])
    return rows


def bench_scaling(args: argparse.Namespace, data: Path, out: Path) -> list[dict[str, Any]]:
    from distributed import Client, LocalCluster

    rows = []
    src = data / MED
    for n in args.workers:
        store = out / f"med_x{args.scaling_factor}_{n}w.zarr"
        if store.exists():
            shutil.rmtree(store)
        cmd = [sys.executable, "-m", "xsr.cli", "downscale", str(src), str(store)]
        cmd += ["--factor", str(args.scaling_factor), "--chunks", "time=1", "--no-progress"]
        if n == 0:  # no cluster: dask's threaded scheduler in the command's own process
            log("scaling: local threads")
            r = run_child(cmd)
            shown = " ".join(["xsr", *cmd[3:]])
        else:
            with LocalCluster(
                n_workers=n, threads_per_worker=1, processes=True, dashboard_address=":0"
            ) as cluster:
                cmd += ["--scheduler", cluster.scheduler_address]
                # warm the workers (imports of torch and xsr) so that the timing is the job's
                client = Client(cluster)
                client.run(lambda: __import__("xsr.tiling"))
                client.close()
                log("scaling:", n, "worker(s)")
                r = run_child(cmd)
            shown = " ".join(["xsr", *cmd[3:-2], "--scheduler", "<LocalCluster>"])
        rows.append(
            {
                "experiment": "scaling",
                "workers": n if n else f"none (threaded scheduler, {os.cpu_count()} threads)",
                "threads_per_worker": 1 if n else None,
                "command": shown,
                "steps": 91,
                "output": f"91 x {128 * args.scaling_factor} x {344 * args.scaling_factor}",
                "wall_s": r["wall_s"],
                "command_peak_rss_mib": r["peak_rss_mib"],
            }
        )
        log("  ", rows[-1])
        if not args.keep:
            shutil.rmtree(store)
    timed = {row["workers"]: row["wall_s"] for row in rows}
    if 1 in timed and 2 in timed:
        rows.append({"experiment": "scaling", "speedup_2_over_1": round(timed[1] / timed[2], 2)})
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--only", nargs="*", default=["global", "seams", "scaling"])
    p.add_argument("--out", default="bench_tiling_out", help="folder for the zarr outputs")
    p.add_argument("--keep", action="store_true", help="keep the zarr outputs")
    p.add_argument("--tile-sizes", nargs="*", type=int, default=[128, 256, 512])
    p.add_argument("--seam-factor", type=int, default=4)
    p.add_argument("--seam-tile", type=int, default=64, help="tile edge (fine cells)")
    p.add_argument("--seam-band", type=int, default=8, help="fine cells from a tile edge")
    p.add_argument("--seam-snapshots", type=int, default=6)
    p.add_argument("--no-dip", action="store_true")
    p.add_argument("--members", type=int, default=4)
    p.add_argument("--iterations", type=int, default=None)
    p.add_argument("--device", default="auto")
    p.add_argument(
        "--workers", nargs="*", type=int, default=[0, 1, 2], help="0: no cluster (threads)"
    )
    p.add_argument("--scaling-factor", type=int, default=4)
    args = p.parse_args()

    import xsr

    data = Path(os.environ.get("XSR_DATA_DIR", ""))
    if not (data / GLOBAL).exists():
        data = Path(xsr.datasets.fetch(GLOBAL)).parent
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"machine": machine_info(_device()), "argv": sys.argv[1:], "rows": []}
    if "global" in args.only:
        result["rows"] += bench_global(args, data, out)
    if "seams" in args.only:
        result["rows"] += bench_seams(args, data)
    if "scaling" in args.only:
        result["rows"] += bench_scaling(args, data, out)
    result["machine"]["load_average_at_end"] = os.getloadavg()
    json.dump(result, sys.stdout, indent=1, default=str)
    print()


if __name__ == "__main__":
    main()
