"""The IOOS compliance checker's CF suite on a netCDF file, offline, in a comparable form.

``cf_findings(path)`` runs ``compliance-checker --test cf:1.8`` through its Python API
(:class:`compliance_checker.suite.CheckSuite`) and returns the failed checks' messages at the
high (errors) and medium (warnings) priorities, one :class:`Finding` each: the priority,
the check's section (e.g. ``"§7.1 Cell Boundaries"``) and the message.
``new_findings(before, after)`` lists what ``after`` (an output) reports and ``before`` (its
input) does not.

Offline: the checker's only network access on a local file (taxon-name checks aside) is for
the CF standard-name table, which it downloads from github.com (cached under
``~/.local/share/compliance-checker``) when the file's ``standard_name_vocabulary`` contains
"CF Standard Name Table vNN" with NN other than the version it ships (93 in 6.1.0).  Here
that step (``CFBaseCheck._find_cf_standard_name_table``) is switched off, so every file is
checked against the table in the package (``compliance_checker/data/
cf-standard-name-table.xml``), the same for an input and its output, and any name look-up or
connection attempted while the checker runs raises (:func:`_no_network`).

Normalisation, so that an input and its output compare: whitespace is collapsed, the file's
own path is replaced by ``<file>``, and the sizes of the dimensions named in ``vary`` (the
horizontal dimensions, which downscaling changes) are replaced by ``<len(dim)>`` where they
stand as whole numbers.  Nothing else is abstracted: variable names, attribute values and
data types stay in the message, so a new problem on another variable, a changed fill value or
a changed type is a new finding.
"""

from __future__ import annotations

import contextlib
import re
import socket
import warnings
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np

CHECKER = "cf:1.8"
# the checker's weights: 3 = high (its "Errors"), 2 = medium ("Warnings"), 1 = low ("Info")
PRIORITIES = {3: "high", 2: "medium"}


@dataclass(frozen=True, order=True)
class Finding:
    priority: str  # "high" (error) or "medium" (warning)
    check: str  # the checker's section, e.g. "§5.6 Horizontal Coordinate Reference Systems..."
    message: str  # normalised
    detail: str = field(default="", compare=False)  # values behind the message; not compared

    def __str__(self) -> str:
        extra = f" ({self.detail})" if self.detail else ""
        return f"[{self.priority}] {self.check}: {self.message}{extra}"


@contextlib.contextmanager
def _no_network() -> Iterator[list[str]]:
    """Make every name look-up and socket connection fail (and record it) while the
    checker runs."""
    attempts: list[str] = []

    def refuse(*args: Any, **kwargs: Any) -> Any:
        attempts.append(repr(args[1:] if args and isinstance(args[0], socket.socket) else args))
        raise OSError("network access disabled while the compliance checker runs")

    with (
        mock.patch.object(socket.socket, "connect", refuse),
        mock.patch.object(socket.socket, "connect_ex", refuse),
        mock.patch.object(socket, "create_connection", refuse),
        mock.patch.object(socket, "getaddrinfo", refuse),
    ):
        yield attempts


def _suite() -> Any:
    from compliance_checker.suite import CheckSuite

    with warnings.catch_warnings():  # "the ioos_sos checker is deprecated"
        warnings.simplefilter("ignore", DeprecationWarning)
        CheckSuite.load_all_available_checkers()  # entry points; cached on the class
    return CheckSuite()


def normalise(message: str, *, path: str | Path, sizes: Mapping[str, int]) -> str:
    """``message`` with whitespace collapsed, ``path`` replaced by ``<file>`` and the
    ``sizes`` (dimension name -> length) replaced by ``<len(name)>`` where they stand alone
    (not inside a longer number, a version such as ``CF-1.8`` or a name)."""
    text = " ".join(str(message).split())
    for p in sorted({str(path), Path(path).name}, key=len, reverse=True):
        text = text.replace(p, "<file>")
    # longest numbers first, so that 1170 is not eaten as 117 + 0
    for dim, n in sorted(sizes.items(), key=lambda kv: -len(str(kv[1]))):
        text = re.sub(rf"(?<![\w.]){n}(?![\w.]|\.\d)", f"<len({dim})>", text)
    return text


def _walk(results: Iterable[Any], section: str | None = None) -> Iterator[tuple[str, Any]]:
    """(top-level section, result) for every grouped result, children included."""
    for r in results:
        top = section or str(r.name)
        yield top, r
        yield from _walk(r.children or (), top)


def _failed(result: Any) -> bool:
    value = result.value
    if isinstance(value, tuple):
        return bool(value[0] != value[1])
    return value is False


