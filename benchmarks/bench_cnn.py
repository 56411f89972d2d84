"""Supervised CNNs with and without the enforcement layer (issue 5); JSON on stdout.

Three parts, all on the files of ``../shared/data`` (``XSR_TEST_DATA`` overrides the folder):

* ``qg``: ``ssh_qg_256_train.nc`` (6 snapshots of 256 x 256, doubly periodic).  For each
  factor and each network (SRCNN, EDSR, RDN by default), :func:`xsr.training.train` on
  snapshots 0-4 with ``val_fraction`` such that exactly snapshot 4 is held out for early
  stopping (checked: the normalisation is that of snapshots 0-3 and the best validation loss
  is reproduced on snapshot 4), twice with the same seed and budget: with the enforcement
  layer (``conserve="additive"``) and without (``conserve=None``).  The never-seen snapshot
  5 is block-averaged with :func:`xsr.coarsen` and super-resolved; scores against the truth:
  RMSE (m, cm), PSNR and SSIM (:mod:`xsr.metrics`), for the enforced network, the
  unenforced one, and the unenforced one followed by :func:`xsr.conserve.enforce`
  (additive, post hoc); baselines: bicubic with and without additive enforcement
  (``xsr.downscale(..., periodic=True)``).  Conservation error:
  :func:`xsr.conserve.conservation_error` (float64, relative to ``max |coarse|``).  The
  per-epoch training and validation losses go into the JSON and into a figure.
* ``precip``: ``precip_radolan_1km_201408102050.nc`` (one 900 x 900 field, 22 % NaN),
  factor 4, ``conserve="multiplicative"`` (and ``"bounded"`` with ``bounds=(0, None)``):
  trained on rows 0-599 (``val_fraction=0``, early stopping on the training loss),
  evaluated on rows 600-899 coarsened by 4; the fine validity mask of the truth is passed to
  ``predict`` and to the bicubic baseline (multiplicative), so the coarse means are conserved
  over the valid cells, as :func:`xsr.coarsen` computed them.
* ``speed``: inference throughput (output megapixels per second) of the networks' forward
  pass (enforcement layer included, float32, no gradients) on a batch of coarse fields,
  with all CPU threads; warm-up, then the best of ``--repeat`` runs; also on CUDA when
  ``torch.cuda.is_available()``.

Training runs with ``torch.set_num_threads(--train-threads)`` (default 1).  One training
budget (epochs, steps per epoch, crop, batch size, learning rate, patience, default network
sizes) is used for every network and both variants.

Usage::

    python benchmarks/bench_cnn.py --out benchmarks/results/cnn_cpu.json
    python benchmarks/bench_cnn.py --quick  # smoke run, < 2 min
"""

from __future__ import annotations

import argparse
import json
import math
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
QG = "ssh_qg_256_train.nc"
RADOLAN = "precip_radolan_1km_201408102050.nc"
FIGURE = REPO / "docs" / "_static" / "cnn_validation_curves.png"

# Chosen from a timing probe on this 2-core machine (1 thread, crop 64, batch 8, default
# sizes; 2026-11-22 22:22 UTC), in ms per optimisation step, enforced / unenforced:
# x4: srcnn 278/275, edsr 113/112, rdn 178/146; x8: srcnn 278/267, edsr 100/96, rdn 112/109.
# About 2.1 s for one step of each of the 12 QG runs, so 500 steps each is ~17 min of
# training in all (without early stopping), inside the ~40 min budget on a shared machine.
FULL_BUDGET: dict[str, Any] = {
    "epochs": 20,
    "steps_per_epoch": 25,
    "crop": 64,
    "batch_size": 8,
    "lr": 1e-3,
    "patience": 5,
    "seed": 0,
    "model_options": None,
}
QUICK_BUDGET: dict[str, Any] = {**FULL_BUDGET, "epochs": 2, "steps_per_epoch": 3, "crop": 32}
BUDGET_NOTE = (
    "one budget for every network, variant and factor (default network sizes), chosen from a "
    "timing probe before the run (1 thread, crop 64, batch 8; ms/step enforced/unenforced: "
    "x4 srcnn 278/275, edsr 113/112, rdn 178/146; x8 srcnn 278/267, edsr 100/96, "
    "rdn 112/109): 500 steps per run keeps the 12 QG trainings near 17 min; not tuned per "
    "network"
)


