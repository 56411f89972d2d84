"""The ``xsr`` command.

``xsr downscale [INPUT] [OUTPUT] --factor F --method M``: netCDF in, netCDF out, written
atomically (a temporary file renamed into place), never overwriting without ``--overwrite``.
With no INPUT it runs on the embedded real SSH sample.

Every file is written through :mod:`xsr._io`: complete or absent (also after Ctrl-C, SIGTERM
or SIGKILL), checked before anything is computed (the folder exists and is writable, the
output is not a folder, ``--overwrite`` for an existing file).  Errors are printed as
``xsr: error: ...`` with exit status 2; an interrupted command exits with status 130.

Batch jobs -- several inputs or globs, zarr in or out, ``--chunks``, ``--tile-size``,
``--scheduler``, ``--resume``, ``--config`` or ``--check`` -- go to :mod:`xsr.batch`:
``xsr downscale INPUT... OUTPUT.zarr --factor 8 --chunks time=1 --tile-size 256 --resume``.

``xsr train HR.nc... --out MODEL.pt --factor F --model edsr``: train a network on
high-resolution fields (:func:`xsr.train`); ``xsr downscale ... --method cnn --model
MODEL.pt`` applies it.  ``xsr distill COARSE... --out STUDENT.pt --factor F`` distils a
``dip-ensemble`` into such a network on a sample of a series (:func:`xsr.distill`).

``xsr evaluate FINE.nc... --factor F --methods bicubic,dip-ensemble,cnn:MODEL.pt``: the twin
experiment on the user's own fields (:func:`xsr.evaluate`): a table, figures and a JSON file.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._io import check_target, write_text
from ._io import write_netcdf as write_netcdf_atomic
from .exceptions import OptionError, XsrError

if TYPE_CHECKING:
    from collections.abc import Sequence

    import xarray as xr

__all__ = ["main", "write_netcdf_atomic"]

# ``write_netcdf_atomic`` (imported above) is :func:`xsr._io.write_netcdf`, kept here under its
# former name for compatibility.


def _parse_float_or_none(text: str) -> float | None:
    return None if text.lower() in ("none", "") else float(text)


def _add_job_options(p: argparse.ArgumentParser) -> None:
    """Options that ``xsr train`` and ``xsr distill`` share."""
    p.add_argument(
        "--conserve", default="additive", help="additive | multiplicative | bounded | none"
    )
    p.add_argument("--lower", type=_parse_float_or_none, default=None, help="lower bound")
    p.add_argument("--upper", type=_parse_float_or_none, default=None, help="upper bound")
    p.add_argument("--dims", nargs=2, metavar=("Y", "X"), help="horizontal dimension names")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--device", default=None, help="auto | cpu | cuda | mps")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress")
    p.add_argument(
        "--guide",
        action="append",
        default=None,
        metavar="FILE[:VAR]",
        help=(
            "fine-scale covariate (e.g. --guide elevation.nc:elevation), repeatable; on any "
            "grid that covers the fields; saved in the model file, needed again at inference "
            "(xsr downscale --method cnn --guide ...)"
        ),
    )


def _build_parser() -> argparse.ArgumentParser:
    from ._version import __version__

    p = argparse.ArgumentParser(
        prog="xsr",
        description="Exactly conservative super-resolution and downscaling of gridded data.",
    )
    p.add_argument("--version", action="version", version=f"xsr {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser(
        "downscale",
        help="downscale a netCDF file (or the embedded sample) by an integer factor",
        description=(
            "Downscale every variable on the horizontal grid of INPUT (netCDF) by FACTOR and "
            "write OUTPUT (netCDF). With no INPUT, run on the embedded real SSH sample."
        ),
    )
    d.add_argument(
        "paths",
        nargs="*",
        metavar="INPUT... OUTPUT",
        help=(
            "input files (netCDF or zarr; several, or glob patterns, are combined along their "
            "coordinates) and the output (*.nc or *.zarr); one path: the input, written to "
            "<input stem>_x<factor>_<method>.nc here; none: the embedded sample"
        ),
    )
    d.add_argument("-f", "--factor", type=int, default=4, help="refinement factor (default 4)")
    d.add_argument("-m", "--method", default="bicubic", help="method name (see `xsr methods`)")
    d.add_argument(
        "--var",
        action="append",
        default=None,
        help="variable to downscale (repeatable; default: every variable on the grid)",
    )
    d.add_argument(
        "--conserve",
        default="additive",
        help="additive | multiplicative | bounded | none (default additive)",
    )
    d.add_argument("--lower", type=_parse_float_or_none, default=None, help="lower bound (bounded)")
    d.add_argument("--upper", type=_parse_float_or_none, default=None, help="upper bound (bounded)")
    d.add_argument("--dims", nargs=2, metavar=("Y", "X"), help="horizontal dimension names")
    d.add_argument("--device", default=None, help="auto | cpu | cuda | mps")
    d.add_argument(
        "--members", type=int, default=None, help="ensemble members (dip-ensemble; default 10)"
    )
    d.add_argument(
        "--iterations", type=int, default=None, help="fitting iterations (dip, dip-ensemble)"
    )
    d.add_argument("--seed", type=int, default=None, help="random seed (dip, dip-ensemble)")
    d.add_argument(
        "--model",
        default=None,
        help=(
            "trained network for --method cnn: a file written by TrainedModel.save, or a "
            "registered name (xsr.models.list_models())"
        ),
    )
    d.add_argument(
        "--guide",
        action="append",
        default=None,
        metavar="FILE[:VAR]",
        help=(
            "fine-scale covariate for guided methods (regression, dip, dip-ensemble, cnn), "
            "e.g. --guide elevation.nc:elevation; repeatable; on any grid that covers the "
            "domain"
        ),
    )
    d.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    b = d.add_argument_group("batch jobs (xsr.batch)")
    b.add_argument(
        "--chunks",
        action="append",
        default=None,
        metavar="DIM=SIZE[,...]",
        help="dask chunks of the input, e.g. time=1 (the default) or time=1,lat=256",
    )
    b.add_argument(
        "--tile-size", type=int, default=None, help="tile edge in fine cells (xsr.tiling)"
    )
    b.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="dask.distributed scheduler address (tcp://...) or scheduler file",
    )
    b.add_argument(
        "--resume",
        action="store_true",
        help="finish an interrupted zarr output: write only the regions not yet recorded",
    )
    b.add_argument(
        "--config", default=None, metavar="FILE", help="YAML/JSON file of options (flags win)"
    )
    b.add_argument(
        "--check",
        action="store_true",
        help="read the output back and print its largest conservation error",
    )
    b.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")

    sub.add_parser("methods", help="list the available methods")

    di = sub.add_parser(
        "distill",
        help="distil a dip-ensemble (or another method) into a fast network on a series",
        description=(
            "Run the teacher on SAMPLES fields of the coarse series in INPUT, train the "
            "student network on its results (xsr.distill), write the student to --out and "
            "print the report (student vs teacher RMSE, speed-up). Downscale the whole "
            "series afterwards with `xsr downscale ... --method cnn --model OUT` (resumable "
            "batch jobs included)."
        ),
    )
    di.add_argument("inputs", nargs="+", metavar="INPUT", help="coarse series (netCDF/zarr)")
    di.add_argument("-o", "--out", required=True, help="student model file to write")
    di.add_argument("-f", "--factor", type=int, required=True, help="refinement factor")
    di.add_argument("--teacher", default="dip-ensemble", help="teacher method (dip-ensemble)")
    di.add_argument("--student", default="edsr", help="student network (default edsr)")
    di.add_argument("--var", default=None, help="variable (needed with several)")
    di.add_argument("--samples", type=int, default=16, help="fields for the teacher (16)")
    di.add_argument("--holdout", type=float, default=0.25, help="samples held out (0.25)")
    di.add_argument("--members", type=int, default=None, help="teacher ensemble members")
    di.add_argument("--iterations", type=int, default=None, help="teacher fit iterations")
    di.add_argument("--epochs", type=int, default=None, help="student epochs (train default)")
    di.add_argument("--crop", type=int, default=None, help="student crop (train default)")
    di.add_argument("--report", default=None, help="also write the report as JSON here")
    _add_job_options(di)

    t = sub.add_parser(
        "train",
        help="train a conservative super-resolution network on high-resolution fields",
        description=(
            "Train one of the networks of xsr.nn.sr on the high-resolution fields of INPUT "
            "(netCDF or zarr; several files or glob patterns are combined along their "
            "coordinates): pairs are made by coarsening them by FACTOR (xsr.train). The "
            "model is written to --out atomically; use it with "
            "`xsr downscale ... --method cnn --model OUT`."
        ),
    )
    t.add_argument("inputs", nargs="+", metavar="INPUT", help="high-resolution fields")
    t.add_argument("-o", "--out", required=True, help="model file to write (e.g. edsr_x8.pt)")
    t.add_argument("-f", "--factor", type=int, required=True, help="refinement factor")
    t.add_argument("-m", "--model", default="edsr", help="network (default edsr)")
    t.add_argument("--var", default=None, help="variable (needed with several)")
    t.add_argument("--crop", type=int, default=64, help="crop side in fine cells (default 64)")
    t.add_argument("--batch-size", type=int, default=8, help="crops per step (default 8)")
    t.add_argument("--epochs", type=int, default=20, help="maximum epochs (default 20)")
    t.add_argument("--steps-per-epoch", type=int, default=50, help="steps per epoch (50)")
    t.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (1e-3)")
    t.add_argument("--val-fraction", type=float, default=0.2, help="held-out fraction (0.2)")
    t.add_argument("--patience", type=int, default=5, help="early-stopping patience (5)")
    t.add_argument("--min-valid", type=float, default=0.5, help="valid fraction per crop")
    t.add_argument("--augment", action="store_true", help="random flips and rotations")
    t.add_argument("--skip", action="store_true", help="learn a correction to bicubic")
    t.add_argument("--checkpoint", default=None, help="also save the best model here")
    _add_job_options(t)

    ev = sub.add_parser(
        "evaluate",
        help="which method works on your data? the twin experiment on your own fields",
        description=(
            "Take the fields of INPUT (netCDF/zarr; several files are combined) as the truth, "
            "block-average them by FACTOR (xsr.coarsen), downscale them back with each of "
            "METHODS and score every result against the truth (xsr.evaluate): RMSE, MAE, "
            "SSIM, CRPS, spread-skill, effective resolution, conservation error, time, peak "
            "memory. Prints the table and writes evaluation.json, evaluation.md and figures "
            "into --out."
        ),
    )
    ev.add_argument("inputs", nargs="+", metavar="INPUT", help="fine fields (netCDF/zarr)")
    ev.add_argument("-f", "--factor", type=int, required=True, help="refinement factor")
    ev.add_argument(
        "-m",
        "--methods",
        default="bicubic,dip-ensemble",
        help="comma-separated methods, e.g. bicubic,dip-ensemble,cnn:MODEL.pt "
        "(default bicubic,dip-ensemble); LABEL=NAME runs a method again under another "
        "label (cal=dip-ensemble -O cal.calibrate=scale); the first is the reference of the "
        "ratio column",
    )
    ev.add_argument(
        "-O",
        "--option",
        action="append",
        default=None,
        metavar="METHOD.KEY=VALUE",
        help="a method option, e.g. -O dip-ensemble.members=5 (repeatable; values are "
        "parsed as JSON when they can be: 5, 0.1, true, null)",
    )
    ev.add_argument("--members", type=int, default=None, help="members of ensemble methods")
    ev.add_argument("--iterations", type=int, default=None, help="iterations of DIP methods")
    ev.add_argument("--var", action="append", default=None, help="variable (repeatable)")
    ev.add_argument(
        "--isel",
        action="append",
        default=None,
        metavar="DIM=START:STOP[:STEP]",
        help="evaluate on a part of a long series, e.g. --isel time=0:10 (repeatable)",
    )
    ev.add_argument("--dims", nargs=2, metavar=("Y", "X"), help="horizontal dimension names")
    ev.add_argument(
        "--guide",
        action="append",
        default=None,
        metavar="FILE[:VAR]",
        help="fine-scale covariate for the methods that use one (repeatable)",
    )
    ev.add_argument("--out", default=None, help="output folder (default xsr_evaluate_x<FACTOR>)")
    ev.add_argument("--no-mask", dest="mask", action="store_false", help="no fine land mask")
    ev.add_argument("--no-figures", dest="figures", action="store_false", help="no figures")
    ev.add_argument("--device", default=None, help="auto | cpu | cuda | mps")
    ev.add_argument("--overwrite", action="store_true", help="replace an earlier evaluation")
    ev.add_argument("--no-progress", dest="progress", action="store_false", help="no progress")

    demo = sub.add_parser(
        "demo",
        help="twin experiment on the embedded SSH sample: dip-ensemble vs conservative bicubic",
        description=(
            "Coarsen the embedded real SSH sample by FACTOR, downscale it back with "
            "conservative bicubic and with a dip-ensemble, and write the result, a figure and "
            "a table of RMSE, SSIM, conservation error and time into OUT."
        ),
    )
    demo.add_argument("--out", default="xsr_demo", help="output folder (default xsr_demo)")
    demo.add_argument("-f", "--factor", type=int, default=8, help="factor (default 8)")
    demo.add_argument("--members", type=int, default=10, help="ensemble members (default 10)")
    demo.add_argument("--iterations", type=int, default=None, help="fit iterations")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    demo.add_argument("--device", default=None, help="auto | cpu | cuda | mps")
    demo.add_argument("--no-progress", dest="progress", action="store_false")
    return p


def _method_options(args: argparse.Namespace) -> dict[str, Any]:
    """The method options given on the command line (only those given)."""
    names = ("members", "iterations", "seed", "model")
    return {n: getattr(args, n) for n in names if getattr(args, n) is not None}


def _downscale(args: argparse.Namespace) -> int:
    import numpy as np

    from . import api, batch, datasets
    from .conserve import check_conserve

    mode = check_conserve(args.conserve)
    bounds = None
    if mode == "bounded":
        bounds = (args.lower, args.upper)
    elif args.lower is not None or args.upper is not None:
        raise OptionError(
            f"--lower/--upper are only used with --conserve bounded, got --conserve {args.conserve}"
        )
    if args.input is None:
        ds = datasets.open_sample()
        stem = "xsr_sample"
        source = "embedded sample (DUACS SSH, Gulf Stream, 0.25 deg)"
    else:
        from .batch import open_input

        path = Path(args.input)
        if not path.exists():
            raise OptionError(f"input file {str(path)!r} does not exist")
        ds = open_input(str(path))
        stem = path.stem
        source = str(path)
    out_path = check_target(
        args.output or f"{stem}_x{args.factor}_{args.method}.nc", overwrite=args.overwrite
    )
    if args.var:
        missing = [v for v in args.var if v not in ds.data_vars]
        if missing:
            raise OptionError(
                f"--var {missing} not in the input; its variables are {list(ds.data_vars)}"
            )
        # with the bounds, grid mappings and cell measures they need (ds[var] drops them)
        ds = api.select_variables(ds, args.var)

    dims = tuple(args.dims) if args.dims else None
    t0 = time.perf_counter()
    fine: xr.Dataset = api.downscale(  # type: ignore[assignment]
        ds,
        factor=args.factor,
        method=args.method,
        conserve=mode,
        bounds=bounds,
        dims=dims,
        device=args.device,
        guide=batch.open_guides(args.guide) if args.guide else None,
        **_method_options(args),
    )
    fine = fine.load()
    elapsed = time.perf_counter() - t0
    back = api.coarsen(fine, factor=args.factor, dims=dims)

    ydim, xdim = api.spatial_dims(ds, dims)
    print(f"xsr downscale: {source}")
    print(f"  method={args.method} factor={args.factor} conserve={mode}")
    print(
        f"  grid ({ydim}, {xdim}): {ds.sizes[ydim]} x {ds.sizes[xdim]} -> "
        f"{fine.sizes[ydim]} x {fine.sizes[xdim]}"
    )
    for name, da in fine.data_vars.items():
        if ydim not in da.dims or xdim not in da.dims or name not in ds.data_vars:
            continue
        src = np.asarray(ds[name].values, np.float64)
        rec = np.asarray(back[name].transpose(*ds[name].dims).values, np.float64)
        ok = np.isfinite(src)
        scale = float(np.abs(src[ok]).max()) if ok.any() else 1.0
        err = float(np.abs(rec[ok] - src[ok]).max()) / scale if ok.any() else 0.0
        nan_ok = bool((np.isnan(rec) == ~ok).all())
        print(
            f"  {name}: {tuple(ds[name].shape)} -> {tuple(da.shape)}, "
            f"max relative conservation error {err:.2e}"
            + ("" if nan_ok or mode is None else " (NaN pattern differs!)")
        )
    print(f"  time: {elapsed:.2f} s")
    write_netcdf_atomic(fine, out_path, overwrite=args.overwrite)
    print(f"  wrote {out_path}")
    return 0


_BATCH_OPTIONS = ("chunks", "tile_size", "scheduler", "resume", "config", "check")


def _is_batch(args: argparse.Namespace) -> bool:
    """Whether ``xsr downscale`` runs as a batch job (:mod:`xsr.batch`)."""
    import glob

    if args.command != "downscale":
        return False
    if any(getattr(args, k) not in (None, False) for k in _BATCH_OPTIONS):
        return True
    paths = list(args.paths)
    return (
        len(paths) > 2
        or any(glob.has_magic(p) for p in paths)
        or any(str(p).rstrip("/").endswith(".zarr") for p in paths)
    )


def _train(args: argparse.Namespace) -> int:
    from . import batch
    from .training import train

    out = check_target(args.out, overwrite=args.overwrite)
    mode, bounds = _bounds_of(args)
    ds = batch.open_inputs(list(args.inputs), var=[args.var] if args.var else None)
    t0 = time.perf_counter()
    tm = train(
        ds,
        model=args.model,
        factor=args.factor,
        var=args.var,
        dims=tuple(args.dims) if args.dims else None,
        conserve=mode,
        bounds=bounds,
        crop=args.crop,
        batch_size=args.batch_size,
        epochs=args.epochs,
        steps_per_epoch=args.steps_per_epoch,
        lr=args.lr,
        val_fraction=args.val_fraction,
        patience=args.patience,
        seed=args.seed,
        device=args.device,
        checkpoint=args.checkpoint,
        progress=args.progress,
        model_options={"skip": True} if args.skip else None,
        augment=args.augment,
        min_valid=args.min_valid,
        guides=batch.open_guides(args.guide) if args.guide else None,
    )
    elapsed = time.perf_counter() - t0
    tm.save(out)
    val = [v for v in tm.history["val"] if v is not None]
    train_loss = tm.history["train"]
    print(f"xsr train: {tm!r}")
    print(f"  inputs: {', '.join(args.inputs)}")
    print(f"  epochs run: {len(train_loss)}; time: {elapsed:.1f} s")
    if val:
        print(f"  best validation loss (normalised MSE): {min(val):.4g}")
    elif train_loss:
        best = min(v for v in train_loss if v is not None)
        print(f"  best training loss (normalised MSE): {best:.4g}")
    print(f"  wrote {out}")
    guides = "".join(f" --guide {g}" for g in args.guide or ())
    print(
        f"  use it: xsr downscale COARSE.nc FINE.nc --factor {tm.factor} --method cnn "
        f"--model {out}{guides}"
    )
    return 0


def _bounds_of(args: argparse.Namespace) -> tuple[Any, Any]:
    from .conserve import check_conserve

    mode = check_conserve(args.conserve)
    if mode != "bounded" and (args.lower is not None or args.upper is not None):
        raise OptionError(
            f"--lower/--upper are only used with --conserve bounded, got --conserve {args.conserve}"
        )
    return mode, (args.lower, args.upper) if mode == "bounded" else None


def _distill(args: argparse.Namespace) -> int:
    import json

    from . import batch
    from .distillation import distill

    out = check_target(args.out, overwrite=args.overwrite)
    report_path = check_target(args.report, overwrite=args.overwrite) if args.report else None
    mode, bounds = _bounds_of(args)
    teacher_options: dict[str, Any] = {}
    if args.members is not None:
        teacher_options["members"] = args.members
    if args.iterations is not None:
        teacher_options["iterations"] = args.iterations
    if not args.progress and args.teacher in ("dip", "dip-ensemble"):
        teacher_options["progress"] = False
    train_options: dict[str, Any] = {"progress": args.progress}
    if args.epochs is not None:
        train_options["epochs"] = args.epochs
    if args.crop is not None:
        train_options["crop"] = args.crop
    ds = batch.open_inputs(list(args.inputs), var=[args.var] if args.var else None)
    d = distill(
        ds,
        factor=args.factor,
        teacher=args.teacher,
        student=args.student,
        var=args.var,
        dims=tuple(args.dims) if args.dims else None,
        samples=args.samples,
        holdout=args.holdout,
        conserve=mode,
        bounds=bounds,
        teacher_options=teacher_options,
        train_options=train_options,
        seed=args.seed,
        device=args.device,
        downscale=False,
        guide=batch.open_guides(args.guide) if args.guide else None,
    )
    d.model.save(out)
    r = d.report
    print(f"xsr distill: {args.teacher} -> {args.student} x{args.factor}")
    print(f"  series: {r['fields']} fields; teacher ran on {len(r['samples'])}")
    print(
        f"  held-out fields {r['check_indices']}: RMSE student-teacher "
        f"{r['rmse_student_teacher']:.4g}, bicubic-teacher {r['rmse_bicubic_teacher']:.4g}"
        + (f", teacher spread {r['teacher_spread']:.4g}" if r["teacher_spread"] is not None else "")
    )
    print(
        f"  teacher {r['teacher_seconds_per_field']:.3g} s/field, student "
        f"{r['student_seconds_per_field']:.3g} s/field: speed-up {r['speedup']:.3g}x"
    )
    print(f"  wrote {out}")
    if report_path is not None:
        write_text(report_path, json.dumps(r, indent=2, default=str), overwrite=args.overwrite)
        print(f"  wrote {report_path}")
    print(
        f"  next: xsr downscale {' '.join(args.inputs)} FINE.zarr --factor {args.factor} "
        f"--method cnn --model {out}" + "".join(f" --guide {g}" for g in args.guide or ())
    )
    return 0


def _explicit_options(argv: Sequence[str] | None) -> dict[str, Any]:
    """The ``downscale`` options given on the command line (by ``dest``), and only those."""
    parser = _build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for a in action.choices["downscale"]._actions:
                a.default = argparse.SUPPRESS  # options not given stay out of the namespace
    ns = parser.parse_args(argv)
    return {k: v for k, v in vars(ns).items() if k not in ("command", "help")}


def _option_value(text: str) -> Any:
    import json

    try:
        return json.loads(text)
    except ValueError:
        return text


def _parse_isel(item: str, ds: Any) -> dict[str, Any]:
    """``DIM=START:STOP[:STEP]`` or ``DIM=INDEX`` as an ``isel`` mapping."""
    dim, eq, spec = item.partition("=")
    hint = "e.g. --isel time=0:10 or --isel time=5"
    if not eq or not dim:
        raise OptionError(f"--isel {item!r}: expected DIM=START:STOP[:STEP] ({hint})")
    if dim not in ds.dims:
        raise OptionError(
            f"--isel {item!r}: {dim!r} is not a dimension of the input; its dimensions are "
            f"{[str(d) for d in ds.dims]}"
        )
    try:
        parts = [int(p) if p.strip() else None for p in spec.split(":")]
    except ValueError:
        raise OptionError(f"--isel {item!r}: indices must be integers ({hint})") from None
    if len(parts) == 1 and parts[0] is not None:
        return {dim: slice(parts[0], parts[0] + 1 if parts[0] != -1 else None)}
    if not 2 <= len(parts) <= 3:
        raise OptionError(f"--isel {item!r}: expected DIM=START:STOP[:STEP] ({hint})")
    return {dim: slice(*parts)}


def _evaluate(args: argparse.Namespace) -> int:
    from . import batch
    from .evaluation import evaluate, parse_methods

    options: dict[str, dict[str, Any]] = {}
    specs = parse_methods(args.methods)
    for spec in specs:
        name = spec.name or spec.label
        if args.members is not None and name == "dip-ensemble":
            options.setdefault(spec.label, {})["members"] = args.members
        if args.iterations is not None and name in ("dip", "dip-ensemble"):
            options.setdefault(spec.label, {})["iterations"] = args.iterations
        if not args.progress and name in ("dip", "dip-ensemble"):
            options.setdefault(spec.label, {})["progress"] = False
    for item in args.option or ():
        key, eq, value = item.partition("=")
        method, dot, opt = key.rpartition(".")
        if not (eq and dot and method and opt):
            raise OptionError(
                f"-O {item!r}: expected METHOD.KEY=VALUE, e.g. -O dip-ensemble.members=5"
            )
        options.setdefault(method, {})[opt] = _option_value(value)
    ds = batch.open_inputs(list(args.inputs), var=list(args.var) if args.var else None)
    for item in args.isel or ():
        ds = ds.isel(_parse_isel(item, ds))
    out = args.out if args.out is not None else f"xsr_evaluate_x{args.factor}"
    ev = evaluate(
        ds,
        factor=args.factor,
        methods=args.methods,
        method_options=options,
        var=list(args.var) if args.var else None,
        dims=tuple(args.dims) if args.dims else None,
        guide=batch.open_guides(args.guide) if args.guide else None,
        mask=args.mask,
        device=args.device,
        out=out,
        figures=args.figures,
        overwrite=args.overwrite,
        progress=args.progress,
    )
    print(f"xsr evaluate: {', '.join(args.inputs)}, x{args.factor}")
    print()
    print(ev.table())
    for v in ev.variables:
        print(f"best RMSE for {v}: {ev.best('rmse', variable=v)}")
    print(f"wrote {', '.join(str(p) for p in ev.files)}")
    return 0


def _batch(argv: Sequence[str] | None) -> int:
    from . import batch

    explicit = _explicit_options(argv)
    config = batch.load_config(explicit["config"]) if explicit.get("config") else None
    return batch.run(batch.resolve(explicit, config))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``xsr`` command; returns the exit status."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "methods":
            from .methods.registry import list_methods

            for name in list_methods():
                print(name)
            return 0
        if args.command == "train":
            return _train(args)
        if args.command == "distill":
            return _distill(args)
        if args.command == "evaluate":
            return _evaluate(args)
        if args.command == "demo":
            from .demo import run_demo

            print(
                run_demo(
                    Path(args.out),
                    factor=args.factor,
                    members=args.members,
                    iterations=args.iterations,
                    seed=args.seed,
                    device=args.device,
                    progress=args.progress,
                )
            )
            return 0
        if _is_batch(args):
            return _batch(argv)
        if len(args.paths) > 2:  # pragma: no cover - _is_batch takes these
            raise OptionError("several inputs need an output: INPUT... OUTPUT")
        args.input = args.paths[0] if args.paths else None
        args.output = args.paths[1] if len(args.paths) > 1 else None
        return _downscale(args)
    except XsrError as e:
        print(f"xsr: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "xsr: interrupted (files are written whole or not at all; finish an interrupted "
            "zarr output with --resume)",
            file=sys.stderr,
        )
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
