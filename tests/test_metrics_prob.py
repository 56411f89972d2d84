"""xsr.metrics, probabilistic scores: CRPS (ensemble, deterministic, Gaussian), spread-skill,
spread-error correlation and rank histograms.

Each score is checked against an independent computation (a double loop over member pairs,
closed forms, numpy by hand) and against the scoringrules library; the conventions (xarray
in and out, dims kept, weights by dim name, NaN cells left out, dask laziness) are checked on
every function.
"""

from __future__ import annotations

import math

import dask
import dask.array as dsa
import numpy as np
import pytest
import xarray as xr
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy import stats

from xsr import metrics
from xsr.exceptions import InputValueError, OptionError, ShapeError

sr = pytest.importorskip("scoringrules")


class RaiseOnCompute:
    """A dask scheduler that fails the test if anything is computed."""

    def __call__(self, dsk, keys, **kwargs):
        raise AssertionError("dask computed something, but the call should stay lazy")


def _crps_pairs(members: np.ndarray, y: float, *, fair: bool) -> float:
    """CRPS of one cell with the O(M^2) double sum, written out."""
    m = members.size
    first = np.mean(np.abs(members - y))
    pairs = sum(abs(a - b) for a in members for b in members)
    return float(first - pairs / (2 * m * (m - 1) if fair else 2 * m * m))


def _ensemble(nm: int = 6, nt: int = 3, ny: int = 5, nx: int = 7, seed: int = 0):
    rng = np.random.default_rng(seed)
    truth = xr.DataArray(
        rng.normal(size=(nt, ny, nx)),
        dims=("time", "lat", "lon"),
        coords={
            "time": np.arange(nt),
            "lat": ("lat", np.linspace(30, 40, ny), {"units": "degrees_north"}),
            "lon": ("lon", np.linspace(0, 12, nx), {"units": "degrees_east"}),
        },
        attrs={"units": "K"},
        name="tas",
    )
    noise = xr.DataArray(rng.normal(size=(nm, nt, ny, nx)), dims=("member", *truth.dims))
    ens = (truth + 1.3 * noise + 0.2).rename(None).assign_coords(member=np.arange(nm))
    ens.attrs = dict(truth.attrs)
    return ens.transpose("member", ...), truth


# ------------------------------------------------------------------------------------------
# CRPS of an ensemble
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fair", [True, False])
def test_crps_ensemble_per_cell_matches_double_sum_and_scoringrules(fair: bool) -> None:
    ens, truth = _ensemble()
    cells = metrics.crps_ensemble(ens, truth, dim=[], fair=fair)
    assert cells.dims == ("time", "lat", "lon")
    e, t = ens.values, truth.values
    direct = np.array(
        [_crps_pairs(e[:, i, j, k], t[i, j, k], fair=fair) for i, j, k in np.ndindex(t.shape)]
    ).reshape(t.shape)
    np.testing.assert_allclose(cells.values, direct, rtol=1e-12, atol=1e-13)
    lib = sr.crps_ensemble(t, e, m_axis=0, estimator="fair" if fair else "nrg", backend="numpy")
    np.testing.assert_allclose(cells.values, lib, rtol=1e-12, atol=1e-13)
    assert float(metrics.crps_ensemble(ens, truth, fair=fair)) == pytest.approx(lib.mean())


def test_crps_ensemble_xarray_out() -> None:
    ens, truth = _ensemble()
    out = metrics.crps_ensemble(ens, truth, dim=["lat", "lon"])
    assert isinstance(out, xr.DataArray)
    assert out.name == "crps"
    assert out.dims == ("time",)
    np.testing.assert_array_equal(out["time"], truth["time"])
    assert out.attrs["units"] == "K"
    assert "fair" in out.attrs["long_name"]
    # numpy in, float out; members along the first axis
    val = metrics.crps_ensemble(ens.values, truth.values)
    assert isinstance(val, float)
    assert val == pytest.approx(float(metrics.crps_ensemble(ens, truth)), rel=1e-12)
    # an integer axis of a plain array
    per_t = metrics.crps_ensemble(ens.values, truth.values, dim=[1, 2])
    np.testing.assert_allclose(per_t, out.values, rtol=1e-12)


