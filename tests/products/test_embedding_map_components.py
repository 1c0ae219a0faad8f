"""The array maths of embedding-map: FastICA/PCA fitted on a sample, the projection, the robust stretch."""

from __future__ import annotations

import numpy as np
import pytest

from geoprom3e.errors import ConfigError
from geoprom3e.maps.components import check_components, fit_components, percentile_limits, stretch_to_uint8


def _mixed(n=4000, d=12, seed=0):
    rng = np.random.default_rng(seed)
    s = np.stack([rng.uniform(-1, 1, n), rng.laplace(size=n), np.sign(rng.standard_normal(n))], axis=1)
    s *= np.array([3.0, 2.0, 1.0])
    a = rng.standard_normal((3, d))
    return s, s @ a + 0.01 * rng.standard_normal((n, d))


def test_ica_recovers_independent_sources():
    s, x = _mixed()
    comp = fit_components(x, "ica", 3, seed=1)
    y = comp.apply(x)
    corr = np.abs(np.corrcoef(np.c_[s, y].T)[:3, 3:])
    assert (corr.max(axis=1) > 0.98).all(), corr  # each source is one component
    assert sorted(corr.argmax(axis=1).tolist()) == [0, 1, 2]


def test_pca_first_component_is_the_top_variance_direction():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3000, 8)) * np.array([5, 3, 1, 1, 1, 1, 1, 1.0])
    comp = fit_components(x, "pca", 3)
    assert abs(comp.weights[0, 0]) > 0.99 and abs(comp.weights[1, 1]) > 0.99
    y = comp.apply(x)
    assert y[:, 0].var() > y[:, 1].var() > y[:, 2].var()


def test_fit_is_reproducible_and_ignores_nan_rows():
    _, x = _mixed()
    x2 = x.copy()
    x2[::10] = np.nan
    a, b = fit_components(x2, "ica", 3, seed=5), fit_components(x2, "ica", 3, seed=5)
    assert np.array_equal(a.weights, b.weights) and a.n_sample == len(x) - len(x[::10])
    assert np.isnan(a.apply(x2[:1])).all()


def test_stretch_maps_percentiles_to_1_and_255_and_nan_to_0():
    v = np.linspace(0, 100, 101, dtype=np.float32)[:, None].repeat(3, 1)
    lim = percentile_limits(v, (10, 90))
    assert np.allclose(lim, [[10, 90]] * 3)
    v[5] = np.nan
    rgb, valid = stretch_to_uint8(v, lim)
    assert rgb[0, 0] == 1 and rgb[100, 0] == 255 and rgb[50, 0] == 128
    assert (rgb[5] == 0).all() and not valid[5] and valid.sum() == 100


def test_bad_component_counts():
    for k in (2, True, 1.5):
        with pytest.raises(ConfigError):
            check_components(k, 10)
    with pytest.raises(ConfigError, match="--components 11 is larger than the feature size"):
        check_components(11, 10)
    with pytest.raises(ConfigError, match="--method"):
        fit_components(np.zeros((10, 4)), "nmf", 3)
