"""Compare two rasters cell by cell: Pearson and Spearman correlation over cells valid in both.

The paper's analysis of ‖σ‖₁ against Shannon diversity is ``compare_rasters(uncertainty.tif, diversity.tif)``.
Neighbouring cells of smoothed maps are not independent, so besides the naive p-values (which treat every
cell as an independent sample) the result carries each map's Moran's I and Dutilleul's modified t-test
(effective sample size and its p-value; see :mod:`geoprom3e.maps.spatial_stats`). Report the latter.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from geoprom3e.errors import InputError
from geoprom3e.maps.spatial_stats import CONTIGUITY, modified_ttest, morans_i


@dataclass
class Comparison:
    """Correlation of two rasters over the cells valid in both."""

    a: str
    """First raster (path:band)."""
    b: str
    """Second raster (path:band)."""
    n_cells: int
    """Cells valid (finite, not nodata) in both."""
    pearson_r: float
    """Pearson correlation coefficient."""
    pearson_p: float
    """Two-sided p-value of Pearson's r."""
    spearman_rho: float
    """Spearman rank correlation."""
    spearman_p: float
    """Two-sided p-value of Spearman's rho."""
    effective_n: float = float("nan")
    """Dutilleul's effective sample size (≤ n_cells when the maps are autocorrelated)."""
    pearson_p_dutilleul: float = float("nan")
    """Two-sided p-value of Pearson's r from Dutilleul's modified t-test (accounts for autocorrelation)."""
    spearman_p_dutilleul: float = float("nan")
    """Spearman's rho tested with the same effective sample size (t-test on n_e − 2 df)."""
    moran_i_a: float = float("nan")
    """Moran's I of A over the cells used."""
    moran_i_b: float = float("nan")
    """Moran's I of B over the cells used."""
    contiguity: str = "rook"
    """Neighbours used for Moran's I (``rook``: 4 edge neighbours; ``queen``: 8)."""
    distance_classes: int = 0
    """Equal-width distance classes of the correlograms in the modified t-test (one cell wide)."""
    note: str = ("pearson_p and spearman_p treat every cell as independent; with autocorrelated maps use "
                 "pearson_p_dutilleul (effective_n samples)")
    """How to read the p-values."""

    def to_dict(self) -> dict[str, Any]:
        """As a JSON-ready dict."""
        return asdict(self)


def read_band(path: str | Path, band: str | int | None = None) -> tuple[np.ndarray, Any, Any]:
    """(values float64 with NaN for nodata, transform, crs) of one band, chosen by 1-based index or description."""
    import rasterio

    p = Path(path)
    if not p.is_file():
        raise InputError(f"raster {str(p)!r} does not exist: pass a GeoTIFF written by geoprom3e (or any GeoTIFF)")
    try:
        ds = rasterio.open(p)
    except rasterio.errors.RasterioIOError as exc:
        raise InputError(f"{str(p)!r} is not a readable raster ({exc})") from None
    with ds:
        names = [d or f"band{i + 1}" for i, d in enumerate(ds.descriptions)]
        if band is None:
            idx = 1
        elif isinstance(band, int) or str(band).isdigit():
            idx = int(band)
            if not 1 <= idx <= ds.count:
                raise InputError(
                    f"band {idx} of {str(p)!r} does not exist: it has bands 1..{ds.count} ({', '.join(names)})"
                )
        elif band in names:
            idx = names.index(band) + 1
        else:
            raise InputError(f"{str(p)!r} has no band {band!r}: choose one of {', '.join(names)}")
        arr = ds.read(idx, masked=True).astype(np.float64).filled(np.nan)
        return arr, ds.transform, ds.crs


def compare_rasters(a: str | Path, b: str | Path, *, band_a: str | int | None = None,
                    band_b: str | int | None = None, contiguity: str = "rook") -> Comparison:
    """Pearson and Spearman correlation of two rasters on the same grid, with spatially honest p-values."""
    from scipy import stats

    if contiguity not in CONTIGUITY:
        raise InputError(f"contiguity {contiguity!r} is unknown: choose one of {', '.join(CONTIGUITY)}")
    x, ta, ca = read_band(a, band_a)
    y, tb, cb = read_band(b, band_b)
    if x.shape != y.shape or not ta.almost_equals(tb) or ca != cb:
        raise InputError(f"{a} {x.shape} and {b} {y.shape} are not on the same grid (shape, transform and CRS must "
                         "match): make both maps with the same --grid")
    ok = np.isfinite(x) & np.isfinite(y)
    n = int(ok.sum())
    if n < 3:
        raise InputError(f"only {n} cells are valid in both {a} and {b}: need at least 3 to correlate")
    pr = stats.pearsonr(x[ok], y[ok])
    sr = stats.spearmanr(x[ok], y[ok])
    return spatial_comparison(f"{a}:{band_a or 1}", f"{b}:{band_b or 1}", np.where(ok, x, np.nan),
                              np.where(ok, y, np.nan), pr, sr, cell_size=_cell_size(ta, ca, x.shape[0]),
                              contiguity=contiguity)


def spatial_comparison(a: str, b: str, x: np.ndarray, y: np.ndarray, pr: Any, sr: Any, *,
                       cell_size: tuple[float, float], contiguity: str = "rook") -> Comparison:
    """A :class:`Comparison` of two [rows, cols] maps (NaN where either is missing) from scipy's r and rho."""
    from scipy import stats

    mt = modified_ttest(x, y, cell_size=cell_size)
    ess = mt.effective_n
    rho = float(sr.statistic)
    sp_mod = float("nan")
    if np.isfinite(ess) and ess > 2 and np.isfinite(rho):
        t = rho * np.sqrt((ess - 2) / (1 - rho * rho)) if abs(rho) < 1 else np.inf
        sp_mod = float(2 * stats.t.sf(abs(t), ess - 2))
    return Comparison(a, b, mt.n, float(pr.statistic), float(pr.pvalue), rho, float(sr.pvalue), effective_n=ess,
                      pearson_p_dutilleul=mt.p, spearman_p_dutilleul=sp_mod,
                      moran_i_a=morans_i(x, contiguity).i, moran_i_b=morans_i(y, contiguity).i,
                      contiguity=contiguity, distance_classes=mt.n_classes)


def _cell_size(transform: Any, crs: Any, rows: int) -> tuple[float, float]:
    """(east–west, north–south) cell size; on a geographic grid in degrees of latitude at the centre latitude."""
    dx, dy = abs(transform.a), abs(transform.e)
    if crs is not None and crs.is_geographic:
        return dx * float(np.cos(np.radians(transform.f - dy * rows / 2))), dy
    return dx, dy
