"""Supervised training of the conservative super-resolution networks on xarray fields.

:func:`train` makes (coarse, fine) pairs from high-resolution fields with the same
area-weighted, NaN-aware block mean as :func:`xsr.coarsen`, trains one of the networks of
:mod:`xsr.nn.sr` on random crops aligned to coarse cells, and returns a :class:`TrainedModel`
holding the network, its normalisation and the metadata needed to apply it safely
(:meth:`TrainedModel.check`, :meth:`TrainedModel.predict`) or to store it
(:meth:`TrainedModel.save`, :meth:`TrainedModel.load`).

>>> import xsr
>>> from xsr import train
>>> hr = xsr.testing.projected_dataset(32, 32, nt=4)["ssh"]
>>> tm = train(hr, factor=4, crop=16, epochs=1, steps_per_epoch=2, progress=False,
...            model_options={"blocks": 1, "channels": 4})
>>> fine = tm.predict(xsr.coarsen(hr, factor=4))
>>> fine.shape
(4, 32, 32)
"""

from __future__ import annotations

import copy
import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from ._validate import check_bool, check_int, check_number
from .exceptions import InputValueError, OptionError, ShapeError
from .nn.checkpoint import TrainedNetwork, build_network

if TYPE_CHECKING:
    import torch

    from .conserve import ConserveMode
    from .nn.sr import SRModelName

__all__ = ["TrainedModel", "train"]


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
def _fine_weights(obj: xr.DataArray, ydim: str, xdim: str, factor: int | None) -> np.ndarray | None:
    """Cell areas ``(ny, nx)`` of ``obj``'s grid (``factor=None``) or of its refinement by
    ``factor`` (``(ny*factor, nx*factor)``), scaled to mean 1; ``None`` for uniform areas."""
    from .api import cell_areas

    w = cell_areas(obj, dims=(ydim, xdim), factor=factor)
    if w is None:
        return None
    w = np.asarray(w, np.float64)
    m = float(np.mean(w))
    return w / m if m > 0 else w


def _select_var(
    hr: xr.DataArray | xr.Dataset,
    var: Hashable | None,
    dims: tuple[Hashable, Hashable] | None = None,
) -> xr.DataArray:
    if isinstance(hr, xr.DataArray):
        return hr
    if not isinstance(hr, xr.Dataset):
        raise TypeError(f"expected an xarray DataArray or Dataset, got {type(hr).__name__}")
    if var is None:
        from .api import field_variables

        names = [n for n in field_variables(hr, dims) if hr[n].dtype.kind == "f"]
        if len(names) != 1:
            raise OptionError(
                f"var=None but the Dataset has {len(names)} floating-point field variables "
                f"({names}); pass var= naming the variable to train on"
            )
        var = names[0]
    if var not in hr.data_vars:
        raise OptionError(
            f"var={var!r} is not a data variable; available: {[str(k) for k in hr.data_vars]}"
        )
    return hr[var]


def _positive_int(name: str, value: Any, minimum: int = 1) -> int:
    return check_int(value, name=name, minimum=minimum)


@dataclass
class _TrainingGuides:
    """The guides of :func:`train` on the grid of the training fields.

    ``values`` ``(ng, C, ny, nx)`` float64 (one entry for static guides, one per combination
    of the leading dims they vary along); ``index[a]``: the entry of field ``a`` (the fields
    flattened along all leading dims, in order).
    """

    names: tuple[str, ...]
    units: tuple[str | None, ...]
    notes: tuple[str, ...]
    values: np.ndarray
    index: np.ndarray


