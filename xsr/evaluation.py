"""The twin experiment on the user's own data: which method works here?

:func:`evaluate` takes fine fields the user trusts (a model run, an analysis, a
high-resolution product), block-averages them by ``factor`` with :func:`xsr.coarsen` (area
weights, NaN-aware), downscales the result back with each method and scores every result
against the original:

* deterministic: RMSE, MAE, bias, SSIM (:func:`xsr.metrics.ssim`), the error of the
  gradient (:func:`xsr.metrics.gradient_error`), and for sea-surface height the error of the
  geostrophic velocity;
* probabilistic (methods with members or a spread): the CRPS (fair, of the members; a
  deterministic field's CRPS is its MAE, so the column compares every method), the
  spread-skill ratio, the correlation of the spread with the absolute error and the rank
  histogram's outer bins against a uniform one;
* spectral: the isotropic power spectra of the truth, of each result and of its error, and
  the *effective resolution* (the wavelength below which the error's spectrum exceeds the
  truth's);
* trust and cost: the conservation error (the result coarsened again against the coarse
  input, float64), the wall time and the peak memory of the call.

Everything is written into one folder when ``out=`` is given: ``evaluation.json`` (every
score, the spectra, the settings and the machine), ``evaluation.md`` (the table) and the
figures (error maps, spectra, spread against error); nothing there is replaced unless
``overwrite=True``.  ``xsr evaluate IN.nc --factor 8 --methods bicubic,dip-ensemble`` is the
same from the command line, and ``xsr demo`` runs it on the embedded sample.
"""

from __future__ import annotations

import json
import math
import os
import platform
import re
import threading
import time
import warnings
from collections.abc import Hashable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import xarray as xr

from . import metrics
from ._io import atomic_write, check_folder, check_target, write_text
from ._validate import check_bool
from ._version import __version__
from .api import coarsen, downscale
from .cfgrid import cell_areas, field_variables, select_variables, spatial_dims
from .exceptions import InputValueError, MethodError, OptionError
from .methods.base import Method
from .methods.registry import get_method

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["Evaluation", "evaluate", "parse_methods"]

#: Names of the files :func:`evaluate` writes into ``out`` (figures per variable).
JSON_NAME = "evaluation.json"
TABLE_NAME = "evaluation.md"

#: Columns of the table: (key of a score row, header, format).
COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("rmse", "RMSE", "{:.4g}"),
    ("rmse_vs_first", "vs {first}", "{:.3f}"),
    ("mae", "MAE", "{:.4g}"),
    ("ssim", "SSIM", "{:.4f}"),
    ("crps", "CRPS", "{:.4g}"),
    ("spread_skill", "spread/skill", "{:.2f}"),
    ("spread_error_corr", "corr(spread, abs. error)", "{:.2f}"),
    ("effective_resolution", "eff. res. (km)", "{:.3g}"),
    ("conservation_error", "cons. error", "{:.1e}"),
    ("seconds", "time (s)", "{:.2f}"),
    ("peak_memory_mb", "peak mem. (MB)", "{:.0f}"),
)


@dataclass(frozen=True)
class MethodSpec:
    """One method of an evaluation: its label in the table and how to build it."""

    label: str
    name: str | None
    options: dict[str, Any]
    instance: Method | None = None

    def build(self) -> Method:
        """A fresh method object (stateful methods do not carry one variable into the next)."""
        if self.instance is not None:
            return self.instance
        assert self.name is not None
        return get_method(self.name, **self.options)


