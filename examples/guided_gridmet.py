"""Guided downscaling of temperature with terrain elevation: a twin experiment on real data.

The truth is the gridMET daily maximum temperature of 2019-01-21 (1/24 degree) over Colorado
(``tasmax_gridmet_24thdeg_20190121.nc``, 160 x 192 cells); the guide is the elevation of
``elevation_colorado_1arcmin.nc`` brought onto the gridMET cell centres by bilinear
interpolation.  The temperature is block-averaged by ``--factor`` with ``xsr.coarsen`` and
downscaled back with

* ``method="bicubic"`` (conservative bicubic), and
* ``method="regression"`` with the elevation as guide (no training: the lapse rate is fitted
  on the coarse field itself, see ``docs/guided.md``),

and with the same elevation shuffled in space (a guide without information, which must not
make things worse).  Both results coarsen back to the input exactly.  Prints a table and the
fitted lapse rate; writes the figure ``guided_gridmet_x<factor>.png``.

Data: ``XSR_DATA_DIR`` or the cache of :func:`xsr.datasets.fetch`::

    XSR_DATA_DIR=/work/shared/data python examples/guided_gridmet.py --factor 8
"""

from __future__ import annotations

import argparse

import numpy as np
import xarray as xr

import xsr
from xsr.methods import downscale_array, get_method


def elevation_on(crop: xr.Dataset) -> np.ndarray:
    """The 1 arcmin elevation interpolated bilinearly to the crop's cell centres (m)."""
    e = xr.open_dataset(xsr.datasets.fetch("elevation_colorado_1arcmin.nc"))
    ey, ex, z = e["y"].values, e["x"].values, e["z"].values
    iy = np.interp(crop["lat"].values, ey, np.arange(ey.size))
    ix = np.interp(crop["lon"].values, ex, np.arange(ex.size))
    y0 = np.clip(np.floor(iy).astype(int), 0, ey.size - 2)[:, None]
    x0 = np.clip(np.floor(ix).astype(int), 0, ex.size - 2)[None, :]
    fy, fx = iy[:, None] - y0, ix[None, :] - x0
    return (
        z[y0, x0] * (1 - fy) * (1 - fx)
        + z[y0 + 1, x0] * fy * (1 - fx)
        + z[y0, x0 + 1] * (1 - fy) * fx
        + z[y0 + 1, x0 + 1] * fy * fx
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--factor", type=int, default=8, help="4, 8 or 16")
    p.add_argument("--figure", default=None, help="default guided_gridmet_x<factor>.png")
    args = p.parse_args()
    f = args.factor

    t = xr.open_dataset(xsr.datasets.fetch("tasmax_gridmet_24thdeg_20190121.nc"))
    crop = t[["air_temperature"]].sel(lat=slice(42.98, 36.0), lon=slice(-110, -102))
    crop = crop.isel(lat=slice(0, 160)).drop_vars(["crs", "day"], errors="ignore").load()
    elev = elevation_on(crop)
    coarse = xsr.coarsen(crop, factor=f)

    # With the guide plumbing of xsr.downscale this is
    #   coarse.sr.downscale(factor=f, method="regression", guide=elev_dataarray)
    # here the array pipeline, with the fine cell areas of the output grid
    x = coarse["air_temperature"].values
    w = xsr.cell_areas(coarse, factor=f)
    shuffled = np.random.default_rng(0).permutation(elev.ravel()).reshape(elev.shape)
    reg = get_method("regression")
    fields = {
        "bicubic": downscale_array(x, factor=f, method="bicubic", weights=w),
        "regression": downscale_array(x, factor=f, method=reg, weights=w, guide=elev[None]),
    }
    fit = reg.last_fit
    fields["regression, shuffled guide"] = downscale_array(
        x, factor=f, method="regression", weights=w, guide=shuffled[None]
    )

    truth = crop["air_temperature"].values
    base = float(np.sqrt(np.mean((fields["bicubic"] - truth) ** 2)))
    print(f"| x{f} | RMSE (K) | vs bicubic | SSIM | conservation error |")
    print("|---|---|---|---|---|")
    for name, y in fields.items():
        rmse = float(np.sqrt(np.mean((y - truth) ** 2)))
        back = xsr.coarsen(crop.copy(data={"air_temperature": y}), factor=f)
        err = float(np.abs(back["air_temperature"].values - x).max() / np.abs(x).max())
        ssim = xsr.metrics.ssim(y, truth)
        print(f"| {name} | {rmse:.3f} | {rmse / base:.2f} | {ssim:.3f} | {err:.1e} |")
    assert fit is not None
    print(
        f"\nfitted lapse rate {1000 * float(fit.coef[0, 0]):.2f} K/km "
        f"(shrinkage {float(fit.shrinkage[0]):.2f}, fit {fit.choice[0]})"
    )

    import matplotlib

    matplotlib.use("Agg")
    from xsr.plot import compare

    da = crop["air_temperature"]
    shown = {k: da.copy(data=v) for k, v in fields.items() if "shuffled" not in k}
    fig = compare(da, coarse["air_temperature"], shown, title=f"gridMET tmax, Colorado, x{f}")
    path = args.figure or f"guided_gridmet_x{f}.png"
    fig.savefig(path, dpi=110)
    print(f"figure: {path}")


if __name__ == "__main__":
    main()
