"""Distillation: teach a fast network to imitate a slow method on a series of fields.

A deep-image-prior ensemble fits networks to every field it downscales, which is accurate but
slow on long series.  :func:`distill` runs the *teacher* (``"dip-ensemble"`` by default) on a
sample of the fields only, trains a *student* network of :mod:`xsr.nn.sr` (ending in the
enforcement layer) on the teacher's results, and downscales the whole series with the
student.  Because every teacher output reproduces its coarse field exactly under coarse-cell
averaging, the training pairs made by :func:`xsr.train` (which coarsens the fine fields
again) are exactly the teacher's (input, output) pairs.

With ``guide=`` (fine-scale covariates such as terrain height, see :mod:`xsr.guides`) the
teacher downscales with the guides (a method that uses them: the guided deep image prior,
``"regression"``...), the student is a guided network (:func:`xsr.train` with ``guides=``)
trained on the teacher's outputs with the same guides, and it downscales the series with
them; the report names the guides.

Some sampled fields are held out from training; the report compares the student with the
teacher on them (RMSE, and the same for conservative bicubic as a yardstick, and the
teacher's own ensemble spread where it has one), and gives the speed of both.

>>> import xsr
>>> ds = xsr.testing.projected_dataset(16, 16, nt=6)
>>> coarse = xsr.coarsen(ds, factor=2)
>>> d = xsr.distill(coarse, factor=2, samples=6, student="srcnn",
...                 teacher_options={"members": 2, "iterations": 10, "progress": False},
...                 train_options={"epochs": 1, "steps_per_epoch": 2, "crop": 8,
...                                "progress": False})
>>> sorted(d.report)[:3]
['check_indices', 'factor', 'fields']
"""

from __future__ import annotations

import functools
import time
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from ._validate import check_bool, check_int, check_number
from .exceptions import OptionError, ShapeError

if TYPE_CHECKING:
    from .conserve import ConserveMode
    from .methods.base import Method
    from .training import TrainedModel

__all__ = ["Distillation", "distill"]


@dataclass(repr=False)
class Distillation:
    """What :func:`distill` returns.

    Attributes
    ----------
    result : Dataset or DataArray or None
        The whole series downscaled by the student (same type as the input; a Dataset holds
        the distilled variable only); ``None`` with ``downscale=False``.
    model : TrainedModel
        The student (save it with :meth:`~xsr.training.TrainedModel.save` and reuse it with
        ``method="cnn", model=path``).
    teacher : Dataset
        The teacher's output on the sampled fields (with ``<var>_std`` for ensembles), along
        the sampled indices of the series dimension.
    report : dict
        Plain numbers: ``fields``, ``samples``, ``train_indices``, ``check_indices``,
        ``teacher``, ``student``, ``factor``, ``teacher_seconds_per_field``,
        ``student_seconds_per_field``, ``speedup``, ``train_seconds``,
        ``guides`` (names of the guides, empty without), ``guide_units``,
        ``rmse_student_teacher``, ``rmse_bicubic_teacher`` (conservative bicubic against
        the teacher, a yardstick), ``teacher_spread`` (mean ensemble standard deviation on
        the held-out fields, or ``None``), ``relative_rmse`` (student-teacher RMSE over the
        standard deviation of the teacher's fields), ``total_seconds`` and
        ``teacher_series_seconds_estimate`` (the teacher on every field, extrapolated).
    """

    result: xr.Dataset | xr.DataArray | None
    model: TrainedModel
    teacher: xr.Dataset
    report: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        r = self.report
        return (
            f"Distillation({r.get('teacher')!r} -> {r.get('student')!r} x{r.get('factor')}: "
            f"student-teacher RMSE {r.get('rmse_student_teacher', float('nan')):.4g} "
            f"(bicubic {r.get('rmse_bicubic_teacher', float('nan')):.4g}), "
            f"speed-up {r.get('speedup', float('nan')):.3g}x over {r.get('fields')} fields"
            + (f", guides {r['guides']}" if r.get("guides") else "")
            + ")"
        )


def _method_name(m: Any) -> str:
    return str(getattr(m, "name", m))


def _field_std(a: np.ndarray) -> float:
    v = a[np.isfinite(a)]
    return float(v.std()) if v.size else float("nan")