def _training_guides(
    guides: Any,
    da: xr.DataArray,
    coarse_da: xr.DataArray | xr.Dataset,
    ydim: str,
    xdim: str,
    factor: int,
) -> _TrainingGuides:
    """Bring ``guides`` onto the grid of ``da`` (dims ``(*lead, y, x)``, sizes multiples of
    ``factor``), through :func:`xsr.guides.prepare_guides` on the output grid of its
    coarsened version ``coarse_da`` (whose coordinates refine exactly onto ``da``'s)."""
    from .cfgrid import describe
    from .guides import prepare_guides

    g = describe(coarse_da, ydim, xdim)
    prep = prepare_guides(guides, coarse_da, g, factor)
    var = prep.variable
    ny, nx = int(da.sizes[ydim]), int(da.sizes[xdim])
    c = len(prep.names)
    vals = np.asarray(var.values, np.float64)
    if vals.shape[-2:] != (ny, nx):  # pragma: no cover - prepare_guides refines coarse_da
        raise ShapeError(
            f"the guides came out on a {vals.shape[-2]} x {vals.shape[-1]} grid, the training "
            f"fields are {ny} x {nx}"
        )
    lead = [str(d) for d in da.dims if d not in (ydim, xdim)]
    glead = list(prep.lead_dims)
    gsizes = [int(var.sizes[d]) for d in glead]
    ng = int(np.prod(gsizes)) if gsizes else 1
    idx = np.arange(ng).reshape(gsizes)
    # the guide entry of every field: the guide's dims kept, the others broadcast
    shape = [int(da.sizes[d]) if d in glead else 1 for d in lead]
    idx = idx.reshape(shape) if lead else idx.reshape(())
    full = np.broadcast_to(idx, [int(da.sizes[d]) for d in lead]).ravel()
    return _TrainingGuides(
        names=prep.names,
        units=prep.units,
        notes=prep.notes,
        values=vals.reshape(ng, c, ny, nx),
        index=np.ascontiguousarray(full, dtype=np.int64),
    )