def test_crps_ensemble_member_dim_anywhere_and_truth_broadcast() -> None:
    ens, truth = _ensemble()
    a = metrics.crps_ensemble(ens.transpose("lat", "member", "lon", "time"), truth)
    assert float(a) == pytest.approx(float(metrics.crps_ensemble(ens, truth)), rel=1e-12)
    # a truth without time, compared with each time of the ensemble: time stays
    b = metrics.crps_ensemble(ens.rename(member="ens"), truth.isel(time=0), member_dim="ens")
    assert b.dims == ("time",)


def test_crps_ensemble_standard_one_member_is_mae() -> None:
    ens, truth = _ensemble(nm=1)
    assert float(metrics.crps_ensemble(ens, truth, fair=False)) == pytest.approx(
        metrics.mae(ens.isel(member=0), truth), rel=1e-12
    )
    with pytest.raises(ShapeError, match="at least 2"):
        metrics.crps_ensemble(ens, truth)


def test_crps_ensemble_fair_is_unbiased_for_the_distribution() -> None:
    # members and truth iid N(0, 1): E[fair CRPS] = CRPS(N(0,1), y) averaged = 1/sqrt(pi),
    # whatever M; the standard estimator is biased high by E|X - X'| / (2M) = 1/(M sqrt(pi))
    rng = np.random.default_rng(3)
    m, n = 3, 200_000
    ens, y = rng.normal(size=(m, n)), rng.normal(size=n)
    expected = 1 / math.sqrt(math.pi)
    assert metrics.crps_ensemble(ens, y) == pytest.approx(expected, rel=0.01)
    assert metrics.crps_ensemble(ens, y, fair=False) == pytest.approx(
        expected * (1 + 1 / m), rel=0.01
    )


def test_crps_ensemble_far_from_zero_keeps_precision() -> None:
    ens, truth = _ensemble()
    a = metrics.crps_ensemble(ens, truth, dim=[])
    b = metrics.crps_ensemble(ens + 1e6, truth + 1e6, dim=[])
    np.testing.assert_allclose(a, b, atol=1e-8)


def test_crps_weights_and_nan() -> None:
    ens, truth = _ensemble()
    w = xr.DataArray(np.linspace(1, 3, truth.sizes["lat"]), dims="lat")
    cells = metrics.crps_ensemble(ens, truth, dim=[]).values
    ww = np.broadcast_to(w.values[None, :, None], cells.shape)
    assert float(metrics.crps_ensemble(ens, truth, weights=w)) == pytest.approx(
        (cells * ww).sum() / ww.sum(), rel=1e-12
    )
    # a plain array of weights takes the trailing dims
    assert float(metrics.crps_ensemble(ens, truth, weights=w.values[:, None])) == pytest.approx(
        (cells * ww).sum() / ww.sum(), rel=1e-12
    )
    # NaN in the truth or in one member leaves the cell out; the weights renormalise
    t2 = truth.copy()
    t2[0, 0, 0] = np.nan
    e2 = ens.copy()
    e2[3, 1, 2, 2] = np.nan
    keep = np.ones(cells.shape, bool)
    keep[0, 0, 0] = keep[1, 2, 2] = False
    assert float(metrics.crps_ensemble(e2, t2, weights=w)) == pytest.approx(
        (cells * ww)[keep].sum() / ww[keep].sum(), rel=1e-12
    )
    # a cell with a NaN member is NaN per cell, not scored on the other members
    assert np.isnan(metrics.crps_ensemble(e2, t2, dim=[])[1, 2, 2])
    # all NaN: NaN
    assert math.isnan(float(metrics.crps_ensemble(ens, truth * np.nan)))


def test_area_weights() -> None:
    ens, truth = _ensemble()
    import xsr

    areas = xsr.cell_areas(truth)
    by_name = metrics.crps_ensemble(ens, truth, weights="area")
    by_array = metrics.crps_ensemble(ens, truth, weights=areas)
    assert float(by_name) == pytest.approx(float(by_array), rel=1e-12)
    assert float(by_name) != pytest.approx(float(metrics.crps_ensemble(ens, truth)), rel=1e-6)


