"""End to end on a small window of usa-250x500 against the local STAC stack (pgstac + COG server on 127.0.0.1).

embed-grid (chips through STAC, real GeoCLIP locations) → map-species / uncertainty-map through the CLI; rasters
reopen with the grid's georeferencing; a killed run resumes to the same cache; injected faults leave complete
failure records and no corrupt chunk; Dask equals single-process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
import xarray as xr
from click.testing import CliRunner

from geoprom3e.cli import main
from geoprom3e.demo.world import DemoWorld, make_photo, write_scenes
from geoprom3e.engine import EmbeddingCache
from geoprom3e.grid import get_grid
from geoprom3e.model import ProM3E, ProM3EConfig
from geoprom3e.testing.encoders import save_small_hf_clip, save_small_sat
from geoprom3e.testing.faults import FaultConfig

BBOX = ["-105.4", "38.6", "-103.6", "39.4"]  # 8 rows x 15 cols of usa-250x500
WORLD = DemoWorld(bbox=(-105.4, 38.6, -103.6, 39.4), boundary_lon=-104.5, cloudy_fraction=0.1, seed=1)


@pytest.fixture(scope="module")
def grid():
    return get_grid("usa-250x500").subset(tuple(float(v) for v in BBOX))


@pytest.fixture(scope="module")
def assets(tmp_path_factory, grid):
    d = tmp_path_factory.mktemp("e2e")
    write_scenes(WORLD, grid, d / "scenes")
    sat = save_small_sat(d / "sat", seed=0)
    img = save_small_hf_clip(d / "img", seed=1)
    torch.manual_seed(0)
    ProM3E(ProM3EConfig(embed_dim=32, mlp_dim=64, heads=4)).save_checkpoint(d / "model")
    make_photo(WORLD.species[0], np.random.default_rng(0)).save(d / "query.jpg")
    return {"dir": d, "scenes": d / "scenes", "sat": sat, "img": img, "model": d / "model", "photo": d / "query.jpg"}


def _embed_args(stack, assets: dict, cache: Path, *extra: str) -> list[str]:
    return ["embed-grid", "--grid", "usa-250x500", "--bbox", *BBOX, "--modalities", "sat,loc", "--stac-url",
            stack.stac_url, "--collection", stack.collection,
            "--datetime", "2020-05-01/2020-09-30", "--sat-weights", str(assets["sat"]), "--cache", str(cache),
            "--chip-size", "64", "--chunk-size", "4", "--threads", "4", "--device", "cpu", *extra]


def _invoke(args: list[str]):
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output + repr(res.exception)
    return res


def _cache_arrays(path: Path, grid) -> dict[str, np.ndarray]:
    c = EmbeddingCache(path)
    assert c.grid.window_in(grid) == (0, 0) and c.grid.shape == grid.shape
    return {f"{k}_{m}": np.asarray(c.root[f"{m}_{'embedding' if k == 'emb' else 'present'}"][:])
            for m in ("sat", "loc") for k in ("emb", "present")}


def test_embed_then_maps_reopen_with_grid_georeferencing(stack, assets, grid, tmp_path):
    s = stack(assets["scenes"])
    cache = tmp_path / "cache.zarr"
    res = _invoke(_embed_args(s, assets, cache))
    assert "chunks embedded" in res.output
    rpc = float(res.output.split(" COG requests per chip")[0].rsplit(", ", 1)[1])
    assert 1.0 <= rpc <= 4.0  # one visual and one SCL window per chip, plus headers and retries
    arr = _cache_arrays(cache, grid)
    mask = grid.mask()
    assert arr["present_loc"][mask].all()
    # every cloudy scene (SCL says cloud, cloud cover 60 %) is excluded; every other cell has its chip
    n_sat = int(arr["present_sat"][mask].sum())
    assert 0.7 * mask.sum() < n_sat < mask.sum()
    fails = EmbeddingCache(cache).failures("sat")
    assert len(fails) == int(mask.sum()) - n_sat and all(f["reason"] for f in fails)

    out = tmp_path / "maps"
    _invoke(["map-species", str(assets["photo"]), "--grid", "usa-250x500", "--bbox", *BBOX, "--cache", str(cache),
             "--checkpoint", str(assets["model"]), "--image-weights", str(assets["img"]), "--device", "cpu",
             "--out", str(out)])
    _invoke(["uncertainty-map", "--grid", "usa-250x500", "--bbox", *BBOX, "--cache", str(cache), "--checkpoint",
             str(assets["model"]), "--visible", "sat,loc", "--device", "cpu", "--out", str(out)])
    for tif, bands in (("species_query.tif", ("similarity",)), ("uncertainty.tif", ("sigma_l1", "n_modalities"))):
        with rasterio.open(out / tif) as ds:
            assert ds.crs.to_epsg() == 4326
            assert ds.transform.almost_equals(grid.transform)
            assert (ds.height, ds.width) == grid.shape
            assert ds.descriptions == bands
            v = ds.read(1, masked=True)
            assert v.mask[~mask].all() and not v.mask[mask].all()
        nc = xr.open_dataset(out / tif.replace(".tif", ".nc"), decode_coords="all")
        lat, lon = grid.cell_centers()
        np.testing.assert_allclose(nc["lat"].values, lat[:, 0], atol=1e-9)
        np.testing.assert_allclose(nc["lon"].values, lon[0], atol=1e-9)
        assert nc.rio.crs.to_epsg() == 4326
    with rasterio.open(out / "uncertainty.tif") as ds:
        n_mod = ds.read(2, masked=True)
    # cells without a chip fell back to location only, and the map says so
    assert set(np.unique(n_mod.compressed()).tolist()) == {1.0, 2.0}
    assert (n_mod.filled(0) == 2).sum() == n_sat


def test_killed_run_resumes_to_the_same_cache(stack, assets, grid, tmp_path):
    s = stack(assets["scenes"], FaultConfig(latency_s=0.02))
    full = tmp_path / "full.zarr"
    _invoke(_embed_args(s, assets, full))
    part = tmp_path / "part.zarr"
    cmd = [sys.executable, "-m", "geoprom3e", *_embed_args(s, assets, part)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    marker_dir = part / "commits" / "sat"
    deadline = time.time() + 120
    while time.time() < deadline and not (marker_dir.is_dir() and len(list(marker_dir.glob("*.json"))) >= 2):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = len(list(marker_dir.glob("*.json")))
    total = len(list((full / "commits" / "sat").glob("*.json")))
    assert 2 <= done_before < total, "the run must be killed part-way"
    res = _invoke(_embed_args(s, assets, part))
    assert "already cached" in res.output
    a, b = _cache_arrays(full, grid), _cache_arrays(part, grid)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_injected_faults_leave_complete_failure_records(stack, assets, grid, tmp_path):
    s = stack(assets["scenes"], FaultConfig(error_rate=0.35, error_status=503, truncate_rate=0.1, seed=3))
    cache = tmp_path / "faulty.zarr"
    _invoke(_embed_args(s, assets, cache))
    c = EmbeddingCache(cache)
    arr = _cache_arrays(cache, grid)
    mask = grid.mask()
    fails = c.failures("sat")
    failed_cells = {(f["row"], f["col"]) for f in fails}
    for r, col in zip(*np.nonzero(mask)):  # every cell: an embedding, or a failure with its reason
        assert arr["present_sat"][r, col] != ((r, col) in failed_cells)
    assert all(f["reason"] for f in fails)
    ok = arr["present_sat"]
    assert np.isfinite(arr["emb_sat"][ok].astype(np.float32)).all()  # no corrupt chunk
    assert np.isnan(arr["emb_sat"][~ok].astype(np.float32)).all()
    np.testing.assert_allclose(np.linalg.norm(arr["emb_sat"][ok].astype(np.float32), axis=-1), 1, atol=3e-3)
    # the outage ends: a plain rerun keeps the committed chunks, --retry-failed redoes the ones with failures
    s.files.set_faults(FaultConfig())
    res = _invoke(_embed_args(s, assets, cache))
    assert "0 chunks embedded" in res.output
    res = _invoke(_embed_args(s, assets, cache, "--retry-failed"))
    healed = _cache_arrays(cache, grid)["present_sat"]
    clean = tmp_path / "clean.zarr"
    _invoke(_embed_args(s, assets, clean))
    assert np.array_equal(healed, _cache_arrays(clean, grid)["present_sat"])
    assert healed[mask].sum() > ok[mask].sum()


def test_dask_equals_single_process_against_the_stack(stack, assets, grid, tmp_path):
    pytest.importorskip("dask.distributed")
    s = stack(assets["scenes"])
    _invoke(_embed_args(s, assets, tmp_path / "one.zarr"))
    _invoke(_embed_args(s, assets, tmp_path / "dask.zarr", "--workers", "2"))
    a, b = _cache_arrays(tmp_path / "one.zarr", grid), _cache_arrays(tmp_path / "dask.zarr", grid)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_dry_run_estimates_from_measured_rates(stack, assets, tmp_path):
    s = stack(assets["scenes"], FaultConfig(latency_s=0.02))
    res = _invoke(_embed_args(s, assets, tmp_path / "cache", "--dry-run"))
    line = [ln for ln in res.output.splitlines() if ln.startswith("embedding ")][-1]
    assert "120 cells" in line and "at the rates of a 32-cell probe" in line
    rpc = float(line.split("COG requests (measured ")[1].split(" per chip")[0])
    reads = int(line.split("about ")[1].split(" COG requests")[0].replace(",", "").split()[-1])
    assert reads == round(rpc * 120)  # from the probe, not a fixed two reads per cell
    assert not (tmp_path / "cache").exists()
    run = _invoke(_embed_args(s, assets, tmp_path / "cache"))  # the real run's figure is close to the probe's
    real = float(run.output.split(" COG requests per chip")[0].rsplit(", ", 1)[1])
    assert real / 3 <= rpc <= real * 3, (rpc, real)
