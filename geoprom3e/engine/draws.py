"""Latent draws that depend only on (seed, cell), never on how the grid was split into chunks or workers.

ProM3E decodes from ``z = μ + exp(logvar / 2) · mean(ε_1..ε_n)`` with one scalar ε per sample (as published).
Here ε for a cell comes from a counter-based generator: SplitMix64 of (seed, global cell index, draw number)
gives uniform numbers, Box–Muller turns pairs into normals. The same cell gets the same ε in any chunk size,
worker count, or Dask versus one process.
"""

from __future__ import annotations

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        z = x + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def cell_normals(seed: int, cells: np.ndarray, n: int) -> np.ndarray:
    """[len(cells), n] standard normals for global cell indices ``cells`` (int64 ≥ 0)."""
    cells = np.asarray(cells, dtype=np.uint64).reshape(-1, 1)
    j = np.arange(2 * n, dtype=np.uint64).reshape(1, -1)
    key = _splitmix64(np.full(1, np.uint64(seed & 0xFFFFFFFFFFFFFFFF)))
    with np.errstate(over="ignore"):
        counter = cells * np.uint64(2 * n) + j
    bits = _splitmix64(_splitmix64(counter) ^ key)
    u = (bits >> np.uint64(11)).astype(np.float64) * 2.0**-53  # [0, 1)
    u1, u2 = 1.0 - u[:, 0::2], u[:, 1::2]  # u1 in (0, 1]
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)


def cell_eps_mean(seed: int, cells: np.ndarray, n: int) -> np.ndarray:
    """Mean of ``n`` draws per cell (float32 [len(cells)]); zeros when ``n`` is 0 (decode from μ)."""
    if n <= 0:
        return np.zeros(len(np.asarray(cells)), np.float32)
    return cell_normals(seed, cells, n).mean(axis=1).astype(np.float32)
