"""Uncertainty maps: the model's ‖σ‖₁ per cell and how many modalities each cell showed it."""

from __future__ import annotations

import numpy as np

from geoprom3e.engine.cache import EmbeddingCache
from geoprom3e.engine.fuse import visible_count


def uncertainty_layers(cache: EmbeddingCache, group: str) -> dict[str, np.ndarray]:
    """``sigma_l1`` (float32, NaN where no value) and ``n_modalities`` (float32) over the whole grid."""
    g = cache.root[group]
    mask = cache.grid.mask()
    sigma = np.asarray(g["sigma_l1"][:], dtype=np.float32)
    bits = np.asarray(g["visible_bits"][:])
    valid = mask & (bits > 0)
    sigma = np.where(valid, sigma, np.nan).astype(np.float32)
    n_mod = np.where(valid, visible_count(bits), np.nan).astype(np.float32)
    return {"sigma_l1": sigma, "n_modalities": n_mod}
