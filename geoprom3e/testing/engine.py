"""Small, real cell inputs for engine tests: deterministic encoders of (lat, lon) that need no weights."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from geoprom3e.engine.inputs import Gathered


@dataclass
class FourierLocInput:
    """``loc``-like input: random Fourier features of (lat, lon) projected to 512-d and L2-normalised."""

    modality: str = "loc"
    """Modality this input fills."""
    seed: int = 0
    """Seed of the fixed random projection."""
    scale: float = 0.2
    """Frequency scale (1/degrees): larger makes nearby cells less alike."""
    fail_every: int = 0
    """Mark every n-th cell (by position in its block) as failed, with a reason; 0 = never."""

    def cache_key(self) -> dict[str, Any]:  # noqa: D102
        return {"encoder": "fourier-test", "seed": self.seed, "scale": self.scale}

    def gather(self, lat: np.ndarray, lon: np.ndarray) -> Gathered:  # noqa: D102
        ok = np.ones(lat.shape[0], bool)
        reasons = [""] * lat.shape[0]
        if self.fail_every:
            for i in range(0, lat.shape[0], self.fail_every):
                ok[i] = False
                reasons[i] = "synthetic failure for tests"
        return Gathered(np.stack([lat[ok], lon[ok]], axis=1), ok, reasons)

    def encode(self, raw: np.ndarray) -> np.ndarray:  # noqa: D102
        rng = np.random.default_rng(self.seed)
        w = rng.normal(0, self.scale, (2, 256))
        b = rng.uniform(0, 2 * np.pi, 256)
        proj = rng.normal(0, 1, (512, 512)) / np.sqrt(512)
        f = raw @ w + b
        feats = np.concatenate([np.sin(f), np.cos(f)], axis=1) @ proj
        return (feats / np.linalg.norm(feats, axis=1, keepdims=True)).astype(np.float32)
