"""End to end through ``embed_grid`` against the local STAC stack: under 50 % HTTP 503s and stalls past the
client's timeout, every failure is recorded as transient, every embedded cell equals the fault-free one, and
``retry_failed`` ends with the fault-free cache cell for cell (embeddings, presence, and the permanent failures:
cloudy cells stay failed, as in a clean run).

``retry_failed`` fetches again only the cells whose failure was transient and keeps every cell done before, so
retries converge even while the outage lasts.
"""

from __future__ import annotations

import numpy as np
import pytest

from geoprom3e.demo.world import DemoWorld, write_scenes
from geoprom3e.engine import EmbeddingCache
from geoprom3e.engine.pipeline import embed_grid
from geoprom3e.engine.sources import SatInput
from geoprom3e.grid import get_grid
from geoprom3e.imagery import ImageryRequest, ReadSettings, is_transient
from geoprom3e.imagery.outcome import failure_kind
from geoprom3e.testing.encoders import save_small_sat
from geoprom3e.testing.faults import FaultConfig

BBOX = (-105.4, 38.6, -104.2, 39.2)
WORLD = DemoWorld(bbox=BBOX, boundary_lon=-104.8, cloudy_fraction=0.1, seed=1)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    grid = get_grid("usa-250x500").subset(BBOX)
    d = tmp_path_factory.mktemp("transient")
    write_scenes(WORLD, grid, d / "scenes")
    return grid, d / "scenes", save_small_sat(d / "sat", seed=0)


def _sat(stack, weights) -> SatInput:
    req = ImageryRequest(stac_url=stack.stac_url, collection=stack.collection, datetime="2020-05-01/2020-09-30",
                         chip_size=64)
    return SatInput(weights=str(weights), request=req, threads=4, device="cpu",
                    settings=ReadSettings(retries=1, backoff_s=0.01, http_timeout_s=1))


def _state(path, grid):
    c = EmbeddingCache(path)
    assert c.grid.shape == grid.shape
    fails = {(f["row"], f["col"]): f["reason"] for f in c.failures("sat")}
    emb, present = c.read_all("sat")
    return emb.astype(np.float16), present, fails


@pytest.mark.slow
def test_under_5xx_and_stalls_failures_are_transient_done_cells_are_right_and_retries_heal(stack, world, tmp_path):
    grid, scenes, weights = world
    s = stack(scenes)
    embed_grid(grid, tmp_path / "clean.zarr", [_sat(s, weights)], chunk_size=4)
    emb0, present0, fails0 = _state(tmp_path / "clean.zarr", grid)
    assert fails0 and all(failure_kind(r) == "no_scene" for r in fails0.values())  # cloudy cells: permanent
    # seed 32: the first two rolls of the fault dice are a stall and a 503, whatever the thread order
    s.files.set_faults(FaultConfig(error_rate=0.5, error_status=503, timeout_rate=0.15, timeout_s=1.5, seed=32))
    cache = tmp_path / "faulty.zarr"
    before = None
    for k in range(2):  # the first run, then a --retry-failed run, both during the outage
        embed_grid(grid, cache, [_sat(s, weights)], chunk_size=4, retry_failed=k > 0)
        emb1, present1, fails1 = _state(cache, grid)
        assert any(is_transient(r) for r in fails1.values()) and present1.sum() < present0.sum()
        if before is not None:  # a retry keeps every cell done before and adds some
            assert (present1 >= before).all() and present1.sum() > before.sum()
        before = present1
        assert {failure_kind(r) for r in fails1.values()} <= {"transient", "no_scene"}, set(fails1.values())
        # a cell is done only when its reads came whole: every embedded cell is the fault-free one (to float
        # rounding: the encoder's batch holds fewer chips than in the clean run; another chip moves it far more)
        assert not (present1 & ~present0).any()
        np.testing.assert_allclose(emb1[present1].astype(np.float32), emb0[present1].astype(np.float32),
                                   rtol=0, atol=1e-6)
    faults = s.files.stats()["faults"]
    assert faults.get("http503", 0) > 0 and faults.get("timeout", 0) > 0
    for _ in range(30):  # retries during the outage converge: each round keeps what it got
        if not any(is_transient(r) for r in _state(cache, grid)[2].values()):
            break
        embed_grid(grid, cache, [_sat(s, weights)], chunk_size=4, retry_failed=True)
    emb, present, fails = _state(cache, grid)
    assert not any(is_transient(r) for r in fails.values())
    np.testing.assert_array_equal(present, present0)
    # cell for cell the fault-free cache, to float16 storage rounding (retried cells are encoded in other batches)
    np.testing.assert_allclose(emb[present].astype(np.float32), emb0[present].astype(np.float32), rtol=0, atol=1e-3)
    assert fails.keys() == fails0.keys()
    s.files.set_faults(FaultConfig())  # after the outage a --retry-failed run has nothing left to do
    assert embed_grid(grid, cache, [_sat(s, weights)], chunk_size=4, retry_failed=True).chunks_done == 0
