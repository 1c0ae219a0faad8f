import csv

import numpy as np
import pytest
import xarray as xr

from geoprom3e.imagery import DONE, FAILED, ImageryRequest, ReadSettings, Signer, fetch_chip_block, fetch_chips_to_zarr
from geoprom3e.testing.cogs import scene_lonlat
from geoprom3e.testing.faults import FaultConfig
from tests.imagery.conftest import LOOPBACK, synthetic

WINDOW = "2020-01-01/2020-12-31"
FAST_FAIL = ReadSettings(retries=0, backoff_s=0.02, http_timeout_s=1, gdal_retries=0)


@pytest.fixture
def grid_scene(tmp_path):
    """One 1536 px scene (+ a second one) and 36 cells on a 6 x 6 lattice inside it."""
    root = tmp_path / "s"
    a = synthetic(root, "SCENE_A", seed=1, cloud_cover=3.0, size_px=1536)
    synthetic(root, "SCENE_B", seed=2, cloud_cover=7.0, size_px=1536)
    cols, rows = np.meshgrid(np.arange(6) * 200 + 256, np.arange(6) * 200 + 256)
    lat, lon = scene_lonlat(a, cols.ravel(), rows.ravel())
    return root, np.arange(100, 136), lat, lon


@pytest.fixture
def pc_token_endpoint(monkeypatch):
    """Point planetary_computer at a local token endpoint (PC_SDK_SAS_URL) with an empty token cache."""
    from planetary_computer.sas import TOKEN_CACHE
    from planetary_computer.settings import Settings

    def use(url: str) -> None:
        monkeypatch.setenv("PC_SDK_SAS_URL", url)
        Settings.get.cache_clear()
        TOKEN_CACHE.clear()

    yield use
    TOKEN_CACHE.clear()
    monkeypatch.delenv("PC_SDK_SAS_URL", raising=False)
    Settings.get.cache_clear()


def test_faults_end_in_done_or_listed_and_a_second_run_completes(grid_scene, served_catalog, tmp_path):
    root, ids, lat, lon = grid_scene
    files, cat = served_catalog(root, FaultConfig(error_rate=0.2, truncate_rate=0.1, timeout_rate=0.03,
                                                  timeout_s=2.0, seed=3))
    req = ImageryRequest(stac_url=str(cat), allow_hosts=LOOPBACK, datetime=WINDOW)
    out = tmp_path / "chips.zarr"
    s1 = fetch_chips_to_zarr(req, ids, lat, lon, out, block_size=12, threads=8, settings=FAST_FAIL)
    faults = files.stats()["faults"]
    assert faults.get("http503", 0) > 0 and faults.get("truncated", 0) > 0
    ds = xr.open_zarr(out)
    status = ds.status.values
    # every cell ends done or listed as failed (whether any fails depends on which request draws which fault)
    assert set(status) <= {DONE, FAILED} and s1.counts["done"] > 0
    rows = []
    if s1.failures_csv is not None:
        with open(s1.failures_csv) as f:
            rows = list(csv.DictReader(f))
    assert (s1.failures_csv is None) == (s1.counts["failed"] == 0)
    assert {int(r["cell_id"]) for r in rows} == set(ds.cell_id.values[status == FAILED].tolist())
    assert all(r["reason"] and r["status"] == "failed" for r in rows)
    # the service recovers: the same call retries only the failed cells and completes the store
    files.set_faults(FaultConfig())
    files.reset_stats()
    s2 = fetch_chips_to_zarr(req, ids, lat, lon, out, block_size=12, threads=8, settings=FAST_FAIL)
    assert s2.counts == {"pending": 0, "done": 36, "failed": 0, "no_scene": 0} and s2.failures_csv is None
    assert s2.fetched == s1.counts["failed"] and s2.extra["skipped_done"] == s1.counts["done"]
    clean = fetch_chips_to_zarr(req, ids, lat, lon, tmp_path / "clean.zarr", block_size=12, threads=8)
    assert clean.counts["done"] == 36
    a, b = xr.open_zarr(out), xr.open_zarr(tmp_path / "clean.zarr")
    assert (a.item_id.values == b.item_id.values).all(), (a.item_id.values, a.reason.values)
    bad = [k for k in range(36) if not np.array_equal(a.chips.values[k], b.chips.values[k])]
    assert not bad, (bad, a.reason.values[bad], (a.chips.values[bad] != b.chips.values[bad]).mean(axis=(1, 2, 3)))