# --------------------------------------------------------------------------------------------
# the trained model
# --------------------------------------------------------------------------------------------
@dataclass(repr=False)
class TrainedModel(TrainedNetwork):
    """A trained super-resolution network, with its metadata and the xarray conveniences.

    The network and its metadata (attributes, :meth:`save`, :meth:`load`,
    :meth:`check_factor`, :meth:`check_units`) are the model-file format of
    :class:`xsr.nn.checkpoint.TrainedNetwork`; this class adds :meth:`check` against xarray
    data and :meth:`predict`.  :func:`train` returns one, and ``TrainedModel.load(path)``
    reads one back.
    """

    # ---------------------------------------------------------------------- application
    def check(self, da: xr.DataArray | xr.Dataset, *, factor: int | None = None) -> None:
        """Check that the model fits the data it is about to be applied to.

        Parameters
        ----------
        da : DataArray or Dataset
            Coarse data; for a Dataset the trained variable is looked up by name.
        factor : int, optional
            Refinement factor asked for; must equal the model's.

        Raises
        ------
        OptionError
            On a factor mismatch, or when the data's ``units`` differ from the units of
            the training data.
        """
        if factor is not None:
            self.check_factor(factor)
        if isinstance(da, xr.Dataset):
            if self.var is None or self.var not in da.data_vars:
                raise OptionError(
                    f"the model was trained on variable {self.var!r}, which is not in the "
                    f"Dataset ({[str(k) for k in da.data_vars]}); pass the DataArray instead"
                )
            da = da[self.var]
        units = da.attrs.get("units")
        self.check_units(None if units is None else str(units), name=f"variable {da.name!r}")

    def predict(
        self,
        coarse: xr.DataArray | xr.Dataset | np.ndarray | Any,
        *,
        weights: np.ndarray | None = None,
        mask: np.ndarray | None = None,
        dims: tuple[Hashable, Hashable] | None = None,
        batch_size: int = 8,
        guide: Any = None,
    ) -> Any:
        """Super-resolve coarse fields.

        The coarse fields are normalised, run through the network, de-normalised, and the
        enforcement operator is applied once more in float64 against the original coarse
        fields, so that conservation holds to float64 round-off.

        Parameters
        ----------
        coarse : DataArray, Dataset or array, shape ``(..., ny, nx)``
            Coarse fields; NaN marks missing cells (NaN blocks in the output).  xarray
            objects go through :func:`xsr.downscale` with ``method="cnn"`` (checked with
            :meth:`check`; refined coordinates, attrs and ``history``; area weights from
            the grid).  A Dataset must hold the trained variable; only it is downscaled.
        weights : array, optional
            Fine cell weights (areas), shape ``(ny*factor, nx*factor)``; default: from the
            xarray object's grid, or uniform for arrays.
        mask : array of bool, optional
            Valid cells (True), for arrays broadcastable to ``(..., ny*factor, nx*factor)``
            (for example the land-sea mask of the fine grid); for xarray objects as the
            ``mask`` of :func:`xsr.downscale` (coarse or fine grid).  Masked cells are NaN
            and do not count in the block means.
        dims : (y, x), optional
            Horizontal dimensions of an xarray object (found with cf-xarray when omitted).
        batch_size : int, default 8
            Fields per network call.
        guide : DataArray, Dataset, list of DataArrays, or array, optional
            The fine-scale covariates the model was trained with (required then, refused
            otherwise).  With xarray input: as ``guide=`` of :func:`xsr.downscale` (named as
            in training, on any grid covering the domain, static or along the data's leading
            dims).  With array input: an array ``(C, ny*factor, nx*factor)`` or
            ``(..., C, ny*factor, nx*factor)`` on the fine grid, its channels in the order of
            :attr:`guide_names`.

        Returns
        -------
        DataArray or Dataset (for xarray input), else ndarray of float64
            Shape ``(..., ny*factor, nx*factor)``.
        """
        f = self.factor
        if isinstance(coarse, xr.Dataset | xr.DataArray):
            from .api import downscale
            from .methods.cnn import CNN

            self.check(coarse)
            obj = coarse[[self.var]] if isinstance(coarse, xr.Dataset) else coarse
            if isinstance(obj, xr.DataArray) and obj.dtype.kind != "f":
                obj = obj.astype(np.float64)
            return downscale(
                obj,
                factor=f,
                method=CNN(model=self, batch_size=max(1, int(batch_size))),
                conserve=self.conserve,
                bounds=self.bounds,
                dims=dims,
                mask=mask,
                weights="auto" if weights is None else weights,
                dtype="float64",
                guide=guide,
            )
        from .methods.cnn import CNN
        from .methods.pipeline import downscale_array

        x = np.asarray(coarse, np.float64)
        g = None if guide is None else np.asarray(guide, np.float64)
        # an array's channels are the trained guides, in order
        names = None
        if g is not None and self.guide_names:
            c = len(self.guide_names)
            if g.ndim < 3 or g.shape[-3] != c:
                raise ShapeError(
                    f"guide has shape {g.shape}; allowed: {c} channel(s), the guides "
                    f"{self.describe_guides()} in that order: (..., {c}, ny*factor, "
                    "nx*factor) on the fine grid"
                )
            names = self.guide_names
        if x.ndim < 2:
            raise ShapeError(f"coarse must have at least 2 dimensions (y, x), got {x.shape}")
        y = downscale_array(
            x,
            factor=f,
            method=CNN(model=self, batch_size=max(1, int(batch_size))),
            conserve=self.conserve,
            bounds=self.bounds,
            weights=weights,
            mask=mask,
            dtype="float64",
            device=str(next(self.model.parameters()).device),
            name="coarse",
            guide=g,
            guide_names=names,
        )
        return np.asarray(y, np.float64)


