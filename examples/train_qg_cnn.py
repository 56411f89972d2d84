"""Train a conservative EDSR network on QG sea surface height and use it with ``method="cnn"``.

The data are the six monthly 256 x 256 snapshots of ``ssh_qg_256_train.nc`` (SSH-equivalent
in m of a two-layer quasi-geostrophic simulation, dx = 3.9 km, doubly periodic).  The
example

1. trains EDSR for factor 4 with :func:`xsr.train` on snapshots 0-4: the training pairs are
   made by block-averaging the fine fields with :func:`xsr.coarsen`, ``val_fraction=0.2``
   holds the last of the five (snapshot 4) out for validation and early stopping, and the
   best epoch is checkpointed;
2. block-averages the never-seen snapshot 5 by 4 and downscales it back with
   ``method="cnn"`` (the trained network) and with conservative bicubic
   (``method="bicubic"``, additive enforcement);
3. scores both against the truth (RMSE in cm and SSIM, :mod:`xsr.metrics`) and checks that
   both reproduce the coarse field under block averaging (largest relative conservation
   error, float64);
4. saves the model, applies the saved file by path, writes the coarse snapshot to netCDF and
   prints the equivalent ``xsr downscale ... --method cnn --model FILE`` command.

Data: the file has no public download; it is found through ``XSR_DATA_DIR``
(:func:`xsr.datasets.open_dataset`).  ``--data-dir`` sets it; by default the ``shared/data``
folder beside the checkout is used when it holds the file::

    XSR_DATA_DIR=../shared/data python examples/train_qg_cnn.py --out qg_cnn_out
    python examples/train_qg_cnn.py --quick      # a tiny budget: checks that it all runs

Output in ``--out`` (default ``qg_cnn_out``): ``edsr_qg_x4.pt`` (the model),
``edsr_qg_x4_best.pt`` (the checkpoint written during training), ``qg_t5_coarse.nc``
(the coarse snapshot 5, input of the CLI command), ``qg_t5_x4_cnn.nc`` (its downscaling)
and ``table.md`` (the scores, also printed).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

import xsr
from xsr import metrics

FILE = "ssh_qg_256_train.nc"
FACTOR = 4
#: the default budget: 800 optimisation steps at most (early stopping may end sooner)
BUDGET: dict[str, Any] = {
    "epochs": 20,
    "steps_per_epoch": 40,
    "crop": 64,
    "batch_size": 8,
    "lr": 1e-3,
    "patience": 5,
}
#: --quick: 10 steps on small crops, only to check that everything runs
QUICK: dict[str, Any] = {**BUDGET, "epochs": 2, "steps_per_epoch": 5, "crop": 32}


def find_data(data_dir: Path | None) -> None:
    """Point ``XSR_DATA_DIR`` at the folder that holds the QG file."""
    if data_dir is not None:
        os.environ["XSR_DATA_DIR"] = str(data_dir)
    elif not os.environ.get("XSR_DATA_DIR"):
        beside = Path(__file__).resolve().parents[2] / "shared" / "data"
        if (beside / FILE).is_file():
            os.environ["XSR_DATA_DIR"] = str(beside)


def scores(fine: xr.DataArray, truth: xr.DataArray, coarse: xr.DataArray) -> dict[str, float]:
    """RMSE (cm) and SSIM against the truth, largest relative conservation error."""
    return {
        "rmse_cm": 100.0 * metrics.rmse(fine, truth),
        "ssim": metrics.ssim(fine, truth),
        "conservation": metrics.conservation_error(fine.values, coarse.values, FACTOR),
    }


def run(
    out: Path,
    *,
    quick: bool = False,
    device: str | None = None,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Train, downscale, score; write the model, the netCDF files and the table into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    budget = QUICK if quick else BUDGET

    # ---------------------------------------------------------------- data (float64)
    ds = xsr.datasets.open_dataset(FILE).load()
    ds["ssh"] = ds["ssh"].astype(np.float64)  # the file stores float32
    print(f"{FILE}: {dict(ds.sizes)}, units {ds['ssh'].attrs['units']!r}")

    # ---------------------------------------------------------------- 1. train on 0-4
    hr = ds["ssh"].isel(time=slice(0, 5))  # snapshot 4 is held out by val_fraction=0.2
    t0 = time.perf_counter()
    tm = xsr.train(
        hr,
        model="edsr",
        factor=FACTOR,
        val_fraction=0.2,
        checkpoint=out / "edsr_qg_x4_best.pt",
        seed=seed,
        device=device,
        progress=progress,
        **budget,
    )
    train_s = time.perf_counter() - t0
    val = [v for v in tm.history["val"] if v is not None]
    best = int(np.argmin(val)) + 1 if val else None
    print(
        f"trained {tm!r} in {train_s:.1f} s: {len(tm.history['train'])} epochs, "
        f"best validation loss {min(val):.4g} (normalised units) at epoch {best}"
    )

    # ---------------------------------------------------------------- 2. the unseen snapshot 5
    truth = ds.isel(time=[5])
    coarse = truth.sr.coarsen(factor=FACTOR)  # 64 x 64, the block means of the truth
    t0 = time.perf_counter()
    cnn = coarse.sr.downscale(factor=FACTOR, method="cnn", model=tm)
    cnn_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    bic = coarse.sr.downscale(factor=FACTOR, method="bicubic")
    bic_s = time.perf_counter() - t0

    # ---------------------------------------------------------------- 3. scores
    rows = {
        "conservative bicubic": {**scores(bic["ssh"], truth["ssh"], coarse["ssh"]), "s": bic_s},
        "cnn (EDSR x4)": {**scores(cnn["ssh"], truth["ssh"], coarse["ssh"]), "s": cnn_s},
    }
    xsr.testing.assert_conserves(cnn, coarse, FACTOR)  # coarsen(cnn) == coarse, <= 1e-12

    # ---------------------------------------------------------------- 4. save, reuse, CLI
    model_path = tm.save(out / "edsr_qg_x4.pt")
    again = coarse.sr.downscale(factor=FACTOR, method="cnn", model=str(model_path))
    same = float(np.abs(again["ssh"].values - cnn["ssh"].values).max())
    coarse.to_netcdf(out / "qg_t5_coarse.nc")
    cnn.to_netcdf(out / "qg_t5_x4_cnn.nc")

    lines = [
        f"EDSR x{FACTOR} trained on QG snapshots 0-3 (4 held out), scored on snapshot 5",
        "",
        "| method | RMSE (cm) | SSIM | max rel. conservation error | time (s) |",
        "|:---|---:|---:|---:|---:|",
    ]
    for name, r in rows.items():
        lines.append(
            f"| {name} | {r['rmse_cm']:.4f} | {r['ssim']:.4f} | {r['conservation']:.1e} "
            f"| {r['s']:.2f} |"
        )
    ratio = rows["cnn (EDSR x4)"]["rmse_cm"] / rows["conservative bicubic"]["rmse_cm"]
    lines += [
        "",
        f"RMSE ratio cnn / conservative bicubic: {ratio:.3f}; training {train_s:.1f} s, "
        f"{len(tm.history['train'])} epochs of {budget['steps_per_epoch']} steps",
        f"saved model applied by path: largest difference {same:.1e}",
    ]
    table = "\n".join(lines)
    (out / "table.md").write_text(table + "\n")
    print(table)
    print("\nThe same with the command line:")
    print(
        f"xsr downscale {out / 'qg_t5_coarse.nc'} {out / 'qg_t5_x4_cli.nc'} "
        f"--factor {FACTOR} --method cnn --model {model_path}"
    )
    return {"rows": rows, "ratio": ratio, "train_seconds": train_s, "model": tm}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=Path("qg_cnn_out"), help="output folder")
    p.add_argument("--quick", action="store_true", help="tiny training budget (smoke run)")
    p.add_argument("--data-dir", type=Path, default=None, help="folder holding " + FILE)
    p.add_argument("--device", default=None, help="auto | cpu | cuda | mps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    a = p.parse_args()
    find_data(a.data_dir)
    run(a.out, quick=a.quick, device=a.device, seed=a.seed, progress=not a.no_progress)


if __name__ == "__main__":
    main()
