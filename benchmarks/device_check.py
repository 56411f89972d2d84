"""The GPU machine's measurements in one run, one JSON (issue 13): ``device_check.sh`` calls this.

Sections (``--sections`` picks some; each is a function below, run in a child process of its
own with a time limit, so that one that fails, hangs or crashes the CUDA context costs only
itself; a child records its results as it goes, so a section stopped at its limit still
reports what it measured):

``bicubic_global_x8``
    ``ds.sr.downscale(factor=8, method="bicubic")`` (conservative, additive, spherical
    areas, periodic in longitude) of a synthetic global 720 x 1440 field with land (NaN) on
    ``--device``: best of ``repeat`` runs after a warm-up, peak CUDA memory, conservation error.
``dip_ensemble``
    A 50-member deep-image-prior ensemble of one 256 x 256 field (a synthetic field averaged
    over 8 x 8 blocks: 32 x 32 -> 256 x 256) at 1500 iterations, with ``fit_dip`` (the core of
    ``method="dip-ensemble"``), for the study's generator (2.39 M parameters per member, full
    resolution) and the default decoder, in several precisions: plain fp32 (TF32 off), TF32
    (``torch.backends.cuda.matmul.allow_tf32`` and ``cudnn.allow_tf32``), TF32 with
    ``cudnn.benchmark``, bf16 autocast (``amp=True`` of xsr's DIP) and ``torch.compile`` of
    the generator's forward.  Each variant is timed at two short lengths and the time of 1500
    iterations extrapolated (``probe``); the fastest variants are then run for the full 1500
    iterations where the time left allows (``full``).  Goal: <= 10 s on an H100/H200.
``cnn_throughput``
    Forward pass of each of the seven networks of :mod:`xsr.nn.sr` (randomly initialised,
    default size, additive enforcement layer), no gradients, on a batch of coarse fields:
    output megapixels per second in fp32 (TF32 off) and in bf16 autocast, and the
    conservation error of each output.
``tiled_dip_ensemble``
    ``method="dip-ensemble"`` on the synthetic global 720 x 1440 field by 8 with
    ``tile_size=512`` (a short run: few members, few iterations; it shows that the tiled
    path works and what it costs, not the quality of a fit).
``distributed_scaling``
    The Med SSH batch job (:func:`xsr.batch.run`: netCDF in, zarr out, ``--factor 4
    --chunks time=1``, bicubic on the CPU) on a synthetic Med-like series (91 daily 128 x 344
    fields with land) with a ``dask.distributed`` LocalCluster of 1, 2, 4 and 8 worker
    processes of one thread each: wall time and speedup over one worker.

No file of the project's shared data is needed (the GPU machine gets only the working tree):
every field is synthetic, made here with a fixed seed.

``--cpu --quick`` runs every section on the CPU with small sizes (a smoke test,
tests/test_device_check.py); ``--quick`` alone keeps the small sizes on the GPU.

Usage::

    python benchmarks/device_check.py --out device_check.json          # on a CUDA machine
    python benchmarks/device_check.py --cpu --quick --out /tmp/dc.json  # anywhere
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from _machine import machine_info  # noqa: E402  (benchmarks/_machine.py)

SECTIONS = (
    "dip_ensemble",
    "bicubic_global_x8",
    "cnn_throughput",
    "tiled_dip_ensemble",
    "distributed_scaling",
)

# sizes of the full run (a CUDA machine) and of --quick (a smoke test on any machine)
FULL: dict[str, dict[str, Any]] = {
    "bicubic_global_x8": {"ny": 720, "nx": 1440, "factor": 8, "repeat": 3},
    "dip_ensemble": {
        "members": 50,
        "fine": 256,
        "factor": 8,
        "iterations": 1500,
        "probe": [10, 40],
        "generators": ["study", "decoder"],
        # the precisions probed per generator (see _dip_variants), and the generator that
        # is also run through torch.compile
        "variants": {
            "study": ["fp32", "tf32", "tf32+cudnn_benchmark", "bf16"],
            "decoder": ["fp32", "bf16"],
        },
        "compile": "study",
        "full_runs": 1,
    },
    "cnn_throughput": {"batch": 16, "coarse": 64, "factor": 8, "repeat": 3},
    "tiled_dip_ensemble": {
        "ny": 720,
        "nx": 1440,
        "factor": 8,
        "tile_size": 512,
        "members": 2,
        "iterations": 30,
    },
    "distributed_scaling": {
        "days": 91,
        "ny": 128,
        "nx": 344,
        "factor": 4,
        "workers": [1, 2, 4, 8],
    },
}
QUICK: dict[str, dict[str, Any]] = {
    "bicubic_global_x8": {"ny": 45, "nx": 90, "factor": 8, "repeat": 1},
    "dip_ensemble": {
        "members": 2,
        "fine": 16,
        "factor": 2,
        "iterations": 3,
        "probe": [1, 2],
        "generators": ["study", "decoder"],
        # every variant once, on the cheap generator
        "variants": {
            "study": ["fp32"],
            "decoder": ["fp32", "tf32", "tf32+cudnn_benchmark", "bf16"],
        },
        "compile": "decoder",
        "full_runs": 1,
    },
    "cnn_throughput": {"batch": 1, "coarse": 8, "factor": 4, "repeat": 1},
    "tiled_dip_ensemble": {
        "ny": 16,
        "nx": 32,
        "factor": 4,
        "tile_size": 32,
        "members": 2,
        "iterations": 2,
    },
    "distributed_scaling": {"days": 2, "ny": 8, "nx": 20, "factor": 2, "workers": [1, 2]},
}
# what each section's result holds when it ran to the end (tests/test_device_check.py)
KEYS: dict[str, tuple[str, ...]] = {
    "bicubic_global_x8": (
        "input",
        "output",
        "runs_s",
        "best_s",
        "output_megapixels_per_s",
        "peak_cuda_mib",
        "max_rel_conservation_error",
    ),
    "dip_ensemble": ("input", "what", "variants", "probe", "full", "best_estimate_s"),
    "cnn_throughput": ("what", "rows"),
    "tiled_dip_ensemble": (
        "input",
        "seconds",
        "output",
        "peak_cuda_mib",
        "mean_std",
        "max_rel_conservation_error",
    ),
    "distributed_scaling": ("what", "cpu_count", "rows"),
}
# seconds each section may take at most (its child process is stopped there); the run as a
# whole also stops at --budget
LIMITS = {
    "dip_ensemble": 125,
    "bicubic_global_x8": 30,
    "cnn_throughput": 45,
    "tiled_dip_ensemble": 45,
    "distributed_scaling": 80,
}


def log(*a: Any) -> None:
    print(*a, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# recording, timing, precision
# --------------------------------------------------------------------------------------------
class Recorder:
    """A section's result, written to ``path`` (JSON) after every change."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = None if path is None else Path(path)
        self.data: dict[str, Any] = {}

    def __setitem__(self, key: str, value: Any) -> None:
        self.data[key] = value
        self.flush()

    def append(self, key: str, value: Any) -> None:
        self.data.setdefault(key, []).append(value)
        self.flush()

    def flush(self) -> None:
        if self.path is not None:
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.data, indent=1, default=str))
            tmp.replace(self.path)


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn: Callable[[], Any], device: str) -> tuple[float, Any]:
    """Wall time of ``fn()`` with the device synchronised before and after."""
    _sync(device)
    t0 = time.perf_counter()
    out = fn()
    _sync(device)
    return time.perf_counter() - t0, out


