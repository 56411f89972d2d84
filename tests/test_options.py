"""xsr.set_options and device resolution."""

from __future__ import annotations

import numpy as np
import pytest

import xsr
from xsr.exceptions import OptionError
from xsr.options import resolve_device
from xsr.testing import assert_conserves, lonlat_dataset


def test_set_options_context_restores():
    before = xsr.get_options()
    with xsr.set_options(device="cpu", dtype="float32", progress=False):
        assert xsr.get_options()["device"] == "cpu"
        assert xsr.get_options()["dtype"] == "float32"
    assert xsr.get_options() == before


def test_dtype_option_changes_compute_dtype():
    ds = lonlat_dataset()
    with xsr.set_options(dtype="float32"):
        fine = ds.sr.downscale(factor=2)
    assert fine["sst"].dtype == np.float32
    assert_conserves(fine, ds, 2, rtol=2e-6)


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [
        ("device", "tpu", "device must be"),
        ("dtype", "float16", "dtype must be one of"),
        ("progress", "yes", "progress must be"),
        ("tile_size", 0, "tile_size must be"),
        ("colour", 1, "unknown option"),
    ],
)
def test_bad_options(key, value, match):
    with pytest.raises(OptionError, match=match):
        xsr.set_options(**{key: value})


def test_resolve_device():
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") in ("cpu", "cuda", "mps")
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(OptionError, match="no CUDA GPU"):
            resolve_device("cuda")
