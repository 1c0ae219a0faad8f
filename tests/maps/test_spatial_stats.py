"""Moran's I and Dutilleul's modified t-test on grids, checked against esda and a direct matrix computation."""

import numpy as np
import pytest
from scipy import ndimage, stats

from geoprom3e.maps.spatial_stats import modified_ttest, morans_i


def _field(shape, seed, sigma=3.0, holes=True):
    rng = np.random.default_rng(seed)
    v = ndimage.gaussian_filter(rng.normal(size=shape), sigma, mode="wrap")
    if holes:
        yy, xx = np.mgrid[: shape[0], : shape[1]]
        outside = ((yy - shape[0] / 2) / (shape[0] / 2.2)) ** 2 + ((xx - shape[1] / 2) / (shape[1] / 2.2)) ** 2 > 1
        v[outside] = np.nan  # an elliptical mask, as a map's land mask
    return v


@pytest.mark.parametrize("contiguity", ["rook", "queen"])
def test_morans_i_matches_esda(contiguity):
    esda = pytest.importorskip("esda", reason="esda (pip install esda libpysal) is the reference implementation")
    from libpysal.weights import lat2W, w_subset

    v = _field((18, 23), seed=1, sigma=1.5)
    ok = np.isfinite(v)
    w = lat2W(*v.shape, rook=contiguity == "rook")
    ids = [i for i in w.id_order if ok.ravel()[i]]
    ws = w_subset(w, ids)
    ref = esda.Moran(v.ravel()[ids], ws, transformation="B", permutations=0)
    got = morans_i(v, contiguity)
    assert got.n == len(ids) and got.pairs * 2 == ws.s0
    assert got.i == pytest.approx(ref.I, rel=1e-10)
    assert got.expected == pytest.approx(ref.EI) and got.z == pytest.approx(ref.z_norm, rel=1e-8)
    assert got.p == pytest.approx(ref.p_norm, rel=1e-6)


def test_morans_i_signs():
    checker = np.indices((20, 20)).sum(axis=0) % 2 * 1.0
    assert morans_i(checker).i == pytest.approx(-1.0)  # rook neighbours always differ
    assert morans_i(_field((40, 40), 2, sigma=4)).i > 0.9  # smooth field
    assert abs(morans_i(np.random.default_rng(3).normal(size=(60, 60))).i) < 0.05


def _dutilleul_direct(x, y, cell_size=(1.0, 1.0), n_classes=13):
    """Dutilleul (1993) with explicit n×n matrices, following SpatialPack's modified.ttest step by step."""
    ok = np.isfinite(x) & np.isfinite(y)
    r, c = np.nonzero(ok)
    px, py = c * cell_size[0], r * cell_size[1]
    xv, yv = x[ok], y[ok]
    n = len(xv)
    d = np.hypot(px[:, None] - px[None, :], py[:, None] - py[None, :])
    upper = np.arange(1, n_classes + 1) * d.max() / n_classes
    k = np.array([[min(np.searchsorted(upper, dij), n_classes - 1) for dij in row] for row in d])
    zx, zy = xv - xv.mean(), yv - yv.mean()
    iu = np.triu_indices(n, 1)
    rho = {}
    for name, z in (("x", zx), ("y", zy)):
        var = (z ** 2).mean()
        prod = np.outer(z, z)[iu]
        kk = k[iu]
        rho[name] = np.array([prod[kk == j].mean() / var if (kk == j).any() else 0 for j in range(n_classes)])
    Rx, Ry = rho["x"][k], rho["y"][k]
    np.fill_diagonal(Rx, 1.0)
    np.fill_diagonal(Ry, 1.0)
    B = np.eye(n) - 1.0 / n
    ess = np.trace(B @ Rx) * np.trace(B @ Ry) / np.trace(B @ Rx @ B @ Ry) + 1
    rr = np.corrcoef(xv, yv)[0, 1]
    f = (ess - 2) * rr * rr / (1 - rr * rr)
    return ess, f, stats.f.sf(f, 1, ess - 2)


