"""Small real caches and models for product tests: Fourier loc/sat embeddings on a window of usa-250x500."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from geoprom3e.engine import embed_grid
from geoprom3e.grid import get_grid
from geoprom3e.model import ProM3E, ProM3EConfig
from geoprom3e.testing.engine import FourierLocInput

BBOX = (-105.4, 38.6, -103.6, 39.4)  # 8 rows x 15 columns of usa-250x500
GRID = get_grid("usa-250x500").subset(BBOX)


def inputs():
    """sat and loc stand-ins; every 7th sat cell fails, so cells differ in what they show the model."""
    return [FourierLocInput(), FourierLocInput("sat", seed=5, fail_every=7)]


def build_cache(path: Path, grid=GRID, chunk_size: int = 4, modalities=None) -> Path:
    chosen = [i for i in inputs() if modalities is None or i.modality in modalities]
    embed_grid(grid, path, chosen, chunk_size=chunk_size)
    return path


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    return ProM3E(ProM3EConfig(embed_dim=32, mlp_dim=64, heads=4)).save_checkpoint(
        tmp_path_factory.mktemp("model") / "model")


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    return build_cache(tmp_path_factory.mktemp("cache") / "cache")