def test_input_errors() -> None:
    ens, truth = _ensemble()
    with pytest.raises(ShapeError, match="no dimension 'ens'"):
        metrics.crps_ensemble(ens, truth, member_dim="ens")
    with pytest.raises(ShapeError, match="member dimension"):
        metrics.crps_ensemble(ens, ens)
    with pytest.raises(OptionError, match="'depth' is not a dimension"):
        metrics.crps_ensemble(ens, truth, dim="depth")
    with pytest.raises(OptionError, match="fair must be True or False"):
        metrics.crps_ensemble(ens, truth, fair="yes")
    with pytest.raises(OptionError, match="member_dim must be"):
        metrics.crps_ensemble(ens, truth, member_dim=0)
    # reversed latitudes are other cells: refused, not silently compared
    with pytest.raises(ShapeError, match="different 'lat' coordinates"):
        metrics.crps_ensemble(ens, truth.isel(lat=slice(None, None, -1)))
    with pytest.raises(ShapeError, match="cells along 'lon'"):
        metrics.crps(truth, truth.isel(lon=slice(1, None)))
    with pytest.raises(ShapeError, match="as a plain array it must have 4 axes"):
        metrics.crps_ensemble(ens.values[0], truth.values)
    with pytest.raises(OptionError, match="non-negative"):
        metrics.crps(truth, truth, weights=-np.ones(truth.shape))
    with pytest.raises(ShapeError, match="dims"):
        metrics.crps(truth, truth, weights=xr.DataArray(np.ones(3), dims="depth"))
    with pytest.raises(InputValueError, match="Dataset"):
        metrics.crps(truth.to_dataset(), truth)
    with pytest.raises(OptionError, match="weights must be one of 'area'"):
        metrics.crps(truth, truth, weights="areas")


# ------------------------------------------------------------------------------------------
# deterministic and Gaussian CRPS
# ------------------------------------------------------------------------------------------
def test_crps_deterministic_is_mae() -> None:
    _, truth = _ensemble()
    est = truth + np.random.default_rng(1).normal(size=truth.shape)
    assert float(metrics.crps(est, truth)) == pytest.approx(metrics.mae(est, truth), rel=1e-12)
    w = np.cos(np.deg2rad(truth["lat"].values))[:, None]
    assert metrics.crps(est.values, truth.values, weights=w) == pytest.approx(
        metrics.mae(est.values, truth.values, weights=w), rel=1e-12
    )
    per_t = metrics.crps(est, truth, dim=("lat", "lon"))
    assert per_t.dims == ("time",)
    assert per_t.name == "crps"


def test_crps_gaussian_closed_form_and_library() -> None:
    rng = np.random.default_rng(2)
    mu, sigma, y = rng.normal(size=50), rng.uniform(0.1, 3, 50), rng.normal(size=50)
    lib = sr.crps_normal(y, mu, sigma, backend="numpy")
    np.testing.assert_allclose(metrics.crps_gaussian(mu, sigma, y, dim=[]), lib, rtol=1e-12)
    # the integral definition, int (F(x) - 1{y <= x})^2 dx, by quadrature for one cell
    x = np.linspace(mu[0] - 12 * sigma[0], mu[0] + 12 * sigma[0], 400_001)
    integrand = (stats.norm.cdf(x, mu[0], sigma[0]) - (x >= y[0])) ** 2
    integral = float(np.sum(integrand) * (x[1] - x[0]))
    assert metrics.crps_gaussian(mu[:1], sigma[:1], y[:1]) == pytest.approx(integral, rel=1e-4)
    # zero spread is the absolute error; negative spread is refused
    assert metrics.crps_gaussian(1.0, 0.0, 3.5) == pytest.approx(2.5)
    with pytest.raises(InputValueError, match="std is negative"):
        metrics.crps_gaussian(mu, -sigma, y)


def test_crps_gaussian_matches_a_large_ensemble() -> None:
    rng = np.random.default_rng(4)
    mu, sigma = np.array([0.0, 1.0, -2.0]), np.array([1.0, 0.5, 2.0])
    y = np.array([0.3, 2.0, -2.5])
    members = mu + sigma * rng.standard_normal((20_000, 3))
    np.testing.assert_allclose(
        metrics.crps_gaussian(mu, sigma, y, dim=[]),
        metrics.crps_ensemble(members, y, dim=[]),
        rtol=0.02,
    )


