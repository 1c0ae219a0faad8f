"""Small, real cell inputs for engine tests: deterministic encoders of (lat, lon) that need no weights."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from geoprom3e.engine.inputs import Gathered
from geoprom3e.engine.sources import SatInput


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
    raise_in_gather: str = ""
    """Raise an :class:`~geoprom3e.errors.InputError` with this message in ``gather`` (a run-wide error)."""
    kill_below_lat: float | None = None
    """Kill the gathering process (SIGKILL, as the out-of-memory killer does) on a block with a cell south of this."""

    def cache_key(self) -> dict[str, Any]:  # noqa: D102
        return {"encoder": "fourier-test", "seed": self.seed, "scale": self.scale}

    def gather(self, lat: np.ndarray, lon: np.ndarray) -> Gathered:  # noqa: D102
        if self.raise_in_gather:
            from geoprom3e.errors import InputError

            raise InputError(self.raise_in_gather)
        if self.kill_below_lat is not None and (np.asarray(lat) < self.kill_below_lat).any():
            import os
            import signal

            os.kill(os.getpid(), signal.SIGKILL)
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


@dataclass
class ProjectedSatInput(SatInput):
    """The real ``sat`` gather (STAC search, COG reads, SCL check) with an encoder that costs the CPU little:
    a fixed random projection of 8 x 8 mean-pooled chips. It stands in for a GPU encoder in benchmarks of the
    gather stage, where the host's cores must go to gathering as they do on a GPU machine."""

    seed: int = 0
    """Seed of the fixed projection."""

    def cache_key(self) -> dict[str, Any]:  # noqa: D102
        return {"encoder": "projected-sat-test", "seed": self.seed,
                "imagery": repr(self._request())}

    def encode(self, raw: np.ndarray) -> np.ndarray:  # noqa: D102
        x = np.asarray(raw, np.float32)
        n, c, h, w = x.shape
        pooled = x[:, :, : h // 8 * 8, : w // 8 * 8].reshape(n, c, 8, h // 8, 8, w // 8).mean(axis=(3, 5))
        proj = np.random.default_rng(self.seed).normal(0, 1, (c * 64, 512)).astype(np.float32)
        v = pooled.reshape(n, -1) @ proj
        return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
