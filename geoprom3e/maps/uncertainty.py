"""Uncertainty maps: the model's ‖σ‖₁ per cell and how many modalities each cell showed it (array maths only)."""

from __future__ import annotations

import numpy as np

#: What ‖σ‖₁ is, for every output that carries it.
SIGMA_L1_NOTE = (
    "||sigma||_1 = sum over latent dimensions of exp(logvar / 2), as published with ProM3E. Under the published "
    "training loss it has not been shown to vary with how informative a cell's inputs are: treat differences "
    "between cells with caution."
)


def visible_count(bits: np.ndarray) -> np.ndarray:
    """Number of modalities each cell showed the model, from a ``visible_bits`` array (bit i = modality i)."""
    return np.unpackbits(np.asarray(bits, np.uint8)[..., None], axis=-1).sum(-1)


def uncertainty_layers(sigma_l1: np.ndarray, visible_bits: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
    """``sigma_l1`` and ``n_modalities`` (float32 [rows, cols], NaN where the cell has no value)."""
    valid = np.asarray(mask, bool) & (np.asarray(visible_bits) > 0)
    sigma = np.where(valid, sigma_l1, np.nan).astype(np.float32)
    n_mod = np.where(valid, visible_count(visible_bits), np.nan).astype(np.float32)
    return {"sigma_l1": sigma, "n_modalities": n_mod}