def cf_findings(
    path: str | Path, *, vary: Iterable[str] = (), checker: str = CHECKER
) -> list[Finding]:
    """The high and medium priority messages of the failed ``checker`` checks on ``path``.

    ``vary``: dimensions whose sizes are abstracted in the messages (see :func:`normalise`).
    A check that raises is a high-priority finding too (``check`` = its method name).
    """
    import netCDF4

    path = Path(path)
    with netCDF4.Dataset(path) as nc:
        sizes = {d: len(nc.dimensions[d]) for d in vary if d in nc.dimensions}
    from compliance_checker.cf import cf_base

    cs = _suite()
    with (
        _no_network() as attempts,
        # the packaged standard-name table, never a download
        mock.patch.object(cf_base.CFBaseCheck, "_find_cf_standard_name_table", return_value=False),
    ):
        ds = cs.load_dataset(str(path))
        try:
            runs = cs.run_all(ds, [checker], skip_checks=[])
        finally:
            ds.close()
    if attempts:
        raise RuntimeError(f"the compliance checker tried to connect: {attempts}")
    if checker not in runs:
        raise RuntimeError(f"compliance checker suite {checker!r} not found: {sorted(runs)}")
    groups, errors = runs[checker]
    found: set[Finding] = set()
    for section, r in _walk(groups):
        if r.weight not in PRIORITIES or not _failed(r):
            continue
        for m in r.msgs:
            msg = normalise(m, path=path, sizes=sizes)
            found.add(Finding(PRIORITIES[r.weight], section, msg))
    for name, (exc, _tb) in errors.items():
        msg = normalise(f"check raised {type(exc).__name__}: {exc}", path=path, sizes=sizes)
        found.add(Finding("high", name, msg))
    return sorted(found)


def new_findings(before: Iterable[Finding], after: Iterable[Finding]) -> list[Finding]:
    """Findings of ``after`` that ``before`` does not have (same priority, section, text)."""
    old = set(before)
    return sorted(f for f in after if f not in old)


def crop_netcdf(src: str | Path, dst: str | Path, slices: Mapping[str, slice]) -> Path:
    """Copy ``src`` to ``dst`` with the dimensions in ``slices`` cut, byte for byte otherwise.

    With netCDF4 and raw values (no masking or scaling), so that the copy keeps every type,
    attribute and fill value of the original; a crop written by xarray would add its own
    (``_FillValue`` on coordinates, for one) and hide those problems of an output.
    """
    import netCDF4

    with netCDF4.Dataset(src) as a, netCDF4.Dataset(dst, "w", format=a.data_model) as b:
        a.set_auto_maskandscale(False)
        b.setncatts({k: a.getncattr(k) for k in a.ncattrs()})
        for name, dim in a.dimensions.items():
            n = len(range(*slices[name].indices(len(dim)))) if name in slices else len(dim)
            b.createDimension(name, None if dim.isunlimited() else n)
        for name, v in a.variables.items():
            attrs = {k: v.getncattr(k) for k in v.ncattrs()}
            fill = attrs.pop("_FillValue", None)
            filters = v.filters() or {}
            w = b.createVariable(
                name,
                v.datatype,
                v.dimensions,
                zlib=bool(filters.get("zlib")),
                shuffle=bool(filters.get("shuffle")),
                complevel=int(filters.get("complevel") or 4),
                fill_value=fill if fill is not None else False,
            )
            w.set_auto_maskandscale(False)
            w.setncatts(attrs)
            index = tuple(slices.get(d, slice(None)) for d in v.dimensions)
            data = v[index] if v.dimensions else v.getValue()
            if v.dimensions:
                w[...] = np.asarray(data)
            else:
                w.assignValue(data)
    return Path(dst)


# ------------------------------------------------------------------------------------------
# what the checker does not look at
# ------------------------------------------------------------------------------------------
_REFERENCE_ATTRS = (
    "bounds",
    "coordinates",
    "ancillary_variables",
    "cell_measures",
    "grid_mapping",
    "cell_methods",
)


def referenced_names(attr: str, value: str) -> list[str]:
    """The variable (or, for ``cell_methods``, dimension) names that attribute ``attr``
    with text ``value`` refers to.

    ``grid_mapping`` in both forms: ``"crs"`` and ``"crs: lat lon crs2: x y"`` (grid mapping
    variables and the coordinates they apply to).  ``cell_measures``: the names after
    ``area:``/``volume:``.  ``cell_methods``: the names before the colons, comments in
    parentheses left out (``area`` and other standard names among them; the caller decides
    which of them ought to resolve).
    """
    text = str(value)
    if attr in ("bounds",):
        return [text.strip()] if text.strip() else []
    if attr in ("coordinates", "ancillary_variables"):
        return text.split()
    if attr == "cell_measures":
        return re.findall(r"\w+:\s*(\S+)", text)
    if attr == "grid_mapping":
        if ":" not in text:
            return text.split()
        return [t.rstrip(":") for t in text.replace(":", ": ").split()]
    if attr == "cell_methods":
        return re.findall(r"([^\s:()]+)\s*:", re.sub(r"\([^)]*\)", " ", text))
    raise ValueError(attr)


