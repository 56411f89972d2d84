"""Verification metrics: error statistics, image scores, probabilistic skill, spectra.

Two families (no torch needed, except for :func:`conservation_error`, which is
:func:`xsr.conserve.conservation_error` re-exported and imported on first use):

* **Scores as floats** -- :func:`rmse`, :func:`mae`, :func:`bias`, :func:`pearson`,
  :func:`psnr`, :func:`ssim`: the estimate ``a`` against the reference ``b`` over their finite
  overlap (NaN cells left out), one number.
* **xarray metrics** -- probabilistic scores (:func:`crps_ensemble`, :func:`crps`,
  :func:`crps_gaussian`, :func:`spread_skill`, :func:`spread_error_correlation`,
  :func:`rank_histogram`), spectra (:func:`power_spectrum`, :func:`effective_resolution`)
  and derived quantities (:func:`gradient`, :func:`gradient_error`,
  :func:`geostrophic_velocity`, :func:`geostrophic_velocity_error`).  DataArrays in,
  DataArrays out (named, with ``long_name`` and ``units``); plain arrays in, floats or arrays
  out.  ``dim=None`` averages over every dim of the truth (or name the dims to average over,
  keeping the others); ``weights`` broadcast by dim name (``weights="area"`` for the cell
  areas of the truth's grid); NaN cells are left out and the weights renormalised over the
  others; dask-backed inputs give dask-backed results.  Fields are matched by dim name, and
  their coordinates must agree where both have them.

>>> import numpy as np
>>> from xsr import metrics
>>> truth = np.array([[1.0, 2.0], [3.0, np.nan]])
>>> metrics.rmse(truth + 0.5, truth)
0.5
>>> members = np.stack([truth - 1.0, truth + 1.0])  # two members, first axis
>>> metrics.crps_ensemble(members, truth)  # fair CRPS: 1 - 2 / 2
0.0

:doc:`/metrics` says which library each metric was checked against, and why.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._basic import SSIM_K1, SSIM_K2, bias, mae, pearson, psnr, rmse, ssim
from ._derived import (
    geostrophic_velocity,
    geostrophic_velocity_error,
    gradient,
    gradient_error,
)
from ._ensemble import (
    crps,
    crps_ensemble,
    crps_gaussian,
    rank_histogram,
    spread_error_correlation,
    spread_skill,
)
from ._spectral import effective_resolution, power_spectrum

if TYPE_CHECKING:
    from ..conserve import conservation_error

__all__ = [
    "SSIM_K1",
    "SSIM_K2",
    "bias",
    "conservation_error",
    "crps",
    "crps_ensemble",
    "crps_gaussian",
    "effective_resolution",
    "geostrophic_velocity",
    "geostrophic_velocity_error",
    "gradient",
    "gradient_error",
    "mae",
    "pearson",
    "power_spectrum",
    "psnr",
    "rank_histogram",
    "rmse",
    "spread_error_correlation",
    "spread_skill",
    "ssim",
]


def __getattr__(name: str) -> Any:
    # conservation_error lives in xsr.conserve, which imports torch: import it on first use
    if name == "conservation_error":
        from ..conserve import conservation_error

        return conservation_error
    raise AttributeError(f"module 'xsr.metrics' has no attribute {name!r}")
