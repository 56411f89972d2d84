"""xsr.plot.compare on the Agg backend: panel and colour-bar counts, NaN colour, errors."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import xsr
from xsr.exceptions import OptionError, ShapeError

mpl = pytest.importorskip("matplotlib")
mpl.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from xsr.plot import compare  # noqa: E402


@pytest.fixture(scope="module")
def triple() -> tuple[xr.DataArray, xr.DataArray, dict[str, xr.DataArray]]:
    ds = xsr.datasets.open_sample()
    truth = ds.adt.isel(latitude=slice(0, 64), longitude=slice(0, 96))
    coarse = truth.sr.coarsen(factor=4)
    fields = {
        m: coarse.sr.downscale(factor=4, method=m, periodic=False) for m in ("nearest", "bicubic")
    }
    return truth, coarse, fields


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.mark.parametrize(
    ("error", "with_std", "panels", "colorbars"),
    [(True, False, 2 + 2 + 2, 2), (False, False, 2 + 2, 1), (True, True, 2 + 2 + 2 + 1, 3)],
)
def test_number_of_axes(triple, error, with_std, panels, colorbars) -> None:
    truth, coarse, fields = triple
    std = {"bicubic": abs(fields["bicubic"] - truth)} if with_std else None
    fig = compare(truth, coarse, fields, error=error, std=std)
    assert isinstance(fig, mpl.figure.Figure)
    assert len(fig.axes) == panels + colorbars
    titles = [a.get_title() for a in fig.axes if a.get_title()]
    assert titles[:4] == ["truth", "coarse", "nearest", "bicubic"]
    if error:
        assert "|bicubic - truth|" in titles
    fig.canvas.draw()  # renders without error


def test_nan_shown_grey_and_shared_scale(triple) -> None:
    truth, coarse, fields = triple
    assert bool(truth.isnull().any())  # the sample has land
    fig = compare(truth, coarse, fields, error=False)
    images = [a.images[0] for a in fig.axes if a.images]
    assert len(images) == 4
    assert len({im.get_clim() for im in images}) == 1  # one colour scale for all values
    bad = images[0].get_cmap().get_bad()
    np.testing.assert_allclose(bad[:3], [0.75, 0.75, 0.75])
    assert np.ma.is_masked(images[0].get_array())


def test_draws_into_given_axes(triple) -> None:
    truth, coarse, fields = triple
    fig, axs = plt.subplots(2, 3)
    out = compare(truth, coarse, {"bicubic": fields["bicubic"]}, ax=axs.ravel())
    assert out is fig
    assert all(a.images for a in axs.ravel()[:4])
    with pytest.raises(OptionError, match="needs 4"):
        compare(truth, coarse, {"bicubic": fields["bicubic"]}, ax=axs.ravel()[:3])


def test_single_std_dataarray(triple) -> None:
    truth, coarse, fields = triple
    one = {"bicubic": fields["bicubic"]}
    fig = compare(truth, coarse, one, error=False, std=fields["bicubic"] * 0 + 0.01)
    assert len(fig.axes) == 2 + 1 + 1 + 2
    with pytest.raises(OptionError, match="single DataArray"):
        compare(truth, coarse, fields, std=truth)
    with pytest.raises(OptionError, match="not in fields"):
        compare(truth, coarse, fields, std={"dip": truth})


def test_errors(triple) -> None:
    truth, coarse, fields = triple
    with pytest.raises(OptionError, match="empty"):
        compare(truth, coarse, {})
    with pytest.raises(ShapeError, match="truth's grid"):
        compare(truth, coarse, {"coarse": coarse})
    two = xr.concat([truth, truth], dim="time")
    with pytest.raises(ShapeError, match="isel"):
        compare(two, coarse, fields)