def reference_findings(path: str | Path) -> list[Finding]:
    """A finding for each name in a ``bounds``, ``coordinates``, ``ancillary_variables``,
    ``cell_measures``, ``grid_mapping`` or ``cell_methods`` attribute that is neither a
    variable nor a dimension of the file (``area`` and other non-names of ``cell_methods``
    show up too: compare with the input's findings)."""
    import netCDF4

    found = []
    with netCDF4.Dataset(path) as nc:
        known = set(nc.variables) | set(nc.dimensions)
        for vname, v in nc.variables.items():
            for attr in _REFERENCE_ATTRS:
                if attr not in v.ncattrs():
                    continue
                for name in referenced_names(attr, v.getncattr(attr)):
                    if name not in known:
                        msg = f"{vname}:{attr} names {name!r}, which is not in the file"
                        found.append(Finding("high", "xsr: references", msg))
    return sorted(set(found))


def _range_of(v: Any) -> tuple[float, float] | None:
    """(min, max) of the valid values of netCDF variable ``v`` (raw, unpacked: the
    ``valid_*`` and ``actual_range`` attributes are in the stored type), None if none."""
    v.set_auto_maskandscale(False)
    data = np.asarray(v[...])
    if data.dtype.kind not in "fiu" or data.size == 0:
        return None
    ok = np.ones(data.shape, bool)
    if data.dtype.kind == "f":
        ok &= np.isfinite(data)
    for k in ("_FillValue", "missing_value"):
        if k in v.ncattrs():
            for fv in np.atleast_1d(v.getncattr(k)).astype(data.dtype):
                ok &= ~(np.isnan(data) if data.dtype.kind == "f" and np.isnan(fv) else data == fv)
    if not ok.any():
        return None
    return float(data[ok].min()), float(data[ok].max())


def range_findings(path: str | Path) -> list[Finding]:
    """A finding for each variable whose values leave its ``valid_range``/``valid_min``/
    ``valid_max`` or do not span its ``actual_range`` exactly (CF 2.5.1: ``actual_range``
    holds the minimum and maximum of the valid data)."""
    import netCDF4

    found = []
    with netCDF4.Dataset(path) as nc:
        for vname, v in nc.variables.items():
            attrs = set(v.ncattrs())
            if not attrs & {"valid_range", "valid_min", "valid_max", "actual_range"}:
                continue
            r = _range_of(v)
            if r is None:
                continue
            lo, hi = r
            vmin = vmax = None
            if "valid_range" in attrs:
                vmin, vmax = (float(x) for x in np.ravel(v.getncattr("valid_range"))[:2])
            if "valid_min" in attrs:
                vmin = float(np.ravel(v.getncattr("valid_min"))[0])
            if "valid_max" in attrs:
                vmax = float(np.ravel(v.getncattr("valid_max"))[0])
            if (vmin is not None and lo < vmin) or (vmax is not None and hi > vmax):
                found.append(
                    Finding(
                        "high",
                        "xsr: valid range",
                        f"{vname} has values outside its valid range",
                        f"data {lo:.9g}..{hi:.9g}, valid {vmin}..{vmax}",
                    )
                )
            if "actual_range" in attrs:
                ar = np.ravel(v.getncattr("actual_range")).astype(np.float64)
                tol = 1e-6 * max(abs(lo), abs(hi), 1e-30)
                if ar.size != 2 or abs(ar[0] - lo) > tol or abs(ar[1] - hi) > tol:
                    found.append(
                        Finding(
                            "high",
                            "xsr: actual range",
                            f"{vname}:actual_range is not the minimum and maximum of its data",
                            f"data {lo:.9g}..{hi:.9g}, actual_range {ar.tolist()}",
                        )
                    )
    return sorted(set(found))


def findings(path: str | Path, *, vary: Iterable[str] = ()) -> list[Finding]:
    """The checker's findings (:func:`cf_findings`) and this module's own
    (:func:`reference_findings`, :func:`range_findings`)."""
    return sorted({*cf_findings(path, vary=vary), *reference_findings(path), *range_findings(path)})


def by_priority(items: Iterable[Finding]) -> dict[str, list[Finding]]:
    """``{"high": [...], "medium": [...]}``: errors and warnings."""
    out: dict[str, list[Finding]] = {p: [] for p in PRIORITIES.values()}
    for f in items:
        out.setdefault(f.priority, []).append(f)
    return out
