"""Statistics of gridded maps that respect space: Moran's I and Dutilleul's modified t-test.

Neighbouring cells of a smoothed map are not independent samples, so a plain Pearson p-value over N cells
claims far more evidence than the map holds. Both statistics here work on a [rows, cols] grid with NaN for
cells to leave out, and use FFTs over cell lags, so a 70,000-cell map takes well under a second.

- :func:`morans_i`: global Moran's I with binary contiguity weights (``rook``: 4 edge neighbours, ``queen``:
  8 edge-or-corner neighbours), its expectation and variance under the normality assumption
  (Cliff & Ord 1981) and a two-sided p-value.
- :func:`modified_ttest`: Dutilleul's (1993) modified t-test of Pearson's r. Moran-type autocorrelations of
  each map in equal-width distance classes (up to the largest distance between valid cells, as SpatialPack's
  ``modified.ttest``) fill the correlation matrices Rx, Ry; the effective sample size is
  ``n_e = 1 + tr(B Rx) tr(B Ry) / tr(B Rx B Ry)`` with the centring matrix ``B = I − 11ᵀ/n``, and
  ``(n_e − 2) r² / (1 − r²)`` follows F(1, n_e − 2). Classes default to one cell wide: SpatialPack's 13
  classes are far too coarse for a map (on usa-250x500, independent σ = 2 smoothed maps came out
  "significant" at 5 % in 6 of 12 trials with 13 classes, 4 with 32, none with 100 or with one-cell classes).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Contiguity rules for Moran's I: (row, col) offsets of the neighbours counted once per pair.
CONTIGUITY = {"rook": ((0, 1), (1, 0)), "queen": ((0, 1), (1, 0), (1, 1), (1, -1))}


@dataclass(frozen=True)
class MoranResult:
    """Global Moran's I of one map."""

    i: float
    """Moran's I."""
    expected: float
    """E[I] = −1 / (n − 1) under no autocorrelation."""
    z: float
    """(I − E[I]) / sd under the normality assumption."""
    p: float
    """Two-sided p-value of z."""
    n: int
    """Valid cells."""
    pairs: int
    """Neighbouring pairs of valid cells."""
    contiguity: str
    """``rook`` or ``queen``."""


@dataclass(frozen=True)
class ModifiedTTest:
    """Dutilleul's modified t-test of the correlation of two maps."""

    r: float
    """Pearson's r over the cells valid in both."""
    n: int
    """Cells valid in both."""
    effective_n: float
    """Dutilleul's effective sample size."""
    f: float
    """F statistic ``(n_e − 2) r² / (1 − r²)`` on 1 and n_e − 2 degrees of freedom."""
    p: float
    """Two-sided p-value."""
    n_classes: int
    """Distance classes used for the correlograms."""


def _pairs_along(valid: np.ndarray, dr: int, dc: int) -> tuple[tuple[slice, slice], tuple[slice, slice]]:
    rows, cols = valid.shape
    r0, r1 = slice(0, rows - dr), slice(dr, rows)
    if dc >= 0:
        c0, c1 = slice(0, cols - dc), slice(dc, cols)
    else:
        c0, c1 = slice(-dc, cols), slice(0, cols + dc)
    return (r0, c0), (r1, c1)


def morans_i(values: np.ndarray, contiguity: str = "rook") -> MoranResult:
    """Global Moran's I of a [rows, cols] map (NaN = left out) with binary ``rook`` or ``queen`` contiguity."""
    from scipy import stats

    if contiguity not in CONTIGUITY:
        raise ValueError(f"contiguity {contiguity!r} is unknown: choose one of {', '.join(CONTIGUITY)}")
    v = np.asarray(values, dtype=np.float64)
    valid = np.isfinite(v)
    n = int(valid.sum())
    if n < 3:
        return MoranResult(float("nan"), float("nan"), float("nan"), float("nan"), n, 0, contiguity)
    z = np.where(valid, v - v[valid].mean(), 0.0)
    cross = 0.0
    pairs = 0
    degree = np.zeros(v.shape)
    for dr, dc in CONTIGUITY[contiguity]:
        a, b = _pairs_along(valid, dr, dc)
        both = valid[a] & valid[b]
        cross += float((z[a] * z[b])[both].sum())
        pairs += int(both.sum())
        degree[a] += both
        degree[b] += both
    ei = -1.0 / (n - 1)
    if pairs == 0:
        return MoranResult(float("nan"), ei, float("nan"), float("nan"), n, 0, contiguity)
    s0 = 2.0 * pairs  # binary symmetric weights: every pair counted both ways
    s1 = 2.0 * s0
    s2 = float((4.0 * degree[valid] ** 2).sum())
    m2 = float((z[valid] ** 2).sum())
    i = n / s0 * (2.0 * cross) / m2 if m2 > 0 else float("nan")
    var = (n * n * s1 - n * s2 + 3 * s0 * s0) / ((n * n - 1) * s0 * s0) - ei * ei
    zval = (i - ei) / np.sqrt(var) if var > 0 else float("nan")
    p = float(2 * stats.norm.sf(abs(zval))) if np.isfinite(zval) else float("nan")
    return MoranResult(float(i), ei, float(zval), p, n, pairs, contiguity)