def _peak_reset(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()


def _peak_mib(device: str) -> float | None:
    import torch

    if device.startswith("cuda"):
        return round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return None


@contextlib.contextmanager
def precision(*, tf32: bool, cudnn_benchmark: bool = False) -> Iterator[None]:
    """TF32 for matrix products and convolutions on or off, and cuDNN's autotuner, restored
    on exit (the flags only act on CUDA; on the CPU they are recorded and change nothing)."""
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # newer torch suggests its fp32_precision API
        saved = (
            torch.backends.cuda.matmul.allow_tf32,
            torch.backends.cudnn.allow_tf32,
            torch.backends.cudnn.benchmark,
        )
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
        torch.backends.cudnn.benchmark = cudnn_benchmark
    try:
        yield
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            (
                torch.backends.cuda.matmul.allow_tf32,
                torch.backends.cudnn.allow_tf32,
                torch.backends.cudnn.benchmark,
            ) = saved


@contextlib.contextmanager
def compiled_generators(backend: str) -> Iterator[None]:
    """Make :func:`xsr.nn.generators.build_generator` return generators whose forward is
    ``torch.compile``-d (``fit_dip`` builds its generator through it), restored on exit."""
    import torch

    import xsr.nn.generators as gens

    build = gens.build_generator
    # fit_dip builds a new generator per call: each one is a recompilation (the compiled
    # kernels come from the cache), which must not hit dynamo's limit and fall back to eager
    dynamo_config = torch._dynamo.config
    limits = {
        k: getattr(dynamo_config, k)
        for k in ("cache_size_limit", "recompile_limit")
        if hasattr(dynamo_config, k)
    }
    for k, v in limits.items():
        setattr(dynamo_config, k, max(v, 64))

    def build_compiled(*a: Any, **kw: Any) -> Any:
        gen = build(*a, **kw)
        gen.forward = torch.compile(gen.forward, backend=backend, dynamic=False)
        return gen

    gens.build_generator = build_compiled  # type: ignore[assignment]
    try:
        yield
    finally:
        gens.build_generator = build  # type: ignore[assignment]
        for k, v in limits.items():
            setattr(dynamo_config, k, v)


# --------------------------------------------------------------------------------------------
# synthetic fields
# --------------------------------------------------------------------------------------------
def smooth_field(ny: int, nx: int, seed: int = 0, modes: int = 24) -> Any:
    """A smooth random field with eddy-like structure at several scales (numpy, float64)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    y = (np.arange(ny) + 0.5) / ny
    x = (np.arange(nx) + 0.5) / nx
    out = np.zeros((ny, nx))
    for _ in range(modes):
        k = rng.uniform(1, 24)
        theta = rng.uniform(0, 2 * np.pi)
        ky, kx = k * np.sin(theta), k * np.cos(theta)
        phase = rng.uniform(0, 2 * np.pi)
        out += np.sin(2 * np.pi * (ky * y[:, None] + kx * x[None, :]) + phase) / k
    return out


def global_dataset(ny: int, nx: int, seed: int = 0) -> Any:
    """Synthetic global SSH-like field ``adt`` (m) on a ``ny x ny`` 1-D lat/lon grid with CF
    bounds (periodic in longitude), land NaN: about 30 % of the cells, continents from a
    smoothed random field plus an Antarctic cap."""
    import numpy as np

    import xsr

    ds = xsr.testing.lonlat_dataset(ny, nx, nt=1, global_grid=True, land=False, seed=seed)
    ds = ds[["sst", "lat_bnds", "lon_bnds"]].rename({"sst": "adt"})
    lat = ds["lat"].values
    field = 0.5 * smooth_field(ny, nx, seed) + 0.8 * np.cos(np.deg2rad(lat))[:, None] - 0.3
    relief = smooth_field(ny, nx, seed + 1, modes=6)
    land = (relief > np.quantile(relief, 0.72)) | (lat[:, None] < -70)
    field = np.where(land, np.nan, field)[None]
    ds["adt"] = (("time", "lat", "lon"), field, {"units": "m", "long_name": "synthetic ADT"})
    return ds


def med_dataset(days: int, ny: int, nx: int, seed: int = 0) -> Any:
    """Synthetic Mediterranean-like series: ``days`` daily maps of ``adt`` (m) on a 1/8 degree
    grid at 30-46 N, 6 W-37 E (128 x 344 cells), land NaN (about 45 %), slowly evolving."""
    import numpy as np
    import xarray as xr

    lat = 30.0 + (np.arange(ny) + 0.5) * (16.0 / ny)
    lon = -6.0 + (np.arange(nx) + 0.5) * (43.0 / nx)
    dlat, dlon = 16.0 / ny, 43.0 / nx
    relief = smooth_field(ny, nx, seed + 1, modes=8)
    land = relief > np.quantile(relief, 0.55)
    base = smooth_field(ny, nx, seed)
    drift = smooth_field(ny, nx, seed + 2)
    t = np.arange(days)[:, None, None] / max(days, 1)
    adt = 0.1 * (base[None] * np.cos(2 * np.pi * t) + drift[None] * np.sin(2 * np.pi * t))
    adt = np.where(land[None], np.nan, adt)
    ds = xr.Dataset(
        {
            "adt": (("time", "latitude", "longitude"), adt, {"units": "m"}),
            "lat_bnds": (("latitude", "nv"), np.stack([lat - dlat / 2, lat + dlat / 2], 1)),
            "lon_bnds": (("longitude", "nv"), np.stack([lon - dlon / 2, lon + dlon / 2], 1)),
        },
        coords={
            "time": np.datetime64("2005-04-01") + np.arange(days).astype("timedelta64[D]"),
            "latitude": (
                "latitude",
                lat,
                {"units": "degrees_north", "standard_name": "latitude", "bounds": "lat_bnds"},
            ),
            "longitude": (
                "longitude",
                lon,
                {"units": "degrees_east", "standard_name": "longitude", "bounds": "lon_bnds"},
            ),
        },
        attrs={"title": "synthetic Med-like SSH series (device_check.py)"},
    )
    return ds


# --------------------------------------------------------------------------------------------
# sections
# --------------------------------------------------------------------------------------------
def bicubic_global_x8(cfg: dict[str, Any], device: str, rec: Recorder) -> None:
    """Conservative bicubic of a synthetic global field, in memory, on ``device``."""
    import numpy as np

    import xsr

    ds = global_dataset(cfg["ny"], cfg["nx"])
    f = cfg["factor"]
    rec["input"] = (
        f"synthetic global field {cfg['ny']} x {cfg['nx']} (float64, "
        f"{float(np.isnan(ds['adt'].values).mean()):.1%} land NaN), factor {f}, method "
        "bicubic, conserve additive (spherical areas), periodic longitude"
    )
    rec["output"] = f"{cfg['ny'] * f} x {cfg['nx'] * f} float64"

    def call() -> Any:
        out = ds.sr.downscale(factor=f, method="bicubic", device=device)
        return out["adt"].values

    with xsr.set_options(progress=False):
        warm, _ = timed(call, device)
        rec["warmup_s"] = round(warm, 3)
        runs = []
        _peak_reset(device)
        for _ in range(cfg["repeat"]):
            s, _ = timed(call, device)
            runs.append(round(s, 3))
            rec["runs_s"] = runs
        rec["best_s"] = min(runs)
        rec["peak_cuda_mib"] = _peak_mib(device)
        out = ds.sr.downscale(factor=f, method="bicubic", device=device)
    mp = cfg["ny"] * cfg["nx"] * f * f / 1e6
    rec["output_megapixels_per_s"] = float(f"{mp / min(runs):.4g}")
    rec["max_rel_conservation_error"] = xsr.testing.assert_conserves(out[["adt"]], ds[["adt"]], f)


def _dip_variants(device: str) -> list[dict[str, Any]]:
    # on the CPU the flags change nothing and amp is ignored by fit_dip (CUDA only); the
    # rows still run, to exercise the code.  torch.compile on the CPU needs a C++ compiler and
    # minutes: the "eager" backend wraps the forward without compiling it.
    backend = "inductor" if device.startswith("cuda") else "eager"
    return [
        {"name": "fp32", "tf32": False, "amp": False, "cudnn_benchmark": False},
        {"name": "tf32", "tf32": True, "amp": False, "cudnn_benchmark": False},
        {"name": "tf32+cudnn_benchmark", "tf32": True, "amp": False, "cudnn_benchmark": True},
        {"name": "bf16", "tf32": True, "amp": True, "cudnn_benchmark": True},
        {
            "name": "tf32+compile",
            "tf32": True,
            "amp": False,
            "cudnn_benchmark": True,
            "compile": backend,
        },
    ]


def dip_ensemble(
    cfg: dict[str, Any], device: str, rec: Recorder, deadline: float | None = None
) -> None:
    """50 members x 1500 iterations of the DIP on one 256 x 256 field, per precision."""
    import numpy as np
    import torch

    from xsr.conserve import block_mean
    from xsr.methods.dip import DIP, fit_dip

    def left() -> float:
        return math.inf if deadline is None else deadline - time.time()

    K, f, n_it = cfg["members"], cfg["factor"], cfg["iterations"]
    n1, n2 = cfg["probe"]
    truth = torch.tensor(smooth_field(cfg["fine"], cfg["fine"], seed=3), dtype=torch.float64)
    x = block_mean(truth, f)[None].to(device)  # (1, ny, nx)
    rec["input"] = (
        f"synthetic smooth field {cfg['fine']} x {cfg['fine']} averaged over {f} x {f} blocks: "
        f"{tuple(x.shape[1:])} -> {cfg['fine']} x {cfg['fine']}; {K} members, one batch"
    )
    rec["what"] = (
        "xsr.methods.dip.fit_dip (the fit of method='dip-ensemble', before enforcement) with "
        "each generator's defaults of xsr's DIP; probe: time of 1500 iterations extrapolated "
        f"from runs of {n1} and {n2} iterations, t({n1}) + (1500 - {n1}) * (t({n2}) - "
        f"t({n1})) / {n2 - n1}; full: measured.  The compiled variant's times include one "
        "recompilation per fit (fit_dip builds a new generator each time; kernels cached)"
    )
    variants = _dip_variants(device)
    rec["variants"] = variants
    probes: list[dict[str, Any]] = []

    def options(gen: str) -> dict[str, Any]:
        m = DIP(generator=gen)  # type: ignore[arg-type]
        return {
            "generator": gen,
            "lr": m.lr,
            "skip": m.skip,
            "resolution": m.resolution,
        }

    def fit(gen: str, v: dict[str, Any], iterations: int) -> tuple[float, Any]:
        ctx = compiled_generators(v["compile"]) if v.get("compile") else contextlib.nullcontext()
        with precision(tf32=v["tf32"], cudnn_benchmark=v["cudnn_benchmark"]), ctx:
            return timed(
                lambda: fit_dip(
                    x, f, members=K, iterations=iterations, amp=v["amp"], **options(gen)
                ),
                device,
            )

    def probe(gen: str, v: dict[str, Any]) -> dict[str, Any]:
        row: dict[str, Any] = {"generator": gen, "variant": v["name"], "members": K}
        try:
            warm, _ = fit(gen, v, 2)  # warm-up: kernels, cuDNN plans, compilation
            row["warmup_s"] = round(warm, 2)
            t1, _ = fit(gen, v, n1)
            t2, res = fit(gen, v, n2)
            # the slope between the two lengths; if timing noise makes it vanish, the mean
            per_it = (t2 - t1) / (n2 - n1) if t2 > t1 else t2 / n2
            row.update(
                {
                    f"t_{n1}_s": round(t1, 3),
                    f"t_{n2}_s": round(t2, 3),
                    "ms_per_iteration": round(1e3 * per_it, 3),
                    "slope": t2 > t1,
                    f"estimated_{n_it}_s": round(t1 + (n_it - n1) * per_it, 2),
                    "member_iterations_per_s": round(K / per_it, 1),
                    f"loss_after_{n2}": float(res.loss.mean()),
                }
            )
        except Exception as e:  # one variant failing (e.g. compile) must not end the others
            row["error"] = f"{type(e).__name__}: {e}"[:2000]
        probes.append(row)
        rec["probe"] = probes
        log("dip probe:", row)
        return row

    def full(row: dict[str, Any]) -> None:
        est = row.get(f"estimated_{n_it}_s")
        if est is None:
            return
        if est > left() - 15:
            rec.append(
                "full",
                {**_key(row), "skipped": f"estimated {est} s, {left():.0f} s left in the budget"},
            )
            return
        v = next(v for v in variants if v["name"] == row["variant"])
        _peak_reset(device)
        s, res = fit(row["generator"], v, n_it)
        done = {
            **_key(row),
            "members": K,
            "iterations": int(res.iterations),
            "seconds": round(s, 2),
            "member_iterations_per_s": round(K * n_it / s, 1),
            f"loss_after_{n_it}": float(res.loss.mean()),
            "peak_cuda_mib": _peak_mib(device),
            "goal_s": 10.0,
        }
        rec.append("full", done)
        log("dip full:", done)

    def _key(row: dict[str, Any]) -> dict[str, Any]:
        return {"generator": row["generator"], "variant": row["variant"]}

    by_name = {v["name"]: v for v in variants}
    for gen in cfg["generators"]:
        for name in cfg["variants"][gen]:
            if left() < 20:
                rec.append("skipped", f"{gen} {name}: too little time left ({left():.0f} s)")
                continue
            probe(gen, by_name[name])
    # the fastest uncompiled variant of each generator, run for the full length
    for gen in cfg["generators"]:
        rows = [r for r in probes if r["generator"] == gen and "ms_per_iteration" in r]
        for r in sorted(rows, key=lambda r: r["ms_per_iteration"])[: cfg["full_runs"]]:
            full(r)
    # torch.compile last: compilation can take minutes; its full run only if it is faster
    gen = cfg["compile"]
    if gen:
        if left() < (60 if K >= 50 else 5):
            rec.append("skipped", f"{gen} compile: too little time left ({left():.0f} s)")
        else:
            r = probe(gen, by_name["tf32+compile"])
            best = [
                p["seconds"]
                for p in rec.data.get("full", [])
                if "seconds" in p and p["generator"] == gen
            ]
            if "ms_per_iteration" in r and (not best or r[f"estimated_{n_it}_s"] < 0.9 * min(best)):
                full(r)
    ok = [p for p in rec.data.get("full", []) if "seconds" in p and p["generator"] == "study"]
    if ok:
        rec["best_full_study_s"] = min(p["seconds"] for p in ok)
    est = [p[f"estimated_{n_it}_s"] for p in probes if f"estimated_{n_it}_s" in p]
    if est:
        rec["best_estimate_s"] = float(np.min(est))


def cnn_throughput(cfg: dict[str, Any], device: str, rec: Recorder) -> None:
    """MP/s of the seven networks' forward pass, fp32 and bf16 autocast."""
    import torch

    from xsr.conserve import conservation_error
    from xsr.nn.sr import SR_MODELS, build_sr_model

    n, s, f = cfg["batch"], cfg["coarse"], cfg["factor"]
    mpix = n * (s * f) ** 2 / 1e6
    rec["what"] = (
        "forward pass incl. the additive enforcement layer, no_grad, eval(), randomly "
        f"initialised default-size networks, batch {n} x {s} x {s} -> {s * f} x {s * f} "
        f"({mpix:.2f} output MP); fp32: TF32 off; bf16: torch.autocast(bfloat16); warm-up, "
        "then best of repeat; conservation error of the output in float64"
    )
    dev_type = "cuda" if device.startswith("cuda") else "cpu"
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(n, 1, s, s, generator=g) + 0.5).to(device)
    for name in SR_MODELS:
        torch.manual_seed(0)
        try:
            net = build_sr_model(name, factor=f, conserve="additive").to(device).eval()
        except Exception as e:
            rec.append("rows", {"network": name, "error": f"{type(e).__name__}: {e}"[:1000]})
            continue
        params = sum(p.numel() for p in net.parameters())
        for prec in ("fp32", "bf16"):
            row: dict[str, Any] = {"network": name, "precision": prec, "parameters": params}

            def run(prec: str = prec, net: Any = net) -> Any:
                with torch.no_grad():
                    if prec == "bf16":
                        with torch.autocast(dev_type, dtype=torch.bfloat16):
                            return net(x)
                    return net(x)

            try:
                with precision(tf32=False):
                    timed(run, device)  # warm-up
                    _peak_reset(device)
                    runs = []
                    y = None
                    for _ in range(cfg["repeat"]):
                        t, y = timed(run, device)
                        runs.append(round(t, 5))
                row.update(
                    {
                        "runs_s": runs,
                        "best_s": min(runs),
                        "output_megapixels": round(mpix, 3),
                        "megapixels_per_s": float(f"{mpix / min(runs):.4g}"),
                        "output_dtype": str(y.dtype).replace("torch.", ""),
                        "peak_cuda_mib": _peak_mib(device),
                        "max_rel_conservation_error": conservation_error(
                            y.double().cpu(), x.double().cpu(), f
                        ),
                    }
                )
            except Exception as e:
                row["error"] = f"{type(e).__name__}: {e}"[:1000]
            rec.append("rows", row)
            log("cnn:", row)
        del net
        if device.startswith("cuda"):
            torch.cuda.empty_cache()


