"""What the engine needs from each modality: gather raw inputs for cells (I/O), then encode them (compute).

A :class:`CellInput` is small and picklable (it loads its encoder lazily in each process), so the same
object drives the single-process pipeline and Dask workers. Concrete inputs for ``loc``, ``sat`` and
``env`` adapt the encoders and imagery layers; tests and the demo may pass any object with this shape.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np


@dataclass
class Gathered:
    """Raw inputs of a block of n cells, as the gather stage produced them."""

    raw: Any
    """Whatever ``encode`` takes for the cells whose ``ok`` is True (e.g. chips [k, 3, H, W], coords [k, 2])."""
    ok: np.ndarray
    """[n] bool: the cell has a usable raw input."""
    reasons: list[str] = field(default_factory=list)
    """[n] why each failed cell failed ("" for ok cells)."""
    extra: dict[str, np.ndarray] = field(default_factory=dict)
    """Optional per-cell side information [n] (e.g. item id, cloud fraction) kept in the manifest."""


@runtime_checkable
class CellInput(Protocol):
    """One modality's gather + encode for grid cells."""

    modality: str
    """Modality name (``loc``, ``sat``, ``env``, ...)."""

    def cache_key(self) -> dict[str, Any]:
        """What identifies these embeddings (encoder weights, imagery settings): a cache built with another
        key is refused."""

    def gather(self, lat: np.ndarray, lon: np.ndarray) -> Gathered:
        """Fetch raw inputs for cells at (lat, lon) degrees. Must not raise for one bad cell: mark it."""

    def encode(self, raw: Any) -> np.ndarray:
        """[k, 512] float32 L2-normalised embeddings of the ``ok`` cells' raw inputs."""