def _xcorr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``out[dr + R − 1, dc + C − 1] = Σ_s a(s) b(s + (dr, dc))`` for every lag (full cross-correlation)."""
    from scipy.signal import fftconvolve

    return fftconvolve(b, a[::-1, ::-1], mode="full")


def modified_ttest(x: np.ndarray, y: np.ndarray, *, cell_size: tuple[float, float] = (1.0, 1.0),
                   n_classes: int | None = None) -> ModifiedTTest:
    """Dutilleul's modified t-test of Pearson's r between two maps on one grid (NaN cells left out).

    ``cell_size`` = (east–west, north–south) size of a cell, so distance classes are isotropic in ground
    distance (e.g. km); the correlograms are Moran-type autocorrelations in ``n_classes`` equal-width classes
    (None: classes one cell wide, i.e. the smaller cell side; 13 reproduces SpatialPack's default).
    """
    from scipy import stats

    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    m = np.isfinite(x) & np.isfinite(y)
    n = int(m.sum())
    if n < 4:
        return ModifiedTTest(float("nan"), n, float("nan"), float("nan"), float("nan"), n_classes or 0)
    rows = np.flatnonzero(m.any(axis=1))
    cols = np.flatnonzero(m.any(axis=0))
    sub = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))  # crop to the valid cells' extent
    m, x, y = m[sub], x[sub], y[sub]
    zx = np.where(m, x - x[m].mean(), 0.0)
    zy = np.where(m, y - y[m].mean(), 0.0)
    vx, vy = float((zx[m] ** 2).mean()), float((zy[m] ** 2).mean())
    r = float((zx * zy)[m].sum() / (n * np.sqrt(vx * vy))) if vx > 0 and vy > 0 else float("nan")
    R, C = m.shape
    mf = m.astype(np.float64)
    count = np.rint(_xcorr(mf, mf))  # ordered pairs of valid cells per lag
    sxx, syy = _xcorr(zx, zx), _xcorr(zy, zy)
    dr = (np.arange(2 * R - 1) - (R - 1))[:, None] * cell_size[1]
    dc = (np.arange(2 * C - 1) - (C - 1))[None, :] * cell_size[0]
    dist = np.hypot(dr, dc)
    dist[R - 1, C - 1] = np.nan  # lag 0: the diagonal of R, not a pair
    used = (count > 0) & np.isfinite(dist)
    max_dist = float(dist[used].max())
    if n_classes is None:
        n_classes = max(1, int(np.ceil(max_dist / min(cell_size))))
    upper = (np.arange(1, n_classes + 1)) * (max_dist / n_classes)
    cls = np.minimum(np.searchsorted(upper, np.nan_to_num(dist, nan=0.0), side="left"), n_classes - 1)
    pairs_k = np.bincount(cls[used], weights=count[used], minlength=n_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        rho_x = np.where(pairs_k > 0, np.bincount(cls[used], weights=sxx[used], minlength=n_classes) / pairs_k / vx, 0)
        rho_y = np.where(pairs_k > 0, np.bincount(cls[used], weights=syy[used], minlength=n_classes) / pairs_k / vy, 0)
    # row sums of Rx and Ry at every valid cell: 1 + Σ_k ρ(k) · (valid cells in class k around it)
    kernel_x = np.where(np.isfinite(dist), rho_x[cls], 0.0)
    kernel_y = np.where(np.isfinite(dist), rho_y[cls], 0.0)
    from scipy.signal import fftconvolve

    row_x = (1.0 + fftconvolve(mf, kernel_x, mode="same"))[m]
    row_y = (1.0 + fftconvolve(mf, kernel_y, mode="same"))[m]
    tr_xy = n + float((pairs_k * rho_x * rho_y).sum())
    s_x, s_y = float(row_x.sum()), float(row_y.sum())
    tr_bx, tr_by = n - s_x / n, n - s_y / n
    tr_bxby = tr_xy + (s_x * s_y / n - 2.0 * float((row_x * row_y).sum())) / n
    ess = float(tr_bx * tr_by / tr_bxby + 1.0)
    df = ess - 2.0
    if not (df > 0 and np.isfinite(r)):
        f, p = float("nan"), float("nan")
    elif abs(r) >= 1:  # identical (or mirrored) maps: F is infinite
        f, p = float("inf"), 0.0
    else:
        f = df * r * r / (1.0 - r * r)
        p = float(stats.f.sf(f, 1.0, df))
    return ModifiedTTest(r, n, ess, float(f), p, n_classes)