def distill(
    obj: xr.Dataset | xr.DataArray,
    *,
    factor: int,
    teacher: str | Method = "dip-ensemble",
    student: str = "edsr",
    var: Hashable | None = None,
    dims: tuple[Hashable, Hashable] | None = None,
    samples: int = 16,
    holdout: float = 0.25,
    conserve: ConserveMode | None = "additive",
    bounds: tuple[float | None, float | None] | None = None,
    teacher_options: Mapping[str, Any] | None = None,
    train_options: Mapping[str, Any] | None = None,
    seed: int = 0,
    device: str | None = None,
    downscale: bool = True,
    guide: xr.DataArray | xr.Dataset | Sequence[xr.DataArray] | None = None,
) -> Distillation:
    """Distil a slow downscaling method (the teacher) into a fast network (the student).

    Parameters
    ----------
    obj : Dataset or DataArray
        Coarse series with dims ``(n, ..., y, x)``: the first dimension that is not
        horizontal (usually time) is the series that is sampled.
    factor : int
        Refinement factor (>= 2).
    teacher : str or Method, default "dip-ensemble"
        Any method of :func:`xsr.list_methods` (or instance).
    student : str, default "edsr"
        Network of :data:`xsr.nn.sr.SR_MODELS`.
    var : hashable, optional
        Variable of a Dataset (needed when it has several field variables).
    dims : (y, x), optional
        Horizontal dimensions (found with cf-xarray when omitted).
    samples : int, default 16
        Fields the teacher downscales, evenly spread over the series (at most its length;
        at least 3).
    holdout : float, default 0.25
        Fraction of the samples kept out of training to compare student and teacher (at
        least one).
    conserve : {"additive", "multiplicative", "bounded", None}, default "additive"
        Enforcement of teacher and student.
    bounds : (lower, upper), optional
        For ``conserve="bounded"``.
    teacher_options : mapping, optional
        Options of the teacher (e.g. ``{"members": 10}``).
    train_options : mapping, optional
        Options of :func:`xsr.train` (``epochs``, ``crop``, ``model_options``...).  With
        ``conserve="additive"`` or ``None`` the student gets ``skip=True`` (it learns a
        correction to bicubic interpolation) unless ``model_options`` sets ``skip``.
    seed : int, default 0
        Chooses the held-out samples and seeds the training.
    device : str, optional
        Torch device for teacher, training and student.
    downscale : bool, default True
        Downscale the whole series with the student (``False``: only train and report).
    guide : DataArray, Dataset or list of DataArrays, optional
        Fine-scale covariates (``guide=`` of :func:`xsr.downscale`: static, or along the
        series with its labels; on the output grid or any grid covering it).  The teacher
        must use guides; it downscales the samples with them, the student is trained on its
        outputs with them (``guides=`` of :func:`xsr.train`), and the student needs them
        again (``guide=``) wherever it is applied.

    Returns
    -------
    Distillation
        ``result`` (the series at ``factor`` times the resolution, exactly conservative),
        ``model`` (the student), ``teacher`` (its outputs on the samples) and ``report``.

    Raises
    ------
    OptionError
        Invalid options, or a series too short to sample.
    """
    from . import api, metrics
    from .api import cell_areas
    from .conserve import check_options
    from .methods.cnn import CNN
    from .training import _select_var, train

    f, mode, bnds = check_options(factor, conserve, bounds)
    samples = check_int(samples, name="samples", minimum=3, hint="two to train on, one to check")
    holdout = check_number(holdout, name="holdout", positive=True)
    if not holdout < 1:
        raise OptionError(f"holdout must be in (0, 1), got {holdout!r}")
    seed = check_int(seed, name="seed", minimum=0)
    downscale = check_bool(downscale, name="downscale")
    topts = dict(train_options or {})
    for key in ("factor", "model", "conserve", "bounds", "var", "dims", "device", "guides"):
        if key in topts:
            raise OptionError(
                f"train_options may not set {key!r}; it is an argument of distill() itself"
            )
    # with the additive operator (or none) the student learns a correction to bicubic
    # interpolation unless told otherwise: it sees few fields, and the teacher's output is
    # close to bicubic on most of the domain.  Not for multiplicative/bounded fields, where
    # the softplus/smooth bound would act on the bicubic field itself (measured worse on
    # radar rain, docs/benchmarks.md)
    mopts = dict(topts.get("model_options") or {})
    if mode in ("additive", None):
        mopts.setdefault("skip", True)
    topts["model_options"] = mopts
    t_start = time.perf_counter()
    da = _select_var(obj, var, dims)
    name = "field" if da.name is None else str(da.name)
    da = da.rename(name)
    ydim, xdim = api.spatial_dims(da, dims)
    lead = [d for d in da.dims if d not in (ydim, xdim)]
    if not lead:
        raise ShapeError(
            f"distill needs a series: {name!r} has only the horizontal dims {da.dims}; "
            "pass fields along a leading dimension such as time"
        )
    sdim = lead[0]
    n = int(da.sizes[sdim])
    if n < 3:
        raise OptionError(
            f"the series along {sdim!r} has {n} field(s); distill needs at least 3 "
            "(two to train on, one to check)"
        )
    k = min(samples, n)
    picks = np.unique(np.linspace(0, n - 1, k).round().astype(int))
    rng = np.random.default_rng(seed)
    n_check = min(len(picks) - 2, max(1, round(holdout * len(picks))))
    check_pos = np.sort(rng.choice(len(picks), size=n_check, replace=False))
    train_pos = np.setdiff1d(np.arange(len(picks)), check_pos)

    # ---------------------------------------------------------------- teacher on the samples
    coarse_s = da.isel({sdim: picks})
    ds_s = coarse_s.to_dataset()
    if isinstance(obj, xr.Dataset):
        # the bounds and cell-area variables that describe the grid go along
        keep = [
            v
            for v in api.grid_variables(obj, dims)
            if v in obj.data_vars and sdim not in obj[v].dims
        ]
        if keep:
            ds_s = xr.merge([ds_s, obj[keep]], compat="override")
    # every downscaling here: the same factor, operator, grid and device
    run = functools.partial(
        api.downscale, factor=f, conserve=mode, bounds=bnds, dims=dims, device=device
    )
    guided: dict[str, Any] = {} if guide is None else {"guide": guide}
    t0 = time.perf_counter()
    taught = run(ds_s, method=teacher, **guided, **dict(teacher_options or {}))
    assert isinstance(taught, xr.Dataset)
    taught = taught.load()
    teacher_s = (time.perf_counter() - t0) / len(picks)

    # ---------------------------------------------------------------- student
    hr = taught[name].isel({sdim: train_pos})
    t0 = time.perf_counter()
    tm = train(
        hr,
        model=student,
        factor=f,
        conserve=mode,
        bounds=bnds,
        dims=dims,
        device=device,
        guides=guide,
        **{"seed": seed, **topts},
    )
    train_s = time.perf_counter() - t0

    # ---------------------------------------------------------------- compare on held-out
    method = CNN(model=tm)
    check_coarse = ds_s.isel({sdim: check_pos})
    t0 = time.perf_counter()
    got = run(check_coarse, method=method, **guided)[name].load()
    student_check_s = (time.perf_counter() - t0) / len(check_pos)
    ref = taught[name].isel({sdim: check_pos})
    bic = run(check_coarse, method="bicubic")[name]
    g = got.transpose(..., ydim, xdim)
    r = ref.transpose(*g.dims)
    w = cell_areas(g, dims=(ydim, xdim))  # (y, x): broadcasts against (..., y, x)
    rmse_st = metrics.rmse(g.values, r.values, weights=w)
    rmse_bt = metrics.rmse(bic.transpose(*g.dims).values, r.values, weights=w)
    spread = None
    if f"{name}_std" in taught:
        s = taught[f"{name}_std"].isel({sdim: check_pos}).values
        spread = float(np.nanmean(s))

    # ---------------------------------------------------------------- the whole series
    result: xr.Dataset | xr.DataArray | None = None
    student_s = student_check_s
    if downscale:
        src = obj[[name]] if isinstance(obj, xr.Dataset) else da
        t0 = time.perf_counter()
        result = run(src, method=method, **guided)
        if not _is_lazy(result):
            result = result.load()
            student_s = (time.perf_counter() - t0) / n
        line = (
            f"distilled from {_method_name(teacher)} into {student} on {len(train_pos)} of "
            f"{n} fields"
            + (f" with the guides {list(tm.guide_names)}" if tm.guide_names else "")
            + " (xsr.distill)"
        )
        target = result[name] if isinstance(result, xr.Dataset) else result
        target.attrs["xsr_distilled_from"] = _method_name(teacher)
        target.attrs["xsr_distill_samples"] = len(picks)
        result.attrs["history"] = (str(result.attrs.get("history", "")) + "\n" + line).strip()

    report: dict[str, Any] = {
        "fields": n,
        "samples": [int(i) for i in picks],
        "train_indices": [int(picks[i]) for i in train_pos],
        "check_indices": [int(picks[i]) for i in check_pos],
        "teacher": _method_name(teacher),
        "teacher_options": {k: repr(v) for k, v in dict(teacher_options or {}).items()},
        "student": student,
        "guides": list(tm.guide_names),
        "guide_units": list(tm.guide_units),
        "factor": f,
        "conserve": mode,
        "teacher_seconds_per_field": teacher_s,
        "student_seconds_per_field": student_s,
        "speedup": teacher_s / student_s if student_s > 0 else float("inf"),
        "train_seconds": train_s,
        "rmse_student_teacher": rmse_st,
        "rmse_bicubic_teacher": rmse_bt,
        "teacher_spread": spread,
        "relative_rmse": rmse_st / _field_std(r.values),
        "total_seconds": time.perf_counter() - t_start,
        "teacher_series_seconds_estimate": teacher_s * n,
    }
    return Distillation(result=result, model=tm, teacher=taught, report=report)


def _is_lazy(obj: xr.Dataset | xr.DataArray) -> bool:
    if isinstance(obj, xr.DataArray):
        return obj.chunks is not None
    return any(v.chunks is not None for v in obj.data_vars.values())