def test_retries_absorb_transient_faults(grid_scene, served_catalog):
    root, _, lat, lon = grid_scene
    # seed 1: the first roll of the fault dice is a 503 (a block makes only a few merged requests)
    files, cat = served_catalog(root, FaultConfig(error_rate=0.3, truncate_rate=0.1, seed=1))
    block = fetch_chip_block(ImageryRequest(stac_url=str(cat), allow_hosts=LOOPBACK, datetime=WINDOW), lat[:12],
                             lon[:12], threads=4,
                             settings=ReadSettings(retries=10, backoff_s=0.01, http_timeout_s=2, gdal_retries=0))
    assert block.n_done == 12 and block.stats["retries"] > 0 and files.stats()["faults"]["http503"] > 0


def test_signing_one_token_per_container_reused_and_403_resigns(grid_scene, served_catalog, pc_token_endpoint):
    root, _, lat, lon = grid_scene
    files, cat = served_catalog(root, FaultConfig(require_token=True))
    pc_token_endpoint(files.sas_url)
    req = ImageryRequest(stac_url=str(cat), allow_hosts=LOOPBACK, datetime=WINDOW, signing="always")
    signer = Signer("always")
    b1 = fetch_chip_block(req, lat[:18], lon[:18], threads=8, signer=signer)
    assert b1.n_done == 18
    # one token for the container (the scene folder), fetched once and reused by 8 threads for 36 reads
    assert files.stats()["token_requests"] == {"local/SCENE_A": 1}
    files.revoke_tokens()  # the token expires mid-run: reads get 403, re-sign once, go on
    b2 = fetch_chip_block(req, lat[18:], lon[18:], threads=8, signer=signer)
    assert b2.n_done == 18 and files.stats()["faults"].get("403", 0) >= 1
    assert files.stats()["token_requests"] == {"local/SCENE_A": 2} and signer.invalidations == 1


def test_without_a_token_reads_fail_with_403_reason(grid_scene, served_catalog):
    root, _, lat, lon = grid_scene
    _, cat = served_catalog(root, FaultConfig(require_token=True))
    req = ImageryRequest(stac_url=str(cat), allow_hosts=LOOPBACK, datetime=WINDOW, signing="never")
    block = fetch_chip_block(req, lat[:2], lon[:2],
                             threads=2, settings=FAST_FAIL)
    assert list(block.status) == [FAILED, FAILED] and "403" in block.reason[0]


def test_token_refreshed_near_expiry_and_hrefs_stay_unsigned(grid_scene, served_catalog, pc_token_endpoint):
    import time

    root, _, _, _ = grid_scene
    files, cat = served_catalog(root, FaultConfig(token_lifetime_s=61.2))  # planetary_computer refreshes at < 60 s
    pc_token_endpoint(files.sas_url)
    href = f"{files.url}/SCENE_A/visual.tif"
    signer = Signer("always")
    first = signer.sign(href)
    assert first.startswith(href + "?st=") and signer.sign(href) == first
    assert signer.sign(first) == first  # an already signed href is not signed twice
    assert files.stats()["token_requests"] == {"local/SCENE_A": 1}
    time.sleep(1.3)
    assert signer.sign(href) != first and files.stats()["token_requests"] == {"local/SCENE_A": 2}
    signer.sign(f"{files.url}/SCENE_B/visual.tif")
    assert files.stats()["token_requests"] == {"local/SCENE_A": 2, "local/SCENE_B": 1}
    # auto mode signs Azure blob hrefs only; nothing unsigned is ever changed in place
    assert Signer("auto").needs_signing("https://sentinel2l2a01.blob.core.windows.net/sentinel2-l2/a.tif")
    assert not Signer("auto").needs_signing(href) and not Signer("never").needs_signing(href)