def tiled_dip_ensemble(cfg: dict[str, Any], device: str, rec: Recorder) -> None:
    """A short tiled ``dip-ensemble`` of the synthetic global field."""
    import numpy as np

    import xsr
    import xsr.tiling

    ds = global_dataset(cfg["ny"], cfg["nx"])
    f, ts = cfg["factor"], cfg["tile_size"]
    nty = len(xsr.tiling.split_axis(0, cfg["ny"], ts // f)) - 1
    ntx = len(xsr.tiling.split_axis(0, cfg["nx"], ts // f)) - 1
    opts = {"members": cfg["members"], "iterations": cfg["iterations"], "progress": False}
    rec["input"] = (
        f"synthetic global field {cfg['ny']} x {cfg['nx']}, factor {f}, tile_size {ts} "
        f"({nty} x {ntx} = {nty * ntx} tiles), dip-ensemble {opts} (a short run: the time "
        "and memory of the tiled path, not a converged fit)"
    )
    with xsr.set_options(progress=False, device=device):
        if device.startswith("cuda"):  # warm-up: CUDA kernels, on a small window
            small = ds.isel(lat=slice(0, 2 * ts // f), lon=slice(0, 2 * ts // f))
            small.sr.downscale(factor=f, method="dip-ensemble", **opts).load()
        _peak_reset(device)
        s, out = timed(
            lambda: ds.sr.downscale(factor=f, method="dip-ensemble", tile_size=ts, **opts).load(),
            device,
        )
    rec["seconds"] = round(s, 2)
    rec["peak_cuda_mib"] = _peak_mib(device)
    rec["output"] = f"{cfg['ny'] * f} x {cfg['nx'] * f}: {sorted(out.data_vars)}"
    rec["mean_std"] = float(np.nanmean(out["adt_std"].values))
    rec["max_rel_conservation_error"] = xsr.testing.assert_conserves(
        out[["adt"]], ds[["adt"]], f, rtol=1e-6
    )


def distributed_scaling(cfg: dict[str, Any], device: str, rec: Recorder) -> None:
    """The Med batch job on LocalClusters of 1, 2, 4, 8 single-thread worker processes."""
    import shutil

    from distributed import Client, LocalCluster

    import xsr.batch

    days, f = cfg["days"], cfg["factor"]
    ds = med_dataset(days, cfg["ny"], cfg["nx"])
    rec["what"] = (
        f"xsr.batch.run: synthetic Med-like series ({days} x {cfg['ny']} x {cfg['nx']}, "
        f"netCDF) -> zarr, factor {f}, bicubic conservative, chunks time=1, device cpu, on a "
        "LocalCluster of N worker processes with 1 thread each (warmed up: xsr and torch "
        "imported), driver in this process"
    )
    rec["cpu_count"] = os.cpu_count()
    tmp = Path(tempfile.mkdtemp(prefix="xsr-scaling-"))
    try:
        src = tmp / "med.nc"
        engine = None
        try:
            import netCDF4  # noqa: F401
        except ImportError:
            engine = "scipy"  # netCDF-3, when the machine has no netCDF4 library
        ds.to_netcdf(src, engine=engine)
        walls: dict[int, float] = {}
        for n in cfg["workers"]:
            if n > (os.cpu_count() or 1):
                rec.append("rows", {"workers": n, "skipped": f"only {os.cpu_count()} CPUs"})
                continue
            store = tmp / f"out_{n}.zarr"
            with (
                LocalCluster(
                    n_workers=n, threads_per_worker=1, processes=True, dashboard_address=":0"
                ) as cluster,
                Client(cluster) as client,
            ):
                client.run(lambda: __import__("xsr.tiling"))
                cfg_run = xsr.batch.BatchConfig(
                    inputs=[str(src)],
                    output=str(store),
                    factor=f,
                    method="bicubic",
                    chunks={"time": 1},
                    device="cpu",
                    scheduler=cluster.scheduler_address,
                    progress=False,
                )
                with open(os.devnull, "w") as sink:
                    t0 = time.perf_counter()
                    xsr.batch.run(cfg_run, out=sink)
                    s = time.perf_counter() - t0
            walls[n] = s
            row = {"workers": n, "threads_per_worker": 1, "wall_s": round(s, 2)}
            if 1 in walls:
                row["speedup_over_1"] = round(walls[1] / s, 2)
            rec.append("rows", row)
            log("scaling:", row)
            shutil.rmtree(store, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


FUNCTIONS: dict[str, Callable[..., None]] = {
    "bicubic_global_x8": bicubic_global_x8,
    "dip_ensemble": dip_ensemble,
    "cnn_throughput": cnn_throughput,
    "tiled_dip_ensemble": tiled_dip_ensemble,
    "distributed_scaling": distributed_scaling,
}


# --------------------------------------------------------------------------------------------
# machine, test results, driver
# --------------------------------------------------------------------------------------------
def describe_machine(device: str) -> dict[str, Any]:
    """:func:`_machine.machine_info` plus CUDA, cuDNN, the GPU and the driver."""
    import torch

    info = machine_info(device)
    info["torch_cuda"] = torch.version.cuda
    info["cuda_available"] = torch.cuda.is_available()
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        info["gpu"] = torch.cuda.get_device_name(0)
        info["gpu_memory_gib"] = round(p.total_memory / 2**30, 1)
        info["gpu_capability"] = f"{p.major}.{p.minor}"
        info["gpu_multiprocessors"] = p.multi_processor_count
        info["cudnn"] = torch.backends.cudnn.version()
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            q = subprocess.run(
                ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=20,
            )
            info["driver"] = q.stdout.strip() or None
    else:
        info["gpu"] = None
    for module in ("distributed", "cf_xarray", "netCDF4", "pooch"):
        try:
            info[module] = str(__import__(module).__version__)
        except ImportError:
            info[module] = None
    return info


def summarise_junit(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Counts, failures and the CUDA-only tests of a pytest ``--junitxml`` report."""
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    seconds = 0.0
    failed: list[str] = []
    cuda: dict[str, int] = {"passed": 0, "failed": 0, "skipped": 0}
    for s in suites:
        for k in counts:
            counts[k] += int(s.get(k, 0))
        seconds = max(seconds, float(s.get("time", 0.0)))
        for case in s.iter("testcase"):
            name = f"{case.get('classname', '')}::{case.get('name', '')}"
            bad = case.find("failure") is not None or case.find("error") is not None
            skip = case.find("skipped") is not None
            if bad:
                failed.append(name)
            if "gpu" in name.lower() or "cuda" in name.lower():
                cuda["failed" if bad else "skipped" if skip else "passed"] += 1
    passed = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    return {
        **counts,
        "passed": passed,
        "seconds": round(seconds, 1),
        "failed_tests": failed[:100],
        "cuda_named_tests": cuda,
    }


def read_steps(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The shell script's step lines: ``name<TAB>status<TAB>seconds<TAB>note``."""
    rows = []
    for line in Path(path).read_text().splitlines():
        parts = line.split("\t")
        if len(parts) >= 3:
            rows.append(
                {
                    "step": parts[0],
                    "status": parts[1],
                    "seconds": float(parts[2]) if parts[2] else None,
                    "note": parts[3] if len(parts) > 3 else "",
                }
            )
    return rows


def _kill_group(proc: subprocess.Popen[Any]) -> None:
    """Stop ``proc``'s process group (the child and whatever it started) and reap it."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


class _Stopped(Exception):
    """SIGTERM or SIGINT reached the driver (the shell script's time limit)."""


def _stop(signum: int, frame: Any) -> None:
    raise _Stopped(signal.Signals(signum).name)


def run_section(name: str, args: argparse.Namespace, limit: float) -> dict[str, Any]:
    """Run one section in a child process, stopped after ``limit`` seconds."""
    entry: dict[str, Any] = {"limit_s": round(limit, 1)}
    if limit < 5:
        return {**entry, "status": "skipped", "error": "no time left in the budget"}
    with tempfile.TemporaryDirectory(prefix=f"xsr-dc-{name}-") as tmp:
        part = Path(tmp) / "part.json"
        logfile = Path(tmp) / "child.log"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", name, "--partial"]
        cmd += [str(part), "--child-limit", str(limit)]
        cmd += ["--cpu"] * args.cpu + ["--quick"] * args.quick
        t0 = time.perf_counter()
        # a process group of its own, so that stopping it also stops what it started (dask
        # workers, compiler processes); output to a file, which no leftover process can hold
        # open the way it would a pipe
        with open(logfile, "w") as sink:
            proc = subprocess.Popen(
                cmd, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
            )
            try:
                rc = proc.wait(timeout=limit)
                entry["status"] = "ok" if rc == 0 else f"failed ({rc})"
            except subprocess.TimeoutExpired:
                entry["status"] = "timed_out"
            finally:
                _kill_group(proc)
        output = logfile.read_text(errors="replace")
        entry["seconds"] = round(time.perf_counter() - t0, 1)
        if entry["status"] == "timed_out":
            entry["error"] = f"stopped after {limit:.0f} s; last output: {output[-1500:]}"
        elif entry["status"] != "ok":
            entry["error"] = output[-3000:]
        log(output.rstrip())
        if part.exists():
            entry["result"] = json.loads(part.read_text())
    missing = [k for k in KEYS[name] if k not in entry.get("result", {})]
    if missing:
        entry["missing_keys"] = missing
    return entry


def child(name: str, args: argparse.Namespace) -> int:
    import torch

    device = "cpu" if args.cpu else "cuda"
    cfg = (QUICK if args.quick else FULL)[name]
    rec = Recorder(args.partial)
    rec["config"] = cfg
    rec["device"] = device
    if not args.cpu:
        torch.zeros(1, device=device)  # the CUDA context, outside the timings
    if name == "dip_ensemble":
        deadline = time.time() + args.child_limit - 5 if args.child_limit else None
        dip_ensemble(cfg, device, rec, deadline=deadline)
    else:
        FUNCTIONS[name](cfg, device, rec)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cpu", action="store_true", help="run on the CPU (no GPU needed)")
    p.add_argument("--quick", action="store_true", help="small sizes (a smoke test)")
    p.add_argument("--sections", nargs="+", default=list(SECTIONS), choices=SECTIONS)
    p.add_argument("--budget", type=float, default=420.0, help="seconds for all sections")
    p.add_argument("--out", default=None, help="write the JSON here too")
    p.add_argument("--junit", default=None, help="pytest --junitxml report to summarise")
    p.add_argument("--steps", default=None, help="device_check.sh's step lines")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--partial", default=None, help=argparse.SUPPRESS)
    p.add_argument("--child-limit", type=float, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return child(args.child, args)

    t_start = time.time()
    import torch

    if not args.cpu and not torch.cuda.is_available():
        log("torch sees no CUDA GPU: pass --cpu (with --quick for a smoke test)")
        return 2
    device = "cpu" if args.cpu else "cuda"
    result: dict[str, Any] = {
        "device_check": {
            "argv": sys.argv[1:],
            "mode": ("quick" if args.quick else "full") + (" cpu" if args.cpu else ""),
            "budget_s": args.budget,
            "data": "synthetic fields only (see benchmarks/device_check.py)",
        },
        "machine": describe_machine(device),
    }
    if args.steps and Path(args.steps).exists():
        result["steps"] = read_steps(args.steps)
    if args.junit:
        try:
            result["tests"] = summarise_junit(args.junit)
        except (OSError, ET.ParseError) as e:
            result["tests"] = {"error": f"no readable pytest report {args.junit}: {e}"}
    out = Path(args.out) if args.out else None

    def save() -> None:
        if out is not None:
            out.write_text(json.dumps(result, indent=1, default=str) + "\n")

    result["sections"] = {}
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    for name in args.sections:
        left = args.budget - (time.time() - t_start)
        limit = min(LIMITS[name], left) if not args.quick else min(120.0, left)
        log(f"== {name} (limit {limit:.0f} s)")
        try:
            result["sections"][name] = run_section(name, args, limit)
        except _Stopped as e:
            result["sections"][name] = {"status": "stopped", "error": f"driver got {e}"}
            save()
            break
        except Exception:
            result["sections"][name] = {"status": "failed", "error": traceback.format_exc()}
        save()
    result["device_check"]["seconds"] = round(time.time() - t_start, 1)
    result["device_check"]["sections_ok"] = sorted(
        k for k, v in result["sections"].items() if v.get("status") == "ok"
    )
    save()
    json.dump(result, sys.stdout, indent=1, default=str)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
