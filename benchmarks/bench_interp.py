"""Wall time and peak memory: xsr conservative bicubic downscaling vs ``xarray.Dataset.interp``.

The input is the real global sea surface height ``ssh_global_quarterdeg_20190223.nc``
(DUACS ``adt``, 720 x 1440 at 0.25 degree, 43 % NaN land), obtained with
``xsr.datasets.fetch``; set ``XSR_DATA_DIR`` to a folder holding the file to run offline.
For each factor (default 4 and 8: 2880 x 5760 and 5760 x 11520 output cells) it times

* ``xsr_bicubic``: ``ds.sr.downscale(factor=f, method="bicubic")`` (``conserve="additive"``,
  area weights, periodic longitude, refined coordinates and bounds);
* ``xarray_linear``: ``ds.interp(latitude=..., longitude=..., method="linear")`` onto the
  same fine cell centres (scipy);
* ``xarray_cubic``: the same with ``method="cubic"`` on ``ds.fillna(0)``, because scipy's
  N-D cubic spline rejects NaN input ("RHS must contain only finite numbers"); only when
  scipy is installed.

Each case runs in a fresh Python process (so its peak memory is its own), ``--repeat`` times.
Reported per case: every wall time, the best and the median, and the peak resident memory
(RSS) increase over the RSS just before the call, sampled every millisecond by a background
thread with psutil (imports, data loading and the fine coordinates are done before the
baseline is taken; on CUDA the context is created before it too); the process's
``ru_maxrss`` high-water mark is given as a cross-check.  On CUDA,
``torch.cuda.max_memory_allocated`` is added for xsr.

Usage::

    XSR_DATA_DIR=/work/shared/data python benchmarks/bench_interp.py --device cpu > bench.json

Prints one JSON object on stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import importlib.util
import json
import resource
import statistics
import subprocess
import sys
import threading
import time
from typing import Any

from _machine import machine_info  # benchmarks/_machine.py (run as a script)

FILE = "ssh_global_quarterdeg_20190223.nc"
CASES = ("xsr_bicubic", "xarray_linear", "xarray_cubic")
MIB = 2.0**20


# --------------------------------------------------------------------------------------------
# worker: one case, one factor, in its own process
# --------------------------------------------------------------------------------------------
class PeakRSS:
    """Sample this process's RSS in a background thread; ``peak`` is the largest sample."""

    def __init__(self, interval: float = 0.001) -> None:
        import psutil

        self._proc = psutil.Process()
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.peak = 0
        self.samples = 0

    def rss(self) -> int:
        return int(self._proc.memory_info().rss)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss())
            self.samples += 1
            time.sleep(self._interval)

    def __enter__(self) -> PeakRSS:
        self.peak = self.rss()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.rss())


def _worker(case: str, factor: int, device: str, repeat: int) -> dict[str, Any]:
    import numpy as np
    import xarray as xr

    import xsr
    from xsr.grid import refine_1d

    ds = xr.open_dataset(xsr.datasets.fetch(FILE)).load()
    info: dict[str, Any] = {"case": case, "factor": factor}
    if case == "xsr_bicubic":
        import cf_xarray  # noqa: F401  (imported before the memory baseline, like torch)
        import torch

        info["torch_threads"] = torch.get_num_threads()
        if device.startswith("cuda"):
            torch.zeros(1, device=device)  # create the CUDA context before the baseline
            torch.cuda.synchronize()

        def call() -> Any:
            out = ds.sr.downscale(factor=factor, method="bicubic", device=device)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            return out

    else:
        import scipy.interpolate  # noqa: F401  (imported before the memory baseline)

        lat, _ = refine_1d(ds.latitude.values, factor, bounds=ds.lat_bnds.values, kind="latitude")
        lon, _ = refine_1d(ds.longitude.values, factor, bounds=ds.lon_bnds.values, kind="longitude")
        method = case.removeprefix("xarray_")
        src = ds.fillna(0.0) if method == "cubic" else ds

        def call() -> Any:
            return src.interp(latitude=lat, longitude=lon, method=method)

    times: list[float] = []
    peaks: list[float] = []
    gpu_peaks: list[float] = []
    baseline = 0.0
    out: Any = None
    for _ in range(repeat):
        out = None
        gc.collect()
        if device.startswith("cuda") and case == "xsr_bicubic":
            torch.cuda.reset_peak_memory_stats()
        with PeakRSS() as mem:
            base = mem.rss()
            t0 = time.perf_counter()
            out = call()
            times.append(time.perf_counter() - t0)
        baseline = base / MIB
        peaks.append((mem.peak - base) / MIB)
        if device.startswith("cuda") and case == "xsr_bicubic":
            gpu_peaks.append(torch.cuda.max_memory_allocated() / MIB)
    adt = out["adt"]
    info.update(
        fine_shape=[int(n) for n in adt.shape[-2:]],
        output_nan_fraction=round(float(np.isnan(adt.values).mean()), 4),
        times_s=[round(t, 3) for t in times],
        best_s=round(min(times), 3),
        median_s=round(statistics.median(times), 3),
        peak_rss_increase_mib=round(max(peaks), 1),
        peak_rss_increase_mib_each=[round(p, 1) for p in peaks],
        baseline_rss_mib=round(baseline, 1),
        ru_maxrss_mib=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    )
    if gpu_peaks:
        info["peak_cuda_allocated_mib"] = round(max(gpu_peaks), 1)
    return info


# --------------------------------------------------------------------------------------------
# driver
# --------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", help="torch device for xsr: cpu or cuda")
    p.add_argument("--factors", type=int, nargs="+", default=[4, 8])
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    p.add_argument("--worker", choices=CASES, help=argparse.SUPPRESS)
    p.add_argument("--factor", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.worker:
        print(json.dumps(_worker(args.worker, args.factor, args.device, args.repeat)))
        return 0

    has_scipy = importlib.util.find_spec("scipy") is not None
    cases = [c for c in args.cases if has_scipy or not c.startswith("xarray_")]
    report: dict[str, Any] = {
        "benchmark": "xsr downscale vs xarray interp, global SSH 720 x 1440",
        "command": " ".join(["python", *sys.argv]),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(args.device),
        "memory_method": (
            "peak RSS increase over the RSS just before the call, sampled every 1 ms by a "
            "background thread with psutil; one fresh process per case; ru_maxrss is the "
            "process high-water mark (includes imports and data)"
        ),
        "repeat": args.repeat,
        "results": {},
    }
    if not has_scipy:
        report["skipped"] = "xarray_* cases: scipy is not installed"
    for f in args.factors:
        res: dict[str, Any] = {}
        for case in cases:
            print(f"factor {f}: {case} ...", file=sys.stderr, flush=True)
            cmd = [sys.executable, __file__, "--worker", case, "--factor", str(f)]
            cmd += ["--device", args.device, "--repeat", str(args.repeat)]
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode != 0:
                res[case] = {"error": done.stderr.strip().splitlines()[-1:]}
                print(done.stderr, file=sys.stderr)
                continue
            res[case] = json.loads(done.stdout.strip().splitlines()[-1])
            r = res[case]
            print(
                f"  best {r['best_s']} s, median {r['median_s']} s, "
                f"peak +{r['peak_rss_increase_mib']} MiB",
                file=sys.stderr,
                flush=True,
            )
        report["results"][str(f)] = res
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
