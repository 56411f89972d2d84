"""Tests of xsr.grid: bounds, refinement/coarsening of coordinates, cell areas."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED_DATA
from hypothesis import example, given
from hypothesis import strategies as st

from xsr import grid
from xsr.exceptions import CoordinateError, FactorError, OptionError, ShapeError

R = grid.EARTH_RADIUS
SPHERE = 4.0 * np.pi * R**2
DATA = SHARED_DATA


def data_file(name: str) -> Path:
    path = DATA / name
    if not path.exists():
        pytest.skip(f"real data file {path} not present")
    return path


def xyz(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    phi, lam = np.deg2rad(lat), np.deg2rad(lon)
    return np.stack([np.cos(phi) * np.cos(lam), np.cos(phi) * np.sin(lam), np.sin(phi)], -1)


def latlon(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lat = np.rad2deg(np.arctan2(v[..., 2], np.hypot(v[..., 0], v[..., 1])))
    return lat, np.rad2deg(np.arctan2(v[..., 1], v[..., 0]))


def same_lon(a: np.ndarray, b: np.ndarray, atol: float) -> bool:
    d = (np.asarray(a) - np.asarray(b) + 180.0) % 360.0 - 180.0
    return bool(np.all(np.abs(d) <= atol))


def tiling_error(coarse: np.ndarray, fine: np.ndarray, f: int) -> float:
    ny, nx = coarse.shape
    sums = fine.reshape(ny, f, nx, f).sum(axis=(1, 3))
    return float(np.max(np.abs(sums / coarse - 1.0)))


def regular_2d(lat1d: np.ndarray, lon1d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lon2d, lat2d = np.meshgrid(lon1d, lat1d)
    return lat2d, lon2d


# ------------------------------------------------------------------------------------------
# check_monotonic / regular_spacing
# ------------------------------------------------------------------------------------------
def test_check_monotonic_directions() -> None:
    assert grid.check_monotonic(np.array([0.0, 1.0, 3.0]), name="x") == 1
    assert grid.check_monotonic(np.array([5.0, 2.0, -1.0], dtype=np.float32), name="y") == -1


@pytest.mark.parametrize(
    ("values", "index"),
    [([0.0, 1.0, 2.0, 1.5, 3.0], 3), ([3.0, 2.0, 2.0, 1.0], 2), ([1.0, 1.0, 2.0], 1)],
)
def test_check_monotonic_names_first_offender(values: list[float], index: int) -> None:
    with pytest.raises(CoordinateError, match=rf"'lat'.*index {index}\b.*sortby"):
        grid.check_monotonic(np.array(values), name="lat")


def test_check_monotonic_rejects_nan_short_and_2d() -> None:
    with pytest.raises(CoordinateError, match=r"non-finite value \(nan\) at index 2"):
        grid.check_monotonic(np.array([0.0, 1.0, np.nan, 3.0]), name="x")
    with pytest.raises(CoordinateError, match="1 value"):
        grid.check_monotonic(np.array([1.0]), name="x")
    with pytest.raises(CoordinateError, match="1-D"):
        grid.check_monotonic(np.zeros((2, 2)), name="x")
    with pytest.raises(ValueError, match="at least 2"):  # also a ValueError
        grid.check_monotonic(np.array([]), name="x")


def test_check_monotonic_period_accepts_dateline_crossing() -> None:
    lon = np.array([170.0, 175.0, 180.0, -175.0, -170.0])
    with pytest.raises(CoordinateError):
        grid.check_monotonic(lon, name="lon")
    assert grid.check_monotonic(lon, name="lon", period=360.0) == 1
    assert grid.check_monotonic(np.array([5.0, 0.0, 355.0]), name="lon", period=360.0) == -1


def test_regular_spacing() -> None:
    assert grid.regular_spacing(np.arange(10) * 0.25 + 3) == pytest.approx(0.25, rel=1e-15)
    assert grid.regular_spacing(np.linspace(10, 0, 11)) == pytest.approx(-1.0)
    assert grid.regular_spacing(np.array([0.0, 1.0, 3.0])) is None
    assert grid.regular_spacing(np.array([1.0])) is None
    assert grid.regular_spacing(np.array([0.0, 1.0, 2.0 + 1e-3]), rtol=1e-2) is not None


# ------------------------------------------------------------------------------------------
# infer_bounds_1d
# ------------------------------------------------------------------------------------------
def test_infer_bounds_ascending_irregular() -> None:
    b = grid.infer_bounds_1d(np.array([0.0, 1.0, 3.0, 7.0]))
    np.testing.assert_array_equal(b, [[-0.5, 0.5], [0.5, 2.0], [2.0, 5.0], [5.0, 9.0]])
    assert b.dtype == np.float64


def test_infer_bounds_descending_follows_direction() -> None:
    b = grid.infer_bounds_1d(np.array([10.0, 8.0, 4.0]))
    np.testing.assert_array_equal(b, [[11.0, 9.0], [9.0, 6.0], [6.0, 2.0]])
    assert (b[:, 0] > b[:, 1]).all()


def test_infer_bounds_latitude_clipped() -> None:
    b = grid.infer_bounds_1d(np.array([-90.0, -60.0, -30.0]), kind="latitude")
    np.testing.assert_array_equal(b, [[-90.0, -75.0], [-75.0, -45.0], [-45.0, -15.0]])
    b = grid.infer_bounds_1d(np.array([88.0, 89.5]), kind="latitude")
    np.testing.assert_array_equal(b[-1], [88.75, 90.0])
    # rotated coordinates beyond +-90 are fine as "other", not as latitude
    with pytest.raises(CoordinateError, match=r"outside \[-90, 90\]"):
        grid.infer_bounds_1d(np.array([80.0, 95.0]), kind="latitude")
    assert grid.infer_bounds_1d(np.array([80.0, 95.0]))[-1, 1] == 102.5


def test_infer_bounds_longitude_dateline() -> None:
    b = grid.infer_bounds_1d(np.array([170.0, 175.0, 180.0, -175.0, -170.0]), kind="longitude")
    expected = [[167.5, 172.5], [172.5, 177.5], [177.5, 182.5], [-177.5, -172.5], [-172.5, -167.5]]
    np.testing.assert_array_equal(b, expected)


def test_infer_bounds_errors() -> None:
    with pytest.raises(CoordinateError, match="at least 2"):
        grid.infer_bounds_1d(np.array([1.0]))
    with pytest.raises(OptionError, match="kind must be one of"):
        grid.infer_bounds_1d(np.array([1.0, 2.0]), kind="lat")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------
# refine_1d / coarsen_1d
# ------------------------------------------------------------------------------------------
def test_refine_simple_and_descending() -> None:
    c, b = grid.refine_1d(np.array([0.5, 1.5]), 2)
    np.testing.assert_array_equal(c, [0.25, 0.75, 1.25, 1.75])
    np.testing.assert_array_equal(b, [[0.0, 0.5], [0.5, 1.0], [1.0, 1.5], [1.5, 2.0]])
    c, b = grid.refine_1d(np.array([1.5, 0.5], dtype=np.float32), 2)
    assert c.dtype == np.float64 and b.dtype == np.float64
    np.testing.assert_array_equal(c, [1.75, 1.25, 0.75, 0.25])
    np.testing.assert_array_equal(b, [[2.0, 1.5], [1.5, 1.0], [1.0, 0.5], [0.5, 0.0]])


def test_refine_given_bounds_subdivides_exactly() -> None:
    centres = np.array([0.2, 3.0])  # not the midpoints of their bounds
    bounds = np.array([[0.0, 1.0], [1.0, 4.0]])
    c, b = grid.refine_1d(centres, 3, bounds=bounds)
    np.testing.assert_allclose(b[:3].ravel(), [0, 1 / 3, 1 / 3, 2 / 3, 2 / 3, 1], rtol=1e-15)
    np.testing.assert_allclose(b[3:, 0], [1.0, 2.0, 3.0], rtol=1e-15)
    np.testing.assert_allclose(c, b.mean(axis=1), rtol=1e-15)
    # a single cell is fine when its bounds are given
    c1, b1 = grid.refine_1d(np.array([5.0]), 4, bounds=np.array([[6.0, 4.0]]))
    np.testing.assert_array_equal(b1[:, 0], [6.0, 5.5, 5.0, 4.5])
    np.testing.assert_array_equal(c1, [5.75, 5.25, 4.75, 4.25])


def test_refine_bounds_validation() -> None:
    centres = np.array([0.5, 1.5, 2.5])
    with pytest.raises(CoordinateError, match=r"shape \(2, 2\), expected \(3, 2\)"):
        grid.refine_1d(centres, 2, bounds=np.zeros((2, 2)))
    with pytest.raises(CoordinateError, match=r"centre 1\.5 of cell 1 is not inside"):
        grid.refine_1d(centres, 2, bounds=np.array([[0, 1], [2, 3], [2, 3]]))
    with pytest.raises(CoordinateError, match="do not follow the increasing direction"):
        grid.refine_1d(centres, 2, bounds=np.array([[0, 1], [2, 1], [2, 3]]))
    with pytest.raises(CoordinateError, match="non-finite"):
        grid.refine_1d(centres, 2, bounds=np.array([[0, 1], [1, np.nan], [2, 3]]))
    with pytest.raises(CoordinateError, match="at least 2"):
        grid.refine_1d(np.array([1.0]), 2)
    with pytest.raises(CoordinateError, match=r"outside \[-90, 90\]"):
        grid.refine_1d(
            np.array([89.0, 91.0]), 2, bounds=np.array([[88, 90], [90, 92]]), kind="latitude"
        )


@pytest.mark.parametrize("factor", [0, -2, 2.5, True, "2"])
def test_factor_errors(factor: object) -> None:
    with pytest.raises(FactorError, match="integer >= 1"):
        grid.refine_1d(np.array([0.0, 1.0]), factor)  # type: ignore[arg-type]
    with pytest.raises(FactorError):
        grid.coarsen_1d(np.zeros(4), np.zeros((4, 2)), factor)  # type: ignore[arg-type]


def test_factor_one_is_identity() -> None:
    centres = np.array([0.5, 1.5, 3.0])
    bounds = grid.infer_bounds_1d(centres)
    c, b = grid.refine_1d(centres, np.int64(1), bounds=bounds)
    np.testing.assert_array_equal(b, bounds)
    np.testing.assert_allclose(c, bounds.mean(axis=1))


def test_coarsen_not_divisible() -> None:
    c, b = grid.refine_1d(np.arange(5.0), 2)
    with pytest.raises(ShapeError, match=r"10 cells, not a multiple of factor 3.*trim it to 9"):
        grid.coarsen_1d(c, b, 3)
    with pytest.raises(CoordinateError, match="expected"):
        grid.coarsen_1d(c, b[:-1], 2)


def test_round_trip_regular_latitude() -> None:
    lat = np.arange(-89.875, 90, 0.25)
    bounds = grid.infer_bounds_1d(lat, kind="latitude")
    c, b = grid.refine_1d(lat, 4, kind="latitude")
    assert c.shape == (lat.size * 4,) and b.shape == (lat.size * 4, 2)
    assert b[0, 0] == -90.0 and b[-1, 1] == 90.0
    cc, cb = grid.coarsen_1d(c, b, 4, kind="latitude")
    np.testing.assert_array_equal(cb, bounds)
    np.testing.assert_allclose(cc, lat, rtol=0, atol=1e-12)


# --- longitudes ---------------------------------------------------------------------------
def test_refine_longitude_wrapped_cell_0_360() -> None:
    centres = np.array([359.8, 0.0, 0.2])
    bounds = np.array([[359.7, 359.9], [359.9, 0.1], [0.1, 0.3]])
    c, b = grid.refine_1d(centres, 2, bounds=bounds, kind="longitude")
    np.testing.assert_allclose(c, [359.75, 359.85, 359.95, 0.05, 0.15, 0.25], atol=1e-12)
    assert ((c >= 0) & (c < 360)).all()
    np.testing.assert_allclose(b[2], [359.9, 360.0], atol=1e-12)
    np.testing.assert_allclose(b[3], [0.0, 0.1], atol=1e-12)
    assert ((b[:, 1] - b[:, 0]) > 0).all()  # no fine cell wraps
    cc, cb = grid.coarsen_1d(c, b, 2, kind="longitude")
    np.testing.assert_allclose(cc, centres, atol=1e-12)
    assert same_lon(cb, bounds, 1e-12)
    # without kind="longitude" the wrapped cells are rejected with a hint
    with pytest.raises(CoordinateError, match=r"index 2.*kind='longitude'"):
        grid.refine_1d(centres, 2, bounds=bounds)
    with pytest.raises(CoordinateError, match=r"centre 0\.0 of cell 0 is not inside.*kind="):
        grid.refine_1d(np.array([0.0]), 2, bounds=np.array([[359.9, 0.1]]))
    # a lone centre 0 fits both conventions; -180..180 is preferred
    c1, _ = grid.refine_1d(np.array([0.0]), 2, bounds=np.array([[359.9, 0.1]]), kind="longitude")
    np.testing.assert_allclose(c1, [-0.05, 0.05], atol=1e-12)


def test_refine_longitude_wrapped_cell_180() -> None:
    centres = np.array([179.8, -180.0, -179.8])
    bounds = np.array([[179.7, 179.9], [179.9, -179.9], [-179.9, -179.7]])
    c, b = grid.refine_1d(centres, 2, bounds=bounds, kind="longitude")
    np.testing.assert_allclose(c, [179.75, 179.85, 179.95, -179.95, -179.85, -179.75], atol=1e-12)
    assert ((c >= -180) & (c < 180)).all()
    cc, cb = grid.coarsen_1d(c, b, 2, kind="longitude")
    np.testing.assert_allclose(cc, centres, atol=1e-12)
    assert same_lon(cb, bounds, 1e-12)


def test_refine_longitude_descending_wrapped() -> None:
    centres = np.array([0.2, 0.0, 359.8])
    bounds = np.array([[0.3, 0.1], [0.1, 359.9], [359.9, 359.7]])
    c, b = grid.refine_1d(centres, 2, bounds=bounds, kind="longitude")
    np.testing.assert_allclose(c, [0.25, 0.15, 0.05, 359.95, 359.85, 359.75], atol=1e-12)
    assert ((b[:, 1] - b[:, 0]) < 0).all()


def test_refine_longitude_cell_straddling_zero() -> None:
    """CMIP-style grid 0, 1.25, ...: the first cell is [-0.625, 0.625]."""
    lon = np.arange(0, 360, 1.25)
    bounds = grid.infer_bounds_1d(lon, kind="longitude")
    np.testing.assert_array_equal(bounds[0], [-0.625, 0.625])
    c, b = grid.refine_1d(lon, 2, kind="longitude")
    assert ((c >= 0) & (c < 360)).all()
    assert c[0] == 359.6875 and c[1] == 0.3125
    np.testing.assert_array_equal(b[0], [359.375, 360.0])
    assert grid.check_monotonic(c, name="lon", period=360.0) == 1
    assert grid.is_periodic_longitude(c, b)
    cc, cb = grid.coarsen_1d(c, b, 2, kind="longitude")
    np.testing.assert_array_equal(cb, bounds)
    np.testing.assert_allclose(cc, lon, atol=1e-12)


def test_refine_longitude_regional_dateline() -> None:
    lon = np.array([178.0, 180.0, -178.0, -176.0])
    c, b = grid.refine_1d(lon, 4, kind="longitude")
    assert ((c >= -180) & (c < 180)).all()
    assert ((b >= -180) & (b <= 180)).all()
    assert grid.check_monotonic(c, name="lon", period=360.0) == 1
    np.testing.assert_allclose(np.diff(np.unwrap(c, period=360)), 0.5, atol=1e-12)
    assert not grid.is_periodic_longitude(lon)


def test_wrap_longitude_and_convention() -> None:
    np.testing.assert_array_equal(grid.wrap_longitude([-0.5, 360.0, 10.0], 0.0), [359.5, 0, 10])
    np.testing.assert_array_equal(grid.wrap_longitude([180.0, -180.5], -180.0), [-180, 179.5])
    assert grid.wrap_longitude(np.array([-1e-14]), 0.0)[0] < 360.0
    edge = np.nextafter(180.0, 0.0)
    assert grid.wrap_longitude(np.array([edge]), -180.0)[0] == edge
    assert -180 <= grid.wrap_longitude(np.array([edge - 360.0]), -180.0)[0] < 180
    assert grid.longitude_convention([0.125, 359.875]) == 0.0
    assert grid.longitude_convention([-179.5, 179.5]) == -180.0
    assert grid.longitude_convention([10.0, 50.0]) == -180.0
    assert grid.longitude_convention([350.0, 370.0]) is None
    assert grid.longitude_convention([-0.5, 360.5], slack=1.0) == 0.0


# --- periodicity --------------------------------------------------------------------------
def test_is_periodic_longitude() -> None:
    quarter = np.arange(0.125, 360, 0.25)
    assert grid.is_periodic_longitude(quarter)
    assert grid.is_periodic_longitude(quarter[::-1])
    assert grid.is_periodic_longitude(np.arange(-180.0, 180.0, 1.0))
    assert grid.is_periodic_longitude(np.roll(np.arange(-179.5, 180.0, 1.0), 37))
    assert not grid.is_periodic_longitude(np.arange(0.0, 361.0, 1.0))  # cyclic column
    assert not grid.is_periodic_longitude(np.arange(0.0, 359.0, 1.0))  # one cell short
    assert not grid.is_periodic_longitude(np.arange(10.0, 60.0, 0.5))
    bounds = grid.infer_bounds_1d(quarter, kind="longitude")
    assert grid.is_periodic_longitude(quarter, bounds)
    assert not grid.is_periodic_longitude(quarter[:-1], bounds[:-1])


# --- properties ---------------------------------------------------------------------------
@st.composite
def monotonic_coords(draw: st.DrawFn) -> np.ndarray:
    n = draw(st.integers(2, 25))
    steps = draw(st.lists(st.floats(1e-3, 100.0, allow_nan=False), min_size=n - 1, max_size=n - 1))
    start = draw(st.floats(-1e3, 1e3, allow_nan=False))
    values = start + np.concatenate([[0.0], np.cumsum(steps)])
    return values[::-1].copy() if draw(st.booleans()) else values


@given(values=monotonic_coords(), factor=st.integers(2, 8))
def test_property_refine_coarsen_round_trip(values: np.ndarray, factor: int) -> None:
    bounds = grid.infer_bounds_1d(values)
    c, b = grid.refine_1d(values, factor)
    direction = grid.check_monotonic(values, name="x")
    assert grid.check_monotonic(c, name="fine") == direction
    np.testing.assert_array_equal(b[1:, 0], b[:-1, 1])  # contiguous
    assert ((b[:, 1] - b[:, 0]) * direction > 0).all()
    assert (np.minimum(b[:, 0], b[:, 1]) < c).all() and (c < np.maximum(b[:, 0], b[:, 1])).all()
    cc, cb = grid.coarsen_1d(c, b, factor)
    np.testing.assert_array_equal(cb, bounds)
    scale = 1e-12 * (1.0 + np.abs(values).max())
    np.testing.assert_allclose(cc, bounds.mean(axis=1), rtol=0, atol=scale)


@given(
    n=st.integers(2, 40),
    step=st.floats(0.01, 10.0),
    start=st.floats(-1e3, 1e3),
    factor=st.integers(2, 8),
)
def test_property_regular_round_trip_centres(
    n: int, step: float, start: float, factor: int
) -> None:
    values = start + step * np.arange(n)
    c, b = grid.refine_1d(values, factor)
    cc, cb = grid.coarsen_1d(c, b, factor)
    np.testing.assert_allclose(cc, values, rtol=1e-12, atol=1e-12 * (1 + abs(start)))
    np.testing.assert_array_equal(cb, grid.infer_bounds_1d(values))


@example(n=2, step=1.0, start=178.99999999999997, convention=-180.0, factor=3)
@given(
    n=st.integers(2, 60),
    step=st.floats(0.05, 5.0),
    start=st.floats(-180.0, 180.0),
    convention=st.sampled_from([0.0, -180.0]),
    factor=st.integers(2, 8),
)
def test_property_longitude_round_trip(
    n: int, step: float, start: float, convention: float, factor: int
) -> None:
    lon = grid.wrap_longitude(start + step * np.arange(n), convention)
    lo = grid.longitude_convention(lon)
    assert lo is not None
    c, b = grid.refine_1d(lon, factor, kind="longitude")
    assert ((c >= lo) & (c < lo + 360)).all()
    assert grid.check_monotonic(c, name="lon", period=360.0) == 1
    assert ((b[:, 1] - b[:, 0]) > 0).all()
    cc, cb = grid.coarsen_1d(c, b, factor, kind="longitude")
    assert same_lon(cc, lon, 1e-9)
    assert same_lon(cb, grid.infer_bounds_1d(lon, kind="longitude"), 1e-9)


# ------------------------------------------------------------------------------------------
# rectilinear areas
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("step", [0.25, 1.0, 7.5])
def test_global_area_sums_to_sphere(step: float) -> None:
    lat = np.arange(-90 + step / 2, 90, step)
    lon = np.arange(-180 + step / 2, 180, step)
    area = grid.cell_area_lonlat(
        grid.infer_bounds_1d(lat, kind="latitude"), grid.infer_bounds_1d(lon, kind="longitude")
    )
    assert area.shape == (lat.size, lon.size)
    assert area.sum() == pytest.approx(SPHERE, rel=1e-12)
    # fine cells of each coarse cell sum to it
    fy = grid.refine_1d(lat, 3, kind="latitude")[1]
    fx = grid.refine_1d(lon, 3, kind="longitude")[1]
    assert tiling_error(area, grid.cell_area_lonlat(fy, fx), 3) < 1e-12


def test_cell_area_lonlat_analytic_and_wrapped() -> None:
    lat_b = np.array([[0.0, 30.0], [90.0, 60.0]])  # either orientation
    lon_b = np.array([[10.0, 20.0], [359.0, 1.0], [179.0, -179.0], [0.0, 360.0]])
    a = grid.cell_area_lonlat(lat_b, lon_b, radius=1.0)
    band = np.array([0.5, 1 - np.sqrt(3) / 2])
    expected = band[:, None] * np.deg2rad([10.0, 2.0, 2.0, 360.0])[None, :]
    np.testing.assert_allclose(a, expected, rtol=1e-13)
    with pytest.raises(CoordinateError, match=r"outside \[-90, 90\]"):
        grid.cell_area_lonlat(np.array([[80.0, 95.0]]), lon_b)
    with pytest.raises(ShapeError, match=r"shape \(n, 2\)"):
        grid.cell_area_lonlat(np.zeros(3), lon_b)
    with pytest.raises(OptionError, match="radius"):
        grid.cell_area_lonlat(lat_b, lon_b, radius=-1.0)


def test_cell_area_xy() -> None:
    a = grid.cell_area_xy(np.array([[10.0, 8.0], [8.0, 4.0]]), np.array([[0.0, 1.0], [1, 3]]))
    np.testing.assert_array_equal(a, [[2.0, 4.0], [4.0, 8.0]])
    with pytest.raises(ShapeError):
        grid.cell_area_xy(np.zeros((2, 3)), np.zeros((2, 2)))


# ------------------------------------------------------------------------------------------
# curvilinear grids
# ------------------------------------------------------------------------------------------
def test_vertices_bounds_round_trip_and_cf_order() -> None:
    v = np.arange(12.0).reshape(3, 4)
    b = grid.vertices_to_bounds_2d(v)
    assert b.shape == (2, 3, 4)
    np.testing.assert_array_equal(b[0, 0], [v[0, 0], v[0, 1], v[1, 1], v[1, 0]])
    np.testing.assert_array_equal(b[1, 2], [v[1, 2], v[1, 3], v[2, 3], v[2, 2]])
    np.testing.assert_array_equal(grid.bounds_to_vertices_2d(b), v)
    shifted = b.copy()
    shifted[0, 1] += 360.0  # per-cell longitude convention is accepted
    assert grid.bounds_to_vertices_2d(shifted).shape == (3, 4)
    broken = b.copy()
    broken[1, 1, 0] += 0.5
    with pytest.raises(CoordinateError, match="not contiguous"):
        grid.bounds_to_vertices_2d(broken)
    assert grid.bounds_to_vertices_2d(broken, check=False)[1, 1] == v[1, 1] + 0.5
    with pytest.raises(ShapeError, match=r"\(ny, nx, 4\)"):
        grid.bounds_to_vertices_2d(np.zeros((2, 3, 2)))
    with pytest.raises(ShapeError):
        grid.vertices_to_bounds_2d(np.zeros(5))


def test_vertices_of_regular_grid() -> None:
    lat1d, lon1d = np.arange(-60.5, 61, 1.0), np.arange(10.5, 30, 1.0)
    lat_v, lon_v = grid.vertices_from_centres_2d(*regular_2d(lat1d, lon1d))
    assert lat_v.shape == (lat1d.size + 1, lon1d.size + 1)
    expected_lon = np.broadcast_to(np.arange(10.0, 31.0), lon_v.shape)
    np.testing.assert_allclose(lon_v[:, 1:-1], expected_lon[:, 1:-1], atol=1e-9)
    np.testing.assert_allclose(lon_v, expected_lon, atol=2e-4)  # edges: extrapolated
    np.testing.assert_allclose(
        lat_v[1:-1, 1:-1].T, np.broadcast_to(np.arange(-60.0, 61.0), (19, 121)), atol=2e-3
    )
    np.testing.assert_allclose(lat_v[:, 0], np.arange(-61.0, 62.0), atol=5e-3)
    lat_c, lon_c = grid.centres_from_vertices_2d(lat_v, lon_v)
    np.testing.assert_allclose(lat_c, regular_2d(lat1d, lon1d)[0], atol=5e-3)
    np.testing.assert_allclose(lon_c, regular_2d(lat1d, lon1d)[1], atol=1e-9)
    with pytest.raises(ShapeError, match="at least 2"):
        grid.vertices_from_centres_2d(np.zeros((1, 3)), np.zeros((1, 3)))
    with pytest.raises(ShapeError, match="same shape"):
        grid.vertices_from_centres_2d(np.zeros((2, 3)), np.zeros((3, 2)))
    with pytest.raises(CoordinateError, match="non-finite"):
        grid.vertices_from_centres_2d(np.full((2, 2), np.nan), np.zeros((2, 2)))


def test_octant_area_exact() -> None:
    lat_v = np.array([[0.0, 0.0], [90.0, 90.0]])
    lon_v = np.array([[0.0, 90.0], [0.0, 0.0]])
    assert grid.cell_area_vertices(lat_v, lon_v)[0, 0] == pytest.approx(SPHERE / 8, rel=1e-14)
    # the orientation of the grid does not matter
    assert grid.cell_area_vertices(lat_v[::-1], lon_v[::-1])[0, 0] == pytest.approx(SPHERE / 8)


def test_vertex_area_matches_lonlat_for_small_cells() -> None:
    lat1d, lon1d = np.arange(-80.05, 80.1, 0.1 * 37), np.arange(0.05, 3, 0.1)
    yb = grid.infer_bounds_1d(lat1d, kind="latitude")
    xb = grid.infer_bounds_1d(lon1d, kind="longitude")
    exact = grid.cell_area_lonlat(yb, xb)
    lat_v, lon_v = regular_2d(np.append(yb[:, 0], yb[-1, 1]), np.append(xb[:, 0], xb[-1, 1]))
    approx = grid.cell_area_vertices(lat_v, lon_v)
    # great-circle vs parallel edges differ by O(dlon^2 * dlat / dlat)
    np.testing.assert_allclose(approx, exact, rtol=1e-5)


def test_global_curvilinear_vertices_cover_sphere() -> None:
    lat1d, lon1d = np.arange(-88.75, 90, 2.5), np.arange(1.25, 360, 2.5)
    lat_v, lon_v = grid.vertices_from_centres_2d(*regular_2d(lat1d, lon1d), periodic_x=True)
    np.testing.assert_allclose(lat_v[-1], 90.0, atol=1e-9)
    np.testing.assert_allclose(lat_v[0], -90.0, atol=1e-9)
    assert ((lon_v >= 0) & (lon_v < 360)).all()
    area = grid.cell_area_vertices(lat_v, lon_v)
    assert (area > 0).all()
    assert area.sum() == pytest.approx(SPHERE, rel=1e-10)
    fine = grid.cell_area_vertices(*grid.refine_curvilinear(lat_v, lon_v, 2)[2:])
    assert tiling_error(area, fine, 2) < 1e-10


@pytest.mark.parametrize("shift", [0.0, 30.0, 150.0])
def test_dateline_grid_areas_invariant(shift: float) -> None:
    """A grid straddling the dateline has the same geometry as the same grid moved away."""
    lat1d = np.arange(40.0, 52.0, 1.0)
    lon1d = np.arange(170.0, 190.0, 1.0)
    lat2d, lon2d = regular_2d(lat1d, lon1d)
    lon2d = lon2d + 2.0 * np.sin(np.deg2rad(lat2d) * 8)  # make it curvilinear
    ref_v = grid.vertices_from_centres_2d(lat2d, lon2d - 100.0)
    ref = grid.cell_area_vertices(*ref_v)
    moved = grid.wrap_longitude(lon2d + shift, -180.0)
    lat_v, lon_v = grid.vertices_from_centres_2d(lat2d, moved)
    assert ((lon_v >= -180) & (lon_v < 180)).all()
    np.testing.assert_allclose(grid.cell_area_vertices(lat_v, lon_v), ref, rtol=1e-9)
    _, lon_c, _, lon_vf = grid.refine_curvilinear(lat_v, lon_v, 3)
    assert ((lon_c >= -180) & (lon_c < 180)).all()
    assert ((lon_vf >= -180) & (lon_vf <= 180)).all()
    assert same_lon(lon_c[1::3, 1::3], moved, 0.02)  # odd factor: centre of centres


def test_refine_curvilinear_regular_grid() -> None:
    lat_v, lon_v = regular_2d(np.array([0.0, 10.0, 30.0]), np.array([350.0, 355.0, 365.0]))
    lat_c, lon_c, lat_vf, lon_vf = grid.refine_curvilinear(lat_v, lon_v, 2)
    assert lat_c.shape == (4, 4) and lat_vf.shape == (5, 5)
    np.testing.assert_array_equal(lat_vf[::2, ::2], lat_v)
    np.testing.assert_array_equal(lon_vf[::2, ::2], grid.wrap_longitude(lon_v, 0.0))
    assert ((lon_vf >= 0) & (lon_vf < 360)).all()
    # points on meridian edges stay on the meridian; the equator is a great circle
    assert same_lon(lon_vf[1::2, ::2], lon_v[1:], 1e-12)
    np.testing.assert_allclose(lat_vf[0], 0.0, atol=1e-12)
    # centres use the input convention (0..360) even where the corner was 365
    assert ((lon_c >= 0) & (lon_c < 360)).all()
    assert lon_c[0, -1] == pytest.approx(2.5, abs=0.01)
    _, lon_c_raw, _, _ = grid.refine_curvilinear(lat_v, lon_v, 2, lon_min=None)
    assert lon_c_raw[0, -1] == pytest.approx(362.5, abs=0.01)
    _, lon_c_180, _, _ = grid.refine_curvilinear(lat_v, lon_v, 2, lon_min=-180.0)
    assert lon_c_180[0, 0] == pytest.approx(-10 + 1.25, abs=0.01)
    with pytest.raises(OptionError, match="lon_min"):
        grid.refine_curvilinear(lat_v, lon_v, 2, lon_min="east")  # type: ignore[arg-type]
    with pytest.raises(FactorError):
        grid.refine_curvilinear(lat_v, lon_v, 0)
    one = grid.refine_curvilinear(lat_v, lon_v, 1)
    np.testing.assert_array_equal(one[2], lat_v)


@st.composite
def rotated_grids(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    ny, nx = draw(st.integers(2, 6)), draw(st.integers(2, 6))
    step = draw(st.floats(0.05, 8.0))
    angles = draw(st.tuples(*[st.floats(-np.pi, np.pi)] * 3))
    warp = draw(st.floats(0.0, 0.3))
    jj, ii = np.meshgrid(np.arange(ny + 1.0), np.arange(nx + 1.0), indexing="ij")
    lat = (jj - ny / 2) * step + warp * step * np.sin(ii)
    lon = (ii - nx / 2) * step + warp * step * np.cos(jj)
    rot = np.eye(3)
    for axis, a in enumerate(angles):
        c, s = np.cos(a), np.sin(a)
        m = np.eye(3)
        p, q = [(1, 2), (0, 2), (0, 1)][axis]
        m[p, p] = m[q, q] = c
        m[p, q], m[q, p] = -s, s
        rot = rot @ m
    return latlon(xyz(lat, lon) @ rot.T)


@given(vertices=rotated_grids(), factor=st.integers(2, 6))
def test_property_curvilinear_tiling(vertices: tuple[np.ndarray, np.ndarray], factor: int) -> None:
    lat_v, lon_v = vertices
    coarse = grid.cell_area_vertices(lat_v, lon_v)
    lat_c, lon_c, lat_vf, lon_vf = grid.refine_curvilinear(lat_v, lon_v, factor)
    np.testing.assert_array_equal(lat_vf[::factor, ::factor], lat_v)
    np.testing.assert_array_equal(lon_vf[::factor, ::factor], lon_v)  # lon_v is in -180..180
    assert (np.abs(lon_c) <= 180).all() and (np.abs(lon_vf) <= 180).all()
    fine = grid.cell_area_vertices(lat_vf, lon_vf)
    assert (fine > 0).all()
    assert tiling_error(coarse, fine, factor) < 1e-10
    ny, nx = coarse.shape
    assert lat_c.shape == (ny * factor, nx * factor)
    # fine centres lie inside the coarse cells: close to their fine cell's corner mean
    cl, co = grid.centres_from_vertices_2d(lat_vf, lon_vf)
    np.testing.assert_allclose(xyz(lat_c, lon_c), xyz(cl, co), atol=1e-3)


# ------------------------------------------------------------------------------------------
# real files
# ------------------------------------------------------------------------------------------
def test_real_ssh_global_quarterdeg() -> None:
    xr = pytest.importorskip("xarray")
    with xr.open_dataset(data_file("ssh_global_quarterdeg_20190223.nc")) as ds:
        lat = ds.latitude.values.astype(np.float64)
        lon = ds.longitude.values.astype(np.float64)
        lat_b = ds.lat_bnds.values.astype(np.float64)
        lon_b = ds.lon_bnds.values.astype(np.float64)
    assert grid.check_monotonic(lat, name="latitude") == 1
    assert grid.is_periodic_longitude(lon)
    assert grid.is_periodic_longitude(lon, lon_b)
    assert not grid.is_periodic_longitude(lon[:-4], lon_b[:-4])
    np.testing.assert_array_equal(grid.infer_bounds_1d(lat, kind="latitude"), lat_b)
    for centres, bounds, kind in ((lat, lat_b, "latitude"), (lon, lon_b, "longitude")):
        c, b = grid.refine_1d(centres, 4, bounds=bounds, kind=kind)  # type: ignore[arg-type]
        assert c.shape == (centres.size * 4,)
        cc, cb = grid.coarsen_1d(c, b, 4, kind=kind)  # type: ignore[arg-type]
        np.testing.assert_array_equal(cb, bounds)
        np.testing.assert_allclose(cc, centres, atol=1e-12)
    fine_lon = grid.refine_1d(lon, 2, bounds=lon_b, kind="longitude")[0]
    assert fine_lon.min() > 0 and fine_lon.max() < 360
    assert grid.is_periodic_longitude(fine_lon)
    area = grid.cell_area_lonlat(lat_b, lon_b)
    assert area.sum() == pytest.approx(SPHERE, rel=1e-12)
    fy = grid.refine_1d(lat, 2, bounds=lat_b, kind="latitude")[1]
    fx = grid.refine_1d(lon, 2, bounds=lon_b, kind="longitude")[1]
    assert tiling_error(area, grid.cell_area_lonlat(fy, fx), 2) < 1e-12


@pytest.fixture(scope="module")
def pop() -> tuple[np.ndarray, np.ndarray]:
    xr = pytest.importorskip("xarray")
    with xr.open_dataset(data_file("ocean_pop_curvilinear.nc")) as ds:
        return ds.lat2d.values.astype(np.float64), ds.lon2d.values.astype(np.float64)


@pytest.mark.parametrize("factor", [2, 4])
def test_real_pop_displaced_pole(pop: tuple[np.ndarray, np.ndarray], factor: int) -> None:
    lat2d, lon2d = pop
    lat_v, lon_v = grid.vertices_from_centres_2d(lat2d, lon2d, periodic_x=True)
    assert lat_v.shape == (385, 321)
    np.testing.assert_array_equal(lat_v[:, 0], lat_v[:, -1])  # seam shared
    assert ((lon_v >= 0) & (lon_v < 360)).all()
    coarse = grid.cell_area_vertices(lat_v, lon_v)
    assert np.isfinite(coarse).all() and (coarse > 0).all()
    lat_c, lon_c, lat_vf, lon_vf = grid.refine_curvilinear(lat_v, lon_v, factor)
    assert lat_c.shape == (384 * factor, 320 * factor)
    assert lat_vf.shape == (384 * factor + 1, 320 * factor + 1)
    np.testing.assert_array_equal(lat_vf[::factor, ::factor], lat_v)
    np.testing.assert_array_equal(lon_vf[::factor, ::factor], lon_v)
    assert ((lon_c >= 0) & (lon_c < 360)).all() and ((lon_vf >= 0) & (lon_vf < 360)).all()
    fine = grid.cell_area_vertices(lat_vf, lon_vf)
    assert np.isfinite(fine).all() and (fine > 0).all()
    assert tiling_error(coarse, fine, factor) < 1e-10
    if factor == 2:
        # fine centres of an even factor surround the coarse centre
        mid = 0.25 * (
            xyz(lat_c[::2, ::2], lon_c[::2, ::2])
            + xyz(lat_c[1::2, 1::2], lon_c[1::2, 1::2])
            + xyz(lat_c[::2, 1::2], lon_c[::2, 1::2])
            + xyz(lat_c[1::2, ::2], lon_c[1::2, ::2])
        )
        assert np.abs(mid - xyz(lat2d, lon2d)).max() < 0.02


def test_real_pop_covers_ocean_without_gaps(pop: tuple[np.ndarray, np.ndarray]) -> None:
    """All cells + the hole around the displaced pole = the cap north of the first row."""
    lat2d, lon2d = pop
    lat_v, lon_v = grid.vertices_from_centres_2d(lat2d, lon2d, periodic_x=True)
    total = grid.cell_area_vertices(lat_v, lon_v).sum()
    # the grid's last row encloses a hole (over Greenland): fan triangles from its centre
    ring_lat, ring_lon = lat_v[-1], lon_v[-1]
    centre = xyz(ring_lat, ring_lon).mean(axis=0)
    c_lat, c_lon = latlon(centre / np.linalg.norm(centre))
    fan_lat = np.stack([np.full(ring_lat.size, c_lat), ring_lat])
    fan_lon = np.stack([np.full(ring_lon.size, c_lon), ring_lon])
    hole = grid.cell_area_vertices(fan_lat, fan_lon).sum()
    assert 0 < hole < 0.01 * total
    bottom = lat_v[0]
    assert np.ptp(bottom) < 1e-9  # a parallel
    cap = 2 * np.pi * R**2 * (1 - np.sin(np.deg2rad(bottom[0])))
    assert (total + hole) / cap == pytest.approx(1.0, abs=2e-6)
    # without periodic_x the seam column is extrapolated from each side: tiny mismatch
    lat_n, _ = grid.vertices_from_centres_2d(lat2d, lon2d)
    assert 0 < np.abs(lat_n[:, 0] - lat_n[:, -1]).max() < 1e-3


def test_real_stageiv_polar_stereographic() -> None:
    xr = pytest.importorskip("xarray")
    with xr.open_dataset(data_file("precip_stageiv_4km_2002030112.nc")) as ds:
        lat2d = ds.latitude.values.astype(np.float64)
        lon2d = ds.longitude.values.astype(np.float64)
    lat_v, lon_v = grid.vertices_from_centres_2d(lat2d, lon2d)
    assert ((lon_v >= 0) & (lon_v < 360)).all()  # input is 225..300
    area = grid.cell_area_vertices(lat_v, lon_v)
    # HRAP-like grid: 4.7625 km at 60N, polar stereographic scale (1 + sin 60)/(1 + sin lat)
    scale = (1 + np.sin(np.deg2rad(lat2d))) / (1 + np.sin(np.deg2rad(60.0)))
    expected = (4762.5 * scale) ** 2
    np.testing.assert_allclose(area, expected, rtol=3e-3)
    # refine a corner block (keep the test fast)
    sub_lat, sub_lon = lat_v[:101, :151], lon_v[:101, :151]
    coarse = area[:100, :150]
    lat_c, lon_c, lat_vf, lon_vf = grid.refine_curvilinear(sub_lat, sub_lon, 3)
    fine = grid.cell_area_vertices(lat_vf, lon_vf)
    assert tiling_error(coarse, fine, 3) < 1e-10
    assert same_lon(lon_c[1::3, 1::3], lon2d[:100, :150], 0.01)
    np.testing.assert_allclose(lat_c[1::3, 1::3], lat2d[:100, :150], atol=0.01)


def rotated_to_geographic(
    rlat: np.ndarray, rlon: np.ndarray, pole_lat: float, pole_lon: float
) -> tuple[np.ndarray, np.ndarray]:
    """Rotated-pole to geographic (degrees) with a rotation matrix built from the pole."""
    pole = xyz(np.array(pole_lat), np.array(pole_lon))
    origin = xyz(np.array(90.0 - pole_lat), np.array(pole_lon + 180.0))
    m = np.stack([origin, np.cross(pole, origin), pole], axis=1)
    return latlon(xyz(rlat, rlon) @ m.T)


def test_real_euro_cordex_rotated_pole() -> None:
    xr = pytest.importorskip("xarray")
    with xr.open_dataset(data_file("tas_euro_cordex_rotated_pole.nc")) as ds:
        rlat = ds.rlat.values.astype(np.float64)
        rlon = ds.rlon.values.astype(np.float64)
        pole = ds.rotated_pole.attrs
        pole_lat = float(pole["grid_north_pole_latitude"])
        pole_lon = float(pole["grid_north_pole_longitude"])
    assert grid.check_monotonic(rlat, name="rlat") == 1
    assert grid.regular_spacing(rlat) is None  # float32-rounded values...
    assert grid.regular_spacing(rlat, rtol=1e-3) == pytest.approx(0.11, rel=1e-4)
    yb = grid.infer_bounds_1d(rlat, kind="latitude")
    xb = grid.infer_bounds_1d(rlon, kind="longitude")
    for centres, bounds, kind in ((rlat, yb, "latitude"), (rlon, xb, "longitude")):
        c, b = grid.refine_1d(centres, 3, kind=kind)  # type: ignore[arg-type]
        cc, cb = grid.coarsen_1d(c, b, 3, kind=kind)  # type: ignore[arg-type]
        np.testing.assert_array_equal(cb, bounds)
        np.testing.assert_allclose(cc, bounds.mean(axis=1), atol=1e-12)
    # areas in rotated coordinates equal the areas of the geographic quadrilaterals
    area = grid.cell_area_lonlat(yb, xb)
    rv_lat, rv_lon = regular_2d(np.append(yb[:, 0], yb[-1, 1]), np.append(xb[:, 0], xb[-1, 1]))
    lat_v, lon_v = rotated_to_geographic(rv_lat, rv_lon, pole_lat, pole_lon)
    c_lat, c_lon = rotated_to_geographic(np.array(0.0), np.array(0.0), pole_lat, pole_lon)
    assert (float(c_lat), float(c_lon)) == pytest.approx((50.75, 18.0))
    np.testing.assert_allclose(grid.cell_area_vertices(lat_v, lon_v), area, rtol=1e-6)
    assert area.mean() == pytest.approx((0.11 * np.pi / 180 * R) ** 2, rel=0.05)


# ----------------------------------------------------------------------------------------
# refine_curvilinear anchored at the cell centres
# ----------------------------------------------------------------------------------------
def _curvi(ny=5, nx=6):
    j, i = np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij")
    lat = 40 + 0.8 * j + 0.2 * i + 0.05 * np.sin(i)
    lon = (170 + 0.9 * i - 0.3 * j + 180) % 360 - 180
    return lat, lon


@pytest.mark.parametrize("factor", [2, 3, 4, 5])
def test_anchored_refinement_puts_the_centres_on_the_fine_grid(factor):
    lat, lon = _curvi()
    lat_v, lon_v = grid.vertices_from_centres_2d(lat, lon)
    lat_c, lon_c, lat_vf, lon_vf = grid.refine_curvilinear(lat_v, lon_v, factor, centres=(lat, lon))
    back = grid.centre_points_2d(lat_c, lon_c, lat_vf, lon_vf, factor)
    np.testing.assert_array_equal(back[0], lat)
    np.testing.assert_array_equal(back[1], lon)
    # coarse corners copied, fine cells tile the coarse ones
    np.testing.assert_array_equal(lat_vf[::factor, ::factor], lat_v)
    fine = grid.cell_area_vertices(lat_vf, lon_vf)
    coarse = grid.cell_area_vertices(lat_v, lon_v)
    sums = fine.reshape(5, factor, 6, factor).sum(axis=(1, 3))
    np.testing.assert_allclose(sums, coarse, rtol=1e-12)
    assert (fine > 0).all()


def test_anchored_refinement_falls_back_where_a_centre_is_outside_its_cell():
    lat, lon = _curvi()
    lat_v, lon_v = grid.vertices_from_centres_2d(lat, lon)
    bad = lat.copy()
    bad[2, 3] += 5.0  # far outside its cell
    lat_c, lon_c, lat_vf, lon_vf = grid.refine_curvilinear(lat_v, lon_v, 2, centres=(bad, lon))
    plain = grid.refine_curvilinear(lat_v, lon_v, 2)
    mid = grid.centre_points_2d(lat_c, lon_c, lat_vf, lon_vf, 2)
    assert mid[0][2, 3] != bad[2, 3]
    # the cell is split at the mean of its corners: the plain refinement's middle corner
    np.testing.assert_allclose(mid[0][2, 3], plain[2][5, 7], atol=1e-12)
    np.testing.assert_array_equal(mid[0][1, 1], bad[1, 1])
    fine = grid.cell_area_vertices(lat_vf, lon_vf)
    np.testing.assert_allclose(
        fine.reshape(5, 2, 6, 2).sum(axis=(1, 3)),
        grid.cell_area_vertices(lat_v, lon_v),
        rtol=1e-12,
    )


def test_centre_points_2d_needs_corners_for_even_factors():
    with pytest.raises(ShapeError, match="corners"):
        grid.centre_points_2d(np.zeros((4, 4)), np.zeros((4, 4)), None, None, 2)


@pytest.mark.parametrize(
    ("centres", "bounds"),
    [
        ([45.0, 270.0], [[0, 180], [180, 360]]),
        ([22.5, 112.5, 315.0], [[0, 90], [90, 180], [180, 360]]),
        ([315.0, 112.5, 22.5], [[360, 180], [180, 90], [90, 0]]),
        ([350.0, 10.0, 30.0], [[340, 0], [0, 20], [20, 40]]),
    ],
)
def test_wide_longitude_cells_take_the_direction_of_their_bounds(centres, bounds):
    fc, fb = grid.refine_1d(centres, 2, bounds=bounds, kind="longitude")
    steps = (np.diff(fc) + 180.0) % 360.0 - 180.0
    assert (np.sign(steps) == np.sign(steps[0])).all()
    np.testing.assert_allclose(fb[::2, 0] % 360, np.asarray(bounds)[:, 0] % 360)


def test_longitude_centres_outside_their_bounds_still_refused():
    with pytest.raises(CoordinateError, match="not inside its bounds"):
        grid.refine_1d([45.0, 270.0], 2, bounds=[[90, 180], [180, 360]], kind="longitude")
