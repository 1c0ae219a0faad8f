"""Gaussian smoothing of map layers: the paper's recipe and a mask-aware normalised variant."""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter

from geoprom3e.errors import ConfigError

#: ``paper``: empty and masked cells count as 0 (paper supplement 1.3); ``normalized``: divided by the
#: smoothed land mask so coasts and borders are not pulled toward 0; ``none``: raw values.
SMOOTHING_METHODS = ("paper", "normalized", "none")


def smooth(
    values: np.ndarray,
    mask: np.ndarray,
    sigma: float | tuple[float, float],
    method: str = "paper",
    truncate: float = 4.0,
) -> np.ndarray:
    """Smooth a [rows, cols] layer (NaN = empty) with a Gaussian of ``sigma`` cells; NaN outside ``mask``.

    - ``paper``: ``gaussian_filter(nan_to_num(v), sigma, mode="constant", cval=0, truncate=truncate)``,
      so every in-mask cell gets a value (empty cells near data get a share of it).
    - ``normalized``: ``G(v · m) / G(m)`` with ``m`` the land mask: a kernel-weighted mean over land cells,
      where empty land cells still count as 0 but sea and foreign cells do not.
    - ``none`` (or ``sigma`` 0): the raw layer, empty cells stay NaN.
    """
    if method not in SMOOTHING_METHODS:
        raise ConfigError(f"--smoothing {method!r} is unknown: choose one of {', '.join(SMOOTHING_METHODS)}")
    sig = (float(sigma), float(sigma)) if np.isscalar(sigma) else tuple(float(s) for s in sigma)
    if any(not np.isfinite(s) or s < 0 for s in sig):
        raise ConfigError(f"--sigma {sigma} must be a finite number ≥ 0 (in cells; 0 turns smoothing off)")
    mask = np.asarray(mask, dtype=bool)
    v = np.asarray(values, dtype=np.float64)
    if method == "none" or all(s == 0 for s in sig):
        out = v.astype(np.float32, copy=True)
        out[~mask] = np.nan
        return out
    filled = np.where(mask & np.isfinite(v), v, 0.0)
    smoothed = gaussian_filter(filled, sig, mode="constant", cval=0.0, truncate=truncate)
    if method == "normalized":
        weight = gaussian_filter(mask.astype(np.float64), sig, mode="constant", cval=0.0, truncate=truncate)
        with np.errstate(invalid="ignore", divide="ignore"):
            smoothed = np.where(weight > 1e-12, smoothed / weight, np.nan)
    out = smoothed.astype(np.float32)
    out[~mask] = np.nan
    return out
