"""Issue 13 targets: eager conservative bicubic downscaling vs ``xarray.Dataset.interp``.

On the real global sea surface height ``ssh_global_quarterdeg_20190223.nc`` (DUACS ``adt``,
720 x 1440 at 0.25 degree, 43 % NaN land; ``xsr.datasets.fetch``, set ``XSR_DATA_DIR`` to a
folder holding the file to run offline), one time step, for each factor (default 4 and 8)
and each input dtype (float64 and float32: ``adt`` cast before the timing), it measures

* ``xsr_bicubic``: ``ds.sr.downscale(factor=f, method="bicubic")``, eager (numpy in, numpy
  out): conservative (``"additive"``, spherical area weights), periodic in longitude,
  NaN-aware, refined coordinates and CF bounds;
* ``xarray_linear``: ``ds.interp(latitude=..., longitude=..., method="linear")`` onto the
  same fine cell centres (scipy; no conservation, no periodicity).

Every case runs in a fresh Python process: one first call (measured and reported apart as
``first_call``: it includes one-time costs of the libraries, such as thread pools and
allocator arenas, that do not grow with the output), then ``--repeat`` calls, whose best
time and largest memory growth are the headline figures.  **Memory**: before each call the
process's peak-RSS mark is reset (``echo 5 > /proc/self/clear_refs``, Linux) and the
resident memory ``VmRSS`` is read; after the call the peak ``VmHWM`` is read from
``/proc/self/status``.  The growth is ``VmHWM - VmRSS``: kernel counters, so every
allocation counts (numpy, torch, scipy buffers alike, which ``tracemalloc`` would not see).
Imports, the input data and the target coordinates are in place before the baseline; the
previous call's result is dropped first.  Reported next to it: the bytes of the output array
of ``adt`` and their ratio.

For xsr, after the timed calls: the output dtype and the conservation error
(:func:`xsr.conserve.conservation_error` in float64 with the fine cell areas, relative to the
largest coarse magnitude).  The targets of issue 13: xsr at least 3 x faster than
``interp(method="linear")``, peak growth at most 1.3 x the output array, float32 in ->
float32 out conserving to <= 2e-6 (float64: <= 1e-12).

Usage::

    XSR_DATA_DIR=/work/shared/data python benchmarks/bench_interp_speed.py > bench.json

Prints one JSON object on stdout (progress on stderr), with the load average at the start
and the end of every case.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import os
import subprocess
import sys
import time
from typing import Any

from _machine import machine_info  # benchmarks/_machine.py (run as a script)

FILE = "ssh_global_quarterdeg_20190223.nc"
CASES = ("xsr_bicubic", "xarray_linear")
DTYPES = ("float64", "float32")
MIB = 2.0**20
TARGET_SPEEDUP = 3.0
TARGET_MEMORY = 1.3
TOLERANCE = {"float64": 1e-12, "float32": 2e-6}


# --------------------------------------------------------------------------------------------
# worker: one case in its own process
# --------------------------------------------------------------------------------------------
def _status() -> dict[str, int]:
    """``VmRSS`` and ``VmHWM`` of this process, in bytes."""
    out = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, val = line.split(":", 1)
                out[key] = int(val.split()[0]) * 1024
    return out


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")


def _worker(case: str, factor: int, dtype: str, repeat: int) -> dict[str, Any]:
    import numpy as np
    import xarray as xr

    import xsr
    from xsr.grid import refine_1d

    ds = xr.open_dataset(xsr.datasets.fetch(FILE)).load()
    ds["adt"] = ds["adt"].astype(dtype)
    info: dict[str, Any] = {"case": case, "factor": factor, "input_dtype": dtype}
    if case == "xsr_bicubic":
        import cf_xarray  # noqa: F401  (imported before the memory baseline, like torch)
        import torch

        info["torch_threads"] = torch.get_num_threads()

        def call() -> Any:
            return ds.sr.downscale(factor=factor, method="bicubic")

    else:
        import scipy.interpolate  # noqa: F401  (imported before the memory baseline)

        lat, _ = refine_1d(ds.latitude.values, factor, bounds=ds.lat_bnds.values, kind="latitude")
        lon, _ = refine_1d(ds.longitude.values, factor, bounds=ds.lon_bnds.values, kind="longitude")

        def call() -> Any:
            return ds.interp(latitude=lat, longitude=lon, method="linear")

    times: list[float] = []
    growth: list[int] = []
    out: Any = None
    load = [os.getloadavg()]
    for _ in range(repeat + 1):
        out = None
        gc.collect()
        _reset_peak()
        base = _status()["VmRSS"]
        t0 = time.perf_counter()
        out = call()
        times.append(time.perf_counter() - t0)
        growth.append(_status()["VmHWM"] - base)
    load.append(os.getloadavg())
    adt = out["adt"]
    nbytes = int(adt.nbytes)
    first_t, first_g = times.pop(0), growth.pop(0)
    info.update(
        fine_shape=[int(n) for n in adt.shape[-2:]],
        output_dtype=str(adt.dtype),
        output_bytes=nbytes,
        output_mib=round(nbytes / MIB, 1),
        output_nan_fraction=round(float(np.isnan(adt.values).mean()), 4),
        times_s=[round(t, 3) for t in times],
        best_s=round(min(times), 3),
        peak_growth_mib_each=[round(g / MIB, 1) for g in growth],
        peak_growth_mib=round(max(growth) / MIB, 1),
        peak_growth_over_output=round(max(growth) / nbytes, 3),
        first_call={
            "time_s": round(first_t, 3),
            "peak_growth_mib": round(first_g / MIB, 1),
            "peak_growth_over_output": round(first_g / nbytes, 3),
        },
        load_average=[[round(v, 2) for v in la] for la in load],
    )
    if case == "xsr_bicubic":
        from xsr.cfgrid import cell_areas
        from xsr.conserve import conservation_error

        w = cell_areas(ds, factor=factor)
        err = conservation_error(
            np.asarray(adt.values[0], np.float64),
            np.asarray(ds["adt"].values[0], np.float64),
            factor,
            weights=w,
        )
        info["conservation_error"] = float(f"{err:.3g}")
        info["conservation_tolerance"] = TOLERANCE[dtype]
    return info


# --------------------------------------------------------------------------------------------
# driver
# --------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--factors", type=int, nargs="+", default=[4, 8])
    p.add_argument("--dtypes", nargs="+", choices=DTYPES, default=list(DTYPES))
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    p.add_argument("--worker", choices=CASES, help=argparse.SUPPRESS)
    p.add_argument("--factor", type=int, help=argparse.SUPPRESS)
    p.add_argument("--dtype", choices=DTYPES, help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.worker:
        print(json.dumps(_worker(args.worker, args.factor, args.dtype, args.repeat)))
        return 0

    report: dict[str, Any] = {
        "benchmark": "issue 13: eager xsr bicubic downscale vs xarray interp linear, global SSH",
        "command": " ".join(["python", *sys.argv]),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info("cpu"),
        "memory_method": (
            "fresh process per case; before each call the peak-RSS mark is reset "
            "(/proc/self/clear_refs = 5) and VmRSS read; growth = VmHWM after the call - "
            "VmRSS before (kernel counters, every allocator counted); max over the repeats "
            "that follow a first call (reported apart as first_call)"
        ),
        "repeat": args.repeat,
        "targets": {
            "speedup_vs_interp_linear": TARGET_SPEEDUP,
            "peak_growth_over_output": TARGET_MEMORY,
            "conservation_error": TOLERANCE,
        },
        "results": {},
        "summary": [],
    }
    for f in args.factors:
        for dtype in args.dtypes:
            res: dict[str, Any] = {}
            for case in args.cases:
                print(f"factor {f} {dtype}: {case} ...", file=sys.stderr, flush=True)
                cmd = [sys.executable, __file__, "--worker", case, "--factor", str(f)]
                cmd += ["--dtype", dtype, "--repeat", str(args.repeat)]
                done = subprocess.run(cmd, capture_output=True, text=True)
                if done.returncode != 0:
                    res[case] = {"error": done.stderr.strip().splitlines()[-1:]}
                    print(done.stderr, file=sys.stderr)
                    continue
                r = res[case] = json.loads(done.stdout.strip().splitlines()[-1])
                print(
                    f"  best {r['best_s']} s {r['times_s']}, peak +{r['peak_growth_mib']} MiB "
                    f"({r['peak_growth_over_output']} x output), load {r['load_average']}",
                    file=sys.stderr,
                    flush=True,
                )
            report["results"][f"{f}/{dtype}"] = res
            xs, li = res.get("xsr_bicubic", {}), res.get("xarray_linear", {})
            if "best_s" in xs:
                row: dict[str, Any] = {
                    "factor": f,
                    "input_dtype": dtype,
                    "output_dtype": xs["output_dtype"],
                    "xsr_best_s": xs["best_s"],
                    "xsr_peak_growth_over_output": xs["peak_growth_over_output"],
                    "conservation_error": xs["conservation_error"],
                    "memory_target_met": xs["peak_growth_over_output"] <= TARGET_MEMORY,
                    "conservation_target_met": xs["conservation_error"] <= TOLERANCE[dtype],
                    "dtype_kept": xs["output_dtype"] == dtype,
                }
                if "best_s" in li:
                    speedup = li["best_s"] / xs["best_s"]
                    row.update(
                        interp_linear_best_s=li["best_s"],
                        speedup=round(speedup, 2),
                        speed_target_met=speedup >= TARGET_SPEEDUP,
                    )
                report["summary"].append(row)
    report["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