# --------------------------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------------------------
def _augment(
    cs: np.ndarray,
    fs: np.ndarray,
    ws: np.ndarray | None,
    rng: np.random.Generator,
    cbad: np.ndarray | None = None,
    gs: np.ndarray | None = None,
) -> Any:
    """One random symmetry of the square per crop, applied alike to the coarse crop, the
    fine crop, its weights, (if given) the coarse crop's missing-cell mask and (if given)
    the guides' crop ``(B, C, fy, fx)`` (flips only when the crops are not square).  Returns
    ``(cs, fs, ws)``, ``(cs, fs, ws, cbad)`` or, with ``gs``, ``(cs, fs, ws, cbad, gs)``."""
    square = cs.shape[-1] == cs.shape[-2]
    n_sym = 8 if square else 4
    cs, fs = cs.copy(), fs.copy()
    ws = None if ws is None else ws.copy()
    cbad = None if cbad is None else cbad.copy()
    gs = None if gs is None else gs.copy()

    def sym(a: np.ndarray, t: int) -> np.ndarray:
        if square:
            a = np.rot90(a, t % 4, axes=(-2, -1))
            return a[..., ::-1] if t >= 4 else a
        a = a[..., ::-1, :] if t & 1 else a
        return a[..., :, ::-1] if t & 2 else a

    picks: list[int] = [int(t) for t in rng.integers(0, n_sym, size=(cs.shape[0],))]
    for b, t in enumerate(picks):
        cs[b] = sym(cs[b], t)
        fs[b] = sym(fs[b], t)
        if ws is not None:
            ws[b] = sym(ws[b], t)
        if cbad is not None:
            cbad[b] = sym(cbad[b], t)
        if gs is not None:
            gs[b] = sym(gs[b], t)
    if gs is not None:
        return cs, fs, ws, cbad, gs
    return (cs, fs, ws) if cbad is None else (cs, fs, ws, cbad)


def _fill(a: np.ndarray, rings: int) -> np.ndarray:
    """NaN cells of fields ``(n, ny, nx)`` filled as :class:`~xsr.methods.cnn.CNN` fills
    them at inference (:func:`xsr.methods.pipeline.fill_nan`), as float32."""
    import torch

    from .methods.pipeline import fill_nan

    if a.size == 0 or bool(np.isfinite(a).all()):
        return a
    t = fill_nan(torch.from_numpy(np.asarray(a, np.float64)), rings)
    return np.ascontiguousarray(t.numpy().astype(np.float32))


def _masked_mse(
    out: torch.Tensor, target: torch.Tensor, valid: torch.Tensor
) -> tuple[torch.Tensor, int]:
    """Sum of squared errors over ``valid`` cells (NaN-safe for the gradient) and their
    count."""
    import torch

    diff = torch.where(valid, out - target, torch.zeros((), dtype=out.dtype, device=out.device))
    return (diff * diff).sum(), int(valid.sum())