def parse_methods(
    methods: str | Method | Sequence[str | Method],
    method_options: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[MethodSpec]:
    """The methods of :func:`evaluate` from their names.

    ``"bicubic"``, ``"dip-ensemble"``, ... (:func:`xsr.list_methods`); ``"cnn:MODEL"`` for a
    trained network (``MODEL`` a file written by ``TrainedModel.save`` or a registered
    name); ``"LABEL=NAME"`` (or ``"LABEL=cnn:MODEL"``) for the same method under another
    label, so that one method can be compared with itself under other options (``["dip-ensemble",
    "calibrated=dip-ensemble"]`` with ``{"calibrated": {"calibrate": "scale"}}``); a
    :class:`~xsr.Method` object.  A comma-separated string is split.
    ``method_options`` maps a name or label to its options (``{"dip-ensemble":
    {"members": 10}}``); options keyed by a name apply to every label of that method, those
    keyed by a label to that label alone (and win).

    Raises
    ------
    OptionError
        An empty list, a repeated label, options for a method that is not in the list, or
        options that the method does not take (naming those it does).
    MethodError
        An unknown method name.
    """
    from .methods.registry import list_methods

    if isinstance(methods, str | Method):
        items: list[str | Method] = [methods]
    elif isinstance(methods, Sequence):
        items = list(methods)
    else:
        raise OptionError(
            f"methods={methods!r} is not allowed; give a list of method names (e.g. "
            "['bicubic', 'dip-ensemble', 'cnn:edsr_x8.pt']) or a comma-separated string"
        )
    flat: list[str | Method] = []
    for it in items:
        if isinstance(it, str):
            flat.extend(p.strip() for p in it.split(",") if p.strip())
        elif isinstance(it, Method):
            flat.append(it)
        else:
            raise OptionError(
                f"methods holds {it!r} ({type(it).__name__}); allowed: method names, "
                "'cnn:MODEL', or Method objects"
            )
    if not flat:
        raise OptionError("methods is empty; give at least one, e.g. methods=['bicubic']")
    opts_by = {str(k): dict(v) for k, v in (method_options or {}).items()}
    known = set(list_methods())
    specs: list[MethodSpec] = []
    for it in flat:
        if isinstance(it, Method):
            specs.append(MethodSpec(label=it.name, name=None, options={}, instance=it))
            continue
        label, eq, spec = it.partition("=")
        if not eq:
            label, spec = it, it
        label, spec = label.strip(), spec.strip()
        if eq and (not re.fullmatch(r"[A-Za-z0-9_-]+", label) or not spec or "=" in spec):
            raise OptionError(
                f"method {it!r}: expected LABEL=NAME or LABEL=cnn:MODEL, the label made of "
                "letters, digits, '-' and '_', e.g. 'calibrated=dip-ensemble'"
            )
        if eq and label in known and label != spec:
            raise OptionError(
                f"method {it!r}: the label {label!r} is the name of another method; choose a "
                "label that is not a method name"
            )
        name, _, model = spec.partition(":")
        if name not in known:
            raise MethodError(
                f"unknown method {name!r}; available: {sorted(known)} (and 'cnn:MODEL' for a "
                "trained network)"
            )
        opts: dict[str, Any] = {}
        if model:
            if name != "cnn":
                raise OptionError(
                    f"{it!r}: only 'cnn' takes ':MODEL' (a model file or registered name); "
                    f"give {name!r} alone and its options with method_options"
                )
            opts["model"] = model
        opts.update(opts_by.get(name, {}))
        opts.update(opts_by.get(label, {}) if label != name else {})
        specs.append(MethodSpec(label=label, name=name, options=opts))
    labels = [s.label for s in specs]
    dup = sorted({x for x in labels if labels.count(x) > 1})
    if dup:
        raise OptionError(f"methods {dup} are given more than once; give each once")
    extra = sorted(set(opts_by) - set(labels) - {s.name for s in specs if s.name})
    if extra:
        raise OptionError(
            f"method_options for {extra}, which are not among the methods {labels}; "
            "key the options by a method's name or label"
        )
    for s in specs:  # the options are checked before anything runs
        if s.instance is None:
            s.build()
    return specs


# --------------------------------------------------------------------------------------------
# measuring
# --------------------------------------------------------------------------------------------
def _rss_bytes() -> int | None:
    """Resident memory of this process (Linux ``/proc``), or None elsewhere."""
    try:
        with open("/proc/self/statm", "rb") as fh:
            pages = int(fh.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE")


@contextmanager
def _peak_memory(device: str | None) -> Iterator[dict[str, float | None]]:
    """Peak growth of resident memory (and of CUDA memory) while the block runs, in MB.

    Sampled every 5 ms by a thread; on a system without ``/proc`` the value is None.
    """
    out: dict[str, float | None] = {"peak_memory_mb": None, "peak_gpu_memory_mb": None}
    start = _rss_bytes()
    peak = [start or 0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.005):
            v = _rss_bytes()
            if v is not None and v > peak[0]:
                peak[0] = v

    cuda = False
    if device is not None and str(device).startswith("cuda"):
        import torch

        cuda = bool(torch.cuda.is_available())
        if cuda:
            torch.cuda.reset_peak_memory_stats()
    t = threading.Thread(target=sample, daemon=True) if start is not None else None
    if t is not None:
        t.start()
    try:
        yield out
    finally:
        stop.set()
        if t is not None:
            t.join()
            end = _rss_bytes() or 0
            out["peak_memory_mb"] = (max(peak[0], end) - (start or 0)) / 2**20
        if cuda:
            import torch

            out["peak_gpu_memory_mb"] = torch.cuda.max_memory_allocated() / 2**20


def _resolve_device(device: str | None) -> str:
    from .options import get_options

    d = device if device is not None else get_options().get("device", "auto")
    if d in (None, "auto"):
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return str(d)


# --------------------------------------------------------------------------------------------
# the result
# --------------------------------------------------------------------------------------------
@dataclass
class Evaluation:
    """What :func:`evaluate` measured.

    Attributes
    ----------
    factor : int
    scores : list of dict
        One row per variable and method (keys: ``variable``, ``method``, ``rmse``, ``mae``,
        ``bias``, ``ssim``, ``crps``, ``spread_skill``, ``spread_error_corr``,
        ``rank_outer_vs_uniform``, ``gradient_rmse``, ``geostrophic_rmse``,
        ``effective_resolution`` (km, or grid cells), ``conservation_error``, ``seconds``,
        ``peak_memory_mb``, ...; a score that does not apply is None).
    results : dict of str to Dataset
        The downscaled fields by method label (the ensemble mean, ``<var>_std`` and
        ``<var>_members`` for ensemble methods).
    truth, coarse : Dataset
        The fields scored against (cropped to a multiple of ``factor``) and their block means.
    spectra : dict of str to Dataset
        Per variable: ``truth`` and, per method, ``<label>`` and ``<label>_error`` power
        spectra over ``wavenumber`` (``wavelength`` coordinate), averaged over the other dims.
    settings : dict
        The call's settings, the notes (cropping, masks) and the machine.
    files : list of Path
        What was written (with ``out=``).
    """

    factor: int
    scores: list[dict[str, Any]]
    results: dict[str, xr.Dataset]
    truth: xr.Dataset
    coarse: xr.Dataset
    spectra: dict[str, xr.Dataset]
    settings: dict[str, Any]
    files: list[Path] = field(default_factory=list)

    @property
    def methods(self) -> list[str]:
        return list(self.results)

    @property
    def variables(self) -> list[str]:
        return list(dict.fromkeys(str(r["variable"]) for r in self.scores))

    def best(self, score: str = "rmse", *, variable: str | None = None) -> str:
        """The method label with the lowest ``score`` (for ``ssim``: the highest)."""
        var = variable if variable is not None else self.variables[0]
        rows = [r for r in self.scores if r["variable"] == var and r.get(score) is not None]
        if not rows:
            raise OptionError(
                f"no method has the score {score!r} for {var!r}; scores: "
                f"{sorted(k for k in self.scores[0] if not k.startswith('_'))}"
            )
        pick = max if score == "ssim" else min
        return str(pick(rows, key=lambda r: float(r[score]))["method"])

    def to_dataframe(self) -> Any:
        """The scores as a pandas DataFrame indexed by (variable, method)."""
        import pandas as pd

        rows = [{k: v for k, v in r.items() if not isinstance(v, list | dict)} for r in self.scores]
        return pd.DataFrame(rows).set_index(["variable", "method"])

    def table(self) -> str:
        """The scores as a Markdown table (one per variable)."""
        parts: list[str] = []
        for var in self.variables:
            rows = [r for r in self.scores if r["variable"] == var]
            units = rows[0].get("units") or ""
            first = rows[0]["method"]
            cols = [
                c
                for c in COLUMNS
                if any(r.get(c[0]) is not None or r.get(f"{c[0]}_bound") for r in rows)
            ]
            head = ["method"] + [h.format(first=first) for _, h, _ in cols]
            title = f"`{var}`" + (f" ({units})" if units else "")
            parts.append(f"{title}, x{self.factor}:")
            parts.append("")
            parts.append("| " + " | ".join(head) + " |")
            parts.append("|:---|" + "---:|" * len(cols))
            for r in rows:
                cells = [str(r["method"])]
                for key, _, fmt in cols:
                    v = r.get(key)
                    text = "" if v is None or not math.isfinite(v) else fmt.format(v)
                    if key == "effective_resolution" and v is None:
                        text = str(r.get("effective_resolution_bound", ""))
                    cells.append(text)
                parts.append("| " + " | ".join(cells) + " |")
            parts.append("")
        for note in self.settings.get("notes", []):
            parts.append(f"* {note}")
        return "\n".join(parts).rstrip() + "\n"

    def to_dict(self) -> dict[str, Any]:
        """Everything in JSON-ready form (what ``evaluation.json`` holds)."""
        spectra: dict[str, Any] = {}
        for var, sp in self.spectra.items():
            spectra[var] = {
                "wavelength": _floats(sp["wavelength"].values),
                "wavelength_units": str(sp["wavelength"].attrs.get("units", "")),
                **{str(k): _floats(v.values) for k, v in sp.data_vars.items()},
            }
        return {
            "xsr": __version__,
            "factor": self.factor,
            "settings": self.settings,
            "scores": self.scores,
            "spectra": spectra,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, default=_json_default)

    def __repr__(self) -> str:
        return f"Evaluation(x{self.factor}, methods={self.methods})\n" + self.table()


def _floats(a: Any) -> list[float | None]:
    return [None if not math.isfinite(float(v)) else float(v) for v in np.ravel(a)]


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    return str(o)


# --------------------------------------------------------------------------------------------
# scores
# --------------------------------------------------------------------------------------------
def _is_ssh(da: xr.DataArray) -> bool:
    sn = str(da.attrs.get("standard_name", ""))
    if sn.startswith("sea_surface_height") or sn == "sea_surface_elevation":
        return True
    return str(da.name).lower() in ("adt", "sla", "ssh", "zos", "eta") and str(
        da.attrs.get("units", "m")
    ) in ("m", "metre", "meter", "meters", "metres")


def _score(
    label: str,
    var: str,
    out: xr.Dataset,
    truth: xr.DataArray,
    coarse: xr.DataArray,
    weights: xr.DataArray | None,
    factor: int,
    dims: tuple[str, str],
) -> dict[str, Any]:
    """Every score of one method on one variable (floats; None where it does not apply)."""
    fine = out[var].astype("float64")
    t = truth.astype("float64")
    row: dict[str, Any] = {"variable": var, "method": label, "units": truth.attrs.get("units")}
    row["rmse"] = metrics.rmse(fine, t, weights=weights)
    row["mae"] = metrics.mae(fine, t, weights=weights)
    row["bias"] = metrics.bias(fine, t, weights=weights)
    try:
        # None where it is not defined: no 7 x 7 window without missing cells (NaN)
        row["ssim"] = _scalar(metrics.ssim(fine.transpose(..., *dims), t.transpose(..., *dims)))
    except InputValueError:  # a constant truth (no rain anywhere): SSIM has no range
        row["ssim"] = None
    std_name, mem_name = f"{var}_std", f"{var}_members"
    row["crps"] = row["mae"]
    row["crps_kind"] = "deterministic (MAE)"
    for key in ("spread_skill", "spread_error_corr", "rank_outer_vs_uniform"):
        row[key] = None
    if mem_name in out:
        members = out[mem_name].astype("float64")
        row["crps"] = _scalar(
            metrics.crps_ensemble(members, t, member_dim="member", weights=weights)
        )
        row["crps_kind"] = f"ensemble of {members.sizes['member']} members (fair)"
        row["spread_skill"] = _scalar(
            metrics.spread_skill(members, t, member_dim="member", weights=weights)
        )
        hist = metrics.rank_histogram(members, t, member_dim="member")
        h = np.asarray(hist.values, dtype=np.float64)
        uniform = 1.0 / h.size
        row["rank_histogram"] = _floats(h)
        row["rank_outer_vs_uniform"] = float(max(h[0], h[-1]) / uniform)
    elif std_name in out:
        std = out[std_name].astype("float64")
        row["crps"] = _scalar(metrics.crps_gaussian(fine, std, t, weights=weights))
        row["crps_kind"] = "Gaussian (mean and spread)"
        row["spread_skill"] = _scalar(metrics.spread_skill((fine, std), t, weights=weights))
    if std_name in out:
        row["spread_error_corr"] = _scalar(
            metrics.spread_error_correlation(
                (fine, out[std_name].astype("float64")), t, weights=weights
            )
        )
    try:
        row["gradient_rmse"] = _scalar(metrics.gradient_error(fine, t, dims=dims))
    except ValueError:  # a curvilinear grid: no spacing to differentiate with
        row["gradient_rmse"] = None
    row["geostrophic_rmse"] = None
    if _is_ssh(truth):
        try:
            row["geostrophic_rmse"] = _scalar(
                metrics.geostrophic_velocity_error(fine, t, dims=dims)
            )
        except (ValueError, KeyError):  # a grid without latitudes, or equatorial only
            row["geostrophic_rmse"] = None
    # the variables the result's grid needs (bounds, an area variable) come along
    back = coarsen(select_variables(out, [var]), factor=factor, dims=dims)[var]
    back = back.astype("float64")
    c = coarse.astype("float64")
    scale = float(np.nanmax(np.abs(c.values))) if np.isfinite(c.values).any() else 1.0
    scale = scale if scale > 0 else 1.0  # an all-zero field (no rain): the absolute error
    diff = np.abs(back.transpose(*c.dims).values - c.values)
    row["conservation_error"] = float(np.nanmax(diff) / scale) if np.isfinite(diff).any() else 0.0
    return row


def _scalar(v: Any) -> float | None:
    a = float(np.asarray(getattr(v, "values", v)))
    return a if math.isfinite(a) else None


def _largest_valid_box(valid: np.ndarray) -> tuple[int, int, int, int]:
    """``(y0, y1, x0, x1)`` of the largest rectangle of True cells (histogram method)."""
    ny, nx = valid.shape
    heights = np.zeros(nx, dtype=np.int64)
    best = (0, (0, 0, 0, 0))
    for i in range(ny):
        heights = np.where(valid[i], heights + 1, 0)
        stack: list[int] = []
        for j in range(nx + 1):
            h = int(heights[j]) if j < nx else 0
            while stack and int(heights[stack[-1]]) >= h:
                top = stack.pop()
                height = int(heights[top])
                left = stack[-1] + 1 if stack else 0
                area = height * (j - left)
                if area > best[0]:
                    best = (area, (i - height + 1, i + 1, left, j))
            stack.append(j)
    return best[1]


def _spectra(
    truth: xr.DataArray,
    fields: Mapping[str, xr.DataArray],
    dims: tuple[str, str],
    factor: int,
) -> tuple[xr.Dataset, dict[str, float | None], str | None, dict[str, str]]:
    """Power spectra of the truth, each field and its error (averaged over the other dims),
    the effective resolution of each field (km, or grid cells without coordinates; None when
    there is no crossing), a note on the box used, and for fields without a crossing the
    bound that holds (``"< 28"``: the error stays below the signal down to the smallest
    wavelength; ``"> 1800"``: it exceeds it already at the largest).

    Fields with missing cells (land) are cut to the largest rectangle without them, when it
    spans at least ``max(32, 4 * factor)`` cells each way; otherwise their gaps are filled
    (``nan_policy="fill"`` of :func:`xsr.metrics.power_spectrum`)."""
    lead = [d for d in truth.dims if d not in dims]
    valid = truth.notnull().all(lead) if lead else truth.notnull()
    note = None
    policy: Literal["raise", "fill"] = "raise"
    if not bool(valid.all()):
        y0, y1, x0, x1 = _largest_valid_box(np.asarray(valid.transpose(*dims).values))
        need = max(32, 4 * factor)
        if y1 - y0 >= need and x1 - x0 >= need:
            box = {dims[0]: slice(y0, y1), dims[1]: slice(x0, x1)}
            truth = truth.isel(box)
            fields = {k: v.isel(box) for k, v in fields.items()}
            note = f"spectra on the largest box without missing cells ({y1 - y0} x {x1 - x0})"
        else:
            policy = "fill"
            note = (
                "spectra with the missing cells filled (the largest rectangle without them "
                f"is {y1 - y0} x {x1 - x0} cells, narrower than {need})"
            )

    def spec(da: xr.DataArray) -> xr.DataArray:
        s = metrics.power_spectrum(da, dims=dims, nan_policy=policy)
        return s.mean(lead) if lead else s

    sp = {"truth": spec(truth)}
    eff: dict[str, float | None] = {}
    bounds: dict[str, str] = {}
    for label, f in fields.items():
        sp[label] = spec(f)
        sp[f"{label}_error"] = spec(f - truth)
        e = float(np.asarray(metrics.effective_resolution(f, truth, dims=dims, nan_policy=policy)))
        wl = np.asarray(sp["truth"]["wavelength"].values, dtype=np.float64)
        if math.isfinite(e):
            eff[label] = e
        elif math.isinf(e):  # the error exceeds the signal at the largest scale
            eff[label] = None
            bounds[label] = f"> {wl.max():.3g}"
        else:  # the error stays below the signal down to the smallest scale
            eff[label] = None
            bounds[label] = f"< {wl.min():.3g}"
    return xr.Dataset(sp), eff, note, bounds


# --------------------------------------------------------------------------------------------
# figures
# --------------------------------------------------------------------------------------------
def _figures(ev: Evaluation, var: str, dims: tuple[str, str]) -> list[tuple[str, Figure]]:
    """(file name, figure) of the error maps, spectra and spread against error of ``var``."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from .plot import compare

    figs: list[tuple[str, Figure]] = []
    lead = [d for d in ev.truth[var].dims if d not in dims]

    def first(da: xr.DataArray) -> xr.DataArray:
        return da.isel({d: 0 for d in lead if d in da.dims}) if lead else da

    truth = first(ev.truth[var])
    fields = {m: first(ev.results[m][var]) for m in ev.results}
    stds = {
        m: first(ev.results[m][f"{var}_std"]) for m in ev.results if f"{var}_std" in ev.results[m]
    }
    fig = compare(
        truth,
        first(ev.coarse[var]),
        fields,
        std=stds or None,
        title=f"{var}: x{ev.factor}" + (f" ({', '.join(f'{d}=0' for d in lead)})" if lead else ""),
    )
    figs.append((f"errors_{var}.png", fig))

    sp = ev.spectra.get(var)
    if sp is not None:
        fig, ax = plt.subplots(figsize=(6.5, 4.5))
        wl = sp["wavelength"].values
        ax.loglog(wl, sp["truth"].values, "k-", lw=2, label="truth")
        for i, m in enumerate(ev.results):
            c = f"C{i}"
            ax.loglog(wl, sp[m].values, "-", color=c, label=m)
            ax.loglog(wl, sp[f"{m}_error"].values, "--", color=c, label=f"{m} error")
        ax.invert_xaxis()
        ax.set_xlabel(f"wavelength ({sp['wavelength'].attrs.get('units', '')})")
        ax.set_ylabel("power spectral density")
        ax.set_title(f"{var}: isotropic spectra (dashed: error), x{ev.factor}")
        ax.legend(fontsize=7)
        fig.tight_layout()
        figs.append((f"spectra_{var}.png", fig))

    ens = [m for m in ev.results if f"{var}_std" in ev.results[m]]
    if ens:
        fig, ax = plt.subplots(figsize=(5.5, 4.5))
        top = 0.0
        for i, m in enumerate(ev.results):
            if m not in ens:
                continue
            s = np.ravel(ev.results[m][f"{var}_std"].values)
            e = np.ravel(np.abs(ev.results[m][var].values - ev.truth[var].values))
            ok = np.isfinite(s) & np.isfinite(e)
            s, e = s[ok], e[ok]
            if s.size < 20:
                continue
            edges = np.unique(np.quantile(s, np.linspace(0, 1, 21)))
            idx = np.clip(np.digitize(s, edges[1:-1]), 0, edges.size - 2)
            xs = np.array([s[idx == k].mean() for k in range(edges.size - 1) if (idx == k).any()])
            # the RMS error per spread bin: a calibrated spread lies on the diagonal
            ys = np.array(
                [
                    np.sqrt(np.mean(e[idx == k] ** 2))
                    for k in range(edges.size - 1)
                    if (idx == k).any()
                ]
            )
            ax.plot(xs, ys, "o-", color=f"C{i}", label=m)
            top = max(top, float(xs.max()), float(ys.max()))
        ax.plot([0, top], [0, top], "k:", label="spread = error (reliable)")
        ax.set_xlabel("spread (binned)")
        ax.set_ylabel("RMS error in the bin")
        ax.set_title(f"{var}: spread against error, x{ev.factor}")
        ax.legend(fontsize=8)
        fig.tight_layout()
        figs.append((f"spread_{var}.png", fig))
    return figs


# --------------------------------------------------------------------------------------------
# the experiment
# --------------------------------------------------------------------------------------------
def evaluate(
    obj: xr.Dataset | xr.DataArray,
    *,
    factor: int,
    methods: str | Method | Sequence[str | Method] = ("bicubic", "dip-ensemble"),
    method_options: Mapping[str, Mapping[str, Any]] | None = None,
    var: str | Sequence[str] | None = None,
    dims: tuple[Hashable, Hashable] | None = None,
    guide: xr.DataArray | xr.Dataset | Sequence[xr.DataArray] | None = None,
    mask: bool = True,
    device: str | None = None,
    out: str | Path | None = None,
    figures: bool = True,
    overwrite: bool = False,
    progress: bool | None = None,
) -> Evaluation:
    """Coarsen ``obj`` by ``factor``, downscale it back with each method, score the results.

    Parameters
    ----------
    obj : Dataset or DataArray
        The fine fields taken as the truth, dims ``(..., y, x)``; every data variable on the
        horizontal grid is evaluated (or those named by ``var``).  Horizontal sizes that are
        not multiples of ``factor`` are cropped at the end (noted in the table).
    factor : int
        Refinement factor (>= 2).
    methods : str, Method or sequence of them, default ("bicubic", "dip-ensemble")
        Method names (:func:`xsr.list_methods`), ``"cnn:MODEL"`` for a trained network (a
        model file or a registered name), or method objects; a comma-separated string is
        split.  The first is the reference of the ``vs`` column.
    method_options : mapping, optional
        Options per method name or label, e.g. ``{"dip-ensemble": {"members": 10}}``.
        Ensemble methods keep their members (``keep_members=True``) unless told otherwise,
        so that the CRPS and the rank histogram use them.
    var : str or sequence of str, optional
        The variables to evaluate.
    dims : (y, x), optional
        Horizontal dimensions; found with cf-xarray when omitted.
    guide : DataArray, Dataset or sequence of DataArrays, optional
        Fine-scale covariates for the methods that use them (see :func:`xsr.downscale`);
        methods that do not are run without.
    mask : bool, default True
        Give each method the truth's valid cells (cells finite at every step of the
        variable) as the fine mask, as a user with a land mask would; False: no mask (land
        comes from the NaN coarse cells only).
    device : str, optional
        ``"cpu"``, ``"cuda"``... for every method (default: ``xsr.set_options``).
    out : str or path, optional
        A folder to write ``evaluation.json``, ``evaluation.md`` and the figures into
        (created if missing; its parent must exist).
    figures : bool, default True
        Draw the figures when ``out`` is given (needs matplotlib).
    overwrite : bool, default False
        Replace files of an earlier evaluation in ``out``.
    progress : bool, optional
        A progress bar over the runs (default: ``xsr.set_options(progress=...)``).

    Returns
    -------
    Evaluation
        Scores, results, spectra; ``print(ev)`` shows the table.

    Raises
    ------
    OptionError
        Bad options, or files in ``out`` that exist without ``overwrite``: checked before
        anything runs.
    """
    from .conserve import check_factor
    from .options import get_options

    f = check_factor(factor)
    check_bool(mask, name="mask")
    check_bool(figures, name="figures")
    check_bool(overwrite, name="overwrite")
    show = check_bool(progress, name="progress", allow_none=True)
    if show is None:
        show = bool(get_options().get("progress", True))
    specs = parse_methods(methods, method_options)
    if isinstance(obj, xr.DataArray):
        name = obj.name if obj.name is not None else "field"
        ds = obj.to_dataset(name=name)
    elif isinstance(obj, xr.Dataset):
        ds = obj
    else:
        raise TypeError(f"expected an xarray Dataset or DataArray, got {type(obj).__name__}")
    ydim, xdim = spatial_dims(ds, dims)
    hd = (ydim, xdim)
    names = field_variables(ds, hd)
    if var is not None:
        wanted = [var] if isinstance(var, str) else [str(v) for v in var]
        bad = [v for v in wanted if v not in names]
        if bad:
            raise OptionError(
                f"var={bad} are not fields on the horizontal grid ({ydim}, {xdim}); the "
                f"fields are {names}"
            )
        names = wanted
    names = [n for n in names if ds[n].dtype.kind == "f"]
    if not names:
        raise OptionError(
            "obj holds no floating-point field on its horizontal grid to evaluate; cast "
            "integer fields to float first"
        )
    files: list[Path] = []
    folder: Path | None = None
    if out is not None:
        folder = Path(out)
        if not folder.exists():
            check_folder(folder)  # its parent must exist and be writable
            folder.mkdir()
        check_folder(folder / "x")
        planned = [JSON_NAME, TABLE_NAME]
        if figures:
            for n in names:
                planned += [f"errors_{n}.png", f"spectra_{n}.png", f"spread_{n}.png"]
        for p in planned:
            check_target(folder / p, overwrite=overwrite)

    notes: list[str] = []
    ny, nx = int(ds.sizes[ydim]), int(ds.sizes[xdim])
    if ny % f or nx % f:
        ds = ds.isel({ydim: slice(0, ny - ny % f), xdim: slice(0, nx - nx % f)})
        notes.append(
            f"cropped to {ny - ny % f} x {nx - nx % f} cells (a multiple of the factor {f}) "
            f"from {ny} x {nx}"
        )
    truth_ds: xr.Dataset = select_variables(ds, names).load()
    coarse_ds = coarsen(truth_ds, factor=f, dims=hd).load()
    assert isinstance(coarse_ds, xr.Dataset)
    areas = cell_areas(truth_ds, dims=hd)
    weights = None if areas is None else xr.DataArray(np.asarray(areas), dims=hd)
    dev = _resolve_device(device)

    bar = None
    if show:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(specs) * len(names), desc=f"xsr evaluate x{f}")
    scores: list[dict[str, Any]] = []
    results: dict[str, dict[str, xr.Dataset]] = {s.label: {} for s in specs}
    for spec in specs:
        for n in names:
            truth = truth_ds[n]
            m = spec.build()
            if (
                spec.name is not None
                and "keep_members" not in spec.options
                and "std" in m.extra_outputs
            ):
                # an ensemble keeps its members: the CRPS and rank histogram need them
                with suppress(OptionError):  # unless it cannot return them
                    m = get_method(spec.name, **{**spec.options, "keep_members": True})
            if bar is not None:
                bar.set_postfix_str(f"{spec.label}: {n}")
            valid: np.ndarray | None = None
            if mask:
                lead = [d for d in truth.dims if d not in hd]
                v = truth.notnull().all(lead) if lead else truth.notnull()
                if not bool(v.all()):
                    # by position: the fine grid is the truth's by construction, and the
                    # refined coordinates of a curvilinear grid differ from the truth's
                    valid = np.asarray(v.transpose(*hd).values)
            use_guide = guide if (guide is not None and m.uses_guide) else None
            cin = select_variables(coarse_ds, [n])
            t0 = time.perf_counter()
            with warnings.catch_warnings(record=True) as caught, _peak_memory(dev) as mem:
                warnings.simplefilter("always")
                res = downscale(
                    cin, factor=f, method=m, dims=hd, mask=valid, device=dev, guide=use_guide
                )
                res = res.load()
            assert isinstance(res, xr.Dataset)
            seconds = time.perf_counter() - t0
            row = _score(spec.label, n, res, truth, coarse_ds[n], weights, f, hd)
            row.update(seconds=seconds, **mem)
            row["options"] = m.options()
            cal = getattr(m, "last_calibration", None)
            if cal is not None:  # what the spread calibration fitted (calibrate=)
                row["calibration"] = cal.describe()
            if use_guide is not None:
                row["guide"] = res[n].attrs.get("xsr_guide")
            msgs = sorted({str(w.message) for w in caught})
            if msgs:
                row["warnings"] = msgs
            scores.append(row)
            results[spec.label][n] = res
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    order = {s.label: i for i, s in enumerate(specs)}
    scores.sort(key=lambda r: (names.index(r["variable"]), order[r["method"]]))

    merged = {
        label: xr.merge(list(by_var.values()), compat="override")
        for label, by_var in results.items()
    }
    spectra: dict[str, xr.Dataset] = {}
    for n in names:
        fields = {label: merged[label][n] for label in merged}
        try:
            sp, eff, note, eff_bounds = _spectra(truth_ds[n], fields, hd, f)
        except ValueError as e:  # e.g. a curvilinear grid (no spacing): no spectrum
            notes.append(f"{n}: no spectra ({e})")
            continue
        if note:
            notes.append(f"{n}: {note}")
        spectra[n] = sp
        for r in scores:
            if r["variable"] == n:
                r["effective_resolution"] = eff.get(str(r["method"]))
                if str(r["method"]) in eff_bounds:
                    r["effective_resolution_bound"] = eff_bounds[str(r["method"])]
                r["effective_resolution_units"] = str(sp["wavelength"].attrs.get("units", ""))
    first = specs[0].label
    for n in names:
        ref = next(r for r in scores if r["variable"] == n and r["method"] == first)
        for r in scores:
            if r["variable"] == n:
                r["rmse_vs_first"] = (
                    r["rmse"] / ref["rmse"] if ref["rmse"] and math.isfinite(ref["rmse"]) else None
                )
    if mask:
        notes.append("each method was given the truth's valid cells as its fine mask")
    notes.append(
        "CRPS: of the members (fair estimator) for ensembles, of the mean and spread as a "
        "Gaussian when only a spread is returned, the MAE for deterministic methods"
    )
    settings = {
        "factor": f,
        "methods": [s.label for s in specs],
        "variables": names,
        "dims": list(hd),
        "shape": [int(truth_ds.sizes[ydim]), int(truth_ds.sizes[xdim])],
        "device": dev,
        "mask": mask,
        "guide": None
        if guide is None
        else [str(getattr(g, "name", g)) for g in _guide_list(guide)],
        "notes": notes,
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
        },
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    ev = Evaluation(
        factor=f,
        scores=scores,
        results=merged,
        truth=truth_ds,
        coarse=coarse_ds,
        spectra=spectra,
        settings=settings,
    )
    if folder is not None:
        files.append(write_text(folder / JSON_NAME, ev.to_json() + "\n", overwrite=overwrite))
        files.append(write_text(folder / TABLE_NAME, ev.table(), overwrite=overwrite))
        if figures:
            import matplotlib.pyplot as plt

            for n in names:
                for fname, fig in _figures(ev, n, hd):
                    files.append(_save_figure(fig, folder / fname, overwrite=overwrite))
                    plt.close(fig)
    ev.files = files
    return ev


def _save_figure(fig: Figure, path: Path, *, overwrite: bool) -> Path:
    def write(tmp: Any) -> None:
        fig.savefig(tmp, dpi=100, format="png")

    return atomic_write(path, write, overwrite=overwrite)


def _guide_list(guide: Any) -> list[Any]:
    if isinstance(guide, xr.Dataset):
        return [guide[v] for v in guide.data_vars]
    if isinstance(guide, xr.DataArray):
        return [guide]
    return list(guide)
