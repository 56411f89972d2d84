"""``xsr.evaluate`` on every real file of ``../shared/data``: the twin experiment a user runs.

For each file: its fields opened as ``xsr evaluate`` opens them
(:func:`xsr.batch.open_inputs`; ``--first-variable``: only the first), the first time
step, a central window of ``--window`` x ``--window`` fine cells (the whole field when
smaller), block-averaged by the file's factor and downscaled back with conservative
``bicubic``, a ``dip-ensemble`` (``--members``, default iterations) and the same ensemble
with its spread calibrated (``calibrated=dip-ensemble`` with ``calibrate="scale"``); every
score of :func:`xsr.evaluate` per variable and method.  JSON on stdout, progress on stderr.

Usage::

    python benchmarks/bench_evaluate.py --data ../shared/data > evaluate_real_cpu.json
    python benchmarks/bench_evaluate.py --files ssh_qg_256_train.nc --members 4
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from _machine import machine_info  # benchmarks/_machine.py (run as a script)

#: File -> factor (the ones of tests/test_evaluate.py::test_every_real_file).
FILES = {
    "ssh_global_quarterdeg_20190223.nc": 8,
    "ssh_med_eighthdeg_2005AMJ.nc": 4,
    "ssh_qg_256_train.nc": 8,
    "tasmax_gridmet_24thdeg_20190121.nc": 8,
    "tas_euro_cordex_rotated_pole.nc": 4,
    "ocean_pop_curvilinear.nc": 4,
    "precip_radolan_1km_201408102050.nc": 8,
    "precip_stageiv_4km_2002030112.nc": 4,
    "landsat7_rgb_300m.nc": 8,
    "elevation_colorado_1arcmin.nc": 4,
}

KEYS = (
    "rmse",
    "rmse_vs_first",
    "mae",
    "ssim",
    "crps",
    "spread_skill",
    "spread_error_corr",
    "rank_outer_vs_uniform",
    "effective_resolution",
    "conservation_error",
    "seconds",
)


def log(*a: Any) -> None:
    print(*a, file=sys.stderr, flush=True)


def run_file(path: Path, factor: int, args: argparse.Namespace) -> dict[str, Any]:
    import xsr
    from xsr.batch import open_inputs
    from xsr.cfgrid import field_variables

    ds = open_inputs([str(path)])
    ydim, xdim = xsr.spatial_dims(ds)
    names = field_variables(ds)
    var = names[:1] if args.first_variable else names
    # the fields' other dimensions (time, height), not those of bounds (nv, bnds)
    lead = {d for n in var for d in ds[n].dims if d not in (ydim, xdim)}
    ds = ds.isel({d: slice(0, 1) for d in lead})
    sel = {}
    for d in (ydim, xdim):
        n = int(ds.sizes[d])
        w = min(n, args.window)
        sel[d] = slice((n - w) // 2, (n - w) // 2 + w)
    ds = ds.isel(sel)
    dip = {"members": args.members, "progress": False, "seed": 0}
    if args.iterations:
        dip["iterations"] = args.iterations
    t0 = time.perf_counter()
    ev = xsr.evaluate(
        ds,
        factor=factor,
        methods="bicubic,dip-ensemble,calibrated=dip-ensemble",
        method_options={"dip-ensemble": dip, "calibrated": {"calibrate": "scale"}},
        var=var,
        progress=False,
    )
    rows = [
        {"variable": r["variable"], "method": r["method"], **{k: r.get(k) for k in KEYS}}
        for r in ev.scores
    ]
    return {
        "file": path.name,
        "factor": factor,
        "window": {str(d): [s.start, s.stop] for d, s in sel.items()},
        "shape": [int(ds.sizes[ydim]), int(ds.sizes[xdim])],
        "variables": ev.variables,
        "notes": list(ev.settings.get("notes", [])),
        "seconds": time.perf_counter() - t0,
        "scores": rows,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="../shared/data", help="folder of the real files")
    p.add_argument("--files", nargs="*", default=None, help="a subset of the files")
    p.add_argument("--window", type=int, default=128, help="window side in fine cells")
    p.add_argument("--members", type=int, default=10)
    p.add_argument("--iterations", type=int, default=None, help="default: the method's")
    p.add_argument(
        "--first-variable", action="store_true", help="only the first field of each file"
    )
    args = p.parse_args()
    folder = Path(args.data)
    names = args.files or sorted(FILES)
    results = []
    for name in names:
        path = folder / name
        if not path.exists():
            log(f"{name}: not present, skipped")
            continue
        log(f"{name} x{FILES[name]} ...")
        try:
            row = run_file(path, FILES[name], args)
        except Exception as e:  # recorded, and the other files still run
            log(f"  failed: {type(e).__name__}: {e}")
            results.append(
                {"file": name, "factor": FILES[name], "error": f"{type(e).__name__}: {e}"}
            )
            continue
        for r in row["scores"]:
            log(
                f"  {r['variable']:>22s} {r['method']:>13s} rmse {r['rmse']:.4g} "
                f"(vs first {r['rmse_vs_first']}) crps {r['crps']:.4g} "
                f"ssr {r['spread_skill']} cons {r['conservation_error']:.1e}"
            )
        results.append(row)
    doc = {
        "machine": machine_info(),
        "argv": sys.argv[1:],
        "config": {
            "window": args.window,
            "members": args.members,
            "iterations": args.iterations,
            "first_variable": args.first_variable,
        },
        "files": results,
    }
    print(json.dumps(doc, indent=1, default=float))


if __name__ == "__main__":
    main()