def log(*a: Any) -> None:
    print(*a, file=sys.stderr, flush=True)


def scores(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    from xsr import metrics

    r = metrics.rmse(pred, truth)
    return {
        "rmse": r,
        "rmse_cm": 100.0 * r,
        "psnr_db": metrics.psnr(pred, truth),
        "ssim": metrics.ssim(pred, truth),
    }


def cons_error(pred: np.ndarray, coarse: np.ndarray, f: int, mask: Any = None) -> float:
    from xsr.conserve import conservation_error

    return conservation_error(
        np.asarray(pred, np.float64), np.asarray(coarse, np.float64), f, mask=mask
    )


def layer_output(tm: Any, coarse: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """The network's own float32 output (enforcement layer included, fine validity ``mask``),
    de-normalised, without the float64 re-enforcement of :meth:`TrainedModel.predict`."""
    import torch

    x = np.nan_to_num((coarse - tm.mean) / tm.std).astype(np.float32)
    kw = (
        {}
        if mask is None
        else {
            "mask": torch.from_numpy(
                np.broadcast_to(mask, (x.shape[0], 1, *mask.shape[-2:])).copy()
            )
        }
    )
    with torch.no_grad():
        y = tm.model(torch.from_numpy(x[:, None]), **kw)[:, 0].double().numpy()
    return y * tm.std + tm.mean


def holdout_check(tm: Any, hr: xr.DataArray, n_val_expected: int, f: int) -> dict[str, Any]:
    """Check that training used snapshots 0..n-2 and validation exactly the last one."""
    import xsr

    n = int(hr.sizes["time"])
    train_vals = hr.isel(time=slice(0, n - n_val_expected)).values
    exp_mean = float(np.mean(train_vals)) if tm.conserve != "multiplicative" else 0.0
    exp_std = float(np.std(train_vals))
    val = hr.isel(time=slice(n - n_val_expected, n))
    coarse = xsr.coarsen(val, factor=f)
    pred = np.asarray(tm.predict(coarse.values), np.float64)
    mse_norm = float(np.mean(((pred - val.values) / tm.std) ** 2))
    best_val = min(v for v in tm.history["val"] if v is not None)
    return {
        "n_time_given": n,
        "n_val_expected": n_val_expected,
        "normalisation_mean": tm.mean,
        "mean_of_training_snapshots": exp_mean,
        "mean_matches": bool(abs(tm.mean - exp_mean) <= 1e-9 * max(1.0, abs(exp_mean))),
        "normalisation_std": tm.std,
        "std_of_training_snapshots": exp_std,
        "std_matches": bool(abs(tm.std - exp_std) <= 1e-9 * exp_std),
        "best_val_loss_history": best_val,
        "mse_on_last_snapshot_normalised": mse_norm,
        "val_matches": bool(abs(mse_norm - best_val) <= 1e-3 * best_val),
    }


def train_one(hr: xr.DataArray, name: str, f: int, conserve: Any, budget: dict[str, Any], **kw):
    from xsr.training import train

    opts = {k: v for k, v in budget.items() if k != "model_options"}
    t0 = time.perf_counter()
    tm = train(
        hr,
        model=name,
        factor=f,
        conserve=conserve,
        progress=False,
        model_options=budget["model_options"],
        **opts,
        **kw,
    )
    sec = time.perf_counter() - t0
    epochs_run = len(tm.history["train"])
    val = tm.history["val"]
    score = [v if v is not None else t for v, t in zip(val, tm.history["train"])]
    info = {
        "train_seconds": sec,
        "epochs_run": epochs_run,
        "steps_run": epochs_run * budget["steps_per_epoch"],
        "best_epoch": int(np.argmin(score)) + 1,
        "seconds_per_step": sec / max(1, epochs_run * budget["steps_per_epoch"]),
        "n_parameters": sum(p.numel() for p in tm.model.parameters()),
        "history": {k: list(v) for k, v in tm.history.items()},
    }
    return tm, info


# --------------------------------------------------------------------------------------------
# QG SSH
# --------------------------------------------------------------------------------------------
def qg(args: argparse.Namespace, budget: dict[str, Any]) -> dict[str, Any]:
    import xsr
    from xsr.conserve import enforce

    ds = xr.open_dataset(SHARED / QG).load()
    ssh = ds["ssh"].astype(np.float64)
    n_time = int(ssh.sizes["time"])
    if n_time != 6:
        raise RuntimeError(f"{QG} has {n_time} snapshots, expected 6")
    hr = ssh.isel(time=slice(0, 5))  # 0-3 train, 4 validation
    # train() holds out min(n-1, max(1, round(val_fraction * n))) leading indices at the end
    val_fraction = 0.2
    n_val = min(4, max(1, round(val_fraction * 5)))
    if n_val != 1:
        raise RuntimeError(f"val_fraction={val_fraction} would hold out {n_val} snapshots")
    test = ssh.isel(time=[5])
    truth = test.values
    rows: list[dict[str, Any]] = []
    curves: dict[str, Any] = {}
    for f in args.factors:
        coarse = xsr.coarsen(test, factor=f)
        c = coarse.values
        common = {"factor": f, "coarse_grid": f"{c.shape[-2]} x {c.shape[-1]}"}
        for label, cons in (("bicubic_conservative", "additive"), ("bicubic", None)):
            out = xsr.downscale(coarse, factor=f, method="bicubic", conserve=cons, periodic=True)
            p = out.transpose(*test.dims).values
            row = {**common, "network": label, "variant": "baseline", **scores(p, truth)}
            row["conservation_error"] = cons_error(p, c, f)
            rows.append(row)
            log(f"qg x{f} {label}: rmse {row['rmse_cm']:.4f} cm, ssim {row['ssim']:.4f}")
        curves[str(f)] = {}
        for name in args.networks:
            curves[str(f)][name] = {}
            preds: dict[str, np.ndarray] = {}
            for variant, cons in (("enforced", "additive"), ("unenforced", None)):
                log(f"qg x{f} {name} {variant}: training ...")
                tm, info = train_one(hr, name, f, cons, budget, val_fraction=val_fraction)
                check = holdout_check(tm, hr, n_val, f)
                p = np.asarray(tm.predict(c), np.float64)
                preds[variant] = p
                row = {**common, "network": name, "variant": variant, **scores(p, truth)}
                row["conservation_error"] = cons_error(p, c, f)
                if cons is not None:
                    row["conservation_error_float32_layer"] = cons_error(layer_output(tm, c), c, f)
                row["finite"] = bool(np.isfinite(p).all())
                row.update({k: v for k, v in info.items() if k != "history"})
                row["holdout_check"] = check
                rows.append(row)
                curves[str(f)][name][variant] = info["history"]
                log(
                    f"  {variant}: rmse {row['rmse_cm']:.4f} cm, ssim {row['ssim']:.4f}, "
                    f"cons {row['conservation_error']:.2e}, {info['epochs_run']} epochs, "
                    f"{info['train_seconds']:.0f} s, holdout ok "
                    f"{check['mean_matches'] and check['std_matches'] and check['val_matches']}"
                )
            p = enforce(preds["unenforced"], c, f, "additive")
            row = {**common, "network": name, "variant": "unenforced+posthoc", **scores(p, truth)}
            row["conservation_error"] = cons_error(p, c, f)
            rows.append(row)
            log(f"  unenforced+posthoc: rmse {row['rmse_cm']:.4f} cm, ssim {row['ssim']:.4f}")
    return {
        "data": f"{QG}: train snapshots 0-3, validation snapshot 4, test snapshot 5",
        "val_fraction": val_fraction,
        "rows": rows,
        "curves": curves,
    }


# --------------------------------------------------------------------------------------------
# RADOLAN precipitation
# --------------------------------------------------------------------------------------------
def precip(args: argparse.Namespace, budget: dict[str, Any]) -> dict[str, Any]:
    import xsr

    f = 4
    p = xr.open_dataset(SHARED / RADOLAN)["precipitation_amount"].astype(np.float64).load()
    ny = int(p.sizes["y"])
    split = (ny * 2) // 3
    top, bottom = p.isel(y=slice(0, split)), p.isel(y=slice(split, ny))
    coarse = xsr.coarsen(bottom, factor=f)
    c = coarse.values
    truth = bottom.values
    mask = np.isfinite(truth)
    rows: list[dict[str, Any]] = []

    def describe(pred: np.ndarray) -> dict[str, Any]:
        from xsr import metrics

        return {
            "rmse_kg_m2": metrics.rmse(pred, truth),
            "ssim": metrics.ssim(pred, truth),
            "min": float(np.nanmin(pred)),
            "n_negative": int(np.sum(pred < 0)),
            "nan_fraction": float(np.mean(np.isnan(pred))),
            "conservation_error": cons_error(pred, c, f, mask=mask),
        }

    out = xsr.downscale(coarse, factor=f, method="bicubic", conserve="multiplicative", mask=mask)
    base = describe(out.transpose(*bottom.dims).values)
    rows.append({"network": "bicubic", "conserve": "multiplicative", **base})
    log(f"precip bicubic multiplicative: rmse {base['rmse_kg_m2']:.4f}")
    modes: list[tuple[str, Any]] = [("multiplicative", None)]
    if not args.no_bounded:
        modes.append(("bounded", (0.0, None)))
    for name in args.precip_networks:
        for mode, bounds in modes:
            log(f"precip x{f} {name} {mode}: training ...")
            tm, info = train_one(top, name, f, mode, budget, val_fraction=0.0, bounds=bounds)
            pred = np.asarray(tm.predict(c, mask=mask), np.float64)
            row = {"network": name, "conserve": mode, "bounds": bounds, **describe(pred)}
            row["conservation_error_float32_layer"] = cons_error(
                layer_output(tm, c[None], mask)[0], c, f, mask=mask
            )
            row["rmse_vs_bicubic"] = row["rmse_kg_m2"] / base["rmse_kg_m2"]
            row.update(info)
            rows.append(row)
            log(
                f"  rmse {row['rmse_kg_m2']:.4f} (bicubic {base['rmse_kg_m2']:.4f}), min "
                f"{row['min']:.3g}, negatives {row['n_negative']}, cons "
                f"{row['conservation_error']:.2e}, {info['train_seconds']:.0f} s"
            )
    return {
        "data": (
            f"{RADOLAN}: train rows 0-{split - 1} (y < {float(p.y[split]) / 1e3:.0f} km), "
            f"test rows {split}-{ny - 1} coarsened by {f}"
        ),
        "factor": f,
        "units": p.attrs.get("units"),
        "test_nan_fraction": float(1.0 - mask.mean()),
        "rows": rows,
    }


# --------------------------------------------------------------------------------------------
# inference throughput
# --------------------------------------------------------------------------------------------
def speed(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from xsr.nn.sr import build_sr_model

    def timed(net: torch.nn.Module, x: torch.Tensor, device: str) -> float:
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.no_grad():
            net(x)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    def bench(device: str) -> list[dict[str, Any]]:
        out = []
        for f in args.factors:
            for name in args.networks:
                torch.manual_seed(0)
                net = build_sr_model(name, factor=f, conserve="additive").to(device).eval()
                n, s = args.speed_fields, args.speed_size
                x = torch.randn(n, 1, s, s, device=device)

                timed(net, x, device)  # warm-up
                runs = [timed(net, x, device) for _ in range(args.repeat)]
                mpix = n * (s * f) ** 2 / 1e6
                row = {
                    "network": name,
                    "factor": f,
                    "fields": n,
                    "coarse": f"{s} x {s}",
                    "fine": f"{s * f} x {s * f}",
                    "output_megapixels": mpix,
                    "runs_s": runs,
                    "best_s": min(runs),
                    "megapixels_per_s": mpix / min(runs),
                }
                out.append(row)
                log(f"speed {device} x{f} {name}: {row['megapixels_per_s']:.3f} MP/s")
        return out

    threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    torch.set_num_threads(int(threads or 1))
    res: dict[str, Any] = {
        "what": "network forward pass incl. the additive enforcement layer, float32, no_grad, "
        "untrained default-size networks; warm-up then best of repeat",
        "repeat": args.repeat,
        "cpu_threads": torch.get_num_threads(),
        "load_average_before": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "cpu": bench("cpu"),
    }
    if torch.cuda.is_available():
        res["gpu"] = bench("cuda")
        res["gpu_name"] = torch.cuda.get_device_name(0)
    else:
        res["gpu"] = None
        res["gpu_note"] = "no GPU was available in this session (torch.cuda.is_available() False)"
    torch.set_num_threads(args.train_threads)
    return res


# --------------------------------------------------------------------------------------------
# figure and targets
# --------------------------------------------------------------------------------------------
def figure(curves: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    factors = list(curves)
    fig, axes = plt.subplots(1, len(factors), figsize=(4.2 * len(factors), 3.3), squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, f in zip(axes[0], factors):
        for i, (name, variants) in enumerate(curves[f].items()):
            for variant, style in (("enforced", "-"), ("unenforced", "--")):
                h = variants.get(variant)
                if not h:
                    continue
                val = [v for v in h["val"] if v is not None]
                ax.plot(
                    range(1, len(val) + 1),
                    val,
                    style,
                    color=colours[i % len(colours)],
                    label=f"{name} ({variant})",
                )
        ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_title(f"QG SSH, factor {f}: validation (snapshot 4)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("validation MSE (normalised)")
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def targets(result: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    rows = result.get("qg", {}).get("rows", [])
    cons = [
        (f"qg x{r['factor']} {r['network']} {r['variant']}", r["conservation_error"])
        for r in rows
        if r["variant"] in ("enforced", "unenforced+posthoc")
    ]
    cons += [
        (f"precip {r['network']} {r['conserve']}", r["conservation_error"])
        for r in result.get("precip", {}).get("rows", [])
        if r["network"] != "bicubic"
    ]
    if cons:
        worst = max(cons, key=lambda t: t[1] if math.isfinite(t[1]) else math.inf)
        out["exact_conservation"] = {
            "target": "every enforced prediction conserves to <= 1e-12 relative (float64)",
            "max_error": worst[1],
            "worst_case": worst[0],
            "errors": dict(cons),
            "met": bool(all(math.isfinite(e) and e <= 1e-12 for _, e in cons)),
        }
    cells = []
    for f in sorted({r["factor"] for r in rows}):
        for name in dict.fromkeys(r["network"] for r in rows if r["variant"] != "baseline"):
            by = {r["variant"]: r for r in rows if r["factor"] == f and r["network"] == name}
            if "enforced" in by and "unenforced" in by:
                e, u = by["enforced"]["rmse_cm"], by["unenforced"]["rmse_cm"]
                cells.append(
                    {"factor": f, "network": name, "enforced": e, "unenforced": u, "better": e < u}
                )
    if cells:
        wins = sum(c["better"] for c in cells)
        out["enforced_beats_unenforced"] = {
            "target": "enforced RMSE < unenforced RMSE in most (network, factor) cells",
            "wins": wins,
            "cells": len(cells),
            "detail": cells,
            "met": bool(wins > len(cells) / 2),
        }
    beats = {}
    for f in sorted({r["factor"] for r in rows}):
        base = next(
            r["rmse_cm"]
            for r in rows
            if r["factor"] == f and r["network"] == "bicubic_conservative"
        )
        enf = [r for r in rows if r["factor"] == f and r["variant"] == "enforced"]
        if not enf:
            continue
        best = min(enf, key=lambda r: r["rmse_cm"])
        anyv = min(
            (r for r in rows if r["factor"] == f and r["variant"] != "baseline"),
            key=lambda r: r["rmse_cm"],
        )
        beats[str(f)] = {
            "bicubic_conservative_rmse_cm": base,
            "best_enforced_network": best["network"],
            "best_enforced_rmse_cm": best["rmse_cm"],
            "best_any_variant": f"{anyv['network']} {anyv['variant']}",
            "best_any_variant_rmse_cm": anyv["rmse_cm"],
            "met": bool(best["rmse_cm"] < base),
        }
    if beats:
        out["best_network_beats_conservative_bicubic"] = {
            "target": "the best enforced network has a lower RMSE than conservative bicubic "
            "on QG snapshot 5, at every factor",
            "per_factor": beats,
            "met": bool(all(b["met"] for b in beats.values())),
        }
    return out


def preload() -> dict[str, Any]:
    """Import every xsr module the benchmark uses now (one consistent version of the source
    for the whole run) and describe the checkout."""
    import contextlib
    import importlib
    import subprocess

    for mod in ("xsr", "xsr.api", "xsr.conserve", "xsr.metrics", "xsr.training", "xsr.nn.sr"):
        importlib.import_module(mod)
    for mod in ("xsr.methods.base", "xsr.methods.cnn", "xsr.models"):
        with contextlib.suppress(ImportError):
            importlib.import_module(mod)

    def git(*a: str) -> str:
        r = subprocess.run(["git", *a], cwd=REPO, capture_output=True, text=True, check=False)
        return r.stdout.strip()

    return {"head": git("rev-parse", "HEAD"), "status": git("status", "--short").splitlines()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny budget for a smoke run")
    p.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    p.add_argument("--networks", nargs="+", default=["srcnn", "edsr", "rdn"])
    p.add_argument("--factors", nargs="+", type=int, default=[4, 8])
    p.add_argument("--precip-networks", nargs="+", default=["edsr"])
    p.add_argument("--no-bounded", action="store_true", help="precip: multiplicative only")
    p.add_argument("--only", nargs="+", choices=["qg", "precip", "speed"], default=None)
    p.add_argument("--train-threads", type=int, default=1)
    p.add_argument("--speed-fields", type=int, default=8)
    p.add_argument("--speed-size", type=int, default=64, help="coarse side of the speed test")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--figure", type=Path, default=None, help=f"default {FIGURE} (full run)")
    p.add_argument(
        "--skip",
        action="store_true",
        help="variant: every network with skip=True (learns a correction to bicubic)",
    )
    args = p.parse_args(argv)
    parts = args.only or ["qg", "precip", "speed"]
    budget = dict(QUICK_BUDGET if args.quick else FULL_BUDGET)
    if args.skip:
        budget["model_options"] = {"skip": True}
    if args.quick:
        args.speed_fields, args.speed_size, args.repeat = 2, 16, 1
    fig_path = args.figure
    if fig_path is None:
        fig_path = Path("/tmp/cnn_validation_curves_quick.png") if args.quick else FIGURE

    import torch

    torch.set_num_threads(args.train_threads)
    t_start = time.perf_counter()
    result: dict[str, Any] = {"machine": machine_info("cpu"), "argv": sys.argv[1:]}
    result["git"] = preload()
    result["config"] = {
        **{k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "data_dir": str(SHARED),
        "training_threads": torch.get_num_threads(),
        "budget": budget,
        "budget_note": BUDGET_NOTE if not args.quick else "--quick: smoke-test budget",
    }
    if "qg" in parts:
        result["qg"] = qg(args, budget)
        figure(result["qg"]["curves"], fig_path)
        result["figure"] = {"path": str(fig_path), "bytes": fig_path.stat().st_size}
    if "precip" in parts:
        result["precip"] = precip(args, budget)
    if "speed" in parts:
        result["speed"] = speed(args)
    result["targets"] = targets(result)
    result["total_seconds"] = time.perf_counter() - t_start
    result["load_average_at_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    text = json.dumps(result, indent=1, default=str)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