@pytest.mark.parametrize(("cell_size", "n_classes"), [((1.0, 1.0), 13), ((0.9, 1.3), 13), ((0.9, 1.3), None)])
def test_modified_ttest_equals_the_matrix_formula(cell_size, n_classes):
    x, y = _field((14, 17), 4, sigma=2), _field((14, 17), 5, sigma=2)
    y[2, 8] = np.nan  # a hole in one map only
    got = modified_ttest(x, y, cell_size=cell_size, n_classes=n_classes)
    if n_classes is None:  # one-cell classes: as many as the largest distance between valid cells, in cells
        r, c = np.nonzero(np.isfinite(x) & np.isfinite(y))
        far = np.hypot((r[:, None] - r[None, :]) * 1.3, (c[:, None] - c[None, :]) * 0.9).max()
        assert got.n_classes == int(np.ceil(far / 0.9)) > 13
    ess, f, p = _dutilleul_direct(x, y, cell_size, got.n_classes)
    assert got.n == int((np.isfinite(x) & np.isfinite(y)).sum())
    assert got.effective_n == pytest.approx(ess, rel=1e-9)
    assert got.f == pytest.approx(f, rel=1e-9) and got.p == pytest.approx(p, rel=1e-8)
    assert got.effective_n < got.n


def test_naive_p_is_overconfident_on_smoothed_maps_and_modified_p_is_not():
    # independent smooth fields: the null is true, so a calibrated test rejects ~5% of the time
    naive, modified, ratios = [], [], []
    for seed in range(24):
        x = _field((40, 60), 100 + seed, sigma=4, holes=False)
        y = _field((40, 60), 200 + seed, sigma=4, holes=False)
        naive.append(stats.pearsonr(x.ravel(), y.ravel()).pvalue)
        mt = modified_ttest(x, y)
        modified.append(mt.p)
        ratios.append(mt.effective_n / mt.n)
    naive, modified = np.array(naive), np.array(modified)
    assert (naive < 0.05).mean() > 0.6  # over-confident: most independent pairs look "significant"
    assert naive.min() < 1e-20  # the p = 1e-102 style of claim
    assert (modified < 0.05).mean() <= 0.2
    assert max(ratios) < 0.1  # 2,400 cells hold < 240 independent samples' worth of evidence


def test_identical_and_degenerate_maps():
    x = _field((20, 20), 8, sigma=2, holes=False)
    same = modified_ttest(x, x)
    assert same.r == pytest.approx(1.0) and same.p == 0.0 and 2 < same.effective_n < same.n
    tiny = modified_ttest(x[:1, :3], x[:1, :3])
    assert tiny.n == 3 and np.isnan(tiny.p)  # too few cells: no claim
    flat = morans_i(np.ones((5, 5)))
    assert np.isnan(flat.i)  # no variance: Moran's I undefined


def test_one_cell_classes_stay_calibrated_on_the_usa_grid_where_13_classes_do_not():
    from geoprom3e.grid import get_grid

    g = get_grid("usa-250x500")
    mask = g.mask()
    cell = (0.117 * np.cos(np.radians(37.0)), 0.1)
    fine, coarse = [], []
    for seed in range(8):  # independent maps smoothed as the diversity maps are (σ = 2 cells)
        rng = np.random.default_rng(seed)
        x, y = (np.where(mask, ndimage.gaussian_filter(rng.normal(size=g.shape), 2.0), np.nan) for _ in range(2))
        fine.append(modified_ttest(x, y, cell_size=cell))
        coarse.append(modified_ttest(x, y, cell_size=cell, n_classes=13))
    assert sum(t.p < 0.05 for t in fine) <= 1  # ~5 % expected
    assert sum(t.p < 0.05 for t in coarse) >= 3  # SpatialPack's default classes miss the short-range correlation
    assert all(t.effective_n < 0.1 * t.n for t in fine)