def train(
    hr: xr.DataArray | xr.Dataset,
    *,
    model: SRModelName | str = "edsr",
    factor: int,
    var: Hashable | None = None,
    dims: tuple[Hashable, Hashable] | None = None,
    conserve: ConserveMode | None = "additive",
    bounds: Sequence[float | None] | None = None,
    crop: int = 64,
    batch_size: int = 8,
    epochs: int = 20,
    steps_per_epoch: int = 50,
    lr: float = 1e-3,
    val_fraction: float = 0.2,
    patience: int = 5,
    seed: int = 0,
    device: str | None = None,
    checkpoint: str | Path | None = None,
    progress: bool = True,
    model_options: Mapping[str, Any] | None = None,
    augment: bool = False,
    min_valid: float = 0.5,
    guides: xr.DataArray | xr.Dataset | Sequence[xr.DataArray] | None = None,
) -> TrainedModel:
    """Train a conservative super-resolution network on high-resolution fields.

    Training pairs are made by coarsening ``hr`` once with :func:`xsr.coarsen` (the
    area-weighted, NaN-aware block mean that the enforcement layer conserves), then drawing
    random crops aligned to coarse cells from the fields along the leading dimensions.

    Parameters
    ----------
    hr : DataArray or Dataset
        High-resolution fields with dims ``(..., y, x)``; the horizontal sizes are trimmed
        to multiples of ``factor``.
    model : {"srcnn", "lapsrn", "dense-unet", "dbpn", "srdensenet", "edsr", "rdn"}
        Network (:func:`xsr.nn.sr.build_sr_model`).
    factor : int
        Refinement factor (>= 2).
    var : hashable, optional
        Variable of a Dataset (needed when it has more than one field variable).
    dims : (y, x), optional
        Horizontal dimensions (found with cf-xarray when omitted).
    conserve : {"additive", "multiplicative", "bounded", None}, default "additive"
        Enforcement layer.  With ``"multiplicative"`` the fields are only scaled (mean 0),
        so that they stay non-negative.
    bounds : (lower, upper), optional
        Physical bounds for ``conserve="bounded"``.
    crop : int, default 64
        Side of the training crops in fine cells, a multiple of ``factor`` (clipped to the
        domain).
    batch_size : int, default 8
        Crops per optimisation step.
    epochs : int, default 20
        Maximum number of epochs.
    steps_per_epoch : int, default 50
        Optimisation steps per epoch.
    lr : float, default 1e-3
        Adam learning rate.
    val_fraction : float, default 0.2
        Fraction of the first leading dimension (time) held out, at its end, for validation
        (at least one index when it has >= 2); 0: no validation, the training loss decides
        the best epoch and early stopping.
    patience : int, default 5
        Epochs without improvement of the validation loss before stopping.
    seed : int, default 0
        Seeds the initial weights and the crops (training is deterministic on CPU).
    device : str, optional
        Torch device (``None``: the global ``device`` option).
    checkpoint : str or Path, optional
        Where to :meth:`TrainedModel.save` the model at each new best epoch (atomically;
        an existing file is replaced).  Checked before training: a folder, or a path whose
        folder is missing or not writable, raises :class:`~xsr.exceptions.OutputError`.
    progress : bool, default True
        Show a tqdm progress bar.
    model_options : mapping, optional
        Extra keyword options of the network (widths, depths...).
    augment : bool, default False
        Apply a random symmetry of the square to each crop (flips, and 90-degree rotations
        when the crops are square), to the coarse crop, the fine crop and their cell areas
        alike.  Only for fields whose statistics have these symmetries (for example
        f-plane turbulence in a doubly periodic box); not for fields with a preferred
        direction (the beta effect, coastlines, prevailing winds).
    min_valid : float, default 0.5
        Smallest fraction of valid (non-NaN) coarse cells a crop may have.  Missing coarse
        cells (land) are filled from their neighbours exactly as ``method="cnn"`` fills them
        at inference, and their fine cells are left out of the loss, so the network learns
        near coasts too; ``1.0`` keeps to crops without any missing coarse cell.
    guides : DataArray, Dataset or list of DataArrays, optional
        Fine-scale covariates (terrain height for temperature, SST for sea-surface
        height...) that the network takes besides the coarse field
        (``guide_channels`` of :mod:`xsr.nn.sr`): static (only horizontal dims) or
        dynamic (along leading dims of ``hr``, e.g. a daily SST with ``hr``'s time labels),
        on ``hr``'s grid or on any grid that covers it.  They are brought onto ``hr``'s
        grid as :func:`xsr.downscale` brings ``guide=`` onto its output grid
        (:func:`xsr.guides.prepare_guides`: reordered, block-averaged or interpolated,
        missing cells filled), cropped and augmented with the fields, and normalised with
        their mean and standard deviation over the training fields.  Their names, units
        and normalisation are stored in the model; applying it then needs the same guides
        (``guide=`` of :func:`xsr.downscale` with ``method="cnn"``, or of
        :meth:`TrainedModel.predict`).

    Returns
    -------
    TrainedModel
        With the best (lowest validation loss) weights restored.

    Raises
    ------
    OptionError
        For invalid options, or when no crop without missing coarse cells exists.
    """
    import torch

    from ._version import __version__
    from .api import coarsen, spatial_dims
    from .conserve import check_options
    from .options import resolve_device

    f, mode, b = check_options(factor, conserve, bounds)
    bnds: tuple[float | None, float | None] | None = None
    if mode == "bounded" and b is not None:
        bnds = (b[0], b[1])
    crop = _positive_int("crop", crop, 1)
    if crop % f:
        raise OptionError(
            f"crop={crop} must be a multiple of factor={f} (crops are aligned to coarse cells); "
            f"use crop={max(f, crop - crop % f)}"
        )
    batch_size = _positive_int("batch_size", batch_size)
    epochs = _positive_int("epochs", epochs)
    steps_per_epoch = _positive_int("steps_per_epoch", steps_per_epoch)
    patience = _positive_int("patience", patience)
    val_fraction = check_number(val_fraction, name="val_fraction", minimum=0)
    if not val_fraction < 1.0:
        raise OptionError(f"val_fraction must be in [0, 1), got {val_fraction!r}")
    min_valid = check_number(
        min_valid,
        name="min_valid",
        positive=True,
        hint="a fraction of valid coarse cells per crop, in (0, 1]",
    )
    if not min_valid <= 1.0:
        raise OptionError(
            f"min_valid must be in (0, 1] (a fraction of valid coarse cells per crop), got "
            f"{min_valid!r}"
        )
    lr = check_number(lr, name="lr", positive=True)
    progress = check_bool(progress, name="progress")
    augment = check_bool(augment, name="augment")
    options = dict(model_options or {})
    for key in ("factor", "conserve", "bounds"):
        if key in options:
            raise OptionError(f"model_options may not set {key!r}; pass {key}= to train()")
    if "guide_channels" in options:
        raise OptionError(
            "model_options may not set 'guide_channels'; pass the covariates as guides= to "
            "train(), which sets it to their number"
        )
    dev = resolve_device(device)
    if checkpoint is not None:  # a folder, or an unwritable one, is found now, not after an epoch
        from ._io import check_target

        check_target(checkpoint, overwrite=True)

    # ------------------------------------------------------------------ data
    da = _select_var(hr, var, dims)
    if da.dtype.kind != "f":
        da = da.astype(np.float64)
    ydim, xdim = spatial_dims(da, dims)
    ny, nx = int(da.sizes[ydim]) // f * f, int(da.sizes[xdim]) // f * f
    if ny == 0 or nx == 0:
        raise ShapeError(
            f"the grid ({da.sizes[ydim]} x {da.sizes[xdim]}) is smaller than factor {f}"
        )
    da = da.isel({ydim: slice(0, ny), xdim: slice(0, nx)})
    lead = [d for d in da.dims if d not in (ydim, xdim)]
    da = da.transpose(*lead, ydim, xdim)
    coarse_da = coarsen(da, factor=f, dims=(ydim, xdim))
    w_fine = _fine_weights(da, ydim, xdim, None)
    fine = np.asarray(da.values, np.float64)
    coarse = np.asarray(coarse_da.values, np.float64)
    n_lead0 = int(da.sizes[lead[0]]) if lead else 1
    n_val = 0
    if n_lead0 >= 2 and val_fraction > 0:
        n_val = min(n_lead0 - 1, max(1, round(val_fraction * n_lead0)))
    n_train = n_lead0 - n_val
    fine = fine.reshape(n_lead0, -1, ny, nx)
    coarse = coarse.reshape(n_lead0, -1, ny // f, nx // f)
    ftr, ctr = fine[:n_train].reshape(-1, ny, nx), coarse[:n_train].reshape(-1, ny // f, nx // f)
    fva, cva = fine[n_train:].reshape(-1, ny, nx), coarse[n_train:].reshape(-1, ny // f, nx // f)
    tg = None if guides is None else _training_guides(guides, da, coarse_da, ydim, xdim, f)

    valid_tr = np.isfinite(ftr)
    if not valid_tr.any():
        raise InputValueError("the training fields have no finite value")
    if mode == "multiplicative":
        if float(np.nanmin(ftr)) < 0:
            raise InputValueError(
                "conserve='multiplicative' needs non-negative fields; got negative values"
            )
        mean = 0.0
        std = float(np.sqrt(np.mean(ftr[valid_tr] ** 2)))
    else:
        mean = float(np.mean(ftr[valid_tr]))
        std = float(np.std(ftr[valid_tr]))
    if not (std > 0 and math.isfinite(std)):
        std = 1.0

    def norm(a: np.ndarray) -> np.ndarray:
        return ((a - mean) / std).astype(np.float32)

    ftr_n, ctr_n = norm(ftr), norm(ctr)
    fva_n, cva_n = norm(fva), norm(cva)

    # guides: mean and standard deviation per channel over the entries the training fields
    # use; the entry of each training (validation) field
    g_n = np.zeros((1, 0, ny, nx), np.float32)
    g_mean: tuple[float, ...] = ()
    g_std: tuple[float, ...] = ()
    gi_tr = np.zeros(ftr.shape[0], np.int64)
    gi_va = np.zeros(fva.shape[0], np.int64)
    if tg is not None:
        gi_tr, gi_va = tg.index[: ftr.shape[0]], tg.index[ftr.shape[0] :]
        used = tg.values[np.unique(gi_tr)]
        gm = used.mean(axis=(0, 2, 3))
        gsd = used.std(axis=(0, 2, 3))
        gsd = np.where((gsd > 0) & np.isfinite(gsd), gsd, 1.0)
        g_mean = tuple(float(v) for v in gm)
        g_std = tuple(float(v) for v in gsd)
        g_n = ((tg.values - gm[:, None, None]) / gsd[:, None, None]).astype(np.float32)
        options["guide_channels"] = len(tg.names)

    # crop positions (in coarse cells) whose coarse window has enough valid cells
    cy, cx = min(crop, ny) // f, min(crop, nx) // f
    bad = ~np.isfinite(ctr)
    integ = np.zeros((bad.shape[0], bad.shape[1] + 1, bad.shape[2] + 1), np.int64)
    integ[:, 1:, 1:] = bad.cumsum(1).cumsum(2)
    nbad = integ[:, cy:, cx:] - integ[:, :-cy, cx:] - integ[:, cy:, :-cx] + integ[:, :-cy, :-cx]
    max_bad = math.floor((1.0 - min_valid) * cy * cx + 1e-9)
    ok = (nbad <= max_bad) & (nbad < cy * cx)
    if not ok.any():
        raise OptionError(
            f"no {cy * f} x {cx * f} crop of the training fields has a fraction >= "
            f"{min_valid} of valid (non-NaN) coarse cells; lower crop= or min_valid="
        )
    ok_flat = np.flatnonzero(ok.ravel())
    npy, npx = ok.shape[1], ok.shape[2]

    rng = np.random.default_rng(seed)
    has_nan = not bool(valid_tr.all())
    w_full = None if w_fine is None else w_fine.astype(np.float32)
    # NaN coarse cells are filled as method="cnn" fills them at inference (from their
    # neighbours, receptive radius + 1 rings, then the field mean): set after the network
    # is built, below
    ctr_in = ctr_n
    cva_in = cva_n

    def batch() -> tuple[
        torch.Tensor,
        torch.Tensor,
        torch.Tensor | None,
        torch.Tensor,
        torch.Tensor,
        torch.Tensor | None,
    ]:
        picks = ok_flat[rng.integers(0, ok_flat.size, size=batch_size)]
        k, rem = np.divmod(picks, npy * npx)
        i, j = np.divmod(rem, npx)
        cs = np.stack([ctr_in[a, p : p + cy, q : q + cx] for a, p, q in zip(k, i, j)])
        cbad = np.stack([bad[a, p : p + cy, q : q + cx] for a, p, q in zip(k, i, j)])
        fs = np.stack(
            [ftr_n[a, p * f : (p + cy) * f, q * f : (q + cx) * f] for a, p, q in zip(k, i, j)]
        )
        ws = None
        if w_full is not None:
            ws = np.stack(
                [w_full[p * f : (p + cy) * f, q * f : (q + cx) * f] for p, q in zip(i, j)]
            )
        gs = None
        if tg is not None:
            gs = np.stack(
                [
                    g_n[gi_tr[a], :, p * f : (p + cy) * f, q * f : (q + cx) * f]
                    for a, p, q in zip(k, i, j)
                ]
            )
        if augment and gs is not None:
            cs, fs, ws, cbad, gs = _augment(cs, fs, ws, rng, cbad, gs)
        elif augment:
            cs, fs, ws, cbad = _augment(cs, fs, ws, rng, cbad)
        g_t = None if gs is None else torch.from_numpy(np.ascontiguousarray(gs)).to(dev)
        c_t = torch.from_numpy(cs[:, None]).to(dev)
        f_t = torch.from_numpy(fs[:, None]).to(dev)
        w_t = None if ws is None else torch.from_numpy(ws[:, None]).to(dev)
        valid = torch.isfinite(f_t)
        # the enforcement's mask: the valid fine cells, plus every cell of a missing coarse
        # cell (its filled value is enforced there, harmlessly: those cells are not scored)
        gap = torch.from_numpy(np.ascontiguousarray(cbad[:, None])).to(dev)
        emask = valid | gap.repeat_interleave(f, -2).repeat_interleave(f, -1)
        return c_t, f_t, w_t, valid, emask, g_t

    # ------------------------------------------------------------------ network
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = build_network(model, f, mode, bnds, mean, std, options)
    net.to(dev)
    radius = net.receptive_radius()
    if has_nan or not bool(np.isfinite(cva).all()):
        rings = radius + 1
        ctr_in = _fill(ctr_n, rings)
        cva_in = _fill(cva_n, rings)
    tm = TrainedModel(
        model=net,
        name=str(model).lower(),
        options=options,
        factor=f,
        conserve=mode,
        bounds=bnds,
        var=None if da.name is None else str(da.name),
        units=None if da.attrs.get("units") is None else str(da.attrs["units"]),
        mean=mean,
        std=std,
        version=__version__,
        history={"train": [], "val": []},
        receptive_radius=radius,
        guide_names=() if tg is None else tg.names,
        guide_units=() if tg is None else tg.units,
        guide_mean=g_mean,
        guide_std=g_std,
    )

    def run(
        c: torch.Tensor,
        w: torch.Tensor | None,
        m: torch.Tensor | None,
        g: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if mode is None:
            return net(c, g)
        return net(c, g, weights=w, mask=m)

    w_val = None if w_full is None else torch.from_numpy(w_full).to(dev)

    def val_loss() -> float | None:
        if fva_n.shape[0] == 0:
            return None
        net.eval()
        tot, cnt = 0.0, 0
        with torch.no_grad():
            for a in range(fva_n.shape[0]):
                c = torch.from_numpy(cva_in[a][None, None]).to(dev)
                t = torch.from_numpy(fva_n[a][None, None]).to(dev)
                cvalid = torch.from_numpy(np.isfinite(cva_n[a])).to(dev)
                cfine = cvalid.repeat_interleave(f, 0).repeat_interleave(f, 1)
                valid = torch.isfinite(t) & cfine
                g = None
                if tg is not None:
                    g = torch.from_numpy(np.ascontiguousarray(g_n[gi_va[a]][None])).to(dev)
                out = run(c, w_val, (valid | ~cfine) if mode is not None else None, g)
                s, n = _masked_mse(out, torch.nan_to_num(t), valid)
                tot += float(s)
                cnt += n
        net.train()
        return tot / cnt if cnt else None

    opt = torch.optim.Adam(net.parameters(), lr=float(lr))
    best = math.inf
    best_state = copy.deepcopy(net.state_dict())
    bad_epochs = 0
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=epochs * steps_per_epoch, desc=f"train {tm.name} x{f}")
    try:
        for _epoch in range(epochs):
            net.train()
            tot, cnt = 0.0, 0
            for _ in range(steps_per_epoch):
                c_t, f_t, w_t, valid, emask, g_t = batch()
                out = run(c_t, w_t, emask if (has_nan and mode is not None) else None, g_t)
                s, n = _masked_mse(out, torch.nan_to_num(f_t), valid)
                loss = s / max(n, 1)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                tot += float(s.detach())
                cnt += n
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{float(loss.detach()):.4g}")
            tr = tot / max(cnt, 1)
            va = val_loss()
            tm.history["train"].append(tr)
            tm.history["val"].append(va)
            score = tr if va is None else va
            if score < best:
                best, bad_epochs = score, 0
                best_state = copy.deepcopy(net.state_dict())
                if checkpoint is not None:
                    tm.save(checkpoint)
            else:
                bad_epochs += 1
                if bad_epochs >= patience:
                    break
    finally:
        if bar is not None:
            bar.close()
    net.load_state_dict(best_state)
    net.eval()
    return tm
