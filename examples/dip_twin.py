"""Twin experiment with the deep-image-prior ensemble on the embedded sea-surface-height sample.

The truth is the embedded sample (:func:`xsr.datasets.open_sample`): DUACS absolute dynamic
topography ``adt`` of the Gulf Stream region on 2019-02-23, 0.25 degree, 128 x 256 cells,
NaN on land (E.U. Copernicus Marine Service Information).  It is averaged over
``factor x factor`` blocks with ``ds.sr.coarsen`` (area weighted, land left out) and
downscaled back with

* ``method="bicubic"`` (conservative bicubic: bicubic plus the additive enforcement), and
* ``method="dip-ensemble"`` (``members`` deep-image-prior fits run as one batch; the
  result is the enforced ensemble mean, ``adt_std`` its spread),

both with the known 0.25 degree ocean mask (``mask=``), so that land stays NaN and each
coarse value is conserved over the ocean part of its block.  Scores over ocean cells: RMSE
(cm), SSIM, the largest relative conservation error (area weighted, float64), the wall time,
and for the ensemble the mean RMSE of its members and the Pearson correlation of the spread
with the absolute error.

Output in ``--out`` (default ``dip_twin_out``): the downscaled Dataset
``dip_twin_x<factor>.nc`` (``adt``, ``adt_std``), the figure ``dip_twin_x<factor>.png``
(truth / coarse / downscaled / std / |error|, :func:`xsr.plot.uncertainty_figure`) and the
table ``dip_twin_table.md`` (also printed).  No download: the sample ships with xsr.
The same experiment is the command ``xsr demo``.

    python examples/dip_twin.py                      # factor 8, 10 members, CPU
    python examples/dip_twin.py --factor 4 --members 4 --device cuda
"""

from __future__ import annotations

import argparse
from pathlib import Path

from xsr.demo import run_demo


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=Path("dip_twin_out"))
    p.add_argument("--factor", type=int, default=8)
    p.add_argument("--members", type=int, default=10)
    p.add_argument("--iterations", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None)
    p.add_argument("--no-progress", action="store_true")
    a = p.parse_args()
    print(
        run_demo(
            a.out,
            factor=a.factor,
            members=a.members,
            iterations=a.iterations,
            seed=a.seed,
            device=a.device,
            progress=not a.no_progress,
        )
    )


if __name__ == "__main__":
    main()
