"""Guided supervised networks on real data: daily max temperature with terrain height (issue 11);
JSON on stdout.

Data (``../shared/data``; ``XSR_TEST_DATA`` overrides the folder):

* ``tasmax_gridmet_24thdeg_20190121.nc``: ``air_temperature`` (K), gridMET daily maximum of
  2019-01-21 on the 1/24 degree grid, cropped to the extent of the elevation file
  (36.0-43.0 N, 110-102 W: 168 x 192 cells) and to its first (northern) 160 rows, a multiple
  of 16, so that the same domain serves every factor;
* ``elevation_colorado_1arcmin.nc``: terrain height ``z`` (m, named ``elevation`` here) on a
  1-arcmin grid: the guide.  It is not on the gridMET grid (2.5 of its cells per gridMET cell):
  :mod:`xsr.guides` interpolates it (bilinear) onto the output grid, in training
  (``xsr.train(guides=)``) as at inference (``downscale(guide=)``).

One day is one field, so training and testing are two regions of it: :func:`xsr.train` on the
northern 60 % (rows 0-95, about 39.0-43.0 N), test on the remaining 40 % (rows 96-159), which
is block-averaged with :func:`xsr.coarsen` by the factor and downscaled back with each model.
The northern part is cut into three blocks of 64 columns, stacked along a leading ``block``
dimension (sharing the first block's coordinates; their cell areas are the same), so that
``train``'s split along the leading dimension holds the eastern block out for early stopping
(``val_fraction=1/3``) and trains on the other two; each block's guide is brought onto its
own grid by :func:`xsr.guides.prepare_guides` (the interpolation of ``downscale(guide=)``)
and given as a guide along ``block``.  Scores against the truth on the test region: RMSE (K,
uniform weights: the cells of the crop differ in area by less than 10 %), its ratio to
conservative bicubic (``method="bicubic"``, additive enforcement), and the conservation error
(:func:`xsr.conserve.conservation_error`, float64, with the cell areas that
:func:`xsr.coarsen` and the enforcement weigh with).  For each factor and network, the same
budget and seed for three variants:

* ``none``: no guide;
* ``elevation``: the guide;
* ``shuffled``: the elevation values permuted at random over the 1-arcmin grid (seed 0), in
  training and at test: a guide with the same values and no information (control).

Reference without a network (``lapse``): conservative bicubic plus ``a`` times the guide's
departure from its coarse-cell mean, with ``a`` (a lapse rate, K/m) fitted by least squares on
the training region: the departures have zero block means, so the result conserves exactly.

Training: ``model_options={"skip": True}`` (the networks learn a correction to bicubic, as
the students of :func:`xsr.distill`), default network sizes, crops of 64 fine cells, batch 8,
Adam 1e-3, at most ``--epochs`` x ``--steps-per-epoch`` steps with early stopping on the held-out
block (patience 3 epochs), ``augment=True`` (flips and rotations of the crops: the networks
learn a correction to bicubic, whose statistics are closer to isotropic than the field's;
measured better than without, with and without the guide, in a probe before this run),
``torch.set_num_threads(--threads)``.

Usage::

    python benchmarks/bench_cnn_guided.py --out benchmarks/results/cnn_guided_cpu.json
    python benchmarks/bench_cnn_guided.py --quick  # smoke run (x8, EDSR, a few steps)
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

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("XSR_TEST_DATA", REPO.parent / "shared" / "data"))
TASMAX = "tasmax_gridmet_24thdeg_20190121.nc"
ELEVATION = "elevation_colorado_1arcmin.nc"
ROWS, TRAIN_ROWS = 160, 96
NBLOCKS = 3  # the northern part in blocks of 64 columns: two to train on, one to stop early


def load() -> tuple[xr.DataArray, xr.DataArray]:
    """(temperature on the crop, elevation guide on its own grid)."""
    e = xr.open_dataset(SHARED / ELEVATION)
    elev = e["z"].rename("elevation").load()
    elev.attrs = {"units": "m", "long_name": "terrain height"}
    t = xr.open_dataset(SHARED / TASMAX)
    ey, ex = elev["y"].values, elev["x"].values
    da = t["air_temperature"].sel(
        lat=slice(float(ey.max()), float(ey.min())), lon=slice(float(ex.min()), float(ex.max()))
    )
    da = da.isel(lat=slice(0, ROWS)).drop_vars(["crs", "day"], errors="ignore").load()
    da.attrs = {"units": "K", "standard_name": "air_temperature"}
    assert da.shape == (ROWS, 192) and bool(np.isfinite(da.values).all())
    return da, elev


def _split(north: xr.DataArray) -> list[xr.DataArray]:
    w = north.sizes["lon"] // NBLOCKS
    return [north.isel(lon=slice(i * w, (i + 1) * w)) for i in range(NBLOCKS)]


def blocks(north: xr.DataArray) -> xr.DataArray:
    """The northern part as ``(block, lat, lon)``, on the first block's coordinates."""
    parts = _split(north)
    lon0 = parts[0]["lon"]
    return xr.concat([p.assign_coords(lon=lon0) for p in parts], dim="block")