def test_crps_gaussian_xarray() -> None:
    ens, truth = _ensemble()
    mean, std = ens.mean("member"), ens.std("member")
    out = metrics.crps_gaussian(mean, std, truth, dim="time")
    assert out.dims == ("lat", "lon")
    assert out.attrs["units"] == "K"
    # a plain std takes the dims of the truth
    out2 = metrics.crps_gaussian(mean, std.values, truth, dim="time")
    xr.testing.assert_allclose(out, out2)


# ------------------------------------------------------------------------------------------
# spread and skill
# ------------------------------------------------------------------------------------------
def _reliable(nm: int, n: int = 60_000, *, spread_factor: float = 1.0, seed: int = 5):
    """Members and truth drawn from one N(mu, sigma) per cell (members' sigma scaled)."""
    rng = np.random.default_rng(seed)
    mu, sigma = rng.normal(size=n), rng.uniform(0.5, 2.0, n)
    truth = mu + sigma * rng.standard_normal(n)
    ens = mu + spread_factor * sigma * rng.standard_normal((nm, n))
    return ens, truth, mu, sigma


@pytest.mark.parametrize("nm", [2, 5, 20])
def test_spread_skill_reliable_ensemble_is_one(nm: int) -> None:
    ens, truth, _, _ = _reliable(nm)
    assert metrics.spread_skill(ens, truth) == pytest.approx(1.0, abs=0.02)


def test_spread_skill_under_dispersive_and_pair() -> None:
    ens, truth, mu, sigma = _reliable(10, spread_factor=0.5)
    # E[var] = 0.25 s^2, E[(mean - y)^2] = s^2 (1 + 0.25/M): ratio 0.5 sqrt(1.1)/sqrt(1.025)
    expected = 0.5 * math.sqrt(1.1 / 1.025)
    assert metrics.spread_skill(ens, truth) == pytest.approx(expected, abs=0.02)
    # a (mean, spread) pair: the spread of the distribution, no finite-ensemble factor
    assert metrics.spread_skill((mu, sigma), truth) == pytest.approx(1.0, abs=0.02)


def test_spread_skill_by_hand_with_weights_and_nan() -> None:
    ens, truth = _ensemble(nm=4)
    w = np.cos(np.deg2rad(truth["lat"].values))[:, None]
    e, t = ens.values.copy(), truth.values.copy()
    t[0, 1, 1] = np.nan
    e[2, 2, 3, 3] = np.nan
    mean, var = e.mean(0), e.var(0, ddof=1)
    ok = np.isfinite(mean) & np.isfinite(t)
    ww = np.broadcast_to(w, t.shape)[ok]
    expected = math.sqrt(5 / 4) * math.sqrt((var[ok] * ww).sum() / ((mean - t)[ok] ** 2 * ww).sum())
    got = metrics.spread_skill(ens.copy(data=e), truth.copy(data=t), weights=w)
    assert isinstance(got, xr.DataArray)
    assert got.name == "spread_skill_ratio"
    assert float(got) == pytest.approx(expected, rel=1e-12)
    per_t = metrics.spread_skill(ens, truth, dim=["lat", "lon"])
    assert per_t.dims == ("time",)
    with pytest.raises(ShapeError, match="at least 2"):
        metrics.spread_skill(ens.isel(member=[0]), truth)
    with pytest.raises(ShapeError, match=r"\(mean, spread\)"):
        metrics.spread_skill((truth, truth, truth), truth)


def test_spread_error_correlation() -> None:
    ens, truth, mu, sigma = _reliable(8, n=5000)
    err = np.abs(ens.mean(0) - truth)
    spread = ens.std(0, ddof=1)
    assert metrics.spread_error_correlation(ens, truth) == pytest.approx(
        np.corrcoef(spread, err)[0, 1], rel=1e-10
    )
    # informative spread: the correlation is positive
    assert metrics.spread_error_correlation(ens, truth) > 0.2
    # weighted: against a weighted covariance by hand
    w = np.random.default_rng(0).uniform(0, 2, truth.size)
    cov = np.cov(sigma, np.abs(mu - truth), aweights=w)
    got = metrics.spread_error_correlation((mu, sigma), truth, weights=w)
    assert got == pytest.approx(cov[0, 1] / math.sqrt(cov[0, 0] * cov[1, 1]), rel=1e-10)
    # a constant spread has no correlation
    assert math.isnan(metrics.spread_error_correlation((mu, np.ones_like(mu)), truth))


