"""Compare two rasters cell by cell: Pearson and Spearman correlation over cells valid in both.

The paper's analysis of ‖σ‖₁ against Shannon diversity is ``compare_rasters(uncertainty.tif, diversity.tif)``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from geoprom3e.errors import InputError


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
                    band_b: str | int | None = None) -> Comparison:
    """Pearson and Spearman correlation of two rasters on the same grid."""
    from scipy import stats

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
    return Comparison(f"{a}:{band_a or 1}", f"{b}:{band_b or 1}", n, float(pr.statistic), float(pr.pvalue),
                      float(sr.statistic), float(sr.pvalue))