def block_guides(north: xr.DataArray, guide: xr.DataArray, f: int) -> xr.DataArray:
    """The guide on each block's own grid (by :func:`xsr.guides.prepare_guides`, as
    ``downscale(guide=)`` brings it onto an output grid), along ``block``."""
    import xsr
    from xsr.cfgrid import describe
    from xsr.guides import prepare_guides

    parts = _split(north)
    out = []
    for p in parts:
        c = xsr.coarsen(p, factor=f)
        prep = prepare_guides(guide, c, describe(c, "lat", "lon"), f)
        out.append(np.asarray(prep.variable.values)[0])  # static: (1, ny, nx)
    coords = {"lat": north["lat"], "lon": parts[0]["lon"]}
    return xr.DataArray(
        np.stack(out), dims=("block", "lat", "lon"), coords=coords, name=guide.name,
        attrs=guide.attrs,
    )  # fmt: skip


def shuffled(elev: xr.DataArray, seed: int = 0) -> xr.DataArray:
    rng = np.random.default_rng(seed)
    vals = elev.values.ravel()[rng.permutation(elev.size)].reshape(elev.shape)
    return elev.copy(data=vals)


def rmse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(a) - np.asarray(b)) ** 2)))


def lapse_baseline(
    north: xr.DataArray, south: xr.DataArray, elev: xr.DataArray, f: int
) -> dict[str, Any]:
    """Conservative bicubic + a * (guide - its block mean), a fitted on the training region."""
    import xsr
    from xsr.api import cell_areas

    def parts(da: xr.DataArray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        coarse = xsr.coarsen(da, factor=f)
        bic = coarse.sr.downscale(factor=f, method="bicubic").values
        g = elev.interp(y=da["lat"], x=da["lon"]).values  # as xsr.guides: bilinear
        w = np.array(np.broadcast_to(cell_areas(da, dims=("lat", "lon")), g.shape))
        ny, nx = g.shape

        def blocks(a: np.ndarray) -> np.ndarray:
            return a.reshape(ny // f, f, nx // f, f).sum(axis=(1, 3))

        bm = blocks(g * w) / blocks(w)  # the area-weighted block mean that is conserved
        dev = g - np.repeat(np.repeat(bm, f, 0), f, 1)
        return coarse.values, bic, dev, w

    _, bic_n, dev_n, _ = parts(north)
    a = float(np.sum((north.values - bic_n) * dev_n) / np.sum(dev_n**2))
    coarse_s, bic_s, dev_s, w_s = parts(south)
    out = bic_s + a * dev_s
    return {
        "lapse_rate_K_per_km": 1000 * a,
        "rmse": rmse(out, south.values),
        "conservation_error": float(xsr.conserve.conservation_error(out, coarse_s, f, weights=w_s)),
    }


def run_factor(
    f: int,
    da: xr.DataArray,
    elev: xr.DataArray,
    models: list[str],
    budget: dict[str, Any],
) -> dict[str, Any]:
    import xsr
    from xsr.api import cell_areas

    north, south = da.isel(lat=slice(0, TRAIN_ROWS)), da.isel(lat=slice(TRAIN_ROWS, ROWS))
    hr = blocks(north)
    coarse = xsr.coarsen(south, factor=f)
    bic = coarse.sr.downscale(factor=f, method="bicubic")
    r_bic = rmse(bic.values, south.values)
    w = cell_areas(south, dims=("lat", "lon"))  # the fine areas the enforcement weighs with
    res: dict[str, Any] = {
        "factor": f,
        "train_cells": list(north.shape),
        "train_blocks": list(hr.shape),
        "test_cells": list(south.shape),
        "coarse_test_cells": list(coarse.shape),
        "rmse_bicubic": r_bic,
        "ssim_bicubic": xsr.metrics.ssim(bic.values, south.values),
        "lapse": lapse_baseline(north, south, elev, f),
        "models": {},
    }
    res["lapse"]["ratio_to_bicubic"] = res["lapse"]["rmse"] / r_bic
    guides = {"none": None, "elevation": elev, "shuffled": shuffled(elev)}
    for name in models:
        out: dict[str, Any] = {}
        for variant, g in guides.items():
            t0 = time.perf_counter()
            tm = xsr.train(
                hr,
                model=name,
                factor=f,
                guides=None if g is None else block_guides(north, g, f),
                val_fraction=1 / NBLOCKS,
                progress=False,
                device="cpu",
                model_options={"skip": True},
                **budget,
            )
            t_train = time.perf_counter() - t0
            t0 = time.perf_counter()
            # through xsr.downscale(method="cnn", guide=...): the guide is interpolated
            # onto the test region's output grid, checked against the model's metadata
            pred = tm.predict(coarse, guide=g)
            t_pred = time.perf_counter() - t0
            r = rmse(pred.values, south.values)
            out[variant] = {
                "rmse": r,
                "ratio_to_bicubic": r / r_bic,
                "ssim": xsr.metrics.ssim(pred.values, south.values),
                "conservation_error": float(
                    xsr.conserve.conservation_error(pred.values, coarse.values, f, weights=w)
                ),
                "train_seconds": t_train,
                "predict_seconds": t_pred,
                "epochs_run": len(tm.history["train"]),
                "val_loss": tm.history["val"],
                "parameters": sum(p.numel() for p in tm.model.parameters()),
                "receptive_radius": tm.receptive_radius,
            }
            print(
                f"x{f} {name} {variant}: rmse {r:.4f} K ({r / r_bic:.3f} x bicubic), "
                f"train {t_train:.0f} s",
                file=sys.stderr,
                flush=True,
            )
        res["models"][name] = out
    return res


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--factors", default="8", help="comma-separated, e.g. 4,8,16")
    p.add_argument("--models", default="edsr,rdn")
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--steps-per-epoch", type=int, default=25)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--quick", action="store_true", help="smoke run: x8, EDSR, 2 x 3 steps")
    p.add_argument("--out", type=Path, help="also write the JSON here")
    a = p.parse_args()
    import torch

    torch.set_num_threads(a.threads)
    factors = [int(v) for v in a.factors.split(",")]
    models = [m.strip() for m in a.models.split(",") if m.strip()]
    budget: dict[str, Any] = {
        "epochs": a.epochs,
        "steps_per_epoch": a.steps_per_epoch,
        "crop": 64,
        "batch_size": 8,
        "lr": 1e-3,
        "patience": 3,
        "seed": 0,
        "augment": True,
    }
    if a.quick:
        factors, models = [8], ["edsr"]
        budget.update(epochs=2, steps_per_epoch=3)
    da, elev = load()
    t0 = time.perf_counter()
    result: dict[str, Any] = {
        "benchmark": "bench_cnn_guided",
        "quick": bool(a.quick),
        "machine": machine_info("cpu"),
        "threads": a.threads,
        "data": {
            "field": f"{TASMAX}: air_temperature (K), rows 0-{ROWS - 1} of the crop to "
            f"{ELEVATION}'s extent; train rows 0-{TRAIN_ROWS - 1} (north) in {NBLOCKS} "
            f"blocks of columns (the last one held out for early stopping), test rows "
            f"{TRAIN_ROWS}-{ROWS - 1}",
            "guide": f"{ELEVATION}: z (m), 1 arcmin, interpolated by xsr.guides",
            "shuffled_guide_seed": 0,
        },
        "budget": {**budget, "model_options": {"skip": True}, "val_fraction": 1 / NBLOCKS},
        "factors": [run_factor(f, da, elev, models, budget) for f in factors],
    }
    result["total_seconds"] = time.perf_counter() - t0
    result["load_after"] = os.getloadavg()
    text = json.dumps(result, indent=2, default=str)
    if a.out is not None:
        a.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