# ------------------------------------------------------------------------------------------
# rank histogram
# ------------------------------------------------------------------------------------------
def test_rank_histogram_flat_for_exchangeable_and_u_for_under_dispersive() -> None:
    ens, truth, _, _ = _reliable(9, n=50_000)
    hist = metrics.rank_histogram(ens, truth)
    assert hist.shape == (10,)
    assert hist.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(hist, 0.1, atol=0.01)
    ens, truth, _, _ = _reliable(9, n=50_000, spread_factor=0.5)
    u = metrics.rank_histogram(ens, truth)
    assert u[0] > 2 * u[5] and u[-1] > 2 * u[5]
    # over-dispersive: a hump
    ens, truth, _, _ = _reliable(9, n=50_000, spread_factor=2.0)
    hump = metrics.rank_histogram(ens, truth)
    assert hump[5] > 2 * hump[0] and hump[5] > 2 * hump[-1]


def test_rank_histogram_matches_direct_count() -> None:
    ens, truth = _ensemble(nm=5)
    hist = metrics.rank_histogram(ens, truth, dim=["lat", "lon"])
    assert hist.dims == ("time", "rank")
    np.testing.assert_array_equal(hist["rank"], np.arange(6))
    assert hist.name == "rank_histogram"
    e, t = ens.values, truth.values
    for i in range(t.shape[0]):
        ranks = (e[:, i] < t[i]).sum(0).ravel()
        np.testing.assert_allclose(hist[i], np.bincount(ranks, minlength=6) / ranks.size)


def test_rank_histogram_ties_random_and_reproducible() -> None:
    # zero precipitation: every member and the truth 0 -> ranks uniform over 0..M
    ens = np.zeros((4, 100, 100))
    truth = np.zeros((100, 100))
    hist = metrics.rank_histogram(ens, truth)
    np.testing.assert_allclose(hist, 0.2, atol=0.015)
    again = metrics.rank_histogram(ens, truth)
    np.testing.assert_array_equal(hist, again)
    other = metrics.rank_histogram(ens, truth, seed=7)
    assert not np.array_equal(hist, other)
    # dask: the same draws whatever the chunks
    lazy = metrics.rank_histogram(dsa.from_array(ens, chunks=(4, 33, 40)), truth)
    np.testing.assert_array_equal(np.asarray(lazy), hist)
    with pytest.raises(OptionError, match="seed must be"):
        metrics.rank_histogram(ens, truth, seed=-1)


def test_rank_histogram_nan_and_weights() -> None:
    ens, truth = _ensemble(nm=3)
    t = truth.copy()
    t[:, 0, :] = np.nan  # one latitude row of land
    hist = metrics.rank_histogram(ens, t)
    e, tv = ens.values[:, :, 1:], truth.values[:, 1:]
    ranks = (e < tv).sum(0).ravel()
    np.testing.assert_allclose(hist, np.bincount(ranks, minlength=4) / ranks.size)
    w = xr.DataArray(np.arange(truth.sizes["lon"], dtype=float), dims="lon")
    hw = metrics.rank_histogram(ens, truth, weights=w)
    ranks = (ens.values < truth.values).sum(0)
    wf = np.broadcast_to(w.values, ranks.shape)
    np.testing.assert_allclose(hw, np.bincount(ranks.ravel(), weights=wf.ravel()) / wf.sum())


