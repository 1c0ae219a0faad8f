"""The gridding engine: cache, resume, failures, settings mismatch, fusion and Dask equivalence."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from geoprom3e.engine import EmbeddingCache, FuseSettings, embed_grid, fuse_grid
from geoprom3e.errors import CacheError, SchedulerError
from geoprom3e.grid import GridSpec
from geoprom3e.model import ProM3E, ProM3EConfig
from geoprom3e.products import similarity_from_cache, uncertainty_from_cache
from geoprom3e.testing.engine import FourierLocInput

# 16 x 32 cells over Colorado/Kansas: all inside the contiguous-US outline except none; chunk 8 -> 2 x 4 chunks
GRID = GridSpec("test-16x32", "EPSG:4326", (-108.0, 37.0, -98.4, 40.2), (16, 32), mask_source="conus")


def _arrays(path, modality="loc"):
    cache = EmbeddingCache(path)
    return (np.asarray(cache.root[f"{modality}_embedding"][:]), np.asarray(cache.root[f"{modality}_present"][:]))


def test_embed_grid_fills_masked_cells_and_reports(tmp_path):
    seen = []
    rep = embed_grid(GRID, tmp_path / "c", [FourierLocInput()], chunk_size=8,
                     progress=lambda e: seen.append((e.advance, e.total)))
    emb, present = _arrays(tmp_path / "c")
    mask = GRID.mask()
    assert rep.chunks_total == 8 and rep.chunks_done == 8 and rep.chunks_skipped == 0
    assert rep.cells == int(mask.sum()) == sum(n for n, _ in seen)
    assert (present == mask).all()
    assert np.isfinite(emb[mask]).all() and np.isnan(emb[~mask]).all()
    np.testing.assert_allclose(np.linalg.norm(emb[mask].astype(np.float32), axis=-1), 1.0, atol=2e-3)
    # the cached value is the encoder's value at the cell centre
    lat, lon = GRID.cell_centers()
    direct = FourierLocInput().encode(np.array([[lat[3, 5], lon[3, 5]]]))[0]
    np.testing.assert_allclose(emb[3, 5], direct, atol=2e-3)
    # the cache is a plain Zarr store that xarray reads
    import xarray as xr

    ds = xr.open_zarr(tmp_path / "c" / "embeddings.zarr", consolidated=True)
    assert ds["loc_embedding"].dims == ("lat", "lon", "feature") and ds["loc_embedding"].shape == (16, 32, 512)
    np.testing.assert_array_equal(ds["loc_present"].values, present)
    # a second run does nothing
    again = embed_grid(GRID, tmp_path / "c", [FourierLocInput()], chunk_size=8)
    assert again.chunks_done == 0 and again.chunks_skipped == 8


def test_resume_after_partial_run_equals_uninterrupted(tmp_path):
    embed_grid(GRID, tmp_path / "full", [FourierLocInput()], chunk_size=8)
    first = embed_grid(GRID, tmp_path / "part", [FourierLocInput()], chunk_size=8, max_chunks=3)
    assert first.chunks_done == 3
    second = embed_grid(GRID, tmp_path / "part", [FourierLocInput()], chunk_size=8)
    assert second.chunks_skipped == 3 and second.chunks_done == 5
    a, pa = _arrays(tmp_path / "full")
    b, pb = _arrays(tmp_path / "part")
    assert np.array_equal(pa, pb)
    np.testing.assert_array_equal(a, b)


def test_uncommitted_chunk_is_redone(tmp_path):
    embed_grid(GRID, tmp_path / "c", [FourierLocInput()], chunk_size=8)
    marker = tmp_path / "c" / "commits" / "loc" / "r0_c0.json"
    marker.unlink()  # as if the process died after writing arrays but before committing
    cache = EmbeddingCache(tmp_path / "c")
    cache.root["loc_embedding"][0:8, 0:8, :] = 0  # half-written garbage
    rep = embed_grid(GRID, tmp_path / "c", [FourierLocInput()], chunk_size=8)
    assert rep.chunks_done == 1 and marker.is_file()
    emb, _ = _arrays(tmp_path / "c")
    assert np.abs(emb[0:8, 0:8][GRID.mask()[0:8, 0:8]]).sum() > 0


def test_failed_cells_are_listed_with_reasons(tmp_path):
    rep = embed_grid(GRID, tmp_path / "c", [FourierLocInput(fail_every=10)], chunk_size=8)
    cache = EmbeddingCache(tmp_path / "c")
    fails = cache.failures("loc")
    _, present = _arrays(tmp_path / "c")
    assert rep.failures["loc"] == len(fails) > 0
    assert int(GRID.mask().sum()) - int(present.sum()) == len(fails)
    assert all(f["reason"] == "synthetic failure for tests" and not present[f["row"], f["col"]] for f in fails)


def test_cache_built_with_other_settings_is_refused(tmp_path):
    embed_grid(GRID, tmp_path / "c", [FourierLocInput(seed=0)], chunk_size=8, max_chunks=1)
    with pytest.raises(CacheError, match=r"'loc' embeddings built with other settings \(seed: cache has 0, asked 1\)"):
        embed_grid(GRID, tmp_path / "c", [FourierLocInput(seed=1)], chunk_size=8)
    other = GridSpec("other", "EPSG:4326", (-108.0, 37.0, -98.4, 40.2), (8, 16))
    with pytest.raises(CacheError, match=r"not a window of the cache's grid 'test-16x32' \(bbox \(-108, 37, -98.4"):
        EmbeddingCache.create(tmp_path / "c", other)


def _small_model():
    torch.manual_seed(0)
    return ProM3E(ProM3EConfig(embed_dim=32, mlp_dim=64, heads=4)).eval()


def test_fuse_then_maps(tmp_path):
    embed_grid(GRID, tmp_path / "c", [FourierLocInput(fail_every=7), FourierLocInput("sat", seed=5)], chunk_size=8)
    cache = EmbeddingCache(tmp_path / "c")
    model = _small_model()
    group = fuse_grid(cache, model, FuseSettings(visible=("sat", "loc", "env"), n_samples=0), decode=["image"])
    layers = uncertainty_from_cache(cache, group)
    mask = GRID.mask()
    _, p_loc = _arrays(tmp_path / "c", "loc")
    n = layers["n_modalities"]
    assert np.isnan(n[~mask]).all()
    assert (n[mask & p_loc] == 2).all() and (n[mask & ~p_loc] == 1).all()  # env absent, loc failed -> sat only
    # fused sigma equals running the model on that cell alone with its own visible set
    lat, lon = GRID.cell_centers()
    r, c = np.argwhere(mask & ~p_loc)[0]
    x = torch.zeros(1, 6, 512)
    x[0, 1] = torch.from_numpy(FourierLocInput("sat", seed=5).encode(np.array([[lat[r, c], lon[r, c]]])))
    alone = model.infer(x.half().float(), ["sat"], n_samples=0, decode=["image"])
    np.testing.assert_allclose(layers["sigma_l1"][r, c], alone.sigma_l1.item(), rtol=1e-3)
    q = alone.recon_of("image").numpy()
    sim = similarity_from_cache(cache, group, q, mode="recon")
    assert sim.shape == (1, 16, 32) and np.isnan(sim[0][~mask]).all()
    assert np.nanargmax(sim[0]) == r * 32 + c or sim[0, r, c] > 0.999
    inter = similarity_from_cache(cache, group, x[0, 1:2].numpy(), mode="inter")
    hyb = similarity_from_cache(cache, group, x[0, 1:2].numpy(), mode="hybrid", alpha=1.0)
    np.testing.assert_allclose(inter, hyb, atol=1e-6)
    # resumable: fusing again does nothing new and gives the same group
    assert fuse_grid(cache, model, FuseSettings(visible=("sat", "loc", "env"), n_samples=0)) == group
    assert "sat-loc-env_n0_seed0_model-" in group  # readable names, not hashes


def test_dask_local_cluster_equals_single_process(tmp_path):
    pytest.importorskip("dask.distributed")
    inputs = [FourierLocInput(fail_every=9), FourierLocInput("sat", seed=3)]
    embed_grid(GRID, tmp_path / "single", inputs, chunk_size=8)
    rep = embed_grid(GRID, tmp_path / "dask", inputs, chunk_size=8, workers=2)
    assert rep.chunks_done == 8
    for m in ("loc", "sat"):
        a, pa = _arrays(tmp_path / "single", m)
        b, pb = _arrays(tmp_path / "dask", m)
        assert np.array_equal(pa, pb)
        np.testing.assert_array_equal(a, b)
    fails = [EmbeddingCache(tmp_path / name).failures("loc") for name in ("dask", "single")]
    assert fails[0] == fails[1] and len(fails[0]) > 0


def test_unreachable_scheduler(tmp_path):
    pytest.importorskip("dask.distributed")
    with pytest.raises(SchedulerError, match=r"cannot reach the Dask scheduler at 'tcp://127.0.0.1:9'"):
        embed_grid(GRID, tmp_path / "c", [FourierLocInput()], chunk_size=8, scheduler="tcp://127.0.0.1:9")
