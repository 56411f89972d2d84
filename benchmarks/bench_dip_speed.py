"""Speed of the default DIP ensemble on the CPU, old code against new, in the same run; JSON.

The case of issue 13: ``method="dip-ensemble"``, 10 members, default options (decoder, 400
iterations, seed 0), a 256 x 256 truth block-averaged by 16 and downscaled back through
:func:`xsr.methods.downscale_array` (the pipeline under ``ds.sr.downscale``, enforcement
included).  Each timed run is a fresh Python process, and the processes alternate between
the code under test (this checkout) and a checkout of the old code (``--base``, e.g. a
``git worktree`` at the commit before the change), so that the load of other jobs on a
shared machine falls on both alike; the time is the best of ``--repeat`` runs of each.

Every run also gives the RMSE against the truth (cm), the largest relative conservation
error of the result (float64) and a hash of the result's bytes (the same seed must give the
same bytes).  The first case is timed ``--repeat`` times; the others (held-out fields,
checking that the RMSE does not move) once each.

Cases (``XSR_DATA_DIR`` or the cache of :func:`xsr.datasets.fetch`):

* ``qg:T``: snapshot ``T`` of ``ssh_qg_256_train.nc`` (256 x 256);
* ``global``: the all-ocean 256 x 256 South Pacific window of
  ``ssh_global_quarterdeg_20190223.nc`` (cos-latitude weights);
* ``med:T``: day ``T`` of ``ssh_med_eighthdeg_2005AMJ.nc``, 128 x 320 (the 24 westernmost
  columns dropped so that 16 divides the width; land masked, cos-latitude weights).

``--threads 1`` runs torch on one thread: on a CPU shared with other jobs, two OpenMP
threads wait for each other whenever one is descheduled, and one thread is then faster.

Usage::

    git worktree add /tmp/dip-base 890273d
    XSR_DATA_DIR=/work/shared/data python benchmarks/bench_dip_speed.py --base /tmp/dip-base \\
        --cases qg:1 qg:3 med:0 global --repeat 3 > dip_cpu_speed_i13.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

QG = "ssh_qg_256_train.nc"
GLOBAL = "ssh_global_quarterdeg_20190223.nc"
GLOBAL_WINDOW = {"latitude": slice(96, 352), "longitude": slice(752, 1008)}
MED = "ssh_med_eighthdeg_2005AMJ.nc"
REPO = Path(__file__).resolve().parents[1]


def log(*a: Any) -> None:
    print(*a, file=sys.stderr, flush=True)


def load_case(spec: str) -> tuple[np.ndarray, np.ndarray | None]:
    """(truth (ny, nx) in m, float64 with NaN land; fine cell weights or None)."""
    import xarray as xr

    import xsr

    if spec.startswith("qg:"):
        ds = xr.open_dataset(xsr.datasets.fetch(QG))
        return ds["ssh"].isel(time=int(spec[3:])).values.astype("f8"), None
    if spec == "global":
        ds = xr.open_dataset(xsr.datasets.fetch(GLOBAL)).isel(GLOBAL_WINDOW)
        truth = ds["adt"].isel(time=0).values.astype("f8")
    elif spec.startswith("med:"):
        ds = xr.open_dataset(xsr.datasets.fetch(MED)).isel(longitude=slice(24, None))
        truth = ds["adt"].isel(time=int(spec[4:])).values.astype("f8")
    else:
        raise SystemExit(f"unknown case {spec!r}; use qg:T, global or med:T")
    lat = ds["latitude"].values.astype("f8")
    return truth, np.cos(np.deg2rad(lat))[:, None] * np.ones((1, truth.shape[1]))


def worker(spec: str, factor: int, members: int, threads: int | None) -> dict[str, Any]:
    """One timed ``downscale_array`` call in this process (the code on ``sys.path``)."""
    import torch

    if threads:
        torch.set_num_threads(threads)

    import xsr
    from xsr.conserve import block_mean
    from xsr.methods import downscale_array

    truth, w = load_case(spec)
    x = block_mean(truth, factor, weights=w)
    load = os.getloadavg()
    t0 = time.perf_counter()
    c0 = time.process_time()
    out = downscale_array(
        x, factor=factor, method="dip-ensemble", members=members, seed=0, weights=w,
        progress=False, device="cpu",
    )  # fmt: skip
    seconds = time.perf_counter() - t0
    cpu = time.process_time() - c0
    ok = np.isfinite(truth)
    err = out[ok] - truth[ok]
    wt = np.ones_like(truth)[ok] if w is None else w[ok]
    back = block_mean(out, factor, weights=w)
    cok = np.isfinite(x)
    return {
        "xsr": xsr.__file__,
        "seconds": seconds,
        "cpu_seconds": cpu,
        "load_before": load,
        "load_after": os.getloadavg(),
        "torch_threads": torch.get_num_threads(),
        "rmse_cm": 100.0 * float(np.sqrt(np.sum(wt * err**2) / np.sum(wt))),
        "conservation_error": float(np.abs(back[cok] - x[cok]).max() / np.abs(x[cok]).max()),
        "sha256": hashlib.sha256(np.ascontiguousarray(out).tobytes()).hexdigest()[:16],
    }


def spawn(path: Path, spec: str, args: argparse.Namespace) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=str(path))
    cmd = [sys.executable, __file__, "--worker", spec, "--factor", str(args.factor)]
    cmd += ["--members", str(args.members)]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if res.returncode:
        raise RuntimeError(f"worker failed ({path}, {spec}):\n{res.stderr[-3000:]}")
    return dict(json.loads(res.stdout.strip().splitlines()[-1]))


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "best_s": min(r["seconds"] for r in runs),
        "best_cpu_s": min(r["cpu_seconds"] for r in runs),
        "rmse_cm": runs[0]["rmse_cm"],
        "conservation_error": max(r["conservation_error"] for r in runs),
        "deterministic": len({r["sha256"] for r in runs}) == 1,
        "runs": runs,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cases", nargs="+", default=["qg:1", "qg:3", "med:0"])
    p.add_argument("--factor", type=int, default=16)
    p.add_argument("--members", type=int, default=10)
    p.add_argument("--repeat", type=int, default=3, help="timed runs of the first case")
    p.add_argument("--base", type=Path, default=None, help="checkout of the old code")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, args.factor, args.members, args.threads)))
        return 0

    from _machine import machine_info  # benchmarks/_machine.py (run as a script)

    versions = {"new": REPO} if args.base is None else {"old": args.base, "new": REPO}
    result: dict[str, Any] = {
        "machine": machine_info("cpu"),
        "argv": sys.argv[1:],
        "versions": {k: str(v) for k, v in versions.items()},
        "cases": {},
    }
    for i, spec in enumerate(args.cases):
        n = args.repeat if i == 0 else 1
        runs: dict[str, list[dict[str, Any]]] = {k: [] for k in versions}
        for rep in range(n):
            order = list(versions) if rep % 2 == 0 else list(reversed(versions))
            for k in order:
                r = spawn(versions[k], spec, args)
                runs[k].append(r)
                log(f"{spec} x{args.factor} {k}: {r['seconds']:.1f} s (cpu {r['cpu_seconds']:.1f}),"
                    f" rmse {r['rmse_cm']:.4f} cm, load {r['load_before'][0]:.2f}")  # fmt: skip
        case: dict[str, Any] = {k: summary(v) for k, v in runs.items()}
        if "old" in case:
            case["speedup"] = case["old"]["best_s"] / case["new"]["best_s"]
            case["rmse_change"] = case["new"]["rmse_cm"] / case["old"]["rmse_cm"] - 1.0
        result["cases"][f"{spec} x{args.factor}"] = case
    json.dump(result, sys.stdout, indent=1, default=str)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