# ------------------------------------------------------------------------------------------
# dask
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("func", "kwargs"),
    [
        (metrics.crps_ensemble, {}),
        (metrics.crps_ensemble, {"fair": False, "dim": "time"}),
        (metrics.rank_histogram, {"dim": ["lat", "lon"]}),
        (metrics.spread_skill, {"dim": "lon"}),
        (metrics.spread_error_correlation, {}),
    ],
)
def test_ensemble_metrics_stay_lazy(func, kwargs) -> None:
    ens, truth = _ensemble()
    w = xr.DataArray(np.linspace(1, 2, truth.sizes["lat"]), dims="lat")
    # chunks that do not divide the grid, and the members split across chunks
    lens = ens.chunk({"member": 4, "lat": 2, "time": 2})
    ltruth = truth.chunk({"lat": 3})
    with dask.config.set(scheduler=RaiseOnCompute()):
        lazy = func(lens, ltruth, weights=w, **kwargs)
    assert lazy.chunks is not None
    xr.testing.assert_allclose(lazy.compute(), func(ens, truth, weights=w, **kwargs))


def test_gaussian_and_deterministic_crps_stay_lazy() -> None:
    ens, truth = _ensemble()
    mean, std = ens.mean("member").chunk({"lat": 2}), ens.std("member").chunk({"lat": 2})
    with dask.config.set(scheduler=RaiseOnCompute()):
        g = metrics.crps_gaussian(mean, std, truth, weights="area")
        d = metrics.crps(mean, truth, dim="time")
    assert g.chunks is not None and d.chunks is not None
    assert float(g) == pytest.approx(
        float(metrics.crps_gaussian(mean.compute(), std.compute(), truth, weights="area"))
    )
    xr.testing.assert_allclose(d.compute(), metrics.crps(mean.compute(), truth, dim="time"))


# ------------------------------------------------------------------------------------------
# properties (hypothesis)
# ------------------------------------------------------------------------------------------
_values = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False)


@st.composite
def _cells(draw, *, min_members: int = 1, ties: bool = False):
    m = draw(st.integers(min_members, 12))
    n = draw(st.integers(1, 8))
    elements = st.integers(-3, 3).map(float) if ties else _values
    ens = draw(hnp.arrays(np.float64, (m, n), elements=elements))
    truth = draw(hnp.arrays(np.float64, (n,), elements=elements))
    return ens, truth


@given(_cells(min_members=2), st.booleans())
def test_crps_ensemble_properties(cells, fair: bool) -> None:
    ens, truth = cells
    got = metrics.crps_ensemble(ens, truth, dim=[], fair=fair)
    lib = sr.crps_ensemble(truth, ens, m_axis=0, estimator="fair" if fair else "nrg")
    scale = 1.0 + np.abs(ens).max() + np.abs(truth).max()
    np.testing.assert_allclose(got, lib, atol=1e-12 * scale * ens.shape[0])
    # permuting the members changes nothing; the standard estimator is >= 0 and >= the fair
    perm = np.random.default_rng(0).permutation(ens.shape[0])
    np.testing.assert_allclose(
        metrics.crps_ensemble(ens[perm], truth, dim=[], fair=fair), got, atol=1e-9 * scale
    )
    std = metrics.crps_ensemble(ens, truth, dim=[], fair=False)
    assert (std >= -1e-9 * scale).all()
    if fair:
        assert (std >= got - 1e-9 * scale).all()
    # translation invariance and homogeneity of degree 1
    np.testing.assert_allclose(
        metrics.crps_ensemble(2 * ens + 5, 2 * truth + 5, dim=[], fair=fair),
        2 * got,
        atol=1e-8 * scale,
    )


@given(_cells(ties=True), st.integers(0, 2**32))
def test_rank_histogram_properties(cells, seed: int) -> None:
    ens, truth = cells
    m = ens.shape[0]
    per_cell = metrics.rank_histogram(ens, truth, dim=[], seed=seed)
    assert per_cell.shape == (truth.size, m + 1)
    # each cell: one rank, between the members below and those below or equal
    np.testing.assert_array_equal(per_cell.sum(-1), 1.0)
    rank = per_cell.argmax(-1)
    below = (ens < truth).sum(0)
    equal = (ens == truth).sum(0)
    assert (rank >= below).all() and (rank <= below + equal).all()
    total = metrics.rank_histogram(ens, truth, seed=seed)
    np.testing.assert_allclose(total, per_cell.mean(0))
    assert total.sum() == pytest.approx(1.0)
