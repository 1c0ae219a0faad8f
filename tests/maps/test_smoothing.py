import numpy as np
import pytest
from scipy import ndimage

from geoprom3e.errors import ConfigError
from geoprom3e.maps.smoothing import smooth


@pytest.fixture
def layer():
    rng = np.random.default_rng(0)
    v = rng.uniform(0, 3, (60, 80))
    v[rng.uniform(size=v.shape) < 0.7] = np.nan  # empty cells
    mask = np.zeros(v.shape, bool)
    mask[5:55, 10:75] = True
    v[~mask] = np.nan
    return v, mask


def test_paper_equals_scipy_gaussian_filter(layer):
    v, mask = layer
    out = smooth(v, mask, 2.0, "paper")
    expected = ndimage.gaussian_filter(np.nan_to_num(v), 2.0, mode="constant", cval=0.0, truncate=4.0)
    assert np.allclose(out[mask], expected[mask], atol=1e-6)
    assert np.isnan(out[~mask]).all()
    assert np.isfinite(out[mask]).all()  # empty land cells get smoothed values


def test_normalized_keeps_a_constant_field_constant(layer):
    _, mask = layer
    v = np.where(mask, 2.5, np.nan)
    paper = smooth(v, mask, 3.0, "paper")
    norm = smooth(v, mask, 3.0, "normalized")
    assert np.allclose(norm[mask], 2.5, atol=1e-5)
    assert paper[mask].min() < 2.0  # the paper's recipe pulls borders toward 0


def test_none_and_sigma_zero_return_raw(layer):
    v, mask = layer
    for out in (smooth(v, mask, 2.0, "none"), smooth(v, mask, 0.0, "paper")):
        assert np.array_equal(np.isnan(out), np.isnan(v))
        assert np.allclose(out[np.isfinite(v)], v[np.isfinite(v)])


def test_bad_settings():
    m = np.ones((3, 3), bool)
    with pytest.raises(ConfigError, match="--smoothing 'box' is unknown: choose one of paper, normalized, none"):
        smooth(np.zeros((3, 3)), m, 1.0, "box")
    with pytest.raises(ConfigError, match="--sigma -1"):
        smooth(np.zeros((3, 3)), m, -1.0)
